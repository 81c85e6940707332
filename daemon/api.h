/*
 * api.h - the management API of the key lifecycle (docs/API.md): JSON over
 * the daemon's HTTP listener under /api/v1, authenticated with a bearer
 * token read from api_token_file.
 *
 * Every change goes through lifecycle/ (lifecycle.h), the same functions
 * dkim-keyctl calls, so both front ends have the same rules and the same
 * error messages; a dh_err status becomes an HTTP status (api_http_status).
 *
 * api_handle() takes a request as plain values and gives the reply as
 * bytes: no socket, no evhttp (httpd.c does that), so a test or a fuzzer can
 * drive it directly. In the daemon it runs on the API's worker thread
 * (apiworker.h), never on the event loop; one api is used by one thread at
 * a time.
 */
#ifndef DAEMON_API_H
#define DAEMON_API_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "lifecycle/lifecycle.h"

/* Request bodies larger than this are refused (413) before they are read. */
#define API_MAX_BODY 4096

typedef struct api api;

typedef struct api_config {
    const char *token_file; /* api_token_file: the bearer token, mode 0600 or stricter */
    /* The lifecycle context. Borrowed: it must outlive the api; its owner
     * may rebuild it in place between requests (apiworker.c does, before
     * each one). */
    lf_ctx *life;
    /* Called on the thread running api_handle after every successful
     * change, so the keys in use can follow at once. May be NULL. */
    void (*changed)(void *arg);
    void *arg;
} api_config;

enum api_method { API_GET, API_PUT, API_POST, API_DELETE, API_OTHER };

typedef struct api_request {
    enum api_method method;
    const char *path;          /* "/api/v1/...", without the query */
    const char *query;         /* after '?', or NULL */
    const char *authorization; /* the Authorization header's value, or NULL */
    const uint8_t *body;       /* may be NULL when body_len is 0 */
    size_t body_len;
    const char *peer; /* for the log ("127.0.0.1"); may be NULL */
} api_request;

typedef struct api_reply {
    int status;        /* HTTP status */
    dh_buf body;       /* JSON text; the caller frees it with dh_buf_free() */
    const char *allow; /* 405: the Allow header's value (static); else NULL */
    int challenge;     /* 401: send "WWW-Authenticate: Bearer" */
} api_reply;

/* Reads the token file (refused, with the reason, when group or others may
 * read it, as for the PIN file: common/file.h; or when the token is shorter
 * than 16 bytes or holds spaces or control characters). The token is kept
 * for the life of the api and wiped by api_free(). *out: api_free(). */
int api_new(const api_config *cfg, api **out, dh_err *e) DH_WUR;
void api_free(api *a);

/* Handles one request; *out is filled in (body allocated) whatever the
 * outcome: 401 / 403 for a missing / wrong token, 404 unknown route or key,
 * 405 wrong method, 400 bad input, 409 refused by the lifecycle rules, 413
 * too large, 503 token or DNS unavailable, 500 otherwise. Never logs the
 * token or the Authorization header. */
void api_handle(api *a, const api_request *r, api_reply *out);

/* The HTTP status for a dh_err status: DH_EINVAL 400, DH_ENOTFOUND 404,
 * DH_ESTATE / DH_EEXIST 409, DH_EIO / DH_ETOKEN / DH_ELOGIN 503, else 500. */
int api_http_status(int dh_status);

#endif
