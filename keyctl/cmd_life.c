/*
 * show / activate / revoke / destroy / rotate / audit: the key lifecycle
 * from the command line. The rules live in lifecycle/ (the management API
 * calls the same functions); this file parses arguments and prints.
 */
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/isotime.h"
#include "common/json.h"
#include "keyctl/keyctl.h"

const char *kc_actor(void)
{
    static char actor[96];
    uid_t uid = getuid();
    struct passwd *pw = getpwuid(uid);
    snprintf(actor, sizeof(actor), "uid:%u(%.64s)", (unsigned)uid, pw ? pw->pw_name : "?");
    return actor;
}

int kc_life(kc_ctx *c, int need_token, lf_ctx *lf, dh_err *e)
{
    memset(lf, 0, sizeof(*lf));
    int rc = kc_store(c, e);
    if (rc == DH_OK && need_token)
        rc = kc_token(c, e);
    if (rc != DH_OK)
        return rc;
    c->dns = (lf_dns_arg){.server = c->cf->dns_server, .delegation_zone = c->cf->delegation_zone};
    *lf = (lf_ctx){.store = c->store,
                   .token = c->token,
                   .retire_after = c->cf->retire_after,
                   .publish_wait = c->cf->publish_wait,
                   .naming = c->cf->selector_naming,
                   .rsa_bits = c->cf->rsa_bits,
                   .delegation_zone = c->cf->delegation_zone,
                   .check = lf_dns_check,
                   .check_arg = &c->dns};
    return DH_OK;
}

/* Options given as {name, flag} pairs; exactly npos positional arguments. */
static int flags(int argc, char **argv, const char *const *names, int *vals, int npos)
{
    struct option longopts[8] = {{0}};
    int n = 0;
    for (; names[n]; n++)
        longopts[n] = (struct option){names[n], no_argument, NULL, 'A' + n};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch < 'A' || ch >= 'A' + n)
            return -1;
        vals[ch - 'A'] = 1;
    }
    return argc - optind == npos ? 0 : -1;
}

static const char *yn(int v)
{
    return v < 0 ? "unknown" : v ? "yes" : "no";
}

static void print_show(kc_ctx *c, const lf_info *i)
{
    const ks_selector *k = &i->key;
    char t[32];
    dh_iso_time(k->state_changed, t);
    fprintf(c->out, "domain:       %s\nselector:     %s\n", k->domain, k->selector);
    fprintf(c->out, "state:        %s (since %s)\n", ks_state_name(k->state), t);
    if (k->state == KS_RETIRING) {
        char until[32];
        dh_iso_time(k->retiring_since + c->cf->retire_after, until);
        fprintf(c->out, "retire at:    %s (retire_after)\n", until);
    }
    fprintf(c->out, "algorithm:    %s, %u bits\n", dkim_alg_name(k->alg), k->bits);
    fprintf(c->out, "fingerprint:  SHA256:%s\n", i->fingerprint);
    fprintf(c->out, "key id:       %s\n", k->key_id);
    fprintf(c->out, "custody:      %s\n",
            k->custody == KS_IMPORTED ? "imported" : "generated-in-token");
    if (i->custody_known)
        fprintf(c->out,
                "token:        sensitive=%s extractable=%s always-sensitive=%s "
                "never-extractable=%s local=%s\n",
                yn(i->custody.sensitive), yn(i->custody.extractable),
                yn(i->custody.always_sensitive), yn(i->custody.never_extractable),
                yn(i->custody.local));
    else
        fprintf(c->out, "token:        %s\n", i->custody_error);
    if (k->predecessor)
        fprintf(c->out, "replaces:     %s\n", k->predecessor);
    fprintf(c->out, "history:\n");
    for (size_t h = 0; h < i->nhistory; h++) {
        const ks_history *x = &i->history[h];
        dh_iso_time(x->time, t);
        fprintf(c->out, "  %s  %-9s -> %-9s  %s%s%s\n", t,
                x->from_set ? ks_state_name(x->from) : "", ks_state_name(x->to), x->actor,
                x->note[0] ? "  " : "", x->note);
    }
}

int kc_cmd_show(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    static const char *const names[] = {NULL};
    int vals[1] = {0};
    if (flags(argc, argv, names, vals, 2) < 0)
        return dh_err_set(e, DH_EINVAL, "%s", "");
    lf_ctx lf;
    lf_info info;
    int rc = kc_life(c, 0, &lf, e);
    dh_err te;
    /* The custody attributes come from the token; show the rest without it. */
    if (rc == DH_OK && kc_token(c, &te) == DH_OK)
        lf.token = c->token;
    if (rc == DH_OK)
        rc = lf_show(&lf, argv[optind], argv[optind + 1], &info, e);
    if (rc == DH_OK) {
        print_show(c, &info);
        lf_info_clear(&info);
    }
    return rc;
}

int kc_cmd_activate(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    static const char *const names[] = {"force", NULL};
    int force[1] = {0};
    if (flags(argc, argv, names, force, 2) < 0)
        return dh_err_set(e, DH_EINVAL, "%s", "");
    lf_ctx lf;
    lf_seen seen;
    int rc = kc_life(c, 0, &lf, e);
    if (rc == DH_OK)
        rc = lf_activate(&lf, argv[optind], argv[optind + 1], force[0], kc_actor(), &seen, e);
    if (rc == DH_OK)
        fprintf(c->out, "%s of %s is active%s\n", argv[optind + 1], argv[optind],
                force[0] ? " (forced, DNS not checked: the audit log says so)" : "");
    return rc;
}

int kc_cmd_revoke(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    static const char *const names[] = {"destroy", NULL};
    int destroy[1] = {0};
    if (flags(argc, argv, names, destroy, 2) < 0)
        return dh_err_set(e, DH_EINVAL, "%s", "");
    lf_ctx lf;
    int rc = kc_life(c, destroy[0], &lf, e);
    if (rc == DH_OK)
        rc = lf_revoke(&lf, argv[optind], argv[optind + 1], destroy[0], kc_actor(), e);
    if (rc != DH_OK)
        return rc;
    fprintf(stderr, "dkim-keyctl: %s of %s revoked%s; publish its record with p= empty:\n",
            argv[optind + 1], argv[optind], destroy[0] ? " and its token key destroyed" : "");
    return kc_print_records(c, &lf, argv[optind], argv[optind + 1], 0, e);
}

int kc_cmd_destroy(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    static const char *const names[] = {NULL};
    int vals[1] = {0};
    if (flags(argc, argv, names, vals, 2) < 0)
        return dh_err_set(e, DH_EINVAL, "%s", "");
    lf_ctx lf;
    int rc = kc_life(c, 1, &lf, e);
    if (rc == DH_OK)
        rc = lf_destroy(&lf, argv[optind], argv[optind + 1], kc_actor(), e);
    if (rc == DH_OK)
        fprintf(c->out, "%s of %s destroyed: the token key is deleted\n", argv[optind + 1],
                argv[optind]);
    return rc;
}

static void print_rotation(kc_ctx *c, const char *domain, const lf_rotation *r)
{
    if (r->step == LF_ROTATE_CREATED)
        fprintf(stderr,
                "dkim-keyctl: created %s (%s) to replace %s; publish this record, then run "
                "`dkim-keyctl rotate %s` again:\n",
                r->selector, dkim_alg_name(r->alg), r->old ? r->old : "(no active key)", domain);
    else if (r->step == LF_ROTATE_WAITING && r->seen.ok)
        fprintf(stderr, "dkim-keyctl: waiting: %s is %s; run again then:\n", r->selector,
                r->seen.reason);
    else if (r->step == LF_ROTATE_WAITING)
        fprintf(stderr,
                "dkim-keyctl: waiting: DNS does not show %s yet (%s%s%s); publish this record "
                "and run again:\n",
                r->selector, r->seen.status, r->seen.reason[0] ? ": " : "", r->seen.reason);
    else
        fprintf(c->out, "%s of %s is active%s%s%s\n", r->selector, domain, r->old ? "; " : "",
                r->old ? r->old : "", r->old ? " is retiring" : "");
}

int kc_cmd_rotate(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    static const struct option longopts[] = {{"alg", required_argument, NULL, 'a'},
                                             {NULL, 0, NULL, 0}};
    int alg = -1, ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        enum dkim_alg a;
        if (ch != 'a')
            return dh_err_set(e, DH_EINVAL, "%s", "");
        if (dkim_alg_parse(optarg, &a, NULL) != DH_OK)
            return dh_err_set(e, DH_EINVAL, "--alg: '%s' is not rsa or ed25519", optarg);
        alg = (int)a;
    }
    if (argc - optind != 1)
        return dh_err_set(e, DH_EINVAL, "%s", "");
    const char *domain = argv[optind];
    lf_ctx lf;
    lf_rotation r;
    int rc = kc_life(c, 1, &lf, e);
    if (rc == DH_OK)
        rc = lf_rotate(&lf, domain, alg, kc_actor(), &r, e);
    if (rc != DH_OK)
        return rc;
    print_rotation(c, domain, &r);
    if (r.step != LF_ROTATE_SWITCHED)
        rc = kc_print_records(c, &lf, domain, r.selector, 0, e);
    lf_rotation_clear(&r);
    return rc;
}

static int audit_json(const au_entry *a, dh_buf *j)
{
    char t[32];
    dh_iso_time(a->time, t);
    int rc = dh_buf_printf(j, "{\"seq\":%lld,\"time\":\"%s\",\"actor\":", a->seq, t);
    const char *keys[] = {"actor", "event", "domain", "selector", "fingerprint", "detail"};
    const char *vals[] = {a->actor, a->event, a->domain, a->selector, a->fingerprint, a->detail};
    for (int i = 0; rc == DH_OK && i < 6; i++) {
        if (i > 0)
            rc = dh_buf_printf(j, ",\"%s\":", keys[i]);
        if (rc == DH_OK)
            rc = dh_json_str(j, vals[i]);
    }
    if (rc == DH_OK)
        rc = dh_buf_printf(j, ",\"prev_hash\":\"%s\",\"hash\":\"%s\"}", a->prev_hash, a->hash);
    return rc;
}

static int audit_print(kc_ctx *c, int json, dh_err *e)
{
    au_entry *l = NULL;
    size_t n = 0;
    dh_buf j = {0};
    int rc = au_list(c->store, 0, &l, &n, e);
    if (rc == DH_OK && json) {
        rc = dh_buf_putc(&j, '[');
        for (size_t i = 0; rc == DH_OK && i < n; i++)
            if ((rc = i ? dh_buf_putc(&j, ',') : DH_OK) == DH_OK)
                rc = audit_json(&l[i], &j);
        if (rc == DH_OK && (rc = dh_buf_putc(&j, ']')) == DH_OK)
            fprintf(c->out, "%s\n", (char *)j.data);
        else
            dh_err_set(e, rc, "cannot format JSON output");
    } else if (rc == DH_OK) {
        for (size_t i = 0; i < n; i++) {
            char t[32];
            dh_iso_time(l[i].time, t);
            fprintf(c->out, "%lld %s %s %s %s %s %.16s %s\n", l[i].seq, t, l[i].actor, l[i].event,
                    l[i].domain[0] ? l[i].domain : "-", l[i].selector[0] ? l[i].selector : "-",
                    l[i].fingerprint[0] ? l[i].fingerprint : "-", l[i].detail);
        }
    }
    dh_buf_free(&j);
    au_list_free(l, n);
    return rc;
}

static int audit_verify(kc_ctx *c, int json, dh_err *e)
{
    au_verify_result r;
    int rc = au_verify(c->store, &r, e);
    if (rc != DH_OK)
        return rc;
    if (json) {
        dh_buf j = {0};
        rc = dh_buf_printf(&j,
                           "{\"ok\":%s,\"problem\":\"%s\",\"seq\":%lld,\"entries\":%lld,"
                           "\"head_seq\":%lld,\"head_hash\":\"%s\",\"reason\":",
                           r.problem == AU_FINE ? "true" : "false", au_problem_name(r.problem),
                           r.bad_seq, r.entries, r.head_seq, r.head_hash);
        if (rc == DH_OK)
            rc = dh_json_str(&j, r.reason);
        if (rc == DH_OK)
            rc = dh_buf_puts(&j, ",\"note\":");
        if (rc == DH_OK)
            rc = dh_json_str(&j, r.note);
        if (rc == DH_OK && (rc = dh_buf_putc(&j, '}')) == DH_OK)
            fprintf(c->out, "%s\n", (char *)j.data);
        dh_buf_free(&j);
        if (rc != DH_OK)
            return dh_err_set(e, rc, "cannot format JSON output");
    } else if (r.problem == AU_FINE) {
        fprintf(c->out, "audit log ok: %lld entries, head %lld %s\n", r.entries, r.head_seq,
                r.head_hash);
        if (r.note[0])
            fprintf(c->out, "note: %s\n", r.note);
    }
    if (r.problem != AU_FINE)
        return dh_err_set(e, DH_ESTATE, "audit log verification failed (%s): %s",
                          au_problem_name(r.problem), r.reason);
    return DH_OK;
}

int kc_cmd_audit(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    static const char *const names[] = {"verify", "json", NULL};
    int vals[2] = {0, 0};
    if (flags(argc, argv, names, vals, 0) < 0)
        return dh_err_set(e, DH_EINVAL, "%s", "");
    int rc = kc_store(c, e);
    if (rc != DH_OK)
        return rc;
    return vals[0] ? audit_verify(c, vals[1], e) : audit_print(c, vals[1], e);
}
