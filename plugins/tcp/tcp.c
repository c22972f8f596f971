/* plugins/tcp/tcp.c — tcp.so: TCP over IPv4 and IPv6, names resolved off the event loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <paf.h>

#include "config.h"

#define TCP_PRIORITY 50

/* Through the core's log rather than host->log: the plugin may be loaded
 * by several registries, and a static plugin handle would belong to only
 * one of them. */
#define tcp_log(level, format, ...) paf_log(level, "tcp: " format, __VA_ARGS__)

/* "host:port", with brackets for IPv6 and "*" for any address. */
static void format_endpoint(const char *host, int64_t port, char *buf, size_t size) {
        if (!host || !*host)
                snprintf(buf, size, "*:%lld", (long long)port);
        else if (strchr(host, ':') && host[0] != '[')
                snprintf(buf, size, "[%s]:%lld", host, (long long)port);
        else
                snprintf(buf, size, "%s:%lld", host, (long long)port);
}

/* tcp.host without the brackets a user may have kept from a URL, in buf. */
static int host_unbracket(const char *host, char *buf, size_t size) {
        size_t n = strlen(host);
        if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
                host++;
                n -= 2;
        }
        if (n == 0 || n >= size)
                return -EINVAL;
        memcpy(buf, host, n);
        buf[n] = '\0';
        return 0;
}

static int read_endpoint(paf_ctx *ctx, const char **ret_host, int64_t *ret_port) {
        const char *host = NULL;
        int64_t port;
        int r = paf_ctx_get_int(ctx, "tcp.port", &port);
        if (r < 0)
                return r;
        r = paf_ctx_get_string(ctx, "tcp.host", &host);
        if (r < 0 && r != -ENOENT)
                return r;
        *ret_host = r < 0 ? NULL : host;
        *ret_port = port;
        return 0;
}

static int tcp_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata) {
        (void)userdata;
        const char *host;
        int64_t port;
        int r = read_endpoint(ctx, &host, &port);
        if (r < 0)
                return r;
        format_endpoint(host, port, buf, size);
        return 0;
}

/* ---- connect ---- */

typedef struct tcp_address {
        struct sockaddr_storage sa;
        socklen_t len;
} tcp_address;

typedef struct tcp_connect {
        paf_connect_request *req;
        char *name; /* tcp.host, unbracketed */
        int64_t port;
        bool numeric;

        paf_resolve *lookup; /* libpaf's, off the loop */

        tcp_address *addresses;
        size_t n_addresses, next;
        paf_socket_connect *attempt;

        /* "ADDR: reason" for each address that failed, "; " between them. */
        char *reasons;
        int last_error;
} tcp_connect;

static void tcp_connect_free(tcp_connect *tc) {
        if (!tc)
                return;
        paf_socket_connect_cancel(tc->attempt);
        paf_resolve_cancel(tc->lookup);
        free(tc->addresses);
        free(tc->reasons);
        free(tc->name);
        free(tc);
}

/* Ends the request; tc is freed first, since the core may free req in there. */
static void tcp_connect_done(tcp_connect *tc, paf_flow *flow) {
        paf_connect_request *req = tc->req;
        paf_connect_request_set_data(req, NULL);
        tcp_connect_free(tc);
        paf_connect_request_done(req, flow);
}

static void tcp_connect_fail(tcp_connect *tc, int error, const char *format, ...) PAF_PRINTF(3, 4);
static void tcp_connect_fail(tcp_connect *tc, int error, const char *format, ...) {
        char reason[2048];
        va_list ap;
        va_start(ap, format);
        vsnprintf(reason, sizeof(reason), format, ap);
        va_end(ap);
        paf_connect_request *req = tc->req;
        paf_connect_request_set_data(req, NULL);
        tcp_connect_free(tc);
        paf_connect_request_fail(req, error, "%s", reason);
}

static void add_reason(tcp_connect *tc, const tcp_address *a, int error) {
        char text[256];
        if (paf_sockaddr_format((const struct sockaddr *)&a->sa, a->len, text, sizeof(text)) < 0)
                snprintf(text, sizeof(text), "?");
        char *s;
        if (asprintf(&s, "%s%s%s: %s", tc->reasons ?: "", tc->reasons ? "; " : "", text,
                     strerror(-error)) >= 0) {
                free(tc->reasons);
                tc->reasons = s;
        }
        tc->last_error = error;
}

static void tcp_try_next(tcp_connect *tc);

static void on_attempt_done(paf_flow *flow, int error, void *userdata) {
        tcp_connect *tc = userdata;
        const tcp_address *a = &tc->addresses[tc->next - 1];
        tc->attempt = NULL; /* it frees itself after this call */
        if (flow) {
                tcp_connect_done(tc, flow);
                return;
        }
        add_reason(tc, a, error);
        tcp_try_next(tc);
}

/* Every address, in the resolver's order, until one connects. */
static void tcp_try_next(tcp_connect *tc) {
        sd_event *event = paf_connect_request_get_event(tc->req);
        while (tc->next < tc->n_addresses) {
                const tcp_address *a = &tc->addresses[tc->next++];
                int r = paf_socket_connect_start(event, (const struct sockaddr *)&a->sa, a->len,
                                                 "tcp", on_attempt_done, tc, &tc->attempt);
                if (r >= 0)
                        return;
                add_reason(tc, a, r);
        }
        if (tc->n_addresses == 1 && tc->numeric)
                /* The endpoint already names the only address. */
                tcp_connect_fail(tc, tc->last_error, "%s", strerror(-tc->last_error));
        else
                tcp_connect_fail(tc, tc->last_error, "%s", tc->reasons ?: "no address");
}

static int take_addresses(tcp_connect *tc, const struct addrinfo *list) {
        size_t n = 0;
        for (const struct addrinfo *ai = list; ai; ai = ai->ai_next)
                n++;
        tc->addresses = calloc(n ? n : 1, sizeof(*tc->addresses));
        if (!tc->addresses)
                return -ENOMEM;
        for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
                if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
                    ai->ai_addrlen > sizeof(struct sockaddr_storage))
                        continue;
                tcp_address *a = &tc->addresses[tc->n_addresses++];
                memcpy(&a->sa, ai->ai_addr, ai->ai_addrlen);
                a->len = ai->ai_addrlen;
        }
        return 0;
}

static void on_resolved(paf_resolve *q, const struct addrinfo *list, int error, const char *reason,
                        void *userdata) {
        (void)q;
        tcp_connect *tc = userdata;
        tc->lookup = NULL; /* it frees itself after this call */
        if (error < 0) {
                tcp_connect_fail(tc, error, "cannot resolve \"%s\": %s", tc->name, reason);
                return;
        }
        int r = take_addresses(tc, list);
        if (r < 0) {
                tcp_connect_fail(tc, r, "%s", strerror(-r));
                return;
        }
        if (tc->n_addresses == 0) {
                tcp_connect_fail(tc, -EHOSTUNREACH, "\"%s\" has no IPv4 or IPv6 address", tc->name);
                return;
        }
        tcp_try_next(tc);
}

/* tcp.resolve, curl's --resolve: "HOST:PORT:ADDR[,…]" (ADDR may be in
 * brackets). The address for name and port into buf, 1 if listed, else 0. */
static int resolve_override(paf_ctx *ctx, const char *name, int64_t port, char *buf, size_t size) {
        const char *list;
        if (paf_ctx_get_string(ctx, "tcp.resolve", &list) < 0)
                return 0;
        size_t nlen = strlen(name);
        for (const char *p = list; *p;) {
                size_t len = strcspn(p, ",");
                const char *c1 = memchr(p, ':', len);
                const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - p)) : NULL;
                if (c2 && (size_t)(c1 - p) == nlen && strncasecmp(p, name, nlen) == 0 &&
                    strtoll(c1 + 1, NULL, 10) == port) {
                        const char *a = c2 + 1;
                        size_t alen = len - (size_t)(a - p);
                        if (alen >= 2 && a[0] == '[' && a[alen - 1] == ']') {
                                a++;
                                alen -= 2;
                        }
                        if (alen == 0 || alen >= size)
                                return 0;
                        memcpy(buf, a, alen);
                        buf[alen] = '\0';
                        return 1;
                }
                p += len;
                if (*p == ',')
                        p++;
        }
        return 0;
}

static int tcp_connect_start(paf_connect_request *req, void *userdata) {
        (void)userdata;
        const char *host;
        int64_t port;
        int r = read_endpoint(paf_connect_request_get_ctx(req), &host, &port);
        if (r < 0) {
                paf_connect_request_fail(req, r, "cannot read the endpoint: %s", strerror(-r));
                return 0;
        }
        if (!host) {
                paf_connect_request_fail(req, -EINVAL, "no tcp.host to connect to");
                return 0;
        }
        if (port < 1 || port > 65535) {
                paf_connect_request_fail(req, -EINVAL, "port %lld out of range (1-65535)",
                                         (long long)port);
                return 0;
        }

        tcp_connect *tc = calloc(1, sizeof(*tc));
        if (!tc)
                return -ENOMEM;
        tc->req = req;
        tc->port = port;
        char name[NI_MAXHOST];
        if (host_unbracket(host, name, sizeof(name)) < 0) {
                free(tc);
                paf_connect_request_fail(req, -EINVAL, "invalid host name \"%s\"", host);
                return 0;
        }
        tc->name = strdup(name);
        if (!tc->name) {
                free(tc);
                return -ENOMEM;
        }
        paf_connect_request_set_data(req, tc);

        /* tcp.family 4 or 6: that family only (curl -4, -6). tcp.resolve:
         * this name and port at that address (curl --resolve). */
        paf_ctx *ctx = paf_connect_request_get_ctx(req);
        int64_t family = 0;
        (void)paf_ctx_get_int(ctx, "tcp.family", &family);
        char forced[NI_MAXHOST];
        const char *lookup =
                resolve_override(ctx, name, port, forced, sizeof(forced)) ? forced : name;

        /* A numeric address needs no lookup, and asking for one never blocks. */
        char service[8];
        snprintf(service, sizeof(service), "%lld", (long long)port);
        struct addrinfo hints = {
                .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                .ai_family = family == 4   ? AF_INET
                             : family == 6 ? AF_INET6
                                           : AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                .ai_protocol = IPPROTO_TCP,
        };
        struct addrinfo *list = NULL;
        if (getaddrinfo(lookup, service, &hints, &list) == 0) {
                tc->numeric = true;
                r = take_addresses(tc, list);
                freeaddrinfo(list);
                if (r < 0) {
                        tcp_connect_fail(tc, r, "%s", strerror(-r));
                        return 0;
                }
                tcp_try_next(tc);
                return 0;
        }

        /* No AI_ADDRCONFIG: it hides loopback-only hosts. */
        hints = (struct addrinfo){.ai_family = hints.ai_family,
                                  .ai_socktype = SOCK_STREAM,
                                  .ai_protocol = IPPROTO_TCP};
        r = paf_resolve_start(paf_connect_request_get_event(req), name, service, &hints,
                              on_resolved, tc, &tc->lookup);
        if (r < 0) {
                tcp_connect_fail(tc, r, "cannot start resolving \"%s\": %s", name, strerror(-r));
                return 0;
        }
        return 0;
}

static void tcp_connect_cancel(paf_connect_request *req, void *userdata) {
        (void)userdata;
        tcp_connect *tc = paf_connect_request_get_data(req);
        paf_connect_request_set_data(req, NULL);
        tcp_connect_free(tc);
}

/* ---- listen ---- */

static int tcp_listen_socket(const struct sockaddr *sa, socklen_t len, bool dual_stack,
                             int *ret_fd) {
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1, zero = 0;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                goto fail;
        /* "PORT" and "[::]:PORT" mean IPv4 too, whatever bindv6only says. */
        if (sa->sa_family == AF_INET6 && dual_stack &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
                goto fail;
        if (bind(fd, sa, len) < 0 || listen(fd, SOMAXCONN) < 0)
                goto fail;
        *ret_fd = fd;
        return 0;

fail:;
        int r = -errno;
        close(fd);
        return r;
}

static int tcp_listen(paf_ctx *ctx, sd_event *event, paf_listener **ret, paf_error *error,
                      void *userdata) {
        (void)userdata;
        const char *host;
        int64_t port;
        int r = read_endpoint(ctx, &host, &port);
        if (r < 0)
                return paf_error_set(error, r, "tcp: cannot read the endpoint to listen on: %s",
                                     strerror(-r));
        char what[NI_MAXHOST + 16];
        format_endpoint(host, port, what, sizeof(what));
        if (port < 0 || port > 65535)
                return paf_error_set(error, -EINVAL, "%s: port out of range (0-65535)", what);

        char service[8];
        snprintf(service, sizeof(service), "%lld", (long long)port);
        int fd = -1;
        if (!host || !*host) {
                /* Every address: one dual-stack socket, or IPv4 alone on a
                 * machine without IPv6. */
                struct sockaddr_in6 in6 = {.sin6_family = AF_INET6,
                                           .sin6_port = htons((uint16_t)port),
                                           .sin6_addr = in6addr_any};
                r = tcp_listen_socket((struct sockaddr *)&in6, sizeof(in6), true, &fd);
                if (r == -EAFNOSUPPORT || r == -EADDRNOTAVAIL || r == -EPROTONOSUPPORT) {
                        tcp_log(PAF_LOG_DEBUG, "%s: no IPv6 (%s), listening on IPv4 only", what,
                                strerror(-r));
                        struct sockaddr_in in = {.sin_family = AF_INET,
                                                 .sin_port = htons((uint16_t)port),
                                                 .sin_addr.s_addr = htonl(INADDR_ANY)};
                        r = tcp_listen_socket((struct sockaddr *)&in, sizeof(in), false, &fd);
                }
                if (r < 0)
                        return paf_error_set(error, r, "%s: %s", what, strerror(-r));
        } else {
                char name[NI_MAXHOST];
                if (host_unbracket(host, name, sizeof(name)) < 0)
                        return paf_error_set(error, -EINVAL, "%s: invalid address", what);
                struct addrinfo hints = {
                        /* Numeric only: a name could stand for several
                         * addresses, and resolving it here would block. */
                        .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                        .ai_socktype = SOCK_STREAM,
                        .ai_protocol = IPPROTO_TCP,
                };
                struct addrinfo *list = NULL;
                int g = getaddrinfo(name, service, &hints, &list);
                if (g != 0)
                        return paf_error_set(error, -EINVAL,
                                             "%s: not a numeric IP address (listening does not "
                                             "resolve names)",
                                             what);
                bool any6 =
                        list->ai_family == AF_INET6 &&
                        IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)list->ai_addr)->sin6_addr);
                r = tcp_listen_socket(list->ai_addr, list->ai_addrlen, any6, &fd);
                freeaddrinfo(list);
                if (r < 0)
                        return paf_error_set(error, r, "%s: %s", what, strerror(-r));
        }

        r = paf_socket_listener_new(event, fd, "tcp", ret);
        if (r < 0)
                return paf_error_set(error, r, "%s: %s", what, strerror(-r));
        return 0;
}

/* systemd ListenStream forms: "PORT", "IPv4:PORT", "[IPv6]:PORT". */
static int tcp_parse_address(const char *address, paf_ctx *ctx, paf_error *error, void *userdata) {
        (void)userdata;
        const char *port_text, *host_start = NULL;
        size_t host_len = 0;

        if (address[0] == '[') {
                const char *close = strchr(address, ']');
                if (!close || close[1] != ':')
                        return paf_error_set(error, -EINVAL, "\"%s\": expected [IPv6 address]:port",
                                             address);
                host_start = address + 1;
                host_len = (size_t)(close - host_start);
                port_text = close + 2;
        } else {
                const char *colon = strrchr(address, ':');
                if (!colon)
                        port_text = address;
                else {
                        host_start = address;
                        host_len = (size_t)(colon - address);
                        port_text = colon + 1;
                        /* "vsock:2:80", "/path:x", "@name:x" and bare IPv6
                         * are not of our form. */
                        if (memchr(address, ':', host_len) || address[0] == '/' ||
                            address[0] == '@')
                                return 0;
                }
        }

        if (*port_text == '\0' || strspn(port_text, "0123456789") != strlen(port_text)) {
                if (!host_start)
                        return 0; /* not a port: not ours ("foo", "/x") */
                /* "loop:x": a word before a non-numeric port is another
                 * protocol's prefix, not an IPv4 address with a bad port. */
                if (address[0] != '[' && strspn(address, "0123456789.") != host_len)
                        return 0;
                return paf_error_set(error, -EINVAL, "\"%s\": invalid port \"%s\"", address,
                                     port_text);
        }
        errno = 0;
        unsigned long port = strtoul(port_text, NULL, 10);
        if (errno != 0 || port > 65535)
                return paf_error_set(error, -ERANGE, "\"%s\": port out of range (0-65535)",
                                     address);

        if (host_start) {
                char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
                if (host_len == 0 || host_len >= sizeof(host))
                        return paf_error_set(error, -EINVAL, "\"%s\": invalid address", address);
                memcpy(host, host_start, host_len);
                host[host_len] = '\0';
                struct addrinfo hints = {.ai_flags = AI_NUMERICHOST,
                                         .ai_family = address[0] == '[' ? AF_INET6 : AF_INET,
                                         .ai_socktype = SOCK_STREAM};
                struct addrinfo *list = NULL;
                if (getaddrinfo(host, NULL, &hints, &list) != 0)
                        return paf_error_set(error, -EINVAL,
                                             "\"%s\": not a numeric IP%s address (listening does "
                                             "not resolve names)",
                                             address, address[0] == '[' ? "v6" : "v4");
                freeaddrinfo(list);
                if (paf_ctx_set_string(ctx, "tcp.host", host) < 0)
                        return paf_error_set(error, -ENOMEM, "\"%s\": out of memory", address);
        }
        if (paf_ctx_set_int(ctx, "tcp.port", (int64_t)port) < 0)
                return paf_error_set(error, -ENOMEM, "\"%s\": out of memory", address);
        return 1;
}

/* ---- URLs: http://HOST:PORT/, https://HOST:PORT/ ---- */

static const paf_scheme_desc tcp_schemes[] = {
        {.struct_size = sizeof(paf_scheme_desc),
         .name = "http",
         .protocol = "tcp",
         .flags = PAF_SCHEME_HOSTNAME,
         .default_port = 80},
        {.struct_size = sizeof(paf_scheme_desc),
         .name = "https",
         .protocol = "tcp",
         .flags = PAF_SCHEME_HOSTNAME,
         .default_port = 443},
};

/* The registry runs these only for the schemes above. */
static int rule_host(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        (void)userdata;
        *ret = PAF_VALUE_STRING(in[0].string);
        return 1;
}

/* The URL's port, else the scheme's. */
static int rule_port(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        (void)userdata;
        const paf_value *port = in[0].type == PAF_TYPE_INT ? &in[0] : &in[1];
        if (port->type != PAF_TYPE_INT)
                return 0;
        *ret = PAF_VALUE_INT(port->integer);
        return 1;
}

static const char *const tcp_keys[] = {"tcp.host", "tcp.port", NULL};
static const int tcp_families[] = {AF_INET, AF_INET6, 0};

static const paf_protocol_ops tcp_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "tcp",
        .priority = TCP_PRIORITY,
        .endpoint_keys = tcp_keys,
        .families = tcp_families,
        .describe = tcp_describe,
        .connect = tcp_connect_start,
        .cancel = tcp_connect_cancel,
        .listen = tcp_listen,
        .parse_address = tcp_parse_address,
};

static int tcp_init(paf_plugin *plugin, paf_registry *reg, const paf_host *host) {
        (void)plugin;
        (void)host;

        int r = 0;
        for (size_t i = 0; r >= 0 && i < sizeof(tcp_schemes) / sizeof(tcp_schemes[0]); i++)
                r = paf_registry_add_scheme(reg, &tcp_schemes[i]);
        if (r < 0)
                return r;
        static const paf_rule_input host_inputs[] = {
                PAF_REQUIRED("url.host", PAF_TYPE_STRING),
        };
        r = paf_registry_add_url_rule(reg, "tcp", "tcp.host", PAF_TYPE_STRING, host_inputs, 1,
                                      rule_host, NULL, NULL);
        if (r < 0)
                return r;
        static const paf_rule_input port_inputs[] = {
                PAF_OPTIONAL("url.port", PAF_TYPE_INT),
                PAF_OPTIONAL("url.default-port", PAF_TYPE_INT),
        };
        r = paf_registry_add_url_rule(reg, "tcp", "tcp.port", PAF_TYPE_INT, port_inputs, 2,
                                      rule_port, NULL, NULL);
        if (r < 0)
                return r;
        return paf_registry_add_protocol(reg, &tcp_protocol, NULL);
}

PAF_PLUGIN_DEFINE(.name = "tcp", .version = PAF_VERSION, .description = "TCP over IPv4 and IPv6",
                  .init = tcp_init);
