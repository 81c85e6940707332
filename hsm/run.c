/*
 * run.c - the retry rule around every token operation (hsm_run).
 *
 * One pass runs fn on a pooled session and repairs what the failure calls
 * for: a lost session is reopened once, a stale key handle is found again
 * once (pkcs11-provider session.c does the same). A failure that may mean
 * the token itself is gone is checked with C_GetTokenInfo; when it is gone,
 * or a new login is refused, the hsm is marked down and the gate
 * (recover.c) re-initialises the module before a second and last pass.
 */
#include <unistd.h>

#include "hsm/hsm_int.h"

enum next_step { GIVE_UP, REOPEN, REFIND, PROBE, GONE };

/* What one pass has already tried. */
struct tried {
    int reopened, refound, missing;
};

/* The cached handle; *stale when it was found before the last re-initialisation. */
static CK_OBJECT_HANDLE key_obj(hsm_key *k, unsigned long gen, int *stale)
{
    pthread_mutex_lock(&k->mu);
    CK_OBJECT_HANDLE o = k->obj;
    *stale = k->gen != gen;
    pthread_mutex_unlock(&k->mu);
    return o;
}

/* The handle went stale (SoftHSM after a logout, a re-initialised module):
 * log in again if the token forgot us, and find the key by its CKA_ID. */
static int key_refind(hsm_op *op, hsm_key *k, struct tried *t)
{
    t->refound = 1;
    int rc = hsm_login(op);
    CK_OBJECT_HANDLE obj;
    size_t n = 0;
    if (rc == DH_OK)
        rc = hsm_find(op, CKO_PRIVATE_KEY, k->id, k->idlen, &obj, 1, &n);
    if (rc == DH_OK && n == 0) {
        char hex[2 * 64 + 4];
        t->missing = 1; /* deleted, or the token's storage is gone: PROBE tells */
        rc = dh_err_set(op->e, DH_ENOTFOUND, "private key id %s is no longer on token '%s'",
                        dh_hex(k->id, k->idlen, hex, sizeof hex), op->h->label);
    }
    if (rc != DH_OK)
        return rc;
    pthread_mutex_lock(&k->mu);
    k->obj = obj;
    k->gen = op->gen;
    pthread_mutex_unlock(&k->mu);
    op->key = obj;
    return DH_OK;
}

/* op->key for fn: the cached handle, found again first if it is stale. */
static int key_current(hsm_op *op, hsm_key *k, struct tried *t)
{
    int stale = 0;
    if (k == NULL)
        return DH_OK;
    op->key = key_obj(k, op->gen, &stale);
    return stale ? key_refind(op, k, t) : DH_OK;
}

/* After a failure: a lost session is replaced once, a stale key handle is
 * looked up again once; what may be the token failing is probed; anything
 * else is the answer. */
static enum next_step after_failure(const hsm_op *op, const hsm_key *k, const struct tried *t)
{
    /* A refused login is handled as a lost token: retried with backoff, not
     * once per message (each try may count towards locking the PIN). */
    if (hsm_rv_token_gone(op->rv) || hsm_rv_login_refused(op->rv))
        return GONE;
    if (hsm_rv_session_lost(op->rv))
        return t->reopened ? PROBE : REOPEN;
    if (k != NULL && (op->rv == CKR_OBJECT_HANDLE_INVALID || op->rv == CKR_KEY_HANDLE_INVALID))
        return t->refound ? PROBE : REFIND;
    if (t->missing || hsm_rv_suspect(op->rv))
        return PROBE;
    return GIVE_UP;
}

/* Is the token still there? GONE with op->rv set to its answer, or GIVE_UP
 * (the original failure stands). */
static enum next_step probe_token(hsm_op *op)
{
    hsm_op p = {.h = op->h, .s = op->s};
    CK_TOKEN_INFO ti;
    if (P11(&p, C_GetTokenInfo, op->h->slot, &ti) == DH_OK)
        return GIVE_UP;
    op->rv = p.rv;
    return GONE;
}

/* fn on one session, with the repair its failure calls for. */
static enum next_step try_once(hsm_op *op, hsm_key *k, hsm_op_fn fn, void *arg, struct tried *t,
                               int *rc)
{
    *rc = hsm_session_get(op);
    if (*rc != DH_OK) {
        struct tried fresh = *t;
        fresh.reopened = 1; /* the session just opened failed: no second one */
        return after_failure(op, NULL, &fresh);
    }
    *rc = key_current(op, k, t);
    if (*rc == DH_OK)
        *rc = fn(op, arg);
    enum next_step next = *rc == DH_OK ? GIVE_UP : after_failure(op, k, t);
    if (next == REFIND) {
        *rc = key_refind(op, k, t); /* on success: retry with the new handle */
        if (*rc != DH_OK)
            next = after_failure(op, k, t);
    }
    hsm_session_put(op->h, op->s, *rc != DH_OK && hsm_rv_session_lost(op->rv));
    return next;
}

/* One pass in generation gen. *gone is the CKR_ that says the token is
 * gone, CKR_OK otherwise. */
static int run_pass(hsm *h, hsm_key *k, unsigned long gen, hsm_op_fn fn, void *arg, dh_err *e,
                    CK_RV *gone)
{
    struct tried t = {0};
    for (;;) {
        hsm_op op = {.h = h, .e = e, .gen = gen};
        int rc = DH_OK;
        enum next_step next = try_once(&op, k, fn, arg, &t, &rc);
        if (next == PROBE)
            next = probe_token(&op);
        if (next == GONE)
            *gone = op.rv;
        if (next == GONE || next == GIVE_UP)
            return rc;
        t.reopened |= next == REOPEN;
    }
}

int hsm_run(hsm *h, hsm_key *k, hsm_op_fn fn, void *arg, dh_err *e)
{
    /* A child has copies of the parent's session handles; using them would mix
     * the two processes' token state (a real HSM would just fail later). */
    if (getpid() != h->pid)
        return dh_err_set(e, DH_ESTATE,
                          "token '%s' was opened before fork(); open it in the process that "
                          "uses it",
                          h->label);
    for (int pass = 0;; pass++) {
        unsigned long gen = 0;
        int rc = hsm_gate_enter(h, &gen, e);
        if (rc != DH_OK)
            return rc;
        CK_RV gone = CKR_OK;
        rc = run_pass(h, k, gen, fn, arg, e, &gone);
        hsm_gate_leave(h, rc == DH_OK);
        if (gone == CKR_OK)
            return rc;
        /* The next hsm_gate_enter re-initialises if the backoff allows it
         * now (always, the first time) and fails fast otherwise. */
        hsm_mark_down(h, gen, gone);
        if (pass > 0)
            return rc;
    }
}
