#include "daemon/server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/proto.h"

/* Replies a client may leave unread before we stop handling its requests. */
#define OUT_MAX (1u << 20)

struct conn {
    srv *s;
    struct bufferevent *bev; /* NULL once the peer is gone */
    uid_t uid;
    unsigned in_flight;
    int closing; /* close once the output is flushed */
    struct conn *prev, *next;
};

struct srv {
    struct event_base *base;
    struct evconnlistener *listener;
    struct event *wake;
    hd *handler;
    wp *pool;
    char *path;
    struct conn *conns;
    size_t nconns, in_flight;
};

static void conn_free(struct conn *c)
{
    srv *s = c->s;
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c);
}

/* The peer is gone or must go: free now, or when its last job comes back. */
static void conn_drop(struct conn *c)
{
    if (c->bev != NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->in_flight == 0)
        conn_free(c);
}

/* A reply goes straight to the socket when nothing waits before it: queued
 * in the bufferevent, it would cost two epoll_ctl calls (EPOLLOUT on, then
 * off) and a loop iteration per reply. What the socket does not take, and
 * any error, is left to the bufferevent, which reports errors to on_event. */
static void conn_send(struct conn *c, dh_buf *reply)
{
    if (c->bev != NULL && reply->len > 0) {
        struct evbuffer *out = bufferevent_get_output(c->bev);
        size_t off = 0;
        if (evbuffer_get_length(out) == 0) {
            ssize_t w = send(bufferevent_getfd(c->bev), reply->data, reply->len,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
            off = w > 0 ? (size_t)w : 0;
        }
        if (off < reply->len && evbuffer_add(out, reply->data + off, reply->len - off) != 0)
            dh_log(DH_LOG_ERR, "agent: cannot queue a reply (out of memory)");
    }
    dh_buf_reset(reply);
}

/* Above AP_MAX_INFLIGHT per connection a SIGN is answered TEMPFAIL at once. */
static int over_limit(struct conn *c, const uint8_t *frame, size_t len, dh_buf *reply)
{
    if (c->in_flight < AP_MAX_INFLIGHT || len < 9 || frame[4] != AP_SIGN)
        return 0;
    uint32_t id =
        (uint32_t)frame[5] << 24 | (uint32_t)frame[6] << 16 | (uint32_t)frame[7] << 8 | frame[8];
    ap_sign_reply r = {.status = AP_TEMPFAIL, .reason = {"too many requests in flight", 27}};
    if (ap_encode_sign_reply(reply, id, &r) != DH_OK)
        dh_buf_reset(reply);
    return 1;
}

/* Handles one whole frame; returns 0 when the connection must close. */
static int conn_frame(struct conn *c, const uint8_t *frame, size_t len, dh_buf *reply)
{
    if (over_limit(c, frame, len, reply))
        return 1;
    enum hd_result r = hd_handle(c->s->handler, c->uid, c, frame, len, reply);
    if (r == HD_QUEUED) {
        c->in_flight++;
        c->s->in_flight++;
    }
    return r != HD_CLOSE;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    dh_buf reply = {0};
    int keep = 1;
    while (keep && !c->closing && evbuffer_get_length(bufferevent_get_output(bev)) < OUT_MAX) {
        uint8_t head[4];
        size_t have = evbuffer_get_length(in), need = 0;
        dh_err e = {0};
        if (have < 4)
            break;
        evbuffer_copyout(in, head, 4);
        if (ap_frame_size(head, 4, &need, &e) != DH_OK) {
            /* Length checked before anything is allocated (STYLE.md). */
            if (ap_encode_error(&reply, 0, e.msg) != DH_OK)
                dh_buf_reset(&reply);
            keep = 0;
            break;
        }
        if (have < need)
            break;
        keep = conn_frame(c, evbuffer_pullup(in, (ssize_t)need), need, &reply);
        evbuffer_drain(in, need);
        conn_send(c, &reply);
    }
    conn_send(c, &reply);
    dh_buf_free(&reply);
    if (!keep) {
        c->closing = 1;
        bufferevent_disable(bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_drop(c);
    }
}

/* Output drained: finish closing, or resume frames held back by OUT_MAX. */
static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->closing)
        conn_drop(c);
    else if (evbuffer_get_length(bufferevent_get_input(bev)) >= 4)
        on_read(bev, c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_drop(arg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    srv *s = arg;
    (void)l;
    (void)sa;
    (void)len;
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    /* Who is asking is checked on every connection (ssh-agent), and every
     * request is then judged against that uid. */
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
        dh_log(DH_LOG_ERR, "agent: SO_PEERCRED failed: %s", strerror(errno));
        close(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    struct bufferevent *bev = c ? bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (bev == NULL) {
        free(c);
        close(fd);
        return;
    }
    *c = (struct conn){.s = s, .bev = bev, .uid = cred.uid, .next = s->conns};
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    bufferevent_setcb(bev, on_read, on_write, on_event, c);
    /* Back-pressure: on_read stops taking frames while replies pile up
     * unread (OUT_MAX), and libevent stops reading the socket once this much
     * input waits - room for one whole frame, so no request can stall. */
    bufferevent_setwatermark(bev, EV_READ, 0, 2 * (AP_MAX_FRAME + 4));
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void job_done(wp_job *job, void *arg)
{
    srv *s = arg;
    dh_buf reply = {0};
    struct conn *c = hd_complete(s->handler, job, &reply);
    s->in_flight--;
    c->in_flight--;
    conn_send(c, &reply);
    dh_buf_free(&reply);
    if (c->bev == NULL && c->in_flight == 0)
        conn_free(c);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    srv *s = arg;
    (void)fd;
    (void)what;
    wp_drain(s->pool, job_done, s);
}

static int bind_socket(const char *path, int *out, dh_err *e)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path))
        return dh_err_set(e, DH_ECONFIG, "agent_socket %s: path too long", path);
    strcpy(sun.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return dh_err_set(e, DH_ECONFIG, "agent_socket %s exists and is not a socket", path);
        unlink(path); /* a previous run's socket */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    mode_t old = umask(0117); /* 0660: owner and group */
    int rc = fd >= 0 && bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 && listen(fd, 128) == 0;
    umask(old);
    if (!rc) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return dh_err_set(e, DH_EIO, "agent_socket %s: %s", path, strerror(err));
    }
    *out = fd;
    return DH_OK;
}

int srv_new(struct event_base *base, const char *path, hd *handler, wp *pool, srv **out, dh_err *e)
{
    *out = NULL;
    int fd = -1;
    int rc = bind_socket(path, &fd, e);
    if (rc != DH_OK)
        return rc;
    srv *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->path = strdup(path)) == NULL) {
        free(s);
        close(fd);
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    s->base = base;
    s->handler = handler;
    s->pool = pool;
    s->listener = evconnlistener_new(base, on_accept, s, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    s->wake = event_new(base, wp_wake_fd(pool), EV_READ | EV_PERSIST, on_wake, s);
    if (s->listener == NULL || s->wake == NULL || event_add(s->wake, NULL) != 0) {
        if (s->listener == NULL)
            close(fd);
        srv_free(s);
        return dh_err_set(e, DH_EIO, "agent_socket %s: cannot start listening", path);
    }
    *out = s;
    return DH_OK;
}

void srv_stop_accepting(srv *s)
{
    if (s->listener != NULL) {
        evconnlistener_free(s->listener);
        s->listener = NULL;
        unlink(s->path);
    }
}

size_t srv_in_flight(const srv *s)
{
    return s->in_flight;
}

size_t srv_connections(const srv *s)
{
    return s->nconns;
}

void srv_free(srv *s)
{
    if (s == NULL)
        return;
    srv_stop_accepting(s);
    if (s->wake != NULL)
        event_free(s->wake);
    /* The pool is stopped: hand back what it finished so no job leaks. */
    wp_drain(s->pool, job_done, s);
    while (s->conns != NULL) {
        s->conns->in_flight = 0;
        conn_drop(s->conns);
    }
    free(s->path);
    free(s);
}
