/*
 * test_metrics.c - the /metrics registry (daemon/metrics.h): exact
 * Prometheus 0.0.4 text, registration rules, misuse counted instead of
 * crashing, and updates from many threads.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "daemon/metrics.h"
#include "tests/lib/check.h"

#define ERRORS "dkimhsm_metrics_errors_total"
#define ERRORS_TEXT                                                                                \
    "# HELP dkimhsm_metrics_errors_total Metric updates dropped: unknown name, wrong type or "     \
    "malformed labels.\n"                                                                          \
    "# TYPE dkimhsm_metrics_errors_total counter\n"                                                \
    "dkimhsm_metrics_errors_total 0\n"

/* The whole exposition must be exactly want. */
static void check_render(mx *m, const char *want)
{
    dh_buf out = {0};
    CHECK_OK(mx_render(m, &out));
    CHECK_MEM(out.data != NULL ? (const char *)out.data : "", out.len, want, strlen(want));
    dh_buf_free(&out);
}

static mx *new_mx(void)
{
    mx *m = mx_new();
    CHECK(m != NULL);
    return m;
}

static void test_empty(void)
{
    mx *m = new_mx();
    if (m == NULL)
        return;
    check_render(m, ERRORS_TEXT);
    CHECK(mx_value(m, ERRORS, NULL) == 0);
    mx_free(m);
    mx_free(NULL);
}

static void test_counters(void)
{
    mx *m = new_mx();
    if (m == NULL)
        return;
    CHECK_OK(mx_counter(m, "dkimhsm_signatures_total", "Signatures made."));
    CHECK_OK(mx_counter(m, "dkimhsm_requests_total", "Requests answered."));
    /* Registered, never used: HELP and TYPE only. */
    CHECK_OK(mx_counter(m, "dkimhsm_unused_total", "Never incremented."));
    mx_inc(m, "dkimhsm_signatures_total", NULL, 1);
    mx_inc(m, "dkimhsm_signatures_total", "", 2);
    mx_inc(m, "dkimhsm_requests_total", "result=\"ok\"", 5);
    mx_inc(m, "dkimhsm_requests_total", "result=\"tempfail\",reason=\"queue_full\"", 1);
    mx_inc(m, "dkimhsm_requests_total", "result=\"ok\"", 0.5);
    check_render(m,
                 ERRORS_TEXT "# HELP dkimhsm_signatures_total Signatures made.\n"
                             "# TYPE dkimhsm_signatures_total counter\n"
                             "dkimhsm_signatures_total 3\n"
                             "# HELP dkimhsm_requests_total Requests answered.\n"
                             "# TYPE dkimhsm_requests_total counter\n"
                             "dkimhsm_requests_total{result=\"ok\"} 5.5\n"
                             "dkimhsm_requests_total{result=\"tempfail\",reason=\"queue_full\"} 1\n"
                             "# HELP dkimhsm_unused_total Never incremented.\n"
                             "# TYPE dkimhsm_unused_total counter\n");
    CHECK(mx_value(m, "dkimhsm_signatures_total", NULL) == 3);
    CHECK(mx_value(m, "dkimhsm_requests_total", "result=\"ok\"") == 5.5);
    CHECK(mx_value(m, "dkimhsm_requests_total", "result=\"nope\"") == 0);
    CHECK(mx_value(m, "dkimhsm_no_such", NULL) == 0);
    CHECK(mx_value(m, ERRORS, NULL) == 0);
    mx_free(m);
}

static void test_gauges(void)
{
    mx *m = new_mx();
    if (m == NULL)
        return;
    CHECK_OK(mx_gauge(m, "dkimhsm_queue_depth", "Digests waiting for a worker."));
    CHECK_OK(mx_gauge(m, "dkimhsm_keys", "Keys by state."));
    mx_set(m, "dkimhsm_queue_depth", NULL, 17);
    mx_set(m, "dkimhsm_queue_depth", NULL, 4);
    mx_set(m, "dkimhsm_keys", "state=\"active\"", 3);
    mx_inc(m, "dkimhsm_keys", "state=\"active\"", -1); /* gauges go down too */
    mx_set(m, "dkimhsm_keys", "state=\"ratio\"", 0.25);
    mx_set(m, "dkimhsm_keys", "state=\"third\"", 1.0 / 3);
    mx_set(m, "dkimhsm_keys", "state=\"neg\"", -2e-7);
    check_render(m, ERRORS_TEXT "# HELP dkimhsm_queue_depth Digests waiting for a worker.\n"
                                "# TYPE dkimhsm_queue_depth gauge\n"
                                "dkimhsm_queue_depth 4\n"
                                "# HELP dkimhsm_keys Keys by state.\n"
                                "# TYPE dkimhsm_keys gauge\n"
                                "dkimhsm_keys{state=\"active\"} 2\n"
                                "dkimhsm_keys{state=\"ratio\"} 0.25\n"
                                "dkimhsm_keys{state=\"third\"} 0.33333333333333331\n"
                                "dkimhsm_keys{state=\"neg\"} -2e-07\n");
    mx_free(m);
}

static void test_histogram(void)
{
    mx *m = new_mx();
    if (m == NULL)
        return;
    const double b[] = {0.5, 1, 2.5};
    CHECK_OK(mx_histogram(m, "dkimhsm_token_ms", "Time in the token.", b, 3));
    CHECK_OK(mx_histogram(m, "dkimhsm_batch", "Batch sizes.", NULL, 0));
    mx_observe(m, "dkimhsm_token_ms", NULL, 0.25);
    mx_observe(m, "dkimhsm_token_ms", NULL, 0.5); /* le is inclusive */
    mx_observe(m, "dkimhsm_token_ms", NULL, 2);
    mx_observe(m, "dkimhsm_token_ms", NULL, 10);
    mx_observe(m, "dkimhsm_token_ms", "alg=\"ed25519\"", 0.75);
    mx_observe(m, "dkimhsm_batch", NULL, 3);
    check_render(m, ERRORS_TEXT "# HELP dkimhsm_token_ms Time in the token.\n"
                                "# TYPE dkimhsm_token_ms histogram\n"
                                "dkimhsm_token_ms_bucket{le=\"0.5\"} 2\n"
                                "dkimhsm_token_ms_bucket{le=\"1\"} 2\n"
                                "dkimhsm_token_ms_bucket{le=\"2.5\"} 3\n"
                                "dkimhsm_token_ms_bucket{le=\"+Inf\"} 4\n"
                                "dkimhsm_token_ms_sum 12.75\n"
                                "dkimhsm_token_ms_count 4\n"
                                "dkimhsm_token_ms_bucket{alg=\"ed25519\",le=\"0.5\"} 0\n"
                                "dkimhsm_token_ms_bucket{alg=\"ed25519\",le=\"1\"} 1\n"
                                "dkimhsm_token_ms_bucket{alg=\"ed25519\",le=\"2.5\"} 1\n"
                                "dkimhsm_token_ms_bucket{alg=\"ed25519\",le=\"+Inf\"} 1\n"
                                "dkimhsm_token_ms_sum{alg=\"ed25519\"} 0.75\n"
                                "dkimhsm_token_ms_count{alg=\"ed25519\"} 1\n"
                                "# HELP dkimhsm_batch Batch sizes.\n"
                                "# TYPE dkimhsm_batch histogram\n"
                                "dkimhsm_batch_bucket{le=\"+Inf\"} 1\n"
                                "dkimhsm_batch_sum 3\n"
                                "dkimhsm_batch_count 1\n");
    CHECK(mx_value(m, "dkimhsm_token_ms", NULL) == 4); /* a histogram's _count */
    mx_free(m);
}

static void test_registration(void)
{
    mx *m = new_mx();
    if (m == NULL)
        return;
    CHECK_OK(mx_counter(m, "dkimhsm_x_total", "x"));
    CHECK_EQ_INT(mx_counter(m, "dkimhsm_x_total", "again"), DH_EEXIST);
    CHECK_EQ_INT(mx_gauge(m, "dkimhsm_x_total", "as a gauge"), DH_EEXIST);
    CHECK_EQ_INT(mx_counter(m, ERRORS, "ours"), DH_EEXIST);
    const double b[] = {1, 2};
    CHECK_EQ_INT(mx_histogram(m, "dkimhsm_x_total", "h", b, 2), DH_EEXIST);
    /* Names: [a-zA-Z_:][a-zA-Z0-9_:]* */
    CHECK_OK(mx_gauge(m, "_a:b_9", "odd but valid"));
    CHECK_EQ_INT(mx_counter(m, "9lives", "h"), DH_EINVAL);
    CHECK_EQ_INT(mx_counter(m, "", "h"), DH_EINVAL);
    CHECK_EQ_INT(mx_counter(m, "has-dash", "h"), DH_EINVAL);
    CHECK_EQ_INT(mx_counter(m, "has space", "h"), DH_EINVAL);
    CHECK_EQ_INT(mx_counter(m, "two_lines", "a\nb"), DH_EINVAL);
    /* Bounds: ascending, finite, at most 32. */
    const double down[] = {2, 1}, same[] = {1, 1}, inf[] = {1, INFINITY};
    CHECK_EQ_INT(mx_histogram(m, "h_down", "h", down, 2), DH_EINVAL);
    CHECK_EQ_INT(mx_histogram(m, "h_same", "h", same, 2), DH_EINVAL);
    CHECK_EQ_INT(mx_histogram(m, "h_inf", "h", inf, 2), DH_EINVAL);
    double many[33];
    for (int i = 0; i < 33; i++)
        many[i] = i;
    CHECK_EQ_INT(mx_histogram(m, "h_many", "h", many, 33), DH_EINVAL);
    CHECK_OK(mx_histogram(m, "h_32", "h", many, 32));
    mx_free(m);
}

/* Misuse is dropped and counted, never fatal. */
static void test_errors(void)
{
    mx *m = new_mx();
    if (m == NULL)
        return;
    CHECK_OK(mx_counter(m, "c_total", "c"));
    CHECK_OK(mx_gauge(m, "g", "g"));
    const double b[] = {1};
    CHECK_OK(mx_histogram(m, "h", "h", b, 1));
    mx_inc(m, "no_such_total", NULL, 1);       /* unknown name */
    mx_set(m, "no_such", "a=\"b\"", 1);        /* unknown name */
    mx_observe(m, "no_such", NULL, 1);         /* unknown name */
    mx_inc(m, NULL, NULL, 1);                  /* no name */
    mx_set(m, "c_total", NULL, 5);             /* set on a counter */
    mx_observe(m, "g", NULL, 1);               /* observe on a gauge */
    mx_inc(m, "h", NULL, 1);                   /* inc on a histogram */
    mx_inc(m, "c_total", NULL, -1);            /* counters only go up */
    mx_inc(m, "c_total", "a=b", 1);            /* value not quoted */
    mx_inc(m, "c_total", "a=\"x\",", 1);       /* trailing comma */
    mx_inc(m, "c_total", "a=\"x\"b=\"y\"", 1); /* no comma */
    mx_inc(m, "c_total", "1a=\"x\"", 1);       /* label name */
    mx_inc(m, "c_total", "a=\"x\ny\"", 1);     /* newline in value */
    mx_inc(m, "c_total", "a=\"x\\\"y\"", 1);   /* backslash in value */
    CHECK(mx_value(m, ERRORS, NULL) == 14);
    CHECK(mx_value(m, "c_total", NULL) == 0);
    check_render(m, "# HELP dkimhsm_metrics_errors_total Metric updates dropped: unknown name, "
                    "wrong type or malformed labels.\n"
                    "# TYPE dkimhsm_metrics_errors_total counter\n"
                    "dkimhsm_metrics_errors_total 14\n"
                    "# HELP c_total c\n# TYPE c_total counter\n"
                    "# HELP g g\n# TYPE g gauge\n"
                    "# HELP h h\n# TYPE h histogram\n");
    mx_free(m);
}

/* A bug feeding open-ended label values stops at 1000 series per family. */
static void test_series_cap(void)
{
    mx *m = new_mx();
    if (m == NULL)
        return;
    CHECK_OK(mx_counter(m, "c_total", "c"));
    char labels[32];
    for (int i = 0; i < 1005; i++) {
        snprintf(labels, sizeof labels, "n=\"%d\"", i);
        mx_inc(m, "c_total", labels, 1);
    }
    CHECK(mx_value(m, "c_total", "n=\"999\"") == 1);
    CHECK(mx_value(m, "c_total", "n=\"1000\"") == 0);
    CHECK(mx_value(m, ERRORS, NULL) == 5);
    mx_inc(m, "c_total", "n=\"3\"", 1); /* existing series still count */
    CHECK(mx_value(m, "c_total", "n=\"3\"") == 2);
    mx_free(m);
}

enum { THREADS = 8, PER_THREAD = 20000 };

static void *hammer(void *arg)
{
    mx *m = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        mx_inc(m, "c_total", NULL, 1);
        mx_inc(m, "c_total", (i & 1) ? "k=\"odd\"" : "k=\"even\"", 1);
        mx_observe(m, "h", NULL, (double)(i % 4));
        mx_inc(m, "g", NULL, 1);
    }
    return NULL;
}

static void test_threads(void)
{
    mx *m = new_mx();
    if (m == NULL)
        return;
    const double b[] = {0, 1, 2};
    CHECK_OK(mx_counter(m, "c_total", "c"));
    CHECK_OK(mx_gauge(m, "g", "g"));
    CHECK_OK(mx_histogram(m, "h", "h", b, 3));
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ_INT(pthread_create(&t[i], NULL, hammer, m), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK(mx_value(m, "c_total", NULL) == THREADS * PER_THREAD);
    CHECK(mx_value(m, "c_total", "k=\"odd\"") == THREADS * PER_THREAD / 2);
    CHECK(mx_value(m, "c_total", "k=\"even\"") == THREADS * PER_THREAD / 2);
    CHECK(mx_value(m, "g", NULL) == THREADS * PER_THREAD);
    CHECK(mx_value(m, "h", NULL) == THREADS * PER_THREAD);
    CHECK(mx_value(m, ERRORS, NULL) == 0);
    /* Each of 0, 1, 2, 3 a quarter of the time: buckets 1/4, 2/4, 3/4, all. */
    char want[512];
    const int n = THREADS * PER_THREAD;
    snprintf(want, sizeof want,
             "h_bucket{le=\"0\"} %d\nh_bucket{le=\"1\"} %d\nh_bucket{le=\"2\"} %d\n"
             "h_bucket{le=\"+Inf\"} %d\nh_sum %d\nh_count %d\n",
             n / 4, n / 2, 3 * n / 4, n, n / 4 * 6, n);
    dh_buf out = {0};
    CHECK_OK(mx_render(m, &out));
    CHECK(out.data != NULL && strstr((const char *)out.data, want) != NULL);
    dh_buf_free(&out);
    mx_free(m);
}

/* mx_render appends to what the buffer holds (an HTTP header, say). */
static void test_render_appends(void)
{
    mx *m = new_mx();
    if (m == NULL)
        return;
    dh_buf out = {0};
    CHECK_OK(dh_buf_puts(&out, "HEAD\n"));
    CHECK_OK(mx_render(m, &out));
    CHECK_MEM(out.data, out.len, "HEAD\n" ERRORS_TEXT, strlen("HEAD\n" ERRORS_TEXT));
    dh_buf_free(&out);
    mx_free(m);
}

int main(int argc, char **argv)
{
    static const struct check_case cases[] = {
        {"empty", test_empty},
        {"counters", test_counters},
        {"gauges", test_gauges},
        {"histogram", test_histogram},
        {"registration", test_registration},
        {"errors", test_errors},
        {"series_cap", test_series_cap},
        {"threads", test_threads},
        {"render_appends", test_render_appends},
        {NULL, NULL},
    };
    return check_run(argc, argv, cases);
}
