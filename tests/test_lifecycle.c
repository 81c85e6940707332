/* lifecycle/: every transition (legal and refused, with the error naming the
 * current and the allowed states), DNS-gated activation, revoke and destroy
 * on a real (SoftHSM) token, expiry on a moved clock, rotation in both naming
 * schemes, the records DNS should hold, and the audit trail of it all. Runs
 * under lib/with-token.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hex.h"
#include "lifecycle/lifecycle.h"
#include "tests/lib/check.h"

static const char *base;
static long long clock_now = 1700000000; /* 2023-11-14 */
static char published[8][32];            /* what the fake DNS shows: "sel" */
static char revoked_shown[32];           /* a name whose empty p= it shows instead */
static int dns_down;

static long long fake_now(void)
{
    return clock_now;
}

static void publish(const char *sel)
{
    for (int i = 0; i < 8; i++)
        if (published[i][0] == '\0') {
            snprintf(published[i], sizeof(published[i]), "%s", sel);
            return;
        }
}

static int fake_check(void *arg, const ks_selector *s, lf_seen *out, dh_err *e)
{
    (void)arg;
    memset(out, 0, sizeof(*out));
    if (dns_down)
        return dh_err_set(e, DH_EIO, "server 192.0.2.1:53 timed out");
    if (strcmp(revoked_shown, s->selector) == 0) {
        snprintf(out->status, sizeof(out->status), "revoked");
        snprintf(out->reason, sizeof(out->reason), "p= is empty: the key is revoked");
        return DH_OK;
    }
    for (int i = 0; i < 8; i++)
        if (strcmp(published[i], s->selector) == 0) {
            out->ok = 1;
            snprintf(out->status, sizeof(out->status), "ok");
            return DH_OK;
        }
    snprintf(out->status, sizeof(out->status), "missing");
    snprintf(out->reason, sizeof(out->reason), "no TXT record at %s._domainkey.%s", s->selector,
             s->domain);
    return DH_OK;
}

/* A fresh state directory and the test token; naming "alternate". */
static lf_ctx setup(const char *name)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", base, name);
    lf_ctx c = {.retire_after = 7 * 86400,
                .naming = "alternate",
                .rsa_bits = 2048,
                .check = fake_check,
                .now = fake_now};
    dh_err e = {0};
    hsm_config hc = {.module = check_env("DKIMHSM_TEST_MODULE"),
                     .token_uri = check_env("DKIMHSM_TEST_TOKEN"),
                     .pin_file = check_env("DKIMHSM_TEST_PIN_FILE"),
                     .pool_size = 1};
    CHECK_OK(ks_open(dir, &c.store, &e));
    if (hsm_open(&hc, &c.token, &e) != DH_OK)
        check_fail(__FILE__, __LINE__, "hsm_open: %s", e.msg);
    memset(published, 0, sizeof(published));
    revoked_shown[0] = '\0';
    dns_down = 0;
    return c;
}

static void teardown(lf_ctx *c)
{
    hsm_close(c->token);
    ks_close(c->store);
}

static enum ks_state state_of(lf_ctx *c, const char *sel)
{
    ks_selector s;
    dh_err e = {0};
    if (ks_get(c->store, "example.com", sel, &s, &e) != DH_OK) {
        check_fail(__FILE__, __LINE__, "ks_get %s: %s", sel, e.msg);
        return KS_DESTROYED;
    }
    enum ks_state st = s.state;
    ks_selector_clear(&s);
    return st;
}

static void make(lf_ctx *c, const char *sel, enum dkim_alg alg)
{
    dh_err e = {0};
    if (lf_create(c, "Example.COM.", sel, alg, 0, NULL, "uid:0(root)", NULL, &e) != DH_OK)
        check_fail(__FILE__, __LINE__, "lf_create %s: %s", sel, e.msg);
}

#define CHECK_MSG(e, words)                                                                        \
    do {                                                                                           \
        if (strstr((e).msg, (words)) == NULL)                                                      \
            check_fail(__FILE__, __LINE__, "message '%s' lacks '%s'", (e).msg, (words));           \
    } while (0)

static void test_table(void)
{
    /* The table as documented in lifecycle.h. */
    static const char *want[] = {
        /* created */ "published, active, revoked",
        /* published */ "active, revoked",
        /* active */ "retiring, revoked",
        /* retiring */ "active, revoked",
        /* revoked */ "destroyed",
        /* destroyed */ "none",
    };
    for (int s = KS_CREATED; s <= KS_DESTROYED; s++) {
        char buf[128];
        lf_allowed_next((enum ks_state)s, buf, sizeof(buf));
        CHECK_STR(buf, want[s]);
    }
    CHECK(!lf_allowed(KS_CREATED, KS_ACTIVE, 0));
    CHECK(lf_allowed(KS_CREATED, KS_ACTIVE, 1));
    CHECK(lf_allowed(KS_PUBLISHED, KS_ACTIVE, 0));
    CHECK(!lf_allowed(KS_ACTIVE, KS_PUBLISHED, 1));
    CHECK(!lf_allowed(KS_DESTROYED, KS_ACTIVE, 1));
    CHECK(!lf_allowed(KS_RETIRING, KS_DESTROYED, 1));
}

static void test_legal_path(void)
{
    lf_ctx c = setup("legal");
    dh_err e = {0};
    lf_seen seen;
    make(&c, "s1", DKIM_ALG_ED25519_SHA256);
    CHECK_EQ_INT(state_of(&c, "s1"), KS_CREATED);
    /* Not in DNS: publish_seen and activate refuse, naming what DNS said. */
    CHECK_EQ_INT(lf_publish_seen(&c, "example.com", "s1", "timer", &seen, &e), DH_ESTATE);
    CHECK_MSG(e, "DNS says missing");
    CHECK_EQ_INT(lf_activate(&c, "example.com", "s1", 0, "uid:0(root)", &seen, &e), DH_ESTATE);
    CHECK_MSG(e, "activating s1 of example.com refused: DNS says missing");
    CHECK_EQ_INT(state_of(&c, "s1"), KS_CREATED);
    /* DNS cannot be asked: an error, not a refusal. */
    dns_down = 1;
    CHECK_EQ_INT(lf_activate(&c, "example.com", "s1", 0, "uid:0(root)", &seen, &e), DH_EIO);
    CHECK_MSG(e, "timed out");
    dns_down = 0;
    publish("s1");
    CHECK_OK(lf_publish_seen(&c, "example.com", "s1", "timer", &seen, &e));
    CHECK_EQ_INT(state_of(&c, "s1"), KS_PUBLISHED);
    CHECK_OK(lf_activate(&c, "example.com", "s1", 0, "uid:0(root)", &seen, &e));
    CHECK_EQ_INT(state_of(&c, "s1"), KS_ACTIVE);
    clock_now += 100;
    CHECK_OK(lf_retire(&c, "example.com", "s1", "uid:0(root)", &e));
    CHECK_EQ_INT(state_of(&c, "s1"), KS_RETIRING);
    /* Roll back: a retiring key (still published) may become active again. */
    CHECK_OK(lf_activate(&c, "example.com", "s1", 0, "uid:0(root)", &seen, &e));
    CHECK_OK(lf_retire(&c, "example.com", "s1", "uid:0(root)", &e));
    CHECK_OK(lf_revoke(&c, "example.com", "s1", 0, "uid:0(root)", &e));
    CHECK_EQ_INT(state_of(&c, "s1"), KS_REVOKED);
    CHECK_OK(lf_destroy(&c, "example.com", "s1", "uid:0(root)", &e));
    CHECK_EQ_INT(state_of(&c, "s1"), KS_DESTROYED);

    /* History: every step, with its actor. */
    lf_info info;
    CHECK_OK(lf_show(&c, "example.com", "s1", &info, &e));
    CHECK_EQ_INT(info.nhistory, 8);
    if (info.nhistory == 8) {
        CHECK(!info.history[0].from_set);
        CHECK_EQ_INT(info.history[0].to, KS_CREATED);
        CHECK_EQ_INT(info.history[1].from, KS_CREATED);
        CHECK_EQ_INT(info.history[1].to, KS_PUBLISHED);
        CHECK_STR(info.history[1].actor, "timer");
        CHECK_EQ_INT(info.history[7].to, KS_DESTROYED);
    }
    CHECK(!info.custody_known);
    CHECK_EQ_INT(strlen(info.fingerprint), 64);
    lf_info_clear(&info);

    /* The audit log has it all, and its chain holds. */
    au_verify_result r;
    CHECK_OK(au_verify(c.store, &r, &e));
    CHECK_EQ_INT(r.problem, AU_FINE);
    CHECK_EQ_INT(r.entries, 8);
    au_entry *l = NULL;
    size_t n = 0;
    CHECK_OK(au_list(c.store, 0, &l, &n, &e));
    static const char *events[] = {"create",   "seen-in-dns", "activate", "retire",
                                   "activate", "retire",      "revoke",   "destroy"};
    for (size_t i = 0; i < n && i < 8; i++) {
        CHECK_STR(l[i].event, events[i]);
        CHECK_STR(l[i].selector, "s1");
        CHECK_STR(l[i].domain, "example.com");
    }
    if (n == 8) {
        CHECK(strstr(l[7].detail, "public_key=") != NULL);
        CHECK_STR(l[7].fingerprint, l[0].fingerprint);
    }
    au_list_free(l, n);
    teardown(&c);
}

/* activate on a created key DNS shows: two steps, neither forced. */
static void test_activate_seen(void)
{
    lf_ctx c = setup("seen");
    dh_err e = {0};
    lf_seen seen;
    make(&c, "s1", DKIM_ALG_ED25519_SHA256);
    publish("s1");
    CHECK_OK(lf_activate(&c, "example.com", "s1", 0, "uid:0(root)", &seen, &e));
    CHECK(seen.ok);
    CHECK_EQ_INT(state_of(&c, "s1"), KS_ACTIVE);
    au_entry *l = NULL;
    size_t n = 0;
    CHECK_OK(au_list(c.store, 1, &l, &n, &e));
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_STR(l[0].event, "seen-in-dns");
        CHECK_STR(l[1].event, "activate");
        CHECK_STR(l[1].detail, "published -> active");
    }
    au_list_free(l, n);
    teardown(&c);
}

static void test_illegal(void)
{
    lf_ctx c = setup("illegal");
    dh_err e = {0};
    make(&c, "s1", DKIM_ALG_ED25519_SHA256);
    CHECK_EQ_INT(lf_retire(&c, "example.com", "s1", "x", &e), DH_ESTATE);
    CHECK_MSG(e, "selector s1 of example.com is created; allowed next: published, active, revoked");
    CHECK_EQ_INT(lf_destroy(&c, "example.com", "s1", "x", &e), DH_ESTATE);
    CHECK_MSG(e, "is created; allowed next:");
    CHECK_MSG(e, "(asked for destroyed)");
    CHECK_OK(lf_activate(&c, "example.com", "s1", 1, "x", NULL, &e));
    CHECK_EQ_INT(lf_activate(&c, "example.com", "s1", 1, "x", NULL, &e), DH_ESTATE);
    CHECK_MSG(e, "selector s1 of example.com is active; allowed next: retiring, revoked");
    CHECK_EQ_INT(lf_destroy(&c, "example.com", "s1", "x", &e), DH_ESTATE);
    CHECK_OK(lf_retire(&c, "example.com", "s1", "x", &e));
    CHECK_EQ_INT(lf_retire(&c, "example.com", "s1", "x", &e), DH_ESTATE);
    CHECK_MSG(e, "selector s1 of example.com is retiring; allowed next: active, revoked");
    CHECK_EQ_INT(lf_destroy(&c, "example.com", "s1", "x", &e), DH_ESTATE);
    CHECK_OK(lf_revoke(&c, "example.com", "s1", 0, "x", &e));
    CHECK_EQ_INT(lf_activate(&c, "example.com", "s1", 1, "x", NULL, &e), DH_ESTATE);
    CHECK_MSG(e, "is revoked; allowed next: destroyed");
    CHECK_EQ_INT(lf_revoke(&c, "example.com", "s1", 0, "x", &e), DH_ESTATE);
    CHECK_EQ_INT(lf_retire(&c, "example.com", "s1", "x", &e), DH_ESTATE);
    CHECK_OK(lf_destroy(&c, "example.com", "s1", "x", &e));
    CHECK_EQ_INT(lf_revoke(&c, "example.com", "s1", 1, "x", &e), DH_ESTATE);
    CHECK_MSG(e, "is destroyed; allowed next: none");
    CHECK_EQ_INT(lf_activate(&c, "example.com", "s1", 1, "x", NULL, &e), DH_ESTATE);
    /* Published: only active or revoked. */
    make(&c, "s2", DKIM_ALG_ED25519_SHA256);
    publish("s2");
    CHECK_OK(lf_publish_seen(&c, "example.com", "s2", "x", NULL, &e));
    CHECK_EQ_INT(lf_publish_seen(&c, "example.com", "s2", "x", NULL, &e), DH_ESTATE);
    CHECK_MSG(e, "is published; allowed next: active, revoked");
    CHECK_EQ_INT(lf_retire(&c, "example.com", "s2", "x", &e), DH_ESTATE);
    CHECK_OK(lf_revoke(&c, "example.com", "s2", 0, "x", &e));
    /* Unknown names and bad names. */
    CHECK_EQ_INT(lf_retire(&c, "example.com", "nope", "x", &e), DH_ENOTFOUND);
    CHECK_EQ_INT(lf_retire(&c, "exa mple.com", "s1", "x", &e), DH_EINVAL);
    /* A refused step writes no audit entry. */
    au_verify_result r;
    CHECK_OK(au_verify(c.store, &r, &e));
    CHECK_EQ_INT(r.problem, AU_FINE);
    CHECK_EQ_INT(r.entries, 8);
    teardown(&c);
}

static void test_force(void)
{
    lf_ctx c = setup("force");
    dh_err e = {0};
    make(&c, "s1", DKIM_ALG_ED25519_SHA256);
    lf_seen seen;
    CHECK_OK(lf_activate(&c, "example.com", "s1", 1, "uid:0(root)", &seen, &e));
    CHECK_STR(seen.status, "unknown");
    CHECK_EQ_INT(state_of(&c, "s1"), KS_ACTIVE);
    au_entry *l = NULL;
    size_t n = 0;
    CHECK_OK(au_list(c.store, 1, &l, &n, &e));
    CHECK_EQ_INT(n, 1); /* straight from created, no published step */
    if (n == 1) {
        CHECK_STR(l[0].event, "activate");
        CHECK(strstr(l[0].detail, "created -> active; forced (--force); DNS not asked") != NULL);
    }
    au_list_free(l, n);
    teardown(&c);
}

static void test_revoke_destroy(void)
{
    lf_ctx c = setup("revoke");
    dh_err e = {0};
    make(&c, "s1", DKIM_ALG_RSA_SHA256);
    CHECK_OK(lf_activate(&c, "example.com", "s1", 1, "x", NULL, &e));
    lf_info info;
    CHECK_OK(lf_show(&c, "example.com", "s1", &info, &e));
    CHECK(info.custody_known);
    CHECK_EQ_INT(info.custody.sensitive, 1);
    CHECK_EQ_INT(info.custody.extractable, 0);
    CHECK_EQ_INT(info.custody.never_extractable, 1);
    CHECK_EQ_INT(info.custody.local, 1);
    uint8_t id[HSM_ID_LEN];
    CHECK_OK(dh_unhex(info.key.key_id, id, HSM_ID_LEN));
    lf_info_clear(&info);

    lf_record *r = NULL;
    size_t n = 0;
    CHECK_OK(lf_revoke(&c, "example.com", "s1", 0, "x", &e));
    CHECK_OK(lf_records(&c, "example.com", NULL, &r, &n, &e));
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_STR(r[0].value, "v=DKIM1; k=rsa; p=");
        CHECK_STR(r[0].owner, "s1._domainkey.example.com.");
    }
    lf_records_free(r, n);
    /* Still in the token until destroyed. */
    hsm_key *k = NULL;
    CHECK_OK(hsm_key_open(c.token, id, HSM_ID_LEN, &k, &e));
    hsm_key_free(k);
    k = NULL;
    CHECK_OK(lf_revoke(&c, "example.com", "s1", 1, "x", &e)); /* revoked + --destroy */
    CHECK_EQ_INT(state_of(&c, "s1"), KS_DESTROYED);
    CHECK_EQ_INT(hsm_key_open(c.token, id, HSM_ID_LEN, &k, &e), DH_ENOTFOUND);
    hsm_key_free(k);
    CHECK_OK(lf_records(&c, "example.com", "s1", &r, &n, &e));
    if (n == 1)
        CHECK_STR(r[0].value, "v=DKIM1; k=rsa; p=");
    lf_records_free(r, n);

    /* revoke --destroy from active in one go. */
    make(&c, "s2", DKIM_ALG_ED25519_SHA256);
    CHECK_OK(lf_activate(&c, "example.com", "s2", 1, "x", NULL, &e));
    CHECK_OK(lf_revoke(&c, "example.com", "s2", 1, "x", &e));
    CHECK_EQ_INT(state_of(&c, "s2"), KS_DESTROYED);
    /* Destroying needs the token. */
    make(&c, "s3", DKIM_ALG_ED25519_SHA256);
    hsm *t = c.token;
    c.token = NULL;
    CHECK_EQ_INT(lf_revoke(&c, "example.com", "s3", 1, "x", &e), DH_ESTATE);
    CHECK_MSG(e, "needs the token");
    CHECK_EQ_INT(state_of(&c, "s3"), KS_REVOKED);
    c.token = t;
    teardown(&c);
}

static void test_records(void)
{
    lf_ctx c = setup("records");
    dh_err e = {0};
    make(&c, "a", DKIM_ALG_ED25519_SHA256);
    make(&c, "b", DKIM_ALG_ED25519_SHA256);
    make(&c, "c", DKIM_ALG_ED25519_SHA256);
    CHECK_OK(lf_activate(&c, "example.com", "b", 1, "x", NULL, &e));
    CHECK_OK(lf_revoke(&c, "example.com", "c", 1, "x", &e));
    /* A destroyed name reused by a new key: one record, the new key's. */
    make(&c, "c", DKIM_ALG_ED25519_SHA256);
    lf_record *r = NULL;
    size_t n = 0;
    CHECK_OK(lf_records(&c, "example.com", NULL, &r, &n, &e));
    CHECK_EQ_INT(n, 3);
    for (size_t i = 0; i < n; i++) {
        CHECK(strlen(r[i].value) > strlen("v=DKIM1; k=ed25519; p="));
        CHECK(r[i].alias == NULL);
    }
    lf_records_free(r, n);
    CHECK_EQ_INT(lf_records(&c, "example.org", NULL, &r, &n, &e), DH_ENOTFOUND);
    CHECK_EQ_INT(lf_create(&c, "example.com", "a", DKIM_ALG_ED25519_SHA256, 0, NULL, "x", NULL, &e),
                 DH_EEXIST);
    teardown(&c);
}

static void test_expire(void)
{
    lf_ctx c = setup("expire");
    dh_err e = {0};
    make(&c, "s1", DKIM_ALG_ED25519_SHA256);
    CHECK_OK(lf_activate(&c, "example.com", "s1", 1, "x", NULL, &e));
    CHECK_OK(lf_retire(&c, "example.com", "s1", "x", &e));
    size_t count = 9;
    clock_now += 7 * 86400 - 1;
    CHECK_OK(lf_expire(&c, "timer", &count, &e));
    CHECK_EQ_INT(count, 0);
    CHECK_EQ_INT(state_of(&c, "s1"), KS_RETIRING);
    clock_now += 1;
    CHECK_OK(lf_expire(&c, "timer", &count, &e));
    CHECK_EQ_INT(count, 1);
    CHECK_EQ_INT(state_of(&c, "s1"), KS_REVOKED);
    teardown(&c);
}

/* With publish_wait, a successor DNS serves is published first and becomes
 * active only once DNS has served it that long. */
static void test_rotate_publish_wait(void)
{
    lf_ctx c = setup("rot-wait");
    c.publish_wait = 3600;
    dh_err e = {0};
    lf_rotation r;
    make(&c, "k0", DKIM_ALG_ED25519_SHA256);
    CHECK_OK(lf_activate(&c, "example.com", "k0", 1, "x", NULL, &e));
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_CREATED);
    lf_rotation_clear(&r);
    publish("selector1-ed25519");
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_WAITING);
    CHECK(r.seen.ok && strstr(r.seen.reason, "publish_wait") != NULL);
    lf_rotation_clear(&r);
    CHECK_EQ_INT(state_of(&c, "selector1-ed25519"), KS_PUBLISHED);
    CHECK_EQ_INT(state_of(&c, "k0"), KS_ACTIVE);
    clock_now += 3599;
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_WAITING);
    lf_rotation_clear(&r);
    clock_now += 1;
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_SWITCHED);
    lf_rotation_clear(&r);
    CHECK_EQ_INT(state_of(&c, "selector1-ed25519"), KS_ACTIVE);
    CHECK_EQ_INT(state_of(&c, "k0"), KS_RETIRING);
    teardown(&c);
}

/* A domain signing with both algorithms rotates each in its own pair of
 * names: neither blocks the other. */
static void test_rotate_two_algs(void)
{
    lf_ctx c = setup("rot-two");
    dh_err e = {0};
    lf_rotation r;
    make(&c, "r0", DKIM_ALG_RSA_SHA256);
    make(&c, "k0", DKIM_ALG_ED25519_SHA256);
    CHECK_OK(lf_activate(&c, "example.com", "r0", 1, "x", NULL, &e));
    CHECK_OK(lf_activate(&c, "example.com", "k0", 1, "x", NULL, &e));
    CHECK_OK(lf_rotate(&c, "example.com", DKIM_ALG_RSA_SHA256, "x", &r, &e));
    CHECK_STR(r.selector ? r.selector : "", "selector1");
    lf_rotation_clear(&r);
    CHECK_OK(lf_rotate(&c, "example.com", DKIM_ALG_ED25519_SHA256, "x", &r, &e));
    CHECK_STR(r.selector ? r.selector : "", "selector1-ed25519");
    lf_rotation_clear(&r);
    publish("selector1");
    publish("selector1-ed25519");
    CHECK_OK(lf_rotate(&c, "example.com", DKIM_ALG_RSA_SHA256, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_SWITCHED);
    lf_rotation_clear(&r);
    CHECK_OK(lf_rotate(&c, "example.com", DKIM_ALG_ED25519_SHA256, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_SWITCHED);
    lf_rotation_clear(&r);
    CHECK_EQ_INT(state_of(&c, "selector1"), KS_ACTIVE);
    CHECK_EQ_INT(state_of(&c, "selector1-ed25519"), KS_ACTIVE);
    CHECK_EQ_INT(state_of(&c, "r0"), KS_RETIRING);
    CHECK_EQ_INT(state_of(&c, "k0"), KS_RETIRING);
    teardown(&c);
}

static void test_rotate_alternate(void)
{
    lf_ctx c = setup("rot-alt");
    dh_err e = {0};
    lf_rotation r;
    /* No key yet: rotation creates selector1-ed25519, then activates it once seen. */
    CHECK_OK(lf_rotate(&c, "example.com", DKIM_ALG_ED25519_SHA256, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_CREATED);
    CHECK_STR(r.selector ? r.selector : "", "selector1-ed25519");
    CHECK(r.old == NULL);
    lf_rotation_clear(&r);
    CHECK_OK(lf_rotate(&c, "example.com", DKIM_ALG_ED25519_SHA256, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_WAITING); /* never activates an unpublished key */
    CHECK_STR(r.seen.status, "missing");
    lf_rotation_clear(&r);
    CHECK_EQ_INT(state_of(&c, "selector1-ed25519"), KS_CREATED);
    publish("selector1-ed25519");
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_SWITCHED);
    lf_rotation_clear(&r);
    CHECK_EQ_INT(state_of(&c, "selector1-ed25519"), KS_ACTIVE);

    /* Rotate: selector2-ed25519 replaces selector1-ed25519. */
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_CREATED);
    CHECK_STR(r.selector ? r.selector : "", "selector2-ed25519");
    CHECK_STR(r.old ? r.old : "", "selector1-ed25519");
    lf_rotation_clear(&r);
    publish("selector2-ed25519");
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_SWITCHED);
    lf_rotation_clear(&r);
    CHECK_EQ_INT(state_of(&c, "selector2-ed25519"), KS_ACTIVE);
    CHECK_EQ_INT(state_of(&c, "selector1-ed25519"), KS_RETIRING);
    ks_selector s;
    CHECK_OK(ks_get(c.store, "example.com", "selector2-ed25519", &s, &e));
    CHECK_STR(s.predecessor ? s.predecessor : "", "selector1-ed25519");
    ks_selector_clear(&s);

    /* selector1-ed25519 is still retiring: no free name yet. */
    CHECK_EQ_INT(lf_rotate(&c, "example.com", -1, "x", &r, &e), DH_ESTATE);
    CHECK_MSG(e, "selector1-ed25519 is retiring until");
    /* Expired (revoked), but DNS still serves the old key: the name waits,
     * or verifiers would never see the revocation. */
    clock_now += 8 * 86400;
    CHECK_OK(lf_expire(&c, "timer", NULL, &e));
    CHECK_EQ_INT(lf_rotate(&c, "example.com", -1, "x", &r, &e), DH_ESTATE);
    CHECK_MSG(e, "selector1-ed25519 is revoked, but DNS does not show its empty p= yet");
    CHECK_EQ_INT(state_of(&c, "selector1-ed25519"), KS_REVOKED);
    dns_down = 1; /* DNS cannot be asked: no reuse either */
    CHECK_EQ_INT(lf_rotate(&c, "example.com", -1, "x", &r, &e), DH_EIO);
    dns_down = 0;
    /* Once DNS shows the empty p=, rotation reuses the name: the old key goes. */
    snprintf(revoked_shown, sizeof(revoked_shown), "selector1-ed25519");
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_CREATED);
    CHECK_STR(r.selector ? r.selector : "", "selector1-ed25519");
    lf_rotation_clear(&r);
    CHECK_EQ_INT(state_of(&c, "selector1-ed25519"), KS_CREATED);
    revoked_shown[0] = '\0'; /* the new key's record replaces the empty one */
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_SWITCHED); /* the fake DNS still shows "selector1-ed25519" */
    lf_rotation_clear(&r);
    CHECK_EQ_INT(state_of(&c, "selector1-ed25519"), KS_ACTIVE);
    CHECK_EQ_INT(state_of(&c, "selector2-ed25519"), KS_RETIRING);

    /* Two active algorithms: rotation must be told which. */
    make(&c, "ed", DKIM_ALG_RSA_SHA256);
    CHECK_OK(lf_activate(&c, "example.com", "ed", 1, "x", NULL, &e));
    CHECK_EQ_INT(lf_rotate(&c, "example.com", -1, "x", &r, &e), DH_EINVAL);
    CHECK_MSG(e, "--alg");
    au_verify_result v;
    CHECK_OK(au_verify(c.store, &v, &e));
    CHECK_EQ_INT(v.problem, AU_FINE);
    teardown(&c);
}

static void test_rotate_date(void)
{
    lf_ctx c = setup("rot-date");
    c.naming = "date";
    dh_err e = {0};
    lf_rotation r;
    make(&c, "old", DKIM_ALG_ED25519_SHA256);
    CHECK_OK(lf_activate(&c, "example.com", "old", 1, "x", NULL, &e));
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_STR(r.selector ? r.selector : "", "202311");
    lf_rotation_clear(&r);
    publish("202311");
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_EQ_INT(r.step, LF_ROTATE_SWITCHED);
    lf_rotation_clear(&r);
    /* Same month again: a suffix. */
    CHECK_OK(lf_rotate(&c, "example.com", -1, "x", &r, &e));
    CHECK_STR(r.selector ? r.selector : "", "202311b");
    CHECK_STR(r.old ? r.old : "", "202311");
    lf_rotation_clear(&r);
    teardown(&c);
}

int main(int argc, char **argv)
{
    if ((base = check_tmpdir()) == NULL)
        return 1;
    static const struct check_case cases[] = {{"table", test_table},
                                              {"legal_path", test_legal_path},
                                              {"activate_seen", test_activate_seen},
                                              {"illegal", test_illegal},
                                              {"force", test_force},
                                              {"revoke_destroy", test_revoke_destroy},
                                              {"records", test_records},
                                              {"expire", test_expire},
                                              {"rotate_alternate", test_rotate_alternate},
                                              {"rotate_two_algs", test_rotate_two_algs},
                                              {"rotate_publish_wait", test_rotate_publish_wait},
                                              {"rotate_date", test_rotate_date},
                                              {NULL, NULL}};
    return check_run(argc, argv, cases);
}
