/*
 * create / import: put a key into the token and record it in the state
 * database. The token work comes first and is undone if the record cannot be
 * written, so neither side is left with half a selector.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/hex.h"
#include "dkim/b64.h"
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
    if (rc == DH_OK) {
        ks_selector_clear(&old);
        return dh_err_set(e, DH_EEXIST, "selector %s for %s already exists (state %s)", a->selector,
                          a->domain, ks_state_name(old.state));
    }
    return rc == DH_ENOTFOUND ? DH_OK : dh_err_set(e, rc, "state database lookup failed");
}

/* Reads the public key back from the token and inserts the row. */
static int record_key(kc_ctx *c, const struct key_args *a, const uint8_t id[HSM_ID_LEN],
                      enum ks_custody custody, dh_err *e)
{
    ks_selector row_ = {0}, *row = &row_; /* borrows a's and the local strings */
    hsm_key *key = NULL;
    dh_buf pub = {0}, b64 = {0};
    char idhex[2 * HSM_ID_LEN + 1];
    dh_hex(id, HSM_ID_LEN, idhex, sizeof(idhex));
    int rc = hsm_key_open(c->token, id, HSM_ID_LEN, &key, e);
    if (rc == DH_OK)
        rc = hsm_key_public(c->token, key, &pub, e);
    if (rc == DH_OK && (rc = dkim_b64_encode(pub.data, pub.len, &b64)) != DH_OK)
        dh_err_set(e, rc, "base64 of public key failed");
    long long now = (long long)time(NULL);
    if (rc == DH_OK)
        *row = (ks_selector){
            .domain = a->domain,
            .selector = a->selector,
            .alg = hsm_key_type(key) == HSM_KEY_ED25519 ? DKIM_ALG_ED25519_SHA256
                                                        : DKIM_ALG_RSA_SHA256,
            .bits = hsm_key_bits(key),
            .key_id = idhex,
            .public_key = (char *)b64.data,
            .custody = custody,
            .state = KS_CREATED,
            .created = now,
            .state_changed = now,
        };
    if (rc == DH_OK)
        rc = ks_insert(c->store, row, e);
    if (rc == DH_OK)
        rc = kc_print_record(c, row, e);
    hsm_key_free(key);
    dh_buf_free(&pub);
    dh_buf_free(&b64);
    return rc;
}

static int finish(kc_ctx *c, const struct key_args *a, const uint8_t id[HSM_ID_LEN],
                  enum ks_custody custody, dh_err *e)
{
    int rc = record_key(c, a, id, custody, e);
    if (rc == DH_OK)
        return DH_OK;
    /* Undo: no token key without a record, no record without a token key. */
    dh_err undo;
    if (ks_delete(c->store, a->domain, a->selector, &undo) != DH_OK)
        fprintf(stderr, "dkim-keyctl: also failed to remove the new record: %s\n", undo.msg);
    if (hsm_key_destroy(c->token, id, HSM_ID_LEN, &undo) != DH_OK)
        fprintf(stderr, "dkim-keyctl: also failed to remove the new token key: %s\n", undo.msg);
    return rc;
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
    uint8_t id[HSM_ID_LEN];
    dh_buf lbl = {0};
    int rc = kc_conf(c, e);
    if (rc == DH_OK)
        rc = parse_create_opts(argc, argv, &a, c->cf->rsa_bits, e);
    if (rc == DH_OK)
        rc = names(c, argc, argv, &a, e);
    if (rc == DH_OK && a.alg == DKIM_ALG_RSA_SHA256 && hsm_rsa_bits_warning(a.bits))
        fprintf(stderr, "dkim-keyctl: warning: %u-bit RSA key: %s\n", a.bits,
                hsm_rsa_bits_warning(a.bits));
    if (rc == DH_OK)
        rc = kc_token(c, e);
    if (rc == DH_OK && label(&a, &lbl) != DH_OK)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    enum hsm_keytype type = a.alg == DKIM_ALG_ED25519_SHA256 ? HSM_KEY_ED25519 : HSM_KEY_RSA;
    if (rc == DH_OK)
        rc = hsm_generate(c->token, type, a.bits, (const char *)lbl.data, id, e);
    if (rc == DH_OK)
        rc = finish(c, &a, id, KS_GENERATED, e);
    dh_buf_free(&lbl);
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
    int rc = names(c, argc, argv, &a, e);
    if (rc == DH_OK)
        rc = kc_token(c, e);
    if (rc == DH_OK && label(&a, &lbl) != DH_OK)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc == DH_OK)
        rc = hsm_import_pem(c->token, a.pem, (const char *)lbl.data, id, &type, &bits, e);
    if (rc == DH_OK && type == HSM_KEY_RSA && hsm_rsa_bits_warning(bits))
        fprintf(stderr, "dkim-keyctl: warning: %u-bit RSA key: %s\n", bits,
                hsm_rsa_bits_warning(bits));
    if (rc == DH_OK)
        rc = finish(c, &a, id, KS_IMPORTED, e);
    dh_buf_free(&lbl);
    key_args_free(&a);
    return rc;
}
