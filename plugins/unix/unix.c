/* plugins/unix/unix.c — unix.so: stream sockets on a path or in the abstract namespace. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <paf.h>

#include "config.h"

#define UNIX_PRIORITY 40

/* Through the core's log rather than host->log: the plugin may be loaded
 * by several registries, and a static plugin handle would belong to only
 * one of them. */
#define unix_log(level, format, ...) paf_log(level, "unix: " format, __VA_ARGS__)

/* "/path" or "@name" (abstract) into a sockaddr; -ENAMETOOLONG if it does
 * not fit, -EINVAL if empty. */
static int path_to_sockaddr(const char *path, struct sockaddr_un *ret, socklen_t *ret_len) {
        size_t n = strlen(path);
        *ret = (struct sockaddr_un){.sun_family = AF_UNIX};
        if (path[0] == '@') {
                /* Abstract: a leading NUL, then exactly the name's bytes. */
                if (n < 2)
                        return -EINVAL;
                if (n > sizeof(ret->sun_path))
                        return -ENAMETOOLONG;
                memcpy(ret->sun_path + 1, path + 1, n - 1);
                *ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
                return 0;
        }
        if (n == 0)
                return -EINVAL;
        /* Room for the terminating NUL, which every tool expects. */
        if (n >= sizeof(ret->sun_path))
                return -ENAMETOOLONG;
        memcpy(ret->sun_path, path, n);
        *ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
}

/* Why a name cannot be a unix socket address (see path_to_sockaddr()). */
static void path_reason(int r, char *buf, size_t size) {
        if (r == -ENAMETOOLONG)
                snprintf(buf, size, "path too long for a unix socket (at most %zu bytes)",
                         sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        else if (r == -EINVAL)
                snprintf(buf, size, "empty unix socket name");
        else
                snprintf(buf, size, "%s", strerror(-r));
}

static int path_error(paf_error *error, const char *path, int r) {
        char reason[128];
        path_reason(r, reason, sizeof(reason));
        return paf_error_set(error, r, "\"%s\": %s", path, reason);
}

static int unix_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata) {
        (void)userdata;
        const char *path;
        int r = paf_ctx_get_string(ctx, "unix.path", &path);
        if (r < 0)
                return r;
        snprintf(buf, size, "%s", path);
        return 0;
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

static int unix_connect(paf_connect_request *req, void *userdata) {
        (void)userdata;
        const char *path;
        int r = paf_ctx_get_string(paf_connect_request_get_ctx(req), "unix.path", &path);
        if (r < 0) {
                paf_connect_request_fail(req, r, "cannot read unix.path: %s", strerror(-r));
                return 0;
        }
        struct sockaddr_un sa;
        socklen_t len;
        r = path_to_sockaddr(path, &sa, &len);
        if (r < 0) {
                /* The core names the endpoint: just the reason. */
                char reason[128];
                path_reason(r, reason, sizeof(reason));
                paf_connect_request_fail(req, r, "%s", reason);
                return 0;
        }
        paf_socket_connect *c;
        r = paf_socket_connect_start(paf_connect_request_get_event(req), (struct sockaddr *)&sa,
                                     len, "unix", on_connected, req, &c);
        if (r < 0) {
                paf_connect_request_fail(req, r, "%s", strerror(-r));
                return 0;
        }
        paf_connect_request_set_data(req, c);
        return 0;
}

static void unix_cancel(paf_connect_request *req, void *userdata) {
        (void)userdata;
        paf_socket_connect_cancel(paf_connect_request_get_data(req));
        paf_connect_request_set_data(req, NULL);
}

/* ---- listen ---- */

static int bind_listen(const struct sockaddr_un *sa, socklen_t len, int *ret_fd) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (const struct sockaddr *)sa, len) < 0 || listen(fd, SOMAXCONN) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

/* Whether something accepts connections on sa: 1 yes, 0 no (refused), < 0
 * we cannot tell. */
static int someone_listens(const struct sockaddr_un *sa, socklen_t len) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* A unix connect never waits: it succeeds, is refused, or finds the
         * backlog full (EAGAIN), which also means someone listens. */
        int r = connect(fd, (const struct sockaddr *)sa, len) >= 0 ? 1 : -errno;
        close(fd);
        if (r == -EAGAIN || r == -EINPROGRESS)
                return 1;
        if (r == -ECONNREFUSED)
                return 0;
        return r;
}

static int unix_listen(paf_ctx *ctx, sd_event *event, paf_listener **ret, paf_error *error,
                       void *userdata) {
        (void)userdata;
        const char *path;
        int r = paf_ctx_get_string(ctx, "unix.path", &path);
        if (r < 0)
                return paf_error_set(error, r, "unix: cannot read unix.path: %s", strerror(-r));
        struct sockaddr_un sa;
        socklen_t len;
        r = path_to_sockaddr(path, &sa, &len);
        if (r < 0)
                return path_error(error, path, r);

        int fd = -1;
        r = bind_listen(&sa, len, &fd);
        if (r == -EADDRINUSE) {
                if (path[0] == '@')
                        return paf_error_set(error, r, "%s: abstract socket name already in use",
                                             path);
                int alive = someone_listens(&sa, len);
                if (alive > 0)
                        return paf_error_set(error, r, "%s: already in use by a listening socket",
                                             path);
                struct stat st;
                if (lstat(path, &st) < 0) {
                        if (errno != ENOENT)
                                return paf_error_set(error, -errno, "%s: %s", path,
                                                     strerror(errno));
                        /* Gone meanwhile: just try again. */
                } else if (!S_ISSOCK(st.st_mode))
                        /* Never remove what is not ours to remove. */
                        return paf_error_set(error, r, "%s: exists and is not a socket", path);
                else if (alive < 0)
                        return paf_error_set(error, r,
                                             "%s: in use, and cannot tell whether something "
                                             "listens: %s",
                                             path, strerror(-alive));
                else {
                        /* A socket file nobody listens on: left by a process
                         * that died. */
                        unix_log(PAF_LOG_INFO, "%s: removing a stale socket file", path);
                        if (unlink(path) < 0 && errno != ENOENT)
                                return paf_error_set(error, -errno,
                                                     "%s: cannot remove the stale socket: %s", path,
                                                     strerror(errno));
                }
                r = bind_listen(&sa, len, &fd);
        }
        if (r < 0)
                return paf_error_set(error, r, "%s: %s", path, strerror(-r));

        r = paf_socket_listener_new(event, fd, "unix", ret);
        if (r < 0)
                return paf_error_set(error, r, "%s: %s", path, strerror(-r));
        return 0;
}

/* systemd ListenStream forms: an absolute path, or "@name". */
static int unix_parse_address(const char *address, paf_ctx *ctx, paf_error *error, void *userdata) {
        (void)userdata;
        if (address[0] != '/' && address[0] != '@')
                return 0;
        struct sockaddr_un sa;
        socklen_t len;
        int r = path_to_sockaddr(address, &sa, &len);
        if (r < 0)
                return path_error(error, address, r);
        if (paf_ctx_set_string(ctx, "unix.path", address) < 0)
                return paf_error_set(error, -ENOMEM, "%s: out of memory", address);
        return 1;
}

/* ---- URLs: http+unix://%2Frun%2Fpaf.sock/, https+unix://… ---- */

/* The host is the socket path, percent-encoded: no host name, no port. */
static const paf_scheme_desc unix_scheme = {
        .struct_size = sizeof(paf_scheme_desc),
        .name = "+unix",
        .protocol = "unix",
};

/* The registry runs it only for "+unix" schemes. */
static int rule_path(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        (void)userdata;
        *ret = PAF_VALUE_STRING(in[0].string);
        return 1;
}

static const char *const unix_keys[] = {"unix.path", NULL};
static const int unix_families[] = {AF_UNIX, 0};

static const paf_protocol_ops unix_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "unix",
        .priority = UNIX_PRIORITY,
        .endpoint_keys = unix_keys,
        .families = unix_families,
        .describe = unix_describe,
        .connect = unix_connect,
        .cancel = unix_cancel,
        .listen = unix_listen,
        .parse_address = unix_parse_address,
};

static int unix_init(paf_plugin *plugin, paf_registry *reg, const paf_host *host) {
        (void)plugin;
        (void)host;
        int r = paf_registry_add_scheme(reg, &unix_scheme);
        if (r < 0)
                return r;
        static const paf_rule_input inputs[] = {
                PAF_REQUIRED("url.host", PAF_TYPE_STRING),
        };
        r = paf_registry_add_url_rule(reg, "unix", "unix.path", PAF_TYPE_STRING, inputs, 1,
                                      rule_path, NULL, NULL);
        if (r < 0)
                return r;
        return paf_registry_add_protocol(reg, &unix_protocol, NULL);
}

PAF_PLUGIN_DEFINE(.name = "unix", .version = PAF_VERSION,
                  .description = "unix stream sockets (paths and abstract names)",
                  .init = unix_init);
