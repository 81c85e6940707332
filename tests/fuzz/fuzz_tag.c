/*
 * fuzz_tag.c - fuzz target for the tag-list parser and what is built on it:
 * key records (dkim/record.h), DKIM-Signature fields (dkim/sig.h), base64
 * and the c=/a= value parsers.
 *
 * Invariants (abort on violation): every parsed tag's span lies inside the
 * input and holds its value; records round-trip through dkim_record_value.
 */
#include <stdlib.h>
#include <string.h>

#include "dkim/b64.h"
#include "dkim/record.h"
#include "dkim/sig.h"
#include "dkim/tag.h"
#include "tests/fuzz/fuzz.h"

const char *const fuzz_seeds[] = {
    "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    "v=DKIM1; k=rsa; t=y:s; h=sha1:sha256; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
    "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1"
    "Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB",
    "v=DKIM1; p=",
    " v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n d=football.example.com; "
    "i=@football.example.com;\r\n q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n subject "
    ": date : message-id : from : subject : date;\r\n "
    "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n "
    "b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n "
    "Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==",
    "v=1; c=simple; h=from:x-a:x-a; b= zz \r\n\tzz ; bh=;",
    "a=1;;b",
    "a = b ; a = c",
    "x=\x01",
    "",
    NULL,
};

static int is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void tags(const char *s, size_t n)
{
    dkim_tags *t = NULL;
    if (dkim_tags_parse(s, n, &t, NULL) != DH_OK)
        return;
    for (size_t i = 0; i < dkim_tags_count(t); i++) {
        const char *name, *value;
        size_t off, len, vlen;
        dkim_tags_at(t, i, &name, &value);
        REQUIRE(dkim_tags_get(t, name, &vlen) == value && strlen(value) == vlen);
        REQUIRE(dkim_tags_span(t, name, &off, &len) == DH_OK);
        REQUIRE(off <= n && len <= n - off);
        /* The value is the span without its surrounding FWS. */
        while (len > 0 && is_fws(s[off])) {
            off++;
            len--;
        }
        while (len > 0 && is_fws(s[off + len - 1]))
            len--;
        REQUIRE(len == vlen && memcmp(s + off, value, len) == 0);
    }
    dkim_tags_free(t);
}

static void record(const char *s, size_t n)
{
    dkim_record r = {0};
    if (dkim_record_parse(s, n, &r, NULL) != DH_OK)
        return;
    dh_buf v = {0};
    dkim_record r2 = {0};
    REQUIRE(dkim_record_value(r.alg, r.pub.data, r.pub.len, &v) == DH_OK);
    REQUIRE(dkim_record_parse((const char *)v.data, v.len, &r2, NULL) == DH_OK);
    REQUIRE(r2.alg == r.alg && r2.revoked == r.revoked && r2.pub.len == r.pub.len);
    REQUIRE(r.pub.len == 0 || memcmp(r2.pub.data, r.pub.data, r.pub.len) == 0);
    dh_buf z = {0};
    REQUIRE(dkim_record_zone_line("s._domainkey.example.", (const char *)v.data, &z) == DH_OK);
    dh_buf_free(&z);
    dh_buf_free(&v);
    dkim_record_clear(&r);
    dkim_record_clear(&r2);
}

static void signature(const uint8_t *p, size_t n)
{
    static const char *const fields[] = {"From: a@b.c", "X-A: 1", "X-A: 2", "Subject : s", NULL};
    dkim_hdrs *h = dkim_hdrs_new();
    REQUIRE(h != NULL);
    for (size_t i = 0; fields[i] != NULL; i++)
        REQUIRE(dkim_hdrs_add_raw(h, (const uint8_t *)fields[i], strlen(fields[i]), NULL) == DH_OK);
    dh_buf f = {0}, out = {0};
    REQUIRE(dh_buf_puts(&f, "DKIM-Signature:") == DH_OK && dh_buf_append(&f, p, n) == DH_OK);
    uint8_t d[32];
    int rc1 = dkim_sig_hash_input(h, f.data, f.len, &out, NULL);
    int rc2 = dkim_sig_digest(h, f.data, f.len, d, NULL);
    REQUIRE(rc1 == rc2);
    REQUIRE(rc1 != DH_OK || out.len > 0);
    dkim_hdrs_free(h);
    dh_buf_free(&f);
    dh_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1); /* NUL-terminated copy for the string parsers */
    REQUIRE(s != NULL);
    memcpy(s, data, size);
    s[size] = '\0';
    tags(s, size);
    record(s, size);
    signature(data, size);
    /* Whatever base64 decodes re-encodes to something that decodes the same. */
    dh_buf b = {0}, b2 = {0}, b3 = {0};
    if (dkim_b64_decode(s, size, &b) == DH_OK) {
        REQUIRE(dkim_b64_encode(b.data, b.len, &b2) == DH_OK);
        REQUIRE(dkim_b64_decode((const char *)b2.data, b2.len, &b3) == DH_OK);
        REQUIRE(b3.len == b.len && (b.len == 0 || memcmp(b.data, b3.data, b.len) == 0));
    }
    dh_buf_free(&b);
    dh_buf_free(&b2);
    dh_buf_free(&b3);
    enum dkim_canon hc = DKIM_CANON_SIMPLE, bc = DKIM_CANON_SIMPLE;
    enum dkim_alg a = DKIM_ALG_RSA_SHA256;
    if (dkim_canon_parse(s, &hc, &bc, NULL) == DH_OK)
        REQUIRE(strncmp(s, dkim_canon_name(hc), strlen(dkim_canon_name(hc))) == 0);
    if (dkim_alg_parse(s, &a, NULL) == DH_OK)
        REQUIRE(strncmp(s, dkim_alg_keytype(a), strlen(dkim_alg_keytype(a))) == 0);
    free(s);
    return 0;
}
