/*
 * dnscheck_none.c - lf_dns_check when dkimhsm is built without dns/.
 */
#include <string.h>

#include "lifecycle/lifecycle.h"

int lf_dns_check(void *arg, const ks_selector *s, lf_seen *out, dh_err *e)
{
    (void)arg;
    memset(out, 0, sizeof(*out));
    return dh_err_set(e, DH_ESTATE, "built without DNS support: cannot check %s of %s", s->selector,
                      s->domain);
}

int lf_delegated_name(const char *domain, const char *selector, const char *zone, dh_buf *out)
{
    (void)domain, (void)selector, (void)zone, (void)out;
    return DH_ESTATE;
}
