/* tools/decode.c — paf get --compressed: gzip and deflate (zlib) undone as the body streams. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "decode.h"

/* Decoded bytes go out in pieces of this size: memory stays bounded
 * whatever the ratio of the compression. */
#define OUT_CHUNK 16384
#define MAX_STAGES 4

typedef enum stage_kind {
        STAGE_GZIP,
        STAGE_DEFLATE,
} stage_kind;

typedef struct stage {
        stage_kind kind;
        z_stream z;
        bool started;   /* inflateInit2 ran */
        bool raw_tried; /* deflate: retried as raw deflate (no zlib header), as curl does */
        bool ended;     /* the stream's end was seen */
        size_t fed;     /* input bytes taken so far */
} stage;

struct decoder {
        stage stages[MAX_STAGES];
        size_t n;
        char error[160];
        unsigned char out[MAX_STAGES][OUT_CHUNK]; /* each stage's output */
};

const char *decoder_accept_encoding(void) {
        return "deflate, gzip";
}

static bool token_is(const char *t, size_t n, const char *name) {
        return strlen(name) == n && strncasecmp(t, name, n) == 0;
}

int decoder_new(const char *content_encoding, decoder **ret) {
        *ret = NULL;
        stage_kind kinds[MAX_STAGES];
        size_t n = 0;
        for (const char *p = content_encoding; p && *p;) {
                p += strspn(p, ", \t");
                size_t len = strcspn(p, ", \t");
                if (len == 0)
                        break;
                if (token_is(p, len, "identity")) {
                } else if (n == MAX_STAGES)
                        return -EOPNOTSUPP;
                else if (token_is(p, len, "gzip") || token_is(p, len, "x-gzip"))
                        kinds[n++] = STAGE_GZIP;
                else if (token_is(p, len, "deflate"))
                        kinds[n++] = STAGE_DEFLATE;
                else
                        return -EOPNOTSUPP;
                p += len;
        }
        if (n == 0)
                return 0;
        decoder *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        /* Encodings are listed in the order they were applied: undone last first. */
        for (size_t i = 0; i < n; i++)
                d->stages[i].kind = kinds[n - 1 - i];
        d->n = n;
        *ret = d;
        return 0;
}

decoder *decoder_free(decoder *d) {
        if (!d)
                return NULL;
        for (size_t i = 0; i < d->n; i++)
                if (d->stages[i].started)
                        inflateEnd(&d->stages[i].z);
        free(d);
        return NULL;
}

const char *decoder_error(decoder *d) {
        return d && d->error[0] ? d->error : "no error";
}

static int fail(decoder *d, const char *what, const stage *s) {
        snprintf(d->error, sizeof(d->error), "%s: %s", s->kind == STAGE_GZIP ? "gzip" : "deflate",
                 what);
        return -EBADMSG;
}

static int stage_start(stage *s, bool raw) {
        memset(&s->z, 0, sizeof(s->z));
        int bits = s->kind == STAGE_GZIP ? 16 + MAX_WBITS : raw ? -MAX_WBITS : MAX_WBITS;
        if (inflateInit2(&s->z, bits) != Z_OK)
                return -ENOMEM;
        s->started = true;
        return 0;
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
        if (s->ended)
                /* Bytes after the end: curl ignores them too. */
                return 0;
        if (!s->started && (r = stage_start(s, false)) < 0)
                return r;
        unsigned char *out = d->out[i];
        bool first = s->fed == 0;
        s->z.next_in = (unsigned char *)data;
        s->z.avail_in = (uInt)len;
        while (s->z.avail_in > 0 && !s->ended) {
                s->z.next_out = out;
                s->z.avail_out = OUT_CHUNK;
                uInt before = s->z.avail_in;
                int zr = inflate(&s->z, Z_NO_FLUSH);
                s->fed += before - s->z.avail_in;
                if (zr == Z_DATA_ERROR && s->kind == STAGE_DEFLATE && !s->raw_tried && first &&
                    s->z.total_out == 0) {
                        /* "deflate" without its zlib header, as some servers send
                         * it: start again as raw deflate on the same bytes. */
                        inflateEnd(&s->z);
                        s->started = false;
                        s->raw_tried = true;
                        s->fed = 0;
                        if ((r = stage_start(s, true)) < 0)
                                return r;
                        s->z.next_in = (unsigned char *)data;
                        s->z.avail_in = (uInt)len;
                        continue;
                }
                if (zr == Z_STREAM_END)
                        s->ended = true;
                else if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT)
                        return fail(d, s->z.msg ? s->z.msg : "invalid data", s);
                else if (zr == Z_MEM_ERROR)
                        return -ENOMEM;
                else if (zr == Z_BUF_ERROR && s->z.avail_out == OUT_CHUNK)
                        break; /* no progress possible: needs more input */
                r = emit(d, i, out, OUT_CHUNK - s->z.avail_out, sink, userdata);
                if (r < 0)
                        return r;
        }
        /* Output still held inside zlib with no input left. */
        while (!s->ended && s->z.avail_in == 0) {
                s->z.next_out = out;
                s->z.avail_out = OUT_CHUNK;
                int zr = inflate(&s->z, Z_NO_FLUSH);
                if (zr == Z_STREAM_END)
                        s->ended = true;
                else if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT)
                        return fail(d, s->z.msg ? s->z.msg : "invalid data", s);
                size_t got = OUT_CHUNK - s->z.avail_out;
                if (got == 0)
                        break;
                r = emit(d, i, out, got, sink, userdata);
                if (r < 0)
                        return r;
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
                /* An empty body is not a stream cut short: curl takes it. */
                if (s->started && !s->ended && s->fed > 0)
                        return fail(d, "the stream ended before its end", s);
        }
        return 0;
}
