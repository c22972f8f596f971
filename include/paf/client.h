/* paf/client.h — the simple client: get/post/… a URL, the context filled from it. */
#pragma once

#include <systemd/sd-event.h>

#include <paf/common.h>
#include <paf/ctx.h>
#include <paf/error.h>
#include <paf/http.h>
#include <paf/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * URLs: sets url.scheme (lowercase), url.host (decoded: the socket path of
 * http+unix://%2Frun%2Fpaf.sock/path), url.port (when given), url.path
 * (path and query, "/" when empty); IPv6 literals in brackets. The plugins'
 * rules turn these into their endpoint keys. Any scheme is taken: the
 * schemes are the plugins' (paf/registry.h), and paf_registry_parse_url()
 * refuses one that none of them serves, as the simple client does.
 */
PAF_EXPORT int paf_ctx_set_url(paf_ctx *ctx, const char *url, paf_error *error);

typedef struct paf_client paf_client;

typedef struct paf_client_options {
        uint64_t timeout_usec;         /* the whole call, redirects included; 0: none */
        uint64_t connect_timeout_usec; /* 0: the HTTP client's default */
        unsigned max_redirects;        /* 0: redirects are returned, not followed */
        const char *ca_file;           /* tls.ca-file: trust these CAs instead of the system's */
        bool insecure;                 /* tls.insecure */
        const char *unix_socket;       /* like curl --unix-socket: connect there, whatever the host */
        /*
         * The schemes a redirect may lead to, in curl's --proto-redir
         * syntax: comma-separated scheme names or "all", each after
         * optional modifiers, "+" allowing it (the default), "-" denying
         * it, "=" allowing it alone; read left to right from the default,
         * "http,https". So "=https" or "-all,+https": only https;
         * "+http+unix": also http+unix. Names are any scheme, so those
         * plugins add are covered. NULL: the default. A redirect to another
         * scheme fails the call with -EPROTONOSUPPORT, naming the URL, and
         * connects nowhere; one back to the requested URL's origin (scheme,
         * host and port) is always followed, as it reaches nothing new.
         * A bad list makes paf_client_set_options() fail with -EINVAL.
         */
        const char *redirect_schemes;
        /* Like curl --location-trusted: send Authorization, Cookie,
         * Proxy-Authorization and the caller's Host to every origin a
         * redirect leads to. Otherwise they go to the requested URL's
         * origin only. */
        bool location_trusted;
} paf_client_options;

/* Calls share connections: keep-alive connections are reused across calls. */
PAF_EXPORT int paf_client_new(paf_registry *reg, sd_event *event, paf_client **ret);
PAF_EXPORT paf_client *paf_client_free(paf_client *c);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_client *, paf_client_free)
/* Strings are copied. */
PAF_EXPORT int paf_client_set_options(paf_client *c, const paf_client_options *options);
/* Connections opened so far (reuse shows as calls > connections). */
PAF_EXPORT uint64_t paf_client_get_n_connections(paf_client *c);

typedef struct paf_response {
        int status;
        paf_http_headers *headers;
        void *body; /* NULL when streamed to a body handler or empty */
        size_t body_size;
        char *url;      /* the final URL, after redirects */
        char *endpoint; /* the transport that carried it: "tcp 127.0.0.1:8080" */
        char *report;   /* the resolution: every transport considered and why (paf_attempts_format) */
} paf_response;

PAF_EXPORT paf_response *paf_response_free(paf_response *r);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_response *, paf_response_free)

/* The call ended: a response (the handler owns it) or an error naming the
 * URL and the reason — for a failed connect, every transport tried. */
typedef void (*paf_client_handler_t)(paf_response *response, const paf_error *error,
                                     void *userdata);
/* Streamed body pieces (of the final response, after redirects); return < 0 to abort. */
typedef int (*paf_client_body_handler_t)(const void *data, size_t len, void *userdata);
/* The status and headers of the final response, before its body (optional). */
typedef void (*paf_client_head_handler_t)(int status, const paf_http_headers *headers,
                                          void *userdata);

/* A redirect the call follows: url answered status with headers; next_url is the next hop. */
typedef void (*paf_client_redirect_handler_t)(int status, const paf_http_headers *headers,
                                              const char *url, const char *next_url,
                                              void *userdata);

typedef void (*paf_client_call_handler_t)(paf_http_call *call, void *userdata);

typedef struct paf_client_request {
        const char *method;              /* "GET" … */
        const char *url;
        /* optional: extra keys and protocols, read under the URL's. Its
         * "http.version" ("1.1", "2", "2-prior-knowledge"; see
         * paf_http_client_request()) overrides the client's "2": HTTP/2
         * where TLS ALPN picks it, as curl. */
        paf_ctx *ctx;
        const paf_http_headers *headers; /* optional */
        const void *body;                /* optional, copied */
        size_t body_size;
        paf_client_head_handler_t on_head;     /* optional */
        paf_client_body_handler_t on_body;     /* optional: stream instead of collecting */
        void *userdata;                        /* for on_head, on_body and the handler */
} paf_client_request;

/*
 * More handlers for paf_client_send_hooked() (ABI 1.4), called with the
 * request's userdata. struct_size: sizeof(paf_client_hooks) as the caller
 * knows it, so that members can be appended.
 */
typedef struct paf_client_hooks {
        size_t struct_size;
        /* optional: each redirect about to be followed (its status and
         * headers, the URL that gave it and where it leads), as curl -i -L
         * shows every response of the chain. */
        paf_client_redirect_handler_t on_redirect;
        /* optional: each response's HTTP call (every redirect's and the
         * final one's), before on_redirect or on_head, for
         * paf_http_call_query() and paf_http_call_get_endpoint() (curl -v:
         * the TLS session, the peer). Valid during the handler only. */
        paf_client_call_handler_t on_call;
} paf_client_hooks;

/* The handler is never called from inside this call. */
PAF_EXPORT int paf_client_send(paf_client *c, const paf_client_request *request,
                               paf_client_handler_t handler);
/* paf_client_send() with hooks (NULL: none); -EINVAL for a struct_size
 * smaller than its first member's end. ABI 1.4. */
PAF_EXPORT int paf_client_send_hooked(paf_client *c, const paf_client_request *request,
                                      const paf_client_hooks *hooks, paf_client_handler_t handler);

/*
 * What paf_client_send() would connect with for url, for a program that
 * drives the connection itself (paf bench): *ret_ctx holds the URL's keys,
 * the options' (unix_socket, ca_file, insecure), "http.version" and "http.host", the Host
 * header to send; connect with paf_registry_connect(). *ret_target is the
 * request target (path and query), to free(). ABI 1.3.
 */
PAF_EXPORT int paf_client_url_ctx(paf_client *c, const char *url, paf_ctx **ret_ctx,
                                  char **ret_target, paf_error *error);

/* Shorthands: body may be NULL. */
PAF_EXPORT int paf_client_get(paf_client *c, const char *url, const paf_http_headers *headers,
                              paf_client_handler_t handler, void *userdata);
PAF_EXPORT int paf_client_head(paf_client *c, const char *url, const paf_http_headers *headers,
                               paf_client_handler_t handler, void *userdata);
PAF_EXPORT int paf_client_delete(paf_client *c, const char *url, const paf_http_headers *headers,
                                 paf_client_handler_t handler, void *userdata);
PAF_EXPORT int paf_client_post(paf_client *c, const char *url, const paf_http_headers *headers,
                               const void *body, size_t size, paf_client_handler_t handler,
                               void *userdata);
PAF_EXPORT int paf_client_put(paf_client *c, const char *url, const paf_http_headers *headers,
                              const void *body, size_t size, paf_client_handler_t handler,
                              void *userdata);
PAF_EXPORT int paf_client_patch(paf_client *c, const char *url, const paf_http_headers *headers,
                                const void *body, size_t size, paf_client_handler_t handler,
                                void *userdata);

#ifdef __cplusplus
}
#endif
