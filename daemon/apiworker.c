#include "daemon/apiworker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/lifesettings.h"

/* One request: a copy the thread owns, then its reply. */
typedef struct aw_job {
    api_request r; /* its strings and body point into the job's own copies */
    char *path, *query, *authorization, *peer;
    uint8_t *body;
    api_reply reply;
    int changed;
    aw_done_fn done;
    void *ctx;
    struct aw_job *next;
} aw_job;

struct aw {
    struct event *wake; /* made active by the thread: replies to hand back */
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a request queued, or stop */
    atomic_int stop;
    aw_job *todo, *todo_tail, *done, *done_tail; /* under mu */
    ls_settings *next;                           /* under mu: what the next request uses */
    void (*changed)(void *arg);
    void *arg;
    /* The thread's alone once it runs: */
    hsm *token;
    ks *store;
    api *api;
    lf_ctx life; /* api's context: rebuilt before each request */
    lf_dns_arg dns;
    aw_job *cur; /* the request api_handle is running */
};

static void job_free(aw_job *j)
{
    if (j == NULL)
        return;
    free(j->path);
    free(j->query);
    free(j->authorization);
    free(j->peer);
    free(j->body);
    dh_buf_free(&j->reply.body);
    free(j);
}

static void jobs_free(aw_job *j)
{
    while (j != NULL) {
        aw_job *next = j->next;
        job_free(j);
        j = next;
    }
}

/* strdup that keeps NULL; 0 when out of memory. */
static int dup_opt(const char *s, char **out)
{
    *out = s ? strdup(s) : NULL;
    return s == NULL || *out != NULL;
}

static aw_job *job_of(const api_request *r)
{
    aw_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    int ok = dup_opt(r->path, &j->path) && dup_opt(r->query, &j->query) &&
             dup_opt(r->authorization, &j->authorization) && dup_opt(r->peer, &j->peer);
    if (ok && r->body_len > 0 && (j->body = malloc(r->body_len)) == NULL)
        ok = 0;
    if (!ok) {
        job_free(j);
        return NULL;
    }
    if (r->body_len > 0)
        memcpy(j->body, r->body, r->body_len);
    j->r = (api_request){.method = r->method,
                         .path = j->path,
                         .query = j->query,
                         .authorization = j->authorization,
                         .body = j->body,
                         .body_len = r->body_len,
                         .peer = j->peer};
    return j;
}

/* api_handle's changed callback, on the thread: noted on the request, so
 * the loop reloads the keys before it replies. */
static void on_changed(void *arg)
{
    aw *w = arg;
    if (w->cur != NULL)
        w->cur->changed = 1;
}

static void run_one(aw *w, aw_job *j, ls_settings *s)
{
    if (s == NULL) {
        j->reply.status = 500;
        if (dh_buf_puts(&j->reply.body, "{\"error\":\"out of memory\"}") != DH_OK)
            dh_buf_free(&j->reply.body);
        return;
    }
    ls_life(s, w->store, w->token, &w->dns, &w->life);
    w->cur = j;
    api_handle(w->api, &j->r, &j->reply);
    w->cur = NULL;
}

static void *run(void *arg)
{
    aw *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!atomic_load(&w->stop)) {
        aw_job *j = w->todo;
        if (j == NULL) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        w->todo = j->next;
        if (w->todo == NULL)
            w->todo_tail = NULL;
        j->next = NULL;
        ls_settings *s = ls_copy(w->next);
        pthread_mutex_unlock(&w->mu);
        run_one(w, j, s);
        ls_free(s);
        pthread_mutex_lock(&w->mu);
        if (w->done_tail)
            w->done_tail->next = j;
        else
            w->done = j;
        w->done_tail = j;
        pthread_mutex_unlock(&w->mu);
        event_active(w->wake, EV_READ, 0); /* outside mu: libevent takes its own lock */
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* On the loop: the finished requests, in order; the keys first when one of
 * them changed a key. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    aw *w = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&w->mu);
    aw_job *list = w->done;
    w->done = w->done_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    int changed = 0;
    for (aw_job *j = list; j != NULL; j = j->next)
        changed |= j->changed;
    if (changed && w->changed != NULL)
        w->changed(w->arg);
    for (aw_job *j = list; j != NULL; j = j->next)
        j->done(j->ctx, &j->reply);
    jobs_free(list);
}

int aw_new(struct event_base *base, const aw_config *cfg, aw **out, dh_err *e)
{
    *out = NULL;
    aw *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        free(w);
        return dh_err_set(e, DH_EIO, "management API: cannot set up its lock");
    }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return dh_err_set(e, DH_EIO, "management API: cannot set up its lock");
    }
    w->token = cfg->token;
    w->changed = cfg->changed;
    w->arg = cfg->arg;
    int rc = (w->next = ls_from_conf(cfg->cf)) ? DH_OK : dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc == DH_OK)
        rc = ks_open(cfg->cf->state_dir, &w->store, e);
    if (rc == DH_OK) {
        /* The thread builds w->life before each request; api only keeps
         * its address. */
        w->life.store = w->store;
        api_config ac = {cfg->cf->api_token_file, &w->life, on_changed, w};
        rc = api_new(&ac, &w->api, e);
    }
    if (rc == DH_OK && (w->wake = event_new(base, -1, 0, on_wake, w)) == NULL)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc != DH_OK) {
        aw_free(w);
        return rc;
    }
    *out = w;
    return DH_OK;
}

int aw_reconfigure(aw *w, const conf *cf, dh_err *e)
{
    return ls_replace(&w->mu, &w->next, cf, e);
}

int aw_submit(aw *w, const api_request *r, aw_done_fn done, void *ctx, dh_err *e)
{
    /* Started here, on the loop thread, so never before the privilege drop:
     * nothing the API writes is created as root. */
    if (!w->started) {
        int err = pthread_create(&w->thread, NULL, run, w);
        if (err != 0)
            return dh_err_set(e, DH_EIO, "management API: cannot start its thread: %s",
                              strerror(err));
        w->started = 1;
    }
    aw_job *j = job_of(r);
    if (j == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    j->done = done;
    j->ctx = ctx;
    pthread_mutex_lock(&w->mu);
    if (w->todo_tail)
        w->todo_tail->next = j;
    else
        w->todo = j;
    w->todo_tail = j;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return DH_OK;
}

void aw_free(aw *w)
{
    if (w == NULL)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        atomic_store(&w->stop, 1);
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    jobs_free(w->todo);
    jobs_free(w->done);
    if (w->wake != NULL)
        event_free(w->wake);
    api_free(w->api);
    ks_close(w->store);
    ls_free(w->next);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
