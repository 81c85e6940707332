#include <stdlib.h>
#include <time.h>

#include "audit/audit.h"
#include "keyctl/keyctl.h"

int kc_conf(kc_ctx *c, dh_err *e)
{
    return c->cf ? DH_OK : conf_load(c->config_path, &c->cf, e);
}

int kc_store(kc_ctx *c, dh_err *e)
{
    int rc = kc_conf(c, e);
    if (rc != DH_OK || c->store)
        return rc;
    return ks_open(c->cf->state_dir, &c->store, e);
}

int kc_token(kc_ctx *c, dh_err *e)
{
    int rc = kc_conf(c, e);
    if (rc != DH_OK || c->token)
        return rc;
    hsm_config hc = {.module = c->cf->pkcs11_module,
                     .token_uri = c->cf->token,
                     .pin_file = c->cf->pin_file,
                     .pool_size = 1};
    rc = hsm_open(&hc, &c->token, e);
    if (rc == DH_ELOGIN) {
        /* A refused PIN is a key event (someone may be guessing): audited,
         * best effort - the refusal itself is what the caller reports. */
        dh_err ignored = {0};
        if (kc_store(c, &ignored) != DH_OK ||
            au_record(c->store, (long long)time(NULL), kc_actor(), "login-failure", NULL, NULL,
                      NULL, e->msg, &ignored) != DH_OK)
            fprintf(stderr, "dkim-keyctl: could not audit the login failure: %s\n", ignored.msg);
    }
    return rc;
}

void kc_ctx_close(kc_ctx *c)
{
    hsm_close(c->token);
    ks_close(c->store);
    conf_free(c->cf);
    c->token = NULL;
    c->store = NULL;
    c->cf = NULL;
}

int kc_print_json_array(kc_ctx *c, const void *items, size_t n, size_t size, kc_json_fn one,
                        dh_err *e)
{
    dh_buf j = {0};
    int rc = dh_buf_putc(&j, '[');
    for (size_t i = 0; rc == DH_OK && i < n; i++) {
        if (i > 0)
            rc = dh_buf_putc(&j, ',');
        if (rc == DH_OK)
            rc = one((const char *)items + i * size, &j);
    }
    if (rc == DH_OK)
        rc = dh_buf_putc(&j, ']');
    if (rc == DH_OK)
        fprintf(c->out, "%s\n", (char *)j.data);
    else
        dh_err_set(e, rc, "cannot format JSON output");
    dh_buf_free(&j);
    return rc;
}
