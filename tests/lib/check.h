/*
 * check.h - the small test harness our unit tests share: named cases, checks
 * that report file:line and keep going, and a closing line ctest can read.
 *
 *   static void test_foo(void) { CHECK(x == 1); CHECK_MEM(a, b, n); }
 *   int main(int argc, char **argv) {
 *       static const struct check_case cases[] = {{"foo", test_foo}, {NULL, NULL}};
 *       return check_run(argc, argv, cases);
 *   }
 * check_run runs every case (or only the one named in argv[1]) and prints
 * "N passed, N failed". A test that needs ../shared/testdata and finds it
 * absent returns CHECK_SKIP (77), which ctest reports as skipped.
 */
#ifndef DH_TEST_CHECK_H
#define DH_TEST_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct check_case {
    const char *name;
    void (*fn)(void);
};

#define CHECK_SKIP 77

extern int check_failures;

void check_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void check_mem_fail(const char *file, int line, const char *what, const void *got, size_t gotlen,
                    const void *want, size_t wantlen);
int check_run(int argc, char **argv, const struct check_case *cases);
/* Reads a test data file into a malloc'ed buffer (NUL-terminated); NULL and a
 * message when it cannot. */
uint8_t *check_slurp(const char *path, size_t *len);
/* A fresh temporary directory for this test process, removed with all it
 * holds when the process exits. Returns its path (static), NULL on failure. */
const char *check_tmpdir(void);
/* The value of an environment variable with-token.sh exports; exits 2
 * naming it when it is not set (the test was not run through it). */
const char *check_env(const char *name);
/* 1 when path exists (used to skip cleanly when ../shared is absent). */
int check_exists(const char *path);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            check_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                    \
    } while (0)
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        int check_rc_ = (expr);                                                                    \
        if (check_rc_ != 0)                                                                        \
            check_fail(__FILE__, __LINE__, "%s returned %d", #expr, check_rc_);                    \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        if (check_a_ != check_b_)                                                                  \
            check_fail(__FILE__, __LINE__, "%s == %lld, expected %lld", #a, check_a_, check_b_);   \
    } while (0)
#define CHECK_MEM(got, gotlen, want, wantlen)                                                      \
    do {                                                                                           \
        size_t check_gl_ = (gotlen), check_wl_ = (wantlen);                                        \
        if (check_gl_ != check_wl_ || memcmp((got), (want), check_wl_) != 0)                       \
            check_mem_fail(__FILE__, __LINE__, #got, (got), check_gl_, (want), check_wl_);         \
    } while (0)
#define CHECK_STR(got, want) CHECK_MEM((got), strlen(got), (want), strlen(want))

#endif
