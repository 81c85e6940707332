/* daemon/lookup_cache.h: what the milter remembers of dkimhsmd's answers. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "tests/lib/check.h"
#include "daemon/lookup_cache.h"

static ac_lookup answer(uint8_t status, const char *domain, const char *selector)
{
    ac_lookup l;
    memset(&l, 0, sizeof l);
    l.status = status;
    snprintf(l.domain, sizeof l.domain, "%s", domain);
    if (status == AP_OK) {
        l.count = 1;
        snprintf(l.sel[0].selector, sizeof l.sel[0].selector, "%s", selector);
        l.sel[0].alg = 1;
    }
    return l;
}

static void test_hit_expiry_case(void)
{
    lc *c = NULL;
    dh_err e = {0};
    CHECK_OK(lc_new(500, &c, &e));
    ac_lookup in = answer(AP_OK, "example.com", "s1"), out;
    CHECK(!lc_get(c, "example.com", 1000, &out));
    lc_put(c, "example.com", 1000, &in);
    CHECK(lc_get(c, "EXAMPLE.com", 1499, &out));
    CHECK_STR(out.sel[0].selector, "s1");
    CHECK_EQ_INT(out.count, 1);
    CHECK(!lc_get(c, "example.com", 1500, &out)); /* ttl over */
    CHECK(!lc_get(c, "other.example", 1100, &out));
    lc_free(c);
}

static void test_notfound_kept_tempfail_not(void)
{
    lc *c = NULL;
    dh_err e = {0};
    CHECK_OK(lc_new(1000, &c, &e));
    ac_lookup nf = answer(AP_NOTFOUND, "nokey.example", NULL),
              tf = answer(AP_TEMPFAIL, "t.example", NULL), out;
    lc_put(c, "nokey.example", 0, &nf);
    lc_put(c, "t.example", 0, &tf);
    CHECK(lc_get(c, "nokey.example", 10, &out));
    CHECK_EQ_INT(out.status, AP_NOTFOUND);
    CHECK(!lc_get(c, "t.example", 10, &out));
    lc_free(c);
}

static void test_drop_and_zero_ttl(void)
{
    lc *c = NULL, *off = NULL;
    dh_err e = {0};
    CHECK_OK(lc_new(1000, &c, &e));
    CHECK_OK(lc_new(0, &off, &e));
    ac_lookup in = answer(AP_OK, "example.com", "s1"), out;
    lc_put(c, "example.com", 0, &in);
    lc_drop(c, "other.example"); /* another name: nothing happens */
    CHECK(lc_get(c, "example.com", 1, &out));
    lc_drop(c, "Example.COM");
    CHECK(!lc_get(c, "example.com", 1, &out));
    lc_put(off, "example.com", 0, &in);
    CHECK(!lc_get(off, "example.com", 0, &out));
    lc_free(c);
    lc_free(off);
}

/* Many names through few slots: an answer comes back only for its own name. */
static void test_collisions_never_cross(void)
{
    lc *c = NULL;
    dh_err e = {0};
    CHECK_OK(lc_new(1000, &c, &e));
    char name[64], sel[64];
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "d%d.example", i);
        snprintf(sel, sizeof sel, "s%d", i);
        ac_lookup in = answer(AP_OK, name, sel);
        lc_put(c, name, 0, &in);
    }
    int hits = 0;
    for (int i = 0; i < 2000; i++) {
        ac_lookup out;
        snprintf(name, sizeof name, "d%d.example", i);
        snprintf(sel, sizeof sel, "s%d", i);
        if (lc_get(c, name, 1, &out)) {
            hits++;
            CHECK_STR(out.domain, name);
            CHECK_STR(out.sel[0].selector, sel);
        }
    }
    CHECK(hits > 0 && hits < 2000);
    lc_free(c);
}

static lc *shared;

static void *hammer(void *arg)
{
    int t = *(int *)arg;
    char name[64], sel[80];
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "d%d.example", (i + t) % 300);
        snprintf(sel, sizeof sel, "s-%s", name);
        ac_lookup in = answer(AP_OK, name, sel), out;
        lc_put(shared, name, 0, &in);
        if (lc_get(shared, name, 1, &out) && strcmp(out.sel[0].selector, sel) != 0)
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void)
{
    dh_err e = {0};
    CHECK_OK(lc_new(1000, &shared, &e));
    pthread_t th[4];
    int ids[4] = {0, 1, 2, 3};
    for (int i = 0; i < 4; i++)
        CHECK_OK(pthread_create(&th[i], NULL, hammer, &ids[i]));
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        CHECK_OK(pthread_join(th[i], &r));
        CHECK(r == NULL);
    }
    lc_free(shared);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"hit_expiry_case", test_hit_expiry_case},
        {"notfound_kept_tempfail_not", test_notfound_kept_tempfail_not},
        {"drop_and_zero_ttl", test_drop_and_zero_ttl},
        {"collisions_never_cross", test_collisions_never_cross},
        {"threads", test_threads},
        {NULL, NULL}};
    return check_run(argc, argv, cases);
}
