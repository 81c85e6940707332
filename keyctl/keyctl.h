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

typedef struct kc_ctx {
    const char *config_path; /* -c, or NULL for $DKIMHSM_CONF / default */
    conf *cf;
    ks *store;
    hsm *token;
    FILE *out; /* results: stdout */
} kc_ctx;

/* Each opens what it needs once; later calls return the same object. */
int kc_conf(kc_ctx *c, dh_err *e) DH_WUR;
int kc_store(kc_ctx *c, dh_err *e) DH_WUR;
int kc_token(kc_ctx *c, dh_err *e) DH_WUR;
void kc_ctx_close(kc_ctx *c);

/* A command gets argv after its own name (argv[0] is the command name, as
 * getopt expects). Returns DH_OK or a status with e filled in; DH_EINVAL with
 * an empty message means "print this command's usage". */
typedef int (*kc_cmd_fn)(kc_ctx *c, int argc, char **argv, dh_err *e);

int kc_cmd_create(kc_ctx *c, int argc, char **argv, dh_err *e);
int kc_cmd_import(kc_ctx *c, int argc, char **argv, dh_err *e);
int kc_cmd_list(kc_ctx *c, int argc, char **argv, dh_err *e);
int kc_cmd_dns(kc_ctx *c, int argc, char **argv, dh_err *e);

/* Prints the zone-file line for one stored selector (p= empty when revoked). */
int kc_print_record(kc_ctx *c, const ks_selector *s, dh_err *e) DH_WUR;

#endif
