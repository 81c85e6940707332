/*
 * lookup_cache.c - direct-mapped slots keyed by the lowercased domain.
 *
 * Direct mapping keeps the memory fixed and every operation O(1); two busy
 * domains that collide only cost each other a round trip now and then.
 */
#include "daemon/lookup_cache.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LC_SLOTS 256

struct slot {
    int used;
    uint64_t expires_ms;
    char domain[AP_MAX_NAME + 1];
    ac_lookup answer;
};

struct lc {
    pthread_mutex_t mu;
    unsigned ttl_ms;
    struct slot slot[LC_SLOTS];
};

int lc_new(unsigned ttl_ms, lc **out, dh_err *e)
{
    lc *c = calloc(1, sizeof *c);
    if (c == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory for the lookup cache");
    pthread_mutex_init(&c->mu, NULL);
    c->ttl_ms = ttl_ms;
    *out = c;
    return DH_OK;
}

void lc_free(lc *c)
{
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* FNV-1a over the lowercased name. */
static struct slot *slot_of(lc *c, const char *domain)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)domain; *p; p++)
        h = (h ^ (uint32_t)tolower(*p)) * 16777619u;
    return &c->slot[h % LC_SLOTS];
}

int lc_get(lc *c, const char *domain, uint64_t now_ms, ac_lookup *out)
{
    struct slot *s = slot_of(c, domain);
    int hit = 0;
    pthread_mutex_lock(&c->mu);
    if (s->used && now_ms < s->expires_ms && strcasecmp(s->domain, domain) == 0) {
        *out = s->answer;
        hit = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

void lc_put(lc *c, const char *domain, uint64_t now_ms, const ac_lookup *answer)
{
    if (c->ttl_ms == 0 || strlen(domain) > AP_MAX_NAME ||
        (answer->status != AP_OK && answer->status != AP_NOTFOUND))
        return;
    struct slot *s = slot_of(c, domain);
    pthread_mutex_lock(&c->mu);
    s->used = 1;
    s->expires_ms = now_ms + c->ttl_ms;
    strcpy(s->domain, domain);
    s->answer = *answer;
    pthread_mutex_unlock(&c->mu);
}

void lc_drop(lc *c, const char *domain)
{
    struct slot *s = slot_of(c, domain);
    pthread_mutex_lock(&c->mu);
    if (s->used && strcasecmp(s->domain, domain) == 0)
        s->used = 0;
    pthread_mutex_unlock(&c->mu);
}
