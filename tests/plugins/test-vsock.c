/* tests/plugins/test-vsock.c — vsock.so through the registry: addresses, URL rules, loopback. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
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

#include <linux/vm_sockets.h>

#include <cmocka.h>

#include <paf.h>

#include "../common/paf-test.h"

/* ---- helpers ---- */

typedef struct env {
        sd_event *event;
        paf_registry *reg;
        int fds_before;
        paf_listener *listener;
        paf_flow *accepted[4];
        size_t n_accepted;
} env;

static void on_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        env *v = userdata;
        assert_true(v->n_accepted < 4);
        v->accepted[v->n_accepted++] = flow;
}

static int setup(void **state) {
        env *v = calloc(1, sizeof(*v));
        assert_non_null(v);
        v->fds_before = count_fds();
        assert_int_equal(sd_event_new(&v->event), 0);
        assert_int_equal(paf_registry_new(&v->reg), 0);
        const char *dir = getenv("PAF_TEST_PLUGINDIR");
        assert_non_null(dir);
        char plugin[PATH_MAX];
        snprintf(plugin, sizeof(plugin), "%s/vsock.so", dir);
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_load_plugin(v->reg, plugin, &err) < 0)
                fail_msg("loading %s: %s", plugin, err.message);
        assert_non_null(paf_registry_find_protocol(v->reg, "vsock"));
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
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

static int listen_on(env *v, const char *address, paf_listener **ret, paf_error *err) {
        return paf_registry_listen_address(v->reg, address, v->event, on_accept, v, ret, err);
}

/* Whether this machine can create AF_VSOCK sockets; the reason if not. */
static bool vsock_available(char *reason, size_t size) {
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                snprintf(reason, size, "AF_VSOCK sockets cannot be created: %s", strerror(errno));
                return false;
        }
        close(fd);
        return true;
}

#define SKIP_WITHOUT_VSOCK()                                                                       \
        do {                                                                                       \
                char reason_[160];                                                                 \
                if (!vsock_available(reason_, sizeof(reason_))) {                                  \
                        print_message("skipped: %s\n", reason_);                                   \
                        skip();                                                                    \
                }                                                                                  \
        } while (0)

/* A high port, different on every run: several runs may share a machine. */
static unsigned random_port(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return 40000 + (unsigned)((ts.tv_nsec ^ getpid() * 7919) % 20000);
}

/* Listen on "vsock::PORT" at a free port; fills v->listener and returns it. */
static unsigned listen_any_port(env *v) {
        for (int tries = 0; tries < 20; tries++) {
                unsigned port = random_port() + (unsigned)tries;
                char address[32];
                snprintf(address, sizeof(address), "vsock::%u", port);
                paf_error err = PAF_ERROR_NULL;
                int r = listen_on(v, address, &v->listener, &err);
                if (r == -EADDRINUSE)
                        continue;
                if (r < 0)
                        fail_msg("listen on %s: %s", address, err.message);
                return port;
        }
        fail_msg("no free vsock port in 20 tries");
        return 0;
}

typedef struct connect_result {
        bool done;
        paf_flow *flow;
        char *report;
} connect_result;

static void on_connect(paf_flow *flow, const paf_attempt *attempts, size_t n, void *userdata) {
        connect_result *c = userdata;
        assert_false(c->done);
        c->done = true;
        c->flow = flow;
        c->report = paf_attempts_format(attempts, n);
}

/* Connect the way a client would: from an http+vsock URL's parts. */
static void connect_url(env *v, const char *host, int64_t port, connect_result *c) {
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.scheme", "http+vsock"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.host", host), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "url.port", port), 0);
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, c, NULL), 0);
        paf_ctx_unref(ctx);
        assert_false(c->done);
        /* The kernel gives up on an unanswered vsock connect after 2 s. */
        assert_true(run_until(v->event, &c->done, 10000));
}

/*
 * Whether a vsock connection to this machine (CID 1, VMADDR_CID_LOCAL)
 * completes: it needs the vsock_loopback transport. Without one the kernel
 * neither accepts nor refuses, it waits; so bound the wait to about 1 s.
 */
static bool loopback_works(char *reason, size_t size) {
        int lfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0);
        struct sockaddr_vm sa = {
                .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = VMADDR_PORT_ANY};
        socklen_t len = sizeof(sa);
        if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0 ||
            getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
                snprintf(reason, size, "cannot listen on vsock: %s", strerror(errno));
                close(lfd);
                return false;
        }
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(fd >= 0);
        struct sockaddr_vm to = {
                .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_LOCAL, .svm_port = sa.svm_port};
        int err = 0;
        if (connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0) {
                err = errno;
                if (err == EINPROGRESS) {
                        struct pollfd p = {.fd = fd, .events = POLLOUT};
                        int n = poll(&p, 1, 1000);
                        socklen_t elen = sizeof(err);
                        if (n == 0)
                                err = ETIMEDOUT;
                        else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
                                err = errno;
                }
        }
        close(fd);
        close(lfd);
        if (err != 0)
                snprintf(reason, size,
                         "vsock loopback (CID 1) does not work here: connect to vsock:1:%u: %s",
                         sa.svm_port, err == ETIMEDOUT ? "no answer within 1 s" : strerror(err));
        return err == 0;
}

/* ---- tests ---- */

/* Every malformed address is refused before any socket is made, and the
 * message names the address and the part that is wrong. */
static void test_address_errors(void **state) {
        env *v = *state;
        static const struct {
                const char *address;
                int code;
                const char *message;
        } cases[] = {
                {"vsock:x:80", -EINVAL, "\"vsock:x:80\": invalid CID \"x\""},
                {"vsock:2:", -EINVAL, "\"vsock:2:\": missing port"},
                {"vsock:2", -EINVAL, "\"vsock:2\": missing port"},
                {"vsock:", -EINVAL, "\"vsock:\": missing port"},
                {"vsock::", -EINVAL, "\"vsock::\": missing port"},
                {"vsock:2:http", -EINVAL, "\"vsock:2:http\": invalid port \"http\""},
                {"vsock:-1:80", -EINVAL, "\"vsock:-1:80\": invalid CID \"-1\""},
                {"vsock: 2:80", -EINVAL, "\"vsock: 2:80\": invalid CID \" 2\""},
                {"vsock:0x2:80", -EINVAL, "\"vsock:0x2:80\": invalid CID \"0x2\""},
                {"vsock:2:+80", -EINVAL, "\"vsock:2:+80\": invalid port \"+80\""},
                {"vsock:2:80:1", -EINVAL, "\"vsock:2:80:1\": invalid port \"80:1\""},
                {"vsock:4294967296:80", -ERANGE,
                 "\"vsock:4294967296:80\": CID 4294967296 out of range (0 to 4294967295)"},
                {"vsock:2:4294967296", -ERANGE,
                 "\"vsock:2:4294967296\": port 4294967296 out of range (0 to 4294967295)"},
                {"vsock::99999999999999999999", -ERANGE,
                 "\"vsock::99999999999999999999\": port 99999999999999999999 out of range (0 "
                 "to 4294967295)"},
        };
        int fds = count_fds();
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                paf_error err = PAF_ERROR_NULL;
                paf_listener *l = NULL;
                int r = listen_on(v, cases[i].address, &l, &err);
                if (r != cases[i].code || strcmp(err.message, cases[i].message) != 0)
                        fail_msg("%s: got %d \"%s\", want %d \"%s\"", cases[i].address, r,
                                 err.message, cases[i].code, cases[i].message);
                assert_null(l);
        }
        assert_int_equal(count_fds(), fds);
}

/* What does not start with "vsock:" is left to the other protocols. */
static void test_not_ours(void **state) {
        env *v = *state;
        static const char *const others[] = {"8080",  "127.0.0.1:80", "/run/x.sock", "@name",
                                             "vsock", "VSOCK:1:2",    "vsockx:1:2",  "vsock1:2"};
        for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
                paf_error err = PAF_ERROR_NULL;
                paf_listener *l = NULL;
                assert_int_equal(listen_on(v, others[i], &l, &err), -EAFNOSUPPORT);
                char want[128];
                snprintf(want, sizeof(want), "\"%s\": no protocol understands this address",
                         others[i]);
                assert_string_equal(err.message, want);
        }
}

/* The vsock attempt of a resolution: its endpoint (or NULL) and whether
 * it is a candidate. */
static bool resolve_vsock(env *v, paf_ctx *ctx, char *endpoint, size_t size) {
        paf_resolution *res;
        assert_int_equal(paf_registry_resolve(v->reg, ctx, &res), 0);
        size_t n;
        const paf_attempt *a = paf_resolution_get_attempts(res, &n);
        bool candidate = false;
        endpoint[0] = '\0';
        for (size_t i = 0; i < n; i++)
                if (strcmp(a[i].protocol, "vsock") == 0) {
                        candidate = a[i].candidate;
                        snprintf(endpoint, size, "%s", a[i].endpoint ? a[i].endpoint : "");
                }
        paf_resolution_free(res);
        return candidate;
}

static paf_ctx *url_ctx(const char *scheme, const char *host, int64_t port) {
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.scheme", scheme), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.host", host), 0);
        if (port >= 0)
                assert_int_equal(paf_ctx_set_int(ctx, "url.port", port), 0);
        return ctx;
}

static void test_url_rules(void **state) {
        env *v = *state;
        char endpoint[64];
        static const struct {
                const char *scheme, *host;
                int64_t port;
                bool candidate;
                const char *endpoint;
        } cases[] = {
                {"http+vsock", "3", 80, true, "vsock:3:80"},
                {"https+vsock", "2", 8443, true, "vsock:2:8443"},
                {"http+vsock", "4294967295", 1, true, "vsock::1"},
                /* No port in the URL: the scheme's own. */
                {"http+vsock", "3", -1, true, "vsock:3:80"},
                {"https+vsock", "3", -1, true, "vsock:3:443"},
                /* Not vsock URLs, or a host that is no CID. */
                {"http", "3", 80, false, ""},
                {"http+unix", "3", 80, false, ""},
                {"http+vsock", "host.example", 80, false, ""},
                {"http+vsock", "4294967296", 80, false, ""},
                {"http+vsock", "3", 4294967296, false, ""},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                paf_ctx *ctx = url_ctx(cases[i].scheme, cases[i].host, cases[i].port);
                bool candidate = resolve_vsock(v, ctx, endpoint, sizeof(endpoint));
                paf_ctx_unref(ctx);
                if (candidate != cases[i].candidate || strcmp(endpoint, cases[i].endpoint) != 0)
                        fail_msg("%s://%s:%lld: got candidate=%d \"%s\", want %d \"%s\"",
                                 cases[i].scheme, cases[i].host, (long long)cases[i].port,
                                 candidate, endpoint, cases[i].candidate, cases[i].endpoint);
        }

        /* The endpoint keys set directly work without any URL. */
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "vsock.cid", 7), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "vsock.port", 1234), 0);
        assert_true(resolve_vsock(v, ctx, endpoint, sizeof(endpoint)));
        assert_string_equal(endpoint, "vsock:7:1234");
        paf_ctx_unref(ctx);
}

/* "vsock::PORT" listens on every CID; a second listener finds the port taken. */
static void test_listen_any(void **state) {
        SKIP_WITHOUT_VSOCK();
        env *v = *state;
        unsigned port = listen_any_port(v);
        assert_string_equal(paf_listener_get_protocol(v->listener), "vsock");

        int fd = paf_listener_get_fd(v->listener);
        assert_true(fd >= 0);
        struct sockaddr_vm sa;
        socklen_t len = sizeof(sa);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        assert_int_equal(sa.svm_family, AF_VSOCK);
        assert_int_equal(sa.svm_cid, VMADDR_CID_ANY);
        assert_int_equal(sa.svm_port, port);

        /* Taken: through the address, the explicit any-CID, and a context. */
        char address[32], want[96];
        snprintf(address, sizeof(address), "vsock::%u", port);
        paf_error err = PAF_ERROR_NULL;
        paf_listener *second = NULL;
        assert_int_equal(listen_on(v, address, &second, &err), -EADDRINUSE);
        snprintf(want, sizeof(want), "vsock::%u: %s", port, strerror(EADDRINUSE));
        assert_string_equal(err.message, want);
        assert_null(second);

        snprintf(address, sizeof(address), "vsock:%u:%u", VMADDR_CID_ANY, port);
        err = PAF_ERROR_NULL;
        assert_int_equal(listen_on(v, address, &second, &err), -EADDRINUSE);
        assert_non_null(strstr(err.message, want));

        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "vsock.cid", VMADDR_CID_ANY), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "vsock.port", port), 0);
        err = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_listen(v->reg, ctx, v->event, on_accept, v, &second, &err),
                         -EADDRINUSE);
        assert_string_equal(err.message, want);
        paf_ctx_unref(ctx);

        /* And free again once the listener is gone. */
        v->listener = paf_listener_free(v->listener);
        snprintf(address, sizeof(address), "vsock::%u", port);
        err = PAF_ERROR_NULL;
        if (listen_on(v, address, &v->listener, &err) < 0)
                fail_msg("listen again on %s: %s", address, err.message);
}

/* A failed connect names the endpoint and the kernel's reason. */
static void test_connect_fails(void **state) {
        SKIP_WITHOUT_VSOCK();
        env *v = *state;
        /* Nobody listens on this port: refused with loopback, timed out without. */
        unsigned port = random_port();
        connect_result c = {0};
        connect_url(v, "1", port, &c);
        assert_null(c.flow);
        char want[64];
        snprintf(want, sizeof(want), "vsock vsock:1:%u: ", port);
        if (!strstr(c.report, want))
                fail_msg("report does not name %s: %s", want, c.report);
        free(c.report);
}

/* Listen, connect through the URL rules, and talk both ways over loopback. */
static void test_round_trip(void **state) {
        SKIP_WITHOUT_VSOCK();
        char reason[160];
        if (!loopback_works(reason, sizeof(reason))) {
                print_message("skipped: %s\n", reason);
                skip();
        }
        env *v = *state;
        unsigned port = listen_any_port(v);

        connect_result c = {0};
        connect_url(v, "1", port, &c);
        if (!c.flow)
                fail_msg("connect to vsock:1:%u failed: %s", port, c.report);
        uint64_t end = now_ms() + 5000;
        while (v->n_accepted < 1 && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_int_equal(v->n_accepted, 1);
        paf_flow *server = v->accepted[0];

        char peer[32];
        snprintf(peer, sizeof(peer), "vsock:1:%u", port);
        assert_string_equal(paf_flow_get_protocol(c.flow), "vsock");
        assert_string_equal(paf_flow_get_protocol(server), "vsock");
        assert_string_equal(paf_flow_get_peer(c.flow), peer);

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
        free(rs.data);
        free(rc.data);
        free(c.report);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_address_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_ours, setup, teardown),
                cmocka_unit_test_setup_teardown(test_url_rules, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listen_any, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connect_fails, setup, teardown),
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
