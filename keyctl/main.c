/*
 * dkim-keyctl - create, import, list and publish the DKIM keys held in the
 * token. (Not "keyctl": that is Linux keyutils' command.)
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "keyctl/keyctl.h"

static const struct {
    const char *name;
    kc_cmd_fn fn;
    const char *usage;
} commands[] = {
    {"create", kc_cmd_create, "create DOMAIN SELECTOR [--alg rsa|ed25519] [--bits N]"},
    {"import", kc_cmd_import, "import DOMAIN SELECTOR --pem FILE"},
    {"list", kc_cmd_list, "list [--json]"},
    {"show", kc_cmd_show, "show DOMAIN SELECTOR"},
    {"activate", kc_cmd_activate, "activate DOMAIN SELECTOR [--force]"},
    {"rotate", kc_cmd_rotate, "rotate DOMAIN [--alg rsa|ed25519]"},
    {"revoke", kc_cmd_revoke, "revoke DOMAIN SELECTOR [--destroy]"},
    {"destroy", kc_cmd_destroy, "destroy DOMAIN SELECTOR"},
    {"audit", kc_cmd_audit, "audit [--verify] [--json]"},
    {"dns", kc_cmd_dns, "dns DOMAIN [SELECTOR] [--json]"},
    {"check", kc_cmd_check, "check DOMAIN [SELECTOR] [--json]"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fputs("usage: dkim-keyctl [-c CONFIG] COMMAND ...\n", f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "       dkim-keyctl [-c CONFIG] %s\n", commands[i].usage);
}

int main(int argc, char **argv)
{
    kc_ctx c = {.out = stdout};
    int ch;
    /* "+" stops at the command name: its options are the command's own. */
    while ((ch = getopt(argc, argv, "+c:h")) != -1) {
        if (ch == 'c') {
            c.config_path = optarg;
        } else {
            usage(ch == 'h' ? stdout : stderr);
            return ch == 'h' ? 0 : 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    int cmd = optind;
    const char *name = argv[cmd];
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, name) != 0)
            continue;
        dh_err e = {0};
        optind = 0; /* glibc: 0 re-initializes getopt for the command's own options */
        int rc = commands[i].fn(&c, argc - cmd, argv + cmd, &e);
        kc_ctx_close(&c);
        if (rc == DH_OK)
            return 0;
        if (rc == DH_EINVAL && e.msg[0] == '\0') {
            fprintf(stderr, "usage: dkim-keyctl [-c CONFIG] %s\n", commands[i].usage);
            return 2;
        }
        fprintf(stderr, "dkim-keyctl %s: %s\n", name, e.msg[0] ? e.msg : dh_strstatus(rc));
        return dh_err_exit_status(rc);
    }
    fprintf(stderr, "dkim-keyctl: unknown command '%s'\n", name);
    usage(stderr);
    return 2;
}
