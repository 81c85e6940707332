#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dh_buf_reserve(dh_buf *b, size_t n)
{
    if (n >= SIZE_MAX - b->len)
        return DH_ENOMEM;
    size_t need = b->len + n + 1; /* +1 keeps room for the NUL terminator */
    if (need <= b->cap)
        return DH_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return DH_ENOMEM;
    b->data = p;
    b->cap = cap;
    return DH_OK;
}

int dh_buf_append(dh_buf *b, const void *p, size_t n)
{
    int rc = dh_buf_reserve(b, n);
    if (rc != DH_OK)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return DH_OK;
}

int dh_buf_putc(dh_buf *b, uint8_t c)
{
    return dh_buf_append(b, &c, 1);
}

int dh_buf_puts(dh_buf *b, const char *s)
{
    return dh_buf_append(b, s, strlen(s));
}

int dh_buf_printf(dh_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return DH_EINVAL;
    int rc = dh_buf_reserve(b, (size_t)n);
    if (rc != DH_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return DH_OK;
}

void dh_buf_reset(dh_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

void dh_buf_free(dh_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void dh_buf_free_secret(dh_buf *b)
{
    if (b->data != NULL)
        explicit_bzero(b->data, b->cap);
    dh_buf_free(b);
}

char *dh_buf_steal(dh_buf *b)
{
    if (dh_buf_reserve(b, 0) != DH_OK)
        return NULL;
    b->data[b->len] = '\0';
    char *p = (char *)b->data;
    memset(b, 0, sizeof(*b));
    return p;
}
