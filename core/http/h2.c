/* core/http/h2.c — the HTTP/2 server engine (RFC 9113), through libnghttp2,
 * behind the same paf_http_request API as HTTP/1.1. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "core/http/engine.h"
#include "core/http/h2-compat.h"

/*
 * How it runs.
 *
 * nghttp2 parses and frames; this file moves bytes and runs the user's
 * code. nghttp2's callbacks only record (a stream's headers, a body piece,
 * a close): the handler, the body reader, write completions and aborts run
 * from the driver (conn_run), after nghttp2 returned, never from inside
 * it, so that user code may do anything, freeing the server included.
 *
 * Input: each delivery of the flow goes to nghttp2 whole. A request body
 * is copied into its stream's buffer and consumed (its window given back)
 * only once the reader took it: the peer's flow-control window is what
 * bounds that buffer, and pausing the body is not giving the window back.
 *
 * Output: nghttp2 serializes frames into blocks of ours, written on the
 * flow as they fill (the flow joins them into few system calls). File
 * bodies go as DATA frames whose payload the flow sends from the file
 * (paf_flow_send_file: sendfile on sockets), with only the 9 bytes of the
 * frame header copied. What is queued on the flow and not written yet is
 * bounded ([http2] max-output): beyond, nghttp2 is told to wait, and the
 * connection stops reading, so a peer that floods PINGs or SETTINGS
 * without reading their answers grows nothing.
 *
 * Lifetimes: a stream lives in its request object (req->h2, freed with
 * it). The request is held by the stream while nghttp2 knows the stream,
 * by the handler from its call to the end of its response, by the
 * driver's queue while the stream waits there, and by every file piece in
 * flight. The connection is held by each of its writes in flight.
 *
 * Abuse: every stream reset by the peer and every stream error the peer
 * makes us send spends a token of a per-connection budget ([http2]
 * reset-burst, regained at reset-rate per second); an empty budget is
 * GOAWAY(ENHANCE_YOUR_CALM). That covers rapid reset (CVE-2023-44487) and
 * the resets a client provokes (MadeYouReset, CVE-2025-8671), which
 * nghttp2 1.52 does not count. Header lists are counted against the [http]
 * limits as they are decoded (the advertised SETTINGS_MAX_HEADER_LIST_SIZE
 * alone binds nobody), and CONTINUATION frames are capped by nghttp2.
 */

#define USEC_PER_SEC UINT64_C(1000000)
#define OUT_BLOCK (32 * 1024)
/* After a shutdown notice, the GOAWAY with the last stream waits this long:
 * about a round trip, for requests already on their way. */
#define STOP_GRACE_USEC (100 * 1000)
/* A connection that sent its GOAWAY for an error waits this long at most for
 * it to leave before it closes. */
#define CLOSE_GRACE_USEC (1 * USEC_PER_SEC)
/* … or until it sent this much more. */
#define LINGER_BYTES (1024 * 1024)
#define TIMER_ACCURACY_USEC (10 * 1000)
/* Streams handled per driver run: a busy connection cannot starve the loop. */
#define STREAMS_PER_RUN 128
/* The method of a request, at most (a longer one is refused with 501). */
#define METHOD_MAX 32

typedef struct out_block {
        h2_conn *c;
        size_t len, size;
        char data[];
} out_block;

typedef struct file_piece {
        h2_conn *c;
        paf_http_request *req;
        size_t len;
} file_piece;

struct h2_stream {
        h2_conn *c; /* NULL once the connection went */
        paf_http_request *req;
        int32_t id;
        h2_stream *prev, *next; /* the connection's streams */
        h2_stream *work_next;   /* the driver's queue */
        bool queued;

        /* The request as it comes. */
        char method[METHOD_MAX];
        uint32_t path, path_len;
        uint32_t authority, authority_len;
        bool has_host;
        char *cookie; /* the cookie crumbs, joined (RFC 9113 §8.2.3) */
        size_t cookie_len;
        size_t header_bytes;
        int refuse; /* 0, or the status the engine answers instead of the handler */
        char refuse_reason[128];
        bool in_trailers;
        bool ready;                 /* the headers are complete: dispatch */
        bool dispatched;            /* the handler was called (or the engine answered) */
        bool ng_closed;             /* nghttp2 closed the stream */
        bool peer_reset, own_reset; /* who reset it, if one did */
        bool has_length;
        bool expect_continue, continue_sent;
        uint32_t ng_error;
        bool released; /* the stream's reference on the request dropped */

        /* Its body. */
        char *body;
        size_t body_len, body_size;
        uint64_t body_bytes;
        uint64_t body_at;
        bool body_complete, body_end_told, discard;

        /* The response. */
        bool started, finished, eof;
        bool with_body;    /* a data provider: DATA frames follow the HEADERS */
        bool no_body;      /* 204, 304, HEAD: writes complete and send nothing */
        bool deferred;     /* the data provider waits for a write or the finish */
        int64_t remaining; /* of the Content-Length, -1 without */
        const char *wdata;
        size_t wlen, woff;
        char *own; /* paf_http_respond()'s copy of the body */
        int fd;
        uint64_t foff, fleft;
        unsigned files_in_flight;
        bool write_pending, write_done; /* a user write, and its completion due */
        int write_error;
        bool write_cut;
        paf_http_write_handler_t write_handler;
        void *write_userdata;
        nghttp2_nv *trailers;
        size_t n_trailers;
        char *trailer_text;
        bool abort_due;
        int abort_error;
};

struct h2_conn {
        unsigned n_ref;
        paf_http_server *s; /* NULL once closed */
        h2_conn *prev, *next;
        paf_flow *flow;
        nghttp2_session *ng;
        sd_event_source *timer, *defer;
        uint64_t timer_at;
        char *peer; /* for the error handler, after the flow went */

        bool closed, closing; /* closing: an error's GOAWAY is on its way, then close */
        bool lingering;       /* all written, the write side shut: draining input */
        bool reading, read_eof;
        bool stopping, goaway_final;
        bool running, rerun;
        unsigned ng_depth; /* inside a call into nghttp2 */

        char *pending_in; /* what came with the preface, for the first run */
        size_t pending_in_len;

        out_block *cur;
        size_t queued; /* bytes handed to the flow, not written yet */

        h2_stream *streams;
        unsigned n_streams; /* known to nghttp2 */
        h2_stream *work_head, *work_tail;

        double tokens;
        uint64_t tokens_at;

        /* progress_at: when the transport last took bytes of ours (or
         * when output began waiting); write-timeout counts from it. */
        uint64_t created_at, idle_at, progress_at, data_at, stop_at, closing_at;
        size_t drained;    /* while lingering */
        bool session_dead; /* nghttp2 failed: nothing more of it is sent */
        bool any_stream;
};

static void conn_kick(h2_conn *c);
static void conn_close(h2_conn *c, int error, const char *reason);
static void conn_flush(h2_conn *c);
static void conn_arm(h2_conn *c);
static void conn_linger(h2_conn *c);
static void stream_queue(h2_stream *st);
static void stream_reset(nghttp2_session *ng, h2_stream *st, uint32_t code);
static void stream_write_complete(h2_stream *st);
static void h2_on_read(paf_flow *flow, const void *data, size_t len, int error, void *userdata);

/* ---- small helpers ---- */

static uint64_t conn_now(h2_conn *c) {
        return paf_loop_now(c->s ? c->s->event : NULL);
}

static h2_conn *conn_ref(h2_conn *c) {
        c->n_ref++;
        return c;
}

/* Not inlined: at -O3, GCC follows the free() into callers that hold a
 * reference of their own and warns of a use after free it cannot rule out. */
static __attribute__((noinline)) void conn_unref(h2_conn *c) {
        assert(c->n_ref > 0);
        if (--c->n_ref > 0)
                return;
        assert(c->closed);
        free(c->peer);
        free(c);
}

static paf_http_request *req_ref(paf_http_request *req) {
        req->n_ref++;
        return req;
}

static h2_stream *stream_of(paf_http_request *req) {
        return req->h2;
}

/* ---- output ---- */

static void on_block_written(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        out_block *b = userdata;
        h2_conn *c = b->c;
        c->queued -= b->len;
        free(b);
        if (!c->closed) {
                if (error < 0)
                        conn_close(c, error, "write failed");
                else {
                        c->progress_at = conn_now(c);
                        conn_kick(c);
                }
        }
        conn_unref(c);
}

/* The block being filled goes to the flow. */
static int out_push(h2_conn *c) {
        out_block *b = c->cur;
        if (!b || b->len == 0)
                return 0;
        c->cur = NULL;
        struct iovec iov = {b->data, b->len};
        int r = paf_flow_write(c->flow, &iov, 1, on_block_written, b);
        if (r < 0) {
                free(b);
                return r;
        }
        conn_ref(c);
        if (c->queued == 0)
                /* Output starts waiting now: the write timeout counts from
                 * here, not from the last progress of long ago. */
                c->progress_at = conn_now(c);
        c->queued += b->len;
        return 0;
}

static int out_append(h2_conn *c, const void *data, size_t len) {
        if (c->cur && c->cur->size - c->cur->len < len) {
                int r = out_push(c);
                if (r < 0)
                        return r;
        }
        if (!c->cur) {
                size_t size = len > OUT_BLOCK ? len : OUT_BLOCK;
                out_block *b = malloc(sizeof(*b) + size);
                if (!b)
                        return -ENOMEM;
                b->c = c;
                b->len = 0;
                b->size = size;
                c->cur = b;
        }
        memcpy(c->cur->data + c->cur->len, data, len);
        c->cur->len += len;
        return 0;
}

static size_t out_pending(h2_conn *c) {
        return c->queued + (c->cur ? c->cur->len : 0);
}

static h2_ssize on_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags,
                        void *userdata) {
        (void)ng;
        (void)flags;
        h2_conn *c = userdata;
        if (c->closed)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (out_pending(c) >= c->s->h2.max_output)
                return NGHTTP2_ERR_WOULDBLOCK;
        if (out_append(c, data, len) < 0)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        return (h2_ssize)len;
}

static void on_file_written(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        file_piece *p = userdata;
        h2_conn *c = p->c;
        paf_http_request *req = p->req;
        h2_stream *st = stream_of(req);
        c->queued -= p->len;
        free(p);
        st->files_in_flight--;
        if (!c->closed) {
                if (error < 0)
                        conn_close(c, error, "write failed");
                else {
                        c->progress_at = conn_now(c);
                        if (st->write_pending && st->fleft == 0 && st->files_in_flight == 0 &&
                            !st->write_cut) {
                                st->write_done = true;
                                stream_queue(st);
                        }
                        conn_kick(c);
                }
        }
        /* An aborted write waited for its last piece to leave the file
         * alone: its handler may close it now. */
        if (st->write_pending && st->write_cut && st->files_in_flight == 0)
                stream_write_complete(st);
        http_request_unref(req);
        conn_unref(c);
}

/* A DATA frame of a file piece: its header through our block, its payload
 * from the file, in that order on the flow. */
static int on_send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *userdata) {
        (void)ng;
        (void)frame;
        h2_conn *c = userdata;
        h2_stream *st = source->ptr;
        if (c->closed)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (out_pending(c) >= c->s->h2.max_output)
                return NGHTTP2_ERR_WOULDBLOCK;
        file_piece *p = malloc(sizeof(*p));
        if (!p)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (out_append(c, framehd, 9) < 0 || out_push(c) < 0) {
                free(p);
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        if (length > 0) {
                *p = (file_piece){conn_ref(c), req_ref(st->req), length};
                int r = paf_flow_send_file(c->flow, st->fd, st->foff, length, on_file_written, p);
                if (r < 0) {
                        http_request_unref(st->req);
                        conn_unref(c);
                        free(p);
                        return NGHTTP2_ERR_CALLBACK_FAILURE;
                }
                c->queued += length;
                st->files_in_flight++;
                st->foff += length;
                st->fleft -= length;
        } else
                free(p);
        c->data_at = conn_now(c);
        return 0;
}

/* ---- the response body, as nghttp2 asks for it ---- */

/* The end of the body: END_STREAM on the last DATA, or the trailers after
 * it (submitted from here, so that they follow every DATA frame). */
static void body_eof(nghttp2_session *ng, h2_stream *st, uint32_t *flags) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        st->eof = true;
        if (st->trailers) {
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
                if (nghttp2_submit_trailer(ng, st->id, st->trailers, st->n_trailers) < 0)
                        stream_reset(ng, st, NGHTTP2_INTERNAL_ERROR);
        }
}

static h2_ssize on_read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                             uint32_t *flags, nghttp2_data_source *source, void *userdata) {
        (void)id;
        h2_conn *c = userdata;
        h2_stream *st = source->ptr;
        size_t n = 0;
        if (st->wlen > st->woff) {
                n = st->wlen - st->woff;
                if (n > length)
                        n = length;
                memcpy(buf, st->wdata + st->woff, n);
                st->woff += n;
                if (st->woff == st->wlen) {
                        /* Copied: the caller's buffer is free again. */
                        st->wdata = NULL;
                        st->wlen = st->woff = 0;
                        if (st->write_pending) {
                                st->write_done = true;
                                stream_queue(st);
                        }
                }
                c->data_at = conn_now(c);
        } else if (st->fleft > 0 && st->fd >= 0) {
                n = st->fleft < length ? (size_t)st->fleft : length;
                *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
                if (n == st->fleft && st->finished)
                        body_eof(ng, st, flags);
                return (h2_ssize)n;
        } else if (!st->finished) {
                st->deferred = true;
                return NGHTTP2_ERR_DEFERRED;
        }
        if (st->finished && st->wlen == st->woff && (st->fleft == 0 || st->fd < 0))
                body_eof(ng, st, flags);
        return (h2_ssize)n;
}

/* ---- streams ---- */

static void stream_queue(h2_stream *st) {
        h2_conn *c = st->c;
        if (!c || st->queued)
                return;
        st->queued = true;
        req_ref(st->req);
        st->work_next = NULL;
        if (c->work_tail)
                c->work_tail->work_next = st;
        else
                c->work_head = st;
        c->work_tail = st;
        conn_kick(c);
}

/* A reset of ours, for our reasons: not the client's to pay for. */
static void stream_reset(nghttp2_session *ng, h2_stream *st, uint32_t code) {
        st->own_reset = true;
        (void)nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, code);
}

static void stream_unlink(h2_stream *st) {
        h2_conn *c = st->c;
        if (!c)
                return;
        if (st->prev)
                st->prev->next = st->next;
        else
                c->streams = st->next;
        if (st->next)
                st->next->prev = st->prev;
        st->prev = st->next = NULL;
}

void h2_stream_free(h2_stream *st) {
        stream_unlink(st);
        free(st->cookie);
        free(st->body);
        free(st->own);
        free(st->trailers);
        free(st->trailer_text);
        free(st);
}

static h2_stream *stream_new(h2_conn *c, int32_t id) {
        h2_stream *st = calloc(1, sizeof(*st));
        if (!st)
                return NULL;
        paf_http_request *req = http_request_new(c->s, c->flow);
        if (!req) {
                free(st);
                return NULL;
        }
        req->h2 = st;
        req->version = 20;
        st->req = req;
        st->c = c;
        st->id = id;
        st->fd = -1;
        st->remaining = -1;
        st->next = c->streams;
        if (c->streams)
                c->streams->prev = st;
        c->streams = st;
        c->n_streams++;
        c->any_stream = true;
        return st;
}

/* The token budget of resets and stream errors (see the top). */
static void conn_spend(h2_conn *c, const char *what) {
        if (c->closed || c->closing)
                return;
        const paf_http2_settings *h = &c->s->h2;
        uint64_t now = conn_now(c);
        c->tokens += (double)(now - c->tokens_at) * h->reset_rate / USEC_PER_SEC;
        if (c->tokens > h->reset_burst)
                c->tokens = h->reset_burst;
        c->tokens_at = now;
        c->tokens -= 1;
        if (c->tokens >= 0)
                return;
        char reason[256];
        snprintf(reason, sizeof(reason),
                 "HTTP/2: too many stream resets and errors (%s; more than %" PRIu32
                 " at once, %" PRIu32 " a second): GOAWAY",
                 what, h->reset_burst, h->reset_rate);
        http_server_report(c->s, c->peer, 0, reason);
        c->closing = true;
        c->closing_at = now;
        (void)nghttp2_session_terminate_session(c->ng, NGHTTP2_ENHANCE_YOUR_CALM);
        if (c->reading) {
                c->reading = false;
                (void)paf_flow_read_stop(c->flow);
        }
}

/* ---- nghttp2's callbacks: record, never call user code ---- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *userdata) {
        h2_conn *c = userdata;
        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0;
        h2_stream *st = stream_new(c, frame->hd.stream_id);
        if (!st)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->header_bytes = 0;
        if (nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st) < 0) {
                http_request_unref(st->req);
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        return 0;
}

static void stream_refuse_later(h2_stream *st, int status, const char *reason) {
        if (st->refuse)
                return;
        st->refuse = status;
        snprintf(st->refuse_reason, sizeof(st->refuse_reason), "%s", reason);
}

static bool lit_is(const uint8_t *p, size_t n, const char *lit) {
        return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static int arena_add(h2_stream *st, const uint8_t *p, size_t n, uint32_t *off) {
        paf_http_request *req = st->req;
        size_t cap = st->c->s->limits.max_header_bytes;
        cap = cap > (UINT32_MAX - 4096) / 2 ? UINT32_MAX - 1 : 2 * cap + 4096;
        *off = (uint32_t)req->arena_len;
        int r = http_request_arena_append(req, (const char *)p, n, cap);
        if (r < 0)
                return r;
        req->arena[req->arena_len++] = '\0';
        return 0;
}

static int add_field(h2_stream *st, const uint8_t *name, size_t name_len, const uint8_t *value,
                     size_t value_len) {
        uint32_t no, vo;
        int r = arena_add(st, name, name_len, &no);
        if (r >= 0)
                r = arena_add(st, value, value_len, &vo);
        if (r >= 0)
                r = http_request_add_field(st->req, no, (uint32_t)name_len, vo,
                                           (uint32_t)value_len);
        return r;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                     void *userdata) {
        (void)flags;
        (void)userdata;
        h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        if (!st || frame->hd.type != NGHTTP2_HEADERS)
                return 0;
        h2_conn *c = st->c;
        const paf_http_limits *l = &c->s->limits;
        paf_http_request *req = st->req;
        if (frame->headers.cat != NGHTTP2_HCAT_REQUEST && !st->in_trailers) {
                /* Trailers: a second HEADERS, at the body's end. */
                st->in_trailers = true;
                st->header_bytes = 0;
        }
        /* The [http] limits, counted as HTTP/1.1 counts its bytes ("name:
         * value\r\n"): what a client cannot send there it cannot send here. */
        st->header_bytes += name_len + value_len + 4;
        if (st->header_bytes > l->max_header_bytes) {
                char reason[128];
                snprintf(reason, sizeof(reason), "request header fields too large (> %zu bytes)",
                         l->max_header_bytes);
                stream_refuse_later(st, 431, reason);
        }
        if (req->n_fields - (st->in_trailers ? req->n_headers : 0) >= l->max_headers) {
                char reason[128];
                snprintf(reason, sizeof(reason), "too many header fields (> %u)", l->max_headers);
                stream_refuse_later(st, 431, reason);
        }
        if (st->refuse)
                return 0; /* counted, not kept */

        int r = 0;
        if (name_len > 0 && name[0] == ':') {
                /* nghttp2 checked them (RFC 9113 §8.3): known, once each,
                 * before the regular fields, never in trailers. */
                if (lit_is(name, name_len, ":method")) {
                        if (value_len >= METHOD_MAX) {
                                stream_refuse_later(st, 501, "method name too long");
                                return 0;
                        }
                        memcpy(st->method, value, value_len);
                        st->method[value_len] = '\0';
                } else if (lit_is(name, name_len, ":path")) {
                        r = arena_add(st, value, value_len, &st->path);
                        st->path_len = (uint32_t)value_len;
                } else if (lit_is(name, name_len, ":authority")) {
                        r = arena_add(st, value, value_len, &st->authority);
                        st->authority_len = (uint32_t)value_len;
                }
        } else if (!st->in_trailers && lit_is(name, name_len, "cookie")) {
                size_t n = st->cookie_len + (st->cookie_len ? 2 : 0) + value_len;
                char *k = realloc(st->cookie, n + 1);
                if (!k)
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                if (st->cookie_len) {
                        memcpy(k + st->cookie_len, "; ", 2);
                        st->cookie_len += 2;
                }
                memcpy(k + st->cookie_len, value, value_len);
                st->cookie_len += value_len;
                k[st->cookie_len] = '\0';
                st->cookie = k;
        } else {
                if (lit_is(name, name_len, "host"))
                        st->has_host = true;
                else if (!st->in_trailers && lit_is(name, name_len, "expect") && value_len == 12 &&
                         strncasecmp((const char *)value, "100-continue", 12) == 0)
                        st->expect_continue = true;
                else if (!st->in_trailers && lit_is(name, name_len, "content-length")) {
                        /* nghttp2 checked it is a number, and will check the
                         * DATA against it. */
                        int64_t v = 0;
                        for (size_t i = 0; i < value_len && v < INT64_MAX / 10; i++)
                                v = v * 10 + (value[i] - '0');
                        req->content_length = v;
                        st->has_length = true;
                }
                r = add_field(st, name, name_len, value, value_len);
        }
        if (r == -E2BIG) {
                stream_refuse_later(st, 431, "request header fields too large");
                return 0;
        }
        return r < 0 ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
}

/* The request's headers are complete: what the handler will read. */
static void stream_headers_done(h2_stream *st, bool end_stream) {
        paf_http_request *req = st->req;
        if (!st->refuse) {
                int r = 0;
                if (!st->has_host && st->authority_len > 0) {
                        /* RFC 9113 §8.3.1: :authority stands for Host. */
                        uint32_t no, vo = st->authority;
                        r = arena_add(st, (const uint8_t *)"host", 4, &no);
                        if (r >= 0)
                                r = http_request_add_field(req, no, 4, vo, st->authority_len);
                }
                if (r >= 0 && st->cookie)
                        r = add_field(st, (const uint8_t *)"cookie", 6, (uint8_t *)st->cookie,
                                      st->cookie_len);
                if (r < 0)
                        stream_refuse_later(st, r == -E2BIG ? 431 : 500,
                                            r == -E2BIG ? "request header fields too large"
                                                        : "out of memory for a request");
        }
        req->n_headers = req->n_fields;
        req->method = st->method;
        req->head = strcmp(st->method, "HEAD") == 0;
        req->target = st->path_len > 0 || strcmp(st->method, "OPTIONS") != 0 ? st->path : NO_OFFSET;
        if (end_stream) {
                st->body_complete = true;
                req->content_length = 0;
                req->body_complete = true;
        } else if (!st->has_length)
                /* No Content-Length and a body to come: its length is known
                 * at its end, as with chunked. */
                req->content_length = -1;
        if (!st->refuse && req->content_length > 0 &&
            (uint64_t)req->content_length > st->c->s->limits.max_body) {
                char reason[128];
                snprintf(reason, sizeof(reason),
                         "request body too large (Content-Length %" PRId64 " > %" PRIu64 ")",
                         req->content_length, st->c->s->limits.max_body);
                stream_refuse_later(st, 413, reason);
        }
        st->ready = true;
        st->body_at = conn_now(st->c);
        stream_queue(st);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *userdata) {
        h2_conn *c = userdata;
        h2_stream *st = frame->hd.stream_id
                                ? nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id)
                                : NULL;
        bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
        switch (frame->hd.type) {
        case NGHTTP2_HEADERS:
                if (!st)
                        break;
                if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
                        stream_headers_done(st, end);
                else if (end) {
                        st->body_complete = true;
                        st->req->body_complete = true;
                        stream_queue(st);
                }
                break;
        case NGHTTP2_DATA:
                if (st && end) {
                        st->body_complete = true;
                        st->req->body_complete = true;
                        stream_queue(st);
                }
                break;
        case NGHTTP2_RST_STREAM:
                if (st)
                        st->peer_reset = true;
                conn_spend(c, "RST_STREAM from the client");
                break;
        default:
                break;
        }
        return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *userdata) {
        (void)flags;
        h2_conn *c = userdata;
        h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
        if (!st) {
                (void)nghttp2_session_consume_connection(ng, len);
                return 0;
        }
        if (st->discard || st->refuse) {
                /* Nobody reads it: its window goes back now. */
                (void)nghttp2_session_consume(ng, id, len);
                return 0;
        }
        st->body_bytes += len;
        if (st->body_bytes > c->s->limits.max_body) {
                (void)nghttp2_session_consume(ng, id, len);
                st->discard = true;
                st->abort_due = true;
                st->abort_error = -EFBIG;
                stream_queue(st);
                return 0;
        }
        if (st->body_size - st->body_len < len) {
                size_t n = st->body_size ? st->body_size : 16384;
                while (n - st->body_len < len)
                        n *= 2;
                char *b = realloc(st->body, n);
                if (!b)
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                st->body = b;
                st->body_size = n;
        }
        memcpy(st->body + st->body_len, data, len);
        st->body_len += len;
        stream_queue(st);
        return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *userdata) {
        h2_conn *c = userdata;
        h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
        if (!st)
                return 0;
        st->ng_closed = true;
        st->ng_error = error_code;
        c->n_streams--;
        if (c->n_streams == 0)
                c->idle_at = conn_now(c);
        /* What the reader has not taken yet no longer holds the
         * connection's window (the stream's went with it). */
        if (st->body_len > 0)
                (void)nghttp2_session_consume_connection(ng, st->body_len);
        /* Resets by the peer were counted as they came, ours for our own
         * reasons are not the client's doing: what is left are the stream
         * errors the client made nghttp2 send. */
        if (error_code != NGHTTP2_NO_ERROR && error_code != NGHTTP2_REFUSED_STREAM &&
            !st->peer_reset && !st->own_reset)
                conn_spend(c, "stream errors");
        stream_queue(st);
        return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *frame, int lib_error,
                            void *userdata) {
        (void)ng;
        (void)frame;
        h2_conn *c = userdata;
        char what[96];
        snprintf(what, sizeof(what), "invalid frames: %s", nghttp2_strerror(lib_error));
        conn_spend(c, what);
        return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *userdata) {
        (void)userdata;
        if (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS)
                return 0;
        if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
                return 0;
        h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        /* The response is complete and the request's body is not: tell the
         * client to stop sending it (RFC 9113 §8.1). */
        if (st && !st->body_complete && !st->ng_closed)
                stream_reset(ng, st, NGHTTP2_NO_ERROR);
        return 0;
}

/* ---- the driver: user code runs here ---- */

static void stream_body_step(h2_stream *st) {
        h2_conn *c = st->c;
        paf_http_request *req = st->req;
        while (c && !c->closed && req->body_handler && !req->body_paused && !req->body_ended) {
                if (st->body_len > 0) {
                        char *data = st->body;
                        size_t len = st->body_len;
                        /* The buffer is the reader's for the call: a new one
                         * takes what arrives meanwhile. */
                        st->body = NULL;
                        st->body_len = st->body_size = 0;
                        st->body_at = conn_now(c);
                        req->body_handler(req, data, len, 0, req->body_userdata);
                        free(data);
                        c = st->c;
                        /* Its window goes back (a closed stream's went when
                         * it closed). */
                        if (c && !c->closed && !st->ng_closed)
                                (void)nghttp2_session_consume(c->ng, st->id, len);
                        continue;
                }
                if (st->body_complete && !st->body_end_told) {
                        st->body_end_told = true;
                        req->body_ended = true;
                        req->body_handler(req, NULL, 0, 0, req->body_userdata);
                }
                break;
        }
}

/* A pending write will not go out: it completes with error now, or, with a
 * file piece still reading the file, once that left (the handler may close
 * the file then). */
static void stream_cut_write(h2_stream *st, int error) {
        if (!st->write_pending)
                return;
        st->wdata = NULL;
        st->wlen = st->woff = 0;
        st->fleft = 0;
        st->write_cut = true;
        st->write_error = error;
        if (st->files_in_flight == 0)
                stream_write_complete(st);
}

/* Tell the handler its request is gone (once): the body reader, the abort
 * handler, then, as with HTTP/1.1, a pending write's completion. */
static void stream_abort(h2_stream *st, int error) {
        paf_http_request *req = st->req;
        if (req->aborted)
                return;
        if (!req->handler_owned) {
                /* Finished, a write of it may still be pending. */
                stream_cut_write(st, error);
                return;
        }
        req->aborted = true;
        req_ref(req);
        if (req->body_handler && !req->body_ended) {
                req->body_ended = true;
                req->body_handler(req, NULL, 0, error, req->body_userdata);
        }
        if (req->abort_handler)
                req->abort_handler(req, error, req->abort_userdata);
        stream_cut_write(st, error);
        http_request_unref(req);
}

static void stream_refuse(h2_stream *st);

static void stream_write_complete(h2_stream *st) {
        int error = st->write_error;
        st->write_error = 0;
        st->write_cut = false;
        st->write_done = false;
        st->write_pending = false;
        st->fd = -1;
        paf_http_write_handler_t h = st->write_handler;
        st->write_handler = NULL;
        if (h)
                h(st->req, error, st->write_userdata);
}

static void stream_dispatch(h2_stream *st) {
        h2_conn *c = st->c;
        paf_http_request *req = st->req;
        st->dispatched = true;
        if (st->refuse) {
                stream_refuse(st);
                return;
        }
        paf_http_server *s = c->s;
        s->n_requests++;
        req->handler_owned = true;
        req_ref(req);
        s->handler(req, s->userdata);
}

static void stream_step(h2_stream *st) {
        h2_conn *c = st->c;
        paf_http_request *req = st->req;
        if (c && !c->closed && st->ready && !st->dispatched && !st->ng_closed)
                stream_dispatch(st);
        if (st->c && !st->c->closed && st->abort_due && req->handler_owned) {
                st->abort_due = false;
                bool answered = st->started;
                stream_abort(st, st->abort_error);
                if (st->c && !st->c->closed && !st->ng_closed) {
                        if (!answered && st->abort_error == -EFBIG) {
                                char reason[128];
                                snprintf(reason, sizeof(reason),
                                         "request body too large (> %" PRIu64 " bytes)",
                                         st->c->s->limits.max_body);
                                stream_refuse_later(st, 413, reason);
                                stream_refuse(st);
                        } else
                                stream_reset(st->c->ng, st, NGHTTP2_CANCEL);
                }
        }
        if (st->c && !st->c->closed && st->dispatched)
                stream_body_step(st);
        if (st->c && !st->c->closed && st->write_done)
                stream_write_complete(st);
        if (st->ng_closed && !st->released) {
                bool done = st->eof || (!st->with_body && st->finished);
                if (!done)
                        stream_abort(st, -ECONNRESET);
                st->released = true;
                http_request_unref(req); /* the stream's */
        }
}

/*
 * nghttp2 gave up on the session (a flood it counts, too many CONTINUATION
 * frames, a bad preface): it sends nothing more itself, so the GOAWAY that
 * tells the client why is ours, written as RFC 9113 §6.8 lays it out, and
 * the last thing on the connection.
 */
static void conn_goaway_fatal(h2_conn *c, int ng_error) {
        uint32_t code;
        switch (ng_error) {
        case NGHTTP2_ERR_FLOODED:
        case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
                code = NGHTTP2_ENHANCE_YOUR_CALM;
                break;
        case NGHTTP2_ERR_HEADER_COMP:
                code = NGHTTP2_COMPRESSION_ERROR;
                break;
        case NGHTTP2_ERR_NOMEM:
        case NGHTTP2_ERR_CALLBACK_FAILURE:
                code = NGHTTP2_INTERNAL_ERROR;
                break;
        default:
                code = NGHTTP2_PROTOCOL_ERROR;
                break;
        }
        uint32_t last = (uint32_t)nghttp2_session_get_last_proc_stream_id(c->ng) & 0x7fffffffu;
        uint8_t f[17] = {0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0};
        for (int i = 0; i < 4; i++) {
                f[9 + i] = (uint8_t)(last >> (24 - 8 * i));
                f[13 + i] = (uint8_t)(code >> (24 - 8 * i));
        }
        c->session_dead = true;
        (void)out_append(c, f, sizeof(f));
}

static int conn_recv(h2_conn *c, const void *data, size_t len) {
        c->ng_depth++;
        h2_ssize n = h2_session_mem_recv(c->ng, data, len);
        c->ng_depth--;
        if (n < 0) {
                char reason[160];
                snprintf(reason, sizeof(reason), "HTTP/2 error from the client: %s",
                         nghttp2_strerror((int)n));
                http_server_report(c->s, c->peer, 0, reason);
                conn_goaway_fatal(c, (int)n);
                c->closing = true;
                c->closing_at = conn_now(c);
                if (c->reading) {
                        c->reading = false;
                        (void)paf_flow_read_stop(c->flow);
                }
                return -EPROTO;
        }
        return 0;
}

/* What came with the preface goes first, before anything the flow reads. */
static void conn_recv_pending(h2_conn *c) {
        if (!c->pending_in)
                return;
        char *p = c->pending_in;
        size_t n = c->pending_in_len;
        c->pending_in = NULL;
        (void)conn_recv(c, p, n);
        free(p);
}

static void conn_update_reading(h2_conn *c) {
        if (c->closed || c->closing || c->lingering || c->read_eof)
                return;
        size_t max = c->s->h2.max_output;
        bool want = out_pending(c) < (c->reading ? max : max / 2);
        if (want == c->reading)
                return;
        c->reading = want;
        if (want) {
                int r = paf_flow_read_start(c->flow, h2_on_read, c);
                if (r < 0)
                        conn_close(c, r, "cannot read");
        } else
                (void)paf_flow_read_stop(c->flow);
}

static void conn_run(h2_conn *c) {
        if (c->running) {
                c->rerun = true;
                return;
        }
        conn_ref(c);
        c->running = true;
        do {
                c->rerun = false;
                conn_recv_pending(c);
                for (unsigned i = 0; i < STREAMS_PER_RUN && c->work_head && !c->closed; i++) {
                        h2_stream *st = c->work_head;
                        c->work_head = st->work_next;
                        if (!c->work_head)
                                c->work_tail = NULL;
                        st->work_next = NULL;
                        st->queued = false;
                        paf_http_request *req = st->req;
                        stream_step(st);
                        http_request_unref(req); /* the queue's */
                }
                if (!c->closed)
                        conn_flush(c);
        } while (c->rerun && !c->closed && !c->work_head);
        /* More than a run's share: the rest of the loop goes first. */
        if (!c->closed && (c->work_head || c->rerun))
                (void)sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
        c->running = false;
        if (!c->closed)
                conn_arm(c);
        conn_unref(c);
}

static int on_defer(sd_event_source *source, void *userdata) {
        (void)source;
        h2_conn *c = userdata;
        paf_http_server *s = c->s;
        s->dispatching++;
        conn_run(c);
        http_server_dispatch_end(s);
        return 0;
}

static void conn_kick(h2_conn *c) {
        if (c->closed)
                return;
        if (c->running) {
                c->rerun = true;
                return;
        }
        (void)sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
}

static void on_linger_shutdown(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        h2_conn *c = userdata;
        if (!c->closed && (error < 0 || c->read_eof))
                conn_close(c, 0, NULL);
        conn_unref(c);
}

/* Everything is written, GOAWAY last: end the write side and drain what
 * the client still sends for a moment before closing, so that closing
 * with unread input does not reset the connection (TCP RST would destroy
 * the GOAWAY before the client read it). */
static void conn_linger(h2_conn *c) {
        c->lingering = true;
        c->closing = true;
        c->closing_at = conn_now(c);
        int r = paf_flow_shutdown(c->flow, on_linger_shutdown, conn_ref(c));
        if (r < 0) {
                conn_unref(c);
                conn_close(c, 0, NULL);
                return;
        }
        if (!c->reading && !c->read_eof) {
                c->reading = true;
                r = paf_flow_read_start(c->flow, h2_on_read, c);
                if (r < 0)
                        conn_close(c, 0, NULL);
        }
}

/* nghttp2 writes what it has, within max-output; then, with nothing left
 * on either side, the connection ends. */
static void conn_flush(h2_conn *c) {
        if (c->ng_depth > 0)
                return;
        if (c->session_dead) {
                /* Our GOAWAY, then nothing: write it, then linger. */
                int r = out_push(c);
                if (r < 0)
                        conn_close(c, r, "cannot write");
                else if (c->queued == 0 && !c->lingering)
                        conn_linger(c);
                return;
        }
        c->ng_depth++;
        int r = nghttp2_session_send(c->ng);
        c->ng_depth--;
        if (r < 0) {
                char reason[128];
                snprintf(reason, sizeof(reason), "HTTP/2: %s", nghttp2_strerror(r));
                conn_close(c, -EPROTO, reason);
                return;
        }
        r = out_push(c);
        if (r < 0) {
                conn_close(c, r, "cannot write");
                return;
        }
        conn_update_reading(c);
        bool ng_done = !nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng);
        if (c->queued > 0 || c->lingering)
                return;
        if (c->read_eof && (ng_done || c->n_streams == 0 || c->closing))
                conn_close(c, 0, NULL);
        else if (ng_done || c->closing)
                conn_linger(c);
}

/* ---- timeouts: one timer, armed at the earliest that may be due ---- */

static bool stream_wants_data(h2_stream *st) {
        return st->with_body && !st->eof && !st->ng_closed &&
               (st->wlen > st->woff || st->fleft > 0 || st->finished);
}

/* What is due first, and its reason: 0 when nothing is. */
static uint64_t conn_deadline(h2_conn *c, const char **what, uint64_t *len) {
        const paf_http_limits *l = &c->s->limits;
        uint64_t at = UINT64_MAX;
        *what = NULL;
#define DUE(t, d, w)                                                                               \
        do {                                                                                       \
                if ((d) > 0 && (t) + (d) < at) {                                                   \
                        at = (t) + (d);                                                            \
                        *what = (w);                                                               \
                        *len = (d);                                                                \
                }                                                                                  \
        } while (0)
        if (c->closing)
                DUE(c->closing_at, CLOSE_GRACE_USEC, "closing");
        if (c->stopping && !c->goaway_final)
                DUE(c->stop_at, STOP_GRACE_USEC, "stop");
        if (c->n_streams == 0) {
                if (c->any_stream)
                        DUE(c->idle_at, l->idle_timeout_usec, "idle timeout");
                else
                        DUE(c->created_at, l->header_timeout_usec, "header timeout");
        }
        if (c->queued > 0)
                DUE(c->progress_at, l->write_timeout_usec, "write timeout");
        bool waiting = false;
        for (h2_stream *st = c->streams; st; st = st->next) {
                if (stream_wants_data(st))
                        waiting = true;
                paf_http_request *req = st->req;
                if (st->dispatched && !st->body_complete && !st->ng_closed && req->body_handler &&
                    !req->body_paused && !req->body_ended)
                        DUE(st->body_at, l->body_timeout_usec, "body timeout");
        }
        if (waiting)
                /* A peer that never opens its window is a reader that
                 * never reads. */
                DUE(c->data_at, l->write_timeout_usec, "write timeout (flow-control window)");
#undef DUE
        return at;
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata);

static void conn_arm(h2_conn *c) {
        const char *what;
        uint64_t len;
        uint64_t at = conn_deadline(c, &what, &len);
        if (at == UINT64_MAX) {
                (void)sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                c->timer_at = 0;
                return;
        }
        if (c->timer_at == at)
                return;
        c->timer_at = at;
        (void)sd_event_source_set_time(c->timer, at);
        (void)sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
}

static void fmt_duration(char *buf, size_t size, uint64_t usec) {
        if (usec % USEC_PER_SEC == 0)
                snprintf(buf, size, "%" PRIu64 " s", usec / USEC_PER_SEC);
        else
                snprintf(buf, size, "%" PRIu64 " ms", usec / 1000);
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        (void)source;
        (void)usec;
        h2_conn *c = userdata;
        paf_http_server *s = c->s;
        s->dispatching++;
        conn_ref(c);
        c->timer_at = 0;
        uint64_t now = conn_now(c);
        if (c->queued > 0) {
                /* Has the transport taken bytes since we last asked? */
                uint64_t progress;
                if (paf_flow_get_write_progress(c->flow, NULL, &progress) >= 0 &&
                    progress > c->progress_at)
                        c->progress_at = progress;
        }
        const char *what;
        uint64_t len;
        uint64_t at = conn_deadline(c, &what, &len);
        if (at <= now) {
                char reason[128], d[32];
                fmt_duration(d, sizeof(d), len);
                if (strcmp(what, "stop") == 0) {
                        c->goaway_final = true;
                        (void)nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                                                    nghttp2_session_get_last_proc_stream_id(c->ng),
                                                    NGHTTP2_NO_ERROR, NULL, 0);
                        conn_run(c);
                } else if (strcmp(what, "closing") == 0)
                        conn_close(c, 0, NULL);
                else if (strcmp(what, "body timeout") == 0) {
                        for (h2_stream *st = c->streams; st; st = st->next) {
                                paf_http_request *req = st->req;
                                if (st->dispatched && !st->body_complete && !st->ng_closed &&
                                    req->body_handler && !req->body_paused && !req->body_ended &&
                                    st->body_at + len <= now) {
                                        stream_reset(c->ng, st, NGHTTP2_CANCEL);
                                        st->abort_due = true;
                                        st->abort_error = -ETIMEDOUT;
                                        stream_queue(st);
                                }
                        }
                        snprintf(reason, sizeof(reason), "HTTP/2 stream: body timeout (%s)", d);
                        http_server_report(s, c->peer, 408, reason);
                        conn_run(c);
                } else if (strncmp(what, "idle", 4) == 0 || strncmp(what, "header", 6) == 0) {
                        /* Nothing in flight: say goodbye, politely. */
                        snprintf(reason, sizeof(reason), "%s (%s)", what, d);
                        if (what[0] == 'h')
                                http_server_report(s, c->peer, 0, reason);
                        c->closing = true;
                        c->closing_at = now;
                        (void)nghttp2_session_terminate_session(c->ng, NGHTTP2_NO_ERROR);
                        conn_run(c);
                } else {
                        snprintf(reason, sizeof(reason), "%s (%s)", what, d);
                        conn_close(c, -ETIMEDOUT, reason);
                }
        }
        if (!c->closed)
                conn_arm(c);
        conn_unref(c);
        http_server_dispatch_end(s);
        return 0;
}

/* ---- reading ---- */

static void h2_on_read(paf_flow *flow, const void *data, size_t len, int error, void *userdata) {
        (void)flow;
        h2_conn *c = userdata;
        if (c->closed)
                return;
        paf_http_server *s = c->s;
        s->dispatching++;
        conn_ref(c);
        if (c->lingering) {
                /* Drained, not read: a client that goes on flooding gets
                 * its close sooner than the grace. */
                c->drained += len;
                if (error < 0 || len == 0 || c->drained > LINGER_BYTES) {
                        c->read_eof = error < 0 || len == 0;
                        conn_close(c, 0, NULL);
                }
        } else if (error < 0)
                conn_close(c, error, NULL);
        else if (len == 0) {
                /* The client sends nothing more: answer what it asked. */
                c->read_eof = true;
                c->reading = false;
                (void)paf_flow_read_stop(c->flow);
                conn_run(c);
        } else {
                conn_recv_pending(c);
                if (!c->closing && !c->closed)
                        (void)conn_recv(c, data, len);
                if (!c->closed)
                        conn_run(c);
        }
        conn_unref(c);
        http_server_dispatch_end(s);
}

/* ---- closing ---- */

static void conn_close(h2_conn *c, int error, const char *reason) {
        if (c->closed)
                return;
        c->closed = true;
        conn_ref(c);
        paf_http_server *s = c->s;
        if (reason)
                http_server_report(s, c->peer, 0, reason);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->h2_conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        s->n_conns--;

        c->timer = sd_event_source_disable_unref(c->timer);
        c->defer = sd_event_source_disable_unref(c->defer);
        free(c->pending_in);
        c->pending_in = NULL;
        free(c->cur);
        c->cur = NULL;
        /* Cancels the writes in flight: their completions drop their
         * references later. */
        paf_flow_close(c->flow, NULL, NULL);
        c->flow = NULL;

        /* The streams lose their connection; their handlers are told. The
         * queue's references go, the streams' own ones too. */
        for (h2_stream *st = c->work_head, *next; st; st = next) {
                next = st->work_next;
                st->work_next = NULL;
                st->queued = false;
                http_request_unref(st->req);
        }
        c->work_head = c->work_tail = NULL;
        nghttp2_session *ng = c->ng;
        c->ng = NULL;
        while (c->streams) {
                h2_stream *st = c->streams;
                paf_http_request *req = req_ref(st->req);
                stream_unlink(st);
                st->c = NULL;
                stream_abort(st, error < 0 ? error : -ECONNRESET);
                if (!st->released) {
                        st->released = true;
                        http_request_unref(req);
                }
                http_request_unref(req);
        }
        nghttp2_session_del(ng);
        c->s = NULL;
        http_server_conn_gone(s);
        conn_unref(c);
        conn_unref(c); /* the server's */
}

void h2_conn_close(h2_conn *c, int error) {
        conn_close(c, error, NULL);
}

void h2_conn_stop(h2_conn *c) {
        if (c->closed || c->stopping)
                return;
        c->stopping = true;
        c->stop_at = conn_now(c);
        (void)nghttp2_submit_shutdown_notice(c->ng);
        conn_kick(c);
        conn_arm(c);
}

void h2_conn_update(h2_conn *c) {
        if (!c->closed)
                conn_arm(c);
}

h2_conn *h2_conn_next(h2_conn *c) {
        return c->next;
}

/* ---- a new connection ---- */

static nghttp2_session_callbacks *shared_callbacks;

static void callbacks_init(void) {
        if (nghttp2_session_callbacks_new(&shared_callbacks) < 0)
                return;
        h2_callbacks_set_send(shared_callbacks, on_send);
        nghttp2_session_callbacks_set_send_data_callback(shared_callbacks, on_send_data);
        nghttp2_session_callbacks_set_on_begin_headers_callback(shared_callbacks, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(shared_callbacks, on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(shared_callbacks, on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(shared_callbacks, on_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(shared_callbacks, on_stream_close);
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(shared_callbacks,
                                                                     on_invalid_frame);
        nghttp2_session_callbacks_set_on_frame_send_callback(shared_callbacks, on_frame_send);
}

/* The same for every session, of every thread: made once. */
static nghttp2_session_callbacks *callbacks(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, callbacks_init);
        return shared_callbacks;
}

int h2_conn_new(paf_http_server *s, paf_flow *flow, bool preface_read, const void *data,
                size_t len) {
        nghttp2_session_callbacks *cbs = callbacks();
        if (!cbs) {
                paf_flow_close(flow, NULL, NULL);
                return -ENOMEM;
        }
        h2_conn *c = calloc(1, sizeof(*c));
        if (!c) {
                paf_flow_close(flow, NULL, NULL);
                return -ENOMEM;
        }
        c->n_ref = 1;
        c->s = s;
        c->flow = flow;
        c->peer = strdup(paf_flow_get_peer(flow));
        const paf_http2_settings *h = &s->h2;
        c->tokens = h->reset_burst;
        int r = c->peer ? 0 : -ENOMEM;

        nghttp2_option *opt = NULL;
        if (r >= 0)
                r = nghttp2_option_new(&opt) < 0 ? -ENOMEM : 0;
        if (r >= 0) {
                /* The window goes back as the reader takes the body. */
                nghttp2_option_set_no_auto_window_update(opt, 1);
                nghttp2_option_set_no_recv_client_magic(opt, preface_read);
                nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
                if (nghttp2_session_server_new2(&c->ng, cbs, c, opt) < 0)
                        r = -ENOMEM;
                nghttp2_option_del(opt);
        }
        if (r >= 0) {
                nghttp2_settings_entry iv[] = {
                        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h->max_concurrent_streams},
                        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, h->initial_window},
                        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
                         (uint32_t)(s->limits.max_header_bytes > UINT32_MAX
                                            ? UINT32_MAX
                                            : s->limits.max_header_bytes)},
                };
                if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv)) < 0)
                        r = -ENOMEM;
        }
        if (r >= 0 && h->connection_window > 65535)
                r = nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0,
                                                          (int32_t)h->connection_window) < 0
                            ? -ENOMEM
                            : 0;
        if (r >= 0 && len > 0) {
                c->pending_in = malloc(len);
                if (!c->pending_in)
                        r = -ENOMEM;
                else {
                        memcpy(c->pending_in, data, len);
                        c->pending_in_len = len;
                }
        }
        sd_event *event = s->event;
        if (r >= 0)
                r = sd_event_add_defer(event, &c->defer, on_defer, c);
        if (r >= 0)
                r = sd_event_add_time(event, &c->timer, CLOCK_MONOTONIC, UINT64_MAX,
                                      TIMER_ACCURACY_USEC, on_timer, c);
        if (r >= 0)
                (void)sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        if (r < 0) {
                if (c->ng)
                        nghttp2_session_del(c->ng);
                sd_event_source_disable_unref(c->defer);
                sd_event_source_disable_unref(c->timer);
                free(c->pending_in);
                free(c->peer);
                free(c);
                paf_flow_close(flow, NULL, NULL);
                return r;
        }
        uint64_t now = conn_now(c);
        c->created_at = c->idle_at = c->progress_at = c->data_at = c->tokens_at = now;
        c->next = s->h2_conns;
        if (s->h2_conns)
                s->h2_conns->prev = c;
        s->h2_conns = c;
        s->n_conns++;
        /* At max-connections, accepting pauses (as for HTTP/1.1). */
        http_server_conn_gone(s);
        c->reading = true;
        r = paf_flow_read_start(flow, h2_on_read, c);
        if (r < 0) {
                conn_close(c, r, "cannot read");
                return r;
        }
        /* The server preface (SETTINGS), and what came with the client's. */
        conn_kick(c);
        if (s->stopping)
                h2_conn_stop(c);
        return 0;
}

/* ---- the request API, for HTTP/2 streams ---- */

paf_flow *h2_request_get_flow(paf_http_request *req) {
        h2_stream *st = stream_of(req);
        return st->c ? st->c->flow : NULL;
}

int h2_request_read_body(paf_http_request *req, paf_http_body_handler_t handler, void *userdata) {
        h2_stream *st = stream_of(req);
        if (!st->c)
                return -ECONNRESET;
        if (!req->body_handler && st->expect_continue && !st->continue_sent && !st->body_complete &&
            !st->started && !st->ng_closed) {
                /* Only now: the client waits for it before sending the
                 * body (RFC 9110 §10.1.1), as over HTTP/1.1. */
                nghttp2_nv nv = h2_nv(":status", 7, "100", 3);
                int r = nghttp2_submit_headers(st->c->ng, NGHTTP2_FLAG_NONE, st->id, NULL, &nv, 1,
                                               NULL);
                if (r < 0)
                        return -ENOMEM;
                st->continue_sent = true;
        }
        req->body_handler = handler;
        req->body_userdata = userdata;
        st->body_at = conn_now(st->c);
        stream_queue(st);
        return 0;
}

int h2_request_pause_body(paf_http_request *req) {
        h2_stream *st = stream_of(req);
        if (!st->c)
                return -ECONNRESET;
        req->body_paused = true;
        return 0;
}

int h2_request_resume_body(paf_http_request *req) {
        h2_stream *st = stream_of(req);
        if (!st->c)
                return -ECONNRESET;
        if (!req->body_paused)
                return 0;
        req->body_paused = false;
        st->body_at = conn_now(st->c);
        stream_queue(st);
        return 0;
}

/* Connection-specific fields have no place in HTTP/2 (RFC 9113 §8.2.2). */
static bool connection_specific(const char *name) {
        static const char *const names[] = {
                "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcasecmp(name, names[i]) == 0)
                        return true;
        return false;
}

/* Field names go lowercase on the wire (RFC 9113 §8.2.1); kept in text,
 * which the nv array points into. */
typedef struct nv_list {
        nghttp2_nv *nv;
        size_t n, size;
        char *text;
        size_t text_len, text_size;
        bool oom;
} nv_list;

static size_t nv_text(nv_list *l, const char *s, size_t len, bool lower) {
        if (l->text_size - l->text_len < len + 1) {
                size_t n = l->text_size ? l->text_size : 512;
                while (n - l->text_len < len + 1)
                        n *= 2;
                char *t = realloc(l->text, n);
                if (!t) {
                        l->oom = true;
                        return 0;
                }
                l->text = t;
                l->text_size = n;
        }
        size_t at = l->text_len;
        for (size_t i = 0; i < len; i++) {
                char ch = s[i];
                l->text[at + i] = lower && ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
        }
        l->text[at + len] = '\0';
        l->text_len += len + 1;
        return at;
}

/* Offsets first, pointers once the text stops moving. */
static void nv_add(nv_list *l, const char *name, const char *value) {
        if (l->n == l->size) {
                size_t n = l->size ? 2 * l->size : 16;
                nghttp2_nv *v = reallocarray(l->nv, n, sizeof(*v));
                if (!v) {
                        l->oom = true;
                        return;
                }
                l->nv = v;
                l->size = n;
        }
        size_t nl = strlen(name), vl = strlen(value);
        size_t no = nv_text(l, name, nl, true), vo = nv_text(l, value, vl, false);
        l->nv[l->n++] = h2_nv((const char *)(uintptr_t)no, nl, (const char *)(uintptr_t)vo, vl);
}

static void nv_fix(nv_list *l) {
        for (size_t i = 0; i < l->n; i++) {
                l->nv[i].name = (uint8_t *)l->text + (uintptr_t)l->nv[i].name;
                l->nv[i].value = (uint8_t *)l->text + (uintptr_t)l->nv[i].value;
        }
}

static void nv_free(nv_list *l) {
        free(l->nv);
        free(l->text);
}

static int stream_submit(h2_stream *st, int status, const paf_http_headers *headers,
                         const char *content_type, int64_t content_length) {
        h2_conn *c = st->c;
        paf_http_request *req = st->req;
        nv_list l = {};
        char num[24];
        snprintf(num, sizeof(num), "%d", status);
        nv_add(&l, ":status", num);
        bool has_date = false, has_server = false;
        size_t n = paf_http_headers_count(headers);
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(headers, i, &name, &value) < 0)
                        continue;
                if (connection_specific(name))
                        continue;
                if (strcasecmp(name, "Content-Length") == 0) {
                        /* HEAD keeps the length the handler states: it
                         * describes the GET response. */
                        if (!req->head || content_length >= 0)
                                continue;
                } else if (strcasecmp(name, "Date") == 0)
                        has_date = true;
                else if (strcasecmp(name, "Server") == 0)
                        has_server = true;
                else if (content_type && strcasecmp(name, "Content-Type") == 0)
                        continue;
                nv_add(&l, name, value);
        }
        if (content_type)
                nv_add(&l, "content-type", content_type);
        if (!has_date)
                nv_add(&l, "date", http_server_date(c->s));
        if (!has_server)
                nv_add(&l, "server", "paf/" PAF_VERSION);
        /* The server's own fields, unless the handler set them. */
        size_t m = paf_http_headers_count(c->s->extra);
        for (size_t i = 0; i < m; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(c->s->extra, i, &name, &value) >= 0 &&
                    !paf_http_headers_get(headers, name) &&
                    !(content_type && strcasecmp(name, "Content-Type") == 0))
                        nv_add(&l, name, value);
        }
        if (content_length >= 0 && !(status == 204 || status == 304)) {
                snprintf(num, sizeof(num), "%" PRId64, content_length);
                nv_add(&l, "content-length", num);
        }
        if (l.oom) {
                nv_free(&l);
                return -ENOMEM;
        }
        nv_fix(&l);
        st->no_body = status == 204 || status == 304 || req->head;
        st->with_body = !st->no_body && content_length != 0;
        h2_data_provider prd = {.source = {.ptr = st}, .read_callback = on_read_body};
        int r = h2_submit_response(c->ng, st->id, l.nv, l.n, st->with_body ? &prd : NULL);
        nv_free(&l);
        if (r < 0)
                return r == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
        st->started = true;
        st->remaining = st->no_body ? -1 : content_length;
        conn_kick(c);
        return 0;
}

/* The engine's own answer instead of the handler's (431, 413, …). */
static void stream_refuse(h2_stream *st) {
        h2_conn *c = st->c;
        http_server_report(c->s, c->peer, st->refuse, st->refuse_reason);
        if (st->started || st->ng_closed)
                return;
        const char *text = paf_http_status_reason(st->refuse);
        size_t len = strlen(text) + 1;
        st->own = malloc(len);
        if (!st->own) {
                stream_reset(c->ng, st, NGHTTP2_INTERNAL_ERROR);
                return;
        }
        memcpy(st->own, text, len - 1);
        st->own[len - 1] = '\n';
        st->finished = true;
        if (stream_submit(st, st->refuse, NULL, "text/plain", (int64_t)len) < 0) {
                stream_reset(c->ng, st, NGHTTP2_INTERNAL_ERROR);
                return;
        }
        st->discard = true;
        if (st->with_body) {
                st->wdata = st->own;
                st->wlen = len;
                st->woff = 0;
        }
}

/* The response is done and nobody reads the body: what came of it and
 * what comes goes, its window given back (HTTP/1.1 drains it the same way). */
static void stream_discard_body(h2_stream *st) {
        paf_http_request *req = st->req;
        if (req->body_handler || st->body_complete || st->discard)
                return;
        st->discard = true;
        if (st->body_len > 0 && st->c && !st->ng_closed)
                (void)nghttp2_session_consume(st->c->ng, st->id, st->body_len);
        free(st->body);
        st->body = NULL;
        st->body_len = st->body_size = 0;
}

static int stream_check(paf_http_request *req, h2_stream **ret) {
        h2_stream *st = stream_of(req);
        if (!st->c || st->ng_closed || req->aborted)
                return -ECONNRESET;
        *ret = st;
        return 0;
}

int h2_response_start(paf_http_request *req, int status, const paf_http_headers *headers,
                      const char *content_type, int64_t content_length) {
        h2_stream *st;
        int r = stream_check(req, &st);
        if (r < 0)
                return r;
        if (status < 200 || status > 999 || content_length < -1)
                return -EINVAL;
        if (content_type && (!*content_type || strpbrk(content_type, "\r\n")))
                return -EINVAL;
        if (st->started || !req->handler_owned)
                return -EINVAL;
        return stream_submit(st, status, headers, content_type, content_length);
}

static void stream_resume(h2_stream *st) {
        if (st->deferred && st->c && !st->ng_closed) {
                st->deferred = false;
                (void)nghttp2_session_resume_data(st->c->ng, st->id);
        }
        if (st->c)
                conn_kick(st->c);
}

static int write_check(paf_http_request *req, h2_stream **ret, uint64_t len) {
        int r = stream_check(req, ret);
        if (r < 0)
                return r;
        h2_stream *st = *ret;
        if (!st->started || st->finished)
                return -EINVAL;
        if (st->write_pending)
                return -EBUSY;
        if (st->no_body && len > 0 && !req->head)
                return -EINVAL;
        if (st->remaining >= 0 && len > (uint64_t)st->remaining)
                return -EINVAL;
        return 0;
}

int h2_response_write(paf_http_request *req, const void *data, size_t len,
                      paf_http_write_handler_t handler, void *userdata) {
        h2_stream *st;
        int r = write_check(req, &st, len);
        if (r < 0)
                return r;
        st->write_pending = true;
        st->write_handler = handler;
        st->write_userdata = userdata;
        if (st->remaining >= 0)
                st->remaining -= (int64_t)len;
        if (!st->with_body || len == 0) {
                /* Nothing to send (HEAD): done, from the loop. */
                st->write_done = true;
                stream_queue(st);
                return 0;
        }
        st->wdata = data;
        st->wlen = len;
        st->woff = 0;
        stream_resume(st);
        return 0;
}

int h2_response_send_file(paf_http_request *req, int fd, uint64_t offset, uint64_t len,
                          paf_http_write_handler_t handler, void *userdata) {
        h2_stream *st;
        int r = write_check(req, &st, len);
        if (r < 0)
                return r;
        if (offset > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - offset)
                return -EINVAL;
        st->write_pending = true;
        st->write_handler = handler;
        st->write_userdata = userdata;
        if (st->remaining >= 0)
                st->remaining -= (int64_t)len;
        if (!st->with_body || len == 0) {
                st->write_done = true;
                stream_queue(st);
                return 0;
        }
        st->fd = fd;
        st->foff = offset;
        st->fleft = len;
        stream_resume(st);
        return 0;
}

int h2_response_finish(paf_http_request *req, const paf_http_headers *trailers) {
        h2_stream *st = stream_of(req);
        if (!st->c || st->ng_closed || req->aborted) {
                http_request_release(req);
                return -ECONNRESET;
        }
        if (!st->started || st->finished)
                return -EINVAL;
        h2_conn *c = st->c;
        size_t n = paf_http_headers_count(trailers);
        if (n > 0 && st->with_body) {
                nv_list l = {};
                for (size_t i = 0; i < n; i++) {
                        const char *name, *value;
                        if (paf_http_headers_get_nth(trailers, i, &name, &value) >= 0 &&
                            !connection_specific(name))
                                nv_add(&l, name, value);
                }
                if (l.oom) {
                        nv_free(&l);
                        return -ENOMEM;
                }
                nv_fix(&l);
                st->trailers = l.nv;
                st->n_trailers = l.n;
                st->trailer_text = l.text;
        }
        if (st->remaining > 0 && st->with_body) {
                /* Short of its Content-Length: the client must not take
                 * it for whole. */
                paf_log(PAF_LOG_WARNING,
                        "http %s: response to %s %s ended %" PRId64
                        " bytes short of its Content-Length; resetting the stream",
                        req->peer, req->method, paf_http_request_get_target(req), st->remaining);
                stream_reset(c->ng, st, NGHTTP2_INTERNAL_ERROR);
        }
        st->finished = true;
        stream_discard_body(st);
        stream_resume(st);
        http_request_release(req);
        return 0;
}

int h2_respond(paf_http_request *req, int status, const char *content_type, const void *body,
               size_t len) {
        h2_stream *st = stream_of(req);
        if (!st->c || st->ng_closed || req->aborted) {
                http_request_release(req);
                return -ECONNRESET;
        }
        if ((status == 204 || status == 304) && len > 0)
                return -EINVAL;
        if (len > INT64_MAX)
                return -EINVAL;
        if (len > 0 && !req->head) {
                st->own = malloc(len);
                if (!st->own)
                        return -ENOMEM;
                memcpy(st->own, body, len);
        }
        int r = h2_response_start(req, status, NULL, content_type, (int64_t)len);
        if (r < 0) {
                free(st->own);
                st->own = NULL;
                return r;
        }
        if (st->with_body) {
                st->wdata = st->own;
                st->wlen = len;
                st->woff = 0;
                st->remaining = 0;
        }
        st->finished = true;
        stream_discard_body(st);
        stream_resume(st);
        http_request_release(req);
        return 0;
}
