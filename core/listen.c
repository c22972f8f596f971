/* core/listen.c — the registry's listen calls: by context, by address, by fd. */
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "paf-internal.h"

/* The listener is ready: hand it the user's handler and tie it to reg, whose
 * plugins implement it. */
static int listener_finish(paf_registry *reg, paf_listener *l, paf_accept_handler_t handler,
                           void *userdata, paf_listener **ret, paf_error *error) {
        paf_listener_hold_registry(l, reg);
        int r = paf_listener_set_accept_handler(l, handler, userdata);
        if (r < 0) {
                paf_error_set(error, r, "%s: cannot start accepting: %s",
                              paf_listener_get_address(l), strerror(-r));
                paf_listener_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

/* Run p's listen; a failure without a message gets one naming what. */
static int protocol_listen(const paf_protocol *p, paf_ctx *ctx, sd_event *event, const char *what,
                           paf_listener **ret, paf_error *error) {
        paf_error e = PAF_ERROR_NULL;
        paf_listener *l = NULL;
        int r = p->ops->listen(ctx, event, &l, &e, p->userdata);
        if (r >= 0 && !l)
                r = paf_error_set(&e, -EIO, "%s: protocol %s listened without a listener", what,
                                  p->ops->name);
        if (r < 0) {
                if (e.message[0] == '\0')
                        return paf_error_set(error, r, "%s: %s", what, strerror(-r));
                if (!strstr(e.message, what))
                        paf_error_prefix(&e, "%s", what);
                return paf_error_set(error, r, "%s", e.message);
        }
        *ret = l;
        return 0;
}

PAF_EXPORT int paf_registry_listen(paf_registry *reg, paf_ctx *ctx, sd_event *event,
                                   paf_accept_handler_t handler, void *userdata, paf_listener **ret,
                                   paf_error *error) {
        if (!reg || !ctx || !event || !ret)
                return paf_error_set(error, -EINVAL, "paf_registry_listen: invalid argument");

        /* A layer (TLS) among the candidates wraps what the protocols
         * under it listen on. */
        _paf_cleanup_(paf_resolution_freep) paf_resolution *top = NULL;
        int r = paf_registry_resolve(reg, ctx, &top);
        if (r < 0)
                return paf_error_set(error, r, "cannot resolve the endpoint to listen on: %s",
                                     strerror(-r));
        const char *layer = NULL;
        for (size_t i = 0; i < paf_resolution_get_n_candidates(top) && !layer; i++) {
                const paf_protocol *p = paf_resolution_get_protocol(top, i);
                if (paf_protocol_is_layer(p))
                        layer = p->ops->name;
        }

        _paf_cleanup_(paf_resolution_freep) paf_resolution *res = NULL;
        r = paf_registry_resolve_inner(reg, ctx, &res);
        if (r < 0)
                return paf_error_set(error, r, "cannot resolve the endpoint to listen on: %s",
                                     strerror(-r));

        size_t n = paf_resolution_get_n_candidates(res);
        for (size_t i = 0; i < n; i++) {
                const paf_protocol *p = paf_resolution_get_protocol(res, i);
                if (!p->ops->listen)
                        continue;

                /* The endpoint keys may come from the registry's rules
                 * (url.* -> tcp.*), so listen reads through them too. */
                _paf_cleanup_(paf_ctx_unrefp) paf_ctx *layered = NULL;
                r = paf_ctx_new_layered(ctx, paf_registry_get_ctx(reg), &layered);
                if (r < 0)
                        return paf_error_set(error, r, "cannot listen: %s", strerror(-r));

                const paf_attempt *a = &paf_resolution_get_attempts(res, NULL)[i];
                char what[600];
                snprintf(what, sizeof(what), "%s %s", p->ops->name, a->endpoint ?: "?");

                paf_listener *l;
                r = protocol_listen(p, layered, event, a->endpoint ?: what, &l, error);
                if (r < 0)
                        return r;
                if (layer) {
                        paf_listener *inner = l;
                        r = paf_registry_wrap_listener(reg, layer, inner, ctx, &l, error);
                        if (r < 0)
                                return r;
                }
                return listener_finish(reg, l, handler, userdata, ret, error);
        }

        /* Say why each protocol could not do it. */
        size_t n_attempts;
        const paf_attempt *attempts = paf_resolution_get_attempts(res, &n_attempts);
        _cleanup_free_ char *lines = paf_attempts_format(attempts, n_attempts);
        /* One line for paf_error: the report has one attempt a line. */
        char report[sizeof(error->message)] = "";
        size_t k = 0;
        for (const char *c = lines; c && *c && k + 3 < sizeof(report); c++) {
                if (*c != '\n')
                        report[k++] = *c;
                else if (c[1] != '\0') {
                        report[k++] = ';';
                        report[k++] = ' ';
                }
        }
        report[k] = '\0';
        if (n > 0)
                return paf_error_set(error, -EOPNOTSUPP,
                                     "no protocol can listen on this endpoint (%s)",
                                     *report ? report : "no candidate can listen");
        return paf_error_set(error, -ENOENT, "no protocol can listen on this context (%s)",
                             *report ? report : "no protocol is registered");
}

int paf_listen_parse_address(paf_registry *reg, const char *address,
                             const paf_protocol **ret_protocol, paf_ctx **ret_ctx,
                             paf_error *error) {
        if (!*address)
                return paf_error_set(error, -EINVAL, "\"\": empty listen address");

        size_t n = paf_registry_get_n_protocols(reg);
        for (size_t i = 0; i < n; i++) {
                const paf_protocol *p = paf_registry_get_protocol(reg, i);
                if (!p->ops->parse_address)
                        continue;

                _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
                int r = paf_ctx_new(&ctx);
                if (r < 0)
                        return paf_error_set(error, r, "%s: %s", address, strerror(-r));

                paf_error e = PAF_ERROR_NULL;
                r = p->ops->parse_address(address, ctx, &e, p->userdata);
                if (r < 0) {
                        if (e.message[0] == '\0')
                                return paf_error_set(error, r, "%s: %s", address, strerror(-r));
                        if (!strstr(e.message, address))
                                paf_error_prefix(&e, "%s", address);
                        return paf_error_set(error, r, "%s", e.message);
                }
                if (r == 0)
                        continue;

                if (!p->ops->listen)
                        return paf_error_set(error, -EOPNOTSUPP, "%s: protocol %s cannot listen",
                                             address, p->ops->name);
                *ret_protocol = p;
                *ret_ctx = ctx;
                ctx = NULL;
                return 0;
        }
        return paf_error_set(error, -EAFNOSUPPORT, "\"%s\": no protocol understands this address",
                             address);
}

PAF_EXPORT int paf_registry_listen_address(paf_registry *reg, const char *address, sd_event *event,
                                           paf_accept_handler_t handler, void *userdata,
                                           paf_listener **ret, paf_error *error) {
        if (!reg || !address || !event || !ret)
                return paf_error_set(error, -EINVAL,
                                     "paf_registry_listen_address: invalid argument");

        const paf_protocol *p = NULL;
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
        int r = paf_listen_parse_address(reg, address, &p, &ctx, error);
        if (r < 0)
                return r;
        paf_listener *l;
        r = protocol_listen(p, ctx, event, address, &l, error);
        if (r < 0)
                return r;
        return listener_finish(reg, l, handler, userdata, ret, error);
}

/* ---- checking what a listener would be, without listening ---- */

static int null_listener_start(paf_listener *l) {
        (void)l;
        return 0;
}

/* Accepts nothing: what a layer wraps when only its configuration is in
 * question. */
static const paf_listener_ops null_listener_ops = {
        .struct_size = sizeof(paf_listener_ops),
        .start = null_listener_start,
        .stop = null_listener_start,
};

int paf_listen_check_layer(paf_registry *reg, const char *layer, const char *protocol,
                           const char *address, paf_ctx *ctx, paf_error *error) {
        /* The layer's own wrap_listener reads and checks ctx: the code a
         * real listener goes through, so the check cannot drift from it. */
        _paf_cleanup_(sd_event_unrefp) sd_event *event = NULL;
        int r = sd_event_new(&event);
        paf_listener *inner = NULL, *l = NULL;
        if (r >= 0)
                r = paf_listener_new(event, &null_listener_ops, NULL, protocol, address, &inner);
        if (r < 0)
                return paf_error_set(error, r, "cannot check the %s layer: %s", layer,
                                     strerror(-r));
        r = paf_registry_wrap_listener(reg, layer, inner, ctx, &l, error);
        if (r < 0)
                return r;
        paf_listener_free(l);
        return 0;
}

PAF_EXPORT int paf_registry_get_listen_tls_ctx(paf_registry *reg, const char *section,
                                               paf_ctx **ret) {
        if (!reg || !section || !ret)
                return -EINVAL;
        size_t n;
        const char *const *names = paf_registry_get_listen_sections(reg, &n);
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
                found = strcmp(names[i], section) == 0;
        if (!found)
                return -ENOENT;

        paf_value tls, cert, key, ca;
        int r = paf_registry_get_option(reg, section, "tls", &tls);
        if (r < 0)
                return r;
        if (!tls.boolean) {
                *ret = NULL;
                return 0;
        }
        /* The configuration checked that both are there. */
        r = paf_registry_get_option(reg, section, "certificate", &cert);
        if (r >= 0)
                r = paf_registry_get_option(reg, section, "key", &key);
        if (r < 0)
                return r;
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
        r = paf_ctx_new(&ctx);
        if (r >= 0)
                r = paf_ctx_set_string(ctx, "tls.cert-file", cert.string);
        if (r >= 0)
                r = paf_ctx_set_string(ctx, "tls.key-file", key.string);
        if (r >= 0 && paf_registry_get_option(reg, section, "client-ca", &ca) >= 0) {
                r = paf_ctx_set_string(ctx, "tls.client-ca-file", ca.string);
                if (r >= 0)
                        r = paf_ctx_set_bool(ctx, "tls.require-client-cert", true);
        }
        if (r < 0)
                return r;
        *ret = ctx;
        ctx = NULL;
        return 1;
}

static const char *family_name(int family) {
        switch (family) {
        case AF_UNIX:
                return "AF_UNIX";
        case AF_INET:
                return "AF_INET";
        case AF_INET6:
                return "AF_INET6";
        case AF_VSOCK:
                return "AF_VSOCK";
        default:
                return NULL;
        }
}

PAF_EXPORT int paf_registry_listen_fd(paf_registry *reg, int fd, sd_event *event,
                                      paf_accept_handler_t handler, void *userdata,
                                      paf_listener **ret, paf_error *error) {
        if (fd < 0)
                return paf_error_set(error, -EBADF, "fd %d: not a file descriptor", fd);
        if (!reg || !event || !ret) {
                (void)close(fd);
                return paf_error_set(error, -EINVAL, "paf_registry_listen_fd: invalid argument");
        }

        int type = 0, listening = 0, family = AF_UNSPEC, r = 0;
        socklen_t len = sizeof(type);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
                r = -errno;
                if (r == -ENOTSOCK)
                        paf_error_set(error, r, "fd %d: not a socket", fd);
                else
                        paf_error_set(error, r, "fd %d: %s", fd, strerror(-r));
                goto fail;
        }
        len = sizeof(listening);
        if (type != SOCK_STREAM) {
                r = paf_error_set(error, -EPROTOTYPE, "fd %d: not a listening stream socket (%s)",
                                  fd,
                                  type == SOCK_DGRAM       ? "a datagram socket"
                                  : type == SOCK_SEQPACKET ? "a seqpacket socket"
                                                           : "not a stream socket");
                goto fail;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0) {
                r = paf_error_set(error, -errno, "fd %d: %s", fd, strerror(errno));
                goto fail;
        }
        if (!listening) {
                r = paf_error_set(error, -EINVAL,
                                  "fd %d: not a listening stream socket (listen() was not called)",
                                  fd);
                goto fail;
        }
        len = sizeof(family);
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) < 0) {
                r = paf_error_set(error, -errno, "fd %d: %s", fd, strerror(errno));
                goto fail;
        }

        const paf_protocol *chosen = NULL;
        size_t n = paf_registry_get_n_protocols(reg);
        for (size_t i = 0; i < n && !chosen; i++) {
                const paf_protocol *p = paf_registry_get_protocol(reg, i);
                for (const int *f = p->ops->families; f && *f; f++)
                        if (*f == family) {
                                chosen = p;
                                break;
                        }
        }
        if (!chosen) {
                const char *name = family_name(family);
                if (name)
                        r = paf_error_set(
                                error, -EAFNOSUPPORT,
                                "fd %d: no protocol handles %s sockets (is its plugin loaded?)", fd,
                                name);
                else
                        r = paf_error_set(error, -EAFNOSUPPORT,
                                          "fd %d: no protocol handles address family %d", fd,
                                          family);
                goto fail;
        }

        paf_listener *l;
        r = paf_socket_listener_new(event, fd, chosen->ops->name, &l);
        if (r < 0)
                return paf_error_set(error, r, "fd %d: cannot listen: %s", fd, strerror(-r));
        return listener_finish(reg, l, handler, userdata, ret, error);

fail:
        (void)close(fd);
        return r;
}

PAF_EXPORT int paf_registry_wrap_listener(paf_registry *reg, const char *protocol,
                                          paf_listener *inner, paf_ctx *ctx, paf_listener **ret,
                                          paf_error *error) {
        if (!reg || !protocol || !inner || !ret) {
                paf_listener_free(inner);
                return paf_error_set(error, -EINVAL, "paf_registry_wrap_listener: invalid argument");
        }
        const paf_protocol *p = paf_registry_find_protocol(reg, protocol);
        if (!p || p->ops->struct_size < offsetof(paf_protocol_ops, wrap_listener) +
                                                sizeof(p->ops->wrap_listener) ||
            !p->ops->wrap_listener) {
                int r = paf_error_set(error, p ? -EOPNOTSUPP : -ENOENT,
                                      "%s: %s", paf_listener_get_address(inner),
                                      p ? "this protocol cannot wrap a listener"
                                        : "no such protocol (is its plugin loaded?)");
                if (!p)
                        paf_error_prefix(error, "%s", protocol);
                paf_listener_free(inner);
                return r;
        }
        /* The layer reads its configuration through the plugins' rules too. */
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *layered = NULL;
        int r = paf_ctx_new_layered(ctx, paf_registry_get_ctx(reg), &layered);
        if (r < 0) {
                paf_listener_free(inner);
                return paf_error_set(error, r, "cannot wrap a listener: %s", strerror(-r));
        }
        char address[512], transport[128];
        snprintf(address, sizeof(address), "%s", paf_listener_get_address(inner));
        /* Before: the layer may free inner on failure. */
        snprintf(transport, sizeof(transport), "%s", paf_listener_get_transport(inner));
        paf_error e = PAF_ERROR_NULL;
        paf_listener *l = NULL;
        r = p->ops->wrap_listener(inner, layered, &l, &e, p->userdata);
        if (r >= 0 && !l)
                r = paf_error_set(&e, -EIO, "protocol %s wrapped without a listener", protocol);
        if (r < 0) {
                if (e.message[0] == '\0')
                        return paf_error_set(error, r, "%s %s: %s", protocol, address, strerror(-r));
                return paf_error_set(error, r, "%s", e.message);
        }
        paf_listener_hold_registry(l, reg);
        /* What the layer runs over names its URL: https+unix, say. */
        if (paf_listener_set_transport(l, transport) < 0) {
                paf_listener_free(l);
                return paf_error_set(error, -ENOMEM, "%s %s: out of memory", protocol, address);
        }
        *ret = l;
        return 0;
}
