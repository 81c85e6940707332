/*
 * fuzz_handler.c - fuzz target for dkimhsmd's request handler (daemon/handler.h):
 * whatever a local process writes to the agent socket, after framing, reaches
 * hd_handle. It runs against a real token (tests/lib/with-token.sh): a
 * keystore with an active Ed25519 key example.com/ed1, a revoked one
 * example.com/gone, and a worker pool, so requests that pass every check are
 * really signed.
 *
 * The first input byte chooses what the rest is:
 *   'F'  a frame body (type, id, fields) with every byte XOR 0x80 (so seeds
 *        can be C strings), behind a matching length prefix;
 *   'B'  the header block of a SIGN request for example.com / ed1 / ed25519
 *        from uid 0, which may sign for example.com;
 *   'b'  the same from uid 4321, which may not;
 *   'L'  the domain of a LOOKUP;
 *   else the whole input, as raw bytes on the socket.
 *
 * Invariants (abort on violation): every call ends with exactly one reply
 * frame (now, or from the worker pool when queued) that decodes and is a
 * reply type; a CLOSE reply is an ERROR frame; a SIGN from uid 4321 is never
 * signed, and a signature is 64 bytes (Ed25519).
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/hex.h"
#include "daemon/handler.h"
#include "daemon/proto.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/token_env.h"

const char *const fuzz_seeds[] = {
    "Bfrom:a@example.com\r\ndkim-signature:v=1; a=ed25519-sha256; c=relaxed/relaxed; "
    "d=example.com; s=ed1; t=1; h=from; bh=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=; b=",
    "bfrom:a@example.com\r\ndkim-signature:v=1; a=ed25519-sha256; c=relaxed/relaxed; "
    "d=example.com; s=ed1; t=1; h=from; bh=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=; b=",
    "Bfrom:a@example.com\r\nsubject:x\r\ndkim-signature:v=1; a=ed25519-sha256; "
    "c=simple/simple; d=example.com; s=gone; h=from:subject; bh=AAAA; b=",
    "Bfrom:a@example.com\r\ndkim-signature:v=1; a=rsa-sha256; d=other.example; s=ed1; "
    "h=from; bh=AAAA; b=xyz",
    "Lexample.com",
    "Lshop.example.com",
    "Lnokey.example",
    /* PING, LOOKUP and an unknown type as frame bodies */
    "F\x83\x80\x80\x80\x83",
    "F\x82\x80\x80\x80\x82\x80\x8b\xe5\xf8\xe1\xed\xf0\xec\xe5\xae\xe3\xef\xed",
    "F\x84\x80\x80\x80\x81",
    "\x01\x02\x03",
    NULL,
};

#define OTHER_UID 4321

static hsm *token;
static ks *store;
static wp *pool;
static hd *handler;

static void add_key(const char *sel, enum ks_state st)
{
    uint8_t id[HSM_ID_LEN];
    char idhex[2 * HSM_ID_LEN + 1], label[128];
    dh_err e = {0};
    snprintf(label, sizeof(label), "%s._domainkey.example.com", sel);
    REQUIRE(hsm_generate(token, HSM_KEY_ED25519, 0, label, id, &e) == DH_OK);
    dh_hex(id, sizeof(id), idhex, sizeof(idhex));
    ks_selector row = {.domain = "example.com",
                       .selector = (char *)sel,
                       .alg = DKIM_ALG_ED25519_SHA256,
                       .bits = 256,
                       .key_id = idhex,
                       .public_key = "AAAA",
                       .state = st,
                       .created = time(NULL),
                       .state_changed = time(NULL)};
    REQUIRE(ks_insert(store, &row, &e) == DH_OK);
}

static void setup(void)
{
    dh_err e = {0};
    (void)fuzz_token_env("fuzz_handler", &token, &store);
    add_key("ed1", KS_ACTIVE);
    add_key("gone", KS_REVOKED);
    conf cf = {.agent_allow = "0:example.com; 4321:other.example",
               .signing_table = "shop.example.com=example.com"};
    kset *keys = NULL;
    policy *pol = NULL;
    mx *metrics = mx_new();
    REQUIRE(metrics != NULL && hd_register_metrics(metrics) == DH_OK);
    REQUIRE(kset_load(store, token, &keys, &e) == DH_OK);
    REQUIRE(policy_new(&cf, 0, &pol, &e) == DH_OK);
    REQUIRE(wp_new(token, 1, 8, 64, &pool, &e) == DH_OK);
    REQUIRE(hd_new(pool, metrics, token, &handler, &e) == DH_OK);
    hd_set_state(handler, keys, pol);
}

static void collect(wp_job *job, void *arg)
{
    (void)hd_complete(handler, job, arg);
}

/* The reply of a queued request: the worker pool signs, the "loop" drains. */
static void wait_queued(dh_buf *reply)
{
    struct pollfd pfd = {.fd = wp_wake_fd(pool), .events = POLLIN};
    while (reply->len == 0) {
        REQUIRE(poll(&pfd, 1, 10000) > 0);
        wp_drain(pool, collect, reply);
    }
}

/* The frame this input stands for; *uid who sends it. */
static int make_frame(const uint8_t *data, size_t size, dh_buf *frame, uid_t *uid)
{
    *uid = 0;
    if (size == 0)
        return dh_buf_append(frame, data, 0);
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    if (data[0] == 'F') {
        uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
        int rc = dh_buf_append(frame, len, sizeof(len));
        for (size_t i = 0; rc == DH_OK && i < n; i++)
            rc = dh_buf_putc(frame, rest[i] ^ 0x80);
        return rc;
    }
    if (data[0] == 'B' || data[0] == 'b') {
        *uid = data[0] == 'b' ? OTHER_UID : 0;
        ap_sign s = {{"example.com", 11}, {"ed1", 3}, DKIM_ALG_ED25519_SHA256, rest, n};
        return ap_encode_sign(frame, 7, &s);
    }
    if (data[0] == 'L') {
        char domain[AP_MAX_NAME + 2];
        size_t k = n < sizeof(domain) - 1 ? n : sizeof(domain) - 1;
        memcpy(domain, rest, k);
        domain[k] = '\0';
        return ap_encode_lookup(frame, 8, domain);
    }
    return dh_buf_append(frame, data, size);
}

static void check_reply(enum hd_result r, const dh_buf *reply, uid_t uid)
{
    ap_msg m;
    uint32_t id = 0;
    REQUIRE(reply->len > 0);
    REQUIRE(ap_decode(reply->data, reply->len, &m, &id, NULL) == DH_OK);
    REQUIRE(m.type == AP_SIGN_REPLY || m.type == AP_LOOKUP_REPLY || m.type == AP_PONG ||
            m.type == AP_ERROR);
    REQUIRE(r != HD_CLOSE || m.type == AP_ERROR);
    if (m.type == AP_SIGN_REPLY && m.u.sign_reply.status == AP_OK) {
        REQUIRE(uid == 0); /* uid 4321 may not sign for example.com */
        REQUIRE(m.u.sign_reply.sig_len == 64);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (handler == NULL)
        setup();
    dh_buf frame = {0}, reply = {0};
    uid_t uid;
    if (make_frame(data, size, &frame, &uid) != DH_OK || frame.len < 4) {
        dh_buf_free(&frame);
        return 0; /* hd_handle is only ever given whole frames */
    }
    size_t flen = 0;
    if (ap_frame_size(frame.data, frame.len, &flen, NULL) == DH_OK && flen == frame.len) {
        enum hd_result r = hd_handle(handler, uid, NULL, frame.data, frame.len, &reply);
        REQUIRE(r == HD_REPLIED || r == HD_QUEUED || r == HD_CLOSE);
        if (r == HD_QUEUED)
            wait_queued(&reply);
        check_reply(r, &reply, uid);
    }
    dh_buf_free(&frame);
    dh_buf_free(&reply);
    return 0;
}
