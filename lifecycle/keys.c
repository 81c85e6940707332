/*
 * keys.c - a new key enters the lifecycle: token first, then the record,
 * its history and its audit entry in one transaction; the token key is
 * destroyed again if the record cannot be written.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hex.h"
#include "dkim/b64.h"
#include "lifecycle/lf_int.h"

static int read_public(lf_ctx *c, const uint8_t id[HSM_ID_LEN], enum dkim_alg *alg, unsigned *bits,
                       dh_buf *b64, dh_err *e)
{
    hsm_key *key = NULL;
    dh_buf pub = {0};
    int rc = hsm_key_open(c->token, id, HSM_ID_LEN, &key, e);
    if (rc == DH_OK)
        rc = hsm_key_public(c->token, key, &pub, e);
    if (rc == DH_OK && (rc = dkim_b64_encode(pub.data, pub.len, b64)) != DH_OK)
        dh_err_set(e, rc, "base64 of public key failed");
    if (rc == DH_OK) {
        *alg = hsm_key_type(key) == HSM_KEY_ED25519 ? DKIM_ALG_ED25519_SHA256 : DKIM_ALG_RSA_SHA256;
        *bits = hsm_key_bits(key);
    }
    hsm_key_free(key);
    dh_buf_free(&pub);
    return rc;
}

/* Insert, history and audit entry in one transaction. */
static int record(lf_ctx *c, const ks_selector *row, const char *actor, dh_err *e)
{
    char fp[AU_HASH_HEX];
    dh_buf detail = {0};
    int rc = au_fingerprint(row->public_key, fp, e);
    if (rc == DH_OK &&
        dh_buf_printf(&detail, "%s %u bits, key_id %s, %s%s%s", dkim_alg_name(row->alg), row->bits,
                      row->key_id,
                      row->custody == KS_IMPORTED ? "imported from PEM" : "generated in token",
                      row->predecessor ? "; successor of " : "",
                      row->predecessor ? row->predecessor : "") != DH_OK)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc == DH_OK)
        rc = ks_begin(c->store, e);
    if (rc != DH_OK) {
        dh_buf_free(&detail);
        return rc;
    }
    rc = ks_insert(c->store, row, e);
    if (rc == DH_OK)
        rc = ks_add_history(c->store, row, row->created, actor, (char *)detail.data, e);
    if (rc == DH_OK)
        rc = au_append(c->store, row->created, actor,
                       row->custody == KS_IMPORTED ? "import" : "create", row->domain,
                       row->selector, fp, (char *)detail.data, NULL, e);
    dh_buf_free(&detail);
    return lf_finish(c, rc, e);
}

int lf_adopt_key(lf_ctx *c, const char *domain, const char *selector, const uint8_t id[HSM_ID_LEN],
                 enum ks_custody custody, const char *predecessor, const char *actor,
                 ks_selector *out, dh_err *e)
{
    if (out)
        memset(out, 0, sizeof(*out));
    if (c->token == NULL)
        return dh_err_set(e, DH_ESTATE, "adding a key needs the token");
    char *d = NULL, *s = NULL, idhex[2 * HSM_ID_LEN + 1];
    dh_buf b64 = {0};
    ks_selector row = {0};
    dh_hex(id, HSM_ID_LEN, idhex, sizeof(idhex));
    int rc = lf_names(domain, selector, &d, &s, e);
    if (rc == DH_OK)
        rc = read_public(c, id, &row.alg, &row.bits, &b64, e);
    if (rc == DH_OK) {
        long long now = lf_now(c);
        row.domain = d;
        row.selector = s;
        row.key_id = idhex;
        row.public_key = (char *)b64.data;
        row.custody = custody;
        row.state = KS_CREATED;
        row.created = row.state_changed = now;
        row.predecessor = (char *)predecessor;
        rc = record(c, &row, actor, e);
    }
    if (rc == DH_OK && out)
        rc = ks_get(c->store, d, s, out, e);
    if (rc != DH_OK) {
        /* Undo: no token key without a record. */
        dh_err undo;
        if (hsm_key_destroy(c->token, id, HSM_ID_LEN, &undo) != DH_OK)
            dh_err_prefix(e, "(also failed to remove the new token key: %s)", undo.msg);
    }
    dh_buf_free(&b64);
    free(d);
    free(s);
    return rc;
}

int lf_create(lf_ctx *c, const char *domain, const char *selector, enum dkim_alg alg, unsigned bits,
              const char *predecessor, const char *actor, ks_selector *out, dh_err *e)
{
    if (out)
        memset(out, 0, sizeof(*out));
    char *d = NULL, *s = NULL;
    ks_selector old = {0};
    dh_buf label = {0};
    uint8_t id[HSM_ID_LEN];
    int rc = lf_names(domain, selector, &d, &s, e);
    if (rc != DH_OK)
        return rc;
    int got = ks_get(c->store, d, s, &old, NULL);
    if (got == DH_OK && old.state != KS_DESTROYED)
        rc = dh_err_set(e, DH_EEXIST, "selector %s for %s already exists (state %s)", s, d,
                        ks_state_name(old.state));
    else if (got != DH_OK && got != DH_ENOTFOUND)
        rc = dh_err_set(e, got, "state database lookup failed");
    if (rc == DH_OK && c->token == NULL)
        rc = dh_err_set(e, DH_ESTATE, "creating a key needs the token");
    if (rc == DH_OK && dh_buf_printf(&label, "%s._domainkey.%s", s, d) != DH_OK)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    enum hsm_keytype type = alg == DKIM_ALG_ED25519_SHA256 ? HSM_KEY_ED25519 : HSM_KEY_RSA;
    if (rc == DH_OK)
        rc = hsm_generate(c->token, type, bits ? bits : c->rsa_bits, (char *)label.data, id, e);
    if (rc == DH_OK)
        rc = lf_adopt_key(c, d, s, id, KS_GENERATED, predecessor, actor, out, e);
    ks_selector_clear(&old);
    dh_buf_free(&label);
    free(d);
    free(s);
    return rc;
}
