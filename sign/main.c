/*
 * dkimhsm-sign - sign one message from stdin with the token's key(s) and
 * write it to stdout with the DKIM-Signature field(s) on top.
 *
 * The message is spooled to an unlinked temporary file while its header is
 * parsed and its body hashed, so memory does not grow with message size.
 * Nothing is written to stdout unless every requested signature was made:
 * a message is never passed on unsigned or half-signed by this tool.
 *
 * With --agent, the keys are dkimhsmd's: it chooses them and signs over its
 * socket (agent_path.h), and this process never opens the token.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "conf/conf.h"
#include "dkim/msg.h"
#include "dkim/sig.h"
#include "hsm/hsm.h"
#include "keystore/keystore.h"
#include "sign/agent_path.h"
#include "sign/signer.h"

struct opts {
    const char *config, *domain, *selector, *headers, *alg, *canon, *agent;
    long long timestamp;
};

struct job {
    conf *cf;
    dkim_msg *msg;
    dkim_body *body;
    FILE *spool;
    char *domain;
    ks *store;
    ks_selector *keys;
    size_t nkeys;
    hsm *token;
    dh_buf sigs;
    enum dkim_canon hc, bc;
    unsigned algs;
    int algs_explicit;
};

static void usage(FILE *f)
{
    fputs("usage: dkimhsm-sign [-c CONFIG] [-d DOMAIN] [-s SELECTOR] [--alg rsa|ed25519|both]\n"
          "                    [--canon HDR/BODY] [--headers NAME:NAME:...] [--timestamp T]\n"
          "                    [--agent SOCKET] < in.eml > out.eml\n"
          "  --agent SOCKET  have dkimhsmd sign (keys chosen by its LOOKUP answer unless -s)\n"
          "                  instead of opening the token\n",
          f);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"domain", required_argument, NULL, 'd'},
                                             {"selector", required_argument, NULL, 's'},
                                             {"alg", required_argument, NULL, 'a'},
                                             {"canon", required_argument, NULL, 'C'},
                                             {"headers", required_argument, NULL, 'H'},
                                             {"timestamp", required_argument, NULL, 'T'},
                                             {"agent", required_argument, NULL, 'A'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof(*o));
    o->timestamp = -1;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:d:s:a:h", longopts, NULL)) != -1) {
        char *end;
        switch (ch) {
        case 'c':
            o->config = optarg;
            break;
        case 'd':
            o->domain = optarg;
            break;
        case 's':
            o->selector = optarg;
            break;
        case 'a':
            o->alg = optarg;
            break;
        case 'C':
            o->canon = optarg;
            break;
        case 'H':
            o->headers = optarg;
            break;
        case 'A':
            o->agent = optarg;
            break;
        case 'T':
            o->timestamp = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || o->timestamp < 0) {
                fprintf(stderr, "dkimhsm-sign: --timestamp: '%s' is not a unix time\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    return 0;
}

static int setup(struct job *j, const struct opts *o, dh_err *e)
{
    int rc = conf_load(o->config, &j->cf, e);
    if (rc != DH_OK)
        return rc;
    j->hc = j->cf->hdr_canon;
    j->bc = j->cf->body_canon;
    j->algs = j->cf->algorithms;
    if (o->canon && dkim_canon_parse(o->canon, &j->hc, &j->bc, e) != DH_OK) {
        dh_err_prefix(e, "--canon");
        return dh_err_set_code(e, DH_EUSAGE);
    }
    if (o->alg) {
        j->algs_explicit = 1;
        if (conf_parse_algorithms(o->alg, &j->algs, e) != DH_OK) {
            dh_err_prefix(e, "--alg");
            return dh_err_set_code(e, DH_EUSAGE);
        }
    }
    j->msg = dkim_msg_new(0);
    j->body = dkim_body_new(j->bc, -1);
    j->spool = tmpfile();
    if (j->msg == NULL || j->body == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    if (j->spool == NULL)
        return dh_err_set(e, DH_EIO, "cannot create a temporary file for the message");
    return dkim_msg_attach_body(j->msg, j->body);
}

static int read_message(struct job *j, dh_err *e)
{
    uint8_t buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0) {
        if (fwrite(buf, 1, n, j->spool) != n)
            return dh_err_set(e, DH_EIO, "cannot write the temporary copy of the message");
        int rc = dkim_msg_feed(j->msg, buf, n, e);
        if (rc != DH_OK)
            return rc;
    }
    if (ferror(stdin))
        return dh_err_set(e, DH_EIO, "reading the message from stdin failed");
    int rc = dkim_msg_end(j->msg, e);
    if (rc == DH_OK)
        rc = dkim_hdrs_check_signable(dkim_msg_hdrs(j->msg), e);
    return rc;
}

/* j->domain from -d or From:, and *sel (caller frees) from -s. */
static int find_names(struct job *j, const struct opts *o, char **sel, dh_err *e)
{
    dh_buf from = {0};
    int rc = DH_OK;
    const char *d = o->domain;
    if (d == NULL) {
        rc = dkim_hdrs_from_domain(dkim_msg_hdrs(j->msg), &from, e);
        d = (const char *)from.data;
    }
    if (rc == DH_OK)
        rc = ks_normalize_name(d, "domain", &j->domain, e);
    dh_buf_free(&from);
    if (rc == DH_OK && o->selector)
        rc = ks_normalize_name(o->selector, "selector", sel, e);
    return rc;
}

static int find_keys(struct job *j, const struct opts *o, dh_err *e)
{
    char *sel = NULL;
    int rc = find_names(j, o, &sel, e);
    if (rc == DH_OK)
        rc = ks_open(j->cf->state_dir, &j->store, e);
    if (rc == DH_OK)
        rc = signer_choose_keys(j->store, j->domain, sel, j->algs, j->algs_explicit, &j->keys,
                                &j->nkeys, e);
    free(sel);
    return rc;
}

static int sign_with(struct job *j, const struct opts *o, const ks_selector *s,
                     const uint8_t bh[32], dh_err *e)
{
    uint8_t id[HSM_ID_LEN];
    hsm_key *key = NULL;
    dh_buf hlist = {0};
    const dkim_hdrs *hdrs = dkim_msg_hdrs(j->msg);
    int rc = signer_key_id(s, id, e);
    if (rc == DH_OK)
        rc = hsm_key_open(j->token, id, sizeof(id), &key, e);
    if (rc == DH_OK && s->state != KS_ACTIVE)
        fprintf(stderr,
                "dkimhsm-sign: note: s=%s is %s, not active: signing because it was named\n",
                s->selector, ks_state_name(s->state));
    if (rc == DH_OK && s->alg == DKIM_ALG_RSA_SHA256 && hsm_rsa_bits_warning(s->bits))
        fprintf(stderr, "dkimhsm-sign: warning: s=%s is a %u-bit RSA key: %s\n", s->selector,
                s->bits, hsm_rsa_bits_warning(s->bits));
    if (rc == DH_OK && o->headers)
        rc = dh_buf_puts(&hlist, o->headers);
    else if (rc == DH_OK)
        rc = dkim_sig_select_headers(hdrs, j->cf->sign_headers, j->cf->oversign_headers, &hlist, e);
    long long t = o->timestamp >= 0 ? o->timestamp : (long long)time(NULL);
    dkim_sig_params p = {
        .alg = s->alg,
        .hdr_canon = j->hc,
        .body_canon = j->bc,
        .domain = j->domain,
        .selector = s->selector,
        .identity = NULL,
        .timestamp = t,
        .expire = j->cf->signature_ttl > 0 ? t + j->cf->signature_ttl : -1,
        .body_length = -1,
        .header_list = (const char *)hlist.data,
    };
    if (rc == DH_OK)
        rc = signer_sign(j->token, key, hdrs, &p, bh, &j->sigs, e);
    hsm_key_free(key);
    dh_buf_free(&hlist);
    return rc;
}

static int sign_all(struct job *j, const struct opts *o, dh_err *e)
{
    uint8_t bh[32];
    int rc = dkim_body_final(j->body, bh, NULL);
    if (rc != DH_OK)
        return dh_err_set(e, rc, "body hash failed");
    hsm_config hc = {.module = j->cf->pkcs11_module,
                     .token_uri = j->cf->token,
                     .pin_file = j->cf->pin_file,
                     .pool_size = 1};
    rc = hsm_open(&hc, &j->token, e);
    for (size_t i = 0; rc == DH_OK && i < j->nkeys; i++)
        rc = sign_with(j, o, &j->keys[i], bh, e);
    return rc;
}

static int sign_by_agent(struct job *j, const struct opts *o, dh_err *e)
{
    uint8_t bh[32];
    char *sel = NULL;
    int rc = dkim_body_final(j->body, bh, NULL);
    if (rc != DH_OK)
        return dh_err_set(e, rc, "body hash failed");
    rc = find_names(j, o, &sel, e);
    agent_req r = {
        .socket = o->agent,
        .cf = j->cf,
        .hdrs = dkim_msg_hdrs(j->msg),
        .bh = bh,
        .domain = j->domain,
        .selector = sel,
        .algs = j->algs,
        .algs_explicit = j->algs_explicit,
        .hc = j->hc,
        .bc = j->bc,
        .headers = o->headers,
        .timestamp = o->timestamp >= 0 ? o->timestamp : (long long)time(NULL),
    };
    if (rc == DH_OK)
        rc = agent_sign(&r, &j->sigs, e);
    free(sel);
    return rc;
}

/* The signatures go out in the message's own line-end style: a script that
 * feeds LF files gets LF back; the signature covers the CRLF form either way. */
static int write_output(struct job *j, dh_err *e)
{
    int lf = dkim_msg_uses_lf(j->msg);
    for (size_t i = 0; i < j->sigs.len; i++) {
        if (lf && j->sigs.data[i] == '\r')
            continue;
        putchar(j->sigs.data[i]);
    }
    rewind(j->spool);
    uint8_t buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), j->spool)) > 0)
        if (fwrite(buf, 1, n, stdout) != n)
            break;
    if (ferror(j->spool) || fflush(stdout) != 0 || ferror(stdout))
        return dh_err_set(e, DH_EIO, "writing the signed message failed");
    return DH_OK;
}

static void job_free(struct job *j)
{
    hsm_close(j->token);
    ks_list_free(j->keys, j->nkeys);
    ks_close(j->store);
    free(j->domain);
    if (j->spool)
        fclose(j->spool);
    dkim_msg_free(j->msg);
    dkim_body_free(j->body);
    dh_buf_free(&j->sigs);
    conf_free(j->cf);
}

int main(int argc, char **argv)
{
    struct opts o;
    int prc = parse_opts(argc, argv, &o);
    if (prc != 0)
        return prc == 1 ? 0 : prc;
    struct job j = {0};
    dh_err e = {0};
    int rc = setup(&j, &o, &e);
    if (rc == DH_OK)
        rc = read_message(&j, &e);
    if (rc == DH_OK && o.agent != NULL)
        rc = sign_by_agent(&j, &o, &e);
    if (rc == DH_OK && o.agent == NULL)
        rc = find_keys(&j, &o, &e);
    if (rc == DH_OK && o.agent == NULL)
        rc = sign_all(&j, &o, &e);
    if (rc == DH_OK)
        rc = write_output(&j, &e);
    if (rc != DH_OK)
        fprintf(stderr, "dkimhsm-sign: message not signed: %s\n",
                e.msg[0] ? e.msg : dh_strstatus(rc));
    job_free(&j);
    return dh_err_exit_status(rc);
}
