/*
 * hsm_int.h - internals shared by the hsm/ sources; never included outside hsm/.
 *
 * Every PKCS#11 call goes through P11(), the one choke point: it records the
 * CK_RV in the hsm_op (so the retry logic can classify it), turns a failure
 * into our error table with the CKR_ name in the message, and can trace.
 */
#ifndef HSM_HSM_INT_H
#define HSM_HSM_INT_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <p11-kit/p11-kit.h>

#include "common/hex.h"
#include "hsm/hsm.h"

struct hsm {
    CK_FUNCTION_LIST *f; /* managed by p11-kit: it passes CKF_OS_LOCKING_OK */
    int initialized;     /* p11_kit_module_initialize succeeded */
    int trace;           /* DKIMHSM_PKCS11_TRACE set: log each call to stderr */
    pid_t pid;           /* of the process that opened it: PKCS#11 is not fork-safe */
    CK_SLOT_ID slot;
    CK_TOKEN_INFO tinfo; /* of the token the URI chose */
    char *pin_file;      /* re-read for a new login after a session loss */
    char *label;         /* token label, trailing spaces trimmed */

    pthread_mutex_t mu; /* guards the pool below */
    pthread_cond_t cv;
    CK_SESSION_HANDLE *idle;
    unsigned nidle, nopen, size;
    pthread_mutex_t login_mu; /* one login attempt at a time */
};

struct hsm_key {
    uint8_t *id;
    size_t idlen;
    enum hsm_keytype type;
    unsigned bits;
    size_t siglen;
    pthread_mutex_t mu; /* guards obj, which a retry may replace */
    CK_OBJECT_HANDLE obj;
};

/* One operation on one session: the context every P11() call records into. */
typedef struct hsm_op {
    hsm *h;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key; /* private key handle, for operations on a key */
    dh_err *e;
    CK_RV rv;           /* last failing CK_RV, CKR_OK if the failure was ours */
    struct timespec t0; /* start of the call, when tracing */
} hsm_op;

void hsm_p11_begin(hsm_op *op);
int hsm_p11_done(hsm_op *op, const char *fn, CK_RV rv);

/* The comma operator orders begin before the call. Evaluates to a DH status. */
#define P11(op, fn, ...) (hsm_p11_begin(op), hsm_p11_done((op), #fn, (op)->h->f->fn(__VA_ARGS__)))

/* DH status for a CK_RV. */
int hsm_p11_status(CK_RV rv);
/* 1 when rv means the session is gone and a fresh one (logged in) may work. */
int hsm_rv_session_lost(CK_RV rv);

/* Session pool (pool.c). hsm_session_get blocks while all sessions are busy. */
int hsm_pool_init(hsm *h, unsigned size, dh_err *e);
int hsm_session_get(hsm *h, CK_SESSION_HANDLE *out, dh_err *e);
void hsm_session_put(hsm *h, CK_SESSION_HANDLE s, int broken);
void hsm_pool_destroy(hsm *h);
/* Logs the user in on op->s unless the session already is (PIN from the file). */
int hsm_login(hsm_op *op);

/* Runs fn on a pooled session. A lost session is replaced and fn retried once;
 * with k, a stale key handle is looked up again by CKA_ID and fn retried once. */
typedef int (*hsm_op_fn)(hsm_op *op, void *arg);
int hsm_run(hsm *h, hsm_key *k, hsm_op_fn fn, void *arg, dh_err *e);

/* Object helpers (obj.c). */
int hsm_find(hsm_op *op, CK_OBJECT_CLASS cls, const uint8_t *id, size_t idlen,
             CK_OBJECT_HANDLE *out, size_t max, size_t *n);
/* Reads one variable-length attribute into a malloc'ed buffer (*out, *len). */
int hsm_get_attr(hsm_op *op, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, uint8_t **out,
                 size_t *len);
int hsm_random_id(hsm_op *op, uint8_t id[HSM_ID_LEN]);

/* DER OID 1.3.101.112 (id-Ed25519), RFC 8410 §3: CKA_EC_PARAMS of our Ed25519 keys. */
extern const uint8_t hsm_ed25519_oid[5];

#endif
