/*
 * types.c - names of canonicalizations and algorithms (RFC 6376 §3.3, §3.4,
 * RFC 8463 §3).
 */
#include "dkim/types.h"

#include "dkim/internal.h"

#include <string.h>

const char *dkim_canon_name(enum dkim_canon c)
{
    return c == DKIM_CANON_RELAXED ? "relaxed" : "simple";
}

static int canon_word(const char *s, size_t n, enum dkim_canon *out)
{
    /* RFC 6376 §3.2: values are case-sensitive unless a tag says otherwise. */
    if (n == 6 && memcmp(s, "simple", 6) == 0)
        *out = DKIM_CANON_SIMPLE;
    else if (n == 7 && memcmp(s, "relaxed", 7) == 0)
        *out = DKIM_CANON_RELAXED;
    else
        return DH_EINVAL;
    return DH_OK;
}

int dkim_canon_parse(const char *s, enum dkim_canon *hdr, enum dkim_canon *body, dh_err *e)
{
    enum dkim_canon h, b = DKIM_CANON_SIMPLE; /* §3.5: body defaults to simple */
    const char *slash = strchr(s, '/');
    size_t hn = slash != NULL ? (size_t)(slash - s) : strlen(s);
    if (canon_word(s, hn, &h) != DH_OK ||
        (slash != NULL && canon_word(slash + 1, strlen(slash + 1), &b) != DH_OK))
        return dh_err_set(e, DH_EINVAL, "c=: unknown canonicalization \"%s\"", s);
    *hdr = h;
    *body = b;
    return DH_OK;
}

const char *dkim_alg_name(enum dkim_alg a)
{
    return a == DKIM_ALG_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

const char *dkim_alg_keytype(enum dkim_alg a)
{
    return a == DKIM_ALG_ED25519_SHA256 ? "ed25519" : "rsa";
}

int dkim_alg_parse(const char *s, enum dkim_alg *out, dh_err *e)
{
    if (strcmp(s, "rsa-sha256") == 0 || strcmp(s, "rsa") == 0)
        *out = DKIM_ALG_RSA_SHA256;
    else if (strcmp(s, "ed25519-sha256") == 0 || strcmp(s, "ed25519") == 0)
        *out = DKIM_ALG_ED25519_SHA256;
    else
        return dh_err_set(e, DH_EINVAL,
                          "a=: unknown algorithm \"%s\" (rsa-sha256 or ed25519-sha256; "
                          "rsa-sha1 is not allowed, RFC 8301)",
                          s);
    return DH_OK;
}

int dkim_dns_name_ok(const char *s, size_t n)
{
    size_t label = 0;
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 (c == '-' && label > 0);
        if (!ok || ++label > 63)
            return 0;
    }
    return label > 0 && s[n - 1] != '-';
}

int dkim_name_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    const uint8_t *x = a, *y = b;
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (dkim_lower(x[i]) != dkim_lower(y[i]))
            return 0;
    return 1;
}
