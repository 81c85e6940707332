/*
 * sign.c - signing a digest with a token key, and exporting its public half.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "hsm/hsm_int.h"

/* DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1): CKM_RSA_PKCS only
 * pads, so we hand it DigestInfo || digest, 51 bytes. */
static const uint8_t sha256_prefix[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x01, 0x05, 0x00, 0x04, 0x20};

struct sign_args {
    const hsm_key *k;
    const uint8_t *in;
    size_t inlen;
    dh_buf *sig;
};

static int sign_fn(hsm_op *op, void *arg)
{
    struct sign_args *a = arg;
    /* RFC 8463 §3: Ed25519 signs the SHA-256 digest itself (pure EdDSA). */
    CK_MECHANISM mech = {a->k->type == HSM_KEY_RSA ? CKM_RSA_PKCS : CKM_EDDSA, NULL, 0};
    CK_ULONG len = (CK_ULONG)a->k->siglen;
    /* Room first: once C_SignInit succeeds, only C_Sign ends the operation. */
    if (dh_buf_reserve(a->sig, len) != DH_OK)
        return dh_err_set(op->e, DH_ENOMEM, "out of memory");
    int rc = P11(op, C_SignInit, op->s, &mech, op->key);
    if (rc != DH_OK)
        return rc;
    rc = P11(op, C_Sign, op->s, (CK_BYTE_PTR)a->in, (CK_ULONG)a->inlen, a->sig->data + a->sig->len,
             &len);
    if (rc != DH_OK && op->rv == CKR_BUFFER_TOO_SMALL) {
        /* The operation stays active after CKR_BUFFER_TOO_SMALL; len is the need. */
        if (dh_buf_reserve(a->sig, len) != DH_OK)
            return dh_err_set(op->e, DH_ENOMEM, "out of memory");
        rc = P11(op, C_Sign, op->s, (CK_BYTE_PTR)a->in, (CK_ULONG)a->inlen,
                 a->sig->data + a->sig->len, &len);
    }
    if (rc != DH_OK)
        return rc;
    a->sig->len += len;
    return DH_OK;
}

int hsm_sign_digest(hsm *h, hsm_key *k, const uint8_t digest[32], dh_buf *sig, dh_err *e)
{
    uint8_t in[sizeof sha256_prefix + 32];
    struct sign_args a = {.k = k, .in = in, .sig = sig};
    if (k->type == HSM_KEY_RSA) {
        memcpy(in, sha256_prefix, sizeof sha256_prefix);
        memcpy(in + sizeof sha256_prefix, digest, 32);
        a.inlen = sizeof in;
    } else {
        memcpy(in, digest, 32);
        a.inlen = 32;
    }
    int rc = hsm_run(h, k, sign_fn, &a, e);
    if (rc != DH_OK) {
        dh_err_prefix(e, "signing on token '%s'", h->label);
        return rc;
    }
    return DH_OK;
}

/* RSA: SubjectPublicKeyInfo DER from the modulus and exponent. */
static int rsa_spki(const uint8_t *n, size_t nlen, const uint8_t *ex, size_t elen, dh_buf *out,
                    dh_err *e)
{
    int rc = DH_ECRYPTO;
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(ex, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *pk = NULL;
    if (bn == NULL || be == NULL || bld == NULL || ctx == NULL ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        goto done;
    int len = i2d_PUBKEY(pk, NULL);
    if (len <= 0)
        goto done;
    if (dh_buf_reserve(out, (size_t)len) != DH_OK) {
        rc = DH_ENOMEM;
        goto done;
    }
    unsigned char *p = out->data + out->len;
    if (i2d_PUBKEY(pk, &p) != len)
        goto done;
    out->len += (size_t)len;
    rc = DH_OK;
done:
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    if (rc != DH_OK) {
        ERR_clear_error();
        dh_err_set(e, rc, "building the RSA SubjectPublicKeyInfo failed");
    }
    return rc;
}

/* Ed25519: CKA_EC_POINT is the raw 32 bytes or, as SoftHSM returns it, those
 * bytes wrapped in a DER OCTET STRING (04 20 ...). */
static int ed25519_raw(const uint8_t *pt, size_t len, dh_buf *out, dh_err *e)
{
    if (len == 34 && pt[0] == 0x04 && pt[1] == 0x20) {
        pt += 2;
        len -= 2;
    }
    if (len != 32)
        return dh_err_set(e, DH_ETOKEN, "Ed25519 CKA_EC_POINT of %zu bytes", len);
    if (dh_buf_append(out, pt, 32) != DH_OK)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    return DH_OK;
}

struct pub_args {
    const hsm_key *k;
    dh_buf *out;
};

/* The public object if there is one; RSA falls back to the private key, which
 * carries CKA_MODULUS and CKA_PUBLIC_EXPONENT too. */
static int pub_object(hsm_op *op, const hsm_key *k, CK_OBJECT_HANDLE *obj)
{
    size_t n = 0;
    int rc = hsm_find(op, CKO_PUBLIC_KEY, k->id, k->idlen, obj, 1, &n);
    if (rc == DH_OK && n == 0) {
        if (k->type != HSM_KEY_RSA)
            return dh_err_set(op->e, DH_ENOTFOUND, "no Ed25519 public key object on the token");
        *obj = op->key;
    }
    return rc;
}

static int pub_fn(hsm_op *op, void *arg)
{
    struct pub_args *a = arg;
    CK_OBJECT_HANDLE obj;
    int rc = pub_object(op, a->k, &obj);
    uint8_t *v1 = NULL, *v2 = NULL;
    size_t l1 = 0, l2 = 0;
    if (rc == DH_OK && a->k->type == HSM_KEY_ED25519) {
        rc = hsm_get_attr(op, obj, CKA_EC_POINT, &v1, &l1);
        if (rc == DH_OK)
            rc = ed25519_raw(v1, l1, a->out, op->e);
    } else if (rc == DH_OK) {
        rc = hsm_get_attr(op, obj, CKA_MODULUS, &v1, &l1);
        if (rc == DH_OK)
            rc = hsm_get_attr(op, obj, CKA_PUBLIC_EXPONENT, &v2, &l2);
        if (rc == DH_OK)
            rc = rsa_spki(v1, l1, v2, l2, a->out, op->e);
    }
    free(v1);
    free(v2);
    return rc;
}

int hsm_key_public(hsm *h, const hsm_key *k, dh_buf *out, dh_err *e)
{
    struct pub_args a = {k, out};
    return hsm_run(h, (hsm_key *)k, pub_fn, &a, e);
}
