/* tests/core/test-flow.c — the generic flow and the socket flow, without a registry. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/vm_sockets.h>

#include <paf.h>

#include "../common/paf-test.h"

/* ---- helpers ---- */

/* Run the loop until *done or timeout_ms passed; returns whether done. */
/* Run the loop for a while, whatever happens. */
typedef struct fixture {
        sd_event *event;
        int fds_before;
} fixture;

static int setup(void **state) {
        fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        f->fds_before = count_fds();
        assert_int_equal(sd_event_new(&f->event), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;
        /* Whatever a test left pending must have finished by now. */
        run_for(f->event, 20);
        sd_event_unref(f->event);
        assert_int_equal(count_fds(), f->fds_before);
        free(f);
        return 0;
}

/* A reader that records what it got, and can stop or close from inside. */
typedef struct probe {
        uint8_t *data;
        size_t len, cap;
        unsigned calls;
        bool eof;
        int error;
        bool ended;
        size_t stop_after; /* read_stop once this many bytes arrived (0: never) */
        bool close_in_handler;
        bool close_done;
} probe;

static void reader_close_done(paf_flow *flow, void *userdata) {
        (void)flow;
        ((probe *)userdata)->close_done = true;
}

static void on_probe_read(paf_flow *flow, const void *data, size_t len, int error, void *userdata) {
        probe *r = userdata;
        r->calls++;
        if (error < 0) {
                r->error = error;
                r->ended = true;
        } else if (len == 0) {
                r->eof = true;
                r->ended = true;
        } else {
                if (r->len + len > r->cap) {
                        r->cap = (r->len + len) * 2;
                        r->data = realloc(r->data, r->cap);
                        assert_non_null(r->data);
                }
                memcpy(r->data + r->len, data, len);
                r->len += len;
                if (r->stop_after && r->len >= r->stop_after)
                        assert_int_equal(paf_flow_read_stop(flow), 0);
        }
        if (r->close_in_handler)
                paf_flow_close(flow, reader_close_done, r);
}

typedef struct completion {
        unsigned calls;
        int error;
        bool done;
} completion;

static void on_write(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        completion *c = userdata;
        c->calls++;
        c->error = error;
        c->done = true;
}

/* Close and wait for the close handler. */
static void unix_pair(sd_event *e, paf_flow **a, paf_flow **b) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        assert_int_equal(paf_socket_flow_new(e, sv[0], "test", a), 0);
        assert_int_equal(paf_socket_flow_new(e, sv[1], "test", b), 0);
}

/* A connected TCP pair on loopback (plain blocking calls: setup only). */
static void tcp_pair_fds(int family, int *client, int *server) {
        int l = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(l >= 0);
        struct sockaddr_storage ss = {0};
        socklen_t len;
        if (family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *)&ss;
                in->sin_family = AF_INET;
                in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                len = sizeof(*in);
        } else {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
                in6->sin6_family = AF_INET6;
                in6->sin6_addr = in6addr_loopback;
                len = sizeof(*in6);
        }
        assert_int_equal(bind(l, (struct sockaddr *)&ss, len), 0);
        assert_int_equal(listen(l, 4), 0);
        len = sizeof(ss);
        assert_int_equal(getsockname(l, (struct sockaddr *)&ss, &len), 0);
        *client = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(*client >= 0);
        assert_int_equal(connect(*client, (struct sockaddr *)&ss, len), 0);
        *server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        assert_true(*server >= 0);
        close(l);
}

static bool have_ipv6(void) {
        int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return false;
        struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
        bool ok = bind(fd, (struct sockaddr *)&in6, sizeof(in6)) == 0;
        close(fd);
        return ok;
}

/* ---- socket flow ---- */

static void test_round_trip(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);

        assert_string_equal(paf_flow_get_protocol(a), "test");
        assert_string_equal(paf_flow_get_peer(a), "unix:unnamed");
        assert_string_equal(paf_flow_get_local(b), "unix:unnamed");

        probe ra = {0}, rb = {0};
        assert_int_equal(paf_flow_read_start(a, on_probe_read, &ra), 0);
        assert_int_equal(paf_flow_read_start(b, on_probe_read, &rb), 0);

        static const char ping[] = "ping", pong[] = "pong!";
        completion c1 = {0}, c2 = {0};
        struct iovec v = {.iov_base = (void *)ping, .iov_len = 4};
        assert_int_equal(paf_flow_write(a, &v, 1, on_write, &c1), 0);
        assert_true(run_until(f->event, &c1.done, 2000));
        assert_int_equal(c1.error, 0);
        uint64_t deadline = now_ms() + 2000;
        while (rb.len < 4 && now_ms() < deadline)
                assert_true(sd_event_run(f->event, 10 * 1000) >= 0);
        assert_int_equal(rb.len, 4);
        assert_memory_equal(rb.data, "ping", 4);

        /* Two buffers in one write arrive as one stream. */
        struct iovec w[2] = {{(void *)pong, 3}, {(void *)(pong + 3), 2}};
        assert_int_equal(paf_flow_write(b, w, 2, on_write, &c2), 0);
        assert_true(run_until(f->event, &c2.done, 2000));
        uint64_t end = now_ms() + 2000;
        while (ra.len < 5 && now_ms() < end)
                assert_true(sd_event_run(f->event, 10 * 1000) >= 0);
        assert_int_equal(ra.len, 5);
        assert_memory_equal(ra.data, "pong!", 5);

        close_and_wait(f->event, a);
        close_and_wait(f->event, b);
        free(ra.data);
        free(rb.data);
}

static void test_completion_never_synchronous(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);

        /* A tiny write fits in the socket buffer: the transport takes it at
         * once, yet the callback must wait for the loop. */
        completion c = {0};
        char byte = 'x';
        struct iovec v = {.iov_base = &byte, .iov_len = 1};
        assert_int_equal(paf_flow_write(a, &v, 1, on_write, &c), 0);
        assert_int_equal(c.calls, 0);
        assert_int_equal(paf_flow_get_write_queue_size(a), 1);
        assert_true(run_until(f->event, &c.done, 2000));
        assert_int_equal(c.calls, 1);
        assert_int_equal(c.error, 0);
        assert_int_equal(paf_flow_get_write_queue_size(a), 0);

        /* The same for shutdown. */
        completion s = {0};
        assert_int_equal(paf_flow_shutdown(a, on_write, &s), 0);
        assert_int_equal(s.calls, 0);
        assert_true(run_until(f->event, &s.done, 2000));
        assert_int_equal(s.error, 0);
        /* Nothing may be written after a shutdown. */
        assert_int_equal(paf_flow_write(a, &v, 1, on_write, &c), -EPIPE);
        assert_int_equal(paf_flow_shutdown(a, on_write, &s), -EALREADY);

        close_and_wait(f->event, a);
        close_and_wait(f->event, b);
}

typedef struct order_log {
        unsigned next; /* index expected next */
        unsigned n;
        bool bad;
        bool done;
} order_log;

typedef struct order_item {
        order_log *log;
        unsigned index;
} order_item;

static void on_ordered_write(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        order_item *it = userdata;
        if (error != 0 || it->index != it->log->next)
                it->log->bad = true;
        it->log->next++;
        if (it->log->next == it->log->n)
                it->log->done = true;
}

static void test_writes_complete_in_order(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);

        enum { N = 200 };
        static uint8_t data[N][3000];
        order_item items[N];
        order_log log = {.n = N};
        size_t total = 0;
        for (unsigned i = 0; i < N; i++) {
                size_t len = 1 + (i * 37) % sizeof(data[i]);
                memset(data[i], (int)(i & 0xff), len);
                items[i] = (order_item){&log, i};
                struct iovec v = {data[i], len};
                assert_int_equal(paf_flow_write(a, &v, 1, on_ordered_write, &items[i]), 0);
                total += len;
        }
        assert_int_equal(paf_flow_get_write_queue_size(a), total);
        assert_int_equal(log.next, 0);

        probe rb = {0};
        assert_int_equal(paf_flow_read_start(b, on_probe_read, &rb), 0);
        assert_true(run_until(f->event, &log.done, 5000));
        assert_false(log.bad);
        uint64_t end = now_ms() + 5000;
        while (rb.len < total && now_ms() < end)
                assert_true(sd_event_run(f->event, 10 * 1000) >= 0);
        assert_int_equal(rb.len, total);
        /* The bytes arrive in write order too. */
        size_t off = 0;
        for (unsigned i = 0; i < N; i++) {
                size_t len = 1 + (i * 37) % sizeof(data[i]);
                for (size_t k = 0; k < len; k++)
                        assert_int_equal(rb.data[off + k], i & 0xff);
                off += len;
        }
        close_and_wait(f->event, a);
        close_and_wait(f->event, b);
        free(rb.data);
}

typedef struct cancel_log {
        int errors[8];
        unsigned n;
        unsigned closed_at; /* n when the close handler ran */
        bool closed;
} cancel_log;

typedef struct cancel_item {
        cancel_log *log;
} cancel_item;

static void on_cancel_write(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        cancel_log *log = userdata;
        log->errors[log->n++] = error;
}

static void on_cancel_close(paf_flow *flow, void *userdata) {
        (void)flow;
        cancel_log *log = userdata;
        log->closed_at = log->n;
        log->closed = true;
}

static void test_close_cancels_pending_writes(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);

        /* Nobody reads b: a 16 MiB write cannot complete, and the ones after
         * it wait in the queue. */
        size_t big = 16 * 1024 * 1024;
        uint8_t *buf = calloc(1, big);
        assert_non_null(buf);
        cancel_log log = {0};
        struct iovec v = {buf, big};
        for (unsigned i = 0; i < 4; i++)
                assert_int_equal(paf_flow_write(a, &v, 1, on_cancel_write, &log), 0);
        run_for(f->event, 50);
        assert_int_equal(log.n, 0);
        assert_int_equal(paf_flow_get_write_queue_size(a), 4 * big);

        paf_flow_close(a, on_cancel_close, &log);
        /* Nothing from inside close. */
        assert_int_equal(log.n, 0);
        assert_false(log.closed);
        assert_true(run_until(f->event, &log.closed, 2000));
        assert_int_equal(log.n, 4);
        for (unsigned i = 0; i < 4; i++)
                assert_int_equal(log.errors[i], -ECANCELED);
        /* The close handler comes after every write callback. */
        assert_int_equal(log.closed_at, 4);

        close_and_wait(f->event, b);
        free(buf);
}

static void test_peer_close_is_eof(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);

        probe ra = {0};
        assert_int_equal(paf_flow_read_start(a, on_probe_read, &ra), 0);
        close_and_wait(f->event, b);
        assert_true(run_until(f->event, &ra.ended, 2000));
        assert_true(ra.eof);
        assert_int_equal(ra.error, 0);
        /* Nothing after the end. */
        unsigned calls = ra.calls;
        run_for(f->event, 30);
        assert_int_equal(ra.calls, calls);
        close_and_wait(f->event, a);
}

static void test_shutdown_is_eof_and_half_open(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);

        probe ra = {0}, rb = {0};
        assert_int_equal(paf_flow_read_start(a, on_probe_read, &ra), 0);
        assert_int_equal(paf_flow_read_start(b, on_probe_read, &rb), 0);

        /* The shutdown waits for the write before it. */
        completion w = {0}, s = {0};
        struct iovec v = {(void *)"last", 4};
        assert_int_equal(paf_flow_write(a, &v, 1, on_write, &w), 0);
        assert_int_equal(paf_flow_shutdown(a, on_write, &s), 0);
        assert_true(run_until(f->event, &rb.ended, 2000));
        assert_true(w.done && s.done);
        assert_int_equal(rb.len, 4);
        assert_true(rb.eof);

        /* The other direction still works. */
        completion w2 = {0};
        struct iovec v2 = {(void *)"reply", 5};
        assert_int_equal(paf_flow_write(b, &v2, 1, on_write, &w2), 0);
        uint64_t end = now_ms() + 2000;
        while (ra.len < 5 && now_ms() < end)
                assert_true(sd_event_run(f->event, 10 * 1000) >= 0);
        assert_memory_equal(ra.data, "reply", 5);

        close_and_wait(f->event, a);
        close_and_wait(f->event, b);
        free(ra.data);
        free(rb.data);
}

static void test_reset_unix_unread_data(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);

        probe ra = {0};
        assert_int_equal(paf_flow_read_start(a, on_probe_read, &ra), 0);
        completion c = {0};
        struct iovec v = {(void *)"unread", 6};
        assert_int_equal(paf_flow_write(a, &v, 1, on_write, &c), 0);
        assert_true(run_until(f->event, &c.done, 2000));
        /* b closes with a's bytes still unread: the kernel resets a. */
        close_and_wait(f->event, b);
        assert_true(run_until(f->event, &ra.ended, 2000));
        assert_int_equal(ra.error, -ECONNRESET);
        assert_false(ra.eof);
        close_and_wait(f->event, a);
}

static void test_reset_tcp_linger(void **state) {
        fixture *f = *state;
        int client, server;
        tcp_pair_fds(AF_INET, &client, &server);
        paf_flow *a;
        assert_int_equal(paf_socket_flow_new(f->event, client, NULL, &a), 0);
        assert_string_equal(paf_flow_get_protocol(a), "tcp");

        probe ra = {0};
        assert_int_equal(paf_flow_read_start(a, on_probe_read, &ra), 0);
        /* SO_LINGER 0 turns close() into a RST. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        assert_int_equal(setsockopt(server, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        close(server);
        assert_true(run_until(f->event, &ra.ended, 2000));
        assert_int_equal(ra.error, -ECONNRESET);
        close_and_wait(f->event, a);
}

static void test_write_to_gone_peer_is_epipe(void **state) {
        fixture *f = *state;
        /* Default SIGPIPE disposition: a SIGPIPE would kill the test. */
        struct sigaction sa = {.sa_handler = SIG_DFL}, old;
        assert_int_equal(sigaction(SIGPIPE, &sa, &old), 0);

        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        paf_flow *a;
        assert_int_equal(paf_socket_flow_new(f->event, sv[0], NULL, &a), 0);
        assert_string_equal(paf_flow_get_protocol(a), "unix");
        close(sv[1]);

        completion c = {0}, c2 = {0};
        struct iovec v = {(void *)"nobody", 6};
        assert_int_equal(paf_flow_write(a, &v, 1, on_write, &c), 0);
        assert_int_equal(paf_flow_write(a, &v, 1, on_write, &c2), 0);
        assert_true(run_until(f->event, &c2.done, 2000));
        assert_int_equal(c.error, -EPIPE);
        /* The stream is broken: what was queued behind fails too. */
        assert_int_equal(c2.error, -EPIPE);
        close_and_wait(f->event, a);

        /* Same over TCP, where the first write may still be accepted. */
        int client, server;
        tcp_pair_fds(AF_INET, &client, &server);
        assert_int_equal(paf_socket_flow_new(f->event, client, NULL, &a), 0);
        close(server);
        int last = 0;
        for (unsigned i = 0; i < 50 && last == 0; i++) {
                completion ci = {0};
                assert_int_equal(paf_flow_write(a, &v, 1, on_write, &ci), 0);
                assert_true(run_until(f->event, &ci.done, 2000));
                last = ci.error;
                if (last == 0)
                        run_for(f->event, 10); /* let the peer's RST arrive */
        }
        assert_true(last == -EPIPE || last == -ECONNRESET);
        close_and_wait(f->event, a);

        assert_int_equal(sigaction(SIGPIPE, &old, NULL), 0);
}

static void test_read_stop_stops_delivery(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);

        probe rb = {.stop_after = 1};
        assert_int_equal(paf_flow_read_start(b, on_probe_read, &rb), 0);
        completion c1 = {0};
        struct iovec v = {(void *)"first", 5};
        assert_int_equal(paf_flow_write(a, &v, 1, on_write, &c1), 0);
        uint64_t end = now_ms() + 2000;
        while (rb.len == 0 && now_ms() < end)
                assert_true(sd_event_run(f->event, 10 * 1000) >= 0);
        assert_int_equal(rb.len, 5);
        assert_false(paf_flow_is_reading(b));

        /* Stopped: what arrives now stays in the socket. */
        completion c2 = {0};
        struct iovec v2 = {(void *)"second", 6};
        assert_int_equal(paf_flow_write(a, &v2, 1, on_write, &c2), 0);
        assert_true(run_until(f->event, &c2.done, 2000));
        run_for(f->event, 50);
        assert_int_equal(rb.len, 5);
        unsigned calls = rb.calls;

        /* Even a peer that goes away is not reported while stopped. */
        close_and_wait(f->event, a);
        run_for(f->event, 30);
        assert_int_equal(rb.calls, calls);

        rb.stop_after = 0;
        assert_int_equal(paf_flow_read_start(b, on_probe_read, &rb), 0);
        assert_true(run_until(f->event, &rb.ended, 2000));
        assert_int_equal(rb.len, 11);
        assert_memory_equal(rb.data, "firstsecond", 11);
        assert_true(rb.eof);
        close_and_wait(f->event, b);
        free(rb.data);
}

static void test_close_inside_read_handler(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);

        probe rb = {.close_in_handler = true};
        assert_int_equal(paf_flow_read_start(b, on_probe_read, &rb), 0);
        /* More than one read's worth, so the transport has more to deliver
         * after the handler closed the flow. */
        size_t n = 256 * 1024;
        uint8_t *buf = calloc(1, n);
        completion c = {0};
        struct iovec v = {buf, n};
        assert_int_equal(paf_flow_write(a, &v, 1, on_write, &c), 0);
        assert_true(run_until(f->event, &rb.close_done, 2000));
        assert_int_equal(rb.calls, 1);
        close_and_wait(f->event, a);
        free(buf);
        free(rb.data);
}

typedef struct reentrant {
        paf_flow *flow;
        unsigned writes;
        completion last;
        bool closed;
} reentrant;

static void on_reentrant_closed(paf_flow *flow, void *userdata) {
        (void)flow;
        ((reentrant *)userdata)->closed = true;
}

static void on_reentrant_write(paf_flow *flow, int error, void *userdata) {
        reentrant *re = userdata;
        assert_int_equal(error, 0);
        /* Write again from the completion, then close from the next one. */
        if (++re->writes < 3) {
                struct iovec v = {(void *)"again", 5};
                assert_int_equal(paf_flow_write(flow, &v, 1, on_reentrant_write, re), 0);
                return;
        }
        paf_flow_close(flow, on_reentrant_closed, re);
        assert_false(re->closed);
}

static void test_reentrant_write_and_close(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);
        reentrant re = {.flow = a};
        struct iovec v = {(void *)"first", 5};
        assert_int_equal(paf_flow_write(a, &v, 1, on_reentrant_write, &re), 0);
        assert_true(run_until(f->event, &re.closed, 2000));
        assert_int_equal(re.writes, 3);

        probe rb = {0};
        assert_int_equal(paf_flow_read_start(b, on_probe_read, &rb), 0);
        assert_true(run_until(f->event, &rb.ended, 2000));
        assert_int_equal(rb.len, 15);
        assert_true(rb.eof);
        close_and_wait(f->event, b);
        free(rb.data);
}

static void test_close_without_handler_releases_at_once(void **state) {
        fixture *f = *state;
        int before = count_fds();
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);
        /* Two sockets, plus the loop's socket poller while a flow exists. */
        assert_int_equal(count_fds(), before + 3);
        /* Nothing pending and nobody to tell: the fd goes at once. */
        paf_flow_close(a, NULL, NULL);
        assert_int_equal(count_fds(), before + 2);
        paf_flow_close(b, NULL, NULL);
        assert_int_equal(count_fds(), before);
}

static void test_queries(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);

        int fd = -1;
        assert_int_equal(paf_flow_query(a, PAF_FLOW_QUERY_FD, &fd, sizeof(fd)), 0);
        assert_true(fd >= 0);
        struct ucred cred;
        assert_int_equal(paf_flow_get_peer_credentials(a, &cred), 0);
        assert_int_equal(cred.pid, getpid());
        assert_int_equal(cred.uid, getuid());
        assert_int_equal(cred.gid, getgid());
        struct sockaddr_storage ss;
        assert_true(paf_flow_query(a, PAF_FLOW_QUERY_PEER_SOCKADDR, &ss, sizeof(ss)) >= 0);
        assert_int_equal(ss.ss_family, AF_UNIX);
        assert_int_equal(paf_flow_query(a, PAF_FLOW_QUERY_USER + 1, &fd, sizeof(fd)), -EOPNOTSUPP);
        assert_int_equal(paf_flow_query(a, PAF_FLOW_QUERY_FD, &fd, 1), -EINVAL);
        close_and_wait(f->event, a);
        close_and_wait(f->event, b);

        int client, server;
        tcp_pair_fds(AF_INET, &client, &server);
        assert_int_equal(paf_socket_flow_new(f->event, client, NULL, &a), 0);
        assert_int_equal(paf_socket_flow_new(f->event, server, NULL, &b), 0);
        /* No credentials over TCP. */
        assert_int_equal(paf_flow_get_peer_credentials(a, &cred), -EOPNOTSUPP);
        assert_true(paf_flow_query(a, PAF_FLOW_QUERY_LOCAL_SOCKADDR, &ss, sizeof(ss)) > 0);
        assert_int_equal(ss.ss_family, AF_INET);
        close_and_wait(f->event, a);
        close_and_wait(f->event, b);
}

static void test_describe(void **state) {
        fixture *f = *state;

        int client, server;
        tcp_pair_fds(AF_INET, &client, &server);
        paf_flow *a, *b;
        assert_int_equal(paf_socket_flow_new(f->event, client, "tcp", &a), 0);
        assert_int_equal(paf_socket_flow_new(f->event, server, "tcp", &b), 0);
        assert_string_equal(paf_flow_get_peer(a), paf_flow_get_local(b));
        assert_string_equal(paf_flow_get_local(a), paf_flow_get_peer(b));
        assert_memory_equal(paf_flow_get_peer(a), "127.0.0.1:", 10);
        close_and_wait(f->event, a);
        close_and_wait(f->event, b);

        if (have_ipv6()) {
                tcp_pair_fds(AF_INET6, &client, &server);
                assert_int_equal(paf_socket_flow_new(f->event, client, "tcp", &a), 0);
                assert_int_equal(paf_socket_flow_new(f->event, server, "tcp", &b), 0);
                assert_memory_equal(paf_flow_get_peer(a), "[::1]:", 6);
                assert_string_equal(paf_flow_get_local(a), paf_flow_get_peer(b));
                close_and_wait(f->event, a);
                close_and_wait(f->event, b);
        }

        /* A named unix socket and an abstract one. */
        char path[] = "/tmp/paf-test-flow-XXXXXX";
        assert_non_null(mkdtemp(path));
        char sock[sizeof(path) + 8];
        snprintf(sock, sizeof(sock), "%s/s", path);
        for (int abstract = 0; abstract < 2; abstract++) {
                struct sockaddr_un un = {.sun_family = AF_UNIX};
                socklen_t len;
                char expect[128];
                if (abstract) {
                        snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1, "paf-test-flow-%d",
                                 (int)getpid());
                        len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(un.sun_path + 1);
                        snprintf(expect, sizeof(expect), "@%s", un.sun_path + 1);
                } else {
                        snprintf(un.sun_path, sizeof(un.sun_path), "%s", sock);
                        len = sizeof(un);
                        snprintf(expect, sizeof(expect), "%s", sock);
                }
                int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                assert_int_equal(bind(l, (struct sockaddr *)&un, len), 0);
                assert_int_equal(listen(l, 1), 0);
                int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                assert_int_equal(connect(c, (struct sockaddr *)&un, len), 0);
                int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                assert_true(s >= 0);
                close(l);
                assert_int_equal(paf_socket_flow_new(f->event, c, NULL, &a), 0);
                assert_int_equal(paf_socket_flow_new(f->event, s, NULL, &b), 0);
                assert_string_equal(paf_flow_get_peer(a), expect);
                assert_string_equal(paf_flow_get_local(b), expect);
                /* The client's own end has no name. */
                assert_string_equal(paf_flow_get_local(a), "unix:unnamed");
                close_and_wait(f->event, a);
                close_and_wait(f->event, b);
        }
        unlink(sock);
        rmdir(path);
}

static void test_sockaddr_format(void **state) {
        (void)state;
        char buf[128];

        struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(80)};
        inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
        assert_int_equal(paf_sockaddr_format((struct sockaddr *)&in, sizeof(in), buf, sizeof(buf)),
                         0);
        assert_string_equal(buf, "127.0.0.1:80");

        struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
        in6.sin6_addr = in6addr_loopback;
        assert_int_equal(
                paf_sockaddr_format((struct sockaddr *)&in6, sizeof(in6), buf, sizeof(buf)), 0);
        assert_string_equal(buf, "[::1]:443");
        /* A v4 client of a dual-stack socket reads as the v4 address it is. */
        inet_pton(AF_INET6, "::ffff:10.1.2.3", &in6.sin6_addr);
        assert_int_equal(
                paf_sockaddr_format((struct sockaddr *)&in6, sizeof(in6), buf, sizeof(buf)), 0);
        assert_string_equal(buf, "10.1.2.3:443");

        struct sockaddr_un un = {.sun_family = AF_UNIX};
        assert_int_equal(
                paf_sockaddr_format((struct sockaddr *)&un, sizeof(sa_family_t), buf, sizeof(buf)),
                0);
        assert_string_equal(buf, "unix:unnamed");
        strcpy(un.sun_path, "/run/x.sock");
        assert_int_equal(paf_sockaddr_format((struct sockaddr *)&un, sizeof(un), buf, sizeof(buf)),
                         0);
        assert_string_equal(buf, "/run/x.sock");
        memset(un.sun_path, 0, sizeof(un.sun_path));
        memcpy(un.sun_path, "\0name", 5);
        assert_int_equal(paf_sockaddr_format((struct sockaddr *)&un,
                                             offsetof(struct sockaddr_un, sun_path) + 5, buf,
                                             sizeof(buf)),
                         0);
        assert_string_equal(buf, "@name");

        struct sockaddr_vm vm = {.svm_family = AF_VSOCK, .svm_cid = 3, .svm_port = 8080};
        assert_int_equal(paf_sockaddr_format((struct sockaddr *)&vm, sizeof(vm), buf, sizeof(buf)),
                         0);
        assert_string_equal(buf, "vsock:3:8080");

        /* Too small a buffer, an unknown family, bad arguments. */
        assert_int_equal(paf_sockaddr_format((struct sockaddr *)&in, sizeof(in), buf, 5), -ENOBUFS);
        struct sockaddr bogus = {.sa_family = AF_APPLETALK};
        assert_int_equal(paf_sockaddr_format(&bogus, sizeof(bogus), buf, sizeof(buf)),
                         -EAFNOSUPPORT);
        assert_int_equal(paf_sockaddr_format(NULL, 0, buf, sizeof(buf)), -EINVAL);
        assert_int_equal(paf_sockaddr_format((struct sockaddr *)&in, 4, buf, sizeof(buf)), -EINVAL);
}

static void test_socket_flow_new_checks(void **state) {
        fixture *f = *state;
        paf_flow *flow = NULL;
        assert_int_equal(paf_socket_flow_new(f->event, -1, NULL, &flow), -EINVAL);
        /* Takes the fd also on failure. */
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_int_equal(paf_socket_flow_new(f->event, fd, NULL, &flow), -EPROTOTYPE);
        assert_int_equal(fcntl(fd, F_GETFD), -1);
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(paf_socket_flow_new(f->event, p[0], NULL, &flow), -ENOTSOCK);
        close(p[1]);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(paf_socket_flow_new(NULL, fd, NULL, &flow), -EINVAL);
        assert_null(flow);
}

static void test_bad_arguments(void **state) {
        fixture *f = *state;
        paf_flow *a, *b;
        unix_pair(f->event, &a, &b);
        assert_int_equal(paf_flow_write(NULL, NULL, 0, NULL, NULL), -EINVAL);
        assert_int_equal(paf_flow_write(a, NULL, 1, NULL, NULL), -EINVAL);
        assert_int_equal(paf_flow_read_start(a, NULL, NULL), -EINVAL);
        assert_int_equal(paf_flow_read_stop(NULL), -EINVAL);
        assert_int_equal(paf_flow_shutdown(NULL, NULL, NULL), -EINVAL);
        assert_int_equal(paf_flow_query(NULL, PAF_FLOW_QUERY_FD, NULL, 0), -EINVAL);
        assert_int_equal(paf_flow_get_write_queue_size(NULL), 0);
        assert_string_equal(paf_flow_get_peer(NULL), "?");
        paf_flow_close(NULL, NULL, NULL);
        paf_flow_deliver(NULL, NULL, 0, 0);
        paf_flow_write_done(NULL, 0);
        assert_null(paf_flow_get_impl(NULL));

        paf_flow_set_userdata(a, &f);
        assert_ptr_equal(paf_flow_get_userdata(a), &f);
        assert_ptr_equal(paf_flow_get_event(a), f->event);

        /* A write without a callback is fine. */
        struct iovec v = {(void *)"x", 1};
        assert_int_equal(paf_flow_write(a, &v, 1, NULL, NULL), 0);
        close_and_wait(f->event, a);
        close_and_wait(f->event, b);
}

/* ---- the socket listener ---- */

typedef struct accept_log {
        paf_flow *flows[8];
        size_t n;
} accept_log;

static void on_listener_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        accept_log *a = userdata;
        assert_true(a->n < 8);
        a->flows[a->n++] = flow;
}

/* A listening unix socket with an autobound abstract name. */
static int autobound_listener(struct sockaddr_un *ret, socklen_t *ret_len) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof(sa_family_t)), 0);
        assert_int_equal(listen(fd, 8), 0);
        *ret_len = sizeof(*ret);
        assert_int_equal(getsockname(fd, (struct sockaddr *)ret, ret_len), 0);
        return fd;
}

static void test_socket_listener(void **state) {
        fixture *f = *state;
        struct sockaddr_un un;
        socklen_t len;
        int fd = autobound_listener(&un, &len);
        paf_listener *l;
        assert_int_equal(paf_socket_listener_new(f->event, fd, NULL, &l), 0);
        assert_string_equal(paf_listener_get_protocol(l), "unix");
        assert_int_equal(paf_listener_get_address(l)[0], '@');
        assert_int_equal(paf_listener_get_fd(l), fd);
        assert_ptr_equal(paf_listener_get_event(l), f->event);

        /* Paused until it has a handler: the connection waits in the backlog. */
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(connect(c, (struct sockaddr *)&un, len), 0);
        accept_log a = {0};
        run_for(f->event, 20);
        assert_int_equal(paf_listener_set_accept_handler(l, on_listener_accept, &a), 0);
        uint64_t end = now_ms() + 2000;
        while (a.n < 1 && now_ms() < end)
                assert_true(sd_event_run(f->event, 10 * 1000) >= 0);
        assert_int_equal(a.n, 1);
        assert_string_equal(paf_flow_get_protocol(a.flows[0]), "unix");
        assert_string_equal(paf_flow_get_local(a.flows[0]), paf_listener_get_address(l));
        close(c);
        close_and_wait(f->event, a.flows[0]);
        assert_null(paf_listener_free(l));

        /* Not a listening socket: refused, and the fd is closed. */
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        l = NULL;
        assert_int_equal(paf_socket_listener_new(f->event, s, NULL, &l), -EINVAL);
        assert_null(l);
        assert_int_equal(fcntl(s, F_GETFD), -1);
        paf_listener_free(NULL);
        assert_int_equal(paf_listener_get_fd(NULL), -EINVAL);
}

static void test_socket_listener_pauses_when_out_of_fds(void **state) {
        fixture *f = *state;
        if (getenv("PAF_TEST_VALGRIND"))
                skip(); /* valgrind keeps fds of its own under the limit */
        struct sockaddr_un un;
        socklen_t len;
        int fd = autobound_listener(&un, &len);
        paf_listener *l;
        assert_int_equal(paf_socket_listener_new(f->event, fd, NULL, &l), 0);
        accept_log a = {0};
        assert_int_equal(paf_listener_set_accept_handler(l, on_listener_accept, &a), 0);
        run_for(f->event, 10);
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(connect(c, (struct sockaddr *)&un, len), 0);

        /* No fd left: the lowest free one is at the limit. */
        struct rlimit old, low;
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
        int lowest = dup(0);
        assert_true(lowest >= 0);
        close(lowest);
        low = old;
        low.rlim_cur = (rlim_t)lowest;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

        /* The listener stops trying instead of spinning on a readable socket. */
        unsigned dispatched = 0;
        uint64_t end = now_ms() + 60;
        while (now_ms() < end) {
                int r = sd_event_run(f->event, 5 * 1000);
                assert_true(r >= 0);
                dispatched += r > 0;
        }
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
        assert_int_equal(a.n, 0);
        assert_true(dispatched <= 3);

        /* After the pause it accepts again. */
        end = now_ms() + 2000;
        while (a.n < 1 && now_ms() < end)
                assert_true(sd_event_run(f->event, 10 * 1000) >= 0);
        assert_int_equal(a.n, 1);
        close(c);
        close_and_wait(f->event, a.flows[0]);
        paf_listener_free(l);
}

typedef struct connect_out {
        paf_flow *flow;
        int error;
        bool done;
} connect_out;

static void on_socket_connect(paf_flow *flow, int error, void *userdata) {
        connect_out *o = userdata;
        assert_false(o->done);
        o->flow = flow;
        o->error = error;
        o->done = true;
}

static void test_socket_connect(void **state) {
        fixture *f = *state;
        struct sockaddr_un un;
        socklen_t len;
        int fd = autobound_listener(&un, &len);

        /* Unix connects finish at once, still reported from the loop. */
        connect_out o = {0};
        paf_socket_connect *c;
        assert_int_equal(paf_socket_connect_start(f->event, (struct sockaddr *)&un, len, "x",
                                                  on_socket_connect, &o, &c),
                         0);
        assert_false(o.done);
        assert_true(run_until(f->event, &o.done, 2000));
        assert_int_equal(o.error, 0);
        assert_non_null(o.flow);
        assert_string_equal(paf_flow_get_protocol(o.flow), "x");
        int s = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(s >= 0);
        close(s);
        close_and_wait(f->event, o.flow);

        /* Cancelled: never called, nothing left behind. */
        connect_out o2 = {0};
        assert_int_equal(paf_socket_connect_start(f->event, (struct sockaddr *)&un, len, NULL,
                                                  on_socket_connect, &o2, &c),
                         0);
        paf_socket_connect_cancel(c);
        run_for(f->event, 20);
        assert_false(o2.done);
        paf_socket_connect_cancel(NULL);
        close(fd);

        /* Refused: the error goes to the handler, from the loop. */
        connect_out o3 = {0};
        assert_int_equal(paf_socket_connect_start(f->event, (struct sockaddr *)&un, len, NULL,
                                                  on_socket_connect, &o3, NULL),
                         0);
        assert_false(o3.done);
        assert_true(run_until(f->event, &o3.done, 2000));
        assert_null(o3.flow);
        assert_int_equal(o3.error, -ECONNREFUSED);

        /* Over TCP the connect is really asynchronous. */
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(l, (struct sockaddr *)&in, sizeof(in)), 0);
        assert_int_equal(listen(l, 4), 0);
        socklen_t inlen = sizeof(in);
        assert_int_equal(getsockname(l, (struct sockaddr *)&in, &inlen), 0);
        connect_out o4 = {0};
        assert_int_equal(paf_socket_connect_start(f->event, (struct sockaddr *)&in, inlen, NULL,
                                                  on_socket_connect, &o4, NULL),
                         0);
        assert_true(run_until(f->event, &o4.done, 2000));
        assert_int_equal(o4.error, 0);
        assert_string_equal(paf_flow_get_protocol(o4.flow), "tcp");
        close_and_wait(f->event, o4.flow);
        close(l);

        assert_int_equal(paf_socket_connect_start(NULL, (struct sockaddr *)&in, inlen, NULL,
                                                  on_socket_connect, &o4, NULL),
                         -EINVAL);
}

/* ---- the generic queue, over an in-test implementation ---- */

typedef struct fake {
        paf_flow *flow;
        unsigned writes;    /* calls to write */
        unsigned in_flight; /* writes not finished */
        unsigned max_in_flight;
        bool sync; /* finish inside write */
        int sync_error;
        size_t bytes;
        unsigned read_starts, read_stops, shutdowns;
        bool closed;
        bool close_in_read_start; /* deliver from read_start: not allowed, see below */
        paf_flow *below;          /* a layer's transport, for layer_ops' queries */
} fake;

static int fake_write(paf_flow *flow, const struct iovec *iov, size_t n_iov) {
        fake *fk = paf_flow_get_impl(flow);
        assert_false(fk->closed);
        fk->writes++;
        fk->in_flight++;
        if (fk->in_flight > fk->max_in_flight)
                fk->max_in_flight = fk->in_flight;
        for (size_t i = 0; i < n_iov; i++)
                fk->bytes += iov[i].iov_len;
        if (fk->sync) {
                fk->in_flight--;
                paf_flow_write_done(flow, fk->sync_error);
        }
        return 0;
}

static int fake_read_start(paf_flow *flow) {
        ((fake *)paf_flow_get_impl(flow))->read_starts++;
        return 0;
}

static int fake_read_stop(paf_flow *flow) {
        ((fake *)paf_flow_get_impl(flow))->read_stops++;
        return 0;
}

static int fake_shutdown(paf_flow *flow) {
        fake *fk = paf_flow_get_impl(flow);
        /* Only with nothing in flight. */
        assert_int_equal(fk->in_flight, 0);
        fk->shutdowns++;
        return 0;
}

static void fake_close(paf_flow *flow) {
        fake *fk = paf_flow_get_impl(flow);
        assert_false(fk->closed);
        fk->closed = true;
}

static const paf_flow_ops fake_ops = {
        .struct_size = sizeof(paf_flow_ops),
        .read_start = fake_read_start,
        .read_stop = fake_read_stop,
        .write = fake_write,
        .shutdown = fake_shutdown,
        .close = fake_close,
};

/* The fake finishes its oldest write later, as a transport would. */
static void fake_finish(fake *fk, int error) {
        assert_true(fk->in_flight > 0);
        fk->in_flight--;
        paf_flow_write_done(fk->flow, error);
}

typedef struct seq {
        int errors[16];
        unsigned n;
} seq;

static void on_seq_write(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        seq *s = userdata;
        s->errors[s->n++] = error;
}

static void test_generic_one_write_in_flight(void **state) {
        fixture *f = *state;
        fake fk = {0};
        assert_int_equal(paf_flow_new(f->event, &fake_ops, &fk, "fake", "peer", "local", &fk.flow),
                         0);
        assert_ptr_equal(paf_flow_get_impl(fk.flow), &fk);
        assert_string_equal(paf_flow_get_peer(fk.flow), "peer");
        assert_string_equal(paf_flow_get_local(fk.flow), "local");
        assert_string_equal(paf_flow_get_protocol(fk.flow), "fake");

        seq s = {0};
        char buf[10] = {0};
        struct iovec v = {buf, 10};
        for (unsigned i = 0; i < 3; i++)
                assert_int_equal(paf_flow_write(fk.flow, &v, 1, on_seq_write, &s), 0);
        /* Only the first reached the implementation. */
        assert_int_equal(fk.writes, 1);
        assert_int_equal(paf_flow_get_write_queue_size(fk.flow), 30);

        /* Finishing one starts the next at once, but its callback waits.
         * The two that waited go as one write (joined: one sendmsg for
         * both on a socket), still one write in flight. */
        fake_finish(&fk, 0);
        assert_int_equal(fk.writes, 2);
        assert_int_equal(fk.bytes, 30);
        assert_int_equal(s.n, 0);
        assert_int_equal(paf_flow_get_write_queue_size(fk.flow), 30);
        run_for(f->event, 10);
        assert_int_equal(s.n, 1);
        assert_int_equal(paf_flow_get_write_queue_size(fk.flow), 20);

        fake_finish(&fk, 0);
        assert_int_equal(fk.writes, 2);
        assert_int_equal(fk.max_in_flight, 1);
        run_for(f->event, 10);
        assert_int_equal(s.n, 3);
        assert_int_equal(paf_flow_get_write_queue_size(fk.flow), 0);
        assert_int_equal(fk.bytes, 30);

        /* A shutdown waits for the write before it. */
        seq sh = {0};
        assert_int_equal(paf_flow_write(fk.flow, &v, 1, on_seq_write, &s), 0);
        assert_int_equal(paf_flow_shutdown(fk.flow, on_seq_write, &sh), 0);
        assert_int_equal(fk.shutdowns, 0);
        fake_finish(&fk, 0);
        assert_int_equal(fk.shutdowns, 1);
        run_for(f->event, 10);
        assert_int_equal(s.n, 4);
        assert_int_equal(sh.n, 1);
        assert_int_equal(sh.errors[0], 0);

        close_and_wait(f->event, fk.flow);
        assert_true(fk.closed);
}

static void test_generic_synchronous_done_is_async(void **state) {
        fixture *f = *state;
        fake fk = {.sync = true};
        assert_int_equal(paf_flow_new(f->event, &fake_ops, &fk, NULL, NULL, NULL, &fk.flow), 0);
        /* Defaults for missing descriptions. */
        assert_string_equal(paf_flow_get_peer(fk.flow), "?");

        seq s = {0};
        struct iovec v = {(void *)"abc", 3};
        for (unsigned i = 0; i < 5; i++) {
                assert_int_equal(paf_flow_write(fk.flow, &v, 1, on_seq_write, &s), 0);
                /* Taken by the implementation at once, reported later. */
                assert_int_equal(fk.writes, i + 1);
                assert_int_equal(s.n, 0);
        }
        assert_int_equal(fk.max_in_flight, 1);
        assert_int_equal(paf_flow_get_write_queue_size(fk.flow), 15);
        run_for(f->event, 10);
        assert_int_equal(s.n, 5);
        for (unsigned i = 0; i < 5; i++)
                assert_int_equal(s.errors[i], 0);

        /* An error is sticky: later writes fail without reaching the
         * implementation. */
        fk.sync_error = -EIO;
        assert_int_equal(paf_flow_write(fk.flow, &v, 1, on_seq_write, &s), 0);
        assert_int_equal(paf_flow_write(fk.flow, &v, 1, on_seq_write, &s), 0);
        assert_int_equal(fk.writes, 6);
        run_for(f->event, 10);
        assert_int_equal(s.n, 7);
        assert_int_equal(s.errors[5], -EIO);
        assert_int_equal(s.errors[6], -EIO);

        close_and_wait(f->event, fk.flow);
}

static void test_generic_close_cancels_in_flight(void **state) {
        fixture *f = *state;
        fake fk = {0};
        assert_int_equal(paf_flow_new(f->event, &fake_ops, &fk, "fake", NULL, NULL, &fk.flow), 0);
        cancel_log log = {0};
        struct iovec v = {(void *)"abc", 3};
        assert_int_equal(paf_flow_write(fk.flow, &v, 1, on_cancel_write, &log), 0);
        assert_int_equal(paf_flow_write(fk.flow, &v, 1, on_cancel_write, &log), 0);
        paf_flow_close(fk.flow, on_cancel_close, &log);
        /* The implementation is released at once, the callbacks wait. */
        assert_true(fk.closed);
        assert_int_equal(log.n, 0);
        assert_true(run_until(f->event, &log.closed, 1000));
        assert_int_equal(log.n, 2);
        assert_int_equal(log.errors[0], -ECANCELED);
        assert_int_equal(log.errors[1], -ECANCELED);
        assert_int_equal(log.closed_at, 2);
}

static void test_generic_deliver_only_while_reading(void **state) {
        fixture *f = *state;
        fake fk = {0};
        assert_int_equal(paf_flow_new(f->event, &fake_ops, &fk, "fake", NULL, NULL, &fk.flow), 0);
        probe r = {0};

        /* Not reading: dropped. */
        assert_false(paf_flow_is_reading(fk.flow));
        paf_flow_deliver(fk.flow, "zz", 2, 0);
        assert_int_equal(r.calls, 0);

        assert_int_equal(paf_flow_read_start(fk.flow, on_probe_read, &r), 0);
        assert_int_equal(fk.read_starts, 1);
        assert_true(paf_flow_is_reading(fk.flow));
        /* Starting again only changes the handler. */
        assert_int_equal(paf_flow_read_start(fk.flow, on_probe_read, &r), 0);
        assert_int_equal(fk.read_starts, 1);
        paf_flow_deliver(fk.flow, "ab", 2, 0);
        assert_int_equal(r.calls, 1);

        assert_int_equal(paf_flow_read_stop(fk.flow), 0);
        assert_int_equal(fk.read_stops, 1);
        paf_flow_deliver(fk.flow, "cd", 2, 0);
        assert_int_equal(r.calls, 1);

        assert_int_equal(paf_flow_read_start(fk.flow, on_probe_read, &r), 0);
        paf_flow_deliver(fk.flow, NULL, 0, -ECONNRESET);
        assert_int_equal(r.calls, 2);
        assert_int_equal(r.error, -ECONNRESET);
        /* Nothing after an error. */
        paf_flow_deliver(fk.flow, "ef", 2, 0);
        assert_int_equal(r.calls, 2);
        assert_int_equal(r.len, 2);

        /* Closing from the read handler while the implementation delivers:
         * it is closed from the loop, not under its feet. */
        fake fk2 = {0};
        assert_int_equal(paf_flow_new(f->event, &fake_ops, &fk2, "fake", NULL, NULL, &fk2.flow), 0);
        probe r2 = {.close_in_handler = true};
        assert_int_equal(paf_flow_read_start(fk2.flow, on_probe_read, &r2), 0);
        paf_flow_deliver(fk2.flow, "x", 1, 0);
        assert_false(fk2.closed);
        assert_false(r2.close_done);
        paf_flow_deliver(fk2.flow, "y", 1, 0); /* ignored: closing */
        assert_int_equal(r2.calls, 1);
        assert_true(run_until(f->event, &r2.close_done, 1000));
        assert_true(fk2.closed);

        close_and_wait(f->event, fk.flow);
        free(r.data);
        free(r2.data);
}

/* A consumer answering what a delivery brought: three answers, then
 * (on the second flow) one and a close. */
typedef struct answerer {
        fake *fk;
        seq *s;
        unsigned answers;
        bool close_after;
        unsigned writes_seen_in_handler;
} answerer;

static void on_answer_read(paf_flow *flow, const void *data, size_t len, int error,
                           void *userdata) {
        (void)data;
        answerer *a = userdata;
        if (error < 0 || len == 0)
                return;
        static char reply[10];
        struct iovec v = {reply, sizeof(reply)};
        for (unsigned i = 0; i < a->answers; i++)
                assert_int_equal(paf_flow_write(flow, &v, 1, on_seq_write, a->s), 0);
        a->writes_seen_in_handler = a->fk->writes;
        if (a->close_after)
                paf_flow_close(flow, NULL, NULL);
}

/* Writes made during one delivery reach the implementation together, as
 * one write, once the read handler returned; a close right after an
 * answer still hands the answer over first. */
static void test_generic_writes_in_a_delivery_join(void **state) {
        fixture *f = *state;
        fake fk = {.sync = true};
        seq s = {0};
        assert_int_equal(paf_flow_new(f->event, &fake_ops, &fk, "fake", NULL, NULL, &fk.flow), 0);
        answerer a = {.fk = &fk, .s = &s, .answers = 3};
        assert_int_equal(paf_flow_read_start(fk.flow, on_answer_read, &a), 0);
        paf_flow_deliver(fk.flow, "req", 3, 0);
        assert_int_equal(a.writes_seen_in_handler, 0);
        assert_int_equal(fk.writes, 1);
        assert_int_equal(fk.bytes, 30);
        /* Completed in order, right after the delivery. */
        assert_int_equal(s.n, 3);
        for (unsigned i = 0; i < 3; i++)
                assert_int_equal(s.errors[i], 0);
        /* Outside a delivery, a write goes at once. */
        char buf[5] = {0};
        struct iovec v = {buf, sizeof(buf)};
        assert_int_equal(paf_flow_write(fk.flow, &v, 1, on_seq_write, &s), 0);
        assert_int_equal(fk.writes, 2);
        close_and_wait(f->event, fk.flow);

        fake fk2 = {.sync = true};
        seq s2 = {0};
        assert_int_equal(paf_flow_new(f->event, &fake_ops, &fk2, "fake", NULL, NULL, &fk2.flow),
                         0);
        answerer a2 = {.fk = &fk2, .s = &s2, .answers = 1, .close_after = true};
        assert_int_equal(paf_flow_read_start(fk2.flow, on_answer_read, &a2), 0);
        paf_flow_deliver(fk2.flow, "bad", 3, 0);
        assert_int_equal(fk2.writes, 1);
        assert_int_equal(fk2.bytes, 10);
        run_for(f->event, 10);
        assert_true(fk2.closed);
        assert_int_equal(s2.n, 1);
        assert_int_equal(s2.errors[0], 0);
}

static void test_generic_new_checks(void **state) {
        fixture *f = *state;
        paf_flow *flow;
        static const paf_flow_ops no_write = {.struct_size = sizeof(paf_flow_ops)};
        static const paf_flow_ops too_small = {.struct_size = 4, .write = fake_write};
        assert_int_equal(paf_flow_new(f->event, &no_write, NULL, "x", NULL, NULL, &flow), -EINVAL);
        assert_int_equal(paf_flow_new(f->event, &too_small, NULL, "x", NULL, NULL, &flow), -EINVAL);
        assert_int_equal(paf_flow_new(NULL, &fake_ops, NULL, "x", NULL, NULL, &flow), -EINVAL);
        assert_int_equal(paf_flow_new(f->event, &fake_ops, NULL, "x", NULL, NULL, NULL), -EINVAL);

        /* An implementation with only write: queries and shutdown have defaults. */
        static const paf_flow_ops minimal = {
                .struct_size = offsetof(paf_flow_ops, close),
                .write = fake_write,
        };
        fake fk = {.sync = true};
        assert_int_equal(paf_flow_new(f->event, &minimal, &fk, "min", NULL, NULL, &fk.flow), 0);
        int fd;
        assert_int_equal(paf_flow_query(fk.flow, PAF_FLOW_QUERY_FD, &fd, sizeof(fd)), -EOPNOTSUPP);
        seq s = {0};
        assert_int_equal(paf_flow_shutdown(fk.flow, on_seq_write, &s), 0);
        run_for(f->event, 10);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.errors[0], -EOPNOTSUPP);
        close_and_wait(f->event, fk.flow);
        assert_false(fk.closed); /* no close member to call */
}

/* Progress: what a write timeout measures. Reported bytes count within a
 * write, clamped to its size; completion counts the rest (everything, for an
 * implementation that reports nothing); a failed write only what was
 * reported. */
static void test_generic_write_progress(void **state) {
        fixture *f = *state;
        fake fk = {0};
        assert_int_equal(paf_flow_new(f->event, &fake_ops, &fk, "fake", NULL, NULL, &fk.flow), 0);
        uint64_t bytes = 1, usec = 1;
        assert_int_equal(paf_flow_get_write_progress(fk.flow, &bytes, &usec), 0);
        assert_int_equal(bytes, 0);
        assert_int_equal(usec, 0);

        seq s = {0};
        char buf[100] = {0};
        struct iovec v = {buf, sizeof(buf)};
        assert_int_equal(paf_flow_write(fk.flow, &v, 1, on_seq_write, &s), 0);
        paf_flow_write_progress(fk.flow, 30);
        assert_int_equal(paf_flow_get_write_progress(fk.flow, &bytes, &usec), 0);
        assert_int_equal(bytes, 30);
        assert_true(usec > 0);
        uint64_t first = usec;

        /* Later (the loop's time moved): the time follows. */
        run_for(f->event, 10);
        paf_flow_write_progress(fk.flow, 500); /* more than the write: clamped */
        assert_int_equal(paf_flow_get_write_progress(fk.flow, &bytes, &usec), 0);
        assert_int_equal(bytes, 100);
        assert_true(usec > first);
        fake_finish(&fk, 0);
        assert_int_equal(paf_flow_get_write_progress(fk.flow, &bytes, NULL), 0);
        assert_int_equal(bytes, 100);

        /* Not reported: counted whole at completion, and the time moves. */
        run_for(f->event, 10);
        uint64_t before = usec;
        assert_int_equal(paf_flow_write(fk.flow, &v, 1, on_seq_write, &s), 0);
        assert_int_equal(paf_flow_get_write_progress(fk.flow, &bytes, &usec), 0);
        assert_int_equal(bytes, 100);
        assert_int_equal(usec, before);
        fake_finish(&fk, 0);
        assert_int_equal(paf_flow_get_write_progress(fk.flow, &bytes, &usec), 0);
        assert_int_equal(bytes, 200);
        assert_true(usec > before);

        /* Outside a write only the time moves. */
        run_for(f->event, 10);
        before = usec;
        paf_flow_write_progress(fk.flow, 7);
        assert_int_equal(paf_flow_get_write_progress(fk.flow, &bytes, &usec), 0);
        assert_int_equal(bytes, 200);
        assert_true(usec > before);

        /* A write that fails counts what was reported only. */
        assert_int_equal(paf_flow_write(fk.flow, &v, 1, on_seq_write, &s), 0);
        paf_flow_write_progress(fk.flow, 5);
        fake_finish(&fk, -EIO);
        assert_int_equal(paf_flow_get_write_progress(fk.flow, &bytes, NULL), 0);
        assert_int_equal(bytes, 205);
        run_for(f->event, 10);
        assert_int_equal(s.n, 3);
        assert_int_equal(s.errors[2], -EIO);

        assert_int_equal(paf_flow_get_write_progress(NULL, &bytes, &usec), -EINVAL);
        paf_flow_write_progress(NULL, 1); /* harmless */
        close_and_wait(f->event, fk.flow);
}

static int fake_layer_query(paf_flow *flow, int what, void *ret, size_t size) {
        fake *fk = paf_flow_get_impl(flow);
        return fk->below ? paf_flow_query(fk->below, what, ret, size) : -EOPNOTSUPP;
}

/* While a write waits for room, the peer reading from the kernel's buffer is
 * progress too: the wakeup for room may come much later (a unix socket wakes
 * its writer only once three quarters of its buffer drained). */
static void test_socket_progress_while_waiting(void **state) {
        fixture *f = *state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        int sndbuf = 64 * 1024;
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
        paf_flow *flow;
        assert_int_equal(paf_socket_flow_new(f->event, sv[0], "test", &flow), 0);
        size_t size = 1024 * 1024;
        uint8_t *data = calloc(1, size);
        assert_non_null(data);
        completion c = {0};
        struct iovec v = {data, size};
        assert_int_equal(paf_flow_write(flow, &v, 1, on_write, &c), 0);
        run_for(f->event, 10);
        uint64_t bytes0, usec0, bytes, usec;
        assert_int_equal(paf_flow_get_write_progress(flow, &bytes0, &usec0), 0);
        assert_true(bytes0 > 0 && bytes0 < size);

        /* Nothing read: asking again finds nothing new. */
        run_for(f->event, 10);
        assert_int_equal(paf_flow_get_write_progress(flow, &bytes, &usec), 0);
        assert_int_equal(bytes, bytes0);
        assert_int_equal(usec, usec0);

        /* A little more than a message of the kernel's (36 KiB at most)
         * read: no room for the writer yet, but the time moves. */
        uint8_t sink[48 * 1024];
        assert_int_equal(read(sv[1], sink, sizeof(sink)), (ssize_t)sizeof(sink));
        run_for(f->event, 10);
        assert_int_equal(paf_flow_get_write_progress(flow, &bytes, &usec), 0);
        assert_int_equal(bytes, bytes0);
        assert_true(usec > usec0);
        assert_false(c.done);

        close_and_wait(f->event, flow);
        assert_true(c.done);
        assert_int_equal(c.error, -ECANCELED);
        close(sv[1]);
        free(data);
}

/* A layer that forwards the queries it does not answer, like TLS. */
static const paf_flow_ops layer_ops = {
        .struct_size = sizeof(paf_flow_ops),
        .write = fake_write,
        .close = fake_close,
        .query = fake_layer_query,
};

/* The socket flow reports every partial send: a write to a slow reader
 * moves long before it completes. */
static void test_socket_write_progress(void **state) {
        fixture *f = *state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        int small = 4096;
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        paf_flow *flow;
        assert_int_equal(paf_socket_flow_new(f->event, sv[0], "test", &flow), 0);

        size_t size = 512 * 1024;
        uint8_t *data = malloc(size);
        assert_non_null(data);
        memset(data, 'p', size);
        completion c = {0};
        struct iovec v = {data, size};
        assert_int_equal(paf_flow_write(flow, &v, 1, on_write, &c), 0);
        run_for(f->event, 10);
        uint64_t bytes, usec;
        assert_int_equal(paf_flow_get_write_progress(flow, &bytes, &usec), 0);
        assert_false(c.done);
        assert_true(bytes > 0 && bytes < size);

        /* The peer reads a little: more progress, the write still going. */
        uint8_t *sink = malloc(size);
        assert_non_null(sink);
        size_t got = 0;
        uint64_t last = bytes, last_usec = usec;
        for (unsigned round = 0; round < 4; round++) {
                run_for(f->event, 5);
                ssize_t n = read(sv[1], sink + got, 16 * 1024);
                assert_true(n > 0);
                got += (size_t)n;
                run_for(f->event, 5);
                assert_int_equal(paf_flow_get_write_progress(flow, &bytes, &usec), 0);
                assert_true(bytes > last);
                assert_true(usec > last_usec);
                last = bytes;
                last_usec = usec;
        }
        assert_false(c.done);

        /* Then all of it: the completion, and the count is the write's size. */
        assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
        uint64_t end = now_ms() + 5000;
        while (!c.done && now_ms() < end) {
                ssize_t n = read(sv[1], sink + got, size - got);
                if (n > 0)
                        got += (size_t)n;
                assert_true(sd_event_run(f->event, 1000) >= 0);
        }
        assert_true(c.done);
        assert_int_equal(c.error, 0);
        assert_int_equal(paf_flow_get_write_progress(flow, &bytes, &usec), 0);
        assert_int_equal(bytes, size);

        /* A layer on it: its own writes have not moved (one big record in
         * progress), the time is the transport's. */
        fake fk = {.below = flow};
        assert_int_equal(paf_flow_new(f->event, &layer_ops, &fk, "layer", NULL, NULL, &fk.flow), 0);
        uint64_t layer_bytes = 1, layer_usec = 0, below = 0;
        assert_int_equal(paf_flow_get_write_progress(fk.flow, &layer_bytes, &layer_usec), 0);
        assert_int_equal(layer_bytes, 0);
        assert_int_equal(layer_usec, usec);
        assert_int_equal(
                paf_flow_query(fk.flow, PAF_FLOW_QUERY_WRITE_PROGRESS, &below, sizeof(below)), 0);
        assert_int_equal(below, usec);
        assert_int_equal(paf_flow_query(fk.flow, PAF_FLOW_QUERY_WRITE_PROGRESS, &below, 1),
                         -EINVAL);
        close_and_wait(f->event, fk.flow);
        close_and_wait(f->event, flow);
        close(sv[1]);
        free(data);
        free(sink);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_completion_never_synchronous, setup, teardown),
                cmocka_unit_test_setup_teardown(test_writes_complete_in_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_cancels_pending_writes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_peer_close_is_eof, setup, teardown),
                cmocka_unit_test_setup_teardown(test_shutdown_is_eof_and_half_open, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_reset_unix_unread_data, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reset_tcp_linger, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_to_gone_peer_is_epipe, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_stop_stops_delivery, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_inside_read_handler, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reentrant_write_and_close, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_without_handler_releases_at_once, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_queries, setup, teardown),
                cmocka_unit_test_setup_teardown(test_describe, setup, teardown),
                cmocka_unit_test(test_sockaddr_format),
                cmocka_unit_test_setup_teardown(test_socket_flow_new_checks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
                cmocka_unit_test_setup_teardown(test_socket_listener, setup, teardown),
                cmocka_unit_test_setup_teardown(test_socket_listener_pauses_when_out_of_fds, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_socket_connect, setup, teardown),
                cmocka_unit_test_setup_teardown(test_generic_one_write_in_flight, setup, teardown),
                cmocka_unit_test_setup_teardown(test_generic_writes_in_a_delivery_join, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_generic_synchronous_done_is_async, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_generic_close_cancels_in_flight, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_generic_deliver_only_while_reading, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_generic_new_checks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_generic_write_progress, setup, teardown),
                cmocka_unit_test_setup_teardown(test_socket_write_progress, setup, teardown),
                cmocka_unit_test_setup_teardown(test_socket_progress_while_waiting, setup,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
