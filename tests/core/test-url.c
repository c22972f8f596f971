/* tests/core/test-url.c — paf_ctx_set_url(): URLs into url.* keys, and the errors naming them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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
        assert_url_error("gopher://h/", -EPROTONOSUPPORT,
                         "URL \"gopher://h/\": unknown scheme \"gopher\"");
        assert_url_error("ftp+unix://%2Fx/", -EPROTONOSUPPORT,
                         "URL \"ftp+unix://%2Fx/\": unknown scheme \"ftp+unix\"");
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
                cmocka_unit_test(test_replace),
        };
        return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
