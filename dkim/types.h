/*
 * types.h - the small vocabulary of DKIM shared by every dkim/ module.
 */
#ifndef DKIM_TYPES_H
#define DKIM_TYPES_H

#include "common/err.h"

enum dkim_canon { DKIM_CANON_SIMPLE = 0, DKIM_CANON_RELAXED = 1 };

/* RFC 8301 leaves rsa-sha256 as the only RSA algorithm; RFC 8463 adds ed25519-sha256. */
enum dkim_alg { DKIM_ALG_RSA_SHA256 = 0, DKIM_ALG_ED25519_SHA256 = 1 };

/* "simple" / "relaxed". */
const char *dkim_canon_name(enum dkim_canon c);
/* Parses a c= value: "relaxed/simple", or one word (body then defaults to simple,
 * RFC 6376 §3.5). Anything else is DH_EINVAL naming the value. */
int dkim_canon_parse(const char *s, enum dkim_canon *hdr, enum dkim_canon *body, dh_err *e) DH_WUR;

/* "rsa-sha256" / "ed25519-sha256" (the a= value). */
const char *dkim_alg_name(enum dkim_alg a);
/* "rsa" / "ed25519" (the k= value of a key record). */
const char *dkim_alg_keytype(enum dkim_alg a);
/* Accepts a= names and the short names "rsa"/"ed25519". */
int dkim_alg_parse(const char *s, enum dkim_alg *out, dh_err *e) DH_WUR;

#endif
