/* tests/plugins/test-tcp.c — tcp.so through the registry: listen, connect, transfer, errors. */
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>

#include "../common/paf-test.h"

/* ---- helpers ---- */

static bool have_ipv6(void) {
        int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return false;
        struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
        bool ok = bind(fd, (struct sockaddr *)&in6, sizeof(in6)) == 0;
        close(fd);
        return ok;
}

/* Whether the file at path (a canonical path) is mapped into this process. */
static bool is_mapped(const char *path) {
        FILE *f = fopen("/proc/self/maps", "re");
        assert_non_null(f);
        char line[PATH_MAX + 128];
        size_t n = strlen(path);
        bool found = false;
        while (!found && fgets(line, sizeof(line), f)) {
                size_t len = strcspn(line, "\n");
                found = len >= n && memcmp(line + len - n, path, n) == 0 &&
                        (len == n || line[len - n - 1] == ' ');
        }
        fclose(f);
        return found;
}

typedef struct env {
        sd_event *event;
        paf_registry *reg;
        int fds_before;
        int threads_before;
        paf_listener *listener;
        paf_flow *accepted[32];
        size_t n_accepted;
} env;

static void on_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        env *v = userdata;
        assert_true(v->n_accepted < 32);
        v->accepted[v->n_accepted++] = flow;
}

static int setup(void **state) {
        env *v = calloc(1, sizeof(*v));
        assert_non_null(v);
        v->fds_before = count_fds();
        v->threads_before = count_threads();
        assert_int_equal(sd_event_new(&v->event), 0);
        assert_int_equal(paf_registry_new(&v->reg), 0);
        const char *dir = getenv("PAF_TEST_PLUGINDIR");
        assert_non_null(dir);
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/tcp.so", dir);
        paf_error err = PAF_ERROR_NULL;
        int r = paf_registry_load_plugin(v->reg, path, &err);
        if (r < 0)
                fail_msg("loading %s: %s", path, err.message);
        assert_non_null(paf_registry_find_protocol(v->reg, "tcp"));
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        for (size_t i = 0; i < v->n_accepted; i++)
                if (v->accepted[i])
                        close_and_wait(v->event, v->accepted[i]);
        paf_listener_free(v->listener);
        run_for(v->event, 20);
        paf_registry_unref(v->reg);
        sd_event_unref(v->event);
        /* A lookup of a cancelled connect ends on its own thread, which
         * holds what it needs (an eventfd, tcp.so) until it is done. */
        assert_true(wait_threads(v->threads_before, 5000));
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

static void listen_on(env *v, const char *address) {
        paf_error err = PAF_ERROR_NULL;
        int r = paf_registry_listen_address(v->reg, address, v->event, on_accept, v, &v->listener,
                                            &err);
        if (r < 0)
                fail_msg("listen on %s: %s", address, err.message);
        assert_string_equal(paf_listener_get_protocol(v->listener), "tcp");
}

/* The port the listener got (the text ends in ":PORT"). */
static int listener_port(paf_listener *l) {
        const char *a = paf_listener_get_address(l);
        const char *colon = strrchr(a, ':');
        assert_non_null(colon);
        int port = atoi(colon + 1);
        assert_true(port > 0 && port < 65536);
        return port;
}

typedef struct connect_result {
        bool done;
        paf_flow *flow;
        char *report;
        int error;    /* of the tcp attempt */
        char *reason; /* of the tcp attempt */
        char *endpoint;
} connect_result;

static void on_connect(paf_flow *flow, const paf_attempt *attempts, size_t n, void *userdata) {
        connect_result *c = userdata;
        assert_false(c->done);
        c->done = true;
        c->flow = flow;
        c->report = paf_attempts_format(attempts, n);
        for (size_t i = 0; i < n; i++)
                if (strcmp(attempts[i].protocol, "tcp") == 0) {
                        c->error = attempts[i].error;
                        c->reason = attempts[i].reason ? strdup(attempts[i].reason) : NULL;
                        c->endpoint = attempts[i].endpoint ? strdup(attempts[i].endpoint) : NULL;
                }
}

static void connect_result_done(connect_result *c) {
        free(c->report);
        free(c->reason);
        free(c->endpoint);
}

static paf_ctx *tcp_ctx(const char *host, int port) {
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tcp.host", host), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "tcp.port", port), 0);
        return ctx;
}

/* Connect through the registry and wait for the outcome. */
static void connect_to(env *v, const char *host, int port, connect_result *c) {
        paf_ctx *ctx = tcp_ctx(host, port);
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, c, NULL), 0);
        paf_ctx_unref(ctx);
        assert_false(c->done); /* never from inside the call */
        assert_true(run_until(v->event, &c->done, 10000));
}

/* Wait until the listener handed over n flows. */
static void wait_accepted(env *v, size_t n) {
        uint64_t end = now_ms() + 5000;
        while (v->n_accepted < n && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_int_equal(v->n_accepted, n);
}

/* Client says hello, server answers: both directions over one connection. */
static void round_trip(env *v, const char *host, int port) {
        size_t before = v->n_accepted;
        connect_result c = {0};
        connect_to(v, host, port, &c);
        if (!c.flow)
                fail_msg("connect to %s port %d failed: %s", host, port, c.report);
        wait_accepted(v, before + 1);
        paf_flow *server = v->accepted[before];

        assert_string_equal(paf_flow_get_protocol(c.flow), "tcp");
        assert_string_equal(paf_flow_get_protocol(server), "tcp");
        assert_string_equal(paf_flow_get_peer(c.flow), paf_flow_get_local(server));
        assert_string_equal(paf_flow_get_local(c.flow), paf_flow_get_peer(server));

        reader rs = {0}, rc = {0};
        assert_int_equal(paf_flow_read_start(server, on_read, &rs), 0);
        assert_int_equal(paf_flow_read_start(c.flow, on_read, &rc), 0);
        write_and_wait(v->event, c.flow, "hello");
        read_exactly(v->event, &rs, 5);
        assert_memory_equal(rs.data, "hello", 5);
        write_and_wait(v->event, server, "world!");
        read_exactly(v->event, &rc, 6);
        assert_memory_equal(rc.data, "world!", 6);

        close_and_wait(v->event, c.flow);
        assert_true(run_until(v->event, &rs.ended, 2000));
        assert_true(rs.eof);
        close_and_wait(v->event, server);
        v->accepted[before] = NULL;
        free(rs.data);
        free(rc.data);
        connect_result_done(&c);
}

/* ---- tests ---- */

static void test_round_trip_ipv4(void **state) {
        env *v = *state;
        listen_on(v, "127.0.0.1:0");
        assert_memory_equal(paf_listener_get_address(v->listener), "127.0.0.1:", 10);
        int port = listener_port(v->listener);
        assert_true(paf_listener_get_fd(v->listener) >= 0);
        round_trip(v, "127.0.0.1", port);
}

static void test_round_trip_ipv6(void **state) {
        env *v = *state;
        if (!have_ipv6())
                skip();
        listen_on(v, "[::1]:0");
        assert_memory_equal(paf_listener_get_address(v->listener), "[::1]:", 6);
        round_trip(v, "::1", listener_port(v->listener));
        /* Brackets, as a URL would give them, work too. */
        round_trip(v, "[::1]", listener_port(v->listener));
}

static void test_listen_port_only_is_dual_stack(void **state) {
        env *v = *state;
        listen_on(v, "0");
        const char *a = paf_listener_get_address(v->listener);
        int port = listener_port(v->listener);
        if (have_ipv6()) {
                assert_memory_equal(a, "[::]:", 5);
                round_trip(v, "::1", port);
        } else
                assert_memory_equal(a, "0.0.0.0:", 8);
        round_trip(v, "127.0.0.1", port);
        round_trip(v, "localhost", port);
}

/* ---- a large transfer with backpressure ---- */

static void test_big_transfer_with_backpressure(void **state) {
        env *v = *state;
        listen_on(v, "127.0.0.1:0");
        connect_result c = {0};
        connect_to(v, "127.0.0.1", listener_port(v->listener), &c);
        assert_non_null(c.flow);
        wait_accepted(v, 1);
        /* Client to server, then server to client. */
        big_transfer(v->event, c.flow, v->accepted[0]);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);

        connect_result c2 = {0};
        connect_to(v, "127.0.0.1", listener_port(v->listener), &c2);
        assert_non_null(c2.flow);
        wait_accepted(v, 2);
        big_transfer(v->event, v->accepted[1], c2.flow);
        close_and_wait(v->event, c2.flow);
        connect_result_done(&c2);
}

static void test_peer_close_and_reset(void **state) {
        env *v = *state;
        listen_on(v, "127.0.0.1:0");
        int port = listener_port(v->listener);

        /* An orderly close is EOF. */
        connect_result c = {0};
        connect_to(v, "127.0.0.1", port, &c);
        assert_non_null(c.flow);
        wait_accepted(v, 1);
        reader r = {0};
        assert_int_equal(paf_flow_read_start(c.flow, on_read, &r), 0);
        close_and_wait(v->event, v->accepted[0]);
        v->accepted[0] = NULL;
        assert_true(run_until(v->event, &r.ended, 2000));
        assert_true(r.eof);
        assert_int_equal(r.error, 0);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);

        /* An abortive close (SO_LINGER 0) is -ECONNRESET. */
        connect_result c2 = {0};
        connect_to(v, "127.0.0.1", port, &c2);
        assert_non_null(c2.flow);
        wait_accepted(v, 2);
        reader r2 = {0};
        assert_int_equal(paf_flow_read_start(c2.flow, on_read, &r2), 0);
        int fd = -1;
        assert_int_equal(paf_flow_query(v->accepted[1], PAF_FLOW_QUERY_FD, &fd, sizeof(fd)), 0);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        close_and_wait(v->event, v->accepted[1]);
        v->accepted[1] = NULL;
        assert_true(run_until(v->event, &r2.ended, 2000));
        assert_int_equal(r2.error, -ECONNRESET);
        close_and_wait(v->event, c2.flow);
        connect_result_done(&c2);
}

/* A port on which nothing listens, kept so (bound, never listening). */
static int closed_port(int *ret_fd, bool dual) {
        int fd;
        struct sockaddr_storage ss = {0};
        socklen_t len;
        if (dual) {
                fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
                int zero = 0;
                assert_int_equal(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)), 0);
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
                in6->sin6_family = AF_INET6;
                in6->sin6_addr = in6addr_any;
                len = sizeof(*in6);
        } else {
                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct sockaddr_in *in = (struct sockaddr_in *)&ss;
                in->sin_family = AF_INET;
                in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                len = sizeof(*in);
        }
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
        len = sizeof(ss);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
        *ret_fd = fd;
        return ntohs(((struct sockaddr_in *)&ss)->sin_port); /* same offset in both */
}

static void test_connect_refused(void **state) {
        env *v = *state;
        int hold;
        int port = closed_port(&hold, false);
        connect_result c = {0};
        connect_to(v, "127.0.0.1", port, &c);
        assert_null(c.flow);
        assert_int_equal(c.error, -ECONNREFUSED);
        char endpoint[64];
        snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%d", port);
        assert_string_equal(c.endpoint, endpoint);
        char line[128];
        snprintf(line, sizeof(line), "tcp %s: failed: Connection refused", endpoint);
        if (!strstr(c.report, line))
                fail_msg("report lacks \"%s\":\n%s", line, c.report);
        connect_result_done(&c);
        close(hold);
}

static void test_connect_refused_names_every_address(void **state) {
        env *v = *state;
        if (!have_ipv6() || !in_test_namespace())
                skip(); /* needs tests/hosts for dualstack.paf.test */
        int hold;
        int port = closed_port(&hold, true);
        connect_result c = {0};
        connect_to(v, "dualstack.paf.test", port, &c);
        assert_null(c.flow);
        assert_int_equal(c.error, -ECONNREFUSED);
        char v6[64], v4[64];
        snprintf(v6, sizeof(v6), "[::1]:%d: Connection refused", port);
        snprintf(v4, sizeof(v4), "127.0.0.1:%d: Connection refused", port);
        if (!strstr(c.reason, v6) || !strstr(c.reason, v4))
                fail_msg("reason does not name both addresses: %s", c.reason);
        char endpoint[64];
        snprintf(endpoint, sizeof(endpoint), "dualstack.paf.test:%d", port);
        assert_string_equal(c.endpoint, endpoint);
        connect_result_done(&c);
        close(hold);
}

static void test_dualstack_tries_every_address(void **state) {
        env *v = *state;
        if (!have_ipv6() || !in_test_namespace())
                skip();
        /* Whichever family the server is on, the name's other address
         * fails first or is never needed: the connect succeeds. */
        listen_on(v, "127.0.0.1:0");
        round_trip(v, "dualstack.paf.test", listener_port(v->listener));
        v->listener = paf_listener_free(v->listener);

        listen_on(v, "[::1]:0");
        round_trip(v, "dualstack.paf.test", listener_port(v->listener));
}

typedef struct ticker {
        unsigned ticks;
        sd_event_source *source;
} ticker;

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        ticker *t = userdata;
        t->ticks++;
        assert_int_equal(sd_event_source_set_time(s, usec + 10 * 1000), 0);
        return 0;
}

static void ticker_start(sd_event *e, ticker *t) {
        uint64_t now;
        assert_true(sd_event_now(e, CLOCK_MONOTONIC, &now) >= 0);
        assert_int_equal(
                sd_event_add_time(e, &t->source, CLOCK_MONOTONIC, now + 10 * 1000, 0, on_tick, t),
                0);
        assert_int_equal(sd_event_source_set_enabled(t->source, SD_EVENT_ON), 0);
}

static void test_unresolvable_name_does_not_block(void **state) {
        env *v = *state;
        hosts_gate gate = {0};
        bool gated = hosts_gate_close(&gate);

        ticker t = {0};
        ticker_start(v->event, &t);
        connect_result c = {0};
        paf_ctx *ctx = tcp_ctx("no-such-host.paf.test", 80);
        uint64_t start = now_ms();
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, &c, NULL), 0);
        paf_ctx_unref(ctx);
        /* The call returns at once, before the lookup is over. */
        assert_true(now_ms() - start < 1000);
        assert_false(c.done);

        if (gated) {
                /* The resolver is stuck on /etc/hosts; the loop is not. */
                run_for(v->event, 200);
                assert_false(c.done);
                unsigned ticks = t.ticks;
                /* Let the lookup read an empty hosts file: no such name. */
                uint64_t end = now_ms() + 5000;
                while (!c.done && now_ms() < end) {
                        hosts_gate_flush(&gate);
                        assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
                }
                hosts_gate_open(&gate);
                assert_true(ticks >= 5);
        } else {
                print_message("not in run-test.sh's namespaces: the lookup cannot be held\n");
                assert_true(run_until(v->event, &c.done, 10000));
        }

        assert_true(c.done);
        assert_null(c.flow);
        assert_int_equal(c.error, -EHOSTUNREACH);
        assert_non_null(c.reason);
        if (!strstr(c.reason, "no-such-host.paf.test") || !strstr(c.reason, "cannot resolve"))
                fail_msg("reason does not name the host: %s", c.reason);
        assert_non_null(c.endpoint);
        assert_string_equal(c.endpoint, "no-such-host.paf.test:80");
        sd_event_source_disable_unref(t.source);
        connect_result_done(&c);
}

static void on_connect_never(paf_flow *flow, const paf_attempt *attempts, size_t n,
                             void *userdata) {
        (void)flow;
        (void)attempts;
        (void)n;
        (void)userdata;
        fail_msg("handler of a cancelled connect was called");
}

static void test_cancel_while_resolving(void **state) {
        env *v = *state;
        listen_on(v, "127.0.0.1:0");
        int port = listener_port(v->listener);
        hosts_gate gate = {0};
        bool gated = hosts_gate_close(&gate);

        paf_ctx *ctx = tcp_ctx("localhost", port);
        paf_connect *conn;
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect_never, NULL, &conn),
                         0);
        paf_ctx_unref(ctx);
        run_for(v->event, gated ? 50 : 0); /* the lookup starts (and hangs when gated) */
        paf_connect_cancel(conn);
        hosts_gate_open(&gate);
        /* The worker finishes on its own and nothing is reported. */
        run_for(v->event, 100);

        /* Cancelling at once, and right after the lookup: no handler either. */
        for (unsigned i = 0; i < 12; i++) {
                ctx = tcp_ctx(i % 2 ? "localhost" : "127.0.0.1", port);
                assert_int_equal(
                        paf_registry_connect(v->reg, ctx, v->event, on_connect_never, NULL, &conn),
                        0);
                paf_ctx_unref(ctx);
                for (unsigned k = 0; k < i % 4; k++)
                        assert_true(sd_event_run(v->event, 1000) >= 0);
                paf_connect_cancel(conn);
        }
        run_for(v->event, 100);
        /* Connections that got through were accepted; teardown closes them. */
}

/*
 * A lookup outlives its connect and the registry. Its thread is libpaf's
 * resolver (paf_resolve_start), which runs none of tcp.so's code, so tcp.so
 * goes with the registry at once; the lookup comes back later into libpaf
 * alone, and goes with everything it held. (Before the resolver, tcp.so's
 * own thread had to keep tcp.so mapped until it returned.)
 */
static void test_free_registry_while_resolving(void **state) {
        (void)state;
        hosts_gate gate = {0};
        if (!hosts_gate_close(&gate)) {
                print_message(
                        "not in run-test.sh's namespaces as root: the lookup cannot be held\n");
                skip();
        }
        const char *dir = getenv("PAF_TEST_PLUGINDIR");
        assert_non_null(dir);
        char path[PATH_MAX], real[PATH_MAX];
        snprintf(path, sizeof(path), "%s/tcp.so", dir);
        assert_non_null(realpath(path, real));
        assert_false(is_mapped(real));
        int fds = count_fds(), threads = count_threads();

        sd_event *event;
        paf_registry *reg;
        assert_int_equal(sd_event_new(&event), 0);
        assert_int_equal(paf_registry_new(&reg), 0);
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_load_plugin(reg, path, &err) < 0)
                fail_msg("loading %s: %s", path, err.message);
        assert_true(is_mapped(real));

        paf_ctx *ctx = tcp_ctx("localhost", 9);
        paf_connect *conn;
        assert_int_equal(paf_registry_connect(reg, ctx, event, on_connect_never, NULL, &conn), 0);
        paf_ctx_unref(ctx);
        /* The lookup starts, and hangs in open("/etc/hosts"). */
        uint64_t end = now_ms() + 2000;
        while (count_threads() == threads && now_ms() < end)
                assert_true(sd_event_run(event, 1000) >= 0);
        assert_int_equal(count_threads(), threads + 1);
        run_for(event, 20);

        /* Given up (a timeout, say), and the program lets go of paf. */
        paf_connect_cancel(conn);
        run_for(event, 10);
        paf_registry_unref(reg);
        sd_event_unref(event);
        /* The lookup is not over, but it needs nothing of tcp.so. */
        assert_false(is_mapped(real));
        assert_int_equal(count_threads(), threads + 1);

        /* The lookup goes on, in libpaf's code, and ends. */
        end = now_ms() + 5000;
        while (!hosts_gate_flush(&gate) && now_ms() < end)
                usleep(1000);
        hosts_gate_open(&gate);
        if (!wait_threads(threads, 10000))
                fail_msg("the resolver thread is still running 10 s after its lookup was let go");
        /* Gone with its thread: the eventfd; tcp.so's descriptor went before. */
        assert_false(is_mapped(real));
        assert_int_equal(count_fds(), fds);
}

static void test_url_rules(void **state) {
        env *v = *state;
        listen_on(v, "127.0.0.1:0");
        int port = listener_port(v->listener);

        /* http://127.0.0.1:PORT reaches the server through the plugin's rules. */
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.scheme", "http"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.host", "127.0.0.1"), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "url.port", port), 0);
        connect_result c = {0};
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, &c, NULL), 0);
        assert_true(run_until(v->event, &c.done, 5000));
        assert_non_null(c.flow);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
        paf_ctx_unref(ctx);

        /* Default ports by scheme, and none for another transport's scheme. */
        static const struct {
                const char *scheme;
                const char *endpoint; /* NULL: tcp is no candidate */
        } cases[] = {
                {"http", "example.test:80"},
                {"https", "example.test:443"},
                {"http+unix", NULL},
                {"gopher", NULL}, /* no default port */
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                assert_int_equal(paf_ctx_new(&ctx), 0);
                assert_int_equal(paf_ctx_set_string(ctx, "url.scheme", cases[i].scheme), 0);
                assert_int_equal(paf_ctx_set_string(ctx, "url.host", "example.test"), 0);
                paf_resolution *res;
                assert_int_equal(paf_registry_resolve(v->reg, ctx, &res), 0);
                size_t n;
                const paf_attempt *a = paf_resolution_get_attempts(res, &n);
                assert_int_equal(n, 1);
                assert_string_equal(a[0].protocol, "tcp");
                if (cases[i].endpoint) {
                        assert_true(a[0].candidate);
                        assert_string_equal(a[0].endpoint, cases[i].endpoint);
                } else
                        assert_false(a[0].candidate);
                paf_resolution_free(res);
                paf_ctx_unref(ctx);
        }
}

static void test_listen_errors(void **state) {
        env *v = *state;
        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;

        /* Names are not resolved for listening. */
        assert_true(paf_registry_listen_address(v->reg, "localhost:8080", v->event, on_accept, v,
                                                &l, &err) < 0);
        assert_null(l);
        assert_non_null(strstr(err.message, "localhost:8080"));
        assert_non_null(strstr(err.message, "numeric"));

        err = PAF_ERROR_NULL;
        assert_int_equal(
                paf_registry_listen_address(v->reg, "nonsense", v->event, on_accept, v, &l, &err),
                -EAFNOSUPPORT);
        assert_string_equal(err.message, "\"nonsense\": no protocol understands this address");

        /* Another protocol's address is left to it, a bad port is ours. */
        err = PAF_ERROR_NULL;
        assert_int_equal(
                paf_registry_listen_address(v->reg, "loop:x", v->event, on_accept, v, &l, &err),
                -EAFNOSUPPORT);
        err = PAF_ERROR_NULL;
        assert_true(paf_registry_listen_address(v->reg, "127.0.0.1:x", v->event, on_accept, v, &l,
                                                &err) < 0);
        assert_non_null(strstr(err.message, "invalid port"));

        err = PAF_ERROR_NULL;
        assert_true(paf_registry_listen_address(v->reg, "70000", v->event, on_accept, v, &l, &err) <
                    0);
        assert_non_null(strstr(err.message, "70000"));

        /* The same address twice. */
        listen_on(v, "127.0.0.1:0");
        char again[64];
        snprintf(again, sizeof(again), "127.0.0.1:%d", listener_port(v->listener));
        err = PAF_ERROR_NULL;
        assert_int_equal(
                paf_registry_listen_address(v->reg, again, v->event, on_accept, v, &l, &err),
                -EADDRINUSE);
        assert_non_null(strstr(err.message, again));
        assert_non_null(strstr(err.message, "in use"));

        /* By context: the endpoint keys, or an explanation. */
        paf_ctx *ctx = tcp_ctx("127.0.0.1", 0);
        assert_int_equal(paf_registry_listen(v->reg, ctx, v->event, on_accept, v, &l, &err), 0);
        assert_memory_equal(paf_listener_get_address(l), "127.0.0.1:", 10);
        round_trip(v, "127.0.0.1", listener_port(l));
        paf_listener_free(l);
        paf_ctx_unref(ctx);

        assert_int_equal(paf_ctx_new(&ctx), 0);
        err = PAF_ERROR_NULL;
        assert_true(paf_registry_listen(v->reg, ctx, v->event, on_accept, v, &l, &err) < 0);
        assert_non_null(strstr(err.message, "tcp"));
        paf_ctx_unref(ctx);
}

static void test_listen_fd(void **state) {
        env *v = *state;
        /* A listening socket made elsewhere (socket activation). */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
        assert_int_equal(listen(fd, 8), 0);
        paf_error err = PAF_ERROR_NULL;
        int r = paf_registry_listen_fd(v->reg, fd, v->event, on_accept, v, &v->listener, &err);
        if (r < 0)
                fail_msg("listen_fd: %s", err.message);
        assert_string_equal(paf_listener_get_protocol(v->listener), "tcp");
        assert_int_equal(paf_listener_get_fd(v->listener), fd);
        round_trip(v, "127.0.0.1", listener_port(v->listener));

        /* Stopped, it accepts nothing; started again, it does. */
        assert_int_equal(paf_listener_stop(v->listener), 0);
        connect_result c = {0};
        paf_ctx *ctx = tcp_ctx("127.0.0.1", listener_port(v->listener));
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, &c, NULL), 0);
        paf_ctx_unref(ctx);
        assert_true(run_until(v->event, &c.done, 2000));
        assert_non_null(c.flow); /* the kernel completes it in the backlog */
        run_for(v->event, 50);
        assert_int_equal(v->n_accepted, 1);
        assert_int_equal(paf_listener_start(v->listener), 0);
        wait_accepted(v, 2);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);

        /* A datagram socket is refused clearly, and closed. */
        paf_listener *l = NULL;
        int dgram = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        err = PAF_ERROR_NULL;
        assert_true(paf_registry_listen_fd(v->reg, dgram, v->event, on_accept, v, &l, &err) < 0);
        assert_null(l);
        char expect[64];
        snprintf(expect, sizeof(expect), "fd %d: not a listening stream socket", dgram);
        if (!strstr(err.message, expect))
                fail_msg("unexpected message: %s", err.message);
        assert_int_equal(fcntl(dgram, F_GETFD), -1);

        /* A stream socket that does not listen, and no socket at all. */
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        err = PAF_ERROR_NULL;
        assert_true(paf_registry_listen_fd(v->reg, s, v->event, on_accept, v, &l, &err) < 0);
        assert_non_null(strstr(err.message, "not a listening stream socket"));
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        err = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_listen_fd(v->reg, p[0], v->event, on_accept, v, &l, &err),
                         -ENOTSOCK);
        assert_non_null(strstr(err.message, "not a socket"));
        close(p[1]);
}

static void on_accept_free(paf_listener *l, paf_flow *flow, void *userdata) {
        env *v = userdata;
        on_accept(l, flow, userdata);
        /* Freeing the listener from its own handler is allowed. */
        assert_ptr_equal(l, v->listener);
        v->listener = paf_listener_free(l);
}

static void test_free_listener_in_handler(void **state) {
        env *v = *state;
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_listen_address(v->reg, "127.0.0.1:0", v->event,
                                                     on_accept_free, v, &v->listener, &err),
                         0);
        int port = listener_port(v->listener);
        /* Several connections waiting in the backlog at once. */
        connect_result c[3] = {0};
        for (int i = 0; i < 3; i++) {
                paf_ctx *ctx = tcp_ctx("127.0.0.1", port);
                assert_int_equal(
                        paf_registry_connect(v->reg, ctx, v->event, on_connect, &c[i], NULL), 0);
                paf_ctx_unref(ctx);
        }
        for (int i = 0; i < 3; i++)
                assert_true(run_until(v->event, &c[i].done, 2000));
        run_for(v->event, 50);
        assert_null(v->listener);
        assert_int_equal(v->n_accepted, 1);
        for (int i = 0; i < 3; i++) {
                if (c[i].flow)
                        close_and_wait(v->event, c[i].flow);
                connect_result_done(&c[i]);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_trip_ipv4, setup, teardown),
                cmocka_unit_test_setup_teardown(test_round_trip_ipv6, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listen_port_only_is_dual_stack, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_big_transfer_with_backpressure, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_peer_close_and_reset, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connect_refused_names_every_address, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_dualstack_tries_every_address, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_unresolvable_name_does_not_block, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_cancel_while_resolving, setup, teardown),
                cmocka_unit_test(test_free_registry_while_resolving),
                cmocka_unit_test_setup_teardown(test_url_rules, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listen_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listen_fd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_listener_in_handler, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
