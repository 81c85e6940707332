/*
 * keyset.h - the daemon's in-memory picture of which keys may sign: a
 * snapshot of the state database with every usable key opened in the token.
 *
 * A snapshot never changes. Reloading (SIGHUP, or a change in the database)
 * builds a new one; requests already queued keep a reference to the snapshot
 * they were checked against, so its hsm_key handles stay valid until the last
 * of them comes back (kset_unref).
 */
#ifndef DAEMON_KEYSET_H
#define DAEMON_KEYSET_H

#include <stddef.h>

#include "common/err.h"
#include "dkim/types.h"
#include "hsm/hsm.h"
#include "keystore/keystore.h"

typedef struct kset kset;

typedef struct kset_key {
    const char *domain, *selector; /* owned by the snapshot */
    enum dkim_alg alg;
    enum ks_state state;
    hsm_key *key; /* NULL when the state does not allow signing */
} kset_key;

/* Loads every selector from the database and opens the keys that may sign.
 * A key missing from the token is logged and left unusable, not fatal.
 * *out holds one reference. */
int kset_load(ks *store, hsm *h, kset **out, dh_err *e) DH_WUR;
void kset_ref(kset *s);
void kset_unref(kset *s);

/* The entry for (domain, selector), or NULL. */
const kset_key *kset_find(const kset *s, const char *domain, const char *selector);

/* The usable keys of domain, at most max, ed25519 first; returns how many. */
size_t kset_usable(const kset *s, const char *domain, const kset_key **out, size_t max);

size_t kset_count(const kset *s);

#endif
