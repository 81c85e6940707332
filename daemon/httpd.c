#include "daemon/httpd.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

struct httpd {
    struct evhttp *http;
    mx *m;
    httpd_health health;
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
              httpd **out, dh_err *e)
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
    evhttp_set_cb(h->http, "/metrics", on_metrics, h);
    evhttp_set_cb(h->http, "/healthz", on_healthz, h);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    if (evhttp_bind_socket(h->http, host, port) != 0) {
        httpd_free(h);
        return dh_err_set(e, DH_EIO, "http_listen %s: cannot bind", listen);
    }
    *out = h;
    return DH_OK;
}

void httpd_free(httpd *h)
{
    if (h == NULL)
        return;
    if (h->http != NULL)
        evhttp_free(h->http);
    free(h);
}
