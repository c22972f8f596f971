/* tests/tools/bench-relay.c — "relay", a third party's transport for test-bench.sh: names in
 * the abstract unix namespace, reached by its own URL scheme.
 *
 * The example loop plugin joins flows inside one process, so `paf bench` in
 * one process cannot reach `paf serve` in another through it. This one
 * crosses processes: `paf serve --listen relay:NAME` listens on the
 * abstract socket "@paf-relay-NAME", and `http+relay://NAME/` (or
 * https+relay://, TLS over it) connects there. The core knows neither the
 * scheme nor the keys; the test builds this file with `pkg-config paf`
 * only, as a third party would. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <paf.h>

#define RELAY_PREFIX "paf-relay-"

/* NAME into the abstract address "\0paf-relay-NAME". */
static int relay_sockaddr(const char *name, struct sockaddr_un *ret, socklen_t *ret_len) {
        size_t n = strlen(name);
        *ret = (struct sockaddr_un){.sun_family = AF_UNIX};
        if (n == 0 || strchr(name, '/'))
                return -EINVAL;
        if (1 + strlen(RELAY_PREFIX) + n > sizeof(ret->sun_path))
                return -ENAMETOOLONG;
        memcpy(ret->sun_path + 1, RELAY_PREFIX, strlen(RELAY_PREFIX));
        memcpy(ret->sun_path + 1 + strlen(RELAY_PREFIX), name, n);
        *ret_len =
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(RELAY_PREFIX) + n);
        return 0;
}

static int relay_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata) {
        (void)userdata;
        const char *name;
        int r = paf_ctx_get_string(ctx, "relay.name", &name);
        if (r < 0)
                return r;
        snprintf(buf, size, "relay:%s", name);
        return 0;
}

static void on_connected(paf_flow *flow, int error, void *userdata) {
        paf_connect_request *req = userdata;
        paf_connect_request_set_data(req, NULL);
        if (flow)
                paf_connect_request_done(req, flow);
        else
                paf_connect_request_fail(req, error, "%s", strerror(-error));
}

static int relay_connect(paf_connect_request *req, void *userdata) {
        (void)userdata;
        const char *name;
        int r = paf_ctx_get_string(paf_connect_request_get_ctx(req), "relay.name", &name);
        if (r < 0) {
                paf_connect_request_fail(req, r, "no relay.name");
                return 0;
        }
        struct sockaddr_un sa;
        socklen_t len;
        r = relay_sockaddr(name, &sa, &len);
        if (r < 0) {
                paf_connect_request_fail(req, r, "not a relay name");
                return 0;
        }
        paf_socket_connect *c;
        r = paf_socket_connect_start(paf_connect_request_get_event(req), (struct sockaddr *)&sa,
                                     len, "relay", on_connected, req, &c);
        if (r < 0) {
                paf_connect_request_fail(req, r, "%s", strerror(-r));
                return 0;
        }
        paf_connect_request_set_data(req, c);
        return 0;
}

static void relay_cancel(paf_connect_request *req, void *userdata) {
        (void)userdata;
        paf_socket_connect_cancel(paf_connect_request_get_data(req));
        paf_connect_request_set_data(req, NULL);
}

static int relay_listen(paf_ctx *ctx, sd_event *event, paf_listener **ret, paf_error *error,
                        void *userdata) {
        (void)userdata;
        const char *name;
        int r = paf_ctx_get_string(ctx, "relay.name", &name);
        if (r < 0)
                return paf_error_set(error, r, "relay: no relay.name to listen on");
        struct sockaddr_un sa;
        socklen_t len;
        r = relay_sockaddr(name, &sa, &len);
        if (r < 0)
                return paf_error_set(error, r, "relay:%s: not a relay name", name);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return paf_error_set(error, -errno, "relay:%s: %s", name, strerror(errno));
        if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                close(fd);
                return paf_error_set(error, r, "relay:%s: %s", name, strerror(-r));
        }
        r = paf_socket_listener_new(event, fd, "relay", ret);
        if (r < 0)
                return paf_error_set(error, r, "relay:%s: %s", name, strerror(-r));
        return 0;
}

static int relay_parse_address(const char *address, paf_ctx *ctx, paf_error *error,
                               void *userdata) {
        (void)userdata;
        if (strncmp(address, "relay:", 6) != 0)
                return 0;
        struct sockaddr_un sa;
        socklen_t len;
        if (relay_sockaddr(address + 6, &sa, &len) < 0)
                return paf_error_set(error, -EINVAL, "\"%s\": not a relay name", address);
        if (paf_ctx_set_string(ctx, "relay.name", address + 6) < 0)
                return paf_error_set(error, -ENOMEM, "%s: out of memory", address);
        return 1;
}

static const char *const relay_keys[] = {"relay.name", NULL};

static const paf_protocol_ops relay_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "relay",
        .priority = 50,
        .endpoint_keys = relay_keys,
        .describe = relay_describe,
        .connect = relay_connect,
        .cancel = relay_cancel,
        .listen = relay_listen,
        .parse_address = relay_parse_address,
};

static const paf_scheme_desc relay_scheme = {
        .struct_size = sizeof(paf_scheme_desc),
        .name = "+relay",
        .protocol = "relay",
};

static int rule_name(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        (void)userdata;
        *ret = PAF_VALUE_STRING(in[0].string);
        return 1;
}

static int relay_init(paf_plugin *plugin, paf_registry *reg, const paf_host *host) {
        (void)plugin;
        (void)host;
        int r = paf_registry_add_scheme(reg, &relay_scheme);
        if (r < 0)
                return r;
        static const paf_rule_input inputs[] = {
                PAF_REQUIRED("url.host", PAF_TYPE_STRING),
        };
        r = paf_registry_add_url_rule(reg, "relay", "relay.name", PAF_TYPE_STRING, inputs, 1,
                                      rule_name, NULL, NULL);
        if (r < 0)
                return r;
        return paf_registry_add_protocol(reg, &relay_protocol, NULL);
}

PAF_PLUGIN_DEFINE(.name = "relay", .version = "1.0.0",
                  .description = "abstract unix names, a third party's transport (tests)",
                  .init = relay_init);
