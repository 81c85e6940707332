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
    CK_SLOT_ID slot;     /* changes only in a re-initialisation (gate closed) */
    CK_TOKEN_INFO tinfo; /* of the token the URI chose at hsm_open */
    char *token_uri;     /* to find the token again after a re-initialisation */
    char *pin_file;      /* re-read for a new login after a session loss */
    char *label;         /* token label, trailing spaces trimmed */

    pthread_mutex_t mu; /* guards the pool and the gate below */
    pthread_cond_t cv;  /* pool: a session came back */
    CK_SESSION_HANDLE *idle;
    unsigned nidle, nopen, size;
    pthread_mutex_t login_mu; /* one login attempt at a time */

    /* The gate (recover.c): operations pass it; a re-initialisation closes it. */
    pthread_cond_t gate_cv;    /* a recovery ended, or the last operation left */
    unsigned active;           /* operations inside the gate */
    int recovering;            /* a thread is re-initialising the module */
    int down;                  /* unusable until a re-initialisation succeeds */
    CK_RV down_rv;             /* why: the CKR_ of the loss or of the last attempt */
    time_t down_since;         /* wall clock, for hsm_health */
    int64_t down_ms;           /* monotonic, for the log line on recovery */
    int64_t next_try_ms;       /* monotonic: no attempt before this */
    unsigned backoff_ms;       /* 0, then 100 doubling to 5000; 0 again after a success */
    int pin_refused;           /* the token refused the PIN: no attempt until the file changes */
    struct timespec pin_mtime; /* pin_file's mtime when it was refused */
    unsigned attempts;         /* failed attempts since the loss */
    unsigned long gen;         /* +1 per re-initialisation: older key handles are stale */
    unsigned long recoveries;  /* re-initialisations that succeeded */
    int64_t last_ok_ms;        /* monotonic: the last operation that worked (hsm_probe) */
};

struct hsm_key {
    uint8_t *id;
    size_t idlen;
    enum hsm_keytype type;
    unsigned bits;
    size_t siglen;
    pthread_mutex_t mu; /* guards obj and gen, which a retry may replace */
    CK_OBJECT_HANDLE obj;
    unsigned long gen; /* h->gen when obj was found: older means stale */
};

/* One operation on one session: the context every P11() call records into. */
typedef struct hsm_op {
    hsm *h;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key; /* private key handle, for operations on a key */
    unsigned long gen;    /* the module generation the operation runs in */
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
/* 1 when rv means the token or the module is gone: only a re-initialisation
 * (C_Finalize, C_Initialize, find the token, log in) may bring it back. */
int hsm_rv_token_gone(CK_RV rv);
/* 1 when rv refuses a login (CKR_PIN_INCORRECT, CKR_PIN_LOCKED, ...). */
int hsm_rv_login_refused(CK_RV rv);
/* 1 when rv may be the token failing rather than the request: worth a probe. */
int hsm_rv_suspect(CK_RV rv);

/* Session pool (pool.c). hsm_session_get blocks while all sessions are busy;
 * it sets op->s, or op->rv and op->e on failure. */
int hsm_pool_init(hsm *h, unsigned size, dh_err *e);
int hsm_session_get(hsm_op *op);
void hsm_session_put(hsm *h, CK_SESSION_HANDLE s, int broken);
void hsm_pool_destroy(hsm *h);
/* Forgets every session without a call: C_Finalize closes them all.
 * Only with the gate closed (no operation holds a session). */
void hsm_pool_forget(hsm *h);
/* Logs the user in on op->s unless the session already is (PIN from the file). */
int hsm_login(hsm_op *op);

/* Finds the one token matching op->h->token_uri: its slot and token info
 * (hsm.c). op->rv is the CKR_ of a failed call, CKR_OK when none failed. */
int hsm_token_find(hsm_op *op, CK_SLOT_ID *slot, CK_TOKEN_INFO *ti);
/* Opens one session (logging in) and returns it to the pool. */
int hsm_first_session(hsm_op *op);

/* Runs fn on a pooled session (pool.c). A lost session is replaced and fn
 * retried once; with k, a stale key handle (or one from an older generation)
 * is looked up again by CKA_ID and fn retried once. When the token itself is
 * gone, the hsm is marked down and fn retried once after a re-initialisation,
 * if the backoff allows one now. */
typedef int (*hsm_op_fn)(hsm_op *op, void *arg);
int hsm_run(hsm *h, hsm_key *k, hsm_op_fn fn, void *arg, dh_err *e);

/* The gate (recover.c). hsm_gate_enter fails fast while the token is down
 * and no attempt is due; when one is due it re-initialises (after every
 * operation inside has left) and then lets the caller in. *gen is the
 * generation the caller runs in. */
int hsm_gate_enter(hsm *h, unsigned long *gen, dh_err *e);
void hsm_gate_leave(hsm *h, int ok);
/* Marks the token down after rv, unless a re-initialisation already
 * happened since generation gen. */
void hsm_mark_down(hsm *h, unsigned long gen, CK_RV rv);
void hsm_gate_init(hsm *h);
void hsm_gate_destroy(hsm *h);

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
