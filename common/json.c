#include "common/json.h"

int dh_json_str(dh_buf *b, const char *s)
{
    int rc = dh_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; rc == DH_OK && *p; p++) {
        if (*p == '"' || *p == '\\')
            rc = dh_buf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            rc = dh_buf_printf(b, "\\u%04x", *p);
        else
            rc = dh_buf_putc(b, *p);
    }
    return rc == DH_OK ? dh_buf_putc(b, '"') : rc;
}
