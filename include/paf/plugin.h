/* paf/plugin.h — the plugin descriptor and the host API plugins see. */
#pragma once

#include <paf/common.h>
#include <paf/ctx.h>
#include <paf/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes. A host loads plugins of the same major and
 * of a minor not newer than its own. */
#define PAF_ABI_MAJOR 1
#define PAF_ABI_MINOR 4
/* 1.1: protocol layers (flags, wrap_listener), listener reload.
 * 1.2: checked options (paf_option_spec, the descriptor's option_specs:
 *      ranges, choices, validators); flow write progress
 *      (paf_flow_write_progress, paf_flow_get_write_progress,
 *      PAF_FLOW_QUERY_WRITE_PROGRESS); pending
 *      connections of a listener (paf_listener_add_pending,
 *      paf_listener_get_pending, paf_listener_set_pending_handler);
 *      plugin threads (paf_plugin_start_thread); URL schemes
 *      (paf_registry_add_scheme, paf_scheme_desc, PAF_SCHEME_LAYER/HOSTNAME,
 *      paf_registry_add_url_rule, paf_registry_parse_url,
 *      paf_registry_get_scheme…, paf_scheme_get_*),
 *      paf_registry_get_plugin_option; name lookups off the loop
 *      (paf/resolver.h: paf_resolve_start, paf_resolve_cancel);
 *      printf-style plugin logging (paf_plugin_log, paf_plugin_logv); the
 *      socket listener's accept hook (paf_socket_listener_set_accept_hook);
 *      listener URLs (paf_listener_format_url).
 * 1.3: paf/acme.h: the ACME challenge tables (a TLS layer answers
 *      tls-alpn-01 from the tls.acme-tlsalpn key: paf_acme_tlsalpn_lookup…),
 *      the ACME client and its certificate manager; file bodies
 *      (paf_flow_send_file, the flow op send_file: sendfile(2) on sockets,
 *      the core's copy for flows without it).
 * 1.4: HTTP/2 (paf_http2_settings, paf_http_server_set_http2,
 *      paf_http_call_get_version, paf_http_headers_get_version; http.version
 *      "2", "2-prior-knowledge", "1.0"); paf_http_request_get_field,
 *      paf_http_server_set_response_headers; paf_http_call_query,
 *      paf_http_headers_get_reason, paf_client_send_hooked,
 *      paf_http_call_get_timings (curl -w's time_*); TLS flow queries
 *      PAF_FLOW_QUERY_TLS_CIPHER, _TLS_PEER_ISSUER, _TLS_PEER_EXPIRY;
 *      paf_http_static_set_mime_types, _set_precompressed, _set_gzip,
 *      _set_gzip_min_length. */

/* The symbol every plugin exports (PAF_PLUGIN_DEFINE defines it). */
#define PAF_PLUGIN_SYMBOL "paf_plugin_entry"

typedef struct paf_plugin paf_plugin;

/* An option a plugin accepts in its paf.conf section. */
typedef struct paf_option {
        const char *name;          /* [a-z0-9-]+ */
        paf_type type;             /* STRING, INT or BOOL */
        const char *default_value; /* as it would be written in paf.conf; NULL: none */
        const char *help;
} paf_option;

/* An option with what its value must be (ABI 1.2). The first members are
 * paf_option's; checks follow. paf.conf is refused, naming the file, line
 * and key, when a value fails one: `paf config check` and every program
 * reading the file say so before the plugin's init() runs, and init() only
 * ever sees good values.
 *
 * Members are only ever appended (choices and check came after max); a
 * host reads each entry as the descriptor's option_spec_size says and
 * takes members beyond it as zero, so a table built against an older
 * header keeps its meaning. */
typedef struct paf_option_spec {
        const char *name;          /* [a-z0-9-]+ */
        paf_type type;             /* STRING, INT or BOOL */
        const char *default_value; /* as it would be written in paf.conf; NULL: none */
        const char *help;
        uint32_t flags; /* PAF_OPTION_* */
        /* With PAF_OPTION_RANGE (INT only): the values allowed, both
         * included. The default must be one of them. */
        int64_t min, max;
        /* STRING only, NULL for any: the values allowed, compared exactly,
         * NULL-terminated. The default must be one of them. */
        const char *const *choices;
        /* Optional: the plugin's own check, for what a table cannot say (a
         * GnuTLS priority string). Called with the value once its type,
         * range and choices passed: 0 if it is good, else a negative errno
         * with reason (size bytes) saying why, like `"x" is not …`. It
         * runs in any program reading paf.conf (`paf config check`
         * included), before init() and on the default, so it must only
         * look at the value: no state, no files, nothing that blocks. */
        int (*check)(const paf_value *value, char *reason, size_t size);
} paf_option_spec;

/* flags of paf_option_spec. */
#define PAF_OPTION_RANGE (UINT32_C(1) << 0)

/* What the host offers a plugin. Appended to, never reordered. */
typedef struct paf_host {
        size_t struct_size;
        uint32_t abi_major;
        uint32_t abi_minor;
        const char *version; /* libpaf's version */
        /* Log a message prefixed with the plugin's name. */
        void (*log)(paf_plugin *plugin, int level, const char *format, va_list ap);
        /* The plugin's option from paf.conf, or its declared default. */
        int (*get_option)(paf_plugin *plugin, const char *name, paf_value *ret);
} paf_host;

typedef struct paf_plugin_descriptor {
        uint32_t abi_major;
        uint32_t abi_minor;
        size_t struct_size;
        const char *name; /* [a-z0-9_-]+ and the file's name without ".so" */
        const char *version;
        const char *description;
        /* Terminated by an entry with name NULL; may be NULL. Options with
         * checks go in option_specs instead (ABI 1.2); set one of the two. */
        const paf_option *options;
        /* Register protocols and rules. < 0 refuses the plugin; whatever it
         * registered is then removed. */
        int (*init)(paf_plugin *plugin, paf_registry *reg, const paf_host *host);
        void (*fini)(paf_plugin *plugin); /* optional */
        /* ABI 1.2. The options with their checks, terminated by an entry
         * with name NULL; may be NULL. */
        const paf_option_spec *option_specs;
        /* sizeof(paf_option_spec) as the plugin was built: the stride of
         * option_specs. PAF_PLUGIN_DEFINE sets it. */
        size_t option_spec_size;
} paf_plugin_descriptor;

#define PAF_PLUGIN_DEFINE(...)                                                                     \
        PAF_EXPORT const paf_plugin_descriptor paf_plugin_entry = {                                \
                .abi_major = PAF_ABI_MAJOR,                                                        \
                .abi_minor = PAF_ABI_MINOR,                                                        \
                .struct_size = sizeof(paf_plugin_descriptor),                                      \
                .option_spec_size = sizeof(paf_option_spec),                                       \
                __VA_ARGS__}

PAF_EXPORT const char *paf_plugin_get_name(paf_plugin *plugin);
PAF_EXPORT void paf_plugin_set_userdata(paf_plugin *plugin, void *userdata);
PAF_EXPORT void *paf_plugin_get_userdata(paf_plugin *plugin);

typedef void (*paf_plugin_thread_handler_t)(void *userdata);

/* Run fn(userdata) on a new, detached thread with every signal blocked
 * (ABI 1.2). For blocking work (getaddrinfo) that may outlive the request
 * it was started for, the registry and every plugin handle: the plugin
 * whose code fn is stays mapped until fn has returned, and only libpaf's
 * code runs on the thread after that. fn reports back by its own means
 * (say, an eventfd the loop watches). 0, or a negative errno, and then fn
 * never runs. */
PAF_EXPORT int paf_plugin_start_thread(paf_plugin_thread_handler_t fn, void *userdata);

/* Log a message prefixed with the plugin's name ("loop: listening on x"),
 * printf-style (ABI 1.2): host->log without the va_list wrapper every
 * plugin used to write. plugin may be NULL ("plugin: …"). Written to
 * stderr when level is at or below paf_log_get_level(). */
PAF_EXPORT void paf_plugin_log(paf_plugin *plugin, int level, const char *format, ...)
        PAF_PRINTF(3, 4);
PAF_EXPORT void paf_plugin_logv(paf_plugin *plugin, int level, const char *format, va_list ap)
        PAF_PRINTF(3, 0);

#ifdef __cplusplus
}
#endif
