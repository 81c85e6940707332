/*
 * proto.h - the agent protocol's frames (docs/PROTOCOL.md), encoded and
 * decoded with no socket in sight, so the same code serves the daemon, every
 * client and a fuzzer.
 *
 * Decoded messages are views: their pointers point into the frame buffer the
 * caller passed and live as long as it does. Strings are not NUL-terminated,
 * and hold no NUL byte (the decoder refuses a str with one), so each can be
 * copied into a C string without changing its meaning.
 */
#ifndef DAEMON_PROTO_H
#define DAEMON_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

#define AP_MAX_FRAME (1u << 20) /* bytes after the length prefix */
#define AP_MAX_NAME 255
#define AP_MAX_LOOKUP 8
#define AP_MAX_INFLIGHT 64 /* per connection */

enum ap_type {
    AP_SIGN = 1,
    AP_LOOKUP = 2,
    AP_PING = 3,
    AP_SIGN_REPLY = 0x81,
    AP_LOOKUP_REPLY = 0x82,
    AP_PONG = 0x83,
    AP_ERROR = 0xff,
};

enum ap_status { AP_OK = 0, AP_REFUSED = 1, AP_TEMPFAIL = 2, AP_BADREQ = 3, AP_NOTFOUND = 4 };

typedef struct ap_str {
    const char *p;
    size_t len;
} ap_str;

typedef struct ap_sign {
    ap_str domain, selector;
    uint8_t alg; /* enum dkim_alg */
    const uint8_t *block;
    size_t block_len;
} ap_sign;

typedef struct ap_selector {
    ap_str selector;
    uint8_t alg;
} ap_selector;

typedef struct ap_lookup_reply {
    uint8_t status;
    ap_str domain; /* status OK */
    ap_str reason; /* status not OK */
    size_t count;  /* status OK: 1..AP_MAX_LOOKUP */
    ap_selector sel[AP_MAX_LOOKUP];
} ap_lookup_reply;

typedef struct ap_sign_reply {
    uint8_t status;
    const uint8_t *sig; /* status OK */
    size_t sig_len;
    ap_str reason; /* status not OK */
} ap_sign_reply;

/* One decoded frame. Which member is valid follows from type. */
typedef struct ap_msg {
    uint8_t type;
    uint32_t id;
    union {
        ap_sign sign;         /* AP_SIGN */
        ap_str lookup_domain; /* AP_LOOKUP */
        ap_sign_reply sign_reply;
        ap_lookup_reply lookup_reply;
        uint8_t pong_status; /* AP_PONG */
        ap_str error_reason; /* AP_ERROR */
    } u;
} ap_msg;

/* Given the first len bytes received, how long the whole frame is (length
 * prefix included): 0 when fewer than 4 bytes are in, DH_EINVAL when the
 * announced length is 0 or over AP_MAX_FRAME - checked before any allocation. */
int ap_frame_size(const uint8_t *buf, size_t len, size_t *frame_len, dh_err *e) DH_WUR;

/* Decodes one whole frame (length prefix included, exactly frame_len bytes).
 * DH_EINVAL, saying which field, for an unknown type, a truncated field,
 * trailing bytes, a name over AP_MAX_NAME, an unknown status or algorithm.
 * On failure *id_out (may be NULL) still gets the id if it could be read. */
int ap_decode(const uint8_t *frame, size_t frame_len, ap_msg *out, uint32_t *id_out,
              dh_err *e) DH_WUR;

/* Encoders append one whole frame to out. They refuse (DH_EINVAL, out
 * unchanged) whatever ap_decode would refuse: a name over AP_MAX_NAME, a NUL
 * in a str, an unknown status or algorithm, a LOOKUP_REPLY count outside
 * 1..AP_MAX_LOOKUP, a frame over AP_MAX_FRAME. DH_ENOMEM leaves out unchanged too. */
int ap_encode_sign(dh_buf *out, uint32_t id, const ap_sign *s) DH_WUR;
int ap_encode_lookup(dh_buf *out, uint32_t id, const char *domain) DH_WUR;
int ap_encode_ping(dh_buf *out, uint32_t id) DH_WUR;
int ap_encode_sign_reply(dh_buf *out, uint32_t id, const ap_sign_reply *r) DH_WUR;
int ap_encode_lookup_reply(dh_buf *out, uint32_t id, const ap_lookup_reply *r) DH_WUR;
int ap_encode_pong(dh_buf *out, uint32_t id, uint8_t status) DH_WUR;
int ap_encode_error(dh_buf *out, uint32_t id, const char *reason) DH_WUR;

/* "OK", "REFUSED", ... */
const char *ap_status_name(uint8_t status);

#endif
