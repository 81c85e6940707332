/*
 * test_client.c - the agent client's connection pool (daemon/client.h)
 * against a tiny in-test daemon on a UNIX socket in a temporary directory.
 *
 * The server speaks the real frames (daemon/proto.h) and can misbehave on
 * request: answer out of order, close in the middle of a reply, never answer,
 * answer an id nobody asked for, or send ERROR. A connection per thread.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/client.h"
#include "daemon/proto.h"
#include "tests/lib/check.h"

enum mode {
    M_ECHO,      /* answer each request at once */
    M_BATCH,     /* gather requests until none comes for 100 ms, answer in reverse */
    M_CLOSE_MID, /* send half a reply and close; later connections get M_ECHO */
    M_SILENT,    /* read, never answer */
    M_BAD_ID,    /* answer with an id that was not asked for */
    M_ERROR,     /* answer ERROR and close */
};

#define MAX_HANDLERS 256
#define MAX_BATCH 256

typedef struct srv {
    char path[108];
    int lfd;
    atomic_int mode, stop;
    atomic_int now, max_now, accepted, max_outstanding;
    pthread_t acceptor;
    pthread_mutex_t mu;
    pthread_t handlers[MAX_HANDLERS];
    size_t nh;
} srv;

/* ---- the server's I/O ---- */

static int read_full(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 5000) <= 0)
            return -1;
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 1: a frame is in f; 0: nothing came within idle_ms; -1: EOF, error, stop. */
static int read_frame(srv *s, int fd, dh_buf *f, int idle_ms)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int k = poll(&pf, 1, idle_ms);
    if (atomic_load(&s->stop) || k < 0)
        return -1;
    if (k == 0)
        return 0;
    uint8_t hdr[4];
    size_t flen;
    dh_buf_reset(f);
    if (read_full(fd, hdr, 4) != 0 || ap_frame_size(hdr, 4, &flen, NULL) != DH_OK ||
        dh_buf_append(f, hdr, 4) != DH_OK || dh_buf_reserve(f, flen) != DH_OK ||
        read_full(fd, f->data + 4, flen - 4) != 0)
        return -1;
    f->len = flen;
    return 1;
}

/* "sig:DOMAIN/SELECTOR", so the client can tell which request a reply is for. */
static int sign_reply(dh_buf *out, uint32_t id, const ap_sign *rq)
{
    char sig[600];
    int n = snprintf(sig, sizeof(sig), "sig:%.*s/%.*s", (int)rq->domain.len, rq->domain.p,
                     (int)rq->selector.len, rq->selector.p);
    ap_sign_reply r = {.status = AP_OK, .sig = (const uint8_t *)sig, .sig_len = (size_t)n};
    if (rq->selector.len == 6 && memcmp(rq->selector.p, "refuse", 6) == 0)
        r = (ap_sign_reply){.status = AP_REFUSED, .reason = {"not yours", 9}};
    return ap_encode_sign_reply(out, id, &r);
}

static int answer(const ap_msg *m, uint32_t id, dh_buf *out)
{
    if (m->type == AP_SIGN)
        return sign_reply(out, id, &m->u.sign);
    if (m->type == AP_PING)
        return ap_encode_pong(out, id, AP_OK);
    if (m->type != AP_LOOKUP)
        return ap_encode_error(out, id, "unexpected frame");
    if (m->u.lookup_domain.len == 7 && memcmp(m->u.lookup_domain.p, "nowhere", 7) == 0) {
        ap_lookup_reply nf = {.status = AP_NOTFOUND, .reason = {"nothing signs", 13}};
        return ap_encode_lookup_reply(out, id, &nf);
    }
    ap_lookup_reply r = {.status = AP_OK, .domain = {"example.com", 11}, .count = 2};
    r.sel[0] = (ap_selector){{"ed1", 3}, 1};
    r.sel[1] = (ap_selector){{"rsa1", 4}, 0};
    return ap_encode_lookup_reply(out, id, &r);
}

/* Answers what is gathered, newest first. */
static int flush_batch(int fd, dh_buf *frames, size_t *ends, size_t *n)
{
    dh_buf out = {0};
    int rc = 0;
    for (size_t i = *n; rc == 0 && i-- > 0;) {
        size_t start = i ? ends[i - 1] : 0;
        ap_msg m;
        if (ap_decode(frames->data + start, ends[i] - start, &m, NULL, NULL) != DH_OK ||
            answer(&m, m.id, &out) != DH_OK)
            rc = -1;
    }
    if (rc == 0)
        rc = write_full(fd, out.data, out.len);
    dh_buf_free(&out);
    dh_buf_reset(frames);
    *n = 0;
    return rc;
}

static void serve_batch(srv *s, int fd)
{
    dh_buf f = {0}, frames = {0};
    size_t ends[MAX_BATCH], n = 0;
    for (;;) {
        int r = read_frame(s, fd, &f, n > 0 ? 100 : 50);
        if (r < 0)
            break;
        if (r > 0) {
            if (n == MAX_BATCH || dh_buf_append(&frames, f.data, f.len) != DH_OK)
                break;
            ends[n++] = frames.len;
            if ((int)n > atomic_load(&s->max_outstanding))
                atomic_store(&s->max_outstanding, (int)n);
        }
        /* Only a pause ends a batch: a client that ignored the in-flight
         * limit would get more than 64 requests in. */
        if (r == 0 && n > 0 && flush_batch(fd, &frames, ends, &n) != 0)
            break;
    }
    dh_buf_free(&f);
    dh_buf_free(&frames);
}

/* One request in, per the mode; -1 ends the connection. */
static int serve_one(srv *s, int fd, const dh_buf *f)
{
    ap_msg m;
    uint32_t id = 0;
    dh_buf out = {0};
    int mode = atomic_load(&s->mode), rc = 0;
    if (ap_decode(f->data, f->len, &m, &id, NULL) != DH_OK)
        return -1;
    if (mode == M_SILENT)
        return 0;
    if (mode == M_ERROR) /* and close, as the daemon does */
        rc = ap_encode_error(&out, id, "cannot parse this") == DH_OK ? -1 : -2;
    else
        rc = answer(&m, mode == M_BAD_ID ? id + 1000 : id, &out) == DH_OK ? 0 : -1;
    size_t len = out.len;
    if (mode == M_CLOSE_MID) {
        len /= 2;
        atomic_store(&s->mode, M_ECHO); /* the next connection is served */
        rc = -1;
    }
    if (write_full(fd, out.data, len) != 0)
        rc = -1;
    dh_buf_free(&out);
    return rc;
}

struct conn {
    srv *s;
    int fd;
};

static void *handler(void *arg)
{
    struct conn *cn = arg;
    srv *s = cn->s;
    int fd = cn->fd;
    free(cn);
    int now = atomic_fetch_add(&s->now, 1) + 1;
    for (int m = atomic_load(&s->max_now);
         now > m && !atomic_compare_exchange_weak(&s->max_now, &m, now);)
        ;
    if (atomic_load(&s->mode) == M_BATCH) {
        serve_batch(s, fd);
    } else {
        dh_buf f = {0};
        int r;
        while ((r = read_frame(s, fd, &f, 50)) >= 0)
            if (r > 0 && serve_one(s, fd, &f) != 0)
                break;
        dh_buf_free(&f);
    }
    atomic_fetch_sub(&s->now, 1);
    close(fd);
    return NULL;
}

static void *acceptor(void *arg)
{
    srv *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pf = {.fd = s->lfd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        struct conn *cn = fd >= 0 ? malloc(sizeof(*cn)) : NULL;
        if (cn == NULL) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        *cn = (struct conn){s, fd};
        atomic_fetch_add(&s->accepted, 1);
        pthread_mutex_lock(&s->mu);
        if (s->nh < MAX_HANDLERS && pthread_create(&s->handlers[s->nh], NULL, handler, cn) == 0)
            s->nh++;
        else {
            close(fd);
            free(cn);
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

static srv *srv_start(const char *name, int mode)
{
    srv *s = calloc(1, sizeof(*s));
    if (s == NULL || check_tmpdir() == NULL)
        abort();
    snprintf(s->path, sizeof(s->path), "%s/%s", check_tmpdir(), name);
    atomic_init(&s->mode, mode);
    pthread_mutex_init(&s->mu, NULL);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
    unlink(s->path);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(s->lfd, 16) != 0 || pthread_create(&s->acceptor, NULL, acceptor, s) != 0) {
        perror("test server");
        abort();
    }
    return s;
}

/* Stops accepting, ends every connection, and removes the socket: from the
 * client's side, the daemon went away. */
static void srv_stop(srv *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->acceptor, NULL);
    for (size_t i = 0; i < s->nh; i++)
        pthread_join(s->handlers[i], NULL);
    close(s->lfd);
    unlink(s->path);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- client helpers ---- */

static ap_sign req(const char *domain, const char *selector)
{
    static const uint8_t block[] = "from:a@example.com\r\ndkim-signature:v=1; b=";
    return (ap_sign){
        {domain, strlen(domain)}, {selector, strlen(selector)}, 1, block, sizeof(block) - 1};
}

/* The result for request domain/selector carries "sig:domain/selector". */
static int result_is(const ac_result *r, const char *domain, const char *selector)
{
    char want[600];
    int n = snprintf(want, sizeof(want), "sig:%s/%s", domain, selector);
    if (n < 0 || (size_t)n >= sizeof(want))
        return 0;
    return r->status == AP_OK && r->sig.len == strlen(want) &&
           memcmp(r->sig.data, want, r->sig.len) == 0;
}

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- cases ---- */

static void test_sign_lookup_ping(void)
{
    srv *s = srv_start("basic.sock", M_ECHO);
    ac *c = NULL;
    dh_err e = {0};
    CHECK_OK(ac_new(s->path, 2, 5000, &c, &e));
    ap_sign rq[3] = {req("example.com", "ed1"), req("example.com", "refuse"),
                     req("example.org", "rsa1")};
    ac_result res[3];
    CHECK_OK(ac_sign(c, rq, 3, res, &e));
    CHECK(result_is(&res[0], "example.com", "ed1"));
    CHECK_EQ_INT(res[1].status, AP_REFUSED);
    CHECK_STR(res[1].reason, "not yours");
    CHECK_EQ_INT(res[1].sig.len, 0);
    CHECK(result_is(&res[2], "example.org", "rsa1"));
    for (size_t i = 0; i < 3; i++)
        ac_result_clear(&res[i]);
    ac_lookup l;
    CHECK_OK(ac_lookup_domain(c, "mail.example.com", &l, &e));
    CHECK_EQ_INT(l.status, AP_OK);
    CHECK_STR(l.domain, "example.com");
    CHECK_EQ_INT(l.count, 2);
    CHECK_STR(l.sel[0].selector, "ed1");
    CHECK_EQ_INT(l.sel[0].alg, 1);
    CHECK_STR(l.sel[1].selector, "rsa1");
    CHECK_OK(ac_lookup_domain(c, "nowhere", &l, &e));
    CHECK_EQ_INT(l.status, AP_NOTFOUND);
    CHECK_STR(l.reason, "nothing signs");
    uint8_t st = 99;
    CHECK_OK(ac_ping(c, &st, &e));
    CHECK_EQ_INT(st, AP_OK);
    /* One connection served all of it, one call after the other. */
    CHECK_EQ_INT(atomic_load(&s->accepted), 1);
    ac_free(c);
    srv_stop(s);
}

static void test_out_of_order(void)
{
    srv *s = srv_start("batch.sock", M_BATCH);
    ac *c = NULL;
    dh_err e = {0};
    CHECK_OK(ac_new(s->path, 1, 10000, &c, &e));
    enum { N = 150 };
    static ap_sign rq[N];
    static ac_result res[N];
    static char names[N][16];
    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "s%zu", i);
        rq[i] = req("example.com", names[i]);
    }
    /* 5: answered in reverse after the server's 100 ms pause. */
    CHECK_OK(ac_sign(c, rq, 5, res, &e));
    for (size_t i = 0; i < 5; i++) {
        CHECK(result_is(&res[i], "example.com", names[i]));
        ac_result_clear(&res[i]);
    }
    /* 150: never more than 64 unanswered on the connection (PROTOCOL.md). */
    int rc = ac_sign(c, rq, N, res, &e);
    if (rc != DH_OK)
        check_fail(__FILE__, __LINE__, "ac_sign: %s", e.msg);
    for (size_t i = 0; rc == DH_OK && i < N; i++) {
        if (!result_is(&res[i], "example.com", names[i]))
            check_fail(__FILE__, __LINE__, "result %zu is not for its request", i);
        ac_result_clear(&res[i]);
    }
    CHECK_EQ_INT(atomic_load(&s->max_outstanding), AP_MAX_INFLIGHT);
    CHECK_EQ_INT(atomic_load(&s->accepted), 1);
    ac_free(c);
    srv_stop(s);
}

static void test_close_mid_reply(void)
{
    srv *s = srv_start("mid.sock", M_CLOSE_MID);
    ac *c = NULL;
    dh_err e = {0};
    CHECK_OK(ac_new(s->path, 1, 5000, &c, &e));
    ap_sign rq = req("example.com", "ed1");
    ac_result res = {.status = 77};
    CHECK_EQ_INT(ac_sign(c, &rq, 1, &res, &e), DH_EIO);
    CHECK(strstr(e.msg, "closed the connection") != NULL);
    CHECK_EQ_INT(res.status, 77); /* results are written only on success */
    /* The next call reconnects by itself and is served. */
    CHECK_OK(ac_sign(c, &rq, 1, &res, &e));
    CHECK(result_is(&res, "example.com", "ed1"));
    ac_result_clear(&res);
    CHECK_EQ_INT(atomic_load(&s->accepted), 2);
    ac_free(c);
    srv_stop(s);
}

static void test_timeout(void)
{
    srv *s = srv_start("silent.sock", M_SILENT);
    ac *c = NULL;
    dh_err e = {0};
    CHECK_OK(ac_new(s->path, 1, 300, &c, &e));
    ap_sign rq = req("example.com", "ed1");
    ac_result res;
    long long t0 = ms_now();
    CHECK_EQ_INT(ac_sign(c, &rq, 1, &res, &e), DH_EIO);
    long long took = ms_now() - t0;
    CHECK(took >= 250 && took < 3000);
    CHECK(strstr(e.msg, "within 300 ms") != NULL);
    uint8_t st;
    CHECK_EQ_INT(ac_ping(c, &st, &e), DH_EIO);
    /* The timed-out connection was not pooled: each call had its own. */
    atomic_store(&s->mode, M_ECHO);
    CHECK_OK(ac_ping(c, &st, &e));
    CHECK_EQ_INT(atomic_load(&s->accepted), 3);
    ac_free(c);
    srv_stop(s);
}

static void test_daemon_restart(void)
{
    srv *s = srv_start("restart.sock", M_ECHO);
    char path[108];
    memcpy(path, s->path, sizeof(path));
    ac *c = NULL;
    dh_err e = {0};
    uint8_t st;
    CHECK_OK(ac_new(path, 2, 2000, &c, &e));
    CHECK_OK(ac_ping(c, &st, &e));
    /* Restarted between two calls: the pooled connection is dead, and the
     * next call is made on a fresh one without the caller seeing anything. */
    srv_stop(s);
    s = srv_start("restart.sock", M_ECHO);
    CHECK_OK(ac_ping(c, &st, &e));
    CHECK_EQ_INT(atomic_load(&s->accepted), 1);
    /* Gone: a clear error, then back: served again. */
    srv_stop(s);
    CHECK_EQ_INT(ac_ping(c, &st, &e), DH_EIO);
    CHECK(strstr(e.msg, "cannot connect to dkimhsmd") != NULL);
    s = srv_start("restart.sock", M_ECHO);
    CHECK_OK(ac_ping(c, &st, &e));
    ac_free(c);
    srv_stop(s);
}

static void test_unreachable(void)
{
    ac *c = NULL;
    dh_err e = {0};
    char path[200];
    snprintf(path, sizeof(path), "%s/nobody.sock", check_tmpdir());
    CHECK_OK(ac_new(path, 1, 1000, &c, &e));
    ac_lookup l = {.status = 77};
    CHECK_EQ_INT(ac_lookup_domain(c, "example.com", &l, &e), DH_EIO);
    CHECK(strstr(e.msg, "nobody.sock") != NULL);
    CHECK_EQ_INT(l.status, 77);
    ac_free(c);
}

static void test_bad_replies(void)
{
    srv *s = srv_start("bad.sock", M_BAD_ID);
    ac *c = NULL;
    dh_err e = {0};
    uint8_t st = 77;
    CHECK_OK(ac_new(s->path, 1, 2000, &c, &e));
    CHECK_EQ_INT(ac_ping(c, &st, &e), DH_EIO);
    CHECK(strstr(e.msg, "unexpected reply") != NULL);
    CHECK_EQ_INT(st, 77);
    atomic_store(&s->mode, M_ERROR);
    CHECK_EQ_INT(ac_ping(c, &st, &e), DH_EIO);
    CHECK(strstr(e.msg, "cannot parse this") != NULL);
    atomic_store(&s->mode, M_ECHO);
    CHECK_OK(ac_ping(c, &st, &e));
    CHECK_EQ_INT(atomic_load(&s->accepted), 3); /* no failed connection was reused */
    ac_free(c);
    srv_stop(s);
}

static void test_bad_arguments(void)
{
    ac *c = NULL;
    char longpath[200];
    memset(longpath, 'p', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    CHECK_EQ_INT(ac_new(longpath, 1, 1000, &c, NULL), DH_EINVAL);
    CHECK_EQ_INT(ac_new("/x", 0, 1000, &c, NULL), DH_EINVAL);
    CHECK_EQ_INT(ac_new("/x", 1, 0, &c, NULL), DH_EINVAL);
    CHECK(c == NULL);
    srv *s = srv_start("args.sock", M_ECHO);
    dh_err e = {0};
    CHECK_OK(ac_new(s->path, 1, 1000, &c, &e));
    char name[300];
    memset(name, 'a', 256);
    name[256] = '\0';
    ap_sign rq = req(name, "s1");
    ac_result res;
    CHECK_EQ_INT(ac_sign(c, &rq, 1, &res, &e), DH_EINVAL);
    ac_lookup l;
    CHECK_EQ_INT(ac_lookup_domain(c, name, &l, &e), DH_EINVAL);
    CHECK_EQ_INT(atomic_load(&s->accepted), 0); /* nothing was sent */
    ac_free(c);
    srv_stop(s);
}

struct worker {
    ac *c;
    int id, failures;
};

static void *worker(void *arg)
{
    struct worker *w = arg;
    char sel[2][32];
    snprintf(sel[0], sizeof(sel[0]), "ed-%d", w->id);
    snprintf(sel[1], sizeof(sel[1]), "rsa-%d", w->id);
    for (int i = 0; i < 40; i++) {
        ap_sign rq[2] = {req("example.com", sel[0]), req("example.net", sel[1])};
        ac_result res[2];
        dh_err e = {0};
        if (ac_sign(w->c, rq, 2, res, &e) != DH_OK) {
            fprintf(stderr, "worker %d: %s\n", w->id, e.msg);
            w->failures++;
            continue;
        }
        if (!result_is(&res[0], "example.com", sel[0]) ||
            !result_is(&res[1], "example.net", sel[1]))
            w->failures++;
        ac_result_clear(&res[0]);
        ac_result_clear(&res[1]);
        ac_lookup l;
        if (i % 8 == 0 && (ac_lookup_domain(w->c, "example.com", &l, &e) != DH_OK || l.count != 2))
            w->failures++;
    }
    return NULL;
}

static void test_threads_share_pool(void)
{
    srv *s = srv_start("threads.sock", M_ECHO);
    ac *c = NULL;
    dh_err e = {0};
    CHECK_OK(ac_new(s->path, 2, 10000, &c, &e));
    enum { T = 8 };
    pthread_t th[T];
    struct worker w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){c, i, 0};
        CHECK_OK(pthread_create(&th[i], NULL, worker, &w[i]));
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(w[i].failures, 0);
    }
    /* Never more than 2 connections, and none had to be replaced. */
    CHECK(atomic_load(&s->max_now) <= 2);
    CHECK(atomic_load(&s->accepted) <= 2);
    ac_free(c);
    srv_stop(s);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"sign_lookup_ping", test_sign_lookup_ping},
        {"out_of_order", test_out_of_order},
        {"close_mid_reply", test_close_mid_reply},
        {"timeout", test_timeout},
        {"daemon_restart", test_daemon_restart},
        {"unreachable", test_unreachable},
        {"bad_replies", test_bad_replies},
        {"bad_arguments", test_bad_arguments},
        {"threads_share_pool", test_threads_share_pool},
        {NULL, NULL},
    };
    return check_run(argc, argv, cases);
}
