/*
 * handler.h - the agent protocol's request handler: frame bytes in, reply
 * bytes (or a queued token job) out, with no socket in sight, so a test or a
 * fuzzer can drive it directly (p11-kit's p11_rpc_server_handle does the same).
 *
 * It is not a signing oracle (ssh-agent's process_sign_request2): for SIGN it
 * finds the DKIM-Signature field at the end of the block, and refuses unless
 * its d=, s= and a= equal the request, its b= is empty, its h= names from, the
 * selector may sign, and the caller's uid may sign for the domain. Only then
 * is the block hashed and the digest queued for the token.
 *
 * Everything here runs on the event loop's thread.
 */
#ifndef DAEMON_HANDLER_H
#define DAEMON_HANDLER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "daemon/keyset.h"
#include "daemon/metrics.h"
#include "daemon/policy.h"
#include "daemon/workers.h"

typedef struct hd hd;

enum hd_result {
    HD_REPLIED = 0, /* a reply frame was appended */
    HD_QUEUED = 1,  /* a token job was queued; the reply comes from hd_complete */
    HD_CLOSE = 2,   /* an ERROR frame was appended; close after sending it */
};

/* pool, metrics and h are borrowed and must outlive the handler. */
int hd_new(wp *pool, mx *metrics, hsm *h, hd **out, dh_err *e) DH_WUR;
void hd_free(hd *d);

/* Installs a new key snapshot and policy (at start and on reload). The
 * handler takes over the caller's reference to ks and ownership of pol;
 * requests already queued keep the snapshot they were checked against. */
void hd_set_state(hd *d, kset *keys, policy *pol);

/* While stopping, new SIGN requests are answered TEMPFAIL. */
void hd_set_stopping(hd *d);

/* 1 while the last token operation worked (PING, /healthz). */
int hd_token_ok(const hd *d);
/* Selectors in the current snapshot. */
size_t hd_keys(const hd *d);

/* Handles one whole frame from a caller with uid; conn is an opaque tag
 * returned by hd_complete for the queued job's reply. */
enum hd_result hd_handle(hd *d, uid_t uid, void *conn, const uint8_t *frame, size_t len,
                         dh_buf *reply);

/* For a job back from the worker pool: appends its SIGN_REPLY to reply, logs
 * and counts it, frees the job, and returns its conn tag. */
void *hd_complete(hd *d, wp_job *job, dh_buf *reply);

/* Registers the daemon's metric families on m (call once). */
int hd_register_metrics(mx *m) DH_WUR;

#endif
