/* tests/examples/test-loop.c — drives the out-of-tree "loop" example plugin
 * through the registry, by its endpoint keys and by its URL scheme: run by
 * test-example-plugin.sh with PAF_PLUGIN_PATH pointing at the directory it
 * was built into. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <paf.h>
#include <paf/client.h>
#include <paf/http.h>

#define TRANSFER (4 * 1024 * 1024)

typedef struct {
        sd_event *event;
        paf_flow *server;
        paf_flow *client;
        size_t received;
        uint32_t hash;
        bool eof;
        bool done;
        bool failed;
        char *attempts;
        unsigned char *data;
        size_t written;
} state;

static uint32_t fnv(uint32_t h, const unsigned char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 16777619u;
        return h;
}

static void on_read(paf_flow *flow, const void *data, size_t len, int error, void *userdata) {
        state *s = userdata;
        assert_int_equal(error, 0);
        if (len == 0) {
                s->eof = true;
                paf_flow_close(flow, NULL, NULL);
                s->server = NULL;
                s->done = true;
                return;
        }
        s->received += len;
        s->hash = fnv(s->hash, data, len);
}

static void on_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        state *s = userdata;
        s->server = flow;
        assert_string_equal(paf_flow_get_protocol(flow), "loop");
        assert_int_equal(paf_flow_read_start(flow, on_read, s), 0);
}

static void write_next(paf_flow *flow, int error, void *userdata);

static void write_next(paf_flow *flow, int error, void *userdata) {
        state *s = userdata;
        assert_int_equal(error, 0);
        if (s->written == TRANSFER) {
                assert_int_equal(paf_flow_shutdown(flow, NULL, NULL), 0);
                return;
        }
        /* Writes of 256 KiB against a 64 KiB window: backpressure decides. */
        size_t n = TRANSFER - s->written < 256 * 1024 ? TRANSFER - s->written : 256 * 1024;
        struct iovec iov = {s->data + s->written, n};
        s->written += n;
        assert_int_equal(paf_flow_write(flow, &iov, 1, write_next, s), 0);
        assert_true(paf_flow_get_write_queue_size(flow) <= 256 * 1024);
}

static void on_connect(paf_flow *flow, const paf_attempt *a, size_t n, void *userdata) {
        state *s = userdata;
        if (!flow) {
                s->failed = true;
                s->attempts = paf_attempts_format(a, n);
                s->done = true;
                return;
        }
        s->client = flow;
        write_next(flow, 0, s);
}

/* Run the loop until *flag, for at most 10 s (exiting the loop instead would
 * stop it for good, and deferred closes would never run). */
static void run_until(sd_event *event, bool *flag) {
        for (int i = 0; i < 10000 && !*flag; i++)
                assert_true(sd_event_run(event, 1000) >= 0);
        assert_true(*flag);
}

/* Let deferred work (close handlers) run. */
static void drain(sd_event *event) {
        for (int i = 0; i < 10; i++)
                sd_event_run(event, 0);
}

static paf_registry *load(void) {
        paf_registry *reg = NULL;
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_registry_load_config(reg, NULL, &err), 0);
        int r = paf_registry_load_plugins(reg, &err);
        if (r < 0)
                fail_msg("%s", err.message);
        const paf_protocol *p = paf_registry_find_protocol(reg, "loop");
        assert_non_null(p);
        assert_string_equal(paf_protocol_get_plugin(p), "loop");
        return reg;
}

static void run_transfer(paf_ctx *ctx) {
        paf_registry *reg = load();
        state s = {.hash = 2166136261u};
        s.data = malloc(TRANSFER);
        assert_non_null(s.data);
        for (size_t i = 0; i < TRANSFER; i++)
                s.data[i] = (unsigned char)(i * 7 + (i >> 13));
        uint32_t want = fnv(2166136261u, s.data, TRANSFER);

        assert_int_equal(sd_event_new(&s.event), 0);
        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_listen_address(reg, "loop:echo-test", s.event, on_accept, &s,
                                                     &l, &err),
                         0);
        assert_string_equal(paf_listener_get_address(l), "loop:echo-test");

        assert_int_equal(paf_registry_connect(reg, ctx, s.event, on_connect, &s, NULL), 0);
        run_until(s.event, &s.done);
        if (s.failed)
                fail_msg("connect failed: %s", s.attempts);
        assert_true(s.eof);
        assert_int_equal(s.received, TRANSFER);
        assert_int_equal(s.hash, want);

        paf_flow_close(s.client, NULL, NULL);
        paf_listener_free(l);
        drain(s.event);
        sd_event_unref(s.event);
        free(s.data);
        free(s.attempts);
        paf_registry_unref(reg);
}

static void test_transfer_by_name(void **unused) {
        (void)unused;
        paf_ctx *ctx = NULL;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "loop.name", "echo-test"), 0);
        run_transfer(ctx);
        paf_ctx_unref(ctx);
}

/* The plugin's own rule turns http+loop URL keys into its endpoint. */
static void test_transfer_by_url_keys(void **unused) {
        (void)unused;
        paf_ctx *ctx = NULL;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.scheme", "http+loop"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.host", "echo-test"), 0);
        run_transfer(ctx);
        paf_ctx_unref(ctx);
}

static void on_refused(paf_flow *flow, const paf_attempt *a, size_t n, void *userdata) {
        state *s = userdata;
        assert_null(flow);
        s->attempts = paf_attempts_format(a, n);
        s->done = true;
}

static void test_nothing_listening(void **unused) {
        (void)unused;
        paf_registry *reg = load();
        state s = {0};
        paf_ctx *ctx = NULL;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "loop.name", "nobody"), 0);
        assert_int_equal(sd_event_new(&s.event), 0);
        assert_int_equal(paf_registry_connect(reg, ctx, s.event, on_refused, &s, NULL), 0);
        run_until(s.event, &s.done);
        drain(s.event);
        assert_non_null(s.attempts);
        assert_non_null(strstr(s.attempts, "loop:nobody"));
        assert_non_null(strstr(s.attempts, "nothing listens"));
        free(s.attempts);
        sd_event_unref(s.event);
        paf_ctx_unref(ctx);
        paf_registry_unref(reg);
}

/* ---- by URL: the plugin registered "+loop" ---- */

/* The server says what it was asked, and by which transport. */
static void on_request(paf_http_request *req, void *userdata) {
        (void)userdata;
        const char *host = paf_http_headers_get(paf_http_request_get_headers(req), "Host");
        char body[512];
        int n = snprintf(body, sizeof(body), "%s %s over %s, host %s\n",
                         paf_http_request_get_method(req), paf_http_request_get_target(req),
                         paf_flow_get_protocol(paf_http_request_get_flow(req)), host ? host : "-");
        paf_http_respond(req, 200, "text/plain", body, (size_t)n);
}

typedef struct get_result {
        bool done;
        int status;
        int error;
        char message[512];
        char body[512];
        char endpoint[128];
} get_result;

static void on_get(paf_response *resp, const paf_error *error, void *userdata) {
        get_result *g = userdata;
        g->done = true;
        if (error) {
                g->error = error->code;
                snprintf(g->message, sizeof(g->message), "%s", error->message);
                return;
        }
        g->status = resp->status;
        snprintf(g->body, sizeof(g->body), "%.*s", (int)resp->body_size,
                 resp->body ? (const char *)resp->body : "");
        snprintf(g->endpoint, sizeof(g->endpoint), "%s", resp->endpoint ? resp->endpoint : "");
        paf_response_free(resp);
}

static void get_url(paf_client *c, sd_event *event, const char *url, get_result *g) {
        *g = (get_result){0};
        assert_int_equal(paf_client_get(c, url, NULL, on_get, g), 0);
        run_until(event, &g->done);
}

/* What `paf get http+loop://web/…` does: the simple client parses the URL
 * with the registry's schemes and reaches a paf HTTP server on loop:web. */
static void test_http_by_url(void **unused) {
        (void)unused;
        paf_registry *reg = load();
        sd_event *event = NULL;
        assert_int_equal(sd_event_new(&event), 0);
        paf_http_server *server = NULL;
        assert_int_equal(paf_http_server_new(event, on_request, NULL, NULL, &server), 0);
        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_listen_address(reg, "loop:web", event, NULL, NULL, &l, &err) < 0)
                fail_msg("listen on loop:web: %s", err.message);
        assert_int_equal(paf_http_server_add_listener(server, l), 0);
        paf_client *c = NULL;
        assert_int_equal(paf_client_new(reg, event, &c), 0);

        get_result g;
        get_url(c, event, "http+loop://web/hello?x=1", &g);
        if (g.error)
                fail_msg("http+loop://web/hello: %s", g.message);
        assert_int_equal(g.status, 200);
        /* A loop name is no host name: Host is localhost, as for +unix. */
        assert_string_equal(g.body, "GET /hello?x=1 over loop, host localhost\n");
        assert_string_equal(g.endpoint, "loop loop:web");

        /* Nothing on that name: the loop transport says so. */
        get_url(c, event, "http+loop://nobody/", &g);
        assert_int_equal(g.error, -ECONNREFUSED);
        assert_non_null(strstr(g.message, "nothing listens on loop:nobody"));

        /* https+loop needs the tls layer, which is not loaded here: refused,
         * never sent in clear. */
        get_url(c, event, "https+loop://web/", &g);
        assert_int_equal(g.error, -EPROTONOSUPPORT);
        assert_string_equal(g.message, "URL \"https+loop://web/\": unknown scheme \"https+loop\": "
                                       "no plugin registered the layer \"https\" (registered: "
                                       "http+loop)");
        assert_int_equal(paf_http_server_get_n_requests(server), 1);

        paf_client_free(c);
        paf_http_server_free(server);
        drain(event);
        sd_event_unref(event);
        paf_registry_unref(reg);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_transfer_by_name),
                cmocka_unit_test(test_transfer_by_url_keys),
                cmocka_unit_test(test_nothing_listening),
                cmocka_unit_test(test_http_by_url),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
