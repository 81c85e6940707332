/*
 * workers.c - the token worker pool (workers.h).
 *
 * Two lists, two locks. The queue (mu, cv) is where the loop thread puts jobs
 * and workers take them; the done list (done_mu) is where workers put finished
 * batches and the loop thread takes them. Signing happens with neither lock
 * held, so the loop thread never waits on the token, and a worker holds mu
 * only long enough to unlink a batch. One eventfd write per batch keeps the
 * loop's wake-ups down to one per batch, not one per signature.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "daemon/workers.h"

/* Sanity bound: the config allows 256; more threads than this is a bug. */
#define WP_MAX_WORKERS 1024
/* An idle worker asks the token this often whether it is there (hsm_probe),
 * so that a lost token is noticed, and brought back, without traffic. */
#define WP_PROBE_MS 1000

struct wp {
    hsm *h;
    unsigned batch_limit, queue_limit;
    int efd; /* eventfd: readable while finished jobs wait */

    pthread_mutex_t mu; /* guards everything down to nidle */
    pthread_cond_t cv;  /* signalled when a job is queued or on stop */
    wp_job *head, *tail;
    size_t depth;     /* jobs on the queue */
    size_t in_flight; /* jobs taken by a worker and not yet on the done list */
    unsigned nidle;   /* workers waiting on cv */
    int stopping;

    pthread_mutex_t done_mu; /* guards the done list */
    wp_job *done_head, *done_tail;

    int locks; /* mu, cv and done_mu were initialised */
    pthread_t *threads;
    unsigned nthreads; /* started */
    int joined;        /* wp_stop has joined them (only the loop thread looks) */
};

/* How many jobs a worker takes: every pending one up to batch_limit, but only
 * its share when other workers are idle, so that a burst of 10 digests on 2
 * workers is signed 5 + 5 in parallel rather than 10 by one while the other
 * sleeps. Called with mu held; depth > 0. */
static size_t batch_share(const wp *p)
{
    size_t share = (p->depth + p->nidle) / (p->nidle + 1); /* ceil(depth / (nidle + 1)) */
    if (share > p->batch_limit)
        share = p->batch_limit;
    return share;
}

static struct timespec deadline_in(unsigned ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* the clock of p->cv (pool_init) */
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* Blocks until there is work, the pool stops with an empty queue, or
 * WP_PROBE_MS pass idle (*idle = 1); returns NULL in the last two cases.
 * Unlinks the batch and reports its size in *n. */
static wp_job *take_batch(wp *p, size_t *n, int *idle)
{
    struct timespec until = deadline_in(WP_PROBE_MS);
    *idle = 0;
    pthread_mutex_lock(&p->mu);
    while (p->head == NULL && !p->stopping && !*idle) {
        p->nidle++;
        *idle = pthread_cond_timedwait(&p->cv, &p->mu, &until) == ETIMEDOUT;
        p->nidle--;
    }
    wp_job *first = p->head, *last = NULL;
    size_t count = 0;
    if (first != NULL) {
        size_t want = batch_share(p);
        for (last = first; count + 1 < want && last->next != NULL; last = last->next)
            count++;
        count++;
        p->head = last->next;
        if (p->head == NULL)
            p->tail = NULL;
        last->next = NULL;
        p->depth -= count;
        p->in_flight += count;
        /* Work left and someone idle: make sure they hear about it, even if
         * the signal of the submit that queued it went to us. */
        if (p->head != NULL && p->nidle > 0)
            pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    *n = count;
    return first;
}

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

static void sign_one(wp *p, wp_job *j, unsigned batch)
{
    dh_err e = {0};
    struct timespec t0, t1;
    j->sig.len = 0; /* the signature alone, even if the submitter reuses the buffer */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    j->status = hsm_sign_digest(p->h, j->key, j->digest, &j->sig, &e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    j->token_ms = ms_between(&t0, &t1);
    j->batch = batch;
    if (j->status == DH_OK) {
        j->reason[0] = '\0';
        return;
    }
    dh_buf_free(&j->sig); /* nothing half-written reaches the submitter */
    /* dh_err holds up to 511 characters, the job 199: cut, deliberately. */
    const char *why = e.msg[0] != '\0' ? e.msg : dh_strstatus(j->status);
    size_t n = strnlen(why, sizeof j->reason - 1);
    memcpy(j->reason, why, n);
    j->reason[n] = '\0';
}

/* Adding 1 to the eventfd counter; it cannot overflow in practice (2^64 - 2
 * batches between two drains), and EAGAIN would mean it is readable anyway. */
static void wake_loop(wp *p)
{
    const uint64_t one = 1;
    ssize_t r;
    do
        r = write(p->efd, &one, sizeof one);
    while (r < 0 && errno == EINTR);
}

static void finish_batch(wp *p, wp_job *first, wp_job *last, size_t n)
{
    /* Out of in_flight before it is visible on the done list, so a loop that
     * has drained every job never sees it still counted as being signed. */
    pthread_mutex_lock(&p->mu);
    p->in_flight -= n;
    pthread_mutex_unlock(&p->mu);

    pthread_mutex_lock(&p->done_mu);
    if (p->done_tail != NULL)
        p->done_tail->next = first;
    else
        p->done_head = first;
    p->done_tail = last;
    pthread_mutex_unlock(&p->done_mu);
    wake_loop(p);
}

/* Nothing to sign for WP_PROBE_MS: ask the token. A failure needs nothing
 * from us: the hsm logs the loss and each recovery attempt once, and
 * hsm_health (GET /healthz) reports it. */
static void probe_idle(wp *p)
{
    dh_err e = {0};
    int rc = hsm_probe(p->h, WP_PROBE_MS, &e);
    (void)rc;
}

static void *worker_main(void *arg)
{
    wp *p = arg;
    for (;;) {
        size_t n = 0;
        int idle = 0;
        wp_job *first = take_batch(p, &n, &idle);
        if (first == NULL && !idle)
            return NULL; /* stopping and nothing left */
        if (first == NULL) {
            probe_idle(p);
            continue;
        }
        wp_job *last = first;
        for (wp_job *j = first; j != NULL; j = j->next) {
            sign_one(p, j, (unsigned)n);
            last = j;
        }
        finish_batch(p, first, last, n);
    }
}

static int check_args(unsigned workers, unsigned batch_limit, unsigned queue_limit, dh_err *e)
{
    if (workers < 1 || workers > WP_MAX_WORKERS)
        return dh_err_set(e, DH_EINVAL, "worker pool: %u workers (1 to %u)", workers,
                          WP_MAX_WORKERS);
    if (batch_limit < 1)
        return dh_err_set(e, DH_EINVAL, "worker pool: batch_limit must be at least 1");
    if (queue_limit < 1)
        return dh_err_set(e, DH_EINVAL, "worker pool: queue_limit must be at least 1");
    return DH_OK;
}

/* A condition variable whose timed waits use CLOCK_MONOTONIC. */
static int cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

/* Everything but the threads; on failure the caller frees p with wp_free,
 * which undoes exactly what was done. */
static int pool_init(wp *p, hsm *h, unsigned workers, dh_err *e)
{
    p->h = h;
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        return dh_err_set(e, DH_ENOMEM, "worker pool: cannot create a lock");
    if (cond_init_monotonic(&p->cv) != 0) {
        pthread_mutex_destroy(&p->mu);
        return dh_err_set(e, DH_ENOMEM, "worker pool: cannot create a condition variable");
    }
    if (pthread_mutex_init(&p->done_mu, NULL) != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        return dh_err_set(e, DH_ENOMEM, "worker pool: cannot create a lock");
    }
    p->locks = 1;
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0)
        return dh_err_set(e, DH_EIO, "worker pool: eventfd: %s", strerror(errno));
    p->threads = calloc(workers, sizeof *p->threads);
    if (p->threads == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    return DH_OK;
}

int wp_new(hsm *h, unsigned workers, unsigned batch_limit, unsigned queue_limit, wp **out,
           dh_err *e)
{
    *out = NULL;
    int rc = check_args(workers, batch_limit, queue_limit, e);
    if (rc != DH_OK)
        return rc;
    wp *p = calloc(1, sizeof *p);
    if (p == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    p->efd = -1;
    p->batch_limit = batch_limit;
    p->queue_limit = queue_limit;
    rc = pool_init(p, h, workers, e);
    for (unsigned i = 0; rc == DH_OK && i < workers; i++) {
        int err = pthread_create(&p->threads[i], NULL, worker_main, p);
        if (err != 0)
            rc = dh_err_set(e, DH_ENOMEM, "worker pool: starting thread %u: %s", i + 1,
                            strerror(err));
        else
            p->nthreads++;
    }
    if (rc != DH_OK) {
        wp_free(p); /* stops and joins the threads that did start */
        return rc;
    }
    *out = p;
    return DH_OK;
}

int wp_submit(wp *p, wp_job *job, int *full)
{
    if (full != NULL)
        *full = 0;
    job->next = NULL;
    job->status = DH_OK;
    job->reason[0] = '\0';
    job->token_ms = 0;
    job->batch = 0;
    pthread_mutex_lock(&p->mu);
    int rc = DH_OK;
    if (p->stopping) {
        rc = DH_ESTATE;
    } else if (p->depth >= p->queue_limit) {
        rc = DH_ESTATE;
        if (full != NULL)
            *full = 1;
    } else {
        if (p->tail != NULL)
            p->tail->next = job;
        else
            p->head = job;
        p->tail = job;
        p->depth++;
        if (p->nidle > 0)
            pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int wp_wake_fd(const wp *p)
{
    return p->efd;
}

size_t wp_drain(wp *p, wp_done_fn done, void *arg)
{
    /* Clear the fd before taking the list: a batch finished after the take
     * writes the fd again, so it is never stranded (the worst case is one
     * wake-up that finds nothing). */
    uint64_t v;
    ssize_t r;
    do
        r = read(p->efd, &v, sizeof v);
    while (r < 0 && errno == EINTR);

    pthread_mutex_lock(&p->done_mu);
    wp_job *j = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->done_mu);

    size_t n = 0;
    while (j != NULL) {
        wp_job *next = j->next; /* the callback owns j from here on */
        j->next = NULL;
        done(j, arg);
        j = next;
        n++;
    }
    return n;
}

size_t wp_queue_depth(wp *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->depth;
    pthread_mutex_unlock(&p->mu);
    return n;
}

size_t wp_in_flight(wp *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->in_flight;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void wp_stop(wp *p)
{
    if (p == NULL || p->joined)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    p->joined = 1;
}

void wp_free(wp *p)
{
    if (p == NULL)
        return;
    if (p->locks) {
        wp_stop(p); /* joins the threads that started, if any */
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->done_mu);
    }
    free(p->threads);
    if (p->efd >= 0)
        close(p->efd);
    free(p);
}
