/*
 * api.c - the management API (docs/API.md): bearer-token check, routing,
 * a strict parser for the small JSON request bodies, and one handler per
 * route. The rules are lifecycle/'s; this file turns requests into lf_*
 * calls and their results into JSON.
 */
#include "daemon/api.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/file.h"
#include "common/hex.h"
#include "common/isotime.h"
#include "common/json.h"
#include "common/log.h"
#include "dkim/record.h"

#define TOKEN_MIN 16      /* bytes: shorter tokens are guessable over the network */
#define MAX_SEG 6         /* path segments after /api/v1/ */
#define SEG_LEN 256       /* a DNS name is at most 253 bytes */
#define API_MAX_BITS 8192 /* RSA generation blocks the loop: conf's rsa_bits bound */

struct api {
    api_config cfg;
    /* Only the token's SHA-256 is kept: requests are compared by hash, in
     * constant time, so the token itself is not held in memory. */
    uint8_t token_hash[32];
    char actor[16]; /* "api:" + 8 hex of the hash: names the token, reveals nothing */
};

/* ---- the request body: one flat JSON object ------------------------------ */

enum jtype { J_STR, J_BOOL, J_INT };

typedef struct jmember {
    char key[32];
    enum jtype type;
    char str[SEG_LEN];
    long long num; /* J_INT, and J_BOOL as 0/1 */
} jmember;

typedef struct jobj {
    jmember m[8];
    size_t n;
} jobj;

typedef struct jparse {
    const uint8_t *start, *p, *end;
    dh_err *e;
} jparse;

static int jerr(jparse *j, const char *what)
{
    return dh_err_set(j->e, DH_EINVAL, "request body is not valid JSON: %s at byte %zu", what,
                      (size_t)(j->p - j->start));
}

static void jws(jparse *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int jlit(jparse *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return jerr(j, "unexpected token");
    j->p += n;
    return DH_OK;
}

static int hexval(uint8_t c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* \uXXXX: only ASCII (names and options are ASCII). */
static int junicode(jparse *j, char *c)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = j->p < j->end ? hexval(*j->p++) : -1;
        if (h < 0)
            return jerr(j, "bad \\u escape");
        v = v << 4 | (unsigned)h;
    }
    if (v == 0 || v >= 0x80)
        return jerr(j, "\\u escape outside printable ASCII");
    *c = (char)v;
    return DH_OK;
}

static int jescape(jparse *j, char *c)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (j->p >= j->end)
        return jerr(j, "unterminated string");
    uint8_t x = *j->p++;
    if (x == 'u')
        return junicode(j, c);
    const char *at = x ? strchr(from, x) : NULL;
    if (at == NULL)
        return jerr(j, "bad escape");
    *c = to[at - from];
    return DH_OK;
}

static int jstring(jparse *j, char *out, size_t cap)
{
    size_t n = 0;
    if (j->p >= j->end || *j->p != '"')
        return jerr(j, "expected a string");
    j->p++;
    for (;;) {
        if (j->p >= j->end)
            return jerr(j, "unterminated string");
        uint8_t x = *j->p++;
        char c = (char)x;
        if (x == '"')
            break;
        if (x < 0x20 || x >= 0x80)
            return jerr(j, "control or non-ASCII byte in a string");
        if (x == '\\' && jescape(j, &c) != DH_OK)
            return DH_EINVAL;
        if (n + 1 >= cap)
            return jerr(j, "string too long");
        out[n++] = c;
    }
    out[n] = '\0';
    return DH_OK;
}

/* Integers only: no fraction, no exponent, at most 15 digits. */
static int jint(jparse *j, long long *out)
{
    int neg = 0, digits = 0;
    long long v = 0;
    if (*j->p == '-') {
        neg = 1;
        j->p++;
    }
    const uint8_t *first = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9' && digits < 16) {
        v = v * 10 + (*j->p++ - '0');
        digits++;
    }
    if (digits == 0 || digits > 15 || (digits > 1 && *first == '0'))
        return jerr(j, "bad number");
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return jerr(j, "numbers must be integers");
    *out = neg ? -v : v;
    return DH_OK;
}

static int jvalue(jparse *j, jmember *m)
{
    if (j->p >= j->end)
        return jerr(j, "expected a value");
    uint8_t x = *j->p;
    if (x == '"') {
        m->type = J_STR;
        return jstring(j, m->str, sizeof(m->str));
    }
    if (x == 't' || x == 'f') {
        m->type = J_BOOL;
        m->num = x == 't';
        return jlit(j, x == 't' ? "true" : "false");
    }
    if (x == '-' || (x >= '0' && x <= '9')) {
        m->type = J_INT;
        return jint(j, &m->num);
    }
    return jerr(j, "values must be strings, true, false or integers");
}

static int jmember_parse(jparse *j, jobj *o)
{
    if (o->n == sizeof(o->m) / sizeof(o->m[0]))
        return jerr(j, "too many members");
    jmember *m = &o->m[o->n];
    memset(m, 0, sizeof(*m));
    if (jstring(j, m->key, sizeof(m->key)) != DH_OK)
        return DH_EINVAL;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->m[i].key, m->key) == 0)
            return jerr(j, "repeated member");
    jws(j);
    if (j->p >= j->end || *j->p++ != ':')
        return jerr(j, "expected ':'");
    jws(j);
    if (jvalue(j, m) != DH_OK)
        return DH_EINVAL;
    o->n++;
    return DH_OK;
}

/* An empty body is an empty object; anything else must be exactly one flat
 * object, with nothing after it. */
static int jobj_parse(const uint8_t *body, size_t len, jobj *o, dh_err *e)
{
    jparse j = {body, body, body + len, e};
    memset(o, 0, sizeof(*o));
    jws(&j);
    if (j.p == j.end)
        return DH_OK;
    if (*j.p++ != '{')
        return jerr(&j, "expected an object");
    jws(&j);
    if (j.p < j.end && *j.p == '}') {
        j.p++;
    } else {
        for (;;) {
            jws(&j);
            if (jmember_parse(&j, o) != DH_OK)
                return DH_EINVAL;
            jws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (j.p < j.end && *j.p == '}') {
                j.p++;
                break;
            }
            return jerr(&j, "expected ',' or '}'");
        }
    }
    jws(&j);
    return j.p == j.end ? DH_OK : jerr(&j, "trailing bytes");
}

/* The member named key with type t, or NULL when absent; a member of
 * another type is an error. */
static int jget(const jobj *o, const char *key, enum jtype t, const jmember **out, dh_err *e)
{
    static const char *const names[] = {"a string", "true or false", "an integer"};
    *out = NULL;
    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->m[i].key, key) != 0)
            continue;
        if (o->m[i].type != t)
            return dh_err_set(e, DH_EINVAL, "'%s' must be %s", key, names[t]);
        *out = &o->m[i];
    }
    return DH_OK;
}

/* Refuses members other than those in allowed (NULL-terminated). */
static int jonly(const jobj *o, const char *const *allowed, dh_err *e)
{
    for (size_t i = 0; i < o->n; i++) {
        size_t k = 0;
        while (allowed[k] && strcmp(allowed[k], o->m[i].key) != 0)
            k++;
        if (allowed[k] == NULL)
            return dh_err_set(e, DH_EINVAL, "unknown member '%s' in the request body", o->m[i].key);
    }
    return DH_OK;
}

/* ---- JSON output --------------------------------------------------------- */

/* Appends lead (literal JSON) and then v as a JSON string, or null. */
static int put_str(dh_buf *b, const char *lead, const char *v)
{
    int rc = dh_buf_puts(b, lead);
    if (rc == DH_OK)
        rc = v ? dh_json_str(b, v) : dh_buf_puts(b, "null");
    return rc;
}

/* ,"records":[...] for domain (selector NULL: all of its keys). */
static int json_records(dh_buf *b, lf_ctx *lf, const char *domain, const char *selector, dh_err *e)
{
    lf_record *r = NULL;
    size_t n = 0;
    int rc = lf_records(lf, domain, selector, &r, &n, e);
    if (rc == DH_ENOTFOUND) /* nothing to publish (every key destroyed) */
        rc = DH_OK;
    if (rc == DH_OK)
        rc = dh_buf_puts(b, ",\"records\":[");
    for (size_t i = 0; rc == DH_OK && i < n; i++)
        if ((rc = i ? dh_buf_putc(b, ',') : DH_OK) == DH_OK)
            rc = lf_record_json(&r[i], b);
    if (rc == DH_OK)
        rc = dh_buf_putc(b, ']');
    lf_records_free(r, n);
    return rc;
}

/* The members of one key, without the braces. */
static int json_key_members(dh_buf *b, const ks_selector *s, dh_err *e)
{
    char created[32], changed[32], fp[AU_HASH_HEX];
    dh_iso_time(s->created, created);
    dh_iso_time(s->state_changed, changed);
    int rc = au_fingerprint(s->public_key, fp, e);
    if (rc == DH_OK)
        rc = put_str(b, "\"domain\":", s->domain);
    if (rc == DH_OK)
        rc = put_str(b, ",\"selector\":", s->selector);
    if (rc == DH_OK)
        rc = dh_buf_printf(b,
                           ",\"state\":\"%s\",\"state_changed\":\"%s\",\"algorithm\":\"%s\","
                           "\"bits\":%u,\"created\":\"%s\",\"fingerprint\":\"%s\","
                           "\"custody\":\"%s\",\"key_id\":\"%s\"",
                           ks_state_name(s->state), changed, dkim_alg_name(s->alg), s->bits,
                           created, fp, ks_custody_name(s->custody), s->key_id);
    if (rc == DH_OK)
        rc = put_str(b, ",\"predecessor\":", s->predecessor);
    return rc;
}

static int json_key(dh_buf *b, const ks_selector *s, dh_err *e)
{
    int rc = dh_buf_putc(b, '{');
    if (rc == DH_OK)
        rc = json_key_members(b, s, e);
    if (rc == DH_OK)
        rc = dh_buf_putc(b, '}');
    return rc;
}

static int json_seen(dh_buf *b, const lf_seen *s)
{
    int rc = put_str(b, ",\"dns\":{\"status\":", s->status[0] ? s->status : "unknown");
    if (rc == DH_OK)
        rc = put_str(b, ",\"reason\":", s->reason);
    if (rc == DH_OK)
        rc = dh_buf_putc(b, '}');
    return rc;
}

/* ---- the routes ---------------------------------------------------------- */

/* One request on its way through a handler. d and s are normalized names
 * (ks_normalize_name, as lifecycle/ does); out gets the success body. */
typedef struct call {
    api *a;
    lf_ctx *lf;
    const char *actor;
    char *d, *s;
    const jobj *body;
    int destroy_query; /* DELETE ...?destroy=1 */
    dh_buf *out;
    int status;  /* on success: 200 unless the handler says 201 */
    int changed; /* the handler changed something: the daemon reloads its keys */
} call;

static int get_domains(call *c, dh_err *e)
{
    ks_selector *l = NULL;
    size_t n = 0;
    int rc = ks_list(c->lf->store, NULL, &l, &n, e);
    if (rc == DH_OK)
        rc = dh_buf_puts(c->out, "{\"domains\":[");
    /* ks_list orders by domain: one entry per run of rows. */
    for (size_t i = 0, first = 1; rc == DH_OK && i < n; first = 0) {
        size_t j = i, live = 0;
        rc = put_str(c->out, first ? "{\"domain\":" : ",{\"domain\":", l[i].domain);
        if (rc == DH_OK)
            rc = dh_buf_puts(c->out, ",\"active\":[");
        for (size_t na = 0; rc == DH_OK && j < n && strcmp(l[j].domain, l[i].domain) == 0; j++) {
            live += l[j].state != KS_DESTROYED;
            if (l[j].state == KS_ACTIVE)
                rc = put_str(c->out, na++ ? "," : "", l[j].selector);
        }
        if (rc == DH_OK)
            rc = dh_buf_printf(c->out, "],\"keys\":%zu}", live);
        i = j;
    }
    if (rc == DH_OK)
        rc = dh_buf_puts(c->out, "]}");
    ks_list_free(l, n);
    return rc;
}

static int get_keys(call *c, dh_err *e)
{
    ks_selector *l = NULL;
    size_t n = 0;
    int rc = ks_list(c->lf->store, c->d, &l, &n, e);
    if (rc == DH_OK && n == 0)
        rc = dh_err_set(e, DH_ENOTFOUND, "domain %s has no keys", c->d);
    if (rc == DH_OK)
        rc = put_str(c->out, "{\"domain\":", c->d);
    if (rc == DH_OK)
        rc = dh_buf_puts(c->out, ",\"keys\":[");
    for (size_t i = 0; rc == DH_OK && i < n; i++)
        if ((rc = i ? dh_buf_putc(c->out, ',') : DH_OK) == DH_OK)
            rc = json_key(c->out, &l[i], e);
    if (rc == DH_OK)
        rc = dh_buf_puts(c->out, "]}");
    ks_list_free(l, n);
    return rc;
}

static int parse_alg(const jobj *o, int *alg, dh_err *e)
{
    const jmember *m = NULL;
    enum dkim_alg a;
    *alg = -1;
    int rc = jget(o, "alg", J_STR, &m, e);
    if (rc == DH_OK && m && dkim_alg_parse(m->str, &a, NULL) != DH_OK)
        rc = dh_err_set(e, DH_EINVAL, "alg: '%s' is not rsa or ed25519", m->str);
    if (rc == DH_OK && m)
        *alg = (int)a;
    return rc;
}

/* A domain takes PUT only when it has no key that is not destroyed. */
static int domain_empty(call *c, dh_err *e)
{
    ks_selector *l = NULL;
    size_t n = 0;
    dh_buf names = {0};
    int rc = ks_list(c->lf->store, c->d, &l, &n, e);
    for (size_t i = 0; rc == DH_OK && i < n; i++)
        if (l[i].state != KS_DESTROYED)
            rc = dh_buf_printf(&names, "%s%s %s", names.len ? ", " : "", l[i].selector,
                               ks_state_name(l[i].state));
    if (rc == DH_OK && names.len)
        rc = dh_err_set(e, DH_EEXIST,
                        "domain %s already has keys (%s): rotate them, or DELETE them with "
                        "?destroy=1 first",
                        c->d, (char *)names.data);
    dh_buf_free(&names);
    ks_list_free(l, n);
    return rc;
}

/* PUT: the algorithm's two alternate names (lf_alternate_names: selector1
 * and selector2 for RSA), both created, as hosted DKIM services give a
 * customer two names to publish at once. The second is recorded as the
 * successor of the first, so that `rotate` after activating the first
 * switches to it once DNS shows it. */
static int put_keys(call *c, dh_err *e)
{
    static const char *const allowed[] = {"alg", "bits", NULL};
    const jmember *bits = NULL;
    int alg;
    ks_selector k1 = {0}, k2 = {0};
    int rc = jonly(c->body, allowed, e);
    if (rc == DH_OK)
        rc = parse_alg(c->body, &alg, e);
    if (rc == DH_OK)
        rc = jget(c->body, "bits", J_INT, &bits, e);
    if (rc == DH_OK && bits && (bits->num < 1024 || bits->num > API_MAX_BITS))
        rc = dh_err_set(e, DH_EINVAL, "bits: %lld is not a key size the API creates (1024 to %d)",
                        bits->num, API_MAX_BITS);
    if (rc == DH_OK)
        rc = domain_empty(c, e);
    if (rc != DH_OK)
        return rc;
    enum dkim_alg a = alg < 0 ? DKIM_ALG_RSA_SHA256 : (enum dkim_alg)alg;
    unsigned nbits = bits ? (unsigned)bits->num : 0;
    const char *names[2];
    lf_alternate_names(a, names);
    rc = lf_create(c->lf, c->d, names[0], a, nbits, NULL, c->actor, &k1, e);
    if (rc == DH_OK) {
        c->changed = 1;
        rc = lf_create(c->lf, c->d, names[1], a, nbits, names[0], c->actor, &k2, e);
        dh_err ue = {0};
        /* Both or neither: the first goes again (its audit entries stay). */
        if (rc != DH_OK && lf_revoke(c->lf, c->d, names[0], 1, c->actor, &ue) != DH_OK)
            dh_err_prefix(e, "(%s could not be removed again: %s)", names[0], ue.msg);
    }
    if (rc == DH_OK)
        rc = put_str(c->out, "{\"domain\":", c->d);
    if (rc == DH_OK)
        rc = dh_buf_puts(c->out, ",\"keys\":[");
    if (rc == DH_OK)
        rc = json_key(c->out, &k1, e);
    if (rc == DH_OK && (rc = dh_buf_putc(c->out, ',')) == DH_OK)
        rc = json_key(c->out, &k2, e);
    if (rc == DH_OK)
        rc = dh_buf_putc(c->out, ']');
    /* Records in the order of the keys. */
    lf_record *r1 = NULL, *r2 = NULL;
    size_t n1 = 0, n2 = 0;
    if (rc == DH_OK)
        rc = lf_records(c->lf, c->d, names[0], &r1, &n1, e);
    if (rc == DH_OK)
        rc = lf_records(c->lf, c->d, names[1], &r2, &n2, e);
    if (rc == DH_OK && (n1 != 1 || n2 != 1))
        rc = dh_err_set(e, DH_EDB, "new keys of %s: unexpected records", c->d);
    if (rc == DH_OK && (rc = dh_buf_puts(c->out, ",\"records\":[")) == DH_OK)
        rc = lf_record_json(r1, c->out);
    if (rc == DH_OK && (rc = dh_buf_putc(c->out, ',')) == DH_OK)
        rc = lf_record_json(r2, c->out);
    if (rc == DH_OK)
        rc = dh_buf_puts(c->out, "]}");
    lf_records_free(r1, n1);
    lf_records_free(r2, n2);
    ks_selector_clear(&k1);
    ks_selector_clear(&k2);
    c->status = 201;
    return rc;
}

/* One key of DELETE: revoke unless revoked; destroy when asked. Appends
 * the name to revoked / destroyed. */
static int delete_one(call *c, const ks_selector *k, dh_buf *revoked, dh_buf *destroyed, dh_err *e)
{
    int rc = DH_OK;
    if (k->state != KS_REVOKED) {
        rc = lf_revoke(c->lf, c->d, k->selector, 0, c->actor, e);
        if (rc == DH_OK)
            rc = put_str(revoked, revoked->len ? "," : "", k->selector);
        c->changed |= rc == DH_OK;
    }
    if (rc == DH_OK && c->destroy_query) {
        rc = lf_destroy(c->lf, c->d, k->selector, c->actor, e);
        if (rc == DH_OK)
            rc = put_str(destroyed, destroyed->len ? "," : "", k->selector);
        c->changed |= rc == DH_OK;
    }
    return rc;
}

/* DELETE: every key of the domain that is not revoked (or destroyed) is
 * revoked; with ?destroy=1 every revoked key is destroyed as well. Each key
 * is its own transaction: on a failure the reply says what was done. */
static int delete_keys(call *c, dh_err *e)
{
    static const char *const allowed[] = {NULL};
    ks_selector *l = NULL;
    size_t n = 0;
    dh_buf revoked = {0}, destroyed = {0};
    int rc = jonly(c->body, allowed, e);
    if (rc == DH_OK)
        rc = ks_list(c->lf->store, c->d, &l, &n, e);
    if (rc == DH_OK && n == 0)
        rc = dh_err_set(e, DH_ENOTFOUND, "domain %s has no keys", c->d);
    for (size_t i = 0; rc == DH_OK && i < n; i++)
        if (l[i].state != KS_DESTROYED)
            rc = delete_one(c, &l[i], &revoked, &destroyed, e);
    if (rc != DH_OK && (revoked.len || destroyed.len))
        dh_err_prefix(e, "done before the failure: revoked [%s], destroyed [%s]",
                      revoked.len ? (char *)revoked.data : "",
                      destroyed.len ? (char *)destroyed.data : "");
    if (rc == DH_OK)
        rc = put_str(c->out, "{\"domain\":", c->d);
    if (rc == DH_OK)
        rc = dh_buf_printf(c->out, ",\"revoked\":[%s],\"destroyed\":[%s]",
                           revoked.len ? (char *)revoked.data : "",
                           destroyed.len ? (char *)destroyed.data : "");
    if (rc == DH_OK)
        rc = json_records(c->out, c->lf, c->d, NULL, e);
    if (rc == DH_OK)
        rc = dh_buf_putc(c->out, '}');
    dh_buf_free(&revoked);
    dh_buf_free(&destroyed);
    ks_list_free(l, n);
    return rc;
}

static int json_token_custody(dh_buf *b, const lf_info *i)
{
    if (!i->custody_known) {
        int rc = put_str(b, ",\"token\":{\"error\":", i->custody_error);
        return rc == DH_OK ? dh_buf_putc(b, '}') : rc;
    }
    const hsm_custody *h = &i->custody;
    const int v[] = {h->sensitive, h->extractable, h->always_sensitive, h->never_extractable,
                     h->local};
    const char *k[] = {"sensitive", "extractable", "always_sensitive", "never_extractable",
                       "local"};
    int rc = dh_buf_puts(b, ",\"token\":{");
    for (int j = 0; rc == DH_OK && j < 5; j++)
        rc = dh_buf_printf(b, "%s\"%s\":%s", j ? "," : "", k[j],
                           v[j] < 0 ? "null"
                           : v[j]   ? "true"
                                    : "false");
    if (rc == DH_OK)
        rc = dh_buf_putc(b, '}');
    return rc;
}

static int json_history(dh_buf *b, const lf_info *i)
{
    int rc = dh_buf_puts(b, ",\"history\":[");
    for (size_t h = 0; rc == DH_OK && h < i->nhistory; h++) {
        const ks_history *x = &i->history[h];
        char t[32];
        dh_iso_time(x->time, t);
        rc = dh_buf_printf(b, "%s{\"time\":\"%s\",\"from\":", h ? "," : "", t);
        if (rc == DH_OK)
            rc = put_str(b, "", x->from_set ? ks_state_name(x->from) : NULL);
        if (rc == DH_OK)
            rc = dh_buf_printf(b, ",\"to\":\"%s\"", ks_state_name(x->to));
        if (rc == DH_OK)
            rc = put_str(b, ",\"actor\":", x->actor);
        if (rc == DH_OK)
            rc = put_str(b, ",\"note\":", x->note);
        if (rc == DH_OK)
            rc = dh_buf_putc(b, '}');
    }
    if (rc == DH_OK)
        rc = dh_buf_putc(b, ']');
    return rc;
}

static int get_key(call *c, dh_err *e)
{
    static const char *const allowed[] = {NULL};
    lf_info info;
    int rc = jonly(c->body, allowed, e);
    if (rc == DH_OK)
        rc = lf_show(c->lf, c->d, c->s, &info, e);
    if (rc != DH_OK)
        return rc;
    const ks_selector *k = &info.key;
    rc = dh_buf_putc(c->out, '{');
    if (rc == DH_OK)
        rc = json_key_members(c->out, k, e);
    if (rc == DH_OK && k->state == KS_RETIRING) {
        char until[32];
        dh_iso_time(k->retiring_since + c->lf->retire_after, until);
        rc = dh_buf_printf(c->out, ",\"retire_at\":\"%s\"", until);
    }
    if (rc == DH_OK)
        rc = json_token_custody(c->out, &info);
    if (rc == DH_OK)
        rc = json_history(c->out, &info);
    if (rc == DH_OK)
        rc = json_records(c->out, c->lf, c->d, c->s, e);
    if (rc == DH_OK)
        rc = dh_buf_putc(c->out, '}');
    lf_info_clear(&info);
    return rc;
}

static int post_activate(call *c, dh_err *e)
{
    static const char *const allowed[] = {"force", NULL};
    const jmember *force = NULL;
    lf_seen seen;
    int rc = jonly(c->body, allowed, e);
    if (rc == DH_OK)
        rc = jget(c->body, "force", J_BOOL, &force, e);
    if (rc == DH_OK)
        rc = lf_activate(c->lf, c->d, c->s, force && force->num, c->actor, &seen, e);
    if (rc != DH_OK)
        return rc;
    c->changed = 1;
    rc = put_str(c->out, "{\"domain\":", c->d);
    if (rc == DH_OK)
        rc = put_str(c->out, ",\"selector\":", c->s);
    if (rc == DH_OK)
        rc = dh_buf_printf(c->out, ",\"state\":\"active\",\"forced\":%s",
                           force && force->num ? "true" : "false");
    if (rc == DH_OK)
        rc = json_seen(c->out, &seen);
    if (rc == DH_OK)
        rc = dh_buf_putc(c->out, '}');
    return rc;
}

static int post_revoke(call *c, dh_err *e)
{
    static const char *const allowed[] = {"destroy", NULL};
    const jmember *destroy = NULL;
    int rc = jonly(c->body, allowed, e);
    if (rc == DH_OK)
        rc = jget(c->body, "destroy", J_BOOL, &destroy, e);
    int d = destroy && destroy->num;
    if (rc == DH_OK)
        rc = lf_revoke(c->lf, c->d, c->s, d, c->actor, e);
    if (rc != DH_OK)
        return rc;
    c->changed = 1;
    rc = put_str(c->out, "{\"domain\":", c->d);
    if (rc == DH_OK)
        rc = put_str(c->out, ",\"selector\":", c->s);
    if (rc == DH_OK)
        rc = dh_buf_printf(c->out, ",\"state\":\"%s\"", d ? "destroyed" : "revoked");
    if (rc == DH_OK)
        rc = json_records(c->out, c->lf, c->d, c->s, e);
    if (rc == DH_OK)
        rc = dh_buf_putc(c->out, '}');
    return rc;
}

static int post_rotate(call *c, dh_err *e)
{
    static const char *const allowed[] = {"alg", NULL};
    static const char *const steps[] = {"created", "waiting", "switched"};
    lf_rotation r;
    int alg;
    int rc = jonly(c->body, allowed, e);
    if (rc == DH_OK)
        rc = parse_alg(c->body, &alg, e);
    if (rc == DH_OK)
        rc = lf_rotate(c->lf, c->d, alg, c->actor, &r, e);
    if (rc != DH_OK)
        return rc;
    c->changed = r.step != LF_ROTATE_WAITING;
    c->status = r.step == LF_ROTATE_CREATED ? 201 : 200;
    rc = put_str(c->out, "{\"domain\":", c->d);
    if (rc == DH_OK)
        rc = dh_buf_printf(c->out, ",\"step\":\"%s\",\"algorithm\":\"%s\"", steps[r.step],
                           dkim_alg_name(r.alg));
    if (rc == DH_OK)
        rc = put_str(c->out, ",\"selector\":", r.selector);
    if (rc == DH_OK)
        rc = put_str(c->out, ",\"replaces\":", r.old);
    if (rc == DH_OK && r.step != LF_ROTATE_CREATED)
        rc = json_seen(c->out, &r.seen);
    /* Until the switch, the successor's record is what to publish. */
    if (rc == DH_OK && r.step != LF_ROTATE_SWITCHED)
        rc = json_records(c->out, c->lf, c->d, r.selector, e);
    if (rc == DH_OK)
        rc = dh_buf_putc(c->out, '}');
    lf_rotation_clear(&r);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------ */

typedef int (*route_fn)(call *c, dh_err *e);

/* Segments after /api/v1/; NULL in lit is a name (domain, then selector). */
static const struct route {
    size_t nseg;
    const char *lit[5];
    enum api_method method;
    route_fn fn;
    const char *allow;
    int query; /* takes ?destroy= */
} routes[] = {
    {1, {"domains"}, API_GET, get_domains, "GET", 0},
    {3, {"domains", NULL, "keys"}, API_GET, get_keys, "GET, PUT, DELETE", 0},
    {3, {"domains", NULL, "keys"}, API_PUT, put_keys, "GET, PUT, DELETE", 0},
    {3, {"domains", NULL, "keys"}, API_DELETE, delete_keys, "GET, PUT, DELETE", 1},
    {3, {"domains", NULL, "rotate"}, API_POST, post_rotate, "POST", 0},
    {4, {"domains", NULL, "keys", NULL}, API_GET, get_key, "GET", 0},
    {5, {"domains", NULL, "keys", NULL, "activate"}, API_POST, post_activate, "POST", 0},
    {5, {"domains", NULL, "keys", NULL, "revoke"}, API_POST, post_revoke, "POST", 0},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* Splits the path after /api/v1/ into at most MAX_SEG non-empty segments. */
static int split_path(const char *path, char seg[MAX_SEG][SEG_LEN], size_t *n)
{
    static const char prefix[] = "/api/v1/";
    *n = 0;
    if (path == NULL || strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return -1;
    const char *p = path + sizeof(prefix) - 1;
    for (;;) {
        size_t len = strcspn(p, "/");
        if (len == 0 || len >= SEG_LEN || *n == MAX_SEG)
            return -1;
        memcpy(seg[*n], p, len);
        seg[(*n)++][len] = '\0';
        if (p[len] == '\0')
            return 0;
        p += len + 1;
    }
}

static int route_matches(const struct route *r, char seg[MAX_SEG][SEG_LEN], size_t n)
{
    if (r->nseg != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (r->lit[i] && strcmp(r->lit[i], seg[i]) != 0)
            return 0;
    return 1;
}

/* ?destroy=1|true|0|false, nothing else. */
static int parse_query(const char *q, int *destroy, dh_err *e)
{
    *destroy = 0;
    if (q == NULL || *q == '\0')
        return DH_OK;
    if (strcmp(q, "destroy=1") == 0 || strcmp(q, "destroy=true") == 0)
        *destroy = 1;
    else if (strcmp(q, "destroy=0") != 0 && strcmp(q, "destroy=false") != 0)
        return dh_err_set(e, DH_EINVAL, "query: only destroy=1 or destroy=0 is understood");
    return DH_OK;
}

int api_http_status(int st)
{
    switch (st) {
    case DH_OK:
        return 200;
    case DH_EINVAL:
    case DH_EUSAGE:
        return 400;
    case DH_ENOTFOUND:
        return 404;
    case DH_ESTATE:
    case DH_EEXIST:
        return 409;
    case DH_EIO:
    case DH_ETOKEN:
    case DH_ELOGIN:
        return 503;
    default:
        return 500;
    }
}

static void reply_error(api_reply *out, int status, const char *msg)
{
    dh_buf_reset(&out->body);
    out->status = status;
    if (put_str(&out->body, "{\"error\":", msg) != DH_OK || dh_buf_puts(&out->body, "}\n"))
        out->status = 500; /* out of memory: the status still says so */
}

/* Names from the path, normalized as lifecycle/ normalizes them (same
 * errors), then the body and the query; then the handler. */
static int run_route(api *a, const struct route *rt, char seg[MAX_SEG][SEG_LEN],
                     const api_request *r, api_reply *out, dh_err *e)
{
    jobj body;
    call c = {.a = a, .lf = a->cfg.life, .actor = a->actor, .out = &out->body, .status = 200};
    int rc = DH_OK;
    if (rt->nseg >= 2)
        rc = ks_normalize_name(seg[1], "domain", &c.d, e);
    if (rc == DH_OK && rt->nseg >= 4)
        rc = ks_normalize_name(seg[3], "selector", &c.s, e);
    if (rc == DH_OK)
        rc = jobj_parse(r->body, r->body_len, &body, e);
    c.body = &body;
    if (rc == DH_OK && !rt->query && r->query && *r->query)
        rc = dh_err_set(e, DH_EINVAL, "this resource takes no query");
    if (rc == DH_OK && rt->query)
        rc = parse_query(r->query, &c.destroy_query, e);
    if (rc == DH_OK)
        rc = rt->fn(&c, e);
    if (c.changed && a->cfg.changed)
        a->cfg.changed(a->cfg.arg);
    if (rc == DH_OK)
        rc = dh_buf_putc(&out->body, '\n');
    out->status = rc == DH_OK ? c.status : api_http_status(rc);
    free(c.d);
    free(c.s);
    return rc;
}

static void dispatch(api *a, const api_request *r, api_reply *out, dh_err *e)
{
    char seg[MAX_SEG][SEG_LEN];
    size_t n;
    const struct route *path_match = NULL;
    if (split_path(r->path, seg, &n) == 0) {
        for (size_t i = 0; i < NROUTES; i++) {
            if (!route_matches(&routes[i], seg, n))
                continue;
            path_match = &routes[i];
            if (routes[i].method == r->method) {
                int rc = run_route(a, &routes[i], seg, r, out, e);
                if (rc != DH_OK)
                    reply_error(out, out->status, e->msg[0] ? e->msg : dh_strstatus(rc));
                return;
            }
        }
    }
    if (path_match) {
        out->allow = path_match->allow;
        dh_err_set(e, DH_EINVAL, "method not allowed; allowed: %s", path_match->allow);
        reply_error(out, 405, e->msg);
    } else {
        dh_err_set(e, DH_ENOTFOUND, "no such resource");
        reply_error(out, 404, e->msg);
    }
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
    unsigned len = 32;
    if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1)
        abort(); /* libcrypto cannot hash: nothing sensible is left to do */
}

/* 0 ok, 401 no bearer token, 403 a wrong one. RFC 6750 §2.1: the scheme is
 * case-insensitive; the token is compared by its SHA-256, in constant time,
 * so neither its bytes nor its length leak through timing. */
static int check_auth(const api *a, const char *h, const char **why)
{
    uint8_t got[32];
    if (h == NULL) {
        *why = "no Authorization header";
        return 401;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        *why = "Authorization is not a bearer token";
        return 401;
    }
    h += 7;
    while (*h == ' ')
        h++;
    size_t len = strlen(h);
    while (len > 0 && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    sha256(h, len, got);
    int bad = CRYPTO_memcmp(got, a->token_hash, sizeof(got)) != 0;
    OPENSSL_cleanse(got, sizeof(got));
    *why = bad ? "wrong token" : "";
    return bad ? 403 : 0;
}

static const char *method_name(enum api_method m)
{
    static const char *const names[] = {"GET", "PUT", "POST", "DELETE", "?"};
    return names[m <= API_OTHER ? m : API_OTHER];
}

/* The path as it may go into a log line: printable ASCII, at most 200 bytes. */
static void log_path(const char *path, char out[201])
{
    size_t i = 0;
    for (; path && path[i] && i < 200; i++)
        out[i] = path[i] > 0x20 && path[i] < 0x7f ? path[i] : '?';
    out[i] = '\0';
}

void api_handle(api *a, const api_request *r, api_reply *out)
{
    dh_err e = {0};
    char path[201];
    const char *why = "";
    memset(out, 0, sizeof(*out));
    log_path(r->path, path);
    int denied = check_auth(a, r->authorization, &why);
    if (denied) {
        out->challenge = denied == 401;
        reply_error(out, denied,
                    denied == 401 ? "authentication required: "
                                    "Authorization: Bearer TOKEN"
                                  : "wrong token");
        dh_log(DH_LOG_WARNING, "api: %s %s from %s: %d (%s)", method_name(r->method), path,
               r->peer ? r->peer : "?", denied, why);
        return;
    }
    if (r->body_len > API_MAX_BODY) {
        dh_err_set(&e, DH_EINVAL, "request body over %d bytes", API_MAX_BODY);
        reply_error(out, 413, e.msg);
    } else {
        dispatch(a, r, out, &e);
    }
    /* The token never appears here: the actor names it by hash. */
    if (out->status >= 400)
        dh_log(DH_LOG_INFO, "api: %s %s %s: %d (%s)", a->actor, method_name(r->method), path,
               out->status, e.msg);
    else
        dh_log(DH_LOG_INFO, "api: %s %s %s: %d", a->actor, method_name(r->method), path,
               out->status);
}

/* Visible ASCII only (RFC 6750 b64token is a subset), and long enough. */
static int token_ok(const dh_buf *t, const char *path, dh_err *e)
{
    if (t->len < TOKEN_MIN)
        return dh_err_set(e, DH_ECONFIG, "api_token_file %s: token shorter than %d bytes", path,
                          TOKEN_MIN);
    for (size_t i = 0; i < t->len; i++)
        if (t->data[i] <= 0x20 || t->data[i] >= 0x7f)
            return dh_err_set(e, DH_ECONFIG,
                              "api_token_file %s: the token must be one line of visible ASCII "
                              "(no spaces)",
                              path);
    return DH_OK;
}

int api_new(const api_config *cfg, api **out, dh_err *e)
{
    *out = NULL;
    dh_buf tok = {0};
    if (cfg->token_file == NULL || cfg->life == NULL || cfg->life->store == NULL)
        return dh_err_set(e, DH_ECONFIG, "management API: api_token_file and the state needed");
    /* The rule for secret files: a regular file group and others cannot read. */
    int rc = dh_file_read_secret(cfg->token_file, "api_token_file", 1024, &tok, e);
    if (rc != DH_OK)
        return rc;
    rc = token_ok(&tok, cfg->token_file, e);
    api *a = rc == DH_OK ? calloc(1, sizeof(*a)) : NULL;
    if (rc == DH_OK && a == NULL)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc == DH_OK) {
        char hex[65];
        a->cfg = *cfg;
        sha256(tok.data, tok.len, a->token_hash);
        snprintf(a->actor, sizeof(a->actor), "api:%.8s",
                 dh_hex(a->token_hash, sizeof(a->token_hash), hex, sizeof(hex)));
        *out = a;
    }
    dh_buf_free_secret(&tok);
    return rc;
}

void api_free(api *a)
{
    if (a == NULL)
        return;
    OPENSSL_cleanse(a, sizeof(*a));
    free(a);
}
