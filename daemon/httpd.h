/*
 * httpd.h - the daemon's HTTP listener (evhttp): GET /healthz and
 * GET /metrics (Prometheus text format), and, when api_token_file is set,
 * the management API of the key lifecycle under /api/v1/ (api.h,
 * docs/API.md).
 */
#ifndef DAEMON_HTTPD_H
#define DAEMON_HTTPD_H

#include <event2/event.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"
#include "conf/conf.h"
#include "daemon/api.h"
#include "daemon/apiworker.h"
#include "daemon/metrics.h"

typedef struct httpd httpd;

/* What /healthz reports, asked at each request. */
typedef struct httpd_health {
    int (*token_ok)(void *arg);       /* 1 when the token is usable and logged in */
    size_t (*queue_depth)(void *arg); /* digests waiting */
    size_t (*keys)(void *arg);        /* selectors known */
    /* May be NULL: appends more ,"name":value JSON members about the token. */
    int (*token_detail)(void *arg, dh_buf *out);
    void *arg;
} httpd_health;

/* listen is "HOST:PORT" (IPv4 or [IPv6]). apicfg: NULL, or the management
 * API's configuration (aw_new(): the token file is read here, before
 * privileges are dropped; an unsafe or bad token file fails httpd_new). The
 * API's requests run on a thread of its own (apiworker.h). */
int httpd_new(struct event_base *base, const char *listen, mx *metrics, const httpd_health *h,
              const aw_config *apicfg, httpd **out, dh_err *e) DH_WUR;
/* SIGHUP: the API's requests from now on use cf's lifecycle settings. */
int httpd_reconfigure(httpd *h, const conf *cf, dh_err *e) DH_WUR;
/* Stops the API's thread, then the listener. */
void httpd_free(httpd *h);

#endif
