/*
 * dns.h - what DNS says about a selector, and RFC 2136 updates: the only code
 * in dkimhsm that speaks DNS (ldns).
 *
 * dn_check resolves SELECTOR._domainkey.DOMAIN TXT, following CNAMEs itself
 * (at most DN_MAX_CNAMES), concatenates the record's strings, parses the tag
 * list (RFC 6376 §3.6.1, dkim/record.h) and compares it with the key the
 * token holds. The outcome is one of the states operators know from hosted
 * mail providers: published and matching, missing, wrong (with the reason),
 * revoked.
 *
 * The nameserver is dn_config.server ("HOST:PORT", dns_server in
 * dkimhsm.conf) or, when NULL, the system resolver (/etc/resolv.conf).
 * Names are absolute whether or not they end in '.'; no search list applies.
 *
 * Provider mode (CNAME delegation): the customer publishes
 *   SELECTOR._domainkey.DOMAIN. IN CNAME dn_delegated_name(...).
 * and the provider serves the TXT record in its own zone.
 */
#ifndef DNS_DNS_H
#define DNS_DNS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "dkim/types.h"

#define DN_MAX_CNAMES 8

typedef struct dn_config {
    const char *server;  /* "HOST:PORT" or "HOST" (port 53); NULL = system resolver */
    unsigned timeout_ms; /* per query; 0 = 3000 */
} dn_config;

enum dn_status {
    DN_OK = 0,   /* published and matching the expected key */
    DN_MISSING,  /* NXDOMAIN, or no TXT record at the name */
    DN_MISMATCH, /* another key, bad syntax, wrong k=, wrong CNAME target: see reason */
    DN_REVOKED,  /* p= empty */
};

/* What the caller expects to find. */
typedef struct dn_expect {
    enum dkim_alg alg;
    const uint8_t *pub; /* the p= bytes (SPKI DER for RSA, raw 32 bytes for Ed25519);
                         * NULL: any well-formed record of alg is DN_OK */
    size_t pub_len;
    /* Provider mode: the name SELECTOR._domainkey.DOMAIN must be a CNAME to
     * (e.g. "s1-customer-com._domainkey.dkim.provider.example"); NULL = no
     * CNAME required, any chain accepted. */
    const char *cname_target;
} dn_expect;

typedef struct dn_result {
    enum dn_status status;
    char reason[512];     /* for DN_MISMATCH (and DN_MISSING: which name had nothing) */
    char final_name[256]; /* where the TXT record was found (after CNAMEs), no final dot */
    dh_buf record;        /* the record's strings concatenated, as served */
} dn_result;

/* DH_OK when DNS answered (whatever the status); DH_EIO naming the server
 * for a timeout, SERVFAIL, REFUSED or an unreachable server; DH_EINVAL for
 * a bad server string or name. want may be NULL (any well-formed record).
 *
 * The rules: each hop is its own query for NAME TXT; RRs owned by NAME count,
 * anything else in the answer is ignored. A CNAME is followed (at most
 * DN_MAX_CNAMES; a name seen twice is a loop: DN_MISMATCH). At the final name,
 * TXT records that look like DKIM (a tag list with v= or p=) are chosen; more
 * than one is DN_MISMATCH "several records"; the strings of one record are
 * concatenated (RFC 6376 §3.6.2.2) and parsed by dkim_record_parse. Revoked
 * (p= empty) is DN_REVOKED whatever key was expected.
 *
 * out is cleared first; out->record is owned by the caller: dn_result_clear()
 * (also safe on a zeroed or cleared result). */
int dn_check(const dn_config *c, const char *domain, const char *selector, const dn_expect *want,
             dn_result *out, dh_err *e) DH_WUR;
void dn_result_clear(dn_result *r);

/* "ok", "missing", "mismatch", "revoked". */
const char *dn_status_name(enum dn_status s);

/* Provider mode: the provider-zone name that SELECTOR._domainkey.DOMAIN is a
 * CNAME to: SELECTOR "-" DOMAIN-with-dots-as-dashes "._domainkey." ZONE,
 * lower-case, no final dot ("s1", "customer.com", "dkim.provider.example" ->
 * "s1-customer-com._domainkey.dkim.provider.example"). The mapping is not
 * injective when names contain '-' (s1 + my-shop.com and s1-my + shop.com
 * meet); callers that serve several customers must refuse such a collision.
 * Appends to out; DH_EINVAL when the first label would exceed 63 bytes or the
 * name 253. */
int dn_delegated_name(const char *domain, const char *selector, const char *zone,
                      dh_buf *out) DH_WUR;

/* A TSIG key as in a BIND/Knot key file line: name, algorithm
 * ("hmac-sha256", ...), base64 secret. */
typedef struct dn_tsig {
    char name[256];
    char alg[32];
    char secret[256];
} dn_tsig;

/* Reads "NAME ALG SECRET" (one line, '#' comments) from a file that must
 * not be readable by group or others (DH_EPERM, as for the PIN file). ALG is
 * hmac-md5, hmac-sha1, hmac-sha256 or hmac-sha512 (what ldns signs with);
 * SECRET must be base64. *out is set only on success; wipe it with
 * dn_tsig_clear(). */
int dn_tsig_load(const char *path, dn_tsig *out, dh_err *e) DH_WUR;
void dn_tsig_clear(dn_tsig *t);

/* The zone name lives in (normalised, no final dot), as the server c names
 * (required) says: the owner of the SOA it returns for name. DH_EIO naming
 * the server when it does not answer or serves no zone holding name. */
int dn_find_zone(const dn_config *c, const char *name, char *zone, size_t zonesz, dh_err *e) DH_WUR;

/* RFC 2136 update of zone at server (c->server is required): replaces every
 * TXT record at owner with value (value NULL: deletes them), in one message
 * (delete RRset, then add), so the name is never seen empty. value is cut
 * into 255-byte character-strings (dkim_record_string_at). Signed with tsig
 * when not NULL (the answer's TSIG is verified). DH_EIO naming the server and
 * the RCODE (NOTAUTH, REFUSED, ...) and TSIG error (BADSIG, BADKEY) when the
 * server refuses; DH_EINVAL when owner is not inside zone. */
int dn_update_txt(const dn_config *c, const char *zone, const dn_tsig *tsig, const char *owner,
                  const char *value, unsigned ttl, dh_err *e) DH_WUR;

#endif
