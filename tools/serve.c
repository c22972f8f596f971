/* tools/serve.c — `paf serve`: static files on every listener the plugins offer, HTTPS through the
 * tls layer, access log; one event loop per worker thread. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "acme-tool.h"
#include "paf-tool.h"
#include "workers.h"
#include <paf/static.h>

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define MAX_LISTEN 64
#define STATUS_INTERVAL_USEC (1000 * 1000ULL)
#define MAX_CERTS 16     /* what the tls layer takes: tls.cert-file, tls.cert-file.2 … .16 */
#define MAX_HEADERS 64   /* --header, repeated */
#define MAX_WORKERS 1024 /* [http] workers' range */

/* What --cert, --key and --client-ca say. */
typedef struct tls_config {
        char *cert[MAX_CERTS]; /* the first is the default, the others go by SNI */
        char *key[MAX_CERTS];
        size_t n_certs;
        char *client_ca; /* NULL: no client certificates asked for */
} tls_config;

/* What a TLS listener's configuration is made from. Each worker's listener
 * gets a context of its own, made by the control thread: a context is read
 * by one thread at a time. A reload makes new ones from the same source, so
 * the files are read again. */
typedef enum tls_source {
        TLS_FILES,   /* --cert, --key, --client-ca */
        TLS_SECTION, /* [listen.NAME] */
        TLS_ACME,    /* the ACME manager's certificate, and the tls-alpn-01 table */
} tls_source;

typedef struct tls_group {
        tls_source source;
        char *section;    /* TLS_SECTION: "listen.web" */
        char *label;      /* "https://127.0.0.1:8443", for messages */
        size_t n_workers; /* that serve it: all of them, or one */
} tls_group;

/* A worker's listener of one tls_group. */
typedef struct worker_tls {
        bool serves;            /* the worker has such a listener: set once, read by both threads */
        paf_listener *listener; /* owned by the worker's server */
        paf_ctx *ctx;           /* what it was loaded from */
        /* Under the worker's lock: */
        paf_ctx *next; /* a reload's, from the control thread */
        int result;    /* of this round's reload: 0, or -errno with error */
        char error[512];
} worker_tls;

/* What the control thread asks of a worker. */
enum {
        CMD_RELOAD = 1 << 0, /* load the worker_tls.next contexts */
        CMD_ACME = 1 << 1,   /* an ACME certificate exists: plain HTTP may redirect */
        CMD_STOP = 1 << 2,   /* graceful stop */
        CMD_EXIT = 1 << 3,   /* a second signal: stop at once */
};

typedef struct serve serve;

/*
 * A worker: an event loop with its own server and listeners. With one
 * worker it is the control loop itself and no thread runs; with several,
 * each runs on a thread of its own and shares every listening socket with
 * the others (workers.h). The control thread keeps the signals, sd_notify
 * and the ACME manager, and talks to the workers through their lock and
 * wake_fd; they answer through serve.wake_fd.
 */
typedef struct worker {
        serve *s;
        unsigned id;       /* 1…n, in STATUS= */
        sd_event *event;   /* the control loop, with a single worker */
        worker_loop *loop; /* NULL with a single worker */
        paf_http_server *server;
        paf_acme_http01_chain *chain;
        worker_tls *tls; /* one per serve.groups, in the same order */
        size_t n_tls;
        bool acme_has_cert;
        bool stopping;
        sd_event_source *wake, *publish;
        int wake_fd; /* eventfd: commands wait */
        pthread_t thread;
        bool running; /* the thread was started */
        int exit_code;

        pthread_mutex_t lock;
        /* Under lock: */
        unsigned commands;
        unsigned want_round, round; /* the reload round asked for, and the last one done */
        bool done;                  /* the loop is over */
        unsigned n_conns;           /* what STATUS= says */
        uint64_t n_reqs;
} worker;

struct serve {
        sd_event *event; /* the control loop */
        paf_registry *reg;
        paf_http_static *root;     /* thread-safe: every worker serves from it */
        paf_http_headers *headers; /* --header and [serve] header: on every response */
        worker *workers;
        size_t n_workers;
        worker_loop **loops; /* the workers' loops: each one's siblings */
        tls_group *groups;
        size_t n_groups;
        /* With several workers: the listeners made from the configuration
         * (and socket activation), which accept nothing themselves; each
         * worker listens on a dup of their sockets. */
        paf_listener **origins;
        size_t n_origins;
        tls_config tls;
        bool quiet;
        bool stopping;
        bool failed; /* a worker's loop failed */
        int wake_fd; /* eventfd: a worker has news */
        sd_event_source *wake;
        /* Reloads, one round at a time through every worker. */
        unsigned round;
        bool reloading;
        bool round_sighup;           /* else a new ACME certificate's */
        bool want_sighup, want_acme; /* asked for during a round */
        /* What STATUS= last said. */
        unsigned status_conns;
        uint64_t status_reqs;
        char status_cert[1200];
        uint64_t watchdog_usec; /* 0: no WatchdogSec= */
        /* --acme: the certificate of the TLS listeners whose source is
         * TLS_ACME comes from the manager, and the challenges from these
         * tables (thread-safe: every worker answers from them). */
        tool_acme acme_opts;
        bool acme;
        paf_acme_http01 *http01;
        paf_acme_tlsalpn *tlsalpn;
        paf_acme_client *acme_client;
        paf_acme_manager *manager;
        char *acme_cert, *acme_key; /* the certificate's files; NULL: none yet */
        bool acme_has_cert;
        char *https_port; /* where plain HTTP is redirected; NULL: 443 */
        /* --access-log and --error-log (NULL: stderr), opened again on
         * SIGUSR1. The error log takes stderr's place once serving starts:
         * until then, what stops paf from starting goes where it was
         * started from (the terminal, the journal). */
        const char *access_log, *error_log;
        int error_log_fd; /* -1 once it is stderr */
        char **said;      /* the "listening on" lines, for the error log */
        size_t n_said;
};

static void usage(FILE *f) {
        fprintf(f,
                "Usage: paf serve [OPTIONS] [PORT]\n"
                "\n"
                "Serve the files of a directory over HTTP/1.1 and HTTP/2.\n"
                "\n"
                "  PORT                  Listen on 127.0.0.1:PORT, as --listen 127.0.0.1:PORT\n"
                "                        (only this machine; --listen PORT for every address)\n"
                "  -l, --listen ADDR     Listen on ADDR (repeatable; default " DEFAULT_LISTEN "):\n"
                "                          PORT             every address (tcp)\n"
                "                          HOST:PORT        a numeric IPv4 address, or a name:\n"
                "                                           every address it resolves to (tcp)\n"
                "                          [V6]:PORT        a numeric IPv6 address (tcp)\n"
                "                          /path.sock       a unix socket (unix)\n"
                "                          @abstract        a Linux abstract unix socket (unix)\n"
                "                          vsock:CID:PORT   AF_VSOCK on context CID (vsock)\n"
                "                          vsock::PORT      AF_VSOCK on any CID (vsock)\n"
                "  --listen-tls ADDR     Serve HTTPS on ADDR (repeatable), with --cert and --key\n"
                "  --cert FILE           PEM certificate chain; repeat with --key for more\n"
                "                        names: the first pair is the default, the others go\n"
                "                        by SNI\n"
                "  --key FILE            PEM private key of the --cert before it\n"
                "  --client-ca FILE      Require client certificates signed by these CAs (mTLS)\n"
                "  -r, --root DIR        Serve DIR (default: the current directory)\n"
                "  --dotfiles            Serve names starting with '.' too (.git, .env: by\n"
                "                        default they answer 404; /.well-known/ is served)\n"
                "  --gzip                Gzip text files of 1 KiB or more on the fly for\n"
                "                        clients that accept it ([http] gzip)\n"
                "  --acme NAME           Obtain and renew a certificate for NAME from an ACME CA\n"
                "                        (Let's Encrypt by default; repeatable, or a,b) and\n"
                "                        serve --listen-tls with it (default: --listen 80 and\n"
                "                        --listen-tls 443); plain HTTP answers the challenges\n"
                "                        and redirects the rest to https\n"
                "  --acme-url URL        The CA's ACME directory\n"
                "  --acme-staging        Let's Encrypt's staging directory\n"
                "  --acme-cacert FILE    Trust these CAs for the ACME server\n"
                "  --acme-dir DIR        State directory (accounts, keys, certificates)\n"
                "  --acme-challenge TYPE http-01 (default) or tls-alpn-01\n"
                "  --acme-key-type TYPE  p256 (default), p384, rsa2048, rsa3072\n"
                "  --email ADDR          ACME account contact (repeatable)\n"
                "  --agree-tos           Agree to the CA's terms of service\n"
                "  --eab-kid KID         External account binding: key identifier\n"
                "  --eab-hmac-key KEY    External account binding: HMAC key (base64url)\n"
                "  -c, --config FILE     paf.conf: plugins, [http] limits, [tls], [acme],\n"
                "                        [listen.NAME]\n"
                "  --workers N           Event loops, one thread each, sharing every listener\n"
                "                        (default: [http] workers, else one per CPU)\n"
                "  --access-log FILE     Append the access log to FILE (default: stderr)\n"
                "  --error-log FILE      Append messages to FILE once serving (default: stderr)\n"
                "  --header \"NAME: VALUE\"  Add this field to every response (repeatable;\n"
                "                        also [serve] header), e.g. Strict-Transport-Security\n"
                "  -q, --quiet           No access log\n"
                "  -h, --help            Show this help\n"
                "\n"
                "SIGHUP reads the certificates and keys again; on error the old ones stay.\n"
                "With --acme, a renewed certificate is loaded the same way, live.\n"
                "SIGUSR1 reopens --access-log and --error-log (after logrotate renamed them).\n"
                "\n"
                "Under systemd: the sockets of socket activation are served too (only them\n"
                "when nothing else is configured); one whose FileDescriptorName= is NAME\n"
                "takes [listen.NAME]'s settings instead of its address. Type=notify and\n"
                "WatchdogSec= are supported; STATUS= counts the requests of each worker.\n");
}

/* ---- access log: combined format, one write(2) per line ---- */

/* Where access lines go: stderr, or --access-log's file. The number never
 * changes while workers write to it: SIGUSR1 puts the reopened file in its
 * place with dup3(2), which swaps it atomically, so a line written at that
 * moment lands whole in one file or the other, from any thread. */
static int access_log_fd = STDERR_FILENO;

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

/* "[24/Nov/2026:22:00:00 +0000]", formatted once per second by each worker. */
static const char *log_time(void) {
        static _Thread_local char buf[40];
        static _Thread_local time_t last = -1;
        time_t now = time(NULL);
        if (now != last) {
                struct tm tm;
                gmtime_r(&now, &tm);
                strftime(buf, sizeof(buf), "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
                last = now;
        }
        return buf;
}

/* Whether the peer is an IP address with a port, also under a layer (TLS
 * over TCP), which forwards the query to the socket. */
static bool peer_is_inet(paf_flow *flow, const char *proto) {
        if (proto && strcmp(proto, "tcp") == 0)
                return true;
        struct sockaddr_storage ss = {};
        int r = paf_flow_query(flow, PAF_FLOW_QUERY_PEER_SOCKADDR, &ss, sizeof(ss));
        return r > 0 && (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

/* The peer's host for TCP ("127.0.0.1", "::1"); for a unix socket, whose
 * client has no address ("unix:unnamed"), who it is:
 * "unix:pid=4242,uid=1000" (SO_PEERCRED, also under TLS); the transport's
 * text otherwise. */
static void log_peer(paf_http_request *req, char *buf, size_t size) {
        paf_flow *flow = paf_http_request_get_flow(req);
        const char *peer = paf_http_request_get_peer(req);
        const char *proto = paf_flow_get_protocol(flow);
        struct ucred cred;
        if (paf_flow_get_peer_credentials(flow, &cred) >= 0) {
                snprintf(buf, size, "unix:pid=%ld,uid=%lu", (long)cred.pid,
                         (unsigned long)cred.uid);
                return;
        }
        if (!peer || !*peer || strcmp(peer, "?") == 0) {
                snprintf(buf, size, "%s", proto && *proto ? proto : "-");
                return;
        }
        size_t len = strlen(peer);
        if (peer_is_inet(flow, proto)) {
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

/* The verified client certificate's subject (mutual TLS) as the log's user
 * field, like Apache's SSLUserName: one field, so blanks are escaped. */
static void log_user(paf_http_request *req, char *buf, size_t size) {
        char dn[1024];
        int r = paf_flow_query(paf_http_request_get_flow(req), PAF_FLOW_QUERY_TLS_PEER_DN, dn,
                               sizeof(dn));
        if (r < 0 || !dn[0]) {
                snprintf(buf, size, "-");
                return;
        }
        dn[sizeof(dn) - 1] = '\0';
        char tmp[1024];
        log_escape(tmp, sizeof(tmp), dn);
        size_t n = 0;
        for (const char *p = tmp; *p && n + 5 < size; p++)
                if (*p == ' ') {
                        memcpy(buf + n, "\\x20", 4);
                        n += 4;
                } else
                        buf[n++] = *p;
        buf[n] = '\0';
}

static access_entry *access_begin(paf_http_request *req) {
        const paf_http_headers *h = paf_http_request_get_headers(req);
        char peer[256], user[1200], method[64], target[2048], referer[1024], agent[1024];
        log_peer(req, peer, sizeof(peer));
        log_user(req, user, sizeof(user));
        log_escape(method, sizeof(method), paf_http_request_get_method(req));
        log_escape(target, sizeof(target), paf_http_request_get_target(req));
        log_escape(referer, sizeof(referer), paf_http_headers_get(h, "Referer"));
        log_escape(agent, sizeof(agent), paf_http_headers_get(h, "User-Agent"));
        int version = paf_http_request_get_version(req);

        char prefix[4096], suffix[2100];
        int p = snprintf(prefix, sizeof(prefix), "%s - %s %s \"%s %s HTTP/%d.%d\"", peer, user,
                         log_time(), method, target, version / 10, version % 10);
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
                ssize_t k = write(access_log_fd, line, len);
                (void)k;
        }
        free(e);
}

/* ---- --access-log and --error-log ---- */

/* Appended to, as logrotate's create (or copytruncate) expects. */
static int log_open(const char *path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
        return fd < 0 ? -errno : fd;
}

/* A message now (on stderr), and again in the error log once serving
 * starts: the log then begins with where paf listens. */
static void serve_say(serve *s, const char *format, ...) PAF_PRINTF(2, 3);
static void serve_say(serve *s, const char *format, ...) {
        char line[1024];
        va_list ap;
        va_start(ap, format);
        vsnprintf(line, sizeof(line), format, ap);
        va_end(ap);
        tool_error("%s", line);
        if (s->error_log_fd < 0)
                return;
        char **a = reallocarray(s->said, s->n_said + 1, sizeof(*a));
        if (!a)
                return;
        s->said = a;
        if ((a[s->n_said] = strdup(line)))
                s->n_said++;
}

/* Serving starts: the error log takes stderr's place (every thread's, and
 * the plugins' messages too). */
static int error_log_take_over(serve *s) {
        if (s->error_log_fd < 0)
                return 0;
        tool_error("messages go to --error-log \"%s\" from now on", s->error_log);
        if (dup2(s->error_log_fd, STDERR_FILENO) < 0) {
                int r = -errno;
                tool_error("--error-log \"%s\": %s", s->error_log, strerror(-r));
                return r;
        }
        (void)close(s->error_log_fd);
        s->error_log_fd = -1;
        for (size_t i = 0; i < s->n_said; i++) {
                tool_error("%s", s->said[i]);
                free(s->said[i]);
        }
        s->n_said = 0;
        return 0;
}

/* path again, in the place of fd (what: the option, for messages). */
static int log_reopen(const char *what, const char *path, int fd) {
        int k = log_open(path);
        if (k < 0) {
                tool_error("SIGUSR1: %s \"%s\": %s; still writing to the file it had open", what,
                           path, strerror(-k));
                return k;
        }
        /* Atomic: a write from another thread goes to the old file or to the
         * new one, never to a closed descriptor. */
        int r = fd == STDERR_FILENO ? dup2(k, fd) : dup3(k, fd, O_CLOEXEC);
        r = r < 0 ? -errno : 0;
        (void)close(k);
        if (r < 0)
                tool_error("SIGUSR1: %s \"%s\": %s; still writing to the file it had open", what,
                           path, strerror(-r));
        return r;
}

/* SIGUSR1: logrotate renamed the logs; the files of their names now take
 * their place, for every worker at once. On error the old ones stay. */
static int on_reopen(sd_event_source *source, const struct signalfd_siginfo *si, void *userdata) {
        serve *s = userdata;
        (void)source;
        (void)si;
        if (!s->access_log && !s->error_log) {
                tool_error("SIGUSR1: no --access-log or --error-log: nothing to reopen");
                return 0;
        }
        /* The error log first: it then tells how the access log went. */
        int r = 0;
        if (s->error_log)
                r = log_reopen("--error-log", s->error_log, STDERR_FILENO);
        if (s->access_log) {
                int k = log_reopen("--access-log", s->access_log, access_log_fd);
                if (r >= 0)
                        r = k;
        }
        if (r < 0)
                return 0;
        if (s->access_log && s->error_log)
                tool_error("SIGUSR1: reopened --access-log \"%s\" and --error-log \"%s\"",
                           s->access_log, s->error_log);
        else if (s->access_log)
                tool_error("SIGUSR1: reopened --access-log \"%s\"", s->access_log);
        else
                tool_error("SIGUSR1: reopened --error-log \"%s\"", s->error_log);
        return 0;
}

/* ---- the server ---- */

/* --acme: plain HTTP goes to https (301), as a certificate now exists for it. */
static bool acme_redirect(worker *w, paf_http_request *req) {
        serve *s = w->s;
        const char *proto = paf_flow_get_protocol(paf_http_request_get_flow(req));
        if (!s->acme || !s->acme_opts.redirect_http || !w->acme_has_cert ||
            (proto && strcmp(proto, "tls") == 0))
                return false;
        const char *host = paf_http_headers_get(paf_http_request_get_headers(req), "Host");
        if (!host || !*host)
                host = s->acme_opts.names[0];
        /* The host without its port: the https port is ours. */
        size_t n = strlen(host);
        if (host[0] == '[') {
                const char *e = strchr(host, ']');
                n = e ? (size_t)(e - host) + 1 : n;
        } else if (strchr(host, ':')) {
                n = (size_t)(strchr(host, ':') - host);
        }
        const char *target = paf_http_request_get_target(req);
        if (!target || target[0] != '/')
                target = "/";
        char location[4096];
        int len = snprintf(location, sizeof(location), "https://%.*s%s%s%s", (int)n, host,
                           s->https_port ? ":" : "", s->https_port ? s->https_port : "", target);
        if (len < 0 || (size_t)len >= sizeof(location))
                return false;
        for (const char *p = location; *p; p++)
                if ((unsigned char)*p < 0x21 || *p == 0x7f)
                        return false; /* never a header from what the client sent raw */
        paf_http_headers *h = NULL;
        if (paf_http_headers_new(&h) < 0)
                return false;
        static const char body[] = "Moved to https\n";
        int r = paf_http_headers_add(h, "Location", location);
        if (r >= 0)
                r = paf_http_headers_add(h, "Content-Type", "text/plain; charset=utf-8");
        access_entry *e = s->quiet ? NULL : access_begin(req);
        if (r >= 0)
                r = paf_http_response_start(req, 301, h, sizeof(body) - 1);
        paf_http_headers_free(h);
        if (r >= 0)
                r = paf_http_response_write(req, body, sizeof(body) - 1, NULL, NULL);
        if (r >= 0)
                r = paf_http_response_finish(req, NULL);
        if (e)
                access_end(r >= 0 ? 301 : 500, r >= 0 ? sizeof(body) - 1 : 0, e);
        return r >= 0;
}

static void on_request(paf_http_request *req, void *userdata) {
        worker *w = userdata;
        if (acme_redirect(w, req))
                return;
        access_entry *e = w->s->quiet ? NULL : access_begin(req);
        (void)paf_http_static_serve(w->s->root, req, e ? access_end : NULL, e);
}

static void on_error(const char *peer, int status, const char *reason, void *userdata) {
        worker *w = userdata;
        if (w->s->quiet)
                return;
        if (status > 0)
                tool_error("%s: %d %s", peer ? peer : "-", status, reason ? reason : "");
        else
                tool_error("%s: %s", peer ? peer : "-", reason ? reason : "error");
}

static void notify_status(serve *s, const char *extra);
static void control_check(serve *s);
static void worker_reload(worker *w);

/* ---- workers and the control thread ---- */

/* The counts STATUS= shows, as the worker's thread reads them. */
static void worker_publish(worker *w) {
        unsigned conns = paf_http_server_get_n_connections(w->server);
        uint64_t reqs = paf_http_server_get_n_requests(w->server);
        pthread_mutex_lock(&w->lock);
        w->n_conns = conns;
        w->n_reqs = reqs;
        pthread_mutex_unlock(&w->lock);
}

static void worker_counts(worker *w, unsigned *ret_conns, uint64_t *ret_reqs) {
        if (!w->loop) {
                /* Our own loop: the server is there to ask. */
                *ret_conns = paf_http_server_get_n_connections(w->server);
                *ret_reqs = paf_http_server_get_n_requests(w->server);
                return;
        }
        pthread_mutex_lock(&w->lock);
        *ret_conns = w->n_conns;
        *ret_reqs = w->n_reqs;
        pthread_mutex_unlock(&w->lock);
}

/* From the worker to the control thread: something to look at. */
static void worker_reply(worker *w) {
        if (!w->loop) {
                control_check(w->s);
                return;
        }
        uint64_t one = 1;
        if (write(w->s->wake_fd, &one, sizeof(one)) < 0) {
                /* The counter is full: a wakeup is pending anyway. */
        }
}

/* The worker's loop is over (or, with a single worker, its server). */
static void worker_finished(worker *w) {
        if (w->server)
                worker_publish(w);
        pthread_mutex_lock(&w->lock);
        bool was = w->done;
        w->done = true;
        pthread_mutex_unlock(&w->lock);
        if (!was)
                worker_reply(w);
}

static void worker_exit(worker *w) {
        if (w->loop)
                sd_event_exit(w->event, 0);
        else
                worker_finished(w); /* the control loop decides when to end */
}

static void on_worker_stopped(void *userdata) {
        worker_exit(userdata);
}

/* On the worker's thread (or, with a single worker, the control thread). */
static void worker_run(worker *w, unsigned commands) {
        if (commands & CMD_ACME)
                w->acme_has_cert = true;
        if (commands & CMD_RELOAD)
                worker_reload(w);
        if ((commands & CMD_STOP) && !w->stopping) {
                w->stopping = true;
                int r = paf_http_server_stop(w->server, on_worker_stopped, w);
                if (r < 0) {
                        tool_error("cannot stop gracefully: %s", strerror(-r));
                        commands |= CMD_EXIT;
                }
        }
        if (commands & CMD_EXIT)
                worker_exit(w);
}

/* From the control thread to the worker. */
static void worker_post(worker *w, unsigned commands) {
        if (!w->loop) {
                worker_run(w, commands);
                return;
        }
        pthread_mutex_lock(&w->lock);
        w->commands |= commands;
        pthread_mutex_unlock(&w->lock);
        uint64_t one = 1;
        if (write(w->wake_fd, &one, sizeof(one)) < 0) {
                /* Full: a wakeup is pending anyway. */
        }
}

static int on_worker_wake(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        (void)source;
        (void)revents;
        worker *w = userdata;
        uint64_t n;
        if (read(fd, &n, sizeof(n)) < 0) {
                /* EAGAIN: nothing new. */
        }
        pthread_mutex_lock(&w->lock);
        unsigned commands = w->commands;
        w->commands = 0;
        pthread_mutex_unlock(&w->lock);
        worker_run(w, commands);
        return 0;
}

static int on_publish_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        (void)usec;
        worker_publish(userdata);
        int r = sd_event_source_set_time_relative(source, STATUS_INTERVAL_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        return r;
}

/* Graceful: the workers accept nothing more and finish what is in flight;
 * a second call ends them at once. */
static void serve_stop(serve *s) {
        if (s->stopping) {
                for (size_t i = 0; i < s->n_workers; i++)
                        worker_post(&s->workers[i], CMD_EXIT);
                return;
        }
        s->stopping = true;
        notify_status(s, "STOPPING=1\n");
        /* New connections are refused once the workers close theirs too. */
        for (size_t i = 0; i < s->n_origins; i++)
                paf_listener_free(s->origins[i]);
        s->n_origins = 0;
        for (size_t i = 0; i < s->n_workers; i++)
                worker_post(&s->workers[i], CMD_STOP);
}

static void reload_finish(serve *s);

/* What the workers said: a reload round done, loops over. */
static void control_check(serve *s) {
        size_t done = 0;
        bool round_done = true;
        for (size_t i = 0; i < s->n_workers; i++) {
                worker *w = &s->workers[i];
                pthread_mutex_lock(&w->lock);
                if (w->done)
                        done++;
                else if (w->round != w->want_round)
                        round_done = false;
                pthread_mutex_unlock(&w->lock);
        }
        if (s->reloading && round_done)
                reload_finish(s);
        if (done == s->n_workers)
                sd_event_exit(s->event, 0);
        else if (done > 0 && !s->stopping) {
                /* A worker whose loop failed: serving on with fewer would
                 * hide it. */
                s->failed = true;
                serve_stop(s);
        }
}

static int on_control_wake(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        (void)source;
        (void)revents;
        uint64_t n;
        if (read(fd, &n, sizeof(n)) < 0) {
                /* EAGAIN: nothing new. */
        }
        control_check(userdata);
        return 0;
}

static int on_signal(sd_event_source *source, const struct signalfd_siginfo *si, void *userdata) {
        (void)source;
        (void)si;
        serve_stop(userdata);
        return 0;
}

/* A plugin the configuration asks for and that was refused stops us:
 * serving without it would silently drop a transport. */
static int load_registry(const char *config, paf_registry **ret) {
        paf_registry *reg = NULL;
        int r = tool_load_registry(config, false, &reg);
        if (r < 0)
                return r;
        if (r > 0) {
                tool_report_refused(reg, config);
                paf_registry_unref(reg);
                return -ENOENT;
        }
        *ret = reg;
        return 0;
}

/* "http://127.0.0.1:8080", "unix:/run/paf.sock", "https://127.0.0.1:8443",
 * "https+unix:/run/paf.sock": inner is the transport under TLS, or NULL. */
static char *listener_label(paf_listener *l, const char *inner_protocol) {
        /* The URL, from the schemes the plugins registered: one form for
         * plain and TLS listeners of every transport. */
        char *label;
        if (paf_listener_format_url(l, &label) >= 0)
                return label;
        /* A transport that registered no scheme. */
        const char *proto = inner_protocol ? inner_protocol : paf_listener_get_protocol(l);
        const char *address = paf_listener_get_address(l);
        const char *scheme = inner_protocol ? "https" : "http";
        int r;
        if (!proto)
                proto = "?";
        if (!address)
                address = "?";
        /* Addresses that already say their protocol ("vsock:3:80") keep it once. */
        size_t n = strlen(proto);
        bool prefixed = strncmp(address, proto, n) == 0 && address[n] == ':';
        if (strcmp(proto, "tcp") == 0)
                r = asprintf(&label, "%s://%s", scheme, address);
        else
                r = asprintf(&label, "%s%s%s%s", inner_protocol ? "https+" : "",
                             prefixed ? "" : proto, prefixed ? "" : ":", address);
        return r < 0 ? NULL : label;
}

/* ---- TLS ---- */

static void tls_config_done(tls_config *c) {
        for (size_t i = 0; i < c->n_certs; i++) {
                free(c->cert[i]);
                free(c->key[i]);
        }
        free(c->client_ca);
        *c = (tls_config){};
}

static int tls_config_add_cert(tls_config *c, const char *cert, const char *key) {
        if (c->n_certs == MAX_CERTS)
                return -E2BIG;
        char *a = strdup(cert), *b = strdup(key);
        if (!a || !b) {
                free(a);
                free(b);
                return -ENOMEM;
        }
        c->cert[c->n_certs] = a;
        c->key[c->n_certs++] = b;
        return 0;
}

/* What every TLS listener of ours says on top of its files: ALPN, and the
 * [tls] options of paf.conf. */
static int tls_ctx_serve(paf_registry *reg, paf_ctx *ctx) {
        /* [http2] alpn, without h2 when HTTP/2 is off: the client would
         * pick it and get an HTTP/1.1 server. */
        paf_value v, e;
        const char *alpn = "http/1.1";
        char *own = NULL;
        if (paf_registry_get_option(reg, "http2", "enabled", &e) >= 0 && e.type == PAF_TYPE_BOOL &&
            paf_registry_get_option(reg, "http2", "alpn", &v) >= 0 && v.type == PAF_TYPE_STRING) {
                if (e.boolean)
                        alpn = v.string;
                else {
                        own = calloc(1, strlen(v.string) + 1);
                        if (!own)
                                return -ENOMEM;
                        char *copy = strdup(v.string), *save = NULL;
                        if (!copy) {
                                free(own);
                                return -ENOMEM;
                        }
                        for (char *t = strtok_r(copy, ", ", &save); t;
                             t = strtok_r(NULL, ", ", &save)) {
                                if (strcmp(t, "h2") == 0)
                                        continue;
                                if (*own)
                                        strcat(own, ",");
                                strcat(own, t);
                        }
                        free(copy);
                        alpn = *own ? own : "http/1.1";
                }
        }
        int r = paf_ctx_set_string(ctx, "tls.alpn", alpn);
        free(own);
        /* Absent when the tls plugin declares no such option: the layer's
         * own defaults apply. */
        if (r >= 0 && paf_registry_get_option(reg, "tls", "priority", &v) >= 0 &&
            v.type == PAF_TYPE_STRING)
                r = paf_ctx_set_string(ctx, "tls.priority", v.string);
        if (r >= 0 && paf_registry_get_option(reg, "tls", "handshake-timeout", &v) >= 0 &&
            v.type == PAF_TYPE_INT)
                r = paf_ctx_set_int(ctx, "tls.handshake-timeout", v.integer);
        return r;
}

/* The tls layer's context for --cert, --key and --client-ca: the files
 * (read by the layer, so a reload sees what is on disk now) and ours. */
static int tls_ctx_new(paf_registry *reg, const tls_config *c, paf_ctx **ret) {
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
        int r = paf_ctx_new(&ctx);
        for (size_t i = 0; r >= 0 && i < c->n_certs; i++) {
                char cert_key[48] = "tls.cert-file", key_key[48] = "tls.key-file";
                if (i > 0) {
                        snprintf(cert_key, sizeof(cert_key), "tls.cert-file.%zu", i + 1);
                        snprintf(key_key, sizeof(key_key), "tls.key-file.%zu", i + 1);
                }
                r = paf_ctx_set_string(ctx, cert_key, c->cert[i]);
                if (r >= 0)
                        r = paf_ctx_set_string(ctx, key_key, c->key[i]);
        }
        if (r >= 0 && c->client_ca) {
                r = paf_ctx_set_string(ctx, "tls.client-ca-file", c->client_ca);
                if (r >= 0)
                        r = paf_ctx_set_bool(ctx, "tls.require-client-cert", true);
        }
        if (r >= 0)
                r = tls_ctx_serve(reg, ctx);
        if (r < 0)
                return r;
        *ret = ctx;
        ctx = NULL;
        return 0;
}

/* The tls layer's context for [listen.NAME], the one `paf config check`
 * checked (NULL: tls is off), and ours. */
static int tls_ctx_section(paf_registry *reg, const char *section, paf_ctx **ret) {
        paf_ctx *ctx = NULL;
        int r = paf_registry_get_listen_tls_ctx(reg, section, &ctx);
        if (r > 0 && (r = tls_ctx_serve(reg, ctx)) < 0)
                ctx = paf_ctx_unref(ctx);
        if (r < 0)
                return r;
        *ret = ctx;
        return 0;
}

/* The tls layer's context for the ACME certificate: its files once there is
 * one, the tls-alpn-01 table (which also serves a listener with no
 * certificate yet), and ours. */
static int tls_ctx_acme(serve *s, paf_ctx **ret) {
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
        int r = paf_ctx_new(&ctx);
        if (r >= 0)
                r = tls_ctx_serve(s->reg, ctx);
        if (r >= 0)
                /* tls.so takes its own reference. */
                r = paf_ctx_set_pointer(ctx, "tls.acme-tlsalpn", s->tlsalpn, NULL);
        if (r >= 0 && s->acme_cert) {
                r = paf_ctx_set_string(ctx, "tls.cert-file", s->acme_cert);
                if (r >= 0)
                        r = paf_ctx_set_string(ctx, "tls.key-file", s->acme_key);
        }
        if (r < 0)
                return r;
        *ret = ctx;
        ctx = NULL;
        return 0;
}

/* A new context for one worker's listener of g, from what g says now. */
static int tls_group_ctx(serve *s, const tls_group *g, paf_ctx **ret) {
        paf_ctx *ctx = NULL;
        int r;
        switch (g->source) {
        case TLS_FILES:
                r = tls_ctx_new(s->reg, &s->tls, &ctx);
                break;
        case TLS_SECTION:
                r = tls_ctx_section(s->reg, g->section, &ctx);
                if (r >= 0 && !ctx)
                        r = -ENOENT; /* tls = no now: the configuration does not change */
                break;
        case TLS_ACME:
                r = tls_ctx_acme(s, &ctx);
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0)
                return r;
        *ret = ctx;
        return 0;
}

/* ---- reloading the TLS listeners of every worker ---- */

/*
 * A round: a new context for each of the workers' TLS listeners (all of
 * them for SIGHUP, those of the ACME certificate for a new one), loaded by
 * each worker on its thread; the result is told once every worker did. One
 * round at a time: one asked for meanwhile runs next.
 */
static void reload_start(serve *s, bool sighup) {
        if (s->stopping)
                return; /* the listeners are gone */
        if (s->reloading) {
                if (sighup)
                        s->want_sighup = true;
                else
                        s->want_acme = true;
                return;
        }
        s->reloading = true;
        s->round_sighup = sighup;
        s->round++;
        for (size_t i = 0; i < s->n_workers; i++) {
                worker *w = &s->workers[i];
                pthread_mutex_lock(&w->lock);
                for (size_t g = 0; g < w->n_tls; g++) {
                        worker_tls *t = &w->tls[g];
                        t->result = 0;
                        t->error[0] = '\0';
                        if (!t->serves || (!sighup && s->groups[g].source != TLS_ACME))
                                continue;
                        paf_ctx *ctx = NULL;
                        int r = tls_group_ctx(s, &s->groups[g], &ctx);
                        if (r < 0) {
                                t->result = r;
                                snprintf(t->error, sizeof(t->error), "%s", strerror(-r));
                                continue;
                        }
                        paf_ctx_unref(t->next);
                        t->next = ctx;
                }
                w->want_round = s->round;
                pthread_mutex_unlock(&w->lock);
        }
        /* Once every worker has its contexts: with a single worker, this
         * finishes the round before it returns. */
        for (size_t i = 0; i < s->n_workers; i++)
                worker_post(&s->workers[i], CMD_RELOAD | (s->acme_has_cert ? CMD_ACME : 0));
}

/* On the worker's thread: new credentials for new handshakes; connections
 * keep the ones they started with. On error the old ones stay. */
static void worker_reload(worker *w) {
        pthread_mutex_lock(&w->lock);
        unsigned round = w->want_round;
        pthread_mutex_unlock(&w->lock);
        for (size_t g = 0; g < w->n_tls; g++) {
                worker_tls *t = &w->tls[g];
                pthread_mutex_lock(&w->lock);
                paf_ctx *ctx = t->next;
                t->next = NULL;
                pthread_mutex_unlock(&w->lock);
                if (!ctx)
                        continue;
                paf_error error = PAF_ERROR_NULL;
                int r = 0;
                /* Stopping: the server freed its listeners. */
                if (!w->stopping)
                        r = paf_listener_reload(t->listener, ctx, &error);
                if (r >= 0 && !w->stopping) {
                        paf_ctx_unref(t->ctx);
                        t->ctx = ctx;
                } else
                        paf_ctx_unref(ctx);
                pthread_mutex_lock(&w->lock);
                t->result = r;
                if (r < 0)
                        snprintf(t->error, sizeof(t->error), "%s",
                                 error.message[0] ? error.message : strerror(-r));
                pthread_mutex_unlock(&w->lock);
        }
        pthread_mutex_lock(&w->lock);
        w->round = round;
        pthread_mutex_unlock(&w->lock);
        worker_reply(w);
}

/* Every worker did the round: one message per listener, whatever the
 * number of workers, then sd_notify. */
static void reload_finish(serve *s) {
        s->reloading = false;
        size_t failed_groups = 0;
        for (size_t g = 0; g < s->n_groups; g++) {
                if (!s->round_sighup && s->groups[g].source != TLS_ACME)
                        continue;
                size_t failed = 0;
                char error[512] = "";
                for (size_t i = 0; i < s->n_workers; i++) {
                        worker *w = &s->workers[i];
                        pthread_mutex_lock(&w->lock);
                        if (g < w->n_tls && w->tls[g].result < 0) {
                                if (failed++ == 0)
                                        snprintf(error, sizeof(error), "%s", w->tls[g].error);
                        }
                        pthread_mutex_unlock(&w->lock);
                }
                if (s->stopping)
                        continue;
                const char *label = s->groups[g].label ? s->groups[g].label : "?";
                char where[64] = "";
                if (failed > 0 && failed < s->groups[g].n_workers)
                        snprintf(where, sizeof(where), " in %zu of %zu workers", failed,
                                 s->groups[g].n_workers);
                if (failed > 0)
                        failed_groups++;
                if (failed == 0 && s->round_sighup)
                        tool_error("%s: certificates reloaded", label);
                else if (failed > 0 && s->round_sighup)
                        tool_error("%s: reload failed%s, keeping the old certificates: %s", label,
                                   where, error);
                else if (failed > 0)
                        tool_error("%s: the new certificate could not be loaded%s, keeping the "
                                   "old one: %s",
                                   label, where, error);
        }
        if (!s->stopping && s->round_sighup) {
                /* Serving either way: a failed listener keeps its old
                 * certificates. */
                notify_status(s, "READY=1\n");
                if (failed_groups > 0)
                        sd_notifyf(0,
                                   "STATUS=Serving, but %zu of %zu TLS listeners kept their old "
                                   "certificates (see the log)",
                                   failed_groups, s->n_groups);
        } else if (!s->stopping)
                notify_status(s, NULL);
        if (s->want_sighup || s->want_acme) {
                /* A SIGHUP's round reloads the ACME listeners too. */
                bool sighup = s->want_sighup;
                s->want_sighup = s->want_acme = false;
                reload_start(s, sighup);
        }
}

/* SIGHUP: new certificates for new connections; established ones go on. */
static int on_reload(sd_event_source *source, const struct signalfd_siginfo *si, void *userdata) {
        serve *s = userdata;
        (void)source;
        (void)si;
        if (s->stopping)
                return 0; /* the listeners are gone */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
                   (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
        if (s->n_groups == 0) {
                tool_error("SIGHUP: no TLS listener, nothing to reload");
                notify_status(s, "READY=1\n");
                return 0;
        }
        reload_start(s, true);
        return 0;
}

/* ---- listening ---- */

/* A listener serves TLS from one of these, or (NULL) plain HTTP. */
typedef struct tls_spec {
        tls_source source;
        const char *section; /* TLS_SECTION */
} tls_spec;

static int tls_group_add(serve *s, const tls_spec *spec) {
        tls_group *a = reallocarray(s->groups, s->n_groups + 1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        s->groups = a;
        a[s->n_groups] = (tls_group){.source = spec->source};
        if (spec->section && !(a[s->n_groups].section = strdup(spec->section)))
                return -ENOMEM;
        s->n_groups++;
        return 0;
}

/* w's listener on l's socket: l itself when w alone serves it, else one of
 * w's loop on a dup of its fd. Takes nothing. */
static int worker_listener(worker *w, paf_listener *l, bool alone, const char *protocol,
                           paf_listener **ret) {
        if (alone) {
                *ret = l;
                return 0;
        }
        int fd = fcntl(paf_listener_get_fd(l), F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        return worker_listener_new(w->loop, fd, protocol, paf_listener_get_address(l), ret);
}

/*
 * Hand l to every worker, or to alone only when not NULL (l is on its
 * loop), through the tls layer configured as tls says when it is not NULL
 * (what names the listener in messages; how, if not NULL, is appended to
 * "listening on"). Takes l, also on failure.
 */
static int serve_add(serve *s, const char *what, paf_listener *l, const tls_spec *tls,
                     const char *how, worker *alone) {
        char inner[64];
        snprintf(inner, sizeof(inner), "%s",
                 paf_listener_get_protocol(l) ? paf_listener_get_protocol(l) : "?");
        if (s->n_workers == 1)
                alone = &s->workers[0];
        int r;
        if (!alone) {
                /* Ours from here: it keeps the socket the workers share. */
                paf_listener **a = reallocarray(s->origins, s->n_origins + 1, sizeof(*a));
                if (!a) {
                        paf_listener_free(l);
                        tool_error("%s: %s", what, strerror(ENOMEM));
                        return -ENOMEM;
                }
                s->origins = a;
                a[s->n_origins++] = l;
        }
        if (tls && (r = tls_group_add(s, tls)) < 0) {
                if (alone)
                        paf_listener_free(l);
                tool_error("%s: %s", what, strerror(-r));
                return r;
        }

        char *label = NULL;
        bool taken = false; /* alone's server has l */
        for (size_t i = 0; i < s->n_workers; i++) {
                worker *w = &s->workers[i];
                bool serves = !alone || w == alone;
                if (tls) {
                        /* Every worker has an entry per group, NULL for a
                         * listener it does not serve. */
                        worker_tls *a = reallocarray(w->tls, w->n_tls + 1, sizeof(*a));
                        if (!a) {
                                r = -ENOMEM;
                                tool_error("%s: %s", what, strerror(-r));
                                break;
                        }
                        w->tls = a;
                        a[w->n_tls++] = (worker_tls){};
                }
                if (!serves)
                        continue;
                paf_listener *wl = NULL;
                r = worker_listener(w, l, alone, inner, &wl);
                if (r < 0) {
                        tool_error("%s: %s", what, strerror(-r));
                        break;
                }
                taken = alone;
                if (tls) {
                        paf_ctx *ctx = NULL;
                        r = tls_group_ctx(s, &s->groups[s->n_groups - 1], &ctx);
                        if (r < 0) {
                                paf_listener_free(wl);
                                tool_error("%s: %s", what, strerror(-r));
                                break;
                        }
                        /* The layer owns the inner listener from here, also
                         * on failure. */
                        paf_listener *inner_l = wl;
                        paf_error error = PAF_ERROR_NULL;
                        r = paf_registry_wrap_listener(s->reg, "tls", inner_l, ctx, &wl, &error);
                        if (r < 0) {
                                paf_ctx_unref(ctx);
                                tool_error("%s: TLS: %s", what,
                                           error.message[0] ? error.message : strerror(-r));
                                break;
                        }
                        w->tls[w->n_tls - 1] =
                                (worker_tls){.serves = true, .listener = wl, .ctx = ctx};
                }
                if (!label) {
                        /* A worker's plain listener has no registry to name
                         * its URL by: the one it came from has. */
                        label = listener_label(tls || alone ? wl : l, tls ? inner : NULL);
                        if (!label) {
                                paf_listener_free(wl);
                                r = -ENOMEM;
                                tool_error("%s: %s", what, strerror(-r));
                                break;
                        }
                }
                /* The server owns wl from here, also when this fails. */
                r = paf_http_server_add_listener(w->server, wl);
                if (r < 0) {
                        tool_error("%s: %s", what, strerror(-r));
                        break;
                }
        }
        if (r < 0) {
                if (alone && !taken)
                        paf_listener_free(l);
                free(label);
                return r;
        }
        if (how)
                serve_say(s, "listening on %s (%s)", label, how);
        else
                serve_say(s, "listening on %s", label);
        if (tls) {
                s->groups[s->n_groups - 1].label = label;
                s->groups[s->n_groups - 1].n_workers = alone ? 1 : s->n_workers;
        } else
                free(label);
        return 0;
}

/* Says why address (what's) could not be listened on. */
static void listen_report(serve *s, const char *what, const char *address, int r,
                          const paf_error *error) {
        /* The plugins' messages usually start with the address already. */
        char quoted[512];
        snprintf(quoted, sizeof(quoted), "\"%s\"", address);
        size_t n = strlen(quoted);
        const char *message = error->message[0] ? error->message : strerror(-r);
        if (strncmp(message, quoted, n) == 0 && message[n] == ':' && strstr(what, address))
                message += n + 1 + (message[n + 1] == ' ');
        /* No plugin took the address: which ones there are, and where
         * others would be found. */
        char *hint = r == -EAFNOSUPPORT ? tool_plugin_hint(s->reg) : NULL;
        if (hint)
                tool_error("%s: %s (%s)", what, message, hint);
        else
                tool_error("%s: %s", what, message);
        free(hint);
}

/* Listen on address on event's loop: l, or the error reported as what's. */
static int listen_address(serve *s, const char *what, const char *address, sd_event *event,
                          paf_listener **ret) {
        paf_error error = PAF_ERROR_NULL;
        int r = paf_registry_listen_address(s->reg, address, event, NULL, NULL, ret, &error);
        if (r < 0)
                listen_report(s, what, address, r, &error);
        return r;
}

/* l, listening on address on the control loop, to the workers (what names it
 * in messages). Takes l. */
static int serve_listen_take(serve *s, const char *what, const char *address, paf_listener *l,
                             const tls_spec *tls) {
        if (s->n_workers == 1 || paf_listener_get_fd(l) >= 0)
                return serve_add(s, what, l, tls, NULL, NULL);
        /* A transport without a socket (an in-process one) has nothing the
         * workers could share: the first one alone serves it, on its loop. */
        paf_listener_free(l);
        int r = listen_address(s, what, address, s->workers[0].event, &l);
        if (r < 0)
                return r;
        tool_error("%s: its transport has no socket to share: worker 1 alone serves it", what);
        return serve_add(s, what, l, tls, NULL, &s->workers[0]);
}

/* Whether address is HOST:PORT with HOST a name ("localhost:8080",
 * "www.example.com:80"): letters, digits, '-' and '.', with a letter, so no
 * numeric address and no other transport's form ("vsock:2:80", "/x:1",
 * "@x:1"); *ret_host_len is HOST's length. */
static bool is_host_name_address(const char *address, size_t *ret_host_len) {
        const char *colon = strrchr(address, ':');
        if (!colon || colon == address || colon[1] == '\0' ||
            strspn(colon + 1, "0123456789") != strlen(colon + 1))
                return false;
        size_t len = (size_t)(colon - address);
        bool letter = false;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)address[i];
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
                        letter = true;
                else if (!(c >= '0' && c <= '9') && c != '-' && c != '.')
                        return false;
        }
        if (!letter || len >= NI_MAXHOST)
                return false;
        *ret_host_len = len;
        return true;
}

/* A bound socket's port (port 0 asked the kernel for one); 0 if unknown. */
static unsigned listener_port(paf_listener *l) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = paf_listener_get_fd(l);
        if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
                return 0;
        if (ss.ss_family == AF_INET)
                return ntohs(((struct sockaddr_in *)&ss)->sin_port);
        if (ss.ss_family == AF_INET6)
                return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        return 0;
}

/*
 * --listen HOST:PORT with a name: the tcp plugin binds numeric addresses
 * only (resolving there would block its loop), so the name is resolved
 * here, once, before serving, and every address it stands for is listened
 * on ("localhost": 127.0.0.1 and ::1), each announced by its own
 * "listening on". An address this machine does not have (::1 without IPv6)
 * is skipped with a note; any other failure (in use, not allowed) stops
 * paf, as a numeric address would. Port 0: the port the first address got,
 * for all of them.
 */
static int serve_listen_name(serve *s, const char *what, const char *address, size_t host_len,
                             const tls_spec *tls) {
        char host[NI_MAXHOST];
        memcpy(host, address, host_len);
        host[host_len] = '\0';
        const char *port = address + host_len + 1;
        errno = 0;
        unsigned long want = strtoul(port, NULL, 10);
        if (errno != 0 || want > 65535) {
                tool_error("%s: port out of range (0-65535)", what);
                return -ERANGE;
        }
        struct addrinfo hints = {
                .ai_flags = AI_NUMERICSERV,
                .ai_socktype = SOCK_STREAM,
                .ai_protocol = IPPROTO_TCP,
        };
        struct addrinfo *list = NULL;
        int g = getaddrinfo(host, port, &hints, &list);
        if (g == EAI_NONAME || g == EAI_NODATA || g == EAI_FAIL || g == EAI_ADDRFAMILY) {
                tool_error("%s: unknown host \"%s\" (%s)", what, host, gai_strerror(g));
                return -EHOSTUNREACH;
        }
        if (g != 0) {
                tool_error("%s: cannot resolve \"%s\": %s", what, host,
                           g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
                return g == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
        }

        size_t n_bound = 0;
        unsigned bound_port = 0;
        int r = 0;
        for (struct addrinfo *a = list; a && r >= 0; a = a->ai_next) {
                /* Each address once, whatever /etc/hosts repeats. */
                bool dup = false;
                for (struct addrinfo *b = list; b != a && !dup; b = b->ai_next)
                        dup = b->ai_addrlen == a->ai_addrlen &&
                              memcmp(b->ai_addr, a->ai_addr, a->ai_addrlen) == 0;
                char numeric[NI_MAXHOST];
                if (dup || (a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
                    getnameinfo(a->ai_addr, a->ai_addrlen, numeric, sizeof(numeric), NULL, 0,
                                NI_NUMERICHOST) != 0)
                        continue;

                char one[NI_MAXHOST + 16];
                snprintf(one, sizeof(one), a->ai_family == AF_INET6 ? "[%s]:%u" : "%s:%u", numeric,
                         bound_port ? bound_port : (unsigned)want);
                paf_listener *l = NULL;
                paf_error error = PAF_ERROR_NULL;
                r = paf_registry_listen_address(s->reg, one, s->event, NULL, NULL, &l, &error);
                if (r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT) {
                        /* The message names the address. */
                        if (error.message[0])
                                tool_error("%s: %s: skipped", what, error.message);
                        else
                                tool_error("%s: %s: %s: skipped", what, one, strerror(-r));
                        r = 0;
                        continue;
                }
                if (r < 0) {
                        listen_report(s, what, one, r, &error);
                        break;
                }
                if (want == 0 && bound_port == 0)
                        bound_port = listener_port(l);
                n_bound++;
                r = serve_listen_take(s, what, one, l, tls);
        }
        freeaddrinfo(list);
        if (r >= 0 && n_bound == 0) {
                tool_error("%s: nothing to bind: \"%s\" resolves to no address this machine has",
                           what, host);
                r = -EADDRNOTAVAIL;
        }
        return r;
}

/*
 * Listen on address (what: "--listen \"8080\"", "[listen.web]" for messages),
 * through TLS as tls says when it is not NULL, and hand the listener to the
 * workers.
 */
static int serve_listen(serve *s, const char *what, const char *address, const tls_spec *tls) {
        paf_listener *l = NULL;
        paf_error error = PAF_ERROR_NULL;
        size_t host_len;
        /* The plugins first: one may have a form of its own that looks like
         * a name. */
        int r = paf_registry_listen_address(s->reg, address, s->event, NULL, NULL, &l, &error);
        if (r == -EINVAL && is_host_name_address(address, &host_len))
                return serve_listen_name(s, what, address, host_len, tls);
        if (r < 0) {
                listen_report(s, what, address, r, &error);
                return r;
        }
        return serve_listen_take(s, what, address, l, tls);
}

/* Whether an activated socket is named after [listen.NAME]: it then takes
 * the section's place. */
static bool section_activated(paf_activated *a, const char *section) {
        const char *name = section + strlen("listen.");
        for (size_t i = 0; i < paf_activated_get_n_listeners(a); i++)
                if (strcmp(paf_activated_get_name(a, i), name) == 0)
                        return true;
        return false;
}

/* Every [listen.NAME] of the configuration not taken by an activated
 * socket. */
static int listen_config(serve *s, const char *config, paf_activated *activated) {
        size_t n;
        const char *const *names = paf_registry_get_listen_sections(s->reg, &n);
        int r = 0;

        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (section_activated(activated, names[i]))
                        continue;
                char what[256];
                snprintf(what, sizeof(what), "%s: [%s]", config, names[i]);
                paf_value address;
                paf_ctx *tls = NULL;
                r = paf_registry_get_option(s->reg, names[i], "address", &address);
                if (r >= 0)
                        /* Whether it is TLS, and that its settings work. */
                        r = tls_ctx_section(s->reg, names[i], &tls);
                if (r < 0) {
                        tool_error("%s: %s", what, strerror(-r));
                        break;
                }
                tls_spec spec = {TLS_SECTION, names[i]};
                r = serve_listen(s, what, address.string, tls ? &spec : NULL);
                paf_ctx_unref(tls);
        }
        return r;
}

/*
 * The sockets systemd passed (socket activation). One whose
 * FileDescriptorName= names a [listen.NAME] section gets its settings (TLS);
 * the others serve plain HTTP. *ret keeps the names for listen_config().
 */
static int listen_activated(serve *s, const char *config, paf_activated **ret) {
        paf_error error = PAF_ERROR_NULL;
        paf_activated *a = NULL;
        int r = paf_registry_listen_activated(s->reg, s->event, NULL, NULL, &a, &error);
        if (r < 0) {
                tool_error("%s", error.message[0] ? error.message : strerror(-r));
                return r;
        }
        *ret = a;
        size_t n_sections;
        const char *const *sections = paf_registry_get_listen_sections(s->reg, &n_sections);

        for (size_t i = 0; r >= 0 && i < paf_activated_get_n_listeners(a); i++) {
                const char *name = paf_activated_get_name(a, i);
                const char *section = NULL;
                for (size_t k = 0; k < n_sections && !section; k++)
                        if (strcmp(sections[k] + strlen("listen."), name) == 0)
                                section = sections[k];
                char what[256], how[256];
                snprintf(what, sizeof(what), "socket-activated fd %d (FileDescriptorName=%s)",
                         paf_activated_get_fd(a, i), name);
                if (section)
                        snprintf(how, sizeof(how), "socket-activated \"%s\", %s: [%s]", name,
                                 config, section);
                else
                        snprintf(how, sizeof(how), "socket-activated \"%s\"", name);
                paf_ctx *tls = NULL;
                if (section) {
                        r = tls_ctx_section(s->reg, section, &tls);
                        if (r < 0) {
                                tool_error("%s: %s: [%s]: %s", what, config, section, strerror(-r));
                                break;
                        }
                }
                tls_spec spec = {TLS_SECTION, section};
                r = serve_add(s, what, paf_activated_steal_listener(a, i), tls ? &spec : NULL, how,
                              NULL);
                paf_ctx_unref(tls);
        }
        return r;
}

/* ---- systemd notifications (sd_notify: no-ops outside a Type=notify service) ---- */

/* The open connections and served requests of every worker; per, with
 * several, "(per worker: 10, 12)". */
static void serve_counts(serve *s, unsigned *ret_conns, uint64_t *ret_reqs, char *per,
                         size_t size) {
        unsigned conns = 0;
        uint64_t reqs = 0;
        size_t n = 0;
        per[0] = '\0';
        for (size_t i = 0; i < s->n_workers; i++) {
                unsigned c;
                uint64_t r;
                worker_counts(&s->workers[i], &c, &r);
                conns += c;
                reqs += r;
                if (s->n_workers > 1 && n + 32 < size)
                        n += (size_t)snprintf(per + n, size - n, "%s%" PRIu64,
                                              i == 0 ? " (per worker: " : ", ", r);
                else if (s->n_workers > 1 && n + 5 < size && !strstr(per, "…"))
                        n += (size_t)snprintf(per + n, size - n, ", …");
        }
        if (s->n_workers > 1 && n + 2 < size)
                snprintf(per + n, size - n, ")");
        *ret_conns = conns;
        *ret_reqs = reqs;
}

/* STATUS=, as systemctl status shows it. */
static void notify_status(serve *s, const char *extra) {
        unsigned conns;
        uint64_t reqs;
        char per[1024];
        serve_counts(s, &conns, &reqs, per, sizeof(per));
        s->status_conns = conns;
        s->status_reqs = reqs;
        snprintf(s->status_cert, sizeof(s->status_cert), "%s",
                 s->manager ? paf_acme_manager_get_status(s->manager) : "");
        const char *cert = s->manager ? paf_acme_manager_get_status(s->manager) : NULL;
        sd_notifyf(0, "%sSTATUS=%s%u connection%s open, %" PRIu64 " request%s served%s%s%s",
                   extra ? extra : "", s->stopping ? "Stopping: " : "Serving: ", conns,
                   conns == 1 ? "" : "s", reqs, reqs == 1 ? "" : "s", per, cert ? "; " : "",
                   cert ? cert : "");
}

/* Once a second, when the numbers changed. */
static int on_status_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        serve *s = userdata;
        (void)usec;
        const char *cert = s->manager ? paf_acme_manager_get_status(s->manager) : NULL;
        unsigned conns;
        uint64_t reqs;
        char per[1024];
        serve_counts(s, &conns, &reqs, per, sizeof(per));
        if (conns != s->status_conns || reqs != s->status_reqs ||
            (cert && strcmp(cert, s->status_cert) != 0))
                notify_status(s, NULL);
        int r = sd_event_source_set_time_relative(source, STATUS_INTERVAL_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        return r;
}

/* WatchdogSec=: ping at half the period, so a late wakeup does not kill us. */
static int on_watchdog_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        serve *s = userdata;
        (void)usec;
        sd_notify(0, "WATCHDOG=1");
        int r = sd_event_source_set_time_relative(source, s->watchdog_usec / 2);
        if (r >= 0)
                r = sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        return r;
}

static int notify_setup(serve *s) {
        int r = 0;
        if (getenv("NOTIFY_SOCKET"))
                r = sd_event_add_time_relative(s->event, NULL, CLOCK_MONOTONIC,
                                               STATUS_INTERVAL_USEC, 0, on_status_timer, s);
        if (r >= 0 && sd_watchdog_enabled(0, &s->watchdog_usec) > 0 && s->watchdog_usec >= 2)
                /* Accuracy: the default (250 ms) could be most of a short
                 * period. */
                r = sd_event_add_time_relative(s->event, NULL, CLOCK_MONOTONIC,
                                               s->watchdog_usec / 2, s->watchdog_usec / 20,
                                               on_watchdog_timer, s);
        return r;
}

/* ---- --acme ---- */

/* A certificate from the manager (the stored one at start, then each
 * renewal): every worker's ACME TLS listeners load it, live. */
static void on_acme_cert(paf_acme_manager *m, const paf_acme_cert *cert, void *userdata) {
        serve *s = userdata;
        (void)m;
        char *a = strdup(cert->fullchain_path), *b = strdup(cert->key_path);
        if (!a || !b) {
                free(a);
                free(b);
                tool_error("ACME: %s", strerror(ENOMEM));
                return;
        }
        free(s->acme_cert);
        free(s->acme_key);
        s->acme_cert = a;
        s->acme_key = b;
        s->acme_has_cert = true;
        char until[64];
        tool_acme_format_time(cert->not_after, until, sizeof(until));
        tool_error("ACME: certificate for %s, serial %s, valid until %s%s", cert->name,
                   cert->serial, until, cert->reused ? " (stored)" : " (new)");
        /* notify_status() follows once every worker has it. */
        reload_start(s, false);
}

/* The tables, the client and its manager (on the control loop: one for
 * every worker), and the stored certificate if there is a good one. */
static int acme_setup(serve *s, const paf_acme_options *options) {
        paf_acme_options o = *options;
        paf_error error = PAF_ERROR_NULL;
        int r = paf_acme_http01_new(&s->http01);
        if (r >= 0)
                r = paf_acme_tlsalpn_new(&s->tlsalpn);
        if (r < 0) {
                tool_error("ACME: %s", strerror(-r));
                return r;
        }
        o.http01 = s->http01;
        o.tlsalpn = s->tlsalpn;
        r = paf_acme_client_new(s->reg, &o, &s->acme_client, &error);
        if (r >= 0)
                r = paf_acme_manager_new(s->event, s->acme_client, s->acme_opts.names,
                                         s->acme_opts.n_names, on_acme_cert, s, &s->manager);
        if (r < 0) {
                tool_error("ACME: %s", error.message[0] ? error.message : strerror(-r));
                return r;
        }
        paf_acme_cert *stored = NULL;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t now = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
        r = 0;
        if (paf_acme_cert_load(o.state_dir, s->acme_opts.names[0], &stored, NULL) >= 0 &&
            !stored->revoked && now < stored->not_after) {
                s->acme_cert = strdup(stored->fullchain_path);
                s->acme_key = strdup(stored->key_path);
                if (!s->acme_cert || !s->acme_key)
                        r = -ENOMEM;
                s->acme_has_cert = r >= 0;
        }
        paf_acme_cert_free(stored);
        if (r < 0)
                tool_error("ACME: %s", strerror(-r));
        return r;
}

/* ---- workers ---- */

/* The CPUs this process may run on (taskset, CPUAffinity=). */
static unsigned n_cpus(void) {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
                return (unsigned)CPU_COUNT(&set);
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (unsigned)n : 1;
}

/* What lives on the worker's loop: freed from its thread once that ran. */
static void worker_release(worker *w) {
        w->server = paf_http_server_free(w->server);
        /* After the server: it is the server's handler. */
        w->chain = paf_acme_http01_chain_free(w->chain);
        for (size_t i = 0; i < w->n_tls; i++) {
                w->tls[i].listener = NULL; /* the server's, gone with it */
                w->tls[i].ctx = paf_ctx_unref(w->tls[i].ctx);
        }
        w->wake = sd_event_source_disable_unref(w->wake);
        w->publish = sd_event_source_disable_unref(w->publish);
}

/* Once its thread is over, if it had one. */
static void worker_free(worker *w) {
        worker_release(w);
        for (size_t i = 0; i < w->n_tls; i++)
                paf_ctx_unref(w->tls[i].next);
        free(w->tls);
        worker_loop_free(w->loop);
        sd_event_unref(w->event);
        if (w->wake_fd >= 0)
                (void)close(w->wake_fd);
        pthread_mutex_destroy(&w->lock);
}

static void *worker_thread(void *userdata) {
        worker *w = userdata;
        int r = worker_loop_run(w->loop);
        if (r < 0)
                tool_error("worker %u: event loop: %s", w->id, strerror(-r));
        w->exit_code = r;
        worker_publish(w);
        worker_release(w);
        worker_finished(w);
        return NULL;
}

/* n workers, each with its server and its share of limits (not listening
 * yet). With one, it is the control loop's. */
static int workers_new(serve *s, unsigned n, const paf_http_limits *limits,
                       const paf_http2_settings *h2) {
        s->workers = calloc(n, sizeof(*s->workers));
        if (n > 1)
                s->loops = calloc(n, sizeof(*s->loops));
        if (!s->workers || (n > 1 && !s->loops))
                return -ENOMEM;
        bool notify = getenv("NOTIFY_SOCKET");
        for (unsigned i = 0; i < n; i++) {
                worker *w = &s->workers[i];
                *w = (worker){.s = s, .id = i + 1, .wake_fd = -1};
                pthread_mutex_init(&w->lock, NULL);
                s->n_workers++;
                w->acme_has_cert = s->acme_has_cert;
                int r = 0;
                if (n == 1)
                        w->event = sd_event_ref(s->event);
                else
                        r = sd_event_new(&w->event);
                if (r >= 0 && n > 1)
                        r = worker_loop_new(w->event, &w->loop);
                if (r >= 0 && n > 1) {
                        s->loops[i] = w->loop;
                        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                        r = w->wake_fd < 0 ? -errno
                                           : sd_event_add_io(w->event, &w->wake, w->wake_fd,
                                                             EPOLLIN, on_worker_wake, w);
                }
                if (r >= 0 && n > 1 && notify)
                        r = sd_event_add_time_relative(w->event, &w->publish, CLOCK_MONOTONIC,
                                                       STATUS_INTERVAL_USEC, 0, on_publish_timer,
                                                       w);
                if (r >= 0 && s->acme)
                        r = paf_acme_http01_chain_new(s->http01, on_request, on_error, w,
                                                      &w->chain);
                if (r >= 0 && s->acme)
                        /* Challenges first, on every listener; then the files. */
                        r = paf_http_server_new(w->event, paf_acme_http01_chain_handler,
                                                paf_acme_http01_chain_error_handler, w->chain,
                                                &w->server);
                else if (r >= 0)
                        r = paf_http_server_new(w->event, on_request, on_error, w, &w->server);
                if (r >= 0) {
                        /* max-connections is the whole server's: each worker
                         * takes its share, and one at its share leaves new
                         * connections to the others. */
                        paf_http_limits l = *limits;
                        if (l.max_connections > 0)
                                l.max_connections = limits->max_connections / n +
                                                    (i < limits->max_connections % n);
                        r = paf_http_server_set_limits(w->server, &l);
                }
                if (r >= 0)
                        r = paf_http_server_set_http2(w->server, h2);
                if (r >= 0)
                        r = paf_http_server_set_response_headers(w->server, s->headers);
                if (r < 0)
                        return r;
        }
        for (unsigned i = 0; i < n && n > 1; i++)
                worker_loop_set_siblings(s->workers[i].loop, s->loops, n);
        return 0;
}

static int workers_start(serve *s) {
        if (s->n_workers == 1)
                return 0; /* the control loop serves */
        sigset_t all, old;
        sigfillset(&all);
        /* Signals are the control loop's: the workers take none. */
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int r = 0;
        for (size_t i = 0; i < s->n_workers && r >= 0; i++) {
                worker *w = &s->workers[i];
                r = -pthread_create(&w->thread, NULL, worker_thread, w);
                w->running = r >= 0;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                tool_error("cannot start a worker thread: %s", strerror(-r));
        return r;
}

static void workers_join(serve *s) {
        for (size_t i = 0; i < s->n_workers; i++)
                if (s->workers[i].running)
                        worker_post(&s->workers[i], CMD_EXIT);
        for (size_t i = 0; i < s->n_workers; i++) {
                worker *w = &s->workers[i];
                if (!w->running)
                        continue;
                pthread_join(w->thread, NULL);
                w->running = false;
                if (w->exit_code < 0)
                        s->failed = true;
        }
}

/* --workers, [http] workers: 0 is one per CPU. */
static int parse_workers(const char *arg, unsigned *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(arg, &end, 10);
        if (errno != 0 || end == arg || *end || arg[0] == '-' || v > MAX_WORKERS)
                return -EINVAL;
        *ret = (unsigned)v;
        return 0;
}

static void probe_handler(paf_http_request *req, void *userdata) {
        (void)userdata;
        (void)paf_http_respond(req, 500, NULL, NULL, 0);
}

/* --header's fields after [serve] header's: "Name: value", checked as the
 * engine takes them (a framing or hop-by-hop field is refused). Returns 0,
 * or the exit status after saying what is wrong. */
static int serve_headers(serve *s, const char *const *cli, size_t n_cli) {
        paf_value v;
        const char *conf = NULL;
        if (paf_registry_get_option(s->reg, "serve", "header", &v) >= 0 &&
            v.type == PAF_TYPE_STRING && v.string && *v.string)
                conf = v.string;
        if (!conf && n_cli == 0)
                return 0;
        int r = paf_http_headers_new(&s->headers);
        char *copy = conf ? strdup(conf) : NULL;
        if (r < 0 || (conf && !copy)) {
                free(copy);
                tool_error("--header: %s", strerror(ENOMEM));
                return 1;
        }
        /* [serve] header's lines (conf.c checked them), then each --header. */
        char *save = NULL;
        for (char *line = copy ? strtok_r(copy, "\n", &save) : NULL; line && r >= 0;
             line = strtok_r(NULL, "\n", &save)) {
                char *colon = strchr(line, ':');
                if (!colon)
                        continue;
                *colon = '\0';
                r = paf_http_headers_add(s->headers, line, colon + 1 + strspn(colon + 1, " \t"));
                if (r < 0)
                        tool_error("[serve] header \"%s\": not a valid field", line);
        }
        free(copy);
        if (r < 0)
                return 1;
        for (size_t i = 0; i < n_cli; i++) {
                const char *colon = strchr(cli[i], ':');
                char *name = colon ? strndup(cli[i], (size_t)(colon - cli[i])) : NULL;
                if (!name || !*name) {
                        free(name);
                        tool_error("--header \"%s\": expected \"Name: value\"", cli[i]);
                        return 2;
                }
                r = paf_http_headers_add(s->headers, name, colon + 1 + strspn(colon + 1, " \t"));
                if (r < 0)
                        tool_error("--header \"%s\": \"%s\" is not a field name (RFC 9110 "
                                   "token), or the value holds a control character",
                                   cli[i], name);
                free(name);
                if (r < 0)
                        return 2;
        }
        /* What the engine refuses (framing, hop-by-hop), asked of a server
         * that serves nothing: the message comes before anything listens. */
        paf_http_server *probe = NULL;
        r = paf_http_server_new(s->event, probe_handler, NULL, NULL, &probe);
        if (r >= 0)
                r = paf_http_server_set_response_headers(probe, s->headers);
        paf_http_server_free(probe);
        if (r == -EINVAL) {
                tool_error("--header: Content-Length, Transfer-Encoding, Connection, Keep-Alive, "
                           "Proxy-Connection, Upgrade, TE and Trailer are the server's own "
                           "fields");
                return 2;
        }
        if (r < 0) {
                tool_error("--header: %s", strerror(-r));
                return 1;
        }
        return 0;
}

int cmd_serve(int argc, char **argv) {
        enum {
                OPT_LISTEN_TLS = 256,
                OPT_CERT,
                OPT_KEY,
                OPT_CLIENT_CA,
                OPT_DOTFILES,
                OPT_GZIP,
                OPT_WORKERS,
                OPT_ACCESS_LOG,
                OPT_ERROR_LOG,
                OPT_HEADER,
        };
        /* --acme's, shared with paf cert (acme-tool.h). */
        static const struct option options[] = {
                {"listen", required_argument, NULL, 'l'},
                {"listen-tls", required_argument, NULL, OPT_LISTEN_TLS},
                {"cert", required_argument, NULL, OPT_CERT},
                {"key", required_argument, NULL, OPT_KEY},
                {"client-ca", required_argument, NULL, OPT_CLIENT_CA},
                {"root", required_argument, NULL, 'r'},
                {"dotfiles", no_argument, NULL, OPT_DOTFILES},
                {"gzip", no_argument, NULL, OPT_GZIP},
                {"acme", required_argument, NULL, TOOL_ACME_NAME},
                {"acme-url", required_argument, NULL, TOOL_ACME_URL},
                {"acme-staging", no_argument, NULL, TOOL_ACME_STAGING},
                {"acme-cacert", required_argument, NULL, TOOL_ACME_CACERT},
                {"acme-dir", required_argument, NULL, TOOL_ACME_DIR},
                {"acme-challenge", required_argument, NULL, TOOL_ACME_CHALLENGE},
                {"acme-key-type", required_argument, NULL, TOOL_ACME_KEY_TYPE},
                {"email", required_argument, NULL, TOOL_ACME_EMAIL},
                {"agree-tos", no_argument, NULL, TOOL_ACME_AGREE_TOS},
                {"eab-kid", required_argument, NULL, TOOL_ACME_EAB_KID},
                {"eab-hmac-key", required_argument, NULL, TOOL_ACME_EAB_HMAC_KEY},
                {"config", required_argument, NULL, 'c'},
                {"workers", required_argument, NULL, OPT_WORKERS},
                {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
                {"error-log", required_argument, NULL, OPT_ERROR_LOG},
                {"header", required_argument, NULL, OPT_HEADER},
                {"quiet", no_argument, NULL, 'q'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *listen[MAX_LISTEN], *listen_tls[MAX_LISTEN];
        const char *certs[MAX_CERTS], *keys[MAX_CERTS];
        size_t n_listen = 0, n_listen_tls = 0, n_certs = 0, n_keys = 0;
        const char *root_path = ".", *config = NULL, *client_ca = NULL;
        bool quiet = false, dotfiles = false, gzip = false;
        const char *headers[MAX_HEADERS];
        size_t n_headers = 0;
        unsigned n_workers = 0;
        bool workers_given = false;
        serve s = {.quiet = quiet, .wake_fd = -1, .error_log_fd = -1};
        int c, ret;
        while ((c = getopt_long(argc, argv, ":l:r:c:qh", options, NULL)) >= 0) {
                switch (c) {
                case 'l':
                case OPT_LISTEN_TLS:
                        if (n_listen + n_listen_tls == MAX_LISTEN)
                                return tool_usage_error("more than %d listeners", MAX_LISTEN);
                        if (c == 'l')
                                listen[n_listen++] = optarg;
                        else
                                listen_tls[n_listen_tls++] = optarg;
                        break;
                case OPT_CERT:
                case OPT_KEY:
                        if ((c == OPT_CERT ? n_certs : n_keys) == MAX_CERTS)
                                return tool_usage_error("more than %d --%s", MAX_CERTS,
                                                        c == OPT_CERT ? "cert" : "key");
                        if (c == OPT_CERT)
                                certs[n_certs++] = optarg;
                        else
                                keys[n_keys++] = optarg;
                        break;
                case OPT_CLIENT_CA:
                        client_ca = optarg;
                        break;
                case 'r':
                        root_path = optarg;
                        break;
                case OPT_DOTFILES:
                        dotfiles = true;
                        break;
                case OPT_GZIP:
                        gzip = true;
                        break;
                case 'c':
                        config = optarg;
                        break;
                case OPT_WORKERS:
                        if (parse_workers(optarg, &n_workers) < 0) {
                                tool_acme_done(&s.acme_opts);
                                return tool_usage_error("--workers \"%s\": not a number from 0 "
                                                        "to %d",
                                                        optarg, MAX_WORKERS);
                        }
                        workers_given = true;
                        break;
                case OPT_ACCESS_LOG:
                        s.access_log = optarg;
                        break;
                case OPT_ERROR_LOG:
                        s.error_log = optarg;
                        break;
                case OPT_HEADER:
                        if (n_headers == MAX_HEADERS)
                                return tool_usage_error("--header: at most %d", MAX_HEADERS);
                        headers[n_headers++] = optarg;
                        break;
                case 'q':
                        quiet = true;
                        break;
                case 'h':
                        usage(stdout);
                        tool_acme_done(&s.acme_opts);
                        return 0;
                default:
                        ret = tool_acme_option(&s.acme_opts, c, optarg);
                        if (ret == -EINVAL)
                                ret = tool_bad_option(c, argv, options);
                        if (ret) {
                                tool_acme_done(&s.acme_opts);
                                return ret;
                        }
                }
        }
        s.quiet = quiet;
        /* PORT, as `python3 -m http.server PORT`, but on this machine only,
         * as without it: naming the port is no reason to serve the network. */
        const char *port_arg = NULL;
        char port_address[32];
        size_t port_index = 0;
        if (optind < argc) {
                port_arg = argv[optind++];
                errno = 0;
                char *end;
                unsigned long v = strtoul(port_arg, &end, 10);
                if (port_arg[0] < '0' || port_arg[0] > '9' || *end || errno != 0 || v > 65535) {
                        tool_acme_done(&s.acme_opts);
                        return tool_usage_error("PORT \"%s\": not a port number (0 to 65535)",
                                                port_arg);
                }
                if (n_listen + n_listen_tls == MAX_LISTEN) {
                        tool_acme_done(&s.acme_opts);
                        return tool_usage_error("more than %d listeners", MAX_LISTEN);
                }
                snprintf(port_address, sizeof(port_address), "127.0.0.1:%lu", v);
                port_index = n_listen;
                listen[n_listen++] = port_address;
        }
        if (optind < argc) {
                tool_acme_done(&s.acme_opts);
                return tool_usage_error("unexpected argument \"%s\"", argv[optind]);
        }
        if (quiet && s.access_log) {
                tool_acme_done(&s.acme_opts);
                return tool_usage_error("--quiet and --access-log: --quiet turns the access log "
                                        "off");
        }
        if (n_certs != n_keys)
                return tool_usage_error("%zu --cert but %zu --key: they go in pairs", n_certs,
                                        n_keys);
        bool acme_cli = s.acme_opts.n_names > 0;
        if (acme_cli && n_certs > 0)
                return tool_usage_error("--acme and --cert: the certificate comes from one or "
                                        "the other");
        if (n_listen_tls == 0 && (n_certs > 0 || client_ca))
                return tool_usage_error("--cert, --key and --client-ca need --listen-tls");

        paf_activated *activated = NULL;
        int status = 1;

        int r = paf_http_static_new(root_path, &s.root);
        if (r < 0) {
                tool_error("--root \"%s\": %s", root_path, strerror(-r));
                return 1;
        }
        (void)paf_http_static_set_dotfiles(s.root, dotfiles);
        /* Before anything is bound: a log that cannot be written is a
         * mistake to hear about now, not at the first request. */
        if (s.access_log) {
                r = log_open(s.access_log);
                if (r < 0) {
                        tool_error("--access-log \"%s\": %s", s.access_log, strerror(-r));
                        goto out;
                }
                access_log_fd = r;
        }
        if (s.error_log) {
                r = log_open(s.error_log);
                if (r < 0) {
                        tool_error("--error-log \"%s\": %s", s.error_log, strerror(-r));
                        goto out;
                }
                s.error_log_fd = r;
        }
        if (load_registry(config, &s.reg) < 0)
                goto out;
        /* The core knows no transport: there would be nothing to listen on. */
        if (!tool_check_plugins(s.reg))
                goto out;
        /* What `paf config check` refuses, refused the same way, before
         * anything is bound. */
        paf_error error = PAF_ERROR_NULL;
        r = paf_registry_check_config(s.reg, &error);
        if (r < 0) {
                tool_error("%s", error.message[0] ? error.message : strerror(-r));
                goto out;
        }

        /* [acme] names turn ACME on as --acme does. */
        r = tool_acme_from_config(&s.acme_opts, s.reg);
        if (r < 0) {
                tool_error("%s: [acme]: %s", config ? config : "default configuration",
                           strerror(-r));
                goto out;
        }
        s.acme = s.acme_opts.n_names > 0;
        if (s.acme && n_certs > 0) {
                status = tool_usage_error("[acme] names and --cert: the certificate comes from "
                                          "one or the other");
                goto out;
        }
        if (n_listen_tls > 0 && n_certs == 0 && !s.acme) {
                status = tool_usage_error("--listen-tls needs --cert and --key, or --acme");
                goto out;
        }
        paf_acme_options acme_options;
        if (s.acme && (r = tool_acme_make(&s.acme_opts, &acme_options)) != 0) {
                status = r;
                goto out;
        }

        paf_http_limits limits;
        r = paf_http_limits_load(&limits, s.reg);
        if (r >= 0)
                r = paf_http_static_load_config(s.root, s.reg);
        if (r >= 0 && gzip)
                r = paf_http_static_set_gzip(s.root, true); /* over [http] gzip */
        if (r < 0) {
                tool_error("%s: [http]: %s", config ? config : "default configuration",
                           strerror(-r));
                goto out;
        }
        paf_http2_settings h2;
        r = paf_http2_settings_load(&h2, s.reg);
        if (r < 0) {
                tool_error("%s: [http2]: %s", config ? config : "default configuration",
                           strerror(-r));
                goto out;
        }
        if (!workers_given) {
                paf_value v;
                r = paf_registry_get_option(s.reg, "http", "workers", &v);
                if (r < 0 || v.type != PAF_TYPE_INT || v.integer < 0 || v.integer > MAX_WORKERS) {
                        tool_error("%s: [http] workers: %s",
                                   config ? config : "default configuration",
                                   strerror(r < 0 ? -r : ERANGE));
                        goto out;
                }
                n_workers = (unsigned)v.integer;
        }
        if (n_workers == 0)
                n_workers = n_cpus();
        if (n_workers > MAX_WORKERS)
                n_workers = MAX_WORKERS;
        if (limits.max_connections > 0 && n_workers > limits.max_connections) {
                /* Each takes a share of the connections: none may be 0,
                 * which is "no limit". */
                tool_error("[http] max-connections = %u: as many workers, not %u",
                           limits.max_connections, n_workers);
                n_workers = limits.max_connections;
        }
        for (size_t i = 0; i < n_certs; i++)
                if (tls_config_add_cert(&s.tls, certs[i], keys[i]) < 0)
                        goto oom;
        if (client_ca && !(s.tls.client_ca = strdup(client_ca)))
                goto oom;

        /* Signals arrive through the loop, so stopping and reloading run
         * between requests. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGUSR1);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&s.event);
        if (r >= 0)
                /* Cached files unused for a while are closed also when no
                 * request comes (one deleted frees its space). */
                r = paf_http_static_attach_event(s.root, s.event);
        if (r >= 0)
                r = sd_event_add_signal(s.event, NULL, SIGTERM, on_signal, &s);
        if (r >= 0)
                r = sd_event_add_signal(s.event, NULL, SIGINT, on_signal, &s);
        if (r >= 0)
                r = sd_event_add_signal(s.event, NULL, SIGHUP, on_reload, &s);
        if (r >= 0)
                r = sd_event_add_signal(s.event, NULL, SIGUSR1, on_reopen, &s);
        if (r >= 0 && (s.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
                r = -errno;
        if (r >= 0)
                r = sd_event_add_io(s.event, &s.wake, s.wake_fd, EPOLLIN, on_control_wake, &s);
        if (r < 0) {
                tool_error("cannot set up the server: %s", strerror(-r));
                goto out;
        }
        if (s.acme && acme_setup(&s, &acme_options) < 0)
                goto out;
        r = serve_headers(&s, headers, n_headers);
        if (r != 0) {
                status = r;
                goto out;
        }
        r = workers_new(&s, n_workers, &limits, &h2);
        if (r >= 0)
                r = notify_setup(&s);
        if (r < 0) {
                tool_error("cannot set up the server: %s", strerror(-r));
                goto out;
        }

        /* Socket activation first: it decides whether the default applies. */
        if (listen_activated(&s, config, &activated) < 0)
                goto out;
        size_t n_sections;
        paf_registry_get_listen_sections(s.reg, &n_sections);
        size_t n_asked =
                n_listen + n_listen_tls + n_sections + paf_activated_get_n_listeners(activated);
        bool by_default = n_asked == 0;
        if (by_default && s.acme) {
                /* What a CA validates: port 80 (http-01) and 443 (tls-alpn-01). */
                listen[n_listen++] = "80";
                listen_tls[n_listen_tls++] = "443";
        } else if (by_default)
                listen[n_listen++] = DEFAULT_LISTEN;
        if (s.acme && acme_options.challenge == PAF_ACME_CHALLENGE_HTTP01 && n_listen == 0)
                tool_error("--acme: no --listen: the CA's http-01 challenge needs a plain HTTP "
                           "listener (the CA connects to port 80; or --acme-challenge "
                           "tls-alpn-01)");
        if (s.acme && acme_options.challenge == PAF_ACME_CHALLENGE_TLSALPN01 && n_listen_tls == 0)
                tool_error("--acme: no --listen-tls: the CA's tls-alpn-01 challenge needs a TLS "
                           "listener (the CA connects to port 443)");
        if (s.acme && n_listen_tls > 0) {
                /* Redirects name the first TLS listener's port unless it is 443. */
                const char *a = listen_tls[0];
                const char *colon = strrchr(a, ':');
                const char *port = colon ? colon + 1 : a;
                if (strspn(port, "0123456789") == strlen(port) && strcmp(port, "443") != 0 &&
                    !(s.https_port = strdup(port)))
                        goto oom;
        }

        for (size_t i = 0; i < n_listen + n_listen_tls; i++) {
                bool secure = i >= n_listen;
                const char *address = secure ? listen_tls[i - n_listen] : listen[i];
                char what[512];
                /* Never a --listen the user did not type. */
                if (by_default)
                        snprintf(what, sizeof(what), "the default listener %s", address);
                else if (port_arg && !secure && i == port_index)
                        snprintf(what, sizeof(what), "PORT \"%s\"", port_arg);
                else
                        snprintf(what, sizeof(what), "--listen%s \"%s\"", secure ? "-tls" : "",
                                 address);
                tls_spec spec = {s.acme ? TLS_ACME : TLS_FILES, NULL};
                if (serve_listen(&s, what, address, secure ? &spec : NULL) < 0)
                        goto out;
        }
        if (listen_config(&s, config, activated) < 0)
                goto out;
        activated = paf_activated_free(activated);

        /* The challenges can be answered now: the stored certificate is
         * taken, or a new one ordered. */
        if (s.acme && (r = paf_acme_manager_start(s.manager)) < 0) {
                tool_error("ACME: cannot start: %s", strerror(-r));
                goto out;
        }
        if (error_log_take_over(&s) < 0 || workers_start(&s) < 0)
                goto out;
        /* Every listener is listening: connections wait in its backlog until
         * the loops run. */
        notify_status(&s, "READY=1\n");
        r = paf_event_loop(s.event);
        if (r < 0)
                tool_error("event loop: %s", strerror(-r));
        workers_join(&s);
        if (r >= 0 && !s.failed)
                status = 0;
        if (s.n_workers > 1) {
                unsigned conns;
                uint64_t reqs;
                char per[1024];
                serve_counts(&s, &conns, &reqs, per, sizeof(per));
                tool_error("%" PRIu64 " request%s served%s", reqs, reqs == 1 ? "" : "s", per);
        }
        goto out;
oom:
        tool_error("%s", strerror(ENOMEM));
out:
        paf_activated_free(activated);
        workers_join(&s);
        /* The renewal thread goes first: it publishes into the tables. */
        paf_acme_manager_free(s.manager);
        paf_acme_client_free(s.acme_client);
        /* Every server before any loop: a listener going tells the other
         * loops. */
        for (size_t i = 0; i < s.n_workers; i++)
                worker_release(&s.workers[i]);
        for (size_t i = 0; i < s.n_workers; i++)
                worker_free(&s.workers[i]);
        free(s.workers);
        free(s.loops);
        for (size_t i = 0; i < s.n_origins; i++)
                paf_listener_free(s.origins[i]);
        free(s.origins);
        for (size_t i = 0; i < s.n_groups; i++) {
                free(s.groups[i].section);
                free(s.groups[i].label);
        }
        free(s.groups);
        paf_acme_http01_unref(s.http01);
        paf_acme_tlsalpn_unref(s.tlsalpn);
        free(s.acme_cert);
        free(s.acme_key);
        free(s.https_port);
        tool_acme_done(&s.acme_opts);
        sd_event_source_disable_unref(s.wake);
        if (s.wake_fd >= 0)
                (void)close(s.wake_fd);
        sd_event_unref(s.event);
        tls_config_done(&s.tls);
        paf_registry_unref(s.reg);
        paf_http_static_unref(s.root);
        paf_http_headers_free(s.headers);
        if (access_log_fd != STDERR_FILENO) {
                (void)close(access_log_fd);
                access_log_fd = STDERR_FILENO;
        }
        if (s.error_log_fd >= 0)
                (void)close(s.error_log_fd);
        for (size_t i = 0; i < s.n_said; i++)
                free(s.said[i]);
        free(s.said);
        return status;
}
