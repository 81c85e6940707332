/*
 * hsm.c - opening a token: load the module with p11-kit, pick the token by
 * its RFC 7512 URI, open the session pool, log in.
 *
 * The module is loaded *managed* (flags 0): p11-kit then calls the module's
 * C_Initialize with CKF_OS_LOCKING_OK, which we need for signing from many
 * threads (SoftHSM turns its mutexes off when given NULL init args), and
 * several users in one process can initialize and finalize independently.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/uri.h>

#include "common/buf.h"
#include "common/file.h"
#include "hsm/hsm_int.h"

#define MAX_SLOTS 64

static char *trimmed_label(const CK_UTF8CHAR *label, size_t max)
{
    size_t n = p11_kit_space_strlen(label, max);
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, label, n);
        s[n] = '\0';
    }
    return s;
}

static int parse_uri(const char *text, P11KitUri **out, dh_err *e)
{
    P11KitUri *uri = p11_kit_uri_new();
    if (uri == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    int r = p11_kit_uri_parse(text, P11_KIT_URI_FOR_TOKEN, uri);
    if (r != P11_KIT_URI_OK) {
        p11_kit_uri_free(uri);
        return dh_err_set(e, DH_EINVAL, "token URI \"%s\": %s", text, p11_kit_uri_message(r));
    }
    /* p11-kit never matches a URI with attributes it does not know: say why. */
    if (p11_kit_uri_any_unrecognized(uri)) {
        p11_kit_uri_free(uri);
        return dh_err_set(e, DH_EINVAL, "token URI \"%s\": unrecognized attribute", text);
    }
    *out = uri;
    return DH_OK;
}

static int load_module(hsm *h, const char *path, dh_err *e)
{
    h->f = p11_kit_module_load(path, 0);
    if (h->f == NULL) {
        const char *m = p11_kit_message();
        return dh_err_set(e, DH_ENOTFOUND, "PKCS#11 module %s: cannot load: %s", path,
                          m != NULL ? m : "unknown error");
    }
    hsm_op op = {.h = h, .e = e};
    int rc = hsm_p11_done(&op, "C_Initialize", p11_kit_module_initialize(h->f));
    if (rc != DH_OK) {
        dh_err_prefix(e, "PKCS#11 module %s", path);
        return rc;
    }
    h->initialized = 1;
    return DH_OK;
}

/* Appends "'label'" of an initialized token to the list of tokens seen. */
static int note_label(dh_buf *seen, const CK_TOKEN_INFO *ti)
{
    size_t n = p11_kit_space_strlen(ti->label, sizeof ti->label);
    return dh_buf_printf(seen, "%s'%.*s'", seen->len ? ", " : "", (int)n, (const char *)ti->label);
}

/* Looks at each slot with a token; exactly one initialized token must match. */
static int match_slots(hsm_op *op, P11KitUri *uri, const CK_SLOT_ID *slots, CK_ULONG n,
                       dh_buf *seen, unsigned *matches, CK_SLOT_ID *slot, CK_TOKEN_INFO *tinfo)
{
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (P11(op, C_GetTokenInfo, slots[i], &ti) != DH_OK)
            continue; /* removed meanwhile: not a candidate */
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            continue; /* SoftHSM's spare empty slot */
        if (note_label(seen, &ti) != DH_OK)
            return dh_err_set(op->e, DH_ENOMEM, "out of memory");
        if (p11_kit_uri_match_token_info(uri, &ti) == 1) {
            if (++*matches == 1) {
                *slot = slots[i];
                *tinfo = ti;
            }
        }
    }
    op->rv = CKR_OK; /* a slot skipped above is not the answer */
    return DH_OK;
}

int hsm_token_find(hsm_op *op, CK_SLOT_ID *slot, CK_TOKEN_INFO *ti)
{
    hsm *h = op->h;
    dh_err *e = op->e;
    P11KitUri *uri = NULL;
    int rc = parse_uri(h->token_uri, &uri, e);
    if (rc != DH_OK)
        return rc;
    CK_SLOT_ID slots[MAX_SLOTS];
    CK_ULONG n = MAX_SLOTS;
    dh_buf seen = {0};
    unsigned matches = 0;
    rc = P11(op, C_GetSlotList, CK_TRUE, slots, &n);
    if (rc == DH_OK)
        rc = match_slots(op, uri, slots, n, &seen, &matches, slot, ti);
    if (rc == DH_OK && matches == 0)
        rc = dh_err_set(e, DH_ENOTFOUND, "no token matches %s; tokens seen: %s", h->token_uri,
                        seen.len ? (char *)seen.data : "(none)");
    else if (rc == DH_OK && matches > 1)
        rc = dh_err_set(e, DH_EINVAL, "%u tokens match %s (%s); add serial= to the URI", matches,
                        h->token_uri, (char *)seen.data);
    dh_buf_free(&seen);
    p11_kit_uri_free(uri);
    return rc;
}

static int find_token(hsm *h, dh_err *e)
{
    hsm_op op = {.h = h, .e = e};
    int rc = hsm_token_find(&op, &h->slot, &h->tinfo);
    if (rc == DH_OK && (h->label = trimmed_label(h->tinfo.label, sizeof h->tinfo.label)) == NULL)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    return rc;
}

static int check_config(const hsm_config *cfg, dh_err *e)
{
    if (cfg == NULL || cfg->module == NULL || cfg->token_uri == NULL || cfg->pin_file == NULL)
        return dh_err_set(e, DH_EINVAL, "hsm: module, token URI and PIN file are all required");
    if (cfg->pool_size > 1024)
        return dh_err_set(e, DH_EINVAL, "hsm: pool size %u is more than 1024", cfg->pool_size);
    return DH_OK;
}

static hsm *hsm_new(const hsm_config *cfg)
{
    hsm *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->login_mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    hsm_gate_init(h);
    const char *t = getenv("DKIMHSM_PKCS11_TRACE");
    h->trace = t != NULL && *t != '\0';
    h->pid = getpid();
    h->pin_file = strdup(cfg->pin_file);
    h->token_uri = strdup(cfg->token_uri);
    if (h->pin_file == NULL || h->token_uri == NULL) {
        hsm_close(h);
        return NULL;
    }
    return h;
}

/* The first session logs in, so a wrong PIN is reported by hsm_open (and a
 * re-initialisation is only called a success once it is logged in). */
int hsm_first_session(hsm_op *op)
{
    int rc = hsm_session_get(op);
    if (rc == DH_OK)
        hsm_session_put(op->h, op->s, 0);
    return rc;
}

int hsm_open(const hsm_config *cfg, hsm **out, dh_err *e)
{
    int rc = check_config(cfg, e);
    if (rc != DH_OK)
        return rc;
    /* The PIN file is checked before anything is loaded: unsafe modes fail fast. */
    dh_buf pin = {0};
    rc = dh_file_read_pin(cfg->pin_file, &pin, e);
    dh_buf_free_secret(&pin);
    if (rc != DH_OK)
        return rc;
    hsm *h = hsm_new(cfg);
    if (h == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    rc = load_module(h, cfg->module, e);
    if (rc == DH_OK)
        rc = find_token(h, e);
    if (rc == DH_OK)
        rc = hsm_pool_init(h, cfg->pool_size ? cfg->pool_size : 4, e);
    hsm_op op = {.h = h, .e = e};
    if (rc == DH_OK)
        rc = hsm_first_session(&op);
    if (rc != DH_OK) {
        hsm_close(h);
        return rc;
    }
    *out = h;
    return DH_OK;
}

void hsm_close(hsm *h)
{
    if (h == NULL)
        return;
    /* No C_Logout: login is per process, and another user of the module in this
     * process may still be working. Closing our sessions is enough. In a child
     * after fork() the sessions are the parent's: only our memory is freed. */
    if (getpid() == h->pid) {
        if (h->idle != NULL)
            hsm_pool_destroy(h);
        if (h->initialized)
            (void)p11_kit_module_finalize(h->f);
        if (h->f != NULL)
            p11_kit_module_release(h->f);
    }
    free(h->idle);
    hsm_gate_destroy(h);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->login_mu);
    pthread_mutex_destroy(&h->mu);
    free(h->pin_file);
    free(h->token_uri);
    free(h->label);
    free(h);
}
