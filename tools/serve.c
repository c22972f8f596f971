/* tools/serve.c — `paf serve`: static files on every listener the plugins offer, access log. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "paf-tool.h"
#include "static.h"

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define MAX_LISTEN 64

typedef struct serve {
        sd_event *event;
        paf_http_server *server;
        static_root *root;
        bool quiet;
        bool stopping;
} serve;

static void usage(FILE *f) {
        fprintf(f, "Usage: paf serve [OPTIONS]\n"
                   "\n"
                   "Serve the files of a directory over HTTP/1.1.\n"
                   "\n"
                   "  --listen ADDR   Listen on ADDR (repeatable): PORT, HOST:PORT, [V6]:PORT,\n"
                   "                  /path.sock or @abstract (default " DEFAULT_LISTEN ")\n"
                   "  --root DIR      Serve DIR (default: the current directory)\n"
                   "  --config FILE   paf.conf: plugins and the [http] limits\n"
                   "  --quiet         No access log\n"
                   "  --help          Show this help\n");
}

/* ---- access log: combined format, one write(2) per line ---- */

typedef struct access_entry {
        size_t prefix_len; /* text holds the prefix, '\0', then the suffix */
        char text[];
} access_entry;

/* Writes s quoted-safe: a client must not be able to forge log lines or fields. */
static size_t log_escape(char *out, size_t size, const char *s) {
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *)(s ? s : "-"); *p; p++) {
                char tmp[5];
                const char *t = tmp;
                if (*p == '"' || *p == '\\')
                        snprintf(tmp, sizeof(tmp), "\\%c", *p);
                else if (*p < 0x20 || *p >= 0x7f)
                        snprintf(tmp, sizeof(tmp), "\\x%02X", *p);
                else {
                        tmp[0] = (char)*p;
                        tmp[1] = '\0';
                }
                for (; *t; t++) {
                        if (n + 1 < size)
                                out[n] = *t;
                        n++;
                }
        }
        if (size > 0)
                out[n < size ? n : size - 1] = '\0';
        return n;
}

/* "[24/Nov/2026:22:00:00 +0000]", formatted once per second. */
static const char *log_time(void) {
        static char buf[40];
        static time_t last = -1;
        time_t now = time(NULL);
        if (now != last) {
                struct tm tm;
                gmtime_r(&now, &tm);
                strftime(buf, sizeof(buf), "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
                last = now;
        }
        return buf;
}

/* The peer's host for TCP ("127.0.0.1", "::1"); the transport's text otherwise. */
static void log_peer(paf_http_request *req, char *buf, size_t size) {
        const char *peer = paf_http_request_get_peer(req);
        const char *proto = paf_flow_get_protocol(paf_http_request_get_flow(req));
        if (!peer || !*peer || strcmp(peer, "?") == 0) {
                snprintf(buf, size, "%s", proto && *proto ? proto : "-");
                return;
        }
        size_t len = strlen(peer);
        if (proto && strcmp(proto, "tcp") == 0) {
                if (peer[0] == '[') {
                        const char *end = strchr(peer, ']');
                        if (end) {
                                peer++;
                                len = (size_t)(end - peer);
                        }
                } else {
                        const char *colon = strrchr(peer, ':');
                        if (colon)
                                len = (size_t)(colon - peer);
                }
        }
        char tmp[256];
        snprintf(tmp, sizeof(tmp), "%.*s", (int)len, peer);
        for (char *p = tmp; *p; p++)
                if (*p == ' ')
                        *p = '_'; /* one field, whatever the transport calls it */
        log_escape(buf, size, tmp);
}

static access_entry *access_begin(paf_http_request *req) {
        const paf_http_headers *h = paf_http_request_get_headers(req);
        char peer[256], method[64], target[2048], referer[1024], agent[1024];
        log_peer(req, peer, sizeof(peer));
        log_escape(method, sizeof(method), paf_http_request_get_method(req));
        log_escape(target, sizeof(target), paf_http_request_get_target(req));
        log_escape(referer, sizeof(referer), paf_http_headers_get(h, "Referer"));
        log_escape(agent, sizeof(agent), paf_http_headers_get(h, "User-Agent"));
        int version = paf_http_request_get_version(req);

        char prefix[4096], suffix[2100];
        int p = snprintf(prefix, sizeof(prefix), "%s - - %s \"%s %s HTTP/%d.%d\"", peer, log_time(),
                         method, target, version / 10, version % 10);
        int s = snprintf(suffix, sizeof(suffix), "\"%s\" \"%s\"", referer, agent);
        if (p < 0 || s < 0)
                return NULL;
        size_t plen = strnlen(prefix, sizeof(prefix)), slen = strnlen(suffix, sizeof(suffix));
        access_entry *e = malloc(sizeof(*e) + plen + slen + 2);
        if (!e)
                return NULL;
        e->prefix_len = plen;
        memcpy(e->text, prefix, plen + 1);
        memcpy(e->text + plen + 1, suffix, slen + 1);
        return e;
}

static void access_end(int status, uint64_t bytes, void *userdata) {
        access_entry *e = userdata;
        char line[8192];
        int n = snprintf(line, sizeof(line), "%s %d %" PRIu64 " %s\n", e->text, status, bytes,
                         e->text + e->prefix_len + 1);
        if (n > 0) {
                size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
                if (len == sizeof(line) - 1)
                        line[len - 1] = '\n';
                /* One write: lines from one process never interleave. A log that
                 * cannot be written is not a reason to fail the request. */
                ssize_t k = write(STDERR_FILENO, line, len);
                (void)k;
        }
        free(e);
}

/* ---- the server ---- */

static void on_request(paf_http_request *req, void *userdata) {
        serve *s = userdata;
        access_entry *e = s->quiet ? NULL : access_begin(req);
        static_serve(s->root, req, e ? access_end : NULL, e);
}

static void on_error(const char *peer, int status, const char *reason, void *userdata) {
        serve *s = userdata;
        if (s->quiet)
                return;
        if (status > 0)
                fprintf(stderr, "paf: %s: %d %s\n", peer ? peer : "-", status,
                        reason ? reason : "");
        else
                fprintf(stderr, "paf: %s: %s\n", peer ? peer : "-", reason ? reason : "error");
}

static void on_stopped(void *userdata) {
        serve *s = userdata;
        sd_event_exit(s->event, 0);
}

static int on_signal(sd_event_source *source, const struct signalfd_siginfo *si, void *userdata) {
        serve *s = userdata;
        (void)source;
        (void)si;
        if (s->stopping) {
                /* A second signal: stop waiting for slow clients. */
                sd_event_exit(s->event, 0);
                return 0;
        }
        s->stopping = true;
        int r = paf_http_server_stop(s->server, on_stopped, s);
        if (r < 0) {
                fprintf(stderr, "paf: cannot stop gracefully: %s\n", strerror(-r));
                sd_event_exit(s->event, 0);
        }
        return 0;
}

/* "http://127.0.0.1:8080", "unix:/run/paf.sock", "vsock:…" */
static void print_listener(paf_listener *l) {
        const char *proto = paf_listener_get_protocol(l);
        const char *address = paf_listener_get_address(l);
        if (proto && strcmp(proto, "tcp") == 0)
                fprintf(stderr, "paf: listening on http://%s\n", address);
        else
                fprintf(stderr, "paf: listening on %s:%s\n", proto ? proto : "?", address);
}

static int load_registry(const char *config, paf_registry **ret) {
        paf_registry *reg = NULL;
        paf_error error = PAF_ERROR_NULL;
        int r = paf_registry_new(&reg);
        if (r < 0) {
                fprintf(stderr, "paf: cannot create registry: %s\n", strerror(-r));
                return r;
        }
        r = paf_registry_load_config(reg, config, &error);
        if (r >= 0)
                r = paf_registry_load_plugins(reg, &error);
        if (r < 0) {
                fprintf(stderr, "paf: %s\n", error.message[0] ? error.message : strerror(-r));
                paf_registry_unref(reg);
                return r;
        }
        if (r > 0) {
                /* The configuration asked for a plugin we could not load: serving
                 * without it would silently drop a transport. */
                size_t n;
                const paf_plugin_info *info = paf_registry_get_plugins(reg, &n);
                for (size_t i = 0; i < n; i++)
                        if (!info[i].loaded && info[i].requested)
                                fprintf(stderr, "paf: plugin \"%s\" refused: %s\n", info[i].name,
                                        info[i].reason ? info[i].reason : "unknown reason");
                paf_registry_unref(reg);
                return -ENOENT;
        }
        *ret = reg;
        return 0;
}

int cmd_serve(int argc, char **argv) {
        static const struct option options[] = {
                {"listen", required_argument, NULL, 'l'}, {"root", required_argument, NULL, 'r'},
                {"config", required_argument, NULL, 'c'}, {"quiet", no_argument, NULL, 'q'},
                {"help", no_argument, NULL, 'h'},         {},
        };
        const char *listen[MAX_LISTEN];
        size_t n_listen = 0;
        const char *root_path = ".", *config = NULL;
        bool quiet = false;
        int c;
        while ((c = getopt_long(argc, argv, "l:r:c:qh", options, NULL)) >= 0) {
                switch (c) {
                case 'l':
                        if (n_listen == MAX_LISTEN) {
                                fprintf(stderr, "paf serve: more than %d --listen\n", MAX_LISTEN);
                                return 2;
                        }
                        listen[n_listen++] = optarg;
                        break;
                case 'r':
                        root_path = optarg;
                        break;
                case 'c':
                        config = optarg;
                        break;
                case 'q':
                        quiet = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "paf serve: unexpected argument \"%s\"\n", argv[optind]);
                return 2;
        }
        if (n_listen == 0)
                listen[n_listen++] = DEFAULT_LISTEN;

        serve s = {.quiet = quiet};
        paf_registry *reg = NULL;
        int status = 1;

        int r = static_root_new(root_path, &s.root);
        if (r < 0) {
                fprintf(stderr, "paf: --root \"%s\": %s\n", root_path, strerror(-r));
                return 1;
        }
        if (load_registry(config, &reg) < 0)
                goto out;

        paf_http_limits limits;
        r = paf_http_limits_load(&limits, reg);
        if (r < 0) {
                fprintf(stderr, "paf: %s: [http]: %s\n", config ? config : "default configuration",
                        strerror(-r));
                goto out;
        }

        /* Signals arrive through the loop, so stopping runs between requests. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&s.event);
        if (r >= 0)
                r = sd_event_add_signal(s.event, NULL, SIGTERM, on_signal, &s);
        if (r >= 0)
                r = sd_event_add_signal(s.event, NULL, SIGINT, on_signal, &s);
        if (r >= 0)
                r = paf_http_server_new(s.event, on_request, on_error, &s, &s.server);
        if (r >= 0)
                r = paf_http_server_set_limits(s.server, &limits);
        if (r < 0) {
                fprintf(stderr, "paf: cannot set up the server: %s\n", strerror(-r));
                goto out;
        }

        for (size_t i = 0; i < n_listen; i++) {
                paf_listener *l = NULL;
                paf_error error = PAF_ERROR_NULL;
                r = paf_registry_listen_address(reg, listen[i], s.event, NULL, NULL, &l, &error);
                if (r < 0) {
                        /* The plugins' messages usually start with the address already. */
                        char quoted[512];
                        snprintf(quoted, sizeof(quoted), "\"%s\"", listen[i]);
                        if (strncmp(error.message, quoted, strlen(quoted)) == 0)
                                fprintf(stderr, "paf: --listen %s\n", error.message);
                        else
                                fprintf(stderr, "paf: --listen \"%s\": %s\n", listen[i],
                                        error.message[0] ? error.message : strerror(-r));
                        goto out;
                }
                /* The server owns l from here, also when this fails. */
                r = paf_http_server_add_listener(s.server, l);
                if (r < 0) {
                        fprintf(stderr, "paf: --listen \"%s\": %s\n", listen[i], strerror(-r));
                        goto out;
                }
                print_listener(l);
        }

        r = sd_event_loop(s.event);
        if (r < 0)
                fprintf(stderr, "paf: event loop: %s\n", strerror(-r));
        else
                status = 0;
out:
        paf_http_server_free(s.server);
        sd_event_unref(s.event);
        paf_registry_unref(reg);
        static_root_free(s.root);
        return status;
}
