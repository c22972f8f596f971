/* tools/decode.h — paf get --compressed: Content-Encoding decoded as the body streams. */
#pragma once

#include <stddef.h>

typedef struct decoder decoder;

/* Where decoded bytes go; < 0 stops decoding with that error. */
typedef int (*decoder_sink_t)(const void *data, size_t len, void *userdata);

/* What --compressed offers, as curl built with the same libraries. */
const char *decoder_accept_encoding(void);

/*
 * A decoder for a Content-Encoding value ("gzip", "x-gzip", "deflate", "br",
 * "zstd", "identity", "none", or a list of them applied in order). *ret is
 * NULL when there is nothing to undo. -EOPNOTSUPP for an encoding it cannot
 * undo (a body is then an error, an empty one is not: as curl); -E2BIG for
 * more than 5 codings in the list (curl refuses them).
 */
int decoder_new(const char *content_encoding, decoder **ret);
decoder *decoder_free(decoder *d);

/*
 * Feed encoded bytes; decoded ones go to sink, in pieces of at most 16 KiB,
 * and the decoder holds no more than the codings' own state (their window).
 * -EBADMSG for a corrupt stream, -EPROTO for bytes after a stream's end
 * (curl's 61 and 23); decoder_error() says which coding and why. The
 * sink's own errors come back as they are.
 */
int decoder_feed(decoder *d, const void *data, size_t len, decoder_sink_t sink, void *userdata);
/* The body ended: -EBADMSG when a stream was cut short. */
int decoder_finish(decoder *d);
const char *decoder_error(decoder *d);
