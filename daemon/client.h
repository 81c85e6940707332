/*
 * client.h - the agent protocol's client side: a pool of connections to
 * dkimhsmd, shared by many threads (libmilter's workers).
 *
 * Each call takes an idle connection (or opens one, up to max_conns; beyond
 * that it waits), sends its request(s), reads the reply(ies) matching its
 * request ids, and puts the connection back. A connection that fails (the
 * daemon restarted, a timeout, a malformed reply) is closed, and the next
 * call opens a fresh one: clients reconnect by themselves.
 */
#ifndef DAEMON_CLIENT_H
#define DAEMON_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "daemon/proto.h"

typedef struct ac ac;

/* No connection is made yet. timeout_ms bounds connect + each whole call
 * (waiting for a free connection included). DH_EINVAL for a socket path too
 * long for sun_path, max_conns 0 or timeout_ms 0. */
int ac_new(const char *socket_path, unsigned max_conns, unsigned timeout_ms, ac **out,
           dh_err *e) DH_WUR;
void ac_free(ac *c);

/* One signing request's outcome, owned by the caller (ac_result_clear). */
typedef struct ac_result {
    uint8_t status; /* enum ap_status */
    dh_buf sig;     /* status AP_OK */
    char reason[256];
} ac_result;
void ac_result_clear(ac_result *r);

/* Sends n SIGN requests pipelined on one connection and waits for all n
 * replies (they may come back in any order). DH_OK when every reply arrived
 * (each result's status says what the daemon answered); DH_EIO with a message
 * when the daemon could not be reached or the connection failed or timed out;
 * DH_EINVAL (nothing sent) for a request the protocol cannot carry.
 * results[0..n-1] are written only on DH_OK, overwriting (not freeing) what
 * they held. At most AP_MAX_INFLIGHT requests are unanswered at a time. */
int ac_sign(ac *c, const ap_sign *reqs, size_t n, ac_result *results, dh_err *e) DH_WUR;

typedef struct ac_lookup {
    uint8_t status; /* AP_OK, AP_NOTFOUND, AP_TEMPFAIL, ... */
    char domain[AP_MAX_NAME + 1];
    size_t count;
    struct {
        char selector[AP_MAX_NAME + 1];
        uint8_t alg;
    } sel[AP_MAX_LOOKUP];
    char reason[256];
} ac_lookup;

/* Which keys sign for From: domain. DH_OK when a reply arrived; DH_EIO otherwise.
 * *out is written only on DH_OK. */
int ac_lookup_domain(ac *c, const char *domain, ac_lookup *out, dh_err *e) DH_WUR;

/* PING: DH_OK and *status (AP_OK or AP_TEMPFAIL) when the daemon answered. */
int ac_ping(ac *c, uint8_t *status, dh_err *e) DH_WUR;

#endif
