/*
 * test_msg.c - header fields and the streaming message reader (dkim/msg.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/msg.h"
#include "tests/lib/check.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

struct parsed {
    dkim_msg *m;
    dkim_body *body;
    uint8_t bh[32];
    int rc;
    dh_err err;
};

/* Reads p[0..n) in pieces of chunk bytes (0: one call) with a simple body hash. */
static void parse(struct parsed *r, const uint8_t *p, size_t n, size_t chunk)
{
    memset(r, 0, sizeof(*r));
    r->m = dkim_msg_new(0);
    r->body = dkim_body_new(DKIM_CANON_SIMPLE, -1);
    CHECK(r->m != NULL && r->body != NULL);
    CHECK_OK(dkim_msg_attach_body(r->m, r->body));
    size_t i = 0;
    while (i < n && r->rc == DH_OK) {
        size_t k = chunk == 0 || chunk > n - i ? n - i : chunk;
        r->rc = dkim_msg_feed(r->m, p + i, k, &r->err);
        i += k;
    }
    if (r->rc == DH_OK)
        r->rc = dkim_msg_end(r->m, &r->err);
    if (r->rc == DH_OK)
        CHECK_OK(dkim_body_final(r->body, r->bh, NULL));
}

static void parsed_free(struct parsed *r)
{
    dkim_msg_free(r->m);
    dkim_body_free(r->body);
}

static void check_field(const dkim_hdrs *h, size_t i, const char *want, size_t want_namelen)
{
    size_t len = 0, nl = 0;
    const uint8_t *f = dkim_hdrs_field(h, i, &len, &nl);
    CHECK(f != NULL);
    if (f == NULL)
        return;
    CHECK_MEM(f, len, want, strlen(want));
    CHECK_EQ_INT(nl, want_namelen);
}

static void check_err_has(const dh_err *e, const char *needle)
{
    if (strstr(e->msg, needle) == NULL)
        check_fail(__FILE__, __LINE__, "error \"%s\" does not mention \"%s\"", e->msg, needle);
}

static const char crlf_msg[] = "From: Joe <joe@example.com>\r\n"
                               "Subject: hi\r\n"
                               "\tthere\r\n"
                               "\r\n"
                               "body line\r\n"
                               "\r\n";
static const char lf_msg[] = "From: Joe <joe@example.com>\n"
                             "Subject: hi\n"
                             "\tthere\n"
                             "\n"
                             "body line\n"
                             "\n";

static void test_crlf_and_lf_input(void)
{
    struct parsed a, b;
    parse(&a, S(crlf_msg), 0);
    parse(&b, S(lf_msg), 0);
    CHECK_OK(a.rc);
    CHECK_OK(b.rc);
    const dkim_hdrs *ha = dkim_msg_hdrs(a.m), *hb = dkim_msg_hdrs(b.m);
    CHECK_EQ_INT(dkim_hdrs_count(ha), 2);
    CHECK_EQ_INT(dkim_hdrs_count(hb), 2);
    check_field(hb, 0, "From: Joe <joe@example.com>", 4);
    check_field(hb, 1, "Subject: hi\r\n\tthere", 7);
    CHECK_MEM(a.bh, 32, b.bh, 32); /* bare LF hashed as CRLF */
    CHECK_EQ_INT(dkim_msg_uses_lf(a.m), 0);
    CHECK_EQ_INT(dkim_msg_uses_lf(b.m), 1);
    parsed_free(&a);
    parsed_free(&b);
}

static void test_chunking(void)
{
    struct parsed one, bytes, sevens;
    parse(&one, S(lf_msg), 0);
    parse(&bytes, S(lf_msg), 1);
    parse(&sevens, S(crlf_msg), 7);
    CHECK_OK(bytes.rc);
    CHECK_MEM(bytes.bh, 32, one.bh, 32);
    CHECK_MEM(sevens.bh, 32, one.bh, 32);
    check_field(dkim_msg_hdrs(bytes.m), 1, "Subject: hi\r\n\tthere", 7);
    check_field(dkim_msg_hdrs(sevens.m), 1, "Subject: hi\r\n\tthere", 7);
    parsed_free(&one);
    parsed_free(&bytes);
    parsed_free(&sevens);
}

static void test_bare_cr(void)
{
    struct parsed r;
    parse(&r, S("From: a@b.c\r\nSubject: x\ry\r\n\r\nbody\r\n"), 0);
    CHECK_EQ_INT(r.rc, DH_EUNSIGNABLE);
    check_err_has(&r.err, "line 2");
    check_err_has(&r.err, "bare CR");
    /* The error is sticky. */
    dh_err e2 = {0};
    CHECK_EQ_INT(dkim_msg_feed(r.m, S("more"), &e2), DH_EUNSIGNABLE);
    check_err_has(&e2, "line 2");
    parsed_free(&r);
    parse(&r, S("From: a@b.c\r\n\r\nl2\r\nl3\r\nl4 \r \r\n"), 1);
    CHECK_EQ_INT(r.rc, DH_EUNSIGNABLE);
    check_err_has(&r.err, "line 5");
    parsed_free(&r);
    parse(&r, S("From: a@b.c\r\n\r\nbody ends in CR\r"), 0);
    CHECK_EQ_INT(r.rc, DH_EUNSIGNABLE);
    check_err_has(&r.err, "line 3");
    parsed_free(&r);
}

static void test_not_a_header(void)
{
    struct parsed r;
    parse(&r, S("From: a@b.c\r\nSubject: x\r\nthis is not a header\r\n\r\nbody\r\n"), 0);
    CHECK_EQ_INT(r.rc, DH_EUNSIGNABLE);
    check_err_has(&r.err, "line 3");
    parsed_free(&r);
    parse(&r, S("From: a@b.c\n: no name\n\n"), 0);
    CHECK_EQ_INT(r.rc, DH_EUNSIGNABLE);
    check_err_has(&r.err, "line 2");
    parsed_free(&r);
    parse(&r, S("From: a@b.c\nBad\x01Name: x\n\n"), 0);
    CHECK_EQ_INT(r.rc, DH_EUNSIGNABLE);
    check_err_has(&r.err, "line 2");
    parsed_free(&r);
    parse(&r, S(" leading continuation\r\nFrom: a@b.c\r\n\r\n"), 0);
    CHECK_EQ_INT(r.rc, DH_EUNSIGNABLE);
    check_err_has(&r.err, "line 1");
    parsed_free(&r);
}

static void test_mbox_from_line(void)
{
    struct parsed r;
    parse(&r, S("From joe@example.com Mon Jan  1 00:00:00 2024\nFrom: joe@example.com\n\nx\n"), 0);
    CHECK_EQ_INT(r.rc, DH_EUNSIGNABLE);
    check_err_has(&r.err, "line 1");
    check_err_has(&r.err, "mbox");
    parsed_free(&r);
}

static void test_folded_headers(void)
{
    struct parsed r;
    parse(&r,
          S("Subject: one\r\n two\r\n\tthree\r\nTo: a@b.c,\n  d@e.f\nFrom: x@y.z\n"
            "Name : spaced\r\n\r\n"),
          0);
    CHECK_OK(r.rc);
    const dkim_hdrs *h = dkim_msg_hdrs(r.m);
    CHECK_EQ_INT(dkim_hdrs_count(h), 4);
    check_field(h, 0, "Subject: one\r\n two\r\n\tthree", 7);
    check_field(h, 1, "To: a@b.c,\r\n  d@e.f", 2);
    check_field(h, 3, "Name : spaced", 4);
    CHECK_EQ_INT(dkim_hdrs_space_before_colon(h, 3), 1);
    CHECK_EQ_INT(dkim_hdrs_space_before_colon(h, 0), 0);
    parsed_free(&r);
}

static void test_no_blank_line(void)
{
    static const uint8_t empty_simple[32] = {0x7e, 0xb7, 0x02, 0x57, 0x59, 0x3d, 0xa0, 0x6f,
                                             0x68, 0x2a, 0x3d, 0xdd, 0xa5, 0x4a, 0x9d, 0x26,
                                             0x0d, 0x4f, 0xc5, 0x14, 0xf6, 0x45, 0x23, 0x7f,
                                             0x5c, 0xa7, 0x4b, 0x08, 0xf8, 0xda, 0x61, 0xa6};
    struct parsed r;
    parse(&r, S("From: a@b.c\r\nSubject: last line, no newline"), 0);
    CHECK_OK(r.rc);
    CHECK_EQ_INT(dkim_hdrs_count(dkim_msg_hdrs(r.m)), 2);
    check_field(dkim_msg_hdrs(r.m), 1, "Subject: last line, no newline", 7);
    CHECK_MEM(r.bh, 32, empty_simple, 32);
    parsed_free(&r);
    parse(&r, S("From: a@b.c\r\n"), 3);
    CHECK_OK(r.rc);
    CHECK_EQ_INT(dkim_hdrs_count(dkim_msg_hdrs(r.m)), 1);
    parsed_free(&r);
}

static void test_header_bound(void)
{
    dkim_msg *m = dkim_msg_new(64);
    dh_err e = {0};
    char big[200];
    memset(big, 'x', sizeof(big));
    memcpy(big, "X-Big: ", 7);
    CHECK_OK(dkim_msg_feed(m, S("From: a@b.c\r\n"), &e));
    CHECK_EQ_INT(dkim_msg_feed(m, (const uint8_t *)big, sizeof(big), &e), DH_EUNSIGNABLE);
    check_err_has(&e, "line 2");
    check_err_has(&e, "64 bytes");
    dkim_msg_free(m);
    /* The bound is on the header block only: a large body is fine. */
    m = dkim_msg_new(64);
    CHECK_OK(dkim_msg_feed(m, S("From: a@b.c\r\n\r\n"), &e));
    for (int i = 0; i < 10; i++)
        CHECK_OK(dkim_msg_feed(m, (const uint8_t *)big, sizeof(big), &e));
    CHECK_OK(dkim_msg_end(m, &e));
    CHECK_EQ_INT(dkim_msg_end(m, &e), DH_ESTATE);
    dkim_msg_free(m);
}

static void test_attach_limits(void)
{
    dkim_msg *m = dkim_msg_new(0);
    dkim_body *b[DKIM_MSG_MAX_BODIES + 1];
    for (int i = 0; i <= DKIM_MSG_MAX_BODIES; i++)
        b[i] = dkim_body_new(DKIM_CANON_RELAXED, -1);
    for (int i = 0; i < DKIM_MSG_MAX_BODIES; i++)
        CHECK_OK(dkim_msg_attach_body(m, b[i]));
    CHECK_EQ_INT(dkim_msg_attach_body(m, b[DKIM_MSG_MAX_BODIES]), DH_ESTATE);
    dkim_msg_free(m);
    m = dkim_msg_new(0);
    CHECK_OK(dkim_msg_feed(m, S("From: a@b.c\r\n"), NULL));
    CHECK_EQ_INT(dkim_msg_attach_body(m, b[0]), DH_ESTATE);
    dkim_msg_free(m);
    for (int i = 0; i <= DKIM_MSG_MAX_BODIES; i++)
        dkim_body_free(b[i]);
}

static void test_hdrs_add(void)
{
    dkim_hdrs *h = dkim_hdrs_new();
    dh_err e = {0};
    /* As a milter gets it: leading space kept, folding with bare LF. */
    CHECK_OK(dkim_hdrs_add(h, "Subject", S(" hello\n\tworld"), &e));
    CHECK_OK(dkim_hdrs_add(h, "X-Empty", S(""), &e));
    CHECK_OK(dkim_hdrs_add_raw(h, S("from: x@y.z"), &e));
    CHECK_OK(dkim_hdrs_add_raw(h, S("FROM:x@y.z"), &e));
    check_field(h, 0, "Subject: hello\r\n\tworld", 7);
    check_field(h, 1, "X-Empty:", 7);
    CHECK_EQ_INT(dkim_hdrs_count_name(h, "From"), 2);
    CHECK_EQ_INT(dkim_hdrs_count_name(h, "subject"), 1);
    CHECK_EQ_INT(dkim_hdrs_count_name(h, "to"), 0);
    CHECK_EQ_INT(dkim_hdrs_add(h, "Bad Name", S(" x"), &e), DH_EINVAL);
    CHECK_EQ_INT(dkim_hdrs_add(h, "", S(" x"), &e), DH_EINVAL);
    CHECK_EQ_INT(dkim_hdrs_add_raw(h, S("NoColon"), &e), DH_EINVAL);
    CHECK_EQ_INT(dkim_hdrs_add_raw(h, S("X: a\r\nnot folded"), &e), DH_EINVAL);
    CHECK_EQ_INT(dkim_hdrs_add_raw(h, S("X: ends\r\n"), &e), DH_EINVAL);
    CHECK_EQ_INT(dkim_hdrs_add(h, "X", S(" bare\rcr"), &e), DH_EUNSIGNABLE);
    CHECK_EQ_INT(dkim_hdrs_count(h), 4);
    CHECK(dkim_hdrs_field(h, 4, NULL, NULL) == NULL);
    dkim_hdrs_free(h);
    dkim_hdrs_free(NULL);
}

static void test_check_signable(void)
{
    dh_err e = {0};
    dkim_hdrs *h = dkim_hdrs_new();
    CHECK_OK(dkim_hdrs_add_raw(h, S("Subject: x"), &e));
    CHECK_EQ_INT(dkim_hdrs_check_signable(h, &e), DH_EUNSIGNABLE);
    check_err_has(&e, "no From");
    CHECK_OK(dkim_hdrs_add_raw(h, S("From: a@b.c"), &e));
    CHECK_OK(dkim_hdrs_check_signable(h, &e));
    CHECK_OK(dkim_hdrs_add_raw(h, S("from: d@e.f"), &e));
    CHECK_EQ_INT(dkim_hdrs_check_signable(h, &e), DH_EUNSIGNABLE);
    check_err_has(&e, "2 From");
    dkim_hdrs_free(h);
    h = dkim_hdrs_new();
    CHECK_OK(dkim_hdrs_add_raw(h, S("From : a@b.c"), &e));
    CHECK_EQ_INT(dkim_hdrs_check_signable(h, &e), DH_EUNSIGNABLE);
    check_err_has(&e, "From :");
    dkim_hdrs_free(h);
}

static int from_domain(const char *value, dh_buf *out)
{
    dkim_hdrs *h = dkim_hdrs_new();
    dh_err e = {0};
    int rc = dkim_hdrs_add(h, "From", (const uint8_t *)value, strlen(value), &e);
    if (rc == DH_OK)
        rc = dkim_hdrs_from_domain(h, out, &e);
    dkim_hdrs_free(h);
    return rc;
}

static void test_from_domain(void)
{
    static const struct {
        const char *value, *domain; /* NULL domain: must be refused */
    } cases[] = {
        {" Joe SixPack <joe@football.example.com>", "football.example.com"},
        {" joe@Example.COM", "example.com"},
        {" \"Doe, John\" <john@x.org>", "x.org"},
        {" \"a <b@evil.com>\" <real@good.com>", "good.com"},
        {" (comment <x@evil.com>) real@good.com (another, one)", "good.com"},
        {" John (the <man@evil.com>) <john@Ex-Ample.com>", "ex-ample.com"},
        {" joe@football.example.com <joe@other.example>", "other.example"},
        {" \"quoted\\\"local\"@quoted.example", "quoted.example"},
        {" =?utf-8?q?J=C3=B6rg?= <j@ex.de>", "ex.de"},
        {" J\xc3\xb6rg <j@ex.de>", "ex.de"},
        {" j@ex.de\n (folded\n comment)", "ex.de"},
        {" <j @ sub . ex . de>", "sub.ex.de"},
        {" a@b.com, c@d.com", NULL},
        {" A <a@b.com>, C <c@d.com>", NULL},
        {" Doe, John <john@x.org>", NULL},
        {" Undisclosed recipients:;", NULL},
        {" <joe@[192.0.2.1]>", NULL},
        {" no address here", NULL},
        {" \"unterminated <x@y.com>", NULL},
        {" joe@example.com (unterminated", NULL},
        {" joe@", NULL},
        {" joe@-bad.example", NULL},
        {" joe@bad..example", NULL},
        {" <joe@example.com", NULL},
        {" joe@ex\xc3\xa4mple.de", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dh_buf out = {0};
        int rc = from_domain(cases[i].value, &out);
        if (cases[i].domain == NULL && rc != DH_EUNSIGNABLE)
            check_fail(__FILE__, __LINE__, "From:%s gave %d \"%s\", expected refusal",
                       cases[i].value, rc, out.data ? (char *)out.data : "");
        if (cases[i].domain != NULL && (rc != DH_OK || out.len != strlen(cases[i].domain) ||
                                        memcmp(out.data, cases[i].domain, out.len) != 0))
            check_fail(__FILE__, __LINE__, "From:%s gave %d \"%s\", expected %s", cases[i].value,
                       rc, out.data ? (char *)out.data : "", cases[i].domain);
        dh_buf_free(&out);
    }
}

static void test_nul_and_8bit_body(void)
{
    struct parsed a, b;
    static const char m1[] = "From: a@b.c\n\nx\0y\xff\nz\n";
    static const char m2[] = "From: a@b.c\r\n\r\nx\0y\xff\r\nz\r\n";
    parse(&a, S(m1), 1);
    parse(&b, S(m2), 0);
    CHECK_OK(a.rc);
    CHECK_MEM(a.bh, 32, b.bh, 32);
    parsed_free(&a);
    parse(&a, S("From: a@b.c\r\n\r\nx\r\n"), 0);
    CHECK(memcmp(a.bh, b.bh, 32) != 0); /* the NUL is not a terminator */
    parsed_free(&a);
    parsed_free(&b);
}

static void test_rfc8463_message(void)
{
    size_t n = 0;
    uint8_t *p = check_slurp(TESTDATA "/rfc8463/message.eml", &n);
    CHECK(p != NULL);
    if (p == NULL)
        return;
    struct parsed r;
    parse(&r, p, n, 5);
    CHECK_OK(r.rc);
    const dkim_hdrs *h = dkim_msg_hdrs(r.m);
    CHECK_EQ_INT(dkim_hdrs_count(h), 7);
    CHECK_EQ_INT(dkim_hdrs_count_name(h, "dkim-signature"), 2);
    CHECK_OK(dkim_hdrs_check_signable(h, NULL));
    dh_buf d = {0};
    CHECK_OK(dkim_hdrs_from_domain(h, &d, NULL));
    CHECK_STR((char *)d.data, "football.example.com");
    dh_buf_free(&d);
    parsed_free(&r);
    free(p);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"crlf_and_lf_input", test_crlf_and_lf_input},
        {"chunking", test_chunking},
        {"bare_cr", test_bare_cr},
        {"not_a_header", test_not_a_header},
        {"mbox_from_line", test_mbox_from_line},
        {"folded_headers", test_folded_headers},
        {"no_blank_line", test_no_blank_line},
        {"header_bound", test_header_bound},
        {"attach_limits", test_attach_limits},
        {"hdrs_add", test_hdrs_add},
        {"check_signable", test_check_signable},
        {"from_domain", test_from_domain},
        {"nul_and_8bit_body", test_nul_and_8bit_body},
        {"rfc8463_message", test_rfc8463_message},
        {NULL, NULL},
    };
    return check_run(argc, argv, cases);
}
