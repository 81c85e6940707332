#include "sign/signer.h"

#include "common/hex.h"

#include <stdlib.h>
#include <string.h>

int signer_state_can_sign(enum ks_state s)
{
    return s == KS_ACTIVE;
}

int signer_state_can_sign_named(enum ks_state s)
{
    return s == KS_CREATED || s == KS_PUBLISHED || s == KS_ACTIVE;
}

long signer_best_of(const ks_selector *list, size_t n, const char *domain, enum dkim_alg alg)
{
    long best = -1;
    for (size_t i = 0; i < n; i++) {
        if (list[i].alg != alg || !signer_state_can_sign(list[i].state))
            continue;
        if (domain != NULL && strcmp(list[i].domain, domain) != 0)
            continue;
        best = (long)i; /* the list is oldest first: the newest wins */
    }
    return best;
}

static int choose_one(ks *k, const char *domain, const char *selector, unsigned algs,
                      int algs_explicit, ks_selector **out, size_t *n, dh_err *e)
{
    ks_selector *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    int rc = ks_get(k, domain, selector, s, e);
    if (rc == DH_OK && !signer_state_can_sign_named(s->state))
        rc = dh_err_set(e, DH_ESTATE, "selector %s for %s is %s and cannot sign", selector, domain,
                        ks_state_name(s->state));
    if (rc == DH_OK && algs_explicit && !(algs & (1u << s->alg)))
        rc = dh_err_set(e, DH_EINVAL, "selector %s for %s holds an %s key, not the one asked for",
                        selector, domain, dkim_alg_keytype(s->alg));
    if (rc != DH_OK) {
        ks_list_free(s, 1);
        return rc;
    }
    *out = s;
    *n = 1;
    return DH_OK;
}

int signer_choose_keys(ks *k, const char *domain, const char *selector, unsigned algs,
                       int algs_explicit, ks_selector **out, size_t *n, dh_err *e)
{
    *out = NULL;
    *n = 0;
    if (selector != NULL)
        return choose_one(k, domain, selector, algs, algs_explicit, out, n, e);
    ks_selector *all = NULL, *chosen = NULL;
    size_t nall = 0, nchosen = 0;
    long picks[2];
    int rc = ks_list(k, domain, &all, &nall, e);
    /* Ed25519 first, as in RFC 8463's example: verifiers that do not know it
     * skip it and go on to the RSA signature. Indices are picked before any
     * row is moved out, so a moved-out row can never be picked. */
    static const enum dkim_alg order[] = {DKIM_ALG_ED25519_SHA256, DKIM_ALG_RSA_SHA256};
    for (size_t i = 0; rc == DH_OK && i < 2; i++) {
        if (!(algs & (1u << order[i])))
            continue;
        long b = signer_best_of(all, nall, NULL, order[i]);
        if (b >= 0)
            picks[nchosen++] = b;
        else if (algs_explicit)
            rc = dh_err_set(e, DH_ENOTFOUND, "domain %s has no active %s key", domain,
                            dkim_alg_keytype(order[i]));
    }
    if (rc == DH_OK && nchosen == 0)
        rc = dh_err_set(e, DH_ENOTFOUND,
                        "domain %s has no active key (dkim-keyctl create %s SELECTOR, "
                        "publish its record, then dkim-keyctl activate %s SELECTOR)",
                        domain, domain, domain);
    if (rc == DH_OK && (chosen = calloc(nchosen, sizeof(*chosen))) == NULL)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    for (size_t i = 0; rc == DH_OK && i < nchosen; i++) {
        chosen[i] = all[picks[i]];
        memset(&all[picks[i]], 0, sizeof(all[picks[i]])); /* ownership moved */
    }
    ks_list_free(all, nall);
    if (rc != DH_OK) {
        free(chosen); /* rows are moved in only on success */
        return rc;
    }
    *out = chosen;
    *n = nchosen;
    return DH_OK;
}

int signer_key_id(const ks_selector *s, uint8_t id[HSM_ID_LEN], dh_err *e)
{
    if (dh_unhex(s->key_id, id, HSM_ID_LEN) != DH_OK)
        return dh_err_set(e, DH_EDB, "selector %s for %s: key id '%s' is not %d hex bytes",
                          s->selector, s->domain, s->key_id, HSM_ID_LEN);
    return DH_OK;
}

static enum dkim_alg key_alg(const hsm_key *key)
{
    return hsm_key_type(key) == HSM_KEY_ED25519 ? DKIM_ALG_ED25519_SHA256 : DKIM_ALG_RSA_SHA256;
}

int signer_sign(hsm *h, hsm_key *key, const dkim_hdrs *hdrs, const dkim_sig_params *p,
                const uint8_t bh[32], dh_buf *out, dh_err *e)
{
    if (key_alg(key) != p->alg)
        return dh_err_set(e, DH_EINVAL, "key for s=%s is not a %s key", p->selector,
                          dkim_alg_name(p->alg));
    dh_buf field = {0}, sig = {0};
    uint8_t digest[32];
    int rc = dkim_sig_build(p, bh, &field, e);
    if (rc == DH_OK)
        rc = dkim_sig_digest(hdrs, field.data, field.len, digest, e);
    if (rc == DH_OK)
        rc = hsm_sign_digest(h, key, digest, &sig, e);
    if (rc == DH_OK)
        rc = dkim_sig_finish(field.data, field.len, sig.data, sig.len, out, e);
    dh_buf_free(&field);
    dh_buf_free(&sig);
    return rc;
}
