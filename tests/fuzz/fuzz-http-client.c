/* tests/fuzz/fuzz-http-client.c — libFuzzer: the HTTP client's response parser, fed a server's
 * bytes over in-memory connections, with calls in a row on the pooled connection.
 *
 * Input: 1 byte of options, 1 byte of delivery piece size, then what the server sends; NUL
 * bytes split it into what each new connection gets (a call that cannot reuse the pooled
 * connection opens the next one).
 *
 * Checked beyond the sanitizers: each call ends exactly once (an error, or a response whose
 * body ends or fails), the loop settles, every connection is closed once the client is freed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <paf.h>
#include <paf/http.h>

#include "fuzz-common.h"

#define OPT_METHOD 0x03 /* GET, HEAD, POST with a length, POST chunked */
#define OPT_READ 0x04   /* read the body (else free the call at the headers) */
#define OPT_PAUSE 0x08  /* pause after each piece, resume from the loop */
#define OPT_ASYNC 0x10  /* writes complete from the loop */
#define OPT_END 0x60    /* how each connection's input ends (memflow_end) */
#define OPT_DROP 0x80   /* free the call at its first piece of body */

#define N_CALLS 3
#define MAX_CONNECTIONS 4

typedef struct fcall {
        paf_http_call *call;
        bool responded, ended;
        bool paused;
        uint64_t body;
} fcall;

typedef struct state {
        sd_event *event;
        paf_http_client *client;
        paf_ctx *ctx;
        sd_event_source *tick;
        uint8_t opts;
        size_t piece;
        const uint8_t *rest; /* for the next connections */
        size_t rest_len;
        unsigned n_connections;
        fcall calls[N_CALLS];
        unsigned next_call; /* the one to start */
        bool start_due;
} state;

static state S;
static paf_registry *registry;

static void tick_schedule(void) {
        FUZZ_CHECK(sd_event_source_set_enabled(S.tick, SD_EVENT_ONESHOT) >= 0);
}

/* ---- the "memory" protocol: each connect takes the next piece of the input ---- */

static const char *const mem_keys[] = {"mem.stream", NULL};

static int mem_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata) {
        (void)ctx;
        (void)userdata;
        snprintf(buf, size, "memory");
        return 0;
}

static int mem_connect(paf_connect_request *req, void *userdata) {
        (void)userdata;
        FUZZ_CHECK(S.n_connections < 64);
        S.n_connections++;
        const uint8_t *in = S.rest;
        size_t len = 0;
        if (S.n_connections <= MAX_CONNECTIONS && S.rest_len > 0) {
                const uint8_t *nul = memchr(S.rest, 0, S.rest_len);
                len = nul ? (size_t)(nul - S.rest) : S.rest_len;
                S.rest += nul ? len + 1 : len;
                S.rest_len -= nul ? len + 1 : len;
        }
        memflow_options o = {
                .piece = S.piece,
                .end = (S.opts & OPT_END) >> 5,
                .async_writes = S.opts & OPT_ASYNC,
        };
        /* A connection left open would never end its call: only the last one may. */
        if (o.end == MEMFLOW_OPEN && S.rest_len > 0)
                o.end = MEMFLOW_EOF;
        paf_flow *flow;
        int r = memflow_new(paf_connect_request_get_event(req), in, len, &o, &flow);
        if (r < 0)
                return r;
        paf_connect_request_done(req, flow);
        return 0;
}

static const paf_protocol_ops mem_ops = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "memory",
        .priority = 0,
        .endpoint_keys = mem_keys,
        .describe = mem_describe,
        .connect = mem_connect,
};

/* ---- calls ---- */

static void call_ended(fcall *f) {
        FUZZ_CHECK(!f->ended);
        f->ended = true;
        f->call = paf_http_call_free(f->call);
        S.start_due = true;
        tick_schedule();
}

static void on_body(paf_http_call *call, const void *data, size_t len, int error, void *userdata) {
        fcall *f = userdata;
        FUZZ_CHECK(f->call == call);
        FUZZ_CHECK(f->responded && !f->ended);
        if (error < 0 || len == 0) {
                call_ended(f);
                return;
        }
        FUZZ_CHECK(data);
        fuzz_touch(data, len);
        f->body += len;
        if (S.opts & OPT_DROP) {
                call_ended(f);
                return;
        }
        if (S.opts & OPT_PAUSE) {
                FUZZ_CHECK(paf_http_call_pause(call) >= 0);
                f->paused = true;
                tick_schedule();
        }
}

static void on_response(paf_http_call *call, int status, const paf_http_headers *headers,
                        const paf_error *error, void *userdata) {
        fcall *f = userdata;
        FUZZ_CHECK(f->call == call);
        FUZZ_CHECK(!f->responded && !f->ended);
        f->responded = true;
        if (error) {
                FUZZ_CHECK(status == 0);
                FUZZ_CHECK(error->code < 0);
                FUZZ_CHECK(memchr(error->message, 0, sizeof(error->message)));
                call_ended(f);
                return;
        }
        /* Interim responses are the client's business, not the caller's. */
        FUZZ_CHECK(status >= 200 && status <= 999);
        FUZZ_CHECK(headers);
        for (size_t i = 0; i < paf_http_headers_count(headers); i++) {
                const char *n, *v;
                FUZZ_CHECK(paf_http_headers_get_nth(headers, i, &n, &v) >= 0);
                FUZZ_CHECK(n && v);
        }
        (void)paf_http_call_get_endpoint(call);
        if (!(S.opts & OPT_READ)) {
                call_ended(f);
                return;
        }
        FUZZ_CHECK(paf_http_call_read_body(call, on_body, f) >= 0);
}

static void on_written(paf_http_call *call, int error, void *userdata) {
        (void)call;
        (void)error;
        (void)userdata;
}

static void start_call(void) {
        fcall *f = &S.calls[S.next_call++];
        static const char *const methods[] = {"GET", "HEAD", "POST", "POST"};
        unsigned m = S.opts & OPT_METHOD;
        int64_t body = m == 2 ? 5 : m == 3 ? -1 : 0;
        paf_http_headers *h = NULL;
        FUZZ_CHECK(paf_http_headers_new(&h) >= 0);
        FUZZ_CHECK(paf_http_headers_add(h, "Accept", "*/*") >= 0);
        int r = paf_http_client_request(S.client, S.ctx, methods[m], "/fuzz?x=1", h, body,
                                        on_response, f, &f->call);
        paf_http_headers_free(h);
        FUZZ_CHECK(r >= 0);
        if (body != 0) {
                FUZZ_CHECK(paf_http_call_write(f->call, "hello", 5, on_written, NULL) >= 0);
                FUZZ_CHECK(paf_http_call_finish(f->call) >= 0);
        }
}

static int on_tick(sd_event_source *source, void *userdata) {
        (void)source;
        (void)userdata;
        for (unsigned i = 0; i < S.next_call; i++) {
                fcall *f = &S.calls[i];
                if (f->paused && !f->ended) {
                        f->paused = false;
                        FUZZ_CHECK(paf_http_call_resume(f->call) >= 0);
                }
        }
        if (S.start_due && S.next_call < N_CALLS) {
                S.start_due = false;
                start_call();
        }
        return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void)argc;
        (void)argv;
        fuzz_setup();
        FUZZ_CHECK(paf_registry_new(&registry) >= 0);
        FUZZ_CHECK(paf_registry_add_protocol(registry, &mem_ops, NULL) >= 0);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t head[2] = {0};
        memcpy(head, data, size < 2 ? size : 2);
        S = (state){
                .event = fuzz_event_new(),
                .opts = head[0],
                .piece = head[1],
                .rest = size > 2 ? data + 2 : NULL,
                .rest_len = size > 2 ? size - 2 : 0,
        };
        FUZZ_CHECK(sd_event_add_defer(S.event, &S.tick, on_tick, NULL) >= 0);
        FUZZ_CHECK(sd_event_source_set_enabled(S.tick, SD_EVENT_OFF) >= 0);
        FUZZ_CHECK(paf_http_client_new(registry, S.event, &S.client) >= 0);
        FUZZ_CHECK(paf_ctx_new(&S.ctx) >= 0);
        FUZZ_CHECK(paf_ctx_set_string(S.ctx, "mem.stream", "fuzz") >= 0);

        start_call();
        unsigned bound = 20000 + 64 * (unsigned)size;
        fuzz_run(S.event, bound);

        /* With every connection's input ended, every call ended too, and each started the next. */
        memflow_end end = (S.opts & OPT_END) >> 5;
        if (end == MEMFLOW_EOF || end == MEMFLOW_RESET) {
                FUZZ_CHECK(S.next_call == N_CALLS);
                for (unsigned i = 0; i < N_CALLS; i++)
                        FUZZ_CHECK(S.calls[i].ended);
        }

        /* Calls still waiting (a silent last connection) go with the client. */
        for (unsigned i = 0; i < S.next_call; i++)
                S.calls[i].call = paf_http_call_free(S.calls[i].call);
        S.client = paf_http_client_free(S.client);
        fuzz_run(S.event, bound);
        FUZZ_CHECK(memflow_get_n_alive() == 0);

        S.ctx = paf_ctx_unref(S.ctx);
        S.tick = sd_event_source_disable_unref(S.tick);
        fuzz_event_free(S.event);
        return 0;
}
