/* paf/resolver.h — host names to addresses without blocking the event loop (ABI 1.2). */
#pragma once

#include <netdb.h>
#include <systemd/sd-event.h>

#include <paf/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * getaddrinfo() for transports: a plugin that connects to host names (TCP,
 * SCTP, anything over IP) starts a lookup here and gets the addresses on
 * its sd_event, the way tcp.so does. Not to be confused with
 * paf_registry_resolve(), which picks protocols for a context.
 *
 * A numeric host ("127.0.0.1", "::1", "fe80::1%lo", no brackets) with a
 * numeric service or none is answered without a thread; anything else runs
 * getaddrinfo() on a thread of libpaf's, which may outlive the lookup, the
 * plugin that started it and the registry: it runs only libpaf's code, so a
 * plugin may be unloaded while a lookup it gave up on is still going.
 */
typedef struct paf_resolve paf_resolve;

/*
 * Called once, from the loop, never from inside paf_resolve_start(). On
 * success error is 0, reason NULL and list the addresses in getaddrinfo's
 * order (RFC 6724: try them in turn), never empty; list is valid only
 * during the call. On failure list is NULL, reason says why in words
 * ("Name or service not known") without repeating the host, and error is
 * -EHOSTUNREACH when the name has no address (no such host, none of the
 * family asked for, no answer from the name servers), -ENOMEM, or the
 * system's errno. The handle is gone once the handler returns; cancelling
 * it from inside the handler does nothing.
 */
typedef void (*paf_resolve_handler_t)(paf_resolve *q, const struct addrinfo *list, int error,
                                      const char *reason, void *userdata);

/*
 * Look up host (NULL: with AI_PASSIVE, the any address; otherwise loopback)
 * and service (a port number or a name of /etc/services; NULL: port 0);
 * at least one of the two. hints is read as getaddrinfo() reads it (only
 * ai_flags, ai_family, ai_socktype and ai_protocol) and may be NULL: any
 * family, SOCK_STREAM. paf adds no flag of its own; AI_ADDRCONFIG in
 * particular hides names that resolve only to loopback.
 *
 * 0, or a negative errno and the handler is never called: -EINVAL for a
 * bad argument or hints getaddrinfo refuses (unknown family or flag).
 * ret may be NULL when the caller will not cancel.
 */
PAF_EXPORT int paf_resolve_start(sd_event *event, const char *host, const char *service,
                                 const struct addrinfo *hints, paf_resolve_handler_t handler,
                                 void *userdata, paf_resolve **ret);

/* Stop waiting: the handler will not be called. Safe at any time until the
 * handler has run, and from inside it; NULL is fine. A getaddrinfo()
 * already running finishes on its thread and its result is dropped. */
PAF_EXPORT void paf_resolve_cancel(paf_resolve *q);

#ifdef __cplusplus
}
#endif
