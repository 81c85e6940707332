/*
 * keys.c - key generation inside the token, finding keys, custody, deletion,
 * and the pkcs11: URI of a key.
 */
#include <stdlib.h>
#include <string.h>

#include <p11-kit/uri.h>

#include "hsm/hsm_int.h"

#define RSA_MIN_BITS 1024 /* RFC 8301 §3.2: signers MUST use at least 1024 bits */

const char *hsm_rsa_bits_warning(unsigned bits)
{
    if (bits == 0 || bits == 2048 || bits == 3072 || bits == 4096)
        return NULL;
    if (bits < RSA_MIN_BITS)
        return "RSA keys below 1024 bits are refused (RFC 8301 section 3.2)";
    if (bits < 2048)
        return "RSA keys below 2048 bits are weak; RFC 8301 section 3.2 says signers SHOULD use "
               "at least 2048";
    if (bits > 4096)
        return "verifiers need only handle RSA keys up to 4096 bits (RFC 8301 section 3.2); "
               "some will not verify this signature";
    return "unusual RSA key size; 2048, 3072 or 4096 bits are the usual ones";
}

struct gen_args {
    enum hsm_keytype type;
    CK_ULONG bits;
    const char *label;
    uint8_t id[HSM_ID_LEN];
};

static int gen_fn(hsm_op *op, void *arg)
{
    struct gen_args *g = arg;
    int rc = hsm_random_id(op, g->id);
    if (rc != DH_OK)
        return rc;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_BYTE exp[] = {0x01, 0x00, 0x01}; /* 65537 */
    CK_ULONG llen = (CK_ULONG)strlen(g->label);
    int rsa = g->type == HSM_KEY_RSA;
    /* Every custody attribute explicitly: SoftHSM defaults an omitted
     * CKA_SENSITIVE to FALSE (FACTS.md). The last two entries are per type. */
    CK_ATTRIBUTE pub[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &no, sizeof no},
        {CKA_VERIFY, &yes, sizeof yes},
        {CKA_ENCRYPT, &no, sizeof no},
        {CKA_WRAP, &no, sizeof no},
        {CKA_ID, g->id, HSM_ID_LEN},
        {CKA_LABEL, (void *)g->label, llen},
        {CKA_MODULUS_BITS, &g->bits, sizeof g->bits},
        {CKA_PUBLIC_EXPONENT, exp, sizeof exp},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &yes, sizeof yes},     {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_SIGN, &yes, sizeof yes},      {CKA_DECRYPT, &no, sizeof no},
        {CKA_UNWRAP, &no, sizeof no},      {CKA_DERIVE, &no, sizeof no},
        {CKA_ID, g->id, HSM_ID_LEN},       {CKA_LABEL, (void *)g->label, llen},
    };
    CK_ULONG npub = sizeof pub / sizeof pub[0];
    if (!rsa) {
        pub[npub - 2] =
            (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)hsm_ed25519_oid, sizeof hsm_ed25519_oid};
        npub--;
    }
    CK_MECHANISM mech = {rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE hpub, hpriv;
    return P11(op, C_GenerateKeyPair, op->s, &mech, pub, npub, priv,
               (CK_ULONG)(sizeof priv / sizeof priv[0]), &hpub, &hpriv);
}

int hsm_generate(hsm *h, enum hsm_keytype type, unsigned bits, const char *label,
                 uint8_t id[HSM_ID_LEN], dh_err *e)
{
    if (label == NULL)
        return dh_err_set(e, DH_EINVAL, "key label missing");
    struct gen_args g = {.type = type, .label = label};
    if (type == HSM_KEY_RSA) {
        g.bits = bits ? bits : 2048;
        if (g.bits < RSA_MIN_BITS)
            return dh_err_set(e, DH_EINVAL,
                              "RSA key of %u bits refused: RFC 8301 requires at least %u", bits,
                              RSA_MIN_BITS);
    } else if (type != HSM_KEY_ED25519) {
        return dh_err_set(e, DH_EINVAL, "unknown key type %d", (int)type);
    }
    int rc = hsm_run(h, NULL, gen_fn, &g, e);
    if (rc != DH_OK) {
        dh_err_prefix(e, "generating %s key on token '%s'", type == HSM_KEY_RSA ? "RSA" : "Ed25519",
                      h->label);
        return rc;
    }
    memcpy(id, g.id, HSM_ID_LEN);
    return DH_OK;
}

/* PKCS#11 3.0 §2.3.10 allows the curve as an OID or as a PrintableString
 * name; SoftHSM 2.6.1 stores "edwards25519" on the private half of a pair it
 * generated from the OID. */
static int is_ed25519_params(const uint8_t *p, size_t len)
{
    static const uint8_t name[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                   'd',  's',  '2', '5', '5', '1', '9'};
    return (len == sizeof hsm_ed25519_oid && memcmp(p, hsm_ed25519_oid, len) == 0) ||
           (len == sizeof name && memcmp(p, name, len) == 0);
}

/* Reads CKA_KEY_TYPE and the size of the private key obj into k. */
static int describe_key(hsm_op *op, CK_OBJECT_HANDLE obj, hsm_key *k)
{
    CK_KEY_TYPE kt;
    CK_ATTRIBUTE a = {CKA_KEY_TYPE, &kt, sizeof kt};
    int rc = P11(op, C_GetAttributeValue, op->s, obj, &a, 1);
    if (rc != DH_OK)
        return rc;
    if (kt == CKK_EC_EDWARDS) {
        /* Ed448 keys are EC_EDWARDS too; only Ed25519 has a DKIM algorithm. */
        uint8_t *params = NULL;
        size_t len = 0;
        rc = hsm_get_attr(op, obj, CKA_EC_PARAMS, &params, &len);
        int ok = rc == DH_OK && is_ed25519_params(params, len);
        free(params);
        if (rc != DH_OK)
            return rc;
        if (!ok)
            return dh_err_set(op->e, DH_EINVAL, "EdDSA key is not on curve Ed25519");
        k->type = HSM_KEY_ED25519;
        k->bits = 256;
        k->siglen = 64;
        return DH_OK;
    }
    if (kt != CKK_RSA)
        return dh_err_set(op->e, DH_EINVAL, "key type 0x%lx is neither RSA nor Ed25519",
                          (unsigned long)kt);
    uint8_t *n = NULL;
    size_t len = 0;
    rc = hsm_get_attr(op, obj, CKA_MODULUS, &n, &len);
    if (rc != DH_OK)
        return rc;
    size_t skip = 0;
    while (skip < len && n[skip] == 0)
        skip++;
    unsigned bits = (unsigned)(len - skip) * 8;
    for (uint8_t top = skip < len ? n[skip] : 0x80; bits > 0 && !(top & 0x80); top <<= 1)
        bits--;
    free(n);
    k->type = HSM_KEY_RSA;
    k->bits = bits;
    k->siglen = (bits + 7) / 8;
    return DH_OK;
}

static int key_open_fn(hsm_op *op, void *arg)
{
    hsm_key *k = arg;
    CK_OBJECT_HANDLE objs[2];
    size_t n = 0;
    char hex[2 * 64 + 4];
    int rc = hsm_find(op, CKO_PRIVATE_KEY, k->id, k->idlen, objs, 2, &n);
    if (rc != DH_OK)
        return rc;
    if (n == 0)
        return dh_err_set(op->e, DH_ENOTFOUND, "no private key with id %s on token '%s'",
                          dh_hex(k->id, k->idlen, hex, sizeof hex), op->h->label);
    if (n > 1)
        return dh_err_set(op->e, DH_EEXIST, "several private keys with id %s on token '%s'",
                          dh_hex(k->id, k->idlen, hex, sizeof hex), op->h->label);
    k->obj = objs[0];
    k->gen = op->gen;
    return describe_key(op, objs[0], k);
}

int hsm_key_open(hsm *h, const uint8_t *id, size_t idlen, hsm_key **out, dh_err *e)
{
    if (id == NULL || idlen == 0 || idlen > 64)
        return dh_err_set(e, DH_EINVAL, "key id must be 1 to 64 bytes");
    hsm_key *k = calloc(1, sizeof *k);
    if (k == NULL || (k->id = malloc(idlen)) == NULL) {
        free(k);
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    memcpy(k->id, id, idlen);
    k->idlen = idlen;
    pthread_mutex_init(&k->mu, NULL);
    int rc = hsm_run(h, NULL, key_open_fn, k, e);
    if (rc != DH_OK) {
        hsm_key_free(k);
        return rc;
    }
    *out = k;
    return DH_OK;
}

void hsm_key_free(hsm_key *k)
{
    if (k == NULL)
        return;
    pthread_mutex_destroy(&k->mu);
    free(k->id);
    free(k);
}

enum hsm_keytype hsm_key_type(const hsm_key *k)
{
    return k->type;
}

unsigned hsm_key_bits(const hsm_key *k)
{
    return k->bits;
}

static int custody_fn(hsm_op *op, void *arg)
{
    hsm_custody *c = arg;
    CK_BBOOL v[5] = {0};
    CK_ATTRIBUTE a[5] = {
        {CKA_SENSITIVE, &v[0], 1},
        {CKA_EXTRACTABLE, &v[1], 1},
        {CKA_ALWAYS_SENSITIVE, &v[2], 1},
        {CKA_NEVER_EXTRACTABLE, &v[3], 1},
        {CKA_LOCAL, &v[4], 1},
    };
    int rc = P11(op, C_GetAttributeValue, op->s, op->key, a, 5);
    /* A token may lack one of them; the others are still filled in. */
    if (rc != DH_OK && op->rv != CKR_ATTRIBUTE_TYPE_INVALID)
        return rc;
    int *dst[5] = {&c->sensitive, &c->extractable, &c->always_sensitive, &c->never_extractable,
                   &c->local};
    for (int i = 0; i < 5; i++)
        *dst[i] = a[i].ulValueLen == CK_UNAVAILABLE_INFORMATION ? -1 : v[i] == CK_TRUE;
    return DH_OK;
}

int hsm_key_custody(hsm *h, const hsm_key *k, hsm_custody *out, dh_err *e)
{
    hsm_custody c;
    /* hsm_run may refresh the cached handle: the key is logically unchanged. */
    int rc = hsm_run(h, (hsm_key *)k, custody_fn, &c, e);
    if (rc != DH_OK)
        return rc;
    *out = c;
    return DH_OK;
}

struct destroy_args {
    const uint8_t *id;
    size_t idlen;
};

static int destroy_class(hsm_op *op, struct destroy_args *d, CK_OBJECT_CLASS cls, size_t *count)
{
    CK_OBJECT_HANDLE objs[8];
    size_t n = 0;
    int rc = hsm_find(op, cls, d->id, d->idlen, objs, 8, &n);
    for (size_t i = 0; rc == DH_OK && i < n; i++)
        rc = P11(op, C_DestroyObject, op->s, objs[i]);
    if (rc == DH_OK)
        *count += n;
    return rc;
}

static int destroy_fn(hsm_op *op, void *arg)
{
    struct destroy_args *d = arg;
    size_t count = 0;
    int rc = destroy_class(op, d, CKO_PRIVATE_KEY, &count);
    if (rc == DH_OK)
        rc = destroy_class(op, d, CKO_PUBLIC_KEY, &count);
    if (rc == DH_OK && count == 0) {
        char hex[2 * 64 + 4];
        rc = dh_err_set(op->e, DH_ENOTFOUND, "no key with id %s on token '%s'",
                        dh_hex(d->id, d->idlen, hex, sizeof hex), op->h->label);
    }
    return rc;
}

int hsm_key_destroy(hsm *h, const uint8_t *id, size_t idlen, dh_err *e)
{
    if (id == NULL || idlen == 0)
        return dh_err_set(e, DH_EINVAL, "key id missing");
    struct destroy_args d = {id, idlen};
    return hsm_run(h, NULL, destroy_fn, &d, e);
}

int hsm_key_uri(hsm *h, const uint8_t *id, size_t idlen, dh_buf *out, dh_err *e)
{
    if (id == NULL || idlen == 0)
        return dh_err_set(e, DH_EINVAL, "key id missing");
    P11KitUri *uri = p11_kit_uri_new();
    if (uri == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    /* Only the label of the token: p11-kit leaves unset (zeroed) fields out. */
    CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(uri);
    memcpy(ti->label, h->tinfo.label, sizeof ti->label);
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE a_id = {CKA_ID, (void *)id, (CK_ULONG)idlen};
    CK_ATTRIBUTE a_cls = {CKA_CLASS, &cls, sizeof cls};
    char *text = NULL;
    int r = p11_kit_uri_set_attribute(uri, &a_id);
    if (r == P11_KIT_URI_OK)
        r = p11_kit_uri_set_attribute(uri, &a_cls);
    if (r == P11_KIT_URI_OK)
        r = p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &text);
    p11_kit_uri_free(uri);
    int rc = DH_OK;
    if (r != P11_KIT_URI_OK)
        rc = dh_err_set(e, DH_EINVAL, "key URI: %s", p11_kit_uri_message(r));
    else if (dh_buf_puts(out, text) != DH_OK)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    free(text);
    return rc;
}
