/* core/ctx.c — the context: typed values and derivation rules, read lazily through layers. */
#include <stdio.h>

#include "paf-internal.h"

/*
 * Layout: a context holds a few tens of keys, so a key is a "slot" found by
 * linear search. Each slot has its entries, newest first. Setting a value
 * drops the slot's older entries: a value always answers, so nothing under
 * it could ever be read again, and dropping them is what runs a replaced
 * pointer's destructor.
 *
 * Lifetime of what the getters return:
 *  - a value set on a context lives in its entry, until the key is set again,
 *    removed, or the context goes;
 *  - a derived value is copied into a per-key cache of the context that was
 *    read (not the layer holding the rule: a layer is shared, e.g. the
 *    registry's rules under every user's context). Reading the key again
 *    keeps the cached copy when the new result is equal, so a pointer handed
 *    out stays valid; when a rule produces something different, the old copy
 *    is released at the end of that read. paf_ctx_remove() and freeing the
 *    context release it too.
 *
 * While a read runs on a thread (rule handlers are called), no context may
 * be modified from that thread (-EBUSY): a handler changing the context or a
 * layer of it would free entries the read is walking or values it was
 * handed. This is a per-thread count rather than a mark on the layers so
 * that a read leaves every layer untouched: only the context read is
 * written to (its cache and error), never a shared layer such as the
 * registry's rules.
 */

/* Derivation chains are a handful of keys long; this bounds the recursion
 * even for a context built by a confused program. */
#define DEPTH_MAX 64
#define MESSAGE_MAX 512

static _Thread_local unsigned reads_running;

typedef struct entry entry;
struct entry {
        entry *older;
        bool is_rule;
        unsigned seq; /* the context's next_seq when pushed: see paf_ctx_drop_since() */

        /* value */
        paf_value value; /* strings and bytes owned */
        paf_destroy_t destroy;

        /* rule */
        paf_type type;
        paf_rule_input *inputs; /* keys and defaults owned */
        size_t n_inputs;
        paf_rule_handler_t handler;
        void *userdata;
        paf_destroy_t userdata_destroy;
};

typedef struct slot {
        char *name;
        entry *entries; /* newest first */
        bool cached;
        paf_value cache; /* last value derived for this key while reading this context */
} slot;

struct paf_ctx {
        unsigned n_ref;
        unsigned next_seq;

        /* An array of pointers, so that a slot stays put when a read adds
         * another slot for a cache while holding the first. */
        slot **slots;
        size_t n_slots;

        paf_ctx *top, *bottom;

        /* State of a read of this context: the keys being read (cycle
         * detection), cache copies replaced during the read (released when
         * it ends, since a rule may still hold them as inputs) and the
         * message of a failure not yet reported. */
        const char *stack[DEPTH_MAX];
        size_t n_stack;
        paf_value *retired;
        size_t n_retired;
        char pending[MESSAGE_MAX];
        char error[MESSAGE_MAX];
};

static bool key_is_valid(const char *key) {
        if (!key || !*key)
                return false;
        for (const unsigned char *p = (const unsigned char *)key; *p; p++)
                if (*p <= ' ' || *p >= 0x7f)
                        return false;
        return true;
}

static bool type_is_valid(paf_type t) {
        return t >= PAF_TYPE_STRING && t <= PAF_TYPE_POINTER;
}

/* "key holds a string, not an integer" */
static const char *type_phrase(paf_type t) {
        switch (t) {
        case PAF_TYPE_NONE:
                return "nothing";
        case PAF_TYPE_STRING:
                return "a string";
        case PAF_TYPE_INT:
                return "an integer";
        case PAF_TYPE_BOOL:
                return "a boolean";
        case PAF_TYPE_BYTES:
                return "bytes";
        case PAF_TYPE_POINTER:
                return "a pointer";
        }
        return "an invalid type";
}

static void value_done(paf_value *v) {
        if (v->type == PAF_TYPE_STRING)
                free((char *)v->string);
        else if (v->type == PAF_TYPE_BYTES)
                free((void *)v->bytes.data);
        *v = (paf_value){};
}

/* A copy owning its string or bytes; a pointer is shared. */
static int value_copy(paf_value *dst, const paf_value *v) {
        paf_value c = *v;

        switch (v->type) {
        case PAF_TYPE_STRING:
                if (!v->string)
                        return -EINVAL;
                c.string = strdup(v->string);
                if (!c.string)
                        return -ENOMEM;
                break;
        case PAF_TYPE_BYTES: {
                if (!v->bytes.data && v->bytes.size > 0)
                        return -EINVAL;
                /* Never NULL, even when empty, so callers can tell "set" from garbage. */
                void *d = malloc(v->bytes.size > 0 ? v->bytes.size : 1);
                if (!d)
                        return -ENOMEM;
                if (v->bytes.size > 0)
                        memcpy(d, v->bytes.data, v->bytes.size);
                c.bytes.data = d;
                break;
        }
        case PAF_TYPE_INT:
        case PAF_TYPE_BOOL:
        case PAF_TYPE_POINTER:
                break;
        default:
                return -EINVAL;
        }
        *dst = c;
        return 0;
}

static bool value_equal(const paf_value *a, const paf_value *b) {
        if (a->type != b->type)
                return false;
        switch (a->type) {
        case PAF_TYPE_STRING:
                return strcmp(a->string, b->string) == 0;
        case PAF_TYPE_INT:
                return a->integer == b->integer;
        case PAF_TYPE_BOOL:
                return a->boolean == b->boolean;
        case PAF_TYPE_BYTES:
                return a->bytes.size == b->bytes.size &&
                       memcmp(a->bytes.data, b->bytes.data, a->bytes.size) == 0;
        case PAF_TYPE_POINTER:
                return a->pointer == b->pointer;
        default:
                return true;
        }
}

static void entry_free(entry *e) {
        if (!e)
                return;
        if (e->is_rule) {
                for (size_t i = 0; i < e->n_inputs; i++) {
                        free((char *)e->inputs[i].key);
                        value_done(&e->inputs[i].value);
                }
                free(e->inputs);
                if (e->userdata_destroy)
                        e->userdata_destroy(e->userdata);
        } else {
                if (e->value.type == PAF_TYPE_POINTER && e->destroy)
                        e->destroy(e->value.pointer);
                value_done(&e->value);
        }
        free(e);
}

/* Frees a detached list of entries, except keep's pointer, which a new entry took over. */
static void entries_free(entry *list, const void *keep) {
        while (list) {
                entry *e = list;
                list = e->older;
                if (!e->is_rule && e->value.type == PAF_TYPE_POINTER && keep &&
                    e->value.pointer == keep)
                        e->destroy = NULL;
                entry_free(e);
        }
}

static void slot_free(slot *s) {
        if (!s)
                return;
        entries_free(s->entries, NULL);
        if (s->cached)
                value_done(&s->cache);
        free(s->name);
        free(s);
}

static slot *slot_find(paf_ctx *ctx, const char *key) {
        for (size_t i = 0; i < ctx->n_slots; i++)
                if (strcmp(ctx->slots[i]->name, key) == 0)
                        return ctx->slots[i];
        return NULL;
}

static int slot_get(paf_ctx *ctx, const char *key, slot **ret) {
        slot *s = slot_find(ctx, key);
        if (s) {
                *ret = s;
                return 0;
        }

        slot **a = realloc(ctx->slots, (ctx->n_slots + 1) * sizeof(*a));
        if (!a)
                return -ENOMEM;
        ctx->slots = a;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->name = strdup(key);
        if (!s->name) {
                free(s);
                return -ENOMEM;
        }
        ctx->slots[ctx->n_slots++] = s;
        *ret = s;
        return 0;
}

/* ---- life cycle ---- */

PAF_EXPORT int paf_ctx_new(paf_ctx **ret) {
        if (!ret)
                return -EINVAL;
        paf_ctx *ctx = calloc(1, sizeof(*ctx));
        if (!ctx)
                return -ENOMEM;
        ctx->n_ref = 1;
        *ret = ctx;
        return 0;
}

PAF_EXPORT int paf_ctx_new_layered(paf_ctx *top, paf_ctx *bottom, paf_ctx **ret) {
        if (!ret)
                return -EINVAL;
        paf_ctx *ctx;
        int r = paf_ctx_new(&ctx);
        if (r < 0)
                return r;
        /* Layers are fixed at creation, so they can never form a cycle. */
        ctx->top = paf_ctx_ref(top);
        ctx->bottom = paf_ctx_ref(bottom);
        *ret = ctx;
        return 0;
}

/* Atomic: a layer shared by contexts on several threads (the registry's,
 * under every connect of paf bench's or paf serve's workers) is referenced
 * from all of them; reads of it write nothing (see above). */
PAF_EXPORT paf_ctx *paf_ctx_ref(paf_ctx *ctx) {
        if (ctx) {
                assert(__atomic_load_n(&ctx->n_ref, __ATOMIC_RELAXED) > 0);
                __atomic_add_fetch(&ctx->n_ref, 1, __ATOMIC_RELAXED);
        }
        return ctx;
}

PAF_EXPORT paf_ctx *paf_ctx_unref(paf_ctx *ctx) {
        if (!ctx)
                return NULL;
        assert(__atomic_load_n(&ctx->n_ref, __ATOMIC_RELAXED) > 0);
        if (__atomic_sub_fetch(&ctx->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        for (size_t i = 0; i < ctx->n_slots; i++)
                slot_free(ctx->slots[i]);
        free(ctx->slots);
        assert(ctx->n_retired == 0);
        free(ctx->retired);
        paf_ctx_unref(ctx->top);
        paf_ctx_unref(ctx->bottom);
        free(ctx);
        return NULL;
}

/* ---- writing ---- */

static int check_writable(paf_ctx *ctx, const char *key) {
        if (!ctx || !key_is_valid(key))
                return -EINVAL;
        if (reads_running > 0)
                return -EBUSY;
        return 0;
}

/* Puts e on top of key's entries. A value replaces everything older. */
static int push_entry(paf_ctx *ctx, const char *key, entry *e) {
        slot *s;
        int r = slot_get(ctx, key, &s);
        if (r < 0)
                return r;

        e->seq = ctx->next_seq++;
        entry *dropped = NULL;
        if (e->is_rule)
                e->older = s->entries;
        else
                dropped = s->entries;
        s->entries = e;

        /* Destructors run last, on a detached list, so one that calls back
         * into this context finds it consistent. */
        entries_free(dropped,
                     e->is_rule || e->value.type != PAF_TYPE_POINTER ? NULL : e->value.pointer);
        return 0;
}

static int set_value(paf_ctx *ctx, const char *key, const paf_value *v, paf_destroy_t destroy) {
        int r = check_writable(ctx, key);
        if (r < 0)
                return r;
        if (!v || !type_is_valid(v->type))
                return -EINVAL;

        entry *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        r = value_copy(&e->value, v);
        if (r < 0) {
                free(e);
                return r;
        }
        e->destroy = destroy;
        r = push_entry(ctx, key, e);
        if (r < 0) {
                /* The caller keeps ownership of its pointer on failure. */
                e->destroy = NULL;
                entry_free(e);
        }
        return r;
}

PAF_EXPORT int paf_ctx_set_string(paf_ctx *ctx, const char *key, const char *value) {
        if (!value)
                return -EINVAL;
        return set_value(ctx, key, &PAF_VALUE_STRING(value), NULL);
}

PAF_EXPORT int paf_ctx_set_int(paf_ctx *ctx, const char *key, int64_t value) {
        return set_value(ctx, key, &PAF_VALUE_INT(value), NULL);
}

PAF_EXPORT int paf_ctx_set_bool(paf_ctx *ctx, const char *key, bool value) {
        return set_value(ctx, key, &PAF_VALUE_BOOL(value), NULL);
}

PAF_EXPORT int paf_ctx_set_bytes(paf_ctx *ctx, const char *key, const void *data, size_t size) {
        if (!data && size > 0)
                return -EINVAL;
        paf_value v = {.type = PAF_TYPE_BYTES, .bytes = {.data = data, .size = size}};
        return set_value(ctx, key, &v, NULL);
}

PAF_EXPORT int paf_ctx_set_pointer(paf_ctx *ctx, const char *key, void *pointer,
                                   paf_destroy_t destroy) {
        paf_value v = {.type = PAF_TYPE_POINTER, .pointer = pointer};
        return set_value(ctx, key, &v, destroy);
}

PAF_EXPORT int paf_ctx_set(paf_ctx *ctx, const char *key, const paf_value *value) {
        return set_value(ctx, key, value, NULL);
}

PAF_EXPORT int paf_ctx_add_rule(paf_ctx *ctx, const char *key, paf_type type,
                                const paf_rule_input *inputs, size_t n_inputs,
                                paf_rule_handler_t handler, void *userdata, paf_destroy_t destroy) {
        int r = check_writable(ctx, key);
        if (r < 0)
                return r;
        if (!type_is_valid(type) || !handler || (n_inputs > 0 && !inputs))
                return -EINVAL;
        for (size_t i = 0; i < n_inputs; i++) {
                const paf_rule_input *in = &inputs[i];
                if (!key_is_valid(in->key) || !type_is_valid(in->type))
                        return -EINVAL;
                if (in->kind == PAF_INPUT_DEFAULT) {
                        if (in->value.type != in->type)
                                return -EINVAL;
                } else if (in->kind != PAF_INPUT_REQUIRED && in->kind != PAF_INPUT_OPTIONAL)
                        return -EINVAL;
        }

        entry *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->is_rule = true;
        e->type = type;
        e->handler = handler;
        if (n_inputs > 0) {
                e->inputs = calloc(n_inputs, sizeof(*e->inputs));
                if (!e->inputs) {
                        free(e);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < n_inputs; i++, e->n_inputs++) {
                paf_rule_input *in = &e->inputs[i];
                *in = inputs[i];
                in->value = (paf_value){};
                in->key = strdup(inputs[i].key);
                if (!in->key) {
                        r = -ENOMEM;
                        break;
                }
                if (inputs[i].kind == PAF_INPUT_DEFAULT) {
                        r = value_copy(&in->value, &inputs[i].value);
                        if (r < 0) {
                                free((char *)in->key);
                                break;
                        }
                }
        }
        if (r >= 0)
                r = push_entry(ctx, key, e);
        if (r < 0) {
                /* The caller keeps its userdata on failure: no destroy. */
                entry_free(e);
                return r;
        }
        /* Only now does the rule own its userdata. */
        e->userdata = userdata;
        e->userdata_destroy = destroy;
        return 0;
}

PAF_EXPORT int paf_ctx_remove(paf_ctx *ctx, const char *key) {
        int r = check_writable(ctx, key);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ctx->n_slots; i++) {
                slot *s = ctx->slots[i];
                if (strcmp(s->name, key) != 0)
                        continue;
                bool had = s->entries;
                memmove(ctx->slots + i, ctx->slots + i + 1,
                        (ctx->n_slots - i - 1) * sizeof(slot *));
                ctx->n_slots--;
                slot_free(s);
                return had;
        }
        return 0;
}

/* ---- reading ---- */

PAF_PRINTF(2, 3) static void set_pending(paf_ctx *root, const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        vsnprintf(root->pending, sizeof(root->pending), format, ap);
        va_end(ap);
}

static int lookup(paf_ctx *root, const char *key, paf_value *ret);

/* Copies a rule's result into root's cache for key; *ret points at the cache. */
static int cache_store(paf_ctx *root, const char *key, const paf_value *v, paf_value *ret) {
        slot *s;
        int r = slot_get(root, key, &s);
        if (r < 0)
                return r;

        if (s->cached && value_equal(&s->cache, v)) {
                *ret = s->cache;
                return 0;
        }

        paf_value copy;
        r = value_copy(&copy, v);
        if (r < 0)
                return r;
        if (s->cached) {
                paf_value *a = realloc(root->retired, (root->n_retired + 1) * sizeof(*a));
                if (!a) {
                        value_done(&copy);
                        return -ENOMEM;
                }
                root->retired = a;
                root->retired[root->n_retired++] = s->cache;
        }
        s->cache = copy;
        s->cached = true;
        *ret = copy;
        return 0;
}

/* Tries one rule for key. 1: answered (*ret), 0: skipped or declined, <0: the read fails. */
static int derive(paf_ctx *root, const char *key, const entry *rule, paf_value *ret,
                  const char **missing) {
        _cleanup_free_ paf_value *inputs = NULL;
        int r;

        assert(rule->is_rule);

        if (rule->n_inputs > 0) {
                inputs = calloc(rule->n_inputs, sizeof(*inputs));
                if (!inputs)
                        return -ENOMEM;
        }

        for (size_t i = 0; i < rule->n_inputs; i++) {
                const paf_rule_input *in = &rule->inputs[i];
                r = lookup(root, in->key, &inputs[i]);
                if (r < 0)
                        return r;
                if (r == 0) {
                        switch (in->kind) {
                        case PAF_INPUT_REQUIRED:
                                if (!*missing)
                                        *missing = in->key;
                                return 0;
                        case PAF_INPUT_OPTIONAL:
                                inputs[i] = (paf_value){.type = PAF_TYPE_NONE};
                                break;
                        case PAF_INPUT_DEFAULT:
                                inputs[i] = in->value;
                                break;
                        }
                } else if (inputs[i].type != in->type) {
                        set_pending(root, "rule for key \"%s\": key \"%s\" holds %s, not %s", key,
                                    in->key, type_phrase(inputs[i].type), type_phrase(in->type));
                        return -EPROTOTYPE;
                }
        }

        paf_value out = {};
        r = rule->handler(inputs, rule->n_inputs, &out, rule->userdata);
        if (r < 0) {
                set_pending(root, "rule for key \"%s\" failed: %s", key, strerror(-r));
                return r;
        }
        if (r == 0)
                return 0;
        if (out.type != rule->type) {
                set_pending(root, "rule for key \"%s\" produced %s, not %s", key,
                            type_phrase(out.type), type_phrase(rule->type));
                return -EPROTOTYPE;
        }
        if ((out.type == PAF_TYPE_STRING && !out.string) ||
            (out.type == PAF_TYPE_BYTES && !out.bytes.data && out.bytes.size > 0)) {
                set_pending(root, "rule for key \"%s\" produced a NULL %s", key,
                            paf_type_to_string(out.type));
                return -EINVAL;
        }

        /* Copied now, before anything else runs: out may point at an input,
         * the userdata or a static buffer of the handler. (Not at its locals,
         * which died with its frame, whatever ctx.h's "stack memory" suggests.) */
        r = cache_store(root, key, &out, ret);
        if (r < 0) {
                set_pending(root, "key \"%s\": %s", key, strerror(-r));
                return r;
        }
        return 1;
}

/* Walks c's entries for key, then its layers'. Same results as derive(). */
static int walk(paf_ctx *root, paf_ctx *c, const char *key, paf_value *ret, const char **missing) {
        int r;

        /* The slot and its entries cannot go while reading: writes wait. */
        slot *s = slot_find(c, key);
        for (entry *e = s ? s->entries : NULL; e; e = e->older) {
                if (!e->is_rule) {
                        *ret = e->value;
                        return 1;
                }
                r = derive(root, key, e, ret, missing);
                if (r != 0)
                        return r;
        }
        if (c->top) {
                r = walk(root, c->top, key, ret, missing);
                if (r != 0)
                        return r;
        }
        if (c->bottom)
                return walk(root, c->bottom, key, ret, missing);
        return 0;
}

/* Reads key through root and its layers: 1 with *ret, 0 when nothing answers,
 * <0 on error; root->pending explains a 0 or an error. */
static int lookup(paf_ctx *root, const char *key, paf_value *ret) {
        for (size_t i = 0; i < root->n_stack; i++) {
                if (strcmp(root->stack[i], key) != 0)
                        continue;
                /* "derivation cycle: a -> b -> a"; snprintf truncates, so n stays inside. */
                set_pending(root, "derivation cycle: ");
                for (size_t j = i; j < root->n_stack; j++) {
                        size_t n = strlen(root->pending);
                        snprintf(root->pending + n, sizeof(root->pending) - n, "%s -> ",
                                 root->stack[j]);
                }
                size_t n = strlen(root->pending);
                snprintf(root->pending + n, sizeof(root->pending) - n, "%s", key);
                return -ELOOP;
        }
        if (root->n_stack >= DEPTH_MAX) {
                set_pending(root, "derivation of key \"%s\" is more than %d keys deep", key,
                            DEPTH_MAX);
                return -ELOOP;
        }

        const char *missing = NULL;
        root->stack[root->n_stack++] = key;
        int r = walk(root, root, key, ret, &missing);
        root->n_stack--;

        if (r == 0) {
                if (missing)
                        set_pending(root, "no value for key \"%s\" (its rule needs \"%s\")", key,
                                    missing);
                else
                        set_pending(root, "no value for key \"%s\"", key);
        }
        return r;
}

/* A public read: 0 with *ret, or <0 with ctx->error set. */
static int read_key(paf_ctx *ctx, const char *key, paf_value *ret) {
        if (!ctx || !key_is_valid(key))
                return -EINVAL;

        /* A rule handler may read the context it is part of (through its
         * userdata): that is a nested read of the same derivation. */
        bool outermost = ctx->n_stack == 0;
        reads_running++;
        int r = lookup(ctx, key, ret);
        reads_running--;
        if (outermost) {
                for (size_t i = 0; i < ctx->n_retired; i++)
                        value_done(&ctx->retired[i]);
                ctx->n_retired = 0;
        }
        if (r == 0)
                r = -ENOENT;
        if (r < 0) {
                memcpy(ctx->error, ctx->pending, sizeof(ctx->error));
                return r;
        }
        return 0;
}

static int get_typed(paf_ctx *ctx, const char *key, paf_type type, paf_value *ret) {
        paf_value v;
        int r = read_key(ctx, key, &v);
        if (r < 0)
                return r;
        if (v.type != type) {
                snprintf(ctx->error, sizeof(ctx->error), "key \"%s\" holds %s, not %s", key,
                         type_phrase(v.type), type_phrase(type));
                return -EPROTOTYPE;
        }
        *ret = v;
        return 0;
}

PAF_EXPORT int paf_ctx_get(paf_ctx *ctx, const char *key, paf_value *ret) {
        if (!ret)
                return -EINVAL;
        paf_value v;
        int r = read_key(ctx, key, &v);
        if (r < 0)
                return r;
        *ret = v;
        return 0;
}

PAF_EXPORT int paf_ctx_get_string(paf_ctx *ctx, const char *key, const char **ret) {
        paf_value v;
        if (!ret)
                return -EINVAL;
        int r = get_typed(ctx, key, PAF_TYPE_STRING, &v);
        if (r < 0)
                return r;
        *ret = v.string;
        return 0;
}

PAF_EXPORT int paf_ctx_get_int(paf_ctx *ctx, const char *key, int64_t *ret) {
        paf_value v;
        if (!ret)
                return -EINVAL;
        int r = get_typed(ctx, key, PAF_TYPE_INT, &v);
        if (r < 0)
                return r;
        *ret = v.integer;
        return 0;
}

PAF_EXPORT int paf_ctx_get_bool(paf_ctx *ctx, const char *key, bool *ret) {
        paf_value v;
        if (!ret)
                return -EINVAL;
        int r = get_typed(ctx, key, PAF_TYPE_BOOL, &v);
        if (r < 0)
                return r;
        *ret = v.boolean;
        return 0;
}

PAF_EXPORT int paf_ctx_get_bytes(paf_ctx *ctx, const char *key, const void **ret,
                                 size_t *ret_size) {
        paf_value v;
        if (!ret || !ret_size)
                return -EINVAL;
        int r = get_typed(ctx, key, PAF_TYPE_BYTES, &v);
        if (r < 0)
                return r;
        *ret = v.bytes.data;
        *ret_size = v.bytes.size;
        return 0;
}

PAF_EXPORT int paf_ctx_get_pointer(paf_ctx *ctx, const char *key, void **ret) {
        paf_value v;
        if (!ret)
                return -EINVAL;
        int r = get_typed(ctx, key, PAF_TYPE_POINTER, &v);
        if (r < 0)
                return r;
        *ret = v.pointer;
        return 0;
}

PAF_EXPORT int paf_ctx_has(paf_ctx *ctx, const char *key) {
        paf_value v;
        int r = read_key(ctx, key, &v);
        if (r == -ENOENT)
                return 0;
        return r < 0 ? r : 1;
}

PAF_EXPORT const char *paf_ctx_get_error(paf_ctx *ctx) {
        return ctx ? ctx->error : "";
}

unsigned paf_ctx_mark(paf_ctx *ctx) {
        return ctx->next_seq;
}

/* Entries are pushed on top of their slot, so those newer than mark are
 * always at the head of each list. Cached derivations may come from them. */
void paf_ctx_drop_since(paf_ctx *ctx, unsigned mark) {
        for (size_t i = 0; i < ctx->n_slots; i++) {
                slot *s = ctx->slots[i];
                entry *dropped = s->entries, **tail = &dropped;
                while (*tail && (*tail)->seq >= mark)
                        tail = &(*tail)->older;
                s->entries = *tail;
                *tail = NULL;
                if (s->cached) {
                        value_done(&s->cache);
                        s->cached = false;
                }
                entries_free(dropped, NULL);
        }
}

int paf_ctx_foreach_key(paf_ctx *ctx, const char *prefix,
                        int (*handler)(const char *key, void *userdata), void *userdata) {
        if (!ctx)
                return 0;
        size_t n = prefix ? strlen(prefix) : 0;
        for (size_t i = 0; i < ctx->n_slots; i++) {
                const slot *s = ctx->slots[i];
                /* A slot holding only a cached derivation is not a key of this layer. */
                if (!s->entries || strncmp(s->name, prefix ? prefix : "", n) != 0)
                        continue;
                int r = handler(s->name, userdata);
                if (r < 0)
                        return r;
        }
        int r = paf_ctx_foreach_key(ctx->top, prefix, handler, userdata);
        if (r < 0)
                return r;
        return paf_ctx_foreach_key(ctx->bottom, prefix, handler, userdata);
}
