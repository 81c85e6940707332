/*
 * fuzz_proto.c - fuzz target for the agent protocol's frame decoder
 * (daemon/proto.h), the code that reads whatever a local process writes to
 * dkimhsmd's socket, and whatever a (possibly confused) daemon answers.
 *
 * Each input is tried twice:
 *   - as it is, a whole frame with its length prefix;
 *   - as a frame body (type, id, fields) with every byte XOR 0x80, behind a
 *     length prefix that matches. The seeds below are in that form: the
 *     deterministic driver takes its seeds as C strings, and a frame is full
 *     of 0x00 bytes, which XOR 0x80 turns into 0x80. The matching length
 *     also lets mutations reach past the framing into the fields.
 *
 * Invariants (abort on violation): ap_frame_size agrees with ap_decode; a
 * decoded frame's views lie inside it, hold no NUL and respect the limits;
 * and a decoded frame re-encodes to exactly the same bytes (the encoding is
 * canonical, so the decoder accepts nothing our encoders would not write).
 */
#include <stdlib.h>
#include <string.h>

#include "daemon/proto.h"
#include "tests/fuzz/fuzz.h"

const char *const fuzz_seeds[] = {
    /* SIGN */
    "\x81\x81\x82\x83\x84\x80\x8b\xe5\xf8\xe1\xed\xf0\xec\xe5\xae\xe3\xef\xed\x80\x82\xf3"
    "\xb1\x80\x80\x80\x80\xdb\xe6\xf2\xef\xed\xba\xe1\xc0\xe5\xf8\xe1\xed\xf0\xec\xe5\xae"
    "\xe3\xef\xed\x8d\x8a\xe4\xeb\xe9\xed\xad\xf3\xe9\xe7\xee\xe1\xf4\xf5\xf2\xe5\xba\xf6"
    "\xbd\xb1\xbb\xa0\xe1\xbd\xf2\xf3\xe1\xad\xf3\xe8\xe1\xb2\xb5\xb6\xbb\xa0\xe4\xbd\xe5"
    "\xf8\xe1\xed\xf0\xec\xe5\xae\xe3\xef\xed\xbb\xa0\xf3\xbd\xf3\xb1\xbb\xa0\xe8\xbd\xe6"
    "\xf2\xef\xed\xbb\xa0\xe2\xe8\xbd\xf8\xbb\xa0\xe2\xbd",
    /* LOOKUP */
    "\x82\x80\x80\x80\x82\x80\x90\xed\xe1\xe9\xec\xae\xe5\xf8\xe1\xed\xf0\xec\xe5\xae\xef"
    "\xf2\xe7",
    /* PING */
    "\x83\x80\x80\x80\x83",
    /* SIGN_REPLY OK */
    "\x01\x80\x80\x80\x84\x80\x80\x80\x80\x90\x91\xa2\xb3\xc4\xd5\xe6\xf7\x08\x19\x2a\x3b"
    "\x4c\x5d\x6e\x7f\x90",
    /* SIGN_REPLY REFUSED */
    "\x01\x80\x80\x80\x85\x81\x80\x91\xf3\xbd\xa0\xe4\xef\xe5\xf3\xa0\xee\xef\xf4\xa0\xed"
    "\xe1\xf4\xe3\xe8",
    /* LOOKUP_REPLY OK */
    "\x02\x80\x80\x80\x86\x80\x80\x8b\xe5\xf8\xe1\xed\xf0\xec\xe5\xae\xef\xf2\xe7\x82\x80"
    "\x83\xe5\xe4\xb1\x81\x80\x84\xf2\xf3\xe1\xb1\x80",
    /* LOOKUP_REPLY NOTFOUND */
    "\x02\x80\x80\x80\x87\x84\x80\x8d\xee\xef\xf4\xe8\xe9\xee\xe7\xa0\xf3\xe9\xe7\xee\xf3",
    /* PONG */
    "\x03\x80\x80\x80\x88\x80",
    /* ERROR */
    "\x7f\x80\x80\x80\x89\x80\x89\xe2\xe1\xe4\xa0\xe6\xf2\xe1\xed\xe5",
    /* unknown type, short id, LOOKUP_REPLY count 9, name over 255 */
    "\x84\x80\x80\x80\x81",
    "\x81\x80\x80",
    "\x02\x80\x80\x80\x86\x80\x80\x81\xe5\x89\x80\x81\xf3\x80",
    "\x82\x80\x80\x80\x82\x81\x80\xe1",
    NULL,
};

static const uint8_t *frame_lo, *frame_hi;

static void view(const void *p, size_t len, size_t max)
{
    REQUIRE(len <= max);
    if (len == 0)
        return;
    REQUIRE((const uint8_t *)p >= frame_lo && (const uint8_t *)p + len <= frame_hi);
    REQUIRE(memchr(p, '\0', len) == NULL || max == AP_MAX_FRAME);
}

/* A NUL-terminated copy, for the encoders that take C strings. */
static char *cstr(ap_str s)
{
    char *p = malloc(s.len + 1);
    REQUIRE(p != NULL);
    memcpy(p, s.p, s.len);
    p[s.len] = '\0';
    return p;
}

static int reencode(const ap_msg *m, dh_buf *out)
{
    char *s = NULL;
    int rc;
    switch (m->type) {
    case AP_SIGN:
        view(m->u.sign.domain.p, m->u.sign.domain.len, AP_MAX_NAME);
        view(m->u.sign.selector.p, m->u.sign.selector.len, AP_MAX_NAME);
        view(m->u.sign.block, m->u.sign.block_len, AP_MAX_FRAME);
        return ap_encode_sign(out, m->id, &m->u.sign);
    case AP_LOOKUP:
        view(m->u.lookup_domain.p, m->u.lookup_domain.len, AP_MAX_NAME);
        rc = ap_encode_lookup(out, m->id, s = cstr(m->u.lookup_domain));
        free(s);
        return rc;
    case AP_PING:
        return ap_encode_ping(out, m->id);
    case AP_SIGN_REPLY:
        view(m->u.sign_reply.sig, m->u.sign_reply.sig_len, AP_MAX_FRAME);
        view(m->u.sign_reply.reason.p, m->u.sign_reply.reason.len, UINT16_MAX);
        return ap_encode_sign_reply(out, m->id, &m->u.sign_reply);
    case AP_LOOKUP_REPLY:
        REQUIRE(m->u.lookup_reply.count <= AP_MAX_LOOKUP);
        for (size_t i = 0; i < m->u.lookup_reply.count; i++)
            view(m->u.lookup_reply.sel[i].selector.p, m->u.lookup_reply.sel[i].selector.len,
                 AP_MAX_NAME);
        return ap_encode_lookup_reply(out, m->id, &m->u.lookup_reply);
    case AP_PONG:
        return ap_encode_pong(out, m->id, m->u.pong_status);
    case AP_ERROR:
        view(m->u.error_reason.p, m->u.error_reason.len, UINT16_MAX);
        rc = ap_encode_error(out, m->id, s = cstr(m->u.error_reason));
        free(s);
        return rc;
    }
    abort(); /* ap_decode accepted a type it does not know */
}

static void check_frame(const uint8_t *f, size_t n)
{
    size_t flen = 0;
    int frc = ap_frame_size(f, n, &flen, NULL);
    ap_msg m;
    dh_err e = {0};
    int rc = ap_decode(f, n, &m, NULL, &e);
    REQUIRE(rc == DH_OK || (rc == DH_EINVAL && e.msg[0] != '\0'));
    if (rc != DH_OK)
        return;
    REQUIRE(frc == DH_OK && flen == n);
    frame_lo = f;
    frame_hi = f + n;
    dh_buf out = {0};
    REQUIRE(reencode(&m, &out) == DH_OK);
    REQUIRE(out.len == n && memcmp(out.data, f, n) == 0);
    dh_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_frame(data, size);
    if (size > AP_MAX_FRAME)
        return 0;
    uint8_t *f = malloc(size + 4);
    REQUIRE(f != NULL);
    f[0] = (uint8_t)(size >> 24);
    f[1] = (uint8_t)(size >> 16);
    f[2] = (uint8_t)(size >> 8);
    f[3] = (uint8_t)size;
    for (size_t i = 0; i < size; i++)
        f[4 + i] = data[i] ^ 0x80;
    check_frame(f, size + 4);
    free(f);
    return 0;
}
