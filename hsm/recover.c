/*
 * recover.c - the gate every operation passes, re-initialising the module
 * when the token was lost, the backoff between attempts, and hsm_health.
 *
 * A token that is gone (removed, its storage moved away, the module
 * finalized under us) comes back only through C_Finalize + C_Initialize +
 * finding the token again + logging in (FACTS.md). C_Finalize must not run
 * while another thread is inside a C_* call, so operations pass a gate
 * (active counts them); a recovery closes it, waits until active is 0,
 * re-initialises with mu released, and opens it again. Operations that
 * arrive meanwhile wait for the outcome. Each success bumps h->gen, which
 * tells key handles found before it that they are stale (run.c).
 *
 * While the token is down there is at most one attempt per interval: the
 * first at once, then 100 ms doubling to 5 s; an operation that works resets
 * it. Between attempts operations fail fast, without a C_* call.
 *
 * A refused PIN is not tried again until pin_file changes: a real HSM locks
 * the PIN after a few wrong ones, and retrying every 5 s would get there.
 */
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"
#include "hsm/hsm_int.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void hsm_gate_init(hsm *h)
{
    pthread_cond_init(&h->gate_cv, NULL);
}

void hsm_gate_destroy(hsm *h)
{
    pthread_cond_destroy(&h->gate_cv);
}

static int pin_error(CK_RV rv)
{
    return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE ||
           rv == CKR_PIN_EXPIRED || rv == CKR_PIN_LOCKED;
}

static struct timespec pin_mtime(const hsm *h)
{
    struct stat st;
    if (stat(h->pin_file, &st) != 0)
        return (struct timespec){0, 0};
    return st.st_mtim;
}

/* 1 while the PIN was refused and its file has not changed since. */
static int pin_still_refused(hsm *h)
{
    if (!h->pin_refused)
        return 0;
    struct timespec m = pin_mtime(h);
    if (m.tv_sec == h->pin_mtime.tv_sec && m.tv_nsec == h->pin_mtime.tv_nsec)
        return 1;
    h->pin_refused = 0; /* a new PIN to try, at once */
    h->next_try_ms = 0;
    return 0;
}

/* The fail-fast answer while down; called with mu held. */
static int unavailable(hsm *h, int64_t now, dh_err *e)
{
    if (h->pin_refused)
        return dh_err_set(e, DH_ELOGIN,
                          "token '%s' refused the PIN (%s); not trying again until %s changes",
                          h->label, hsm_ckr_name(h->down_rv), h->pin_file);
    int64_t wait = h->next_try_ms > now ? h->next_try_ms - now : 0;
    return dh_err_set(e, DH_ETOKEN, "token '%s' unavailable (%s), next attempt in %lld ms",
                      h->label, hsm_ckr_name(h->down_rv), (long long)wait);
}

void hsm_mark_down(hsm *h, unsigned long gen, CK_RV rv)
{
    pthread_mutex_lock(&h->mu);
    /* Another thread may have re-initialised since this operation began: its
     * failure belongs to the old generation, and the caller just retries. */
    if (h->gen == gen && !h->down) {
        h->down = 1;
        h->down_rv = rv;
        h->down_since = time(NULL);
        h->down_ms = now_ms();
        h->attempts = 0;
        h->next_try_ms = h->down_ms + h->backoff_ms; /* at once unless it is flapping */
        dh_log(DH_LOG_ERR, "token '%s' lost (%s): re-initialising the PKCS#11 module", h->label,
               hsm_ckr_name(rv));
    }
    pthread_mutex_unlock(&h->mu);
}

/* C_Finalize, C_Initialize, the token by its URI (the slot may have
 * changed), a logged-in session. *rv is the CKR_ of a failed step. */
static int reinit(hsm *h, CK_RV *rv, dh_err *e)
{
    hsm_op op = {.h = h, .e = e};
    hsm_pool_forget(h); /* C_Finalize closes every session (PKCS#11 3.1 §5.4) */
    if (h->initialized) {
        h->initialized = 0;
        hsm_op fin = {.h = h};
        /* A module that forgot us already says CKR_CRYPTOKI_NOT_INITIALIZED:
         * either way the C_Initialize below decides. */
        if (hsm_p11_done(&fin, "C_Finalize", p11_kit_module_finalize(h->f)) != DH_OK)
            dh_log(DH_LOG_WARNING, "token '%s': C_Finalize: %s", h->label, hsm_ckr_name(fin.rv));
    }
    int rc = hsm_p11_done(&op, "C_Initialize", p11_kit_module_initialize(h->f));
    if (rc == DH_OK) {
        h->initialized = 1;
        CK_TOKEN_INFO ti;
        rc = hsm_token_find(&op, &h->slot, &ti);
        if (rc == DH_ENOTFOUND && op.rv == CKR_OK)
            op.rv = CKR_TOKEN_NOT_PRESENT; /* the module is back, the token is not */
    }
    if (rc == DH_OK)
        rc = hsm_first_session(&op);
    *rv = op.rv;
    return rc;
}

/* Called with mu held, the token down and an attempt due; returns with mu
 * held. DH_OK when the token is back. */
static int recover_locked(hsm *h, dh_err *e)
{
    h->recovering = 1;
    while (h->active > 0)
        pthread_cond_wait(&h->gate_cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
    CK_RV rv = CKR_OK;
    dh_err why = {0};
    int rc = reinit(h, &rv, &why);
    pthread_mutex_lock(&h->mu);
    h->recovering = 0;
    pthread_cond_broadcast(&h->gate_cv);
    int64_t now = now_ms();
    if (rc == DH_OK) {
        dh_log(DH_LOG_INFO, "token '%s' recovered after %lld ms (%u failed attempts before)",
               h->label, (long long)(now - h->down_ms), h->attempts);
        h->down = 0;
        h->attempts = 0;
        h->gen++;
        h->recoveries++;
        return DH_OK;
    }
    h->attempts++;
    h->backoff_ms = h->backoff_ms == 0 ? BACKOFF_FIRST_MS : h->backoff_ms * 2;
    if (h->backoff_ms > BACKOFF_MAX_MS)
        h->backoff_ms = BACKOFF_MAX_MS;
    h->next_try_ms = now + h->backoff_ms;
    if (rv != CKR_OK)
        h->down_rv = rv;
    if (pin_error(rv)) {
        h->pin_refused = 1;
        h->pin_mtime = pin_mtime(h);
    }
    dh_log(DH_LOG_WARNING, "token '%s': recovery attempt %u failed: %s; next in %u ms", h->label,
           h->attempts, why.msg, h->backoff_ms);
    return unavailable(h, now, e);
}

int hsm_gate_enter(hsm *h, unsigned long *gen, dh_err *e)
{
    int rc = DH_OK;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->recovering)
            pthread_cond_wait(&h->gate_cv, &h->mu);
        if (!h->down)
            break;
        int64_t now = now_ms();
        if (pin_still_refused(h) || now < h->next_try_ms) {
            rc = unavailable(h, now, e);
            break;
        }
        rc = recover_locked(h, e);
        if (rc != DH_OK)
            break;
    }
    if (rc == DH_OK) {
        h->active++;
        *gen = h->gen;
    }
    pthread_mutex_unlock(&h->mu);
    return rc;
}

void hsm_gate_leave(hsm *h, int ok)
{
    pthread_mutex_lock(&h->mu);
    h->active--;
    if (ok && !h->down) {
        h->backoff_ms = 0;
        h->last_ok_ms = now_ms();
    }
    if (h->active == 0 && h->recovering)
        pthread_cond_broadcast(&h->gate_cv);
    pthread_mutex_unlock(&h->mu);
}

void hsm_health(hsm *h, hsm_health_info *out)
{
    pthread_mutex_lock(&h->mu);
    int64_t now = now_ms();
    *out = (hsm_health_info){
        .usable = !h->down,
        .ckr = h->down ? h->down_rv : CKR_OK,
        .since = h->down ? (long long)h->down_since : 0,
        .attempts = h->attempts,
        .next_attempt_ms = h->down && h->next_try_ms > now ? (unsigned)(h->next_try_ms - now) : 0,
        .recoveries = h->recoveries,
    };
    pthread_mutex_unlock(&h->mu);
}

/* Asks the token, cheaply, whether it is there and we are logged in. */
static int probe_fn(hsm_op *op, void *arg)
{
    (void)arg;
    CK_TOKEN_INFO ti;
    int rc = P11(op, C_GetTokenInfo, op->h->slot, &ti);
    if (rc == DH_OK)
        rc = hsm_login(op); /* a logout by someone else: log in again now */
    return rc;
}

int hsm_probe(hsm *h, unsigned max_age_ms, dh_err *e)
{
    pthread_mutex_lock(&h->mu);
    int64_t now = now_ms();
    int rc = DH_OK, ask = 1;
    if (!h->down && !h->recovering && now - h->last_ok_ms < (int64_t)max_age_ms) {
        ask = 0; /* an operation just worked: that is the answer */
    } else if (h->down && (pin_still_refused(h) || now < h->next_try_ms)) {
        rc = unavailable(h, now, e);
        ask = 0;
    }
    pthread_mutex_unlock(&h->mu);
    if (ask)
        rc = hsm_run(h, NULL, probe_fn, NULL, e);
    return rc;
}
