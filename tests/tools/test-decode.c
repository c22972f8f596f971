/* tests/tools/test-decode.c — paf get --compressed's decoder: gzip, deflate (zlib and raw), pieces,
 * corrupt and cut streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <zlib.h>

#include <cmocka.h>

#include "tools/decode.h"

typedef struct sink {
        unsigned char *data;
        size_t len;
        size_t max_piece;
} sink;

static int collect(const void *data, size_t len, void *userdata) {
        sink *s = userdata;
        s->data = realloc(s->data, s->len + len);
        assert_non_null(s->data);
        memcpy(s->data + s->len, data, len);
        s->len += len;
        if (len > s->max_piece)
                s->max_piece = len;
        return 0;
}

/* windowBits: 31 gzip, 15 zlib, -15 raw deflate. */
static size_t compress_with(int bits, const unsigned char *in, size_t n, unsigned char *out,
                            size_t size) {
        z_stream z = {0};
        assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
        z.next_in = (unsigned char *)in;
        z.avail_in = (uInt)n;
        z.next_out = out;
        z.avail_out = (uInt)size;
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        size_t got = z.total_out;
        deflateEnd(&z);
        return got;
}

static void run(const char *encoding, int bits, size_t piece) {
        size_t n = 1 << 20;
        unsigned char *plain = malloc(n), *packed = malloc(n);
        for (size_t i = 0; i < n; i++)
                plain[i] = (unsigned char)("abcdefgh"[i % 8] + (i / 4096) % 3);
        size_t m = compress_with(bits, plain, n, packed, n);
        decoder *d = NULL;
        assert_int_equal(decoder_new(encoding, &d), 0);
        assert_non_null(d);
        sink s = {0};
        for (size_t off = 0; off < m; off += piece)
                assert_int_equal(decoder_feed(d, packed + off, off + piece > m ? m - off : piece,
                                              collect, &s),
                                 0);
        assert_int_equal(decoder_finish(d), 0);
        assert_int_equal(s.len, n);
        assert_memory_equal(s.data, plain, n);
        /* Bounded: a megabyte out of a few kilobytes comes in small pieces. */
        assert_true(s.max_piece <= 16384);
        decoder_free(d);
        free(s.data);
        free(plain);
        free(packed);
}

static void test_gzip(void **state) {
        (void)state;
        run("gzip", 31, 1);
        run("x-gzip", 31, 65536);
}

static void test_deflate(void **state) {
        (void)state;
        run("deflate", 15, 7);
        run("deflate", -15, 100); /* raw, as some servers send it */
}

static void test_identity_and_unknown(void **state) {
        (void)state;
        decoder *d = (decoder *)1;
        assert_int_equal(decoder_new("identity", &d), 0);
        assert_null(d);
        assert_int_equal(decoder_new("compress", &d), -EOPNOTSUPP);
}

static void test_corrupt_and_cut(void **state) {
        (void)state;
        decoder *d = NULL;
        sink s = {0};
        assert_int_equal(decoder_new("gzip", &d), 0);
        assert_int_equal(decoder_feed(d, "not gzip at all", 15, collect, &s), -EBADMSG);
        assert_non_null(strstr(decoder_error(d), "gzip"));
        decoder_free(d);

        unsigned char in[1000], out[2000];
        memset(in, 'x', sizeof(in));
        size_t m = compress_with(31, in, sizeof(in), out, sizeof(out));
        assert_int_equal(decoder_new("gzip", &d), 0);
        assert_int_equal(decoder_feed(d, out, m - 4, collect, &s), 0);
        assert_int_equal(decoder_finish(d), -EBADMSG);
        decoder_free(d);
        free(s.data);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_gzip),
                cmocka_unit_test(test_deflate),
                cmocka_unit_test(test_identity_and_unknown),
                cmocka_unit_test(test_corrupt_and_cut),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
