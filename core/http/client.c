/* core/http/client.c — the HTTP client: calls, their timers, the pool of HTTP/1.1
 * connections and llhttp-parsed responses; HTTP/2 streams are h2-client.c's. */
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>

#include <llhttp.h>

#include "core/http/client-internal.h"
#include "core/http/proxy-internal.h"

#define USEC_PER_SEC UINT64_C(1000000)
/* sd-event's default (250 ms) would make a short timeout fire at twice its length. */
#define TIMER_ACCURACY_USEC (10 * 1000)

/*
 * How things live.
 *
 * A call has a reference count: the user's (dropped by paf_http_call_free()),
 * one per write the flow has not completed (their completions run after the
 * user may have freed the call), and a temporary one around every call into
 * user code. A freed call only waits for those completions: its connect is
 * cancelled, its connection closed, its sources gone, and nothing calls the
 * user back any more.
 *
 * A connection has a reference count too: one while its flow is open, one
 * per write in flight, and a temporary one while its read handler runs, so a
 * user freeing the call (or the client) from inside a callback never frees
 * the connection under the parser.
 *
 * The parser never calls the user. Its callbacks note one event (headers,
 * a piece of body, the end) and pause llhttp; the read loop then acts on the
 * event outside llhttp, and looks at what the user did before parsing on.
 */

typedef enum parse_event {
        EV_NONE,
        EV_HEADERS,
        EV_BODY,
        EV_COMPLETE,
} parse_event;

struct conn {
        unsigned n_ref;
        paf_http_client *client; /* NULL once closed */
        conn *idle_next, *idle_prev;
        bool in_pool;
        bool closed;
        bool reused; /* the current call is not its first */

        paf_flow *flow;
        char *key;      /* the pool key (pool_key()) of the call that opened it */
        char *endpoint; /* the candidate that connected */
        char *report;   /* its connect's attempts (paf_attempts_format) */
        sd_event_source *idle_timer;
        paf_http_call *call; /* the call it serves, NULL while idle */

        llhttp_t parser;
        parse_event event; /* what the parser paused on */
        const char *body_at;
        size_t body_len;
        bool keep_alive;

        /* Read but not parsed: the user paused. The flow is not read meanwhile. */
        uint8_t *pending;
        size_t n_pending;
        bool stalled;
};

static void conn_feed(conn *cn, const uint8_t *data, size_t len, bool again);
static const llhttp_settings_t *parser_settings(void);

/* ---- small helpers ---- */

static void format_seconds(uint64_t usec, char *buf, size_t size) {
        if (usec % USEC_PER_SEC == 0)
                snprintf(buf, size, "%" PRIu64 " s", usec / USEC_PER_SEC);
        else
                snprintf(buf, size, "%.3g s", (double)usec / (double)USEC_PER_SEC);
}

static bool is_token(const char *s) {
        if (!s || !*s)
                return false;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || strchr("!#$%&'*+-.^_`|~", *p)))
                        return false;
        return true;
}

/* A request target may not hold what would end the request line early. */
static bool target_is_valid(const char *s) {
        if (!s || !*s)
                return false;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p <= 0x20 || *p == 0x7f)
                        return false;
        return true;
}

static bool method_is_idempotent(const char *m) {
        static const char *const idempotent[] = {"GET",   "HEAD", "OPTIONS",
                                                 "TRACE", "PUT",  "DELETE"};
        for (size_t i = 0; i < ELEMENTSOF(idempotent); i++)
                if (strcmp(m, idempotent[i]) == 0)
                        return true;
        return false;
}

static int append(char **buf, size_t *len, size_t *size, const char *s) {
        size_t n = strlen(s);
        if (*len + n + 1 > *size) {
                size_t want = (*len + n + 1) * 2;
                char *b = realloc(*buf, want);
                if (!b)
                        return -ENOMEM;
                *buf = b;
                *size = want;
        }
        memcpy(*buf + *len, s, n + 1);
        *len += n;
        return 0;
}

/* ---- connections ---- */

static conn *conn_ref(conn *cn) {
        cn->n_ref++;
        return cn;
}

static void conn_unref(conn *cn) {
        assert(cn->n_ref > 0);
        if (--cn->n_ref > 0)
                return;
        assert(cn->closed && !cn->flow);
        sd_event_source_disable_unref(cn->idle_timer);
        free(cn->pending);
        free(cn->key);
        free(cn->endpoint);
        free(cn->report);
        free(cn);
}

static void pool_remove(conn *cn) {
        if (!cn->in_pool)
                return;
        if (cn->idle_prev)
                cn->idle_prev->idle_next = cn->idle_next;
        else
                cn->client->idle = cn->idle_next;
        if (cn->idle_next)
                cn->idle_next->idle_prev = cn->idle_prev;
        cn->idle_next = cn->idle_prev = NULL;
        cn->in_pool = false;
        if (cn->idle_timer)
                (void)sd_event_source_set_enabled(cn->idle_timer, SD_EVENT_OFF);
}

/* Close the transport; the connection goes once the writes in flight completed. */
static void conn_close(conn *cn) {
        if (cn->closed)
                return;
        pool_remove(cn);
        cn->closed = true;
        cn->client = NULL;
        cn->call = NULL;
        cn->idle_timer = sd_event_source_disable_unref(cn->idle_timer);
        free(cn->pending);
        cn->pending = NULL;
        cn->n_pending = 0;
        paf_flow_close(cn->flow, NULL, NULL);
        cn->flow = NULL;
        conn_unref(cn); /* the open flow's reference */
}

static int on_idle_timeout(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata) {
        conn *cn = userdata;
        paf_log(PAF_LOG_DEBUG, "http client: %s: idle connection closed", cn->endpoint);
        conn_close(cn);
        return 0;
}

/* After a complete exchange: back to the pool, or closed. */
static void conn_release(conn *cn, bool reusable) {
        paf_http_client *c = cn->client;

        cn->call = NULL;
        if (!reusable || !c || c->timeouts.idle_usec == 0) {
                conn_close(cn);
                return;
        }
        int r;
        if (!cn->idle_timer)
                r = sd_event_add_time_relative(c->event, &cn->idle_timer, CLOCK_MONOTONIC,
                                               c->timeouts.idle_usec, 0, on_idle_timeout, cn);
        else {
                r = sd_event_source_set_time_relative(cn->idle_timer, c->timeouts.idle_usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(cn->idle_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0) {
                conn_close(cn);
                return;
        }
        (void)sd_event_source_set_description(cn->idle_timer, "paf-http-client-idle");
        cn->idle_prev = NULL;
        cn->idle_next = c->idle;
        if (c->idle)
                c->idle->idle_prev = cn;
        c->idle = cn;
        cn->in_pool = true;
}

static conn *pool_take(paf_http_client *c, const char *key) {
        for (conn *cn = c->idle; cn; cn = cn->idle_next)
                if (strcmp(cn->key, key) == 0) {
                        pool_remove(cn);
                        cn->reused = true;
                        return cn;
                }
        return NULL;
}

/* Keep the rest for later and stop reading: the user is not ready. */
static void conn_stall(conn *cn, const uint8_t *data, size_t len) {
        assert(cn->n_pending == 0);
        if (len > 0) {
                cn->pending = malloc(len);
                if (!cn->pending) {
                        hc_call_fail(cn->call, -ENOMEM, "out of memory");
                        return;
                }
                memcpy(cn->pending, data, len);
                cn->n_pending = len;
        }
        cn->stalled = true;
        (void)paf_flow_read_stop(cn->flow);
        hc_call_timer_update(cn->call, false);
}

/* ---- calls ---- */

paf_http_call *hc_call_ref(paf_http_call *call) {
        call->n_ref++;
        return call;
}

void hc_call_unref(paf_http_call *call) {
        assert(call->n_ref > 0);
        if (--call->n_ref > 0)
                return;
        assert(!call->conn && !call->connect && !call->queue && !call->h2 && !call->h2_wait);
        sd_event_source_disable_unref(call->timer);
        sd_event_source_disable_unref(call->defer);
        for (size_t i = 0; i < call->n_candidates; i++)
                free(call->candidates[i]);
        free(call->candidates);
        free(call->pool_key);
        free(call->label);
        free(call->endpoint);
        free(call->report);
        free(call->head);
        free(call->field);
        free(call->value);
        free(call->held);
        paf_http_headers_free(call->headers);
        paf_ctx_unref(call->ctx);
        free(call);
}

/* Whether the user takes body now. */
bool hc_call_ready(paf_http_call *call) {
        return call->body_handler && !call->paused && !call->freed;
}

static const char *call_endpoint(paf_http_call *call) {
        if (call->endpoint)
                return call->endpoint;
        return call->n_candidates > 0 ? call->candidates[0] : "?";
}

void hc_wreq_free(wreq *w) {
        if (w->conn)
                conn_unref(w->conn);
        free(w->owned);
        paf_http_call *call = w->call;
        free(w);
        hc_call_unref(call);
}

/* Stop everything the call has going on the network. Nothing is called. */
static void call_stop(paf_http_call *call) {
        if (call->connect) {
                paf_connect_cancel(call->connect);
                call->connect = NULL;
        }
        if (call->conn) {
                conn *cn = call->conn;
                call->conn = NULL;
                cn->call = NULL;
                conn_close(cn);
        }
        h2cl_detach(call);
        call->timer_armed = false;
        if (call->timer)
                (void)sd_event_source_set_enabled(call->timer, SD_EVENT_OFF);
}

void hc_call_fail(paf_http_call *call, int code, const char *format, ...) {
        if (call->state == CALL_FAILED || call->state == CALL_DONE)
                return;
        call->state = CALL_FAILED;
        char reason[400];
        va_list ap;
        va_start(ap, format);
        vsnprintf(reason, sizeof(reason), format, ap);
        va_end(ap);
        paf_error_set(&call->error, code < 0 ? code : -EIO, "%s: %s: %s", call->label,
                      call_endpoint(call), reason);
        paf_log(PAF_LOG_DEBUG, "http client: %s", call->error.message);
        call_stop(call);
        hc_call_kick(call);
}

/* "  LINE\n  LINE": text's lines indented, without the last newline. */
static char *indent_lines(const char *text) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        if (!f)
                return NULL;
        for (const char *p = text; *p;) {
                size_t n = strcspn(p, "\n");
                fprintf(f, "%s  %.*s", p == text ? "" : "\n", (int)n, p);
                p += n;
                if (*p == '\n')
                        p++;
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

/*
 * A connect that found no flow. The call's report lists every attempt. The
 * error says what the one transport tried said, on one line; when several
 * were tried, or none could be, it lists them one per line.
 */
void hc_call_fail_connect(paf_http_call *call, const paf_attempt *attempts, size_t n) {
        if (call->state == CALL_FAILED || call->state == CALL_DONE)
                return;
        size_t n_tried = 0, tried = 0;
        for (size_t i = 0; i < n; i++)
                if (attempts[i].tried) {
                        n_tried++;
                        tried = i;
                }
        /* No candidate: no protocol serves this endpoint (as a listen
         * address no protocol understands). */
        int code = -EAFNOSUPPORT;
        for (size_t i = 0; i < n; i++)
                if (attempts[i].tried && attempts[i].error < 0) {
                        code = attempts[i].error;
                        break;
                }
        free(call->report);
        call->report = paf_attempts_format(attempts, n);

        /* Only what was tried, unless nothing was: then why nothing could be. */
        _cleanup_free_ paf_attempt *list = calloc(n + 1, sizeof(*list));
        size_t k = 0;
        for (size_t i = 0; list && i < n; i++)
                if (n_tried == 0 || attempts[i].tried)
                        list[k++] = attempts[i];
        _cleanup_free_ char *text = list ? paf_attempts_format(list, k) : NULL;
        _cleanup_free_ char *lines = text ? indent_lines(text) : NULL;

        call->state = CALL_FAILED;
        if (n == 0)
                paf_error_set(&call->error, code,
                              "%s: no transport for this request: no protocol is registered",
                              call->label);
        else if (n_tried == 1) {
                const paf_attempt *a = &attempts[tried];
                paf_error_set(&call->error, code, "%s: %s%s%s: %s", call->label,
                              a->protocol ? a->protocol : "?", a->endpoint ? " " : "",
                              a->endpoint ? a->endpoint : "",
                              a->reason && *a->reason ? a->reason : strerror(-a->error));
        } else
                paf_error_set(&call->error, code, "%s: %s:\n%s", call->label,
                              n_tried == 0 ? "no transport for this request"
                                           : "every transport failed",
                              lines ? lines : "out of memory");
        call_stop(call);
        hc_call_kick(call);
}

void hc_call_kick(paf_http_call *call) {
        if (!call->defer || call->freed)
                return;
        int r = sd_event_source_set_enabled(call->defer, SD_EVENT_ONESHOT);
        if (r < 0)
                paf_log(PAF_LOG_ERR, "http client: %s: cannot schedule: %s", call->label,
                        strerror(-r));
}

static void call_reset_response(paf_http_call *call) {
        call->got_bytes = call->interim = call->headers_complete = false;
        call->status = 0;
        paf_http_headers_free(call->headers);
        call->headers = NULL;
        call->field_len = call->value_len = call->header_bytes = 0;
        call->in_value = false;
        call->parse_error = NULL;
        call->content_length = -1;
        call->chunked = false;
        call->body_received = 0;
}

/* ---- writing the request ---- */

static void on_wreq_done(paf_flow *flow, int error, void *userdata);
static int call_start_connect(paf_http_call *call);

/* Hand one write to the connection's flow. */
static int conn_submit(conn *cn, wreq *w) {
        paf_http_call *call = w->call;
        struct iovec iov[3];
        size_t n = 0;
        bool chunked = call->body_length < 0;

        switch (w->kind) {
        case WREQ_HEAD:
                iov[n++] = (struct iovec){w->owned, call->head_len};
                break;
        case WREQ_BODY:
                if (w->len == 0)
                        break; /* an empty chunk would end the body */
                if (chunked) {
                        snprintf(w->line, sizeof(w->line), "%zx\r\n", w->len);
                        iov[n++] = (struct iovec){w->line, strlen(w->line)};
                }
                iov[n++] = (struct iovec){(void *)w->data, w->len};
                if (chunked)
                        iov[n++] = (struct iovec){(void *)"\r\n", 2};
                break;
        case WREQ_FINISH:
                if (chunked)
                        iov[n++] = (struct iovec){(void *)"0\r\n\r\n", 5};
                break;
        }
        int r = paf_flow_write(cn->flow, iov, n, on_wreq_done, w);
        if (r < 0)
                return r;
        w->conn = conn_ref(cn);
        call->n_in_flight++;
        return 0;
}

/* Send what is queued, head first. */
static void call_pump(paf_http_call *call) {
        conn *cn = call->conn;
        if (call->h2) {
                h2cl_pump(call);
                return;
        }
        if (!cn || call->state != CALL_ACTIVE)
                return;
        wreq *w;
        while ((w = call->queue)) {
                call->queue = w->next;
                if (!call->queue)
                        call->queue_tail = NULL;
                w->next = NULL;
                if (w->kind == WREQ_HEAD)
                        hc_call_note_request(call);
                int r = conn_submit(cn, w);
                if (r < 0) {
                        /* Not taken: its handler learns it from the failure. */
                        w->next = call->queue;
                        call->queue = w;
                        if (!call->queue_tail)
                                call->queue_tail = w;
                        hc_call_fail(call, r, "cannot write: %s", strerror(-r));
                        return;
                }
                if (w->kind == WREQ_HEAD)
                        call->head_submitted = true;
        }
        if (call->head_submitted &&
            (call->body_length == 0 || call->finish_queued ||
             (call->body_length > 0 && call->body_queued == (uint64_t)call->body_length)))
                call->request_submitted = true;
        hc_call_timer_update(call, false);
}

static void call_enqueue(paf_http_call *call, wreq *w) {
        if (call->queue_tail)
                call->queue_tail->next = w;
        else
                call->queue = w;
        call->queue_tail = w;
}

static int call_queue_head(paf_http_call *call) {
        wreq *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->owned = malloc(call->head_len);
        if (!w->owned) {
                free(w);
                return -ENOMEM;
        }
        memcpy(w->owned, call->head, call->head_len);
        w->kind = WREQ_HEAD;
        w->call = hc_call_ref(call);
        /* The head goes before any body the user already queued. */
        w->next = call->queue;
        call->queue = w;
        if (!call->queue_tail)
                call->queue_tail = w;
        return 0;
}

/* Start the exchange on cn. */
static void call_attach(paf_http_call *call, conn *cn) {
        call->conn = cn;
        cn->call = call;
        call->state = CALL_ACTIVE;
        call->version = 11;
        free(call->endpoint);
        call->endpoint = strdup(cn->endpoint);
        /* Best effort, like the endpoint: only messages and -v read it. */
        free(call->report);
        call->report = NULL;
        if (!cn->reused)
                call->report = cn->report ? strdup(cn->report) : NULL;
        else if (asprintf(&call->report, "%s: used (kept alive from an earlier request)\n",
                          cn->endpoint) < 0)
                call->report = NULL;
        llhttp_init(&cn->parser, HTTP_RESPONSE, parser_settings());
        cn->parser.data = cn;
        cn->event = EV_NONE;
        cn->stalled = false;
        call_reset_response(call);
        (void)paf_flow_get_write_progress(cn->flow, &call->sent_before, NULL);
        int r = call_queue_head(call);
        if (r < 0) {
                hc_call_fail(call, r, "out of memory");
                return;
        }
        call_pump(call);
        hc_call_timer_update(call, true);
}

/* The connection went before the response began: on a connection the pool
 * gave us, the server most likely closed it while idle, so an idempotent
 * request without a body is sent again once, on a fresh connection. */
static bool call_maybe_retry(paf_http_call *call, conn *cn) {
        if (call->got_bytes || !cn->reused || !call->retryable || call->retried || !call->client)
                return false;
        paf_log(PAF_LOG_DEBUG, "http client: %s: %s: kept-alive connection went away, retrying",
                call->label, cn->endpoint);
        call->retried = true;
        call->conn = NULL;
        cn->call = NULL;
        conn_close(cn);
        call->head_submitted = call->request_submitted = false;
        call->state = CALL_CONNECTING;
        int r = call_start_connect(call);
        if (r < 0)
                hc_call_fail(call, r, "cannot connect again: %s", strerror(-r));
        return true;
}

static void on_wreq_done(paf_flow *flow _unused_, int error, void *userdata) {
        wreq *w = userdata;
        paf_http_call *call = w->call;
        conn *cn = w->conn;

        assert(call->n_in_flight > 0);
        call->n_in_flight--;
        if (error < 0 && call->conn == cn && call->state == CALL_ACTIVE) {
                if (!call_maybe_retry(call, cn))
                        hc_call_fail(call, error, "cannot send the request: %s", strerror(-error));
        } else if (error == 0 && call->conn == cn)
                hc_call_timer_update(call, true);

        if (w->kind == WREQ_BODY && w->handler && !call->freed)
                w->handler(call, error < 0 ? error : 0, w->userdata);
        hc_wreq_free(w);
}

/* ---- the request head ---- */

static int host_from_ctx(paf_registry *reg, paf_ctx *ctx, char *buf, size_t size) {
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *l = NULL;
        /* Through the plugins' rules: tcp.host may come from url.host. */
        int r = paf_ctx_new_layered(ctx, reg->ctx, &l);
        if (r < 0)
                return r;

        const char *s, *scheme = NULL;
        int64_t port;
        if (paf_ctx_get_string(l, "http.host", &s) >= 0 && *s) {
                snprintf(buf, size, "%s", s);
                return 0;
        }
        (void)paf_ctx_get_string(l, "url.scheme", &scheme);
        bool https = scheme && strcmp(scheme, "https") == 0;
        /* "http+unix" and friends carry a path or an address, not a host. */
        bool other = scheme && strchr(scheme, '+');
        if (!other && paf_ctx_get_string(l, "url.host", &s) >= 0 && *s) {
                if (paf_ctx_get_int(l, "url.port", &port) >= 0)
                        snprintf(buf, size, "%s:%" PRId64, s, port);
                else
                        snprintf(buf, size, "%s", s);
                return 0;
        }
        if (!other && paf_ctx_get_string(l, "tcp.host", &s) >= 0 && *s) {
                bool v6 = strchr(s, ':') && s[0] != '[';
                if (paf_ctx_get_int(l, "tcp.port", &port) < 0 || port == (https ? 443 : 80))
                        snprintf(buf, size, v6 ? "[%s]" : "%s", s);
                else
                        snprintf(buf, size, v6 ? "[%s]:%" PRId64 : "%s:%" PRId64, s, port);
                return 0;
        }
        snprintf(buf, size, "localhost");
        return 0;
}

static int build_head(paf_http_call *call, paf_registry *reg, paf_ctx *ctx, const char *method,
                      const char *target, const paf_http_headers *headers) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, size = 0;
        char line[600];
        int r;

#define ADD(s)                                                                                     \
        do {                                                                                       \
                r = append(&buf, &len, &size, (s));                                                \
                if (r < 0)                                                                         \
                        return r;                                                                  \
        } while (0)

        /* http.version "1.0": an HTTP/1.0 request line, as curl --http1.0. */
        const char *version;
        bool http10 = paf_ctx_get_string(ctx, "http.version", &version) >= 0 &&
                      strcmp(version, "1.0") == 0;
        ADD(method);
        ADD(" ");
        ADD(target);
        ADD(http10 ? " HTTP/1.0\r\nHost: " : " HTTP/1.1\r\nHost: ");
        const char *host = paf_http_headers_get(headers, "Host");
        if (host)
                ADD(host);
        else {
                r = host_from_ctx(reg, ctx, line, sizeof(line));
                if (r < 0)
                        return r;
                /* Cut short, it would name another host; no real one is this long. */
                if (strlen(line) >= sizeof(line) - 1)
                        return -ENAMETOOLONG;
                ADD(line);
        }
        ADD("\r\n");

        bool have_agent = false;
        size_t n = paf_http_headers_count(headers);
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(headers, i, &name, &value) < 0)
                        continue;
                /* The framing is ours: body_length decides it. */
                if (strcasecmp(name, "Host") == 0 || strcasecmp(name, "Content-Length") == 0 ||
                    strcasecmp(name, "Transfer-Encoding") == 0)
                        continue;
                if (strcasecmp(name, "User-Agent") == 0)
                        have_agent = true;
                ADD(name);
                ADD(": ");
                ADD(value);
                ADD("\r\n");
        }
        /* The cookies a rule of the caller's gives for this URL (paf get's
         * jar: tools/get-http.c), unless the caller sent its own. */
        const char *cookie;
        if (!paf_http_headers_get(headers, "Cookie") &&
            paf_ctx_get_string(ctx, "http.cookie", &cookie) >= 0 && *cookie &&
            !strpbrk(cookie, "\r\n")) {
                ADD("Cookie: ");
                ADD(cookie);
                ADD("\r\n");
        }
        if (call->body_length > 0) {
                snprintf(line, sizeof(line), "Content-Length: %" PRId64 "\r\n", call->body_length);
                ADD(line);
        } else if (call->body_length < 0)
                ADD("Transfer-Encoding: chunked\r\n");
        else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                 strcmp(method, "PATCH") == 0)
                /* RFC 9112 6.3: a method that defines content says there is none. */
                ADD("Content-Length: 0\r\n");
        /* The ctx's "http.user-agent" replaces ours; empty, none is sent
         * (curl -H "User-Agent:"). */
        const char *agent;
        if (have_agent)
                ;
        else if (paf_ctx_get_string(ctx, "http.user-agent", &agent) >= 0) {
                if (*agent && !strpbrk(agent, "\r\n")) {
                        ADD("User-Agent: ");
                        ADD(agent);
                        ADD("\r\n");
                }
        } else
                ADD("User-Agent: paf/" PAF_VERSION "\r\n");
        ADD("\r\n");
#undef ADD

        call->head = buf;
        call->head_len = len;
        buf = NULL;
        return 0;
}

/* ---- the response parser ---- */

static int grow_append(char **buf, size_t *len, const char *at, size_t n) {
        char *b = realloc(*buf, *len + n + 1);
        if (!b)
                return -ENOMEM;
        memcpy(b + *len, at, n);
        *len += n;
        b[*len] = '\0';
        *buf = b;
        return 0;
}

static paf_http_call *parser_call(llhttp_t *p) {
        conn *cn = p->data;
        return cn->call;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
        paf_http_call *call = parser_call(p);
        if (call->headers_complete)
                return 0; /* trailers: not kept */
        call->header_bytes += n;
        if (call->header_bytes > MAX_RESPONSE_HEADER_BYTES) {
                call->parse_error = "response headers too large";
                return HPE_USER;
        }
        if (grow_append(&call->field, &call->field_len, at, n) < 0) {
                call->parse_error = "out of memory";
                return HPE_USER;
        }
        return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
        paf_http_call *call = parser_call(p);
        if (call->headers_complete)
                return 0;
        call->header_bytes += n;
        if (call->header_bytes > MAX_RESPONSE_HEADER_BYTES) {
                call->parse_error = "response headers too large";
                return HPE_USER;
        }
        call->in_value = true;
        if (grow_append(&call->value, &call->value_len, at, n) < 0) {
                call->parse_error = "out of memory";
                return HPE_USER;
        }
        return 0;
}

static int on_header_value_complete(llhttp_t *p) {
        paf_http_call *call = parser_call(p);
        if (call->headers_complete)
                return 0;
        const char *value = call->in_value ? call->value : "";
        size_t m = call->in_value ? call->value_len : 0;
        while (m > 0 && (value[m - 1] == ' ' || value[m - 1] == '\t'))
                m--;
        if (call->in_value)
                call->value[m] = '\0';
        if (!call->headers && paf_http_headers_new(&call->headers) < 0) {
                call->parse_error = "out of memory";
                return HPE_USER;
        }
        if (paf_http_headers_count(call->headers) >= MAX_RESPONSE_HEADERS) {
                call->parse_error = "too many response header fields";
                return HPE_USER;
        }
        int r = paf_http_headers_add(call->headers, call->field ? call->field : "", value);
        if (r < 0) {
                call->parse_error =
                        r == -ENOMEM ? "out of memory" : "invalid response header field";
                return HPE_USER;
        }
        call->field_len = call->value_len = 0;
        call->in_value = false;
        return 0;
}

static int on_headers_complete(llhttp_t *p) {
        conn *cn = p->data;
        paf_http_call *call = cn->call;
        int status = p->status_code;

        /* RFC 9112: three digits. llhttp takes "HTTP/1.1 \r\n" as status 0,
         * which our caller would read as a failed call, and up to 65535. */
        if (status < 100 || status > 999) {
                call->parse_error = "invalid status code";
                return HPE_USER;
        }
        if (status >= 100 && status < 200) {
                if (status == 101) {
                        call->parse_error = "unexpected 101 Switching Protocols";
                        return HPE_USER;
                }
                /* 100 Continue, 103 Early Hints …: not the response; skipped. */
                call->interim = true;
                paf_http_headers_free(call->headers);
                call->headers = NULL;
                p->flags |= F_SKIPBODY;
                return 0;
        }
        call->headers_complete = true;
        call->status = status;
        /* llhttp cannot know the request was HEAD; 304 may announce the length
         * of a body it does not carry. Setting the flag here is what returning
         * 1 would do, which a pausing callback cannot return. */
        if (call->head_request || status == 204 || status == 304)
                p->flags |= F_SKIPBODY;
        call->chunked = (p->flags & F_CHUNKED) != 0;
        call->content_length =
                (p->flags & F_CONTENT_LENGTH) && !call->chunked ? (int64_t)p->content_length : -1;
        if (!call->headers && paf_http_headers_new(&call->headers) < 0) {
                call->parse_error = "out of memory";
                return HPE_USER;
        }
        http_headers_set_version(call->headers, p->http_major * 10 + p->http_minor);
        if (http_headers_set_reason(call->headers, call->reason, call->reason_len) < 0) {
                call->parse_error = "out of memory";
                return HPE_USER;
        }
        call->reason_len = 0;
        cn->event = EV_HEADERS;
        return HPE_PAUSED;
}

/* The reason phrase, in as many pieces as the buffers cut it. */
static int on_status(llhttp_t *p, const char *at, size_t n) {
        paf_http_call *call = parser_call(p);
        size_t room = sizeof(call->reason) - 1 - call->reason_len;
        if (n > room)
                n = room;
        memcpy(call->reason + call->reason_len, at, n);
        call->reason_len += n;
        return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
        conn *cn = p->data;
        /* llhttp flushes an open span at the end of every buffer, empty when
         * the buffer ended where the span began: nothing to stop for. */
        if (n == 0)
                return 0;
        cn->call->body_received += n;
        cn->event = EV_BODY;
        cn->body_at = at;
        cn->body_len = n;
        return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p) {
        conn *cn = p->data;
        paf_http_call *call = cn->call;
        if (call->interim) {
                call->interim = false;
                call->field_len = call->value_len = call->header_bytes = 0;
                call->reason_len = 0;
                call->in_value = false;
                return 0;
        }
        cn->keep_alive = llhttp_should_keep_alive(p);
        cn->event = EV_COMPLETE;
        return HPE_PAUSED;
}

/* Const and zero-initialised otherwise: shared by every parser, any thread. */
static const llhttp_settings_t settings = {
        .on_status = on_status,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_header_value_complete = on_header_value_complete,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
};

static const llhttp_settings_t *parser_settings(void) {
        return &settings;
}

/* ---- reading the response ---- */

/* The user freed the call or the client from a callback: stop. */
bool hc_call_gone(paf_http_call *call) {
        return call->freed || !call->client;
}

/* The parser paused on cn->event; act on it. `leftover`: bytes after it. */
static void conn_dispatch(conn *cn, paf_http_call *call, bool leftover) {
        parse_event ev = cn->event;
        cn->event = EV_NONE;

        switch (ev) {
        case EV_HEADERS:
                call->headers_delivered = true;
                hc_call_timer_update(call, true);
                call->handler(call, call->status, call->headers, NULL, call->userdata);
                break;

        case EV_BODY:
                if (cn->body_len == 0)
                        break;
                if (hc_call_ready(call)) {
                        call->body_handler(call, cn->body_at, cn->body_len, 0, call->body_userdata);
                        break;
                }
                /* Not wanted yet: the parser has moved past it, so keep a copy. */
                assert(!call->held);
                call->held = malloc(cn->body_len);
                if (!call->held) {
                        hc_call_fail(call, -ENOMEM, "out of memory");
                        break;
                }
                memcpy(call->held, cn->body_at, cn->body_len);
                call->n_held = cn->body_len;
                break;

        case EV_COMPLETE: {
                bool reusable = cn->keep_alive && !leftover && call->request_submitted &&
                                !call->close_requested;
                call->state = CALL_DONE;
                call->end_pending = true;
                call->conn = NULL;
                hc_call_timer_update(call, false);
                conn_release(cn, reusable);
                if (hc_call_ready(call) && !call->held) {
                        call->end_delivered = true;
                        call->body_handler(call, NULL, 0, 0, call->body_userdata);
                }
                break;
        }

        case EV_NONE:
                break;
        }
}

static void call_fail_parse(paf_http_call *call, conn *cn, llhttp_errno_t e) {
        const char *why =
                call->parse_error ? call->parse_error : llhttp_get_error_reason(&cn->parser);
        if (!why || !*why)
                why = llhttp_errno_name(e);
        hc_call_fail(call, -EBADMSG, "invalid response: %s", why);
}

/* Parse data for cn's call, as far as the user lets us. `again`: run the
 * parser even without data (it may have steps left after a pause). */
static void conn_feed(conn *cn, const uint8_t *data, size_t len, bool again) {
        static const uint8_t empty[1];
        paf_http_call *call = cn->call;

        if (!data)
                data = empty;
        while (len > 0 || again) {
                /* The call ended, or a new one took the connection from the
                 * pool inside a callback: nothing here is for it. */
                if (cn->closed || cn->call != call || !call || call->state != CALL_ACTIVE)
                        return;
                if (call->held || (call->headers_delivered && call->paused)) {
                        conn_stall(cn, data, len);
                        return;
                }
                again = false;
                llhttp_errno_t e = llhttp_execute(&cn->parser, (const char *)data, len);
                size_t used = len;
                if (e == HPE_PAUSED) {
                        used = (size_t)((const uint8_t *)llhttp_get_error_pos(&cn->parser) - data);
                        llhttp_resume(&cn->parser);
                        again = true;
                } else if (e != HPE_OK) {
                        call_fail_parse(call, cn, e);
                        return;
                }
                data += used;
                len -= used;
                if (e == HPE_PAUSED) {
                        hc_call_ref(call);
                        conn_dispatch(cn, call, len > 0);
                        bool gone = hc_call_gone(call);
                        hc_call_unref(call);
                        if (gone)
                                return;
                }
        }
}

/* The connection ended (EOF, error 0) or failed while a call was on it. */
static void conn_lost(conn *cn, paf_http_call *call, int error) {
        if (call_maybe_retry(call, cn))
                return;
        if (error < 0) {
                if (call->body_received > 0)
                        hc_call_fail(call, error, "%s after %" PRIu64 " bytes of body",
                                     strerror(-error), call->body_received);
                else
                        hc_call_fail(call, error, "%s", strerror(-error));
                return;
        }

        llhttp_errno_t e = llhttp_finish(&cn->parser);
        if (e == HPE_PAUSED && cn->event == EV_COMPLETE) {
                /* A body that ends with the connection. */
                hc_call_ref(call);
                conn_dispatch(cn, call, false);
                hc_call_unref(call);
                return;
        }
        if (!call->got_bytes)
                hc_call_fail(call, -EPIPE, "connection closed before a response");
        else if (!call->headers_complete)
                hc_call_fail(call, -EPIPE, "connection closed in the response headers");
        else if (call->content_length >= 0)
                hc_call_fail(call, -EPIPE,
                             "connection closed after %" PRIu64 " of %" PRId64 " bytes",
                             call->body_received, call->content_length);
        else if (call->chunked)
                hc_call_fail(call, -EPIPE,
                             "connection closed in a chunked body after %" PRIu64 " bytes",
                             call->body_received);
        else
                hc_call_fail(call, -EPIPE, "connection closed in the response");
}

static void conn_on_read(paf_flow *flow _unused_, const void *data, size_t len, int error,
                         void *userdata) {
        conn *cn = userdata;
        paf_http_call *call = cn->call;

        if (!call) {
                /* Idle: the server closed it, or talks out of turn. Either way
                 * it cannot carry another request. */
                if (len > 0)
                        paf_log(PAF_LOG_DEBUG,
                                "http client: %s: %zu unexpected bytes on an idle connection",
                                cn->endpoint, len);
                conn_close(cn);
                return;
        }

        conn_ref(cn);
        hc_call_ref(call);
        if (len > 0) {
                hc_call_note_response(call);
                call->got_bytes = true;
                hc_call_timer_update(call, true);
                conn_feed(cn, data, len, false);
        } else
                conn_lost(cn, call, error);
        hc_call_unref(call);
        conn_unref(cn);
}

/* ---- timers and deferred work ---- */

uint64_t hc_call_now(paf_http_call *call) {
        uint64_t t = 0;
        (void)sd_event_now(call->client->event, CLOCK_MONOTONIC, &t);
        return t;
}

/* When the response timeout is due: a request that the transport is still
 * taking, or whose tail the kernel is still passing on, is not a silent
 * server, however long one write of it takes. */
static uint64_t call_deadline(paf_http_call *call) {
        uint64_t from = call->timer_from > call->progress_at ? call->timer_from : call->progress_at;
        return from + call->client->timeouts.response_usec;
}

/* Progress is asked for, not told (it may cost the transport a system call),
 * so only when the timer fires. */
static void call_poll_progress(paf_http_call *call) {
        conn *cn = call->conn;
        uint64_t at;
        call->polled_at = hc_call_now(call);
        if (cn && cn->flow && paf_flow_get_write_progress(cn->flow, NULL, &at) >= 0 &&
            at > call->progress_at)
                call->progress_at = at;
}

static void call_timer_schedule(paf_http_call *call);
static bool call_timer_wanted(paf_http_call *call);

static int on_call_timer(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata) {
        paf_http_call *call = userdata;
        paf_http_client *c = call->client;
        char t[32];

        call->timer_armed = false;
        if (!c)
                return 0;
        hc_call_ref(call);
        if (call->state == CALL_CONNECTING) {
                format_seconds(c->timeouts.connect_usec, t, sizeof(t));
                hc_call_fail(call, -ETIMEDOUT, "connect timeout after %s", t);
        } else if (call_timer_wanted(call)) {
                call_poll_progress(call);
                if (hc_call_now(call) < call_deadline(call)) {
                        /* Early, to look at the progress, or bytes moved. */
                        call_timer_schedule(call);
                        goto out;
                }
                format_seconds(c->timeouts.response_usec, t, sizeof(t));
                if (!call->headers_complete && call->h2 && h2cl_sending(call))
                        hc_call_fail(call, -ETIMEDOUT,
                                     "request stalled for %s after %" PRIu64
                                     " bytes of body sent (HTTP/2 flow control)",
                                     t, call->body_sent);
                else if (!call->headers_complete && call->n_in_flight > 0) {
                        uint64_t sent = 0;
                        if (call->conn)
                                (void)paf_flow_get_write_progress(call->conn->flow, &sent, NULL);
                        hc_call_fail(call, -ETIMEDOUT,
                                     "request stalled for %s after %" PRIu64 " bytes sent", t,
                                     sent - call->sent_before);
                } else if (!call->headers_complete)
                        hc_call_fail(call, -ETIMEDOUT, "no response within %s", t);
                else
                        hc_call_fail(call, -ETIMEDOUT,
                                     "response body stalled for %s after %" PRIu64 " bytes", t,
                                     call->body_received);
        }
out:
        hc_call_unref(call);
        return 0;
}

static int call_timer_set(paf_http_call *call, uint64_t at) {
        int r;
        if (!call->timer) {
                r = sd_event_add_time(call->client->event, &call->timer, CLOCK_MONOTONIC, at,
                                      TIMER_ACCURACY_USEC, on_call_timer, call);
                if (r < 0)
                        return r;
                (void)sd_event_source_set_description(call->timer, "paf-http-call");
        } else {
                r = sd_event_source_set_time(call->timer, at);
                if (r >= 0)
                        r = sd_event_source_set_enabled(call->timer, SD_EVENT_ONESHOT);
                if (r < 0)
                        return r;
        }
        call->timer_at = at;
        call->timer_armed = true;
        return 0;
}

static int call_timer_arm(paf_http_call *call, uint64_t usec) {
        if (!call->client || usec == 0)
                return 0;
        return call_timer_set(call, hc_call_now(call) + usec);
}

/* Arm the response timer for its deadline or, before it, the next look at
 * the progress: four looks per timeout cut a stalled transfer at most a
 * quarter of it late (a socket notices its queue drained only when asked). */
static void call_timer_schedule(paf_http_call *call) {
        uint64_t timeout = call->client->timeouts.response_usec;
        uint64_t at = call_deadline(call);
        uint64_t last = call->timer_from > call->polled_at ? call->timer_from : call->polled_at;
        if (last + timeout / 4 < at)
                at = last + timeout / 4;
        /* One that fires no later stays: it re-arms itself when early, which
         * spares a heap update per piece of body. */
        if (call->timer_armed && call->timer_at <= at)
                return;
        int r = call_timer_set(call, at);
        if (r < 0)
                hc_call_fail(call, r, "cannot arm the response timer: %s", strerror(-r));
}

/*
 * The response timeout runs only while the network owes us something: a
 * write to complete, or response bytes. While the user holds things up
 * (not writing the body yet, not reading, paused) it does not.
 */
static bool call_timer_wanted(paf_http_call *call) {
        return call->state == CALL_ACTIVE && call->client->timeouts.response_usec > 0 &&
               (call->request_submitted || call->n_in_flight > 0 ||
                (call->h2 && h2cl_sending(call))) &&
               !(call->headers_delivered && !hc_call_ready(call)) && !call->held;
}

/* `restart`: something moved, count from now. */
void hc_call_timer_update(paf_http_call *call, bool restart) {
        /* While connecting, the timer is the connect timeout's: pausing or
         * asking for the body then must not stop it. */
        if (!call->client || call->freed || call->state == CALL_CONNECTING)
                return;
        if (!call_timer_wanted(call)) {
                if (call->timer_armed && call->timer)
                        (void)sd_event_source_set_enabled(call->timer, SD_EVENT_OFF);
                call->timer_armed = false;
                return;
        }
        if (call->timer_armed && !restart)
                return;
        call->timer_from = hc_call_now(call);
        call_timer_schedule(call);
}

static int on_call_defer(sd_event_source *s _unused_, void *userdata) {
        paf_http_call *call = userdata;
        if (hc_call_gone(call))
                return 0;
        hc_call_ref(call);

        if (call->state == CALL_FAILED) {
                if (!call->error_delivered && !call->headers_delivered) {
                        call->error_delivered = true;
                        call->handler(call, 0, NULL, &call->error, call->userdata);
                } else if (!call->error_delivered && call->body_handler) {
                        call->error_delivered = true;
                        call->body_handler(call, NULL, 0, call->error.code, call->body_userdata);
                }
                /* Writes that never reached a connection. */
                wreq *w;
                while (!hc_call_gone(call) && (w = call->queue)) {
                        call->queue = w->next;
                        if (!call->queue)
                                call->queue_tail = NULL;
                        if (w->kind == WREQ_BODY && w->handler)
                                w->handler(call, call->error.code, w->userdata);
                        hc_wreq_free(w);
                }
                goto out;
        }

        if (call->held && hc_call_ready(call)) {
                uint8_t *held = call->held;
                size_t n = call->n_held;
                call->held = NULL;
                call->n_held = 0;
                call->body_handler(call, held, n, 0, call->body_userdata);
                free(held);
                if (hc_call_gone(call))
                        goto out;
        }
        if (call->end_pending && !call->end_delivered && hc_call_ready(call) && !call->held) {
                call->end_delivered = true;
                call->body_handler(call, NULL, 0, 0, call->body_userdata);
                goto out;
        }
        if (call->h2) {
                h2cl_deliver(call);
                goto out;
        }
        conn *cn = call->conn;
        if (cn && cn->stalled && hc_call_ready(call) && !call->held) {
                /* Parse what was kept, then read again. */
                uint8_t *pending = cn->pending;
                size_t n = cn->n_pending;
                cn->pending = NULL;
                cn->n_pending = 0;
                cn->stalled = false;
                conn_ref(cn);
                int r = paf_flow_read_start(cn->flow, conn_on_read, cn);
                if (r < 0)
                        hc_call_fail(call, r, "cannot read: %s", strerror(-r));
                else {
                        hc_call_timer_update(call, true);
                        conn_feed(cn, pending, n, true);
                }
                conn_unref(cn);
                free(pending);
        }
out:
        hc_call_unref(call);
        return 0;
}

/* ---- connecting ---- */

static void on_connected(paf_flow *flow, const paf_attempt *attempts, size_t n, void *userdata) {
        paf_http_call *call = userdata;

        if (flow)
                hc_call_note_connected(call, call->connect);
        call->connect = NULL;
        if (!flow) {
                hc_call_fail_connect(call, attempts, n);
                return;
        }
        hc_call_take_flow(call, flow, attempts, n);
}

void hc_call_note_connected(paf_http_call *call, paf_connect *connect) {
        paf_connect_times t = {0};
        if (connect)
                paf_connect_get_times(connect, &t);
        call->times.namelookup_usec = t.namelookup;
        call->times.connect_usec = t.connect;
        call->times.appconnect_usec = t.appconnect;
        call->times_connected = true;
}

void hc_call_note_request(paf_http_call *call) {
        uint64_t now = paf_monotonic_usec();
        /* curl on a connection it keeps alive: the lookup is taking it,
         * there is no connect. */
        call->times.reused = !call->times_connected;
        if (call->times.reused) {
                call->times.namelookup_usec = now;
                call->times.connect_usec = call->times.appconnect_usec = 0;
        }
        call->times.pretransfer_usec = now;
        call->times.starttransfer_usec = 0;
}

void hc_call_note_response(paf_http_call *call) {
        if (!call->times.starttransfer_usec)
                call->times.starttransfer_usec = paf_monotonic_usec();
}

void hc_call_take_flow(paf_http_call *call, paf_flow *flow, const paf_attempt *attempts, size_t n) {
        paf_http_client *c = call->client;

        /* Candidates are tried in order up to the first that connects, so the
         * winner comes right after the failures. */
        size_t failed = 0;
        for (size_t i = 0; i < n; i++)
                if (attempts[i].candidate && attempts[i].tried && attempts[i].error != 0)
                        failed++;
        const char *endpoint = failed < call->n_candidates ? call->candidates[failed]
                                                           : paf_flow_get_protocol(flow);

        if (call->timer)
                (void)sd_event_source_set_enabled(call->timer, SD_EVENT_OFF);
        call->timer_armed = false;
        if (h2cl_flow_is_h2(call, flow)) {
                int r = h2cl_conn_start(call, flow, endpoint, paf_attempts_format(attempts, n));
                if (r < 0)
                        hc_call_fail(call, r, "cannot start HTTP/2: %s", strerror(-r));
                return;
        }

        conn *cn = calloc(1, sizeof(*cn));
        if (!cn || !(cn->key = strdup(call->pool_key)) || !(cn->endpoint = strdup(endpoint))) {
                if (cn) {
                        free(cn->key);
                        free(cn);
                }
                paf_flow_close(flow, NULL, NULL);
                hc_call_fail(call, -ENOMEM, "out of memory");
                return;
        }
        cn->n_ref = 1;
        cn->client = c;
        cn->flow = flow;
        cn->report = paf_attempts_format(attempts, n);
        c->n_connections++;
        int r = paf_flow_read_start(flow, conn_on_read, cn);
        if (r < 0) {
                conn_close(cn);
                hc_call_fail(call, r, "cannot read: %s", strerror(-r));
                return;
        }
        call_attach(call, cn);
}

/* What ALPN offers for http.version, when the caller chose no list (tls.alpn). */
int hc_call_connect_ctx(paf_http_call *call, paf_ctx **ret) {
        const char *alpn = NULL;
        if (call->tls_candidate && call->want == WANT_HTTP2)
                alpn = "h2,http/1.1";
        else if (call->tls_candidate && call->want == WANT_HTTP2_PRIOR)
                alpn = "h2";
        if (!alpn || paf_ctx_has(call->ctx, "tls.alpn") > 0) {
                *ret = paf_ctx_ref(call->ctx);
                return 0;
        }
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *own = NULL;
        int r = paf_ctx_new(&own);
        if (r >= 0)
                r = paf_ctx_set_string(own, "tls.alpn", alpn);
        if (r >= 0)
                r = paf_ctx_new_layered(own, call->ctx, ret);
        return r;
}

int hc_call_arm_connect_timer(paf_http_call *call) {
        return call_timer_arm(call, call->client->timeouts.connect_usec);
}

static int call_start_connect(paf_http_call *call) {
        paf_http_client *c = call->client;
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
        int r = hc_call_connect_ctx(call, &ctx);
        if (r < 0)
                return r;
        r = paf_registry_connect(c->reg, ctx, c->event, on_connected, call, &call->connect);
        if (r < 0)
                return r;
        r = call_timer_arm(call, c->timeouts.connect_usec);
        if (r < 0) {
                paf_connect_cancel(call->connect);
                call->connect = NULL;
                return r;
        }
        return 0;
}

int hc_call_start_http1(paf_http_call *call) {
        /* It waited for an HTTP/2 connect that found HTTP/1.1 only: what
         * carries it is the pool's or its own connect's. */
        call->times_connected = false;
        conn *cn = pool_take(call->client, call->pool_key);
        if (cn) {
                call_attach(call, cn);
                return 0;
        }
        return call_start_connect(call);
}

/* ---- the public API ---- */

PAF_EXPORT int paf_http_client_new(paf_registry *reg, sd_event *event, paf_http_client **ret) {
        if (!reg || !event || !ret)
                return -EINVAL;
        paf_http_client *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->reg = paf_registry_ref(reg);
        c->event = sd_event_ref(event);
        c->timeouts = (paf_http_client_timeouts){
                .connect_usec = 30 * USEC_PER_SEC,
                .response_usec = 60 * USEC_PER_SEC,
                .idle_usec = 30 * USEC_PER_SEC,
        };
        *ret = c;
        return 0;
}

PAF_EXPORT paf_http_client *paf_http_client_free(paf_http_client *c) {
        if (!c)
                return NULL;
        /* The calls stay the user's to free; they just fail quietly from now
         * on, as they cannot be completed without the client. */
        while (c->calls) {
                paf_http_call *call = c->calls;
                c->calls = call->next;
                call->next = call->prev = NULL;
                hc_call_ref(call);
                if (call->state != CALL_DONE && call->state != CALL_FAILED) {
                        call->state = CALL_FAILED;
                        paf_error_set(&call->error, -ECANCELED, "%s: %s: client freed", call->label,
                                      call_endpoint(call));
                        call->error_delivered = true;
                }
                call_stop(call);
                call->client = NULL;
                call->timer = sd_event_source_disable_unref(call->timer);
                call->defer = sd_event_source_disable_unref(call->defer);
                while (call->queue) {
                        wreq *w = call->queue;
                        call->queue = w->next;
                        hc_wreq_free(w);
                }
                call->queue_tail = NULL;
                hc_call_unref(call);
        }
        h2cl_close_all(c);
        while (c->idle)
                conn_close(c->idle);
        paf_registry_unref(c->reg);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

PAF_EXPORT int paf_http_client_set_timeouts(paf_http_client *c, const paf_http_client_timeouts *t) {
        if (!c || !t)
                return -EINVAL;
        c->timeouts = *t;
        return 0;
}

PAF_EXPORT uint64_t paf_http_client_get_n_connections(paf_http_client *c) {
        return c ? c->n_connections : 0;
}

static int call_new(paf_http_client *c, paf_ctx *ctx, const char *method, const char *target,
                    int64_t body_length, paf_http_response_handler_t handler, void *userdata,
                    paf_http_call **ret) {
        paf_http_call *call = calloc(1, sizeof(*call));
        if (!call)
                return -ENOMEM;
        call->n_ref = 1;
        call->client = c;
        call->ctx = paf_ctx_ref(ctx);
        call->body_length = body_length;
        call->handler = handler;
        call->userdata = userdata;
        call->content_length = -1;
        call->times.start_usec = paf_monotonic_usec();
        call->head_request = strcmp(method, "HEAD") == 0;
        call->retryable = body_length == 0 && method_is_idempotent(method);
        if (asprintf(&call->label, "%s %s", method, target) < 0) {
                call->label = NULL;
                hc_call_unref(call);
                return -ENOMEM;
        }
        int r = sd_event_add_defer(c->event, &call->defer, on_call_defer, call);
        if (r < 0) {
                hc_call_unref(call);
                return r;
        }
        (void)sd_event_source_set_enabled(call->defer, SD_EVENT_OFF);
        (void)sd_event_source_set_description(call->defer, "paf-http-call");
        *ret = call;
        return 0;
}

/* ---- the pool key ---- */

typedef struct key_names {
        char **v;
        size_t n;
} key_names;

static int key_names_add(const char *key, void *userdata) {
        key_names *k = userdata;
        for (size_t i = 0; i < k->n; i++)
                if (strcmp(k->v[i], key) == 0)
                        return 0;
        char **v = realloc(k->v, (k->n + 1) * sizeof(*v));
        if (!v)
                return -ENOMEM;
        k->v = v;
        k->v[k->n] = strdup(key);
        if (!k->v[k->n])
                return -ENOMEM;
        k->n++;
        return 0;
}

static int name_compare(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lengths before strings and bytes: no value can read as the end of another. */
static void key_write_value(FILE *f, const char *key, paf_ctx *ctx) {
        paf_value v;
        int r = paf_ctx_get(ctx, key, &v);
        fprintf(f, " %zu:%s", strlen(key), key);
        if (r < 0) {
                fprintf(f, "!%d", r);
                return;
        }
        switch (v.type) {
        case PAF_TYPE_STRING:
                fprintf(f, "=s%zu:%s", strlen(v.string), v.string);
                break;
        case PAF_TYPE_INT:
                fprintf(f, "=i%" PRId64, v.integer);
                break;
        case PAF_TYPE_BOOL:
                fprintf(f, "=b%d", v.boolean ? 1 : 0);
                break;
        case PAF_TYPE_BYTES:
                fprintf(f, "=x%zu:", v.bytes.size);
                for (size_t i = 0; i < v.bytes.size; i++)
                        fprintf(f, "%02x", ((const uint8_t *)v.bytes.data)[i]);
                break;
        case PAF_TYPE_POINTER:
                fprintf(f, "=p%p", v.pointer);
                break;
        default:
                fputs("=?", f);
                break;
        }
}

/*
 * One protocol's part: its name, its endpoint keys and every key of its
 * namespace ("tls.": server name, CA, client certificate, insecure, priority,
 * ALPN …), as ctx resolves them. Whatever a plugin reads to set up a
 * connection is a key of its namespace, so a setting added later, or one of
 * a third party's protocol, is in the pool key without anyone listing it.
 */
static int key_write_protocol(FILE *f, paf_ctx *ctx, const paf_protocol *p) {
        key_names names = {};
        char prefix[128];
        snprintf(prefix, sizeof(prefix), "%s.", p->ops->name);
        int r = paf_ctx_foreach_key(ctx, prefix, key_names_add, &names);
        for (const char *const *k = p->ops->endpoint_keys; r >= 0 && *k; k++)
                r = key_names_add(*k, &names);
        if (r >= 0) {
                /* Sorted: the layers holding the keys do not change the key. */
                qsort(names.v, names.n, sizeof(*names.v), name_compare);
                fputs(p->ops->name, f);
                for (size_t i = 0; i < names.n; i++)
                        key_write_value(f, names.v[i], ctx);
        }
        for (size_t i = 0; i < names.n; i++)
                free(names.v[i]);
        free(names.v);
        return r;
}

/*
 * Which idle connections may carry a call: those whose calls resolved to the
 * same candidates, each with the same endpoint and settings, and, under a
 * layer, the same candidates for what it runs over (TLS to the same name on
 * another port, or over another socket, is another connection). The key is
 * read from the context the way the resolution reads it, never from a
 * description made for messages.
 */
static int pool_key(paf_registry *reg, paf_ctx *ctx, paf_resolution *res, http_version_want want,
                    char **ret) {
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *rc = NULL;
        int r = paf_ctx_new_layered(ctx, reg->ctx, &rc);
        if (r < 0)
                return r;
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        size_t n = paf_resolution_get_n_candidates(res);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const paf_protocol *p = paf_resolution_get_protocol(res, i);
                if (i > 0)
                        fputs(" | ", f);
                r = key_write_protocol(f, rc, p);
                if (r < 0 || !paf_protocol_is_layer(p))
                        continue;
                _paf_cleanup_(paf_resolution_freep) paf_resolution *inner = NULL;
                r = paf_registry_resolve_inner(reg, ctx, &inner);
                size_t n_inner = paf_resolution_get_n_candidates(inner);
                if (r >= 0)
                        fputs(" over (", f);
                for (size_t j = 0; r >= 0 && j < n_inner; j++) {
                        if (j > 0)
                                fputs(" | ", f);
                        r = key_write_protocol(f, rc, paf_resolution_get_protocol(inner, j));
                }
                if (r >= 0)
                        fputs(")", f);
        }
        /* A connection made for HTTP/2 by prior knowledge speaks nothing
         * else; one made offering h2 by ALPN may have got either. */
        fprintf(f, " http.version=%d", (int)want);
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0) {
                free(buf);
                return r;
        }
        *ret = buf;
        return 0;
}

/* http.version: "1.1" (the default), "1.0", "2" or "2-prior-knowledge". A value
 * that is none of them fails the call, through its handler. */
static int call_read_version(paf_http_call *call) {
        paf_value v;
        int r = paf_ctx_get(call->ctx, "http.version", &v);
        if (r == -ENOENT) {
                call->want = WANT_HTTP1;
                return 0;
        }
        if (r == -ENOMEM)
                return r;
        const char *why = NULL;
        if (r < 0)
                why = paf_ctx_get_error(call->ctx);
        else if (v.type != PAF_TYPE_STRING)
                why = "not a string";
        else if (strcmp(v.string, "1.1") == 0 || strcmp(v.string, "1.0") == 0)
                call->want = WANT_HTTP1; /* 1.0: the request line says so (build_head) */
        else if (strcmp(v.string, "2") == 0)
                call->want = WANT_HTTP2;
        else if (strcmp(v.string, "2-prior-knowledge") == 0)
                call->want = WANT_HTTP2_PRIOR;
        else
                why = "expected 1.0, 1.1, 2 or 2-prior-knowledge";
        if (!why)
                return 0;
        call->state = CALL_FAILED;
        if (r >= 0 && v.type == PAF_TYPE_STRING)
                paf_error_set(&call->error, -EINVAL, "%s: http.version \"%s\": %s", call->label,
                              v.string, why);
        else
                paf_error_set(&call->error, r < 0 ? r : -EINVAL, "%s: http.version: %s",
                              call->label, why && *why ? why : strerror(-r));
        hc_call_kick(call);
        return 0;
}

static int call_resolve(paf_http_call *call, paf_registry *reg) {
        _paf_cleanup_(paf_resolution_freep) paf_resolution *res = NULL;
        int r = paf_registry_resolve(reg, call->ctx, &res);
        if (r < 0)
                return r;
        size_t n = paf_resolution_get_n_candidates(res), n_attempts;
        const paf_attempt *a = paf_resolution_get_attempts(res, &n_attempts);
        call->candidates = calloc(n + 1, sizeof(char *));
        if (!call->candidates)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (asprintf(&call->candidates[i], "%s %s", a[i].protocol,
                             a[i].endpoint ? a[i].endpoint : "?") < 0)
                        return -ENOMEM;
                call->n_candidates++;
                /* ALPN is the TLS layer's (tls.alpn, PAF_FLOW_QUERY_TLS_ALPN). */
                if (strcmp(paf_resolution_get_protocol(res, i)->ops->name, "tls") == 0)
                        call->tls_candidate = true;
        }
        if (n > 0) {
                r = pool_key(reg, call->ctx, res, call->want, &call->pool_key);
                if (r < 0)
                        return r;
        }
        if (n == 0)
                /* Not an argument error: the failure is reported like any
                 * connect failure, with why each transport could not serve. */
                hc_call_fail_connect(call, a, n_attempts);
        return 0;
}

PAF_EXPORT int paf_http_client_request(paf_http_client *c, paf_ctx *ctx, const char *method,
                                       const char *target, const paf_http_headers *headers,
                                       int64_t body_length, paf_http_response_handler_t handler,
                                       void *userdata, paf_http_call **ret) {
        if (!c || !ctx || !is_token(method) || !target_is_valid(target) || !handler || !ret ||
            body_length < -1)
                return -EINVAL;

        /* Through a proxy (http.proxy …): a context that connects to it
         * and, for http://, the target in absolute form (core/http/proxy.c). */
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *proxied = NULL;
        _cleanup_free_ char *absolute = NULL;
        _paf_cleanup_(paf_http_headers_freep) paf_http_headers *proxy_headers = NULL;
        int r = hc_proxy_apply(c->reg, ctx, target, headers, &proxied, &absolute, &proxy_headers);
        if (r < 0)
                return r;
        if (absolute)
                target = absolute;
        /* With Proxy-Authorization, for the proxy that takes the absolute form. */
        if (proxy_headers)
                headers = proxy_headers;

        paf_http_call *call;
        r = call_new(c, proxied ? proxied : ctx, method, target, body_length, handler, userdata,
                     &call);
        if (r < 0)
                return r;
        call->close_requested =
                headers && paf_http_headers_has_token(headers, "Connection", "close");
        /* Host: the URL's, not the proxy's. */
        r = build_head(call, c->reg, ctx, method, target, headers);
        if (r >= 0)
                r = call_read_version(call);
        if (r >= 0 && call->state == CALL_CONNECTING)
                r = call_resolve(call, c->reg);
        if (r >= 0 && call->state == CALL_CONNECTING) {
                /* An HTTP/2 connection to the endpoint takes every call, up
                 * to its peer's stream limit and queued beyond (nghttp2
                 * opens them as others close); an HTTP/1.1 one, one at a time. */
                r = h2cl_join(call);
                if (r == 0) {
                        conn *cn = pool_take(c, call->pool_key);
                        if (cn)
                                call_attach(call, cn);
                        else if (call->want == WANT_HTTP2_PRIOR ||
                                 (call->want == WANT_HTTP2 && call->tls_candidate))
                                r = h2cl_connect(call);
                        else
                                r = call_start_connect(call);
                }
        }
        if (r < 0) {
                call->state = CALL_FAILED;
                call_stop(call);
                while (call->queue) {
                        wreq *w = call->queue;
                        call->queue = w->next;
                        hc_wreq_free(w);
                }
                hc_call_unref(call);
                return r;
        }
        call->next = c->calls;
        if (c->calls)
                c->calls->prev = call;
        c->calls = call;
        *ret = call;
        return 0;
}

PAF_EXPORT int paf_http_call_write(paf_http_call *call, const void *data, size_t len,
                                   paf_http_call_write_handler_t handler, void *userdata) {
        if (!call || call->freed || (len > 0 && !data))
                return -EINVAL;
        if (call->body_length == 0 || call->finish_queued)
                return -EINVAL;
        if (call->body_length > 0 && len > (uint64_t)call->body_length - call->body_queued)
                return -EINVAL; /* more than Content-Length announced */
        if (call->state == CALL_FAILED)
                return call->error.code < 0 ? call->error.code : -EIO;
        if (call->state == CALL_DONE && !call->conn)
                return -EPIPE; /* the server answered and the connection went */

        wreq *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->kind = WREQ_BODY;
        w->data = data;
        w->len = len;
        w->handler = handler;
        w->userdata = userdata;
        w->call = hc_call_ref(call);
        call->body_queued += len;
        call_enqueue(call, w);
        if (call->head_submitted)
                call_pump(call);
        return 0;
}

PAF_EXPORT int paf_http_call_finish(paf_http_call *call) {
        if (!call || call->freed)
                return -EINVAL;
        if (call->body_length == 0 || call->finish_queued)
                return 0;
        if (call->body_length > 0) {
                if (call->body_queued != (uint64_t)call->body_length)
                        return -EINVAL; /* the server would wait for the rest */
                call->finish_queued = true;
                return 0;
        }
        if (call->state == CALL_FAILED)
                return call->error.code < 0 ? call->error.code : -EIO;
        wreq *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->kind = WREQ_FINISH;
        w->call = hc_call_ref(call);
        call->finish_queued = true;
        call_enqueue(call, w);
        if (call->head_submitted)
                call_pump(call);
        return 0;
}

PAF_EXPORT int paf_http_call_read_body(paf_http_call *call, paf_http_call_body_handler_t handler,
                                       void *userdata) {
        if (!call || call->freed || !handler)
                return -EINVAL;
        call->body_handler = handler;
        call->body_userdata = userdata;
        hc_call_timer_update(call, true);
        hc_call_kick(call);
        return 0;
}

PAF_EXPORT int paf_http_call_pause(paf_http_call *call) {
        if (!call || call->freed)
                return -EINVAL;
        if (call->paused)
                return 0;
        call->paused = true;
        conn *cn = call->conn;
        /* From inside the body handler the read loop notices by itself. */
        if (cn && !cn->stalled && call->headers_delivered) {
                cn->stalled = true;
                (void)paf_flow_read_stop(cn->flow);
        }
        hc_call_timer_update(call, false);
        return 0;
}

PAF_EXPORT int paf_http_call_resume(paf_http_call *call) {
        if (!call || call->freed)
                return -EINVAL;
        if (!call->paused)
                return 0;
        call->paused = false;
        hc_call_timer_update(call, true);
        hc_call_kick(call);
        return 0;
}

PAF_EXPORT const char *paf_http_call_get_endpoint(paf_http_call *call) {
        if (!call)
                return NULL;
        return call_endpoint(call);
}

PAF_EXPORT int paf_http_call_query(paf_http_call *call, int what, void *ret, size_t size) {
        if (!call)
                return -EINVAL;
        paf_flow *flow =
                call->conn && !call->conn->closed ? call->conn->flow : h2cl_call_flow(call);
        if (!flow)
                return -ENOTCONN;
        return paf_flow_query(flow, what, ret, size);
}

PAF_EXPORT const char *paf_http_call_get_report(paf_http_call *call) {
        return call ? call->report : NULL;
}

PAF_EXPORT int paf_http_call_get_version(paf_http_call *call) {
        if (!call)
                return -EINVAL;
        return call->version;
}

PAF_EXPORT int paf_http_call_get_timings(paf_http_call *call, paf_http_call_timings *ret) {
        if (!call || !ret ||
            ret->struct_size < offsetof(paf_http_call_timings, start_usec) + sizeof(uint64_t))
                return -EINVAL;
        size_t size =
                ret->struct_size < sizeof(call->times) ? ret->struct_size : sizeof(call->times);
        /* Past struct_size itself: the caller's member stays as it set it. */
        memcpy((char *)ret + sizeof(ret->struct_size),
               (const char *)&call->times + sizeof(ret->struct_size),
               size - sizeof(ret->struct_size));
        return 0;
}

PAF_EXPORT paf_http_call *paf_http_call_free(paf_http_call *call) {
        if (!call || call->freed)
                return NULL;
        call->freed = true;
        call_stop(call);
        if (call->client) {
                if (call->prev)
                        call->prev->next = call->next;
                else
                        call->client->calls = call->next;
                if (call->next)
                        call->next->prev = call->prev;
                call->next = call->prev = NULL;
        }
        call->timer = sd_event_source_disable_unref(call->timer);
        call->defer = sd_event_source_disable_unref(call->defer);
        while (call->queue) {
                wreq *w = call->queue;
                call->queue = w->next;
                if (!call->queue)
                        call->queue_tail = NULL;
                hc_wreq_free(w);
        }
        hc_call_unref(call);
        return NULL;
}
