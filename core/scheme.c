/* core/scheme.c — URL schemes: those the plugins register, what serves each, and the rules
 * that run only for a protocol's own schemes. */
#include <stdio.h>

#include "core/paf-internal.h"

/* HTTP itself, which the core speaks: the one base that needs no layer.
 * Every scheme is HTTP over something; which something is the plugins' to
 * say, so this names no transport. */
#define PLAIN_BASE "http"

struct paf_scheme {
        char *name;
        char *protocol;
        char *plugin; /* NULL when the program registered it */
        uint32_t flags;
        int default_port;
};

struct paf_scheme_table {
        unsigned n_ref;
        paf_scheme **schemes; /* registration order */
        size_t n_schemes;
};

static void scheme_free(paf_scheme *s) {
        if (!s)
                return;
        free(s->name);
        free(s->protocol);
        free(s->plugin);
        free(s);
}

int paf_scheme_table_new(paf_scheme_table **ret) {
        paf_scheme_table *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->n_ref = 1;
        *ret = t;
        return 0;
}

static paf_scheme_table *table_ref(paf_scheme_table *t) {
        t->n_ref++;
        return t;
}

paf_scheme_table *paf_scheme_table_unref(paf_scheme_table *t) {
        if (!t)
                return NULL;
        assert(t->n_ref > 0);
        if (--t->n_ref > 0)
                return NULL;
        for (size_t i = 0; i < t->n_schemes; i++)
                scheme_free(t->schemes[i]);
        free(t->schemes);
        free(t);
        return NULL;
}

/* "https+unix": base "https" (up to the first '+'), suffix "+unix". */
static void table_match(const paf_scheme_table *t, const char *scheme, paf_scheme_match *ret) {
        const char *plus = strchr(scheme, '+');
        size_t base_len = plus ? (size_t)(plus - scheme) : strlen(scheme);
        const paf_scheme *whole = NULL, *suffix = NULL, *layer = NULL;
        for (size_t i = 0; i < t->n_schemes; i++) {
                const paf_scheme *s = t->schemes[i];
                if (s->flags & PAF_SCHEME_LAYER) {
                        if (base_len > 0 && strlen(s->name) == base_len &&
                            strncmp(s->name, scheme, base_len) == 0)
                                layer = s;
                } else if (s->name[0] != '+') {
                        if (strcmp(s->name, scheme) == 0)
                                whole = s;
                } else if (plus && base_len > 0 && strcmp(s->name, plus) == 0)
                        suffix = s;
        }
        *ret = (paf_scheme_match){.transport = whole ? whole : suffix, .layer = layer};
        ret->usable = ret->transport && (layer || (base_len == strlen(PLAIN_BASE) &&
                                                   strncmp(scheme, PLAIN_BASE, base_len) == 0));
}

void paf_registry_match_scheme(paf_registry *reg, const char *scheme, paf_scheme_match *ret) {
        table_match(reg->schemes, scheme, ret);
}

/* ---- registering ---- */

static bool is_scheme_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* [a-z][a-z0-9.-]* with at most one '+' followed by more of those; a
 * suffix is the part from the '+'. */
static bool scheme_name_is_valid(const char *name, bool layer) {
        if (!name || !*name || strlen(name) > 64)
                return false;
        const char *plus = strchr(name, '+');
        if (plus && (layer || strchr(plus + 1, '+') || !plus[1]))
                return false;
        if (plus != name && !(name[0] >= 'a' && name[0] <= 'z'))
                return false;
        for (const char *c = name; *c; c++)
                if (c != plus && !is_scheme_char(*c))
                        return false;
        return true;
}

PAF_EXPORT int paf_registry_add_scheme(paf_registry *reg, const paf_scheme_desc *desc) {
        if (!reg || !desc ||
            desc->struct_size < offsetof(paf_scheme_desc, default_port) + sizeof(int))
                return -EINVAL;
        bool layer = desc->flags & PAF_SCHEME_LAYER;
        if (!scheme_name_is_valid(desc->name, layer) || !paf_name_is_valid(desc->protocol) ||
            (desc->flags & ~(PAF_SCHEME_LAYER | PAF_SCHEME_HOSTNAME)) || desc->default_port < 0 ||
            desc->default_port > 65535 ||
            (layer && (desc->default_port != 0 || (desc->flags & PAF_SCHEME_HOSTNAME))))
                return -EINVAL;
        paf_scheme_table *t = reg->schemes;
        for (size_t i = 0; i < t->n_schemes; i++)
                if (strcmp(t->schemes[i]->name, desc->name) == 0 &&
                    !(t->schemes[i]->flags & PAF_SCHEME_LAYER) == !layer)
                        return -EEXIST;

        paf_scheme *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        const char *plugin = reg->initializing ? paf_plugin_name_internal(reg->initializing) : NULL;
        s->name = strdup(desc->name);
        s->protocol = strdup(desc->protocol);
        s->plugin = plugin ? strdup(plugin) : NULL;
        s->flags = desc->flags;
        s->default_port = desc->default_port;
        paf_scheme **a = NULL;
        if (s->name && s->protocol && (!plugin || s->plugin))
                a = realloc(t->schemes, (t->n_schemes + 1) * sizeof(*a));
        if (!a) {
                scheme_free(s);
                return -ENOMEM;
        }
        t->schemes = a;
        t->schemes[t->n_schemes++] = s;
        return 0;
}

void paf_registry_remove_schemes_of(paf_registry *reg, const char *plugin) {
        paf_scheme_table *t = reg->schemes;
        size_t j = 0;
        for (size_t i = 0; i < t->n_schemes; i++) {
                paf_scheme *s = t->schemes[i];
                if (s->plugin && plugin && strcmp(s->plugin, plugin) == 0)
                        scheme_free(s);
                else
                        t->schemes[j++] = s;
        }
        t->n_schemes = j;
}

/* ---- rules gated by the scheme ---- */

typedef struct url_rule {
        paf_scheme_table *table;
        char *protocol; /* NULL: the core's own rules, which run for every scheme */
        paf_rule_handler_t handler;
        void *userdata;
        paf_destroy_t destroy;
} url_rule;

static void url_rule_free(void *userdata) {
        url_rule *u = userdata;
        if (u->destroy)
                u->destroy(u->userdata);
        paf_scheme_table_unref(u->table);
        free(u->protocol);
        free(u);
}

/* in[0] is url.scheme; the rule's own inputs follow. */
static int url_rule_run(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        url_rule *u = userdata;
        paf_scheme_match m;
        table_match(u->table, in[0].string, &m);
        bool ours = (m.transport && strcmp(m.transport->protocol, u->protocol) == 0) ||
                    (m.layer && strcmp(m.layer->protocol, u->protocol) == 0);
        if (!ours)
                return 0;
        return u->handler(in + 1, n - 1, ret, u->userdata);
}

static int add_gated_rule(paf_registry *reg, const char *protocol, const char *key, paf_type type,
                          const paf_rule_input *inputs, size_t n_inputs, paf_rule_handler_t gate,
                          paf_rule_handler_t handler, void *userdata, paf_destroy_t destroy) {
        _cleanup_free_ paf_rule_input *all = calloc(n_inputs + 1, sizeof(*all));
        url_rule *u = calloc(1, sizeof(*u));
        if (!all || !u || (protocol && !(u->protocol = strdup(protocol)))) {
                free(u);
                return -ENOMEM;
        }
        all[0] = (paf_rule_input)PAF_REQUIRED("url.scheme", PAF_TYPE_STRING);
        if (n_inputs > 0)
                memcpy(all + 1, inputs, n_inputs * sizeof(*all));
        u->table = table_ref(reg->schemes);
        u->handler = handler;
        u->userdata = userdata;
        int r = paf_ctx_add_rule(reg->ctx, key, type, all, n_inputs + 1, gate, u, url_rule_free);
        if (r < 0) {
                /* The caller keeps its userdata on failure. */
                paf_scheme_table_unref(u->table);
                free(u->protocol);
                free(u);
                return r;
        }
        u->destroy = destroy;
        return 0;
}

PAF_EXPORT int paf_registry_add_url_rule(paf_registry *reg, const char *protocol, const char *key,
                                         paf_type type, const paf_rule_input *inputs,
                                         size_t n_inputs, paf_rule_handler_t handler,
                                         void *userdata, paf_destroy_t destroy) {
        if (!reg || !paf_name_is_valid(protocol) || !key || !handler || (n_inputs > 0 && !inputs))
                return -EINVAL;
        return add_gated_rule(reg, protocol, key, type, inputs, n_inputs, url_rule_run, handler,
                              userdata, destroy);
}

static int rule_default_port(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        url_rule *u = userdata;
        paf_scheme_match m;
        table_match(u->table, in[0].string, &m);
        if (!m.transport || m.transport->default_port <= 0)
                return 0;
        *ret = PAF_VALUE_INT(m.transport->default_port);
        return 1;
}

static int rule_hostname(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        url_rule *u = userdata;
        paf_scheme_match m;
        table_match(u->table, in[0].string, &m);
        if (!m.transport || !(m.transport->flags & PAF_SCHEME_HOSTNAME) || !*in[1].string)
                return 0;
        *ret = PAF_VALUE_STRING(in[1].string);
        return 1;
}

int paf_registry_add_scheme_rules(paf_registry *reg) {
        int r = add_gated_rule(reg, NULL, "url.default-port", PAF_TYPE_INT, NULL, 0,
                               rule_default_port, NULL, NULL, NULL);
        if (r < 0)
                return r;
        static const paf_rule_input host[] = {PAF_REQUIRED("url.host", PAF_TYPE_STRING)};
        return add_gated_rule(reg, NULL, "url.hostname", PAF_TYPE_STRING, host, 1, rule_hostname,
                              NULL, NULL, NULL);
}

/* ---- listing ---- */

typedef struct name_list {
        FILE *f;
        char *text;
        size_t size;
        const char **names; /* those written, to write each once */
        size_t n_names;
        bool failed;
} name_list;

static void name_list_add(name_list *l, paf_registry *reg, const char *name) {
        paf_scheme_match m;
        paf_registry_match_scheme(reg, name, &m);
        if (!m.usable || l->failed)
                return;
        for (size_t i = 0; i < l->n_names; i++)
                if (strcmp(l->names[i], name) == 0)
                        return;
        char *copy = strdup(name);
        const char **a = realloc(l->names, (l->n_names + 1) * sizeof(*a));
        if (!copy || !a) {
                free(copy);
                if (a)
                        l->names = a;
                l->failed = true;
                return;
        }
        l->names = a;
        l->names[l->n_names] = copy;
        fprintf(l->f, "%s%s", l->n_names ? ", " : "", name);
        l->n_names++;
}

char *paf_registry_format_schemes(paf_registry *reg) {
        name_list l = {};
        l.f = open_memstream(&l.text, &l.size);
        if (!l.f)
                return NULL;
        const paf_scheme_table *t = reg->schemes;
        for (size_t i = 0; i < t->n_schemes; i++) {
                const paf_scheme *s = t->schemes[i];
                if (s->flags & PAF_SCHEME_LAYER)
                        continue;
                if (s->name[0] != '+') {
                        name_list_add(&l, reg, s->name);
                        continue;
                }
                /* A suffix: over plain HTTP, then under each layer. */
                char buf[160];
                snprintf(buf, sizeof(buf), "%s%s", PLAIN_BASE, s->name);
                name_list_add(&l, reg, buf);
                for (size_t j = 0; j < t->n_schemes; j++)
                        if (t->schemes[j]->flags & PAF_SCHEME_LAYER) {
                                snprintf(buf, sizeof(buf), "%s%s", t->schemes[j]->name, s->name);
                                name_list_add(&l, reg, buf);
                        }
        }
        bool failed = fclose(l.f) != 0 || l.failed;
        for (size_t i = 0; i < l.n_names; i++)
                free((char *)l.names[i]);
        free(l.names);
        if (failed) {
                free(l.text);
                return NULL;
        }
        return l.text;
}

/* ---- reading them ---- */

PAF_EXPORT size_t paf_registry_get_n_schemes(paf_registry *reg) {
        return reg ? reg->schemes->n_schemes : 0;
}

PAF_EXPORT const paf_scheme *paf_registry_get_scheme(paf_registry *reg, size_t i) {
        if (!reg || i >= reg->schemes->n_schemes)
                return NULL;
        return reg->schemes->schemes[i];
}

PAF_EXPORT const char *paf_scheme_get_name(const paf_scheme *s) {
        return s ? s->name : NULL;
}

PAF_EXPORT const char *paf_scheme_get_protocol(const paf_scheme *s) {
        return s ? s->protocol : NULL;
}

PAF_EXPORT uint32_t paf_scheme_get_flags(const paf_scheme *s) {
        return s ? s->flags : 0;
}

PAF_EXPORT int paf_scheme_get_default_port(const paf_scheme *s) {
        return s ? s->default_port : 0;
}

PAF_EXPORT const char *paf_scheme_get_plugin(const paf_scheme *s) {
        return s ? s->plugin : NULL;
}
