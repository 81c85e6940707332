/*
 * lookup_cache.h - the milter's short memory of which keys sign a domain.
 *
 * Asking dkimhsmd "which keys sign example.com?" before every message costs
 * a round trip per message; the answer changes only when an operator changes
 * keys. The cache keeps each answer (keys found, or none) for ttl_ms. It
 * never makes a message wrongly signed: dkimhsmd still checks every SIGN
 * request, and a front end that is refused after a cached answer drops it
 * (lc_drop) and asks again.
 *
 * Thread-safe. Bounded: a fixed number of slots, a new answer replaces the
 * one in its slot.
 */
#ifndef DAEMON_LOOKUP_CACHE_H
#define DAEMON_LOOKUP_CACHE_H

#include <stdint.h>

#include "common/err.h"
#include "daemon/client.h"

typedef struct lc lc;

/* ttl_ms 0 gives a cache that never holds anything (every lookup asks).
 * *out is owned by the caller: lc_free(). */
int lc_new(unsigned ttl_ms, lc **out, dh_err *e) DH_WUR;
void lc_free(lc *c);

/* Copies a fresh answer for domain (case-insensitive) into *out: 1, or 0
 * when there is none. now_ms is a monotonic clock reading. */
int lc_get(lc *c, const char *domain, uint64_t now_ms, ac_lookup *out);
/* Remembers an answer; only AP_OK and AP_NOTFOUND ones are kept (a TEMPFAIL
 * says nothing about the next message). */
void lc_put(lc *c, const char *domain, uint64_t now_ms, const ac_lookup *answer);
void lc_drop(lc *c, const char *domain);

#endif
