/*
 * agent_path.c - dkimhsm-sign --agent (agent_path.h): keys chosen and
 * signatures made by dkimhsmd; this process holds no key, no PIN and no
 * state database.
 */
#include "sign/agent_path.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "daemon/client.h"
#include "daemon/remote_sign.h"
#include "dkim/sig.h"

/* A signature waits in dkimhsmd's queue for the token; a loaded daemon or a
 * slow HSM can take seconds, a dead one must not hang a script forever. */
#define AGENT_TIMEOUT_MS 30000

/* The daemon's answer, as our error table sees it. TEMPFAIL exits 3 like a
 * token that is down: the caller may retry. */
static int status_error(uint8_t status, const char *what, const char *reason, dh_err *e)
{
    switch (status) {
    case AP_TEMPFAIL:
        return dh_err_set(e, DH_ETOKEN, "dkimhsmd cannot %s now (TEMPFAIL: %s); try again later",
                          what, reason);
    case AP_REFUSED:
        return dh_err_set(e, DH_EPERM, "dkimhsmd refused to %s (REFUSED: %s)", what, reason);
    case AP_NOTFOUND:
        return dh_err_set(e, DH_ENOTFOUND, "dkimhsmd has no key to %s (NOTFOUND: %s)", what,
                          reason);
    }
    return dh_err_set(e, DH_EINVAL, "dkimhsmd cannot %s (%s: %s)", what, ap_status_name(status),
                      reason);
}

/* A daemon that cannot be reached, or a connection that failed, is a
 * temporary failure too (exit 3). */
static int unreachable(int rc, dh_err *e)
{
    return rc == DH_EIO ? dh_err_set_code(e, DH_ETOKEN) : rc;
}

static int lookup(ac *c, const char *domain, ac_lookup *l, dh_err *e)
{
    int rc = ac_lookup_domain(c, domain, l, e);
    if (rc != DH_OK)
        return unreachable(rc, e);
    if (l->status != AP_OK) {
        char what[300];
        snprintf(what, sizeof(what), "sign mail from %s", domain);
        return status_error(l->status, what, l->reason, e);
    }
    return DH_OK;
}

/* The daemon lists a domain's usable selectors best first. */
static long first_of(const ac_lookup *l, enum dkim_alg alg)
{
    for (size_t i = 0; i < l->count; i++)
        if (l->sel[i].alg == alg)
            return (long)i;
    return -1;
}

/* No -s: per algorithm asked for, the daemon's first selector of it, Ed25519
 * first (as the local path orders them). d= is the domain the daemon's
 * signing table chose, which may be a parent or fallback domain. */
static int choose_listed(ac *c, const agent_req *r, ac_lookup *l, const char **domain,
                         rs_key keys[2], size_t *n, dh_err *e)
{
    static const enum dkim_alg order[] = {DKIM_ALG_ED25519_SHA256, DKIM_ALG_RSA_SHA256};
    size_t k = 0;
    int rc = lookup(c, r->domain, l, e);
    /* Messages name the signing domain when the table chose another one. */
    const char *as = strcasecmp(r->domain, l->domain) ? ", which signs as " : "";
    const char *as_domain = *as ? l->domain : "";
    for (size_t i = 0; rc == DH_OK && i < 2; i++) {
        if (!(r->algs & (1u << order[i])))
            continue;
        long b = first_of(l, order[i]);
        if (b >= 0)
            keys[k++] = (rs_key){l->sel[b].selector, order[i]};
        else if (r->algs_explicit)
            rc = dh_err_set(e, DH_ENOTFOUND, "dkimhsmd has no usable %s key for %s%s%s",
                            dkim_alg_keytype(order[i]), r->domain, as, as_domain);
    }
    if (rc == DH_OK && k == 0)
        rc = dh_err_set(e, DH_ENOTFOUND,
                        "dkimhsmd has no usable key of the configured algorithms for %s%s%s",
                        r->domain, as, as_domain);
    if (rc != DH_OK)
        return rc;
    *domain = l->domain;
    *n = k;
    return DH_OK;
}

/* -s: d= is the From: (or -d) domain, as without --agent. The algorithm is
 * --alg's when it names one; otherwise the daemon's list says. */
static int choose_selector(ac *c, const agent_req *r, ac_lookup *l, rs_key *key, dh_err *e)
{
    if (r->algs_explicit && (r->algs == CONF_ALG_RSA || r->algs == CONF_ALG_ED25519)) {
        *key = (rs_key){r->selector,
                        r->algs == CONF_ALG_RSA ? DKIM_ALG_RSA_SHA256 : DKIM_ALG_ED25519_SHA256};
        return DH_OK;
    }
    int rc = lookup(c, r->domain, l, e);
    if (rc != DH_OK)
        return rc;
    for (size_t i = 0; strcasecmp(l->domain, r->domain) == 0 && i < l->count; i++) {
        if (strcasecmp(l->sel[i].selector, r->selector) == 0) {
            *key = (rs_key){r->selector, (enum dkim_alg)l->sel[i].alg};
            return DH_OK;
        }
    }
    return dh_err_set(e, DH_ENOTFOUND,
                      "dkimhsmd does not list selector %s among the keys for %s (give --alg "
                      "rsa or --alg ed25519 to ask for it anyway)",
                      r->selector, r->domain);
}

int agent_sign(const agent_req *r, dh_buf *sigs, dh_err *e)
{
    ac *c = NULL;
    ac_lookup l;
    rs_key keys[2];
    size_t n = 1;
    const char *domain = r->domain;
    memset(&l, 0, sizeof(l));
    int rc = ac_new(r->socket, 1, AGENT_TIMEOUT_MS, &c, e);
    if (rc == DH_OK && r->selector != NULL)
        rc = choose_selector(c, r, &l, &keys[0], e);
    else if (rc == DH_OK)
        rc = choose_listed(c, r, &l, &domain, keys, &n, e);
    rs_params p = {domain,
                   r->hc,
                   r->bc,
                   r->headers,
                   r->cf->sign_headers,
                   r->cf->oversign_headers,
                   r->timestamp,
                   r->cf->signature_ttl > 0 ? r->timestamp + r->cf->signature_ttl : -1};
    if (rc == DH_OK)
        rc = unreachable(rs_sign(c, r->hdrs, r->bh, &p, keys, n, sigs, e), e);
    ac_free(c);
    return rc;
}
