/*
 * test_tag.c - RFC 6376 §3.2 tag lists, and the small vocabulary of types.h.
 */
#include <stdio.h>
#include <string.h>

#include "dkim/tag.h"
#include "dkim/types.h"
#include "tests/lib/check.h"

static dkim_tags *parse_ok(const char *s)
{
    dkim_tags *t = NULL;
    dh_err e = {0};
    int rc = dkim_tags_parse(s, strlen(s), &t, &e);
    if (rc != DH_OK)
        check_fail(__FILE__, __LINE__, "parse \"%s\": %d %s", s, rc, e.msg);
    return t;
}

static void parse_bad(const char *s, const char *needle)
{
    dkim_tags *t = (dkim_tags *)&t; /* must stay untouched on failure */
    dkim_tags *const sentinel = t;
    dh_err e = {0};
    CHECK_EQ_INT(dkim_tags_parse(s, strlen(s), &t, &e), DH_EINVAL);
    CHECK(t == sentinel);
    if (strstr(e.msg, needle) == NULL)
        check_fail(__FILE__, __LINE__, "\"%s\": error \"%s\" lacks \"%s\"", s, e.msg, needle);
}

static void test_basic(void)
{
    dkim_tags *t = parse_ok("v=1; a=rsa-sha256; d=example.com");
    CHECK_EQ_INT(dkim_tags_count(t), 3);
    size_t len = 0;
    CHECK_STR(dkim_tags_get(t, "a", &len), "rsa-sha256");
    CHECK_EQ_INT(len, 10);
    CHECK(dkim_tags_get(t, "x", NULL) == NULL);
    CHECK(dkim_tags_get(t, "V", NULL) == NULL); /* §3.2: names are case-sensitive */
    const char *n, *v;
    dkim_tags_at(t, 2, &n, &v);
    CHECK_STR(n, "d");
    CHECK_STR(v, "example.com");
    dkim_tags_free(t);
    dkim_tags_free(NULL);
}

static void test_fws(void)
{
    dkim_tags *t = parse_ok("  a = b  c ;\r\n\tb=x\r\n y;c=;d_1=\t;");
    CHECK_EQ_INT(dkim_tags_count(t), 4);
    CHECK_STR(dkim_tags_get(t, "a", NULL), "b  c");
    CHECK_STR(dkim_tags_get(t, "b", NULL), "x\r\n y");
    CHECK_STR(dkim_tags_get(t, "c", NULL), "");
    CHECK_STR(dkim_tags_get(t, "d_1", NULL), "");
    dkim_tags_free(t);
}

static void test_empty_and_trailing(void)
{
    dkim_tags *t = parse_ok("");
    CHECK_EQ_INT(dkim_tags_count(t), 0);
    dkim_tags_free(t);
    t = parse_ok(" \r\n ");
    CHECK_EQ_INT(dkim_tags_count(t), 0);
    dkim_tags_free(t);
    t = parse_ok("a=1; ");
    CHECK_EQ_INT(dkim_tags_count(t), 1);
    dkim_tags_free(t);
}

static void test_span(void)
{
    static const char s[] = "a=1; b= xy z \r\n\t;c=2";
    dkim_tags *t = parse_ok(s);
    size_t off = 0, len = 0;
    CHECK_OK(dkim_tags_span(t, "b", &off, &len));
    CHECK_EQ_INT(off, 7);
    CHECK_MEM(s + off, len, " xy z \r\n\t", 9);
    CHECK_OK(dkim_tags_span(t, "c", &off, &len));
    CHECK_MEM(s + off, len, "2", 1);
    CHECK_EQ_INT(dkim_tags_span(t, "q", &off, &len), DH_ENOTFOUND);
    dkim_tags_free(t);
}

static void test_errors(void)
{
    parse_bad("a=1;;b=2", "empty tag at byte 4");
    parse_bad("a=1; b", "\"b\" at byte 5 has no '='");
    parse_bad("a=1; b c=2", "\"b\"");
    parse_bad("1a=2", "tag name at byte 0");
    parse_bad("a-b=2", "\"a\" at byte 0 has no '='");
    parse_bad("=2", "tag name at byte 0");
    parse_bad("a=1; b=2; a=3", "duplicate tag \"a\" at byte 10");
    parse_bad("a=x\001y", "control character 0x01 at byte 3");
    parse_bad("a=x\177", "control character 0x7f");
    /* A NUL inside the given length is a control character, not an end. */
    dkim_tags *t = NULL;
    CHECK_EQ_INT(dkim_tags_parse("a=x\0y", 5, &t, NULL), DH_EINVAL);
    char many[4000] = "";
    for (int i = 0; i < 300; i++)
        sprintf(many + strlen(many), "t%d=;", i);
    parse_bad(many, "more than 256 tags");
}

static void test_eight_bit_value(void)
{
    /* RFC 8616 allows UTF-8 in some values (i=); keep the bytes as they are. */
    dkim_tags *t = parse_ok("i=j\xc3\xb6rg@example.de");
    CHECK_STR(dkim_tags_get(t, "i", NULL), "j\xc3\xb6rg@example.de");
    dkim_tags_free(t);
}

static void test_types(void)
{
    enum dkim_canon h = DKIM_CANON_SIMPLE, b = DKIM_CANON_RELAXED;
    enum dkim_alg a = DKIM_ALG_RSA_SHA256;
    dh_err e = {0};
    CHECK_OK(dkim_canon_parse("relaxed/simple", &h, &b, &e));
    CHECK(h == DKIM_CANON_RELAXED && b == DKIM_CANON_SIMPLE);
    CHECK_OK(dkim_canon_parse("relaxed", &h, &b, &e));
    CHECK(h == DKIM_CANON_RELAXED && b == DKIM_CANON_SIMPLE); /* §3.5 default */
    CHECK_OK(dkim_canon_parse("simple/relaxed", &h, &b, &e));
    CHECK(h == DKIM_CANON_SIMPLE && b == DKIM_CANON_RELAXED);
    CHECK_EQ_INT(dkim_canon_parse("relaxed/", &h, &b, &e), DH_EINVAL);
    CHECK_EQ_INT(dkim_canon_parse("Relaxed", &h, &b, &e), DH_EINVAL);
    CHECK_EQ_INT(dkim_canon_parse("relaxed/simple/x", &h, &b, &e), DH_EINVAL);
    CHECK(strstr(e.msg, "relaxed/simple/x") != NULL);
    CHECK(h == DKIM_CANON_SIMPLE && b == DKIM_CANON_RELAXED); /* untouched on error */
    CHECK_STR(dkim_canon_name(DKIM_CANON_RELAXED), "relaxed");
    CHECK_STR(dkim_canon_name(DKIM_CANON_SIMPLE), "simple");
    CHECK_OK(dkim_alg_parse("ed25519-sha256", &a, &e));
    CHECK(a == DKIM_ALG_ED25519_SHA256);
    CHECK_OK(dkim_alg_parse("rsa", &a, &e));
    CHECK(a == DKIM_ALG_RSA_SHA256);
    CHECK_OK(dkim_alg_parse("ed25519", &a, &e));
    CHECK_EQ_INT(dkim_alg_parse("rsa-sha1", &a, &e), DH_EINVAL);
    CHECK(a == DKIM_ALG_ED25519_SHA256);
    CHECK_STR(dkim_alg_name(DKIM_ALG_RSA_SHA256), "rsa-sha256");
    CHECK_STR(dkim_alg_keytype(DKIM_ALG_ED25519_SHA256), "ed25519");
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"basic", test_basic},
        {"fws", test_fws},
        {"empty_and_trailing", test_empty_and_trailing},
        {"span", test_span},
        {"errors", test_errors},
        {"eight_bit_value", test_eight_bit_value},
        {"types", test_types},
        {NULL, NULL},
    };
    return check_run(argc, argv, cases);
}
