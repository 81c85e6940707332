#include "daemon/remote_sign.h"

#include <string.h>

struct rs_work {
    dh_buf field[RS_MAX_KEYS], block[RS_MAX_KEYS];
    ac_result res[RS_MAX_KEYS];
    ap_sign req[RS_MAX_KEYS];
};

static void work_free(struct rs_work *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dh_buf_free(&w->field[i]);
        dh_buf_free(&w->block[i]);
        ac_result_clear(&w->res[i]);
    }
}

/* The field for one key and the block dkimhsmd is asked to sign. */
static int prepare(const dkim_hdrs *hdrs, const uint8_t bh[32], const rs_params *p, const rs_key *k,
                   const char *hlist, struct rs_work *w, size_t i, dh_err *e)
{
    dkim_sig_params sp = {.alg = k->alg,
                          .hdr_canon = p->hdr_canon,
                          .body_canon = p->body_canon,
                          .domain = p->domain,
                          .selector = k->selector,
                          .timestamp = p->timestamp,
                          .expire = p->expire,
                          .body_length = -1,
                          .header_list = hlist};
    int rc = dkim_sig_build(&sp, bh, &w->field[i], e);
    if (rc == DH_OK)
        rc = dkim_sig_hash_input(hdrs, w->field[i].data, w->field[i].len, &w->block[i], e);
    w->req[i] = (ap_sign){{p->domain, strlen(p->domain)},
                          {k->selector, strlen(k->selector)},
                          (uint8_t)k->alg,
                          w->block[i].data,
                          w->block[i].len};
    return rc;
}

static int answer_error(const ac_result *r, const char *selector, dh_err *e)
{
    switch (r->status) {
    case AP_TEMPFAIL:
        return dh_err_set(e, DH_ETOKEN, "dkimhsmd: TEMPFAIL for s=%s: %s", selector, r->reason);
    case AP_REFUSED:
        return dh_err_set(e, DH_EPERM, "dkimhsmd refused s=%s: %s", selector, r->reason);
    default:
        return dh_err_set(e, DH_EINVAL, "dkimhsmd: %s for s=%s: %s", ap_status_name(r->status),
                          selector, r->reason);
    }
}

int rs_sign(ac *c, const dkim_hdrs *hdrs, const uint8_t bh[32], const rs_params *p,
            const rs_key *keys, size_t n, dh_buf *out, dh_err *e)
{
    if (n == 0 || n > RS_MAX_KEYS)
        return dh_err_set(e, DH_EINVAL, "between 1 and %d keys per message", RS_MAX_KEYS);
    struct rs_work w;
    memset(&w, 0, sizeof(w));
    dh_buf hlist = {0};
    int rc = DH_OK;
    if (p->header_list != NULL)
        rc = dh_buf_puts(&hlist, p->header_list);
    else
        rc = dkim_sig_select_headers(hdrs, p->sign_headers, p->oversign_headers, &hlist, e);
    for (size_t i = 0; rc == DH_OK && i < n; i++)
        rc = prepare(hdrs, bh, p, &keys[i], (const char *)hlist.data, &w, i, e);
    if (rc == DH_OK)
        rc = ac_sign(c, w.req, n, w.res, e);
    for (size_t i = 0; rc == DH_OK && i < n; i++) {
        if (w.res[i].status != AP_OK)
            rc = answer_error(&w.res[i], keys[i].selector, e);
        else if (w.res[i].sig.len == 0)
            rc = dh_err_set(e, DH_ETOKEN, "dkimhsmd sent an empty signature for s=%s",
                            keys[i].selector);
    }
    size_t mark = out->len;
    for (size_t i = 0; rc == DH_OK && i < n; i++)
        rc = dkim_sig_finish(w.field[i].data, w.field[i].len, w.res[i].sig.data, w.res[i].sig.len,
                             out, e);
    if (rc != DH_OK) { /* all or nothing */
        out->len = mark;
        if (out->data != NULL)
            out->data[mark] = '\0';
    }
    dh_buf_free(&hlist);
    work_free(&w, n);
    return rc;
}
