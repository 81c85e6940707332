/*
 * dns_int.h - what check.c and update.c share inside dns/: one way to make
 * an ldns resolver from a dn_config, and names for what ldns returns.
 */
#ifndef DNS_DNS_INT_H
#define DNS_DNS_INT_H

#include <ldns/ldns.h>

#include "dns/dns.h"

/* The server as named in errors: "127.0.0.1:5353" or "the system resolver". */
typedef struct dn_res {
    ldns_resolver *r;
    char what[300];
    unsigned timeout_ms;
    /* Fuzzers and tests only (NULL in the product): answers a TXT query for
     * qname instead of r, with a packet the caller frees, or an ldns error
     * (the query then fails as a timeout would). */
    ldns_status (*answer)(void *arg, const ldns_rdf *qname, ldns_pkt **out);
    void *answer_arg;
} dn_res;

/* Opens a resolver for c->server, or /etc/resolv.conf when it is NULL and
 * need_server is 0. Timeout c->timeout_ms (default 3000) for the whole
 * query: one try, no retransmission; TCP when the answer is truncated. */
int dn_res_open(const dn_config *c, int need_server, dn_res *out, dh_err *e) DH_WUR;
void dn_res_close(dn_res *r);

/* dn_check (dns.h) on an open resolver: the seam a fuzzer drives with
 * res->answer, so that every answer it makes up meets the same parsing. */
int dn_check_res(dn_res *res, const char *domain, const char *selector, const dn_expect *want,
                 dn_result *out, dh_err *e) DH_WUR;

/* "NOERROR", "SERVFAIL", ... or "RCODE n". */
const char *dn_rcode_name(int rcode, char buf[16]);

/* Lower-case, no final dot, into out (DH_EINVAL when too long). */
int dn_name_norm(const char *in, char *out, size_t outsz) DH_WUR;
/* Presentation form of a dname rdf, normalised as above. */
int dn_rdf_name(const ldns_rdf *rdf, char *out, size_t outsz) DH_WUR;

#endif
