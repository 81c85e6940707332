/*
 * bodyhash - how fast the streaming body canonicalizer + SHA-256 runs next to
 * plain SHA-256 over the same bytes, measured in one run (the machines are
 * shared: compare ratios, not absolute figures).
 *
 *   bodyhash [MEGABYTES] [ROUNDS]     (default 10 MB, 30 rounds, best of)
 *
 * Two bodies, fed in 64 KB chunks as an MTA streams them:
 *   text    mail text in paragraphs wrapped at <= 72 columns (~67 on
 *           average): plain, quoted ("> ") and format=flowed ones (every soft
 *           break leaves a trailing SP), half the sentences followed by two
 *           spaces, blank lines between paragraphs, a "-- " signature
 *           separator now and then;
 *   base64  an attachment: 76-character base64 lines.
 * It prints MB/s for raw SHA-256 in 16 KB blocks (what `openssl speed -evp
 * sha256 -bytes 16384` measures), and for each body relaxed and simple body
 * hashing, the ratio of each to raw, and PASS/MISS for relaxed against
 * TARGET. Raw SHA-256 runs between the others over both bodies; its speed
 * does not depend on the bytes, so the best of all those rounds is used.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dkim/canon.h"

#define TARGET 0.6 /* relaxed body hash / raw SHA-256 */
#define CHUNK 65536

static unsigned long rnd(unsigned long *s)
{
    *s = *s * 6364136223846793005UL + 1442695040888963407UL;
    return (unsigned long)(*s >> 33);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Appends s to b (capacity size) as far as it fits. */
static void put(uint8_t *b, size_t *o, size_t size, const char *s)
{
    for (; *s != '\0' && *o < size; s++)
        b[(*o)++] = (uint8_t)*s;
}

/* One paragraph of 3..8 wrapped lines in one of three styles. */
static void paragraph(uint8_t *b, size_t *o, size_t size, unsigned long *s)
{
    static const char *const words[] = {
        "the",      "message",  "signature", "of",      "and",     "key",  "domain",
        "we",       "will",     "please",    "meeting", "report",  "a",    "to",
        "thanks",   "review",   "attached",  "next",    "week",    "is",   "for",
        "project",  "budget",   "update",    "on",      "server",  "with", "I",
        "schedule", "customer", "that",      "it",      "regards", "in",   "be",
    };
    int style = (int)(rnd(s) % 4); /* 0, 1 plain; 2 quoted; 3 format=flowed */
    int lines = 3 + (int)(rnd(s) % 6);
    for (int l = 0; l < lines; l++) {
        char line[128] = "";
        size_t len = style == 2 ? (size_t)snprintf(line, sizeof(line), "> ") : 0;
        for (;;) {
            const char *w = words[rnd(s) % (sizeof(words) / sizeof(words[0]))];
            /* about one sentence in 15 words; half of them end in two spaces */
            const char *sep = rnd(s) % 15 ? " " : rnd(s) % 2 ? ".  " : ". ";
            if (len + strlen(w) > 72)
                break;
            len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s", w, sep);
        }
        if (style != 3 || l == lines - 1) /* flowed: soft breaks keep one SP */
            while (len > 0 && line[len - 1] == ' ')
                line[--len] = '\0';
        while (len > 1 && line[len - 1] == ' ' && line[len - 2] == ' ')
            line[--len] = '\0';
        put(b, o, size, line);
        put(b, o, size, "\r\n");
    }
    put(b, o, size, rnd(s) % 20 ? "\r\n" : "\r\n-- \r\nA. Sender\r\n\r\n");
}

static uint8_t *make_text(size_t size)
{
    uint8_t *b = malloc(size);
    unsigned long s = 1;
    for (size_t o = 0; b != NULL && o < size;)
        paragraph(b, &o, size, &s);
    return b;
}

static uint8_t *make_base64(size_t size)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t *b = malloc(size);
    unsigned long s = 2;
    for (size_t o = 0; b != NULL && o < size;) {
        char line[80];
        for (int i = 0; i < 76; i++)
            line[i] = b64[rnd(&s) % 64];
        memcpy(line + 76, "\r\n", 3);
        put(b, &o, size, line);
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
    if (h == NULL)
        abort();
    double t0 = now();
    for (size_t o = 0; o < size; o += CHUNK)
        if (dkim_body_update(h, b + o, size - o < CHUNK ? size - o : CHUNK) != DH_OK)
            abort();
    if (dkim_body_final(h, md, NULL) != DH_OK)
        abort();
    double t = now() - t0;
    dkim_body_free(h);
    return t;
}

struct result {
    double raw, relaxed, simple; /* best times, seconds */
};

static double best(double a, double b)
{
    return a < b ? a : b;
}

/* Interleaved rounds, best of each: all three see the same machine load. */
static struct result measure(const uint8_t *b, size_t size, int rounds)
{
    struct result r = {1e9, 1e9, 1e9};
    for (int i = 0; i < rounds; i++) {
        r.raw = best(r.raw, raw_sha256(b, size));
        r.relaxed = best(r.relaxed, body_hash(DKIM_CANON_RELAXED, b, size));
        r.simple = best(r.simple, body_hash(DKIM_CANON_SIMPLE, b, size));
    }
    return r;
}

static int report(const char *name, struct result r, double raw, double mb)
{
    int pass = raw / r.relaxed >= TARGET;
    printf("%-7s relaxed body hash  %8.1f MB/s  %.2fx  %s (target %.2fx)\n", name, mb / r.relaxed,
           raw / r.relaxed, pass ? "PASS" : "MISS", TARGET);
    printf("%-7s simple body hash   %8.1f MB/s  %.2fx\n", name, mb / r.simple, raw / r.simple);
    return pass;
}

int main(int argc, char **argv)
{
    size_t mb = argc > 1 ? strtoul(argv[1], NULL, 10) : 10;
    int rounds = argc > 2 ? atoi(argv[2]) : 30;
    size_t size = mb << 20;
    uint8_t *text = mb > 0 ? make_text(size) : NULL;
    uint8_t *b64 = mb > 0 ? make_base64(size) : NULL;
    if (text == NULL || b64 == NULL || rounds < 1)
        return 2;
    struct result rt = measure(text, size, rounds);
    struct result rb = measure(b64, size, rounds);
    double raw = best(rt.raw, rb.raw);
    printf("bodies of %zu MB in %d KB updates, best of %d rounds\n", mb, CHUNK / 1024, rounds);
    printf("raw SHA-256 (16 KB blocks) %8.1f MB/s\n", (double)mb / raw);
    int pass = report("text", rt, raw, (double)mb);
    pass &= report("base64", rb, raw, (double)mb);
    printf("RESULT raw_mbs=%.1f text_relaxed_ratio=%.2f text_simple_ratio=%.2f "
           "base64_relaxed_ratio=%.2f base64_simple_ratio=%.2f target=%.2f %s\n",
           (double)mb / raw, raw / rt.relaxed, raw / rt.simple, raw / rb.relaxed, raw / rb.simple,
           TARGET, pass ? "PASS" : "MISS");
    free(text);
    free(b64);
    return 0;
}
