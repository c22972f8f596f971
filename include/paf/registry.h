/* paf/registry.h — the registry: protocols, plugins, search path and paf.conf. */
#pragma once

#include <paf/common.h>
#include <paf/ctx.h>
#include <paf/error.h>
#include <paf/protocol.h>

#ifdef __cplusplus
extern "C" {
#endif

PAF_EXPORT int paf_registry_new(paf_registry **ret);
PAF_EXPORT paf_registry *paf_registry_ref(paf_registry *reg);
PAF_EXPORT paf_registry *paf_registry_unref(paf_registry *reg);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_registry *, paf_registry_unref)

/* Register a protocol. ops must outlive the registry (plugins: a static).
 * -EEXIST if the name is taken, -EINVAL for a bad name or missing member. */
PAF_EXPORT int paf_registry_add_protocol(paf_registry *reg, const paf_protocol_ops *ops,
                                         void *userdata);
PAF_EXPORT const paf_protocol *paf_registry_find_protocol(paf_registry *reg, const char *name);
PAF_EXPORT size_t paf_registry_get_n_protocols(paf_registry *reg);
/* In registration order. */
PAF_EXPORT const paf_protocol *paf_registry_get_protocol(paf_registry *reg, size_t i);

/* The context holding the plugins' derivation rules (url.* -> tcp.* …). Every
 * resolution reads the user's context first, then this one. */
PAF_EXPORT paf_ctx *paf_registry_get_ctx(paf_registry *reg);

/*
 * ---- configuration: paf.conf ----
 *
 * paf_registry_load_config() reads paf.conf (path NULL: the embedded
 * default) and applies [paf]: plugin-path, load, log-level. Sections for
 * plugins are checked against the options each plugin declares once plugins
 * are loaded. Errors read "FILE:LINE: [section] key \"k\": reason".
 */
PAF_EXPORT int paf_registry_load_config(paf_registry *reg, const char *path, paf_error *error);
PAF_EXPORT int paf_registry_load_config_string(paf_registry *reg, const char *name,
                                               const char *text, paf_error *error);

/* A configured option: the file's value, else the declared default.
 * -ENOENT if nobody declared section/key, -ENODATA if it has no default and
 * is not set. */
PAF_EXPORT int paf_registry_get_option(paf_registry *reg, const char *section, const char *key,
                                       paf_value *ret);

/* The [listen.NAME] sections of paf.conf ("listen.web" …), in file order, as
 * a NULL-terminated array owned by reg and valid until the next load of the
 * configuration; *ret_n (may be NULL) gets their number. Read their keys
 * (address, tls, certificate, key, client-ca) with paf_registry_get_option().
 * The configuration checked that each has an address, and a certificate and
 * key when tls is on. */
PAF_EXPORT const char *const *paf_registry_get_listen_sections(paf_registry *reg, size_t *ret_n);

/*
 * ---- plugins ----
 *
 * Search order: paths added by the program, PAF_PLUGIN_PATH (colon
 * separated, read with secure_getenv), plugin-path from paf.conf, then the
 * compiled-in pluginsdir.
 */
PAF_EXPORT int paf_registry_add_plugin_path(paf_registry *reg, const char *path);
/* The search path, in order, as a NULL-terminated array owned by reg and
 * valid until the next call that loads plugins or configuration. */
PAF_EXPORT const char *const *paf_registry_get_plugin_path(paf_registry *reg);

/*
 * Load the plugins the configuration asks for ([paf] load), or, when it names
 * none, every NAME.so found on the search path (the first of a name wins).
 * Then check the configuration's plugin sections.
 *
 * A refused plugin never fails this call: it is listed with its reason (see
 * paf_registry_get_plugins()). Returns the number of requested plugins that
 * were refused or missing, or a negative errno for a configuration error
 * (unknown section, unknown key, bad value), explained in error.
 */
PAF_EXPORT int paf_registry_load_plugins(paf_registry *reg, paf_error *error);

/* Load one plugin by name (looked up in the search path) or by path (when it
 * contains a '/'). On refusal, error says why and names the file. */
PAF_EXPORT int paf_registry_load_plugin(paf_registry *reg, const char *name_or_path,
                                        paf_error *error);

typedef struct paf_plugin_info {
        const char *name;        /* from the descriptor, or the file name if refused */
        const char *version;     /* NULL if refused */
        const char *description; /* NULL if refused */
        const char *file;        /* NULL if not found */
        const char *protocols;   /* space-separated names it registered */
        bool loaded;
        bool requested;          /* named by [paf] load or by the program */
        const char *reason;      /* why it was refused, NULL if loaded */
} paf_plugin_info;

/* Loaded and refused plugins, in load order; valid until the next load. */
PAF_EXPORT const paf_plugin_info *paf_registry_get_plugins(paf_registry *reg, size_t *ret_n);

#ifdef __cplusplus
}
#endif
