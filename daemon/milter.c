/*
 * dkimhsm-milter - the keyless front end for Postfix and Sendmail.
 *
 * It streams each message through the canonicalizer (the body is hashed as it
 * arrives, never held), asks dkimhsmd which keys sign the From: domain and
 * for the signatures, and inserts the DKIM-Signature fields at the top. It
 * holds no key and no PIN: those stay in dkimhsmd.
 *
 * libmilter (Debian builds its worker pool) runs the MTA connections on a
 * pool of threads; they share one pool of agent connections. libmilter reads
 * every MTA command with three polls and two reads, and on a busy gateway
 * those system calls, not signing, are the milter's cost
 * (docs/PERFORMANCE.md). So every step it can do without is negotiated away
 * (SMFIP_NO*: MAIL and EOH included), and so is the reply to every step it
 * needs (SMFIP_NR_*): only the end of the message gets an answer, which is
 * where the decision is made.
 */
#include <errno.h>
#include <libmilter/mfapi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "conf/conf.h"
#include "daemon/client.h"
#include "daemon/lookup_cache.h"
#include "daemon/remote_sign.h"
#include "dkim/canon.h"
#include "dkim/msg.h"

static conf *cf;
static ac *agent;
static lc *lookups;

/* libmilter's worker threads are detached: when smfi_main returns, one may
 * still be inside a callback (waiting up to AGENT_TIMEOUT_MS for dkimhsmd).
 * Callbacks that touch cf, agent or lookups hold a use, and main frees those
 * only once no use is left; a callback that starts after that answers
 * without them. */
#define AGENT_TIMEOUT_MS 10000
static atomic_uint users;
static atomic_int closing;
static pthread_mutex_t users_mu = PTHREAD_MUTEX_INITIALIZER; /* for the wait at exit */
static pthread_cond_t users_cv = PTHREAD_COND_INITIALIZER;

/* Lock-free on the way of every message (a mutex here would be contended by
 * all of libmilter's workers): the use is counted first, then closing is
 * read, while main sets closing first and then reads the count, so one of
 * the two always sees the other (sequentially consistent atomics). */
static int use_begin(void)
{
    atomic_fetch_add(&users, 1);
    if (!atomic_load(&closing))
        return 1;
    if (atomic_fetch_sub(&users, 1) == 1) {
        pthread_mutex_lock(&users_mu);
        pthread_cond_broadcast(&users_cv);
        pthread_mutex_unlock(&users_mu);
    }
    return 0;
}

static void use_end(void)
{
    if (atomic_fetch_sub(&users, 1) == 1 && atomic_load(&closing)) {
        pthread_mutex_lock(&users_mu);
        pthread_cond_broadcast(&users_cv);
        pthread_mutex_unlock(&users_mu);
    }
}

/* No new use from now on; 1 when the last one ended within ms. */
static int uses_drained(unsigned ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    atomic_store(&closing, 1);
    pthread_mutex_lock(&users_mu);
    int err = 0;
    while (atomic_load(&users) > 0 && err != ETIMEDOUT)
        err = pthread_cond_timedwait(&users_cv, &users_mu, &until);
    int drained = atomic_load(&users) == 0;
    pthread_mutex_unlock(&users_mu);
    return drained;
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* One message in flight on one MTA connection. */
struct msg {
    dkim_hdrs *hdrs;
    dkim_body *body;
    int unsignable;                       /* a header could not be taken: pass per policy */
    char why[sizeof(((dh_err *)0)->msg)]; /* first problem seen */
    struct timespec t0;
};

/* One MTA connection: what it negotiated, and the message in flight. */
struct conn {
    unsigned long proto; /* SMFIP_* agreed in negotiation */
    struct msg *m;
    int m_failed; /* the message in flight could not be allocated */
};

static void msg_free(struct msg *m)
{
    if (m == NULL)
        return;
    dkim_hdrs_free(m->hdrs);
    dkim_body_free(m->body);
    free(m);
}

static struct conn *conn_of(SMFICTX *ctx)
{
    return smfi_getpriv(ctx);
}

/* SMFIS_NOREPLY only where the MTA agreed to it; CONTINUE otherwise. */
static sfsistat noreply(SMFICTX *ctx, unsigned long flag)
{
    struct conn *c = conn_of(ctx);
    return c != NULL && (c->proto & flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static void mark_unsignable(struct msg *m, const char *why)
{
    if (!m->unsignable)
        snprintf(m->why, sizeof(m->why), "%s", why);
    m->unsignable = 1;
}

static void msg_reset(SMFICTX *ctx)
{
    struct conn *c = conn_of(ctx);
    if (c != NULL) {
        msg_free(c->m);
        c->m = NULL;
        c->m_failed = 0;
    }
}

/* The message in flight, begun by the first step that belongs to it. MAIL and
 * EOH are negotiated away (each is a command libmilter reads with five system
 * calls), so a message starts at its first header. Once allocation failed it
 * stays failed until the transaction ends: a later header must not begin a
 * message that lacks the earlier ones. NULL then, decided at the end. */
static struct msg *msg_begin(SMFICTX *ctx)
{
    struct conn *c = conn_of(ctx);
    if (c == NULL || c->m != NULL || c->m_failed)
        return c ? c->m : NULL;
    struct msg *m = calloc(1, sizeof(*m));
    if (m != NULL && (m->hdrs = dkim_hdrs_new()) == NULL) {
        free(m);
        m = NULL;
    }
    if (m != NULL)
        clock_gettime(CLOCK_MONOTONIC, &m->t0);
    c->m = m;
    c->m_failed = m == NULL;
    return m;
}

/* The body hash starts with the first body chunk, or at the end of a message
 * without a body; an EOH, when the MTA still sends one, changes nothing. */
static void body_begin(struct msg *m)
{
    if (m->body == NULL && (m->body = dkim_body_new(cf->body_canon, -1)) == NULL)
        mark_unsignable(m, "out of memory");
}

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    (void)f2;
    (void)f3;
    if (!(f0 & SMFIF_ADDHDRS))
        return SMFIS_REJECT; /* we could not insert a signature */
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return SMFIS_TEMPFAIL;
    /* Header values byte for byte (without it simple header canonicalization
     * breaks: FACTS), no step we can do without, and no reply for any step
     * before the end. The NR_ flags still count for an MTA that sends MAIL
     * or EOH anyway. */
    unsigned long want = SMFIP_HDR_LEADSPC | SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL |
                         SMFIP_NORCPT | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOEOH |
                         SMFIP_NR_MAIL | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY;
    c->proto = f1 & want;
    smfi_setpriv(ctx, c);
    *pf0 = SMFIF_ADDHDRS;
    *pf1 = c->proto;
    *pf2 = 0;
    *pf3 = 0;
    if (!(f1 & SMFIP_HDR_LEADSPC))
        dh_log(DH_LOG_WARNING, "MTA cannot keep header leading spaces: simple header "
                               "canonicalization may not verify");
    return SMFIS_CONTINUE;
}

/* Only from an MTA that cannot skip MAIL: the transaction starts afresh. */
static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
    (void)argv;
    msg_reset(ctx);
    return noreply(ctx, SMFIP_NR_MAIL);
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
    struct msg *m = msg_begin(ctx);
    dh_err e = {0};
    if (m != NULL && !m->unsignable &&
        dkim_hdrs_add(m->hdrs, name, (const uint8_t *)value, strlen(value), &e) != DH_OK)
        mark_unsignable(m, e.msg);
    return noreply(ctx, SMFIP_NR_HDR);
}

static sfsistat on_eoh(SMFICTX *ctx)
{
    struct msg *m = msg_begin(ctx);
    if (m != NULL && use_begin()) {
        body_begin(m);
        use_end();
    }
    return noreply(ctx, SMFIP_NR_EOH);
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct msg *m = msg_begin(ctx);
    if (m == NULL || m->unsignable || !use_begin())
        return noreply(ctx, SMFIP_NR_BODY); /* shutting down: the end tempfails */
    body_begin(m);
    if (!m->unsignable && dkim_body_update(m->body, chunk, len) != DH_OK)
        mark_unsignable(m, "body hashing failed");
    use_end();
    return noreply(ctx, SMFIP_NR_BODY);
}

/* What happened to one message, for its log line. */
struct outcome {
    const char *result; /* signed, unsigned, tempfail */
    char detail[sizeof(((dh_err *)0)->msg)];
    char d[AP_MAX_NAME + 1];
    char sels[160];
};

/* The token, dkimhsmd or the queue failed: tempfail (default) or pass
 * unsigned, as on_failure says. Never a message with a broken signature. */
static sfsistat failure(SMFICTX *ctx, struct outcome *o, const char *why)
{
    snprintf(o->detail, sizeof(o->detail), "%s", why);
    if (cf->on_failure_accept) {
        o->result = "unsigned-on-failure";
        return SMFIS_ACCEPT;
    }
    o->result = "tempfail";
    smfi_setreply(ctx, "451", "4.7.1", "DKIM signing temporarily unavailable");
    return SMFIS_TEMPFAIL;
}

static sfsistat pass_unsigned(struct outcome *o, const char *why)
{
    o->result = "unsigned";
    snprintf(o->detail, sizeof(o->detail), "%s", why);
    return SMFIS_ACCEPT;
}

/* [p, end) without its CRs, as a string; 0 when out of memory. */
static int copy_without_cr(dh_buf *out, const char *p, const char *end)
{
    if (dh_buf_append(out, "", 0) != DH_OK) /* a string even when empty */
        return 0;
    while (p < end) {
        const char *cr = memchr(p, '\r', (size_t)(end - p));
        const char *stop = cr ? cr : end;
        if (dh_buf_append(out, p, (size_t)(stop - p)) != DH_OK)
            return 0;
        p = cr ? cr + 1 : end;
    }
    return 1;
}

/* Inserts the fields (each "DKIM-Signature: ...\r\n") at the top, keeping
 * their order; folding becomes LF, as libmilter wants (the MTA adds CR). */
static int insert_fields(SMFICTX *ctx, const struct conn *c, const dh_buf *fields, size_t n)
{
    const char *starts[RS_MAX_KEYS];
    const char *p = (const char *)fields->data;
    for (size_t i = 0; i < n; i++) {
        starts[i] = p;
        p = strstr(p, "\r\n");
        while (p != NULL && (p[2] == ' ' || p[2] == '\t'))
            p = strstr(p + 2, "\r\n");
        if (p == NULL)
            return -1;
        p += 2;
    }
    for (size_t i = n; i-- > 0;) {
        const char *v = strchr(starts[i], ':') + 1;
        if (!(c->proto & SMFIP_HDR_LEADSPC) && *v == ' ')
            v++; /* the MTA puts the space after the colon itself */
        const char *end = i + 1 < n ? starts[i + 1] : (const char *)fields->data + fields->len;
        dh_buf val = {0};
        int ok = copy_without_cr(&val, v, end - 2);
        int rc = ok ? smfi_insheader(ctx, 0, "DKIM-Signature", (char *)val.data) : MI_FAILURE;
        dh_buf_free(&val);
        if (rc != MI_SUCCESS)
            return -1;
    }
    return 0;
}

/* Which keys sign this From: domain: the cached answer, or dkimhsmd's. */
static int keys_for(const char *from, int fresh, ac_lookup *l, dh_err *e)
{
    uint64_t now = now_ms();
    if (!fresh && lc_get(lookups, from, now, l))
        return DH_OK;
    int rc = ac_lookup_domain(agent, from, l, e);
    if (rc == DH_OK)
        lc_put(lookups, from, now, l);
    return rc;
}

/* Signs with the keys l names; DH_OK with the fields appended to out. */
static int sign_with(const struct msg *m, const ac_lookup *l, const uint8_t bh[32],
                     struct outcome *o, dh_buf *out, dh_err *e)
{
    rs_key keys[RS_MAX_KEYS];
    size_t n = 0;
    o->sels[0] = '\0';
    for (; n < l->count && n < RS_MAX_KEYS; n++) {
        keys[n] = (rs_key){l->sel[n].selector, (enum dkim_alg)l->sel[n].alg};
        snprintf(o->sels + strlen(o->sels), sizeof(o->sels) - strlen(o->sels), "%s%s/%s",
                 n ? "," : "", l->sel[n].selector, dkim_alg_keytype(keys[n].alg));
    }
    snprintf(o->d, sizeof(o->d), "%s", l->domain);
    long long t = (long long)time(NULL);
    rs_params p = {l->domain,
                   cf->hdr_canon,
                   cf->body_canon,
                   NULL,
                   cf->sign_headers,
                   cf->oversign_headers,
                   t,
                   cf->signature_ttl ? t + cf->signature_ttl : -1};
    return rs_sign(agent, m->hdrs, bh, &p, keys, n, out, e);
}

/* What the answer and the signing outcome mean for the message. */
static sfsistat decide(SMFICTX *ctx, struct conn *c, const ac_lookup *l, int rc, dh_err *e,
                       const dh_buf *fields, struct outcome *o)
{
    if (l->status == AP_NOTFOUND)
        return pass_unsigned(o, "no key signs for this domain");
    if (l->status != AP_OK)
        return failure(ctx, o, l->reason);
    if (rc == DH_EUNSIGNABLE || rc == DH_EINVAL)
        return pass_unsigned(o, e->msg);
    if (rc != DH_OK)
        return failure(ctx, o, e->msg);
    if (insert_fields(ctx, c, fields, l->count < RS_MAX_KEYS ? l->count : RS_MAX_KEYS) != 0)
        return failure(ctx, o, "the MTA refused to insert the header");
    o->result = "signed";
    return SMFIS_ACCEPT;
}

/* Looks up the keys and signs. A refusal means the keys changed between the
 * answer (cached, or fresh but overtaken by a rotation) and the request: a
 * selector revoked or replaced. Forget the answer and ask once more. */
static sfsistat lookup_and_sign(SMFICTX *ctx, struct conn *c, struct msg *m, const char *from,
                                const uint8_t bh[32], struct outcome *o)
{
    dh_buf fields = {0};
    dh_err e = {0};
    ac_lookup l;
    int answered = 0, rc = DH_OK;
    for (int fresh = 0; fresh < 2; fresh++) {
        rc = keys_for(from, fresh, &l, &e);
        answered = rc == DH_OK;
        if (!answered || l.status != AP_OK)
            break;
        fields.len = 0;
        rc = sign_with(m, &l, bh, o, &fields, &e);
        if (rc != DH_EPERM)
            break;
        lc_drop(lookups, from);
    }
    /* No answer at all: dkimhsmd unreachable. */
    sfsistat r = answered ? decide(ctx, c, &l, rc, &e, &fields, o) : failure(ctx, o, e.msg);
    dh_buf_free(&fields);
    return r;
}

static sfsistat sign_message(SMFICTX *ctx, struct conn *c, struct msg *m, struct outcome *o)
{
    dh_buf from = {0};
    dh_err e = {0};
    uint8_t bh[32];
    sfsistat r;
    if (dkim_hdrs_check_signable(m->hdrs, &e) != DH_OK ||
        dkim_hdrs_from_domain(m->hdrs, &from, &e) != DH_OK)
        r = pass_unsigned(o, e.msg);
    else if (dkim_body_final(m->body, bh, NULL) != DH_OK)
        r = failure(ctx, o, "body hash failed");
    else
        r = lookup_and_sign(ctx, c, m, (const char *)from.data, bh, o);
    dh_buf_free(&from);
    return r;
}

/* Message-ID for the log line (first one, truncated, control bytes dropped). */
static void message_id(const dkim_hdrs *h, char *out, size_t cap)
{
    snprintf(out, cap, "-");
    for (size_t i = 0; h != NULL && i < dkim_hdrs_count(h); i++) {
        size_t len, nl;
        const uint8_t *f = dkim_hdrs_field(h, i, &len, &nl);
        if (nl != 10 || strncasecmp((const char *)f, "message-id", 10) != 0)
            continue;
        size_t o = 0;
        for (size_t j = nl + 1; j < len && o + 1 < cap; j++)
            if (f[j] > ' ' && f[j] < 0x7f)
                out[o++] = (char)f[j];
        out[o] = '\0';
        return;
    }
}

static sfsistat eom(SMFICTX *ctx)
{
    struct conn *c = conn_of(ctx);
    struct msg *m = msg_begin(ctx); /* a message without headers: unsigned below */
    struct outcome o = {.result = "unsigned"};
    sfsistat r;
    if (m != NULL && !m->unsignable)
        body_begin(m);
    if (c == NULL || m == NULL)
        r = failure(ctx, &o, "out of memory");
    else if (m->unsignable)
        r = pass_unsigned(&o, m->why);
    else
        r = sign_message(ctx, c, m, &o);
    char mid[128];
    message_id(m ? m->hdrs : NULL, mid, sizeof(mid));
    const char *qid = smfi_getsymval(ctx, "i");
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms =
        m ? (double)(now.tv_sec - m->t0.tv_sec) * 1e3 + (double)(now.tv_nsec - m->t0.tv_nsec) / 1e6
          : 0;
    dh_log(strcmp(o.result, "signed") == 0 ? DH_LOG_INFO : DH_LOG_WARNING,
           "queue_id=%s message_id=%s d=%s s=%s result=%s ms=%.1f%s%s", qid ? qid : "-", mid,
           o.d[0] ? o.d : "-", o.sels[0] ? o.sels : "-", o.result, ms, o.detail[0] ? " why=" : "",
           o.detail);
    msg_reset(ctx);
    return r;
}

static sfsistat on_eom(SMFICTX *ctx)
{
    if (!use_begin()) {
        dh_log(DH_LOG_WARNING, "queue_id=%s result=tempfail why=shutting down",
               smfi_getsymval(ctx, "i") ? smfi_getsymval(ctx, "i") : "-");
        smfi_setreply(ctx, "451", "4.7.1", "DKIM signing is shutting down");
        msg_reset(ctx);
        return SMFIS_TEMPFAIL;
    }
    sfsistat r = eom(ctx);
    use_end();
    return r;
}

static sfsistat on_abort(SMFICTX *ctx)
{
    msg_reset(ctx);
    return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx)
{
    struct conn *c = conn_of(ctx);
    msg_reset(ctx);
    free(c);
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

static struct smfiDesc filter = {
    .xxfi_name = "dkimhsm",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS,
    .xxfi_envfrom = on_envfrom,
    .xxfi_header = on_header,
    .xxfi_eoh = on_eoh,
    .xxfi_body = on_body,
    .xxfi_eom = on_eom,
    .xxfi_abort = on_abort,
    .xxfi_close = on_close,
    .xxfi_negotiate = on_negotiate,
};

static int start(const char *config, dh_err *e)
{
    int rc = conf_load(config, &cf, e);
    if (rc != DH_OK)
        return rc;
    dh_log_open("dkimhsm-milter", strcmp(cf->log, "syslog") == 0);
    if (cf->milter_socket == NULL || cf->agent_socket == NULL)
        return dh_err_set(e, DH_ECONFIG,
                          "%s: milter_socket and agent_socket are required by "
                          "dkimhsm-milter",
                          cf->path);
    /* Connections to dkimhsmd, shared by libmilter's threads; a signature
     * request that waits longer than this is tempfailed. */
    rc = ac_new(cf->agent_socket, 64, AGENT_TIMEOUT_MS, &agent, e);
    if (rc == DH_OK)
        rc = lc_new(cf->lookup_cache_ms, &lookups, e);
    if (rc != DH_OK)
        return rc;
    if (smfi_setconn(cf->milter_socket) != MI_SUCCESS || smfi_register(filter) != MI_SUCCESS ||
        smfi_opensocket(1) != MI_SUCCESS)
        return dh_err_set(e, DH_EIO, "milter_socket %s: cannot listen", cf->milter_socket);
    smfi_setbacklog(128);
    return DH_OK;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    int ch;
    while ((ch = getopt(argc, argv, "c:h")) != -1) {
        if (ch == 'c') {
            config = optarg;
        } else {
            fprintf(ch == 'h' ? stdout : stderr, "usage: dkimhsm-milter [-c CONFIG]\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    dh_err e = {0};
    int rc = start(config, &e);
    if (rc != DH_OK) {
        fprintf(stderr, "dkimhsm-milter: %s\n", e.msg);
        lc_free(lookups);
        ac_free(agent);
        conf_free(cf);
        return dh_err_exit_status(rc);
    }
    dh_log(DH_LOG_INFO, "ready on %s, signing through %s", cf->milter_socket, cf->agent_socket);
    rc = smfi_main() == MI_SUCCESS ? 0 : 1;
    if (!uses_drained(AGENT_TIMEOUT_MS + 1000)) {
        dh_log(DH_LOG_WARNING, "exiting with a message still waiting for dkimhsmd");
        return rc; /* its thread still uses them: the exit frees them */
    }
    lc_free(lookups);
    ac_free(agent);
    conf_free(cf);
    return rc;
}
