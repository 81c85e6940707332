/*
 * lf_int.h - what the lifecycle's files share; not part of its contract.
 */
#ifndef LIFECYCLE_LF_INT_H
#define LIFECYCLE_LF_INT_H

#include "lifecycle/lifecycle.h"

long long lf_now(lf_ctx *c);
/* DH_ESTATE "selector S of D is STATE; allowed next: ... (asked for TO)". */
int lf_refuse(const ks_selector *s, enum ks_state to, dh_err *e);
/* Normalized copies of domain and selector (selector may be NULL). */
int lf_names(const char *domain, const char *selector, char **d, char **s, dh_err *e) DH_WUR;
/* ks_get after normalizing the names. */
int lf_get(lf_ctx *c, const char *domain, const char *selector, ks_selector *out, dh_err *e) DH_WUR;
/* One table transition of cur inside the caller's transaction: row, history,
 * audit entry (detail appended to "FROM -> TO"). */
int lf_step(lf_ctx *c, const ks_selector *cur, enum ks_state to, const char *actor,
            const char *detail, dh_err *e) DH_WUR;
/* Commits (rc DH_OK) or rolls back, then updates the audit anchor. */
int lf_finish(lf_ctx *c, int rc, dh_err *e) DH_WUR;
/* revoked -> destroyed inside the caller's transaction, token key first. */
int lf_destroy_locked(lf_ctx *c, const ks_selector *cur, const char *actor, const char *why,
                      dh_err *e) DH_WUR;

#endif
