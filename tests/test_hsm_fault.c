/*
 * test_hsm_fault.c - the token lost and found again, driven through
 * hsm_sign_digest. Faults come from tests/fault/p11shim.c, loaded in place of
 * SoftHSM (SoftHSM keeps login and sessions per process, so only code in our
 * process can close our sessions or log us out), and from moving SoftHSM's
 * token directory away and back, which SoftHSM itself notices.
 *
 * Environment: tests/lib/with-token.sh, plus DKIMHSM_SHIM_MODULE (the shim).
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "common/buf.h"
#include "common/err.h"
#include "hsm/hsm.h"
#include "tests/lib/check.h"

static const char *test_path(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", check_env("DKIMHSM_TEST_DIR"), name);
    return path;
}

/* The control directory of the shim, created and named in the environment
 * before the shim is loaded (it reads it once). */
static void shim_env(void)
{
    const char *ctl = test_path("ctl");
    if (mkdir(ctl, 0700) != 0 && errno != EEXIST)
        check_fail(__FILE__, __LINE__, "mkdir %s: %s", ctl, strerror(errno));
    setenv("DKIMHSM_SHIM_CTL", ctl, 1);
    setenv("DKIMHSM_SHIM_TARGET", check_env("DKIMHSM_TEST_MODULE"), 1);
}

static hsm *open_token(int via_shim)
{
    hsm_config c = {
        .module = via_shim ? check_env("DKIMHSM_SHIM_MODULE") : check_env("DKIMHSM_TEST_MODULE"),
        .token_uri = check_env("DKIMHSM_TEST_TOKEN"),
        .pin_file = check_env("DKIMHSM_TEST_PIN_FILE"),
        .pool_size = 4,
    };
    if (via_shim)
        shim_env();
    hsm *h = NULL;
    dh_err e = {0};
    if (hsm_open(&c, &h, &e) != DH_OK)
        check_fail(__FILE__, __LINE__, "hsm_open: %s", e.msg);
    return h;
}

/* Creates ctl/NAME (a fault for the shim). */
static void inject(const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", test_path("ctl"), name);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f != NULL)
        fclose(f);
}

static void clear(const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", test_path("ctl"), name);
    CHECK_EQ_INT(unlink(p), 0);
}

/* The shim's record of a consumed fault: "rv=0x0" when it worked. */
static int fault_done(const char *name)
{
    char p[4200], line[64] = {0};
    snprintf(p, sizeof p, "%s/%s.done", test_path("ctl"), name);
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return 0;
    int ok = fgets(line, sizeof line, f) != NULL && strcmp(line, "rv=0x0\n") == 0;
    fclose(f);
    return ok;
}

static void sleep_ms(unsigned ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

static hsm_key *gen_key(hsm *h, enum hsm_keytype t)
{
    uint8_t id[HSM_ID_LEN];
    dh_err e = {0};
    hsm_key *k = NULL;
    if (hsm_generate(h, t, 2048, "fault", id, &e) != DH_OK ||
        hsm_key_open(h, id, HSM_ID_LEN, &k, &e) != DH_OK)
        check_fail(__FILE__, __LINE__, "key: %s", e.msg);
    return k;
}

/* The public key as OpenSSL sees it, for checking signatures. */
static EVP_PKEY *pub_of(hsm *h, hsm_key *k)
{
    dh_buf pub = {0};
    dh_err e = {0};
    EVP_PKEY *pk = NULL;
    if (hsm_key_public(h, k, &pub, &e) != DH_OK) {
        check_fail(__FILE__, __LINE__, "hsm_key_public: %s", e.msg);
    } else if (hsm_key_type(k) == HSM_KEY_ED25519) {
        pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub.data, pub.len);
    } else {
        const unsigned char *p = pub.data;
        pk = d2i_PUBKEY(NULL, &p, (long)pub.len);
    }
    dh_buf_free(&pub);
    return pk;
}

static int verifies(EVP_PKEY *pk, const uint8_t dg[32], const dh_buf *sig)
{
    int ok = 0;
    if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
        ok = ctx != NULL && EVP_PKEY_verify_init(ctx) > 0 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0 &&
             EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0 &&
             EVP_PKEY_verify(ctx, sig->data, sig->len, dg, 32) == 1;
        EVP_PKEY_CTX_free(ctx);
    } else {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        ok = m != NULL && EVP_DigestVerifyInit(m, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(m, sig->data, sig->len, dg, 32) == 1;
        EVP_MD_CTX_free(m);
    }
    return ok;
}

/* One signature: DH_OK only if it also verifies; the message in e otherwise. */
static int sign_once(hsm *h, hsm_key *k, EVP_PKEY *pk, unsigned n, dh_err *e)
{
    uint8_t dg[32];
    char text[64];
    dh_buf sig = {0};
    snprintf(text, sizeof text, "message %u", n);
    SHA256((const unsigned char *)text, strlen(text), dg);
    int rc = hsm_sign_digest(h, k, dg, &sig, e);
    if (rc == DH_OK && !verifies(pk, dg, &sig))
        rc = dh_err_set(e, DH_ECRYPTO, "signature %u does not verify", n);
    if (rc != DH_OK && sig.len != 0)
        rc = dh_err_set(e, DH_EINVAL, "a failed signature left %zu bytes", sig.len);
    dh_buf_free(&sig);
    return rc;
}

static int signs(hsm *h, hsm_key *k, EVP_PKEY *pk, unsigned n)
{
    dh_err e = {0};
    int rc = sign_once(h, k, pk, n, &e);
    if (rc != DH_OK)
        fprintf(stderr, "sign %u: %s\n", n, e.msg);
    return rc == DH_OK;
}

struct fixture {
    hsm *h;
    hsm_key *rsa, *ed;
    EVP_PKEY *rsa_pub, *ed_pub;
};

static int setup(struct fixture *f, int via_shim)
{
    memset(f, 0, sizeof *f);
    f->h = open_token(via_shim);
    f->rsa = f->h ? gen_key(f->h, HSM_KEY_RSA) : NULL;
    f->ed = f->h ? gen_key(f->h, HSM_KEY_ED25519) : NULL;
    f->rsa_pub = f->rsa ? pub_of(f->h, f->rsa) : NULL;
    f->ed_pub = f->ed ? pub_of(f->h, f->ed) : NULL;
    return f->rsa_pub != NULL && f->ed_pub != NULL;
}

static void teardown(struct fixture *f)
{
    EVP_PKEY_free(f->rsa_pub);
    EVP_PKEY_free(f->ed_pub);
    hsm_key_free(f->rsa);
    hsm_key_free(f->ed);
    hsm_close(f->h);
}

/* Sessions closed under us, then a logout: the next signature just works,
 * with no re-initialisation. */
static void test_closeall_logout(void)
{
    struct fixture f;
    if (setup(&f, 1)) {
        CHECK(signs(f.h, f.rsa, f.rsa_pub, 1));
        inject("closeall");
        CHECK(signs(f.h, f.rsa, f.rsa_pub, 2));
        CHECK(fault_done("closeall"));
        CHECK(signs(f.h, f.ed, f.ed_pub, 3));
        inject("logout");
        CHECK(signs(f.h, f.ed, f.ed_pub, 4));
        CHECK(fault_done("logout"));
        CHECK(signs(f.h, f.rsa, f.rsa_pub, 5));
        hsm_health_info hi;
        hsm_health(f.h, &hi);
        CHECK_EQ_INT(hi.usable, 1);
        CHECK_EQ_INT(hi.recoveries, 0);
    }
    teardown(&f);
}

/* A failure while the token is down: DH_ETOKEN naming ckr, nothing signed. */
static void check_down(hsm *h, hsm_key *k, EVP_PKEY *pk, const char *ckr, unsigned attempts)
{
    dh_err e = {0};
    CHECK_EQ_INT(sign_once(h, k, pk, 100 + attempts, &e), DH_ETOKEN);
    fprintf(stderr, "message: %s\n", e.msg);
    CHECK(strstr(e.msg, ckr) != NULL);
    CHECK(strstr(e.msg, "unavailable") != NULL);
    CHECK(strstr(e.msg, "next attempt in") != NULL);
    hsm_health_info hi;
    hsm_health(h, &hi);
    CHECK_EQ_INT(hi.usable, 0);
    CHECK_STR(hsm_ckr_name(hi.ckr), ckr);
    CHECK_EQ_INT(hi.attempts, attempts);
    CHECK(hi.since > 0);
}

/* Waits out the backoff the hsm reports, plus a margin. */
static void wait_backoff(hsm *h)
{
    hsm_health_info hi;
    hsm_health(h, &hi);
    sleep_ms(hi.next_attempt_ms + 20);
}

/* The token reported gone by every call: fail fast with the CKR_ name,
 * at most one attempt per interval (100 ms, then 200 ms), and signing
 * resumes by itself once it is back, with the key handles found again. */
static void removed_case(const char *file, const char *ckr)
{
    struct fixture f;
    if (!setup(&f, 1))
        goto out;
    CHECK(signs(f.h, f.rsa, f.rsa_pub, 1));
    inject(file);
    check_down(f.h, f.rsa, f.rsa_pub, ckr, 1); /* the loss, and one attempt at once */
    hsm_health_info hi;
    hsm_health(f.h, &hi);
    CHECK(hi.next_attempt_ms > 0 && hi.next_attempt_ms <= 100);
    check_down(f.h, f.ed, f.ed_pub, ckr, 1); /* within the interval: no attempt */
    wait_backoff(f.h);
    check_down(f.h, f.rsa, f.rsa_pub, ckr, 2);
    hsm_health(f.h, &hi);
    CHECK(hi.next_attempt_ms > 0 && hi.next_attempt_ms <= 200); /* 200 ms from the attempt */
    clear(file);
    check_down(f.h, f.rsa, f.rsa_pub, ckr, 2); /* back, but the interval holds */
    wait_backoff(f.h);
    CHECK(signs(f.h, f.rsa, f.rsa_pub, 2));
    CHECK(signs(f.h, f.ed, f.ed_pub, 3));
    hsm_health(f.h, &hi);
    CHECK_EQ_INT(hi.usable, 1);
    CHECK_EQ_INT(hi.recoveries, 1);
    CHECK_EQ_INT(hi.ckr, 0);
out:
    teardown(&f);
}

static void test_removed(void)
{
    removed_case("removed", "CKR_DEVICE_REMOVED");
}

static void test_notpresent(void)
{
    removed_case("notpresent", "CKR_TOKEN_NOT_PRESENT");
}

/* With no traffic, hsm_probe notices the loss and brings the token back. */
static void test_probe(void)
{
    struct fixture f;
    dh_err e = {0};
    hsm_health_info hi;
    if (!setup(&f, 1))
        goto out;
    CHECK_OK(hsm_probe(f.h, 0, &e));
    inject("logout");
    CHECK_OK(hsm_probe(f.h, 0, &e)); /* logs in again */
    CHECK(fault_done("logout"));
    inject("removed");
    CHECK_OK(hsm_probe(f.h, 60000, &e)); /* an operation just worked: not asked */
    CHECK_EQ_INT(hsm_probe(f.h, 0, &e), DH_ETOKEN);
    CHECK(strstr(e.msg, "CKR_DEVICE_REMOVED") != NULL);
    hsm_health(f.h, &hi);
    CHECK_EQ_INT(hi.usable, 0);
    clear("removed");
    wait_backoff(f.h);
    CHECK_OK(hsm_probe(f.h, 0, &e));
    hsm_health(f.h, &hi);
    CHECK_EQ_INT(hi.usable, 1);
    CHECK(signs(f.h, f.ed, f.ed_pub, 1));
out:
    teardown(&f);
}

static void write_pin(const char *pin)
{
    FILE *f = fopen(check_env("DKIMHSM_TEST_PIN_FILE"), "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fprintf(f, "%s\n", pin);
        fclose(f);
    }
}

/* Logged out while the PIN file is wrong: the new login is refused, and it
 * is retried with backoff like a lost token, not once per message; with the
 * right PIN back, signing resumes. */
/* A refused PIN is not tried again until the PIN file changes (a real HSM
 * would lock it), and then at once. */
static void check_pin_refused(hsm *h, hsm_key *k, EVP_PKEY *pk, unsigned n)
{
    dh_err e = {0};
    CHECK_EQ_INT(sign_once(h, k, pk, n, &e), DH_ELOGIN);
    fprintf(stderr, "message: %s\n", e.msg);
    CHECK(strstr(e.msg, "CKR_PIN_INCORRECT") != NULL);
    CHECK(strstr(e.msg, "not trying again until") != NULL);
}

static void test_pin_changed(void)
{
    struct fixture f;
    hsm_health_info hi;
    if (!setup(&f, 1))
        goto out;
    CHECK(signs(f.h, f.rsa, f.rsa_pub, 1));
    write_pin("9999");
    inject("logout");
    check_pin_refused(f.h, f.rsa, f.rsa_pub, 101);
    CHECK(fault_done("logout"));
    hsm_health(f.h, &hi);
    unsigned attempts = hi.attempts;
    sleep_ms(400); /* past every backoff interval that would apply */
    check_pin_refused(f.h, f.ed, f.ed_pub, 102);
    hsm_health(f.h, &hi);
    CHECK_EQ_INT(hi.usable, 0);
    CHECK_EQ_INT(hi.attempts, attempts); /* the same wrong PIN was not tried again */
    write_pin(check_env("DKIMHSM_TEST_PIN"));
    CHECK(signs(f.h, f.ed, f.ed_pub, 2)); /* a new PIN file: tried at once */
    CHECK(signs(f.h, f.rsa, f.rsa_pub, 3));
out:
    teardown(&f);
}

/* SoftHSM's own token directory (tokens/<uuid>) moved out of its tokendir
 * and back: until C_Finalize + C_Initialize nothing works again. */
static int token_dir(char *out, size_t cap)
{
    DIR *d = opendir(test_path("tokens"));
    struct dirent *de;
    int found = 0;
    while (d != NULL && !found && (de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.') {
            snprintf(out, cap, "%.3000s/%.255s", test_path("tokens"), de->d_name);
            found = 1;
        }
    }
    if (d != NULL)
        closedir(d);
    return found;
}

static void moved_case(int whole)
{
    struct fixture f;
    char dir[4200], away[4200];
    if (!setup(&f, 0))
        goto out;
    if (whole)
        snprintf(dir, sizeof dir, "%s", test_path("tokens"));
    else
        CHECK(token_dir(dir, sizeof dir));
    snprintf(away, sizeof away, "%s", test_path("away"));
    CHECK(signs(f.h, f.rsa, f.rsa_pub, 1));
    CHECK_EQ_INT(rename(dir, away), 0);
    /* Per token: the module comes back without the token. The whole
     * tokendir: SoftHSM's C_Initialize itself fails. */
    check_down(f.h, f.rsa, f.rsa_pub, whole ? "CKR_GENERAL_ERROR" : "CKR_TOKEN_NOT_PRESENT", 1);
    CHECK_EQ_INT(rename(away, dir), 0);
    wait_backoff(f.h);
    CHECK(signs(f.h, f.rsa, f.rsa_pub, 2));
    CHECK(signs(f.h, f.ed, f.ed_pub, 3));
out:
    teardown(&f);
}

static void test_moved(void)
{
    moved_case(0);
}

static void test_moved_all(void)
{
    moved_case(1);
}

/* ---- many threads signing while faults come and go ---- */

enum { STORM_THREADS = 4 };

struct storm {
    struct fixture *f;
    int idx;
    volatile int *stop;
    unsigned ok, tempfail, wrong;
    char err[480];
};

static void *storm_worker(void *arg)
{
    struct storm *s = arg;
    for (unsigned n = 0; !*s->stop; n++) {
        dh_err e = {0};
        int ed = (n + (unsigned)s->idx) % 2;
        int rc = sign_once(s->f->h, ed ? s->f->ed : s->f->rsa, ed ? s->f->ed_pub : s->f->rsa_pub,
                           n * STORM_THREADS + (unsigned)s->idx, &e);
        if (rc == DH_OK) {
            s->ok++;
        } else if (rc == DH_ETOKEN && strstr(e.msg, "CKR_") != NULL) {
            s->tempfail++;
        } else {
            s->wrong++;
            snprintf(s->err, sizeof s->err, "%d %.400s", rc, e.msg);
        }
    }
    return NULL;
}

/* Every signature is right or a DH_ETOKEN naming a CKR_; afterwards
 * signing works again. */
static void test_storm(void)
{
    struct fixture f;
    struct storm s[STORM_THREADS];
    pthread_t t[STORM_THREADS];
    volatile int stop = 0;
    if (!setup(&f, 1))
        goto out;
    for (int i = 0; i < STORM_THREADS; i++) {
        s[i] = (struct storm){.f = &f, .idx = i, .stop = &stop};
        CHECK_EQ_INT(pthread_create(&t[i], NULL, storm_worker, &s[i]), 0);
    }
    static const char *const faults[] = {"closeall", "logout", "removed", "notpresent"};
    for (int i = 0; i < 4; i++) {
        sleep_ms(200);
        inject(faults[i]);
        sleep_ms(300);
        if (i >= 2)
            clear(faults[i]);
    }
    sleep_ms(1500); /* the backoff is at most 800 ms by now */
    stop = 1;
    unsigned ok = 0, tf = 0;
    for (int i = 0; i < STORM_THREADS; i++) {
        pthread_join(t[i], NULL);
        ok += s[i].ok;
        tf += s[i].tempfail;
        if (s[i].wrong)
            check_fail(__FILE__, __LINE__, "thread %d: %u wrong: %s", i, s[i].wrong, s[i].err);
    }
    printf("storm: %u signed, %u failed with the token down\n", ok, tf);
    CHECK(tf > 0);
    CHECK(fault_done("closeall") && fault_done("logout"));
    for (unsigned n = 0; n < 8; n++)
        CHECK(signs(f.h, n % 2 ? f.ed : f.rsa, n % 2 ? f.ed_pub : f.rsa_pub, 1000 + n));
out:
    teardown(&f);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"closeall_logout", test_closeall_logout},
        {"removed", test_removed},
        {"notpresent", test_notpresent},
        {"probe", test_probe},
        {"pin_changed", test_pin_changed},
        {"moved", test_moved},
        {"moved_all", test_moved_all},
        {"storm", test_storm},
        {NULL, NULL},
    };
    return check_run(argc, argv, cases);
}
