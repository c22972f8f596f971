/* tests/core/test-ctx.c — the context: typed values, derivation rules, layers and lifetimes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <paf.h>

#define ELEMENTS(x) (sizeof(x) / sizeof((x)[0]))

static paf_ctx *new_ctx(void) {
        paf_ctx *ctx = NULL;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        assert_non_null(ctx);
        return ctx;
}

/* ---- values ---- */

static void test_typed_set_get(void **state) {
        (void)state;
        paf_ctx *ctx = new_ctx();
        char host[] = "example.org";
        const unsigned char blob[] = {0, 1, 2, 0, 255};
        unsigned char blob_copy[sizeof(blob)];
        int object;

        memcpy(blob_copy, blob, sizeof(blob));
        assert_int_equal(paf_ctx_set_string(ctx, "tcp.host", host), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "tcp.port", -8080), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "big", INT64_MAX), 0);
        assert_int_equal(paf_ctx_set_bool(ctx, "tls.verify", true), 0);
        assert_int_equal(paf_ctx_set_bytes(ctx, "tls.key", blob_copy, sizeof(blob_copy)), 0);
        assert_int_equal(paf_ctx_set_bytes(ctx, "empty", NULL, 0), 0);
        assert_int_equal(paf_ctx_set_pointer(ctx, "obj", &object, NULL), 0);
        assert_int_equal(paf_ctx_set(ctx, "via.set", &PAF_VALUE_STRING("generic")), 0);

        /* Setters copy: changing the caller's buffers changes nothing. */
        host[0] = 'X';
        memset(blob_copy, 0xAA, sizeof(blob_copy));

        const char *s = NULL;
        int64_t i = 0;
        bool b = false;
        const void *d = NULL;
        size_t n = 0;
        void *p = NULL;

        assert_int_equal(paf_ctx_get_string(ctx, "tcp.host", &s), 0);
        assert_string_equal(s, "example.org");
        assert_ptr_not_equal(s, host);
        assert_int_equal(paf_ctx_get_int(ctx, "tcp.port", &i), 0);
        assert_int_equal(i, -8080);
        assert_int_equal(paf_ctx_get_int(ctx, "big", &i), 0);
        assert_true(i == INT64_MAX);
        assert_int_equal(paf_ctx_get_bool(ctx, "tls.verify", &b), 0);
        assert_true(b);
        assert_int_equal(paf_ctx_get_bytes(ctx, "tls.key", &d, &n), 0);
        assert_int_equal(n, sizeof(blob));
        assert_memory_equal(d, blob, sizeof(blob));
        assert_int_equal(paf_ctx_get_bytes(ctx, "empty", &d, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(paf_ctx_get_pointer(ctx, "obj", &p), 0);
        assert_ptr_equal(p, &object);
        assert_int_equal(paf_ctx_get_string(ctx, "via.set", &s), 0);
        assert_string_equal(s, "generic");

        paf_value v;
        assert_int_equal(paf_ctx_get(ctx, "tcp.port", &v), 0);
        assert_int_equal(v.type, PAF_TYPE_INT);
        assert_int_equal(v.integer, -8080);
        assert_int_equal(paf_ctx_get(ctx, "tls.verify", &v), 0);
        assert_int_equal(v.type, PAF_TYPE_BOOL);
        assert_int_equal(paf_ctx_get(ctx, "tls.key", &v), 0);
        assert_int_equal(v.type, PAF_TYPE_BYTES);
        assert_int_equal(v.bytes.size, sizeof(blob));

        /* Overwrite with another type: the new type is what the key holds. */
        assert_int_equal(paf_ctx_set_int(ctx, "tcp.host", 1), 0);
        assert_int_equal(paf_ctx_get_int(ctx, "tcp.host", &i), 0);
        assert_int_equal(i, 1);

        paf_ctx_unref(ctx);
}

static void test_type_mismatch_and_missing(void **state) {
        (void)state;
        paf_ctx *ctx = new_ctx();
        int64_t i = 42;
        const char *s = "untouched";
        bool b;

        assert_int_equal(paf_ctx_get_error(ctx)[0], '\0');
        assert_int_equal(paf_ctx_set_string(ctx, "tcp.port", "80"), 0);
        assert_int_equal(paf_ctx_get_int(ctx, "tcp.port", &i), -EPROTOTYPE);
        assert_int_equal(i, 42); /* a failed get leaves *ret alone */
        assert_string_equal(paf_ctx_get_error(ctx),
                            "key \"tcp.port\" holds a string, not an integer");

        assert_int_equal(paf_ctx_set_bool(ctx, "flag", false), 0);
        assert_int_equal(paf_ctx_get_string(ctx, "flag", &s), -EPROTOTYPE);
        assert_string_equal(s, "untouched");
        assert_string_equal(paf_ctx_get_error(ctx), "key \"flag\" holds a boolean, not a string");

        assert_int_equal(paf_ctx_get_bool(ctx, "unix.path", &b), -ENOENT);
        assert_string_equal(paf_ctx_get_error(ctx), "no value for key \"unix.path\"");
        assert_int_equal(paf_ctx_has(ctx, "unix.path"), 0);
        assert_int_equal(paf_ctx_has(ctx, "tcp.port"), 1);

        paf_ctx_unref(ctx);
}

static void test_invalid_arguments(void **state) {
        (void)state;
        paf_ctx *ctx = new_ctx();
        const char *s;
        paf_value v;

        assert_int_equal(paf_ctx_new(NULL), -EINVAL);
        assert_int_equal(paf_ctx_set_string(ctx, "", "x"), -EINVAL);
        assert_int_equal(paf_ctx_set_string(ctx, NULL, "x"), -EINVAL);
        assert_int_equal(paf_ctx_set_string(ctx, "a b", "x"), -EINVAL);
        assert_int_equal(paf_ctx_set_string(ctx, "a\tb", "x"), -EINVAL);
        assert_int_equal(paf_ctx_set_string(ctx, "a\nb", "x"), -EINVAL);
        assert_int_equal(paf_ctx_set_string(ctx, "caf\xc3\xa9", "x"), -EINVAL);
        assert_int_equal(paf_ctx_set_string(ctx, "ok", NULL), -EINVAL);
        assert_int_equal(paf_ctx_set_string(NULL, "ok", "x"), -EINVAL);
        assert_int_equal(paf_ctx_set_bytes(ctx, "ok", NULL, 3), -EINVAL);
        assert_int_equal(paf_ctx_set(ctx, "ok", &(paf_value){.type = PAF_TYPE_NONE}), -EINVAL);
        assert_int_equal(paf_ctx_set(ctx, "ok", NULL), -EINVAL);
        assert_int_equal(paf_ctx_get_string(ctx, "a b", &s), -EINVAL);
        assert_int_equal(paf_ctx_get_string(ctx, "ok", NULL), -EINVAL);
        assert_int_equal(paf_ctx_get(NULL, "ok", &v), -EINVAL);
        assert_int_equal(paf_ctx_has(ctx, ""), -EINVAL);
        assert_int_equal(paf_ctx_remove(ctx, "a b"), -EINVAL);
        assert_int_equal(paf_ctx_new_layered(NULL, NULL, NULL), -EINVAL);

        /* Nothing was stored by the refused calls. */
        assert_int_equal(paf_ctx_has(ctx, "ok"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.scheme", "https"), 0);

        assert_null(paf_ctx_unref(NULL));
        assert_null(paf_ctx_ref(NULL));
        assert_string_equal(paf_ctx_get_error(NULL), "");
        assert_ptr_equal(paf_ctx_ref(ctx), ctx);
        assert_null(paf_ctx_unref(ctx));
        /* Still alive: one reference left. */
        assert_int_equal(paf_ctx_get_string(ctx, "url.scheme", &s), 0);
        assert_string_equal(s, "https");
        assert_null(paf_ctx_unref(ctx));
}

/* ---- rules ---- */

/* What a rule handler saw, and how it should answer. */
typedef struct probe {
        int calls;
        size_t n_inputs;
        paf_value inputs[4];
        char strings[4][64];
        int answer; /* the handler's return value */
        paf_value out;
} probe;

static int probe_rule(const paf_value *inputs, size_t n_inputs, paf_value *ret, void *userdata) {
        probe *p = userdata;
        p->calls++;
        p->n_inputs = n_inputs;
        for (size_t i = 0; i < n_inputs && i < 4; i++) {
                p->inputs[i] = inputs[i];
                if (inputs[i].type == PAF_TYPE_STRING) {
                        snprintf(p->strings[i], sizeof(p->strings[i]), "%s", inputs[i].string);
                        p->inputs[i].string = p->strings[i];
                }
        }
        if (p->answer > 0)
                *ret = p->out;
        return p->answer;
}

static void test_rule_inputs(void **state) {
        (void)state;
        paf_ctx *ctx = new_ctx();
        probe p = {.answer = 1, .out = PAF_VALUE_STRING("derived")};
        const paf_rule_input inputs[] = {
                PAF_REQUIRED("url.host", PAF_TYPE_STRING),
                PAF_OPTIONAL("url.port", PAF_TYPE_INT),
                PAF_DEFAULT("url.scheme", PAF_VALUE_STRING("http")),
                PAF_DEFAULT("tls", PAF_VALUE_BOOL(true)),
        };
        const char *s;

        assert_int_equal(paf_ctx_add_rule(ctx, "endpoint", PAF_TYPE_STRING, inputs,
                                          ELEMENTS(inputs), probe_rule, &p, NULL),
                         0);

        /* Required input missing: the rule is skipped, nothing answers. */
        assert_int_equal(paf_ctx_get_string(ctx, "endpoint", &s), -ENOENT);
        assert_int_equal(p.calls, 0);
        assert_non_null(strstr(paf_ctx_get_error(ctx), "no value for key \"endpoint\""));
        assert_non_null(strstr(paf_ctx_get_error(ctx), "url.host"));
        assert_int_equal(paf_ctx_has(ctx, "endpoint"), 0);

        /* Required present, optional and defaulted missing. */
        assert_int_equal(paf_ctx_set_string(ctx, "url.host", "example.org"), 0);
        assert_int_equal(paf_ctx_get_string(ctx, "endpoint", &s), 0);
        assert_string_equal(s, "derived");
        assert_int_equal(p.calls, 1);
        assert_int_equal(p.n_inputs, 4);
        assert_int_equal(p.inputs[0].type, PAF_TYPE_STRING);
        assert_string_equal(p.inputs[0].string, "example.org");
        assert_int_equal(p.inputs[1].type, PAF_TYPE_NONE);
        assert_int_equal(p.inputs[2].type, PAF_TYPE_STRING);
        assert_string_equal(p.inputs[2].string, "http");
        assert_int_equal(p.inputs[3].type, PAF_TYPE_BOOL);
        assert_true(p.inputs[3].boolean);

        /* Everything present: the values, not the defaults. */
        assert_int_equal(paf_ctx_set_int(ctx, "url.port", 8443), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.scheme", "https"), 0);
        assert_int_equal(paf_ctx_set_bool(ctx, "tls", false), 0);
        assert_int_equal(paf_ctx_get_string(ctx, "endpoint", &s), 0);
        assert_int_equal(p.calls, 2);
        assert_int_equal(p.inputs[1].type, PAF_TYPE_INT);
        assert_int_equal(p.inputs[1].integer, 8443);
        assert_string_equal(p.inputs[2].string, "https");
        assert_false(p.inputs[3].boolean);

        /* An input holding the wrong type is an error, not a skip. */
        assert_int_equal(paf_ctx_set_string(ctx, "url.port", "8443"), 0);
        assert_int_equal(paf_ctx_get_string(ctx, "endpoint", &s), -EPROTOTYPE);
        assert_int_equal(p.calls, 2);
        assert_string_equal(
                paf_ctx_get_error(ctx),
                "rule for key \"endpoint\": key \"url.port\" holds a string, not an integer");
        assert_int_equal(paf_ctx_has(ctx, "endpoint"), -EPROTOTYPE);

        paf_ctx_unref(ctx);
}

static void test_rule_bad_arguments(void **state) {
        (void)state;
        paf_ctx *ctx = new_ctx();
        probe p = {0};
        const paf_rule_input bad_key[] = {PAF_REQUIRED("a b", PAF_TYPE_INT)};
        const paf_rule_input bad_type[] = {PAF_REQUIRED("a", PAF_TYPE_NONE)};
        const paf_rule_input bad_default[] = {{.key = "a",
                                               .type = PAF_TYPE_INT,
                                               .kind = PAF_INPUT_DEFAULT,
                                               .value = PAF_VALUE_STRING("x")}};
        const paf_rule_input ok[] = {PAF_REQUIRED("a", PAF_TYPE_INT)};

        assert_int_equal(paf_ctx_add_rule(ctx, "k", PAF_TYPE_INT, bad_key, 1, probe_rule, &p, NULL),
                         -EINVAL);
        assert_int_equal(
                paf_ctx_add_rule(ctx, "k", PAF_TYPE_INT, bad_type, 1, probe_rule, &p, NULL),
                -EINVAL);
        assert_int_equal(
                paf_ctx_add_rule(ctx, "k", PAF_TYPE_INT, bad_default, 1, probe_rule, &p, NULL),
                -EINVAL);
        assert_int_equal(paf_ctx_add_rule(ctx, "k", PAF_TYPE_NONE, ok, 1, probe_rule, &p, NULL),
                         -EINVAL);
        assert_int_equal(paf_ctx_add_rule(ctx, "k", PAF_TYPE_INT, ok, 1, NULL, &p, NULL), -EINVAL);
        assert_int_equal(paf_ctx_add_rule(ctx, "k", PAF_TYPE_INT, NULL, 1, probe_rule, &p, NULL),
                         -EINVAL);
        assert_int_equal(paf_ctx_add_rule(ctx, "", PAF_TYPE_INT, ok, 1, probe_rule, &p, NULL),
                         -EINVAL);
        assert_int_equal(paf_ctx_has(ctx, "k"), 0);

        /* A rule without inputs is fine: it always runs. */
        p = (probe){.answer = 1, .out = PAF_VALUE_INT(7)};
        int64_t i;
        assert_int_equal(paf_ctx_add_rule(ctx, "k", PAF_TYPE_INT, NULL, 0, probe_rule, &p, NULL),
                         0);
        assert_int_equal(paf_ctx_get_int(ctx, "k", &i), 0);
        assert_int_equal(i, 7);
        assert_int_equal(p.n_inputs, 0);

        paf_ctx_unref(ctx);
}

static void test_newest_wins(void **state) {
        (void)state;
        paf_ctx *ctx = new_ctx();
        probe p = {.answer = 1, .out = PAF_VALUE_STRING("from-rule")};
        const char *s;

        /* value then value */
        assert_int_equal(paf_ctx_set_string(ctx, "k", "first"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "k", "second"), 0);
        assert_int_equal(paf_ctx_get_string(ctx, "k", &s), 0);
        assert_string_equal(s, "second");

        /* value then rule: the rule answers */
        assert_int_equal(paf_ctx_add_rule(ctx, "k", PAF_TYPE_STRING, NULL, 0, probe_rule, &p, NULL),
                         0);
        assert_int_equal(paf_ctx_get_string(ctx, "k", &s), 0);
        assert_string_equal(s, "from-rule");
        assert_int_equal(p.calls, 1);

        /* rule then value: the value answers, the rule is not run */
        assert_int_equal(paf_ctx_set_string(ctx, "k", "third"), 0);
        assert_int_equal(paf_ctx_get_string(ctx, "k", &s), 0);
        assert_string_equal(s, "third");
        assert_int_equal(p.calls, 1);

        paf_ctx_unref(ctx);
}

static void test_skipped_and_declining_rules(void **state) {
        (void)state;
        paf_ctx *ctx = new_ctx();
        probe needs = {.answer = 1, .out = PAF_VALUE_INT(1)};
        probe declines = {.answer = 0};
        const paf_rule_input in[] = {PAF_REQUIRED("missing", PAF_TYPE_INT)};
        int64_t i;

        assert_int_equal(paf_ctx_set_int(ctx, "port", 80), 0);
        assert_int_equal(
                paf_ctx_add_rule(ctx, "port", PAF_TYPE_INT, in, 1, probe_rule, &needs, NULL), 0);
        assert_int_equal(
                paf_ctx_add_rule(ctx, "port", PAF_TYPE_INT, NULL, 0, probe_rule, &declines, NULL),
                0);

        /* Newest (declining) first, then the one missing an input, then the value. */
        assert_int_equal(paf_ctx_get_int(ctx, "port", &i), 0);
        assert_int_equal(i, 80);
        assert_int_equal(declines.calls, 1);
        assert_int_equal(needs.calls, 0);
        assert_int_equal(paf_ctx_has(ctx, "port"), 1);

        /* Once the input exists, the older rule runs and answers. */
        assert_int_equal(paf_ctx_set_int(ctx, "missing", 5), 0);
        assert_int_equal(paf_ctx_get_int(ctx, "port", &i), 0);
        assert_int_equal(i, 1);
        assert_int_equal(needs.calls, 1);
        assert_int_equal(needs.inputs[0].integer, 5);

        /* Only declining rules: the key has no value. */
        assert_int_equal(
                paf_ctx_add_rule(ctx, "other", PAF_TYPE_INT, NULL, 0, probe_rule, &declines, NULL),
                0);
        assert_int_equal(paf_ctx_has(ctx, "other"), 0);
        assert_int_equal(paf_ctx_get_int(ctx, "other", &i), -ENOENT);

        paf_ctx_unref(ctx);
}

static void test_rule_errors(void **state) {
        (void)state;
        paf_ctx *ctx = new_ctx();
        probe fails = {.answer = -EACCES};
        probe wrong = {.answer = 1, .out = PAF_VALUE_INT(3)};
        probe null_string = {.answer = 1, .out = {.type = PAF_TYPE_STRING, .string = NULL}};
        const char *s;

        /* An error is not a decline: the older value is not reached. */
        assert_int_equal(paf_ctx_set_string(ctx, "a", "older"), 0);
        assert_int_equal(
                paf_ctx_add_rule(ctx, "a", PAF_TYPE_STRING, NULL, 0, probe_rule, &fails, NULL), 0);
        assert_int_equal(paf_ctx_get_string(ctx, "a", &s), -EACCES);
        assert_non_null(strstr(paf_ctx_get_error(ctx), "rule for key \"a\" failed"));
        assert_int_equal(paf_ctx_has(ctx, "a"), -EACCES);

        /* It propagates through a rule that needs it. */
        const paf_rule_input in[] = {PAF_OPTIONAL("a", PAF_TYPE_STRING)};
        probe outer = {.answer = 1, .out = PAF_VALUE_STRING("x")};
        assert_int_equal(
                paf_ctx_add_rule(ctx, "b", PAF_TYPE_STRING, in, 1, probe_rule, &outer, NULL), 0);
        assert_int_equal(paf_ctx_get_string(ctx, "b", &s), -EACCES);
        assert_int_equal(outer.calls, 0);

        /* A rule producing another type than it declared. */
        assert_int_equal(
                paf_ctx_add_rule(ctx, "c", PAF_TYPE_STRING, NULL, 0, probe_rule, &wrong, NULL), 0);
        assert_int_equal(paf_ctx_get_string(ctx, "c", &s), -EPROTOTYPE);
        assert_string_equal(paf_ctx_get_error(ctx),
                            "rule for key \"c\" produced an integer, not a string");

        assert_int_equal(paf_ctx_add_rule(ctx, "d", PAF_TYPE_STRING, NULL, 0, probe_rule,
                                          &null_string, NULL),
                         0);
        assert_true(paf_ctx_get_string(ctx, "d", &s) < 0);

        /* Reading a rule's key as another type than the rule's. */
        int64_t i;
        probe str = {.answer = 1, .out = PAF_VALUE_STRING("s")};
        assert_int_equal(
                paf_ctx_add_rule(ctx, "e", PAF_TYPE_STRING, NULL, 0, probe_rule, &str, NULL), 0);
        assert_int_equal(paf_ctx_get_int(ctx, "e", &i), -EPROTOTYPE);
        assert_string_equal(paf_ctx_get_error(ctx), "key \"e\" holds a string, not an integer");

        paf_ctx_unref(ctx);
}

static void test_cycles(void **state) {
        (void)state;
        paf_ctx *ctx = new_ctx();
        probe pa = {.answer = 1, .out = PAF_VALUE_INT(1)}, pb = pa, px = pa, py = pa, pz = pa,
              self = pa;
        const paf_rule_input from_a[] = {PAF_REQUIRED("a", PAF_TYPE_INT)};
        const paf_rule_input from_b[] = {PAF_REQUIRED("b", PAF_TYPE_INT)};
        const paf_rule_input from_x[] = {PAF_OPTIONAL("x", PAF_TYPE_INT)};
        const paf_rule_input from_y[] = {PAF_DEFAULT("y", PAF_VALUE_INT(0))};
        const paf_rule_input from_z[] = {PAF_REQUIRED("z", PAF_TYPE_INT)};
        const paf_rule_input from_s[] = {PAF_REQUIRED("s", PAF_TYPE_INT)};
        int64_t i;

        /* a <- b, b <- a */
        assert_int_equal(paf_ctx_add_rule(ctx, "a", PAF_TYPE_INT, from_b, 1, probe_rule, &pa, NULL),
                         0);
        assert_int_equal(paf_ctx_add_rule(ctx, "b", PAF_TYPE_INT, from_a, 1, probe_rule, &pb, NULL),
                         0);
        assert_int_equal(paf_ctx_get_int(ctx, "a", &i), -ELOOP);
        assert_string_equal(paf_ctx_get_error(ctx), "derivation cycle: a -> b -> a");
        assert_int_equal(paf_ctx_get_int(ctx, "b", &i), -ELOOP);
        assert_string_equal(paf_ctx_get_error(ctx), "derivation cycle: b -> a -> b");
        assert_int_equal(paf_ctx_has(ctx, "a"), -ELOOP);

        /* x <- y <- z <- x, through optional and defaulted inputs too */
        assert_int_equal(paf_ctx_add_rule(ctx, "x", PAF_TYPE_INT, from_y, 1, probe_rule, &px, NULL),
                         0);
        assert_int_equal(paf_ctx_add_rule(ctx, "y", PAF_TYPE_INT, from_z, 1, probe_rule, &py, NULL),
                         0);
        assert_int_equal(paf_ctx_add_rule(ctx, "z", PAF_TYPE_INT, from_x, 1, probe_rule, &pz, NULL),
                         0);
        assert_int_equal(paf_ctx_get_int(ctx, "y", &i), -ELOOP);
        assert_string_equal(paf_ctx_get_error(ctx), "derivation cycle: y -> z -> x -> y");

        /* A key reached by a cycle from a key outside it. */
        assert_int_equal(paf_ctx_add_rule(ctx, "outer", PAF_TYPE_INT,
                                          (const paf_rule_input[]){PAF_REQUIRED("x", PAF_TYPE_INT)},
                                          1, probe_rule, &pa, NULL),
                         0);
        assert_int_equal(paf_ctx_get_int(ctx, "outer", &i), -ELOOP);
        assert_string_equal(paf_ctx_get_error(ctx), "derivation cycle: x -> y -> z -> x");

        /* s <- s */
        assert_int_equal(
                paf_ctx_add_rule(ctx, "s", PAF_TYPE_INT, from_s, 1, probe_rule, &self, NULL), 0);
        assert_int_equal(paf_ctx_get_int(ctx, "s", &i), -ELOOP);
        assert_string_equal(paf_ctx_get_error(ctx), "derivation cycle: s -> s");

        /* Reported, never looped: no handler in a cycle ever ran. */
        assert_int_equal(pa.calls + pb.calls + px.calls + py.calls + pz.calls + self.calls, 0);

        /* Breaking the cycle with a newer value makes everything readable. */
        assert_int_equal(paf_ctx_set_int(ctx, "z", 9), 0);
        assert_int_equal(paf_ctx_get_int(ctx, "x", &i), 0);
        assert_int_equal(i, 1);
        assert_int_equal(py.calls, 1);
        assert_int_equal(py.inputs[0].integer, 9);

        paf_ctx_unref(ctx);
}

/* A chain longer than any sane derivation is refused, not recursed into. */
static void test_deep_chain(void **state) {
        (void)state;
        paf_ctx *ctx = new_ctx();
        probe p = {.answer = 1, .out = PAF_VALUE_INT(1)};
        char key[32], input[32];
        int64_t i;

        for (int n = 0; n < 200; n++) {
                snprintf(key, sizeof(key), "k%d", n);
                snprintf(input, sizeof(input), "k%d", n + 1);
                const paf_rule_input in[] = {PAF_REQUIRED(input, PAF_TYPE_INT)};
                assert_int_equal(
                        paf_ctx_add_rule(ctx, key, PAF_TYPE_INT, in, 1, probe_rule, &p, NULL), 0);
        }
        assert_int_equal(paf_ctx_set_int(ctx, "k200", 0), 0);
        assert_int_equal(paf_ctx_get_int(ctx, "k0", &i), -ELOOP);
        assert_non_null(strstr(paf_ctx_get_error(ctx), "deep"));
        /* A short chain in the same context works. */
        assert_int_equal(paf_ctx_get_int(ctx, "k190", &i), 0);
        assert_int_equal(i, 1);

        paf_ctx_unref(ctx);
}

static int concat_rule(const paf_value *inputs, size_t n_inputs, paf_value *ret, void *userdata) {
        (void)userdata;
        /* Not the stack: the context copies the result after we returned. */
        static char buf[256];
        buf[0] = '\0';
        for (size_t i = 0; i < n_inputs; i++) {
                if (inputs[i].type != PAF_TYPE_STRING)
                        continue;
                if (*buf)
                        strncat(buf, "+", sizeof(buf) - strlen(buf) - 1);
                strncat(buf, inputs[i].string, sizeof(buf) - strlen(buf) - 1);
        }
        *ret = PAF_VALUE_STRING(buf);
        return 1;
}

static void test_layered(void **state) {
        (void)state;
        paf_ctx *top = new_ctx(), *bottom = new_ctx(), *l = NULL;
        const paf_rule_input from_url[] = {PAF_REQUIRED("url.host", PAF_TYPE_STRING)};
        const char *s;

        assert_int_equal(paf_ctx_set_string(top, "shared", "top"), 0);
        assert_int_equal(paf_ctx_set_string(bottom, "shared", "bottom"), 0);
        assert_int_equal(paf_ctx_set_string(bottom, "only.bottom", "b"), 0);
        assert_int_equal(paf_ctx_set_string(top, "url.host", "example.org"), 0);
        /* The bottom's rule reads its input from the whole layered view. */
        assert_int_equal(paf_ctx_add_rule(bottom, "tcp.host", PAF_TYPE_STRING, from_url, 1,
                                          concat_rule, NULL, NULL),
                         0);

        assert_int_equal(paf_ctx_new_layered(top, bottom, &l), 0);
        /* Both layers are referenced by l. */
        paf_ctx_unref(top);
        paf_ctx_unref(bottom);

        assert_int_equal(paf_ctx_get_string(l, "shared", &s), 0);
        assert_string_equal(s, "top");
        assert_int_equal(paf_ctx_get_string(l, "only.bottom", &s), 0);
        assert_string_equal(s, "b");
        assert_int_equal(paf_ctx_get_string(l, "tcp.host", &s), 0);
        assert_string_equal(s, "example.org");
        /* Alone, the bottom cannot derive it: its input is in the top. */
        assert_int_equal(paf_ctx_has(bottom, "tcp.host"), 0);

        /* The layered context's own entries come first; writes stay in it. */
        assert_int_equal(paf_ctx_set_string(l, "shared", "own"), 0);
        assert_int_equal(paf_ctx_set_string(l, "url.host", "own.example"), 0);
        assert_int_equal(paf_ctx_get_string(l, "shared", &s), 0);
        assert_string_equal(s, "own");
        assert_int_equal(paf_ctx_get_string(l, "tcp.host", &s), 0);
        assert_string_equal(s, "own.example");
        assert_int_equal(paf_ctx_get_string(top, "shared", &s), 0);
        assert_string_equal(s, "top");
        assert_int_equal(paf_ctx_get_string(top, "url.host", &s), 0);
        assert_string_equal(s, "example.org");

        /* Removing from the layered context uncovers the layers again. */
        assert_int_equal(paf_ctx_remove(l, "shared"), 1);
        assert_int_equal(paf_ctx_get_string(l, "shared", &s), 0);
        assert_string_equal(s, "top");

        /* Layers of layers: own, then top's (with its own layers), then bottom. */
        paf_ctx *outer = NULL, *lowest = new_ctx();
        assert_int_equal(paf_ctx_set_string(lowest, "shared", "lowest"), 0);
        assert_int_equal(paf_ctx_set_string(lowest, "only.lowest", "z"), 0);
        assert_int_equal(paf_ctx_new_layered(l, lowest, &outer), 0);
        assert_int_equal(paf_ctx_get_string(outer, "shared", &s), 0);
        assert_string_equal(s, "top");
        assert_int_equal(paf_ctx_get_string(outer, "only.lowest", &s), 0);
        assert_string_equal(s, "z");
        assert_int_equal(paf_ctx_get_string(outer, "only.bottom", &s), 0);
        assert_string_equal(s, "b");

        /* NULL layers are allowed. */
        paf_ctx *lone = NULL;
        assert_int_equal(paf_ctx_new_layered(NULL, NULL, &lone), 0);
        assert_int_equal(paf_ctx_has(lone, "shared"), 0);
        paf_ctx_unref(lone);

        paf_ctx_unref(outer);
        paf_ctx_unref(lowest);
        paf_ctx_unref(l);
}

/* ---- lifetimes ---- */

static int destroyed[8];

static void count_destroy(void *p) {
        destroyed[(int *)p - destroyed]++;
}

static void test_pointer_destructors(void **state) {
        (void)state;
        memset(destroyed, 0, sizeof(destroyed));
        paf_ctx *ctx = new_ctx();
        void *p;

        /* Replaced */
        assert_int_equal(paf_ctx_set_pointer(ctx, "obj", &destroyed[0], count_destroy), 0);
        assert_int_equal(paf_ctx_set_pointer(ctx, "obj", &destroyed[1], count_destroy), 0);
        assert_int_equal(destroyed[0], 1);
        assert_int_equal(destroyed[1], 0);
        assert_int_equal(paf_ctx_get_pointer(ctx, "obj", &p), 0);
        assert_ptr_equal(p, &destroyed[1]);

        /* Replaced by a value of another type */
        assert_int_equal(paf_ctx_set_int(ctx, "obj", 3), 0);
        assert_int_equal(destroyed[1], 1);

        /* Removed */
        assert_int_equal(paf_ctx_set_pointer(ctx, "obj2", &destroyed[2], count_destroy), 0);
        assert_int_equal(paf_ctx_remove(ctx, "obj2"), 1);
        assert_int_equal(destroyed[2], 1);
        assert_int_equal(paf_ctx_remove(ctx, "obj2"), 0);

        /* Set again to the same pointer: still alive, destroyed once in the end. */
        assert_int_equal(paf_ctx_set_pointer(ctx, "same", &destroyed[3], count_destroy), 0);
        assert_int_equal(paf_ctx_set_pointer(ctx, "same", &destroyed[3], count_destroy), 0);
        assert_int_equal(destroyed[3], 0);

        /* A rule added on top does not release the value under it. */
        probe pr = {.answer = 0};
        assert_int_equal(paf_ctx_set_pointer(ctx, "under", &destroyed[4], count_destroy), 0);
        assert_int_equal(
                paf_ctx_add_rule(ctx, "under", PAF_TYPE_POINTER, NULL, 0, probe_rule, &pr, NULL),
                0);
        assert_int_equal(destroyed[4], 0);
        assert_int_equal(paf_ctx_get_pointer(ctx, "under", &p), 0);
        assert_ptr_equal(p, &destroyed[4]);

        /* Rule userdata: released when the rule goes. */
        assert_int_equal(paf_ctx_add_rule(ctx, "r1", PAF_TYPE_INT, NULL, 0, probe_rule,
                                          &destroyed[5], count_destroy),
                         0);
        assert_int_equal(paf_ctx_set_int(ctx, "r1", 1), 0); /* a value hides it for good */
        assert_int_equal(destroyed[5], 1);
        assert_int_equal(paf_ctx_add_rule(ctx, "r2", PAF_TYPE_INT, NULL, 0, probe_rule,
                                          &destroyed[6], count_destroy),
                         0);
        assert_int_equal(paf_ctx_remove(ctx, "r2"), 1);
        assert_int_equal(destroyed[6], 1);
        assert_int_equal(paf_ctx_add_rule(ctx, "r3", PAF_TYPE_INT, NULL, 0, probe_rule,
                                          &destroyed[7], count_destroy),
                         0);
        /* A refused rule does not take its userdata. */
        assert_int_equal(paf_ctx_add_rule(ctx, "bad key", PAF_TYPE_INT, NULL, 0, probe_rule,
                                          &destroyed[7], count_destroy),
                         -EINVAL);
        assert_int_equal(destroyed[7], 0);

        /* A derived pointer is not the context's to release. */
        static int borrowed;
        probe ptr = {.answer = 1, .out = {.type = PAF_TYPE_POINTER, .pointer = &borrowed}};
        assert_int_equal(paf_ctx_add_rule(ctx, "derived.ptr", PAF_TYPE_POINTER, NULL, 0, probe_rule,
                                          &ptr, NULL),
                         0);
        assert_int_equal(paf_ctx_get_pointer(ctx, "derived.ptr", &p), 0);
        assert_ptr_equal(p, &borrowed);

        /* A reference keeps everything alive; the last one releases it all. */
        paf_ctx_ref(ctx);
        paf_ctx_unref(ctx);
        assert_int_equal(destroyed[3] + destroyed[4] + destroyed[7], 0);
        paf_ctx_unref(ctx);
        int expected[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        assert_memory_equal(destroyed, expected, sizeof(expected));
}

typedef struct counter_rule {
        int calls;
        const char *answers[4];
} counter_rule;

/* Answers answers[calls], a different string on each read when asked to. */
static int changing_rule(const paf_value *inputs, size_t n_inputs, paf_value *ret, void *userdata) {
        (void)inputs;
        (void)n_inputs;
        counter_rule *c = userdata;
        *ret = PAF_VALUE_STRING(c->answers[c->calls++ % 4]);
        return 1;
}

static int bytes_rule(const paf_value *inputs, size_t n_inputs, paf_value *ret, void *userdata) {
        (void)n_inputs;
        (void)userdata;
        static unsigned char buf[16];
        memset(buf, inputs[0].integer, sizeof(buf));
        *ret = (paf_value){.type = PAF_TYPE_BYTES, .bytes = {.data = buf, .size = sizeof(buf)}};
        return 1;
}

static void test_derived_values_stay_valid(void **state) {
        (void)state;
        paf_ctx *bottom = new_ctx(), *l = NULL;
        counter_rule same = {.answers = {"stable", "stable", "stable", "stable"}};
        counter_rule changes = {.answers = {"one", "two", "two", "three"}};
        const paf_rule_input parts[] = {PAF_REQUIRED("p1", PAF_TYPE_STRING),
                                        PAF_REQUIRED("p2", PAF_TYPE_STRING)};
        const paf_rule_input fill[] = {PAF_DEFAULT("fill", PAF_VALUE_INT(0x5a))};
        const char *s1, *s2, *s3;

        assert_int_equal(paf_ctx_add_rule(bottom, "same", PAF_TYPE_STRING, NULL, 0, changing_rule,
                                          &same, NULL),
                         0);
        assert_int_equal(paf_ctx_add_rule(bottom, "changes", PAF_TYPE_STRING, NULL, 0,
                                          changing_rule, &changes, NULL),
                         0);
        assert_int_equal(paf_ctx_add_rule(bottom, "p1", PAF_TYPE_STRING, NULL, 0, changing_rule,
                                          &same, NULL),
                         0);
        assert_int_equal(paf_ctx_set_string(bottom, "p2", "x"), 0);
        assert_int_equal(paf_ctx_add_rule(bottom, "joined", PAF_TYPE_STRING, parts, 2, concat_rule,
                                          NULL, NULL),
                         0);
        assert_int_equal(
                paf_ctx_add_rule(bottom, "blob", PAF_TYPE_BYTES, fill, 1, bytes_rule, NULL, NULL),
                0);
        assert_int_equal(paf_ctx_new_layered(NULL, bottom, &l), 0);

        /* Equal results: the same storage, still valid after further reads. */
        assert_int_equal(paf_ctx_get_string(l, "same", &s1), 0);
        assert_int_equal(paf_ctx_get_string(l, "joined", &s3), 0);
        assert_string_equal(s3, "stable+x");
        assert_int_equal(paf_ctx_get_string(l, "same", &s2), 0);
        assert_ptr_equal(s1, s2);
        assert_string_equal(s1, "stable");
        assert_string_equal(s3, "stable+x");

        /* A derived string outlives the call and unrelated reads. */
        assert_int_equal(paf_ctx_get_string(l, "changes", &s1), 0);
        assert_string_equal(s1, "one");
        assert_int_equal(paf_ctx_get_string(l, "joined", &s2), 0);
        assert_int_equal(paf_ctx_has(l, "same"), 1);
        assert_string_equal(s1, "one");
        /* A different result replaces it; an equal one keeps the pointer. */
        assert_int_equal(paf_ctx_get_string(l, "changes", &s1), 0);
        assert_string_equal(s1, "two");
        assert_int_equal(paf_ctx_get_string(l, "changes", &s2), 0);
        assert_ptr_equal(s1, s2);
        assert_string_equal(s2, "two");

        /* Derived bytes too. */
        const void *d1, *d2;
        size_t n1, n2;
        unsigned char expected[16];
        memset(expected, 0x5a, sizeof(expected));
        assert_int_equal(paf_ctx_get_bytes(l, "blob", &d1, &n1), 0);
        assert_int_equal(paf_ctx_get_string(l, "joined", &s2), 0);
        assert_int_equal(paf_ctx_get_bytes(l, "blob", &d2, &n2), 0);
        assert_ptr_equal(d1, d2);
        assert_int_equal(n1, 16);
        assert_memory_equal(d1, expected, 16);

        /* The cache belongs to the context read, not to the shared layer: the
         * bottom read alone gives its own copy. */
        const char *sb;
        assert_int_equal(paf_ctx_get_string(l, "same", &s1), 0);
        assert_int_equal(paf_ctx_get_string(bottom, "same", &sb), 0);
        assert_ptr_not_equal(sb, s1);
        assert_string_equal(sb, "stable");
        /* l still holds the bottom layer. */
        paf_ctx_unref(bottom);
        assert_int_equal(paf_ctx_get_string(l, "same", &s1), 0);
        assert_string_equal(s1, "stable");

        paf_ctx_unref(l);
}

/* K <- (A, B) and B <- A, where A changes on every derivation: reading B
 * derives A again, replacing the copy K's handler was already handed. That
 * copy must stay valid until the read is over. */
static void test_inputs_survive_rederivation(void **state) {
        (void)state;
        paf_ctx *ctx = new_ctx();
        counter_rule a = {.answers = {"one", "two", "three", "four"}};
        const paf_rule_input k_in[] = {PAF_REQUIRED("a", PAF_TYPE_STRING),
                                       PAF_REQUIRED("b", PAF_TYPE_STRING)};
        const paf_rule_input b_in[] = {PAF_REQUIRED("a", PAF_TYPE_STRING)};
        const char *s;

        assert_int_equal(
                paf_ctx_add_rule(ctx, "a", PAF_TYPE_STRING, NULL, 0, changing_rule, &a, NULL), 0);
        assert_int_equal(
                paf_ctx_add_rule(ctx, "b", PAF_TYPE_STRING, b_in, 1, concat_rule, NULL, NULL), 0);
        assert_int_equal(
                paf_ctx_add_rule(ctx, "k", PAF_TYPE_STRING, k_in, 2, concat_rule, NULL, NULL), 0);
        assert_int_equal(paf_ctx_get_string(ctx, "k", &s), 0);
        assert_string_equal(s, "one+two");
        assert_int_equal(a.calls, 2);
        assert_int_equal(paf_ctx_get_string(ctx, "a", &s), 0);
        assert_string_equal(s, "three");

        paf_ctx_unref(ctx);
}

/* A rule handler may not change the context being read. */
typedef struct writer {
        paf_ctx *ctx;
        int set_result, remove_result, rule_result;
} writer;

static int writing_rule(const paf_value *inputs, size_t n_inputs, paf_value *ret, void *userdata) {
        (void)inputs;
        (void)n_inputs;
        writer *w = userdata;
        w->set_result = paf_ctx_set_int(w->ctx, "w", 2);
        w->remove_result = paf_ctx_remove(w->ctx, "w");
        w->rule_result =
                paf_ctx_add_rule(w->ctx, "w", PAF_TYPE_INT, NULL, 0, writing_rule, w, NULL);
        *ret = PAF_VALUE_INT(1);
        return 1;
}

static void test_no_writes_while_reading(void **state) {
        (void)state;
        paf_ctx *bottom = new_ctx(), *l = NULL;
        writer w = {.ctx = bottom};
        int64_t i;

        assert_int_equal(
                paf_ctx_add_rule(bottom, "w", PAF_TYPE_INT, NULL, 0, writing_rule, &w, NULL), 0);
        assert_int_equal(paf_ctx_new_layered(NULL, bottom, &l), 0);
        assert_int_equal(paf_ctx_get_int(l, "w", &i), 0);
        assert_int_equal(i, 1);
        assert_int_equal(w.set_result, -EBUSY);
        assert_int_equal(w.remove_result, -EBUSY);
        assert_int_equal(w.rule_result, -EBUSY);
        /* Writable again once the read is over. */
        assert_int_equal(paf_ctx_set_int(bottom, "w", 3), 0);
        assert_int_equal(paf_ctx_get_int(l, "w", &i), 0);
        assert_int_equal(i, 3);

        paf_ctx_unref(l);
        paf_ctx_unref(bottom);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_typed_set_get),
                cmocka_unit_test(test_type_mismatch_and_missing),
                cmocka_unit_test(test_invalid_arguments),
                cmocka_unit_test(test_rule_inputs),
                cmocka_unit_test(test_rule_bad_arguments),
                cmocka_unit_test(test_newest_wins),
                cmocka_unit_test(test_skipped_and_declining_rules),
                cmocka_unit_test(test_rule_errors),
                cmocka_unit_test(test_cycles),
                cmocka_unit_test(test_deep_chain),
                cmocka_unit_test(test_layered),
                cmocka_unit_test(test_pointer_destructors),
                cmocka_unit_test(test_derived_values_stay_valid),
                cmocka_unit_test(test_inputs_survive_rederivation),
                cmocka_unit_test(test_no_writes_while_reading),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
