/*
 * msg.h - a message's header fields, and a streaming reader that splits raw
 * message bytes into header fields and body.
 *
 * Everything is stored in the CRLF form the MTA transmits: a bare LF line end
 * in the input becomes CRLF. Other ambiguous input is refused rather than
 * guessed at (FACTS: verifiers disagree on it): a bare CR, a line in the
 * header block that is not a header field (no colon, bad name, an mbox "From "
 * line), a header block larger than the configured bound.
 */
#ifndef DKIM_MSG_H
#define DKIM_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "dkim/canon.h"

/* ---- header fields ---- */

typedef struct dkim_hdrs dkim_hdrs;

/* Returns NULL on ENOMEM. */
dkim_hdrs *dkim_hdrs_new(void);
void dkim_hdrs_free(dkim_hdrs *h);

/* Appends one whole field as it appears in the message - "Name: value" with
 * any folding - without its final CRLF. Bare LF folding is turned into CRLF.
 * DH_EINVAL when it is not a header field (no colon, empty or bad name, a line
 * break not followed by WSP); DH_EUNSIGNABLE for a bare CR. */
int dkim_hdrs_add_raw(dkim_hdrs *h, const uint8_t *field, size_t len, dh_err *e) DH_WUR;

/* Appends a field from a name and the value as a milter receives it
 * (everything after the colon, leading space included when the MTA keeps it).
 * Stored as name ':' value. */
int dkim_hdrs_add(dkim_hdrs *h, const char *name, const uint8_t *value, size_t vlen,
                  dh_err *e) DH_WUR;

size_t dkim_hdrs_count(const dkim_hdrs *h);
/* i-th field (0 = topmost): raw bytes without final CRLF, owned by h.
 * *namelen gets the length of the name (before any WSP and the colon). */
const uint8_t *dkim_hdrs_field(const dkim_hdrs *h, size_t i, size_t *len, size_t *namelen);
/* 1 when the i-th field has whitespace between its name and the colon
 * ("From : x"), which verifiers treat differently; such a field is not signed. */
int dkim_hdrs_space_before_colon(const dkim_hdrs *h, size_t i);
/* How many fields are named name (case-insensitive). */
size_t dkim_hdrs_count_name(const dkim_hdrs *h, const char *name);

/* DH_EUNSIGNABLE unless the message has exactly one From: field (RFC 6376
 * §5.4: From MUST be signed; several From fields make d= alignment ambiguous)
 * and that field is not written "From :". */
int dkim_hdrs_check_signable(const dkim_hdrs *h, dh_err *e) DH_WUR;

/* Appends the lower-cased domain of the (single) From: address to out.
 * Handles display names, comments, quoted strings and angle brackets.
 * DH_EUNSIGNABLE when there is no usable address. */
int dkim_hdrs_from_domain(const dkim_hdrs *h, dh_buf *out, dh_err *e) DH_WUR;

/* ---- streaming reader ---- */

typedef struct dkim_msg dkim_msg;

#define DKIM_MSG_MAX_BODIES 4

/* max_header_bytes bounds the header block (0 = default 1 MiB).
 * Returns NULL on ENOMEM. */
dkim_msg *dkim_msg_new(size_t max_header_bytes);
void dkim_msg_free(dkim_msg *m);

/* Body hashers that receive the (CRLF-normalized) body as it streams past.
 * Not owned by m. At most DKIM_MSG_MAX_BODIES; attach before the first feed
 * (DH_ESTATE otherwise). The caller calls dkim_body_final() after
 * dkim_msg_end(). */
int dkim_msg_attach_body(dkim_msg *m, dkim_body *b) DH_WUR;

/* Feeds raw message bytes; any chunking gives the same result. Errors are
 * DH_EUNSIGNABLE / DH_EINVAL with the 1-based line number in the message.
 * An error is final: later feed/end calls return it again. DH_ESTATE after
 * dkim_msg_end(). */
int dkim_msg_feed(dkim_msg *m, const uint8_t *data, size_t len, dh_err *e) DH_WUR;
/* Ends the input. A message without a blank line is all header. */
int dkim_msg_end(dkim_msg *m, dh_err *e) DH_WUR;

/* The header fields read so far; owned by m. */
const dkim_hdrs *dkim_msg_hdrs(const dkim_msg *m);
/* 1 if the first line end seen was a bare LF (so output can keep that style). */
int dkim_msg_uses_lf(const dkim_msg *m);

#endif
