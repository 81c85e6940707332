/*
 * obj.c - small object helpers: find by CKA_ID, read an attribute, fresh IDs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "hsm/hsm_int.h"

const uint8_t hsm_ed25519_oid[5] = {0x06, 0x03, 0x2b, 0x65, 0x70};

int hsm_find(hsm_op *op, CK_OBJECT_CLASS cls, const uint8_t *id, size_t idlen,
             CK_OBJECT_HANDLE *out, size_t max, size_t *n)
{
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_ID, (void *)id, (CK_ULONG)idlen},
    };
    int rc = P11(op, C_FindObjectsInit, op->s, tmpl, 2);
    if (rc != DH_OK)
        return rc;
    CK_ULONG got = 0;
    rc = P11(op, C_FindObjects, op->s, out, (CK_ULONG)max, &got);
    /* Always end the search, or the session stays busy with it. */
    hsm_op fin = *op;
    fin.e = NULL;
    int rc2 = P11(&fin, C_FindObjectsFinal, op->s);
    if (rc == DH_OK && rc2 != DH_OK) {
        op->rv = fin.rv;
        rc = dh_err_set(op->e, rc2, "C_FindObjectsFinal: %s", hsm_ckr_name(fin.rv));
    }
    if (rc == DH_OK)
        *n = got;
    return rc;
}

int hsm_get_attr(hsm_op *op, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, uint8_t **out,
                 size_t *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    int rc = P11(op, C_GetAttributeValue, op->s, obj, &a, 1);
    if (rc != DH_OK)
        return rc;
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > 65536)
        return dh_err_set(op->e, DH_ETOKEN, "attribute 0x%lx: unusable length",
                          (unsigned long)type);
    uint8_t *p = malloc(a.ulValueLen ? a.ulValueLen : 1);
    if (p == NULL)
        return dh_err_set(op->e, DH_ENOMEM, "out of memory");
    a.pValue = p;
    rc = P11(op, C_GetAttributeValue, op->s, obj, &a, 1);
    if (rc != DH_OK) {
        free(p);
        return rc;
    }
    *out = p;
    *len = a.ulValueLen;
    return DH_OK;
}

int hsm_random_id(hsm_op *op, uint8_t id[HSM_ID_LEN])
{
    uint8_t tmp[HSM_ID_LEN];
    int rc = P11(op, C_GenerateRandom, op->s, tmp, HSM_ID_LEN);
    /* A token without an RNG is legal; an ID only has to be unique. */
    if (rc != DH_OK && (op->rv == CKR_RANDOM_NO_RNG || op->rv == CKR_FUNCTION_NOT_SUPPORTED)) {
        if (RAND_bytes(tmp, HSM_ID_LEN) != 1)
            return dh_err_set(op->e, DH_ECRYPTO, "RAND_bytes failed");
        rc = DH_OK;
    }
    if (rc == DH_OK)
        memcpy(id, tmp, HSM_ID_LEN);
    return rc;
}
