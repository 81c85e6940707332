/*
 * buf.h - growable byte buffer.
 *
 * A dh_buf is a plain value: zero-initialise it (`dh_buf b = {0};`), append,
 * and release with dh_buf_free() (or dh_buf_free_secret() when it held key or
 * PIN material). data is always NUL-terminated after a successful append so
 * text can be printed, but len is the truth: contents may hold NUL bytes.
 */
#ifndef DH_BUF_H
#define DH_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct dh_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} dh_buf;

/* Make room for n more bytes. Returns DH_OK or DH_ENOMEM. */
int dh_buf_reserve(dh_buf *b, size_t n) DH_WUR;
int dh_buf_append(dh_buf *b, const void *p, size_t n) DH_WUR;
int dh_buf_putc(dh_buf *b, uint8_t c) DH_WUR;
int dh_buf_puts(dh_buf *b, const char *s) DH_WUR;
int dh_buf_printf(dh_buf *b, const char *fmt, ...) DH_WUR __attribute__((format(printf, 2, 3)));
/* Empties the buffer but keeps its memory. */
void dh_buf_reset(dh_buf *b);
/* Releases memory; b is zeroed and may be reused. */
void dh_buf_free(dh_buf *b);
/* Like dh_buf_free, but wipes the contents first. */
void dh_buf_free_secret(dh_buf *b);
/* Hands the data to the caller (who frees it with free()); b is zeroed.
 * Returns an empty NUL-terminated string for an empty buffer, NULL on ENOMEM. */
char *dh_buf_steal(dh_buf *b);

#endif
