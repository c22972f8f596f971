/* tests/core/test-loop-fairness.c — a flow closed from inside its own delivery, with input still waiting, leaves the event loop free: the close completes and the loop's other sources run. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>

#include "../common/paf-test.h"

/* More than the socket flow reads in one go (64 KiB), so that input is
 * still waiting when the consumer closes. */
#define BACKLOG (200 * 1024)

typedef struct closer {
        paf_flow *flow;
        unsigned deliveries, closes;
        bool closed;
} closer;

static void on_closed(paf_flow *flow, void *userdata) {
        (void)flow;
        closer *c = userdata;
        c->closes++;
        c->closed = true;
}

static void on_read_close(paf_flow *flow, const void *data, size_t len, int error,
                          void *userdata) {
        (void)data;
        (void)len;
        (void)error;
        closer *c = userdata;
        c->deliveries++;
        /* A server that refuses what it read: closed from in here, where the
         * implementation is still on the stack. */
        paf_flow_close(flow, on_closed, c);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        *(bool *)userdata = true;
        return 0;
}

/* Fill the peer's side of a socket pair with n bytes (non-blocking). */
static void fill(int fd, size_t n) {
        static uint8_t junk[16384];
        memset(junk, 'x', sizeof(junk));
        size_t done = 0;
        while (done < n) {
                size_t k = n - done < sizeof(junk) ? n - done : sizeof(junk);
                ssize_t w = write(fd, junk, k);
                if (w < 0) {
                        assert_int_equal(errno, EAGAIN);
                        break;
                }
                done += (size_t)w;
        }
        assert_true(done > 64 * 1024);
}

/* Flows made in one iteration (one accept batch, say), each closed from
 * inside its first delivery while more input waits. */
#define N_FLOWS 64

static void close_inside_delivery(bool with_eof) {
        int fds_before = count_fds();
        sd_event *e;
        assert_int_equal(sd_event_new(&e), 0);

        closer c[N_FLOWS] = {0};
        int peers[N_FLOWS];
        for (unsigned i = 0; i < N_FLOWS; i++) {
                int sv[2];
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
                                 0);
                int big = BACKLOG;
                (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
                fill(sv[1], BACKLOG);
                if (with_eof)
                        assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
                peers[i] = sv[1];
                assert_int_equal(paf_socket_flow_new(e, sv[0], NULL, &c[i].flow), 0);
                assert_int_equal(paf_flow_read_start(c[i].flow, on_read_close, &c[i]), 0);
        }

        /* A source made after the flows: sd-event runs the sources of one
         * priority in the order they became pending, so resumes that arm
         * themselves again without progress would starve it forever. */
        bool timer_fired = false;
        sd_event_source *timer;
        assert_int_equal(sd_event_add_time_relative(e, &timer, CLOCK_MONOTONIC, 20 * 1000, 0,
                                                    on_timer, &timer_fired),
                         0);

        unsigned iterations = 0, closed = 0;
        uint64_t end = now_ms() + 2000;
        while ((closed < N_FLOWS || !timer_fired) && iterations < 100000 && now_ms() < end) {
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
                iterations++;
                closed = 0;
                for (unsigned i = 0; i < N_FLOWS; i++)
                        closed += c[i].closed;
        }
        print_message("%u of %d flows closed, timer fired %d, after %u loop iterations\n", closed,
                      N_FLOWS, timer_fired, iterations);
        assert_int_equal(closed, N_FLOWS);
        assert_true(timer_fired);
        for (unsigned i = 0; i < N_FLOWS; i++) {
                assert_int_equal(c[i].deliveries, 1);
                assert_int_equal(c[i].closes, 1);
        }
        /* A few per flow at most: spinning sources would run thousands. */
        assert_true(iterations < 10 * N_FLOWS);

        sd_event_source_unref(timer);
        for (unsigned i = 0; i < N_FLOWS; i++)
                close(peers[i]);
        run_for(e, 10);
        sd_event_unref(e);
        assert_int_equal(count_fds(), fds_before);
}

static void test_close_inside_delivery(void **state) {
        (void)state;
        close_inside_delivery(false);
}

static void test_close_inside_delivery_before_eof(void **state) {
        (void)state;
        close_inside_delivery(true);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_close_inside_delivery),
                cmocka_unit_test(test_close_inside_delivery_before_eof),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
