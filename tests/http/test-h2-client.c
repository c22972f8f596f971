/* tests/http/test-h2-client.c — the HTTP client over HTTP/2, on loopback: nginx (TLS, h2 by
 * ALPN, 10 streams at a time), nghttpd (h2c by prior knowledge, echoing uploads) and
 * tests/http/h2peer.py (python3-h2) for what a server may do to a client: reset a stream,
 * GOAWAY with streams in flight, never answer, hold its window shut, speak HTTP/1.1 after
 * choosing h2. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

#define N_OF(x) (sizeof(x) / sizeof((x)[0]))
#define NGHTTPD "/usr/sbin/nghttpd"
#define PYTHON "/usr/bin/python3"
#define FILE_SIZE (300 * 1024 + 17)
#define N_MULTIPLEX 100
#define NGINX_STREAMS 10
#define WRITE_CHUNK (256 * 1024)
/* h2peer.py's /big, and the stream window the client advertises. */
#define PEER_BIG (4 * 1024 * 1024)
#define STREAM_WINDOW (1024 * 1024)

/* 64 MiB each way. */
static size_t big_size(void) {
        return 64 * 1024 * 1024;
}

/* Byte i of a body: not all alike, so that misplaced pieces show. */
static uint8_t pattern_at(uint64_t i, uint32_t seed) {
        uint64_t x = (i + seed) * 0x9e3779b97f4a7c15ull;
        return (uint8_t)(x >> 56);
}

static void pattern_fill(uint8_t *p, size_t len, uint64_t from, uint32_t seed) {
        for (size_t i = 0; i < len; i++)
                p[i] = pattern_at(from + i, seed);
}

/* ---- the peers ---- */

typedef struct peers {
        char dir[256];
        pid_t nginx, nghttpd, h2c, garbage;
        int tls_port, plain_port; /* nginx: h2 over TLS, HTTP/1.1 in clear */
        int tls1_port;            /* nginx: TLS without h2 */
        int nghttpd_port;         /* h2c, --echo-upload */
        int h2c_port;             /* h2peer.py h2c */
        int garbage_port;         /* h2peer.py garbage */
} peers;

static peers P;

static void path_in(char *buf, size_t size, const char *name) {
        snprintf(buf, size, "%s/%s", P.dir, name);
}

static void write_pattern(const char *name, size_t len, uint32_t seed) {
        char path[PATH_MAX];
        path_in(path, sizeof(path), name);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        uint8_t *buf = malloc(WRITE_CHUNK);
        assert_non_null(buf);
        for (size_t off = 0; off < len; off += WRITE_CHUNK) {
                size_t n = len - off < WRITE_CHUNK ? len - off : WRITE_CHUNK;
                pattern_fill(buf, n, off, seed);
                assert_int_equal(fwrite(buf, 1, n, f), n);
        }
        free(buf);
        assert_int_equal(fclose(f), 0);
}

static void write_nginx_conf(void) {
        char path[PATH_MAX];
        path_in(path, sizeof(path), "nginx.conf");
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        /* nginx 1.22: "listen … http2" (1.25 prefers "http2 on", and still takes this). */
        fprintf(f,
                "daemon off;\n"
                "master_process off;\n"
                "worker_processes 1;\n"
                "pid %1$s/nginx.pid;\n"
                "error_log %1$s/logs/error.log info;\n"
                "events { worker_connections 256; }\n"
                "http {\n"
                "  log_format conn '$connection $server_protocol $status $request_uri';\n"
                "  access_log %1$s/logs/access.log conn;\n"
                "  client_body_temp_path %1$s/tmp;\n"
                "  proxy_temp_path %1$s/tmp;\n"
                "  fastcgi_temp_path %1$s/tmp;\n"
                "  uwsgi_temp_path %1$s/tmp;\n"
                "  scgi_temp_path %1$s/tmp;\n"
                "  default_type application/octet-stream;\n"
                "  server {\n"
                "    listen 127.0.0.1:%2$d ssl http2;\n"
                "    listen 127.0.0.1:%3$d;\n"
                "    listen 127.0.0.1:%5$d ssl;\n"
                "    ssl_certificate %1$s/certs/good.pem;\n"
                "    ssl_certificate_key %1$s/certs/good.key;\n"
                "    http2_max_concurrent_streams %4$d;\n"
                "    root %1$s/www;\n"
                "  }\n"
                "}\n",
                P.dir, P.tls_port, P.plain_port, NGINX_STREAMS, P.tls1_port);
        assert_int_equal(fclose(f), 0);
}

/* Run argv in the background and wait (5 s) until port accepts; 0 if it would not. */
static pid_t spawn(char *const argv[], int port) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);
                dup2(null, 0);
                dup2(null, 1);
                execv(argv[0], argv);
                _exit(127);
        }
        for (int i = 0; i < 500; i++) {
                if (port_accepts(port))
                        return pid;
                if (waitpid(pid, NULL, WNOHANG) == pid)
                        return 0;
                usleep(10 * 1000);
        }
        process_stop(&pid);
        return 0;
}

static int other_port(const int *taken, size_t n) {
        for (;;) {
                int p = free_port();
                bool clash = false;
                for (size_t i = 0; i < n; i++)
                        clash = clash || taken[i] == p;
                if (!clash)
                        return p;
        }
}

static bool peers_start(void) {
        char conf[PATH_MAX], www[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], peer[PATH_MAX];
        const char *src = getenv("PAF_TEST_SRCDIR");
        assert_non_null(src);
        path_in(conf, sizeof(conf), "nginx.conf");
        path_in(www, sizeof(www), "www");
        path_in(cert, sizeof(cert), "certs/good.pem");
        path_in(key, sizeof(key), "certs/good.key");
        snprintf(peer, sizeof(peer), "%s/tests/http/h2peer.py", src);
        /* A port may be taken between our probe and the bind: retry. */
        for (int attempt = 0; attempt < 5 && !P.nginx; attempt++) {
                P.tls_port = free_port();
                P.plain_port = other_port(&P.tls_port, 1);
                int taken[] = {P.tls_port, P.plain_port};
                P.tls1_port = other_port(taken, 2);
                write_nginx_conf();
                int ports[] = {P.tls_port, P.plain_port, P.tls1_port};
                P.nginx = nginx_launch(P.dir, conf, ports, 3);
        }
        for (int attempt = 0; attempt < 5 && !P.nghttpd; attempt++) {
                int taken[] = {P.tls_port, P.plain_port, P.tls1_port};
                P.nghttpd_port = other_port(taken, 3);
                char port[16];
                snprintf(port, sizeof(port), "%d", P.nghttpd_port);
                char *const argv[] = {NGHTTPD, "--no-tls",  "--echo-upload",
                                      "-a",    "127.0.0.1", "-d",
                                      www,     port,        NULL};
                P.nghttpd = spawn(argv, P.nghttpd_port);
        }
        for (int attempt = 0; attempt < 5 && !P.h2c; attempt++) {
                int taken[] = {P.tls_port, P.plain_port, P.tls1_port, P.nghttpd_port};
                P.h2c_port = other_port(taken, 4);
                char port[16];
                snprintf(port, sizeof(port), "%d", P.h2c_port);
                char *const argv[] = {PYTHON, peer, "h2c", port, NULL};
                P.h2c = spawn(argv, P.h2c_port);
        }
        for (int attempt = 0; attempt < 5 && !P.garbage; attempt++) {
                int taken[] = {P.tls_port, P.plain_port, P.tls1_port, P.nghttpd_port, P.h2c_port};
                P.garbage_port = other_port(taken, 5);
                char port[16];
                snprintf(port, sizeof(port), "%d", P.garbage_port);
                char *const argv[] = {PYTHON, peer, "garbage", port, cert, key, NULL};
                P.garbage = spawn(argv, P.garbage_port);
        }
        return P.nginx && P.nghttpd && P.h2c && P.garbage;
}

static bool have_peers(void) {
        const char *plugins = getenv("PAF_TEST_PLUGINDIR");
        char tls[PATH_MAX];
        snprintf(tls, sizeof(tls), "%s/tls.so", plugins ? plugins : ".");
        return access(NGINX, X_OK) == 0 && access(NGHTTPD, X_OK) == 0 && access(tls, R_OK) == 0 &&
               system("command -v certtool >/dev/null") == 0 &&
               system(NGINX " -V 2>&1 | grep -q http_v2_module") == 0 &&
               system(PYTHON " -c 'import h2' 2>/dev/null") == 0;
}

/* As in test-https-client.c: libgnutls mapped before tls.so spares valgrind
 * a false positive in ld.so's search for it. */
static void *gnutls_handle;

static int group_setup(void **state) {
        (void)state;
        gnutls_handle = dlopen("libgnutls.so.30", RTLD_NOW);
        snprintf(P.dir, sizeof(P.dir), "/tmp/paf-h2-client-XXXXXX");
        assert_non_null(mkdtemp(P.dir));
        assert_int_equal(chmod(P.dir, 0755), 0);
        const char *src = getenv("PAF_TEST_SRCDIR");
        assert_non_null(src);
        char cmd[3 * PATH_MAX];
        snprintf(cmd, sizeof(cmd),
                 "set -e; . '%1$s/tests/http/https-certs.sh'; cd '%2$s'; "
                 "mkdir certs www tmp logs; https_ca certs ca; "
                 "https_cert certs good ca localhost localhost 127.0.0.1; chmod 0644 certs/*",
                 src, P.dir);
        assert_int_equal(system(cmd), 0);
        write_pattern("www/file.bin", FILE_SIZE, 1);
        write_pattern("www/big.bin", big_size(), 2);
        if (!peers_start()) {
                fprintf(stderr, "# a peer would not start (nginx %d, nghttpd %d, h2peer %d, %d)\n",
                        P.nginx, P.nghttpd, P.h2c, P.garbage);
                return -1;
        }
        return 0;
}

static int group_teardown(void **state) {
        (void)state;
        if (gnutls_handle)
                dlclose(gnutls_handle);
        process_stop(&P.nginx);
        process_stop(&P.nghttpd);
        process_stop(&P.h2c);
        process_stop(&P.garbage);
        remove_tree(P.dir);
        return 0;
}

/* ---- the client ---- */

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
        load(v->reg, "tls");
        assert_int_equal(paf_http_client_new(v->reg, v->event, &v->client), 0);
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        paf_http_client_free(v->client);
        run_for(v->event, 50); /* closing flows finish on the loop */
        paf_registry_unref(v->reg);
        sd_event_unref(v->event);
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

/* tcp 127.0.0.1:port; TLS to localhost trusting the test CA when tls;
 * http.version when version. */
static paf_ctx *ctx_for(int port, bool tls, const char *version) {
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tcp.host", "127.0.0.1"), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "tcp.port", port), 0);
        if (tls) {
                char path[PATH_MAX];
                path_in(path, sizeof(path), "certs/ca.pem");
                assert_int_equal(paf_ctx_set_string(ctx, "tls.server-name", "localhost"), 0);
                assert_int_equal(paf_ctx_set_string(ctx, "tls.ca-file", path), 0);
        }
        if (version)
                assert_int_equal(paf_ctx_set_string(ctx, "http.version", version), 0);
        return ctx;
}

/* A call and what came of it. With check_seed, the body is compared with
 * the pattern as it arrives instead of kept. */
typedef struct result {
        bool done;
        int status;
        int version, headers_version;
        int err_code;
        char *err;
        int body_error;
        uint8_t *body;
        size_t n_body, size;
        bool check;
        uint32_t check_seed;
        bool mismatch;
        size_t pause_at; /* pause once this much arrived (0: never) */
        bool paused;
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
        assert_false(r->done);
        if (error < 0 || len == 0) {
                r->body_error = error;
                if (error < 0 && !r->err) {
                        char buf[64];
                        snprintf(buf, sizeof(buf), "body: %s", strerror(-error));
                        r->err = strdup(buf);
                        r->err_code = error;
                }
                r->done = true;
                return;
        }
        if (r->check) {
                for (size_t i = 0; i < len && !r->mismatch; i++)
                        r->mismatch = ((const uint8_t *)data)[i] !=
                                      pattern_at(r->n_body + i, r->check_seed);
        } else {
                if (r->n_body + len > r->size) {
                        r->size = (r->n_body + len) * 2;
                        r->body = realloc(r->body, r->size);
                        assert_non_null(r->body);
                }
                memcpy(r->body + r->n_body, data, len);
        }
        r->n_body += len;
        if (r->pause_at && !r->paused && r->n_body >= r->pause_at) {
                r->paused = true;
                assert_int_equal(paf_http_call_pause(call), 0);
        }
}

static void on_response(paf_http_call *call, int status, const paf_http_headers *headers,
                        const paf_error *error, void *userdata) {
        result *r = userdata;
        if (error) {
                assert_int_equal(status, 0);
                r->err_code = error->code;
                r->err = strdup(error->message);
                r->done = true;
                return;
        }
        r->status = status;
        r->version = paf_http_call_get_version(call);
        r->headers_version = paf_http_headers_get_version(headers);
        assert_int_equal(paf_http_call_read_body(call, on_body, r), 0);
}

static void start(env *v, paf_ctx *ctx, const char *method, const char *target, int64_t body_length,
                  result *r) {
        assert_int_equal(paf_http_client_request(v->client, ctx, method, target, NULL, body_length,
                                                 on_response, r, &r->call),
                         0);
}

static void get(env *v, paf_ctx *ctx, const char *target, result *r) {
        start(v, ctx, "GET", target, 0, r);
        if (!run_until(v->event, &r->done, 20000))
                fail_msg("GET %s: no answer in 20 s", target);
}

static void expect_file(result *r) {
        if (r->err)
                fail_msg("%s", r->err);
        assert_int_equal(r->status, 200);
        assert_int_equal(r->body_error, 0);
        assert_int_equal(r->n_body, FILE_SIZE);
        uint8_t *want = malloc(FILE_SIZE);
        assert_non_null(want);
        pattern_fill(want, FILE_SIZE, 0, 1);
        assert_memory_equal(r->body, want, FILE_SIZE);
        free(want);
}

/* The body of a small answer, as a string. */
static const char *text_of(result *r) {
        r->body = realloc(r->body, r->n_body + 1);
        assert_non_null(r->body);
        r->body[r->n_body] = '\0';
        return (const char *)r->body;
}

/* ---- protocol selection ---- */

/* http.version picks: "2" gets h2 by ALPN over TLS and stays HTTP/1.1 in
 * clear text; "1.1" and the default stay HTTP/1.1. */
static void test_alpn(void **state) {
        env *v = *state;
        static const struct {
                bool tls;
                const char *version;
                int want;
        } cases[] = {
                {true, "2", 20},  {true, NULL, 11},  {true, "1.1", 11},
                {false, "2", 11}, {false, NULL, 11},
        };
        for (size_t i = 0; i < N_OF(cases); i++) {
                paf_ctx *ctx = ctx_for(cases[i].tls ? P.tls_port : P.plain_port, cases[i].tls,
                                       cases[i].version);
                result r = {0};
                get(v, ctx, "/file.bin", &r);
                printf("# %s, http.version %s: HTTP %d\n", cases[i].tls ? "TLS" : "clear text",
                       cases[i].version ? cases[i].version : "(none)", r.version);
                expect_file(&r);
                assert_int_equal(r.version, cases[i].want);
                assert_int_equal(r.headers_version, cases[i].want);
                result_done(&r);
                paf_ctx_unref(ctx);
        }
        /* One connection per endpoint and what http.version asks ("1.1" is
         * the default). */
        assert_int_equal(paf_http_client_get_n_connections(v->client), 4);
}

static void test_bad_version(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.plain_port, false, "3");
        result r = {0};
        get(v, ctx, "/file.bin", &r);
        assert_non_null(r.err);
        printf("# %s\n", r.err);
        assert_int_equal(r.err_code, -EINVAL);
        assert_non_null(strstr(r.err, "http.version \"3\""));
        assert_int_equal(paf_http_client_get_n_connections(v->client), 0);
        result_done(&r);
        paf_ctx_unref(ctx);
}

/* Calls asking for h2 at once to a TLS server without it: they waited for
 * one connect, which got HTTP/1.1; the first call took it, the others went
 * their own way, and all are answered over HTTP/1.1. */
static void test_fallback_http1(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.tls1_port, true, "2");
        result r[5] = {0};
        for (size_t i = 0; i < N_OF(r); i++)
                start(v, ctx, "GET", "/file.bin", 0, &r[i]);
        for (size_t i = 0; i < N_OF(r); i++)
                assert_true(run_until(v->event, &r[i].done, 10000));
        for (size_t i = 0; i < N_OF(r); i++) {
                expect_file(&r[i]);
                assert_int_equal(r[i].version, 11);
                result_done(&r[i]);
        }
        /* Reused afterwards, as any HTTP/1.1 connection. */
        uint64_t n = paf_http_client_get_n_connections(v->client);
        printf("# %" PRIu64 " HTTP/1.1 connections for %zu calls\n", n, N_OF(r));
        assert_true(n >= 1 && n <= N_OF(r));
        result again = {0};
        get(v, ctx, "/file.bin", &again);
        expect_file(&again);
        assert_int_equal(paf_http_client_get_n_connections(v->client), n);
        result_done(&again);
        paf_ctx_unref(ctx);
}

/* Calls that waited for one connect share its failure, each with the reason. */
static void test_connect_failure(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.tls_port, true, "2");
        assert_int_equal(paf_ctx_set_string(ctx, "tls.server-name", "wrong.test"), 0);
        result r[3] = {0};
        for (size_t i = 0; i < N_OF(r); i++)
                start(v, ctx, "GET", "/file.bin", 0, &r[i]);
        for (size_t i = 0; i < N_OF(r); i++) {
                assert_true(run_until(v->event, &r[i].done, 10000));
                assert_non_null(r[i].err);
                if (i == 0)
                        printf("# %s\n", r[i].err);
                assert_non_null(strstr(r[i].err, "tls wrong.test"));
                assert_non_null(strstr(r[i].err, "does not match"));
                result_done(&r[i]);
        }
        paf_ctx_unref(ctx);
}

/* Calls freed while the connection they wait for is being made: the
 * connect is abandoned once none is left, and nothing is called back. */
static void test_free_waiting(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.tls_port, true, "2");
        result r[3] = {0};
        for (size_t i = 0; i < N_OF(r); i++)
                start(v, ctx, "GET", "/file.bin", 0, &r[i]);
        paf_http_call_free(r[1].call);
        r[1].call = NULL;
        run_for(v->event, 1); /* the connect is under way */
        paf_http_call_free(r[0].call);
        paf_http_call_free(r[2].call);
        r[0].call = r[2].call = NULL;
        run_for(v->event, 200);
        for (size_t i = 0; i < N_OF(r); i++)
                assert_false(r[i].done);
        /* The next call connects afresh. */
        result again = {0};
        get(v, ctx, "/file.bin", &again);
        expect_file(&again);
        assert_int_equal(again.version, 20);
        result_done(&again);
        paf_ctx_unref(ctx);
}

/* ---- multiplexing ---- */

/* nginx's log lines for target: their count, and how many connections they came on. */
static void count_log(const char *target, int *ret_lines, int *ret_conns) {
        char path[PATH_MAX], line[512];
        long conns[N_MULTIPLEX];
        int n_lines = 0, n_conns = 0;
        path_in(path, sizeof(path), "logs/access.log");
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f)) {
                long c;
                char proto[32], uri[256];
                int status;
                if (sscanf(line, "%ld %31s %d %255s", &c, proto, &status, uri) != 4 ||
                    strcmp(uri, target) != 0)
                        continue;
                assert_string_equal(proto, "HTTP/2.0");
                assert_int_equal(status, 200);
                n_lines++;
                bool seen = false;
                for (int i = 0; i < n_conns; i++)
                        seen = seen || conns[i] == c;
                if (!seen && n_conns < N_MULTIPLEX)
                        conns[n_conns++] = c;
        }
        fclose(f);
        *ret_lines = n_lines;
        *ret_conns = n_conns;
}

/* 100 calls at once to nginx, which takes 10 streams at a time: one
 * connection carries them all, 10 streams at a time, the others queued. */
static void test_multiplex(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.tls_port, true, "2");
        result *r = calloc(N_MULTIPLEX, sizeof(*r));
        assert_non_null(r);
        for (int i = 0; i < N_MULTIPLEX; i++)
                start(v, ctx, "GET", "/file.bin?mux", 0, &r[i]);
        uint64_t end = now_ms() + 30000;
        int n_done = 0;
        while (n_done < N_MULTIPLEX && now_ms() < end) {
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
                n_done = 0;
                for (int i = 0; i < N_MULTIPLEX; i++)
                        n_done += r[i].done;
        }
        assert_int_equal(n_done, N_MULTIPLEX);
        for (int i = 0; i < N_MULTIPLEX; i++) {
                expect_file(&r[i]);
                assert_int_equal(r[i].version, 20);
                result_done(&r[i]);
        }
        free(r);
        assert_int_equal(paf_http_client_get_n_connections(v->client), 1);

        /* The server's view: every request, on one connection (nginx logs
         * a request when it is done: give the last ones a moment). */
        int lines = 0, conns = 0;
        for (int i = 0; i < 200 && lines < N_MULTIPLEX; i++) {
                count_log("/file.bin?mux", &lines, &conns);
                if (lines < N_MULTIPLEX)
                        usleep(10 * 1000);
        }
        printf("# nginx: %d requests on %d connection(s)\n", lines, conns);
        assert_int_equal(lines, N_MULTIPLEX);
        assert_int_equal(conns, 1);
        paf_ctx_unref(ctx);
}

/* h2c by prior knowledge (nghttpd speaks nothing else in clear text). */
static void test_prior_knowledge(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.nghttpd_port, false, "2-prior-knowledge");
        for (int i = 0; i < 3; i++) {
                result r = {0};
                get(v, ctx, "/file.bin", &r);
                expect_file(&r);
                assert_int_equal(r.version, 20);
                result_done(&r);
        }
        /* Kept between calls. */
        assert_int_equal(paf_http_client_get_n_connections(v->client), 1);
        paf_ctx_unref(ctx);
}

/* ---- 64 MiB both ways ---- */

typedef struct upload {
        result r;
        size_t size, sent;
        uint8_t *chunk;
        unsigned in_flight, max_in_flight;
        int write_error;
} upload;

static void upload_next(upload *u);

static void on_chunk_taken(paf_http_call *call, int error, void *userdata) {
        (void)call;
        upload *u = userdata;
        u->in_flight--;
        if (error < 0) {
                u->write_error = error;
                return;
        }
        upload_next(u);
}

/* The next chunk once the previous one was taken: flow control is the pace. */
static void upload_next(upload *u) {
        if (u->sent == u->size)
                return;
        size_t n = u->size - u->sent < WRITE_CHUNK ? u->size - u->sent : WRITE_CHUNK;
        pattern_fill(u->chunk, n, u->sent, 3);
        u->sent += n;
        u->in_flight++;
        if (u->in_flight > u->max_in_flight)
                u->max_in_flight = u->in_flight;
        assert_int_equal(paf_http_call_write(u->r.call, u->chunk, n, on_chunk_taken, u), 0);
}

/* nghttpd --echo-upload sends the body back: up and down byte-exact. */
static void test_upload_echo(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.nghttpd_port, false, "2-prior-knowledge");
        upload u = {.size = big_size()};
        u.chunk = malloc(WRITE_CHUNK);
        assert_non_null(u.chunk);
        u.r.check = true;
        u.r.check_seed = 3;
        start(v, ctx, "POST", "/echo", (int64_t)u.size, &u.r);
        upload_next(&u);
        uint64_t t0 = now_ms();
        if (!run_until(v->event, &u.r.done, 120000))
                fail_msg("echo of %zu bytes: not done in 120 s (%zu sent, %zu back)", u.size,
                         u.sent, u.r.n_body);
        printf("# %zu bytes up and back in %" PRIu64 " ms\n", u.size, now_ms() - t0);
        if (u.r.err)
                fail_msg("%s", u.r.err);
        assert_int_equal(u.write_error, 0);
        assert_int_equal(u.sent, u.size);
        assert_int_equal(u.max_in_flight, 1);
        assert_int_equal(u.r.status, 200);
        assert_int_equal(u.r.version, 20);
        assert_int_equal(u.r.n_body, u.size);
        assert_false(u.r.mismatch);
        free(u.chunk);
        result_done(&u.r);
        paf_ctx_unref(ctx);
}

/* And down from nginx over TLS. */
static void test_download_tls(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.tls_port, true, "2");
        result r = {.check = true, .check_seed = 2};
        start(v, ctx, "GET", "/big.bin", 0, &r);
        uint64_t t0 = now_ms();
        if (!run_until(v->event, &r.done, 120000))
                fail_msg("GET /big.bin: not done in 120 s (%zu bytes)", r.n_body);
        printf("# %zu bytes down over TLS in %" PRIu64 " ms\n", r.n_body, now_ms() - t0);
        if (r.err)
                fail_msg("%s", r.err);
        assert_int_equal(r.version, 20);
        assert_int_equal(r.n_body, big_size());
        assert_false(r.mismatch);
        result_done(&r);
        paf_ctx_unref(ctx);
}

/* ---- flow control as backpressure ---- */

static long sent_so_far(env *v, paf_ctx *ctx) {
        result s = {0};
        get(v, ctx, "/sent", &s);
        if (s.err)
                fail_msg("/sent: %s", s.err);
        long n = atol(text_of(&s));
        result_done(&s);
        return n;
}

/* A paused call stops taking body: the server can send no more than the
 * stream's window past what the call took, and the connection goes on
 * carrying other calls meanwhile; resumed, the rest comes byte-exact. */
static void test_pause_window(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.h2c_port, false, "2-prior-knowledge");
        result r = {.pause_at = 1536 * 1024};
        start(v, ctx, "GET", "/big", 0, &r);
        assert_true(run_until(v->event, &r.paused, 10000));
        run_for(v->event, 300);
        size_t got = r.n_body;
        long sent = sent_so_far(v, ctx);
        printf("# paused after %zu bytes: the server sent %ld\n", got, sent);
        assert_true(sent >= (long)got);
        assert_true(sent <= (long)got + STREAM_WINDOW);
        assert_int_equal(r.n_body, got); /* nothing delivered while paused */
        assert_false(r.done);

        assert_int_equal(paf_http_call_resume(r.call), 0);
        assert_true(run_until(v->event, &r.done, 10000));
        if (r.err)
                fail_msg("%s", r.err);
        assert_int_equal(r.n_body, PEER_BIG);
        for (size_t i = 0; i < PEER_BIG; i++)
                if (r.body[i] != (uint8_t)i)
                        fail_msg("byte %zu: %u", i, r.body[i]);
        assert_int_equal(paf_http_client_get_n_connections(v->client), 1);
        result_done(&r);
        paf_ctx_unref(ctx);
}

static void on_body_free(paf_http_call *call, const void *data, size_t len, int error,
                         void *userdata) {
        (void)data;
        result *r = userdata;
        assert_int_equal(error, 0);
        assert_true(len > 0);
        r->n_body += len;
        r->done = true;
        paf_http_call_free(call);
        r->call = NULL;
}

static void on_response_free_body(paf_http_call *call, int status, const paf_http_headers *headers,
                                  const paf_error *error, void *userdata) {
        (void)headers;
        result *r = userdata;
        assert_null(error);
        r->status = status;
        assert_int_equal(paf_http_call_read_body(call, on_body_free, r), 0);
}

/* A call freed inside its body (RST_STREAM CANCEL): the connection goes
 * on for the next call, and for the server it is consumed. */
static void test_free_mid_body(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.h2c_port, false, "2-prior-knowledge");
        for (int i = 0; i < 3; i++) {
                result r = {0};
                assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/big", NULL, 0,
                                                         on_response_free_body, &r, &r.call),
                                 0);
                assert_true(run_until(v->event, &r.done, 10000));
                assert_int_equal(r.status, 200);
                assert_true(r.n_body < PEER_BIG);
                result ok = {0};
                get(v, ctx, "/ok", &ok);
                if (ok.err)
                        fail_msg("after a freed call: %s", ok.err);
                assert_string_equal(text_of(&ok), "ok /ok");
                result_done(&ok);
        }
        assert_int_equal(paf_http_client_get_n_connections(v->client), 1);
        paf_ctx_unref(ctx);
}

/* An HTTP/2 connection without calls closes after the idle timeout (at
 * once with none); the next call opens another. */
static void test_idle(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.nghttpd_port, false, "2-prior-knowledge");
        static const uint64_t idle[] = {200000, 0};
        for (size_t k = 0; k < N_OF(idle); k++) {
                paf_http_client_timeouts t = {
                        .connect_usec = 5000000, .response_usec = 5000000, .idle_usec = idle[k]};
                assert_int_equal(paf_http_client_set_timeouts(v->client, &t), 0);
                run_for(v->event, 400); /* the last one idled out */
                uint64_t before = paf_http_client_get_n_connections(v->client);
                result r = {0};
                get(v, ctx, "/file.bin", &r);
                expect_file(&r);
                result_done(&r);
                int fds = count_fds();
                uint64_t t0 = now_ms();
                while (count_fds() >= fds && now_ms() < t0 + 3000)
                        run_for(v->event, 20);
                assert_true(count_fds() < fds); /* it closed */
                if (idle[k] > 0)                /* not before the timeout */
                        assert_true(now_ms() - t0 >= idle[k] / 1000 - 20);
                get(v, ctx, "/file.bin", &r);
                expect_file(&r);
                result_done(&r);
                assert_int_equal(paf_http_client_get_n_connections(v->client), before + 2);
        }
        paf_ctx_unref(ctx);
}

/* A chunked (length unknown) upload: DATA as written, END_STREAM at the finish. */
static void test_streamed_upload(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.nghttpd_port, false, "2-prior-knowledge");
        result r = {0};
        start(v, ctx, "PUT", "/echo", -1, &r);
        static const char *const pieces[] = {"one ", "", "two ", "three"};
        for (size_t i = 0; i < N_OF(pieces); i++)
                assert_int_equal(
                        paf_http_call_write(r.call, pieces[i], strlen(pieces[i]), NULL, NULL), 0);
        assert_int_equal(paf_http_call_finish(r.call), 0);
        assert_true(run_until(v->event, &r.done, 10000));
        if (r.err)
                fail_msg("%s", r.err);
        assert_int_equal(r.status, 200);
        assert_string_equal(text_of(&r), "one two three");
        result_done(&r);
        paf_ctx_unref(ctx);
}

/* ---- what a server may do to us ---- */

/* A stream reset, before or inside its body: that call fails and says so,
 * the others on the connection go on. */
static void test_reset(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.h2c_port, false, "2-prior-knowledge");
        const char *targets[] = {"/a", "/reset", "/b", "/reset-body", "/c"};
        result r[N_OF(targets)] = {0};
        for (size_t i = 0; i < N_OF(targets); i++)
                start(v, ctx, "GET", targets[i], 0, &r[i]);
        for (size_t i = 0; i < N_OF(targets); i++)
                assert_true(run_until(v->event, &r[i].done, 10000));
        for (size_t i = 0; i < N_OF(targets); i++) {
                if (strcmp(targets[i], "/reset") == 0) {
                        assert_non_null(r[i].err);
                        printf("# %s: %s\n", targets[i], r[i].err);
                        assert_int_equal(r[i].err_code, -ECONNRESET);
                        assert_non_null(strstr(r[i].err, "reset by the server (INTERNAL_ERROR)"));
                        assert_non_null(strstr(r[i].err, "tcp 127.0.0.1:"));
                        assert_non_null(strstr(r[i].err, targets[i]));
                } else if (strcmp(targets[i], "/reset-body") == 0) {
                        /* In the body: the body handler gets the code. */
                        assert_int_equal(r[i].status, 200);
                        assert_int_equal(r[i].body_error, -ECONNRESET);
                        assert_true(r[i].n_body <= 1000);
                } else {
                        if (r[i].err)
                                fail_msg("%s: %s", targets[i], r[i].err);
                        char want[64];
                        snprintf(want, sizeof(want), "ok %s", targets[i]);
                        assert_string_equal(text_of(&r[i]), want);
                }
                result_done(&r[i]);
        }
        assert_int_equal(paf_http_client_get_n_connections(v->client), 1);
        paf_ctx_unref(ctx);
}

/* GOAWAY with streams in flight: those up to its last stream complete, those
 * above fail as not processed (safe to send again), and the next call opens
 * a new connection. */
static void test_goaway(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.h2c_port, false, "2-prior-knowledge");
        const char *targets[] = {"/a", "/goaway", "/b", "/c"};
        result r[N_OF(targets)] = {0};
        for (size_t i = 0; i < N_OF(targets); i++)
                start(v, ctx, "GET", targets[i], 0, &r[i]);
        for (size_t i = 0; i < N_OF(targets); i++)
                assert_true(run_until(v->event, &r[i].done, 10000));
        for (size_t i = 0; i < 2; i++) {
                if (r[i].err)
                        fail_msg("%s: %s", targets[i], r[i].err);
                assert_int_equal(r[i].status, 200);
        }
        for (size_t i = 2; i < N_OF(targets); i++) {
                assert_non_null(r[i].err);
                printf("# %s: %s\n", targets[i], r[i].err);
                assert_int_equal(r[i].err_code, -EAGAIN);
                assert_non_null(strstr(r[i].err, "GOAWAY"));
                assert_non_null(strstr(r[i].err, "not processed"));
                assert_non_null(strstr(r[i].err, "last stream 3"));
        }
        for (size_t i = 0; i < N_OF(targets); i++)
                result_done(&r[i]);

        result again = {0};
        get(v, ctx, "/again", &again);
        if (again.err)
                fail_msg("after GOAWAY: %s", again.err);
        assert_string_equal(text_of(&again), "ok /again");
        result_done(&again);
        assert_int_equal(paf_http_client_get_n_connections(v->client), 2);
        paf_ctx_unref(ctx);
}

/* A stream the server never answers times out alone, as over HTTP/1.1. */
static void test_timeout(void **state) {
        env *v = *state;
        paf_http_client_timeouts t = {
                .connect_usec = 5000000, .response_usec = 300000, .idle_usec = 5000000};
        assert_int_equal(paf_http_client_set_timeouts(v->client, &t), 0);
        paf_ctx *ctx = ctx_for(P.h2c_port, false, "2-prior-knowledge");
        result silent = {0}, ok = {0};
        start(v, ctx, "GET", "/silent", 0, &silent);
        start(v, ctx, "GET", "/ok", 0, &ok);
        uint64_t t0 = now_ms();
        assert_true(run_until(v->event, &silent.done, 5000));
        uint64_t took = now_ms() - t0;
        assert_non_null(silent.err);
        printf("# after %" PRIu64 " ms: %s\n", took, silent.err);
        assert_int_equal(silent.err_code, -ETIMEDOUT);
        assert_non_null(strstr(silent.err, "no response within"));
        assert_true(took >= 250);
        assert_true(run_until(v->event, &ok.done, 5000));
        if (ok.err)
                fail_msg("/ok: %s", ok.err);
        assert_string_equal(text_of(&ok), "ok /ok");
        result_done(&silent);
        result_done(&ok);
        paf_ctx_unref(ctx);
}

/* ALPN picked h2, then the server spoke HTTP/1.1: an error that names the
 * endpoint and says what went wrong. */
static void test_garbage(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.garbage_port, true, "2");
        result r = {0};
        get(v, ctx, "/", &r);
        assert_non_null(r.err);
        printf("# %s\n", r.err);
        assert_int_equal(r.err_code, -EBADMSG);
        assert_non_null(strstr(r.err, "tls localhost"));
        assert_non_null(strstr(r.err, "HTTP/2"));
        assert_non_null(strcasestr(r.err, "SETTINGS"));
        result_done(&r);
        paf_ctx_unref(ctx);
}

/* Freeing the client from a response handler, with streams in flight: the
 * other calls are not called back, nothing leaks or crashes. */
typedef struct freeing {
        env *v;
        int answered;
} freeing;

static void on_response_free(paf_http_call *call, int status, const paf_http_headers *headers,
                             const paf_error *error, void *userdata) {
        (void)call;
        (void)status;
        (void)headers;
        (void)error;
        freeing *f = userdata;
        f->answered++;
        f->v->client = paf_http_client_free(f->v->client);
}

static void test_free_in_callback(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(P.nghttpd_port, false, "2-prior-knowledge");
        freeing f = {.v = v};
        paf_http_call *calls[10];
        for (int i = 0; i < 10; i++)
                assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/file.bin", NULL,
                                                         0, on_response_free, &f, &calls[i]),
                                 0);
        uint64_t end = now_ms() + 5000;
        while (v->client && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        run_for(v->event, 100);
        assert_int_equal(f.answered, 1);
        for (int i = 0; i < 10; i++)
                paf_http_call_free(calls[i]);
        paf_ctx_unref(ctx);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_alpn, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_version, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fallback_http1, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_waiting, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connect_failure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_multiplex, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prior_knowledge, setup, teardown),
                cmocka_unit_test_setup_teardown(test_upload_echo, setup, teardown),
                cmocka_unit_test_setup_teardown(test_download_tls, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pause_window, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_mid_body, setup, teardown),
                cmocka_unit_test_setup_teardown(test_idle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_streamed_upload, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
                cmocka_unit_test_setup_teardown(test_goaway, setup, teardown),
                cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
        };
        if (!have_peers()) {
                printf("# nginx with http_v2, nghttpd, python3-h2, certtool or tls.so missing: "
                       "skipping\n");
                return 77;
        }
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
