/*
 * list / dns: read-only views of the state database. dns prints what the
 * zone should hold now (lifecycle/ decides: lf_records).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common/isotime.h"
#include "common/json.h"
#include "dkim/record.h"
#include "keyctl/keyctl.h"

/* Only --json is accepted; returns 1 if given, <0 on a bad option. */
static int json_flag(int argc, char **argv)
{
    static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int ch, json = 0;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch != 'j')
            return -1;
        json = 1;
    }
    return json;
}

/* One zone-file line: OWNER IN TXT ( "..." ... ). */
static int print_txt(kc_ctx *c, const char *owner, const char *value, dh_err *e)
{
    dh_buf line = {0};
    int rc = dkim_record_zone_line(owner, value, &line);
    /* One record per line, whether or not the formatter ended it. */
    while (rc == DH_OK && line.len > 0 && line.data[line.len - 1] == '\n')
        line.data[--line.len] = '\0';
    if (rc == DH_OK)
        fprintf(c->out, "%s\n", (char *)line.data);
    else
        dh_err_set(e, rc, "cannot format the record at %s", owner);
    dh_buf_free(&line);
    return rc;
}

static int json_record_item(const void *r, dh_buf *j)
{
    return lf_record_json(r, j);
}

int kc_print_records(kc_ctx *c, lf_ctx *lf, const char *domain, const char *selector, int json,
                     dh_err *e)
{
    lf_record *r = NULL;
    size_t n = 0;
    int rc = lf_records(lf, domain, selector, &r, &n, e);
    if (rc == DH_OK && json)
        rc = kc_print_json_array(c, r, n, sizeof(*r), json_record_item, e);
    for (size_t i = 0; rc == DH_OK && !json && i < n; i++) {
        /* Provider mode: the customer's CNAME, then our TXT record. */
        if (r[i].alias)
            fprintf(c->out, "%s IN CNAME %s\n", r[i].alias, r[i].owner);
        rc = print_txt(c, r[i].owner, r[i].value, e);
    }
    lf_records_free(r, n);
    return rc;
}

static int json_selector(const ks_selector *s, dh_buf *j)
{
    char created[32];
    dh_iso_time(s->created, created);
    int rc = dh_buf_puts(j, "{\"domain\":");
    if (rc == DH_OK)
        rc = dh_json_str(j, s->domain);
    if (rc == DH_OK)
        rc = dh_buf_puts(j, ",\"selector\":");
    if (rc == DH_OK)
        rc = dh_json_str(j, s->selector);
    if (rc == DH_OK)
        rc = dh_buf_printf(j,
                           ",\"algorithm\":\"%s\",\"bits\":%u,\"created\":\"%s\",\"state\":\"%s\","
                           "\"custody\":\"%s\",\"key_id\":\"%s\",\"state_changed\":%lld,"
                           "\"retiring_since\":%lld,\"predecessor\":",
                           dkim_alg_name(s->alg), s->bits, created, ks_state_name(s->state),
                           ks_custody_name(s->custody), s->key_id, s->state_changed,
                           s->retiring_since);
    if (rc == DH_OK)
        rc = s->predecessor ? dh_json_str(j, s->predecessor) : dh_buf_puts(j, "null");
    if (rc == DH_OK)
        rc = dh_buf_putc(j, '}');
    return rc;
}

static int json_selector_item(const void *s, dh_buf *j)
{
    return json_selector(s, j);
}

static void print_table(kc_ctx *c, const ks_selector *l, size_t n)
{
    fprintf(c->out, "%-30s %-16s %-15s %5s %-20s %-10s %s\n", "DOMAIN", "SELECTOR", "ALGORITHM",
            "BITS", "CREATED", "STATE", "CUSTODY");
    for (size_t i = 0; i < n; i++) {
        char created[32];
        dh_iso_time(l[i].created, created);
        fprintf(c->out, "%-30s %-16s %-15s %5u %-20s %-10s %s\n", l[i].domain, l[i].selector,
                dkim_alg_name(l[i].alg), l[i].bits, created, ks_state_name(l[i].state),
                l[i].custody == KS_IMPORTED ? "imported" : "generated-in-token");
    }
}

int kc_cmd_list(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    int json = json_flag(argc, argv);
    if (json < 0 || optind != argc)
        return dh_err_set(e, DH_EINVAL, "%s", "");
    ks_selector *l = NULL;
    size_t n = 0;
    int rc = kc_store(c, e);
    if (rc == DH_OK)
        rc = ks_list(c->store, NULL, &l, &n, e);
    if (rc == DH_OK && json)
        rc = kc_print_json_array(c, l, n, sizeof(*l), json_selector_item, e);
    else if (rc == DH_OK)
        print_table(c, l, n);
    ks_list_free(l, n);
    return rc;
}

int kc_cmd_dns(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    int json = json_flag(argc, argv);
    int npos = argc - optind;
    if (json < 0 || npos < 1 || npos > 2)
        return dh_err_set(e, DH_EINVAL, "%s", "");
    lf_ctx lf;
    int rc = kc_life(c, 0, &lf, e);
    if (rc == DH_OK)
        rc = kc_print_records(c, &lf, argv[optind], npos == 2 ? argv[optind + 1] : NULL, json, e);
    return rc;
}
