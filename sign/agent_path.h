/*
 * agent_path.h - dkimhsm-sign --agent: the signatures come from dkimhsmd over
 * the agent protocol (docs/PROTOCOL.md) instead of from a token this process
 * opens. The message is parsed and the body hashed here as always; what
 * crosses the socket is each DKIM-Signature's header hash input (RFC 6376
 * §3.7), which the daemon checks against its policy before it signs.
 */
#ifndef SIGN_AGENT_PATH_H
#define SIGN_AGENT_PATH_H

#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "conf/conf.h"
#include "dkim/msg.h"

typedef struct agent_req {
    const char *socket;     /* dkimhsmd's agent socket */
    const conf *cf;         /* header lists and signature_ttl */
    const dkim_hdrs *hdrs;  /* the parsed message */
    const uint8_t *bh;      /* 32-byte body hash */
    const char *domain;     /* normalized From: or -d domain */
    const char *selector;   /* normalized -s, NULL to let the daemon say */
    unsigned algs;          /* CONF_ALG_* */
    int algs_explicit;      /* --alg was given */
    enum dkim_canon hc, bc; /* c= */
    const char *headers;    /* --headers, NULL for the configured lists */
    long long timestamp;    /* t= */
} agent_req;

/* Chooses the keys (without a selector: the daemon's LOOKUP answer for the
 * domain, filtered by algs; with one: that selector, its algorithm from algs
 * when they name one, else from LOOKUP), builds each field, has dkimhsmd sign
 * them all in one pipelined call, and appends the finished fields (Ed25519
 * first, each with CRLF) to sigs. Nothing is appended unless every signature
 * was made. DH_ETOKEN when the daemon cannot be reached or answers TEMPFAIL
 * (retry later), DH_EPERM for REFUSED, DH_ENOTFOUND when nothing signs for
 * the domain; the message quotes the daemon's reason. */
int agent_sign(const agent_req *r, dh_buf *sigs, dh_err *e) DH_WUR;

#endif
