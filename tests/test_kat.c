/*
 * Known answers through the token: the RFC 8463 Appendix A keys and OpenDKIM's
 * test key are imported into a fresh SoftHSM token; given each example's own
 * DKIM-Signature field (tags as printed), dkim/ computes the header hash and
 * hsm/ signs it, and the b= must equal the published one byte for byte (RSA
 * PKCS#1 v1.5 and Ed25519 are deterministic). bh= must match too.
 *
 * usage (via lib/with-token.sh): test_kat TESTDATA SHARED_TESTDATA [CASE]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/b64.h"
#include "dkim/canon.h"
#include "dkim/msg.h"
#include "dkim/sig.h"
#include "dkim/tag.h"
#include "hsm/hsm.h"
#include "tests/lib/check.h"

static const char *testdata, *shared;
static hsm *token;
static int skipped;

/* The first header field of a file (the DKIM-Signature on top), without its
 * final CRLF: up to the first CRLF not followed by WSP. */
static size_t first_field_len(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (p[i] == '\r' && p[i + 1] == '\n' &&
            (i + 2 >= len || (p[i + 2] != ' ' && p[i + 2] != '\t')))
            return i;
    return len;
}

/* b= or bh= of a field, whitespace removed. */
static void tag_value(const uint8_t *field, size_t len, const char *tag, dh_buf *out)
{
    const uint8_t *colon = memchr(field, ':', len);
    dkim_tags *t = NULL;
    if (colon == NULL || dkim_tags_parse((const char *)colon + 1, len - (size_t)(colon + 1 - field),
                                         &t, NULL) != DH_OK)
        return;
    const char *v = dkim_tags_get(t, tag, NULL);
    for (; v && *v; v++)
        if (*v != ' ' && *v != '\t' && *v != '\r' && *v != '\n')
            CHECK_OK(dh_buf_putc(out, (uint8_t)*v));
    dkim_tags_free(t);
}

static void run_vector(const char *msg_path, const char *sig_path, const char *pem_path,
                       const char *label)
{
    size_t mlen = 0, slen = 0;
    uint8_t *msg = check_slurp(msg_path, &mlen), *signed_ = check_slurp(sig_path, &slen);
    CHECK(msg != NULL && signed_ != NULL);
    if (msg == NULL || signed_ == NULL) {
        free(msg);
        free(signed_);
        return;
    }
    size_t flen = first_field_len(signed_, slen);
    dh_buf want_b = {0}, want_bh = {0}, c = {0}, sig = {0}, got_b = {0}, got_bh = {0};
    tag_value(signed_, flen, "b", &want_b);
    tag_value(signed_, flen, "bh", &want_bh);
    tag_value(signed_, flen, "c", &c);
    enum dkim_canon hc, bc;
    CHECK_OK(dkim_canon_parse((const char *)c.data, &hc, &bc, NULL));

    dkim_msg *m = dkim_msg_new(0);
    dkim_body *body = dkim_body_new(bc, -1);
    uint8_t bh[32], digest[32], id[HSM_ID_LEN];
    CHECK_OK(dkim_msg_attach_body(m, body));
    CHECK_OK(dkim_msg_feed(m, msg, mlen, NULL));
    CHECK_OK(dkim_msg_end(m, NULL));
    CHECK_OK(dkim_body_final(body, bh, NULL));
    CHECK_OK(dkim_b64_encode(bh, 32, &got_bh));
    CHECK_MEM(got_bh.data, got_bh.len, want_bh.data, want_bh.len);

    dh_err e = {0};
    enum hsm_keytype type;
    unsigned bits;
    hsm_key *key = NULL;
    CHECK_OK(hsm_import_pem(token, pem_path, label, id, &type, &bits, &e));
    CHECK_OK(hsm_key_open(token, id, sizeof(id), &key, &e));
    CHECK_OK(dkim_sig_digest(dkim_msg_hdrs(m), signed_, flen, digest, &e));
    if (key != NULL)
        CHECK_OK(hsm_sign_digest(token, key, digest, &sig, &e));
    if (e.msg[0])
        fprintf(stderr, "  %s: %s\n", label, e.msg);
    CHECK_OK(dkim_b64_encode(sig.data, sig.len, &got_b));
    CHECK_MEM(got_b.data, got_b.len, want_b.data, want_b.len);

    hsm_key_free(key);
    dkim_msg_free(m);
    dkim_body_free(body);
    dh_buf_free(&want_b);
    dh_buf_free(&want_bh);
    dh_buf_free(&c);
    dh_buf_free(&sig);
    dh_buf_free(&got_b);
    dh_buf_free(&got_bh);
    free(msg);
    free(signed_);
}

static void rfc8463(const char *alg, const char *pem)
{
    char m[512], s[512], k[512];
    snprintf(m, sizeof(m), "%s/rfc8463/message-unsigned.eml", testdata);
    snprintf(s, sizeof(s), "%s/rfc8463/expected-dkim-signature-%s.txt", testdata, alg);
    snprintf(k, sizeof(k), "%s/rfc8463/%s", testdata, pem);
    run_vector(m, s, k, alg);
}

static void test_rfc8463_ed25519(void)
{
    rfc8463("ed25519", "ed25519.pem");
}

static void test_rfc8463_rsa(void)
{
    rfc8463("rsa", "rsa.pem");
}

static void opendkim(const char *unsigned_name, const char *signed_name)
{
    char m[512], s[512], k[512];
    snprintf(m, sizeof(m), "%s/opendkim-vectors/%s", shared, unsigned_name);
    snprintf(s, sizeof(s), "%s/opendkim-vectors/%s", shared, signed_name);
    snprintf(k, sizeof(k), "%s/opendkim-vectors/test-key.pem", shared);
    if (!check_exists(m)) {
        printf("  (skipped: %s absent)\n", m);
        skipped++;
        return;
    }
    run_vector(m, s, k, signed_name);
}

static void test_opendkim_simple_simple(void)
{
    opendkim("std.unsigned.eml", "std.signed.simple-simple.eml");
}
static void test_opendkim_simple_relaxed(void)
{
    opendkim("std.unsigned.eml", "std.signed.simple-relaxed.eml");
}
static void test_opendkim_relaxed_simple(void)
{
    opendkim("std.unsigned.eml", "std.signed.relaxed-simple.eml");
}
static void test_opendkim_relaxed_relaxed(void)
{
    opendkim("std.unsigned.eml", "std.signed.relaxed-relaxed.eml");
}
static void test_opendkim_trailing_spaces(void)
{
    opendkim("hdr-trailing-spaces.unsigned.eml", "hdr-trailing-spaces.signed.relaxed-simple.eml");
}
static void test_opendkim_large_lines(void)
{
    opendkim("large-lines.unsigned.eml", "large-lines.signed.relaxed-simple.eml");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_kat TESTDATA SHARED_TESTDATA [CASE]\n");
        return 2;
    }
    testdata = argv[1];
    shared = argv[2];
    hsm_config cfg = {.module = getenv("DKIMHSM_TEST_MODULE"),
                      .token_uri = getenv("DKIMHSM_TEST_TOKEN"),
                      .pin_file = getenv("DKIMHSM_TEST_PIN_FILE")};
    dh_err e = {0};
    if (cfg.module == NULL || hsm_open(&cfg, &token, &e) != DH_OK) {
        fprintf(stderr, "cannot open the test token (run through with-token.sh): %s\n", e.msg);
        return 1;
    }
    static const struct check_case cases[] = {
        {"rfc8463_ed25519", test_rfc8463_ed25519},
        {"rfc8463_rsa", test_rfc8463_rsa},
        {"opendkim_simple_simple", test_opendkim_simple_simple},
        {"opendkim_simple_relaxed", test_opendkim_simple_relaxed},
        {"opendkim_relaxed_simple", test_opendkim_relaxed_simple},
        {"opendkim_relaxed_relaxed", test_opendkim_relaxed_relaxed},
        {"opendkim_trailing_spaces", test_opendkim_trailing_spaces},
        {"opendkim_large_lines", test_opendkim_large_lines},
        {NULL, NULL}};
    int rc = check_run(argc - 2, argv + 2, cases);
    hsm_close(token);
    return rc;
}
