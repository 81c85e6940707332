#include "keystore/keystore.h"

#include <ctype.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stdio.h>

#include "common/buf.h"

struct ks {
    sqlite3 *db;
    char *path; /* STATE_DIR/state.db */
    char *dir;  /* STATE_DIR */
};

/* migrations[i] takes the schema from version i to i+1. Never edit one that
 * has shipped: add a new one. */
static const char *const migrations[] = {
    "CREATE TABLE selectors ("
    " id INTEGER PRIMARY KEY,"
    " domain TEXT NOT NULL,"
    " selector TEXT NOT NULL,"
    " algorithm TEXT NOT NULL CHECK (algorithm IN ('rsa-sha256', 'ed25519-sha256')),"
    " bits INTEGER NOT NULL,"
    " key_id TEXT NOT NULL UNIQUE,"
    " public_key TEXT NOT NULL,"
    " custody TEXT NOT NULL CHECK (custody IN ('generated', 'imported')),"
    " state TEXT NOT NULL,"
    " created INTEGER NOT NULL,"
    " state_changed INTEGER NOT NULL,"
    " UNIQUE (domain, selector));",

    /* 2: the key lifecycle. The selectors table is rebuilt (SQLite cannot
     * drop a constraint) so that a destroyed key's name can be reused. */
    "CREATE TABLE selectors_v2 ("
    " id INTEGER PRIMARY KEY,"
    " domain TEXT NOT NULL,"
    " selector TEXT NOT NULL,"
    " algorithm TEXT NOT NULL CHECK (algorithm IN ('rsa-sha256', 'ed25519-sha256')),"
    " bits INTEGER NOT NULL,"
    " key_id TEXT NOT NULL UNIQUE,"
    " public_key TEXT NOT NULL,"
    " custody TEXT NOT NULL CHECK (custody IN ('generated', 'imported')),"
    " state TEXT NOT NULL CHECK (state IN ('created', 'published', 'active', 'retiring',"
    "  'revoked', 'destroyed')),"
    " created INTEGER NOT NULL,"
    " state_changed INTEGER NOT NULL,"
    " retiring_since INTEGER NOT NULL DEFAULT 0,"
    " predecessor TEXT);"
    "INSERT INTO selectors_v2 (id, domain, selector, algorithm, bits, key_id, public_key, custody,"
    " state, created, state_changed) SELECT id, domain, selector, algorithm, bits, key_id,"
    " public_key, custody, state, created, state_changed FROM selectors;"
    "UPDATE selectors_v2 SET retiring_since = state_changed WHERE state = 'retiring';"
    "DROP TABLE selectors;"
    "ALTER TABLE selectors_v2 RENAME TO selectors;"
    "CREATE UNIQUE INDEX selectors_live ON selectors (domain, selector)"
    " WHERE state <> 'destroyed';"
    "CREATE TABLE state_history ("
    " id INTEGER PRIMARY KEY,"
    " domain TEXT NOT NULL,"
    " selector TEXT NOT NULL,"
    " key_id TEXT NOT NULL,"
    " from_state TEXT,"
    " to_state TEXT NOT NULL,"
    " time INTEGER NOT NULL,"
    " actor TEXT NOT NULL,"
    " note TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX state_history_name ON state_history (domain, selector);"
    "CREATE TABLE audit_log ("
    " seq INTEGER PRIMARY KEY,"
    " time INTEGER NOT NULL,"
    " actor TEXT NOT NULL,"
    " event TEXT NOT NULL,"
    " domain TEXT NOT NULL,"
    " selector TEXT NOT NULL,"
    " fingerprint TEXT NOT NULL,"
    " detail TEXT NOT NULL,"
    " prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL);"
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
    " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
    " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

static const char *const state_names[] = {"created",  "published", "active",
                                          "retiring", "revoked",   "destroyed"};

const char *ks_state_name(enum ks_state s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

int ks_state_parse(const char *s, enum ks_state *out)
{
    for (size_t i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
        if (strcmp(s, state_names[i]) == 0) {
            *out = (enum ks_state)i;
            return DH_OK;
        }
    return DH_EINVAL;
}

const char *ks_custody_name(enum ks_custody c)
{
    return c == KS_IMPORTED ? "imported" : "generated";
}

static int db_err(ks *k, dh_err *e, const char *what)
{
    return dh_err_set(e, DH_EDB, "state database %s: %s: %s", k->path, what, sqlite3_errmsg(k->db));
}

int ks_schema_version(ks *k)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(k->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

int ks_data_version(ks *k, long long *out, dh_err *e)
{
    sqlite3_stmt *st = NULL;
    int rc = DH_EDB;
    if (sqlite3_prepare_v2(k->db, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = DH_OK;
    }
    sqlite3_finalize(st);
    return rc == DH_OK ? DH_OK : db_err(k, e, "reading data_version");
}

static int migrate(ks *k, dh_err *e)
{
    int v = ks_schema_version(k);
    if (v < 0)
        return db_err(k, e, "reading schema version");
    if (v > NMIGRATIONS)
        return dh_err_set(e, DH_EDB,
                          "state database %s has schema version %d; this program knows up to %d "
                          "(was it written by a newer dkimhsm?)",
                          k->path, v, NMIGRATIONS);
    for (; v < NMIGRATIONS; v++) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v + 1);
        if (sqlite3_exec(k->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            return db_err(k, e, "starting migration");
        if (sqlite3_exec(k->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(k->db, pragma, NULL, NULL, NULL) != SQLITE_OK) {
            int rc = db_err(k, e, "migration");
            sqlite3_exec(k->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        if (sqlite3_exec(k->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            return db_err(k, e, "committing migration");
    }
    return DH_OK;
}

static int make_dir(const char *dir, dh_err *e)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return DH_OK;
    return dh_err_set(e, DH_EIO, "state_dir %s: cannot create: %s", dir, strerror(errno));
}

int ks_open(const char *state_dir, ks **out, dh_err *e)
{
    *out = NULL;
    int rc = make_dir(state_dir, e);
    if (rc != DH_OK)
        return rc;
    ks *k = calloc(1, sizeof(*k));
    dh_buf path = {0};
    if (k == NULL || dh_buf_printf(&path, "%s/state.db", state_dir) != DH_OK) {
        free(k);
        dh_buf_free(&path);
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    k->path = dh_buf_steal(&path);
    k->dir = strdup(state_dir);
    if (k->path == NULL || k->dir == NULL) {
        ks_close(k);
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    if (sqlite3_open_v2(k->path, &k->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = db_err(k, e, "open");
    } else {
        /* The daemon and dkim-keyctl share the file: wait for each other's
         * writes instead of failing with SQLITE_BUSY. */
        sqlite3_busy_timeout(k->db, 5000);
        sqlite3_exec(k->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
        rc = migrate(k, e);
    }
    if (rc != DH_OK) {
        ks_close(k);
        return rc;
    }
    *out = k;
    return DH_OK;
}

void ks_close(ks *k)
{
    if (k == NULL)
        return;
    sqlite3_close(k->db);
    free(k->path);
    free(k->dir);
    free(k);
}

const char *ks_dir(ks *k)
{
    return k->dir;
}

struct sqlite3 *ks_sqlite(ks *k)
{
    return k->db;
}

int ks_begin(ks *k, dh_err *e)
{
    if (sqlite3_exec(k->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(k, e, "begin");
    return DH_OK;
}

int ks_commit(ks *k, dh_err *e)
{
    if (sqlite3_exec(k->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        int rc = db_err(k, e, "commit");
        ks_rollback(k);
        return rc;
    }
    return DH_OK;
}

void ks_rollback(ks *k)
{
    if (!sqlite3_get_autocommit(k->db))
        sqlite3_exec(k->db, "ROLLBACK", NULL, NULL, NULL);
}

int ks_insert(ks *k, const ks_selector *s, dh_err *e)
{
    static const char sql[] =
        "INSERT INTO selectors (domain, selector, algorithm, bits, key_id, public_key, custody,"
        " state, created, state_changed, retiring_since, predecessor)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(k->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(k, e, "insert");
    sqlite3_bind_text(st, 1, s->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->selector, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, dkim_alg_name(s->alg), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, (int)s->bits);
    sqlite3_bind_text(st, 5, s->key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, s->public_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, ks_custody_name(s->custody), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, ks_state_name(s->state), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, s->created);
    sqlite3_bind_int64(st, 10, s->state_changed);
    sqlite3_bind_int64(st, 11, s->retiring_since);
    if (s->predecessor)
        sqlite3_bind_text(st, 12, s->predecessor, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    int rc = DH_OK;
    if (step == SQLITE_CONSTRAINT)
        rc = dh_err_set(e, DH_EEXIST, "selector %s for %s already exists", s->selector, s->domain);
    else if (step != SQLITE_DONE)
        rc = db_err(k, e, "insert");
    sqlite3_finalize(st);
    return rc;
}

int ks_delete(ks *k, const char *domain, const char *selector, dh_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(k->db,
                           "DELETE FROM selectors WHERE domain = ? AND selector = ?"
                           " AND state <> 'destroyed'",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(k, e, "delete");
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, selector, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? DH_OK : db_err(k, e, "delete");
    sqlite3_finalize(st);
    return rc;
}

#define SELECT_COLS                                                                                \
    "SELECT domain, selector, algorithm, bits, key_id, public_key, custody, state, created,"       \
    " state_changed, retiring_since, predecessor FROM selectors "

static char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

static int read_row(ks *k, sqlite3_stmt *st, ks_selector *s, dh_err *e)
{
    memset(s, 0, sizeof(*s));
    s->domain = col_text(st, 0);
    s->selector = col_text(st, 1);
    s->key_id = col_text(st, 4);
    s->public_key = col_text(st, 5);
    if (!s->domain || !s->selector || !s->key_id || !s->public_key) {
        ks_selector_clear(s);
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    s->bits = (unsigned)sqlite3_column_int(st, 3);
    s->custody = strcmp((const char *)sqlite3_column_text(st, 6), "imported") == 0 ? KS_IMPORTED
                                                                                   : KS_GENERATED;
    s->created = sqlite3_column_int64(st, 8);
    s->state_changed = sqlite3_column_int64(st, 9);
    s->retiring_since = sqlite3_column_int64(st, 10);
    if (sqlite3_column_type(st, 11) != SQLITE_NULL && (s->predecessor = col_text(st, 11)) == NULL) {
        ks_selector_clear(s);
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    if (dkim_alg_parse((const char *)sqlite3_column_text(st, 2), &s->alg, NULL) != DH_OK ||
        ks_state_parse((const char *)sqlite3_column_text(st, 7), &s->state) != DH_OK) {
        ks_selector_clear(s);
        return dh_err_set(e, DH_EDB, "state database %s: bad algorithm or state in row", k->path);
    }
    return DH_OK;
}

int ks_get(ks *k, const char *domain, const char *selector, ks_selector *out, dh_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(k->db,
                           SELECT_COLS "WHERE domain = ? AND selector = ?"
                                       " ORDER BY state = 'destroyed', id DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(k, e, "select");
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, selector, -1, SQLITE_STATIC);
    int step = sqlite3_step(st), rc;
    if (step == SQLITE_ROW)
        rc = read_row(k, st, out, e);
    else if (step == SQLITE_DONE)
        rc = dh_err_set(e, DH_ENOTFOUND, "no selector %s for domain %s", selector, domain);
    else
        rc = db_err(k, e, "select");
    sqlite3_finalize(st);
    return rc;
}

int ks_list(ks *k, const char *domain, ks_selector **out, size_t *n, dh_err *e)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    const char *sql = domain ? SELECT_COLS "WHERE domain = ? ORDER BY domain, created, selector"
                             : SELECT_COLS "ORDER BY domain, created, selector";
    if (sqlite3_prepare_v2(k->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(k, e, "list");
    if (domain)
        sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    ks_selector *list = NULL;
    size_t count = 0;
    int rc = DH_OK, step;
    while (rc == DH_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        ks_selector *grown = realloc(list, (count + 1) * sizeof(*list));
        if (grown == NULL) {
            rc = dh_err_set(e, DH_ENOMEM, "out of memory");
            break;
        }
        list = grown;
        rc = read_row(k, st, &list[count], e);
        if (rc == DH_OK)
            count++;
    }
    if (rc == DH_OK && step != SQLITE_DONE)
        rc = db_err(k, e, "list");
    sqlite3_finalize(st);
    if (rc != DH_OK) {
        ks_list_free(list, count);
        return rc;
    }
    *out = list;
    *n = count;
    return DH_OK;
}

void ks_selector_clear(ks_selector *s)
{
    if (s == NULL)
        return;
    free(s->domain);
    free(s->selector);
    free(s->key_id);
    free(s->public_key);
    free(s->predecessor);
    memset(s, 0, sizeof(*s));
}

void ks_list_free(ks_selector *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ks_selector_clear(&list[i]);
    free(list);
}

static int label_ok(const char *p, size_t n)
{
    if (n == 0 || n > 63 || p[0] == '-' || p[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != '-' && p[i] != '_')
            return 0;
    return 1;
}

int ks_normalize_name(const char *name, const char *what, char **out, dh_err *e)
{
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return dh_err_set(e, DH_EINVAL, "%s '%s': not a DNS name", what, name);
    char *s = strndup(name, len);
    if (s == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, ".");
        if (!label_ok(p, n)) {
            free(s);
            return dh_err_set(e, DH_EINVAL,
                              "%s '%s': not a DNS name (labels of letters, digits, '-', '_')", what,
                              name);
        }
        p += n + (p[n] == '.');
    }
    *out = s;
    return DH_OK;
}

int ks_add_history(ks *k, const ks_selector *s, long long now, const char *actor, const char *note,
                   dh_err *e)
{
    static const char sql[] = "INSERT INTO state_history (domain, selector, key_id, from_state,"
                              " to_state, time, actor, note) VALUES (?,?,?,?,?,?,?,?)";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(k->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(k, e, "history");
    sqlite3_bind_text(st, 1, s->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->selector, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->key_id, -1, SQLITE_STATIC);
    sqlite3_bind_null(st, 4);
    sqlite3_bind_text(st, 5, ks_state_name(s->state), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now);
    sqlite3_bind_text(st, 7, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, note ? note : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? DH_OK : db_err(k, e, "history");
    sqlite3_finalize(st);
    return rc;
}

static int history_change(ks *k, const ks_selector *cur, enum ks_state to, long long now,
                          const char *actor, const char *note, dh_err *e)
{
    static const char sql[] = "INSERT INTO state_history (domain, selector, key_id, from_state,"
                              " to_state, time, actor, note) VALUES (?,?,?,?,?,?,?,?)";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(k->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(k, e, "history");
    sqlite3_bind_text(st, 1, cur->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, cur->selector, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, cur->key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, ks_state_name(cur->state), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, ks_state_name(to), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now);
    sqlite3_bind_text(st, 7, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, note ? note : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? DH_OK : db_err(k, e, "history");
    sqlite3_finalize(st);
    return rc;
}

int ks_set_state(ks *k, const ks_selector *cur, enum ks_state to, long long now, const char *actor,
                 const char *note, dh_err *e)
{
    static const char sql[] =
        "UPDATE selectors SET state = ?, state_changed = ?,"
        " retiring_since = CASE WHEN ? = 'retiring' THEN ? ELSE retiring_since END"
        " WHERE key_id = ? AND state = ?";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(k->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(k, e, "state change");
    sqlite3_bind_text(st, 1, ks_state_name(to), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, ks_state_name(to), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_text(st, 5, cur->key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, ks_state_name(cur->state), -1, SQLITE_STATIC);
    int step = sqlite3_step(st), rc = DH_OK;
    if (step == SQLITE_CONSTRAINT)
        rc = dh_err_set(e, DH_EEXIST, "selector %s for %s is taken by another key", cur->selector,
                        cur->domain);
    else if (step != SQLITE_DONE)
        rc = db_err(k, e, "state change");
    else if (sqlite3_changes(k->db) != 1)
        rc = dh_err_set(e, DH_ESTATE, "selector %s of %s is no longer %s (changed meanwhile)",
                        cur->selector, cur->domain, ks_state_name(cur->state));
    sqlite3_finalize(st);
    if (rc == DH_OK)
        rc = history_change(k, cur, to, now, actor, note, e);
    return rc;
}

static int read_history(sqlite3_stmt *st, ks_history *h)
{
    memset(h, 0, sizeof(*h));
    h->key_id = col_text(st, 0);
    h->actor = col_text(st, 4);
    h->note = col_text(st, 5);
    h->time = sqlite3_column_int64(st, 3);
    const char *from = (const char *)sqlite3_column_text(st, 1);
    const char *to = (const char *)sqlite3_column_text(st, 2);
    h->from_set = from != NULL && ks_state_parse(from, &h->from) == DH_OK;
    int bad = to == NULL || ks_state_parse(to, &h->to) != DH_OK;
    return !h->key_id || !h->actor || !h->note ? DH_ENOMEM : bad ? DH_EDB : DH_OK;
}

void ks_history_free(ks_history *h, size_t n)
{
    for (size_t i = 0; h && i < n; i++) {
        free(h[i].key_id);
        free(h[i].actor);
        free(h[i].note);
    }
    free(h);
}

int ks_history_get(ks *k, const char *domain, const char *selector, ks_history **out, size_t *n,
                   dh_err *e)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(k->db,
                           "SELECT key_id, from_state, to_state, time, actor, note FROM"
                           " state_history WHERE domain = ? AND selector = ? ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(k, e, "history");
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, selector, -1, SQLITE_STATIC);
    ks_history *list = NULL;
    size_t count = 0;
    int rc = DH_OK, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        ks_history *grown = realloc(list, (count + 1) * sizeof(*list));
        if (grown == NULL) {
            rc = dh_err_set(e, DH_ENOMEM, "out of memory");
            break;
        }
        list = grown;
        rc = read_history(st, &list[count++]);
        if (rc != DH_OK) {
            dh_err_set(e, rc, "state database %s: bad history row", k->path);
            break;
        }
    }
    if (rc == DH_OK && step != SQLITE_DONE)
        rc = db_err(k, e, "history");
    sqlite3_finalize(st);
    if (rc != DH_OK) {
        ks_history_free(list, count);
        return rc;
    }
    *out = list;
    *n = count;
    return DH_OK;
}
