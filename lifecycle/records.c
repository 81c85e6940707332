/*
 * records.c - what the zone should hold now, and everything about one key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hex.h"
#include "common/json.h"
#include "dkim/b64.h"
#include "dkim/record.h"
#include "lifecycle/lf_int.h"

/* Revoked and destroyed keys publish p= empty (RFC 6376 §3.6.1). */
static int record_value(const ks_selector *s, dh_buf *out)
{
    dh_buf pub = {0};
    int rc = DH_OK;
    int empty = s->state == KS_REVOKED || s->state == KS_DESTROYED;
    if (!empty)
        rc = dkim_b64_decode(s->public_key, strlen(s->public_key), &pub);
    if (rc == DH_OK)
        rc = dkim_record_value(s->alg, empty ? NULL : pub.data, empty ? 0 : pub.len, out);
    dh_buf_free(&pub);
    return rc;
}

/* A destroyed row gives way to a live key under the same name, or to a newer
 * destroyed one: one record per name. */
static int shadowed(const ks_selector *l, size_t n, size_t i)
{
    if (l[i].state != KS_DESTROYED)
        return 0;
    for (size_t j = 0; j < n; j++) {
        if (j == i || strcmp(l[j].selector, l[i].selector) != 0)
            continue;
        if (l[j].state != KS_DESTROYED || l[j].created > l[i].created ||
            (l[j].created == l[i].created && j > i))
            return 1;
    }
    return 0;
}

static int one_record(const char *zone, const ks_selector *s, lf_record *r)
{
    dh_buf owner = {0}, value = {0}, alias = {0};
    memset(r, 0, sizeof(*r));
    int rc = dh_buf_printf(zone ? &alias : &owner, "%s._domainkey.%s.", s->selector, s->domain);
    if (rc == DH_OK && zone) {
        rc = lf_delegated_name(s->domain, s->selector, zone, &owner);
        if (rc == DH_OK)
            rc = dh_buf_putc(&owner, '.');
        if (rc == DH_OK && (r->alias = dh_buf_steal(&alias)) == NULL)
            rc = DH_ENOMEM;
    }
    if (rc == DH_OK)
        rc = record_value(s, &value);
    if (rc == DH_OK) {
        r->domain = strdup(s->domain);
        r->selector = strdup(s->selector);
        r->owner = dh_buf_steal(&owner);
        r->value = dh_buf_steal(&value);
        r->state = s->state;
        if (!r->domain || !r->selector || !r->owner || !r->value)
            rc = DH_ENOMEM;
    }
    dh_buf_free(&owner);
    dh_buf_free(&value);
    dh_buf_free(&alias);
    return rc;
}

void lf_records_free(lf_record *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++) {
        free(r[i].domain);
        free(r[i].selector);
        free(r[i].owner);
        free(r[i].alias);
        free(r[i].value);
    }
    free(r);
}

int lf_records(lf_ctx *c, const char *domain, const char *selector, lf_record **out, size_t *n,
               dh_err *e)
{
    *out = NULL;
    *n = 0;
    char *d = NULL, *s = NULL;
    ks_selector *l = NULL;
    size_t nl = 0, count = 0;
    lf_record *r = NULL;
    int rc = lf_names(domain, selector, &d, &s, e);
    if (rc == DH_OK)
        rc = ks_list(c->store, d, &l, &nl, e);
    if (rc == DH_OK && nl > 0 && (r = calloc(nl, sizeof(*r))) == NULL)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    for (size_t i = 0; rc == DH_OK && i < nl; i++) {
        if ((s && strcmp(l[i].selector, s) != 0) || shadowed(l, nl, i))
            continue;
        rc = one_record(c->delegation_zone, &l[i], &r[count++]);
        if (rc != DH_OK)
            dh_err_set(e, rc, "cannot format the record of %s for %s", l[i].selector, d);
    }
    if (rc == DH_OK && count == 0)
        rc = s ? dh_err_set(e, DH_ENOTFOUND, "no selector %s for domain %s", s, d)
               : dh_err_set(e, DH_ENOTFOUND, "domain %s has no selectors", d);
    if (rc == DH_OK) {
        *out = r;
        *n = count;
    } else {
        lf_records_free(r, count);
    }
    ks_list_free(l, nl);
    free(d);
    free(s);
    return rc;
}

void lf_info_clear(lf_info *i)
{
    if (i == NULL)
        return;
    ks_selector_clear(&i->key);
    ks_history_free(i->history, i->nhistory);
    memset(i, 0, sizeof(*i));
}

static void read_custody(lf_ctx *c, lf_info *i)
{
    uint8_t id[HSM_ID_LEN];
    hsm_key *key = NULL;
    dh_err e = {0};
    if (i->key.state == KS_DESTROYED) {
        snprintf(i->custody_error, sizeof(i->custody_error), "key destroyed");
    } else if (c->token == NULL) {
        snprintf(i->custody_error, sizeof(i->custody_error), "token not opened");
    } else if (dh_unhex(i->key.key_id, id, HSM_ID_LEN) != DH_OK) {
        snprintf(i->custody_error, sizeof(i->custody_error), "bad key id");
    } else if (hsm_key_open(c->token, id, HSM_ID_LEN, &key, &e) != DH_OK ||
               hsm_key_custody(c->token, key, &i->custody, &e) != DH_OK) {
        snprintf(i->custody_error, sizeof(i->custody_error), "%.250s", e.msg);
    } else {
        i->custody_known = 1;
    }
    hsm_key_free(key);
}

int lf_show(lf_ctx *c, const char *domain, const char *selector, lf_info *out, dh_err *e)
{
    memset(out, 0, sizeof(*out));
    int rc = lf_get(c, domain, selector, &out->key, e);
    if (rc == DH_OK)
        rc = au_fingerprint(out->key.public_key, out->fingerprint, e);
    if (rc == DH_OK)
        rc = ks_history_get(c->store, out->key.domain, out->key.selector, &out->history,
                            &out->nhistory, e);
    if (rc == DH_OK)
        read_custody(c, out);
    else
        lf_info_clear(out);
    return rc;
}

/* Appends lead (literal JSON) and then v as a JSON string. */
static int put_str(dh_buf *b, const char *lead, const char *v)
{
    int rc = dh_buf_puts(b, lead);
    return rc == DH_OK ? dh_json_str(b, v) : rc;
}

int lf_record_json(const lf_record *r, dh_buf *b)
{
    int rc = put_str(b, "{\"name\":", r->owner);
    if (rc == DH_OK)
        rc = put_str(b, ",\"type\":\"TXT\",\"value\":", r->value);
    if (rc == DH_OK)
        rc = dh_buf_puts(b, ",\"strings\":[");
    size_t vlen = strlen(r->value);
    for (size_t i = 0; rc == DH_OK && i < dkim_record_nstrings(vlen); i++) {
        size_t off, len;
        dkim_record_string_at(vlen, i, &off, &len);
        /* A DKIM record value holds no '"' or '\\' (RFC 6376 §3.6.1 tags). */
        rc = dh_buf_printf(b, "%s\"%.*s\"", i ? "," : "", (int)len, r->value + off);
    }
    if (rc == DH_OK)
        rc = put_str(b, "],\"selector\":", r->selector);
    if (rc == DH_OK)
        rc = dh_buf_printf(b, ",\"state\":\"%s\"", ks_state_name(r->state));
    if (rc == DH_OK && r->alias) {
        rc = put_str(b, ",\"cname\":{\"name\":", r->alias);
        if (rc == DH_OK)
            rc = put_str(b, ",\"type\":\"CNAME\",\"value\":", r->owner);
        if (rc == DH_OK)
            rc = dh_buf_putc(b, '}');
    }
    if (rc == DH_OK)
        rc = dh_buf_putc(b, '}');
    return rc;
}
