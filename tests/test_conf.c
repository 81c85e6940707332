/* conf/: the parameter table, its bounds, and errors that name file:line:key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "tests/lib/check.h"

static const char *dir;

static char *write_conf(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

#define BASE                                                                                       \
    "pkcs11_module = /usr/lib/softhsm/libsofthsm2.so\ntoken = pkcs11:token=dkim\n"                 \
    "pin_file = pin\nstate_dir = /var/lib/dkimhsm\n"

static void test_defaults_and_relative_paths(void)
{
    conf *c = NULL;
    dh_err e = {0};
    CHECK_OK(conf_load(write_conf("a.conf", "# comment\n\n" BASE), &c, &e));
    if (c == NULL)
        return;
    char want[300];
    snprintf(want, sizeof(want), "%s/pin", dir);
    CHECK_STR(c->pin_file, want);
    CHECK_STR(c->state_dir, "/var/lib/dkimhsm");
    CHECK_STR(c->token, "pkcs11:token=dkim");
    CHECK_EQ_INT(c->hdr_canon, DKIM_CANON_RELAXED);
    CHECK_EQ_INT(c->body_canon, DKIM_CANON_RELAXED);
    CHECK_EQ_INT(c->algorithms, CONF_ALG_RSA | CONF_ALG_ED25519);
    CHECK_EQ_INT(c->rsa_bits, 2048);
    CHECK(strstr(c->oversign_headers, "from") != NULL);
    conf_free(c);
}

static void test_values(void)
{
    conf *c = NULL;
    dh_err e = {0};
    CHECK_OK(conf_load(write_conf("b.conf", BASE "canonicalization = simple/relaxed\n"
                                                 "algorithms = ed25519\nrsa_bits = 3072\n"
                                                 "signature_ttl = 7d\n"
                                                 "sign_headers = From : To:Subject\n"),
                       &c, &e));
    if (c == NULL)
        return;
    CHECK_EQ_INT(c->hdr_canon, DKIM_CANON_SIMPLE);
    CHECK_EQ_INT(c->body_canon, DKIM_CANON_RELAXED);
    CHECK_EQ_INT(c->algorithms, CONF_ALG_ED25519);
    CHECK_EQ_INT(c->rsa_bits, 3072);
    CHECK_EQ_INT(c->signature_ttl, 7 * 86400);
    CHECK_STR(c->sign_headers, "from:to:subject");
    conf_free(c);
}

static void expect_error(const char *text, const char *want)
{
    conf *c = NULL;
    dh_err e = {0};
    int rc = conf_load(write_conf("bad.conf", text), &c, &e);
    CHECK_EQ_INT(rc, DH_ECONFIG);
    CHECK(c == NULL);
    if (strstr(e.msg, want) == NULL)
        check_fail(__FILE__, __LINE__, "error '%s' lacks '%s'", e.msg, want);
    conf_free(c);
}

static void test_errors(void)
{
    expect_error(BASE "colour = blue\n", "bad.conf:5: colour: unknown key");
    expect_error(BASE "rsa_bits = 512\n", "bad.conf:5: rsa_bits: 512 is out of range");
    expect_error(BASE "rsa_bits = lots\n", "rsa_bits: 'lots' is not a whole number");
    expect_error(BASE "canonicalization = relaxed/loose\n", "bad.conf:5: canonicalization");
    expect_error(BASE "algorithms = rsa,dsa\n", "algorithms: unknown algorithm 'dsa'");
    expect_error(BASE "signature_ttl = 5y\n", "signature_ttl");
    expect_error(BASE "token = pkcs11:token=x\n", "bad.conf:5: token: given twice");
    expect_error(BASE "just words\n", "bad.conf:5: expected 'key = value'");
    expect_error(BASE "sign_headers = from::to\n", "sign_headers");
    expect_error(BASE "rsa_bits =\n", "rsa_bits: empty value");
    expect_error("token = pkcs11:token=dkim\n", "pkcs11_module: required key missing");
}

static void test_missing_file(void)
{
    conf *c = NULL;
    dh_err e = {0};
    CHECK_EQ_INT(conf_load("/nonexistent/dkimhsm.conf", &c, &e), DH_ECONFIG);
    CHECK(strstr(e.msg, "/nonexistent/dkimhsm.conf") != NULL);
}

static void test_env(void)
{
    conf *c = NULL;
    setenv(CONF_ENV, write_conf("env.conf", BASE), 1);
    CHECK_OK(conf_load(NULL, &c, NULL));
    CHECK(c != NULL && strstr(c->path, "env.conf") != NULL);
    conf_free(c);
    unsetenv(CONF_ENV);
}

int main(int argc, char **argv)
{
    if ((dir = check_tmpdir()) == NULL)
        return 1;
    static const struct check_case cases[] = {
        {"defaults_and_relative_paths", test_defaults_and_relative_paths},
        {"values", test_values},
        {"errors", test_errors},
        {"missing_file", test_missing_file},
        {"env", test_env},
        {NULL, NULL}};
    return check_run(argc, argv, cases);
}
