/*
 * log.h - one log line per event, to stderr (default) or syslog.
 */
#ifndef DH_LOG_H
#define DH_LOG_H

enum dh_log_level { DH_LOG_ERR, DH_LOG_WARNING, DH_LOG_INFO, DH_LOG_DEBUG };

/* ident names the program; to_syslog 0 = stderr with a timestamp. */
void dh_log_open(const char *ident, int to_syslog);
void dh_log(enum dh_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
