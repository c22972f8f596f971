/* bench/responder.c — a canned HTTP/1.1 responder for bench/client.sh.
 *
 * Against nginx the clients measure nginx: it costs more per request than
 * any of them, so every one of them gets the requests/s nginx can give.
 * This server costs less than a client, so that the client's own speed is
 * what the rows against it measure. It answers every request on a
 * connection (the end of its head, a blank line; no bodies) with the same
 * response, and a run of pipelined requests with one write; there is no
 * routing, no parsing past the blank line, no logging.
 *
 *   paf-bench-responder PORT STATUS_PORT BODY_BYTES
 *
 * Listens on 127.0.0.1. A connection to STATUS_PORT gets, as an HTTP
 * response, the number of requests answered so far (bench/client.sh's check
 * of every tool's own count), and is closed. SIGTERM or SIGINT ends it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* The responses' stream is one response over and over: COPIES of it in a
 * row, and a connection's place in the stream is its offset in one. */
#define COPIES_BYTES (256 * 1024)
#define READ_BYTES (64 * 1024)

typedef struct conn {
        int fd;
        unsigned matched; /* bytes of "\r\n\r\n" seen at the end of the input */
        uint64_t owed;    /* bytes of responses not written yet */
        size_t pos;       /* where in a response the next byte comes from */
        int out_armed;    /* EPOLLOUT asked for */
        struct conn *prev, *next;
} conn;

static char *copies;
static size_t response_len, copies_len;
static uint64_t answered;
static conn *conns; /* every open connection, freed at the end */
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
        (void)sig;
        stop = 1;
}

static int listen_on(int port) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

static void conn_close(conn *c) {
        if (c->prev)
                c->prev->next = c->next;
        else
                conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        close(c->fd);
        free(c);
}

/* Writes what is owed until done or the socket is full; -1: gone. */
static int conn_flush(int ep, conn *c) {
        while (c->owed > 0) {
                size_t n = copies_len - c->pos;
                if (n > c->owed)
                        n = (size_t)c->owed;
                ssize_t w = send(c->fd, copies + c->pos, n, MSG_NOSIGNAL);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -1;
                        break;
                }
                c->owed -= (uint64_t)w;
                c->pos = (c->pos + (size_t)w) % response_len;
        }
        int want = c->owed > 0;
        if (want != c->out_armed) {
                struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
                if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                        return -1;
                c->out_armed = want;
        }
        return 0;
}

/* Reads what came, counts the requests it ends; -1: closed or failed. */
static int conn_read(conn *c, char *buf) {
        static const char end[] = "\r\n\r\n";
        for (;;) {
                ssize_t n = recv(c->fd, buf, READ_BYTES, 0);
                if (n == 0)
                        return -1;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -1;
                }
                for (ssize_t i = 0; i < n; i++) {
                        if (buf[i] == end[c->matched])
                                c->matched++;
                        else
                                c->matched = buf[i] == '\r';
                        if (c->matched == 4) {
                                c->matched = 0;
                                c->owed += response_len;
                                answered++;
                        }
                }
                if (n < READ_BYTES)
                        return 0;
        }
}

static void status_answer(int lfd) {
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                char body[32], msg[160];
                int b = snprintf(body, sizeof(body), "%llu\n", (unsigned long long)answered);
                int m = snprintf(msg, sizeof(msg),
                                 "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", b,
                                 body);
                (void)!write(fd, msg, (size_t)m);
                close(fd);
        }
}

int main(int argc, char **argv) {
        if (argc != 4) {
                fprintf(stderr, "usage: %s PORT STATUS_PORT BODY_BYTES\n", argv[0]);
                return 2;
        }
        int port = atoi(argv[1]), status_port = atoi(argv[2]);
        long body = atol(argv[3]);
        if (port <= 0 || port > 65535 || status_port <= 0 || status_port > 65535 || body < 0 ||
            body > 1 << 20) {
                fprintf(stderr, "%s: bad port or body size\n", argv[0]);
                return 2;
        }
        char head[128];
        int h = snprintf(head, sizeof(head),
                         "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %ld\r\n\r\n", body);
        response_len = (size_t)h + (size_t)body;
        size_t n_copies = COPIES_BYTES / response_len + 1;
        copies_len = n_copies * response_len;
        copies = malloc(copies_len);
        if (!copies)
                return 1;
        for (size_t i = 0; i < n_copies; i++) {
                char *r = copies + i * response_len;
                memcpy(r, head, (size_t)h);
                for (long j = 0; j < body; j++)
                        r[h + j] = j == body - 1 ? '\n' : "hello, world"[j % 12];
        }

        int lfd = listen_on(port), sfd = listen_on(status_port);
        if (lfd < 0 || sfd < 0) {
                fprintf(stderr, "%s: listen on 127.0.0.1:%d/%d: %m\n", argv[0], port, status_port);
                return 1;
        }
        struct sigaction sa = {.sa_handler = on_signal};
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &lfd};
        struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &sfd};
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &sev) < 0) {
                fprintf(stderr, "%s: epoll: %m\n", argv[0]);
                return 1;
        }
        static char buf[READ_BYTES];
        struct epoll_event evs[256];
        while (!stop) {
                int n = epoll_wait(ep, evs, 256, -1);
                if (n < 0 && errno != EINTR) {
                        fprintf(stderr, "%s: epoll_wait: %m\n", argv[0]);
                        return 1;
                }
                for (int i = 0; i < n; i++) {
                        if (evs[i].data.ptr == &sfd) {
                                status_answer(sfd);
                                continue;
                        }
                        if (evs[i].data.ptr == &lfd) {
                                int fd;
                                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                                        int one = 1;
                                        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                                        conn *c = calloc(1, sizeof(*c));
                                        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                                        if (!c || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                                                free(c);
                                                close(fd);
                                                continue;
                                        }
                                        c->fd = fd;
                                        c->next = conns;
                                        if (conns)
                                                conns->prev = c;
                                        conns = c;
                                }
                                continue;
                        }
                        conn *c = evs[i].data.ptr;
                        int gone = 0;
                        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                                gone = conn_read(c, buf) < 0;
                        if (!gone)
                                gone = conn_flush(ep, c) < 0;
                        if (gone)
                                conn_close(c);
                }
        }
        while (conns)
                conn_close(conns);
        close(ep);
        close(lfd);
        close(sfd);
        free(copies);
        return 0;
}
