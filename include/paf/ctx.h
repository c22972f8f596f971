/* paf/ctx.h — the context: typed values and derivation rules (Mimic's fold). */
#pragma once

#include <paf/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A context maps key names ("tcp.host", "url.scheme", …) to typed values. A
 * key may also have derivation rules: "K can be computed from A and B
 * (required) and C (optional, default D) by F". Each key keeps its entries,
 * values and rules, newest first; reading a key walks them from the newest:
 * a value is the answer, a rule is tried and skipped when one of its required
 * inputs is missing or when it declines. Rules run lazily, at read time.
 *
 * Reading a key with a type other than the one it holds fails with
 * -EPROTOTYPE; a missing key is -ENOENT; a derivation cycle is -ELOOP. The
 * reason of the last failure is kept: paf_ctx_get_error().
 */
typedef struct paf_ctx paf_ctx;

typedef struct paf_value {
        paf_type type;
        union {
                const char *string;
                int64_t integer;
                bool boolean;
                struct {
                        const void *data;
                        size_t size;
                } bytes;
                void *pointer;
        };
} paf_value;

#define PAF_VALUE_STRING(s) ((paf_value){.type = PAF_TYPE_STRING, .string = (s)})
#define PAF_VALUE_INT(i) ((paf_value){.type = PAF_TYPE_INT, .integer = (i)})
#define PAF_VALUE_BOOL(b) ((paf_value){.type = PAF_TYPE_BOOL, .boolean = (b)})

PAF_EXPORT int paf_ctx_new(paf_ctx **ret);
PAF_EXPORT paf_ctx *paf_ctx_ref(paf_ctx *ctx);
PAF_EXPORT paf_ctx *paf_ctx_unref(paf_ctx *ctx);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_ctx *, paf_ctx_unref)

/* Setters copy strings and bytes. A pointer value is released with destroy
 * (may be NULL) when it is replaced or the context goes. */
PAF_EXPORT int paf_ctx_set_string(paf_ctx *ctx, const char *key, const char *value);
PAF_EXPORT int paf_ctx_set_int(paf_ctx *ctx, const char *key, int64_t value);
PAF_EXPORT int paf_ctx_set_bool(paf_ctx *ctx, const char *key, bool value);
PAF_EXPORT int paf_ctx_set_bytes(paf_ctx *ctx, const char *key, const void *data, size_t size);
PAF_EXPORT int paf_ctx_set_pointer(paf_ctx *ctx, const char *key, void *pointer, paf_destroy_t destroy);
/* Copies value into the context (strings/bytes copied; pointers without destructor). */
PAF_EXPORT int paf_ctx_set(paf_ctx *ctx, const char *key, const paf_value *value);

/* Getters: the returned string/bytes/pointer belong to the context and stay
 * valid until the key is set or removed, or derives to a different value in
 * the same context, or the context goes. Contexts are not thread-safe. */
PAF_EXPORT int paf_ctx_get_string(paf_ctx *ctx, const char *key, const char **ret);
PAF_EXPORT int paf_ctx_get_int(paf_ctx *ctx, const char *key, int64_t *ret);
PAF_EXPORT int paf_ctx_get_bool(paf_ctx *ctx, const char *key, bool *ret);
PAF_EXPORT int paf_ctx_get_bytes(paf_ctx *ctx, const char *key, const void **ret, size_t *ret_size);
PAF_EXPORT int paf_ctx_get_pointer(paf_ctx *ctx, const char *key, void **ret);
/* Any type; ret->type tells which. */
PAF_EXPORT int paf_ctx_get(paf_ctx *ctx, const char *key, paf_value *ret);
/* 1 when the key has a value or a rule that runs now, 0 when not, <0 on error. */
PAF_EXPORT int paf_ctx_has(paf_ctx *ctx, const char *key);
/* Drop every value and rule of key. */
PAF_EXPORT int paf_ctx_remove(paf_ctx *ctx, const char *key);

/* Human-readable reason of the last failed get on this context (or ""). */
PAF_EXPORT const char *paf_ctx_get_error(paf_ctx *ctx);

/* ---- derivation rules ---- */

typedef enum paf_input_kind {
        PAF_INPUT_REQUIRED = 0, /* rule is skipped when missing */
        PAF_INPUT_OPTIONAL = 1, /* handed as type PAF_TYPE_NONE when missing */
        PAF_INPUT_DEFAULT = 2,  /* handed as .value when missing */
} paf_input_kind;

typedef struct paf_rule_input {
        const char *key;
        paf_type type;
        paf_input_kind kind;
        paf_value value; /* the default, for PAF_INPUT_DEFAULT */
} paf_rule_input;

#define PAF_REQUIRED(k, t) {.key = (k), .type = (t), .kind = PAF_INPUT_REQUIRED}
#define PAF_OPTIONAL(k, t) {.key = (k), .type = (t), .kind = PAF_INPUT_OPTIONAL}
#define PAF_DEFAULT(k, v) {.key = (k), .type = (v).type, .kind = PAF_INPUT_DEFAULT, .value = (v)}

/*
 * A rule's function gets one value per declared input, in order, and sets
 * *ret (ret->type must be the rule's type; strings and bytes are copied after
 * the function returns, so they may point at an input, the userdata or a
 * static buffer, but not at the function's own locals). It returns 1 when
 * it produced a value, 0 to decline (the next older entry is tried), or a
 * negative errno, which fails the read.
 */
typedef int (*paf_rule_handler_t)(const paf_value *inputs, size_t n_inputs, paf_value *ret,
                                  void *userdata);

PAF_EXPORT int paf_ctx_add_rule(paf_ctx *ctx, const char *key, paf_type type,
                                const paf_rule_input *inputs, size_t n_inputs,
                                paf_rule_handler_t handler, void *userdata, paf_destroy_t destroy);

/* A new context whose own entries come first, then top's, then bottom's
 * (both referenced, either may be NULL). The registry uses it to put its
 * plugins' rules under a user's context without touching it. */
PAF_EXPORT int paf_ctx_new_layered(paf_ctx *top, paf_ctx *bottom, paf_ctx **ret);

#ifdef __cplusplus
}
#endif
