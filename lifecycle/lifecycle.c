/*
 * lifecycle.c - the transition table and the single-key transitions.
 */
#include "lifecycle/lifecycle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/hex.h"
#include "common/log.h"
#include "lifecycle/lf_int.h"

#define F_DNS 1   /* only when DNS shows the record, or forced */
#define F_FORCE 2 /* only forced (the unforced way goes through published) */

static const struct {
    enum ks_state from, to;
    int flags;
    const char *event; /* audit event */
} table[] = {
    {KS_CREATED, KS_PUBLISHED, F_DNS, "seen-in-dns"},
    {KS_CREATED, KS_ACTIVE, F_FORCE, "activate"},
    {KS_CREATED, KS_REVOKED, 0, "revoke"},
    {KS_PUBLISHED, KS_ACTIVE, F_DNS, "activate"},
    {KS_PUBLISHED, KS_REVOKED, 0, "revoke"},
    {KS_ACTIVE, KS_RETIRING, 0, "retire"},
    {KS_ACTIVE, KS_REVOKED, 0, "revoke"},
    {KS_RETIRING, KS_ACTIVE, F_DNS, "activate"},
    {KS_RETIRING, KS_REVOKED, 0, "revoke"},
    {KS_REVOKED, KS_DESTROYED, 0, "destroy"},
};
#define NTABLE (sizeof(table) / sizeof(table[0]))

static int find(enum ks_state from, enum ks_state to)
{
    for (size_t i = 0; i < NTABLE; i++)
        if (table[i].from == from && table[i].to == to)
            return (int)i;
    return -1;
}

int lf_allowed(enum ks_state from, enum ks_state to, int force)
{
    int i = find(from, to);
    return i >= 0 && (!(table[i].flags & F_FORCE) || force);
}

void lf_allowed_next(enum ks_state from, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < NTABLE && used < size; i++) {
        if (table[i].from != from)
            continue;
        /* created -> active is reachable without force (through published). */
        used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "",
                                 ks_state_name(table[i].to));
    }
    if (used == 0)
        snprintf(buf, size, "none");
}

long long lf_now(lf_ctx *c)
{
    return c->now ? c->now() : (long long)time(NULL);
}

int lf_refuse(const ks_selector *s, enum ks_state to, dh_err *e)
{
    char next[128];
    lf_allowed_next(s->state, next, sizeof(next));
    return dh_err_set(e, DH_ESTATE, "selector %s of %s is %s; allowed next: %s (asked for %s)",
                      s->selector, s->domain, ks_state_name(s->state), next, ks_state_name(to));
}

int lf_names(const char *domain, const char *selector, char **d, char **s, dh_err *e)
{
    *d = *s = NULL;
    int rc = ks_normalize_name(domain, "domain", d, e);
    if (rc == DH_OK && selector)
        rc = ks_normalize_name(selector, "selector", s, e);
    if (rc != DH_OK) {
        free(*d);
        *d = NULL;
    }
    return rc;
}

int lf_step(lf_ctx *c, const ks_selector *cur, enum ks_state to, const char *actor,
            const char *detail, dh_err *e)
{
    int i = find(cur->state, to);
    if (i < 0)
        return lf_refuse(cur, to, e);
    char fp[AU_HASH_HEX];
    long long now = lf_now(c);
    int rc = au_fingerprint(cur->public_key, fp, e);
    if (rc == DH_OK)
        rc = ks_set_state(c->store, cur, to, now, actor, detail, e);
    if (rc == DH_OK) {
        char what[64];
        snprintf(what, sizeof(what), "%s -> %s", ks_state_name(cur->state), ks_state_name(to));
        dh_buf d = {0};
        if (dh_buf_printf(&d, "%s%s%s", what, detail && *detail ? "; " : "",
                          detail ? detail : "") != DH_OK)
            return dh_err_set(e, DH_ENOMEM, "out of memory");
        rc = au_append(c->store, now, actor, table[i].event, cur->domain, cur->selector, fp,
                       (char *)d.data, NULL, e);
        dh_buf_free(&d);
    }
    return rc;
}

int lf_finish(lf_ctx *c, int rc, dh_err *e)
{
    if (rc != DH_OK) {
        ks_rollback(c->store);
        return rc;
    }
    rc = ks_commit(c->store, e);
    dh_err ae = {0};
    if (rc == DH_OK && au_anchor_update(c->store, &ae) != DH_OK)
        /* The change is committed; only the anchor lags, which au_verify
         * reports as a note. Say so rather than fail the command. */
        dh_log(DH_LOG_WARNING, "audit anchor not updated: %s", ae.msg);
    return rc;
}

/* One transition of (domain, selector) in a transaction of its own.
 * expect (>= 0) is the state the caller saw before: a different state now
 * means someone else changed it meanwhile. */
static int change(lf_ctx *c, const char *domain, const char *selector, int expect, enum ks_state to,
                  int force, const char *actor, const char *detail, dh_err *e)
{
    ks_selector cur = {0};
    int rc = ks_begin(c->store, e);
    if (rc == DH_OK) {
        rc = lf_get(c, domain, selector, &cur, e);
        if (rc == DH_OK && expect >= 0 && cur.state != (enum ks_state)expect)
            rc = dh_err_set(e, DH_ESTATE, "selector %s of %s changed meanwhile: now %s",
                            cur.selector, cur.domain, ks_state_name(cur.state));
        /* Not forced from created: the caller saw the record in DNS, and the
         * unforced way is through published. */
        int via_published = rc == DH_OK && cur.state == KS_CREATED && to == KS_ACTIVE && !force;
        if (rc == DH_OK && !via_published && !lf_allowed(cur.state, to, force))
            rc = lf_refuse(&cur, to, e);
        if (via_published) {
            rc = lf_step(c, &cur, KS_PUBLISHED, actor, "", e);
            cur.state = KS_PUBLISHED;
        }
        if (rc == DH_OK)
            rc = lf_step(c, &cur, to, actor, detail, e);
        rc = lf_finish(c, rc, e);
    }
    ks_selector_clear(&cur);
    return rc;
}

int lf_get(lf_ctx *c, const char *domain, const char *selector, ks_selector *out, dh_err *e)
{
    char *d = NULL, *s = NULL;
    int rc = lf_names(domain, selector, &d, &s, e);
    if (rc == DH_OK)
        rc = ks_get(c->store, d, s, out, e);
    free(d);
    free(s);
    return rc;
}

static int ask_dns(lf_ctx *c, const ks_selector *s, lf_seen *seen, dh_err *e)
{
    memset(seen, 0, sizeof(*seen));
    if (c->check == NULL)
        return dh_err_set(e, DH_ESTATE,
                          "no DNS check configured: cannot confirm %s of %s is "
                          "published (use --force to activate anyway)",
                          s->selector, s->domain);
    int rc = c->check(c->check_arg, s, seen, e);
    if (rc != DH_OK)
        dh_err_prefix(e, "DNS check of %s._domainkey.%s", s->selector, s->domain);
    return rc;
}

static int not_seen(const ks_selector *s, const lf_seen *seen, const char *what, dh_err *e)
{
    return dh_err_set(e, DH_ESTATE,
                      "%s %s of %s refused: DNS says %s%s%s (publish the record `dkim-keyctl dns` "
                      "prints, or use --force)",
                      what, s->selector, s->domain, seen->status, seen->reason[0] ? ": " : "",
                      seen->reason);
}

int lf_publish_seen(lf_ctx *c, const char *domain, const char *selector, const char *actor,
                    lf_seen *seen, dh_err *e)
{
    lf_seen local, *sn = seen ? seen : &local;
    ks_selector cur = {0};
    memset(sn, 0, sizeof(*sn));
    int rc = lf_get(c, domain, selector, &cur, e);
    if (rc == DH_OK && cur.state != KS_CREATED)
        rc = lf_refuse(&cur, KS_PUBLISHED, e);
    if (rc == DH_OK)
        rc = ask_dns(c, &cur, sn, e);
    if (rc == DH_OK && !sn->ok)
        rc = not_seen(&cur, sn, "publishing", e);
    if (rc == DH_OK)
        rc = change(c, cur.domain, cur.selector, KS_CREATED, KS_PUBLISHED, 0, actor, "", e);
    ks_selector_clear(&cur);
    return rc;
}

int lf_activate(lf_ctx *c, const char *domain, const char *selector, int force, const char *actor,
                lf_seen *seen, dh_err *e)
{
    lf_seen local, *sn = seen ? seen : &local;
    ks_selector cur = {0};
    memset(sn, 0, sizeof(*sn));
    char detail[320] = "";
    int rc = lf_get(c, domain, selector, &cur, e);
    /* Refuse an illegal jump before asking DNS anything. */
    if (rc == DH_OK && !lf_allowed(cur.state, KS_ACTIVE, 1))
        rc = lf_refuse(&cur, KS_ACTIVE, e);
    if (rc == DH_OK && !force) {
        rc = ask_dns(c, &cur, sn, e);
        if (rc == DH_OK && !sn->ok)
            rc = not_seen(&cur, sn, "activating", e);
    } else if (rc == DH_OK) {
        /* Forced: the operator says DNS is not the judge this time (no DNS
         * yet, a private zone); asking would only add its timeout. */
        snprintf(sn->status, sizeof(sn->status), "unknown");
        snprintf(detail, sizeof(detail), "forced (--force); DNS not asked");
    }
    if (rc == DH_OK)
        rc =
            change(c, cur.domain, cur.selector, (int)cur.state, KS_ACTIVE, force, actor, detail, e);
    ks_selector_clear(&cur);
    return rc;
}

int lf_retire(lf_ctx *c, const char *domain, const char *selector, const char *actor, dh_err *e)
{
    return change(c, domain, selector, -1, KS_RETIRING, 0, actor, "", e);
}

int lf_revoke(lf_ctx *c, const char *domain, const char *selector, int destroy, const char *actor,
              dh_err *e)
{
    ks_selector cur = {0};
    int rc = lf_get(c, domain, selector, &cur, e);
    if (rc == DH_OK && !(destroy && cur.state == KS_REVOKED))
        rc = change(c, domain, selector, -1, KS_REVOKED, 0, actor, "", e);
    if (rc == DH_OK && destroy)
        rc = lf_destroy(c, domain, selector, actor, e);
    ks_selector_clear(&cur);
    return rc;
}

/* In the caller's transaction: deletes the token key, then the state. */
int lf_destroy_locked(lf_ctx *c, const ks_selector *cur, const char *actor, const char *why,
                      dh_err *e)
{
    uint8_t id[HSM_ID_LEN];
    if (!lf_allowed(cur->state, KS_DESTROYED, 0))
        return lf_refuse(cur, KS_DESTROYED, e);
    if (c->token == NULL)
        return dh_err_set(e, DH_ESTATE, "destroying %s of %s needs the token", cur->selector,
                          cur->domain);
    if (strlen(cur->key_id) != 2 * HSM_ID_LEN || dh_unhex(cur->key_id, id, HSM_ID_LEN) != DH_OK)
        return dh_err_set(e, DH_EDB, "selector %s of %s: bad key id '%s'", cur->selector,
                          cur->domain, cur->key_id);
    dh_err te = {0};
    int rc = hsm_key_destroy(c->token, id, HSM_ID_LEN, &te);
    const char *gone = "";
    if (rc == DH_ENOTFOUND) /* a retry after a crash between token and commit */
        gone = "; the token object was already gone";
    else if (rc != DH_OK)
        return dh_err_set(e, rc, "%s", te.msg);
    dh_buf d = {0};
    if (dh_buf_printf(&d, "%s%spublic_key=%s%s", why ? why : "", why && *why ? "; " : "",
                      cur->public_key, gone) != DH_OK)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    rc = lf_step(c, cur, KS_DESTROYED, actor, (char *)d.data, e);
    dh_buf_free(&d);
    return rc;
}

int lf_destroy(lf_ctx *c, const char *domain, const char *selector, const char *actor, dh_err *e)
{
    ks_selector cur = {0};
    int rc = ks_begin(c->store, e);
    if (rc == DH_OK) {
        rc = lf_get(c, domain, selector, &cur, e);
        if (rc == DH_OK)
            rc = lf_destroy_locked(c, &cur, actor, "", e);
        rc = lf_finish(c, rc, e);
    }
    ks_selector_clear(&cur);
    return rc;
}

int lf_expire(lf_ctx *c, const char *actor, size_t *count, dh_err *e)
{
    if (count)
        *count = 0;
    ks_selector *l = NULL;
    size_t n = 0;
    long long now = lf_now(c);
    int rc = ks_list(c->store, NULL, &l, &n, e);
    for (size_t i = 0; rc == DH_OK && i < n; i++) {
        if (l[i].state != KS_RETIRING || l[i].retiring_since + c->retire_after > now)
            continue;
        char why[96];
        snprintf(why, sizeof(why), "retire_after (%llds) elapsed", c->retire_after);
        rc = change(c, l[i].domain, l[i].selector, KS_RETIRING, KS_REVOKED, 0, actor, why, e);
        if (rc == DH_OK && count)
            (*count)++;
    }
    ks_list_free(l, n);
    return rc;
}
