/* tests/abi/plugin-abi.c — what a plugin is built against, as a library abidw can read: the
 * descriptor a plugin exports and the host table it is given are no part of libpaf's own
 * interface, so this makes them, and all they lead to, reachable (abi/plugin.abi). */
#include <paf.h>

static int probe_init(paf_plugin *plugin, paf_registry *reg, const paf_host *host) {
        (void)plugin;
        (void)reg;
        (void)host;
        return -1;
}

/* Never loaded: "paf-plugin-abi" is not a valid plugin file name. */
PAF_PLUGIN_DEFINE(.name = "abi-probe", .init = probe_init);

/* The vtables and descriptions plugins fill in, by the types of libpaf's
 * calls that take them. */
PAF_EXPORT void paf_abi_probe(const paf_protocol_ops *protocol, const paf_listener_ops *listener,
                              const paf_flow_ops *flow, const paf_scheme_desc *scheme,
                              const paf_option *option, const paf_option_spec *spec);
PAF_EXPORT void paf_abi_probe(const paf_protocol_ops *protocol, const paf_listener_ops *listener,
                              const paf_flow_ops *flow, const paf_scheme_desc *scheme,
                              const paf_option *option, const paf_option_spec *spec) {
        (void)protocol;
        (void)listener;
        (void)flow;
        (void)scheme;
        (void)option;
        (void)spec;
}
