/*
 * tag.h - RFC 6376 §3.2 tag=value lists (DKIM-Signature fields, key records).
 */
#ifndef DKIM_TAG_H
#define DKIM_TAG_H

#include <stddef.h>

#include "common/err.h"

typedef struct dkim_tags dkim_tags;

/* Parses s[0..len). Tag names are ALPHA *(ALPHA/DIGIT/"_"); values have the
 * FWS around them removed (inner FWS kept as is). A trailing ';' is allowed.
 * DH_EINVAL (message says which tag / byte offset) for: a tag without '=', a
 * bad tag name, a duplicate tag (§3.2 "MUST be rejected"), a value with a
 * control character, an empty tag-spec (";;"), more than 256 tags. Bytes
 * >= 0x80 in values are kept (RFC 8616). On success *out is owned by the
 * caller (dkim_tags_free). */
int dkim_tags_parse(const char *s, size_t len, dkim_tags **out, dh_err *e) DH_WUR;

/* Value of tag name (case-sensitive, §3.2), NUL-terminated, or NULL when the
 * tag is absent. Owned by tags. *len (may be NULL) gets its length. */
const char *dkim_tags_get(const dkim_tags *t, const char *name, size_t *len);

/* Where the raw value of tag name sits in the parsed input: offset of the first
 * byte after '=' and length up to (not including) the ';' or end of input,
 * surrounding whitespace included - exactly what RFC 6376 §3.7 removes for b=.
 * Returns DH_ENOTFOUND when absent. */
int dkim_tags_span(const dkim_tags *t, const char *name, size_t *off, size_t *len) DH_WUR;

size_t dkim_tags_count(const dkim_tags *t);
/* i-th tag in input order; pointers owned by t. */
void dkim_tags_at(const dkim_tags *t, size_t i, const char **name, const char **value);

void dkim_tags_free(dkim_tags *t);

#endif
