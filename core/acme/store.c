/* core/acme/store.c — the ACME state store: key checks, the generic wrapper, and the directory
 * backend. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/acme/store.h"
#include "core/paf-internal.h"

#define KEY_SEGMENTS_MAX 8
#define SEGMENT_MAX 255
/* Values are keys, certificates and small JSON documents. */
#define VALUE_MAX (16u * 1024 * 1024)
/* A put writes at most this much per write(2) (and calls the hook as often). */
#define WRITE_CHUNK (64u * 1024)
/* A temporary file this old belongs to a writer that died: no put takes an
 * hour to write a few kilobytes. */
#define STALE_TMP_SEC 3600
#define LOCKS_DIR ".locks"
/* How much of a key's last segment its temporary file's name carries: the
 * name (".<base>.<16 hex>.tmp") must stay within NAME_MAX. */
#define TMP_BASE_MAX 200

int (*paf_acme_store_dir_write_hook)(size_t written, size_t total) = NULL;

struct paf_acme_store {
        unsigned n_ref;
        const paf_acme_store_ops *ops;
        void *userdata;
};

struct paf_acme_store_lock {
        paf_acme_store *store;
        void *handle;
};

static bool segment_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
               c == '_' || c == '*';
}

static int segment_check(const char *key, const char *seg, size_t n, paf_error *error) {
        if (n == 0)
                return paf_error_set(error, -EINVAL, "key \"%s\": empty segment", key);
        if (n > SEGMENT_MAX)
                return paf_error_set(error, -EINVAL, "key \"%s\": segment longer than %d", key,
                                     SEGMENT_MAX);
        if (seg[0] == '.')
                return paf_error_set(error, -EINVAL, "key \"%s\": segment \"%.*s\" starts with '.'",
                                     key, (int)n, seg);
        for (size_t i = 0; i < n; i++) {
                if (!segment_char(seg[i]))
                        return paf_error_set(
                                error, -EINVAL,
                                "key \"%s\": character '%c' (0x%02x) not in [a-z0-9._*-]", key,
                                seg[i] >= 0x20 && seg[i] < 0x7f ? seg[i] : '?',
                                (unsigned char)seg[i]);
                if (seg[i] == '.' && i + 1 < n && seg[i + 1] == '.')
                        return paf_error_set(error, -EINVAL, "key \"%s\": segment holds \"..\"",
                                             key);
        }
        return 0;
}

int paf_acme_store_key_check(const char *key, paf_error *error) {
        if (!key)
                return paf_error_set(error, -EINVAL, "no key");
        unsigned n = 0;
        for (const char *p = key;;) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t)(slash - p) : strlen(p);
                int r = segment_check(key, p, len, error);
                if (r < 0)
                        return r;
                if (++n > KEY_SEGMENTS_MAX)
                        return paf_error_set(error, -EINVAL, "key \"%s\": more than %d segments",
                                             key, KEY_SEGMENTS_MAX);
                if (!slash)
                        return 0;
                p = slash + 1;
        }
}

/* A list prefix is a key, or "" for the top. */
static int prefix_check(const char *prefix, paf_error *error) {
        if (prefix && !*prefix)
                return 0;
        return paf_acme_store_key_check(prefix, error);
}

static int dns_name_check(const char *id, const char *name, paf_error *error) {
        size_t len = strlen(name);
        if (len == 0 || len > 253)
                return paf_error_set(error, -EINVAL, "identifier \"%s\": length %zu not in 1..253",
                                     id, len);
        for (const char *p = name;;) {
                const char *dot = strchr(p, '.');
                size_t n = dot ? (size_t)(dot - p) : strlen(p);
                if (n == 0)
                        return paf_error_set(error, -EINVAL, "identifier \"%s\": empty label", id);
                if (n > 63)
                        return paf_error_set(error, -EINVAL,
                                             "identifier \"%s\": label longer than 63", id);
                bool wildcard = n == 1 && p[0] == '*';
                if (wildcard && p != name)
                        return paf_error_set(error, -EINVAL,
                                             "identifier \"%s\": '*' only as the first label", id);
                if (wildcard && !dot)
                        return paf_error_set(error, -EINVAL, "identifier \"%s\": a bare wildcard",
                                             id);
                for (size_t i = 0; !wildcard && i < n; i++)
                        if (!segment_char(p[i]) || p[i] == '*' || p[i] == '.')
                                return paf_error_set(
                                        error, -EINVAL,
                                        "identifier \"%s\": character '%c' not in [a-z0-9_-]", id,
                                        p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?');
                if (!dot)
                        return 0;
                p = dot + 1;
        }
}

int paf_acme_store_name(const char *identifier, char **ret, paf_error *error) {
        if (!identifier || !ret)
                return paf_error_set(error, -EINVAL, "no identifier");

        char buf[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        struct in_addr a4;
        if (strchr(identifier, ':')) {
                if (inet_pton(AF_INET6, identifier, &a6) != 1)
                        return paf_error_set(
                                error, -EINVAL,
                                "identifier \"%s\": neither a DNS name nor an IP address",
                                identifier);
                /* The canonical form (RFC 5952), so that one address is one key. */
                if (!inet_ntop(AF_INET6, &a6, buf, sizeof(buf)))
                        return paf_error_set(error, -errno, "identifier \"%s\": %s", identifier,
                                             strerror(errno));
                for (char *p = buf; *p; p++)
                        if (*p == ':')
                                *p = '_';
        } else if (inet_pton(AF_INET, identifier, &a4) == 1) {
                if (!inet_ntop(AF_INET, &a4, buf, sizeof(buf)))
                        return paf_error_set(error, -errno, "identifier \"%s\": %s", identifier,
                                             strerror(errno));
        } else {
                _cleanup_free_ char *lower = strdup(identifier);
                if (!lower)
                        return -ENOMEM;
                for (char *p = lower; *p; p++)
                        if (*p >= 'A' && *p <= 'Z')
                                *p = (char)(*p - 'A' + 'a');
                int r = dns_name_check(identifier, lower, error);
                if (r < 0)
                        return r;
                /* '_' stands for ':' in an IPv6 address's name: a DNS name
                 * that reads as one would share its key. */
                if (strchr(lower, '_')) {
                        char alt[256];
                        snprintf(alt, sizeof(alt), "%s", lower);
                        for (char *p = alt; *p; p++)
                                if (*p == '_')
                                        *p = ':';
                        if (inet_pton(AF_INET6, alt, &a6) == 1)
                                return paf_error_set(
                                        error, -EINVAL,
                                        "identifier \"%s\": reads as the IPv6 address %s",
                                        identifier, alt);
                }
                *ret = lower;
                lower = NULL;
                return 0;
        }
        char *s = strdup(buf);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int paf_acme_store_new(const paf_acme_store_ops *ops, void *userdata, paf_acme_store **ret) {
        if (!ops || !ret || ops->struct_size < offsetof(paf_acme_store_ops, destroy) || !ops->get ||
            !ops->put || !ops->delete || !ops->lock || !ops->unlock || !ops->list)
                return -EINVAL;
        paf_acme_store *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->n_ref = 1;
        s->ops = ops;
        s->userdata = userdata;
        *ret = s;
        return 0;
}

paf_acme_store *paf_acme_store_ref(paf_acme_store *s) {
        if (s)
                s->n_ref++;
        return s;
}

paf_acme_store *paf_acme_store_unref(paf_acme_store *s) {
        if (!s || --s->n_ref > 0)
                return NULL;
        if (s->ops->struct_size > offsetof(paf_acme_store_ops, destroy) && s->ops->destroy)
                s->ops->destroy(s->userdata);
        free(s);
        return NULL;
}

int paf_acme_store_get(paf_acme_store *s, const char *key, unsigned flags, void **ret_data,
                       size_t *ret_size, paf_error *error) {
        if (!s || !ret_data || !ret_size)
                return paf_error_set(error, -EINVAL, "get: missing argument");
        int r = paf_acme_store_key_check(key, error);
        if (r < 0)
                return r;
        return s->ops->get(s->userdata, key, flags, ret_data, ret_size, error);
}

int paf_acme_store_put(paf_acme_store *s, const char *key, const void *data, size_t size,
                       unsigned mode, paf_error *error) {
        if (!s || (!data && size > 0))
                return paf_error_set(error, -EINVAL, "put: missing argument");
        int r = paf_acme_store_key_check(key, error);
        if (r < 0)
                return r;
        if (mode & ~0777u)
                return paf_error_set(error, -EINVAL,
                                     "put \"%s\": mode %04o is not a permission mode", key, mode);
        if (mode & 022)
                return paf_error_set(error, -EINVAL, "put \"%s\": mode %04o lets others write", key,
                                     mode);
        if (size > VALUE_MAX)
                return paf_error_set(error, -EFBIG, "put \"%s\": %zu bytes, more than %u", key,
                                     size, VALUE_MAX);
        return s->ops->put(s->userdata, key, data, size, mode, error);
}

int paf_acme_store_delete(paf_acme_store *s, const char *key, paf_error *error) {
        if (!s)
                return paf_error_set(error, -EINVAL, "delete: missing argument");
        int r = paf_acme_store_key_check(key, error);
        if (r < 0)
                return r;
        return s->ops->delete (s->userdata, key, error);
}

int paf_acme_store_list(paf_acme_store *s, const char *prefix, char ***ret, paf_error *error) {
        if (!s || !ret)
                return paf_error_set(error, -EINVAL, "list: missing argument");
        int r = prefix_check(prefix, error);
        if (r < 0)
                return r;
        return s->ops->list(s->userdata, prefix ? prefix : "", ret, error);
}

void paf_acme_store_strv_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
}

int paf_acme_store_lock_take(paf_acme_store *s, const char *name, uint64_t timeout_usec,
                             paf_acme_store_lock **ret, paf_error *error) {
        if (!s || !ret)
                return paf_error_set(error, -EINVAL, "lock: missing argument");
        int r = paf_acme_store_key_check(name, error);
        if (r < 0)
                return r;
        paf_acme_store_lock *l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        r = s->ops->lock(s->userdata, name, timeout_usec, &l->handle, error);
        if (r < 0) {
                free(l);
                return r;
        }
        l->store = paf_acme_store_ref(s);
        *ret = l;
        return 0;
}

paf_acme_store_lock *paf_acme_store_unlock(paf_acme_store_lock *l) {
        if (!l)
                return NULL;
        l->store->ops->unlock(l->store->userdata, l->handle);
        paf_acme_store_unref(l->store);
        free(l);
        return NULL;
}

/* ---- The directory backend ---- */

typedef struct dir_store {
        int fd; /* the state directory, opened once: later renames of its path don't move us */
        char *path;
} dir_store;

static void closep(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _paf_cleanup_(closep)

static int check_private(const struct stat *st, const char *root, const char *what,
                         paf_error *error) {
        if (st->st_uid != geteuid())
                return paf_error_set(error, -EPERM, "%s/%s is owned by uid %u, not uid %u", root,
                                     what, (unsigned)st->st_uid, (unsigned)geteuid());
        if (st->st_mode & (S_IWGRP | S_IWOTH))
                return paf_error_set(error, -EPERM,
                                     "%s/%s is writable by group or others (mode %04o)", root, what,
                                     (unsigned)(st->st_mode & 07777));
        return 0;
}

/*
 * Open the directory path[0..len) below the state directory (len 0: the
 * state directory itself), creating the missing ones (0700) if create. Each
 * is opened without following symlinks and must be ours and writable by
 * nobody else. -ENOENT (error not set) if one is missing; callers word it.
 */
static int open_dir(dir_store *d, const char *path, size_t len, bool create, int *ret_fd,
                    paf_error *error) {
        _cleanup_close_ int fd = fcntl(d->fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return paf_error_set(error, -errno, "%s: %s", d->path, strerror(errno));

        for (size_t at = 0; at < len;) {
                const char *seg = path + at;
                const char *slash = memchr(seg, '/', len - at);
                size_t n = slash ? (size_t)(slash - seg) : len - at;
                char name[SEGMENT_MAX + 1];
                snprintf(name, sizeof(name), "%.*s", (int)n, seg);
                /* For messages: the path so far. */
                int shown = (int)(at + n);

                int sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0 && errno == ENOENT && create) {
                        if (mkdirat(fd, name, 0700) < 0 && errno != EEXIST)
                                return paf_error_set(error, -errno, "%s/%.*s: cannot create: %s",
                                                     d->path, shown, path, strerror(errno));
                        /* The new entry must survive a crash as the files
                         * renamed into it will. */
                        (void)fsync(fd);
                        sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                }
                if (sub < 0) {
                        int e = errno;
                        if (e == ENOENT)
                                return -ENOENT;
                        return paf_error_set(
                                error, e == ELOOP ? -ENOTDIR : -e, "%s/%.*s: %s", d->path, shown,
                                path, e == ENOTDIR || e == ELOOP ? "not a directory" : strerror(e));
                }
                close(fd);
                fd = sub;
                struct stat st;
                if (fstat(fd, &st) < 0)
                        return paf_error_set(error, -errno, "%s/%.*s: %s", d->path, shown, path,
                                             strerror(errno));
                char what[PATH_MAX];
                snprintf(what, sizeof(what), "%.*s", shown, path);
                int r = check_private(&st, d->path, what, error);
                if (r < 0)
                        return r;
                at += n + (slash ? 1 : 0);
        }
        *ret_fd = fd;
        fd = -1;
        return 0;
}

/* The directory holding key's last segment, and that segment. */
static int open_parent(dir_store *d, const char *key, bool create, int *ret_fd,
                       const char **ret_base, paf_error *error) {
        const char *slash = strrchr(key, '/');
        int r = open_dir(d, key, slash ? (size_t)(slash - key) : 0, create, ret_fd, error);
        if (r < 0)
                return r;
        *ret_base = slash ? slash + 1 : key;
        return 0;
}

static int dir_get(void *userdata, const char *key, unsigned flags, void **ret_data,
                   size_t *ret_size, paf_error *error) {
        dir_store *d = userdata;
        _cleanup_close_ int dfd = -1;
        const char *base;
        int r = open_parent(d, key, false, &dfd, &base, error);
        if (r == -ENOENT)
                return paf_error_set(error, -ENOENT, "%s/%s: no such key", d->path, key);
        if (r < 0)
                return r;

        /* O_NONBLOCK: a FIFO in a key's place must not hang us (it is then
         * refused as not a regular file). */
        _cleanup_close_ int fd =
                openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                int e = errno;
                if (e == ENOENT)
                        return paf_error_set(error, -ENOENT, "%s/%s: no such key", d->path, key);
                return paf_error_set(error, -e, "%s/%s: %s", d->path, key,
                                     e == ELOOP ? "a symbolic link" : strerror(e));
        }
        struct stat st;
        if (fstat(fd, &st) < 0)
                return paf_error_set(error, -errno, "%s/%s: %s", d->path, key, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return paf_error_set(error, S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL,
                                     "%s/%s: not a regular file", d->path, key);
        r = check_private(&st, d->path, key, error);
        if (r < 0)
                return r;
        if ((flags & PAF_ACME_STORE_SECRET) && (st.st_mode & 077))
                return paf_error_set(error, -EPERM,
                                     "%s/%s: a private key that group or others may read (mode "
                                     "%04o, must be 0600 or stricter)",
                                     d->path, key, (unsigned)(st.st_mode & 07777));
        if ((uint64_t)st.st_size > VALUE_MAX)
                return paf_error_set(error, -EFBIG, "%s/%s: %jd bytes, more than %u", d->path, key,
                                     (intmax_t)st.st_size, VALUE_MAX);

        size_t size = (size_t)st.st_size, got = 0;
        _cleanup_free_ char *buf = malloc(size + 1);
        if (!buf)
                return -ENOMEM;
        /* Puts replace the file, never rewrite it: its size holds. */
        while (got < size) {
                ssize_t n = read(fd, buf + got, size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return paf_error_set(error, -errno, "%s/%s: %s", d->path, key,
                                             strerror(errno));
                if (n == 0)
                        return paf_error_set(error, -EIO, "%s/%s: shorter than its size %zu",
                                             d->path, key, size);
                got += (size_t)n;
        }
        buf[size] = 0;
        *ret_data = buf;
        buf = NULL;
        *ret_size = size;
        return 0;
}

/* Remove the temporary files of base's writers that died (see store.h). */
static void sweep_stale(int dfd, const char *base) {
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return;
        DIR *dir = fdopendir(fd);
        if (!dir) {
                close(fd);
                return;
        }
        size_t blen = strnlen(base, TMP_BASE_MAX);
        time_t now = time(NULL);
        struct dirent *de;
        while ((de = readdir(dir))) {
                size_t n = strlen(de->d_name);
                if (de->d_name[0] != '.' || n < blen + 6 || strncmp(de->d_name + 1, base, blen) ||
                    de->d_name[blen + 1] != '.' || strcmp(de->d_name + n - 4, ".tmp"))
                        continue;
                struct stat st;
                if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISREG(st.st_mode) && now - st.st_mtime > STALE_TMP_SEC)
                        (void)unlinkat(dfd, de->d_name, 0);
        }
        closedir(dir);
}

static int write_all(int fd, const char *data, size_t size) {
        size_t done = 0;
        while (done < size) {
                if (paf_acme_store_dir_write_hook) {
                        int r = paf_acme_store_dir_write_hook(done, size);
                        if (r < 0)
                                return r;
                }
                size_t chunk = size - done < WRITE_CHUNK ? size - done : WRITE_CHUNK;
                ssize_t n = write(fd, data + done, chunk);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                done += (size_t)n;
        }
        return 0;
}

static int dir_put(void *userdata, const char *key, const void *data, size_t size, unsigned mode,
                   paf_error *error) {
        dir_store *d = userdata;
        _cleanup_close_ int dfd = -1;
        const char *base;
        int r = open_parent(d, key, true, &dfd, &base, error);
        if (r == -ENOENT)
                return paf_error_set(error, -ENOENT, "%s/%s: a directory on the way vanished",
                                     d->path, key);
        if (r < 0)
                return r;

        uint64_t rnd;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
                rnd = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL) ^ (uintptr_t)&rnd;
        char tmp[NAME_MAX + 1];
        snprintf(tmp, sizeof(tmp), ".%.*s.%016jx.tmp", TMP_BASE_MAX, base, (uintmax_t)rnd);

        _cleanup_close_ int fd =
                openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0700);
        if (fd < 0)
                return paf_error_set(error, -errno, "%s/%s: cannot create its temporary file: %s",
                                     d->path, key, strerror(errno));
        const char *step = "write";
        r = write_all(fd, data, size);
        /* The exact mode, whatever the umask. */
        if (r >= 0 && fchmod(fd, mode) < 0) {
                step = "chmod";
                r = -errno;
        }
        /* Data first, name second: the rename must not reach the disk before
         * the bytes it points at. */
        if (r >= 0 && fsync(fd) < 0) {
                step = "fsync";
                r = -errno;
        }
        int c = close(fd);
        fd = -1;
        if (r >= 0 && c < 0) {
                step = "close";
                r = -errno;
        }
        if (r >= 0 && renameat(dfd, tmp, dfd, base) < 0) {
                step = "rename";
                r = -errno;
        }
        if (r < 0) {
                (void)unlinkat(dfd, tmp, 0);
                return paf_error_set(error, r, "%s/%s: %s failed, old value kept: %s", d->path, key,
                                     step, strerror(-r));
        }
        /* Make the rename itself durable. */
        if (fsync(dfd) < 0)
                return paf_error_set(error, -errno, "%s/%s: fsync of its directory: %s", d->path,
                                     key, strerror(errno));
        sweep_stale(dfd, base);
        return 0;
}

static int dir_delete(void *userdata, const char *key, paf_error *error) {
        dir_store *d = userdata;
        _cleanup_close_ int dfd = -1;
        const char *base;
        int r = open_parent(d, key, false, &dfd, &base, error);
        if (r == -ENOENT)
                return paf_error_set(error, -ENOENT, "%s/%s: no such key", d->path, key);
        if (r < 0)
                return r;
        if (unlinkat(dfd, base, 0) < 0) {
                if (errno == EISDIR)
                        r = unlinkat(dfd, base, AT_REMOVEDIR);
                else
                        r = -1;
                if (r < 0)
                        return paf_error_set(error, -errno, "%s/%s: cannot delete: %s", d->path,
                                             key,
                                             errno == ENOENT ? "no such key" : strerror(errno));
        }
        if (fsync(dfd) < 0)
                return paf_error_set(error, -errno, "%s/%s: fsync of its directory: %s", d->path,
                                     key, strerror(errno));
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int dir_list(void *userdata, const char *prefix, char ***ret, paf_error *error) {
        dir_store *d = userdata;
        _cleanup_close_ int fd = -1;
        int r = open_dir(d, prefix, strlen(prefix), false, &fd, error);
        if (r == -ENOENT) {
                /* Nothing under it. */
                char **empty = calloc(1, sizeof(char *));
                if (!empty)
                        return -ENOMEM;
                *ret = empty;
                return 0;
        }
        if (r < 0)
                return r;
        DIR *dir = fdopendir(fd);
        if (!dir)
                return paf_error_set(error, -errno, "%s/%s: %s", d->path, prefix, strerror(errno));
        fd = -1;

        char **l = calloc(1, sizeof(char *));
        size_t n = 0;
        struct dirent *de;
        r = 0;
        while (l && (errno = 0, de = readdir(dir))) {
                /* Temporary files and the locks: never keys. */
                if (de->d_name[0] == '.')
                        continue;
                char **nl = realloc(l, (n + 2) * sizeof(char *));
                if (!nl) {
                        r = -ENOMEM;
                        break;
                }
                l = nl;
                if (!(l[n] = strdup(de->d_name))) {
                        r = -ENOMEM;
                        break;
                }
                l[++n] = NULL;
        }
        if (!l)
                r = -ENOMEM;
        else if (r == 0 && errno != 0)
                r = paf_error_set(error, -errno, "%s/%s: %s", d->path, prefix, strerror(errno));
        closedir(dir);
        if (r < 0) {
                paf_acme_store_strv_free(l);
                return r;
        }
        qsort(l, n, sizeof(char *), cmp_str);
        *ret = l;
        return 0;
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int dir_lock(void *userdata, const char *name, uint64_t timeout_usec, void **ret_handle,
                    paf_error *error) {
        dir_store *d = userdata;
        _cleanup_close_ int dfd = -1;
        const char *base;
        char key[PATH_MAX];
        snprintf(key, sizeof(key), LOCKS_DIR "/%s", name);
        int r = open_parent(d, key, true, &dfd, &base, error);
        if (r == -ENOENT)
                return paf_error_set(error, -ENOENT, "%s/" LOCKS_DIR "/%s: a directory vanished",
                                     d->path, name);
        if (r < 0)
                return r;
        _cleanup_close_ int fd =
                openat(dfd, base, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return paf_error_set(error, -errno, "lock %s: %s/" LOCKS_DIR "/%s: %s", name,
                                     d->path, name, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return paf_error_set(error, -errno, "lock %s: %s", name, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return paf_error_set(error, -EINVAL,
                                     "lock %s: %s/" LOCKS_DIR "/%s: not a regular file", name,
                                     d->path, name);

        uint64_t deadline = now_usec() + timeout_usec;
        int wait_ms = 1;
        for (;;) {
                if (flock(fd, LOCK_EX | LOCK_NB) == 0)
                        break;
                if (errno == EINTR)
                        continue;
                if (errno != EWOULDBLOCK)
                        return paf_error_set(error, -errno, "lock %s: %s/" LOCKS_DIR "/%s: %s",
                                             name, d->path, name, strerror(errno));
                uint64_t now = now_usec();
                if (timeout_usec == 0 || now >= deadline)
                        return paf_error_set(error, -EWOULDBLOCK,
                                             "lock %s (%s/" LOCKS_DIR "/%s): held by another "
                                             "process%s",
                                             name, d->path, name,
                                             timeout_usec ? " for the whole timeout" : "");
                /* flock has no timeout: poll, backing off to 50 ms. */
                uint64_t left_ms = (deadline - now + 999) / 1000;
                (void)poll(NULL, 0,
                           (int)(left_ms < (uint64_t)wait_ms ? left_ms : (uint64_t)wait_ms));
                if (wait_ms < 50)
                        wait_ms *= 2;
        }
        int *h = malloc(sizeof(int));
        if (!h)
                return -ENOMEM; /* closing fd releases the lock */
        *h = fd;
        fd = -1;
        *ret_handle = h;
        return 0;
}

static void dir_unlock(void *userdata _unused_, void *handle) {
        int *h = handle;
        /* Closing the only descriptor of the open file releases its flock. */
        close(*h);
        free(h);
}

static void dir_destroy(void *userdata) {
        dir_store *d = userdata;
        close(d->fd);
        free(d->path);
        free(d);
}

static const paf_acme_store_ops dir_ops = {
        .struct_size = sizeof(paf_acme_store_ops),
        .get = dir_get,
        .put = dir_put,
        .delete = dir_delete,
        .lock = dir_lock,
        .unlock = dir_unlock,
        .list = dir_list,
        .destroy = dir_destroy,
};

int paf_acme_store_dir_new(const char *path, paf_acme_store **ret, paf_error *error) {
        if (!path || !*path || !ret)
                return paf_error_set(error, -EINVAL, "no state directory");
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return paf_error_set(error, -errno, "state directory %s: cannot create: %s", path,
                                     strerror(errno));
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return paf_error_set(error, -errno, "state directory %s: %s", path,
                                     errno == ENOTDIR ? "not a directory" : strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return paf_error_set(error, -errno, "state directory %s: %s", path,
                                     strerror(errno));
        /* Whoever may write here may replace our keys or certificates. */
        if (st.st_uid != geteuid())
                return paf_error_set(error, -EPERM,
                                     "state directory %s is owned by uid %u, not by uid %u", path,
                                     (unsigned)st.st_uid, (unsigned)geteuid());
        if (st.st_mode & (S_IWGRP | S_IWOTH))
                return paf_error_set(
                        error, -EPERM,
                        "state directory %s is writable by group or others (mode %04o)", path,
                        (unsigned)(st.st_mode & 07777));

        dir_store *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->path = strdup(path);
        if (!d->path) {
                free(d);
                return -ENOMEM;
        }
        d->fd = fd;
        int r = paf_acme_store_new(&dir_ops, d, ret);
        if (r < 0) {
                free(d->path);
                free(d);
                return r;
        }
        fd = -1;
        return 0;
}
