/* core/http/client-internal.h — what the HTTP client's two engines share: the call, the
 * client, and the calls between client.c (HTTP/1.1, the pool, timers) and h2-client.c. */
#pragma once

#include "core/paf-internal.h"
#include <paf/http.h>

/* A response's header section beyond this is refused: a client must not let
 * a server make it buffer without bound either. Both engines count. */
#define MAX_RESPONSE_HEADER_BYTES (64 * 1024)
#define MAX_RESPONSE_HEADERS 256

typedef struct conn conn; /* an HTTP/1.1 connection (client.c) */
typedef struct wreq wreq;
typedef struct h2cl_conn h2cl_conn;     /* an HTTP/2 connection (h2-client.c) */
typedef struct h2cl_stream h2cl_stream; /* one call's stream on it */

/* What the context's http.version asks for. */
typedef enum http_version_want {
        WANT_HTTP1,       /* "1.1": HTTP/2 only if the TLS layer's ALPN picks it anyway */
        WANT_HTTP2,       /* "2": offer h2 by ALPN over TLS; HTTP/1.1 in clear text */
        WANT_HTTP2_PRIOR, /* "2-prior-knowledge": h2 from the first byte, TLS or not */
} http_version_want;

struct paf_http_client {
        paf_registry *reg;
        sd_event *event;
        paf_http_client_timeouts timeouts;
        uint64_t n_connections;
        conn *idle;           /* the pool, most recently used first */
        paf_http_call *calls; /* every call the user has not freed */
        h2cl_conn *h2_conns;  /* HTTP/2 connections: connecting, in use, or draining */
};

typedef enum wreq_kind {
        WREQ_HEAD,
        WREQ_BODY,
        WREQ_FINISH,
} wreq_kind;

struct wreq {
        wreq *next;
        paf_http_call *call; /* referenced */
        conn *conn;          /* referenced once submitted (HTTP/1.1) */
        wreq_kind kind;
        const void *data;
        size_t len;
        size_t off;  /* HTTP/2: how much of data nghttp2 took */
        char *owned; /* the head: our copy, alive until the flow is done with it */
        paf_http_call_write_handler_t handler;
        void *userdata;
        char line[24]; /* a chunk's size line */
};

typedef enum call_state {
        CALL_CONNECTING,
        CALL_ACTIVE, /* on a connection */
        CALL_DONE,   /* the whole response was parsed */
        CALL_FAILED,
} call_state;

struct paf_http_call {
        unsigned n_ref;
        paf_http_client *client; /* NULL once the client went */
        paf_http_call *next, *prev;
        bool freed;

        char *label;       /* "GET /x", for messages */
        char **candidates; /* "tcp 127.0.0.1:80" …, in the order connect tries them */
        size_t n_candidates;
        char *pool_key; /* which idle connections may carry it */
        char *endpoint; /* what carries the call, once known */
        char *report;   /* how that was found, one attempt a line (paf_attempts_format) */
        paf_ctx *ctx;
        char *head;
        size_t head_len;
        int64_t body_length;
        uint64_t body_queued;
        bool head_request;
        bool retryable; /* idempotent and without a body */
        bool retried;
        bool close_requested;
        bool head_submitted;
        bool request_submitted; /* every byte of the request was handed to the flow */
        bool finish_queued;

        /* HTTP/2. */
        http_version_want want;
        bool tls_candidate; /* a TLS layer may carry it: ALPN can pick h2 */
        int version;        /* 11 or 20 once on a connection, 0 before */
        h2cl_stream *h2;    /* its stream, while on an HTTP/2 connection */
        h2cl_conn *h2_wait; /* the HTTP/2 connect it waits for */
        paf_http_call *wait_next, *wait_prev;
        uint64_t body_sent; /* bytes of body nghttp2 took */

        paf_http_response_handler_t handler;
        void *userdata;
        paf_http_call_body_handler_t body_handler;
        void *body_userdata;
        bool paused;

        call_state state;
        paf_connect *connect;
        conn *conn;
        sd_event_source *timer; /* connect, then response */
        bool timer_armed;
        uint64_t timer_at; /* what it is armed for */
        /* The response timeout counts from the last thing that moved: a write
         * completing, response bytes (timer_from), or the transport taking
         * bytes of the request (progress_at, asked at polled_at). */
        uint64_t timer_from, progress_at, polled_at;
        /* What the flow had written before this call's request, for messages. */
        uint64_t sent_before;
        sd_event_source *defer;   /* what is owed to the user outside the read path */
        wreq *queue, *queue_tail; /* writes waiting for a connection */
        unsigned n_in_flight;

        /* The response. */
        bool got_bytes;
        bool interim; /* parsing a 1xx */
        bool headers_complete;
        bool headers_delivered;
        int status;
        paf_http_headers *headers;
        char *field, *value;
        size_t field_len, value_len, header_bytes;
        char reason[128]; /* the status line's reason phrase, cut at 127 bytes */
        size_t reason_len;
        bool in_value;
        const char *parse_error; /* ours, when a callback refused */
        int64_t content_length;  /* -1: not announced */
        bool chunked;
        uint64_t body_received;
        uint8_t *held; /* a piece of body the user was not ready for */
        size_t n_held;
        bool end_pending;
        bool end_delivered;
        paf_error error;
        bool error_delivered;

        /* For paf_http_call_get_timings(). connected: its own connect
         * found the connection it goes on (else it was kept alive). */
        paf_http_call_timings times;
        bool times_connected;
};

/* ---- client.c, for h2-client.c ---- */

paf_http_call *hc_call_ref(paf_http_call *call);
void hc_call_unref(paf_http_call *call);
/* Fail the call: the error names its label and endpoint, then the reason. */
void hc_call_fail(paf_http_call *call, int code, const char *format, ...) PAF_PRINTF(3, 4);
/* A connect that found no flow, the reason per candidate tried. */
void hc_call_fail_connect(paf_http_call *call, const paf_attempt *attempts, size_t n);
/* Run what is owed to the user from the call's deferred source. */
void hc_call_kick(paf_http_call *call);
/* `restart`: something moved, the response timeout counts from now. */
void hc_call_timer_update(paf_http_call *call, bool restart);
uint64_t hc_call_now(paf_http_call *call);
/* Arm the call's timer for the connect timeout, from now. */
int hc_call_arm_connect_timer(paf_http_call *call);
/* Whether the user takes body now. */
bool hc_call_ready(paf_http_call *call);
/* The user freed the call or the client from a callback. */
bool hc_call_gone(paf_http_call *call);
void hc_wreq_free(wreq *w);
/* The context a connect for call runs with: call's, and the ALPN list its
 * http.version asks for when the caller set none. */
int hc_call_connect_ctx(paf_http_call *call, paf_ctx **ret);
/* A connected flow for call (it owns it from now on): HTTP/2 when ALPN or
 * prior knowledge says so, an HTTP/1.1 connection otherwise. */
void hc_call_take_flow(paf_http_call *call, paf_flow *flow, const paf_attempt *attempts, size_t n);
/* Over HTTP/1.1: an idle connection of the pool, or a connect of its own. */
int hc_call_start_http1(paf_http_call *call);
/* The times (paf_http_call_get_timings()): connect found call its
 * connection (from inside connect's handler); call's request is about to
 * go (on a connection it did not connect: one kept alive); the response's
 * first byte came. */
void hc_call_note_connected(paf_http_call *call, paf_connect *connect);
void hc_call_note_request(paf_http_call *call);
void hc_call_note_response(paf_http_call *call);

/* ---- h2-client.c ---- */

/* Whether this connected flow speaks HTTP/2 for call: ALPN chose "h2", or
 * call asks for prior knowledge and ALPN chose nothing else. */
bool h2cl_flow_is_h2(paf_http_call *call, paf_flow *flow);
/* Make flow an HTTP/2 connection of the client (it owns it from now on, and
 * closes it on failure) and start call on it. */
int h2cl_conn_start(paf_http_call *call, paf_flow *flow, const char *endpoint, char *report);
/* A connection under way or open for call's pool key: the call waits for it
 * or opens a stream on it. 1 when it took the call, 0 when there is none. */
int h2cl_join(paf_http_call *call);
/* Connect for call, a connection other calls to its endpoint wait for. */
int h2cl_connect(paf_http_call *call);
/* Take call off its stream or the connect it waits for; nothing is called. */
void h2cl_detach(paf_http_call *call);
/* Body writes were queued, or the end: hand them to nghttp2. */
void h2cl_pump(paf_http_call *call);
/* Hand what the stream holds to the user, as far as they take it. */
void h2cl_deliver(paf_http_call *call);
/* Whether the network owes the call progress on its request body. */
bool h2cl_sending(paf_http_call *call);
/* The client goes: close every HTTP/2 connection. */
void h2cl_close_all(paf_http_client *c);
/* The flow of the HTTP/2 connection call is on, NULL if none. */
paf_flow *h2cl_call_flow(paf_http_call *call);

/* ---- headers.c ---- */

/* The HTTP version the fields came with (10, 11, 20), for paf_http_headers_get_version(). */
void http_headers_set_version(paf_http_headers *h, int version);
/* The response's reason phrase (NULL: none), for paf_http_headers_get_reason(). */
int http_headers_set_reason(paf_http_headers *h, const char *reason, size_t len);
