/* tests/http/https-loop.c — HTTPS over the out-of-tree "loop" plugin: a listener on loop:x wrapped
 * in tls, the HTTP client connecting with loop.name + tls.server-name. Run by test-https.sh with
 * CERTS_DIR. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <paf.h>
#include <paf/http.h>

#include "../common/paf-test.h"

static const char *certs;

static char *cert_path(const char *name) {
        char *p;
        assert_true(asprintf(&p, "%s/%s", certs, name) > 0);
        return p;
}

/* The server tells what the TLS layer says about the connection. */
static void on_request(paf_http_request *req, void *userdata) {
        (void)userdata;
        paf_flow *flow = paf_http_request_get_flow(req);
        char version[64] = "?", sni[256] = "?", body[512];
        paf_flow_query(flow, PAF_FLOW_QUERY_TLS_VERSION, version, sizeof(version));
        paf_flow_query(flow, PAF_FLOW_QUERY_TLS_SERVER_NAME, sni, sizeof(sni));
        int n = snprintf(body, sizeof(body), "hello over %s, %s, sni=%s\n",
                         paf_flow_get_protocol(flow), version, sni);
        paf_http_respond(req, 200, "text/plain", body, (size_t)n);
}

typedef struct call_state {
        bool done;
        int status;
        char error[512];
        char body[1024];
        size_t len;
} call_state;

static void on_body(paf_http_call *call, const void *data, size_t len, int error, void *userdata) {
        call_state *c = userdata;
        (void)call;
        if (error < 0) {
                snprintf(c->error, sizeof(c->error), "body: %s", strerror(-error));
                c->done = true;
                return;
        }
        if (len == 0) {
                c->done = true;
                return;
        }
        size_t n = len < sizeof(c->body) - 1 - c->len ? len : sizeof(c->body) - 1 - c->len;
        memcpy(c->body + c->len, data, n);
        c->len += n;
        c->body[c->len] = '\0';
}

static void on_response(paf_http_call *call, int status, const paf_http_headers *headers,
                        const paf_error *error, void *userdata) {
        call_state *c = userdata;
        (void)headers;
        c->status = status;
        if (error) {
                snprintf(c->error, sizeof(c->error), "%s", error->message);
                c->done = true;
                return;
        }
        assert_int_equal(paf_http_call_read_body(call, on_body, c), 0);
}

typedef struct fixture {
        paf_registry *reg;
        sd_event *event;
        paf_http_server *server;
        paf_http_client *client;
} fixture;

static void setup(fixture *f) {
        paf_error err = PAF_ERROR_NULL;
        *f = (fixture){};
        assert_int_equal(paf_registry_new(&f->reg), 0);
        assert_int_equal(paf_registry_load_config(f->reg, NULL, &err), 0);
        if (paf_registry_load_plugins(f->reg, &err) < 0)
                fail_msg("%s", err.message);
        assert_non_null(paf_registry_find_protocol(f->reg, "loop"));
        assert_non_null(paf_registry_find_protocol(f->reg, "tls"));
        assert_int_equal(sd_event_new(&f->event), 0);
        assert_int_equal(paf_http_server_new(f->event, on_request, NULL, NULL, &f->server), 0);

        /* By endpoint keys, not by the address "loop:x": with tcp.so loaded,
         * tcp's address parser claims "loop:x" as host "loop", port "x". */
        paf_listener *inner = NULL, *l = NULL;
        paf_ctx *ctx = NULL;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "loop.name", "x"), 0);
        if (paf_registry_listen(f->reg, ctx, f->event, NULL, NULL, &inner, &err) < 0)
                fail_msg("listen on loop:x: %s", err.message);
        assert_string_equal(paf_listener_get_protocol(inner), "loop");
        ctx = paf_ctx_unref(ctx);
        char *cert = cert_path("a.pem"), *key = cert_path("a.key");
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.cert-file", cert), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.key-file", key), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.alpn", "http/1.1"), 0);
        int r = paf_registry_wrap_listener(f->reg, "tls", inner, ctx, &l, &err);
        if (r < 0)
                fail_msg("wrap: %s", err.message);
        paf_ctx_unref(ctx);
        free(cert);
        free(key);
        assert_int_equal(paf_http_server_add_listener(f->server, l), 0);
        assert_int_equal(paf_http_client_new(f->reg, f->event, &f->client), 0);
}

static void teardown(fixture *f) {
        paf_http_client_free(f->client);
        paf_http_server_free(f->server);
        for (int i = 0; i < 20; i++)
                sd_event_run(f->event, 0);
        sd_event_unref(f->event);
        paf_registry_unref(f->reg);
}

static void get(fixture *f, const char *ca, call_state *c) {
        paf_ctx *ctx = NULL;
        char *ca_path = cert_path(ca);
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "loop.name", "x"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.server-name", "localhost"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.ca-file", ca_path), 0);
        paf_http_call *call = NULL;
        *c = (call_state){};
        assert_int_equal(
                paf_http_client_request(f->client, ctx, "GET", "/", NULL, 0, on_response, c, &call),
                0);
        assert_true(run_until(f->event, &c->done, 10000));
        paf_http_call_free(call);
        paf_ctx_unref(ctx);
        free(ca_path);
}

static void test_https_over_loop(void **unused) {
        (void)unused;
        fixture f;
        setup(&f);
        call_state c;
        get(&f, "ca.pem", &c);
        if (c.error[0])
                fail_msg("GET over tls+loop failed: %s", c.error);
        assert_int_equal(c.status, 200);
        printf("# %s", c.body);
        assert_non_null(strstr(c.body, "hello over tls, TLS1."));
        assert_non_null(strstr(c.body, "sni=localhost"));
        /* Twice: the second call reuses the connection or makes a new one,
         * either way over TLS. */
        get(&f, "ca.pem", &c);
        assert_int_equal(c.status, 200);
        teardown(&f);
}

/* A certificate the client does not trust fails the call; nothing falls back
 * to plain text over loop. */
static void test_untrusted_fails(void **unused) {
        (void)unused;
        fixture f;
        setup(&f);
        call_state c;
        get(&f, "rogue.pem", &c);
        assert_int_equal(c.status, 0);
        assert_true(c.error[0]);
        printf("# %s\n", c.error);
        teardown(&f);
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s CERTS_DIR\n", argv[0]);
                return 2;
        }
        certs = argv[1];
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_https_over_loop),
                cmocka_unit_test(test_untrusted_fails),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
