/*
 * daemon/handler: the agent protocol's policy, driven without a socket.
 * A fresh token (with-token.sh) holds an RSA and an Ed25519 key for
 * example.com; requests go through hd_handle and, when queued, through the
 * real worker pool and hd_complete.
 */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/hex.h"
#include "daemon/handler.h"
#include "daemon/proto.h"
#include "dkim/b64.h"
#include "dkim/msg.h"
#include "dkim/sig.h"
#include "tests/lib/check.h"

static hsm *token;
static ks *store;
static wp *pool;
static mx *metrics;
static hd *handler;
static dh_buf pub_rsa, pub_ed;

#define ALLOWED_UID 0
#define OTHER_UID 4321

static void add_key(const char *domain, const char *sel, enum hsm_keytype t, enum ks_state st,
                    dh_buf *pub)
{
    uint8_t id[HSM_ID_LEN];
    char idhex[2 * HSM_ID_LEN + 1], label[128];
    hsm_key *k = NULL;
    dh_err e = {0};
    snprintf(label, sizeof(label), "%s._domainkey.%s", sel, domain);
    CHECK_OK(hsm_generate(token, t, 2048, label, id, &e));
    CHECK_OK(hsm_key_open(token, id, sizeof(id), &k, &e));
    if (pub != NULL)
        CHECK_OK(hsm_key_public(token, k, pub, &e));
    hsm_key_free(k);
    dh_hex(id, sizeof(id), idhex, sizeof(idhex));
    ks_selector row = {.domain = (char *)domain,
                       .selector = (char *)sel,
                       .alg = t == HSM_KEY_RSA ? DKIM_ALG_RSA_SHA256 : DKIM_ALG_ED25519_SHA256,
                       .bits = 2048,
                       .key_id = idhex,
                       .public_key = "AAAA",
                       .state = st,
                       .created = time(NULL),
                       .state_changed = time(NULL)};
    CHECK_OK(ks_insert(store, &row, &e));
}

static int setup(void)
{
    hsm_config hc = {getenv("DKIMHSM_TEST_MODULE"), getenv("DKIMHSM_TEST_TOKEN"),
                     getenv("DKIMHSM_TEST_PIN_FILE"), 4};
    dh_err e = {0};
    char state[512];
    snprintf(state, sizeof(state), "%s/state", getenv("DKIMHSM_TEST_DIR"));
    if (hc.module == NULL || hsm_open(&hc, &token, &e) != DH_OK ||
        ks_open(state, &store, &e) != DH_OK) {
        fprintf(stderr, "setup: %s (run through with-token.sh)\n", e.msg);
        return 0;
    }
    add_key("example.com", "rsa1", HSM_KEY_RSA, KS_ACTIVE, &pub_rsa);
    add_key("example.com", "ed1", HSM_KEY_ED25519, KS_ACTIVE, &pub_ed);
    add_key("example.com", "gone", HSM_KEY_ED25519, KS_REVOKED, NULL);
    add_key("brand.example", "b1", HSM_KEY_ED25519, KS_ACTIVE, NULL);
    conf cf = {.agent_allow = "0:example.com,brand.example; 4321:other.org",
               .signing_table = "shop.example.com=example.com, .example.org=example.com",
               .fallback_domain = "brand.example"};
    kset *keys = NULL;
    policy *pol = NULL;
    metrics = mx_new();
    CHECK_OK(hd_register_metrics(metrics));
    CHECK_OK(kset_load(store, token, &keys, &e));
    CHECK_OK(policy_new(&cf, 0, &pol, &e));
    CHECK_OK(wp_new(token, 2, 8, 64, &pool, &e));
    CHECK_OK(hd_new(pool, metrics, token, &handler, &e));
    hd_set_state(handler, keys, pol);
    return check_failures == 0;
}

/* The block a client would send: header fields + DKIM-Signature with b=. */
static void make_block(const char *d, const char *s, enum dkim_alg alg, const char *extra_h,
                       dh_buf *block)
{
    dkim_hdrs *h = dkim_hdrs_new();
    static const char *const fields[] = {"From: a@example.com", "To: b@example.net", "Subject: hi"};
    for (size_t i = 0; i < 3; i++)
        CHECK_OK(dkim_hdrs_add_raw(h, (const uint8_t *)fields[i], strlen(fields[i]), NULL));
    uint8_t bh[32] = {1};
    dh_buf field = {0};
    dkim_sig_params p = {.alg = alg,
                         .hdr_canon = DKIM_CANON_RELAXED,
                         .body_canon = DKIM_CANON_RELAXED,
                         .domain = d,
                         .selector = s,
                         .timestamp = 1,
                         .expire = -1,
                         .body_length = -1,
                         .header_list = extra_h ? extra_h : "from:to:subject"};
    CHECK_OK(dkim_sig_build(&p, bh, &field, NULL));
    CHECK_OK(dkim_sig_hash_input(h, field.data, field.len, block, NULL));
    dh_buf_free(&field);
    dkim_hdrs_free(h);
}

struct answer {
    ap_msg msg;
    dh_buf frame;
};

static void collect(wp_job *job, void *arg)
{
    struct answer *a = arg;
    (void)hd_complete(handler, job, &a->frame);
}

/* Sends one frame; returns the decoded answer (waiting for the pool if queued). */
static enum hd_result ask(uid_t uid, const dh_buf *frame, struct answer *a)
{
    dh_buf_reset(&a->frame);
    enum hd_result r = hd_handle(handler, uid, NULL, frame->data, frame->len, &a->frame);
    if (r == HD_QUEUED) {
        struct pollfd pfd = {.fd = wp_wake_fd(pool), .events = POLLIN};
        while (a->frame.len == 0 && poll(&pfd, 1, 5000) > 0)
            wp_drain(pool, collect, a);
    }
    CHECK(a->frame.len > 0);
    if (a->frame.len > 0)
        CHECK_OK(ap_decode(a->frame.data, a->frame.len, &a->msg, NULL, NULL));
    return r;
}

static uint8_t sign_status(uid_t uid, const char *req_d, const char *req_s, enum dkim_alg alg,
                           const dh_buf *block, struct answer *a)
{
    dh_buf frame = {0};
    ap_sign s = {
        {req_d, strlen(req_d)}, {req_s, strlen(req_s)}, (uint8_t)alg, block->data, block->len};
    CHECK_OK(ap_encode_sign(&frame, 77, &s));
    ask(uid, &frame, a);
    dh_buf_free(&frame);
    CHECK_EQ_INT(a->msg.type, AP_SIGN_REPLY);
    CHECK_EQ_INT(a->msg.id, 77);
    return a->msg.u.sign_reply.status;
}

/* The signature in a reply must verify over SHA-256(block) with the key. */
static int verifies(const dh_buf *pub, enum dkim_alg alg, const dh_buf *block, const ap_msg *m)
{
    uint8_t digest[32];
    EVP_Digest(block->data, block->len, digest, NULL, EVP_sha256(), NULL);
    EVP_PKEY *k = alg == DKIM_ALG_ED25519_SHA256
                      ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub->data, pub->len)
                      : d2i_PUBKEY(NULL, &(const unsigned char *){pub->data}, (long)pub->len);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = 0;
    if (alg == DKIM_ALG_ED25519_SHA256)
        ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestVerify(ctx, m->u.sign_reply.sig, m->u.sign_reply.sig_len, digest, 32) == 1;
    else
        ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k) == 1 &&
             EVP_DigestVerify(ctx, m->u.sign_reply.sig, m->u.sign_reply.sig_len, block->data,
                              block->len) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k);
    return ok;
}

static void test_good_requests(void)
{
    struct answer a = {0};
    dh_buf block = {0};
    make_block("example.com", "rsa1", DKIM_ALG_RSA_SHA256, NULL, &block);
    CHECK_EQ_INT(sign_status(ALLOWED_UID, "example.com", "rsa1", DKIM_ALG_RSA_SHA256, &block, &a),
                 AP_OK);
    CHECK(verifies(&pub_rsa, DKIM_ALG_RSA_SHA256, &block, &a.msg));
    dh_buf_reset(&block);
    make_block("example.com", "ed1", DKIM_ALG_ED25519_SHA256, NULL, &block);
    CHECK_EQ_INT(
        sign_status(ALLOWED_UID, "Example.COM", "ed1", DKIM_ALG_ED25519_SHA256, &block, &a), AP_OK);
    CHECK(verifies(&pub_ed, DKIM_ALG_ED25519_SHA256, &block, &a.msg));
    CHECK(mx_value(metrics, "dkimhsm_signatures_total", "alg=\"rsa-sha256\"") == 1);
    dh_buf_free(&block);
    dh_buf_free(&a.frame);
}

static void expect_refused(uid_t uid, const char *rd, const char *rs, enum dkim_alg ralg,
                           const char *bd, const char *bs, enum dkim_alg balg, const char *h,
                           const char *reason, const char *label)
{
    struct answer a = {0};
    dh_buf block = {0};
    make_block(bd, bs, balg, h, &block);
    CHECK_EQ_INT(sign_status(uid, rd, rs, ralg, &block, &a), AP_REFUSED);
    const ap_str *r = &a.msg.u.sign_reply.reason;
    if (a.msg.u.sign_reply.status != AP_OK &&
        (r->len < strlen(reason) || memmem(r->p, r->len, reason, strlen(reason)) == NULL))
        check_fail(__FILE__, __LINE__, "%s: reason '%.*s' lacks '%s'", label, (int)r->len, r->p,
                   reason);
    dh_buf_free(&block);
    dh_buf_free(&a.frame);
}

static void test_refusals(void)
{
    const enum dkim_alg R = DKIM_ALG_RSA_SHA256, E = DKIM_ALG_ED25519_SHA256;
    expect_refused(0, "example.com", "nosuch", R, "example.com", "nosuch", R, NULL,
                   "unknown selector", "unknown selector");
    expect_refused(0, "unknown.org", "rsa1", R, "unknown.org", "rsa1", R, NULL, "unknown selector",
                   "unknown domain");
    expect_refused(0, "example.com", "gone", E, "example.com", "gone", E, NULL, "may not sign",
                   "revoked selector");
    expect_refused(0, "example.com", "rsa1", R, "evil.example", "rsa1", R, NULL, "d= differs",
                   "d= in the block differs");
    expect_refused(0, "example.com", "rsa1", R, "example.com", "ed1", R, NULL, "s= differs",
                   "s= in the block differs");
    expect_refused(0, "example.com", "rsa1", R, "example.com", "rsa1", E, NULL, "a= differs",
                   "a= in the block differs");
    expect_refused(0, "example.com", "ed1", R, "example.com", "ed1", R, NULL, "another algorithm",
                   "request alg differs from the key");
    expect_refused(OTHER_UID, "example.com", "rsa1", R, "example.com", "rsa1", R, NULL,
                   "may not sign for this domain", "uid not allowed");
    CHECK(mx_value(metrics, "dkimhsm_requests_refused_total", "reason=\"uid_not_allowed\"") == 1);
}

static void test_block_must_be_a_signature(void)
{
    struct answer a = {0};
    const char *raw[] = {
        "from:a@example.com\r\ndkim-signature:v=1; a=rsa-sha256; d=example.com; s=rsa1; "
        "h=from; bh=AA==; b=AAAA", /* b= not empty */
        "from:a@example.com\r\ndkim-signature:v=1; a=rsa-sha256; d=example.com; s=rsa1; "
        "h=to; bh=AA==; b=", /* from not signed */
        "from:a@example.com\r\nx-other:v=1; a=rsa-sha256; d=example.com; s=rsa1; h=from; b=",
        "dkim-signature:v=1; a=rsa-sha256; d=example.com; s=rsa1; h=from; bh=AA==; b=\r\n",
    };
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        dh_buf block = {0};
        CHECK_OK(dh_buf_puts(&block, raw[i]));
        CHECK_EQ_INT(sign_status(0, "example.com", "rsa1", DKIM_ALG_RSA_SHA256, &block, &a),
                     AP_REFUSED);
        dh_buf_free(&block);
    }
    dh_buf_free(&a.frame);
}

static void test_malformed_frames(void)
{
    struct answer a = {0};
    dh_buf block = {0}, frame = {0};
    make_block("example.com", "rsa1", DKIM_ALG_RSA_SHA256, NULL, &block);
    ap_sign s = {{"example.com", 11}, {"rsa1", 4}, 0, block.data, block.len};
    CHECK_OK(ap_encode_sign(&frame, 5, &s));
    /* Truncated: the length prefix promises more than is there. */
    frame.len -= 3;
    CHECK_EQ_INT(ask(0, &frame, &a), HD_CLOSE);
    CHECK_EQ_INT(a.msg.type, AP_ERROR);
    /* Trailing bytes after the body. */
    frame.len += 3;
    CHECK_OK(dh_buf_putc(&frame, 0));
    frame.data[3]++;
    CHECK_EQ_INT(ask(0, &frame, &a), HD_CLOSE);
    CHECK_EQ_INT(a.msg.type, AP_ERROR);
    /* A reply type sent as a request gets a refusal, not silence. */
    dh_buf_reset(&frame);
    CHECK_OK(ap_encode_pong(&frame, 9, AP_OK));
    CHECK_EQ_INT(ask(0, &frame, &a), HD_CLOSE);
    CHECK_EQ_INT(a.msg.type, AP_ERROR);
    dh_buf_free(&frame);
    dh_buf_free(&block);
    dh_buf_free(&a.frame);
}

static void lookup(const char *domain, struct answer *a)
{
    dh_buf frame = {0};
    CHECK_OK(ap_encode_lookup(&frame, 3, domain));
    CHECK_EQ_INT(ask(0, &frame, a), HD_REPLIED);
    CHECK_EQ_INT(a->msg.type, AP_LOOKUP_REPLY);
    dh_buf_free(&frame);
}

static void check_lookup(const char *from, const char *want_domain, size_t want_n)
{
    struct answer a = {0};
    lookup(from, &a);
    const ap_lookup_reply *r = &a.msg.u.lookup_reply;
    CHECK_EQ_INT(r->status, AP_OK);
    CHECK_MEM(r->domain.p, r->domain.len, want_domain, strlen(want_domain));
    CHECK_EQ_INT(r->count, want_n);
    dh_buf_free(&a.frame);
}

static void test_lookup(void)
{
    struct answer a = {0};
    check_lookup("example.com", "example.com", 2);
    lookup("example.com", &a);
    /* Ed25519 first, then RSA; the revoked selector is never offered. */
    CHECK_MEM(a.msg.u.lookup_reply.sel[0].selector.p, a.msg.u.lookup_reply.sel[0].selector.len,
              "ed1", 3);
    CHECK_EQ_INT(a.msg.u.lookup_reply.sel[1].alg, DKIM_ALG_RSA_SHA256);
    check_lookup("shop.example.com", "example.com", 2); /* signing table, exact */
    check_lookup("a.b.example.org", "example.com", 2);  /* signing table, subdomains */
    check_lookup("customer.test", "brand.example", 1);  /* fallback domain */
    dh_buf_free(&a.frame);
}

static void test_ping(void)
{
    struct answer a = {0};
    dh_buf frame = {0};
    CHECK_OK(ap_encode_ping(&frame, 8));
    CHECK_EQ_INT(ask(0, &frame, &a), HD_REPLIED);
    CHECK_EQ_INT(a.msg.type, AP_PONG);
    CHECK_EQ_INT(a.msg.u.pong_status, AP_OK);
    dh_buf_free(&frame);
    dh_buf_free(&a.frame);
}

int main(int argc, char **argv)
{
    if (!setup())
        return 1;
    static const struct check_case cases[] = {
        {"good_requests", test_good_requests},
        {"refusals", test_refusals},
        {"block_must_be_a_signature", test_block_must_be_a_signature},
        {"malformed_frames", test_malformed_frames},
        {"lookup", test_lookup},
        {"ping", test_ping},
        {NULL, NULL}};
    int rc = check_run(argc, argv, cases);
    wp_stop(pool);
    hd_free(handler);
    wp_free(pool);
    mx_free(metrics);
    ks_close(store);
    hsm_close(token);
    dh_buf_free(&pub_rsa);
    dh_buf_free(&pub_ed);
    return rc;
}
