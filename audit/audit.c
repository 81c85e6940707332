#include "audit/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/hex.h"
#include "dkim/b64.h"

#define GENESIS "0000000000000000000000000000000000000000000000000000000000000000"
#define HEAD_MAGIC "dkimhsm-audit-head v1"

static const char *nz(const char *s)
{
    return s ? s : "";
}

static int sha256_hex(const void *p, size_t n, char out[AU_HASH_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return DH_ECRYPTO;
    dh_hex(md, 32, out, AU_HASH_HEX);
    return DH_OK;
}

static int field(dh_buf *b, const char *s)
{
    return dh_buf_printf(b, "%zu:%s\n", strlen(s), s);
}

/* The canonical serialization (audit.h) hashed into out. */
static int entry_hash(const au_entry *a, char out[AU_HASH_HEX])
{
    dh_buf b = {0};
    int rc = dh_buf_puts(&b, "dkimhsm-audit-v1\n");
    char num[2][32];
    snprintf(num[0], sizeof(num[0]), "%lld", a->seq);
    snprintf(num[1], sizeof(num[1]), "%lld", a->time);
    const char *f[] = {num[0],      num[1],         a->actor,  a->event,    a->domain,
                       a->selector, a->fingerprint, a->detail, a->prev_hash};
    for (size_t i = 0; rc == DH_OK && i < sizeof(f) / sizeof(f[0]); i++)
        rc = field(&b, nz(f[i]));
    if (rc == DH_OK)
        rc = sha256_hex(b.data, b.len, out);
    dh_buf_free(&b);
    return rc;
}

static int db_err(ks *k, dh_err *e, const char *what)
{
    return dh_err_set(e, DH_EDB, "audit log in %s/state.db: %s: %s", ks_dir(k), what,
                      sqlite3_errmsg(ks_sqlite(k)));
}

/* Newest seq and hash; seq 0 and GENESIS for an empty log. */
static int last_entry(ks *k, long long *seq, char hash[AU_HASH_HEX], dh_err *e)
{
    sqlite3_stmt *st = NULL;
    *seq = 0;
    snprintf(hash, AU_HASH_HEX, "%s", GENESIS);
    if (sqlite3_prepare_v2(ks_sqlite(k),
                           "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", -1, &st,
                           NULL) != SQLITE_OK)
        return db_err(k, e, "reading the newest entry");
    int step = sqlite3_step(st), rc = DH_OK;
    if (step == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0);
        snprintf(hash, AU_HASH_HEX, "%s", nz((const char *)sqlite3_column_text(st, 1)));
    } else if (step != SQLITE_DONE) {
        rc = db_err(k, e, "reading the newest entry");
    }
    sqlite3_finalize(st);
    return rc;
}

int au_append(ks *k, long long time, const char *actor, const char *event, const char *domain,
              const char *selector, const char *fingerprint, const char *detail, long long *seq_out,
              dh_err *e)
{
    if (seq_out)
        *seq_out = 0;
    au_entry a = {.time = time,
                  .actor = (char *)nz(actor),
                  .event = (char *)nz(event),
                  .domain = (char *)nz(domain),
                  .selector = (char *)nz(selector),
                  .fingerprint = (char *)nz(fingerprint),
                  .detail = (char *)nz(detail)};
    int rc = last_entry(k, &a.seq, a.prev_hash, e);
    if (rc != DH_OK)
        return rc;
    a.seq++;
    if (entry_hash(&a, a.hash) != DH_OK)
        return dh_err_set(e, DH_ECRYPTO, "audit log: SHA-256 failed");
    static const char sql[] = "INSERT INTO audit_log (seq, time, actor, event, domain, selector,"
                              " fingerprint, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks_sqlite(k), sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(k, e, "append");
    sqlite3_bind_int64(st, 1, a.seq);
    sqlite3_bind_int64(st, 2, a.time);
    const char *text[] = {a.actor,       a.event,  a.domain,    a.selector,
                          a.fingerprint, a.detail, a.prev_hash, a.hash};
    for (int i = 0; i < 8; i++)
        sqlite3_bind_text(st, 3 + i, text[i], -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? DH_OK : db_err(k, e, "append");
    sqlite3_finalize(st);
    if (rc == DH_OK && seq_out)
        *seq_out = a.seq;
    return rc;
}

static int head_path(ks *k, dh_buf *out)
{
    return dh_buf_printf(out, "%s/audit.head", ks_dir(k));
}

/* Writers of the anchor take STATE_DIR/audit.lock in turn (dkim-keyctl, and
 * the daemon's API and timer threads, each on a connection of its own): each
 * reads the newest entry and writes it while holding the lock, so a writer
 * that read an older entry never overwrites a newer anchor. -1 when the lock
 * cannot be had (errno set). */
static int anchor_lock(ks *k)
{
    dh_buf path = {0};
    if (dh_buf_printf(&path, "%s/audit.lock", ks_dir(k)) != DH_OK) {
        errno = ENOMEM;
        return -1;
    }
    /* Read-only and world-readable (it holds nothing): whichever user made
     * it, root running dkim-keyctl or the daemon's user, the other can lock
     * it too. */
    int fd = open((char *)path.data, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    dh_buf_free(&path);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == geteuid())
        (void)fchmod(fd, 0644); /* a umask may have narrowed it; best effort */
    while (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
    }
    return fd;
}

int au_anchor_update(ks *k, dh_err *e)
{
    long long seq;
    char hash[AU_HASH_HEX];
    dh_buf path = {0}, text = {0};
    int lock = anchor_lock(k);
    if (lock < 0)
        return dh_err_set(e, DH_EIO, "%s/audit.lock: %s", ks_dir(k), strerror(errno));
    int rc = last_entry(k, &seq, hash, e);
    if (rc == DH_OK && (head_path(k, &path) != DH_OK ||
                        dh_buf_printf(&text, HEAD_MAGIC " %lld %s\n", seq, hash) != DH_OK))
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc == DH_OK)
        rc = dh_file_write_atomic((char *)path.data, text.data, text.len, 0600, e);
    close(lock); /* releases the lock */
    dh_buf_free(&path);
    dh_buf_free(&text);
    return rc;
}

int au_record(ks *k, long long time, const char *actor, const char *event, const char *domain,
              const char *selector, const char *fingerprint, const char *detail, dh_err *e)
{
    int rc = ks_begin(k, e);
    if (rc == DH_OK)
        rc = au_append(k, time, actor, event, domain, selector, fingerprint, detail, NULL, e);
    if (rc == DH_OK)
        rc = ks_commit(k, e);
    else
        ks_rollback(k);
    return rc == DH_OK ? au_anchor_update(k, e) : rc;
}

static void entry_clear(au_entry *a)
{
    free(a->actor);
    free(a->event);
    free(a->domain);
    free(a->selector);
    free(a->fingerprint);
    free(a->detail);
    memset(a, 0, sizeof(*a));
}

void au_list_free(au_entry *l, size_t n)
{
    for (size_t i = 0; l && i < n; i++)
        entry_clear(&l[i]);
    free(l);
}

static int read_entry(sqlite3_stmt *st, au_entry *a)
{
    memset(a, 0, sizeof(*a));
    a->seq = sqlite3_column_int64(st, 0);
    a->time = sqlite3_column_int64(st, 1);
    char **text[] = {&a->actor, &a->event, &a->domain, &a->selector, &a->fingerprint, &a->detail};
    for (int i = 0; i < 6; i++)
        if ((*text[i] = strdup(nz((const char *)sqlite3_column_text(st, 2 + i)))) == NULL)
            return DH_ENOMEM;
    snprintf(a->prev_hash, AU_HASH_HEX, "%s", nz((const char *)sqlite3_column_text(st, 8)));
    snprintf(a->hash, AU_HASH_HEX, "%s", nz((const char *)sqlite3_column_text(st, 9)));
    return DH_OK;
}

int au_list(ks *k, long long after_seq, au_entry **out, size_t *n, dh_err *e)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks_sqlite(k),
                           "SELECT seq, time, actor, event, domain, selector, fingerprint, detail,"
                           " prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(k, e, "list");
    sqlite3_bind_int64(st, 1, after_seq);
    au_entry *list = NULL;
    size_t count = 0;
    int rc = DH_OK, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        au_entry *grown = realloc(list, (count + 1) * sizeof(*list));
        if (grown == NULL) {
            rc = dh_err_set(e, DH_ENOMEM, "out of memory");
            break;
        }
        list = grown;
        if ((rc = read_entry(st, &list[count++])) != DH_OK) {
            dh_err_set(e, rc, "out of memory");
            break;
        }
    }
    if (rc == DH_OK && step != SQLITE_DONE)
        rc = db_err(k, e, "list");
    sqlite3_finalize(st);
    if (rc != DH_OK) {
        au_list_free(list, count);
        return rc;
    }
    *out = list;
    *n = count;
    return DH_OK;
}

const char *au_problem_name(enum au_problem p)
{
    static const char *const names[] = {"ok", "edited", "missing", "reordered", "broken", "anchor"};
    return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "?";
}

static void fail(au_verify_result *r, enum au_problem p, long long seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(au_verify_result *r, enum au_problem p, long long seq, const char *fmt, ...)
{
    if (r->problem != AU_FINE)
        return; /* the first problem found is the one reported */
    r->problem = p;
    r->bad_seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
}

static const au_entry *find_hash(const au_entry *l, size_t n, const char *hash)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(l[i].hash, hash) == 0)
            return &l[i];
    return NULL;
}

/* The chain itself: seq 1, 2, 3, ... each linking to the one before. */
static void verify_chain(const au_entry *l, size_t n, au_verify_result *r)
{
    const char *prev = GENESIS;
    for (size_t i = 0; i < n && r->problem == AU_FINE; i++) {
        const au_entry *a = &l[i];
        long long want = (long long)i + 1;
        char h[AU_HASH_HEX];
        if (a->seq != want) {
            fail(r, AU_MISSING, want, "entry %lld is missing (entry %lld follows entry %lld)", want,
                 a->seq, want - 1);
            break;
        }
        if (strcmp(a->prev_hash, prev) != 0) {
            const au_entry *other = find_hash(l, n, a->prev_hash);
            if (other)
                fail(r, AU_REORDERED, a->seq,
                     "entry %lld is out of order: it follows entry %lld of the original log, "
                     "not the entry now at %lld",
                     a->seq, other->seq, want - 1);
            else if (i > 0)
                fail(r, AU_EDITED, want - 1,
                     "entry %lld was rewritten: entry %lld does not link to its hash", want - 1,
                     a->seq);
            else
                fail(r, AU_BROKEN, a->seq, "entry 1 does not start the chain");
            break;
        }
        if (entry_hash(a, h) != DH_OK || strcmp(h, a->hash) != 0) {
            fail(r, AU_EDITED, a->seq,
                 "entry %lld was edited: its hash does not match its contents", a->seq);
            break;
        }
        prev = a->hash;
    }
}

/* Reads audit.head: 0 when absent (*seq = -1), DH_OK, or DH_EINVAL when garbled. */
static int read_head(ks *k, long long *seq, char hash[AU_HASH_HEX], dh_err *e)
{
    dh_buf path = {0}, text = {0};
    *seq = -1;
    if (head_path(k, &path) != DH_OK)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    dh_err ignored;
    int rc = dh_file_read((char *)path.data, 4096, &text, &ignored);
    dh_buf_free(&path);
    if (rc == DH_ENOTFOUND) {
        dh_buf_free(&text);
        return DH_OK;
    }
    char h[80] = "";
    if (rc == DH_OK &&
        (sscanf((char *)text.data, HEAD_MAGIC " %lld %79s", seq, h) != 2 || strlen(h) != 64))
        rc = DH_EINVAL;
    dh_buf_free(&text);
    if (rc != DH_OK) {
        *seq = -2;
        return DH_OK;
    }
    memcpy(hash, h, 65); /* 64 hex digits, checked above, and the NUL */
    return DH_OK;
}

static void verify_anchor(ks *k, const au_entry *l, size_t n, au_verify_result *r, long long aseq,
                          const char *ahash)
{
    if (aseq == -2) {
        fail(r, AU_ANCHOR, 0, "%s/audit.head is unreadable or garbled", ks_dir(k));
    } else if (aseq == -1) {
        if (n > 0)
            fail(r, AU_ANCHOR, 0, "%s/audit.head is missing but the log has %zu entries", ks_dir(k),
                 n);
    } else if (aseq > r->head_seq) {
        fail(r, AU_MISSING, r->head_seq + 1,
             "entries %lld to %lld are missing (audit.head says the log ends at entry %lld)",
             r->head_seq + 1, aseq, aseq);
    } else if (aseq > 0 && strcmp(l[aseq - 1].hash, ahash) != 0) {
        fail(r, AU_ANCHOR, aseq, "entry %lld differs from the one audit.head recorded", aseq);
    } else if (aseq < r->head_seq) {
        snprintf(r->note, sizeof(r->note),
                 "audit.head ends at entry %lld, the log at %lld (written after a crash?)", aseq,
                 r->head_seq);
    }
}

int au_verify(ks *k, au_verify_result *out, dh_err *e)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->head_hash, AU_HASH_HEX, "%s", GENESIS);
    au_entry *l = NULL;
    size_t n = 0;
    long long aseq;
    char ahash[AU_HASH_HEX] = "";
    int rc = au_list(k, 0, &l, &n, e);
    if (rc == DH_OK)
        rc = read_head(k, &aseq, ahash, e);
    if (rc != DH_OK) {
        au_list_free(l, n);
        return rc;
    }
    out->entries = (long long)n;
    if (n > 0) {
        out->head_seq = l[n - 1].seq;
        snprintf(out->head_hash, AU_HASH_HEX, "%s", l[n - 1].hash);
    }
    verify_chain(l, n, out);
    if (out->problem == AU_FINE)
        verify_anchor(k, l, n, out, aseq, ahash);
    au_list_free(l, n);
    return DH_OK;
}

int au_fingerprint(const char *public_key_b64, char out[AU_HASH_HEX], dh_err *e)
{
    out[0] = '\0';
    dh_buf raw = {0};
    int rc = dkim_b64_decode(public_key_b64, strlen(public_key_b64), &raw);
    if (rc != DH_OK)
        rc = dh_err_set(e, DH_EINVAL, "public key is not base64");
    else if (sha256_hex(raw.data, raw.len, out) != DH_OK)
        rc = dh_err_set(e, DH_ECRYPTO, "SHA-256 failed");
    dh_buf_free(&raw);
    return rc;
}
