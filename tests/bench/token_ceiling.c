/*
 * token_ceiling.c - how fast can this token sign, and how much of that do our
 * layers keep?
 *
 * Three phases, same key, same thread count, each for --seconds:
 *   raw   C_SignInit + C_Sign straight through the module's function list,
 *         one session per thread: the token ceiling (FACTS.md);
 *   hsm   the same through hsm_sign_digest (session pool, retry rule);
 *   pool  the same through the worker pool: wp_submit / poll / wp_drain on
 *         this thread, as the daemon's event loop does, workers = threads.
 * It prints signatures per second and the ratios hsm/raw and pool/raw. With
 * --rounds R the three phases run R times interleaved and the medians are
 * reported, so a burst of load on the machine hits every phase alike.
 * --raw-only measures the ceiling alone (tests/bench/run_bench.sh).
 *
 *   token_ceiling [--module SO] [--token URI] [--pin-file F] [--type rsa|ed25519|both]
 *                 [--threads N[,N...]] [--seconds S] [--rounds R] [--batch B] [--label L]
 *                 [--raw-only]
 *
 * Module, token and PIN file default to DKIMHSM_TEST_MODULE, _TOKEN and
 * _PIN_FILE (tests/lib/with-token.sh). The key is the private key labelled L
 * (default bench-rsa / bench-ed25519); when there is none it is generated in
 * the token, so point this at a test token only. Exit status 0 only when
 * every phase signed.
 */
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/file.h"
#include "daemon/workers.h"
#include "hsm/hsm.h"

#define MAX_THREADS 64
#define MAX_ROUNDS 15

struct opts {
    const char *module, *token, *pin_file, *label, *type;
    unsigned threads[8], nthreads;
    unsigned rounds, batch;
    int raw_only; /* --raw-only: the ceiling alone, for run_bench.sh */
    double seconds;
};

/* One key type at one thread count. */
struct bench {
    const struct opts *o;
    unsigned threads;
    enum hsm_keytype type;
    CK_FUNCTION_LIST *f; /* raw phase: our own p11-kit instance of the module */
    CK_SLOT_ID slot;
    CK_OBJECT_HANDLE obj;
    hsm *h;
    hsm_key *k;
    uint8_t in[51]; /* what C_Sign gets: DigestInfo || digest (RSA) or digest */
    CK_ULONG inlen;
    uint8_t digest[32];
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "token_ceiling: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ---- raw PKCS#11 ---- */

static void raw_find_slot(struct bench *b)
{
    P11KitUri *uri = p11_kit_uri_new();
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    if (uri == NULL || p11_kit_uri_parse(b->o->token, P11_KIT_URI_FOR_TOKEN, uri) != P11_KIT_URI_OK)
        die("bad token URI %s", b->o->token);
    if (b->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        die("C_GetSlotList failed");
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (b->f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
            p11_kit_uri_match_token_info(uri, &ti) == 1) {
            b->slot = slots[i];
            p11_kit_uri_free(uri);
            return;
        }
    }
    die("no token matches %s", b->o->token);
}

static void raw_open(struct bench *b)
{
    b->f = p11_kit_module_load(b->o->module, 0);
    if (b->f == NULL)
        die("cannot load %s: %s", b->o->module, p11_kit_message());
    if (p11_kit_module_initialize(b->f) != CKR_OK)
        die("C_Initialize of %s failed", b->o->module);
    raw_find_slot(b);
}

static void raw_close(struct bench *b)
{
    if (b->f == NULL)
        return;
    if (p11_kit_module_finalize(b->f) != CKR_OK)
        fprintf(stderr, "token_ceiling: C_Finalize failed\n");
    p11_kit_module_release(b->f);
    b->f = NULL;
}

/* Login is per application: one on a session of ours covers all of them. */
static void raw_login(struct bench *b, CK_SESSION_HANDLE s)
{
    dh_buf pin = {0};
    dh_err e = {0};
    if (dh_file_read_pin(b->o->pin_file, &pin, &e) != DH_OK)
        die("%s", e.msg);
    CK_RV rv = b->f->C_Login(s, CKU_USER, pin.data, (CK_ULONG)pin.len);
    dh_buf_free_secret(&pin);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        die("C_Login: %s", hsm_ckr_name(rv));
}

/* The private key labelled label of our type: its handle and CKA_ID. */
static int raw_find_key(struct bench *b, CK_SESSION_HANDLE s, uint8_t *id, CK_ULONG *idlen)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = b->type == HSM_KEY_RSA ? CKK_RSA : CKK_EC_EDWARDS;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},
                        {CKA_KEY_TYPE, &kt, sizeof kt},
                        {CKA_LABEL, (void *)b->o->label, strlen(b->o->label)}};
    CK_ULONG n = 0;
    if (b->f->C_FindObjectsInit(s, t, 3) != CKR_OK)
        die("C_FindObjectsInit failed");
    CK_RV rv = b->f->C_FindObjects(s, &b->obj, 1, &n);
    if (b->f->C_FindObjectsFinal(s) != CKR_OK || rv != CKR_OK)
        die("C_FindObjects failed");
    if (n == 0)
        return 0;
    CK_ATTRIBUTE a = {CKA_ID, id, *idlen};
    if (b->f->C_GetAttributeValue(s, b->obj, &a, 1) != CKR_OK || a.ulValueLen == 0)
        die("key %s has no usable CKA_ID", b->o->label);
    *idlen = a.ulValueLen;
    return 1;
}

/* Finds the key, generating it through hsm/ when the token has none. */
static void find_or_make_key(struct bench *b)
{
    CK_SESSION_HANDLE s;
    uint8_t id[64];
    CK_ULONG idlen = sizeof id;
    dh_err e = {0};
    if (b->f->C_OpenSession(b->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
        die("C_OpenSession failed");
    raw_login(b, s);
    if (!raw_find_key(b, s, id, &idlen)) {
        uint8_t gid[HSM_ID_LEN];
        if (hsm_generate(b->h, b->type, 2048, b->o->label, gid, &e) != DH_OK)
            die("generating %s: %s", b->o->label, e.msg);
        idlen = sizeof id;
        if (!raw_find_key(b, s, id, &idlen))
            die("key %s not found after generating it", b->o->label);
    }
    if (b->f->C_CloseSession(s) != CKR_OK)
        die("C_CloseSession failed");
    if (hsm_key_open(b->h, id, idlen, &b->k, &e) != DH_OK)
        die("%s", e.msg);
}

/* ---- the threaded phases ---- */

struct worker {
    struct bench *b;
    pthread_barrier_t *start;
    unsigned long count;
    double secs;
    char err[600]; /* empty unless a signature failed */
};

static void *raw_thread(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->b;
    CK_FUNCTION_LIST *f = b->f;
    CK_MECHANISM mech = {b->type == HSM_KEY_RSA ? CKM_RSA_PKCS : CKM_EDDSA, NULL, 0};
    CK_SESSION_HANDLE s;
    uint8_t sig[1024];
    pthread_barrier_wait(w->start);
    CK_RV rv = f->C_OpenSession(b->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    double t0 = now_s(), end = t0 + b->o->seconds, t = t0;
    while (rv == CKR_OK && t < end) {
        CK_ULONG len = sizeof sig;
        rv = f->C_SignInit(s, &mech, b->obj);
        if (rv == CKR_OK)
            rv = f->C_Sign(s, b->in, b->inlen, sig, &len);
        w->count += rv == CKR_OK;
        t = now_s();
    }
    w->secs = t - t0;
    if (rv != CKR_OK)
        snprintf(w->err, sizeof w->err, "raw: %s", hsm_ckr_name(rv));
    else if (f->C_CloseSession(s) != CKR_OK)
        snprintf(w->err, sizeof w->err, "raw: C_CloseSession failed");
    return NULL;
}

static void *hsm_thread(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->b;
    dh_buf sig = {0};
    dh_err e = {0};
    int rc = DH_OK;
    pthread_barrier_wait(w->start);
    double t0 = now_s(), end = t0 + b->o->seconds, t = t0;
    while (rc == DH_OK && t < end) {
        sig.len = 0;
        rc = hsm_sign_digest(b->h, b->k, b->digest, &sig, &e);
        w->count += rc == DH_OK;
        t = now_s();
    }
    w->secs = t - t0;
    if (rc != DH_OK)
        snprintf(w->err, sizeof w->err, "hsm: %s", e.msg);
    dh_buf_free(&sig);
    return NULL;
}

/* Runs fn on b->threads threads started together; the sum of their rates. */
static double run_threads(struct bench *b, void *(*fn)(void *))
{
    struct worker w[MAX_THREADS];
    pthread_t t[MAX_THREADS];
    pthread_barrier_t start;
    if (pthread_barrier_init(&start, NULL, b->threads) != 0)
        die("pthread_barrier_init failed");
    for (unsigned i = 0; i < b->threads; i++) {
        w[i] = (struct worker){.b = b, .start = &start};
        if (pthread_create(&t[i], NULL, fn, &w[i]) != 0)
            die("pthread_create failed");
    }
    double rate = 0;
    for (unsigned i = 0; i < b->threads; i++) {
        pthread_join(t[i], NULL);
        if (w[i].err[0] != '\0')
            die("%s", w[i].err);
        rate += w[i].secs > 0 ? (double)w[i].count / w[i].secs : 0;
    }
    pthread_barrier_destroy(&start);
    return rate;
}

/* ---- the worker pool phase ---- */

struct pool_run {
    wp *p;
    double end, last; /* stop resubmitting at end; time of the last completion */
    unsigned long done, outstanding;
    int failed;
    char err[256];
};

/* Loop thread: count the job and, until the deadline, send it straight back. */
static void pool_done(wp_job *j, void *arg)
{
    struct pool_run *r = arg;
    r->outstanding--;
    if (j->status != DH_OK) {
        if (!r->failed++)
            snprintf(r->err, sizeof r->err, "pool: %s", j->reason);
        return;
    }
    r->done++;
    r->last = now_s();
    if (r->last < r->end && wp_submit(r->p, j, NULL) == DH_OK)
        r->outstanding++;
}

static double run_pool(struct bench *b)
{
    /* Enough jobs that every worker always finds a full batch waiting. */
    unsigned n = b->threads * b->o->batch * 2;
    wp_job *jobs = calloc(n, sizeof *jobs);
    struct pool_run r = {0};
    dh_err e = {0};
    if (jobs == NULL || wp_new(b->h, b->threads, b->o->batch, n, &r.p, &e) != DH_OK)
        die("worker pool: %s", e.msg);
    double t0 = now_s();
    r.end = t0 + b->o->seconds;
    for (unsigned i = 0; i < n; i++) {
        jobs[i].key = b->k;
        memcpy(jobs[i].digest, b->digest, 32);
        jobs[i].id = i;
        if (wp_submit(r.p, &jobs[i], NULL) != DH_OK)
            die("wp_submit refused a job");
        r.outstanding++;
    }
    while (r.outstanding > 0) {
        struct pollfd pfd = {.fd = wp_wake_fd(r.p), .events = POLLIN};
        if (poll(&pfd, 1, 1000) > 0)
            (void)wp_drain(r.p, pool_done, &r);
    }
    wp_free(r.p);
    for (unsigned i = 0; i < n; i++)
        dh_buf_free(&jobs[i].sig);
    free(jobs);
    if (r.failed)
        die("%s (%d jobs failed)", r.err, r.failed);
    return r.last > t0 ? (double)r.done / (r.last - t0) : 0;
}

/* ---- driver ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void set_input(struct bench *b)
{
    /* DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1), as hsm/sign.c. */
    static const uint8_t prefix[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                       0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
    for (int i = 0; i < 32; i++)
        b->digest[i] = (uint8_t)(i * 7 + 1);
    if (b->type == HSM_KEY_RSA) {
        memcpy(b->in, prefix, sizeof prefix);
        memcpy(b->in + sizeof prefix, b->digest, 32);
        b->inlen = sizeof prefix + 32;
    } else {
        memcpy(b->in, b->digest, 32);
        b->inlen = 32;
    }
}

/* Opens hsm/ (pool of `threads` sessions) and the raw module side by side:
 * p11-kit's managed mode gives each its own instance of the one module. */
static void bench_open(struct bench *b)
{
    hsm_config c = {b->o->module, b->o->token, b->o->pin_file, b->threads};
    dh_err e = {0};
    if (hsm_open(&c, &b->h, &e) != DH_OK)
        die("%s", e.msg);
    raw_open(b);
    find_or_make_key(b);
    set_input(b);
}

static int bench_run(const struct opts *o, enum hsm_keytype type, unsigned threads)
{
    char label[128];
    struct opts lo = *o;
    if (o->label == NULL) {
        snprintf(label, sizeof label, "bench-%s", type == HSM_KEY_RSA ? "rsa" : "ed25519");
        lo.label = label;
    }
    struct bench b = {.o = &lo, .threads = threads, .type = type};
    bench_open(&b);
    printf("token_ceiling: %s, %u thread%s, %.1f s per phase, %u round%s, batch %u\n",
           type == HSM_KEY_RSA ? "RSA-2048" : "Ed25519", threads, threads > 1 ? "s" : "",
           o->seconds, o->rounds, o->rounds > 1 ? "s" : "", o->batch);
    double raw[MAX_ROUNDS], viah[MAX_ROUNDS], pool[MAX_ROUNDS];
    for (unsigned i = 0; i < o->rounds; i++) {
        raw[i] = run_threads(&b, raw_thread);
        viah[i] = o->raw_only ? raw[i] : run_threads(&b, hsm_thread);
        pool[i] = o->raw_only ? raw[i] : run_pool(&b);
        if (o->raw_only)
            printf("  round %u: raw %.0f/s\n", i + 1, raw[i]);
        else
            printf("  round %u: raw %.0f/s, hsm %.0f/s, pool %.0f/s\n", i + 1, raw[i], viah[i],
                   pool[i]);
        fflush(stdout);
    }
    double r = median(raw, o->rounds), h = median(viah, o->rounds), p = median(pool, o->rounds);
    printf("raw   C_SignInit+C_Sign     %8.0f/s\n", r);
    if (!o->raw_only) {
        printf("hsm   hsm_sign_digest       %8.0f/s  hsm/raw %.2f\n", h, r > 0 ? h / r : 0);
        printf("pool  wp_submit/wp_drain    %8.0f/s  pool/raw %.2f\n", p, r > 0 ? p / r : 0);
    }
    fflush(stdout);
    hsm_key_free(b.k);
    raw_close(&b);
    hsm_close(b.h);
    return r > 0 && h > 0 && p > 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: token_ceiling [--module SO] [--token URI] [--pin-file F] "
                    "[--type rsa|ed25519|both] [--threads N[,N...]] [--seconds S] "
                    "[--rounds R] [--batch B] [--label L] [--raw-only]\n");
    exit(2);
}

static unsigned parse_uint(const char *s, unsigned lo, unsigned hi)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || (*end != '\0' && *end != ',') || v < lo || v > hi)
        usage();
    return (unsigned)v;
}

static void parse_threads(struct opts *o, const char *s)
{
    o->nthreads = 0;
    for (;;) {
        if (o->nthreads == sizeof o->threads / sizeof o->threads[0])
            usage();
        o->threads[o->nthreads++] = parse_uint(s, 1, MAX_THREADS);
        s = strchr(s, ',');
        if (s == NULL)
            return;
        s++;
    }
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"module", 1, NULL, 'm'},   {"token", 1, NULL, 't'},   {"pin-file", 1, NULL, 'p'},
        {"type", 1, NULL, 'k'},     {"threads", 1, NULL, 'n'}, {"seconds", 1, NULL, 's'},
        {"rounds", 1, NULL, 'r'},   {"batch", 1, NULL, 'b'},   {"label", 1, NULL, 'l'},
        {"raw-only", 0, NULL, 'R'}, {NULL, 0, NULL, 0}};
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->module = optarg;
            break;
        case 't':
            o->token = optarg;
            break;
        case 'p':
            o->pin_file = optarg;
            break;
        case 'k':
            o->type = optarg;
            break;
        case 'n':
            parse_threads(o, optarg);
            break;
        case 'r':
            o->rounds = parse_uint(optarg, 1, MAX_ROUNDS);
            break;
        case 'b':
            o->batch = parse_uint(optarg, 1, 1024);
            break;
        case 'l':
            o->label = optarg;
            break;
        case 'R':
            o->raw_only = 1;
            break;
        case 's':
            o->seconds = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(o->seconds > 0 && o->seconds <= 3600))
                usage();
            break;
        default:
            usage();
        }
    }
    if (optind != argc || o->module == NULL || o->token == NULL || o->pin_file == NULL)
        usage();
    if (strcmp(o->type, "rsa") != 0 && strcmp(o->type, "ed25519") != 0 &&
        strcmp(o->type, "both") != 0)
        usage();
}

int main(int argc, char **argv)
{
    struct opts o = {
        .module = getenv("DKIMHSM_TEST_MODULE"),
        .token = getenv("DKIMHSM_TEST_TOKEN"),
        .pin_file = getenv("DKIMHSM_TEST_PIN_FILE"),
        .type = "both",
        .threads = {1},
        .nthreads = 1,
        .rounds = 1,
        .batch = 32,
        .seconds = 5,
    };
    parse_args(argc, argv, &o);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int ok = 1;
    for (unsigned i = 0; i < o.nthreads; i++) {
        if (strcmp(o.type, "ed25519") != 0)
            ok &= bench_run(&o, HSM_KEY_RSA, o.threads[i]);
        if (strcmp(o.type, "rsa") != 0)
            ok &= bench_run(&o, HSM_KEY_ED25519, o.threads[i]);
    }
    return ok ? 0 : 1;
}
