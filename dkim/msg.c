/*
 * msg.c - header fields (RFC 5322 §2.2, §3.6) and the streaming message reader.
 *
 * The reader keeps only the header block (bounded) and the line being read;
 * body bytes go straight through a fixed staging buffer to the attached body
 * hashers. Line ends are made CRLF on the way, because that is the form the
 * MTA transmits and the form verifiers hash (RFC 6376 §3.4, FACTS).
 */
#include "dkim/msg.h"

#include "dkim/internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- header fields ---- */

struct field {
    uint8_t *p;
    size_t len, namelen;
    int space; /* WSP between name and colon */
};

struct dkim_hdrs {
    struct field *v;
    size_t n, cap;
};

static int is_wsp(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* RFC 5322 §3.6.8 ftext: printable US-ASCII except ':'. */
static int is_ftext(uint8_t c)
{
    return c >= 33 && c <= 126 && c != ':';
}

dkim_hdrs *dkim_hdrs_new(void)
{
    return calloc(1, sizeof(dkim_hdrs));
}

void dkim_hdrs_free(dkim_hdrs *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i].p);
    free(h->v);
    free(h);
}

/* Copies in to out with bare LF made CRLF; a bare CR cannot be mapped
 * unambiguously (FACTS: verifiers disagree), so it is refused. */
static int crlf_normalize(const uint8_t *in, size_t len, dh_buf *out, dh_err *e)
{
    int rc = dh_buf_reserve(out, len);
    for (size_t i = 0; i < len && rc == DH_OK; i++) {
        if (in[i] == '\r' && (i + 1 >= len || in[i + 1] != '\n'))
            return dh_err_set(e, DH_EUNSIGNABLE, "header field: bare CR at byte %zu", i);
        if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
            rc = dh_buf_putc(out, '\r');
        if (rc == DH_OK)
            rc = dh_buf_putc(out, in[i]);
    }
    return rc;
}

/* Checks "name [WSP] : value" where every CRLF is followed by WSP (a fold). */
static int field_check(const uint8_t *p, size_t len, struct field *f, dh_err *e)
{
    size_t i = 0;
    while (i < len && is_ftext(p[i]))
        i++;
    f->namelen = i;
    while (i < len && is_wsp(p[i]))
        i++;
    f->space = i > f->namelen;
    if (f->namelen == 0 || i >= len || p[i] != ':')
        return dh_err_set(e, DH_EINVAL,
                          "not a header field: %s at byte %zu (RFC 5322 §2.2 needs name ':')",
                          f->namelen == 0 ? "no field name" : "no colon after the name", i);
    for (i++; i + 1 < len; i++)
        if (p[i] == '\r' && (i + 2 >= len || !is_wsp(p[i + 2])))
            return dh_err_set(e, DH_EINVAL,
                              "header field \"%.*s\": line break not followed by WSP at byte %zu",
                              (int)f->namelen, (const char *)p, i);
    if (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n'))
        return dh_err_set(e, DH_EINVAL, "header field \"%.*s\": ends in a line break",
                          (int)f->namelen, (const char *)p);
    return DH_OK;
}

static int hdrs_push(dkim_hdrs *h, struct field *f)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 32;
        struct field *v = realloc(h->v, cap * sizeof(*v));
        if (v == NULL)
            return DH_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = *f;
    return DH_OK;
}

int dkim_hdrs_add_raw(dkim_hdrs *h, const uint8_t *field, size_t len, dh_err *e)
{
    dh_buf b = {0};
    struct field f = {0};
    int rc = crlf_normalize(field, len, &b, e);
    if (rc == DH_OK)
        rc = field_check(b.data != NULL ? b.data : (const uint8_t *)"", b.len, &f, e);
    if (rc == DH_OK) {
        f.len = b.len;
        f.p = b.data;
        rc = hdrs_push(h, &f);
    }
    if (rc != DH_OK)
        dh_buf_free(&b);
    return rc;
}

int dkim_hdrs_add(dkim_hdrs *h, const char *name, const uint8_t *value, size_t vlen, dh_err *e)
{
    dh_buf b = {0};
    int rc = dh_buf_puts(&b, name);
    if (rc == DH_OK)
        rc = dh_buf_putc(&b, ':');
    if (rc == DH_OK)
        rc = dh_buf_append(&b, value, vlen);
    if (rc == DH_OK)
        rc = dkim_hdrs_add_raw(h, b.data, b.len, e);
    dh_buf_free(&b);
    return rc;
}

size_t dkim_hdrs_count(const dkim_hdrs *h)
{
    return h->n;
}

const uint8_t *dkim_hdrs_field(const dkim_hdrs *h, size_t i, size_t *len, size_t *namelen)
{
    if (i >= h->n)
        return NULL;
    if (len != NULL)
        *len = h->v[i].len;
    if (namelen != NULL)
        *namelen = h->v[i].namelen;
    return h->v[i].p;
}

int dkim_hdrs_space_before_colon(const dkim_hdrs *h, size_t i)
{
    return i < h->n && h->v[i].space;
}

size_t dkim_hdrs_count_name(const dkim_hdrs *h, const char *name)
{
    size_t n = 0, nl = strlen(name);
    for (size_t i = 0; i < h->n; i++)
        n += (size_t)dkim_name_eq(h->v[i].p, h->v[i].namelen, name, nl);
    return n;
}

/* Index of the only From field, or an error naming what is wrong. */
static int single_from(const dkim_hdrs *h, size_t *idx, dh_err *e)
{
    size_t n = 0, at = 0;
    for (size_t i = 0; i < h->n; i++)
        if (dkim_name_eq(h->v[i].p, h->v[i].namelen, "from", 4)) {
            n++;
            at = i;
        }
    if (n == 0)
        return dh_err_set(e, DH_EUNSIGNABLE, "no From: header field (RFC 6376 §5.4 requires one)");
    if (n > 1)
        return dh_err_set(e, DH_EUNSIGNABLE,
                          "%zu From: header fields; the signing domain would be ambiguous "
                          "(RFC 5322 §3.6 allows one)",
                          n);
    if (h->v[at].space)
        return dh_err_set(e, DH_EUNSIGNABLE,
                          "From: header field %zu is written \"From :\", which verifiers "
                          "read differently",
                          at + 1);
    *idx = at;
    return DH_OK;
}

int dkim_hdrs_check_signable(const dkim_hdrs *h, dh_err *e)
{
    size_t idx;
    return single_from(h, &idx, e);
}

/* Copies a From value with folding removed, each comment replaced by a space
 * and each quoted string by one 'q' (RFC 5322 §3.2.2, §3.2.4), so the address
 * structure can then be read with plain byte scans. */
static int from_simplify(const uint8_t *v, size_t len, dh_buf *out, dh_err *e)
{
    int depth = 0, inq = 0, rc = DH_OK;
    for (size_t i = 0; i < len && rc == DH_OK; i++) {
        uint8_t c = v[i];
        if (c == '\r' || c == '\n')
            continue;
        if (inq || depth > 0) {
            if (c == '\\')
                i++; /* quoted-pair */
            else if (inq && c == '"')
                inq = 0;
            else if (!inq && (c == '(' || c == ')'))
                depth += c == '(' ? 1 : -1;
            if (!inq && depth == 0)
                rc = dh_buf_putc(out, ' ');
            continue;
        }
        if (c == '"')
            inq = 1;
        else if (c == '(')
            depth = 1;
        rc = dh_buf_putc(out, c == '"' ? 'q' : c == '(' ? ' ' : c);
    }
    if (rc == DH_OK && (inq || depth > 0))
        rc = dh_err_set(e, DH_EUNSIGNABLE, "From: unterminated %s",
                        inq ? "quoted string" : "comment");
    return rc;
}

static int has_any(const uint8_t *p, size_t n, const char *set)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != '\0' && strchr(set, p[i]) != NULL)
            return 1;
    return 0;
}

/* Finds the addr-spec in a simplified From value: the part in angle brackets,
 * or the whole value. Several mailboxes or a group make the author, and so
 * the DMARC alignment, ambiguous (RFC 7489 §6.6.1): refused. */
static int from_addr(const uint8_t *s, size_t n, size_t *ab, size_t *ae, dh_err *e)
{
    const uint8_t *lt = memchr(s, '<', n);
    size_t b = 0, en = n;
    if (lt != NULL) {
        b = (size_t)(lt - s);
        const uint8_t *gt = memchr(lt, '>', n - b);
        en = gt != NULL ? (size_t)(gt - s) : n;
        /* A display name may hold a bare '@' (sloppy but common); never a list. */
        if (gt == NULL || has_any(s, b, ",;:<>") || has_any(s + b + 1, en - b - 1, ",;<>"))
            goto several;
        for (size_t i = en + 1; i < n; i++)
            if (!is_wsp(s[i]))
                goto several;
        b++;
    } else if (has_any(s, n, ",;:<>")) {
        goto several;
    }
    *ab = b;
    *ae = en;
    return DH_OK;
several:
    return dh_err_set(e, DH_EUNSIGNABLE,
                      "From: is not a single mailbox (several addresses, a group or a stray "
                      "'<', ',', ':' or ';')");
}

static int from_domain_of(const uint8_t *s, size_t n, dh_buf *out, dh_err *e)
{
    size_t ab = 0, ae = 0, at = SIZE_MAX;
    int rc = from_addr(s, n, &ab, &ae, e);
    if (rc != DH_OK)
        return rc;
    for (size_t i = ab; i < ae; i++)
        if (s[i] == '@')
            at = i;
    if (at == SIZE_MAX)
        return dh_err_set(e, DH_EUNSIGNABLE, "From: address has no '@'");
    /* obs-domain (RFC 5322 §4.4) allows CFWS around the dots: drop the WSP. */
    uint8_t dom[256];
    size_t dn = 0;
    for (size_t i = at + 1; i < ae; i++)
        if (!is_wsp(s[i]) && dn < sizeof(dom))
            dom[dn++] = dkim_lower(s[i]);
    if (dn == sizeof(dom) || !dkim_dns_name_ok((const char *)dom, dn))
        return dh_err_set(e, DH_EUNSIGNABLE,
                          "From: domain \"%.*s\" is not a DNS name (address literals and "
                          "non-ASCII names cannot be aligned with d=)",
                          (int)(ae - at - 1 > 200 ? 200 : ae - at - 1), (const char *)s + at + 1);
    return dh_buf_append(out, dom, dn);
}

int dkim_hdrs_from_domain(const dkim_hdrs *h, dh_buf *out, dh_err *e)
{
    size_t idx;
    int rc = single_from(h, &idx, e);
    if (rc != DH_OK)
        return rc;
    const struct field *f = &h->v[idx];
    const uint8_t *colon = memchr(f->p, ':', f->len);
    size_t vb = (size_t)(colon - f->p) + 1;
    dh_buf simple = {0};
    rc = from_simplify(f->p + vb, f->len - vb, &simple, e);
    if (rc == DH_OK)
        rc = from_domain_of(simple.data != NULL ? simple.data : (const uint8_t *)"", simple.len,
                            out, e);
    dh_buf_free(&simple);
    return rc;
}

/* ---- streaming reader ---- */

#define DEFAULT_MAX_HEADER ((size_t)1 << 20)
#define STAGE_SIZE 4096

enum phase { PH_HEADERS, PH_BODY, PH_ENDED };

struct dkim_msg {
    dkim_hdrs *hdrs;
    dkim_body *bodies[DKIM_MSG_MAX_BODIES];
    size_t nbodies;
    size_t max_hdr, hdr_bytes;
    unsigned long long line;       /* 1-based number of the line being read */
    unsigned long long field_line; /* where the field being assembled started */
    enum phase phase;
    int cr;      /* last byte was CR; its LF has not been seen yet */
    int uses_lf; /* -1 until the first line end */
    int fed;
    int failed;
    dh_err err; /* the first error, replayed on later calls */
    dh_buf cur_line;
    dh_buf cur_field;
    size_t nstage;
    uint8_t stage[STAGE_SIZE];
};

dkim_msg *dkim_msg_new(size_t max_header_bytes)
{
    dkim_msg *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->hdrs = dkim_hdrs_new();
    if (m->hdrs == NULL) {
        free(m);
        return NULL;
    }
    m->max_hdr = max_header_bytes ? max_header_bytes : DEFAULT_MAX_HEADER;
    m->line = 1;
    m->uses_lf = -1;
    return m;
}

void dkim_msg_free(dkim_msg *m)
{
    if (m == NULL)
        return;
    dkim_hdrs_free(m->hdrs);
    dh_buf_free(&m->cur_line);
    dh_buf_free(&m->cur_field);
    free(m);
}

int dkim_msg_attach_body(dkim_msg *m, dkim_body *b)
{
    if (m->fed || m->nbodies == DKIM_MSG_MAX_BODIES)
        return DH_ESTATE;
    m->bodies[m->nbodies++] = b;
    return DH_OK;
}

const dkim_hdrs *dkim_msg_hdrs(const dkim_msg *m)
{
    return m->hdrs;
}

int dkim_msg_uses_lf(const dkim_msg *m)
{
    return m->uses_lf == 1;
}

static int bare_cr(dkim_msg *m, dh_err *e)
{
    return dh_err_set(e, DH_EUNSIGNABLE,
                      "line %llu: bare CR (a CR not followed by LF); verifiers disagree on "
                      "what it means, so the message cannot be signed",
                      m->line);
}

static void saw_line_end(dkim_msg *m, int bare_lf)
{
    if (m->uses_lf < 0)
        m->uses_lf = bare_lf;
    m->line++;
}

/* Stores the field assembled so far (its lines are already checked). */
static int commit_field(dkim_msg *m, dh_err *e)
{
    if (m->cur_field.len == 0)
        return DH_OK;
    int rc = dkim_hdrs_add_raw(m->hdrs, m->cur_field.data, m->cur_field.len, e);
    if (rc != DH_OK)
        dh_err_prefix(e, "line %llu", m->field_line);
    dh_buf_reset(&m->cur_field);
    return rc;
}

/* The first line of a field must be "name [WSP] :" (RFC 5322 §2.2). */
static int check_field_start(dkim_msg *m, const uint8_t *p, size_t len, dh_err *e)
{
    size_t i = 0;
    if (len >= 5 && memcmp(p, "From ", 5) == 0)
        return dh_err_set(e, DH_EUNSIGNABLE,
                          "line %llu: mbox \"From \" separator line is not a header field",
                          m->line);
    while (i < len && is_ftext(p[i]))
        i++;
    size_t nl = i;
    while (i < len && is_wsp(p[i]))
        i++;
    if (nl == 0 || i >= len || p[i] != ':')
        return dh_err_set(e, DH_EUNSIGNABLE,
                          "line %llu: not a header field (%s at byte %zu of the line)", m->line,
                          nl == 0 ? "no field name" : "no colon after the name", i);
    return DH_OK;
}

static int header_line(dkim_msg *m, dh_err *e)
{
    const uint8_t *p = m->cur_line.data;
    size_t len = m->cur_line.len;
    int rc = DH_OK;
    if (len == 0) { /* the blank line ending the header block (RFC 5322 §2.1) */
        rc = commit_field(m, e);
        m->phase = PH_BODY;
    } else if (is_wsp(p[0])) {
        if (m->cur_field.len == 0)
            return dh_err_set(e, DH_EUNSIGNABLE,
                              "line %llu: continuation line before the first header field",
                              m->line);
        rc = dh_buf_append(&m->cur_field, "\r\n", 2);
        if (rc == DH_OK)
            rc = dh_buf_append(&m->cur_field, p, len);
    } else {
        rc = check_field_start(m, p, len, e);
        if (rc == DH_OK)
            rc = commit_field(m, e);
        if (rc == DH_OK)
            rc = dh_buf_append(&m->cur_field, p, len);
        m->field_line = m->line;
    }
    dh_buf_reset(&m->cur_line);
    return rc;
}

static int header_byte(dkim_msg *m, uint8_t c, dh_err *e)
{
    if (++m->hdr_bytes > m->max_hdr)
        return dh_err_set(e, DH_EUNSIGNABLE, "line %llu: header block larger than %zu bytes",
                          m->line, m->max_hdr);
    if (m->cr) {
        m->cr = 0;
        if (c != '\n')
            return bare_cr(m, e);
        int rc = header_line(m, e);
        saw_line_end(m, 0);
        return rc;
    }
    if (c == '\r') {
        m->cr = 1;
        return DH_OK;
    }
    if (c == '\n') {
        int rc = header_line(m, e);
        saw_line_end(m, 1);
        return rc;
    }
    return dh_buf_putc(&m->cur_line, c);
}

static int stage_flush(dkim_msg *m)
{
    int rc = DH_OK;
    for (size_t i = 0; i < m->nbodies && rc == DH_OK; i++)
        rc = dkim_body_update(m->bodies[i], m->stage, m->nstage);
    m->nstage = 0;
    return rc;
}

static int stage_put(dkim_msg *m, const void *p, size_t n)
{
    int rc = DH_OK;
    if (m->nstage + n > STAGE_SIZE)
        rc = stage_flush(m);
    memcpy(m->stage + m->nstage, p, n);
    m->nstage += n;
    return rc;
}

static int body_bytes(dkim_msg *m, const uint8_t *p, size_t len, dh_err *e)
{
    int rc = DH_OK;
    for (size_t i = 0; i < len && rc == DH_OK; i++) {
        uint8_t c = p[i];
        if (m->cr) {
            m->cr = 0;
            if (c != '\n')
                return bare_cr(m, e);
            rc = stage_put(m, "\r\n", 2);
            saw_line_end(m, 0);
        } else if (c == '\r') {
            m->cr = 1;
        } else if (c == '\n') {
            rc = stage_put(m, "\r\n", 2); /* bare LF: the MTA will send CRLF */
            saw_line_end(m, 1);
        } else {
            rc = stage_put(m, &c, 1);
        }
    }
    return rc;
}

static int fail(dkim_msg *m, int rc, dh_err *e)
{
    /* Errors without a message of their own (ENOMEM) still name the line. */
    if (e != NULL && e->code != rc)
        dh_err_set(e, rc, "line %llu: %s", m->line, dh_strstatus(rc));
    m->failed = 1;
    if (e != NULL)
        m->err = *e;
    m->err.code = rc;
    return rc;
}

static int replay(const dkim_msg *m, dh_err *e)
{
    if (e != NULL)
        *e = m->err;
    return m->err.code;
}

int dkim_msg_feed(dkim_msg *m, const uint8_t *data, size_t len, dh_err *e)
{
    if (m->failed)
        return replay(m, e);
    if (m->phase == PH_ENDED)
        return dh_err_set(e, DH_ESTATE, "message: data fed after the end");
    dh_err_clear(e);
    m->fed = 1;
    int rc = DH_OK;
    size_t i = 0;
    while (i < len && rc == DH_OK && m->phase == PH_HEADERS)
        rc = header_byte(m, data[i++], e);
    if (rc == DH_OK && m->phase == PH_BODY)
        rc = body_bytes(m, data + i, len - i, e);
    if (rc == DH_OK)
        rc = stage_flush(m);
    return rc == DH_OK ? DH_OK : fail(m, rc, e);
}

int dkim_msg_end(dkim_msg *m, dh_err *e)
{
    if (m->failed)
        return replay(m, e);
    if (m->phase == PH_ENDED)
        return dh_err_set(e, DH_ESTATE, "message: ended twice");
    dh_err_clear(e);
    int rc = DH_OK;
    if (m->cr)
        rc = bare_cr(m, e);
    /* A message without a blank line is all header (RFC 5322 §2.1). */
    if (rc == DH_OK && m->phase == PH_HEADERS && m->cur_line.len > 0)
        rc = header_line(m, e);
    if (rc == DH_OK && m->phase == PH_HEADERS)
        rc = commit_field(m, e);
    if (rc == DH_OK)
        rc = stage_flush(m);
    m->phase = PH_ENDED;
    return rc == DH_OK ? DH_OK : fail(m, rc, e);
}
