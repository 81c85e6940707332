/*
 * create / import: put a key into the token and record it in the state
 * database (lifecycle/: lf_create, lf_adopt_key). The token work comes first
 * and is undone if the record cannot be written, so neither side is left with
 * half a selector; the record, its history and its audit entry are one
 * transaction.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyctl/keyctl.h"

struct key_args {
    char *domain, *selector;
    enum dkim_alg alg;
    unsigned bits;
    const char *pem;
};

static void key_args_free(struct key_args *a)
{
    free(a->domain);
    free(a->selector);
}

/* DOMAIN SELECTOR positional arguments, normalized; refuses a taken name
 * before anything touches the token. */
static int names(kc_ctx *c, int argc, char **argv, struct key_args *a, dh_err *e)
{
    if (argc - optind != 2)
        return dh_err_set(e, DH_EINVAL, "%s", "");
    int rc = ks_normalize_name(argv[optind], "domain", &a->domain, e);
    if (rc == DH_OK)
        rc = ks_normalize_name(argv[optind + 1], "selector", &a->selector, e);
    if (rc == DH_OK)
        rc = kc_store(c, e);
    if (rc != DH_OK)
        return rc;
    ks_selector old;
    rc = ks_get(c->store, a->domain, a->selector, &old, NULL);
    if (rc == DH_OK && old.state == KS_DESTROYED) {
        ks_selector_clear(&old); /* a destroyed key's name may be reused */
        return DH_OK;
    }
    if (rc == DH_OK) {
        ks_selector_clear(&old);
        return dh_err_set(e, DH_EEXIST, "selector %s for %s already exists (state %s)", a->selector,
                          a->domain, ks_state_name(old.state));
    }
    return rc == DH_ENOTFOUND ? DH_OK : dh_err_set(e, rc, "state database lookup failed");
}

/* The new key's record, as the zone should publish it. */
static int print_new(kc_ctx *c, lf_ctx *lf, const struct key_args *a, dh_err *e)
{
    return kc_print_records(c, lf, a->domain, a->selector, 0, e);
}

static int label(const struct key_args *a, dh_buf *out)
{
    return dh_buf_printf(out, "%s._domainkey.%s", a->selector, a->domain);
}

static int parse_create_opts(int argc, char **argv, struct key_args *a, unsigned dflt_bits,
                             dh_err *e)
{
    static const struct option longopts[] = {{"alg", required_argument, NULL, 'a'},
                                             {"bits", required_argument, NULL, 'b'},
                                             {NULL, 0, NULL, 0}};
    a->alg = DKIM_ALG_RSA_SHA256;
    a->bits = dflt_bits;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end;
        if (ch == 'a' && dkim_alg_parse(optarg, &a->alg, e) != DH_OK)
            return dh_err_set(e, DH_EINVAL, "--alg: '%s' is not rsa or ed25519", optarg);
        if (ch == 'b') {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v > 16384)
                return dh_err_set(e, DH_EINVAL, "--bits: '%s' is not a key size", optarg);
            a->bits = (unsigned)v;
        }
        if (ch == '?')
            return dh_err_set(e, DH_EINVAL, "%s", "");
    }
    if (a->alg == DKIM_ALG_RSA_SHA256 && a->bits < 1024)
        return dh_err_set(e, DH_EINVAL,
                          "--bits %u: RSA keys below 1024 bits are refused "
                          "(RFC 8301)",
                          a->bits);
    return DH_OK;
}

int kc_cmd_create(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    struct key_args a = {0};
    lf_ctx lf;
    int rc = kc_conf(c, e);
    if (rc == DH_OK)
        rc = parse_create_opts(argc, argv, &a, c->cf->rsa_bits, e);
    if (rc == DH_OK)
        rc = names(c, argc, argv, &a, e);
    if (rc == DH_OK && a.alg == DKIM_ALG_RSA_SHA256 && hsm_rsa_bits_warning(a.bits))
        fprintf(stderr, "dkim-keyctl: warning: %u-bit RSA key: %s\n", a.bits,
                hsm_rsa_bits_warning(a.bits));
    if (rc == DH_OK)
        rc = kc_life(c, 1, &lf, e);
    if (rc == DH_OK)
        rc = lf_create(&lf, a.domain, a.selector, a.alg, a.bits, NULL, kc_actor(), NULL, e);
    if (rc == DH_OK)
        rc = print_new(c, &lf, &a, e);
    key_args_free(&a);
    return rc;
}

int kc_cmd_import(kc_ctx *c, int argc, char **argv, dh_err *e)
{
    static const struct option longopts[] = {{"pem", required_argument, NULL, 'p'},
                                             {NULL, 0, NULL, 0}};
    struct key_args a = {0};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch != 'p')
            return dh_err_set(e, DH_EINVAL, "%s", "");
        a.pem = optarg;
    }
    if (a.pem == NULL)
        return dh_err_set(e, DH_EINVAL, "%s", "");
    uint8_t id[HSM_ID_LEN];
    dh_buf lbl = {0};
    enum hsm_keytype type;
    unsigned bits;
    lf_ctx lf;
    int rc = names(c, argc, argv, &a, e);
    if (rc == DH_OK)
        rc = kc_life(c, 1, &lf, e);
    if (rc == DH_OK && label(&a, &lbl) != DH_OK)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc == DH_OK)
        rc = hsm_import_pem(c->token, a.pem, (const char *)lbl.data, id, &type, &bits, e);
    if (rc == DH_OK && type == HSM_KEY_RSA && hsm_rsa_bits_warning(bits))
        fprintf(stderr, "dkim-keyctl: warning: %u-bit RSA key: %s\n", bits,
                hsm_rsa_bits_warning(bits));
    if (rc == DH_OK)
        rc = lf_adopt_key(&lf, a.domain, a.selector, id, KS_IMPORTED, NULL, kc_actor(), NULL, e);
    if (rc == DH_OK)
        rc = print_new(c, &lf, &a, e);
    dh_buf_free(&lbl);
    key_args_free(&a);
    return rc;
}
