/* tests/http/test-simple-client.c — paf_client: URLs against nginx over TCP and a unix socket,
 * redirects, reuse, streaming, and the errors naming the URL. */
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
        /* The report lists the transports considered: tcp, and unix with why not. */
        assert_non_null(r.resp->report);
        assert_non_null(strstr(r.resp->report, endpoint));
        assert_non_null(strstr(r.resp->report, "unix"));
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
        assert_string_equal(r.err, "URL \"gopher://example.com/\": unknown scheme \"gopher\"");
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
