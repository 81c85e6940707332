/*
 * update.c - RFC 2136 dynamic updates of a selector's TXT record, signed
 * with TSIG (RFC 8945), and the TSIG key file.
 */
#include "dns/dns_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "dkim/b64.h"
#include "dkim/record.h"

#define TSIG_FILE_MAX 4096

/* What ldns 1.8 signs with (it has no HMAC-SHA224 or HMAC-SHA384). */
static const char *const tsig_algs[] = {"hmac-md5", "hmac-sha1", "hmac-sha256", "hmac-sha512"};

static int known_alg(const char *alg)
{
    for (size_t i = 0; i < sizeof(tsig_algs) / sizeof(tsig_algs[0]); i++)
        if (strcmp(alg, tsig_algs[i]) == 0)
            return 1;
    return 0;
}

void dn_tsig_clear(dn_tsig *t)
{
    if (t != NULL)
        explicit_bzero(t, sizeof(*t));
}

/* The rule for secret files (common/file.h): a regular file that group and
 * others can neither read nor write. */
static int read_key_file(const char *path, dh_buf *out, dh_err *e)
{
    int rc = dh_file_read_secret(path, "TSIG key file", TSIG_FILE_MAX, out, e);
    if (rc == DH_EINVAL) /* larger than TSIG_FILE_MAX */
        return dh_err_set_code(e, DH_ECONFIG);
    if (rc == DH_OK && out->len == 0) {
        dh_buf_free_secret(out);
        return dh_err_set(e, DH_ECONFIG, "TSIG key file %s: empty", path);
    }
    return rc;
}

static int parse_key_line(const char *path, char *text, dn_tsig *t, dh_err *e)
{
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        char *w = NULL, *f[4] = {0};
        int n = 0;
        for (char *tok = strtok_r(line, " \t\r", &w); tok != NULL && n < 4;
             tok = strtok_r(NULL, " \t\r", &w))
            f[n++] = tok;
        if (n == 0)
            continue;
        if (n != 3)
            return dh_err_set(e, DH_ECONFIG, "TSIG key file %s: expected \"NAME ALG SECRET\"",
                              path);
        if (strlen(f[0]) >= sizeof(t->name) || strlen(f[1]) >= sizeof(t->alg) ||
            strlen(f[2]) >= sizeof(t->secret))
            return dh_err_set(e, DH_ECONFIG, "TSIG key file %s: a field is too long", path);
        snprintf(t->name, sizeof(t->name), "%s", f[0]);
        snprintf(t->alg, sizeof(t->alg), "%s", f[1]);
        snprintf(t->secret, sizeof(t->secret), "%s", f[2]);
        return DH_OK;
    }
    return dh_err_set(e, DH_ECONFIG, "TSIG key file %s: no key line", path);
}

static int check_tsig(const char *path, const dn_tsig *t, dh_err *e)
{
    if (!known_alg(t->alg))
        return dh_err_set(e, DH_ECONFIG,
                          "TSIG key file %s: algorithm %s is not one of hmac-md5, hmac-sha1, "
                          "hmac-sha256, hmac-sha512",
                          path, t->alg);
    dh_buf raw = {0};
    int rc = dkim_b64_decode(t->secret, strlen(t->secret), &raw);
    int empty = raw.len == 0;
    dh_buf_free_secret(&raw);
    if (rc != DH_OK || empty)
        return dh_err_set(e, DH_ECONFIG, "TSIG key file %s: the secret is not base64", path);
    return DH_OK;
}

int dn_tsig_load(const char *path, dn_tsig *out, dh_err *e)
{
    dh_buf text = {0};
    dn_tsig t = {0};
    int rc = read_key_file(path, &text, e);
    if (rc == DH_OK)
        rc = parse_key_line(path, (char *)text.data, &t, e);
    if (rc == DH_OK)
        rc = check_tsig(path, &t, e);
    dh_buf_free_secret(&text);
    if (rc == DH_OK)
        *out = t;
    explicit_bzero(&t, sizeof(t));
    return rc;
}

/* "owner TTL IN TXT "s1" "s2" ..." with value cut into 255-byte strings. */
static ldns_rr *txt_rr(ldns_rdf *owner, const char *value, unsigned ttl)
{
    ldns_rr *rr = ldns_rr_new();
    if (rr == NULL)
        return NULL;
    ldns_rr_set_owner(rr, ldns_rdf_clone(owner));
    ldns_rr_set_type(rr, LDNS_RR_TYPE_TXT);
    ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
    ldns_rr_set_ttl(rr, ttl);
    size_t vlen = strlen(value);
    for (size_t i = 0; i < dkim_record_nstrings(vlen); i++) {
        uint8_t s[256];
        size_t off, len;
        dkim_record_string_at(vlen, i, &off, &len);
        s[0] = (uint8_t)len;
        memcpy(s + 1, value + off, len);
        ldns_rdf *f = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_STR, len + 1, s);
        if (f == NULL || !ldns_rr_push_rdf(rr, f)) {
            ldns_rdf_deep_free(f);
            ldns_rr_free(rr);
            return NULL;
        }
    }
    return rr;
}

/* RFC 2136 §2.5.2: "delete an RRset" is class ANY, TTL 0, no RDATA. */
static ldns_rr *delete_rrset(ldns_rdf *owner)
{
    ldns_rr *rr = ldns_rr_new();
    if (rr == NULL)
        return NULL;
    ldns_rr_set_owner(rr, ldns_rdf_clone(owner));
    ldns_rr_set_type(rr, LDNS_RR_TYPE_TXT);
    ldns_rr_set_class(rr, LDNS_RR_CLASS_ANY);
    ldns_rr_set_ttl(rr, 0);
    return rr;
}

static ldns_pkt *update_pkt(const char *zone, const char *owner, const char *value, unsigned ttl)
{
    char fq[258];
    snprintf(fq, sizeof(fq), "%s.", owner);
    ldns_rdf *o = ldns_dname_new_frm_str(fq);
    snprintf(fq, sizeof(fq), "%s.", zone);
    ldns_rdf *z = ldns_dname_new_frm_str(fq);
    ldns_rr_list *up = ldns_rr_list_new();
    ldns_pkt *p = NULL;
    int ok = o != NULL && z != NULL && up != NULL;
    ldns_rr *del = ok ? delete_rrset(o) : NULL;
    ok = del != NULL && ldns_rr_list_push_rr(up, del);
    if (!ok)
        ldns_rr_free(del);
    if (ok && value != NULL) {
        ldns_rr *add = txt_rr(o, value, ttl);
        ok = add != NULL && ldns_rr_list_push_rr(up, add);
        if (!ok)
            ldns_rr_free(add);
    }
    if (ok) {
        p = ldns_update_pkt_new(z, LDNS_RR_CLASS_IN, NULL, up, NULL); /* takes z */
        z = NULL;
    }
    if (p != NULL) {
        ldns_pkt_set_rd(p, false);
        ldns_pkt_set_random_id(p);
    }
    ldns_rdf_deep_free(z);
    ldns_rdf_deep_free(o);
    ldns_rr_list_deep_free(up);
    return p;
}

/* "NOTAUTH", plus the TSIG error when the answer carries one (RFC 8945 §5.3). */
static void refusal(const ldns_pkt *a, char *buf, size_t sz)
{
    char rb[16];
    const char *rcode = dn_rcode_name(ldns_pkt_get_rcode(a), rb);
    ldns_rr *t = ldns_pkt_tsig(a);
    unsigned terr =
        t != NULL && ldns_rr_rd_count(t) > 5 ? ldns_rdf2native_int16(ldns_rr_rdf(t, 5)) : 0;
    const char *tname = terr == 16   ? "BADSIG"
                        : terr == 17 ? "BADKEY"
                        : terr == 18 ? "BADTIME"
                                     : NULL;
    if (terr == 0)
        snprintf(buf, sz, "%s", rcode);
    else if (tname != NULL)
        snprintf(buf, sz, "%s (TSIG error %s)", rcode, tname);
    else
        snprintf(buf, sz, "%s (TSIG error %u)", rcode, terr);
}

/* One TCP exchange with the first server that takes it; *wire: free(). */
static int exchange(dn_res *res, ldns_buffer *qb, uint8_t **wire, size_t *n, dh_err *e)
{
    ldns_rdf **ns = ldns_resolver_nameservers(res->r);
    ldns_status st = LDNS_STATUS_NETWORK_ERR;
    for (size_t i = 0; i < ldns_resolver_nameserver_count(res->r); i++) {
        size_t sl = 0;
        struct sockaddr_storage *ss =
            ldns_rdf2native_sockaddr_storage(ns[i], ldns_resolver_port(res->r), &sl);
        if (ss == NULL)
            continue;
        st = ldns_tcp_send(wire, qb, ss, (socklen_t)sl, ldns_resolver_timeout(res->r), n);
        free(ss);
        if (st == LDNS_STATUS_OK)
            return DH_OK;
    }
    return dh_err_set(e, DH_EIO, "%s: no answer: %s", res->what, ldns_get_errorstr_by_id(st));
}

/* The answer: NOERROR and, for a signed update, a TSIG that verifies
 * against the one we sent (RFC 8945 §5.3). */
static int judge_answer(dn_res *res, const ldns_pkt *q, const dn_tsig *t, const uint8_t *wire,
                        size_t n, dh_err *e)
{
    ldns_pkt *a = NULL;
    char why[64];
    int rc = DH_OK;
    if (ldns_wire2pkt(&a, wire, n) != LDNS_STATUS_OK || ldns_pkt_id(a) != ldns_pkt_id(q)) {
        rc = dh_err_set(e, DH_EIO, "%s: malformed answer", res->what);
    } else if (ldns_pkt_get_rcode(a) != LDNS_RCODE_NOERROR) {
        refusal(a, why, sizeof(why));
        rc = dh_err_set(e, DH_EIO, "%s refused: %s", res->what, why);
    } else if (t != NULL && !ldns_pkt_tsig_verify(a, wire, n, t->name, t->secret,
                                                  ldns_rr_rdf(ldns_pkt_tsig(q), 3))) {
        rc = dh_err_set(e, DH_EIO, "%s: the answer's TSIG does not verify with key %s", res->what,
                        t->name);
    }
    ldns_pkt_free(a);
    return rc;
}

/* ldns_resolver_send_pkt drops an answer whose TSIG does not verify, and
 * with it the RCODE that says why: sign, send and verify here instead. */
static int send_update(dn_res *res, const char *zone, const dn_tsig *t, const char *owner,
                       const char *value, unsigned ttl, dh_err *e)
{
    ldns_pkt *q = update_pkt(zone, owner, value, ttl);
    ldns_buffer *qb = ldns_buffer_new(LDNS_MAX_PACKETLEN);
    uint8_t *wire = NULL;
    size_t n = 0;
    char alg[40];
    int rc = q != NULL && qb != NULL ? DH_OK : dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc == DH_OK && t != NULL) {
        /* RFC 8945 §6: algorithm names are domain names; HMAC-MD5's is long. */
        snprintf(alg, sizeof(alg), "%s.",
                 strcmp(t->alg, "hmac-md5") == 0 ? "hmac-md5.sig-alg.reg.int" : t->alg);
        ldns_status st = ldns_pkt_tsig_sign(q, t->name, t->secret, 300, alg, NULL);
        if (st != LDNS_STATUS_OK)
            rc = dh_err_set(e, DH_ECONFIG, "TSIG key %s: cannot sign: %s", t->name,
                            ldns_get_errorstr_by_id(st));
    }
    if (rc == DH_OK && ldns_pkt2buffer_wire(qb, q) != LDNS_STATUS_OK)
        rc = dh_err_set(e, DH_EINVAL, "the update does not fit in a DNS message");
    if (rc == DH_OK)
        rc = exchange(res, qb, &wire, &n, e);
    if (rc == DH_OK)
        rc = judge_answer(res, q, t, wire, n, e);
    if (rc != DH_OK)
        dh_err_prefix(e, "update of %s in zone %s", owner, zone);
    free(wire);
    ldns_buffer_free(qb);
    ldns_pkt_free(q);
    return rc;
}

int dn_update_txt(const dn_config *c, const char *zone, const dn_tsig *tsig, const char *owner,
                  const char *value, unsigned ttl, dh_err *e)
{
    char z[256], o[256];
    if (dn_name_norm(zone, z, sizeof(z)) != DH_OK || dn_name_norm(owner, o, sizeof(o)) != DH_OK)
        return dh_err_set(e, DH_EINVAL, "bad zone \"%s\" or owner \"%s\"", zone, owner);
    size_t zl = strlen(z), ol = strlen(o);
    if (!(ol == zl && strcmp(o, z) == 0) &&
        !(ol > zl && o[ol - zl - 1] == '.' && strcmp(o + ol - zl, z) == 0))
        return dh_err_set(e, DH_EINVAL, "%s is not inside zone %s", o, z);
    if (value != NULL && strlen(value) > 4000)
        return dh_err_set(e, DH_EINVAL, "TXT value for %s is too long", o);
    if (tsig != NULL && !known_alg(tsig->alg))
        return dh_err_set(e, DH_EINVAL, "TSIG key %s: algorithm %s is not supported", tsig->name,
                          tsig->alg);
    dn_res res;
    int rc = dn_res_open(c, 1, &res, e);
    if (rc != DH_OK)
        return rc;
    /* TCP: an update is not retried blindly, and a long key fits. */
    rc = send_update(&res, z, tsig, o, value, ttl, e);
    dn_res_close(&res);
    return rc;
}
