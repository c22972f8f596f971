/* tests/http/test-head.c — the fast head pass (core/http/head.c) against llhttp itself. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <llhttp.h>

#include "core/http/head.h"

/* ---- what llhttp makes of some bytes, as the server's callbacks keep it ---- */

typedef struct seen {
        char url[4096];
        size_t url_len;
        char names[HTTP_HEAD_FIELDS_MAX + 8][256];
        char values[HTTP_HEAD_FIELDS_MAX + 8][1024];
        size_t name_len[HTTP_HEAD_FIELDS_MAX + 8], value_len[HTTP_HEAD_FIELDS_MAX + 8];
        size_t n_fields;
        bool in_value, overflow, complete, headers_done;
} seen;

static int append(char *buf, size_t size, size_t *len, const char *at, size_t n, seen *s) {
        if (*len + n > size) {
                s->overflow = true;
                return 0;
        }
        memcpy(buf + *len, at, n);
        *len += n;
        return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t n) {
        seen *s = p->data;
        return append(s->url, sizeof(s->url), &s->url_len, at, n, s);
}

static int cb_field(llhttp_t *p, const char *at, size_t n) {
        seen *s = p->data;
        if (s->in_value || s->n_fields == 0) {
                if (s->n_fields == HTTP_HEAD_FIELDS_MAX + 8) {
                        s->overflow = true;
                        return 0;
                }
                s->n_fields++;
                s->in_value = false;
        }
        size_t i = s->n_fields - 1;
        return append(s->names[i], sizeof(s->names[i]), &s->name_len[i], at, n, s);
}

static int cb_value(llhttp_t *p, const char *at, size_t n) {
        seen *s = p->data;
        s->in_value = true;
        size_t i = s->n_fields - 1;
        return append(s->values[i], sizeof(s->values[i]), &s->value_len[i], at, n, s);
}

static int cb_headers_complete(llhttp_t *p) {
        seen *s = p->data;
        s->headers_done = true;
        return 0;
}

static int cb_message_complete(llhttp_t *p) {
        seen *s = p->data;
        s->complete = true;
        return HPE_PAUSED;
}

static llhttp_settings_t settings;

/* Whatever the fast pass took, llhttp takes the same way: one complete
 * message of the same length, method, version, target and fields. */
static void check_against_llhttp(const char *buf, size_t n, size_t used, const http_head *h) {
        static seen s;
        memset(&s, 0, sizeof(s));
        llhttp_t p;
        llhttp_init(&p, HTTP_REQUEST, &settings);
        p.data = &s;
        llhttp_errno_t err = llhttp_execute(&p, buf, n);
        if (err != HPE_PAUSED || !s.complete || s.overflow) {
                fprintf(stderr, "fast pass took %zu bytes llhttp stops at (%s: %s):\n%.*s\n", used,
                        llhttp_errno_name(err), llhttp_get_error_reason(&p) ?: "", (int)n, buf);
                fail();
        }
        assert_int_equal((size_t)(llhttp_get_error_pos(&p) - buf), used);
        assert_false(p.upgrade);
        assert_int_equal(p.content_length, 0);
        assert_false(p.flags & (F_CHUNKED | F_CONTENT_LENGTH | F_TRANSFER_ENCODING));
        assert_int_equal(p.method, h->method);
        assert_int_equal(p.http_major, 1);
        assert_int_equal(p.http_minor, h->minor);
        assert_int_equal(s.url_len, h->target_len);
        assert_memory_equal(s.url, buf + h->target, h->target_len);
        assert_int_equal(s.n_fields, h->n_fields);
        for (size_t i = 0; i < h->n_fields; i++) {
                const http_head_field *f = &h->fields[i];
                assert_int_equal(s.name_len[i], f->name_len);
                assert_memory_equal(s.names[i], buf + f->name, f->name_len);
                /* The server trims what llhttp leaves at the end of a value. */
                size_t vl = s.value_len[i];
                while (vl > 0 && (s.values[i][vl - 1] == ' ' || s.values[i][vl - 1] == '\t'))
                        vl--;
                assert_int_equal(vl, f->value_len);
                assert_memory_equal(s.values[i], buf + f->value, vl);
        }
}

/* ---- generated requests ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return (uint32_t)(rng % n);
}

static const char *pick(const char *const *list, size_t n) {
        return list[rnd((uint32_t)n)];
}

#define PICK(list) pick(list, sizeof(list) / sizeof(list[0]))

static const char *const methods[] = {"GET ",  "GET ",  "GET ", "HEAD ", "POST ", "get ",
                                      "GET  ", "GET\t", "PUT ", "PRI ",  "HEAD",  "CONNECT "};
static const char *const targets[] = {
        "/",    "/index.html", "/a/b?c=d&e=f", "/%41%zz", "*",       "http://x/", "/a#frag",
        "/a b", "/\"q\"",      "/<>",          "/a\\b",   "/{x}|^`", "/~user/",   "/@:;=+,$!*'()"};
static const char *const versions[] = {
        " HTTP/1.1\r\n", " HTTP/1.1\r\n", " HTTP/1.0\r\n", " HTTP/1.2\r\n",  " HTTP/2.0\r\n",
        " http/1.1\r\n", " HTTP/1.1\n",   " HTTP/1.1\r",   " HTTP/1.1 \r\n", " HTTP/0.9\r\n"};
static const char *const names[] = {"Host",
                                    "User-Agent",
                                    "Accept",
                                    "accept-encoding",
                                    "Connection",
                                    "Content-Length",
                                    "Transfer-Encoding",
                                    "Upgrade",
                                    "Expect",
                                    "X-A",
                                    "x_b",
                                    "X~!#$%&'*+.^`|",
                                    "Bad Name",
                                    "Bad\"Name",
                                    "",
                                    " Host",
                                    "Host ",
                                    "Ho\tst"};
static const char *const values[] = {"x",
                                     "127.0.0.1:8080",
                                     "*/*",
                                     "gzip, deflate",
                                     "close",
                                     "keep-alive",
                                     "upgrade",
                                     "0",
                                     "chunked",
                                     "h2c",
                                     "100-continue",
                                     "  padded  ",
                                     "\ttabbed\t",
                                     "",
                                     "caf\xc3\xa9",
                                     "a\x01z",
                                     "a\x7fz",
                                     "a\rb",
                                     "a\nb",
                                     "0123456789abcdef0123456789",
                                     "a\tb\tc\td\te\tf\tg\th"};
static const char *const spaces[] = {"", " ", "  ", "\t", " \t "};
static const char *const endings[] = {"\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r", " \r\n"};

/* Half the heads come from the plain entries only: the first few of each
 * list, which the fast pass takes unless a mutation spoils them. */
static bool plain;

static const char *pick_n(const char *const *list, size_t n, size_t n_plain) {
        return pick(list, plain ? n_plain : n);
}

#define PICK_PLAIN(list, n_plain) pick_n(list, sizeof(list) / sizeof(list[0]), n_plain)

static size_t build(char *buf, size_t size) {
        size_t n = 0;
        plain = rnd(2) == 0;
#define PUT(str)                                                                                   \
        do {                                                                                       \
                const char *s_ = (str);                                                            \
                size_t l_ = strlen(s_);                                                            \
                if (n + l_ < size) {                                                               \
                        memcpy(buf + n, s_, l_);                                                   \
                        n += l_;                                                                   \
                }                                                                                  \
        } while (0)
        if (!plain && rnd(20) == 0)
                PUT("\r\n");
        PUT(PICK_PLAIN(methods, 4));
        PUT(PICK_PLAIN(targets, 3));
        PUT(PICK_PLAIN(versions, 3));
        unsigned fields = rnd(8);
        if (rnd(30) == 0)
                fields = HTTP_HEAD_FIELDS_MAX + rnd(3);
        for (unsigned i = 0; i < fields; i++) {
                PUT(rnd(4) ? PICK_PLAIN(names, 5) : "Host");
                PUT(plain || rnd(15) ? ":" : " :");
                PUT(PICK(spaces));
                PUT(PICK_PLAIN(values, 15));
                PUT(plain || rnd(10) ? "\r\n" : PICK(endings));
                if (!plain && rnd(40) == 0)
                        PUT(" folded\r\n");
        }
        PUT(plain || rnd(12) ? "\r\n" : PICK(endings));
        if (rnd(5) == 0)
                PUT("GET / HTTP/1.1\r\nHost: next\r\n\r\n"); /* pipelined */
#undef PUT
        /* Now and then a byte changed, one cut off, or one more. */
        uint32_t m = rnd(plain ? 12 : 6);
        if (m == 0 && n > 0)
                buf[rnd((uint32_t)n)] = (char)rnd(256);
        else if (m == 1 && n > 0)
                n = rnd((uint32_t)n);
        return n;
}

static void test_against_llhttp(void **state) {
        (void)state;
        settings.on_url = cb_url;
        settings.on_header_field = cb_field;
        settings.on_header_value = cb_value;
        settings.on_headers_complete = cb_headers_complete;
        settings.on_message_complete = cb_message_complete;
        static char buf[8192];
        unsigned taken = 0, runs = 200000;
        for (unsigned i = 0; i < runs; i++) {
                size_t n = build(buf, sizeof(buf));
                http_head h;
                size_t used = http_head_parse(buf, n, 8192, 100, &h);
                if (used == 0)
                        continue;
                taken++;
                check_against_llhttp(buf, n, used, &h);
        }
        /* The generator reaches the fast pass, and not only it. */
        fprintf(stderr, "fast pass took %u of %u generated heads\n", taken, runs);
        assert_true(taken > runs / 50);
        assert_true(taken < runs / 2);
}

static void test_limits(void **state) {
        (void)state;
        const char *req = "GET /x HTTP/1.1\r\nHost: a\r\nX-B: c\r\n\r\n";
        size_t n = strlen(req);
        http_head h;
        assert_int_equal(http_head_parse(req, n, 4096, 100, &h), n);
        assert_int_equal(h.n_fields, 2);
        /* A head over the byte limit, or with more fields than allowed, is
         * llhttp's (and its 431's). */
        assert_int_equal(http_head_parse(req, n, n - 1, 100, &h), 0);
        assert_int_equal(http_head_parse(req, n, n, 100, &h), n);
        assert_int_equal(http_head_parse(req, n, 4096, 1, &h), 0);
        /* Cut anywhere: declined, never read short. */
        for (size_t k = 0; k < n; k++)
                assert_int_equal(http_head_parse(req, k, 4096, 100, &h), 0);
}

static void test_declined(void **state) {
        (void)state;
        const char *const cases[] = {
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
                "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
                "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
                "GET / HTTP/1.1\nHost: a\n\n",
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                http_head h;
                assert_int_equal(http_head_parse(cases[i], strlen(cases[i]), 4096, 100, &h), 0);
        }
}

static void test_find_ctl(void **state) {
        (void)state;
        char b[64];
        for (size_t len = 0; len <= sizeof(b); len++)
                for (size_t at = 0; at <= len; at++) {
                        memset(b, 'a', sizeof(b));
                        for (size_t k = 0; k < len; k += 3)
                                b[k] = '\t';
                        if (at < len)
                                b[at] = (char)(at % 2 ? 0x7f : 0x01 + at % 31);
                        if (at < len && b[at] == '\t')
                                b[at] = 0x02;
                        assert_int_equal(http_find_ctl(b, len), at);
                }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_against_llhttp),
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_declined),
                cmocka_unit_test(test_find_ctl),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
