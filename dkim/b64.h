/*
 * b64.h - base64 as DKIM uses it (RFC 6376 §2.7: no line breaks in our output;
 * whitespace ignored on input).
 */
#ifndef DKIM_B64_H
#define DKIM_B64_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Appends the base64 of in[0..len) to out (no whitespace). */
int dkim_b64_encode(const uint8_t *in, size_t len, dh_buf *out) DH_WUR;
/* Appends the decoded bytes of text to out, skipping FWS (SP, HTAB, CR, LF).
 * Returns DH_EINVAL on any other non-base64 character or bad padding. */
int dkim_b64_decode(const char *text, size_t len, dh_buf *out) DH_WUR;

#endif
