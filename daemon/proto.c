/*
 * proto.c - the agent protocol's frames (docs/PROTOCOL.md).
 *
 * Decoding reads through typed, bounds-checked getters (OpenSMTPD mproc.c):
 * each names the field it reads, so a malformed frame is reported as "which
 * field of which frame", and a frame with bytes left after its body is
 * refused (m_end()). Encoders refuse whatever the decoder would refuse, so
 * everything we send decodes on the other side.
 */
#include "daemon/proto.h"

#include <string.h>

/* ---- reading ---- */

/* Field errors name the field; ap_decode() then prefixes the frame's type. */
struct rd {
    const uint8_t *p;
    size_t len, off;
    dh_err *e;
};

static int rd_need(struct rd *r, size_t n, const char *field)
{
    if (r->len - r->off < n)
        return dh_err_set(r->e, DH_EINVAL, "truncated in %s", field);
    return DH_OK;
}

static int get_u8(struct rd *r, const char *field, uint8_t *v)
{
    if (rd_need(r, 1, field) != DH_OK)
        return DH_EINVAL;
    *v = r->p[r->off++];
    return DH_OK;
}

static int get_u16(struct rd *r, const char *field, uint16_t *v)
{
    if (rd_need(r, 2, field) != DH_OK)
        return DH_EINVAL;
    const uint8_t *q = r->p + r->off;
    *v = (uint16_t)((unsigned)q[0] << 8 | q[1]);
    r->off += 2;
    return DH_OK;
}

static uint32_t be32(const uint8_t *q)
{
    return (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
}

static int get_u32(struct rd *r, const char *field, uint32_t *v)
{
    if (rd_need(r, 4, field) != DH_OK)
        return DH_EINVAL;
    *v = be32(r->p + r->off);
    r->off += 4;
    return DH_OK;
}

/* A str holds no NUL byte: every consumer turns names and reasons into C
 * strings, and "example.com\0.evil" must not become "example.com" there. */
static int get_str(struct rd *r, const char *field, size_t max, ap_str *s)
{
    uint16_t n;
    if (get_u16(r, field, &n) != DH_OK || rd_need(r, n, field) != DH_OK)
        return DH_EINVAL;
    if (n > max)
        return dh_err_set(r->e, DH_EINVAL, "%s is %u bytes, over %zu", field, (unsigned)n, max);
    const char *p = (const char *)r->p + r->off;
    if (memchr(p, '\0', n) != NULL)
        return dh_err_set(r->e, DH_EINVAL, "%s holds a NUL byte", field);
    s->p = p;
    s->len = n;
    r->off += n;
    return DH_OK;
}

static int get_blob(struct rd *r, const char *field, const uint8_t **p, size_t *len)
{
    uint32_t n;
    if (get_u32(r, field, &n) != DH_OK || rd_need(r, n, field) != DH_OK)
        return DH_EINVAL;
    *p = r->p + r->off;
    *len = n;
    r->off += n;
    return DH_OK;
}

static int get_alg(struct rd *r, const char *field, uint8_t *alg)
{
    if (get_u8(r, field, alg) != DH_OK)
        return DH_EINVAL;
    if (*alg > 1) /* enum dkim_alg: 0 rsa-sha256, 1 ed25519-sha256 */
        return dh_err_set(r->e, DH_EINVAL, "%s: unknown algorithm %u", field, (unsigned)*alg);
    return DH_OK;
}

static int status_known(uint8_t s)
{
    return s <= AP_NOTFOUND;
}

static int get_status(struct rd *r, uint8_t *st)
{
    if (get_u8(r, "status", st) != DH_OK)
        return DH_EINVAL;
    if (!status_known(*st))
        return dh_err_set(r->e, DH_EINVAL, "unknown status %u", (unsigned)*st);
    return DH_OK;
}

/* Trailing bytes are an error (OpenSMTPD m_end()). */
static int rd_end(struct rd *r)
{
    if (r->off != r->len)
        return dh_err_set(r->e, DH_EINVAL, "%zu bytes left after the body", r->len - r->off);
    return DH_OK;
}

/* ---- decoding, one body per type ---- */

static int dec_sign(struct rd *r, ap_sign *s)
{
    if (get_str(r, "domain", AP_MAX_NAME, &s->domain) != DH_OK ||
        get_str(r, "selector", AP_MAX_NAME, &s->selector) != DH_OK ||
        get_alg(r, "alg", &s->alg) != DH_OK ||
        get_blob(r, "block", &s->block, &s->block_len) != DH_OK)
        return DH_EINVAL;
    return DH_OK;
}

static int dec_sign_reply(struct rd *r, ap_sign_reply *s)
{
    if (get_status(r, &s->status) != DH_OK)
        return DH_EINVAL;
    if (s->status == AP_OK)
        return get_blob(r, "signature", &s->sig, &s->sig_len);
    return get_str(r, "reason", UINT16_MAX, &s->reason);
}

static int dec_lookup_reply(struct rd *r, ap_lookup_reply *l)
{
    if (get_status(r, &l->status) != DH_OK)
        return DH_EINVAL;
    if (l->status != AP_OK)
        return get_str(r, "reason", UINT16_MAX, &l->reason);
    uint8_t n;
    if (get_str(r, "domain", AP_MAX_NAME, &l->domain) != DH_OK || get_u8(r, "count", &n) != DH_OK)
        return DH_EINVAL;
    if (n < 1 || n > AP_MAX_LOOKUP)
        return dh_err_set(r->e, DH_EINVAL, "count %u is not 1..%d", (unsigned)n, AP_MAX_LOOKUP);
    for (size_t i = 0; i < n; i++)
        if (get_str(r, "selector", AP_MAX_NAME, &l->sel[i].selector) != DH_OK ||
            get_alg(r, "alg", &l->sel[i].alg) != DH_OK)
            return DH_EINVAL;
    l->count = n;
    return DH_OK;
}

static const char *type_name(uint8_t t)
{
    switch (t) {
    case AP_SIGN:
        return "SIGN";
    case AP_LOOKUP:
        return "LOOKUP";
    case AP_PING:
        return "PING";
    case AP_SIGN_REPLY:
        return "SIGN_REPLY";
    case AP_LOOKUP_REPLY:
        return "LOOKUP_REPLY";
    case AP_PONG:
        return "PONG";
    case AP_ERROR:
        return "ERROR";
    }
    return NULL;
}

static int dec_body(struct rd *r, ap_msg *m)
{
    switch (m->type) {
    case AP_SIGN:
        return dec_sign(r, &m->u.sign);
    case AP_LOOKUP:
        return get_str(r, "domain", AP_MAX_NAME, &m->u.lookup_domain);
    case AP_PING:
        return DH_OK;
    case AP_SIGN_REPLY:
        return dec_sign_reply(r, &m->u.sign_reply);
    case AP_LOOKUP_REPLY:
        return dec_lookup_reply(r, &m->u.lookup_reply);
    case AP_PONG:
        return get_status(r, &m->u.pong_status);
    case AP_ERROR:
        return get_str(r, "reason", UINT16_MAX, &m->u.error_reason);
    }
    return dh_err_set(r->e, DH_EINVAL, "unknown type 0x%02x", (unsigned)m->type);
}

int ap_frame_size(const uint8_t *buf, size_t len, size_t *frame_len, dh_err *e)
{
    if (len < 4) {
        *frame_len = 0;
        return DH_OK;
    }
    uint32_t n = be32(buf);
    if (n == 0 || n > AP_MAX_FRAME)
        return dh_err_set(e, DH_EINVAL, "agent frame: length %lu is not 1..%u", (unsigned long)n,
                          AP_MAX_FRAME);
    *frame_len = (size_t)n + 4;
    return DH_OK;
}

static int decode(struct rd *r, ap_msg *m, uint32_t *id_out)
{
    uint32_t n;
    if (get_u32(r, "length", &n) != DH_OK)
        return DH_EINVAL;
    if (n == 0 || n > AP_MAX_FRAME)
        return dh_err_set(r->e, DH_EINVAL, "length %lu is not 1..%u", (unsigned long)n,
                          AP_MAX_FRAME);
    if (n != r->len - 4)
        return dh_err_set(r->e, DH_EINVAL, "length %lu does not match the %zu bytes given",
                          (unsigned long)n, r->len - 4);
    if (get_u8(r, "type", &m->type) != DH_OK || get_u32(r, "id", &m->id) != DH_OK)
        return DH_EINVAL;
    if (id_out != NULL)
        *id_out = m->id;
    if (dec_body(r, m) != DH_OK || rd_end(r) != DH_OK)
        return DH_EINVAL;
    return DH_OK;
}

int ap_decode(const uint8_t *frame, size_t frame_len, ap_msg *out, uint32_t *id_out, dh_err *e)
{
    struct rd r = {.p = frame, .len = frame_len, .off = 0, .e = e};
    ap_msg m;
    memset(&m, 0, sizeof(m));
    if (decode(&r, &m, id_out) != DH_OK) {
        const char *t = r.off > 4 ? type_name(m.type) : NULL;
        if (t != NULL)
            dh_err_prefix(e, "agent %s frame", t);
        else
            dh_err_prefix(e, "agent frame");
        return DH_EINVAL;
    }
    *out = m;
    return DH_OK;
}

/* ---- encoding ---- */

static int put_u16(dh_buf *b, uint16_t v)
{
    uint8_t q[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return dh_buf_append(b, q, 2);
}

static int put_u32(dh_buf *b, uint32_t v)
{
    uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return dh_buf_append(b, q, 4);
}

static int str_ok(const char *p, size_t len, size_t max)
{
    return len <= max && (len == 0 || (p != NULL && memchr(p, '\0', len) == NULL));
}

static int put_str(dh_buf *b, const char *p, size_t len)
{
    int rc = put_u16(b, (uint16_t)len);
    return rc != DH_OK ? rc : dh_buf_append(b, p, len);
}

static int put_blob(dh_buf *b, const uint8_t *p, size_t len)
{
    if (len > AP_MAX_FRAME)
        return DH_EINVAL;
    int rc = put_u32(b, (uint32_t)len);
    return rc != DH_OK ? rc : dh_buf_append(b, p, len);
}

/* Starts a frame at the end of out: a length to be patched, type, id. */
static int frame_begin(dh_buf *out, uint8_t type, uint32_t id)
{
    int rc = put_u32(out, 0);
    if (rc == DH_OK)
        rc = dh_buf_putc(out, type);
    if (rc == DH_OK)
        rc = put_u32(out, id);
    return rc;
}

/* Patches the length of the frame that starts at start, or, when the body
 * failed or the frame is too long, takes it all back: out is as before. */
static int frame_end(dh_buf *out, size_t start, int rc)
{
    if (rc == DH_OK && out->len - start - 4 > AP_MAX_FRAME)
        rc = DH_EINVAL;
    if (rc != DH_OK) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
        return rc;
    }
    uint32_t n = (uint32_t)(out->len - start - 4);
    uint8_t *q = out->data + start;
    q[0] = (uint8_t)(n >> 24);
    q[1] = (uint8_t)(n >> 16);
    q[2] = (uint8_t)(n >> 8);
    q[3] = (uint8_t)n;
    return DH_OK;
}

int ap_encode_sign(dh_buf *out, uint32_t id, const ap_sign *s)
{
    if (!str_ok(s->domain.p, s->domain.len, AP_MAX_NAME) ||
        !str_ok(s->selector.p, s->selector.len, AP_MAX_NAME) || s->alg > 1 ||
        (s->block == NULL && s->block_len > 0))
        return DH_EINVAL;
    size_t start = out->len;
    int rc = frame_begin(out, AP_SIGN, id);
    if (rc == DH_OK)
        rc = put_str(out, s->domain.p, s->domain.len);
    if (rc == DH_OK)
        rc = put_str(out, s->selector.p, s->selector.len);
    if (rc == DH_OK)
        rc = dh_buf_putc(out, s->alg);
    if (rc == DH_OK)
        rc = put_blob(out, s->block, s->block_len);
    return frame_end(out, start, rc);
}

int ap_encode_lookup(dh_buf *out, uint32_t id, const char *domain)
{
    size_t len = strlen(domain);
    if (len > AP_MAX_NAME)
        return DH_EINVAL;
    size_t start = out->len;
    int rc = frame_begin(out, AP_LOOKUP, id);
    if (rc == DH_OK)
        rc = put_str(out, domain, len);
    return frame_end(out, start, rc);
}

int ap_encode_ping(dh_buf *out, uint32_t id)
{
    size_t start = out->len;
    return frame_end(out, start, frame_begin(out, AP_PING, id));
}

int ap_encode_sign_reply(dh_buf *out, uint32_t id, const ap_sign_reply *r)
{
    if (!status_known(r->status))
        return DH_EINVAL;
    if (r->status == AP_OK ? (r->sig == NULL && r->sig_len > 0)
                           : !str_ok(r->reason.p, r->reason.len, UINT16_MAX))
        return DH_EINVAL;
    size_t start = out->len;
    int rc = frame_begin(out, AP_SIGN_REPLY, id);
    if (rc == DH_OK)
        rc = dh_buf_putc(out, r->status);
    if (rc == DH_OK && r->status == AP_OK)
        rc = put_blob(out, r->sig, r->sig_len);
    else if (rc == DH_OK)
        rc = put_str(out, r->reason.p, r->reason.len);
    return frame_end(out, start, rc);
}

static int lookup_reply_ok(const ap_lookup_reply *r)
{
    if (!status_known(r->status))
        return 0;
    if (r->status != AP_OK)
        return str_ok(r->reason.p, r->reason.len, UINT16_MAX);
    if (!str_ok(r->domain.p, r->domain.len, AP_MAX_NAME) || r->count < 1 ||
        r->count > AP_MAX_LOOKUP)
        return 0;
    for (size_t i = 0; i < r->count; i++)
        if (!str_ok(r->sel[i].selector.p, r->sel[i].selector.len, AP_MAX_NAME) || r->sel[i].alg > 1)
            return 0;
    return 1;
}

int ap_encode_lookup_reply(dh_buf *out, uint32_t id, const ap_lookup_reply *r)
{
    if (!lookup_reply_ok(r))
        return DH_EINVAL;
    size_t start = out->len;
    int rc = frame_begin(out, AP_LOOKUP_REPLY, id);
    if (rc == DH_OK)
        rc = dh_buf_putc(out, r->status);
    if (rc == DH_OK && r->status != AP_OK) {
        rc = put_str(out, r->reason.p, r->reason.len);
        return frame_end(out, start, rc);
    }
    if (rc == DH_OK)
        rc = put_str(out, r->domain.p, r->domain.len);
    if (rc == DH_OK)
        rc = dh_buf_putc(out, (uint8_t)r->count);
    for (size_t i = 0; rc == DH_OK && i < r->count; i++) {
        rc = put_str(out, r->sel[i].selector.p, r->sel[i].selector.len);
        if (rc == DH_OK)
            rc = dh_buf_putc(out, r->sel[i].alg);
    }
    return frame_end(out, start, rc);
}

int ap_encode_pong(dh_buf *out, uint32_t id, uint8_t status)
{
    if (!status_known(status))
        return DH_EINVAL;
    size_t start = out->len;
    int rc = frame_begin(out, AP_PONG, id);
    if (rc == DH_OK)
        rc = dh_buf_putc(out, status);
    return frame_end(out, start, rc);
}

int ap_encode_error(dh_buf *out, uint32_t id, const char *reason)
{
    size_t len = strlen(reason);
    if (len > UINT16_MAX)
        return DH_EINVAL;
    size_t start = out->len;
    int rc = frame_begin(out, AP_ERROR, id);
    if (rc == DH_OK)
        rc = put_str(out, reason, len);
    return frame_end(out, start, rc);
}

const char *ap_status_name(uint8_t status)
{
    switch (status) {
    case AP_OK:
        return "OK";
    case AP_REFUSED:
        return "REFUSED";
    case AP_TEMPFAIL:
        return "TEMPFAIL";
    case AP_BADREQ:
        return "BADREQ";
    case AP_NOTFOUND:
        return "NOTFOUND";
    }
    return "unknown status";
}
