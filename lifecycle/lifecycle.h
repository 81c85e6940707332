/*
 * lifecycle.h - the rules of a DKIM key's life, one implementation behind
 * dkim-keyctl, the daemon's timer and the management API.
 *
 * Every function takes plain values (names as the user typed them: they are
 * normalized here, so every front end gives the same errors) and an actor
 * string ("uid:1000(alice)", "api:TOKEN-NAME", "timer"), and returns a dh_err
 * status an HTTP handler maps as DH_EINVAL -> 400, DH_ENOTFOUND -> 404,
 * DH_ESTATE / DH_EEXIST -> 409.
 *
 * States and the transitions allowed (anything else is refused with
 * DH_ESTATE: "selector s1 of example.com is retiring; allowed next: active,
 * revoked"):
 *
 *   from \ to   published  active         retiring  revoked  destroyed
 *   created     DNS ok     DNS ok (*)     -         yes      -
 *   published   -          DNS ok         -         yes      -
 *   active      -          -              yes       yes      -
 *   retiring    -          DNS ok (roll-  -         yes      -
 *                          back)
 *   revoked     -          -              -         -        yes (token key deleted)
 *   destroyed   -          -              -         -        -
 *
 *   DNS ok: lf_activate asks DNS (lf_ctx.check) first and refuses unless the
 *   record is published and matches the token's key, unless forced (the
 *   audit entry then says "forced" and what DNS said). (*) created -> active
 *   with DNS ok is recorded as two steps, created -> published ("seen in
 *   DNS") -> active; only a forced activation goes straight from created.
 *
 * Every transition is one SQLite transaction: the row, its state_history
 * entry and its audit entry (audit/audit.h) commit together or not at all.
 *
 * What DNS should publish (lf_records): created, published, active and
 * retiring keys with their p= (a new key is published before it signs, an
 * old one stays while mail signed with it is in transit); revoked and
 * destroyed keys with an empty p= (RFC 6376 §3.6.1: "the key has been
 * revoked"), so a verifier gets a clear answer for a compromised key rather
 * than "no key"; a destroyed row whose name has been reused by a newer key is
 * left out.
 *
 * Fingerprint: SHA-256 of the p= bytes, hex (audit.h, au_fingerprint).
 */
#ifndef LIFECYCLE_LIFECYCLE_H
#define LIFECYCLE_LIFECYCLE_H

#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"
#include "common/err.h"
#include "hsm/hsm.h"
#include "keystore/keystore.h"

/* What DNS says about one key, as far as the lifecycle needs it. */
typedef struct lf_seen {
    int ok;           /* published and matching the token's key */
    char status[16];  /* "ok", "missing", "mismatch", "revoked" */
    char reason[256]; /* why not, when not ok */
} lf_seen;

/* Asks DNS about s. DH_OK when DNS answered (whatever it said, in *out);
 * DH_EIO etc. when it could not be asked. */
typedef int (*lf_check_fn)(void *arg, const ks_selector *s, lf_seen *out, dh_err *e);

/* What lf_dns_check needs (dns_server, delegation_zone in dkimhsm.conf). */
typedef struct lf_dns_arg {
    const char *server;          /* "HOST:PORT"; NULL = system resolver */
    unsigned timeout_ms;         /* 0 = dns/'s default */
    const char *delegation_zone; /* provider mode: the name must be a CNAME into it */
} lf_dns_arg;

/* The default check: dn_check (dns/dns.h) with arg a const lf_dns_arg *.
 * When dkimhsm is built without dns/, it fails with DH_ESTATE. */
int lf_dns_check(void *arg, const ks_selector *s, lf_seen *out, dh_err *e) DH_WUR;

/* Provider mode: appends the name in zone that SELECTOR._domainkey.DOMAIN
 * is a CNAME to (dn_delegated_name), without a final dot. */
int lf_delegated_name(const char *domain, const char *selector, const char *zone,
                      dh_buf *out) DH_WUR;

typedef struct lf_ctx {
    ks *store;                   /* required */
    hsm *token;                  /* needed by create, destroy and rotate; else may be NULL */
    long long retire_after;      /* seconds a retiring key stays published (conf) */
    long long publish_wait;      /* seconds DNS must serve a successor before rotation
                                  * switches to it (caches let go of what they held) */
    const char *naming;          /* "alternate" (selector1/selector2) or "date" (YYYYMM) */
    unsigned rsa_bits;           /* for new RSA keys when there is no predecessor */
    const char *delegation_zone; /* provider mode (lf_records); NULL = off */
    lf_check_fn check;           /* NULL: every DNS check fails with DH_ESTATE */
    void *check_arg;             /* passed to check */
    long long (*now)(void);      /* NULL: time(NULL); tests move the clock */
} lf_ctx;

/* 1 when from -> to is in the table above (force: activation without DNS). */
int lf_allowed(enum ks_state from, enum ks_state to, int force);
/* "published, active, revoked" / "none": the states allowed after from. */
void lf_allowed_next(enum ks_state from, char *buf, size_t size);

/* Reads the public key of the token key with this CKA_ID and records it as
 * (domain, selector) in state created, with the history and the audit entry
 * ("create" or "import" by custody) in one transaction. On failure the token
 * key is destroyed, so there is never a token key without a record. *out (may
 * be NULL) gets the new row: caller frees with ks_selector_clear(). */
int lf_adopt_key(lf_ctx *c, const char *domain, const char *selector, const uint8_t id[HSM_ID_LEN],
                 enum ks_custody custody, const char *predecessor, const char *actor,
                 ks_selector *out, dh_err *e) DH_WUR;

/* Generates a key in the token and adopts it. bits 0: rsa_bits. DH_EEXIST
 * (before touching the token) when the name is taken by a live key. */
int lf_create(lf_ctx *c, const char *domain, const char *selector, enum dkim_alg alg, unsigned bits,
              const char *predecessor, const char *actor, ks_selector *out, dh_err *e) DH_WUR;

/* created -> published when DNS shows the record (seen filled either way).
 * DH_ESTATE when DNS does not show it or the key is not created. */
int lf_publish_seen(lf_ctx *c, const char *domain, const char *selector, const char *actor,
                    lf_seen *seen, dh_err *e) DH_WUR;

/* -> active. Unless force, DNS must show the record (DH_ESTATE naming what
 * it showed otherwise). seen (may be NULL) gets the DNS answer. */
int lf_activate(lf_ctx *c, const char *domain, const char *selector, int force, const char *actor,
                lf_seen *seen, dh_err *e) DH_WUR;

/* active -> retiring. */
int lf_retire(lf_ctx *c, const char *domain, const char *selector, const char *actor,
              dh_err *e) DH_WUR;

/* -> revoked (the compromise path); with destroy, then -> destroyed. A
 * revoked key with destroy set is only destroyed. */
int lf_revoke(lf_ctx *c, const char *domain, const char *selector, int destroy, const char *actor,
              dh_err *e) DH_WUR;

/* revoked -> destroyed: deletes the token's key pair (a key already gone
 * from the token is noted, not an error); the audit entry keeps the public
 * key and the fingerprint. */
int lf_destroy(lf_ctx *c, const char *domain, const char *selector, const char *actor,
               dh_err *e) DH_WUR;

/* retiring keys whose retiring_since + retire_after has passed -> revoked.
 * *count (may be NULL): how many. For the daemon's timer. */
int lf_expire(lf_ctx *c, const char *actor, size_t *count, dh_err *e) DH_WUR;

enum lf_rotate_step {
    LF_ROTATE_CREATED,  /* step 1: successor created; publish its record */
    LF_ROTATE_WAITING,  /* successor exists, DNS does not show it yet */
    LF_ROTATE_SWITCHED, /* step 2: successor active, old key retiring */
};

typedef struct lf_rotation {
    enum lf_rotate_step step;
    char *selector; /* the successor */
    char *old;      /* the key it replaces; NULL when there was no active key */
    enum dkim_alg alg;
    lf_seen seen; /* DNS about the successor (WAITING, SWITCHED) */
} lf_rotation;

/* One rotation step for domain's active key of alg (alg < 0: the algorithm
 * of the domain's only active key; DH_EINVAL when it has several). The
 * successor's name comes from lf_ctx.naming: "alternate" takes the
 * algorithm's pair (lf_alternate_names), whichever is not the current key (a revoked key under that
 * name is destroyed first, as hosted providers reuse the name, but only once lf_ctx.check shows
 * its empty p= or no record: until then, and for a live key, DH_ESTATE saying so; DNS that cannot
 * be asked gives its error);
 * "date" takes YYYYMM (UTC), then YYYYMMb, c, ... when taken. Never activates a key DNS does not
 * show. *out: lf_rotation_clear(). */
int lf_rotate(lf_ctx *c, const char *domain, int alg, const char *actor, lf_rotation *out,
              dh_err *e) DH_WUR;

/* The two names the "alternate" scheme gives keys of alg: selector1 and
 * selector2 for RSA (as hosted providers name them), selector1-ed25519 and
 * selector2-ed25519 for Ed25519, so a domain signing with both algorithms
 * rotates each without the other's names in the way. */
void lf_alternate_names(enum dkim_alg alg, const char *out[2]);
void lf_rotation_clear(lf_rotation *r);

/* A record the zone should hold. In provider mode (delegation_zone) the TXT
 * record lives in the provider's zone and the customer's name is a CNAME to
 * it: alias is then "SELECTOR._domainkey.DOMAIN." and owner the provider's
 * name. */
typedef struct lf_record {
    char *domain, *selector;
    char *owner; /* "SELECTOR._domainkey.DOMAIN.", or the provider-zone name */
    char *alias; /* provider mode: the customer's name (CNAME to owner); else NULL */
    char *value; /* "v=DKIM1; k=...; p=..." (p= empty for revoked/destroyed) */
    enum ks_state state;
} lf_record;

/* The records for domain (selector NULL: every one; else that one's).
 * DH_ENOTFOUND when there are none. *out: lf_records_free(). */
int lf_records(lf_ctx *c, const char *domain, const char *selector, lf_record **out, size_t *n,
               dh_err *e) DH_WUR;
void lf_records_free(lf_record *r, size_t n);
/* Appends r as the JSON object `dkim-keyctl dns --json` and the API print:
 * name, type, value, strings (the <= 255-byte pieces), selector, state and,
 * in provider mode, cname {name, type, value}. */
int lf_record_json(const lf_record *r, dh_buf *out) DH_WUR;

/* Everything `show` prints. custody_known is 0 (custody_error says why) when
 * the token was not given, could not find the key or the key is destroyed. */
typedef struct lf_info {
    ks_selector key;
    char fingerprint[AU_HASH_HEX];
    ks_history *history;
    size_t nhistory;
    int custody_known;
    hsm_custody custody;
    char custody_error[256];
} lf_info;

int lf_show(lf_ctx *c, const char *domain, const char *selector, lf_info *out, dh_err *e) DH_WUR;
void lf_info_clear(lf_info *i);

#endif
