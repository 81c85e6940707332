/*
 * test_canon.c - RFC 6376 §3.4 canonicalization and the streaming body hash.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "dkim/canon.h"
#include "tests/lib/check.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static void sha256(const void *p, size_t n, uint8_t out[32])
{
    unsigned int len = 0;
    if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 || len != 32)
        check_fail(__FILE__, __LINE__, "EVP_Digest failed");
}

/* chunk 0: one call; chunk > 0: pieces of that size; chunk < 0: pseudo-random
 * pieces from seed -chunk. */
static void body_hash(enum dkim_canon c, long long limit, const uint8_t *p, size_t n, long chunk,
                      uint8_t out[32], unsigned long long *hashed)
{
    dkim_body *b = dkim_body_new(c, limit);
    CHECK(b != NULL);
    if (b == NULL)
        return;
    unsigned long seed = chunk < 0 ? (unsigned long)-chunk : 1;
    size_t i = 0;
    while (i < n) {
        size_t k = n - i;
        if (chunk > 0 && (size_t)chunk < k)
            k = (size_t)chunk;
        if (chunk < 0) {
            seed = seed * 1103515245 + 12345;
            size_t r = (seed >> 16) % 7;
            k = r < k ? r : k; /* includes zero-length updates */
        }
        CHECK_OK(dkim_body_update(b, p + i, k));
        i += k;
    }
    CHECK_OK(dkim_body_final(b, out, hashed));
    dkim_body_free(b);
}

static void check_body(enum dkim_canon c, const uint8_t *in, size_t n, const uint8_t *want,
                       size_t wn)
{
    uint8_t got[32], exp[32];
    unsigned long long hashed = 0;
    sha256(want, wn, exp);
    body_hash(c, -1, in, n, 0, got, &hashed);
    CHECK_MEM(got, 32, exp, 32);
    CHECK_EQ_INT(hashed, wn);
    body_hash(c, -1, in, n, 1, got, NULL);
    CHECK_MEM(got, 32, exp, 32);
}

static void check_hdr(enum dkim_canon c, const uint8_t *in, size_t n, const char *want)
{
    dh_buf out = {0};
    CHECK_OK(dkim_canon_header(c, in, n, &out));
    CHECK_MEM(out.data, out.len, want, strlen(want));
    dh_buf_free(&out);
}

/* RFC 6376 §3.4.6 example, header part. */
static void test_rfc_example_headers(void)
{
    check_hdr(DKIM_CANON_RELAXED, S("A: X"), "a:X");
    check_hdr(DKIM_CANON_RELAXED, S("B : Y\t\r\n\tZ  "), "b:Y Z");
    check_hdr(DKIM_CANON_SIMPLE, S("A: X"), "A: X");
    check_hdr(DKIM_CANON_SIMPLE, S("B : Y\t\r\n\tZ  "), "B : Y\t\r\n\tZ  ");
}

/* RFC 6376 §3.4.6 example, body part. */
static void test_rfc_example_body(void)
{
    static const char body[] = " C \r\nD \t E\r\n\r\n\r\n";
    check_body(DKIM_CANON_RELAXED, S(body), S(" C\r\nD E\r\n"));
    check_body(DKIM_CANON_SIMPLE, S(body), S(" C \r\nD \t E\r\n"));
}

static void test_relaxed_header_cases(void)
{
    check_hdr(DKIM_CANON_RELAXED, S("SUBJECT:   Hello   World   "), "subject:Hello World");
    check_hdr(DKIM_CANON_RELAXED, S("X-Empty:"), "x-empty:");
    check_hdr(DKIM_CANON_RELAXED, S("X-Empty: \t "), "x-empty:");
    check_hdr(DKIM_CANON_RELAXED, S("X-Fold:\r\n a\r\n\r\n b"), "x-fold:a b");
    check_hdr(DKIM_CANON_RELAXED, S("To:\ta@b.c,\r\n\t  d@e.f"), "to:a@b.c, d@e.f");
    /* Only the name is lower-cased; values keep their case and 8-bit bytes. */
    check_hdr(DKIM_CANON_RELAXED, S("X-ÄB: ÄÖ x"),
              "x-\xc3\x84"
              "b:\xc3\x84\xc3\x96 x");
    dh_buf out = {0};
    CHECK_OK(dkim_canon_header(DKIM_CANON_RELAXED, S("X-Nul: a\0 \0b "), &out));
    CHECK_MEM(out.data, out.len, "x-nul:a\0 \0b", 11);
    dh_buf_reset(&out);
    CHECK_OK(dkim_canon_header(DKIM_CANON_SIMPLE, S("X-Nul: a\0b"), &out));
    CHECK_MEM(out.data, out.len, "X-Nul: a\0b", 10);
    CHECK_EQ_INT(dkim_canon_header(DKIM_CANON_RELAXED, S("no colon"), &out), DH_EINVAL);
    dh_buf_free(&out);
}

static void test_empty_body(void)
{
    uint8_t got[32];
    /* The two well-known empty-body hashes. */
    static const uint8_t simple[32] = {0x7e, 0xb7, 0x02, 0x57, 0x59, 0x3d, 0xa0, 0x6f,
                                       0x68, 0x2a, 0x3d, 0xdd, 0xa5, 0x4a, 0x9d, 0x26,
                                       0x0d, 0x4f, 0xc5, 0x14, 0xf6, 0x45, 0x23, 0x7f,
                                       0x5c, 0xa7, 0x4b, 0x08, 0xf8, 0xda, 0x61, 0xa6};
    static const uint8_t relaxed[32] = {0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
                                        0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
                                        0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
                                        0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};
    body_hash(DKIM_CANON_SIMPLE, -1, NULL, 0, 0, got, NULL);
    CHECK_MEM(got, 32, simple, 32); /* frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY= */
    body_hash(DKIM_CANON_RELAXED, -1, NULL, 0, 0, got, NULL);
    CHECK_MEM(got, 32, relaxed, 32); /* 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= */
    /* Only empty lines: nothing is left, so the same as empty. */
    check_body(DKIM_CANON_SIMPLE, S("\r\n\r\n\r\n"), S("\r\n"));
    check_body(DKIM_CANON_RELAXED, S("\r\n \r\n\t\r\n"), S(""));
    check_body(DKIM_CANON_SIMPLE, S("\r\n"), S("\r\n"));
    check_body(DKIM_CANON_RELAXED, S("\r\n"), S(""));
}

static void test_missing_final_crlf(void)
{
    check_body(DKIM_CANON_SIMPLE, S("abc"), S("abc\r\n"));
    check_body(DKIM_CANON_RELAXED, S("abc"), S("abc\r\n"));
    check_body(DKIM_CANON_SIMPLE, S("a\r\nb"), S("a\r\nb\r\n"));
    check_body(DKIM_CANON_RELAXED, S("a\r\nb  "), S("a\r\nb\r\n"));
    check_body(DKIM_CANON_RELAXED, S("a\r\n  "), S("a\r\n"));
    check_body(DKIM_CANON_SIMPLE, S("a\r\n  "), S("a\r\n  \r\n"));
}

static void test_trailing_wsp(void)
{
    check_body(DKIM_CANON_RELAXED, S("a \t \r\nb\t\r\n"), S("a\r\nb\r\n"));
    check_body(DKIM_CANON_SIMPLE, S("a \t \r\nb\t\r\n"), S("a \t \r\nb\t\r\n"));
    check_body(DKIM_CANON_RELAXED, S("  lead\t\tin  mid\r\n"), S(" lead in mid\r\n"));
}

static void test_trailing_empty_lines(void)
{
    check_body(DKIM_CANON_SIMPLE, S("a\r\n\r\n\r\n\r\n"), S("a\r\n"));
    check_body(DKIM_CANON_RELAXED, S("a\r\n\r\n \r\n\t\r\n"), S("a\r\n"));
    /* Inner empty lines stay. */
    check_body(DKIM_CANON_SIMPLE, S("a\r\n\r\n\r\nb\r\n\r\n"), S("a\r\n\r\n\r\nb\r\n"));
    check_body(DKIM_CANON_RELAXED, S("a\r\n \r\n\r\nb\r\n\r\n"), S("a\r\n\r\n\r\nb\r\n"));
    /* In simple, a line of spaces is not empty. */
    check_body(DKIM_CANON_SIMPLE, S("a\r\n \r\n\r\n"), S("a\r\n \r\n"));
}

static void test_nul_and_8bit(void)
{
    check_body(DKIM_CANON_SIMPLE, S("a\0b\r\n\0\r\n"), S("a\0b\r\n\0\r\n"));
    check_body(DKIM_CANON_RELAXED, S("a\0  \0 \r\n\0"), S("a\0 \0\r\n\0\r\n"));
    check_body(DKIM_CANON_RELAXED, S("\xff\xfe \xa0\r\n"), S("\xff\xfe \xa0\r\n"));
    /* A CR without LF is data (dkim/msg.c refuses it before it gets here). */
    check_body(DKIM_CANON_SIMPLE, S("a\rb\r\n"), S("a\rb\r\n"));
    check_body(DKIM_CANON_RELAXED, S("a \r \r\n\r"), S("a \r\r\n\r\r\n"));
}

/* A straightforward whole-buffer canonicalizer written from the RFC text, to
 * compare the streaming one against on many inputs. */
static void reference(enum dkim_canon c, const uint8_t *p, size_t n, dh_buf *out)
{
    size_t i = 0, keep = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && !(p[e] == '\r' && e + 1 < n && p[e + 1] == '\n'))
            e++;
        size_t ls = out->len;
        for (size_t k = i; k < e; k++) {
            int w = p[k] == ' ' || p[k] == '\t';
            if (c == DKIM_CANON_RELAXED && w) {
                if (out->len > ls && out->data[out->len - 1] == ' ')
                    continue;
                CHECK_OK(dh_buf_putc(out, ' '));
            } else {
                CHECK_OK(dh_buf_putc(out, p[k]));
            }
        }
        if (c == DKIM_CANON_RELAXED && out->len > ls && out->data[out->len - 1] == ' ')
            out->len--;
        int empty = out->len == ls;
        CHECK_OK(dh_buf_append(out, "\r\n", 2));
        if (!empty)
            keep = out->len;
        i = e + 2;
    }
    out->len = keep; /* drop trailing empty lines */
    if (c == DKIM_CANON_SIMPLE && out->len == 0)
        CHECK_OK(dh_buf_append(out, "\r\n", 2));
}

static void test_chunking_random(void)
{
    static const uint8_t alphabet[] = {'a', 'b', ' ', '\t', '\r', '\n', '\0', 0xff, '\r', '\n'};
    unsigned long seed = 12345;
    uint8_t buf[300];
    for (int round = 0; round < 400; round++) {
        size_t n = (size_t)(round % 60) * 5;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 6364136223846793005UL + 1442695040888963407UL;
            buf[i] = alphabet[(seed >> 33) % sizeof(alphabet)];
        }
        for (int c = 0; c < 2; c++) {
            dh_buf ref = {0};
            uint8_t one[32], got[32], want[32];
            reference((enum dkim_canon)c, buf, n, &ref);
            sha256(ref.data ? ref.data : (uint8_t *)"", ref.len, want);
            body_hash((enum dkim_canon)c, -1, buf, n, 0, one, NULL);
            CHECK_MEM(one, 32, want, 32);
            body_hash((enum dkim_canon)c, -1, buf, n, 1, got, NULL);
            CHECK_MEM(got, 32, one, 32);
            body_hash((enum dkim_canon)c, -1, buf, n, -(long)(round + 1), got, NULL);
            CHECK_MEM(got, 32, one, 32);
            dh_buf_free(&ref);
        }
    }
}

/* A second reference, independent of both the state machine and reference():
 * the RFC 6376 steps as separate passes over the whole body in memory, one
 * byte at a time. The missing final CRLF is added first (canon.h: the MTA
 * transmits one), then §3.4.4 b, §3.4.4 a, §3.4.3 / §3.4.4 c, then l=. */
static int ends_crlf(const dh_buf *b)
{
    return b->len >= 2 && b->data[b->len - 2] == '\r' && b->data[b->len - 1] == '\n';
}

static void relaxed_passes(dh_buf *b)
{
    size_t w = 0;
    for (size_t r = 0; r < b->len; r++) { /* WSP run -> one SP; every SP left came from WSP */
        int wsp = b->data[r] == ' ' || b->data[r] == '\t';
        if (!(wsp && w > 0 && b->data[w - 1] == ' '))
            b->data[w++] = wsp ? ' ' : b->data[r];
    }
    b->len = w;
    w = 0;
    for (size_t r = 0; r < b->len; r++) /* the SP left before a CRLF goes */
        if (!(b->data[r] == ' ' && r + 2 < b->len && b->data[r + 1] == '\r' &&
              b->data[r + 2] == '\n'))
            b->data[w++] = b->data[r];
    b->len = w;
}

static void reference_passes(enum dkim_canon c, long long limit, const uint8_t *p, size_t n,
                             dh_buf *out)
{
    CHECK_OK(dh_buf_append(out, p, n));
    if (out->len > 0 && !ends_crlf(out))
        CHECK_OK(dh_buf_append(out, "\r\n", 2));
    if (c == DKIM_CANON_RELAXED)
        relaxed_passes(out);
    while (out->len >= 4 && ends_crlf(out) && out->data[out->len - 4] == '\r' &&
           out->data[out->len - 3] == '\n')
        out->len -= 2; /* the last line is empty: drop it */
    if (c == DKIM_CANON_RELAXED && out->len == 2 && ends_crlf(out))
        out->len = 0; /* nothing but empty lines */
    if (c == DKIM_CANON_SIMPLE && out->len == 0)
        CHECK_OK(dh_buf_append(out, "\r\n", 2));
    if (limit >= 0 && (size_t)limit < out->len)
        out->len = (size_t)limit;
}

static unsigned long next_rand(unsigned long *seed)
{
    *seed = *seed * 6364136223846793005UL + 1442695040888963407UL;
    return (unsigned long)(*seed >> 33);
}

/* Bodies biased towards the bytes that matter, with plain runs long enough
 * (sometimes thousands of bytes) for the block scan to fill the stage, and
 * special sequences placed at every offset. */
static size_t random_body(unsigned long *seed, uint8_t *p, size_t max)
{
    static const char *const pieces[] = {
        "\r\n",  "\r\n\r\n", " ",      "  ",   "\t", " \t ", "\r",   "\n", "\r\n ",
        " \r\n", "\r\n\t",   "\r\r\n", "\n\r", "x",  "\0",   "\xff", ". ", " x\r\n\r\n",
    };
    size_t n = 0, want = next_rand(seed) % (max + 1);
    while (n < want) {
        size_t k;
        if (next_rand(seed) % 3 == 0) {
            k = next_rand(seed) % (next_rand(seed) % 8 == 0 ? 3000 : 40);
            k = k < want - n ? k : want - n;
            for (size_t i = 0; i < k; i++)
                p[n + i] = (uint8_t)('a' + next_rand(seed) % 26);
        } else {
            size_t j = next_rand(seed) % (sizeof(pieces) / sizeof(pieces[0]));
            k = pieces[j][0] == '\0' ? 1 : strlen(pieces[j]);
            k = k < want - n ? k : want - n;
            memcpy(p + n, pieces[j], k);
        }
        n += k;
    }
    /* Often end on blank and WSP-only lines, long enough to reach the block
     * scan, so that what it passed over turns out to be trailing. */
    for (size_t k = next_rand(seed) % 2 ? next_rand(seed) % 64 : 0; k > 0 && n < max; k--)
        p[n++] = (uint8_t) "\r\n\r\n \t"[next_rand(seed) % 6];
    return n;
}

/* Feeds p in pieces of 0..maxchunk bytes chosen from seed. */
static void hash_pieces(enum dkim_canon c, long long limit, const uint8_t *p, size_t n,
                        size_t maxchunk, unsigned long seed, uint8_t out[32],
                        unsigned long long *hashed)
{
    dkim_body *b = dkim_body_new(c, limit);
    CHECK(b != NULL);
    if (b == NULL)
        return;
    for (size_t i = 0; i < n;) {
        size_t k = next_rand(&seed) % (maxchunk + 1);
        k = k < n - i ? k : n - i;
        CHECK_OK(dkim_body_update(b, p + i, k));
        i += k;
    }
    CHECK_OK(dkim_body_final(b, out, hashed));
    dkim_body_free(b);
}

static void cross_check_one(enum dkim_canon c, unsigned long *seed, const uint8_t *p, size_t n)
{
    static const size_t maxchunks[] = {2, 7, 70, 1500, 40000};
    dh_buf ref = {0}, ref2 = {0};
    uint8_t want[32], got[32];
    unsigned long long hashed = 0;
    reference_passes(c, -1, p, n, &ref);
    reference(c, p, n, &ref2); /* the two references agree */
    CHECK_MEM(ref2.data ? ref2.data : (uint8_t *)"", ref2.len, ref.data, ref.len);
    sha256(ref.data, ref.len, want);
    body_hash(c, -1, p, n, 0, got, &hashed);
    CHECK_MEM(got, 32, want, 32);
    CHECK_EQ_INT(hashed, ref.len);
    body_hash(c, -1, p, n, 1, got, NULL);
    CHECK_MEM(got, 32, want, 32);
    hash_pieces(c, -1, p, n, maxchunks[next_rand(seed) % 5], next_rand(seed), got, NULL);
    CHECK_MEM(got, 32, want, 32);
    /* l=: a random cut, sometimes past the end. */
    long long limit = (long long)(next_rand(seed) % (ref.len + 10));
    dh_buf_reset(&ref);
    reference_passes(c, limit, p, n, &ref);
    sha256(ref.data, ref.len, want);
    hash_pieces(c, limit, p, n, maxchunks[next_rand(seed) % 5], next_rand(seed), got, &hashed);
    CHECK_MEM(got, 32, want, 32);
    CHECK_EQ_INT(hashed, ref.len);
    dh_buf_free(&ref);
    dh_buf_free(&ref2);
}

static void test_cross_check_reference(void)
{
    enum { MAX = 90000 };
    uint8_t *p = malloc(MAX);
    CHECK(p != NULL);
    unsigned long seed = 20240611;
    for (int round = 0; round < 400 && p != NULL; round++) {
        size_t max = round % 10 == 9 ? MAX : round % 3 == 0 ? 4000 : 300;
        size_t n = random_body(&seed, p, max);
        cross_check_one(DKIM_CANON_SIMPLE, &seed, p, n);
        cross_check_one(DKIM_CANON_RELAXED, &seed, p, n);
    }
    free(p);
}

static void check_against_passes(const uint8_t *p, size_t n)
{
    for (int c = 0; c < 2; c++) {
        dh_buf ref = {0};
        uint8_t want[32], got[32];
        reference_passes((enum dkim_canon)c, -1, p, n, &ref);
        sha256(ref.data, ref.len, want);
        body_hash((enum dkim_canon)c, -1, p, n, 0, got, NULL);
        CHECK_MEM(got, 32, want, 32);
        body_hash((enum dkim_canon)c, -1, p, n, 1, got, NULL);
        CHECK_MEM(got, 32, want, 32);
        dh_buf_free(&ref);
    }
}

/* Blank and WSP-only lines after text, in one buffer: the block scan sees
 * them with enough lookahead, and must still stop so they can be held. */
static void test_trailing_blank_runs(void)
{
    static const char *const tails[] = {
        "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
        "\r\n  \r\n\t\r\n \r\n\r\n  \r\n\t\r\n \r\n\r\n",
        "  \t \r\n \t\r\n\t\r\n                    ",
        "\r\n \r\n \r\n \r\n \r\n \r\n \r\n \r\n \r\n ",
        "\r\n\t\r\n\t\r\n\t\r\n\t\r\n\t\r\n\t\r\n\t\r\n\t",
    };
    uint8_t p[200];
    for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++)
        for (size_t lead = 1; lead < 40; lead += 3) {
            size_t k = strlen(tails[t]);
            memset(p, 'x', lead);
            memcpy(p + lead, tails[t], k);
            check_against_passes(p, lead + k);
            memcpy(p + lead, "\r\n", 2); /* the same after a complete line */
            memcpy(p + lead + 2, tails[t], k);
            check_against_passes(p, lead + 2 + k);
        }
}

/* Tens of KB of short lines that all stop the fast path, so every canonical
 * byte goes through the stage in 1-, 2- and few-byte pieces; the leading
 * line shifts where each piece falls relative to the stage's end. */
static void test_stage_boundaries(void)
{
    enum { LINES = 9000 };
    static const char line[] = "ab \r\n\r\n";
    size_t n = 0;
    uint8_t *p = malloc(16 + LINES * (sizeof(line) - 1));
    CHECK(p != NULL);
    for (size_t lead = 0; lead < 12 && p != NULL; lead++) {
        memset(p, 'y', lead);
        n = lead;
        for (int i = 0; i < LINES; i++, n += sizeof(line) - 1)
            memcpy(p + n, line, sizeof(line) - 1);
        check_against_passes(p, n);
    }
    free(p);
}

static void test_large_body_constant_memory(void)
{
    /* 8 MB of mostly empty lines and spaces, fed 64 KB at a time: the
     * canonicalizer must count them, not store them (ASan would show growth
     * only as time, so this mostly checks the counting is right). */
    size_t n = 65536;
    uint8_t *chunk = malloc(n);
    CHECK(chunk != NULL);
    if (chunk == NULL)
        return;
    for (size_t i = 0; i < n; i += 4)
        memcpy(chunk + i, i % 64 == 0 ? "x \r\n" : "\r\n\r\n", 4);
    dkim_body *b = dkim_body_new(DKIM_CANON_RELAXED, -1);
    for (int k = 0; k < 128 && b != NULL; k++)
        CHECK_OK(dkim_body_update(b, chunk, n));
    uint8_t got[32];
    unsigned long long hashed = 0;
    CHECK_OK(dkim_body_final(b, got, &hashed));
    dkim_body_free(b);
    free(chunk);
    CHECK(hashed > 0);
}

static void test_limit(void)
{
    uint8_t got[32], want[32];
    unsigned long long hashed = 0;
    sha256("a b\r", 4, want);
    body_hash(DKIM_CANON_RELAXED, 4, S("a   b  \r\nmore\r\n"), 1, got, &hashed);
    CHECK_MEM(got, 32, want, 32);
    CHECK_EQ_INT(hashed, 4);
    sha256("", 0, want);
    body_hash(DKIM_CANON_SIMPLE, 0, S("abc\r\n"), 0, got, &hashed);
    CHECK_MEM(got, 32, want, 32);
    CHECK_EQ_INT(hashed, 0);
    /* A limit above the canonical length hashes everything. */
    sha256("abc\r\n", 5, want);
    body_hash(DKIM_CANON_SIMPLE, 1000, S("abc\r\n\r\n"), 0, got, &hashed);
    CHECK_MEM(got, 32, want, 32);
    CHECK_EQ_INT(hashed, 5);
    /* The empty-body CRLF of simple counts too. */
    sha256("\r", 1, want);
    body_hash(DKIM_CANON_SIMPLE, 1, NULL, 0, 0, got, &hashed);
    CHECK_MEM(got, 32, want, 32);
    CHECK_EQ_INT(hashed, 1);
}

static void test_object_state(void)
{
    dkim_body *b = dkim_body_new(DKIM_CANON_RELAXED, 17);
    CHECK(b != NULL);
    CHECK_EQ_INT(dkim_body_canon(b), DKIM_CANON_RELAXED);
    CHECK_EQ_INT(dkim_body_limit(b), 17);
    uint8_t out[32];
    CHECK_OK(dkim_body_update(b, S("x")));
    CHECK_OK(dkim_body_final(b, out, NULL));
    CHECK_EQ_INT(dkim_body_update(b, S("x")), DH_ESTATE);
    CHECK_EQ_INT(dkim_body_final(b, out, NULL), DH_ESTATE);
    dkim_body_free(b);
    dkim_body_free(NULL);
    b = dkim_body_new(DKIM_CANON_SIMPLE, -5);
    CHECK_EQ_INT(dkim_body_limit(b), -1);
    dkim_body_free(b);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"rfc_example_headers", test_rfc_example_headers},
        {"rfc_example_body", test_rfc_example_body},
        {"relaxed_header_cases", test_relaxed_header_cases},
        {"empty_body", test_empty_body},
        {"missing_final_crlf", test_missing_final_crlf},
        {"trailing_wsp", test_trailing_wsp},
        {"trailing_empty_lines", test_trailing_empty_lines},
        {"nul_and_8bit", test_nul_and_8bit},
        {"chunking_random", test_chunking_random},
        {"cross_check_reference", test_cross_check_reference},
        {"trailing_blank_runs", test_trailing_blank_runs},
        {"stage_boundaries", test_stage_boundaries},
        {"large_body_constant_memory", test_large_body_constant_memory},
        {"limit", test_limit},
        {"object_state", test_object_state},
        {NULL, NULL},
    };
    return check_run(argc, argv, cases);
}
