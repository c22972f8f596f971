/* paf/protocol.h — protocols: connect, listen and accept, yielding flows. */
#pragma once

#include <systemd/sd-event.h>

#include <paf/common.h>
#include <paf/ctx.h>
#include <paf/error.h>
#include <paf/flow.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct paf_registry paf_registry;
typedef struct paf_protocol paf_protocol;
typedef struct paf_listener paf_listener;
typedef struct paf_connect paf_connect;                 /* a user's connect operation */
typedef struct paf_connect_request paf_connect_request; /* one protocol's attempt */

/*
 * What a plugin registers. A protocol names the context keys that form its
 * endpoint; it is a candidate for a context when all of them can be read.
 * Candidates are tried by priority (lower first; ties: the most recently
 * registered first).
 */
typedef struct paf_protocol_ops {
        size_t struct_size;
        const char *name;     /* [a-z0-9_-]+, unique in a registry */
        int priority;         /* lower is tried first */
        const char *const *endpoint_keys; /* NULL-terminated */
        /* Socket families whose fds this protocol can adopt (0-terminated,
         * may be NULL): systemd socket activation picks the protocol by it. */
        const int *families;

        /* The endpoint as text for messages ("127.0.0.1:80"). Required. */
        int (*describe)(paf_ctx *ctx, char *buf, size_t size, void *userdata);

        /* Start connecting to the endpoint read from paf_connect_request_get_ctx().
         * Finish, now or later, with paf_connect_request_done() or _fail().
         * Returning < 0 means it failed at once (the request is not used). */
        int (*connect)(paf_connect_request *req, void *userdata);
        /* Optional: stop an attempt that has not finished. The request is
         * gone once cancel returns (ending it from inside cancel is allowed).
         * Without it, a cancelled attempt's late flow is closed by the core. */
        void (*cancel)(paf_connect_request *req, void *userdata);

        /* Optional: bind and listen on the endpoint in ctx. */
        int (*listen)(paf_ctx *ctx, sd_event *event, paf_listener **ret, paf_error *error,
                      void *userdata);
        /* Optional: turn a listen address (systemd ListenStream syntax) into
         * endpoint keys in ctx. Returns 1 if it took the address, 0 if the
         * address is not of this protocol's form, < 0 if it is but is invalid. */
        int (*parse_address)(const char *address, paf_ctx *ctx, paf_error *error, void *userdata);

        /* ---- ABI 1.1 ---- */

        unsigned flags; /* PAF_PROTOCOL_* */
        /* Optional, for layers: serve the flows of inner (which the wrapper
         * now owns, also on failure) through this protocol, configured from
         * ctx. TLS wraps any listener this way. */
        int (*wrap_listener)(paf_listener *inner, paf_ctx *ctx, paf_listener **ret,
                             paf_error *error, void *userdata);
} paf_protocol_ops;

/*
 * A layer runs over another protocol's flow (TLS over tcp, unix, vsock …):
 * its connect asks for the inner flow with paf_connect_request_connect_inner(),
 * which resolves the same context without layers. When a layer is a
 * candidate, the protocols it runs over are not tried on their own: a TLS
 * connection that fails must never fall back to plain text.
 */
#define PAF_PROTOCOL_LAYER (1u << 0)

PAF_EXPORT const char *paf_protocol_get_name(const paf_protocol *p);
PAF_EXPORT int paf_protocol_get_priority(const paf_protocol *p);
/* Name of the plugin that registered it, or NULL when the program did. */
PAF_EXPORT const char *paf_protocol_get_plugin(const paf_protocol *p);

/* ---- the plugin side of a connect attempt ---- */

PAF_EXPORT paf_ctx *paf_connect_request_get_ctx(paf_connect_request *req);
PAF_EXPORT sd_event *paf_connect_request_get_event(paf_connect_request *req);
PAF_EXPORT const char *paf_connect_request_get_endpoint(paf_connect_request *req);
PAF_EXPORT void paf_connect_request_set_data(paf_connect_request *req, void *data);
PAF_EXPORT void *paf_connect_request_get_data(paf_connect_request *req);
/* Hands the flow to the core; ends the request. */
PAF_EXPORT void paf_connect_request_done(paf_connect_request *req, paf_flow *flow);
/* error is a negative errno; the reason should not repeat the endpoint. */
PAF_EXPORT void paf_connect_request_fail(paf_connect_request *req, int error, const char *format, ...)
        PAF_PRINTF(3, 4);

/* ---- resolution and connect (the user side) ---- */

/*
 * One line of a resolution report. A candidate that was tried either
 * carried the connection (error 0) or failed (error < 0, reason says why,
 * or NULL when the protocol's connect() returned the error at once). A
 * candidate not tried is one a resolution lists, or one a connect never
 * reached. A protocol that was not a candidate has tried == false, error
 * -ENOENT (or the context's error, -ELOOP for a cycle) and reason says which
 * key was missing.
 */
typedef struct paf_attempt {
        const char *protocol;
        const char *endpoint; /* NULL when the endpoint could not be formed */
        bool candidate;
        bool tried;
        int error;
        const char *reason;
} paf_attempt;

/*
 * One line per attempt, malloc'ed: "tcp 127.0.0.1:8080: used",
 * "tcp 127.0.0.1:1: failed: Connection refused", "unix: not a candidate: no
 * value for key \"unix.path\"", and for a candidate not tried,
 * "tcp 127.0.0.1:80: candidate".
 */
PAF_EXPORT char *paf_attempts_format(const paf_attempt *attempts, size_t n_attempts);

typedef struct paf_resolution paf_resolution;

/* Candidates for ctx, in the order connect would try them. The context is
 * read through the registry's rules (see paf_registry_get_ctx()). */
PAF_EXPORT int paf_registry_resolve(paf_registry *reg, paf_ctx *ctx, paf_resolution **ret);
/* Candidates first, in order, then the protocols that are not candidates. */
PAF_EXPORT const paf_attempt *paf_resolution_get_attempts(paf_resolution *r, size_t *ret_n);
PAF_EXPORT size_t paf_resolution_get_n_candidates(paf_resolution *r);
PAF_EXPORT const paf_protocol *paf_resolution_get_protocol(paf_resolution *r, size_t i);
PAF_EXPORT paf_resolution *paf_resolution_free(paf_resolution *r);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_resolution *, paf_resolution_free)

/*
 * Called once: with a flow on success (attempts lists the failures before
 * it, then the one used: tried, error 0), or with flow == NULL and every
 * attempt and its error. The protocols that were not candidates follow. The
 * attempts are valid only during the call.
 */
typedef void (*paf_connect_handler_t)(paf_flow *flow, const paf_attempt *attempts,
                                      size_t n_attempts, void *userdata);

/* Resolve ctx and try the candidates in order. The handler is never called
 * from inside this call. ret may be NULL when the caller will not cancel;
 * the handle is invalid once the handler has run. */
PAF_EXPORT int paf_registry_connect(paf_registry *reg, paf_ctx *ctx, sd_event *event,
                                    paf_connect_handler_t handler, void *userdata,
                                    paf_connect **ret);
/* Stop a connect: its handler will not be called. NULL is fine. */
PAF_EXPORT void paf_connect_cancel(paf_connect *c);

/* For layers (ABI 1.1): connect to the inner endpoint of the request's
 * context, trying only protocols that are not layers. Same contract as
 * paf_registry_connect(); cancel the returned handle from the layer's
 * cancel op. */
PAF_EXPORT int paf_connect_request_connect_inner(paf_connect_request *req,
                                                 paf_connect_handler_t handler, void *userdata,
                                                 paf_connect **ret);

/* ---- listeners ---- */

/* Called with each accepted flow, which the handler now owns. */
typedef void (*paf_accept_handler_t)(paf_listener *l, paf_flow *flow, void *userdata);

/* Listen on the first candidate of ctx that can listen. */
PAF_EXPORT int paf_registry_listen(paf_registry *reg, paf_ctx *ctx, sd_event *event,
                                   paf_accept_handler_t handler, void *userdata,
                                   paf_listener **ret, paf_error *error);
/* Listen on an address in systemd's ListenStream syntax: "8080",
 * "127.0.0.1:8080", "[::1]:8080", "/run/paf.sock", "@abstract". */
PAF_EXPORT int paf_registry_listen_address(paf_registry *reg, const char *address,
                                           sd_event *event, paf_accept_handler_t handler,
                                           void *userdata, paf_listener **ret, paf_error *error);
/* Adopt an already listening socket (socket activation); the protocol is
 * picked by the socket's family. Takes ownership of fd, also on failure. */
PAF_EXPORT int paf_registry_listen_fd(paf_registry *reg, int fd, sd_event *event,
                                      paf_accept_handler_t handler, void *userdata,
                                      paf_listener **ret, paf_error *error);

/* Serve a listener's flows through a layer protocol ("tls"), configured from
 * ctx (ABI 1.1). Takes ownership of inner, also on failure. */
PAF_EXPORT int paf_registry_wrap_listener(paf_registry *reg, const char *protocol,
                                          paf_listener *inner, paf_ctx *ctx, paf_listener **ret,
                                          paf_error *error);

/* Stop accepting and release the listener. NULL is fine; returns NULL. */
PAF_EXPORT paf_listener *paf_listener_free(paf_listener *l);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_listener *, paf_listener_free)
PAF_EXPORT int paf_listener_set_accept_handler(paf_listener *l, paf_accept_handler_t handler,
                                               void *userdata);
/* Pause and resume accepting (the listener starts paused until a handler is set). */
PAF_EXPORT int paf_listener_start(paf_listener *l);
PAF_EXPORT int paf_listener_stop(paf_listener *l);
PAF_EXPORT const char *paf_listener_get_address(paf_listener *l);
PAF_EXPORT const char *paf_listener_get_protocol(paf_listener *l);
/* Listening fd, or -EOPNOTSUPP for transports without one. */
PAF_EXPORT int paf_listener_get_fd(paf_listener *l);
/*
 * The URL clients reach l by, in *ret (malloc'ed), from the schemes the
 * plugins of the registry that made l registered (ABI 1.2): the transport
 * gives "http" or "http+X", a layer on top its own base instead ("https",
 * "https+X"), whatever the transport. "http://127.0.0.1:8080",
 * "https://[::1]:8443", "http+unix://%2Frun%2Fpaf.sock",
 * "https+loop://name". No path. -ENOENT when no registered scheme serves
 * l's protocol, or l was not made through a registry.
 */
PAF_EXPORT int paf_listener_format_url(paf_listener *l, char **ret);
/* Apply a new configuration (new certificates, say) to what is accepted
 * from now on; established flows go on unchanged. -EOPNOTSUPP when the
 * listener has nothing to reload (ABI 1.1). */
PAF_EXPORT int paf_listener_reload(paf_listener *l, paf_ctx *ctx, paf_error *error);

/* Connections a listener took and has not handed out yet: a TLS listener's
 * handshakes in progress. They hold file descriptors and memory like any
 * connection, so whoever enforces a connection limit counts them too (ABI
 * 1.2). The handler runs whenever the count changes, from the listener's
 * event handling; it may start or stop the listener, not free it. */
typedef void (*paf_listener_pending_handler_t)(paf_listener *l, unsigned pending, void *userdata);
PAF_EXPORT unsigned paf_listener_get_pending(paf_listener *l);
PAF_EXPORT int paf_listener_set_pending_handler(paf_listener *l,
                                                paf_listener_pending_handler_t handler,
                                                void *userdata);

/* ---- implementing a listener (plugins) ---- */

typedef struct paf_listener_ops {
        size_t struct_size;
        int (*start)(paf_listener *l);
        int (*stop)(paf_listener *l);
        void (*close)(paf_listener *l); /* may run inside paf_listener_deliver() */
        int (*get_fd)(paf_listener *l); /* optional */
        /* ---- ABI 1.1 ---- */
        int (*reload)(paf_listener *l, paf_ctx *ctx, paf_error *error); /* optional */
} paf_listener_ops;

PAF_EXPORT int paf_listener_new(sd_event *event, const paf_listener_ops *ops, void *impl,
                                const char *protocol, const char *address, paf_listener **ret);
PAF_EXPORT void *paf_listener_get_impl(paf_listener *l);
PAF_EXPORT sd_event *paf_listener_get_event(paf_listener *l);
/* Hand an accepted flow to the listener's user. */
PAF_EXPORT void paf_listener_deliver(paf_listener *l, paf_flow *flow);
/* A layered listener took (delta > 0) or let go of (delta < 0) connections it
 * holds before delivering them (see paf_listener_get_pending()). Letting go
 * of one that is delivered: first -1, then paf_listener_deliver(). */
PAF_EXPORT void paf_listener_add_pending(paf_listener *l, int delta);

/* A listener for any listening stream socket fd: accepts and hands out
 * socket flows. Takes ownership of fd, also on failure. On EMFILE/ENFILE it
 * pauses accepting briefly instead of spinning. */
PAF_EXPORT int paf_socket_listener_new(sd_event *event, int fd, const char *protocol,
                                       paf_listener **ret);

/*
 * Called with each connection a socket listener accepts, before its flow
 * is made (ABI 1.2): the place for a plugin to set socket options
 * (SO_KEEPALIVE, TCP_USER_TIMEOUT, IP_TOS …) or to turn a peer away. fd
 * is the connection's, which the flow takes next: the hook neither closes
 * nor keeps it. A negative errno refuses the connection: it is closed,
 * and the listener logs the peer and strerror(-r) at notice level. The
 * hook may stop or free the listener; the connection is then closed.
 */
typedef int (*paf_socket_accept_hook_t)(int fd, void *userdata);
/* Set (or, with NULL, remove) the hook of a listener made by
 * paf_socket_listener_new(); -EINVAL for any other listener. */
PAF_EXPORT int paf_socket_listener_set_accept_hook(paf_listener *l, paf_socket_accept_hook_t hook,
                                                   void *userdata);

/*
 * Non-blocking connect for socket plugins: connects a new socket of the
 * address's family and calls the handler with a socket flow or an error.
 * The returned handle cancels (the handler is then not called); it is freed
 * once the handler has run.
 */
typedef struct paf_socket_connect paf_socket_connect;
typedef void (*paf_socket_connect_handler_t)(paf_flow *flow, int error, void *userdata);
PAF_EXPORT int paf_socket_connect_start(sd_event *event, const struct sockaddr *sa, socklen_t len,
                                        const char *protocol, paf_socket_connect_handler_t handler,
                                        void *userdata, paf_socket_connect **ret);
PAF_EXPORT void paf_socket_connect_cancel(paf_socket_connect *c);

#ifdef __cplusplus
}
#endif
