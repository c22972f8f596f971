/* tests/http/test-static.c — the static file handler (paf/static.h) over socketpairs: the open-file
 * cache (changes, replacements and deletions seen after the validity time, bounded descriptors),
 * file bodies through paf_http_response_send_file (chunked, HEAD, ranges). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

#include <cmocka.h>

#include <paf.h>
#include <paf/static.h>

#include "../common/paf-test.h"

#define ELEMENTS(x) (sizeof(x) / sizeof((x)[0]))

typedef struct fixture {
        sd_event *event;
        paf_http_server *server;
        paf_http_static *st;
        char root[64];
        int fds_before;
        /* The handler of the send_file tests, instead of st. */
        int file;
        int64_t length; /* the response's Content-Length (-1: chunked) */
} fixture;

static void path_of(fixture *f, const char *name, char *buf, size_t size) {
        snprintf(buf, size, "%s/%s", f->root, name);
}

static void put(fixture *f, const char *name, const char *content) {
        char p[256];
        path_of(f, name, p, sizeof(p));
        /* In place: same inode, new content and size. */
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
        close(fd);
}

static int setup(void **state) {
        fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        f->fds_before = count_fds();
        f->file = -1;
        snprintf(f->root, sizeof(f->root), "/tmp/paf-static-XXXXXX");
        assert_non_null(mkdtemp(f->root));
        assert_int_equal(sd_event_new(&f->event), 0);
        assert_int_equal(paf_http_static_new(f->root, &f->st), 0);
        assert_int_equal(
                paf_http_server_new(f->event, paf_http_static_handler, NULL, f->st, &f->server), 0);
        *state = f;
        return 0;
}

static void rm_tree(const char *root) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        assert_int_equal(system(cmd), 0);
}

static int teardown(void **state) {
        fixture *f = *state;
        paf_http_server_free(f->server);
        run_for(f->event, 20);
        paf_http_static_unref(f->st);
        sd_event_unref(f->event);
        if (f->file >= 0)
                close(f->file);
        rm_tree(f->root);
        assert_int_equal(count_fds(), f->fds_before);
        free(f);
        return 0;
}

/* A connection to the server; returns the client's end. */
static int connect_client(fixture *f) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
        paf_flow *flow;
        assert_int_equal(paf_socket_flow_new(f->event, sv[0], "test", &flow), 0);
        assert_int_equal(paf_http_server_add_flow(f->server, flow), 0);
        return sv[1];
}

typedef struct answer {
        int status;
        char head[4096];
        char *body;
        size_t body_len;
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
                        size_t len = strcspn(s, "\r");
                        snprintf(v, sizeof(v), "%.*s", (int)len, s);
                        break;
                }
        return v;
}

/* Sends request on fd and reads one answer (Content-Length or chunked
 * body; none for HEAD and 304), running the loop meanwhile; 10 s at most. */
static void exchange(fixture *f, int fd, const char *request, bool head, answer *a) {
        *a = (answer){0};
        size_t rlen = strlen(request);
        assert_int_equal(write(fd, request, rlen), (ssize_t)rlen);
        size_t cap = 1 << 16, len = 0;
        char *buf = malloc(cap);
        assert_non_null(buf);
        char *end = NULL; /* of the head, in buf */
        size_t head_len = 0;
        int64_t want = -2; /* unknown yet */
        bool chunked = false;
        uint64_t deadline = now_ms() + 10000;
        for (;;) {
                assert_true(now_ms() < deadline);
                if (len == cap) {
                        cap *= 2;
                        buf = realloc(buf, cap);
                        assert_non_null(buf);
                        if (end)
                                end = buf + head_len;
                }
                ssize_t k = read(fd, buf + len, cap - len);
                if (k > 0)
                        len += (size_t)k;
                else {
                        assert_true(k < 0 && errno == EAGAIN);
                        assert_true(sd_event_run(f->event, 10) >= 0);
                        continue;
                }
                if (!end) {
                        char *e = memmem(buf, len, "\r\n\r\n", 4);
                        if (!e)
                                continue;
                        end = e + 4;
                        head_len = (size_t)(end - buf);
                        size_t hl = head_len;
                        assert_true(hl < sizeof(a->head));
                        memcpy(a->head, buf, hl);
                        a->head[hl] = '\0';
                        assert_int_equal(sscanf(a->head, "HTTP/1.1 %d", &a->status), 1);
                        const char *cl = header(a, "Content-Length");
                        int64_t length = cl[0] ? strtoll(cl, NULL, 10) : -1;
                        chunked = !head && a->status != 304 &&
                                  strcasecmp(header(a, "Transfer-Encoding"), "chunked") == 0;
                        want = head || a->status == 304 ? 0 : length;
                }
                size_t have = len - (size_t)(end - buf);
                if (!chunked && want >= 0 && have >= (size_t)want) {
                        assert_int_equal(have, (size_t)want);
                        a->body_len = have;
                        break;
                }
                if (chunked && have >= 5 && memcmp(buf + len - 5, "0\r\n\r\n", 5) == 0) {
                        /* Decode: size line, data, CRLF, … */
                        char *out = malloc(have + 1);
                        size_t n = 0;
                        char *p = end;
                        for (;;) {
                                char *nl;
                                unsigned long size = strtoul(p, &nl, 16);
                                assert_memory_equal(nl, "\r\n", 2);
                                p = nl + 2;
                                if (size == 0)
                                        break;
                                memcpy(out + n, p, size);
                                n += size;
                                p += size;
                                assert_memory_equal(p, "\r\n", 2);
                                p += 2;
                        }
                        if (p + 2 == buf + len) {
                                a->body = out;
                                a->body_len = n;
                                free(buf);
                                return;
                        }
                        free(out);
                }
        }
        a->body = malloc(a->body_len + 1);
        memcpy(a->body, end, a->body_len);
        a->body[a->body_len] = '\0';
        free(buf);
}

/* GET on a new connection, closed after. */
static void get(fixture *f, const char *target, answer *a) {
        int fd = connect_client(f);
        char req[512];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target);
        exchange(f, fd, req, false, a);
        close(fd);
        run_for(f->event, 5);
}

static void expect_body(fixture *f, const char *target, const char *body) {
        answer a;
        get(f, target, &a);
        assert_int_equal(a.status, 200);
        assert_int_equal(a.body_len, strlen(body));
        assert_memory_equal(a.body, body, a.body_len);
        answer_done(&a);
}

static void expect_status(fixture *f, const char *target, int status) {
        answer a;
        get(f, target, &a);
        assert_int_equal(a.status, status);
        answer_done(&a);
}

/* The descriptors open settle at n (connections close from the loop). */
static void expect_fds(fixture *f, int n) {
        uint64_t end = now_ms() + 2000;
        while (count_fds() != n && now_ms() < end)
                run_for(f->event, 5);
        assert_int_equal(count_fds(), n);
}

#define VALID_MS 300

/* What the cache must never do: serve a file as it was, longer than the
 * validity time after it changed in place, was replaced or deleted. */
static void test_cache_sees_changes(void **state) {
        fixture *f = *state;
        assert_int_equal(paf_http_static_set_cache(f->st, 100, VALID_MS * 1000), 0);
        put(f, "a.txt", "one");
        answer a;
        get(f, "/a.txt", &a);
        assert_int_equal(a.status, 200);
        char etag1[128];
        snprintf(etag1, sizeof(etag1), "%s", header(&a, "ETag"));
        answer_done(&a);

        /* Changed in place, content and size. Within the validity time the
         * old answer is allowed; after it, never. */
        put(f, "a.txt", "second version");
        get(f, "/a.txt", &a);
        assert_int_equal(a.status, 200);
        answer_done(&a);
        run_for(f->event, VALID_MS + 50);
        get(f, "/a.txt", &a);
        assert_int_equal(a.status, 200);
        assert_int_equal(a.body_len, 14);
        assert_memory_equal(a.body, "second version", 14);
        assert_string_not_equal(header(&a, "ETag"), etag1);
        answer_done(&a);

        /* Replaced by a rename (a new inode), as deployments do. */
        char tmp[256], dst[256];
        path_of(f, "a.new", tmp, sizeof(tmp));
        path_of(f, "a.txt", dst, sizeof(dst));
        put(f, "a.new", "third");
        assert_int_equal(rename(tmp, dst), 0);
        run_for(f->event, VALID_MS + 50);
        expect_body(f, "/a.txt", "third");

        /* Deleted: 404 after the validity time, and back when it is. */
        assert_int_equal(unlink(dst), 0);
        run_for(f->event, VALID_MS + 50);
        expect_status(f, "/a.txt", 404);
        put(f, "a.txt", "fourth");
        expect_body(f, "/a.txt", "fourth");

        /* index.html of a directory goes through the cache too. */
        char dir[256];
        path_of(f, "d", dir, sizeof(dir));
        assert_int_equal(mkdir(dir, 0755), 0);
        put(f, "d/index.html", "<p>1</p>");
        expect_body(f, "/d/", "<p>1</p>");
        put(f, "d/index.html", "<p>2, longer</p>");
        run_for(f->event, VALID_MS + 50);
        expect_body(f, "/d/", "<p>2, longer</p>");
        path_of(f, "d/index.html", dst, sizeof(dst));
        assert_int_equal(unlink(dst), 0);
        run_for(f->event, VALID_MS + 50);
        get(f, "/d/", &a);
        assert_int_equal(a.status, 200);
        assert_non_null(strstr(a.body, "Index of /d/"));
        answer_done(&a);
}

/* Validity 0: every request checks. */
static void test_cache_valid_zero(void **state) {
        fixture *f = *state;
        assert_int_equal(paf_http_static_set_cache(f->st, 100, 0), 0);
        put(f, "b.txt", "x");
        expect_body(f, "/b.txt", "x");
        put(f, "b.txt", "yy");
        expect_body(f, "/b.txt", "yy");
        char p[256];
        path_of(f, "b.txt", p, sizeof(p));
        assert_int_equal(unlink(p), 0);
        expect_status(f, "/b.txt", 404);
}

/* The cache holds descriptors, at most max_entries of them; off, none
 * stays open once the responses are done. */
static void test_cache_bounded(void **state) {
        fixture *f = *state;
        char name[32];
        for (unsigned i = 0; i < 10; i++) {
                snprintf(name, sizeof(name), "f%u", i);
                put(f, name, name);
        }
        /* The loop's timer descriptor, made for the first connection, stays. */
        expect_status(f, "/none", 404);
        int base = count_fds();
        assert_int_equal(paf_http_static_set_cache(f->st, 4, 60 * 1000000ULL), 0);
        for (unsigned i = 0; i < 3; i++) {
                snprintf(name, sizeof(name), "/f%u", i);
                expect_body(f, name, name + 1);
        }
        expect_fds(f, base + 3);
        /* Within the validity time, served from the cache: the files are
         * not opened again (a rename over one is not seen yet, which is
         * the cost of the saved system calls). */
        char src[256], dst[256];
        path_of(f, "f9", src, sizeof(src));
        path_of(f, "f0", dst, sizeof(dst));
        assert_int_equal(rename(src, dst), 0);
        expect_body(f, "/f0", "f0");
        for (unsigned i = 1; i < 9; i++) {
                snprintf(name, sizeof(name), "/f%u", i);
                expect_body(f, name, name + 1);
        }
        expect_fds(f, base + 4);
        /* Entries go when the settings change. */
        assert_int_equal(paf_http_static_set_cache(f->st, 0, 0), 0);
        expect_fds(f, base);
        expect_body(f, "/f1", "f1");
        expect_fds(f, base);
        expect_body(f, "/f0", "f9");
}

/* A response in progress keeps its file, even once the cache let it go:
 * the client gets the file it asked for, whole. */
static void test_response_outlives_entry(void **state) {
        fixture *f = *state;
        assert_int_equal(paf_http_static_set_cache(f->st, 100, VALID_MS * 1000), 0);
        size_t size = 3 * 1024 * 1024;
        char *big = malloc(size + 1);
        assert_non_null(big);
        for (size_t i = 0; i < size; i++)
                big[i] = (char)('a' + i % 23);
        big[size] = '\0';
        put(f, "big", big);

        /* Client 1 asks and does not read yet: most of it waits. */
        int c1 = connect_client(f);
        const char *req = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_int_equal(write(c1, req, strlen(req)), (ssize_t)strlen(req));
        run_for(f->event, 20);

        /* The file is replaced, the cache sees it. */
        char tmp[256], dst[256];
        path_of(f, "big.new", tmp, sizeof(tmp));
        path_of(f, "big", dst, sizeof(dst));
        put(f, "big.new", "small now");
        assert_int_equal(rename(tmp, dst), 0);
        run_for(f->event, VALID_MS + 50);
        expect_body(f, "/big", "small now");

        /* Client 1 still gets the old one, byte for byte. */
        answer a;
        exchange(f, c1, "", false, &a);
        assert_int_equal(a.status, 200);
        assert_int_equal(a.body_len, size);
        assert_memory_equal(a.body, big, size);
        answer_done(&a);
        close(c1);
        free(big);
}

/* Ranges of a file bigger than what goes by copy: by send_file, exact. */
static void test_ranges(void **state) {
        fixture *f = *state;
        size_t size = 5 * 1024 * 1024 + 17;
        char *big = malloc(size + 1);
        assert_non_null(big);
        for (size_t i = 0; i < size; i++)
                big[i] = (char)(' ' + (i * 7 + i / 3001) % 90);
        big[size] = '\0';
        put(f, "r.bin", big);
        static const struct {
                const char *range;
                size_t first, last;
        } cases[] = {
                {"bytes=0-", 0, 5 * 1024 * 1024 + 16},
                {"bytes=100000-2300000", 100000, 2300000},
                {"bytes=-1500000", 5 * 1024 * 1024 + 17 - 1500000, 5 * 1024 * 1024 + 16},
                {"bytes=5000000-", 5000000, 5 * 1024 * 1024 + 16},
                {"bytes=7-7", 7, 7},
        };
        int fd = connect_client(f);
        for (size_t i = 0; i < ELEMENTS(cases); i++) {
                char req[256];
                snprintf(req, sizeof(req), "GET /r.bin HTTP/1.1\r\nHost: x\r\nRange: %s\r\n\r\n",
                         cases[i].range);
                answer a;
                exchange(f, fd, req, false, &a);
                assert_int_equal(a.status, 206);
                size_t n = cases[i].last - cases[i].first + 1;
                assert_int_equal(a.body_len, n);
                assert_memory_equal(a.body, big + cases[i].first, n);
                char cr[128];
                snprintf(cr, sizeof(cr), "bytes %zu-%zu/%zu", cases[i].first, cases[i].last, size);
                assert_string_equal(header(&a, "Content-Range"), cr);
                answer_done(&a);
        }
        /* HEAD: the length, no body (the next answer would not parse). */
        answer a;
        exchange(f, fd, "HEAD /r.bin HTTP/1.1\r\nHost: x\r\n\r\n", true, &a);
        assert_int_equal(a.status, 200);
        char len[32];
        snprintf(len, sizeof(len), "%zu", size);
        assert_string_equal(header(&a, "Content-Length"), len);
        answer_done(&a);
        exchange(f, fd, "GET /r.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=9999999-\r\n\r\n", false,
                 &a);
        assert_int_equal(a.status, 416);
        answer_done(&a);
        close(fd);
        free(big);
}

/* Bodies from the cache's copy (at most 16 KiB), read per request (up to
 * 64 KiB) or sent from the file: every range byte-exact, on one connection. */
static void test_small_ranges(void **state) {
        fixture *f = *state;
        assert_int_equal(paf_http_static_set_cache(f->st, 100, 60 * 1000 * 1000), 0);
        static const size_t sizes[] = {1, 1000, 16383, 16384, 16385, 65536, 65537};
        int fd = connect_client(f);
        for (size_t k = 0; k < ELEMENTS(sizes); k++) {
                size_t size = sizes[k];
                char *body = malloc(size + 1);
                assert_non_null(body);
                for (size_t i = 0; i < size; i++)
                        body[i] = (char)('!' + (i * 13 + k) % 90);
                body[size] = '\0';
                char name[32];
                snprintf(name, sizeof(name), "s%zu.bin", size);
                put(f, name, body);
                struct {
                        size_t first, last;
                } cases[] = {{0, size - 1}, {size / 3, size - 1}, {size - 1, size - 1},
                             {size / 2, size / 2 + (size > 10 ? 7 : 0)}};
                for (int twice = 0; twice < 2; twice++) /* the second from the cache */
                        for (size_t i = 0; i < ELEMENTS(cases); i++) {
                                size_t first = cases[i].first,
                                       last = cases[i].last < size ? cases[i].last : size - 1;
                                char req[256];
                                snprintf(req, sizeof(req),
                                         "GET /%s HTTP/1.1\r\nHost: x\r\nRange: bytes=%zu-%zu\r\n\r\n",
                                         name, first, last);
                                answer a;
                                exchange(f, fd, req, false, &a);
                                assert_int_equal(a.status, 206);
                                assert_int_equal(a.body_len, last - first + 1);
                                assert_memory_equal(a.body, body + first, last - first + 1);
                                answer_done(&a);
                                snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n",
                                         name);
                                exchange(f, fd, req, false, &a);
                                assert_int_equal(a.status, 200);
                                assert_int_equal(a.body_len, size);
                                assert_memory_equal(a.body, body, size);
                                answer_done(&a);
                        }
                free(body);
        }
        close(fd);
}

/* Rewritten in place with the same size: the cached copy of the bytes goes
 * with the stat it was read under. */
static void test_cache_sees_same_size_rewrite(void **state) {
        fixture *f = *state;
        assert_int_equal(paf_http_static_set_cache(f->st, 100, VALID_MS * 1000), 0);
        put(f, "same.txt", "aaaa-one");
        expect_body(f, "/same.txt", "aaaa-one");
        char p[256];
        path_of(f, "same.txt", p, sizeof(p));
        int fd = open(p, O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "bbbb-two", 8, 0), 8);
        close(fd);
        run_for(f->event, VALID_MS + 50);
        expect_body(f, "/same.txt", "bbbb-two");
}

/* ---- the answers' fields, made once per cache entry ---- */

/* Sets name's modification time, in seconds since the epoch. */
static void set_mtime(fixture *f, const char *name, time_t t) {
        char p[256];
        path_of(f, name, p, sizeof(p));
        struct timespec ts[2] = {{.tv_sec = t}, {.tv_sec = t}};
        assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

/* Sends request on fd and checks the status; the answer stays in *a. A
 * macro, so that a failure names the line of the request. */
#define ask(f, fd, request, head, want, a)                                                         \
        do {                                                                                       \
                exchange(f, fd, request, head, a);                                                 \
                assert_int_equal((a)->status, want);                                               \
        } while (0)

/* A header's value, copied. */
static void copy_header(const answer *a, const char *name, char *buf, size_t size) {
        snprintf(buf, size, "%s", header(a, name));
}

/* Every precondition and range path, on an entry of the cache (the second
 * request of each kind is answered from it), header names in any case. */
static void test_conditional_answers(void **state) {
        fixture *f = *state;
        assert_int_equal(paf_http_static_set_cache(f->st, 100, 60 * 1000 * 1000), 0);
        put(f, "page.html", "<p>hello</p>");
        set_mtime(f, "page.html", 1000000000); /* Sun, 09 Sep 2001 01:46:40 GMT */
        const char *lm = "Sun, 09 Sep 2001 01:46:40 GMT";
        int fd = connect_client(f);
        answer a;
        char etag[128], req[512];
        for (int round = 0; round < 2; round++) {
                ask(f, fd, "GET /page.html HTTP/1.1\r\nHost: x\r\n\r\n", false, 200, &a);
                assert_int_equal(a.body_len, 12);
                assert_memory_equal(a.body, "<p>hello</p>", 12);
                assert_string_equal(header(&a, "Content-Type"), "text/html; charset=utf-8");
                assert_string_equal(header(&a, "Accept-Ranges"), "bytes");
                assert_string_equal(header(&a, "Last-Modified"), lm);
                assert_string_equal(header(&a, "Content-Length"), "12");
                if (round == 0)
                        copy_header(&a, "ETag", etag, sizeof(etag));
                assert_true(etag[0] == '"');
                assert_string_equal(header(&a, "ETag"), etag);
                answer_done(&a);
        }

        /* 304: the validators, no body, no Content-Type. */
        for (int round = 0; round < 2; round++) {
                snprintf(req, sizeof(req),
                         "GET /page.html HTTP/1.1\r\nHost: x\r\nif-none-match: %s\r\n\r\n", etag);
                ask(f, fd, req, false, 304, &a);
                assert_string_equal(header(&a, "ETag"), etag);
                assert_string_equal(header(&a, "Last-Modified"), lm);
                assert_string_equal(header(&a, "Content-Type"), "");
                assert_string_equal(header(&a, "Content-Length"), "");
                answer_done(&a);
        }
        snprintf(req, sizeof(req),
                 "GET /page.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\", W/%s\r\n\r\n", etag);
        ask(f, fd, req, false, 304, &a);
        answer_done(&a);
        snprintf(req, sizeof(req),
                 "GET /page.html HTTP/1.1\r\nHost: x\r\nIF-MODIFIED-SINCE: %s\r\n\r\n", lm);
        ask(f, fd, req, false, 304, &a);
        answer_done(&a);
        /* If-None-Match decides when both are there. */
        snprintf(req, sizeof(req),
                 "GET /page.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\"\r\nIf-Modified-Since: "
                 "%s\r\n\r\n",
                 lm);
        ask(f, fd, req, false, 200, &a);
        assert_int_equal(a.body_len, 12);
        answer_done(&a);
        ask(f, fd,
            "GET /page.html HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Sat, 01 Jan 2000 00:00:00 "
            "GMT\r\n\r\n",
            false, 200, &a);
        answer_done(&a);
        /* The first of two fields of a name counts. */
        snprintf(req, sizeof(req),
                 "GET /page.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\"\r\nIf-None-Match: "
                 "%s\r\n\r\n",
                 etag);
        ask(f, fd, req, false, 200, &a);
        answer_done(&a);

        /* 412: If-Match (strong comparison), then If-Unmodified-Since. */
        ask(f, fd, "GET /page.html HTTP/1.1\r\nHost: x\r\nIf-Match: \"x\"\r\n\r\n", false, 412, &a);
        assert_string_equal(header(&a, "Content-Type"), "text/plain; charset=utf-8");
        answer_done(&a);
        snprintf(req, sizeof(req), "GET /page.html HTTP/1.1\r\nHost: x\r\nIf-Match: W/%s\r\n\r\n",
                 etag);
        ask(f, fd, req, false, 412, &a);
        answer_done(&a);
        snprintf(req, sizeof(req), "GET /page.html HTTP/1.1\r\nHost: x\r\nif-match: %s\r\n\r\n",
                 etag);
        ask(f, fd, req, false, 200, &a);
        answer_done(&a);
        ask(f, fd, "GET /page.html HTTP/1.1\r\nHost: x\r\nIf-Match: *\r\n\r\n", false, 200, &a);
        answer_done(&a);
        ask(f, fd,
            "GET /page.html HTTP/1.1\r\nHost: x\r\nIf-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 "
            "GMT\r\n\r\n",
            false, 412, &a);
        answer_done(&a);
        snprintf(req, sizeof(req),
                 "GET /page.html HTTP/1.1\r\nHost: x\r\nIf-Unmodified-Since: %s\r\n\r\n", lm);
        ask(f, fd, req, false, 200, &a);
        answer_done(&a);

        /* Ranges: 206 with the file's fields and Content-Range; If-Range by
         * tag and by date; 416; none for HEAD. */
        for (int round = 0; round < 2; round++) {
                ask(f, fd, "GET /page.html HTTP/1.1\r\nHost: x\r\nrange: bytes=3-7\r\n\r\n", false,
                    206, &a);
                assert_int_equal(a.body_len, 5);
                assert_memory_equal(a.body, "hello", 5);
                assert_string_equal(header(&a, "Content-Range"), "bytes 3-7/12");
                assert_string_equal(header(&a, "ETag"), etag);
                assert_string_equal(header(&a, "Last-Modified"), lm);
                assert_string_equal(header(&a, "Content-Type"), "text/html; charset=utf-8");
                answer_done(&a);
        }
        snprintf(req, sizeof(req),
                 "GET /page.html HTTP/1.1\r\nHost: x\r\nRange: bytes=3-7\r\nIf-Range: %s\r\n\r\n",
                 etag);
        ask(f, fd, req, false, 206, &a);
        answer_done(&a);
        snprintf(req, sizeof(req),
                 "GET /page.html HTTP/1.1\r\nHost: x\r\nRange: bytes=3-7\r\nif-range: %s\r\n\r\n",
                 lm);
        ask(f, fd, req, false, 206, &a);
        answer_done(&a);
        ask(f, fd,
            "GET /page.html HTTP/1.1\r\nHost: x\r\nRange: bytes=3-7\r\nIf-Range: \"x\"\r\n\r\n",
            false, 200, &a);
        assert_int_equal(a.body_len, 12);
        assert_string_equal(header(&a, "Content-Range"), "");
        answer_done(&a);
        ask(f, fd, "GET /page.html HTTP/1.1\r\nHost: x\r\nRange: bytes=12-\r\n\r\n", false, 416,
            &a);
        assert_string_equal(header(&a, "Content-Range"), "bytes */12");
        assert_string_equal(header(&a, "Content-Type"), "text/plain; charset=utf-8");
        answer_done(&a);
        ask(f, fd, "HEAD /page.html HTTP/1.1\r\nHost: x\r\nRange: bytes=3-7\r\n\r\n", true, 200,
            &a);
        assert_string_equal(header(&a, "Content-Length"), "12");
        assert_string_equal(header(&a, "ETag"), etag);
        assert_string_equal(header(&a, "Content-Type"), "text/html; charset=utf-8");
        answer_done(&a);

        /* A directory's index.html has its type; errors are plain text. */
        char dir[256];
        path_of(f, "d", dir, sizeof(dir));
        assert_int_equal(mkdir(dir, 0755), 0);
        put(f, "d/index.html", "<p>i</p>");
        for (int round = 0; round < 2; round++) {
                ask(f, fd, "GET /d/ HTTP/1.1\r\nHost: x\r\n\r\n", false, 200, &a);
                assert_string_equal(header(&a, "Content-Type"), "text/html; charset=utf-8");
                assert_string_equal(header(&a, "Accept-Ranges"), "bytes");
                answer_done(&a);
        }
        put(f, "data.bin", "\x01\x02");
        ask(f, fd, "GET /data.bin HTTP/1.1\r\nHost: x\r\n\r\n", false, 200, &a);
        assert_string_equal(header(&a, "Content-Type"), "application/octet-stream");
        answer_done(&a);
        for (int round = 0; round < 2; round++) {
                ask(f, fd, "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n", false, 404, &a);
                assert_string_equal(header(&a, "Content-Type"), "text/plain; charset=utf-8");
                assert_memory_equal(a.body, "404 Not Found\n", a.body_len);
                answer_done(&a);
        }
        ask(f, fd, "DELETE /page.html HTTP/1.1\r\nHost: x\r\n\r\n", false, 405, &a);
        assert_string_equal(header(&a, "Allow"), "GET, HEAD");
        assert_string_equal(header(&a, "Content-Type"), "text/plain; charset=utf-8");
        answer_done(&a);
        close(fd);
}

/* A file changed under the cache: once revalidated, every answer has its
 * new validators (200, 304, 206 alike), and the old ones match nothing;
 * unchanged, it keeps them. */
static void test_revalidated_fields(void **state) {
        fixture *f = *state;
        assert_int_equal(paf_http_static_set_cache(f->st, 100, VALID_MS * 1000), 0);
        put(f, "v.txt", "version one");
        set_mtime(f, "v.txt", 1000000000);
        int fd = connect_client(f);
        answer a;
        char etag1[128], etag2[128], req[512];
        ask(f, fd, "GET /v.txt HTTP/1.1\r\nHost: x\r\n\r\n", false, 200, &a);
        copy_header(&a, "ETag", etag1, sizeof(etag1));
        assert_string_equal(header(&a, "Last-Modified"), "Sun, 09 Sep 2001 01:46:40 GMT");
        answer_done(&a);
        snprintf(req, sizeof(req), "GET /v.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n",
                 etag1);
        ask(f, fd, req, false, 304, &a);
        answer_done(&a);

        /* Unchanged after the validity time: the same entry, the same tag. */
        run_for(f->event, VALID_MS + 50);
        ask(f, fd, "GET /v.txt HTTP/1.1\r\nHost: x\r\n\r\n", false, 200, &a);
        assert_string_equal(header(&a, "ETag"), etag1);
        answer_done(&a);

        /* Same size, another time: only the stat tells. */
        put(f, "v.txt", "version two");
        set_mtime(f, "v.txt", 1100000000); /* Tue, 09 Nov 2004 11:33:20 GMT */
        run_for(f->event, VALID_MS + 50);
        ask(f, fd, "GET /v.txt HTTP/1.1\r\nHost: x\r\n\r\n", false, 200, &a);
        assert_memory_equal(a.body, "version two", 11);
        copy_header(&a, "ETag", etag2, sizeof(etag2));
        assert_string_not_equal(etag2, etag1);
        assert_string_equal(header(&a, "Last-Modified"), "Tue, 09 Nov 2004 11:33:20 GMT");
        answer_done(&a);
        for (int round = 0; round < 2; round++) {
                snprintf(req, sizeof(req),
                         "GET /v.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n", etag1);
                ask(f, fd, req, false, 200, &a);
                assert_string_equal(header(&a, "ETag"), etag2);
                assert_memory_equal(a.body, "version two", 11);
                answer_done(&a);
                snprintf(req, sizeof(req),
                         "GET /v.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n", etag2);
                ask(f, fd, req, false, 304, &a);
                assert_string_equal(header(&a, "ETag"), etag2);
                assert_string_equal(header(&a, "Last-Modified"), "Tue, 09 Nov 2004 11:33:20 GMT");
                answer_done(&a);
                ask(f, fd,
                    "GET /v.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Sun, 09 Sep 2001 "
                    "01:46:40 GMT\r\n\r\n",
                    false, 200, &a);
                answer_done(&a);
                snprintf(req, sizeof(req),
                         "GET /v.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-6\r\nIf-Range: "
                         "%s\r\n\r\n",
                         etag1);
                ask(f, fd, req, false, 200, &a);
                answer_done(&a);
                snprintf(
                        req, sizeof(req),
                        "GET /v.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=8-\r\nIf-Range: %s\r\n\r\n",
                        etag2);
                ask(f, fd, req, false, 206, &a);
                assert_memory_equal(a.body, "two", 3);
                assert_string_equal(header(&a, "ETag"), etag2);
                answer_done(&a);
        }
        close(fd);
}

/* Without the cache, every answer makes its own fields: the same ones. */
static void test_fields_without_cache(void **state) {
        fixture *f = *state;
        put(f, "n.css", "a{}");
        set_mtime(f, "n.css", 1000000000);
        int fd = connect_client(f);
        answer a;
        char etag[2][128], req[512];
        for (int off = 0; off < 2; off++) {
                assert_int_equal(paf_http_static_set_cache(f->st, off ? 0 : 10, 1000000), 0);
                ask(f, fd, "GET /n.css HTTP/1.1\r\nHost: x\r\n\r\n", false, 200, &a);
                copy_header(&a, "ETag", etag[off], sizeof(etag[off]));
                assert_string_equal(header(&a, "Content-Type"), "text/css; charset=utf-8");
                assert_string_equal(header(&a, "Last-Modified"), "Sun, 09 Sep 2001 01:46:40 GMT");
                assert_string_equal(header(&a, "Accept-Ranges"), "bytes");
                answer_done(&a);
                snprintf(req, sizeof(req),
                         "GET /n.css HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n", etag[off]);
                ask(f, fd, req, false, 304, &a);
                assert_string_equal(header(&a, "Last-Modified"), "Sun, 09 Sep 2001 01:46:40 GMT");
                answer_done(&a);
        }
        assert_string_equal(etag[0], etag[1]);
        close(fd);
}

/* Targets whose path does not fit map_target()'s buffer on the stack. */
static void test_long_paths(void **state) {
        fixture *f = *state;
        char seg1[201], seg2[201], path[1024], rel[512], target[1400], req[1600];
        memset(seg1, 'a', 200);
        seg1[200] = '\0';
        memset(seg2, 'b', 200);
        seg2[200] = '\0';
        snprintf(path, sizeof(path), "%s/%s", f->root, seg1);
        assert_int_equal(mkdir(path, 0755), 0);
        snprintf(rel, sizeof(rel), "%s/%s.txt", seg1, seg2);
        snprintf(path, sizeof(path), "%s/%s", f->root, rel);
        int file = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(file >= 0);
        assert_int_equal(write(file, "long", 4), 4);
        close(file);
        int fd = connect_client(f);
        answer a;
        for (int round = 0; round < 2; round++) {
                snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n", rel);
                ask(f, fd, req, false, 200, &a);
                assert_memory_equal(a.body, "long", 4);
                answer_done(&a);
        }
        /* Longer still before dot segments and percent-decoding shrink it. */
        snprintf(target, sizeof(target), "/./%s/../%s/%%62%s.txt", seg2, seg1, seg2 + 1);
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target);
        ask(f, fd, req, false, 200, &a);
        assert_memory_equal(a.body, "long", 4);
        answer_done(&a);
        /* And the refusals on that path. */
        snprintf(req, sizeof(req), "GET /%s/%%2F%s HTTP/1.1\r\nHost: x\r\n\r\n", seg1, seg2);
        ask(f, fd, req, false, 404, &a);
        answer_done(&a);
        snprintf(req, sizeof(req), "GET /%s/%%00%s HTTP/1.1\r\nHost: x\r\n\r\n", seg1, seg2);
        ask(f, fd, req, false, 400, &a);
        answer_done(&a);
        snprintf(req, sizeof(req), "GET /%s/../../%s HTTP/1.1\r\nHost: x\r\n\r\n", seg1, seg2);
        ask(f, fd, req, false, 403, &a);
        answer_done(&a);
        snprintf(req, sizeof(req), "GET /%s/%%zz%s HTTP/1.1\r\nHost: x\r\n\r\n", seg1, seg2);
        ask(f, fd, req, false, 400, &a);
        answer_done(&a);
        close(fd);
}

/* ---- one cache, several threads ---- */

#define SHARED_VERSIONS 4
#define SHARED_REQUESTS 150

static const char *const shared_versions[SHARED_VERSIONS] = {"v0", "v1-ab", "v2-abcdefgh",
                                                             "v3-abcdefghijklmnop"};

typedef struct shared_worker {
        paf_http_static *st;
        pthread_t thread;
        const bool *stop;  /* atomic */
        unsigned answered; /* atomic */
        unsigned versions; /* seen, a bit each */
        bool failed;       /* atomic: error is written */
        bool done;         /* atomic */
        char error[128];
} shared_worker;

/* Reads one answer from fd (whose server runs on e), its body in body;
 * -1 on anything unexpected or after 10 s. No cmocka here: it is not
 * thread-safe. */
static int shared_read(sd_event *e, int fd, char *body, size_t size, char *error, size_t esize) {
        char buf[4096];
        size_t len = 0;
        uint64_t deadline = now_ms() + 10000;
        while (now_ms() < deadline) {
                ssize_t k = read(fd, buf + len, sizeof(buf) - 1 - len);
                if (k == 0 || (k < 0 && errno != EAGAIN)) {
                        snprintf(error, esize, "read: %s", k == 0 ? "end" : strerror(errno));
                        return -1;
                }
                if (k < 0) {
                        if (sd_event_run(e, 10 * 1000) < 0)
                                return -1;
                        continue;
                }
                len += (size_t)k;
                buf[len] = '\0';
                char *end = strstr(buf, "\r\n\r\n");
                const char *cl = strcasestr(buf, "\r\nContent-Length: ");
                if (!end || !cl)
                        continue;
                size_t want = strtoul(cl + 18, NULL, 10);
                if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0 || want >= size) {
                        snprintf(error, esize, "answer: %.60s", buf);
                        return -1;
                }
                size_t have = len - (size_t)(end + 4 - buf);
                if (have < want)
                        continue;
                if (have > want) {
                        snprintf(error, esize, "%zu bytes beyond the body", have - want);
                        return -1;
                }
                memcpy(body, end + 4, want);
                body[want] = '\0';
                return 0;
        }
        snprintf(error, esize, "no answer in 10 s");
        return -1;
}

/* A loop and a server of its own, on the shared handler: requests until
 * told to stop, or SHARED_REQUESTS of them and two versions seen; every
 * answer one version. */
static void *shared_run(void *userdata) {
        shared_worker *w = userdata;
        sd_event *e = NULL;
        paf_http_server *server = NULL;
        paf_flow *flow = NULL;
        int sv[2] = {-1, -1};
        if (sd_event_new(&e) < 0 ||
            paf_http_server_new(e, paf_http_static_handler, NULL, w->st, &server) < 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0 ||
            paf_socket_flow_new(e, sv[0], "test", &flow) < 0 ||
            paf_http_server_add_flow(server, flow) < 0) {
                snprintf(w->error, sizeof(w->error), "setup failed");
                goto out;
        }
        sv[0] = -1; /* the flow's */
        static const char req[] = "GET /shared.txt HTTP/1.1\r\nHost: x\r\n\r\n";
        while ((w->answered < SHARED_REQUESTS || __builtin_popcount(w->versions) < 2) &&
               !__atomic_load_n(w->stop, __ATOMIC_RELAXED)) {
                if (write(sv[1], req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) {
                        snprintf(w->error, sizeof(w->error), "write: %s", strerror(errno));
                        break;
                }
                char body[64];
                if (shared_read(e, sv[1], body, sizeof(body), w->error, sizeof(w->error)) < 0)
                        break;
                size_t i = 0;
                while (i < SHARED_VERSIONS && strcmp(body, shared_versions[i]) != 0)
                        i++;
                if (i == SHARED_VERSIONS) {
                        snprintf(w->error, sizeof(w->error), "body \"%s\"", body);
                        break;
                }
                w->versions |= 1u << i;
                __atomic_add_fetch(&w->answered, 1, __ATOMIC_RELAXED);
        }
out:
        if (w->error[0])
                __atomic_store_n(&w->failed, true, __ATOMIC_RELEASE);
        if (sv[1] >= 0)
                close(sv[1]);
        if (sv[0] >= 0)
                close(sv[0]);
        paf_http_server_free(server);
        for (int i = 0; e && i < 20; i++)
                (void)sd_event_run(e, 1000);
        sd_event_unref(e);
        __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
        return NULL;
}

/* Two threads serve from one handler while the file is replaced under
 * them, the cache revalidating on every request: entries are taken,
 * replaced and let go from both sides, and each answer is one version,
 * whole. */
static void test_shared_between_threads(void **state) {
        fixture *f = *state;
        assert_int_equal(paf_http_static_set_cache(f->st, 4, 0), 0);
        put(f, "shared.txt", shared_versions[0]);
        bool stop = false;
        shared_worker w[2];
        for (size_t i = 0; i < ELEMENTS(w); i++) {
                w[i] = (shared_worker){.st = f->st, .stop = &stop};
                assert_int_equal(pthread_create(&w[i].thread, NULL, shared_run, &w[i]), 0);
        }
        char tmp[256], dst[256];
        path_of(f, "shared.new", tmp, sizeof(tmp));
        path_of(f, "shared.txt", dst, sizeof(dst));
        uint64_t deadline = now_ms() + 20000;
        /* Until both are done (they stop by themselves) or one failed. */
        for (unsigned n = 1; now_ms() < deadline; n++) {
                bool done = true;
                for (size_t i = 0; i < ELEMENTS(w); i++) {
                        if (__atomic_load_n(&w[i].failed, __ATOMIC_ACQUIRE))
                                deadline = 0;
                        done = done && __atomic_load_n(&w[i].done, __ATOMIC_ACQUIRE);
                }
                if (done)
                        break;
                put(f, "shared.new", shared_versions[n % SHARED_VERSIONS]);
                assert_int_equal(rename(tmp, dst), 0);
                usleep(500);
        }
        __atomic_store_n(&stop, true, __ATOMIC_RELAXED);
        for (size_t i = 0; i < ELEMENTS(w); i++) {
                assert_int_equal(pthread_join(w[i].thread, NULL), 0);
                if (w[i].error[0])
                        print_error("worker %zu: %s\n", i, w[i].error);
                assert_string_equal(w[i].error, "");
                assert_true(w[i].answered >= SHARED_REQUESTS);
                assert_true(__builtin_popcount(w[i].versions) >= 2);
        }
}

/* ---- paf_http_response_send_file() itself ---- */

static void on_sent(paf_http_request *req, int error, void *userdata) {
        (void)userdata;
        assert_int_equal(error, 0);
        assert_int_equal(paf_http_response_finish(req, NULL), 0);
}

static void file_handler(paf_http_request *req, void *userdata) {
        fixture *f = userdata;
        assert_int_equal(paf_http_response_start(req, 200, NULL, f->length), 0);
        /* More than the Content-Length: refused. */
        if (f->length >= 0)
                assert_int_equal(paf_http_response_send_file(req, f->file, 0,
                                                             (uint64_t)f->length + 1, on_sent, f),
                                 -EINVAL);
        assert_int_equal(paf_http_response_send_file(req, f->file, 2, 300000, on_sent, f), 0);
        /* One at a time, as writes. */
        assert_int_equal(paf_http_response_send_file(req, f->file, 2, 1, on_sent, f), -EBUSY);
}

static void test_send_file_api(void **state) {
        fixture *f = *state;
        paf_http_server_free(f->server);
        assert_int_equal(paf_http_server_new(f->event, file_handler, NULL, f, &f->server), 0);
        size_t size = 400000;
        char *data = malloc(size + 1);
        for (size_t i = 0; i < size; i++)
                data[i] = (char)('A' + i % 26);
        data[size] = '\0';
        put(f, "file", data);
        char p[256];
        path_of(f, "file", p, sizeof(p));
        f->file = open(p, O_RDONLY | O_CLOEXEC);
        assert_true(f->file >= 0);

        int fd = connect_client(f);
        answer a;
        /* Chunked: the file is one chunk. */
        f->length = -1;
        exchange(f, fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, &a);
        assert_int_equal(a.status, 200);
        assert_string_equal(header(&a, "Transfer-Encoding"), "chunked");
        assert_int_equal(a.body_len, 300000);
        assert_memory_equal(a.body, data + 2, 300000);
        answer_done(&a);
        /* Content-Length. */
        f->length = 300000;
        exchange(f, fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, &a);
        assert_int_equal(a.status, 200);
        assert_int_equal(a.body_len, 300000);
        assert_memory_equal(a.body, data + 2, 300000);
        answer_done(&a);
        /* HEAD: nothing sent (the next exchange would see it). */
        exchange(f, fd, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", true, &a);
        assert_int_equal(a.status, 200);
        assert_string_equal(header(&a, "Content-Length"), "300000");
        answer_done(&a);
        f->length = -1;
        exchange(f, fd, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", true, &a);
        assert_int_equal(a.status, 200);
        answer_done(&a);
        exchange(f, fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, &a);
        assert_int_equal(a.body_len, 300000);
        answer_done(&a);
        close(fd);
        free(data);
}

static void test_bad_arguments(void **state) {
        fixture *f = *state;
        paf_http_static *s = NULL;
        assert_int_equal(paf_http_static_new(NULL, &s), -EINVAL);
        assert_int_equal(paf_http_static_new("/nonexistent/dir", &s), -ENOENT);
        put(f, "plain", "x");
        char p[256];
        path_of(f, "plain", p, sizeof(p));
        assert_int_equal(paf_http_static_new(p, &s), -ENOTDIR);
        assert_null(s);
        assert_int_equal(paf_http_static_set_cache(NULL, 1, 1), -EINVAL);
        assert_int_equal(paf_http_static_set_dotfiles(NULL, true), -EINVAL);
        assert_int_equal(paf_http_static_serve(NULL, NULL, NULL, NULL), -EINVAL);
        assert_int_equal(paf_http_static_serve(f->st, NULL, NULL, NULL), -EINVAL);
        assert_null(paf_http_static_unref(NULL));
        assert_int_equal(paf_http_response_send_file(NULL, 0, 0, 0, NULL, NULL), -EINVAL);
        /* The defaults of paf.conf, and attaching to a loop and back. */
        assert_int_equal(paf_http_static_load_config(f->st, NULL), 0);
        assert_int_equal(paf_http_static_attach_event(f->st, f->event), 0);
        assert_int_equal(paf_http_static_attach_event(f->st, NULL), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_cache_sees_changes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cache_valid_zero, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cache_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_response_outlives_entry, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ranges, setup, teardown),
                cmocka_unit_test_setup_teardown(test_small_ranges, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cache_sees_same_size_rewrite, setup, teardown),
                cmocka_unit_test_setup_teardown(test_conditional_answers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revalidated_fields, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fields_without_cache, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_paths, setup, teardown),
                cmocka_unit_test_setup_teardown(test_shared_between_threads, setup, teardown),
                cmocka_unit_test_setup_teardown(test_send_file_api, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
