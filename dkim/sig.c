/*
 * sig.c - the DKIM-Signature header field (RFC 6376 §3.5, §3.7, §5.4).
 */
#include "dkim/sig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "dkim/b64.h"
#include "dkim/canon.h"
#include "dkim/internal.h"
#include "dkim/tag.h"

#define FOLD_COLUMNS 78 /* RFC 5322 §2.1.1 SHOULD */

static int is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Next name of a colon-separated list, FWS around it trimmed (the h= ABNF of
 * RFC 6376 §3.5 allows FWS on both sides of each colon). Returns 0 at the end. */
static int next_name(const char *s, size_t len, size_t *pos, const char **nb, size_t *nl)
{
    size_t p = *pos;
    if (p > len)
        return 0;
    size_t b = p;
    while (p < len && s[p] != ':')
        p++;
    size_t en = p;
    while (b < en && is_fws(s[b]))
        b++;
    while (en > b && is_fws(s[en - 1]))
        en--;
    *nb = s + b;
    *nl = en - b;
    *pos = p + 1;
    return 1;
}

static int list_has(const char *list, const uint8_t *name, size_t nl)
{
    const char *nb;
    size_t n, pos = 0, len = strlen(list);
    while (next_name(list, len, &pos, &nb, &n))
        if (dkim_name_eq(nb, n, name, nl))
            return 1;
    return 0;
}

/* Names in a configured list must be field names (RFC 5322 ftext). */
static int list_check(const char *list, const char *what, dh_err *e)
{
    const char *nb;
    size_t n, pos = 0, len = strlen(list);
    while (next_name(list, len, &pos, &nb, &n)) {
        int ok = n > 0 || len == 0;
        for (size_t i = 0; i < n; i++)
            ok &= (unsigned char)nb[i] > 32 && (unsigned char)nb[i] < 127;
        if (!ok)
            return dh_err_set(e, DH_EINVAL, "%s header list: bad field name \"%.*s\"", what, (int)n,
                              nb);
    }
    return DH_OK;
}

static int put_name(dh_buf *out, size_t start, const void *name, size_t n)
{
    int rc = out->len > start ? dh_buf_putc(out, ':') : DH_OK;
    for (size_t i = 0; i < n && rc == DH_OK; i++)
        rc = dh_buf_putc(out, dkim_lower(((const uint8_t *)name)[i]));
    return rc;
}

int dkim_sig_select_headers(const dkim_hdrs *hdrs, const char *sign, const char *oversign,
                            dh_buf *h_out, dh_err *e)
{
    size_t start = h_out->len, nfrom = 0, nl;
    int rc = list_check(sign, "sign", e);
    if (rc == DH_OK)
        rc = list_check(oversign, "oversign", e);
    /* Each occurrence, in message order, then each over-signed name once more
     * (RFC 6376 §5.4.2, §8.15). An over-signed name is signed even if the sign
     * list forgot it, so it really ends up listed occurrences + 1 times. */
    for (size_t i = 0; i < dkim_hdrs_count(hdrs) && rc == DH_OK; i++) {
        const uint8_t *f = dkim_hdrs_field(hdrs, i, NULL, &nl);
        int is_from = dkim_name_eq(f, nl, "from", 4);
        if (dkim_hdrs_space_before_colon(hdrs, i) ||
            !(is_from || list_has(sign, f, nl) || list_has(oversign, f, nl)))
            continue;
        nfrom += (size_t)is_from;
        rc = put_name(h_out, start, f, nl);
    }
    const char *nb;
    size_t pos = 0, olen = strlen(oversign);
    while (rc == DH_OK && olen > 0 && next_name(oversign, olen, &pos, &nb, &nl)) {
        nfrom += (size_t)dkim_name_eq(nb, nl, "from", 4);
        rc = put_name(h_out, start, nb, nl);
    }
    if (rc == DH_OK && nfrom == 0)
        rc = put_name(h_out, start, "from", 4); /* §5.4: From MUST be signed */
    if (rc != DH_OK) {
        h_out->len = start;
        if (h_out->data != NULL)
            h_out->data[start] = '\0';
    }
    return rc;
}

/* ---- building the field ---- */

struct fold {
    dh_buf *b;
    size_t col; /* bytes on the current line */
    int rc;
};

static void fold_raw(struct fold *f, const char *s, size_t n)
{
    if (f->rc == DH_OK)
        f->rc = dh_buf_append(f->b, s, n);
    f->col += n;
}

static void fold_break(struct fold *f)
{
    if (f->rc == DH_OK)
        f->rc = dh_buf_append(f->b, "\r\n\t", 3);
    f->col = 1;
}

/* Starts a tag: one SP when its first need bytes fit, else a fold (FWS is
 * allowed before every tag-spec, RFC 6376 §3.2). */
static void fold_tag_start(struct fold *f, size_t need)
{
    if (f->col + 1 + need > FOLD_COLUMNS)
        fold_break(f);
    else
        fold_raw(f, " ", 1);
}

/* A tag that must not be broken: d=, s=, t= ... */
static void fold_tag(struct fold *f, const char *s)
{
    size_t n = strlen(s);
    fold_tag_start(f, n);
    fold_raw(f, s, n);
}

/* bytes that may be broken anywhere (base64: FWS is allowed between any two
 * characters of bh= and b=, §3.5). */
static void fold_anywhere(struct fold *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (f->col >= FOLD_COLUMNS)
            fold_break(f);
        fold_raw(f, s + i, 1);
    }
}

/* h=: breaks only after a colon, where §3.5 allows FWS. */
static void fold_h(struct fold *f, const char *h)
{
    const char *nb;
    size_t nl, pos = 0, len = strlen(h);
    int first = 1;
    while (next_name(h, len, &pos, &nb, &nl)) {
        size_t atom = nl + 1 + (first ? 2 : 0); /* "h=" + name + ':' or ';' */
        if (first)
            fold_tag_start(f, atom);
        else if (f->col + atom > FOLD_COLUMNS)
            fold_break(f);
        if (first)
            fold_raw(f, "h=", 2);
        fold_raw(f, nb, nl);
        fold_raw(f, pos > len ? ";" : ":", 1);
        first = 0;
    }
}

static int check_h(const char *h, dh_err *e)
{
    const char *nb;
    size_t nl, pos = 0, len = strlen(h);
    int from = 0;
    while (next_name(h, len, &pos, &nb, &nl)) {
        for (size_t i = 0; i < nl; i++)
            if ((unsigned char)nb[i] <= 32 || (unsigned char)nb[i] >= 127 || nb[i] == ';')
                nl = 0;
        if (nl == 0)
            return dh_err_set(e, DH_EINVAL, "h=: empty or bad field name at byte %zu of \"%s\"",
                              (size_t)(nb - h), h);
        from |= dkim_name_eq(nb, nl, "from", 4);
    }
    if (!from)
        return dh_err_set(e, DH_EINVAL, "h=: does not list from (RFC 6376 §5.4)");
    return DH_OK;
}

/* i= must be in d= or a subdomain of it (RFC 6376 §3.5). */
static int check_identity(const char *i, const char *d, dh_err *e)
{
    const char *at = strrchr(i, '@');
    size_t dl = strlen(d), al = at != NULL ? strlen(at + 1) : 0;
    for (const char *p = i; *p != '\0'; p++)
        if ((unsigned char)*p <= 32 || (unsigned char)*p >= 127 || *p == ';')
            return dh_err_set(e, DH_EINVAL, "i=: character 0x%02x at byte %zu not allowed",
                              (unsigned char)*p, (size_t)(p - i));
    if (at == NULL ||
        !(dkim_name_eq(at + 1, al, d, dl) ||
          (al > dl && at[al - dl] == '.' && dkim_name_eq(at + 1 + al - dl, dl, d, dl))))
        return dh_err_set(e, DH_EINVAL, "i=: \"%s\" is not in d=%s or a subdomain of it", i, d);
    return DH_OK;
}

static int check_params(const dkim_sig_params *p, dh_err *e)
{
    if (p->domain == NULL || !dkim_dns_name_ok(p->domain, strlen(p->domain)))
        return dh_err_set(e, DH_EINVAL, "d=: \"%s\" is not a valid domain name",
                          p->domain ? p->domain : "(missing)");
    if (p->selector == NULL || !dkim_dns_name_ok(p->selector, strlen(p->selector)))
        return dh_err_set(e, DH_EINVAL, "s=: \"%s\" is not a valid selector",
                          p->selector ? p->selector : "(missing)");
    if (p->header_list == NULL)
        return dh_err_set(e, DH_EINVAL, "h=: missing");
    if (p->expire >= 0 && p->timestamp >= 0 && p->expire <= p->timestamp)
        return dh_err_set(e, DH_EINVAL, "x=%lld is not after t=%lld (RFC 6376 §3.5)", p->expire,
                          p->timestamp);
    if (p->identity != NULL && check_identity(p->identity, p->domain, e) != DH_OK)
        return DH_EINVAL;
    return check_h(p->header_list, e);
}

static void build_tags(struct fold *f, const dkim_sig_params *p, const char *bh)
{
    char t[512];
    fold_raw(f, "DKIM-Signature:", 15);
    fold_tag(f, "v=1;");
    snprintf(t, sizeof(t), "a=%s;", dkim_alg_name(p->alg));
    fold_tag(f, t);
    snprintf(t, sizeof(t), "c=%s/%s;", dkim_canon_name(p->hdr_canon),
             dkim_canon_name(p->body_canon));
    fold_tag(f, t);
    snprintf(t, sizeof(t), "d=%s;", p->domain);
    fold_tag(f, t);
    snprintf(t, sizeof(t), "s=%s;", p->selector);
    fold_tag(f, t);
    if (p->identity != NULL) {
        fold_tag_start(f, 2 + strlen(p->identity) + 1);
        fold_raw(f, "i=", 2);
        fold_raw(f, p->identity, strlen(p->identity));
        fold_raw(f, ";", 1);
    }
    const char *num[] = {"t", "x", "l"};
    long long val[] = {p->timestamp, p->expire, p->body_length};
    for (int k = 0; k < 3; k++)
        if (val[k] >= 0) {
            snprintf(t, sizeof(t), "%s=%lld;", num[k], val[k]);
            fold_tag(f, t);
        }
    fold_h(f, p->header_list);
    /* bh= stays whole when a fresh line can hold it, else it breaks anywhere. */
    size_t bhlen = 3 + strlen(bh) + 1;
    fold_tag_start(f, 1 + bhlen <= FOLD_COLUMNS ? bhlen : 4);
    fold_raw(f, "bh=", 3);
    fold_anywhere(f, bh, strlen(bh));
    fold_raw(f, ";", 1);
    fold_tag_start(f, 3); /* "b=" and room for the first character */
    fold_raw(f, "b=", 2);
}

int dkim_sig_build(const dkim_sig_params *p, const uint8_t bh[32], dh_buf *field, dh_err *e)
{
    int rc = check_params(p, e);
    if (rc != DH_OK)
        return rc;
    dh_buf bh64 = {0};
    rc = dkim_b64_encode(bh, 32, &bh64);
    if (rc != DH_OK)
        return rc;
    size_t start = field->len;
    struct fold f = {field, 0, DH_OK};
    build_tags(&f, p, (const char *)bh64.data);
    dh_buf_free(&bh64);
    if (f.rc != DH_OK) {
        field->len = start;
        if (field->data != NULL)
            field->data[start] = '\0';
    }
    return f.rc;
}

/* ---- what is signed (RFC 6376 §3.7) ---- */

struct sigfield {
    dkim_tags *tags;
    size_t value_off; /* first byte after the colon */
    enum dkim_canon hc, bc;
    const char *h;
    size_t hlen;
};

static int parse_sig_field(const uint8_t *p, size_t len, struct sigfield *sf, dh_err *e)
{
    static const char name[] = "DKIM-Signature:";
    if (len < sizeof(name) - 1 || !dkim_name_eq(p, sizeof(name) - 1, name, sizeof(name) - 1))
        return dh_err_set(e, DH_EINVAL, "not a DKIM-Signature field (it must start with \"%s\")",
                          name);
    sf->value_off = sizeof(name) - 1;
    int rc = dkim_tags_parse((const char *)p + sf->value_off, len - sf->value_off, &sf->tags, e);
    if (rc != DH_OK) {
        dh_err_prefix(e, "DKIM-Signature");
        return rc;
    }
    const char *v = dkim_tags_get(sf->tags, "v", NULL);
    const char *c = dkim_tags_get(sf->tags, "c", NULL);
    sf->h = dkim_tags_get(sf->tags, "h", &sf->hlen);
    sf->hc = sf->bc = DKIM_CANON_SIMPLE; /* §3.5: c= defaults to simple/simple */
    if (v == NULL || strcmp(v, "1") != 0)
        return dh_err_set(e, DH_EINVAL, "DKIM-Signature: v= is %s, not 1", v ? v : "missing");
    if (c != NULL && dkim_canon_parse(c, &sf->hc, &sf->bc, e) != DH_OK)
        return DH_EINVAL;
    if (sf->h == NULL)
        return dh_err_set(e, DH_EINVAL, "DKIM-Signature: no h= tag");
    size_t off, blen;
    if (dkim_tags_span(sf->tags, "b", &off, &blen) != DH_OK)
        return dh_err_set(e, DH_EINVAL, "DKIM-Signature: no b= tag");
    return check_h(sf->h, e);
}

/* Refuses a name for which some field is written "Name :": verifiers differ
 * on whether that field has the name (FACTS), so its selection is ambiguous. */
static int check_no_space_field(const dkim_hdrs *hdrs, const char *nb, size_t nl, dh_err *e)
{
    size_t fnl;
    for (size_t i = 0; i < dkim_hdrs_count(hdrs); i++) {
        const uint8_t *f = dkim_hdrs_field(hdrs, i, NULL, &fnl);
        if (dkim_hdrs_space_before_colon(hdrs, i) && dkim_name_eq(f, fnl, nb, nl))
            return dh_err_set(e, DH_EUNSIGNABLE,
                              "header field %zu \"%.*s :\" has space before its colon and is "
                              "named in h=",
                              i + 1, (int)fnl, (const char *)f);
    }
    return DH_OK;
}

/* §5.4.2: each listed name takes the next unused field of that name from the
 * bottom; a name listed more often than it occurs contributes nothing. */
static int add_signed_fields(const dkim_hdrs *hdrs, const struct sigfield *sf, dh_buf *out,
                             dh_err *e)
{
    size_t n = dkim_hdrs_count(hdrs), nl, pos = 0, fl, fnl;
    const char *nb;
    unsigned char *used = calloc(n + 1, 1);
    int rc = used != NULL ? DH_OK : DH_ENOMEM;
    while (rc == DH_OK && next_name(sf->h, sf->hlen, &pos, &nb, &nl)) {
        rc = check_no_space_field(hdrs, nb, nl, e);
        for (size_t i = n; i-- > 0 && rc == DH_OK;) {
            const uint8_t *f = dkim_hdrs_field(hdrs, i, &fl, &fnl);
            if (used[i] || !dkim_name_eq(f, fnl, nb, nl))
                continue;
            used[i] = 1;
            rc = dkim_canon_header(sf->hc, f, fl, out);
            if (rc == DH_OK)
                rc = dh_buf_append(out, "\r\n", 2);
            break;
        }
    }
    free(used);
    return rc;
}

/* The signature field itself, b= value and the FWS around it removed, no
 * final CRLF (§3.7). */
static int add_sig_itself(const uint8_t *p, size_t len, const struct sigfield *sf, dh_buf *out)
{
    size_t off, blen;
    if (dkim_tags_span(sf->tags, "b", &off, &blen) != DH_OK)
        return DH_EINVAL;
    off += sf->value_off;
    dh_buf tmp = {0};
    int rc = dh_buf_append(&tmp, p, off);
    if (rc == DH_OK)
        rc = dh_buf_append(&tmp, p + off + blen, len - off - blen);
    if (rc == DH_OK)
        rc = dkim_canon_header(sf->hc, tmp.data, tmp.len, out);
    dh_buf_free(&tmp);
    return rc;
}

int dkim_sig_hash_input(const dkim_hdrs *hdrs, const uint8_t *sig_field, size_t len, dh_buf *out,
                        dh_err *e)
{
    struct sigfield sf = {0};
    size_t start = out->len;
    int rc = parse_sig_field(sig_field, len, &sf, e);
    if (rc == DH_OK)
        rc = add_signed_fields(hdrs, &sf, out, e);
    if (rc == DH_OK)
        rc = add_sig_itself(sig_field, len, &sf, out);
    dkim_tags_free(sf.tags);
    if (rc != DH_OK) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
    }
    return rc;
}

int dkim_sig_digest(const dkim_hdrs *hdrs, const uint8_t *sig_field, size_t len, uint8_t out[32],
                    dh_err *e)
{
    dh_buf in = {0};
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = dkim_sig_hash_input(hdrs, sig_field, len, &in, e);
    if (rc == DH_OK &&
        (EVP_Digest(in.data, in.len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32))
        rc = dh_err_set(e, DH_ECRYPTO, "SHA-256 of the header hash input failed");
    dh_buf_free(&in);
    if (rc == DH_OK)
        memcpy(out, md, 32);
    return rc;
}

int dkim_sig_finish(const uint8_t *field, size_t len, const uint8_t *sig, size_t siglen,
                    dh_buf *out, dh_err *e)
{
    /* The byte before "b=" separates it from the previous tag: not "bh=". */
    if (len < 3 || memcmp(field + len - 2, "b=", 2) != 0 ||
        !(field[len - 3] == ' ' || field[len - 3] == '\t' || field[len - 3] == ';'))
        return dh_err_set(e, DH_EINVAL, "DKIM-Signature field does not end in \"b=\"");
    size_t col = 0, start = out->len;
    while (col < len && field[len - 1 - col] != '\n')
        col++;
    dh_buf sig64 = {0};
    struct fold f = {out, col, dkim_b64_encode(sig, siglen, &sig64)};
    fold_raw(&f, (const char *)field, len);
    f.col = col;
    fold_anywhere(&f, (const char *)sig64.data, sig64.len);
    fold_raw(&f, "\r\n", 2);
    dh_buf_free(&sig64);
    if (f.rc != DH_OK) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
    }
    return f.rc;
}
