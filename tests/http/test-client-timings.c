/* tests/http/test-client-timings.c — paf_http_call_get_timings(): each step of a call timed where
 * it happened, against timing_peer.py (an answer, or a TLS handshake, 300 ms late) over tcp and
 * TLS over tcp; a kept-alive connection has no connect; the struct_size rules. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>
#include <paf/http.h>

#include "../common/nginx.h"
#include "../common/paf-test.h"

#define PYTHON "/usr/bin/python3"
#define MS UINT64_C(1000)
/* What the peer waits, less a margin for timers; and what is quick even on a loaded machine. */
#define LATE (290 * MS)
#define QUICK (250 * MS)

/* ---- the peers ---- */

static struct {
        char dir[64];
        pid_t http, tls;
        int http_port, tls_port;
} P;

static void path_in(char *buf, size_t size, const char *name) {
        snprintf(buf, size, "%s/%s", P.dir, name);
}

/* timing_peer.py PORTFILE [--tls CERT KEY]; its port once it wrote it. */
static pid_t peer_start(const char *portfile, bool tls, int *ret_port) {
        char script[PATH_MAX], port_path[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
        snprintf(script, sizeof(script), "%s/tests/http/timing_peer.py", getenv("PAF_TEST_SRCDIR"));
        path_in(port_path, sizeof(port_path), portfile);
        path_in(cert, sizeof(cert), "certs/good.pem");
        path_in(key, sizeof(key), "certs/good.key");
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);
                dup2(null, 0);
                dup2(null, 1);
                char *const plain[] = {PYTHON, script, port_path, NULL};
                char *const layered[] = {PYTHON, script, port_path, "--tls", cert, key, NULL};
                execv(PYTHON, tls ? layered : plain);
                _exit(127);
        }
        for (int i = 0; i < 1000; i++) {
                FILE *f = fopen(port_path, "re");
                if (f) {
                        int ok = fscanf(f, "%d", ret_port);
                        fclose(f);
                        if (ok == 1)
                                return pid;
                }
                if (waitpid(pid, NULL, WNOHANG) == pid)
                        return 0;
                usleep(10 * 1000);
        }
        process_stop(&pid);
        return 0;
}

static void *gnutls_handle;

static int group_setup(void **state) {
        (void)state;
        /* GnuTLS stays loaded after tls.so goes: valgrind sees its memory kept. */
        gnutls_handle = dlopen("libgnutls.so.30", RTLD_NOW);
        snprintf(P.dir, sizeof(P.dir), "/tmp/paf-client-timings-XXXXXX");
        assert_non_null(mkdtemp(P.dir));
        char cmd[3 * PATH_MAX];
        snprintf(cmd, sizeof(cmd),
                 "set -e; . '%1$s/tests/http/https-certs.sh'; cd '%2$s'; mkdir certs; "
                 "https_ca certs ca; https_cert certs good ca localhost localhost 127.0.0.1",
                 getenv("PAF_TEST_SRCDIR"), P.dir);
        assert_int_equal(system(cmd), 0);
        P.http = peer_start("http.port", false, &P.http_port);
        P.tls = peer_start("tls.port", true, &P.tls_port);
        return P.http && P.tls ? 0 : -1;
}

static int group_teardown(void **state) {
        (void)state;
        if (gnutls_handle)
                dlclose(gnutls_handle);
        process_stop(&P.http);
        process_stop(&P.tls);
        if (P.dir[0])
                remove_tree(P.dir);
        return 0;
}

/* ---- the client ---- */

typedef struct env {
        sd_event *event;
        paf_registry *reg;
        paf_http_client *client;
        int fds_before;
} env;

static void load(paf_registry *reg, const char *name) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s.so", getenv("PAF_TEST_PLUGINDIR"), name);
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_load_plugin(reg, path, &err) < 0)
                fail_msg("loading %s: %s", path, err.message);
}

static int setup(void **state) {
        env *v = calloc(1, sizeof(*v));
        assert_non_null(v);
        v->fds_before = count_fds();
        assert_int_equal(sd_event_new(&v->event), 0);
        assert_int_equal(paf_registry_new(&v->reg), 0);
        load(v->reg, "tcp");
        load(v->reg, "tls");
        assert_int_equal(paf_http_client_new(v->reg, v->event, &v->client), 0);
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        paf_http_client_free(v->client);
        run_for(v->event, 50); /* closing flows finish on the loop */
        paf_registry_unref(v->reg);
        sd_event_unref(v->event);
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

static paf_ctx *ctx_for(bool tls) {
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tcp.host", "127.0.0.1"), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "tcp.port", tls ? P.tls_port : P.http_port), 0);
        if (tls) {
                char path[PATH_MAX];
                path_in(path, sizeof(path), "certs/ca.pem");
                assert_int_equal(paf_ctx_set_string(ctx, "tls.server-name", "localhost"), 0);
                assert_int_equal(paf_ctx_set_string(ctx, "tls.ca-file", path), 0);
        }
        return ctx;
}

typedef struct result {
        bool done;
        int status;
        char *err;
        paf_http_call *call;
} result;

static void on_body(paf_http_call *call, const void *data, size_t len, int error, void *userdata) {
        (void)call;
        (void)data;
        result *r = userdata;
        if (error < 0 || len == 0)
                r->done = true;
}

static void on_response(paf_http_call *call, int status, const paf_http_headers *headers,
                        const paf_error *error, void *userdata) {
        (void)headers;
        result *r = userdata;
        if (error) {
                r->err = strdup(error->message);
                r->done = true;
                return;
        }
        r->status = status;
        assert_int_equal(paf_http_call_read_body(call, on_body, r), 0);
}

/* GET target on ctx to the end; its times in *t. */
static void get(env *v, paf_ctx *ctx, const char *target, paf_http_call_timings *t) {
        result r = {0};
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", target, NULL, 0,
                                                 on_response, &r, &r.call),
                         0);
        if (!run_until(v->event, &r.done, 20000))
                fail_msg("GET %s: no answer in 20 s", target);
        if (r.err)
                fail_msg("GET %s: %s", target, r.err);
        assert_int_equal(r.status, 200);
        *t = (paf_http_call_timings){.struct_size = sizeof(*t)};
        assert_int_equal(paf_http_call_get_timings(r.call, t), 0);
        paf_http_call_free(r.call);
}

#define assert_order(a, b)                                                                         \
        do {                                                                                       \
                if (!((a) <= (b)))                                                                 \
                        fail_msg("%s (%llu) after %s (%llu)", #a, (unsigned long long)(a), #b,     \
                                 (unsigned long long)(b));                                         \
        } while (0)

/* A fresh connection's steps, in curl's order. */
static void assert_fresh(const paf_http_call_timings *t, bool tls) {
        assert_false(t->reused);
        assert_order(t->start_usec, t->namelookup_usec);
        assert_order(t->namelookup_usec, t->connect_usec);
        assert_true(t->connect_usec > 0);
        if (tls) {
                assert_order(t->connect_usec, t->appconnect_usec);
                assert_order(t->appconnect_usec, t->pretransfer_usec);
        } else {
                assert_int_equal(t->appconnect_usec, 0);
                assert_order(t->connect_usec, t->pretransfer_usec);
        }
        assert_order(t->pretransfer_usec, t->starttransfer_usec);
        assert_order(t->connect_usec, t->start_usec + QUICK);
}

static void test_late_answer(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(false);
        paf_http_call_timings t;
        get(v, ctx, "/slow", &t);
        assert_fresh(&t, false);
        /* The wait is the server's, after the request went. */
        assert_order(t.pretransfer_usec + LATE, t.starttransfer_usec);
        assert_order(t.pretransfer_usec, t.start_usec + QUICK);

        /* The same connection again: no lookup, no connect, as curl has it. */
        paf_http_call_timings again;
        get(v, ctx, "/fast", &again);
        assert_true(again.reused);
        assert_int_equal(again.connect_usec, 0);
        assert_int_equal(again.appconnect_usec, 0);
        assert_order(again.start_usec, again.namelookup_usec);
        assert_order(again.namelookup_usec, again.pretransfer_usec);
        assert_order(again.pretransfer_usec, again.starttransfer_usec);
        assert_order(again.starttransfer_usec, again.start_usec + QUICK);
        assert_int_equal(paf_http_client_get_n_connections(v->client), 1);
        paf_ctx_unref(ctx);
}

static void test_late_handshake(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(true);
        paf_http_call_timings t;
        get(v, ctx, "/fast", &t);
        assert_fresh(&t, true);
        /* tcp connected at once; TLS, what runs over it, took the 300 ms. */
        assert_order(t.connect_usec + LATE, t.appconnect_usec);

        paf_http_call_timings again;
        get(v, ctx, "/fast", &again);
        assert_true(again.reused);
        assert_int_equal(again.connect_usec, 0);
        assert_int_equal(again.appconnect_usec, 0);
        paf_ctx_unref(ctx);
}

static void test_struct_size(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(false);
        result r = {0};
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/fast", NULL, 0,
                                                 on_response, &r, &r.call),
                         0);
        paf_http_call_timings t = {.struct_size = sizeof(t)};
        assert_int_equal(paf_http_call_get_timings(NULL, &t), -EINVAL);
        assert_int_equal(paf_http_call_get_timings(r.call, NULL), -EINVAL);
        t.struct_size = offsetof(paf_http_call_timings, start_usec);
        assert_int_equal(paf_http_call_get_timings(r.call, &t), -EINVAL);
        /* Before anything happened: the start only. */
        t = (paf_http_call_timings){.struct_size = sizeof(t)};
        assert_int_equal(paf_http_call_get_timings(r.call, &t), 0);
        assert_true(t.start_usec > 0);
        assert_int_equal(t.connect_usec, 0);
        assert_int_equal(t.pretransfer_usec, 0);
        assert_true(run_until(v->event, &r.done, 20000));
        /* An older caller's struct, up to pretransfer: what follows is left alone. */
        paf_http_call_timings old;
        memset(&old, 0xa5, sizeof(old));
        old.struct_size = offsetof(paf_http_call_timings, starttransfer_usec);
        assert_int_equal(paf_http_call_get_timings(r.call, &old), 0);
        assert_int_equal(old.struct_size, offsetof(paf_http_call_timings, starttransfer_usec));
        assert_true(old.pretransfer_usec > 0 &&
                    old.pretransfer_usec != UINT64_C(0xa5a5a5a5a5a5a5a5));
        assert_true(old.starttransfer_usec == UINT64_C(0xa5a5a5a5a5a5a5a5));
        paf_http_call_free(r.call);
        paf_ctx_unref(ctx);
}

/* A call freed while it connects: its connect's times go with it (valgrind: nothing leaks). */
static void test_free_while_connecting(void **state) {
        env *v = *state;
        paf_ctx *ctx = ctx_for(true);
        result r = {0};
        assert_int_equal(paf_http_client_request(v->client, ctx, "GET", "/fast", NULL, 0,
                                                 on_response, &r, &r.call),
                         0);
        run_for(v->event, 50); /* tcp connected, TLS waits for the peer */
        paf_http_call_free(r.call);
        assert_false(r.done);
        paf_ctx_unref(ctx);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_late_answer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_late_handshake, setup, teardown),
                cmocka_unit_test_setup_teardown(test_struct_size, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_while_connecting, setup, teardown),
        };
        if (access(PYTHON, X_OK) != 0 || system("command -v certtool >/dev/null") != 0) {
                printf("# %s or certtool missing: skipping\n", PYTHON);
                return 77;
        }
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
