/* tests/http/test-simple-client.c — paf_client: URLs against nginx over TCP and a unix socket,
 * redirects, reuse, streaming, and the errors naming the URL; against paf's own servers, what a
 * redirect may reach and what it carries there (schemes, credentials, Host). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>
#include <paf/client.h>

#include "../common/nginx.h"
#include "../common/paf-test.h"

#define FILE_SIZE (200 * 1024 + 7)
#define USEC_PER_MSEC UINT64_C(1000)

/* ---- nginx, started by the test ---- */

static nginx ngx;

static uint8_t *pattern(size_t len) {
        uint8_t *p = malloc(len);
        assert_non_null(p);
        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)(i * 7 + (i >> 9));
        return p;
}

static void nginx_write_tree(nginx *n) {
        char path[PATH_MAX + 64];
        const char *dirs[] = {"www",         "tmp",       "tmp/body", "tmp/proxy",
                              "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi", "logs"};
        for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", n->dir, dirs[i]);
                assert_int_equal(mkdir(path, 0755), 0);
        }
        uint8_t *data = pattern(FILE_SIZE);
        snprintf(path, sizeof(path), "%s/www/file.bin", n->dir);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, FILE_SIZE, f), FILE_SIZE);
        assert_int_equal(fclose(f), 0);
        free(data);
        assert_int_equal(chmod(n->dir, 0755), 0);

        snprintf(path, sizeof(path), "%s/nginx.conf", n->dir);
        f = fopen(path, "we");
        assert_non_null(f);
        /* `return` answers any method; absolute_redirect off keeps Location
         * relative, so resolving it is the client's job. */
        fprintf(f,
                "daemon off;\n"
                "master_process off;\n"
                "worker_processes 1;\n"
                "pid %1$s/nginx.pid;\n"
                "error_log %1$s/logs/error.log info;\n"
                "events { worker_connections 64; }\n"
                "http {\n"
                "  access_log off;\n"
                "  client_body_temp_path %1$s/tmp/body;\n"
                "  proxy_temp_path %1$s/tmp/proxy;\n"
                "  fastcgi_temp_path %1$s/tmp/fastcgi;\n"
                "  uwsgi_temp_path %1$s/tmp/uwsgi;\n"
                "  scgi_temp_path %1$s/tmp/scgi;\n"
                "  default_type application/octet-stream;\n"
                "  keepalive_timeout 30s;\n"
                "  keepalive_requests 1000;\n"
                "  absolute_redirect off;\n"
                "  server {\n"
                "    listen 127.0.0.1:%2$d;\n"
                "    listen unix:%1$s/nginx.sock;\n"
                "    root %1$s/www;\n"
                "    location /m { return 200 \"$request_method $content_length $http_host\\n\"; "
                "}\n"
                "    location /r1 { return 302 /r2; }\n"
                "    location /r2 { return 301 /final?from=r2; }\n"
                "    location = /final { return 200 \"final $request_method $content_length "
                "$args\\n\"; }\n"
                "    location /p307 { return 307 /m; }\n"
                "    location /p303 { return 303 m; }\n"
                "    location /abs { return 302 http://127.0.0.1:%2$d/m; }\n"
                "    location /loop { return 302 /loop; }\n"
                "  }\n"
                "}\n",
                n->dir, n->port);
        assert_int_equal(fclose(f), 0);
        snprintf(n->sock, sizeof(n->sock), "%s/nginx.sock", n->dir);
}

/* ---- the client under test ---- */

typedef struct env {
        sd_event *event;
        paf_registry *reg;
        paf_client *client;
        int fds_before;
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
        v->fds_before = count_fds();
        assert_int_equal(sd_event_new(&v->event), 0);
        assert_int_equal(paf_registry_new(&v->reg), 0);
        load(v->reg, "tcp");
        load(v->reg, "unix");
        assert_int_equal(paf_client_new(v->reg, v->event, &v->client), 0);
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        paf_client_free(v->client);
        run_for(v->event, 30);
        paf_registry_unref(v->reg);
        sd_event_unref(v->event);
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

static void set_options(env *v, unsigned max_redirects, uint64_t timeout_usec,
                        const char *unix_socket) {
        paf_client_options o = {
                .max_redirects = max_redirects,
                .timeout_usec = timeout_usec,
                .unix_socket = unix_socket,
        };
        assert_int_equal(paf_client_set_options(v->client, &o), 0);
}

typedef struct result {
        bool done;
        paf_response *resp;
        int err_code;
        char err[512];
        /* Streaming. */
        bool stream;
        int head_status;
        bool head_before_body;
        uint8_t *streamed;
        size_t n_streamed;
        unsigned pieces;
} result;

static void on_done(paf_response *resp, const paf_error *error, void *userdata) {
        result *r = userdata;
        assert_false(r->done);
        r->done = true;
        r->resp = resp;
        if (error) {
                assert_null(resp);
                r->err_code = error->code;
                snprintf(r->err, sizeof(r->err), "%s", error->message);
        }
}

static void on_head(int status, const paf_http_headers *headers, void *userdata) {
        result *r = userdata;
        assert_non_null(headers);
        r->head_status = status;
        r->head_before_body = r->n_streamed == 0;
}

static int on_body(const void *data, size_t len, void *userdata) {
        result *r = userdata;
        assert_int_not_equal(r->head_status, 0);
        r->streamed = realloc(r->streamed, r->n_streamed + len);
        assert_non_null(r->streamed);
        memcpy(r->streamed + r->n_streamed, data, len);
        r->n_streamed += len;
        r->pieces++;
        return 0;
}

static void result_clear(result *r) {
        paf_response_free(r->resp);
        free(r->streamed);
        *r = (result){0};
}

static void wait_done(env *v, result *r) {
        /* Never from inside the call. */
        assert_false(r->done);
        assert_true(run_until(v->event, &r->done, 10000));
}

static void do_send(env *v, const char *method, const char *url, const char *body, result *r) {
        *r = (result){0};
        paf_client_request req = {
                .method = method,
                .url = url,
                .body = body,
                .body_size = body ? strlen(body) : 0,
                .userdata = r,
        };
        assert_int_equal(paf_client_send(v->client, &req, on_done), 0);
        wait_done(v, r);
}

static void assert_body(const result *r, int status, const char *body) {
        if (!r->resp)
                fail_msg("no response: %s", r->err);
        assert_int_equal(r->resp->status, status);
        assert_int_equal(r->resp->body_size, strlen(body));
        assert_memory_equal(r->resp->body, body, strlen(body));
}

static char *url_tcp(const char *path) {
        char *u;
        assert_true(asprintf(&u, "http://127.0.0.1:%d%s", ngx.port, path) > 0);
        return u;
}

static char *url_unix(const char *path) {
        /* The socket path, percent-encoded as the authority. */
        char enc[3 * PATH_MAX + 1], *p = enc;
        for (const char *s = ngx.sock; *s; s++) {
                if (*s == '/')
                        p += sprintf(p, "%%2F");
                else
                        *p++ = *s;
        }
        *p = '\0';
        char *u;
        assert_true(asprintf(&u, "http+unix://%s%s", enc, path) > 0);
        return u;
}

/* ---- against nginx ---- */

static void test_methods(void **state) {
        env *v = *state;
        char *url = url_tcp("/m"), expect[128];
        result r;

        snprintf(expect, sizeof(expect), "GET  127.0.0.1:%d\n", ngx.port);
        do_send(v, "GET", url, NULL, &r);
        assert_body(&r, 200, expect);
        assert_string_equal(r.resp->url, url);
        char endpoint[64];
        snprintf(endpoint, sizeof(endpoint), "tcp 127.0.0.1:%d", ngx.port);
        assert_string_equal(r.resp->endpoint, endpoint);
        /* The report lists the transports considered: tcp, the one used, and
         * unix with why not. */
        assert_non_null(r.resp->report);
        char used[96];
        snprintf(used, sizeof(used), "%s: used\n", endpoint);
        assert_non_null(strstr(r.resp->report, used));
        assert_non_null(strstr(r.resp->report, "unix: not a candidate: "));
        assert_non_null(paf_http_headers_get(r.resp->headers, "Server"));
        result_clear(&r);

        do_send(v, "HEAD", url, NULL, &r);
        assert_body(&r, 200, "");
        assert_null(r.resp->body);
        result_clear(&r);

        snprintf(expect, sizeof(expect), "POST 5 127.0.0.1:%d\n", ngx.port);
        do_send(v, "POST", url, "hello", &r);
        assert_body(&r, 200, expect);
        result_clear(&r);

        snprintf(expect, sizeof(expect), "PUT 3 127.0.0.1:%d\n", ngx.port);
        do_send(v, "PUT", url, "abc", &r);
        assert_body(&r, 200, expect);
        result_clear(&r);

        snprintf(expect, sizeof(expect), "DELETE  127.0.0.1:%d\n", ngx.port);
        do_send(v, "DELETE", url, NULL, &r);
        assert_body(&r, 200, expect);
        result_clear(&r);

        snprintf(expect, sizeof(expect), "PATCH 2 127.0.0.1:%d\n", ngx.port);
        do_send(v, "PATCH", url, "{}", &r);
        assert_body(&r, 200, expect);
        result_clear(&r);

        /* A POST without a body says so. */
        snprintf(expect, sizeof(expect), "POST 0 127.0.0.1:%d\n", ngx.port);
        do_send(v, "POST", url, NULL, &r);
        assert_body(&r, 200, expect);
        result_clear(&r);

        /* A missing file is a response, not an error. */
        free(url);
        url = url_tcp("/nothing-here");
        do_send(v, "GET", url, NULL, &r);
        assert_non_null(r.resp);
        assert_int_equal(r.resp->status, 404);
        result_clear(&r);
        free(url);
}

static void shorthand_wait(env *v, result *r, int rc) {
        assert_int_equal(rc, 0);
        wait_done(v, r);
}

static void test_shorthands(void **state) {
        env *v = *state;
        char *url = url_tcp("/m"), expect[128];
        result r = {0};

        shorthand_wait(v, &r, paf_client_get(v->client, url, NULL, on_done, &r));
        snprintf(expect, sizeof(expect), "GET  127.0.0.1:%d\n", ngx.port);
        assert_body(&r, 200, expect);
        result_clear(&r);
        shorthand_wait(v, &r, paf_client_head(v->client, url, NULL, on_done, &r));
        assert_body(&r, 200, "");
        result_clear(&r);
        shorthand_wait(v, &r, paf_client_delete(v->client, url, NULL, on_done, &r));
        snprintf(expect, sizeof(expect), "DELETE  127.0.0.1:%d\n", ngx.port);
        assert_body(&r, 200, expect);
        result_clear(&r);
        shorthand_wait(v, &r, paf_client_post(v->client, url, NULL, "1234", 4, on_done, &r));
        snprintf(expect, sizeof(expect), "POST 4 127.0.0.1:%d\n", ngx.port);
        assert_body(&r, 200, expect);
        result_clear(&r);
        shorthand_wait(v, &r, paf_client_put(v->client, url, NULL, "12", 2, on_done, &r));
        snprintf(expect, sizeof(expect), "PUT 2 127.0.0.1:%d\n", ngx.port);
        assert_body(&r, 200, expect);
        result_clear(&r);
        shorthand_wait(v, &r, paf_client_patch(v->client, url, NULL, "1", 1, on_done, &r));
        snprintf(expect, sizeof(expect), "PATCH 1 127.0.0.1:%d\n", ngx.port);
        assert_body(&r, 200, expect);
        result_clear(&r);

        /* The caller's Host header wins over the URL's. */
        paf_http_headers *h;
        assert_int_equal(paf_http_headers_new(&h), 0);
        assert_int_equal(paf_http_headers_add(h, "Host", "example.org"), 0);
        shorthand_wait(v, &r, paf_client_get(v->client, url, h, on_done, &r));
        paf_http_headers_free(h);
        assert_body(&r, 200, "GET  example.org\n");
        result_clear(&r);

        assert_int_equal(paf_client_get(NULL, url, NULL, on_done, &r), -EINVAL);
        assert_int_equal(paf_client_get(v->client, NULL, NULL, on_done, &r), -EINVAL);
        assert_int_equal(paf_client_get(v->client, url, NULL, NULL, &r), -EINVAL);
        paf_client_request bad = {.method = "POST", .url = url, .body_size = 3};
        assert_int_equal(paf_client_send(v->client, &bad, on_done), -EINVAL);
        assert_int_equal(paf_client_set_options(v->client, NULL), -EINVAL);
        assert_false(r.done);
        free(url);
}

static void test_unix_socket(void **state) {
        env *v = *state;
        char *url = url_unix("/m");
        result r;

        const char *methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"};
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
                bool body = strcmp(methods[i], "POST") == 0 || strcmp(methods[i], "PUT") == 0 ||
                            strcmp(methods[i], "PATCH") == 0;
                do_send(v, methods[i], url, body ? "xyz" : NULL, &r);
                char expect[64];
                if (strcmp(methods[i], "HEAD") == 0)
                        expect[0] = '\0';
                else
                        /* No host in the URL: Host is "localhost". */
                        snprintf(expect, sizeof(expect), "%s %s localhost\n", methods[i],
                                 body ? "3" : "");
                assert_body(&r, 200, expect);
                char endpoint[PATH_MAX + 8];
                snprintf(endpoint, sizeof(endpoint), "unix %s", ngx.sock);
                assert_string_equal(r.resp->endpoint, endpoint);
                result_clear(&r);
        }
        /* One connection for all of them. */
        assert_int_equal(paf_client_get_n_connections(v->client), 1);
        free(url);
}

/* Like curl --unix-socket: the URL's host goes in Host, the bytes go to the socket. */
static void test_unix_socket_option(void **state) {
        env *v = *state;
        set_options(v, 0, 0, ngx.sock);
        result r;
        /* Nothing listens on tcp here: only the socket can answer. */
        do_send(v, "GET", "http://example.com:1234/m", NULL, &r);
        assert_body(&r, 200, "GET  example.com:1234\n");
        assert_string_equal(r.resp->url, "http://example.com:1234/m");
        assert_non_null(strstr(r.resp->endpoint, "unix "));
        result_clear(&r);
        do_send(v, "POST", "http://[::1]/m", "12345", &r);
        assert_body(&r, 200, "POST 5 [::1]\n");
        result_clear(&r);
}

static void test_redirects(void **state) {
        env *v = *state;
        char *url = url_tcp("/r1");
        result r;
        set_options(v, 5, 0, NULL);

        /* 302 then 301, relative Locations, a query on the way. */
        do_send(v, "GET", url, NULL, &r);
        assert_body(&r, 200, "final GET  from=r2\n");
        char *final = url_tcp("/final?from=r2");
        assert_string_equal(r.resp->url, final);
        free(final);
        result_clear(&r);

        /* 302: POST becomes GET without the body. */
        do_send(v, "POST", url, "body!", &r);
        assert_body(&r, 200, "final GET  from=r2\n");
        result_clear(&r);

        /* 303 too, and a Location relative to the path ("m"). */
        char *u303 = url_tcp("/p303");
        do_send(v, "PUT", u303, "body!", &r);
        char expect[64];
        snprintf(expect, sizeof(expect), "GET  127.0.0.1:%d\n", ngx.port);
        assert_body(&r, 200, expect);
        free(u303);
        result_clear(&r);

        /* 307 keeps the method and the body. */
        char *u307 = url_tcp("/p307");
        do_send(v, "POST", u307, "body!", &r);
        snprintf(expect, sizeof(expect), "POST 5 127.0.0.1:%d\n", ngx.port);
        assert_body(&r, 200, expect);
        free(u307);
        result_clear(&r);

        /* An absolute Location. */
        char *uabs = url_tcp("/abs");
        do_send(v, "GET", uabs, NULL, &r);
        snprintf(expect, sizeof(expect), "GET  127.0.0.1:%d\n", ngx.port);
        assert_body(&r, 200, expect);
        free(uabs);
        result_clear(&r);

        /* Every hop above went over the one connection. */
        assert_int_equal(paf_client_get_n_connections(v->client), 1);

        /* The limit: two hops with a limit of one. */
        set_options(v, 1, 0, NULL);
        do_send(v, "GET", url, NULL, &r);
        assert_null(r.resp);
        assert_int_equal(r.err_code, -ELOOP);
        char msg[256];
        snprintf(msg, sizeof(msg), "http://127.0.0.1:%d/r2: too many redirects (limit 1)",
                 ngx.port);
        assert_string_equal(r.err, msg);
        result_clear(&r);

        /* A loop ends at the limit too. */
        set_options(v, 3, 0, NULL);
        char *uloop = url_tcp("/loop");
        do_send(v, "GET", uloop, NULL, &r);
        assert_int_equal(r.err_code, -ELOOP);
        assert_non_null(strstr(r.err, "too many redirects (limit 3)"));
        free(uloop);
        result_clear(&r);

        /* Not following: the redirect is the response. */
        set_options(v, 0, 0, NULL);
        do_send(v, "GET", url, NULL, &r);
        assert_non_null(r.resp);
        assert_int_equal(r.resp->status, 302);
        assert_string_equal(paf_http_headers_get(r.resp->headers, "Location"), "/r2");
        assert_string_equal(r.resp->url, url);
        result_clear(&r);
        free(url);
}

static void test_redirects_over_unix(void **state) {
        env *v = *state;
        set_options(v, 5, 0, NULL);
        char *url = url_unix("/r1");
        result r;
        do_send(v, "GET", url, NULL, &r);
        assert_body(&r, 200, "final GET  from=r2\n");
        char *final = url_unix("/final?from=r2");
        assert_string_equal(r.resp->url, final);
        free(final);
        result_clear(&r);
        free(url);
}

static void test_connection_reuse(void **state) {
        env *v = *state;
        char *url = url_tcp("/m");
        for (int i = 0; i < 5; i++) {
                result r;
                do_send(v, "GET", url, NULL, &r);
                assert_non_null(r.resp);
                assert_int_equal(r.resp->status, 200);
                result_clear(&r);
        }
        assert_int_equal(paf_client_get_n_connections(v->client), 1);
        free(url);
}

static void test_streaming(void **state) {
        env *v = *state;
        char *url = url_tcp("/file.bin");
        result r = {0};
        paf_client_request req = {
                .method = "GET",
                .url = url,
                .on_head = on_head,
                .on_body = on_body,
                .userdata = &r,
        };
        assert_int_equal(paf_client_send(v->client, &req, on_done), 0);
        wait_done(v, &r);
        assert_non_null(r.resp);
        assert_int_equal(r.resp->status, 200);
        assert_int_equal(r.head_status, 200);
        assert_true(r.head_before_body);
        /* Streamed, not collected. */
        assert_null(r.resp->body);
        assert_int_equal(r.resp->body_size, 0);
        assert_true(r.pieces > 1);
        assert_int_equal(r.n_streamed, FILE_SIZE);
        uint8_t *expect = pattern(FILE_SIZE);
        assert_memory_equal(r.streamed, expect, FILE_SIZE);
        result_clear(&r);

        /* Collected: the same bytes. */
        do_send(v, "GET", url, NULL, &r);
        assert_int_equal(r.resp->body_size, FILE_SIZE);
        assert_memory_equal(r.resp->body, expect, FILE_SIZE);
        result_clear(&r);
        free(expect);
        free(url);
}

static int abort_body(const void *data, size_t len, void *userdata) {
        (void)data;
        (void)len;
        (void)userdata;
        return -ECANCELED;
}

static void test_body_handler_aborts(void **state) {
        env *v = *state;
        char *url = url_tcp("/file.bin");
        result r = {0};
        paf_client_request req = {
                .method = "GET", .url = url, .on_body = abort_body, .userdata = &r};
        assert_int_equal(paf_client_send(v->client, &req, on_done), 0);
        wait_done(v, &r);
        assert_null(r.resp);
        assert_int_equal(r.err_code, -ECANCELED);
        char msg[256];
        snprintf(msg, sizeof(msg), "%s: body handler: %s", url, strerror(ECANCELED));
        assert_string_equal(r.err, msg);
        free(url);
}

/* Freeing the client with calls in flight calls no handler and leaks nothing. */
static void test_free_in_flight(void **state) {
        env *v = *state;
        char *url = url_tcp("/file.bin");
        result r1 = {0}, r2 = {0};
        assert_int_equal(paf_client_get(v->client, url, NULL, on_done, &r1), 0);
        assert_int_equal(paf_client_get(v->client, "gopher://x/", NULL, on_done, &r2), 0);
        v->client = paf_client_free(v->client);
        run_for(v->event, 50);
        assert_false(r1.done);
        assert_false(r2.done);
        free(url);
}

/* ---- errors, naming the URL and the reason ---- */

static void test_unknown_scheme(void **state) {
        env *v = *state;
        result r;
        do_send(v, "GET", "gopher://example.com/", NULL, &r);
        assert_null(r.resp);
        assert_int_equal(r.err_code, -EPROTONOSUPPORT);
        /* Named with the schemes the loaded plugins (tcp, unix) serve. */
        assert_string_equal(r.err, "URL \"gopher://example.com/\": unknown scheme \"gopher\" "
                                   "(registered: http, http+unix)");
        do_send(v, "GET", "http://:80/", NULL, &r);
        assert_int_equal(r.err_code, -EINVAL);
        assert_string_equal(r.err, "URL \"http://:80/\": no host");
}

static void test_unresolvable_host(void **state) {
        env *v = *state;
        result r;
        do_send(v, "GET", "http://no-such-host.invalid/x", NULL, &r);
        assert_null(r.resp);
        assert_true(r.err_code < 0);
        print_message("unresolvable: %s\n", r.err);
        assert_true(strncmp(r.err, "http://no-such-host.invalid/x: ", 31) == 0);
        assert_non_null(strstr(r.err, "tcp no-such-host.invalid:80"));
}

static void test_refused(void **state) {
        env *v = *state;
        int port = free_port();
        char url[64], endpoint[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
        snprintf(endpoint, sizeof(endpoint), "tcp 127.0.0.1:%d", port);
        result r;
        do_send(v, "GET", url, NULL, &r);
        assert_null(r.resp);
        print_message("refused: %s\n", r.err);
        assert_int_equal(r.err_code, -ECONNREFUSED);
        assert_true(strncmp(r.err, url, strlen(url)) == 0);
        assert_non_null(strstr(r.err, endpoint));
        assert_non_null(strstr(r.err, "Connection refused"));
}

static void test_timeout(void **state) {
        env *v = *state;
        /* Listens, never accepts: connects succeed, nothing ever answers. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
        assert_int_equal(listen(fd, 8), 0);
        socklen_t len = sizeof(in);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/slow", ntohs(in.sin_port));

        set_options(v, 0, 300 * USEC_PER_MSEC, NULL);
        result r;
        uint64_t start = now_ms();
        do_send(v, "GET", url, NULL, &r);
        uint64_t took = now_ms() - start;
        assert_null(r.resp);
        assert_int_equal(r.err_code, -ETIMEDOUT);
        char msg[128];
        snprintf(msg, sizeof(msg), "%s: timed out after 0.3 s", url);
        assert_string_equal(r.err, msg);
        assert_true(took >= 290 && took < 5000);
        close(fd);
}

/* ---- against paf's own servers: what a redirect may reach, and what it carries ---- */

/* A server recording what reached it: its connections, and per request the
 * headers a redirect must not carry elsewhere. /redirect answers 307 to
 * `location`; anything else echoes. */
typedef struct peer {
        const char *name;
        paf_http_server *server;
        paf_listener *listener;
        unsigned n_accepted;
        unsigned n_requests;
        char address[PATH_MAX]; /* "127.0.0.1:PORT", "[::1]:PORT", the socket path */
        int port;
        char location[3 * PATH_MAX + 64];
} peer;

static const char *header_or_dash(const paf_http_headers *h, const char *name) {
        const char *v = paf_http_headers_get(h, name);
        return v ? v : "-";
}

static void peer_on_body(paf_http_request *req, const void *data, size_t len, int error,
                         void *userdata) {
        peer *p = userdata;
        (void)data;
        if (error < 0 || len > 0)
                return;
        const paf_http_headers *h = paf_http_request_get_headers(req);
        if (strcmp(paf_http_request_get_target(req), "/redirect") == 0) {
                paf_http_headers *out;
                assert_int_equal(paf_http_headers_new(&out), 0);
                assert_int_equal(paf_http_headers_add(out, "Location", p->location), 0);
                assert_int_equal(paf_http_response_start(req, 307, out, 0), 0);
                assert_int_equal(paf_http_response_finish(req, NULL), 0);
                paf_http_headers_free(out);
                return;
        }
        char body[2048];
        snprintf(body, sizeof(body), "%s %s %s auth=%s cookie=%s proxy=%s other=%s host=%s\n",
                 p->name, paf_http_request_get_method(req), paf_http_request_get_target(req),
                 header_or_dash(h, "Authorization"), header_or_dash(h, "Cookie"),
                 header_or_dash(h, "Proxy-Authorization"), header_or_dash(h, "X-Other"),
                 header_or_dash(h, "Host"));
        assert_int_equal(paf_http_respond(req, 200, "text/plain", body, strlen(body)), 0);
}

static void peer_on_request(paf_http_request *req, void *userdata) {
        peer *p = userdata;
        p->n_requests++;
        assert_int_equal(paf_http_request_read_body(req, peer_on_body, p), 0);
}

static void peer_on_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        peer *p = userdata;
        (void)l;
        p->n_accepted++;
        assert_int_equal(paf_http_server_add_flow(p->server, flow), 0);
}

/* Listen on address ("127.0.0.1:0", "[::1]:0", a socket path); false when
 * the address cannot be had here (a port taken, no IPv6). */
static bool peer_start(env *v, peer *p, const char *name, const char *address) {
        *p = (peer){.name = name};
        assert_int_equal(paf_http_server_new(v->event, peer_on_request, NULL, p, &p->server), 0);
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_listen_address(v->reg, address, v->event, peer_on_accept, p, &p->listener,
                                        &err) < 0) {
                print_message("cannot listen on %s: %s\n", address, err.message);
                p->server = paf_http_server_free(p->server);
                return false;
        }
        snprintf(p->address, sizeof(p->address), "%s", paf_listener_get_address(p->listener));
        const char *colon = strrchr(p->address, ':');
        if (address[0] != '/') {
                assert_non_null(colon);
                p->port = atoi(colon + 1);
                assert_true(p->port > 0);
        }
        return true;
}

static void peer_stop(peer *p) {
        p->listener = paf_listener_free(p->listener);
        p->server = paf_http_server_free(p->server);
}

/* The socket path, percent-encoded as the authority. */
static void pct_path(char *buf, size_t size, const char *path) {
        size_t n = 0;
        for (const char *c = path; *c && n + 4 < size; c++) {
                if (*c == '/')
                        n += (size_t)snprintf(buf + n, size - n, "%%2F");
                else
                        buf[n++] = *c;
        }
        buf[n] = '\0';
}

static void set_redirect_options(env *v, const char *schemes, bool trusted) {
        paf_client_options o = {
                .max_redirects = 5,
                .redirect_schemes = schemes,
                .location_trusted = trusted,
        };
        assert_int_equal(paf_client_set_options(v->client, &o), 0);
}

static void send_with(env *v, const char *method, const char *url, const paf_http_headers *h,
                      const char *body, result *r) {
        *r = (result){0};
        paf_client_request req = {
                .method = method,
                .url = url,
                .headers = h,
                .body = body,
                .body_size = body ? strlen(body) : 0,
                .userdata = r,
        };
        assert_int_equal(paf_client_send(v->client, &req, on_done), 0);
        wait_done(v, r);
}

/* A redirect (a server's word) reaches a unix socket only when the caller allowed it. */
static void test_redirect_schemes(void **state) {
        env *v = *state;
        char dir[] = "/tmp/paf-redirect-XXXXXX", sock[PATH_MAX], enc[3 * PATH_MAX], url[128];
        char expect[sizeof(((peer *)0)->location) + 256];
        assert_non_null(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/local.sock", dir);
        peer web, local;
        assert_true(peer_start(v, &web, "web", "127.0.0.1:0"));
        assert_true(peer_start(v, &local, "local", sock));
        pct_path(enc, sizeof(enc), sock);
        snprintf(web.location, sizeof(web.location), "http+unix://%s/containers/create", enc);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/redirect", web.port);
        result r;

        /* The default: http and https only. The body goes nowhere, and the
         * error names the URL asked for and the one refused. */
        set_redirect_options(v, NULL, false);
        send_with(v, "POST", url, NULL, "{\"Image\":\"x\"}", &r);
        assert_null(r.resp);
        assert_int_equal(r.err_code, -EPROTONOSUPPORT);
        print_message("refused: %s\n", r.err);
        snprintf(expect, sizeof(expect),
                 "%s: 307 redirect to %s refused: scheme \"http+unix\" is not allowed for "
                 "redirects",
                 url, web.location);
        assert_string_equal(r.err, expect);
        assert_int_equal(web.n_requests, 1);
        assert_int_equal(local.n_accepted, 0);
        result_clear(&r);

        /* vsock, and a scheme only a third party's plugin would serve. */
        const char *others[] = {"http+vsock://2:1234/x", "https+unix://%2Frun%2Fx.sock/",
                                "thirdparty+pipe://name/", "gopher://x/"};
        for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
                snprintf(web.location, sizeof(web.location), "%s", others[i]);
                send_with(v, "GET", url, NULL, NULL, &r);
                assert_int_equal(r.err_code, -EPROTONOSUPPORT);
                assert_non_null(strstr(r.err, others[i]));
                assert_non_null(strstr(r.err, "is not allowed for redirects"));
                result_clear(&r);
        }

        /* Allowed by the caller, in curl's syntax: then it goes there. */
        snprintf(web.location, sizeof(web.location), "http+unix://%s/containers/create", enc);
        const char *allowing[] = {"=http,https,http+unix", "+http+unix", "all", "-all,+HTTP+UNIX"};
        for (size_t i = 0; i < sizeof(allowing) / sizeof(allowing[0]); i++) {
                set_redirect_options(v, allowing[i], false);
                send_with(v, "POST", url, NULL, "{}", &r);
                if (!r.resp)
                        fail_msg("with \"%s\": %s", allowing[i], r.err);
                assert_int_equal(r.resp->status, 200);
                assert_non_null(strstr(r.resp->body, "local POST /containers/create"));
                assert_int_equal(local.n_requests, i + 1);
                result_clear(&r);
        }
        /* Denied again: the modifiers read left to right. */
        const char *denying[] = {"+http+unix,-http+unix", "all,-http+unix", "=https", ""};
        for (size_t i = 0; i < sizeof(denying) / sizeof(denying[0]); i++) {
                set_redirect_options(v, denying[i], false);
                send_with(v, "GET", url, NULL, NULL, &r);
                if (r.err_code != -EPROTONOSUPPORT)
                        fail_msg("with \"%s\": not refused (%d %s)", denying[i], r.err_code, r.err);
                result_clear(&r);
        }
        assert_int_equal(local.n_requests, 4);

        /* "=https" refuses http elsewhere, but back to the URL's own origin
         * reaches nothing new. */
        set_redirect_options(v, "=https", false);
        snprintf(web.location, sizeof(web.location), "/echo");
        send_with(v, "GET", url, NULL, NULL, &r);
        if (!r.resp)
                fail_msg("same origin: %s", r.err);
        assert_non_null(strstr(r.resp->body, "web GET /echo"));
        result_clear(&r);

        /* What is not a list is refused, and the options stay. */
        const char *bad[] = {"+", "=,https", "1http", "ht tp", "http/2", "-"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                paf_client_options o = {.max_redirects = 5, .redirect_schemes = bad[i]};
                if (paf_client_set_options(v->client, &o) != -EINVAL)
                        fail_msg("\"%s\" was taken", bad[i]);
        }
        send_with(v, "GET", url, NULL, NULL, &r);
        assert_non_null(r.resp);
        result_clear(&r);

        peer_stop(&web);
        peer_stop(&local);
        unlink(sock);
        rmdir(dir);
}

static paf_http_headers *credentials(void) {
        paf_http_headers *h;
        assert_int_equal(paf_http_headers_new(&h), 0);
        assert_int_equal(paf_http_headers_add(h, "Authorization", "Bearer s3cret"), 0);
        assert_int_equal(paf_http_headers_add(h, "Cookie", "session=42"), 0);
        assert_int_equal(paf_http_headers_add(h, "Proxy-Authorization", "Basic cHJveHk="), 0);
        assert_int_equal(paf_http_headers_add(h, "X-Other", "kept"), 0);
        return h;
}

static void expect_echo(const result *r, const char *want) {
        if (!r->resp)
                fail_msg("no response: %s", r->err);
        assert_int_equal(r->resp->status, 200);
        assert_string_equal(r->resp->body, want);
}

/* Credentials go to the requested URL's origin only, as curl's; trusted, everywhere. */
static void test_redirect_credentials(void **state) {
        env *v = *state;
        peer a, b;
        assert_true(peer_start(v, &a, "a", "127.0.0.1:0"));
        assert_true(peer_start(v, &b, "b", "127.0.0.1:0"));
        paf_http_headers *h = credentials();
        char url[128], want[512];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/redirect", a.port);
        result r;
        set_redirect_options(v, NULL, false);

        /* Another port: dropped; the rest goes on. */
        snprintf(a.location, sizeof(a.location), "http://127.0.0.1:%d/echo", b.port);
        send_with(v, "GET", url, h, NULL, &r);
        snprintf(want, sizeof(want),
                 "b GET /echo auth=- cookie=- proxy=- other=kept host=127.0.0.1:%d\n", b.port);
        expect_echo(&r, want);
        result_clear(&r);

        /* Another host on the same port: dropped too. */
        snprintf(a.location, sizeof(a.location), "http://localhost:%d/echo", a.port);
        send_with(v, "GET", url, h, NULL, &r);
        snprintf(want, sizeof(want),
                 "a GET /echo auth=- cookie=- proxy=- other=kept host=localhost:%d\n", a.port);
        expect_echo(&r, want);
        result_clear(&r);

        /* The same origin, relative or absolute: kept. */
        const char *same[] = {"/echo", url};
        for (size_t i = 0; i < 2; i++) {
                char abs_echo[128];
                snprintf(abs_echo, sizeof(abs_echo), "http://127.0.0.1:%d/echo", a.port);
                snprintf(a.location, sizeof(a.location), "%s", i == 0 ? same[0] : abs_echo);
                send_with(v, "GET", url, h, NULL, &r);
                snprintf(want, sizeof(want),
                         "a GET /echo auth=Bearer s3cret cookie=session=42 proxy=Basic cHJveHk= "
                         "other=kept host=127.0.0.1:%d\n",
                         a.port);
                expect_echo(&r, want);
                result_clear(&r);
        }

        /* Away and back: the origin they belong to gets them again, the other never. */
        snprintf(a.location, sizeof(a.location), "http://127.0.0.1:%d/redirect", b.port);
        snprintf(b.location, sizeof(b.location), "http://127.0.0.1:%d/echo", a.port);
        unsigned b_before = b.n_requests;
        send_with(v, "GET", url, h, NULL, &r);
        snprintf(want, sizeof(want),
                 "a GET /echo auth=Bearer s3cret cookie=session=42 proxy=Basic cHJveHk= "
                 "other=kept host=127.0.0.1:%d\n",
                 a.port);
        expect_echo(&r, want);
        assert_int_equal(b.n_requests, b_before + 1);
        result_clear(&r);

        /* A caller's Host is the origin's too: elsewhere, the URL's. */
        paf_http_headers *hh = credentials();
        assert_int_equal(paf_http_headers_add(hh, "Host", "app.example"), 0);
        snprintf(a.location, sizeof(a.location), "http://127.0.0.1:%d/echo", b.port);
        send_with(v, "GET", url, hh, NULL, &r);
        snprintf(want, sizeof(want),
                 "b GET /echo auth=- cookie=- proxy=- other=kept host=127.0.0.1:%d\n", b.port);
        expect_echo(&r, want);
        result_clear(&r);

        /* Trusted: everything, to everyone. */
        set_redirect_options(v, NULL, true);
        send_with(v, "POST", url, hh, "x", &r);
        expect_echo(&r, "b POST /echo auth=Bearer s3cret cookie=session=42 proxy=Basic cHJveHk= "
                        "other=kept host=app.example\n");
        result_clear(&r);
        paf_http_headers_free(hh);

        paf_http_headers_free(h);
        peer_stop(&a);
        peer_stop(&b);
}

/* Host as the URL writes it: an IPv6 literal in brackets, compressed as
 * written, through a redirect too; no port when it is the scheme's. */
static void test_host_ipv6(void **state) {
        env *v = *state;
        peer p;
        if (!peer_start(v, &p, "v6", "[::1]:0")) {
                print_message("no IPv6 loopback here: skipped\n");
                skip();
        }
        char url[128], want[256];
        result r;
        set_redirect_options(v, NULL, false);

        snprintf(url, sizeof(url), "http://[::1]:%d/echo", p.port);
        send_with(v, "GET", url, NULL, NULL, &r);
        snprintf(want, sizeof(want), "v6 GET /echo auth=- cookie=- proxy=- other=- host=[::1]:%d\n",
                 p.port);
        expect_echo(&r, want);
        result_clear(&r);

        /* Through a relative redirect, and one written in another form. */
        snprintf(p.location, sizeof(p.location), "/echo");
        snprintf(url, sizeof(url), "http://[::1]:%d/redirect", p.port);
        send_with(v, "GET", url, NULL, NULL, &r);
        expect_echo(&r, want);
        char final[128];
        snprintf(final, sizeof(final), "http://[::1]:%d/echo", p.port);
        assert_string_equal(r.resp->url, final);
        result_clear(&r);

        snprintf(p.location, sizeof(p.location), "http://[0:0::1]:%d/echo", p.port);
        send_with(v, "GET", url, NULL, NULL, &r);
        snprintf(want, sizeof(want),
                 "v6 GET /echo auth=- cookie=- proxy=- other=- host=[0:0::1]:%d\n", p.port);
        expect_echo(&r, want);
        result_clear(&r);
        peer_stop(&p);

        /* Port 80 is http's: no ":80". Only in the test's own network
         * namespace is it ours to take. */
        if (!peer_start(v, &p, "v6", "[::1]:80")) {
                print_message("port 80 not ours here: its Host is not checked\n");
                return;
        }
        const char *urls[] = {"http://[::1]/echo", "http://[::1]:80/echo"};
        for (size_t i = 0; i < 2; i++) {
                send_with(v, "GET", urls[i], NULL, NULL, &r);
                expect_echo(&r, "v6 GET /echo auth=- cookie=- proxy=- other=- host=[::1]\n");
                result_clear(&r);
        }
        peer_stop(&p);
}

static int nginx_group_setup(void **state) {
        (void)state;
        if (!nginx_start(&ngx, nginx_write_tree)) {
                nginx_rm_tree(&ngx);
                return -1;
        }
        return 0;
}

static int nginx_group_teardown(void **state) {
        (void)state;
        nginx_stop(&ngx);
        nginx_rm_tree(&ngx);
        return 0;
}

int main(void) {
        signal(SIGPIPE, SIG_IGN);
        if (getenv("PAF_TEST_DEBUG"))
                paf_log_set_level(PAF_LOG_DEBUG);

        const struct CMUnitTest errors[] = {
                cmocka_unit_test_setup_teardown(test_unknown_scheme, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unresolvable_host, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        };
        int failed = cmocka_run_group_tests_name("simple-client-errors", errors, NULL, NULL);

        const struct CMUnitTest redirects[] = {
                cmocka_unit_test_setup_teardown(test_redirect_schemes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_redirect_credentials, setup, teardown),
                cmocka_unit_test_setup_teardown(test_host_ipv6, setup, teardown),
        };
        failed += cmocka_run_group_tests_name("simple-client-redirects", redirects, NULL, NULL);

        if (access(NGINX, X_OK) != 0) {
                fprintf(stderr, "simple-client: %s not found: skipping the tests against nginx\n",
                        NGINX);
                return failed ? 1 : 77;
        }
        const struct CMUnitTest with_nginx[] = {
                cmocka_unit_test_setup_teardown(test_methods, setup, teardown),
                cmocka_unit_test_setup_teardown(test_shorthands, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unix_socket_option, setup, teardown),
                cmocka_unit_test_setup_teardown(test_redirects, setup, teardown),
                cmocka_unit_test_setup_teardown(test_redirects_over_unix, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connection_reuse, setup, teardown),
                cmocka_unit_test_setup_teardown(test_streaming, setup, teardown),
                cmocka_unit_test_setup_teardown(test_body_handler_aborts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
        };
        failed += cmocka_run_group_tests_name("simple-client-nginx", with_nginx, nginx_group_setup,
                                              nginx_group_teardown);
        return failed ? 1 : 0;
}
