/*
 * json.h - just enough JSON output for --json: escaped strings.
 */
#ifndef DH_JSON_H
#define DH_JSON_H

#include "common/buf.h"

/* Appends s as a JSON string literal (quotes included), escaping ", \ and
 * control characters; bytes >= 0x80 are copied (our names are ASCII). */
int dh_json_str(dh_buf *b, const char *s) DH_WUR;

#endif
