/* tools/static.c — static files for `paf serve`: safe paths, validators, ranges, streaming. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "static.h"

/* One pread and one write per piece: large enough to keep syscalls cheap on
 * big files, small enough that a read never stalls the event loop. */
#define PIECE_SIZE (128u * 1024u)
/* A directory with more entries than this is listed truncated. */
#define LISTING_MAX 100000

struct static_root {
        int fd;
        /* For the fallback check when the kernel has no openat2. */
        char *real;
        bool dotfiles; /* serve names starting with '.' (off by default) */
};

/* Set once openat2 answered ENOSYS (kernels before 5.6, some seccomp filters). */
static bool no_openat2;

int static_root_new(const char *path, static_root **ret) {
        if (!path || !ret)
                return -EINVAL;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        static_root *root = calloc(1, sizeof(*root));
        char *real = realpath(path, NULL);
        if (!root || !real) {
                int r = root ? -errno : -ENOMEM;
                free(root);
                free(real);
                close(fd);
                return r;
        }
        root->fd = fd;
        root->real = real;
        *ret = root;
        return 0;
}

void static_root_set_dotfiles(static_root *root, bool allow) {
        if (root)
                root->dotfiles = allow;
}

static_root *static_root_free(static_root *root) {
        if (!root)
                return NULL;
        close(root->fd);
        free(root->real);
        free(root);
        return NULL;
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

int static_map_target(const char *target, char **ret_rel, bool *ret_slash) {
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
        char *out = malloc(len + 2);
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
                                if (lo < 0) {
                                        free(out);
                                        return 400;
                                }
                                c = (char)(hi << 4 | lo);
                                i += 3;
                                /* A NUL would cut the path; an encoded '/' would make
                                 * "a%2Fb" and "a/b" the same file under two names. */
                                if (c == '\0') {
                                        free(out);
                                        return 400;
                                }
                                if (c == '/') {
                                        free(out);
                                        return 404;
                                }
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
                                free(out);
                                return 403;
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

bool static_path_is_hidden(const char *rel) {
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
static int open_beneath(static_root *root, const char *rel) {
        /* O_NONBLOCK: opening a FIFO someone left under the root must not
         * block the loop; it is refused after fstat anyway. */
        int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
        if (!no_openat2) {
                struct open_how how = {
                        .flags = (uint64_t)flags,
                        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
                };
                long fd = syscall(SYS_openat2, root->fd, rel, &how, sizeof(how));
                if (fd >= 0)
                        return (int)fd;
                if (errno != ENOSYS)
                        return -errno;
                no_openat2 = true;
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

static const char *mime_type(const char *name) {
        static const struct {
                const char *ext;
                const char *type;
        } table[] = {
                {"html", "text/html; charset=utf-8"},
                {"htm", "text/html; charset=utf-8"},
                {"css", "text/css; charset=utf-8"},
                {"js", "text/javascript; charset=utf-8"},
                {"mjs", "text/javascript; charset=utf-8"},
                {"json", "application/json"},
                {"txt", "text/plain; charset=utf-8"},
                {"md", "text/markdown; charset=utf-8"},
                {"csv", "text/csv; charset=utf-8"},
                {"png", "image/png"},
                {"jpg", "image/jpeg"},
                {"jpeg", "image/jpeg"},
                {"gif", "image/gif"},
                {"webp", "image/webp"},
                {"svg", "image/svg+xml"},
                {"ico", "image/x-icon"},
                {"pdf", "application/pdf"},
                {"wasm", "application/wasm"},
                {"xml", "application/xml"},
                {"mp4", "video/mp4"},
                {"webm", "video/webm"},
                {"mp3", "audio/mpeg"},
                {"woff", "font/woff"},
                {"woff2", "font/woff2"},
                {"zip", "application/zip"},
                {"gz", "application/gzip"},
        };
        const char *slash = strrchr(name, '/');
        const char *base = slash ? slash + 1 : name;
        const char *dot = strrchr(base, '.');
        if (dot && dot != base)
                for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                        if (strcasecmp(dot + 1, table[i].ext) == 0)
                                return table[i].type;
        return "application/octet-stream";
}

/* ---- one response ---- */

typedef struct response {
        paf_http_request *req;
        static_done_handler_t done;
        void *userdata;
        int status;
        /* The body: from fd at offset, or from mem. */
        int fd;
        uint64_t offset, remaining;
        const char *mem;
        char *owned; /* freed with the response */
        char *buf;
        size_t piece; /* bytes of the write in flight */
        uint64_t sent;
        bool writing, pumping, aborted, finished;
        char small[96]; /* short error bodies */
} response;

static void response_free(response *r) {
        if (r->fd >= 0)
                close(r->fd);
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

/* Writes the next piece once the previous one completed: the flow's
 * backpressure is what keeps memory flat for files of any size. */
static void response_pump(response *r) {
        r->pumping = true;
        while (!r->writing) {
                if (r->aborted || r->remaining == 0) {
                        r->pumping = false;
                        response_end(r);
                        return;
                }
                const void *data;
                if (r->mem) {
                        data = r->mem;
                        r->piece = (size_t)r->remaining;
                } else {
                        size_t want = r->remaining < PIECE_SIZE ? (size_t)r->remaining : PIECE_SIZE;
                        ssize_t k;
                        do
                                k = pread(r->fd, r->buf, want, (off_t)r->offset);
                        while (k < 0 && errno == EINTR);
                        if (k <= 0) {
                                /* The file shrank or failed under us: the length was
                                 * promised, so the connection cannot carry on. */
                                r->aborted = true;
                                continue;
                        }
                        data = r->buf;
                        r->piece = (size_t)k;
                }
                r->writing = true;
                if (paf_http_response_write(r->req, data, r->piece, on_written, r) < 0) {
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

/* Starts the response; the body comes from r->fd or r->mem, r->remaining bytes. */
static void response_begin(response *r, int status, const paf_http_headers *headers) {
        r->status = status;
        bool head = strcmp(paf_http_request_get_method(r->req), "HEAD") == 0;
        int64_t length = (int64_t)r->remaining;
        if (status == 304)
                length = 0;
        if (paf_http_response_start(r->req, status, headers, length) < 0 || head) {
                r->remaining = 0;
                response_end(r);
                return;
        }
        if (r->fd >= 0 && r->remaining > 0) {
                size_t size = r->remaining < PIECE_SIZE ? (size_t)r->remaining : PIECE_SIZE;
                r->buf = malloc(size);
                if (!r->buf) {
                        r->aborted = true;
                        response_end(r);
                        return;
                }
        }
        paf_http_request_set_abort_handler(r->req, on_abort, r);
        response_pump(r);
}

static paf_http_headers *headers_new(void) {
        paf_http_headers *h = NULL;
        return paf_http_headers_new(&h) < 0 ? NULL : h;
}

/* A short text answer, with at most one extra header field. */
static void respond_status(response *r, int status, const char *name, const char *value) {
        paf_http_headers *h = headers_new();
        if (h) {
                (void)paf_http_headers_add(h, "Content-Type", "text/plain; charset=utf-8");
                if (name)
                        (void)paf_http_headers_add(h, name, value);
        }
        int k = snprintf(r->small, sizeof(r->small), "%d %s\n", status,
                         paf_http_status_reason(status));
        r->mem = r->small;
        r->remaining = (uint64_t)k;
        response_begin(r, status, h);
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

static void serve_file(response *r, int fd, const struct stat *st, const char *name) {
        const paf_http_headers *in = paf_http_request_get_headers(r->req);
        bool get = strcmp(paf_http_request_get_method(r->req), "GET") == 0;
        uint64_t size = (uint64_t)st->st_size;
        char etag[80], date[40], range_text[96];
        make_etag(st, etag, sizeof(etag));
        if (paf_http_format_date(st->st_mtim.tv_sec, date, sizeof(date)) < 0)
                date[0] = '\0';
        r->fd = fd;

        /* RFC 9110 13.2.2: preconditions in this order. */
        const char *v = paf_http_headers_get(in, "If-Match");
        if (v && !etag_list_matches(v, etag, true)) {
                respond_status(r, 412, NULL, NULL);
                return;
        }
        if (!v && (v = paf_http_headers_get(in, "If-Unmodified-Since"))) {
                int64_t t = parse_http_date(v);
                if (t >= 0 && st->st_mtim.tv_sec > t) {
                        respond_status(r, 412, NULL, NULL);
                        return;
                }
        }
        bool not_modified = false;
        if ((v = paf_http_headers_get(in, "If-None-Match")))
                not_modified = etag_list_matches(v, etag, false);
        else if ((v = paf_http_headers_get(in, "If-Modified-Since"))) {
                int64_t t = parse_http_date(v);
                not_modified = t >= 0 && st->st_mtim.tv_sec <= t;
        }

        paf_http_headers *h = headers_new();
        if (!h) {
                respond_status(r, 500, NULL, NULL);
                return;
        }
        (void)paf_http_headers_add(h, "ETag", etag);
        if (date[0])
                (void)paf_http_headers_add(h, "Last-Modified", date);
        if (not_modified) {
                r->remaining = 0;
                response_begin(r, 304, h);
                paf_http_headers_free(h);
                return;
        }
        (void)paf_http_headers_add(h, "Content-Type", mime_type(name));
        (void)paf_http_headers_add(h, "Accept-Ranges", "bytes");

        int status = 200;
        r->offset = 0;
        r->remaining = size;
        const char *range = get ? paf_http_headers_get(in, "Range") : NULL;
        if (range) {
                /* If-Range: the range only applies to the representation the
                 * client already holds part of. */
                const char *if_range = paf_http_headers_get(in, "If-Range");
                if (if_range) {
                        bool same = if_range[0] == '"' ? strcmp(if_range, etag) == 0
                                                       : parse_http_date(if_range) ==
                                                                 (int64_t)st->st_mtim.tv_sec;
                        if (!same)
                                range = NULL;
                }
        }
        uint64_t first, last;
        int k = range ? parse_range(range, size, &first, &last) : 0;
        if (k < 0) {
                snprintf(range_text, sizeof(range_text), "bytes */%" PRIu64, size);
                paf_http_headers_free(h);
                respond_status(r, 416, "Content-Range", range_text);
                return;
        }
        if (k > 0) {
                status = 206;
                r->offset = first;
                r->remaining = last - first + 1;
                snprintf(range_text, sizeof(range_text), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
                         first, last, size);
                (void)paf_http_headers_add(h, "Content-Range", range_text);
        }
        response_begin(r, status, h);
        paf_http_headers_free(h);
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

typedef struct entry {
        char *name;
        bool dir;
} entry;

static int entry_compare(const void *a, const void *b) {
        const entry *x = a, *y = b;
        if (x->dir != y->dir)
                return x->dir ? -1 : 1;
        return strcmp(x->name, y->name);
}

/* The URL path of rel: "/" for ".", "/a/b/" otherwise. */
static const char *url_path(const char *rel, char *buf, size_t size) {
        if (strcmp(rel, ".") == 0)
                return "/";
        snprintf(buf, size, "/%s/", rel);
        return buf;
}

/* hide_dotfiles: leave out what would answer 404, so the listing names
 * nothing it would not serve. */
static void serve_listing(response *r, int dirfd, const char *rel, bool hide_dotfiles) {
        DIR *d = fdopendir(dirfd);
        if (!d) {
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
                bool dir = de->d_type == DT_DIR;
                if (de->d_type == DT_UNKNOWN) {
                        struct stat st;
                        dir = fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                              S_ISDIR(st.st_mode);
                }
                entries[n].name = strdup(de->d_name);
                if (!entries[n].name) {
                        failed = true;
                        break;
                }
                entries[n++].dir = dir;
        }
        closedir(d);
        if (n > 1)
                qsort(entries, n, sizeof(*entries), entry_compare);

        char *html = NULL;
        size_t len = 0;
        FILE *f = failed ? NULL : open_memstream(&html, &len);
        if (f) {
                size_t plen = strlen(rel) + 3;
                char *pbuf = malloc(plen);
                const char *path = pbuf ? url_path(rel, pbuf, plen) : "/";
                fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ", f);
                html_escape(f, path);
                fputs("</title></head>\n<body><h1>Index of ", f);
                html_escape(f, path);
                fputs("</h1>\n<ul>\n", f);
                if (strcmp(rel, ".") != 0)
                        fputs("<li><a href=\"../\">../</a></li>\n", f);
                for (size_t i = 0; i < n; i++) {
                        fputs("<li><a href=\"", f);
                        /* "./" first: a name like "a:b" must not read as a scheme. */
                        fputs("./", f);
                        url_encode(f, entries[i].name, false);
                        fputs(entries[i].dir ? "/\">" : "\">", f);
                        html_escape(f, entries[i].name);
                        fputs(entries[i].dir ? "/</a></li>\n" : "</a></li>\n", f);
                }
                fputs("</ul></body></html>\n", f);
                free(pbuf);
                if (fclose(f) != 0) {
                        free(html);
                        html = NULL;
                }
        }
        for (size_t i = 0; i < n; i++)
                free(entries[i].name);
        free(entries);
        if (!html) {
                respond_status(r, 500, NULL, NULL);
                return;
        }

        paf_http_headers *h = headers_new();
        if (h)
                (void)paf_http_headers_add(h, "Content-Type", "text/html; charset=utf-8");
        r->owned = html;
        r->mem = html;
        r->remaining = len;
        response_begin(r, 200, h);
        paf_http_headers_free(h);
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

static void serve_directory(response *r, int dirfd, static_root *root, const char *rel,
                            bool slash) {
        if (!slash) {
                close(dirfd);
                redirect_to_dir(r, rel);
                return;
        }
        size_t ilen = strlen(rel) + sizeof("/index.html");
        char *index = malloc(ilen);
        if (!index) {
                close(dirfd);
                respond_status(r, 500, NULL, NULL);
                return;
        }
        snprintf(index, ilen, "%s/index.html", rel);
        int fd = open_beneath(root, index);
        free(index);
        if (fd >= 0) {
                struct stat st;
                if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
                        close(dirfd);
                        serve_file(r, fd, &st, "index.html");
                        return;
                }
                close(fd);
        } else if (fd != -ENOENT) {
                close(dirfd);
                respond_status(r, errno_to_status(fd), NULL, NULL);
                return;
        }
        serve_listing(r, dirfd, rel, !root->dotfiles);
}

void static_serve(static_root *root, paf_http_request *req, static_done_handler_t done,
                  void *userdata) {
        response *r = calloc(1, sizeof(*r));
        if (!r) {
                (void)paf_http_respond(req, 500, "text/plain", "500 Internal Server Error\n", 26);
                if (done)
                        done(500, 26, userdata);
                return;
        }
        *r = (response){.req = req, .done = done, .userdata = userdata, .fd = -1};

        const char *method = paf_http_request_get_method(req);
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
                respond_status(r, 405, "Allow", "GET, HEAD");
                return;
        }
        char *rel = NULL;
        bool slash = false;
        int status = static_map_target(paf_http_request_get_target(req), &rel, &slash);
        if (status == 0 && !root->dotfiles && static_path_is_hidden(rel)) {
                /* 404, not 403: whether /.git exists is not the client's business. */
                free(rel);
                status = 404;
        }
        if (status != 0) {
                respond_status(r, status, NULL, NULL);
                return;
        }
        int fd = open_beneath(root, rel);
        struct stat st;
        if (fd < 0)
                status = errno_to_status(fd);
        else if (fstat(fd, &st) < 0)
                status = errno_to_status(-errno);
        else if (S_ISDIR(st.st_mode)) {
                serve_directory(r, fd, root, rel, slash);
                free(rel);
                return;
        } else if (!S_ISREG(st.st_mode))
                status = 403; /* FIFOs, devices, sockets */
        else if (slash)
                status = 404; /* "/file.txt/" */
        else {
                serve_file(r, fd, &st, rel);
                free(rel);
                return;
        }
        if (fd >= 0)
                close(fd);
        free(rel);
        respond_status(r, status, NULL, NULL);
}
