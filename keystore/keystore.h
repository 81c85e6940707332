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
 */
#ifndef KEYSTORE_KEYSTORE_H
#define KEYSTORE_KEYSTORE_H

#include <stddef.h>

#include "common/err.h"
#include "dkim/types.h"

#define KS_SCHEMA_VERSION 1

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
    long long created;       /* unix seconds */
    long long state_changed; /* unix seconds */
} ks_selector;

/* Creates STATE_DIR (mode 0700) if needed, opens/creates state.db and
 * migrates it. DH_EDB with SQLite's message on failure. */
int ks_open(const char *state_dir, ks **out, dh_err *e) DH_WUR;
void ks_close(ks *k);
/* The schema version of the open database (KS_SCHEMA_VERSION after ks_open). */
int ks_schema_version(ks *k);

/* Stores a new selector. DH_EEXIST when (domain, selector) is taken. */
int ks_insert(ks *k, const ks_selector *s, dh_err *e) DH_WUR;
/* Removes a row; used to undo an insert whose token work failed. */
int ks_delete(ks *k, const char *domain, const char *selector, dh_err *e) DH_WUR;
/* DH_ENOTFOUND naming domain and selector when absent. */
int ks_get(ks *k, const char *domain, const char *selector, ks_selector *out, dh_err *e) DH_WUR;
/* All selectors (domain NULL) or one domain's, ordered by domain, created.
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
