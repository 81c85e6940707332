#include "daemon/httpd.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"

/* Headers of a request stay small; bodies are the API's JSON objects. */
#define MAX_HEADERS 8192

struct httpd {
    struct evhttp *http;
    mx *m;
    httpd_health health;
    aw *aw; /* the management API's worker; NULL: the API is off */
};

static void reply(struct evhttp_request *req, int code, const char *type, const dh_buf *body)
{
    struct evbuffer *out = evbuffer_new();
    if (out == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(out, body->data, body->len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Service Unavailable", out);
    evbuffer_free(out);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    httpd *h = arg;
    dh_buf body = {0};
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_send_error(req, 405, NULL);
        return;
    }
    if (mx_render(h->m, &body) != DH_OK)
        evhttp_send_error(req, 500, NULL);
    else
        reply(req, 200, "text/plain; version=0.0.4", &body);
    dh_buf_free(&body);
}

/* 200 when the token is usable; 503 otherwise (down, or being recovered),
 * so a load balancer or a monitoring probe can tell without parsing. */
static void on_healthz(struct evhttp_request *req, void *arg)
{
    httpd *h = arg;
    const httpd_health *hh = &h->health;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_send_error(req, 405, NULL);
        return;
    }
    int ok = hh->token_ok(hh->arg);
    dh_buf body = {0};
    int rc = dh_buf_printf(&body,
                           "{\"status\":\"%s\",\"token_logged_in\":%s,\"queue_depth\":%zu,"
                           "\"selectors\":%zu",
                           ok ? "ok" : "token_unavailable", ok ? "true" : "false",
                           hh->queue_depth(hh->arg), hh->keys(hh->arg));
    if (rc == DH_OK && hh->token_detail != NULL)
        rc = hh->token_detail(hh->arg, &body);
    if (rc == DH_OK)
        rc = dh_buf_puts(&body, "}\n");
    if (rc != DH_OK)
        evhttp_send_error(req, 500, NULL);
    else
        reply(req, ok ? 200 : 503, "application/json", &body);
    dh_buf_free(&body);
}

static const char *reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static enum api_method method_of(struct evhttp_request *req)
{
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        return API_GET;
    case EVHTTP_REQ_PUT:
        return API_PUT;
    case EVHTTP_REQ_POST:
        return API_POST;
    case EVHTTP_REQ_DELETE:
        return API_DELETE;
    default:
        return API_OTHER;
    }
}

/* On the loop thread: the API's reply to req (apiworker.h). A client that
 * went away meanwhile is no matter: evhttp then frees req instead of
 * sending. */
static void on_api_done(void *ctx, const api_reply *out)
{
    struct evhttp_request *req = ctx;
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
    struct evbuffer *body = evbuffer_new();
    if (body == NULL || evbuffer_add(body, out->body.data, out->body.len) != 0) {
        evhttp_send_error(req, 500, NULL);
    } else {
        evhttp_add_header(hdr, "Content-Type", "application/json");
        evhttp_add_header(hdr, "Cache-Control", "no-store");
        if (out->allow)
            evhttp_add_header(hdr, "Allow", out->allow);
        if (out->challenge)
            evhttp_add_header(hdr, "WWW-Authenticate", "Bearer realm=\"dkimhsm\"");
        evhttp_send_reply(req, out->status, reason(out->status), body);
    }
    if (body)
        evbuffer_free(body);
}

/* Everything not /healthz or /metrics: /api/... goes to the API's worker
 * thread (it may wait on DNS or the token: never on the loop), the rest is
 * 404. evhttp has already refused a body over API_MAX_BODY (413). */
static void on_other(struct evhttp_request *req, void *arg)
{
    httpd *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (h->aw == NULL || path == NULL || strncmp(path, "/api/", 5) != 0) {
        evhttp_send_error(req, 404, NULL);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *peer = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);
    api_request r = {.method = method_of(req),
                     .path = path,
                     .query = evhttp_uri_get_query(uri),
                     .authorization =
                         evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization"),
                     .body = len ? evbuffer_pullup(in, -1) : NULL,
                     .body_len = len,
                     .peer = peer};
    dh_err e = {0};
    if (aw_submit(h->aw, &r, on_api_done, req, &e) != DH_OK) {
        dh_log(DH_LOG_ERR, "api: %s", e.msg);
        evhttp_send_error(req, 500, NULL);
    }
}

static int split_listen(const char *listen, char *host, size_t cap, unsigned short *port)
{
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || colon == listen || (size_t)(colon - listen) >= cap)
        return DH_EINVAL;
    const char *h = listen, *he = colon;
    if (*h == '[' && he[-1] == ']') {
        h++;
        he--;
    }
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = '\0';
    char *end;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || p == 0 || p > 65535)
        return DH_EINVAL;
    *port = (unsigned short)p;
    return DH_OK;
}

int httpd_new(struct event_base *base, const char *listen, mx *metrics, const httpd_health *hh,
              const aw_config *apicfg, httpd **out, dh_err *e)
{
    *out = NULL;
    char host[256];
    unsigned short port;
    if (split_listen(listen, host, sizeof(host), &port) != DH_OK)
        return dh_err_set(e, DH_ECONFIG, "http_listen '%s' is not HOST:PORT", listen);
    httpd *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->http = evhttp_new(base)) == NULL) {
        free(h);
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    h->m = metrics;
    h->health = *hh;
    int rc = apicfg != NULL ? aw_new(base, apicfg, &h->aw, e) : DH_OK;
    if (rc != DH_OK) {
        httpd_free(h);
        return rc;
    }
    evhttp_set_cb(h->http, "/metrics", on_metrics, h);
    evhttp_set_cb(h->http, "/healthz", on_healthz, h);
    evhttp_set_gencb(h->http, on_other, h);
    evhttp_set_max_headers_size(h->http, MAX_HEADERS);
    evhttp_set_max_body_size(h->http, API_MAX_BODY);
    evhttp_set_allowed_methods(
        h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
                     (h->aw ? EVHTTP_REQ_PUT | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE : 0));
    if (evhttp_bind_socket(h->http, host, port) != 0) {
        httpd_free(h);
        return dh_err_set(e, DH_EIO, "http_listen %s: cannot bind", listen);
    }
    *out = h;
    return DH_OK;
}

int httpd_reconfigure(httpd *h, const conf *cf, dh_err *e)
{
    return h->aw != NULL ? aw_reconfigure(h->aw, cf, e) : DH_OK;
}

void httpd_free(httpd *h)
{
    if (h == NULL)
        return;
    /* The worker first: evhttp_free frees the requests still waiting for
     * their reply, which a later done() would touch. */
    aw_free(h->aw);
    if (h->http != NULL)
        evhttp_free(h->http);
    free(h);
}
