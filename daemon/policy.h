/*
 * policy.h - who may sign for what (agent_allow), and which domain's keys
 * sign mail from a given From: domain (the signing table).
 *
 * agent_allow = "postfix:*; mta2:example.com,example.org; 1001:example.net"
 *   user name or uid, ':' then '*' or a comma list of domains; a domain
 *   entry ".example.com" also covers its subdomains. Without agent_allow only
 *   root and the daemon's own user may sign.
 * signing_table = "shop.example.com=example.com, .example.net=example.net"
 *   maps a From: domain (or, with a leading dot, any subdomain) to the
 *   domain whose keys sign it. fallback_domain signs anything else.
 */
#ifndef DAEMON_POLICY_H
#define DAEMON_POLICY_H

#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"
#include "conf/conf.h"
#include "daemon/keyset.h"

typedef struct policy policy;

/* Parses the rules in cf (user names resolved now). DH_ECONFIG naming the
 * key and the bad entry. self_uid: the daemon's own (post-drop) uid. */
int policy_new(const conf *cf, uid_t self_uid, policy **out, dh_err *e) DH_WUR;
void policy_free(policy *p);

/* 1 when uid may have mail signed with d=domain. */
int policy_may_sign(const policy *p, uid_t uid, const char *domain);

/* The domain whose usable keys sign mail from from_domain: the domain itself
 * when it has keys; else its signing-table entry; else the fallback domain.
 * Writes at most max keys to out and returns how many (0: nothing signs). */
size_t policy_resolve(const policy *p, const kset *keys, const char *from_domain,
                      const kset_key **out, size_t max, const char **signing_domain);

#endif
