/* tools/cookies.c — paf get's cookie jar: curl's Netscape file format, RFC 6265 Set-Cookie. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cookies.h"

/* curl's limits: a longer name, value or line is not a cookie it keeps. */
#define MAX_COOKIE_LINE 5000
#define MAX_NAME_VALUE 4096

typedef struct cookie {
        char *name, *value;
        char *domain; /* without a leading dot */
        char *path;
        bool tailmatch; /* a Domain cookie: the domain and its subdomains */
        bool secure, httponly;
        int64_t expires;  /* 0: for the session */
        uint64_t created; /* order of creation, as curl keeps it */
} cookie;

struct cookie_jar {
        cookie **v;
        size_t n, size;
        uint64_t last_created;
};

static void cookie_free(cookie *c) {
        if (!c)
                return;
        free(c->name);
        free(c->value);
        free(c->domain);
        free(c->path);
        free(c);
}

int cookie_jar_new(cookie_jar **ret) {
        cookie_jar *j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
}

cookie_jar *cookie_jar_free(cookie_jar *j) {
        if (!j)
                return NULL;
        for (size_t i = 0; i < j->n; i++)
                cookie_free(j->v[i]);
        free(j->v);
        free(j);
        return NULL;
}

size_t cookie_jar_count(cookie_jar *j) {
        return j ? j->n : 0;
}

static bool expired(const cookie *c, time_t now) {
        return c->expires != 0 && c->expires <= (int64_t)now;
}

static void jar_remove_at(cookie_jar *j, size_t i) {
        cookie_free(j->v[i]);
        memmove(j->v + i, j->v + i + 1, (j->n - i - 1) * sizeof(*j->v));
        j->n--;
}

static void jar_remove_expired(cookie_jar *j, time_t now) {
        for (size_t i = 0; i < j->n;)
                if (expired(j->v[i], now))
                        jar_remove_at(j, i);
                else
                        i++;
}

/* Takes c. A cookie with the same name, domain and path replaces the old
 * one (RFC 6265 5.3 step 11: keeping its creation time); one that has
 * expired only removes it. */
static int jar_store(cookie_jar *j, cookie *c, time_t now) {
        for (size_t i = 0; i < j->n; i++) {
                cookie *o = j->v[i];
                if (strcmp(o->name, c->name) == 0 && strcasecmp(o->domain, c->domain) == 0 &&
                    strcmp(o->path, c->path) == 0) {
                        c->created = o->created;
                        jar_remove_at(j, i);
                        break;
                }
        }
        if (expired(c, now)) {
                cookie_free(c);
                return 0;
        }
        if (j->n == j->size) {
                size_t size = j->size ? j->size * 2 : 16;
                cookie **v = realloc(j->v, size * sizeof(*v));
                if (!v) {
                        cookie_free(c);
                        return -ENOMEM;
                }
                j->v = v;
                j->size = size;
        }
        if (c->created == 0)
                c->created = ++j->last_created;
        j->v[j->n++] = c;
        return 1;
}

/* ---- matching ---- */

static bool is_ip_address(const char *host) {
        /* IPv6 literals have ':'; IPv4 ones are digits and dots only. */
        if (strchr(host, ':'))
                return true;
        return host[0] && strspn(host, "0123456789.") == strlen(host);
}

/* RFC 6265 5.1.3, the domain without its leading dot. */
static bool domain_match(const char *host, const char *domain, bool tailmatch) {
        if (strcasecmp(host, domain) == 0)
                return true;
        if (!tailmatch || is_ip_address(host))
                return false;
        size_t h = strlen(host), d = strlen(domain);
        return h > d && host[h - d - 1] == '.' && strcasecmp(host + h - d, domain) == 0;
}

/* RFC 6265 5.1.4: the request path (query cut) matches the cookie's. */
static bool path_match(const char *request, const char *path) {
        size_t rn = strcspn(request, "?#"), pn = strlen(path);
        if (pn > rn || strncmp(request, path, pn) != 0)
                return false;
        return pn == rn || path[pn - 1] == '/' || request[pn] == '/';
}

/* RFC 6265 5.1.4: the default path, up to the last '/' of the request's. */
static char *default_path(const char *request) {
        size_t n = strcspn(request, "?#");
        if (n == 0 || request[0] != '/')
                return strdup("/");
        const char *last = request;
        for (size_t i = 0; i < n; i++)
                if (request[i] == '/')
                        last = request + i;
        if (last == request)
                return strdup("/");
        return strndup(request, (size_t)(last - request));
}

bool cookie_secure_context(const char *scheme, const char *host) {
        if (scheme && strcasecmp(scheme, "https") == 0)
                return true;
        return host && (strcasecmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0 ||
                        strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0);
}

/* curl's rule for a Domain attribute: a dot inside it, or "localhost". */
static bool bad_domain(const char *domain) {
        if (strcasecmp(domain, "localhost") == 0)
                return false;
        const char *dot = strchr(domain, '.');
        return !dot || dot[1] == '\0';
}

/* ---- dates (RFC 6265 5.1.1) ---- */

static bool is_delimiter(unsigned char c) {
        return c == 0x09 || (c >= 0x20 && c <= 0x2f) || (c >= 0x3b && c <= 0x40) ||
               (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
}

static int leading_digits(const char *t, size_t n, size_t min, size_t max, int *ret) {
        size_t i = 0;
        int v = 0;
        while (i < n && isdigit((unsigned char)t[i])) {
                v = v * 10 + (t[i] - '0');
                i++;
        }
        if (i < min || i > max)
                return -1;
        *ret = v;
        return (int)i;
}

/* The date an Expires attribute names, as seconds since the epoch. */
static int parse_cookie_date(const char *s, int64_t *ret) {
        static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
        bool have_time = false, have_day = false, have_month = false, have_year = false;
        int hour = 0, minute = 0, second = 0, day = 0, month = 0, year = 0;
        const char *p = s;
        while (*p) {
                while (*p && is_delimiter((unsigned char)*p))
                        p++;
                const char *t = p;
                while (*p && !is_delimiter((unsigned char)*p))
                        p++;
                size_t n = (size_t)(p - t);
                if (n == 0)
                        break;
                int v, k;
                if (!have_time && (k = leading_digits(t, n, 1, 2, &hour)) > 0 && (size_t)k < n &&
                    t[k] == ':') {
                        int k2 = leading_digits(t + k + 1, n - k - 1, 1, 2, &minute);
                        if (k2 > 0 && (size_t)(k + 1 + k2) < n && t[k + 1 + k2] == ':' &&
                            leading_digits(t + k + 2 + k2, n - k - 2 - k2, 1, 2, &second) > 0) {
                                have_time = true;
                                continue;
                        }
                }
                if (!have_day && leading_digits(t, n, 1, 2, &v) > 0 &&
                    (n <= 2 || !isdigit((unsigned char)t[2]))) {
                        day = v;
                        have_day = true;
                        continue;
                }
                if (!have_month && n >= 3) {
                        bool found = false;
                        for (int m = 0; m < 12; m++)
                                if (strncasecmp(t, months + 3 * m, 3) == 0) {
                                        month = m;
                                        found = true;
                                        break;
                                }
                        if (found) {
                                have_month = true;
                                continue;
                        }
                }
                if (!have_year && leading_digits(t, n, 2, 4, &v) > 0) {
                        year = v;
                        have_year = true;
                        continue;
                }
        }
        if (!have_time || !have_day || !have_month || !have_year)
                return -EINVAL;
        if (year >= 70 && year <= 99)
                year += 1900;
        else if (year < 70)
                year += 2000;
        if (day < 1 || day > 31 || year < 1601 || hour > 23 || minute > 59 || second > 59)
                return -EINVAL;
        struct tm tm = {.tm_year = year - 1900,
                        .tm_mon = month,
                        .tm_mday = day,
                        .tm_hour = hour,
                        .tm_min = minute,
                        .tm_sec = second};
        time_t t = timegm(&tm);
        if (t == (time_t)-1)
                return -EINVAL;
        *ret = (int64_t)t;
        return 0;
}

/* ---- Set-Cookie ---- */

static bool has_control(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
                        return true;
                else if (s[i] == 0x7f)
                        return true;
        return false;
}

/* [s, s + n) without the blanks around it. */
static void trim(const char **s, size_t *n) {
        while (*n > 0 && (**s == ' ' || **s == '\t')) {
                (*s)++;
                (*n)--;
        }
        while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
                (*n)--;
}

int cookie_jar_add(cookie_jar *j, const char *set_cookie, const char *host, const char *path,
                   bool secure, time_t now) {
        if (strlen(set_cookie) > MAX_COOKIE_LINE)
                return 0;
        const char *p = set_cookie;
        size_t n = strcspn(p, ";");
        const char *eq = memchr(p, '=', n);
        if (!eq)
                return 0; /* RFC 6265 5.2 step 2: no name-value pair */
        const char *name = p, *value = eq + 1;
        size_t name_len = (size_t)(eq - p), value_len = n - name_len - 1;
        trim(&name, &name_len);
        trim(&value, &value_len);
        if (name_len == 0 || name_len + value_len > MAX_NAME_VALUE || has_control(name, name_len) ||
            has_control(value, value_len))
                return 0;

        cookie *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->name = strndup(name, name_len);
        c->value = strndup(value, value_len);
        if (!c->name || !c->value) {
                cookie_free(c);
                return -ENOMEM;
        }
        bool have_max_age = false, bad = false;
        char *domain = NULL, *cpath = NULL;
        p += n;
        while (*p == ';' && !bad) {
                p++;
                n = strcspn(p, ";");
                const char *a = p, *v = NULL;
                size_t an = n, vn = 0;
                const char *aeq = memchr(p, '=', n);
                if (aeq) {
                        an = (size_t)(aeq - p);
                        v = aeq + 1;
                        vn = n - an - 1;
                        trim(&v, &vn);
                }
                trim(&a, &an);
                p += n;
                if (an == 6 && strncasecmp(a, "domain", 6) == 0 && v) {
                        /* RFC 6265 5.2.3: an empty one is ignored; a leading dot is dropped. */
                        if (vn > 0 && *v == '.') {
                                v++;
                                vn--;
                        }
                        if (vn > 0) {
                                free(domain);
                                domain = strndup(v, vn);
                                if (!domain)
                                        bad = true;
                        }
                } else if (an == 4 && strncasecmp(a, "path", 4) == 0 && v) {
                        /* RFC 6265 5.2.4: one not starting with '/' is the default. */
                        if (vn > 0 && *v == '/') {
                                free(cpath);
                                cpath = strndup(v, vn);
                                if (!cpath)
                                        bad = true;
                        }
                } else if (an == 7 && strncasecmp(a, "max-age", 7) == 0 && v) {
                        char *end;
                        errno = 0;
                        long long age = vn > 0 ? strtoll(v, &end, 10) : 0;
                        if (vn > 0 && errno == 0 && end == v + vn &&
                            (isdigit((unsigned char)*v) || *v == '-')) {
                                have_max_age = true;
                                /* 0 and below: already expired (1 second is the epoch's first). */
                                c->expires = age <= 0 ? 1 : (int64_t)now + age;
                        }
                } else if (an == 7 && strncasecmp(a, "expires", 7) == 0 && v && !have_max_age) {
                        char date[128];
                        int64_t t;
                        if (vn < sizeof(date)) {
                                memcpy(date, v, vn);
                                date[vn] = '\0';
                                if (parse_cookie_date(date, &t) == 0)
                                        c->expires = t <= 0 ? 1 : t;
                        }
                } else if (an == 6 && strncasecmp(a, "secure", 6) == 0) {
                        /* curl: an insecure origin cannot set a Secure cookie. */
                        if (!secure)
                                bad = true;
                        c->secure = true;
                } else if (an == 8 && strncasecmp(a, "httponly", 8) == 0)
                        c->httponly = true;
        }

        if (!bad && domain) {
                /* RFC 6265 5.3 step 6: the host must be in the domain. */
                if (bad_domain(domain) || !domain_match(host, domain, true))
                        bad = true;
                else {
                        c->domain = domain;
                        domain = NULL;
                        /* An address is no domain: the cookie is for it alone. */
                        c->tailmatch = !is_ip_address(host);
                }
        } else if (!bad) {
                c->domain = strdup(host);
                if (!c->domain)
                        bad = true;
        }
        free(domain);
        if (!bad) {
                c->path = cpath ? cpath : default_path(path);
                cpath = NULL;
                if (!c->path)
                        bad = true;
        }
        free(cpath);
        if (bad) {
                cookie_free(c);
                return 0;
        }
        return jar_store(j, c, now);
}

/* ---- the Netscape file ---- */

static int load_line(cookie_jar *j, char *line, time_t now) {
        bool httponly = false;
        if (strncasecmp(line, "Set-Cookie:", 11) == 0)
                /* A header line has no host: curl keeps it for any host. */
                return 0;
        if (strncmp(line, "#HttpOnly_", 10) == 0) {
                httponly = true;
                line += 10;
        } else if (line[0] == '#' || line[0] == '\0')
                return 0;
        char *field[7] = {0};
        size_t n = 0;
        for (char *p = line; n < 7;) {
                field[n++] = p;
                char *tab = strchr(p, '\t');
                if (!tab)
                        break;
                *tab = '\0';
                p = tab + 1;
        }
        /* Six fields: an empty value, as curl reads it. */
        if (n == 6)
                field[n++] = (char *)"";
        if (n != 7)
                return 0;
        cookie *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        const char *domain = field[0];
        if (domain[0] == '.')
                domain++;
        c->domain = strdup(domain);
        c->tailmatch = strcasecmp(field[1], "TRUE") == 0;
        c->path = strdup(field[2]);
        c->secure = strcasecmp(field[3], "TRUE") == 0;
        c->expires = strtoll(field[4], NULL, 10);
        c->name = strdup(field[5]);
        c->value = strdup(field[6]);
        c->httponly = httponly;
        if (!c->domain || !c->path || !c->name || !c->value) {
                cookie_free(c);
                return -ENOMEM;
        }
        if (!*c->domain || !*c->name) {
                cookie_free(c);
                return 0;
        }
        return jar_store(j, c, now);
}

int cookie_jar_load(cookie_jar *j, FILE *f, time_t now) {
        char line[MAX_COOKIE_LINE + 2];
        while (fgets(line, sizeof(line), f)) {
                size_t n = strlen(line);
                if (n > 0 && line[n - 1] != '\n' && !feof(f)) {
                        /* Too long for curl too: skip the rest of it. */
                        int ch;
                        while ((ch = fgetc(f)) != EOF && ch != '\n')
                                ;
                        continue;
                }
                while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                        line[--n] = '\0';
                int r = load_line(j, line, now);
                if (r < 0)
                        return r;
        }
        if (ferror(f))
                return -EIO;
        jar_remove_expired(j, now);
        return 0;
}

/* ---- sending ---- */

static int send_order(const void *a, const void *b) {
        const cookie *x = *(const cookie *const *)a, *y = *(const cookie *const *)b;
        size_t xl = strlen(x->path), yl = strlen(y->path);
        if (xl != yl)
                return xl > yl ? -1 : 1;
        xl = strlen(x->domain);
        yl = strlen(y->domain);
        if (xl != yl)
                return xl > yl ? -1 : 1;
        xl = strlen(x->name);
        yl = strlen(y->name);
        if (xl != yl)
                return xl > yl ? -1 : 1;
        /* curl's last rule: the newest first. */
        return x->created > y->created ? -1 : x->created < y->created ? 1 : 0;
}

int cookie_jar_header(cookie_jar *j, const char *host, const char *path, bool secure, time_t now,
                      char **ret) {
        *ret = NULL;
        jar_remove_expired(j, now);
        cookie **list = calloc(j->n + 1, sizeof(*list));
        if (!list)
                return -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < j->n; i++) {
                cookie *c = j->v[i];
                if ((c->secure && !secure) || !domain_match(host, c->domain, c->tailmatch) ||
                    !path_match(path, c->path))
                        continue;
                list[k++] = c;
        }
        if (k == 0) {
                free(list);
                return 0;
        }
        qsort(list, k, sizeof(*list), send_order);
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        if (!f) {
                free(list);
                return -ENOMEM;
        }
        for (size_t i = 0; i < k; i++)
                fprintf(f, "%s%s=%s", i ? "; " : "", list[i]->name, list[i]->value);
        free(list);
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

/* ---- saving ---- */

static int newest_first(const void *a, const void *b) {
        const cookie *x = *(const cookie *const *)a, *y = *(const cookie *const *)b;
        return x->created > y->created ? -1 : x->created < y->created ? 1 : 0;
}

int cookie_jar_save(cookie_jar *j, FILE *f, time_t now) {
        jar_remove_expired(j, now);
        fputs("# Netscape HTTP Cookie File\n"
              "# https://curl.se/docs/http-cookies.html\n"
              "# This file was generated by libcurl! Edit at your own risk.\n\n",
              f);
        cookie **list = calloc(j->n + 1, sizeof(*list));
        if (!list)
                return -ENOMEM;
        if (j->n > 0)
                memcpy(list, j->v, j->n * sizeof(*list));
        qsort(list, j->n, sizeof(*list), newest_first);
        for (size_t i = 0; i < j->n; i++) {
                const cookie *c = list[i];
                fprintf(f, "%s%s%s\t%s\t%s\t%s\t%" PRId64 "\t%s\t%s\n",
                        c->httponly ? "#HttpOnly_" : "", c->tailmatch ? "." : "", c->domain,
                        c->tailmatch ? "TRUE" : "FALSE", c->path, c->secure ? "TRUE" : "FALSE",
                        c->expires, c->name, c->value);
        }
        free(list);
        return ferror(f) ? -EIO : 0;
}
