/*
 * rotate.c - key rotation in two steps: create the successor (its record to
 * be published), then, once DNS shows it, activate it and retire the old key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/isotime.h"
#include "lifecycle/lf_int.h"

void lf_rotation_clear(lf_rotation *r)
{
    if (r == NULL)
        return;
    free(r->selector);
    free(r->old);
    memset(r, 0, sizeof(*r));
}

/* The algorithm to rotate: given, or that of the domain's only active key
 * (or, with none active, of its only key waiting for activation); RSA for a
 * domain without keys. */
static int pick_alg(const char *d, const ks_selector *l, size_t n, int alg, dh_err *e)
{
    if (alg >= 0)
        return alg;
    unsigned seen = 0, pending = 0;
    for (size_t i = 0; i < n; i++) {
        if (l[i].state == KS_ACTIVE)
            seen |= 1u << l[i].alg;
        if (l[i].state == KS_CREATED || l[i].state == KS_PUBLISHED)
            pending |= 1u << l[i].alg;
    }
    /* No active key yet: the algorithm of the key waiting to be activated. */
    if (seen == 0)
        seen = pending;
    if (seen == ((1u << DKIM_ALG_RSA_SHA256) | (1u << DKIM_ALG_ED25519_SHA256)))
        return dh_err_set(e, DH_EINVAL,
                          "domain %s has rsa and ed25519 keys: say which to rotate (--alg)", d);
    return seen & (1u << DKIM_ALG_ED25519_SHA256) ? DKIM_ALG_ED25519_SHA256 : DKIM_ALG_RSA_SHA256;
}

/* Newest key of alg in one of the states in mask; NULL if none. */
static const ks_selector *newest(const ks_selector *l, size_t n, enum dkim_alg alg, unsigned mask,
                                 const char *predecessor)
{
    const ks_selector *best = NULL;
    for (size_t i = 0; i < n; i++) {
        if (l[i].alg != alg || !(mask & (1u << l[i].state)))
            continue;
        if (predecessor && (!l[i].predecessor || strcmp(l[i].predecessor, predecessor) != 0))
            continue;
        if (best == NULL || l[i].created >= best->created)
            best = &l[i];
    }
    return best;
}

/* Step 2: DNS shows the successor -> it becomes active, old retiring. */
static int switch_over(lf_ctx *c, const ks_selector *next, const ks_selector *old,
                       const char *actor, lf_rotation *out, dh_err *e)
{
    out->step = LF_ROTATE_WAITING;
    int rc = c->check ? c->check(c->check_arg, next, &out->seen, e)
                      : dh_err_set(e, DH_ESTATE, "no DNS check configured: cannot rotate");
    if (rc != DH_OK || !out->seen.ok)
        return rc;
    ks_selector n = {0}, o = {0};
    char why[160];
    rc = ks_begin(c->store, e);
    if (rc != DH_OK)
        return rc;
    rc = ks_get(c->store, next->domain, next->selector, &n, e);
    if (rc == DH_OK && n.state != next->state)
        rc = dh_err_set(e, DH_ESTATE, "selector %s of %s changed meanwhile: now %s", n.selector,
                        n.domain, ks_state_name(n.state));
    if (rc == DH_OK && n.state == KS_CREATED) {
        rc = lf_step(c, &n, KS_PUBLISHED, actor, "rotation", e);
        n.state = KS_PUBLISHED;
        n.state_changed = lf_now(c);
    }
    /* Resolvers may still hold what the name served before (nothing, or the
     * revoked key of a reused name) until their cache expires: the switch
     * waits until DNS has served the successor for publish_wait. */
    long long ready = n.state_changed + c->publish_wait;
    if (rc == DH_OK && lf_now(c) < ready) {
        rc = lf_finish(c, rc, e);
        /* An absolute time: the timer logs a changed message every tick. */
        char when[DH_ISO_TIME_LEN];
        dh_iso_time(ready, when);
        snprintf(out->seen.reason, sizeof(out->seen.reason),
                 "served by DNS; the switch waits for publish_wait, until %s", when);
        ks_selector_clear(&n);
        return rc;
    }
    snprintf(why, sizeof(why), "rotation: replaces %s", old ? old->selector : "no active key");
    if (rc == DH_OK)
        rc = lf_step(c, &n, KS_ACTIVE, actor, why, e);
    if (rc == DH_OK && old) {
        rc = ks_get(c->store, old->domain, old->selector, &o, e);
        snprintf(why, sizeof(why), "rotation: replaced by %s", n.selector);
        if (rc == DH_OK)
            rc = lf_step(c, &o, KS_RETIRING, actor, why, e);
    }
    rc = lf_finish(c, rc, e);
    if (rc == DH_OK)
        out->step = LF_ROTATE_SWITCHED;
    ks_selector_clear(&n);
    ks_selector_clear(&o);
    return rc;
}

/* A revoked key's name is reused only once DNS shows the revocation (the
 * empty p=) or no record at all. Otherwise the name would go from the old key
 * straight to the new one, and verifiers would never be told that the old
 * key was revoked (short settings, rotate_after <= retire_after, get there
 * within a tick). 1 shown, 0 not yet, <0 DNS could not be asked. */
static int revocation_shown(lf_ctx *c, const ks_selector *s, dh_err *e)
{
    lf_seen seen;
    if (c->check == NULL)
        return dh_err_set(e, DH_ESTATE,
                          "cannot reuse selector %s of %s: no DNS check to see its revocation",
                          s->selector, s->domain);
    int rc = c->check(c->check_arg, s, &seen, e);
    if (rc != DH_OK)
        return rc;
    return strcmp(seen.status, "revoked") == 0 || strcmp(seen.status, "missing") == 0;
}

/* Is name free for a new key? 1 yes, 0 no (*blocker filled), <0 error.
 * A revoked key under the name is put in *reuse (to be destroyed) when
 * allowed and DNS shows its revocation. */
static int name_free(lf_ctx *c, const char *d, const char *name, int allow_reuse,
                     ks_selector *reuse, ks_selector *blocker, dh_err *e)
{
    ks_selector s = {0};
    int rc = ks_get(c->store, d, name, &s, e);
    if (rc == DH_ENOTFOUND)
        return 1;
    if (rc != DH_OK)
        return rc;
    if (allow_reuse && s.state == KS_DESTROYED) {
        ks_selector_clear(&s);
        return 1;
    }
    int shown = allow_reuse && s.state == KS_REVOKED ? revocation_shown(c, &s, e) : 0;
    if (shown < 0) {
        ks_selector_clear(&s);
        return shown;
    }
    if (shown) {
        *reuse = s;
        return 1;
    }
    ks_selector_clear(blocker);
    *blocker = s;
    return 0;
}

static int no_name(lf_ctx *c, const ks_selector *b, dh_err *e)
{
    if (b->state == KS_REVOKED)
        return dh_err_set(e, DH_ESTATE,
                          "no free selector name for %s yet: %s is revoked, but DNS does not show "
                          "its empty p= yet (the name is reused once it does: dkim-keyctl dns "
                          "%s prints the record)",
                          b->domain, b->selector, b->domain);
    if (b->state != KS_RETIRING)
        return dh_err_set(e, DH_ESTATE,
                          "no free selector name for %s: %s is %s (revoke it to reuse the name)",
                          b->domain, b->selector, ks_state_name(b->state));
    char when[DH_ISO_TIME_LEN];
    dh_iso_time(b->retiring_since + c->retire_after, when);
    return dh_err_set(e, DH_ESTATE,
                      "no free selector name for %s: %s is retiring until %s (rotate again then, "
                      "or revoke it)",
                      b->domain, b->selector, when);
}

void lf_alternate_names(enum dkim_alg alg, const char *out[2])
{
    int ed = alg == DKIM_ALG_ED25519_SHA256;
    out[0] = ed ? "selector1-ed25519" : "selector1";
    out[1] = ed ? "selector2-ed25519" : "selector2";
}

/* The successor's name by lf_ctx.naming; *reuse gets a revoked key to
 * destroy first (alternate scheme). */
static int successor_name(lf_ctx *c, const char *d, enum dkim_alg alg, const ks_selector *old,
                          char name[64], ks_selector *reuse, dh_err *e)
{
    ks_selector blocker = {0};
    int rc = 0;
    if (c->naming && strcmp(c->naming, "date") == 0) {
        time_t now = (time_t)lf_now(c);
        struct tm tm;
        char base[16];
        gmtime_r(&now, &tm);
        strftime(base, sizeof(base), "%Y%m", &tm);
        for (char suffix = 'a'; suffix <= 'z' && rc == 0; suffix++) {
            snprintf(name, 64, suffix == 'a' ? "%s" : "%s%c", base, suffix);
            rc = name_free(c, d, name, 0, reuse, &blocker, e);
        }
    } else {
        const char *pair[2], *cand[2];
        lf_alternate_names(alg, pair);
        cand[0] = pair[0], cand[1] = pair[1];
        if (old && strcmp(old->selector, pair[0]) == 0)
            cand[0] = pair[1], cand[1] = NULL;
        else if (old && strcmp(old->selector, pair[1]) == 0)
            cand[1] = NULL;
        for (int i = 0; i < 2 && cand[i] && rc == 0; i++) {
            snprintf(name, 64, "%s", cand[i]);
            rc = name_free(c, d, name, 1, reuse, &blocker, e);
        }
    }
    if (rc == 0)
        rc = no_name(c, &blocker, e);
    ks_selector_clear(&blocker);
    return rc < 0 ? rc : DH_OK;
}

/* Step 1: a new key of old's algorithm (and size) under the next name. */
static int create_successor(lf_ctx *c, const char *d, enum dkim_alg alg, const ks_selector *old,
                            const char *actor, lf_rotation *out, dh_err *e)
{
    char name[64];
    ks_selector reuse = {0};
    int rc = successor_name(c, d, alg, old, name, &reuse, e);
    if (rc == DH_OK && reuse.key_id) {
        /* The alternate scheme reuses the name: the revoked key under it goes. */
        rc = ks_begin(c->store, e);
        if (rc == DH_OK)
            rc = lf_finish(c, lf_destroy_locked(c, &reuse, actor, "name reused by rotation", e), e);
    }
    if (rc == DH_OK)
        rc = lf_create(c, d, name, alg, old ? old->bits : 0, old ? old->selector : NULL, actor,
                       NULL, e);
    if (rc == DH_OK) {
        out->step = LF_ROTATE_CREATED;
        free(out->selector);
        if ((out->selector = strdup(name)) == NULL)
            rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    ks_selector_clear(&reuse);
    return rc;
}

int lf_rotate(lf_ctx *c, const char *domain, int alg, const char *actor, lf_rotation *out,
              dh_err *e)
{
    memset(out, 0, sizeof(*out));
    char *d = NULL, *unused = NULL;
    ks_selector *l = NULL;
    size_t n = 0;
    int rc = lf_names(domain, NULL, &d, &unused, e);
    if (rc == DH_OK)
        rc = ks_list(c->store, d, &l, &n, e);
    int a = rc == DH_OK ? pick_alg(d, l, n, alg, e) : rc;
    if (a < 0) {
        rc = a;
        goto done;
    }
    out->alg = (enum dkim_alg)a;
    const ks_selector *old = newest(l, n, out->alg, 1u << KS_ACTIVE, NULL);
    const ks_selector *next = newest(l, n, out->alg, (1u << KS_CREATED) | (1u << KS_PUBLISHED),
                                     old ? old->selector : NULL);
    if (old && (out->old = strdup(old->selector)) == NULL) {
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
        goto done;
    }
    if (next) {
        if ((out->selector = strdup(next->selector)) == NULL)
            rc = dh_err_set(e, DH_ENOMEM, "out of memory");
        else
            rc = switch_over(c, next, old, actor, out, e);
    } else {
        rc = create_successor(c, d, out->alg, old, actor, out, e);
    }
done:
    if (rc != DH_OK)
        lf_rotation_clear(out);
    ks_list_free(l, n);
    free(d);
    return rc;
}
