/* core/registry.c — the registry of protocols, its URL schemes and its rule context. */
#include "paf-internal.h"

bool paf_name_is_valid(const char *name) {
        if (!name || !*name || strlen(name) > 64)
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
                        return false;
        return true;
}

PAF_EXPORT int paf_registry_new(paf_registry **ret) {
        if (!ret)
                return -EINVAL;
        paf_registry *reg = calloc(1, sizeof(*reg));
        if (!reg)
                return -ENOMEM;
        reg->n_ref = 1;
        pthread_mutex_init(&reg->lock, NULL);
        int r = paf_ctx_new(&reg->ctx);
        if (r >= 0)
                r = paf_scheme_table_new(&reg->schemes);
        if (r >= 0)
                r = paf_registry_add_scheme_rules(reg);
        if (r < 0) {
                paf_ctx_unref(reg->ctx);
                paf_scheme_table_unref(reg->schemes);
                pthread_mutex_destroy(&reg->lock);
                free(reg);
                return r;
        }
        *ret = reg;
        return 0;
}

/* Atomic: flows accepted on several threads' loops (paf serve --workers)
 * hold the one registry their listeners came from. */
PAF_EXPORT paf_registry *paf_registry_ref(paf_registry *reg) {
        if (reg)
                __atomic_add_fetch(&reg->n_ref, 1, __ATOMIC_RELAXED);
        return reg;
}

PAF_EXPORT paf_registry *paf_registry_unref(paf_registry *reg) {
        if (!reg)
                return NULL;
        assert(__atomic_load_n(&reg->n_ref, __ATOMIC_RELAXED) > 0);
        if (__atomic_sub_fetch(&reg->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        /* Rules in the context may point into plugin code: drop them before
         * the plugins go. */
        reg->ctx = paf_ctx_unref(reg->ctx);
        reg->schemes = paf_scheme_table_unref(reg->schemes);
        for (size_t i = 0; i < reg->n_protocols; i++) {
                free(reg->protocols[i]->plugin);
                free(reg->protocols[i]);
        }
        free(reg->protocols);
        reg->protocols = NULL;
        reg->n_protocols = 0;
        /* Plugins go before the configuration: fini() may still read options. */
        paf_registry_free_loader(reg);
        paf_registry_free_config(reg);
        pthread_mutex_destroy(&reg->lock);
        free(reg);
        return NULL;
}

static int add_protocol_locked(paf_registry *reg, const paf_protocol_ops *ops, void *userdata);

PAF_EXPORT int paf_registry_add_protocol(paf_registry *reg, const paf_protocol_ops *ops,
                                         void *userdata) {
        if (!reg || !ops || ops->struct_size < offsetof(paf_protocol_ops, parse_address) ||
            !paf_name_is_valid(ops->name) || !ops->endpoint_keys || !ops->describe || !ops->connect)
                return -EINVAL;
        pthread_mutex_lock(&reg->lock);
        int r = add_protocol_locked(reg, ops, userdata);
        pthread_mutex_unlock(&reg->lock);
        return r;
}

static const paf_protocol *find_protocol_locked(paf_registry *reg, const char *name) {
        for (size_t i = 0; i < reg->n_protocols; i++)
                if (strcmp(reg->protocols[i]->ops->name, name) == 0)
                        return reg->protocols[i];
        return NULL;
}

/* The check and the append in one hold of the lock: two threads adding the
 * same name get one protocol and one -EEXIST. */
static int add_protocol_locked(paf_registry *reg, const paf_protocol_ops *ops, void *userdata) {
        if (find_protocol_locked(reg, ops->name))
                return -EEXIST;

        paf_protocol *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        const char *plugin = reg->initializing ? paf_plugin_name_internal(reg->initializing) : NULL;
        if (plugin && !(p->plugin = strdup(plugin))) {
                free(p);
                return -ENOMEM;
        }
        paf_protocol **a = realloc(reg->protocols, (reg->n_protocols + 1) * sizeof(*a));
        if (!a) {
                free(p->plugin);
                free(p);
                return -ENOMEM;
        }
        reg->protocols = a;
        p->ops = ops;
        p->userdata = userdata;
        p->seq = reg->next_seq++;
        reg->protocols[reg->n_protocols++] = p;
        return 0;
}

void paf_registry_remove_protocols_of(paf_registry *reg, const char *plugin) {
        paf_registry_remove_schemes_of(reg, plugin);
        pthread_mutex_lock(&reg->lock);
        size_t j = 0;
        for (size_t i = 0; i < reg->n_protocols; i++) {
                paf_protocol *p = reg->protocols[i];
                if (p->plugin && plugin && strcmp(p->plugin, plugin) == 0) {
                        free(p->plugin);
                        free(p);
                } else
                        reg->protocols[j++] = p;
        }
        reg->n_protocols = j;
        pthread_mutex_unlock(&reg->lock);
}

PAF_EXPORT const paf_protocol *paf_registry_find_protocol(paf_registry *reg, const char *name) {
        if (!reg || !name)
                return NULL;
        pthread_mutex_lock(&reg->lock);
        const paf_protocol *p = find_protocol_locked(reg, name);
        pthread_mutex_unlock(&reg->lock);
        return p;
}

PAF_EXPORT size_t paf_registry_get_n_protocols(paf_registry *reg) {
        if (!reg)
                return 0;
        pthread_mutex_lock(&reg->lock);
        size_t n = reg->n_protocols;
        pthread_mutex_unlock(&reg->lock);
        return n;
}

PAF_EXPORT const paf_protocol *paf_registry_get_protocol(paf_registry *reg, size_t i) {
        if (!reg)
                return NULL;
        pthread_mutex_lock(&reg->lock);
        const paf_protocol *p = i < reg->n_protocols ? reg->protocols[i] : NULL;
        pthread_mutex_unlock(&reg->lock);
        return p;
}

PAF_EXPORT paf_ctx *paf_registry_get_ctx(paf_registry *reg) {
        return reg ? reg->ctx : NULL;
}

PAF_EXPORT const char *paf_protocol_get_name(const paf_protocol *p) {
        return p ? p->ops->name : NULL;
}

PAF_EXPORT int paf_protocol_get_priority(const paf_protocol *p) {
        return p ? p->ops->priority : 0;
}

PAF_EXPORT const char *paf_protocol_get_plugin(const paf_protocol *p) {
        return p ? p->plugin : NULL;
}

PAF_EXPORT const paf_option_spec *paf_registry_get_plugin_option(paf_registry *reg,
                                                                 const char *plugin, size_t i) {
        const paf_option_spec *o =
                paf_plugin_get_options_internal(paf_loader_find_plugin(reg, plugin));
        for (size_t j = 0; o && o[j].name; j++)
                if (j == i)
                        return &o[j];
        return NULL;
}
