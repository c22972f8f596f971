/* core/paf-internal.h — what the core's files share and nothing else sees. */
#pragma once

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include <paf.h>

#define _unused_ __attribute__((unused))
/* Thread-locals read on every request: the shared object's own, found
 * without a call into the dynamic linker (__tls_get_addr) each time. */
#define _tls_ie_ __attribute__((tls_model("initial-exec")))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

static inline void freep(void *p) {
        free(*(void **)p);
}
#define _cleanup_free_ _paf_cleanup_(freep)

/* The loop paf_event_run() is running on this thread and its time:
 * sd_event_now()'s CLOCK_MONOTONIC value, which stays the same from one
 * sd_event_wait() to the next, read once per iteration rather than by
 * every flow and connection that asks. */
typedef struct paf_loop_clock {
        sd_event *event;
        uint64_t monotonic;
} paf_loop_clock;
extern _Thread_local paf_loop_clock paf_loop_clock_now _tls_ie_;

/* Counts the core's deferred work scheduled on this thread (a flow's
 * completions, a socket's leftover reads): paf_event_run() goes back to
 * the loop when it moves. */
extern _Thread_local unsigned paf_loop_deferred _tls_ie_;

/* The loop's CLOCK_MONOTONIC time, in µs; the current time without one. */
uint64_t paf_loop_now_slow(sd_event *event);
static inline uint64_t paf_loop_now(sd_event *event) {
        if (event && paf_loop_clock_now.event == event)
                return paf_loop_clock_now.monotonic;
        return paf_loop_now_slow(event);
}

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
/* Whether l is implemented by ops, and not freed (listener.c): how an
 * implementation recognises its own listeners. */
bool paf_listener_has_ops(paf_listener *l, const paf_listener_ops *ops);
/* The protocol at the bottom of a layer's listener ("tcp" under tls), set by
 * paf_registry_wrap_listener(); a listener's own protocol otherwise. */
const char *paf_listener_get_transport(paf_listener *l);
int paf_listener_set_transport(paf_listener *l, const char *protocol);
/* The registry the listener holds, or NULL (listener.c). */
paf_registry *paf_listener_get_registry(paf_listener *l);

typedef struct paf_loader paf_loader;             /* plugin.c */
typedef struct paf_scheme_table paf_scheme_table; /* scheme.c */
typedef struct paf_config paf_config;             /* conf.c */

struct paf_registry {
        unsigned n_ref;

        /* Guards protocols, n_protocols and next_seq: the HTTP client adds
         * its proxy protocols when a call first needs them (core/http/proxy.c),
         * while other threads' loops resolve on the same registry. Entries are
         * only appended (freed with the registry, or with a plugin that failed
         * its init), so a protocol read under the lock stays valid after it. */
        pthread_mutex_t lock;
        paf_protocol **protocols; /* registration order */
        size_t n_protocols;
        unsigned next_seq;

        paf_ctx *ctx;              /* plugins' derivation rules */
        paf_scheme_table *schemes; /* URL schemes the plugins serve (scheme.c) */

        /* The plugin whose init() is running: protocols it adds are its own. */
        paf_plugin *initializing;

        /* Loader and configuration state (plugin.c, conf.c). */
        paf_loader *loader;
        paf_config *config;
};

/* Remove every protocol and scheme registered by plugin (a failed init). */
void paf_registry_remove_protocols_of(paf_registry *reg, const char *plugin);

/* URL schemes (scheme.c). The table is shared with the rules that read it,
 * which may outlive the registry in a context someone still holds. */
int paf_scheme_table_new(paf_scheme_table **ret);
paf_scheme_table *paf_scheme_table_unref(paf_scheme_table *t);
/* The core's rules of the registry's context: url.default-port, url.hostname. */
int paf_registry_add_scheme_rules(paf_registry *reg);
void paf_registry_remove_schemes_of(paf_registry *reg, const char *plugin);
/* What serves a URL's scheme: transport (the whole name's registration,
 * else its "+suffix"'s), layer (its base's) and whether a URL may use it
 * (a transport, and a base that is http or a layer). */
typedef struct paf_scheme_match {
        const paf_scheme *transport;
        const paf_scheme *layer;
        bool usable;
} paf_scheme_match;
void paf_registry_match_scheme(paf_registry *reg, const char *scheme, paf_scheme_match *ret);
/* The schemes a URL may use, ", "-separated ("http, https, http+unix"),
 * malloc'ed; "" when there are none. */
char *paf_registry_format_schemes(paf_registry *reg);
/* Loader and configuration teardown, called by paf_registry_unref(). */
void paf_registry_free_loader(paf_registry *reg);
void paf_registry_free_config(paf_registry *reg);
/* Name of a plugin handle (plugin.c). */
const char *paf_plugin_name_internal(paf_plugin *plugin);

/* [a-z0-9_-]+, at most 64 bytes: protocol and plugin names (registry.c). */
bool paf_name_is_valid(const char *name);

/* What the loader asks of the configuration (conf.c). */
/* plugin-path entries, NULL-terminated, or NULL when there are none. */
const char *const *paf_config_get_plugin_path(paf_registry *reg);
/* The [paf] load list, NULL-terminated, or NULL when the config has none. */
const char *const *paf_config_get_load(paf_registry *reg);
/* Whether name is a core section ([paf] …): no plugin may take it. */
bool paf_config_is_core_section(const char *name);
/* Every option of the core sections (a family by its prefix, "listen."). */
typedef void (*paf_core_option_handler_t)(const char *section, const paf_option_spec *o,
                                          void *userdata);
void paf_config_foreach_core_option(paf_core_option_handler_t fn, void *userdata);
/* Check the section of plugin name against its options. On error, sets
 * error and *ret_line (the first bad line) and returns < 0. */
int paf_config_check_plugin(paf_registry *reg, const char *name, const paf_option_spec *options,
                            paf_error *error, unsigned *ret_line);
/* Check every section against the loaded plugins (unknown sections, keys,
 * values); same error reporting. */
int paf_config_check_sections(paf_registry *reg, paf_error *error, unsigned *ret_line);
/* Parse an option value of type; on failure, reason (if not NULL) says why. */
int paf_option_parse(paf_type type, const char *s, paf_value *ret, char *reason, size_t size);
/* Parse and check a value against the option's checks (its range …). A
 * number outside the range, or too large for int64_t, is -ERANGE with the
 * reason "value out of range (MIN-MAX)". */
int paf_option_check(const paf_option_spec *o, const char *s, paf_value *ret, char *reason,
                     size_t size);

/* What the configuration asks of the loader (plugin.c). */
/* A loaded plugin, or the one being initialized, called name; else NULL. */
paf_plugin *paf_loader_find_plugin(paf_registry *reg, const char *name);
/* Whether a plugin called name was refused and none of that name is loaded. */
bool paf_loader_is_refused(paf_registry *reg, const char *name);
/* Name of the i-th loaded plugin, NULL past the end. */
const char *paf_loader_get_name(paf_registry *reg, size_t i);
/* The plugin's options, from either table of its descriptor, with their checks. */
const paf_option_spec *paf_plugin_get_options_internal(paf_plugin *plugin);

/* Undo a failed plugin init: every value and rule added to ctx since mark
 * goes (ctx.c). Values it replaced are not restored. */
unsigned paf_ctx_mark(paf_ctx *ctx);
void paf_ctx_drop_since(paf_ctx *ctx, unsigned mark);
/* Calls handler with the name of every key starting with prefix that ctx or
 * one of its layers holds a value or a rule for; a name held by several
 * layers comes once per layer. Stops at the first handler's < 0 and returns
 * it (ctx.c). What a protocol's whole configuration is, for pool keys. */
int paf_ctx_foreach_key(paf_ctx *ctx, const char *prefix,
                        int (*handler)(const char *key, void *userdata), void *userdata);

/* The protocol that takes a listen address and the endpoint it parsed it
 * into: what paf_registry_listen_address() listens on (listen.c). */
int paf_listen_parse_address(paf_registry *reg, const char *address,
                             const paf_protocol **ret_protocol, paf_ctx **ret_ctx,
                             paf_error *error);
/* Whether layer would wrap a listener of protocol on address, configured
 * by ctx, without listening: its wrap_listener runs on a listener that
 * accepts nothing (listen.c). */
int paf_listen_check_layer(paf_registry *reg, const char *layer, const char *protocol,
                           const char *address, paf_ctx *ctx, paf_error *error);

/* Resolution without layer protocols: what a layer runs over (resolve.c). */
int paf_registry_resolve_inner(paf_registry *reg, paf_ctx *ctx, paf_resolution **ret);
bool paf_protocol_is_layer(const paf_protocol *p);

/*
 * When the steps of a connect happened, CLOCK_MONOTONIC µs, as curl -w
 * times them (resolve.c): the core notes them in the stack it builds, so
 * no protocol has to. namelookup: a name lookup the bottom transport
 * started answered (paf_resolve_start() from inside its connect), or its
 * start when it looked nothing up; connect: the bottom transport's connect
 * ended; appconnect: the layers over it (TLS) ended theirs, 0 without one.
 */
typedef struct paf_connect_times {
        uint64_t namelookup;
        uint64_t connect;
        uint64_t appconnect;
} paf_connect_times;

uint64_t paf_monotonic_usec(void);
/* The winning attempt's times, for the connect's handler (valid while it runs). */
void paf_connect_get_times(paf_connect *c, paf_connect_times *ret);
/* A lookup started from inside a protocol's connect belongs to that
 * attempt: the resolver takes the current attempt's clock (a reference, or
 * NULL outside one), and notes the answer's time on it. */
typedef struct connect_clock connect_clock;
connect_clock *connect_clock_current(void);
void connect_clock_note_lookup(connect_clock *k);
void connect_clock_unref(connect_clock *k);

/* Whether the field name (len bytes) is one an HTTP server owns: framing
 * and hop-by-hop (Content-Length, Transfer-Encoding, Connection,
 * Keep-Alive, Proxy-Connection, Upgrade, TE, Trailer), never one a program
 * adds to every response (core/http/headers.c). */
bool http_field_is_servers_own(const char *name, size_t len);
