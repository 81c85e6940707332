/*
 * pool.c - the bounded session pool and login (the retry rule is in run.c).
 *
 * Each operation in flight holds a session of its own (FACTS.md: one session
 * per thread; SoftHSM re-validates the key on every C_SignInit). Sessions are
 * opened lazily up to h->size and kept; a session the token says is gone is
 * closed and dropped, and the next caller opens a fresh one and logs in again
 * (pkcs11-provider session.c does the same).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"
#include "hsm/hsm_int.h"

int hsm_pool_init(hsm *h, unsigned size, dh_err *e)
{
    h->idle = calloc(size, sizeof *h->idle);
    if (h->idle == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    h->size = size;
    return DH_OK;
}

/* Logged in already if the session state is a user one: PKCS#11 login is per
 * application and token, so one login covers every session we hold. */
static int session_logged_in(hsm_op *op, int *yes)
{
    CK_SESSION_INFO si;
    int rc = P11(op, C_GetSessionInfo, op->s, &si);
    if (rc != DH_OK)
        return rc;
    *yes = si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS;
    return DH_OK;
}

int hsm_login(hsm_op *op)
{
    hsm *h = op->h;
    int yes = 0;
    pthread_mutex_lock(&h->login_mu);
    int rc = session_logged_in(op, &yes);
    if (rc == DH_OK && !yes) {
        /* The PIN is read when needed and wiped at once, not kept. */
        dh_buf pin = {0};
        rc = dh_file_read_pin(h->pin_file, &pin, op->e);
        if (rc == DH_OK) {
            rc = P11(op, C_Login, op->s, CKU_USER, pin.data, (CK_ULONG)pin.len);
            if (op->rv == CKR_USER_ALREADY_LOGGED_IN)
                rc = DH_OK; /* another session of ours logged in meanwhile */
            else if (rc != DH_OK)
                dh_err_prefix(op->e, "login to token '%s'", h->label);
        }
        dh_buf_free_secret(&pin);
    }
    pthread_mutex_unlock(&h->login_mu);
    return rc;
}

static int session_open(hsm_op *op)
{
    hsm *h = op->h;
    /* Read/write: generation, import and destroy create or delete token objects. */
    int rc =
        P11(op, C_OpenSession, h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &op->s);
    if (rc != DH_OK) {
        dh_err_prefix(op->e, "token '%s'", h->label);
        return rc;
    }
    rc = hsm_login(op);
    if (rc != DH_OK) {
        hsm_op closer = {.h = h, .s = op->s};
        (void)P11(&closer, C_CloseSession, op->s);
        op->s = CK_INVALID_HANDLE;
    }
    return rc;
}

int hsm_session_get(hsm_op *op)
{
    hsm *h = op->h;
    pthread_mutex_lock(&h->mu);
    while (h->nidle == 0 && h->nopen >= h->size)
        pthread_cond_wait(&h->cv, &h->mu);
    if (h->nidle > 0) {
        op->s = h->idle[--h->nidle];
        pthread_mutex_unlock(&h->mu);
        return DH_OK;
    }
    h->nopen++; /* reserve the slot, then open outside the lock */
    pthread_mutex_unlock(&h->mu);
    int rc = session_open(op);
    if (rc != DH_OK) {
        pthread_mutex_lock(&h->mu);
        h->nopen--;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
    }
    return rc;
}

/* Closes every idle session; called with h->mu held. */
static void drop_idle(hsm *h)
{
    for (unsigned i = 0; i < h->nidle; i++) {
        hsm_op op = {.h = h, .s = h->idle[i]};
        (void)P11(&op, C_CloseSession, h->idle[i]);
    }
    h->nopen -= h->nidle;
    h->nidle = 0;
}

void hsm_session_put(hsm *h, CK_SESSION_HANDLE s, int broken)
{
    if (broken) {
        /* Usually fails (the session is already gone); the close only makes sure. */
        hsm_op op = {.h = h, .s = s};
        (void)P11(&op, C_CloseSession, s);
    }
    pthread_mutex_lock(&h->mu);
    if (broken) {
        /* What loses one session (a logout, a removed or reset token) has
         * usually lost them all: drop the idle ones too, so the single retry
         * gets a fresh session instead of another dead one. */
        h->nopen--;
        drop_idle(h);
        pthread_cond_broadcast(&h->cv);
    } else {
        h->idle[h->nidle++] = s;
        pthread_cond_signal(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
}

void hsm_pool_forget(hsm *h)
{
    pthread_mutex_lock(&h->mu);
    h->nidle = 0;
    h->nopen = 0;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void hsm_pool_destroy(hsm *h)
{
    drop_idle(h);
    free(h->idle);
    h->idle = NULL;
    h->nopen = 0;
}
