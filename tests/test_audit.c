/* audit/: the hash chain, its anchor, and each kind of tampering detected. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "tests/lib/check.h"

static const char *base;

/* A fresh state directory with n entries. */
static ks *fresh(const char *name, int n, char *dir, size_t dirsz)
{
    snprintf(dir, dirsz, "%s/%s", base, name);
    ks *k = NULL;
    dh_err e = {0};
    CHECK_OK(ks_open(dir, &k, &e));
    for (int i = 1; k && i <= n; i++) {
        char sel[16], detail[32];
        snprintf(sel, sizeof(sel), "s%d", i);
        snprintf(detail, sizeof(detail), "entry %d", i);
        CHECK_OK(
            au_record(k, 1000 + i, "uid:0(root)", "create", "example.com", sel, "ab", detail, &e));
    }
    return k;
}

/* Raw SQL on the database behind audit's back (triggers dropped first, as an
 * attacker with file access would). */
static void tamper(const char *dir, const char *sql)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/state.db", dir);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(db,
                     "DROP TRIGGER IF EXISTS audit_log_no_update;"
                     "DROP TRIGGER IF EXISTS audit_log_no_delete;",
                     NULL, NULL, &err) != SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        check_fail(__FILE__, __LINE__, "tamper: %s", err ? err : "?");
        sqlite3_free(err);
    }
    sqlite3_close(db);
}

static au_verify_result verify(ks *k)
{
    au_verify_result r;
    dh_err e = {0};
    CHECK_OK(au_verify(k, &r, &e));
    return r;
}

static void test_chain_ok(void)
{
    char dir[512];
    ks *k = fresh("ok", 5, dir, sizeof(dir));
    au_verify_result r = verify(k);
    CHECK_EQ_INT(r.problem, AU_FINE);
    CHECK_EQ_INT(r.entries, 5);
    CHECK_EQ_INT(r.head_seq, 5);
    CHECK(r.note[0] == '\0');
    au_entry *l = NULL;
    size_t n = 0;
    dh_err e = {0};
    CHECK_OK(au_list(k, 3, &l, &n, &e));
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(l[0].seq, 4);
        CHECK_STR(l[0].selector, "s4");
        CHECK_STR(l[1].prev_hash, l[0].hash);
        CHECK_STR(r.head_hash, l[1].hash);
    }
    au_list_free(l, n);
    /* The table refuses edits through SQL while its triggers stand. */
    CHECK(sqlite3_exec(ks_sqlite(k), "UPDATE audit_log SET actor = 'x' WHERE seq = 1", NULL, NULL,
                       NULL) != SQLITE_OK);
    CHECK(sqlite3_exec(ks_sqlite(k), "DELETE FROM audit_log WHERE seq = 5", NULL, NULL, NULL) !=
          SQLITE_OK);
    ks_close(k);
}

static void test_empty(void)
{
    char dir[512];
    ks *k = fresh("empty", 0, dir, sizeof(dir));
    au_verify_result r = verify(k);
    CHECK_EQ_INT(r.problem, AU_FINE);
    CHECK_EQ_INT(r.entries, 0);
    ks_close(k);
}

static void expect(const char *name, const char *sql, enum au_problem p, long long seq,
                   const char *words)
{
    char dir[512];
    ks *k = fresh(name, 5, dir, sizeof(dir));
    tamper(dir, sql);
    au_verify_result r = verify(k);
    CHECK_EQ_INT(r.problem, p);
    CHECK_EQ_INT(r.bad_seq, seq);
    if (strstr(r.reason, words) == NULL)
        check_fail(__FILE__, __LINE__, "%s: reason '%s' lacks '%s'", name, r.reason, words);
    ks_close(k);
}

static void test_edited(void)
{
    expect("edit", "UPDATE audit_log SET actor = 'uid:1000(mallory)' WHERE seq = 3", AU_EDITED, 3,
           "entry 3 was edited");
    expect("edit-detail", "UPDATE audit_log SET detail = 'nothing' WHERE seq = 5", AU_EDITED, 5,
           "entry 5 was edited");
}

static void test_removed_middle(void)
{
    expect("del-mid", "DELETE FROM audit_log WHERE seq = 2", AU_MISSING, 2, "entry 2 is missing");
}

static void test_removed_last(void)
{
    expect("del-last", "DELETE FROM audit_log WHERE seq = 5", AU_MISSING, 5,
           "audit.head says the log ends at entry 5");
}

static void test_reordered(void)
{
    expect("swap",
           "UPDATE audit_log SET seq = -1 WHERE seq = 2;"
           "UPDATE audit_log SET seq = 2 WHERE seq = 3;"
           "UPDATE audit_log SET seq = 3 WHERE seq = -1;",
           AU_REORDERED, 2, "out of order");
}

static void test_anchor(void)
{
    char dir[512], path[600];
    ks *k = fresh("anchor", 3, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/audit.head", dir);
    CHECK(unlink(path) == 0);
    au_verify_result r = verify(k);
    CHECK_EQ_INT(r.problem, AU_ANCHOR);
    CHECK(strstr(r.reason, "missing") != NULL);
    /* An anchor that names another hash for the last entry. */
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "dkimhsm-audit-head v1 3 %064d\n", 7);
        fclose(f);
    }
    r = verify(k);
    CHECK_EQ_INT(r.problem, AU_ANCHOR);
    CHECK_EQ_INT(r.bad_seq, 3);
    /* A lagging anchor (crash between commit and anchor write) is a note. */
    dh_err e = {0};
    CHECK_OK(au_anchor_update(k, &e));
    CHECK_OK(ks_begin(k, &e));
    CHECK_OK(au_append(k, 2000, "timer", "revoke", "example.com", "s1", "ab", "", NULL, &e));
    CHECK_OK(ks_commit(k, &e));
    r = verify(k);
    CHECK_EQ_INT(r.problem, AU_FINE);
    CHECK(strstr(r.note, "ends at entry 3") != NULL);
    ks_close(k);
}

static void test_rollback_leaves_no_entry(void)
{
    char dir[512];
    ks *k = fresh("rollback", 1, dir, sizeof(dir));
    dh_err e = {0};
    CHECK_OK(ks_begin(k, &e));
    CHECK_OK(au_append(k, 2000, "timer", "revoke", "example.com", "s1", "ab", "", NULL, &e));
    ks_rollback(k);
    au_verify_result r = verify(k);
    CHECK_EQ_INT(r.problem, AU_FINE);
    CHECK_EQ_INT(r.entries, 1);
    ks_close(k);
}

static void test_fingerprint(void)
{
    char fp[AU_HASH_HEX];
    dh_err e = {0};
    /* SHA-256 of the three bytes "abc" (FIPS 180-2 example), given as base64. */
    CHECK_OK(au_fingerprint("YWJj", fp, &e));
    CHECK_STR(fp, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_EQ_INT(au_fingerprint("!!", fp, &e), DH_EINVAL);
}

/* Writers on connections of their own (the daemon's API and timer threads,
 * dkim-keyctl) append at once: every entry lands in one unbroken chain and
 * the anchor ends at the newest. (The interleaving audit.lock rules out, an
 * anchor written from an entry read before another writer's commit, is too
 * narrow a window to provoke here.) */
#define WRITER_ENTRIES 40
static const char *writers_dir;

static void *writer(void *arg)
{
    const char *actor = arg;
    ks *k = NULL;
    dh_err e = {0};
    if (ks_open(writers_dir, &k, &e) != DH_OK)
        return "ks_open failed";
    const char *fail = NULL;
    for (int i = 0; i < WRITER_ENTRIES && fail == NULL; i++)
        if (au_record(k, 3000 + i, actor, "rotate", "example.com", "s1", "ab", "", &e) != DH_OK)
            fail = "au_record failed";
    ks_close(k);
    return (void *)fail;
}

static void test_concurrent_writers(void)
{
    char dir[512];
    ks *k = fresh("concurrent", 1, dir, sizeof(dir));
    writers_dir = dir;
    pthread_t a, b;
    void *ra = NULL, *rb = NULL;
    CHECK(pthread_create(&a, NULL, writer, "timer") == 0);
    CHECK(pthread_create(&b, NULL, writer, "api:test") == 0);
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    CHECK(ra == NULL && rb == NULL);
    au_verify_result r = verify(k);
    CHECK_EQ_INT(r.problem, AU_FINE);
    CHECK_EQ_INT(r.entries, 1 + 2 * WRITER_ENTRIES);
    CHECK_EQ_INT(r.head_seq, 1 + 2 * WRITER_ENTRIES);
    CHECK(r.note[0] == '\0'); /* the anchor does not lag */
    ks_close(k);
}

int main(int argc, char **argv)
{
    if ((base = check_tmpdir()) == NULL)
        return 1;
    static const struct check_case cases[] = {{"chain_ok", test_chain_ok},
                                              {"empty", test_empty},
                                              {"edited", test_edited},
                                              {"removed_middle", test_removed_middle},
                                              {"removed_last", test_removed_last},
                                              {"reordered", test_reordered},
                                              {"anchor", test_anchor},
                                              {"rollback", test_rollback_leaves_no_entry},
                                              {"fingerprint", test_fingerprint},
                                              {"concurrent_writers", test_concurrent_writers},
                                              {NULL, NULL}};
    return check_run(argc, argv, cases);
}
