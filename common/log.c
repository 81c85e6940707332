#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static const char *log_ident = "dkimhsm";
static int log_syslog;

void dh_log_open(const char *ident, int to_syslog)
{
    log_ident = ident;
    log_syslog = to_syslog;
    if (to_syslog)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void dh_log(enum dh_log_level level, const char *fmt, ...)
{
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    static const char *const name[] = {"error", "warning", "info", "debug"};
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (log_syslog) {
        syslog(prio[level], "%s", line);
        return;
    }
    char ts[32];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per line: lines from several threads do not interleave. */
    fprintf(stderr, "%s.%03ldZ %s %s: %s\n", ts, now.tv_nsec / 1000000, log_ident, name[level],
            line);
}
