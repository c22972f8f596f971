/* tests/fuzz/fuzz-http-server.c — libFuzzer: the HTTP/1.1 server engine, fed request bytes over
 * an in-memory flow, with a handler that answers at once, later, streamed, after the body, with
 * pauses, or upgrades.
 *
 * Input: 4 script bytes (request i is handled as script[i % 4] says), 1 byte of flow and server
 * options, 1 byte of delivery piece size, then the bytes the client sends.
 *
 * What is checked beyond the sanitizers: what the server writes parses as HTTP/1.1 responses,
 * one per request in order (HEAD ones without a body) and nothing after "Connection: close";
 * the loop settles (nothing spins); every request the handler holds is either answered or
 * aborted by the end; every flow is closed and nothing is left on the loop (the loop itself
 * would leak); no borrowed buffer is kept past its call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include <paf.h>
#include <paf/http.h>

#include "fuzz-common.h"

/* Script byte: what the handler does with a request. */
enum {
        ACT_NOW,         /* respond from inside the handler */
        ACT_LATER,       /* respond from the loop */
        ACT_BODY,        /* read the body, respond at its end */
        ACT_BODY_PAUSED, /* read the body pausing after every piece, respond later */
        ACT_STREAM,      /* start, write pieces from the loop, finish with trailers */
        ACT_UPGRADE,     /* 101 and take the flow, echo on it */
        ACT_HOLD,        /* keep it: the end of the input (stop or free) decides */
        ACT_SHORT,       /* announce a length and finish short */
};
#define ACT_MASK 0x07
#define OPT_NO_CONTENT 0x08 /* 204/304: no body */
#define OPT_CLOSE 0x10      /* Connection: close in the response */
#define OPT_EARLY 0x20      /* with a body reader: respond at its first piece */
#define OPT_INSPECT 0x40    /* read every accessor and header */
#define OPT_MISUSE 0x80     /* calls the API must refuse */

/* Flow byte. */
#define FLOW_END_MASK 0x03 /* memflow_end */
#define FLOW_ASYNC 0x04    /* writes complete from the loop */
#define FLOW_LIMITS 0x08   /* small limits */
#define FLOW_STOP 0x10     /* graceful stop at the end */
#define FLOW_WFAIL 0x20    /* writes fail past a budget */
#define FLOW_TWO 0x40      /* the same bytes over a second connection too */

#define MAX_SLOTS 64
#define MAX_UPGRADED 4
#define STREAM_PIECES 3

typedef enum slot_state {
        SLOT_FREE,
        SLOT_RESPOND, /* respond on the next tick */
        SLOT_RESUME,  /* resume the body on the next tick */
        SLOT_STREAM,  /* write the next piece on the next tick */
        SLOT_WAIT,    /* a write or the body is under way */
        SLOT_HOLD,    /* until the end */
        SLOT_UPGRADE, /* upgrade on the next tick */
        SLOT_DONE,    /* answered */
        SLOT_ABORTED, /* the connection went first */
} slot_state;

typedef struct slot {
        paf_http_request *req;
        uint8_t mode;
        slot_state state;
        unsigned piece; /* streamed pieces written */
        uint64_t body_bytes;
} slot;

typedef struct echo {
        paf_flow *flow;
        unsigned n_writes;
        bool closing;
} echo;

/* What one connection wrote, parsed as responses. */
typedef struct out_check {
        paf_flow *flow; /* NULL once closed */
        llhttp_t parser;
        bool heads[MAX_SLOTS]; /* for each request the handler saw: was it HEAD */
        size_t n_queued, n_popped;
        bool closing; /* the current response says Connection: close */
        bool ended;   /* ... and it is complete: nothing may follow */
        bool raw;     /* after 101: not HTTP any more */
        bool ignore;  /* the rest cannot be framed (a rejected HEAD's body) */
} out_check;

typedef struct state {
        sd_event *event;
        out_check out[2];
        paf_http_server *server;
        sd_event_source *tick;
        uint8_t script[4];
        unsigned n_requests;
        slot slots[MAX_SLOTS];
        size_t n_slots;
        echo echoes[MAX_UPGRADED];
        size_t n_echoes;
        unsigned n_reports;
        bool done;
} state;

static state S;

static void tick_schedule(void) {
        FUZZ_CHECK(sd_event_source_set_enabled(S.tick, SD_EVENT_ONESHOT) >= 0);
}

static const char *status_body(int status) {
        return status == 200 ? "hello\n" : "";
}

static void on_stream_written(paf_http_request *req, int error, void *userdata);

/* Answer s's request as its mode says; the request is the engine's again afterwards. */
static void slot_respond(slot *s) {
        paf_http_request *req = s->req;
        int status = (s->mode & OPT_NO_CONTENT) ? ((s->mode & 1) ? 304 : 204) : 200;
        s->state = SLOT_DONE;
        if (!(s->mode & OPT_CLOSE) && (s->mode & ACT_MASK) != ACT_SHORT) {
                const char *b = status_body(status);
                int r = paf_http_respond(req, status, "text/plain", b, strlen(b));
                FUZZ_CHECK(r >= 0 || r == -ECONNRESET);
                return;
        }
        /* Piece by piece, with our own headers. */
        bool short_body = (s->mode & ACT_MASK) == ACT_SHORT;
        const char *b = short_body ? "hello" : status_body(status);
        paf_http_headers *h = NULL;
        FUZZ_CHECK(paf_http_headers_new(&h) >= 0);
        if (s->mode & OPT_CLOSE)
                FUZZ_CHECK(paf_http_headers_add(h, "Connection", "close") >= 0);
        FUZZ_CHECK(paf_http_headers_add(h, "X-Fuzz", "1") >= 0);
        int r = paf_http_response_start(req, short_body ? 200 : status, h,
                                        short_body ? 10 : (int64_t)strlen(b));
        paf_http_headers_free(h);
        if (r < 0) {
                FUZZ_CHECK(r == -ECONNRESET);
                (void)paf_http_response_finish(req, NULL);
                return;
        }
        if (*b) {
                r = paf_http_response_write(req, b, strlen(b), NULL, NULL);
                FUZZ_CHECK(r >= 0 || r == -ECONNRESET);
        }
        r = paf_http_response_finish(req, NULL);
        FUZZ_CHECK(r >= 0 || r == -ECONNRESET);
}

static void stream_next(slot *s) {
        paf_http_request *req = s->req;
        if (s->piece == 0) {
                int64_t len = (s->mode & OPT_NO_CONTENT) ? 3 * STREAM_PIECES : -1;
                if (paf_http_response_start(req, 200, NULL, len) < 0) {
                        slot_respond(s);
                        return;
                }
        }
        if (s->piece < STREAM_PIECES) {
                s->state = SLOT_WAIT;
                s->piece++;
                int r = paf_http_response_write(req, "abc", 3, on_stream_written, s);
                if (r == 0)
                        return;
                FUZZ_CHECK(r == -ECONNRESET);
                s->state = SLOT_DONE;
                (void)paf_http_response_finish(req, NULL);
                return;
        }
        paf_http_headers *t = NULL;
        FUZZ_CHECK(paf_http_headers_new(&t) >= 0);
        FUZZ_CHECK(paf_http_headers_add(t, "X-Sum", "9") >= 0);
        s->state = SLOT_DONE;
        (void)paf_http_response_finish(req, t);
        paf_http_headers_free(t);
}

static void on_stream_written(paf_http_request *req, int error, void *userdata) {
        (void)req;
        slot *s = userdata;
        if (s->state != SLOT_WAIT)
                return; /* aborted meanwhile: the abort handler finished it */
        if (error < 0) {
                s->state = SLOT_DONE;
                (void)paf_http_response_finish(s->req, NULL);
                return;
        }
        s->state = SLOT_STREAM;
        tick_schedule();
}

static void on_abort(paf_http_request *req, int error, void *userdata) {
        slot *s = userdata;
        FUZZ_CHECK(s->req == req);
        FUZZ_CHECK(error < 0);
        FUZZ_CHECK(s->state != SLOT_DONE && s->state != SLOT_ABORTED);
        /* Still readable after an abort. */
        FUZZ_CHECK(paf_http_request_get_method(req));
        FUZZ_CHECK(!paf_http_request_get_flow(req));
        s->state = SLOT_ABORTED;
        FUZZ_CHECK(paf_http_response_finish(req, NULL) == -ECONNRESET);
}

/* ---- the upgraded flow: an echo ---- */

static void on_echo_written(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        (void)error;
        echo *e = userdata;
        e->n_writes--;
}

static void echo_close(echo *e) {
        if (e->flow && !e->closing) {
                e->closing = true;
                paf_flow_close(e->flow, NULL, NULL);
                e->flow = NULL;
        }
}

static void on_echo_read(paf_flow *flow, const void *data, size_t len, int error, void *userdata) {
        echo *e = userdata;
        if (error < 0 || len == 0) {
                echo_close(e);
                return;
        }
        /* The data is borrowed: a copy goes out, kept until the completion. */
        fuzz_touch(data, len);
        static char copies[MAX_UPGRADED][256];
        if (e->n_writes > 0)
                return; /* one at a time is enough to exercise it */
        size_t n = len < sizeof(copies[0]) ? len : sizeof(copies[0]);
        memcpy(copies[e - S.echoes], data, n);
        struct iovec iov = {copies[e - S.echoes], n};
        if (paf_flow_write(flow, &iov, 1, on_echo_written, e) >= 0)
                e->n_writes++;
}

static void slot_upgrade(slot *s) {
        paf_http_request *req = s->req;
        if (S.n_echoes >= MAX_UPGRADED) {
                slot_respond(s);
                return;
        }
        paf_http_headers *h = NULL;
        FUZZ_CHECK(paf_http_headers_new(&h) >= 0);
        FUZZ_CHECK(paf_http_headers_add(h, "Connection", "Upgrade") >= 0);
        FUZZ_CHECK(paf_http_headers_add(h, "Upgrade", "echo") >= 0);
        paf_flow *flow = NULL;
        int r = paf_http_request_upgrade(req, h, &flow);
        paf_http_headers_free(h);
        if (r == -EBUSY || r == -EINVAL) {
                /* The body is still coming: answer normally. */
                slot_respond(s);
                return;
        }
        s->state = SLOT_DONE;
        if (r < 0) {
                FUZZ_CHECK(r == -ECONNRESET);
                return;
        }
        FUZZ_CHECK(flow);
        echo *e = &S.echoes[S.n_echoes++];
        *e = (echo){.flow = flow};
        if (paf_flow_read_start(flow, on_echo_read, e) < 0)
                echo_close(e);
}

/* ---- the body ---- */

static void on_body(paf_http_request *req, const void *data, size_t len, int error,
                    void *userdata) {
        slot *s = userdata;
        FUZZ_CHECK(s->req == req);
        if (error < 0)
                return; /* the abort handler follows */
        FUZZ_CHECK(s->state == SLOT_WAIT || s->state == SLOT_RESUME);
        if (len > 0) {
                FUZZ_CHECK(data);
                fuzz_touch(data, len);
                s->body_bytes += len;
                if (s->mode & OPT_EARLY) {
                        slot_respond(s);
                        return;
                }
                if ((s->mode & ACT_MASK) == ACT_BODY_PAUSED && s->state == SLOT_WAIT) {
                        FUZZ_CHECK(paf_http_request_pause_body(req) >= 0);
                        s->state = SLOT_RESUME;
                        tick_schedule();
                }
                return;
        }
        /* The end. */
        if (s->mode & OPT_INSPECT) {
                const paf_http_headers *t = paf_http_request_get_trailers(req);
                for (size_t i = 0; i < paf_http_headers_count(t); i++) {
                        const char *n, *v;
                        FUZZ_CHECK(paf_http_headers_get_nth(t, i, &n, &v) >= 0);
                        FUZZ_CHECK(n && v);
                }
        }
        if ((s->mode & ACT_MASK) == ACT_BODY_PAUSED) {
                s->state = SLOT_RESPOND;
                tick_schedule();
        } else
                slot_respond(s);
}

/* ---- the handler ---- */

static void inspect(paf_http_request *req) {
        FUZZ_CHECK(paf_http_request_get_method(req));
        FUZZ_CHECK(paf_http_request_get_target(req));
        int v = paf_http_request_get_version(req);
        FUZZ_CHECK(v == 10 || v == 11);
        FUZZ_CHECK(paf_http_request_get_peer(req) && paf_http_request_get_local(req));
        FUZZ_CHECK(paf_http_request_get_flow(req));
        FUZZ_CHECK(paf_http_request_get_content_length(req) >= -1);
        const paf_http_headers *h = paf_http_request_get_headers(req);
        FUZZ_CHECK(h);
        for (size_t i = 0; i < paf_http_headers_count(h); i++) {
                const char *n, *val;
                FUZZ_CHECK(paf_http_headers_get_nth(h, i, &n, &val) >= 0);
                FUZZ_CHECK(n && *n && val);
                FUZZ_CHECK(paf_http_headers_get(h, n));
        }
        size_t it = 0;
        while (paf_http_headers_next(h, "host", &it))
                ;
        (void)paf_http_headers_has_token(h, "Connection", "keep-alive");
        (void)paf_http_headers_has_token(h, "Upgrade", "websocket");
}

static void misuse(paf_http_request *req) {
        /* Before a response started, writing and finishing are refused. */
        FUZZ_CHECK(paf_http_response_write(req, "x", 1, NULL, NULL) == -EINVAL);
        FUZZ_CHECK(paf_http_response_finish(req, NULL) == -EINVAL);
        FUZZ_CHECK(paf_http_response_start(NULL, 200, NULL, 0) == -EINVAL);
        FUZZ_CHECK(paf_http_request_upgrade(req, NULL, NULL) == -EINVAL);
        FUZZ_CHECK(paf_http_respond(req, 204, NULL, "x", 1) == -EINVAL);
}

static void on_request(paf_http_request *req, void *userdata) {
        (void)userdata;
        uint8_t mode = S.script[S.n_requests++ % 4];
        paf_flow *flow = paf_http_request_get_flow(req);
        for (size_t i = 0; i < 2; i++) {
                out_check *o = &S.out[i];
                if (o->flow == flow && o->n_queued < MAX_SLOTS)
                        o->heads[o->n_queued++] =
                                strcmp(paf_http_request_get_method(req), "HEAD") == 0;
        }
        if (mode & OPT_INSPECT)
                inspect(req);
        if (mode & OPT_MISUSE)
                misuse(req);

        if ((mode & ACT_MASK) == ACT_NOW || S.n_slots >= MAX_SLOTS) {
                const char *t = paf_http_request_get_target(req);
                FUZZ_CHECK(paf_http_respond(req, 200, "text/plain", t, strlen(t)) >= 0);
                return;
        }
        slot *s = &S.slots[S.n_slots++];
        *s = (slot){.req = req, .mode = mode, .state = SLOT_WAIT};
        paf_http_request_set_userdata(req, s);
        FUZZ_CHECK(paf_http_request_get_userdata(req) == s);
        paf_http_request_set_abort_handler(req, on_abort, s);

        switch (mode & ACT_MASK) {
        case ACT_LATER:
        case ACT_SHORT:
                s->state = SLOT_RESPOND;
                tick_schedule();
                break;
        case ACT_BODY:
        case ACT_BODY_PAUSED:
                FUZZ_CHECK(paf_http_request_read_body(req, on_body, s) >= 0);
                break;
        case ACT_STREAM:
                s->state = SLOT_STREAM;
                tick_schedule();
                break;
        case ACT_UPGRADE:
                if (mode & OPT_EARLY) {
                        s->state = SLOT_UPGRADE;
                        tick_schedule();
                } else
                        slot_upgrade(s);
                break;
        case ACT_HOLD:
                s->state = SLOT_HOLD;
                break;
        }
}

static int on_tick(sd_event_source *source, void *userdata) {
        (void)source;
        (void)userdata;
        for (size_t i = 0; i < S.n_slots; i++) {
                slot *s = &S.slots[i];
                switch (s->state) {
                case SLOT_RESPOND:
                        slot_respond(s);
                        break;
                case SLOT_RESUME:
                        s->state = SLOT_WAIT;
                        (void)paf_http_request_resume_body(s->req);
                        break;
                case SLOT_STREAM:
                        stream_next(s);
                        break;
                case SLOT_UPGRADE:
                        slot_upgrade(s);
                        break;
                default:
                        break;
                }
        }
        return 0;
}

static void on_error(const char *peer, int status, const char *reason, void *userdata) {
        (void)userdata;
        FUZZ_CHECK(peer && reason);
        FUZZ_CHECK(status == 0 || (status >= 400 && status < 600));
        S.n_reports++;
}

static void on_done(void *userdata) {
        (void)userdata;
        S.done = true;
}

/* ---- what the server writes ---- */

static int out_on_headers_complete(llhttp_t *p) {
        out_check *o = p->data;
        int status = p->status_code;
        FUZZ_CHECK(status >= 100 && status <= 599);
        if (status < 200 && status != 101)
                return 0; /* 100 Continue: not the response */
        if (status == 101)
                return 0; /* llhttp stops after it: the rest is the upgraded protocol */
        bool head = o->n_popped < o->n_queued ? o->heads[o->n_popped++] : false;
        o->closing = p->flags & F_CONNECTION_CLOSE;
        if (head) {
                /* A rejected HEAD request gets its error's body before the close (harmless:
                 * nothing follows it). */
                if (o->closing)
                        o->ignore = true;
                return 1;
        }
        return 0;
}

static int out_on_message_complete(llhttp_t *p) {
        out_check *o = p->data;
        if (o->closing)
                o->ended = true;
        return 0;
}

static llhttp_settings_t out_settings;
static bool debug; /* PAF_FUZZ_DEBUG: show what the server writes */

static void on_flow_write(paf_flow *flow, const struct iovec *iov, size_t n_iov, void *userdata) {
        (void)flow;
        out_check *o = userdata;
        for (size_t i = 0; debug && i < n_iov; i++)
                fprintf(stderr, "server wrote on %zu: \"%.*s\"\n", (size_t)(o - S.out),
                        (int)iov[i].iov_len, (const char *)iov[i].iov_base);
        for (size_t i = 0; i < n_iov && !o->raw && !o->ignore; i++) {
                if (iov[i].iov_len == 0)
                        continue;
                if (o->ended)
                        fuzz_fail(__FILE__, __LINE__,
                                  "the server wrote past a response with Connection: close");
                llhttp_errno_t e = llhttp_execute(&o->parser, iov[i].iov_base, iov[i].iov_len);
                if (e == HPE_PAUSED_UPGRADE) {
                        o->raw = true;
                        break;
                }
                if (e == HPE_CLOSED_CONNECTION && o->ignore)
                        break; /* that HEAD's body, which llhttp did not expect */
                if (e != HPE_OK) {
                        fprintf(stderr, "server output: %s (%s)\n", llhttp_errno_name(e),
                                llhttp_get_error_reason(&o->parser));
                        fuzz_fail(__FILE__, __LINE__, "the server wrote a malformed response");
                }
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void)argc;
        (void)argv;
        fuzz_setup();
        debug = getenv("PAF_FUZZ_DEBUG");
        llhttp_settings_init(&out_settings);
        out_settings.on_headers_complete = out_on_headers_complete;
        out_settings.on_message_complete = out_on_message_complete;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t head[6] = {0};
        memcpy(head, data, size < 6 ? size : 6);
        const uint8_t *in = size > 6 ? data + 6 : NULL;
        size_t in_len = size > 6 ? size - 6 : 0;
        uint8_t flags = head[4];

        S = (state){.event = fuzz_event_new()};
        memcpy(S.script, head, 4);
        FUZZ_CHECK(sd_event_add_defer(S.event, &S.tick, on_tick, NULL) >= 0);
        FUZZ_CHECK(sd_event_source_set_enabled(S.tick, SD_EVENT_OFF) >= 0);
        FUZZ_CHECK(paf_http_server_new(S.event, on_request, on_error, NULL, &S.server) >= 0);
        if (flags & FLOW_LIMITS) {
                paf_http_limits l;
                FUZZ_CHECK(paf_http_limits_load(&l, NULL) >= 0);
                l.max_header_bytes = 200;
                l.max_headers = 4;
                l.max_body = 16;
                FUZZ_CHECK(paf_http_server_set_limits(S.server, &l) >= 0);
        }

        memflow_options o = {
                .piece = head[5],
                .end = flags & FLOW_END_MASK,
                .async_writes = flags & FLOW_ASYNC,
                .write_budget = (flags & FLOW_WFAIL) ? 64 + 8u * head[5] : 0,
        };
        unsigned n_flows = (flags & FLOW_TWO) ? 2 : 1;
        for (unsigned i = 0; i < n_flows; i++) {
                out_check *oc = &S.out[i];
                llhttp_init(&oc->parser, HTTP_RESPONSE, &out_settings);
                oc->parser.data = oc;
                o.handle = &oc->flow;
                o.on_write = on_flow_write;
                o.userdata = oc;
                paf_flow *f;
                FUZZ_CHECK(memflow_new(S.event, in, in_len, &o, &f) >= 0);
                FUZZ_CHECK(paf_http_server_add_flow(S.server, f) >= 0);
        }
        /* A spin shows as many more iterations than bytes. */
        unsigned bound = 20000 + 64 * (unsigned)in_len;
        fuzz_run(S.event, bound);

        if (o.end == MEMFLOW_LATE_EOF) {
                for (unsigned i = 0; i < n_flows; i++)
                        if (S.out[i].flow)
                                memflow_end_now(S.out[i].flow);
                fuzz_run(S.event, bound);
        }
        if (flags & FLOW_STOP) {
                FUZZ_CHECK(paf_http_server_stop(S.server, on_done, NULL) >= 0);
                FUZZ_CHECK(paf_http_server_stop(S.server, on_done, NULL) == -EALREADY);
                fuzz_run(S.event, bound);
                /* What was held is answered now; the stop then completes. */
                for (size_t i = 0; i < S.n_slots; i++)
                        if (S.slots[i].state == SLOT_HOLD)
                                slot_respond(&S.slots[i]);
                fuzz_run(S.event, bound);
                if (S.done)
                        FUZZ_CHECK(paf_http_server_get_n_connections(S.server) == 0);
        }
        S.server = paf_http_server_free(S.server);
        fuzz_run(S.event, bound);

        /* Every request the handler held was answered or aborted. */
        for (size_t i = 0; i < S.n_slots; i++)
                FUZZ_CHECK(S.slots[i].state == SLOT_DONE || S.slots[i].state == SLOT_ABORTED);
        for (size_t i = 0; i < S.n_echoes; i++)
                echo_close(&S.echoes[i]);
        fuzz_run(S.event, bound);
        FUZZ_CHECK(memflow_get_n_alive() == 0);

        S.tick = sd_event_source_disable_unref(S.tick);
        fuzz_event_free(S.event);
        return 0;
}
