/*
 * fuzz_msg.c - fuzz target for the message reader and the canonicalizers
 * (dkim/msg.h, dkim/canon.h), and the signing steps that consume their output.
 *
 * Input: one control byte (chunk size, l= limit), then raw message bytes.
 * Invariants checked (abort on violation): the reader and the body hash give
 * the same result however the input is split; whatever is accepted can be
 * signed without error or leak.
 */
#include <stdlib.h>
#include <string.h>

#include "dkim/canon.h"
#include "dkim/msg.h"
#include "dkim/sig.h"
#include "tests/fuzz/fuzz.h"

const char *const fuzz_seeds[] = {
    "\x05"
    "From: Joe SixPack <joe@football.example.com>\r\nTo: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n\r\nHi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\n",
    "\x01"
    "From: a@b.c\nSubject: folded\n\tline\n  two\n\nbody \t \nline\n\n\n",
    "\x10"
    "Received: x\r\nFrom: \"Doe, J\" <j@ex.com> (c)\r\nFrom : dup\r\n\r\n\0\xff\r\n",
    "\x00"
    "From joe@x Mon Jan 1\nFrom: x@y\n\n",
    "\x03"
    "From: a@b.c\r\nX: y\rz\r\n\r\n",
    "\x07"
    "Subject: no blank line",
    "\x02"
    " continuation first\r\nFrom: a@b.c\r\n\r\n",
    NULL,
};

struct run {
    dkim_msg *m;
    dkim_body *b[3];
    uint8_t h[3][32];
    int rc;
};

static void run_reader(struct run *r, const uint8_t *p, size_t n, size_t chunk, long long limit)
{
    memset(r, 0, sizeof(*r));
    r->m = dkim_msg_new(4096);
    r->b[0] = dkim_body_new(DKIM_CANON_SIMPLE, -1);
    r->b[1] = dkim_body_new(DKIM_CANON_RELAXED, -1);
    r->b[2] = dkim_body_new(DKIM_CANON_RELAXED, limit);
    REQUIRE(r->m && r->b[0] && r->b[1] && r->b[2]);
    for (int i = 0; i < 3; i++)
        REQUIRE(dkim_msg_attach_body(r->m, r->b[i]) == DH_OK);
    dh_err e;
    for (size_t i = 0; i < n && r->rc == DH_OK; i += chunk)
        r->rc = dkim_msg_feed(r->m, p + i, n - i < chunk ? n - i : chunk, &e);
    if (r->rc == DH_OK)
        r->rc = dkim_msg_end(r->m, &e);
    for (int i = 0; i < 3 && r->rc == DH_OK; i++)
        REQUIRE(dkim_body_final(r->b[i], r->h[i], NULL) == DH_OK);
}

static void run_free(struct run *r)
{
    dkim_msg_free(r->m);
    for (int i = 0; i < 3; i++)
        dkim_body_free(r->b[i]);
}

static void same_fields(const dkim_hdrs *a, const dkim_hdrs *b)
{
    REQUIRE(dkim_hdrs_count(a) == dkim_hdrs_count(b));
    for (size_t i = 0; i < dkim_hdrs_count(a); i++) {
        size_t la, lb, na, nb;
        const uint8_t *fa = dkim_hdrs_field(a, i, &la, &na);
        const uint8_t *fb = dkim_hdrs_field(b, i, &lb, &nb);
        REQUIRE(la == lb && na == nb && memcmp(fa, fb, la) == 0);
    }
}

/* Signs what was read, as the product would, with a dummy signature. */
static void sign_it(const dkim_hdrs *h, const uint8_t bh[32])
{
    dh_buf hl = {0}, dom = {0}, field = {0}, done = {0}, in = {0};
    dh_err e;
    for (size_t i = 0; i < dkim_hdrs_count(h); i++) {
        size_t len;
        const uint8_t *f = dkim_hdrs_field(h, i, &len, NULL);
        REQUIRE(dkim_canon_header(DKIM_CANON_RELAXED, f, len, &in) == DH_OK);
        REQUIRE(dkim_canon_header(DKIM_CANON_SIMPLE, f, len, &in) == DH_OK);
    }
    if (dkim_hdrs_check_signable(h, &e) == DH_OK && dkim_hdrs_from_domain(h, &dom, &e) == DH_OK) {
        REQUIRE(dkim_sig_select_headers(h, DKIM_DEFAULT_SIGN_HEADERS, DKIM_DEFAULT_OVERSIGN_HEADERS,
                                        &hl, &e) == DH_OK);
        dkim_sig_params p = {DKIM_ALG_ED25519_SHA256,
                             DKIM_CANON_RELAXED,
                             DKIM_CANON_RELAXED,
                             (const char *)dom.data,
                             "sel",
                             NULL,
                             1,
                             -1,
                             -1,
                             (const char *)hl.data};
        uint8_t d[32], sig[64] = {0};
        REQUIRE(dkim_sig_build(&p, bh, &field, &e) == DH_OK);
        int rc = dkim_sig_digest(h, field.data, field.len, d, &e);
        REQUIRE(rc == DH_OK || rc == DH_EUNSIGNABLE); /* "Name :" fields */
        REQUIRE(dkim_sig_finish(field.data, field.len, sig, sizeof(sig), &done, &e) == DH_OK);
    }
    dh_buf_free(&hl);
    dh_buf_free(&dom);
    dh_buf_free(&field);
    dh_buf_free(&done);
    dh_buf_free(&in);
}

/* The canonicalizers on raw bytes (bare CR and LF included): any split
 * gives the same hash. */
static void canon_split(const uint8_t *p, size_t n, size_t chunk)
{
    for (int c = 0; c < 2; c++) {
        uint8_t h1[32], h2[32];
        dkim_body *a = dkim_body_new((enum dkim_canon)c, -1);
        dkim_body *b = dkim_body_new((enum dkim_canon)c, -1);
        REQUIRE(a && b && dkim_body_update(a, p, n) == DH_OK);
        for (size_t i = 0; i < n; i += chunk)
            REQUIRE(dkim_body_update(b, p + i, n - i < chunk ? n - i : chunk) == DH_OK);
        REQUIRE(dkim_body_final(a, h1, NULL) == DH_OK && dkim_body_final(b, h2, NULL) == DH_OK);
        REQUIRE(memcmp(h1, h2, 32) == 0);
        dkim_body_free(a);
        dkim_body_free(b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = 1 + data[0] % 17;
    long long limit = data[0] * 3;
    data++;
    size--;
    struct run one, split;
    run_reader(&one, data, size, size ? size : 1, limit);
    run_reader(&split, data, size, chunk, limit);
    REQUIRE(one.rc == split.rc);
    if (one.rc == DH_OK) {
        same_fields(dkim_msg_hdrs(one.m), dkim_msg_hdrs(split.m));
        REQUIRE(memcmp(one.h, split.h, sizeof(one.h)) == 0);
        sign_it(dkim_msg_hdrs(one.m), one.h[1]);
    }
    run_free(&one);
    run_free(&split);
    canon_split(data, size, chunk);
    return 0;
}
