/*
 * p11.c - the choke point every C_* call goes through, and CKR_ names.
 */
#include <stdio.h>
#include <stdlib.h>

#include "hsm/hsm_int.h"

/* Numeric values from the OASIS headers (PKCS#11 2.40 / 3.0 / 3.1), not from
 * p11-kit's pkcs11.h: p11-kit 0.24 gives CKR_EXCEEDED_MAX_ITERATIONS ..
 * CKR_PUBLIC_KEY_INVALID as 0x1c0..0x1c4, the standard says 0x1b5..0x1b9. */
static const struct {
    unsigned long rv;
    const char *name;
} ckr_names[] = {
    {0x000, "CKR_OK"},
    {0x001, "CKR_CANCEL"},
    {0x002, "CKR_HOST_MEMORY"},
    {0x003, "CKR_SLOT_ID_INVALID"},
    {0x005, "CKR_GENERAL_ERROR"},
    {0x006, "CKR_FUNCTION_FAILED"},
    {0x007, "CKR_ARGUMENTS_BAD"},
    {0x008, "CKR_NO_EVENT"},
    {0x009, "CKR_NEED_TO_CREATE_THREADS"},
    {0x00a, "CKR_CANT_LOCK"},
    {0x010, "CKR_ATTRIBUTE_READ_ONLY"},
    {0x011, "CKR_ATTRIBUTE_SENSITIVE"},
    {0x012, "CKR_ATTRIBUTE_TYPE_INVALID"},
    {0x013, "CKR_ATTRIBUTE_VALUE_INVALID"},
    {0x01b, "CKR_ACTION_PROHIBITED"},
    {0x020, "CKR_DATA_INVALID"},
    {0x021, "CKR_DATA_LEN_RANGE"},
    {0x030, "CKR_DEVICE_ERROR"},
    {0x031, "CKR_DEVICE_MEMORY"},
    {0x032, "CKR_DEVICE_REMOVED"},
    {0x035, "CKR_AEAD_DECRYPT_FAILED"},
    {0x040, "CKR_ENCRYPTED_DATA_INVALID"},
    {0x041, "CKR_ENCRYPTED_DATA_LEN_RANGE"},
    {0x050, "CKR_FUNCTION_CANCELED"},
    {0x051, "CKR_FUNCTION_NOT_PARALLEL"},
    {0x054, "CKR_FUNCTION_NOT_SUPPORTED"},
    {0x060, "CKR_KEY_HANDLE_INVALID"},
    {0x062, "CKR_KEY_SIZE_RANGE"},
    {0x063, "CKR_KEY_TYPE_INCONSISTENT"},
    {0x064, "CKR_KEY_NOT_NEEDED"},
    {0x065, "CKR_KEY_CHANGED"},
    {0x066, "CKR_KEY_NEEDED"},
    {0x067, "CKR_KEY_INDIGESTIBLE"},
    {0x068, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
    {0x069, "CKR_KEY_NOT_WRAPPABLE"},
    {0x06a, "CKR_KEY_UNEXTRACTABLE"},
    {0x070, "CKR_MECHANISM_INVALID"},
    {0x071, "CKR_MECHANISM_PARAM_INVALID"},
    {0x082, "CKR_OBJECT_HANDLE_INVALID"},
    {0x090, "CKR_OPERATION_ACTIVE"},
    {0x091, "CKR_OPERATION_NOT_INITIALIZED"},
    {0x0a0, "CKR_PIN_INCORRECT"},
    {0x0a1, "CKR_PIN_INVALID"},
    {0x0a2, "CKR_PIN_LEN_RANGE"},
    {0x0a3, "CKR_PIN_EXPIRED"},
    {0x0a4, "CKR_PIN_LOCKED"},
    {0x0b0, "CKR_SESSION_CLOSED"},
    {0x0b1, "CKR_SESSION_COUNT"},
    {0x0b3, "CKR_SESSION_HANDLE_INVALID"},
    {0x0b4, "CKR_SESSION_PARALLEL_NOT_SUPPORTED"},
    {0x0b5, "CKR_SESSION_READ_ONLY"},
    {0x0b6, "CKR_SESSION_EXISTS"},
    {0x0b7, "CKR_SESSION_READ_ONLY_EXISTS"},
    {0x0b8, "CKR_SESSION_READ_WRITE_SO_EXISTS"},
    {0x0c0, "CKR_SIGNATURE_INVALID"},
    {0x0c1, "CKR_SIGNATURE_LEN_RANGE"},
    {0x0d0, "CKR_TEMPLATE_INCOMPLETE"},
    {0x0d1, "CKR_TEMPLATE_INCONSISTENT"},
    {0x0e0, "CKR_TOKEN_NOT_PRESENT"},
    {0x0e1, "CKR_TOKEN_NOT_RECOGNIZED"},
    {0x0e2, "CKR_TOKEN_WRITE_PROTECTED"},
    {0x0f0, "CKR_UNWRAPPING_KEY_HANDLE_INVALID"},
    {0x0f1, "CKR_UNWRAPPING_KEY_SIZE_RANGE"},
    {0x0f2, "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT"},
    {0x100, "CKR_USER_ALREADY_LOGGED_IN"},
    {0x101, "CKR_USER_NOT_LOGGED_IN"},
    {0x102, "CKR_USER_PIN_NOT_INITIALIZED"},
    {0x103, "CKR_USER_TYPE_INVALID"},
    {0x104, "CKR_USER_ANOTHER_ALREADY_LOGGED_IN"},
    {0x105, "CKR_USER_TOO_MANY_TYPES"},
    {0x110, "CKR_WRAPPED_KEY_INVALID"},
    {0x112, "CKR_WRAPPED_KEY_LEN_RANGE"},
    {0x113, "CKR_WRAPPING_KEY_HANDLE_INVALID"},
    {0x114, "CKR_WRAPPING_KEY_SIZE_RANGE"},
    {0x115, "CKR_WRAPPING_KEY_TYPE_INCONSISTENT"},
    {0x120, "CKR_RANDOM_SEED_NOT_SUPPORTED"},
    {0x121, "CKR_RANDOM_NO_RNG"},
    {0x130, "CKR_DOMAIN_PARAMS_INVALID"},
    {0x140, "CKR_CURVE_NOT_SUPPORTED"},
    {0x150, "CKR_BUFFER_TOO_SMALL"},
    {0x160, "CKR_SAVED_STATE_INVALID"},
    {0x170, "CKR_INFORMATION_SENSITIVE"},
    {0x180, "CKR_STATE_UNSAVEABLE"},
    {0x190, "CKR_CRYPTOKI_NOT_INITIALIZED"},
    {0x191, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
    {0x1a0, "CKR_MUTEX_BAD"},
    {0x1a1, "CKR_MUTEX_NOT_LOCKED"},
    {0x1b0, "CKR_NEW_PIN_MODE"},
    {0x1b1, "CKR_NEXT_OTP"},
    {0x1b5, "CKR_EXCEEDED_MAX_ITERATIONS"},
    {0x1b6, "CKR_FIPS_SELF_TEST_FAILED"},
    {0x1b7, "CKR_LIBRARY_LOAD_FAILED"},
    {0x1b8, "CKR_PIN_TOO_WEAK"},
    {0x1b9, "CKR_PUBLIC_KEY_INVALID"},
    {0x200, "CKR_FUNCTION_REJECTED"},
    {0x201, "CKR_TOKEN_RESOURCE_EXCEEDED"},
    {0x202, "CKR_OPERATION_CANCEL_FAILED"},
    {0x203, "CKR_KEY_EXHAUSTED"},
};

const char *hsm_ckr_name(unsigned long rv)
{
    static _Thread_local char unknown[32];
    for (size_t i = 0; i < sizeof ckr_names / sizeof ckr_names[0]; i++)
        if (ckr_names[i].rv == rv)
            return ckr_names[i].name;
    snprintf(unknown, sizeof unknown, "CKR_0x%08lx", rv);
    return unknown;
}

int hsm_p11_status(CK_RV rv)
{
    switch (rv) {
    case CKR_OK:
        return DH_OK;
    case CKR_HOST_MEMORY:
        return DH_ENOMEM;
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_PIN_LOCKED:
    case CKR_USER_PIN_NOT_INITIALIZED:
    case CKR_USER_NOT_LOGGED_IN:
        return DH_ELOGIN;
    case CKR_KEY_SIZE_RANGE:
    case CKR_DATA_LEN_RANGE:
    case CKR_ATTRIBUTE_VALUE_INVALID:
    case CKR_TEMPLATE_INCONSISTENT:
        return DH_EINVAL;
    default:
        return DH_ETOKEN;
    }
}

int hsm_rv_session_lost(CK_RV rv)
{
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
           rv == CKR_USER_NOT_LOGGED_IN;
}

/* PKCS#11 3.1 §5.1: after CKR_DEVICE_REMOVED / CKR_TOKEN_NOT_PRESENT every
 * session is gone; a module that was finalized under us says
 * CKR_CRYPTOKI_NOT_INITIALIZED; a slot that went away with its token,
 * CKR_SLOT_ID_INVALID. */
int hsm_rv_token_gone(CK_RV rv)
{
    return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_SLOT_ID_INVALID ||
           rv == CKR_CRYPTOKI_NOT_INITIALIZED || rv == CKR_TOKEN_NOT_RECOGNIZED ||
           rv == CKR_DEVICE_ERROR;
}

/* The login that a reopened session or a refound key needs was refused: the
 * token is unusable until the PIN file is right again, and a login per
 * message could lock the PIN. */
int hsm_rv_login_refused(CK_RV rv)
{
    return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE ||
           rv == CKR_PIN_EXPIRED || rv == CKR_PIN_LOCKED || rv == CKR_USER_PIN_NOT_INITIALIZED;
}

/* SoftHSM with its token directory gone answers CKR_GENERAL_ERROR to
 * C_GetTokenInfo while sessions still look fine (FACTS.md): a failure like
 * these is checked against the token before it is believed. */
int hsm_rv_suspect(CK_RV rv)
{
    return rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED || rv == CKR_DEVICE_MEMORY;
}

void hsm_p11_begin(hsm_op *op)
{
    if (op->h->trace)
        clock_gettime(CLOCK_MONOTONIC, &op->t0);
}

int hsm_p11_done(hsm_op *op, const char *fn, CK_RV rv)
{
    if (op->h->trace) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long us =
            (long)(t1.tv_sec - op->t0.tv_sec) * 1000000L + (t1.tv_nsec - op->t0.tv_nsec) / 1000L;
        fprintf(stderr, "pkcs11: %s session=%lu -> %s (%ld us)\n", fn, (unsigned long)op->s,
                hsm_ckr_name(rv), us);
    }
    op->rv = rv;
    if (rv == CKR_OK)
        return DH_OK;
    return dh_err_set(op->e, hsm_p11_status(rv), "%s: %s", fn, hsm_ckr_name(rv));
}
