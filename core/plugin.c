/* core/plugin.c — the plugin loader: search path, checks, init() and unloading. */
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <inttypes.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paf-internal.h"

/* The descriptor as ABI 1.0 defined it: later minors only append members, so
 * a plugin's descriptor is never smaller than this. */
#define DESCRIPTOR_MIN_SIZE                                                                        \
        (offsetof(paf_plugin_descriptor, fini) + sizeof(((paf_plugin_descriptor *)NULL)->fini))

struct paf_plugin {
        paf_registry *reg; /* not a reference: the registry owns its plugins */
        void *dl;
        const paf_plugin_descriptor *desc;
        char *name;
        char *file; /* as it was found or given */
        dev_t dev;  /* of the file it was mapped from, to recognise it */
        ino_t ino;
        paf_option_spec *options; /* either table of the descriptor, as this host reads it */
        void *userdata;
};

struct paf_loader {
        char **paths; /* added by the program, in order, NULL-terminated */
        size_t n_paths;
        char **search; /* the search path as last computed, NULL-terminated */

        paf_plugin **plugins; /* loaded, in load order */
        size_t n_plugins;

        /* Plugins whose init() failed after touching the registry's context:
         * rules they added may call into their code, so they stay mapped
         * until the context is gone. */

        paf_plugin_info *infos; /* loaded and refused, in order */
        size_t n_infos;
};

/* ---- small helpers ---- */

/* Append a copy of s to a NULL-terminated array. */
static int strv_push(char ***v, size_t *n, const char *s) {
        char *copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        char **a = realloc(*v, (*n + 2) * sizeof(char *));
        if (!a) {
                free(copy);
                return -ENOMEM;
        }
        a[(*n)++] = copy;
        a[*n] = NULL;
        *v = a;
        return 0;
}

static bool strv_contains(char *const *v, const char *s) {
        for (; v && *v; v++)
                if (strcmp(*v, s) == 0)
                        return true;
        return false;
}

static char **strv_free(char **v) {
        for (char **p = v; p && *p; p++)
                free(*p);
        free(v);
        return NULL;
}

static bool strv_equal(char *const *a, char *const *b) {
        if (!a || !b)
                return a == b;
        for (; *a && *b; a++, b++)
                if (strcmp(*a, *b) != 0)
                        return false;
        return !*a && !*b;
}

/* "a:b:c", for messages. */
static char *strv_join(char *const *v, const char *sep) {
        size_t len = 1;
        for (char *const *p = v; p && *p; p++)
                len += strlen(*p) + strlen(sep);
        char *s = malloc(len), *q = s;
        if (!s)
                return NULL;
        *q = '\0';
        for (char *const *p = v; p && *p; p++)
                q = stpcpy(stpcpy(q, p == v ? "" : sep), *p);
        return s;
}

static char *path_join(const char *dir, const char *file) {
        size_t n = strlen(dir);
        bool slash = n > 0 && dir[n - 1] == '/';
        char *s;
        if (asprintf(&s, "%s%s%s", dir, slash ? "" : "/", file) < 0)
                return NULL;
        return s;
}

static const char *file_basename(const char *path) {
        const char *slash = strrchr(path, '/');
        return slash ? slash + 1 : path;
}

/* The plugin name a file must carry: its base name without ".so". */
static char *name_from_file(const char *path) {
        const char *base = file_basename(path);
        size_t n = strlen(base);
        if (n > 3 && strcmp(base + n - 3, ".so") == 0)
                n -= 3;
        return strndup(base, n);
}

static paf_loader *loader_get(paf_registry *reg) {
        if (!reg->loader)
                reg->loader = calloc(1, sizeof(paf_loader));
        return reg->loader;
}

/* ---- the plugin list ---- */

static paf_plugin_info *info_add(paf_loader *l, const char *name, const char *file, bool requested,
                                 bool loaded, const char *reason) {
        paf_plugin_info *a = realloc(l->infos, (l->n_infos + 1) * sizeof(*a));
        if (!a)
                return NULL;
        l->infos = a;
        paf_plugin_info *i = &a[l->n_infos];
        *i = (paf_plugin_info){
                .name = strdup(name),
                .file = file ? strdup(file) : NULL,
                .protocols = strdup(""),
                .loaded = loaded,
                .requested = requested,
                .reason = reason ? strdup(reason) : NULL,
        };
        if (!i->name || (file && !i->file) || !i->protocols || (reason && !i->reason)) {
                free((char *)i->name);
                free((char *)i->file);
                free((char *)i->protocols);
                free((char *)i->reason);
                return NULL;
        }
        l->n_infos++;
        return i;
}

static void info_done(paf_plugin_info *i) {
        free((char *)i->name);
        free((char *)i->version);
        free((char *)i->description);
        free((char *)i->file);
        free((char *)i->protocols);
        free((char *)i->reason);
}

static paf_plugin_info *info_find(paf_loader *l, const char *name) {
        for (size_t i = 0; l && i < l->n_infos; i++)
                if (strcmp(l->infos[i].name, name) == 0)
                        return &l->infos[i];
        return NULL;
}

/* ---- what conf.c asks ---- */

paf_plugin *paf_loader_find_plugin(paf_registry *reg, const char *name) {
        if (!reg || !name)
                return NULL;
        if (reg->initializing && strcmp(reg->initializing->name, name) == 0)
                return reg->initializing;
        paf_loader *l = reg->loader;
        for (size_t i = 0; l && i < l->n_plugins; i++)
                if (strcmp(l->plugins[i]->name, name) == 0)
                        return l->plugins[i];
        return NULL;
}

bool paf_loader_is_refused(paf_registry *reg, const char *name) {
        if (!reg || !name || paf_loader_find_plugin(reg, name))
                return false;
        return info_find(reg->loader, name) != NULL;
}

const char *paf_loader_get_name(paf_registry *reg, size_t i) {
        if (!reg || !reg->loader || i >= reg->loader->n_plugins)
                return NULL;
        return reg->loader->plugins[i]->name;
}

const paf_option_spec *paf_plugin_get_options_internal(paf_plugin *plugin) {
        return plugin ? plugin->options : NULL;
}

const char *paf_plugin_name_internal(paf_plugin *plugin) {
        return plugin ? plugin->name : NULL;
}

/* ---- the plugin handle and the host table ---- */

PAF_EXPORT const char *paf_plugin_get_name(paf_plugin *plugin) {
        return plugin ? plugin->name : NULL;
}

PAF_EXPORT void paf_plugin_set_userdata(paf_plugin *plugin, void *userdata) {
        if (plugin)
                plugin->userdata = userdata;
}

PAF_EXPORT void *paf_plugin_get_userdata(paf_plugin *plugin) {
        return plugin ? plugin->userdata : NULL;
}

PAF_EXPORT void paf_plugin_logv(paf_plugin *plugin, int level, const char *format, va_list ap) {
        /* Filtered first: a debug message costs no formatting when off. */
        if (!format || level > paf_log_get_level())
                return;
        char buf[1024];
        vsnprintf(buf, sizeof(buf), format, ap);
        paf_log(level, "%s: %s", plugin ? plugin->name : "plugin", buf);
}

PAF_EXPORT void paf_plugin_log(paf_plugin *plugin, int level, const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        paf_plugin_logv(plugin, level, format, ap);
        va_end(ap);
}

static int host_get_option(paf_plugin *plugin, const char *name, paf_value *ret) {
        if (!plugin)
                return -EINVAL;
        return paf_registry_get_option(plugin->reg, plugin->name, name, ret);
}

static const paf_host host = {
        .struct_size = sizeof(paf_host),
        .abi_major = PAF_ABI_MAJOR,
        .abi_minor = PAF_ABI_MINOR,
        .version = PAF_VERSION,
        .log = paf_plugin_logv,
        .get_option = host_get_option,
};

/* ---- the search path ---- */

PAF_EXPORT int paf_registry_add_plugin_path(paf_registry *reg, const char *path) {
        if (!reg || !path || !*path)
                return -EINVAL;
        paf_loader *l = loader_get(reg);
        if (!l)
                return -ENOMEM;
        if (strv_contains(l->paths, path))
                return 0;
        return strv_push(&l->paths, &l->n_paths, path);
}

static int push_unique(char ***v, size_t *n, const char *s) {
        if (!*s || strv_contains(*v, s))
                return 0;
        return strv_push(v, n, s);
}

/* Built afresh each time: the environment and paf.conf may have changed
 * since paths were added. */
static int search_path_build(paf_registry *reg, char ***ret) {
        char **v = NULL;
        size_t n = 0;
        int r = 0;

        for (char **p = reg->loader ? reg->loader->paths : NULL; r >= 0 && p && *p; p++)
                r = push_unique(&v, &n, *p);

        const char *env = secure_getenv("PAF_PLUGIN_PATH");
        if (r >= 0 && env) {
                _cleanup_free_ char *copy = strdup(env);
                if (!copy)
                        r = -ENOMEM;
                char *saveptr = NULL;
                for (char *t = copy ? strtok_r(copy, ":", &saveptr) : NULL; r >= 0 && t;
                     t = strtok_r(NULL, ":", &saveptr))
                        r = push_unique(&v, &n, t);
        }

        for (const char *const *p = paf_config_get_plugin_path(reg); r >= 0 && p && *p; p++)
                r = push_unique(&v, &n, *p);

        if (r >= 0)
                r = push_unique(&v, &n, PAF_PLUGINSDIR);
        if (r < 0) {
                strv_free(v);
                return r;
        }
        *ret = v;
        return 0;
}

/* Recompute the search path; the array handed out before stays valid when
 * nothing changed. */
static char **search_path_update(paf_registry *reg) {
        paf_loader *l = loader_get(reg);
        char **v = NULL;
        if (!l || search_path_build(reg, &v) < 0)
                return NULL;
        if (strv_equal(v, l->search)) {
                strv_free(v);
                return l->search;
        }
        strv_free(l->search);
        l->search = v;
        return v;
}

PAF_EXPORT const char *const *paf_registry_get_plugin_path(paf_registry *reg) {
        if (!reg)
                return NULL;
        return (const char *const *)search_path_update(reg);
}

/* First NAME.so on the search path, or NULL (errno set). */
static char *search_path_find(char *const *search, const char *name) {
        _cleanup_free_ char *file = NULL;
        if (asprintf(&file, "%s.so", name) < 0)
                return NULL;
        for (char *const *d = search; d && *d; d++) {
                char *path = path_join(*d, file);
                if (!path)
                        return NULL;
                struct stat st;
                if (stat(path, &st) == 0)
                        return path;
                free(path);
        }
        errno = ENOENT;
        return NULL;
}

/* ---- loading one file ---- */

typedef struct attempt {
        paf_registry *reg;
        const char *name; /* from the file name */
        const char *file; /* as found or given, NULL when not found */
        bool requested;
        paf_error *error;
        unsigned conf_line; /* set when the refusal is a configuration error */
} attempt;

/* Record and report a refusal. Returns code. */
static int refuse(attempt *a, int code, const char *format, ...) PAF_PRINTF(3, 4);
static int refuse(attempt *a, int code, const char *format, ...) {
        char reason[sizeof(a->error->message)];
        va_list ap;
        va_start(ap, format);
        vsnprintf(reason, sizeof(reason), format, ap);
        va_end(ap);

        if (a->conf_line > 0)
                /* Already "FILE:LINE: [section] key …": keep it as it is. */
                paf_error_set(a->error, code, "%s", reason);
        else if (a->file)
                paf_error_set(a->error, code, "%s: %s", a->file, reason);
        else
                paf_error_set(a->error, code, "plugin \"%s\": %s", a->name, reason);
        paf_log(PAF_LOG_WARNING, "Refusing plugin %s: %s", a->file ? a->file : a->name, reason);

        paf_loader *l = loader_get(a->reg);
        if (!l || !info_add(l, a->name, a->file, a->requested, false, reason))
                return -ENOMEM;
        return code;
}

static bool owner_is_trusted(const struct stat *st) {
        return st->st_uid == 0 || st->st_uid == geteuid();
}

static int check_owner(attempt *a, const char *what, const struct stat *st) {
        if (st->st_mode & (S_IWGRP | S_IWOTH))
                return refuse(a, -EPERM, "%s is writable by group or others (mode %04o)", what,
                              (unsigned)(st->st_mode & 07777));
        if (!owner_is_trusted(st))
                return refuse(a, -EPERM, "%s is owned by uid %u, neither root nor uid %u", what,
                              (unsigned)st->st_uid, (unsigned)geteuid());
        return 0;
}

/* Whoever may write to a directory on the way to a plugin may put another
 * file or directory in the place of the next one (OpenSSH's StrictModes
 * rule). A sticky directory (/tmp) lets others add entries but not rename
 * or remove ours, and the next step checks that what it holds is ours. */
static int check_dir(attempt *a, int fd, const char *path) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return refuse(a, -errno, "cannot stat directory %s: %s", path, strerror(errno));
        if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
                return refuse(a, -EPERM, "directory %s is writable by group or others (mode %04o)",
                              path, (unsigned)(st.st_mode & 07777));
        if (!owner_is_trusted(&st))
                return refuse(a, -EPERM, "directory %s is owned by uid %u, neither root nor uid %u",
                              path, (unsigned)st.st_uid, (unsigned)geteuid());
        return 0;
}

/* The target of the symlink name in dir, NUL-terminated. */
static char *read_link(int dir, const char *name) {
        for (size_t size = 256; size <= 65536; size *= 2) {
                char *buf = malloc(size);
                if (!buf)
                        return NULL;
                ssize_t n = readlinkat(dir, name, buf, size);
                if (n < 0) {
                        free(buf);
                        return NULL;
                }
                if ((size_t)n < size) {
                        buf[n] = '\0';
                        return buf;
                }
                free(buf);
        }
        errno = ENAMETOOLONG;
        return NULL;
}

/* "/a/b" + "c": the canonical path of a directory the walk entered. */
static char *path_child(const char *dir, const char *name, size_t len) {
        char *s;
        if (asprintf(&s, "%s%s%.*s", dir, strcmp(dir, "/") == 0 ? "" : "/", (int)len, name) < 0)
                return NULL;
        return s;
}

static void path_parent(char *path) {
        char *slash = strrchr(path, '/');
        if (slash)
                slash[slash == path ? 1 : 0] = '\0';
}

static void close_fdp(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _paf_cleanup_(close_fdp)

#define MAX_SYMLINKS 40

/* Open the file at path for loading. Every directory on the way, from /,
 * is opened relative to the one before it (O_PATH, O_NOFOLLOW) and checked
 * through its descriptor, then the file is opened O_NOFOLLOW in the last
 * one and checked through its own: what is checked is what gets loaded,
 * whatever is renamed meanwhile. A symlink to a directory is followed by
 * reading it and walking its target the same way; the file itself must not
 * be one (its name is the plugin's). */
static int open_trusted(attempt *a, const char *path, int *ret_fd, struct stat *ret_st) {
        _cleanup_free_ char *todo = NULL;
        if (path[0] == '/')
                todo = strdup(path);
        else {
                _cleanup_free_ char *cwd = getcwd(NULL, 0);
                if (!cwd)
                        return refuse(a, -errno, "cannot get the current directory: %s",
                                      strerror(errno));
                todo = path_child(cwd, path, strlen(path));
        }
        _cleanup_free_ char *at = strdup("/");
        if (!todo || !at)
                return -ENOMEM;
        _cleanup_close_ int dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0)
                return refuse(a, -errno, "cannot open /: %s", strerror(errno));
        int r = check_dir(a, dir, "/");
        if (r < 0)
                return r;

        unsigned n_links = 0;
        const char *p = todo;
        for (;;) {
                while (*p == '/')
                        p++;
                size_t len = strcspn(p, "/");
                const char *rest = p + len;
                bool last = *rest == '\0';
                _cleanup_free_ char *name = strndup(p, len);
                if (!name)
                        return -ENOMEM;
                p = rest;

                if (last && (len == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0))
                        return refuse(a, -EBADF, "not a regular file");
                if (strcmp(name, ".") == 0)
                        continue;

                if (last) {
                        int fd = openat(dir, name,
                                        O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
                        if (fd < 0 && errno == ELOOP) {
                                _cleanup_free_ char *target = read_link(dir, name);
                                return refuse(a, -ELOOP,
                                              "file is a symbolic link (to %s): name the file "
                                              "itself",
                                              target ? target : "?");
                        }
                        if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
                                return refuse(a, -ENOENT, "file not found");
                        if (fd < 0)
                                return refuse(a, -errno, "cannot open: %s", strerror(errno));
                        struct stat st;
                        if (fstat(fd, &st) < 0) {
                                r = -errno;
                                close(fd);
                                return refuse(a, r, "cannot stat: %s", strerror(-r));
                        }
                        r = S_ISREG(st.st_mode) ? check_owner(a, "file", &st)
                                                : refuse(a, -EBADF, "not a regular file");
                        if (r < 0) {
                                close(fd);
                                return r;
                        }
                        *ret_fd = fd;
                        *ret_st = st;
                        return 0;
                }

                int next = openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0 && (errno == ENOTDIR || errno == ELOOP)) {
                        struct stat st;
                        if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                            S_ISLNK(st.st_mode)) {
                                _cleanup_free_ char *link = path_child(at, name, len);
                                if (!link)
                                        return -ENOMEM;
                                if (++n_links > MAX_SYMLINKS)
                                        return refuse(a, -ELOOP,
                                                      "too many levels of symbolic links at %s",
                                                      link);
                                /* Its directory was checked, but a sticky one
                                 * holds others' links too. */
                                if (!owner_is_trusted(&st))
                                        return refuse(a, -EPERM,
                                                      "symbolic link %s is owned by uid %u, "
                                                      "neither root nor uid %u",
                                                      link, (unsigned)st.st_uid,
                                                      (unsigned)geteuid());
                                _cleanup_free_ char *target = read_link(dir, name);
                                if (!target)
                                        return refuse(a, -errno, "cannot read link %s: %s", link,
                                                      strerror(errno));
                                char *more;
                                if (asprintf(&more, "%s/%s", target, rest) < 0)
                                        return -ENOMEM;
                                if (target[0] == '/') {
                                        next = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
                                        if (next < 0)
                                                r = refuse(a, -errno, "cannot open /: %s",
                                                           strerror(errno));
                                        else {
                                                close(dir);
                                                dir = next;
                                                strcpy(at, "/");
                                        }
                                }
                                free(todo);
                                todo = more;
                                p = todo;
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        errno = ENOTDIR;
                }
                if (next < 0) {
                        int e = errno;
                        if (e == ENOENT || e == ENOTDIR)
                                return refuse(a, -ENOENT, "file not found");
                        _cleanup_free_ char *d = path_child(at, name, len);
                        return refuse(a, -e, "cannot open directory %s: %s", d ? d : name,
                                      strerror(e));
                }
                close(dir);
                dir = next;
                if (strcmp(name, "..") == 0)
                        path_parent(at);
                else {
                        char *child = path_child(at, name, len);
                        if (!child)
                                return -ENOMEM;
                        free(at);
                        at = child;
                }
                r = check_dir(a, dir, at);
                if (r < 0)
                        return r;
        }
}

/* The file, its directories and its name, before anything of it runs.
 * Returns the descriptor to load it from. */
static int check_file(attempt *a, int *ret_fd, struct stat *ret_st) {
        _cleanup_close_ int fd = -1;
        struct stat st = {};
        int r = open_trusted(a, a->file, &fd, &st);
        if (r < 0)
                return r;

        const char *base = file_basename(a->file);
        size_t n = strlen(base);
        if (n <= 3 || strcmp(base + n - 3, ".so") != 0 || !paf_name_is_valid(a->name))
                return refuse(a, -EINVAL,
                              "file name \"%s\" is not NAME.so with NAME made of [a-z0-9_-]", base);

        /* dlopen() would run the file's constructors before failing on it. */
        unsigned char magic[SELFMAG];
        ssize_t k = pread(fd, magic, sizeof(magic), 0);
        if (k != (ssize_t)sizeof(magic) || memcmp(magic, ELFMAG, SELFMAG) != 0)
                return refuse(a, -ENOEXEC, "not an ELF file");
        *ret_fd = fd;
        fd = -1;
        *ret_st = st;
        return 0;
}

/* ---- mapping plugins ---- */

/* A plugin is dlopen()ed as /proc/self/fd/N, N the descriptor that was
 * checked. The dynamic loader remembers every name an object was opened
 * under and, given a name it knows, hands back that object without opening
 * anything. So N must go on naming the same file for as long as the object
 * is mapped, whichever registry loaded it, or the next plugin to get
 * descriptor N would be handed the previous one. Loading a file that is
 * mapped already goes through the name it was first opened under, so no
 * object collects more than one such name. */
typedef struct mapping {
        dev_t dev;
        ino_t ino;
        void *dl;
        int fd;
        unsigned n_ref; /* 0: unloaded but still mapped (a NODELETE object): keep its name */
} mapping;

static pthread_mutex_t mappings_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static mapping *mappings;
static size_t n_mappings;

static void fd_name(char buf[static 32], int fd) {
        snprintf(buf, 32, "/proc/self/fd/%d", fd);
}

/* dlopen() the file open at fd (fstat'ed as st). Takes fd. On failure,
 * reason says why. */
static int map_plugin(int fd, const struct stat *st, void **ret, char *reason, size_t size) {
        char name[32];
        int r = 0;
        pthread_mutex_lock(&mappings_lock);
        mapping *m = NULL;
        for (size_t i = 0; i < n_mappings; i++)
                if (mappings[i].dev == st->st_dev && mappings[i].ino == st->st_ino)
                        m = &mappings[i];
        fd_name(name, m ? m->fd : fd);
        if (!m && access(name, F_OK) < 0) {
                snprintf(reason, size, "cannot load through %s: %s (is /proc mounted?)", name,
                         strerror(errno));
                r = -ENOEXEC;
                goto out;
        }
        dlerror();
        void *dl = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
                const char *e = dlerror();
                snprintf(reason, size, "dlopen failed: %s", e ? e : "unknown error");
                r = -ENOEXEC;
                goto out;
        }
        if (m) {
                m->n_ref++;
                *ret = dl;
                goto out; /* fd names the same file as m->fd: not needed */
        }
        for (size_t i = 0; i < n_mappings; i++)
                if (mappings[i].dl == dl) {
                        /* Known under this name as another file: opened under
                         * /proc/self/fd/N by something else, N since closed. */
                        dlclose(dl);
                        snprintf(reason, size, "the dynamic loader has another object as %s", name);
                        r = -ENOEXEC;
                        goto out;
                }
        mapping *a = realloc(mappings, (n_mappings + 1) * sizeof(*a));
        if (!a) {
                dlclose(dl);
                r = -ENOMEM;
                goto out;
        }
        mappings = a;
        mappings[n_mappings++] =
                (mapping){.dev = st->st_dev, .ino = st->st_ino, .dl = dl, .fd = fd, .n_ref = 1};
        fd = -1;
        *ret = dl;
out:
        pthread_mutex_unlock(&mappings_lock);
        if (fd >= 0)
                close(fd);
        return r;
}

static void unmap_plugin(void *dl) {
        pthread_mutex_lock(&mappings_lock);
        mapping *m = NULL;
        for (size_t i = 0; i < n_mappings; i++)
                if (mappings[i].dl == dl && mappings[i].n_ref > 0)
                        m = &mappings[i];
        dlclose(dl);
        if (m && --m->n_ref == 0) {
                char name[32];
                fd_name(name, m->fd);
                void *still = dlopen(name, RTLD_NOLOAD | RTLD_LAZY);
                if (still)
                        dlclose(still); /* and the entry stays, name and all */
                else {
                        close(m->fd);
                        *m = mappings[--n_mappings];
                        if (n_mappings == 0) {
                                free(mappings);
                                mappings = NULL;
                        }
                }
        }
        pthread_mutex_unlock(&mappings_lock);
}

/* The descriptor exported by dl itself, not found in one of its dependencies. */
static const paf_plugin_descriptor *find_descriptor(void *dl) {
        const paf_plugin_descriptor *d = dlsym(dl, PAF_PLUGIN_SYMBOL);
        if (!d)
                return NULL;
        struct link_map *self = NULL, *owner = NULL;
        Dl_info info;
        if (dlinfo(dl, RTLD_DI_LINKMAP, &self) != 0 ||
            dladdr1(d, &info, (void **)&owner, RTLD_DL_LINKMAP) == 0 || owner != self)
                return NULL;
        return d;
}

/* ---- threads of plugins ---- */

/* A reference of its own (*ret) on the mapped plugin that addr is code
 * of, or NULL when addr is in none: code of the program or of libpaf is
 * not ours to unload. Counted in the mapping, like a registry's, so that
 * the last to let go closes the descriptor it is named by. */
static int pin_plugin(const void *addr, void **ret) {
        struct link_map *owner = NULL;
        Dl_info info;
        *ret = NULL;
        if (dladdr1(addr, &info, (void **)&owner, RTLD_DL_LINKMAP) == 0 || !owner)
                return 0;
        int r = 0;
        pthread_mutex_lock(&mappings_lock);
        for (size_t i = 0; i < n_mappings; i++) {
                struct link_map *self = NULL;
                if (mappings[i].n_ref == 0 || dlinfo(mappings[i].dl, RTLD_DI_LINKMAP, &self) != 0 ||
                    self != owner)
                        continue;
                char name[32];
                fd_name(name, mappings[i].fd);
                void *dl = dlopen(name, RTLD_NOLOAD | RTLD_NOW | RTLD_LOCAL);
                if (!dl) {
                        r = -EIO;
                        break;
                }
                mappings[i].n_ref++;
                *ret = dl;
                break;
        }
        pthread_mutex_unlock(&mappings_lock);
        return r;
}

typedef struct plugin_thread {
        paf_plugin_thread_handler_t fn;
        void *userdata;
        void *dl; /* our reference on fn's plugin, or NULL */
} plugin_thread;

static void *plugin_thread_run(void *arg) {
        plugin_thread t = *(plugin_thread *)arg;
        free(arg);
        t.fn(t.userdata);
        /* fn has returned: nothing of its plugin runs here any more, so it
         * may be unloaded now, even from under this very call. */
        if (t.dl)
                unmap_plugin(t.dl);
        return NULL;
}

PAF_EXPORT int paf_plugin_start_thread(paf_plugin_thread_handler_t fn, void *userdata) {
        if (!fn)
                return -EINVAL;
        plugin_thread *t = malloc(sizeof(*t));
        if (!t)
                return -ENOMEM;
        *t = (plugin_thread){.fn = fn, .userdata = userdata};
        int r = pin_plugin((const void *)(uintptr_t)fn, &t->dl);
        if (r < 0) {
                free(t);
                return r;
        }

        pthread_attr_t attr;
        r = -pthread_attr_init(&attr);
        if (r == 0) {
                r = -pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                /* Signals belong to the program's loop: the thread takes none. */
                sigset_t all, old;
                sigfillset(&all);
                pthread_sigmask(SIG_SETMASK, &all, &old);
                pthread_t thread;
                if (r == 0)
                        r = -pthread_create(&thread, &attr, plugin_thread_run, t);
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                pthread_attr_destroy(&attr);
        }
        if (r < 0) {
                if (t->dl)
                        unmap_plugin(t->dl);
                free(t);
        }
        return r;
}

/* ---- option tables ---- */

/* The descriptor as ABI 1.2 extended it. */
#define DESCRIPTOR_SPECS_SIZE                                                                      \
        (offsetof(paf_plugin_descriptor, option_spec_size) +                                       \
         sizeof(((paf_plugin_descriptor *)NULL)->option_spec_size))
/* paf_option_spec as ABI 1.2 first defined it, up to max: choices and check
 * were appended, and a table without them is read with them zero. */
#define OPTION_SPEC_MIN_SIZE (offsetof(paf_option_spec, max) + sizeof(int64_t))
/* Past this, a table is taken to have lost its terminator. */
#define MAX_OPTIONS 1024

static const uint32_t known_option_flags = PAF_OPTION_RANGE;

/* Either table of d, as this host's paf_option_spec, NULL-terminated. */
static int import_options(attempt *a, const paf_plugin_descriptor *d, paf_option_spec **ret) {
        bool has_specs = d->abi_minor >= 2 && d->struct_size >= DESCRIPTOR_SPECS_SIZE;
        const paf_option_spec *specs = has_specs ? d->option_specs : NULL;
        size_t stride = has_specs ? d->option_spec_size : 0;
        if (specs && d->options)
                return refuse(a, -EINVAL,
                              "bad option table: both options and option_specs are set");
        if (specs && stride < OPTION_SPEC_MIN_SIZE)
                return refuse(a, -EINVAL,
                              "bad option table: option_spec_size %zu is too small (at least %zu)",
                              stride, (size_t)OPTION_SPEC_MIN_SIZE);

        size_t n = 0;
        if (specs)
                while (n <= MAX_OPTIONS &&
                       ((const paf_option_spec *)((const char *)specs + n * stride))->name)
                        n++;
        else
                while (n <= MAX_OPTIONS && d->options && d->options[n].name)
                        n++;
        if (n > MAX_OPTIONS)
                return refuse(a, -EINVAL,
                              "bad option table: more than %d options (no terminating entry?)",
                              MAX_OPTIONS);

        paf_option_spec *v = calloc(n + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (specs)
                        /* What a newer header appended is left out; what an
                         * older one lacked stays zero. */
                        memcpy(&v[i], (const char *)specs + i * stride,
                               stride < sizeof(*v) ? stride : sizeof(*v));
                else
                        v[i] = (paf_option_spec){
                                .name = d->options[i].name,
                                .type = d->options[i].type,
                                .default_value = d->options[i].default_value,
                                .help = d->options[i].help,
                        };
        *ret = v;
        return 0;
}

static int check_options(attempt *a, const paf_option_spec *options) {
        for (const paf_option_spec *o = options; o && o->name; o++) {
                bool valid = *o->name && strlen(o->name) <= 64;
                for (const char *c = o->name; *c; c++)
                        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
                                valid = false;
                if (!valid)
                        return refuse(a, -EINVAL, "bad option table: invalid option name \"%.64s\"",
                                      o->name);
                if (o->type != PAF_TYPE_STRING && o->type != PAF_TYPE_INT &&
                    o->type != PAF_TYPE_BOOL)
                        return refuse(a, -EINVAL,
                                      "bad option table: option \"%s\" has type %s (string, "
                                      "integer or boolean only)",
                                      o->name, paf_type_to_string(o->type));
                for (const paf_option_spec *p = options; p < o; p++)
                        if (strcmp(p->name, o->name) == 0)
                                return refuse(a, -EINVAL,
                                              "bad option table: option \"%s\" declared twice",
                                              o->name);
                if (o->flags & ~known_option_flags)
                        return refuse(a, -EINVAL,
                                      "bad option table: option \"%s\" has unknown flags 0x%x",
                                      o->name, (unsigned)(o->flags & ~known_option_flags));
                if ((o->flags & PAF_OPTION_RANGE) && o->type != PAF_TYPE_INT)
                        return refuse(a, -EINVAL,
                                      "bad option table: option \"%s\" has a range but type %s",
                                      o->name, paf_type_to_string(o->type));
                if ((o->flags & PAF_OPTION_RANGE) && o->min > o->max)
                        return refuse(a, -EINVAL,
                                      "bad option table: option \"%s\" has an empty range (%" PRId64
                                      "-%" PRId64 ")",
                                      o->name, o->min, o->max);
                if (o->choices && o->type != PAF_TYPE_STRING)
                        return refuse(a, -EINVAL,
                                      "bad option table: option \"%s\" has choices but type %s",
                                      o->name, paf_type_to_string(o->type));
                size_t n_choices = 0;
                while (o->choices && n_choices <= MAX_OPTIONS && o->choices[n_choices])
                        n_choices++;
                if (o->choices && n_choices == 0)
                        return refuse(a, -EINVAL,
                                      "bad option table: option \"%s\" has an empty list of "
                                      "choices",
                                      o->name);
                if (n_choices > MAX_OPTIONS)
                        return refuse(a, -EINVAL,
                                      "bad option table: option \"%s\" has more than %d choices "
                                      "(no terminating NULL?)",
                                      o->name, MAX_OPTIONS);
                char reason[256];
                paf_value v;
                if (o->default_value &&
                    paf_option_check(o, o->default_value, &v, reason, sizeof(reason)) < 0)
                        return refuse(a, -EINVAL, "bad option table: option \"%s\": default %s",
                                      o->name, reason);
        }
        return 0;
}

static int plugin_free(paf_plugin *p) {
        if (p) {
                free(p->name);
                free(p->file);
                free(p->options);
                free(p);
        }
        return 0;
}

/* Past the checks on the file: map it from fd, check its descriptor, run
 * init(). Takes fd. */
static int load_object(attempt *a, int fd, const struct stat *st) {
        paf_registry *reg = a->reg;
        paf_loader *l = reg->loader;

        void *dl = NULL;
        char reason[sizeof(a->error->message)];
        int r = map_plugin(fd, st, &dl, reason, sizeof(reason));
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return refuse(a, r, "%s", reason);

        const paf_plugin_descriptor *d = find_descriptor(dl);
        _cleanup_free_ paf_option_spec *options = NULL;
        if (!d)
                r = refuse(a, -ENOEXEC, "no plugin descriptor (symbol %s not found)",
                           PAF_PLUGIN_SYMBOL);
        /* The major decides what the rest of the descriptor means, so it goes
         * before struct_size. */
        else if (d->abi_major != PAF_ABI_MAJOR)
                r = refuse(a, -EPROTONOSUPPORT, "ABI major %u, this host supports %u",
                           (unsigned)d->abi_major, (unsigned)PAF_ABI_MAJOR);
        else if (d->struct_size < DESCRIPTOR_MIN_SIZE)
                r = refuse(a, -EPROTONOSUPPORT,
                           "descriptor struct_size %zu is too small (at least %zu)", d->struct_size,
                           (size_t)DESCRIPTOR_MIN_SIZE);
        else if (d->abi_minor > PAF_ABI_MINOR)
                r = refuse(a, -EPROTONOSUPPORT, "ABI minor %u is newer than this host's %u.%u",
                           (unsigned)d->abi_minor, (unsigned)PAF_ABI_MAJOR,
                           (unsigned)PAF_ABI_MINOR);
        else if (!d->name)
                r = refuse(a, -EINVAL, "descriptor has no name");
        else if (!paf_name_is_valid(d->name))
                r = refuse(a, -EINVAL, "invalid plugin name \"%.64s\" (allowed: [a-z0-9_-]+)",
                           d->name);
        /* a->name comes from the file name as given, not the descriptor
         * the file was mapped from. */
        else if (strcmp(d->name, a->name) != 0)
                r = refuse(a, -EINVAL, "plugin name \"%s\" does not match the file name \"%s\"",
                           d->name, file_basename(a->file));
        else if (paf_config_is_core_section(d->name))
                r = refuse(a, -EINVAL, "plugin name \"%s\" is reserved for paf.conf's [%s]",
                           d->name, d->name);
        else if (paf_loader_find_plugin(reg, d->name))
                r = refuse(a, -EEXIST, "a plugin named \"%s\" is already loaded from %s", d->name,
                           paf_loader_find_plugin(reg, d->name)->file);
        else if (!d->init)
                r = refuse(a, -EINVAL, "descriptor has no init function");
        else if ((r = import_options(a, d, &options)) >= 0)
                r = check_options(a, options);
        if (r < 0) {
                unmap_plugin(dl);
                return r;
        }

        /* The options are checked before init() so that it reads good values. */
        paf_error cerr = PAF_ERROR_NULL;
        unsigned line = 0;
        r = paf_config_check_plugin(reg, d->name, options, &cerr, &line);
        if (r < 0) {
                a->conf_line = line;
                r = refuse(a, r, "%s", cerr.message);
                unmap_plugin(dl);
                return r;
        }

        paf_plugin *p = calloc(1, sizeof(*p));
        paf_plugin **plugins = realloc(l->plugins, (l->n_plugins + 1) * sizeof(*plugins));
        if (plugins)
                l->plugins = plugins;
        if (!p || !plugins || !(p->name = strdup(d->name)) || !(p->file = strdup(a->file))) {
                plugin_free(p);
                unmap_plugin(dl);
                return -ENOMEM;
        }
        p->reg = reg;
        p->dl = dl;
        p->desc = d;
        p->dev = st->st_dev;
        p->ino = st->st_ino;
        p->options = options;
        options = NULL;

        /* A failed init leaves nothing behind: its protocols and the rules it
         * added go before its code is unmapped. */
        unsigned mark = paf_ctx_mark(reg->ctx);
        reg->initializing = p;
        r = d->init(p, reg, &host);
        reg->initializing = NULL;
        if (r < 0) {
                paf_registry_remove_protocols_of(reg, p->name);
                paf_ctx_drop_since(reg->ctx, mark);
                r = refuse(a, r, "init failed: %s", strerror(-r));
                unmap_plugin(dl);
                plugin_free(p);
                return r;
        }

        paf_plugin_info *i = info_add(l, p->name, p->file, a->requested, true, NULL);
        if (i) {
                i->version = d->version ? strdup(d->version) : NULL;
                i->description = d->description ? strdup(d->description) : NULL;
        }
        l->plugins[l->n_plugins++] = p;
        paf_log(PAF_LOG_INFO, "Loaded plugin %s %s from %s", p->name, d->version ? d->version : "",
                p->file);
        return 0;
}

/* 0: loaded (or that very file already was), < 0: refused. */
static int load_file(paf_registry *reg, const char *path, bool requested, paf_error *error,
                     unsigned *ret_conf_line) {
        paf_loader *l = loader_get(reg);
        _cleanup_free_ char *name = name_from_file(path);
        if (!l || !name)
                return -ENOMEM;
        attempt a = {
                .reg = reg, .name = name, .file = path, .requested = requested, .error = error};

        int fd = -1;
        struct stat st = {};
        int r = check_file(&a, &fd, &st);
        if (r < 0)
                return r;

        for (size_t i = 0; i < l->n_plugins; i++)
                if (l->plugins[i]->dev == st.st_dev && l->plugins[i]->ino == st.st_ino) {
                        close(fd);
                        return 0;
                }

        r = load_object(&a, fd, &st);
        if (ret_conf_line)
                *ret_conf_line = a.conf_line;
        return r;
}

PAF_EXPORT int paf_registry_load_plugin(paf_registry *reg, const char *name_or_path,
                                        paf_error *error) {
        if (!reg || !name_or_path || !*name_or_path)
                return -EINVAL;
        if (reg->initializing)
                return -EBUSY;
        if (strchr(name_or_path, '/'))
                return load_file(reg, name_or_path, true, error, NULL);

        if (!paf_name_is_valid(name_or_path))
                return paf_error_set(error, -EINVAL, "invalid plugin name \"%.64s\"", name_or_path);
        char **search = search_path_update(reg);
        if (!search)
                return -ENOMEM;
        _cleanup_free_ char *path = search_path_find(search, name_or_path);
        if (!path) {
                if (errno != ENOENT)
                        return -errno;
                _cleanup_free_ char *s = strv_join(search, ":");
                attempt a = {.reg = reg, .name = name_or_path, .requested = true, .error = error};
                return refuse(&a, -ENOENT, "not found in search path: %s", s ? s : "?");
        }
        return load_file(reg, path, true, error, NULL);
}

/* Keep the configuration error on the earliest line. */
typedef struct conf_failure {
        int code;
        unsigned line;
        paf_error error;
} conf_failure;

static void conf_failure_merge(conf_failure *f, int code, unsigned line, const paf_error *e) {
        if (code >= 0 || line == 0)
                return;
        if (f->code < 0 && f->line <= line)
                return;
        f->code = code;
        f->line = line;
        f->error = *e;
}

static int load_by_name(paf_registry *reg, char *const *search, const char *name, conf_failure *f) {
        paf_loader *l = reg->loader;
        paf_plugin_info *old = info_find(l, name);
        if (paf_loader_find_plugin(reg, name) || old) {
                /* Loaded already, or refused already: it was reported then. */
                if (old)
                        old->requested = true;
                return paf_loader_find_plugin(reg, name) ? 0 : -ENOENT;
        }

        _cleanup_free_ char *path = search_path_find(search, name);
        if (!path) {
                if (errno != ENOENT)
                        return -errno;
                _cleanup_free_ char *s = strv_join(search, ":");
                attempt a = {.reg = reg, .name = name, .requested = true};
                return refuse(&a, -ENOENT, "not found in search path: %s", s ? s : "?");
        }
        paf_error e = PAF_ERROR_NULL;
        unsigned line = 0;
        int r = load_file(reg, path, true, &e, &line);
        conf_failure_merge(f, r, line, &e);
        return r;
}

static int cmp_string(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every NAME.so of dir, sorted so that the load order does not depend on
 * the file system. */
static int list_dir(const char *dir, char ***ret, size_t *ret_n) {
        DIR *d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        paf_log(PAF_LOG_DEBUG, "Cannot read plugin directory %s: %s", dir,
                                strerror(errno));
                return 0;
        }
        char **v = NULL;
        size_t n = 0;
        int r = 0;
        struct dirent *de;
        while (r >= 0 && (de = readdir(d))) {
                size_t len = strlen(de->d_name);
                if (de->d_name[0] == '.' || len <= 3 || strcmp(de->d_name + len - 3, ".so") != 0)
                        continue;
                r = strv_push(&v, &n, de->d_name);
        }
        closedir(d);
        if (r < 0) {
                strv_free(v);
                return r;
        }
        if (n > 0)
                qsort(v, n, sizeof(*v), cmp_string);
        *ret = v;
        *ret_n = n;
        return 0;
}

static int load_all(paf_registry *reg, char *const *search, conf_failure *f) {
        for (char *const *dir = search; dir && *dir; dir++) {
                char **files = NULL;
                size_t n = 0;
                int r = list_dir(*dir, &files, &n);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n; i++) {
                        _cleanup_free_ char *name = name_from_file(files[i]);
                        _cleanup_free_ char *path = path_join(*dir, files[i]);
                        if (!name || !path) {
                                strv_free(files);
                                return -ENOMEM;
                        }
                        /* The first file of a name wins, even if it is refused. */
                        if (paf_loader_find_plugin(reg, name) || info_find(reg->loader, name))
                                continue;
                        paf_error e = PAF_ERROR_NULL;
                        unsigned line = 0;
                        r = load_file(reg, path, false, &e, &line);
                        if (r == -ENOMEM) {
                                strv_free(files);
                                return r;
                        }
                        conf_failure_merge(f, r, line, &e);
                }
                strv_free(files);
        }
        return 0;
}

PAF_EXPORT int paf_registry_load_plugins(paf_registry *reg, paf_error *error) {
        if (!reg)
                return -EINVAL;
        if (reg->initializing)
                return -EBUSY;
        char **search = search_path_update(reg);
        if (!search)
                return -ENOMEM;

        conf_failure f = {0};
        int n_failed = 0, r;
        const char *const *load = paf_config_get_load(reg);
        if (load) {
                for (const char *const *name = load; *name; name++) {
                        r = load_by_name(reg, search, *name, &f);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                n_failed++;
                }
        } else {
                r = load_all(reg, search, &f);
                if (r < 0)
                        return r;
        }

        paf_error e = PAF_ERROR_NULL;
        unsigned line = 0;
        r = paf_config_check_sections(reg, &e, &line);
        conf_failure_merge(&f, r, line, &e);
        if (f.code < 0) {
                if (error)
                        *error = f.error;
                return f.code;
        }
        return n_failed;
}

PAF_EXPORT const paf_plugin_info *paf_registry_get_plugins(paf_registry *reg, size_t *ret_n) {
        if (!reg || !ret_n)
                return NULL;
        paf_loader *l = reg->loader;
        if (!l || l->n_infos == 0) {
                *ret_n = 0;
                return NULL;
        }
        /* Protocols are listed as they are now: a plugin may add some later. */
        for (size_t i = 0; i < l->n_infos; i++) {
                paf_plugin_info *info = &l->infos[i];
                if (!info->loaded)
                        continue;
                size_t len = 1;
                for (size_t j = 0; j < paf_registry_get_n_protocols(reg); j++) {
                        const paf_protocol *p = paf_registry_get_protocol(reg, j);
                        const char *owner = paf_protocol_get_plugin(p);
                        if (owner && strcmp(owner, info->name) == 0)
                                len += strlen(paf_protocol_get_name(p)) + 1;
                }
                char *s = malloc(len), *q = s;
                if (!s)
                        continue; /* keep the previous list */
                *q = '\0';
                for (size_t j = 0; j < paf_registry_get_n_protocols(reg); j++) {
                        const paf_protocol *p = paf_registry_get_protocol(reg, j);
                        const char *owner = paf_protocol_get_plugin(p);
                        if (owner && strcmp(owner, info->name) == 0)
                                q = stpcpy(stpcpy(q, q == s ? "" : " "), paf_protocol_get_name(p));
                }
                free((char *)info->protocols);
                info->protocols = s;
        }
        *ret_n = l->n_infos;
        return l->infos;
}

void paf_registry_free_loader(paf_registry *reg) {
        paf_loader *l = reg->loader;
        if (!l)
                return;
        /* Later plugins may use what earlier ones set up: undo in reverse. */
        for (size_t i = l->n_plugins; i > 0; i--) {
                paf_plugin *p = l->plugins[i - 1];
                if (p->desc->fini)
                        p->desc->fini(p);
        }
        for (size_t i = l->n_plugins; i > 0; i--) {
                unmap_plugin(l->plugins[i - 1]->dl);
                plugin_free(l->plugins[i - 1]);
        }
        free(l->plugins);
        for (size_t i = 0; i < l->n_infos; i++)
                info_done(&l->infos[i]);
        free(l->infos);
        strv_free(l->paths);
        strv_free(l->search);
        free(l);
        reg->loader = NULL;
}
