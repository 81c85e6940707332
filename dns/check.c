/*
 * check.c - what DNS publishes at SELECTOR._domainkey.DOMAIN, compared with
 * the key we hold (RFC 6376 §3.6.2.2 for the lookup, §3.6.1 for the record).
 */
#include "dns/dns_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dkim/record.h"
#include "dkim/tag.h"

#define NAME_MAX_LEN 256

/* What one query said about the name it asked for. */
typedef struct hop {
    ldns_pkt *pkt;
    int nxdomain;
    size_t ntxt;
    int has_cname;
    char cname[NAME_MAX_LEN]; /* target, normalised */
} hop;

static void set_status(dn_result *r, enum dn_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_status(dn_result *r, enum dn_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    r->status = s;
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
}

static void set_final(dn_result *r, const char *name)
{
    snprintf(r->final_name, sizeof(r->final_name), "%s", name);
}

/* 1 when rr is owned by name (normalised). */
static int owned_by(const ldns_rr *rr, const char *name)
{
    char owner[NAME_MAX_LEN];
    return dn_rdf_name(ldns_rr_owner(rr), owner, sizeof(owner)) == DH_OK &&
           strcmp(owner, name) == 0;
}

/* Asks for name TXT; only an answer with NOERROR or NXDOMAIN is an answer. */
static int ask(dn_res *res, const char *name, hop *h, dh_err *e)
{
    char fq[NAME_MAX_LEN + 1], rb[16];
    memset(h, 0, sizeof(*h));
    snprintf(fq, sizeof(fq), "%s.", name);
    ldns_rdf *q = ldns_dname_new_frm_str(fq);
    if (q == NULL)
        return dh_err_set(e, DH_EINVAL, "\"%s\" is not a DNS name", name);
    ldns_status st = res->answer ? res->answer(res->answer_arg, q, &h->pkt)
                                 : ldns_resolver_query_status(&h->pkt, res->r, q, LDNS_RR_TYPE_TXT,
                                                              LDNS_RR_CLASS_IN, LDNS_RD);
    ldns_rdf_deep_free(q);
    if (st != LDNS_STATUS_OK || h->pkt == NULL)
        return dh_err_set(e, DH_EIO, "%s: no answer within %u ms for %s TXT (%s)", res->what,
                          res->timeout_ms, name, ldns_get_errorstr_by_id(st));
    ldns_pkt_rcode rcode = ldns_pkt_get_rcode(h->pkt);
    if (rcode != LDNS_RCODE_NOERROR && rcode != LDNS_RCODE_NXDOMAIN)
        return dh_err_set(e, DH_EIO, "%s answered %s for %s TXT", res->what,
                          dn_rcode_name(rcode, rb), name);
    h->nxdomain = rcode == LDNS_RCODE_NXDOMAIN;
    ldns_rr_list *an = ldns_pkt_answer(h->pkt);
    for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
        ldns_rr *rr = ldns_rr_list_rr(an, i);
        if (!owned_by(rr, name))
            continue;
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_TXT) {
            h->ntxt++;
        } else if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME && ldns_rr_rd_count(rr) == 1 &&
                   dn_rdf_name(ldns_rr_rdf(rr, 0), h->cname, sizeof(h->cname)) == DH_OK) {
            h->has_cname = 1;
        }
    }
    return DH_OK;
}

static void hop_free(hop *h)
{
    ldns_pkt_free(h->pkt);
    h->pkt = NULL;
}

/* RFC 6376 §3.6.2.2: the strings of one TXT record are concatenated. */
static int txt_concat(const ldns_rr *rr, dh_buf *out)
{
    dh_buf_reset(out);
    int rc = dh_buf_puts(out, ""); /* an empty record is still a string */
    for (size_t i = 0; rc == DH_OK && i < ldns_rr_rd_count(rr); i++) {
        const ldns_rdf *f = ldns_rr_rdf(rr, i);
        const uint8_t *d = ldns_rdf_data(f);
        size_t n = ldns_rdf_size(f);
        if (n == 0 || (size_t)d[0] + 1 > n)
            return DH_EINVAL;
        rc = dh_buf_append(out, d + 1, d[0]);
    }
    return rc;
}

/* A DKIM key record starts with v=DKIM1 or at least is a tag list with p=;
 * SPF ("v=spf1 ..."), site verification and other TXT records at the same
 * name are not. */
static int looks_like_dkim(const dh_buf *txt)
{
    const char *s = (const char *)txt->data;
    size_t n = txt->len;
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    dkim_tags *t = NULL;
    if (dkim_tags_parse(s, n, &t, NULL) != DH_OK)
        return 0;
    const char *v = dkim_tags_get(t, "v", NULL);
    int yes = v != NULL ? strcmp(v, "DKIM1") == 0 : dkim_tags_get(t, "p", NULL) != NULL;
    dkim_tags_free(t);
    return yes;
}

/* Picks the one DKIM record among the TXT records at name into out->record.
 * 0 when one was chosen, 1 when the result is already decided. */
static int choose_record(const hop *h, const char *name, dn_result *out, int *rc)
{
    ldns_rr_list *an = ldns_pkt_answer(h->pkt);
    dh_buf txt = {0};
    size_t ndkim = 0, ntxt = 0;
    *rc = DH_OK;
    for (size_t i = 0; *rc == DH_OK && i < ldns_rr_list_rr_count(an); i++) {
        ldns_rr *rr = ldns_rr_list_rr(an, i);
        if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_TXT || !owned_by(rr, name))
            continue;
        *rc = txt_concat(rr, &txt);
        if (*rc != DH_OK)
            break;
        ntxt++;
        int dkim = looks_like_dkim(&txt);
        /* Keep the DKIM-looking one, or the only record if none looks so. */
        if (dkim && ndkim++ == 0) {
            dh_buf_reset(&out->record);
            *rc = dh_buf_append(&out->record, txt.data, txt.len);
        } else if (!dkim && ndkim == 0 && ntxt == 1) {
            *rc = dh_buf_append(&out->record, txt.data, txt.len);
        }
    }
    dh_buf_free(&txt);
    if (*rc != DH_OK)
        return 1;
    if (ndkim > 1) {
        set_status(out, DN_MISMATCH, "several records: %zu DKIM key records at %s", ndkim, name);
        return 1;
    }
    if (ndkim == 0 && ntxt > 1) {
        dh_buf_reset(&out->record);
        set_status(out, DN_MISMATCH, "no DKIM key record among the %zu TXT records at %s", ntxt,
                   name);
        return 1;
    }
    return 0;
}

/* The record's verdict against what is expected. */
static void judge(const dn_expect *want, dn_result *out)
{
    dkim_record r = {0};
    dh_err pe = {0};
    const char *txt = out->record.data ? (const char *)out->record.data : "";
    if (dkim_record_parse(txt, out->record.len, &r, &pe) != DH_OK) {
        set_status(out, DN_MISMATCH, "%s", pe.msg);
        return;
    }
    if (r.revoked)
        set_status(out, DN_REVOKED, "p= is empty: the key is revoked");
    else if (want != NULL && r.alg != want->alg)
        set_status(out, DN_MISMATCH, "k=%s, expected k=%s", dkim_alg_keytype(r.alg),
                   dkim_alg_keytype(want->alg));
    else if (want != NULL && want->pub != NULL &&
             (r.pub.len != want->pub_len || memcmp(r.pub.data, want->pub, r.pub.len) != 0))
        set_status(out, DN_MISMATCH, "p= is another key");
    else
        set_status(out, DN_OK, "%s", r.testing ? "t=y: verifiers treat it as a test" : "");
    dkim_record_clear(&r);
}

/* Provider mode: the customer's name must be a CNAME to exactly target.
 * 0 to go on with the chain, 1 when the result is decided. */
static int first_hop_delegated(const hop *h, const char *name, const char *target, dn_result *out)
{
    if (h->has_cname && strcmp(h->cname, target) == 0)
        return 0;
    set_final(out, name);
    if (h->has_cname)
        set_status(out, DN_MISMATCH, "CNAME points to %s, expected %s", h->cname, target);
    else if (h->ntxt > 0)
        set_status(out, DN_MISMATCH, "%s has a TXT record, expected a CNAME to %s", name, target);
    else
        set_status(out, DN_MISSING, "no CNAME at %s (expected one to %s)", name, target);
    return 1;
}

/* Follows the chain from name; decides out->status. */
static int walk(dn_res *res, const char *start, const dn_expect *want, dn_result *out, dh_err *e)
{
    char seen[DN_MAX_CNAMES + 1][NAME_MAX_LEN], name[NAME_MAX_LEN];
    const char *target = want != NULL ? want->cname_target : NULL;
    char tnorm[NAME_MAX_LEN];
    if (target != NULL && dn_name_norm(target, tnorm, sizeof(tnorm)) != DH_OK)
        return dh_err_set(e, DH_EINVAL, "bad CNAME target \"%s\"", target);
    snprintf(name, sizeof(name), "%s", start);
    for (size_t n = 0;; n++) {
        hop h;
        int rc = ask(res, name, &h, e);
        if (rc != DH_OK) {
            hop_free(&h);
            return rc;
        }
        snprintf(seen[n], sizeof(seen[n]), "%s", name);
        set_final(out, name);
        int done = n == 0 && target != NULL && first_hop_delegated(&h, name, tnorm, out);
        if (!done && h.ntxt > 0) {
            if (!choose_record(&h, name, out, &rc))
                judge(want, out);
            done = 1;
        } else if (!done && h.has_cname) {
            for (size_t i = 0; i <= n && !done; i++)
                if (strcmp(seen[i], h.cname) == 0) {
                    set_status(out, DN_MISMATCH, "CNAME loop: %s points back to %s", name, h.cname);
                    done = 1;
                }
            if (!done && n == DN_MAX_CNAMES) {
                set_status(out, DN_MISMATCH, "more than %d CNAMEs from %s", DN_MAX_CNAMES, start);
                done = 1;
            }
            if (!done)
                snprintf(name, sizeof(name), "%s", h.cname);
        } else if (!done) {
            set_status(out, DN_MISSING, "%s at %s",
                       h.nxdomain ? "no such name (NXDOMAIN)" : "no TXT record", name);
            done = 1;
        }
        hop_free(&h);
        if (rc != DH_OK)
            return dh_err_set(e, rc, "cannot read the TXT record at %s", name);
        if (done)
            return DH_OK;
    }
}

int dn_check_res(dn_res *res, const char *domain, const char *selector, const dn_expect *want,
                 dn_result *out, dh_err *e)
{
    char d[NAME_MAX_LEN], s[NAME_MAX_LEN], name[NAME_MAX_LEN];
    memset(out, 0, sizeof(*out));
    if (dn_name_norm(domain, d, sizeof(d)) != DH_OK ||
        dn_name_norm(selector, s, sizeof(s)) != DH_OK)
        return dh_err_set(e, DH_EINVAL, "bad domain \"%s\" or selector \"%s\"", domain, selector);
    /* RFC 6376 §3.6.2.1: the key lives at SELECTOR._domainkey.DOMAIN. */
    if ((size_t)snprintf(name, sizeof(name), "%s._domainkey.%s", s, d) >= 254)
        return dh_err_set(e, DH_EINVAL, "%s._domainkey.%s is longer than 253 bytes", s, d);
    int rc = walk(res, name, want, out, e);
    if (rc != DH_OK)
        dn_result_clear(out);
    return rc;
}

int dn_check(const dn_config *c, const char *domain, const char *selector, const dn_expect *want,
             dn_result *out, dh_err *e)
{
    memset(out, 0, sizeof(*out));
    dn_res res;
    int rc = dn_res_open(c, 0, &res, e);
    if (rc == DH_OK)
        rc = dn_check_res(&res, domain, selector, want, out, e);
    dn_res_close(&res);
    return rc;
}

void dn_result_clear(dn_result *r)
{
    if (r == NULL)
        return;
    dh_buf_free(&r->record);
    memset(r, 0, sizeof(*r));
}
