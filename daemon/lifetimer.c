/*
 * lifetimer.c - the daemon's lifecycle timer: expiry, rotation and
 * publishing, one tick at a time (lifetimer.h).
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "daemon/lifetimer.h"
#include "dkim/record.h"
#include "dns/dns.h"

/* What was last logged about one thing ("rotate D S", "publish OWNER"), so
 * that a wait or a failure repeated at every tick is logged once. */
typedef struct lt_note {
    char *key, *msg;
} lt_note;

struct lt {
    struct event *ev;
    lf_ctx *life;
    conf *const *cfp;
    lt_changed_fn changed;
    void *arg;
    lt_note *notes;
    size_t nnotes;
};

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
static void expire(lt *t, int *changed)
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
    *changed |= count > 0;
    ks_list_free(l, n);
}

/* One lf_rotate step for the active key s, logged. */
static void rotate_one(lt *t, const ks_selector *s, int *changed)
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
        *changed = 1;
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
        *changed = 1;
        break;
    }
    lf_rotation_clear(&r);
}

/* Every active key that has signed for rotate_after: one step each, and
 * one rotation per (domain, algorithm) per tick. */
static void rotate_due(lt *t, long long rotate_after, int *changed)
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
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(l[i].domain, l[i - 1].domain) != 0)
            done = 0;
        /* state_changed of an active key: when it became active. */
        if (l[i].state != KS_ACTIVE || l[i].state_changed + rotate_after > now ||
            (done & (1u << l[i].alg)))
            continue;
        done |= 1u << l[i].alg;
        rotate_one(t, &l[i], changed);
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
static int served(const conf *cf, const lf_record *r, int *same, char *what, size_t wsize,
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
static int send_update(const conf *cf, const lf_record *r, dh_err *e)
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
static void publish_one(lt *t, const conf *cf, const lf_record *r)
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
static void publish(lt *t, const conf *cf)
{
    ks_selector *l = NULL;
    size_t n = 0;
    dh_err e = {0};
    if (ks_list(t->life->store, NULL, &l, &n, &e) != DH_OK) {
        log_once(t, DH_LOG_ERR, "publish", e.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(l[i].domain, l[i - 1].domain) == 0)
            continue;
        lf_record *r = NULL;
        size_t nr = 0;
        if (lf_records(t->life, l[i].domain, NULL, &r, &nr, &e) != DH_OK) {
            log_once(t, DH_LOG_ERR, "publish", e.msg);
            continue;
        }
        for (size_t j = 0; j < nr; j++)
            publish_one(t, cf, &r[j]);
        lf_records_free(r, nr);
    }
    ks_list_free(l, n);
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void lt_tick(lt *t)
{
    const conf *cf = *t->cfp;
    long long start = mono_ms();
    int changed = 0;
    expire(t, &changed);
    if (cf->rotate_after > 0)
        rotate_due(t, cf->rotate_after, &changed);
    /* Before the DNS work: a revoked key stops signing, a new one starts. */
    if (changed && t->changed)
        t->changed(t->arg);
    publish(t, cf);
    long long took = mono_ms() - start;
    if (took > 1000)
        dh_log(DH_LOG_WARNING, "timer: lifecycle tick took %lld ms (the loop waited)", took);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lt_tick(arg);
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

int lt_new(struct event_base *base, lf_ctx *life, conf *const *cfp, lt_changed_fn changed,
           void *arg, lt **out, dh_err *e)
{
    *out = NULL;
    unsigned long ms = 0;
    int rc = interval_ms(&ms, e);
    if (rc != DH_OK)
        return rc;
    lt *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    *t = (lt){.life = life, .cfp = cfp, .changed = changed, .arg = arg};
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    t->ev = event_new(base, -1, EV_PERSIST, on_tick, t);
    if (t->ev == NULL || event_add(t->ev, &tv) != 0) {
        lt_free(t);
        return dh_err_set(e, DH_EIO, "cannot start the lifecycle timer");
    }
    /* The first tick as soon as the loop runs, not one interval later: a
     * daemon restarted after a long stop catches up at once. */
    event_active(t->ev, EV_TIMEOUT, 0);
    const conf *cf = *cfp;
    dh_log(DH_LOG_INFO, "timer: every %lu ms; rotate_after %llds, retire_after %llds; %s", ms,
           cf->rotate_after, cf->retire_after,
           cf->dns_update_server && cf->tsig_key_file ? "publishing by RFC 2136 update"
                                                      : "records published by hand");
    *out = t;
    return DH_OK;
}

void lt_free(lt *t)
{
    if (t == NULL)
        return;
    if (t->ev != NULL)
        event_free(t->ev);
    for (size_t i = 0; i < t->nnotes; i++) {
        free(t->notes[i].key);
        free(t->notes[i].msg);
    }
    free(t->notes);
    free(t);
}
