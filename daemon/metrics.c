/*
 * metrics.c - counters, gauges and histograms in the Prometheus text format
 * 0.0.4 (metrics.h).
 *
 * A handful of families with a few series each: lists searched linearly under
 * one mutex. An update costs a few string compares; next to a token signature
 * (0.2 to 0.6 ms) that, and the lock, are noise.
 *
 * A misuse (unknown name, wrong type, malformed labels, a negative counter
 * step, too many series) never stops the caller: the update is dropped and
 * dkimhsm_metrics_errors_total goes up, so the mistake shows on the dashboard
 * instead of crashing a signing daemon or corrupting the exposition.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/metrics.h"

#define MX_MAX_BOUNDS 32
/* Labels come from a fixed vocabulary; thousands of series in one family
 * would mean a bug feeding it open-ended values. */
#define MX_MAX_SERIES 1000
#define MX_ERRORS "dkimhsm_metrics_errors_total"

enum mx_type { MX_COUNTER, MX_GAUGE, MX_HISTOGRAM };

typedef struct mx_series {
    char *labels; /* "" for the unlabelled series */
    double value; /* counter, gauge; histogram: _sum */
    uint64_t count;
    uint64_t *buckets; /* histogram: nbounds + 1 counts, not cumulative; last is +Inf */
    struct mx_series *next;
} mx_series;

typedef struct mx_family {
    char *name, *help;
    enum mx_type type;
    double bounds[MX_MAX_BOUNDS];
    size_t nbounds;
    mx_series *series, *series_tail; /* in order of creation */
    size_t nseries;
    struct mx_family *next;
} mx_family;

struct mx {
    pthread_mutex_t mu;
    mx_family *families, *tail; /* in order of registration */
    mx_series *errors;          /* the unlabelled series of MX_ERRORS */
};

/* ---- names and labels ---- */

/* [a-zA-Z_:][a-zA-Z0-9_:]* (Prometheus data model, metric names). */
static int valid_name(const char *s)
{
    if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == ':'))
            return 0;
    }
    return 1;
}

/* One `name="value"`: a label name [a-zA-Z_][a-zA-Z0-9_]*, a value with no
 * character the text format would need escaped. Returns the end, or NULL. */
static const char *label_pair(const char *s)
{
    const char *p = s;
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_'))
        return NULL;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '_')
        p++;
    if (p[0] != '=' || p[1] != '"')
        return NULL;
    for (p += 2; *p != '"'; p++)
        if (*p == '\0' || *p == '\\' || *p == '\n')
            return NULL;
    return p + 1;
}

/* `a="x",b="y"`: checked once, when a series is made, so a mistake cannot
 * produce an exposition Prometheus refuses to scrape. */
static int valid_labels(const char *s)
{
    if (*s == '\0')
        return 1;
    for (;;) {
        s = label_pair(s);
        if (s == NULL)
            return 0;
        if (*s == '\0')
            return 1;
        if (*s++ != ',')
            return 0;
    }
}

/* ---- registration ---- */

static mx_family *find_family(const mx *m, const char *name)
{
    for (mx_family *f = m->families; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static void family_free(mx_family *f)
{
    mx_series *s = f->series;
    while (s != NULL) {
        mx_series *next = s->next;
        free(s->labels);
        free(s->buckets);
        free(s);
        s = next;
    }
    free(f->name);
    free(f->help);
    free(f);
}

static int check_bounds(const double *bounds, size_t n)
{
    if (n > MX_MAX_BOUNDS || (n > 0 && bounds == NULL))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return 0;
    return 1;
}

static int add_family(mx *m, const char *name, const char *help, enum mx_type type,
                      const double *bounds, size_t nbounds)
{
    /* help is one line of our own text: no newline or backslash to escape. */
    if (!valid_name(name) || help == NULL || strpbrk(help, "\n\\") != NULL ||
        !check_bounds(bounds, nbounds))
        return DH_EINVAL;
    mx_family *f = calloc(1, sizeof *f);
    if (f == NULL || (f->name = strdup(name)) == NULL || (f->help = strdup(help)) == NULL) {
        if (f != NULL)
            family_free(f);
        return DH_ENOMEM;
    }
    f->type = type;
    f->nbounds = nbounds;
    if (nbounds > 0)
        memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
    pthread_mutex_lock(&m->mu);
    int rc = DH_OK;
    if (find_family(m, name) != NULL) {
        rc = DH_EEXIST;
    } else {
        if (m->tail != NULL)
            m->tail->next = f;
        else
            m->families = f;
        m->tail = f;
    }
    pthread_mutex_unlock(&m->mu);
    if (rc != DH_OK)
        family_free(f);
    return rc;
}

int mx_counter(mx *m, const char *name, const char *help)
{
    return add_family(m, name, help, MX_COUNTER, NULL, 0);
}

int mx_gauge(mx *m, const char *name, const char *help)
{
    return add_family(m, name, help, MX_GAUGE, NULL, 0);
}

int mx_histogram(mx *m, const char *name, const char *help, const double *bounds, size_t nbounds)
{
    return add_family(m, name, help, MX_HISTOGRAM, bounds, nbounds);
}

/* ---- series ---- */

/* Finds or makes the series; NULL on bad labels, too many series or ENOMEM.
 * Called with m->mu held. */
static mx_series *get_series(mx_family *f, const char *labels)
{
    if (labels == NULL)
        labels = "";
    for (mx_series *s = f->series; s != NULL; s = s->next)
        if (strcmp(s->labels, labels) == 0)
            return s;
    if (f->nseries >= MX_MAX_SERIES || !valid_labels(labels))
        return NULL;
    mx_series *s = calloc(1, sizeof *s);
    if (s == NULL || (s->labels = strdup(labels)) == NULL ||
        (f->type == MX_HISTOGRAM &&
         (s->buckets = calloc(f->nbounds + 1, sizeof *s->buckets)) == NULL)) {
        if (s != NULL)
            free(s->labels);
        free(s);
        return NULL;
    }
    if (f->series_tail != NULL)
        f->series_tail->next = s;
    else
        f->series = s;
    f->series_tail = s;
    f->nseries++;
    return s;
}

mx *mx_new(void)
{
    mx *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return NULL;
    }
    if (mx_counter(m, MX_ERRORS,
                   "Metric updates dropped: unknown name, wrong type or malformed labels.") !=
        DH_OK) {
        mx_free(m);
        return NULL;
    }
    /* Made now so it reads 0 from the first scrape, not only after a bug. */
    m->errors = get_series(m->families, "");
    if (m->errors == NULL) {
        mx_free(m);
        return NULL;
    }
    return m;
}

void mx_free(mx *m)
{
    if (m == NULL)
        return;
    mx_family *f = m->families;
    while (f != NULL) {
        mx_family *next = f->next;
        family_free(f);
        f = next;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* The series to update (and its family in *fp), or NULL after counting the
 * misuse. gauge_too: a gauge is as good as want. A counter step that is
 * negative or NaN is a misuse too: counters only go up. m->mu held. */
static mx_series *target(mx *m, const char *name, const char *labels, enum mx_type want,
                         int gauge_too, double step, mx_family **fp)
{
    mx_family *f = name != NULL ? find_family(m, name) : NULL;
    mx_series *s = NULL;
    int type_ok = f != NULL && (f->type == want || (gauge_too && f->type == MX_GAUGE));
    if (type_ok && !(f->type == MX_COUNTER && !(step >= 0)))
        s = get_series(f, labels);
    if (s == NULL)
        m->errors->value += 1;
    *fp = f;
    return s;
}

void mx_inc(mx *m, const char *name, const char *labels, double by)
{
    mx_family *f;
    pthread_mutex_lock(&m->mu);
    mx_series *s = target(m, name, labels, MX_COUNTER, 1, by, &f);
    if (s != NULL)
        s->value += by;
    pthread_mutex_unlock(&m->mu);
}

void mx_set(mx *m, const char *name, const char *labels, double value)
{
    mx_family *f;
    pthread_mutex_lock(&m->mu);
    mx_series *s = target(m, name, labels, MX_GAUGE, 0, 0, &f);
    if (s != NULL)
        s->value = value;
    pthread_mutex_unlock(&m->mu);
}

void mx_observe(mx *m, const char *name, const char *labels, double value)
{
    mx_family *f;
    pthread_mutex_lock(&m->mu);
    mx_series *s = target(m, name, labels, MX_HISTOGRAM, 0, 0, &f);
    if (s != NULL) {
        size_t i = 0;
        while (i < f->nbounds && !(value <= f->bounds[i])) /* le: value <= bound; NaN: +Inf */
            i++;
        s->buckets[i]++;
        s->count++;
        s->value += value;
    }
    pthread_mutex_unlock(&m->mu);
}

/* Histograms answer with their _count. */
double mx_value(mx *m, const char *name, const char *labels)
{
    if (labels == NULL)
        labels = "";
    double v = 0;
    pthread_mutex_lock(&m->mu);
    mx_family *f = name != NULL ? find_family(m, name) : NULL;
    for (mx_series *s = f != NULL ? f->series : NULL; s != NULL; s = s->next) {
        if (strcmp(s->labels, labels) == 0) {
            v = f->type == MX_HISTOGRAM ? (double)s->count : s->value;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return v;
}

/* ---- exposition ---- */

/* Prometheus floats: "+Inf", "-Inf", "NaN"; integers without a fraction (a
 * counter reads 42, not 42.000000); anything else in the shortest form that
 * reads back as the same double. */
static void fmt_value(double v, char out[40])
{
    if (isnan(v))
        snprintf(out, 40, "NaN");
    else if (isinf(v))
        snprintf(out, 40, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9007199254740992.0) /* 2^53: exact as an integer */
        snprintf(out, 40, "%.0f", v);
    else {
        snprintf(out, 40, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, 40, "%.17g", v);
    }
}

static const char *type_name(enum mx_type t)
{
    return t == MX_COUNTER ? "counter" : t == MX_GAUGE ? "gauge" : "histogram";
}

/* name{labels} value, or name value without labels. */
static int put_sample(dh_buf *out, const char *name, const char *suffix, const char *labels,
                      double v)
{
    char num[40];
    fmt_value(v, num);
    if (*labels == '\0')
        return dh_buf_printf(out, "%s%s %s\n", name, suffix, num);
    return dh_buf_printf(out, "%s%s{%s} %s\n", name, suffix, labels, num);
}

static int put_histogram(dh_buf *out, const mx_family *f, const mx_series *s)
{
    uint64_t cum = 0;
    char le[40];
    const char *sep = *s->labels != '\0' ? "," : "";
    int rc = DH_OK;
    for (size_t i = 0; rc == DH_OK && i <= f->nbounds; i++) {
        cum += s->buckets[i];
        if (i < f->nbounds)
            fmt_value(f->bounds[i], le);
        else
            snprintf(le, sizeof le, "+Inf");
        rc = dh_buf_printf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, s->labels, sep, le,
                           (unsigned long long)cum);
    }
    if (rc == DH_OK)
        rc = put_sample(out, f->name, "_sum", s->labels, s->value);
    if (rc == DH_OK)
        rc = put_sample(out, f->name, "_count", s->labels, (double)s->count);
    return rc;
}

static int put_family(dh_buf *out, const mx_family *f)
{
    int rc = dh_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                           type_name(f->type));
    for (const mx_series *s = f->series; rc == DH_OK && s != NULL; s = s->next) {
        if (f->type == MX_HISTOGRAM)
            rc = put_histogram(out, f, s);
        else
            rc = put_sample(out, f->name, "", s->labels, s->value);
    }
    return rc;
}

int mx_render(mx *m, dh_buf *out)
{
    size_t start = out->len;
    int rc = DH_OK;
    pthread_mutex_lock(&m->mu);
    for (const mx_family *f = m->families; rc == DH_OK && f != NULL; f = f->next)
        rc = put_family(out, f);
    pthread_mutex_unlock(&m->mu);
    if (rc != DH_OK && out->data != NULL) {
        out->len = start; /* all or nothing: never serve half an exposition */
        out->data[start] = '\0';
    }
    return rc;
}
