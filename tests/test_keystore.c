/* keystore/: schema version and migrations (v1 -> v2), insert/get/list, state
 * changes with their history, name reuse after destroy, name rules. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keystore/keystore.h"
#include "tests/lib/check.h"

static const char *dir;

static ks_selector row(const char *domain, const char *sel, const char *id, enum dkim_alg alg,
                       long long created)
{
    return (ks_selector){.domain = (char *)domain,
                         .selector = (char *)sel,
                         .alg = alg,
                         .bits = alg == DKIM_ALG_RSA_SHA256 ? 2048 : 256,
                         .key_id = (char *)id,
                         .public_key = "AAAA",
                         .custody = KS_GENERATED,
                         .state = KS_CREATED,
                         .created = created,
                         .state_changed = created};
}

static void test_insert_get_list(void)
{
    ks *k = NULL;
    dh_err e = {0};
    CHECK_OK(ks_open(dir, &k, &e));
    if (k == NULL)
        return;
    CHECK_EQ_INT(ks_schema_version(k), KS_SCHEMA_VERSION);
    ks_selector a = row("example.com", "s1", "00", DKIM_ALG_RSA_SHA256, 100);
    ks_selector b = row("example.com", "s2", "01", DKIM_ALG_ED25519_SHA256, 200);
    ks_selector c = row("example.org", "s1", "02", DKIM_ALG_RSA_SHA256, 50);
    CHECK_OK(ks_insert(k, &a, &e));
    CHECK_OK(ks_insert(k, &b, &e));
    CHECK_OK(ks_insert(k, &c, &e));
    CHECK_EQ_INT(ks_insert(k, &a, &e), DH_EEXIST);
    CHECK(strstr(e.msg, "already exists") != NULL);

    ks_selector got;
    CHECK_OK(ks_get(k, "example.com", "s2", &got, &e));
    CHECK_STR(got.key_id, "01");
    CHECK_EQ_INT(got.alg, DKIM_ALG_ED25519_SHA256);
    CHECK_EQ_INT(got.bits, 256);
    CHECK_EQ_INT(got.state, KS_CREATED);
    ks_selector_clear(&got);
    CHECK_EQ_INT(ks_get(k, "example.com", "nope", &got, &e), DH_ENOTFOUND);

    ks_selector *l = NULL;
    size_t n = 0;
    CHECK_OK(ks_list(k, "example.com", &l, &n, &e));
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_STR(l[0].selector, "s1");
        CHECK_STR(l[1].selector, "s2");
    }
    ks_list_free(l, n);
    CHECK_OK(ks_list(k, NULL, &l, &n, &e));
    CHECK_EQ_INT(n, 3);
    ks_list_free(l, n);
    CHECK_OK(ks_delete(k, "example.org", "s1", &e));
    CHECK_EQ_INT(ks_get(k, "example.org", "s1", &got, &e), DH_ENOTFOUND);
    ks_close(k);

    /* Reopening keeps the data and the version. */
    CHECK_OK(ks_open(dir, &k, &e));
    CHECK_OK(ks_get(k, "example.com", "s1", &got, &e));
    ks_selector_clear(&got);
    ks_close(k);
}

static void test_newer_schema_refused(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/newer", dir);
    ks *k = NULL;
    CHECK_OK(ks_open(path, &k, NULL));
    ks_close(k);
    snprintf(path, sizeof(path), "%s/newer/state.db", dir);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    dh_err e = {0};
    snprintf(path, sizeof(path), "%s/newer", dir);
    CHECK_EQ_INT(ks_open(path, &k, &e), DH_EDB);
    CHECK(strstr(e.msg, "schema version 99") != NULL);
}

/* A version-1 database (as shipped) is brought to version 2 with its rows. */
static void test_migrate_v1(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/v1", dir);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/v1/state.db", dir);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "CREATE TABLE selectors (id INTEGER PRIMARY KEY, domain TEXT NOT NULL,"
                       " selector TEXT NOT NULL, algorithm TEXT NOT NULL CHECK (algorithm IN"
                       " ('rsa-sha256', 'ed25519-sha256')), bits INTEGER NOT NULL, key_id TEXT"
                       " NOT NULL UNIQUE, public_key TEXT NOT NULL, custody TEXT NOT NULL CHECK"
                       " (custody IN ('generated', 'imported')), state TEXT NOT NULL, created"
                       " INTEGER NOT NULL, state_changed INTEGER NOT NULL,"
                       " UNIQUE (domain, selector));"
                       "INSERT INTO selectors VALUES (1, 'example.com', 's1', 'rsa-sha256', 2048,"
                       " 'aa', 'AAAA', 'generated', 'retiring', 100, 150);"
                       "PRAGMA user_version = 1;",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    ks *k = NULL;
    dh_err e = {0};
    snprintf(path, sizeof(path), "%s/v1", dir);
    CHECK_OK(ks_open(path, &k, &e));
    if (k == NULL)
        return;
    CHECK_EQ_INT(ks_schema_version(k), 2);
    ks_selector got;
    CHECK_OK(ks_get(k, "example.com", "s1", &got, &e));
    CHECK_EQ_INT(got.state, KS_RETIRING);
    CHECK_EQ_INT(got.retiring_since, 150);
    CHECK(got.predecessor == NULL);
    ks_selector_clear(&got);
    /* The new tables are there. */
    CHECK(sqlite3_exec(ks_sqlite(k), "SELECT seq, hash FROM audit_log", NULL, NULL, NULL) ==
          SQLITE_OK);
    CHECK(sqlite3_exec(ks_sqlite(k), "SELECT from_state FROM state_history", NULL, NULL, NULL) ==
          SQLITE_OK);
    ks_close(k);
}

static void test_state_history(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/hist", dir);
    ks *k = NULL;
    dh_err e = {0};
    CHECK_OK(ks_open(path, &k, &e));
    if (k == NULL)
        return;
    ks_selector a = row("example.com", "s1", "10", DKIM_ALG_RSA_SHA256, 100);
    a.predecessor = "s0";
    CHECK_OK(ks_insert(k, &a, &e));
    CHECK_OK(ks_add_history(k, &a, 100, "uid:0(root)", "made", &e));
    CHECK_OK(ks_begin(k, &e));
    a.state = KS_ACTIVE;
    /* The row is still created: a stale "from" is refused. */
    CHECK_EQ_INT(ks_set_state(k, &a, KS_RETIRING, 200, "x", "", &e), DH_ESTATE);
    a.state = KS_CREATED;
    CHECK_OK(ks_set_state(k, &a, KS_ACTIVE, 200, "uid:0(root)", "", &e));
    a.state = KS_ACTIVE;
    CHECK_OK(ks_set_state(k, &a, KS_RETIRING, 300, "timer", "replaced", &e));
    CHECK_OK(ks_commit(k, &e));
    ks_selector got;
    CHECK_OK(ks_get(k, "example.com", "s1", &got, &e));
    CHECK_EQ_INT(got.state, KS_RETIRING);
    CHECK_EQ_INT(got.retiring_since, 300);
    CHECK_EQ_INT(got.state_changed, 300);
    CHECK_STR(got.predecessor ? got.predecessor : "", "s0");
    ks_selector_clear(&got);
    /* A rolled-back change leaves neither state nor history. */
    CHECK_OK(ks_begin(k, &e));
    a.state = KS_RETIRING;
    CHECK_OK(ks_set_state(k, &a, KS_REVOKED, 400, "x", "", &e));
    ks_rollback(k);
    ks_history *h = NULL;
    size_t n = 0;
    CHECK_OK(ks_history_get(k, "example.com", "s1", &h, &n, &e));
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK(!h[0].from_set);
        CHECK_EQ_INT(h[0].to, KS_CREATED);
        CHECK_STR(h[0].note, "made");
        CHECK_EQ_INT(h[2].from, KS_ACTIVE);
        CHECK_EQ_INT(h[2].to, KS_RETIRING);
        CHECK_STR(h[2].actor, "timer");
        CHECK_STR(h[2].key_id, "10");
    }
    ks_history_free(h, n);

    /* A destroyed key's name can be taken by a new key; ks_get prefers it. */
    CHECK_OK(ks_begin(k, &e));
    CHECK_OK(ks_set_state(k, &a, KS_REVOKED, 500, "x", "", &e));
    a.state = KS_REVOKED;
    CHECK_OK(ks_set_state(k, &a, KS_DESTROYED, 500, "x", "", &e));
    CHECK_OK(ks_commit(k, &e));
    ks_selector b = row("example.com", "s1", "11", DKIM_ALG_ED25519_SHA256, 600);
    CHECK_OK(ks_insert(k, &b, &e));
    ks_selector c = row("example.com", "s1", "12", DKIM_ALG_ED25519_SHA256, 700);
    CHECK_EQ_INT(ks_insert(k, &c, &e), DH_EEXIST);
    CHECK_OK(ks_get(k, "example.com", "s1", &got, &e));
    CHECK_STR(got.key_id, "11");
    ks_selector_clear(&got);
    ks_selector *l = NULL;
    CHECK_OK(ks_list(k, "example.com", &l, &n, &e));
    CHECK_EQ_INT(n, 2);
    ks_list_free(l, n);
    ks_close(k);
}

static void test_names(void)
{
    char *out = NULL;
    dh_err e = {0};
    CHECK_OK(ks_normalize_name("Mail.Example.COM.", "domain", &out, &e));
    CHECK_STR(out ? out : "", "mail.example.com");
    free(out);
    CHECK_OK(ks_normalize_name("sel_2024-01", "selector", &out, &e));
    free(out);
    out = NULL;
    CHECK_EQ_INT(ks_normalize_name("bad sel", "selector", &out, &e), DH_EINVAL);
    CHECK(strstr(e.msg, "selector 'bad sel'") != NULL);
    CHECK_EQ_INT(ks_normalize_name("a..b", "domain", &out, &e), DH_EINVAL);
    CHECK_EQ_INT(ks_normalize_name("-a.com", "domain", &out, &e), DH_EINVAL);
    CHECK_EQ_INT(ks_normalize_name("", "domain", &out, &e), DH_EINVAL);
    CHECK(out == NULL);
}

int main(int argc, char **argv)
{
    if ((dir = check_tmpdir()) == NULL)
        return 1;
    static const struct check_case cases[] = {{"insert_get_list", test_insert_get_list},
                                              {"newer_schema_refused", test_newer_schema_refused},
                                              {"names", test_names},
                                              {"migrate_v1", test_migrate_v1},
                                              {"state_history", test_state_history},
                                              {NULL, NULL}};
    return check_run(argc, argv, cases);
}
