/*
 * apiworker.h - the management API (api.h) on a thread of its own.
 *
 * A request may ask DNS (3 s per query when DNS does not answer) or generate
 * a key in the token (up to about a second for RSA). On the event loop that
 * would stop every signature for as long, so httpd.c hands each /api/
 * request here: a copy of it goes to the worker thread, which runs
 * api_handle() on its own connection to the state database, with a copy of
 * the lifecycle settings (lifesettings.h). The reply comes back on the loop
 * thread through done(), after the daemon's changed() when the request
 * changed a key: the keys in use follow before the client hears of it.
 * Requests run one at a time, in the order they came.
 */
#ifndef DAEMON_APIWORKER_H
#define DAEMON_APIWORKER_H

#include <event2/event.h>

#include "common/err.h"
#include "conf/conf.h"
#include "daemon/api.h"
#include "hsm/hsm.h"

typedef struct aw aw;

typedef struct aw_config {
    /* api_token_file, state_dir and the lifecycle settings; copied, not kept */
    const conf *cf;
    hsm *token;                 /* borrowed, thread-safe (hsm.h); must outlive the aw */
    void (*changed)(void *arg); /* on the loop thread after a change; may be NULL */
    void *arg;
} aw_config;

/* On the loop thread: the reply to the request queued with ctx. The reply
 * (its body included) stays the aw's; it is freed after done returns. */
typedef void (*aw_done_fn)(void *ctx, const api_reply *reply);

/* Reads the API token file (api_new: call it before privileges are dropped)
 * and opens the worker's database connection. The thread starts with the
 * first request, on the loop thread, after the drop. *out: aw_free(). */
int aw_new(struct event_base *base, const aw_config *cfg, aw **out, dh_err *e) DH_WUR;

/* A reloaded configuration (SIGHUP): requests from now on use its lifecycle
 * settings (the API token is read once, at start). DH_ENOMEM keeps the old. */
int aw_reconfigure(aw *w, const conf *cf, dh_err *e) DH_WUR;

/* Copies r and queues it; done(ctx, reply) follows on the loop thread. DH_OK,
 * or DH_ENOMEM / DH_EIO (the thread cannot start) with nothing queued. */
int aw_submit(aw *w, const api_request *r, aw_done_fn done, void *ctx, dh_err *e) DH_WUR;

/* Stops the thread after the request it is running; requests still queued
 * or finished but not handed back are dropped without done(). Call it before
 * whatever done() would touch is freed. NULL is a no-op. */
void aw_free(aw *w);

#endif
