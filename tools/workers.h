/* tools/workers.h — event loops on threads of their own that share listening sockets, for
 * `paf serve --workers`. */
#pragma once

#include <stddef.h>
#include <systemd/sd-event.h>

#include <paf/protocol.h>

/*
 * One sd_event loop run by one thread, sleeping in an epoll of its own that
 * holds the loop's fd and the listening sockets it shares with the other
 * loops. The sockets are there with EPOLLEXCLUSIVE: a new connection wakes
 * one idle loop, not every one (sd_event refuses that flag, and it has no
 * effect through a nested epoll, so the loop cannot sleep in sd_event).
 */
typedef struct worker_loop worker_loop;

int worker_loop_new(sd_event *event, worker_loop **ret);
/* Frees the loop; its listeners must be gone, and its thread done. */
worker_loop *worker_loop_free(worker_loop *l);
/* The loops sharing sockets with l (l may be among them): told when l
 * stops taking connections that may be waiting. The array must outlive
 * every loop's run. */
void worker_loop_set_siblings(worker_loop *l, worker_loop *const *loops, size_t n);
/* Runs the loop until sd_event_exit(): its exit code, or a negative errno. */
int worker_loop_run(worker_loop *l);

/*
 * A listener of l's loop on fd, a listening socket other loops listen on
 * too (each through its own dup). It accepts a few connections per wakeup,
 * so that a burst spreads over the idle loops. Takes fd, also on failure.
 * protocol names the flows ("tcp", "unix"…) and address the listener.
 */
int worker_listener_new(worker_loop *l, int fd, const char *protocol, const char *address,
                        paf_listener **ret);
