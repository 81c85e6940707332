/*
 * fuzz.h - what every fuzz target shares: the libFuzzer entry point, the
 * seeds the deterministic driver (driver.c) starts from, and REQUIRE for the
 * target's invariants (abort, so both libFuzzer and ctest see the failure).
 */
#ifndef TESTS_FUZZ_FUZZ_H
#define TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* NULL-terminated; each a C string, so a target whose inputs hold NUL bytes
 * documents how its seeds are encoded. */
extern const char *const fuzz_seeds[];

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#endif
