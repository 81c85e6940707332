/*
 * test_record.c - DKIM key records (RFC 6376 §3.6.1, RFC 8463 §4), their
 * zone-file form, and base64 (dkim/b64.h).
 */
#include <stdlib.h>
#include <string.h>

#include "dkim/b64.h"
#include "dkim/record.h"
#include "tests/lib/check.h"

#define ED_P "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#define RSA_P                                                                                      \
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/"   \
    "J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLz"   \
    "BfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"

static void test_b64(void)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"}; /* RFC 4648 §10 */
    for (int i = 0; i < 7; i++) {
        dh_buf o = {0}, d = {0};
        CHECK_OK(dkim_b64_encode((const uint8_t *)plain[i], strlen(plain[i]), &o));
        CHECK_MEM(o.data, o.len, enc[i], strlen(enc[i]));
        CHECK_OK(dkim_b64_decode(enc[i], strlen(enc[i]), &d));
        CHECK_MEM(d.data, d.len, plain[i], strlen(plain[i]));
        dh_buf_free(&o);
        dh_buf_free(&d);
    }
    dh_buf d = {0};
    static const char folded[] = " Zm9v\r\n\tYm\r\n E = ";
    CHECK_OK(dkim_b64_decode(folded, strlen(folded), &d));
    CHECK_MEM(d.data, d.len, "fooba", 5); /* "Zm9vYmE=" with FWS around */
    static const char *const bad[] = {
        "Zm9v!", "Zg=", "Zg", "Z===", "Zm9vY", "Zg==Zg==", "Zm8==", "=Zm8"};
    for (int i = 0; i < 8; i++) {
        dh_buf_reset(&d);
        CHECK_OK(dh_buf_puts(&d, "keep"));
        if (dkim_b64_decode(bad[i], strlen(bad[i]), &d) != DH_EINVAL)
            check_fail(__FILE__, __LINE__, "\"%s\" decoded", bad[i]);
        CHECK_MEM(d.data, d.len, "keep", 4); /* nothing appended on error */
    }
    dh_buf_free(&d);
}

static void test_value(void)
{
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    dh_buf v = {0};
    CHECK_OK(dkim_record_value(DKIM_ALG_ED25519_SHA256, key, 32, &v));
    CHECK_STR((char *)v.data, "v=DKIM1; k=ed25519; p=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    dkim_record r = {0};
    CHECK_OK(dkim_record_parse((char *)v.data, v.len, &r, NULL));
    CHECK_EQ_INT(r.alg, DKIM_ALG_ED25519_SHA256);
    CHECK_MEM(r.pub.data, r.pub.len, key, 32);
    dkim_record_clear(&r);
    dh_buf_reset(&v);
    CHECK_OK(dkim_record_value(DKIM_ALG_RSA_SHA256, NULL, 0, &v));
    CHECK_STR((char *)v.data, "v=DKIM1; k=rsa; p=");
    CHECK_OK(dkim_record_parse((char *)v.data, v.len, &r, NULL));
    CHECK_EQ_INT(r.revoked, 1);
    CHECK_EQ_INT(r.pub.len, 0);
    dkim_record_clear(&r);
    dh_buf_free(&v);
}

static void test_rfc8463_records(void)
{
    static const char *const files[] = {
        TESTDATA "/rfc8463/dns/brisbane._domainkey.football.example.com.txt",
        TESTDATA "/rfc8463/dns/test._domainkey.football.example.com.txt"};
    for (int i = 0; i < 2; i++) {
        size_t n = 0;
        char *p = (char *)check_slurp(files[i], &n);
        CHECK(p != NULL);
        if (p == NULL)
            continue;
        dkim_record r = {0};
        dh_err e = {0};
        CHECK_OK(dkim_record_parse(p, n, &r, &e));
        CHECK_EQ_INT(r.alg, i == 0 ? DKIM_ALG_ED25519_SHA256 : DKIM_ALG_RSA_SHA256);
        CHECK_EQ_INT(r.pub.len, i == 0 ? 32 : 162);
        CHECK_EQ_INT(r.revoked, 0);
        /* Rebuilding the value from the key gives the record back. */
        dh_buf v = {0};
        CHECK_OK(dkim_record_value(r.alg, r.pub.data, r.pub.len, &v));
        while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
            n--;
        CHECK_MEM(v.data, v.len, p, n);
        dh_buf_free(&v);
        dkim_record_clear(&r);
        free(p);
    }
}

static void test_flags(void)
{
    static const char rec[] = "v=DKIM1; k=rsa; t=y:s:future; h=sha1:sha256; s=email; "
                              "n=notes; unknown=ignored; p=" RSA_P;
    dkim_record r = {0};
    dh_err e = {0};
    CHECK_OK(dkim_record_parse(rec, strlen(rec), &r, &e));
    CHECK_EQ_INT(r.testing, 1);
    CHECK_EQ_INT(r.strict, 1);
    dkim_record_clear(&r);
    /* v= is optional, k= defaults to rsa, s=* and h= with FWS are fine. */
    static const char rec2[] = "s=*; h= sha256 ; p=" RSA_P;
    CHECK_OK(dkim_record_parse(rec2, strlen(rec2), &r, &e));
    CHECK_EQ_INT(r.alg, DKIM_ALG_RSA_SHA256);
    CHECK_EQ_INT(r.testing, 0);
    dkim_record_clear(&r);
}

static void parse_bad(const char *rec, const char *needle)
{
    dkim_record r = {.testing = 42};
    dh_err e = {0};
    CHECK_EQ_INT(dkim_record_parse(rec, strlen(rec), &r, &e), DH_EINVAL);
    CHECK_EQ_INT(r.testing, 42); /* untouched on failure */
    if (strstr(e.msg, needle) == NULL)
        check_fail(__FILE__, __LINE__, "\"%.40s\": error \"%s\" lacks \"%s\"", rec, e.msg, needle);
}

static void test_errors(void)
{
    parse_bad("v=DKIM2; p=" ED_P, "v=DKIM2");
    parse_bad("k=ed25519; v=DKIM1; p=" ED_P, "v= is not the first tag");
    parse_bad("v=DKIM1; k=dsa; p=" ED_P, "k=dsa");
    parse_bad("v=DKIM1; k=RSA; p=" RSA_P, "k=RSA");
    parse_bad("v=DKIM1; h=sha1; p=" RSA_P, "h=sha1");
    parse_bad("v=DKIM1; s=other; p=" RSA_P, "s=other");
    parse_bad("v=DKIM1; k=rsa", "no p=");
    parse_bad("v=DKIM1; k=ed25519; p=11qY!", "p= is not valid base64");
    parse_bad("v=DKIM1; k=ed25519; p=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==", "31 bytes");
    parse_bad("v=DKIM1; k=rsa; p=" ED_P, "not an RSA SubjectPublicKeyInfo");
    parse_bad("v=DKIM1; v=DKIM1; p=", "duplicate tag \"v\"");
    parse_bad("v=DKIM1; p=; q", "key record");
}

static void test_revoked(void)
{
    dkim_record r = {0};
    static const char rec[] = "v=DKIM1; k=ed25519; p= ";
    CHECK_OK(dkim_record_parse(rec, strlen(rec), &r, NULL));
    CHECK_EQ_INT(r.revoked, 1);
    CHECK_EQ_INT(r.alg, DKIM_ALG_ED25519_SHA256);
    dkim_record_clear(&r);
    dkim_record_clear(NULL);
}

static void test_string_split(void)
{
    CHECK_EQ_INT(dkim_record_nstrings(0), 1);
    CHECK_EQ_INT(dkim_record_nstrings(1), 1);
    CHECK_EQ_INT(dkim_record_nstrings(255), 1);
    CHECK_EQ_INT(dkim_record_nstrings(256), 2);
    CHECK_EQ_INT(dkim_record_nstrings(510), 2);
    CHECK_EQ_INT(dkim_record_nstrings(511), 3);
    size_t off = 1, len = 1;
    dkim_record_string_at(0, 0, &off, &len);
    CHECK(off == 0 && len == 0);
    dkim_record_string_at(600, 0, &off, &len);
    CHECK(off == 0 && len == 255);
    dkim_record_string_at(600, 1, &off, &len);
    CHECK(off == 255 && len == 255);
    dkim_record_string_at(600, 2, &off, &len);
    CHECK(off == 510 && len == 90);
}

static void test_zone_line(void)
{
    dh_buf z = {0};
    CHECK_OK(dkim_record_zone_line("sel._domainkey.example.com.", "v=DKIM1; k=rsa; p=", &z));
    CHECK_STR((char *)z.data, "sel._domainkey.example.com. IN TXT ( \"v=DKIM1; k=rsa; p=\" )\n");
    dh_buf_reset(&z);
    /* A 2048-bit RSA record is about 410 bytes: two strings, none over 255. */
    char val[600];
    memset(val, 'A', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    memcpy(val, "v=DKIM1; k=rsa; p=", 18);
    CHECK_OK(dkim_record_zone_line("s._domainkey.x.", val, &z));
    const char *p = strchr((char *)z.data, '"');
    size_t total = 0, strings = 0;
    while (p != NULL) {
        const char *q = strchr(p + 1, '"');
        CHECK(q != NULL);
        if (q == NULL)
            break;
        CHECK((size_t)(q - p - 1) <= 255);
        CHECK(memcmp(p + 1, val + total, (size_t)(q - p - 1)) == 0);
        total += (size_t)(q - p - 1);
        strings++;
        p = strchr(q + 1, '"');
    }
    CHECK_EQ_INT(total, strlen(val));
    CHECK_EQ_INT(strings, 3);
    dh_buf_reset(&z);
    CHECK_OK(dkim_record_zone_line("o.", "a\"b\\c", &z));
    CHECK_STR((char *)z.data, "o. IN TXT ( \"a\\\"b\\\\c\" )\n");
    dh_buf_free(&z);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"b64", test_b64},
        {"value", test_value},
        {"rfc8463_records", test_rfc8463_records},
        {"flags", test_flags},
        {"errors", test_errors},
        {"revoked", test_revoked},
        {"string_split", test_string_split},
        {"zone_line", test_zone_line},
        {NULL, NULL},
    };
    return check_run(argc, argv, cases);
}
