#include "daemon/lifesettings.h"

#include <stdlib.h>
#include <string.h>

void ls_free(ls_settings *s)
{
    if (s == NULL)
        return;
    free(s->selector_naming);
    free(s->delegation_zone);
    free(s->dns_server);
    free(s->dns_update_server);
    free(s->tsig_key_file);
    free(s);
}

/* s's numbers with strings copied from str[] (NULL stays NULL). */
static ls_settings *build(const ls_settings *nums, const char *const str[5])
{
    ls_settings *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->rotate_after = nums->rotate_after;
    s->retire_after = nums->retire_after;
    s->publish_wait = nums->publish_wait;
    s->rsa_bits = nums->rsa_bits;
    char **to[] = {&s->selector_naming, &s->delegation_zone, &s->dns_server, &s->dns_update_server,
                   &s->tsig_key_file};
    for (size_t i = 0; i < 5; i++) {
        if (str[i] != NULL && (*to[i] = strdup(str[i])) == NULL) {
            ls_free(s);
            return NULL;
        }
    }
    return s;
}

ls_settings *ls_from_conf(const conf *cf)
{
    ls_settings nums = {.rotate_after = cf->rotate_after,
                        .retire_after = cf->retire_after,
                        .publish_wait = cf->publish_wait,
                        .rsa_bits = cf->rsa_bits};
    const char *const str[5] = {cf->selector_naming, cf->delegation_zone, cf->dns_server,
                                cf->dns_update_server, cf->tsig_key_file};
    return build(&nums, str);
}

ls_settings *ls_copy(const ls_settings *s)
{
    const char *const str[5] = {s->selector_naming, s->delegation_zone, s->dns_server,
                                s->dns_update_server, s->tsig_key_file};
    return build(s, str);
}

void ls_life(const ls_settings *s, ks *store, hsm *token, lf_dns_arg *dns, lf_ctx *life)
{
    *dns = (lf_dns_arg){.server = s->dns_server, .delegation_zone = s->delegation_zone};
    *life = (lf_ctx){.store = store,
                     .token = token,
                     .retire_after = s->retire_after,
                     .publish_wait = s->publish_wait,
                     .naming = s->selector_naming,
                     .rsa_bits = s->rsa_bits,
                     .delegation_zone = s->delegation_zone,
                     .check = lf_dns_check,
                     .check_arg = dns};
}

int ls_replace(pthread_mutex_t *mu, ls_settings **slot, const conf *cf, dh_err *e)
{
    ls_settings *s = ls_from_conf(cf);
    if (s == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    pthread_mutex_lock(mu);
    ls_settings *old = *slot;
    *slot = s;
    pthread_mutex_unlock(mu);
    ls_free(old);
    return DH_OK;
}
