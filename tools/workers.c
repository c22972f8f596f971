/* tools/workers.c — event loops sharing listening sockets through EPOLLEXCLUSIVE (workers.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "paf-tool.h"
#include "workers.h"

/* Few: the rest of a burst goes to the loops that are idle meanwhile, and
 * this one takes more on its next turn anyway (the epoll is level
 * triggered). */
#define ACCEPTS_PER_WAKEUP 4
/* Out of fds or memory: the connection stays in the backlog and the socket
 * readable, so trying again at once would spin. */
#define ACCEPT_PAUSE_USEC (100 * 1000ULL)

typedef struct shared_listener shared_listener;

struct worker_loop {
        sd_event *event;
        int epfd;
        int kick_fd; /* eventfd: another loop stopped taking connections */
        worker_loop *const *siblings;
        size_t n_siblings;
        shared_listener *listeners;
};

struct shared_listener {
        worker_loop *loop;
        paf_listener *listener;
        shared_listener *prev, *next;
        int fd;
        char *protocol;
        sd_event_source *accept; /* defer: the socket was readable */
        sd_event_source *pause;
        bool started;
        bool paused;  /* for lack of resources */
        bool watched; /* in loop->epfd */
        bool warned;
        bool in_handler;
        bool closed;
};

static void kick_siblings(worker_loop *l) {
        uint64_t one = 1;
        for (size_t i = 0; i < l->n_siblings; i++)
                if (l->siblings[i] != l && write(l->siblings[i]->kick_fd, &one, sizeof(one)) < 0) {
                        /* The counter is full: a kick is pending anyway. */
                }
}

static void listener_update(shared_listener *sl) {
        bool want = sl->started && !sl->paused && !sl->closed;
        if (want == sl->watched)
                return;
        if (want) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = sl};
                if (epoll_ctl(sl->loop->epfd, EPOLL_CTL_ADD, sl->fd, &ev) < 0) {
                        tool_error("listener %s: cannot watch the socket: %s",
                                   paf_listener_get_address(sl->listener), strerror(errno));
                        return;
                }
        } else {
                (void)epoll_ctl(sl->loop->epfd, EPOLL_CTL_DEL, sl->fd, NULL);
                /* A connection wakes one idle loop only: this one may have
                 * been told alone of one still waiting (its share of
                 * max-connections used up by another listener, fds run
                 * out). Without it watching, nobody else would hear of it
                 * until the next connection arrives. */
                kick_siblings(sl->loop);
        }
        sl->watched = want;
}

static void listener_free(shared_listener *sl) {
        free(sl->protocol);
        free(sl);
}

static void listener_readable(shared_listener *sl) {
        if (!sl->closed)
                (void)sd_event_source_set_enabled(sl->accept, SD_EVENT_ONESHOT);
}

static int on_pause_end(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        shared_listener *sl = userdata;
        sl->paused = false;
        listener_update(sl);
        return 0;
}

static void listener_pause(shared_listener *sl, int error) {
        if (!sl->warned)
                tool_error("listener %s: accept: %s; pausing accepting for %llu ms",
                           paf_listener_get_address(sl->listener), strerror(error),
                           ACCEPT_PAUSE_USEC / 1000);
        sl->warned = true;
        int r = sd_event_source_set_time_relative(sl->pause, ACCEPT_PAUSE_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(sl->pause, SD_EVENT_ONESHOT);
        if (r < 0)
                return; /* a busy loop beats a dead listener */
        sl->paused = true;
        listener_update(sl);
}

/* EPOLLEXCLUSIVE wakes the first loop of the socket's wait queue that is
 * idle: the same one every time, when connections come one after another
 * slower than it takes them, and the other loops would serve nothing. A
 * loop that took some goes back to the end of the queue (there is no
 * EPOLL_CTL_MOD for an exclusive entry): the next connection wakes the
 * next idle loop, round robin. A connection arriving in between wakes
 * another loop, or waits in the backlog, which the re-added entry finds
 * readable. */
static void listener_requeue(shared_listener *sl) {
        if (!sl->watched || sl->loop->n_siblings < 2)
                return;
        int epfd = sl->loop->epfd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = sl};
        if (epoll_ctl(epfd, EPOLL_CTL_DEL, sl->fd, NULL) < 0 ||
            epoll_ctl(epfd, EPOLL_CTL_ADD, sl->fd, &ev) < 0) {
                tool_error("listener %s: cannot watch the socket again: %s",
                           paf_listener_get_address(sl->listener), strerror(errno));
                sl->watched = false;
                kick_siblings(sl->loop);
        }
}

static bool accept_error_is_transient(int e) {
        /* What accept(2) passes on about one connection only. */
        return e == ECONNABORTED || e == EINTR || e == EPROTO || e == EPERM || e == ENETDOWN ||
               e == ENOPROTOOPT || e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH ||
               e == EOPNOTSUPP || e == ENETUNREACH;
}

static int on_accept(sd_event_source *s, void *userdata) {
        (void)s;
        shared_listener *sl = userdata;
        sd_event *event = sl->loop->event;
        sl->in_handler = true;
        unsigned taken = 0;
        for (unsigned i = 0; i < ACCEPTS_PER_WAKEUP && sl->started && !sl->paused && !sl->closed;
             i++) {
                int cfd = accept4(sl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        int e = errno;
                        if (e == EAGAIN)
                                break; /* another loop took it */
                        if (accept_error_is_transient(e))
                                continue;
                        listener_pause(sl, e);
                        break;
                }
                paf_flow *flow;
                int r = paf_socket_flow_new(event, cfd, sl->protocol, &flow);
                if (r < 0) {
                        tool_error("listener %s: cannot set up a connection: %s",
                                   paf_listener_get_address(sl->listener), strerror(-r));
                        continue;
                }
                paf_listener_deliver(sl->listener, flow);
                taken++;
        }
        if (taken > 0 && !sl->closed && sl->started && !sl->paused)
                listener_requeue(sl);
        sl->in_handler = false;
        if (sl->closed)
                listener_free(sl);
        return 0;
}

static int listener_start(paf_listener *l) {
        shared_listener *sl = paf_listener_get_impl(l);
        sl->started = true;
        listener_update(sl);
        return 0;
}

static int listener_stop(paf_listener *l) {
        shared_listener *sl = paf_listener_get_impl(l);
        sl->started = false;
        listener_update(sl);
        return 0;
}

static void listener_close(paf_listener *l) {
        shared_listener *sl = paf_listener_get_impl(l);
        sl->closed = true;
        listener_update(sl);
        sl->accept = sd_event_source_disable_unref(sl->accept);
        sl->pause = sd_event_source_disable_unref(sl->pause);
        (void)close(sl->fd);
        sl->fd = -1;
        if (sl->prev)
                sl->prev->next = sl->next;
        else
                sl->loop->listeners = sl->next;
        if (sl->next)
                sl->next->prev = sl->prev;
        if (!sl->in_handler)
                listener_free(sl);
}

static int listener_get_fd(paf_listener *l) {
        shared_listener *sl = paf_listener_get_impl(l);
        return sl->fd;
}

static const paf_listener_ops shared_listener_ops = {
        .struct_size = sizeof(paf_listener_ops),
        .start = listener_start,
        .stop = listener_stop,
        .close = listener_close,
        .get_fd = listener_get_fd,
};

int worker_listener_new(worker_loop *l, int fd, const char *protocol, const char *address,
                        paf_listener **ret) {
        if (fd < 0)
                return -EBADF;
        shared_listener *sl = calloc(1, sizeof(*sl));
        if (!sl || !(sl->protocol = strdup(protocol))) {
                free(sl);
                (void)close(fd);
                return -ENOMEM;
        }
        sl->loop = l;
        sl->fd = fd;
        int r = sd_event_add_defer(l->event, &sl->accept, on_accept, sl);
        if (r >= 0)
                r = sd_event_source_set_enabled(sl->accept, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time_relative(l->event, &sl->pause, CLOCK_MONOTONIC,
                                               ACCEPT_PAUSE_USEC, 0, on_pause_end, sl);
        if (r >= 0)
                r = sd_event_source_set_enabled(sl->pause, SD_EVENT_OFF);
        if (r >= 0)
                r = paf_listener_new(l->event, &shared_listener_ops, sl, protocol, address,
                                     &sl->listener);
        if (r < 0) {
                sd_event_source_disable_unref(sl->accept);
                sd_event_source_disable_unref(sl->pause);
                (void)close(fd);
                listener_free(sl);
                return r;
        }
        (void)sd_event_source_set_description(sl->accept, "paf-worker-accept");
        sl->next = l->listeners;
        if (sl->next)
                sl->next->prev = sl;
        l->listeners = sl;
        *ret = sl->listener;
        return 0;
}

/* ---- the loop ---- */

int worker_loop_new(sd_event *event, worker_loop **ret) {
        worker_loop *l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->event = sd_event_ref(event);
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        l->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        int r = 0;
        if (l->epfd < 0 || l->kick_fd < 0)
                r = -errno;
        /* NULL: the loop's own fd; the loop itself: a kick. */
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (r >= 0 && epoll_ctl(l->epfd, EPOLL_CTL_ADD, sd_event_get_fd(event), &ev) < 0)
                r = -errno;
        ev.data.ptr = l;
        if (r >= 0 && epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->kick_fd, &ev) < 0)
                r = -errno;
        if (r < 0) {
                worker_loop_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

worker_loop *worker_loop_free(worker_loop *l) {
        if (!l)
                return NULL;
        if (l->epfd >= 0)
                (void)close(l->epfd);
        if (l->kick_fd >= 0)
                (void)close(l->kick_fd);
        sd_event_unref(l->event);
        free(l);
        return NULL;
}

void worker_loop_set_siblings(worker_loop *l, worker_loop *const *loops, size_t n) {
        l->siblings = loops;
        l->n_siblings = n;
}

static void on_kick(worker_loop *l) {
        uint64_t n;
        if (read(l->kick_fd, &n, sizeof(n)) < 0) {
                /* EAGAIN: another wakeup read it. */
        }
        for (shared_listener *sl = l->listeners; sl; sl = sl->next)
                if (sl->watched)
                        listener_readable(sl);
}

int worker_loop_run(worker_loop *l) {
        /* The embedding sd_event documents: prepare, sleep on its fd (here
         * with the shared sockets), collect, dispatch. */
        for (;;) {
                int r = sd_event_prepare(l->event);
                if (r == 0) {
                        struct epoll_event ev[32];
                        int n = epoll_wait(l->epfd, ev, sizeof(ev) / sizeof(ev[0]), -1);
                        if (n < 0 && errno != EINTR)
                                return -errno;
                        /* Nothing ran since epoll_wait(): every listener it
                         * names is still there. */
                        for (int i = 0; i < n; i++) {
                                if (ev[i].data.ptr == l)
                                        on_kick(l);
                                else if (ev[i].data.ptr)
                                        listener_readable(ev[i].data.ptr);
                        }
                        r = sd_event_wait(l->event, 0);
                }
                if (r > 0)
                        r = sd_event_dispatch(l->event);
                if (r < 0)
                        return r;
                if (sd_event_get_state(l->event) == SD_EVENT_FINISHED)
                        break;
        }
        int code = 0;
        int r = sd_event_get_exit_code(l->event, &code);
        return r < 0 ? r : code;
}
