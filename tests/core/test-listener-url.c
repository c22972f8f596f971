/* tests/core/test-listener-url.c — paf_listener_format_url(): one form for plain and layered
 * listeners of any transport. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>

#include "../common/paf-test.h"

/* ---- a third party's transport and a layer, registered by the program ---- */

/* A listener that never accepts; a layer's keeps its inner one. */
static int none_start(paf_listener *l) {
        (void)l;
        return 0;
}

static void layer_close(paf_listener *l) {
        paf_listener_free(paf_listener_get_impl(l));
}

static const paf_listener_ops plain_ops = {
        .struct_size = sizeof(paf_listener_ops), .start = none_start, .stop = none_start};
static const paf_listener_ops layer_ops = {.struct_size = sizeof(paf_listener_ops),
                                           .start = none_start,
                                           .stop = none_start,
                                           .close = layer_close};

static int describe(paf_ctx *ctx, char *buf, size_t size, void *userdata) {
        (void)ctx;
        snprintf(buf, size, "%s", (const char *)userdata);
        return 0;
}

static int no_connect(paf_connect_request *req, void *userdata) {
        (void)req;
        (void)userdata;
        return -ENOTSUP;
}

/* "fake:NAME" (no ports) and "fakeport:CID:PORT" (with ports): the address
 * goes to the listener as is, like vsock's and loop's. */
static int fake_parse(const char *address, paf_ctx *ctx, paf_error *error, void *userdata) {
        (void)error;
        const char *prefix = userdata;
        size_t n = strlen(prefix);
        if (strncmp(address, prefix, n) != 0 || address[n] != ':')
                return 0;
        char key[64];
        snprintf(key, sizeof(key), "%s.name", prefix);
        return paf_ctx_set_string(ctx, key, address + n + 1) < 0 ? -ENOMEM : 1;
}

static int fake_listen(paf_ctx *ctx, sd_event *event, paf_listener **ret, paf_error *error,
                       void *userdata) {
        (void)error;
        const char *prefix = userdata;
        char key[64], address[256];
        snprintf(key, sizeof(key), "%s.name", prefix);
        const char *name;
        int r = paf_ctx_get_string(ctx, key, &name);
        if (r < 0)
                return r;
        snprintf(address, sizeof(address), "%s:%s", prefix, name);
        return paf_listener_new(event, &plain_ops, NULL, prefix, address, ret);
}

static int layer_wrap(paf_listener *inner, paf_ctx *ctx, paf_listener **ret, paf_error *error,
                      void *userdata) {
        (void)ctx;
        (void)error;
        (void)userdata;
        int r = paf_listener_new(paf_listener_get_event(inner), &layer_ops, inner, "seal",
                                 paf_listener_get_address(inner), ret);
        if (r < 0)
                paf_listener_free(inner);
        return r;
}

static const char *const fake_keys[] = {"fake.name", NULL};
static const char *const fakeport_keys[] = {"fakeport.name", NULL};
static const char *const seal_keys[] = {"seal.on", NULL};

static const paf_protocol_ops fake_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "fake",
        .priority = 60,
        .endpoint_keys = fake_keys,
        .describe = describe,
        .connect = no_connect,
        .listen = fake_listen,
        .parse_address = fake_parse,
};
static const paf_protocol_ops fakeport_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "fakeport",
        .priority = 61,
        .endpoint_keys = fakeport_keys,
        .describe = describe,
        .connect = no_connect,
        .listen = fake_listen,
        .parse_address = fake_parse,
};
static const paf_protocol_ops seal_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "seal",
        .priority = 10,
        .endpoint_keys = seal_keys,
        .describe = describe,
        .connect = no_connect,
        .flags = PAF_PROTOCOL_LAYER,
        .wrap_listener = layer_wrap,
};

/* A protocol with no scheme at all. */
static const char *const bare_keys[] = {"bare.name", NULL};
static const paf_protocol_ops bare_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "bare",
        .priority = 62,
        .endpoint_keys = bare_keys,
        .describe = describe,
        .connect = no_connect,
        .listen = fake_listen,
        .parse_address = fake_parse,
};

typedef struct env {
        sd_event *event;
        paf_registry *reg;
        char dir[64];
} env;

static void load(paf_registry *reg, const char *name) {
        const char *dir = getenv("PAF_TEST_PLUGINDIR");
        assert_non_null(dir);
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s.so", dir, name);
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_load_plugin(reg, path, &err) < 0)
                fail_msg("loading %s: %s", path, err.message);
}

static int setup(void **state) {
        env *v = calloc(1, sizeof(*v));
        assert_non_null(v);
        assert_int_equal(sd_event_new(&v->event), 0);
        assert_int_equal(paf_registry_new(&v->reg), 0);
        load(v->reg, "tcp");
        load(v->reg, "unix");
        assert_int_equal(paf_registry_add_protocol(v->reg, &fake_protocol, (void *)"fake"), 0);
        assert_int_equal(paf_registry_add_protocol(v->reg, &fakeport_protocol, (void *)"fakeport"),
                         0);
        assert_int_equal(paf_registry_add_protocol(v->reg, &bare_protocol, (void *)"bare"), 0);
        assert_int_equal(paf_registry_add_protocol(v->reg, &seal_protocol, (void *)"seal"), 0);
        static const paf_scheme_desc schemes[] = {
                {.struct_size = sizeof(paf_scheme_desc), .name = "+fake", .protocol = "fake"},
                {.struct_size = sizeof(paf_scheme_desc),
                 .name = "+fakeport",
                 .protocol = "fakeport",
                 .default_port = 80},
                {.struct_size = sizeof(paf_scheme_desc),
                 .name = "https",
                 .protocol = "seal",
                 .flags = PAF_SCHEME_LAYER},
        };
        for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
                assert_int_equal(paf_registry_add_scheme(v->reg, &schemes[i]), 0);
        snprintf(v->dir, sizeof(v->dir), "/tmp/paf-test-url-XXXXXX");
        assert_non_null(mkdtemp(v->dir));
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        paf_registry_unref(v->reg);
        sd_event_unref(v->event);
        char path[128];
        snprintf(path, sizeof(path), "%s/paf.sock", v->dir);
        unlink(path);
        rmdir(v->dir);
        free(v);
        return 0;
}

static void on_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        paf_flow **slot = userdata;
        *slot = flow;
}

/* The URLs of a listener on address, plain and under the layer. */
static void urls(env *v, const char *address, char **ret_plain, char **ret_layered,
                 paf_flow **accepted) {
        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_listen_address(v->reg, address, v->event, on_accept, accepted, &l, &err) <
            0)
                fail_msg("listening on %s: %s", address, err.message);
        assert_int_equal(paf_listener_format_url(l, ret_plain), 0);
        paf_listener_free(l);

        if (paf_registry_listen_address(v->reg, address, v->event, NULL, NULL, &l, &err) < 0)
                fail_msg("listening on %s: %s", address, err.message);
        paf_listener *sealed = NULL;
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        if (paf_registry_wrap_listener(v->reg, "seal", l, ctx, &sealed, &err) < 0)
                fail_msg("wrapping %s: %s", address, err.message);
        paf_ctx_unref(ctx);
        assert_string_equal(paf_listener_get_protocol(sealed), "seal");
        assert_int_equal(paf_listener_format_url(sealed, ret_layered), 0);
        paf_listener_free(sealed);
}

static void test_tcp(void **state) {
        env *v = *state;
        char *plain, *layered;
        paf_flow *accepted = NULL;
        urls(v, "127.0.0.1:0", &plain, &layered, &accepted);
        assert_int_equal(strncmp(plain, "http://127.0.0.1:", 17), 0);
        assert_true(strspn(plain + 17, "0123456789") == strlen(plain + 17));
        /* The layer's base over tcp: tcp's own "https". */
        assert_int_equal(strncmp(layered, "https://127.0.0.1:", 18), 0);
        free(plain);
        free(layered);

        urls(v, "[::1]:0", &plain, &layered, &accepted);
        assert_int_equal(strncmp(plain, "http://[::1]:", 13), 0);
        assert_int_equal(strncmp(layered, "https://[::1]:", 14), 0);
        free(plain);
        free(layered);
}

static void test_unix(void **state) {
        env *v = *state;
        char path[128], *plain, *layered;
        snprintf(path, sizeof(path), "%s/paf.sock", v->dir);
        paf_flow *accepted = NULL;
        urls(v, path, &plain, &layered, &accepted);
        /* The path percent-encoded, as the unix plugin's URLs take it. */
        char want[512] = "http+unix://", *q = want + strlen(want);
        for (const char *c = path; *c; c++)
                q += *c == '/' ? sprintf(q, "%%2F") : sprintf(q, "%c", *c);
        assert_string_equal(plain, want);
        assert_string_equal(layered + 5, want + 4); /* "https+unix://…" */
        assert_int_equal(strncmp(layered, "https+unix://", 13), 0);

        /* And the URL leads back to the socket: paf connects by it. */
        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(
                paf_registry_listen_address(v->reg, path, v->event, on_accept, &accepted, &l, &err),
                0);
        char url[600];
        snprintf(url, sizeof(url), "%s/", plain);
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        if (paf_registry_parse_url(v->reg, url, ctx, &err) < 0)
                fail_msg("%s: %s", url, err.message);
        paf_resolution *res = NULL;
        assert_int_equal(paf_registry_resolve(v->reg, ctx, &res), 0);
        assert_true(paf_resolution_get_n_candidates(res) >= 1);
        assert_string_equal(paf_protocol_get_name(paf_resolution_get_protocol(res, 0)), "unix");
        size_t n;
        const paf_attempt *a = paf_resolution_get_attempts(res, &n);
        assert_non_null(a[0].endpoint);
        assert_non_null(strstr(a[0].endpoint, path));
        paf_resolution_free(res);
        paf_ctx_unref(ctx);
        paf_listener_free(l);
        free(plain);
        free(layered);
}

static void test_third_party(void **state) {
        env *v = *state;
        char *plain, *layered;
        paf_flow *accepted = NULL;
        /* One form for both: the transport's scheme, the layer's base. */
        urls(v, "fake:my name/1", &plain, &layered, &accepted);
        assert_string_equal(plain, "http+fake://my%20name%2F1");
        assert_string_equal(layered, "https+fake://my%20name%2F1");
        free(plain);
        free(layered);

        /* A scheme with ports keeps the port as one. */
        urls(v, "fakeport:3:8080", &plain, &layered, &accepted);
        assert_string_equal(plain, "http+fakeport://3:8080");
        assert_string_equal(layered, "https+fakeport://3:8080");
        free(plain);
        free(layered);
}

static void test_no_scheme(void **state) {
        env *v = *state;
        char *url = (char *)0x1;
        /* A protocol that registered none. */
        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(
                paf_registry_listen_address(v->reg, "bare:x", v->event, NULL, NULL, &l, &err), 0);
        assert_int_equal(paf_listener_format_url(l, &url), -ENOENT);
        paf_listener_free(l);
        /* A listener made outside any registry. */
        assert_int_equal(paf_listener_new(v->event, &plain_ops, NULL, "tcp", "1.2.3.4:5", &l), 0);
        assert_int_equal(paf_listener_format_url(l, &url), -ENOENT);
        paf_listener_free(l);
        assert_ptr_equal(url, (char *)0x1);
        assert_int_equal(paf_listener_format_url(NULL, &url), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_tcp, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unix, setup, teardown),
                cmocka_unit_test_setup_teardown(test_third_party, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_scheme, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
