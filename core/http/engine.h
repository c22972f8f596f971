/* core/http/engine.h — what the HTTP/1.1 engine (server.c) and the HTTP/2
 * one (h2.c) share: the request, the server, and the calls between them. */
#pragma once

#include <llhttp.h>

#include "core/paf-internal.h"
#include <paf/http.h>

/* A string offset in the request's arena that is not set. */
#define NO_OFFSET UINT32_MAX
/* Connection buffers the server keeps for reuse. */
#define SPARE_BUFS 8

typedef struct h2_conn h2_conn;
typedef struct h2_stream h2_stream;

typedef struct conn conn;

typedef struct field_ref {
        uint32_t name, name_len;
        uint32_t value, value_len;
} field_ref;

typedef enum resp_state {
        RESP_NONE,
        RESP_STARTED,
        RESP_FINISHED,
} resp_state;

typedef enum framing {
        FRAMING_NONE,    /* 204, 304 */
        FRAMING_LENGTH,  /* Content-Length */
        FRAMING_CHUNKED, /* HTTP/1.1, length unknown */
        FRAMING_CLOSE,   /* HTTP/1.0, length unknown: ends with the connection */
} framing;

typedef enum phase {
        PHASE_IDLE,     /* between requests, nothing of the next one yet */
        PHASE_HEADERS,  /* request line and headers */
        PHASE_BODY,     /* the handler has the request, its body is not parsed to the end */
        PHASE_COMPLETE, /* the request is parsed, its response not done */
} phase;

typedef enum parse_event {
        EV_NONE,
        EV_BODY,
        EV_COMPLETE,
} parse_event;

typedef enum timeout_kind {
        TIMEOUT_NONE,
        TIMEOUT_HEADER,
        TIMEOUT_IDLE,
        TIMEOUT_BODY,
        TIMEOUT_WRITE,
        TIMEOUT_LINGER,
        _TIMEOUT_MAX,
} timeout_kind;

struct paf_http_request {
        unsigned n_ref;
        conn *conn; /* NULL once the connection is gone */
        paf_http_request *spare_next;
        char *peer, *local; /* in addrs */
        char *addrs;
        size_t addrs_size;

        /* The parser, while the connection has a request (or a pipelined
         * one) to parse; and what its callbacks record for the driver. */
        llhttp_t parser;
        bool parser_owed; /* llhttp paused: it may have work left (a message end) without input */
        bool headers_ready;
        parse_event ev;
        const char *ev_data;
        size_t ev_len;
        bool field_open, value_at_end;
        const char *exec_start, *exec_end; /* the span given to llhttp_execute() */
        int err_status;
        char err_reason[256];

        bool request_bytes; /* the request has begun */
        bool discarding;    /* the response is done; the rest of the body goes */
        size_t header_bytes;
        uint64_t body_bytes;
        uint64_t body_at;

        /* The request as parsed: strings live in arena, NUL-terminated. */
        const char *method;
        int version;
        bool head;
        char *arena;
        size_t arena_len, arena_size;
        field_ref *fields;
        size_t n_fields, fields_size;
        size_t n_headers; /* fields past these are trailers */
        uint32_t target;
        int64_t content_length;
        bool expect_continue, continue_sent;
        bool body_complete;                   /* the parser reached the end of the message */
        paf_http_headers *headers, *trailers; /* built on demand */
        void *userdata;

        bool handler_owned; /* the handler holds a reference */
        bool aborted;
        paf_http_abort_handler_t abort_handler;
        void *abort_userdata;
        paf_http_body_handler_t body_handler;
        void *body_userdata;
        bool body_paused, body_ended;

        /* The response. */
        resp_state resp;
        framing framing;
        bool no_body;   /* 204, 304 */
        bool send_body; /* not for HEAD nor no_body */
        uint64_t remaining;
        bool head_pending; /* out holds the head, not written yet */
        bool out_oom;
        char *out; /* head (and respond()'s body) */
        size_t out_len, out_size;
        char *trail; /* chunked terminator with trailers */
        size_t trail_len, trail_size;
        char chunk_prefix[24];
        paf_http_write_handler_t write_handler;
        void *write_userdata;
        bool user_write_pending;
        bool retired; /* finished, the connection went past it: its writes hold it */
        unsigned n_writes;

        /* An HTTP/2 stream's request (conn is then always NULL): the
         * public calls go to core/http/h2.c. */
        h2_stream *h2;
};

typedef struct conn_list {
        conn *head, *tail;
} conn_list;

struct paf_http_server {
        sd_event *event;
        paf_http_request_handler_t handler;
        paf_http_error_handler_t error_handler;
        void *userdata;
        paf_http_limits limits;

        paf_listener **listeners;
        size_t n_listeners;
        bool listeners_paused;

        conn *conns;
        unsigned n_conns;
        uint64_t n_requests;

        /* The connections waiting for a timeout, one list per kind, each in
         * the order their timeouts started (a kind's length is the same for
         * all), under one timer armed at the earliest. */
        conn_list timeouts[_TIMEOUT_MAX];
        sd_event_source *timer;
        uint64_t timer_at;
        bool timer_armed;
        /* Connections whose driver runs from the loop, in order. */
        conn_list kicks;
        sd_event_source *kick;

        paf_http_request *spare_reqs;
        unsigned n_spare_reqs;
        char *spare_bufs[SPARE_BUFS];
        unsigned n_spare_bufs;

        /* > 0 inside the server's own event callbacks, which run user code
         * that may free the server: the free of the struct waits. */
        unsigned dispatching;
        bool stopping, freeing, done_called;
        paf_http_done_handler_t done;
        void *done_userdata;
        sd_event_source *done_defer;

        char date[32];
        uint64_t date_sec;
        uint64_t date_until; /* monotonic: when date is a second old */
        /* "Date: …\r\nServer: paf/…\r\n", what most responses have. */
        char date_fields[96];
        size_t date_fields_len;

        /* paf_http_server_set_response_headers(): the list, and the same
         * as HTTP/1.1 text ("Name: value\r\n" each). */
        paf_http_headers *extra;
        char *extra_text;
        size_t extra_len;

        /* HTTP/2: its settings, and its connections (counted in n_conns). */
        paf_http2_settings h2;
        h2_conn *h2_conns;
};

/* ---- server.c, for h2.c ---- */

/* Today's Date field value, formatted once a second. */
const char *http_server_date(paf_http_server *s);
/* The end of an event callback of h2.c's, which began with
 * s->dispatching++: frees the server if user code freed it meanwhile. */
void http_server_dispatch_end(paf_http_server *s);
/* The server's connections changed (the h2 ones count in n_conns): one
 * went, or one came (accepting pauses at max-connections). */
void http_server_conn_gone(paf_http_server *s);
/* What a request answered outside any handler, and what failed. */
void http_server_report(paf_http_server *s, const char *peer, int status, const char *reason);
/* A request object for an h2 stream of flow: the peer and local addresses
 * copied, one reference (the stream's). */
paf_http_request *http_request_new(paf_http_server *s, paf_flow *flow);
void http_request_unref(paf_http_request *req);
/* Append to the request's arena: the pseudo-headers' and the fields' text. */
int http_request_arena_append(paf_http_request *req, const char *data, size_t len, size_t cap);
/* One field (name and value already in the arena at these offsets). */
int http_request_add_field(paf_http_request *req, uint32_t name, uint32_t name_len, uint32_t value,
                           uint32_t value_len);
/* The handler no longer holds the request. */
void http_request_release(paf_http_request *req);

/* ---- h2.c, for server.c ---- */

/* Serve flow as HTTP/2: data is what was read past the client preface
 * (h2c with prior knowledge), or NULL with the preface still to come (ALPN
 * chose h2). Takes flow in every case. */
int h2_conn_new(paf_http_server *s, paf_flow *flow, bool preface_read, const void *data,
                size_t len);
/* Graceful stop: GOAWAY, in-flight streams complete, then the connection goes. */
void h2_conn_stop(h2_conn *c);
/* Now, for the server's free: streams are aborted with error. */
void h2_conn_close(h2_conn *c, int error);
/* The next of the server's h2 connections. */
h2_conn *h2_conn_next(h2_conn *c);
/* The server's timeouts or settings changed. */
void h2_conn_update(h2_conn *c);
/* The request's stream goes with it. */
void h2_stream_free(h2_stream *st);

paf_flow *h2_request_get_flow(paf_http_request *req);
int h2_request_read_body(paf_http_request *req, paf_http_body_handler_t handler, void *userdata);
int h2_request_pause_body(paf_http_request *req);
int h2_request_resume_body(paf_http_request *req);
int h2_response_start(paf_http_request *req, int status, const paf_http_headers *headers,
                      const char *content_type, int64_t content_length);
int h2_response_write(paf_http_request *req, const void *data, size_t len,
                      paf_http_write_handler_t handler, void *userdata);
int h2_response_send_file(paf_http_request *req, int fd, uint64_t offset, uint64_t len,
                          paf_http_write_handler_t handler, void *userdata);
int h2_response_finish(paf_http_request *req, const paf_http_headers *trailers);
int h2_respond(paf_http_request *req, int status, const char *content_type, const void *body,
               size_t len);
