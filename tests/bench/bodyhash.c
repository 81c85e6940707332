/*
 * bodyhash - how fast the streaming body canonicalizer + SHA-256 runs next to
 * plain SHA-256 over the same bytes, measured in one run (the machines are
 * shared: compare ratios, not absolute figures).
 *
 *   bodyhash [MEGABYTES] [ROUNDS]     (default 10 MB, 5 rounds, best of)
 *
 * The message body is ~80-byte text lines with some trailing whitespace and
 * runs of blank lines, fed in 64 KB chunks as an MTA would stream them.
 * Prints MB/s for: raw SHA-256 in 16 KB blocks (what `openssl speed -evp
 * sha256 -bytes 16384` measures), relaxed and simple body hashing, and the
 * ratios relaxed/raw and simple/raw.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dkim/canon.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint8_t *make_body(size_t size)
{
    uint8_t *b = malloc(size);
    if (b == NULL)
        return NULL;
    size_t o = 0;
    for (unsigned line = 0; o < size; line++) {
        char text[128];
        int n = snprintf(text, sizeof(text), "%s line %u of the body, some words to hash%s\r\n",
                         line % 7 ? "Text" : "More  text\t", line, line % 5 ? "" : "   ");
        if (line % 50 == 49)
            n = snprintf(text, sizeof(text), "\r\n\r\n");
        for (int i = 0; i < n && o < size; i++)
            b[o++] = (uint8_t)text[i];
    }
    return b;
}

static double raw_sha256(const uint8_t *b, size_t size)
{
    uint8_t md[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    double t0 = now();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t o = 0; o < size; o += 16384)
        EVP_DigestUpdate(ctx, b + o, size - o < 16384 ? size - o : 16384);
    EVP_DigestFinal_ex(ctx, md, NULL);
    double t = now() - t0;
    EVP_MD_CTX_free(ctx);
    return t;
}

static double body_hash(enum dkim_canon c, const uint8_t *b, size_t size)
{
    uint8_t md[32];
    dkim_body *h = dkim_body_new(c, -1);
    double t0 = now();
    for (size_t o = 0; o < size; o += 65536)
        if (dkim_body_update(h, b + o, size - o < 65536 ? size - o : 65536) != DH_OK)
            abort();
    if (dkim_body_final(h, md, NULL) != DH_OK)
        abort();
    double t = now() - t0;
    dkim_body_free(h);
    return t;
}

int main(int argc, char **argv)
{
    size_t mb = argc > 1 ? strtoul(argv[1], NULL, 10) : 10;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    size_t size = mb << 20;
    uint8_t *b = make_body(size);
    if (b == NULL || mb == 0 || rounds < 1)
        return 2;
    double raw = 1e9, rel = 1e9, sim = 1e9;
    /* Interleaved rounds, best of each: both see the same machine load. */
    for (int r = 0; r < rounds; r++) {
        double t = raw_sha256(b, size);
        raw = t < raw ? t : raw;
        t = body_hash(DKIM_CANON_RELAXED, b, size);
        rel = t < rel ? t : rel;
        t = body_hash(DKIM_CANON_SIMPLE, b, size);
        sim = t < sim ? t : sim;
    }
    printf("body of %zu MB, best of %d rounds\n", mb, rounds);
    printf("raw SHA-256 (16 KB blocks):  %8.1f MB/s\n", (double)mb / raw);
    printf("relaxed body hash:           %8.1f MB/s\n", (double)mb / rel);
    printf("simple body hash:            %8.1f MB/s\n", (double)mb / sim);
    printf("RESULT raw_mbs=%.1f relaxed_mbs=%.1f simple_mbs=%.1f relaxed_ratio=%.2f "
           "simple_ratio=%.2f\n",
           (double)mb / raw, (double)mb / rel, (double)mb / sim, raw / rel, raw / sim);
    free(b);
    return 0;
}
