#include "daemon/handler.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"
#include "daemon/proto.h"
#include "dkim/tag.h"
#include "dkim/types.h"

struct hd {
    wp *pool;
    mx *m;
    hsm *h;
    kset *ks;
    policy *pol;
    int stopping;
    int token_ok; /* result of the last token operation */
};

/* A queued SIGN: the pool's job plus what the reply and the log line need. */
struct hd_job {
    wp_job job; /* first: the pool hands back &job */
    kset *ks;   /* reference that keeps job.key alive */
    void *conn;
    char domain[AP_MAX_NAME + 1], selector[AP_MAX_NAME + 1];
    enum dkim_alg alg;
    struct timespec t0;
};

static const double latency_bounds[] = {0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128};

int hd_register_metrics(mx *m)
{
    int rc = mx_counter(m, "dkimhsm_signatures_total", "Signatures made, by algorithm");
    if (rc == DH_OK)
        rc = mx_counter(m, "dkimhsm_requests_refused_total", "Requests refused, by reason");
    if (rc == DH_OK)
        rc = mx_counter(m, "dkimhsm_sign_failed_total", "Sign requests that failed, by reason");
    if (rc == DH_OK)
        rc = mx_counter(m, "dkimhsm_token_errors_total", "Token errors, by CKR name");
    if (rc == DH_OK)
        rc = mx_counter(m, "dkimhsm_lookups_total", "Key lookups, by result (found, unsigned)");
    if (rc == DH_OK)
        rc = mx_histogram(m, "dkimhsm_token_sign_ms", "Token time per signature (ms)",
                          latency_bounds, sizeof(latency_bounds) / sizeof(latency_bounds[0]));
    if (rc == DH_OK)
        rc = mx_histogram(m, "dkimhsm_request_ms", "Sign request time in the daemon (ms)",
                          latency_bounds, sizeof(latency_bounds) / sizeof(latency_bounds[0]));
    if (rc == DH_OK)
        rc = mx_histogram(m, "dkimhsm_batch_size", "Signatures per worker batch", batch_bounds,
                          sizeof(batch_bounds) / sizeof(batch_bounds[0]));
    if (rc == DH_OK)
        rc = mx_gauge(m, "dkimhsm_queue_depth", "Digests waiting for a token worker");
    return rc;
}

int hd_new(wp *pool, mx *metrics, hsm *h, hd **out, dh_err *e)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    **out = (hd){.pool = pool, .m = metrics, .h = h, .token_ok = 1};
    return DH_OK;
}

void hd_free(hd *d)
{
    if (d == NULL)
        return;
    kset_unref(d->ks);
    policy_free(d->pol);
    free(d);
}

void hd_set_state(hd *d, kset *keys, policy *pol)
{
    kset_unref(d->ks);
    policy_free(d->pol);
    d->ks = keys;
    d->pol = pol;
}

void hd_set_stopping(hd *d)
{
    d->stopping = 1;
}

int hd_token_ok(const hd *d)
{
    return d->token_ok;
}

size_t hd_keys(const hd *d)
{
    return d->ks ? kset_count(d->ks) : 0;
}

static int str_copy(ap_str s, char *out, size_t cap)
{
    if (s.len == 0 || s.len >= cap || memchr(s.p, '\0', s.len) != NULL)
        return 0;
    for (size_t i = 0; i < s.len; i++)
        out[i] = (char)(s.p[i] >= 'A' && s.p[i] <= 'Z' ? s.p[i] + 32 : s.p[i]);
    out[s.len] = '\0';
    return 1;
}

static enum hd_result reply_sign(hd *d, dh_buf *reply, uint32_t id, uint8_t status,
                                 const char *metric_reason, const char *reason)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "reason=\"%s\"", metric_reason);
    mx_inc(d->m,
           status == AP_REFUSED ? "dkimhsm_requests_refused_total" : "dkimhsm_sign_failed_total",
           labels, 1);
    ap_sign_reply r = {.status = status, .reason = {reason, strlen(reason)}};
    if (ap_encode_sign_reply(reply, id, &r) != DH_OK)
        return HD_CLOSE;
    return HD_REPLIED;
}

/* The DKIM-Signature field ends the block (RFC 6376 §3.7): it starts after the
 * last CRLF that is not a folding point. */
static size_t last_field_start(const uint8_t *b, size_t len)
{
    for (size_t k = len; k >= 2; k--)
        if (b[k - 2] == '\r' && b[k - 1] == '\n' && k < len && b[k] != ' ' && b[k] != '\t')
            return k;
    return 0;
}

static int h_has_from(const char *h)
{
    for (const char *p = h; *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        size_t n = strcspn(p, ":");
        size_t m = n;
        while (m > 0 &&
               (p[m - 1] == ' ' || p[m - 1] == '\t' || p[m - 1] == '\r' || p[m - 1] == '\n'))
            m--;
        if (m == 4 && strncasecmp(p, "from", 4) == 0)
            return 1;
        p += n + (p[n] == ':');
    }
    return 0;
}

static int tag_is(const dkim_tags *t, const char *name, const char *want)
{
    const char *v = dkim_tags_get(t, name, NULL);
    return v != NULL && strcasecmp(v, want) == 0;
}

/* NULL when the block's own DKIM-Signature matches the request, else why not. */
static const char *check_block(const ap_sign *s, const char *domain, const char *selector)
{
    if (s->block_len == 0 || s->block_len < 2 ||
        (s->block[s->block_len - 2] == '\r' && s->block[s->block_len - 1] == '\n'))
        return "block must end with the DKIM-Signature field and no CRLF";
    size_t start = last_field_start(s->block, s->block_len);
    const char *f = (const char *)s->block + start;
    size_t flen = s->block_len - start;
    const char *colon = memchr(f, ':', flen);
    size_t nl = colon ? (size_t)(colon - f) : 0;
    while (nl > 0 && (f[nl - 1] == ' ' || f[nl - 1] == '\t'))
        nl--;
    if (colon == NULL || nl != 14 || strncasecmp(f, "dkim-signature", 14) != 0)
        return "the block does not end with a DKIM-Signature field";
    dkim_tags *t = NULL;
    if (dkim_tags_parse(colon + 1, flen - (size_t)(colon + 1 - f), &t, NULL) != DH_OK)
        return "the DKIM-Signature field is not a valid tag list";
    const char *why = NULL, *b = dkim_tags_get(t, "b", NULL), *h = dkim_tags_get(t, "h", NULL);
    if (!tag_is(t, "v", "1"))
        why = "v= is not 1";
    else if (!tag_is(t, "a", dkim_alg_name(s->alg)))
        why = "a= differs from the request";
    else if (!tag_is(t, "d", domain))
        why = "d= differs from the request";
    else if (!tag_is(t, "s", selector))
        why = "s= differs from the request";
    else if (b == NULL || *b != '\0')
        why = "b= is missing or not empty";
    else if (h == NULL || !h_has_from(h))
        why = "h= does not include from";
    dkim_tags_free(t);
    return why;
}

/* Checks a SIGN request; on success fills the job (key, digest, reference). */
static enum hd_result sign_checked(hd *d, uid_t uid, uint32_t id, const ap_sign *s,
                                   struct hd_job *j, dh_buf *reply)
{
    if (!str_copy(s->domain, j->domain, sizeof(j->domain)) ||
        !str_copy(s->selector, j->selector, sizeof(j->selector)) || s->alg > 1)
        return reply_sign(d, reply, id, AP_BADREQ, "bad_request", "bad domain, selector or alg");
    const kset_key *k = d->ks ? kset_find(d->ks, j->domain, j->selector) : NULL;
    if (k == NULL)
        return reply_sign(d, reply, id, AP_REFUSED, "unknown_selector", "unknown selector");
    if (k->key == NULL)
        return reply_sign(d, reply, id, AP_REFUSED, "selector_unusable",
                          "selector may not sign in its state");
    if ((unsigned)k->alg != s->alg)
        return reply_sign(d, reply, id, AP_REFUSED, "alg_mismatch",
                          "selector holds a key of another algorithm");
    if (!policy_may_sign(d->pol, uid, j->domain))
        return reply_sign(d, reply, id, AP_REFUSED, "uid_not_allowed",
                          "caller may not sign for this domain");
    const char *why = check_block(s, j->domain, j->selector);
    if (why != NULL)
        return reply_sign(d, reply, id, AP_REFUSED, "block_mismatch", why);
    if (EVP_Digest(s->block, s->block_len, j->job.digest, NULL, EVP_sha256(), NULL) != 1)
        return reply_sign(d, reply, id, AP_TEMPFAIL, "internal", "hashing failed");
    j->job.key = k->key;
    j->job.id = id;
    j->alg = k->alg;
    return HD_QUEUED;
}

static enum hd_result handle_sign(hd *d, uid_t uid, void *conn, uint32_t id, const ap_sign *s,
                                  dh_buf *reply)
{
    if (d->stopping)
        return reply_sign(d, reply, id, AP_TEMPFAIL, "stopping", "daemon is stopping");
    struct hd_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return reply_sign(d, reply, id, AP_TEMPFAIL, "internal", "out of memory");
    enum hd_result r = sign_checked(d, uid, id, s, j, reply);
    if (r != HD_QUEUED) {
        free(j);
        return r;
    }
    j->conn = conn;
    j->ks = d->ks;
    kset_ref(j->ks);
    clock_gettime(CLOCK_MONOTONIC, &j->t0);
    int full = 0;
    if (wp_submit(d->pool, &j->job, &full) != DH_OK) {
        kset_unref(j->ks);
        free(j);
        return reply_sign(d, reply, id, AP_TEMPFAIL, full ? "queue_full" : "stopping",
                          full ? "signing queue is full" : "daemon is stopping");
    }
    mx_set(d->m, "dkimhsm_queue_depth", NULL, (double)wp_queue_depth(d->pool));
    return HD_QUEUED;
}

static enum hd_result handle_lookup(hd *d, uint32_t id, ap_str domain_in, dh_buf *reply)
{
    char domain[AP_MAX_NAME + 1];
    ap_lookup_reply r = {.status = AP_OK};
    const kset_key *keys[AP_MAX_LOOKUP];
    const char *signing = NULL;
    size_t n = 0;
    if (!str_copy(domain_in, domain, sizeof(domain))) {
        r.status = AP_BADREQ;
        r.reason = (ap_str){"bad domain", 10};
    } else if (d->ks == NULL ||
               (n = policy_resolve(d->pol, d->ks, domain, keys, AP_MAX_LOOKUP, &signing)) == 0) {
        r.status = AP_NOTFOUND;
        r.reason = (ap_str){"no key signs for this domain", 28};
        mx_inc(d->m, "dkimhsm_lookups_total", "result=\"unsigned\"", 1);
    } else {
        r.domain = (ap_str){signing, strlen(signing)};
        r.count = n;
        for (size_t i = 0; i < n; i++)
            r.sel[i] = (ap_selector){{keys[i]->selector, strlen(keys[i]->selector)},
                                     (uint8_t)keys[i]->alg};
        mx_inc(d->m, "dkimhsm_lookups_total", "result=\"found\"", 1);
    }
    return ap_encode_lookup_reply(reply, id, &r) == DH_OK ? HD_REPLIED : HD_CLOSE;
}

enum hd_result hd_handle(hd *d, uid_t uid, void *conn, const uint8_t *frame, size_t len,
                         dh_buf *reply)
{
    ap_msg m;
    uint32_t id = 0;
    dh_err e = {0};
    if (ap_decode(frame, len, &m, &id, &e) != DH_OK) {
        mx_inc(d->m, "dkimhsm_requests_refused_total", "reason=\"malformed\"", 1);
        dh_log(DH_LOG_WARNING, "agent: malformed request from uid %u: %s", (unsigned)uid, e.msg);
        if (ap_encode_error(reply, id, e.msg) != DH_OK)
            dh_buf_reset(reply);
        return HD_CLOSE;
    }
    switch (m.type) {
    case AP_SIGN:
        return handle_sign(d, uid, conn, m.id, &m.u.sign, reply);
    case AP_LOOKUP:
        return handle_lookup(d, m.id, m.u.lookup_domain, reply);
    case AP_PING:
        return ap_encode_pong(reply, m.id, d->token_ok ? AP_OK : AP_TEMPFAIL) == DH_OK ? HD_REPLIED
                                                                                       : HD_CLOSE;
    default:
        /* A reply type sent to the daemon: refuse, do not stay silent. */
        if (ap_encode_error(reply, m.id, "not a request type") != DH_OK)
            dh_buf_reset(reply);
        return HD_CLOSE;
    }
}

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* "... CKR_PIN_INCORRECT ..." -> the CKR_ word, for the metric label. */
static void ckr_label(const char *reason, char *out, size_t cap)
{
    const char *p = strstr(reason, "CKR_");
    size_t n = p ? strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789x") : 0;
    snprintf(out, cap, "ckr=\"%.*s\"", (int)(n ? n : 7), n ? p : "unknown");
}

void *hd_complete(hd *d, wp_job *job, dh_buf *reply)
{
    struct hd_job *j = (struct hd_job *)job;
    double ms = ms_since(&j->t0);
    ap_sign_reply r = {.status = AP_OK};
    char labels[96];
    d->token_ok = job->status == DH_OK;
    if (job->status == DH_OK) {
        r.sig = job->sig.data;
        r.sig_len = job->sig.len;
        snprintf(labels, sizeof(labels), "alg=\"%s\"", dkim_alg_name(j->alg));
        mx_inc(d->m, "dkimhsm_signatures_total", labels, 1);
    } else {
        r.status = AP_TEMPFAIL;
        r.reason = (ap_str){job->reason, strlen(job->reason)};
        ckr_label(job->reason, labels, sizeof(labels));
        mx_inc(d->m, "dkimhsm_token_errors_total", labels, 1);
        mx_inc(d->m, "dkimhsm_sign_failed_total", "reason=\"token\"", 1);
    }
    mx_observe(d->m, "dkimhsm_token_sign_ms", NULL, job->token_ms);
    mx_observe(d->m, "dkimhsm_request_ms", NULL, ms);
    mx_observe(d->m, "dkimhsm_batch_size", NULL, job->batch);
    mx_set(d->m, "dkimhsm_queue_depth", NULL, (double)wp_queue_depth(d->pool));
    dh_log(job->status == DH_OK ? DH_LOG_INFO : DH_LOG_ERR,
           "sign d=%s s=%s a=%s result=%s ms=%.2f%s%s", j->domain, j->selector,
           dkim_alg_name(j->alg), job->status == DH_OK ? "ok" : "tempfail", ms,
           job->status == DH_OK ? "" : " error=", job->status == DH_OK ? "" : job->reason);
    if (ap_encode_sign_reply(reply, job->id, &r) != DH_OK)
        dh_log(DH_LOG_ERR, "agent: cannot encode a reply (out of memory)");
    void *conn = j->conn;
    dh_buf_free(&job->sig);
    kset_unref(j->ks);
    free(j);
    return conn;
}
