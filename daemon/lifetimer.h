/*
 * lifetimer.h - the daemon's lifecycle timer (§5 automatic rotation): a
 * thread of its own that moves keys along their life with actor "timer", by
 * the same rules as dkim-keyctl (lifecycle/lifecycle.h).
 *
 * Each tick, in this order:
 *   1. lf_expire: retiring keys whose retire_after has passed -> revoked.
 *   2. rotate_after > 0: every active key that has signed longer than
 *      rotate_after (since it became active) gets one lf_rotate step: the
 *      first tick creates the successor, a later tick, once DNS shows the
 *      successor's record, activates it and retires the old key. A key DNS
 *      does not show never signs.
 *   3. Publishing: every record lf_records says the zone must hold (new keys
 *      with their p=, revoked and destroyed ones with p= empty) is compared
 *      with what DNS serves (dn_check, dns_server). When it differs and
 *      dns_update_server and tsig_key_file are set, the record is sent by
 *      RFC 2136 update signed with TSIG (zone: delegation_zone in provider
 *      mode, else the one the update server says holds the name); otherwise
 *      the zone line that must be published is logged (once per record and
 *      value).
 * Each action and each wait is logged once, not at every tick.
 *
 * Why a thread: a tick asks DNS (each query may wait dns/'s timeout, 3 s,
 * when DNS is unreachable) and may generate a key in the token (up to about
 * a second for RSA). On the loop thread that would stop every signature for
 * as long. The thread has its own connection to the state database; the
 * daemon's key watch sees its commits like dkim-keyctl's and reloads the
 * keys within 250 ms. It starts when the loop first runs, after privileges
 * are dropped, with a tick at once; then one tick per interval.
 *
 * The interval is LT_DEFAULT_MS; $DKIMHSM_LIFETIMER_MS overrides it (tests
 * run whole rotations in seconds).
 */
#ifndef DAEMON_LIFETIMER_H
#define DAEMON_LIFETIMER_H

#include "common/err.h"
#include "conf/conf.h"
#include "hsm/hsm.h"
#include "lifecycle/lifecycle.h"

#define LT_DEFAULT_MS 60000
#define LT_ENV_MS "DKIMHSM_LIFETIMER_MS"
#define LT_ACTOR "timer"
/* TTL of the records the timer publishes: short, so that a revocation or a
 * new key reaches verifiers' caches soon. */
#define LT_RECORD_TTL 300

struct event_base;
typedef struct lt lt;

/* Reads $DKIMHSM_LIFETIMER_MS, copies what a tick needs of cf, opens its own
 * connection to cf->state_dir and arranges for the thread to start when base
 * runs. token (thread-safe, hsm.h) stays the caller's and must outlive the
 * timer. DH_EINVAL for a bad $DKIMHSM_LIFETIMER_MS, DH_EIO when libevent
 * refuses, a keystore error when the database cannot be opened. *out:
 * lt_free(). */
int lt_new(struct event_base *base, hsm *token, const conf *cf, lt **out, dh_err *e) DH_WUR;
/* A reloaded configuration (SIGHUP): the next tick uses its settings. cf
 * stays the caller's; only a copy is kept. DH_ENOMEM leaves the old ones. */
int lt_reconfigure(lt *t, const conf *cf, dh_err *e) DH_WUR;
/* Stops the thread (a tick in progress ends after its current DNS query or
 * key generation) and frees the timer; NULL is a no-op. */
void lt_free(lt *t);

#endif
