/*
 * lifesettings.h - what the daemon's lifecycle threads (the timer, the
 * management API's worker) read of the configuration, as a copy of their
 * own: a reload on the loop thread frees the configuration it replaces and
 * must never free what another thread is reading.
 */
#ifndef DAEMON_LIFESETTINGS_H
#define DAEMON_LIFESETTINGS_H

#include <pthread.h>

#include "common/err.h"
#include "conf/conf.h"
#include "hsm/hsm.h"
#include "keystore/keystore.h"
#include "lifecycle/lifecycle.h"

/* The field names are conf's. Owned by whoever holds it: ls_free(). */
typedef struct ls_settings {
    long long rotate_after, retire_after, publish_wait;
    unsigned rsa_bits;
    char *selector_naming, *delegation_zone, *dns_server, *dns_update_server, *tsig_key_file;
} ls_settings;

/* Deep copies; NULL when out of memory. */
ls_settings *ls_from_conf(const conf *cf);
ls_settings *ls_copy(const ls_settings *s);
void ls_free(ls_settings *s);

/* SIGHUP for a thread's settings: *slot, guarded by mu, becomes a copy of
 * cf's and the old copy is freed. DH_ENOMEM keeps the old one. */
int ls_replace(pthread_mutex_t *mu, ls_settings **slot, const conf *cf, dh_err *e) DH_WUR;

/* A lifecycle context on store and token with s's settings and DNS checks
 * through dns_server. life and dns point into s: s must outlive them. */
void ls_life(const ls_settings *s, ks *store, hsm *token, lf_dns_arg *dns, lf_ctx *life);

#endif
