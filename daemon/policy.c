#include "daemon/policy.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

struct allow_rule {
    uid_t uid;
    int any;        /* '*' */
    char **domains; /* lower case; ".x" covers subdomains of x */
    size_t ndomains;
};

struct table_entry {
    char *pattern; /* lower case; ".x" = any subdomain of x */
    char *target;
};

struct policy {
    struct allow_rule *rules;
    size_t nrules;
    struct table_entry *table;
    size_t ntable;
    char *fallback;
};

/* Splits s at sep into trimmed, lower-cased, non-empty pieces. */
static int split(const char *s, char sep, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    for (const char *p = s; *p;) {
        size_t len = strcspn(p, (char[]){sep, 0});
        const char *b = p, *e = p + len;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e > b) {
            char **grown = realloc(*out, (*n + 1) * sizeof(char *));
            char *piece = strndup(b, (size_t)(e - b));
            if (grown == NULL || piece == NULL) {
                free(piece);
                *out = grown ? grown : *out;
                return DH_ENOMEM;
            }
            for (char *c = piece; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            *out = grown;
            (*out)[(*n)++] = piece;
        }
        p += len + (p[len] == sep);
    }
    return DH_OK;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static int user_uid(const char *name, uid_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(name, &end, 10);
    if (*name != '\0' && *end == '\0' && errno == 0) {
        *out = (uid_t)v;
        return DH_OK;
    }
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
        return DH_ENOTFOUND;
    *out = pw.pw_uid;
    return DH_OK;
}

/* One "user:domains" rule of agent_allow. */
static int parse_rule(const char *text, struct allow_rule *r, dh_err *e)
{
    const char *colon = strchr(text, ':');
    if (colon == NULL || colon == text || colon[1] == '\0')
        return dh_err_set(e, DH_ECONFIG, "agent_allow: '%s' is not USER:DOMAINS", text);
    char *user = strndup(text, (size_t)(colon - text));
    if (user == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    int rc = user_uid(user, &r->uid);
    if (rc != DH_OK)
        rc = dh_err_set(e, DH_ECONFIG, "agent_allow: unknown user '%s'", user);
    free(user);
    if (rc == DH_OK && split(colon + 1, ',', &r->domains, &r->ndomains) != DH_OK)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc == DH_OK && r->ndomains == 1 && strcmp(r->domains[0], "*") == 0)
        r->any = 1;
    return rc;
}

static int parse_allow(policy *p, const char *allow, uid_t self_uid, dh_err *e)
{
    char **rules = NULL;
    size_t n = 0;
    if (allow == NULL) {
        /* Default: root and the daemon's own user. */
        p->rules = calloc(2, sizeof(*p->rules));
        if (p->rules == NULL)
            return dh_err_set(e, DH_ENOMEM, "out of memory");
        p->rules[0] = (struct allow_rule){.uid = 0, .any = 1};
        p->rules[1] = (struct allow_rule){.uid = self_uid, .any = 1};
        p->nrules = 2;
        return DH_OK;
    }
    if (split(allow, ';', &rules, &n) != DH_OK ||
        (p->rules = calloc(n, sizeof(*p->rules))) == NULL) {
        free_list(rules, n);
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    int rc = DH_OK;
    for (size_t i = 0; i < n && rc == DH_OK; i++, p->nrules++)
        rc = parse_rule(rules[i], &p->rules[i], e);
    free_list(rules, n);
    return rc;
}

static int parse_table(policy *p, const char *table, dh_err *e)
{
    char **entries = NULL;
    size_t n = 0;
    if (table == NULL)
        return DH_OK;
    if (split(table, ',', &entries, &n) != DH_OK ||
        (p->table = calloc(n, sizeof(*p->table))) == NULL) {
        free_list(entries, n);
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    int rc = DH_OK;
    for (size_t i = 0; i < n && rc == DH_OK; i++) {
        char *eq = strchr(entries[i], '=');
        if (eq == NULL || eq == entries[i] || eq[1] == '\0') {
            rc = dh_err_set(e, DH_ECONFIG, "signing_table: '%s' is not FROM_DOMAIN=SIGNING_DOMAIN",
                            entries[i]);
            break;
        }
        *eq = '\0';
        p->table[i].pattern = strdup(entries[i]);
        p->table[i].target = strdup(eq + 1);
        p->ntable++;
        if (p->table[i].pattern == NULL || p->table[i].target == NULL)
            rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    }
    free_list(entries, n);
    return rc;
}

int policy_new(const conf *cf, uid_t self_uid, policy **out, dh_err *e)
{
    *out = NULL;
    policy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    int rc = parse_allow(p, cf->agent_allow, self_uid, e);
    if (rc == DH_OK)
        rc = parse_table(p, cf->signing_table, e);
    if (rc == DH_OK && cf->fallback_domain && (p->fallback = strdup(cf->fallback_domain)) == NULL)
        rc = dh_err_set(e, DH_ENOMEM, "out of memory");
    if (rc != DH_OK) {
        policy_free(p);
        return rc;
    }
    *out = p;
    return DH_OK;
}

void policy_free(policy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nrules; i++)
        free_list(p->rules[i].domains, p->rules[i].ndomains);
    free(p->rules);
    for (size_t i = 0; i < p->ntable; i++) {
        free(p->table[i].pattern);
        free(p->table[i].target);
    }
    free(p->table);
    free(p->fallback);
    free(p);
}

/* "x" matches x; ".x" matches every subdomain of x. */
static int domain_matches(const char *pattern, const char *domain)
{
    if (pattern[0] != '.')
        return strcmp(pattern, domain) == 0;
    size_t pl = strlen(pattern), dl = strlen(domain);
    return dl > pl && strcmp(domain + dl - pl, pattern) == 0;
}

int policy_may_sign(const policy *p, uid_t uid, const char *domain)
{
    for (size_t i = 0; i < p->nrules; i++) {
        if (p->rules[i].uid != uid)
            continue;
        if (p->rules[i].any)
            return 1;
        for (size_t j = 0; j < p->rules[i].ndomains; j++)
            if (domain_matches(p->rules[i].domains[j], domain))
                return 1;
    }
    return 0;
}

size_t policy_resolve(const policy *p, const kset *keys, const char *from_domain,
                      const kset_key **out, size_t max, const char **signing_domain)
{
    size_t n = kset_usable(keys, from_domain, out, max);
    *signing_domain = from_domain;
    for (size_t i = 0; n == 0 && i < p->ntable; i++) {
        if (domain_matches(p->table[i].pattern, from_domain)) {
            *signing_domain = p->table[i].target;
            n = kset_usable(keys, p->table[i].target, out, max);
        }
    }
    if (n == 0 && p->fallback != NULL) {
        *signing_domain = p->fallback;
        n = kset_usable(keys, p->fallback, out, max);
    }
    return n;
}
