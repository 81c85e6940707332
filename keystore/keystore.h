/*
 * keystore.h - selector metadata in the embedded SQLite state database.
 *
 * The token holds the keys; this database says which key serves which
 * (domain, selector), its algorithm, custody and lifecycle state. It lives at
 * STATE_DIR/state.db. The schema has a version (PRAGMA user_version) and
 * ks_open() applies every missing migration in one transaction each, so an
 * older database is brought forward and a newer one is refused.
 *
 * Names are stored lower-case without a final dot. Strings in ks_selector are
 * owned by the struct: ks_selector_clear() frees them.
 *
 * Schema (version 2):
 *   selectors      one row per key. (domain, selector) is unique among rows
 *                  that are not destroyed, so a rotation can reuse a name
 *                  ("selector1") once its old key is destroyed; the destroyed
 *                  row stays, with its public key, for show and the audit.
 *                  retiring_since: when the key entered retiring (retire_after
 *                  counts from it); predecessor: the selector this key
 *                  replaces in a rotation (NULL otherwise).
 *   state_history  every state change: key_id, from (NULL at creation), to,
 *                  time, actor, note.
 *   audit_log      the hash-chained audit log; owned by audit/ (audit.h),
 *                  created here so that one schema version covers the file.
 *                  Triggers refuse UPDATE and DELETE on it.
 *
 * A state change is one transaction: ks_begin(), ks_set_state() (row +
 * history), the audit entry (au_append), ks_commit(). lifecycle/ does that.
 */
#ifndef KEYSTORE_KEYSTORE_H
#define KEYSTORE_KEYSTORE_H

#include <stddef.h>

#include "common/err.h"
#include "dkim/types.h"

#define KS_SCHEMA_VERSION 2

typedef struct ks ks;

/* Lifecycle (the key lifecycle work moves keys along this line). */
enum ks_state {
    KS_CREATED = 0, /* key exists in the token; record not yet seen in DNS */
    KS_PUBLISHED,   /* record seen in DNS and matching */
    KS_ACTIVE,      /* signs mail */
    KS_RETIRING,    /* replaced; still published for mail in transit */
    KS_REVOKED,     /* DNS publishes p= empty; never signs */
    KS_DESTROYED,   /* token object deleted */
};

enum ks_custody {
    KS_GENERATED = 0, /* generated inside the token (CKA_LOCAL) */
    KS_IMPORTED,      /* imported from a PEM file */
};

typedef struct ks_selector {
    char *domain;
    char *selector;
    enum dkim_alg alg;
    unsigned bits;
    char *key_id;     /* CKA_ID, lower-case hex */
    char *public_key; /* base64 of the p= value */
    enum ks_custody custody;
    enum ks_state state;
    long long created;        /* unix seconds */
    long long state_changed;  /* unix seconds */
    long long retiring_since; /* unix seconds it entered retiring; 0 if never */
    char *predecessor;        /* selector this key replaces (rotation); NULL if none */
} ks_selector;

/* One state change of one key. from_set is 0 for the creation entry. */
typedef struct ks_history {
    char *key_id;
    int from_set;
    enum ks_state from, to;
    long long time;
    char *actor;
    char *note;
} ks_history;

/* Creates STATE_DIR (mode 0700) if needed, opens/creates state.db and
 * migrates it. DH_EDB with SQLite's message on failure. */
int ks_open(const char *state_dir, ks **out, dh_err *e) DH_WUR;
void ks_close(ks *k);
/* The schema version of the open database (KS_SCHEMA_VERSION after ks_open). */
int ks_schema_version(ks *k);
/* A number that changes when another connection (another process) has
 * committed to the database since the last call: SQLite's data_version. A
 * long-lived reader polls it to notice key changes made by dkim-keyctl. */
int ks_data_version(ks *k, long long *out, dh_err *e) DH_WUR;

/* The directory holding state.db (audit/ keeps its anchor file there). */
const char *ks_dir(ks *k);
/* The SQLite handle, for audit/ only: its table lives in this database and
 * its entries are written inside ks_begin/ks_commit. Owned by k. */
struct sqlite3 *ks_sqlite(ks *k);

/* BEGIN IMMEDIATE (waits for another writer up to 5 s), COMMIT, ROLLBACK.
 * ks_rollback is a no-op outside a transaction. */
int ks_begin(ks *k, dh_err *e) DH_WUR;
int ks_commit(ks *k, dh_err *e) DH_WUR;
void ks_rollback(ks *k);

/* Moves the key cur->key_id from cur->state to `to` and appends the history
 * entry, in the caller's transaction. DH_ESTATE when the row is no longer in
 * cur->state (changed by someone else since it was read). Sets
 * retiring_since when to is KS_RETIRING. Does not check the lifecycle rules:
 * lifecycle/ does. */
int ks_set_state(ks *k, const ks_selector *cur, enum ks_state to, long long now, const char *actor,
                 const char *note, dh_err *e) DH_WUR;
/* Appends a history entry for s without a state change (from_set 0: creation). */
int ks_add_history(ks *k, const ks_selector *s, long long now, const char *actor, const char *note,
                   dh_err *e) DH_WUR;
/* History of (domain, selector), oldest first, every key that had the name.
 * *out: caller frees with ks_history_free(). */
int ks_history_get(ks *k, const char *domain, const char *selector, ks_history **out, size_t *n,
                   dh_err *e) DH_WUR;
void ks_history_free(ks_history *h, size_t n);

/* Stores a new selector. DH_EEXIST when (domain, selector) is taken by a key
 * that is not destroyed. */
int ks_insert(ks *k, const ks_selector *s, dh_err *e) DH_WUR;
/* Removes a row; used to undo an insert whose token work failed. */
int ks_delete(ks *k, const char *domain, const char *selector, dh_err *e) DH_WUR;
/* The key named (domain, selector): the live one, else the newest destroyed
 * one. DH_ENOTFOUND naming domain and selector when absent. */
int ks_get(ks *k, const char *domain, const char *selector, ks_selector *out, dh_err *e) DH_WUR;
/* All selectors (domain NULL) or one domain's, ordered by domain, created;
 * destroyed rows included (callers that sign skip them by state).
 * *out is an array the caller frees with ks_list_free(). */
int ks_list(ks *k, const char *domain, ks_selector **out, size_t *n, dh_err *e) DH_WUR;
void ks_list_free(ks_selector *list, size_t n);
void ks_selector_clear(ks_selector *s);

/* "created", "published", ... and back. */
const char *ks_state_name(enum ks_state s);
int ks_state_parse(const char *s, enum ks_state *out);
const char *ks_custody_name(enum ks_custody c);

/* Lower-cases name, drops one final dot, and checks it is a DNS name
 * (labels of letters, digits, '-' and '_', 1-63 bytes, 253 in all). what
 * names the argument in the error ("domain", "selector"). *out: caller frees. */
int ks_normalize_name(const char *name, const char *what, char **out, dh_err *e) DH_WUR;

#endif
