/*
 * lifetimer.h - the daemon's lifecycle timer (§5 automatic rotation): a
 * libevent timer on the daemon's loop that moves keys along their life with
 * actor "timer", by the same rules as dkim-keyctl (lifecycle/lifecycle.h).
 *
 * Each tick, in this order:
 *   1. lf_expire: retiring keys whose retire_after has passed -> revoked.
 *   2. rotate_after > 0: every active key that has signed longer than
 *      rotate_after (since it became active) gets one lf_rotate step: the
 *      first tick creates the successor, a later tick, once DNS shows the
 *      successor's record, activates it and retires the old key. A key DNS
 *      does not show never signs.
 *   3. After a state change: the caller's changed(arg) (the daemon reloads
 *      its keys: its own commits do not move the state DB's data_version).
 *   4. Publishing: every record lf_records says the zone must hold (new keys
 *      with their p=, revoked and destroyed ones with p= empty) is compared
 *      with what DNS serves (dn_check, dns_server). When it differs and
 *      dns_update_server and tsig_key_file are set, the record is sent by
 *      RFC 2136 update signed with TSIG (zone: delegation_zone in provider
 *      mode, else the signing domain itself); otherwise the zone line that
 *      must be published is logged (once per record and value).
 * Each action and each wait is logged once, not at every tick.
 *
 * The interval is LT_DEFAULT_MS; $DKIMHSM_LIFETIMER_MS overrides it (tests
 * run whole rotations in seconds). A tick runs on the loop thread and blocks
 * it for its DNS queries and, when a successor is created, the token's key
 * generation; a tick longer than a second is logged.
 */
#ifndef DAEMON_LIFETIMER_H
#define DAEMON_LIFETIMER_H

#include "common/err.h"
#include "conf/conf.h"
#include "lifecycle/lifecycle.h"

#define LT_DEFAULT_MS 60000
#define LT_ENV_MS "DKIMHSM_LIFETIMER_MS"
#define LT_ACTOR "timer"
/* TTL of the records the timer publishes: short, so that a revocation or a
 * new key reaches verifiers' caches soon. */
#define LT_RECORD_TTL 300

struct event_base;
typedef struct lt lt;
typedef void (*lt_changed_fn)(void *arg);

/* Starts the timer on base. life and *cfp are read at every tick and stay the
 * caller's: cfp points at the caller's current conf pointer, so a reloaded
 * configuration applies from the next tick. changed(arg) (may be NULL) is
 * called after a tick that changed a key's state. DH_EINVAL for a bad
 * $DKIMHSM_LIFETIMER_MS, DH_EIO when libevent refuses the timer. *out:
 * lt_free(). */
int lt_new(struct event_base *base, lf_ctx *life, conf *const *cfp, lt_changed_fn changed,
           void *arg, lt **out, dh_err *e) DH_WUR;
/* One tick at once (what the timer runs). */
void lt_tick(lt *t);
/* Stops the timer and frees it; NULL is a no-op. */
void lt_free(lt *t);

#endif
