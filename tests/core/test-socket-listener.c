/* tests/core/test-socket-listener.c — the socket listener's accept hook: options, refusals,
 * freeing. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

typedef struct env {
        sd_event *event;
        int fds_before;
        paf_listener *listener;
        int port;
        paf_flow *accepted[8];
        size_t n_accepted;
        /* What each accepted socket said of SO_KEEPALIVE, looked up from
         * the handler by its peer (the flow hides its fd). */
        int keepalive[8];
        int clients[8];
        bool matched[8];
        size_t n_clients;
        /* The hook's doing. */
        unsigned hook_calls;
        int hook_return;
        bool hook_frees;
} env;

/* The fd of ours whose peer is client's local address: the accepted end. */
static int find_accepted_fd(int client) {
        struct sockaddr_in want, got;
        socklen_t len = sizeof(want);
        assert_int_equal(getsockname(client, (struct sockaddr *)&want, &len), 0);
        for (int fd = 0; fd < 1024; fd++) {
                len = sizeof(got);
                if (fd == client || getpeername(fd, (struct sockaddr *)&got, &len) < 0 ||
                    len != sizeof(got) || got.sin_family != AF_INET)
                        continue;
                if (got.sin_port == want.sin_port && got.sin_addr.s_addr == want.sin_addr.s_addr)
                        return fd;
        }
        return -1;
}

static void on_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        env *v = userdata;
        assert_true(v->n_accepted < 8);
        size_t i = v->n_accepted++;
        v->accepted[i] = flow;
        /* The first client not matched yet whose connection is still here
         * (a refused one is not). */
        int fd = -1;
        for (size_t j = 0; fd < 0 && j < v->n_clients; j++)
                if (!v->matched[j] && (fd = find_accepted_fd(v->clients[j])) >= 0)
                        v->matched[j] = true;
        assert_true(fd >= 0);
        socklen_t len = sizeof(v->keepalive[i]);
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v->keepalive[i], &len), 0);
}

static int hook(int fd, void *userdata) {
        env *v = userdata;
        v->hook_calls++;
        if (v->hook_frees) {
                v->listener = paf_listener_free(v->listener);
                return v->hook_return;
        }
        if (v->hook_return < 0)
                return v->hook_return;
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0)
                return -errno;
        return 0;
}

static int setup(void **state) {
        env *v = calloc(1, sizeof(*v));
        assert_non_null(v);
        v->fds_before = count_fds();
        assert_int_equal(sd_event_new(&v->event), 0);

        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(in);
        assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
        assert_int_equal(listen(fd, 16), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
        v->port = ntohs(in.sin_port);
        assert_int_equal(paf_socket_listener_new(v->event, fd, "tcp", &v->listener), 0);
        assert_int_equal(paf_listener_set_accept_handler(v->listener, on_accept, v), 0);
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        for (size_t i = 0; i < v->n_accepted; i++)
                close_and_wait(v->event, v->accepted[i]);
        for (size_t i = 0; i < v->n_clients; i++)
                close(v->clients[i]);
        paf_listener_free(v->listener);
        sd_event_unref(v->event);
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

/* Connect a client (loopback: done once it is in the backlog). */
static int client_connect(env *v) {
        assert_true(v->n_clients < 8);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in in = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)v->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(connect(fd, (struct sockaddr *)&in, sizeof(in)), 0);
        v->clients[v->n_clients++] = fd;
        return fd;
}

/* Run the loop until the hook ran n times in all (at most 2 s). */
static void run_until_hooked(env *v, unsigned n) {
        uint64_t end = now_ms() + 2000;
        while (v->hook_calls < n && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_int_equal(v->hook_calls, n);
        run_for(v->event, 20);
}

/* Whether the peer closed fd: EOF or a reset within 2 s. */
static bool closed_by_peer(int fd) {
        struct timeval tv = {.tv_sec = 2};
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        char c;
        ssize_t n = recv(fd, &c, 1, 0);
        return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void test_hook_sets_options(void **state) {
        env *v = *state;
        /* Without a hook, the kernel's default. */
        client_connect(v);
        uint64_t end = now_ms() + 2000;
        while (v->n_accepted < 1 && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_int_equal(v->n_accepted, 1);
        assert_int_equal(v->keepalive[0], 0);

        assert_int_equal(paf_socket_listener_set_accept_hook(v->listener, hook, v), 0);
        for (unsigned i = 0; i < 3; i++)
                client_connect(v);
        run_until_hooked(v, 3);
        /* Each connection once, before its flow: the option is on it. */
        assert_int_equal(v->n_accepted, 4);
        for (size_t i = 1; i < 4; i++)
                assert_int_equal(v->keepalive[i], 1);
}

static void test_hook_refuses(void **state) {
        env *v = *state;
        assert_int_equal(paf_socket_listener_set_accept_hook(v->listener, hook, v), 0);
        v->hook_return = -EPERM;

        FILE *log = tmpfile();
        assert_non_null(log);
        fflush(stderr);
        int saved = dup(STDERR_FILENO);
        assert_true(dup2(fileno(log), STDERR_FILENO) >= 0);
        int client = client_connect(v);
        run_until_hooked(v, 1);
        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);

        /* Closed, not handed out, and said why. */
        assert_int_equal(v->n_accepted, 0);
        assert_true(closed_by_peer(client));
        char text[1024] = "";
        rewind(log);
        size_t n = fread(text, 1, sizeof(text) - 1, log);
        text[n] = '\0';
        fclose(log);
        struct sockaddr_in local;
        socklen_t len = sizeof(local);
        assert_int_equal(getsockname(client, (struct sockaddr *)&local, &len), 0);
        char want[256];
        snprintf(want, sizeof(want),
                 "listener 127.0.0.1:%d: connection from 127.0.0.1:%u refused by the accept hook: "
                 "%s\n",
                 v->port, ntohs(local.sin_port), strerror(EPERM));
        if (!strstr(text, want))
                fail_msg("log lacks \"%s\":\n%s", want, text);

        /* The listener goes on; without the hook, connections get through. */
        assert_int_equal(paf_socket_listener_set_accept_hook(v->listener, NULL, NULL), 0);
        client_connect(v);
        uint64_t end = now_ms() + 2000;
        while (v->n_accepted < 1 && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_int_equal(v->n_accepted, 1);
        assert_int_equal(v->hook_calls, 1);
}

static void test_hook_frees_listener(void **state) {
        env *v = *state;
        assert_int_equal(paf_socket_listener_set_accept_hook(v->listener, hook, v), 0);
        v->hook_frees = true;
        /* And refuses: the listener it freed is not there to name. */
        v->hook_return = -EPERM;
        int client = client_connect(v);
        client_connect(v); /* in the same backlog: never accepted */
        run_until_hooked(v, 1);
        assert_null(v->listener);
        assert_int_equal(v->n_accepted, 0);
        assert_true(closed_by_peer(client));
}

static int none_start(paf_listener *l) {
        (void)l;
        return 0;
}

static void test_only_socket_listeners(void **state) {
        env *v = *state;
        assert_int_equal(paf_socket_listener_set_accept_hook(NULL, hook, v), -EINVAL);
        static const paf_listener_ops ops = {
                .struct_size = sizeof(paf_listener_ops),
                .start = none_start,
                .stop = none_start,
        };
        paf_listener *other;
        assert_int_equal(paf_listener_new(v->event, &ops, v, "other", "x", &other), 0);
        assert_int_equal(paf_socket_listener_set_accept_hook(other, hook, v), -EINVAL);
        paf_listener_free(other);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_hook_sets_options, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hook_refuses, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hook_frees_listener, setup, teardown),
                cmocka_unit_test_setup_teardown(test_only_socket_listeners, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
