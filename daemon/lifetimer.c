/*
 * lifetimer.c - the daemon's lifecycle timer: expiry, rotation and
 * publishing, one tick at a time, on a thread of its own (lifetimer.h).
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "daemon/lifesettings.h"
#include "daemon/lifetimer.h"
#include "dkim/record.h"
#include "dns/dns.h"

/* What was last logged about one thing ("rotate D S", "publish OWNER"), so
 * that a wait or a failure repeated at every tick is logged once. */
typedef struct lt_note {
    char *key, *msg;
} lt_note;

struct lt {
    struct event *start; /* one-shot on the loop: starts the thread */
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* stop asked (CLOCK_MONOTONIC waits) */
    atomic_int stop;        /* set under mu; read by the thread between steps too */
    ls_settings *next;      /* under mu: what the next tick uses */
    unsigned long interval; /* ms */
    hsm *token;
    ks *store; /* the thread's own connection to the state database */
    /* The thread's alone: */
    lf_ctx *life; /* during a tick */
    lt_note *notes;
    size_t nnotes;
};

static int stopping(lt *t)
{
    return atomic_load(&t->stop);
}

/* 1 when msg is news about key (and remembers it), 0 when it was the last
 * thing logged about key. Out of memory: 1 (log rather than stay silent). */
static int note_new(lt *t, const char *key, const char *msg)
{
    for (size_t i = 0; i < t->nnotes; i++) {
        if (strcmp(t->notes[i].key, key) != 0)
            continue;
        if (strcmp(t->notes[i].msg, msg) == 0)
            return 0;
        char *m = strdup(msg);
        if (m != NULL) {
            free(t->notes[i].msg);
            t->notes[i].msg = m;
        }
        return 1;
    }
    lt_note *n = realloc(t->notes, (t->nnotes + 1) * sizeof(*n));
    if (n == NULL)
        return 1;
    t->notes = n;
    n[t->nnotes].key = strdup(key);
    n[t->nnotes].msg = strdup(msg);
    if (n[t->nnotes].key == NULL || n[t->nnotes].msg == NULL) {
        free(n[t->nnotes].key);
        free(n[t->nnotes].msg);
        return 1;
    }
    t->nnotes++;
    return 1;
}

/* The thing is settled: the next wait or failure about it is news again. */
static void note_drop(lt *t, const char *key)
{
    for (size_t i = 0; i < t->nnotes; i++) {
        if (strcmp(t->notes[i].key, key) != 0)
            continue;
        free(t->notes[i].key);
        free(t->notes[i].msg);
        t->notes[i] = t->notes[--t->nnotes];
        return;
    }
}

static void log_once(lt *t, enum dh_log_level lvl, const char *key, const char *msg)
{
    if (note_new(t, key, msg))
        dh_log(lvl, "timer: %s", msg);
}

static long long now_of(lf_ctx *c)
{
    return c->now ? c->now() : (long long)time(NULL);
}

/* Retiring keys past retire_after -> revoked (lf_expire); each one logged. */
static void expire(lt *t)
{
    lf_ctx *c = t->life;
    ks_selector *l = NULL;
    size_t n = 0, count = 0;
    dh_err e = {0};
    long long now = now_of(c);
    int rc = ks_list(c->store, NULL, &l, &n, &e);
    if (rc == DH_OK)
        rc = lf_expire(c, LT_ACTOR, &count, &e);
    if (rc != DH_OK) {
        log_once(t, DH_LOG_ERR, "expire", e.msg);
        ks_list_free(l, n);
        return;
    }
    note_drop(t, "expire");
    for (size_t i = 0; count > 0 && i < n; i++) {
        ks_selector s = {0};
        if (l[i].state != KS_RETIRING || l[i].retiring_since + c->retire_after > now ||
            ks_get(c->store, l[i].domain, l[i].selector, &s, &e) != DH_OK)
            continue;
        if (s.state == KS_REVOKED && strcmp(s.key_id, l[i].key_id) == 0)
            dh_log(DH_LOG_INFO, "timer: revoked selector %s of %s (retiring for %llds)", s.selector,
                   s.domain, now - l[i].retiring_since);
        ks_selector_clear(&s);
    }
    ks_list_free(l, n);
}

/* One lf_rotate step for the active key s, logged. */
static void rotate_one(lt *t, const ks_selector *s)
{
    char key[400], msg[900];
    lf_rotation r = {0};
    dh_err e = {0};
    snprintf(key, sizeof(key), "rotate %s %s", s->domain, s->selector);
    if (lf_rotate(t->life, s->domain, (int)s->alg, LT_ACTOR, &r, &e) != DH_OK) {
        snprintf(msg, sizeof(msg), "rotating %s of %s: %s", s->selector, s->domain, e.msg);
        log_once(t, DH_LOG_WARNING, key, msg);
        return;
    }
    switch (r.step) {
    case LF_ROTATE_CREATED:
        dh_log(DH_LOG_INFO,
               "timer: rotation of %s: created %s to replace %s; it signs once DNS shows it",
               s->domain, r.selector, s->selector);
        note_drop(t, key);
        break;
    case LF_ROTATE_WAITING:
        if (r.seen.ok)
            snprintf(msg, sizeof(msg), "rotation of %s: %s is %s", s->domain, r.selector,
                     r.seen.reason);
        else
            snprintf(msg, sizeof(msg), "rotation of %s: waiting for DNS to show %s (%s%s%s)",
                     s->domain, r.selector, r.seen.status, r.seen.reason[0] ? ": " : "",
                     r.seen.reason);
        log_once(t, DH_LOG_INFO, key, msg);
        break;
    case LF_ROTATE_SWITCHED:
        dh_log(DH_LOG_INFO, "timer: rotation of %s: %s is active (seen in DNS), %s is retiring",
               s->domain, r.selector, s->selector);
        note_drop(t, key);
        break;
    }
    lf_rotation_clear(&r);
}

/* Every active key that has signed for rotate_after: one step each, and
 * one rotation per (domain, algorithm) per tick. */
static void rotate_due(lt *t, long long rotate_after)
{
    lf_ctx *c = t->life;
    ks_selector *l = NULL;
    size_t n = 0;
    dh_err e = {0};
    long long now = now_of(c);
    if (ks_list(c->store, NULL, &l, &n, &e) != DH_OK) {
        log_once(t, DH_LOG_ERR, "rotate", e.msg);
        return;
    }
    note_drop(t, "rotate");
    unsigned done = 0; /* algorithms rotated in the current domain (ks_list: by domain) */
    for (size_t i = 0; i < n && !stopping(t); i++) {
        if (i > 0 && strcmp(l[i].domain, l[i - 1].domain) != 0)
            done = 0;
        /* state_changed of an active key: when it became active. */
        if (l[i].state != KS_ACTIVE || l[i].state_changed + rotate_after > now ||
            (done & (1u << l[i].alg)))
            continue;
        done |= 1u << l[i].alg;
        rotate_one(t, &l[i]);
    }
    ks_list_free(l, n);
}

/* "OWNER IN TXT ( "..." "..." )", as `dkim-keyctl dns` prints it. */
static int zone_line(const lf_record *r, dh_buf *out)
{
    size_t len = strlen(r->value), off = 0, sl = 0;
    int rc = dh_buf_printf(out, "%s IN TXT (", r->owner);
    for (size_t i = 0; rc == DH_OK && i < dkim_record_nstrings(len); i++) {
        dkim_record_string_at(len, i, &off, &sl);
        rc = dh_buf_printf(out, " \"%.*s\"", (int)sl, r->value + off);
    }
    if (rc == DH_OK)
        rc = dh_buf_puts(out, " )");
    return rc;
}

/* What DNS serves at r->owner: *same 1 when it is exactly r->value. */
static int served(const ls_settings *cf, const lf_record *r, int *same, char *what, size_t wsize,
                  dh_err *e)
{
    *same = 0;
    /* Both owners (ours and a provider zone's) are SELECTOR._domainkey.ZONE. */
    const char *dk = strstr(r->owner, "._domainkey.");
    if (dk == NULL)
        return dh_err_set(e, DH_EINVAL, "record owner %s has no _domainkey label", r->owner);
    char sel[256];
    snprintf(sel, sizeof(sel), "%.*s", (int)(dk - r->owner), r->owner);
    dn_config dc = {.server = cf->dns_server};
    dn_result res = {0};
    int rc = dn_check(&dc, dk + strlen("._domainkey."), sel, NULL, &res, e);
    if (rc == DH_OK) {
        *same = res.status != DN_MISSING && res.record.len == strlen(r->value) &&
                memcmp(res.record.data, r->value, res.record.len) == 0;
        /* "ok" is a well-formed record, not necessarily ours. */
        snprintf(what, wsize, "%s",
                 res.status == DN_OK ? "another record" : dn_status_name(res.status));
    }
    dn_result_clear(&res);
    return rc;
}

/* RFC 2136: the record into its zone (the provider's zone, else the one
 * the server says holds the name: a signing domain may sit below its apex). */
static int send_update(const ls_settings *cf, const lf_record *r, dh_err *e)
{
    dn_tsig tsig;
    int rc = dn_tsig_load(cf->tsig_key_file, &tsig, e);
    if (rc != DH_OK)
        return rc;
    dn_config dc = {.server = cf->dns_update_server};
    char found[256];
    const char *zone = cf->delegation_zone;
    if (zone == NULL && (rc = dn_find_zone(&dc, r->owner, found, sizeof(found), e)) == DH_OK)
        zone = found;
    if (rc == DH_OK)
        rc = dn_update_txt(&dc, zone, &tsig, r->owner, r->value, LT_RECORD_TTL, e);
    dn_tsig_clear(&tsig);
    return rc;
}

/* One record: settled when DNS serves it; else published or asked for. */
static void publish_one(lt *t, const ls_settings *cf, const lf_record *r)
{
    char key[300], msg[1400], what[32] = "";
    dh_buf line = {0};
    dh_err e = {0};
    int same = 0;
    snprintf(key, sizeof(key), "publish %s", r->owner);
    int rc = served(cf, r, &same, what, sizeof(what), &e);
    if (rc == DH_OK && same) {
        note_drop(t, key);
        return;
    }
    if (rc == DH_OK)
        rc = zone_line(r, &line) == DH_OK ? DH_OK : dh_err_set(&e, DH_ENOMEM, "out of memory");
    int update = cf->dns_update_server != NULL && cf->tsig_key_file != NULL;
    if (rc == DH_OK && update)
        rc = send_update(cf, r, &e);
    if (rc != DH_OK)
        snprintf(msg, sizeof(msg), "publishing %s (%s of %s, %s): %s", r->owner, r->selector,
                 r->domain, ks_state_name(r->state), e.msg);
    else if (update)
        snprintf(msg, sizeof(msg), "published by RFC 2136 update to %s (DNS had %s): %s",
                 cf->dns_update_server, what, (char *)line.data);
    else
        snprintf(msg, sizeof(msg), "DNS has %s; publish for %s of %s (%s): %s", what, r->selector,
                 r->domain, ks_state_name(r->state), (char *)line.data);
    log_once(t, rc == DH_OK ? DH_LOG_INFO : DH_LOG_WARNING, key, msg);
    dh_buf_free(&line);
}

/* Every domain's records against what DNS serves. */
static void publish(lt *t, const ls_settings *cf)
{
    ks_selector *l = NULL;
    size_t n = 0;
    dh_err e = {0};
    if (ks_list(t->life->store, NULL, &l, &n, &e) != DH_OK) {
        log_once(t, DH_LOG_ERR, "publish", e.msg);
        return;
    }
    for (size_t i = 0; i < n && !stopping(t); i++) {
        if (i > 0 && strcmp(l[i].domain, l[i - 1].domain) == 0)
            continue;
        lf_record *r = NULL;
        size_t nr = 0;
        if (lf_records(t->life, l[i].domain, NULL, &r, &nr, &e) != DH_OK) {
            log_once(t, DH_LOG_ERR, "publish", e.msg);
            continue;
        }
        for (size_t j = 0; j < nr && !stopping(t); j++)
            publish_one(t, cf, &r[j]);
        lf_records_free(r, nr);
    }
    ks_list_free(l, n);
}

/* One tick, on the timer thread, with the settings as they are now. Its
 * commits are another connection's to the loop's, so the daemon's key watch
 * sees them (data_version) and reloads its keys within 250 ms, as it does
 * for dkim-keyctl: a revoked key stops signing, a new one starts. */
static void tick(lt *t)
{
    pthread_mutex_lock(&t->mu);
    ls_settings *cf = ls_copy(t->next);
    pthread_mutex_unlock(&t->mu);
    if (cf == NULL) {
        log_once(t, DH_LOG_ERR, "tick", "out of memory");
        return;
    }
    note_drop(t, "tick");
    lf_dns_arg dns;
    lf_ctx life;
    ls_life(cf, t->store, t->token, &dns, &life);
    t->life = &life;
    expire(t);
    if (cf->rotate_after > 0 && !stopping(t))
        rotate_due(t, cf->rotate_after);
    if (!stopping(t))
        publish(t, cf);
    t->life = NULL;
    ls_free(cf);
}

static void *run(void *arg)
{
    lt *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!stopping(t)) {
        pthread_mutex_unlock(&t->mu);
        tick(t);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)(t->interval / 1000);
        until.tv_nsec += (long)(t->interval % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&t->mu);
        while (!stopping(t) && pthread_cond_timedwait(&t->cv, &t->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* On the loop, once it runs: privileges are dropped by then, so nothing the
 * timer writes (the database, audit.head) is ever created as root. */
static void on_start(evutil_socket_t fd, short what, void *arg)
{
    lt *t = arg;
    (void)fd;
    (void)what;
    int err = pthread_create(&t->thread, NULL, run, t);
    if (err != 0) {
        dh_log(DH_LOG_ERR, "timer: cannot start its thread: %s; no expiry, rotation or publishing",
               strerror(err));
        return;
    }
    t->started = 1;
}

static int interval_ms(unsigned long *out, dh_err *e)
{
    const char *s = getenv(LT_ENV_MS);
    *out = LT_DEFAULT_MS;
    if (s == NULL || *s == '\0')
        return DH_OK;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 10 || v > 86400000UL)
        return dh_err_set(e, DH_EINVAL, "%s: '%s': want milliseconds, 10 to 86400000", LT_ENV_MS,
                          s);
    *out = v;
    return DH_OK;
}

static int sync_init(lt *t)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    int ok =
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 && pthread_cond_init(&t->cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!ok)
        return -1;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        pthread_cond_destroy(&t->cv);
        return -1;
    }
    return 0;
}

int lt_new(struct event_base *base, hsm *token, const conf *cf, lt **out, dh_err *e)
{
    *out = NULL;
    unsigned long ms = 0;
    int rc = interval_ms(&ms, e);
    if (rc != DH_OK)
        return rc;
    lt *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    if (sync_init(t) != 0) {
        free(t);
        return dh_err_set(e, DH_EIO, "timer: cannot set up its lock");
    }
    t->interval = ms;
    t->token = token;
    if ((t->next = ls_from_conf(cf)) == NULL)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc == DH_OK)
        rc = ks_open(cf->state_dir, &t->store, e);
    if (rc == DH_OK && ((t->start = event_new(base, -1, 0, on_start, t)) == NULL ||
                        event_add(t->start, NULL) != 0))
        rc = dh_err_set(e, DH_EIO, "cannot start the lifecycle timer");
    if (rc != DH_OK) {
        lt_free(t);
        return rc;
    }
    /* The first tick as soon as the loop runs, not one interval later: a
     * daemon restarted after a long stop catches up at once. */
    event_active(t->start, EV_TIMEOUT, 0);
    dh_log(DH_LOG_INFO, "timer: every %lu ms; rotate_after %llds, retire_after %llds; %s", ms,
           cf->rotate_after, cf->retire_after,
           cf->dns_update_server && cf->tsig_key_file ? "publishing by RFC 2136 update"
                                                      : "records published by hand");
    *out = t;
    return DH_OK;
}

int lt_reconfigure(lt *t, const conf *cf, dh_err *e)
{
    return ls_replace(&t->mu, &t->next, cf, e);
}

void lt_free(lt *t)
{
    if (t == NULL)
        return;
    if (t->started) {
        pthread_mutex_lock(&t->mu);
        atomic_store(&t->stop, 1);
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->thread, NULL);
    }
    if (t->start != NULL)
        event_free(t->start);
    ks_close(t->store);
    ls_free(t->next);
    for (size_t i = 0; i < t->nnotes; i++) {
        free(t->notes[i].key);
        free(t->notes[i].msg);
    }
    free(t->notes);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
