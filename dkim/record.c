/*
 * record.c - DKIM key records (RFC 6376 §3.6.1, RFC 8463 §4) and their
 * zone-file form (RFC 1035 §3.3.14, §5.1).
 */
#include "dkim/record.h"

#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "dkim/b64.h"
#include "dkim/tag.h"

#define TXT_STRING_MAX 255 /* RFC 1035 §3.3: one length octet */

int dkim_record_value(enum dkim_alg alg, const uint8_t *pub, size_t len, dh_buf *out)
{
    size_t start = out->len;
    int rc = dh_buf_printf(out, "v=DKIM1; k=%s; p=", dkim_alg_keytype(alg));
    if (rc == DH_OK && pub != NULL && len > 0)
        rc = dkim_b64_encode(pub, len, out);
    if (rc != DH_OK) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
    }
    return rc;
}

size_t dkim_record_nstrings(size_t value_len)
{
    /* An empty value is still one (empty) character-string. */
    return value_len == 0 ? 1 : (value_len + TXT_STRING_MAX - 1) / TXT_STRING_MAX;
}

void dkim_record_string_at(size_t value_len, size_t i, size_t *off, size_t *len)
{
    size_t o = i * TXT_STRING_MAX;
    if (o > value_len)
        o = value_len;
    *off = o;
    *len = value_len - o < TXT_STRING_MAX ? value_len - o : TXT_STRING_MAX;
}

/* RFC 1035 §5.1: inside quotes, '"' and '\' are escaped, other non-printing
 * bytes are written \DDD. */
static int put_quoted(dh_buf *out, const char *s, size_t n)
{
    int rc = dh_buf_putc(out, '"');
    for (size_t i = 0; i < n && rc == DH_OK; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            rc = dh_buf_printf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            rc = dh_buf_printf(out, "\\%03u", c);
        else
            rc = dh_buf_putc(out, c);
    }
    return rc == DH_OK ? dh_buf_putc(out, '"') : rc;
}

int dkim_record_zone_line(const char *owner, const char *value, dh_buf *out)
{
    size_t start = out->len, vlen = strlen(value);
    int rc = dh_buf_printf(out, "%s IN TXT (", owner);
    for (size_t i = 0; i < dkim_record_nstrings(vlen) && rc == DH_OK; i++) {
        size_t off, len;
        dkim_record_string_at(vlen, i, &off, &len);
        rc = dh_buf_putc(out, ' ');
        if (rc == DH_OK)
            rc = put_quoted(out, value + off, len);
    }
    if (rc == DH_OK)
        rc = dh_buf_puts(out, " )\n");
    if (rc != DH_OK) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
    }
    return rc;
}

/* 1 when the colon-separated list (FWS around items allowed) holds any of
 * the words in want (NULL-terminated). */
static int list_holds(const char *list, const char *const *want)
{
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        size_t n = strcspn(p, ":");
        size_t m = n;
        while (m > 0 &&
               (p[m - 1] == ' ' || p[m - 1] == '\t' || p[m - 1] == '\r' || p[m - 1] == '\n'))
            m--;
        for (const char *const *w = want; *w != NULL; w++)
            if (strlen(*w) == m && memcmp(*w, p, m) == 0)
                return 1;
        p += n;
        if (*p == ':')
            p++;
    }
    return 0;
}

static int parse_flags(const dkim_tags *t, dkim_record *r, dh_err *e)
{
    static const char *const sha256[] = {"sha256", NULL};
    static const char *const email[] = {"email", "*", NULL};
    static const char *const y[] = {"y", NULL}, *const s[] = {"s", NULL};
    const char *h = dkim_tags_get(t, "h", NULL);
    const char *svc = dkim_tags_get(t, "s", NULL);
    const char *flags = dkim_tags_get(t, "t", NULL);
    if (h != NULL && !list_holds(h, sha256))
        return dh_err_set(e, DH_EINVAL, "key record: h=%s does not allow sha256", h);
    if (svc != NULL && !list_holds(svc, email))
        return dh_err_set(e, DH_EINVAL, "key record: s=%s does not allow email", svc);
    /* §3.6.1: unknown flags are ignored. */
    r->testing = flags != NULL && list_holds(flags, y);
    r->strict = flags != NULL && list_holds(flags, s);
    return DH_OK;
}

static int parse_version_alg(const dkim_tags *t, dkim_record *r, dh_err *e)
{
    const char *name, *value;
    const char *v = dkim_tags_get(t, "v", NULL);
    if (v != NULL) {
        dkim_tags_at(t, 0, &name, &value);
        /* §3.6.1: v= is optional, but when present it MUST be first. */
        if (strcmp(name, "v") != 0)
            return dh_err_set(e, DH_EINVAL, "key record: v= is not the first tag");
        if (strcmp(v, "DKIM1") != 0)
            return dh_err_set(e, DH_EINVAL, "key record: v=%s is not DKIM1", v);
    }
    const char *k = dkim_tags_get(t, "k", NULL);
    r->alg = DKIM_ALG_RSA_SHA256; /* §3.6.1: k= defaults to rsa */
    if (k != NULL && strcmp(k, "rsa") == 0)
        r->alg = DKIM_ALG_RSA_SHA256;
    else if (k != NULL && strcmp(k, "ed25519") == 0)
        r->alg = DKIM_ALG_ED25519_SHA256;
    else if (k != NULL)
        return dh_err_set(e, DH_EINVAL, "key record: unknown key type k=%s", k);
    return DH_OK;
}

/* p= for rsa is a SubjectPublicKeyInfo (§3.6.1); for ed25519 the raw 32-byte
 * key (RFC 8463 §4). */
static int check_key(const dkim_record *r, dh_err *e)
{
    if (r->alg == DKIM_ALG_ED25519_SHA256) {
        if (r->pub.len != 32)
            return dh_err_set(e, DH_EINVAL,
                              "key record: p= holds %zu bytes, an ed25519 key "
                              "has 32 (RFC 8463 §4)",
                              r->pub.len);
        return DH_OK;
    }
    const unsigned char *p = r->pub.data;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)r->pub.len);
    int ok = k != NULL && EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA && p == r->pub.data + r->pub.len;
    EVP_PKEY_free(k);
    if (!ok)
        return dh_err_set(e, DH_EINVAL,
                          "key record: p= is not an RSA SubjectPublicKeyInfo (RFC 6376 §3.6.1)");
    return DH_OK;
}

static int parse_key(const dkim_tags *t, dkim_record *r, dh_err *e)
{
    size_t plen;
    const char *p = dkim_tags_get(t, "p", &plen);
    if (p == NULL)
        return dh_err_set(e, DH_EINVAL, "key record: no p= tag");
    if (plen == 0) {
        r->revoked = 1; /* §3.6.1: an empty p= means the key was revoked */
        return DH_OK;
    }
    int rc = dkim_b64_decode(p, plen, &r->pub);
    if (rc == DH_EINVAL)
        return dh_err_set(e, rc, "key record: p= is not valid base64");
    return rc == DH_OK ? check_key(r, e) : rc;
}

int dkim_record_parse(const char *txt, size_t len, dkim_record *out, dh_err *e)
{
    dkim_tags *t = NULL;
    dkim_record r = {0};
    int rc = dkim_tags_parse(txt, len, &t, e);
    if (rc != DH_OK) {
        dh_err_prefix(e, "key record");
        return rc;
    }
    rc = parse_version_alg(t, &r, e);
    if (rc == DH_OK)
        rc = parse_flags(t, &r, e);
    if (rc == DH_OK)
        rc = parse_key(t, &r, e);
    dkim_tags_free(t);
    if (rc != DH_OK) {
        dh_buf_free(&r.pub);
        return rc;
    }
    *out = r;
    return DH_OK;
}

void dkim_record_clear(dkim_record *r)
{
    if (r == NULL)
        return;
    dh_buf_free(&r->pub);
    memset(r, 0, sizeof(*r));
}
