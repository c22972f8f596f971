/* paf/http.h — HTTP/1.1 server and client over any flow, on sd-event. */
#pragma once

#include <systemd/sd-event.h>

#include <paf/common.h>
#include <paf/ctx.h>
#include <paf/error.h>
#include <paf/flow.h>
#include <paf/protocol.h>
#include <paf/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- header lists ---- */

/*
 * An ordered list of header fields. Names compare case-insensitively;
 * repeated fields are kept in order. Strings are copied.
 */
typedef struct paf_http_headers paf_http_headers;

PAF_EXPORT int paf_http_headers_new(paf_http_headers **ret);
PAF_EXPORT paf_http_headers *paf_http_headers_free(paf_http_headers *h);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_http_headers *, paf_http_headers_free)
/* Append a field (a repeated name is kept after the earlier ones). */
PAF_EXPORT int paf_http_headers_add(paf_http_headers *h, const char *name, const char *value);
/* Replace every field of that name by one. */
PAF_EXPORT int paf_http_headers_set(paf_http_headers *h, const char *name, const char *value);
/* Remove every field of that name; returns how many. */
PAF_EXPORT int paf_http_headers_remove(paf_http_headers *h, const char *name);
/* The first field of that name, or NULL. */
PAF_EXPORT const char *paf_http_headers_get(const paf_http_headers *h, const char *name);
/* Iterate over the fields of one name: start with *iter = 0; NULL at the end. */
PAF_EXPORT const char *paf_http_headers_next(const paf_http_headers *h, const char *name,
                                             size_t *iter);
PAF_EXPORT size_t paf_http_headers_count(const paf_http_headers *h);
PAF_EXPORT int paf_http_headers_get_nth(const paf_http_headers *h, size_t i, const char **name,
                                        const char **value);
/* Whether a comma-separated field (Connection, …) holds token, case-insensitively. */
PAF_EXPORT bool paf_http_headers_has_token(const paf_http_headers *h, const char *name,
                                           const char *token);
/* The HTTP version of the message the fields were received with: 10, 11 or
 * 20 (HTTP/2); 0 for a list the program made. A response's head handler can
 * tell "HTTP/2 200" from "HTTP/1.1 200 OK" by it. */
PAF_EXPORT int paf_http_headers_get_version(const paf_http_headers *h);
/* The reason phrase of the HTTP/1.x response the fields came with, as the
 * server wrote it ("Moved Temporarily"); NULL otherwise (ABI 1.4). */
PAF_EXPORT const char *paf_http_headers_get_reason(const paf_http_headers *h);

/* "Sun, 06 Nov 1994 08:49:37 GMT" into buf (at least 30 bytes). */
PAF_EXPORT int paf_http_format_date(int64_t unix_seconds, char *buf, size_t size);
PAF_EXPORT const char *paf_http_status_reason(int status);

/* ---- limits and timeouts ---- */

typedef struct paf_http_limits {
        size_t max_header_bytes;     /* request line + headers; 431 beyond */
        unsigned max_headers;        /* header fields; 431 beyond */
        uint64_t max_body;           /* bytes; 413 beyond */
        unsigned max_connections;    /* accepting pauses at this many */
        uint64_t header_timeout_usec; /* from the first byte of a request to its end of headers */
        uint64_t idle_timeout_usec;   /* keep-alive: between requests */
        uint64_t body_timeout_usec;   /* between two pieces of a request body */
        uint64_t write_timeout_usec;  /* a write making no progress */
} paf_http_limits;

/* The defaults, then the [http] section of reg's configuration (reg may be NULL). */
PAF_EXPORT int paf_http_limits_load(paf_http_limits *ret, paf_registry *reg);

/* ---- HTTP/2 ---- */

typedef struct paf_http2_settings {
        bool enabled;                    /* h2 by ALPN, h2c with prior knowledge */
        uint32_t max_concurrent_streams; /* per connection */
        uint32_t initial_window;         /* request body bytes in flight, per stream */
        uint32_t connection_window;      /* the same, per connection */
        uint32_t reset_burst;            /* stream resets and errors a connection may cause */
        uint32_t reset_rate;             /* per second, regained */
        size_t max_output;               /* queued output beyond which reading stops */
} paf_http2_settings;

/* The defaults, then the [http2] section of reg's configuration (reg may be NULL). */
PAF_EXPORT int paf_http2_settings_load(paf_http2_settings *ret, paf_registry *reg);

/* ---- the server ---- */

typedef struct paf_http_server paf_http_server;
typedef struct paf_http_request paf_http_request;

/* A request arrived (its headers; the body is read with
 * paf_http_request_read_body()). The handler answers now or later. */
typedef void (*paf_http_request_handler_t)(paf_http_request *req, void *userdata);
/* A connection failed outside any handler: bad request (status 400, 413,
 * 431 …, already answered), timeout (status 408 or 0), transport error. */
typedef void (*paf_http_error_handler_t)(const char *peer, int status, const char *reason,
                                         void *userdata);
typedef void (*paf_http_done_handler_t)(void *userdata);

PAF_EXPORT int paf_http_server_new(sd_event *event, paf_http_request_handler_t handler,
                                   paf_http_error_handler_t error_handler, void *userdata,
                                   paf_http_server **ret);
PAF_EXPORT paf_http_server *paf_http_server_free(paf_http_server *s);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_http_server *, paf_http_server_free)
PAF_EXPORT int paf_http_server_set_limits(paf_http_server *s, const paf_http_limits *limits);
/* HTTP/2 on the server's connections: a TLS connection whose ALPN
 * chose "h2", and a plain one that starts with the h2 preface. On by
 * default; the [http] limits apply per stream. */
PAF_EXPORT int paf_http_server_set_http2(paf_http_server *s, const paf_http2_settings *settings);
/* Fields added to every final response the server sends, its own error
 * answers (400, 408, 413, 431 …) included, over HTTP/1.1 and HTTP/2: e.g.
 * Strict-Transport-Security or Cache-Control. A field the handler set
 * itself is not added again. Copied; NULL or an empty list removes them.
 * Framing and hop-by-hop fields (Content-Length, Transfer-Encoding,
 * Connection, Keep-Alive, Proxy-Connection, Upgrade, TE, Trailer) are
 * refused: -EINVAL. */
PAF_EXPORT int paf_http_server_set_response_headers(paf_http_server *s,
                                                    const paf_http_headers *headers);
/* Serve the connections a listener accepts; the server owns it from now on. */
PAF_EXPORT int paf_http_server_add_listener(paf_http_server *s, paf_listener *l);
/* Serve one connection (any flow); the server owns it from now on. */
PAF_EXPORT int paf_http_server_add_flow(paf_http_server *s, paf_flow *flow);
/* Graceful stop: accept nothing new, let in-flight requests finish, close
 * idle connections, then call done (from the loop). */
PAF_EXPORT int paf_http_server_stop(paf_http_server *s, paf_http_done_handler_t done,
                                    void *userdata);
PAF_EXPORT unsigned paf_http_server_get_n_connections(paf_http_server *s);
PAF_EXPORT uint64_t paf_http_server_get_n_requests(paf_http_server *s);

/* The request. Strings are valid until the response is finished. */
PAF_EXPORT const char *paf_http_request_get_method(paf_http_request *req);
PAF_EXPORT const char *paf_http_request_get_target(paf_http_request *req);
/* 10 for HTTP/1.0, 11 for HTTP/1.1, 20 for HTTP/2. */
PAF_EXPORT int paf_http_request_get_version(paf_http_request *req);
PAF_EXPORT const paf_http_headers *paf_http_request_get_headers(paf_http_request *req);
/* The same fields where the engine keeps them, without the copy
 * paf_http_request_get_headers() makes: the i-th of
 * paf_http_request_get_n_fields(), -ENOENT past them. Names as they came
 * (HTTP/2's are lowercase): compare them case-insensitively. */
PAF_EXPORT size_t paf_http_request_get_n_fields(paf_http_request *req);
PAF_EXPORT int paf_http_request_get_field(paf_http_request *req, size_t i, const char **name,
                                          const char **value);
/* The peer ("127.0.0.1:41000", "/run/x.sock", …) and the local address. */
PAF_EXPORT const char *paf_http_request_get_peer(paf_http_request *req);
PAF_EXPORT const char *paf_http_request_get_local(paf_http_request *req);
/* The connection's flow, for queries (peer credentials, TLS identity). */
PAF_EXPORT paf_flow *paf_http_request_get_flow(paf_http_request *req);
/* -1 when the body is chunked, 0 when there is none. */
PAF_EXPORT int64_t paf_http_request_get_content_length(paf_http_request *req);
PAF_EXPORT void paf_http_request_set_userdata(paf_http_request *req, void *userdata);
PAF_EXPORT void *paf_http_request_get_userdata(paf_http_request *req);

/*
 * The request body, as a stream: data (len > 0), then the end (len == 0,
 * error 0; trailers, if any, from paf_http_request_get_trailers()), or an
 * error. While paused, the engine stops reading from the flow. The first
 * call sends "100 Continue" when the client expects it.
 */
typedef void (*paf_http_body_handler_t)(paf_http_request *req, const void *data, size_t len,
                                        int error, void *userdata);
PAF_EXPORT int paf_http_request_read_body(paf_http_request *req, paf_http_body_handler_t handler,
                                          void *userdata);
PAF_EXPORT int paf_http_request_pause_body(paf_http_request *req);
PAF_EXPORT int paf_http_request_resume_body(paf_http_request *req);
PAF_EXPORT const paf_http_headers *paf_http_request_get_trailers(paf_http_request *req);

/* Called if the connection goes away before the response is finished; the
 * request stays valid until the handler finishes or abandons it. */
typedef void (*paf_http_abort_handler_t)(paf_http_request *req, int error, void *userdata);
PAF_EXPORT void paf_http_request_set_abort_handler(paf_http_request *req,
                                                   paf_http_abort_handler_t handler,
                                                   void *userdata);

/*
 * The response. content_length >= 0 sends Content-Length; -1 streams: chunked
 * for HTTP/1.1, until close for HTTP/1.0. Date and Server are added. For HEAD
 * the body is not sent (writes complete at once). Writes complete when the
 * flow took the bytes (write the next piece then); data stays the caller's
 * until then.
 */
typedef void (*paf_http_write_handler_t)(paf_http_request *req, int error, void *userdata);
PAF_EXPORT int paf_http_response_start(paf_http_request *req, int status,
                                       const paf_http_headers *headers, int64_t content_length);
PAF_EXPORT int paf_http_response_write(paf_http_request *req, const void *data, size_t len,
                                       paf_http_write_handler_t handler, void *userdata);
/* A body piece from a file (ABI 1.3): len bytes of fd from offset, sent by
 * the flow without copying them through user space where it can
 * (sendfile(2) on sockets; see paf_flow_send_file()). Otherwise as
 * paf_http_response_write(): the handler runs once the flow took them (write
 * the next piece then), and until then fd stays open and the range of the
 * file unchanged. For HEAD nothing is sent. */
PAF_EXPORT int paf_http_response_send_file(paf_http_request *req, int fd, uint64_t offset,
                                           uint64_t len, paf_http_write_handler_t handler,
                                           void *userdata);
/* End the response (trailers only for chunked; may be NULL). The request is
 * released once its bytes are written. */
PAF_EXPORT int paf_http_response_finish(paf_http_request *req, const paf_http_headers *trailers);
/* start + write (copied) + finish. */
PAF_EXPORT int paf_http_respond(paf_http_request *req, int status, const char *content_type,
                                const void *body, size_t len);
/* Answer 101 with headers and hand the raw flow to the caller (Upgrade). */
PAF_EXPORT int paf_http_request_upgrade(paf_http_request *req, const paf_http_headers *headers,
                                        paf_flow **ret);

/* ---- the client ---- */

typedef struct paf_http_client paf_http_client;
typedef struct paf_http_call paf_http_call;

typedef struct paf_http_client_timeouts {
        uint64_t connect_usec;  /* resolution and connect */
        uint64_t response_usec; /* how long the network may stay still: while the
                                   request is sent, no byte of it taken by the
                                   transport (its kernel queue draining counts);
                                   then from the request's end to the response's
                                   headers, and between two pieces of the body */
        uint64_t idle_usec;     /* a kept-alive connection is closed after this */
} paf_http_client_timeouts;

PAF_EXPORT int paf_http_client_new(paf_registry *reg, sd_event *event, paf_http_client **ret);
PAF_EXPORT paf_http_client *paf_http_client_free(paf_http_client *c);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_http_client *, paf_http_client_free)
PAF_EXPORT int paf_http_client_set_timeouts(paf_http_client *c,
                                            const paf_http_client_timeouts *t);
/* Connections opened so far (reuse shows as calls > connections). */
PAF_EXPORT uint64_t paf_http_client_get_n_connections(paf_http_client *c);

/*
 * The response's status and headers arrived (error == NULL), or the call
 * failed (status 0; error names the endpoint and the reason; for a failed
 * connect it lists every candidate transport tried).
 */
typedef void (*paf_http_response_handler_t)(paf_http_call *call, int status,
                                            const paf_http_headers *headers,
                                            const paf_error *error, void *userdata);
/* The response body: data, then the end (len == 0, error 0), or an error —
 * a connection closed before Content-Length bytes is -EPIPE, not an end. */
typedef void (*paf_http_call_body_handler_t)(paf_http_call *call, const void *data, size_t len,
                                             int error, void *userdata);
typedef void (*paf_http_call_write_handler_t)(paf_http_call *call, int error, void *userdata);

/*
 * Send a request to the endpoint ctx resolves to, reusing an idle
 * connection to the same endpoint: one whose call resolved to the same
 * candidates with, for each and for what a layer runs over, the same
 * endpoint keys and the same keys of the protocol's namespace (for TLS:
 * server name, CA, client certificate, insecure …). body_length: 0 for
 * none, >0 for a Content-Length body, -1 for a chunked body; the body is
 * then written with paf_http_call_write() and ended with
 * paf_http_call_finish().
 *
 * User-Agent: the headers' own, else ctx's "http.user-agent" (a string;
 * empty: none is sent, as curl -H "User-Agent:"), else "paf/VERSION".
 *
 * HTTP/2: ctx's "http.version" (a string) chooses. "1.0" (ABI 1.4): an
 * HTTP/1.0 request line, otherwise as "1.1". "1.1", the default:
 * HTTP/1.1, unless a tls.alpn the caller set makes the server pick h2. "2":
 * over TLS, ALPN offers "h2,http/1.1" (when tls.alpn is not set) and the
 * server picks; in clear text HTTP/1.1 (there is no Upgrade: h2c).
 * "2-prior-knowledge": h2 from the first byte, on any transport. Calls to
 * one endpoint share one HTTP/2 connection, as many streams at once as its
 * server allows (SETTINGS_MAX_CONCURRENT_STREAMS), the others queued until
 * a stream closes; calls made while it connects wait for it. Request
 * bodies go as the server's flow-control window opens (a write completes
 * once nghttp2 took its bytes), and a paused call stops taking body, which
 * closes its stream's window. After a GOAWAY, calls above its last stream
 * fail with -EAGAIN (the server did not process them: safe to send again)
 * and new calls open a new connection; a stream the server resets fails
 * its call alone (-ECONNRESET).
 */
PAF_EXPORT int paf_http_client_request(paf_http_client *c, paf_ctx *ctx, const char *method,
                                       const char *target, const paf_http_headers *headers,
                                       int64_t body_length, paf_http_response_handler_t handler,
                                       void *userdata, paf_http_call **ret);
PAF_EXPORT int paf_http_call_write(paf_http_call *call, const void *data, size_t len,
                                   paf_http_call_write_handler_t handler, void *userdata);
PAF_EXPORT int paf_http_call_finish(paf_http_call *call);
PAF_EXPORT int paf_http_call_read_body(paf_http_call *call, paf_http_call_body_handler_t handler,
                                       void *userdata);
PAF_EXPORT int paf_http_call_pause(paf_http_call *call);
PAF_EXPORT int paf_http_call_resume(paf_http_call *call);
/* Which transport and endpoint carried the call ("tcp 127.0.0.1:8080"). */
PAF_EXPORT const char *paf_http_call_get_endpoint(paf_http_call *call);
/* The HTTP version the call speaks: 11, or 20 on an HTTP/2 stream; 0 while
 * it has no connection yet (see http.version). */
PAF_EXPORT int paf_http_call_get_version(paf_http_call *call);
/* How the transport was found, one attempt a line (paf_attempts_format):
 * "tcp 127.0.0.1:8080: used", then why the others were not; NULL before
 * the connect ended. */
PAF_EXPORT const char *paf_http_call_get_report(paf_http_call *call);
/* paf_flow_query() on the connection the call is on (ABI 1.4): its TLS
 * version, its peer's address …; -ENOTCONN while it has none. */
PAF_EXPORT int paf_http_call_query(paf_http_call *call, int what, void *ret, size_t size);

/*
 * When the call's steps happened (ABI 1.4), in CLOCK_MONOTONIC µs: the
 * points curl -w times. start: paf_http_client_request(); namelookup: the
 * transport's name lookup answered (its connect began, when there was no
 * name to look up: an address, a unix socket); connect: the transport
 * under every layer connected; appconnect: the layers over it (TLS) done,
 * 0 without one; pretransfer: the request handed to the connection;
 * starttransfer: the response's first byte. 0: not reached (yet). On a
 * connection kept alive from an earlier call (reused), namelookup is when
 * the call took it, and connect and appconnect are 0, as curl has them.
 * The caller sets struct_size to sizeof(paf_http_call_timings) as it
 * knows it; members past it are left alone, so members can be appended.
 */
typedef struct paf_http_call_timings {
        size_t struct_size;
        uint64_t start_usec;
        uint64_t namelookup_usec;
        uint64_t connect_usec;
        uint64_t appconnect_usec;
        uint64_t pretransfer_usec;
        uint64_t starttransfer_usec;
        bool reused;
} paf_http_call_timings;

/* -EINVAL for a struct_size that ends before start_usec does. */
PAF_EXPORT int paf_http_call_get_timings(paf_http_call *call, paf_http_call_timings *ret);
/* Release the call (aborting it if unfinished; the connection is then not reused). */
PAF_EXPORT paf_http_call *paf_http_call_free(paf_http_call *call);

#ifdef __cplusplus
}
#endif
