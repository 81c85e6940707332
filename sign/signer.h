/*
 * signer.h - from a parsed message to finished DKIM-Signature fields, with
 * the key in the token. Glue between dkim/ (format), keystore/ (which key
 * serves which selector) and hsm/ (the signature itself).
 */
#ifndef SIGN_SIGNER_H
#define SIGN_SIGNER_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "dkim/msg.h"
#include "dkim/sig.h"
#include "hsm/hsm.h"
#include "keystore/keystore.h"

/* Whether a selector in this state signs mail: only an active one, so that
 * nothing is signed with a key DNS does not publish (dkimhsmd, and
 * dkimhsm-sign's own choice of keys). */
int signer_state_can_sign(enum ks_state s);
/* A selector named explicitly (dkimhsm-sign --selector) may also be created
 * or published: an operator signs a test message with a new key before
 * activating it. Retiring, revoked and destroyed keys never sign. */
int signer_state_can_sign_named(enum ks_state s);

/* Chooses the selectors that sign for domain. With selector set: that one
 * (it must exist, be able to sign, and match algs unless algs_explicit is 0).
 * Without: for each algorithm in algs, the domain's newest active key of
 * it. When algs_explicit, a
 * requested algorithm with no usable key is an error naming it; otherwise
 * algorithms without a key are skipped, and no key at all is an error.
 * *out (caller frees with ks_list_free) is ordered ed25519 before rsa. */
int signer_choose_keys(ks *k, const char *domain, const char *selector, unsigned algs,
                       int algs_explicit, ks_selector **out, size_t *n, dh_err *e) DH_WUR;

/* Index in list of the newest active key of alg (the later row, the list
 * being in creation order), restricted to domain unless it is NULL; -1 when
 * none. */
long signer_best_of(const ks_selector *list, size_t n, const char *domain, enum dkim_alg alg);

/* The CKA_ID bytes of a stored selector (hex in the keystore). */
int signer_key_id(const ks_selector *s, uint8_t id[HSM_ID_LEN], dh_err *e) DH_WUR;

/* Signs one message with one key: builds the DKIM-Signature field from p and
 * bh, has the token sign the SHA-256 of the header hash input, and appends
 * the complete field (with CRLF) to out. p->alg must match the key. */
int signer_sign(hsm *h, hsm_key *key, const dkim_hdrs *hdrs, const dkim_sig_params *p,
                const uint8_t bh[32], dh_buf *out, dh_err *e) DH_WUR;

#endif
