/*
 * hex.h - lower-case hex, as key ids are stored and printed.
 */
#ifndef DH_HEX_H
#define DH_HEX_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Writes the hex of p[0..n) to buf (at most bufsize bytes, always
 * NUL-terminated; a buffer too small gets as many whole bytes as fit) and
 * returns buf, so it can sit inside a printf argument list. */
const char *dh_hex(const uint8_t *p, size_t n, char *buf, size_t bufsize);

/* Decodes exactly len bytes from the hex string s (either case) into out.
 * DH_EINVAL when s is not 2*len hex digits. */
int dh_unhex(const char *s, uint8_t *out, size_t len) DH_WUR;

#endif
