/* tests/http/test-client.c — the HTTP client against nginx and small raw socket servers, on
 * loopback. */
#include <arpa/inet.h>
#include <dirent.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>
#include <paf/http.h>

#include "../common/nginx.h"
#include "../common/paf-test.h"

#define FILE_SIZE (300 * 1024 + 17)
#define BIG_SIZE (4 * 1024 * 1024)
/* An upload well past what the kernel buffers on loopback (TCP's send buffer
 * grows to 4 MiB at once there), read at 64 KiB every 10 ms: 1.3 s, many
 * times the 200 ms timeout the client is given. */
#define UPLOAD_SIZE (8 * 1024 * 1024)
#define SLOW_PER_TICK (64 * 1024)
#define SLOW_TICK_USEC (10 * 1000)
#define SLOW_RCVBUF (32 * 1024)

/* ---- helpers ---- */

static void write_file(const char *path, const void *data, size_t len) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
}

static uint8_t *read_file(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "re");
        if (!f)
                return NULL;
        uint8_t *buf = NULL;
        size_t len = 0, size = 0;
        for (;;) {
                if (len == size) {
                        size = size ? size * 2 : 65536;
                        buf = realloc(buf, size);
                        assert_non_null(buf);
                }
                size_t n = fread(buf + len, 1, size - len, f);
                if (n == 0)
                        break;
                len += n;
        }
        fclose(f);
        *ret_len = len;
        return buf;
}

/* Bytes that are not all alike, so that misplaced pieces show. */
static uint32_t fnv1a(uint32_t h, const uint8_t *p, size_t len) {
        for (size_t i = 0; i < len; i++)
                h = (h ^ p[i]) * 16777619u;
        return h;
}
#define FNV1A_INIT 2166136261u

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

/* ---- nginx, started by the test ---- */

static char *text_content(size_t *ret_len, bool replaced) {
        size_t size = 20000 * 40, len = 0;
        char *t = malloc(size);
        assert_non_null(t);
        for (int i = 0; i < 20000; i++)
                len += (size_t)snprintf(t + len, size - len, "line %05d %s paf\n", i,
                                        replaced ? "BBBB" : "AAAA");
        *ret_len = len;
        return t;
}

static void nginx_write_tree(nginx *n) {
        char path[PATH_MAX + 64];
        const char *dirs[] = {"www",         "www/dav",   "tmp",      "tmp/body", "tmp/proxy",
                              "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi", "logs"};
        for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", n->dir, dirs[i]);
                assert_int_equal(mkdir(path, 0755), 0);
        }
        uint8_t *data = pattern(FILE_SIZE, 1);
        snprintf(path, sizeof(path), "%s/www/file.bin", n->dir);
        write_file(path, data, FILE_SIZE);
        free(data);
        data = pattern(BIG_SIZE, 2);
        snprintf(path, sizeof(path), "%s/www/big.bin", n->dir);
        write_file(path, data, BIG_SIZE);
        free(data);
        size_t len;
        char *text = text_content(&len, false);
        snprintf(path, sizeof(path), "%s/www/text.txt", n->dir);
        write_file(path, text, len);
        free(text);
        /* nginx (not root here, or root dropping to nobody) must read it all. */
        assert_int_equal(chmod(n->dir, 0755), 0);
        snprintf(path, sizeof(path), "%s/www/dav", n->dir);
        assert_int_equal(chmod(path, 0777), 0);

        FILE *f;
        snprintf(path, sizeof(path), "%s/nginx.conf", n->dir);
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
                "  client_body_temp_path %1$s/tmp/body;\n"
                "  proxy_temp_path %1$s/tmp/proxy;\n"
                "  fastcgi_temp_path %1$s/tmp/fastcgi;\n"
                "  uwsgi_temp_path %1$s/tmp/uwsgi;\n"
                "  scgi_temp_path %1$s/tmp/scgi;\n"
                "  default_type application/octet-stream;\n"
                "  types { text/plain txt; }\n"
                "  keepalive_timeout 30s;\n"
                "  keepalive_requests 1000;\n"
                "  client_max_body_size 8m;\n"
                "  server {\n"
                "    listen 127.0.0.1:%2$d;\n"
                "    listen unix:%1$s/nginx.sock;\n"
                "    root %1$s/www;\n"
                "    location = /length { return 200 \"$content_length\"; }\n"
                "    location = /host { return 200 \"$http_host|$http_user_agent\"; }\n"
                "    location /dav/ { dav_methods PUT; }\n"
                "    location /sub/ { alias %1$s/www/; sub_filter 'AAAA' 'BBBB';\n"
                "                     sub_filter_once off; sub_filter_types text/plain; }\n"
                "    location /gz/ { alias %1$s/www/; gzip on; gzip_types text/plain;\n"
                "                    gzip_min_length 1; }\n"
                "    location /slow/ { alias %1$s/www/; limit_rate 256k; }\n"
                "  }\n"
                "}\n",
                n->dir, n->port);
        assert_int_equal(fclose(f), 0);
        snprintf(n->sock, sizeof(n->sock), "%s/nginx.sock", n->dir);
}

/* ---- raw socket servers, in a child process ---- */

typedef enum raw_mode {
        RAW_SHORT_BODY,       /* announces 5000 bytes, sends 1000, closes */
        RAW_SILENT,           /* accepts, reads, never answers */
        RAW_CLOSE_AFTER_EACH, /* answers one keep-alive response, then closes; twice */
        RAW_STALL_BODY,       /* sends the headers and part of the body, then nothing */
        RAW_HTTP10,           /* an HTTP/1.0 body that ends with the connection */
        RAW_SLOW_READER,      /* reads an UPLOAD_SIZE body slowly but steadily, then answers */
        RAW_STOP_READING,     /* reads the request head, then nothing */
} raw_mode;

typedef struct raw_server {
        pid_t pid;
        int port;
} raw_server;

/* The running one, if any: a failed test does not reach its raw_stop(). */
static pid_t raw_running;

static void raw_read_request(int fd) {
        char buf[4096];
        size_t len = 0;
        while (len < sizeof(buf) - 1) {
                ssize_t k = read(fd, buf + len, sizeof(buf) - 1 - len);
                if (k <= 0)
                        return;
                len += (size_t)k;
                buf[len] = '\0';
                if (strstr(buf, "\r\n\r\n"))
                        return;
        }
}

static void raw_write_all(int fd, const void *data, size_t len) {
        const uint8_t *p = data;
        while (len > 0) {
                ssize_t k = write(fd, p, len);
                if (k <= 0)
                        return;
                p += k;
                len -= (size_t)k;
        }
}

/* Reads the head and an UPLOAD_SIZE body at SLOW_PER_TICK bytes per tick,
 * then answers with how many bytes of body it got and their hash. */
static void raw_slow_reader(int fd) {
        static uint8_t buf[SLOW_PER_TICK];
        size_t len = 0;
        const uint8_t *end = NULL;
        while (!end && len < 4096) {
                ssize_t k = read(fd, buf + len, 4096 - len);
                if (k <= 0)
                        _exit(1);
                len += (size_t)k;
                end = memmem(buf, len, "\r\n\r\n", 4);
        }
        if (!end)
                _exit(1);
        size_t head = (size_t)(end + 4 - buf);
        uint64_t got = len - head;
        uint32_t h = fnv1a(FNV1A_INIT, buf + head, len - head);
        while (got < UPLOAD_SIZE) {
                size_t want = UPLOAD_SIZE - got < SLOW_PER_TICK ? UPLOAD_SIZE - got : SLOW_PER_TICK;
                size_t n = 0;
                while (n < want) {
                        ssize_t k = read(fd, buf + n, want - n);
                        if (k <= 0)
                                _exit(1);
                        n += (size_t)k;
                }
                h = fnv1a(h, buf, n);
                got += n;
                usleep(SLOW_TICK_USEC);
        }
        char body[64], reply[160];
        int m = snprintf(body, sizeof(body), "%" PRIu64 " %08x", got, h);
        snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", m, body);
        raw_write_all(fd, reply, strlen(reply));
        /* Until the client closes: an early close could reset the answer. */
        while (read(fd, buf, sizeof(buf)) > 0)
                ;
}

static void raw_child(int lfd, raw_mode mode) {
        alarm(20); /* never outlive a lost parent for long */
        int rounds = mode == RAW_CLOSE_AFTER_EACH ? 2 : 1;
        for (int i = 0; i < rounds; i++) {
                int fd = accept(lfd, NULL, NULL);
                if (fd < 0)
                        _exit(1);
                if (mode == RAW_SLOW_READER) {
                        raw_slow_reader(fd);
                        close(fd);
                        continue;
                }
                raw_read_request(fd);
                if (mode == RAW_SHORT_BODY) {
                        const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n";
                        raw_write_all(fd, h, strlen(h));
                        char body[1000];
                        memset(body, 'x', sizeof(body));
                        raw_write_all(fd, body, sizeof(body));
                } else if (mode == RAW_SILENT || mode == RAW_STOP_READING) {
                        pause();
                } else if (mode == RAW_STALL_BODY) {
                        const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
                        raw_write_all(fd, h, strlen(h));
                        pause();
                } else if (mode == RAW_HTTP10) {
                        const char *h = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                                        "until the end";
                        raw_write_all(fd, h, strlen(h));
                } else {
                        const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        raw_write_all(fd, r, strlen(r));
                }
                close(fd);
        }
        _exit(0);
}

static void raw_start(raw_server *s, raw_mode mode) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (mode == RAW_SLOW_READER || mode == RAW_STOP_READING) {
                /* Before listen, so that the window is small from the start:
                 * the upload waits on the reader, not on buffers. */
                int size = SLOW_RCVBUF;
                assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
        }
        assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
        assert_int_equal(listen(fd, 8), 0);
        socklen_t len = sizeof(in);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
        s->port = ntohs(in.sin_port);
        s->pid = fork();
        assert_true(s->pid >= 0);
        if (s->pid == 0)
                raw_child(fd, mode);
        close(fd);
        raw_running = s->pid;
}

static void raw_stop(raw_server *s) {
        if (s->pid <= 0)
                return;
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
        raw_running = 0;
}

/* ---- the client side ---- */

static nginx ngx; /* shared by the nginx group */

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
        assert_int_equal(paf_http_client_new(v->reg, v->event, &v->client), 0);
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        if (raw_running > 0)
                raw_stop(&(raw_server){.pid = raw_running});
        paf_http_client_free(v->client);
        /* Closing flows finish on the loop. */
        run_for(v->event, 30);
        paf_registry_unref(v->reg);
        sd_event_unref(v->event);
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

typedef struct result {
        bool responded, done;
        int status;
        char *te, *cl, *ce, *connection;
        int err_code;
        char *err;
        int body_error;
        uint8_t *body;
        size_t n_body, size;
        unsigned pieces;
        /* What the callbacks do. */
        bool no_read;          /* do not read the body */
        bool free_in_response; /* free the call from the response handler */
        size_t free_after;     /* free the call from the body handler past this many bytes */
        bool pause_first;      /* pause after the first piece */
        bool paused;
        paf_http_call *call;
        /* A request to make from the end of the body. */
        paf_http_client *chain_client;
        paf_ctx *chain_ctx;
        struct result *chain;
} result;

static void result_done(result *r) {
        free(r->te);
        free(r->cl);
        free(r->ce);
        free(r->connection);
        free(r->err);
        free(r->body);
        paf_http_call_free(r->call);
        *r = (result){0};
}

static char *dup_header(const paf_http_headers *h, const char *name) {
        const char *v = paf_http_headers_get(h, name);
        return v ? strdup(v) : NULL;
}

static void on_response(paf_http_call *call, int status, const paf_http_headers *headers,
                        const paf_error *error, void *userdata);

static void on_body(paf_http_call *call, const void *data, size_t len, int error, void *userdata) {
        result *r = userdata;
        assert_false(r->done);
        if (error < 0) {
                r->body_error = error;
                r->done = true;
                return;
        }
        if (len == 0) {
                r->done = true;
                if (r->chain)
                        assert_int_equal(paf_http_client_request(
                                                 r->chain_client, r->chain_ctx, "GET", "/again",
                                                 NULL, 0, on_response, r->chain, &r->chain->call),
                                         0);
                return;
        }
        r->pieces++;
        if (r->n_body + len > r->size) {
                r->size = (r->n_body + len) * 2;
                r->body = realloc(r->body, r->size);
                assert_non_null(r->body);
        }
        memcpy(r->body + r->n_body, data, len);
        r->n_body += len;
        if (r->pause_first && r->pieces == 1) {
                assert_int_equal(paf_http_call_pause(call), 0);
                r->paused = true;
        }
        if (r->free_after > 0 && r->n_body >= r->free_after) {
                assert_ptr_equal(call, r->call);
                paf_http_call_free(call);
                r->call = NULL;
                r->done = true;
        }
}

static void on_response(paf_http_call *call, int status, const paf_http_headers *headers,
                        const paf_error *error, void *userdata) {
        result *r = userdata;
        assert_false(r->responded);
        r->responded = true;
        if (error) {
                assert_int_equal(status, 0);
                r->err_code = error->code;
                r->err = strdup(error->message);
                r->done = true;
                return;
        }
        r->status = status;
        r->te = dup_header(headers, "Transfer-Encoding");
        r->cl = dup_header(headers, "Content-Length");
        r->ce = dup_header(headers, "Content-Encoding");
        r->connection = dup_header(headers, "Connection");
        if (r->free_in_response) {
                paf_http_call_free(call);
                r->call = NULL;
                r->done = true;
                return;
        }
        if (!r->no_read)
                assert_int_equal(paf_http_call_read_body(call, on_body, r), 0);
}

static paf_ctx *tcp_ctx(int port) {
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tcp.host", "127.0.0.1"), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "tcp.port", port), 0);
        return ctx;
}

static void on_call_written(paf_http_call *call, int error, void *userdata) {
        (void)call;
        unsigned *n = userdata;
        assert_int_equal(error, 0);
        (*n)++;
}

/* Send a request, with an optional body (chunked: in three writes), and
 * wait for the response to end. */
static void request(env *v, paf_ctx *ctx, const char *method, const char *target,
                    const paf_http_headers *headers, const void *body, size_t len, bool chunked,
                    result *r) {
        int64_t length = chunked ? -1 : (int64_t)len;
        assert_int_equal(paf_http_client_request(v->client, ctx, method, target, headers, length,
                                                 on_response, r, &r->call),
                         0);
        unsigned written = 0, expected = 0;
        if (chunked) {
                size_t a = len / 3, b = len / 3;
                const uint8_t *p = body;
                assert_int_equal(paf_http_call_write(r->call, p, a, on_call_written, &written), 0);
                assert_int_equal(paf_http_call_write(r->call, p + a, b, on_call_written, &written),
                                 0);
                assert_int_equal(paf_http_call_write(r->call, p + a + b, len - a - b,
                                                     on_call_written, &written),
                                 0);
                expected = 3;
        } else if (len > 0) {
                assert_int_equal(paf_http_call_write(r->call, body, len, on_call_written, &written),
                                 0);
                expected = 1;
        }
        assert_int_equal(paf_http_call_finish(r->call), 0);
        if (!run_until(v->event, &r->done, 10000))
                fail_msg("%s %s: no end within 10 s", method, target);
        assert_int_equal(written, expected);
}

static void get_ok(env *v, paf_ctx *ctx, const char *target, result *r) {
        request(v, ctx, "GET", target, NULL, NULL, 0, false, r);
        if (r->err)
                fail_msg("GET %s: %s", target, r->err);
        assert_int_equal(r->body_error, 0);
        assert_int_equal(r->status, 200);
}

static void assert_file_body(const result *r, const char *name) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof(path), "%s/www/%s", ngx.dir, name);
        size_t len;
        uint8_t *data = read_file(path, &len);
        assert_non_null(data);
        assert_int_equal(r->n_body, len);
        assert_memory_equal(r->body, data, len);
        free(data);
}

/* ---- tests against nginx ---- */

static void test_get_static_file(void **state) {
        env *v = *state;
        paf_ctx *ctx = tcp_ctx(ngx.port);
        result r = {0};
        get_ok(v, ctx, "/file.bin", &r);
        assert_string_equal(r.cl, "307217");
        assert_null(r.te);
        assert_file_body(&r, "file.bin");
        char want[64];
        snprintf(want, sizeof(want), "tcp 127.0.0.1:%d", ngx.port);
        assert_string_equal(paf_http_call_get_endpoint(r.call), want);
        result_done(&r);

        /* Host and User-Agent as nginx saw them. */
        get_ok(v, ctx, "/host", &r);
        snprintf(want, sizeof(want), "127.0.0.1:%d|paf/", ngx.port);
        assert_true(r.n_body > strlen(want));
        assert_memory_equal(r.body, want, strlen(want));
        result_done(&r);
        paf_ctx_unref(ctx);
}

static void test_missing_is_404(void **state) {
        env *v = *state;
        paf_ctx *ctx = tcp_ctx(ngx.port);
        result r = {0};
        request(v, ctx, "GET", "/nope.bin", NULL, NULL, 0, false, &r);
        assert_null(r.err);
        assert_int_equal(r.status, 404);
        assert_int_equal(r.body_error, 0);
        assert_true(r.n_body > 0);
        result_done(&r);
        paf_ctx_unref(ctx);
}

static void test_head(void **state) {
        env *v = *state;
        paf_ctx *ctx = tcp_ctx(ngx.port);
        result r = {0};
        request(v, ctx, "HEAD", "/file.bin", NULL, NULL, 0, false, &r);
        assert_null(r.err);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.cl, "307217");
        assert_int_equal(r.n_body, 0);
        assert_int_equal(r.body_error, 0);
        result_done(&r);
        /* Nothing was left on the connection: the next request reuses it. */
        get_ok(v, ctx, "/file.bin", &r);
        assert_file_body(&r, "file.bin");
        assert_int_equal(paf_http_client_get_n_connections(v->client), 1);
        result_done(&r);
        paf_ctx_unref(ctx);
}

static void test_request_bodies(void **state) {
        env *v = *state;
        paf_ctx *ctx = tcp_ctx(ngx.port);
        uint8_t *body = pattern(100000, 7);
        result r = {0};

        /* Content-Length: nginx reports what it was told. */
        request(v, ctx, "POST", "/length", NULL, body, 12345, false, &r);
        assert_null(r.err);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.n_body, 5);
        assert_memory_equal(r.body, "12345", 5);
        result_done(&r);

        /* PUT through DAV stores exactly what it decoded: both framings. */
        request(v, ctx, "PUT", "/dav/length.bin", NULL, body, 100000, false, &r);
        assert_null(r.err);
        assert_int_equal(r.status, 201);
        result_done(&r);
        request(v, ctx, "PUT", "/dav/chunked.bin", NULL, body, 99999, true, &r);
        assert_null(r.err);
        assert_int_equal(r.status, 201);
        result_done(&r);

        get_ok(v, ctx, "/dav/length.bin", &r);
        assert_int_equal(r.n_body, 100000);
        assert_memory_equal(r.body, body, 100000);
        result_done(&r);
        get_ok(v, ctx, "/dav/chunked.bin", &r);
        assert_int_equal(r.n_body, 99999);
        assert_memory_equal(r.body, body, 99999);
        result_done(&r);

        /* All of it over one connection: the framing left nothing behind. */
        assert_int_equal(paf_http_client_get_n_connections(v->client), 1);
        free(body);
        paf_ctx_unref(ctx);
}

static void test_chunked_response(void **state) {
        env *v = *state;
        paf_ctx *ctx = tcp_ctx(ngx.port);
        result r = {0};
        size_t len;

        /* sub_filter changes the length: nginx streams it chunked. */
        get_ok(v, ctx, "/sub/text.txt", &r);
        assert_non_null(r.te);
        assert_string_equal(r.te, "chunked");
        assert_null(r.cl);
        char *want = text_content(&len, true);
        assert_int_equal(r.n_body, len);
        assert_memory_equal(r.body, want, len);
        free(want);
        result_done(&r);

        /* gzip: chunked too; the decoded stream must decompress to the file. */
        paf_http_headers *h;
        assert_int_equal(paf_http_headers_new(&h), 0);
        assert_int_equal(paf_http_headers_add(h, "Accept-Encoding", "gzip"), 0);
        request(v, ctx, "GET", "/gz/text.txt", h, NULL, 0, false, &r);
        assert_null(r.err);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.te, "chunked");
        assert_string_equal(r.ce, "gzip");
        want = text_content(&len, false);
        assert_true(r.n_body < len / 4);
        char gz[PATH_MAX + 16], out[PATH_MAX + 16], cmd[3 * PATH_MAX];
        snprintf(gz, sizeof(gz), "%s/tmp/text.gz", ngx.dir);
        snprintf(out, sizeof(out), "%s/tmp/text.out", ngx.dir);
        write_file(gz, r.body, r.n_body);
        snprintf(cmd, sizeof(cmd), "gzip -dc '%s' > '%s'", gz, out);
        assert_int_equal(system(cmd), 0);
        size_t n_out;
        uint8_t *decoded = read_file(out, &n_out);
        assert_non_null(decoded);
        assert_int_equal(n_out, len);
        assert_memory_equal(decoded, want, len);
        free(decoded);
        free(want);
        result_done(&r);
        paf_http_headers_free(h);
        paf_ctx_unref(ctx);
}

static void test_connection_reuse(void **state) {
        env *v = *state;
        paf_ctx *ctx = tcp_ctx(ngx.port);
        for (int i = 0; i < 5; i++) {
                result r = {0};
                get_ok(v, ctx, i % 2 ? "/file.bin" : "/sub/text.txt", &r);
                assert_non_null(r.connection);
                assert_string_equal(r.connection, "keep-alive");
                result_done(&r);
        }
        assert_int_equal(paf_http_client_get_n_connections(v->client), 1);

        /* Connection: close from us: the next request needs a new one. */
        paf_http_headers *h;
        assert_int_equal(paf_http_headers_new(&h), 0);
        assert_int_equal(paf_http_headers_add(h, "Connection", "close"), 0);
        result r = {0};
        request(v, ctx, "GET", "/file.bin", h, NULL, 0, false, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.connection, "close");
        result_done(&r);
        get_ok(v, ctx, "/file.bin", &r);
        result_done(&r);
        assert_int_equal(paf_http_client_get_n_connections(v->client), 2);
        paf_http_headers_free(h);
        paf_ctx_unref(ctx);
}

static void test_idle_timeout_closes(void **state) {
        env *v = *state;
        paf_http_client_timeouts t = {
                .connect_usec = 5000000, .response_usec = 5000000, .idle_usec = 100000};
        assert_int_equal(paf_http_client_set_timeouts(v->client, &t), 0);
        paf_ctx *ctx = tcp_ctx(ngx.port);
        result r = {0};
        get_ok(v, ctx, "/length", &r);
        result_done(&r);
        int fds = count_fds();
        run_for(v->event, 300);
        /* Our idle timer closed it (and with the loop's last socket flow,
         * the socket poller went too). */
        assert_int_equal(count_fds(), fds - 2);
        get_ok(v, ctx, "/length", &r);
        result_done(&r);
        assert_int_equal(paf_http_client_get_n_connections(v->client), 2);
        paf_ctx_unref(ctx);
}

static void test_pause_resume(void **state) {
        env *v = *state;
        paf_ctx *ctx = tcp_ctx(ngx.port);
        result r = {.pause_first = true};
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/file.bin", NULL, 0,
                                                 on_response, &r, &r.call),
                         0);
        assert_true(run_until(v->event, &r.paused, 5000));
        run_for(v->event, 200);
        /* Paused: nothing more came. */
        assert_int_equal(r.pieces, 1);
        assert_false(r.done);
        assert_int_equal(paf_http_call_resume(r.call), 0);
        assert_true(run_until(v->event, &r.done, 5000));
        assert_int_equal(r.body_error, 0);
        assert_file_body(&r, "file.bin");
        result_done(&r);
        paf_ctx_unref(ctx);
}

static void test_read_body_later(void **state) {
        env *v = *state;
        paf_ctx *ctx = tcp_ctx(ngx.port);
        result r = {.no_read = true};
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/file.bin", NULL, 0,
                                                 on_response, &r, &r.call),
                         0);
        assert_true(run_until(v->event, &r.responded, 5000));
        run_for(v->event, 100);
        assert_int_equal(paf_http_call_read_body(r.call, on_body, &r), 0);
        assert_true(run_until(v->event, &r.done, 5000));
        assert_file_body(&r, "file.bin");
        result_done(&r);
        paf_ctx_unref(ctx);
}

static void test_free_from_callbacks(void **state) {
        env *v = *state;
        paf_ctx *ctx = tcp_ctx(ngx.port);

        result r = {.free_in_response = true};
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/file.bin", NULL, 0,
                                                 on_response, &r, &r.call),
                         0);
        assert_true(run_until(v->event, &r.done, 5000));
        result_done(&r);

        r = (result){.free_after = 1};
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/file.bin", NULL, 0,
                                                 on_response, &r, &r.call),
                         0);
        assert_true(run_until(v->event, &r.done, 5000));
        assert_true(r.n_body < FILE_SIZE);
        result_done(&r);

        /* Freed while connecting, and right after being sent. */
        paf_http_call *call;
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/file.bin", NULL, 0,
                                                 on_response, NULL, &call),
                         0);
        paf_http_call_free(call);
        run_for(v->event, 50);

        /* Neither aborted connection went back to the pool. */
        get_ok(v, ctx, "/file.bin", &r);
        result_done(&r);
        assert_int_equal(paf_http_client_get_n_connections(v->client), 3);

        /* The client goes with a call in flight; the call is still ours to free. */
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/slow/big.bin", NULL, 0,
                                                 on_response, &r, &r.call),
                         0);
        assert_true(run_until(v->event, &r.responded, 5000));
        paf_http_client_free(v->client);
        v->client = NULL;
        run_for(v->event, 50);
        assert_false(r.done);
        result_done(&r);
        paf_ctx_unref(ctx);
}

static void test_unix_socket(void **state) {
        env *v = *state;
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "unix.path", ngx.sock), 0);
        result r = {0};
        get_ok(v, ctx, "/file.bin", &r);
        assert_file_body(&r, "file.bin");
        char want[PATH_MAX + 8];
        snprintf(want, sizeof(want), "unix %s", ngx.sock);
        assert_string_equal(paf_http_call_get_endpoint(r.call), want);
        result_done(&r);
        get_ok(v, ctx, "/host", &r);
        assert_memory_equal(r.body, "localhost|paf/", 14);
        result_done(&r);
        assert_int_equal(paf_http_client_get_n_connections(v->client), 1);
        paf_ctx_unref(ctx);
}

/* nginx dies in the middle of a rate-limited body: an error, not a short success. */
static void test_server_killed_mid_body(void **state) {
        env *v = *state;
        nginx own;
        assert_true(nginx_start(&own, nginx_write_tree));
        paf_ctx *ctx = tcp_ctx(own.port);
        result r = {0};
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/slow/big.bin", NULL, 0,
                                                 on_response, &r, &r.call),
                         0);
        uint64_t end = now_ms() + 5000;
        while (r.n_body == 0 && !r.done && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_int_equal(r.status, 200);
        assert_true(r.n_body > 0);
        kill(own.pid, SIGKILL);
        waitpid(own.pid, NULL, 0);
        own.pid = 0;
        assert_true(run_until(v->event, &r.done, 5000));
        assert_true(r.body_error == -EPIPE || r.body_error == -ECONNRESET);
        assert_true(r.n_body < BIG_SIZE);
        result_done(&r);
        paf_ctx_unref(ctx);
        nginx_rm_tree(&own);
}

/* ---- tests against raw servers ---- */

static void test_short_body_is_an_error(void **state) {
        env *v = *state;
        raw_server s;
        raw_start(&s, RAW_SHORT_BODY);
        paf_ctx *ctx = tcp_ctx(s.port);
        result r = {0};
        request(v, ctx, "GET", "/short", NULL, NULL, 0, false, &r);
        assert_null(r.err);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.n_body, 1000);
        assert_int_equal(r.body_error, -EPIPE);
        result_done(&r);
        raw_stop(&s);
        paf_ctx_unref(ctx);
}

static void test_connection_refused(void **state) {
        env *v = *state;
        paf_ctx *ctx = tcp_ctx(1);
        result r = {0};
        request(v, ctx, "GET", "/x", NULL, NULL, 0, false, &r);
        assert_int_equal(r.err_code, -ECONNREFUSED);
        assert_string_equal(r.err, "GET /x: tcp 127.0.0.1:1: Connection refused");
        result_done(&r);

        /* No transport at all: said so, with why. */
        paf_ctx *empty;
        assert_int_equal(paf_ctx_new(&empty), 0);
        request(v, empty, "GET", "/y", NULL, NULL, 0, false, &r);
        assert_true(r.err_code < 0);
        assert_non_null(strstr(r.err, "GET /y: no transport for this request:\n  "));
        assert_non_null(strstr(r.err, "tcp.host"));
        result_done(&r);
        paf_ctx_unref(empty);
        paf_ctx_unref(ctx);
}

static void test_response_timeout(void **state) {
        env *v = *state;
        paf_http_client_timeouts t = {
                .connect_usec = 5000000, .response_usec = 300000, .idle_usec = 5000000};
        assert_int_equal(paf_http_client_set_timeouts(v->client, &t), 0);
        raw_server s;
        raw_start(&s, RAW_SILENT);
        paf_ctx *ctx = tcp_ctx(s.port);
        result r = {0};
        uint64_t start = now_ms();
        request(v, ctx, "GET", "/silent", NULL, NULL, 0, false, &r);
        uint64_t took = now_ms() - start;
        assert_int_equal(r.err_code, -ETIMEDOUT);
        char want[128];
        snprintf(want, sizeof(want), "GET /silent: tcp 127.0.0.1:%d: no response within 0.3 s",
                 s.port);
        assert_string_equal(r.err, want);
        assert_true(took >= 250 && took < 3000);
        result_done(&r);
        raw_stop(&s);
        paf_ctx_unref(ctx);
}

static void test_body_stall_timeout(void **state) {
        env *v = *state;
        paf_http_client_timeouts t = {
                .connect_usec = 5000000, .response_usec = 300000, .idle_usec = 5000000};
        assert_int_equal(paf_http_client_set_timeouts(v->client, &t), 0);
        raw_server s;
        raw_start(&s, RAW_STALL_BODY);
        paf_ctx *ctx = tcp_ctx(s.port);
        result r = {0};
        request(v, ctx, "GET", "/stall", NULL, NULL, 0, false, &r);
        assert_null(r.err);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.n_body, 10);
        assert_int_equal(r.body_error, -ETIMEDOUT);
        result_done(&r);
        raw_stop(&s);
        paf_ctx_unref(ctx);
}

static void on_upload_written(paf_http_call *call, int error, void *userdata) {
        (void)call;
        int *ret = userdata;
        *ret = error;
}

/* PUT an UPLOAD_SIZE body in one write; returns how long until the call ended. */
static uint64_t upload(env *v, int port, result *r, int *written) {
        paf_http_client_timeouts t = {
                .connect_usec = 5000000, .response_usec = 200000, .idle_usec = 5000000};
        assert_int_equal(paf_http_client_set_timeouts(v->client, &t), 0);
        uint8_t *body = pattern(UPLOAD_SIZE, 3);
        paf_ctx *ctx = tcp_ctx(port);
        uint64_t start = now_ms();
        assert_int_equal(paf_http_client_request(v->client, ctx, "PUT", "/upload", NULL,
                                                 UPLOAD_SIZE, on_response, r, &r->call),
                         0);
        *written = 1;
        assert_int_equal(
                paf_http_call_write(r->call, body, UPLOAD_SIZE, on_upload_written, written), 0);
        assert_int_equal(paf_http_call_finish(r->call), 0);
        if (!run_until(v->event, &r->done, 10000))
                fail_msg("PUT /upload: no end within 10 s");
        uint64_t took = now_ms() - start;
        /* A failed call's write learns it from the loop. */
        for (int i = 0; i < 100 && *written == 1; i++)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        free(body);
        paf_ctx_unref(ctx);
        return took;
}

/* A server that reads slowly but steadily takes the whole upload, although
 * no write of it completes within the response timeout: the timeout counts
 * from the last byte the transport took, not from the last write done. */
static void test_slow_reader_upload(void **state) {
        env *v = *state;
        raw_server s;
        raw_start(&s, RAW_SLOW_READER);
        result r = {0};
        int written;
        uint64_t took = upload(v, s.port, &r, &written);
        if (r.err)
                fail_msg("after %" PRIu64 " ms: %s", took, r.err);
        assert_int_equal(written, 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_error, 0);
        uint8_t *body = pattern(UPLOAD_SIZE, 3);
        char want[64];
        snprintf(want, sizeof(want), "%d %08x", UPLOAD_SIZE, fnv1a(FNV1A_INIT, body, UPLOAD_SIZE));
        free(body);
        assert_int_equal(r.n_body, strlen(want));
        assert_memory_equal(r.body, want, strlen(want));
        print_message("slow reader: %d bytes taken in %" PRIu64 " ms\n", UPLOAD_SIZE, took);
        /* It did outlast the timeout, many times. */
        assert_true(took >= 5 * 200);
        result_done(&r);
        raw_stop(&s);
}

/* One that stops reading is cut one timeout after the transport last took a
 * byte, with what was sent. */
static void test_stalled_upload_times_out(void **state) {
        env *v = *state;
        raw_server s;
        raw_start(&s, RAW_STOP_READING);
        result r = {0};
        int written;
        uint64_t took = upload(v, s.port, &r, &written);
        assert_int_equal(r.err_code, -ETIMEDOUT);
        char want[128];
        snprintf(want, sizeof(want),
                 "PUT /upload: tcp 127.0.0.1:%d: request stalled for 0.2 s after ", s.port);
        if (strncmp(r.err, want, strlen(want)) != 0)
                fail_msg("got \"%s\", want \"%s…\"", r.err, want);
        print_message("stopped reader: cut after %" PRIu64 " ms: %s\n", took, r.err);
        assert_true(written < 0);
        assert_true(took >= 190 && took < 1000);
        result_done(&r);
        raw_stop(&s);
}

static void test_http10_until_close(void **state) {
        env *v = *state;
        raw_server s;
        raw_start(&s, RAW_HTTP10);
        paf_ctx *ctx = tcp_ctx(s.port);
        result r = {0};
        request(v, ctx, "GET", "/old", NULL, NULL, 0, false, &r);
        assert_null(r.err);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_error, 0);
        assert_int_equal(r.n_body, 13);
        assert_memory_equal(r.body, "until the end", 13);
        result_done(&r);
        raw_stop(&s);
        paf_ctx_unref(ctx);
}

/* A listener whose accept queue is full drops SYNs: connect hangs. */
static void test_connect_timeout(void **state) {
        env *v = *state;
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0);
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(lfd, (struct sockaddr *)&in, sizeof(in)), 0);
        assert_int_equal(listen(lfd, 0), 0);
        socklen_t len = sizeof(in);
        assert_int_equal(getsockname(lfd, (struct sockaddr *)&in, &len), 0);
        int fill[4];
        for (int i = 0; i < 4; i++) {
                fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                assert_true(fill[i] >= 0);
                (void)connect(fill[i], (struct sockaddr *)&in, sizeof(in));
        }
        usleep(50 * 1000);
        paf_http_client_timeouts t = {
                .connect_usec = 300000, .response_usec = 5000000, .idle_usec = 5000000};
        assert_int_equal(paf_http_client_set_timeouts(v->client, &t), 0);
        paf_ctx *ctx = tcp_ctx(ntohs(in.sin_port));
        result r = {0};
        request(v, ctx, "GET", "/x", NULL, NULL, 0, false, &r);
        assert_int_equal(r.err_code, -ETIMEDOUT);
        char want[128];
        snprintf(want, sizeof(want), "GET /x: tcp 127.0.0.1:%d: connect timeout after 0.3 s",
                 ntohs(in.sin_port));
        assert_string_equal(r.err, want);
        result_done(&r);

        /* Paused, or reading the body, before it connected: still timed. */
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/x", NULL, 0, on_response,
                                                 &r, &r.call),
                         0);
        assert_int_equal(paf_http_call_pause(r.call), 0);
        assert_int_equal(paf_http_call_read_body(r.call, on_body, &r), 0);
        if (!run_until(v->event, &r.done, 5000))
                fail_msg("GET /x, paused while connecting: no end within 5 s");
        assert_string_equal(r.err, want);
        result_done(&r);
        paf_ctx_unref(ctx);
        for (int i = 0; i < 4; i++)
                close(fill[i]);
        close(lfd);
}

/* The server closes a kept-alive connection right after its response; the
 * next request, made before the client could notice, is sent again once. */
static void test_retry_on_stale_connection(void **state) {
        env *v = *state;
        raw_server s;
        raw_start(&s, RAW_CLOSE_AFTER_EACH);
        paf_ctx *ctx = tcp_ctx(s.port);
        result second = {0};
        result first = {.chain = &second, .chain_client = v->client, .chain_ctx = ctx};
        request(v, ctx, "GET", "/first", NULL, NULL, 0, false, &first);
        assert_int_equal(first.status, 200);
        assert_true(run_until(v->event, &second.done, 5000));
        if (second.err)
                fail_msg("second request: %s", second.err);
        assert_int_equal(second.status, 200);
        assert_int_equal(second.body_error, 0);
        assert_int_equal(second.n_body, 2);
        assert_memory_equal(second.body, "ok", 2);
        assert_int_equal(paf_http_client_get_n_connections(v->client), 2);
        result_done(&second);
        result_done(&first);
        raw_stop(&s);
        paf_ctx_unref(ctx);
}

static void test_bad_arguments(void **state) {
        env *v = *state;
        paf_ctx *ctx = tcp_ctx(1);
        paf_http_call *call = NULL;
        assert_int_equal(
                paf_http_client_request(NULL, ctx, "GET", "/", NULL, 0, on_response, NULL, &call),
                -EINVAL);
        assert_int_equal(paf_http_client_request(v->client, ctx, "GE T", "/", NULL, 0, on_response,
                                                 NULL, &call),
                         -EINVAL);
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/a b", NULL, 0,
                                                 on_response, NULL, &call),
                         -EINVAL);
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/", NULL, -2, on_response,
                                                 NULL, &call),
                         -EINVAL);
        assert_null(call);
        assert_int_equal(paf_http_client_new(NULL, v->event, NULL), -EINVAL);
        assert_int_equal(paf_http_client_set_timeouts(v->client, NULL), -EINVAL);
        assert_int_equal(paf_http_call_write(NULL, "x", 1, NULL, NULL), -EINVAL);
        assert_null(paf_http_client_free(NULL));
        assert_null(paf_http_call_free(NULL));

        /* A Content-Length body may not run over. */
        assert_int_equal(paf_http_client_request(v->client, ctx, "POST", "/", NULL, 2, on_response,
                                                 NULL, &call),
                         0);
        assert_int_equal(paf_http_call_write(call, "abc", 3, NULL, NULL), -EINVAL);
        assert_int_equal(paf_http_call_finish(call), -EINVAL);
        paf_http_call_free(call);
        paf_ctx_unref(ctx);
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
        /* Children that die must not take us down through a write. */
        signal(SIGPIPE, SIG_IGN);
        if (getenv("PAF_TEST_DEBUG"))
                paf_log_set_level(PAF_LOG_DEBUG);

        const struct CMUnitTest raw[] = {
                cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
                cmocka_unit_test_setup_teardown(test_short_body_is_an_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_response_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retry_on_stale_connection, setup, teardown),
                cmocka_unit_test_setup_teardown(test_body_stall_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_http10_until_close, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_slow_reader_upload, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stalled_upload_times_out, setup, teardown),
        };
        int failed = cmocka_run_group_tests_name("http-client-raw", raw, NULL, NULL);

        if (access(NGINX, X_OK) != 0) {
                fprintf(stderr,
                        "http-client: %s not found (Debian package nginx-light): "
                        "skipping the tests against nginx\n",
                        NGINX);
                return failed ? 1 : 77;
        }
        const struct CMUnitTest with_nginx[] = {
                cmocka_unit_test_setup_teardown(test_get_static_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_is_404, setup, teardown),
                cmocka_unit_test_setup_teardown(test_head, setup, teardown),
                cmocka_unit_test_setup_teardown(test_request_bodies, setup, teardown),
                cmocka_unit_test_setup_teardown(test_chunked_response, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connection_reuse, setup, teardown),
                cmocka_unit_test_setup_teardown(test_idle_timeout_closes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_body_later, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_from_callbacks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
                cmocka_unit_test_setup_teardown(test_server_killed_mid_body, setup, teardown),
        };
        failed += cmocka_run_group_tests_name("http-client-nginx", with_nginx, nginx_group_setup,
                                              nginx_group_teardown);
        return failed ? 1 : 0;
}
