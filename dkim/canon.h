/*
 * canon.h - RFC 6376 §3.4 canonicalization and the streaming body hash.
 *
 * Input is always the CRLF form of the message as the MTA transmits it
 * (dkim/msg.h turns bare LF into CRLF before anything gets here). Bytes are
 * handled by length: NUL bytes and 8-bit bytes are data like any other.
 */
#ifndef DKIM_CANON_H
#define DKIM_CANON_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "dkim/types.h"

/* Appends the canonical form of one header field to out. field is the whole
 * field as it appears in the message - name, colon, value, folding CRLFs
 * included - WITHOUT the final CRLF; no CRLF is appended either (the caller
 * adds it, except for the DKIM-Signature field itself, RFC 6376 §3.7).
 * relaxed (§3.4.2): lower-case name, unfold, WSP runs -> one SP, no WSP at the
 * end of the value or around the colon. simple (§3.4.1): unchanged.
 * DH_EINVAL (relaxed only) when the field has no colon. */
int dkim_canon_header(enum dkim_canon c, const uint8_t *field, size_t len, dh_buf *out) DH_WUR;

/* Streaming body canonicalizer + SHA-256 (RFC 6376 §3.4.3, §3.4.4, §3.7).
 * Any split of the body into dkim_body_update() calls, down to one byte at a
 * time, gives the same hash; memory use is constant (runs of empty lines and
 * trailing whitespace are counted, not stored). */
typedef struct dkim_body dkim_body;

/* limit < 0: hash the whole body; limit >= 0: hash at most that many
 * canonicalized bytes (the l= tag; only when explicitly configured).
 * Returns NULL on ENOMEM. Free with dkim_body_free(). */
dkim_body *dkim_body_new(enum dkim_canon c, long long limit);
enum dkim_canon dkim_body_canon(const dkim_body *b);
long long dkim_body_limit(const dkim_body *b);
/* Feeds body bytes (CRLF line ends). DH_ESTATE after dkim_body_final(). */
int dkim_body_update(dkim_body *b, const uint8_t *data, size_t len) DH_WUR;
/* Ends the body (a missing final CRLF is treated as present, as the MTA will
 * transmit one) and writes the 32-byte SHA-256 (the bh= value) to out.
 * *hashed gets the number of canonicalized bytes hashed (for l=); may be NULL.
 * The object cannot be updated afterwards. */
int dkim_body_final(dkim_body *b, uint8_t out[32], unsigned long long *hashed) DH_WUR;
void dkim_body_free(dkim_body *b);

#endif
