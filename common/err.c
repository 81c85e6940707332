#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *dh_strstatus(int code)
{
    switch (code) {
    case DH_OK:
        return "success";
    case DH_ENOMEM:
        return "out of memory";
    case DH_EINVAL:
        return "invalid input";
    case DH_EIO:
        return "I/O error";
    case DH_ECONFIG:
        return "configuration error";
    case DH_ETOKEN:
        return "token error";
    case DH_ENOTFOUND:
        return "not found";
    case DH_EPERM:
        return "permission problem";
    case DH_EUNSIGNABLE:
        return "message cannot be signed";
    case DH_ESTATE:
        return "not allowed in this state";
    case DH_EEXIST:
        return "already exists";
    case DH_ECRYPTO:
        return "cryptographic failure";
    case DH_EDB:
        return "state database error";
    case DH_ELOGIN:
        return "login failed";
    case DH_EUSAGE:
        return "usage error";
    case DH_EDNS:
        return "DNS does not publish the expected record";
    }
    return "unknown error";
}

int dh_err_set(dh_err *e, int code, const char *fmt, ...)
{
    if (e == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    e->code = code;
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return code;
}

void dh_err_prefix(dh_err *e, const char *fmt, ...)
{
    if (e == NULL)
        return;
    char ctx[sizeof(e->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    /* Shift the old message right and put "ctx: " in front; the tail is cut
     * if the whole no longer fits. */
    size_t clen = strlen(ctx), olen = strlen(e->msg), cap = sizeof(e->msg) - 1;
    if (clen + 2 > cap)
        clen = cap - 2;
    if (olen > cap - clen - 2)
        olen = cap - clen - 2;
    memmove(e->msg + clen + 2, e->msg, olen);
    memcpy(e->msg, ctx, clen);
    e->msg[clen] = ':';
    e->msg[clen + 1] = ' ';
    e->msg[clen + 2 + olen] = '\0';
}

int dh_err_set_code(dh_err *e, int code)
{
    if (e != NULL)
        e->code = code;
    return code;
}

void dh_err_clear(dh_err *e)
{
    if (e == NULL)
        return;
    e->code = DH_OK;
    e->msg[0] = '\0';
}

int dh_err_exit_status(int code)
{
    switch (code) {
    case DH_OK:
        return 0;
    case DH_ECONFIG:
    case DH_EUSAGE:
        return 2;
    case DH_ETOKEN:
    case DH_ELOGIN:
        return 3;
    case DH_EUNSIGNABLE:
        return 4;
    case DH_EDNS:
        return 5;
    default:
        return 1;
    }
}
