/* core/http/headers.c — header lists, dates, status reasons, limits. */
#include <limits.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "core/http/client-internal.h"
#include "core/http/headers-internal.h"

typedef struct field {
        char *name; /* one allocation: the name, its NUL, then the value */
        char *value;
} field;

/* Fields held in the object itself: a request's or a response's list
 * rarely has more, and then costs one allocation, not two. */
#define INLINE_FIELDS 8

struct paf_http_headers {
        field *fields; /* inline_fields until there are more */
        size_t n, allocated;
        int version;  /* of the message they came with (10, 11, 20); 0: made by the program */
        char *reason; /* of the response they came with, NULL if none */
        /* http_headers_freeze(): the fields as HTTP/1.1 text, until a change. */
        char *wire;
        size_t wire_len;
        unsigned wire_names;
        field inline_fields[INLINE_FIELDS];
};

static void wire_drop(paf_http_headers *h) {
        free(h->wire);
        h->wire = NULL;
}

PAF_EXPORT int paf_http_headers_new(paf_http_headers **ret) {
        if (!ret)
                return -EINVAL;
        paf_http_headers *h = malloc(sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->fields = h->inline_fields;
        h->n = 0;
        h->allocated = INLINE_FIELDS;
        h->version = 0;
        h->reason = NULL;
        h->wire = NULL;
        *ret = h;
        return 0;
}

PAF_EXPORT int paf_http_headers_get_version(const paf_http_headers *h) {
        if (!h)
                return -EINVAL;
        return h->version;
}

void http_headers_set_version(paf_http_headers *h, int version) {
        if (h)
                h->version = version;
}

PAF_EXPORT const char *paf_http_headers_get_reason(const paf_http_headers *h) {
        return h ? h->reason : NULL;
}

int http_headers_set_reason(paf_http_headers *h, const char *reason, size_t len) {
        char *r = NULL;
        if (reason && !(r = strndup(reason, len)))
                return -ENOMEM;
        free(h->reason);
        h->reason = r;
        return 0;
}

PAF_EXPORT paf_http_headers *paf_http_headers_free(paf_http_headers *h) {
        if (!h)
                return NULL;
        for (size_t i = 0; i < h->n; i++)
                free(h->fields[i].name);
        if (h->fields != h->inline_fields)
                free(h->fields);
        free(h->reason);
        free(h->wire);
        free(h);
        return NULL;
}

/* RFC 9110 token characters, for field names. */
static const bool tchar[256] = {
        ['0' ... '9'] = true, ['A' ... 'Z'] = true, ['a' ... 'z'] = true, ['!'] = true,
        ['#'] = true,         ['$'] = true,         ['%'] = true,         ['&'] = true,
        ['\''] = true,        ['*'] = true,         ['+'] = true,         ['-'] = true,
        ['.'] = true,         ['^'] = true,         ['_'] = true,         ['`'] = true,
        ['|'] = true,         ['~'] = true,
};

/* What ends a field value: its NUL, and what may not be in one, CR, LF and
 * the other control characters but tab (they would split the message). */
static const bool value_end[256] = {
        [0x00 ... 0x08] = true,
        [0x0a ... 0x1f] = true,
        [0x7f] = true,
};

/* The length of name, or 0 when it is no token. */
static size_t name_length(const char *name) {
        if (!name)
                return 0;
        const unsigned char *p = (const unsigned char *)name;
        while (tchar[*p])
                p++;
        return *p ? 0 : (size_t)(p - (const unsigned char *)name);
}

/* The length of value, or SIZE_MAX when it holds what it may not. */
static size_t value_length(const char *value) {
        if (!value)
                return SIZE_MAX;
        const unsigned char *p = (const unsigned char *)value;
        while (!value_end[*p])
                p++;
        return *p ? SIZE_MAX : (size_t)(p - (const unsigned char *)value);
}

PAF_EXPORT int paf_http_headers_add(paf_http_headers *h, const char *name, const char *value) {
        size_t nlen = name_length(name), vlen = value_length(value);
        if (!h || nlen == 0 || vlen == SIZE_MAX)
                return -EINVAL;
        wire_drop(h);
        if (h->n == h->allocated) {
                size_t n = h->allocated * 2;
                field *f;
                if (h->fields == h->inline_fields) {
                        f = reallocarray(NULL, n, sizeof(*f));
                        if (f)
                                memcpy(f, h->fields, h->n * sizeof(*f));
                } else
                        f = reallocarray(h->fields, n, sizeof(*f));
                if (!f)
                        return -ENOMEM;
                h->fields = f;
                h->allocated = n;
        }
        char *s = malloc(nlen + vlen + 2);
        if (!s)
                return -ENOMEM;
        memcpy(s, name, nlen + 1);
        memcpy(s + nlen + 1, value, vlen + 1);
        h->fields[h->n++] = (field){s, s + nlen + 1};
        return 0;
}

PAF_EXPORT int paf_http_headers_remove(paf_http_headers *h, const char *name) {
        if (!h || !name)
                return -EINVAL;
        size_t j = 0;
        int removed = 0;
        wire_drop(h);
        for (size_t i = 0; i < h->n; i++) {
                if (strcasecmp(h->fields[i].name, name) == 0) {
                        free(h->fields[i].name);
                        removed++;
                } else
                        h->fields[j++] = h->fields[i];
        }
        h->n = j;
        return removed;
}

PAF_EXPORT int paf_http_headers_set(paf_http_headers *h, const char *name, const char *value) {
        if (!h || name_length(name) == 0 || value_length(value) == SIZE_MAX)
                return -EINVAL;
        paf_http_headers_remove(h, name);
        return paf_http_headers_add(h, name, value);
}

PAF_EXPORT const char *paf_http_headers_next(const paf_http_headers *h, const char *name,
                                             size_t *iter) {
        if (!h || !name || !iter)
                return NULL;
        /* Equal names have equal first bytes but for the case of a letter:
         * that test spares most strcasecmp calls. */
        unsigned char first = (unsigned char)name[0] | 0x20;
        for (size_t i = *iter; i < h->n; i++)
                if (((unsigned char)h->fields[i].name[0] | 0x20) == first &&
                    strcasecmp(h->fields[i].name, name) == 0) {
                        *iter = i + 1;
                        return h->fields[i].value;
                }
        *iter = h->n;
        return NULL;
}

PAF_EXPORT const char *paf_http_headers_get(const paf_http_headers *h, const char *name) {
        size_t iter = 0;
        return paf_http_headers_next(h, name, &iter);
}

PAF_EXPORT size_t paf_http_headers_count(const paf_http_headers *h) {
        return h ? h->n : 0;
}

PAF_EXPORT int paf_http_headers_get_nth(const paf_http_headers *h, size_t i, const char **name,
                                        const char **value) {
        if (!h || i >= h->n)
                return -EINVAL;
        if (name)
                *name = h->fields[i].name;
        if (value)
                *value = h->fields[i].value;
        return 0;
}

PAF_EXPORT bool paf_http_headers_has_token(const paf_http_headers *h, const char *name,
                                           const char *token) {
        if (!h || !name || !token)
                return false;
        size_t want = strlen(token), iter = 0;
        for (const char *v; (v = paf_http_headers_next(h, name, &iter));) {
                const char *p = v;
                while (*p) {
                        p += strspn(p, " \t,");
                        size_t n = strcspn(p, ",");
                        size_t m = n;
                        while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t'))
                                m--;
                        if (m == want && strncasecmp(p, token, want) == 0)
                                return true;
                        p += n;
                }
        }
        return false;
}

PAF_EXPORT int paf_http_format_date(int64_t unix_seconds, char *buf, size_t size) {
        static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
        static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        if (!buf || size < 30)
                return -EINVAL;
        time_t t = (time_t)unix_seconds;
        struct tm tm;
        if (!gmtime_r(&t, &tm))
                return -ERANGE;
        /* IMF-fixdate (RFC 9110 5.6.7), locale independent. */
        snprintf(buf, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
                 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        return 0;
}

PAF_EXPORT const char *paf_http_status_reason(int status) {
        switch (status) {
        case 100:
                return "Continue";
        case 101:
                return "Switching Protocols";
        case 200:
                return "OK";
        case 201:
                return "Created";
        case 202:
                return "Accepted";
        case 204:
                return "No Content";
        case 206:
                return "Partial Content";
        case 301:
                return "Moved Permanently";
        case 302:
                return "Found";
        case 303:
                return "See Other";
        case 304:
                return "Not Modified";
        case 307:
                return "Temporary Redirect";
        case 308:
                return "Permanent Redirect";
        case 400:
                return "Bad Request";
        case 401:
                return "Unauthorized";
        case 403:
                return "Forbidden";
        case 404:
                return "Not Found";
        case 405:
                return "Method Not Allowed";
        case 408:
                return "Request Timeout";
        case 411:
                return "Length Required";
        case 412:
                return "Precondition Failed";
        case 413:
                return "Content Too Large";
        case 414:
                return "URI Too Long";
        case 416:
                return "Range Not Satisfiable";
        case 417:
                return "Expectation Failed";
        case 426:
                return "Upgrade Required";
        case 431:
                return "Request Header Fields Too Large";
        case 500:
                return "Internal Server Error";
        case 501:
                return "Not Implemented";
        case 502:
                return "Bad Gateway";
        case 503:
                return "Service Unavailable";
        case 504:
                return "Gateway Timeout";
        case 505:
                return "HTTP Version Not Supported";
        }
        if (status >= 100 && status < 200)
                return "Informational";
        if (status >= 200 && status < 300)
                return "Success";
        if (status >= 300 && status < 400)
                return "Redirection";
        if (status >= 400 && status < 500)
                return "Client Error";
        return "Server Error";
}

/* [http] in paf.conf; conf.c declares the keys and their defaults. */
PAF_EXPORT int paf_http_limits_load(paf_http_limits *ret, paf_registry *reg) {
        if (!ret)
                return -EINVAL;
        static const struct {
                const char *key;
                size_t offset;
                int size;       /* sizeof the member */
                uint64_t scale; /* seconds to microseconds */
        } keys[] = {
                {"max-header-bytes", offsetof(paf_http_limits, max_header_bytes), sizeof(size_t),
                 1},
                {"max-headers", offsetof(paf_http_limits, max_headers), sizeof(unsigned), 1},
                {"max-body", offsetof(paf_http_limits, max_body), sizeof(uint64_t), 1},
                {"max-connections", offsetof(paf_http_limits, max_connections), sizeof(unsigned),
                 1},
                {"header-timeout", offsetof(paf_http_limits, header_timeout_usec), sizeof(uint64_t),
                 1000000},
                {"idle-timeout", offsetof(paf_http_limits, idle_timeout_usec), sizeof(uint64_t),
                 1000000},
                {"body-timeout", offsetof(paf_http_limits, body_timeout_usec), sizeof(uint64_t),
                 1000000},
                {"write-timeout", offsetof(paf_http_limits, write_timeout_usec), sizeof(uint64_t),
                 1000000},
        };
        /* The defaults live in conf.c's table: a registry without a file
         * still answers with them. */
        paf_registry *own = NULL;
        if (!reg) {
                int r = paf_registry_new(&own);
                if (r < 0)
                        return r;
                reg = own;
        }
        paf_http_limits l = {};
        int r = 0;
        for (size_t i = 0; i < ELEMENTSOF(keys) && r >= 0; i++) {
                paf_value v;
                r = paf_registry_get_option(reg, "http", keys[i].key, &v);
                if (r < 0)
                        break;
                /* conf.c's ranges keep every value within what its member
                 * holds; a value that would not fit is refused, never
                 * wrapped or clamped into another meaning. */
                uint64_t x;
                if (v.type != PAF_TYPE_INT || v.integer < 0 ||
                    __builtin_mul_overflow((uint64_t)v.integer, keys[i].scale, &x) ||
                    (keys[i].size == sizeof(unsigned) && x > UINT_MAX)) {
                        r = -ERANGE;
                        break;
                }
                char *dst = (char *)&l + keys[i].offset;
                if (keys[i].size == sizeof(unsigned)) {
                        unsigned u = (unsigned)x;
                        memcpy(dst, &u, sizeof(u));
                } else
                        memcpy(dst, &x, sizeof(x));
        }
        paf_registry_unref(own);
        if (r < 0)
                return r;
        *ret = l;
        return 0;
}

PAF_EXPORT int paf_http2_settings_load(paf_http2_settings *ret, paf_registry *reg) {
        if (!ret)
                return -EINVAL;
        static const struct {
                const char *key;
                size_t offset;
                int size; /* sizeof the member */
        } keys[] = {
                {"max-concurrent-streams", offsetof(paf_http2_settings, max_concurrent_streams),
                 sizeof(uint32_t)},
                {"initial-window", offsetof(paf_http2_settings, initial_window), sizeof(uint32_t)},
                {"connection-window", offsetof(paf_http2_settings, connection_window),
                 sizeof(uint32_t)},
                {"reset-burst", offsetof(paf_http2_settings, reset_burst), sizeof(uint32_t)},
                {"reset-rate", offsetof(paf_http2_settings, reset_rate), sizeof(uint32_t)},
                {"max-output", offsetof(paf_http2_settings, max_output), sizeof(size_t)},
        };
        paf_registry *own = NULL;
        if (!reg) {
                int r = paf_registry_new(&own);
                if (r < 0)
                        return r;
                reg = own;
        }
        paf_http2_settings h = {};
        paf_value v;
        int r = paf_registry_get_option(reg, "http2", "enabled", &v);
        if (r >= 0) {
                if (v.type != PAF_TYPE_BOOL)
                        r = -EINVAL;
                else
                        h.enabled = v.boolean;
        }
        for (size_t i = 0; i < ELEMENTSOF(keys) && r >= 0; i++) {
                r = paf_registry_get_option(reg, "http2", keys[i].key, &v);
                if (r < 0)
                        break;
                /* conf.c's ranges keep every value within its member. */
                if (v.type != PAF_TYPE_INT || v.integer < 0 ||
                    (keys[i].size == sizeof(uint32_t) && (uint64_t)v.integer > UINT32_MAX)) {
                        r = -ERANGE;
                        break;
                }
                char *dst = (char *)&h + keys[i].offset;
                if (keys[i].size == sizeof(uint32_t)) {
                        uint32_t u = (uint32_t)v.integer;
                        memcpy(dst, &u, sizeof(u));
                } else {
                        size_t z = (size_t)v.integer;
                        memcpy(dst, &z, sizeof(z));
                }
        }
        paf_registry_unref(own);
        if (r < 0)
                return r;
        *ret = h;
        return 0;
}

bool http_field_is_servers_own(const char *name, size_t len) {
        static const char *const names[] = {
                "Content-Length",   "Transfer-Encoding", "Connection", "Keep-Alive",
                "Proxy-Connection", "Upgrade",           "TE",         "Trailer",
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strlen(names[i]) == len && strncasecmp(name, names[i], len) == 0)
                        return true;
        return false;
}

static unsigned wire_name(const char *name, size_t len) {
        switch (len) {
        case 4:
                return strcasecmp(name, "Date") == 0 ? HTTP_WIRE_DATE : 0;
        case 6:
                return strcasecmp(name, "Server") == 0 ? HTTP_WIRE_SERVER : 0;
        case 10:
                return strcasecmp(name, "Connection") == 0 ? HTTP_WIRE_CONNECTION : 0;
        case 12:
                return strcasecmp(name, "Content-Type") == 0 ? HTTP_WIRE_CONTENT_TYPE : 0;
        case 14:
                return strcasecmp(name, "Content-Length") == 0 ? HTTP_WIRE_CONTENT_LENGTH : 0;
        case 17:
                return strcasecmp(name, "Transfer-Encoding") == 0 ? HTTP_WIRE_TRANSFER_ENCODING
                                                                   : 0;
        }
        return 0;
}

int http_headers_freeze(paf_http_headers *h) {
        if (!h)
                return -EINVAL;
        if (h->wire)
                return 0;
        size_t len = 0;
        for (size_t i = 0; i < h->n; i++)
                len += strlen(h->fields[i].name) + strlen(h->fields[i].value) + 4;
        char *w = malloc(len + 1), *at = w;
        if (!w)
                return -ENOMEM;
        unsigned names = 0;
        for (size_t i = 0; i < h->n; i++) {
                size_t nl = strlen(h->fields[i].name), vl = strlen(h->fields[i].value);
                names |= wire_name(h->fields[i].name, nl);
                memcpy(at, h->fields[i].name, nl);
                at += nl;
                memcpy(at, ": ", 2);
                at += 2;
                memcpy(at, h->fields[i].value, vl);
                at += vl;
                memcpy(at, "\r\n", 2);
                at += 2;
        }
        *at = '\0';
        h->wire = w;
        h->wire_len = len;
        h->wire_names = names;
        return 0;
}

const char *http_headers_wire(const paf_http_headers *h, size_t *len, unsigned *names) {
        if (!h || !h->wire)
                return NULL;
        *len = h->wire_len;
        *names = h->wire_names;
        return h->wire;
}
