/* examples/plugin/loop.c — "loop", an in-process transport: a third-party paf plugin.
 *
 * A listener takes a name ("loop:NAME" as a listen address, or the context
 * key "loop.name"); connecting to that name yields a pair of flows joined in
 * memory. It shows everything a transport plugin writes: a descriptor, a
 * protocol with connect/listen/address parsing, a URL scheme ("+loop", so
 * `paf get http+loop://NAME/` reaches it) with the rule turning the URL
 * into its endpoint, and a flow implementation with backpressure. Built
 * only with `pkg-config paf`.
 *
 * Names live in one table per process, like abstract unix sockets.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <paf.h>

#define LOOP_WINDOW (64 * 1024) /* the most one end buffers for its reader */

static paf_plugin *self;
/* [loop] window in paf.conf: how much of it is used. */
static size_t window = LOOP_WINDOW;

/* ---- one end of a pair ---- */

typedef struct loop_end loop_end;
struct loop_end {
        paf_flow *flow;
        loop_end *peer;        /* NULL once the peer closed */
        char inbox[LOOP_WINDOW]; /* written by the peer, not yet delivered here */
        size_t len;
        bool eof;              /* the peer will write no more */
        bool eof_delivered;
        sd_event_source *defer; /* delivers inbox and EOF from the loop */

        /* The write waiting for room in the peer's inbox: a copy of the
         * caller's iovec array, consumed from index pos. */
        struct iovec *iov;
        size_t n_iov, pos;
        bool writing;
};

static void end_kick(loop_end *e) {
        if ((e->len > 0 || (e->eof && !e->eof_delivered)) && paf_flow_is_reading(e->flow))
                sd_event_source_set_enabled(e->defer, SD_EVENT_ONESHOT);
}

/* Move as much of e's pending write as fits into the peer's inbox. */
static void end_push(loop_end *e) {
        if (!e->writing)
                return;
        if (!e->peer) {
                e->writing = false;
                paf_flow_write_done(e->flow, -EPIPE);
                return;
        }
        loop_end *p = e->peer;
        while (e->pos < e->n_iov && p->len < window) {
                struct iovec *v = &e->iov[e->pos];
                size_t n = v->iov_len;
                if (n > window - p->len)
                        n = window - p->len;
                memcpy(p->inbox + p->len, v->iov_base, n);
                p->len += n;
                v->iov_base = (char *)v->iov_base + n;
                v->iov_len -= n;
                if (v->iov_len == 0)
                        e->pos++;
        }
        end_kick(p);
        if (e->pos == e->n_iov) {
                e->writing = false;
                paf_flow_write_done(e->flow, 0);
        }
}

static int end_on_defer(sd_event_source *s, void *userdata) {
        (void)s;
        loop_end *e = userdata;
        if (e->len > 0 && paf_flow_is_reading(e->flow)) {
                /* Deliver from a copy: the handler may write back, which
                 * lets the peer refill our inbox. */
                char buf[LOOP_WINDOW];
                size_t n = e->len;
                memcpy(buf, e->inbox, n);
                e->len = 0;
                if (e->peer)
                        end_push(e->peer);
                paf_flow_deliver(e->flow, buf, n, 0);
                return 0;
        }
        if (e->len == 0 && e->eof && !e->eof_delivered && paf_flow_is_reading(e->flow)) {
                e->eof_delivered = true;
                paf_flow_deliver(e->flow, NULL, 0, 0);
        }
        return 0;
}

static int loop_read_start(paf_flow *flow) {
        end_kick(paf_flow_get_impl(flow));
        return 0;
}

static int loop_read_stop(paf_flow *flow) {
        loop_end *e = paf_flow_get_impl(flow);
        return sd_event_source_set_enabled(e->defer, SD_EVENT_OFF);
}

static int loop_write(paf_flow *flow, const struct iovec *iov, size_t n_iov) {
        loop_end *e = paf_flow_get_impl(flow);
        struct iovec *copy = reallocarray(NULL, n_iov ? n_iov : 1, sizeof(*copy));
        if (!copy)
                return -ENOMEM;
        memcpy(copy, iov, n_iov * sizeof(*iov));
        free(e->iov);
        e->iov = copy;
        e->n_iov = n_iov;
        e->pos = 0;
        e->writing = true;
        end_push(e);
        return 0;
}

static int loop_shutdown(paf_flow *flow) {
        loop_end *e = paf_flow_get_impl(flow);
        if (e->peer) {
                e->peer->eof = true;
                end_kick(e->peer);
        }
        return 0;
}

static void loop_close(paf_flow *flow) {
        loop_end *e = paf_flow_get_impl(flow);
        if (e->peer) {
                e->peer->peer = NULL;
                e->peer->eof = true;
                end_kick(e->peer);
                end_push(e->peer); /* a peer blocked on our window now fails */
        }
        sd_event_source_disable_unref(e->defer);
        free(e->iov);
        free(e);
}

static const paf_flow_ops loop_flow_ops = {
        .struct_size = sizeof(paf_flow_ops),
        .read_start = loop_read_start,
        .read_stop = loop_read_stop,
        .write = loop_write,
        .shutdown = loop_shutdown,
        .close = loop_close,
};

static int end_new(sd_event *event, const char *peer, const char *local, loop_end **ret) {
        loop_end *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        int r = sd_event_add_defer(event, &e->defer, end_on_defer, e);
        if (r >= 0)
                r = sd_event_source_set_enabled(e->defer, SD_EVENT_OFF);
        if (r >= 0)
                r = paf_flow_new(event, &loop_flow_ops, e, "loop", peer, local, &e->flow);
        if (r < 0) {
                sd_event_source_disable_unref(e->defer);
                free(e);
                return r;
        }
        *ret = e;
        return 0;
}

/* ---- listeners, by name ---- */

typedef struct loop_listener loop_listener;
struct loop_listener {
        char *name;
        paf_listener *listener;
        bool accepting;
        loop_listener *next;
};

static loop_listener *listeners;

static loop_listener *listener_find(const char *name) {
        for (loop_listener *l = listeners; l; l = l->next)
                if (strcmp(l->name, name) == 0)
                        return l;
        return NULL;
}

static int loop_listener_start(paf_listener *l) {
        ((loop_listener *)paf_listener_get_impl(l))->accepting = true;
        return 0;
}

static int loop_listener_stop(paf_listener *l) {
        ((loop_listener *)paf_listener_get_impl(l))->accepting = false;
        return 0;
}

static void loop_listener_close(paf_listener *l) {
        loop_listener *ll = paf_listener_get_impl(l);
        for (loop_listener **p = &listeners; *p; p = &(*p)->next)
                if (*p == ll) {
                        *p = ll->next;
                        break;
                }
        free(ll->name);
        free(ll);
}

static const paf_listener_ops loop_listener_ops = {
        .struct_size = sizeof(paf_listener_ops),
        .start = loop_listener_start,
        .stop = loop_listener_stop,
        .close = loop_listener_close,
};

/* ---- the protocol ---- */

static int loop_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata) {
        (void)userdata;
        const char *name;
        int r = paf_ctx_get_string(ctx, "loop.name", &name);
        if (r < 0)
                return r;
        snprintf(buf, size, "loop:%s", name);
        return 0;
}

/* Connecting completes from the loop, never inside connect(). */
static int loop_on_connect(sd_event_source *s, void *userdata) {
        paf_connect_request *req = userdata;
        sd_event_source_disable_unref(s);
        paf_connect_request_set_data(req, NULL);

        const char *name;
        int r = paf_ctx_get_string(paf_connect_request_get_ctx(req), "loop.name", &name);
        if (r < 0) {
                paf_connect_request_fail(req, r, "no loop.name");
                return 0;
        }
        loop_listener *l = listener_find(name);
        if (!l || !l->accepting) {
                paf_connect_request_fail(req, -ECONNREFUSED, "nothing listens on loop:%s", name);
                return 0;
        }
        char local[256];
        snprintf(local, sizeof(local), "loop:%s", name);
        sd_event *event = paf_connect_request_get_event(req);
        loop_end *client, *server;
        r = end_new(event, local, "loop:client", &client);
        if (r < 0) {
                paf_connect_request_fail(req, r, "cannot create flow: %s", strerror(-r));
                return 0;
        }
        r = end_new(event, "loop:client", local, &server);
        if (r < 0) {
                paf_flow_close(client->flow, NULL, NULL);
                paf_connect_request_fail(req, r, "cannot create flow: %s", strerror(-r));
                return 0;
        }
        client->peer = server;
        server->peer = client;
        paf_listener_deliver(l->listener, server->flow);
        paf_connect_request_done(req, client->flow);
        return 0;
}

static int loop_connect(paf_connect_request *req, void *userdata) {
        (void)userdata;
        sd_event_source *s;
        int r = sd_event_add_defer(paf_connect_request_get_event(req), &s, loop_on_connect, req);
        if (r < 0)
                return r;
        paf_connect_request_set_data(req, s);
        return 0;
}

static void loop_cancel(paf_connect_request *req, void *userdata) {
        (void)userdata;
        sd_event_source_disable_unref(paf_connect_request_get_data(req));
}

static int loop_listen(paf_ctx *ctx, sd_event *event, paf_listener **ret, paf_error *error,
                       void *userdata) {
        (void)userdata;
        const char *name;
        int r = paf_ctx_get_string(ctx, "loop.name", &name);
        if (r < 0)
                return paf_error_set(error, r, "loop: no loop.name to listen on");
        if (listener_find(name))
                return paf_error_set(error, -EADDRINUSE, "loop:%s: already in use", name);

        loop_listener *ll = calloc(1, sizeof(*ll));
        if (!ll || !(ll->name = strdup(name))) {
                free(ll);
                return paf_error_set(error, -ENOMEM, "loop:%s: out of memory", name);
        }
        char address[256];
        snprintf(address, sizeof(address), "loop:%s", name);
        r = paf_listener_new(event, &loop_listener_ops, ll, "loop", address, &ll->listener);
        if (r < 0) {
                free(ll->name);
                free(ll);
                return paf_error_set(error, r, "%s: cannot create listener: %s", address,
                                     strerror(-r));
        }
        ll->next = listeners;
        listeners = ll;
        *ret = ll->listener;
        return 0;
}

static int loop_parse_address(const char *address, paf_ctx *ctx, paf_error *error,
                              void *userdata) {
        (void)userdata;
        if (strncmp(address, "loop:", 5) != 0)
                return 0;
        if (address[5] == '\0')
                return paf_error_set(error, -EINVAL, "\"%s\": empty loop name", address);
        return paf_ctx_set_string(ctx, "loop.name", address + 5) < 0 ? -ENOMEM : 1;
}

/* URLs: http+loop://NAME/… (and https+loop:// when the tls plugin is
 * there: TLS over loop). The name has no port. */
static const paf_scheme_desc loop_scheme = {
        .struct_size = sizeof(paf_scheme_desc),
        .name = "+loop",
        .protocol = "loop",
};

/* loop.name from the URL's host; the registry runs it for "+loop" schemes only. */
static int rule_name_from_url(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        (void)userdata;
        *ret = PAF_VALUE_STRING(in[0].string);
        return 1;
}

static const char *const loop_keys[] = {"loop.name", NULL};

static const paf_protocol_ops loop_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "loop",
        .priority = 90,
        .endpoint_keys = loop_keys,
        .describe = loop_describe,
        .connect = loop_connect,
        .cancel = loop_cancel,
        .listen = loop_listen,
        .parse_address = loop_parse_address,
};

static int loop_init(paf_plugin *plugin, paf_registry *reg, const paf_host *h) {
        self = plugin;
        /* Checked against the option table before init runs. */
        paf_value v;
        if (h->get_option(plugin, "window", &v) >= 0 && v.type == PAF_TYPE_INT)
                window = (size_t)v.integer;
        int r = paf_registry_add_scheme(reg, &loop_scheme);
        if (r < 0)
                return r;
        static const paf_rule_input inputs[] = {
                PAF_REQUIRED("url.host", PAF_TYPE_STRING),
        };
        r = paf_registry_add_url_rule(reg, "loop", "loop.name", PAF_TYPE_STRING, inputs, 1,
                                      rule_name_from_url, NULL, NULL);
        if (r < 0)
                return r;
        r = paf_registry_add_protocol(reg, &loop_protocol, NULL);
        if (r < 0)
                return r;
        paf_plugin_log(self, PAF_LOG_DEBUG, "in-process transport ready (window %zu bytes)", window);
        return 0;
}

static const paf_option_spec loop_options[] = {
        {"window", PAF_TYPE_INT, "65536", "Bytes one end of a connection buffers for its reader",
         .flags = PAF_OPTION_RANGE, .min = 512, .max = LOOP_WINDOW},
        {},
};

PAF_PLUGIN_DEFINE(.name = "loop", .version = "1.0.0",
                  .description = "in-process transport (example third-party plugin)",
                  .option_specs = loop_options, .init = loop_init);
