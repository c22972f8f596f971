/* tests/http/echo-server.c — a test server on the HTTP API: hello, echo, sink, slow, stream,
 * trailers. */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <paf.h>

#define MAX_LISTEN 16
#define STREAM_PIECE (64 * 1024)
/* /stream?piece=N: at most this (one write as big as a file piece or a whole
 * response, which a slow reader keeps in progress for long). */
#define STREAM_PIECE_MAX (16 * 1024 * 1024)
#define PATTERN_PERIOD 26

typedef struct server {
        sd_event *event;
        paf_http_server *http;
        bool stopping;
        bool done;
        int exit_code;
        unsigned n_errors;
} server;

/* The bytes /stream sends, shared by every response: the engine only reads
 * them until a write completes, so one buffer keeps memory flat whatever the
 * size or number of streams. Byte k of a body is 'a' + k % 26: a piece
 * starts PATTERN_PERIOD bytes in at most, so that clients can check any
 * body without knowing the pieces. */
static unsigned char stream_pattern[STREAM_PIECE + PATTERN_PERIOD];

static void fill_pattern(unsigned char *b, size_t n) {
        for (size_t i = 0; i < n; i++)
                b[i] = (unsigned char)('a' + i % PATTERN_PERIOD);
}

/* The query parameter name=N of target, or def when absent or not a number. */
static uint64_t query_u64(const char *target, const char *name, uint64_t def) {
        const char *q = strchr(target, '?');
        size_t n = strlen(name);
        while (q) {
                q++;
                if (strncmp(q, name, n) == 0 && q[n] == '=') {
                        char *end;
                        errno = 0;
                        unsigned long long v = strtoull(q + n + 1, &end, 10);
                        if (errno == 0 && end != q + n + 1 && (*end == '\0' || *end == '&'))
                                return v;
                        return def;
                }
                q = strchr(q, '&');
        }
        return def;
}

/* Whether the path of target (the part before '?') is path. */
static bool path_is(const char *target, const char *path) {
        size_t n = strlen(path);
        return strncmp(target, path, n) == 0 && (target[n] == '\0' || target[n] == '?');
}

static void respond_text(paf_http_request *req, int status, const char *text) {
        int r = paf_http_respond(req, status, "text/plain", text, strlen(text));
        if (r < 0)
                fprintf(stderr, "echo-server: respond %d: %s\n", status, strerror(-r));
}

/* ---- /echo: the request body streamed back, chunked ---- */

/* One piece of the body is in flight at a time: the request body stays paused
 * while its copy is being written, so a fast sender cannot make us buffer. */
typedef struct echo {
        paf_http_request *req;
        void *piece; /* the copy being written, or NULL */
        bool started;
        bool ended;   /* the body ended while a write was pending */
        bool aborted; /* the connection went away */
} echo;

static void echo_free(echo *e) {
        if (!e)
                return;
        free(e->piece);
        free(e);
}

/* Finish the response and let the request go; e is freed. */
static void echo_finish(echo *e) {
        int r;
        if (!e->started) {
                r = paf_http_response_start(e->req, 200, NULL, -1);
                if (r < 0)
                        fprintf(stderr, "echo-server: /echo start: %s\n", strerror(-r));
        }
        r = paf_http_response_finish(e->req, NULL);
        if (r < 0)
                fprintf(stderr, "echo-server: /echo finish: %s\n", strerror(-r));
        echo_free(e);
}

static void echo_written(paf_http_request *req, int error, void *userdata) {
        echo *e = userdata;
        free(e->piece);
        e->piece = NULL;
        /* The engine runs every write's completion, after an abort too: the
         * last one frees what the abort handler could not. */
        if (e->aborted) {
                echo_free(e);
                return;
        }
        if (error < 0) {
                /* The connection is going away; the abort handler follows. */
                fprintf(stderr, "echo-server: /echo write: %s\n", strerror(-error));
                return;
        }
        if (e->ended) {
                echo_finish(e);
                return;
        }
        int r = paf_http_request_resume_body(req);
        if (r < 0)
                fprintf(stderr, "echo-server: /echo resume: %s\n", strerror(-r));
}

static void echo_body(paf_http_request *req, const void *data, size_t len, int error,
                      void *userdata) {
        echo *e = userdata;
        if (error < 0) {
                /* A broken body (bad chunk, timeout, peer gone): the engine
                 * drops the connection and the abort handler follows. */
                fprintf(stderr, "echo-server: /echo body: %s\n", strerror(-error));
                return;
        }
        if (len == 0) {
                if (e->piece)
                        e->ended = true;
                else
                        echo_finish(e);
                return;
        }
        int r;
        if (!e->started) {
                paf_http_headers *h = NULL;
                r = paf_http_headers_new(&h);
                if (r >= 0)
                        r = paf_http_headers_add(h, "Content-Type", "application/octet-stream");
                if (r >= 0)
                        r = paf_http_response_start(req, 200, h, -1);
                paf_http_headers_free(h);
                if (r < 0) {
                        fprintf(stderr, "echo-server: /echo start: %s\n", strerror(-r));
                        echo_finish(e);
                        return;
                }
                e->started = true;
        }
        /* The engine's buffer is borrowed for this call only. */
        assert(!e->piece);
        e->piece = malloc(len);
        if (!e->piece) {
                fprintf(stderr, "echo-server: /echo: out of memory\n");
                echo_finish(e);
                return;
        }
        memcpy(e->piece, data, len);
        r = paf_http_request_pause_body(req);
        if (r >= 0)
                r = paf_http_response_write(req, e->piece, len, echo_written, e);
        if (r < 0) {
                fprintf(stderr, "echo-server: /echo write: %s\n", strerror(-r));
                free(e->piece);
                e->piece = NULL;
                /* Ending it is better than a request that hangs: the engine
                 * closes a connection whose chunked response was cut. */
                echo_finish(e);
        }
}

static void echo_abort(paf_http_request *req, int error, void *userdata) {
        echo *e = userdata;
        fprintf(stderr, "echo-server: /echo aborted: %s\n", strerror(-error));
        e->aborted = true;
        /* Still ours to end once: this lets the engine free the request
         * (the call itself fails, the connection being gone). */
        (void)paf_http_response_finish(req, NULL);
        /* A pending write still points into e->piece: its completion frees e. */
        if (!e->piece)
                echo_free(e);
}

static void handle_echo(paf_http_request *req) {
        echo *e = calloc(1, sizeof(*e));
        if (!e) {
                respond_text(req, 500, "out of memory\n");
                return;
        }
        e->req = req;
        paf_http_request_set_abort_handler(req, echo_abort, e);
        /* The response starts with the first piece of the body: starting it
         * before reading would answer before "100 Continue". */
        int r = paf_http_request_read_body(req, echo_body, e);
        if (r < 0) {
                paf_http_request_set_abort_handler(req, NULL, NULL);
                free(e);
                respond_text(req, 500, "cannot read the body\n");
        }
}

/* ---- /sink: the whole body read, then its size answered ---- */

/* Unlike /echo, nothing is answered before the body's end: an error anywhere
 * in the body can still be answered with a status (400, 413). */
static void sink_body(paf_http_request *req, const void *data, size_t len, int error,
                      void *userdata) {
        (void)data;
        uint64_t *n = userdata;
        if (error < 0)
                return; /* the abort handler follows */
        if (len > 0) {
                *n += len;
                return;
        }
        char text[32];
        snprintf(text, sizeof(text), "%" PRIu64 "\n", *n);
        free(n);
        paf_http_request_set_abort_handler(req, NULL, NULL);
        respond_text(req, 200, text);
}

static void sink_abort(paf_http_request *req, int error, void *userdata) {
        fprintf(stderr, "echo-server: /sink aborted: %s\n", strerror(-error));
        free(userdata);
        (void)paf_http_response_finish(req, NULL);
}

static void handle_sink(paf_http_request *req) {
        uint64_t *n = calloc(1, sizeof(*n));
        if (!n) {
                respond_text(req, 500, "out of memory\n");
                return;
        }
        paf_http_request_set_abort_handler(req, sink_abort, n);
        int r = paf_http_request_read_body(req, sink_body, n);
        if (r < 0) {
                paf_http_request_set_abort_handler(req, NULL, NULL);
                free(n);
                respond_text(req, 500, "cannot read the body\n");
        }
}

/* ---- /slow?ms=N: answered later, from a timer ---- */

typedef struct slow {
        paf_http_request *req;
        sd_event_source *timer;
        uint64_t ms;
} slow;

static int slow_fire(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        slow *sl = userdata;
        char text[64];
        snprintf(text, sizeof(text), "slow %" PRIu64 "\n", sl->ms);
        paf_http_request_set_abort_handler(sl->req, NULL, NULL);
        respond_text(sl->req, 200, text);
        sd_event_source_unref(sl->timer);
        free(sl);
        return 0;
}

static void slow_abort(paf_http_request *req, int error, void *userdata) {
        slow *sl = userdata;
        fprintf(stderr, "echo-server: /slow aborted: %s\n", strerror(-error));
        sd_event_source_unref(sl->timer);
        free(sl);
        (void)paf_http_response_finish(req, NULL);
}

static void handle_slow(server *srv, paf_http_request *req) {
        uint64_t ms = query_u64(paf_http_request_get_target(req), "ms", 100);
        if (ms > 60000) {
                respond_text(req, 400, "ms: at most 60000\n");
                return;
        }
        slow *sl = calloc(1, sizeof(*sl));
        if (!sl) {
                respond_text(req, 500, "out of memory\n");
                return;
        }
        sl->req = req;
        sl->ms = ms;
        uint64_t now;
        int r = sd_event_now(srv->event, CLOCK_MONOTONIC, &now);
        /* 1 ms accuracy: the default (250 ms) would blur the ordering the
         * pipelining test relies on. */
        if (r >= 0)
                r = sd_event_add_time(srv->event, &sl->timer, CLOCK_MONOTONIC, now + ms * 1000,
                                      1000, slow_fire, sl);
        if (r < 0) {
                free(sl);
                respond_text(req, 500, "cannot arm a timer\n");
                return;
        }
        paf_http_request_set_abort_handler(req, slow_abort, sl);
}

/* ---- /stream?bytes=N[&piece=P][&delay=MS]: N bytes with Content-Length ----
 *
 * P bytes per write (64 KiB by default); with delay, the response starts MS
 * milliseconds after the request, as a handler that answers later. */

typedef struct stream {
        paf_http_request *req;
        uint64_t total, left;
        size_t piece;
        unsigned char *own; /* the pattern, for pieces beyond STREAM_PIECE */
        sd_event_source *timer;
        bool pending; /* a write is queued: its completion comes */
        bool aborted;
} stream;

static void stream_free(stream *st) {
        sd_event_source_disable_unref(st->timer);
        free(st->own);
        free(st);
}

static void stream_next(stream *st);

static void stream_written(paf_http_request *req, int error, void *userdata) {
        (void)req;
        stream *st = userdata;
        st->pending = false;
        if (st->aborted) {
                stream_free(st);
                return;
        }
        if (error < 0) {
                /* The connection is going away; the abort handler follows. */
                fprintf(stderr, "echo-server: /stream write: %s\n", strerror(-error));
                return;
        }
        stream_next(st);
}

/* Writes the next piece once the previous one completed (completions come
 * from the loop, never from inside the write): at most one piece is queued,
 * whatever the size of the response. */
static void stream_next(stream *st) {
        int r;
        if (st->left == 0) {
                r = paf_http_response_finish(st->req, NULL);
                if (r < 0)
                        fprintf(stderr, "echo-server: /stream finish: %s\n", strerror(-r));
                stream_free(st);
                return;
        }
        size_t n = st->left < st->piece ? (size_t)st->left : st->piece;
        const unsigned char *pattern = st->own ? st->own : stream_pattern;
        uint64_t offset = st->total - st->left;
        r = paf_http_response_write(st->req, pattern + offset % PATTERN_PERIOD, n, stream_written,
                                    st);
        if (r < 0) {
                /* Finishing short of Content-Length makes the engine close
                 * the connection: the client learns the response was cut. */
                fprintf(stderr, "echo-server: /stream write: %s\n", strerror(-r));
                (void)paf_http_response_finish(st->req, NULL);
                stream_free(st);
                return;
        }
        st->left -= n;
        st->pending = true;
}

static void stream_abort(paf_http_request *req, int error, void *userdata) {
        stream *st = userdata;
        fprintf(stderr, "echo-server: /stream aborted: %s\n", strerror(-error));
        st->aborted = true;
        (void)paf_http_response_finish(req, NULL);
        if (!st->pending)
                stream_free(st);
}

static void stream_begin(stream *st) {
        paf_http_headers *h = NULL;
        int r = paf_http_headers_new(&h);
        if (r >= 0)
                r = paf_http_headers_add(h, "Content-Type", "application/octet-stream");
        if (r >= 0)
                r = paf_http_response_start(st->req, 200, h, (int64_t)st->total);
        paf_http_headers_free(h);
        if (r < 0) {
                fprintf(stderr, "echo-server: /stream start: %s\n", strerror(-r));
                paf_http_request_set_abort_handler(st->req, NULL, NULL);
                respond_text(st->req, 500, "cannot start the response\n");
                stream_free(st);
                return;
        }
        stream_next(st);
}

static int stream_on_delay(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        stream *st = userdata;
        st->timer = sd_event_source_disable_unref(st->timer);
        stream_begin(st);
        return 0;
}

static void handle_stream(server *srv, paf_http_request *req) {
        const char *target = paf_http_request_get_target(req);
        uint64_t bytes = query_u64(target, "bytes", 0);
        uint64_t piece = query_u64(target, "piece", STREAM_PIECE);
        uint64_t delay = query_u64(target, "delay", 0);
        if (bytes > INT64_MAX) {
                respond_text(req, 400, "bytes: too large\n");
                return;
        }
        if (piece == 0 || piece > STREAM_PIECE_MAX) {
                respond_text(req, 400, "piece: 1 to 16777216\n");
                return;
        }
        if (delay > 60000) {
                respond_text(req, 400, "delay: at most 60000\n");
                return;
        }
        stream *st = calloc(1, sizeof(*st));
        if (!st) {
                respond_text(req, 500, "out of memory\n");
                return;
        }
        st->req = req;
        st->total = st->left = bytes;
        st->piece = (size_t)piece;
        if (piece > STREAM_PIECE) {
                st->own = malloc((size_t)piece + PATTERN_PERIOD);
                if (!st->own) {
                        free(st);
                        respond_text(req, 500, "out of memory\n");
                        return;
                }
                fill_pattern(st->own, (size_t)piece + PATTERN_PERIOD);
        }
        paf_http_request_set_abort_handler(req, stream_abort, st);
        if (delay == 0) {
                stream_begin(st);
                return;
        }
        uint64_t now;
        int r = sd_event_now(srv->event, CLOCK_MONOTONIC, &now);
        if (r >= 0)
                r = sd_event_add_time(srv->event, &st->timer, CLOCK_MONOTONIC, now + delay * 1000,
                                      1000, stream_on_delay, st);
        if (r < 0) {
                paf_http_request_set_abort_handler(req, NULL, NULL);
                stream_free(st);
                respond_text(req, 500, "cannot arm a timer\n");
        }
}

/* ---- the server ---- */

/* ---- /trailers: a streamed body, then trailer fields (and the request's
 * trailers counted back in one of them) ---- */

typedef struct trailers {
        paf_http_request *req;
        size_t n;     /* request trailers seen */
        bool writing; /* its completion frees it */
} trailers;

static void trailers_written(paf_http_request *req, int error, void *userdata) {
        trailers *t = userdata;
        if (error < 0) {
                free(t);
                return; /* an abort: the handler ends it there */
        }
        paf_http_headers *h = NULL;
        char n[24];
        snprintf(n, sizeof(n), "%zu", t->n);
        int r = paf_http_headers_new(&h);
        if (r >= 0)
                r = paf_http_headers_add(h, "X-Checksum", "body-ok");
        if (r >= 0)
                r = paf_http_headers_add(h, "X-Request-Trailers", n);
        if (r >= 0)
                r = paf_http_response_finish(req, h);
        if (r < 0)
                fprintf(stderr, "echo-server: /trailers finish: %s\n", strerror(-r));
        paf_http_headers_free(h);
        free(t);
}

static void trailers_body(paf_http_request *req, const void *data, size_t len, int error,
                          void *userdata) {
        (void)data;
        trailers *t = userdata;
        if (error < 0 || len > 0)
                return;
        const paf_http_headers *tr = paf_http_request_get_trailers(req);
        t->n = paf_http_headers_count(tr);
        int r = paf_http_response_start(req, 200, NULL, -1);
        if (r >= 0)
                r = paf_http_response_write(req, "body\n", 5, trailers_written, t);
        if (r >= 0)
                t->writing = true;
        else {
                fprintf(stderr, "echo-server: /trailers: %s\n", strerror(-r));
                (void)paf_http_response_finish(req, NULL);
                free(t);
        }
}

static void trailers_abort(paf_http_request *req, int error, void *userdata) {
        trailers *t = userdata;
        fprintf(stderr, "echo-server: /trailers aborted: %s\n", strerror(-error));
        (void)paf_http_response_finish(req, NULL);
        if (!t->writing)
                free(t);
}

static void handle_trailers(paf_http_request *req) {
        trailers *t = calloc(1, sizeof(*t));
        if (!t) {
                respond_text(req, 500, "out of memory\n");
                return;
        }
        t->req = req;
        paf_http_request_set_abort_handler(req, trailers_abort, t);
        if (paf_http_request_read_body(req, trailers_body, t) < 0) {
                free(t);
                respond_text(req, 500, "cannot read the body\n");
        }
}

static void on_request(paf_http_request *req, void *userdata) {
        server *srv = userdata;
        const char *target = paf_http_request_get_target(req);
        if (path_is(target, "/hello"))
                respond_text(req, 200, "hello\n");
        else if (path_is(target, "/echo"))
                handle_echo(req);
        else if (path_is(target, "/sink"))
                handle_sink(req);
        else if (path_is(target, "/slow"))
                handle_slow(srv, req);
        else if (path_is(target, "/stream"))
                handle_stream(srv, req);
        else if (path_is(target, "/trailers"))
                handle_trailers(req);
        else
                respond_text(req, 404, "not found\n");
}

static void on_error(const char *peer, int status, const char *reason, void *userdata) {
        server *srv = userdata;
        srv->n_errors++;
        fprintf(stderr, "echo-server: %s: %d %s\n", peer ? peer : "?", status,
                reason ? reason : "");
}

static void on_stopped(void *userdata) {
        server *srv = userdata;
        fprintf(stderr, "echo-server: stopped after %" PRIu64 " requests\n",
                paf_http_server_get_n_requests(srv->http));
        srv->done = true;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void)s;
        server *srv = userdata;
        if (srv->stopping) {
                /* A second signal: the user does not want to wait. */
                fprintf(stderr, "echo-server: signal %u again, exiting now\n", si->ssi_signo);
                srv->exit_code = 1;
                srv->done = true;
                return 0;
        }
        srv->stopping = true;
        fprintf(stderr, "echo-server: signal %u, stopping (%u connections)\n", si->ssi_signo,
                paf_http_server_get_n_connections(srv->http));
        int r = paf_http_server_stop(srv->http, on_stopped, srv);
        if (r < 0) {
                fprintf(stderr, "echo-server: stop: %s\n", strerror(-r));
                srv->exit_code = 1;
                srv->done = true;
        }
        return 0;
}

static void usage(FILE *f) {
        fprintf(f, "Usage: echo-server [--config FILE] --listen ADDR [--listen ADDR…]\n"
                   "Routes: /hello, /echo, /sink, /slow?ms=N,\n"
                   "        /stream?bytes=N[&piece=N][&delay=MS].\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                {"config", required_argument, NULL, 'c'},
                {"listen", required_argument, NULL, 'l'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *config = NULL;
        const char *addresses[MAX_LISTEN];
        size_t n_listen = 0;
        int c;
        while ((c = getopt_long(argc, argv, "c:l:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case 'l':
                        if (n_listen == MAX_LISTEN) {
                                fprintf(stderr, "echo-server: at most %d --listen\n", MAX_LISTEN);
                                return 2;
                        }
                        addresses[n_listen++] = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc || n_listen == 0) {
                usage(stderr);
                return 2;
        }

        fill_pattern(stream_pattern, sizeof(stream_pattern));

        int ret = 1;
        server srv = {};
        paf_registry *reg = NULL;
        paf_error err = PAF_ERROR_NULL;
        paf_http_limits limits;
        sigset_t mask;

        /* A peer that goes away must be an EPIPE, never a signal. */
        signal(SIGPIPE, SIG_IGN);
        /* sd-event wants the signals blocked before it watches them. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        int r = paf_registry_new(&reg);
        if (r < 0) {
                fprintf(stderr, "echo-server: registry: %s\n", strerror(-r));
                goto out;
        }
        r = paf_registry_load_config(reg, config, &err);
        if (r >= 0)
                r = paf_registry_load_plugins(reg, &err);
        if (r < 0) {
                fprintf(stderr, "echo-server: %s\n", err.message);
                goto out;
        }
        r = paf_http_limits_load(&limits, reg);
        if (r < 0) {
                fprintf(stderr, "echo-server: [http] limits: %s\n", strerror(-r));
                goto out;
        }
        paf_http2_settings h2;
        r = paf_http2_settings_load(&h2, reg);
        if (r < 0) {
                fprintf(stderr, "echo-server: [http2]: %s\n", strerror(-r));
                goto out;
        }
        r = sd_event_new(&srv.event);
        if (r < 0) {
                fprintf(stderr, "echo-server: sd_event_new: %s\n", strerror(-r));
                goto out;
        }
        r = sd_event_add_signal(srv.event, NULL, SIGTERM, on_signal, &srv);
        if (r >= 0)
                r = sd_event_add_signal(srv.event, NULL, SIGINT, on_signal, &srv);
        if (r < 0) {
                fprintf(stderr, "echo-server: signals: %s\n", strerror(-r));
                goto out;
        }
        r = paf_http_server_new(srv.event, on_request, on_error, &srv, &srv.http);
        if (r >= 0)
                r = paf_http_server_set_limits(srv.http, &limits);
        if (r >= 0)
                r = paf_http_server_set_http2(srv.http, &h2);
        if (r < 0) {
                fprintf(stderr, "echo-server: server: %s\n", strerror(-r));
                goto out;
        }
        for (size_t i = 0; i < n_listen; i++) {
                paf_listener *l = NULL;
                r = paf_registry_listen_address(reg, addresses[i], srv.event, NULL, NULL, &l, &err);
                if (r < 0) {
                        fprintf(stderr, "echo-server: %s\n", err.message);
                        goto out;
                }
                /* The real address: port 0 became a port. Copied, as the
                 * listener is the server's from now on. */
                char *address = strdup(paf_listener_get_address(l));
                r = paf_http_server_add_listener(srv.http, l);
                if (r < 0) {
                        fprintf(stderr, "echo-server: %s: %s\n", addresses[i], strerror(-r));
                        free(address);
                        goto out;
                }
                printf("listening on %s\n", address ? address : addresses[i]);
                free(address);
        }
        fflush(stdout);

        /* Our own loop rather than sd_event_loop(): an exited loop runs
         * nothing more, and the closes the server defers must still run. */
        while (!srv.done) {
                r = sd_event_run(srv.event, UINT64_MAX);
                if (r < 0) {
                        fprintf(stderr, "echo-server: loop: %s\n", strerror(-r));
                        srv.exit_code = 1;
                        break;
                }
        }
        ret = srv.exit_code;
out:
        paf_http_server_free(srv.http);
        /* Let the closes the server deferred run before the loop goes. */
        if (srv.event)
                for (int i = 0; i < 16 && sd_event_run(srv.event, 0) > 0; i++)
                        ;
        sd_event_unref(srv.event);
        paf_registry_unref(reg);
        return ret;
}
