/* tests/http/test-server.c — the HTTP/1.1 server engine over socketpairs: framing, keep-alive,
 * pipelining, bodies, upgrade, limits, timeouts, malformed requests, graceful stop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>
#include <paf/http.h>

#include "../common/paf-test.h"

/* ---- helpers ---- */

#define MAX_CLIENTS 48
#define CLIENT_BUF (1024 * 1024)

typedef struct client {
        int fd;
        char *buf;
        size_t len, off; /* off: responses already taken */
        bool eof;
        bool no_pump; /* leave what arrives unread */
} client;

typedef struct env env;

typedef struct report {
        int status;
        char reason[256];
} report;

struct env {
        sd_event *event;
        paf_http_server *server;
        int fds_before;
        client *clients[MAX_CLIENTS];
        size_t n_clients;

        report reports[64];
        size_t n_reports;

        /* What the handlers saw and hold. */
        paf_http_request *held;
        unsigned n_handled;
        char body[64 * 1024];
        size_t body_len;
        size_t body_pieces;
        bool body_end;
        int body_error;
        bool pause_once, paused;
        unsigned n_aborts;
        int abort_error;
        bool finish_in_abort;
        paf_flow *upgraded;
        char up_data[256];
        size_t up_len;
        unsigned n_done;
        unsigned stream_step;
        sd_event_source *timer;
        char late_body[64];
        bool late_read_body;
        unsigned writes[4]; /* counted flows' implementation writes */
};

/* /pattern's body: big enough to outlast several write timeouts at the
 * pace of test_slow_reader, small enough for the client's buffer. */
#define PATTERN_SIZE (768 * 1024)

static void fill_pattern(char *b, size_t n) {
        for (size_t i = 0; i < n; i++)
                b[i] = (char)('a' + (i * 7 + i / 4096) % 26);
}

static void on_error(const char *peer, int status, const char *reason, void *userdata) {
        env *v = userdata;
        assert_non_null(peer);
        if (v->n_reports < 64) {
                v->reports[v->n_reports].status = status;
                snprintf(v->reports[v->n_reports].reason, 256, "%s", reason);
                v->n_reports++;
        }
}

static void on_body(paf_http_request *req, const void *data, size_t len, int error, void *userdata);
static void on_stream_written(paf_http_request *req, int error, void *userdata);

static void on_abort(paf_http_request *req, int error, void *userdata) {
        env *v = userdata;
        v->n_aborts++;
        v->abort_error = error;
        assert_true(error < 0);
        assert_ptr_equal(req, v->held);
        /* The request is still readable after an abort. */
        assert_non_null(paf_http_request_get_method(req));
        assert_null(paf_http_request_get_flow(req));
        if (v->finish_in_abort) {
                assert_int_equal(paf_http_response_finish(req, NULL), -ECONNRESET);
                v->held = NULL;
        }
}

static void on_handler(paf_http_request *req, void *userdata) {
        env *v = userdata;
        v->n_handled++;
        const char *target = paf_http_request_get_target(req);
        assert_non_null(target);
        assert_non_null(paf_http_request_get_flow(req));
        assert_non_null(paf_http_request_get_peer(req));
        assert_non_null(paf_http_request_get_local(req));

        if (strncmp(target, "/late", 5) == 0 || strncmp(target, "/hold", 5) == 0) {
                assert_null(v->held);
                v->held = req;
                paf_http_request_set_abort_handler(req, on_abort, v);
                if (v->late_read_body)
                        return;
                return;
        }
        if (strcmp(target, "/echo") == 0 || strcmp(target, "/pause") == 0) {
                v->body_len = 0;
                v->body_pieces = 0;
                v->body_end = false;
                v->body_error = 0;
                v->held = req;
                paf_http_request_set_abort_handler(req, on_abort, v);
                assert_int_equal(paf_http_request_read_body(req, on_body, v), 0);
                return;
        }
        if (strcmp(target, "/big") == 0) {
                size_t n = 8 * 1024 * 1024;
                char *b = calloc(1, n);
                assert_non_null(b);
                assert_int_equal(paf_http_respond(req, 200, NULL, b, n), 0);
                free(b);
                return;
        }
        if (strcmp(target, "/pattern") == 0) {
                /* One write that a slow reader keeps in progress for long. */
                char *b = malloc(PATTERN_SIZE);
                assert_non_null(b);
                fill_pattern(b, PATTERN_SIZE);
                assert_int_equal(paf_http_respond(req, 200, NULL, b, PATTERN_SIZE), 0);
                free(b);
                return;
        }
        if (strncmp(target, "/kb16", 5) == 0) {
                /* 16 KiB that start with the target: which answer it is. */
                enum { KB16 = 16 * 1024 };
                char *b = malloc(KB16);
                assert_non_null(b);
                memset(b, 'x', KB16);
                memcpy(b, target, strlen(target));
                assert_int_equal(paf_http_respond(req, 200, NULL, b, KB16), 0);
                free(b);
                return;
        }
        if (strcmp(target, "/noread") == 0) {
                assert_int_equal(paf_http_respond(req, 200, "text/plain", "no", 2), 0);
                return;
        }
        if (strcmp(target, "/stream") == 0) {
                paf_http_headers *h;
                assert_int_equal(paf_http_headers_new(&h), 0);
                assert_int_equal(paf_http_headers_add(h, "X-Kind", "stream"), 0);
                assert_int_equal(paf_http_response_start(req, 200, h, -1), 0);
                paf_http_headers_free(h);
                /* Errors the API reports. */
                assert_int_equal(paf_http_response_start(req, 200, NULL, -1), -EINVAL);
                v->stream_step = 0;
                assert_int_equal(paf_http_response_write(req, "hello ", 6, on_stream_written, v),
                                 0);
                assert_int_equal(paf_http_response_write(req, "x", 1, NULL, NULL), -EBUSY);
                return;
        }
        if (strcmp(target, "/fields") == 0) {
                /* The fields where the engine keeps them are the copy's. */
                const paf_http_headers *h = paf_http_request_get_headers(req);
                size_t n = paf_http_request_get_n_fields(req);
                assert_int_equal(n, paf_http_headers_count(h));
                /* Static: the write points into it until it completes. */
                static char text[512];
                text[0] = '\0';
                for (size_t i = 0; i < n; i++) {
                        const char *name, *value, *hn, *hv;
                        assert_int_equal(paf_http_request_get_field(req, i, &name, &value), 0);
                        assert_int_equal(paf_http_headers_get_nth(h, i, &hn, &hv), 0);
                        assert_string_equal(name, hn);
                        assert_string_equal(value, hv);
                        size_t k = strlen(text);
                        snprintf(text + k, sizeof(text) - k, "%s=%s;", name, value);
                }
                assert_int_equal(paf_http_request_get_field(req, n, NULL, NULL), -ENOENT);
                /* Handler fields the engine owns go, the others stay, whatever
                 * their length. */
                paf_http_headers *out = NULL;
                assert_int_equal(paf_http_headers_new(&out), 0);
                assert_int_equal(paf_http_headers_add(out, "Vary", "Accept"), 0);
                assert_int_equal(paf_http_headers_add(out, "Date", "Thu, 01 Jan 1970 00:00:00 GMT"),
                                 0);
                assert_int_equal(paf_http_headers_add(out, "Transfer-Encoding", "gzip"), 0);
                assert_int_equal(paf_http_headers_add(out, "Content-Length", "999"), 0);
                assert_int_equal(paf_http_headers_add(out, "X-Twelve-Ch", "12"), 0);
                assert_int_equal(paf_http_headers_add(out, "Server-Timing", "x"), 0);
                assert_int_equal(paf_http_response_start(req, 200, out, (int64_t)strlen(text)), 0);
                paf_http_headers_free(out);
                assert_int_equal(paf_http_response_write(req, text, strlen(text), NULL, NULL), 0);
                assert_int_equal(paf_http_response_finish(req, NULL), 0);
                return;
        }
        if (strcmp(target, "/cl") == 0) {
                assert_int_equal(paf_http_response_start(req, 200, NULL, 5), 0);
                assert_int_equal(paf_http_response_write(req, "toolong", 7, NULL, NULL), -EINVAL);
                assert_int_equal(paf_http_response_write(req, "hello", 5, NULL, NULL), 0);
                assert_int_equal(paf_http_response_finish(req, NULL), 0);
                return;
        }
        if (strcmp(target, "/nocontent") == 0) {
                assert_int_equal(paf_http_respond(req, 204, NULL, "x", 1), -EINVAL);
                assert_int_equal(paf_http_respond(req, 204, NULL, NULL, 0), 0);
                return;
        }
        if (strcmp(target, "/upgrade") == 0) {
                paf_http_headers *h;
                assert_int_equal(paf_http_headers_new(&h), 0);
                assert_int_equal(paf_http_headers_add(h, "Connection", "Upgrade"), 0);
                assert_int_equal(paf_http_headers_add(h, "Upgrade", "test"), 0);
                assert_int_equal(paf_http_request_upgrade(req, h, &v->upgraded), 0);
                paf_http_headers_free(h);
                return;
        }
        /* Everything else: the target as the body. */
        assert_int_equal(paf_http_respond(req, 200, "text/plain", target, strlen(target)), 0);
}

static void on_stream_written(paf_http_request *req, int error, void *userdata) {
        env *v = userdata;
        assert_int_equal(error, 0);
        v->stream_step++;
        if (v->stream_step == 1) {
                assert_int_equal(paf_http_response_write(req, "world", 5, on_stream_written, v), 0);
                return;
        }
        paf_http_headers *t;
        assert_int_equal(paf_http_headers_new(&t), 0);
        assert_int_equal(paf_http_headers_add(t, "X-Checksum", "abc"), 0);
        assert_int_equal(paf_http_response_finish(req, t), 0);
        paf_http_headers_free(t);
        assert_int_equal(paf_http_response_write(req, "late", 4, NULL, NULL), -EINVAL);
}

static void on_body(paf_http_request *req, const void *data, size_t len, int error,
                    void *userdata) {
        env *v = userdata;
        if (error < 0) {
                v->body_error = error;
                return;
        }
        if (len > 0) {
                v->body_pieces++;
                size_t room = sizeof(v->body) - v->body_len;
                memcpy(v->body + v->body_len, data, len < room ? len : room);
                v->body_len += len < room ? len : room;
                if (strcmp(paf_http_request_get_target(req), "/pause") == 0)
                        v->body_len = v->body_len > 1024 ? 1024 : v->body_len;
                if (v->pause_once && !v->paused) {
                        v->paused = true;
                        assert_int_equal(paf_http_request_pause_body(req), 0);
                }
                return;
        }
        v->body_end = true;
        v->held = NULL;
        char out[70000];
        size_t n = (size_t)snprintf(out, sizeof(out), "%zu|", v->body_len);
        memcpy(out + n, v->body, v->body_len);
        n += v->body_len;
        const paf_http_headers *t = paf_http_request_get_trailers(req);
        for (size_t i = 0; i < paf_http_headers_count(t); i++) {
                const char *name, *value;
                assert_int_equal(paf_http_headers_get_nth(t, i, &name, &value), 0);
                n += (size_t)snprintf(out + n, sizeof(out) - n, "|%s=%s", name, value);
        }
        assert_int_equal(paf_http_respond(req, 200, "application/octet-stream", out, n), 0);
}

static int setup(void **state) {
        env *v = calloc(1, sizeof(*v));
        assert_non_null(v);
        v->fds_before = count_fds();
        assert_int_equal(sd_event_new(&v->event), 0);
        assert_int_equal(paf_http_server_new(v->event, on_handler, on_error, v, &v->server), 0);
        v->finish_in_abort = true;
        *state = v;
        return 0;
}

static void run_env_for(env *v, unsigned ms);

static int teardown(void **state) {
        env *v = *state;
        if (v->held) {
                paf_http_respond(v->held, 500, NULL, NULL, 0);
                v->held = NULL;
        }
        if (v->upgraded)
                paf_flow_close(v->upgraded, NULL, NULL);
        v->timer = sd_event_source_disable_unref(v->timer);
        paf_http_server_free(v->server);
        for (size_t i = 0; i < v->n_clients; i++) {
                if (v->clients[i]->fd >= 0)
                        close(v->clients[i]->fd);
                free(v->clients[i]->buf);
                free(v->clients[i]);
        }
        v->n_clients = 0;
        run_env_for(v, 20);
        sd_event_unref(v->event);
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

static void set_limits(env *v, void (*change)(paf_http_limits *l)) {
        paf_http_limits l;
        assert_int_equal(paf_http_limits_load(&l, NULL), 0);
        change(&l);
        assert_int_equal(paf_http_server_set_limits(v->server, &l), 0);
}

/* sndbuf > 0: the server side's send buffer, small so that a big response
 * waits on the client's reading rather than sitting in the kernel. */
static client *client_new_sndbuf(env *v, int sndbuf) {
        int fds[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        if (sndbuf > 0)
                assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)),
                                 0);
        assert_true(v->n_clients < MAX_CLIENTS);
        client *c = calloc(1, sizeof(*c));
        assert_non_null(c);
        c->buf = malloc(CLIENT_BUF);
        assert_non_null(c->buf);
        c->fd = fds[1];
        assert_int_equal(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
        paf_flow *flow;
        assert_int_equal(paf_socket_flow_new(v->event, fds[0], "unix", &flow), 0);
        assert_int_equal(paf_http_server_add_flow(v->server, flow), 0);
        v->clients[v->n_clients++] = c;
        return c;
}

static client *client_new(env *v) {
        return client_new_sndbuf(v, 0);
}

/* A flow over the server's socket flow that counts the writes the core
 * hands it: what the engine's flow would give its transport (one sendmsg
 * each, for a socket). */
typedef struct count_flow {
        paf_flow *flow, *inner;
        unsigned *writes;
        bool closed;
} count_flow;

static void count_on_inner_read(paf_flow *inner, const void *data, size_t len, int error,
                                void *userdata) {
        (void)inner;
        count_flow *cf = userdata;
        paf_flow_deliver(cf->flow, data, len, error);
}

static int count_read_start(paf_flow *flow) {
        count_flow *cf = paf_flow_get_impl(flow);
        return paf_flow_read_start(cf->inner, count_on_inner_read, cf);
}

static int count_read_stop(paf_flow *flow) {
        count_flow *cf = paf_flow_get_impl(flow);
        return paf_flow_read_stop(cf->inner);
}

static void count_on_inner_write(paf_flow *inner, int error, void *userdata) {
        (void)inner;
        count_flow *cf = userdata;
        if (!cf->closed)
                paf_flow_write_done(cf->flow, error);
}

static int count_write(paf_flow *flow, const struct iovec *iov, size_t n_iov) {
        count_flow *cf = paf_flow_get_impl(flow);
        (*cf->writes)++;
        return paf_flow_write(cf->inner, iov, n_iov, count_on_inner_write, cf);
}

static int count_shutdown(paf_flow *flow) {
        count_flow *cf = paf_flow_get_impl(flow);
        return paf_flow_shutdown(cf->inner, NULL, NULL);
}

static void count_on_inner_closed(paf_flow *inner, void *userdata) {
        (void)inner;
        free(userdata);
}

static void count_close(paf_flow *flow) {
        count_flow *cf = paf_flow_get_impl(flow);
        cf->closed = true;
        paf_flow_close(cf->inner, count_on_inner_closed, cf);
}

static int count_query(paf_flow *flow, int what, void *ret, size_t size) {
        count_flow *cf = paf_flow_get_impl(flow);
        return paf_flow_query(cf->inner, what, ret, size);
}

static const paf_flow_ops count_flow_ops = {
        .struct_size = sizeof(paf_flow_ops),
        .read_start = count_read_start,
        .read_stop = count_read_stop,
        .write = count_write,
        .shutdown = count_shutdown,
        .close = count_close,
        .query = count_query,
};

/* A client whose server side counts its writes into *writes. */
static client *client_new_counted(env *v, int sndbuf, unsigned *writes) {
        int fds[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        if (sndbuf > 0)
                assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)),
                                 0);
        assert_true(v->n_clients < MAX_CLIENTS);
        client *c = calloc(1, sizeof(*c));
        assert_non_null(c);
        c->buf = malloc(CLIENT_BUF);
        assert_non_null(c->buf);
        c->fd = fds[1];
        assert_int_equal(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
        count_flow *cf = calloc(1, sizeof(*cf));
        assert_non_null(cf);
        cf->writes = writes;
        assert_int_equal(paf_socket_flow_new(v->event, fds[0], "unix", &cf->inner), 0);
        assert_int_equal(
                paf_flow_new(v->event, &count_flow_ops, cf, "count", "peer", "local", &cf->flow),
                0);
        assert_int_equal(paf_http_server_add_flow(v->server, cf->flow), 0);
        v->clients[v->n_clients++] = c;
        return c;
}

static void client_pump(client *c) {
        if (c->fd < 0 || c->eof || c->no_pump)
                return;
        for (int i = 0; i < 64; i++) {
                if (c->len == CLIENT_BUF)
                        return;
                ssize_t n = read(c->fd, c->buf + c->len, CLIENT_BUF - c->len);
                if (n > 0) {
                        c->len += (size_t)n;
                        continue;
                }
                if (n == 0 || (errno != EAGAIN && errno != EINTR))
                        c->eof = true;
                return;
        }
}

static void pump_all(env *v) {
        for (size_t i = 0; i < v->n_clients; i++)
                client_pump(v->clients[i]);
}

static void run_env_for(env *v, unsigned ms) {
        uint64_t end = now_ms() + ms;
        while (now_ms() < end) {
                assert_true(sd_event_run(v->event, 2 * 1000) >= 0);
                pump_all(v);
        }
}

static void client_send_n(client *c, const char *data, size_t len) {
        size_t off = 0;
        uint64_t end = now_ms() + 2000;
        while (off < len && now_ms() < end) {
                ssize_t n = write(c->fd, data + off, len - off);
                if (n > 0)
                        off += (size_t)n;
                else if (errno == EAGAIN) {
                        struct pollfd p = {.fd = c->fd, .events = POLLOUT};
                        (void)poll(&p, 1, 10);
                } else
                        break;
        }
        assert_int_equal(off, len);
}

static void client_send(client *c, const char *s) {
        client_send_n(c, s, strlen(s));
}

/* ---- a small response parser, for what the client received ---- */

typedef struct resp {
        int status;
        char head[8192]; /* status line and fields */
        char body[70000];
        size_t body_len;
        char trailers[1024];
} resp;

static const char *find_crlfcrlf(const char *b, size_t n) {
        for (size_t i = 0; i + 3 < n; i++)
                if (memcmp(b + i, "\r\n\r\n", 4) == 0)
                        return b + i;
        return NULL;
}

/* The value of a field in a head (first one), or NULL. */
static const char *field(const char *head, const char *name, char *out, size_t size) {
        const char *p = strstr(head, "\r\n");
        size_t n = strlen(name);
        while (p && p[2]) {
                p += 2;
                if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
                        const char *v = p + n + 1;
                        while (*v == ' ')
                                v++;
                        const char *e = strstr(v, "\r\n");
                        size_t len = e ? (size_t)(e - v) : strlen(v);
                        snprintf(out, size, "%.*s", (int)len, v);
                        return out;
                }
                p = strstr(p, "\r\n");
        }
        return NULL;
}

static size_t count_fields(const char *head, const char *name) {
        size_t count = 0, n = strlen(name);
        for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p, "\r\n")) {
                p += 2;
                if (strncasecmp(p, name, n) == 0 && p[n] == ':')
                        count++;
        }
        return count;
}

/* Parse one response at b; 0 when incomplete. head_only: answer to HEAD. */
static size_t parse_resp(const char *b, size_t n, bool head_only, bool eof, resp *r) {
        memset(r, 0, sizeof(*r));
        const char *end = find_crlfcrlf(b, n);
        if (!end)
                return 0;
        size_t hlen = (size_t)(end - b) + 2;
        assert_true(hlen < sizeof(r->head));
        memcpy(r->head, b, hlen);
        r->head[hlen] = 0;
        assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
        size_t pos = hlen + 2;
        char v[64];
        if (head_only || r->status < 200 || r->status == 204 || r->status == 304)
                return pos;
        if (field(r->head, "Content-Length", v, sizeof(v))) {
                size_t cl = strtoul(v, NULL, 10);
                if (n - pos < cl)
                        return 0;
                assert_true(cl <= sizeof(r->body));
                memcpy(r->body, b + pos, cl);
                r->body_len = cl;
                return pos + cl;
        }
        if (field(r->head, "Transfer-Encoding", v, sizeof(v))) {
                assert_string_equal(v, "chunked");
                for (;;) {
                        const char *le = memmem(b + pos, n - pos, "\r\n", 2);
                        if (!le)
                                return 0;
                        size_t size = strtoul(b + pos, NULL, 16);
                        pos = (size_t)(le - b) + 2;
                        if (size == 0)
                                break;
                        if (n - pos < size + 2)
                                return 0;
                        memcpy(r->body + r->body_len, b + pos, size);
                        r->body_len += size;
                        pos += size + 2;
                }
                /* Trailers, then an empty line. */
                size_t tstart = pos;
                for (;;) {
                        const char *le = memmem(b + pos, n - pos, "\r\n", 2);
                        if (!le)
                                return 0;
                        size_t l = (size_t)(le - (b + pos));
                        pos += l + 2;
                        if (l == 0)
                                break;
                }
                snprintf(r->trailers, sizeof(r->trailers), "%.*s", (int)(pos - tstart), b + tstart);
                return pos;
        }
        /* Delimited by the close. */
        if (!eof)
                return 0;
        memcpy(r->body, b + pos, n - pos);
        r->body_len = n - pos;
        return n;
}

/* Run until the client has one more response (or fail). */
static void next_resp(env *v, client *c, bool head_only, resp *r) {
        uint64_t end = now_ms() + 3000;
        for (;;) {
                size_t used = parse_resp(c->buf + c->off, c->len - c->off, head_only, c->eof, r);
                if (used) {
                        c->off += used;
                        return;
                }
                if (now_ms() > end || (c->eof && c->len == c->off))
                        fail_msg("no complete response (have %zu bytes, eof %d): %.*s",
                                 c->len - c->off, c->eof, (int)(c->len - c->off), c->buf + c->off);
                assert_true(sd_event_run(v->event, 2 * 1000) >= 0);
                pump_all(v);
        }
}

static bool wait_eof(env *v, client *c, unsigned ms) {
        uint64_t end = now_ms() + ms;
        while (!c->eof && now_ms() < end) {
                assert_true(sd_event_run(v->event, 2 * 1000) >= 0);
                pump_all(v);
        }
        return c->eof;
}

static void assert_body(resp *r, const char *s) {
        assert_int_equal(r->body_len, strlen(s));
        assert_memory_equal(r->body, s, r->body_len);
}

/* ---- tests ---- */

static void test_get(void **state) {
        env *v = *state;
        client *c = client_new(v);
        client_send(c, "GET /hello HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\n\r\n");
        resp r;
        next_resp(v, c, false, &r);
        assert_int_equal(r.status, 200);
        assert_body(&r, "/hello");
        char val[128];
        assert_non_null(field(r.head, "Content-Length", val, sizeof(val)));
        assert_string_equal(val, "6");
        assert_non_null(field(r.head, "Date", val, sizeof(val)));
        assert_int_equal(strlen(val), 29);
        assert_true(strstr(val, " GMT") != NULL);
        assert_non_null(field(r.head, "Server", val, sizeof(val)));
        assert_true(strncmp(val, "paf/", 4) == 0);
        assert_non_null(field(r.head, "Content-Type", val, sizeof(val)));
        assert_string_equal(val, "text/plain");
        assert_null(field(r.head, "Connection", val, sizeof(val)));
        assert_null(field(r.head, "Transfer-Encoding", val, sizeof(val)));
        assert_int_equal(count_fields(r.head, "Date"), 1);
        assert_int_equal(count_fields(r.head, "Server"), 1);
        run_env_for(v, 20);
        assert_false(c->eof);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 1);
        assert_int_equal(paf_http_server_get_n_requests(v->server), 1);
        assert_int_equal(v->n_reports, 0);
}

static void test_fields(void **state) {
        env *v = *state;
        client *c = client_new(v);
        /* Tabs inside and obs-text in long values are fine (they are
         * scanned by the word for control characters). */
        client_send(c, "GET /fields HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-b:  two \r\nX-A: 3\r\n"
                       "X-T: 0123456\t89abcdef\tghij\r\nX-U: caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9\r\n\r\n");
        resp r;
        next_resp(v, c, false, &r);
        assert_int_equal(r.status, 200);
        assert_body(&r, "Host=x;X-A=1;x-b=two;X-A=3;X-T=0123456\t89abcdef\tghij;"
                        "X-U=caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9;");
        char val[128];
        assert_non_null(field(r.head, "Vary", val, sizeof(val)));
        assert_string_equal(val, "Accept");
        assert_non_null(field(r.head, "Date", val, sizeof(val)));
        assert_string_equal(val, "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_int_equal(count_fields(r.head, "Date"), 1);
        assert_null(field(r.head, "Transfer-Encoding", val, sizeof(val)));
        assert_int_equal(count_fields(r.head, "Content-Length"), 1);
        assert_non_null(field(r.head, "X-Twelve-Ch", val, sizeof(val)));
        assert_non_null(field(r.head, "Server-Timing", val, sizeof(val)));
        assert_int_equal(count_fields(r.head, "Server"), 1);
}

static void test_keep_alive(void **state) {
        env *v = *state;
        client *c = client_new(v);
        resp r;
        for (int i = 0; i < 3; i++) {
                char req[128], want[32];
                snprintf(want, sizeof(want), "/k%d", i);
                snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", want);
                client_send(c, req);
                next_resp(v, c, false, &r);
                assert_int_equal(r.status, 200);
                assert_body(&r, want);
        }
        assert_false(c->eof);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 1);
        assert_int_equal(paf_http_server_get_n_requests(v->server), 3);
}

static int on_late_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        env *v = userdata;
        assert_non_null(v->held);
        paf_http_request *req = v->held;
        v->held = NULL;
        const char *b = v->late_body[0] ? v->late_body : "late";
        assert_int_equal(paf_http_respond(req, 200, "text/plain", b, strlen(b)), 0);
        return 0;
}

static void arm_late(env *v, unsigned ms) {
        v->timer = sd_event_source_disable_unref(v->timer);
        assert_int_equal(sd_event_add_time_relative(v->event, &v->timer, CLOCK_MONOTONIC,
                                                    ms * 1000ULL, 1000, on_late_timer, v),
                         0);
}

static void test_pipelining(void **state) {
        env *v = *state;
        client *c = client_new(v);
        arm_late(v, 60);
        client_send(c, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /third HTTP/1.1\r\nHost: x\r\n\r\n");
        run_env_for(v, 30);
        /* Nothing may overtake the late answer. */
        assert_int_equal(c->len, 0);
        assert_int_equal(v->n_handled, 1);
        resp r;
        next_resp(v, c, false, &r);
        assert_body(&r, "late");
        next_resp(v, c, false, &r);
        assert_body(&r, "/second");
        next_resp(v, c, false, &r);
        assert_body(&r, "/third");
        assert_int_equal(v->n_handled, 3);
        assert_false(c->eof);
}

static void test_head(void **state) {
        env *v = *state;
        client *c = client_new(v);
        resp get, head;
        char a[64], b[64];
        client_send(c, "GET /same HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resp(v, c, false, &get);
        client_send(c, "HEAD /same HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resp(v, c, true, &head);
        assert_int_equal(head.status, 200);
        assert_string_equal(field(get.head, "Content-Length", a, sizeof(a)),
                            field(head.head, "Content-Length", b, sizeof(b)));
        assert_string_equal(field(get.head, "Content-Type", a, sizeof(a)),
                            field(head.head, "Content-Type", b, sizeof(b)));
        /* start/write/finish for HEAD: the write completes, no body bytes. */
        client_send(c, "HEAD /cl HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resp(v, c, true, &head);
        assert_string_equal(field(head.head, "Content-Length", a, sizeof(a)), "5");
        /* Streaming HEAD: the same chunked header, no chunks. */
        client_send(c, "HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resp(v, c, true, &head);
        assert_string_equal(field(head.head, "Transfer-Encoding", a, sizeof(a)), "chunked");
        /* No stray body bytes: the next response follows at once. */
        client_send(c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resp(v, c, false, &get);
        assert_body(&get, "/after");
        run_env_for(v, 20);
        assert_int_equal(c->len, c->off);
        /* 204: no body, no framing. */
        client_send(c, "GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resp(v, c, false, &get);
        assert_int_equal(get.status, 204);
        assert_null(field(get.head, "Content-Length", a, sizeof(a)));
        assert_null(field(get.head, "Transfer-Encoding", a, sizeof(a)));
        assert_false(c->eof);
}

static void test_post_length(void **state) {
        env *v = *state;
        client *c = client_new(v);
        client_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello");
        run_env_for(v, 20);
        client_send(c, " world");
        resp r;
        next_resp(v, c, false, &r);
        assert_int_equal(r.status, 200);
        assert_body(&r, "11|hello world");
        /* The connection goes on. */
        client_send(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resp(v, c, false, &r);
        assert_body(&r, "/next");
}

static void test_post_chunked(void **state) {
        env *v = *state;
        client *c = client_new(v);
        client_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n");
        run_env_for(v, 20);
        client_send(c, "6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\nX-Other: b\r\n\r\n");
        resp r;
        next_resp(v, c, false, &r);
        assert_int_equal(r.status, 200);
        assert_body(&r, "11|hello world|X-Sum=42|X-Other=b");
        client_send(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resp(v, c, false, &r);
        assert_body(&r, "/next");
}

static void test_body_backpressure(void **state) {
        env *v = *state;
        client *c = client_new(v);
        const size_t total = 16 * 1024 * 1024;
        char head[128];
        snprintf(head, sizeof(head),
                 "POST /pause HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", total);
        client_send(c, head);
        v->pause_once = true;
        char *chunk = malloc(64 * 1024);
        assert_non_null(chunk);
        memset(chunk, 'b', 64 * 1024);
        size_t sent = 0;
        /* Write as fast as the server takes it, for a while. */
        uint64_t end = now_ms() + 300;
        while (now_ms() < end && sent < total) {
                size_t n = total - sent < 64 * 1024 ? total - sent : 64 * 1024;
                ssize_t k = write(c->fd, chunk, n);
                if (k > 0)
                        sent += (size_t)k;
                assert_true(sd_event_run(v->event, 1000) >= 0);
        }
        assert_true(v->paused);
        size_t pieces = v->body_pieces;
        /* Paused: the server reads no more, the client's writes stall. */
        size_t sent_before = sent;
        end = now_ms() + 200;
        while (now_ms() < end) {
                ssize_t k = write(c->fd, chunk, 64 * 1024);
                if (k > 0)
                        sent += (size_t)k;
                assert_true(sd_event_run(v->event, 1000) >= 0);
        }
        assert_true(sent < total);
        assert_true(sent - sent_before < 64 * 1024);
        assert_int_equal(v->body_pieces, pieces);
        /* Resume: everything arrives. */
        assert_int_equal(paf_http_request_resume_body(v->held), 0);
        end = now_ms() + 10000;
        while (sent < total && now_ms() < end) {
                size_t n = total - sent < 64 * 1024 ? total - sent : 64 * 1024;
                ssize_t k = write(c->fd, chunk, n);
                if (k > 0)
                        sent += (size_t)k;
                assert_true(sd_event_run(v->event, 1000) >= 0);
        }
        free(chunk);
        resp r;
        next_resp(v, c, false, &r);
        assert_int_equal(r.status, 200);
        assert_true(v->body_end);
        assert_true(strncmp(r.body, "1024|", 5) == 0);
}

static void test_continue(void **state) {
        env *v = *state;
        resp r;
        /* read_body right away: 100 Continue, then the answer. */
        client *c = client_new(v);
        client_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                       "Content-Length: 4\r\n\r\n");
        next_resp(v, c, false, &r);
        assert_int_equal(r.status, 100);
        client_send(c, "data");
        next_resp(v, c, false, &r);
        assert_int_equal(r.status, 200);
        assert_body(&r, "4|data");

        /* A handler that answers without reading: no 100, and the connection
         * closes after the answer (the client may never send the body). */
        client *d = client_new(v);
        client_send(d, "POST /noread HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                       "Content-Length: 100000\r\n\r\n");
        next_resp(v, d, false, &r);
        assert_int_equal(r.status, 200);
        char val[64];
        assert_string_equal(field(r.head, "Connection", val, sizeof(val)), "close");
        assert_true(wait_eof(v, d, 3000));
        assert_int_equal(d->off, d->len);

        /* A handler that reads later: no 100 before it does. */
        client *e = client_new(v);
        v->late_read_body = true;
        client_send(e, "POST /late HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                       "Content-Length: 2\r\n\r\n");
        run_env_for(v, 50);
        assert_non_null(v->held);
        assert_int_equal(e->len, 0);
        paf_http_request *req = v->held;
        v->body_len = 0;
        v->body_end = false;
        assert_int_equal(paf_http_request_read_body(req, on_body, v), 0);
        next_resp(v, e, false, &r);
        assert_int_equal(r.status, 100);
        client_send(e, "ok");
        next_resp(v, e, false, &r);
        assert_body(&r, "2|ok");
}

static void test_discard_body(void **state) {
        env *v = *state;
        client *c = client_new(v);
        /* A small unread body is drained and the connection kept. */
        client_send(c, "POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
                       "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
        resp r;
        next_resp(v, c, false, &r);
        assert_body(&r, "no");
        next_resp(v, c, false, &r);
        assert_body(&r, "/after");
        /* A large one is not: the answer says close. */
        client_send(c, "POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc");
        next_resp(v, c, false, &r);
        char val[64];
        assert_string_equal(field(r.head, "Connection", val, sizeof(val)), "close");
        assert_true(wait_eof(v, c, 3000));
}

static void test_http10(void **state) {
        env *v = *state;
        resp r;
        char val[64];
        client *c = client_new(v);
        client_send(c, "GET /old HTTP/1.0\r\n\r\n");
        next_resp(v, c, false, &r);
        assert_body(&r, "/old");
        assert_string_equal(field(r.head, "Connection", val, sizeof(val)), "close");
        assert_true(wait_eof(v, c, 3000));

        client *k = client_new(v);
        client_send(k, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        next_resp(v, k, false, &r);
        assert_body(&r, "/a");
        assert_string_equal(field(r.head, "Connection", val, sizeof(val)), "keep-alive");
        client_send(k, "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        next_resp(v, k, false, &r);
        assert_body(&r, "/b");
        run_env_for(v, 20);
        assert_false(k->eof);

        /* Streaming to HTTP/1.0: no chunks, the close ends the body. */
        client *s = client_new(v);
        client_send(s, "GET /stream HTTP/1.0\r\n\r\n");
        assert_true(wait_eof(v, s, 3000));
        next_resp(v, s, false, &r);
        assert_null(field(r.head, "Transfer-Encoding", val, sizeof(val)));
        assert_body(&r, "hello world");
}

static void test_connection_close(void **state) {
        env *v = *state;
        client *c = client_new(v);
        client_send(c, "GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       "GET /never HTTP/1.1\r\nHost: x\r\n\r\n");
        resp r;
        next_resp(v, c, false, &r);
        assert_body(&r, "/bye");
        char val[64];
        assert_string_equal(field(r.head, "Connection", val, sizeof(val)), "close");
        assert_true(wait_eof(v, c, 3000));
        assert_int_equal(c->off, c->len);
        assert_int_equal(v->n_handled, 1);
        close(c->fd);
        c->fd = -1;
        run_env_for(v, 20);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 0);
}

static void test_chunked_response(void **state) {
        env *v = *state;
        client *c = client_new(v);
        client_send(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
        resp r;
        next_resp(v, c, false, &r);
        char val[64];
        assert_string_equal(field(r.head, "Transfer-Encoding", val, sizeof(val)), "chunked");
        assert_string_equal(field(r.head, "X-Kind", val, sizeof(val)), "stream");
        assert_null(field(r.head, "Content-Length", val, sizeof(val)));
        assert_body(&r, "hello world");
        assert_string_equal(r.trailers, "X-Checksum: abc\r\n\r\n");
        client_send(c, "GET /cl HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resp(v, c, false, &r);
        assert_body(&r, "hello");
}

static void on_up_read(paf_flow *flow, const void *data, size_t len, int error, void *userdata) {
        (void)flow;
        env *v = userdata;
        assert_int_equal(error, 0);
        if (len > 0 && v->up_len + len < sizeof(v->up_data)) {
                memcpy(v->up_data + v->up_len, data, len);
                v->up_len += len;
        }
}

static void test_upgrade(void **state) {
        env *v = *state;
        client *c = client_new(v);
        client_send(c, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                       "Upgrade: test\r\n\r\nEARLY");
        resp r;
        next_resp(v, c, false, &r);
        assert_int_equal(r.status, 101);
        char val[64];
        assert_string_equal(field(r.head, "Upgrade", val, sizeof(val)), "test");
        assert_non_null(v->upgraded);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 0);
        assert_int_equal(paf_flow_read_start(v->upgraded, on_up_read, v), 0);
        run_env_for(v, 30);
        client_send(c, "+MORE");
        uint64_t end = now_ms() + 2000;
        while (v->up_len < 10 && now_ms() < end)
                run_env_for(v, 5);
        assert_int_equal(v->up_len, 10);
        assert_memory_equal(v->up_data, "EARLY+MORE", 10);
        struct iovec iov = {(void *)"PONG", 4};
        assert_int_equal(paf_flow_write(v->upgraded, &iov, 1, NULL, NULL), 0);
        end = now_ms() + 2000;
        while (c->len - c->off < 4 && now_ms() < end)
                run_env_for(v, 5);
        assert_memory_equal(c->buf + c->off, "PONG", 4);

        /* Without early bytes: the very flow. */
        client *d = client_new(v);
        paf_flow *first = v->upgraded;
        v->upgraded = NULL;
        paf_flow_close(first, NULL, NULL);
        client_send(d, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                       "Upgrade: test\r\n\r\n");
        next_resp(v, d, false, &r);
        assert_int_equal(r.status, 101);
        assert_non_null(v->upgraded);
        assert_string_equal(paf_flow_get_protocol(v->upgraded), "unix");
}

static void lim_small_headers(paf_http_limits *l) {
        l->max_header_bytes = 1024;
        l->max_headers = 8;
        l->max_body = 100;
}

static void expect_rejected(env *v, client *c, int status) {
        resp r;
        next_resp(v, c, false, &r);
        assert_int_equal(r.status, status);
        char val[64];
        assert_string_equal(field(r.head, "Connection", val, sizeof(val)), "close");
        assert_true(wait_eof(v, c, 3000));
}

static void test_limits(void **state) {
        env *v = *state;
        set_limits(v, lim_small_headers);
        char big[4096];
        snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %01999d\r\n\r\n", 0);
        client *a = client_new(v);
        client_send(a, big);
        expect_rejected(v, a, 431);
        assert_int_equal(v->reports[0].status, 431);
        assert_non_null(strstr(v->reports[0].reason, "too large"));
        assert_non_null(strstr(v->reports[0].reason, "> 1024"));

        client *b = client_new(v);
        client_send(b, "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n"
                       "F: 1\r\nG: 1\r\nH: 1\r\nI: 1\r\n\r\n");
        expect_rejected(v, b, 431);
        assert_non_null(strstr(v->reports[1].reason, "too many header fields"));

        client *c = client_new(v);
        client_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
        expect_rejected(v, c, 413);
        assert_int_equal(v->n_handled, 0);
        assert_non_null(strstr(v->reports[2].reason, "1000 bytes > 100"));

        client *d = client_new(v);
        client_send(d, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        char chunk[80];
        memset(chunk, 'c', 60);
        for (int i = 0; i < 3; i++) {
                char line[16];
                snprintf(line, sizeof(line), "3c\r\n");
                client_send(d, line);
                client_send_n(d, chunk, 60);
                client_send(d, "\r\n");
                run_env_for(v, 5);
        }
        expect_rejected(v, d, 413);
        /* The handler's reader learned it. */
        assert_int_equal(v->body_error, -EFBIG);
        assert_int_equal(v->n_aborts, 1);
        assert_null(v->held);
        assert_int_equal(v->reports[3].status, 413);

        /* Exactly at the limits is fine. */
        client *e = client_new(v);
        char body[101];
        memset(body, 'e', 100);
        body[100] = 0;
        client_send(e, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
        client_send(e, body);
        resp r;
        next_resp(v, e, false, &r);
        assert_int_equal(r.status, 200);
}

static void lim_short_timeouts(paf_http_limits *l) {
        l->header_timeout_usec = 200 * 1000;
        l->idle_timeout_usec = 300 * 1000;
        l->body_timeout_usec = 200 * 1000;
        l->write_timeout_usec = 500 * 1000;
}

static void test_timeouts(void **state) {
        env *v = *state;
        set_limits(v, lim_short_timeouts);
        /* Slowloris: a byte every 40 ms still ends at the header timeout. */
        client *a = client_new(v);
        const char *req =
                "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        uint64_t start = now_ms();
        for (size_t i = 0; req[i] && !a->eof; i++) {
                char b[2] = {req[i], 0};
                if (write(a->fd, b, 1) < 0)
                        break;
                run_env_for(v, 40);
        }
        assert_true(wait_eof(v, a, 2000));
        uint64_t took = now_ms() - start;
        assert_true(took >= 180 && took < 1500);
        assert_int_equal(a->len, 0);
        assert_int_equal(v->reports[0].status, 408);
        assert_string_equal(v->reports[0].reason, "header timeout (200 ms)");

        /* Idle: answered, then closed after the idle timeout. */
        client *b = client_new(v);
        client_send(b, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
        resp r;
        next_resp(v, b, false, &r);
        start = now_ms();
        run_env_for(v, 150);
        assert_false(b->eof);
        assert_true(wait_eof(v, b, 2000));
        took = now_ms() - start;
        assert_true(took >= 250 && took < 1500);
        assert_int_equal(v->reports[1].status, 0);
        assert_string_equal(v->reports[1].reason, "idle timeout (300 ms)");

        /* Body: the client stops sending half way. */
        client *c = client_new(v);
        client_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
        assert_true(wait_eof(v, c, 2000));
        assert_int_equal(v->reports[2].status, 408);
        assert_string_equal(v->reports[2].reason, "body timeout (200 ms)");
        assert_int_equal(v->body_error, -ETIMEDOUT);
        assert_int_equal(v->n_aborts, 1);

        /* A client that does not read: the write makes no progress. */
        client *w = client_new(v);
        client_send(w, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
        uint64_t wend = now_ms() + 3000;
        while (v->n_reports < 4 && now_ms() < wend)
                assert_true(sd_event_run(v->event, 5 * 1000) >= 0);
        assert_int_equal(v->reports[3].status, 0);
        assert_string_equal(v->reports[3].reason, "write timeout (500 ms)");
        assert_true(wait_eof(v, w, 1000) || w->len > 0);

        /* A silent connection: the header timeout runs from the accept. */
        client *d = client_new(v);
        assert_true(wait_eof(v, d, 2000));
        assert_int_equal(v->reports[4].status, 408);
        run_env_for(v, 20);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 0);
}

typedef struct bad_case {
        const char *what;
        const char *request;
        size_t len; /* 0: strlen */
        int status;
} bad_case;

static const bad_case bad_cases[] = {
        {"CL with TE",
         "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: "
         "chunked\r\n\r\n0\r\n\r\n",
         0, 400},
        {"TE with CL",
         "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
         0, 400},
        {"duplicate CL",
         "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 0, 400},
        {"differing CL",
         "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 0,
         400},
        {"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 0, 400},
        {"negative CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 0, 400},
        {"CL with sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 0, 400},
        {"huge CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
         0, 400},
        {"TE gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc", 0, 400},
        {"TE chunked then gzip",
         "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 0, 400},
        {"TE chunked twice",
         "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
         "chunked\r\n\r\n0\r\n\r\n",
         0, 400},
        {"TE in HTTP/1.0",
         "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 400},
        {"bad chunk size",
         "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
         "chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
         0, 400},
        {"huge chunk size",
         "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
         "chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n",
         0, 400},
        {"chunk without CRLF",
         "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
         "chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
         0, 400},
        {"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 0, 400},
        {"obs-fold tab", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 0, 400},
        {"bare CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 0, 400},
        {"bare LF line", "GET / HTTP/1.1\nHost: x\n\n", 0, 400},
        {"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 37, 400},
        {"control char in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01z\r\n\r\n", 0, 400},
        /* Long values are scanned by the word: a control character at any
         * place of one, next to a tab (allowed) or not. */
        {"control char in a long value",
         "GET / HTTP/1.1\r\nHost: x\r\nX-A: 0123456789abcdef\x1f" "ghijklmnopqrstuv\r\n\r\n", 0, 400},
        {"control char after a tab",
         "GET / HTTP/1.1\r\nHost: x\r\nX-A: 01234567\t9abc\x02" "efghijklmnop\r\n\r\n", 0, 400},
        {"DEL in a long value",
         "GET / HTTP/1.1\r\nHost: x\r\nX-A: 0123456789abcd\x7f" "ghijklmnopqrstuvwxyz\r\n\r\n", 0, 400},
        {"DEL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fz\r\n\r\n", 0, 400},
        {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 0, 505},
        {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", 0, 505},
        {"HTTP/0.9 style", "GET / HTTP/0.9\r\nHost: x\r\n\r\n", 0, 505},
        {"garbage version", "GET / HTTX/1.1\r\nHost: x\r\n\r\n", 0, 400},
        {"missing Host", "GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 0, 400},
        {"double Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, 400},
        {"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400},
        {"control char in target", "GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400},
        {"bad method token", "G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400},
        {"lowercase method", "get / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400},
        {"header without colon", "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 0, 400},
        {"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", 0, 400},
        {"space in name", "GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", 0, 400},
        {"empty name", "GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n", 0, 400},
        {"leading whitespace line", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", 0, 400},
        {"no target", "GET HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400},
        {"binary garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, 400},
        {"too many headers",
         "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: "
         "1\r\nI: 1\r\nJ: 1\r\n\r\n",
         0, 431},
        {"CL over max body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 0, 413},
};

#define ELEMENTSOF_CASES (sizeof(bad_cases) / sizeof(bad_cases[0]))

static void lim_corpus(paf_http_limits *l) {
        l->max_headers = 10;
        l->max_body = 4096;
}

static void test_malformed(void **state) {
        env *v = *state;
        set_limits(v, lim_corpus);
        assert_true(ELEMENTSOF_CASES >= 30);
        client *good = client_new(v);
        resp r;
        for (size_t i = 0; i < ELEMENTSOF_CASES; i++) {
                const bad_case *bc = &bad_cases[i];
                size_t n_reports = v->n_reports;
                client *c = client_new(v);
                client_send_n(c, bc->request, bc->len ? bc->len : strlen(bc->request));
                uint64_t end = now_ms() + 3000;
                size_t used = 0;
                while (!used && now_ms() < end) {
                        used = parse_resp(c->buf, c->len, false, c->eof, &r);
                        if (!used)
                                run_env_for(v, 2);
                }
                if (!used)
                        fail_msg("%s: no response", bc->what);
                if (r.status != bc->status)
                        fail_msg("%s: status %d, want %d", bc->what, r.status, bc->status);
                char val[64];
                assert_string_equal(field(r.head, "Connection", val, sizeof(val)), "close");
                if (!wait_eof(v, c, 3000))
                        fail_msg("%s: not closed", bc->what);
                assert_int_equal(c->len, used); /* one answer, nothing more */
                assert_int_equal(v->n_reports, n_reports + 1);
                assert_int_equal(v->reports[n_reports].status, bc->status);
                assert_true(strlen(v->reports[n_reports].reason) > 0);
                /* The other connection is unaffected. */
                char req[128], want[32];
                snprintf(want, sizeof(want), "/good%zu", i);
                snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", want);
                client_send(good, req);
                next_resp(v, good, false, &r);
                assert_body(&r, want);
                close(c->fd);
                c->fd = -1;
        }
        /* The good ones, and the 3 bad bodies behind good headers. */
        assert_int_equal(v->n_handled, ELEMENTSOF_CASES + 3);
        assert_false(good->eof);
        run_env_for(v, 20);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 1);
}

/* A HEAD whose body turns out malformed: the 400 has a head and no body. */
static void test_malformed_head(void **state) {
        env *v = *state;
        set_limits(v, lim_corpus);
        client *c = client_new(v);
        client_send(c, "HEAD /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "zz\r\nabc\r\n0\r\n\r\n");
        resp r;
        size_t used = 0;
        uint64_t end = now_ms() + 3000;
        while (!used && now_ms() < end) {
                used = parse_resp(c->buf, c->len, true, c->eof, &r);
                if (!used)
                        run_env_for(v, 2);
        }
        assert_true(used > 0);
        assert_int_equal(r.status, 400);
        assert_true(wait_eof(v, c, 3000));
        /* Nothing after the head: before, "Bad Request\n" followed it. */
        assert_int_equal(c->len, used);
}

static void on_done(void *userdata) {
        env *v = userdata;
        v->n_done++;
}

static void test_graceful_stop(void **state) {
        env *v = *state;
        resp r;
        client *idle = client_new(v);
        client_send(idle, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resp(v, idle, false, &r);
        client *fresh = client_new(v);
        client *busy = client_new(v);
        client_send(busy, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n");
        run_env_for(v, 20);
        assert_non_null(v->held);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 3);

        assert_int_equal(paf_http_server_stop(v->server, on_done, v), 0);
        assert_int_equal(paf_http_server_stop(v->server, on_done, v), -EALREADY);
        assert_true(wait_eof(v, idle, 1000));
        assert_true(wait_eof(v, fresh, 1000));
        assert_false(busy->eof);
        assert_int_equal(v->n_done, 0);
        /* Nothing new is taken. */
        int fds[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        paf_flow *f;
        assert_int_equal(paf_socket_flow_new(v->event, fds[0], "unix", &f), 0);
        assert_int_equal(paf_http_server_add_flow(v->server, f), -ESHUTDOWN);
        close(fds[1]);

        arm_late(v, 10);
        next_resp(v, busy, false, &r);
        assert_body(&r, "late");
        char val[64];
        assert_string_equal(field(r.head, "Connection", val, sizeof(val)), "close");
        assert_true(wait_eof(v, busy, 3000));
        /* The server drains until the client closes too. */
        close(busy->fd);
        busy->fd = -1;
        run_env_for(v, 30);
        assert_int_equal(v->n_done, 1);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 0);
}

static void test_stop_empty(void **state) {
        env *v = *state;
        assert_int_equal(paf_http_server_stop(v->server, on_done, v), 0);
        assert_int_equal(v->n_done, 0); /* from the loop, not from inside */
        run_env_for(v, 20);
        assert_int_equal(v->n_done, 1);
}

static void test_abort(void **state) {
        env *v = *state;
        /* A reset: the client goes with a response unread (a unix socket
         * then resets). The handler releases the request from its abort
         * handler. */
        v->finish_in_abort = true;
        client *c = client_new(v);
        c->no_pump = true;
        client_send(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
        run_env_for(v, 20);
        assert_non_null(v->held);
        close(c->fd);
        c->fd = -1;
        run_env_for(v, 50);
        assert_int_equal(v->n_aborts, 1);
        assert_int_equal(v->abort_error, -ECONNRESET);
        assert_null(v->held);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 0);

        /* The handler answers later, to a connection that is gone. The end
         * of stream alone does not tell (a half-closed client still reads:
         * test_half_close); the write that fails does. */
        v->finish_in_abort = false;
        client *d = client_new(v);
        client_send(d, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
        run_env_for(v, 20);
        paf_http_request *req = v->held;
        assert_non_null(req);
        assert_int_equal(shutdown(d->fd, SHUT_RDWR), 0);
        run_env_for(v, 50);
        assert_int_equal(v->n_aborts, 1);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 1);
        assert_int_equal(paf_http_response_start(req, 200, NULL, -1), 0);
        assert_int_equal(paf_http_response_write(req, "x", 1, NULL, NULL), 0);
        run_env_for(v, 50);
        assert_int_equal(v->n_aborts, 2);
        assert_int_equal(v->abort_error, -EPIPE);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 0);
        assert_string_equal(paf_http_request_get_target(req), "/hold");
        assert_int_equal(paf_http_response_write(req, "y", 1, NULL, NULL), -ECONNRESET);
        assert_int_equal(paf_http_respond(req, 200, NULL, "x", 1), -ECONNRESET);
        v->held = NULL;

        /* Freeing the server with a request in a handler aborts it. */
        client *e = client_new(v);
        client_send(e, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
        run_env_for(v, 20);
        req = v->held;
        assert_non_null(req);
        v->server = paf_http_server_free(v->server);
        assert_int_equal(v->n_aborts, 3);
        assert_int_equal(v->abort_error, -ECANCELED);
        assert_int_equal(paf_http_response_finish(req, NULL), -ECONNRESET);
        v->held = NULL;
        assert_true(wait_eof(v, e, 1000));
}

static void test_listener(void **state) {
        env *v = *state;
        /* max_connections: accepting pauses at the limit, resumes below. */
        paf_http_limits l;
        assert_int_equal(paf_http_limits_load(&l, NULL), 0);
        l.max_connections = 1;
        assert_int_equal(paf_http_server_set_limits(v->server, &l), 0);
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0);
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        int len = snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1, "paf-test-server-%d",
                           (int)getpid());
        socklen_t slen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sun, slen), 0);
        assert_int_equal(listen(lfd, 16), 0);
        paf_listener *lis;
        assert_int_equal(paf_socket_listener_new(v->event, lfd, "unix", &lis), 0);
        assert_int_equal(paf_http_server_add_listener(v->server, lis), 0);

        client *cs[2];
        for (int i = 0; i < 2; i++) {
                cs[i] = calloc(1, sizeof(client));
                assert_non_null(cs[i]);
                cs[i]->buf = malloc(CLIENT_BUF);
                cs[i]->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                assert_int_equal(connect(cs[i]->fd, (struct sockaddr *)&sun, slen), 0);
                assert_int_equal(fcntl(cs[i]->fd, F_SETFL, O_NONBLOCK), 0);
                v->clients[v->n_clients++] = cs[i];
                client_send(cs[i], "GET /l HTTP/1.1\r\nHost: x\r\n\r\n");
        }
        resp r;
        run_env_for(v, 50);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 1);
        int first = cs[0]->len > 0 ? 0 : 1;
        next_resp(v, cs[first], false, &r);
        assert_int_equal(cs[1 - first]->len, 0);
        close(cs[first]->fd);
        cs[first]->fd = -1;
        next_resp(v, cs[1 - first], false, &r);
        assert_body(&r, "/l");
        assert_int_equal(paf_http_server_get_n_connections(v->server), 1);
}

/* ---- write progress and half-close ---- */

static void lim_write_timeout(paf_http_limits *l) {
        l->write_timeout_usec = 200 * 1000;
}

/* Read at most chunk bytes every every_ms (the loop runs in between), until
 * EOF or timeout_ms: a reader that is slow but steady. */
static void client_read_slowly(env *v, client *c, size_t chunk, unsigned every_ms,
                               unsigned timeout_ms) {
        uint64_t start = now_ms(), next = start;
        while (!c->eof && now_ms() < start + timeout_ms) {
                uint64_t t = now_ms();
                if (t < next) {
                        assert_true(sd_event_run(v->event, (next - t) * 1000) >= 0);
                        continue;
                }
                next += every_ms;
                size_t room = CLIENT_BUF - c->len;
                ssize_t k = read(c->fd, c->buf + c->len, chunk < room ? chunk : room);
                if (k > 0)
                        c->len += (size_t)k;
                else if (k == 0 || (errno != EAGAIN && errno != EINTR))
                        c->eof = true;
        }
}

/* What c received is one response of status 200 whose body is /pattern's. */
static void assert_pattern_response(client *c) {
        const char *end = find_crlfcrlf(c->buf, c->len);
        assert_non_null(end);
        size_t hlen = (size_t)(end - c->buf) + 4;
        char head[4096], v[64];
        assert_true(hlen < sizeof(head));
        memcpy(head, c->buf, hlen);
        head[hlen] = 0;
        int status = 0;
        assert_int_equal(sscanf(head, "HTTP/1.1 %d", &status), 1);
        assert_int_equal(status, 200);
        assert_non_null(field(head, "Content-Length", v, sizeof(v)));
        assert_int_equal(strtoul(v, NULL, 10), PATTERN_SIZE);
        assert_int_equal(c->len - hlen, PATTERN_SIZE);
        char *want = malloc(PATTERN_SIZE);
        assert_non_null(want);
        fill_pattern(want, PATTERN_SIZE);
        assert_memory_equal(c->buf + hlen, want, PATTERN_SIZE);
        free(want);
}

/* The write timeout measures progress: a reader that takes bytes steadily
 * keeps a response whose one write lasts many timeouts; one that stops
 * reading is cut about a timeout after the transport last took a byte. */
static void test_slow_reader(void **state) {
        env *v = *state;
        set_limits(v, lim_write_timeout);
        client *c = client_new_sndbuf(v, 4096);
        client_send(c, "GET /pattern HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        uint64_t start = now_ms();
        /* 8 KiB every 10 ms: about 1 s for 768 KiB, five write timeouts. */
        client_read_slowly(v, c, 8192, 10, 10000);
        uint64_t took = now_ms() - start;
        for (size_t i = 0; i < v->n_reports; i++)
                print_error("report: %d %s\n", v->reports[i].status, v->reports[i].reason);
        assert_int_equal(v->n_reports, 0);
        assert_true(c->eof);
        assert_true(took >= 3 * 200);
        assert_pattern_response(c);
        close(c->fd); /* the server lingers until then */
        c->fd = -1;

        /* The same response to a client that reads nothing. */
        client *d = client_new_sndbuf(v, 4096);
        d->no_pump = true;
        client_send(d, "GET /pattern HTTP/1.1\r\nHost: x\r\n\r\n");
        start = now_ms();
        uint64_t end = start + 3000;
        while (v->n_reports < 1 && now_ms() < end)
                assert_true(sd_event_run(v->event, 5 * 1000) >= 0);
        took = now_ms() - start;
        assert_int_equal(v->n_reports, 1);
        assert_string_equal(v->reports[0].reason, "write timeout (200 ms)");
        assert_true(took >= 190 && took < 1000);
        d->no_pump = false;
        assert_true(wait_eof(v, d, 2000));
        assert_true(d->len < PATTERN_SIZE);
        run_env_for(v, 20);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 0);
}

/* A client that shuts its write side down after the request still gets the
 * whole answer, however late it comes; then the connection ends. */
static void test_half_close(void **state) {
        env *v = *state;
        resp r;
        client *c = client_new(v);
        client_send(c, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
        run_env_for(v, 50);
        assert_non_null(v->held);
        assert_int_equal(v->n_aborts, 0);
        arm_late(v, 10);
        next_resp(v, c, false, &r);
        assert_body(&r, "late");
        assert_true(wait_eof(v, c, 2000));
        assert_int_equal(c->len, c->off);

        /* Streamed, HTTP/1.0 (the close ends the body), the handler writing
         * piece by piece after the client's end of stream. */
        client *d = client_new(v);
        client_send(d, "GET /stream HTTP/1.0\r\n\r\n");
        assert_int_equal(shutdown(d->fd, SHUT_WR), 0);
        assert_true(wait_eof(v, d, 3000));
        next_resp(v, d, false, &r);
        assert_body(&r, "hello world");

        /* Streamed, chunked. */
        client *e = client_new(v);
        client_send(e, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(shutdown(e->fd, SHUT_WR), 0);
        next_resp(v, e, false, &r);
        assert_body(&r, "hello world");
        assert_string_equal(r.trailers, "X-Checksum: abc\r\n\r\n");
        assert_true(wait_eof(v, e, 2000));

        /* Pipelined requests before the end of stream: all answered. */
        client *p = client_new(v);
        client_send(p, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /second HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(shutdown(p->fd, SHUT_WR), 0);
        arm_late(v, 30);
        next_resp(v, p, false, &r);
        assert_body(&r, "late");
        next_resp(v, p, false, &r);
        assert_body(&r, "/second");
        assert_true(wait_eof(v, p, 2000));

        /* A big response, through a small send buffer. */
        client *b = client_new_sndbuf(v, 4096);
        client_send(b, "GET /pattern HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(shutdown(b->fd, SHUT_WR), 0);
        client_read_slowly(v, b, 65536, 1, 5000);
        assert_true(b->eof);
        assert_pattern_response(b);

        /* A body cut by the end of stream is still an error. */
        client *x = client_new(v);
        client_send(x, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
        assert_int_equal(shutdown(x->fd, SHUT_WR), 0);
        assert_true(wait_eof(v, x, 2000));
        assert_int_equal(v->body_error, -EPIPE);
        assert_int_equal(v->n_aborts, 1);
        assert_int_equal(v->n_reports, 1);
        assert_string_equal(v->reports[0].reason,
                            "connection closed before the end of the request body");

        run_env_for(v, 20);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 0);
        assert_int_equal(v->n_aborts, 1);
}

/* Run until the client has n responses' worth parsed into rs (or fail). */
static void next_resps(env *v, client *c, size_t n, resp *rs) {
        for (size_t i = 0; i < n; i++)
                next_resp(v, c, false, &rs[i]);
}

/* The answers to the pipelined requests of one read are made during its
 * delivery and leave together: one implementation write (one sendmsg on a
 * socket), in request order, byte-exact. Before, each answer went in its
 * own write, the next request being parsed only once the previous answer
 * was written: 16 writes for 16 requests. */
static void test_pipeline_coalesced(void **state) {
        env *v = *state;
        static resp rs[16];
        char batch[2048];
        size_t n = 0;

        /* Answers of every shape: respond() (head and body in one buffer),
         * start/write/finish (head and body apart), HEAD, 204. */
        client *c = client_new_counted(v, 0, &v->writes[0]);
        for (int i = 0; i < 16; i++) {
                const char *t = i == 5 ? "/cl" : i == 9 ? "/nocontent" : NULL;
                char target[16];
                snprintf(target, sizeof(target), "/p%d", i);
                n += (size_t)snprintf(batch + n, sizeof(batch) - n,
                                      "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", i == 12 ? "HEAD" : "GET",
                                      t ? t : target);
        }
        client_send_n(c, batch, n);
        for (int i = 0; i < 16; i++) {
                next_resp(v, c, i == 12, &rs[i]);
                char want[16];
                snprintf(want, sizeof(want), "/p%d", i);
                if (i == 5)
                        assert_body(&rs[i], "hello");
                else if (i == 9)
                        assert_int_equal(rs[i].status, 204);
                else if (i == 12) {
                        char val[16];
                        assert_string_equal(field(rs[i].head, "Content-Length", val, sizeof(val)),
                                            "4");
                } else
                        assert_body(&rs[i], want);
        }
        run_env_for(v, 20);
        assert_int_equal(c->off, c->len); /* nothing more */
        assert_int_equal(v->n_handled, 16);
        assert_int_equal(v->writes[0], 1);
        assert_false(c->eof);
        /* The next read's answers too. */
        client_send_n(c, batch, n);
        next_resps(v, c, 12, rs);
        assert_body(&rs[11], "/p11");
        next_resp(v, c, true, &rs[12]);
        next_resps(v, c, 3, rs + 13);
        assert_body(&rs[15], "/p15");
        assert_int_equal(v->writes[0], 2);

        /* Connection: close in the middle: the answers before it and its
         * own, together, then the end; nothing after it. */
        client *d = client_new_counted(v, 0, &v->writes[1]);
        client_send(d, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       "GET /never HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resps(v, d, 2, rs);
        assert_body(&rs[0], "/a");
        assert_body(&rs[1], "/b");
        char val[16];
        assert_string_equal(field(rs[1].head, "Connection", val, sizeof(val)), "close");
        assert_true(wait_eof(v, d, 3000));
        assert_int_equal(d->off, d->len);
        assert_int_equal(v->n_handled, 32 + 2);
        assert_int_equal(v->writes[1], 1);

        /* A bad request after good ones: the good ones are answered first,
         * then the 400, all in one write, and the connection ends. */
        client *e = client_new_counted(v, 0, &v->writes[2]);
        client_send(e, "GET /g1 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /g2 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /bad\x01 HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resps(v, e, 3, rs);
        assert_body(&rs[0], "/g1");
        assert_body(&rs[1], "/g2");
        assert_int_equal(rs[2].status, 400);
        assert_true(wait_eof(v, e, 3000));
        assert_int_equal(e->off, e->len);
        assert_int_equal(v->n_handled, 32 + 2 + 2);
        assert_int_equal(v->writes[2], 1);
        assert_int_equal(v->n_reports, 1);
        assert_int_equal(v->reports[0].status, 400);
}

/* Pipelined requests with bodies, 100-continue and an Upgrade behind
 * answers not written yet: each in its place in the order, the answers of
 * one read in one write. */
static void test_pipeline_mixed(void **state) {
        env *v = *state;
        static resp rs[4];
        client *c = client_new_counted(v, 0, &v->writes[0]);
        client_send(c, "GET /m1 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"
                       "GET /m2 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                       "Content-Length: 3\r\n\r\n");
        next_resps(v, c, 4, rs);
        assert_body(&rs[0], "/m1");
        assert_body(&rs[1], "4|abcd");
        assert_body(&rs[2], "/m2");
        assert_int_equal(rs[3].status, 100);
        run_env_for(v, 20);
        assert_int_equal(c->off, c->len);
        assert_int_equal(v->writes[0], 1);
        client_send(c, "xyz");
        next_resp(v, c, false, &rs[0]);
        assert_body(&rs[0], "3|xyz");
        assert_int_equal(v->writes[0], 2);

        /* An Upgrade behind an answer: that answer, the 101, then the raw
         * flow, with the bytes that followed the request. */
        client_send(c, "GET /m3 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                       "Upgrade: test\r\n\r\nEARLY");
        next_resps(v, c, 2, rs);
        assert_body(&rs[0], "/m3");
        assert_int_equal(rs[1].status, 101);
        assert_non_null(v->upgraded);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 0);
        assert_int_equal(paf_flow_read_start(v->upgraded, on_up_read, v), 0);
        uint64_t end = now_ms() + 2000;
        while (v->up_len < 5 && now_ms() < end)
                run_env_for(v, 5);
        assert_int_equal(v->up_len, 5);
        assert_memory_equal(v->up_data, "EARLY", 5);
        assert_int_equal(v->n_handled, 6);
}

/* Coalescing never holds a response back: an answer goes when it is made,
 * not when a later one is; a handler answering later holds back only the
 * answers after its own. */
static void test_pipeline_no_wait(void **state) {
        env *v = *state;
        resp r;
        /* A lone request is answered within the loop iteration that read it. */
        client *c = client_new_counted(v, 0, &v->writes[0]);
        run_env_for(v, 10);
        client_send(c, "GET /alone HTTP/1.1\r\nHost: x\r\n\r\n");
        for (int i = 0; i < 3 && !parse_resp(c->buf, c->len, false, false, &r); i++) {
                assert_true(sd_event_run(v->event, 1000 * 1000) >= 0);
                pump_all(v);
        }
        assert_true(parse_resp(c->buf + c->off, c->len - c->off, false, false, &r) > 0);
        next_resp(v, c, false, &r);
        assert_body(&r, "/alone");

        /* The first answer at once; the late one after its 200 ms; the one
         * behind it right after, in order. */
        arm_late(v, 200);
        uint64_t t0 = now_ms();
        client_send(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /late HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
        next_resp(v, c, false, &r);
        uint64_t t_first = now_ms() - t0;
        assert_body(&r, "/first");
        assert_true(t_first < 150);
        assert_int_equal(v->n_handled, 3); /* /alone, /first, /late: /after waits */
        next_resp(v, c, false, &r);
        uint64_t t_late = now_ms() - t0;
        assert_body(&r, "late");
        assert_true(t_late >= 190);
        next_resp(v, c, false, &r);
        uint64_t t_after = now_ms() - t0;
        assert_body(&r, "/after");
        assert_true(t_after - t_late < 100);
        assert_int_equal(v->n_handled, 4);
        run_env_for(v, 20);
        assert_int_equal(c->off, c->len);
        assert_false(c->eof);
}

/* A client that pipelines without reading: the engine goes past finished
 * answers not written only so far (in count and queued bytes), then waits
 * for the client; once it reads, every answer comes, in order. */
static void test_pipeline_bounded(void **state) {
        env *v = *state;
        enum { N = 48, KB16 = 16 * 1024 };
        client *c = client_new_counted(v, 4096, &v->writes[0]);
        c->no_pump = true;
        char batch[N * 48];
        size_t n = 0;
        for (int i = 0; i < N; i++)
                n += (size_t)snprintf(batch + n, sizeof(batch) - n,
                                      "GET /kb16?%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        client_send_n(c, batch, n);
        run_env_for(v, 100);
        unsigned handled = v->n_handled;
        /* 256 KiB of queued answers at most, and what the socket took. */
        assert_true(handled >= 2);
        assert_true(handled <= 24);
        run_env_for(v, 100);
        assert_int_equal(v->n_handled, handled); /* and it waits */
        c->no_pump = false;
        static resp r;
        for (int i = 0; i < N; i++) {
                next_resp(v, c, false, &r);
                char want[16];
                int k = snprintf(want, sizeof(want), "/kb16?%d", i);
                assert_int_equal(r.body_len, KB16);
                assert_memory_equal(r.body, want, (size_t)k);
                assert_int_equal(r.body[k], 'x');
        }
        assert_int_equal(v->n_handled, N);
        run_env_for(v, 20);
        assert_int_equal(c->off, c->len);
        assert_int_equal(v->n_reports, 0);
}

/* A graceful stop while answers the engine made are still queued: every
 * one of them goes out before the connection ends (the handlers ran; their
 * answers are not dropped), and nothing after them. */
static void test_pipeline_stop(void **state) {
        env *v = *state;
        enum { N = 8, KB16 = 16 * 1024 };
        client *c = client_new_counted(v, 4096, &v->writes[0]);
        c->no_pump = true;
        char batch[N * 48 + 64];
        size_t n = 0;
        for (int i = 0; i < N; i++)
                n += (size_t)snprintf(batch + n, sizeof(batch) - n,
                                      "GET /kb16?%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        client_send_n(c, batch, n);
        run_env_for(v, 50);
        assert_int_equal(v->n_handled, N);
        assert_int_equal(paf_http_server_stop(v->server, on_done, v), 0);
        /* Not idle: its answers are being written. */
        run_env_for(v, 50);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 1);
        assert_false(c->eof);
        client_send(c, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n");
        c->no_pump = false;
        static resp r;
        for (int i = 0; i < N; i++) {
                next_resp(v, c, false, &r);
                char want[16];
                int k = snprintf(want, sizeof(want), "/kb16?%d", i);
                assert_int_equal(r.body_len, KB16);
                assert_memory_equal(r.body, want, (size_t)k);
        }
        assert_true(wait_eof(v, c, 3000));
        assert_int_equal(c->off, c->len);
        assert_int_equal(v->n_handled, N);
        close(c->fd);
        c->fd = -1;
        run_env_for(v, 30);
        assert_int_equal(v->n_done, 1);
        assert_int_equal(paf_http_server_get_n_connections(v->server), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_get, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
                cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pipelining, setup, teardown),
                cmocka_unit_test_setup_teardown(test_head, setup, teardown),
                cmocka_unit_test_setup_teardown(test_post_length, setup, teardown),
                cmocka_unit_test_setup_teardown(test_post_chunked, setup, teardown),
                cmocka_unit_test_setup_teardown(test_body_backpressure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_continue, setup, teardown),
                cmocka_unit_test_setup_teardown(test_discard_body, setup, teardown),
                cmocka_unit_test_setup_teardown(test_http10, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connection_close, setup, teardown),
                cmocka_unit_test_setup_teardown(test_chunked_response, setup, teardown),
                cmocka_unit_test_setup_teardown(test_upgrade, setup, teardown),
                cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_malformed_head, setup, teardown),
                cmocka_unit_test_setup_teardown(test_graceful_stop, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_empty, setup, teardown),
                cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listener, setup, teardown),
                cmocka_unit_test_setup_teardown(test_slow_reader, setup, teardown),
                cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pipeline_coalesced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pipeline_mixed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pipeline_no_wait, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pipeline_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pipeline_stop, setup, teardown),
        };
        /* PAF_TEST_FILTER=test_upgrade runs one test (a glob). */
        const char *filter = getenv("PAF_TEST_FILTER");
        if (filter && *filter)
                cmocka_set_test_filter(filter);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
