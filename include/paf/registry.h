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
 * ---- URL schemes (ABI 1.2) ----
 *
 * The core knows no scheme: plugins register those they serve. A scheme
 * reads BASE or BASE+TRANSPORT. BASE is "http" (the HTTP the core speaks)
 * or a layer scheme a plugin registers; the transport is the protocol that
 * registered the whole name, or else its "+TRANSPORT" suffix. The built-in
 * plugins register:
 *
 *   tcp    "http" (port 80) and "https" (port 443), whose hosts are host names;
 *   unix   "+unix": http+unix, https+unix (the host is the socket path,
 *          percent-encoded: http+unix://%2Frun%2Fpaf.sock/);
 *   vsock  "+vsock" (port 80) and "https+vsock" (port 443): the host is a CID;
 *   tls    the layer "https": "https" and "https+X" are TLS over X.
 *
 * A URL is taken when a transport serves its scheme and its base is http or
 * a registered layer (so "https" is refused, not sent in clear, when no
 * plugin brings TLS). The redirect allow-list of the simple client
 * (paf_client_options.redirect_schemes) names schemes the same way.
 */
#define PAF_SCHEME_LAYER (UINT32_C(1) << 0)    /* name is a base: protocol is a layer */
#define PAF_SCHEME_HOSTNAME (UINT32_C(1) << 1) /* the URL's host is a host name (DNS, IP) */

typedef struct paf_scheme_desc {
        size_t struct_size; /* sizeof(paf_scheme_desc) */
        /* "http" or "http+loop": a whole scheme. "+unix": a suffix, serving
         * "http+unix" and "L+unix" for every layer scheme L; a whole name
         * wins over a suffix. With PAF_SCHEME_LAYER, a base ("https").
         * Lowercase letters, digits, '-' and '.', at most one '+'. */
        const char *name;
        /* The protocol serving it, a layer's for PAF_SCHEME_LAYER. */
        const char *protocol;
        uint32_t flags; /* PAF_SCHEME_* */
        /* The port of a URL that gives none (1 to 65535); 0: none. The
         * transport's rules read it as url.default-port. Layers have none. */
        int default_port;
} paf_scheme_desc;

/* Register a scheme (strings are copied; a plugin's schemes go with it).
 * -EEXIST if the name is taken (a layer and a whole scheme may share one),
 * -EINVAL for a bad name, protocol, flag or port. */
PAF_EXPORT int paf_registry_add_scheme(paf_registry *reg, const paf_scheme_desc *desc);

/*
 * A rule for key in the registry's context (paf_ctx_add_rule()'s contract)
 * that runs only when url.scheme is served by protocol, as its transport or
 * its layer; otherwise it declines. This is how a plugin turns url.* into
 * its endpoint keys without reading scheme names. Besides url.scheme,
 * url.host, url.port and url.path (paf_ctx_set_url()), its inputs may name:
 *
 *   url.default-port (int)  the port of the scheme's registration, if any;
 *   url.hostname (string)   url.host, when the transport takes host names
 *                           (PAF_SCHEME_HOSTNAME): TLS names the server by it.
 */
PAF_EXPORT int paf_registry_add_url_rule(paf_registry *reg, const char *protocol, const char *key,
                                         paf_type type, const paf_rule_input *inputs,
                                         size_t n_inputs, paf_rule_handler_t handler,
                                         void *userdata, paf_destroy_t destroy);

/*
 * paf_ctx_set_url() for a scheme this registry's plugins serve. Otherwise
 * -EPROTONOSUPPORT, and the message names the scheme and lists those
 * registered: URL "gopher://h/": unknown scheme "gopher" (registered: http,
 * https, http+unix, https+unix).
 */
PAF_EXPORT int paf_registry_parse_url(paf_registry *reg, const char *url, paf_ctx *ctx,
                                      paf_error *error);

/* Registered schemes, in registration order. */
typedef struct paf_scheme paf_scheme;
PAF_EXPORT size_t paf_registry_get_n_schemes(paf_registry *reg);
PAF_EXPORT const paf_scheme *paf_registry_get_scheme(paf_registry *reg, size_t i);
PAF_EXPORT const char *paf_scheme_get_name(const paf_scheme *s);
PAF_EXPORT const char *paf_scheme_get_protocol(const paf_scheme *s);
PAF_EXPORT uint32_t paf_scheme_get_flags(const paf_scheme *s);
PAF_EXPORT int paf_scheme_get_default_port(const paf_scheme *s);
/* Name of the plugin that registered it, or NULL when the program did. */
PAF_EXPORT const char *paf_scheme_get_plugin(const paf_scheme *s);

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
 * (address, tls, certificate, key, client-ca) with paf_registry_get_option():
 * relative files read as paths from the configuration file's directory.
 * The configuration checked that each has an address, and a certificate and
 * key when tls is on. */
PAF_EXPORT const char *const *paf_registry_get_listen_sections(paf_registry *reg, size_t *ret_n);

/* The tls layer's configuration of listener section ("listen.web") for
 * paf_registry_wrap_listener(): tls.cert-file and tls.key-file, and with
 * client-ca, tls.client-ca-file and tls.require-client-cert. Relative
 * files are taken from the configuration file's directory. 1 and a new
 * context when the section has tls on; 0 and *ret NULL when off; -ENOENT
 * when there is no such section. */
PAF_EXPORT int paf_registry_get_listen_tls_ctx(paf_registry *reg, const char *section,
                                               paf_ctx **ret);

/*
 * Check what a program serving this configuration would refuse and loading
 * it did not: call it once the plugins are loaded. Each [listen.NAME], in
 * file order: its address is one a protocol takes (parsed as
 * paf_registry_listen_address() parses it), and with tls on, the tls layer
 * takes its certificate, key and client CA (read, parsed and matched by the
 * layer's own code). Nothing is bound or listened on. `paf config check`
 * and `paf serve` both run it, so they refuse the same files with the same
 * message: "FILE:LINE: [listen.NAME] key \"k\": reason".
 */
PAF_EXPORT int paf_registry_check_config(paf_registry *reg, paf_error *error);

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

/* The i-th option a loaded plugin declares (paf/plugin.h), as this host
 * reads it whichever table and ABI it came from; NULL past the last one or
 * for a plugin that is not loaded (ABI 1.2). */
struct paf_option_spec;
PAF_EXPORT const struct paf_option_spec *
paf_registry_get_plugin_option(paf_registry *reg, const char *plugin, size_t i);

#ifdef __cplusplus
}
#endif
