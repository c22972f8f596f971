/* core/http/static.c — static files as an HTTP handler: safe paths, validators, ranges, listings,
 * an open-file cache. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/paf-internal.h"
#include "core/http/headers-internal.h"
#include <paf/static.h>

/* A body at most this long is read (pread) and written with its head, in
 * one piece: sendfile would cost as many system calls for it, and a head
 * of its own on the wire. Longer ones go through the flow's send_file. */
#define COPY_MAX (64u * 1024u)
/* A file body is handed to the flow this much at a time: the access log
 * of a transfer cut short counts pieces, and each completion lets the
 * loop run. */
#define SEND_PIECE (1024u * 1024u)
/* A directory with more entries than this is listed truncated. */
#define LISTING_MAX 100000
/* A cached regular file at most this long keeps its bytes too: a small
 * body is then written from memory, with its head (no pread per request),
 * and answers to pipelined requests leave together. 1000 entries hold at
 * most 16 MiB of it. */
#define CONTENT_MAX (16u * 1024u)
/* Cache entries unused this long go (nginx's open_file_cache inactive). */
#define INACTIVE_USEC (20 * UINT64_C(1000000))
/* Entries looked at for inactivity per request: the sweep stays O(1). */
#define SWEEP_PER_LOOKUP 4
#define DEFAULT_ENTRIES 1000
#define DEFAULT_VALID_USEC UINT64_C(1000000)
/* On-the-fly gzip: bodies shorter than this gain too little (nginx's
 * gzip_min_length); the file is read and deflated this much at a time. */
#define DEFAULT_GZIP_MIN 1024
#define GZIP_PIECE (32u * 1024u)
#define DEFAULT_MIME_TYPES "/etc/mime.types"

/* What a cache entry is: the file itself, or one of its precompressed
 * siblings (rel + suffix), which answers for it with a Content-Encoding. */
enum {
        KIND_IDENTITY,
        KIND_GZIP,
        KIND_BR,
        KIND_ZSTD,
        N_KINDS,
};
static const char *const kind_suffix[N_KINDS] = {"", ".gz", ".br", ".zst"};
static const char *const kind_coding[N_KINDS] = {"identity", "gzip", "br", "zstd"};

/* Extensions and their types, sorted by extension for bsearch. Replaced
 * maps stay until the object goes: entries of the cache may point into
 * them. */
typedef struct mime_ext {
        char *ext;
        const char *type;
        size_t order; /* the line it came from: the first wins */
} mime_ext;
typedef struct mime_map {
        mime_ext *exts;
        size_t n;
        char **types;
        size_t n_types;
        struct mime_map *older;
} mime_map;

typedef struct file_entry file_entry;
struct file_entry {
        unsigned n_ref; /* atomic: the table's, and one per user */
        bool cached;    /* in the table; under the lock */
        int fd;
        struct stat st;
        /* The file's bytes, read when the entry was made (CONTENT_MAX at
         * most; NULL when not): what fd reads, as the same stat says. */
        char *data;
        /* For a regular file, what its answers say of it, made with the
         * entry: an entry's stat never changes (a changed file gets a new
         * entry), so requests read all this without the lock, and the
         * answer to a request costs no formatting. The field lists are made
         * for entries the table keeps (NULL otherwise, or when memory ran
         * out: an answer then makes its own). */
        char etag[56];
        char last_modified[32]; /* "" when the date cannot be told */
        const char *content_type;
        unsigned char kind;     /* KIND_*: what the entry is of rel */
        unsigned char siblings; /* identity: 1 << kind for each sibling seen */
        bool vary;              /* its answers say Vary: Accept-Encoding */
        /* 200: ETag, Last-Modified, Content-Type, Accept-Ranges; 304: the first two. */
        paf_http_headers *ok_fields, *not_modified_fields;
        uint64_t checked_usec; /* when the path was last opened and compared */
        uint64_t used_usec;
        uint64_t hash;
        file_entry *hnext;       /* the bucket's chain */
        file_entry *prev, *next; /* recency: head is the most recent */
        char rel[];              /* the path under the root */
};

struct paf_http_static {
        unsigned n_ref; /* atomic */
        int fd;
        /* For the fallback check when the kernel has no openat2. */
        char *real;
        bool dotfiles;
        bool precompressed; /* siblings .gz, .br, .zst (gzip_static) */
        bool gzip;          /* on-the-fly gzip of text types */
        uint64_t gzip_min;
        mime_map *mime; /* NULL: the built-in table only */
        /* The fields of a short text answer (errors), made once, and of an
         * HTML one. */
        paf_http_headers *text_fields, *html_fields;

        pthread_mutex_t lock; /* the cache */
        unsigned max_entries;
        uint64_t valid_usec;
        file_entry **buckets;
        size_t n_buckets; /* a power of two */
        file_entry *head, *tail;
        unsigned n_entries;
        sd_event_source *sweep;
};

/* Set once openat2 answered ENOSYS (kernels before 5.6, some seccomp
 * filters); read and set atomically, by any thread serving. */
static bool no_openat2;

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- the open-file cache ---- */

static uint64_t path_hash(const char *s, size_t len) {
        uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
        for (size_t i = 0; i < len; i++) {
                h ^= (unsigned char)s[i];
                h *= UINT64_C(1099511628211);
        }
        return h;
}

static file_entry *entry_ref(file_entry *e) {
        __atomic_add_fetch(&e->n_ref, 1, __ATOMIC_RELAXED);
        return e;
}

/* Drops a reference, with or without the lock. The table holds one while
 * the entry is in it: the last one goes once nobody can find the entry any
 * more, so a response ending needs no lock. */
static void entry_unref(file_entry *e) {
        if (!e || __atomic_sub_fetch(&e->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return;
        assert(!e->cached);
        if (e->fd >= 0)
                close(e->fd);
        paf_http_headers_free(e->ok_fields);
        paf_http_headers_free(e->not_modified_fields);
        free(e->data);
        free(e);
}

static void lru_unlink(paf_http_static *s, file_entry *e) {
        if (e->prev)
                e->prev->next = e->next;
        else
                s->head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                s->tail = e->prev;
        e->prev = e->next = NULL;
}

static void lru_push(paf_http_static *s, file_entry *e) {
        e->prev = NULL;
        e->next = s->head;
        if (s->head)
                s->head->prev = e;
        else
                s->tail = e;
        s->head = e;
}

static file_entry *table_find(paf_http_static *s, const char *rel, size_t len, uint64_t hash,
                              unsigned kind) {
        if (!s->buckets)
                return NULL;
        for (file_entry *e = s->buckets[hash & (s->n_buckets - 1)]; e; e = e->hnext)
                if (e->hash == hash && e->kind == kind && strncmp(e->rel, rel, len) == 0 &&
                    e->rel[len] == '\0')
                        return e;
        return NULL;
}

/* Out of the table; its descriptor closes once the last response using it
 * is done. */
static void table_remove(paf_http_static *s, file_entry *e) {
        assert(e->cached);
        file_entry **p = &s->buckets[e->hash & (s->n_buckets - 1)];
        while (*p != e)
                p = &(*p)->hnext;
        *p = e->hnext;
        e->hnext = NULL;
        lru_unlink(s, e);
        e->cached = false;
        s->n_entries--;
        entry_unref(e);
}

static void table_insert(paf_http_static *s, file_entry *e) {
        size_t b = e->hash & (s->n_buckets - 1);
        e->hnext = s->buckets[b];
        s->buckets[b] = e;
        lru_push(s, e);
        e->cached = true;
        entry_ref(e);
        s->n_entries++;
        while (s->n_entries > s->max_entries)
                table_remove(s, s->tail);
}

/* Entries unused for INACTIVE_USEC, from the least recently used; at most
 * max of them (0: all). */
static void table_sweep(paf_http_static *s, uint64_t now, unsigned max) {
        for (unsigned i = 0; s->tail && (max == 0 || i < max); i++) {
                if (now - s->tail->used_usec < INACTIVE_USEC)
                        break;
                table_remove(s, s->tail);
        }
}

static void table_flush(paf_http_static *s) {
        while (s->tail)
                table_remove(s, s->tail);
}

/* The same file, unchanged: what the ETag and the body depend on. ctime
 * also moves on a change that sets mtime back. */
static bool same_file(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_mode == b->st_mode &&
               a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
               a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
               a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static int open_beneath(paf_http_static *s, const char *rel);
static const char *mime_type(const paf_http_static *s, const char *name);
static bool compressible(const char *type);
static mime_map *mime_map_free(mime_map *m);
static int mime_map_load(const char *path, mime_map **ret);
static void make_etag(const struct stat *st, char *buf, size_t size);
static paf_http_headers *headers_new(void);

/* The fields of an answer with the file of e: its validators, and for one
 * with its body (full) Content-Type and Accept-Ranges. NULL when memory ran
 * out. */
static paf_http_headers *file_fields(const file_entry *e, bool full) {
        paf_http_headers *h = headers_new();
        if (!h)
                return NULL;
        int r = paf_http_headers_add(h, "ETag", e->etag);
        if (r >= 0 && e->last_modified[0])
                r = paf_http_headers_add(h, "Last-Modified", e->last_modified);
        if (r >= 0 && full) {
                r = paf_http_headers_add(h, "Content-Type", e->content_type);
                if (r >= 0)
                        r = paf_http_headers_add(h, "Accept-Ranges", "bytes");
        }
        if (r >= 0 && e->kind != KIND_IDENTITY)
                r = paf_http_headers_add(h, "Content-Encoding", kind_coding[e->kind]);
        /* On 304s too (RFC 9110 15.4.5): a cache keeps one answer per coding. */
        if (r >= 0 && e->vary)
                r = paf_http_headers_add(h, "Vary", "Accept-Encoding");
        /* Answers share the list, from any worker: its text is made now. */
        if (r >= 0)
                r = http_headers_freeze(h);
        return r < 0 ? paf_http_headers_free(h) : h;
}

/* Whether on-the-fly gzip applies to the file of e (when the client
 * takes it and asked for no range). */
static bool gzip_applies(const paf_http_static *s, const file_entry *e) {
        return s->gzip && e->kind == KIND_IDENTITY && (uint64_t)e->st.st_size >= s->gzip_min &&
               compressible(e->content_type);
}

/* The precompressed siblings of rel (rel + ".gz" …) that exist now: what
 * an answer for rel may be made from. A hint (the sibling itself is
 * opened beneath the root when chosen), checked with the file. */
static unsigned probe_siblings(paf_http_static *s, const char *rel, size_t len) {
        if (!s->precompressed)
                return 0;
        char buf[512], *path = len + 5 <= sizeof(buf) ? buf : malloc(len + 5);
        if (!path)
                return 0;
        unsigned mask = 0;
        for (unsigned k = KIND_GZIP; k < N_KINDS; k++) {
                struct stat st;
                memcpy(path, rel, len);
                strcpy(path + len, kind_suffix[k]);
                if (fstatat(s->fd, path, &st, 0) == 0 && S_ISREG(st.st_mode))
                        mask |= 1u << k;
        }
        if (path != buf)
                free(path);
        return mask;
}

/* What the answers with the regular file of e say of it (see file_entry);
 * the field lists only when kept, for an entry answers share. */
static void entry_describe(paf_http_static *s, file_entry *e, bool kept) {
        make_etag(&e->st, e->etag, sizeof(e->etag));
        char *lm = e->last_modified;
        if (paf_http_format_date(e->st.st_mtim.tv_sec, lm, sizeof(e->last_modified)) < 0)
                lm[0] = '\0';
        /* The entry of a directory's index is named ".../index.html": its
         * name gives the type, as the file's own does. */
        e->content_type = mime_type(s, e->rel);
        e->vary = e->kind != KIND_IDENTITY || e->siblings != 0 || gzip_applies(s, e);
        if (kept) {
                e->ok_fields = file_fields(e, true);
                e->not_modified_fields = file_fields(e, false);
        }
}

/* fd's bytes, exactly st's size of them, or NULL (a file that changes while
 * read is then read per request, as an uncached one). */
static char *file_content(int fd, const struct stat *st) {
        size_t size = (size_t)st->st_size;
        char *data = malloc(size + 1);
        if (!data)
                return NULL;
        ssize_t k;
        do
                k = pread(fd, data, size + 1, 0);
        while (k < 0 && errno == EINTR);
        struct stat now;
        if (k != (ssize_t)size || fstat(fd, &now) < 0 || !same_file(st, &now)) {
                free(data);
                return NULL;
        }
        return data;
}

static int file_open_path(paf_http_static *s, const char *rel, size_t len, uint64_t hash,
                          unsigned kind, const char *path, uint64_t now, file_entry **ret);

/* The file at rel (kind: its sibling rel + suffix), opened and stat'ed:
 * from the cache while it is valid, else opened again (and the cache
 * told). Release with entry_unref(). */
static int file_open(paf_http_static *s, const char *rel, unsigned kind, file_entry **ret) {
        size_t len = strlen(rel);
        uint64_t hash = path_hash(rel, len) + kind;
        uint64_t now = now_usec();
        char sbuf[512], *spath = NULL;
        const char *path = rel;
        if (kind != KIND_IDENTITY) {
                spath = len + 5 <= sizeof(sbuf) ? sbuf : malloc(len + 5);
                if (!spath)
                        return -ENOMEM;
                memcpy(spath, rel, len);
                strcpy(spath + len, kind_suffix[kind]);
                path = spath;
        }
        int r = file_open_path(s, rel, len, hash, kind, path, now, ret);
        if (spath != sbuf)
                free(spath);
        return r;
}

static int file_open_path(paf_http_static *s, const char *rel, size_t len, uint64_t hash,
                          unsigned kind, const char *path, uint64_t now, file_entry **ret) {

        pthread_mutex_lock(&s->lock);
        if (s->n_entries > 0) {
                table_sweep(s, now, SWEEP_PER_LOOKUP);
                file_entry *e = table_find(s, rel, len, hash, kind);
                if (e && now - e->checked_usec < s->valid_usec) {
                        e->used_usec = now;
                        lru_unlink(s, e);
                        lru_push(s, e);
                        entry_ref(e);
                        pthread_mutex_unlock(&s->lock);
                        *ret = e;
                        return 0;
                }
        }
        pthread_mutex_unlock(&s->lock);

        int fd = open_beneath(s, path);
        if (fd == -EMFILE || fd == -ENFILE) {
                /* Our own descriptors may be what is missing: give back
                 * the older half and try once more. */
                pthread_mutex_lock(&s->lock);
                unsigned n = s->n_entries / 2 + 1;
                for (unsigned i = 0; i < n && s->tail; i++)
                        table_remove(s, s->tail);
                pthread_mutex_unlock(&s->lock);
                fd = open_beneath(s, path);
        }
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                fd = r;
        }
        unsigned siblings = fd >= 0 && kind == KIND_IDENTITY && S_ISREG(st.st_mode)
                                    ? probe_siblings(s, rel, len)
                                    : 0;

        pthread_mutex_lock(&s->lock);
        file_entry *e = table_find(s, rel, len, hash, kind);
        if (fd < 0) {
                /* Gone, or no longer ours to read: so is its entry. */
                if (e)
                        table_remove(s, e);
                pthread_mutex_unlock(&s->lock);
                return fd;
        }
        if (e && same_file(&e->st, &st) && e->siblings == siblings) {
                e->checked_usec = e->used_usec = now;
                lru_unlink(s, e);
                lru_push(s, e);
                entry_ref(e);
                pthread_mutex_unlock(&s->lock);
                close(fd);
                *ret = e;
                return 0;
        }
        if (e)
                table_remove(s, e); /* changed: responses using it finish with it */
        bool keep = s->max_entries > 0;
        pthread_mutex_unlock(&s->lock);

        e = malloc(sizeof(*e) + len + 1);
        if (!e) {
                close(fd);
                return -ENOMEM;
        }
        *e = (file_entry){
                .n_ref = 1,
                .fd = fd,
                .st = st,
                .checked_usec = now,
                .used_usec = now,
                .hash = hash,
                .kind = (unsigned char)kind,
                .siblings = (unsigned char)siblings,
        };
        memcpy(e->rel, rel, len + 1);
        if (S_ISREG(st.st_mode))
                entry_describe(s, e, keep);
        if (keep && S_ISREG(st.st_mode) && st.st_size > 0 && st.st_size <= CONTENT_MAX)
                e->data = file_content(fd, &st);

        pthread_mutex_lock(&s->lock);
        /* FIFOs and devices are refused, never kept. Another thread may
         * have made an entry for rel meanwhile: ours replaces it. */
        if (s->max_entries > 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
                file_entry *other = table_find(s, rel, len, hash, kind);
                if (other)
                        table_remove(s, other);
                table_insert(s, e);
        }
        pthread_mutex_unlock(&s->lock);
        *ret = e;
        return 0;
}

static int on_sweep(sd_event_source *source, uint64_t usec, void *userdata) {
        paf_http_static *s = userdata;
        pthread_mutex_lock(&s->lock);
        table_sweep(s, now_usec(), 0);
        pthread_mutex_unlock(&s->lock);
        (void)sd_event_source_set_time(source, usec + INACTIVE_USEC / 2);
        return 0;
}

PAF_EXPORT int paf_http_static_attach_event(paf_http_static *s, sd_event *event) {
        if (!s)
                return -EINVAL;
        s->sweep = sd_event_source_disable_unref(s->sweep);
        if (!event)
                return 0;
        uint64_t now;
        int r = sd_event_now(event, CLOCK_MONOTONIC, &now);
        if (r >= 0)
                r = sd_event_add_time(event, &s->sweep, CLOCK_MONOTONIC, now + INACTIVE_USEC / 2,
                                      INACTIVE_USEC / 10, on_sweep, s);
        if (r < 0)
                return r;
        (void)sd_event_source_set_enabled(s->sweep, SD_EVENT_ON);
        (void)sd_event_source_set_description(s->sweep, "paf-static-cache");
        return 0;
}

PAF_EXPORT int paf_http_static_set_cache(paf_http_static *s, unsigned max_entries,
                                         uint64_t valid_usec) {
        if (!s || max_entries > (1u << 24))
                return -EINVAL;
        size_t n = 0;
        file_entry **buckets = NULL;
        if (max_entries > 0) {
                n = 16;
                while (n < max_entries)
                        n *= 2;
                buckets = calloc(n, sizeof(*buckets));
                if (!buckets)
                        return -ENOMEM;
        }
        pthread_mutex_lock(&s->lock);
        table_flush(s);
        free(s->buckets);
        s->buckets = buckets;
        s->n_buckets = n;
        s->max_entries = max_entries;
        s->valid_usec = valid_usec;
        pthread_mutex_unlock(&s->lock);
        return 0;
}

PAF_EXPORT int paf_http_static_load_config(paf_http_static *s, paf_registry *reg) {
        if (!s)
                return -EINVAL;
        /* The defaults live in conf.c's table: a registry without a file
         * still answers with them. */
        paf_registry *own = NULL;
        if (!reg) {
                int r = paf_registry_new(&own);
                if (r < 0)
                        return r;
                reg = own;
        }
        paf_value entries, valid, gzip, gzip_min, gzip_static;
        int r = paf_registry_get_option(reg, "http", "open-file-cache", &entries);
        if (r >= 0)
                r = paf_registry_get_option(reg, "http", "open-file-cache-valid", &valid);
        if (r >= 0)
                r = paf_registry_get_option(reg, "http", "gzip", &gzip);
        if (r >= 0)
                r = paf_registry_get_option(reg, "http", "gzip-min-length", &gzip_min);
        if (r >= 0)
                r = paf_registry_get_option(reg, "http", "gzip-static", &gzip_static);
        paf_registry_unref(own);
        if (r < 0)
                return r;
        /* conf.c's ranges keep both within what the cache counts in. */
        if (entries.type != PAF_TYPE_INT || valid.type != PAF_TYPE_INT || entries.integer < 0 ||
            entries.integer > (1 << 24) || valid.integer < 0 || valid.integer > 86400 ||
            gzip.type != PAF_TYPE_BOOL || gzip_static.type != PAF_TYPE_BOOL ||
            gzip_min.type != PAF_TYPE_INT || gzip_min.integer < 0)
                return -ERANGE;
        r = paf_http_static_set_gzip(s, gzip.boolean);
        if (r >= 0)
                r = paf_http_static_set_gzip_min_length(s, (uint64_t)gzip_min.integer);
        if (r >= 0)
                r = paf_http_static_set_precompressed(s, gzip_static.boolean);
        if (r < 0)
                return r;
        return paf_http_static_set_cache(s, (unsigned)entries.integer,
                                         (uint64_t)valid.integer * 1000000);
}

/* ---- the object ---- */

PAF_EXPORT int paf_http_static_new(const char *path, paf_http_static **ret) {
        if (!path || !ret)
                return -EINVAL;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        paf_http_static *s = calloc(1, sizeof(*s));
        char *real = realpath(path, NULL);
        if (!s || !real) {
                int r = s ? -errno : -ENOMEM;
                free(s);
                free(real);
                close(fd);
                return r;
        }
        s->n_ref = 1;
        s->fd = fd;
        s->real = real;
        /* Without it (no memory), each text answer makes its own. */
        s->text_fields = headers_new();
        if (s->text_fields && (paf_http_headers_add(s->text_fields, "Content-Type",
                                                    "text/plain; charset=utf-8") < 0 ||
                               paf_http_headers_add(s->text_fields, "Vary", "Accept") < 0))
                s->text_fields = paf_http_headers_free(s->text_fields);
        s->html_fields = headers_new();
        if (s->html_fields &&
            (paf_http_headers_add(s->html_fields, "Content-Type", "text/html; charset=utf-8") < 0 ||
             paf_http_headers_add(s->html_fields, "Vary", "Accept") < 0))
                s->html_fields = paf_http_headers_free(s->html_fields);
        s->precompressed = true;
        s->gzip_min = DEFAULT_GZIP_MIN;
        /* The system's types when it has them (Debian's media-types); the
         * built-in table answers for the rest, and for all without it. */
        (void)mime_map_load(DEFAULT_MIME_TYPES, &s->mime);
        pthread_mutex_init(&s->lock, NULL);
        int r = paf_http_static_set_cache(s, DEFAULT_ENTRIES, DEFAULT_VALID_USEC);
        if (r < 0) {
                paf_http_static_unref(s);
                return r;
        }
        *ret = s;
        return 0;
}

PAF_EXPORT paf_http_static *paf_http_static_ref(paf_http_static *s) {
        if (s)
                __atomic_add_fetch(&s->n_ref, 1, __ATOMIC_RELAXED);
        return s;
}

PAF_EXPORT paf_http_static *paf_http_static_unref(paf_http_static *s) {
        if (!s || __atomic_sub_fetch(&s->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        sd_event_source_disable_unref(s->sweep);
        pthread_mutex_lock(&s->lock);
        table_flush(s);
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_destroy(&s->lock);
        free(s->buckets);
        close(s->fd);
        free(s->real);
        paf_http_headers_free(s->text_fields);
        paf_http_headers_free(s->html_fields);
        mime_map_free(s->mime);
        free(s);
        return NULL;
}

PAF_EXPORT int paf_http_static_set_precompressed(paf_http_static *s, bool allow) {
        if (!s)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        s->precompressed = allow;
        table_flush(s); /* entries say which siblings they have */
        pthread_mutex_unlock(&s->lock);
        return 0;
}

PAF_EXPORT int paf_http_static_set_gzip(paf_http_static *s, bool enable) {
        if (!s)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        s->gzip = enable;
        table_flush(s); /* entries' fields say Vary or not */
        pthread_mutex_unlock(&s->lock);
        return 0;
}

PAF_EXPORT int paf_http_static_set_gzip_min_length(paf_http_static *s, uint64_t min_length) {
        if (!s)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        s->gzip_min = min_length;
        table_flush(s);
        pthread_mutex_unlock(&s->lock);
        return 0;
}

PAF_EXPORT int paf_http_static_set_dotfiles(paf_http_static *s, bool allow) {
        if (!s)
                return -EINVAL;
        s->dotfiles = allow;
        return 0;
}

/* ---- mapping a target to a path under the root ---- */

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Frees what map_target() allocated: rel, unless it is buf. */
static void rel_free(char *rel, const char *buf) {
        if (rel != buf)
                free(rel);
}

static int map_fail(char *out, const char *buf, int status) {
        rel_free(out, buf);
        return status;
}

/* The target's path as a path relative to the root ("." for the root),
 * percent-decoded with dot segments resolved; *ret_slash tells whether it
 * named a directory ("/a/"). The path is written to buf when it fits in
 * size bytes (no allocation for the usual request), else allocated:
 * rel_free() it. Returns 0, or the status to answer (400, 403, 404, 500). */
static int map_target(const char *target, char *buf, size_t size, char **ret_rel, bool *ret_slash) {
        if (!target || !ret_rel || !ret_slash)
                return 400;
        const char *p = target;
        if (*p != '/') {
                /* absolute-form (RFC 9112 3.2.2): the path starts after the authority. */
                const char *scheme_end = strstr(p, "://");
                if (!scheme_end)
                        return 400;
                p = strchr(scheme_end + 3, '/');
                if (!p)
                        p = "/";
        }
        size_t len = strcspn(p, "?#");

        /* Decoded segments are written one after another into out; ".." pops
         * back to the previous '/'. The result never exceeds the input. */
        char *out = len + 2 <= size ? buf : malloc(len + 2);
        if (!out)
                return 500;
        size_t n = 0;
        bool slash = false;
        for (size_t i = 0; i < len;) {
                while (i < len && p[i] == '/')
                        i++;
                size_t start = n;
                if (n > 0)
                        out[n++] = '/';
                size_t seg = n;
                while (i < len && p[i] != '/') {
                        char c = p[i];
                        if (c == '%') {
                                int hi = i + 2 < len ? unhex(p[i + 1]) : -1;
                                int lo = hi >= 0 ? unhex(p[i + 2]) : -1;
                                if (lo < 0)
                                        return map_fail(out, buf, 400);
                                c = (char)(hi << 4 | lo);
                                i += 3;
                                /* A NUL would cut the path; an encoded '/' would make
                                 * "a%2Fb" and "a/b" the same file under two names. */
                                if (c == '\0')
                                        return map_fail(out, buf, 400);
                                if (c == '/')
                                        return map_fail(out, buf, 404);
                        } else
                                i++;
                        out[n++] = c;
                }
                size_t seg_len = n - seg;
                bool dot = seg_len == 1 && out[seg] == '.';
                bool dotdot = seg_len == 2 && out[seg] == '.' && out[seg + 1] == '.';
                if (seg_len == 0 || dot) {
                        n = start;
                        slash = true;
                } else if (dotdot) {
                        if (start == 0 && seg == 0) {
                                /* Above the root: nothing to serve, and worth saying so. */
                                return map_fail(out, buf, 403);
                        }
                        n = start;
                        while (n > 0 && out[n - 1] != '/')
                                n--;
                        if (n > 0)
                                n--; /* the '/' before the popped segment */
                        slash = true;
                } else
                        slash = false;
        }
        if (len == 0 || p[len - 1] == '/')
                slash = true;
        if (n == 0)
                out[n++] = '.';
        out[n] = '\0';
        *ret_rel = out;
        *ret_slash = slash;
        return 0;
}

/* Whether name, an entry of the directory at URL path depth depth (0: the
 * root), is hidden: a dotfile or dot-directory (.git, .env, .htpasswd …),
 * which a tree that happens to be served rarely means to publish. RFC 8615's
 * /.well-known/ is meant to be served, so it is not. */
static bool name_is_hidden(const char *name, size_t len, unsigned depth) {
        if (len == 0 || name[0] != '.')
                return false;
        return !(depth == 0 && len == strlen(".well-known") &&
                 strncmp(name, ".well-known", len) == 0);
}

/* Whether a path from map_target() has a segment starting with '.' (but for
 * a leading ".well-known"): what answers 404 without dotfiles. */
static bool path_is_hidden(const char *rel) {
        if (!rel || strcmp(rel, ".") == 0)
                return false;
        unsigned depth = 0;
        for (const char *p = rel; *p; depth++) {
                size_t len = strcspn(p, "/");
                if (name_is_hidden(p, len, depth))
                        return true;
                p += len;
                if (*p == '/')
                        p++;
        }
        return false;
}

/* Opens rel beneath the root: neither "..", an absolute symlink nor a
 * /proc magic link may lead outside it. Returns an fd or -errno; -EXDEV
 * when the path tried to escape. */
static int open_beneath(paf_http_static *root, const char *rel) {
        /* O_NONBLOCK: opening a FIFO someone left under the root must not
         * block the loop; it is refused after fstat anyway. */
        int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
        if (!__atomic_load_n(&no_openat2, __ATOMIC_RELAXED)) {
                struct open_how how = {
                        .flags = (uint64_t)flags,
                        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
                };
                long fd = syscall(SYS_openat2, root->fd, rel, &how, sizeof(how));
                if (fd >= 0)
                        return (int)fd;
                if (errno != ENOSYS)
                        return -errno;
                __atomic_store_n(&no_openat2, true, __ATOMIC_RELAXED);
        }

        /* Without openat2: open, then check where the fd really points. ".."
         * was already resolved lexically, so only symlinks can lead out. */
        int fd = openat(root->fd, rel, flags);
        if (fd < 0)
                return -errno;
        char link[64], real[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t k = readlink(link, real, sizeof(real) - 1);
        size_t rlen = strlen(root->real);
        if (k < 0 || (size_t)k < rlen) {
                close(fd);
                return -EXDEV; /* cannot tell: refuse */
        }
        real[k] = '\0';
        bool inside = strncmp(real, root->real, rlen) == 0 &&
                      (real[rlen] == '\0' || real[rlen] == '/' || strcmp(root->real, "/") == 0);
        if (!inside) {
                close(fd);
                return -EXDEV;
        }
        return fd;
}

static int errno_to_status(int error) {
        switch (error) {
        case -ENOENT:
        case -ENOTDIR:
        case -ENAMETOOLONG:
                return 404;
        case -EXDEV:
        case -ELOOP:
        case -EACCES:
        case -EPERM:
                return 403;
        default:
                return 500;
        }
}

/* ---- MIME types ---- */

/* What a system without /etc/mime.types still serves right, and what it
 * does not know: Debian's media-types 10 has no .yaml (RFC 9512). */
static const struct {
        const char *ext;
        const char *type;
} builtin_types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        /* RFC 9239: modules (.mjs) load only with a JavaScript type. */
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"webmanifest", "application/manifest+json"},
        {"txt", "text/plain; charset=utf-8"},
        {"md", "text/markdown; charset=utf-8"},
        {"csv", "text/csv; charset=utf-8"},
        {"yaml", "application/yaml"},
        {"yml", "application/yaml"},
        {"toml", "application/toml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"avif", "image/avif"},
        {"svg", "image/svg+xml"},
        {"ico", "image/vnd.microsoft.icon"},
        {"pdf", "application/pdf"},
        {"wasm", "application/wasm"},
        {"xml", "application/xml"},
        {"mp4", "video/mp4"},
        {"webm", "video/webm"},
        {"mp3", "audio/mpeg"},
        {"ogg", "audio/ogg"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
        {"ttf", "font/ttf"},
        {"otf", "font/otf"},
        {"zip", "application/zip"},
        {"gz", "application/gzip"},
        {"zst", "application/zstd"},
        {"tar", "application/x-tar"},
};

static int mime_ext_compare(const void *a, const void *b) {
        const mime_ext *x = a, *y = b;
        int c = strcmp(x->ext, y->ext);
        return c ? c : (x->order < y->order ? -1 : x->order > y->order);
}

static mime_map *mime_map_free(mime_map *m) {
        while (m) {
                mime_map *older = m->older;
                for (size_t i = 0; i < m->n; i++)
                        free(m->exts[i].ext);
                for (size_t i = 0; i < m->n_types; i++)
                        free(m->types[i]);
                free(m->exts);
                free(m->types);
                free(m);
                m = older;
        }
        return NULL;
}

/* One line of mime.types: "type ext ext …" ('#' starts a comment). */
static int mime_map_add_line(mime_map *m, char *line, size_t *allocated, size_t *allocated_types) {
        char *save = NULL, *type = strtok_r(line, " \t\r\n", &save);
        if (!type || type[0] == '#' || !strchr(type, '/'))
                return 0;
        char *ext = strtok_r(NULL, " \t\r\n", &save);
        if (!ext || ext[0] == '#')
                return 0;
        /* Text is UTF-8 unless said otherwise: browsers guess otherwise. */
        bool text = strncasecmp(type, "text/", 5) == 0 && !strchr(type, ';');
        if (m->n_types == *allocated_types) {
                size_t n = *allocated_types ? *allocated_types * 2 : 256;
                char **t = reallocarray(m->types, n, sizeof(*t));
                if (!t)
                        return -ENOMEM;
                m->types = t;
                *allocated_types = n;
        }
        char *stored = NULL;
        if (asprintf(&stored, "%s%s", type, text ? "; charset=utf-8" : "") < 0)
                return -ENOMEM;
        m->types[m->n_types++] = stored;
        for (; ext && ext[0] != '#'; ext = strtok_r(NULL, " \t\r\n", &save)) {
                if (m->n == *allocated) {
                        size_t n = *allocated ? *allocated * 2 : 1024;
                        mime_ext *x = reallocarray(m->exts, n, sizeof(*x));
                        if (!x)
                                return -ENOMEM;
                        m->exts = x;
                        *allocated = n;
                }
                char *lower = strdup(ext);
                if (!lower)
                        return -ENOMEM;
                for (char *c = lower; *c; c++)
                        if (*c >= 'A' && *c <= 'Z')
                                *c = (char)(*c - 'A' + 'a');
                m->exts[m->n] = (mime_ext){.ext = lower, .type = stored, .order = m->n};
                m->n++;
        }
        return 0;
}

static int mime_map_load(const char *path, mime_map **ret) {
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        mime_map *m = calloc(1, sizeof(*m));
        char *line = NULL;
        size_t line_size = 0, allocated = 0, allocated_types = 0;
        int r = m ? 0 : -ENOMEM;
        while (r >= 0 && getline(&line, &line_size, f) >= 0)
                r = mime_map_add_line(m, line, &allocated, &allocated_types);
        if (r >= 0 && ferror(f))
                r = -EIO;
        free(line);
        fclose(f);
        if (r < 0) {
                mime_map_free(m);
                return r;
        }
        if (m->n > 1) {
                qsort(m->exts, m->n, sizeof(*m->exts), mime_ext_compare);
                /* Keep the first line's type for an extension listed twice. */
                size_t k = 1;
                for (size_t i = 1; i < m->n; i++) {
                        if (strcmp(m->exts[i].ext, m->exts[k - 1].ext) == 0)
                                free(m->exts[i].ext);
                        else
                                m->exts[k++] = m->exts[i];
                }
                m->n = k;
        }
        *ret = m;
        return 0;
}

static int mime_ext_find(const void *key, const void *elem) {
        return strcmp(key, ((const mime_ext *)elem)->ext);
}

static const char *mime_type(const paf_http_static *s, const char *name) {
        const char *slash = strrchr(name, '/');
        const char *base = slash ? slash + 1 : name;
        const char *dot = strrchr(base, '.');
        if (!dot || dot == base)
                return "application/octet-stream";
        char ext[32];
        size_t n = strlen(dot + 1);
        if (n == 0 || n >= sizeof(ext))
                return "application/octet-stream";
        for (size_t i = 0; i <= n; i++) {
                char c = dot[1 + i];
                ext[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
        if (s->mime && s->mime->n > 0) {
                const mime_ext *x =
                        bsearch(ext, s->mime->exts, s->mime->n, sizeof(*x), mime_ext_find);
                if (x)
                        return x->type;
        }
        for (size_t i = 0; i < sizeof(builtin_types) / sizeof(builtin_types[0]); i++)
                if (strcmp(ext, builtin_types[i].ext) == 0)
                        return builtin_types[i].type;
        return "application/octet-stream";
}

/* Types worth gzipping: text, and the structured text formats; images,
 * archives and fonts other than SVG are compressed already. */
static bool compressible(const char *type) {
        size_t n = strcspn(type, ";");
        if (strncasecmp(type, "text/", 5) == 0)
                return true;
        static const char *const types[] = {
                "application/javascript", "application/json",         "application/xml",
                "application/yaml",       "application/toml",         "application/wasm",
                "image/svg+xml",          "image/vnd.microsoft.icon",
        };
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
                if (strlen(types[i]) == n && strncasecmp(type, types[i], n) == 0)
                        return true;
        return n > 5 && (strncasecmp(type + n - 5, "+json", 5) == 0 ||
                         strncasecmp(type + n - 4, "+xml", 4) == 0);
}

PAF_EXPORT int paf_http_static_set_mime_types(paf_http_static *s, const char *path) {
        if (!s)
                return -EINVAL;
        mime_map *m = NULL;
        if (path) {
                int r = mime_map_load(path, &m);
                if (r < 0)
                        return r;
        }
        pthread_mutex_lock(&s->lock);
        table_flush(s); /* their types are the old map's */
        if (m) {
                m->older = s->mime;
                s->mime = m;
        } else if (s->mime) {
                /* Built-in only: an empty map in front, the older ones kept. */
                mime_map *empty = calloc(1, sizeof(*empty));
                if (empty) {
                        empty->older = s->mime;
                        s->mime = empty;
                }
        }
        pthread_mutex_unlock(&s->lock);
        return 0;
}

/* ---- one response ---- */

typedef struct response {
        paf_http_static *s;
        paf_http_request *req;
        paf_http_static_done_handler_t done;
        void *userdata;
        int status;
        /* The body: from the file of entry at offset, or from mem. */
        file_entry *entry;
        uint64_t offset, remaining;
        const char *mem;
        char *owned; /* freed with the response */
        char *buf;   /* a copied piece of the file */
        size_t buf_size;
        size_t piece; /* bytes of the write in flight */
        uint64_t sent;
        bool writing, pumping, aborted, finished;
        bool chunked; /* no length known before: gzip on the fly */
        /* On-the-fly gzip: the stream, its output (GZIP_PIECE bytes), and
         * whether its end was produced; the input is read into buf. */
        z_stream *z;
        unsigned char *zout;
        bool z_end;
        char small[256]; /* short error bodies */
} response;

static void response_free(response *r) {
        if (r->z) {
                deflateEnd(r->z);
                free(r->z);
        }
        free(r->zout);
        if (r->entry)
                entry_unref(r->entry);
        paf_http_static_unref(r->s);
        free(r->owned);
        free(r->buf);
        free(r);
}

/* The only way out once the response started: finish it (which releases
 * the request), report, free. */
static void response_done(response *r) {
        if (r->done)
                r->done(r->status, r->sent, r->userdata);
        response_free(r);
}

/* Finish the response (which releases the request), report, free. */
static void response_end(response *r) {
        paf_http_request_set_abort_handler(r->req, NULL, NULL);
        /* After an abort or a short body this fails, and the engine closes
         * the connection: the framing it promised cannot be kept. */
        (void)paf_http_response_finish(r->req, NULL);
        response_done(r);
}

static void response_pump(response *r);

static void on_written(paf_http_request *req, int error, void *userdata) {
        response *r = userdata;
        (void)req;
        r->writing = false;
        if (error < 0)
                r->aborted = true;
        else if (r->z)
                r->sent += r->piece; /* the input is counted as read */
        else {
                r->sent += r->piece;
                r->offset += r->piece;
                r->remaining -= r->piece;
                if (r->mem)
                        r->mem += r->piece;
        }
        if (r->finished) {
                response_done(r);
                return;
        }
        if (r->pumping)
                return; /* completed from inside the write: the loop goes on */
        response_pump(r);
}

/* The next piece of the file, copied: short bodies and the tail of long
 * ones. */
static int response_read(response *r, const void **ret) {
        size_t want = (size_t)r->remaining;
        if (r->buf_size < want) {
                char *b = realloc(r->buf, want);
                if (!b)
                        return -ENOMEM;
                r->buf = b;
                r->buf_size = want;
        }
        ssize_t k;
        do
                k = pread(r->entry->fd, r->buf, want, (off_t)r->offset);
        while (k < 0 && errno == EINTR);
        /* Short: the file shrank under us. The length was promised, so the
         * connection cannot carry on. */
        if (k < 0 || (size_t)k < want)
                return -EIO;
        *ret = r->buf;
        return 0;
}

/* Deflates the next piece of the file and writes what came out, once the
 * previous write completed: one piece of input and one of output at a
 * time, whatever the file's size. */
static void gzip_pump(response *r) {
        r->pumping = true;
        z_stream *z = r->z;
        while (!r->writing) {
                if (r->aborted || r->z_end) {
                        r->pumping = false;
                        response_end(r);
                        return;
                }
                if (z->avail_in == 0 && r->remaining > 0) {
                        size_t want = r->remaining < GZIP_PIECE ? (size_t)r->remaining : GZIP_PIECE;
                        ssize_t k;
                        do
                                k = pread(r->entry->fd, r->buf, want, (off_t)r->offset);
                        while (k < 0 && errno == EINTR);
                        if (k <= 0) {
                                /* The file shrank: the stream cannot end well. */
                                r->aborted = true;
                                continue;
                        }
                        r->offset += (uint64_t)k;
                        r->remaining -= (uint64_t)k;
                        z->next_in = (unsigned char *)r->buf;
                        z->avail_in = (unsigned)k;
                }
                z->next_out = r->zout;
                z->avail_out = GZIP_PIECE;
                int k = deflate(z, r->remaining == 0 ? Z_FINISH : Z_NO_FLUSH);
                if (k == Z_STREAM_END)
                        r->z_end = true;
                else if (k != Z_OK && k != Z_BUF_ERROR) {
                        r->aborted = true;
                        continue;
                }
                size_t n = GZIP_PIECE - z->avail_out;
                if (n == 0)
                        continue; /* deflate wants more input */
                r->writing = true;
                r->piece = n;
                if (paf_http_response_write(r->req, r->zout, n, on_written, r) < 0) {
                        r->writing = false;
                        r->aborted = true;
                }
        }
        r->pumping = false;
}

/* Writes the next piece once the previous one completed: the flow's
 * backpressure is what keeps memory flat for files of any size. */
static void response_pump(response *r) {
        if (r->z) {
                gzip_pump(r);
                return;
        }
        r->pumping = true;
        while (!r->writing) {
                if (r->aborted || r->remaining == 0) {
                        r->pumping = false;
                        response_end(r);
                        return;
                }
                int k;
                r->writing = true;
                if (r->mem) {
                        r->piece = (size_t)r->remaining;
                        k = paf_http_response_write(r->req, r->mem, r->piece, on_written, r);
                } else if (r->remaining <= COPY_MAX) {
                        const void *data = NULL;
                        r->piece = (size_t)r->remaining;
                        k = response_read(r, &data);
                        if (k >= 0)
                                k = paf_http_response_write(r->req, data, r->piece, on_written, r);
                } else {
                        r->piece = r->remaining < SEND_PIECE ? (size_t)r->remaining : SEND_PIECE;
                        k = paf_http_response_send_file(r->req, r->entry->fd, r->offset, r->piece,
                                                        on_written, r);
                }
                if (k < 0) {
                        r->writing = false;
                        r->aborted = true;
                } else if (r->writing && r->piece == r->remaining) {
                        /* The last piece: finishing now rather than on its
                         * completion saves a loop iteration per response. The
                         * buffer stays until on_written, which frees it. */
                        r->finished = true;
                        paf_http_request_set_abort_handler(r->req, NULL, NULL);
                        (void)paf_http_response_finish(r->req, NULL);
                }
        }
        r->pumping = false;
}

static void on_abort(paf_http_request *req, int error, void *userdata) {
        response *r = userdata;
        (void)req;
        (void)error;
        r->aborted = true;
        /* A write in flight completes (with an error) and ends it then. */
        if (!r->writing && !r->pumping)
                response_end(r);
}

/* Starts the response; the body comes from r->entry or r->mem, r->remaining bytes. */
static void response_begin(response *r, int status, const paf_http_headers *headers) {
        r->status = status;
        bool head = strcmp(paf_http_request_get_method(r->req), "HEAD") == 0;
        int64_t length = r->chunked ? -1 : (int64_t)r->remaining;
        if (status == 304)
                length = 0;
        if (paf_http_response_start(r->req, status, headers, length) < 0 || head) {
                r->remaining = 0;
                response_end(r);
                return;
        }
        paf_http_request_set_abort_handler(r->req, on_abort, r);
        response_pump(r);
}

static paf_http_headers *headers_new(void) {
        paf_http_headers *h = NULL;
        return paf_http_headers_new(&h) < 0 ? NULL : h;
}

static const char *request_field(paf_http_request *req, const char *wanted) {
        size_t n = paf_http_request_get_n_fields(req);
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_request_get_field(req, i, &name, &value) >= 0 &&
                    strcasecmp(name, wanted) == 0)
                        return value;
        }
        return NULL;
}

static int list_q(const char *list, const char *token);

/* A short answer, with at most one extra header field: HTML for a client
 * that asks for it by name (a browser), plain text for the rest (curl's
 * Accept: *\/\* included). */
static void respond_status(response *r, int status, const char *name, const char *value) {
        const char *accept = request_field(r->req, "Accept");
        bool html = accept && list_q(accept, "text/html") > 0;
        const char *type = html ? "text/html; charset=utf-8" : "text/plain; charset=utf-8";
        const paf_http_headers *fields = html ? r->s->html_fields : r->s->text_fields;
        paf_http_headers *h = NULL;
        if (name || !fields) {
                h = headers_new();
                if (h) {
                        (void)paf_http_headers_add(h, "Content-Type", type);
                        (void)paf_http_headers_add(h, "Vary", "Accept");
                        if (name)
                                (void)paf_http_headers_add(h, name, value);
                }
                fields = h;
        }
        /* Not the file's: an error body comes from memory. */
        entry_unref(r->entry);
        r->entry = NULL;
        const char *reason = paf_http_status_reason(status);
        int k = html ? snprintf(r->small, sizeof(r->small),
                                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%d "
                                "%s</title></head>\n<body><h1>%d %s</h1></body></html>\n",
                                status, reason, status, reason)
                     : snprintf(r->small, sizeof(r->small), "%d %s\n", status, reason);
        if (k < 0 || (size_t)k >= sizeof(r->small))
                k = (int)strlen(r->small);
        r->mem = r->small;
        r->remaining = (uint64_t)k;
        response_begin(r, status, fields);
        paf_http_headers_free(h);
}

/* ---- validators: ETag and dates ---- */

static void make_etag(const struct stat *st, char *buf, size_t size) {
        uint64_t ns = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
        snprintf(buf, size, "\"%" PRIx64 "-%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st->st_ino,
                 (uint64_t)st->st_size, ns);
}

/* Whether the list (If-None-Match, If-Match) holds etag or "*". Weak
 * comparison ignores W/; strong comparison never matches a weak tag. */
static bool etag_list_matches(const char *list, const char *etag, bool strong) {
        size_t elen = strlen(etag);
        const char *p = list;
        for (;;) {
                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                if (!*p)
                        return false;
                if (*p == '*')
                        return true;
                bool weak = false;
                if (p[0] == 'W' && p[1] == '/') {
                        weak = true;
                        p += 2;
                }
                if (*p != '"')
                        return false; /* malformed: no match */
                const char *end = strchr(p + 1, '"');
                if (!end)
                        return false;
                size_t len = (size_t)(end - p) + 1;
                if (len == elen && memcmp(p, etag, len) == 0 && !(strong && weak))
                        return true;
                p = end + 1;
        }
}

/* IMF-fixdate only ("Sun, 06 Nov 1994 08:49:37 GMT"); -1 if not one. */
static int64_t parse_http_date(const char *s) {
        struct tm tm = {};
        const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (!end || *end)
                return -1;
        return (int64_t)timegm(&tm);
}

/* Digits only: strtoull would take signs and spaces. */
static const char *parse_u64(const char *p, uint64_t *ret) {
        if (*p < '0' || *p > '9')
                return NULL;
        uint64_t v = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
                if (v > (UINT64_MAX - 9) / 10)
                        return NULL;
                v = v * 10 + (uint64_t)(*p - '0');
        }
        *ret = v;
        return p;
}

/* A single byte range. 1: [*first, *last] (inclusive); 0: ignore the
 * header (malformed, other unit, several ranges: 200 with everything); -1:
 * unsatisfiable (416). */
static int parse_range(const char *v, uint64_t size, uint64_t *first, uint64_t *last) {
        while (*v == ' ')
                v++;
        if (strncasecmp(v, "bytes", 5) != 0)
                return 0;
        v += 5;
        while (*v == ' ')
                v++;
        if (*v++ != '=')
                return 0;
        while (*v == ' ')
                v++;
        if (strchr(v, ','))
                return 0;
        uint64_t a = 0, b = 0;
        bool suffix = *v == '-';
        if (suffix) {
                v = parse_u64(v + 1, &b);
                if (!v)
                        return 0;
        } else {
                v = parse_u64(v, &a);
                if (!v || *v++ != '-')
                        return 0;
                if (*v >= '0' && *v <= '9') {
                        v = parse_u64(v, &b);
                        if (!v || b < a)
                                return 0;
                } else
                        b = UINT64_MAX;
        }
        while (*v == ' ')
                v++;
        if (*v)
                return 0;
        if (suffix) {
                if (b == 0 || size == 0)
                        return -1;
                *first = b >= size ? 0 : size - b;
                *last = size - 1;
                return 1;
        }
        if (a >= size)
                return -1;
        *first = a;
        *last = b >= size ? size - 1 : b;
        return 1;
}

/* ---- files ---- */

/* The request's fields that serve_file() reads: the first of each name,
 * as paf_http_headers_get() finds it, in one pass over the fields rather
 * than one per name, where the engine keeps them (no copy into a
 * paf_http_headers). */
typedef struct conditions {
        const char *if_match, *if_unmodified_since, *if_none_match, *if_modified_since;
        const char *range, *if_range;
        const char *accept_encoding;
} conditions;

/* A q-value ("1", "0.5", "0.125"), in thousandths; -1 if malformed. */
static int parse_q(const char *p, size_t len) {
        if (len == 0 || (p[0] != '0' && p[0] != '1'))
                return -1;
        int q = (p[0] - '0') * 1000, scale = 100;
        if (len > 1) {
                if (p[1] != '.' || len > 5)
                        return -1;
                for (size_t i = 2; i < len; i++, scale /= 10) {
                        if (p[i] < '0' || p[i] > '9')
                                return -1;
                        q += (p[i] - '0') * scale;
                }
        }
        return q > 1000 ? -1 : q;
}

/* The q-value (0 to 1000) that a list of Accept or Accept-Encoding gives
 * token by name, else what its wildcard gives ("*" for a coding; a media
 * type's own wildcards are not a client asking for it); -1: neither. The
 * highest when named twice. */
static int list_q(const char *list, const char *token) {
        size_t tlen = strlen(token);
        bool media = strchr(token, '/') != NULL;
        int named = -1, wild = -1;
        const char *p = list;
        while (*p) {
                p += strspn(p, " \t,");
                size_t len = strcspn(p, " \t,;");
                if (len == 0)
                        break;
                const char *name = p;
                int q = 1000;
                p += len;
                /* Parameters: only q matters. */
                while (*p == ' ' || *p == '\t' || *p == ';') {
                        p += strspn(p, " \t;");
                        size_t plen = strcspn(p, " \t,;");
                        if (plen >= 2 && (p[0] | 0x20) == 'q' && p[1] == '=')
                                q = parse_q(p + 2, plen - 2);
                        p += plen;
                }
                if (q < 0)
                        continue;
                if (len == tlen && strncasecmp(name, token, len) == 0) {
                        if (q > named)
                                named = q;
                } else if (!media && len == 1 && name[0] == '*') {
                        if (q > wild)
                                wild = q;
                } else if (!media && tlen == 4 && strcasecmp(token, "gzip") == 0 && len == 6 &&
                           strncasecmp(name, "x-gzip", 6) == 0) {
                        if (q > named)
                                named = q;
                }
        }
        return named >= 0 ? named : wild;
}

static void read_conditions(paf_http_request *req, conditions *ret) {
        *ret = (conditions){};
        size_t n = paf_http_request_get_n_fields(req);
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_request_get_field(req, i, &name, &value) < 0)
                        continue;
                const char **slot = NULL;
                /* Most fields (Host, User-Agent …) stop at the first byte. */
                if ((name[0] | 0x20) == 'a') {
                        if (strcasecmp(name, "Accept-Encoding") == 0)
                                slot = &ret->accept_encoding;
                } else if ((name[0] | 0x20) == 'r') {
                        if (strcasecmp(name, "Range") == 0)
                                slot = &ret->range;
                } else if ((name[0] | 0x20) == 'i' && strncasecmp(name, "If-", 3) == 0) {
                        const char *rest = name + 3;
                        if (strcasecmp(rest, "Match") == 0)
                                slot = &ret->if_match;
                        else if (strcasecmp(rest, "None-Match") == 0)
                                slot = &ret->if_none_match;
                        else if (strcasecmp(rest, "Modified-Since") == 0)
                                slot = &ret->if_modified_since;
                        else if (strcasecmp(rest, "Unmodified-Since") == 0)
                                slot = &ret->if_unmodified_since;
                        else if (strcasecmp(rest, "Range") == 0)
                                slot = &ret->if_range;
                }
                if (slot && !*slot)
                        *slot = value;
        }
}

/* Starts the answer with the file of r->entry: with its shared fields
 * (shared), else with ones made for it, and extra (may be NULL) after them. */
static void begin_with_file(response *r, int status, const paf_http_headers *shared, bool full,
                            const char *extra_name, const char *extra_value) {
        if (shared && !extra_name) {
                response_begin(r, status, shared);
                return;
        }
        paf_http_headers *h = file_fields(r->entry, full);
        if (h && extra_name && paf_http_headers_add(h, extra_name, extra_value) < 0)
                h = paf_http_headers_free(h);
        if (!h) {
                respond_status(r, 500, NULL, NULL);
                return;
        }
        response_begin(r, status, h);
        paf_http_headers_free(h);
}

/* The fields of an answer gzipped on the fly (or its 304): a weak ETag,
 * as the bytes are not the file's (RFC 9110 8.8.1). */
static paf_http_headers *gzip_fields(const file_entry *e, bool full) {
        paf_http_headers *h = headers_new();
        if (!h)
                return NULL;
        char etag[sizeof(e->etag) + 2];
        snprintf(etag, sizeof(etag), "W/%s", e->etag);
        int r = paf_http_headers_add(h, "ETag", etag);
        if (r >= 0 && e->last_modified[0])
                r = paf_http_headers_add(h, "Last-Modified", e->last_modified);
        if (r >= 0 && full) {
                r = paf_http_headers_add(h, "Content-Type", e->content_type);
                if (r >= 0)
                        r = paf_http_headers_add(h, "Content-Encoding", "gzip");
        }
        if (r >= 0)
                r = paf_http_headers_add(h, "Vary", "Accept-Encoding");
        return r < 0 ? paf_http_headers_free(h) : h;
}

/* Answers with the fields made for it (h, taken; NULL: 500). */
static void begin_with(response *r, int status, paf_http_headers *h) {
        if (!h) {
                respond_status(r, 500, NULL, NULL);
                return;
        }
        response_begin(r, status, h);
        paf_http_headers_free(h);
}

/* The gzip stream of an answer gzipped on the fly; false (and a 500
 * answered) when it cannot be made. */
static bool gzip_start(response *r) {
        r->z = calloc(1, sizeof(*r->z));
        r->zout = malloc(GZIP_PIECE);
        /* 15 + 16: a gzip wrapper; level 6 and memLevel 8: zlib's defaults,
         * about 270 KiB per response. */
        if (!r->z || !r->zout ||
            deflateInit2(r->z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
                free(r->z);
                r->z = NULL;
                respond_status(r, 500, NULL, NULL);
                return false;
        }
        r->chunked = true;
        return true;
}

/* Starts the gzipped body of r->entry, from its start. */
static void serve_gzip(response *r) {
        r->buf = malloc(GZIP_PIECE);
        r->buf_size = GZIP_PIECE;
        if (!r->buf) {
                respond_status(r, 500, NULL, NULL);
                return;
        }
        if (!gzip_start(r))
                return;
        r->mem = NULL;
        begin_with(r, 200, gzip_fields(r->entry, true));
}

/* The coding to answer with: the precompressed sibling the client gives
 * the highest q-value (br, zstd, gzip on a tie), KIND_IDENTITY for none. */
static unsigned choose_sibling(const file_entry *e, const char *accept_encoding) {
        static const unsigned preferred[] = {KIND_BR, KIND_ZSTD, KIND_GZIP};
        unsigned best = KIND_IDENTITY;
        int best_q = 0;
        for (size_t i = 0; i < sizeof(preferred) / sizeof(preferred[0]); i++) {
                unsigned k = preferred[i];
                if (!(e->siblings & (1u << k)))
                        continue;
                int q = list_q(accept_encoding, kind_coding[k]);
                if (q > best_q) {
                        best = k;
                        best_q = q;
                }
        }
        return best;
}

/* Answers with the file of e (taken), a regular file. */
static void serve_file(response *r, file_entry *e) {
        conditions c;
        read_conditions(r->req, &c);
        bool gzip = false;
        if (c.accept_encoding && e->vary) {
                unsigned kind = choose_sibling(e, c.accept_encoding);
                file_entry *sibling = NULL;
                if (kind != KIND_IDENTITY && file_open(r->s, e->rel, kind, &sibling) >= 0) {
                        if (S_ISREG(sibling->st.st_mode)) {
                                entry_unref(e);
                                e = sibling;
                        } else
                                entry_unref(sibling);
                }
                gzip = e->kind == KIND_IDENTITY && gzip_applies(r->s, e) &&
                       list_q(c.accept_encoding, "gzip") > 0;
        }
        const struct stat *st = &e->st;
        bool get = strcmp(paf_http_request_get_method(r->req), "GET") == 0;
        uint64_t size = (uint64_t)st->st_size;
        const char *etag = e->etag;
        char range_text[96];
        r->entry = e;

        /* RFC 9110 13.2.2: preconditions in this order. */
        if (c.if_match && !etag_list_matches(c.if_match, etag, true)) {
                respond_status(r, 412, NULL, NULL);
                return;
        }
        if (!c.if_match && c.if_unmodified_since) {
                int64_t t = parse_http_date(c.if_unmodified_since);
                if (t >= 0 && st->st_mtim.tv_sec > t) {
                        respond_status(r, 412, NULL, NULL);
                        return;
                }
        }
        bool not_modified = false;
        if (c.if_none_match)
                not_modified = etag_list_matches(c.if_none_match, etag, false);
        else if (c.if_modified_since) {
                int64_t t = parse_http_date(c.if_modified_since);
                not_modified = t >= 0 && st->st_mtim.tv_sec <= t;
        }
        if (not_modified) {
                r->remaining = 0;
                if (gzip)
                        begin_with(r, 304, gzip_fields(e, false));
                else
                        begin_with_file(r, 304, e->not_modified_fields, false, NULL, NULL);
                return;
        }

        r->offset = 0;
        r->remaining = size;
        const char *range = get ? c.range : NULL;
        /* If-Range: the range only applies to the representation the client
         * already holds part of. */
        if (range && c.if_range) {
                bool same = c.if_range[0] == '"'
                                    ? strcmp(c.if_range, etag) == 0
                                    : parse_http_date(c.if_range) == (int64_t)st->st_mtim.tv_sec;
                if (!same)
                        range = NULL;
        }
        uint64_t first, last;
        int k = range ? parse_range(range, size, &first, &last) : 0;
        /* Cached bytes are the body of this very stat; else the fd. */
        if (e->data)
                r->mem = e->data;
        if (k < 0) {
                snprintf(range_text, sizeof(range_text), "bytes */%" PRIu64, size);
                respond_status(r, 416, "Content-Range", range_text);
                return;
        }
        if (k == 0) {
                if (gzip)
                        serve_gzip(r);
                else
                        begin_with_file(r, 200, e->ok_fields, true, NULL, NULL);
                return;
        }
        r->offset = first;
        r->remaining = last - first + 1;
        if (r->mem)
                r->mem += first;
        snprintf(range_text, sizeof(range_text), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first,
                 last, size);
        begin_with_file(r, 206, NULL, true, "Content-Range", range_text);
}

/* ---- directories ---- */

static void html_escape(FILE *f, const char *s) {
        for (; *s; s++)
                switch (*s) {
                case '<':
                        fputs("&lt;", f);
                        break;
                case '>':
                        fputs("&gt;", f);
                        break;
                case '&':
                        fputs("&amp;", f);
                        break;
                case '"':
                        fputs("&quot;", f);
                        break;
                case '\'':
                        fputs("&#39;", f);
                        break;
                default:
                        fputc(*s, f);
                }
}

/* Percent-encodes everything but unreserved characters (and '/' when
 * keep_slash): a name is then one path segment whatever it holds. */
static void url_encode(FILE *f, const char *s, bool keep_slash) {
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p) || (keep_slash && *p == '/'))
                        fputc(*p, f);
                else
                        fprintf(f, "%%%02X", *p);
}

/* Writes s as a JSON string's content: bytes that are not UTF-8 become
 * U+FFFD, so that the document parses whatever the names hold. */
static void json_escape(FILE *f, const char *s) {
        const unsigned char *p = (const unsigned char *)s;
        while (*p) {
                unsigned char c = *p;
                if (c == '"' || c == '\\') {
                        fputc('\\', f);
                        fputc(c, f);
                        p++;
                } else if (c < 0x20) {
                        fprintf(f, "\\u%04x", c);
                        p++;
                } else if (c < 0x80) {
                        fputc(c, f);
                        p++;
                } else {
                        /* A well-formed sequence: its length, its
                         * continuation bytes, no overlong form nor surrogate. */
                        size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
                        if (c >= 0xf5)
                                n = 0;
                        bool ok = n > 0;
                        for (size_t i = 1; ok && i < n; i++)
                                ok = (p[i] & 0xc0) == 0x80;
                        if (ok && n == 3)
                                ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
                        if (ok && n == 4)
                                ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
                        if (ok) {
                                fwrite(p, 1, n, f);
                                p += n;
                        } else {
                                fputs("\\ufffd", f);
                                p++;
                        }
                }
        }
}

typedef struct entry {
        char *name;
        bool dir, file; /* else: another kind (FIFO, device, socket) */
        uint64_t size;
        int64_t mtime;
} entry;

enum { SORT_NAME, SORT_SIZE, SORT_DATE };

typedef struct listing_order {
        int key; /* SORT_* */
        bool desc;
} listing_order;

/* Directories first whatever the order (as file managers do); within a
 * kind by the key, then by name. */
static int entry_compare(const void *a, const void *b, void *userdata) {
        const entry *x = a, *y = b;
        const listing_order *o = userdata;
        if (x->dir != y->dir)
                return x->dir ? -1 : 1;
        int c = 0;
        if (o->key == SORT_SIZE)
                c = x->size < y->size ? -1 : x->size > y->size;
        else if (o->key == SORT_DATE)
                c = x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
        if (c == 0)
                c = strcmp(x->name, y->name);
        return o->desc ? -c : c;
}

/* ?sort=name|size|date&order=asc|desc; unknown keys and values are ignored. */
static listing_order parse_listing_order(const char *target) {
        listing_order o = {SORT_NAME, false};
        const char *q = strchr(target, '?');
        if (!q)
                return o;
        for (const char *p = q + 1; *p;) {
                size_t len = strcspn(p, "&;#");
                if (len == 9 && strncmp(p, "sort=name", 9) == 0)
                        o.key = SORT_NAME;
                else if (len == 9 && strncmp(p, "sort=size", 9) == 0)
                        o.key = SORT_SIZE;
                else if (len == 9 && strncmp(p, "sort=date", 9) == 0)
                        o.key = SORT_DATE;
                else if (len == 9 && strncmp(p, "order=asc", 9) == 0)
                        o.desc = false;
                else if (len == 10 && strncmp(p, "order=desc", 10) == 0)
                        o.desc = true;
                if (p[len] == '#' || !p[len])
                        break;
                p += len + 1;
        }
        return o;
}

/* The URL path of rel: "/" for ".", "/a/b/" otherwise. */
static const char *url_path(const char *rel, char *buf, size_t size) {
        if (strcmp(rel, ".") == 0)
                return "/";
        snprintf(buf, size, "/%s/", rel);
        return buf;
}

/* What a listing says of name, an entry of the directory rel (read
 * through dirfd). A symlink is described by what it leads to beneath the
 * root; false for one that leads nowhere or outside: it would not be
 * served either. */
static bool describe_entry(paf_http_static *s, int dirfd, const char *rel, const char *name,
                           entry *ret) {
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return false;
        if (S_ISLNK(st.st_mode)) {
                char *path = NULL;
                if (asprintf(&path, "%s/%s", rel, name) < 0)
                        return false;
                int fd = open_beneath(s, path);
                free(path);
                if (fd < 0)
                        return false;
                int k = fstat(fd, &st);
                close(fd);
                if (k < 0)
                        return false;
        }
        ret->dir = S_ISDIR(st.st_mode);
        ret->file = S_ISREG(st.st_mode);
        ret->size = (uint64_t)st.st_size;
        ret->mtime = (int64_t)st.st_mtim.tv_sec;
        return true;
}

static void listing_column(FILE *f, const char *label, int key, const listing_order *o) {
        /* The current column's link reverses it; another's sorts by it. */
        bool desc = o->key == key && !o->desc;
        static const char *const keys[] = {"name", "size", "date"};
        fprintf(f, "<th><a href=\"?sort=%s&amp;order=%s\">%s</a>%s</th>", keys[key],
                desc ? "desc" : "asc", label,
                o->key != key ? ""
                : o->desc     ? " &#8595;"
                              : " &#8593;");
}

static void listing_html(FILE *f, const char *path, bool root, const entry *entries, size_t n,
                         const listing_order *o) {
        fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
              "<meta name=\"viewport\" content=\"width=device-width\">\n<title>Index of ",
              f);
        html_escape(f, path);
        fputs("</title>\n<style>body{font-family:sans-serif}td,th{padding:0 1em 0 0;"
              "text-align:left}td.size{text-align:right}</style></head>\n<body><h1>Index of ",
              f);
        html_escape(f, path);
        fputs("</h1>\n<table>\n<thead><tr>", f);
        listing_column(f, "Name", SORT_NAME, o);
        listing_column(f, "Size", SORT_SIZE, o);
        listing_column(f, "Last modified (UTC)", SORT_DATE, o);
        fputs("</tr></thead>\n<tbody>\n", f);
        if (!root)
                fputs("<tr><td><a href=\"../\">../</a></td><td "
                      "class=\"size\">-</td><td></td></tr>\n",
                      f);
        for (size_t i = 0; i < n; i++) {
                const entry *e = &entries[i];
                fputs("<tr><td><a href=\"", f);
                /* "./" first: a name like "a:b" must not read as a scheme. */
                fputs("./", f);
                url_encode(f, e->name, false);
                fputs(e->dir ? "/\">" : "\">", f);
                html_escape(f, e->name);
                fputs(e->dir ? "/</a></td>" : "</a></td>", f);
                if (e->file)
                        fprintf(f, "<td class=\"size\">%" PRIu64 "</td>", e->size);
                else
                        fputs("<td class=\"size\">-</td>", f);
                struct tm tm;
                time_t t = (time_t)e->mtime;
                char iso[32] = "", shown[32] = "";
                if (gmtime_r(&t, &tm)) {
                        strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
                        strftime(shown, sizeof(shown), "%Y-%m-%d %H:%M", &tm);
                }
                fprintf(f, "<td><time datetime=\"%s\">%s</time></td></tr>\n", iso, shown);
        }
        fputs("</tbody></table></body></html>\n", f);
}

/* As nginx's autoindex_format json: what scripts that read it expect. */
static void listing_json(FILE *f, const entry *entries, size_t n) {
        fputs("[", f);
        for (size_t i = 0; i < n; i++) {
                const entry *e = &entries[i];
                char date[64] = "";
                (void)paf_http_format_date((time_t)e->mtime, date, sizeof(date));
                fputs(i ? ",\n{ \"name\":\"" : "\n{ \"name\":\"", f);
                json_escape(f, e->name);
                fprintf(f, "\", \"type\":\"%s\", \"mtime\":\"%s\"",
                        e->dir    ? "directory"
                        : e->file ? "file"
                                  : "other",
                        date);
                if (e->file)
                        fprintf(f, ", \"size\":%" PRIu64, e->size);
                fputs(" }", f);
        }
        fputs("\n]\n", f);
}

/* hide_dotfiles: leave out what would answer 404, so the listing names
 * nothing it would not serve. de_dir is the directory's entry, whose
 * descriptor may be shared: the listing reads through one of its own. */
static void serve_listing(response *r, file_entry *de_dir, const char *rel, bool hide_dotfiles) {
        int dirfd = openat(de_dir->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        entry_unref(de_dir);
        DIR *d = dirfd >= 0 ? fdopendir(dirfd) : NULL;
        if (!d) {
                if (dirfd >= 0)
                        close(dirfd);
                respond_status(r, 500, NULL, NULL);
                return;
        }
        entry *entries = NULL;
        size_t n = 0, allocated = 0;
        struct dirent *de;
        bool failed = false;
        while (n < LISTING_MAX && (de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (hide_dotfiles &&
                    name_is_hidden(de->d_name, strlen(de->d_name), strcmp(rel, ".") == 0 ? 0 : 1))
                        continue;
                if (n == allocated) {
                        size_t m = allocated ? allocated * 2 : 64;
                        entry *e = reallocarray(entries, m, sizeof(*e));
                        if (!e) {
                                failed = true;
                                break;
                        }
                        entries = e;
                        allocated = m;
                }
                if (!describe_entry(r->s, dirfd, rel, de->d_name, &entries[n]))
                        continue;
                entries[n].name = strdup(de->d_name);
                if (!entries[n].name) {
                        failed = true;
                        break;
                }
                n++;
        }
        closedir(d);
        listing_order order = parse_listing_order(paf_http_request_get_target(r->req));
        if (n > 1)
                qsort_r(entries, n, sizeof(*entries), entry_compare, &order);

        const char *accept = request_field(r->req, "Accept");
        bool json = accept && list_q(accept, "application/json") > list_q(accept, "text/html") &&
                    list_q(accept, "application/json") > 0;
        char *body = NULL;
        size_t len = 0;
        FILE *f = failed ? NULL : open_memstream(&body, &len);
        if (f) {
                if (json)
                        listing_json(f, entries, n);
                else {
                        size_t plen = strlen(rel) + 3;
                        char *pbuf = malloc(plen);
                        const char *path = pbuf ? url_path(rel, pbuf, plen) : "/";
                        listing_html(f, path, strcmp(rel, ".") == 0, entries, n, &order);
                        free(pbuf);
                }
                if (fclose(f) != 0) {
                        free(body);
                        body = NULL;
                }
        }
        for (size_t i = 0; i < n; i++)
                free(entries[i].name);
        free(entries);
        if (!body) {
                respond_status(r, 500, NULL, NULL);
                return;
        }

        /* --gzip takes listings as any text answer; with it on, whether one
         * is gzipped depends on Accept-Encoding, and caches must know. */
        const char *ae = r->s->gzip ? request_field(r->req, "Accept-Encoding") : NULL;
        bool gzip = ae && len >= r->s->gzip_min && list_q(ae, "gzip") > 0;
        paf_http_headers *h = headers_new();
        if (h &&
            (paf_http_headers_add(h, "Content-Type",
                                  json ? "application/json" : "text/html; charset=utf-8") < 0 ||
             (gzip && paf_http_headers_add(h, "Content-Encoding", "gzip") < 0) ||
             paf_http_headers_add(h, "Vary", r->s->gzip ? "Accept, Accept-Encoding" : "Accept") <
                     0))
                h = paf_http_headers_free(h);
        r->owned = body;
        if (gzip) {
                if (!gzip_start(r)) {
                        paf_http_headers_free(h);
                        return;
                }
                /* The whole input at once: gzip_pump then only finishes the
                 * stream, a piece of output per write. */
                r->z->next_in = (unsigned char *)body;
                r->z->avail_in = (uInt)len;
                r->remaining = 0;
        } else {
                r->mem = body;
                r->remaining = len;
        }
        begin_with(r, 200, h);
}

/* /dir → /dir/, keeping the query. */
static void redirect_to_dir(response *r, const char *rel) {
        const char *target = paf_http_request_get_target(r->req);
        const char *query = strchr(target, '?');
        char *location = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&location, &len);
        if (!f) {
                respond_status(r, 500, NULL, NULL);
                return;
        }
        fputc('/', f);
        url_encode(f, rel, true);
        fputc('/', f);
        if (query)
                fputs(query, f);
        if (fclose(f) != 0) {
                free(location);
                respond_status(r, 500, NULL, NULL);
                return;
        }
        respond_status(r, 301, "Location", location);
        free(location);
}

static void serve_directory(response *r, file_entry *dir, const char *rel, bool slash) {
        if (!slash) {
                entry_unref(dir);
                redirect_to_dir(r, rel);
                return;
        }
        size_t ilen = strlen(rel) + sizeof("/index.html");
        char *index = malloc(ilen);
        if (!index) {
                entry_unref(dir);
                respond_status(r, 500, NULL, NULL);
                return;
        }
        snprintf(index, ilen, "%s/index.html", rel);
        file_entry *e = NULL;
        int k = file_open(r->s, index, KIND_IDENTITY, &e);
        free(index);
        if (k >= 0) {
                if (S_ISREG(e->st.st_mode)) {
                        entry_unref(dir);
                        serve_file(r, e);
                        return;
                }
                entry_unref(e);
        } else if (k != -ENOENT) {
                entry_unref(dir);
                respond_status(r, errno_to_status(k), NULL, NULL);
                return;
        }
        serve_listing(r, dir, rel, !r->s->dotfiles);
}

PAF_EXPORT int paf_http_static_serve(paf_http_static *s, paf_http_request *req,
                                     paf_http_static_done_handler_t done, void *userdata) {
        if (!s || !req)
                return -EINVAL;
        response *r = malloc(sizeof(*r));
        if (!r) {
                (void)paf_http_respond(req, 500, "text/plain", "500 Internal Server Error\n", 26);
                if (done)
                        done(500, 26, userdata);
                return 0;
        }
        *r = (response){
                .s = paf_http_static_ref(s), .req = req, .done = done, .userdata = userdata};

        const char *method = paf_http_request_get_method(req);
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
                respond_status(r, 405, "Allow", "GET, HEAD");
                return 0;
        }
        char buf[256], *rel = NULL;
        bool slash = false;
        int status = map_target(paf_http_request_get_target(req), buf, sizeof(buf), &rel, &slash);
        if (status == 0 && !s->dotfiles && path_is_hidden(rel)) {
                /* 404, not 403: whether /.git exists is not the client's business. */
                rel_free(rel, buf);
                status = 404;
        }
        if (status != 0) {
                respond_status(r, status, NULL, NULL);
                return 0;
        }
        file_entry *e = NULL;
        int k = file_open(s, rel, KIND_IDENTITY, &e);
        if (k < 0)
                status = errno_to_status(k);
        else if (S_ISDIR(e->st.st_mode)) {
                serve_directory(r, e, rel, slash);
                rel_free(rel, buf);
                return 0;
        } else if (!S_ISREG(e->st.st_mode))
                status = 403; /* FIFOs, devices, sockets */
        else if (slash)
                status = 404; /* "/file.txt/" */
        else {
                serve_file(r, e);
                rel_free(rel, buf);
                return 0;
        }
        entry_unref(e);
        rel_free(rel, buf);
        respond_status(r, status, NULL, NULL);
        return 0;
}

PAF_EXPORT void paf_http_static_handler(paf_http_request *req, void *userdata) {
        if (paf_http_static_serve(userdata, req, NULL, NULL) < 0)
                (void)paf_http_respond(req, 500, "text/plain", "500 Internal Server Error\n", 26);
}
