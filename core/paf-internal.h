/* core/paf-internal.h — what the core's files share and nothing else sees. */
#pragma once

#include <errno.h>
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

