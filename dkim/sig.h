/*
 * sig.h - the DKIM-Signature header field: choosing h=, building the field,
 * computing what is signed (RFC 6376 §3.7), and appending b=.
 *
 * Signing a message, for one key:
 *   1. dkim_sig_select_headers()  -> h= list
 *   2. dkim_body_*()              -> bh (32 bytes)
 *   3. dkim_sig_build()           -> "DKIM-Signature: v=1; ...; b=" (no CRLF)
 *   4. dkim_sig_digest()          -> SHA-256 over the header hash input; this
 *                                    digest is what the token signs, for RSA
 *                                    (in a DigestInfo) and Ed25519 (RFC 8463 §3)
 *   5. dkim_sig_finish()          -> the complete field with b= and CRLF
 */
#ifndef DKIM_SIG_H
#define DKIM_SIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "dkim/msg.h"
#include "dkim/types.h"

/* RFC 6376 §5.4.1's recommended set, plus Sender (colon-separated). */
#define DKIM_DEFAULT_SIGN_HEADERS                                                                  \
    "from:sender:reply-to:subject:date:message-id:to:cc:mime-version:content-type:"                \
    "content-transfer-encoding:content-id:content-description:resent-date:resent-from:"            \
    "resent-sender:resent-to:resent-cc:resent-message-id:in-reply-to:references:list-id:"          \
    "list-help:list-unsubscribe:list-subscribe:list-post:list-owner:list-archive"
/* Over-signed: listed once more than they occur, so one added in transit breaks
 * the signature (RFC 6376 §8.15). */
#define DKIM_DEFAULT_OVERSIGN_HEADERS                                                              \
    "from:to:cc:subject:date:reply-to:message-id:mime-version:content-type"

typedef struct dkim_sig_params {
    enum dkim_alg alg;
    enum dkim_canon hdr_canon;
    enum dkim_canon body_canon;
    const char *domain;      /* d= */
    const char *selector;    /* s= */
    const char *identity;    /* i=, NULL to omit */
    long long timestamp;     /* t=, < 0 to omit */
    long long expire;        /* x= (absolute), < 0 to omit; must be > timestamp */
    long long body_length;   /* l=, < 0 to omit (only when explicitly configured) */
    const char *header_list; /* h= exactly as it is to be printed, e.g. "from:to:subject" */
} dkim_sig_params;

/* Appends an h= value for hdrs to h_out: each field whose name is in sign
 * (colon-separated, case-insensitive), once per occurrence, in message order;
 * then every name in oversign once more. Result: each over-signed name is
 * listed (occurrences + 1) times (a name in oversign is signed even when sign
 * omits it). Names are printed in lower case. from is always included.
 * Fields written "Name :" are skipped. DH_EINVAL for a list entry that is not
 * a field name. */
int dkim_sig_select_headers(const dkim_hdrs *hdrs, const char *sign, const char *oversign,
                            dh_buf *h_out, dh_err *e) DH_WUR;

/* Appends "DKIM-Signature: v=1; a=; c=; d=; s=; [i=;] t=; [x=;] [l=;] h=; bh=; b="
 * to field, folded at 78 columns with CRLF + TAB, ending in "b=" with no CRLF.
 * DH_EINVAL for a missing d=/s=/h=, a domain or selector that is not a valid
 * DNS name, x= not after t=, an h= without from or with an empty name, or an
 * i= outside d= (RFC 6376 §3.5). bh= is kept on one line when a line can
 * hold it. */
int dkim_sig_build(const dkim_sig_params *p, const uint8_t bh[32], dh_buf *field, dh_err *e) DH_WUR;

/* Appends to out the header hash input of RFC 6376 §3.7 for the field
 * sig_field (a whole DKIM-Signature field, no final CRLF): the header fields
 * named by its h= tag, each name taking the next occurrence from the bottom
 * up (a name listed more often than it occurs adds nothing), canonicalized by
 * its c= tag, each followed by CRLF; then sig_field itself canonicalized with
 * the value of b= removed and no CRLF. The canonicalization and h= come from
 * sig_field's own tags, so a field printed in an RFC serves as well as one
 * dkim_sig_build() made. DH_EINVAL if sig_field is not a DKIM-Signature with
 * v=1, c= valid (or absent), h= containing from. DH_EUNSIGNABLE if a field
 * named in h= is written "Name :". */
int dkim_sig_hash_input(const dkim_hdrs *hdrs, const uint8_t *sig_field, size_t len, dh_buf *out,
                        dh_err *e) DH_WUR;

/* SHA-256 of dkim_sig_hash_input() (what the token signs). */
int dkim_sig_digest(const dkim_hdrs *hdrs, const uint8_t *sig_field, size_t len, uint8_t out[32],
                    dh_err *e) DH_WUR;

/* Appends to out: field (which must end in "b=", DH_EINVAL otherwise), then
 * base64(sig) folded so no line exceeds 78 columns, then CRLF. */
int dkim_sig_finish(const uint8_t *field, size_t len, const uint8_t *sig, size_t siglen,
                    dh_buf *out, dh_err *e) DH_WUR;

#endif
