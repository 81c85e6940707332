/*
 * workers.h - the token worker pool: threads that drain a queue of pending
 * digests in batches and hand the results back to the event loop with one
 * wake-up per batch.
 *
 * A worker takes every pending job up to batch_limit (only its share of them
 * while other workers are idle, so a burst is signed in parallel), signs them
 * back to back (hsm_sign_digest; with session_pool >= workers each worker
 * effectively owns a session), moves them all to the done list and writes
 * the wake fd once.
 * The loop thread watches wp_wake_fd() and calls wp_drain(), which runs the
 * completion callback for every finished job on the loop thread.
 * A worker idle for a second asks the token whether it is still there
 * (hsm_probe), so a lost token is noticed and recovered without traffic.
 */
#ifndef DAEMON_WORKERS_H
#define DAEMON_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "hsm/hsm.h"

typedef struct wp wp;

typedef struct wp_job {
    /* Set by the submitter; the pool never frees or changes them. */
    hsm_key *key;       /* must stay valid until the job comes back */
    uint8_t digest[32]; /* SHA-256 of the header hash input */
    void *owner;        /* for the completion callback */
    uint32_t id;
    /* Set by the worker. */
    int status;          /* DH_OK, or the hsm error (DH_ETOKEN, DH_ELOGIN, ...) */
    dh_buf sig;          /* the signature on DH_OK; the submitter frees it */
    char reason[200];    /* the error message (with the CKR_ name) otherwise */
    double token_ms;     /* time spent in hsm_sign_digest */
    unsigned batch;      /* size of the batch it was signed in */
    struct wp_job *next; /* internal */
} wp_job;

/* Called on the loop thread for each finished job; it owns the job again. */
typedef void (*wp_done_fn)(wp_job *job, void *arg);

/* Starts `workers` threads (>= 1). queue_limit bounds jobs queued but not yet
 * taken by a worker. *out: wp_free(). */
int wp_new(hsm *h, unsigned workers, unsigned batch_limit, unsigned queue_limit, wp **out,
           dh_err *e) DH_WUR;

/* Queues a job. DH_ESTATE when the pool is stopping or queue_limit jobs are
 * already waiting (the caller answers TEMPFAIL either way); *full (may be
 * NULL) is set to 1 in the second case. */
int wp_submit(wp *p, wp_job *job, int *full) DH_WUR;

/* The fd (an eventfd) that becomes readable when finished jobs are waiting. */
int wp_wake_fd(const wp *p);

/* Loop thread: clears the wake fd and calls done for every finished job.
 * Returns how many it handed back. */
size_t wp_drain(wp *p, wp_done_fn done, void *arg);

/* Jobs queued and not yet taken; jobs being signed now. */
size_t wp_queue_depth(wp *p);
size_t wp_in_flight(wp *p);

/* Stops taking new jobs, lets the workers finish every queued one, joins
 * them. Finished jobs still wait for wp_drain(). Idempotent. */
void wp_stop(wp *p);
/* Stops if needed and frees the pool. Jobs never drained are not freed (the
 * caller owns them): drain before freeing. */
void wp_free(wp *p);

#endif
