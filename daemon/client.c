/*
 * client.c - the agent protocol's client side (client.h): a bounded pool of
 * UNIX-socket connections to dkimhsmd shared by many threads.
 *
 * Sockets stay blocking (a connect waits for a slot in the daemon's backlog,
 * bounded by SO_SNDTIMEO). Sends are MSG_DONTWAIT and go out before any poll,
 * since the socket is almost always writable. Sending and receiving
 * interleave behind poll(): replies are read while requests still go out, and
 * at most AP_MAX_INFLIGHT requests are unanswered at a time, so a long batch
 * never fills both directions' buffers and never meets the daemon's
 * per-connection limit. Once everything is sent, the common case, the reply
 * is waited for in a blocking recv bounded by SO_RCVTIMEO instead of a poll
 * and a recv: on a busy gateway every system call per message counts
 * (docs/PERFORMANCE.md). One deadline bounds the whole call; the blocking
 * wait may pass it by at most BLOCK_SLACK_MS.
 *
 * A connection that saw anything wrong is closed, never pooled again. An idle
 * one is not probed before reuse (a system call per call): one the daemon
 * dropped when it restarted fails before any reply, and the call is made once
 * more on a fresh connection.
 */
#include "daemon/client.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 4096
#define BLOCK_SLACK_MS 1000

struct ac {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    unsigned max_conns, timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a connection went idle or was closed */
    int *idle;         /* max_conns slots, nidle used */
    unsigned nidle, nopen;
    uint32_t next_id;
};

/* One call's requests and how its replies are taken in. */
struct xchg {
    const uint8_t *req; /* every request frame, back to back */
    const size_t *ends; /* ends[i]: offset just past frame i */
    size_t n;
    uint32_t id0; /* request i has id id0 + i */
    uint8_t want; /* reply type */
    int (*on_reply)(void *ctx, size_t i, const ap_msg *m, dh_err *e);
    void *ctx;
};

/* How a run on one connection went, beyond its status. */
struct run_state {
    size_t sent, replies;
    int got_bytes; /* any reply byte arrived */
    int lost;      /* the peer was gone (EOF, EPIPE, ECONNRESET) */
    unsigned char *seen;
    dh_buf in;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = now_ms();
    if (now >= deadline)
        return 0;
    return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

int ac_new(const char *socket_path, unsigned max_conns, unsigned timeout_ms, ac **out, dh_err *e)
{
    *out = NULL;
    ac *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    if (strlen(socket_path) >= sizeof(c->path) || *socket_path == '\0' || max_conns == 0 ||
        timeout_ms == 0) {
        free(c);
        return dh_err_set(e, DH_EINVAL,
                          "agent client: bad socket path '%s', %u connections or %u ms",
                          socket_path, max_conns, timeout_ms);
    }
    strcpy(c->path, socket_path);
    c->max_conns = max_conns;
    c->timeout_ms = timeout_ms;
    c->next_id = 1;
    pthread_condattr_t ca;
    int ok = (c->idle = calloc(max_conns, sizeof(int))) != NULL;
    if (ok && pthread_condattr_init(&ca) == 0) {
        ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
             pthread_cond_init(&c->cv, &ca) == 0;
        pthread_condattr_destroy(&ca);
    } else {
        ok = 0;
    }
    if (!ok || pthread_mutex_init(&c->mu, NULL) != 0) {
        if (ok)
            pthread_cond_destroy(&c->cv);
        free(c->idle);
        free(c);
        return dh_err_set(e, DH_ENOMEM, "agent client: cannot set up the connection pool");
    }
    *out = c;
    return DH_OK;
}

void ac_free(ac *c)
{
    if (c == NULL)
        return;
    for (unsigned i = 0; i < c->nidle; i++)
        close(c->idle[i]);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->idle);
    free(c);
}

void ac_result_clear(ac_result *r)
{
    dh_buf_free(&r->sig);
    r->status = AP_OK;
    r->reason[0] = '\0';
}

/* ---- the pool ---- */

static int open_conn(const ac *c, uint64_t deadline, int *fd_out, dh_err *e)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, c->path, sizeof(c->path));
    int ms = remaining_ms(deadline);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    struct timeval rtv = {.tv_sec = c->timeout_ms / 1000, .tv_usec = (c->timeout_ms % 1000) * 1000};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return dh_err_set(e, DH_EIO, "agent client: socket: %s", strerror(errno));
    /* A blocking connect waits while the daemon's backlog is full; SO_SNDTIMEO
     * bounds that wait on Linux. SO_RCVTIMEO bounds the blocking reply wait. */
    if (ms == 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rtv, sizeof(rtv)) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int err = ms == 0 ? ETIMEDOUT : errno;
        close(fd);
        return dh_err_set(e, DH_EIO, "cannot connect to dkimhsmd at %s: %s", c->path,
                          strerror(err));
    }
    *fd_out = fd;
    return DH_OK;
}

static void deadline_ts(uint64_t deadline, struct timespec *ts)
{
    ts->tv_sec = (time_t)(deadline / 1000u);
    ts->tv_nsec = (long)(deadline % 1000u) * 1000000L;
}

/* Closes every idle connection: once one turned out dead, the daemon
 * restarted, and the others date from before that too. */
static void drop_idle(ac *c)
{
    pthread_mutex_lock(&c->mu);
    while (c->nidle > 0) {
        close(c->idle[--c->nidle]);
        c->nopen--;
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Takes an idle connection (unless fresh) or opens one; beyond max_conns,
 * waits for one to come back, until the deadline. *reused says which. */
static int acquire(ac *c, uint64_t deadline, int fresh, int *fd_out, int *reused, dh_err *e)
{
    struct timespec ts;
    deadline_ts(deadline, &ts);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        /* An idle connection is not probed first (a syscall per call): one
         * the daemon dropped fails before any reply, and call() retries. */
        if (c->nidle > 0 && !fresh) {
            *fd_out = c->idle[--c->nidle];
            pthread_mutex_unlock(&c->mu);
            *reused = 1;
            return DH_OK;
        }
        if (c->nopen < c->max_conns)
            break;
        if (c->nidle > 0) { /* fresh, and the pool is full: make room */
            close(c->idle[--c->nidle]);
            c->nopen--;
            continue;
        }
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) {
            pthread_mutex_unlock(&c->mu);
            return dh_err_set(e, DH_EIO, "all %u connections to dkimhsmd stayed busy for %u ms",
                              c->max_conns, c->timeout_ms);
        }
    }
    c->nopen++; /* the slot is ours while we connect */
    pthread_mutex_unlock(&c->mu);
    int rc = open_conn(c, deadline, fd_out, e);
    if (rc != DH_OK) {
        pthread_mutex_lock(&c->mu);
        c->nopen--;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    *reused = 0;
    return DH_OK;
}

/* A connection goes back to the pool only after a clean call. */
static void release(ac *c, int fd, int ok)
{
    pthread_mutex_lock(&c->mu);
    if (ok) {
        c->idle[c->nidle++] = fd;
    } else {
        close(fd);
        c->nopen--;
    }
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* n consecutive request ids, never 0 (an ERROR about an unreadable request
 * carries id 0) and never wrapping inside one call. */
static uint32_t take_ids(ac *c, size_t n)
{
    pthread_mutex_lock(&c->mu);
    if (c->next_id == 0 || c->next_id > UINT32_MAX - n)
        c->next_id = 1;
    uint32_t id0 = c->next_id;
    c->next_id += (uint32_t)n;
    pthread_mutex_unlock(&c->mu);
    return id0;
}

/* ---- one exchange on one connection ---- */

static int take_frame(const struct xchg *x, struct run_state *st, const uint8_t *f, size_t len,
                      dh_err *e)
{
    ap_msg m;
    if (ap_decode(f, len, &m, NULL, e) != DH_OK) {
        dh_err_prefix(e, "malformed reply from dkimhsmd");
        return dh_err_set_code(e, DH_EIO);
    }
    if (m.type == AP_ERROR)
        return dh_err_set(e, DH_EIO, "dkimhsmd could not parse our request: %.*s",
                          (int)m.u.error_reason.len, m.u.error_reason.p);
    size_t i = (uint32_t)(m.id - x->id0);
    if (m.type != x->want || i >= x->n || st->seen[i])
        return dh_err_set(e, DH_EIO, "unexpected reply from dkimhsmd (type 0x%02x, id %lu)",
                          (unsigned)m.type, (unsigned long)m.id);
    st->seen[i] = 1;
    st->replies++;
    return x->on_reply(x->ctx, i, &m, e);
}

/* Reads what is there (or, with block, waits up to SO_RCVTIMEO for it) and
 * hands over every whole frame. A frame's announced length is checked before
 * the buffer grows for it. */
static int read_some(int fd, const ac *c, const struct xchg *x, struct run_state *st, int block,
                     dh_err *e)
{
    if (dh_buf_reserve(&st->in, READ_CHUNK) != DH_OK)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    ssize_t r = recv(fd, st->in.data + st->in.len, READ_CHUNK, block ? 0 : MSG_DONTWAIT);
    if (r < 0 && block && (errno == EAGAIN || errno == EWOULDBLOCK))
        return dh_err_set(e, DH_EIO, "no reply from dkimhsmd at %s within %u ms", c->path,
                          c->timeout_ms);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return DH_OK;
    if (r <= 0) {
        st->lost = r == 0 || errno == ECONNRESET;
        return dh_err_set(e, DH_EIO, "dkimhsmd closed the connection%s%s", r == 0 ? "" : ": ",
                          r == 0 ? "" : strerror(errno));
    }
    st->in.len += (size_t)r;
    st->got_bytes = 1;
    size_t off = 0, flen;
    int rc;
    while ((rc = ap_frame_size(st->in.data + off, st->in.len - off, &flen, e)) == DH_OK &&
           flen > 0 && flen <= st->in.len - off) {
        if ((rc = take_frame(x, st, st->in.data + off, flen, e)) != DH_OK)
            return rc;
        off += flen;
    }
    if (rc != DH_OK) {
        dh_err_prefix(e, "malformed reply from dkimhsmd");
        return dh_err_set_code(e, DH_EIO);
    }
    memmove(st->in.data, st->in.data + off, st->in.len - off);
    st->in.len -= off;
    return DH_OK;
}

static int send_some(int fd, const struct xchg *x, struct run_state *st, size_t limit, dh_err *e)
{
    ssize_t w = send(fd, x->req + st->sent, limit - st->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return DH_OK;
    if (w < 0) {
        st->lost = errno == EPIPE || errno == ECONNRESET;
        return dh_err_set(e, DH_EIO, "sending to dkimhsmd failed: %s", strerror(errno));
    }
    st->sent += (size_t)w;
    return DH_OK;
}

/* Bytes that may be sent: at most AP_MAX_INFLIGHT requests unanswered. */
static size_t send_limit(const struct xchg *x, const struct run_state *st)
{
    size_t window = st->replies + AP_MAX_INFLIGHT < x->n ? st->replies + AP_MAX_INFLIGHT : x->n;
    return window > 0 ? x->ends[window - 1] : 0;
}

static int run(int fd, const ac *c, const struct xchg *x, uint64_t deadline, struct run_state *st,
               dh_err *e)
{
    /* The socket is almost always writable: send before the first poll. */
    int rc0 = send_some(fd, x, st, send_limit(x, st), e);
    if (rc0 != DH_OK)
        return rc0;
    while (st->replies < x->n) {
        size_t limit = send_limit(x, st);
        int ms = remaining_ms(deadline), rc = DH_OK;
        if (st->sent == x->ends[x->n - 1] && ms + BLOCK_SLACK_MS >= (int)c->timeout_ms) {
            if ((rc = read_some(fd, c, x, st, 1, e)) != DH_OK)
                return rc;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (st->sent < limit ? POLLOUT : 0)};
        int k = ms > 0 ? poll(&p, 1, ms) : 0;
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return dh_err_set(e, DH_EIO, "poll: %s", strerror(errno));
        if (k == 0)
            return dh_err_set(e, DH_EIO, "no reply from dkimhsmd at %s within %u ms", c->path,
                              c->timeout_ms);
        /* Read first: a daemon that sends ERROR and closes says why. */
        if (p.revents & (POLLIN | POLLHUP | POLLERR))
            rc = read_some(fd, c, x, st, 0, e);
        if (rc == DH_OK && (p.revents & POLLOUT))
            rc = send_some(fd, x, st, limit, e);
        if (rc != DH_OK)
            return rc;
    }
    if (st->in.len != 0)
        return dh_err_set(e, DH_EIO, "dkimhsmd sent more than the replies asked for");
    return DH_OK;
}

/* Runs x on a pooled connection. A pooled connection the daemon dropped (it
 * restarted) is not an answer: when nothing came back, the idle connections,
 * as old as that one, are closed and the call is made once more on a fresh
 * connection. */
static int call(ac *c, const struct xchg *x, dh_err *e)
{
    uint64_t deadline = now_ms() + c->timeout_ms;
    struct run_state st = {0};
    int rc = DH_OK;
    if ((st.seen = calloc(x->n, 1)) == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = -1, reused = 0;
        rc = acquire(c, deadline, attempt > 0, &fd, &reused, e);
        if (rc != DH_OK)
            break;
        st.sent = st.replies = 0;
        st.got_bytes = st.lost = 0;
        dh_buf_reset(&st.in);
        rc = run(fd, c, x, deadline, &st, e);
        release(c, fd, rc == DH_OK);
        if (rc == DH_OK || !reused || !st.lost || st.got_bytes)
            break;
        drop_idle(c);
    }
    free(st.seen);
    dh_buf_free(&st.in);
    return rc;
}

/* ---- the calls ---- */

static void copy_str(char *dst, size_t cap, ap_str s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n > 0)
        memcpy(dst, s.p, n);
    dst[n] = '\0';
}

static int on_sign(void *ctx, size_t i, const ap_msg *m, dh_err *e)
{
    ac_result *r = (ac_result *)ctx + i;
    const ap_sign_reply *s = &m->u.sign_reply;
    r->status = s->status;
    if (s->status != AP_OK) {
        copy_str(r->reason, sizeof(r->reason), s->reason);
        return DH_OK;
    }
    if (dh_buf_append(&r->sig, s->sig, s->sig_len) != DH_OK)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    return DH_OK;
}

static int encode_signs(ac *c, const ap_sign *reqs, size_t n, dh_buf *req, size_t *ends,
                        uint32_t *id0, dh_err *e)
{
    *id0 = take_ids(c, n);
    for (size_t i = 0; i < n; i++) {
        int rc = ap_encode_sign(req, *id0 + (uint32_t)i, &reqs[i]);
        if (rc != DH_OK)
            return dh_err_set(e, rc, "SIGN request %zu for %.*s cannot be sent: %s", i + 1,
                              reqs[i].domain.len <= AP_MAX_NAME ? (int)reqs[i].domain.len : 0,
                              reqs[i].domain.p ? reqs[i].domain.p : "",
                              rc == DH_ENOMEM ? "out of memory"
                                              : "a name over 255 bytes or the frame over 1 MiB");
        ends[i] = req->len;
    }
    return DH_OK;
}

int ac_sign(ac *c, const ap_sign *reqs, size_t n, ac_result *results, dh_err *e)
{
    if (n == 0)
        return DH_OK;
    dh_buf req = {0};
    size_t *ends = calloc(n, sizeof(*ends));
    ac_result *tmp = calloc(n, sizeof(*tmp));
    int rc = DH_OK;
    if (ends == NULL || tmp == NULL)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    struct xchg x = {.ends = ends, .n = n, .want = AP_SIGN_REPLY, .on_reply = on_sign, .ctx = tmp};
    if (rc == DH_OK)
        rc = encode_signs(c, reqs, n, &req, ends, &x.id0, e);
    x.req = req.data;
    if (rc == DH_OK)
        rc = call(c, &x, e);
    for (size_t i = 0; tmp != NULL && i < n; i++) {
        if (rc == DH_OK)
            results[i] = tmp[i]; /* the signature buffer moves to the caller */
        else
            ac_result_clear(&tmp[i]);
    }
    free(tmp);
    free(ends);
    dh_buf_free(&req);
    return rc;
}

static int on_lookup(void *ctx, size_t i, const ap_msg *m, dh_err *e)
{
    ac_lookup *l = ctx;
    const ap_lookup_reply *r = &m->u.lookup_reply;
    l->status = r->status;
    if (r->status != AP_OK) {
        copy_str(l->reason, sizeof(l->reason), r->reason);
        return DH_OK;
    }
    copy_str(l->domain, sizeof(l->domain), r->domain);
    l->count = r->count;
    for (size_t k = 0; k < r->count; k++) {
        copy_str(l->sel[k].selector, sizeof(l->sel[k].selector), r->sel[k].selector);
        l->sel[k].alg = r->sel[k].alg;
    }
    return DH_OK;
}

/* One request, one reply. */
static int call_one(ac *c, dh_buf *req, uint32_t id, uint8_t want,
                    int (*on_reply)(void *, size_t, const ap_msg *, dh_err *), void *ctx, dh_err *e)
{
    size_t end = req->len;
    struct xchg x = {.req = req->data,
                     .ends = &end,
                     .n = 1,
                     .id0 = id,
                     .want = want,
                     .on_reply = on_reply,
                     .ctx = ctx};
    return call(c, &x, e);
}

int ac_lookup_domain(ac *c, const char *domain, ac_lookup *out, dh_err *e)
{
    ac_lookup l;
    memset(&l, 0, sizeof(l));
    dh_buf req = {0};
    uint32_t id = take_ids(c, 1);
    int rc = ap_encode_lookup(&req, id, domain);
    if (rc != DH_OK)
        rc = dh_err_set(e, rc, "LOOKUP cannot be sent: %s",
                        rc == DH_ENOMEM ? "out of memory" : "the domain is over 255 bytes");
    if (rc == DH_OK)
        rc = call_one(c, &req, id, AP_LOOKUP_REPLY, on_lookup, &l, e);
    dh_buf_free(&req);
    if (rc == DH_OK)
        *out = l;
    return rc;
}

static int on_pong(void *ctx, size_t i, const ap_msg *m, dh_err *e)
{
    *(uint8_t *)ctx = m->u.pong_status;
    return DH_OK;
}

int ac_ping(ac *c, uint8_t *status, dh_err *e)
{
    dh_buf req = {0};
    uint8_t st = AP_TEMPFAIL;
    uint32_t id = take_ids(c, 1);
    int rc = ap_encode_ping(&req, id);
    if (rc != DH_OK)
        rc = dh_err_set(e, rc, "out of memory");
    if (rc == DH_OK)
        rc = call_one(c, &req, id, AP_PONG, on_pong, &st, e);
    dh_buf_free(&req);
    if (rc == DH_OK)
        *status = st;
    return rc;
}
