/*
 * test_proto.c - the agent protocol's frames (daemon/proto.h): every frame
 * type round-trips, and every malformed frame is refused with the field
 * named: truncated anywhere, trailing bytes, lengths out of bounds, unknown
 * type, status or algorithm, names too long, LOOKUP counts out of range.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/proto.h"
#include "tests/lib/check.h"

#define S(lit) ((ap_str){(lit), sizeof(lit) - 1})

static const uint8_t block[] = "from:a@example.com\r\ndkim-signature:v=1; a=ed25519-sha256; "
                               "d=example.com; s=s1; h=from; bh=x; b=";

static int str_eq(ap_str s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

/* ---- a hand-made frame builder, for what our encoders refuse to write ---- */

static void put8(dh_buf *b, unsigned v)
{
    CHECK_OK(dh_buf_putc(b, (uint8_t)v));
}

static void put16(dh_buf *b, unsigned v)
{
    put8(b, v >> 8);
    put8(b, v);
}

static void put32(dh_buf *b, uint32_t v)
{
    put16(b, v >> 16);
    put16(b, v & 0xffff);
}

static void putstr(dh_buf *b, const char *s, size_t n)
{
    put16(b, (unsigned)n);
    CHECK_OK(dh_buf_append(b, s, n));
}

/* Starts a frame: length placeholder, type, id. */
static void begin(dh_buf *b, unsigned type, uint32_t id)
{
    dh_buf_reset(b);
    put32(b, 0);
    put8(b, type);
    put32(b, id);
}

/* Patches the length prefix to what follows it. */
static void fix_len(dh_buf *b)
{
    uint32_t n = (uint32_t)(b->len - 4);
    b->data[0] = (uint8_t)(n >> 24);
    b->data[1] = (uint8_t)(n >> 16);
    b->data[2] = (uint8_t)(n >> 8);
    b->data[3] = (uint8_t)n;
}

/* Decodes b, expecting failure with a message containing want. */
static void expect_bad(const dh_buf *b, const char *want, int line)
{
    ap_msg m;
    dh_err e = {0};
    int rc = ap_decode(b->data, b->len, &m, NULL, &e);
    if (rc != DH_EINVAL)
        check_fail(__FILE__, line, "decoded (rc %d), expected failure naming '%s'", rc, want);
    else if (strstr(e.msg, want) == NULL)
        check_fail(__FILE__, line, "message '%s' lacks '%s'", e.msg, want);
}
#define EXPECT_BAD(b, want) expect_bad((b), (want), __LINE__)

static void decode_ok(const dh_buf *b, ap_msg *m)
{
    dh_err e = {0};
    size_t flen = 0;
    CHECK_OK(ap_frame_size(b->data, b->len, &flen, &e));
    CHECK_EQ_INT(flen, b->len);
    int rc = ap_decode(b->data, b->len, m, NULL, &e);
    if (rc != DH_OK)
        check_fail(__FILE__, __LINE__, "ap_decode: %s", e.msg);
}

/* ---- one valid frame of each type ---- */

static void enc_sign(dh_buf *b)
{
    ap_sign s = {S("example.com"), S("s1"), 1, block, sizeof(block) - 1};
    CHECK_OK(ap_encode_sign(b, 0x01020304, &s));
}

static void enc_lookup(dh_buf *b)
{
    CHECK_OK(ap_encode_lookup(b, 7, "mail.example.org"));
}

static void enc_ping(dh_buf *b)
{
    CHECK_OK(ap_encode_ping(b, 0xffffffffu));
}

static void enc_sign_reply_ok(dh_buf *b)
{
    static const uint8_t sig[64] = {1, 2, 3, 0, 0xff};
    ap_sign_reply r = {.status = AP_OK, .sig = sig, .sig_len = sizeof(sig)};
    CHECK_OK(ap_encode_sign_reply(b, 9, &r));
}

static void enc_sign_reply_refused(dh_buf *b)
{
    ap_sign_reply r = {.status = AP_REFUSED, .reason = S("d= does not match the request")};
    CHECK_OK(ap_encode_sign_reply(b, 10, &r));
}

static void enc_lookup_reply_ok(dh_buf *b)
{
    ap_lookup_reply r = {.status = AP_OK, .domain = S("example.org"), .count = AP_MAX_LOOKUP};
    static const char *const names[] = {"a", "bb", "ccc", "dddd", "e", "f", "g", "h"};
    for (size_t i = 0; i < AP_MAX_LOOKUP; i++)
        r.sel[i] = (ap_selector){{names[i], strlen(names[i])}, (uint8_t)(i % 2)};
    CHECK_OK(ap_encode_lookup_reply(b, 11, &r));
}

static void enc_lookup_reply_notfound(dh_buf *b)
{
    ap_lookup_reply r = {.status = AP_NOTFOUND, .reason = S("nothing signs for x.test")};
    CHECK_OK(ap_encode_lookup_reply(b, 12, &r));
}

static void enc_pong(dh_buf *b)
{
    CHECK_OK(ap_encode_pong(b, 13, AP_TEMPFAIL));
}

static void enc_error(dh_buf *b)
{
    CHECK_OK(ap_encode_error(b, 0, "frame too short"));
}

static void (*const encoders[])(dh_buf *) = {enc_sign,
                                             enc_lookup,
                                             enc_ping,
                                             enc_sign_reply_ok,
                                             enc_sign_reply_refused,
                                             enc_lookup_reply_ok,
                                             enc_lookup_reply_notfound,
                                             enc_pong,
                                             enc_error,
                                             NULL};

/* ---- round trips ---- */

static void test_roundtrip_sign(void)
{
    dh_buf b = {0};
    ap_msg m;
    enc_sign(&b);
    decode_ok(&b, &m);
    CHECK_EQ_INT(m.type, AP_SIGN);
    CHECK_EQ_INT(m.id, 0x01020304);
    CHECK(str_eq(m.u.sign.domain, "example.com"));
    CHECK(str_eq(m.u.sign.selector, "s1"));
    CHECK_EQ_INT(m.u.sign.alg, 1);
    CHECK_MEM(m.u.sign.block, m.u.sign.block_len, block, sizeof(block) - 1);
    /* The wire layout of PROTOCOL.md: type, big-endian id, u16 name length. */
    static const uint8_t head[] = {1, 1, 2, 3, 4, 0, 11, 'e'};
    CHECK_MEM(b.data + 4, sizeof(head), head, sizeof(head));
    dh_buf_free(&b);
}

static void test_roundtrip_lookup_ping(void)
{
    dh_buf b = {0};
    ap_msg m;
    enc_lookup(&b);
    decode_ok(&b, &m);
    CHECK_EQ_INT(m.type, AP_LOOKUP);
    CHECK_EQ_INT(m.id, 7);
    CHECK(str_eq(m.u.lookup_domain, "mail.example.org"));
    dh_buf_reset(&b);
    enc_ping(&b);
    CHECK_EQ_INT(b.len, 9);
    decode_ok(&b, &m);
    CHECK_EQ_INT(m.type, AP_PING);
    CHECK_EQ_INT(m.id, 0xffffffffu);
    dh_buf_free(&b);
}

static void test_roundtrip_sign_reply(void)
{
    dh_buf b = {0};
    ap_msg m;
    enc_sign_reply_ok(&b);
    decode_ok(&b, &m);
    CHECK_EQ_INT(m.type, AP_SIGN_REPLY);
    CHECK_EQ_INT(m.id, 9);
    CHECK_EQ_INT(m.u.sign_reply.status, AP_OK);
    CHECK_EQ_INT(m.u.sign_reply.sig_len, 64);
    CHECK(m.u.sign_reply.sig[0] == 1 && m.u.sign_reply.sig[4] == 0xff);
    dh_buf_reset(&b);
    enc_sign_reply_refused(&b);
    decode_ok(&b, &m);
    CHECK_EQ_INT(m.u.sign_reply.status, AP_REFUSED);
    CHECK(str_eq(m.u.sign_reply.reason, "d= does not match the request"));
    CHECK(m.u.sign_reply.sig == NULL);
    dh_buf_free(&b);
}

static void test_roundtrip_lookup_reply(void)
{
    dh_buf b = {0};
    ap_msg m;
    enc_lookup_reply_ok(&b);
    decode_ok(&b, &m);
    CHECK_EQ_INT(m.type, AP_LOOKUP_REPLY);
    const ap_lookup_reply *r = &m.u.lookup_reply;
    CHECK_EQ_INT(r->status, AP_OK);
    CHECK(str_eq(r->domain, "example.org"));
    CHECK_EQ_INT(r->count, AP_MAX_LOOKUP);
    CHECK(str_eq(r->sel[0].selector, "a") && r->sel[0].alg == 0);
    CHECK(str_eq(r->sel[3].selector, "dddd") && r->sel[3].alg == 1);
    CHECK(str_eq(r->sel[7].selector, "h"));
    dh_buf_reset(&b);
    enc_lookup_reply_notfound(&b);
    decode_ok(&b, &m);
    CHECK_EQ_INT(m.u.lookup_reply.status, AP_NOTFOUND);
    CHECK(str_eq(m.u.lookup_reply.reason, "nothing signs for x.test"));
    CHECK_EQ_INT(m.u.lookup_reply.count, 0);
    dh_buf_free(&b);
}

static void test_roundtrip_pong_error(void)
{
    dh_buf b = {0};
    ap_msg m;
    enc_pong(&b);
    decode_ok(&b, &m);
    CHECK_EQ_INT(m.type, AP_PONG);
    CHECK_EQ_INT(m.u.pong_status, AP_TEMPFAIL);
    dh_buf_reset(&b);
    enc_error(&b);
    decode_ok(&b, &m);
    CHECK_EQ_INT(m.type, AP_ERROR);
    CHECK_EQ_INT(m.id, 0);
    CHECK(str_eq(m.u.error_reason, "frame too short"));
    dh_buf_free(&b);
}

/* Frames appended to one buffer are cut apart by ap_frame_size. */
static void test_stream_of_frames(void)
{
    dh_buf b = {0};
    for (size_t i = 0; encoders[i] != NULL; i++)
        encoders[i](&b);
    size_t off = 0, n = 0, flen = 0;
    while (off < b.len) {
        CHECK_OK(ap_frame_size(b.data + off, b.len - off, &flen, NULL));
        if (flen == 0 || flen > b.len - off)
            break;
        ap_msg m;
        CHECK_OK(ap_decode(b.data + off, flen, &m, NULL, NULL));
        off += flen;
        n++;
    }
    CHECK_EQ_INT(off, b.len);
    CHECK_EQ_INT(n, sizeof(encoders) / sizeof(encoders[0]) - 1);
    dh_buf_free(&b);
}

/* ---- malformed frames ---- */

/* Every proper prefix of a valid frame, its length prefix patched so only the
 * body is short, is refused; so is every unpatched prefix. Where the id was
 * in, id_out has it. */
static void test_truncated_everywhere(void)
{
    dh_buf b = {0}, t = {0};
    for (size_t i = 0; encoders[i] != NULL; i++) {
        dh_buf_reset(&b);
        encoders[i](&b);
        uint32_t id = (uint32_t)b.data[5] << 24 | (uint32_t)b.data[6] << 16 |
                      (uint32_t)b.data[7] << 8 | b.data[8];
        for (size_t k = 0; k < b.len; k++) {
            ap_msg m;
            uint32_t got = 0x5a5a5a5a;
            size_t flen = 99;
            CHECK(ap_decode(b.data, k, &m, NULL, NULL) == DH_EINVAL);
            CHECK_OK(ap_frame_size(b.data, k, &flen, NULL));
            CHECK_EQ_INT(flen, k < 4 ? 0 : b.len);
            if (k < 5)
                continue; /* no type byte: no frame to patch */
            dh_buf_reset(&t);
            CHECK_OK(dh_buf_append(&t, b.data, k));
            fix_len(&t);
            dh_err e = {0};
            if (ap_decode(t.data, t.len, &m, &got, &e) != DH_EINVAL)
                check_fail(__FILE__, __LINE__, "frame %zu cut at %zu decoded", i, k);
            else if (strstr(e.msg, "truncated in") == NULL)
                check_fail(__FILE__, __LINE__, "frame %zu cut at %zu: '%s'", i, k, e.msg);
            CHECK_EQ_INT(got, k >= 9 ? id : 0x5a5a5a5a);
        }
    }
    dh_buf_free(&b);
    dh_buf_free(&t);
}

static void test_trailing_bytes(void)
{
    dh_buf b = {0};
    for (size_t i = 0; encoders[i] != NULL; i++) {
        dh_buf_reset(&b);
        encoders[i](&b);
        put8(&b, 0);
        fix_len(&b);
        EXPECT_BAD(&b, "1 bytes left after the body");
        /* Unpatched: the announced length no longer matches. */
        b.len--;
        CHECK_OK(dh_buf_putc(&b, 'x'));
        CHECK_OK(dh_buf_putc(&b, 'y'));
        EXPECT_BAD(&b, "does not match");
    }
    dh_buf_free(&b);
}

static void test_length_bounds(void)
{
    uint8_t hdr[4];
    size_t flen = 77;
    dh_err e = {0};
    /* Only the 4 length bytes are needed to refuse: nothing else was read or
     * allocated when a caller gets the answer. */
    const uint32_t bad[] = {0, AP_MAX_FRAME + 1, 0x7fffffff, 0xffffffff};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        hdr[0] = (uint8_t)(bad[i] >> 24);
        hdr[1] = (uint8_t)(bad[i] >> 16);
        hdr[2] = (uint8_t)(bad[i] >> 8);
        hdr[3] = (uint8_t)bad[i];
        CHECK_EQ_INT(ap_frame_size(hdr, 4, &flen, &e), DH_EINVAL);
        CHECK(strstr(e.msg, "length") != NULL);
        CHECK_EQ_INT(flen, 77); /* untouched on failure */
        CHECK(ap_decode(hdr, 4, &(ap_msg){0}, NULL, NULL) == DH_EINVAL);
    }
    hdr[0] = 0;
    hdr[1] = 0x10;
    hdr[2] = hdr[3] = 0;
    CHECK_OK(ap_frame_size(hdr, 4, &flen, NULL));
    CHECK_EQ_INT(flen, AP_MAX_FRAME + 4);
    /* Length 1..4: framed, but too short for its id. */
    dh_buf b = {0};
    put32(&b, 1);
    put8(&b, AP_PING);
    CHECK_OK(ap_frame_size(b.data, b.len, &flen, NULL));
    CHECK_EQ_INT(flen, 5);
    EXPECT_BAD(&b, "truncated in id");
    dh_buf_free(&b);
}

/* The largest SIGN that fits 1 MiB is written; one byte more is refused and
 * the buffer is left as it was. */
static void test_max_frame(void)
{
    size_t fixed = 1 + 4 + 2 + 11 + 2 + 2 + 1 + 4;
    uint8_t *big = calloc(1, AP_MAX_FRAME);
    CHECK(big != NULL);
    if (big == NULL)
        return;
    ap_sign s = {S("example.com"), S("s1"), 0, big, AP_MAX_FRAME - fixed};
    dh_buf b = {0};
    CHECK_OK(ap_encode_ping(&b, 1));
    CHECK_OK(ap_encode_sign(&b, 2, &s));
    CHECK_EQ_INT(b.len, 9 + 4 + AP_MAX_FRAME);
    ap_msg m;
    CHECK_OK(ap_decode(b.data + 9, b.len - 9, &m, NULL, NULL));
    CHECK_EQ_INT(m.u.sign.block_len, AP_MAX_FRAME - fixed);
    dh_buf_reset(&b);
    CHECK_OK(ap_encode_ping(&b, 1));
    s.block_len++;
    CHECK_EQ_INT(ap_encode_sign(&b, 3, &s), DH_EINVAL);
    CHECK_EQ_INT(b.len, 9);
    CHECK_OK(ap_decode(b.data, b.len, &m, NULL, NULL));
    free(big);
    dh_buf_free(&b);
}

static void test_unknown_type(void)
{
    static const unsigned types[] = {0, 4, 0x7f, 0x80, 0x84, 0xfe};
    dh_buf b = {0};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        begin(&b, types[i], 4242);
        fix_len(&b);
        ap_msg m;
        uint32_t id = 0;
        dh_err e = {0};
        CHECK_EQ_INT(ap_decode(b.data, b.len, &m, &id, &e), DH_EINVAL);
        CHECK(strstr(e.msg, "unknown type") != NULL);
        CHECK_EQ_INT(id, 4242); /* so the daemon's ERROR can carry it */
    }
    dh_buf_free(&b);
}

static void expect_len(const dh_buf *b, int bad, const char *want, int line)
{
    if (bad)
        expect_bad(b, want, line);
    else if (ap_decode(b->data, b->len, &(ap_msg){0}, NULL, NULL) != DH_OK)
        check_fail(__FILE__, line, "a 255-byte name was refused");
}

static void test_names_too_long(void)
{
    char name[300];
    memset(name, 'a', sizeof(name));
    dh_buf b = {0};
    /* 255 is allowed, 256 is not: in SIGN's domain and selector, LOOKUP,
     * and LOOKUP_REPLY's domain and selectors. */
    for (size_t len = 255; len <= 256; len++) {
        int bad = len == 256;
        begin(&b, AP_SIGN, 1);
        putstr(&b, name, len);
        putstr(&b, "s", 1);
        put8(&b, 0);
        put32(&b, 0);
        fix_len(&b);
        expect_len(&b, bad, "agent SIGN frame: domain is 256 bytes, over 255", __LINE__);
        begin(&b, AP_SIGN, 1);
        putstr(&b, "d", 1);
        putstr(&b, name, len);
        put8(&b, 0);
        put32(&b, 0);
        fix_len(&b);
        expect_len(&b, bad, "selector is 256 bytes", __LINE__);
        begin(&b, AP_LOOKUP, 1);
        putstr(&b, name, len);
        fix_len(&b);
        expect_len(&b, bad, "agent LOOKUP frame: domain is 256", __LINE__);
        begin(&b, AP_LOOKUP_REPLY, 1);
        put8(&b, AP_OK);
        putstr(&b, name, len);
        put8(&b, 1);
        putstr(&b, "s", 1);
        put8(&b, 1);
        fix_len(&b);
        expect_len(&b, bad, "agent LOOKUP_REPLY frame: domain is 256", __LINE__);
        begin(&b, AP_LOOKUP_REPLY, 1);
        put8(&b, AP_OK);
        putstr(&b, "d", 1);
        put8(&b, 1);
        putstr(&b, name, len);
        put8(&b, 1);
        fix_len(&b);
        expect_len(&b, bad, "selector is 256", __LINE__);
    }
    /* Our encoders refuse to write them. */
    ap_sign s = {{name, 256}, S("s"), 0, NULL, 0};
    dh_buf_reset(&b);
    CHECK_EQ_INT(ap_encode_sign(&b, 1, &s), DH_EINVAL);
    name[256] = '\0';
    CHECK_EQ_INT(ap_encode_lookup(&b, 1, name), DH_EINVAL);
    CHECK_EQ_INT(b.len, 0);
    dh_buf_free(&b);
}

static void test_nul_in_name(void)
{
    dh_buf b = {0};
    begin(&b, AP_LOOKUP, 1);
    putstr(&b, "example.com\0.evil", 17);
    fix_len(&b);
    EXPECT_BAD(&b, "domain holds a NUL byte");
    ap_sign s = {{"a\0b", 3}, S("s"), 0, NULL, 0};
    CHECK_EQ_INT(ap_encode_sign(&b, 1, &s), DH_EINVAL);
    dh_buf_free(&b);
}

static void lookup_reply_count(dh_buf *b, unsigned count)
{
    begin(b, AP_LOOKUP_REPLY, 1);
    put8(b, AP_OK);
    putstr(b, "example.com", 11);
    put8(b, count);
    for (unsigned i = 0; i < count; i++) {
        putstr(b, "s", 1);
        put8(b, 0);
    }
    fix_len(b);
}

static void test_lookup_count(void)
{
    dh_buf b = {0};
    lookup_reply_count(&b, 0);
    EXPECT_BAD(&b, "count 0 is not 1..8");
    lookup_reply_count(&b, 9);
    EXPECT_BAD(&b, "count 9 is not 1..8");
    lookup_reply_count(&b, 255);
    EXPECT_BAD(&b, "count 255");
    lookup_reply_count(&b, 1);
    CHECK_OK(ap_decode(b.data, b.len, &(ap_msg){0}, NULL, NULL));
    lookup_reply_count(&b, 8);
    CHECK_OK(ap_decode(b.data, b.len, &(ap_msg){0}, NULL, NULL));
    ap_lookup_reply r = {.status = AP_OK, .domain = S("d"), .count = 0};
    dh_buf_reset(&b);
    CHECK_EQ_INT(ap_encode_lookup_reply(&b, 1, &r), DH_EINVAL);
    r.count = 9;
    CHECK_EQ_INT(ap_encode_lookup_reply(&b, 1, &r), DH_EINVAL);
    CHECK_EQ_INT(b.len, 0);
    dh_buf_free(&b);
}

static void test_unknown_status(void)
{
    dh_buf b = {0};
    static const unsigned types[] = {AP_SIGN_REPLY, AP_LOOKUP_REPLY, AP_PONG};
    for (size_t i = 0; i < 3; i++) {
        begin(&b, types[i], 1);
        put8(&b, 5);
        putstr(&b, "why", 3);
        fix_len(&b);
        EXPECT_BAD(&b, "unknown status 5");
        b.data[9] = 0xff;
        EXPECT_BAD(&b, "unknown status 255");
    }
    dh_buf_reset(&b);
    CHECK_EQ_INT(ap_encode_pong(&b, 1, 5), DH_EINVAL);
    ap_sign_reply r = {.status = 9};
    CHECK_EQ_INT(ap_encode_sign_reply(&b, 1, &r), DH_EINVAL);
    CHECK_EQ_INT(b.len, 0);
    CHECK_STR(ap_status_name(AP_TEMPFAIL), "TEMPFAIL");
    CHECK_STR(ap_status_name(AP_NOTFOUND), "NOTFOUND");
    CHECK_STR(ap_status_name(200), "unknown status");
    dh_buf_free(&b);
}

static void test_unknown_alg(void)
{
    dh_buf b = {0};
    begin(&b, AP_SIGN, 1);
    putstr(&b, "d", 1);
    putstr(&b, "s", 1);
    put8(&b, 2);
    put32(&b, 0);
    fix_len(&b);
    EXPECT_BAD(&b, "agent SIGN frame: alg: unknown algorithm 2");
    lookup_reply_count(&b, 1);
    b.data[b.len - 1] = 7;
    EXPECT_BAD(&b, "unknown algorithm 7");
    ap_sign s = {S("d"), S("s"), 2, NULL, 0};
    dh_buf_reset(&b);
    CHECK_EQ_INT(ap_encode_sign(&b, 1, &s), DH_EINVAL);
    dh_buf_free(&b);
}

/* A blob or str length that reaches past the frame is a truncation, however
 * large, and is never trusted for an allocation or a read. */
static void test_inner_lengths(void)
{
    dh_buf b = {0};
    begin(&b, AP_SIGN_REPLY, 1);
    put8(&b, AP_OK);
    put32(&b, 0xffffffff);
    put8(&b, 1);
    fix_len(&b);
    EXPECT_BAD(&b, "truncated in signature");
    begin(&b, AP_ERROR, 1);
    put16(&b, 0xffff);
    fix_len(&b);
    EXPECT_BAD(&b, "agent ERROR frame: truncated in reason");
    dh_buf_free(&b);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"roundtrip_sign", test_roundtrip_sign},
        {"roundtrip_lookup_ping", test_roundtrip_lookup_ping},
        {"roundtrip_sign_reply", test_roundtrip_sign_reply},
        {"roundtrip_lookup_reply", test_roundtrip_lookup_reply},
        {"roundtrip_pong_error", test_roundtrip_pong_error},
        {"stream_of_frames", test_stream_of_frames},
        {"truncated_everywhere", test_truncated_everywhere},
        {"trailing_bytes", test_trailing_bytes},
        {"length_bounds", test_length_bounds},
        {"max_frame", test_max_frame},
        {"unknown_type", test_unknown_type},
        {"names_too_long", test_names_too_long},
        {"nul_in_name", test_nul_in_name},
        {"lookup_count", test_lookup_count},
        {"unknown_status", test_unknown_status},
        {"unknown_alg", test_unknown_alg},
        {"inner_lengths", test_inner_lengths},
        {NULL, NULL},
    };
    return check_run(argc, argv, cases);
}
