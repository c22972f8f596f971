/* core/conf.c — paf.conf: read with inih, checked against the options of the core and of plugins.
 */
#include <ctype.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <strings.h>
#include <sys/types.h>

#include "paf-internal.h"

/* Used when the program gives no file. Without a "load" key, every plugin
 * found on the search path is loaded. */
static const char default_config[] =
        "# paf.conf built into libpaf, used when no file is given.\n"
        "[paf]\n"
        "# No \"load\": every plugin found on the search path is loaded.\n";
#define DEFAULT_CONFIG_NAME "built-in paf.conf"

typedef struct conf_entry {
        char *key;
        char *value;       /* as the file says it */
        char *resolved;    /* a relative path from the file's directory; NULL: value as it is */
        unsigned line;     /* the last line of the value (continuations) */
        unsigned key_line; /* where the key is */
} conf_entry;

typedef struct conf_section {
        char *name;
        unsigned line; /* of its first header */
        conf_entry *entries;
        size_t n_entries;
} conf_section;

struct paf_config {
        char *file; /* as named in messages */
        conf_section *sections;
        size_t n_sections;
        char **plugin_path; /* NULL-terminated once non-empty */
        size_t n_plugin_path;
        char **load;
        size_t n_load;
        bool has_load;
        int log_level; /* -1: not set */
        char **listen; /* [listen.NAME] section names, in file order */
        size_t n_listen;
        char **headers; /* [serve] header, one "Name: value" each */
        size_t n_headers;
};

/* ---- reading ---- */

typedef enum line_kind {
        LINE_OTHER, /* blank, comment, or an error inih reports */
        LINE_SECTION,
        LINE_KEY,
        LINE_CONTINUATION,
} line_kind;

typedef struct parser {
        paf_config *config;
        const char *dir; /* of the file, for relative plugin-path entries; NULL: none */

        FILE *file; /* read from file, or else from text */
        const char *text;
        char *buf;
        size_t buf_size;

        /* inih is built without line numbers for its handler: the reader
         * counts, and classifies each line as inih will, so that the handler
         * knows where it is and whether it sees a continuation. */
        unsigned line;
        line_kind kind;
        bool after_key;
        ssize_t section; /* current section, -1 before the first header */
        ssize_t entry;   /* the last key's entry in it, -1 if none */

        int io_error;
        unsigned long_line;
        int long_limit;

        int error_code; /* the first error the handler found */
        unsigned error_line;
        char error_message[sizeof(((paf_error *)NULL)->message)];
} parser;

typedef struct core_option {
        paf_option_spec decl;
        /* 0: a single value, a later line replaces it. Else a list: every
         * line adds items, and this joins them in the stored value. */
        char list_join;
        /* Checks the value (a list: one line's worth) and applies it to the
         * config being read. < 0 after parser_error(). */
        int (*apply)(parser *p, const char *section, const char *key, const char *value);
        /* A list's items so far, NULL-terminated: what the option reads as. */
        char *const *(*items)(const paf_config *c);
        /* A file: relative to the directory of the configuration file, as
         * plugin-path is, not to wherever the program happens to run. */
        bool path;
} core_option;

typedef struct core_section {
        const char *name;
        const core_option *options;
} core_section;

static int parser_error(parser *p, int code, const char *format, ...) PAF_PRINTF(3, 4);
static int parser_error(parser *p, int code, const char *format, ...) {
        if (p->error_code < 0)
                return p->error_code;
        char reason[sizeof(p->error_message) - 64]; /* leaves room for "FILE:LINE: " */
        va_list ap;
        va_start(ap, format);
        vsnprintf(reason, sizeof(reason), format, ap);
        va_end(ap);
        snprintf(p->error_message, sizeof(p->error_message), "%s:%u: %s", p->config->file, p->line,
                 reason);
        p->error_code = code;
        p->error_line = p->line;
        return code;
}

/* ---- did you mean ---- */

/* Optimal string alignment distance: a swap of two neighbours counts once
 * ("tpc" for "tcp"). */
static unsigned edit_distance(const char *a, const char *b) {
        size_t n = strlen(a), m = strlen(b);
        if (n > 64 || m > 64)
                return UINT_MAX;
        unsigned d[65][65];
        for (size_t i = 0; i <= n; i++)
                d[i][0] = (unsigned)i;
        for (size_t j = 0; j <= m; j++)
                d[0][j] = (unsigned)j;
        for (size_t i = 1; i <= n; i++)
                for (size_t j = 1; j <= m; j++) {
                        unsigned cost = a[i - 1] != b[j - 1];
                        unsigned v = d[i - 1][j - 1] + cost;
                        if (d[i - 1][j] + 1 < v)
                                v = d[i - 1][j] + 1;
                        if (d[i][j - 1] + 1 < v)
                                v = d[i][j - 1] + 1;
                        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                            d[i - 2][j - 2] + 1 < v)
                                v = d[i - 2][j - 2] + 1;
                        d[i][j] = v;
                }
        return d[n][m];
}

typedef struct suggestion {
        const char *word;
        const char *best;
        unsigned distance;
} suggestion;

static void suggest(suggestion *s, const char *candidate) {
        if (!candidate)
                return;
        unsigned d = edit_distance(s->word, candidate);
        if (d <= 2 && (!s->best || d < s->distance)) {
                s->best = candidate;
                s->distance = d;
        }
}

/* " (did you mean \"x\"?)" or "", in buf. */
static const char *suggestion_text(const suggestion *s, char *buf, size_t size) {
        if (!s->best)
                return "";
        snprintf(buf, size, " (did you mean \"%s\"?)", s->best);
        return buf;
}

/* ---- values ---- */

int paf_option_parse(paf_type type, const char *s, paf_value *ret, char *reason, size_t size) {
        static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false",
                                                                                    "off", "0"};
        char dummy[1];
        if (!reason) {
                reason = dummy;
                size = sizeof(dummy);
        }
        if (!s || !ret)
                return -EINVAL;

        switch (type) {
        case PAF_TYPE_STRING:
                *ret = PAF_VALUE_STRING(s);
                return 0;
        case PAF_TYPE_INT: {
                _Static_assert(sizeof(long long) == sizeof(int64_t), "strtoll() covers int64_t");
                /* strtoll() would skip leading blanks; a value is the whole string. */
                if (!*s || isspace((unsigned char)*s)) {
                        snprintf(reason, size, "\"%s\" is not an integer", s);
                        return -EINVAL;
                }
                char *end;
                errno = 0;
                long long v = strtoll(s, &end, 10);
                if (*end) {
                        snprintf(reason, size, "\"%s\" is not an integer", s);
                        return -EINVAL;
                }
                if (errno == ERANGE) {
                        snprintf(reason, size, "\"%s\" is out of range for an integer", s);
                        return -ERANGE;
                }
                *ret = PAF_VALUE_INT((int64_t)v);
                return 0;
        }
        case PAF_TYPE_BOOL:
                for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                        if (strcasecmp(s, yes[i]) == 0) {
                                *ret = PAF_VALUE_BOOL(true);
                                return 0;
                        }
                        if (strcasecmp(s, no[i]) == 0) {
                                *ret = PAF_VALUE_BOOL(false);
                                return 0;
                        }
                }
                snprintf(reason, size, "\"%s\" is not a boolean (yes/no, true/false, on/off, 1/0)",
                         s);
                return -EINVAL;
        default:
                snprintf(reason, size, "options of type %s are not supported",
                         paf_type_to_string(type));
                return -EINVAL;
        }
}

/* "value out of range (MIN-MAX)": what every numeric option says, whether
 * the number overflowed int64_t or only left the option's range. */
static int out_of_range(const paf_option_spec *o, char *reason, size_t size) {
        bool ranged = o->flags & PAF_OPTION_RANGE;
        snprintf(reason, size, "value out of range (%" PRId64 "-%" PRId64 ")",
                 ranged ? o->min : INT64_MIN, ranged ? o->max : INT64_MAX);
        return -ERANGE;
}

static bool is_choice(const paf_option_spec *o, const char *s) {
        for (const char *const *c = o->choices; *c; c++)
                if (strcmp(*c, s) == 0)
                        return true;
        return false;
}

/* "\"fsat\" is not one of: fast, slow (did you mean \"fast\"?)" */
static int not_a_choice(const paf_option_spec *o, const char *s, char *reason, size_t size) {
        suggestion sg = {.word = s};
        size_t n = (size_t)snprintf(reason, size, "\"%s\" is not one of: ", s);
        for (const char *const *c = o->choices; *c; c++) {
                suggest(&sg, *c);
                if (n < size)
                        n += (size_t)snprintf(reason + n, size - n, "%s%s",
                                              c == o->choices ? "" : ", ", *c);
        }
        char buf[128];
        if (n < size)
                snprintf(reason + n, size - n, "%s", suggestion_text(&sg, buf, sizeof(buf)));
        return -EINVAL;
}

int paf_option_check(const paf_option_spec *o, const char *s, paf_value *ret, char *reason,
                     size_t size) {
        char dummy[1];
        if (!reason) {
                reason = dummy;
                size = sizeof(dummy);
        }
        if (!o || !s || !ret)
                return -EINVAL;
        paf_value v;
        int r = paf_option_parse(o->type, s, &v, reason, size);
        if (r == -ERANGE && o->type == PAF_TYPE_INT)
                return out_of_range(o, reason, size);
        if (r < 0)
                return r;
        if (o->type == PAF_TYPE_INT && (o->flags & PAF_OPTION_RANGE) &&
            (v.integer < o->min || v.integer > o->max))
                return out_of_range(o, reason, size);
        if (o->type == PAF_TYPE_STRING && o->choices && !is_choice(o, v.string))
                return not_a_choice(o, v.string, reason, size);
        if (o->check) {
                *reason = '\0';
                r = o->check(&v, reason, size);
                if (r < 0) {
                        if (!*reason)
                                snprintf(reason, size, "\"%s\": %s", s, strerror(-r));
                        return r;
                }
        }
        *ret = v;
        return 0;
}

/* ---- the config object ---- */

static int strv_push(char ***v, size_t *n, const char *s, size_t len) {
        char *copy = strndup(s, len);
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

static void strv_free(char **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

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

static paf_config *config_free(paf_config *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_sections; i++) {
                conf_section *s = &c->sections[i];
                for (size_t j = 0; j < s->n_entries; j++) {
                        free(s->entries[j].key);
                        free(s->entries[j].value);
                        free(s->entries[j].resolved);
                }
                free(s->entries);
                free(s->name);
        }
        free(c->sections);
        strv_free(c->plugin_path, c->n_plugin_path);
        strv_free(c->load, c->n_load);
        strv_free(c->headers, c->n_headers);
        strv_free(c->listen, c->n_listen);
        free(c->file);
        free(c);
        return NULL;
}

static conf_section *config_find_section(paf_config *c, const char *name) {
        for (size_t i = 0; c && i < c->n_sections; i++)
                if (strcmp(c->sections[i].name, name) == 0)
                        return &c->sections[i];
        return NULL;
}

static conf_entry *section_find_entry(conf_section *s, const char *key) {
        for (size_t i = 0; s && i < s->n_entries; i++)
                if (strcmp(s->entries[i].key, key) == 0)
                        return &s->entries[i];
        return NULL;
}

void paf_registry_free_config(paf_registry *reg) {
        reg->config = config_free(reg->config);
}

const char *const *paf_config_get_plugin_path(paf_registry *reg) {
        if (!reg || !reg->config || reg->config->n_plugin_path == 0)
                return NULL;
        return (const char *const *)reg->config->plugin_path;
}

const char *const *paf_config_get_load(paf_registry *reg) {
        static const char *const none[] = {NULL};
        if (!reg || !reg->config || !reg->config->has_load)
                return NULL;
        return reg->config->n_load > 0 ? (const char *const *)reg->config->load : none;
}

/* ---- the core sections ---- */

static bool is_separator(char c, const char *separators) {
        return c && strchr(separators, c);
}

static int apply_plugin_path(parser *p, const char *section, const char *key, const char *value) {
        paf_config *c = p->config;
        for (const char *s = value; *s;) {
                size_t len = strcspn(s, ":");
                if (len > 0) {
                        int r;
                        /* Relative to the file that says it, not to wherever the
                         * program happens to run. */
                        if (p->dir && s[0] != '/') {
                                char *abs;
                                if (asprintf(&abs, "%s/%.*s", p->dir, (int)len, s) < 0)
                                        return parser_error(p, -ENOMEM, "out of memory");
                                r = strv_push(&c->plugin_path, &c->n_plugin_path, abs, strlen(abs));
                                free(abs);
                        } else
                                r = strv_push(&c->plugin_path, &c->n_plugin_path, s, len);
                        if (r < 0)
                                return parser_error(p, r, "[%s] key \"%s\": out of memory", section,
                                                    key);
                }
                s += len;
                if (*s == ':')
                        s++;
        }
        return 0;
}

static int apply_load(parser *p, const char *section, const char *key, const char *value) {
        paf_config *c = p->config;
        c->has_load = true;
        for (const char *s = value; *s;) {
                while (is_separator(*s, " \t,"))
                        s++;
                size_t len = strcspn(s, " \t,");
                if (len == 0)
                        break;
                char *name = strndup(s, len);
                if (!name)
                        return parser_error(p, -ENOMEM, "out of memory");
                int r = 0;
                if (!paf_name_is_valid(name))
                        r = parser_error(p, -EINVAL,
                                         "[%s] key \"%s\": \"%s\" is not a valid plugin name "
                                         "([a-z0-9_-]+)",
                                         section, key, name);
                else {
                        bool dup = false;
                        for (size_t i = 0; i < c->n_load; i++)
                                dup = dup || strcmp(c->load[i], name) == 0;
                        if (!dup && strv_push(&c->load, &c->n_load, name, len) < 0)
                                r = parser_error(p, -ENOMEM, "out of memory");
                }
                free(name);
                if (r < 0)
                        return r;
                s += len;
        }
        return 0;
}

static int apply_log_level(parser *p, const char *section, const char *key, const char *value) {
        int level = paf_log_level_from_string(value);
        if (level < 0)
                return parser_error(p, -EINVAL,
                                    "[%s] key \"%s\": \"%s\" is not a log level (err, warning, "
                                    "notice, info, debug)",
                                    section, key, value);
        p->config->log_level = level;
        return 0;
}

static char *const *plugin_path_items(const paf_config *c) {
        return c->plugin_path;
}

static char *const *load_items(const paf_config *c) {
        return c->load;
}

/* [serve] header = Name: value, one field a line (or a key given again):
 * checked as paf_http_server_set_response_headers() will take it. */
static int apply_header(parser *p, const char *section, const char *key, const char *value) {
        paf_config *c = p->config;
        const char *colon = strchr(value, ':');
        size_t nlen = colon ? (size_t)(colon - value) : 0;
        bool token = nlen > 0;
        for (size_t i = 0; i < nlen && token; i++) {
                unsigned char ch = (unsigned char)value[i];
                token = (ch > 0x20 && ch < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", ch));
        }
        if (!token)
                return parser_error(p, -EINVAL,
                                    "[%s] key \"%s\": \"%s\": expected \"Name: value\" with a "
                                    "field name (RFC 9110 token) before the colon",
                                    section, key, value);
        if (http_field_is_servers_own(value, nlen))
                return parser_error(p, -EINVAL,
                                    "[%s] key \"%s\": \"%.*s\": the server's own field "
                                    "(framing or hop-by-hop), not one to add",
                                    section, key, (int)nlen, value);
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
                v++;
        for (const unsigned char *q = (const unsigned char *)v; *q; q++)
                if ((*q < 0x20 && *q != '\t') || *q == 0x7f)
                        return parser_error(p, -EINVAL,
                                            "[%s] key \"%s\": \"%.*s\": a control character in "
                                            "the value",
                                            section, key, (int)nlen, value);
        _cleanup_free_ char *line = NULL;
        if (asprintf(&line, "%.*s: %s", (int)nlen, value, v) < 0 ||
            strv_push(&c->headers, &c->n_headers, line, strlen(line)) < 0)
                return parser_error(p, -ENOMEM, "out of memory");
        return 0;
}

static char *const *header_items(const paf_config *c) {
        return c->headers;
}

/* paf serve's own: what it does on top of the engine and the static handler. */
static const core_option serve_section_options[] = {
        {{"header", PAF_TYPE_STRING, NULL,
          "paf serve: a field added to every response, \"Name: value\" (one a line, repeatable)"},
         '\n',
         apply_header,
         header_items},
        {},
};

static const core_option paf_section_options[] = {
        {{"plugin-path", PAF_TYPE_STRING, NULL,
          "Directories searched for plugins after PAF_PLUGIN_PATH, colon separated"},
         ':',
         apply_plugin_path,
         plugin_path_items},
        {{"load", PAF_TYPE_STRING, NULL,
          "Plugins to load, separated by spaces or commas; without it, every plugin found"},
         ' ',
         apply_load,
         load_items},
        {{"log-level", PAF_TYPE_STRING, NULL, "err, warning, notice, info or debug"},
         0,
         apply_log_level},
        {},
};

#define RANGE(lo, hi) PAF_OPTION_RANGE, (lo), (hi)

/* The longest timeout paf.conf takes, in seconds: a day. Longer is a
 * mistake, and 0 already says "never". */
#define TIMEOUT_MAX 86400

/* [http]: the HTTP engine's limits and timeouts (paf_http_limits_load()).
 * The ranges keep every value meaningful once converted to what the
 * engine counts in: a header block the request arena can hold (it grows to
 * twice the limit within 32 bits), a field count and a connection count in
 * an unsigned, timeouts in microseconds. 0 is "no limit" only where the
 * engine reads it so: max-connections and the timeouts. */
static const core_option http_section_options[] = {
        {{"max-header-bytes", PAF_TYPE_INT, "16384",
          "Request line and headers, in bytes; beyond: 431", RANGE(1, 16777216)}},
        {{"max-headers", PAF_TYPE_INT, "100", "Header fields in a request; beyond: 431",
          RANGE(1, 65536)}},
        {{"max-body", PAF_TYPE_INT, "67108864", "Request body, in bytes; beyond: 413",
          RANGE(0, INT64_MAX)}},
        {{"max-connections", PAF_TYPE_INT, "1024",
          "Open connections; accepting pauses at this many (0: no limit)", RANGE(0, 16777216)}},
        {{"header-timeout", PAF_TYPE_INT, "10",
          "Seconds to receive a request's headers (slowloris; 0: none)", RANGE(0, TIMEOUT_MAX)}},
        {{"idle-timeout", PAF_TYPE_INT, "60",
          "Seconds a kept-alive connection may stay idle (0: no limit)", RANGE(0, TIMEOUT_MAX)}},
        {{"body-timeout", PAF_TYPE_INT, "30",
          "Seconds between two pieces of a request body (0: none)", RANGE(0, TIMEOUT_MAX)}},
        {{"write-timeout", PAF_TYPE_INT, "30", "Seconds a write may make no progress (0: none)",
          RANGE(0, TIMEOUT_MAX)}},
        /* Read by paf_http_static_load_config() (core/http/static.c). */
        {{"open-file-cache", PAF_TYPE_INT, "1000",
          "Files the static handler keeps open with their metadata (0: none)", RANGE(0, 16777216)}},
        {{"open-file-cache-valid", PAF_TYPE_INT, "1",
          "Seconds a cached file is trusted before it is checked again (0: every request)",
          RANGE(0, TIMEOUT_MAX)}},
        {{"gzip-static", PAF_TYPE_BOOL, "yes",
          "Serve file.gz, file.br, file.zst for file when the client accepts that coding"}},
        {{"gzip", PAF_TYPE_BOOL, "no", "Gzip text types on the fly for clients that accept it"}},
        {{"gzip-min-length", PAF_TYPE_INT, "1024",
          "Files shorter than this many bytes are not gzipped on the fly", RANGE(0, INT64_MAX)}},
        /* paf serve's: the engine runs on whatever loop it is given. */
        {{"workers", PAF_TYPE_INT, "0",
          "paf serve: event loops, one thread each, sharing every listener (0: one per CPU)",
          RANGE(0, 1024)}},
        {},
};

/* HTTP/2 (core/http/h2.c). The limits of [http] apply to it too: header
 * bytes and fields per stream, body size, connections, timeouts. */
static const core_option http2_section_options[] = {
        {{"enabled", PAF_TYPE_BOOL, "yes",
          "Speak HTTP/2: h2 by ALPN on TLS listeners, h2c prior knowledge on plain ones"}},
        {{"max-concurrent-streams", PAF_TYPE_INT, "100",
          "Streams a client may have open on one connection (SETTINGS_MAX_CONCURRENT_STREAMS)",
          RANGE(1, 65536)}},
        {{"initial-window", PAF_TYPE_INT, "65535",
          "Bytes of a request body a client may send ahead per stream "
          "(SETTINGS_INITIAL_WINDOW_SIZE)",
          RANGE(1, 2147483647)}},
        {{"connection-window", PAF_TYPE_INT, "1048576",
          "Bytes of request bodies a client may send ahead per connection",
          RANGE(65535, 2147483647)}},
        {{"reset-burst", PAF_TYPE_INT, "200",
          "Stream resets and stream errors a connection may cause at once before GOAWAY "
          "(rapid reset, MadeYouReset)",
          RANGE(1, 1000000)}},
        {{"reset-rate", PAF_TYPE_INT, "50",
          "Stream resets and errors per second the budget regains", RANGE(1, 1000000)}},
        {{"alpn", PAF_TYPE_STRING, "h2,http/1.1",
          "paf serve: what TLS listeners offer by ALPN, in order of preference (h2 is left out "
          "when enabled is no)"}},
        {{"max-output", PAF_TYPE_INT, "524288",
          "Bytes of output a connection may have queued before the server stops reading from it",
          RANGE(16384, 1073741824)}},
        {},
};

static const char *const acme_challenges[] = {"http-01", "tls-alpn-01", NULL};
static const char *const acme_key_types[] = {"p256", "p384", "rsa2048", "rsa3072", NULL};

/* [acme]: `paf serve --acme` and `paf cert`: the certificate paf obtains and
 * renews itself (ACME, RFC 8555). Command-line options override these. */
static const core_option acme_section_options[] = {
        {{"names", PAF_TYPE_STRING, NULL,
          "DNS names and IP addresses of the certificate, separated by spaces; the first "
          "names it"}},
        {{"directory", PAF_TYPE_STRING, NULL,
          "The ACME directory URL (default: Let's Encrypt's, or its staging with staging)"}},
        {{"staging", PAF_TYPE_BOOL, "no", "Use Let's Encrypt's staging directory"}},
        {{"email", PAF_TYPE_STRING, NULL, "Contact addresses of the account, separated by spaces"}},
        {{"agree-tos", PAF_TYPE_BOOL, "no", "Agree to the CA's terms of service"}},
        {{"state-dir", PAF_TYPE_STRING, NULL,
          "Where accounts, keys and certificates are kept (default: $STATE_DIRECTORY/acme, "
          "/var/lib/paf/acme for root, else ~/.local/state/paf/acme)"},
         .path = true},
        {{"ca-file", PAF_TYPE_STRING, NULL,
          "PEM CA certificates that verify the ACME server (default: the system's)"},
         .path = true},
        {{"challenge", PAF_TYPE_STRING, "http-01", "http-01 or tls-alpn-01", 0, 0, 0,
          acme_challenges}},
        {{"key-type", PAF_TYPE_STRING, "p256", "Certificate key: p256, p384, rsa2048, rsa3072", 0,
          0, 0, acme_key_types}},
        {{"account-key-type", PAF_TYPE_STRING, "p256", "Key of a new account", 0, 0, 0,
          acme_key_types}},
        {{"keep-key", PAF_TYPE_BOOL, "no", "Renewals keep the certificate key"}},
        {{"preferred-chain", PAF_TYPE_STRING, NULL,
          "Prefer the chain whose top certificate's issuer has this common name"}},
        {{"eab-kid", PAF_TYPE_STRING, NULL, "External account binding: the key identifier"}},
        {{"eab-hmac-key", PAF_TYPE_STRING, NULL,
          "External account binding: the HMAC key (base64url)"}},
        {{"redirect-http", PAF_TYPE_BOOL, "yes",
          "paf serve --acme: plain HTTP requests other than challenges are redirected to "
          "https"}},
        {},
};

/* [listen.NAME]: a listener of `paf serve`. NAME is what systemd's
 * FileDescriptorName= would call it. Whether the section is complete
 * (address; certificate and key for TLS) is checked once it was read whole. */
static const core_option listen_section_options[] = {
        {{"address", PAF_TYPE_STRING, NULL,
          "Where to listen: PORT, HOST:PORT, [V6]:PORT, /path.sock, @abstract (required)"}},
        {{"tls", PAF_TYPE_BOOL, "no", "Serve HTTPS: wrap the listener in the tls layer"}},
        {{"certificate", PAF_TYPE_STRING, NULL, "PEM certificate chain (with tls)"}, .path = true},
        {{"key", PAF_TYPE_STRING, NULL, "PEM private key of the certificate (with tls)"},
         .path = true},
        {{"client-ca", PAF_TYPE_STRING, NULL,
          "PEM CA certificates: require and verify client certificates (mutual TLS)"},
         .path = true},
        {},
};

#define LISTEN_PREFIX "listen."
/* [listen] alone: not a plugin's, a listener section without its name. */
#define LISTEN_FAMILY "listen"

/* Sections that belong to libpaf itself. A new one is one more line here and
 * its option table. */
static const core_section core_sections[] = {
        {"paf", paf_section_options},     {"http", http_section_options},
        {"http2", http2_section_options}, {"serve", serve_section_options},
        {"acme", acme_section_options},
};

/* A family of sections: every [PREFIXNAME] with NAME [a-z0-9_-]+. */
static const core_section core_families[] = {
        {LISTEN_PREFIX, listen_section_options},
};

static bool is_listen_section(const char *name) {
        return name && strncmp(name, LISTEN_PREFIX, strlen(LISTEN_PREFIX)) == 0;
}

static const core_section *core_section_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(core_sections); i++)
                if (strcmp(core_sections[i].name, name) == 0)
                        return &core_sections[i];
        for (size_t i = 0; i < ELEMENTSOF(core_families); i++) {
                size_t len = strlen(core_families[i].name);
                if (strncmp(name, core_families[i].name, len) == 0 && paf_name_is_valid(name + len))
                        return &core_families[i];
        }
        return NULL;
}

bool paf_config_is_core_section(const char *name) {
        return name && (core_section_find(name) || strcmp(name, LISTEN_FAMILY) == 0);
}

static const core_option *core_option_find(const core_section *cs, const char *key) {
        for (const core_option *o = cs->options; o->decl.name; o++)
                if (strcmp(o->decl.name, key) == 0)
                        return o;
        return NULL;
}

/* ---- the inih callbacks ---- */

static int open_section(parser *p, const char *name, size_t len) {
        paf_config *c = p->config;
        p->entry = -1;
        for (size_t i = 0; i < c->n_sections; i++)
                if (strlen(c->sections[i].name) == len &&
                    strncmp(c->sections[i].name, name, len) == 0) {
                        p->section = (ssize_t)i;
                        return 0;
                }
        conf_section *a = realloc(c->sections, (c->n_sections + 1) * sizeof(*a));
        if (!a)
                return -ENOMEM;
        c->sections = a;
        a[c->n_sections] = (conf_section){.name = strndup(name, len), .line = p->line};
        if (!a[c->n_sections].name)
                return -ENOMEM;
        p->section = (ssize_t)c->n_sections++;

        const char *full = a[p->section].name;
        if (strcmp(full, LISTEN_FAMILY) == 0)
                return parser_error(
                        p, -EINVAL,
                        "[%s]: a listener section needs a name: [" LISTEN_PREFIX "NAME]", full);
        if (is_listen_section(full)) {
                /* The name becomes a listener's and a socket unit's name: no
                 * quoting games, whatever the file says. */
                if (!core_section_find(full))
                        return parser_error(p, -EINVAL,
                                            "[%s]: \"%s\" is not a valid listener name "
                                            "([a-z0-9_-]+, at most 64 characters)",
                                            full, full + strlen(LISTEN_PREFIX));
                if (strv_push(&c->listen, &c->n_listen, full, strlen(full)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Mirrors inih's reading of a line (ini.c, ini_parse_stream): comments
 * first, then continuation lines (indented, after a key), then headers,
 * then keys. */
static int classify(parser *p, const char *line) {
        const char *start = line;
        if (p->line == 1 && strncmp(start, "\xEF\xBB\xBF", 3) == 0)
                start += 3;
        while (isspace((unsigned char)*start))
                start++;

        p->kind = LINE_OTHER;
        if (*start == '\0' || *start == ';' || *start == '#')
                return 0;
        if (p->after_key && start > line) {
                p->kind = LINE_CONTINUATION;
                return 0;
        }
        if (*start == '[') {
                const char *end = strchr(start + 1, ']');
                if (!end)
                        return 0; /* inih reports it */
                p->kind = LINE_SECTION;
                p->after_key = false;
                return open_section(p, start + 1, (size_t)(end - start - 1));
        }
        if (strpbrk(start, "=:")) {
                p->kind = LINE_KEY;
                p->after_key = true;
        }
        return 0;
}

/* Hands inih one whole line per call, so that its count is ours. */
static char *reader(char *str, int num, void *stream) {
        parser *p = stream;
        if (p->io_error || p->long_line || p->error_code < 0)
                return NULL;

        const char *s;
        size_t len;
        if (p->file) {
                errno = 0;
                ssize_t n = getline(&p->buf, &p->buf_size, p->file);
                if (n < 0) {
                        if (ferror(p->file))
                                p->io_error = errno > 0 ? -errno : -EIO;
                        return NULL;
                }
                s = p->buf;
                len = (size_t)n;
        } else {
                if (!*p->text)
                        return NULL;
                s = p->text;
                const char *nl = strchr(s, '\n');
                len = nl ? (size_t)(nl - s) + 1 : strlen(s);
                p->text += len;
        }
        p->line++;

        /* The line ends are not content: they must not count against inih's buffer. */
        if (len > 0 && s[len - 1] == '\n')
                len--;
        if (len > 0 && s[len - 1] == '\r')
                len--;
        if (num <= 0 || len >= (size_t)num) {
                p->long_line = p->line;
                p->long_limit = num > 0 ? num - 1 : 0;
                return NULL;
        }
        memcpy(str, s, len);
        str[len] = '\0';
        if (classify(p, str) < 0) {
                parser_error(p, -ENOMEM, "out of memory"); /* keeps an earlier error */
                return NULL;
        }
        return str;
}

/* Store key = value in s: a continuation line is appended with a space
 * (like a folded header line); a list's key, set again, replaces its
 * value with the items so far (a key set twice was refused before).
 * resolved (may be NULL): what the whole value reads as. */
static int store(parser *p, conf_section *s, const char *key, const char *value, bool continuation,
                 const char *resolved) {
        conf_entry *e = NULL;
        _cleanup_free_ char *r = resolved ? strdup(resolved) : NULL;
        if (resolved && !r)
                return -ENOMEM;
        if (continuation && p->entry >= 0)
                e = &s->entries[p->entry];
        else if ((e = section_find_entry(s, key)))
                p->entry = e - s->entries;
        else {
                conf_entry *a = realloc(s->entries, (s->n_entries + 1) * sizeof(*a));
                if (!a)
                        return -ENOMEM;
                s->entries = a;
                e = &a[s->n_entries];
                *e = (conf_entry){.key = strdup(key),
                                  .value = strdup(value),
                                  .line = p->line,
                                  .key_line = p->line};
                if (!e->key || !e->value) {
                        free(e->key);
                        free(e->value);
                        return -ENOMEM;
                }
                e->resolved = r;
                r = NULL;
                p->entry = (ssize_t)s->n_entries++;
                return 0;
        }

        char *v;
        if (!continuation || !*e->value || !*value)
                v = strdup(continuation && !*value ? e->value : value);
        else if (asprintf(&v, "%s %s", e->value, value) < 0)
                v = NULL;
        if (!v)
                return -ENOMEM;
        free(e->value);
        e->value = v;
        free(e->resolved);
        e->resolved = r;
        r = NULL;
        e->line = p->line;
        return 0;
}

/* A path relative to the file's directory, or NULL when value is to be
 * taken as it is (absolute, empty, or no file to be relative to). */
static int resolve_path(parser *p, const char *value, char **ret) {
        *ret = NULL;
        if (!p->dir || !*value || value[0] == '/')
                return 0;
        return asprintf(ret, "%s/%s", p->dir, value) < 0 ? -ENOMEM : 0;
}

static int core_key(parser *p, const core_section *cs, conf_section *s, const char *key,
                    const char *value, bool continuation) {
        const core_option *o = core_option_find(cs, key);
        if (!o) {
                suggestion sg = {.word = key};
                for (const core_option *c = cs->options; c->decl.name; c++)
                        suggest(&sg, c->decl.name);
                char buf[128];
                return parser_error(p, -EINVAL, "[%s] key \"%s\": unknown option%s", s->name, key,
                                    suggestion_text(&sg, buf, sizeof(buf)));
        }

        int r;
        _cleanup_free_ char *list = NULL, *resolved = NULL;
        if (o->list_join) {
                r = o->apply(p, s->name, key, value);
                if (r < 0)
                        return r;
                /* The option reads as its items, whatever the separators were. */
                char sep[2] = {o->list_join, '\0'};
                list = strv_join(o->items(p->config), sep);
                if (!list)
                        return parser_error(p, -ENOMEM, "out of memory");
                value = list;
                continuation = false;
        } else {
                /* A continuation extends the value: check the whole of it. */
                conf_entry *old = continuation && p->entry >= 0 ? &s->entries[p->entry] : NULL;
                _cleanup_free_ char *whole = NULL;
                if (old && *old->value && *value &&
                    asprintf(&whole, "%s %s", old->value, value) < 0)
                        return parser_error(p, -ENOMEM, "out of memory");
                const char *v = whole ? whole : old && !*value ? old->value : value;
                char reason[256];
                paf_value pv;
                r = paf_option_check(&o->decl, v, &pv, reason, sizeof(reason));
                if (r < 0)
                        return parser_error(p, r == -ERANGE ? r : -EINVAL, "[%s] key \"%s\": %s",
                                            s->name, key, reason);
                r = o->apply ? o->apply(p, s->name, key, v) : 0;
                if (r >= 0 && o->path && resolve_path(p, v, &resolved) < 0)
                        return parser_error(p, -ENOMEM, "out of memory");
        }
        if (r < 0)
                return r;
        if (store(p, s, key, value, continuation, resolved) < 0)
                return parser_error(p, -ENOMEM, "out of memory");
        return 0;
}

static int handler(void *user, const char *section, const char *key, const char *value) {
        parser *p = user;
        (void)section; /* inih truncates long names; the reader's copy is whole */
        if (p->error_code < 0)
                return 1;
        bool continuation = p->kind == LINE_CONTINUATION;
        if (p->section < 0) {
                parser_error(p, -EINVAL, "key \"%s\": outside of any section", key);
                return 0;
        }
        conf_section *s = &p->config->sections[p->section];
        const core_section *cs = core_section_find(s->name);
        /* A second value would silently win over the first, which is then
         * dead text that looks in effect: refused, like a duplicate header
         * field. A list adds up instead. */
        conf_entry *first = continuation ? NULL : section_find_entry(s, key);
        const core_option *o = cs ? core_option_find(cs, key) : NULL;
        if (first && !(o && o->list_join)) {
                parser_error(p, -EINVAL, "[%s] key \"%s\": set twice (first on line %u)", s->name,
                             key, first->key_line);
                return 0;
        }
        if (cs)
                return core_key(p, cs, s, key, value, continuation) >= 0;
        /* Plugin sections are checked once the plugins have said what they take. */
        if (store(p, s, key, value, continuation, NULL) < 0) {
                parser_error(p, -ENOMEM, "out of memory");
                return 0;
        }
        return 1;
}

/* What [listen.NAME] needs can only be known once the section was read
 * whole: it may be spread over the file. */
static int check_listen_sections(paf_config *c, paf_error *error) {
        for (size_t i = 0; i < c->n_listen; i++) {
                conf_section *s = config_find_section(c, c->listen[i]);
                assert(s);
                conf_entry *address = section_find_entry(s, "address"),
                           *tls = section_find_entry(s, "tls"),
                           *cert = section_find_entry(s, "certificate"),
                           *key = section_find_entry(s, "key"),
                           *client_ca = section_find_entry(s, "client-ca");
                paf_value v = PAF_VALUE_BOOL(false);
                char reason[128]; /* checked as it was read: cannot fail here */
                if (tls)
                        (void)paf_option_parse(PAF_TYPE_BOOL, tls->value, &v, reason,
                                               sizeof(reason));
                bool on = v.boolean;

                if (!address || !*address->value)
                        return paf_error_set(error, -EINVAL,
                                             "%s:%u: [%s] key \"address\": required (where to "
                                             "listen)",
                                             c->file, address ? address->line : s->line, s->name);
                if (on && (!cert || !*cert->value))
                        return paf_error_set(error, -EINVAL,
                                             "%s:%u: [%s] key \"certificate\": required with tls",
                                             c->file, tls->line, s->name);
                if (on && (!key || !*key->value))
                        return paf_error_set(error, -EINVAL,
                                             "%s:%u: [%s] key \"key\": required with tls", c->file,
                                             tls->line, s->name);
                /* Keys that would be silently ignored are a mistake waiting to
                 * serve plain text. */
                conf_entry *stray = !on ? (cert ? cert : key ? key : client_ca) : NULL;
                if (stray)
                        return paf_error_set(error, -EINVAL,
                                             "%s:%u: [%s] key \"%s\": only used with \"tls = "
                                             "yes\"",
                                             c->file, stray->line, s->name, stray->key);
        }
        return 0;
}

static int parse(paf_registry *reg, const char *name, const char *dir, FILE *f, const char *text,
                 paf_error *error) {
        parser p = {.dir = dir, .file = f, .text = text, .section = -1, .entry = -1};
        p.config = calloc(1, sizeof(paf_config));
        if (!p.config || !(p.config->file = strdup(name))) {
                free(p.config);
                return -ENOMEM;
        }
        p.config->log_level = -1;

        int r = ini_parse_stream(reader, &p, handler, &p);
        free(p.buf);

        /* The earliest problem wins: inih's count is the first line that
         * failed, be it its syntax error or our handler's refusal. */
        unsigned syntax =
                r > 0 && (p.error_code == 0 || (unsigned)r < p.error_line) ? (unsigned)r : 0;
        if (r < 0)
                r = paf_error_set(error, -ENOMEM, "%s: out of memory", name);
        else if (p.io_error)
                r = paf_error_set(error, p.io_error, "%s: %s", name, strerror(-p.io_error));
        else if (syntax && (!p.long_line || syntax < p.long_line))
                r = paf_error_set(error, -EINVAL, "%s:%u: syntax error", name, syntax);
        else if (p.error_code < 0 && (!p.long_line || p.error_line < p.long_line))
                r = paf_error_set(error, p.error_code, "%s", p.error_message);
        else if (p.long_line)
                r = paf_error_set(error, -EINVAL, "%s:%u: line too long (more than %d characters)",
                                  name, p.long_line, p.long_limit);
        else
                r = check_listen_sections(p.config, error);
        if (r < 0) {
                config_free(p.config);
                return r;
        }

        /* Only a config read whole replaces the one in place. */
        config_free(reg->config);
        reg->config = p.config;
        if (reg->config->log_level >= 0)
                paf_log_set_level(reg->config->log_level);
        return 0;
}

PAF_EXPORT int paf_registry_load_config_string(paf_registry *reg, const char *name,
                                               const char *text, paf_error *error) {
        if (!reg || !text)
                return -EINVAL;
        return parse(reg, name ? name : "paf.conf", NULL, NULL, text, error);
}

PAF_EXPORT int paf_registry_load_config(paf_registry *reg, const char *path, paf_error *error) {
        if (!reg || (path && !*path))
                return -EINVAL;
        if (!path)
                return parse(reg, DEFAULT_CONFIG_NAME, NULL, NULL, default_config, error);

        FILE *f = fopen(path, "re");
        if (!f)
                return paf_error_set(error, -errno, "%s: %s", path, strerror(errno));
        const char *slash = strrchr(path, '/');
        _cleanup_free_ char *dir =
                slash ? strndup(path, slash > path ? (size_t)(slash - path) : 1) : NULL;
        int r = slash && !dir ? -ENOMEM : parse(reg, path, dir, f, NULL, error);
        fclose(f);
        return r;
}

/* ---- checking plugin sections ---- */

static int check_section(paf_config *c, conf_section *s, const paf_option_spec *options,
                         paf_error *error, unsigned *ret_line) {
        int code = 0;
        unsigned line = UINT_MAX;
        for (size_t i = 0; i < s->n_entries; i++) {
                conf_entry *e = &s->entries[i];
                if (e->line >= line)
                        continue; /* a problem earlier in the file is already known */
                const paf_option_spec *o = NULL;
                for (const paf_option_spec *x = options; x && x->name; x++)
                        if (strcmp(x->name, e->key) == 0)
                                o = x;
                char reason[384];
                paf_value v;
                if (!o) {
                        suggestion sg = {.word = e->key};
                        for (const paf_option_spec *x = options; x && x->name; x++)
                                suggest(&sg, x->name);
                        char buf[128];
                        snprintf(reason, sizeof(reason), "unknown option%s",
                                 suggestion_text(&sg, buf, sizeof(buf)));
                        code = -EINVAL;
                } else {
                        int r = paf_option_check(o, e->value, &v, reason, sizeof(reason));
                        if (r >= 0)
                                continue;
                        code = r == -ERANGE ? r : -EINVAL;
                }
                line = e->line;
                paf_error_set(error, code, "%s:%u: [%s] key \"%s\": %s", c->file, e->line, s->name,
                              e->key, reason);
        }
        if (code < 0 && ret_line)
                *ret_line = line;
        return code;
}

int paf_config_check_plugin(paf_registry *reg, const char *name, const paf_option_spec *options,
                            paf_error *error, unsigned *ret_line) {
        if (!reg || !name)
                return -EINVAL;
        conf_section *s = config_find_section(reg->config, name);
        if (!s)
                return 0;
        return check_section(reg->config, s, options, error, ret_line);
}

int paf_config_check_sections(paf_registry *reg, paf_error *error, unsigned *ret_line) {
        paf_config *c = reg ? reg->config : NULL;
        if (!c)
                return 0;
        int code = 0;
        unsigned line = UINT_MAX;
        paf_error e = PAF_ERROR_NULL;
        for (size_t i = 0; i < c->n_sections; i++) {
                conf_section *s = &c->sections[i];
                if (core_section_find(s->name))
                        continue; /* checked as it was read */
                paf_plugin *plugin = paf_loader_find_plugin(reg, s->name);
                unsigned l = 0;
                int r = 0;
                if (plugin)
                        r = check_section(c, s, paf_plugin_get_options_internal(plugin), &e, &l);
                else if (paf_loader_is_refused(reg, s->name))
                        continue; /* its refusal says it all */
                else {
                        suggestion sg = {.word = s->name};
                        for (size_t k = 0; k < ELEMENTSOF(core_sections); k++)
                                suggest(&sg, core_sections[k].name);
                        for (size_t k = 0; paf_loader_get_name(reg, k); k++)
                                suggest(&sg, paf_loader_get_name(reg, k));
                        char buf[128];
                        r = paf_error_set(&e, -EINVAL, "%s:%u: [%s]: unknown section%s", c->file,
                                          s->line, s->name, suggestion_text(&sg, buf, sizeof(buf)));
                        l = s->line;
                }
                if (r < 0 && l < line) {
                        code = r;
                        line = l;
                        if (error)
                                *error = e;
                }
        }
        if (code < 0 && ret_line)
                *ret_line = line;
        return code;
}

/* ---- reading options ---- */

PAF_EXPORT const char *const *paf_registry_get_listen_sections(paf_registry *reg, size_t *ret_n) {
        static const char *const none[] = {NULL};
        size_t n = reg && reg->config ? reg->config->n_listen : 0;
        if (ret_n)
                *ret_n = n;
        return n > 0 ? (const char *const *)reg->config->listen : none;
}

PAF_EXPORT int paf_registry_get_option(paf_registry *reg, const char *section, const char *key,
                                       paf_value *ret) {
        if (!reg || !section || !key || !ret)
                return -EINVAL;

        const paf_option_spec *decl = NULL;
        const core_section *cs = core_section_find(section);
        if (cs) {
                const core_option *o = core_option_find(cs, key);
                decl = o ? &o->decl : NULL;
        } else {
                paf_plugin *plugin = paf_loader_find_plugin(reg, section);
                for (const paf_option_spec *o = paf_plugin_get_options_internal(plugin);
                     o && o->name; o++)
                        if (strcmp(o->name, key) == 0)
                                decl = o;
        }
        if (!decl)
                return -ENOENT;

        conf_entry *e = section_find_entry(config_find_section(reg->config, section), key);
        const char *s = e ? (e->resolved ? e->resolved : e->value) : decl->default_value;
        if (!s)
                return -ENODATA;
        /* Checked when the file was read, but a file read after the
         * plugins were loaded has not met their checks yet. */
        paf_value v;
        int r = paf_option_check(decl, s, &v, NULL, 0);
        if (r < 0)
                return r;
        *ret = v;
        return 0;
}

/* ---- what serving the configuration would refuse ---- */

static const char *entry_value(const conf_entry *e) {
        return e->resolved ? e->resolved : e->value;
}

static bool starts_with(const char *s, const char *prefix, const char *then) {
        size_t n = strlen(prefix);
        return strncmp(s, prefix, n) == 0 && strncmp(s + n, then, strlen(then)) == 0;
}

/* The key of a TLS listener section a layer's refusal is about. The layer
 * names the file at fault first ("FILE: …", and "CERT with KEY: …" when
 * they do not match: the key is then the one that is wrong); anything
 * else is about serving TLS at all. */
static conf_entry *tls_blame(conf_section *s, const char *message) {
        conf_entry *cert = section_find_entry(s, "certificate"),
                   *key = section_find_entry(s, "key"), *ca = section_find_entry(s, "client-ca");
        if (cert && key && starts_with(message, entry_value(cert), " with "))
                return key;
        if (cert && starts_with(message, entry_value(cert), ":"))
                return cert;
        if (key && starts_with(message, entry_value(key), ":"))
                return key;
        if (ca && starts_with(message, entry_value(ca), ":"))
                return ca;
        return section_find_entry(s, "tls");
}

static int check_listener(paf_registry *reg, conf_section *s, paf_error *error) {
        paf_config *c = reg->config;
        conf_entry *address = section_find_entry(s, "address");
        assert(address); /* checked when the file was read */

        paf_error e = PAF_ERROR_NULL;
        const paf_protocol *p = NULL;
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *endpoint = NULL;
        int r = paf_listen_parse_address(reg, address->value, &p, &endpoint, &e);
        if (r < 0)
                return paf_error_set(error, r, "%s:%u: [%s] key \"address\": %s", c->file,
                                     address->line, s->name, e.message);

        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *tls = NULL;
        r = paf_registry_get_listen_tls_ctx(reg, s->name, &tls);
        if (r < 0)
                return paf_error_set(error, r, "%s:%u: [%s]: %s", c->file, s->line, s->name,
                                     strerror(-r));
        if (r == 0)
                return 0;
        r = paf_listen_check_layer(reg, "tls", p->ops->name, address->value, tls, &e);
        if (r < 0) {
                conf_entry *blame = tls_blame(s, e.message);
                assert(blame); /* tls is on */
                return paf_error_set(error, r, "%s:%u: [%s] key \"%s\": %s", c->file, blame->line,
                                     s->name, blame->key, e.message);
        }
        return 0;
}

PAF_EXPORT int paf_registry_check_config(paf_registry *reg, paf_error *error) {
        if (!reg)
                return -EINVAL;
        paf_config *c = reg->config;
        if (!c)
                return 0;
        /* Done by paf_registry_load_plugins(), but not by loading plugins
         * one by one. */
        int r = paf_config_check_sections(reg, error, NULL);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_listen; i++) {
                r = check_listener(reg, config_find_section(c, c->listen[i]), error);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* For tests/tools/option-tables.c, which checks that paf.conf(5) documents
 * every option: libpaf's own sections with their options, in table order; a
 * family of sections goes by its prefix ("listen."). */
void paf_config_foreach_core_option(paf_core_option_handler_t fn, void *userdata) {
        for (size_t i = 0; i < ELEMENTSOF(core_sections); i++)
                for (const core_option *o = core_sections[i].options; o->decl.name; o++)
                        fn(core_sections[i].name, &o->decl, userdata);
        for (size_t i = 0; i < ELEMENTSOF(core_families); i++)
                for (const core_option *o = core_families[i].options; o->decl.name; o++)
                        fn(core_families[i].name, &o->decl, userdata);
}
