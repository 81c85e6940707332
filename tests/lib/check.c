#include "tests/lib/check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

int check_failures;

void check_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: FAIL: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    check_failures++;
}

static void dump(const char *label, const void *p, size_t len)
{
    fprintf(stderr, "  %s (%zu bytes): \"", label, len);
    const unsigned char *s = p;
    for (size_t i = 0; i < len && i < 400; i++) {
        if (s[i] == '\r')
            fputs("\\r", stderr);
        else if (s[i] == '\n')
            fputs("\\n", stderr);
        else if (s[i] == '\t')
            fputs("\\t", stderr);
        else if (s[i] < 0x20 || s[i] >= 0x7f)
            fprintf(stderr, "\\x%02x", s[i]);
        else
            fputc(s[i], stderr);
    }
    fputs(len > 400 ? "\"...\n" : "\"\n", stderr);
}

void check_mem_fail(const char *file, int line, const char *what, const void *got, size_t gotlen,
                    const void *want, size_t wantlen)
{
    check_fail(file, line, "%s differs", what);
    dump("got ", got, gotlen);
    dump("want", want, wantlen);
}

int check_run(int argc, char **argv, const struct check_case *cases)
{
    int passed = 0, failed = 0;
    for (const struct check_case *c = cases; c->name != NULL; c++) {
        if (argc > 1 && strcmp(argv[1], c->name) != 0)
            continue;
        int before = check_failures;
        c->fn();
        if (check_failures == before) {
            passed++;
            printf("ok   %s\n", c->name);
        } else {
            failed++;
            printf("FAIL %s\n", c->name);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}

uint8_t *check_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    size_t cap = 4096, n = 0;
    uint8_t *p = malloc(cap + 1);
    size_t r;
    while (p != NULL && (r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            uint8_t *q = realloc(p, cap * 2 + 1);
            if (q == NULL) {
                free(p);
                p = NULL;
                break;
            }
            p = q;
            cap *= 2;
        }
    }
    fclose(f);
    if (p != NULL) {
        p[n] = '\0';
        *len = n;
    }
    return p;
}

int check_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static char tmpdir[] = "/tmp/dkimhsm-check.XXXXXX";
static int tmpdir_made;

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tmpdir(void)
{
    if (nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

const char *check_tmpdir(void)
{
    if (!tmpdir_made) {
        if (mkdtemp(tmpdir) == NULL)
            return NULL;
        tmpdir_made = 1;
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

const char *check_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL) {
        fprintf(stderr, "%s not set: run under tests/lib/with-token.sh\n", name);
        exit(2);
    }
    return v;
}
