/*
 * check: what DNS publishes for each stored selector of a domain, compared
 * with the key in the state database (the token's public key).
 *
 * Per selector the verdict is "ok" when DNS says what it should (the key, or
 * p= empty for a revoked or destroyed key), "fix" when it is missing or
 * wrong, "error" when DNS did not answer. Exit status: 0 all ok, 5 (DH_EDNS)
 * some to fix, 1 when DNS failed for any (the picture is incomplete).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "dkim/b64.h"
#include "dns/dns.h"
#include "keyctl/keyctl.h"

enum verdict { V_OK, V_FIX, V_ERROR };
static const char *const verdict_names[] = {"ok", "fix", "error"};

typedef struct row {
    const ks_selector *sel;
    char name[300];          /* the name asked for */
    enum dn_status expected; /* DN_OK, or DN_REVOKED for a revoked key */
    dn_result res;
    enum verdict verdict;
    char error[512]; /* V_ERROR: why */
} row;

static int parse_args(int argc, char **argv, int *json, int *npos)
{
    static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int ch;
    *json = 0;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch != 'j')
            return -1;
        *json = 1;
    }
    *npos = argc - optind;
    return *npos >= 1 && *npos <= 2 ? 0 : -1;
}

/* A name reused by rotation has older (destroyed) rows under it; DNS holds
 * one record per name, the newest key's, so only that row is checked. The
 * list is oldest first. */
static void drop_shadowed(ks_selector *l, size_t *n)
{
    size_t out = 0;
    for (size_t i = 0; i < *n; i++) {
        int newer = 0;
        for (size_t j = i + 1; j < *n && !newer; j++)
            newer =
                strcmp(l[i].domain, l[j].domain) == 0 && strcmp(l[i].selector, l[j].selector) == 0;
        if (newer)
            ks_selector_clear(&l[i]);
        else
            l[out++] = l[i];
    }
    *n = out;
}

static int selectors(kc_ctx *c, const char *domain, const char *selector, ks_selector **l,
                     size_t *n, dh_err *e)
{
    if (selector == NULL) {
        int rc = ks_list(c->store, domain, l, n, e);
        if (rc == DH_OK)
            drop_shadowed(*l, n);
        if (rc == DH_OK && *n == 0)
            rc = dh_err_set(e, DH_ENOTFOUND, "domain %s has no selectors", domain);
        return rc;
    }
    ks_selector *one = calloc(1, sizeof(*one));
    if (one == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    int rc = ks_get(c->store, domain, selector, one, e);
    if (rc != DH_OK) {
        free(one);
        return rc;
    }
    *l = one;
    *n = 1;
    return DH_OK;
}

/* Revoked and destroyed keys publish p= empty (RFC 6376 §3.6.1), as `dns`
 * prints them. */
static void row_init(row *r, const ks_selector *s)
{
    r->sel = s;
    r->expected = s->state == KS_REVOKED || s->state == KS_DESTROYED ? DN_REVOKED : DN_OK;
    snprintf(r->name, sizeof(r->name), "%s._domainkey.%s", s->selector, s->domain);
}

/* Checks one selector; a DNS failure is recorded in the row, not returned. */
static int check_one(const conf *cf, const ks_selector *s, row *r, dh_err *e)
{
    dh_buf pub = {0}, target = {0};
    dn_config dc = {.server = cf->dns_server};
    row_init(r, s);
    int rc = dkim_b64_decode(s->public_key, strlen(s->public_key), &pub);
    if (rc != DH_OK)
        rc = dh_err_set(e, DH_EDB, "%s: the stored public key is not base64", r->name);
    if (rc == DH_OK && cf->delegation_zone != NULL &&
        dn_delegated_name(s->domain, s->selector, cf->delegation_zone, &target) != DH_OK)
        rc = dh_err_set(e, DH_ECONFIG, "%s: no delegated name under %s (label too long)", r->name,
                        cf->delegation_zone);
    if (rc == DH_OK) {
        dn_expect want = {.alg = s->alg,
                          .pub = pub.data,
                          .pub_len = pub.len,
                          .cname_target = target.data ? (const char *)target.data : NULL};
        dh_err de = {0};
        if (dn_check(&dc, s->domain, s->selector, &want, &r->res, &de) != DH_OK) {
            r->verdict = V_ERROR;
            snprintf(r->error, sizeof(r->error), "%s", de.msg);
        } else {
            r->verdict = r->res.status == r->expected ? V_OK : V_FIX;
        }
    }
    dh_buf_free(&pub);
    dh_buf_free(&target);
    return rc;
}

static const char *detail(const row *r)
{
    if (r->verdict == V_ERROR)
        return r->error;
    if (r->res.status == DN_OK && r->expected == DN_REVOKED)
        return "the key is still published; expected p= empty (revoked)";
    if (r->res.reason[0] != '\0')
        return r->res.reason;
    return r->res.final_name;
}

static void print_table(kc_ctx *c, const row *rows, size_t n)
{
    fprintf(c->out, "%-16s %-10s %-9s %-6s %s\n", "SELECTOR", "STATE", "DNS", "RESULT", "DETAIL");
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        fprintf(c->out, "%-16s %-10s %-9s %-6s %s\n", r->sel->selector,
                ks_state_name(r->sel->state),
                r->verdict == V_ERROR ? "error" : dn_status_name(r->res.status),
                verdict_names[r->verdict], detail(r));
    }
}

static int json_row(const row *r, dh_buf *j)
{
    int rc = dh_buf_puts(j, "{\"domain\":");
    if (rc == DH_OK)
        rc = dh_json_str(j, r->sel->domain);
    if (rc == DH_OK)
        rc = dh_buf_puts(j, ",\"selector\":");
    if (rc == DH_OK)
        rc = dh_json_str(j, r->sel->selector);
    if (rc == DH_OK)
        rc = dh_buf_printf(j, ",\"state\":\"%s\",\"name\":", ks_state_name(r->sel->state));
    if (rc == DH_OK)
        rc = dh_json_str(j, r->name);
    if (rc == DH_OK)
        rc = dh_buf_printf(j, ",\"dns\":\"%s\",\"expected\":\"%s\",\"result\":\"%s\",\"reason\":",
                           r->verdict == V_ERROR ? "error" : dn_status_name(r->res.status),
                           dn_status_name(r->expected), verdict_names[r->verdict]);
    if (rc == DH_OK)
        rc = dh_json_str(j, r->verdict == V_OK && r->res.reason[0] == '\0' ? "" : detail(r));
    if (rc == DH_OK)
        rc = dh_buf_puts(j, ",\"final_name\":");
    if (rc == DH_OK)
        rc = dh_json_str(j, r->res.final_name);
    if (rc == DH_OK)
        rc = dh_buf_puts(j, ",\"record\":");
    if (rc == DH_OK)
        rc = dh_json_str(j, r->res.record.data ? (const char *)r->res.record.data : "");
    if (rc == DH_OK)
        rc = dh_buf_putc(j, '}');
    return rc;
}

static int json_row_item(const void *r, dh_buf *j)
{
    return json_row(r, j);
}

/* The command's status from the rows: a DNS failure outranks a record to fix. */
static int outcome(const char *domain, const row *rows, size_t n, dh_err *e)
{
    size_t nfix = 0, nerr = 0;
    const char *first_err = NULL;
    for (size_t i = 0; i < n; i++) {
        nfix += rows[i].verdict == V_FIX;
        if (rows[i].verdict == V_ERROR && nerr++ == 0)
            first_err = rows[i].error;
    }
    if (nerr > 0)
        return dh_err_set(e, DH_EIO, "%zu of %zu selectors of %s not checked: %s", nerr, n, domain,
                          first_err);
    if (nfix > 0)
        return dh_err_set(e, DH_EDNS, "%zu of %zu selectors of %s are not as expected in DNS", nfix,
                          n, domain);
    return DH_OK;
}

static int run_checks(kc_ctx *c, const char *domain, ks_selector *l, size_t n, int json, dh_err *e)
{
    row *rows = calloc(n, sizeof(*rows));
    if (rows == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    int rc = DH_OK;
    const row *failed = NULL;
    for (size_t i = 0; rc == DH_OK && i < n; i++) {
        if (failed != NULL) {
            /* A server that did not answer once will not for the next
             * selector either: do not wait for each one's timeout. */
            row_init(&rows[i], &l[i]);
            rows[i].verdict = V_ERROR;
            snprintf(rows[i].error, sizeof(rows[i].error), "not checked: DNS failed for %s",
                     failed->name);
            continue;
        }
        rc = check_one(c->cf, &l[i], &rows[i], e);
        if (rc == DH_OK && rows[i].verdict == V_ERROR)
            failed = &rows[i];
    }
    if (rc == DH_OK && json)
        rc = kc_print_json_array(c, rows, n, sizeof(*rows), json_row_item, e);
    else if (rc == DH_OK)
        print_table(c, rows, n);
    if (rc == DH_OK)
        rc = outcome(domain, rows, n, e);
    for (size_t i = 0; i < n; i++)
        dn_result_clear(&rows[i].res);
    free(rows);
    return rc;
}

int kc_cmd_check(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    int json, npos;
    if (parse_args(argc, argv, &json, &npos) != 0)
        return dh_err_set(e, DH_EINVAL, "%s", "");
    char *domain = NULL, *selector = NULL;
    ks_selector *l = NULL;
    size_t n = 0;
    int rc = ks_normalize_name(argv[optind], "domain", &domain, e);
    if (rc == DH_OK && npos == 2)
        rc = ks_normalize_name(argv[optind + 1], "selector", &selector, e);
    if (rc == DH_OK)
        rc = kc_store(c, e);
    if (rc == DH_OK)
        rc = selectors(c, domain, selector, &l, &n, e);
    if (rc == DH_OK)
        rc = run_checks(c, domain, l, n, json, e);
    ks_list_free(l, n);
    free(domain);
    free(selector);
    return rc;
}
