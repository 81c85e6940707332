/*
 * internal.h - helpers shared by the dkim/ sources; not part of any contract.
 */
#ifndef DKIM_INTERNAL_H
#define DKIM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* 1 when s[0..n) is a host name in RFC 1035 §2.3.1 preferred syntax
 * (letters, digits, inner hyphens; labels 1..63; at most 253 bytes; no
 * final dot). Used for d=, s= and the From domain. */
int dkim_dns_name_ok(const char *s, size_t n);

/* ASCII-only case folding: header names and DNS names, never locale rules. */
static inline uint8_t dkim_lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

/* Case-insensitive (ASCII) comparison of two byte strings. */
int dkim_name_eq(const void *a, size_t alen, const void *b, size_t blen);

#endif
