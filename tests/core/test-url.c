/* tests/core/test-url.c — paf_ctx_set_url(), paf_registry_parse_url(): URLs into url.* keys, the
 * schemes plugins register, and the errors naming them. */
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

typedef struct parsed {
        int r;
        paf_error err;
        char scheme[64], host[256], path[256];
        int64_t port; /* -1: none */
} parsed;

static parsed parse(const char *url) {
        parsed p = {.err = PAF_ERROR_NULL, .port = -1};
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        p.r = paf_ctx_set_url(ctx, url, &p.err);
        if (p.r >= 0) {
                const char *s;
                assert_int_equal(paf_ctx_get_string(ctx, "url.scheme", &s), 0);
                snprintf(p.scheme, sizeof(p.scheme), "%s", s);
                assert_int_equal(paf_ctx_get_string(ctx, "url.host", &s), 0);
                snprintf(p.host, sizeof(p.host), "%s", s);
                assert_int_equal(paf_ctx_get_string(ctx, "url.path", &s), 0);
                snprintf(p.path, sizeof(p.path), "%s", s);
                int64_t port;
                if (paf_ctx_get_int(ctx, "url.port", &port) == 0)
                        p.port = port;
        } else
                /* A failed parse leaves nothing behind. */
                assert_int_equal(paf_ctx_has(ctx, "url.scheme"), 0);
        paf_ctx_unref(ctx);
        return p;
}

static void assert_url(const char *url, const char *scheme, const char *host, int64_t port,
                       const char *path) {
        parsed p = parse(url);
        if (p.r < 0)
                fail_msg("%s: %s", url, p.err.message);
        assert_string_equal(p.scheme, scheme);
        assert_string_equal(p.host, host);
        assert_int_equal(p.port, port);
        assert_string_equal(p.path, path);
}

static void assert_url_error(const char *url, int code, const char *message) {
        parsed p = parse(url);
        assert_int_equal(p.r, code);
        assert_int_equal(p.err.code, code);
        assert_string_equal(p.err.message, message);
}

static void test_schemes(void **state) {
        (void)state;
        assert_url("http://example.com/a/b", "http", "example.com", -1, "/a/b");
        assert_url("https://example.com/", "https", "example.com", -1, "/");
        assert_url("http+unix://%2Frun%2Fpaf.sock/x", "http+unix", "/run/paf.sock", -1, "/x");
        assert_url("https+unix://%2Frun%2Fpaf.sock/", "https+unix", "/run/paf.sock", -1, "/");
        assert_url("http+vsock://2:8080/v", "http+vsock", "2", 8080, "/v");
        assert_url("https+vsock://3:443/", "https+vsock", "3", 443, "/");
        /* Schemes are case-insensitive; the host is kept as written. */
        assert_url("HTTPS://Example.COM/", "https", "Example.COM", -1, "/");
        assert_url("HTTP+UNIX://%2Ftmp%2Fs/", "http+unix", "/tmp/s", -1, "/");
}

static void test_unix_path_decoded(void **state) {
        (void)state;
        assert_url("http+unix://%2Fvar%2Frun%2Fmy%20app%2Fhttp.sock/api/v1?x=1", "http+unix",
                   "/var/run/my app/http.sock", -1, "/api/v1?x=1");
        /* An abstract socket name. */
        assert_url("http+unix://%40paf-abstract/", "http+unix", "@paf-abstract", -1, "/");
}

static void test_ipv6(void **state) {
        (void)state;
        assert_url("http://[::1]:8080/x", "http", "::1", 8080, "/x");
        assert_url("https://[2001:db8::1]/", "https", "2001:db8::1", -1, "/");
        assert_url("http://127.0.0.1:1/", "http", "127.0.0.1", 1, "/");
}

static void test_ports(void **state) {
        (void)state;
        assert_url("http://h:80/", "http", "h", 80, "/");
        assert_url("http://h:65535/", "http", "h", 65535, "/");
        assert_url("http://h/", "http", "h", -1, "/");
        /* "h:" is an empty port: none. */
        assert_url("http://h:/", "http", "h", -1, "/");
}

static void test_path_query_default(void **state) {
        (void)state;
        assert_url("http://h", "http", "h", -1, "/");
        assert_url("http://h?q=1", "http", "h", -1, "/?q=1");
        assert_url("http://h/p?a=1&b=%20x", "http", "h", -1, "/p?a=1&b=%20x");
        assert_url("http://h/p?", "http", "h", -1, "/p?");
        /* The fragment is not sent; percent-encoding stays in the path. */
        assert_url("http://h/a%2Fb/c/#frag", "http", "h", -1, "/a%2Fb/c/");
        /* User information is no part of the endpoint. */
        assert_url("http://user:pw@h:81/", "http", "h", 81, "/");
}

static void test_errors(void **state) {
        (void)state;
        assert_url_error("http://h:99999/", -EINVAL,
                         "URL \"http://h:99999/\": bad port \"99999\" (1 to 65535)");
        assert_url_error("http://h:0/", -EINVAL,
                         "URL \"http://h:0/\": bad port \"0\" (1 to 65535)");
        /* Where uriparser notices is its business; that it is a syntax error is ours. */
        parsed p = parse("http://h:12a/");
        assert_int_equal(p.r, -EINVAL);
        assert_non_null(strstr(p.err.message, "URL \"http://h:12a/\": syntax error at offset"));
        assert_url_error("http:///path", -EINVAL, "URL \"http:///path\": no host");
        assert_url_error("http:/path", -EINVAL, "URL \"http:/path\": no host");
        assert_url_error("http+unix:///x", -EINVAL, "URL \"http+unix:///x\": no host");
        assert_url_error("example.com/x", -EINVAL, "URL \"example.com/x\": no scheme (http://…)");
        assert_url_error("http://h /", -EINVAL, "URL \"http://h /\": syntax error at offset 8");
        assert_int_equal(paf_ctx_set_url(NULL, "http://h/", NULL), -EINVAL);
}

/* Without a registry, no scheme is known and none is refused: the schemes
 * are the plugins'. */
static void test_any_scheme_without_registry(void **state) {
        (void)state;
        assert_url("gopher://h/x", "gopher", "h", -1, "/x");
        assert_url("ftp+unix://%2Fx/", "ftp+unix", "/x", -1, "/");
}

/* ---- the schemes plugins register ---- */

static paf_registry *registry_with(const char *const *plugins) {
        paf_registry *reg;
        assert_int_equal(paf_registry_new(&reg), 0);
        for (size_t i = 0; plugins[i]; i++) {
                char path[4096];
                bool fixture = strcmp(plugins[i], "pipe") == 0;
                snprintf(path, sizeof(path), "%s/%s.so",
                         getenv(fixture ? "PAF_TEST_FIXTUREDIR" : "PAF_TEST_PLUGINDIR"),
                         plugins[i]);
                paf_error err = PAF_ERROR_NULL;
                if (paf_registry_load_plugin(reg, path, &err) < 0)
                        fail_msg("loading %s: %s", path, err.message);
        }
        return reg;
}

static paf_registry *builtin_registry(void) {
        static const char *const all[] = {"tcp", "tls", "unix", "vsock", NULL};
        return registry_with(all);
}

static parsed parse_in(paf_registry *reg, const char *url) {
        parsed p = {.err = PAF_ERROR_NULL, .port = -1};
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        p.r = paf_registry_parse_url(reg, url, ctx, &p.err);
        if (p.r >= 0) {
                const char *s;
                assert_int_equal(paf_ctx_get_string(ctx, "url.scheme", &s), 0);
                snprintf(p.scheme, sizeof(p.scheme), "%s", s);
                assert_int_equal(paf_ctx_get_string(ctx, "url.host", &s), 0);
                snprintf(p.host, sizeof(p.host), "%s", s);
        } else
                assert_int_equal(paf_ctx_has(ctx, "url.scheme"), 0);
        paf_ctx_unref(ctx);
        return p;
}

static void assert_refused(paf_registry *reg, const char *url, const char *message) {
        parsed p = parse_in(reg, url);
        if (p.r >= 0)
                fail_msg("%s was taken", url);
        assert_int_equal(p.r, -EPROTONOSUPPORT);
        assert_int_equal(p.err.code, -EPROTONOSUPPORT);
        assert_string_equal(p.err.message, message);
}

static void test_registered_schemes(void **state) {
        (void)state;
        paf_registry *reg = builtin_registry();
        static const char *const urls[] = {
                "http://h/",          "https://h/",         "http+unix://%2Fs/",
                "https+unix://%2Fs/", "http+vsock://2:80/", "https+vsock://2/",
                "HTTPS+UNIX://%2Fs/",
        };
        for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
                parsed p = parse_in(reg, urls[i]);
                if (p.r < 0)
                        fail_msg("%s: %s", urls[i], p.err.message);
        }
        /* What is refused names the scheme and what would be taken. */
        assert_refused(reg, "gopher://h/",
                       "URL \"gopher://h/\": unknown scheme \"gopher\" (registered: http, https, "
                       "http+unix, https+unix, http+vsock, https+vsock)");
        assert_refused(reg, "http+tcpka://h/",
                       "URL \"http+tcpka://h/\": unknown scheme \"http+tcpka\" (registered: http, "
                       "https, http+unix, https+unix, http+vsock, https+vsock)");
        /* A transport under a base that is neither http nor a layer. */
        assert_refused(reg, "ftp+unix://%2Fs/",
                       "URL \"ftp+unix://%2Fs/\": unknown scheme \"ftp+unix\": no plugin "
                       "registered the layer \"ftp\" (registered: http, https, http+unix, "
                       "https+unix, http+vsock, https+vsock)");
        paf_registry_unref(reg);
}

/* Without tls.so, https is refused: never sent in clear. */
static void test_no_layer_no_https(void **state) {
        (void)state;
        static const char *const plain[] = {"tcp", "unix", NULL};
        paf_registry *reg = registry_with(plain);
        assert_int_equal(parse_in(reg, "http+unix://%2Fs/").r, 0);
        assert_refused(reg, "https://h/",
                       "URL \"https://h/\": unknown scheme \"https\": no plugin registered the "
                       "layer \"https\" (registered: http, http+unix)");
        assert_refused(reg, "https+unix://%2Fs/",
                       "URL \"https+unix://%2Fs/\": unknown scheme \"https+unix\": no plugin "
                       "registered the layer \"https\" (registered: http, http+unix)");
        paf_registry_unref(reg);

        /* And with no plugin at all, nothing is. */
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_refused(reg, "http://h/",
                       "URL \"http://h/\": unknown scheme \"http\" (no plugin registered a URL "
                       "scheme)");
        assert_int_equal(paf_registry_parse_url(NULL, "http://h/", NULL, NULL), -EINVAL);
        paf_registry_unref(reg);
}

/* The attempt of protocol in ctx's resolution: its endpoint, or NULL when
 * it is no candidate. */
static const char *endpoint_of(paf_resolution *res, const char *protocol) {
        size_t n;
        const paf_attempt *a = paf_resolution_get_attempts(res, &n);
        for (size_t i = 0; i < n; i++)
                if (strcmp(a[i].protocol, protocol) == 0)
                        return a[i].candidate ? a[i].endpoint : NULL;
        fail_msg("no attempt for %s", protocol);
        return NULL;
}

static paf_resolution *resolve_url(paf_registry *reg, const char *url) {
        paf_ctx *ctx;
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        if (paf_registry_parse_url(reg, url, ctx, &err) < 0)
                fail_msg("%s: %s", url, err.message);
        paf_resolution *res;
        assert_int_equal(paf_registry_resolve(reg, ctx, &res), 0);
        paf_ctx_unref(ctx);
        return res;
}

/* A third party's plugin registers "+pipe": its URLs parse, reach its
 * protocol with its default port, and TLS runs over it as https+pipe. */
static void test_plugin_scheme(void **state) {
        (void)state;
        static const char *const with_pipe[] = {"tcp", "tls", "unix", "vsock", "pipe", NULL};
        paf_registry *reg = registry_with(with_pipe);

        paf_resolution *res = resolve_url(reg, "http+pipe://example.org/x");
        assert_string_equal(endpoint_of(res, "pipe"), "example.org:7");
        assert_null(endpoint_of(res, "tcp"));
        assert_null(endpoint_of(res, "unix"));
        assert_null(endpoint_of(res, "tls"));
        assert_int_equal(paf_resolution_get_n_candidates(res), 1);
        paf_resolution_free(res);

        res = resolve_url(reg, "http+pipe://example.org:99/");
        assert_string_equal(endpoint_of(res, "pipe"), "example.org:99");
        paf_resolution_free(res);

        /* Its hosts are host names: TLS names the server after them. */
        res = resolve_url(reg, "https+pipe://example.org/");
        assert_string_equal(endpoint_of(res, "tls"), "example.org");
        assert_null(endpoint_of(res, "tcp"));
        paf_resolution_free(res);

        assert_refused(reg, "gopher://h/",
                       "URL \"gopher://h/\": unknown scheme \"gopher\" (registered: http, https, "
                       "http+unix, https+unix, http+vsock, https+vsock, http+pipe, https+pipe)");

        /* The registry lists it as registered, by its plugin. */
        bool found = false;
        for (size_t i = 0; i < paf_registry_get_n_schemes(reg); i++) {
                const paf_scheme *s = paf_registry_get_scheme(reg, i);
                if (strcmp(paf_scheme_get_name(s), "+pipe") != 0)
                        continue;
                found = true;
                assert_string_equal(paf_scheme_get_protocol(s), "pipe");
                assert_string_equal(paf_scheme_get_plugin(s), "pipe");
                assert_int_equal(paf_scheme_get_default_port(s), 7);
                assert_int_equal(paf_scheme_get_flags(s), PAF_SCHEME_HOSTNAME);
        }
        assert_true(found);
        assert_null(paf_registry_get_scheme(reg, paf_registry_get_n_schemes(reg)));
        paf_registry_unref(reg);
}

/* A plugin whose init fails leaves no scheme behind. */
static void test_failed_init_takes_scheme_back(void **state) {
        (void)state;
        paf_registry *reg;
        assert_int_equal(paf_registry_new(&reg), 0);
        char path[4096];
        snprintf(path, sizeof(path), "%s/pipe.so", getenv("PAF_TEST_FIXTUREDIR"));
        setenv("PAF_TEST_PIPE_FAIL", "1", 1);
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_load_plugin(reg, path, &err), -EPERM);
        unsetenv("PAF_TEST_PIPE_FAIL");
        assert_int_equal(paf_registry_get_n_schemes(reg), 0);
        assert_refused(reg, "http+pipe://h/",
                       "URL \"http+pipe://h/\": unknown scheme \"http+pipe\" (no plugin "
                       "registered a URL scheme)");
        paf_registry_unref(reg);
}

static paf_scheme_desc desc(const char *name, const char *protocol, uint32_t flags, int port) {
        return (paf_scheme_desc){.struct_size = sizeof(paf_scheme_desc),
                                 .name = name,
                                 .protocol = protocol,
                                 .flags = flags,
                                 .default_port = port};
}

static void test_add_scheme_checks(void **state) {
        (void)state;
        paf_registry *reg;
        assert_int_equal(paf_registry_new(&reg), 0);
        static const char *const bad_names[] = {"",      "Http", "1x",  "a+b+c", "+",
                                                "http+", "a b",  "a_b", "+x+y",  NULL};
        for (size_t i = 0; bad_names[i]; i++) {
                paf_scheme_desc d = desc(bad_names[i], "mem", 0, 0);
                if (paf_registry_add_scheme(reg, &d) != -EINVAL)
                        fail_msg("\"%s\" was taken", bad_names[i]);
        }
        paf_scheme_desc d = desc(NULL, "mem", 0, 0);
        assert_int_equal(paf_registry_add_scheme(reg, &d), -EINVAL);
        d = desc("x", NULL, 0, 0);
        assert_int_equal(paf_registry_add_scheme(reg, &d), -EINVAL);
        d = desc("x", "Bad Name", 0, 0);
        assert_int_equal(paf_registry_add_scheme(reg, &d), -EINVAL);
        d = desc("x", "mem", 0, 65536);
        assert_int_equal(paf_registry_add_scheme(reg, &d), -EINVAL);
        d = desc("x", "mem", 0, -1);
        assert_int_equal(paf_registry_add_scheme(reg, &d), -EINVAL);
        d = desc("x", "mem", UINT32_C(1) << 7, 0);
        assert_int_equal(paf_registry_add_scheme(reg, &d), -EINVAL);
        /* A layer is a base: no '+', no port. */
        d = desc("x+y", "mem", PAF_SCHEME_LAYER, 0);
        assert_int_equal(paf_registry_add_scheme(reg, &d), -EINVAL);
        d = desc("x", "mem", PAF_SCHEME_LAYER, 443);
        assert_int_equal(paf_registry_add_scheme(reg, &d), -EINVAL);
        d = desc("x", "mem", 0, 0);
        d.struct_size = offsetof(paf_scheme_desc, flags);
        assert_int_equal(paf_registry_add_scheme(reg, &d), -EINVAL);
        assert_int_equal(paf_registry_add_scheme(NULL, &d), -EINVAL);
        assert_int_equal(paf_registry_add_scheme(reg, NULL), -EINVAL);
        assert_int_equal(paf_registry_get_n_schemes(reg), 0);

        /* A name once per kind: a layer and a whole scheme may share it. */
        d = desc("web", "mem", PAF_SCHEME_HOSTNAME, 8000);
        assert_int_equal(paf_registry_add_scheme(reg, &d), 0);
        assert_int_equal(paf_registry_add_scheme(reg, &d), -EEXIST);
        d = desc("web", "memtls", PAF_SCHEME_LAYER, 0);
        assert_int_equal(paf_registry_add_scheme(reg, &d), 0);
        assert_int_equal(paf_registry_add_scheme(reg, &d), -EEXIST);
        d = desc("+mem", "mem", 0, 0);
        assert_int_equal(paf_registry_add_scheme(reg, &d), 0);
        assert_int_equal(paf_registry_get_n_schemes(reg), 3);
        /* The program's, not a plugin's. */
        assert_null(paf_scheme_get_plugin(paf_registry_get_scheme(reg, 0)));
        assert_int_equal(parse_in(reg, "web://h/").r, 0);
        assert_int_equal(parse_in(reg, "web+mem://h/").r, 0);
        assert_int_equal(parse_in(reg, "http+mem://h/").r, 0);
        paf_registry_unref(reg);
}

static int copy_input(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        (void)userdata;
        *ret = in[0];
        return 1;
}

static unsigned n_destroyed;

static void count_destroy(void *userdata) {
        (void)userdata;
        n_destroyed++;
}

/* Reads key through the registry's rules under a context holding the URL's keys. */
static int read_derived(paf_registry *reg, const char *scheme, const char *key, paf_value *ret,
                        char *buf, size_t size) {
        paf_ctx *user, *view;
        assert_int_equal(paf_ctx_new(&user), 0);
        assert_int_equal(paf_ctx_set_string(user, "url.scheme", scheme), 0);
        assert_int_equal(paf_ctx_set_string(user, "url.host", "example.org"), 0);
        assert_int_equal(paf_ctx_new_layered(user, paf_registry_get_ctx(reg), &view), 0);
        int r = paf_ctx_get(view, key, ret);
        if (r >= 0 && ret->type == PAF_TYPE_STRING)
                snprintf(buf, size, "%s", ret->string);
        paf_ctx_unref(view);
        paf_ctx_unref(user);
        return r;
}

/* A URL rule runs for its protocol's schemes only; the registry derives
 * url.default-port and url.hostname from the scheme's registration. */
static void test_url_rules(void **state) {
        (void)state;
        paf_registry *reg;
        assert_int_equal(paf_registry_new(&reg), 0);
        paf_scheme_desc d = desc("+mem", "mem", 0, 0);
        assert_int_equal(paf_registry_add_scheme(reg, &d), 0);
        d = desc("http+mem", "mem", PAF_SCHEME_HOSTNAME, 5);
        assert_int_equal(paf_registry_add_scheme(reg, &d), 0);
        d = desc("+other", "other", 0, 0);
        assert_int_equal(paf_registry_add_scheme(reg, &d), 0);
        static const paf_rule_input in[] = {PAF_REQUIRED("url.host", PAF_TYPE_STRING)};
        n_destroyed = 0;
        assert_int_equal(paf_registry_add_url_rule(reg, "mem", "mem.name", PAF_TYPE_STRING, in, 1,
                                                   copy_input, NULL, count_destroy),
                         0);
        assert_int_equal(paf_registry_add_url_rule(reg, "Bad Name", "mem.name", PAF_TYPE_STRING, in,
                                                   1, copy_input, NULL, NULL),
                         -EINVAL);
        assert_int_equal(paf_registry_add_url_rule(reg, "mem", "mem.name", PAF_TYPE_STRING, NULL, 1,
                                                   copy_input, NULL, NULL),
                         -EINVAL);
        assert_int_equal(paf_registry_add_url_rule(reg, "mem", "mem.name", PAF_TYPE_STRING, in, 1,
                                                   NULL, NULL, NULL),
                         -EINVAL);

        paf_value v;
        char buf[64] = "";
        assert_int_equal(read_derived(reg, "http+mem", "mem.name", &v, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "example.org");
        assert_int_equal(read_derived(reg, "https+mem", "mem.name", &v, buf, sizeof(buf)), 0);
        assert_int_equal(read_derived(reg, "http+other", "mem.name", &v, buf, sizeof(buf)),
                         -ENOENT);
        assert_int_equal(read_derived(reg, "http", "mem.name", &v, buf, sizeof(buf)), -ENOENT);
        /* A suffix alone is no scheme. */
        assert_int_equal(read_derived(reg, "+mem", "mem.name", &v, buf, sizeof(buf)), -ENOENT);

        /* The whole name's registration wins over the suffix's. */
        assert_int_equal(read_derived(reg, "http+mem", "url.default-port", &v, buf, sizeof(buf)),
                         0);
        assert_int_equal(v.integer, 5);
        assert_int_equal(read_derived(reg, "https+mem", "url.default-port", &v, buf, sizeof(buf)),
                         -ENOENT);
        assert_int_equal(read_derived(reg, "http+mem", "url.hostname", &v, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "example.org");
        assert_int_equal(read_derived(reg, "https+mem", "url.hostname", &v, buf, sizeof(buf)),
                         -ENOENT);

        assert_int_equal(n_destroyed, 0);
        paf_registry_unref(reg);
        assert_int_equal(n_destroyed, 1);
}

/* Setting a URL over another replaces its keys: no port left from before. */
static void test_replace(void **state) {
        (void)state;
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_url(ctx, "http://a:81/x", NULL), 0);
        assert_int_equal(paf_ctx_set_url(ctx, "https://b/y", NULL), 0);
        const char *s;
        assert_int_equal(paf_ctx_get_string(ctx, "url.host", &s), 0);
        assert_string_equal(s, "b");
        assert_int_equal(paf_ctx_has(ctx, "url.port"), 0);
        paf_ctx_unref(ctx);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_schemes),
                cmocka_unit_test(test_unix_path_decoded),
                cmocka_unit_test(test_ipv6),
                cmocka_unit_test(test_ports),
                cmocka_unit_test(test_path_query_default),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_any_scheme_without_registry),
                cmocka_unit_test(test_replace),
                cmocka_unit_test(test_registered_schemes),
                cmocka_unit_test(test_no_layer_no_https),
                cmocka_unit_test(test_plugin_scheme),
                cmocka_unit_test(test_failed_init_takes_scheme_back),
                cmocka_unit_test(test_add_scheme_checks),
                cmocka_unit_test(test_url_rules),
        };
        return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
