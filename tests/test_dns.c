/*
 * test_dns.c - dns/: dn_check against a real knotd serving tests/data/dns
 * (run through tests/lib/with-dns.sh), RFC 2136 updates with TSIG, the TSIG
 * key file, and the provider-mode name mapping.
 *
 * Needs DKIMHSM_TEST_DNS_SERVER and DKIMHSM_TEST_TSIG_FILE (with-dns.sh);
 * without them the cases that need a server are skipped (exit 77 when all
 * are).
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dkim/b64.h"
#include "dns/dns.h"
#include "tests/lib/check.h"

#define ED_P "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#define OTHER_P "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define RSA_P                                                                                      \
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/"   \
    "J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLz"   \
    "BfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"

static const char *server;
static int skipped;

static int need_server(void)
{
    if (server == NULL)
        skipped++;
    return server != NULL;
}

/* The decoded keys behind the dn_expects a case holds (a ring: the last
 * KEEP stay valid). */
#define KEEP 4
static dh_buf keys[KEEP];
static size_t nkeys;

/* A dn_expect for base64 key b64. */
static dn_expect expect(enum dkim_alg alg, const char *b64, const char *cname_target)
{
    dh_buf *pub = &keys[nkeys++ % KEEP];
    dh_buf_free(pub);
    if (b64 != NULL && dkim_b64_decode(b64, strlen(b64), pub) != DH_OK)
        check_fail(__FILE__, __LINE__, "bad test key %s", b64);
    dn_expect w = {.alg = alg, .pub = pub->data, .pub_len = pub->len, .cname_target = cname_target};
    return w;
}

/* dn_check domain/selector; status must be want and reason hold needle. */
static void expect_status(int line, const char *domain, const char *sel, const dn_expect *w,
                          enum dn_status want, const char *needle)
{
    dn_config c = {.server = server};
    dn_result r = {0};
    dh_err e = {0};
    int rc = dn_check(&c, domain, sel, w, &r, &e);
    if (rc != DH_OK) {
        check_fail(__FILE__, line, "%s/%s: dn_check %d: %s", domain, sel, rc, e.msg);
        return;
    }
    if (r.status != want)
        check_fail(__FILE__, line, "%s/%s: %s (%s), expected %s", domain, sel,
                   dn_status_name(r.status), r.reason, dn_status_name(want));
    if (needle != NULL && strstr(r.reason, needle) == NULL)
        check_fail(__FILE__, line, "%s/%s: reason \"%s\" lacks \"%s\"", domain, sel, r.reason,
                   needle);
    dn_result_clear(&r);
}
#define EXPECT(d, s, w, st, needle) expect_status(__LINE__, d, s, w, st, needle)

static void test_ok(void)
{
    if (!need_server())
        return;
    dn_expect ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, NULL);
    EXPECT("example.com", "ok-ed", &ed, DN_OK, "");
    EXPECT("EXAMPLE.com.", "OK-ED", &ed, DN_OK, "");    /* case and final dot don't matter */
    EXPECT("example.com", "withother", &ed, DN_OK, ""); /* a non-DKIM TXT next to it */
    EXPECT("example.com", "withspf", &ed, DN_OK, "");   /* v=spf1 is not v=DKIM1 */
    EXPECT("example.com", "testing", &ed, DN_OK, "t=y");
    EXPECT("example.com", "ok-ed", NULL, DN_OK, "");
    dn_expect any = expect(DKIM_ALG_ED25519_SHA256, NULL, NULL);
    EXPECT("example.com", "ok-ed", &any, DN_OK, "");
}

/* Four strings of one record are concatenated (RFC 6376 §3.6.2.2). */
static void test_multi_string(void)
{
    if (!need_server())
        return;
    dn_expect rsa = expect(DKIM_ALG_RSA_SHA256, RSA_P, NULL);
    dn_config c = {.server = server};
    dn_result r = {0};
    CHECK_OK(dn_check(&c, "example.com", "ok-rsa", &rsa, &r, NULL));
    CHECK_EQ_INT(r.status, DN_OK);
    CHECK_STR(r.record.data ? (char *)r.record.data : "", "v=DKIM1; k=rsa; p=" RSA_P);
    CHECK_STR(r.final_name, "ok-rsa._domainkey.example.com");
    dn_result_clear(&r);
    dn_result_clear(&r); /* twice is fine */
}

static void test_missing(void)
{
    if (!need_server())
        return;
    dn_expect ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, NULL);
    EXPECT("example.com", "absent", &ed, DN_MISSING, "NXDOMAIN");
    EXPECT("example.com", "nodata", &ed, DN_MISSING, "no TXT record at nodata._domainkey");
    EXPECT("example.com", "dangling", &ed, DN_MISSING, "nowhere.example.com");
}

static void test_mismatch(void)
{
    if (!need_server())
        return;
    dn_expect ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, NULL);
    EXPECT("example.com", "other", &ed, DN_MISMATCH, "another key");
    EXPECT("example.com", "wrongk", &ed, DN_MISMATCH, "k=rsa, expected k=ed25519");
    EXPECT("example.com", "badb64", &ed, DN_MISMATCH, "base64");
    EXPECT("example.com", "vnotfirst", &ed, DN_MISMATCH, "v= is not the first tag");
    EXPECT("example.com", "several", &ed, DN_MISMATCH, "several records");
    EXPECT("example.com", "notdkim", &ed, DN_MISMATCH, "key record");
    dn_expect rsa = expect(DKIM_ALG_RSA_SHA256, RSA_P, NULL);
    EXPECT("example.com", "ok-ed", &rsa, DN_MISMATCH, "k=ed25519, expected k=rsa");
}

static void test_revoked(void)
{
    if (!need_server())
        return;
    dn_expect ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, NULL);
    EXPECT("example.com", "revoked", &ed, DN_REVOKED, "revoked");
}

static void test_cname(void)
{
    if (!need_server())
        return;
    dn_expect ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, NULL);
    dn_config c = {.server = server};
    dn_result r = {0};
    CHECK_OK(dn_check(&c, "example.com", "chain", &ed, &r, NULL));
    CHECK_EQ_INT(r.status, DN_OK);
    CHECK_STR(r.final_name, "ok-ed._domainkey.example.com");
    dn_result_clear(&r);
    EXPECT("example.com", "eight", &ed, DN_OK, ""); /* exactly DN_MAX_CNAMES */
    EXPECT("example.com", "nine", &ed, DN_MISMATCH, "more than 8 CNAMEs");
    EXPECT("example.com", "loop", &ed, DN_MISMATCH, "CNAME loop");
}

static void test_provider(void)
{
    if (!need_server())
        return;
    dh_buf t = {0};
    CHECK_OK(dn_delegated_name("customer.example", "s1", "dkim.provider.example", &t));
    dn_expect ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, (char *)t.data);
    EXPECT("customer.example", "s1", &ed, DN_OK, "");
    dh_buf_reset(&t);
    CHECK_OK(dn_delegated_name("customer.example", "s2", "dkim.provider.example", &t));
    ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, (char *)t.data);
    EXPECT("customer.example", "s2", &ed, DN_MISMATCH,
           "CNAME points to s1-other-example._domainkey.dkim.provider.example, expected "
           "s2-customer-example._domainkey.dkim.provider.example");
    dh_buf_reset(&t);
    CHECK_OK(dn_delegated_name("customer.example", "s3", "dkim.provider.example", &t));
    ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, (char *)t.data);
    EXPECT("customer.example", "s3", &ed, DN_MISSING, "no CNAME at s3._domainkey.customer.example");
    dh_buf_reset(&t);
    CHECK_OK(dn_delegated_name("customer.example", "s4", "dkim.provider.example", &t));
    ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, (char *)t.data);
    EXPECT("customer.example", "s4", &ed, DN_MISMATCH, "has a TXT record, expected a CNAME");
    dh_buf_reset(&t);
    CHECK_OK(dn_delegated_name("customer.example", "s5", "dkim.provider.example", &t));
    ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, (char *)t.data);
    EXPECT("customer.example", "s5", &ed, DN_MISSING,
           "at s5-customer-example._domainkey.dkim.provider.example");
    /* Without provider mode any chain is accepted. */
    ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, NULL);
    EXPECT("customer.example", "s1", &ed, DN_OK, "");
    dh_buf_free(&t);
}

static void test_delegated_name(void)
{
    dh_buf t = {0};
    CHECK_OK(dn_delegated_name("Customer.COM.", "S1", "dkim.provider.example.", &t));
    CHECK_STR((char *)t.data, "s1-customer-com._domainkey.dkim.provider.example");
    dh_buf_reset(&t);
    CHECK_OK(dn_delegated_name("mail.sub.example.org", "sel-2024", "p.example", &t));
    CHECK_STR((char *)t.data, "sel-2024-mail-sub-example-org._domainkey.p.example");
    dh_buf_reset(&t);
    char longdom[80];
    memset(longdom, 'a', sizeof(longdom) - 1);
    longdom[sizeof(longdom) - 1] = '\0';
    longdom[40] = '.';
    CHECK_EQ_INT(dn_delegated_name(longdom, "s1", "p.example", &t), DH_EINVAL); /* label > 63 */
    CHECK_EQ_INT(dn_delegated_name("example.com", "a.b", "p.example", &t), DH_EINVAL);
    CHECK_EQ_INT(dn_delegated_name("", "s1", "p.example", &t), DH_EINVAL);
    CHECK_EQ_INT(t.len, 0);
    dh_buf_free(&t);
    CHECK_STR(dn_status_name(DN_OK), "ok");
    CHECK_STR(dn_status_name(DN_MISSING), "missing");
    CHECK_STR(dn_status_name(DN_MISMATCH), "mismatch");
    CHECK_STR(dn_status_name(DN_REVOKED), "revoked");
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Nothing listens / nothing answers / not authoritative: DH_EIO naming the server. */
static void test_server_errors(void)
{
    dn_expect ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, NULL);
    dn_result r = {.status = DN_OK};
    dh_err e = {0};
    /* A UDP socket that never answers: the timeout. */
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
          getsockname(s, (struct sockaddr *)&a, &alen) == 0);
    char silent[64];
    snprintf(silent, sizeof(silent), "127.0.0.1:%u", ntohs(a.sin_port));
    dn_config c = {.server = silent, .timeout_ms = 300};
    long long t0 = now_ms();
    CHECK_EQ_INT(dn_check(&c, "example.com", "ok-ed", &ed, &r, &e), DH_EIO);
    long long took = now_ms() - t0;
    if (took > 2000)
        check_fail(__FILE__, __LINE__, "timeout of 300 ms took %lld ms", took);
    if (strstr(e.msg, silent) == NULL)
        check_fail(__FILE__, __LINE__, "error \"%s\" does not name %s", e.msg, silent);
    CHECK_EQ_INT(r.record.len, 0);
    close(s); /* now the port is closed: refused */
    dh_err_clear(&e);
    CHECK_EQ_INT(dn_check(&c, "example.com", "ok-ed", &ed, &r, &e), DH_EIO);
    if (strstr(e.msg, silent) == NULL)
        check_fail(__FILE__, __LINE__, "error \"%s\" does not name %s", e.msg, silent);
    /* Bad server strings. */
    static const char *const bad[] = {"127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "[::1",
                                      ":53"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dn_config b = {.server = bad[i]};
        if (dn_check(&b, "example.com", "x", &ed, &r, NULL) != DH_EINVAL)
            check_fail(__FILE__, __LINE__, "server \"%s\" accepted", bad[i]);
    }
    if (!need_server())
        return;
    /* knotd is not authoritative for this zone: REFUSED. */
    dn_config k = {.server = server};
    dh_err_clear(&e);
    CHECK_EQ_INT(dn_check(&k, "not-served.test", "s1", &ed, &r, &e), DH_EIO);
    if (strstr(e.msg, "REFUSED") == NULL || strstr(e.msg, server) == NULL)
        check_fail(__FILE__, __LINE__, "error \"%s\" lacks REFUSED and the server", e.msg);
}

static int load_tsig(dn_tsig *t)
{
    const char *path = getenv("DKIMHSM_TEST_TSIG_FILE");
    dh_err e = {0};
    if (path == NULL || dn_tsig_load(path, t, &e) != DH_OK) {
        check_fail(__FILE__, __LINE__, "TSIG key %s: %s", path ? path : "(unset)", e.msg);
        return -1;
    }
    return 0;
}

static void update(const dn_tsig *t, const char *owner, const char *value)
{
    dn_config c = {.server = server};
    dh_err e = {0};
    int rc = dn_update_txt(&c, "example.com", t, owner, value, 60, &e);
    if (rc != DH_OK)
        check_fail(__FILE__, __LINE__, "update %s: %d %s", owner, rc, e.msg);
}

/* Add, replace, delete: each visible to dn_check at once. */
/* The zone of a name below the apex, of the apex, and of a name the server
 * does not serve. */
static void test_find_zone(void)
{
    if (!need_server())
        return;
    dn_config c = {.server = server};
    char zone[256];
    dh_err e = {0};
    CHECK_OK(dn_find_zone(&c, "s1._domainkey.mail.example.com.", zone, sizeof(zone), &e));
    CHECK_STR(zone, "example.com");
    CHECK_OK(dn_find_zone(&c, "EXAMPLE.com", zone, sizeof(zone), &e));
    CHECK_STR(zone, "example.com");
    CHECK_OK(dn_find_zone(&c, "new._domainkey.customer.example", zone, sizeof(zone), &e));
    CHECK_STR(zone, "customer.example");
    CHECK_EQ_INT(dn_find_zone(&c, "s1._domainkey.elsewhere.test", zone, sizeof(zone), &e), DH_EIO);
    CHECK(strstr(e.msg, "REFUSED") != NULL);
}

static void test_update(void)
{
    dn_tsig t;
    if (!need_server() || load_tsig(&t) != 0)
        return;
    dn_expect ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, NULL);
    EXPECT("example.com", "upd", &ed, DN_MISSING, "NXDOMAIN");
    update(&t, "upd._domainkey.example.com", "v=DKIM1; k=ed25519; p=" ED_P);
    EXPECT("example.com", "upd", &ed, DN_OK, "");
    update(&t, "upd._domainkey.example.com.", "v=DKIM1; k=ed25519; p=" OTHER_P);
    EXPECT("example.com", "upd", &ed, DN_MISMATCH, "another key"); /* replaced, not added */
    update(&t, "upd._domainkey.example.com", "v=DKIM1; k=ed25519; p=");
    EXPECT("example.com", "upd", &ed, DN_REVOKED, "");
    /* A value longer than 255 bytes goes out as several strings. */
    char big[700];
    snprintf(big, sizeof(big), "v=DKIM1; k=rsa; n=%0300d; p=" RSA_P, 0);
    update(&t, "upd._domainkey.example.com", big);
    dn_expect rsa = expect(DKIM_ALG_RSA_SHA256, RSA_P, NULL);
    dn_config c = {.server = server};
    dn_result r = {0};
    CHECK_OK(dn_check(&c, "example.com", "upd", &rsa, &r, NULL));
    CHECK_EQ_INT(r.status, DN_OK);
    CHECK_STR(r.record.data ? (char *)r.record.data : "", big);
    dn_result_clear(&r);
    update(&t, "upd._domainkey.example.com", NULL);
    EXPECT("example.com", "upd", &ed, DN_MISSING, "upd._domainkey.example.com");
    update(&t, "upd._domainkey.example.com", NULL); /* deleting nothing is fine */
    dn_tsig_clear(&t);
    CHECK_EQ_INT(t.secret[0], 0);
}

static void expect_refused(int line, const dn_tsig *t, const char *needle)
{
    dn_config c = {.server = server};
    dh_err e = {0};
    int rc = dn_update_txt(&c, "example.com", t, "bad._domainkey.example.com",
                           "v=DKIM1; k=ed25519; p=" ED_P, 60, &e);
    if (rc != DH_EIO || strstr(e.msg, needle) == NULL || strstr(e.msg, server) == NULL)
        check_fail(__FILE__, line, "update: %d \"%s\", expected DH_EIO naming %s and the server",
                   rc, e.msg, needle);
}

static void test_update_refused(void)
{
    dn_tsig t;
    if (!need_server() || load_tsig(&t) != 0)
        return;
    dn_tsig wrong = t;
    snprintf(wrong.secret, sizeof(wrong.secret), "%s", OTHER_P);
    expect_refused(__LINE__, &wrong, "NOTAUTH (TSIG error BADSIG)");
    dn_tsig unknown = t;
    snprintf(unknown.name, sizeof(unknown.name), "no-such-key");
    expect_refused(__LINE__, &unknown, "NOTAUTH (TSIG error BADKEY)");
    expect_refused(__LINE__, NULL, "NOTAUTH"); /* unsigned: the ACL wants the key */
    dn_expect ed = expect(DKIM_ALG_ED25519_SHA256, ED_P, NULL);
    EXPECT("example.com", "bad", &ed, DN_MISSING, "");
    /* Not in the zone, not a zone we serve, no server. */
    dn_config c = {.server = server};
    dh_err e = {0};
    CHECK_EQ_INT(dn_update_txt(&c, "example.com", &t, "s._domainkey.example.org", "x", 60, &e),
                 DH_EINVAL);
    CHECK(strstr(e.msg, "not inside zone example.com") != NULL);
    CHECK_EQ_INT(dn_update_txt(&c, "example.com", &t, "s._domainkey.badexample.com", "x", 60, &e),
                 DH_EINVAL);
    CHECK_EQ_INT(
        dn_update_txt(&c, "not-served.test", &t, "s._domainkey.not-served.test", "x", 60, &e),
        DH_EIO);
    CHECK(strstr(e.msg, "NOTAUTH") != NULL || strstr(e.msg, "REFUSED") != NULL);
    dn_tsig odd = t;
    snprintf(odd.alg, sizeof(odd.alg), "hmac-sha224");
    CHECK_EQ_INT(dn_update_txt(&c, "example.com", &odd, "s._domainkey.example.com", "x", 60, &e),
                 DH_EINVAL);
    dn_config none = {0};
    CHECK_EQ_INT(dn_update_txt(&none, "example.com", &t, "s._domainkey.example.com", "x", 60, &e),
                 DH_EINVAL);
    dn_tsig_clear(&t);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK((size_t)write(fd, text, strlen(text)) == strlen(text));
    CHECK(fchmod(fd, mode) == 0);
    close(fd);
}

static void tsig_bad(const char *text, mode_t mode, int want, const char *needle)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tsig", check_tmpdir());
    write_file(path, text, mode);
    dn_tsig t = {.name = "keep"};
    dh_err e = {0};
    int rc = dn_tsig_load(path, &t, &e);
    if (rc != want || strstr(e.msg, needle) == NULL)
        check_fail(__FILE__, __LINE__, "\"%.30s\": %d \"%s\", expected %d with \"%s\"", text, rc,
                   e.msg, want, needle);
    CHECK_STR(t.name, "keep"); /* untouched on failure */
}

static void test_tsig_file(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tsig", check_tmpdir());
    write_file(path, "# our update key\n\nupd-key hmac-sha512 " OTHER_P "  # comment\n", 0600);
    dn_tsig t = {0};
    CHECK_OK(dn_tsig_load(path, &t, NULL));
    CHECK_STR(t.name, "upd-key");
    CHECK_STR(t.alg, "hmac-sha512");
    CHECK_STR(t.secret, OTHER_P);
    dn_tsig_clear(&t);
    tsig_bad("k hmac-sha256 " OTHER_P "\n", 0644, DH_EPERM, "chmod 600");
    tsig_bad("k hmac-sha256 " OTHER_P "\n", 0620, DH_EPERM, "mode 0620");
    tsig_bad("k hmac-sha257 " OTHER_P "\n", 0600, DH_ECONFIG, "algorithm hmac-sha257 is not one");
    tsig_bad("k hmac-sha384 " OTHER_P "\n", 0600, DH_ECONFIG, "algorithm hmac-sha384 is not one");
    tsig_bad("k hmac-sha256 not!base64\n", 0600, DH_ECONFIG, "not base64");
    tsig_bad("k hmac-sha256\n", 0600, DH_ECONFIG, "NAME ALG SECRET");
    tsig_bad("# nothing\n", 0600, DH_ECONFIG, "no key line");
    tsig_bad("", 0600, DH_ECONFIG, "empty");
    dh_err e = {0};
    snprintf(path, sizeof(path), "%s/absent", check_tmpdir());
    CHECK_EQ_INT(dn_tsig_load(path, &t, &e), DH_ENOTFOUND);
    CHECK(strstr(e.msg, "TSIG key file") != NULL);
}

int main(int argc, char **argv)
{
    server = getenv("DKIMHSM_TEST_DNS_SERVER");
    static const struct check_case cases[] = {{"ok", test_ok},
                                              {"multi_string", test_multi_string},
                                              {"missing", test_missing},
                                              {"mismatch", test_mismatch},
                                              {"revoked", test_revoked},
                                              {"cname", test_cname},
                                              {"provider", test_provider},
                                              {"delegated_name", test_delegated_name},
                                              {"server_errors", test_server_errors},
                                              {"find_zone", test_find_zone},
                                              {"update", test_update},
                                              {"update_refused", test_update_refused},
                                              {"tsig_file", test_tsig_file},
                                              {NULL, NULL}};
    int rc = check_run(argc, argv, cases);
    for (size_t i = 0; i < KEEP; i++)
        dh_buf_free(&keys[i]);
    if (skipped > 0)
        fprintf(stderr, "%d cases skipped: no DKIMHSM_TEST_DNS_SERVER (run via with-dns.sh)\n",
                skipped);
    return rc == 0 && skipped > 0 && server == NULL ? CHECK_SKIP : rc;
}
