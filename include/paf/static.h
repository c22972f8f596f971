/* paf/static.h — static files under a directory as an HTTP handler, with an open-file cache. */
#pragma once

#include <systemd/sd-event.h>

#include <paf/common.h>
#include <paf/http.h>
#include <paf/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * What `paf serve` serves, for any program on libpaf (ABI 1.3): GET and HEAD
 * of the files under a root directory (405 otherwise), with
 *   - a MIME type by extension, ETag and Last-Modified; If-Match,
 *     If-Unmodified-Since (412), If-None-Match, If-Modified-Since (304);
 *   - one byte range (206, 416 when unsatisfiable; If-Range; several ranges
 *     answer 200 with everything);
 *   - index.html, else a listing, for a directory; a directory named
 *     without its final slash is redirected (301) to it. The listing is
 *     HTML (a table: name, size, modification time, a parent link; no CSS
 *     nor JavaScript needed) or, for Accept: application/json, nginx's
 *     autoindex JSON ([{"name","type","mtime","size"}]); directories first,
 *     sorted by ?sort=name|size|date and &order=asc|desc (default: name,
 *     ascending);
 *   - error answers in HTML for clients that ask for text/html (browsers),
 *     plain text otherwise;
 *   - nothing outside the root: "..", absolute symlinks and magic links that
 *     would lead out answer 403, and names starting with '.' answer 404
 *     (and are left out of listings) unless dotfiles are allowed;
 *     /.well-known/ always is served.
 * Bodies go through paf_http_response_send_file(): sendfile(2) over a
 * socket, the core's copy over TLS or a flow without it. Small bodies (64
 * KiB at most) are read and written in one piece with their head.
 *
 * The open-file cache keeps, for up to max_entries files and directories,
 * the descriptor and what fstat(2) said; a request within valid_usec of the
 * last check uses them without a system call, a later one opens the path
 * again and compares (device, inode, size, times): a file changed, replaced
 * or deleted is never served as it was for longer than valid_usec. Entries
 * beyond max_entries go, least recently used first, and so do entries unused
 * for 20 s (when the object is attached to a loop, also while no request
 * comes). A response holds its file's descriptor until it is sent, so at
 * most max_entries descriptors plus one per response in progress are open.
 * Default: 1000 entries, 1 s; [http] open-file-cache and
 * open-file-cache-valid in paf.conf.
 *
 * Thread-safe: one object may serve the loops of several threads. Set it up
 * (dotfiles, cache) before it serves.
 *
 * Chaining: a handler of its own (an ACME challenge, an API under /api/)
 * answers what it knows and passes the rest to paf_http_static_serve().
 */
typedef struct paf_http_static paf_http_static;

/* Opens the root directory: -ENOTDIR for a file, -errno otherwise. */
PAF_EXPORT int paf_http_static_new(const char *root, paf_http_static **ret);
PAF_EXPORT paf_http_static *paf_http_static_ref(paf_http_static *s);
/* Responses in progress keep it alive until they are done. */
PAF_EXPORT paf_http_static *paf_http_static_unref(paf_http_static *s);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_http_static *, paf_http_static_unref)

/* Whether names starting with '.' are served (default: no). */
PAF_EXPORT int paf_http_static_set_dotfiles(paf_http_static *s, bool allow);
/* The open-file cache: max_entries 0 turns it off (every request opens its
 * file); valid_usec 0 checks on every request. Entries held go. */
PAF_EXPORT int paf_http_static_set_cache(paf_http_static *s, unsigned max_entries,
                                         uint64_t valid_usec);
/* The cache as [http] open-file-cache and open-file-cache-valid say in reg's
 * configuration (reg may be NULL: the defaults). */
PAF_EXPORT int paf_http_static_load_config(paf_http_static *s, paf_registry *reg);
/* Precompressed siblings (default: on; [http] gzip-static): for a file, its
 * file.br, file.zst or file.gz, the one the request's Accept-Encoding gives
 * the highest q-value (br, zstd, gzip on a tie), answers with
 * Content-Encoding, its own ETag and ranges of its bytes; the answers for
 * a file with siblings say Vary: Accept-Encoding. Set it before serving. */
PAF_EXPORT int paf_http_static_set_precompressed(paf_http_static *s, bool allow);
/* On-the-fly gzip (default: off; [http] gzip): text types (text/\*,
 * JavaScript, JSON, XML, YAML, SVG, wasm) of the minimum length or more
 * (default 1024 bytes; [http] gzip-min-length), for a client that accepts
 * gzip and asked no range, are deflated as they are sent (chunked, about
 * 300 KiB per response whatever the file's size), with a weak ETag and
 * Vary: Accept-Encoding. Set them before serving. */
PAF_EXPORT int paf_http_static_set_gzip(paf_http_static *s, bool enable);
PAF_EXPORT int paf_http_static_set_gzip_min_length(paf_http_static *s, uint64_t min_length);
/* Types by extension from a mime.types file ("type ext ext…" lines), the
 * built-in table answering for extensions it does not name; path NULL:
 * the built-in table only. Default: /etc/mime.types when it can be read.
 * Text types get "; charset=utf-8". -errno when path cannot be read (the
 * types in use stay). Set it before serving. */
PAF_EXPORT int paf_http_static_set_mime_types(paf_http_static *s, const char *path);
/* Close the descriptors of entries unused for 20 s from a timer on event,
 * also while no request comes (event NULL: detach). Without it that only
 * happens on requests. Detach, or unref, from the loop's thread. */
PAF_EXPORT int paf_http_static_attach_event(paf_http_static *s, sd_event *event);

/* Called once per request, when its response is finished or abandoned (the
 * connection went away): the status sent and the body bytes written. */
typedef void (*paf_http_static_done_handler_t)(int status, uint64_t bytes, void *userdata);

/* Answers req: the file, index.html or listing its target names, or an
 * error status. done may be NULL. -EINVAL (and no answer) only for a NULL
 * argument. */
PAF_EXPORT int paf_http_static_serve(paf_http_static *s, paf_http_request *req,
                                     paf_http_static_done_handler_t done, void *userdata);
/* A paf_http_request_handler_t: paf_http_static_serve() with userdata as
 * the paf_http_static, for paf_http_server_new(). */
PAF_EXPORT void paf_http_static_handler(paf_http_request *req, void *userdata);

#ifdef __cplusplus
}
#endif
