/* core/paf-internal.h — what the core's files share and nothing else sees. */
#pragma once

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include <paf.h>

#define _unused_ __attribute__((unused))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

static inline void freep(void *p) {
        free(*(void **)p);
}
#define _cleanup_free_ _paf_cleanup_(freep)

/* A registered protocol. Owned by its registry; lives as long as it. */
struct paf_protocol {
        const paf_protocol_ops *ops;
        void *userdata;
        char *plugin; /* name of the plugin that registered it, or NULL */
        unsigned seq; /* registration order: ties in priority go to the newest */
};

/* Keep reg alive for as long as the flow or listener exists, so the plugin
 * code behind them is not unloaded under them (flow.c, listener.c). Accepted
 * flows inherit their listener's registry. */
void paf_flow_hold_registry(paf_flow *flow, paf_registry *reg);
void paf_listener_hold_registry(paf_listener *l, paf_registry *reg);


typedef struct paf_plugin_entry paf_plugin_entry; /* plugin.c */

struct paf_registry {
        unsigned n_ref;

        paf_protocol **protocols; /* registration order */
        size_t n_protocols;
        unsigned next_seq;

        paf_ctx *ctx; /* plugins' derivation rules */

        /* The plugin whose init() is running: protocols it adds are its own. */
        paf_plugin *initializing;

        /* Loader and configuration state (plugin.c, conf.c). */
        void *loader;
        void *config;
};

/* Remove every protocol registered by plugin (a failed init). */
void paf_registry_remove_protocols_of(paf_registry *reg, const char *plugin);
/* Loader and configuration teardown, called by paf_registry_unref(). */
void paf_registry_free_loader(paf_registry *reg);
void paf_registry_free_config(paf_registry *reg);
/* Name of a plugin handle (plugin.c). */
const char *paf_plugin_name_internal(paf_plugin *plugin);
