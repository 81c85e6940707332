/*
 * driver.c - runs a libFuzzer entry point on a fixed set of inputs and on
 * seeded mutations of them, so ctest exercises every fuzz target on every
 * build without libFuzzer (OpenSSH regress/misc/fuzz-harness does the same).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"

#define MUTATIONS_PER_SEED 300
#define MAX_INPUT 4096

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static const uint8_t interesting[] = {'\r', '\n', ' ', '\t', ':', ';', '=', '\0',
                                      0xff, '"',  '(', ')',  '<', '>', '@', ','};

static size_t mutate(uint8_t *buf, size_t len)
{
    int nmut = 1 + (int)(rng() % 4);
    for (int k = 0; k < nmut; k++) {
        size_t pos = len ? (size_t)(rng() % len) : 0;
        switch (rng() % 5) {
        case 0: /* overwrite with an interesting byte */
            if (len)
                buf[pos] = interesting[rng() % sizeof(interesting)];
            break;
        case 1: /* insert an interesting byte */
            if (len < MAX_INPUT) {
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = interesting[rng() % sizeof(interesting)];
                len++;
            }
            break;
        case 2: /* delete a byte */
            if (len) {
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
            }
            break;
        case 3: /* flip a bit */
            if (len)
                buf[pos] ^= (uint8_t)(1u << (rng() % 8));
            break;
        default: /* truncate */
            len = pos;
            break;
        }
    }
    return len;
}

int main(void)
{
    static uint8_t buf[MAX_INPUT + 1];
    size_t runs = 0;
    for (size_t s = 0; fuzz_seeds[s] != NULL; s++) {
        size_t n = strlen(fuzz_seeds[s]);
        if (n > MAX_INPUT)
            n = MAX_INPUT;
        memcpy(buf, fuzz_seeds[s], n);
        LLVMFuzzerTestOneInput(buf, n);
        runs++;
        for (int m = 0; m < MUTATIONS_PER_SEED; m++) {
            size_t len = n;
            memcpy(buf, fuzz_seeds[s], n);
            len = mutate(buf, len);
            LLVMFuzzerTestOneInput(buf, len);
            runs++;
        }
    }
    printf("%zu inputs run\n", runs);
    return 0;
}
