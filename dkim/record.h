/*
 * record.h - DKIM key records in DNS (RFC 6376 §3.6.1, RFC 8463 §4).
 */
#ifndef DKIM_RECORD_H
#define DKIM_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "dkim/types.h"

/* Appends "v=DKIM1; k=rsa|ed25519; p=BASE64" to out. pub is the
 * SubjectPublicKeyInfo DER for RSA and the raw 32-byte key for Ed25519.
 * pub == NULL (len 0) gives the revoked form "v=DKIM1; k=...; p=". */
int dkim_record_value(enum dkim_alg alg, const uint8_t *pub, size_t len, dh_buf *out) DH_WUR;

/* Appends a zone-file line: `OWNER IN TXT ( "..." "..." )` and a newline,
 * where value is cut into character-strings of at most 255 bytes (RFC 1035
 * §3.3.14; '"' and '\' are escaped, RFC 1035 §5.1); owner is printed as given
 * (callers pass an absolute name with its final dot). */
int dkim_record_zone_line(const char *owner, const char *value, dh_buf *out) DH_WUR;

/* Number of <=255-byte strings value splits into, and the i-th one's span. */
size_t dkim_record_nstrings(size_t value_len);
void dkim_record_string_at(size_t value_len, size_t i, size_t *off, size_t *len);

typedef struct dkim_record {
    enum dkim_alg alg; /* from k= (default rsa) */
    int revoked;       /* p= present and empty */
    dh_buf pub;        /* decoded p=; empty when revoked */
    int testing;       /* t=y */
    int strict;        /* t=s */
} dkim_record;

/* Parses a key record (strings already concatenated). DH_EINVAL, naming the
 * tag, for: v= not first or not DKIM1, unknown k=, h= without sha256, s=
 * without email or *, missing p=, bad base64, Ed25519 key not 32 bytes.
 * Free with dkim_record_clear(). */
int dkim_record_parse(const char *txt, size_t len, dkim_record *out, dh_err *e) DH_WUR;
void dkim_record_clear(dkim_record *r);

#endif
