/*
 * list / dns: read-only views of the state database.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "dkim/b64.h"
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

static void iso_time(long long t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Revoked keys publish an empty p= (RFC 6376 §3.6.1); destroyed ones too,
 * until the lifecycle removes their record. */
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

static int owner_name(const ks_selector *s, dh_buf *out)
{
    return dh_buf_printf(out, "%s._domainkey.%s.", s->selector, s->domain);
}

int kc_print_record(kc_ctx *c, const ks_selector *s, dh_err *e)
{
    dh_buf owner = {0}, value = {0}, line = {0};
    int rc = owner_name(s, &owner);
    if (rc == DH_OK)
        rc = record_value(s, &value);
    if (rc == DH_OK)
        rc = dkim_record_zone_line((char *)owner.data, (char *)value.data, &line);
    /* One record per line, whether or not the formatter ended it. */
    while (rc == DH_OK && line.len > 0 && line.data[line.len - 1] == '\n')
        line.data[--line.len] = '\0';
    if (rc == DH_OK)
        fprintf(c->out, "%s\n", (char *)line.data);
    else
        dh_err_set(e, rc, "cannot format the record of %s for %s", s->selector, s->domain);
    dh_buf_free(&owner);
    dh_buf_free(&value);
    dh_buf_free(&line);
    return rc;
}

static int json_record(const ks_selector *s, dh_buf *j)
{
    dh_buf owner = {0}, value = {0};
    int rc = owner_name(s, &owner);
    if (rc == DH_OK)
        rc = record_value(s, &value);
    if (rc == DH_OK)
        rc = dh_buf_puts(j, "{\"name\":");
    if (rc == DH_OK)
        rc = dh_json_str(j, (char *)owner.data);
    if (rc == DH_OK)
        rc = dh_buf_puts(j, ",\"type\":\"TXT\",\"value\":");
    if (rc == DH_OK)
        rc = dh_json_str(j, (char *)value.data);
    if (rc == DH_OK)
        rc = dh_buf_puts(j, ",\"strings\":[");
    for (size_t i = 0; rc == DH_OK && i < dkim_record_nstrings(value.len); i++) {
        size_t off, len;
        dkim_record_string_at(value.len, i, &off, &len);
        char *part = strndup((char *)value.data + off, len);
        rc = part ? dh_buf_puts(j, i ? "," : "") : DH_ENOMEM;
        if (rc == DH_OK)
            rc = dh_json_str(j, part);
        free(part);
    }
    if (rc == DH_OK)
        rc = dh_buf_printf(j, "],\"selector\":\"%s\",\"state\":\"%s\"}", s->selector,
                           ks_state_name(s->state));
    dh_buf_free(&owner);
    dh_buf_free(&value);
    return rc;
}

static int json_selector(const ks_selector *s, dh_buf *j)
{
    char created[32];
    iso_time(s->created, created);
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
                           "\"custody\":\"%s\",\"key_id\":\"%s\"}",
                           dkim_alg_name(s->alg), s->bits, created, ks_state_name(s->state),
                           ks_custody_name(s->custody), s->key_id);
    return rc;
}

static int print_json_list(kc_ctx *c, const ks_selector *l, size_t n,
                           int (*one)(const ks_selector *, dh_buf *), dh_err *e)
{
    dh_buf j = {0};
    int rc = dh_buf_putc(&j, '[');
    for (size_t i = 0; rc == DH_OK && i < n; i++) {
        if (i > 0)
            rc = dh_buf_putc(&j, ',');
        if (rc == DH_OK)
            rc = one(&l[i], &j);
    }
    if (rc == DH_OK)
        rc = dh_buf_putc(&j, ']');
    if (rc == DH_OK)
        fprintf(c->out, "%s\n", (char *)j.data);
    else
        dh_err_set(e, rc, "cannot format JSON output");
    dh_buf_free(&j);
    return rc;
}

static void print_table(kc_ctx *c, const ks_selector *l, size_t n)
{
    fprintf(c->out, "%-30s %-16s %-15s %5s %-20s %-10s %s\n", "DOMAIN", "SELECTOR", "ALGORITHM",
            "BITS", "CREATED", "STATE", "CUSTODY");
    for (size_t i = 0; i < n; i++) {
        char created[32];
        iso_time(l[i].created, created);
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
        rc = print_json_list(c, l, n, json_selector, e);
    else if (rc == DH_OK)
        print_table(c, l, n);
    ks_list_free(l, n);
    return rc;
}

static int dns_rows(kc_ctx *c, const char *domain, const char *selector, ks_selector **l, size_t *n,
                    dh_err *e)
{
    if (selector == NULL) {
        int rc = ks_list(c->store, domain, l, n, e);
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

int kc_cmd_dns(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    int json = json_flag(argc, argv);
    int npos = argc - optind;
    if (json < 0 || npos < 1 || npos > 2)
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
        rc = dns_rows(c, domain, selector, &l, &n, e);
    if (rc == DH_OK && json)
        rc = print_json_list(c, l, n, json_record, e);
    for (size_t i = 0; rc == DH_OK && !json && i < n; i++)
        rc = kc_print_record(c, &l[i], e);
    ks_list_free(l, n);
    free(domain);
    free(selector);
    return rc;
}
