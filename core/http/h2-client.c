/* core/http/h2-client.c — the HTTP client's HTTP/2 engine: calls as streams of an nghttp2
 * client session, every call to an endpoint multiplexed over one connection. */
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>

#include "core/http/client-internal.h"
#include "core/http/h2-compat.h"

/*
 * How things live.
 *
 * A connection (h2cl_conn) is in its client's list from the connect on, and
 * takes calls while it is neither draining (a GOAWAY either way, the idle
 * timeout) nor closed. It has a reference count: one while it is open (or
 * connecting), one per write in flight, one per stream that carries a call,
 * and a temporary one around anything that may close it.
 *
 * A stream (h2cl_stream) belongs to its connection. It is nghttp2's stream
 * user data while nghttp2 knows the stream (in_session), and its call's
 * while the call is on it; it is freed when neither holds it.
 *
 * nghttp2's callbacks never call the user, nor anything that could free the
 * session under them: they note what arrived in the stream and kick its
 * call, whose deferred source (client.c) hands it over through
 * h2cl_deliver(). Body is consumed (nghttp2_session_consume(), with
 * automatic window updates off) only once the user took it, so a call that
 * does not read, or is paused, closes its stream's window: the server stops
 * sending, and what a stream holds is bounded by that window.
 *
 * Writing: nghttp2_session_mem_send() fills one buffer, one flow write in
 * flight at a time (what does not fit waits in nghttp2). A request body is
 * read from the call's queue of writes by the data source as the server's
 * window allows; a write whose bytes nghttp2 took completes once the
 * mem_send loop is over, outside nghttp2.
 */

#define WBUF_SIZE (64 * 1024)
/* What a stream may hold unread, and all of them together: the windows we
 * advertise. The connection's is larger, so that a few paused calls do not
 * stop the others. */
#define STREAM_WINDOW (1024 * 1024)
#define CONN_WINDOW (16 * 1024 * 1024)

struct h2cl_stream {
        h2cl_conn *conn;
        h2cl_stream *next, *prev;
        paf_http_call *call; /* NULL once the call left */
        int32_t id;
        bool in_session; /* nghttp2 holds it as stream user data */
        bool deferred;   /* its data source is waiting for body */
        bool headers_sent;
        bool progress; /* a frame of its request left: restart the timer */

        /* The response, as nghttp2 gave it. */
        paf_http_headers *headers; /* being collected, then the final response's */
        int status;
        size_t n_fields, header_bytes;
        bool headers_ready; /* the final response's head is complete */
        bool end_received;
        bool closed; /* nghttp2 closed it */
        uint32_t close_code;
        bool peer_reset;
        const char *local_error; /* why we reset it (limits) */
        int not_sent;            /* nghttp2's reason its HEADERS were not sent */
        uint8_t *rx;             /* body not taken by the user, not consumed */
        size_t rx_len, rx_size;
};

struct h2cl_conn {
        unsigned n_ref;
        paf_http_client *client; /* NULL once closed */
        h2cl_conn *next, *prev;  /* the client's list */
        bool draining;           /* takes no new call */
        bool closed;

        char *key;      /* the pool key of the call that opened it */
        char *endpoint; /* the candidate that connected */
        char *report;   /* its connect's attempts */
        bool report_given;

        /* Connecting: the calls that wait for it, in order. */
        paf_connect *connect;
        paf_http_call *waiters, *waiters_tail;

        paf_flow *flow;
        nghttp2_session *session;
        bool tls;
        h2cl_stream *streams;
        unsigned n_calls;      /* streams that carry a call */
        sd_event_source *kick; /* a flush, outside whatever asked for it */
        sd_event_source *idle_timer;

        uint8_t *wbuf;
        size_t wlen;
        bool writing;
        const uint8_t *pending; /* what mem_send gave that did not fit yet */
        size_t n_pending;
        bool flushing, flush_again;
        wreq *done, *done_tail; /* body writes nghttp2 took: their handlers are owed */
        size_t orphan_bytes;    /* DATA for streams nobody reads, to consume */

        bool goaway;
        int32_t goaway_last;
        uint32_t goaway_code;
        char error[300]; /* the first protocol error, nghttp2's words */
        int close_code;
        char close_reason[300];
};

static void conn_flush(h2cl_conn *hc);
static void conn_close(h2cl_conn *hc, int code, const char *format, ...) PAF_PRINTF(3, 4);

/* ---- the connection's life ---- */

static h2cl_conn *conn_ref(h2cl_conn *hc) {
        hc->n_ref++;
        return hc;
}

static void stream_free(h2cl_stream *st) {
        h2cl_conn *hc = st->conn;
        if (st->prev)
                st->prev->next = st->next;
        else
                hc->streams = st->next;
        if (st->next)
                st->next->prev = st->prev;
        paf_http_headers_free(st->headers);
        free(st->rx);
        free(st);
}

static void conn_unref(h2cl_conn *hc) {
        assert(hc->n_ref > 0);
        if (--hc->n_ref > 0)
                return;
        assert(hc->closed && !hc->flow && !hc->connect && !hc->waiters && hc->n_calls == 0);
        while (hc->done) {
                wreq *w = hc->done;
                hc->done = w->next;
                hc_wreq_free(w);
        }
        while (hc->streams)
                stream_free(hc->streams);
        if (hc->session)
                nghttp2_session_del(hc->session);
        sd_event_source_disable_unref(hc->kick);
        sd_event_source_disable_unref(hc->idle_timer);
        free(hc->wbuf);
        free(hc->key);
        free(hc->endpoint);
        free(hc->report);
        free(hc);
}

static void conn_unlink(h2cl_conn *hc) {
        paf_http_client *c = hc->client;
        if (!c)
                return;
        if (hc->prev)
                hc->prev->next = hc->next;
        else
                c->h2_conns = hc->next;
        if (hc->next)
                hc->next->prev = hc->prev;
        hc->next = hc->prev = NULL;
}

static void conn_schedule(h2cl_conn *hc) {
        if (hc->closed || !hc->kick)
                return;
        int r = sd_event_source_set_enabled(hc->kick, SD_EVENT_ONESHOT);
        if (r < 0)
                paf_log(PAF_LOG_ERR, "http client: %s: cannot schedule HTTP/2 output: %s",
                        hc->endpoint, strerror(-r));
}

static void waiter_remove(h2cl_conn *hc, paf_http_call *call) {
        if (call->wait_prev)
                call->wait_prev->wait_next = call->wait_next;
        else
                hc->waiters = call->wait_next;
        if (call->wait_next)
                call->wait_next->wait_prev = call->wait_prev;
        else
                hc->waiters_tail = call->wait_prev;
        call->wait_next = call->wait_prev = NULL;
        call->h2_wait = NULL;
}

/*
 * The connection is over (a transport error, the end of the stream, a
 * protocol error, the session's end, or the client going). Streams keep
 * what they received: a call whose response is complete still gets it; the
 * others fail with this reason when they are next delivered.
 */
static void conn_close(h2cl_conn *hc, int code, const char *format, ...) {
        if (hc->closed)
                return;
        conn_ref(hc);
        va_list ap;
        va_start(ap, format);
        vsnprintf(hc->close_reason, sizeof(hc->close_reason), format, ap);
        va_end(ap);
        hc->close_code = code;
        hc->closed = true;
        hc->draining = true;
        conn_unlink(hc);
        hc->client = NULL;
        hc->kick = sd_event_source_disable_unref(hc->kick);
        hc->idle_timer = sd_event_source_disable_unref(hc->idle_timer);
        if (hc->connect) {
                paf_connect_cancel(hc->connect);
                hc->connect = NULL;
        }
        while (hc->waiters) {
                paf_http_call *call = hc->waiters;
                waiter_remove(hc, call);
                hc_call_fail(call, code, "%s", hc->close_reason);
        }
        /* mem_send's pointer dies with the session. */
        hc->pending = NULL;
        hc->n_pending = 0;
        if (hc->flow) {
                paf_flow_close(hc->flow, NULL, NULL);
                hc->flow = NULL;
        }
        for (h2cl_stream *st = hc->streams; st; st = st->next)
                if (st->call)
                        hc_call_kick(st->call);
        conn_unref(hc); /* the open connection's */
        conn_unref(hc);
}

/* After a protocol error nghttp2 detected, its message says more than ours. */
static void conn_fail(h2cl_conn *hc, int code, const char *reason) {
        if (hc->error[0])
                conn_close(hc, -EBADMSG, "HTTP/2: %s", hc->error);
        else
                conn_close(hc, code, "%s", reason);
}

static int on_idle_timeout(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata) {
        h2cl_conn *hc = userdata;
        paf_log(PAF_LOG_DEBUG, "http client: %s: idle HTTP/2 connection closed", hc->endpoint);
        /* GOAWAY first: the server learns we are gone on purpose. */
        hc->draining = true;
        (void)nghttp2_session_terminate_session(hc->session, NGHTTP2_NO_ERROR);
        conn_schedule(hc);
        return 0;
}

/* No call on it: kept for the idle timeout, then closed (at once without one). */
static void conn_update_idle(h2cl_conn *hc) {
        if (hc->closed || !hc->session)
                return;
        if (hc->n_calls > 0 || hc->draining) {
                if (hc->idle_timer)
                        (void)sd_event_source_set_enabled(hc->idle_timer, SD_EVENT_OFF);
                if (hc->n_calls == 0 && hc->draining)
                        conn_schedule(hc); /* it may be done */
                return;
        }
        uint64_t idle = hc->client->timeouts.idle_usec;
        if (idle == 0) {
                on_idle_timeout(NULL, 0, hc);
                return;
        }
        int r;
        if (!hc->idle_timer) {
                r = sd_event_add_time_relative(hc->client->event, &hc->idle_timer, CLOCK_MONOTONIC,
                                               idle, 0, on_idle_timeout, hc);
                if (r >= 0)
                        (void)sd_event_source_set_description(hc->idle_timer,
                                                              "paf-http2-client-idle");
        } else {
                r = sd_event_source_set_time_relative(hc->idle_timer, idle);
                if (r >= 0)
                        r = sd_event_source_set_enabled(hc->idle_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                on_idle_timeout(NULL, 0, hc);
}

/* ---- streams and calls ---- */

static h2cl_stream *stream_of(h2cl_conn *hc, int32_t id) {
        h2cl_stream *st = nghttp2_session_get_stream_user_data(hc->session, id);
        if (st)
                return st;
        for (st = hc->streams; st; st = st->next)
                if (st->id == id)
                        return st;
        return NULL;
}

/* Something for the call to look at, from its deferred source. */
static void stream_kick(h2cl_stream *st) {
        if (st->call)
                hc_call_kick(st->call);
}

void h2cl_detach(paf_http_call *call) {
        h2cl_conn *hc = call->h2_wait;
        if (hc) {
                waiter_remove(hc, call);
                /* Nobody left to connect for. */
                if (!hc->waiters && hc->connect) {
                        conn_close(hc, -ECANCELED, "connect abandoned");
                }
                return;
        }
        h2cl_stream *st = call->h2;
        if (!st)
                return;
        hc = st->conn;
        call->h2 = NULL;
        st->call = NULL;
        if (!hc->closed && hc->session) {
                if (st->in_session && !st->closed)
                        (void)nghttp2_submit_rst_stream(hc->session, NGHTTP2_FLAG_NONE, st->id,
                                                        NGHTTP2_CANCEL);
                /* What it held counts against the connection's window. */
                if (st->rx_len > 0)
                        (void)nghttp2_session_consume(hc->session, st->id, st->rx_len);
                conn_schedule(hc);
        }
        free(st->rx);
        st->rx = NULL;
        st->rx_len = st->rx_size = 0;
        if (!st->in_session || hc->closed)
                stream_free(st);
        assert(hc->n_calls > 0);
        hc->n_calls--;
        conn_update_idle(hc);
        conn_unref(hc); /* the stream's */
}

bool h2cl_sending(paf_http_call *call) {
        h2cl_stream *st = call->h2;
        return st && st->headers_sent && !call->request_submitted && call->queue;
}

/* ---- the request ---- */

static bool is_connection_field(const char *name, size_t n, const char *value, size_t m) {
        static const char *const hop[] = {"connection",        "keep-alive", "proxy-connection",
                                          "transfer-encoding", "upgrade",    "host"};
        for (size_t i = 0; i < ELEMENTSOF(hop); i++)
                if (strlen(hop[i]) == n && strncasecmp(name, hop[i], n) == 0)
                        return true;
        /* RFC 9113 8.2.2: TE only as "trailers". */
        return n == 2 && strncasecmp(name, "te", 2) == 0 &&
               !(m == 8 && strncasecmp(value, "trailers", 8) == 0);
}

static h2_ssize read_body(nghttp2_session *session _unused_, int32_t stream_id _unused_,
                          uint8_t *buf, size_t length, uint32_t *data_flags,
                          nghttp2_data_source *source, void *user_data _unused_) {
        h2cl_stream *st = source->ptr;
        paf_http_call *call = st->call;
        h2cl_conn *hc = st->conn;
        /* Being reset: nothing more of it goes. */
        if (!call)
                return NGHTTP2_ERR_DEFERRED;
        size_t n = 0;
        wreq *w;
        bool eof = false;
        while (n < length && (w = call->queue)) {
                if (w->kind == WREQ_BODY) {
                        size_t k = w->len - w->off;
                        if (k > length - n)
                                k = length - n;
                        memcpy(buf + n, (const uint8_t *)w->data + w->off, k);
                        w->off += k;
                        n += k;
                        if (w->off < w->len)
                                break;
                } else
                        eof = w->kind == WREQ_FINISH;
                call->queue = w->next;
                if (!call->queue)
                        call->queue_tail = NULL;
                w->next = NULL;
                if (hc->done_tail)
                        hc->done_tail->next = w;
                else
                        hc->done = w;
                hc->done_tail = w;
                if (eof)
                        break;
        }
        call->body_sent += n;
        if (n > 0 && call->client)
                call->progress_at = hc_call_now(call);
        if (call->body_length > 0 && call->body_sent == (uint64_t)call->body_length)
                eof = true;
        if (eof) {
                *data_flags |= NGHTTP2_DATA_FLAG_EOF;
                return (h2_ssize)n;
        }
        if (n == 0) {
                st->deferred = true;
                return NGHTTP2_ERR_DEFERRED;
        }
        return (h2_ssize)n;
}

/*
 * The request's fields from its HTTP/1.1 head (client.c built it: one
 * request line, then "Name: value" lines): the pseudo-header fields first,
 * names in lowercase, without what only HTTP/1.1 connections mean.
 */
static int stream_submit(h2cl_conn *hc, h2cl_stream *st, paf_http_call *call) {
        _cleanup_free_ char *head = strndup(call->head, call->head_len);
        _cleanup_free_ nghttp2_nv *nva = NULL;
        if (!head)
                return -ENOMEM;
        size_t n_lines = 0;
        for (const char *p = head; *p; p++)
                n_lines += *p == '\n';
        nva = calloc(n_lines + 4, sizeof(*nva));
        if (!nva)
                return -ENOMEM;

        char *line = head, *eol = strstr(line, "\r\n");
        if (!eol)
                return -EINVAL;
        *eol = '\0';
        char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strrchr(line, ' ') : NULL;
        if (!sp1 || sp2 == sp1)
                return -EINVAL;
        *sp1 = *sp2 = '\0';
        size_t n = 0;
        const char *scheme = hc->tls ? "https" : "http";
        nva[n++] = h2_nv(":method", 7, line, strlen(line));
        nva[n++] = h2_nv(":scheme", 7, scheme, strlen(scheme));
        size_t authority = n++;
        nva[authority] = h2_nv(":authority", 10, "localhost", 9);
        nva[n++] = h2_nv(":path", 5, sp1 + 1, strlen(sp1 + 1));

        for (line = eol + 2; (eol = strstr(line, "\r\n")) && eol != line; line = eol + 2) {
                *eol = '\0';
                char *colon = strchr(line, ':');
                if (!colon)
                        continue;
                size_t name_len = (size_t)(colon - line);
                const char *value = colon + 1;
                value += strspn(value, " \t");
                size_t value_len = strlen(value);
                if (name_len == 4 && strncasecmp(line, "host", 4) == 0) {
                        nva[authority] = h2_nv(":authority", 10, value, value_len);
                        continue;
                }
                if (is_connection_field(line, name_len, value, value_len))
                        continue;
                for (size_t i = 0; i < name_len; i++)
                        if (line[i] >= 'A' && line[i] <= 'Z')
                                line[i] = (char)(line[i] - 'A' + 'a');
                nva[n++] = h2_nv(line, name_len, value, value_len);
        }

        h2_data_provider body = {.source.ptr = st, .read_callback = read_body};
        hc_call_note_request(call);
        int32_t id = h2_submit_request(hc->session, NULL, nva, n,
                                       call->body_length != 0 ? &body : NULL, st);
        if (id < 0)
                return id;
        st->id = id;
        st->in_session = true;
        return 0;
}

/* The call goes on hc as a new stream. */
static void stream_start(h2cl_conn *hc, paf_http_call *call) {
        h2cl_stream *st = calloc(1, sizeof(*st));
        if (!st) {
                hc_call_fail(call, -ENOMEM, "out of memory");
                return;
        }
        st->conn = hc;
        st->call = call;
        st->next = hc->streams;
        if (hc->streams)
                hc->streams->prev = st;
        hc->streams = st;
        call->h2 = st;
        hc->n_calls++;
        conn_ref(hc); /* the stream's */
        conn_update_idle(hc);

        /* The connect timeout no longer applies. */
        if (call->timer)
                (void)sd_event_source_set_enabled(call->timer, SD_EVENT_OFF);
        call->timer_armed = false;
        call->state = CALL_ACTIVE;
        call->version = 20;
        free(call->endpoint);
        call->endpoint = strdup(hc->endpoint);
        free(call->report);
        call->report = NULL;
        if (!hc->report_given) {
                hc->report_given = true;
                call->report = hc->report ? strdup(hc->report) : NULL;
        } else if (asprintf(&call->report, "%s: used (multiplexed on an HTTP/2 connection)\n",
                            hc->endpoint) < 0)
                call->report = NULL;

        int r = stream_submit(hc, st, call);
        if (r < 0) {
                if (r == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE)
                        hc->draining = true;
                hc_call_fail(call, r == -ENOMEM ? -ENOMEM : -EIO,
                             "cannot send the request over HTTP/2: %s",
                             r > -200 ? strerror(-r) : nghttp2_strerror(r));
                return;
        }
        call->head_submitted = true;
        conn_schedule(hc);
}

void h2cl_pump(paf_http_call *call) {
        h2cl_stream *st = call->h2;
        if (!st || !st->in_session || st->conn->closed)
                return;
        if (st->deferred) {
                st->deferred = false;
                (void)nghttp2_session_resume_data(st->conn->session, st->id);
        }
        conn_schedule(st->conn);
}

/* ---- nghttp2's callbacks: they note, and kick the call ---- */

static int on_begin_headers(nghttp2_session *session _unused_, const nghttp2_frame *frame,
                            void *user_data) {
        h2cl_conn *hc = user_data;
        h2cl_stream *st = stream_of(hc, frame->hd.stream_id);
        if (st && st->call)
                hc_call_note_response(st->call);
        if (st && !st->headers_ready) {
                st->n_fields = st->header_bytes = 0;
                st->status = 0;
        }
        return 0;
}

static int on_header(nghttp2_session *session _unused_, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value, size_t valuelen,
                     uint8_t flags _unused_, void *user_data) {
        h2cl_conn *hc = user_data;
        h2cl_stream *st = stream_of(hc, frame->hd.stream_id);
        if (!st || !st->call || st->local_error)
                return 0;
        st->header_bytes += namelen + valuelen;
        if (st->header_bytes > MAX_RESPONSE_HEADER_BYTES || ++st->n_fields > MAX_RESPONSE_HEADERS) {
                st->local_error = st->headers_ready ? "response trailers too large"
                                                    : "response headers too large";
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        /* Trailers: counted, not kept (as over HTTP/1.1). */
        if (st->headers_ready)
                return 0;
        if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
                if (valuelen != 3 || value[0] < '1' || value[0] > '9' || value[1] < '0' ||
                    value[1] > '9' || value[2] < '0' || value[2] > '9') {
                        st->local_error = "invalid status code";
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                }
                st->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
                return 0;
        }
        if (namelen > 0 && name[0] == ':')
                return 0;
        int r = 0;
        if (!st->headers)
                r = paf_http_headers_new(&st->headers);
        /* nghttp2 hands both NUL-terminated, and checked them (RFC 9113 8.2.1). */
        if (r >= 0)
                r = paf_http_headers_add(st->headers, (const char *)name, (const char *)value);
        if (r < 0) {
                st->local_error = r == -ENOMEM ? "out of memory" : "invalid response header field";
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        return 0;
}

static int on_frame_recv(nghttp2_session *session _unused_, const nghttp2_frame *frame,
                         void *user_data) {
        h2cl_conn *hc = user_data;
        h2cl_stream *st = frame->hd.stream_id ? stream_of(hc, frame->hd.stream_id) : NULL;

        switch (frame->hd.type) {
        case NGHTTP2_HEADERS:
                if (!st)
                        break;
                if (!st->headers_ready && st->status >= 100 && st->status < 200) {
                        /* 100 Continue, 103 Early Hints …: not the response. */
                        paf_http_headers_free(st->headers);
                        st->headers = NULL;
                        st->status = 0;
                } else if (!st->headers_ready) {
                        if (!st->headers && paf_http_headers_new(&st->headers) < 0) {
                                st->local_error = "out of memory";
                                (void)nghttp2_submit_rst_stream(hc->session, NGHTTP2_FLAG_NONE,
                                                                st->id, NGHTTP2_INTERNAL_ERROR);
                        } else
                                http_headers_set_version(st->headers, 20);
                        st->headers_ready = true;
                }
                if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
                        st->end_received = true;
                stream_kick(st);
                break;
        case NGHTTP2_DATA:
                if (st && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
                        st->end_received = true;
                        stream_kick(st);
                }
                break;
        case NGHTTP2_RST_STREAM:
                if (st)
                        st->peer_reset = true;
                break;
        case NGHTTP2_GOAWAY:
                /* nghttp2 closes the streams above last_stream_id itself
                 * (REFUSED_STREAM); new calls go to a new connection. */
                hc->goaway = true;
                hc->goaway_last = frame->goaway.last_stream_id;
                hc->goaway_code = frame->goaway.error_code;
                hc->draining = true;
                paf_log(PAF_LOG_DEBUG, "http client: %s: GOAWAY (%s), last stream %" PRId32,
                        hc->endpoint, nghttp2_http2_strerror(hc->goaway_code), hc->goaway_last);
                break;
        default:
                break;
        }
        return 0;
}

static int on_data_chunk(nghttp2_session *session _unused_, uint8_t flags _unused_,
                         int32_t stream_id, const uint8_t *data, size_t len, void *user_data) {
        h2cl_conn *hc = user_data;
        h2cl_stream *st = stream_of(hc, stream_id);
        if (!st || !st->call || st->local_error) {
                hc->orphan_bytes += len;
                return 0;
        }
        if (st->rx_len + len > st->rx_size) {
                size_t want = st->rx_size ? st->rx_size : 16384;
                while (want < st->rx_len + len)
                        want *= 2;
                uint8_t *b = realloc(st->rx, want);
                if (!b) {
                        st->local_error = "out of memory";
                        hc->orphan_bytes += len;
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                }
                st->rx = b;
                st->rx_size = want;
        }
        memcpy(st->rx + st->rx_len, data, len);
        st->rx_len += len;
        stream_kick(st);
        return 0;
}

static int on_stream_close(nghttp2_session *session _unused_, int32_t stream_id,
                           uint32_t error_code, void *user_data) {
        h2cl_conn *hc = user_data;
        h2cl_stream *st = stream_of(hc, stream_id);
        if (!st)
                return 0;
        st->closed = true;
        st->close_code = error_code;
        st->in_session = false;
        if (!st->call)
                stream_free(st);
        else
                stream_kick(st);
        return 0;
}

static int on_frame_send(nghttp2_session *session _unused_, const nghttp2_frame *frame,
                         void *user_data) {
        h2cl_conn *hc = user_data;
        if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
                return 0;
        h2cl_stream *st = stream_of(hc, frame->hd.stream_id);
        if (!st || !st->call)
                return 0;
        bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
        if (frame->hd.type == NGHTTP2_HEADERS)
                st->headers_sent = true;
        else if (!end)
                return 0; /* body progress is the data source's to note */
        if (end)
                st->call->request_submitted = true;
        st->progress = true;
        stream_kick(st);
        return 0;
}

static int on_frame_not_send(nghttp2_session *session _unused_, const nghttp2_frame *frame,
                             int lib_error_code, void *user_data) {
        h2cl_conn *hc = user_data;
        if (frame->hd.type != NGHTTP2_HEADERS)
                return 0;
        h2cl_stream *st = stream_of(hc, frame->hd.stream_id);
        if (st) {
                st->not_sent = lib_error_code;
                stream_kick(st);
        }
        return 0;
}

static int on_error(nghttp2_session *session _unused_, int lib_error_code _unused_, const char *msg,
                    size_t len, void *user_data) {
        h2cl_conn *hc = user_data;
        if (!hc->error[0]) {
                /* Without its full stop: more follows it in messages. */
                while (len > 0 && (msg[len - 1] == '.' || msg[len - 1] == ' '))
                        len--;
                snprintf(hc->error, sizeof(hc->error), "%.*s", (int)len, msg);
        }
        paf_log(PAF_LOG_DEBUG, "http client: %s: HTTP/2: %.*s", hc->endpoint, (int)len, msg);
        return 0;
}

/* ---- delivering to the user ---- */

/* The stream ended without its response: why, in words a user can act on. */
static void stream_fail(h2cl_conn *hc, h2cl_stream *st, paf_http_call *call) {
        bool refused = st->close_code == NGHTTP2_REFUSED_STREAM ||
                       st->not_sent == NGHTTP2_ERR_START_STREAM_NOT_ALLOWED ||
                       (hc->goaway && (st->id > hc->goaway_last || !st->headers_sent));
        if (st->local_error)
                hc_call_fail(call, -EBADMSG, "HTTP/2 stream %" PRId32 ": %s", st->id,
                             st->local_error);
        else if (refused && hc->goaway)
                hc_call_fail(call, -EAGAIN,
                             "HTTP/2 GOAWAY (%s) from the server with last stream %" PRId32
                             ": stream %" PRId32 " was not processed (safe to send again)",
                             nghttp2_http2_strerror(hc->goaway_code), hc->goaway_last, st->id);
        else if (refused)
                hc_call_fail(call, -EAGAIN,
                             "HTTP/2 stream %" PRId32 " refused by the server (REFUSED_STREAM): "
                             "not processed (safe to send again)",
                             st->id);
        else if (st->peer_reset)
                hc_call_fail(call, -ECONNRESET,
                             "HTTP/2 stream %" PRId32 " reset by the server (%s)%s", st->id,
                             nghttp2_http2_strerror(st->close_code),
                             call->headers_delivered ? " in the response body" : "");
        else if (st->closed && hc->error[0])
                hc_call_fail(call, -EBADMSG, "HTTP/2 stream %" PRId32 ": %s", st->id, hc->error);
        else if (st->closed)
                hc_call_fail(call, -EBADMSG, "HTTP/2 stream %" PRId32 " closed: %s", st->id,
                             nghttp2_http2_strerror(st->close_code));
        else if (!call->headers_complete)
                hc_call_fail(call, hc->close_code,
                             "%s (HTTP/2 stream %" PRId32 ", before a response)", hc->close_reason,
                             st->id);
        else if (call->content_length >= 0)
                hc_call_fail(call, hc->close_code,
                             "%s (HTTP/2 stream %" PRId32 ", after %" PRIu64 " of %" PRId64
                             " bytes)",
                             hc->close_reason, st->id, call->body_received, call->content_length);
        else
                hc_call_fail(call, hc->close_code,
                             "%s (HTTP/2 stream %" PRId32 ", after %" PRIu64 " bytes of body)",
                             hc->close_reason, st->id, call->body_received);
}

static int64_t content_length_of(const paf_http_headers *h) {
        const char *s = paf_http_headers_get(h, "content-length");
        if (!s || !*s)
                return -1;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        return errno == 0 && *end == '\0' && v >= 0 ? (int64_t)v : -1;
}

void h2cl_deliver(paf_http_call *call) {
        h2cl_stream *st = call->h2;
        if (!st || call->state != CALL_ACTIVE)
                return;
        h2cl_conn *hc = conn_ref(st->conn);
        hc_call_ref(call);

        if (st->progress) {
                st->progress = false;
                hc_call_timer_update(call, true);
        }
        if (st->headers_ready && !call->headers_delivered && !st->local_error) {
                paf_http_headers_free(call->headers);
                call->headers = st->headers;
                st->headers = NULL;
                call->status = st->status;
                call->headers_complete = true;
                call->got_bytes = true;
                call->content_length = content_length_of(call->headers);
                call->headers_delivered = true;
                hc_call_timer_update(call, true);
                call->handler(call, call->status, call->headers, NULL, call->userdata);
                if (hc_call_gone(call) || call->h2 != st)
                        goto out;
        }
        while (call->headers_delivered && st->rx_len > 0 && hc_call_ready(call)) {
                uint8_t *b = st->rx;
                size_t n = st->rx_len, size = st->rx_size;
                int32_t id = st->id;
                st->rx = NULL;
                st->rx_len = st->rx_size = 0;
                call->body_received += n;
                hc_call_timer_update(call, true);
                call->body_handler(call, b, n, 0, call->body_userdata);
                /* Taken: the server may send as much again. */
                if (!hc->closed && hc->session) {
                        (void)nghttp2_session_consume(hc->session, id, n);
                        conn_schedule(hc);
                }
                if (call->h2 == st && !st->rx) {
                        st->rx = b; /* its buffer, for the next piece */
                        st->rx_size = size;
                } else
                        free(b);
                if (hc_call_gone(call) || call->h2 != st)
                        goto out;
        }
        if (st->rx_len > 0 || (!call->headers_delivered && !st->local_error))
                /* Held for the user, or not all there yet. */
                goto check_end;
        if (st->end_received && !st->local_error) {
                call->state = CALL_DONE;
                call->end_pending = true;
                hc_call_timer_update(call, false);
                /* A request body still going is cut: the answer is in, and
                 * writes not taken yet will not be. */
                h2cl_detach(call);
                wreq *w;
                while (!hc_call_gone(call) && (w = call->queue)) {
                        call->queue = w->next;
                        if (!call->queue)
                                call->queue_tail = NULL;
                        if (w->kind == WREQ_BODY && w->handler)
                                w->handler(call, -EPIPE, w->userdata);
                        hc_wreq_free(w);
                }
                if (!hc_call_gone(call) && hc_call_ready(call) && !call->end_delivered) {
                        call->end_delivered = true;
                        call->body_handler(call, NULL, 0, 0, call->body_userdata);
                }
                goto out;
        }
check_end:
        if (st->local_error || st->closed || st->not_sent || hc->closed) {
                /* Body the user has not taken yet is still theirs, unless
                 * the stream failed: then it is no use. */
                if (st->rx_len > 0 && !st->local_error && !st->not_sent && !st->closed)
                        goto out;
                if (st->end_received && !st->local_error && st->rx_len > 0)
                        goto out;
                stream_fail(hc, st, call);
        }
out:
        hc_call_unref(call);
        conn_unref(hc);
}

/* ---- reading and writing ---- */

static void on_write_done(paf_flow *flow _unused_, int error, void *userdata) {
        h2cl_conn *hc = userdata;
        hc->writing = false;
        hc->wlen = 0;
        if (!hc->closed) {
                if (error < 0) {
                        char why[128];
                        snprintf(why, sizeof(why), "cannot send: %s", strerror(-error));
                        conn_fail(hc, error, why);
                } else
                        conn_flush(hc);
        }
        conn_unref(hc); /* the write's */
}

/* Whether the session has nothing left to do: both sides said GOAWAY, or
 * nghttp2 ended it after an error, and what it wrote has left. */
static bool conn_done(h2cl_conn *hc) {
        return !nghttp2_session_want_read(hc->session) &&
               !nghttp2_session_want_write(hc->session) && !hc->writing && hc->n_pending == 0;
}

static void conn_flush(h2cl_conn *hc) {
        if (hc->closed || !hc->session)
                return;
        if (hc->flushing) {
                hc->flush_again = true;
                return;
        }
        hc->flushing = true;
        conn_ref(hc);
        do {
                hc->flush_again = false;
                if (!hc->writing) {
                        while (hc->wlen < WBUF_SIZE) {
                                if (hc->n_pending == 0) {
                                        const uint8_t *data;
                                        h2_ssize n = h2_session_mem_send(hc->session, &data);
                                        if (n < 0) {
                                                char why[128];
                                                snprintf(why, sizeof(why), "HTTP/2: %s",
                                                         nghttp2_strerror((int)n));
                                                conn_fail(hc, -EPROTO, why);
                                                goto out;
                                        }
                                        if (n == 0)
                                                break;
                                        hc->pending = data;
                                        hc->n_pending = (size_t)n;
                                }
                                size_t k = WBUF_SIZE - hc->wlen;
                                if (k > hc->n_pending)
                                        k = hc->n_pending;
                                memcpy(hc->wbuf + hc->wlen, hc->pending, k);
                                hc->wlen += k;
                                hc->pending += k;
                                hc->n_pending -= k;
                        }
                        if (hc->wlen > 0) {
                                struct iovec iov = {hc->wbuf, hc->wlen};
                                int r = paf_flow_write(hc->flow, &iov, 1, on_write_done, hc);
                                if (r < 0) {
                                        char why[128];
                                        snprintf(why, sizeof(why), "cannot send: %s", strerror(-r));
                                        conn_fail(hc, r, why);
                                        goto out;
                                }
                                hc->writing = true;
                                conn_ref(hc); /* the write's */
                        }
                }
                /* Writes whose bytes nghttp2 took: their handlers may write
                 * again (the next chunk), free the call or the client. */
                while (hc->done && !hc->closed) {
                        wreq *w = hc->done;
                        hc->done = w->next;
                        if (!hc->done)
                                hc->done_tail = NULL;
                        paf_http_call *call = w->call;
                        if (w->kind == WREQ_BODY && w->handler && !call->freed && call->client)
                                w->handler(call, 0, w->userdata);
                        hc_wreq_free(w);
                }
                if (hc->closed)
                        break;
                if (conn_done(hc)) {
                        if (hc->n_calls > 0 || hc->error[0])
                                conn_fail(hc, -EPIPE, "the HTTP/2 session ended");
                        else
                                conn_close(hc, -EPIPE, "closed");
                        break;
                }
        } while (hc->flush_again);
out:
        hc->flushing = false;
        conn_unref(hc);
}

static int on_kick(sd_event_source *s _unused_, void *userdata) {
        conn_flush(userdata);
        return 0;
}

static void on_read(paf_flow *flow _unused_, const void *data, size_t len, int error,
                    void *userdata) {
        h2cl_conn *hc = userdata;
        if (hc->closed)
                return;
        conn_ref(hc);
        if (len > 0) {
                h2_ssize n = h2_session_mem_recv(hc->session, data, len);
                if (n < 0) {
                        char why[128];
                        snprintf(why, sizeof(why), "HTTP/2: %s", nghttp2_strerror((int)n));
                        conn_fail(hc, -EBADMSG, why);
                } else {
                        if (hc->orphan_bytes > 0) {
                                (void)nghttp2_session_consume_connection(hc->session,
                                                                         hc->orphan_bytes);
                                hc->orphan_bytes = 0;
                        }
                        conn_flush(hc);
                }
        } else if (error < 0) {
                char why[128];
                snprintf(why, sizeof(why), "%s", strerror(-error));
                conn_fail(hc, error, why);
        } else if (hc->n_calls == 0 && !hc->error[0])
                conn_close(hc, -EPIPE, "closed by the server");
        else
                conn_fail(hc, -EPIPE, "connection closed");
        conn_unref(hc);
}

/* ---- opening ---- */

paf_flow *h2cl_call_flow(paf_http_call *call) {
        return call->h2 && call->h2->conn ? call->h2->conn->flow : NULL;
}

bool h2cl_flow_is_h2(paf_http_call *call, paf_flow *flow) {
        char alpn[64] = "";
        int r = paf_flow_query(flow, PAF_FLOW_QUERY_TLS_ALPN, alpn, sizeof(alpn));
        if (r >= 0 && strcmp(alpn, "h2") == 0)
                return true;
        /* Prior knowledge: unless ALPN chose something else. */
        return call->want == WANT_HTTP2_PRIOR && (r < 0 || alpn[0] == '\0');
}

static int conn_new(paf_http_client *c, const char *key, h2cl_conn **ret) {
        h2cl_conn *hc = calloc(1, sizeof(*hc));
        if (!hc)
                return -ENOMEM;
        hc->n_ref = 1;
        hc->client = c;
        hc->key = strdup(key);
        int r = hc->key ? sd_event_add_defer(c->event, &hc->kick, on_kick, hc) : -ENOMEM;
        if (r < 0) {
                free(hc->key);
                free(hc);
                return r;
        }
        (void)sd_event_source_set_enabled(hc->kick, SD_EVENT_OFF);
        (void)sd_event_source_set_description(hc->kick, "paf-http2-client");
        hc->next = c->h2_conns;
        if (c->h2_conns)
                c->h2_conns->prev = hc;
        c->h2_conns = hc;
        *ret = hc;
        return 0;
}

/* The session on hc's flow: our SETTINGS, the connection window, reading. */
static int conn_open(h2cl_conn *hc, paf_flow *flow) {
        hc->flow = flow;
        char alpn[64];
        hc->tls = paf_flow_query(flow, PAF_FLOW_QUERY_TLS_ALPN, alpn, sizeof(alpn)) >= 0;
        hc->wbuf = malloc(WBUF_SIZE);
        if (!hc->wbuf)
                return -ENOMEM;

        nghttp2_session_callbacks *cbs;
        int r = nghttp2_session_callbacks_new(&cbs);
        if (r != 0)
                return -ENOMEM;
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
        nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
        nghttp2_session_callbacks_set_error_callback2(cbs, on_error);
        nghttp2_option *opt;
        r = nghttp2_option_new(&opt);
        if (r != 0) {
                nghttp2_session_callbacks_del(cbs);
                return -ENOMEM;
        }
        /* Window updates follow what the user took, not what arrived. */
        nghttp2_option_set_no_auto_window_update(opt, 1);
        /* Until the server's SETTINGS say how many streams it takes, one:
         * nghttp2 would open 100, and a server that takes fewer refuses the
         * rest (REFUSED_STREAM). Its SETTINGS come with its first bytes,
         * so the others wait about a round trip. */
        nghttp2_option_set_peer_max_concurrent_streams(opt, 1);
        r = nghttp2_session_client_new2(&hc->session, cbs, hc, opt);
        nghttp2_option_del(opt);
        nghttp2_session_callbacks_del(cbs);
        if (r != 0)
                return -ENOMEM;

        const nghttp2_settings_entry settings[] = {
                {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
                {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_RESPONSE_HEADER_BYTES},
        };
        r = nghttp2_submit_settings(hc->session, NGHTTP2_FLAG_NONE, settings, ELEMENTSOF(settings));
        if (r == 0)
                r = nghttp2_session_set_local_window_size(hc->session, NGHTTP2_FLAG_NONE, 0,
                                                          CONN_WINDOW);
        if (r != 0)
                return -ENOMEM;
        r = paf_flow_read_start(flow, on_read, hc);
        if (r < 0)
                return r;
        hc->client->n_connections++;
        conn_schedule(hc); /* the preface */
        return 0;
}

int h2cl_conn_start(paf_http_call *call, paf_flow *flow, const char *endpoint, char *report) {
        h2cl_conn *hc;
        int r = conn_new(call->client, call->pool_key, &hc);
        if (r < 0) {
                free(report);
                paf_flow_close(flow, NULL, NULL);
                return r;
        }
        hc->report = report;
        hc->endpoint = strdup(endpoint);
        r = hc->endpoint ? conn_open(hc, flow) : -ENOMEM;
        if (r < 0) {
                if (!hc->flow)
                        paf_flow_close(flow, NULL, NULL);
                conn_close(hc, r, "cannot start HTTP/2: %s", strerror(-r));
                return r;
        }
        stream_start(hc, call);
        return 0;
}

int h2cl_join(paf_http_call *call) {
        for (h2cl_conn *hc = call->client->h2_conns; hc; hc = hc->next) {
                if (hc->draining || hc->closed || strcmp(hc->key, call->pool_key) != 0)
                        continue;
                if (hc->connect) {
                        int r = hc_call_arm_connect_timer(call);
                        if (r < 0)
                                return r;
                        call->h2_wait = hc;
                        call->wait_prev = hc->waiters_tail;
                        if (hc->waiters_tail)
                                hc->waiters_tail->wait_next = call;
                        else
                                hc->waiters = call;
                        hc->waiters_tail = call;
                        return 1;
                }
                stream_start(hc, call);
                return 1;
        }
        return 0;
}

static void on_connected(paf_flow *flow, const paf_attempt *attempts, size_t n, void *userdata) {
        h2cl_conn *hc = userdata;
        /* Every call that waited for this connect has its times. */
        for (paf_http_call *call = flow ? hc->waiters : NULL; call; call = call->wait_next)
                hc_call_note_connected(call, hc->connect);
        hc->connect = NULL;
        conn_ref(hc);
        if (!flow) {
                while (hc->waiters) {
                        paf_http_call *call = hc->waiters;
                        waiter_remove(hc, call);
                        hc_call_fail_connect(call, attempts, n);
                }
                conn_close(hc, -ECANCELED, "connect failed");
                conn_unref(hc);
                return;
        }
        paf_http_call *first = hc->waiters;
        assert(first);
        if (!h2cl_flow_is_h2(first, flow)) {
                /* The server speaks HTTP/1.1 only: the first call takes this
                 * connection, the others the pool's or their own. */
                paf_http_call *rest = first->wait_next;
                waiter_remove(hc, first);
                hc->waiters = hc->waiters_tail = NULL;
                for (paf_http_call *call = rest; call; call = call->wait_next)
                        call->h2_wait = NULL;
                conn_close(hc, -ECANCELED, "no HTTP/2");
                hc_call_take_flow(first, flow, attempts, n);
                while (rest) {
                        paf_http_call *call = rest;
                        rest = call->wait_next;
                        call->wait_next = call->wait_prev = NULL;
                        int r = hc_call_start_http1(call);
                        if (r < 0)
                                hc_call_fail(call, r, "cannot connect: %s", strerror(-r));
                }
                conn_unref(hc);
                return;
        }

        /* As client.c says which candidate connected: after the failures. */
        size_t failed = 0;
        for (size_t i = 0; i < n; i++)
                if (attempts[i].candidate && attempts[i].tried && attempts[i].error != 0)
                        failed++;
        const char *endpoint = failed < first->n_candidates ? first->candidates[failed]
                                                            : paf_flow_get_protocol(flow);
        hc->endpoint = strdup(endpoint);
        hc->report = paf_attempts_format(attempts, n);
        int r = hc->endpoint ? conn_open(hc, flow) : -ENOMEM;
        if (r < 0) {
                if (!hc->flow)
                        paf_flow_close(flow, NULL, NULL);
                conn_close(hc, r, "cannot start HTTP/2: %s", strerror(-r));
        } else
                while (hc->waiters && !hc->closed) {
                        paf_http_call *call = hc->waiters;
                        waiter_remove(hc, call);
                        stream_start(hc, call);
                }
        conn_unref(hc);
}

int h2cl_connect(paf_http_call *call) {
        paf_http_client *c = call->client;
        h2cl_conn *hc;
        int r = conn_new(c, call->pool_key, &hc);
        if (r < 0)
                return r;
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
        r = hc_call_connect_ctx(call, &ctx);
        if (r >= 0)
                r = paf_registry_connect(c->reg, ctx, c->event, on_connected, hc, &hc->connect);
        if (r >= 0)
                r = hc_call_arm_connect_timer(call);
        if (r < 0) {
                conn_close(hc, r, "cannot connect: %s", strerror(-r));
                return r;
        }
        call->h2_wait = hc;
        hc->waiters = hc->waiters_tail = call;
        return 0;
}

void h2cl_close_all(paf_http_client *c) {
        while (c->h2_conns)
                conn_close(c->h2_conns, -ECANCELED, "client freed");
}
