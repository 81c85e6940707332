/*
 * tag.c - RFC 6376 §3.2 tag-list parser.
 *
 *   tag-list  =  tag-spec *( ";" tag-spec ) [ ";" ]
 *   tag-spec  =  [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]
 *   tag-name  =  ALPHA *ALNUMPUNC
 *
 * FWS is taken as any run of SP, HTAB, CR, LF: key records arrive without
 * folding and header fields have been checked by dkim/msg.c already.
 */
#include "dkim/tag.h"

#include <stdlib.h>
#include <string.h>

struct tag {
    char *name;
    char *value;
    size_t vlen;
    size_t raw_off; /* first byte after '=' */
    size_t raw_len; /* up to ';' or end of input */
};

/* Real lists have about 15 tags; the bound keeps the duplicate check cheap. */
#define MAX_TAGS 256

struct dkim_tags {
    struct tag *v;
    size_t n, cap;
};

static int is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static size_t skip_fws(const char *s, size_t len, size_t i)
{
    while (i < len && is_fws(s[i]))
        i++;
    return i;
}

static char *dup_span(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static int tags_push(dkim_tags *t, struct tag *tg)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct tag *v = realloc(t->v, cap * sizeof(*v));
        if (v == NULL)
            return DH_ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = *tg;
    return DH_OK;
}

/* Reads "name [FWS] =" at s[*i]; leaves *i after the '='. */
static int parse_name(const char *s, size_t len, size_t *i, size_t *nlen, dh_err *e)
{
    size_t b = *i, p = *i;
    if (p >= len || !is_alpha(s[p]))
        return dh_err_set(e, DH_EINVAL, "tag list: expected a tag name at byte %zu", p);
    while (p < len && (is_alpha(s[p]) || is_digit(s[p]) || s[p] == '_'))
        p++;
    *nlen = p - b;
    p = skip_fws(s, len, p);
    if (p >= len || s[p] != '=')
        return dh_err_set(e, DH_EINVAL, "tag list: tag \"%.*s\" at byte %zu has no '='", (int)*nlen,
                          s + b, b);
    *i = p + 1;
    return DH_OK;
}

/* Reads a value up to ';' or the end: FWS around it is dropped. */
static int parse_value(const char *s, size_t len, size_t *i, struct tag *tg, size_t nb, size_t nlen,
                       dh_err *e)
{
    size_t p = *i, vb, ve;
    tg->raw_off = p;
    while (p < len && s[p] != ';') {
        unsigned char c = (unsigned char)s[p];
        if ((c < 0x20 && !is_fws((char)c)) || c == 0x7f)
            return dh_err_set(e, DH_EINVAL,
                              "tag list: tag \"%.*s\" has control character 0x%02x at byte %zu",
                              (int)nlen, s + nb, c, p);
        p++;
    }
    tg->raw_len = p - tg->raw_off;
    vb = skip_fws(s, p, tg->raw_off);
    ve = p;
    while (ve > vb && is_fws(s[ve - 1]))
        ve--;
    tg->value = dup_span(s + vb, ve - vb);
    tg->vlen = ve - vb;
    *i = p;
    return tg->value != NULL ? DH_OK : DH_ENOMEM;
}

static int parse_spec(dkim_tags *t, const char *s, size_t len, size_t *i, dh_err *e)
{
    struct tag tg = {0};
    size_t nb = *i, nlen = 0;
    int rc = parse_name(s, len, i, &nlen, e);
    if (rc != DH_OK)
        return rc;
    if (t->n == MAX_TAGS)
        return dh_err_set(e, DH_EINVAL, "tag list: more than %d tags at byte %zu", MAX_TAGS, nb);
    for (size_t k = 0; k < t->n; k++)
        if (strlen(t->v[k].name) == nlen && memcmp(t->v[k].name, s + nb, nlen) == 0)
            return dh_err_set(e, DH_EINVAL,
                              "tag list: duplicate tag \"%.*s\" at byte %zu (RFC 6376 §3.2)",
                              (int)nlen, s + nb, nb);
    tg.name = dup_span(s + nb, nlen);
    if (tg.name == NULL)
        return DH_ENOMEM;
    rc = parse_value(s, len, i, &tg, nb, nlen, e);
    if (rc == DH_OK)
        rc = tags_push(t, &tg);
    if (rc != DH_OK) {
        free(tg.name);
        free(tg.value);
    }
    return rc;
}

int dkim_tags_parse(const char *s, size_t len, dkim_tags **out, dh_err *e)
{
    dkim_tags *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return DH_ENOMEM;
    int rc = DH_OK;
    size_t i = skip_fws(s, len, 0);
    while (i < len && rc == DH_OK) {
        if (s[i] == ';') {
            rc = dh_err_set(e, DH_EINVAL, "tag list: empty tag at byte %zu", i);
            break;
        }
        rc = parse_spec(t, s, len, &i, e);
        if (rc == DH_OK && i < len)
            i = skip_fws(s, len, i + 1); /* past ';'; a trailing ';' is allowed */
    }
    if (rc != DH_OK) {
        dkim_tags_free(t);
        return rc;
    }
    *out = t;
    return DH_OK;
}

static const struct tag *find(const dkim_tags *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].name, name) == 0)
            return &t->v[i];
    return NULL;
}

const char *dkim_tags_get(const dkim_tags *t, const char *name, size_t *len)
{
    const struct tag *tg = find(t, name);
    if (tg != NULL && len != NULL)
        *len = tg->vlen;
    return tg != NULL ? tg->value : NULL;
}

int dkim_tags_span(const dkim_tags *t, const char *name, size_t *off, size_t *len)
{
    const struct tag *tg = find(t, name);
    if (tg == NULL)
        return DH_ENOTFOUND;
    *off = tg->raw_off;
    *len = tg->raw_len;
    return DH_OK;
}

size_t dkim_tags_count(const dkim_tags *t)
{
    return t->n;
}

void dkim_tags_at(const dkim_tags *t, size_t i, const char **name, const char **value)
{
    *name = t->v[i].name;
    *value = t->v[i].value;
}

void dkim_tags_free(dkim_tags *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].name);
        free(t->v[i].value);
    }
    free(t->v);
    free(t);
}
