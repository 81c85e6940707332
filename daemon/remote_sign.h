/*
 * remote_sign.h - signing a parsed message through dkimhsmd: what every
 * keyless front end (dkimhsm-milter, dkimhsm-sign --agent) does once it has
 * the header fields and the body hash.
 *
 * For each key it builds the DKIM-Signature field and the header hash input
 * (dkim/sig.h), sends all SIGN requests in one round trip (daemon/client.h)
 * and finishes the fields with the returned signatures.
 */
#ifndef DAEMON_REMOTE_SIGN_H
#define DAEMON_REMOTE_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "daemon/client.h"
#include "dkim/msg.h"
#include "dkim/sig.h"

#define RS_MAX_KEYS AP_MAX_LOOKUP

typedef struct rs_key {
    const char *selector;
    enum dkim_alg alg;
} rs_key;

typedef struct rs_params {
    const char *domain; /* d= */
    enum dkim_canon hdr_canon, body_canon;
    const char *header_list;  /* h= exactly, or NULL: chosen from the two below */
    const char *sign_headers; /* colon lists, as in dkimhsm.conf */
    const char *oversign_headers;
    long long timestamp; /* t= */
    long long expire;    /* x=, < 0 for none */
} rs_params;

/* Appends the n finished fields ("DKIM-Signature: ...\r\n") to out, in the
 * order of keys. Nothing is appended unless all n were signed. Errors:
 * DH_EIO - dkimhsmd unreachable or the connection failed;
 * DH_ETOKEN - it answered TEMPFAIL (token down, queue full);
 * DH_EPERM - it REFUSED; DH_EINVAL/DH_EUNSIGNABLE - the message or params. */
int rs_sign(ac *c, const dkim_hdrs *hdrs, const uint8_t bh[32], const rs_params *p,
            const rs_key *keys, size_t n, dh_buf *out, dh_err *e) DH_WUR;

#endif
