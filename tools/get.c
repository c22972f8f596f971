/* tools/get.c — `paf get URL`: the simple client with curl's options and exit codes. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "get-http.h"
#include "get-proxy.h"
#include "paf-tool.h"

#define MAX_REDIRECTS 20                       /* -L without --max-redirs; curl's is 50 */
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
        EXIT_OUT_OF_MEMORY = 27,
        EXIT_OPERATION_TIMEDOUT = 28,
        EXIT_RANGE_ERROR = 33,
        EXIT_SSL_CONNECT_ERROR = 35,
        EXIT_TOO_MANY_REDIRECTS = 47,
        EXIT_RECV_ERROR = 56,
        EXIT_PEER_FAILED_VERIFICATION = 60,
        EXIT_SSL_CACERT_BADFILE = 77,
};

static inline void get_freep(void *p) {
        free(*(void **)p);
}
#define _cleanup_free_ __attribute__((cleanup(get_freep)))

/* -s hides errors, -S shows them again; the last one is kept for -w %{errormsg}. */
static bool show_errors = true;
/* -x, --noproxy, -b, -c, --compressed: tools/get-http.c. */
static get_http http_opts;
static char last_error[1024];

static void get_error(const char *format, ...) PAF_PRINTF(1, 2);
static void get_error(const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        vsnprintf(last_error, sizeof(last_error), format, ap);
        va_end(ap);
        if (show_errors)
                tool_error("%s", last_error);
}

typedef struct get {
        const char *url;
        const char *output_path; /* NULL: stdout */
        char *output_alloc;      /* -O, -J: output_path's storage */
        bool remote_header_name; /* -J: Content-Disposition names the file */
        bool create_dirs;        /* --create-dirs */
        bool append;             /* -C: the body goes after the file's bytes */
        int64_t resume_from;     /* -C: the offset asked (Range), -1 none */
        FILE *dump;              /* -D: every response's head */
        uint64_t limit_rate;     /* --limit-rate: bytes a second, 0 none */
        bool done;               /* the call ended (on_done ran) */
        paf_response *response;  /* the final response, for -w */
        /* For -w and the retries. */
        uint64_t head_usec;
        uint64_t end_usec;
        /* -w's time_namelookup … time_starttransfer, µs: as curl, each the
         * sum over the responses of the chain (-L) of the time from their
         * request's start; time_redirect: the start of the last one's. */
        uint64_t t_namelookup, t_connect, t_appconnect, t_pretransfer, t_starttransfer;
        uint64_t t_redirect;
        unsigned n_calls; /* responses of the chain so far */
        uint64_t size_header;
        unsigned n_redirects;
        int error_code; /* the call's error, 0 none */
        /* From the connection (on_call): the peer, the transport stack. */
        char remote_ip[64];
        long remote_port;
        char stack[256]; /* "tls over tcp 127.0.0.1:443" */
        const char *ca_file;
        FILE *out;          /* opened at the response's head: a failure creates no file */
        bool include_head;  /* -i, -I */
        bool fail_on_error; /* -f */
        bool verbose;
        bool progress;
        bool quiet_fail; /* a failure already reported (-J refusing to overwrite) */
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
                "Usage: paf get URL… [OPTIONS]\n"
                "\n"
                "Fetch each URL over whichever transport its context resolves to, curl-style,\n"
                "in order, on shared connections. A URL without a scheme is http://.\n"
                "URLs: http://, https://, http+unix://%%2Fpath%%2Fto.sock/path, https+unix://,\n"
                "http+vsock://CID:PORT/path, https+vsock://.\n"
                "\n"
                "  -X, --request METHOD    Use METHOD (default GET; POST with -d)\n"
                "  -H, --header 'N: V'     Add a request header (repeatable)\n"
                "  -d, --data DATA         Send DATA as a form body (POST); repeated -d are\n"
                "                          joined with '&'; @FILE reads FILE without newlines\n"
                "      --data-binary DATA  Send DATA as is; @FILE sends FILE, @- stdin\n"
                "      --data-raw DATA     Like -d, '@' included\n"
                "      --data-urlencode D  content, =content, name=content, @FILE, name@FILE:\n"
                "                          the content URL-encoded, joined as -d\n"
                "      --json DATA         Send DATA (@FILE) as JSON: POST, Content-Type and\n"
                "                          Accept application/json\n"
                "  -G, --get               Put the -d data in the URL's query, GET\n"
                "  -F, --form NAME=VALUE   multipart/form-data: NAME=VALUE, NAME=@FILE (a file,\n"
                "                          ;type=T ;filename=F), NAME=<FILE (a field from FILE)\n"
                "  -T, --upload-file FILE  PUT FILE (to URL/FILE when the URL ends in /)\n"
                "  -u, --user USER:PASS    Basic authentication (also user:pass@ in the URL)\n"
                "  -A, --user-agent NAME   User-Agent\n"
                "  -e, --referer URL       Referer\n"
                "                          (-H \"Name:\" sends no Name, even ours, such as the\n"
                "                          default Accept: */*; -H \"Name;\" sends it empty)\n"
                "  -o, --output FILE       Write the body to FILE instead of stdout (once per\n"
                "                          URL, in order)\n"
                "  -O, --remote-name       Write the body to the URL's file name (once per URL)\n"
                "      --remote-name-all   -O for every URL\n"
                "  -J, --remote-header-name  With -O, the name of Content-Disposition, without\n"
                "                          directories or leading dots; never over a file\n"
                "      --create-dirs       Create the output's missing directories\n"
                "  -D, --dump-header FILE  Write every response's head to FILE (- stdout)\n"
                "  -w, --write-out FORMAT  After each URL write FORMAT (@FILE: from FILE):\n"
                "                          %%{http_code} %%{url_effective} %%{size_download}\n"
                "                          %%{size_header} %%{time_total} %%{time_starttransfer}\n"
                "                          %%{time_namelookup} %%{time_connect}\n"
                "                          %%{time_appconnect} %%{time_pretransfer}\n"
                "                          %%{time_redirect} %%{remote_ip} %%{remote_port}\n"
                "                          %%{num_redirects} %%{content_type} %%{exitcode}\n"
                "                          %%{errormsg} %%{json} %%{header_json} …, \\n \\t\n"
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
                "      --resolve H:P:ADDR  Connect to ADDR for host H, port P\n"
                "  -4, --ipv4, -6, --ipv6  Connect over IPv4 (IPv6) only\n"
                "  -0, --http1.0           Send HTTP/1.0 requests\n"
                "      --http1.1           Speak HTTP/1.1 only\n"
                "      --http2             HTTP/2 when the server takes it by TLS ALPN (the\n"
                "                          default); http:// stays HTTP/1.1 (no Upgrade: h2c)\n"
                "      --http2-prior-knowledge  HTTP/2 from the first byte, TLS or not (h2c)\n"
                "  -m, --max-time SECONDS  Give up after SECONDS (decimals allowed), exit 28\n"
                "      --connect-timeout SECONDS  Give up connecting after SECONDS, exit 28\n"
                "      --max-redirs N      With -L, at most N redirects (-1: no limit), exit 47\n"
                "  -r, --range RANGE       Ask for bytes RANGE (0-99, 100-, -50)\n"
                "  -C, --continue-at OFF   Resume at OFF, or with \"-\" where the output file\n"
                "                          ends (exit 33 if the server cannot)\n"
                "      --retry N           Try N more times after a transient error: timeout,\n"
                "                          unresolved host, HTTP 408 429 500 502 503 504; wait\n"
                "                          1 s, doubling, or the server's Retry-After\n"
                "      --retry-delay S     Wait S seconds between tries instead\n"
                "      --retry-max-time S  No try after S seconds of tries\n"
                "      --retry-connrefused  A refused connection is transient too\n"
                "      --limit-rate RATE   Read at most RATE bytes a second (K, M, G)\n"
                "  -s, --silent            No progress bar, no error message\n"
                "  -S, --show-error        With -s, the error messages still\n"
                "  -v, --verbose           Tell on stderr which transport was used and why\n"
                "                          the others were not, the transport stack, the TLS\n"
                "                          version, cipher and certificate, the HTTP version,\n"
                "                          and the exchanged headers of every response\n"
                "      --config FILE       paf.conf: plugins and their settings\n" GET_HTTP_USAGE GET_PROXY_USAGE
                "      --help              Show this help\n"
                "\n"
                "Exit status as curl's: 0 ok, 1 unsupported protocol or one refused on a\n"
                "redirect, 6 host not resolved, 7 connection failed, 22 HTTP error with -f,\n"
                "23 write error, 26 read error, 28 timeout, 33 range not served, 35 TLS\n"
                "failure, 47 too many redirects, 60 certificate not verified, 77 --cacert\n"
                "unusable. With several URLs, the last failure's.\n",
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
        case -EAGAIN:    /* HTTP/2: refused or cut by GOAWAY before the server processed it */
        case -EREMOTEIO: /* a proxy refused the CONNECT tunnel */
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
                get_error("%s", message);
        else if (strncmp(message, "URL \"", 5) == 0 && strncmp(message + 5, url, n) == 0 &&
                 strncmp(message + 5 + n, "\": ", 3) == 0)
                get_error("%s: %s", url, message + 5 + n + 3);
        else
                get_error("%s: %s", url, message);
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
        if (hint && show_errors)
                tool_error("%s", hint);
        free(hint);
}

/* --cacert FILE is at fault for this failure: unreadable, or no certificate in it. */
static bool ca_file_unusable(const char *ca_file, int code, const char *message) {
        if (code != -ENOENT && code != -EACCES && code != -EINVAL && code != -EISDIR &&
            code != -EPERM && code != -ENOTDIR)
                return false;
        return strstr(message, ca_file) != NULL;
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
        if (g->create_dirs) {
                /* --create-dirs: the missing directories of the path, as mkdir -p. */
                char *dir = strdup(g->output_path);
                if (!dir) {
                        g->write_errno = ENOMEM;
                        return -ENOMEM;
                }
                for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
                        *p = '\0';
                        if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
                                g->write_errno = errno;
                                free(dir);
                                return -g->write_errno;
                        }
                        *p = '/';
                }
                free(dir);
        }
        g->out = fopen(g->output_path, g->append ? "ae" : "we");
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

/* The reason phrase as the server wrote it (curl shows the status line as
 * it came), else the code's. HTTP/2 has none: curl 7.88 still writes the
 * space before it ("HTTP/2 200 "), and so do we. */
static const char *status_reason(int status, const paf_http_headers *headers) {
        if (paf_http_headers_get_version(headers) == 20)
                return "";
        const char *reason = paf_http_headers_get_reason(headers);
        return reason && *reason ? reason : paf_http_status_reason(status);
}

/* The status line as curl writes it: HTTP/2 has no reason phrase. */
static void print_head(FILE *f, const char *prefix, int status, const paf_http_headers *headers) {
        int version = paf_http_headers_get_version(headers);
        const char *reason = status_reason(status, headers);
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

/* The bytes of a head as it came on the wire (HTTP/1.1: the status line,
 * the fields, the blank line), for %{size_header}. */
static uint64_t head_size(int status, const paf_http_headers *headers) {
        int version = paf_http_headers_get_version(headers);
        const char *reason = status_reason(status, headers);
        /* "HTTP/1.1 200 OK\r\n" */
        uint64_t n = strlen(version_name(version)) + 4 + (reason ? 1 + strlen(reason) : 0) + 2;
        size_t count = headers ? paf_http_headers_count(headers) : 0;
        for (size_t i = 0; i < count; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(headers, i, &name, &value) >= 0)
                        n += strlen(name) + 2 + strlen(value) + 2;
        }
        return n + 2;
}

/* The request target (path and query) of url, as the client reads it; NULL if none. */
static char *url_target(paf_registry *reg, const char *url) {
        paf_ctx *u = NULL;
        const char *path;
        char *t = NULL;
        if (paf_ctx_new(&u) >= 0 && paf_registry_parse_url(reg, url, u, NULL) >= 0 &&
            paf_ctx_get_string(u, "url.path", &path) >= 0)
                t = strdup(path);
        paf_ctx_unref(u);
        return t;
}

/* -v, as curl: the version used, the request (its target the URL's; -L tells
 * the final URL at the end), then the response's head. */
static void print_exchange(get *g, const char *url, int status, const paf_http_headers *headers) {
        const char *version = version_name(paf_http_headers_get_version(headers));
        char *target = url_target(g->reg, url);
        fprintf(stderr, "* using %s\n", version);
        fprintf(stderr, "> %s %s %s\n", g->method, target ? target : url, version);
        free(target);
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

/* -D: every head, as -i writes it. */
static void dump_head(get *g, int status, const paf_http_headers *headers) {
        if (g->dump) {
                print_head(g->dump, "", status, headers);
                fflush(g->dump);
        }
}

/* -J: the file name of a Content-Disposition (filename="x" or filename=x),
 * without any directory (a server names no path on this machine) and
 * without leading dots (no hidden or "..") file. NULL if none is usable. */
static char *disposition_name(const char *value) {
        const char *p = value;
        while ((p = strcasestr(p, "filename"))) {
                const char *q = p + 8;
                p = q;
                q += strspn(q, " \t");
                if (*q != '=')
                        continue;
                q++;
                q += strspn(q, " \t");
                size_t len;
                if (*q == '"') {
                        q++;
                        len = strcspn(q, "\"");
                } else
                        len = strcspn(q, "; \t\r\n");
                char *name = strndup(q, len);
                if (!name)
                        return NULL;
                char *base = name;
                for (char *c = name; *c; c++)
                        if (*c == '/' || *c == '\\')
                                base = c + 1;
                base += strspn(base, ".");
                if (!*base) {
                        free(name);
                        return NULL;
                }
                memmove(name, base, strlen(base) + 1);
                return name;
        }
        return NULL;
}

/* One response's times into the chain's, as curl adds them up. */
static void add_times(get *g, paf_http_call *call) {
        paf_http_call_timings t = {.struct_size = sizeof(t)};
        if (paf_http_call_get_timings(call, &t) < 0)
                return;
        /* The first request starts with the command's transfer. */
        uint64_t from = g->n_calls++ == 0 ? g->start_usec : t.start_usec;
        if (g->n_calls > 1)
                g->t_redirect = t.start_usec > g->start_usec ? t.start_usec - g->start_usec : 0;
        uint64_t *sum[] = {&g->t_namelookup, &g->t_connect, &g->t_appconnect, &g->t_pretransfer,
                           &g->t_starttransfer};
        uint64_t at[] = {t.namelookup_usec, t.connect_usec, t.appconnect_usec, t.pretransfer_usec,
                         t.starttransfer_usec};
        for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
                /* A step not taken (no TLS, a kept-alive connection) adds nothing. */
                if (at[i])
                        *sum[i] += at[i] > from ? at[i] - from : 0;
}

/* The connection a response came on: its peer for -w, and for -v the
 * transport stack and the TLS session, as curl -v tells them; the times. */
static void on_call(paf_http_call *call, void *userdata) {
        get *g = userdata;
        add_times(g, call);
        struct sockaddr_storage ss;
        char tls_version[32] = "", buf[512], host[INET6_ADDRSTRLEN] = "";
        const char *family = NULL;
        int n = paf_http_call_query(call, PAF_FLOW_QUERY_PEER_SOCKADDR, &ss, sizeof(ss));
        g->remote_ip[0] = '\0';
        g->remote_port = 0;
        if (n > 0 && ss.ss_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                g->remote_port = ntohs(in->sin_port);
                family = "tcp";
        } else if (n > 0 && ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                g->remote_port = ntohs(in6->sin6_port);
                family = "tcp";
        } else if (n > 0 && ss.ss_family == AF_UNIX)
                family = "unix";
        snprintf(g->remote_ip, sizeof(g->remote_ip), "%s", host);
        bool tls = paf_http_call_query(call, PAF_FLOW_QUERY_TLS_VERSION, tls_version,
                                       sizeof(tls_version)) >= 0;
        const char *endpoint = paf_http_call_get_endpoint(call);
        if (family && ss.ss_family == AF_INET6)
                snprintf(g->stack, sizeof(g->stack), "%s%s [%s]:%ld", tls ? "tls over " : "",
                         family, host, g->remote_port);
        else if (family && ss.ss_family == AF_INET)
                snprintf(g->stack, sizeof(g->stack), "%s%s %s:%ld", tls ? "tls over " : "", family,
                         host, g->remote_port);
        else if (family && ss.ss_family == AF_UNIX) {
                const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
                snprintf(g->stack, sizeof(g->stack), "%sunix %s", tls ? "tls over " : "",
                         n > (int)offsetof(struct sockaddr_un, sun_path) && un->sun_path[0]
                                 ? un->sun_path
                                 : "(unnamed)");
        } else
                /* A transport with no socket address (vsock, a plugin's): as it names itself. */
                snprintf(g->stack, sizeof(g->stack), "%s", endpoint ? endpoint : "?");
        if (!g->verbose)
                return;
        fprintf(stderr, "* transport: %s\n", g->stack);
        if (!tls)
                return;
        char cipher[128] = "";
        (void)paf_http_call_query(call, PAF_FLOW_QUERY_TLS_CIPHER, cipher, sizeof(cipher));
        fprintf(stderr, "* SSL connection using %s / %s\n", tls_version, cipher[0] ? cipher : "?");
        if (paf_http_call_query(call, PAF_FLOW_QUERY_TLS_ALPN, buf, sizeof(buf)) >= 0)
                fprintf(stderr, buf[0] ? "* ALPN: server accepted %s\n" : "* ALPN: none%s\n", buf);
        if (paf_http_call_query(call, PAF_FLOW_QUERY_TLS_PEER_DN, buf, sizeof(buf)) < 0) {
                /* -k: nothing verified, nothing to vouch for. */
                fprintf(stderr, "* Server certificate: not verified\n");
                return;
        }
        fprintf(stderr, "* Server certificate:\n*  subject: %s\n", buf);
        int64_t expiry;
        if (paf_http_call_query(call, PAF_FLOW_QUERY_TLS_PEER_EXPIRY, &expiry, sizeof(expiry)) >=
            0) {
                time_t t = (time_t)expiry;
                struct tm tm;
                char date[64];
                if (gmtime_r(&t, &tm) && strftime(date, sizeof(date), "%b %e %H:%M:%S %Y GMT", &tm))
                        fprintf(stderr, "*  expire date: %s\n", date);
        }
        if (paf_http_call_query(call, PAF_FLOW_QUERY_TLS_PEER_ISSUER, buf, sizeof(buf)) >= 0)
                fprintf(stderr, "*  issuer: %s\n", buf);
        fprintf(stderr, "*  SSL certificate verify ok.\n");
}

/* A response the call does not end with (a redirect it follows): -i, -D
 * and -v show it, as curl does for every response of the chain. */
static void on_redirect(int status, const paf_http_headers *headers, const char *url,
                        const char *next_url, void *userdata) {
        get *g = userdata;
        get_http_response(&http_opts, status, headers, next_url, false);
        g->n_redirects++;
        g->size_header += head_size(status, headers);
        if (g->verbose) {
                print_exchange(g, url, status, headers);
                fprintf(stderr, "* follow redirect to %s\n", next_url);
        }
        dump_head(g, status, headers);
        if (g->include_head && !(g->fail_on_error && status >= 400) && open_output(g) >= 0)
                print_head(g->out, "", status, headers);
}

static void on_head(int status, const paf_http_headers *headers, void *userdata) {
        get *g = userdata;
        get_http_response(&http_opts, status, headers, NULL, g->head_only);
        g->status = status;
        g->head_usec = now_usec();
        g->size_header += head_size(status, headers);
        g->head_shown = true;
        if (g->verbose)
                print_exchange(g, g->url, status, headers);
        dump_head(g, status, headers);
        if (g->fail_on_error && status >= 400) {
                g->failed_http = true;
                return;
        }
        if (g->resume_from > 0 && status == 416) {
                /* As curl: the file is whole already; the error page does not go after it. */
                g->failed_http = true;
                return;
        }
        if (g->resume_from > 0 && status != 206 && status < 300) {
                /* As curl: the server sent the whole body, not the rest. */
                g->failed_http = true;
                g->quiet_fail = true;
                get_error("%s: HTTP server doesn't seem to support byte ranges. Cannot resume.",
                          g->url);
                g->exit_code = EXIT_RANGE_ERROR;
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
        const char *cd = headers ? paf_http_headers_get(headers, "Content-Disposition") : NULL;
        if (g->remote_header_name && cd && !g->out) {
                char *name = disposition_name(cd);
                if (name) {
                        /* As curl -J: never over an existing file. */
                        if (access(name, F_OK) == 0) {
                                get_error("%s: Refusing to overwrite %s: File exists", g->url,
                                          name);
                                free(name);
                                g->failed_http = true;
                                g->quiet_fail = true;
                                g->exit_code = EXIT_WRITE_ERROR;
                                return;
                        }
                        free(g->output_alloc);
                        g->output_alloc = name;
                        g->output_path = name;
                }
        }
        if (open_output(g) < 0)
                return;
        if (g->include_head)
                print_head(g->out, "", status, headers);
}

/* --limit-rate: hold the loop until the average rate is back under the
 * limit; the kernel's socket buffer then holds the sender back. */
static void limit_rate(get *g) {
        uint64_t elapsed = now_usec() - g->start_usec;
        uint64_t due = g->received * 1000000ULL / g->limit_rate;
        if (due > elapsed) {
                uint64_t wait = due - elapsed;
                struct timespec ts = {.tv_sec = (time_t)(wait / 1000000ULL),
                                      .tv_nsec = (long)(wait % 1000000ULL) * 1000};
                nanosleep(&ts, NULL);
        }
}

/* The body, after --compressed's decoding. */
static int write_sink(const void *data, size_t len, void *userdata) {
        return write_out(userdata, data, len);
}

static int on_body(const void *data, size_t len, void *userdata) {
        get *g = userdata;
        if (g->failed_http)
                return 0; /* -f: drop it; small error pages end the call sooner than an abort */
        if (g->write_errno)
                return -g->write_errno;
        if (!g->out && open_output(g) < 0)
                return -g->write_errno;
        int r = get_http_body(&http_opts, data, len, write_sink, g);
        if (r < 0)
                return r;
        g->received += len;
        if (g->limit_rate)
                limit_rate(g);
        progress_draw(g, false);
        return 0;
}

static void on_done(paf_response *response, const paf_error *error, void *userdata) {
        get *g = userdata;
        g->done = true;
        g->end_usec = now_usec();
        g->error_code = error ? error->code : 0;
        char decode_error[256];
        if (get_http_end(&http_opts, error && !http_opts.decode_failed, decode_error,
                         sizeof(decode_error)) < 0) {
                get_error("%s: %s", g->url, decode_error);
                g->exit_code = http_opts.decode_exit;
                g->quiet_fail = true;
        }
        if (g->progress && g->drawn) {
                progress_draw(g, true);
                progress_clear(g);
        }
        if (g->quiet_fail) {
                /* Already said, exit code set. */
        } else if (g->write_errno) {
                get_error("%s: cannot write %s: %s", g->url,
                          g->output_path ? g->output_path : "the output", strerror(g->write_errno));
                g->exit_code = EXIT_WRITE_ERROR;
        } else if (error) {
                const char *msg = error->message[0] ? error->message : strerror(-error->code);
                char proxy_msg[600];
                int proxy_exit = get_proxy_failure(error->code, msg, g->fail_on_error, proxy_msg,
                                                   sizeof(proxy_msg));
                g->exit_code = exit_code_for(error->code);
                if (proxy_exit > 0) {
                        /* The proxy's failure, with curl's code for it (tools/get-proxy.c). */
                        g->exit_code = proxy_exit;
                        print_error(g->url, proxy_msg);
                } else if (g->ca_file && ca_file_unusable(g->ca_file, error->code, msg)) {
                        /* curl's 77: the trust file, not the peer, is at fault. */
                        get_error("%s: error setting certificate file: %s", g->url, g->ca_file);
                        g->exit_code = EXIT_SSL_CACERT_BADFILE;
                } else {
                        print_error(g->url, msg);
                        hint_plugins(g, error->code);
                }
        } else if (response) {
                if (g->verbose) {
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
                        get_error("%s: The requested URL returned error: %d", g->url,
                                  response->status);
                        g->exit_code = EXIT_HTTP_RETURNED_ERROR;
                } else {
                        /* No head handler call (an empty response, say): still the output. */
                        if (!g->out) {
                                on_head(response->status, response->headers, g);
                                if (g->write_errno)
                                        get_error("%s: cannot write %s: %s", g->url,
                                                  g->output_path ? g->output_path : "the output",
                                                  strerror(g->write_errno));
                        }
                        if (g->out && response->body && response->body_size > 0)
                                write_out(g, response->body, response->body_size);
                        if (!g->quiet_fail)
                                g->exit_code = g->write_errno ? EXIT_WRITE_ERROR : EXIT_OK;
                }
        } else {
                get_error("%s: no response", g->url);
                g->exit_code = EXIT_RECV_ERROR;
        }
        /* Kept for -w. */
        paf_response_free(g->response);
        g->response = response;
}

/* ---- -w ---- */

/* A JSON string (or null) on f. */
static void json_string(FILE *f, const char *s) {
        if (!s) {
                fputs("null", f);
                return;
        }
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p == '\n')
                        fputs("\\n", f);
                else if (*p == '\r')
                        fputs("\\r", f);
                else if (*p == '\t')
                        fputs("\\t", f);
                else if (*p < 0x20)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
        fputc('"', f);
}

/* "tcp 127.0.0.1:8080", "tls over tcp [::1]:443": the peer's address and port. */
static void endpoint_address(const char *endpoint, char *ip, size_t size, long *port) {
        *ip = '\0';
        *port = 0;
        if (!endpoint)
                return;
        const char *sp = strrchr(endpoint, ' ');
        const char *a = sp ? sp + 1 : endpoint;
        const char *colon = strrchr(a, ':');
        if (!colon || colon == a || strncmp(endpoint, "unix", 4) == 0)
                return;
        const char *start = a, *end = colon;
        if (*start == '[' && end[-1] == ']') {
                start++;
                end--;
        }
        if ((size_t)(end - start) >= size)
                return;
        memcpy(ip, start, (size_t)(end - start));
        ip[end - start] = '\0';
        *port = strtol(colon + 1, NULL, 10);
}

static double secs_since(const get *g, uint64_t usec) {
        return usec > g->start_usec ? (double)(usec - g->start_usec) / 1e6 : 0;
}

/* The header fields as curl's %{header_json}: names lowercased, values in arrays. */
static void header_json(FILE *f, const paf_http_headers *h) {
        size_t n = h ? paf_http_headers_count(h) : 0;
        fputc('{', f);
        bool first = true;
        for (size_t i = 0; i < n; i++) {
                const char *name, *value, *other;
                if (paf_http_headers_get_nth(h, i, &name, &value) < 0)
                        continue;
                bool seen = false;
                for (size_t j = 0; j < i && !seen; j++)
                        if (paf_http_headers_get_nth(h, j, &other, &value) >= 0 &&
                            strcasecmp(other, name) == 0)
                                seen = true;
                if (seen)
                        continue;
                fputs(first ? "\"" : ",\"", f);
                first = false;
                for (const char *c = name; *c; c++)
                        fputc(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c, f);
                fputs("\":[", f);
                bool first_value = true;
                for (size_t j = i; j < n; j++)
                        if (paf_http_headers_get_nth(h, j, &other, &value) >= 0 &&
                            strcasecmp(other, name) == 0) {
                                if (!first_value)
                                        fputc(',', f);
                                first_value = false;
                                json_string(f, value);
                        }
                fputc(']', f);
        }
        fputs("}\n", f);
}

/* One -w variable on f; false if there is no such variable. As curl's. */
static bool write_variable(get *g, FILE *f, const char *name, size_t len) {
        const paf_response *r = g->response;
        char ip[64];
        long port;
        endpoint_address(r ? r->endpoint : NULL, ip, sizeof(ip), &port);
        if (r && g->remote_port) {
                snprintf(ip, sizeof(ip), "%s", g->remote_ip);
                port = g->remote_port;
        }
        const char *ctype =
                r && r->headers ? paf_http_headers_get(r->headers, "Content-Type") : NULL;
        const char *url = r && r->url ? r->url : g->url;
        double total = secs_since(g, g->end_usec), start = (double)g->t_starttransfer / 1e6,
               namelookup = (double)g->t_namelookup / 1e6, connect = (double)g->t_connect / 1e6,
               appconnect = (double)g->t_appconnect / 1e6,
               pretransfer = (double)g->t_pretransfer / 1e6, redirect = (double)g->t_redirect / 1e6;
#define IS(s) (len == strlen(s) && strncmp(name, s, len) == 0)
        if (IS("http_code") || IS("response_code"))
                fprintf(f, "%03d", r ? r->status : 0);
        else if (IS("url_effective"))
                fputs(url, f);
        else if (IS("url"))
                fputs(g->url, f);
        else if (IS("size_download"))
                fprintf(f, "%" PRIu64, g->received + (r ? (uint64_t)r->body_size : 0));
        else if (IS("size_header"))
                fprintf(f, "%" PRIu64, g->size_header);
        else if (IS("time_total"))
                fprintf(f, "%.6f", total);
        else if (IS("time_starttransfer"))
                fprintf(f, "%.6f", start);
        else if (IS("time_namelookup"))
                fprintf(f, "%.6f", namelookup);
        else if (IS("time_connect"))
                fprintf(f, "%.6f", connect);
        else if (IS("time_appconnect"))
                fprintf(f, "%.6f", appconnect);
        else if (IS("time_pretransfer"))
                fprintf(f, "%.6f", pretransfer);
        else if (IS("time_redirect"))
                fprintf(f, "%.6f", redirect);
        else if (IS("remote_ip"))
                fputs(ip, f);
        else if (IS("remote_port"))
                fprintf(f, "%ld", port);
        else if (IS("num_redirects"))
                fprintf(f, "%u", g->n_redirects);
        else if (IS("content_type")) {
                if (ctype)
                        fputs(ctype, f);
        } else if (IS("exitcode"))
                fprintf(f, "%d", g->exit_code);
        else if (IS("errormsg")) {
                if (g->exit_code)
                        fputs(last_error, f);
        } else if (IS("method"))
                fputs(g->method, f);
        else if (IS("filename_effective")) {
                if (g->output_path)
                        fputs(g->output_path, f);
        } else if (IS("header_json"))
                header_json(f, r ? r->headers : NULL);
        else if (IS("json")) {
                fputs("{\"content_type\":", f);
                json_string(f, ctype);
                fputs(",\"errormsg\":", f);
                json_string(f, g->exit_code ? last_error : NULL);
                fprintf(f, ",\"exitcode\":%d,\"filename_effective\":", g->exit_code);
                json_string(f, g->output_path);
                fprintf(f, ",\"http_code\":%d,\"method\":", r ? r->status : 0);
                json_string(f, g->method);
                fprintf(f, ",\"num_redirects\":%u,\"remote_ip\":", g->n_redirects);
                json_string(f, ip);
                fprintf(f,
                        ",\"remote_port\":%ld,\"response_code\":%d,\"size_download\":%" PRIu64
                        ",\"size_header\":%" PRIu64 ",\"time_appconnect\":%.6f"
                        ",\"time_connect\":%.6f,\"time_namelookup\":%.6f"
                        ",\"time_pretransfer\":%.6f,\"time_redirect\":%.6f"
                        ",\"time_starttransfer\":%.6f,\"time_total\":%.6f,\"url\":",
                        port, r ? r->status : 0, g->received + (r ? (uint64_t)r->body_size : 0),
                        g->size_header, appconnect, connect, namelookup, pretransfer, redirect,
                        start, total);
                json_string(f, g->url);
                fputs(",\"url_effective\":", f);
                json_string(f, url);
                fputs("}", f);
        } else
                return false;
#undef IS
        return true;
}

/* -w FORMAT after the transfer: %{var}, %%, \n \r \t, as curl. */
static void write_format(get *g, const char *format) {
        FILE *f = stdout;
        for (const char *p = format; *p; p++) {
                if (p[0] == '%' && p[1] == '%') {
                        fputc('%', f);
                        p++;
                } else if (p[0] == '%' && p[1] == '{') {
                        const char *end = strchr(p + 2, '}');
                        if (!end) {
                                fputs(p, f);
                                break;
                        }
                        size_t len = (size_t)(end - p - 2);
                        if (len == 6 && strncmp(p + 2, "stderr", 6) == 0)
                                f = stderr;
                        else if (len == 6 && strncmp(p + 2, "stdout", 6) == 0)
                                f = stdout;
                        else if (!write_variable(g, f, p + 2, len))
                                fprintf(stderr, "%s: unknown --write-out variable: '%.*s'\n",
                                        tool_name, (int)len, p + 2);
                        p = end;
                } else if (p[0] == '\\' && (p[1] == 'n' || p[1] == 'r' || p[1] == 't')) {
                        fputc(p[1] == 'n' ? '\n' : p[1] == 'r' ? '\r' : '\t', f);
                        p++;
                } else
                        fputc(*p, f);
        }
        fflush(f);
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

/* As curl's --data-urlencode: every byte but the unreserved ones as %XX,
 * and a space as '+'. */
static int buffer_append_urlencoded(buffer *b, const char *s, size_t len) {
        static const char hex[] = "0123456789ABCDEF";
        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)s[i];
                int r;
                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~')
                        r = buffer_append(b, s + i, 1);
                else if (ch == ' ')
                        r = buffer_append(b, "+", 1);
                else {
                        char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
                        r = buffer_append(b, e, 3);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* One --data-urlencode, as curl: "content", "=content", "name=content",
 * "@file", "name@file"; the name goes as it is, the content encoded. */
static int add_data_urlencode(buffer *b, bool *have, const char *arg) {
        int r;
        if (*have && (r = buffer_append(b, "&", 1)) < 0)
                return r;
        *have = true;
        size_t n = strcspn(arg, "=@");
        if (arg[n] == '\0')
                return buffer_append_urlencoded(b, arg, n);
        if (n > 0 && ((r = buffer_append(b, arg, n)) < 0 || (r = buffer_append(b, "=", 1)) < 0))
                return r;
        if (arg[n] == '=')
                return buffer_append_urlencoded(b, arg + n + 1, strlen(arg + n + 1));
        buffer file = {0};
        r = buffer_read_file(&file, arg + n + 1, false);
        if (r >= 0)
                r = buffer_append_urlencoded(b, file.data ? file.data : "", file.len);
        free(file.data);
        return r;
}

/* The media type curl gives a -F file by its extension. */
static const char *form_file_type(const char *name) {
        static const char *const types[][2] = {
                {".gif", "image/gif"},       {".jpg", "image/jpeg"},    {".jpeg", "image/jpeg"},
                {".png", "image/png"},       {".svg", "image/svg+xml"}, {".txt", "text/plain"},
                {".htm", "text/html"},       {".html", "text/html"},    {".pdf", "application/pdf"},
                {".xml", "application/xml"},
        };
        size_t len = strlen(name);
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                size_t e = strlen(types[i][0]);
                if (len > e && strcasecmp(name + len - e, types[i][0]) == 0)
                        return types[i][1];
        }
        return "application/octet-stream";
}

/* One -F part: "name=value", "name=@file[;type=T][;filename=F]" (a file
 * upload), "name=<file" (a field read from file). -EINVAL: no '='. */
static int add_form_part(buffer *b, const char *boundary, const char *arg) {
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg)
                return -EINVAL;
        _cleanup_free_ char *name = strndup(arg, (size_t)(eq - arg));
        _cleanup_free_ char *value = strdup(eq + 1);
        if (!name || !value)
                return -ENOMEM;
        const char *type = NULL, *filename = NULL;
        bool file = value[0] == '@', field_file = value[0] == '<';
        if (file || field_file) {
                /* Modifiers after the file name, as curl's ";type=" and ";filename=". */
                for (char *semi = strchr(value, ';'); semi; semi = strchr(semi + 1, ';')) {
                        *semi = '\0';
                        if (strncmp(semi + 1, "type=", 5) == 0)
                                type = semi + 6;
                        else if (strncmp(semi + 1, "filename=", 9) == 0)
                                filename = semi + 10;
                }
        }
        buffer content = {0};
        int r = 0;
        if (file || field_file)
                r = buffer_read_file(&content, value + 1, false);
        else
                r = buffer_append(&content, value, strlen(value));
        if (r < 0) {
                free(content.data);
                return r;
        }
        if (file && !filename) {
                const char *slash = strrchr(value + 1, '/');
                filename = slash ? slash + 1 : value + 1;
        }
        _cleanup_free_ char *head = NULL;
        if (file)
                r = asprintf(&head,
                             "--%s\r\nContent-Disposition: form-data; name=\"%s\"; "
                             "filename=\"%s\"\r\nContent-Type: %s\r\n\r\n",
                             boundary, name, filename, type ? type : form_file_type(filename));
        else if (type)
                r = asprintf(&head,
                             "--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n"
                             "Content-Type: %s\r\n\r\n",
                             boundary, name, type);
        else
                r = asprintf(&head, "--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n",
                             boundary, name);
        if (r < 0) {
                head = NULL;
                r = -ENOMEM;
        } else
                r = buffer_append(b, head, strlen(head));
        if (r >= 0 && content.len)
                r = buffer_append(b, content.data, content.len);
        if (r >= 0)
                r = buffer_append(b, "\r\n", 2);
        free(content.data);
        return r;
}

/*
 * -u or -U USER without a password (kind "host", "proxy"): as curl asks,
 * the prompt on stderr, naming
 * the user without its ";OPTIONS", then one line read with echo off from
 * the terminal, or from stdin when there is none (at its end: an empty
 * password). A byte at a time: what follows the line on stdin stays there
 * for -d @- or -T -. *ret: "USER:PASSWORD". < 0 only out of memory.
 */
static int ask_password(const char *kind, const char *user, char **ret) {
        int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
        bool own = fd >= 0;
        if (!own)
                fd = STDIN_FILENO;
        struct termios saved;
        bool quiet = false;
        if (tcgetattr(fd, &saved) == 0) {
                struct termios t = saved;
                t.c_lflag &= ~(tcflag_t)ECHO;
                quiet = tcsetattr(fd, TCSANOW, &t) == 0;
        }
        fprintf(stderr, "Enter %s password for user '%.*s':", kind, (int)strcspn(user, ";"), user);
        fflush(stderr);
        char password[2048];
        size_t n = 0;
        while (n < sizeof(password) - 1) {
                char c;
                ssize_t k = read(fd, &c, 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0 || c == '\n')
                        break;
                password[n++] = c;
        }
        /* A terminal that does not turn Enter into a newline. */
        if (n > 0 && password[n - 1] == '\r')
                n--;
        password[n] = '\0';
        /* The Enter was not echoed; curl ends the line whatever it read from. */
        fputc('\n', stderr);
        if (quiet)
                (void)tcsetattr(fd, TCSANOW, &saved);
        if (own)
                close(fd);
        int r = asprintf(ret, "%s:%s", user, password);
        explicit_bzero(password, sizeof(password));
        return r < 0 ? -ENOMEM : 0;
}

/* RFC 4648 base64 of s, for Basic credentials. */
static char *base64(const char *s, size_t len) {
        static const char alphabet[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
        if (!out)
                return NULL;
        const unsigned char *p = (const unsigned char *)s;
        for (size_t i = 0; i < len; i += 3) {
                unsigned v = p[i] << 16 | (i + 1 < len ? p[i + 1] << 8 : 0) |
                             (i + 2 < len ? p[i + 2] : 0);
                *o++ = alphabet[v >> 18 & 63];
                *o++ = alphabet[v >> 12 & 63];
                *o++ = i + 1 < len ? alphabet[v >> 6 & 63] : '=';
                *o++ = i + 2 < len ? alphabet[v & 63] : '=';
        }
        *o = '\0';
        return out;
}

/* Percent-decoding in place (URL userinfo). */
static void percent_decode(char *s) {
        char *w = s;
        for (char *p = s; *p; p++) {
                if (p[0] == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
                        char hex[3] = {p[1], p[2], 0};
                        *w++ = (char)strtol(hex, NULL, 16);
                        p += 2;
                } else
                        *w++ = *p;
        }
        *w = '\0';
}

/*
 * A command-line URL as curl takes it: "http://" when it has no scheme;
 * userinfo ("user:password@") out of it, into *ret_userinfo (decoded), as
 * it goes in Authorization: Basic, not to the server's URL parser.
 */
static int normalize_url(const char *arg, char **ret_url, char **ret_userinfo) {
        _cleanup_free_ char *url = NULL;
        *ret_userinfo = NULL;
        if (!strstr(arg, "://")) {
                if (asprintf(&url, "http://%s", arg) < 0)
                        return -ENOMEM;
        } else if (!(url = strdup(arg)))
                return -ENOMEM;
        char *authority = strstr(url, "://") + 3;
        size_t alen = strcspn(authority, "/?#");
        char *at = memrchr(authority, '@', alen);
        if (at) {
                char *userinfo = strndup(authority, (size_t)(at - authority));
                if (!userinfo)
                        return -ENOMEM;
                percent_decode(userinfo);
                memmove(authority, at + 1, strlen(at + 1) + 1);
                *ret_userinfo = userinfo;
        }
        *ret_url = url;
        url = NULL;
        return 0;
}

/* -O: the URL's last path segment, without query; NULL when it has none. */
static char *remote_name(const char *url) {
        const char *path = strstr(url, "://");
        path = path ? strchr(path + 3, '/') : NULL;
        if (!path)
                return NULL;
        size_t len = strcspn(path, "?#");
        const char *slash = path;
        for (size_t i = 0; i < len; i++)
                if (path[i] == '/')
                        slash = path + i;
        size_t n = len - (size_t)(slash + 1 - path);
        return n ? strndup(slash + 1, n) : NULL;
}

/* A copy of h. */
static int headers_dup(const paf_http_headers *h, paf_http_headers **ret) {
        paf_http_headers *c = NULL;
        int r = paf_http_headers_new(&c);
        size_t n = paf_http_headers_count(h);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(h, i, &name, &value) >= 0)
                        r = paf_http_headers_add(c, name, value);
        }
        if (r < 0) {
                paf_http_headers_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* --limit-rate 100K: bytes, with curl's K, M, G (powers of 1024). */
static int parse_rate(const char *s, uint64_t *ret) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || v <= 0)
                return -EINVAL;
        switch (*end) {
        case 'k':
        case 'K':
                v *= 1024, end++;
                break;
        case 'm':
        case 'M':
                v *= 1024 * 1024, end++;
                break;
        case 'g':
        case 'G':
                v *= 1024.0 * 1024 * 1024, end++;
                break;
        }
        if (*end || v < 1 || v > 1e15)
                return -EINVAL;
        *ret = (uint64_t)v;
        return 0;
}

/* A whole non-negative number of an option (--retry N, --max-redirs N). */
static int parse_count(const char *s, long *ret) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < -1)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Whether curl's --retry would try again after this attempt, and after how long. */
static bool retry_transient(const get *g, bool connrefused) {
        if (g->exit_code == EXIT_OPERATION_TIMEDOUT || g->exit_code == EXIT_COULDNT_RESOLVE_HOST)
                return true;
        if (g->exit_code == EXIT_COULDNT_CONNECT)
                return connrefused && g->error_code == -ECONNREFUSED;
        if (g->exit_code != EXIT_OK && g->exit_code != EXIT_HTTP_RETURNED_ERROR)
                return false;
        switch (g->status) {
        case 408:
        case 429:
        case 500:
        case 502:
        case 503:
        case 504:
                return true;
        default:
                return false;
        }
}

/* Retry-After: seconds, or an HTTP date; -1 if none. */
static long retry_after(const get *g) {
        const char *v = g->response && g->response->headers
                                ? paf_http_headers_get(g->response->headers, "Retry-After")
                                : NULL;
        if (!v)
                return -1;
        char *end;
        long s = strtol(v, &end, 10);
        if (end != v && *end == '\0' && s >= 0)
                return s;
        struct tm tm = {0};
        if (strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
                time_t t = timegm(&tm), now = time(NULL);
                return t > now ? (long)(t - now) : 0;
        }
        return -1;
}

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        get *g = userdata;
        g->done = true;
        return 0;
}

/* Run the loop until on_done (or the timer) sets g->done. */
static int run_until_done(get *g) {
        while (!g->done) {
                int r = sd_event_run(g->event, UINT64_MAX);
                if (r < 0)
                        return r;
        }
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
                OPT_REMOTE_NAME_ALL,
                OPT_CREATE_DIRS,
                OPT_DATA_URLENCODE,
                OPT_DATA_RAW,
                OPT_JSON,
                OPT_RETRY,
                OPT_RETRY_DELAY,
                OPT_RETRY_MAX_TIME,
                OPT_RETRY_CONNREFUSED,
                OPT_CONNECT_TIMEOUT,
                OPT_MAX_REDIRS,
                OPT_LIMIT_RATE,
                OPT_HTTP1_0,
                OPT_RESOLVE,
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
                {"http1.0", no_argument, NULL, OPT_HTTP1_0},
                {"ipv4", no_argument, NULL, '4'},
                {"ipv6", no_argument, NULL, '6'},
                {"resolve", required_argument, NULL, OPT_RESOLVE},
                {"http2", no_argument, NULL, OPT_HTTP2},
                {"http2-prior-knowledge", no_argument, NULL, OPT_HTTP2_PRIOR},
                {"max-time", required_argument, NULL, 'm'},
                {"silent", no_argument, NULL, 's'},
                {"show-error", no_argument, NULL, 'S'},
                {"write-out", required_argument, NULL, 'w'},
                {"dump-header", required_argument, NULL, 'D'},
                {"remote-name", no_argument, NULL, 'O'},
                {"remote-name-all", no_argument, NULL, OPT_REMOTE_NAME_ALL},
                {"remote-header-name", no_argument, NULL, 'J'},
                {"create-dirs", no_argument, NULL, OPT_CREATE_DIRS},
                {"user", required_argument, NULL, 'u'},
                {"user-agent", required_argument, NULL, 'A'},
                {"referer", required_argument, NULL, 'e'},
                {"data-urlencode", required_argument, NULL, OPT_DATA_URLENCODE},
                {"data-raw", required_argument, NULL, OPT_DATA_RAW},
                {"json", required_argument, NULL, OPT_JSON},
                {"get", no_argument, NULL, 'G'},
                {"form", required_argument, NULL, 'F'},
                {"upload-file", required_argument, NULL, 'T'},
                {"range", required_argument, NULL, 'r'},
                {"continue-at", required_argument, NULL, 'C'},
                {"retry", required_argument, NULL, OPT_RETRY},
                {"retry-delay", required_argument, NULL, OPT_RETRY_DELAY},
                {"retry-max-time", required_argument, NULL, OPT_RETRY_MAX_TIME},
                {"retry-connrefused", no_argument, NULL, OPT_RETRY_CONNREFUSED},
                {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
                {"max-redirs", required_argument, NULL, OPT_MAX_REDIRS},
                {"limit-rate", required_argument, NULL, OPT_LIMIT_RATE},
                {"verbose", no_argument, NULL, 'v'},
                GET_HTTP_OPTIONS,
                GET_PROXY_OPTIONS,
                {"config", required_argument, NULL, OPT_CONFIG},
                {"help", no_argument, NULL, OPT_HELP},
                {},
        };
        get g = {.total = -1};
        paf_client_options copts = {0};
        const char *method = NULL;
        const char *config = NULL;
        const char *version = NULL; /* http.version; the simple client's default: "2" */
        bool no_agent = false;
        bool silent = false, have_data = false, form_data = false;
        buffer body = {0};
        /* Command-line order: URLs, and what -o/-O give them (curl's rule:
         * the n-th -o or -O goes to the n-th URL). NULL output: -O. */
        const char *urls[256];
        const char *outputs[256];
        size_t n_urls = 0, n_outputs = 0;
        bool remote_name_all = false, json_data = false, use_get = false, have_form = false;
        bool retry_connrefused = false, show_error = false;
        long retries = 0, max_redirs = -2, retry_delay = -1, retry_max_time = 0;
        const char *write_format_arg = NULL, *dump_path = NULL, *user = NULL, *upload = NULL;
        const char *proxy_user = NULL; /* -U, as given */
        char *proxy_asked = NULL;      /* -U with the password asked for */
        const char *continue_at = NULL;
        char boundary[64] = "";
        /* -H "Name:": headers of ours not to send. */
        buffer removed = {0};
        buffer write_file = {0}; /* -w @FILE */
        buffer resolve = {0};    /* --resolve, joined with ',' */
        int family = 0;          /* -4, -6 */
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
        while ((c = getopt_long(argc, argv,
                                "-:X:H:d:o:iIfLkm:svhSw:D:OJu:A:e:GF:T:r:C:046" GET_HTTP_SHORT GET_PROXY_SHORT,
                                options, NULL)) >= 0) {
                if (c == 'U')
                        proxy_user = optarg;
                /* -U, --socks5 …: tools/get-proxy.c (it notes -x, and leaves it). */
                r = get_proxy_option(c, optarg);
                if (r < 0) {
                        tool_error("%s", strerror(-r));
                        goto out;
                }
                if (r > 0)
                        continue;
                r = get_http_option(&http_opts, c, optarg, &ret);
                if (r < 0)
                        goto out;
                if (r > 0)
                        continue;
                switch (c) {
                case 'X':
                        method = optarg;
                        break;
                case 1:
                        /* A URL ("-" first in the option string keeps the order). */
                        if (n_urls >= sizeof(urls) / sizeof(urls[0])) {
                                ret = tool_usage_error("too many URLs (at most %zu)",
                                                       sizeof(urls) / sizeof(urls[0]));
                                goto out;
                        }
                        urls[n_urls++] = optarg;
                        break;
                case 'H':
                        if (optarg[0] && !strchr(optarg, ':') &&
                            optarg[strlen(optarg) - 1] == ';') {
                                /* curl's "Name;": the header, empty. */
                                _cleanup_free_ char *name = strndup(optarg, strlen(optarg) - 1);
                                r = name ? paf_http_headers_add(headers, name, "") : -ENOMEM;
                                if (r < 0) {
                                        ret = tool_usage_error("-H \"%s\": not \"Name;\"", optarg);
                                        goto out;
                                }
                                break;
                        }
                        if (optarg[0] && strchr(optarg, ':') &&
                            strchr(optarg, ':')[1 + strspn(strchr(optarg, ':') + 1, " \t")] ==
                                    '\0') {
                                /* "Name:": none of that header, not even ours. */
                                if (buffer_append(&removed, optarg,
                                                  (size_t)(strchr(optarg, ':') - optarg)) < 0 ||
                                    buffer_append(&removed, "\n", 1) < 0)
                                        goto out;
                        }
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
                        form_data = true; /* curl: --data-binary too */
                        break;
                case 'o':
                case 'O':
                        if (n_outputs >= sizeof(outputs) / sizeof(outputs[0])) {
                                ret = tool_usage_error("too many -o/-O");
                                goto out;
                        }
                        /* "-o -": stdout; -O: NULL, the name comes from the URL. */
                        outputs[n_outputs++] = c == 'O' ? NULL : optarg;
                        break;
                case OPT_REMOTE_NAME_ALL:
                        remote_name_all = true;
                        break;
                case 'J':
                        g.remote_header_name = true;
                        break;
                case OPT_CREATE_DIRS:
                        g.create_dirs = true;
                        break;
                case 'S':
                        show_error = true;
                        break;
                case 'w':
                        write_format_arg = optarg;
                        if (optarg[0] == '@') {
                                /* curl: -w @FILE reads the format from FILE ("-": stdin). */
                                write_file.len = 0;
                                r = buffer_read_file(&write_file, optarg + 1, false);
                                if (r < 0) {
                                        tool_error("-w \"%s\": %s", optarg, strerror(-r));
                                        ret = EXIT_READ_ERROR;
                                        goto out;
                                }
                                write_format_arg = write_file.data ? write_file.data : "";
                        }
                        break;
                case 'D':
                        dump_path = optarg;
                        break;
                case 'u':
                        user = optarg;
                        break;
                case 'A':
                case 'e':
                        r = paf_http_headers_set(headers, c == 'A' ? "User-Agent" : "Referer",
                                                 optarg);
                        if (r < 0) {
                                tool_error("-%c \"%s\": %s", c, optarg, strerror(-r));
                                goto out;
                        }
                        break;
                case OPT_DATA_URLENCODE:
                case OPT_DATA_RAW:
                        r = c == OPT_DATA_RAW ? add_data(&body, &have_data, optarg, true)
                                              : add_data_urlencode(&body, &have_data, optarg);
                        if (r < 0) {
                                tool_error("%s \"%s\": %s",
                                           c == OPT_DATA_RAW ? "--data-raw" : "--data-urlencode",
                                           optarg, strerror(-r));
                                ret = EXIT_READ_ERROR;
                                goto out;
                        }
                        form_data = true;
                        break;
                case OPT_JSON:
                        /* As curl: the pieces joined as they are, no '&'. */
                        r = 0;
                        if (optarg[0] == '@')
                                r = buffer_read_file(&body, optarg + 1, false);
                        else
                                r = buffer_append(&body, optarg, strlen(optarg));
                        if (r < 0) {
                                tool_error("--json \"%s\": %s", optarg, strerror(-r));
                                ret = EXIT_READ_ERROR;
                                goto out;
                        }
                        have_data = json_data = true;
                        break;
                case 'G':
                        use_get = true;
                        break;
                case 'F':
                        if (!boundary[0]) {
                                /* curl's shape: 24 dashes, 16 hex digits of randomness. */
                                unsigned char rnd[8] = {0};
                                int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
                                if (fd >= 0) {
                                        if (read(fd, rnd, sizeof(rnd)) < 0)
                                                memset(rnd, 0x5a, sizeof(rnd));
                                        close(fd);
                                }
                                int w = snprintf(boundary, sizeof(boundary),
                                                 "------------------------");
                                for (size_t i = 0; i < sizeof(rnd); i++)
                                        w += snprintf(boundary + w, sizeof(boundary) - (size_t)w,
                                                      "%02x", rnd[i]);
                        }
                        r = add_form_part(&body, boundary, optarg);
                        if (r == -EINVAL) {
                                ret = tool_usage_error("-F \"%s\": not \"name=value\", "
                                                       "\"name=@file\" or \"name=<file\"",
                                                       optarg);
                                goto out;
                        }
                        if (r < 0) {
                                tool_error("-F \"%s\": %s", optarg, strerror(-r));
                                ret = EXIT_READ_ERROR;
                                goto out;
                        }
                        have_data = have_form = true;
                        break;
                case 'T':
                        upload = optarg;
                        break;
                case 'r':
                        if (strspn(optarg, "0123456789-,") != strlen(optarg) ||
                            !strchr(optarg, '-')) {
                                ret = tool_usage_error("-r \"%s\": not a range (0-99, 100-, -50)",
                                                       optarg);
                                goto out;
                        }
                        {
                                _cleanup_free_ char *range = NULL;
                                if (asprintf(&range, "bytes=%s", optarg) < 0) {
                                        range = NULL;
                                        goto out;
                                }
                                if (paf_http_headers_set(headers, "Range", range) < 0)
                                        goto out;
                        }
                        break;
                case 'C':
                        continue_at = optarg;
                        if (strcmp(optarg, "-") != 0 &&
                            strspn(optarg, "0123456789") != strlen(optarg)) {
                                ret = tool_usage_error("-C \"%s\": not an offset or \"-\"", optarg);
                                goto out;
                        }
                        break;
                case OPT_RETRY:
                case OPT_RETRY_DELAY:
                case OPT_RETRY_MAX_TIME:
                case OPT_MAX_REDIRS: {
                        long v;
                        if (parse_count(optarg, &v) < 0 || (v < 0 && c != OPT_MAX_REDIRS)) {
                                ret = tool_usage_error("%s \"%s\": not a whole number",
                                                       argv[optind - 1], optarg);
                                goto out;
                        }
                        if (c == OPT_RETRY)
                                retries = v;
                        else if (c == OPT_RETRY_DELAY)
                                retry_delay = v;
                        else if (c == OPT_RETRY_MAX_TIME)
                                retry_max_time = v;
                        else
                                max_redirs = v;
                        break;
                }
                case OPT_RETRY_CONNREFUSED:
                        retry_connrefused = true;
                        break;
                case OPT_CONNECT_TIMEOUT:
                        if (parse_seconds(optarg, &copts.connect_timeout_usec) < 0) {
                                ret = tool_usage_error(
                                        "--connect-timeout \"%s\": not a number of seconds",
                                        optarg);
                                goto out;
                        }
                        break;
                case OPT_LIMIT_RATE:
                        if (parse_rate(optarg, &g.limit_rate) < 0) {
                                ret = tool_usage_error("--limit-rate \"%s\": not a rate (bytes a "
                                                       "second, or with K, M, G)",
                                                       optarg);
                                goto out;
                        }
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
                case OPT_HTTP1_0:
                case '0':
                        version = "1.0";
                        break;
                case '4':
                case '6':
                        family = c == '4' ? 4 : 6;
                        break;
                case OPT_RESOLVE: {
                        /* HOST:PORT:ADDR, every one for tcp.resolve. */
                        const char *c1 = strchr(optarg, ':');
                        const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                        if (!c2 || c1 == optarg || c2 == c1 + 1 || !c2[1] || strchr(optarg, ',')) {
                                ret = tool_usage_error("--resolve \"%s\": not HOST:PORT:ADDRESS",
                                                       optarg);
                                goto out;
                        }
                        if ((resolve.len > 0 && buffer_append(&resolve, ",", 1) < 0) ||
                            buffer_append(&resolve, optarg, strlen(optarg)) < 0)
                                goto out;
                        break;
                }
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
        if (n_urls == 0) {
                ret = tool_usage_error("no URL");
                goto out;
        }
        g.url = urls[0]; /* for the messages before the first call */
        /* As curl: errors hidden by -s unless -S. */
        show_errors = !silent || show_error;
        if (have_form && (form_data || json_data)) {
                /* As curl: one kind of body. */
                ret = tool_usage_error("-F and -d/--data-*/--json do not go together");
                goto out;
        }
        if (upload && have_data) {
                ret = tool_usage_error("-T and -d/-F/--json do not go together");
                goto out;
        }
        if (upload) {
                r = buffer_read_file(&body, upload, false);
                if (r < 0) {
                        get_error("-T \"%s\": %s", upload, strerror(-r));
                        ret = EXIT_READ_ERROR;
                        goto out;
                }
                have_data = true;
        }
        if (use_get && have_data && !have_form && !upload) {
                /* -G: the data goes in the query, not as a body. */
                have_data = form_data = json_data = false;
        } else
                use_get = false;
        if (!method)
                method = g.head_only ? "HEAD" : upload ? "PUT" : have_data ? "POST" : "GET";
        if (g.head_only && have_data) {
                ret = tool_usage_error("-I and -d/--data-binary do not go together");
                goto out;
        }
        if (have_form && (r = buffer_append(&body, "--", 2)) >= 0 &&
            (r = buffer_append(&body, boundary, strlen(boundary))) >= 0)
                r = buffer_append(&body, "--\r\n", 4);
        if (have_form && r < 0)
                goto out;
                /* Our defaults, unless -H set or removed them ("Name:"). */
#define REMOVED(name) (removed.data && strcasestr(removed.data, name "\n"))
        /* -H "User-Agent:": not even the engine's (curl sends none then). */
        no_agent = REMOVED("User-Agent");
        if (have_form && !paf_http_headers_get(headers, "Content-Type") &&
            !REMOVED("Content-Type")) {
                _cleanup_free_ char *type = NULL;
                if (asprintf(&type, "multipart/form-data; boundary=%s", boundary) < 0) {
                        type = NULL;
                        goto out;
                }
                if (paf_http_headers_add(headers, "Content-Type", type) < 0)
                        goto out;
        }
        if (json_data && !paf_http_headers_get(headers, "Content-Type") &&
            !REMOVED("Content-Type") &&
            paf_http_headers_add(headers, "Content-Type", "application/json") < 0)
                goto out;
        if (json_data && !paf_http_headers_get(headers, "Accept") && !REMOVED("Accept") &&
            paf_http_headers_add(headers, "Accept", "application/json") < 0)
                goto out;
        if (!paf_http_headers_get(headers, "Accept") && !REMOVED("Accept") &&
            paf_http_headers_add(headers, "Accept", "*/*") < 0)
                goto out;
        if (user) {
                /* As curl: without ":PASSWORD" it asks for one, whatever -H
                 * says, before any transfer; ";OPTIONS" alone asks nothing and
                 * goes with an empty password. */
                _cleanup_free_ char *asked = NULL;
                const char *credentials = user;
                if (!strchr(user, ':')) {
                        if (user[0] == ';' ? asprintf(&asked, "%s:", user) < 0
                                           : ask_password("host", user, &asked) < 0) {
                                asked = NULL;
                                ret = EXIT_OUT_OF_MEMORY;
                                goto out;
                        }
                        credentials = asked;
                }
                if (!paf_http_headers_get(headers, "Authorization")) {
                        _cleanup_free_ char *b64 = base64(credentials, strlen(credentials)),
                                            *auth = NULL;
                        if (!b64 || asprintf(&auth, "Basic %s", b64) < 0) {
                                auth = NULL;
                                goto out;
                        }
                        if (paf_http_headers_add(headers, "Authorization", auth) < 0)
                                goto out;
                }
        }
        /* -U the same way, after -u as curl asks; given to tools/get-proxy.c
         * again, whole. */
        if (proxy_user && !strchr(proxy_user, ':')) {
                if (proxy_user[0] == ';' ? asprintf(&proxy_asked, "%s:", proxy_user) < 0
                                         : ask_password("proxy", proxy_user, &proxy_asked) < 0) {
                        proxy_asked = NULL;
                        ret = EXIT_OUT_OF_MEMORY;
                        goto out;
                }
                r = get_proxy_option('U', proxy_asked);
                if (r < 0) {
                        tool_error("%s", strerror(-r));
                        goto out;
                }
        }
        if (form_data && !paf_http_headers_get(headers, "Content-Type") &&
            !REMOVED("Content-Type")) {
                r = paf_http_headers_add(headers, "Content-Type",
                                         "application/x-www-form-urlencoded");
                if (r < 0)
                        goto out;
        }
#undef REMOVED
        if (proto_redir.data)
                copts.redirect_schemes = proto_redir.data;
        if (copts.max_redirects && max_redirs != -2)
                copts.max_redirects = max_redirs < 0 ? UINT_MAX : (unsigned)max_redirs;
        g.ca_file = copts.ca_file;

        /* The bar would mix with a body written to the same terminal. */
        g.progress = !silent && !g.verbose && !g.head_only && isatty(STDERR_FILENO) &&
                     (n_outputs > 0 || remote_name_all || !isatty(STDOUT_FILENO));

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

        if (version || family || resolve.len || no_agent) {
                r = paf_ctx_new(&ctx);
                if (r >= 0 && version)
                        r = paf_ctx_set_string(ctx, "http.version", version);
                if (r >= 0 && no_agent)
                        r = paf_ctx_set_string(ctx, "http.user-agent", "");
                /* The tcp plugin's: -4/-6 and --resolve, for every hop. */
                if (r >= 0 && family)
                        r = paf_ctx_set_int(ctx, "tcp.family", family);
                if (r >= 0 && resolve.len)
                        r = paf_ctx_set_string(ctx, "tcp.resolve", resolve.data);
                if (r < 0) {
                        tool_error("%s: %s", g.url, strerror(-r));
                        goto out_event;
                }
        }
        r = get_http_setup(&http_opts, reg, &ctx, headers);
        if (r > 0) {
                ret = r;
                goto out_event;
        }
        char proxy_error[512];
        r = get_proxy_check(urls, n_urls, proxy_error, sizeof(proxy_error));
        if (r > 0) {
                get_error("%s: %s", n_urls ? urls[0] : "", proxy_error);
                ret = r;
                goto out_event;
        }
        g.method = method;
        g.have_data = have_data;
        g.body_len = body.len;
        if (dump_path) {
                g.dump = strcmp(dump_path, "-") == 0 ? stdout : fopen(dump_path, "we");
                if (!g.dump) {
                        get_error("-D %s: %s", dump_path, strerror(errno));
                        ret = EXIT_WRITE_ERROR;
                        goto out_event;
                }
        }

        /* One call per URL, in order, on one client: connections are reused. */
        ret = EXIT_OK;
        for (size_t u = 0; u < n_urls; u++) {
                _cleanup_free_ char *url = NULL, *userinfo = NULL, *query_url = NULL;
                _paf_cleanup_(paf_http_headers_freep) paf_http_headers *h = NULL;
                r = normalize_url(urls[u], &url, &userinfo);
                if (r >= 0)
                        r = headers_dup(headers, &h);
                if (r < 0) {
                        get_error("%s: %s", urls[u], strerror(-r));
                        ret = EXIT_OUT_OF_MEMORY;
                        continue;
                }
                if (use_get) {
                        if (asprintf(&query_url, "%s%c%s", url, strchr(url, '?') ? '&' : '?',
                                     body.data ? body.data : "") < 0) {
                                query_url = NULL;
                                ret = EXIT_OUT_OF_MEMORY;
                                continue;
                        }
                        free(url);
                        url = query_url;
                        query_url = NULL;
                }
                if (upload && url[strlen(url) - 1] == '/') {
                        /* curl -T file http://host/dir/: the file's name appended. */
                        const char *slash = strrchr(upload, '/');
                        if (asprintf(&query_url, "%s%s", url, slash ? slash + 1 : upload) < 0) {
                                query_url = NULL;
                                ret = EXIT_OUT_OF_MEMORY;
                                continue;
                        }
                        free(url);
                        url = query_url;
                        query_url = NULL;
                }
                if (userinfo && !user && !paf_http_headers_get(h, "Authorization")) {
                        /* curl: userinfo in the URL is Basic, as -u. */
                        _cleanup_free_ char *b64 = base64(userinfo, strlen(userinfo)), *auth = NULL;
                        if (!b64 || asprintf(&auth, "Basic %s", b64) < 0 ||
                            paf_http_headers_add(h, "Authorization", auth) < 0) {
                                ret = EXIT_OUT_OF_MEMORY;
                                continue;
                        }
                }

                /* This URL's output: its -o or -O, else --remote-name-all's, else stdout. */
                free(g.output_alloc);
                g.output_alloc = NULL;
                g.output_path = NULL;
                bool remote = u < n_outputs ? outputs[u] == NULL : remote_name_all;
                if (u < n_outputs && outputs[u] && strcmp(outputs[u], "-") != 0)
                        g.output_path = outputs[u];
                else if (remote) {
                        g.output_alloc = remote_name(url);
                        if (!g.output_alloc) {
                                get_error("%s: Remote file name has no length!", url);
                                ret = EXIT_WRITE_ERROR;
                                continue;
                        }
                        g.output_path = g.output_alloc;
                }
                bool header_name = g.remote_header_name;
                g.remote_header_name = header_name && remote;

                /* -C: where the file ends is where the body starts. */
                g.resume_from = -1;
                g.append = false;
                if (continue_at) {
                        int64_t off = 0;
                        struct stat st;
                        if (strcmp(continue_at, "-") != 0)
                                off = strtoll(continue_at, NULL, 10);
                        else if (g.output_path && stat(g.output_path, &st) == 0)
                                off = st.st_size;
                        if (off > 0) {
                                char range[64];
                                snprintf(range, sizeof(range), "bytes=%" PRId64 "-", off);
                                if (paf_http_headers_set(h, "Range", range) < 0) {
                                        ret = EXIT_OUT_OF_MEMORY;
                                        continue;
                                }
                                g.resume_from = off;
                                g.append = true;
                        }
                }
                g.url = url;
                g.headers = h;

                uint64_t first_start = now_usec();
                long delay_s = retry_delay >= 0 ? retry_delay : 1;
                for (long attempt = 0;; attempt++) {
                        g.out = NULL;
                        g.done = false;
                        g.status = 0;
                        g.exit_code = 0;
                        g.error_code = 0;
                        g.write_errno = 0;
                        g.failed_http = g.quiet_fail = g.head_shown = false;
                        g.total = -1;
                        g.received = 0;
                        g.head_usec = g.end_usec = 0;
                        g.t_namelookup = g.t_connect = g.t_appconnect = g.t_pretransfer = 0;
                        g.t_starttransfer = g.t_redirect = 0;
                        g.n_calls = 0;
                        g.size_header = 0;
                        g.n_redirects = 0;
                        g.remote_ip[0] = g.stack[0] = '\0';
                        g.remote_port = 0;
                        g.drawn = false;
                        last_error[0] = '\0';
                        get_http_begin(&http_opts, g.url);
                        paf_response_free(g.response);
                        g.response = NULL;

                        paf_client_request request = {
                                .method = method,
                                .url = g.url,
                                .ctx = ctx,
                                .headers = h,
                                .body = use_get ? NULL : body.data,
                                .body_size = use_get ? 0 : body.len,
                                .on_head = on_head,
                                .on_body = on_body,
                                .userdata = &g,
                        };
                        g.start_usec = now_usec();
                        static const paf_client_hooks hooks = {
                                .struct_size = sizeof(paf_client_hooks),
                                .on_redirect = on_redirect,
                                .on_call = on_call,
                        };
                        r = paf_client_send_hooked(client, &request, &hooks, on_done);
                        if (r < 0) {
                                /* The call was refused before it started (bad URL, unknown scheme).
                                 */
                                print_error(g.url, strerror(-r));
                                hint_plugins(&g, r);
                                g.exit_code = exit_code_for(r);
                                g.end_usec = now_usec();
                        } else {
                                r = run_until_done(&g);
                                if (r < 0) {
                                        get_error("%s: event loop: %s", g.url, strerror(-r));
                                        ret = EXIT_COULDNT_CONNECT;
                                        g.url = urls[u]; /* url goes with this scope */
                                        goto out_event;
                                }
                        }
                        if (g.out && g.out != stdout) {
                                if (fclose(g.out) != 0 && g.exit_code == EXIT_OK) {
                                        get_error("%s: cannot write %s: %s", g.url, g.output_path,
                                                  strerror(errno));
                                        g.exit_code = EXIT_WRITE_ERROR;
                                }
                                g.out = NULL;
                        }
                        if (attempt >= retries || !retry_transient(&g, retry_connrefused))
                                break;
                        /* curl's rules: no try once --retry-max-time is spent; a
                         * server's Retry-After wins over the delay, unless it would
                         * go past that time. */
                        uint64_t spent = now_usec() - first_start;
                        if (retry_max_time > 0 && spent >= (uint64_t)retry_max_time * 1000000ULL)
                                break;
                        long wait = delay_s;
                        long after = retry_after(&g);
                        if (after > 0) {
                                if (retry_max_time > 0 &&
                                    (long)(spent / 1000000ULL) + after > retry_max_time) {
                                        if (show_errors && !silent)
                                                fprintf(stderr,
                                                        "Warning: The Retry-After: time would make "
                                                        "this command line exceed the maximum "
                                                        "allowed time for retries.\n");
                                        break;
                                }
                                wait = after;
                        }
                        if (show_errors && !silent)
                                fprintf(stderr,
                                        "Warning: Problem : %s. Will retry in %ld seconds. %ld "
                                        "retries left.\n",
                                        g.exit_code == EXIT_OPERATION_TIMEDOUT ? "timeout"
                                        : g.exit_code == EXIT_COULDNT_CONNECT ? "connection refused"
                                        : g.exit_code == EXIT_COULDNT_RESOLVE_HOST ? "timeout"
                                                                                   : "HTTP error",
                                        wait, retries - attempt);
                        if (retry_delay < 0)
                                /* curl's backoff: 1, 2, 4 … seconds, at most 10 minutes. */
                                delay_s = delay_s * 2 > 600 ? 600 : delay_s * 2;
                        /* An output file starts again, as curl truncates it. */
                        if (g.output_path && !g.append && g.received > 0)
                                (void)truncate(g.output_path, 0);
                        g.done = false;
                        r = sd_event_add_time_relative(g.event, NULL, CLOCK_MONOTONIC,
                                                       (uint64_t)wait * 1000000ULL, 0,
                                                       on_retry_timer, &g);
                        if (r < 0 || run_until_done(&g) < 0)
                                break;
                }
                g.remote_header_name = header_name;
                if (write_format_arg)
                        write_format(&g, write_format_arg);
                fflush(stdout);
                if (g.exit_code != EXIT_OK)
                        ret = g.exit_code;
                paf_response_free(g.response);
                g.response = NULL;
                g.headers = headers;
                /* url goes with this iteration. */
                g.url = urls[u];
        }

out_event:
        /* The client goes before its loop. */
        client = paf_client_free(client);
        r = get_http_finish(&http_opts);
        if (r > 0 && ret == EXIT_OK)
                ret = r;
        if (g.out && g.out != stdout)
                fclose(g.out);
        else if (fflush(stdout) != 0 && ret == EXIT_OK) {
                get_error("%s: cannot write the output: %s", g.url, strerror(errno));
                ret = EXIT_WRITE_ERROR;
        }
        if (g.dump && g.dump != stdout)
                fclose(g.dump);
        paf_response_free(g.response);
        sd_event_unref(g.event);
out:
        get_http_done(&http_opts);
        free(proxy_asked);
        free(g.output_alloc);
        free(removed.data);
        free(write_file.data);
        free(resolve.data);
        free(body.data);
        free(proto_redir.data);
        return ret;
}
