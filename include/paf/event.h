/* paf/event.h — running an sd_event loop with paf's socket flows in the same epoll_wait. */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

#include <paf/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * paf's socket flows (tcp, unix, vsock, and the layers over them) share one
 * epoll set per loop. A loop run with sd_event_loop() watches that set as
 * one of its sources: every socket event then goes through two epoll sets,
 * which costs the peer that sends (two wakeup callbacks) and this loop (two
 * epoll_wait() per wakeup). These run the loop the other way round: the
 * sockets' set holds the loop's fd, and one epoll_wait() covers both.
 *
 * They work as sd_event_run() and sd_event_loop() do (sd_event_exit() ends
 * paf_event_loop(), whose result is the exit code; the time sd_event_now()
 * gives is the iteration's), with one rule: once a loop was run through
 * them, it is run through them only. sd_event_run() and sd_event_loop()
 * would no longer see the sockets.
 *
 * paf_event_run(): one iteration, waiting at most timeout_usec (UINT64_MAX:
 * no limit). > 0 when something ran, 0 on timeout, a negative errno on
 * failure (-ESTALE once the loop has finished).
 */
PAF_EXPORT int paf_event_run(sd_event *event, uint64_t timeout_usec);
PAF_EXPORT int paf_event_loop(sd_event *event);

#ifdef __cplusplus
}
#endif
