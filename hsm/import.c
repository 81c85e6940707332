/*
 * import.c - putting an existing PEM private key into the token.
 *
 * OpenSSL decodes the file (PKCS#1 "RSA PRIVATE KEY" or PKCS#8 "PRIVATE
 * KEY"); the components go to C_CreateObject as a sensitive, non-extractable
 * private key plus a public key object with the same label and a fresh
 * CKA_ID. Every copy of secret material we make is wiped (explicit_bzero,
 * BN_clear_free), and so is the file's text.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/file.h"
#include "hsm/hsm_int.h"

#define PEM_MAX 65536
#define RSA_MIN_BITS 1024 /* RFC 8301 §3.2 */

/* One attribute value we own; secret ones are wiped on release. */
struct comp {
    CK_ATTRIBUTE_TYPE type;
    uint8_t *data;
    size_t len;
};

enum { C_N, C_E, C_D, C_P, C_Q, C_DP, C_DQ, C_QINV, C_NUM };

struct import_args {
    enum hsm_keytype type;
    unsigned bits;
    const char *label;
    uint8_t id[HSM_ID_LEN];
    struct comp c[C_NUM]; /* RSA: all; Ed25519: [0] seed, [1] public key */
};

static void comps_wipe(struct import_args *a)
{
    for (int i = 0; i < C_NUM; i++) {
        if (a->c[i].data != NULL)
            explicit_bzero(a->c[i].data, a->c[i].len);
        free(a->c[i].data);
        a->c[i].data = NULL;
        a->c[i].len = 0;
    }
}

/* Never prompts: an encrypted PEM simply fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static int crypto_err(dh_err *e, const char *what)
{
    char msg[256] = "no detail";
    unsigned long err = ERR_peek_last_error();
    if (err != 0)
        ERR_error_string_n(err, msg, sizeof msg);
    ERR_clear_error();
    return dh_err_set(e, DH_ECRYPTO, "%s: %s", what, msg);
}

static int read_pem(const char *path, EVP_PKEY **out, dh_err *e)
{
    dh_buf text = {0};
    int rc = dh_file_read(path, PEM_MAX, &text, e);
    if (rc != DH_OK) {
        dh_buf_free_secret(&text);
        return rc;
    }
    BIO *bio = BIO_new_mem_buf(text.data, (int)text.len);
    EVP_PKEY *pk = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    dh_buf_free_secret(&text);
    if (pk == NULL) {
        crypto_err(e, "no usable private key (an encrypted PEM is not supported)");
        dh_err_prefix(e, "%s", path);
        return DH_ECRYPTO;
    }
    *out = pk;
    return DH_OK;
}

static int rsa_comps(EVP_PKEY *pk, struct import_args *a, dh_err *e)
{
    static const struct {
        CK_ATTRIBUTE_TYPE type;
        const char *param;
    } map[C_NUM] = {
        [C_N] = {CKA_MODULUS, OSSL_PKEY_PARAM_RSA_N},
        [C_E] = {CKA_PUBLIC_EXPONENT, OSSL_PKEY_PARAM_RSA_E},
        [C_D] = {CKA_PRIVATE_EXPONENT, OSSL_PKEY_PARAM_RSA_D},
        [C_P] = {CKA_PRIME_1, OSSL_PKEY_PARAM_RSA_FACTOR1},
        [C_Q] = {CKA_PRIME_2, OSSL_PKEY_PARAM_RSA_FACTOR2},
        [C_DP] = {CKA_EXPONENT_1, OSSL_PKEY_PARAM_RSA_EXPONENT1},
        [C_DQ] = {CKA_EXPONENT_2, OSSL_PKEY_PARAM_RSA_EXPONENT2},
        [C_QINV] = {CKA_COEFFICIENT, OSSL_PKEY_PARAM_RSA_COEFFICIENT1},
    };
    for (int i = 0; i < C_NUM; i++) {
        BIGNUM *bn = NULL;
        if (!EVP_PKEY_get_bn_param(pk, map[i].param, &bn))
            return crypto_err(e, "RSA key lacks a component (n, e, d, p, q and CRT values needed)");
        size_t len = (size_t)BN_num_bytes(bn);
        a->c[i] = (struct comp){map[i].type, malloc(len ? len : 1), len};
        if (a->c[i].data != NULL)
            BN_bn2bin(bn, a->c[i].data);
        BN_clear_free(bn);
        if (a->c[i].data == NULL)
            return dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    return DH_OK;
}

static int ed25519_comps(EVP_PKEY *pk, struct import_args *a, dh_err *e)
{
    size_t slen = 32, plen = 32;
    uint8_t *seed = malloc(32), *pub = malloc(34);
    a->c[0] = (struct comp){CKA_VALUE, seed, 32};
    a->c[1] = (struct comp){CKA_EC_POINT, pub, 34};
    if (seed == NULL || pub == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    /* CKA_EC_POINT as a DER OCTET STRING, the form SoftHSM itself produces. */
    pub[0] = 0x04;
    pub[1] = 0x20;
    if (!EVP_PKEY_get_raw_private_key(pk, seed, &slen) ||
        !EVP_PKEY_get_raw_public_key(pk, pub + 2, &plen) || slen != 32 || plen != 32)
        return crypto_err(e, "cannot read the Ed25519 key");
    return DH_OK;
}

static int key_comps(EVP_PKEY *pk, struct import_args *a, dh_err *e)
{
    switch (EVP_PKEY_get_base_id(pk)) {
    case EVP_PKEY_RSA:
        a->type = HSM_KEY_RSA;
        a->bits = (unsigned)EVP_PKEY_get_bits(pk);
        if (a->bits < RSA_MIN_BITS)
            return dh_err_set(e, DH_EINVAL,
                              "RSA key of %u bits refused: RFC 8301 requires at least %u", a->bits,
                              RSA_MIN_BITS);
        return rsa_comps(pk, a, e);
    case EVP_PKEY_ED25519:
        a->type = HSM_KEY_ED25519;
        a->bits = 256;
        return ed25519_comps(pk, a, e);
    default:
        return dh_err_set(e, DH_EINVAL, "key type %s is neither RSA nor Ed25519",
                          OBJ_nid2sn(EVP_PKEY_get_base_id(pk)));
    }
}

/* Fills tmpl from n entries of a->c, starting at first. */
static CK_ULONG add_comps(CK_ATTRIBUTE *tmpl, CK_ULONG at, struct import_args *a, int first, int n)
{
    for (int i = first; i < first + n; i++)
        tmpl[at++] = (CK_ATTRIBUTE){a->c[i].type, a->c[i].data, (CK_ULONG)a->c[i].len};
    return at;
}

static int create_pair(hsm_op *op, struct import_args *a)
{
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_CLASS cpriv = CKO_PRIVATE_KEY, cpub = CKO_PUBLIC_KEY;
    int rsa = a->type == HSM_KEY_RSA;
    CK_KEY_TYPE kt = rsa ? CKK_RSA : CKK_EC_EDWARDS;
    CK_ULONG llen = (CK_ULONG)strlen(a->label);
    CK_ATTRIBUTE pub[12] = {
        {CKA_CLASS, &cpub, sizeof cpub},     {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &yes, sizeof yes},       {CKA_PRIVATE, &no, sizeof no},
        {CKA_VERIFY, &yes, sizeof yes},      {CKA_ENCRYPT, &no, sizeof no},
        {CKA_WRAP, &no, sizeof no},          {CKA_ID, a->id, HSM_ID_LEN},
        {CKA_LABEL, (void *)a->label, llen},
    };
    /* Every custody attribute explicitly (SoftHSM defaults CKA_SENSITIVE to FALSE). */
    CK_ATTRIBUTE priv[20] = {
        {CKA_CLASS, &cpriv, sizeof cpriv}, {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &yes, sizeof yes},     {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_SIGN, &yes, sizeof yes},      {CKA_DECRYPT, &no, sizeof no},
        {CKA_UNWRAP, &no, sizeof no},      {CKA_DERIVE, &no, sizeof no},
        {CKA_ID, a->id, HSM_ID_LEN},       {CKA_LABEL, (void *)a->label, llen},
    };
    CK_ULONG npub = 9, npriv = 12;
    CK_ATTRIBUTE params = {CKA_EC_PARAMS, (void *)hsm_ed25519_oid, sizeof hsm_ed25519_oid};
    if (rsa) {
        npub = add_comps(pub, npub, a, C_N, 2);
        npriv = add_comps(priv, npriv, a, C_N, C_NUM);
    } else {
        pub[npub++] = params;
        priv[npriv++] = params;
        npub = add_comps(pub, npub, a, 1, 1);
        npriv = add_comps(priv, npriv, a, 0, 1);
    }
    CK_OBJECT_HANDLE hpriv, hpub;
    int rc = P11(op, C_CreateObject, op->s, priv, npriv, &hpriv);
    if (rc != DH_OK)
        return rc;
    rc = P11(op, C_CreateObject, op->s, pub, npub, &hpub);
    if (rc != DH_OK) {
        /* No half-imported key: take the private half out again. */
        hsm_op quiet = *op;
        quiet.e = NULL;
        (void)P11(&quiet, C_DestroyObject, op->s, hpriv);
    }
    return rc;
}

static int import_fn(hsm_op *op, void *arg)
{
    struct import_args *a = arg;
    int rc = hsm_random_id(op, a->id);
    if (rc == DH_OK)
        rc = create_pair(op, a);
    return rc;
}

int hsm_import_pem(hsm *h, const char *pem_path, const char *label, uint8_t id[HSM_ID_LEN],
                   enum hsm_keytype *type, unsigned *bits, dh_err *e)
{
    if (pem_path == NULL || label == NULL)
        return dh_err_set(e, DH_EINVAL, "PEM path and label are required");
    EVP_PKEY *pk = NULL;
    int rc = read_pem(pem_path, &pk, e);
    if (rc != DH_OK)
        return rc;
    struct import_args a = {.label = label};
    rc = key_comps(pk, &a, e);
    EVP_PKEY_free(pk); /* OpenSSL clears its own key memory on free */
    if (rc == DH_OK)
        rc = hsm_run(h, NULL, import_fn, &a, e);
    comps_wipe(&a);
    if (rc != DH_OK) {
        dh_err_prefix(e, "importing %s", pem_path);
        return rc;
    }
    memcpy(id, a.id, HSM_ID_LEN);
    *type = a.type;
    *bits = a.bits;
    return DH_OK;
}
