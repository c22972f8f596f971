/* tests/core/test-resolver.c — paf_resolve_start(): numeric and /etc/hosts names, errors, cancel.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>

#include "../common/paf-test.h"

/* What a handler saw: the addresses as "FAMILY PORT ADDR" lines. */
typedef struct result {
        bool done;
        unsigned calls;
        int error;
        char reason[256];
        char text[1024];
        size_t n;
        bool cancel_inside; /* cancel the handle from inside the handler */
} result;

static void on_resolved(paf_resolve *q, const struct addrinfo *list, int error, const char *reason,
                        void *userdata) {
        result *res = userdata;
        res->calls++;
        res->done = true;
        res->error = error;
        if (error < 0) {
                assert_null(list);
                assert_non_null(reason);
                snprintf(res->reason, sizeof(res->reason), "%s", reason);
        } else {
                assert_non_null(list);
                assert_null(reason);
        }
        for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
                char addr[INET6_ADDRSTRLEN] = "?";
                unsigned port = 0;
                if (ai->ai_family == AF_INET) {
                        const struct sockaddr_in *in = (const void *)ai->ai_addr;
                        inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
                        port = ntohs(in->sin_port);
                } else if (ai->ai_family == AF_INET6) {
                        const struct sockaddr_in6 *in6 = (const void *)ai->ai_addr;
                        inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
                        port = ntohs(in6->sin6_port);
                }
                size_t len = strlen(res->text);
                snprintf(res->text + len, sizeof(res->text) - len, "%s %u %s %s\n",
                         ai->ai_family == AF_INET ? "inet" : "inet6", port, addr,
                         ai->ai_socktype == SOCK_STREAM ? "stream" : "other");
                res->n++;
        }
        if (res->cancel_inside)
                paf_resolve_cancel(q); /* a no-op: the handle goes after the call */
}

static void on_never(paf_resolve *q, const struct addrinfo *list, int error, const char *reason,
                     void *userdata) {
        (void)q;
        (void)list;
        (void)error;
        (void)reason;
        (void)userdata;
        fail_msg("handler of a cancelled or refused lookup was called");
}

typedef struct env {
        sd_event *event;
        int fds_before, threads_before;
} env;

static int setup(void **state) {
        env *v = calloc(1, sizeof(*v));
        assert_non_null(v);
        v->fds_before = count_fds();
        v->threads_before = count_threads();
        assert_int_equal(sd_event_new(&v->event), 0);
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        run_for(v->event, 10);
        sd_event_unref(v->event);
        /* Every lookup's thread and eventfd are gone. */
        if (!wait_threads(v->threads_before, 10000))
                fail_msg("a resolver thread is still running");
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

/* Start a lookup, check it did not answer from inside the call, wait. */
static void resolve(env *v, const char *host, const char *service, const struct addrinfo *hints,
                    result *res) {
        assert_int_equal(paf_resolve_start(v->event, host, service, hints, on_resolved, res, NULL),
                         0);
        assert_false(res->done);
        assert_true(run_until(v->event, &res->done, 10000));
        run_for(v->event, 5);
        assert_int_equal(res->calls, 1);
}

static void test_numeric(void **state) {
        env *v = *state;
        int threads = count_threads();

        result a = {0};
        resolve(v, "127.0.0.1", "8080", NULL, &a);
        assert_int_equal(a.error, 0);
        /* NULL hints: SOCK_STREAM only, not one entry per socket type. */
        assert_string_equal(a.text, "inet 8080 127.0.0.1 stream\n");

        result b = {0};
        resolve(v, "::1", "443", NULL, &b);
        assert_int_equal(b.error, 0);
        assert_string_equal(b.text, "inet6 443 ::1 stream\n");

        /* The any address, for a listener. */
        result c = {0};
        struct addrinfo passive = {
                .ai_flags = AI_PASSIVE, .ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
        resolve(v, NULL, "80", &passive, &c);
        assert_int_equal(c.error, 0);
        assert_string_equal(c.text, "inet 80 0.0.0.0 stream\n");

        /* Numeric: answered without a thread. */
        assert_int_equal(count_threads(), threads);

        /* A family the address is not of: no address, in words. */
        result d = {0};
        struct addrinfo v6 = {.ai_family = AF_INET6, .ai_socktype = SOCK_STREAM};
        resolve(v, "127.0.0.1", "80", &v6, &d);
        assert_int_equal(d.error, -EHOSTUNREACH);
        assert_true(d.reason[0] != '\0');

        /* AI_NUMERICHOST refuses a name without looking it up. */
        result e = {0};
        struct addrinfo numeric = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM};
        resolve(v, "localhost", "80", &numeric, &e);
        assert_int_equal(e.error, -EHOSTUNREACH);
        assert_int_equal(count_threads(), threads);
}

static void test_hosts_file(void **state) {
        env *v = *state;
        if (!in_test_namespace()) {
                print_message("not in run-test.sh's namespace: /etc/hosts is not ours\n");
                skip();
        }
        result a = {0};
        resolve(v, "v4only.paf.test", "80", NULL, &a);
        assert_int_equal(a.error, 0);
        assert_string_equal(a.text, "inet 80 127.0.0.1 stream\n");

        result b = {0};
        resolve(v, "v6only.paf.test", "8443", NULL, &b);
        assert_int_equal(b.error, 0);
        assert_string_equal(b.text, "inet6 8443 ::1 stream\n");

        /* Both families, each once, in the resolver's order. */
        result c = {0};
        resolve(v, "dualstack.paf.test", "80", NULL, &c);
        assert_int_equal(c.error, 0);
        assert_int_equal(c.n, 2);
        assert_non_null(strstr(c.text, "inet 80 127.0.0.1 stream\n"));
        assert_non_null(strstr(c.text, "inet6 80 ::1 stream\n"));

        /* hints.ai_family picks one. */
        result d = {0};
        struct addrinfo v6 = {.ai_family = AF_INET6, .ai_socktype = SOCK_STREAM};
        resolve(v, "dualstack.paf.test", "80", &v6, &d);
        assert_int_equal(d.error, 0);
        assert_string_equal(d.text, "inet6 80 ::1 stream\n");

        /* A name of the wrong family only, and one nobody knows. */
        result e = {0};
        resolve(v, "v4only.paf.test", "80", &v6, &e);
        assert_int_equal(e.error, -EHOSTUNREACH);
        assert_true(e.reason[0] != '\0');

        result f = {0};
        resolve(v, "no-such-host.paf.test", "80", NULL, &f);
        assert_int_equal(f.error, -EHOSTUNREACH);
        assert_true(f.reason[0] != '\0');
        assert_null(strstr(f.reason, "no-such-host")); /* the caller names the host */

        /* A service by name, read from /etc/services on the thread. */
        if (access("/etc/services", R_OK) == 0) {
                result g = {0};
                resolve(v, "v4only.paf.test", "http", NULL, &g);
                assert_int_equal(g.error, 0);
                assert_string_equal(g.text, "inet 80 127.0.0.1 stream\n");
        }
}

static void test_bad_arguments(void **state) {
        env *v = *state;
        paf_resolve *q = (paf_resolve *)0x1;
        assert_int_equal(paf_resolve_start(NULL, "localhost", "80", NULL, on_never, NULL, &q),
                         -EINVAL);
        assert_int_equal(paf_resolve_start(v->event, "localhost", "80", NULL, NULL, NULL, &q),
                         -EINVAL);
        assert_int_equal(paf_resolve_start(v->event, NULL, NULL, NULL, on_never, NULL, &q),
                         -EINVAL);
        /* Hints getaddrinfo refuses are the caller's error, not the name's. */
        struct addrinfo bad_family = {.ai_family = 12345};
        assert_int_equal(
                paf_resolve_start(v->event, "127.0.0.1", "80", &bad_family, on_never, NULL, &q),
                -EINVAL);
        struct addrinfo bad_flags = {.ai_flags = 0x40000000};
        assert_int_equal(
                paf_resolve_start(v->event, "127.0.0.1", "80", &bad_flags, on_never, NULL, &q),
                -EINVAL);
        /* A failed call leaves *ret alone and never calls the handler. */
        assert_ptr_equal(q, (paf_resolve *)0x1);
        run_for(v->event, 20);
        paf_resolve_cancel(NULL);
}

/* Cancelled before the loop ran, and from inside the handler. */
static void test_cancel_at_once_and_inside(void **state) {
        env *v = *state;
        for (unsigned i = 0; i < 8; i++) {
                paf_resolve *q = NULL;
                const char *host = i % 2 ? "127.0.0.1" : "localhost";
                assert_int_equal(paf_resolve_start(v->event, host, "80", NULL, on_never, NULL, &q),
                                 0);
                assert_non_null(q);
                paf_resolve_cancel(q);
        }
        run_for(v->event, 50);

        /* Cancelled when the thread has answered and the loop has not
         * looked yet. */
        int threads = count_threads();
        paf_resolve *q = NULL;
        assert_int_equal(paf_resolve_start(v->event, "localhost", "80", NULL, on_never, NULL, &q),
                         0);
        if (!wait_threads(threads, 5000))
                fail_msg("a lookup of localhost took more than 5 s");
        paf_resolve_cancel(q);
        run_for(v->event, 20);

        result a = {.cancel_inside = true};
        resolve(v, "127.0.0.1", "80", NULL, &a);
        assert_int_equal(a.error, 0);
        result b = {.cancel_inside = true};
        resolve(v, "localhost", "80", NULL, &b);
}

typedef struct ticker {
        sd_event_source *source;
        unsigned ticks;
} ticker;

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        ticker *t = userdata;
        t->ticks++;
        assert_int_equal(sd_event_source_set_time(s, usec + 10 * 1000), 0);
        return 0;
}

/* A lookup that hangs leaves the loop running, and can be cancelled. */
static void test_hanging_lookup(void **state) {
        env *v = *state;
        hosts_gate gate = {0};
        if (!hosts_gate_close(&gate)) {
                print_message("not in run-test.sh's namespaces as root: a lookup cannot be held\n");
                skip();
        }
        int threads = count_threads();
        ticker t = {0};
        uint64_t now;
        assert_true(sd_event_now(v->event, CLOCK_MONOTONIC, &now) >= 0);
        assert_int_equal(sd_event_add_time(v->event, &t.source, CLOCK_MONOTONIC, now + 10 * 1000, 0,
                                           on_tick, &t),
                         0);
        assert_int_equal(sd_event_source_set_enabled(t.source, SD_EVENT_ON), 0);

        /* One is cancelled while it hangs, one is let through. */
        paf_resolve *q = NULL;
        assert_int_equal(paf_resolve_start(v->event, "localhost", "80", NULL, on_never, NULL, &q),
                         0);
        result res = {0};
        assert_int_equal(paf_resolve_start(v->event, "no-such-host.paf.test", "80", NULL,
                                           on_resolved, &res, NULL),
                         0);
        run_for(v->event, 200);
        assert_false(res.done);
        assert_int_equal(count_threads(), threads + 2);
        assert_true(t.ticks >= 5); /* the loop ran all along */

        paf_resolve_cancel(q);
        run_for(v->event, 20);
        /* Still inside getaddrinfo: its thread goes on, unheard. */
        assert_int_equal(count_threads(), threads + 2);

        /* An empty hosts file: the second learns there is no such name. */
        uint64_t end = now_ms() + 5000;
        while (!res.done && now_ms() < end) {
                hosts_gate_flush(&gate);
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        }
        hosts_gate_open(&gate);
        assert_true(res.done);
        assert_int_equal(res.error, -EHOSTUNREACH);
        run_for(v->event, 50);
        sd_event_source_disable_unref(t.source);
        /* teardown: both threads gone, with their eventfds. */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_numeric, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hosts_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel_at_once_and_inside, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hanging_lookup, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
