/*
 * b64.c - base64 for b=, bh= and p= (RFC 6376 §2.7, RFC 4648 §4).
 * Decoding skips FWS because tag values may be folded anywhere (§3.5 b=).
 */
#include "dkim/b64.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int dkim_b64_encode(const uint8_t *in, size_t len, dh_buf *out)
{
    if (len / 3 >= SIZE_MAX / 4 - 1)
        return DH_ENOMEM;
    int rc = dh_buf_reserve(out, (len + 2) / 3 * 4);
    if (rc != DH_OK)
        return rc;
    char *p = (char *)out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *p++ = b64_alphabet[v >> 18];
        *p++ = b64_alphabet[(v >> 12) & 63];
        *p++ = b64_alphabet[(v >> 6) & 63];
        *p++ = b64_alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        *p++ = b64_alphabet[v >> 18];
        *p++ = b64_alphabet[(v >> 12) & 63];
        *p++ = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        *p++ = '=';
    }
    out->len = (size_t)((uint8_t *)p - out->data);
    out->data[out->len] = '\0';
    return DH_OK;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static int is_fws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Writes the bytes of a complete group of n (2..4) sextets. */
static int flush_group(const int *q, int n, dh_buf *out)
{
    uint8_t b[3];
    uint32_t v = (uint32_t)q[0] << 18 | (uint32_t)q[1] << 12 | (n > 2 ? (uint32_t)q[2] << 6 : 0) |
                 (n > 3 ? (uint32_t)q[3] : 0);
    b[0] = (uint8_t)(v >> 16);
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)v;
    return dh_buf_append(out, b, (size_t)n - 1);
}

int dkim_b64_decode(const char *text, size_t len, dh_buf *out)
{
    int q[4], nq = 0, pad = 0;
    size_t start = out->len;
    int rc = dh_buf_reserve(out, len / 4 * 3 + 3);
    for (size_t i = 0; i < len && rc == DH_OK; i++) {
        unsigned char c = (unsigned char)text[i];
        if (is_fws(c))
            continue;
        if (c == '=') {
            /* Padding only completes a group of 2 or 3 sextets (RFC 4648 §4). */
            if (nq + pad < 2 || nq + pad >= 4)
                rc = DH_EINVAL;
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad > 0) {
            rc = DH_EINVAL;
            break;
        }
        q[nq++] = v;
        if (nq == 4) {
            rc = flush_group(q, 4, out);
            nq = 0;
        }
    }
    if (rc == DH_OK && nq > 0 && nq + pad != 4)
        rc = DH_EINVAL; /* unpadded or truncated final group */
    if (rc == DH_OK && nq > 0)
        rc = flush_group(q, nq, out);
    if (rc != DH_OK) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
    }
    return rc;
}
