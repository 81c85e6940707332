/*
 * fuzz_api.c - fuzz target for the management API's request handling
 * (daemon/api.h): routes, query strings, the strict JSON body parser and the
 * lifecycle calls behind them, on a real token and state database
 * (tests/lib/with-token.sh). DNS is not asked (lf_ctx.check is NULL, so an
 * unforced activation is refused).
 *
 * Input: one byte, then "PATH\nQUERY\nBODY" (QUERY empty for none). The
 * byte's low 3 bits choose the method (GET, PUT, POST, DELETE, other; seeds
 * use '`' 'a' 'b' 'c' 'd'); 0x08 sends no Authorization header, 0x10 a wrong
 * token.
 *
 * Invariants (abort on violation): every reply has a known HTTP status and
 * a JSON object body; without the right token nothing but 401/403 comes
 * back; 405 names the allowed methods.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/api.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/token_env.h"

const char *const fuzz_seeds[] = {
    "a/api/v1/domains/example.com/keys\n\n{\"alg\":\"ed25519\"}",
    "`/api/v1/domains/example.com/keys\n\n",
    "`/api/v1/domains\n\n",
    "`/api/v1/domains/example.com/keys/selector1-ed25519\n\n",
    "b/api/v1/domains/example.com/keys/selector1-ed25519/activate\n\n{\"force\":true}",
    "b/api/v1/domains/example.com/keys/selector2-ed25519/activate\n\n",
    "b/api/v1/domains/example.com/rotate\n\n{\"alg\":\"ed25519\"}",
    "b/api/v1/domains/example.com/keys/selector1-ed25519/revoke\n\n{\"destroy\":false}",
    "c/api/v1/domains/example.com/keys\ndestroy=1\n",
    "a/api/v1/domains/other.example/keys\n\n{\"alg\":\"ed25519\",\"bits\":2048}",
    "d/api/v1/domains\n\n",
    "`/api/v2/nothing\n\n",
    NULL,
};

static const char token[] = "fuzz-token-0123456789abcdef";
static hsm *tok;
static ks *store;
static lf_ctx life;
static api *the_api;

static void setup(void)
{
    char path[512];
    dh_err e = {0};
    const char *dir = fuzz_token_env("fuzz_api", &tok, &store);
    life = (lf_ctx){.store = store,
                    .token = tok,
                    .retire_after = 7 * 86400,
                    .naming = "alternate",
                    .rsa_bits = 1024}; /* RSA keys made by mutated PUTs stay quick */
    snprintf(path, sizeof(path), "%s/api.token", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0 && write(fd, token, sizeof(token) - 1) == (ssize_t)(sizeof(token) - 1));
    close(fd);
    api_config cfg = {.token_file = path, .life = &life};
    REQUIRE(api_new(&cfg, &the_api, &e) == DH_OK);
}

/* Splits "PATH\nQUERY\nBODY" into NUL-terminated copies (body may hold NUL). */
static void split(const uint8_t *p, size_t n, char **path, char **query, const uint8_t **body,
                  size_t *blen)
{
    const uint8_t *nl1 = memchr(p, '\n', n);
    size_t plen = nl1 ? (size_t)(nl1 - p) : n;
    const uint8_t *rest = nl1 ? nl1 + 1 : p + n;
    size_t rlen = n - (size_t)(rest - p);
    const uint8_t *nl2 = memchr(rest, '\n', rlen);
    size_t qlen = nl2 ? (size_t)(nl2 - rest) : rlen;
    *path = strndup((const char *)p, plen);
    *query = strndup((const char *)rest, qlen);
    REQUIRE(*path != NULL && *query != NULL);
    *body = nl2 ? nl2 + 1 : rest + rlen;
    *blen = n - (size_t)(*body - p);
}

static void check_reply(const api_reply *out, int authorized)
{
    if (getenv("FUZZ_API_DEBUG"))
        fprintf(stderr, "status %d body %.*s\n", out->status, (int)out->body.len,
                (const char *)out->body.data);
    static const int known[] = {200, 201, 400, 401, 403, 404, 405, 409, 413, 500, 503};
    int ok = 0;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ok |= out->status == known[i];
    REQUIRE(ok);
    size_t n = out->body.len;
    while (n > 0 && out->body.data[n - 1] == '\n')
        n--;
    REQUIRE(n > 1 && out->body.data[0] == '{' && out->body.data[n - 1] == '}');
    REQUIRE(authorized || out->status == 401 || out->status == 403 || out->status == 404 ||
            out->status == 405);
    REQUIRE(out->status != 405 || out->allow != NULL);
    REQUIRE(memmem(out->body.data, out->body.len, token, sizeof(token) - 1) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (the_api == NULL)
        setup();
    if (size == 0)
        return 0;
    static const enum api_method m[] = {API_GET, API_PUT, API_POST, API_DELETE, API_OTHER};
    int no_header = data[0] & 0x08, authorized = !no_header && !(data[0] & 0x10);
    char *path, *query;
    const uint8_t *body;
    size_t blen;
    split(data + 1, size - 1, &path, &query, &body, &blen);
    char auth[64];
    snprintf(auth, sizeof(auth), "Bearer %s%s", token, (data[0] & 0x10) ? "x" : "");
    api_request r = {.method = m[(data[0] & 0x07) % 5],
                     .path = path,
                     .query = query[0] ? query : NULL,
                     .authorization = no_header ? NULL : auth,
                     .body = body,
                     .body_len = blen,
                     .peer = "127.0.0.1"};
    api_reply out = {0};
    api_handle(the_api, &r, &out);
    check_reply(&out, authorized);
    dh_buf_free(&out.body);
    free(path);
    free(query);
    return 0;
}
