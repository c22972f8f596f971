/* paf/systemd.h — systemd socket activation: adopt the sockets a .socket unit passes. */
#pragma once

#include <systemd/sd-event.h>

#include <paf/common.h>
#include <paf/error.h>
#include <paf/protocol.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The listeners made from the sockets systemd passed, each with its
 * FileDescriptorName= ("unknown" when the unit gave none, as sd-daemon says). */
typedef struct paf_activated paf_activated;

/*
 * Adopt every socket passed by socket activation (sd_listen_fds_with_names),
 * in the order systemd passed them, picking the protocol by the socket's
 * family (AF_INET/AF_INET6: tcp, AF_UNIX: unix, AF_VSOCK: vsock). The
 * LISTEN_* variables are removed from the environment, so children do not
 * take the sockets for theirs.
 *
 * Returns the number of listeners: 0 when no socket was passed. A socket paf cannot serve
 * (datagram, not listening, a family no plugin handles) fails the whole call
 * with a message naming the fd, its name and the reason; every passed fd is
 * closed then. On success *ret owns the listeners; take them with
 * paf_activated_steal_listener().
 */
PAF_EXPORT int paf_registry_listen_activated(paf_registry *reg, sd_event *event,
                                             paf_accept_handler_t handler, void *userdata,
                                             paf_activated **ret, paf_error *error);

/* Frees the listeners not taken. NULL is fine; returns NULL. */
PAF_EXPORT paf_activated *paf_activated_free(paf_activated *a);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_activated *, paf_activated_free)

PAF_EXPORT size_t paf_activated_get_n_listeners(paf_activated *a);
/* The i-th socket's FileDescriptorName=, valid as long as a; NULL if i is
 * out of range. */
PAF_EXPORT const char *paf_activated_get_name(paf_activated *a, size_t i);
/* The fd number systemd passed it as (3, 4 …), or -EINVAL. */
PAF_EXPORT int paf_activated_get_fd(paf_activated *a, size_t i);
/* The i-th listener, still owned by a; NULL once taken or out of range. */
PAF_EXPORT paf_listener *paf_activated_get_listener(paf_activated *a, size_t i);
/* Take the i-th listener: the caller owns it from now on (paf_listener_free
 * or hand it to a server). NULL once taken or out of range. */
PAF_EXPORT paf_listener *paf_activated_steal_listener(paf_activated *a, size_t i);

#ifdef __cplusplus
}
#endif
