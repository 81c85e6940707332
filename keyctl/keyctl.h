/*
 * keyctl.h - what the dkim-keyctl commands share: a context that opens the
 * config, the state database and the token only when a command needs them,
 * and the command table.
 */
#ifndef KEYCTL_KEYCTL_H
#define KEYCTL_KEYCTL_H

#include <stdio.h>

#include "common/err.h"
#include "conf/conf.h"
#include "hsm/hsm.h"
#include "keystore/keystore.h"
#include "lifecycle/lifecycle.h"

typedef struct kc_ctx {
    const char *config_path; /* -c, or NULL for $DKIMHSM_CONF / default */
    conf *cf;
    ks *store;
    hsm *token;
    FILE *out;      /* results: stdout */
    lf_dns_arg dns; /* lifecycle DNS checks (kc_life fills it) */
} kc_ctx;

/* Each opens what it needs once; later calls return the same object. */
int kc_conf(kc_ctx *c, dh_err *e) DH_WUR;
int kc_store(kc_ctx *c, dh_err *e) DH_WUR;
int kc_token(kc_ctx *c, dh_err *e) DH_WUR;
void kc_ctx_close(kc_ctx *c);

/* Prints n items as one JSON array line: one(item, out) appends item i's
 * object, items being size bytes apart. */
typedef int (*kc_json_fn)(const void *item, dh_buf *out);
int kc_print_json_array(kc_ctx *c, const void *items, size_t n, size_t size, kc_json_fn one,
                        dh_err *e) DH_WUR;

/* A command gets argv after its own name (argv[0] is the command name, as
 * getopt expects). Returns DH_OK or a status with e filled in; DH_EINVAL with
 * an empty message means "print this command's usage". */
typedef int (*kc_cmd_fn)(kc_ctx *c, int argc, char **argv, dh_err *e);

int kc_cmd_create(kc_ctx *c, int argc, char **argv, dh_err *e);
int kc_cmd_import(kc_ctx *c, int argc, char **argv, dh_err *e);
int kc_cmd_list(kc_ctx *c, int argc, char **argv, dh_err *e);
int kc_cmd_dns(kc_ctx *c, int argc, char **argv, dh_err *e);
/* Exit 0 all as expected, 5 (DH_EDNS) some missing/mismatch, 1 DNS failed. */
int kc_cmd_check(kc_ctx *c, int argc, char **argv, dh_err *e);

/* The key lifecycle (cmd_life.c). */
int kc_cmd_show(kc_ctx *c, int argc, char **argv, dh_err *e);
int kc_cmd_activate(kc_ctx *c, int argc, char **argv, dh_err *e);
int kc_cmd_revoke(kc_ctx *c, int argc, char **argv, dh_err *e);
int kc_cmd_destroy(kc_ctx *c, int argc, char **argv, dh_err *e);
int kc_cmd_rotate(kc_ctx *c, int argc, char **argv, dh_err *e);
int kc_cmd_audit(kc_ctx *c, int argc, char **argv, dh_err *e);

/* Fills *lf from the config and the state database (and the token when
 * need_token); lf->check_arg points into c. */
int kc_life(kc_ctx *c, int need_token, lf_ctx *lf, dh_err *e) DH_WUR;
/* "uid:1000(alice)": who runs this command, for the audit log. Static. */
const char *kc_actor(void);

/* Prints what the zone should hold for domain (selector NULL: every key) as
 * zone-file lines or a JSON array (lf_records: p= empty when revoked; in
 * provider mode a CNAME line for the customer and the TXT line for the
 * provider's zone). */
int kc_print_records(kc_ctx *c, lf_ctx *lf, const char *domain, const char *selector, int json,
                     dh_err *e) DH_WUR;

#endif
