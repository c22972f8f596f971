/* tests/core/test-event-loop.c — paf_event_run()/paf_event_loop(): socket flows and the loop's own sources in one epoll_wait, with sd_event_loop()'s semantics (exit code, timers, the iteration's time), and nothing left behind by a loop run that way. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>

#include "../common/paf-test.h"

static uint64_t mono_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- ping-pong between two socket flows, with a timer beside ---- */

#define ROUNDS 2000

typedef struct pingpong {
        sd_event *event;
        paf_flow *a, *b;
        unsigned rounds;
        unsigned timer_fired;
        unsigned closed;
        char byte;
} pingpong;

static void pp_on_written(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        (void)userdata;
        assert_int_equal(error, 0);
}

static void pp_send(paf_flow *flow, pingpong *p) {
        struct iovec iov = {&p->byte, 1};
        assert_int_equal(paf_flow_write(flow, &iov, 1, pp_on_written, p), 0);
}

static void pp_on_closed(paf_flow *flow, void *userdata) {
        (void)flow;
        pingpong *p = userdata;
        if (++p->closed == 2)
                sd_event_exit(p->event, 42);
}

/* b echoes what it reads; a counts the rounds and starts the next. */
static void pp_on_read_b(paf_flow *flow, const void *data, size_t len, int error,
                         void *userdata) {
        (void)data;
        if (error < 0 || len == 0)
                return;
        for (size_t i = 0; i < len; i++)
                pp_send(flow, userdata);
}

static void pp_on_read_a(paf_flow *flow, const void *data, size_t len, int error,
                         void *userdata) {
        (void)data;
        pingpong *p = userdata;
        if (error < 0 || len == 0)
                return;
        p->rounds += (unsigned)len;
        if (p->rounds >= ROUNDS && p->timer_fired) {
                /* Done: both go, and the last close ends the loop. */
                paf_flow_close(p->a, pp_on_closed, p);
                paf_flow_close(p->b, pp_on_closed, p);
        } else
                pp_send(flow, p);
}

static int pp_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        pingpong *p = userdata;
        p->timer_fired++;
        return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)usec;
        (void)userdata;
        return sd_event_exit(sd_event_source_get_event(s), -ETIMEDOUT);
}

static void test_loop_runs_flows_and_sources(void **state) {
        (void)state;
        int fds_before = count_fds();
        pingpong p = {.byte = 'x'};
        assert_int_equal(sd_event_new(&p.event), 0);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(paf_socket_flow_new(p.event, sv[0], NULL, &p.a), 0);
        assert_int_equal(paf_socket_flow_new(p.event, sv[1], NULL, &p.b), 0);
        assert_int_equal(paf_flow_read_start(p.a, pp_on_read_a, &p), 0);
        assert_int_equal(paf_flow_read_start(p.b, pp_on_read_b, &p), 0);

        /* A timer, through the loop's own fd: it fires while the sockets
         * keep the loop busy. */
        sd_event_source *timer, *deadline;
        assert_int_equal(sd_event_add_time_relative(p.event, &timer, CLOCK_MONOTONIC, 5 * 1000, 0,
                                                    pp_on_timer, &p),
                         0);
        assert_int_equal(sd_event_add_time_relative(p.event, &deadline, CLOCK_MONOTONIC,
                                                    5 * 1000 * 1000, 0, on_deadline, NULL),
                         0);
        pp_send(p.a, &p);
        int r = paf_event_loop(p.event);
        print_message("%u rounds, timer fired %u time(s), loop result %d\n", p.rounds,
                      p.timer_fired, r);
        /* sd_event_exit()'s code, as sd_event_loop() returns it. */
        assert_int_equal(r, 42);
        assert_true(p.rounds >= ROUNDS);
        assert_int_equal(p.timer_fired, 1);
        /* Finished: no more iterations. */
        assert_int_equal(paf_event_run(p.event, 0), -ESTALE);

        assert_int_equal(p.closed, 2);

        sd_event_source_unref(timer);
        sd_event_source_unref(deadline);
        sd_event_unref(p.event);
        /* The sockets, the loop and the poller's set are gone (valgrind:
         * and the poller with them). */
        assert_int_equal(count_fds(), fds_before);
}

/* ---- the time a handler sees is the wakeup's ---- */

typedef struct stamp {
        uint64_t written_usec; /* when the peer wrote, after the loop slept */
        uint64_t now_in_handler;
        bool got;
} stamp;

static void stamp_on_read(paf_flow *flow, const void *data, size_t len, int error,
                          void *userdata) {
        (void)data;
        stamp *s = userdata;
        if (error < 0 || len == 0 || s->got)
                return;
        assert_int_equal(sd_event_now(paf_flow_get_event(flow), CLOCK_MONOTONIC,
                                      &s->now_in_handler),
                         0);
        s->got = true;
}

typedef struct writer_thread {
        int fd;
        uint64_t *written_usec;
} writer_thread;

static void *write_later(void *arg) {
        writer_thread *w = arg;
        usleep(100 * 1000);
        *w->written_usec = mono_usec();
        assert_int_equal(write(w->fd, "x", 1), 1);
        return NULL;
}

static void test_handlers_see_the_wakeups_time(void **state) {
        (void)state;
        sd_event *e;
        assert_int_equal(sd_event_new(&e), 0);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        paf_flow *f;
        stamp s = {0};
        assert_int_equal(paf_socket_flow_new(e, sv[0], NULL, &f), 0);
        assert_int_equal(paf_flow_read_start(f, stamp_on_read, &s), 0);
        /* One iteration before, so that the loop has a time of its own
         * that a stale stamp would show. */
        assert_true(paf_event_run(e, 1000) >= 0);

        pthread_t t;
        writer_thread w = {sv[1], &s.written_usec};
        assert_int_equal(pthread_create(&t, NULL, write_later, &w), 0);
        uint64_t end = now_ms() + 3000;
        while (!s.got && now_ms() < end)
                assert_true(paf_event_run(e, 500 * 1000) >= 0);
        pthread_join(t, NULL);
        assert_true(s.got);
        print_message("written at %" PRIu64 ", the handler's now %" PRIu64 "\n", s.written_usec,
                      s.now_in_handler);
        /* Taken after the sleep: a timer the handler sets from it is
         * not short by the time the loop slept. */
        assert_true(s.now_in_handler >= s.written_usec);

        close(sv[1]);
        paf_flow_close(f, NULL, NULL);
        for (unsigned i = 0; i < 10 && paf_event_run(e, 10 * 1000) > 0; i++)
                ;
        sd_event_unref(e);
}

/* ---- more ready sockets than one batch, and a timeout ---- */

#define N_FLOWS 150

typedef struct counter {
        unsigned reads;
} counter;

static void count_on_read(paf_flow *flow, const void *data, size_t len, int error,
                          void *userdata) {
        (void)flow;
        (void)data;
        if (error >= 0 && len > 0)
                ((counter *)userdata)->reads++;
}

static void test_every_ready_socket_is_served(void **state) {
        (void)state;
        int fds_before = count_fds();
        sd_event *e;
        assert_int_equal(sd_event_new(&e), 0);
        paf_flow *flows[N_FLOWS];
        int peers[N_FLOWS];
        counter c = {0};
        for (unsigned i = 0; i < N_FLOWS; i++) {
                int sv[2];
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
                                 0);
                assert_int_equal(paf_socket_flow_new(e, sv[0], NULL, &flows[i]), 0);
                assert_int_equal(paf_flow_read_start(flows[i], count_on_read, &c), 0);
                peers[i] = sv[1];
        }
        /* Nothing to do: the timeout is honoured, and says nothing ran. */
        uint64_t t0 = now_ms();
        int r;
        while ((r = paf_event_run(e, 20 * 1000)) > 0 && now_ms() < t0 + 1000)
                ; /* the flows' first iteration may have work */
        assert_int_equal(r, 0);
        t0 = now_ms();
        assert_int_equal(paf_event_run(e, 30 * 1000), 0);
        assert_true(now_ms() - t0 >= 25);

        for (unsigned i = 0; i < N_FLOWS; i++)
                assert_int_equal(write(peers[i], "y", 1), 1);
        uint64_t end = now_ms() + 3000;
        unsigned iterations = 0;
        while (c.reads < N_FLOWS && now_ms() < end) {
                assert_true(paf_event_run(e, 100 * 1000) >= 0);
                iterations++;
        }
        print_message("%u of %d flows read, in %u iteration(s)\n", c.reads, N_FLOWS, iterations);
        assert_int_equal(c.reads, N_FLOWS);

        for (unsigned i = 0; i < N_FLOWS; i++) {
                close(peers[i]);
                paf_flow_close(flows[i], NULL, NULL);
        }
        for (unsigned i = 0; i < 50 && paf_event_run(e, 10 * 1000) > 0; i++)
                ;
        sd_event_unref(e);
        assert_int_equal(count_fds(), fds_before);
}

/* ---- busy sockets leave the loop's own sources their turn ---- */

#define N_PAIRS 100

typedef struct busy {
        sd_event *event;
        sd_event_source *defer;
        unsigned reads;
        unsigned armed_at, ran_at; /* reads when the defer was armed, when it ran */
        bool armed, ran;
        uint64_t timer_due, timer_ran;
} busy;

static void busy_on_written(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        (void)error;
        (void)userdata;
}

/* Every flow sends back what it reads: each pair keeps a byte in flight
 * for ever, so that every wakeup finds sockets ready. */
static void busy_on_read(paf_flow *flow, const void *data, size_t len, int error,
                         void *userdata) {
        busy *b = userdata;
        if (error < 0 || len == 0)
                return;
        b->reads++;
        static const char byte = 'z';
        struct iovec iov = {(void *)&byte, 1};
        (void)data;
        assert_int_equal(paf_flow_write(flow, &iov, 1, busy_on_written, b), 0);
        if (b->reads == 1000 && !b->armed) {
                /* A handler's deferred work: the loop's, not the core's. */
                assert_int_equal(sd_event_source_set_enabled(b->defer, SD_EVENT_ONESHOT), 0);
                b->armed = true;
                b->armed_at = b->reads;
        }
}

static int busy_on_defer(sd_event_source *s, void *userdata) {
        (void)s;
        busy *b = userdata;
        b->ran = true;
        b->ran_at = b->reads;
        return 0;
}

static int busy_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        busy *b = userdata;
        b->timer_ran = mono_usec();
        return 0;
}

static void test_busy_sockets_leave_the_loop_its_turn(void **state) {
        (void)state;
        int fds_before = count_fds();
        busy b = {0};
        assert_int_equal(sd_event_new(&b.event), 0);
        assert_int_equal(sd_event_add_defer(b.event, &b.defer, busy_on_defer, &b), 0);
        assert_int_equal(sd_event_source_set_enabled(b.defer, SD_EVENT_OFF), 0);
        paf_flow *flows[2 * N_PAIRS];
        for (unsigned i = 0; i < N_PAIRS; i++) {
                int sv[2];
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
                                 0);
                for (unsigned k = 0; k < 2; k++) {
                        assert_int_equal(paf_socket_flow_new(b.event, sv[k], NULL, &flows[2 * i + k]),
                                         0);
                        assert_int_equal(paf_flow_read_start(flows[2 * i + k], busy_on_read, &b), 0);
                }
                assert_int_equal(write(sv[1], "z", 1), 1);
        }
        sd_event_source *timer;
        b.timer_due = mono_usec() + 20 * 1000;
        assert_int_equal(sd_event_add_time(b.event, &timer, CLOCK_MONOTONIC, b.timer_due, 0,
                                           busy_on_timer, &b),
                         0);
        uint64_t end = now_ms() + 3000;
        while ((!b.ran || !b.timer_ran) && now_ms() < end)
                assert_true(paf_event_run(b.event, 100 * 1000) >= 0);
        print_message("%u reads; the defer armed at read %u ran at read %u; the timer ran %" PRIu64
                      " us late\n",
                      b.reads, b.armed_at, b.ran_at, b.timer_ran ? b.timer_ran - b.timer_due : 0);
        /* Both ran, while every wakeup still had sockets to serve... */
        assert_true(b.ran);
        assert_true(b.timer_ran >= b.timer_due);
        /* ...after a few batches of sockets at most: a handful of rounds
         * of up to 64 flows each (the poller's batch), not the whole set
         * again and again. */
        assert_true(b.ran_at - b.armed_at <= 8 * 64);
        /* (Loose: valgrind and a busy machine slow every batch.) */
        assert_true(b.timer_ran - b.timer_due < 1000 * 1000);

        for (unsigned i = 0; i < 2 * N_PAIRS; i++)
                paf_flow_close(flows[i], NULL, NULL);
        for (unsigned i = 0; i < 50 && paf_event_run(b.event, 10 * 1000) > 0; i++)
                ;
        sd_event_source_unref(timer);
        sd_event_source_unref(b.defer);
        sd_event_unref(b.event);
        assert_int_equal(count_fds(), fds_before);
}

/* ---- a loop that paf_event_run() never ran keeps sd_event_run() ---- */

static void test_sd_event_run_still_works_unturned(void **state) {
        (void)state;
        sd_event *e;
        assert_int_equal(sd_event_new(&e), 0);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        paf_flow *f;
        counter c = {0};
        assert_int_equal(paf_socket_flow_new(e, sv[0], NULL, &f), 0);
        assert_int_equal(paf_flow_read_start(f, count_on_read, &c), 0);
        assert_int_equal(write(sv[1], "z", 1), 1);
        uint64_t end = now_ms() + 2000;
        while (!c.reads && now_ms() < end)
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
        assert_int_equal(c.reads, 1);
        close(sv[1]);
        close_and_wait(e, f);
        sd_event_unref(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_loop_runs_flows_and_sources),
                cmocka_unit_test(test_handlers_see_the_wakeups_time),
                cmocka_unit_test(test_every_ready_socket_is_served),
                cmocka_unit_test(test_busy_sockets_leave_the_loop_its_turn),
                cmocka_unit_test(test_sd_event_run_still_works_unturned),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
