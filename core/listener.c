/* core/listener.c — the generic listener: accept handler, pause/resume, delivery. */
#include "paf-internal.h"

struct paf_listener {
        sd_event *event;
        const paf_listener_ops *ops;
        void *impl;
        char *protocol, *address;
        /* A layer's listener: the protocol at the bottom ("tcp" under tls),
         * for its URL (paf_listener_format_url). NULL: protocol itself. */
        char *transport;
        paf_registry *registry; /* handed on to every accepted flow */

        paf_accept_handler_t handler;
        void *userdata;
        unsigned pending; /* taken, not delivered yet (a layer's handshakes) */
        paf_listener_pending_handler_t pending_handler;
        void *pending_userdata;
        bool running; /* the implementation was started */

        /* > 0 while the accept handler runs: freeing the listener from in
         * there must leave this struct to paf_listener_deliver(). */
        unsigned delivering;
        bool freed;
};

#define OPS_HAS(ops, member)                                                                       \
        ((ops)->struct_size >= offsetof(paf_listener_ops, member) + sizeof((ops)->member) &&       \
         (ops)->member)

PAF_EXPORT int paf_listener_new(sd_event *event, const paf_listener_ops *ops, void *impl,
                                const char *protocol, const char *address, paf_listener **ret) {
        if (!event || !ops || !ret || !OPS_HAS(ops, start) || !OPS_HAS(ops, stop))
                return -EINVAL;

        paf_listener *l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->protocol = strdup(protocol ?: "?");
        l->address = strdup(address ?: "?");
        if (!l->protocol || !l->address) {
                free(l->protocol);
                free(l->address);
                free(l);
                return -ENOMEM;
        }
        l->event = sd_event_ref(event);
        l->ops = ops;
        l->impl = impl;
        *ret = l;
        return 0;
}

static void listener_destroy(paf_listener *l) {
        sd_event_unref(l->event);
        free(l->protocol);
        free(l->address);
        free(l->transport);
        /* Last: the registry may unload the plugin behind the listener. */
        paf_registry_unref(l->registry);
        free(l);
}

PAF_EXPORT paf_listener *paf_listener_free(paf_listener *l) {
        if (!l || l->freed)
                return NULL;
        l->freed = true;
        l->handler = NULL;
        l->pending_handler = NULL;
        /* The implementation's close must cope with being called from inside
         * its own paf_listener_deliver() call (the handler freed us). */
        if (OPS_HAS(l->ops, close))
                l->ops->close(l);
        else if (l->running)
                l->ops->stop(l);
        l->running = false;
        if (l->delivering == 0)
                listener_destroy(l);
        return NULL;
}

bool paf_listener_has_ops(paf_listener *l, const paf_listener_ops *ops) {
        return l && !l->freed && l->ops == ops;
}

const char *paf_listener_get_transport(paf_listener *l) {
        return l->transport ? l->transport : l->protocol;
}

int paf_listener_set_transport(paf_listener *l, const char *protocol) {
        char *s = strdup(protocol);
        if (!s)
                return -ENOMEM;
        free(l->transport);
        l->transport = s;
        return 0;
}

paf_registry *paf_listener_get_registry(paf_listener *l) {
        return l->registry;
}

void paf_listener_hold_registry(paf_listener *l, paf_registry *reg) {
        if (!l || l->registry == reg)
                return;
        paf_registry_ref(reg);
        paf_registry_unref(l->registry);
        l->registry = reg;
}

PAF_EXPORT int paf_listener_start(paf_listener *l) {
        if (!l || l->freed)
                return -EINVAL;
        if (l->running)
                return 0;
        int r = l->ops->start(l);
        if (r < 0)
                return r;
        l->running = true;
        return 0;
}

PAF_EXPORT int paf_listener_stop(paf_listener *l) {
        if (!l || l->freed)
                return -EINVAL;
        if (!l->running)
                return 0;
        int r = l->ops->stop(l);
        if (r < 0)
                return r;
        l->running = false;
        return 0;
}

PAF_EXPORT int paf_listener_set_accept_handler(paf_listener *l, paf_accept_handler_t handler,
                                               void *userdata) {
        if (!l || l->freed)
                return -EINVAL;
        l->handler = handler;
        l->userdata = userdata;
        /* Accepting with nobody to take the flows would only close them. */
        return handler ? paf_listener_start(l) : paf_listener_stop(l);
}

PAF_EXPORT void paf_listener_deliver(paf_listener *l, paf_flow *flow) {
        if (!flow)
                return;
        if (!l || l->freed || !l->handler) {
                paf_flow_close(flow, NULL, NULL);
                return;
        }
        if (l->registry)
                paf_flow_hold_registry(flow, l->registry);

        l->delivering++;
        l->handler(l, flow, l->userdata);
        l->delivering--;
        if (l->freed && l->delivering == 0)
                listener_destroy(l);
}

PAF_EXPORT void paf_listener_add_pending(paf_listener *l, int delta) {
        if (!l || l->freed || delta == 0)
                return;
        if (delta < 0 && (unsigned)-delta > l->pending) {
                paf_log(PAF_LOG_ERR, "listener %s: more pending connections released than taken",
                        l->address);
                l->pending = 0;
        } else
                l->pending = (unsigned)((int)l->pending + delta);
        if (!l->pending_handler)
                return;
        /* Freeing us from in there is not allowed (the implementation is
         * on the stack); this keeps the memory sound if it happens anyway. */
        l->delivering++;
        l->pending_handler(l, l->pending, l->pending_userdata);
        l->delivering--;
        if (l->freed && l->delivering == 0)
                listener_destroy(l);
}

PAF_EXPORT unsigned paf_listener_get_pending(paf_listener *l) {
        return l && !l->freed ? l->pending : 0;
}

PAF_EXPORT int paf_listener_set_pending_handler(paf_listener *l,
                                                paf_listener_pending_handler_t handler,
                                                void *userdata) {
        if (!l || l->freed)
                return -EINVAL;
        l->pending_handler = handler;
        l->pending_userdata = userdata;
        return 0;
}

PAF_EXPORT const char *paf_listener_get_address(paf_listener *l) {
        return l ? l->address : NULL;
}

PAF_EXPORT const char *paf_listener_get_protocol(paf_listener *l) {
        return l ? l->protocol : NULL;
}

PAF_EXPORT int paf_listener_get_fd(paf_listener *l) {
        if (!l)
                return -EINVAL;
        if (l->freed || !OPS_HAS(l->ops, get_fd))
                return -EOPNOTSUPP;
        return l->ops->get_fd(l);
}

PAF_EXPORT void *paf_listener_get_impl(paf_listener *l) {
        return l ? l->impl : NULL;
}

PAF_EXPORT sd_event *paf_listener_get_event(paf_listener *l) {
        return l ? l->event : NULL;
}

PAF_EXPORT int paf_listener_reload(paf_listener *l, paf_ctx *ctx, paf_error *error) {
        if (!l)
                return paf_error_set(error, -EINVAL, "no listener");
        if (!OPS_HAS(l->ops, reload))
                return paf_error_set(error, -EOPNOTSUPP, "%s: nothing to reload",
                                     paf_listener_get_address(l));
        return l->ops->reload(l, ctx, error);
}
