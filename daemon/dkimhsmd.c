/*
 * dkimhsmd - the key holder. It logs in to the token, answers the agent
 * protocol on a UNIX socket, signs digests with a pool of token workers, and
 * serves /healthz and /metrics. Front ends that parse mail hold no key and no
 * PIN; they ask this process (ssh-agent / OpenSMTPD's ca process).
 *
 * main() wires things up; everything else is a callback on one event loop.
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "conf/conf.h"
#include "daemon/handler.h"
#include "daemon/httpd.h"
#include "daemon/keyset.h"
#include "daemon/lifetimer.h"
#include "daemon/metrics.h"
#include "daemon/policy.h"
#include "daemon/server.h"
#include "daemon/workers.h"
#include "lifecycle/lifecycle.h"

struct daemon {
    const char *config_path;
    conf *cf;
    struct event_base *base;
    hsm *token;
    ks *store;
    mx *metrics;
    wp *pool;
    hd *handler;
    srv *server;
    httpd *http;
    struct event *sighup, *sigterm, *sigint, *keywatch, *drain_timer;
    long long data_version;          /* of the state database, when the keys were last loaded */
    long long login_failure_audited; /* hsm_health().since of the last one written */
    lt *timer;                       /* the lifecycle timer (lifetimer.h) */
};

/* No core dump, no ptrace: key handles and the PIN's traces stay in here. */
static void harden(void)
{
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        dh_log(DH_LOG_WARNING, "could not disable core dumps / tracing");
    signal(SIGPIPE, SIG_IGN);
}

/* Once the token is open and the sockets listen, root is no longer needed.
 * The agent socket goes to the user and its group first: front ends reach it
 * through the group (mode 0660), and the daemon can remove it at exit. */
static int drop_privileges(const char *user, const char *agent_socket, dh_err *e)
{
    if (user == NULL || getuid() != 0)
        return DH_OK;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL)
        return dh_err_set(e, DH_ECONFIG, "user '%s' does not exist", user);
    if (agent_socket != NULL && chown(agent_socket, pw->pw_uid, pw->pw_gid) != 0)
        return dh_err_set(e, DH_EPERM, "cannot give %s to user '%s'", agent_socket, user);
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
        return dh_err_set(e, DH_EPERM, "cannot become user '%s'", user);
    if (setuid(0) == 0)
        return dh_err_set(e, DH_EPERM, "privileges could be regained after dropping to '%s'", user);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* setuid resets it */
    dh_log(DH_LOG_INFO, "running as user %s (uid %lu)", user, (unsigned long)pw->pw_uid);
    return DH_OK;
}

/* A new key snapshot and policy from the database and the config. */
static int load_state(struct daemon *d, const conf *cf, dh_err *e)
{
    kset *keys = NULL;
    policy *pol = NULL;
    int rc = kset_load(d->store, d->token, &keys, e);
    if (rc == DH_OK)
        rc = policy_new(cf, getuid(), &pol, e);
    if (rc != DH_OK) {
        kset_unref(keys);
        return rc;
    }
    hd_set_state(d->handler, keys, pol);
    dh_log(DH_LOG_INFO, "loaded %zu selectors", kset_count(keys));
    return DH_OK;
}

/* After a lifecycle change made through the API (apiworker.h calls this on
 * the loop thread before it replies): the keys in use follow at once. The
 * API's database connection is its own, so the key watch would see the
 * change too, but only up to KEYWATCH_MS later. */
static void daemon_keys_changed(void *arg)
{
    struct daemon *d = arg;
    dh_err e = {0};
    long long v;
    /* Seen now: the key watch need not load the same change again. */
    if (ks_data_version(d->store, &v, &e) == DH_OK)
        d->data_version = v;
    if (load_state(d, d->cf, &e) != DH_OK)
        dh_log(DH_LOG_ERR, "keys changed, reload failed, keeping the previous keys: %s", e.msg);
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    conf *cf = NULL;
    dh_err e = {0};
    (void)sig;
    (void)what;
    /* Sockets, token and workers stay as they are; keys and rules reload.
     * Queued requests keep the snapshot they were checked against. */
    if (conf_load(d->config_path, &cf, &e) != DH_OK || load_state(d, cf, &e) != DH_OK) {
        dh_log(DH_LOG_ERR, "reload failed, keeping the previous state: %s", e.msg);
        conf_free(cf);
        return;
    }
    if (d->timer != NULL && lt_reconfigure(d->timer, cf, &e) != DH_OK)
        dh_log(DH_LOG_ERR, "reload: the lifecycle timer keeps its previous settings: %s", e.msg);
    if (d->http != NULL && httpd_reconfigure(d->http, cf, &e) != DH_OK)
        dh_log(DH_LOG_ERR, "reload: the management API keeps its previous settings: %s", e.msg);
    conf_free(d->cf);
    d->cf = cf;
    dh_log(DH_LOG_INFO, "reloaded %s", cf->path);
}

/* dkim-keyctl (activate, revoke, rotate) writes the state database from
 * another process; the keys in use follow within KEYWATCH_MS, so a revoked
 * key stops signing at once and a new one starts without a SIGHUP. */
#define KEYWATCH_MS 250

/* The token refused our PIN (at a re-login after a token failure): one
 * audit entry per episode. Read from hsm_health, so no token call here. */
static void audit_login_failure(struct daemon *d)
{
    hsm_health_info hi;
    hsm_health(d->token, &hi);
    const char *ckr = hsm_ckr_name(hi.ckr);
    if (hi.usable || strncmp(ckr, "CKR_PIN_", 8) != 0 || hi.since == d->login_failure_audited)
        return;
    dh_err e = {0};
    char detail[128];
    snprintf(detail, sizeof(detail), "dkimhsmd: re-login refused: %s", ckr);
    if (au_record(d->store, (long long)time(NULL), "dkimhsmd", "login-failure", NULL, NULL, NULL,
                  detail, &e) != DH_OK)
        dh_log(DH_LOG_ERR, "could not audit the login failure: %s", e.msg);
    d->login_failure_audited = hi.since;
}

static void on_keywatch(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    long long v = 0;
    dh_err e = {0};
    (void)fd;
    (void)what;
    audit_login_failure(d);
    if (ks_data_version(d->store, &v, &e) != DH_OK) {
        dh_log(DH_LOG_ERR, "state database: %s", e.msg);
        return;
    }
    if (v == d->data_version)
        return;
    d->data_version = v;
    if (load_state(d, d->cf, &e) != DH_OK)
        dh_log(DH_LOG_ERR, "key change seen, reload failed, keeping the previous keys: %s", e.msg);
}

static int start_keywatch(struct daemon *d, dh_err *e)
{
    struct timeval tick = {0, KEYWATCH_MS * 1000};
    if (ks_data_version(d->store, &d->data_version, e) != DH_OK)
        return DH_EDB;
    d->keywatch = event_new(d->base, -1, EV_PERSIST, on_keywatch, d);
    if (d->keywatch == NULL || event_add(d->keywatch, &tick) != 0)
        return dh_err_set(e, DH_EIO, "cannot start the key watch timer");
    return DH_OK;
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)fd;
    (void)what;
    if (srv_in_flight(d->server) == 0)
        event_base_loopexit(d->base, NULL);
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    (void)what;
    dh_log(DH_LOG_INFO, "signal %d: finishing %zu requests in flight, then exiting", (int)sig,
           srv_in_flight(d->server));
    srv_stop_accepting(d->server);
    hd_set_stopping(d->handler);
    struct timeval tick = {0, 20000};
    if (d->drain_timer == NULL)
        d->drain_timer = event_new(d->base, -1, EV_PERSIST, on_drain_tick, d);
    if (d->drain_timer != NULL)
        event_add(d->drain_timer, &tick);
}

/* What the token layer knows (never a token call on the loop thread): down
 * while it is lost and being recovered with backoff. */
static int h_token_ok(void *arg)
{
    hsm_health_info hi;
    hsm_health(((struct daemon *)arg)->token, &hi);
    return hi.usable;
}
static int h_token_detail(void *arg, dh_buf *out)
{
    hsm_health_info hi;
    hsm_health(((struct daemon *)arg)->token, &hi);
    if (hi.usable)
        return dh_buf_printf(out, ",\"token_recoveries\":%lu", hi.recoveries);
    return dh_buf_printf(out,
                         ",\"token_recoveries\":%lu,\"token_error\":\"%s\","
                         "\"token_down_since\":%lld,\"token_attempts\":%u,"
                         "\"token_next_attempt_ms\":%u",
                         hi.recoveries, hsm_ckr_name(hi.ckr), hi.since, hi.attempts,
                         hi.next_attempt_ms);
}
static size_t h_queue(void *arg)
{
    return wp_queue_depth(((struct daemon *)arg)->pool);
}
static size_t h_keys(void *arg)
{
    return hd_keys(((struct daemon *)arg)->handler);
}

static unsigned worker_count(const conf *cf)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return cf->workers ? cf->workers : (unsigned)(n > 0 ? n : 1);
}

/* Token, state, workers, handler: everything a request needs. */
static int open_core(struct daemon *d, dh_err *e)
{
    const conf *cf = d->cf;
    unsigned workers = worker_count(cf);
    hsm_config hc = {.module = cf->pkcs11_module,
                     .token_uri = cf->token,
                     .pin_file = cf->pin_file,
                     .pool_size = cf->session_pool > workers ? cf->session_pool : workers};
    int rc = hsm_open(&hc, &d->token, e);
    if (rc == DH_ELOGIN) { /* audited, best effort, before giving up */
        dh_err ignored = {0};
        if (ks_open(cf->state_dir, &d->store, &ignored) != DH_OK ||
            au_record(d->store, (long long)time(NULL), "dkimhsmd", "login-failure", NULL, NULL,
                      NULL, e->msg, &ignored) != DH_OK)
            dh_log(DH_LOG_ERR, "could not audit the login failure: %s", ignored.msg);
    }
    if (rc == DH_OK)
        rc = ks_open(cf->state_dir, &d->store, e);
    if (rc == DH_OK && ((d->metrics = mx_new()) == NULL))
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc == DH_OK)
        rc = hd_register_metrics(d->metrics);
    if (rc == DH_OK)
        rc = wp_new(d->token, workers, cf->batch_limit, cf->queue_limit, &d->pool, e);
    if (rc == DH_OK)
        rc = hd_new(d->pool, d->metrics, d->token, &d->handler, e);
    if (rc == DH_OK)
        rc = load_state(d, cf, e);
    if (rc == DH_OK)
        dh_log(DH_LOG_INFO, "token %s: %u workers, batch %u, queue %u", cf->token, workers,
               cf->batch_limit, cf->queue_limit);
    return rc;
}

/* Sockets and signals, opened before privileges are dropped. */
static int open_front(struct daemon *d, dh_err *e)
{
    const conf *cf = d->cf;
    if (cf->agent_socket == NULL)
        return dh_err_set(e, DH_ECONFIG, "%s: agent_socket: required by dkimhsmd", cf->path);
    int rc = srv_new(d->base, cf->agent_socket, d->handler, d->pool, &d->server, e);
    httpd_health hh = {h_token_ok, h_queue, h_keys, h_token_detail, d};
    /* The management API (api.h) on a thread of its own (apiworker.h); its
     * changes reload the keys at once. */
    aw_config ac = {cf, d->token, daemon_keys_changed, d};
    if (rc == DH_OK && cf->api_token_file && !cf->http_listen)
        rc = dh_err_set(e, DH_ECONFIG, "%s: api_token_file needs http_listen", cf->path);
    if (rc == DH_OK && cf->http_listen)
        rc = httpd_new(d->base, cf->http_listen, d->metrics, &hh, cf->api_token_file ? &ac : NULL,
                       &d->http, e);
    d->sighup = evsignal_new(d->base, SIGHUP, on_sighup, d);
    d->sigterm = evsignal_new(d->base, SIGTERM, on_sigterm, d);
    d->sigint = evsignal_new(d->base, SIGINT, on_sigterm, d);
    if (rc == DH_OK && (!d->sighup || !d->sigterm || !d->sigint || event_add(d->sighup, NULL) ||
                        event_add(d->sigterm, NULL) || event_add(d->sigint, NULL)))
        rc = dh_err_set(e, DH_EIO, "cannot install signal handlers");
    if (rc == DH_OK)
        rc = start_keywatch(d, e);
    if (rc == DH_OK)
        rc = lt_new(d->base, d->token, cf, &d->timer, e);
    return rc;
}

static void daemon_close(struct daemon *d)
{
    lt_free(d->timer);
    /* Workers first: every queued job is signed and handed back before the
     * connections and the token go. */
    if (d->pool != NULL) {
        wp_stop(d->pool);
        srv_free(d->server);
        d->server = NULL;
    }
    wp_free(d->pool);
    httpd_free(d->http);
    srv_free(d->server);
    hd_free(d->handler);
    for (struct event **ev = &d->sighup; ev <= &d->drain_timer; ev++)
        if (*ev != NULL)
            event_free(*ev);
    mx_free(d->metrics);
    ks_close(d->store);
    hsm_close(d->token);
    if (d->base != NULL)
        event_base_free(d->base);
    conf_free(d->cf);
}

static int parse_args(int argc, char **argv, struct daemon *d, int *foreground)
{
    int ch;
    while ((ch = getopt(argc, argv, "c:fh")) != -1) {
        switch (ch) {
        case 'c':
            d->config_path = optarg;
            break;
        case 'f':
            *foreground = 1;
            break;
        default:
            fprintf(ch == 'h' ? stdout : stderr, "usage: dkimhsmd [-c CONFIG] [-f]\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    return optind == argc ? -1 : 2;
}

int main(int argc, char **argv)
{
    struct daemon d = {0};
    int foreground = 0;
    int prc = parse_args(argc, argv, &d, &foreground);
    if (prc >= 0)
        return prc;
    dh_err e = {0};
    int rc = conf_load(d.config_path, &d.cf, &e);
    if (rc != DH_OK) {
        fprintf(stderr, "dkimhsmd: %s\n", e.msg);
        return dh_err_exit_status(rc);
    }
    dh_log_open("dkimhsmd", strcmp(d.cf->log, "syslog") == 0);
    harden();
    /* PKCS#11 is not fork-safe: become a daemon before the token is opened. */
    if (!foreground && daemon(0, 0) != 0)
        rc = dh_err_set(&e, DH_EIO, "cannot become a daemon");
    if (rc == DH_OK && evthread_use_pthreads() != 0)
        rc = dh_err_set(&e, DH_EIO, "libevent threading unavailable");
    if (rc == DH_OK && (d.base = event_base_new()) == NULL)
        rc = dh_err_set(&e, DH_ENOMEM, "cannot create the event loop");
    if (rc == DH_OK)
        rc = open_core(&d, &e);
    if (rc == DH_OK)
        rc = open_front(&d, &e);
    if (rc == DH_OK)
        rc = drop_privileges(d.cf->user, d.cf->agent_socket, &e);
    if (rc == DH_OK) {
        dh_log(DH_LOG_INFO, "ready on %s", d.cf->agent_socket);
        event_base_dispatch(d.base);
        dh_log(DH_LOG_INFO, "stopped");
    } else {
        dh_log(DH_LOG_ERR, "%s", e.msg);
    }
    daemon_close(&d);
    return dh_err_exit_status(rc);
}
