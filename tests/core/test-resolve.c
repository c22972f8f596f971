/* tests/core/test-resolve.c — resolution order, reports, and connect over fake protocols. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <paf.h>

/* ---- fake protocols ---- */

typedef enum mode {
        SYNC_OK,    /* done() from inside connect */
        SYNC_FAIL,  /* fail() from inside connect */
        RETURN_ERR, /* connect returns an error */
        LATER_OK,   /* done() from a timer */
        LATER_FAIL, /* fail() from a timer */
} mode;

typedef struct fake {
        paf_protocol_ops ops;
        const char *keys[3];
        mode mode;
        int error;

        int n_connect;
        int n_cancel;
        int n_flows;  /* flows created */
        int n_closed; /* flows whose implementation was closed */
        char endpoint_seen[64];
        bool saw_ctx, saw_event;
        bool cancel_ends;         /* cancel() hands over a flow anyway */
        paf_connect_request *req; /* pending */
        sd_event_source *timer;
} fake;

static int order_log[16], n_order;

static int fake_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata) {
        fake *f = userdata;
        const char *host = NULL;
        if (paf_ctx_get_string(ctx, f->keys[0], &host) < 0)
                return -EINVAL;
        snprintf(buf, size, "%s:%s", host, f->ops.name);
        return 0;
}

/* The flow: an implementation that only counts being closed. */
static int flow_write(paf_flow *flow, const struct iovec *iov, size_t n_iov) {
        (void)iov;
        (void)n_iov;
        paf_flow_write_done(flow, 0);
        return 0;
}

static void flow_close(paf_flow *flow) {
        fake *f = paf_flow_get_impl(flow);
        f->n_closed++;
}

static const paf_flow_ops fake_flow_ops = {
        .struct_size = sizeof(paf_flow_ops),
        .write = flow_write,
        .close = flow_close,
};

static paf_flow *fake_flow(fake *f, sd_event *e) {
        paf_flow *flow = NULL;
        assert_int_equal(paf_flow_new(e, &fake_flow_ops, f, f->ops.name, "peer", "local", &flow),
                         0);
        f->n_flows++;
        return flow;
}

static void fake_finish(fake *f, paf_connect_request *req) {
        if (f->mode == SYNC_OK || f->mode == LATER_OK)
                paf_connect_request_done(req, fake_flow(f, paf_connect_request_get_event(req)));
        else
                paf_connect_request_fail(req, f->error, "fake %s refused (%d)", f->ops.name,
                                         -f->error);
}

static int on_fake_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)usec;
        fake *f = userdata;
        paf_connect_request *req = f->req;
        assert_ptr_equal(paf_connect_request_get_data(req), f);
        f->req = NULL;
        f->timer = sd_event_source_disable_unref(s);
        fake_finish(f, req);
        return 0;
}

static int fake_connect(paf_connect_request *req, void *userdata) {
        fake *f = userdata;
        f->n_connect++;
        order_log[n_order++] = f->ops.priority;
        snprintf(f->endpoint_seen, sizeof(f->endpoint_seen), "%s",
                 paf_connect_request_get_endpoint(req));
        const char *host;
        f->saw_ctx = paf_connect_request_get_ctx(req) &&
                     paf_ctx_get_string(paf_connect_request_get_ctx(req), f->keys[0], &host) == 0;
        f->saw_event = paf_connect_request_get_event(req) != NULL;

        switch (f->mode) {
        case SYNC_OK:
        case SYNC_FAIL:
                fake_finish(f, req);
                return 0;
        case RETURN_ERR:
                return f->error;
        case LATER_OK:
        case LATER_FAIL:
                paf_connect_request_set_data(req, f);
                f->req = req;
                return sd_event_add_time_relative(paf_connect_request_get_event(req), &f->timer,
                                                  CLOCK_MONOTONIC, 2000, 0, on_fake_timer, f);
        }
        return -EINVAL;
}

static void fake_cancel(paf_connect_request *req, void *userdata) {
        fake *f = userdata;
        assert_ptr_equal(req, f->req);
        f->n_cancel++;
        f->req = NULL;
        f->timer = sd_event_source_disable_unref(f->timer);
        /* A protocol may end the request from inside cancel: the core must
         * dispose of what it gets. */
        if (f->cancel_ends)
                paf_connect_request_done(req, fake_flow(f, paf_connect_request_get_event(req)));
}

static void fake_init(fake *f, const char *name, int priority, const char *key, mode m, int error) {
        *f = (fake){.mode = m, .error = error};
        f->keys[0] = key;
        f->ops = (paf_protocol_ops){
                .struct_size = sizeof(paf_protocol_ops),
                .name = name,
                .priority = priority,
                .endpoint_keys = f->keys,
                .describe = fake_describe,
                .connect = fake_connect,
        };
}

static void fake_add(paf_registry *reg, fake *f) {
        assert_int_equal(paf_registry_add_protocol(reg, &f->ops, f), 0);
}

/* ---- the loop ---- */

static sd_event *new_event(void) {
        sd_event *e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        return e;
}

/* Runs the loop until *flag is set (or a generous deadline passes). */
static void run_until(sd_event *e, const bool *flag) {
        for (int i = 0; i < 1000 && !*flag; i++)
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
        assert_true(*flag);
}

/* Runs everything that is ready now, plus timers due within 50ms. */
static void drain(sd_event *e) {
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                assert_true(sd_event_run(e, 5 * 1000) >= 0);
                clock_gettime(CLOCK_MONOTONIC, &now);
                if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >
                    50)
                        break;
        }
}

/* What the connect handler got. */
typedef struct result {
        bool called;
        int n_calls;
        paf_flow *flow;
        size_t n;
        paf_attempt attempts[8];
        char reasons[8][128];
        char endpoints[8][64];
        char *text;
} result;

static void on_connected(paf_flow *flow, const paf_attempt *attempts, size_t n, void *userdata) {
        result *r = userdata;
        r->called = true;
        r->n_calls++;
        r->flow = flow;
        r->n = n;
        for (size_t i = 0; i < n && i < 8; i++) {
                r->attempts[i] = attempts[i];
                /* Valid only during the call: keep copies. */
                snprintf(r->reasons[i], sizeof(r->reasons[i]), "%s",
                         attempts[i].reason ? attempts[i].reason : "");
                snprintf(r->endpoints[i], sizeof(r->endpoints[i]), "%s",
                         attempts[i].endpoint ? attempts[i].endpoint : "");
                r->attempts[i].reason = r->reasons[i];
                r->attempts[i].endpoint = r->endpoints[i];
        }
        r->text = paf_attempts_format(attempts, n);
}

static void on_flow_closed(paf_flow *flow, void *userdata) {
        (void)flow;
        *(bool *)userdata = true;
}

static void close_flow(sd_event *e, paf_flow *flow) {
        bool closed = false;
        paf_flow_close(flow, on_flow_closed, &closed);
        run_until(e, &closed);
}

/* ---- resolution ---- */

static void test_resolve_order(void **state) {
        (void)state;
        paf_registry *reg = NULL;
        paf_ctx *ctx = NULL;
        fake a, b, c, d, e;

        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_ctx_new(&ctx), 0);
        fake_init(&a, "a", 10, "x.host", SYNC_OK, 0);
        fake_init(&b, "b", 5, "x.host", SYNC_OK, 0);
        fake_init(&c, "c", 10, "x.host", SYNC_OK, 0);
        fake_init(&d, "d", 5, "x.host", SYNC_OK, 0);
        fake_init(&e, "e", 1, "e.path", SYNC_OK, 0);
        fake_add(reg, &a);
        fake_add(reg, &b);
        fake_add(reg, &c);
        fake_add(reg, &d);
        fake_add(reg, &e);
        assert_int_equal(paf_ctx_set_string(ctx, "x.host", "h"), 0);

        paf_resolution *res = NULL;
        assert_int_equal(paf_registry_resolve(reg, ctx, &res), 0);
        size_t n;
        const paf_attempt *at = paf_resolution_get_attempts(res, &n);
        assert_int_equal(n, 5);
        assert_int_equal(paf_resolution_get_n_candidates(res), 4);

        /* Priority first; equal priorities: the most recently registered first. */
        const char *expected[] = {"d", "b", "c", "a", "e"};
        for (size_t i = 0; i < 5; i++) {
                assert_string_equal(at[i].protocol, expected[i]);
                assert_string_equal(paf_protocol_get_name(paf_resolution_get_protocol(res, i)),
                                    expected[i]);
                assert_false(at[i].tried);
                assert_int_equal(at[i].candidate, i < 4);
        }
        assert_null(paf_resolution_get_protocol(res, 5));
        assert_string_equal(at[0].endpoint, "h:d");
        assert_int_equal(at[0].error, 0);
        /* The non-candidate says which key it lacks, even with the best priority. */
        assert_null(at[4].endpoint);
        assert_string_equal(at[4].reason, "no value for key \"e.path\"");
        assert_int_equal(at[4].error, -ENOENT);

        char *text = paf_attempts_format(at, n);
        /* A resolution lists what a connect would try: candidates, in order. */
        assert_string_equal(text, "d h:d: candidate\n"
                                  "b h:b: candidate\n"
                                  "c h:c: candidate\n"
                                  "a h:a: candidate\n"
                                  "e: not a candidate: no value for key \"e.path\"\n");
        free(text);

        /* Resolution never connects. */
        assert_int_equal(a.n_connect + b.n_connect + c.n_connect + d.n_connect + e.n_connect, 0);
        paf_resolution_free(res);

        /* Without a context, nothing is a candidate. */
        assert_int_equal(paf_registry_resolve(reg, NULL, &res), 0);
        assert_int_equal(paf_resolution_get_n_candidates(res), 0);
        paf_resolution_get_attempts(res, &n);
        assert_int_equal(n, 5);
        paf_resolution_free(res);

        assert_int_equal(paf_registry_resolve(NULL, ctx, &res), -EINVAL);
        assert_int_equal(paf_registry_resolve(reg, ctx, NULL), -EINVAL);
        assert_null(paf_resolution_free(NULL));

        paf_ctx_unref(ctx);
        paf_registry_unref(reg);
}

static int copy_string_rule(const paf_value *inputs, size_t n_inputs, paf_value *ret,
                            void *userdata) {
        (void)n_inputs;
        (void)userdata;
        *ret = inputs[0];
        return 1;
}

static void test_resolve_registry_rules(void **state) {
        (void)state;
        paf_registry *reg = NULL;
        paf_ctx *ctx = NULL;
        paf_resolution *res = NULL;
        fake u;
        const paf_attempt *at;
        size_t n;

        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_ctx_new(&ctx), 0);
        fake_init(&u, "u", 0, "u.path", SYNC_OK, 0);
        fake_add(reg, &u);
        assert_int_equal(paf_ctx_set_string(ctx, "url.path", "/run/x.sock"), 0);

        assert_int_equal(paf_registry_resolve(reg, ctx, &res), 0);
        assert_int_equal(paf_resolution_get_n_candidates(res), 0);
        res = paf_resolution_free(res);

        /* A plugin's rule in the registry context derives the endpoint key. */
        const paf_rule_input in[] = {PAF_REQUIRED("url.path", PAF_TYPE_STRING)};
        assert_int_equal(paf_ctx_add_rule(paf_registry_get_ctx(reg), "u.path", PAF_TYPE_STRING, in,
                                          1, copy_string_rule, NULL, NULL),
                         0);
        assert_int_equal(paf_registry_resolve(reg, ctx, &res), 0);
        assert_int_equal(paf_resolution_get_n_candidates(res), 1);
        at = paf_resolution_get_attempts(res, &n);
        assert_int_equal(n, 1);
        assert_true(at[0].candidate);
        assert_string_equal(at[0].endpoint, "/run/x.sock:u");
        res = paf_resolution_free(res);
        /* The user's context is read, never written. */
        assert_int_equal(paf_ctx_has(ctx, "u.path"), 0);

        /* A cycle in the rules is reported as the reason, not looped on. */
        const paf_rule_input from_u[] = {PAF_REQUIRED("u.path", PAF_TYPE_STRING)};
        assert_int_equal(paf_ctx_add_rule(ctx, "url.path", PAF_TYPE_STRING, from_u, 1,
                                          copy_string_rule, NULL, NULL),
                         0);
        assert_int_equal(paf_registry_resolve(reg, ctx, &res), 0);
        at = paf_resolution_get_attempts(res, &n);
        assert_int_equal(n, 1);
        assert_false(at[0].candidate);
        assert_int_equal(at[0].error, -ELOOP);
        assert_string_equal(at[0].reason, "derivation cycle: u.path -> url.path -> u.path");
        res = paf_resolution_free(res);

        paf_ctx_unref(ctx);
        paf_registry_unref(reg);
}

/* ---- connect ---- */

static void test_connect_all_fail(void **state) {
        (void)state;
        paf_registry *reg = NULL;
        paf_ctx *ctx = NULL;
        sd_event *e = new_event();
        fake p1, p2, p3, missing;
        result res = {0};

        n_order = 0;
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_ctx_new(&ctx), 0);
        fake_init(&p1, "first", 1, "t.host", LATER_FAIL, -ECONNREFUSED);
        fake_init(&p2, "second", 2, "t.host", RETURN_ERR, -EHOSTUNREACH);
        fake_init(&p3, "third", 3, "t.host", SYNC_FAIL, -ETIMEDOUT);
        fake_init(&missing, "unixish", 0, "unix.path", SYNC_OK, 0);
        fake_add(reg, &p3);
        fake_add(reg, &missing);
        fake_add(reg, &p1);
        fake_add(reg, &p2);
        assert_int_equal(paf_ctx_set_string(ctx, "t.host", "127.0.0.1"), 0);

        assert_int_equal(paf_registry_connect(reg, ctx, e, on_connected, &res, NULL), 0);
        /* Never from inside the call. */
        assert_false(res.called);
        run_until(e, &res.called);
        drain(e);
        assert_int_equal(res.n_calls, 1);
        assert_null(res.flow);

        /* In priority order, each once; the protocol saw the context, the loop
         * and its endpoint. */
        assert_int_equal(n_order, 3);
        assert_int_equal(order_log[0], 1);
        assert_int_equal(order_log[1], 2);
        assert_int_equal(order_log[2], 3);
        assert_string_equal(p1.endpoint_seen, "127.0.0.1:first");
        assert_true(p1.saw_ctx && p1.saw_event);
        assert_int_equal(missing.n_connect, 0);

        /* Every candidate with its own error and reason, then the rest. */
        assert_int_equal(res.n, 4);
        assert_string_equal(res.attempts[0].protocol, "first");
        assert_true(res.attempts[0].candidate && res.attempts[0].tried);
        assert_int_equal(res.attempts[0].error, -ECONNREFUSED);
        assert_string_equal(res.attempts[0].reason, "fake first refused (111)");
        assert_string_equal(res.attempts[0].endpoint, "127.0.0.1:first");
        assert_string_equal(res.attempts[1].protocol, "second");
        assert_true(res.attempts[1].tried);
        assert_int_equal(res.attempts[1].error, -EHOSTUNREACH);
        assert_string_equal(res.attempts[2].protocol, "third");
        assert_true(res.attempts[2].tried);
        assert_int_equal(res.attempts[2].error, -ETIMEDOUT);
        assert_string_equal(res.attempts[3].protocol, "unixish");
        assert_false(res.attempts[3].candidate);
        assert_false(res.attempts[3].tried);

        /* One attempt a line; the one whose connect() returned an error at
         * once failed too, with that error. */
        char expected[512];
        snprintf(expected, sizeof(expected),
                 "first 127.0.0.1:first: failed: fake first refused (111)\n"
                 "second 127.0.0.1:second: failed: %s\n"
                 "third 127.0.0.1:third: failed: fake third refused (110)\n"
                 "unixish: not a candidate: no value for key \"unix.path\"\n",
                 strerror(EHOSTUNREACH));
        assert_string_equal(res.text, expected);
        free(res.text);

        paf_ctx_unref(ctx);
        paf_registry_unref(reg);
        sd_event_unref(e);
}

static void test_connect_success_after_two_failures(void **state) {
        (void)state;
        paf_registry *reg = NULL;
        paf_ctx *ctx = NULL;
        sd_event *e = new_event();
        fake f1, f2, ok, never, missing;
        result res = {0};

        n_order = 0;
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_ctx_new(&ctx), 0);
        fake f3;
        fake_init(&f1, "f1", 1, "t.host", LATER_FAIL, -ECONNREFUSED);
        fake_init(&f2, "f2", 2, "t.host", SYNC_FAIL, -ENETUNREACH);
        fake_init(&f3, "f3", 3, "t.host", RETURN_ERR, -EHOSTUNREACH);
        fake_init(&ok, "ok", 4, "t.host", LATER_OK, 0);
        fake_init(&never, "never", 5, "t.host", SYNC_OK, 0);
        fake_init(&missing, "missing", 0, "m.key", SYNC_OK, 0);
        fake_add(reg, &never);
        fake_add(reg, &ok);
        fake_add(reg, &f3);
        fake_add(reg, &f2);
        fake_add(reg, &f1);
        fake_add(reg, &missing);
        assert_int_equal(paf_ctx_set_string(ctx, "t.host", "h"), 0);

        assert_int_equal(paf_registry_connect(reg, ctx, e, on_connected, &res, NULL), 0);
        assert_false(res.called);
        /* The caller's references may go: the connect holds what it needs. */
        paf_ctx_unref(ctx);
        paf_registry_unref(reg);

        run_until(e, &res.called);
        assert_non_null(res.flow);
        assert_ptr_equal(paf_flow_get_impl(res.flow), &ok);
        assert_int_equal(ok.n_flows, 1);
        assert_int_equal(never.n_connect, 0);

        /* The three failures before it (one of them at once, from
         * connect()'s return), the one used, then the non-candidate; the
         * candidate after the winner was never reached and is not listed. */
        assert_int_equal(res.n, 5);
        assert_string_equal(res.attempts[0].protocol, "f1");
        assert_int_equal(res.attempts[0].error, -ECONNREFUSED);
        assert_true(res.attempts[0].tried);
        assert_string_equal(res.attempts[1].protocol, "f2");
        assert_int_equal(res.attempts[1].error, -ENETUNREACH);
        assert_string_equal(res.attempts[1].reason, "fake f2 refused (101)");
        assert_string_equal(res.attempts[2].protocol, "f3");
        assert_true(res.attempts[2].tried);
        assert_int_equal(res.attempts[2].error, -EHOSTUNREACH);
        assert_string_equal(res.attempts[3].protocol, "ok");
        assert_true(res.attempts[3].candidate && res.attempts[3].tried);
        assert_int_equal(res.attempts[3].error, 0);
        assert_string_equal(res.attempts[4].protocol, "missing");
        assert_false(res.attempts[4].candidate);
        char expected[512];
        snprintf(expected, sizeof(expected),
                 "f1 h:f1: failed: fake f1 refused (111)\n"
                 "f2 h:f2: failed: fake f2 refused (101)\n"
                 "f3 h:f3: failed: %s\n"
                 "ok h:ok: used\n"
                 "missing: not a candidate: no value for key \"m.key\"\n",
                 strerror(EHOSTUNREACH));
        assert_string_equal(res.text, expected);
        free(res.text);

        close_flow(e, res.flow);
        drain(e);
        assert_int_equal(ok.n_closed, 1);
        sd_event_unref(e);
}

static void test_connect_sync_success(void **state) {
        (void)state;
        paf_registry *reg = NULL;
        paf_ctx *ctx = NULL;
        sd_event *e = new_event();
        fake f;
        result res = {0};
        paf_connect *c = NULL;

        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_ctx_new(&ctx), 0);
        fake_init(&f, "f", 0, "t.host", SYNC_OK, 0);
        fake_add(reg, &f);
        assert_int_equal(paf_ctx_set_string(ctx, "t.host", "h"), 0);

        assert_int_equal(paf_registry_connect(reg, ctx, e, on_connected, &res, &c), 0);
        assert_non_null(c);
        assert_false(res.called);
        run_until(e, &res.called);
        /* The protocol finished inside its connect(); the handler still came
         * from the loop, once, with a flow and the attempt that made it. */
        assert_int_equal(res.n_calls, 1);
        assert_non_null(res.flow);
        assert_int_equal(res.n, 1);
        assert_true(res.attempts[0].candidate && res.attempts[0].tried);
        assert_int_equal(res.attempts[0].error, 0);
        assert_string_equal(res.text, "f h:f: used\n");
        free(res.text);
        close_flow(e, res.flow);
        drain(e);
        assert_int_equal(res.n_calls, 1);
        assert_int_equal(f.n_closed, 1);

        assert_int_equal(paf_registry_connect(NULL, ctx, e, on_connected, &res, NULL), -EINVAL);
        assert_int_equal(paf_registry_connect(reg, ctx, NULL, on_connected, &res, NULL), -EINVAL);
        assert_int_equal(paf_registry_connect(reg, ctx, e, NULL, &res, NULL), -EINVAL);

        paf_ctx_unref(ctx);
        paf_registry_unref(reg);
        sd_event_unref(e);
}

static void test_connect_no_candidate(void **state) {
        (void)state;
        paf_registry *reg = NULL;
        sd_event *e = new_event();
        fake f;
        result res = {0};

        assert_int_equal(paf_registry_new(&reg), 0);
        fake_init(&f, "f", 0, "t.host", SYNC_OK, 0);
        fake_add(reg, &f);

        assert_int_equal(paf_registry_connect(reg, NULL, e, on_connected, &res, NULL), 0);
        assert_false(res.called);
        run_until(e, &res.called);
        assert_null(res.flow);
        assert_int_equal(res.n, 1);
        assert_false(res.attempts[0].candidate);
        assert_string_equal(res.text, "f: not a candidate: no value for key \"t.host\"\n");
        free(res.text);
        assert_int_equal(f.n_connect, 0);

        /* An empty registry: called with nothing at all. */
        paf_registry *empty = NULL;
        result res2 = {0};
        assert_int_equal(paf_registry_new(&empty), 0);
        assert_int_equal(paf_registry_connect(empty, NULL, e, on_connected, &res2, NULL), 0);
        paf_registry_unref(empty);
        run_until(e, &res2.called);
        assert_null(res2.flow);
        assert_int_equal(res2.n, 0);
        free(res2.text);

        paf_registry_unref(reg);
        sd_event_unref(e);
}

/* With a cancel op the attempt is stopped; a flow it hands over anyway is closed. */
static void cancel_with_cancel_op(bool cancel_ends) {
        paf_registry *reg = NULL;
        paf_ctx *ctx = NULL;
        sd_event *e = new_event();
        fake f;
        result res = {0};
        paf_connect *c = NULL;

        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_ctx_new(&ctx), 0);
        fake_init(&f, "f", 0, "t.host", LATER_OK, 0);
        f.ops.cancel = fake_cancel;
        f.cancel_ends = cancel_ends;
        fake_add(reg, &f);
        assert_int_equal(paf_ctx_set_string(ctx, "t.host", "h"), 0);

        assert_int_equal(paf_registry_connect(reg, ctx, e, on_connected, &res, &c), 0);
        /* Let the attempt start, not finish. */
        for (int i = 0; i < 10 && f.n_connect == 0; i++)
                assert_true(sd_event_run(e, 0) >= 0);
        assert_int_equal(f.n_connect, 1);
        assert_non_null(f.req);

        paf_connect_cancel(c);
        assert_int_equal(f.n_cancel, 1);
        drain(e);
        assert_false(res.called);
        /* The timer was stopped: no flow, or only the one cancel() made, closed. */
        assert_int_equal(f.n_flows, cancel_ends ? 1 : 0);
        assert_int_equal(f.n_closed, cancel_ends ? 1 : 0);

        paf_ctx_unref(ctx);
        paf_registry_unref(reg);
        sd_event_unref(e);
}

static void test_cancel_with_cancel_op(void **state) {
        (void)state;
        cancel_with_cancel_op(false);
        cancel_with_cancel_op(true);
        paf_connect_cancel(NULL);
}

static void test_cancel_before_start(void **state) {
        (void)state;
        paf_registry *reg = NULL;
        paf_ctx *ctx = NULL;
        sd_event *e = new_event();
        fake f;
        result res = {0};
        paf_connect *c = NULL;

        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_ctx_new(&ctx), 0);
        fake_init(&f, "f", 0, "t.host", SYNC_OK, 0);
        fake_add(reg, &f);
        assert_int_equal(paf_ctx_set_string(ctx, "t.host", "h"), 0);

        assert_int_equal(paf_registry_connect(reg, ctx, e, on_connected, &res, &c), 0);
        paf_connect_cancel(c);
        drain(e);
        assert_false(res.called);
        assert_int_equal(f.n_connect, 0);

        paf_ctx_unref(ctx);
        paf_registry_unref(reg);
        sd_event_unref(e);
}

/* Without a cancel op the attempt runs on; its late result is disposed of. */
static void test_cancel_abandons(void **state) {
        (void)state;
        const mode modes[] = {LATER_OK, LATER_FAIL};

        for (size_t m = 0; m < 2; m++) {
                paf_registry *reg = NULL;
                paf_ctx *ctx = NULL;
                sd_event *e = new_event();
                fake f, next;
                result res = {0};
                paf_connect *c = NULL;

                assert_int_equal(paf_registry_new(&reg), 0);
                assert_int_equal(paf_ctx_new(&ctx), 0);
                fake_init(&f, "f", 0, "t.host", modes[m], -ECONNREFUSED);
                fake_init(&next, "next", 1, "t.host", SYNC_OK, 0);
                fake_add(reg, &f);
                fake_add(reg, &next);
                assert_int_equal(paf_ctx_set_string(ctx, "t.host", "h"), 0);

                assert_int_equal(paf_registry_connect(reg, ctx, e, on_connected, &res, &c), 0);
                for (int i = 0; i < 10 && f.n_connect == 0; i++)
                        assert_true(sd_event_run(e, 0) >= 0);
                assert_int_equal(f.n_connect, 1);
                assert_non_null(f.req);

                paf_connect_cancel(c);
                /* The request keeps the registry (the plugin's code) alive. */
                paf_ctx_unref(ctx);
                paf_registry_unref(reg);

                drain(e);
                assert_null(f.req); /* the late done() or fail() happened */
                assert_false(res.called);
                assert_int_equal(next.n_connect, 0);
                if (modes[m] == LATER_OK) {
                        assert_int_equal(f.n_flows, 1);
                        assert_int_equal(f.n_closed, 1);
                } else
                        assert_int_equal(f.n_flows, 0);
                sd_event_unref(e);
        }
}

/* Cancelling between a synchronous success and the handler closes the flow. */
static void test_cancel_after_done(void **state) {
        (void)state;
        paf_registry *reg = NULL;
        paf_ctx *ctx = NULL;
        sd_event *e = new_event();
        fake f, first;
        result res = {0};
        paf_connect *c = NULL;

        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_ctx_new(&ctx), 0);
        fake_init(&first, "first", 0, "t.host", LATER_FAIL, -ECONNREFUSED);
        fake_init(&f, "f", 1, "t.host", LATER_OK, 0);
        fake_add(reg, &first);
        fake_add(reg, &f);
        assert_int_equal(paf_ctx_set_string(ctx, "t.host", "h"), 0);

        assert_int_equal(paf_registry_connect(reg, ctx, e, on_connected, &res, &c), 0);
        /* Run until f's timer delivered its flow, then cancel before the
         * deferred step hands it over. */
        for (int i = 0; i < 1000 && f.n_flows == 0; i++)
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
        assert_int_equal(f.n_flows, 1);
        assert_false(res.called);
        paf_connect_cancel(c);
        drain(e);
        assert_false(res.called);
        assert_int_equal(f.n_closed, 1);

        paf_ctx_unref(ctx);
        paf_registry_unref(reg);
        sd_event_unref(e);
}

static void test_attempts_format(void **state) {
        (void)state;
        const paf_attempt at[] = {
                {.protocol = "tcp",
                 .endpoint = "127.0.0.1:1",
                 .candidate = true,
                 .tried = true,
                 .error = -ECONNREFUSED},
                {.protocol = "tls",
                 .endpoint = "example.org",
                 .candidate = true,
                 .tried = true,
                 .error = -EPROTO,
                 .reason = "handshake failed: certificate expired"},
                {.protocol = "vsock", .candidate = true, .tried = true, .error = 0},
                {.protocol = "unix", .reason = "no value for key \"unix.path\""},
                {.protocol = "quic", .endpoint = "h:443", .candidate = true},
        };
        char *text = paf_attempts_format(at, 5);
        char expected[512];
        snprintf(expected, sizeof(expected),
                 "tcp 127.0.0.1:1: failed: %s\n"
                 "tls example.org: failed: handshake failed: certificate expired\n"
                 "vsock: used\n"
                 "unix: not a candidate: no value for key \"unix.path\"\n"
                 "quic h:443: candidate\n",
                 strerror(ECONNREFUSED));
        assert_string_equal(text, expected);
        free(text);

        text = paf_attempts_format(NULL, 0);
        assert_string_equal(text, "");
        free(text);
        assert_null(paf_attempts_format(NULL, 2));
}

/* ---- layers ---- */

/* A layer: connects through whatever the context reaches without layers,
 * and hands that flow on (a real one would wrap it). */
typedef struct layer {
        paf_protocol_ops ops;
        const char *keys[2];
        paf_connect_request *req;
        int n_connect;
} layer;

static void on_inner(paf_flow *flow, const paf_attempt *attempts, size_t n, void *userdata) {
        layer *l = userdata;
        paf_connect_request *req = l->req;
        l->req = NULL;
        if (flow) {
                paf_connect_request_done(req, flow);
                return;
        }
        char *why = paf_attempts_format(attempts, n);
        paf_connect_request_fail(req, n > 0 ? attempts[0].error : -ENOENT, "inner: %s",
                                 why ? why : "?");
        free(why);
}

static int layer_connect(paf_connect_request *req, void *userdata) {
        layer *l = userdata;
        l->n_connect++;
        l->req = req;
        return paf_connect_request_connect_inner(req, on_inner, l, NULL);
}

static int layer_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata) {
        (void)ctx;
        (void)userdata;
        snprintf(buf, size, "over the inner endpoint");
        return 0;
}

static void layer_init(layer *l) {
        *l = (layer){0};
        l->keys[0] = "wrap.on";
        l->ops = (paf_protocol_ops){
                .struct_size = sizeof(paf_protocol_ops),
                .name = "wrap",
                .priority = 10,
                .endpoint_keys = l->keys,
                .describe = layer_describe,
                .connect = layer_connect,
                .flags = PAF_PROTOCOL_LAYER,
        };
}

static void test_layer_never_falls_back(void **state) {
        (void)state;
        paf_registry *reg = NULL;
        paf_ctx *ctx = NULL;
        sd_event *e = new_event();
        fake plain;
        layer wrap;
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_ctx_new(&ctx), 0);
        fake_init(&plain, "plain", 50, "t.host", SYNC_FAIL, -ECONNREFUSED);
        layer_init(&wrap);
        fake_add(reg, &plain);
        assert_int_equal(paf_registry_add_protocol(reg, &wrap.ops, &wrap), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "t.host", "127.0.0.1"), 0);

        /* Without the layer's key, the plain protocol is the candidate. */
        paf_resolution *res = NULL;
        assert_int_equal(paf_registry_resolve(reg, ctx, &res), 0);
        assert_int_equal(paf_resolution_get_n_candidates(res), 1);
        assert_string_equal(paf_protocol_get_name(paf_resolution_get_protocol(res, 0)), "plain");
        paf_resolution_free(res);

        /* With it, only the layer is; what it runs over says why not. */
        assert_int_equal(paf_ctx_set_bool(ctx, "wrap.on", true), 0);
        assert_int_equal(paf_registry_resolve(reg, ctx, &res), 0);
        assert_int_equal(paf_resolution_get_n_candidates(res), 1);
        assert_string_equal(paf_protocol_get_name(paf_resolution_get_protocol(res, 0)), "wrap");
        size_t n;
        const paf_attempt *a = paf_resolution_get_attempts(res, &n);
        assert_int_equal(n, 2);
        assert_string_equal(a[1].protocol, "plain");
        assert_false(a[1].candidate);
        assert_string_equal(a[1].reason, "reached through wrap, not on its own");
        paf_resolution_free(res);

        /* The inner connection fails: the whole connect fails, through the
         * layer, and the plain protocol is tried once (under the layer),
         * never again on its own. */
        result r = {0};
        assert_int_equal(paf_registry_connect(reg, ctx, e, on_connected, &r, NULL), 0);
        run_until(e, &r.called);
        drain(e);
        assert_null(r.flow);
        assert_int_equal(wrap.n_connect, 1);
        assert_int_equal(plain.n_connect, 1);
        assert_string_equal(r.attempts[0].protocol, "wrap");
        assert_true(r.attempts[0].tried);
        assert_int_equal(r.attempts[0].error, -ECONNREFUSED);
        assert_non_null(
                strstr(r.attempts[0].reason, "plain 127.0.0.1:plain: failed: fake plain refused"));
        free(r.text);

        /* The inner connection works: the layer hands out a flow. */
        plain.mode = SYNC_OK;
        r = (result){0};
        assert_int_equal(paf_registry_connect(reg, ctx, e, on_connected, &r, NULL), 0);
        run_until(e, &r.called);
        assert_non_null(r.flow);
        assert_int_equal(plain.n_connect, 2);
        /* The layer carried it; what it ran over is not one of its own. */
        assert_string_equal(r.text,
                            "wrap over the inner endpoint: used\n"
                            "plain: not a candidate: reached through wrap, not on its own\n");
        close_flow(e, r.flow);
        free(r.text);

        paf_ctx_unref(ctx);
        paf_registry_unref(reg);
        drain(e);
        sd_event_unref(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_resolve_order),
                cmocka_unit_test(test_resolve_registry_rules),
                cmocka_unit_test(test_connect_all_fail),
                cmocka_unit_test(test_connect_success_after_two_failures),
                cmocka_unit_test(test_connect_sync_success),
                cmocka_unit_test(test_connect_no_candidate),
                cmocka_unit_test(test_cancel_with_cancel_op),
                cmocka_unit_test(test_cancel_before_start),
                cmocka_unit_test(test_cancel_abandons),
                cmocka_unit_test(test_cancel_after_done),
                cmocka_unit_test(test_attempts_format),
                cmocka_unit_test(test_layer_never_falls_back),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
