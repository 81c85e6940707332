/*
 * test_sig.c - DKIM-Signature fields (dkim/sig.h): header selection, building
 * and folding, the RFC 6376 §3.7 hash input, and known answers from RFC 8463
 * (in tests/data) and OpenDKIM (in ../shared/testdata, run with --opendkim).
 *
 * The test signs in software with OpenSSL; the product signs on the token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "dkim/b64.h"
#include "dkim/msg.h"
#include "dkim/sig.h"
#include "dkim/tag.h"
#include "tests/lib/check.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1
#define RFC_BH "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
#define RFC8463 TESTDATA "/rfc8463/"
#define ODKIM SHARED_TESTDATA "/opendkim-vectors/"

/* ---- helpers ---- */

struct message {
    dkim_msg *m;
    uint8_t bh[32];
};

/* Reads a message file; bh gets its body hash in canonicalization c. */
static int load_message(const char *path, enum dkim_canon c, struct message *out)
{
    size_t n = 0;
    uint8_t *p = check_slurp(path, &n);
    dh_err e = {0};
    memset(out, 0, sizeof(*out));
    if (p == NULL)
        return -1;
    out->m = dkim_msg_new(0);
    dkim_body *b = dkim_body_new(c, -1);
    int rc = dkim_msg_attach_body(out->m, b);
    if (rc == DH_OK)
        rc = dkim_msg_feed(out->m, p, n, &e);
    if (rc == DH_OK)
        rc = dkim_msg_end(out->m, &e);
    if (rc == DH_OK)
        rc = dkim_body_final(b, out->bh, NULL);
    if (rc != DH_OK)
        check_fail(__FILE__, __LINE__, "%s: %d %s", path, rc, e.msg);
    dkim_body_free(b);
    free(p);
    return rc;
}

static void message_free(struct message *m)
{
    dkim_msg_free(m->m);
}

static dkim_tags *field_tags(const uint8_t *f, size_t len)
{
    dkim_tags *t = NULL;
    const uint8_t *colon = memchr(f, ':', len);
    size_t off = (size_t)(colon - f) + 1;
    CHECK_OK(dkim_tags_parse((const char *)f + off, len - off, &t, NULL));
    return t;
}

/* The tag's value with all FWS removed (b= and bh= are folded). */
static void tag_nofws(const uint8_t *f, size_t len, const char *tag, dh_buf *out)
{
    dkim_tags *t = field_tags(f, len);
    const char *v = t != NULL ? dkim_tags_get(t, tag, NULL) : NULL;
    for (; v != NULL && *v != '\0'; v++)
        if (!strchr(" \t\r\n", *v))
            CHECK_OK(dh_buf_putc(out, (uint8_t)*v));
    CHECK(out->len > 0);
    dkim_tags_free(t);
}

/* The field with the b= value (and its FWS) removed: "tags as printed, with
 * b= emptied". */
static void empty_b(const uint8_t *f, size_t len, dh_buf *out)
{
    dkim_tags *t = field_tags(f, len);
    const uint8_t *colon = memchr(f, ':', len);
    size_t voff = (size_t)(colon - f) + 1, off = 0, blen = 0;
    CHECK_OK(dkim_tags_span(t, "b", &off, &blen));
    CHECK_OK(dh_buf_append(out, f, voff + off));
    CHECK_OK(dh_buf_append(out, f + voff + off + blen, len - voff - off - blen));
    dkim_tags_free(t);
}

static EVP_PKEY *load_key(const char *path, int private)
{
    size_t n = 0;
    uint8_t *p = check_slurp(path, &n);
    if (p == NULL)
        return NULL;
    BIO *bio = BIO_new_mem_buf(p, (int)n);
    EVP_PKEY *k = private ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                          : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    free(p);
    CHECK(k != NULL);
    return k;
}

/* Test-only software signing of the 32-byte digest: Ed25519 signs the digest
 * itself (RFC 8463 §3); RSA signs it in a SHA-256 DigestInfo (RFC 8017 §9.2). */
static void sign_digest(EVP_PKEY *k, const uint8_t digest[32], dh_buf *sig)
{
    uint8_t out[512];
    size_t n = sizeof(out);
    int ok = 0;
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        ok = EVP_DigestSignInit(md, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestSign(md, out, &n, digest, 32) == 1;
        EVP_MD_CTX_free(md);
    } else {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
        ok = EVP_PKEY_sign_init(c) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1 &&
             EVP_PKEY_sign(c, out, &n, digest, 32) == 1;
        EVP_PKEY_CTX_free(c);
    }
    CHECK(ok);
    if (ok)
        CHECK_OK(dh_buf_append(sig, out, n));
}

static int verify_digest(EVP_PKEY *k, const uint8_t digest[32], const uint8_t *sig, size_t n)
{
    int ok = 0;
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        ok = EVP_DigestVerifyInit(md, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestVerify(md, sig, n, digest, 32) == 1;
        EVP_MD_CTX_free(md);
    } else {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
        ok = EVP_PKEY_verify_init(c) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1 &&
             EVP_PKEY_verify(c, sig, n, digest, 32) == 1;
        EVP_PKEY_CTX_free(c);
    }
    return ok;
}

static void b64(const uint8_t *p, size_t n, dh_buf *out)
{
    CHECK_OK(dkim_b64_encode(p, n, out));
}

static void strip_crlf(dh_buf *b)
{
    while (b->len > 0 && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r'))
        b->len--;
}

/* Every line at most 78 bytes, CRLF only, continuation lines start with TAB. */
static void check_folding(const uint8_t *p, size_t n)
{
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r') {
            CHECK(i + 1 < n && p[i + 1] == '\n' && (i + 2 == n || p[i + 2] == '\t'));
            i++;
            col = 0;
            continue;
        }
        CHECK(p[i] != '\n');
        if (++col > 78) {
            check_fail(__FILE__, __LINE__, "line longer than 78 at byte %zu", i);
            return;
        }
    }
}

static dkim_hdrs *hdrs_of(const char *const *fields)
{
    dkim_hdrs *h = dkim_hdrs_new();
    for (size_t i = 0; fields[i] != NULL; i++)
        CHECK_OK(dkim_hdrs_add_raw(h, (const uint8_t *)fields[i], strlen(fields[i]), NULL));
    return h;
}

/* ---- selection ---- */

static void test_select_oversign(void)
{
    static const char *const f[] = {"Received: x", "From: a@b.c", "To: d@e.f",       "To: g@h.i",
                                    "Subject: s",  "X-Other: y",  "reply-to: r@b.c", NULL};
    dkim_hdrs *h = hdrs_of(f);
    dh_buf out = {0};
    dh_err e = {0};
    CHECK_OK(dkim_sig_select_headers(h, "from:to:subject", "from:subject:reply-to", &out, &e));
    /* reply-to is over-signed without being in the sign list: it is still
     * signed, so it appears occurrences + 1 = 2 times. */
    CHECK_STR((char *)out.data, "from:to:to:subject:reply-to:from:subject:reply-to");
    dh_buf_reset(&out);
    CHECK_OK(dkim_sig_select_headers(h, DKIM_DEFAULT_SIGN_HEADERS, DKIM_DEFAULT_OVERSIGN_HEADERS,
                                     &out, &e));
    CHECK_STR((char *)out.data, "from:to:to:subject:reply-to:from:to:cc:subject:date:reply-to:"
                                "message-id:mime-version:content-type");
    for (size_t i = 0; f[i] != NULL; i++) {
        /* occurrences + 1 for every over-signed name that occurs */
        if (strncmp(f[i], "To", 2) == 0)
            CHECK(strstr((char *)out.data, "to:to:") != NULL);
    }
    dkim_hdrs_free(h);
    dh_buf_free(&out);
}

static void test_select_rules(void)
{
    static const char *const f[] = {"Subject : spaced", "Subject: real", "X-A: 1", NULL};
    dkim_hdrs *h = hdrs_of(f);
    dh_buf out = {0};
    dh_err e = {0};
    /* from is always listed; "Name :" fields are skipped. */
    CHECK_OK(dkim_sig_select_headers(h, "subject:x-a", "", &out, &e));
    CHECK_STR((char *)out.data, "subject:x-a:from");
    dh_buf_reset(&out);
    CHECK_OK(dh_buf_puts(&out, "keep"));
    CHECK_EQ_INT(dkim_sig_select_headers(h, "subject:bad name", "", &out, &e), DH_EINVAL);
    CHECK(strstr(e.msg, "bad name") != NULL);
    CHECK_EQ_INT(dkim_sig_select_headers(h, "subject", "from::to", &out, &e), DH_EINVAL);
    CHECK_STR((char *)out.data, "keep");
    dkim_hdrs_free(h);
    dh_buf_free(&out);
}

/* ---- building ---- */

static const uint8_t test_bh[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static dkim_sig_params base_params(void)
{
    dkim_sig_params p = {.alg = DKIM_ALG_ED25519_SHA256,
                         .hdr_canon = DKIM_CANON_RELAXED,
                         .body_canon = DKIM_CANON_SIMPLE,
                         .domain = "example.com",
                         .selector = "sel2024",
                         .identity = NULL,
                         .timestamp = 1700000000,
                         .expire = -1,
                         .body_length = -1,
                         .header_list = "from:to:subject"};
    return p;
}

static void test_build_short(void)
{
    dkim_sig_params p = base_params();
    dh_buf f = {0};
    CHECK_OK(dkim_sig_build(&p, test_bh, &f, NULL));
    CHECK_STR((char *)f.data,
              "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/simple; d=example.com;\r\n"
              "\ts=sel2024; t=1700000000; h=from:to:subject;\r\n"
              "\tbh=AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=; b=");
    check_folding(f.data, f.len);
    dh_buf_free(&f);
}

static void test_build_long_fold(void)
{
    dkim_sig_params p = base_params();
    p.alg = DKIM_ALG_RSA_SHA256;
    p.domain = "a-rather-long-subdomain-name.mail.example-organisation.co.uk";
    p.selector = "selector-with-a-long-name-2024-11";
    p.identity = "bounces+x@a-rather-long-subdomain-name.mail.example-organisation.co.uk";
    p.expire = 1700086400;
    p.body_length = 123456;
    p.header_list = DKIM_DEFAULT_SIGN_HEADERS ":" DKIM_DEFAULT_OVERSIGN_HEADERS;
    dh_buf f = {0};
    dh_err e = {0};
    CHECK_OK(dkim_sig_build(&p, test_bh, &f, &e));
    check_folding(f.data, f.len);
    CHECK(f.len > 2 && memcmp(f.data + f.len - 2, "b=", 2) == 0);
    /* Inside h= a fold only follows a colon. */
    const char *h = strstr((char *)f.data, "h=");
    const char *end = strchr(h, ';');
    for (const char *q = h; q < end; q++)
        if (*q == '\r')
            CHECK(q[-1] == ':');
    /* The tags read back as given. */
    dkim_tags *t = field_tags(f.data, f.len);
    CHECK_STR(dkim_tags_get(t, "d", NULL), p.domain);
    CHECK_STR(dkim_tags_get(t, "i", NULL), p.identity);
    CHECK_STR(dkim_tags_get(t, "x", NULL), "1700086400");
    CHECK_STR(dkim_tags_get(t, "l", NULL), "123456");
    CHECK_STR(dkim_tags_get(t, "a", NULL), "rsa-sha256");
    dkim_tags_free(t);
    dh_buf hv = {0}, bh = {0};
    tag_nofws(f.data, f.len, "h", &hv);
    CHECK_STR((char *)hv.data, p.header_list);
    tag_nofws(f.data, f.len, "bh", &bh);
    CHECK_STR((char *)bh.data, "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=");
    dh_buf_free(&hv);
    dh_buf_free(&bh);
    dh_buf_free(&f);
}

static void build_bad(dkim_sig_params p, const char *needle)
{
    dh_buf f = {0};
    dh_err e = {0};
    CHECK_EQ_INT(dkim_sig_build(&p, test_bh, &f, &e), DH_EINVAL);
    CHECK_EQ_INT(f.len, 0);
    if (strstr(e.msg, needle) == NULL)
        check_fail(__FILE__, __LINE__, "error \"%s\" lacks \"%s\"", e.msg, needle);
    dh_buf_free(&f);
}

static void test_build_errors(void)
{
    dkim_sig_params p = base_params();
    p.domain = NULL;
    build_bad(p, "d=");
    p = base_params();
    p.domain = "exa mple.com";
    build_bad(p, "d=");
    p = base_params();
    p.domain = "example.com.";
    build_bad(p, "d=");
    p = base_params();
    p.selector = "sel;x=1";
    build_bad(p, "s=");
    p = base_params();
    p.selector = NULL;
    build_bad(p, "s=");
    p = base_params();
    p.header_list = NULL;
    build_bad(p, "h=");
    p = base_params();
    p.header_list = "to:subject";
    build_bad(p, "from");
    p = base_params();
    p.header_list = "from::to";
    build_bad(p, "h=");
    p = base_params();
    p.expire = p.timestamp;
    build_bad(p, "x=");
    p = base_params();
    p.identity = "user@evil.com";
    build_bad(p, "i=");
    p = base_params();
    p.identity = "user@notexample.com";
    build_bad(p, "i=");
    p = base_params();
    p.identity = "@sub.example.com";
    dh_buf f = {0};
    CHECK_OK(dkim_sig_build(&p, test_bh, &f, NULL));
    dh_buf_free(&f);
}

static void test_finish(void)
{
    dkim_sig_params p = base_params();
    dh_buf f = {0}, out = {0}, got = {0}, want = {0};
    uint8_t sig[512];
    for (size_t i = 0; i < sizeof(sig); i++)
        sig[i] = (uint8_t)(i * 7);
    for (size_t n = 1; n <= sizeof(sig); n += 63) {
        dh_buf_reset(&f);
        dh_buf_reset(&out);
        CHECK_OK(dkim_sig_build(&p, test_bh, &f, NULL));
        CHECK_OK(dkim_sig_finish(f.data, f.len, sig, n, &out, NULL));
        check_folding(out.data, out.len);
        CHECK(out.len > 2 && memcmp(out.data + out.len - 2, "\r\n", 2) == 0);
        CHECK(memcmp(out.data, f.data, f.len) == 0);
        strip_crlf(&out);
        dh_buf_reset(&got);
        dh_buf_reset(&want);
        tag_nofws(out.data, out.len, "b", &got);
        b64(sig, n, &want);
        CHECK_MEM(got.data, got.len, want.data, want.len);
    }
    dh_err e = {0};
    CHECK_EQ_INT(dkim_sig_finish(S("DKIM-Signature: v=1; bh="), sig, 4, &out, &e), DH_EINVAL);
    CHECK_EQ_INT(dkim_sig_finish(S("DKIM-Signature: v=1; b=x"), sig, 4, &out, &e), DH_EINVAL);
    dh_buf_free(&f);
    dh_buf_free(&out);
    dh_buf_free(&got);
    dh_buf_free(&want);
}

/* ---- hash input ---- */

static void check_input(const dkim_hdrs *h, const char *field, const char *want)
{
    dh_buf out = {0};
    dh_err e = {0};
    int rc = dkim_sig_hash_input(h, (const uint8_t *)field, strlen(field), &out, &e);
    if (rc != DH_OK)
        check_fail(__FILE__, __LINE__, "hash_input: %d %s", rc, e.msg);
    CHECK_MEM(out.data, out.len, want, strlen(want));
    dh_buf_free(&out);
}

static void test_hash_input_bottom_up(void)
{
    static const char *const f[] = {"X-A: 1", "From: a@b.c", "X-A:  2 ", NULL};
    dkim_hdrs *h = hdrs_of(f);
    /* Repeated names take fields from the bottom; the third x-a finds none
     * and adds nothing (RFC 6376 §5.4.2). */
    check_input(h,
                "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=b.c; s=s;\r\n"
                "\th=x-a:from:X-A:x-a; bh=AAAA; b=zzzz\r\n\t zzzz",
                "x-a:2\r\nfrom:a@b.c\r\nx-a:1\r\n"
                "dkim-signature:v=1; a=rsa-sha256; c=relaxed/simple; d=b.c; s=s; "
                "h=x-a:from:X-A:x-a; bh=AAAA; b=");
    /* simple: the field as is, b= in the middle loses its value and FWS. */
    check_input(h, "DKIM-Signature: v=1; b= zz \r\n\tzz ; h=from : x-a; c=simple",
                "From: a@b.c\r\nX-A:  2 \r\nDKIM-Signature: v=1; b=; h=from : x-a; c=simple");
    /* c= absent means simple/simple. */
    check_input(
        h, "DKIM-Signature: v=1; h=from; b=", "From: a@b.c\r\nDKIM-Signature: v=1; h=from; b=");
    dkim_hdrs_free(h);
}

static void input_bad(const dkim_hdrs *h, const char *field, int code, const char *needle)
{
    dh_buf out = {0};
    dh_err e = {0};
    CHECK_OK(dh_buf_puts(&out, "keep"));
    CHECK_EQ_INT(dkim_sig_hash_input(h, (const uint8_t *)field, strlen(field), &out, &e), code);
    CHECK_STR((char *)out.data, "keep");
    if (strstr(e.msg, needle) == NULL)
        check_fail(__FILE__, __LINE__, "error \"%s\" lacks \"%s\"", e.msg, needle);
    dh_buf_free(&out);
}

static void test_hash_input_errors(void)
{
    static const char *const f[] = {"From: a@b.c", "Subject : spaced", NULL};
    dkim_hdrs *h = hdrs_of(f);
    input_bad(h, "X-Signature: v=1; h=from; b=", DH_EINVAL, "DKIM-Signature");
    input_bad(h, "DKIM-Signature: v=2; h=from; b=", DH_EINVAL, "v=");
    input_bad(h, "DKIM-Signature: h=from; b=", DH_EINVAL, "v=");
    input_bad(h, "DKIM-Signature: v=1; c=loose; h=from; b=", DH_EINVAL, "loose");
    input_bad(h, "DKIM-Signature: v=1; b=", DH_EINVAL, "h=");
    input_bad(h, "DKIM-Signature: v=1; h=to:subject; b=", DH_EINVAL, "from");
    input_bad(h, "DKIM-Signature: v=1; h=from", DH_EINVAL, "b=");
    input_bad(h, "DKIM-Signature: v=1; h=from; h=to; b=", DH_EINVAL, "duplicate");
    input_bad(h, "DKIM-Signature: v=1; h=from:subject; b=", DH_EUNSIGNABLE, "Subject :");
    dkim_hdrs_free(h);
}

/* ---- known answers: RFC 8463 Appendix A ---- */

static const char rfc_input_ed25519[] =
    "from:Joe SixPack <joe@football.example.com>\r\n"
    "to:Suzie Q <suzie@shopping.example.net>\r\n"
    "subject:Is dinner ready?\r\n"
    "date:Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "message-id:<20030712040037.46341.5F8J@football.example.com>\r\n"
    "dkim-signature:v=1; a=ed25519-sha256; c=relaxed/relaxed; d=football.example.com; "
    "i=@football.example.com; q=dns/txt; s=brisbane; t=1528637909; h=from : to : subject : "
    "date : message-id : from : subject : date; bh=" RFC_BH "; b=";

static void kat_rfc8463(const char *sigfile, const char *keyfile)
{
    struct message msg, msg2;
    if (load_message(RFC8463 "message-unsigned.eml", DKIM_CANON_RELAXED, &msg) != DH_OK)
        return;
    CHECK_OK(
        load_message(RFC8463 "message-unsigned-no-trailing-blank.eml", DKIM_CANON_RELAXED, &msg2));
    dh_buf bh = {0}, field = {0}, emptied = {0}, want_b = {0}, sig = {0}, got_b = {0};
    b64(msg.bh, 32, &bh);
    CHECK_STR((char *)bh.data, RFC_BH);
    CHECK_MEM(msg2.bh, 32, msg.bh, 32);
    size_t n = 0;
    uint8_t *p = check_slurp(sigfile, &n);
    CHECK(p != NULL);
    CHECK_OK(dh_buf_append(&field, p, n));
    free(p);
    strip_crlf(&field);
    empty_b(field.data, field.len, &emptied);
    tag_nofws(field.data, field.len, "b", &want_b);
    /* Straight from the printed field, and from it with b= emptied. */
    uint8_t d1[32], d2[32];
    const dkim_hdrs *h = dkim_msg_hdrs(msg.m);
    dh_err e = {0};
    CHECK_OK(dkim_sig_digest(h, field.data, field.len, d1, &e));
    CHECK_OK(dkim_sig_digest(h, emptied.data, emptied.len, d2, &e));
    CHECK_MEM(d1, 32, d2, 32);
    EVP_PKEY *k = load_key(keyfile, 1);
    if (k != NULL)
        sign_digest(k, d1, &sig);
    b64(sig.data, sig.len, &got_b);
    CHECK_STR((char *)got_b.data, (char *)want_b.data);
    EVP_PKEY_free(k);
    message_free(&msg);
    message_free(&msg2);
    dh_buf_free(&bh);
    dh_buf_free(&field);
    dh_buf_free(&emptied);
    dh_buf_free(&want_b);
    dh_buf_free(&sig);
    dh_buf_free(&got_b);
}

static void test_rfc8463_hash_input(void)
{
    struct message msg;
    if (load_message(RFC8463 "message-unsigned.eml", DKIM_CANON_RELAXED, &msg) != DH_OK)
        return;
    size_t n = 0;
    uint8_t *p = check_slurp(RFC8463 "expected-dkim-signature-ed25519.txt", &n);
    CHECK(p != NULL);
    while (p != NULL && n > 0 && (p[n - 1] == '\r' || p[n - 1] == '\n'))
        n--;
    dh_buf in = {0};
    if (p != NULL)
        CHECK_OK(dkim_sig_hash_input(dkim_msg_hdrs(msg.m), p, n, &in, NULL));
    CHECK_MEM(in.data, in.len, rfc_input_ed25519, sizeof(rfc_input_ed25519) - 1);
    dh_buf_free(&in);
    free(p);
    message_free(&msg);
}

static void test_rfc8463_ed25519(void)
{
    kat_rfc8463(RFC8463 "expected-dkim-signature-ed25519.txt", RFC8463 "ed25519.pem");
}

static void test_rfc8463_rsa(void)
{
    kat_rfc8463(RFC8463 "expected-dkim-signature-rsa.txt", RFC8463 "rsa.pem");
}

/* Both signatures of the signed example verify from the message as read. */
static void test_rfc8463_verify_signed(void)
{
    struct message msg;
    if (load_message(RFC8463 "message.eml", DKIM_CANON_RELAXED, &msg) != DH_OK)
        return;
    const dkim_hdrs *h = dkim_msg_hdrs(msg.m);
    static const char *const pubs[] = {RFC8463 "ed25519.pub.pem", RFC8463 "rsa.pub.pem"};
    for (size_t i = 0; i < 2; i++) {
        size_t len = 0;
        const uint8_t *f = dkim_hdrs_field(h, i, &len, NULL);
        uint8_t d[32];
        dh_buf b = {0}, sig = {0};
        CHECK_OK(dkim_sig_digest(h, f, len, d, NULL));
        tag_nofws(f, len, "b", &b);
        CHECK_OK(dkim_b64_decode((char *)b.data, b.len, &sig));
        EVP_PKEY *k = load_key(pubs[i], 0);
        CHECK(k != NULL && verify_digest(k, d, sig.data, sig.len));
        EVP_PKEY_free(k);
        dh_buf_free(&b);
        dh_buf_free(&sig);
    }
    message_free(&msg);
}

/* The whole signing sequence of sig.h on the RFC message, then the signed
 * message is read back and verified. */
static void test_sign_roundtrip(void)
{
    struct message msg;
    if (load_message(RFC8463 "message-unsigned.eml", DKIM_CANON_RELAXED, &msg) != DH_OK)
        return;
    const dkim_hdrs *h = dkim_msg_hdrs(msg.m);
    dh_buf hl = {0}, field = {0}, sig = {0}, done = {0}, signed_msg = {0};
    CHECK_OK(dkim_sig_select_headers(h, DKIM_DEFAULT_SIGN_HEADERS, DKIM_DEFAULT_OVERSIGN_HEADERS,
                                     &hl, NULL));
    dkim_sig_params p = base_params();
    p.domain = "football.example.com";
    p.selector = "brisbane";
    p.body_canon = DKIM_CANON_RELAXED;
    p.header_list = (char *)hl.data;
    uint8_t d[32], d2[32];
    CHECK_OK(dkim_sig_build(&p, msg.bh, &field, NULL));
    CHECK_OK(dkim_sig_digest(h, field.data, field.len, d, NULL));
    EVP_PKEY *k = load_key(RFC8463 "ed25519.pem", 1);
    if (k != NULL)
        sign_digest(k, d, &sig);
    CHECK_OK(dkim_sig_finish(field.data, field.len, sig.data, sig.len, &done, NULL));
    check_folding(done.data, done.len);
    size_t n = 0;
    uint8_t *body = check_slurp(RFC8463 "message-unsigned.eml", &n);
    CHECK_OK(dh_buf_append(&signed_msg, done.data, done.len));
    CHECK_OK(dh_buf_append(&signed_msg, body, n));
    free(body);
    message_free(&msg);
    /* Read back: the new field is field 0 of the signed message. */
    struct message back = {0};
    back.m = dkim_msg_new(0);
    CHECK_OK(dkim_msg_feed(back.m, signed_msg.data, signed_msg.len, NULL));
    CHECK_OK(dkim_msg_end(back.m, NULL));
    size_t flen = 0;
    const uint8_t *f = dkim_hdrs_field(dkim_msg_hdrs(back.m), 0, &flen, NULL);
    CHECK_OK(dkim_sig_digest(dkim_msg_hdrs(back.m), f, flen, d2, NULL));
    CHECK_MEM(d2, 32, d, 32);
    EVP_PKEY *pub = load_key(RFC8463 "ed25519.pub.pem", 0);
    CHECK(pub != NULL && verify_digest(pub, d2, sig.data, sig.len));
    EVP_PKEY_free(pub);
    EVP_PKEY_free(k);
    message_free(&back);
    dh_buf_free(&hl);
    dh_buf_free(&field);
    dh_buf_free(&sig);
    dh_buf_free(&done);
    dh_buf_free(&signed_msg);
}

/* ---- known answers: OpenDKIM's libopendkim test vectors ---- */

/* Re-signs unsigned with OpenDKIM's test key and the tags of the first field
 * of signed; bh= and b= must come out byte for byte. */
static void kat_opendkim(const char *signed_name, const char *unsigned_name)
{
    char sp[512], up[512];
    snprintf(sp, sizeof(sp), "%s%s", ODKIM, signed_name);
    snprintf(up, sizeof(up), "%s%s", ODKIM, unsigned_name);
    struct message sm, um;
    if (load_message(sp, DKIM_CANON_SIMPLE, &sm) != DH_OK)
        return;
    size_t flen = 0;
    const uint8_t *f = dkim_hdrs_field(dkim_msg_hdrs(sm.m), 0, &flen, NULL);
    dkim_tags *t = field_tags(f, flen);
    enum dkim_canon hc, bc;
    CHECK_OK(dkim_canon_parse(dkim_tags_get(t, "c", NULL), &hc, &bc, NULL));
    dkim_tags_free(t);
    if (load_message(up, bc, &um) != DH_OK) {
        message_free(&sm);
        return;
    }
    dh_buf want_bh = {0}, got_bh = {0}, emptied = {0}, want_b = {0}, sig = {0}, got_b = {0};
    tag_nofws(f, flen, "bh", &want_bh);
    b64(um.bh, 32, &got_bh);
    CHECK_STR((char *)got_bh.data, (char *)want_bh.data);
    empty_b(f, flen, &emptied);
    tag_nofws(f, flen, "b", &want_b);
    uint8_t d[32];
    dh_err e = {0};
    CHECK_OK(dkim_sig_digest(dkim_msg_hdrs(um.m), emptied.data, emptied.len, d, &e));
    EVP_PKEY *k = load_key(ODKIM "test-key.pem", 1);
    if (k != NULL)
        sign_digest(k, d, &sig);
    b64(sig.data, sig.len, &got_b);
    if (got_b.len != want_b.len || memcmp(got_b.data, want_b.data, got_b.len) != 0)
        check_fail(__FILE__, __LINE__, "%s: b= differs", signed_name);
    EVP_PKEY_free(k);
    message_free(&sm);
    message_free(&um);
    dh_buf_free(&want_bh);
    dh_buf_free(&got_bh);
    dh_buf_free(&emptied);
    dh_buf_free(&want_b);
    dh_buf_free(&sig);
    dh_buf_free(&got_b);
}

static void test_opendkim_simple_simple(void)
{
    kat_opendkim("std.signed.simple-simple.eml", "std.unsigned.eml");
}

static void test_opendkim_simple_relaxed(void)
{
    kat_opendkim("std.signed.simple-relaxed.eml", "std.unsigned.eml");
}

static void test_opendkim_relaxed_simple(void)
{
    kat_opendkim("std.signed.relaxed-simple.eml", "std.unsigned.eml");
}

static void test_opendkim_relaxed_relaxed(void)
{
    kat_opendkim("std.signed.relaxed-relaxed.eml", "std.unsigned.eml");
}

static void test_opendkim_trailing_spaces(void)
{
    kat_opendkim("hdr-trailing-spaces.signed.relaxed-simple.eml",
                 "hdr-trailing-spaces.unsigned.eml");
}

static void test_opendkim_large_lines(void)
{
    kat_opendkim("large-lines.signed.relaxed-simple.eml", "large-lines.unsigned.eml");
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"select_oversign", test_select_oversign},
        {"select_rules", test_select_rules},
        {"build_short", test_build_short},
        {"build_long_fold", test_build_long_fold},
        {"build_errors", test_build_errors},
        {"finish", test_finish},
        {"hash_input_bottom_up", test_hash_input_bottom_up},
        {"hash_input_errors", test_hash_input_errors},
        {"rfc8463_hash_input", test_rfc8463_hash_input},
        {"rfc8463_ed25519", test_rfc8463_ed25519},
        {"rfc8463_rsa", test_rfc8463_rsa},
        {"rfc8463_verify_signed", test_rfc8463_verify_signed},
        {"sign_roundtrip", test_sign_roundtrip},
        {NULL, NULL},
    };
    static const struct check_case opendkim[] = {
        {"simple_simple", test_opendkim_simple_simple},
        {"simple_relaxed", test_opendkim_simple_relaxed},
        {"relaxed_simple", test_opendkim_relaxed_simple},
        {"relaxed_relaxed", test_opendkim_relaxed_relaxed},
        {"trailing_spaces", test_opendkim_trailing_spaces},
        {"large_lines", test_opendkim_large_lines},
        {NULL, NULL},
    };
    if (argc > 1 && strcmp(argv[1], "--opendkim") == 0) {
        if (!check_exists(ODKIM "std.unsigned.eml")) {
            printf("skipped: %s is absent\n", ODKIM);
            return CHECK_SKIP;
        }
        return check_run(argc - 1, argv + 1, opendkim);
    }
    return check_run(argc, argv, cases);
}
