/*
 * canon.c - RFC 6376 §3.4 canonicalization.
 *
 * The body canonicalizer is a small state machine over bytes: it never holds
 * a line. Trailing empty lines (§3.4.3, §3.4.4 c) are counted and written
 * only when a later non-empty line proves they were not trailing; pending
 * whitespace (§3.4.4 a, b) is one flag. Canonical output goes through a fixed
 * staging buffer into SHA-256, so memory is constant whatever the body size.
 *
 * Running every byte through the state machine costs several times what
 * SHA-256 itself does, so a fast path in front of it copies the runs that
 * canonicalization leaves alone 16 bytes at a time (finding the bytes that
 * matter with SIMD compares), and the common changes - a WSP run, WSP at the
 * end of a line, blank lines between paragraphs - have short cuts. The state
 * machine still handles everything else, e.g. what straddles two chunks; the
 * tests compare both against reference canonicalizers on random input.
 */
#include "dkim/canon.h"

#include "dkim/internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

/* Canonical bytes collect here so SHA-256 sees few, large updates. The fast
 * path stores whole BLOCKs into it and then counts only the valid bytes, so
 * a store may start anywhere up to STAGE_SIZE - BLOCK. */
#define STAGE_SIZE 16384
#define BLOCK 16

struct dkim_body {
    EVP_MD_CTX *md;
    enum dkim_canon canon;
    long long limit;
    unsigned long long hashed;   /* canonical bytes given to SHA-256 */
    unsigned long long produced; /* canonical bytes flushed, before l= */
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

/* l= (§3.5) cuts the hash input, not the canonicalization, so the cut is
 * made here, on the way into SHA-256, and nowhere else. */
static int stage_flush(dkim_body *b)
{
    size_t n = b->nstage;
    b->nstage = 0;
    b->produced += n;
    if (b->limit >= 0 && n > (unsigned long long)b->limit - b->hashed)
        n = (size_t)((unsigned long long)b->limit - b->hashed);
    b->hashed += n;
    if (n > 0 && EVP_DigestUpdate(b->md, b->stage, n) != 1)
        return DH_ECRYPTO;
    return DH_OK;
}

static int emit(dkim_body *b, uint8_t c)
{
    int rc = b->nstage == STAGE_SIZE ? stage_flush(b) : DH_OK;
    b->stage[b->nstage++] = c;
    return rc;
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

/* The byte-at-a-time state machine: the definition of the canonical form.
 * Everything below it is a faster way to get the same bytes. */
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

/*
 * The fast path. In the steady state - inside a line that has content, with
 * nothing held back - most input comes out of body_byte() unchanged. A "stop"
 * is a byte where that may not hold:
 *   simple:  a CR, unless it begins CR LF x with x not CR (a line end with a
 *            non-empty line after it);
 *   relaxed: a TAB; a SP followed by SP, TAB or CR (a WSP run, or WSP at the
 *            end of a line); a CR, unless it begins CR LF x with x not SP,
 *            TAB or CR.
 * Every byte before the first stop is copied as it is, and the state after
 * them is steady again (they end with a content byte). Lookahead past the end
 * of the buffer counts as a stop, so that body_byte() carries such bytes
 * across chunks.
 */
static int wsp_or_cr(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* 1 when p[0] of the n bytes at p is a stop. */
static int is_stop(enum dkim_canon c, const uint8_t *p, size_t n)
{
    if (p[0] == '\r')
        return n < 3 || p[1] != '\n' || (c == DKIM_CANON_SIMPLE ? p[2] == '\r' : wsp_or_cr(p[2]));
    if (c == DKIM_CANON_SIMPLE)
        return 0;
    return p[0] == '\t' || (p[0] == ' ' && (n < 2 || wsp_or_cr(p[1])));
}

/* stop_mask(c, p): bit k set when p[k] is a stop, for k < BLOCK; reads the
 * BLOCK + 2 bytes at p. SSE2 is part of x86-64, so it is chosen at compile
 * time; elsewhere the same mask comes from is_stop(). */
#if defined(__SSE2__)
static __m128i eq(__m128i v, char c)
{
    return _mm_cmpeq_epi8(v, _mm_set1_epi8(c));
}

/* TAB (0x09) and CR (0x0d) differ only in bit 2: one compare finds both. */
static __m128i wsp_or_cr16(__m128i v)
{
    __m128i tab_or_cr = eq(_mm_or_si128(v, _mm_set1_epi8(0x04)), '\r');
    return _mm_or_si128(eq(v, ' '), tab_or_cr);
}

static unsigned stop_mask(enum dkim_canon c, const uint8_t *p)
{
    __m128i v0 = _mm_loadu_si128((const __m128i *)p);
    __m128i v1 = _mm_loadu_si128((const __m128i *)(p + 1));
    __m128i v2 = _mm_loadu_si128((const __m128i *)(p + 2));
    __m128i next_ok, stop;
    if (c == DKIM_CANON_SIMPLE) {
        next_ok = _mm_andnot_si128(eq(v2, '\r'), eq(v1, '\n')); /* CR LF x, x != CR */
        stop = _mm_andnot_si128(next_ok, eq(v0, '\r'));
    } else {
        next_ok = _mm_andnot_si128(wsp_or_cr16(v2), eq(v1, '\n'));
        stop = _mm_or_si128(_mm_andnot_si128(next_ok, eq(v0, '\r')), eq(v0, '\t'));
        stop = _mm_or_si128(stop, _mm_and_si128(eq(v0, ' '), wsp_or_cr16(v1)));
    }
    return (unsigned)_mm_movemask_epi8(stop);
}
#else
static unsigned stop_mask(enum dkim_canon c, const uint8_t *p)
{
    unsigned m = 0;
    for (unsigned k = 0; k < BLOCK; k++)
        m |= (unsigned)is_stop(c, p + k, BLOCK + 2 - k) << k;
    return m;
}
#endif

/* Copies whole blocks from p to out while they hold no stop, as long as
 * BLOCK + 2 bytes are left at p and BLOCK bytes of room at out. A block with
 * a stop is stored whole too: the bytes from the stop on are overwritten by
 * whatever is emitted next. Returns the number of bytes before the stop, or
 * of bytes copied when it ran out of input or room. Inlined with c constant,
 * so the loop is specialised for each canonicalization. */
static inline size_t copy_blocks(enum dkim_canon c, uint8_t *out, size_t room, const uint8_t *p,
                                 size_t n)
{
    size_t i = 0;
    for (; n - i >= BLOCK + 2 && room - i >= BLOCK; i += BLOCK) {
        unsigned m = stop_mask(c, p + i);
        memcpy(out + i, p + i, BLOCK);
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
    }
    return i;
}

/* Copies the bytes at p before the first stop into the stage; *used gets
 * their number. */
static int copy_plain(dkim_body *b, const uint8_t *p, size_t n, size_t *used)
{
    int rc = DH_OK;
    size_t i = 0;
    for (;;) {
        if (STAGE_SIZE - b->nstage < BLOCK && (rc = stage_flush(b)) != DH_OK)
            break;
        uint8_t *out = b->stage + b->nstage;
        size_t k = b->canon == DKIM_CANON_SIMPLE
                       ? copy_blocks(DKIM_CANON_SIMPLE, out, STAGE_SIZE - b->nstage, p + i, n - i)
                       : copy_blocks(DKIM_CANON_RELAXED, out, STAGE_SIZE - b->nstage, p + i, n - i);
        b->nstage += k;
        i += k;
        if (n - i < BLOCK + 2 || STAGE_SIZE - b->nstage >= BLOCK)
            break; /* at a stop or near the end of p; else the stage was full */
    }
    if (n - i < BLOCK + 2) /* too close to the end for a block */
        for (; rc == DH_OK && i < n && !is_stop(b->canon, p + i, n - i); i++)
            rc = emit(b, p[i]);
    *used = i;
    return rc;
}

/* Relaxed, steady, at a stop on WSP: the common cases without body_byte().
 * A run inside a line becomes one SP; a run before CR LF x (x content) goes.
 * Returns how many bytes were consumed, 0 to leave them to body_byte(). */
static size_t wsp_stop(dkim_body *b, const uint8_t *p, size_t n, int *rc)
{
    size_t j = 1;
    while (j < n && is_wsp(p[j]))
        j++;
    if (j < n && p[j] != '\r') {
        *rc = emit(b, ' '); /* §3.4.4 b */
        return j;
    }
    if (j + 2 < n && p[j + 1] == '\n' && !wsp_or_cr(p[j + 2])) {
        *rc = emit_crlf(b); /* §3.4.4 a */
        return j + 2;
    }
    return 0;
}

/* Steady, at a stop on CR: a line end followed by empty lines (relaxed: or
 * WSP-only ones) and then a line with content is the common case - the
 * empty lines are not trailing, so they are written at once. Returns how
 * many bytes were consumed, 0 to leave them to body_byte(). */
static size_t cr_stop(dkim_body *b, const uint8_t *p, size_t n, int *rc)
{
    size_t i = 0, lines = 0;
    for (;;) {
        if (n - i < 2 || p[i] != '\r' || p[i + 1] != '\n')
            return 0;
        i += 2;
        lines++;
        size_t j = i;
        while (b->canon == DKIM_CANON_RELAXED && j < n && is_wsp(p[j]))
            j++;
        if (j == n)
            return 0;
        if (p[j] != '\r') {
            for (*rc = DH_OK; lines > 0 && *rc == DH_OK; lines--)
                *rc = emit_crlf(b);
            if (*rc == DH_OK && j > i)
                *rc = emit(b, ' '); /* a line starting with WSP (§3.4.4 b) */
            return j;
        }
        i = j;
    }
}

static int steady(const dkim_body *b)
{
    return b->in_line && !b->cr && !b->pending_wsp && b->empty_lines == 0;
}

/* At a stop in the steady state: the shortcut for it, when there is one. */
static size_t shortcut(dkim_body *b, const uint8_t *p, size_t n, int *rc)
{
    if (p[0] == '\r')
        return cr_stop(b, p, n, rc);
    return b->canon == DKIM_CANON_RELAXED ? wsp_stop(b, p, n, rc) : 0;
}

int dkim_body_update(dkim_body *b, const uint8_t *data, size_t len)
{
    if (b->done)
        return DH_ESTATE;
    int rc = DH_OK;
    size_t i = 0, k = 0;
    while (i < len && rc == DH_OK) {
        if (steady(b)) {
            rc = copy_plain(b, data + i, len - i, &k);
            i += k;
            if (i == len || rc != DH_OK)
                break;
            k = shortcut(b, data + i, len - i, &rc);
            i += k;
            if (k > 0)
                continue;
        }
        rc = body_byte(b, data[i++]);
    }
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
    int empty = b->produced + b->nstage == 0;
    if (rc == DH_OK && (b->in_line || (b->canon == DKIM_CANON_SIMPLE && empty)))
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
