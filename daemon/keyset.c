#include "daemon/keyset.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "sign/signer.h"

struct kset {
    atomic_int refs;
    ks_selector *rows; /* from the database, creation order */
    size_t n;
    kset_key *keys; /* keys[i] describes rows[i] */
};

static void kset_free(kset *s)
{
    for (size_t i = 0; i < s->n; i++)
        hsm_key_free(s->keys[i].key);
    free(s->keys);
    ks_list_free(s->rows, s->n);
    free(s);
}

/* Opens the token key of a row that may sign; a key the token lacks is
 * logged and left unusable rather than stopping the daemon. */
static void open_key(hsm *h, const ks_selector *row, kset_key *k)
{
    k->domain = row->domain;
    k->selector = row->selector;
    k->alg = row->alg;
    k->state = row->state;
    k->key = NULL;
    if (!signer_state_can_sign(row->state))
        return;
    uint8_t id[HSM_ID_LEN];
    dh_err e = {0};
    if (signer_key_id(row, id, &e) != DH_OK ||
        hsm_key_open(h, id, sizeof(id), &k->key, &e) != DH_OK)
        dh_log(DH_LOG_ERR, "selector %s for %s cannot sign: %s", row->selector, row->domain, e.msg);
}

int kset_load(ks *store, hsm *h, kset **out, dh_err *e)
{
    *out = NULL;
    kset *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    atomic_init(&s->refs, 1);
    int rc = ks_list(store, NULL, &s->rows, &s->n, e);
    if (rc == DH_OK && s->n > 0 && (s->keys = calloc(s->n, sizeof(*s->keys))) == NULL)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc != DH_OK) {
        ks_list_free(s->rows, s->n);
        free(s);
        return rc;
    }
    for (size_t i = 0; i < s->n; i++)
        open_key(h, &s->rows[i], &s->keys[i]);
    *out = s;
    return DH_OK;
}

void kset_ref(kset *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void kset_unref(kset *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
        kset_free(s);
}

const kset_key *kset_find(const kset *s, const char *domain, const char *selector)
{
    /* A destroyed row may share its name with the live key that reused it. */
    for (size_t i = 0; i < s->n; i++)
        if (s->rows[i].state != KS_DESTROYED && strcmp(s->rows[i].domain, domain) == 0 &&
            strcmp(s->rows[i].selector, selector) == 0)
            return &s->keys[i];
    return NULL;
}

size_t kset_usable(const kset *s, const char *domain, const kset_key **out, size_t max)
{
    static const enum dkim_alg order[] = {DKIM_ALG_ED25519_SHA256, DKIM_ALG_RSA_SHA256};
    size_t n = 0;
    for (size_t i = 0; i < 2 && n < max; i++) {
        long b = signer_best_of(s->rows, s->n, domain, order[i]);
        if (b >= 0 && s->keys[b].key != NULL)
            out[n++] = &s->keys[b];
    }
    return n;
}

size_t kset_count(const kset *s)
{
    return s->n;
}
