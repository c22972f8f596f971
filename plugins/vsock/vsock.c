/* plugins/vsock/vsock.c — vsock.so: AF_VSOCK stream sockets between a VM and its host. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include <paf.h>

#include "config.h"

#define VSOCK_PRIORITY 60

/* Endpoint text: "vsock:3:80", or "vsock::80" for any CID (the listen form). */
static void format_endpoint(uint32_t cid, uint32_t port, char *buf, size_t size) {
        if (cid == VMADDR_CID_ANY)
                snprintf(buf, size, "vsock::%u", port);
        else
                snprintf(buf, size, "vsock:%u:%u", cid, port);
}

/* A decimal uint32 with nothing around it: no sign, no spaces, no base
 * prefix. -EINVAL if it is not a number, -ERANGE if it does not fit. */
static int parse_uint32(const char *s, size_t n, uint32_t *ret) {
        if (n == 0)
                return -EINVAL;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t)(s[i] - '0');
                if (v > UINT32_MAX)
                        return -ERANGE;
        }
        *ret = (uint32_t)v;
        return 0;
}

static int read_endpoint(paf_ctx *ctx, uint32_t *ret_cid, uint32_t *ret_port) {
        int64_t cid, port;
        int r = paf_ctx_get_int(ctx, "vsock.cid", &cid);
        if (r < 0)
                return r;
        r = paf_ctx_get_int(ctx, "vsock.port", &port);
        if (r < 0)
                return r;
        if (cid < 0 || cid > UINT32_MAX || port < 0 || port > UINT32_MAX)
                return -ERANGE;
        *ret_cid = (uint32_t)cid;
        *ret_port = (uint32_t)port;
        return 0;
}

/* Why the endpoint keys cannot be read, for messages. */
static const char *endpoint_reason(int r) {
        if (r == -ERANGE)
                return "vsock.cid or vsock.port out of range (0 to 4294967295)";
        return strerror(-r);
}

static struct sockaddr_vm make_sockaddr(uint32_t cid, uint32_t port) {
        return (struct sockaddr_vm){
                .svm_family = AF_VSOCK,
                .svm_cid = cid,
                .svm_port = port,
        };
}

static int vsock_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata) {
        (void)userdata;
        uint32_t cid, port;
        int r = read_endpoint(ctx, &cid, &port);
        if (r < 0)
                return r;
        format_endpoint(cid, port, buf, size);
        return 0;
}

/* The reason for a socket() failure: most often, no vsock transport. */
static void socket_reason(int r, char *buf, size_t size) {
        if (r == -EAFNOSUPPORT || r == -EPROTONOSUPPORT || r == -ESOCKTNOSUPPORT)
                snprintf(buf, size, "not supported on this machine (%s)", strerror(-r));
        else
                snprintf(buf, size, "%s", strerror(-r));
}

/* ---- connect ---- */

static void on_connected(paf_flow *flow, int error, void *userdata) {
        paf_connect_request *req = userdata;
        paf_connect_request_set_data(req, NULL);
        if (flow)
                paf_connect_request_done(req, flow);
        else
                paf_connect_request_fail(req, error, "%s", strerror(-error));
}

static int vsock_connect(paf_connect_request *req, void *userdata) {
        (void)userdata;
        uint32_t cid, port;
        int r = read_endpoint(paf_connect_request_get_ctx(req), &cid, &port);
        if (r < 0) {
                paf_connect_request_fail(req, r, "cannot read the endpoint: %s",
                                         endpoint_reason(r));
                return 0;
        }
        struct sockaddr_vm sa = make_sockaddr(cid, port);
        paf_socket_connect *c;
        r = paf_socket_connect_start(paf_connect_request_get_event(req), (struct sockaddr *)&sa,
                                     sizeof(sa), "vsock", on_connected, req, &c);
        if (r < 0) {
                /* The core names the endpoint: just the reason. */
                char reason[128];
                socket_reason(r, reason, sizeof(reason));
                paf_connect_request_fail(req, r, "%s", reason);
                return 0;
        }
        paf_connect_request_set_data(req, c);
        return 0;
}

static void vsock_cancel(paf_connect_request *req, void *userdata) {
        (void)userdata;
        paf_socket_connect_cancel(paf_connect_request_get_data(req));
        paf_connect_request_set_data(req, NULL);
}

/* ---- listen ---- */

static int vsock_listen(paf_ctx *ctx, sd_event *event, paf_listener **ret, paf_error *error,
                        void *userdata) {
        (void)userdata;
        uint32_t cid, port;
        int r = read_endpoint(ctx, &cid, &port);
        if (r < 0)
                return paf_error_set(error, r, "vsock: cannot read the endpoint: %s",
                                     endpoint_reason(r));
        char what[64];
        format_endpoint(cid, port, what, sizeof(what));

        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                char reason[128];
                socket_reason(-errno, reason, sizeof(reason));
                return paf_error_set(error, -errno, "vsock: %s", reason);
        }
        struct sockaddr_vm sa = make_sockaddr(cid, port);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                close(fd);
                return paf_error_set(error, r, "%s: %s", what, strerror(-r));
        }
        r = paf_socket_listener_new(event, fd, "vsock", ret);
        if (r < 0)
                return paf_error_set(error, r, "%s: %s", what, strerror(-r));
        return 0;
}

/* "vsock:CID:PORT", or "vsock::PORT" for any CID, as systemd's ListenStream. */
static int vsock_parse_address(const char *address, paf_ctx *ctx, paf_error *error,
                               void *userdata) {
        (void)userdata;
        if (strncmp(address, "vsock:", 6) != 0)
                return 0;
        const char *cid_text = address + 6;
        const char *colon = strchr(cid_text, ':');
        if (!colon || colon[1] == '\0')
                return paf_error_set(error, -EINVAL, "\"%s\": missing port", address);

        uint32_t cid = VMADDR_CID_ANY, port;
        size_t cid_len = (size_t)(colon - cid_text);
        if (cid_len > 0) {
                int r = parse_uint32(cid_text, cid_len, &cid);
                if (r == -ERANGE)
                        return paf_error_set(error, r,
                                             "\"%s\": CID %.*s out of range (0 to 4294967295)",
                                             address, (int)cid_len, cid_text);
                if (r < 0)
                        return paf_error_set(error, r, "\"%s\": invalid CID \"%.*s\"", address,
                                             (int)cid_len, cid_text);
        }
        const char *port_text = colon + 1;
        int r = parse_uint32(port_text, strlen(port_text), &port);
        if (r == -ERANGE)
                return paf_error_set(error, r, "\"%s\": port %s out of range (0 to 4294967295)",
                                     address, port_text);
        if (r < 0)
                return paf_error_set(error, r, "\"%s\": invalid port \"%s\"", address, port_text);

        if (paf_ctx_set_int(ctx, "vsock.cid", cid) < 0 ||
            paf_ctx_set_int(ctx, "vsock.port", port) < 0)
                return paf_error_set(error, -ENOMEM, "\"%s\": out of memory", address);
        return 1;
}

/* ---- URLs: http+vsock://CID:PORT/ ---- */

/* The host is a CID. Ports follow TCP's: http's 80 and https's 443. */
static const paf_scheme_desc vsock_schemes[] = {
        {.struct_size = sizeof(paf_scheme_desc),
         .name = "+vsock",
         .protocol = "vsock",
         .default_port = 80},
        {.struct_size = sizeof(paf_scheme_desc),
         .name = "https+vsock",
         .protocol = "vsock",
         .default_port = 443},
};

/* The registry runs these only for the schemes above. */
static int rule_cid(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        (void)userdata;
        uint32_t cid;
        int r = parse_uint32(in[0].string, strlen(in[0].string), &cid);
        if (r < 0)
                return r;
        *ret = PAF_VALUE_INT(cid);
        return 1;
}

/* The URL's port, else the scheme's. */
static int rule_port(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        (void)userdata;
        const paf_value *port = in[0].type == PAF_TYPE_INT ? &in[0] : &in[1];
        if (port->type != PAF_TYPE_INT)
                return 0;
        if (port->integer < 0 || port->integer > UINT32_MAX)
                return -ERANGE;
        *ret = PAF_VALUE_INT(port->integer);
        return 1;
}

static const char *const vsock_keys[] = {"vsock.cid", "vsock.port", NULL};
static const int vsock_families[] = {AF_VSOCK, 0};

static const paf_protocol_ops vsock_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "vsock",
        .priority = VSOCK_PRIORITY,
        .endpoint_keys = vsock_keys,
        .families = vsock_families,
        .describe = vsock_describe,
        .connect = vsock_connect,
        .cancel = vsock_cancel,
        .listen = vsock_listen,
        .parse_address = vsock_parse_address,
};

static int vsock_init(paf_plugin *plugin, paf_registry *reg, const paf_host *host) {
        (void)plugin;
        (void)host;
        int r = 0;
        for (size_t i = 0; r >= 0 && i < sizeof(vsock_schemes) / sizeof(vsock_schemes[0]); i++)
                r = paf_registry_add_scheme(reg, &vsock_schemes[i]);
        if (r < 0)
                return r;
        static const paf_rule_input cid_inputs[] = {
                PAF_REQUIRED("url.host", PAF_TYPE_STRING),
        };
        r = paf_registry_add_url_rule(reg, "vsock", "vsock.cid", PAF_TYPE_INT, cid_inputs, 1,
                                      rule_cid, NULL, NULL);
        if (r < 0)
                return r;
        static const paf_rule_input port_inputs[] = {
                PAF_OPTIONAL("url.port", PAF_TYPE_INT),
                PAF_OPTIONAL("url.default-port", PAF_TYPE_INT),
        };
        r = paf_registry_add_url_rule(reg, "vsock", "vsock.port", PAF_TYPE_INT, port_inputs, 2,
                                      rule_port, NULL, NULL);
        if (r < 0)
                return r;
        return paf_registry_add_protocol(reg, &vsock_protocol, NULL);
}

PAF_PLUGIN_DEFINE(.name = "vsock", .version = PAF_VERSION,
                  .description = "vsock stream sockets (virtual machines and their host)",
                  .init = vsock_init);
