/* tests/plugins/test-unix.c — unix.so through the registry: paths, abstract names, stale files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>

#include "../common/paf-test.h"

/* ---- helpers ---- */

typedef struct env {
        sd_event *event;
        paf_registry *reg;
        int fds_before;
        char dir[64];
        char path[128]; /* a socket path in dir */
        char abstract[64];
        paf_listener *listener;
        paf_flow *accepted[16];
        size_t n_accepted;
} env;

static void on_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        env *v = userdata;
        assert_true(v->n_accepted < 16);
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
        snprintf(plugin, sizeof(plugin), "%s/unix.so", dir);
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_load_plugin(v->reg, plugin, &err) < 0)
                fail_msg("loading %s: %s", plugin, err.message);
        assert_non_null(paf_registry_find_protocol(v->reg, "unix"));

        snprintf(v->dir, sizeof(v->dir), "/tmp/paf-test-unix-XXXXXX");
        assert_non_null(mkdtemp(v->dir));
        snprintf(v->path, sizeof(v->path), "%s/sock", v->dir);
        snprintf(v->abstract, sizeof(v->abstract), "@paf-test-%d", (int)getpid());
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
        /* Whatever the test left in its directory. */
        DIR *d = opendir(v->dir);
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        assert_int_equal(unlinkat(dirfd(d), de->d_name, 0), 0);
        closedir(d);
        assert_int_equal(rmdir(v->dir), 0);
        free(v);
        return 0;
}

static int listen_on(env *v, const char *address, paf_listener **ret, paf_error *err) {
        return paf_registry_listen_address(v->reg, address, v->event, on_accept, v, ret, err);
}

static void must_listen_on(env *v, const char *address) {
        paf_error err = PAF_ERROR_NULL;
        if (listen_on(v, address, &v->listener, &err) < 0)
                fail_msg("listen on %s: %s", address, err.message);
        assert_string_equal(paf_listener_get_protocol(v->listener), "unix");
        assert_string_equal(paf_listener_get_address(v->listener), address);
}

typedef struct connect_result {
        bool done;
        paf_flow *flow;
        char *report;
        int error;
        char *endpoint;
} connect_result;

static void on_connect(paf_flow *flow, const paf_attempt *attempts, size_t n, void *userdata) {
        connect_result *c = userdata;
        assert_false(c->done);
        c->done = true;
        c->flow = flow;
        c->report = paf_attempts_format(attempts, n);
        for (size_t i = 0; i < n; i++)
                if (strcmp(attempts[i].protocol, "unix") == 0) {
                        c->error = attempts[i].error;
                        c->endpoint = attempts[i].endpoint ? strdup(attempts[i].endpoint) : NULL;
                }
}

static void connect_result_done(connect_result *c) {
        free(c->report);
        free(c->endpoint);
}

static void connect_to(env *v, const char *path, connect_result *c) {
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "unix.path", path), 0);
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, c, NULL), 0);
        paf_ctx_unref(ctx);
        assert_false(c->done);
        assert_true(run_until(v->event, &c->done, 5000));
}

static void wait_accepted(env *v, size_t n) {
        uint64_t end = now_ms() + 5000;
        while (v->n_accepted < n && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_int_equal(v->n_accepted, n);
}

static void round_trip(env *v, const char *path) {
        size_t before = v->n_accepted;
        connect_result c = {0};
        connect_to(v, path, &c);
        if (!c.flow)
                fail_msg("connect to %s failed: %s", path, c.report);
        wait_accepted(v, before + 1);
        paf_flow *server = v->accepted[before];

        assert_string_equal(paf_flow_get_protocol(c.flow), "unix");
        assert_string_equal(paf_flow_get_protocol(server), "unix");
        assert_string_equal(paf_flow_get_peer(c.flow), path);
        assert_string_equal(paf_flow_get_local(server), path);
        assert_string_equal(paf_flow_get_peer(server), "unix:unnamed");

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

/* A socket file nobody listens on, as a crashed server leaves it. */
static void make_stale_socket(const char *path) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
        assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
        assert_int_equal(listen(fd, 1), 0);
        close(fd);
        struct stat st;
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
}

/* ---- tests ---- */

static void test_round_trip_path(void **state) {
        env *v = *state;
        must_listen_on(v, v->path);
        assert_true(paf_listener_get_fd(v->listener) >= 0);
        round_trip(v, v->path);
        round_trip(v, v->path);
}

static void test_round_trip_abstract(void **state) {
        env *v = *state;
        must_listen_on(v, v->abstract);
        round_trip(v, v->abstract);
        /* Nothing in the file system. */
        struct stat st;
        char as_path[128];
        snprintf(as_path, sizeof(as_path), "%s/%s", v->dir, v->abstract + 1);
        assert_int_equal(lstat(as_path, &st), -1);

        /* An abstract name is taken until its listener goes. */
        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(listen_on(v, v->abstract, &l, &err), -EADDRINUSE);
        assert_non_null(strstr(err.message, v->abstract));
        v->listener = paf_listener_free(v->listener);
        must_listen_on(v, v->abstract);
}

/* ---- a large transfer with backpressure ---- */

static void test_big_transfer_with_backpressure(void **state) {
        env *v = *state;
        must_listen_on(v, v->path);
        connect_result c = {0};
        connect_to(v, v->path, &c);
        assert_non_null(c.flow);
        wait_accepted(v, 1);
        big_transfer(v->event, c.flow, v->accepted[0]);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
}

static void test_peer_close_and_reset(void **state) {
        env *v = *state;
        must_listen_on(v, v->abstract);

        connect_result c = {0};
        connect_to(v, v->abstract, &c);
        assert_non_null(c.flow);
        wait_accepted(v, 1);
        reader r = {0};
        assert_int_equal(paf_flow_read_start(c.flow, on_read, &r), 0);
        close_and_wait(v->event, v->accepted[0]);
        v->accepted[0] = NULL;
        assert_true(run_until(v->event, &r.ended, 2000));
        assert_true(r.eof);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);

        /* A server that closes with our bytes unread resets us. */
        connect_result c2 = {0};
        connect_to(v, v->abstract, &c2);
        assert_non_null(c2.flow);
        wait_accepted(v, 2);
        reader r2 = {0};
        assert_int_equal(paf_flow_read_start(c2.flow, on_read, &r2), 0);
        write_and_wait(v->event, c2.flow, "never read");
        close_and_wait(v->event, v->accepted[1]);
        v->accepted[1] = NULL;
        assert_true(run_until(v->event, &r2.ended, 2000));
        assert_int_equal(r2.error, -ECONNRESET);
        close_and_wait(v->event, c2.flow);
        connect_result_done(&c2);
}

static void test_connect_errors(void **state) {
        env *v = *state;

        /* Nothing there. */
        connect_result c = {0};
        connect_to(v, v->path, &c);
        assert_null(c.flow);
        assert_int_equal(c.error, -ENOENT);
        assert_string_equal(c.endpoint, v->path);
        connect_result_done(&c);

        /* A socket file nobody listens on. */
        make_stale_socket(v->path);
        connect_result c2 = {0};
        connect_to(v, v->path, &c2);
        assert_null(c2.flow);
        assert_int_equal(c2.error, -ECONNREFUSED);
        char line[256];
        snprintf(line, sizeof(line), "unix %s: failed: Connection refused", v->path);
        if (!strstr(c2.report, line))
                fail_msg("report lacks \"%s\":\n%s", line, c2.report);
        connect_result_done(&c2);

        /* An abstract name nobody has. */
        connect_result c3 = {0};
        connect_to(v, v->abstract, &c3);
        assert_null(c3.flow);
        assert_int_equal(c3.error, -ECONNREFUSED);
        connect_result_done(&c3);
}

static void test_stale_socket_is_replaced(void **state) {
        env *v = *state;
        make_stale_socket(v->path);
        must_listen_on(v, v->path);
        round_trip(v, v->path);
}

static void test_live_listener_is_not_replaced(void **state) {
        env *v = *state;
        must_listen_on(v, v->path);
        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(listen_on(v, v->path, &l, &err), -EADDRINUSE);
        assert_null(l);
        char expect[256];
        snprintf(expect, sizeof(expect), "%s: already in use by a listening socket", v->path);
        assert_string_equal(err.message, expect);
        /* Finding out took a connection, which the server sees end at once. */
        wait_accepted(v, 1);
        reader r = {0};
        assert_int_equal(paf_flow_read_start(v->accepted[0], on_read, &r), 0);
        assert_true(run_until(v->event, &r.ended, 2000));
        assert_true(r.eof);
        assert_int_equal(r.len, 0);
        /* The first listener still works. */
        round_trip(v, v->path);
}

static void test_regular_file_is_not_removed(void **state) {
        env *v = *state;
        int fd = open(v->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "precious", 8), 8);
        close(fd);

        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;
        assert_true(listen_on(v, v->path, &l, &err) < 0);
        assert_null(l);
        assert_non_null(strstr(err.message, v->path));
        assert_non_null(strstr(err.message, "not a socket"));
        struct stat st;
        assert_int_equal(lstat(v->path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_size, 8);
}

static void test_bad_paths(void **state) {
        env *v = *state;
        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;

        char long_path[300];
        memset(long_path, 'x', sizeof(long_path) - 1);
        long_path[0] = '/';
        long_path[sizeof(long_path) - 1] = '\0';
        assert_int_equal(listen_on(v, long_path, &l, &err), -ENAMETOOLONG);
        assert_non_null(strstr(err.message, long_path));
        assert_non_null(strstr(err.message, "too long"));

        long_path[0] = '@';
        err = PAF_ERROR_NULL;
        assert_int_equal(listen_on(v, long_path, &l, &err), -ENAMETOOLONG);
        assert_non_null(strstr(err.message, "too long"));

        /* A directory that does not exist. */
        char missing[200];
        snprintf(missing, sizeof(missing), "%s/no/such/dir/sock", v->dir);
        err = PAF_ERROR_NULL;
        assert_int_equal(listen_on(v, missing, &l, &err), -ENOENT);
        assert_non_null(strstr(err.message, missing));

        /* Connecting to an over-long path fails with the reason. */
        long_path[0] = '/';
        connect_result c = {0};
        connect_to(v, long_path, &c);
        assert_null(c.flow);
        assert_int_equal(c.error, -ENAMETOOLONG);
        assert_non_null(strstr(c.report, "too long"));
        connect_result_done(&c);
}

static void test_peer_credentials(void **state) {
        env *v = *state;
        must_listen_on(v, v->path);
        connect_result c = {0};
        connect_to(v, v->path, &c);
        assert_non_null(c.flow);
        wait_accepted(v, 1);
        struct ucred cred;
        assert_int_equal(paf_flow_get_peer_credentials(v->accepted[0], &cred), 0);
        assert_int_equal(cred.pid, getpid());
        assert_int_equal(cred.uid, getuid());
        assert_int_equal(cred.gid, getgid());
        assert_int_equal(paf_flow_get_peer_credentials(c.flow, &cred), 0);
        assert_int_equal(cred.pid, getpid());
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
}

static void test_listen_fd(void **state) {
        env *v = *state;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        assert_true(strlen(v->path) < sizeof(un.sun_path));
        memcpy(un.sun_path, v->path, strlen(v->path) + 1);
        assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
        assert_int_equal(listen(fd, 8), 0);
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_listen_fd(v->reg, fd, v->event, on_accept, v, &v->listener, &err) < 0)
                fail_msg("listen_fd: %s", err.message);
        assert_string_equal(paf_listener_get_protocol(v->listener), "unix");
        assert_string_equal(paf_listener_get_address(v->listener), v->path);
        round_trip(v, v->path);

        paf_listener *l = NULL;
        int dgram = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        err = PAF_ERROR_NULL;
        assert_true(paf_registry_listen_fd(v->reg, dgram, v->event, on_accept, v, &l, &err) < 0);
        assert_null(l);
        char expect[64];
        snprintf(expect, sizeof(expect), "fd %d: not a listening stream socket", dgram);
        if (!strstr(err.message, expect))
                fail_msg("unexpected message: %s", err.message);
        assert_int_equal(fcntl(dgram, F_GETFD), -1);
}

static void test_url_rule(void **state) {
        env *v = *state;
        static const struct {
                const char *scheme;
                bool candidate;
        } cases[] = {
                {"http+unix", true},
                {"https+unix", true},
                {"http", false},
                {"unix", false},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                paf_ctx *ctx;
                assert_int_equal(paf_ctx_new(&ctx), 0);
                assert_int_equal(paf_ctx_set_string(ctx, "url.scheme", cases[i].scheme), 0);
                assert_int_equal(paf_ctx_set_string(ctx, "url.host", v->path), 0);
                paf_resolution *res;
                assert_int_equal(paf_registry_resolve(v->reg, ctx, &res), 0);
                size_t n;
                const paf_attempt *a = paf_resolution_get_attempts(res, &n);
                assert_int_equal(n, 1);
                assert_int_equal(a[0].candidate, cases[i].candidate);
                if (cases[i].candidate)
                        assert_string_equal(a[0].endpoint, v->path);
                paf_resolution_free(res);
                paf_ctx_unref(ctx);
        }

        /* And a connect through it. */
        must_listen_on(v, v->path);
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.scheme", "http+unix"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.host", v->path), 0);
        connect_result c = {0};
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, &c, NULL), 0);
        paf_ctx_unref(ctx);
        assert_true(run_until(v->event, &c.done, 5000));
        assert_non_null(c.flow);
        close_and_wait(v->event, c.flow);
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

static void test_cancel(void **state) {
        env *v = *state;
        must_listen_on(v, v->path);
        for (unsigned i = 0; i < 8; i++) {
                paf_ctx *ctx;
                assert_int_equal(paf_ctx_new(&ctx), 0);
                assert_int_equal(paf_ctx_set_string(ctx, "unix.path", v->path), 0);
                paf_connect *conn;
                assert_int_equal(
                        paf_registry_connect(v->reg, ctx, v->event, on_connect_never, NULL, &conn),
                        0);
                paf_ctx_unref(ctx);
                for (unsigned k = 0; k < i % 3; k++)
                        assert_true(sd_event_run(v->event, 1000) >= 0);
                paf_connect_cancel(conn);
        }
        run_for(v->event, 50);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_trip_path, setup, teardown),
                cmocka_unit_test_setup_teardown(test_round_trip_abstract, setup, teardown),
                cmocka_unit_test_setup_teardown(test_big_transfer_with_backpressure, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_peer_close_and_reset, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connect_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stale_socket_is_replaced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_live_listener_is_not_replaced, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_regular_file_is_not_removed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
                cmocka_unit_test_setup_teardown(test_peer_credentials, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listen_fd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_url_rule, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
