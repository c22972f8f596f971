/* tests/http/test-static-content.c — what the static handler (paf/static.h) serves: MIME types
 * (system table and built-in fallback), directory listings (HTML, sorting, JSON), precompressed
 * siblings chosen by q-values, on-the-fly gzip (gunzipped back), HTML or plain error pages. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include <paf.h>
#include <paf/static.h>

#include "../common/paf-test.h"

typedef struct fixture {
        sd_event *event;
        paf_http_server *server;
        paf_http_static *st;
        char root[64];
        int fds_before;
} fixture;

static void put_n(fixture *f, const char *name, const char *content, size_t len) {
        char p[256];
        snprintf(p, sizeof(p), "%s/%s", f->root, name);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, len), (ssize_t)len);
        close(fd);
}

static void put(fixture *f, const char *name, const char *content) {
        put_n(f, name, content, strlen(content));
}

/* A fixed modification time: listings are then byte-exact. */
static void set_mtime(fixture *f, const char *name, time_t t) {
        char p[256];
        snprintf(p, sizeof(p), "%s/%s", f->root, name);
        struct timespec ts[2] = {{.tv_sec = t}, {.tv_sec = t}};
        assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static void mkdir_in(fixture *f, const char *name) {
        char p[256];
        snprintf(p, sizeof(p), "%s/%s", f->root, name);
        assert_int_equal(mkdir(p, 0755), 0);
}

static int setup(void **state) {
        fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        f->fds_before = count_fds();
        snprintf(f->root, sizeof(f->root), "/tmp/paf-static-c-XXXXXX");
        assert_non_null(mkdtemp(f->root));
        assert_int_equal(sd_event_new(&f->event), 0);
        assert_int_equal(paf_http_static_new(f->root, &f->st), 0);
        assert_int_equal(
                paf_http_server_new(f->event, paf_http_static_handler, NULL, f->st, &f->server), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;
        paf_http_server_free(f->server);
        run_for(f->event, 20);
        paf_http_static_unref(f->st);
        sd_event_unref(f->event);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(count_fds(), f->fds_before);
        free(f);
        return 0;
}

typedef struct answer {
        int status;
        char head[4096];
        char *body;
        size_t body_len;
        bool chunked;
} answer;

static void answer_done(answer *a) {
        free(a->body);
        a->body = NULL;
}

/* The value of a header of a.head, or "" (in a static buffer). */
static const char *header(const answer *a, const char *name) {
        static char v[512];
        v[0] = '\0';
        size_t n = strlen(name);
        for (const char *p = strstr(a->head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n"))
                if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
                        const char *s = p + 3 + n;
                        while (*s == ' ')
                                s++;
                        snprintf(v, sizeof(v), "%.*s", (int)strcspn(s, "\r"), s);
                        break;
                }
        return v;
}

/* One request on a new connection, its answer read whole (Content-Length
 * or chunked; no body for HEAD and 304): 10 s at most. */
static void request(fixture *f, const char *method, const char *target, const char *fields,
                    answer *a) {
        *a = (answer){0};
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
        paf_flow *flow;
        assert_int_equal(paf_socket_flow_new(f->event, sv[0], "test", &flow), 0);
        assert_int_equal(paf_http_server_add_flow(f->server, flow), 0);
        char req[1024];
        int rlen = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n", method, target,
                            fields ? fields : "");
        assert_int_equal(write(sv[1], req, (size_t)rlen), rlen);
        bool head = strcmp(method, "HEAD") == 0;
        size_t cap = 1 << 16, len = 0;
        char *buf = malloc(cap);
        assert_non_null(buf);
        size_t head_len = 0;
        int64_t want = -2;
        uint64_t deadline = now_ms() + 10000;
        for (;;) {
                assert_true(now_ms() < deadline);
                if (len == cap) {
                        cap *= 2;
                        buf = realloc(buf, cap);
                        assert_non_null(buf);
                }
                ssize_t k = read(sv[1], buf + len, cap - len);
                if (k > 0)
                        len += (size_t)k;
                else {
                        assert_true(k < 0 && errno == EAGAIN);
                        assert_true(sd_event_run(f->event, 10) >= 0);
                        continue;
                }
                if (!head_len) {
                        char *e = memmem(buf, len, "\r\n\r\n", 4);
                        if (!e)
                                continue;
                        head_len = (size_t)(e + 4 - buf);
                        assert_true(head_len < sizeof(a->head));
                        memcpy(a->head, buf, head_len);
                        a->head[head_len] = '\0';
                        assert_int_equal(sscanf(a->head, "HTTP/1.1 %d", &a->status), 1);
                        a->chunked = strcasecmp(header(a, "Transfer-Encoding"), "chunked") == 0;
                        const char *cl = header(a, "Content-Length"); /* static: read it now */
                        want = head || a->status == 304 ? 0 : cl[0] ? strtoll(cl, NULL, 10) : -1;
                        if (head || a->status == 304)
                                a->chunked = false;
                }
                size_t have = len - head_len;
                if (!a->chunked && want >= 0 && have >= (size_t)want) {
                        assert_int_equal(have, (size_t)want);
                        a->body = malloc(have + 1);
                        memcpy(a->body, buf + head_len, have);
                        a->body[have] = '\0';
                        a->body_len = have;
                        break;
                }
                if (a->chunked && have >= 5 && memcmp(buf + len - 5, "0\r\n\r\n", 5) == 0) {
                        char *out = malloc(have + 1);
                        size_t n = 0;
                        char *p = buf + head_len;
                        for (;;) {
                                char *nl;
                                unsigned long size = strtoul(p, &nl, 16);
                                assert_memory_equal(nl, "\r\n", 2);
                                p = nl + 2;
                                if (size == 0)
                                        break;
                                memcpy(out + n, p, size);
                                n += size;
                                p += size + 2;
                        }
                        if (p + 2 == buf + len) {
                                out[n] = '\0';
                                a->body = out;
                                a->body_len = n;
                                break;
                        }
                        free(out);
                }
        }
        free(buf);
        close(sv[1]);
        run_for(f->event, 5);
}

static void expect_type(fixture *f, const char *target, const char *type) {
        answer a;
        request(f, "GET", target, NULL, &a);
        assert_int_equal(a.status, 200);
        assert_string_equal(header(&a, "Content-Type"), type);
        answer_done(&a);
}

/* ---- MIME types ---- */

static void test_mime_types(void **state) {
        fixture *f = *state;
        const char *names[] = {"a.yaml", "a.yml", "a.mjs",   "a.wasm", "a.avif", "a.js",
                               "a.txt",  "a.foo", "a.thing", "a.JSON", "noext"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                put(f, names[i], "x");
        /* What browsers need: a module script loads only with a JavaScript
         * type, instantiateStreaming only with application/wasm. */
        expect_type(f, "/a.mjs", "text/javascript; charset=utf-8");
        expect_type(f, "/a.js", "text/javascript; charset=utf-8");
        expect_type(f, "/a.wasm", "application/wasm");
        expect_type(f, "/a.avif", "image/avif");
        expect_type(f, "/a.yaml", "application/yaml");
        expect_type(f, "/a.yml", "application/yaml");
        expect_type(f, "/a.JSON", "application/json");
        expect_type(f, "/a.txt", "text/plain; charset=utf-8");
        expect_type(f, "/noext", "application/octet-stream");
        expect_type(f, "/a.foo", "application/octet-stream");

        /* A table of one's own: its types first, the built-in ones for the rest. */
        char path[128];
        snprintf(path, sizeof(path), "%s/.types", f->root);
        FILE *t = fopen(path, "w");
        assert_non_null(t);
        fputs("# comment\napplication/x-foo\t\tfoo FOO2\ntext/x-thing thing\n"
              "application/x-first txt\nno-slash wasm\napplication/x-later foo\n",
              t);
        fclose(t);
        assert_int_equal(paf_http_static_set_mime_types(f->st, path), 0);
        expect_type(f, "/a.foo", "application/x-foo");
        expect_type(f, "/a.thing", "text/x-thing; charset=utf-8");
        expect_type(f, "/a.txt", "application/x-first");
        expect_type(f, "/a.wasm", "application/wasm");
        expect_type(f, "/a.yaml", "application/yaml");
        assert_int_equal(paf_http_static_set_mime_types(f->st, "/nonexistent/mime.types"), -ENOENT);
        expect_type(f, "/a.foo", "application/x-foo");
        /* Built-in only. */
        assert_int_equal(paf_http_static_set_mime_types(f->st, NULL), 0);
        expect_type(f, "/a.foo", "application/octet-stream");
        expect_type(f, "/a.mjs", "text/javascript; charset=utf-8");
        expect_type(f, "/a.avif", "image/avif");
        assert_int_equal(paf_http_static_set_mime_types(NULL, NULL), -EINVAL);
}

/* ---- listings ---- */

#define T0 1700000000 /* 2023-11-14 22:13:20 UTC */

static void make_tree(fixture *f) {
        mkdir_in(f, "d");
        mkdir_in(f, "d/sub");
        put(f, "d/b.txt", "0123456789");
        put(f, "d/a<&>.txt", "abc");
        put(f, "d/c d.txt", "z");
        set_mtime(f, "d/b.txt", T0);
        set_mtime(f, "d/a<&>.txt", T0 + 60);
        set_mtime(f, "d/c d.txt", T0 + 120);
        set_mtime(f, "d/sub", T0 + 180);
}

/* The order the names appear in in body. */
static void expect_order(const char *body, const char *first, const char *second,
                         const char *third) {
        const char *a = strstr(body, first), *b = strstr(body, second), *c = strstr(body, third);
        assert_non_null(a);
        assert_non_null(b);
        assert_non_null(c);
        assert_true(a < b);
        assert_true(b < c);
}

static void test_listing_html(void **state) {
        fixture *f = *state;
        make_tree(f);
        answer a;
        request(f, "GET", "/d/", "Accept: text/html\r\n", &a);
        assert_int_equal(a.status, 200);
        assert_string_equal(header(&a, "Content-Type"), "text/html; charset=utf-8");
        assert_string_equal(header(&a, "Vary"), "Accept");
        assert_non_null(strstr(a.body, "<title>Index of /d/</title>"));
        assert_non_null(strstr(a.body, "<a href=\"../\">../</a>"));
        /* Escaped names, percent-encoded links, sizes, UTC dates. */
        assert_non_null(strstr(a.body,
                               "<a href=\"./a%3C%26%3E.txt\">a&lt;&amp;&gt;.txt</a></td>"
                               "<td class=\"size\">3</td><td><time "
                               "datetime=\"2023-11-14T22:14:20Z\">2023-11-14 22:14</time>"));
        assert_non_null(strstr(a.body, "<a href=\"./c%20d.txt\">c d.txt</a></td>"
                                       "<td class=\"size\">1</td>"));
        assert_non_null(
                strstr(a.body, "<a href=\"./sub/\">sub/</a></td><td class=\"size\">-</td>"));
        /* Directories first; then by name. */
        expect_order(a.body, "./sub/", "./a%3C", "./b.txt");
        expect_order(a.body, "./a%3C", "./b.txt", "./c%20d.txt");
        /* Column links: name sorts reversed from here, the others ascending. */
        assert_non_null(strstr(a.body, "<a href=\"?sort=name&amp;order=desc\">Name</a> &#8593;"));
        assert_non_null(strstr(a.body, "<a href=\"?sort=size&amp;order=asc\">Size</a>"));
        assert_non_null(strstr(a.body, "<a href=\"?sort=date&amp;order=asc\">"));
        assert_null(strstr(a.body, "<script"));
        answer_done(&a);

        request(f, "GET", "/d/?sort=size&order=desc", NULL, &a);
        assert_int_equal(a.status, 200);
        expect_order(a.body, "./b.txt", "./a%3C", "./c%20d.txt");
        assert_non_null(strstr(a.body, "<a href=\"?sort=size&amp;order=asc\">Size</a> &#8595;"));
        answer_done(&a);
        request(f, "GET", "/d/?sort=date", NULL, &a);
        expect_order(a.body, "./b.txt", "./a%3C", "./c%20d.txt");
        answer_done(&a);
        request(f, "GET", "/d/?order=desc&sort=date", NULL, &a);
        expect_order(a.body, "./sub/", "./c%20d.txt", "./a%3C");
        expect_order(a.body, "./c%20d.txt", "./a%3C", "./b.txt");
        answer_done(&a);
        /* Unknown values: the default order. */
        request(f, "GET", "/d/?sort=bogus&order=up", NULL, &a);
        expect_order(a.body, "./a%3C", "./b.txt", "./c%20d.txt");
        answer_done(&a);
        /* The root has no parent link. */
        request(f, "GET", "/", NULL, &a);
        assert_int_equal(a.status, 200);
        assert_null(strstr(a.body, "href=\"../\""));
        assert_non_null(strstr(a.body, "<a href=\"./d/\">d/</a>"));
        answer_done(&a);
        request(f, "HEAD", "/d/", NULL, &a);
        assert_int_equal(a.status, 200);
        assert_int_equal(a.body_len, 0);
        answer_done(&a);
}

static void test_listing_json(void **state) {
        fixture *f = *state;
        make_tree(f);
        /* A name that is not UTF-8, and one with a quote and a control byte. */
        put(f, "d/\xff.bin", "");
        put(f, "d/q\"\x01\xc3\xa9", "12");
        set_mtime(f, "d/\xff.bin", T0);
        set_mtime(f, "d/q\"\x01\xc3\xa9", T0);
        answer a;
        request(f, "GET", "/d/?sort=size", "Accept: application/json\r\n", &a);
        assert_int_equal(a.status, 200);
        assert_string_equal(header(&a, "Content-Type"), "application/json");
        assert_string_equal(header(&a, "Vary"), "Accept");
        assert_string_equal(a.body,
                            "[\n"
                            "{ \"name\":\"sub\", \"type\":\"directory\", \"mtime\":\"Tue, 14 Nov "
                            "2023 22:16:20 GMT\" },\n"
                            "{ \"name\":\"\\ufffd.bin\", \"type\":\"file\", \"mtime\":\"Tue, 14 "
                            "Nov 2023 22:13:20 GMT\", \"size\":0 },\n"
                            "{ \"name\":\"c d.txt\", \"type\":\"file\", \"mtime\":\"Tue, 14 Nov "
                            "2023 22:15:20 GMT\", \"size\":1 },\n"
                            "{ \"name\":\"q\\\"\\u0001\xc3\xa9\", \"type\":\"file\", "
                            "\"mtime\":\"Tue, 14 Nov 2023 22:13:20 GMT\", \"size\":2 },\n"
                            "{ \"name\":\"a<&>.txt\", \"type\":\"file\", \"mtime\":\"Tue, 14 Nov "
                            "2023 22:14:20 GMT\", \"size\":3 },\n"
                            "{ \"name\":\"b.txt\", \"type\":\"file\", \"mtime\":\"Tue, 14 Nov "
                            "2023 22:13:20 GMT\", \"size\":10 }\n"
                            "]\n");
        answer_done(&a);
        /* A browser's Accept prefers HTML; JSON only when it wins. */
        request(f, "GET", "/d/",
                "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n", &a);
        assert_string_equal(header(&a, "Content-Type"), "text/html; charset=utf-8");
        answer_done(&a);
        request(f, "GET", "/d/", "Accept: text/html;q=0.5, application/json\r\n", &a);
        assert_string_equal(header(&a, "Content-Type"), "application/json");
        answer_done(&a);
        request(f, "GET", "/d/", "Accept: application/json;q=0\r\n", &a);
        assert_string_equal(header(&a, "Content-Type"), "text/html; charset=utf-8");
        answer_done(&a);
        /* An empty directory. */
        request(f, "GET", "/d/sub/", "Accept: application/json\r\n", &a);
        assert_string_equal(a.body, "[\n]\n");
        answer_done(&a);
}

/* ---- compression ---- */

static void expect_coding(fixture *f, const char *accept_encoding, const char *coding,
                          const char *body) {
        char fields[256] = "";
        if (accept_encoding)
                snprintf(fields, sizeof(fields), "Accept-Encoding: %s\r\n", accept_encoding);
        answer a;
        request(f, "GET", "/app.js", fields, &a);
        assert_int_equal(a.status, 200);
        assert_string_equal(header(&a, "Content-Encoding"), coding);
        assert_string_equal(header(&a, "Content-Type"), "text/javascript; charset=utf-8");
        assert_string_equal(header(&a, "Vary"), "Accept-Encoding");
        assert_string_equal(a.body, body);
        answer_done(&a);
}

static void test_precompressed(void **state) {
        fixture *f = *state;
        put(f, "app.js", "identity body\n");
        put(f, "app.js.gz", "GZ-bytes");
        put(f, "app.js.br", "BR-bytes");
        expect_coding(f, NULL, "", "identity body\n");
        expect_coding(f, "identity", "", "identity body\n");
        expect_coding(f, "gzip", "gzip", "GZ-bytes");
        expect_coding(f, "x-gzip", "gzip", "GZ-bytes");
        expect_coding(f, "gzip, deflate, br", "br", "BR-bytes");
        expect_coding(f, "br;q=0.5, gzip", "gzip", "GZ-bytes");
        expect_coding(f, "gzip;q=0.2,br;q=0.8", "br", "BR-bytes");
        expect_coding(f, "br;q=0, gzip;q=0", "", "identity body\n");
        expect_coding(f, "*", "br", "BR-bytes");
        expect_coding(f, "*;q=0.5, br;q=0", "gzip", "GZ-bytes");
        expect_coding(f, "zstd", "", "identity body\n");
        put(f, "app.js.zst", "ZSTD-bytes");
        /* The cache sees the new sibling once the file is checked again. */
        assert_int_equal(paf_http_static_set_cache(f->st, 1000, 0), 0);
        expect_coding(f, "zstd, gzip;q=0.9", "zstd", "ZSTD-bytes");
        expect_coding(f, "gzip, deflate, br, zstd", "br", "BR-bytes");

        /* The compressed representation's own ETag, ranges and HEAD. */
        answer id, a;
        request(f, "GET", "/app.js", NULL, &id);
        request(f, "GET", "/app.js", "Accept-Encoding: gzip\r\nRange: bytes=3-5\r\n", &a);
        assert_int_equal(a.status, 206);
        assert_string_equal(header(&a, "Content-Range"), "bytes 3-5/8");
        assert_string_equal(header(&a, "Content-Encoding"), "gzip");
        assert_string_equal(a.body, "byt");
        char gz_etag[128];
        snprintf(gz_etag, sizeof(gz_etag), "%s", header(&a, "ETag"));
        assert_true(gz_etag[0] == '"');
        assert_string_not_equal(gz_etag, header(&id, "ETag"));
        answer_done(&a);
        answer_done(&id);
        char fields[256];
        snprintf(fields, sizeof(fields), "Accept-Encoding: gzip\r\nIf-None-Match: %s\r\n", gz_etag);
        request(f, "GET", "/app.js", fields, &a);
        assert_int_equal(a.status, 304);
        assert_string_equal(header(&a, "Vary"), "Accept-Encoding");
        answer_done(&a);
        request(f, "HEAD", "/app.js", "Accept-Encoding: br\r\n", &a);
        assert_int_equal(a.status, 200);
        assert_string_equal(header(&a, "Content-Length"), "8");
        assert_string_equal(header(&a, "Content-Encoding"), "br");
        answer_done(&a);
        /* The sibling itself, asked for by name, is just a file. */
        request(f, "GET", "/app.js.gz", "Accept-Encoding: gzip\r\n", &a);
        assert_string_equal(header(&a, "Content-Type"), "application/gzip");
        assert_string_equal(header(&a, "Content-Encoding"), "");
        assert_string_equal(a.body, "GZ-bytes");
        answer_done(&a);
        /* Turned off: the file as it is, and no Vary. */
        assert_int_equal(paf_http_static_set_precompressed(f->st, false), 0);
        request(f, "GET", "/app.js", "Accept-Encoding: gzip, br\r\n", &a);
        assert_string_equal(a.body, "identity body\n");
        assert_string_equal(header(&a, "Vary"), "");
        answer_done(&a);
}

/* body gunzipped, as a client would. */
static char *gunzip(const char *data, size_t len, size_t *ret_len) {
        z_stream z = {0};
        assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
        size_t cap = 1 << 20, n = 0;
        char *out = malloc(cap);
        z.next_in = (unsigned char *)data;
        z.avail_in = (unsigned)len;
        int k;
        do {
                if (n == cap) {
                        cap *= 2;
                        out = realloc(out, cap);
                }
                z.next_out = (unsigned char *)out + n;
                z.avail_out = (unsigned)(cap - n);
                k = inflate(&z, Z_NO_FLUSH);
                n = cap - z.avail_out;
                assert_true(k == Z_OK || k == Z_STREAM_END);
        } while (k != Z_STREAM_END);
        assert_int_equal(z.avail_in, 0); /* nothing after the stream */
        inflateEnd(&z);
        *ret_len = n;
        return out;
}

static void test_gzip_on_the_fly(void **state) {
        fixture *f = *state;
        /* 300 KB of text: several pieces in and out. */
        size_t len = 300000;
        char *text = malloc(len);
        for (size_t i = 0; i < len; i++)
                text[i] = "abcdefghij klmnop\n"[(i * 7 + i / 1000) % 18];
        put_n(f, "big.txt", text, len);
        put(f, "small.css", "a{}");
        put_n(f, "pic.png", text, 5000);
        assert_int_equal(paf_http_static_set_gzip(f->st, true), 0);
        assert_int_equal(paf_http_static_set_gzip_min_length(f->st, 100), 0);

        answer a;
        request(f, "GET", "/big.txt", "Accept-Encoding: gzip, deflate\r\n", &a);
        assert_int_equal(a.status, 200);
        assert_true(a.chunked);
        assert_string_equal(header(&a, "Content-Encoding"), "gzip");
        assert_string_equal(header(&a, "Vary"), "Accept-Encoding");
        assert_string_equal(header(&a, "Content-Type"), "text/plain; charset=utf-8");
        assert_string_equal(header(&a, "Content-Length"), "");
        assert_string_equal(header(&a, "Accept-Ranges"), "");
        char weak[128];
        snprintf(weak, sizeof(weak), "%s", header(&a, "ETag"));
        assert_memory_equal(weak, "W/\"", 3);
        assert_true(a.body_len < len / 4);
        size_t n;
        char *plain = gunzip(a.body, a.body_len, &n);
        assert_int_equal(n, len);
        assert_memory_equal(plain, text, len);
        free(plain);
        answer_done(&a);

        /* The identity answer says Vary too; its ETag is the strong one. */
        request(f, "GET", "/big.txt", NULL, &a);
        assert_string_equal(header(&a, "Vary"), "Accept-Encoding");
        assert_string_equal(header(&a, "Content-Encoding"), "");
        assert_string_equal(header(&a, "ETag"), weak + 2);
        assert_int_equal(a.body_len, len);
        answer_done(&a);
        request(f, "GET", "/big.txt", "Accept-Encoding: gzip;q=0, br\r\n", &a);
        assert_string_equal(header(&a, "Content-Encoding"), "");
        answer_done(&a);
        /* A range: from the file as it is. */
        request(f, "GET", "/big.txt", "Accept-Encoding: gzip\r\nRange: bytes=10-19\r\n", &a);
        assert_int_equal(a.status, 206);
        assert_string_equal(header(&a, "Content-Encoding"), "");
        assert_memory_equal(a.body, text + 10, 10);
        answer_done(&a);
        /* Revalidation with the weak tag. */
        char fields[256];
        snprintf(fields, sizeof(fields), "Accept-Encoding: gzip\r\nIf-None-Match: %s\r\n", weak);
        request(f, "GET", "/big.txt", fields, &a);
        assert_int_equal(a.status, 304);
        assert_string_equal(header(&a, "ETag"), weak);
        assert_string_equal(header(&a, "Vary"), "Accept-Encoding");
        answer_done(&a);
        request(f, "HEAD", "/big.txt", "Accept-Encoding: gzip\r\n", &a);
        assert_int_equal(a.status, 200);
        assert_string_equal(header(&a, "Content-Encoding"), "gzip");
        assert_int_equal(a.body_len, 0);
        answer_done(&a);
        /* Short files and binary types: as they are, without Vary. */
        request(f, "GET", "/small.css", "Accept-Encoding: gzip\r\n", &a);
        assert_string_equal(header(&a, "Content-Encoding"), "");
        assert_string_equal(header(&a, "Vary"), "");
        assert_string_equal(a.body, "a{}");
        answer_done(&a);
        request(f, "GET", "/pic.png", "Accept-Encoding: gzip\r\n", &a);
        assert_string_equal(header(&a, "Content-Encoding"), "");
        assert_int_equal(a.body_len, 5000);
        answer_done(&a);
        /* Off (the default): no gzip, no Vary. */
        assert_int_equal(paf_http_static_set_gzip(f->st, false), 0);
        request(f, "GET", "/big.txt", "Accept-Encoding: gzip\r\n", &a);
        assert_string_equal(header(&a, "Content-Encoding"), "");
        assert_string_equal(header(&a, "Vary"), "");
        assert_int_equal(a.body_len, len);
        answer_done(&a);
        free(text);
}

/* ---- error pages ---- */

static void test_error_pages(void **state) {
        fixture *f = *state;
        answer a;
        request(f, "GET", "/nope", "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n", &a);
        assert_int_equal(a.status, 404);
        assert_string_equal(header(&a, "Content-Type"), "text/html; charset=utf-8");
        assert_string_equal(header(&a, "Vary"), "Accept");
        assert_string_equal(a.body,
                            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>404 "
                            "Not Found</title></head>\n<body><h1>404 Not "
                            "Found</h1></body></html>\n");
        answer_done(&a);
        request(f, "GET", "/nope", "Accept: */*\r\n", &a);
        assert_string_equal(header(&a, "Content-Type"), "text/plain; charset=utf-8");
        assert_string_equal(a.body, "404 Not Found\n");
        answer_done(&a);
        request(f, "GET", "/nope", NULL, &a);
        assert_string_equal(a.body, "404 Not Found\n");
        answer_done(&a);
        request(f, "GET", "/nope", "Accept: text/html;q=0, */*\r\n", &a);
        assert_string_equal(a.body, "404 Not Found\n");
        answer_done(&a);
        /* With an extra field (405's Allow), HTML still. */
        request(f, "POST", "/x", "Accept: text/html\r\nContent-Length: 0\r\n", &a);
        assert_int_equal(a.status, 405);
        assert_string_equal(header(&a, "Allow"), "GET, HEAD");
        assert_string_equal(header(&a, "Content-Type"), "text/html; charset=utf-8");
        assert_non_null(strstr(a.body, "<h1>405 Method Not Allowed</h1>"));
        answer_done(&a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_mime_types, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listing_html, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listing_json, setup, teardown),
                cmocka_unit_test_setup_teardown(test_precompressed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gzip_on_the_fly, setup, teardown),
                cmocka_unit_test_setup_teardown(test_error_pages, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
