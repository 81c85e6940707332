#include "conf/conf.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/file.h"
#include "dkim/sig.h"

enum conf_type {
    T_PATH,
    T_STRING,
    T_UINT,
    T_CANON,
    T_ALGS,
    T_HEADERS,
    T_DURATION,
    T_FAILURE,
    T_LOG,
    T_NAMING
};

struct conf_param {
    const char *key;
    enum conf_type type;
    size_t offset; /* into struct conf */
    long long min, max;
    int required;
};

#define P(k, t, field, mn, mx, req)                                                                \
    {                                                                                              \
        k, t, offsetof(conf, field), mn, mx, req                                                   \
    }
static const struct conf_param params[] = {
    P("pkcs11_module", T_PATH, pkcs11_module, 0, 0, 1),
    P("token", T_STRING, token, 0, 0, 1),
    P("pin_file", T_PATH, pin_file, 0, 0, 1),
    P("state_dir", T_PATH, state_dir, 0, 0, 1),
    P("canonicalization", T_CANON, hdr_canon, 0, 0, 0),
    P("sign_headers", T_HEADERS, sign_headers, 0, 0, 0),
    P("oversign_headers", T_HEADERS, oversign_headers, 0, 0, 0),
    P("algorithms", T_ALGS, algorithms, 0, 0, 0),
    P("rsa_bits", T_UINT, rsa_bits, 1024, 8192, 0),
    P("signature_ttl", T_DURATION, signature_ttl, 0, 366LL * 86400, 0),
    P("session_pool", T_UINT, session_pool, 1, 256, 0),
    P("agent_socket", T_PATH, agent_socket, 0, 0, 0),
    P("agent_allow", T_STRING, agent_allow, 0, 0, 0),
    P("http_listen", T_STRING, http_listen, 0, 0, 0),
    P("workers", T_UINT, workers, 0, 256, 0),
    P("batch_limit", T_UINT, batch_limit, 1, 1024, 0),
    P("queue_limit", T_UINT, queue_limit, 1, 1000000, 0),
    P("user", T_STRING, user, 0, 0, 0),
    P("signing_table", T_STRING, signing_table, 0, 0, 0),
    P("fallback_domain", T_STRING, fallback_domain, 0, 0, 0),
    P("milter_socket", T_STRING, milter_socket, 0, 0, 0),
    P("on_failure", T_FAILURE, on_failure_accept, 0, 0, 0),
    P("lookup_cache_ms", T_UINT, lookup_cache_ms, 0, 60000, 0),
    P("log", T_LOG, log, 0, 0, 0),
    P("dns_server", T_STRING, dns_server, 0, 0, 0),
    P("delegation_zone", T_STRING, delegation_zone, 0, 0, 0),
    P("retire_after", T_DURATION, retire_after, 0, 366LL * 86400, 0),
    P("rotate_after", T_DURATION, rotate_after, 0, 10LL * 366 * 86400, 0),
    P("publish_wait", T_DURATION, publish_wait, 0, 366LL * 86400, 0),
    P("selector_naming", T_NAMING, selector_naming, 0, 0, 0),
    P("dns_update_server", T_STRING, dns_update_server, 0, 0, 0),
    P("tsig_key_file", T_PATH, tsig_key_file, 0, 0, 0),
    P("api_token_file", T_PATH, api_token_file, 0, 0, 0),
};
#undef P
#define NPARAMS (sizeof(params) / sizeof(params[0]))

static int set_defaults(conf *c)
{
    c->hdr_canon = DKIM_CANON_RELAXED;
    c->body_canon = DKIM_CANON_RELAXED;
    c->sign_headers = strdup(DKIM_DEFAULT_SIGN_HEADERS);
    c->oversign_headers = strdup(DKIM_DEFAULT_OVERSIGN_HEADERS);
    c->algorithms = CONF_ALG_RSA | CONF_ALG_ED25519;
    c->rsa_bits = 2048;
    c->signature_ttl = 0;
    c->session_pool = 4;
    c->workers = 0;
    c->batch_limit = 32;
    c->queue_limit = 4096;
    c->lookup_cache_ms = 500;
    c->retire_after = 7LL * 86400;
    c->publish_wait = 3600;
    c->rotate_after = 0;
    c->selector_naming = strdup("alternate");
    c->log = strdup("stderr");
    return c->sign_headers && c->oversign_headers && c->log && c->selector_naming ? DH_OK
                                                                                  : DH_ENOMEM;
}

void conf_free(conf *c)
{
    if (c == NULL)
        return;
    free(c->path);
    free(c->pkcs11_module);
    free(c->token);
    free(c->pin_file);
    free(c->state_dir);
    free(c->sign_headers);
    free(c->oversign_headers);
    free(c->agent_socket);
    free(c->agent_allow);
    free(c->http_listen);
    free(c->user);
    free(c->signing_table);
    free(c->fallback_domain);
    free(c->milter_socket);
    free(c->log);
    free(c->dns_server);
    free(c->delegation_zone);
    free(c->selector_naming);
    free(c->dns_update_server);
    free(c->tsig_key_file);
    free(c->api_token_file);
    free(c);
}

int conf_parse_algorithms(const char *s, unsigned *out, dh_err *e)
{
    if (strcmp(s, "both") == 0) {
        *out = CONF_ALG_RSA | CONF_ALG_ED25519;
        return DH_OK;
    }
    unsigned mask = 0;
    const char *p = s;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        char word[32];
        while (n > 0 && isspace((unsigned char)*p)) {
            p++;
            n--;
        }
        if (n == 0 || n >= sizeof(word))
            return dh_err_set(e, DH_EINVAL, "'%s' is not a list of algorithms (rsa, ed25519, both)",
                              s);
        memcpy(word, p, n);
        word[n] = '\0';
        while (n > 0 && isspace((unsigned char)word[n - 1]))
            word[--n] = '\0';
        enum dkim_alg a;
        if (dkim_alg_parse(word, &a, NULL) != DH_OK)
            return dh_err_set(e, DH_EINVAL, "unknown algorithm '%s' (rsa, ed25519, both)", word);
        mask |= 1u << a;
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
    if (mask == 0)
        return dh_err_set(e, DH_EINVAL, "no algorithm given (rsa, ed25519, both)");
    *out = mask;
    return DH_OK;
}

int conf_parse_duration(const char *s, long long *out, dh_err *e)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno != 0 || v < 0)
        return dh_err_set(e, DH_EINVAL, "'%s' is not a duration (e.g. 3600, 90m, 12h, 7d)", s);
    long long mult = 1;
    if (*end != '\0') {
        const char *units = "smhdw";
        const long long mults[] = {1, 60, 3600, 86400, 7 * 86400};
        const char *u = strchr(units, *end);
        if (u == NULL || end[1] != '\0')
            return dh_err_set(e, DH_EINVAL, "'%s': unknown unit (use s, m, h, d or w)", s);
        mult = mults[u - units];
    }
    if (v > LLONG_MAX / mult)
        return dh_err_set(e, DH_EINVAL, "'%s' is too long", s);
    *out = v * mult;
    return DH_OK;
}

static int parse_uint(const char *v, long long min, long long max, unsigned *out, dh_err *e)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0)
        return dh_err_set(e, DH_EINVAL, "'%s' is not a whole number", v);
    if (n < min || n > max)
        return dh_err_set(e, DH_EINVAL, "%lld is out of range (%lld to %lld)", n, min, max);
    *out = (unsigned)n;
    return DH_OK;
}

/* A header list is colon-separated field names (RFC 5322 ftext: printable
 * ASCII except colon); stored lower-cased without spaces. */
static int parse_headers(const char *v, char **out, dh_err *e)
{
    dh_buf b = {0};
    int rc = DH_OK;
    for (const char *p = v; *p != '\0' && rc == DH_OK; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == ' ' || ch == '\t')
            continue;
        if (ch < 33 || ch > 126)
            rc = dh_err_set(e, DH_EINVAL, "bad character in header name list");
        else
            rc = dh_buf_putc(&b, (uint8_t)tolower(ch));
    }
    if (rc == DH_OK && (b.len == 0 || b.data[0] == ':' || b.data[b.len - 1] == ':' ||
                        strstr((char *)b.data, "::") != NULL))
        rc = dh_err_set(e, DH_EINVAL, "'%s' is not a colon-separated list of header names", v);
    if (rc != DH_OK) {
        dh_buf_free(&b);
        return rc;
    }
    free(*out);
    *out = dh_buf_steal(&b);
    return *out ? DH_OK : DH_ENOMEM;
}

/* Relative paths are relative to the config file's directory. */
static int parse_path(const char *v, const char *cfgpath, char **out, dh_err *e)
{
    dh_buf b = {0};
    const char *slash = strrchr(cfgpath, '/');
    int rc = DH_OK;
    if (v[0] != '/' && slash != NULL)
        rc = dh_buf_append(&b, cfgpath, (size_t)(slash - cfgpath + 1));
    if (rc == DH_OK)
        rc = dh_buf_puts(&b, v);
    if (rc != DH_OK) {
        dh_buf_free(&b);
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    free(*out);
    *out = dh_buf_steal(&b);
    return DH_OK;
}

static int set_param(conf *c, const struct conf_param *p, const char *v, dh_err *e)
{
    void *field = (char *)c + p->offset;
    switch (p->type) {
    case T_PATH:
        return parse_path(v, c->path, (char **)field, e);
    case T_STRING: {
        char *s = strdup(v);
        if (s == NULL)
            return dh_err_set(e, DH_ENOMEM, "out of memory");
        free(*(char **)field);
        *(char **)field = s;
        return DH_OK;
    }
    case T_UINT:
        return parse_uint(v, p->min, p->max, (unsigned *)field, e);
    case T_CANON:
        return dkim_canon_parse(v, &c->hdr_canon, &c->body_canon, e);
    case T_ALGS:
        return conf_parse_algorithms(v, (unsigned *)field, e);
    case T_HEADERS:
        return parse_headers(v, (char **)field, e);
    case T_FAILURE:
        if (strcmp(v, "tempfail") != 0 && strcmp(v, "accept") != 0)
            return dh_err_set(e, DH_EINVAL, "'%s' is neither tempfail nor accept", v);
        *(int *)field = strcmp(v, "accept") == 0;
        return DH_OK;
    case T_NAMING:
        if (strcmp(v, "alternate") != 0 && strcmp(v, "date") != 0)
            return dh_err_set(e, DH_EINVAL, "'%s' is neither alternate nor date", v);
        return set_param(c, &(struct conf_param){p->key, T_STRING, p->offset, 0, 0, 0}, v, e);
    case T_LOG:
        if (strcmp(v, "stderr") != 0 && strcmp(v, "syslog") != 0)
            return dh_err_set(e, DH_EINVAL, "'%s' is neither stderr nor syslog", v);
        return set_param(c, &(struct conf_param){p->key, T_STRING, p->offset, 0, 0, 0}, v, e);
    case T_DURATION: {
        long long d;
        int rc = conf_parse_duration(v, &d, e);
        if (rc == DH_OK && (d < p->min || d > p->max))
            rc = dh_err_set(e, DH_EINVAL, "%s is out of range", v);
        if (rc == DH_OK)
            *(long long *)field = d;
        return rc;
    }
    }
    return dh_err_set(e, DH_EINVAL, "internal: unknown parameter type");
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static const struct conf_param *find_param(const char *key)
{
    for (size_t i = 0; i < NPARAMS; i++)
        if (strcmp(params[i].key, key) == 0)
            return &params[i];
    return NULL;
}

/* One line of the file; seen[] catches a key given twice. */
static int parse_line(conf *c, char *line, unsigned lineno, int *seen, dh_err *e)
{
    char *hash = strchr(line, '#');
    if (hash != NULL)
        *hash = '\0';
    char *s = trim(line);
    if (*s == '\0')
        return DH_OK;
    char *eq = strchr(s, '=');
    if (eq == NULL)
        return dh_err_set(e, DH_ECONFIG, "%s:%u: expected 'key = value', got '%s'", c->path, lineno,
                          s);
    *eq = '\0';
    char *key = trim(s), *val = trim(eq + 1);
    const struct conf_param *p = find_param(key);
    if (p == NULL)
        return dh_err_set(e, DH_ECONFIG, "%s:%u: %s: unknown key", c->path, lineno, key);
    if (seen[p - params]++)
        return dh_err_set(e, DH_ECONFIG, "%s:%u: %s: given twice", c->path, lineno, key);
    if (*val == '\0')
        return dh_err_set(e, DH_ECONFIG, "%s:%u: %s: empty value", c->path, lineno, key);
    int rc = set_param(c, p, val, e);
    if (rc != DH_OK) {
        dh_err_prefix(e, "%s:%u: %s", c->path, lineno, key);
        return dh_err_set_code(e, DH_ECONFIG);
    }
    return DH_OK;
}

static int parse_text(conf *c, char *text, size_t len, dh_err *e)
{
    int seen[NPARAMS] = {0};
    unsigned lineno = 0;
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        *stop = '\0';
        lineno++;
        if (memchr(p, '\0', (size_t)(stop - p)) != NULL)
            return dh_err_set(e, DH_ECONFIG, "%s:%u: NUL byte in line", c->path, lineno);
        int rc = parse_line(c, p, lineno, seen, e);
        if (rc != DH_OK)
            return rc;
        p = stop + 1;
    }
    for (size_t i = 0; i < NPARAMS; i++)
        if (params[i].required && !seen[i])
            return dh_err_set(e, DH_ECONFIG, "%s: %s: required key missing", c->path,
                              params[i].key);
    return DH_OK;
}

int conf_load(const char *path, conf **out, dh_err *e)
{
    *out = NULL;
    if (path == NULL)
        path = getenv(CONF_ENV);
    if (path == NULL || *path == '\0')
        path = CONF_DEFAULT_PATH;
    conf *c = calloc(1, sizeof(*c));
    dh_buf text = {0};
    int rc = DH_ENOMEM;
    if (c == NULL || (c->path = strdup(path)) == NULL || set_defaults(c) != DH_OK) {
        dh_err_set(e, rc, "out of memory");
        goto out;
    }
    rc = dh_file_read(path, 1 << 20, &text, e);
    if (rc != DH_OK) {
        dh_err_prefix(e, "configuration");
        rc = dh_err_set_code(e, DH_ECONFIG);
        goto out;
    }
    rc = parse_text(c, (char *)text.data, text.len, e);
out:
    dh_buf_free(&text);
    if (rc != DH_OK) {
        conf_free(c);
        return rc;
    }
    *out = c;
    return DH_OK;
}
