/*
 * audit.h - the append-only, hash-chained audit log of key events.
 *
 * One entry per key event (create, import, seen-in-dns, activate, retire,
 * revoke, destroy, login-failure, ...) with time, actor ("uid:1000(alice)",
 * "api:NAME", "timer"), domain, selector, key fingerprint and a free detail
 * text. The entries live in the audit_log table of the state database
 * (keystore/ creates it; triggers refuse UPDATE and DELETE), so an entry is
 * written in the same transaction as the state change it records.
 *
 * Chain: entry N stores prev_hash = hash of entry N-1 (64 zeros for the
 * first) and hash = SHA-256, lower-case hex, over
 *     "dkimhsm-audit-v1\n" then, for seq, time, actor, event, domain,
 *     selector, fingerprint, detail, prev_hash in that order,
 *     "<decimal byte length>:<bytes>\n"
 * Length prefixes make the serialization unambiguous whatever the fields
 * contain. Editing a field breaks that entry's hash; removing or reordering
 * entries breaks the seq sequence or a prev_hash link.
 *
 * Anchor: removing the newest entries leaves a valid shorter chain, so the
 * last seq and hash are also kept outside the database in STATE_DIR/audit.head
 * ("dkimhsm-audit-head v1 SEQ HASH\n", written atomically after each commit,
 * under an flock on STATE_DIR/audit.lock so that concurrent writers, other
 * processes or other threads on connections of their own, leave the newest).
 * The anchor may lag the database by entries whose commit happened just
 * before a crash (au_verify reports that as a note, not a failure); it may
 * never be ahead of it. Someone who can rewrite both the database and the
 * anchor can forge a whole new chain: ship the head hash off the machine
 * (au_verify prints it) to close that.
 *
 * Fingerprint of a key: SHA-256 of the p= bytes (the decoded base64: SPKI DER
 * for RSA, the raw 32 bytes for Ed25519), lower-case hex, 64 characters.
 */
#ifndef AUDIT_AUDIT_H
#define AUDIT_AUDIT_H

#include <stddef.h>

#include "common/err.h"
#include "keystore/keystore.h"

#define AU_HASH_HEX 65 /* 64 hex digits and a NUL */

typedef struct au_entry {
    long long seq;
    long long time; /* unix seconds */
    char *actor, *event, *domain, *selector, *fingerprint, *detail;
    char prev_hash[AU_HASH_HEX], hash[AU_HASH_HEX];
} au_entry;

/* Appends one entry inside the caller's transaction (ks_begin ... ks_commit)
 * and, when seq_out is not NULL, gives its seq. Empty strings are allowed for
 * fields that do not apply (domain of a login failure, ...); NULL is taken as
 * "". After ks_commit, call au_anchor_update. */
int au_append(ks *k, long long time, const char *actor, const char *event, const char *domain,
              const char *selector, const char *fingerprint, const char *detail, long long *seq_out,
              dh_err *e) DH_WUR;

/* Writes STATE_DIR/audit.head from the newest entry in the database. */
int au_anchor_update(ks *k, dh_err *e) DH_WUR;

/* au_append in a transaction of its own, then au_anchor_update: for events
 * that change no state (login failures). */
int au_record(ks *k, long long time, const char *actor, const char *event, const char *domain,
              const char *selector, const char *fingerprint, const char *detail, dh_err *e) DH_WUR;

/* Entries with seq > after_seq, oldest first (after_seq 0: all). *out: caller
 * frees with au_list_free(). */
int au_list(ks *k, long long after_seq, au_entry **out, size_t *n, dh_err *e) DH_WUR;
void au_list_free(au_entry *l, size_t n);

enum au_problem {
    AU_FINE = 0,
    AU_EDITED,    /* an entry's hash does not match its contents */
    AU_MISSING,   /* a seq is absent (removed entry), or entries after the anchor's end */
    AU_REORDERED, /* an entry's prev_hash links to an entry other than its predecessor */
    AU_BROKEN,    /* prev_hash links to nothing in the log */
    AU_ANCHOR,    /* audit.head absent, unreadable, or its hash differs from the entry's */
};

typedef struct au_verify_result {
    enum au_problem problem; /* AU_FINE: the chain and the anchor agree */
    long long bad_seq;       /* first entry found wrong (0 when not about one entry) */
    char reason[256];        /* a sentence naming the entry and what is wrong */
    char note[128];          /* non-fatal remark (anchor lagging after a crash) */
    long long entries;       /* entries read */
    long long head_seq;      /* newest seq in the database */
    char head_hash[AU_HASH_HEX];
} au_verify_result;

/* Walks the whole log and checks it against the anchor. DH_OK when it could
 * read the log (whatever it found: see out->problem); DH_EDB/DH_EIO else. */
int au_verify(ks *k, au_verify_result *out, dh_err *e) DH_WUR;

/* "ok", "edited", "missing", "reordered", "broken", "anchor". */
const char *au_problem_name(enum au_problem p);

/* Fingerprint (see above) of a base64 p= value into out. DH_EINVAL for bad
 * base64. */
int au_fingerprint(const char *public_key_b64, char out[AU_HASH_HEX], dh_err *e) DH_WUR;

#endif
