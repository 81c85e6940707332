/*
 * dnscheck.c - the lifecycle's DNS check through dns/ (dn_check).
 */
#include <stdio.h>
#include <string.h>

#include "dkim/b64.h"
#include "dns/dns.h"
#include "lifecycle/lifecycle.h"

int lf_dns_check(void *arg, const ks_selector *s, lf_seen *out, dh_err *e)
{
    memset(out, 0, sizeof(*out));
    dh_buf pub = {0};
    dn_result res = {0};
    dh_buf target = {0};
    const lf_dns_arg *a = arg;
    dn_config cfg = {.server = a ? a->server : NULL, .timeout_ms = a ? a->timeout_ms : 0};
    int rc = dkim_b64_decode(s->public_key, strlen(s->public_key), &pub);
    if (rc != DH_OK)
        return dh_err_set(e, DH_EDB, "selector %s of %s: stored public key is not base64",
                          s->selector, s->domain);
    /* Provider mode: the customer's name must be a CNAME into our zone. */
    if (a && a->delegation_zone &&
        dn_delegated_name(s->domain, s->selector, a->delegation_zone, &target) != DH_OK) {
        dh_buf_free(&pub);
        return dh_err_set(e, DH_EINVAL, "selector %s of %s has no name in zone %s", s->selector,
                          s->domain, a->delegation_zone);
    }
    dn_expect want = {.alg = s->alg,
                      .pub = pub.data,
                      .pub_len = pub.len,
                      .cname_target = target.len ? (char *)target.data : NULL};
    rc = dn_check(&cfg, s->domain, s->selector, &want, &res, e);
    if (rc == DH_OK) {
        out->ok = res.status == DN_OK;
        snprintf(out->status, sizeof(out->status), "%s", dn_status_name(res.status));
        snprintf(out->reason, sizeof(out->reason), "%.250s", res.reason);
    }
    dn_result_clear(&res);
    dh_buf_free(&pub);
    dh_buf_free(&target);
    return rc;
}

int lf_delegated_name(const char *domain, const char *selector, const char *zone, dh_buf *out)
{
    return dn_delegated_name(domain, selector, zone, out);
}
