/*
 * conf.h - dkimhsm.conf, the one configuration file every program reads.
 *
 * Format: `key = value` lines, `#` starts a comment, blank lines ignored.
 * Every key is declared once in a table (conf.c) with its type and bounds;
 * an unknown key, a repeated key or a bad value is DH_ECONFIG with a message
 * "FILE:LINE: KEY: what is wrong". Relative paths are taken relative to the
 * directory of the configuration file, so a config can travel with its state.
 */
#ifndef CONF_CONF_H
#define CONF_CONF_H

#include "common/err.h"
#include "dkim/types.h"

#define CONF_DEFAULT_PATH "/etc/dkimhsm/dkimhsm.conf"
#define CONF_ENV "DKIMHSM_CONF"

/* Which algorithms to sign with when a command does not say. */
#define CONF_ALG_RSA (1u << DKIM_ALG_RSA_SHA256)
#define CONF_ALG_ED25519 (1u << DKIM_ALG_ED25519_SHA256)

typedef struct conf {
    char *path;                            /* the file that was read */
    char *pkcs11_module;                   /* PKCS#11 module (.so) */
    char *token;                           /* pkcs11: URI of the token */
    char *pin_file;                        /* user PIN file, mode 0600 */
    char *state_dir;                       /* SQLite state database lives here */
    enum dkim_canon hdr_canon, body_canon; /* canonicalization = hdr/body */
    char *sign_headers;                    /* colon-separated names to sign when present */
    char *oversign_headers;                /* names listed once more than they occur */
    unsigned algorithms;                   /* CONF_ALG_* bitmask */
    unsigned rsa_bits;                     /* size for new RSA keys */
    long long signature_ttl;               /* seconds until x=; 0 = no x= */
    unsigned session_pool;                 /* PKCS#11 sessions kept open */

    /* dkimhsmd and its front ends */
    char *agent_socket;       /* UNIX socket of the agent protocol */
    char *agent_allow;        /* "user:domain,domain; user2:*" - who may sign for what */
    char *http_listen;        /* "127.0.0.1:8025" for /healthz, /metrics; NULL = off */
    unsigned workers;         /* token worker threads; 0 = CPU count */
    unsigned batch_limit;     /* digests a worker signs per wake-up */
    unsigned queue_limit;     /* pending digests before TEMPFAIL */
    char *user;               /* drop root to this user; NULL = stay */
    char *signing_table;      /* "sub.example.com=example.com, .example.net=example.net" */
    char *fallback_domain;    /* signs unknown domains (unaligned); NULL = none */
    char *milter_socket;      /* "unix:/path" or "inet:PORT@HOST" */
    int on_failure_accept;    /* on_failure = accept (1) | tempfail (0, default) */
    unsigned lookup_cache_ms; /* milter keeps "which keys sign d" this long; 0 = ask each time */
    char *log;                /* "stderr" or "syslog" */

    /* the key lifecycle */
    char *dns_server;        /* "HOST:PORT" asked for DKIM records; NULL = system resolver */
    char *delegation_zone;   /* provider mode: records live under this zone; NULL = off */
    long long retire_after;  /* seconds a replaced key stays published; default 7d */
    long long publish_wait;  /* seconds DNS serves a successor before rotation uses it */
    long long rotate_after;  /* seconds an active key signs before rotation; 0 = never */
    char *selector_naming;   /* "alternate" (selector1/selector2) or "date" (YYYYMM) */
    char *dns_update_server; /* "HOST:PORT" for RFC 2136 updates; NULL = publish by hand */
    char *tsig_key_file;     /* "NAME ALG SECRET" (one line) signing those updates */
    char *api_token_file;    /* bearer token of the management API; NULL = API off */
} conf;

/* Reads path; when path is NULL, $DKIMHSM_CONF, else CONF_DEFAULT_PATH.
 * Keys not in the file keep their defaults. pkcs11_module, token, pin_file
 * and state_dir are required. *out is owned by the caller: conf_free(). */
int conf_load(const char *path, conf **out, dh_err *e) DH_WUR;
void conf_free(conf *c);

/* Bitmask from "rsa", "ed25519", "both", or a comma list ("ed25519,rsa"). */
int conf_parse_algorithms(const char *s, unsigned *out, dh_err *e) DH_WUR;

/* Seconds from "90", "90s", "15m", "12h", "7d", "2w". */
int conf_parse_duration(const char *s, long long *out, dh_err *e) DH_WUR;

#endif
