/*
 * err.h - one error table for the whole project.
 *
 * Every fallible function returns an int status: DH_OK (0) or a negative DH_E*
 * code from the table below. Where the caller needs to know *why*, it passes a
 * dh_err; the callee fills in a human-readable message naming the file, line,
 * field or token return code (CKR_ name) concerned. A NULL dh_err is allowed
 * and means "the caller only wants the code".
 */
#ifndef DH_ERR_H
#define DH_ERR_H

#include <stddef.h>

#define DH_WUR __attribute__((warn_unused_result))

enum dh_status {
    DH_OK = 0,
    DH_ENOMEM = -1,      /* allocation failed */
    DH_EINVAL = -2,      /* bad input: message, argument, record */
    DH_EIO = -3,         /* read/write/open failed */
    DH_ECONFIG = -4,     /* configuration file is wrong */
    DH_ETOKEN = -5,      /* the PKCS#11 token said no (message has the CKR_ name) */
    DH_ENOTFOUND = -6,   /* key, selector, token or file does not exist */
    DH_EPERM = -7,       /* permissions are unsafe or insufficient */
    DH_EUNSIGNABLE = -8, /* message cannot be signed unambiguously */
    DH_ESTATE = -9,      /* operation not allowed in the current state */
    DH_EEXIST = -10,     /* object already exists */
    DH_ECRYPTO = -11,    /* OpenSSL failure or bad key material */
    DH_EDB = -12,        /* state database failure */
    DH_ELOGIN = -13,     /* PIN refused or missing */
    DH_EUSAGE = -14,     /* bad command-line argument */
    DH_EDNS = -15,       /* DNS answered, but does not publish what we hold (missing/mismatch) */
};

typedef struct dh_err {
    int code;
    char msg[512];
} dh_err;

/* Static name of a status code ("invalid input", ...). Never NULL. */
const char *dh_strstatus(int code);

/* Records code and a printf-style message in e (if non-NULL); returns code so
 * callers can write `return dh_err_set(e, DH_EINVAL, "...")`. */
int dh_err_set(dh_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prepends "context: " to the message already in e (if non-NULL). */
void dh_err_prefix(dh_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Changes only the code of e (if non-NULL), keeping its message; returns code. */
int dh_err_set_code(dh_err *e, int code);

/* Clears e to DH_OK / empty message. */
void dh_err_clear(dh_err *e);

/* Exit status for a command-line program that failed with code:
 * 2 usage/config, 3 token, 4 message not signable, 5 DNS does not publish
 * the expected record (DH_EDNS), 1 anything else. */
int dh_err_exit_status(int code);

#endif
