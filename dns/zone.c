/*
 * zone.c - which zone a name lives in, as its authoritative server says:
 * the owner of the SOA record it returns for the name - in the answer when
 * the name is the zone's apex, in the authority section otherwise (NXDOMAIN
 * and NODATA replies carry their zone's SOA, RFC 2308 §3). An RFC 2136
 * update must name that zone (RFC 2136 §2.3), which is not always the
 * signing domain: mail.example.com usually lives in example.com.
 */
#include "dns/dns_int.h"

#include <stdio.h>
#include <string.h>

/* The owner of the first SOA in list, normalised; 1 when found. */
static int soa_owner(ldns_rr_list *list, char *zone, size_t zonesz)
{
    for (size_t i = 0; i < ldns_rr_list_rr_count(list); i++) {
        ldns_rr *rr = ldns_rr_list_rr(list, i);
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA &&
            dn_rdf_name(ldns_rr_owner(rr), zone, zonesz) == DH_OK)
            return 1;
    }
    return 0;
}

int dn_find_zone(const dn_config *c, const char *name, char *zone, size_t zonesz, dh_err *e)
{
    char norm[256], fq[258], rb[16];
    int rc = dn_name_norm(name, norm, sizeof(norm));
    if (rc != DH_OK)
        return dh_err_set(e, DH_EINVAL, "\"%s\" is not a DNS name", name);
    dn_res res;
    rc = dn_res_open(c, 1, &res, e);
    if (rc != DH_OK)
        return rc;
    snprintf(fq, sizeof(fq), "%s.", norm);
    ldns_rdf *q = ldns_dname_new_frm_str(fq);
    ldns_pkt *pkt = NULL;
    ldns_status st =
        q ? ldns_resolver_query_status(&pkt, res.r, q, LDNS_RR_TYPE_SOA, LDNS_RR_CLASS_IN, LDNS_RD)
          : LDNS_STATUS_MEM_ERR;
    ldns_rdf_deep_free(q);
    if (st != LDNS_STATUS_OK || pkt == NULL)
        rc = dh_err_set(e, DH_EIO, "%s: no answer within %u ms for %s SOA (%s)", res.what,
                        res.timeout_ms, norm, ldns_get_errorstr_by_id(st));
    else if (ldns_pkt_get_rcode(pkt) != LDNS_RCODE_NOERROR &&
             ldns_pkt_get_rcode(pkt) != LDNS_RCODE_NXDOMAIN)
        rc = dh_err_set(e, DH_EIO, "%s answered %s for %s SOA: it does not serve its zone",
                        res.what, dn_rcode_name(ldns_pkt_get_rcode(pkt), rb), norm);
    else if (!soa_owner(ldns_pkt_answer(pkt), zone, zonesz) &&
             !soa_owner(ldns_pkt_authority(pkt), zone, zonesz))
        rc = dh_err_set(e, DH_EIO, "%s named no zone (no SOA) for %s", res.what, norm);
    ldns_pkt_free(pkt);
    dn_res_close(&res);
    return rc;
}
