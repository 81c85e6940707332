/*
 * file.h - whole-file reads with a size bound, and the rule for secret files.
 */
#ifndef DH_FILE_H
#define DH_FILE_H

#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"

/* Appends the contents of path (at most max bytes; more is an error) to out. */
int dh_file_read(const char *path, size_t max, dh_buf *out, dh_err *e) DH_WUR;

/* Reads a secret (a PIN, the API token, a TSIG key) from path into out
 * (caller frees with dh_buf_free_secret; on failure it is wiped and freed).
 * Refuses a file that is not a regular file or that group or others can read
 * or write (the error says which mode it has and what to run), or one larger
 * than max bytes. what names the file in errors ("PIN file"). Trailing
 * newlines are dropped; the result may be empty. */
int dh_file_read_secret(const char *path, const char *what, size_t max, dh_buf *out,
                        dh_err *e) DH_WUR;

/* dh_file_read_secret for a PIN (at most 1 KB); an empty PIN is DH_ELOGIN. */
int dh_file_read_pin(const char *path, dh_buf *pin, dh_err *e) DH_WUR;

/* Writes data to path atomically (temp file in the same directory + rename),
 * with the given mode. Nothing is left half-written on failure. */
int dh_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                         dh_err *e) DH_WUR;

#endif
