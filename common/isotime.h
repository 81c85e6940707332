/*
 * isotime.h - a Unix time as RFC 3339 UTC text ("2026-11-23T16:22:00Z"), the
 * one form the API's JSON, dkim-keyctl and the lifecycle's messages share.
 */
#ifndef DH_ISOTIME_H
#define DH_ISOTIME_H

#define DH_ISO_TIME_LEN 32

/* Writes t (seconds since the epoch) into out, NUL-terminated. */
void dh_iso_time(long long t, char out[DH_ISO_TIME_LEN]);

#endif
