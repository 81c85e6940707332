/*
 * test_hsm.c - the token layer against a fresh SoftHSM token per process
 * (tests/lib/with-token.sh). Each case is its own ctest, so each gets its
 * own token. Raw PKCS#11 calls the hsm API does not offer (reading a
 * sensitive attribute, wrapping, closing every session) are made here by
 * loading the module with p11-kit ourselves.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "common/buf.h"
#include "common/err.h"
#include "hsm/hsm.h"
#include "tests/lib/check.h"

/* ---- environment from with-token.sh ---- */

static hsm_config test_config(void)
{
    hsm_config c = {
        .module = check_env("DKIMHSM_TEST_MODULE"),
        .token_uri = check_env("DKIMHSM_TEST_TOKEN"),
        .pin_file = check_env("DKIMHSM_TEST_PIN_FILE"),
        .pool_size = 4,
    };
    return c;
}

static hsm *open_token(void)
{
    hsm_config c = test_config();
    hsm *h = NULL;
    dh_err e = {0};
    int rc = hsm_open(&c, &h, &e);
    if (rc != DH_OK) {
        check_fail(__FILE__, __LINE__, "hsm_open: %d %s", rc, e.msg);
        return NULL;
    }
    return h;
}

static char *test_path(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", check_env("DKIMHSM_TEST_DIR"), name);
    return path;
}

static void digest_of(const char *text, uint8_t dg[32])
{
    SHA256((const unsigned char *)text, strlen(text), dg);
}

/* ---- OpenSSL side: verify and sign in software ---- */

static EVP_PKEY *pub_pkey(enum hsm_keytype t, const dh_buf *pub)
{
    if (t == HSM_KEY_ED25519)
        return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub->data, pub->len);
    const unsigned char *p = pub->data;
    return d2i_PUBKEY(NULL, &p, (long)pub->len);
}

/* RSA: PKCS#1 v1.5 with SHA-256 over the digest; Ed25519 over the 32 bytes. */
static int verify_sig(enum hsm_keytype t, const dh_buf *pub, const uint8_t dg[32],
                      const uint8_t *sig, size_t siglen)
{
    EVP_PKEY *pk = pub_pkey(t, pub);
    int ok = 0;
    if (pk != NULL && t == HSM_KEY_RSA) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
        ok = ctx != NULL && EVP_PKEY_verify_init(ctx) > 0 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0 &&
             EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0 &&
             EVP_PKEY_verify(ctx, sig, siglen, dg, 32) == 1;
        EVP_PKEY_CTX_free(ctx);
    } else if (pk != NULL) {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        ok = m != NULL && EVP_DigestVerifyInit(m, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(m, sig, siglen, dg, 32) == 1;
        EVP_MD_CTX_free(m);
    }
    EVP_PKEY_free(pk);
    return ok;
}

static int soft_sign(EVP_PKEY *pk, const uint8_t dg[32], uint8_t *out, size_t *outlen)
{
    int ok = 0;
    if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
        ok = ctx != NULL && EVP_PKEY_sign_init(ctx) > 0 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0 &&
             EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0 &&
             EVP_PKEY_sign(ctx, out, outlen, dg, 32) > 0;
        EVP_PKEY_CTX_free(ctx);
    } else {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        ok = m != NULL && EVP_DigestSignInit(m, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestSign(m, out, outlen, dg, 32) == 1;
        EVP_MD_CTX_free(m);
    }
    return ok;
}

static EVP_PKEY *load_pem(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return pk;
}

/* ---- raw PKCS#11 beside the hsm layer ---- */

struct raw {
    CK_FUNCTION_LIST *f;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s;
    int managed;
};

static int raw_find_slot(struct raw *r)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    if (r->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        return 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (r->f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
            p11_kit_space_strlen(ti.label, sizeof ti.label) == 4 &&
            memcmp(ti.label, "dkim", 4) == 0) {
            r->slot = slots[i];
            return 1;
        }
    }
    return 0;
}

/* managed: our own p11-kit instance with session, logged in. Unmanaged: the
 * module's own function list, the very one under the hsm layer's p11-kit
 * wrapper, so C_CloseAllSessions / C_Logout reach the hsm layer's sessions.
 * It is never initialized or finalized here: the hsm layer did that. */
static int raw_open(struct raw *r, int managed)
{
    memset(r, 0, sizeof *r);
    r->managed = managed;
    r->f = p11_kit_module_load(check_env("DKIMHSM_TEST_MODULE"),
                               managed ? 0 : P11_KIT_MODULE_UNMANAGED);
    if (r->f == NULL)
        return 0;
    if (managed && p11_kit_module_initialize(r->f) != CKR_OK)
        return 0;
    if (!raw_find_slot(r))
        return 0;
    if (!managed)
        return 1;
    if (r->f->C_OpenSession(r->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &r->s) !=
        CKR_OK)
        return 0;
    const char *pin = check_env("DKIMHSM_TEST_PIN");
    CK_RV rv = r->f->C_Login(r->s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    return rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN;
}

static void raw_close(struct raw *r)
{
    if (r->f == NULL)
        return;
    if (r->managed) {
        if (r->s != 0)
            r->f->C_CloseSession(r->s);
        p11_kit_module_finalize(r->f);
    }
    p11_kit_module_release(r->f);
    r->f = NULL;
}

static CK_OBJECT_HANDLE raw_find(struct raw *r, CK_OBJECT_CLASS cls, const uint8_t *id)
{
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, (void *)id, HSM_ID_LEN}};
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
    CK_ULONG n = 0;
    if (r->f->C_FindObjectsInit(r->s, t, 2) == CKR_OK) {
        r->f->C_FindObjects(r->s, &o, 1, &n);
        r->f->C_FindObjectsFinal(r->s);
    }
    return n == 1 ? o : CK_INVALID_HANDLE;
}

/* ---- shared steps ---- */

static hsm_key *gen_key(hsm *h, enum hsm_keytype t, unsigned bits, const char *label,
                        uint8_t id[HSM_ID_LEN])
{
    dh_err e = {0};
    hsm_key *k = NULL;
    int rc = hsm_generate(h, t, bits, label, id, &e);
    if (rc != DH_OK) {
        check_fail(__FILE__, __LINE__, "hsm_generate: %d %s", rc, e.msg);
        return NULL;
    }
    rc = hsm_key_open(h, id, HSM_ID_LEN, &k, &e);
    if (rc != DH_OK)
        check_fail(__FILE__, __LINE__, "hsm_key_open: %d %s", rc, e.msg);
    return k;
}

/* Signs one digest and checks the signature with OpenSSL. */
static int sign_verifies(hsm *h, hsm_key *k, const char *text)
{
    dh_buf pub = {0}, sig = {0};
    dh_err e = {0};
    uint8_t dg[32];
    digest_of(text, dg);
    int ok = hsm_key_public(h, k, &pub, &e) == DH_OK;
    if (!ok)
        fprintf(stderr, "hsm_key_public: %s\n", e.msg);
    if (ok && hsm_sign_digest(h, k, dg, &sig, &e) != DH_OK) {
        fprintf(stderr, "hsm_sign_digest: %s\n", e.msg);
        ok = 0;
    }
    ok = ok && verify_sig(hsm_key_type(k), &pub, dg, sig.data, sig.len);
    dh_buf_free(&pub);
    dh_buf_free(&sig);
    return ok;
}

/* ---- cases ---- */

static void test_generate_rsa(void)
{
    hsm *h = open_token();
    uint8_t id[HSM_ID_LEN];
    hsm_key *k = h ? gen_key(h, HSM_KEY_RSA, 0, "rsa-default", id) : NULL;
    if (k == NULL)
        goto out;
    CHECK_EQ_INT(hsm_key_type(k), HSM_KEY_RSA);
    CHECK_EQ_INT(hsm_key_bits(k), 2048);
    dh_buf pub = {0}, sig = {0};
    dh_err e = {0};
    CHECK_OK(hsm_key_public(h, k, &pub, &e));
    EVP_PKEY *pk = pub_pkey(HSM_KEY_RSA, &pub);
    CHECK(pk != NULL && EVP_PKEY_get_bits(pk) == 2048);
    EVP_PKEY_free(pk);
    uint8_t dg[32];
    digest_of("hello", dg);
    CHECK_OK(hsm_sign_digest(h, k, dg, &sig, &e));
    CHECK_EQ_INT(sig.len, 256);
    CHECK(verify_sig(HSM_KEY_RSA, &pub, dg, sig.data, sig.len));
    dg[0] ^= 1; /* and a wrong digest does not verify */
    CHECK(!verify_sig(HSM_KEY_RSA, &pub, dg, sig.data, sig.len));
    dh_buf_free(&pub);
    dh_buf_free(&sig);
out:
    hsm_key_free(k);
    hsm_close(h);
}

static void test_generate_ed25519(void)
{
    hsm *h = open_token();
    uint8_t id[HSM_ID_LEN];
    hsm_key *k = h ? gen_key(h, HSM_KEY_ED25519, 0, "ed", id) : NULL;
    if (k == NULL)
        goto out;
    CHECK_EQ_INT(hsm_key_type(k), HSM_KEY_ED25519);
    CHECK_EQ_INT(hsm_key_bits(k), 256);
    dh_buf pub = {0}, sig = {0};
    dh_err e = {0};
    CHECK_OK(hsm_key_public(h, k, &pub, &e));
    CHECK_EQ_INT(pub.len, 32);
    uint8_t dg[32];
    digest_of("hello", dg);
    CHECK_OK(hsm_sign_digest(h, k, dg, &sig, &e));
    CHECK_EQ_INT(sig.len, 64);
    CHECK(verify_sig(HSM_KEY_ED25519, &pub, dg, sig.data, sig.len));
    /* Ed25519 is deterministic: the same digest gives the same signature. */
    dh_buf sig2 = {0};
    CHECK_OK(hsm_sign_digest(h, k, dg, &sig2, &e));
    CHECK_MEM(sig2.data, sig2.len, sig.data, sig.len);
    dh_buf_free(&pub);
    dh_buf_free(&sig);
    dh_buf_free(&sig2);
out:
    hsm_key_free(k);
    hsm_close(h);
}

static void test_rsa_sizes(void)
{
    hsm *h = open_token();
    if (h == NULL)
        return;
    uint8_t id[HSM_ID_LEN] = {0}, zero[HSM_ID_LEN] = {0};
    dh_err e = {0};
    CHECK_EQ_INT(hsm_generate(h, HSM_KEY_RSA, 512, "small", id, &e), DH_EINVAL);
    CHECK(strstr(e.msg, "RFC 8301") != NULL);
    CHECK_MEM(id, HSM_ID_LEN, zero, HSM_ID_LEN); /* out-param untouched */
    CHECK_EQ_INT(hsm_generate(h, HSM_KEY_RSA, 1023, "small", id, &e), DH_EINVAL);
    CHECK(hsm_rsa_bits_warning(2048) == NULL);
    CHECK(hsm_rsa_bits_warning(3072) == NULL);
    CHECK(hsm_rsa_bits_warning(4096) == NULL);
    CHECK(hsm_rsa_bits_warning(1024) != NULL);
    CHECK(hsm_rsa_bits_warning(8192) != NULL);
    hsm_key *k = gen_key(h, HSM_KEY_RSA, 3072, "rsa3072", id);
    if (k != NULL) {
        CHECK_EQ_INT(hsm_key_bits(k), 3072);
        CHECK(sign_verifies(h, k, "3072"));
    }
    hsm_key_free(k);
    hsm_close(h);
}

static void check_generated_custody(hsm *h, hsm_key *k)
{
    hsm_custody c = {0};
    dh_err e = {0};
    CHECK_OK(hsm_key_custody(h, k, &c, &e));
    CHECK_EQ_INT(c.sensitive, 1);
    CHECK_EQ_INT(c.extractable, 0);
    CHECK_EQ_INT(c.always_sensitive, 1);
    CHECK_EQ_INT(c.never_extractable, 1);
    CHECK_EQ_INT(c.local, 1);
}

/* What a thief with the PIN could try on our key, by raw PKCS#11. */
static void check_raw_custody(struct raw *r, const uint8_t *id, CK_ATTRIBUTE_TYPE secret)
{
    CK_OBJECT_HANDLE o = raw_find(r, CKO_PRIVATE_KEY, id);
    CHECK(o != CK_INVALID_HANDLE);
    uint8_t buf[1024];
    CK_ATTRIBUTE a = {secret, buf, sizeof buf};
    CHECK_EQ_INT(r->f->C_GetAttributeValue(r->s, o, &a, 1), CKR_ATTRIBUTE_SENSITIVE);
    CK_BBOOL ext = CK_TRUE, never = CK_FALSE;
    CK_ATTRIBUTE b[] = {{CKA_EXTRACTABLE, &ext, 1}, {CKA_NEVER_EXTRACTABLE, &never, 1}};
    CHECK_EQ_INT(r->f->C_GetAttributeValue(r->s, o, b, 2), CKR_OK);
    CHECK_EQ_INT(ext, CK_FALSE);
    CHECK_EQ_INT(never, CK_TRUE);
    /* Wrap it under an AES key of our own: must be refused. */
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0}, wrap = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE at[] = {
        {CKA_VALUE_LEN, &len, sizeof len}, {CKA_WRAP, &yes, 1}, {CKA_TOKEN, &no, 1}};
    CK_OBJECT_HANDLE aes;
    CHECK_EQ_INT(r->f->C_GenerateKey(r->s, &gen, at, 3, &aes), CKR_OK);
    CK_ULONG wlen = sizeof buf;
    CK_RV rv = r->f->C_WrapKey(r->s, &wrap, aes, o, buf, &wlen);
    CHECK(rv != CKR_OK);
    CHECK_EQ_INT(rv, CKR_KEY_UNEXTRACTABLE);
    /* Nor may it be made extractable afterwards. */
    CK_ATTRIBUTE weaken = {CKA_EXTRACTABLE, &yes, 1};
    CHECK(r->f->C_SetAttributeValue(r->s, o, &weaken, 1) != CKR_OK);
    CK_ATTRIBUTE unsens = {CKA_SENSITIVE, &no, 1};
    CHECK(r->f->C_SetAttributeValue(r->s, o, &unsens, 1) != CKR_OK);
}

static void test_custody(void)
{
    hsm *h = open_token();
    uint8_t rid[HSM_ID_LEN], eid[HSM_ID_LEN];
    hsm_key *rk = h ? gen_key(h, HSM_KEY_RSA, 2048, "rsa", rid) : NULL;
    hsm_key *ek = h ? gen_key(h, HSM_KEY_ED25519, 0, "ed", eid) : NULL;
    struct raw r;
    if (rk == NULL || ek == NULL)
        goto out;
    check_generated_custody(h, rk);
    check_generated_custody(h, ek);
    CHECK(raw_open(&r, 1));
    if (r.s != 0) {
        check_raw_custody(&r, rid, CKA_PRIVATE_EXPONENT);
        check_raw_custody(&r, rid, CKA_PRIME_1);
        check_raw_custody(&r, eid, CKA_VALUE);
    }
    raw_close(&r);
    /* Still signs after someone else's session came and went. */
    CHECK(sign_verifies(h, rk, "after raw"));
out:
    hsm_key_free(rk);
    hsm_key_free(ek);
    hsm_close(h);
}

static int write_pem(EVP_PKEY *pk, const char *path, int traditional, int encrypt)
{
    BIO *b = BIO_new_file(path, "w");
    if (b == NULL)
        return 0;
    int ok;
    if (encrypt)
        ok = PEM_write_bio_PKCS8PrivateKey(b, pk, EVP_aes_128_cbc(), "secret", 6, NULL, NULL);
    else if (traditional) /* "BEGIN RSA PRIVATE KEY": PKCS#1 */
        ok = PEM_write_bio_PrivateKey_traditional(b, pk, NULL, NULL, 0, NULL, NULL);
    else
        ok = PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
    BIO_free(b);
    return ok;
}

/* Imports path and checks: type, size, custody, public key, and a signature
 * identical to OpenSSL's with the same key (both schemes are deterministic). */
static void import_and_compare(hsm *h, const char *path, enum hsm_keytype want, unsigned bits)
{
    uint8_t id[HSM_ID_LEN];
    enum hsm_keytype t = 99;
    unsigned b = 0;
    dh_err e = {0};
    hsm_key *k = NULL;
    int rc = hsm_import_pem(h, path, "imported", id, &t, &b, &e);
    if (rc != DH_OK) {
        check_fail(__FILE__, __LINE__, "import %s: %d %s", path, rc, e.msg);
        return;
    }
    CHECK_EQ_INT(t, want);
    CHECK_EQ_INT(b, bits);
    CHECK_OK(hsm_key_open(h, id, HSM_ID_LEN, &k, &e));
    if (k == NULL)
        return;
    hsm_custody c = {0};
    CHECK_OK(hsm_key_custody(h, k, &c, &e));
    CHECK(c.sensitive == 1 && c.extractable == 0 && c.local == 0);
    uint8_t dg[32], soft[1024];
    size_t softlen = sizeof soft;
    digest_of(path, dg);
    dh_buf sig = {0}, pub = {0};
    CHECK_OK(hsm_sign_digest(h, k, dg, &sig, &e));
    EVP_PKEY *pk = load_pem(path);
    CHECK(pk != NULL && soft_sign(pk, dg, soft, &softlen));
    CHECK_MEM(sig.data, sig.len, soft, softlen);
    CHECK_OK(hsm_key_public(h, k, &pub, &e));
    CHECK(verify_sig(t, &pub, dg, sig.data, sig.len));
    EVP_PKEY_free(pk);
    dh_buf_free(&sig);
    dh_buf_free(&pub);
    hsm_key_free(k);
}

static void test_import(void)
{
    hsm *h = open_token();
    if (h == NULL)
        return;
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    CHECK(rsa != NULL && ed != NULL);
    CHECK(write_pem(rsa, test_path("rsa-pkcs1.pem"), 1, 0));
    CHECK(write_pem(rsa, test_path("rsa-pkcs8.pem"), 0, 0));
    CHECK(write_pem(ed, test_path("ed25519.pem"), 0, 0));
    import_and_compare(h, test_path("rsa-pkcs1.pem"), HSM_KEY_RSA, 2048);
    import_and_compare(h, test_path("rsa-pkcs8.pem"), HSM_KEY_RSA, 2048);
    import_and_compare(h, test_path("ed25519.pem"), HSM_KEY_ED25519, 256);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
    hsm_close(h);
}

static void expect_import_refused(hsm *h, EVP_PKEY *pk, int encrypt, int code, const char *text)
{
    uint8_t id[HSM_ID_LEN];
    enum hsm_keytype t;
    unsigned b;
    dh_err e = {0};
    CHECK(pk != NULL && write_pem(pk, test_path("bad.pem"), 0, encrypt));
    CHECK_EQ_INT(hsm_import_pem(h, test_path("bad.pem"), "bad", id, &t, &b, &e), code);
    if (strstr(e.msg, text) == NULL)
        check_fail(__FILE__, __LINE__, "message \"%s\" lacks \"%s\"", e.msg, text);
}

static void test_import_refused(void)
{
    hsm *h = open_token();
    if (h == NULL)
        return;
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    expect_import_refused(h, small, 0, DH_EINVAL, "RFC 8301");
    expect_import_refused(h, ec, 0, DH_EINVAL, "neither RSA nor Ed25519");
    expect_import_refused(h, ed, 1, DH_ECRYPTO, "encrypted");
    uint8_t id[HSM_ID_LEN];
    enum hsm_keytype t;
    unsigned b;
    dh_err e = {0};
    CHECK_EQ_INT(hsm_import_pem(h, test_path("absent.pem"), "x", id, &t, &b, &e), DH_ENOTFOUND);
    EVP_PKEY_free(small);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ed);
    hsm_close(h);
}

/* RFC 8463 Appendix A keys (PKCS#1 RSA-1024 and PKCS#8 Ed25519) from ../shared. */
static void test_import_rfc8463(void)
{
    const char *dir = getenv("DKIMHSM_SHARED_TESTDATA");
    char rsa[4096], ed[4096];
    snprintf(rsa, sizeof rsa, "%s/rfc8463/rsa.pem", dir ? dir : "/nonexistent");
    snprintf(ed, sizeof ed, "%s/rfc8463/ed25519.pem", dir ? dir : "/nonexistent");
    if (!check_exists(rsa) || !check_exists(ed)) {
        printf("skip: %s absent (no ../shared/testdata)\n", rsa);
        exit(CHECK_SKIP);
    }
    hsm *h = open_token();
    if (h == NULL)
        return;
    import_and_compare(h, rsa, HSM_KEY_RSA, 1024);
    import_and_compare(h, ed, HSM_KEY_ED25519, 256);
    hsm_close(h);
}

static void test_wrong_pin(void)
{
    hsm_config c = test_config();
    c.pin_file = test_path("wrong-pin");
    FILE *f = fopen(c.pin_file, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fputs("9999\n", f);
    fclose(f);
    chmod(c.pin_file, 0600);
    hsm *h = NULL;
    dh_err e = {0};
    CHECK_EQ_INT(hsm_open(&c, &h, &e), DH_ELOGIN);
    CHECK(h == NULL);
    CHECK(strstr(e.msg, "CKR_PIN_INCORRECT") != NULL);
    fprintf(stderr, "message: %s\n", e.msg);
    /* and the right PIN still works afterwards */
    h = open_token();
    CHECK(h != NULL);
    hsm_close(h);
}

static void test_missing_token(void)
{
    hsm_config c = test_config();
    c.token_uri = "pkcs11:token=nosuch";
    hsm *h = NULL;
    dh_err e = {0};
    CHECK_EQ_INT(hsm_open(&c, &h, &e), DH_ENOTFOUND);
    CHECK(h == NULL);
    CHECK(strstr(e.msg, "pkcs11:token=nosuch") != NULL);
    CHECK(strstr(e.msg, "'dkim'") != NULL);
    fprintf(stderr, "message: %s\n", e.msg);
    c.token_uri = "pkcs11:token=dkim;frobnicate=1";
    CHECK_EQ_INT(hsm_open(&c, &h, &e), DH_EINVAL);
    c.token_uri = "https://example.com/";
    CHECK_EQ_INT(hsm_open(&c, &h, &e), DH_EINVAL);
    c = test_config();
    c.module = test_path("no-such-module.so");
    CHECK_EQ_INT(hsm_open(&c, &h, &e), DH_ENOTFOUND);
    fprintf(stderr, "message: %s\n", e.msg);
    c = test_config();
    c.token_uri = "pkcs11:"; /* matches every initialized token: just ours */
    CHECK_OK(hsm_open(&c, &h, &e));
    hsm_close(h);
}

static void test_pin_mode(void)
{
    hsm_config c = test_config();
    CHECK_EQ_INT(chmod(c.pin_file, 0644), 0);
    hsm *h = NULL;
    dh_err e = {0};
    CHECK_EQ_INT(hsm_open(&c, &h, &e), DH_EPERM);
    CHECK(h == NULL);
    CHECK(strstr(e.msg, "0644") != NULL);
    fprintf(stderr, "message: %s\n", e.msg);
    chmod(c.pin_file, 0600);
    c.pin_file = test_path("no-such-pin");
    CHECK_EQ_INT(hsm_open(&c, &h, &e), DH_ENOTFOUND);
}

struct worker {
    hsm *h;
    hsm_key *k;
    int n, idx, failed;
    dh_buf *sigs;
    char err[512];
};

static void *sign_worker(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->n; i++) {
        char text[64];
        uint8_t dg[32];
        dh_err e = {0};
        snprintf(text, sizeof text, "thread %d message %d", w->idx, i);
        digest_of(text, dg);
        if (hsm_sign_digest(w->h, w->k, dg, &w->sigs[i], &e) != DH_OK) {
            w->failed++;
            snprintf(w->err, sizeof w->err, "%s", e.msg);
        }
    }
    return NULL;
}

enum { THREADS = 8, PER_THREAD = 200 };

/* THREADS threads sign PER_THREAD digests each through a pool of 4 sessions;
 * every signature is verified afterwards. Returns signatures per second. */
static double sign_storm(hsm *h, hsm_key *k)
{
    static struct worker w[THREADS];
    pthread_t t[THREADS];
    struct timespec t0, t1;
    dh_buf pub = {0};
    dh_err e = {0};
    CHECK_OK(hsm_key_public(h, k, &pub, &e));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.h = h, .k = k, .n = PER_THREAD, .idx = i};
        w[i].sigs = calloc(PER_THREAD, sizeof(dh_buf));
        CHECK_EQ_INT(pthread_create(&t[i], NULL, sign_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        if (w[i].failed)
            check_fail(__FILE__, __LINE__, "thread %d: %d failed: %s", i, w[i].failed, w[i].err);
        for (int j = 0; j < PER_THREAD; j++) {
            char text[64];
            uint8_t dg[32];
            snprintf(text, sizeof text, "thread %d message %d", i, j);
            digest_of(text, dg);
            bad += !verify_sig(hsm_key_type(k), &pub, dg, w[i].sigs[j].data, w[i].sigs[j].len);
            dh_buf_free(&w[i].sigs[j]);
        }
        free(w[i].sigs);
    }
    CHECK_EQ_INT(bad, 0);
    dh_buf_free(&pub);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return THREADS * PER_THREAD / secs;
}

/* The Ed25519 key is imported, not generated: SoftHSM 2.6.1 leaks 37 bytes
 * in every C_SignInit with a key it generated itself (see lsan.supp), and
 * following that leak needs ASan's slow unwinder, which would swamp the timing. */
static hsm_key *imported_ed25519(hsm *h)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    uint8_t id[HSM_ID_LEN];
    enum hsm_keytype t;
    unsigned bits;
    dh_err e = {0};
    hsm_key *k = NULL;
    CHECK(pk != NULL && write_pem(pk, test_path("storm.pem"), 0, 0));
    EVP_PKEY_free(pk);
    CHECK_OK(hsm_import_pem(h, test_path("storm.pem"), "storm", id, &t, &bits, &e));
    CHECK_OK(hsm_key_open(h, id, HSM_ID_LEN, &k, &e));
    return k;
}

static void test_threads(void)
{
    hsm *h = open_token();
    uint8_t rid[HSM_ID_LEN];
    hsm_key *rk = h ? gen_key(h, HSM_KEY_RSA, 2048, "rsa", rid) : NULL;
    hsm_key *ek = h ? imported_ed25519(h) : NULL;
    if (rk != NULL && ek != NULL) {
        double r = sign_storm(h, rk), d = sign_storm(h, ek);
        printf("%d threads x %d signatures, pool 4: RSA-2048 %.0f/s, Ed25519 %.0f/s\n", THREADS,
               PER_THREAD, r, d);
    }
    hsm_key_free(rk);
    hsm_key_free(ek);
    hsm_close(h);
}

/* Another party (a token reset, an admin tool) closes every session of the
 * process, or logs it out; the next signature must still work. */
static void test_session_loss(void)
{
    hsm *h = open_token();
    uint8_t id[HSM_ID_LEN], eid[HSM_ID_LEN];
    hsm_key *k = h ? gen_key(h, HSM_KEY_RSA, 2048, "rsa", id) : NULL;
    hsm_key *ek = h ? gen_key(h, HSM_KEY_ED25519, 0, "ed", eid) : NULL;
    struct raw r;
    if (k == NULL || ek == NULL || !raw_open(&r, 0)) {
        CHECK(!"setup");
        goto out;
    }
    CHECK(sign_verifies(h, k, "before"));
    CHECK_EQ_INT(r.f->C_CloseAllSessions(r.slot), CKR_OK);
    CHECK(sign_verifies(h, k, "after C_CloseAllSessions"));
    CHECK(sign_verifies(h, ek, "after C_CloseAllSessions, ed25519"));
    /* Logout through a session of our own on the raw module: login is per process. */
    CK_SESSION_HANDLE s;
    CHECK_EQ_INT(r.f->C_OpenSession(r.slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
    CHECK_EQ_INT(r.f->C_Logout(s), CKR_OK);
    CHECK_EQ_INT(r.f->C_CloseSession(s), CKR_OK);
    CHECK(sign_verifies(h, k, "after C_Logout"));
    hsm_custody c = {0};
    dh_err e = {0};
    CHECK_EQ_INT(r.f->C_CloseAllSessions(r.slot), CKR_OK);
    CHECK_OK(hsm_key_custody(h, ek, &c, &e));
    CHECK_EQ_INT(c.sensitive, 1);
    raw_close(&r);
out:
    hsm_key_free(k);
    hsm_key_free(ek);
    hsm_close(h);
}

/* A pool warmed to several sessions, all of which die at once: the retry must
 * get a fresh session, not the next dead idle one. */
static void test_session_loss_warm_pool(void)
{
    hsm *h = open_token();
    uint8_t id[HSM_ID_LEN];
    hsm_key *k = h ? gen_key(h, HSM_KEY_RSA, 2048, "rsa", id) : NULL;
    struct raw r;
    if (k == NULL || !raw_open(&r, 0)) {
        CHECK(!"setup");
        goto out;
    }
    (void)sign_storm(h, k); /* THREADS > pool size: every pooled session gets opened */
    CHECK_EQ_INT(r.f->C_CloseAllSessions(r.slot), CKR_OK);
    CHECK(sign_verifies(h, k, "first signature after every pooled session died"));
    CHECK(sign_verifies(h, k, "second signature after every pooled session died"));
    raw_close(&r);
out:
    hsm_key_free(k);
    hsm_close(h);
}

static void test_destroy(void)
{
    hsm *h = open_token();
    uint8_t id[HSM_ID_LEN], other[HSM_ID_LEN];
    hsm_key *k = h ? gen_key(h, HSM_KEY_ED25519, 0, "doomed", id) : NULL;
    hsm_key *keep = h ? gen_key(h, HSM_KEY_ED25519, 0, "kept", other) : NULL;
    dh_err e = {0};
    hsm_key *k2 = NULL;
    if (k == NULL || keep == NULL)
        goto out;
    CHECK_OK(hsm_key_destroy(h, id, HSM_ID_LEN, &e));
    CHECK_EQ_INT(hsm_key_open(h, id, HSM_ID_LEN, &k2, &e), DH_ENOTFOUND);
    CHECK(k2 == NULL);
    CHECK_EQ_INT(hsm_key_destroy(h, id, HSM_ID_LEN, &e), DH_ENOTFOUND);
    /* A handle kept across the deletion fails cleanly. */
    uint8_t dg[32] = {0};
    dh_buf sig = {0};
    CHECK(hsm_sign_digest(h, k, dg, &sig, &e) != DH_OK);
    CHECK_EQ_INT(sig.len, 0);
    fprintf(stderr, "message: %s\n", e.msg);
    CHECK(sign_verifies(h, keep, "the other key is untouched"));
    dh_buf_free(&sig);
out:
    hsm_key_free(k);
    hsm_key_free(keep);
    hsm_close(h);
}

static void test_uri(void)
{
    hsm *h = open_token();
    uint8_t id[HSM_ID_LEN];
    hsm_key *k = h ? gen_key(h, HSM_KEY_ED25519, 0, "uri", id) : NULL;
    if (k == NULL)
        goto out;
    dh_buf uri = {0}, want = {0};
    dh_err e = {0};
    CHECK_OK(hsm_key_uri(h, id, HSM_ID_LEN, &uri, &e));
    CHECK_OK(dh_buf_puts(&want, "pkcs11:token=dkim;id="));
    for (int i = 0; i < HSM_ID_LEN; i++)
        CHECK_OK(dh_buf_printf(&want, "%%%02X", id[i])); /* RFC 3986 §2.1: uppercase */
    CHECK_OK(dh_buf_puts(&want, ";type=private"));
    CHECK_STR((char *)uri.data, (char *)want.data);
    /* p11-kit reads it back to the same id */
    P11KitUri *u = p11_kit_uri_new();
    CHECK_EQ_INT(p11_kit_uri_parse((char *)uri.data, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, u),
                 P11_KIT_URI_OK);
    CK_ATTRIBUTE *a = p11_kit_uri_get_attribute(u, CKA_ID);
    CHECK(a != NULL && a->ulValueLen == HSM_ID_LEN && memcmp(a->pValue, id, HSM_ID_LEN) == 0);
    p11_kit_uri_free(u);
    dh_buf_free(&uri);
    dh_buf_free(&want);
out:
    hsm_key_free(k);
    hsm_close(h);
}

static void test_ckr_name(void)
{
    CHECK_STR(hsm_ckr_name(CKR_OK), "CKR_OK");
    CHECK_STR(hsm_ckr_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
    CHECK_STR(hsm_ckr_name(CKR_SESSION_HANDLE_INVALID), "CKR_SESSION_HANDLE_INVALID");
    CHECK_STR(hsm_ckr_name(0x1b8), "CKR_PIN_TOO_WEAK");
    CHECK_STR(hsm_ckr_name(0x200), "CKR_FUNCTION_REJECTED");
    CHECK_STR(hsm_ckr_name(0x80000001UL), "CKR_0x80000001");
    CHECK_STR(hsm_ckr_name(0x4), "CKR_0x00000004");
}

/* Runs in a child: its own hsm_open after the fork, as the rule says. */
static int child_signs(int n)
{
    hsm *h = open_token();
    uint8_t id[HSM_ID_LEN];
    char label[32];
    snprintf(label, sizeof label, "child-%d", n);
    hsm_key *k = h ? gen_key(h, HSM_KEY_ED25519, 0, label, id) : NULL;
    int ok = k != NULL && sign_verifies(h, k, label);
    hsm_key_free(k);
    hsm_close(h);
    return ok && check_failures == 0;
}

/* A child of a process that already opened the token is refused: the
 * sessions it inherited are the parent's. */
static void child_refused(hsm *h, hsm_key *k)
{
    uint8_t dg[32] = {0};
    dh_buf sig = {0};
    dh_err e = {0};
    int rc = hsm_sign_digest(h, k, dg, &sig, &e);
    int ok = rc == DH_ESTATE && strstr(e.msg, "fork") != NULL && sig.len == 0;
    hsm_key_free(k);
    hsm_close(h); /* frees memory only: no PKCS#11 call in the child */
    _exit(ok ? 0 : 1);
}

static void wait_ok(pid_t pid)
{
    int st = 0;
    CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Run with library.reset_on_fork = true (with-token.sh --reset-on-fork):
 * the parent has opened nothing; two children open the token and sign at the
 * same time. Then the parent opens it, and a child forked after that is
 * refused while the parent goes on signing. */
static void test_fork(void)
{
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        fflush(NULL);
        pids[i] = fork();
        CHECK(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(child_signs(i) ? 0 : 1);
    }
    for (int i = 0; i < 2; i++)
        wait_ok(pids[i]);
    hsm *h = open_token();
    uint8_t id[HSM_ID_LEN];
    hsm_key *k = h ? gen_key(h, HSM_KEY_RSA, 2048, "parent", id) : NULL;
    if (k == NULL)
        goto out;
    CHECK(sign_verifies(h, k, "parent"));
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        child_refused(h, k);
    wait_ok(pid);
    CHECK(sign_verifies(h, k, "parent after the child"));
out:
    hsm_key_free(k);
    hsm_close(h);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"generate_rsa", test_generate_rsa},
        {"generate_ed25519", test_generate_ed25519},
        {"rsa_sizes", test_rsa_sizes},
        {"custody", test_custody},
        {"import", test_import},
        {"import_refused", test_import_refused},
        {"import_rfc8463", test_import_rfc8463},
        {"wrong_pin", test_wrong_pin},
        {"missing_token", test_missing_token},
        {"pin_mode", test_pin_mode},
        {"threads", test_threads},
        {"session_loss", test_session_loss},
        {"session_loss_warm_pool", test_session_loss_warm_pool},
        {"destroy", test_destroy},
        {"uri", test_uri},
        {"ckr_name", test_ckr_name},
        {"fork", test_fork},
        {NULL, NULL},
    };
    return check_run(argc, argv, cases);
}
