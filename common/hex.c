#include "common/hex.h"

#include <string.h>

const char *dh_hex(const uint8_t *p, size_t n, char *buf, size_t bufsize)
{
    static const char digits[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 <= bufsize; i++) {
        buf[o++] = digits[p[i] >> 4];
        buf[o++] = digits[p[i] & 15];
    }
    if (bufsize > 0)
        buf[o] = '\0';
    return buf;
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int dh_unhex(const char *s, uint8_t *out, size_t len)
{
    if (strlen(s) != 2 * len)
        return DH_EINVAL;
    for (size_t i = 0; i < len; i++) {
        int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return DH_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return DH_OK;
}
