/* core/http/server.c — the HTTP/1.1 server engine: connections, parsing, responses, limits. */
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include <llhttp.h>

#include "core/paf-internal.h"
#include <paf/http.h>

/*
 * How things live.
 *
 * A connection (conn) owns its flow and little else: while it waits for a
 * request (a keep-alive connection between two, or a new one before its
 * first byte) it holds no request object, no parser and no buffer, so that
 * tens of thousands of idle connections cost a few hundred bytes each. Its
 * timeout is a place in one of the server's lists (one per kind, sorted by
 * when it started, all under one timer) and its deferred work a place in the
 * server's queue, not event sources of its own.
 *
 * The first byte of a request takes a request object (with the llhttp
 * parser, the header arena and the response head's buffer) from the
 * server's spares, or allocates one; it goes back once its response is
 * written. The spares are bounded, so a keep-alive connection allocates
 * nothing per request and an idle one holds nothing.
 *
 * The connection and the request are reference counted: the connection
 * holds its request; the handler holds it from the call of the request
 * handler until it ends the response (finish, respond, upgrade); every
 * write queued on the flow holds it until its completion ran (the flow
 * always runs it, with -ECANCELED after a close), so that the buffers a
 * write points to stay valid.
 *
 * When the connection goes away first (peer gone, timeout, bad body, server
 * freed), the request is detached (req->conn == NULL), the body reader gets
 * the error and the abort handler runs. From then on the response calls fail
 * with -ECONNRESET; finish (or respond, upgrade) still drops the handler's
 * reference, which frees the request. A handler that was told about an abort
 * must therefore still call paf_http_response_finish() once.
 *
 * One request at a time: llhttp is paused at the end of the headers (when a
 * body follows), at every body piece and at the end of each message, so that
 * every user callback runs from this file's driver, never from inside
 * llhttp_execute(). Unparsed bytes stay where they are: in the flow's buffer
 * during the read callback, copied into the connection's buffer only when the
 * parser has to wait (pipelining, a handler answering later, a paused body).
 *
 * The next request is parsed once the previous response is finished, that
 * is all of it queued on the flow, not written: so the answers to the
 * pipelined requests of one read are all made during that read's delivery,
 * and the flow hands them to the transport together (one sendmsg). Queued
 * in request order, they leave in that order; a handler answering later
 * holds the next request back, never the reverse. A finished request whose
 * writes are not done yet is retired: the parser moves on to a new request
 * object, and the retired one (its head buffer, its strings) lives on,
 * held by its writes, until the last of them completed. Retired requests
 * are bounded per connection, in number and in queued bytes; beyond, the
 * next request waits for completions as it did before, so a client that
 * pipelines without reading grows nothing.
 */

#define USEC_PER_SEC UINT64_C(1000000)
/* Unparsed bytes kept while the parser waits; beyond, reading stops. */
#define BACKLOG_MAX (64 * 1024)
/* An unread request body at most this long is drained to keep the connection. */
#define DISCARD_MAX (64 * 1024)
/* After the last response and shutdown, input is drained this long at most,
 * so that closing with unread data does not reset the connection (TCP RST
 * would destroy the response before the client read it). */
#define LINGER_USEC (2 * USEC_PER_SEC)
#define TIMER_ACCURACY_USEC (10 * 1000)
/* Parser steps per dispatch: a pipelining client cannot starve the loop. */
#define STEPS_PER_RUN 64
/* Timeouts handled per timer dispatch: expiring thousands of connections at
 * once must not hold the loop from the live ones for long. */
#define TIMEOUTS_PER_RUN 256
/* Finished responses a connection may have queued and not written yet,
 * at most (retired requests), and the bytes its flow may hold queued before
 * the next request waits: what the flow joins into one write at most (64
 * buffers, 256 KiB), for responses of two buffers (head, body). */
#define RETIRED_MAX 32
#define RETIRED_BYTES (256 * 1024)
/* A connection's buffer for unparsed bytes starts this large. */
#define BUF_SIZE (16 * 1024)
/* What the server keeps for reuse, at most: request objects and buffers
 * that busy connections took and gave back. Bounded: the busy connections
 * of a moment, not every connection. */
#define SPARE_REQS 32
/* A spare request keeps buffers at most this large; a larger one (a request
 * with big headers) goes back to malloc. */
#define SPARE_KEEP 4096

#include "core/http/engine.h"
#include "core/http/head.h"
#include "core/http/headers-internal.h"

/* Kept small: this is all an idle connection costs us. */
struct conn {
        unsigned n_ref;
        phase phase;
        timeout_kind tkind; /* the list it is in, TIMEOUT_NONE: none */
        bool reading, read_eof;
        bool close_after; /* close once the current response is written */
        bool shutting_down, shutdown_pending, lingering;
        bool closed, upgraded;
        bool running, rerun;
        bool kicked;       /* in the server's kick queue */
        bool dispatched;   /* a request went to the handler: h2c prior knowledge is too late */
        uint8_t n_retired; /* requests finished and not written, each holding a reference */

        paf_http_server *server; /* NULL once closed */
        conn *prev, *next;       /* the server's connections */
        conn *tprev, *tnext;     /* the server's list of tkind */
        conn *kick_next;
        paf_flow *flow;
        paf_http_request *req; /* NULL while no request is under way */

        /* Input: the flow's delivery being parsed in place, or our buffer. */
        const char *in;
        size_t in_len;
        char *buf;
        uint32_t buf_start, buf_end, buf_size;

        uint64_t tkey;     /* when the timeout of tkind started */
        uint64_t phase_at; /* when the phase began; while lingering, when that did */
        uint64_t write_at;
        uint64_t progress_at, polled_at; /* the flow's write progress, and when asked */
        /* > 0 inside our flow callbacks, which run within one iteration of
         * the loop: its time (clock) is taken once there, not per use. */
        unsigned clock_held;
        uint64_t clock;
};

static void conn_run(conn *c);
static void conn_to_h2(conn *c, size_t used);
static void conn_close(conn *c, int error);
static void conn_kick(conn *c);
static void conn_update_reading(conn *c);
static void conn_update_timer(conn *c);
static void timeouts_remove(paf_http_server *s, conn *c);
static void conn_on_read(paf_flow *flow, const void *data, size_t len, int error, void *userdata);
static bool conn_between_requests(conn *c);

/* ---- small helpers ---- */

static uint64_t conn_now(conn *c) {
        if (c->clock_held && c->clock)
                return c->clock;
        uint64_t t = paf_loop_now(c->server ? c->server->event : NULL);
        if (c->clock_held)
                c->clock = t;
        return t;
}

/* Around a flow callback: conn_now() is the loop's time, taken once. */
static void conn_hold_clock(conn *c) {
        c->clock_held++;
}

static void conn_release_clock(conn *c) {
        if (--c->clock_held == 0)
                c->clock = 0;
}

static size_t fmt_u64(char *buf, uint64_t v) {
        char tmp[24];
        size_t n = 0;
        do {
                tmp[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        for (size_t i = 0; i < n; i++)
                buf[i] = tmp[n - 1 - i];
        return n;
}

static void fmt_duration(char *buf, size_t size, uint64_t usec) {
        if (usec % USEC_PER_SEC == 0)
                snprintf(buf, size, "%" PRIu64 " s", usec / USEC_PER_SEC);
        else
                snprintf(buf, size, "%" PRIu64 " ms", usec / 1000);
}

/* Whether a comma-separated field value holds token, case-insensitively. */
static bool value_has_token(const char *v, const char *token) {
        size_t want = strlen(token);
        while (*v) {
                v += strspn(v, " \t,");
                size_t n = strcspn(v, ","), m = n;
                while (m > 0 && (v[m - 1] == ' ' || v[m - 1] == '\t'))
                        m--;
                if (m == want && strncasecmp(v, token, want) == 0)
                        return true;
                v += n;
        }
        return false;
}

/* The Date field at monotonic time mono. Formatting a date costs more than
 * the rest of a small response, and even reading the wall clock shows in
 * it: the text is kept until the monotonic clock reaches the next second
 * of the wall clock's (a wall clock set meanwhile shows within a second). */
static const char *server_date_at(paf_http_server *s, uint64_t mono) {
        if (s->date[0] && mono < s->date_until)
                return s->date;
        uint64_t usec;
        if (sd_event_now(s->event, CLOCK_REALTIME, &usec) < 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                usec = (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
        }
        uint64_t sec = usec / USEC_PER_SEC;
        if (sec != s->date_sec || !s->date[0]) {
                if (paf_http_format_date((int64_t)sec, s->date, sizeof(s->date)) < 0)
                        snprintf(s->date, sizeof(s->date), "Thu, 01 Jan 1970 00:00:00 GMT");
                s->date_sec = sec;
        }
        s->date_until = mono + (USEC_PER_SEC - usec % USEC_PER_SEC);
        int n = snprintf(s->date_fields, sizeof(s->date_fields),
                         "Date: %s\r\nServer: paf/" PAF_VERSION "\r\n", s->date);
        s->date_fields_len = n > 0 && (size_t)n < sizeof(s->date_fields) ? (size_t)n : 0;
        return s->date;
}

static const char *server_date(paf_http_server *s) {
        return server_date_at(s, paf_loop_now(s->event));
}

static void server_report(paf_http_server *s, conn *c, int status, const char *reason) {
        if (s && s->error_handler)
                s->error_handler(c->req ? c->req->peer : paf_flow_get_peer(c->flow), status, reason,
                                 s->userdata);
}

const char *http_server_date(paf_http_server *s) {
        return server_date(s);
}

void http_server_report(paf_http_server *s, const char *peer, int status, const char *reason) {
        if (s && s->error_handler)
                s->error_handler(peer, status, reason, s->userdata);
}

/* ---- requests ---- */

static paf_http_request *req_ref(paf_http_request *req) {
        req->n_ref++;
        return req;
}

static void req_free(paf_http_request *req) {
        if (req->h2)
                h2_stream_free(req->h2);
        paf_http_headers_free(req->headers);
        paf_http_headers_free(req->trailers);
        free(req->arena);
        free(req->fields);
        free(req->out);
        free(req->trail);
        free(req->addrs);
        free(req);
}

static void req_unref(paf_http_request *req) {
        assert(req->n_ref > 0);
        if (--req->n_ref == 0)
                req_free(req);
}

/* Make the request ready for the next one: buffers are kept, and so is the
 * parser, which may hold the start of a pipelined request. */
static void req_reset(paf_http_request *req) {
        req->headers = paf_http_headers_free(req->headers);
        req->trailers = paf_http_headers_free(req->trailers);
        req->headers_ready = false;
        req->ev = EV_NONE;
        req->ev_data = NULL;
        req->ev_len = 0;
        req->field_open = req->value_at_end = false;
        req->exec_start = req->exec_end = NULL;
        req->err_status = 0;
        req->request_bytes = req->discarding = false;
        req->header_bytes = 0;
        req->body_bytes = 0;
        req->body_at = 0;
        req->method = NULL;
        req->version = 0;
        req->head = false;
        req->arena_len = 0;
        req->n_fields = req->n_headers = 0;
        req->target = NO_OFFSET;
        req->content_length = 0;
        req->expect_continue = req->continue_sent = req->body_complete = false;
        req->userdata = NULL;
        req->handler_owned = req->aborted = false;
        req->abort_handler = NULL;
        req->abort_userdata = NULL;
        req->body_handler = NULL;
        req->body_userdata = NULL;
        req->body_paused = req->body_ended = false;
        req->resp = RESP_NONE;
        req->framing = FRAMING_NONE;
        req->no_body = req->send_body = false;
        req->remaining = 0;
        req->head_pending = req->out_oom = false;
        req->out_len = req->trail_len = 0;
        req->write_handler = NULL;
        req->write_userdata = NULL;
        req->user_write_pending = false;
}

static const llhttp_settings_t parser_settings;

/* Copies: the handler may keep the request past the connection. */
static int req_set_addrs(paf_http_request *req, paf_flow *flow) {
        const char *peer = paf_flow_get_peer(flow), *local = paf_flow_get_local(flow);
        size_t np = strlen(peer) + 1, nl = strlen(local) + 1;
        if (req->addrs_size < np + nl) {
                char *a = realloc(req->addrs, np + nl);
                if (!a)
                        return -ENOMEM;
                req->addrs = a;
                req->addrs_size = np + nl;
        }
        memcpy(req->addrs, peer, np);
        memcpy(req->addrs + np, local, nl);
        req->peer = req->addrs;
        req->local = req->addrs + np;
        return 0;
}

paf_http_request *http_request_new(paf_http_server *s, paf_flow *flow) {
        (void)s;
        paf_http_request *req = calloc(1, sizeof(*req));
        if (!req)
                return NULL;
        req_reset(req);
        if (req_set_addrs(req, flow) < 0) {
                req_free(req);
                return NULL;
        }
        req->n_ref = 1;
        return req;
}

void http_request_unref(paf_http_request *req) {
        req_unref(req);
}

/* A request object for c, a spare one if the server has any. */
static paf_http_request *req_get(conn *c) {
        paf_http_server *s = c->server;
        paf_http_request *req = s->spare_reqs;
        if (req) {
                s->spare_reqs = req->spare_next;
                s->n_spare_reqs--;
                req->spare_next = NULL;
        } else {
                req = calloc(1, sizeof(*req));
                if (!req)
                        return NULL;
                req_reset(req);
        }
        if (req_set_addrs(req, c->flow) < 0) {
                req_free(req);
                return NULL;
        }
        req->n_ref = 1;
        req->conn = c;
        llhttp_init(&req->parser, HTTP_REQUEST, &parser_settings);
        req->parser.data = c;
        req->parser_owed = false;
        return req;
}

static void *shrink(void *p, size_t *size, size_t each) {
        if (*size * each <= SPARE_KEEP)
                return p;
        free(p);
        *size = 0;
        return NULL;
}

/* A request nobody else holds goes back to the server's spares, with its
 * buffers unless they grew large. */
static void req_recycle(paf_http_server *s, paf_http_request *req) {
        assert(req->n_ref == 1 && req->n_writes == 0);
        req_reset(req);
        req->conn = NULL;
        if (s->freeing || s->n_spare_reqs >= SPARE_REQS) {
                req_free(req);
                return;
        }
        req->arena = shrink(req->arena, &req->arena_size, 1);
        req->fields = shrink(req->fields, &req->fields_size, sizeof(field_ref));
        req->out = shrink(req->out, &req->out_size, 1);
        req->trail = shrink(req->trail, &req->trail_size, 1);
        req->addrs = shrink(req->addrs, &req->addrs_size, 1);
        req->peer = req->local = NULL;
        req->spare_next = s->spare_reqs;
        s->spare_reqs = req;
        s->n_spare_reqs++;
}

static int arena_append(paf_http_request *req, const char *data, size_t len, size_t cap) {
        if (len > cap || req->arena_len + 1 > cap - len)
                return -E2BIG;
        size_t need = req->arena_len + len + 1;
        if (need > req->arena_size) {
                size_t n = req->arena_size ? req->arena_size : 1024;
                while (n < need)
                        n *= 2;
                if (n > cap)
                        n = cap;
                char *a = realloc(req->arena, n);
                if (!a)
                        return -ENOMEM;
                req->arena = a;
                req->arena_size = n;
        }
        memcpy(req->arena + req->arena_len, data, len);
        req->arena_len += len;
        return 0;
}

static void out_append(paf_http_request *req, const void *data, size_t len) {
        if (req->out_size - req->out_len < len) {
                size_t n = req->out_size ? req->out_size : 512;
                while (n - req->out_len < len) {
                        if (n > SIZE_MAX / 2) {
                                req->out_oom = true;
                                return;
                        }
                        n *= 2;
                }
                char *o = realloc(req->out, n);
                if (!o) {
                        req->out_oom = true;
                        return;
                }
                req->out = o;
                req->out_size = n;
        }
        memcpy(req->out + req->out_len, data, len);
        req->out_len += len;
}

static void out_str(paf_http_request *req, const char *s) {
        out_append(req, s, strlen(s));
}

#define OUT_LIT(req, s) out_append(req, s, sizeof(s) - 1)

static void out_u64(paf_http_request *req, uint64_t v) {
        char b[24];
        out_append(req, b, fmt_u64(b, v));
}

static void out_field(paf_http_request *req, const char *name, const char *value) {
        out_str(req, name);
        OUT_LIT(req, ": ");
        out_str(req, value);
        OUT_LIT(req, "\r\n");
}

static const char *field_name(paf_http_request *req, size_t i) {
        return req->arena + req->fields[i].name;
}

static const char *field_value(paf_http_request *req, size_t i) {
        return req->arena + req->fields[i].value;
}

int http_request_arena_append(paf_http_request *req, const char *data, size_t len, size_t cap) {
        return arena_append(req, data, len, cap);
}

int http_request_add_field(paf_http_request *req, uint32_t name, uint32_t name_len, uint32_t value,
                           uint32_t value_len) {
        if (req->n_fields == req->fields_size) {
                size_t n = req->fields_size ? 2 * req->fields_size : 16;
                field_ref *f = reallocarray(req->fields, n, sizeof(*f));
                if (!f)
                        return -ENOMEM;
                req->fields = f;
                req->fields_size = n;
        }
        req->fields[req->n_fields++] = (field_ref){name, name_len, value, value_len};
        return 0;
}

/* Detach the request from its connection; tell the handler if it still
 * holds it with the response unfinished. */
static void conn_orphan_request(conn *c, int error) {
        paf_http_request *req = c->req;
        if (!req)
                return;
        c->req = NULL;
        req->conn = NULL;
        if (req->handler_owned && !req->aborted) {
                req->aborted = true;
                req_ref(req);
                if (req->body_handler && !req->body_ended) {
                        req->body_ended = true;
                        req->body_handler(req, NULL, 0, error, req->body_userdata);
                }
                if (req->abort_handler)
                        req->abort_handler(req, error, req->abort_userdata);
                req_unref(req);
        }
        req_unref(req);
}

/* The handler is done with the request. */
static void req_release(paf_http_request *req) {
        if (!req->handler_owned)
                return;
        req->handler_owned = false;
        req_unref(req);
}

void http_request_release(paf_http_request *req) {
        req_release(req);
}

/* ---- connections: reference, buffers, reading ---- */

static conn *conn_ref(conn *c) {
        c->n_ref++;
        return c;
}

/* Not inlined: at -O3, GCC follows the free() below into callers that still
 * hold their own reference and reports a use after free it cannot rule out
 * from the count. */
static __attribute__((noinline)) void conn_unref(conn *c) {
        assert(c->n_ref > 0);
        if (--c->n_ref > 0)
                return;
        assert(c->closed && !c->req);
        free(c->buf);
        free(c);
}

/* Whether writes of the connection's are not completed yet: a retired
 * request's always are. */
static bool conn_writing(conn *c) {
        return c->n_retired > 0 || (c->req && c->req->n_writes > 0);
}

static size_t conn_pending(conn *c) {
        return (c->buf_end - c->buf_start) + c->in_len;
}

/* The bytes not parsed yet: the buffer first, it is older. */
static void conn_input(conn *c, const char **p, size_t *n) {
        if (c->buf_end > c->buf_start) {
                *p = c->buf + c->buf_start;
                *n = c->buf_end - c->buf_start;
        } else {
                *p = c->in;
                *n = c->in_len;
        }
}

static void conn_consume(conn *c, size_t n) {
        if (n == 0)
                return; /* c->in may be NULL: even NULL + 0 is undefined in C */
        if (c->buf_end > c->buf_start) {
                assert(n <= c->buf_end - c->buf_start);
                c->buf_start += (uint32_t)n;
                if (c->buf_start == c->buf_end)
                        c->buf_start = c->buf_end = 0;
        } else {
                assert(n <= c->in_len);
                c->in += n;
                c->in_len -= n;
        }
}

static int conn_buffer(conn *c, const char *data, size_t len) {
        if (len == 0)
                return 0;
        /* Never more than BACKLOG_MAX plus a delivery (reading stops
         * there): the sizes fit in 32 bits with room to double. */
        if (len > UINT32_MAX / 8 || c->buf_end - c->buf_start > UINT32_MAX / 8)
                return -ENOBUFS;
        if (c->buf_start > 0 && c->buf_size - c->buf_end < len) {
                memmove(c->buf, c->buf + c->buf_start, c->buf_end - c->buf_start);
                c->buf_end -= c->buf_start;
                c->buf_start = 0;
        }
        if (!c->buf && c->server && c->server->n_spare_bufs > 0) {
                c->buf = c->server->spare_bufs[--c->server->n_spare_bufs];
                c->buf_size = BUF_SIZE;
        }
        if (c->buf_size - c->buf_end < len) {
                size_t n = c->buf_size ? c->buf_size : BUF_SIZE;
                while (n - c->buf_end < len)
                        n *= 2;
                char *b = realloc(c->buf, n);
                if (!b)
                        return -ENOMEM;
                c->buf = b;
                c->buf_size = (uint32_t)n;
        }
        memcpy(c->buf + c->buf_end, data, len);
        c->buf_end += (uint32_t)len;
        return 0;
}

/* Nothing of a request is under way and nothing is buffered: what a busy
 * connection needs goes back to the server, and an idle one costs only
 * its struct. */
static void conn_go_idle(conn *c) {
        paf_http_server *s = c->server;
        paf_http_request *req = c->req;
        assert(s && conn_pending(c) == 0);
        if (req) {
                if (req->n_writes > 0 || req->handler_owned)
                        return; /* not done: it goes when it is */
                c->req = NULL;
                if (req->n_ref == 1)
                        req_recycle(s, req);
                else {
                        /* Someone still holds it (cannot happen with a
                         * well-behaved handler): leave it to them. */
                        req->conn = NULL;
                        req_unref(req);
                }
        }
        if (c->buf) {
                if (c->buf_size == BUF_SIZE && s->n_spare_bufs < SPARE_BUFS && !s->freeing)
                        s->spare_bufs[s->n_spare_bufs++] = c->buf;
                else
                        free(c->buf);
                c->buf = NULL;
                c->buf_size = c->buf_start = c->buf_end = 0;
        }
}

static void conn_update_reading(conn *c) {
        if (c->closed || c->upgraded)
                return;
        bool want;
        if (c->lingering)
                want = true;
        else if (c->shutting_down || c->read_eof)
                want = false;
        else if (c->phase == PHASE_BODY && c->req && !c->req->discarding && c->req->body_paused)
                want = false; /* the reader asked for backpressure */
        else
                want = conn_pending(c) < BACKLOG_MAX;
        if (want == c->reading)
                return;
        c->reading = want;
        int r = want ? paf_flow_read_start(c->flow, conn_on_read, c) : paf_flow_read_stop(c->flow);
        if (r < 0)
                paf_log(PAF_LOG_DEBUG, "http %s: cannot %s reading: %s", paf_flow_get_peer(c->flow),
                        want ? "start" : "stop", strerror(-r));
}

/* ---- writing ---- */

/* A request nobody needs any more: back to the server's spares if it is
 * still there and nobody else holds the request, else let it go. */
static void req_put(conn *c, paf_http_request *req) {
        if (req->n_ref == 1 && req->n_writes == 0 && c->server) {
                req_recycle(c->server, req);
                return;
        }
        req->conn = NULL;
        req_unref(req);
}

/* The last write of a retired request completed: the request goes. The
 * time its answer took to leave does not count against the request after
 * it (as when that one was parsed only then): its phase's timeout starts
 * over once nothing retired is left. */
static void conn_retired_done(conn *c, paf_http_request *req) {
        assert(req->retired && req->conn == c && c->n_retired > 0);
        req->retired = false;
        if (--c->n_retired == 0 && !c->closed && !c->shutting_down) {
                uint64_t now = conn_now(c);
                if (c->phase == PHASE_BODY && c->req)
                        c->req->body_at = now;
                else
                        c->phase_at = now;
        }
        req_put(c, req);
        conn_unref(c); /* the retired request's */
}

static void on_write_done(paf_flow *flow, int error, void *userdata, bool user) {
        (void)flow;
        paf_http_request *req = userdata;
        conn *c = req->conn;
        if (c) {
                conn_ref(c);
                conn_hold_clock(c);
                c->write_at = conn_now(c);
        }
        assert(req->n_writes > 0);
        req->n_writes--;
        if (user) {
                paf_http_write_handler_t h = req->write_handler;
                req->user_write_pending = false;
                req->write_handler = NULL;
                if (h)
                        h(req, error, req->write_userdata);
        }
        if (req->retired && req->n_writes == 0) {
                /* The write's reference goes, then the retired request's
                 * own: the latter holds it, so the former never frees it
                 * (said directly: GCC cannot tell from req_unref()). */
                assert(req->n_ref >= 2);
                req->n_ref--;
                conn_retired_done(c, req);
                req = NULL;
        } else if (c && req->conn == c) {
                /* The write's reference goes first: the connection holds
                 * another, and the driver reuses a request only it holds. */
                req_unref(req);
                req = NULL;
        }
        if (c) {
                if (error < 0 && error != -ECANCELED && !c->closed) {
                        char reason[128];
                        snprintf(reason, sizeof(reason), "write failed: %s", strerror(-error));
                        server_report(c->server, c, 0, reason);
                        conn_close(c, error);
                } else
                        conn_run(c);
                conn_release_clock(c);
                conn_unref(c);
        }
        if (req)
                req_unref(req);
}

static void on_engine_write_done(paf_flow *flow, int error, void *userdata) {
        on_write_done(flow, error, userdata, false);
}

static void on_user_write_done(paf_flow *flow, int error, void *userdata) {
        on_write_done(flow, error, userdata, true);
}

/* A write of req's was queued: it holds req, and the write timeout runs.
 * Also for a handler answering later, from outside the driver (which
 * updates the timeout when it is done): a reader that stops must not hold
 * that response for good. */
static void conn_wrote(conn *c, paf_http_request *req) {
        bool first = !conn_writing(c);
        req_ref(req);
        req->n_writes++;
        if (first) {
                c->write_at = conn_now(c);
                if (!c->running)
                        conn_update_timer(c);
        }
}

static int conn_write(conn *c, paf_http_request *req, const struct iovec *iov, size_t n,
                      bool user) {
        int r = paf_flow_write(c->flow, iov, n, user ? on_user_write_done : on_engine_write_done,
                               req);
        if (r < 0)
                return r;
        conn_wrote(c, req);
        return 0;
}

/* ---- closing ---- */

static void server_conn_gone(paf_http_server *s);

static void conn_close(conn *c, int error) {
        if (c->closed)
                return;
        c->closed = true;
        conn_ref(c);

        paf_http_server *s = c->server;
        c->server = NULL;
        if (s) {
                if (c->prev)
                        c->prev->next = c->next;
                else
                        s->conns = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                c->prev = c->next = NULL;
                s->n_conns--;
                timeouts_remove(s, c);
        }
        if (!c->upgraded && c->flow)
                paf_flow_close(c->flow, NULL, NULL);
        c->flow = NULL;
        c->in = NULL;
        c->in_len = 0;
        if (s)
                server_conn_gone(s);

        /* Last: user code runs in there (and may even free the server). */
        conn_orphan_request(c, error < 0 ? error : -ECONNRESET);
        conn_unref(c); /* the connection's own reference */
        conn_unref(c);
}

static void on_shutdown_done(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        conn *c = userdata;
        c->shutdown_pending = false;
        if (!c->closed) {
                if (error < 0 || c->read_eof)
                        /* Nothing to drain from a client that is gone. */
                        conn_close(c, error < 0 ? error : 0);
                else {
                        c->lingering = true;
                        c->phase_at = conn_now(c);
                        conn_update_reading(c);
                        conn_update_timer(c);
                }
        }
        conn_unref(c);
}

/* The last response is queued: end the write side once it is written, then
 * drain what the client still sends before closing. */
static void conn_shutdown(conn *c) {
        if (c->closed || c->shutting_down)
                return;
        c->shutting_down = true;
        int r = paf_flow_shutdown(c->flow, on_shutdown_done, conn_ref(c));
        if (r < 0) {
                conn_unref(c);
                conn_close(c, r);
                return;
        }
        c->shutdown_pending = true;
        c->write_at = conn_now(c);
        conn_update_reading(c);
        conn_update_timer(c);
}

static void on_reject_written(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        (void)error;
        free(userdata);
}

/* A request we refuse: tell, answer with status (unless the handler already
 * began a response), close. */
static void conn_reject(conn *c, int status, const char *reason) {
        if (c->closed)
                return;
        conn_ref(c);
        paf_http_server *s = c->server;
        server_report(s, c, status, reason);

        paf_http_request *req = c->req;
        bool answered = req && req->resp != RESP_NONE;
        /* A HEAD request's answer has no body, an error's neither (RFC 9110
         * §9.3.2); known once the request was dispatched. */
        bool head = req && req->method && req->head;
        if (!c->closed && req && req->handler_owned)
                conn_orphan_request(c, status == 413 ? -EFBIG : -EBADMSG);
        if (c->closed || !s) {
                conn_unref(c);
                return;
        }
        if (answered) {
                conn_close(c, -EBADMSG);
                conn_unref(c);
                return;
        }

        /* Its own buffer, which the write holds: the connection keeps none
         * for what is rare. */
        size_t reject_size = 512 + s->extra_len;
        char *answer = malloc(reject_size);
        if (!answer) {
                conn_close(c, -ENOMEM);
                conn_unref(c);
                return;
        }
        const char *text = paf_http_status_reason(status);
        int n = snprintf(answer, reject_size,
                         "HTTP/1.1 %d %s\r\n"
                         "Date: %s\r\n"
                         "Server: paf/" PAF_VERSION "\r\n"
                         "%s"
                         "Content-Type: text/plain\r\n"
                         "Content-Length: %zu\r\n"
                         "Connection: close\r\n"
                         "\r\n"
                         "%s\n",
                         status, text, server_date(s), s->extra_text ? s->extra_text : "",
                         strlen(text) + 1, text);
        assert(n > 0 && (size_t)n < reject_size);
        struct iovec iov = {answer, (size_t)n - (head ? strlen(text) + 1 : 0)};
        int r = paf_flow_write(c->flow, &iov, 1, on_reject_written, answer);
        if (r < 0) {
                free(answer);
                conn_close(c, r);
        } else {
                c->close_after = true;
                conn_shutdown(c);
        }
        conn_unref(c);
}

static int parse_error(conn *c, int status, const char *format, ...) PAF_PRINTF(3, 4);
static int parse_error(conn *c, int status, const char *format, ...) {
        if (c->req->err_status == 0) {
                va_list ap;
                va_start(ap, format);
                vsnprintf(c->req->err_reason, sizeof(c->req->err_reason), format, ap);
                va_end(ap);
                c->req->err_status = status;
        }
        return HPE_USER;
}

/* ---- llhttp callbacks: record, never call user code ---- */

static size_t arena_cap(conn *c) {
        size_t max = c->server->limits.max_header_bytes;
        size_t cap = max > (UINT32_MAX - 4096) / 2 ? UINT32_MAX - 1 : 2 * max + 4096;
        return cap;
}

static int header_overflow(conn *c) {
        return parse_error(c, 431, "request header fields too large (more than %zu bytes)",
                           c->server->limits.max_header_bytes);
}

static int on_message_begin(llhttp_t *p) {
        conn *c = p->data;
        if (c->phase == PHASE_IDLE) {
                c->phase = PHASE_HEADERS;
                c->phase_at = conn_now(c);
        }
        c->req->request_bytes = true;
        return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
        conn *c = p->data;
        paf_http_request *req = c->req;
        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)at[i];
                if (ch <= 0x20 || ch == 0x7f)
                        return parse_error(c, 400,
                                           "space or control character in the request target");
        }
        if (req->target == NO_OFFSET)
                req->target = (uint32_t)req->arena_len;
        if (arena_append(req, at, len, arena_cap(c)) < 0)
                return header_overflow(c);
        return 0;
}

static int on_url_complete(llhttp_t *p) {
        conn *c = p->data;
        if (c->req->target == NO_OFFSET)
                c->req->target = (uint32_t)c->req->arena_len;
        if (arena_append(c->req, "", 1, arena_cap(c)) < 0)
                return header_overflow(c);
        return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
        conn *c = p->data;
        paf_http_request *req = c->req;
        if (!c->req->field_open) {
                unsigned max = c->server->limits.max_headers;
                if (req->n_fields >= max)
                        return parse_error(c, 431, "too many header fields (more than %u)", max);
                if (req->n_fields == req->fields_size) {
                        size_t n = req->fields_size ? req->fields_size * 2 : 16;
                        field_ref *f = reallocarray(req->fields, n, sizeof(*f));
                        if (!f)
                                return parse_error(c, 500, "out of memory");
                        req->fields = f;
                        req->fields_size = n;
                }
                req->fields[req->n_fields++] = (field_ref){
                        .name = (uint32_t)req->arena_len,
                        .value = NO_OFFSET,
                };
                c->req->field_open = true;
        }
        if (arena_append(req, at, len, arena_cap(c)) < 0)
                return header_overflow(c);
        req->fields[req->n_fields - 1].name_len += (uint32_t)len;
        return 0;
}

static int on_header_field_complete(llhttp_t *p) {
        conn *c = p->data;
        if (!c->req->field_open || c->req->fields[c->req->n_fields - 1].name_len == 0)
                return parse_error(c, 400, "empty header field name");
        c->req->field_open = false;
        if (arena_append(c->req, "", 1, arena_cap(c)) < 0)
                return header_overflow(c);
        return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
        conn *c = p->data;
        paf_http_request *req = c->req;
        field_ref *f = &req->fields[req->n_fields - 1];
        if (f->value == NO_OFFSET)
                f->value = (uint32_t)req->arena_len;
        else if (!c->req->value_at_end || at != c->req->exec_start)
                /* A second piece of one value that is not a buffer boundary:
                 * llhttp let an obs-fold continuation line through. */
                return parse_error(c, 400, "obsolete line folding in header field \"%s\"",
                                   req->arena + f->name);
        size_t bad = http_find_ctl(at, len);
        if (bad < len)
                return parse_error(c, 400, "control character 0x%02x in header field \"%s\"",
                                   (unsigned char)at[bad], req->arena + f->name);
        if (arena_append(req, at, len, arena_cap(c)) < 0)
                return header_overflow(c);
        f->value_len += (uint32_t)len;
        c->req->value_at_end = at + len == c->req->exec_end;
        return 0;
}

static int on_header_value_complete(llhttp_t *p) {
        conn *c = p->data;
        paf_http_request *req = c->req;
        field_ref *f = &req->fields[req->n_fields - 1];
        if (f->value == NO_OFFSET)
                f->value = (uint32_t)req->arena_len;
        while (f->value_len > 0 && (req->arena[f->value + f->value_len - 1] == ' ' ||
                                    req->arena[f->value + f->value_len - 1] == '\t'))
                f->value_len--;
        req->arena_len = f->value + f->value_len;
        c->req->value_at_end = false;
        if (arena_append(req, "", 1, arena_cap(c)) < 0)
                return header_overflow(c);
        return 0;
}

static int on_headers_complete(llhttp_t *p) {
        conn *c = p->data;
        paf_http_request *req = c->req;
        c->req->headers_ready = true;
        req->n_headers = req->n_fields;
        if (p->flags & F_CHUNKED)
                req->content_length = -1;
        else if (p->flags & F_CONTENT_LENGTH) {
                if (p->content_length > INT64_MAX)
                        return parse_error(c, 413, "request body too large (%" PRIu64 " bytes)",
                                           p->content_length);
                req->content_length = (int64_t)p->content_length;
        } else
                req->content_length = 0;
        /* With a body, stop here: the handler decides whether to read it. */
        return req->content_length != 0 ? HPE_PAUSED : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
        conn *c = p->data;
        if (len == 0)
                return 0; /* a span restarted on an empty execute */
        c->req->body_bytes += len;
        uint64_t max = c->server->limits.max_body;
        if (c->req->content_length < 0 && c->req->body_bytes > max)
                return parse_error(c, 413, "request body too large (more than %" PRIu64 " bytes)",
                                   max);
        c->req->ev = EV_BODY;
        c->req->ev_data = at;
        c->req->ev_len = len;
        return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p) {
        conn *c = p->data;
        c->req->ev = EV_COMPLETE;
        return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_url_complete = on_url_complete,
        .on_header_field = on_header_field,
        .on_header_field_complete = on_header_field_complete,
        .on_header_value = on_header_value,
        .on_header_value_complete = on_header_value_complete,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
};

/* ---- the driver ---- */

static void conn_deliver_body(conn *c, const void *data, size_t len) {
        paf_http_request *req = c->req;
        if (!req || !req->handler_owned || !req->body_handler || req->body_ended)
                return;
        if (len == 0)
                req->body_ended = true;
        req_ref(req);
        req->body_handler(req, data, len, 0, req->body_userdata);
        req_unref(req);
}

/* The headers are complete: check what llhttp does not, then hand the
 * request to the handler. Returns whether the connection goes on. */
static bool conn_dispatch(conn *c) {
        paf_http_server *s = c->server;
        paf_http_request *req = c->req;
        llhttp_t *p = &c->req->parser;
        char reason[256];

        if (p->http_major != 1 || p->http_minor > 1) {
                snprintf(reason, sizeof(reason), "HTTP version not supported (HTTP/%u.%u)",
                         p->http_major, p->http_minor);
                conn_reject(c, 505, reason);
                return false;
        }
        req->version = p->http_major * 10 + p->http_minor;
        req->method = llhttp_method_name(p->method);
        c->dispatched = true;
        req->head = p->method == HTTP_HEAD;

        unsigned hosts = 0, lengths = 0, encodings = 0;
        bool want_close = false, keep_alive = false;
        /* Field names are tokens here (both parsers check): compared by
         * their length first, then folded byte by byte. */
        for (size_t i = 0; i < req->n_headers; i++) {
                const char *name = field_name(req, i), *value = field_value(req, i);
                switch (req->fields[i].name_len) {
                case 4:
                        if (http_name_is(name, 4, "host", 4))
                                hosts++;
                        break;
                case 6:
                        if (http_name_is(name, 6, "expect", 6) &&
                            value_has_token(value, "100-continue"))
                                req->expect_continue = true;
                        break;
                case 10:
                        if (http_name_is(name, 10, "connection", 10)) {
                                want_close = want_close || value_has_token(value, "close");
                                keep_alive = keep_alive || value_has_token(value, "keep-alive");
                        }
                        break;
                case 14:
                        if (http_name_is(name, 14, "content-length", 14))
                                lengths++;
                        break;
                case 17:
                        if (http_name_is(name, 17, "transfer-encoding", 17))
                                encodings++;
                        break;
                }
        }

        const char *bad = NULL;
        if (hosts == 0 && req->version == 11)
                bad = "missing Host header";
        else if (hosts > 1)
                bad = "more than one Host header";
        else if (lengths > 0 && encodings > 0)
                bad = "Content-Length with Transfer-Encoding";
        else if (lengths > 1)
                bad = "repeated Content-Length";
        else if (encodings > 0 && req->version == 10)
                bad = "Transfer-Encoding in an HTTP/1.0 request";
        if (bad) {
                conn_reject(c, 400, bad);
                return false;
        }
        if (req->content_length > 0 && (uint64_t)req->content_length > s->limits.max_body) {
                snprintf(reason, sizeof(reason),
                         "request body too large (%" PRId64 " bytes > %" PRIu64 ")",
                         req->content_length, s->limits.max_body);
                conn_reject(c, 413, reason);
                return false;
        }
        if (req->version == 10)
                req->expect_continue = false;

        if (req->version == 11 ? want_close : !keep_alive)
                c->close_after = true;
        if (s->stopping || p->method == HTTP_CONNECT)
                c->close_after = true;

        if (c->req->ev == EV_COMPLETE) {
                c->req->ev = EV_NONE;
                c->phase = PHASE_COMPLETE;
                req->body_complete = true;
        } else
                c->phase = PHASE_BODY;
        c->req->body_at = conn_now(c);
        s->n_requests++;

        req->handler_owned = true;
        req_ref(req);
        req_ref(req);
        s->handler(req, s->userdata);
        req_unref(req);
        return !c->closed && !c->upgraded;
}

static bool conn_parser_runnable(conn *c) {
        switch (c->phase) {
        case PHASE_IDLE:
        case PHASE_HEADERS:
                return true;
        case PHASE_BODY:
                return c->req->discarding ||
                       (c->req->body_handler && !c->req->body_paused && !c->req->body_ended);
        case PHASE_COMPLETE:
                return false;
        }
        return false;
}

/* A whole plain head at data (core/http/head.c) goes into req as llhttp's
 * callbacks would put it, in one pass; false leaves it all to llhttp. Only
 * between requests, with llhttp owed nothing: its state then is that of
 * the end of the message before, whatever this one is. */
static bool conn_fast_head(conn *c, paf_http_request *req, const char *data, size_t len,
                           size_t *used) {
        if (!conn_between_requests(c) || req->parser_owed || req->arena_len > 0 || len < 16)
                return false;
        const paf_http_limits *l = &c->server->limits;
        http_head h;
        size_t n = http_head_parse(data, len, l->max_header_bytes, l->max_headers, &h);
        if (n == 0)
                return false;
        if (req->fields_size < h.n_fields) {
                size_t size = req->fields_size ? req->fields_size : 16;
                while (size < h.n_fields)
                        size *= 2;
                field_ref *f = reallocarray(req->fields, size, sizeof(*f));
                if (!f)
                        return false; /* llhttp's path reports it */
                req->fields = f;
                req->fields_size = size;
        }
        /* The head from its target on, copied at once; the bytes after each
         * piece (a space, a colon, a CR or trailing whitespace) become its
         * NUL, as the callbacks would have put it. */
        if (arena_append(req, data + h.target, n - h.target, arena_cap(c)) < 0) {
                req->arena_len = 0;
                return false;
        }
        char *a = req->arena;
        uint32_t base = h.target;
        req->target = 0;
        a[h.target_len] = '\0';
        for (size_t i = 0; i < h.n_fields; i++) {
                const http_head_field *hf = &h.fields[i];
                field_ref *f = &req->fields[i];
                *f = (field_ref){
                        .name = hf->name - base,
                        .name_len = hf->name_len,
                        .value = hf->value - base,
                        .value_len = hf->value_len,
                };
                a[f->name + f->name_len] = '\0';
                a[f->value + f->value_len] = '\0';
        }
        /* on_message_begin(), on_headers_complete(), on_message_complete(). */
        if (c->phase == PHASE_IDLE) {
                c->phase = PHASE_HEADERS;
                c->phase_at = conn_now(c);
        }
        req->request_bytes = true;
        req->n_fields = req->n_headers = h.n_fields;
        req->content_length = 0;
        req->headers_ready = true;
        req->ev = EV_COMPLETE;
        req->parser.http_major = 1;
        req->parser.http_minor = (uint8_t)h.minor;
        req->parser.method = (uint8_t)h.method;
        *used = n;
        return true;
}

static bool conn_parse(conn *c) {
        if (!c->req) {
                /* The first byte of a request (or of the leading empty
                 * lines RFC 9112 §2.2 lets a server skip). */
                c->req = req_get(c);
                if (!c->req) {
                        server_report(c->server, c, 0, "out of memory for a request");
                        conn_close(c, -ENOMEM);
                        return false;
                }
        }
        /* Ours for the call: the handler, or a close, may drop the
         * connection's. */
        paf_http_request *req = req_ref(c->req);
        const char *data;
        size_t len;
        conn_input(c, &data, &len);
        if (len == 0)
                data = "";

        phase before = c->phase;
        req->exec_start = data;
        req->exec_end = data + len;
        req->ev = EV_NONE;
        req->headers_ready = false;
        req->err_status = 0;

        bool go_on = false;
        size_t used = len;
        llhttp_errno_t err = conn_fast_head(c, req, data, len, &used)
                                     ? HPE_OK
                                     : llhttp_execute(&req->parser, data, len);
        if (err == HPE_PAUSED_H2_UPGRADE) {
                conn_to_h2(c, (size_t)(llhttp_get_error_pos(&req->parser) - data));
                goto out;
        }
        req->parser_owed = err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE;
        if (req->parser_owed) {
                used = (size_t)(llhttp_get_error_pos(&req->parser) - data);
                if (err == HPE_PAUSED)
                        llhttp_resume(&req->parser);
                else
                        /* An Upgrade the handler declined: HTTP goes on. */
                        llhttp_resume_after_upgrade(&req->parser);
        } else if (err != HPE_OK) {
                int status = req->err_status;
                char reason[300];
                if (status)
                        snprintf(reason, sizeof(reason), "%s", req->err_reason);
                else if (err == HPE_INVALID_VERSION) {
                        status = 505;
                        snprintf(reason, sizeof(reason), "HTTP version not supported");
                } else {
                        status = 400;
                        snprintf(reason, sizeof(reason), "malformed request%s: %s",
                                 before == PHASE_BODY ? " body" : "",
                                 llhttp_get_error_reason(&req->parser) ?: llhttp_errno_name(err));
                }
                conn_reject(c, status, reason);
                goto out;
        }
        conn_consume(c, used);

        if (before == PHASE_IDLE || before == PHASE_HEADERS) {
                req->header_bytes += used;
                size_t max = c->server->limits.max_header_bytes;
                if (req->header_bytes > max) {
                        char reason[128];
                        snprintf(reason, sizeof(reason),
                                 "request header fields too large (%zu bytes > %zu)",
                                 req->header_bytes, max);
                        conn_reject(c, 431, reason);
                        goto out;
                }
        }

        if (req->headers_ready && !conn_dispatch(c))
                goto out;

        switch (req->ev) {
        case EV_BODY:
                req->body_at = conn_now(c);
                if (!req->discarding)
                        conn_deliver_body(c, req->ev_data, req->ev_len);
                break;
        case EV_COMPLETE:
                c->phase = PHASE_COMPLETE;
                req->body_complete = true;
                if (req->discarding)
                        req->discarding = false;
                else
                        conn_deliver_body(c, NULL, 0);
                break;
        case EV_NONE:
                break;
        }
        go_on = !c->closed && !c->upgraded;
out:
        req_unref(req);
        return go_on;
}

/*
 * llhttp stopped after the HTTP/2 connection preface (RFC 9113 §3.3: h2c
 * with prior knowledge): the connection goes to the h2 engine with what
 * follows the preface. Only as the first thing on a connection: once an
 * HTTP/1.1 request went through, the preface is a protocol error.
 */
static void conn_to_h2(conn *c, size_t used) {
        paf_http_server *s = c->server;
        if (!s->h2.enabled || c->dispatched) {
                conn_reject(c, c->dispatched ? 400 : 505,
                            c->dispatched ? "HTTP/2 preface after an HTTP/1.1 request"
                                          : "HTTP/2 is not enabled ([http2] enabled)");
                return;
        }
        conn_consume(c, used);
        const char *rest;
        size_t rest_len;
        conn_input(c, &rest, &rest_len);
        /* Copied: the buffer goes with the connection, the flow's delivery
         * with the read callback. */
        char *copy = NULL;
        if (rest_len > 0) {
                copy = malloc(rest_len);
                if (!copy) {
                        conn_close(c, -ENOMEM);
                        return;
                }
                memcpy(copy, rest, rest_len);
        }
        paf_flow *flow = c->flow;
        (void)paf_flow_read_stop(flow);
        /* The h2 connection is counted before this one goes: a stopping
         * server must not see zero connections in between. */
        int r = h2_conn_new(s, flow, true, copy, rest_len);
        free(copy);
        c->upgraded = true; /* the flow is h2_conn_new's, whatever it returned */
        conn_close(c, r < 0 ? r : 0);
}

/* A new request object for the next request, c->req's parser moved to
 * it: the parser may hold the start of a pipelined request. */
static paf_http_request *conn_take_next(conn *c) {
        paf_http_request *req = c->req, *n = req_get(c);
        if (!n) {
                server_report(c->server, c, 0, "out of memory for a request");
                conn_close(c, -ENOMEM);
                return NULL;
        }
        n->parser = req->parser;
        n->parser_owed = req->parser_owed;
        return n;
}

/* The response went out: on to the next request. */
static void conn_next_request(conn *c) {
        paf_http_request *req = c->req;
        if (req->n_ref == 1)
                req_reset(req);
        else {
                /* Someone still holds it (cannot happen with a well-behaved
                 * handler): leave it to them rather than reuse it. */
                paf_http_request *n = conn_take_next(c);
                if (!n)
                        return;
                c->req = n;
                req->conn = NULL;
                req_unref(req);
        }
        c->phase = PHASE_IDLE;
        c->phase_at = conn_now(c);
}

/* Whether the connection may go past a finished response not written yet:
 * within the bounds on what it holds queued. */
static bool conn_may_retire(conn *c) {
        return c->n_retired < RETIRED_MAX && paf_flow_get_write_queue_size(c->flow) < RETIRED_BYTES;
}

/* The response is finished, its writes are not done: on to the next
 * request in a new request object, while this one stays for its writes
 * (they hold it, and it holds the connection, which it still points to).
 * With nothing of the next request buffered, the next byte takes the new
 * object: the message is complete (its last callback ran), so what llhttp
 * still owes is only its return to the start state, where a parser fresh
 * from llhttp_init() is too. */
static void conn_retire(conn *c) {
        paf_http_request *req = c->req, *next = NULL;
        assert(c->phase == PHASE_COMPLETE);
        if (conn_pending(c) > 0) {
                next = conn_take_next(c);
                if (!next)
                        return;
        }
        req->retired = true;
        c->n_retired++;
        conn_ref(c);
        c->req = next;
        c->phase = PHASE_IDLE;
        c->phase_at = conn_now(c);
}

/* No request begun: an idle connection, or a new one before its first byte. */
static bool conn_between_requests(conn *c) {
        return c->phase == PHASE_IDLE ||
               (c->phase == PHASE_HEADERS && !(c->req && c->req->request_bytes));
}

/* EOF with nothing left to parse. */
static void conn_on_eof(conn *c) {
        paf_http_server *s = c->server;
        switch (c->phase) {
        case PHASE_IDLE:
                /* After a response: end our side too (a TLS close_notify),
                 * once what was written went. */
                conn_shutdown(c);
                return;
        case PHASE_HEADERS:
                if (c->req && c->req->request_bytes)
                        server_report(s, c, 0,
                                      "connection closed before the end of the request headers");
                conn_close(c, 0);
                return;
        case PHASE_BODY:
                if (!c->req->discarding)
                        server_report(s, c, 0,
                                      "connection closed before the end of the request body");
                conn_close(c, -EPIPE);
                return;
        case PHASE_COMPLETE:
                break;
        }
}

/* One step forward; false when there is nothing to do until an event. */
static bool conn_step(conn *c) {
        if (c->closed || c->upgraded || c->shutting_down)
                return false;
        paf_http_request *req = c->req;
        paf_http_server *s = c->server;

        if (req && req->handler_owned && req->body_handler && req->body_complete &&
            !req->body_ended && !req->body_paused) {
                conn_deliver_body(c, NULL, 0);
                return true;
        }

        if (c->phase == PHASE_BODY || c->phase == PHASE_COMPLETE) {
                if (req->resp == RESP_FINISHED) {
                        if (c->close_after) {
                                /* The last response: nothing after it. */
                                if (!conn_writing(c))
                                        conn_shutdown(c);
                                return false;
                        }
                        if (c->phase == PHASE_COMPLETE) {
                                if (req->n_writes == 0)
                                        conn_next_request(c);
                                else if (conn_may_retire(c))
                                        conn_retire(c);
                                else
                                        return false; /* a completion makes room */
                                return true;
                        }
                        if (!req->discarding) {
                                req->discarding = true;
                                req->body_at = conn_now(c);
                        }
                } else if (c->phase == PHASE_COMPLETE) {
                        /* Even after a read EOF: a client that shut its
                         * write side down (nc -N, HTTP/1.0 scripts) still
                         * reads the answer. One that is gone entirely makes
                         * a write fail, and a reset fails the read: either
                         * closes the connection and aborts the request. */
                        return false;
                }
        }

        if (c->phase == PHASE_IDLE && s->stopping) {
                /* Responses still going out when the stop came (close_after)
                 * end the connection after them, as a last one would. */
                if (conn_writing(c) || c->close_after)
                        conn_shutdown(c);
                else
                        conn_close(c, 0);
                return false;
        }
        if (!conn_parser_runnable(c))
                return false;
        if (conn_pending(c) == 0 && !(c->req && c->req->parser_owed)) {
                if (conn_between_requests(c))
                        conn_go_idle(c);
                if (c->read_eof)
                        conn_on_eof(c);
                return false;
        }
        return conn_parse(c);
}

static void conn_run(conn *c) {
        if (c->closed)
                return;
        if (c->running) {
                c->rerun = true;
                return;
        }
        conn_ref(c);
        c->running = true;
        unsigned steps = 0;
        do {
                c->rerun = false;
                while (steps < STEPS_PER_RUN && conn_step(c))
                        steps++;
        } while (c->rerun && steps < STEPS_PER_RUN && !c->closed);
        c->running = false;
        if (steps >= STEPS_PER_RUN)
                conn_kick(c);
        conn_update_reading(c);
        conn_update_timer(c);
        conn_unref(c);
}

static int on_kick(sd_event_source *source, void *userdata) {
        (void)source;
        paf_http_server *s = userdata;
        /* The queue as it is now: what is kicked meanwhile waits for the
         * next iteration, so that one busy connection cannot starve the
         * loop. Each queued connection holds a reference. */
        conn *c = s->kicks.head;
        s->kicks.head = s->kicks.tail = NULL;
        while (c) {
                conn *next = c->kick_next;
                c->kick_next = NULL;
                c->kicked = false;
                conn_run(c);
                conn_unref(c);
                c = next;
        }
        return 0;
}

/* Run the driver from the loop: API calls never call back from inside. */
static void conn_kick(conn *c) {
        if (c->closed)
                return;
        if (c->running) {
                c->rerun = true;
                return;
        }
        if (c->kicked)
                return;
        paf_http_server *s = c->server;
        int r = 0;
        if (!s->kick) {
                r = sd_event_add_defer(s->event, &s->kick, on_kick, s);
                if (r >= 0)
                        (void)sd_event_source_set_description(s->kick, "paf-http-kick");
        }
        if (r >= 0 && !s->kicks.head)
                r = sd_event_source_set_enabled(s->kick, SD_EVENT_ONESHOT);
        if (r < 0) {
                paf_log(PAF_LOG_ERR, "http %s: cannot schedule work: %s",
                        paf_flow_get_peer(c->flow), strerror(-r));
                return;
        }
        c->kicked = true;
        conn_ref(c);
        if (s->kicks.tail)
                s->kicks.tail->kick_next = c;
        else
                s->kicks.head = c;
        s->kicks.tail = c;
}

static void conn_on_read(paf_flow *flow, const void *data, size_t len, int error, void *userdata) {
        (void)flow;
        conn *c = userdata;
        if (c->closed || c->upgraded)
                return;
        if (c->lingering) {
                if (error < 0 || len == 0)
                        conn_close(c, 0);
                return;
        }
        conn_ref(c);
        conn_hold_clock(c);
        if (error < 0) {
                if (c->req && (c->req->request_bytes || c->req->handler_owned)) {
                        char reason[128];
                        snprintf(reason, sizeof(reason), "read failed: %s", strerror(-error));
                        server_report(c->server, c, 0, reason);
                }
                conn_close(c, error);
        } else if (len == 0) {
                c->read_eof = true;
                c->reading = false;
                conn_run(c);
        } else {
                int r = 0;
                if (conn_pending(c) > 0 || c->running)
                        r = conn_buffer(c, data, len);
                else {
                        c->in = data;
                        c->in_len = len;
                }
                if (r < 0)
                        conn_close(c, r);
                else
                        conn_run(c);
                /* What the parser left of the delivery must outlive it. */
                if (!c->closed && !c->upgraded && c->in_len > 0) {
                        r = conn_buffer(c, c->in, c->in_len);
                        c->in = NULL;
                        c->in_len = 0;
                        if (r < 0)
                                conn_close(c, r);
                        else
                                conn_update_reading(c);
                }
                c->in = NULL;
                c->in_len = 0;
        }
        conn_release_clock(c);
        conn_unref(c);
}

/* ---- timeouts: lists in the server, one timer for all ---- */

/* The timeout that runs for c, and when it started (its key in the list of
 * that kind). The write timeout's list is ordered by when the flow was last
 * asked about progress, which it is a few times per timeout. */
static timeout_kind conn_timeout(conn *c, uint64_t *ret) {
        if (c->closed || c->upgraded)
                return TIMEOUT_NONE;
        const paf_http_limits *l = &c->server->limits;
        if (c->lingering) {
                *ret = c->phase_at;
                return TIMEOUT_LINGER;
        }
        if ((conn_writing(c) || c->shutdown_pending) && l->write_timeout_usec) {
                *ret = c->write_at > c->polled_at ? c->write_at : c->polled_at;
                return TIMEOUT_WRITE;
        }
        if (c->shutting_down)
                return TIMEOUT_NONE;
        switch (c->phase) {
        case PHASE_IDLE:
                if (!l->idle_timeout_usec)
                        return TIMEOUT_NONE;
                *ret = c->phase_at;
                return TIMEOUT_IDLE;
        case PHASE_HEADERS:
                if (!l->header_timeout_usec)
                        return TIMEOUT_NONE;
                *ret = c->phase_at;
                return TIMEOUT_HEADER;
        case PHASE_BODY:
                if (!l->body_timeout_usec || !conn_parser_runnable(c))
                        return TIMEOUT_NONE;
                *ret = c->req->body_at;
                return TIMEOUT_BODY;
        case PHASE_COMPLETE:
                return TIMEOUT_NONE;
        }
        return TIMEOUT_NONE;
}

/* How long after its key a connection of that kind is looked at. */
static uint64_t timeout_period(paf_http_server *s, timeout_kind kind) {
        const paf_http_limits *l = &s->limits;
        switch (kind) {
        case TIMEOUT_HEADER:
                return l->header_timeout_usec;
        case TIMEOUT_IDLE:
                return l->idle_timeout_usec;
        case TIMEOUT_BODY:
                return l->body_timeout_usec;
        case TIMEOUT_WRITE:
                /* Progress is asked for, not told: asking four times per
                 * timeout cuts a stalled reader at most a quarter of it late. */
                return l->write_timeout_usec / 4 ?: 1;
        case TIMEOUT_LINGER:
                return LINGER_USEC;
        case TIMEOUT_NONE:
        case _TIMEOUT_MAX:
                break;
        }
        return 0;
}

static void timeouts_remove(paf_http_server *s, conn *c) {
        if (c->tkind == TIMEOUT_NONE)
                return;
        conn_list *l = &s->timeouts[c->tkind];
        if (c->tprev)
                c->tprev->tnext = c->tnext;
        else
                l->head = c->tnext;
        if (c->tnext)
                c->tnext->tprev = c->tprev;
        else
                l->tail = c->tprev;
        c->tprev = c->tnext = NULL;
        c->tkind = TIMEOUT_NONE;
}

/* Keys are mostly "now", so that this appends; a connection that comes back
 * to a timeout started earlier (a body timeout after a write) walks back. */
static void timeouts_insert(paf_http_server *s, conn *c, timeout_kind kind, uint64_t key) {
        conn_list *l = &s->timeouts[kind];
        conn *after = l->tail;
        while (after && after->tkey > key)
                after = after->tprev;
        c->tkind = kind;
        c->tkey = key;
        c->tprev = after;
        c->tnext = after ? after->tnext : l->head;
        if (c->tnext)
                c->tnext->tprev = c;
        else
                l->tail = c;
        if (after)
                after->tnext = c;
        else
                l->head = c;
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata);

/* An armed timer that fires no later than needed stays: it finds nothing
 * due and re-arms itself, which spares an sd-event call per change. */
static void server_arm_timer(paf_http_server *s, uint64_t deadline) {
        if (s->timer_armed && s->timer_at <= deadline)
                return;
        int r;
        if (!s->timer) {
                r = sd_event_add_time(s->event, &s->timer, CLOCK_MONOTONIC, deadline,
                                      TIMER_ACCURACY_USEC, on_timer, s);
                if (r >= 0)
                        (void)sd_event_source_set_description(s->timer, "paf-http-timeouts");
        } else
                r = sd_event_source_set_time(s->timer, deadline);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
        if (r < 0) {
                paf_log(PAF_LOG_ERR, "http: cannot arm the timeouts' timer: %s", strerror(-r));
                return;
        }
        s->timer_at = deadline;
        s->timer_armed = true;
}

/* The timer at the earliest of the lists' heads, or off. */
static void server_rearm_timer(paf_http_server *s) {
        bool any = false;
        uint64_t first = 0;
        for (int k = TIMEOUT_NONE + 1; k < _TIMEOUT_MAX; k++) {
                conn *c = s->timeouts[k].head;
                if (!c)
                        continue;
                uint64_t at = c->tkey + timeout_period(s, (timeout_kind)k);
                if (!any || at < first)
                        first = at;
                any = true;
        }
        if (any) {
                s->timer_armed = false;
                server_arm_timer(s, first);
        } else if (s->timer_armed) {
                (void)sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                s->timer_armed = false;
        }
}

static void conn_update_timer(conn *c) {
        paf_http_server *s = c->server;
        if (!s)
                return;
        uint64_t key = 0;
        timeout_kind kind = conn_timeout(c, &key);
        if (kind == c->tkind && (kind == TIMEOUT_NONE || key == c->tkey))
                return;
        timeouts_remove(s, c);
        if (kind == TIMEOUT_NONE)
                return;
        timeouts_insert(s, c, kind, key);
        server_arm_timer(s, key + timeout_period(s, kind));
}

/* c is at the head of its list and due: check, then close it, or move it
 * (further down its list, or to another). */
static void conn_on_timeout(conn *c, uint64_t now) {
        paf_http_server *s = c->server;
        uint64_t key = 0;
        timeout_kind kind = conn_timeout(c, &key);
        if (kind != c->tkind || key != c->tkey) {
                /* Its state moved on without telling: catch up. */
                conn_update_timer(c);
                return;
        }
        const paf_http_limits *l = &s->limits;
        if (kind == TIMEOUT_WRITE) {
                /* Has the transport taken bytes since we last asked? */
                uint64_t progress;
                c->polled_at = now;
                if (paf_flow_get_write_progress(c->flow, NULL, &progress) >= 0 &&
                    progress > c->progress_at)
                        c->progress_at = progress;
                uint64_t last = c->write_at > c->progress_at ? c->write_at : c->progress_at;
                if (now < last + l->write_timeout_usec) {
                        conn_update_timer(c);
                        return;
                }
        }
        char reason[128], d[32];
        int status = 0;
        switch (kind) {
        case TIMEOUT_HEADER:
                fmt_duration(d, sizeof(d), l->header_timeout_usec);
                snprintf(reason, sizeof(reason), "header timeout (%s)", d);
                status = 408;
                break;
        case TIMEOUT_IDLE:
                fmt_duration(d, sizeof(d), l->idle_timeout_usec);
                snprintf(reason, sizeof(reason), "idle timeout (%s)", d);
                break;
        case TIMEOUT_BODY:
                fmt_duration(d, sizeof(d), l->body_timeout_usec);
                snprintf(reason, sizeof(reason), "body timeout (%s)", d);
                status = 408;
                break;
        case TIMEOUT_WRITE:
                fmt_duration(d, sizeof(d), l->write_timeout_usec);
                snprintf(reason, sizeof(reason), "write timeout (%s)", d);
                break;
        case TIMEOUT_LINGER:
        case TIMEOUT_NONE:
        case _TIMEOUT_MAX:
                conn_close(c, 0);
                return;
        }
        conn_ref(c);
        server_report(s, c, status, reason);
        conn_close(c, -ETIMEDOUT);
        conn_unref(c);
}

static void server_free_now(paf_http_server *s);

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        (void)source;
        (void)usec;
        paf_http_server *s = userdata;
        s->timer_armed = false;
        uint64_t now;
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                return 0;
        /* Closing runs user code (abort handlers), which may free the
         * server or change any list: each round looks at a head afresh. */
        s->dispatching++;
        unsigned n = 0;
        for (int k = TIMEOUT_NONE + 1; k < _TIMEOUT_MAX && !s->freeing; k++)
                for (; n < TIMEOUTS_PER_RUN && !s->freeing; n++) {
                        conn *c = s->timeouts[k].head;
                        if (!c || c->tkey + timeout_period(s, (timeout_kind)k) > now)
                                break;
                        conn_on_timeout(c, now);
                }
        s->dispatching--;
        if (s->freeing) {
                if (s->dispatching == 0)
                        server_free_now(s);
                return 0;
        }
        /* What is left due (more than one run's share) fires next
         * iteration: the rest of the loop has its turn in between. */
        server_rearm_timer(s);
        return 0;
}

/* ---- the server ---- */

static int on_done_defer(sd_event_source *source, void *userdata) {
        (void)source;
        paf_http_server *s = userdata;
        if (s->done_called || s->n_conns > 0)
                return 0;
        s->done_called = true;
        if (s->done)
                s->done(s->done_userdata);
        return 0;
}

/* Every connection counts, also those a listener still holds before handing
 * them to us (TLS handshakes): they cost the same file descriptor. At the
 * limit, accepting stops and new connections wait in the kernel's backlog. */
static void server_update_listeners(paf_http_server *s) {
        unsigned n = s->n_conns;
        for (size_t i = 0; i < s->n_listeners; i++)
                n += paf_listener_get_pending(s->listeners[i]);
        bool pause = s->limits.max_connections > 0 && n >= s->limits.max_connections;
        if (pause == s->listeners_paused)
                return;
        s->listeners_paused = pause;
        for (size_t i = 0; i < s->n_listeners; i++) {
                int r = pause ? paf_listener_stop(s->listeners[i])
                              : paf_listener_start(s->listeners[i]);
                if (r < 0)
                        paf_log(PAF_LOG_WARNING, "http: listener %s: cannot %s accepting: %s",
                                paf_listener_get_address(s->listeners[i]),
                                pause ? "pause" : "resume", strerror(-r));
        }
}

static void server_free_now(paf_http_server *s);

void http_server_dispatch_end(paf_http_server *s) {
        if (--s->dispatching == 0 && s->freeing)
                server_free_now(s);
}

void http_server_conn_gone(paf_http_server *s) {
        server_conn_gone(s);
}

static void server_conn_gone(paf_http_server *s) {
        if (s->freeing)
                return;
        server_update_listeners(s);
        if (s->stopping && s->n_conns == 0 && s->done_defer && !s->done_called)
                (void)sd_event_source_set_enabled(s->done_defer, SD_EVENT_ONESHOT);
}

PAF_EXPORT int paf_http_server_new(sd_event *event, paf_http_request_handler_t handler,
                                   paf_http_error_handler_t error_handler, void *userdata,
                                   paf_http_server **ret) {
        if (!event || !handler || !ret)
                return -EINVAL;
        paf_http_server *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        int r = paf_http_limits_load(&s->limits, NULL);
        if (r >= 0)
                r = paf_http2_settings_load(&s->h2, NULL);
        if (r < 0) {
                free(s);
                return r;
        }
        s->event = sd_event_ref(event);
        s->handler = handler;
        s->error_handler = error_handler;
        s->userdata = userdata;
        *ret = s;
        return 0;
}

static void server_free_now(paf_http_server *s) {
        paf_http_headers_free(s->extra);
        free(s->extra_text);
        sd_event_unref(s->event);
        free(s);
}

PAF_EXPORT paf_http_server *paf_http_server_free(paf_http_server *s) {
        if (!s || s->freeing)
                return NULL;
        s->freeing = true;
        for (size_t i = 0; i < s->n_listeners; i++)
                paf_listener_free(s->listeners[i]);
        free(s->listeners);
        s->listeners = NULL;
        s->n_listeners = 0;
        while (s->conns)
                conn_close(s->conns, -ECANCELED);
        while (s->h2_conns)
                h2_conn_close(s->h2_conns, -ECANCELED);
        /* Closed above, they only hold their queue's reference. */
        for (conn *c = s->kicks.head, *next; c; c = next) {
                next = c->kick_next;
                c->kick_next = NULL;
                c->kicked = false;
                conn_unref(c);
        }
        s->kicks.head = s->kicks.tail = NULL;
        while (s->spare_reqs) {
                paf_http_request *req = s->spare_reqs;
                s->spare_reqs = req->spare_next;
                req_free(req);
        }
        s->n_spare_reqs = 0;
        while (s->n_spare_bufs > 0)
                free(s->spare_bufs[--s->n_spare_bufs]);
        s->timer = sd_event_source_disable_unref(s->timer);
        s->kick = sd_event_source_disable_unref(s->kick);
        s->done_defer = sd_event_source_disable_unref(s->done_defer);
        if (s->dispatching == 0)
                server_free_now(s);
        return NULL;
}

PAF_EXPORT int paf_http_server_set_limits(paf_http_server *s, const paf_http_limits *limits) {
        if (!s || !limits || limits->max_header_bytes == 0 || limits->max_headers == 0)
                return -EINVAL;
        s->limits = *limits;
        /* The timeouts' lengths may have changed: every connection's. */
        for (conn *c = s->conns; c; c = c->next) {
                timeouts_remove(s, c);
                conn_update_timer(c);
        }
        for (h2_conn *c = s->h2_conns, *next; c; c = next) {
                next = h2_conn_next(c);
                h2_conn_update(c);
        }
        server_rearm_timer(s);
        server_update_listeners(s);
        return 0;
}

static void server_on_pending(paf_listener *l, unsigned pending, void *userdata) {
        (void)l;
        (void)pending;
        paf_http_server *s = userdata;
        if (!s->freeing)
                server_update_listeners(s);
}

static void server_on_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        paf_http_server *s = userdata;
        int r = paf_http_server_add_flow(s, flow);
        if (r < 0)
                paf_log(PAF_LOG_WARNING, "http: cannot serve a connection: %s", strerror(-r));
}

PAF_EXPORT int paf_http_server_add_listener(paf_http_server *s, paf_listener *l) {
        if (!s || !l)
                return -EINVAL;
        if (s->stopping || s->freeing) {
                paf_listener_free(l);
                return -ESHUTDOWN;
        }
        paf_listener **a = reallocarray(s->listeners, s->n_listeners + 1, sizeof(*a));
        if (!a) {
                paf_listener_free(l);
                return -ENOMEM;
        }
        s->listeners = a;
        s->listeners[s->n_listeners++] = l;
        int r = paf_listener_set_pending_handler(l, server_on_pending, s);
        if (r >= 0)
                r = paf_listener_set_accept_handler(l, server_on_accept, s);
        if (r >= 0 && s->listeners_paused)
                r = paf_listener_stop(l);
        if (r >= 0)
                server_update_listeners(s);
        return r < 0 ? r : 0;
}

PAF_EXPORT int paf_http_server_add_flow(paf_http_server *s, paf_flow *flow) {
        if (!flow)
                return -EINVAL;
        if (!s) {
                paf_flow_close(flow, NULL, NULL);
                return -EINVAL;
        }
        if (s->stopping || s->freeing) {
                paf_flow_close(flow, NULL, NULL);
                return -ESHUTDOWN;
        }
        if (s->h2.enabled) {
                /* A TLS connection comes to us handshaken: ALPN decided. */
                char alpn[16];
                if (paf_flow_query(flow, PAF_FLOW_QUERY_TLS_ALPN, alpn, sizeof(alpn)) >= 0 &&
                    strcmp(alpn, "h2") == 0)
                        return h2_conn_new(s, flow, false, NULL, 0);
        }
        conn *c = calloc(1, sizeof(*c));
        if (!c) {
                paf_flow_close(flow, NULL, NULL);
                return -ENOMEM;
        }
        c->n_ref = 1;
        c->flow = flow;
        c->server = s;
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        /* The header timeout runs from the accept: a silent client is a
         * slow one. */
        c->phase = PHASE_HEADERS;
        c->phase_at = conn_now(c);

        c->reading = true;
        int r = paf_flow_read_start(flow, conn_on_read, c);
        if (r < 0) {
                conn_close(c, r);
                return r;
        }
        conn_update_timer(c);
        server_update_listeners(s);
        return 0;
}

PAF_EXPORT int paf_http_server_stop(paf_http_server *s, paf_http_done_handler_t done,
                                    void *userdata) {
        if (!s)
                return -EINVAL;
        if (s->stopping)
                return -EALREADY;
        int r = sd_event_add_defer(s->event, &s->done_defer, on_done_defer, s);
        if (r < 0)
                return r;
        (void)sd_event_source_set_enabled(s->done_defer, SD_EVENT_OFF);
        s->stopping = true;
        s->done = done;
        s->done_userdata = userdata;

        for (size_t i = 0; i < s->n_listeners; i++)
                paf_listener_free(s->listeners[i]);
        free(s->listeners);
        s->listeners = NULL;
        s->n_listeners = 0;

        /* Idle connections go now, busy ones after their response. Closing
         * an idle connection runs no user code, so the list stays sound. */
        for (conn *c = s->conns, *next; c; c = next) {
                next = c->next;
                bool idle = !c->shutting_down && conn_between_requests(c) && !conn_writing(c);
                if (idle)
                        conn_close(c, 0);
                else
                        c->close_after = true;
        }
        /* GOAWAY, and each goes once its streams are done; running no user
         * code either. */
        for (h2_conn *c = s->h2_conns, *next; c; c = next) {
                next = h2_conn_next(c);
                h2_conn_stop(c);
        }
        if (s->n_conns == 0)
                (void)sd_event_source_set_enabled(s->done_defer, SD_EVENT_ONESHOT);
        return 0;
}

PAF_EXPORT int paf_http_server_set_response_headers(paf_http_server *s,
                                                    const paf_http_headers *headers) {
        if (!s)
                return -EINVAL;
        size_t n = paf_http_headers_count(headers), len = 0;
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(headers, i, &name, &value) < 0)
                        return -EINVAL;
                if (http_field_is_servers_own(name, strlen(name)))
                        return -EINVAL;
                len += strlen(name) + 2 + strlen(value) + 2;
        }
        paf_http_headers *copy = NULL;
        char *text = NULL;
        if (n > 0) {
                text = malloc(len + 1);
                if (text)
                        text[0] = '\0';
                int r = text ? paf_http_headers_new(&copy) : -ENOMEM;
                size_t at = 0;
                for (size_t i = 0; i < n && r >= 0; i++) {
                        const char *name, *value;
                        (void)paf_http_headers_get_nth(headers, i, &name, &value);
                        r = paf_http_headers_add(copy, name, value);
                        /* The text is for the engine's own answers, whose
                         * Content-Type is theirs. */
                        if (strcasecmp(name, "Content-Type") != 0)
                                at += (size_t)sprintf(text + at, "%s: %s\r\n", name, value);
                }
                if (r < 0) {
                        free(text);
                        paf_http_headers_free(copy);
                        return r;
                }
        }
        paf_http_headers_free(s->extra);
        free(s->extra_text);
        s->extra = copy;
        s->extra_text = text;
        s->extra_len = text ? strlen(text) : 0;
        return 0;
}

PAF_EXPORT int paf_http_server_set_http2(paf_http_server *s, const paf_http2_settings *settings) {
        if (!s || !settings || settings->max_concurrent_streams == 0 ||
            settings->initial_window == 0 || settings->initial_window > INT32_MAX ||
            settings->connection_window < 65535 || settings->connection_window > INT32_MAX ||
            settings->reset_burst == 0 || settings->reset_rate == 0 || settings->max_output == 0)
                return -EINVAL;
        /* For the connections to come: those open keep what they
         * advertised (a SETTINGS change would race their peers). */
        s->h2 = *settings;
        return 0;
}

PAF_EXPORT unsigned paf_http_server_get_n_connections(paf_http_server *s) {
        return s ? s->n_conns : 0;
}

PAF_EXPORT uint64_t paf_http_server_get_n_requests(paf_http_server *s) {
        return s ? s->n_requests : 0;
}

/* ---- request accessors ---- */

PAF_EXPORT const char *paf_http_request_get_method(paf_http_request *req) {
        return req ? req->method : NULL;
}

PAF_EXPORT const char *paf_http_request_get_target(paf_http_request *req) {
        return req && req->target != NO_OFFSET ? req->arena + req->target : NULL;
}

PAF_EXPORT int paf_http_request_get_version(paf_http_request *req) {
        return req ? req->version : -EINVAL;
}

static paf_http_headers *build_headers(paf_http_request *req, size_t from, size_t to) {
        paf_http_headers *h;
        if (paf_http_headers_new(&h) < 0)
                return NULL;
        for (size_t i = from; i < to; i++)
                if (paf_http_headers_add(h, field_name(req, i), field_value(req, i)) < 0) {
                        /* llhttp checked the name, we checked the value:
                         * only memory can fail here. */
                        return paf_http_headers_free(h);
                }
        return h;
}

PAF_EXPORT const paf_http_headers *paf_http_request_get_headers(paf_http_request *req) {
        if (!req || !req->method)
                return NULL;
        /* Built on demand: most handlers never ask, and the engine reads its
         * own fields from the arena. */
        if (!req->headers)
                req->headers = build_headers(req, 0, req->n_headers);
        return req->headers;
}

PAF_EXPORT size_t paf_http_request_get_n_fields(paf_http_request *req) {
        return req && req->method ? req->n_headers : 0;
}

PAF_EXPORT int paf_http_request_get_field(paf_http_request *req, size_t i, const char **name,
                                          const char **value) {
        if (!req || !req->method)
                return -EINVAL;
        if (i >= req->n_headers)
                return -ENOENT;
        if (name)
                *name = field_name(req, i);
        if (value)
                *value = field_value(req, i);
        return 0;
}

PAF_EXPORT const paf_http_headers *paf_http_request_get_trailers(paf_http_request *req) {
        if (!req || !req->body_complete || req->n_fields == req->n_headers)
                return NULL;
        if (!req->trailers)
                req->trailers = build_headers(req, req->n_headers, req->n_fields);
        return req->trailers;
}

PAF_EXPORT const char *paf_http_request_get_peer(paf_http_request *req) {
        return req ? req->peer : NULL;
}

PAF_EXPORT const char *paf_http_request_get_local(paf_http_request *req) {
        return req ? req->local : NULL;
}

PAF_EXPORT paf_flow *paf_http_request_get_flow(paf_http_request *req) {
        if (req && req->h2)
                return h2_request_get_flow(req);
        return req && req->conn ? req->conn->flow : NULL;
}

PAF_EXPORT int64_t paf_http_request_get_content_length(paf_http_request *req) {
        return req ? req->content_length : 0;
}

PAF_EXPORT void paf_http_request_set_userdata(paf_http_request *req, void *userdata) {
        if (req)
                req->userdata = userdata;
}

PAF_EXPORT void *paf_http_request_get_userdata(paf_http_request *req) {
        return req ? req->userdata : NULL;
}

PAF_EXPORT void paf_http_request_set_abort_handler(paf_http_request *req,
                                                   paf_http_abort_handler_t handler,
                                                   void *userdata) {
        if (!req)
                return;
        req->abort_handler = handler;
        req->abort_userdata = userdata;
}

/* ---- request body ---- */

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

PAF_EXPORT int paf_http_request_read_body(paf_http_request *req, paf_http_body_handler_t handler,
                                          void *userdata) {
        if (!req || !handler || !req->handler_owned)
                return -EINVAL;
        if (req->h2)
                return h2_request_read_body(req, handler, userdata);
        conn *c = req->conn;
        if (!c)
                return -ECONNRESET;
        bool first = !req->body_handler;
        if (first && req->expect_continue && !req->continue_sent && !req->body_complete &&
            req->resp == RESP_NONE) {
                /* Only now: the client waits for it before sending the body. */
                struct iovec iov = {(void *)continue_line, sizeof(continue_line) - 1};
                int r = conn_write(c, req, &iov, 1, false);
                if (r < 0)
                        return r;
                req->continue_sent = true;
        }
        req->body_handler = handler;
        req->body_userdata = userdata;
        c->req->body_at = conn_now(c);
        conn_kick(c);
        return 0;
}

PAF_EXPORT int paf_http_request_pause_body(paf_http_request *req) {
        if (!req)
                return -EINVAL;
        if (req->h2)
                return h2_request_pause_body(req);
        if (!req->conn)
                return -ECONNRESET;
        req->body_paused = true;
        if (!req->conn->running) {
                conn_update_reading(req->conn);
                conn_update_timer(req->conn);
        }
        return 0;
}

PAF_EXPORT int paf_http_request_resume_body(paf_http_request *req) {
        if (!req)
                return -EINVAL;
        if (req->h2)
                return h2_request_resume_body(req);
        if (!req->conn)
                return -ECONNRESET;
        if (!req->body_paused)
                return 0;
        req->body_paused = false;
        req->body_at = conn_now(req->conn);
        conn_kick(req->conn);
        return 0;
}

/* ---- responses ---- */

static bool is_name(const char *name, const char *want) {
        return strcasecmp(name, want) == 0;
}

static int resp_begin(paf_http_request *req, int status, const paf_http_headers *headers,
                      const char *content_type, int64_t content_length) {
        conn *c = req->conn;
        if (status < 200 || status > 999 || content_length < -1)
                return -EINVAL;
        if (content_type && (!*content_type || strpbrk(content_type, "\r\n")))
                return -EINVAL;
        if (req->resp != RESP_NONE || !req->handler_owned)
                return -EINVAL;

        req->no_body = status == 204 || status == 304;
        req->send_body = !req->no_body && !req->head;
        if (req->no_body)
                req->framing = FRAMING_NONE;
        else if (content_length >= 0) {
                req->framing = FRAMING_LENGTH;
                req->remaining = (uint64_t)content_length;
        } else if (req->version >= 11)
                req->framing = FRAMING_CHUNKED;
        else
                req->framing = FRAMING_CLOSE;

        if (req->framing == FRAMING_CLOSE && req->send_body)
                c->close_after = true;
        size_t wire_len;
        unsigned names;
        const char *wire = http_headers_wire(headers, &wire_len, &names);
        /* A frozen list says which fields it has: most have no Connection. */
        if (headers && (!wire || (names & HTTP_WIRE_CONNECTION)) &&
            paf_http_headers_has_token(headers, "Connection", "close"))
                c->close_after = true;
        if (c->phase == PHASE_BODY && !req->body_complete) {
                /* The body will have to go: drain a small one, give up on a
                 * large one, and on one the client may never send. */
                if (req->expect_continue && !req->continue_sent)
                        c->close_after = true;
                else if (req->content_length >= 0 && c->req->parser.content_length > DISCARD_MAX)
                        c->close_after = true;
        }

        paf_http_server *s = c->server;
        req->out_len = 0;
        req->out_oom = false;
        /* The head goes out in few pieces: each append costs more than the
         * bytes it copies, for a response this small. */
        char line[64];
        const char *reason = paf_http_status_reason(status);
        size_t reason_len = strlen(reason);
        if (reason_len <= sizeof(line) - 16) {
                memcpy(line, "HTTP/1.1 ", 9);
                line[9] = (char)('0' + status / 100);
                line[10] = (char)('0' + status / 10 % 10);
                line[11] = (char)('0' + status % 10);
                line[12] = ' ';
                memcpy(line + 13, reason, reason_len);
                memcpy(line + 13 + reason_len, "\r\n", 2);
                out_append(req, line, 15 + reason_len);
        } else {
                OUT_LIT(req, "HTTP/1.1 ");
                out_append(req, line, fmt_u64(line, (uint64_t)status));
                OUT_LIT(req, " ");
                out_append(req, reason, reason_len);
                OUT_LIT(req, "\r\n");
        }

        bool has_date = false, has_server = false, has_connection = false;
        size_t n = paf_http_headers_count(headers);
        /* A frozen list (a static file's) goes as one block, unless it has
         * fields this response writes its own way. */
        if (wire && !(names & (HTTP_WIRE_CONNECTION | HTTP_WIRE_CONTENT_LENGTH |
                               HTTP_WIRE_TRANSFER_ENCODING)) &&
            !(content_type && (names & HTTP_WIRE_CONTENT_TYPE))) {
                out_append(req, wire, wire_len);
                has_date = names & HTTP_WIRE_DATE;
                has_server = names & HTTP_WIRE_SERVER;
                n = 0;
        }
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(headers, i, &name, &value) < 0)
                        continue;
                /* The engine owns the framing. HEAD keeps a Content-Length the
                 * handler states: it describes the GET response. The length
                 * picks the one name to compare: most fields are none of
                 * these. */
                size_t len = strlen(name);
                bool skip = false;
                switch (len) {
                case 4:
                        has_date = has_date || is_name(name, "Date");
                        break;
                case 6:
                        has_server = has_server || is_name(name, "Server");
                        break;
                case 10:
                        if (is_name(name, "Connection")) {
                                skip = c->close_after;
                                has_connection = has_connection || !skip;
                        }
                        break;
                case 12:
                        skip = content_type && is_name(name, "Content-Type");
                        break;
                case 14:
                        skip = is_name(name, "Content-Length") &&
                               (!req->head || content_length >= 0);
                        break;
                case 17:
                        skip = is_name(name, "Transfer-Encoding");
                        break;
                }
                if (skip)
                        continue;
                out_append(req, name, len);
                OUT_LIT(req, ": ");
                out_str(req, value);
                OUT_LIT(req, "\r\n");
        }
        if (content_type) {
                OUT_LIT(req, "Content-Type: ");
                out_str(req, content_type);
                OUT_LIT(req, "\r\n");
        }
        if (!has_date && !has_server) {
                (void)server_date_at(s, conn_now(c));
                out_append(req, s->date_fields, s->date_fields_len);
        } else if (!has_date)
                out_field(req, "Date", server_date_at(s, conn_now(c)));
        else if (!has_server)
                OUT_LIT(req, "Server: paf/" PAF_VERSION "\r\n");
        if (s->extra) {
                /* The server's own fields, unless the handler set them. */
                size_t m = paf_http_headers_count(s->extra);
                for (size_t i = 0; i < m; i++) {
                        const char *name, *value;
                        (void)paf_http_headers_get_nth(s->extra, i, &name, &value);
                        if (!paf_http_headers_get(headers, name) &&
                            !(content_type && is_name(name, "Content-Type")))
                                out_field(req, name, value);
                }
        }
        bool keep_alive_10 = !c->close_after && req->version == 10 && !has_connection;
        if (req->framing == FRAMING_LENGTH && !c->close_after && !keep_alive_10) {
                /* The usual end, in one piece. */
                memcpy(line, "Content-Length: ", 16);
                size_t k = 16 + fmt_u64(line + 16, (uint64_t)content_length);
                memcpy(line + k, "\r\n\r\n", 4);
                out_append(req, line, k + 4);
        } else {
                if (req->framing == FRAMING_LENGTH) {
                        OUT_LIT(req, "Content-Length: ");
                        out_u64(req, (uint64_t)content_length);
                        OUT_LIT(req, "\r\n");
                } else if (req->framing == FRAMING_CHUNKED)
                        OUT_LIT(req, "Transfer-Encoding: chunked\r\n");
                if (c->close_after)
                        OUT_LIT(req, "Connection: close\r\n");
                else if (keep_alive_10)
                        OUT_LIT(req, "Connection: keep-alive\r\n");
                OUT_LIT(req, "\r\n");
        }
        if (req->out_oom)
                return -ENOMEM;
        req->resp = RESP_STARTED;
        req->head_pending = true;
        return 0;
}

PAF_EXPORT int paf_http_response_start(paf_http_request *req, int status,
                                       const paf_http_headers *headers, int64_t content_length) {
        if (!req)
                return -EINVAL;
        if (req->h2)
                return h2_response_start(req, status, headers, NULL, content_length);
        if (!req->conn)
                return -ECONNRESET;
        return resp_begin(req, status, headers, NULL, content_length);
}

PAF_EXPORT int paf_http_response_write(paf_http_request *req, const void *data, size_t len,
                                       paf_http_write_handler_t handler, void *userdata) {
        if (!req || (len > 0 && !data))
                return -EINVAL;
        if (req->h2)
                return h2_response_write(req, data, len, handler, userdata);
        conn *c = req->conn;
        if (!c)
                return -ECONNRESET;
        if (req->resp != RESP_STARTED)
                return -EINVAL;
        if (req->user_write_pending)
                return -EBUSY;
        if (req->no_body && len > 0)
                return -EINVAL;
        if (req->framing == FRAMING_LENGTH && len > req->remaining)
                return -EINVAL;

        struct iovec iov[4];
        size_t n = 0;
        if (req->head_pending)
                iov[n++] = (struct iovec){req->out, req->out_len};
        if (req->send_body && len > 0) {
                if (req->framing == FRAMING_CHUNKED) {
                        static const char hex[] = "0123456789abcdef";
                        char tmp[20];
                        size_t k = 0;
                        for (size_t v = len; v; v >>= 4)
                                tmp[k++] = hex[v & 0xf];
                        size_t m = 0;
                        while (k > 0)
                                req->chunk_prefix[m++] = tmp[--k];
                        req->chunk_prefix[m++] = '\r';
                        req->chunk_prefix[m++] = '\n';
                        iov[n++] = (struct iovec){req->chunk_prefix, m};
                        iov[n++] = (struct iovec){(void *)data, len};
                        iov[n++] = (struct iovec){(void *)"\r\n", 2};
                } else
                        iov[n++] = (struct iovec){(void *)data, len};
        }
        /* Nothing to send (HEAD) still goes through the flow: the completion
         * then comes from the loop, in order with the others. */
        int r = conn_write(c, req, iov, n, true);
        if (r < 0)
                return r;
        req->head_pending = false;
        if (req->framing == FRAMING_LENGTH)
                req->remaining -= len;
        req->user_write_pending = true;
        req->write_handler = handler;
        req->write_userdata = userdata;
        return 0;
}

/* A file body piece: as conn_write(), through the flow's send_file. The
 * flow orders it after what is queued on it: bytes the engine still holds
 * back (a head not written yet) must be queued before. */
static int conn_send_file(conn *c, paf_http_request *req, int fd, uint64_t offset, size_t len,
                          bool user) {
        int r = paf_flow_send_file(c->flow, fd, offset, len,
                                   user ? on_user_write_done : on_engine_write_done, req);
        if (r < 0)
                return r;
        conn_wrote(c, req);
        return 0;
}

PAF_EXPORT int paf_http_response_send_file(paf_http_request *req, int fd, uint64_t offset,
                                           uint64_t len, paf_http_write_handler_t handler,
                                           void *userdata) {
        if (!req || fd < 0)
                return -EINVAL;
        if (req->h2)
                return h2_response_send_file(req, fd, offset, len, handler, userdata);
        conn *c = req->conn;
        if (!c)
                return -ECONNRESET;
        if (req->resp != RESP_STARTED)
                return -EINVAL;
        if (req->user_write_pending)
                return -EBUSY;
        if (req->no_body && len > 0)
                return -EINVAL;
        if (req->framing == FRAMING_LENGTH && len > req->remaining)
                return -EINVAL;
        if (len > SIZE_MAX || offset > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - offset)
                return -EINVAL;
        if (!req->send_body || len == 0) {
                /* HEAD: the head alone, and the completion from the loop. */
                int r = paf_http_response_write(req, NULL, 0, handler, userdata);
                if (r >= 0 && req->framing == FRAMING_LENGTH)
                        req->remaining -= len;
                return r;
        }

        /* The head (and a chunk's size line) as a write, then the file: the
         * flow keeps them in order. */
        struct iovec iov[2];
        size_t n = 0;
        if (req->head_pending)
                iov[n++] = (struct iovec){req->out, req->out_len};
        bool chunked = req->framing == FRAMING_CHUNKED;
        if (chunked) {
                int k = snprintf(req->chunk_prefix, sizeof(req->chunk_prefix), "%" PRIx64 "\r\n",
                                 len);
                iov[n++] = (struct iovec){req->chunk_prefix, (size_t)k};
        }
        int r = n > 0 ? conn_write(c, req, iov, n, false) : 0;
        if (r < 0)
                return r;
        req->head_pending = false;
        /* Past this point the head is queued: a failure leaves the response
         * short of what it announced, and finishing it closes the
         * connection. */
        r = conn_send_file(c, req, fd, offset, (size_t)len, !chunked);
        if (r >= 0 && chunked) {
                struct iovec end = {(void *)"\r\n", 2};
                r = conn_write(c, req, &end, 1, true);
        }
        if (r < 0)
                return r;
        if (req->framing == FRAMING_LENGTH)
                req->remaining -= len;
        req->user_write_pending = true;
        req->write_handler = handler;
        req->write_userdata = userdata;
        return 0;
}

static void trail_append(paf_http_request *req, const char *s, size_t len) {
        if (req->trail_size - req->trail_len < len) {
                size_t n = req->trail_size ? req->trail_size : 128;
                while (n - req->trail_len < len)
                        n *= 2;
                char *t = realloc(req->trail, n);
                if (!t) {
                        req->out_oom = true;
                        return;
                }
                req->trail = t;
                req->trail_size = n;
        }
        memcpy(req->trail + req->trail_len, s, len);
        req->trail_len += len;
}

/* The response is complete on our side: the connection goes on to the
 * next request now (its writes need not be done), and the request goes
 * once they are. */
static void resp_finished(paf_http_request *req) {
        conn *c = req->conn;
        req->resp = RESP_FINISHED;
        req->head_pending = false;
        req_release(req);
        conn_kick(c);
}

PAF_EXPORT int paf_http_response_finish(paf_http_request *req, const paf_http_headers *trailers) {
        if (!req)
                return -EINVAL;
        if (req->h2)
                return h2_response_finish(req, trailers);
        conn *c = req->conn;
        if (!c) {
                req_release(req);
                return -ECONNRESET;
        }
        if (req->resp != RESP_STARTED)
                return -EINVAL;

        struct iovec iov[2];
        size_t n = 0;
        if (req->head_pending)
                iov[n++] = (struct iovec){req->out, req->out_len};
        if (req->framing == FRAMING_CHUNKED && req->send_body) {
                req->trail_len = 0;
                req->out_oom = false;
                trail_append(req, "0\r\n", 3);
                size_t count = paf_http_headers_count(trailers);
                for (size_t i = 0; i < count; i++) {
                        const char *name, *value;
                        if (paf_http_headers_get_nth(trailers, i, &name, &value) < 0)
                                continue;
                        trail_append(req, name, strlen(name));
                        trail_append(req, ": ", 2);
                        trail_append(req, value, strlen(value));
                        trail_append(req, "\r\n", 2);
                }
                trail_append(req, "\r\n", 2);
                if (req->out_oom)
                        return -ENOMEM;
                iov[n++] = (struct iovec){req->trail, req->trail_len};
        }
        if (req->framing == FRAMING_LENGTH && req->remaining > 0 && req->send_body) {
                /* The client waits for bytes that will not come: only closing
                 * tells it. */
                paf_log(PAF_LOG_WARNING,
                        "http %s: response to %s %s ended %" PRIu64
                        " bytes short of its Content-Length; closing",
                        req->peer, req->method, paf_http_request_get_target(req), req->remaining);
                c->close_after = true;
        }
        if (n > 0) {
                int r = conn_write(c, req, iov, n, false);
                if (r < 0) {
                        req->resp = RESP_FINISHED;
                        req_release(req);
                        conn_close(c, r);
                        return r;
                }
        }
        resp_finished(req);
        return 0;
}

PAF_EXPORT int paf_http_respond(paf_http_request *req, int status, const char *content_type,
                                const void *body, size_t len) {
        if (!req || (len > 0 && !body))
                return -EINVAL;
        if (req->h2)
                return h2_respond(req, status, content_type, body, len);
        conn *c = req->conn;
        if (!c) {
                req_release(req);
                return -ECONNRESET;
        }
        if ((status == 204 || status == 304) && len > 0)
                return -EINVAL;
        if (len > INT64_MAX)
                return -EINVAL;
        int r = resp_begin(req, status, NULL, content_type, (int64_t)len);
        if (r < 0)
                return r;
        if (req->send_body)
                out_append(req, body, len);
        if (req->out_oom) {
                req->resp = RESP_NONE;
                return -ENOMEM;
        }
        /* Head and body in one buffer: one write, one syscall. */
        struct iovec iov = {req->out, req->out_len};
        r = conn_write(c, req, &iov, 1, false);
        if (r < 0) {
                req->resp = RESP_NONE;
                return r;
        }
        req->remaining = 0;
        resp_finished(req);
        return 0;
}

/* ---- upgrade: a flow that first delivers the bytes read past the request ---- */

typedef struct prefix_flow {
        paf_flow *flow; /* ours, the one handed out */
        paf_flow *inner;
        char *data;
        size_t len, pos;
        sd_event_source *defer;
        bool reading, closed;
        bool detached; /* never handed out: closing leaves the inner flow alone */
} prefix_flow;

static void prefix_on_inner_read(paf_flow *inner, const void *data, size_t len, int error,
                                 void *userdata) {
        (void)inner;
        prefix_flow *pf = userdata;
        paf_flow_deliver(pf->flow, data, len, error);
}

static int prefix_on_defer(sd_event_source *source, void *userdata) {
        (void)source;
        prefix_flow *pf = userdata;
        if (pf->closed || !pf->reading)
                return 0;
        if (pf->pos < pf->len) {
                const char *p = pf->data + pf->pos;
                size_t n = pf->len - pf->pos;
                pf->pos = pf->len;
                /* The core keeps the implementation alive during deliver. */
                paf_flow_deliver(pf->flow, p, n, 0);
        }
        if (!pf->closed && pf->reading) {
                int r = paf_flow_read_start(pf->inner, prefix_on_inner_read, pf);
                if (r < 0)
                        paf_flow_deliver(pf->flow, NULL, 0, r);
        }
        return 0;
}

static int prefix_read_start(paf_flow *flow) {
        prefix_flow *pf = paf_flow_get_impl(flow);
        pf->reading = true;
        if (pf->pos < pf->len)
                return sd_event_source_set_enabled(pf->defer, SD_EVENT_ONESHOT);
        return paf_flow_read_start(pf->inner, prefix_on_inner_read, pf);
}

static int prefix_read_stop(paf_flow *flow) {
        prefix_flow *pf = paf_flow_get_impl(flow);
        pf->reading = false;
        (void)sd_event_source_set_enabled(pf->defer, SD_EVENT_OFF);
        return paf_flow_read_stop(pf->inner);
}

static void prefix_on_inner_write(paf_flow *inner, int error, void *userdata) {
        (void)inner;
        prefix_flow *pf = userdata;
        if (!pf->closed)
                paf_flow_write_done(pf->flow, error);
}

static int prefix_write(paf_flow *flow, const struct iovec *iov, size_t n_iov) {
        prefix_flow *pf = paf_flow_get_impl(flow);
        return paf_flow_write(pf->inner, iov, n_iov, prefix_on_inner_write, pf);
}

static int prefix_shutdown(paf_flow *flow) {
        prefix_flow *pf = paf_flow_get_impl(flow);
        return paf_flow_shutdown(pf->inner, NULL, NULL);
}

static void prefix_on_inner_closed(paf_flow *inner, void *userdata) {
        (void)inner;
        prefix_flow *pf = userdata;
        free(pf->data);
        free(pf);
}

static void prefix_close(paf_flow *flow) {
        prefix_flow *pf = paf_flow_get_impl(flow);
        pf->closed = true;
        pf->defer = sd_event_source_disable_unref(pf->defer);
        if (pf->detached) {
                free(pf->data);
                free(pf);
                return;
        }
        /* Freed once the inner flow ran its last completion (which points
         * at pf). */
        paf_flow_close(pf->inner, prefix_on_inner_closed, pf);
}

static int prefix_query(paf_flow *flow, int what, void *ret, size_t size) {
        prefix_flow *pf = paf_flow_get_impl(flow);
        return paf_flow_query(pf->inner, what, ret, size);
}

static const paf_flow_ops prefix_flow_ops = {
        .struct_size = sizeof(paf_flow_ops),
        .read_start = prefix_read_start,
        .read_stop = prefix_read_stop,
        .write = prefix_write,
        .shutdown = prefix_shutdown,
        .close = prefix_close,
        .query = prefix_query,
};

static int prefix_flow_new(paf_flow *inner, const char *data, size_t len, paf_flow **ret) {
        prefix_flow *pf = calloc(1, sizeof(*pf));
        if (!pf)
                return -ENOMEM;
        pf->inner = inner;
        pf->data = malloc(len);
        if (!pf->data) {
                free(pf);
                return -ENOMEM;
        }
        memcpy(pf->data, data, len);
        pf->len = len;
        sd_event *event = paf_flow_get_event(inner);
        int r = sd_event_add_defer(event, &pf->defer, prefix_on_defer, pf);
        if (r >= 0)
                r = sd_event_source_set_enabled(pf->defer, SD_EVENT_OFF);
        if (r >= 0)
                r = paf_flow_new(event, &prefix_flow_ops, pf, paf_flow_get_protocol(inner),
                                 paf_flow_get_peer(inner), paf_flow_get_local(inner), &pf->flow);
        if (r < 0) {
                sd_event_source_disable_unref(pf->defer);
                free(pf->data);
                free(pf);
                return r;
        }
        *ret = pf->flow;
        return 0;
}

PAF_EXPORT int paf_http_request_upgrade(paf_http_request *req, const paf_http_headers *headers,
                                        paf_flow **ret) {
        if (!req || !ret)
                return -EINVAL;
        if (req->h2)
                return -EPROTONOSUPPORT; /* no Upgrade in HTTP/2 (RFC 9113 §8.6) */
        conn *c = req->conn;
        if (!c) {
                req_release(req);
                return -ECONNRESET;
        }
        if (req->resp != RESP_NONE || !req->handler_owned)
                return -EINVAL;
        if (c->phase != PHASE_COMPLETE)
                return -EBUSY; /* the request body is still coming */

        req->out_len = 0;
        req->out_oom = false;
        OUT_LIT(req, "HTTP/1.1 101 Switching Protocols\r\n");
        size_t n = paf_http_headers_count(headers);
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(headers, i, &name, &value) >= 0)
                        out_field(req, name, value);
        }
        OUT_LIT(req, "\r\n");
        if (req->out_oom)
                return -ENOMEM;

        paf_flow *flow = c->flow, *out = flow;
        const char *rest;
        size_t rest_len;
        conn_input(c, &rest, &rest_len);
        if (rest_len > 0) {
                int r = prefix_flow_new(flow, rest, rest_len, &out);
                if (r < 0)
                        return r;
        }
        struct iovec iov = {req->out, req->out_len};
        int r = conn_write(c, req, &iov, 1, false);
        if (r < 0) {
                if (out != flow) {
                        prefix_flow *pf = paf_flow_get_impl(out);
                        pf->detached = true;
                        paf_flow_close(out, NULL, NULL);
                }
                return r;
        }
        (void)paf_flow_read_stop(flow);
        c->upgraded = true;
        c->buf_start = c->buf_end = 0;
        c->in = NULL;
        c->in_len = 0;
        req->resp = RESP_FINISHED;
        req_release(req);
        conn_close(c, 0);
        *ret = out;
        return 0;
}
