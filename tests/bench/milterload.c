/*
 * milterload - a milter load generator that plays the MTA side of the protocol.
 *
 * It speaks milter protocol version 6 the way Postfix does: OPTNEG, CONNECT and
 * HELO once per connection, then many transactions on that connection (MAIL,
 * RCPT, DATA, HEADER..., EOH, BODY chunks, BODYEOB, the filter's changes and its
 * verdict), each one closed by an ABORT. It honours what the filter negotiated:
 * steps it does not want, steps it will not reply to (SMFIP_NR_*, so those
 * packets are batched and nothing is awaited), and header values with their
 * leading space (SMFIP_HDR_LEADSPC). Every K-th accepted message can be written
 * out with the filter's header changes applied where it asked, for a DKIM
 * verifier to judge.
 *
 * Bounded by design: it stops after -n messages or -t seconds (whichever comes
 * first), every read, write and connect waits at most --timeout seconds, a
 * worker gives up after repeated connection failures, and it only connects to a
 * UNIX socket or to 127.0.0.1.
 *
 * The wire constants come from libmilter's own headers (mfdef.h, mfapi.h); the
 * library itself is not linked.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#define ML_VERSION 6 /* the protocol version Postfix and sendmail 8.14+ speak */
/* We honour every action and every protocol step / no-reply bit, so we offer them all. */
#define ML_OFFER_ACTS ((uint32_t)SMFI_CURR_ACTS)
#define ML_OFFER_PROT ((uint32_t)SMFI_CURR_PROT)
/* A reply longer than this is refused before anything is allocated: 1 MB is the
 * largest data size a filter may negotiate (SMFIP_MDS_1M). */
#define ML_MAX_PACKET (1024u * 1024u + 64u)
#define ML_FLUSH_AT (256u * 1024u) /* batched packets are written out beyond this */
#define ML_MAX_CONNS 1024
#define ML_MAX_FILE (64u * 1024u * 1024u)
#define ML_MAX_GEN_SIZE (64u * 1024u * 1024u)
#define ML_MAX_CONN_FAILURES 20 /* consecutive, per worker: then it stops */
#define ML_MAX_ERR_PRINTED 10
#define ML_RCPT "rcpt@example.net"

/* ---------------------------------------------------------------- buffers */

struct buf {
    char *p;
    size_t len, cap;
};

/* Out of memory in a load generator is fatal, as in Postfix's mymalloc(). */
static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (q == NULL) {
        fprintf(stderr, "milterload: out of memory\n");
        exit(1);
    }
    return q;
}

static void buf_reserve(struct buf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 256;

    if (more > SIZE_MAX / 4 - b->len) {
        fprintf(stderr, "milterload: buffer too large\n");
        exit(1);
    }
    if (b->len + more <= b->cap)
        return;
    while (cap < b->len + more)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (n > 0)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void buf_adds(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static void put_u32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static uint32_t get_u32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;

    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ configuration */

struct mailmsg;

static struct config {
    const char *target; /* as given, for messages */
    int is_unix;
    struct sockaddr_un sun;
    struct sockaddr_in sin;
    unsigned conns;
    uint64_t max_msgs; /* 0: no count limit */
    double seconds;    /* 0: no time limit */
    const char **files;
    size_t nfiles;
    struct mailmsg *templates; /* parsed files, one per file */
    uint64_t sample_every;     /* 0: no samples */
    const char *outdir;
    int unique;
    int quickack;     /* TCP: acknowledge every read at once */
    long expect_sign; /* -1: no expectation */
    int timeout_ms;
    size_t gen_size;
    const char *from;
    char run_id[32]; /* keeps Message-IDs distinct between runs */
} cfg = {.conns = 1,
         .expect_sign = -1,
         .timeout_ms = 10000,
         .gen_size = 4096,
         .from = "loadtest@example.com"};

static atomic_uint_fast64_t next_seq;
static uint64_t deadline_ns;
static volatile sig_atomic_t interrupted;
static atomic_int errors_printed;
static struct buf filler; /* the generated messages' body, built once */

/* What the first connection negotiated, for the report. */
static pthread_mutex_t neg_lock = PTHREAD_MUTEX_INITIALIZER;
static int neg_known;
static uint32_t neg_version, neg_actions, neg_pflags;

/* Rate-limited, so a dead filter does not flood the terminal. */
__attribute__((format(printf, 2, 3))) static void report_error(unsigned wid, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (atomic_fetch_add(&errors_printed, 1) >= ML_MAX_ERR_PRINTED)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "milterload: worker %u: %s\n", wid, line); /* one write: lines stay whole */
}

/* ---------------------------------------------------------------- messages */

struct header {
    size_t name_off, name_len; /* into mailmsg.text */
    size_t val_off, val_len;   /* all after the colon; folded lines joined by "\n" */
};

struct mailmsg {
    struct buf text;
    struct header *hdrs;
    size_t nhdrs, caphdrs;
    struct buf body; /* CRLF line ends, as the MTA transmits a body */
};

static void msg_reset(struct mailmsg *m)
{
    m->text.len = 0;
    m->nhdrs = 0;
    m->body.len = 0;
}

static void msg_free(struct mailmsg *m)
{
    buf_free(&m->text);
    buf_free(&m->body);
    free(m->hdrs);
    memset(m, 0, sizeof(*m));
}

/* Starts a header field; its value is appended with msg_value(), so the value
 * of the last field is always at the end of text. */
static void msg_header(struct mailmsg *m, const char *name, size_t nlen)
{
    struct header *h;

    if (m->nhdrs == m->caphdrs) {
        m->caphdrs = m->caphdrs ? m->caphdrs * 2 : 16;
        m->hdrs = xrealloc(m->hdrs, m->caphdrs * sizeof(*m->hdrs));
    }
    h = &m->hdrs[m->nhdrs++];
    h->name_off = m->text.len;
    h->name_len = nlen;
    buf_add(&m->text, name, nlen);
    h->val_off = m->text.len;
    h->val_len = 0;
}

static void msg_value(struct mailmsg *m, const char *v, size_t n)
{
    buf_add(&m->text, v, n);
    m->hdrs[m->nhdrs - 1].val_len += n;
}

__attribute__((format(printf, 3, 4))) static void msg_headerf(struct mailmsg *m, const char *name,
                                                              const char *fmt, ...)
{
    char v[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    msg_header(m, name, strlen(name));
    msg_value(m, v, (size_t)n < sizeof(v) ? (size_t)n : sizeof(v) - 1);
}

/* Appends lines with CRLF ends whatever the file used; a last line without
 * an end gets one, as an MTA stores it. */
static void body_add_crlf(struct buf *b, const char *d, size_t n)
{
    size_t pos = 0;

    while (pos < n) {
        const char *nl = memchr(d + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - d) : n;
        size_t llen = end - pos;

        if (nl && llen > 0 && d[end - 1] == '\r')
            llen--;
        buf_add(b, d + pos, llen);
        buf_add(b, "\r\n", 2);
        pos = end + 1;
    }
}

/* Splits a message file into header fields and a CRLF body. Returns 0, or -1
 * with the reason in err. */
static int msg_parse(struct mailmsg *m, const char *d, size_t n, char *err, size_t errlen)
{
    size_t pos = 0, lineno = 0;

    msg_reset(m);
    while (pos < n) {
        const char *nl = memchr(d + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - d) : n;
        size_t llen = end - pos;
        const char *colon;

        lineno++;
        if (llen > 0 && d[pos + llen - 1] == '\r')
            llen--;
        if (llen == 0) {
            pos = end + 1; /* the blank line: the body follows */
            break;
        }
        if (d[pos] == ' ' || d[pos] == '\t') {
            if (m->nhdrs == 0) {
                snprintf(err, errlen, "line %zu: continuation before any header field", lineno);
                return -1;
            }
            msg_value(m, "\n", 1);
            msg_value(m, d + pos, llen);
        } else {
            colon = memchr(d + pos, ':', llen);
            if (colon == NULL || colon == d + pos) {
                snprintf(err, errlen, "line %zu: not a header field", lineno);
                return -1;
            }
            msg_header(m, d + pos, (size_t)(colon - (d + pos)));
            msg_value(m, colon + 1, llen - (size_t)(colon - (d + pos)) - 1);
        }
        pos = end + 1;
    }
    if (pos < n)
        body_add_crlf(&m->body, d + pos, n - pos);
    return 0;
}

static int load_file(const char *path, struct mailmsg *m)
{
    struct buf data = {0};
    char err[128];
    FILE *f = fopen(path, "rb");
    size_t got;
    int rc = -1;

    if (f == NULL) {
        fprintf(stderr, "milterload: %s: %s\n", path, strerror(errno));
        return -1;
    }
    do {
        buf_reserve(&data, 65536);
        got = fread(data.p + data.len, 1, 65536, f);
        data.len += got;
    } while (got > 0 && data.len <= ML_MAX_FILE);
    if (ferror(f) || data.len > ML_MAX_FILE)
        fprintf(stderr, "milterload: %s: %s\n", path, ferror(f) ? "read error" : "too large");
    else if (msg_parse(m, data.p, data.len, err, sizeof(err)) != 0)
        fprintf(stderr, "milterload: %s: %s\n", path, err);
    else
        rc = 0;
    fclose(f);
    buf_free(&data);
    return rc;
}

/* The generated body: plain 70-column text, so the whole message is about
 * --size bytes (headers take roughly 600). */
static void make_filler(size_t total)
{
    size_t want = total > 600 ? total - 600 : 0;
    unsigned line = 0;
    char l[96];

    while (filler.len < want) {
        snprintf(l, sizeof(l),
                 "Line %05u of a generated message; milterload sends it to load "
                 "a milter.\r\n",
                 ++line);
        buf_adds(&filler, l);
    }
}

static void rfc5322_date(char *out, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* A message of about --size bytes with a Message-ID of its own; --unique also
 * makes its Subject and first body line its own. */
static void msg_generate(struct mailmsg *m, uint64_t seq, const char *qid)
{
    char date[64];

    rfc5322_date(date, sizeof(date));
    msg_reset(m);
    msg_headerf(m, "Received",
                " from client.example.com (localhost [127.0.0.1])\n\tby mx.example.com "
                "(milterload) with ESMTP id %s\n\tfor <%s>; %s",
                qid, ML_RCPT, date);
    msg_headerf(m, "From", " Load Test <%s>", cfg.from);
    msg_headerf(m, "To", " Recipient <%s>", ML_RCPT);
    if (cfg.unique)
        msg_headerf(m, "Subject", " milterload test message %" PRIu64, seq);
    else
        msg_headerf(m, "Subject", " milterload test message");
    msg_headerf(m, "Date", " %s", date);
    msg_headerf(m, "Message-ID", " <%" PRIu64 ".%s@milterload.example.com>", seq, cfg.run_id);
    msg_headerf(m, "MIME-Version", " 1.0");
    msg_headerf(m, "Content-Type", " text/plain; charset=us-ascii");
    if (cfg.unique) {
        char l[80];

        snprintf(l, sizeof(l), "milterload token %" PRIu64 ".%s\r\n", seq, cfg.run_id);
        buf_adds(&m->body, l);
    }
    buf_add(&m->body, filler.p, filler.len);
}

/* A file's message made distinct (--unique): a tag in front of the Subject
 * (one is added if there is none) and a first body line of its own. */
static void msg_uniquify(struct mailmsg *m, const struct mailmsg *t, uint64_t seq)
{
    char tag[80];
    int tagged = 0;

    snprintf(tag, sizeof(tag), " [milterload %" PRIu64 ".%s]", seq, cfg.run_id);
    msg_reset(m);
    for (size_t i = 0; i < t->nhdrs; i++) {
        const struct header *h = &t->hdrs[i];
        const char *name = t->text.p + h->name_off;

        msg_header(m, name, h->name_len);
        if (!tagged && h->name_len == 7 && strncasecmp(name, "Subject", 7) == 0) {
            msg_value(m, tag, strlen(tag));
            tagged = 1;
        }
        msg_value(m, t->text.p + h->val_off, h->val_len);
    }
    if (!tagged) {
        msg_header(m, "Subject", 7);
        msg_value(m, tag, strlen(tag));
    }
    snprintf(tag, sizeof(tag), "milterload token %" PRIu64 ".%s\r\n", seq, cfg.run_id);
    buf_adds(&m->body, tag);
    buf_add(&m->body, t->body.p, t->body.len);
}

/* -------------------------------------------------------------- connection */

struct conn {
    int fd;
    struct buf out;   /* packets not yet written */
    size_t pkt_start; /* offset of the packet being built */
    struct buf in;    /* bytes read; in_pos is the first unconsumed one */
    size_t in_pos;
    uint32_t version, actions, pflags; /* what the filter negotiated */
    char err[256];
};

__attribute__((format(printf, 2, 3))) static int conn_fail(struct conn *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return -1;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->out.len = c->in.len = c->in_pos = 0;
}

/* Blocking I/O with SO_RCVTIMEO / SO_SNDTIMEO: one system call per read or
 * write (no poll), and every wait, connect() included, is bounded. */
static int conn_open(struct conn *c)
{
    struct timeval tv = {cfg.timeout_ms / 1000, (cfg.timeout_ms % 1000) * 1000};
    int one = 1, fd;
    const struct sockaddr *sa =
        cfg.is_unix ? (const struct sockaddr *)&cfg.sun : (const struct sockaddr *)&cfg.sin;
    socklen_t salen = cfg.is_unix ? sizeof(cfg.sun) : sizeof(cfg.sin);

    conn_close(c);
    fd = socket(cfg.is_unix ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return conn_fail(c, "socket: %s", strerror(errno));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        (!cfg.is_unix && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)) {
        conn_fail(c, "socket options: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (connect(fd, sa, salen) != 0) {
        conn_fail(c, "connect %s: %s", cfg.target, strerror(errno));
        close(fd);
        return -1;
    }
    c->fd = fd;
    return 0;
}

static int conn_flush(struct conn *c)
{
    size_t off = 0;

    while (off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + off, c->out.len - off, MSG_NOSIGNAL);

        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return conn_fail(c, "the filter read nothing for %d ms", cfg.timeout_ms);
        else if (n < 0 && errno != EINTR)
            return conn_fail(c, "write: %s", strerror(errno));
    }
    c->out.len = 0;
    return 0;
}

/* Makes at least need unread bytes available in c->in. */
static int conn_fill(struct conn *c, size_t need)
{
    if (c->in_pos == c->in.len)
        c->in_pos = c->in.len = 0;
    while (c->in.len - c->in_pos < need) {
        ssize_t n;

        if (c->in_pos > 0) { /* keep the buffer from creeping forward */
            memmove(c->in.p, c->in.p + c->in_pos, c->in.len - c->in_pos);
            c->in.len -= c->in_pos;
            c->in_pos = 0;
        }
        buf_reserve(&c->in, need > 65536 ? need : 65536);
        n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
        if (n > 0 && cfg.quickack && !cfg.is_unix) /* Linux clears it after a while: re-arm */
            (void)setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &(int){1}, sizeof(int));
        if (n > 0)
            c->in.len += (size_t)n;
        else if (n == 0)
            return conn_fail(c, "the filter closed the connection");
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            return conn_fail(c, "no reply within %d ms", cfg.timeout_ms);
        else if (errno != EINTR)
            return conn_fail(c, "read: %s", strerror(errno));
    }
    return 0;
}

/* Writes what is pending, then reads one packet. *data stays valid until the
 * next read; the length is checked before anything is allocated. */
static int conn_read(struct conn *c, char *cmd, const char **data, size_t *len)
{
    uint32_t plen;

    if (conn_flush(c) != 0 || conn_fill(c, 4) != 0)
        return -1;
    plen = get_u32(c->in.p + c->in_pos);
    if (plen < 1 || plen > ML_MAX_PACKET)
        return conn_fail(c, "reply length %" PRIu32 " out of range", plen);
    if (conn_fill(c, 4 + (size_t)plen) != 0)
        return -1;
    *cmd = c->in.p[c->in_pos + 4];
    *data = c->in.p + c->in_pos + 5;
    *len = plen - 1;
    c->in_pos += 4 + (size_t)plen;
    return 0;
}

/* Packets are built in place in the output buffer: length, command, data. */
static void pkt_begin(struct conn *c, char cmd)
{
    char hdr[5] = {0, 0, 0, 0, cmd};

    c->pkt_start = c->out.len;
    buf_add(&c->out, hdr, sizeof(hdr));
}

static void pkt_data(struct conn *c, const void *p, size_t n)
{
    buf_add(&c->out, p, n);
}

static void pkt_str(struct conn *c, const char *s)
{
    buf_add(&c->out, s, strlen(s) + 1);
}

static void pkt_u32(struct conn *c, uint32_t v)
{
    char b[4];

    put_u32(b, v);
    buf_add(&c->out, b, 4);
}

static void pkt_end(struct conn *c)
{
    put_u32(c->out.p + c->pkt_start, (uint32_t)(c->out.len - c->pkt_start - 4));
}

/* SMFIC_MACRO: stage, then name/value pairs; never answered. Postfix sends a
 * few per stage; filters such as OpenDKIM log the queue id ("i"). */
static void pkt_macros(struct conn *c, char stage, const char *const *nv)
{
    pkt_begin(c, SMFIC_MACRO);
    pkt_data(c, &stage, 1);
    for (; nv[0] != NULL; nv += 2) {
        pkt_str(c, nv[0]);
        pkt_str(c, nv[1]);
    }
    pkt_end(c);
}

/* ------------------------------------------------------------------ worker */

enum outcome { OUT_NONE, OUT_ACCEPT, OUT_TEMPFAIL, OUT_REJECT, OUT_DISCARD };
enum step { ST_CONTINUE, ST_SKIP, ST_VERDICT, ST_ERROR };

struct stats {
    uint64_t sent, accepted, tempfail, rejected, discarded, errors;
    uint64_t signed_msgs, sign_mismatch, samples;
    uint64_t *lat_ns;
    size_t nlat, caplat;
};

struct msgresult {
    enum outcome outcome;
    int close_conn; /* the filter asked for the connection to end */
    int sampled;
    unsigned sigs; /* DKIM-Signature fields the filter added or inserted */
};

struct worker {
    pthread_t tid;
    unsigned id;
    struct conn conn;
    struct mailmsg msg; /* the message being sent, when built per message */
    struct buf mods;    /* a sampled message's changes: cmd, u32 length, data */
    unsigned conn_failures;
    struct stats st;
};

/* Verdicts that end a transaction, at any step. Returns 1 when cmd is one. */
static int take_verdict(struct msgresult *r, char cmd, const char *d, size_t n)
{
    switch (cmd) {
    case SMFIR_ACCEPT:
        r->outcome = OUT_ACCEPT;
        return 1;
    case SMFIR_REJECT:
        r->outcome = OUT_REJECT;
        return 1;
    case SMFIR_TEMPFAIL:
        r->outcome = OUT_TEMPFAIL;
        return 1;
    case SMFIR_DISCARD:
        r->outcome = OUT_DISCARD;
        return 1;
    case SMFIR_REPLYCODE: /* "4xx ..." or "5xx ...", NUL-terminated */
        if (n < 4 || (d[0] != '4' && d[0] != '5') || d[n - 1] != '\0')
            return 0;
        r->outcome = d[0] == '4' ? OUT_TEMPFAIL : OUT_REJECT;
        return 1;
    case SMFIR_SHUTDOWN:
    case SMFIR_CONN_FAIL: /* Postfix tempfails and drops the filter's connection */
        r->outcome = OUT_TEMPFAIL;
        r->close_conn = 1;
        return 1;
    default:
        return 0;
    }
}

/* Ends the packet being built and, unless the filter negotiated no reply for
 * this step (nr_flag), waits for its answer. Unanswered packets are batched. */
static enum step step_reply(struct worker *w, uint32_t nr_flag, int skip_ok, struct msgresult *r)
{
    struct conn *c = &w->conn;
    const char *d;
    size_t n;
    char cmd;

    pkt_end(c);
    if (nr_flag != 0 && (c->pflags & nr_flag) != 0)
        return c->out.len >= ML_FLUSH_AT && conn_flush(c) != 0 ? ST_ERROR : ST_CONTINUE;
    for (;;) {
        if (conn_read(c, &cmd, &d, &n) != 0)
            return ST_ERROR;
        if (cmd == SMFIR_CONTINUE)
            return ST_CONTINUE;
        if (cmd == SMFIR_SKIP && skip_ok)
            return ST_SKIP;
        if (cmd == SMFIR_PROGRESS) /* the filter asks for more time */
            continue;
        if (take_verdict(r, cmd, d, n))
            return ST_VERDICT;
        conn_fail(c, "unexpected reply '%c' (0x%02x) to a step", cmd, (unsigned char)cmd);
        return ST_ERROR;
    }
}

static void record_negotiation(const struct conn *c)
{
    pthread_mutex_lock(&neg_lock);
    if (!neg_known) {
        neg_known = 1;
        neg_version = c->version;
        neg_actions = c->actions;
        neg_pflags = c->pflags;
    }
    pthread_mutex_unlock(&neg_lock);
}

/* SMFIC_OPTNEG: we offer everything; the filter may only take away. Bits in
 * SMFI_INTERNAL are between libmilter and the MTA and are ignored, and so is a
 * symbol list after the three words: we send only a few macros, and a filter
 * keeps macros it did not ask for without harm. */
static int negotiate(struct conn *c)
{
    const char *d;
    size_t n;
    char cmd;

    pkt_begin(c, SMFIC_OPTNEG);
    pkt_u32(c, ML_VERSION);
    pkt_u32(c, ML_OFFER_ACTS);
    pkt_u32(c, ML_OFFER_PROT);
    pkt_end(c);
    if (conn_read(c, &cmd, &d, &n) != 0)
        return -1;
    if (cmd != SMFIC_OPTNEG || n < MILTER_OPTLEN)
        return conn_fail(c, "bad OPTNEG reply '%c', %zu bytes", cmd, n);
    c->version = get_u32(d);
    c->actions = get_u32(d + 4);
    c->pflags = get_u32(d + 8) & ~(uint32_t)SMFI_INTERNAL;
    if (c->version < 2 || c->version > ML_VERSION)
        return conn_fail(c, "filter speaks protocol version %" PRIu32, c->version);
    if ((c->actions & ~ML_OFFER_ACTS) != 0 || (c->pflags & ~ML_OFFER_PROT) != 0)
        return conn_fail(
            c, "filter wants actions 0x%" PRIx32 " protocol 0x%" PRIx32 " beyond what was offered",
            c->actions, c->pflags);
    record_negotiation(c);
    return 0;
}

/* One connection: OPTNEG, then CONNECT and HELO as a client at 127.0.0.1
 * (signers such as OpenDKIM sign only for internal hosts). */
static int worker_connect(struct worker *w)
{
    static const char *const conn_macros[] = {
        "j", "mx.example.com", "{daemon_name}", "milterload", "v", "milterload", NULL};
    struct conn *c = &w->conn;
    struct msgresult r = {0};
    uint16_t port = htons(40000 + w->id % 20000);
    enum step rc = ST_CONTINUE;

    if (conn_open(c) != 0 || negotiate(c) != 0)
        goto fail;
    pkt_macros(c, SMFIC_CONNECT, conn_macros);
    if ((c->pflags & SMFIP_NOCONNECT) == 0) {
        pkt_begin(c, SMFIC_CONNECT);
        pkt_str(c, "client.example.com");
        pkt_data(c, (const char[]){SMFIA_INET}, 1);
        pkt_data(c, &port, 2);
        pkt_str(c, "127.0.0.1");
        rc = step_reply(w, SMFIP_NR_CONN, 0, &r);
    }
    if (rc == ST_CONTINUE && (c->pflags & SMFIP_NOHELO) == 0) {
        pkt_begin(c, SMFIC_HELO);
        pkt_str(c, "client.example.com");
        rc = step_reply(w, SMFIP_NR_HELO, 0, &r);
    }
    if (rc == ST_VERDICT)
        conn_fail(c, "the filter ended the session at CONNECT/HELO (verdict %d)", r.outcome);
    if (rc == ST_CONTINUE)
        return 0;
fail:
    report_error(w->id, "%s", c->err);
    conn_close(c);
    return -1;
}

/* MAIL, RCPT and DATA, each preceded by the macros Postfix sends by default. */
static enum step send_envelope(struct worker *w, const char *qid, struct msgresult *r)
{
    struct conn *c = &w->conn;
    char from[320], rcpt[320];
    const char *mail_macros[] = {"i", qid, "{mail_addr}", cfg.from, NULL};
    const char *rcpt_macros[] = {"{rcpt_addr}", ML_RCPT, NULL};
    const char *qid_macros[] = {"i", qid, NULL};
    enum step rc = ST_CONTINUE;

    snprintf(from, sizeof(from), "<%s>", cfg.from);
    snprintf(rcpt, sizeof(rcpt), "<%s>", ML_RCPT);
    pkt_macros(c, SMFIC_MAIL, mail_macros);
    if ((c->pflags & SMFIP_NOMAIL) == 0) {
        pkt_begin(c, SMFIC_MAIL);
        pkt_str(c, from);
        rc = step_reply(w, SMFIP_NR_MAIL, 0, r);
    }
    if (rc != ST_CONTINUE)
        return rc;
    pkt_macros(c, SMFIC_RCPT, rcpt_macros);
    if ((c->pflags & SMFIP_NORCPT) == 0) {
        pkt_begin(c, SMFIC_RCPT);
        pkt_str(c, rcpt);
        rc = step_reply(w, SMFIP_NR_RCPT, 0, r);
    }
    if (rc != ST_CONTINUE)
        return rc;
    pkt_macros(c, SMFIC_DATA, qid_macros);
    if (c->version >= 4 && (c->pflags & SMFIP_NODATA) == 0) { /* DATA came with version 4 */
        pkt_begin(c, SMFIC_DATA);
        rc = step_reply(w, SMFIP_NR_DATA, 0, r);
    }
    return rc;
}

/* HEADER per field, then EOH. Without SMFIP_HDR_LEADSPC the MTA strips the
 * blanks after the colon (Postfix does); with it the value goes as it is.
 * The end-of-header macros (Postfix: milter_end_of_header_macros = i) go
 * even to a filter that negotiated EOH away, as Postfix sends them. */
static enum step send_headers(struct worker *w, const char *qid, const struct mailmsg *m,
                              struct msgresult *r)
{
    struct conn *c = &w->conn;
    const char *eoh_macros[] = {"i", qid, NULL};
    enum step rc = ST_CONTINUE;

    for (size_t i = 0; i < m->nhdrs && (c->pflags & SMFIP_NOHDRS) == 0; i++) {
        const struct header *h = &m->hdrs[i];
        const char *v = m->text.p + h->val_off;
        size_t vlen = h->val_len;

        if ((c->pflags & SMFIP_HDR_LEADSPC) == 0) {
            while (vlen > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                vlen--;
            }
        }
        pkt_begin(c, SMFIC_HEADER);
        pkt_data(c, m->text.p + h->name_off, h->name_len);
        pkt_data(c, "", 1);
        pkt_data(c, v, vlen);
        pkt_data(c, "", 1);
        rc = step_reply(w, SMFIP_NR_HDR, 0, r);
        if (rc != ST_CONTINUE)
            return rc;
    }
    pkt_macros(c, SMFIC_EOH, eoh_macros);
    if ((c->pflags & SMFIP_NOEOH) == 0) {
        pkt_begin(c, SMFIC_EOH);
        rc = step_reply(w, SMFIP_NR_EOH, 0, r);
    }
    return rc;
}

/* BODY in chunks of at most MILTER_CHUNK_SIZE; SMFIR_SKIP ends the body early. */
static enum step send_body(struct worker *w, const struct mailmsg *m, struct msgresult *r)
{
    struct conn *c = &w->conn;
    size_t off = 0;

    if ((c->pflags & SMFIP_NOBODY) != 0)
        return ST_CONTINUE;
    while (off < m->body.len) {
        size_t n = m->body.len - off;
        enum step rc;

        if (n > MILTER_CHUNK_SIZE)
            n = MILTER_CHUNK_SIZE;
        pkt_begin(c, SMFIC_BODY);
        pkt_data(c, m->body.p + off, n);
        off += n;
        rc = step_reply(w, SMFIP_NR_BODY, (c->pflags & SMFIP_SKIP) != 0, r);
        if (rc == ST_SKIP)
            return ST_CONTINUE;
        if (rc != ST_CONTINUE)
            return rc;
    }
    return ST_CONTINUE;
}

/* ---------------------------------------------------------- end of message */

struct hdrmod {
    uint32_t idx; /* SMFIR_INSHEADER: position; SMFIR_CHGHEADER: 1-based occurrence */
    const char *name, *value;
    size_t vlen;
};

/* The action a change needs, or 0 when cmd is not a change. */
static uint32_t mod_action(char cmd)
{
    switch (cmd) {
    case SMFIR_ADDHEADER:
    case SMFIR_INSHEADER:
        return SMFIF_ADDHDRS;
    case SMFIR_CHGHEADER:
        return SMFIF_CHGHDRS;
    case SMFIR_REPLBODY:
        return SMFIF_CHGBODY;
    case SMFIR_ADDRCPT:
        return SMFIF_ADDRCPT;
    case SMFIR_DELRCPT:
        return SMFIF_DELRCPT;
    case SMFIR_ADDRCPT_PAR:
        return SMFIF_ADDRCPT_PAR;
    case SMFIR_CHGFROM:
        return SMFIF_CHGFROM;
    case SMFIR_QUARANTINE:
        return SMFIF_QUARANTINE;
    default:
        return 0;
    }
}

/* 'h': name NUL value NUL; 'i' and 'm': u32 index first. A field name is never
 * empty, and nothing may follow the value's NUL. */
static int parse_hdr_mod(char cmd, const char *d, size_t n, struct hdrmod *hm)
{
    size_t off = 0;
    const char *nul;

    memset(hm, 0, sizeof(*hm));
    if (cmd != SMFIR_ADDHEADER) {
        if (n < 4)
            return -1;
        hm->idx = get_u32(d);
        off = 4;
    }
    nul = memchr(d + off, '\0', n - off);
    if (nul == NULL || nul == d + off)
        return -1;
    hm->name = d + off;
    hm->value = nul + 1;
    nul = memchr(hm->value, '\0', n - (size_t)(hm->value - d));
    if (nul == NULL || nul != d + n - 1)
        return -1;
    hm->vlen = (size_t)(nul - hm->value);
    return 0;
}

/* Checks a change against the negotiated actions, counts DKIM signatures and,
 * for a sampled message, keeps the change to apply when writing it out. */
static int record_mod(struct worker *w, char cmd, const char *d, size_t n, struct msgresult *r)
{
    struct conn *c = &w->conn;
    uint32_t need = mod_action(cmd);
    struct hdrmod hm;
    char len[4];

    if ((c->actions & need) == 0)
        return conn_fail(c, "change '%c' without its action negotiated", cmd);
    if (need == SMFIF_ADDHDRS || need == SMFIF_CHGHDRS) {
        if (parse_hdr_mod(cmd, d, n, &hm) != 0)
            return conn_fail(c, "malformed header change '%c' (%zu bytes)", cmd, n);
        if (need == SMFIF_ADDHDRS && strcasecmp(hm.name, "DKIM-Signature") == 0)
            r->sigs++;
    }
    if (r->sampled) {
        put_u32(len, (uint32_t)n);
        buf_add(&w->mods, &cmd, 1);
        buf_add(&w->mods, len, 4);
        buf_add(&w->mods, d, n);
    }
    return 0;
}

/* BODYEOB, then the filter's changes until its verdict. CONTINUE here means
 * the message goes on: it counts as accepted. */
static enum step end_of_message(struct worker *w, const char *qid, struct msgresult *r)
{
    struct conn *c = &w->conn;
    const char *eom_macros[] = {"i", qid, NULL};
    const char *d;
    size_t n;
    char cmd;

    pkt_macros(c, SMFIC_BODYEOB, eom_macros);
    pkt_begin(c, SMFIC_BODYEOB);
    pkt_end(c);
    for (;;) {
        if (conn_read(c, &cmd, &d, &n) != 0)
            return ST_ERROR;
        if (mod_action(cmd) != 0) {
            if (record_mod(w, cmd, d, n, r) != 0)
                return ST_ERROR;
            continue;
        }
        if (cmd == SMFIR_PROGRESS)
            continue;
        if (cmd == SMFIR_CONTINUE) {
            r->outcome = OUT_ACCEPT;
            return ST_VERDICT;
        }
        if (take_verdict(r, cmd, d, n))
            return ST_VERDICT;
        conn_fail(c, "unexpected reply '%c' (0x%02x) at end of message", cmd, (unsigned char)cmd);
        return ST_ERROR;
    }
}

/* --------------------------------------------------------- sampled output */

struct ohdr {
    char *name, *value; /* value: everything after the colon */
};

struct olist {
    struct ohdr *v;
    size_t n, cap;
};

static char *xconcat(const char *a, size_t alen, const char *b, size_t blen)
{
    char *s = xrealloc(NULL, alen + blen + 1);

    memcpy(s, a, alen);
    memcpy(s + alen, b, blen);
    s[alen + blen] = '\0';
    return s;
}

static void olist_insert(struct olist *l, size_t at, char *name, char *value)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    if (at > l->n)
        at = l->n;
    memmove(&l->v[at + 1], &l->v[at], (l->n - at) * sizeof(*l->v));
    l->v[at].name = name;
    l->v[at].value = value;
    l->n++;
}

static void olist_free(struct olist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].value);
    }
    free(l->v);
}

/* SMFIR_CHGHEADER: the idx-th field of that name (1-based) gets the value, an
 * empty value deletes it, and a missing one is added (libmilter's rules). */
static void olist_change(struct olist *l, const struct hdrmod *hm, char *value)
{
    uint32_t want = hm->idx ? hm->idx : 1, seen = 0;

    for (size_t i = 0; i < l->n; i++) {
        if (strcasecmp(l->v[i].name, hm->name) != 0 || ++seen != want)
            continue;
        free(l->v[i].value);
        if (hm->vlen > 0) {
            l->v[i].value = value;
            return;
        }
        free(l->v[i].name);
        memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
        l->n--;
        free(value);
        return;
    }
    if (hm->vlen > 0)
        olist_insert(l, l->n, xconcat(hm->name, strlen(hm->name), "", 0), value);
    else
        free(value);
}

/* Applies one recorded change. Without SMFIP_HDR_LEADSPC the MTA puts a space
 * after the colon (Postfix does); with it the value is written as sent. */
static void apply_mod(struct olist *l, struct buf *body, int *replaced, char cmd, const char *d,
                      size_t n, int leadspc)
{
    struct hdrmod hm;
    char *value;

    if (cmd == SMFIR_REPLBODY) {
        if (!*replaced)
            body->len = 0;
        *replaced = 1;
        buf_add(body, d, n);
        return;
    }
    if (mod_action(cmd) != SMFIF_ADDHDRS && mod_action(cmd) != SMFIF_CHGHDRS)
        return; /* envelope changes do not show in the message */
    if (parse_hdr_mod(cmd, d, n, &hm) != 0)
        return; /* cannot happen: record_mod() checked it */
    value = xconcat(leadspc ? "" : " ", leadspc ? 0 : 1, hm.value, hm.vlen);
    if (cmd == SMFIR_CHGHEADER)
        olist_change(l, &hm, value);
    else
        olist_insert(l, cmd == SMFIR_ADDHEADER ? l->n : hm.idx,
                     xconcat(hm.name, strlen(hm.name), "", 0), value);
}

/* Header values carry LF between folded lines; a message on disk has CRLF. */
static void fput_crlf(FILE *f, const char *s)
{
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
            fputc('\r', f);
        fputc(s[i], f);
    }
}

static int write_message(const char *path, const struct olist *l, const struct buf *body)
{
    FILE *f = fopen(path, "wb");

    if (f == NULL)
        return -1;
    for (size_t i = 0; i < l->n; i++) {
        fputs(l->v[i].name, f);
        fputc(':', f);
        fput_crlf(f, l->v[i].value);
        fputs("\r\n", f);
    }
    fputs("\r\n", f);
    if (body->len > 0)
        fwrite(body->p, 1, body->len, f);
    if (ferror(f)) {
        fclose(f);
        return -1;
    }
    return fclose(f);
}

/* The message as the MTA would queue it: the original fields with the
 * filter's changes applied where it asked, then the (possibly replaced) body. */
static int sample_write(struct worker *w, uint64_t seq, const struct mailmsg *m)
{
    struct olist l = {0};
    struct buf body = {0};
    int replaced = 0, rc, leadspc = (w->conn.pflags & SMFIP_HDR_LEADSPC) != 0;
    char path[4096];

    for (size_t i = 0; i < m->nhdrs; i++) {
        const struct header *h = &m->hdrs[i];

        olist_insert(&l, l.n, xconcat(m->text.p + h->name_off, h->name_len, "", 0),
                     xconcat(m->text.p + h->val_off, h->val_len, "", 0));
    }
    buf_add(&body, m->body.p, m->body.len);
    for (size_t off = 0; off + 5 <= w->mods.len;) {
        size_t n = get_u32(w->mods.p + off + 1);

        apply_mod(&l, &body, &replaced, w->mods.p[off], w->mods.p + off + 5, n, leadspc);
        off += 5 + n;
    }
    snprintf(path, sizeof(path), "%s/%08" PRIu64 ".eml", cfg.outdir, seq);
    rc = write_message(path, &l, &body);
    if (rc != 0)
        report_error(w->id, "%s: %s", path, strerror(errno));
    olist_free(&l);
    buf_free(&body);
    return rc;
}

/* ---------------------------------------------------------------- the run */

static int take_seq(uint64_t *seq)
{
    if (interrupted || (deadline_ns != 0 && now_ns() >= deadline_ns))
        return 0;
    *seq = atomic_fetch_add(&next_seq, 1);
    return cfg.max_msgs == 0 || *seq < cfg.max_msgs;
}

static void add_latency(struct stats *st, uint64_t ns)
{
    if (st->nlat == st->caplat) {
        st->caplat = st->caplat ? st->caplat * 2 : 4096;
        st->lat_ns = xrealloc(st->lat_ns, st->caplat * sizeof(*st->lat_ns));
    }
    st->lat_ns[st->nlat++] = ns;
}

static const struct mailmsg *pick_message(struct worker *w, uint64_t seq, const char *qid)
{
    const struct mailmsg *t;

    if (cfg.nfiles == 0) {
        msg_generate(&w->msg, seq, qid);
        return &w->msg;
    }
    t = &cfg.templates[seq % cfg.nfiles];
    if (!cfg.unique)
        return t;
    msg_uniquify(&w->msg, t, seq);
    return &w->msg;
}

static void tally(struct worker *w, const struct msgresult *r)
{
    struct stats *st = &w->st;

    st->accepted += r->outcome == OUT_ACCEPT;
    st->tempfail += r->outcome == OUT_TEMPFAIL;
    st->rejected += r->outcome == OUT_REJECT;
    st->discarded += r->outcome == OUT_DISCARD;
    st->signed_msgs += r->sigs > 0;
    if (cfg.expect_sign >= 0 && r->sigs != (unsigned long)cfg.expect_sign) {
        st->sign_mismatch++;
        report_error(w->id, "message got %u DKIM-Signature fields, expected %ld (outcome %d)",
                     r->sigs, cfg.expect_sign, r->outcome);
    }
}

/* One transaction on the worker's connection; ABORT closes it, as Postfix
 * does after every transaction, and the connection carries the next one. */
static void one_message(struct worker *w, uint64_t seq)
{
    struct conn *c = &w->conn;
    struct msgresult r = {.sampled = cfg.sample_every && seq % cfg.sample_every == 0};
    char qid[40];
    const struct mailmsg *m;
    enum step rc;
    uint64_t t0;

    snprintf(qid, sizeof(qid), "ML%010" PRIX64, seq);
    m = pick_message(w, seq, qid);
    w->mods.len = 0;
    w->st.sent++;
    t0 = now_ns();
    rc = send_envelope(w, qid, &r);
    if (rc == ST_CONTINUE)
        rc = send_headers(w, qid, m, &r);
    if (rc == ST_CONTINUE)
        rc = send_body(w, m, &r);
    if (rc == ST_CONTINUE)
        rc = end_of_message(w, qid, &r);
    if (rc != ST_VERDICT) {
        w->st.errors++;
        report_error(w->id, "message %" PRIu64 ": %s", seq, c->err);
        conn_close(c);
        return;
    }
    add_latency(&w->st, now_ns() - t0);
    w->conn_failures = 0;
    tally(w, &r);
    if (r.sampled && r.outcome == OUT_ACCEPT && sample_write(w, seq, m) == 0)
        w->st.samples++;
    if (r.close_conn) {
        conn_close(c);
        return;
    }
    pkt_begin(c, SMFIC_ABORT); /* no reply; goes out with the next transaction */
    pkt_end(c);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t seq;

    w->conn.fd = -1;
    while (take_seq(&seq)) {
        if (w->conn.fd < 0 && worker_connect(w) != 0) {
            w->st.errors++;
            if (++w->conn_failures >= ML_MAX_CONN_FAILURES) {
                report_error(w->id, "%d connection failures in a row: stopping",
                             ML_MAX_CONN_FAILURES);
                break;
            }
            usleep(50000); /* a filter that is restarting gets a moment */
            continue;
        }
        one_message(w, seq);
    }
    if (w->conn.fd >= 0) {
        pkt_begin(&w->conn, SMFIC_QUIT);
        pkt_end(&w->conn);
        (void)conn_flush(&w->conn); /* the run is over either way */
    }
    conn_close(&w->conn);
    buf_free(&w->conn.in);
    buf_free(&w->conn.out);
    buf_free(&w->mods);
    msg_free(&w->msg);
    return NULL;
}

/* ----------------------------------------------------------------- report */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array, in milliseconds. */
static double pct_ms(const uint64_t *v, size_t n, double q)
{
    size_t rank;

    if (n == 0)
        return 0.0;
    rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1e6;
}

static void merge_stats(struct stats *all, struct worker *ws, unsigned nw)
{
    memset(all, 0, sizeof(*all));
    for (unsigned i = 0; i < nw; i++) {
        struct stats *s = &ws[i].st;

        all->sent += s->sent;
        all->accepted += s->accepted;
        all->tempfail += s->tempfail;
        all->rejected += s->rejected;
        all->discarded += s->discarded;
        all->errors += s->errors;
        all->signed_msgs += s->signed_msgs;
        all->sign_mismatch += s->sign_mismatch;
        all->samples += s->samples;
        for (size_t j = 0; j < s->nlat; j++)
            add_latency(all, s->lat_ns[j]);
        free(s->lat_ns);
    }
    if (all->nlat > 0)
        qsort(all->lat_ns, all->nlat, sizeof(*all->lat_ns), cmp_u64);
}

static void print_negotiation(void)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } bits[] = {
        {SMFIP_NOCONNECT, "NOCONNECT"},
        {SMFIP_NOHELO, "NOHELO"},
        {SMFIP_NOMAIL, "NOMAIL"},
        {SMFIP_NORCPT, "NORCPT"},
        {SMFIP_NOBODY, "NOBODY"},
        {SMFIP_NOHDRS, "NOHDRS"},
        {SMFIP_NOEOH, "NOEOH"},
        {SMFIP_NR_HDR, "NR_HDR"},
        {SMFIP_NOUNKNOWN, "NOUNKNOWN"},
        {SMFIP_NODATA, "NODATA"},
        {SMFIP_SKIP, "SKIP"},
        {SMFIP_RCPT_REJ, "RCPT_REJ"},
        {SMFIP_NR_CONN, "NR_CONN"},
        {SMFIP_NR_HELO, "NR_HELO"},
        {SMFIP_NR_MAIL, "NR_MAIL"},
        {SMFIP_NR_RCPT, "NR_RCPT"},
        {SMFIP_NR_DATA, "NR_DATA"},
        {SMFIP_NR_UNKN, "NR_UNKN"},
        {SMFIP_NR_EOH, "NR_EOH"},
        {SMFIP_NR_BODY, "NR_BODY"},
        {SMFIP_HDR_LEADSPC, "HDR_LEADSPC"},
    };

    if (!neg_known) {
        printf("filter:     never negotiated\n");
        return;
    }
    printf("filter:     protocol %" PRIu32 ", actions 0x%03" PRIx32 ", flags 0x%06" PRIx32 ":",
           neg_version, neg_actions, neg_pflags);
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
        if (neg_pflags & bits[i].bit)
            printf(" %s", bits[i].name);
    printf("\n");
}

static double own_cpu_seconds(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Human lines, then one RESULT line for scripts. Returns the exit status. */
static int report(struct worker *ws, unsigned nw, double secs)
{
    struct stats all;
    uint64_t done;
    double rate, p50, p99, max, cpu = own_cpu_seconds();

    merge_stats(&all, ws, nw);
    done = all.accepted + all.tempfail + all.rejected + all.discarded;
    rate = secs > 0 ? (double)done / secs : 0.0;
    p50 = pct_ms(all.lat_ns, all.nlat, 0.50);
    p99 = pct_ms(all.lat_ns, all.nlat, 0.99);
    max = all.nlat ? (double)all.lat_ns[all.nlat - 1] / 1e6 : 0.0;
    printf("milterload: %s, %u connections, %.2f s%s\n", cfg.target, nw, secs,
           interrupted ? " (interrupted)" : "");
    print_negotiation();
    printf("messages:   sent %" PRIu64 ", accepted %" PRIu64 ", tempfailed %" PRIu64
           ", rejected %" PRIu64 ", discarded %" PRIu64 ", errors %" PRIu64 "\n",
           all.sent, all.accepted, all.tempfail, all.rejected, all.discarded, all.errors);
    printf("signed:     %" PRIu64 " with a DKIM-Signature inserted", all.signed_msgs);
    if (cfg.expect_sign >= 0)
        printf(" (%" PRIu64 " not carrying exactly %ld)", all.sign_mismatch, cfg.expect_sign);
    printf("\nthroughput: %.1f msgs/s\n", rate);
    printf("latency:    p50 %.2f ms, p99 %.2f ms, max %.2f ms (MAIL to verdict)\n", p50, p99, max);
    printf("own cpu:    %.2f s (so the load generator's share of the machine is known)\n", cpu);
    if (cfg.sample_every)
        printf("samples:    %" PRIu64 " written to %s\n", all.samples, cfg.outdir);
    printf("RESULT msgs=%" PRIu64 " per_sec=%.1f p50_ms=%.2f p99_ms=%.2f signed=%" PRIu64
           " tempfail=%" PRIu64 " errors=%" PRIu64 " max_ms=%.2f accepted=%" PRIu64
           " rejected=%" PRIu64 " discarded=%" PRIu64 " sign_mismatch=%" PRIu64 " samples=%" PRIu64
           " conns=%u secs=%.2f cpu_s=%.2f\n",
           done, rate, p50, p99, all.signed_msgs, all.tempfail, all.errors, max, all.accepted,
           all.rejected, all.discarded, all.sign_mismatch, all.samples, nw, secs, cpu);
    free(all.lat_ns);
    return all.errors == 0 && all.sign_mismatch == 0 && done > 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- options */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: milterload -s unix:/path|inet:PORT[@127.0.0.1] [-c CONNECTIONS]\n"
            "                  [-n MESSAGES] [-t SECONDS] [-m FILE]... [FILE...]\n"
            "                  [--sample K -o DIR] [--unique] [--expect-sign N]\n"
            "                  [--size BYTES] [--from ADDR] [--timeout SECONDS] [--quickack]\n"
            "\n"
            "Plays the MTA side of milter protocol 6, many transactions per connection.\n"
            "  -s SOCKET        the filter: a UNIX socket or a port on 127.0.0.1\n"
            "  -c N             connections, one thread each (default 1, max %d)\n"
            "  -n N             messages in all (default 1000 unless -t is given)\n"
            "  -t SECONDS       stop starting messages after this long\n"
            "  -m FILE          message files, sent round-robin (default: a generated one)\n"
            "  --sample K       write every K-th accepted message, with the filter's\n"
            "                   header changes applied, to -o DIR as NNNNNNNN.eml\n"
            "  --unique         a distinct Subject and body line in every message\n"
            "  --expect-sign N  every message must get N DKIM-Signature fields\n"
            "  --size BYTES     size of the generated message (default 4096)\n"
            "  --from ADDR      envelope and From: address (default loadtest@example.com)\n"
            "  --timeout S      longest wait for any read, write or connect (default 10)\n"
            "  --quickack       inet: ACK every read at once (TCP_QUICKACK). A filter that\n"
            "                   writes a change and its verdict separately, without\n"
            "                   TCP_NODELAY (libmilter), otherwise waits for our delayed\n"
            "                   ACK (~40 ms), as with an MTA that does not do this\n"
            "Exit status: 0 when every message got a verdict (and N signatures),\n"
            "1 otherwise, 2 for a usage error. The last line is RESULT key=value...\n",
            ML_MAX_CONNS);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || *s == '-' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Only a UNIX socket or 127.0.0.1: a load generator must not be pointed at
 * somebody else's server. */
static int parse_target(const char *spec)
{
    const char *p, *at;
    uint64_t port;
    char num[8];

    cfg.target = spec;
    if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
        p = strchr(spec, ':') + 1;
        if (*p == '\0' || strlen(p) >= sizeof(cfg.sun.sun_path))
            return -1;
        cfg.is_unix = 1;
        cfg.sun.sun_family = AF_UNIX;
        memcpy(cfg.sun.sun_path, p, strlen(p) + 1);
        return 0;
    }
    if (strncmp(spec, "inet:", 5) != 0)
        return -1;
    p = spec + 5;
    at = strchr(p, '@');
    if (at != NULL && strcmp(at + 1, "127.0.0.1") != 0 && strcmp(at + 1, "localhost") != 0) {
        fprintf(stderr, "milterload: only 127.0.0.1 may be targeted, not %s\n", at + 1);
        return -1;
    }
    if ((size_t)((at ? at : p + strlen(p)) - p) >= sizeof(num))
        return -1;
    snprintf(num, sizeof(num), "%.*s", (int)((at ? at : p + strlen(p)) - p), p);
    if (parse_u64(num, 1, 65535, &port) != 0)
        return -1;
    cfg.sin.sin_family = AF_INET;
    cfg.sin.sin_port = htons((uint16_t)port);
    cfg.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return 0;
}

static int valid_address(const char *a)
{
    if (strlen(a) > 254 || strchr(a, '@') == NULL)
        return 0;
    for (; *a; a++)
        if (*a <= ' ' || *a == '<' || *a == '>' || *a == '"' || (unsigned char)*a >= 127)
            return 0;
    return 1;
}

enum { OPT_SAMPLE = 256, OPT_UNIQUE, OPT_EXPECT, OPT_SIZE, OPT_FROM, OPT_TIMEOUT, OPT_QUICKACK };

/* One option; returns 0, or -1 after saying what is wrong. */
static int parse_opt(int opt, const char *arg)
{
    uint64_t v = 0;
    char *end;

    switch (opt) {
    case 's':
        return parse_target(arg);
    case 'c':
        if (parse_u64(arg, 1, ML_MAX_CONNS, &v) != 0)
            break;
        cfg.conns = (unsigned)v;
        return 0;
    case 'n':
        return parse_u64(arg, 1, UINT64_MAX / 2, &cfg.max_msgs);
    case 't':
        cfg.seconds = strtod(arg, &end);
        if (end == arg || *end != '\0' || !(cfg.seconds > 0 && cfg.seconds <= 86400))
            break;
        return 0;
    case 'o':
        cfg.outdir = arg;
        return 0;
    case OPT_SAMPLE:
        return parse_u64(arg, 1, UINT64_MAX / 2, &cfg.sample_every);
    case OPT_UNIQUE:
        cfg.unique = 1;
        return 0;
    case OPT_QUICKACK:
        cfg.quickack = 1;
        return 0;
    case OPT_EXPECT:
        if (parse_u64(arg, 0, 100, &v) != 0)
            break;
        cfg.expect_sign = (long)v;
        return 0;
    case OPT_SIZE:
        if (parse_u64(arg, 0, ML_MAX_GEN_SIZE, &v) != 0)
            break;
        cfg.gen_size = (size_t)v;
        return 0;
    case OPT_FROM:
        cfg.from = arg;
        return valid_address(arg) ? 0 : -1;
    case OPT_TIMEOUT:
        if (parse_u64(arg, 1, 3600, &v) != 0)
            break;
        cfg.timeout_ms = (int)v * 1000;
        return 0;
    }
    return -1;
}

static int parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"sample", required_argument, NULL, OPT_SAMPLE},
        {"unique", no_argument, NULL, OPT_UNIQUE},
        {"quickack", no_argument, NULL, OPT_QUICKACK},
        {"expect-sign", required_argument, NULL, OPT_EXPECT},
        {"size", required_argument, NULL, OPT_SIZE},
        {"from", required_argument, NULL, OPT_FROM},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt, longidx = 0;

    cfg.files = xrealloc(NULL, (size_t)argc * sizeof(*cfg.files));
    while ((opt = getopt_long(argc, argv, "s:c:n:t:m:o:h", longopts, &longidx)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            exit(0);
        }
        if (opt == 'm') {
            cfg.files[cfg.nfiles++] = optarg;
        } else if (opt == '?' || parse_opt(opt, optarg) != 0) {
            if (opt != '?')
                fprintf(stderr, "milterload: bad value '%s' for %s%s\n", optarg,
                        opt < 256 ? "-" : "--",
                        opt < 256 ? (char[]){(char)opt, '\0'} : longopts[longidx].name);
            fprintf(stderr, "milterload: see --help\n");
            return -1;
        }
    }
    while (optind < argc) /* "-m a.eml b.eml": the rest are message files too */
        cfg.files[cfg.nfiles++] = argv[optind++];
    if (cfg.target == NULL || (cfg.sample_every != 0) != (cfg.outdir != NULL)) {
        fprintf(stderr, "milterload: %s (see --help)\n",
                cfg.target == NULL ? "-s SOCKET is required" : "--sample and -o go together");
        return -1;
    }
    if (cfg.max_msgs == 0 && cfg.seconds == 0)
        cfg.max_msgs = 1000;
    return 0;
}

/* Loads the message files, builds the generated body and the output dir. */
static int prepare(void)
{
    cfg.templates = xrealloc(NULL, (cfg.nfiles ? cfg.nfiles : 1) * sizeof(*cfg.templates));
    memset(cfg.templates, 0, (cfg.nfiles ? cfg.nfiles : 1) * sizeof(*cfg.templates));
    for (size_t i = 0; i < cfg.nfiles; i++)
        if (load_file(cfg.files[i], &cfg.templates[i]) != 0)
            return -1;
    make_filler(cfg.gen_size);
    snprintf(cfg.run_id, sizeof(cfg.run_id), "%lx.%lx", (unsigned long)time(NULL),
             (unsigned long)getpid());
    if (cfg.outdir != NULL && mkdir(cfg.outdir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "milterload: %s: %s\n", cfg.outdir, strerror(errno));
        return -1;
    }
    return 0;
}

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void cleanup(void)
{
    for (size_t i = 0; i < cfg.nfiles; i++)
        msg_free(&cfg.templates[i]);
    free(cfg.templates);
    free(cfg.files);
    buf_free(&filler);
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = on_interrupt};
    struct worker *ws;
    uint64_t t0;
    unsigned started = 0;
    int status;

    if (parse_args(argc, argv) != 0 || prepare() != 0) {
        cleanup();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    ws = xrealloc(NULL, cfg.conns * sizeof(*ws));
    memset(ws, 0, cfg.conns * sizeof(*ws));
    t0 = now_ns();
    if (cfg.seconds > 0)
        deadline_ns = t0 + (uint64_t)(cfg.seconds * 1e9);
    for (unsigned i = 0; i < cfg.conns; i++) {
        ws[i].id = i;
        if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "milterload: cannot start thread %u\n", i);
            break;
        }
        started++;
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);
    status = report(ws, started, (double)(now_ns() - t0) / 1e9);
    free(ws);
    cleanup();
    return started == cfg.conns ? status : 1;
}
