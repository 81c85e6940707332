/*
 * metrics.h - counters, gauges and histograms for /metrics, rendered in the
 * Prometheus text exposition format (version 0.0.4).
 *
 * Families are registered once at start-up; series within a family are made
 * on first use from a label string such as `reason="queue_full"` (the caller
 * passes well-formed label text; values come from our own fixed vocabulary or
 * CKR_ names, never from mail). Updates are thread-safe.
 */
#ifndef DAEMON_METRICS_H
#define DAEMON_METRICS_H

#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"

typedef struct mx mx;

/* Returns NULL on ENOMEM. */
mx *mx_new(void);
void mx_free(mx *m);

/* Registration. name is a Prometheus metric name (e.g. "dkimhsm_signatures_total"),
 * help one line of text. bounds: ascending upper bounds of histogram buckets
 * (+Inf is implied), at most 32. DH_EEXIST when the name is taken. */
int mx_counter(mx *m, const char *name, const char *help) DH_WUR;
int mx_gauge(mx *m, const char *name, const char *help) DH_WUR;
int mx_histogram(mx *m, const char *name, const char *help, const double *bounds,
                 size_t nbounds) DH_WUR;

/* Updates; labels may be NULL or "" for the unlabelled series. An unknown
 * name is a programming error: it is ignored (and counted in
 * dkimhsm_metrics_errors_total) rather than crashing a signing daemon. So is
 * an update of the wrong type (mx_inc: counter or gauge; mx_set: gauge;
 * mx_observe: histogram), a negative counter step, label text that is not
 * `name="value",...` with no `"`, `\` or newline in a value, or a family's
 * 1001st series. */
void mx_inc(mx *m, const char *name, const char *labels, double by);
void mx_set(mx *m, const char *name, const char *labels, double value);
void mx_observe(mx *m, const char *name, const char *labels, double value);

/* Appends the whole exposition (# HELP, # TYPE, every series; histograms
 * with _bucket{le=...}, _sum, _count) to out. */
int mx_render(mx *m, dh_buf *out) DH_WUR;

/* Value of a counter or gauge series, _count of a histogram series (0 when
 * absent); for tests. */
double mx_value(mx *m, const char *name, const char *labels);

#endif
