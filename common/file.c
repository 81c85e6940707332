#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_fd(int fd, const char *path, size_t max, dh_buf *out, dh_err *e)
{
    size_t start = out->len;
    for (;;) {
        if (dh_buf_reserve(out, 4096) != DH_OK)
            return dh_err_set(e, DH_ENOMEM, "%s: out of memory", path);
        ssize_t n = read(fd, out->data + out->len, 4096);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return dh_err_set(e, DH_EIO, "%s: read failed: %s", path, strerror(errno));
        if (n == 0)
            break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len - start > max)
            return dh_err_set(e, DH_EINVAL, "%s: file larger than %zu bytes", path, max);
    }
    return DH_OK;
}

int dh_file_read(const char *path, size_t max, dh_buf *out, dh_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dh_err_set(e, errno == ENOENT ? DH_ENOTFOUND : DH_EIO, "%s: cannot open: %s", path,
                          strerror(errno));
    int rc = read_fd(fd, path, max, out, e);
    close(fd);
    return rc;
}

int dh_file_read_secret(const char *path, const char *what, size_t max, dh_buf *out, dh_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return dh_err_set(e, errno == ENOENT ? DH_ENOTFOUND : DH_EIO, "%s %s: cannot open: %s",
                          what, path, strerror(errno));
    struct stat st;
    int rc = DH_OK;
    if (fstat(fd, &st) != 0) {
        rc = dh_err_set(e, DH_EIO, "%s %s: stat failed: %s", what, path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = dh_err_set(e, DH_EPERM, "%s %s: not a regular file", what, path);
    } else if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        rc = dh_err_set(e, DH_EPERM,
                        "%s %s: mode %04o lets group or others read it; "
                        "run chmod 600 %s",
                        what, path, (unsigned)(st.st_mode & 07777), path);
    } else if (dh_buf_reserve(out, max + 4096) != DH_OK) {
        /* Room for all of it at once: a buffer that grew would leave copies
         * of the secret behind in freed memory. */
        rc = dh_err_set(e, DH_ENOMEM, "%s %s: out of memory", what, path);
    } else {
        rc = read_fd(fd, path, max, out, e);
        if (rc != DH_OK)
            dh_err_prefix(e, "%s", what);
    }
    close(fd);
    if (rc != DH_OK) {
        dh_buf_free_secret(out);
        return rc;
    }
    while (out->len > 0 && (out->data[out->len - 1] == '\n' || out->data[out->len - 1] == '\r'))
        out->data[--out->len] = '\0';
    return DH_OK;
}

int dh_file_read_pin(const char *path, dh_buf *pin, dh_err *e)
{
    int rc = dh_file_read_secret(path, "PIN file", 1024, pin, e);
    if (rc == DH_OK && pin->len == 0) {
        dh_buf_free_secret(pin);
        return dh_err_set(e, DH_ELOGIN, "PIN file %s: empty", path);
    }
    return rc;
}

int dh_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode, dh_err *e)
{
    dh_buf tmp = {0};
    if (dh_buf_printf(&tmp, "%s.tmpXXXXXX", path) != DH_OK)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    int fd = mkostemp((char *)tmp.data, O_CLOEXEC);
    if (fd < 0) {
        int rc = dh_err_set(e, DH_EIO, "%s: cannot create: %s", path, strerror(errno));
        dh_buf_free(&tmp);
        return rc;
    }
    const uint8_t *p = data;
    size_t left = len;
    int rc = DH_OK;
    while (left > 0 && rc == DH_OK) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = dh_err_set(e, DH_EIO, "%s: write failed: %s", path, strerror(errno));
        else {
            p += n;
            left -= (size_t)n;
        }
    }
    if (rc == DH_OK && (fchmod(fd, mode) != 0 || fsync(fd) != 0))
        rc = dh_err_set(e, DH_EIO, "%s: %s", path, strerror(errno));
    if (close(fd) != 0 && rc == DH_OK)
        rc = dh_err_set(e, DH_EIO, "%s: close failed: %s", path, strerror(errno));
    if (rc == DH_OK && rename((char *)tmp.data, path) != 0)
        rc = dh_err_set(e, DH_EIO, "%s: rename failed: %s", path, strerror(errno));
    if (rc != DH_OK)
        unlink((char *)tmp.data);
    dh_buf_free(&tmp);
    return rc;
}
