/*
 * canon.c - RFC 6376 §3.4 canonicalization.
 *
 * The body canonicalizer is a small state machine over bytes: it never holds
 * a line. Trailing empty lines (§3.4.3, §3.4.4 c) are counted and written
 * only when a later non-empty line proves they were not trailing; pending
 * whitespace (§3.4.4 a, b) is one flag. Canonical output goes through a fixed
 * staging buffer into SHA-256, so memory is constant whatever the body size.
 */
#include "dkim/canon.h"

#include "dkim/internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

static int is_wsp(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* §3.4.2: value unfolded, WSP runs -> SP, no WSP at either end. */
static int relaxed_value(const uint8_t *v, size_t len, dh_buf *out)
{
    int pending_sp = 0, any = 0, rc = DH_OK;
    for (size_t i = 0; i < len && rc == DH_OK; i++) {
        if (v[i] == '\r' && i + 1 < len && v[i + 1] == '\n') {
            i++; /* unfold: the CRLF goes, the WSP after it is handled below */
            continue;
        }
        if (is_wsp(v[i])) {
            pending_sp = 1;
            continue;
        }
        if (pending_sp && any)
            rc = dh_buf_putc(out, ' ');
        if (rc == DH_OK)
            rc = dh_buf_putc(out, v[i]);
        pending_sp = 0;
        any = 1;
    }
    return rc;
}

int dkim_canon_header(enum dkim_canon c, const uint8_t *field, size_t len, dh_buf *out)
{
    if (c == DKIM_CANON_SIMPLE)
        return dh_buf_append(out, field, len); /* §3.4.1: no change at all */
    const uint8_t *colon = memchr(field, ':', len);
    if (colon == NULL)
        return DH_EINVAL;
    size_t namelen = (size_t)(colon - field);
    /* §3.4.2: the name is lower-cased and loses the WSP before the colon. */
    while (namelen > 0 &&
           (is_wsp(field[namelen - 1]) || field[namelen - 1] == '\r' || field[namelen - 1] == '\n'))
        namelen--;
    size_t start = out->len;
    int rc = dh_buf_reserve(out, namelen + 1);
    for (size_t i = 0; i < namelen && rc == DH_OK; i++)
        rc = dh_buf_putc(out, dkim_lower(field[i]));
    if (rc == DH_OK)
        rc = dh_buf_putc(out, ':');
    if (rc == DH_OK)
        rc = relaxed_value(colon + 1, len - (size_t)(colon + 1 - field), out);
    if (rc != DH_OK)
        out->len = start;
    return rc;
}

/* ---- streaming body hash ---- */

#define STAGE_SIZE 4096

struct dkim_body {
    EVP_MD_CTX *md;
    enum dkim_canon canon;
    long long limit;
    unsigned long long hashed; /* canonical bytes given to SHA-256 */
    unsigned long long total;  /* canonical bytes produced (before l=) */
    unsigned long long empty_lines;
    int cr;          /* last byte was CR, not yet known to end a line */
    int in_line;     /* the current line has content */
    int pending_wsp; /* relaxed: WSP seen since the last content byte */
    int done;
    size_t nstage;
    uint8_t stage[STAGE_SIZE];
};

dkim_body *dkim_body_new(enum dkim_canon c, long long limit)
{
    dkim_body *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->md = EVP_MD_CTX_new();
    if (b->md == NULL || EVP_DigestInit_ex(b->md, EVP_sha256(), NULL) != 1) {
        dkim_body_free(b);
        return NULL;
    }
    b->canon = c;
    b->limit = limit < 0 ? -1 : limit;
    return b;
}

enum dkim_canon dkim_body_canon(const dkim_body *b)
{
    return b->canon;
}

long long dkim_body_limit(const dkim_body *b)
{
    return b->limit;
}

static int stage_flush(dkim_body *b)
{
    if (b->nstage == 0)
        return DH_OK;
    size_t n = b->nstage;
    b->nstage = 0;
    return EVP_DigestUpdate(b->md, b->stage, n) == 1 ? DH_OK : DH_ECRYPTO;
}

/* One canonical byte; l= (§3.5) cuts the hash input, not the canonicalization. */
static int emit(dkim_body *b, uint8_t c)
{
    b->total++;
    if (b->limit >= 0 && b->hashed >= (unsigned long long)b->limit)
        return DH_OK;
    b->hashed++;
    b->stage[b->nstage++] = c;
    return b->nstage == STAGE_SIZE ? stage_flush(b) : DH_OK;
}

static int emit_crlf(dkim_body *b)
{
    int rc = emit(b, '\r');
    return rc == DH_OK ? emit(b, '\n') : rc;
}

/* A content byte: the empty lines before it were not trailing after all. */
static int content(dkim_body *b, uint8_t c)
{
    int rc = DH_OK;
    for (; b->empty_lines > 0 && rc == DH_OK; b->empty_lines--)
        rc = emit_crlf(b);
    if (rc == DH_OK && b->pending_wsp)
        rc = emit(b, ' '); /* §3.4.4 b: a WSP run becomes one SP */
    b->pending_wsp = 0;
    b->in_line = 1;
    return rc == DH_OK ? emit(b, c) : rc;
}

static int end_of_line(dkim_body *b)
{
    b->pending_wsp = 0; /* §3.4.4 a: WSP at the end of a line goes */
    if (!b->in_line) {
        b->empty_lines++; /* §3.4.3, §3.4.4 c: held until proven not trailing */
        return DH_OK;
    }
    b->in_line = 0;
    return emit_crlf(b);
}

static int body_byte(dkim_body *b, uint8_t c)
{
    int rc = DH_OK;
    if (b->cr) {
        b->cr = 0;
        if (c == '\n')
            return end_of_line(b);
        rc = content(b, '\r'); /* a CR without LF is data, not a line end */
        if (rc != DH_OK)
            return rc;
    }
    if (c == '\r')
        b->cr = 1;
    else if (b->canon == DKIM_CANON_RELAXED && is_wsp(c))
        b->pending_wsp = 1;
    else
        rc = content(b, c);
    return rc;
}

int dkim_body_update(dkim_body *b, const uint8_t *data, size_t len)
{
    if (b->done)
        return DH_ESTATE;
    int rc = DH_OK;
    for (size_t i = 0; i < len && rc == DH_OK; i++)
        rc = body_byte(b, data[i]);
    return rc;
}

int dkim_body_final(dkim_body *b, uint8_t out[32], unsigned long long *hashed)
{
    if (b->done)
        return DH_ESTATE;
    int rc = DH_OK;
    if (b->cr) {
        b->cr = 0;
        rc = content(b, '\r');
    }
    /* §3.4.3: simple adds a CRLF to an empty body and to one without a final
     * CRLF; §3.4.4 (errata 1384): relaxed adds one only to a non-empty body. */
    if (rc == DH_OK && (b->in_line || (b->canon == DKIM_CANON_SIMPLE && b->total == 0)))
        rc = emit_crlf(b);
    if (rc == DH_OK)
        rc = stage_flush(b);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (rc == DH_OK && (EVP_DigestFinal_ex(b->md, md, &mdlen) != 1 || mdlen != 32))
        rc = DH_ECRYPTO;
    b->done = 1;
    if (rc != DH_OK)
        return rc;
    memcpy(out, md, 32);
    if (hashed != NULL)
        *hashed = b->hashed;
    return DH_OK;
}

void dkim_body_free(dkim_body *b)
{
    if (b == NULL)
        return;
    EVP_MD_CTX_free(b->md);
    free(b);
}
