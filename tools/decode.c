/* tools/decode.c — paf get --compressed: gzip, deflate (zlib), br (libbrotlidec) and zstd
 * (libzstd) undone as the body streams. */
#include <brotli/decode.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "decode.h"

/* Decoded bytes go out in pieces of this size: memory stays bounded
 * whatever the ratio of the compression. */
#define OUT_CHUNK 16384
/* curl 7.88's MAX_ENCODE_STACK (CVE-2023-23916): every listed coding
 * counts, identity included. */
#define MAX_CODINGS 5

typedef enum stage_kind {
        STAGE_GZIP,
        STAGE_DEFLATE,
        STAGE_BROTLI,
        STAGE_ZSTD,
} stage_kind;

static const char *const stage_name[] = {"gzip", "deflate", "br", "zstd"};

typedef struct stage {
        stage_kind kind;
        bool started;   /* the library's state exists */
        bool raw_tried; /* deflate: retried as raw deflate (no zlib header), as curl does */
        bool ended;     /* the stream's end was seen: what follows is not its own */
        bool in_frame;  /* zstd: inside a frame (a body may hold several, one after another) */
        size_t fed;     /* input bytes taken so far */
        size_t slack;   /* raw deflate: bytes after the end taken silently (curl's 4) */
        z_stream z;
        BrotliDecoderState *br;
        ZSTD_DStream *zs;
} stage;

struct decoder {
        stage stages[MAX_CODINGS];
        size_t n;
        char error[160];
        unsigned char out[MAX_CODINGS][OUT_CHUNK]; /* each stage's output */
};

const char *decoder_accept_encoding(void) {
        /* curl 7.88's own list and order when built with zlib, brotli and zstd. */
        return "deflate, gzip, br, zstd";
}

static bool token_is(const char *t, size_t n, const char *name) {
        return strlen(name) == n && strncasecmp(t, name, n) == 0;
}

int decoder_new(const char *content_encoding, decoder **ret) {
        stage_kind kinds[MAX_CODINGS];
        size_t n = 0, listed = 0;
        bool unknown = false;
        /* As curl splits the field: names between commas, blanks around
         * them dropped. */
        for (const char *p = content_encoding; p && *p;) {
                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                const char *name = p;
                size_t len = 0;
                for (; *p && *p != ','; p++)
                        if (!isspace((unsigned char)*p))
                                len = (size_t)(p - name) + 1;
                if (len == 0)
                        continue;
                if (++listed > MAX_CODINGS)
                        return -E2BIG;
                if (token_is(name, len, "identity") || token_is(name, len, "none"))
                        continue;
                if (token_is(name, len, "gzip") || token_is(name, len, "x-gzip"))
                        kinds[n++] = STAGE_GZIP;
                else if (token_is(name, len, "deflate"))
                        kinds[n++] = STAGE_DEFLATE;
                else if (token_is(name, len, "br"))
                        kinds[n++] = STAGE_BROTLI;
                else if (token_is(name, len, "zstd"))
                        kinds[n++] = STAGE_ZSTD;
                else
                        unknown = true; /* the count above still applies to the rest */
        }
        if (unknown)
                return -EOPNOTSUPP;
        if (n == 0) {
                *ret = NULL;
                return 0;
        }
        decoder *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        /* Codings are listed in the order they were applied: undone last first. */
        for (size_t i = 0; i < n; i++)
                d->stages[i].kind = kinds[n - 1 - i];
        d->n = n;
        *ret = d;
        return 0;
}

static void stage_end(stage *s) {
        if (!s->started)
                return;
        switch (s->kind) {
        case STAGE_GZIP:
        case STAGE_DEFLATE:
                inflateEnd(&s->z);
                break;
        case STAGE_BROTLI:
                BrotliDecoderDestroyInstance(s->br);
                s->br = NULL;
                break;
        case STAGE_ZSTD:
                ZSTD_freeDStream(s->zs);
                s->zs = NULL;
                break;
        }
        s->started = false;
}

decoder *decoder_free(decoder *d) {
        if (!d)
                return NULL;
        for (size_t i = 0; i < d->n; i++)
                stage_end(&d->stages[i]);
        free(d);
        return NULL;
}

const char *decoder_error(decoder *d) {
        return d && d->error[0] ? d->error : "no error";
}

static int fail(decoder *d, const stage *s, int r, const char *what) {
        snprintf(d->error, sizeof(d->error), "%s: %s", stage_name[s->kind], what);
        return r;
}

static int stage_start(stage *s, bool raw) {
        switch (s->kind) {
        case STAGE_GZIP:
        case STAGE_DEFLATE:
                memset(&s->z, 0, sizeof(s->z));
                /* gzip: 32 + 15 takes a zlib header too, as curl's inflateInit2
                 * does; deflate: the zlib format, or raw when retried. */
                if (inflateInit2(&s->z, s->kind == STAGE_GZIP ? 32 + MAX_WBITS
                                        : raw                 ? -MAX_WBITS
                                                              : MAX_WBITS) != Z_OK)
                        return -ENOMEM;
                break;
        case STAGE_BROTLI:
                s->br = BrotliDecoderCreateInstance(NULL, NULL, NULL);
                if (!s->br)
                        return -ENOMEM;
                break;
        case STAGE_ZSTD:
                s->zs = ZSTD_createDStream();
                if (!s->zs)
                        return -ENOMEM;
                break;
        }
        s->started = true;
        return 0;
}

/* BROTLI_DECODER_ERROR_FORMAT_PADDING_1 -> "corrupt data (padding 1)". */
static int brotli_fail(decoder *d, const stage *s) {
        BrotliDecoderErrorCode code = BrotliDecoderGetErrorCode(s->br);
        const char *name = BrotliDecoderErrorString(code); /* "PADDING_1" */
        bool format = code <= BROTLI_DECODER_ERROR_FORMAT_EXUBERANT_NIBBLE &&
                      code >= BROTLI_DECODER_ERROR_FORMAT_BLOCK_SWITCH;
        bool alloc = code <= BROTLI_DECODER_ERROR_ALLOC_CONTEXT_MODES &&
                     code >= BROTLI_DECODER_ERROR_ALLOC_BLOCK_TYPE_TREES;
        char lower[64];
        size_t k = 0;
        for (; *name && k + 1 < sizeof(lower); name++)
                lower[k++] = *name == '_' ? ' ' : (char)tolower((unsigned char)*name);
        lower[k] = '\0';
        char what[96];
        snprintf(what, sizeof(what), format ? "corrupt data (%s)" : "%s", lower);
        return fail(d, s, alloc ? -ENOMEM : -EBADMSG, what);
}

/*
 * One call into the stage's library: takes from *in, writes at most
 * OUT_CHUNK bytes into out (*produced). The stream's end sets s->ended;
 * what it leaves of *in is bytes after the end.
 */
static int stage_step(decoder *d, stage *s, const unsigned char **in, size_t *in_len,
                      unsigned char *out, size_t *produced) {
        *produced = 0;
        switch (s->kind) {
        case STAGE_GZIP:
        case STAGE_DEFLATE: {
                /* uInt: a piece of the input at a time on a 64-bit size_t. */
                uInt take = *in_len > 1u << 30 ? 1u << 30 : (uInt)*in_len;
                s->z.next_in = (unsigned char *)*in;
                s->z.avail_in = take;
                s->z.next_out = out;
                s->z.avail_out = OUT_CHUNK;
                int zr = inflate(&s->z, Z_NO_FLUSH);
                size_t used = take - s->z.avail_in;
                *in += used;
                *in_len -= used;
                *produced = OUT_CHUNK - s->z.avail_out;
                if (zr == Z_STREAM_END)
                        s->ended = true;
                else if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT || zr == Z_STREAM_ERROR)
                        return fail(d, s, -EBADMSG, s->z.msg ? s->z.msg : "invalid data");
                else if (zr == Z_MEM_ERROR)
                        return fail(d, s, -ENOMEM, "out of memory");
                /* Z_BUF_ERROR: no progress possible, more input needed. */
                return 0;
        }
        case STAGE_BROTLI: {
                size_t avail_out = OUT_CHUNK;
                uint8_t *next_out = out;
                BrotliDecoderResult br = BrotliDecoderDecompressStream(s->br, in_len, in,
                                                                       &avail_out, &next_out, NULL);
                *produced = OUT_CHUNK - avail_out;
                if (br == BROTLI_DECODER_RESULT_ERROR)
                        return brotli_fail(d, s);
                if (br == BROTLI_DECODER_RESULT_SUCCESS)
                        s->ended = true;
                return 0;
        }
        case STAGE_ZSTD: {
                ZSTD_inBuffer zin = {*in, *in_len, 0};
                ZSTD_outBuffer zout = {out, OUT_CHUNK, 0};
                size_t zr = ZSTD_decompressStream(s->zs, &zout, &zin);
                *in += zin.pos;
                *in_len -= zin.pos;
                *produced = zout.pos;
                if (ZSTD_isError(zr))
                        return fail(d, s,
                                    ZSTD_getErrorCode(zr) == ZSTD_error_memory_allocation
                                            ? -ENOMEM
                                            : -EBADMSG,
                                    ZSTD_getErrorName(zr));
                /* 0: a frame ended and is flushed; another may follow (RFC 8878
                 * allows several), so the stream itself never ends here. A
                 * call that did nothing says nothing: between frames, it
                 * hints at the next one's header. */
                if (zin.pos > 0 || zout.pos > 0)
                        s->in_frame = zr != 0;
                return 0;
        }
        }
        return -EINVAL;
}

static int feed_stage(decoder *d, size_t i, const unsigned char *data, size_t len,
                      decoder_sink_t sink, void *userdata);

/* Stage i's output: the next stage's input, or the sink's. */
static int emit(decoder *d, size_t i, const unsigned char *data, size_t len, decoder_sink_t sink,
                void *userdata) {
        if (len == 0)
                return 0;
        if (i + 1 < d->n)
                return feed_stage(d, i + 1, data, len, sink, userdata);
        return sink(data, len, userdata);
}

static int feed_stage(decoder *d, size_t i, const unsigned char *data, size_t len,
                      decoder_sink_t sink, void *userdata) {
        stage *s = &d->stages[i];
        int r;
        if (!s->ended) {
                if (!s->started && (r = stage_start(s, false)) < 0)
                        return fail(d, s, r, "out of memory");
                const unsigned char *in = data;
                size_t left = len, fed_before = s->fed;
                /* Until the input is taken and the library holds no more
                 * output (it filled less than the buffer), or the end. */
                for (;;) {
                        size_t had = left, got = 0;
                        r = stage_step(d, s, &in, &left, d->out[i], &got);
                        s->fed += had - left;
                        if (r == -EBADMSG && s->kind == STAGE_DEFLATE && !s->raw_tried &&
                            fed_before == 0 && s->z.total_out == 0) {
                                /* "deflate" without its zlib header, as some servers
                                 * send it: start again as raw deflate on the same
                                 * bytes, as curl does. */
                                stage_end(s);
                                s->raw_tried = true;
                                s->slack = 4;
                                s->fed = 0;
                                d->error[0] = '\0';
                                if ((r = stage_start(s, true)) < 0)
                                        return fail(d, s, r, "out of memory");
                                in = data;
                                left = len;
                                continue;
                        }
                        if (r < 0)
                                return r;
                        if ((r = emit(d, i, d->out[i], got, sink, userdata)) < 0)
                                return r;
                        if (s->ended || (left == 0 && got < OUT_CHUNK) || (got == 0 && left == had))
                                break;
                }
                data = in;
                len = left;
        }
        if (s->ended && len > 0) {
                /* Bytes after the end: curl 7.88 refuses them, but for raw
                 * deflate's up to 4 (a trailer of unknown kind). */
                size_t take = len < s->slack ? len : s->slack;
                s->slack -= take;
                if (len > take)
                        return fail(d, s, -EPROTO, "bytes after the end of the stream");
        }
        return 0;
}

int decoder_feed(decoder *d, const void *data, size_t len, decoder_sink_t sink, void *userdata) {
        if (!d || len == 0)
                return 0;
        return feed_stage(d, 0, data, len, sink, userdata);
}

int decoder_finish(decoder *d) {
        if (!d)
                return 0;
        for (size_t i = 0; i < d->n; i++) {
                const stage *s = &d->stages[i];
                /* An empty body is not a stream cut short: curl takes it. A
                 * zstd body ends between frames. */
                bool cut = s->kind == STAGE_ZSTD ? s->in_frame : !s->ended;
                if (s->fed > 0 && cut)
                        return fail(d, s, -EBADMSG, "the stream ended before its end");
        }
        return 0;
}
