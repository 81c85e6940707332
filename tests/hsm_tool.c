/*
 * hsm_tool.c - a small front end to hsm/ for shell tests (not installed).
 *
 *   hsm_tool gen rsa|ed25519 BITS LABEL PUBOUT   prints id=HEX and uri=URI,
 *                                                writes the public key (p= bytes)
 *   hsm_tool import PEM LABEL                     prints id=HEX and uri=URI
 *   hsm_tool sign IDHEX DIGESTHEX                 prints the signature in hex
 *
 * The token comes from DKIMHSM_TEST_MODULE, DKIMHSM_TEST_TOKEN and
 * DKIMHSM_TEST_PIN_FILE, as tests/lib/with-token.sh sets them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/hex.h"
#include "hsm/hsm.h"

static int usage(void)
{
    fputs("usage: hsm_tool gen rsa|ed25519 BITS LABEL PUBOUT\n"
          "       hsm_tool import PEM LABEL\n"
          "       hsm_tool sign IDHEX DIGESTHEX\n",
          stderr);
    return 2;
}

/* Whole hex string into out (at most max bytes). */
static int unhex(const char *s, uint8_t *out, size_t max, size_t *len)
{
    size_t n = strlen(s) / 2;
    if (n > max || dh_unhex(s, out, n) != DH_OK)
        return -1;
    *len = n;
    return 0;
}

static void print_hex(const char *prefix, const uint8_t *p, size_t n)
{
    fputs(prefix, stdout);
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
    putchar('\n');
}

static int print_id_uri(hsm *h, const uint8_t id[HSM_ID_LEN], dh_err *e)
{
    dh_buf uri = {0};
    int rc = hsm_key_uri(h, id, HSM_ID_LEN, &uri, e);
    if (rc == DH_OK) {
        print_hex("id=", id, HSM_ID_LEN);
        printf("uri=%s\n", (char *)uri.data);
    }
    dh_buf_free(&uri);
    return rc;
}

static int write_file(const char *path, const dh_buf *b, dh_err *e)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(b->data, 1, b->len, f) != b->len) {
        if (f != NULL)
            fclose(f);
        return dh_err_set(e, DH_EIO, "%s: cannot write", path);
    }
    return fclose(f) == 0 ? DH_OK : dh_err_set(e, DH_EIO, "%s: cannot write", path);
}

static int cmd_gen(hsm *h, char **argv, dh_err *e)
{
    enum hsm_keytype t = strcmp(argv[0], "rsa") == 0 ? HSM_KEY_RSA : HSM_KEY_ED25519;
    uint8_t id[HSM_ID_LEN];
    hsm_key *k = NULL;
    dh_buf pub = {0};
    int rc = hsm_generate(h, t, (unsigned)strtoul(argv[1], NULL, 10), argv[2], id, e);
    if (rc == DH_OK)
        rc = hsm_key_open(h, id, HSM_ID_LEN, &k, e);
    if (rc == DH_OK)
        rc = hsm_key_public(h, k, &pub, e);
    if (rc == DH_OK)
        rc = write_file(argv[3], &pub, e);
    if (rc == DH_OK)
        rc = print_id_uri(h, id, e);
    dh_buf_free(&pub);
    hsm_key_free(k);
    return rc;
}

static int cmd_import(hsm *h, char **argv, dh_err *e)
{
    uint8_t id[HSM_ID_LEN];
    enum hsm_keytype t;
    unsigned bits;
    int rc = hsm_import_pem(h, argv[0], argv[1], id, &t, &bits, e);
    if (rc == DH_OK)
        rc = print_id_uri(h, id, e);
    return rc;
}

static int cmd_sign(hsm *h, char **argv, dh_err *e)
{
    uint8_t id[64], dg[32];
    size_t idlen = 0, dglen = 0;
    if (unhex(argv[0], id, sizeof id, &idlen) != 0 || unhex(argv[1], dg, 32, &dglen) != 0 ||
        dglen != 32)
        return dh_err_set(e, DH_EINVAL, "bad hex id or digest (need 32 bytes)");
    hsm_key *k = NULL;
    dh_buf sig = {0};
    int rc = hsm_key_open(h, id, idlen, &k, e);
    if (rc == DH_OK)
        rc = hsm_sign_digest(h, k, dg, &sig, e);
    if (rc == DH_OK)
        print_hex("", sig.data, sig.len);
    dh_buf_free(&sig);
    hsm_key_free(k);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    int need = strcmp(cmd, "gen") == 0      ? 4
               : strcmp(cmd, "import") == 0 ? 2
               : strcmp(cmd, "sign") == 0   ? 2
                                            : -1;
    if (need < 0 || argc != need + 2)
        return usage();
    hsm_config cfg = {getenv("DKIMHSM_TEST_MODULE"), getenv("DKIMHSM_TEST_TOKEN"),
                      getenv("DKIMHSM_TEST_PIN_FILE"), 1};
    hsm *h = NULL;
    dh_err e = {0};
    int rc = hsm_open(&cfg, &h, &e);
    if (rc == DH_OK) {
        if (strcmp(cmd, "gen") == 0)
            rc = cmd_gen(h, argv + 2, &e);
        else if (strcmp(cmd, "import") == 0)
            rc = cmd_import(h, argv + 2, &e);
        else
            rc = cmd_sign(h, argv + 2, &e);
    }
    hsm_close(h);
    if (rc != DH_OK) {
        fprintf(stderr, "hsm_tool: %s\n", e.msg);
        return dh_err_exit_status(rc);
    }
    return 0;
}
