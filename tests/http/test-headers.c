/* tests/http/test-headers.c — header lists (paf_http_headers_*): order, case-insensitive lookup,
 * growth past the fields held inline, removal, validation of names and values. */
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

static paf_http_headers *make(void) {
        paf_http_headers *h = NULL;
        assert_int_equal(paf_http_headers_new(&h), 0);
        assert_non_null(h);
        return h;
}

static void expect_nth(const paf_http_headers *h, size_t i, const char *name, const char *value) {
        const char *n = NULL, *v = NULL;
        assert_int_equal(paf_http_headers_get_nth(h, i, &n, &v), 0);
        assert_string_equal(n, name);
        assert_string_equal(v, value);
}

static void test_lookup(void **state) {
        (void)state;
        paf_http_headers *h = make();
        assert_int_equal(paf_http_headers_count(h), 0);
        assert_null(paf_http_headers_get(h, "Host"));
        assert_int_equal(paf_http_headers_add(h, "Host", "example.org"), 0);
        assert_int_equal(paf_http_headers_add(h, "Accept", "text/html"), 0);
        assert_int_equal(paf_http_headers_add(h, "accept", "*/*"), 0);
        assert_int_equal(paf_http_headers_add(h, "X-Empty", ""), 0);
        assert_int_equal(paf_http_headers_count(h), 4);
        /* Names as given, in order; lookups ignore case, the first wins. */
        expect_nth(h, 0, "Host", "example.org");
        expect_nth(h, 2, "accept", "*/*");
        expect_nth(h, 3, "X-Empty", "");
        assert_int_equal(paf_http_headers_get_nth(h, 4, NULL, NULL), -EINVAL);
        assert_string_equal(paf_http_headers_get(h, "HOST"), "example.org");
        assert_string_equal(paf_http_headers_get(h, "ACCEPT"), "text/html");
        assert_string_equal(paf_http_headers_get(h, "x-empty"), "");
        /* Same first letter, other names: no match. */
        assert_null(paf_http_headers_get(h, "Hos"));
        assert_null(paf_http_headers_get(h, "Hosts"));
        assert_null(paf_http_headers_get(h, "Accept-Encoding"));
        assert_null(paf_http_headers_get(h, ""));
        size_t iter = 0;
        assert_string_equal(paf_http_headers_next(h, "Accept", &iter), "text/html");
        assert_string_equal(paf_http_headers_next(h, "Accept", &iter), "*/*");
        assert_null(paf_http_headers_next(h, "Accept", &iter));
        assert_true(paf_http_headers_has_token(h, "accept", "*/*"));
        assert_false(paf_http_headers_has_token(h, "accept", "text"));
        paf_http_headers_free(h);
        assert_null(paf_http_headers_free(NULL));
}

/* Past what the object holds inline (8 fields) and back: every field
 * keeps its name, value and place. */
static void test_growth_and_removal(void **state) {
        (void)state;
        paf_http_headers *h = make();
        char name[32], value[64];
        for (unsigned i = 0; i < 100; i++) {
                snprintf(name, sizeof(name), "%s-%u", i % 2 ? "Odd" : "Even", i);
                snprintf(value, sizeof(value), "value %u, with some length to it", i);
                assert_int_equal(paf_http_headers_add(h, name, value), 0);
        }
        assert_int_equal(paf_http_headers_count(h), 100);
        for (unsigned i = 0; i < 100; i++) {
                snprintf(name, sizeof(name), "%s-%u", i % 2 ? "Odd" : "Even", i);
                snprintf(value, sizeof(value), "value %u, with some length to it", i);
                expect_nth(h, i, name, value);
                assert_string_equal(paf_http_headers_get(h, name), value);
        }
        for (unsigned i = 1; i < 100; i += 2) {
                snprintf(name, sizeof(name), "odd-%u", i);
                assert_int_equal(paf_http_headers_remove(h, name), 1);
        }
        assert_int_equal(paf_http_headers_remove(h, "odd-1"), 0);
        assert_int_equal(paf_http_headers_count(h), 50);
        for (unsigned i = 0; i < 50; i++) {
                snprintf(name, sizeof(name), "Even-%u", 2 * i);
                snprintf(value, sizeof(value), "value %u, with some length to it", 2 * i);
                expect_nth(h, i, name, value);
        }
        /* set: every field of the name goes, one comes at the end. */
        assert_int_equal(paf_http_headers_add(h, "Dup", "1"), 0);
        assert_int_equal(paf_http_headers_add(h, "Even-0", "again"), 0);
        assert_int_equal(paf_http_headers_set(h, "even-0", "set"), 0);
        assert_int_equal(paf_http_headers_count(h), 51);
        expect_nth(h, 0, "Even-2", "value 2, with some length to it");
        expect_nth(h, 49, "Dup", "1");
        expect_nth(h, 50, "even-0", "set");
        paf_http_headers_free(h);

        /* Inline only: emptied and filled again. */
        h = make();
        for (unsigned round = 0; round < 3; round++) {
                for (unsigned i = 0; i < 8; i++) {
                        snprintf(value, sizeof(value), "%u.%u", round, i);
                        assert_int_equal(paf_http_headers_add(h, "F", value), 0);
                }
                expect_nth(h, 7, "F", value);
                assert_int_equal(paf_http_headers_remove(h, "f"), 8);
                assert_int_equal(paf_http_headers_count(h), 0);
        }
        paf_http_headers_free(h);
}

/* A field that would not survive on the wire is refused, and the list
 * stays as it was. */
static void test_validation(void **state) {
        (void)state;
        paf_http_headers *h = make();
        static const char *const bad_names[] = {
                "", "Bad Name", "Bad:Name", "Bad\tName", "(x)", "x/y", "x@y", "\xc3\xa9", "x\x7f",
        };
        for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
                assert_int_equal(paf_http_headers_add(h, bad_names[i], "v"), -EINVAL);
                assert_int_equal(paf_http_headers_set(h, bad_names[i], "v"), -EINVAL);
        }
        static const char *const bad_values[] = {
                "a\rb", "a\nb", "a\r\nX-Injected: 1", "\x01", "x\x1f", "x\x7f", "\x08",
        };
        assert_int_equal(paf_http_headers_add(h, "Keep", "kept"), 0);
        for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
                assert_int_equal(paf_http_headers_add(h, "Keep", bad_values[i]), -EINVAL);
                assert_int_equal(paf_http_headers_set(h, "Keep", bad_values[i]), -EINVAL);
        }
        assert_int_equal(paf_http_headers_add(h, NULL, "v"), -EINVAL);
        assert_int_equal(paf_http_headers_add(h, "N", NULL), -EINVAL);
        assert_int_equal(paf_http_headers_add(NULL, "N", "v"), -EINVAL);
        assert_int_equal(paf_http_headers_count(h), 1);
        expect_nth(h, 0, "Keep", "kept");
        /* Every token character; tab, spaces and obs-text in values. */
        assert_int_equal(paf_http_headers_add(h, "!#$%&'*+-.^_`|~09azAZ", "a\tb  c \xe9\xff"), 0);
        expect_nth(h, 1, "!#$%&'*+-.^_`|~09azAZ", "a\tb  c \xe9\xff");
        paf_http_headers_free(h);
}

static void test_format_date(void **state) {
        (void)state;
        char buf[40];
        assert_int_equal(paf_http_format_date(784111777, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_int_equal(paf_http_format_date(0, buf, 29), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lookup),
                cmocka_unit_test(test_growth_and_removal),
                cmocka_unit_test(test_validation),
                cmocka_unit_test(test_format_date),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
