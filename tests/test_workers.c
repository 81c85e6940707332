/*
 * test_workers.c - the token worker pool (daemon/workers.h) on a fresh
 * SoftHSM token per case (tests/lib/with-token.sh): every job comes back
 * exactly once through the eventfd and wp_drain, signatures verify with
 * OpenSSL, deep queues give batches, queue_limit holds, wp_stop finishes
 * what was queued, and a job on a deleted key fails with a reason.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "common/buf.h"
#include "common/err.h"
#include "daemon/workers.h"
#include "hsm/hsm.h"
#include "tests/lib/check.h"

/* ---- token and keys ---- */

static hsm *open_token(unsigned pool)
{
    hsm_config c = {
        .module = check_env("DKIMHSM_TEST_MODULE"),
        .token_uri = check_env("DKIMHSM_TEST_TOKEN"),
        .pin_file = check_env("DKIMHSM_TEST_PIN_FILE"),
        .pool_size = pool,
    };
    hsm *h = NULL;
    dh_err e = {0};
    int rc = hsm_open(&c, &h, &e);
    if (rc != DH_OK)
        check_fail(__FILE__, __LINE__, "hsm_open: %d %s", rc, e.msg);
    return h;
}

/* A generated key and its public half (for OpenSSL). */
struct key {
    hsm_key *k;
    uint8_t id[HSM_ID_LEN];
    dh_buf pub;
};

static int gen_key(hsm *h, enum hsm_keytype t, const char *label, struct key *out)
{
    dh_err e = {0};
    memset(out, 0, sizeof *out);
    int rc = hsm_generate(h, t, 2048, label, out->id, &e);
    if (rc == DH_OK)
        rc = hsm_key_open(h, out->id, HSM_ID_LEN, &out->k, &e);
    if (rc == DH_OK)
        rc = hsm_key_public(h, out->k, &out->pub, &e);
    if (rc != DH_OK)
        check_fail(__FILE__, __LINE__, "key %s: %d %s", label, rc, e.msg);
    return rc == DH_OK;
}

static void key_free(struct key *k)
{
    hsm_key_free(k->k);
    dh_buf_free(&k->pub);
}

/* RSA: PKCS#1 v1.5 with SHA-256 over the digest; Ed25519 over the 32 bytes. */
static int verify_sig(const struct key *key, const uint8_t dg[32], const dh_buf *sig)
{
    const unsigned char *p = key->pub.data;
    int rsa = hsm_key_type(key->k) == HSM_KEY_RSA;
    EVP_PKEY *pk =
        rsa ? d2i_PUBKEY(NULL, &p, (long)key->pub.len)
            : EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key->pub.data, key->pub.len);
    int ok = 0;
    if (pk != NULL && rsa) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
        ok = ctx != NULL && EVP_PKEY_verify_init(ctx) > 0 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0 &&
             EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0 &&
             EVP_PKEY_verify(ctx, sig->data, sig->len, dg, 32) == 1;
        EVP_PKEY_CTX_free(ctx);
    } else if (pk != NULL) {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        ok = m != NULL && EVP_DigestVerifyInit(m, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(m, sig->data, sig->len, dg, 32) == 1;
        EVP_MD_CTX_free(m);
    }
    EVP_PKEY_free(pk);
    return ok;
}

/* ---- jobs and their return ---- */

struct tally {
    size_t njobs;
    unsigned *seen; /* times each id came back */
    size_t back;
    unsigned max_batch;
    int bad; /* a job came back with an id we never gave out */
};

static wp_job *make_jobs(size_t n, struct key *const *keys, size_t nkeys)
{
    wp_job *jobs = calloc(n, sizeof *jobs);
    for (size_t i = 0; jobs != NULL && i < n; i++) {
        char text[64];
        snprintf(text, sizeof text, "job %zu", i);
        SHA256((const unsigned char *)text, strlen(text), jobs[i].digest);
        jobs[i].key = keys[i % nkeys]->k;
        jobs[i].owner = keys[i % nkeys];
        jobs[i].id = (uint32_t)i;
    }
    CHECK(jobs != NULL);
    return jobs;
}

static void free_jobs(wp_job *jobs, size_t n)
{
    for (size_t i = 0; jobs != NULL && i < n; i++)
        dh_buf_free(&jobs[i].sig);
    free(jobs);
}

static void on_done(wp_job *j, void *arg)
{
    struct tally *t = arg;
    if (j->id >= t->njobs) {
        t->bad = 1;
        return;
    }
    t->seen[j->id]++;
    t->back++;
    if (j->batch > t->max_batch)
        t->max_batch = j->batch;
}

/* Polls the wake fd and drains until want jobs are back (10 s without a
 * wake-up is a failure). Returns 1 when they all came. */
static int wait_back(wp *p, struct tally *t, size_t want)
{
    while (t->back < want) {
        struct pollfd pfd = {.fd = wp_wake_fd(p), .events = POLLIN};
        int r = poll(&pfd, 1, 10000);
        if (r <= 0) {
            check_fail(__FILE__, __LINE__, "no wake-up within 10 s: %zu of %zu back", t->back,
                       want);
            return 0;
        }
        (void)wp_drain(p, on_done, t);
    }
    return 1;
}

/* Every job back exactly once, signed, and the signature verifies. */
static void check_all_signed(const wp_job *jobs, const struct tally *t)
{
    int dup = 0, missing = 0, failed = 0, bad = 0;
    for (size_t i = 0; i < t->njobs; i++) {
        dup += t->seen[i] > 1;
        missing += t->seen[i] == 0;
        if (jobs[i].status != DH_OK) {
            if (failed++ == 0)
                fprintf(stderr, "job %zu: %d %s\n", i, jobs[i].status, jobs[i].reason);
            continue;
        }
        bad += !verify_sig(jobs[i].owner, jobs[i].digest, &jobs[i].sig);
        if (jobs[i].token_ms <= 0 || jobs[i].batch < 1)
            bad++;
    }
    CHECK_EQ_INT(t->bad, 0);
    CHECK_EQ_INT(dup, 0);
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(bad, 0);
}

/* ---- cases ---- */

enum { NJOBS = 2000 };

/* 2,000 digests across an RSA and an Ed25519 key, all submitted at once:
 * the queue is deep, so workers take batches. */
static void test_roundtrip(void)
{
    hsm *h = open_token(2);
    struct key rsa = {0}, ed = {0};
    wp *p = NULL;
    dh_err e = {0};
    if (h == NULL || !gen_key(h, HSM_KEY_RSA, "rsa", &rsa) ||
        !gen_key(h, HSM_KEY_ED25519, "ed", &ed))
        goto out;
    struct key *keys[] = {&rsa, &ed};
    wp_job *jobs = make_jobs(NJOBS, keys, 2);
    unsigned *seen = calloc(NJOBS, sizeof *seen);
    struct tally t = {.njobs = NJOBS, .seen = seen};
    CHECK_OK(wp_new(h, 2, 32, 4096, &p, &e));
    for (size_t i = 0; p != NULL && jobs != NULL && seen != NULL && i < NJOBS; i++) {
        int full = -1;
        CHECK_OK(wp_submit(p, &jobs[i], &full));
        CHECK_EQ_INT(full, 0);
    }
    if (p != NULL && seen != NULL && wait_back(p, &t, NJOBS)) {
        check_all_signed(jobs, &t);
        printf("max batch %u\n", t.max_batch);
        CHECK(t.max_batch > 1);
        CHECK(t.max_batch <= 32);
        CHECK_EQ_INT(wp_queue_depth(p), 0);
        CHECK_EQ_INT(wp_in_flight(p), 0);
        CHECK_EQ_INT(wp_drain(p, on_done, &t), 0); /* nothing comes twice */
    }
    wp_free(p);
    free_jobs(jobs, NJOBS);
    free(seen);
out:
    key_free(&rsa);
    key_free(&ed);
    hsm_close(h);
}

/* One job on an idle pool: a batch of one, the signature alone in sig even
 * when the submitter reuses a buffer. */
static void test_single(void)
{
    hsm *h = open_token(1);
    struct key rsa = {0};
    wp *p = NULL;
    dh_err e = {0};
    if (h == NULL || !gen_key(h, HSM_KEY_RSA, "rsa", &rsa))
        goto out;
    struct key *keys[] = {&rsa};
    wp_job *jobs = make_jobs(1, keys, 1);
    unsigned seen[1] = {0};
    struct tally t = {.njobs = 1, .seen = seen};
    CHECK_OK(wp_new(h, 1, 8, 8, &p, &e));
    for (int round = 0; p != NULL && jobs != NULL && round < 2; round++) {
        CHECK_OK(wp_submit(p, &jobs[0], NULL));
        t.back = 0;
        if (wait_back(p, &t, 1)) {
            CHECK_EQ_INT(jobs[0].status, DH_OK);
            CHECK_EQ_INT(jobs[0].batch, 1);
            CHECK_EQ_INT(jobs[0].sig.len, 256);
            CHECK(verify_sig(&rsa, jobs[0].digest, &jobs[0].sig));
        }
    }
    CHECK_EQ_INT(seen[0], 2);
    wp_free(p);
    free_jobs(jobs, 1);
out:
    key_free(&rsa);
    hsm_close(h);
}

/* One worker signing one at a time cannot keep up with a submit loop: the
 * queue fills, the next submit is refused with full = 1, and once drained
 * the pool takes jobs again. */
static void test_queue_limit(void)
{
    enum { LIMIT = 8, MAX = 1000 };
    hsm *h = open_token(1);
    struct key rsa = {0};
    wp *p = NULL;
    dh_err e = {0};
    if (h == NULL || !gen_key(h, HSM_KEY_RSA, "rsa", &rsa))
        goto out;
    struct key *keys[] = {&rsa};
    wp_job *jobs = make_jobs(MAX, keys, 1);
    unsigned *seen = calloc(MAX, sizeof *seen);
    struct tally t = {.njobs = MAX, .seen = seen};
    CHECK_OK(wp_new(h, 1, 1, LIMIT, &p, &e));
    size_t accepted = 0;
    int rc = DH_OK, full = 0;
    while (p != NULL && jobs != NULL && seen != NULL && accepted < MAX) {
        rc = wp_submit(p, &jobs[accepted], &full);
        if (rc != DH_OK)
            break;
        accepted++;
    }
    CHECK_EQ_INT(rc, DH_ESTATE);
    CHECK_EQ_INT(full, 1);
    CHECK(accepted >= LIMIT);
    CHECK(p == NULL || wp_queue_depth(p) <= LIMIT);
    printf("refused after %zu accepted\n", accepted);
    if (p != NULL && seen != NULL && accepted < MAX && wait_back(p, &t, accepted)) {
        t.njobs = accepted;
        check_all_signed(jobs, &t);
        CHECK_OK(wp_submit(p, &jobs[accepted], &full));
        CHECK_EQ_INT(full, 0);
        t.njobs = MAX;
        (void)wait_back(p, &t, accepted + 1);
    }
    wp_free(p);
    free_jobs(jobs, MAX);
    free(seen);
out:
    key_free(&rsa);
    hsm_close(h);
}

/* wp_stop right after queueing: every queued job is still signed, then the
 * pool refuses work (not as full), and stopping again is harmless. */
static void test_stop(void)
{
    enum { N = 300 };
    hsm *h = open_token(2);
    struct key rsa = {0}, ed = {0};
    wp *p = NULL;
    dh_err e = {0};
    if (h == NULL || !gen_key(h, HSM_KEY_RSA, "rsa", &rsa) ||
        !gen_key(h, HSM_KEY_ED25519, "ed", &ed))
        goto out;
    struct key *keys[] = {&rsa, &ed};
    wp_job *jobs = make_jobs(N + 1, keys, 2);
    unsigned *seen = calloc(N, sizeof *seen);
    struct tally t = {.njobs = N, .seen = seen};
    CHECK_OK(wp_new(h, 2, 4, N, &p, &e));
    for (size_t i = 0; p != NULL && jobs != NULL && seen != NULL && i < N; i++)
        CHECK_OK(wp_submit(p, &jobs[i], NULL));
    if (p != NULL && jobs != NULL && seen != NULL) {
        wp_stop(p);
        CHECK_EQ_INT(wp_queue_depth(p), 0);
        CHECK_EQ_INT(wp_in_flight(p), 0);
        struct pollfd pfd = {.fd = wp_wake_fd(p), .events = POLLIN};
        CHECK_EQ_INT(poll(&pfd, 1, 0), 1); /* finished jobs are waiting */
        CHECK_EQ_INT(wp_drain(p, on_done, &t), N);
        check_all_signed(jobs, &t);
        int full = -1;
        CHECK_EQ_INT(wp_submit(p, &jobs[N], &full), DH_ESTATE);
        CHECK_EQ_INT(full, 0);
        wp_stop(p);
        CHECK_EQ_INT(wp_drain(p, on_done, &t), 0);
    }
    wp_free(p);
    free_jobs(jobs, N + 1);
    free(seen);
out:
    key_free(&rsa);
    key_free(&ed);
    hsm_close(h);
}

/* A key deleted from the token under a queued job: the job comes back with
 * the token's error and a reason; the job beside it is unharmed. */
static void test_destroyed_key(void)
{
    hsm *h = open_token(2);
    struct key good = {0}, doomed = {0};
    wp *p = NULL;
    dh_err e = {0};
    if (h == NULL || !gen_key(h, HSM_KEY_RSA, "good", &good) ||
        !gen_key(h, HSM_KEY_ED25519, "doomed", &doomed))
        goto out;
    CHECK_OK(hsm_key_destroy(h, doomed.id, HSM_ID_LEN, &e));
    struct key *keys[] = {&doomed, &good};
    wp_job *jobs = make_jobs(2, keys, 2);
    unsigned seen[2] = {0};
    struct tally t = {.njobs = 2, .seen = seen};
    CHECK_OK(wp_new(h, 1, 8, 8, &p, &e));
    if (p != NULL && jobs != NULL) {
        CHECK_OK(wp_submit(p, &jobs[0], NULL));
        CHECK_OK(wp_submit(p, &jobs[1], NULL));
        if (wait_back(p, &t, 2)) {
            CHECK(jobs[0].status != DH_OK);
            CHECK(jobs[0].reason[0] != '\0');
            CHECK_EQ_INT(jobs[0].sig.len, 0);
            printf("destroyed key: status %d (%s), reason: %s\n", jobs[0].status,
                   dh_strstatus(jobs[0].status), jobs[0].reason);
            CHECK_EQ_INT(jobs[1].status, DH_OK);
            CHECK(jobs[1].reason[0] == '\0');
            CHECK(verify_sig(&good, jobs[1].digest, &jobs[1].sig));
        }
    }
    wp_free(p);
    free_jobs(jobs, 2);
out:
    key_free(&good);
    key_free(&doomed);
    hsm_close(h);
}

static void test_bad_args(void)
{
    wp *p = (wp *)&p; /* must come back NULL */
    dh_err e = {0};
    CHECK_EQ_INT(wp_new(NULL, 0, 1, 1, &p, &e), DH_EINVAL);
    CHECK(p == NULL);
    CHECK(e.msg[0] != '\0');
    CHECK_EQ_INT(wp_new(NULL, 1, 0, 1, &p, &e), DH_EINVAL);
    CHECK_EQ_INT(wp_new(NULL, 1, 1, 0, &p, &e), DH_EINVAL);
    wp_free(NULL);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"roundtrip", test_roundtrip},
        {"single", test_single},
        {"queue_limit", test_queue_limit},
        {"stop", test_stop},
        {"destroyed_key", test_destroyed_key},
        {"bad_args", test_bad_args},
        {NULL, NULL},
    };
    return check_run(argc, argv, cases);
}
