/*
 * server.h - the agent socket on the daemon's event loop: accepts
 * connections, reads the caller's uid (SO_PEERCRED), cuts the byte stream
 * into frames, hands them to the handler, and writes replies - including the
 * ones that come back later from the token workers (via wp_wake_fd).
 */
#ifndef DAEMON_SERVER_H
#define DAEMON_SERVER_H

#include <event2/event.h>
#include <stddef.h>

#include "common/err.h"
#include "daemon/handler.h"
#include "daemon/workers.h"

typedef struct srv srv;

/* Binds path (a stale socket file there is replaced; anything else is an
 * error), mode 0660, and starts accepting on base. */
int srv_new(struct event_base *base, const char *path, hd *handler, wp *pool, srv **out,
            dh_err *e) DH_WUR;
/* Closes the listening socket (SIGTERM); connections stay until done. */
void srv_stop_accepting(srv *s);
/* Sign requests queued or being signed, over all connections. */
size_t srv_in_flight(const srv *s);
size_t srv_connections(const srv *s);
/* Frees everything; call after the workers have been stopped and drained. */
void srv_free(srv *s);

#endif
