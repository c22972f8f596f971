/* core/socket.c — flows, listeners and connects for stream sockets of any family. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/sockios.h>
#include <linux/vm_sockets.h>

#include "paf-internal.h"

#define READ_BUFFER_SIZE (64 * 1024)
/* Reads per wakeup: enough to drain a busy socket, few enough that one
 * connection cannot starve the others on the loop. */
#define READS_PER_WAKEUP 16
/* iovecs per sendmsg(); the rest go on the next round. */
#define IOV_PER_SEND 64
/* File bytes sent per wakeup: a reader as fast as the disk would otherwise
 * hold the loop for the whole file (there is no EAGAIN to stop at). */
#define SENDFILE_PER_WAKEUP (4 * 1024 * 1024)
/* Accepts per wakeup, for the same fairness reason. */
#define ACCEPTS_PER_WAKEUP 64
/* How long accepting pauses when out of file descriptors or memory. */
#define ACCEPT_PAUSE_USEC (100 * 1000)

static void close_fd(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void)close(fd);
                errno = saved;
        }
}

static int fd_set_nonblock_cloexec(int fd) {
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0))
                return -errno;
        flags = fcntl(fd, F_GETFD);
        if (flags < 0 || (!(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0))
                return -errno;
        return 0;
}

/* SOCK_STREAM, or a negative errno saying why not. */
static int fd_check_stream(int fd) {
        int type = 0;
        socklen_t len = sizeof(type);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
                return -errno;
        return type == SOCK_STREAM ? 0 : -EPROTOTYPE;
}

static const char *family_protocol(int family) {
        switch (family) {
        case AF_INET:
        case AF_INET6:
                return "tcp";
        case AF_UNIX:
                return "unix";
        case AF_VSOCK:
                return "vsock";
        default:
                return "socket";
        }
}

/* ---- address text ---- */

static int format_into(char *buf, size_t size, const char *format, ...) PAF_PRINTF(3, 4);
static int format_into(char *buf, size_t size, const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        int n = vsnprintf(buf, size, format, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        return (size_t)n >= size ? -ENOBUFS : 0;
}

PAF_EXPORT int paf_sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf,
                                   size_t size) {
        if (!sa || !buf || size == 0 || len < (socklen_t)sizeof(sa_family_t))
                return -EINVAL;
        buf[0] = '\0';

        switch (sa->sa_family) {
        case AF_INET: {
                if (len < (socklen_t)sizeof(struct sockaddr_in))
                        return -EINVAL;
                const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
                char host[INET_ADDRSTRLEN];
                if (!inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host)))
                        return -errno;
                return format_into(buf, size, "%s:%u", host, ntohs(in->sin_port));
        }
        case AF_INET6: {
                if (len < (socklen_t)sizeof(struct sockaddr_in6))
                        return -EINVAL;
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
                char host[INET6_ADDRSTRLEN];
                if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
                        /* A v4 peer on a dual-stack socket: print it as the
                         * v4 address it is, as it shows on the wire. */
                        if (!inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof(host)))
                                return -errno;
                        return format_into(buf, size, "%s:%u", host, ntohs(in6->sin6_port));
                }
                if (!inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host)))
                        return -errno;
                char scope[IF_NAMESIZE + 2] = "";
                if (in6->sin6_scope_id != 0) {
                        char ifname[IF_NAMESIZE];
                        if (if_indextoname(in6->sin6_scope_id, ifname))
                                snprintf(scope, sizeof(scope), "%%%s", ifname);
                        else
                                snprintf(scope, sizeof(scope), "%%%u", in6->sin6_scope_id);
                }
                return format_into(buf, size, "[%s%s]:%u", host, scope, ntohs(in6->sin6_port));
        }
        case AF_UNIX: {
                const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
                size_t off = offsetof(struct sockaddr_un, sun_path);
                if (len <= (socklen_t)off)
                        return format_into(buf, size, "unix:unnamed");
                size_t n = (size_t)len - off;
                if (n > sizeof(un->sun_path))
                        n = sizeof(un->sun_path);
                if (un->sun_path[0] != '\0')
                        return format_into(buf, size, "%.*s", (int)strnlen(un->sun_path, n),
                                           un->sun_path);
                /* Abstract: the name is every byte after the leading NUL, NULs
                 * included; show those as '@' like ss(8) does. */
                char name[sizeof(un->sun_path)];
                for (size_t i = 1; i < n; i++)
                        name[i - 1] = un->sun_path[i] ? un->sun_path[i] : '@';
                return format_into(buf, size, "@%.*s", (int)(n - 1), name);
        }
        case AF_VSOCK: {
                if (len < (socklen_t)sizeof(struct sockaddr_vm))
                        return -EINVAL;
                const struct sockaddr_vm *vm = (const struct sockaddr_vm *)sa;
                /* "Any CID" as systemd's ListenStream= writes it. */
                if (vm->svm_cid == VMADDR_CID_ANY)
                        return format_into(buf, size, "vsock::%u", vm->svm_port);
                return format_into(buf, size, "vsock:%u:%u", vm->svm_cid, vm->svm_port);
        }
        default:
                return -EAFNOSUPPORT;
        }
}

static void sockaddr_text(const struct sockaddr_storage *ss, socklen_t len, char *buf,
                          size_t size) {
        if (len == 0 || paf_sockaddr_format((const struct sockaddr *)ss, len, buf, size) < 0)
                snprintf(buf, size, "?");
}

/* ---- the poller ----
 *
 * The socket flows of an event loop share one epoll set of their own, which
 * the loop watches as a single source. sd-event dispatches one source per
 * iteration and asks the kernel again every time; with many busy
 * connections that is an epoll_wait per request. Here one wakeup hands out
 * the events of up to POLLER_BATCH connections.
 *
 * A flow closed while a batch runs may still have an event further down the
 * batch: it is freed only when the batch is over (the graveyard).
 */

#define POLLER_BATCH 64

typedef struct socket_flow socket_flow;
typedef struct poller poller;
struct poller {
        sd_event *event; /* the loop holds us through io; flows hold the loop */
        int epfd;
        sd_event_source *io;
        /* one per flow, one while a batch runs, and one for good once flat
         * (dropped when the loop frees io, then floating) */
        unsigned n_ref;
        bool dispatching;
        /* Flat: paf_event_run() drives the loop, and epfd holds the loop's
         * own fd rather than the other way round (see there). */
        bool flat;
        /* What the loop's sockets read into: delivered data is borrowed for
         * the call only, so one buffer serves every flow, and an idle
         * connection holds none. Busy while a delivery runs; a read from
         * inside one (a consumer pulling another flow) gets its own. */
        uint8_t *read_buf;
        bool read_buf_busy;
        /* The flows with reads (or writes) left over when an edge outlived
         * a wakeup, run from one deferred source of the loop: an idle
         * connection holds no source of its own. */
        sd_event_source *resume;
        socket_flow *resume_head, *resume_tail;
        uint64_t resume_generation;
        socket_flow *graveyard;
        poller *next;
};

/* Event loops are used from one thread each. */
static _Thread_local poller *pollers _tls_ie_;

static void socket_flow_handle(socket_flow *sf, uint32_t revents);
static void socket_flow_free(socket_flow *sf);
static int poller_on_resume(sd_event_source *s, void *userdata);

static void poller_unref(poller *p) {
        assert(p->n_ref > 0);
        if (--p->n_ref > 0)
                return;
        for (poller **i = &pollers; *i; i = &(*i)->next)
                if (*i == p) {
                        *i = p->next;
                        break;
                }
        assert(!p->resume_head);
        if (!p->flat) {
                /* Floating once flat: the loop's. */
                sd_event_source_disable_unref(p->resume);
                sd_event_source_disable_unref(p->io);
        }
        close_fd(p->epfd);
        free(p->read_buf);
        free(p);
}

static int poller_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static int poller_get(sd_event *event, poller **ret) {
        for (poller *p = pollers; p; p = p->next)
                if (p->event == event) {
                        p->n_ref++;
                        *ret = p;
                        return 0;
                }
        poller *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->event = event;
        p->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (p->epfd < 0) {
                int r = -errno;
                free(p);
                return r;
        }
        int r = sd_event_add_io(event, &p->io, p->epfd, EPOLLIN, poller_on_io, p);
        if (r >= 0) {
                r = sd_event_add_defer(event, &p->resume, poller_on_resume, p);
                if (r >= 0)
                        (void)sd_event_source_set_enabled(p->resume, SD_EVENT_OFF);
                else
                        p->io = sd_event_source_disable_unref(p->io);
        }
        if (r < 0) {
                close_fd(p->epfd);
                free(p);
                return r;
        }
        (void)sd_event_source_set_description(p->resume, "paf-socket-resume");
        (void)sd_event_source_set_description(p->io, "paf-socket-poller");
        p->n_ref = 1;
        p->next = pollers;
        pollers = p;
        *ret = p;
        return 0;
}

/* ---- the socket flow ---- */

struct socket_flow {
        paf_flow *flow;
        int fd;
        int family;
        poller *poller;
        socket_flow *grave_next;

        /* Edge-triggered epoll (EPOLLET): the fd is registered once for
         * input and output, and these remember what the last edges said
         * until a read or write finds the socket drained or full. Level
         * triggering would have the kernel re-poll every ready socket on
         * every epoll_wait, which costs more than the requests themselves. */
        /* In the poller's resume list: reads (or a write's rest) left over
         * when an edge outlived a wakeup. */
        bool resume_on;
        socket_flow *resume_prev, *resume_next;
        uint64_t resume_generation;
        bool can_read;   /* data or EOF may be waiting */
        bool eof_seen;   /* EPOLLRDHUP/HUP: a short read does not mean drained */
        bool can_write;  /* the last send did not hit EAGAIN */

        bool reading;    /* the consumer wants data */
        bool read_ended; /* EOF or an error was seen: stop polling for input */

        /* The write in progress: the core keeps the iovec array alive until
         * paf_flow_write_done(); we only track how far we got. */
        bool writing;
        const struct iovec *iov;
        size_t n_iov, index, offset;
        /* Or a file (send_file): what is left of it, sent with sendfile(2). */
        bool file;
        bool file_started; /* a byte of it went */
        bool write_resume; /* room is left, but the wakeup's share was sent */
        int file_fd;
        uint64_t file_offset;
        size_t file_left;
        /* The kernel's send queue (SIOCOUTQ) when a send last found it full:
         * while we wait for room, its shrinking is the peer reading. The
         * wakeup for room may come only once a big part of a large buffer
         * drained (seconds, for a slow reader), far later than that. */
        int outq;
        bool outq_known;

        bool in_handler; /* close() from in there leaves the free to the handler */
        bool closed;

};

static void resume_link(socket_flow *sf) {
        poller *p = sf->poller;
        sf->resume_on = true;
        sf->resume_generation = p->resume_generation;
        sf->resume_next = NULL;
        sf->resume_prev = p->resume_tail;
        if (p->resume_tail)
                p->resume_tail->resume_next = sf;
        else {
                p->resume_head = sf;
                paf_loop_deferred++;
                int r = sd_event_source_set_enabled(p->resume, SD_EVENT_ONESHOT);
                if (r < 0)
                        paf_log(PAF_LOG_ERR, "flow %s: cannot schedule a read: %s",
                                paf_flow_get_peer(sf->flow), strerror(-r));
        }
        p->resume_tail = sf;
}

static void resume_unlink(socket_flow *sf) {
        if (!sf->resume_on)
                return;
        poller *p = sf->poller;
        if (sf->resume_prev)
                sf->resume_prev->resume_next = sf->resume_next;
        else
                p->resume_head = sf->resume_next;
        if (sf->resume_next)
                sf->resume_next->resume_prev = sf->resume_prev;
        else
                p->resume_tail = sf->resume_prev;
        sf->resume_on = false;
        sf->resume_prev = sf->resume_next = NULL;
        if (!p->resume_head)
                (void)sd_event_source_set_enabled(p->resume, SD_EVENT_OFF);
}

/* No edge will come for input that was already announced: when the
 * consumer wants data that may be waiting, read it from the loop. */
static void socket_flow_update_events(socket_flow *sf) {
        if (sf->closed)
                return;
        /* Exactly what socket_flow_pull() needs to make progress: a resume
         * that finds nothing to do and arms itself again would run on every
         * iteration, ahead of every newer source (sd-event orders sources
         * of one priority by when they became pending, and a deferred
         * source stays pending for good). */
        bool want =
                (sf->reading && sf->can_read && !sf->read_ended && paf_flow_is_reading(sf->flow)) ||
                (sf->write_resume && sf->writing && sf->can_write);
        /* Called several times per exchange, mostly to change nothing: an
         * sd-event call each time would cost more than the exchange. */
        if (want == sf->resume_on)
                return;
        if (want)
                resume_link(sf);
        else
                resume_unlink(sf);
}

static void socket_flow_write_finish(socket_flow *sf, int error) {
        sf->writing = false;
        sf->iov = NULL;
        sf->n_iov = sf->index = sf->offset = 0;
        sf->file = sf->file_started = sf->write_resume = false;
        sf->file_fd = -1;
        sf->file_left = 0;
        socket_flow_update_events(sf);
        /* Last: the core may hand us the next write from in there. */
        paf_flow_write_done(sf->flow, error);
}

/* sendfile(2) cannot say MSG_NOSIGNAL: a peer gone (a unix socket's at
 * once, a TCP one's after its reset was read) raises SIGPIPE, which kills
 * a process that did not ask for it. Blocked around the calls, it stays
 * pending on this thread and is taken back before it is unblocked. Nothing
 * to do where it is blocked already: that program handles it. */
static void socket_flow_push_file(socket_flow *sf) {
        sigset_t pipe, old;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        bool blocked = pthread_sigmask(SIG_BLOCK, &pipe, &old) == 0 && !sigismember(&old, SIGPIPE);
        bool epipe = false;
        size_t sent = 0;

        while (sf->writing && !sf->closed) {
                if (sf->file_left == 0) {
                        socket_flow_write_finish(sf, 0);
                        break;
                }
                if (sent >= SENDFILE_PER_WAKEUP) {
                        sf->write_resume = true;
                        socket_flow_update_events(sf);
                        break;
                }
                /* Linux sends at most about 2 GiB per call. */
                size_t want = sf->file_left < (1u << 30) ? sf->file_left : (1u << 30);
                off_t off = (off_t)sf->file_offset;
                ssize_t k = sendfile(sf->fd, sf->file_fd, &off, want);
                if (k < 0) {
                        int e = errno;
                        if (e == EINTR)
                                continue;
                        if (e == EAGAIN) {
                                sf->can_write = false;
                                sf->outq_known = ioctl(sf->fd, SIOCOUTQ, &sf->outq) >= 0;
                                break; /* the next EPOLLOUT edge brings us back */
                        }
                        epipe = e == EPIPE;
                        /* A file sendfile cannot read (no splice on its
                         * file system): the core copies it instead. */
                        if (!sf->file_started && (e == EINVAL || e == ENOSYS || e == EOPNOTSUPP))
                                e = EOPNOTSUPP;
                        socket_flow_write_finish(sf, -e);
                        break;
                }
                if (k == 0) {
                        /* The file ended before its length: it shrank. */
                        socket_flow_write_finish(sf, -ENODATA);
                        break;
                }
                sf->outq_known = false;
                sf->file_started = true;
                sf->file_offset += (uint64_t)k;
                sf->file_left -= (size_t)k;
                sent += (size_t)k;
                /* As for sendmsg: a partial send is progress, the last one
                 * counts at the completion. */
                if (sf->file_left > 0)
                        paf_flow_write_progress(sf->flow, (size_t)k);
        }

        if (blocked) {
                if (epipe) {
                        const struct timespec zero = {0, 0};
                        while (sigtimedwait(&pipe, NULL, &zero) == SIGPIPE) {
                        }
                }
                (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
}

static void socket_flow_push(socket_flow *sf) {
        if (sf->file) {
                socket_flow_push_file(sf);
                return;
        }
        while (sf->writing && !sf->closed) {
                struct iovec v[IOV_PER_SEND];
                size_t n = 0;
                for (size_t i = sf->index; i < sf->n_iov && n < IOV_PER_SEND; i++) {
                        size_t skip = i == sf->index ? sf->offset : 0;
                        if (sf->iov[i].iov_len == skip)
                                continue;
                        v[n].iov_base = (uint8_t *)sf->iov[i].iov_base + skip;
                        v[n].iov_len = sf->iov[i].iov_len - skip;
                        n++;
                }
                if (n == 0) {
                        socket_flow_write_finish(sf, 0);
                        return;
                }

                /* One piece (most answers) goes by send(): the kernel then
                 * has no message header or iovec array to copy in. */
                ssize_t k;
                if (n == 1)
                        k = send(sf->fd, v[0].iov_base, v[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
                else {
                        struct msghdr m = {.msg_iov = v, .msg_iovlen = n};
                        k = sendmsg(sf->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                sf->can_write = false;
                                sf->outq_known = ioctl(sf->fd, SIOCOUTQ, &sf->outq) >= 0;
                                return; /* the next EPOLLOUT edge brings us back */
                        }
                        socket_flow_write_finish(sf, -errno);
                        return;
                }
                sf->outq_known = false;

                size_t left = (size_t)k;
                while (left > 0 && sf->index < sf->n_iov) {
                        size_t avail = sf->iov[sf->index].iov_len - sf->offset;
                        if (left < avail) {
                                sf->offset += left;
                                left = 0;
                        } else {
                                left -= avail;
                                sf->index++;
                                sf->offset = 0;
                        }
                }
                /* A partial send: a slow reader is still a reader, which the
                 * consumer's write timeout must tell from a stalled one. A
                 * send that took all counts at the completion. */
                if (sf->index < sf->n_iov)
                        paf_flow_write_progress(sf->flow, (size_t)k);
        }
}

static void socket_flow_pull_into(socket_flow *sf, uint8_t *buffer) {
        for (unsigned i = 0; i < READS_PER_WAKEUP; i++) {
                if (sf->closed || sf->read_ended || !sf->reading || !paf_flow_is_reading(sf->flow))
                        return;
                ssize_t n = recv(sf->fd, buffer, READ_BUFFER_SIZE, MSG_DONTWAIT);
                if (n > 0) {
                        /* A short read drained the socket (new data brings a
                         * new edge), unless the peer's EOF is still to read. */
                        if (n < READ_BUFFER_SIZE && !sf->eof_seen)
                                sf->can_read = false;
                        paf_flow_deliver(sf->flow, buffer, (size_t)n, 0);
                        if (!sf->can_read)
                                return;
                        continue;
                }
                if (n == 0) {
                        sf->read_ended = true;
                        paf_flow_deliver(sf->flow, NULL, 0, 0);
                        return;
                }
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN) {
                        sf->can_read = false;
                        return;
                }
                sf->read_ended = true;
                paf_flow_deliver(sf->flow, NULL, 0, -errno);
                return;
        }
        /* READS_PER_WAKEUP reached with data left: update_events resumes. */
}

static void socket_flow_pull(socket_flow *sf) {
        if (sf->closed || sf->read_ended || !sf->reading || !paf_flow_is_reading(sf->flow))
                return;
        poller *p = sf->poller;
        uint8_t *own = NULL, *buffer;
        if (!p->read_buf_busy) {
                if (!p->read_buf)
                        p->read_buf = malloc(READ_BUFFER_SIZE);
                buffer = p->read_buf;
        } else
                buffer = own = malloc(READ_BUFFER_SIZE);
        if (!buffer) {
                sf->read_ended = true;
                paf_flow_deliver(sf->flow, NULL, 0, -ENOMEM);
                return;
        }
        bool took = !own;
        if (took)
                p->read_buf_busy = true;
        /* The flow stays (in_handler), and holds the poller. */
        socket_flow_pull_into(sf, buffer);
        if (took)
                p->read_buf_busy = false;
        free(own);
}

static void socket_flow_free(socket_flow *sf) {
        poller *p = sf->poller;
        free(sf);
        if (p)
                poller_unref(p);
}

/* A closed flow goes now, or after the batch that may still name it. */
static void socket_flow_release(socket_flow *sf) {
        if (sf->poller && sf->poller->dispatching) {
                sf->grave_next = sf->poller->graveyard;
                sf->poller->graveyard = sf;
        } else
                socket_flow_free(sf);
}

/* Hands out a batch of epoll_wait()'s events; the caller holds a reference.
 * NULL stands for the loop's own fd (flat pollers), which is not ours. */
static void poller_dispatch(poller *p, const struct epoll_event *ev, int n) {
        p->dispatching = true;
        for (int i = 0; i < n; i++) {
                socket_flow *sf = ev[i].data.ptr;
                if (sf && !sf->closed)
                        socket_flow_handle(sf, ev[i].events);
        }
        p->dispatching = false;
        while (p->graveyard) {
                socket_flow *sf = p->graveyard;
                p->graveyard = sf->grave_next;
                socket_flow_free(sf);
        }
}

static int poller_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        (void)s;
        (void)revents;
        poller *p = userdata;
        struct epoll_event ev[POLLER_BATCH];
        int n = epoll_wait(fd, ev, POLLER_BATCH, 0);
        if (n < 0) {
                if (errno != EINTR)
                        paf_log(PAF_LOG_ERR, "socket poller: epoll_wait: %m");
                return 0;
        }
        p->n_ref++;
        poller_dispatch(p, ev, n);
        poller_unref(p);
        return 0;
}

/* ---- driving the loop: one epoll_wait for the loop and its sockets ----
 *
 * A poller nested in the loop's epoll costs on every socket event: the
 * peer's send wakes the poller's epoll, which wakes the loop's (two wakeup
 * callbacks, in the sender's time), and each wakeup here is two
 * epoll_wait(), the outer one polling the inner set again. Turned inside
 * out, the poller's set holds the loop's fd: a socket event is one wakeup
 * and one epoll_wait, and the loop's own sources (timers, signals,
 * listeners) come through its fd. Only a loop that paf_event_run() drives
 * can be turned, for good: sd_event_run() would no longer see the sockets.
 */

static void poller_on_loop_gone(void *userdata) {
        poller *p = userdata;
        p->io = NULL; /* being freed by the loop */
        poller_unref(p);
}

static int poller_make_flat(poller *p) {
        /* The loop stops watching our set (disabling removes the fd from
         * its epoll; it must be out of there before its fd is in ours, or
         * the two sets would contain each other), and frees the source, and
         * our reference with it, when it goes itself. */
        int r = sd_event_source_set_enabled(p->io, SD_EVENT_OFF);
        if (r < 0)
                return r;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, sd_event_get_fd(p->event), &ev) < 0) {
                r = -errno;
                (void)sd_event_source_set_enabled(p->io, SD_EVENT_ON);
                return r;
        }
        r = sd_event_source_set_destroy_callback(p->io, poller_on_loop_gone);
        if (r >= 0)
                r = sd_event_source_set_floating(p->io, true);
        /* Our other source goes with the loop too: held by us, it would
         * hold the loop, which would never go. */
        if (r >= 0 && (r = sd_event_source_set_floating(p->resume, true)) < 0)
                (void)sd_event_source_set_floating(p->io, false);
        if (r < 0) {
                (void)sd_event_source_set_destroy_callback(p->io, NULL);
                (void)epoll_ctl(p->epfd, EPOLL_CTL_DEL, sd_event_get_fd(p->event), NULL);
                (void)sd_event_source_set_enabled(p->io, SD_EVENT_ON);
                return r;
        }
        /* The loop's references are its own now: ours go. */
        sd_event_source_unref(p->io);
        sd_event_source_unref(p->resume);
        p->flat = true;
        p->n_ref++; /* dropped by poller_on_loop_gone() */
        return 0;
}

_Thread_local paf_loop_clock paf_loop_clock_now _tls_ie_;
_Thread_local unsigned paf_loop_deferred _tls_ie_;

/* Sockets-only rounds after a wakeup in which the loop itself had nothing
 * to do: a busy server's next batch is taken without the loop's own
 * prepare and wait (an epoll_wait() of its own) in between. Bounded, so
 * that the loop's sources (timers, signals, listeners, deferred work
 * scheduled by handlers) wait for a few batches at most. */
#define SOCKET_ROUNDS 4

static bool batch_has_loop(const struct epoll_event *ev, int n) {
        for (int i = 0; i < n; i++)
                if (!ev[i].data.ptr)
                        return true;
        return false;
}

uint64_t paf_loop_now_slow(sd_event *event) {
        uint64_t t;
        if (!event || sd_event_now(event, CLOCK_MONOTONIC, &t) < 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                t = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
        }
        return t;
}

PAF_EXPORT int paf_event_run(sd_event *event, uint64_t timeout_usec) {
        if (!event)
                return -EINVAL;
        poller *p;
        int r = poller_get(event, &p);
        if (r < 0)
                return r;
        if (!p->flat && (r = poller_make_flat(p)) < 0)
                goto out;
        /* sd-event's embedding protocol (prepare, wait on its fd, collect,
         * dispatch), with our set as the fd waited on. */
        r = sd_event_prepare(event);
        if (r < 0)
                goto out;
        int ms = -1;
        if (r > 0)
                ms = 0; /* sources are pending: only what the sockets have now */
        else if (timeout_usec != UINT64_MAX)
                ms = timeout_usec / 1000 > INT32_MAX ? INT32_MAX
                                                     : (int)((timeout_usec + 999) / 1000);
        struct epoll_event ev[POLLER_BATCH];
        int n = epoll_wait(p->epfd, ev, POLLER_BATCH, ms);
        int wait_error = n < 0 && errno != EINTR ? -errno : 0;
        if (n < 0)
                n = 0;
        /* Collected before the sockets' handlers run: it also takes the
         * loop's time, which their timers are set from. */
        if (r == 0)
                r = sd_event_wait(event, 0);
        /* The loop's time, for what runs until the next wait (a loop run
         * from inside a callback has its own, then ours again). */
        paf_loop_clock saved = paf_loop_clock_now;
        uint64_t t;
        if (r >= 0 && sd_event_now(event, CLOCK_MONOTONIC, &t) >= 0)
                paf_loop_clock_now = (paf_loop_clock){event, t};
        unsigned deferred = paf_loop_deferred;
        if (r >= 0)
                poller_dispatch(p, ev, n);
        if (r == 0 && n > 0 && !batch_has_loop(ev, n)) {
                /* The loop had nothing, and its fd did not come up: until
                 * it does, or deferred work waits, more of the sockets. */
                for (unsigned k = 0; k < SOCKET_ROUNDS && paf_loop_deferred == deferred &&
                                     !p->resume_head;
                     k++) {
                        int m = epoll_wait(p->epfd, ev, POLLER_BATCH, 0);
                        if (m <= 0)
                                break;
                        poller_dispatch(p, ev, m);
                        if (batch_has_loop(ev, m))
                                break;
                }
        }
        if (r > 0)
                r = sd_event_dispatch(event);
        paf_loop_clock_now = saved;
        if (r >= 0 && wait_error < 0)
                r = wait_error;
        else if (r == 0 && n > 0)
                r = 1;
out:
        poller_unref(p);
        return r;
}

PAF_EXPORT int paf_event_loop(sd_event *event) {
        if (!event)
                return -EINVAL;
        sd_event_ref(event);
        int r;
        while ((r = sd_event_get_state(event)) != SD_EVENT_FINISHED && r >= 0)
                if ((r = paf_event_run(event, UINT64_MAX)) < 0)
                        break;
        if (r >= 0) {
                int code = 0;
                r = sd_event_get_exit_code(event, &code);
                r = r < 0 ? r : code;
        }
        sd_event_unref(event);
        return r;
}

static void socket_flow_handle(socket_flow *sf, uint32_t revents) {
        if (revents & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                sf->can_write = true;
        sf->write_resume = false; /* pushed now, if it can */
        if (revents & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
                sf->can_read = true;
        if (revents & (EPOLLRDHUP | EPOLLERR | EPOLLHUP))
                sf->eof_seen = true;

        sf->in_handler = true;
        if (sf->writing && sf->can_write)
                socket_flow_push(sf);
        if (!sf->closed && sf->can_read)
                socket_flow_pull(sf);
        sf->in_handler = false;

        if (sf->closed)
                socket_flow_release(sf);
        else
                socket_flow_update_events(sf);
}

static void socket_flow_on_resume(socket_flow *sf) {
        sf->in_handler = true;
        if (sf->write_resume) {
                sf->write_resume = false;
                if (sf->writing && sf->can_write)
                        socket_flow_push(sf);
        }
        if (!sf->closed)
                socket_flow_pull(sf);
        sf->in_handler = false;
        if (sf->closed)
                socket_flow_release(sf);
        else
                socket_flow_update_events(sf);
}

/* The flows that waited when this dispatch began; those that arm again
 * meanwhile (no progress, or READS_PER_WAKEUP reached) wait for the next
 * one, behind the loop's other sources. */
static int poller_on_resume(sd_event_source *s, void *userdata) {
        (void)s;
        poller *p = userdata;
        p->n_ref++;
        bool nested = p->dispatching;
        p->dispatching = true; /* closed flows wait in the graveyard */
        uint64_t generation = p->resume_generation++;
        socket_flow *sf;
        while ((sf = p->resume_head) && sf->resume_generation <= generation) {
                resume_unlink(sf);
                if (!sf->closed)
                        socket_flow_on_resume(sf);
        }
        if (p->resume_head)
                (void)sd_event_source_set_enabled(p->resume, SD_EVENT_ONESHOT);
        if (!nested) {
                p->dispatching = false;
                while (p->graveyard) {
                        socket_flow *g = p->graveyard;
                        p->graveyard = g->grave_next;
                        socket_flow_free(g);
                }
        }
        poller_unref(p);
        return 0;
}

static int socket_flow_read_start(paf_flow *flow) {
        socket_flow *sf = paf_flow_get_impl(flow);
        sf->reading = true;
        socket_flow_update_events(sf);
        return 0;
}

static int socket_flow_read_stop(paf_flow *flow) {
        socket_flow *sf = paf_flow_get_impl(flow);
        /* Not reading leaves the data in the kernel, whose full receive
         * buffer closes the TCP window: that is the backpressure. */
        sf->reading = false;
        socket_flow_update_events(sf);
        return 0;
}

static int socket_flow_write(paf_flow *flow, const struct iovec *iov, size_t n_iov) {
        socket_flow *sf = paf_flow_get_impl(flow);
        assert(!sf->writing);
        sf->writing = true;
        sf->iov = iov;
        sf->n_iov = n_iov;
        sf->index = sf->offset = 0;
        /* Try at once: most writes fit in the socket buffer. */
        if (sf->can_write)
                socket_flow_push(sf);
        return 0;
}

static int socket_flow_send_file(paf_flow *flow, int fd, uint64_t offset, size_t len) {
        socket_flow *sf = paf_flow_get_impl(flow);
        assert(!sf->writing);
        sf->writing = true;
        sf->file = true;
        sf->file_started = false;
        sf->file_fd = fd;
        sf->file_offset = offset;
        sf->file_left = len;
        if (sf->can_write)
                socket_flow_push(sf);
        return 0;
}

static int socket_flow_shutdown(paf_flow *flow) {
        socket_flow *sf = paf_flow_get_impl(flow);
        if (shutdown(sf->fd, SHUT_WR) < 0)
                return -errno;
        return 0;
}

static void socket_flow_close(paf_flow *flow) {
        socket_flow *sf = paf_flow_get_impl(flow);
        if (sf->fd >= 0)
                (void)epoll_ctl(sf->poller->epfd, EPOLL_CTL_DEL, sf->fd, NULL);
        resume_unlink(sf);
        close_fd(sf->fd);
        sf->fd = -1;
        sf->closed = true;
        if (!sf->in_handler)
                socket_flow_release(sf);
}

/* Asked by a consumer watching its writes (a write or response timeout): has
 * the kernel passed on (TCP: had acknowledged; unix: had read) any of what it
 * holds since we last looked, while our send waits for room, or after the
 * last write completed (the tail of a request still on its way, which may be
 * megabytes)? Between sends the queue only shrinks, so a look that finds no
 * earlier one starts the comparison; a send that succeeds ends it. */
static void socket_flow_poll_outq(socket_flow *sf) {
        int outq;
        if ((sf->writing && !sf->outq_known) || ioctl(sf->fd, SIOCOUTQ, &outq) < 0)
                return;
        if (sf->outq_known && outq < sf->outq)
                paf_flow_write_progress(sf->flow, 0);
        sf->outq = outq;
        sf->outq_known = true;
}

static int socket_flow_query(paf_flow *flow, int what, void *ret, size_t size) {
        socket_flow *sf = paf_flow_get_impl(flow);
        switch (what) {
        case PAF_FLOW_QUERY_WRITE_PROGRESS:
                /* The core answers, from what this reported. */
                socket_flow_poll_outq(sf);
                return -EOPNOTSUPP;
        case PAF_FLOW_QUERY_FD:
                if (size < sizeof(int))
                        return -EINVAL;
                *(int *)ret = sf->fd;
                return 0;
        case PAF_FLOW_QUERY_PEER_CRED: {
                if (size < sizeof(struct ucred))
                        return -EINVAL;
                if (sf->family != AF_UNIX)
                        return -EOPNOTSUPP;
                struct ucred cred;
                socklen_t len = sizeof(cred);
                if (getsockopt(sf->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                        return -errno;
                memcpy(ret, &cred, sizeof(cred));
                return 0;
        }
        case PAF_FLOW_QUERY_PEER_SOCKADDR:
        case PAF_FLOW_QUERY_LOCAL_SOCKADDR: {
                bool peer = what == PAF_FLOW_QUERY_PEER_SOCKADDR;
                if (size < sizeof(struct sockaddr_storage))
                        return -EINVAL;
                struct sockaddr_storage sa = {0};
                socklen_t len = sizeof(sa);
                int k = peer ? getpeername(sf->fd, (struct sockaddr *)&sa, &len)
                             : getsockname(sf->fd, (struct sockaddr *)&sa, &len);
                if (k < 0)
                        return errno == ENOTCONN || errno == EINVAL ? -ENOTCONN : -errno;
                memcpy(ret, &sa, sizeof(sa));
                /* The length is useful for unix addresses, where it matters. */
                return (int)len;
        }
        default:
                return -EOPNOTSUPP;
        }
}

static const paf_flow_ops socket_flow_ops = {
        .struct_size = sizeof(paf_flow_ops),
        .read_start = socket_flow_read_start,
        .read_stop = socket_flow_read_stop,
        .write = socket_flow_write,
        .shutdown = socket_flow_shutdown,
        .close = socket_flow_close,
        .query = socket_flow_query,
        .send_file = socket_flow_send_file,
};

PAF_EXPORT int paf_socket_flow_new(sd_event *event, int fd, const char *protocol, paf_flow **ret) {
        if (fd < 0)
                return -EINVAL;
        if (!event || !ret) {
                close_fd(fd);
                return -EINVAL;
        }
        int r = fd_check_stream(fd);
        if (r >= 0)
                r = fd_set_nonblock_cloexec(fd);
        if (r < 0) {
                close_fd(fd);
                return r;
        }

        socket_flow *sf = calloc(1, sizeof(*sf));
        if (!sf) {
                close_fd(fd);
                return -ENOMEM;
        }
        sf->fd = fd;
        sf->file_fd = -1;
        sf->can_write = true; /* a new socket has room; EAGAIN will say otherwise */

        /* Only for the names: a flow asked for its addresses asks the
         * kernel again (an idle connection keeps no copy). */
        struct sockaddr_storage peer_sa, local_sa;
        socklen_t local_len = sizeof(local_sa), peer_len = sizeof(peer_sa);
        if (getsockname(fd, (struct sockaddr *)&local_sa, &local_len) < 0)
                local_len = 0;
        /* A peer that already went (reset before we got here) is not an
         * error yet: the first read reports it. */
        if (getpeername(fd, (struct sockaddr *)&peer_sa, &peer_len) < 0)
                peer_len = 0;
        if (local_len > 0)
                sf->family = local_sa.ss_family;
        else {
                socklen_t len = sizeof(sf->family);
                if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &sf->family, &len) < 0)
                        sf->family = AF_UNSPEC;
        }

        if (sf->family == AF_INET || sf->family == AF_INET6) {
                /* paf writes whole messages; Nagle would only add latency.
                 * Failure (not TCP, e.g. SCTP) is harmless. */
                int one = 1;
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }

        char peer[256], local[256];
        sockaddr_text(&peer_sa, peer_len, peer, sizeof(peer));
        sockaddr_text(&local_sa, local_len, local, sizeof(local));

        r = poller_get(event, &sf->poller);
        if (r >= 0) {
                struct epoll_event ev = {
                        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                        .data.ptr = sf,
                };
                if (epoll_ctl(sf->poller->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                        r = -errno;
        }
        if (r >= 0) {
                r = paf_flow_new(event, &socket_flow_ops, sf,
                                 protocol ?: family_protocol(sf->family), peer, local, &sf->flow);
        }
        if (r < 0) {
                close_fd(fd); /* leaves the epoll set with it */
                socket_flow_free(sf);
                return r;
        }
        *ret = sf->flow;
        return 0;
}

/* ---- the socket listener ---- */

typedef struct socket_listener {
        paf_listener *listener;
        int fd;
        char *protocol;
        sd_event_source *io;
        /* Made up front: when out of fds, the loop could not make the timerfd. */
        sd_event_source *pause;
        bool paused; /* for lack of resources */
        bool started;
        bool warned; /* the resource shortage was logged once */
        bool in_handler;
        bool closed;
        paf_socket_accept_hook_t hook;
        void *hook_userdata;
} socket_listener;

static void socket_listener_free(socket_listener *sl) {
        free(sl->protocol);
        free(sl);
}

static void socket_listener_update(socket_listener *sl) {
        if (sl->closed)
                return;
        int r = sd_event_source_set_enabled(sl->io, sl->started && !sl->paused ? SD_EVENT_ON
                                                                               : SD_EVENT_OFF);
        if (r < 0)
                paf_log(PAF_LOG_ERR, "listener %s: cannot watch the socket: %s",
                        paf_listener_get_address(sl->listener), strerror(-r));
}

static int socket_listener_on_pause_end(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        socket_listener *sl = userdata;
        sl->paused = false;
        socket_listener_update(sl);
        return 0;
}

/* Out of fds or memory: the pending connection stays in the backlog and the
 * socket stays readable, so retrying at once would spin. Wait a little. */
static void socket_listener_pause(socket_listener *sl, int error) {
        const char *address = paf_listener_get_address(sl->listener);
        paf_log(sl->warned ? PAF_LOG_DEBUG : PAF_LOG_WARNING,
                "listener %s: accept: %s; pausing accepting for %u ms", address, strerror(error),
                ACCEPT_PAUSE_USEC / 1000);
        sl->warned = true;
        if (sl->paused)
                return;
        int r = sd_event_source_set_time_relative(sl->pause, ACCEPT_PAUSE_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(sl->pause, SD_EVENT_ONESHOT);
        if (r < 0) {
                /* Without a timer, keep accepting: a busy loop beats a dead
                 * listener. */
                paf_log(PAF_LOG_ERR, "listener %s: cannot pause accepting: %s", address,
                        strerror(-r));
                return;
        }
        sl->paused = true;
        socket_listener_update(sl);
}

static int socket_listener_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        (void)s;
        (void)fd;
        (void)revents;
        socket_listener *sl = userdata;
        sd_event *event = paf_listener_get_event(sl->listener);

        sl->in_handler = true;
        for (unsigned i = 0; i < ACCEPTS_PER_WAKEUP && sl->started && !sl->closed; i++) {
                int cfd = accept4(sl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        int e = errno;
                        if (e == EAGAIN)
                                break;
                        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                                socket_listener_pause(sl, e);
                                break;
                        }
                        /* ECONNABORTED, EINTR, EPROTO and the network errors
                         * accept(2) passes on concern one connection only. */
                        if (e != ECONNABORTED && e != EINTR && e != EPROTO && e != EPERM &&
                            e != ENETDOWN && e != ENOPROTOOPT && e != EHOSTDOWN && e != ENONET &&
                            e != EHOSTUNREACH && e != EOPNOTSUPP && e != ENETUNREACH) {
                                /* Unexpected: do not spin on it either. */
                                socket_listener_pause(sl, e);
                                break;
                        }
                        continue;
                }
                if (sl->hook) {
                        int r = sl->hook(cfd, sl->hook_userdata);
                        if (r < 0 || sl->closed) {
                                /* A hook that freed the listener took its
                                 * name with it: that connection just goes. */
                                if (r < 0 && !sl->closed) {
                                        struct sockaddr_storage peer;
                                        socklen_t len = sizeof(peer);
                                        char text[256];
                                        if (getpeername(cfd, (struct sockaddr *)&peer, &len) < 0)
                                                len = 0;
                                        sockaddr_text(&peer, len, text, sizeof(text));
                                        paf_log(PAF_LOG_NOTICE,
                                                "listener %s: connection from %s refused by the "
                                                "accept hook: %s",
                                                paf_listener_get_address(sl->listener), text,
                                                strerror(-r));
                                }
                                close_fd(cfd);
                                continue;
                        }
                }
                paf_flow *flow;
                int r = paf_socket_flow_new(event, cfd, sl->protocol, &flow);
                if (r < 0) {
                        paf_log(PAF_LOG_WARNING, "listener %s: cannot set up a connection: %s",
                                paf_listener_get_address(sl->listener), strerror(-r));
                        continue;
                }
                paf_listener_deliver(sl->listener, flow);
        }
        sl->in_handler = false;

        if (sl->closed)
                socket_listener_free(sl);
        return 0;
}

static int socket_listener_start(paf_listener *l) {
        socket_listener *sl = paf_listener_get_impl(l);
        sl->started = true;
        socket_listener_update(sl);
        return 0;
}

static int socket_listener_stop(paf_listener *l) {
        socket_listener *sl = paf_listener_get_impl(l);
        sl->started = false;
        socket_listener_update(sl);
        return 0;
}

static void socket_listener_close(paf_listener *l) {
        socket_listener *sl = paf_listener_get_impl(l);
        sl->io = sd_event_source_disable_unref(sl->io);
        sl->pause = sd_event_source_disable_unref(sl->pause);
        close_fd(sl->fd);
        sl->fd = -1;
        sl->closed = true;
        if (!sl->in_handler)
                socket_listener_free(sl);
}

static int socket_listener_get_fd(paf_listener *l) {
        socket_listener *sl = paf_listener_get_impl(l);
        return sl->fd;
}

static const paf_listener_ops socket_listener_ops = {
        .struct_size = sizeof(paf_listener_ops),
        .start = socket_listener_start,
        .stop = socket_listener_stop,
        .close = socket_listener_close,
        .get_fd = socket_listener_get_fd,
};

PAF_EXPORT int paf_socket_listener_set_accept_hook(paf_listener *l, paf_socket_accept_hook_t hook,
                                                   void *userdata) {
        /* Only ours: another listener's impl is not a socket_listener. */
        if (!l || !paf_listener_has_ops(l, &socket_listener_ops))
                return -EINVAL;
        socket_listener *sl = paf_listener_get_impl(l);
        sl->hook = hook;
        sl->hook_userdata = hook ? userdata : NULL;
        return 0;
}

PAF_EXPORT int paf_socket_listener_new(sd_event *event, int fd, const char *protocol,
                                       paf_listener **ret) {
        if (fd < 0)
                return -EINVAL;
        if (!event || !ret) {
                close_fd(fd);
                return -EINVAL;
        }
        int r = fd_check_stream(fd);
        if (r >= 0) {
                int listening = 0;
                socklen_t len = sizeof(listening);
                if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
                        r = -errno;
                else if (!listening)
                        r = -EINVAL;
        }
        if (r >= 0)
                r = fd_set_nonblock_cloexec(fd);
        if (r < 0) {
                close_fd(fd);
                return r;
        }

        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
                len = 0;
        char address[256];
        sockaddr_text(&ss, len, address, sizeof(address));
        if (!protocol)
                protocol = len > 0 ? family_protocol(ss.ss_family) : "socket";

        socket_listener *sl = calloc(1, sizeof(*sl));
        if (!sl || !(sl->protocol = strdup(protocol))) {
                free(sl);
                close_fd(fd);
                return -ENOMEM;
        }
        sl->fd = fd;
        r = sd_event_add_io(event, &sl->io, fd, EPOLLIN, socket_listener_on_io, sl);
        if (r >= 0)
                r = sd_event_source_set_enabled(sl->io, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time_relative(event, &sl->pause, CLOCK_MONOTONIC,
                                               ACCEPT_PAUSE_USEC, 0, socket_listener_on_pause_end,
                                               sl);
        if (r >= 0)
                r = sd_event_source_set_enabled(sl->pause, SD_EVENT_OFF);
        if (r >= 0) {
                (void)sd_event_source_set_description(sl->io, "paf-socket-listener");
                r = paf_listener_new(event, &socket_listener_ops, sl, protocol, address,
                                     &sl->listener);
        }
        if (r < 0) {
                sd_event_source_disable_unref(sl->io);
                sd_event_source_disable_unref(sl->pause);
                close_fd(fd);
                socket_listener_free(sl);
                return r;
        }
        *ret = sl->listener;
        return 0;
}

/* ---- non-blocking connect ---- */

struct paf_socket_connect {
        sd_event *event;
        int fd;
        int error;              /* an immediate connect() failure, reported from the loop */
        sd_event_source *io;    /* EPOLLOUT: the connect finished */
        sd_event_source *defer; /* connect() finished at once */
        char *protocol;
        paf_socket_connect_handler_t handler;
        void *userdata;
        bool in_handler;
};

static void socket_connect_free(paf_socket_connect *c) {
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->defer);
        close_fd(c->fd);
        sd_event_unref(c->event);
        free(c->protocol);
        free(c);
}

static void socket_connect_finish(paf_socket_connect *c, int error) {
        paf_flow *flow = NULL;
        /* First: the flow registers the same fd with the loop. */
        c->io = sd_event_source_disable_unref(c->io);
        c->defer = sd_event_source_disable_unref(c->defer);
        if (error == 0) {
                int fd = c->fd;
                c->fd = -1; /* the flow owns it now, also on failure */
                error = paf_socket_flow_new(c->event, fd, c->protocol, &flow);
        }
        close_fd(c->fd);
        c->fd = -1;

        c->in_handler = true;
        c->handler(flow, error < 0 ? error : 0, c->userdata);
        socket_connect_free(c);
}

static int socket_connect_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        (void)s;
        (void)revents;
        paf_socket_connect *c = userdata;
        int error = 0;
        socklen_t len = sizeof(error);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                error = errno;
        socket_connect_finish(c, -error);
        return 0;
}

static int socket_connect_on_defer(sd_event_source *s, void *userdata) {
        (void)s;
        paf_socket_connect *c = userdata;
        socket_connect_finish(c, c->error);
        return 0;
}

PAF_EXPORT int paf_socket_connect_start(sd_event *event, const struct sockaddr *sa, socklen_t len,
                                        const char *protocol, paf_socket_connect_handler_t handler,
                                        void *userdata, paf_socket_connect **ret) {
        if (!event || !sa || len < (socklen_t)sizeof(sa_family_t) || !handler)
                return -EINVAL;

        paf_socket_connect *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->event = sd_event_ref(event);
        c->handler = handler;
        c->userdata = userdata;
        c->protocol = strdup(protocol ?: family_protocol(sa->sa_family));
        if (!c->protocol) {
                socket_connect_free(c);
                return -ENOMEM;
        }

        c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
                int r = -errno;
                socket_connect_free(c);
                return r;
        }

        int r;
        if (connect(c->fd, sa, len) >= 0)
                r = sd_event_add_defer(event, &c->defer, socket_connect_on_defer, c);
        else if (errno == EINPROGRESS || errno == EINTR)
                r = sd_event_add_io(event, &c->io, c->fd, EPOLLOUT, socket_connect_on_io, c);
        else {
                /* Refused at once (typical for unix sockets): still the
                 * connection's result, so it goes to the handler, from the loop. */
                c->error = -errno;
                r = sd_event_add_defer(event, &c->defer, socket_connect_on_defer, c);
        }
        if (r < 0) {
                socket_connect_free(c);
                return r;
        }
        if (ret)
                *ret = c;
        return 0;
}

PAF_EXPORT void paf_socket_connect_cancel(paf_socket_connect *c) {
        /* From inside its own handler the connect is already over, and it
         * frees itself when the handler returns. */
        if (!c || c->in_handler)
                return;
        socket_connect_free(c);
}
