/* tests/http/test-https-client.c — the HTTP client through tls.so against nginx with TLS on
 * loopback: a verified exchange, refusals that say why (unknown issuer, name mismatch, expired
 * certificate), and kept-alive connections that only carry calls to their own endpoint and
 * settings. */
#include <arpa/inet.h>
#include <dlfcn.h>
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
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>
#include <paf/http.h>

#include "../common/nginx.h"
#include "../common/paf-test.h"

#define FILE_SIZE (300 * 1024 + 17)

/* ---- nginx with TLS, and its certificates ---- */

typedef struct tls_nginx {
        pid_t pid;
        int port;         /* the CA's certificate for localhost and 127.0.0.1; also a.sock */
        int expired_port; /* an expired certificate for localhost */
        int other_port;   /* another server, the rogue CA's certificate; also b.sock */
        char dir[256];
} tls_nginx;

static tls_nginx ngx;

static uint8_t *pattern(size_t len, uint32_t seed) {
        uint8_t *p = malloc(len);
        assert_non_null(p);
        uint32_t x = seed;
        for (size_t i = 0; i < len; i++) {
                x = x * 1103515245 + 12345;
                p[i] = (uint8_t)(x >> 16);
        }
        return p;
}

static void path_in(char *buf, size_t size, const char *name) {
        snprintf(buf, size, "%s/%s", ngx.dir, name);
}

/* The certificates, by the same certtool helpers as test-https.sh. */
static void make_certs(void) {
        const char *src = getenv("PAF_TEST_SRCDIR");
        assert_non_null(src);
        char cmd[3 * PATH_MAX];
        snprintf(cmd, sizeof(cmd),
                 "set -e; . '%1$s/tests/http/https-certs.sh'; d='%2$s/certs'; mkdir \"$d\"; "
                 "https_ca \"$d\" ca; https_ca \"$d\" rogue; "
                 "https_cert \"$d\" good ca localhost localhost 127.0.0.1; "
                 "https_cert \"$d\" expired ca localhost localhost 127.0.0.1 --expired; "
                 "https_cert \"$d\" other rogue localhost localhost 127.0.0.1; "
                 "https_cert \"$d\" client ca 'paf client' --client; "
                 "cat \"$d/ca.pem\" \"$d/rogue.pem\" >\"$d/both.pem\"; "
                 "chmod 0644 \"$d\"/*",
                 src, ngx.dir);
        assert_int_equal(system(cmd), 0);
}

static void write_tree(void) {
        char path[PATH_MAX];
        const char *dirs[] = {"www", "tmp", "logs"};
        for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
                path_in(path, sizeof(path), dirs[i]);
                assert_int_equal(mkdir(path, 0755), 0);
        }
        uint8_t *data = pattern(FILE_SIZE, 7);
        path_in(path, sizeof(path), "www/file.bin");
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, FILE_SIZE, f), FILE_SIZE);
        assert_int_equal(fclose(f), 0);
        free(data);
        assert_int_equal(chmod(ngx.dir, 0755), 0);

        path_in(path, sizeof(path), "nginx.conf");
        f = fopen(path, "we");
        assert_non_null(f);
        fprintf(f,
                "daemon off;\n"
                "master_process off;\n"
                "worker_processes 1;\n"
                "pid %1$s/nginx.pid;\n"
                "error_log %1$s/logs/error.log info;\n"
                "events { worker_connections 64; }\n"
                "http {\n"
                "  access_log off;\n"
                "  client_body_temp_path %1$s/tmp;\n"
                "  proxy_temp_path %1$s/tmp;\n"
                "  fastcgi_temp_path %1$s/tmp;\n"
                "  uwsgi_temp_path %1$s/tmp;\n"
                "  scgi_temp_path %1$s/tmp;\n"
                "  default_type application/octet-stream;\n"
                "  ssl_protocols TLSv1.2 TLSv1.3;\n"
                "  server {\n"
                "    listen 127.0.0.1:%2$d ssl;\n"
                "    listen unix:%1$s/a.sock ssl;\n"
                "    ssl_certificate %1$s/certs/good.pem;\n"
                "    ssl_certificate_key %1$s/certs/good.key;\n"
                "    ssl_client_certificate %1$s/certs/ca.pem;\n"
                "    ssl_verify_client optional;\n"
                "    root %1$s/www;\n"
                "    location = /proto { return 200 \"$ssl_protocol $ssl_server_name\"; }\n"
                "    location = /who { return 200 \"good client=$ssl_client_s_dn\"; }\n"
                "  }\n"
                "  server {\n"
                "    listen 127.0.0.1:%4$d ssl;\n"
                "    listen unix:%1$s/b.sock ssl;\n"
                "    ssl_certificate %1$s/certs/other.pem;\n"
                "    ssl_certificate_key %1$s/certs/other.key;\n"
                "    location = /who { return 200 \"other client=$ssl_client_s_dn\"; }\n"
                "  }\n"
                "  server {\n"
                "    listen 127.0.0.1:%3$d ssl;\n"
                "    ssl_certificate %1$s/certs/expired.pem;\n"
                "    ssl_certificate_key %1$s/certs/expired.key;\n"
                "    root %1$s/www;\n"
                "  }\n"
                "}\n",
                ngx.dir, ngx.port, ngx.expired_port, ngx.other_port);
        assert_int_equal(fclose(f), 0);
}

static void tls_nginx_stop(void) {
        process_stop(&ngx.pid);
}

static bool tls_nginx_start(void) {
        /* The ports may be taken between our probe and nginx's bind: retry. */
        for (int attempt = 0; attempt < 5; attempt++) {
                ngx.port = free_port();
                do
                        ngx.expired_port = free_port();
                while (ngx.expired_port == ngx.port);
                do
                        ngx.other_port = free_port();
                while (ngx.other_port == ngx.port || ngx.other_port == ngx.expired_port);
                write_tree();
                char conf[PATH_MAX];
                path_in(conf, sizeof(conf), "nginx.conf");
                int ports[] = {ngx.port, ngx.expired_port, ngx.other_port};
                ngx.pid = nginx_launch(ngx.dir, conf, ports, 3);
                if (ngx.pid > 0)
                        return true;
                char cmd[PATH_MAX + 64];
                snprintf(cmd, sizeof(cmd), "rm -rf '%1$s/www' '%1$s/tmp' '%1$s/logs' '%1$s'/*.sock",
                         ngx.dir);
                assert_int_equal(system(cmd), 0);
        }
        return false;
}

/* nginx, certtool and tls.so, or the suite is skipped. */
static bool have_peers(void) {
        const char *plugins = getenv("PAF_TEST_PLUGINDIR");
        char tls[PATH_MAX];
        snprintf(tls, sizeof(tls), "%s/tls.so", plugins ? plugins : ".");
        return access(NGINX, X_OK) == 0 && access(tls, R_OK) == 0 &&
               system("command -v certtool >/dev/null") == 0;
}

/*
 * Loading tls.so makes ld.so search its runpath for libgnutls, and ld.so's
 * SSE2 strncmp reads past that string: valgrind 3.19 with glibc 2.36 reports
 * a false positive. With libgnutls already mapped, nothing is searched (as
 * tests/plugins/test-tls.c does).
 */
static void *gnutls_handle;

static int group_setup(void **state) {
        (void)state;
        gnutls_handle = dlopen("libgnutls.so.30", RTLD_NOW);
        snprintf(ngx.dir, sizeof(ngx.dir), "/tmp/paf-nginx-tls-XXXXXX");
        assert_non_null(mkdtemp(ngx.dir));
        assert_int_equal(chmod(ngx.dir, 0755), 0);
        make_certs();
        if (!tls_nginx_start()) {
                fprintf(stderr, "# nginx would not start\n");
                return -1;
        }
        return 0;
}

static int group_teardown(void **state) {
        (void)state;
        if (gnutls_handle)
                dlclose(gnutls_handle);
        tls_nginx_stop();
        if (ngx.dir[0]) {
                char cmd[PATH_MAX + 16];
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ngx.dir);
                assert_int_equal(system(cmd), 0);
        }
        return 0;
}

/* ---- the client side ---- */

typedef struct env {
        sd_event *event;
        paf_registry *reg;
        paf_http_client *client;
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
        load(v->reg, "tls");
        assert_int_equal(paf_http_client_new(v->reg, v->event, &v->client), 0);
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        paf_http_client_free(v->client);
        run_for(v->event, 30); /* closing flows finish on the loop */
        paf_registry_unref(v->reg);
        sd_event_unref(v->event);
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

typedef struct result {
        bool done;
        int status;
        int err_code;
        char *err;
        int body_error;
        uint8_t *body;
        size_t n_body, size;
        paf_http_call *call;
} result;

static void result_done(result *r) {
        free(r->err);
        free(r->body);
        paf_http_call_free(r->call);
        *r = (result){0};
}

static void on_body(paf_http_call *call, const void *data, size_t len, int error, void *userdata) {
        result *r = userdata;
        (void)call;
        assert_false(r->done);
        if (error < 0 || len == 0) {
                r->body_error = error;
                r->done = true;
                return;
        }
        if (r->n_body + len > r->size) {
                r->size = (r->n_body + len) * 2;
                r->body = realloc(r->body, r->size);
                assert_non_null(r->body);
        }
        memcpy(r->body + r->n_body, data, len);
        r->n_body += len;
}

static void on_response(paf_http_call *call, int status, const paf_http_headers *headers,
                        const paf_error *error, void *userdata) {
        result *r = userdata;
        (void)headers;
        if (error) {
                assert_int_equal(status, 0);
                r->err_code = error->code;
                r->err = strdup(error->message);
                r->done = true;
                return;
        }
        r->status = status;
        assert_int_equal(paf_http_call_read_body(call, on_body, r), 0);
}

/* tcp.host 127.0.0.1 and port, TLS to name, trusting ca (a file of ngx.dir/certs). */
static paf_ctx *tls_ctx(int port, const char *name, const char *ca) {
        paf_ctx *ctx;
        char path[PATH_MAX];
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tcp.host", "127.0.0.1"), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "tcp.port", port), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.server-name", name), 0);
        snprintf(path, sizeof(path), "%s/certs/%s", ngx.dir, ca);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.ca-file", path), 0);
        return ctx;
}

static void get(env *v, paf_ctx *ctx, const char *target, result *r) {
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", target, NULL, 0,
                                                 on_response, r, &r->call),
                         0);
        assert_true(run_until(v->event, &r->done, 10000));
}

static void test_verified(void **state) {
        env *v = *state;
        paf_ctx *ctx = tls_ctx(ngx.port, "localhost", "ca.pem");
        result r = {0};
        get(v, ctx, "/file.bin", &r);
        if (r.err)
                fail_msg("GET over TLS failed: %s", r.err);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_error, 0);
        assert_int_equal(r.n_body, FILE_SIZE);
        uint8_t *want = pattern(FILE_SIZE, 7);
        assert_memory_equal(r.body, want, FILE_SIZE);
        free(want);
        assert_non_null(strstr(paf_http_call_get_endpoint(r.call), "tls"));
        result_done(&r);

        /* Kept alive: the second request rides the same TLS connection, and
         * nginx saw TLS 1.3 (or 1.2) with our SNI. */
        get(v, ctx, "/proto", &r);
        assert_int_equal(r.status, 200);
        assert_non_null(r.body);
        r.body = realloc(r.body, r.n_body + 1);
        r.body[r.n_body] = '\0';
        assert_true(strcmp((char *)r.body, "TLSv1.3 localhost") == 0 ||
                    strcmp((char *)r.body, "TLSv1.2 localhost") == 0);
        assert_int_equal(paf_http_client_get_n_connections(v->client), 1);
        result_done(&r);
        paf_ctx_unref(ctx);
}

/* The call fails, with the endpoint and a reason that says why. */
static void expect_refusal(env *v, int port, const char *name, const char *ca,
                           const char *const *reasons) {
        paf_ctx *ctx = tls_ctx(port, name, ca);
        result r = {0};
        get(v, ctx, "/file.bin", &r);
        assert_int_equal(r.status, 0);
        assert_non_null(r.err);
        assert_true(r.err_code < 0);
        printf("# %s\n", r.err);
        bool found = false;
        for (const char *const *p = reasons; *p; p++)
                found = found || strcasestr(r.err, *p);
        if (!found)
                fail_msg("no reason (\"%s\" …) in: %s", reasons[0], r.err);
        /* Never a plain-text fallback: the endpoint tried was TLS. */
        assert_non_null(strcasestr(r.err, "tls"));
        assert_int_equal(r.n_body, 0);
        result_done(&r);
        paf_ctx_unref(ctx);
}

static void test_unknown_issuer(void **state) {
        static const char *const reasons[] = {"issuer", NULL};
        expect_refusal(*state, ngx.port, "localhost", "rogue.pem", reasons);
}

static void test_name_mismatch(void **state) {
        static const char *const reasons[] = {"does not match", "mismatch", "name", NULL};
        expect_refusal(*state, ngx.port, "wrong.test", "ca.pem", reasons);
}

static void test_expired(void **state) {
        static const char *const reasons[] = {"expired", NULL};
        expect_refusal(*state, ngx.expired_port, "localhost", "ca.pem", reasons);
}

/* ---- the pool: a kept-alive connection carries only calls to its own endpoint ---- */

/* GET /who: "good …" or "other …", or the error. */
static void who(env *v, paf_ctx *ctx, char *buf, size_t size) {
        result r = {0};
        get(v, ctx, "/who", &r);
        if (r.err)
                snprintf(buf, size, "error: %s", r.err);
        else
                snprintf(buf, size, "%d %.*s", r.status, (int)r.n_body, (const char *)r.body);
        result_done(&r);
}

/* Calls alternating between a and b, each kept alive: each reaches its own
 * server, over one connection each. */
static void alternate(env *v, paf_ctx *a, const char *want_a, paf_ctx *b, const char *want_b) {
        char got[1024];
        for (int i = 0; i < 6; i++) {
                who(v, i % 2 ? b : a, got, sizeof(got));
                const char *want = i % 2 ? want_b : want_a;
                if (strcmp(got, want) != 0)
                        fail_msg("call %d: \"%s\", not \"%s\"", i, got, want);
        }
        assert_int_equal(paf_http_client_get_n_connections(v->client), 2);
}

/* Two servers on 127.0.0.1, other ports and certificates, the same name. */
static void test_pool_ports(void **state) {
        env *v = *state;
        paf_ctx *a = tls_ctx(ngx.port, "localhost", "both.pem");
        paf_ctx *b = tls_ctx(ngx.other_port, "localhost", "both.pem");
        alternate(v, a, "200 good client=", b, "200 other client=");
        paf_ctx_unref(a);
        paf_ctx_unref(b);
}

static paf_ctx *tls_unix_ctx(const char *sock) {
        paf_ctx *ctx;
        char path[PATH_MAX];
        assert_int_equal(paf_ctx_new(&ctx), 0);
        path_in(path, sizeof(path), sock);
        assert_int_equal(paf_ctx_set_string(ctx, "unix.path", path), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.server-name", "localhost"), 0);
        path_in(path, sizeof(path), "certs/both.pem");
        assert_int_equal(paf_ctx_set_string(ctx, "tls.ca-file", path), 0);
        return ctx;
}

/* https+unix: two sockets, the same name. */
static void test_pool_sockets(void **state) {
        env *v = *state;
        paf_ctx *a = tls_unix_ctx("a.sock"), *b = tls_unix_ctx("b.sock");
        alternate(v, a, "200 good client=", b, "200 other client=");
        paf_ctx_unref(a);
        paf_ctx_unref(b);
}

/* The same server, but TLS set up otherwise: a connection made without
 * verifying, or with a client certificate, carries no call that asks for
 * verification, or for none. */
static void test_pool_tls_settings(void **state) {
        env *v = *state;
        char got[1024], path[PATH_MAX];

        /* Insecure, trusting only the rogue CA: it connects. */
        paf_ctx *insecure = tls_ctx(ngx.port, "localhost", "rogue.pem");
        assert_int_equal(paf_ctx_set_bool(insecure, "tls.insecure", true), 0);
        who(v, insecure, got, sizeof(got));
        assert_string_equal(got, "200 good client=");
        /* Verifying with the rogue CA: refused, not the insecure connection. */
        paf_ctx *verify = tls_ctx(ngx.port, "localhost", "rogue.pem");
        who(v, verify, got, sizeof(got));
        printf("# verifying after an insecure call: %s\n", got);
        assert_non_null(strstr(got, "error: "));
        assert_non_null(strcasestr(got, "issuer"));
        paf_ctx_unref(verify);
        paf_ctx_unref(insecure);

        /* A client certificate, then none, then it again. */
        paf_ctx *with = tls_ctx(ngx.port, "localhost", "ca.pem");
        path_in(path, sizeof(path), "certs/client.pem");
        assert_int_equal(paf_ctx_set_string(with, "tls.cert-file", path), 0);
        path_in(path, sizeof(path), "certs/client.key");
        assert_int_equal(paf_ctx_set_string(with, "tls.key-file", path), 0);
        paf_ctx *without = tls_ctx(ngx.port, "localhost", "ca.pem");
        for (int i = 0; i < 3; i++) {
                who(v, i % 2 ? without : with, got, sizeof(got));
                if (i % 2)
                        assert_string_equal(got, "200 good client=");
                else if (!strstr(got, "200 good client=") || !strstr(got, "CN=paf client"))
                        fail_msg("with a client certificate: %s", got);
        }
        paf_ctx_unref(with);
        paf_ctx_unref(without);

        /* The server name: SNI localhost, or none for the address. */
        paf_ctx *by_name = tls_ctx(ngx.port, "localhost", "ca.pem");
        paf_ctx *by_ip = tls_ctx(ngx.port, "127.0.0.1", "ca.pem");
        result r = {0};
        for (int i = 0; i < 2; i++) {
                get(v, i ? by_ip : by_name, "/proto", &r);
                assert_int_equal(r.status, 200);
                assert_true(r.n_body >= 8); /* "TLSv1.3 " and the name */
                const char *sni = memchr(r.body, ' ', r.n_body);
                assert_non_null(sni);
                size_t n = r.n_body - (size_t)(sni + 1 - (const char *)r.body);
                if (i)
                        assert_int_equal(n, 0);
                else
                        assert_memory_equal(sni + 1, "localhost", n);
                result_done(&r);
        }
        paf_ctx_unref(by_name);
        paf_ctx_unref(by_ip);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_verified, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_issuer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_name_mismatch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pool_ports, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pool_sockets, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pool_tls_settings, setup, teardown),
        };
        if (!have_peers()) {
                printf("# nginx, certtool or tls.so missing: skipping\n");
                return 77;
        }
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
