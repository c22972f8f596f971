/* tools/get.c — `paf get URL`: the simple client with curl's options and exit codes. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "paf-tool.h"

#define MAX_REDIRECTS 20
#define PROGRESS_INTERVAL_USEC (100 * 1000ULL) /* at most 10 updates a second */

/* curl's exit codes, where paf has the same failure. */
enum {
        EXIT_OK = 0,
        EXIT_UNSUPPORTED_PROTOCOL = 1,
        EXIT_USAGE = 2,
        EXIT_URL_MALFORMED = 3,
        EXIT_COULDNT_RESOLVE_HOST = 6,
        EXIT_COULDNT_CONNECT = 7,
        EXIT_WEIRD_SERVER_REPLY = 8,
        EXIT_HTTP_RETURNED_ERROR = 22,
        EXIT_WRITE_ERROR = 23,
        EXIT_READ_ERROR = 26,
        EXIT_OPERATION_TIMEDOUT = 28,
        EXIT_SSL_CONNECT_ERROR = 35,
        EXIT_TOO_MANY_REDIRECTS = 47,
        EXIT_RECV_ERROR = 56,
        EXIT_PEER_FAILED_VERIFICATION = 60,
};

typedef struct get {
        const char *url;
        const char *output_path; /* NULL: stdout */
        FILE *out;               /* opened at the response's head: a failure creates no file */
        bool include_head;       /* -i, -I */
        bool fail_on_error;      /* -f */
        bool verbose;
        bool progress;
        bool head_only;
        bool failed_http; /* -f and status >= 400: nothing written */
        bool head_shown;  /* -v: the exchange's head is on stderr */
        int status;
        int exit_code; /* set by the handler */
        int write_errno;
        sd_event *event;
        paf_registry *reg;

        /* For -v: the request, shown with the response's version. */
        const char *method;
        char *target;
        const paf_http_headers *headers;
        bool have_data;
        size_t body_len;

        /* Progress. */
        int64_t total; /* Content-Length, -1 unknown */
        uint64_t received;
        uint64_t start_usec;
        uint64_t last_draw_usec;
        bool drawn;
} get;

static void usage(FILE *f) {
        fprintf(f,
                "Usage: paf get URL [OPTIONS]\n"
                "\n"
                "Fetch URL over whichever transport its context resolves to, curl-style.\n"
                "URLs: http://, https://, http+unix://%%2Fpath%%2Fto.sock/path, https+unix://,\n"
                "http+vsock://CID:PORT/path, https+vsock://.\n"
                "\n"
                "  -X, --request METHOD    Use METHOD (default GET; POST with -d)\n"
                "  -H, --header 'N: V'     Add a request header (repeatable)\n"
                "  -d, --data DATA         Send DATA as a form body (POST); repeated -d are\n"
                "                          joined with '&'; @FILE reads FILE without newlines\n"
                "      --data-binary DATA  Send DATA as is; @FILE sends FILE, @- stdin\n"
                "  -o, --output FILE       Write the body to FILE instead of stdout\n"
                "  -i, --include           Write the status line and headers too\n"
                "  -I, --head              HEAD: write the status line and headers only\n"
                "  -f, --fail              On status >= 400 write nothing and exit 22\n"
                "  -L, --location          Follow redirects (at most %d), to http and https\n"
                "                          only, credentials to the URL's origin only\n"
                "      --location-trusted  Like -L, and send Authorization, Cookie and\n"
                "                          Proxy-Authorization to every host it leads to\n"
                "      --proto-redir LIST  Schemes redirects may use, as curl: [+-=]SCHEME\n"
                "                          or all, comma separated, from http,https\n"
                "                          (=http,https,http+unix  -all,+https  +http+unix)\n"
                "      --cacert FILE       Trust the CAs in FILE instead of the system's\n"
                "  -k, --insecure          Do not verify the server's certificate\n"
                "      --unix-socket PATH  Connect to PATH, whatever the URL's host\n"
                "      --http1.1           Speak HTTP/1.1 only\n"
                "      --http2             HTTP/2 when the server takes it by TLS ALPN (the\n"
                "                          default); http:// stays HTTP/1.1 (no Upgrade: h2c)\n"
                "      --http2-prior-knowledge  HTTP/2 from the first byte, TLS or not (h2c)\n"
                "  -m, --max-time SECONDS  Give up after SECONDS (decimals allowed), exit 28\n"
                "  -s, --silent            No progress bar\n"
                "  -v, --verbose           Tell on stderr which transport was used and why\n"
                "                          the others were not, the HTTP version, and the\n"
                "                          exchanged headers\n"
                "      --config FILE       paf.conf: plugins and their settings\n"
                "      --help              Show this help\n"
                "\n"
                "Exit status as curl's: 0 ok, 1 unsupported protocol or one refused on a\n"
                "redirect, 6 host not resolved, 7 connection failed, 22 HTTP error with -f,\n"
                "23 write error, 28 timeout, 35 TLS failure, 47 too many redirects,\n"
                "60 certificate not verified.\n",
                MAX_REDIRECTS);
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- exit codes ---- */

static int exit_code_for(int code) {
        switch (code) {
        case -EPROTONOSUPPORT:
        case -ESOCKTNOSUPPORT:
        case -EAFNOSUPPORT:
                return EXIT_UNSUPPORTED_PROTOCOL;
        case -EINVAL:
                return EXIT_URL_MALFORMED;
        case -EHOSTUNREACH:
        case -ENXIO:
        case -EADDRNOTAVAIL:
                return EXIT_COULDNT_RESOLVE_HOST;
        case -ETIMEDOUT:
        case -ETIME:
                return EXIT_OPERATION_TIMEDOUT;
        case -EKEYREJECTED:
        case -EKEYEXPIRED:
        case -EKEYREVOKED:
                return EXIT_PEER_FAILED_VERIFICATION;
        case -EPROTO:
        case -ENOKEY:
        case -ECONNABORTED:
                return EXIT_SSL_CONNECT_ERROR;
        case -EBADMSG:
                return EXIT_WEIRD_SERVER_REPLY;
        case -ELOOP:
                return EXIT_TOO_MANY_REDIRECTS;
        case -EPIPE:
        case -ECONNRESET:
        case -EAGAIN: /* HTTP/2: refused or cut by GOAWAY before the server processed it */
                return EXIT_RECV_ERROR;
        default:
                /* Refused, unreachable network, missing socket file, … */
                return EXIT_COULDNT_CONNECT;
        }
}

/* "paf get: URL: reason", always in that shape (scripts cut on it), without
 * the URL twice when the library's message starts with it (bare or as
 * URL "…"). */
static void print_error(const char *url, const char *message) {
        size_t n = strlen(url);
        if (strncmp(message, url, n) == 0 && message[n] == ':')
                tool_error("%s", message);
        else if (strncmp(message, "URL \"", 5) == 0 && strncmp(message + 5, url, n) == 0 &&
                 strncmp(message + 5 + n, "\": ", 3) == 0)
                tool_error("%s: %s", url, message + 5 + n + 3);
        else
                tool_error("%s: %s", url, message);
}

/* Whether url's own scheme is one no plugin of reg serves. */
static bool url_scheme_unknown(paf_registry *reg, const char *url) {
        paf_ctx *ctx = NULL;
        if (paf_ctx_new(&ctx) < 0)
                return false;
        int r = paf_registry_parse_url(reg, url, ctx, NULL);
        paf_ctx_unref(ctx);
        return r == -EPROTONOSUPPORT;
}

/* After a failure for want of a plugin (no transport for the request, or
 * a scheme nobody serves): which plugins there are, and where others would
 * be found. A scheme a redirect may not use is not that. */
static void hint_plugins(get *g, int code) {
        if (code != -EAFNOSUPPORT &&
            !(code == -EPROTONOSUPPORT && url_scheme_unknown(g->reg, g->url)))
                return;
        char *hint = tool_plugin_hint(g->reg);
        if (hint)
                tool_error("%s", hint);
        free(hint);
}

/* ---- progress bar ---- */

static void format_size(char *buf, size_t size, double bytes) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        size_t u = 0;
        while (bytes >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
                bytes /= 1024;
                u++;
        }
        snprintf(buf, size, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
}

static void progress_draw(get *g, bool force) {
        if (!g->progress)
                return;
        uint64_t now = now_usec();
        if (!force && g->drawn && now - g->last_draw_usec < PROGRESS_INTERVAL_USEC)
                return;
        g->last_draw_usec = now;
        g->drawn = true;

        char got[32], rate[32];
        double secs = (double)(now - g->start_usec) / 1e6;
        format_size(got, sizeof(got), (double)g->received);
        format_size(rate, sizeof(rate), secs > 0 ? (double)g->received / secs : 0);
        if (g->total > 0) {
                unsigned pct = (unsigned)((double)g->received * 100 / (double)g->total);
                if (pct > 100)
                        pct = 100;
                char bar[31];
                size_t fill = pct * (sizeof(bar) - 1) / 100;
                memset(bar, '#', fill);
                memset(bar + fill, ' ', sizeof(bar) - 1 - fill);
                bar[sizeof(bar) - 1] = '\0';
                fprintf(stderr, "\r[%s] %3u%% %s  %s/s\033[K", bar, pct, got, rate);
        } else
                fprintf(stderr, "\r%s  %s/s\033[K", got, rate);
        fflush(stderr);
}

static void progress_clear(get *g) {
        if (g->progress && g->drawn) {
                fputs("\r\033[K", stderr);
                fflush(stderr);
        }
        g->drawn = false;
}

/* ---- output ---- */

static int open_output(get *g) {
        if (g->out)
                return 0;
        if (!g->output_path) {
                g->out = stdout;
                return 0;
        }
        g->out = fopen(g->output_path, "we");
        if (!g->out) {
                g->write_errno = errno;
                return -errno;
        }
        return 0;
}

static int write_out(get *g, const void *data, size_t len) {
        if (len == 0)
                return 0;
        if (fwrite(data, 1, len, g->out) != len) {
                g->write_errno = errno ? errno : EIO;
                return -g->write_errno;
        }
        return 0;
}

/* "HTTP/2", "HTTP/1.1": what the response came as. */
static const char *version_name(int version) {
        switch (version) {
        case 20:
                return "HTTP/2";
        case 10:
                return "HTTP/1.0";
        default:
                return "HTTP/1.1";
        }
}

/* The status line as curl writes it: HTTP/2 has no reason phrase. */
static void print_head(FILE *f, const char *prefix, int status, const paf_http_headers *headers) {
        int version = paf_http_headers_get_version(headers);
        const char *reason = version == 20 ? NULL : paf_http_status_reason(status);
        fprintf(f, "%s%s %d%s%s\r\n", prefix, version_name(version), status, reason ? " " : "",
                reason ? reason : "");
        size_t n = headers ? paf_http_headers_count(headers) : 0;
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(headers, i, &name, &value) >= 0)
                        fprintf(f, "%s%s: %s\r\n", prefix, name, value);
        }
        fprintf(f, "%s\r\n", prefix);
}

/* ---- the call ---- */

/* -v, as curl: the version used, the request (its target the URL's; -L tells
 * the final URL at the end), then the response's head. */
static void print_exchange(get *g, int status, const paf_http_headers *headers) {
        if (g->head_shown)
                return;
        g->head_shown = true;
        const char *version = version_name(paf_http_headers_get_version(headers));
        fprintf(stderr, "* using %s\n", version);
        fprintf(stderr, "> %s %s %s\n", g->method, g->target ? g->target : g->url, version);
        size_t n = paf_http_headers_count(g->headers);
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(g->headers, i, &name, &value) >= 0)
                        fprintf(stderr, "> %s: %s\n", name, value);
        }
        if (g->have_data)
                fprintf(stderr, "> (%zu bytes of body)\n", g->body_len);
        fprintf(stderr, ">\n");
        print_head(stderr, "< ", status, headers);
}

static void on_head(int status, const paf_http_headers *headers, void *userdata) {
        get *g = userdata;
        g->status = status;
        if (g->verbose)
                print_exchange(g, status, headers);
        if (g->fail_on_error && status >= 400) {
                g->failed_http = true;
                return;
        }
        const char *cl = headers ? paf_http_headers_get(headers, "Content-Length") : NULL;
        if (cl && !g->head_only) {
                char *end;
                errno = 0;
                long long v = strtoll(cl, &end, 10);
                if (errno == 0 && end != cl && *end == '\0' && v >= 0)
                        g->total = v;
        }
        if (open_output(g) < 0)
                return;
        if (g->include_head)
                print_head(g->out, "", status, headers);
}

static int on_body(const void *data, size_t len, void *userdata) {
        get *g = userdata;
        if (g->failed_http)
                return 0; /* -f: drop it; small error pages end the call sooner than an abort */
        if (g->write_errno)
                return -g->write_errno;
        if (!g->out && open_output(g) < 0)
                return -g->write_errno;
        int r = write_out(g, data, len);
        if (r < 0)
                return r;
        g->received += len;
        progress_draw(g, false);
        return 0;
}

static void on_done(paf_response *response, const paf_error *error, void *userdata) {
        get *g = userdata;
        if (g->progress && g->drawn) {
                progress_draw(g, true);
                progress_clear(g);
        }
        if (g->write_errno) {
                tool_error("%s: cannot write %s: %s", g->url,
                           g->output_path ? g->output_path : "the output",
                           strerror(g->write_errno));
                g->exit_code = EXIT_WRITE_ERROR;
        } else if (error) {
                const char *msg = error->message[0] ? error->message : strerror(-error->code);
                print_error(g->url, msg);
                hint_plugins(g, error->code);
                g->exit_code = exit_code_for(error->code);
        } else if (response) {
                if (g->verbose) {
                        if (response->endpoint)
                                fprintf(stderr, "* transport: %s\n", response->endpoint);
                        if (response->url && strcmp(response->url, g->url) != 0)
                                fprintf(stderr, "* final URL: %s\n", response->url);
                        if (response->report && *response->report) {
                                fprintf(stderr, "* resolution:\n");
                                const char *p = response->report;
                                while (*p) {
                                        size_t n = strcspn(p, "\n");
                                        fprintf(stderr, "*   %.*s\n", (int)n, p);
                                        p += n;
                                        if (*p == '\n')
                                                p++;
                                }
                        }
                }
                if (g->fail_on_error && response->status >= 400) {
                        tool_error("%s: The requested URL returned error: %d", g->url,
                                   response->status);
                        g->exit_code = EXIT_HTTP_RETURNED_ERROR;
                } else {
                        /* No head handler call (an empty response, say): still the output. */
                        if (!g->out) {
                                on_head(response->status, response->headers, g);
                                if (g->write_errno)
                                        tool_error("%s: cannot write %s: %s", g->url,
                                                   g->output_path ? g->output_path : "the output",
                                                   strerror(g->write_errno));
                        }
                        if (g->out && response->body && response->body_size > 0)
                                write_out(g, response->body, response->body_size);
                        g->exit_code = g->write_errno ? EXIT_WRITE_ERROR : EXIT_OK;
                }
        } else {
                tool_error("%s: no response", g->url);
                g->exit_code = EXIT_RECV_ERROR;
        }
        paf_response_free(response);
        sd_event_exit(g->event, 0);
}

/* ---- request body ---- */

typedef struct buffer {
        char *data;
        size_t len;
        size_t size;
} buffer;

static int buffer_append(buffer *b, const void *data, size_t len) {
        if (b->len + len + 1 > b->size) {
                size_t size = b->size ? b->size : 256;
                while (size < b->len + len + 1)
                        size *= 2;
                char *p = realloc(b->data, size);
                if (!p)
                        return -ENOMEM;
                b->data = p;
                b->size = size;
        }
        memcpy(b->data + b->len, data, len);
        b->len += len;
        b->data[b->len] = '\0';
        return 0;
}

/* Read FILE ("-": stdin) into b; strip_newlines as curl's -d @FILE does. */
static int buffer_read_file(buffer *b, const char *path, bool strip_newlines) {
        FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
        if (!f)
                return -errno;
        char chunk[65536];
        size_t n;
        int r = 0;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
                if (strip_newlines) {
                        size_t w = 0;
                        for (size_t i = 0; i < n; i++)
                                if (chunk[i] != '\r' && chunk[i] != '\n')
                                        chunk[w++] = chunk[i];
                        n = w;
                }
                r = buffer_append(b, chunk, n);
                if (r < 0)
                        break;
        }
        if (r >= 0 && ferror(f))
                r = -EIO;
        if (f != stdin)
                fclose(f);
        return r;
}

/* One -d or --data-binary: joined to the earlier ones with '&', like curl. */
static int add_data(buffer *b, bool *have, const char *arg, bool binary) {
        if (*have) {
                int r = buffer_append(b, "&", 1);
                if (r < 0)
                        return r;
        }
        *have = true;
        if (arg[0] == '@')
                return buffer_read_file(b, arg + 1, !binary);
        return buffer_append(b, arg, strlen(arg));
}

/* -H "Name: value"; "Name:" alone adds nothing (curl removes its own header). */
static int add_header(paf_http_headers *h, const char *arg) {
        const char *colon = strchr(arg, ':');
        if (!colon || colon == arg)
                return -EINVAL;
        size_t n = (size_t)(colon - arg);
        for (size_t i = 0; i < n; i++)
                if (arg[i] == ' ' || arg[i] == '\t')
                        return -EINVAL;
        char *name = strndup(arg, n);
        if (!name)
                return -ENOMEM;
        const char *value = colon + 1;
        value += strspn(value, " \t");
        int r = *value ? paf_http_headers_add(h, name, value) : 0;
        free(name);
        return r;
}

static int parse_seconds(const char *s, uint64_t *ret) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0 || v > 1e9)
                return -EINVAL;
        *ret = (uint64_t)(v * 1e6);
        if (*ret == 0 && v > 0)
                *ret = 1;
        return 0;
}

int cmd_get(int argc, char **argv) {
        enum {
                OPT_DATA_BINARY = 0x100,
                OPT_CACERT,
                OPT_UNIX_SOCKET,
                OPT_CONFIG,
                OPT_HELP,
                OPT_LOCATION_TRUSTED,
                OPT_PROTO_REDIR,
                OPT_HTTP1_1,
                OPT_HTTP2,
                OPT_HTTP2_PRIOR,
        };
        static const struct option options[] = {
                {"request", required_argument, NULL, 'X'},
                {"header", required_argument, NULL, 'H'},
                {"data", required_argument, NULL, 'd'},
                {"data-binary", required_argument, NULL, OPT_DATA_BINARY},
                {"output", required_argument, NULL, 'o'},
                {"include", no_argument, NULL, 'i'},
                {"head", no_argument, NULL, 'I'},
                {"fail", no_argument, NULL, 'f'},
                {"location", no_argument, NULL, 'L'},
                {"location-trusted", no_argument, NULL, OPT_LOCATION_TRUSTED},
                {"proto-redir", required_argument, NULL, OPT_PROTO_REDIR},
                {"cacert", required_argument, NULL, OPT_CACERT},
                {"insecure", no_argument, NULL, 'k'},
                {"unix-socket", required_argument, NULL, OPT_UNIX_SOCKET},
                {"http1.1", no_argument, NULL, OPT_HTTP1_1},
                {"http2", no_argument, NULL, OPT_HTTP2},
                {"http2-prior-knowledge", no_argument, NULL, OPT_HTTP2_PRIOR},
                {"max-time", required_argument, NULL, 'm'},
                {"silent", no_argument, NULL, 's'},
                {"verbose", no_argument, NULL, 'v'},
                {"config", required_argument, NULL, OPT_CONFIG},
                {"help", no_argument, NULL, OPT_HELP},
                {},
        };
        get g = {.total = -1};
        paf_client_options copts = {0};
        const char *method = NULL;
        const char *config = NULL;
        const char *version = NULL; /* http.version; the simple client's default: "2" */
        bool silent = false, have_data = false, form_data = false;
        buffer body = {0};
        /* Every --proto-redir, in order: curl reads them as one list. */
        buffer proto_redir = {0};
        _paf_cleanup_(paf_http_headers_freep) paf_http_headers *headers = NULL;
        _paf_cleanup_(paf_registry_unrefp) paf_registry *reg = NULL;
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
        paf_client *client = NULL;
        int ret = EXIT_USAGE, r, c;

        r = paf_http_headers_new(&headers);
        if (r < 0) {
                tool_error("%s", strerror(-r));
                return EXIT_USAGE;
        }

        optind = 0; /* fresh getopt state: argv[0] is "get" */
        while ((c = getopt_long(argc, argv, ":X:H:d:o:iIfLkm:svh", options, NULL)) >= 0) {
                switch (c) {
                case 'X':
                        method = optarg;
                        break;
                case 'H':
                        r = add_header(headers, optarg);
                        if (r == -EINVAL) {
                                ret = tool_usage_error("-H \"%s\": not \"Name: value\"", optarg);
                                goto out;
                        }
                        if (r < 0) {
                                tool_error("-H \"%s\": %s", optarg, strerror(-r));
                                goto out;
                        }
                        break;
                case 'd':
                case OPT_DATA_BINARY:
                        r = add_data(&body, &have_data, optarg, c == OPT_DATA_BINARY);
                        if (r < 0) {
                                tool_error("%s \"%s\": %s", c == 'd' ? "-d" : "--data-binary",
                                           optarg, strerror(-r));
                                ret = EXIT_READ_ERROR;
                                goto out;
                        }
                        form_data |= c == 'd';
                        break;
                case 'o':
                        g.output_path = strcmp(optarg, "-") == 0 ? NULL : optarg;
                        break;
                case 'i':
                        g.include_head = true;
                        break;
                case 'I':
                        g.head_only = true;
                        g.include_head = true;
                        break;
                case 'f':
                        g.fail_on_error = true;
                        break;
                case 'L':
                        copts.max_redirects = MAX_REDIRECTS;
                        break;
                case OPT_LOCATION_TRUSTED:
                        copts.max_redirects = MAX_REDIRECTS;
                        copts.location_trusted = true;
                        break;
                case OPT_PROTO_REDIR:
                        if ((proto_redir.len > 0 && buffer_append(&proto_redir, ",", 1) < 0) ||
                            buffer_append(&proto_redir, optarg, strlen(optarg)) < 0) {
                                tool_error("%s", strerror(ENOMEM));
                                goto out;
                        }
                        break;
                case OPT_CACERT:
                        copts.ca_file = optarg;
                        break;
                case 'k':
                        copts.insecure = true;
                        break;
                case OPT_UNIX_SOCKET:
                        copts.unix_socket = optarg;
                        break;
                case OPT_HTTP1_1:
                        version = "1.1";
                        break;
                case OPT_HTTP2:
                        version = "2";
                        break;
                case OPT_HTTP2_PRIOR:
                        version = "2-prior-knowledge";
                        break;
                case 'm':
                        if (parse_seconds(optarg, &copts.timeout_usec) < 0) {
                                ret = tool_usage_error("--max-time \"%s\": not a number of seconds",
                                                       optarg);
                                goto out;
                        }
                        break;
                case 's':
                        silent = true;
                        break;
                case 'v':
                        g.verbose = true;
                        break;
                case OPT_CONFIG:
                        config = optarg;
                        break;
                case OPT_HELP:
                case 'h':
                        usage(stdout);
                        ret = EXIT_OK;
                        goto out;
                default:
                        ret = tool_bad_option(c, argv, options);
                        goto out;
                }
        }
        if (optind >= argc) {
                ret = tool_usage_error("no URL");
                goto out;
        }
        if (optind + 1 < argc) {
                ret = tool_usage_error("one URL only; unexpected \"%s\"", argv[optind + 1]);
                goto out;
        }
        g.url = argv[optind];
        if (!method)
                method = g.head_only ? "HEAD" : have_data ? "POST" : "GET";
        if (g.head_only && have_data) {
                ret = tool_usage_error("-I and -d/--data-binary do not go together");
                goto out;
        }
        if (form_data && !paf_http_headers_get(headers, "Content-Type")) {
                r = paf_http_headers_add(headers, "Content-Type",
                                         "application/x-www-form-urlencoded");
                if (r < 0)
                        goto out;
        }
        if (proto_redir.data)
                copts.redirect_schemes = proto_redir.data;

        /* The bar would mix with a body written to the same terminal. */
        g.progress = !silent && !g.verbose && !g.head_only && isatty(STDERR_FILENO) &&
                     (g.output_path || !isatty(STDOUT_FILENO));

        /* A refused plugin was already reported by the loader; the others may still do. */
        if (tool_load_registry(config, false, &reg) < 0) {
                ret = EXIT_USAGE;
                goto out;
        }
        g.reg = reg;
        /* The core knows no transport: nothing could be fetched. */
        if (!tool_check_plugins(reg)) {
                ret = EXIT_UNSUPPORTED_PROTOCOL;
                goto out;
        }
        r = sd_event_new(&g.event);
        if (r < 0) {
                tool_error("cannot create event loop: %s", strerror(-r));
                goto out;
        }
        r = paf_client_new(reg, g.event, &client);
        if (r >= 0)
                r = paf_client_set_options(client, &copts);
        if (r == -EINVAL && copts.redirect_schemes) {
                /* The only option the client can find wrong. */
                ret = tool_usage_error("--proto-redir \"%s\": not a list of schemes "
                                       "(=http,https or -all,+https, say)",
                                       copts.redirect_schemes);
                goto out_event;
        }
        if (r < 0) {
                tool_error("%s: cannot set up the client: %s", g.url, strerror(-r));
                ret = EXIT_COULDNT_CONNECT;
                goto out_event;
        }

        if (version) {
                r = paf_ctx_new(&ctx);
                if (r >= 0)
                        r = paf_ctx_set_string(ctx, "http.version", version);
                if (r < 0) {
                        tool_error("%s: %s", g.url, strerror(-r));
                        goto out_event;
                }
        }
        g.method = method;
        g.headers = headers;
        g.have_data = have_data;
        g.body_len = body.len;
        if (g.verbose) {
                /* The target the request line names, as the client reads the URL. */
                paf_ctx *u = NULL;
                const char *path;
                if (paf_ctx_new(&u) >= 0 && paf_registry_parse_url(reg, g.url, u, NULL) >= 0 &&
                    paf_ctx_get_string(u, "url.path", &path) >= 0)
                        g.target = strdup(path);
                paf_ctx_unref(u);
        }

        paf_client_request request = {
                .method = method,
                .url = g.url,
                .ctx = ctx,
                .headers = headers,
                .body = body.data,
                .body_size = body.len,
                .on_head = on_head,
                .on_body = on_body,
                .userdata = &g,
        };
        g.start_usec = now_usec();
        r = paf_client_send(client, &request, on_done);
        if (r < 0) {
                /* The call was refused before it started (bad URL, unknown scheme). */
                print_error(g.url, strerror(-r));
                hint_plugins(&g, r);
                ret = exit_code_for(r);
                goto out_event;
        }
        r = sd_event_loop(g.event);
        if (r < 0) {
                tool_error("%s: event loop: %s", g.url, strerror(-r));
                ret = EXIT_COULDNT_CONNECT;
                goto out_event;
        }
        ret = g.exit_code;

out_event:
        /* The client goes before its loop. */
        client = paf_client_free(client);
        if (g.out && g.out != stdout) {
                if (fclose(g.out) != 0 && ret == EXIT_OK) {
                        tool_error("%s: cannot write %s: %s", g.url, g.output_path,
                                   strerror(errno));
                        ret = EXIT_WRITE_ERROR;
                }
        } else if (g.out == stdout && fflush(stdout) != 0 && ret == EXIT_OK) {
                tool_error("%s: cannot write the output: %s", g.url, strerror(errno));
                ret = EXIT_WRITE_ERROR;
        }
        sd_event_unref(g.event);
out:
        free(g.target);
        free(body.data);
        free(proto_redir.data);
        return ret;
}
