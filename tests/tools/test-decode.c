/* tests/tools/test-decode.c — paf get --compressed's decoder: gzip, deflate (zlib and raw), br,
 * zstd, stacked codings, pieces, bounded output, corrupt and cut streams, bytes after the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

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

/* Counts without keeping: for outputs too large to hold. */
static int count(const void *data, size_t len, void *userdata) {
        sink *s = userdata;
        (void)data;
        s->len += len;
        if (len > s->max_piece)
                s->max_piece = len;
        return 0;
}

typedef struct buf {
        unsigned char *data;
        size_t len;
} buf;

static void buf_free(buf *b) {
        free(b->data);
        *b = (buf){0};
}

/* windowBits: 31 gzip, 15 zlib, -15 raw deflate. */
static buf zlib_pack(int bits, const unsigned char *in, size_t n) {
        z_stream z = {0};
        assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
        buf b = {malloc(deflateBound(&z, n) + 32), 0};
        z.next_in = (unsigned char *)in;
        z.avail_in = (uInt)n;
        z.next_out = b.data;
        z.avail_out = (uInt)deflateBound(&z, n) + 32;
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        b.len = z.total_out;
        deflateEnd(&z);
        return b;
}

static buf brotli_pack(const unsigned char *in, size_t n) {
        size_t size = BrotliEncoderMaxCompressedSize(n) + 64;
        buf b = {malloc(size), size};
        assert_true(BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, n, in,
                                          &b.len, b.data));
        return b;
}

static buf zstd_pack(const unsigned char *in, size_t n) {
        size_t size = ZSTD_compressBound(n);
        buf b = {malloc(size), 0};
        b.len = ZSTD_compress(b.data, size, in, n, 3);
        assert_false(ZSTD_isError(b.len));
        return b;
}

static buf pack(const char *coding, const unsigned char *in, size_t n) {
        if (strcmp(coding, "gzip") == 0)
                return zlib_pack(31, in, n);
        if (strcmp(coding, "deflate") == 0)
                return zlib_pack(15, in, n);
        if (strcmp(coding, "raw") == 0)
                return zlib_pack(-15, in, n);
        if (strcmp(coding, "br") == 0)
                return brotli_pack(in, n);
        assert_string_equal(coding, "zstd");
        return zstd_pack(in, n);
}

static unsigned char *plain_text(size_t n) {
        unsigned char *plain = malloc(n);
        for (size_t i = 0; i < n; i++)
                plain[i] = (unsigned char)("abcdefgh"[i % 8] + (i / 4096) % 3 + (i * 7919) % 5);
        return plain;
}

/* Feeds packed in pieces of piece bytes; the decoded bytes must be plain. */
static void decode_expect(const char *encoding, const buf *packed, size_t piece,
                          const unsigned char *plain, size_t n) {
        decoder *d = NULL;
        assert_int_equal(decoder_new(encoding, &d), 0);
        assert_non_null(d);
        sink s = {0};
        for (size_t off = 0; off < packed->len; off += piece) {
                size_t k = off + piece > packed->len ? packed->len - off : piece;
                assert_int_equal(decoder_feed(d, packed->data + off, k, collect, &s), 0);
        }
        assert_int_equal(decoder_finish(d), 0);
        assert_int_equal(s.len, n);
        assert_memory_equal(s.data, plain, n);
        /* Bounded: a megabyte out of a few kilobytes comes in small pieces. */
        assert_true(s.max_piece <= 16384);
        decoder_free(d);
        free(s.data);
}

static void run(const char *encoding, const char *packer, size_t piece) {
        size_t n = 1 << 20;
        unsigned char *plain = plain_text(n);
        buf packed = pack(packer, plain, n);
        decode_expect(encoding, &packed, piece, plain, n);
        buf_free(&packed);
        free(plain);
}

static void test_gzip(void **state) {
        (void)state;
        run("gzip", "gzip", 1);
        run("x-gzip", "gzip", 65536);
        run("GZIP", "gzip", 1000);
        /* A zlib header under "gzip": curl's inflateInit2 takes both. */
        run("gzip", "deflate", 333);
}

static void test_deflate(void **state) {
        (void)state;
        run("deflate", "deflate", 7);
        run("deflate", "raw", 100); /* raw, as some servers send it */
}

static void test_brotli(void **state) {
        (void)state;
        run("br", "br", 1);
        run("br", "br", 4096);
        run("  Br ", "br", 1 << 20);
}

static void test_zstd(void **state) {
        (void)state;
        run("zstd", "zstd", 1);
        run("zstd", "zstd", 10000);
        run("ZSTD", "zstd", 1 << 20);
}

/* "gzip, br": gzipped, then brotli'd; undone br first. */
static void test_stacked(void **state) {
        (void)state;
        size_t n = 300000;
        unsigned char *plain = plain_text(n);
        buf g = pack("gzip", plain, n);
        buf gb = pack("br", g.data, g.len);
        decode_expect("gzip, br", &gb, 1, plain, n);
        decode_expect("gzip,identity ,br", &gb, 5000, plain, n);
        buf z = pack("zstd", plain, n);
        buf zd = pack("deflate", z.data, z.len);
        buf zdg = pack("gzip", zd.data, zd.len);
        decode_expect("zstd, deflate, gzip", &zdg, 17, plain, n);
        decode_expect("none, zstd, deflate, identity, gzip", &zdg, 4096, plain, n);
        buf_free(&g);
        buf_free(&gb);
        buf_free(&z);
        buf_free(&zd);
        buf_free(&zdg);
        free(plain);
}

/* A small body that grows to 16 MiB: the output comes in pieces, whatever
 * the ratio, through every coding. */
static void test_bounded(void **state) {
        (void)state;
        size_t n = 16u << 20;
        unsigned char *zeros = calloc(1, n);
        static const char *const codings[] = {"gzip", "deflate", "br", "zstd"};
        for (size_t c = 0; c < 4; c++) {
                buf packed = pack(codings[c], zeros, n);
                assert_true(packed.len < n / 500);
                decoder *d = NULL;
                assert_int_equal(decoder_new(codings[c], &d), 0);
                sink s = {0};
                assert_int_equal(decoder_feed(d, packed.data, packed.len, count, &s), 0);
                assert_int_equal(decoder_finish(d), 0);
                assert_int_equal(s.len, n);
                assert_true(s.max_piece <= 16384);
                decoder_free(d);
                buf_free(&packed);
        }
        free(zeros);
}

static void test_identity_and_unknown(void **state) {
        (void)state;
        decoder *d = (decoder *)1;
        assert_int_equal(decoder_new("identity", &d), 0);
        assert_null(d);
        d = (decoder *)1;
        assert_int_equal(decoder_new("none, identity", &d), 0);
        assert_null(d);
        assert_int_equal(decoder_new("compress", &d), -EOPNOTSUPP);
        assert_int_equal(decoder_new("gzip, x-br", &d), -EOPNOTSUPP);
        /* curl 7.88: more than 5 codings are refused, identity counted. */
        assert_int_equal(decoder_new("gzip, gzip, gzip, gzip, gzip", &d), 0);
        decoder_free(d);
        assert_int_equal(decoder_new("gzip, gzip, gzip, identity, identity, identity", &d), -E2BIG);
        assert_int_equal(decoder_new("compress,a,b,c,d,e", &d), -E2BIG);
        assert_string_equal(decoder_accept_encoding(), "deflate, gzip, br, zstd");
}

static void expect_corrupt(const char *coding, const void *data, size_t len, const char *why) {
        decoder *d = NULL;
        sink s = {0};
        assert_int_equal(decoder_new(coding, &d), 0);
        assert_int_equal(decoder_feed(d, data, len, collect, &s), -EBADMSG);
        assert_non_null(strstr(decoder_error(d), coding));
        assert_non_null(strstr(decoder_error(d), why));
        decoder_free(d);
        free(s.data);
}

static void test_corrupt(void **state) {
        (void)state;
        static const char junk[] = "this is not compressed at all\n";
        expect_corrupt("gzip", junk, sizeof(junk) - 1, "incorrect header check");
        expect_corrupt("br", junk, sizeof(junk) - 1, "corrupt data");
        expect_corrupt("zstd", junk, sizeof(junk) - 1, "Unknown frame descriptor");

        /* Damage in the middle of a valid stream. */
        size_t n = 200000;
        unsigned char *plain = plain_text(n);
        static const char *const codings[] = {"br", "zstd"};
        for (size_t c = 0; c < 2; c++) {
                buf packed = pack(codings[c], plain, n);
                for (size_t i = packed.len / 2; i < packed.len / 2 + 64; i++)
                        packed.data[i] ^= 0x5a;
                decoder *d = NULL;
                sink s = {0};
                assert_int_equal(decoder_new(codings[c], &d), 0);
                int r = decoder_feed(d, packed.data, packed.len, collect, &s);
                if (r == 0)
                        r = decoder_finish(d);
                assert_int_equal(r, -EBADMSG);
                assert_true(s.len < n);
                decoder_free(d);
                free(s.data);
                buf_free(&packed);
        }
        free(plain);
}

/* Cut short: paf says so (61) where curl 7.88 takes the part it got. */
static void test_cut(void **state) {
        (void)state;
        size_t n = 100000;
        unsigned char *plain = plain_text(n);
        static const char *const codings[] = {"gzip", "deflate", "br", "zstd"};
        for (size_t c = 0; c < 4; c++) {
                buf packed = pack(codings[c], plain, n);
                decoder *d = NULL;
                sink s = {0};
                assert_int_equal(decoder_new(codings[c], &d), 0);
                assert_int_equal(decoder_feed(d, packed.data, packed.len - 4, collect, &s), 0);
                assert_int_equal(decoder_finish(d), -EBADMSG);
                assert_non_null(strstr(decoder_error(d), "ended before its end"));
                decoder_free(d);
                free(s.data);
                buf_free(&packed);
        }
        /* Nothing at all is an empty body, not a cut stream. */
        for (size_t c = 0; c < 4; c++) {
                decoder *d = NULL;
                assert_int_equal(decoder_new(codings[c], &d), 0);
                assert_int_equal(decoder_finish(d), 0);
                decoder_free(d);
        }
        free(plain);
}

/* Bytes after the stream's end: -EPROTO (curl's write error, 23) once the
 * stream's own bytes are out; zstd takes another frame, and raw deflate
 * up to 4 bytes of trailer, as curl. */
static void test_after_the_end(void **state) {
        (void)state;
        static const unsigned char text[] = "hello, again\n";
        static const char *const codings[] = {"gzip", "deflate", "br"};
        for (size_t c = 0; c < 3; c++)
                for (int split = 0; split < 2; split++) {
                        buf packed = pack(codings[c], text, sizeof(text) - 1);
                        decoder *d = NULL;
                        sink s = {0};
                        assert_int_equal(decoder_new(codings[c], &d), 0);
                        unsigned char *twice = malloc(2 * packed.len);
                        memcpy(twice, packed.data, packed.len);
                        memcpy(twice + packed.len, packed.data, packed.len);
                        int r;
                        if (split) {
                                /* The end in one piece, the rest in the next. */
                                assert_int_equal(decoder_feed(d, twice, packed.len, collect, &s),
                                                 0);
                                r = decoder_feed(d, twice + packed.len, packed.len, collect, &s);
                        } else
                                r = decoder_feed(d, twice, 2 * packed.len, collect, &s);
                        assert_int_equal(r, -EPROTO);
                        assert_non_null(strstr(decoder_error(d), "after the end"));
                        assert_int_equal(s.len, sizeof(text) - 1);
                        assert_memory_equal(s.data, text, s.len);
                        free(twice);
                        decoder_free(d);
                        free(s.data);
                        buf_free(&packed);
                }

        buf z = pack("zstd", text, sizeof(text) - 1);
        unsigned char two[256];
        assert_true(2 * z.len + 4 <= sizeof(two));
        memcpy(two, z.data, z.len);
        memcpy(two + z.len, z.data, z.len);
        decoder *d = NULL;
        sink s = {0};
        assert_int_equal(decoder_new("zstd", &d), 0);
        assert_int_equal(decoder_feed(d, two, 2 * z.len, collect, &s), 0);
        assert_int_equal(decoder_finish(d), 0);
        assert_int_equal(s.len, 2 * (sizeof(text) - 1));
        /* Junk after a frame is a frame that is not one. */
        memcpy(two + z.len, "junk", 4);
        assert_int_equal(decoder_feed(d, two + z.len, 4, collect, &s), -EBADMSG);
        decoder_free(d);
        free(s.data);
        buf_free(&z);

        buf raw = pack("raw", text, sizeof(text) - 1);
        unsigned char r4[128];
        memcpy(r4, raw.data, raw.len);
        memcpy(r4 + raw.len, "\x01\x02\x03\x04\x05", 5);
        s = (sink){0};
        assert_int_equal(decoder_new("deflate", &d), 0);
        assert_int_equal(decoder_feed(d, r4, raw.len + 4, collect, &s), 0);
        assert_int_equal(decoder_finish(d), 0);
        assert_int_equal(decoder_feed(d, r4 + raw.len + 4, 1, collect, &s), -EPROTO);
        assert_int_equal(s.len, sizeof(text) - 1);
        decoder_free(d);
        free(s.data);
        buf_free(&raw);
}

static int refuse(const void *data, size_t len, void *userdata) {
        (void)data;
        (void)len;
        (void)userdata;
        return -ENOSPC;
}

/* The sink's own error comes back as it is, not as a decoding one. */
static void test_sink_error(void **state) {
        (void)state;
        static const char *const codings[] = {"gzip", "br", "zstd"};
        for (size_t c = 0; c < 3; c++) {
                buf packed = pack(codings[c], (const unsigned char *)"abc", 3);
                decoder *d = NULL;
                assert_int_equal(decoder_new(codings[c], &d), 0);
                assert_int_equal(decoder_feed(d, packed.data, packed.len, refuse, NULL), -ENOSPC);
                decoder_free(d);
                buf_free(&packed);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_gzip),
                cmocka_unit_test(test_deflate),
                cmocka_unit_test(test_brotli),
                cmocka_unit_test(test_zstd),
                cmocka_unit_test(test_stacked),
                cmocka_unit_test(test_bounded),
                cmocka_unit_test(test_identity_and_unknown),
                cmocka_unit_test(test_corrupt),
                cmocka_unit_test(test_cut),
                cmocka_unit_test(test_after_the_end),
                cmocka_unit_test(test_sink_error),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
