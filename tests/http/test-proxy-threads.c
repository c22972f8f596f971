/* tests/http/test-proxy-threads.c — the proxy protocols of core/http/proxy.c registered on a
 * registry that other threads resolve on at the same moment: one registry shared by the loops of
 * several threads (paf bench -t, a program with a client per thread), the first proxied call of
 * each client racing with the resolutions of the others. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <limits.h>

#include <cmocka.h>

#include "core/paf-internal.h"

#define THREADS 4
/* Rounds of a fresh registry each: the registration happens once per
 * registry, so the race has one chance a round. */
#define ROUNDS 150
#define ROUNDS_VALGRIND 4
#define RESOLUTIONS 40

static paf_registry *reg;
static pthread_barrier_t barrier;

static int rounds(void) {
        const char *v = getenv("PAF_TEST_VALGRIND");
        return v && *v ? ROUNDS_VALGRIND : ROUNDS;
}

static void load(paf_registry *r, const char *name) {
        const char *dir = getenv("PAF_TEST_PLUGINDIR");
        assert_non_null(dir);
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s.so", dir, name);
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_load_plugin(r, path, &err) < 0)
                fail_msg("loading %s: %s", path, err.message);
}

static void on_response(paf_http_call *call _unused_, int status _unused_,
                        const paf_http_headers *headers _unused_, const paf_error *error _unused_,
                        void *userdata _unused_) {
}

/* A thread with its own loop and client, whose first call goes through a
 * proxy: what registers the proxy protocols. The proxy (port 1) is never
 * reached: the loop does not run. */
static void *proxied(void *arg) {
        const char *url = arg;
        sd_event *event = NULL;
        paf_http_client *client = NULL;
        paf_ctx *ctx = NULL;
        paf_http_call *call = NULL;
        int r = sd_event_new(&event);
        if (r >= 0)
                r = paf_http_client_new(reg, event, &client);
        if (r >= 0)
                r = paf_ctx_new(&ctx);
        if (r >= 0)
                r = paf_registry_parse_url(reg, url, ctx, NULL);
        if (r >= 0)
                r = paf_ctx_set_string(ctx, "http.proxy", "127.0.0.1:1");
        pthread_barrier_wait(&barrier);
        if (r >= 0)
                r = paf_http_client_request(client, ctx, "GET", "/", NULL, 0, on_response, NULL,
                                            &call);
        paf_http_call_free(call);
        paf_ctx_unref(ctx);
        paf_http_client_free(client);
        sd_event_unref(event);
        return (void *)(intptr_t)r;
}

/* A thread resolving plain http:// URLs on the same registry meanwhile. */
static void *resolving(void *arg _unused_) {
        paf_ctx *ctx = NULL;
        int r = paf_ctx_new(&ctx);
        if (r >= 0)
                r = paf_registry_parse_url(reg, "http://127.0.0.1:1/", ctx, NULL);
        pthread_barrier_wait(&barrier);
        for (int i = 0; r >= 0 && i < RESOLUTIONS; i++) {
                paf_resolution *res = NULL;
                r = paf_registry_resolve(reg, ctx, &res);
                if (r >= 0 && (paf_resolution_get_n_candidates(res) != 1 ||
                               strcmp(paf_protocol_get_name(paf_resolution_get_protocol(res, 0)),
                                      "tcp") != 0))
                        r = -EBADMSG;
                paf_resolution_free(res);
        }
        paf_ctx_unref(ctx);
        return (void *)(intptr_t)r;
}

static size_t count_named(const char *name) {
        size_t n = 0;
        for (size_t i = 0; i < paf_registry_get_n_protocols(reg); i++)
                if (strcmp(paf_protocol_get_name(paf_registry_get_protocol(reg, i)), name) == 0)
                        n++;
        return n;
}

/* Every protocol of the registry once: none lost or doubled by the race. */
static void assert_names_unique(void) {
        size_t n = paf_registry_get_n_protocols(reg);
        for (size_t i = 0; i < n; i++) {
                const paf_protocol *p = paf_registry_get_protocol(reg, i);
                assert_non_null(p);
                assert_int_equal(count_named(paf_protocol_get_name(p)), 1);
        }
}

static void test_register_while_resolving(void **state _unused_) {
        for (int round = 0; round < rounds(); round++) {
                assert_int_equal(paf_registry_new(&reg), 0);
                load(reg, "tcp");
                load(reg, "tls");
                size_t before = paf_registry_get_n_protocols(reg);
                assert_int_equal(pthread_barrier_init(&barrier, NULL, THREADS), 0);
                /* Two threads make their first call through a proxy (a
                 * CONNECT tunnel for https), two resolve. */
                pthread_t t[THREADS];
                for (int i = 0; i < THREADS; i++)
                        assert_int_equal(pthread_create(&t[i], NULL, i < 2 ? proxied : resolving,
                                                        (void *)"https://127.0.0.1:1/"),
                                         0);
                for (int i = 0; i < THREADS; i++) {
                        void *ret;
                        assert_int_equal(pthread_join(t[i], &ret), 0);
                        assert_int_equal((int)(intptr_t)ret, 0);
                }
                pthread_barrier_destroy(&barrier);
                /* The proxy protocols once each, nothing lost or doubled:
                 * two registering at once must not both add, nor write the
                 * same slot. */
                assert_int_equal(count_named("http-proxy"), 1);
                assert_names_unique();
                assert_true(paf_registry_get_n_protocols(reg) > before);
                reg = paf_registry_unref(reg);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_register_while_resolving),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
