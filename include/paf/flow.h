/* paf/flow.h — flows: completion-based asynchronous byte streams on an sd_event. */
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <systemd/sd-event.h>

#include <paf/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A flow is owned by exactly one consumer. Nothing blocks; every result
 * arrives through a callback dispatched from the flow's sd_event, never from
 * inside the call that asked for it.
 *
 * Reading: paf_flow_read_start() delivers bytes to the read handler until
 * paf_flow_read_stop(). Not reading is the backpressure signal towards the
 * peer. The handler sees, exactly one of:
 *   len > 0             data (borrowed: valid only during the call)
 *   len == 0, error 0   end of stream: the peer closed its write side
 *   error < 0           an error (-ECONNRESET when the peer reset), after
 *                       which nothing more is delivered
 *
 * Writing: paf_flow_write() queues a vector of buffers. The buffers (not the
 * iovec array, which is copied) must stay valid until the completion
 * callback, which runs once every byte was handed to the transport, or with a
 * negative errno. Writes complete in order. Writing the next chunk only after
 * the previous one completed keeps the writer's buffering bounded.
 *
 * Closing: paf_flow_close() cancels what is pending (write callbacks get
 * -ECANCELED), releases the transport, then calls the close handler. The flow
 * must not be used after paf_flow_close() returns.
 */
typedef struct paf_flow paf_flow;

typedef void (*paf_flow_read_handler_t)(paf_flow *flow, const void *data, size_t len, int error,
                                        void *userdata);
typedef void (*paf_flow_write_handler_t)(paf_flow *flow, int error, void *userdata);
typedef void (*paf_flow_close_handler_t)(paf_flow *flow, void *userdata);

PAF_EXPORT int paf_flow_read_start(paf_flow *flow, paf_flow_read_handler_t handler, void *userdata);
PAF_EXPORT int paf_flow_read_stop(paf_flow *flow);
PAF_EXPORT int paf_flow_write(paf_flow *flow, const struct iovec *iov, size_t n_iov,
                              paf_flow_write_handler_t handler, void *userdata);
/*
 * Send len bytes of the file fd from offset (ABI 1.3), queued with the
 * writes and completed like one: in order with them, once every byte was
 * handed to the transport, or with a negative errno (-ENODATA: the file
 * ended first; the stream is then broken, as after any failed write). fd is
 * the caller's and must stay open until the completion; its file offset is
 * not used nor moved. A socket sends it with sendfile(2), without copying it
 * through user space; a flow that cannot (a TLS layer, a plugin built before
 * 1.3) gets it from the core as pread(2) and ordinary writes. Progress counts
 * as for writes (paf_flow_get_write_progress()).
 */
PAF_EXPORT int paf_flow_send_file(paf_flow *flow, int fd, uint64_t offset, size_t len,
                                  paf_flow_write_handler_t handler, void *userdata);
/* Shut the write side down once every queued write completed. */
PAF_EXPORT int paf_flow_shutdown(paf_flow *flow, paf_flow_write_handler_t handler, void *userdata);
PAF_EXPORT void paf_flow_close(paf_flow *flow, paf_flow_close_handler_t handler, void *userdata);

/* Bytes queued by paf_flow_write() whose completion has not run yet. */
PAF_EXPORT size_t paf_flow_get_write_queue_size(paf_flow *flow);
/*
 * Write progress (ABI 1.2): how many bytes of the writes the transport took
 * so far, and when it last took any (CLOCK_MONOTONIC, in µs, as
 * sd_event_now(); 0 before it ever did). This is what a write timeout should
 * measure: a peer that reads slowly keeps a big write in progress for long,
 * yet the transport takes bytes all along. With an implementation that
 * reports partial progress (paf_flow_write_progress()) both move within a
 * write; with one that does not, they move when a write completes. The time
 * is asked afresh through the layers (PAF_FLOW_QUERY_WRITE_PROGRESS): under a
 * TLS layer it moves as the socket takes the ciphertext, and a socket counts
 * its kernel buffer draining (the peer reading) even while the writer waits
 * for room. That may cost a system call: ask when a timeout is due, not on
 * every event. Either output may be NULL.
 */
PAF_EXPORT int paf_flow_get_write_progress(paf_flow *flow, uint64_t *ret_bytes, uint64_t *ret_usec);
PAF_EXPORT sd_event *paf_flow_get_event(paf_flow *flow);
/* Addresses as text: "127.0.0.1:80", "[::1]:80", "/run/x.sock", "@name",
 * "vsock:3:80", or what the transport chose. Never NULL ("?" if unknown). */
PAF_EXPORT const char *paf_flow_get_peer(paf_flow *flow);
PAF_EXPORT const char *paf_flow_get_local(paf_flow *flow);
/* Name of the protocol that made the flow ("tcp", "unix", …). */
PAF_EXPORT const char *paf_flow_get_protocol(paf_flow *flow);

/*
 * Queries: transport-specific facts. A layered flow forwards what it does not
 * answer to the flow it runs on. -EOPNOTSUPP when nobody knows.
 */
typedef enum paf_flow_query_t {
        PAF_FLOW_QUERY_FD = 1,          /* int: the socket fd, if any */
        PAF_FLOW_QUERY_PEER_CRED = 2,   /* struct ucred: unix socket peer */
        PAF_FLOW_QUERY_PEER_SOCKADDR,   /* struct sockaddr_storage; returns its length */
        PAF_FLOW_QUERY_LOCAL_SOCKADDR,  /* struct sockaddr_storage; returns its length */
        /* uint64_t: when the transport last took bytes, asked afresh (ABI
         * 1.2): what paf_flow_get_write_progress() gives. Answered by the
         * core, after the implementation had its say: a layer forwards it
         * to the flow it runs on (whose time, if later, wins), a socket
         * first looks whether its kernel send queue drained. */
        PAF_FLOW_QUERY_WRITE_PROGRESS,
        /* TLS (answered by a TLS layer, ABI 1.1), into a char buffer: */
        PAF_FLOW_QUERY_TLS_ALPN = 16,        /* negotiated protocol, "" if none */
        PAF_FLOW_QUERY_TLS_SERVER_NAME = 17, /* SNI sent or received */
        PAF_FLOW_QUERY_TLS_PEER_DN = 18,     /* verified peer certificate's subject DN */
        PAF_FLOW_QUERY_TLS_VERSION = 19,     /* "TLS1.3" … */
        /* ABI 1.4, for curl -v's account of the session: */
        PAF_FLOW_QUERY_TLS_CIPHER = 20,      /* "ECDHE-ECDSA-AES-256-GCM"-like suite name */
        PAF_FLOW_QUERY_TLS_PEER_ISSUER = 21, /* verified peer certificate's issuer DN */
        PAF_FLOW_QUERY_TLS_PEER_EXPIRY = 22, /* its notAfter, an int64_t of Unix time */
        PAF_FLOW_QUERY_USER = 0x10000,  /* first value free for plugins */
} paf_flow_query_t;

PAF_EXPORT int paf_flow_query(paf_flow *flow, int what, void *ret, size_t size);
/* struct ucred is only defined with _GNU_SOURCE; callers that use this do. */
struct ucred;
PAF_EXPORT int paf_flow_get_peer_credentials(paf_flow *flow, struct ucred *ret);

/* Userdata slot for the consumer. */
PAF_EXPORT void paf_flow_set_userdata(paf_flow *flow, void *userdata);
PAF_EXPORT void *paf_flow_get_userdata(paf_flow *flow);

/*
 * ---- Implementing a flow (plugins) ----
 *
 * The core keeps the consumer's callbacks, the write queue and the
 * asynchronous dispatch; an implementation moves bytes:
 *   read_start/read_stop  deliver with paf_flow_deliver() while started;
 *   write                 one request at a time; call paf_flow_write_done()
 *                         once all of it was taken (may be called from write);
 *                         the iovec array stays valid until then; report
 *                         what a partial send took with
 *                         paf_flow_write_progress();
 *   shutdown              shut the write side (no write is pending);
 *   close                 release everything; the implementation must not
 *                         call into the flow afterwards. Never called from
 *                         inside the implementation's own paf_flow_deliver()
 *                         (the core defers it to the loop);
 *   query                 optional;
 *   send_file             optional (ABI 1.3): like write, for len bytes of
 *                         fd from offset (fd stays valid until then);
 *                         -EOPNOTSUPP, returned before taking any byte and
 *                         without paf_flow_write_done(), hands this one
 *                         back to the core, which sends it as pread(2) and
 *                         writes; NULL (or a struct_size without it) always.
 * Members may be appended in later minor versions; NULL means "default".
 */
typedef struct paf_flow_ops {
        size_t struct_size;
        int (*read_start)(paf_flow *flow);
        int (*read_stop)(paf_flow *flow);
        int (*write)(paf_flow *flow, const struct iovec *iov, size_t n_iov);
        int (*shutdown)(paf_flow *flow);
        void (*close)(paf_flow *flow);
        int (*query)(paf_flow *flow, int what, void *ret, size_t size);
        /* ABI 1.3. */
        int (*send_file)(paf_flow *flow, int fd, uint64_t offset, size_t len);
} paf_flow_ops;

PAF_EXPORT int paf_flow_new(sd_event *event, const paf_flow_ops *ops, void *impl,
                            const char *protocol, const char *peer, const char *local,
                            paf_flow **ret);
PAF_EXPORT void *paf_flow_get_impl(paf_flow *flow);
/* Deliver data/EOF/error to the consumer (see the read handler). */
PAF_EXPORT void paf_flow_deliver(paf_flow *flow, const void *data, size_t len, int error);
PAF_EXPORT void paf_flow_write_done(paf_flow *flow, int error);
/* The transport took n more bytes of the write in progress (ABI 1.2,
 * optional): call it after each partial send, so that consumers see a slow
 * peer is not a stalled one (paf_flow_get_write_progress()). A layer may count
 * what its own transport took (a TLS layer: ciphertext); the core never counts
 * more than the write's size, and a write that completes counts whole. Outside
 * a write (a handshake, an alert) only the time moves. */
PAF_EXPORT void paf_flow_write_progress(paf_flow *flow, size_t n);
/* Whether the consumer currently wants data. */
PAF_EXPORT bool paf_flow_is_reading(paf_flow *flow);

/*
 * ---- The socket flow ----
 *
 * A ready flow for any connected stream socket. Takes ownership of fd (also
 * on failure), makes it non-blocking, and describes both ends from
 * getpeername()/getsockname(). Peer close is EOF, RST is -ECONNRESET.
 */
PAF_EXPORT int paf_socket_flow_new(sd_event *event, int fd, const char *protocol, paf_flow **ret);

/* Format a socket address as paf prints it (see paf_flow_get_peer()). */
PAF_EXPORT int paf_sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
