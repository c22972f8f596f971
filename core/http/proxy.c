/* core/http/proxy.c — the HTTP client through an HTTP proxy: absolute-form requests, CONNECT
 * tunnels. */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "core/http/proxy-internal.h"

/* A proxy's answer to CONNECT is a status line and a few fields; one that
 * goes on beyond this is not a proxy we want to talk to. */
#define MAX_CONNECT_ANSWER (16 * 1024)
#define PROXY_DEFAULT_PORT 1080 /* curl's */
/* Before tcp (50), after tls (10): it is what TLS runs over when it is a
 * candidate, and the only candidate then, as the URL's scheme is replaced. */
#define PROXY_PRIORITY 45

/* ---- settings ---- */

int hc_proxy_parse(const char *proxy, char **ret_host, int *ret_port) {
        const char *p = proxy;
        const char *sep = strstr(p, "://");
        if (sep) {
                size_t n = (size_t)(sep - p);
                if (n != 4 || strncasecmp(p, "http", 4) != 0)
                        return -EPROTONOSUPPORT;
                p = sep + 3;
        }
        /* Credentials are not sent (no Proxy-Authorization yet): skipped. */
        const char *at = strchr(p, '@');
        const char *slash = strchr(p, '/');
        if (at && (!slash || at < slash))
                p = at + 1;
        size_t len = strcspn(p, "/?#");
        const char *host = p, *port = NULL;
        size_t host_len;
        if (*p == '[') {
                const char *close = memchr(p, ']', len);
                if (!close)
                        return -EINVAL;
                host = p + 1;
                host_len = (size_t)(close - host);
                if (close + 1 < p + len) {
                        if (close[1] != ':')
                                return -EINVAL;
                        port = close + 2;
                }
        } else {
                const char *colon = memchr(p, ':', len);
                host_len = colon ? (size_t)(colon - p) : len;
                if (colon)
                        port = colon + 1;
        }
        if (host_len == 0)
                return -EINVAL;
        int port_value = PROXY_DEFAULT_PORT;
        if (port) {
                size_t n = (size_t)(p + len - port);
                if (n == 0 || n > 5)
                        return -EINVAL;
                port_value = 0;
                for (size_t i = 0; i < n; i++) {
                        if (!isdigit((unsigned char)port[i]))
                                return -EINVAL;
                        port_value = port_value * 10 + (port[i] - '0');
                }
                if (port_value < 1 || port_value > 65535)
                        return -EINVAL;
        }
        char *h = strndup(host, host_len);
        if (!h)
                return -ENOMEM;
        *ret_host = h;
        *ret_port = port_value;
        return 0;
}

/* host without brackets and without trailing dots, as the list's entries. */
bool hc_proxy_noproxy_match(const char *list, const char *host) {
        if (!list || !host)
                return false;
        size_t hlen = strlen(host);
        if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
                host++;
                hlen -= 2;
        }
        while (hlen > 0 && host[hlen - 1] == '.')
                hlen--;
        for (const char *p = list; *p;) {
                p += strspn(p, ", \t");
                size_t n = strcspn(p, ", \t");
                const char *e = p;
                p += n;
                if (n == 0)
                        continue;
                if (n == 1 && e[0] == '*')
                        return true;
                /* ".example.com" is "example.com": the domain and below. */
                if (e[0] == '.') {
                        e++;
                        n--;
                }
                if (n >= 2 && e[0] == '[' && e[n - 1] == ']') {
                        e++;
                        n -= 2;
                }
                while (n > 0 && e[n - 1] == '.')
                        n--;
                if (n == 0 || n > hlen)
                        continue;
                if (strncasecmp(host + hlen - n, e, n) != 0)
                        continue;
                if (n == hlen || host[hlen - n - 1] == '.')
                        return true;
        }
        return false;
}

/* ---- the tunnel: the "http-proxy" protocol ---- */

typedef struct tunnel {
        unsigned n_ref; /* the request's, and one while the CONNECT write is in flight */
        paf_registry *reg;
        paf_connect_request *req; /* NULL once ended or cancelled */
        paf_connect *connect;     /* to the proxy */
        paf_flow *flow;
        char *proxy; /* "127.0.0.1:3128", for messages */
        char *request;
        size_t request_len;
        char *answer;
        size_t answer_len;
} tunnel;

static tunnel *tunnel_unref(tunnel *t) {
        if (!t || --t->n_ref > 0)
                return NULL;
        paf_connect_cancel(t->connect);
        if (t->flow)
                paf_flow_close(t->flow, NULL, NULL);
        free(t->proxy);
        free(t->request);
        free(t->answer);
        free(t);
        return NULL;
}

static void tunnel_fail(tunnel *t, int error, const char *format, ...) PAF_PRINTF(3, 4);
static void tunnel_fail(tunnel *t, int error, const char *format, ...) {
        paf_connect_request *req = t->req;
        if (!req)
                return;
        char reason[512];
        va_list ap;
        va_start(ap, format);
        vsnprintf(reason, sizeof(reason), format, ap);
        va_end(ap);
        t->req = NULL;
        paf_connect_request_set_data(req, NULL);
        paf_connect_request_fail(req, error, "%s", reason);
        tunnel_unref(t);
}

static void on_request_written(paf_flow *flow _unused_, int error _unused_, void *userdata) {
        /* A failed write shows as the read's error or end. */
        tunnel_unref(userdata);
}

/* "HTTP/1.1 200 Connection established\r\n…\r\n\r\n": the status, or < 0. */
static int answer_status(const char *answer) {
        if (strncmp(answer, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)answer[7]) ||
            answer[8] != ' ')
                return -EBADMSG;
        const char *s = answer + 9;
        if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
            !isdigit((unsigned char)s[2]) || (s[3] != ' ' && s[3] != '\r'))
                return -EBADMSG;
        return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

static void on_answer(paf_flow *flow, const void *data, size_t len, int error, void *userdata) {
        tunnel *t = userdata;
        if (error < 0) {
                tunnel_fail(t, error, "proxy %s: %s before answering CONNECT", t->proxy,
                            strerror(-error));
                return;
        }
        if (len == 0) {
                tunnel_fail(t, -ECONNRESET,
                            "proxy %s closed the connection before answering CONNECT", t->proxy);
                return;
        }
        if (t->answer_len + len > MAX_CONNECT_ANSWER) {
                tunnel_fail(t, -EBADMSG, "proxy %s: an answer to CONNECT longer than %d bytes",
                            t->proxy, MAX_CONNECT_ANSWER);
                return;
        }
        char *a = realloc(t->answer, t->answer_len + len + 1);
        if (!a) {
                tunnel_fail(t, -ENOMEM, "out of memory");
                return;
        }
        memcpy(a + t->answer_len, data, len);
        t->answer = a;
        t->answer_len += len;
        a[t->answer_len] = '\0';
        if (memchr(a, '\0', t->answer_len)) {
                tunnel_fail(t, -EBADMSG, "proxy %s: a NUL byte in its answer to CONNECT", t->proxy);
                return;
        }
        char *end = strstr(a, "\r\n\r\n");
        if (!end)
                return;
        int status = answer_status(a);
        if (status < 0) {
                tunnel_fail(t, -EBADMSG, "proxy %s: not an HTTP answer to CONNECT", t->proxy);
                return;
        }
        if (status < 200 || status > 299) {
                /* curl's words, and its exit code (56) through -EREMOTEIO. */
                tunnel_fail(t, -EREMOTEIO, "proxy %s: CONNECT tunnel failed, response %d", t->proxy,
                            status);
                return;
        }
        /* TLS speaks first: a proxy that sends more is not a tunnel. */
        if ((size_t)(end + 4 - a) != t->answer_len) {
                tunnel_fail(t, -EBADMSG, "proxy %s: bytes after its answer to CONNECT", t->proxy);
                return;
        }
        (void)paf_flow_read_stop(flow);
        paf_connect_request *req = t->req;
        t->req = NULL;
        t->flow = NULL;
        paf_connect_request_set_data(req, NULL);
        paf_connect_request_done(req, flow);
        tunnel_unref(t);
}

static void on_proxy_connected(paf_flow *flow, const paf_attempt *attempts, size_t n,
                               void *userdata) {
        tunnel *t = userdata;
        t->connect = NULL;
        if (!flow) {
                int error = -ECONNREFUSED;
                const char *reason = NULL;
                for (size_t i = 0; i < n; i++)
                        if (attempts[i].tried && attempts[i].error < 0) {
                                error = attempts[i].error;
                                reason = attempts[i].reason;
                                break;
                        }
                tunnel_fail(t, error, "proxy %s: %s", t->proxy,
                            reason && *reason ? reason : strerror(-error));
                return;
        }
        t->flow = flow;
        struct iovec iov = {.iov_base = t->request, .iov_len = t->request_len};
        t->n_ref++;
        int r = paf_flow_write(flow, &iov, 1, on_request_written, t);
        if (r < 0) {
                t->n_ref--;
                tunnel_fail(t, r, "proxy %s: cannot send CONNECT: %s", t->proxy, strerror(-r));
                return;
        }
        r = paf_flow_read_start(flow, on_answer, t);
        if (r < 0)
                tunnel_fail(t, r, "proxy %s: cannot read: %s", t->proxy, strerror(-r));
}

static int endpoint_read(paf_ctx *ctx, const char **host, int64_t *port, const char **target) {
        int r = paf_ctx_get_string(ctx, "proxy.host", host);
        if (r >= 0)
                r = paf_ctx_get_int(ctx, "proxy.port", port);
        if (r >= 0)
                r = paf_ctx_get_string(ctx, "proxy.target", target);
        if (r >= 0 && (*port < 1 || *port > 65535))
                r = -ERANGE;
        return r;
}

static int proxy_connect(paf_connect_request *req, void *userdata) {
        paf_registry *reg = userdata;
        const char *host, *target;
        int64_t port;
        int r = endpoint_read(paf_connect_request_get_ctx(req), &host, &port, &target);
        if (r < 0)
                return r;

        tunnel *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->n_ref = 1;
        t->reg = reg;
        bool v6 = strchr(host, ':') != NULL;
        if (asprintf(&t->proxy, v6 ? "[%s]:%" PRId64 : "%s:%" PRId64, host, port) < 0) {
                t->proxy = NULL;
                tunnel_unref(t);
                return -ENOMEM;
        }
        int n = asprintf(&t->request,
                         "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: paf/" PAF_VERSION
                         "\r\nProxy-Connection: Keep-Alive\r\n\r\n",
                         target, target);
        if (n < 0) {
                t->request = NULL;
                tunnel_unref(t);
                return -ENOMEM;
        }
        t->request_len = (size_t)n;

        /* The proxy is reached by tcp, whatever the URL's keys say. */
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
        r = paf_ctx_new(&ctx);
        if (r >= 0)
                r = paf_ctx_set_string(ctx, "tcp.host", host);
        if (r >= 0)
                r = paf_ctx_set_int(ctx, "tcp.port", port);
        if (r >= 0)
                r = paf_registry_connect(reg, ctx, paf_connect_request_get_event(req),
                                         on_proxy_connected, t, &t->connect);
        if (r < 0) {
                tunnel_unref(t);
                return r;
        }
        t->req = req;
        paf_connect_request_set_data(req, t);
        return 0;
}

static void proxy_cancel(paf_connect_request *req, void *userdata _unused_) {
        tunnel *t = paf_connect_request_get_data(req);
        paf_connect_request_set_data(req, NULL);
        if (!t)
                return;
        t->req = NULL;
        tunnel_unref(t);
}

static int proxy_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata _unused_) {
        const char *host, *target;
        int64_t port;
        int r = endpoint_read(ctx, &host, &port, &target);
        if (r < 0)
                return r;
        bool v6 = strchr(host, ':') != NULL;
        snprintf(buf, size, v6 ? "[%s]:%" PRId64 " CONNECT %s" : "%s:%" PRId64 " CONNECT %s", host,
                 port, target);
        return 0;
}

static const char *const proxy_keys[] = {"proxy.host", "proxy.port", "proxy.target", NULL};

static const paf_protocol_ops proxy_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "http-proxy",
        .priority = PROXY_PRIORITY,
        .endpoint_keys = proxy_keys,
        .describe = proxy_describe,
        .connect = proxy_connect,
        .cancel = proxy_cancel,
};

/* ---- the call's context ---- */

static const char *ctx_string(paf_ctx *ctx, const char *key) {
        const char *s;
        return paf_ctx_get_string(ctx, key, &s) >= 0 ? s : NULL;
}

int hc_proxy_apply(paf_registry *reg, paf_ctx *ctx, const char *target, paf_ctx **ret_ctx,
                   char **ret_target) {
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *l = NULL;
        int r = paf_ctx_new_layered(ctx, reg->ctx, &l);
        if (r < 0)
                return r;

        /* Only what curl sends through an HTTP proxy: http and https, by host name or address. */
        const char *scheme = ctx_string(l, "url.scheme");
        if (!scheme || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
                return 0;
        bool https = scheme[4] == 's';
        const char *proxy = ctx_string(l, "http.proxy");
        if (!proxy)
                proxy = ctx_string(l, https ? "http.https-proxy" : "http.http-proxy");
        if (!proxy || !*proxy)
                return 0;
        const char *host = ctx_string(l, "url.host");
        if (!host || !*host)
                return 0;
        if (hc_proxy_noproxy_match(ctx_string(l, "http.noproxy"), host))
                return 0;

        _cleanup_free_ char *proxy_host = NULL;
        int proxy_port;
        r = hc_proxy_parse(proxy, &proxy_host, &proxy_port);
        if (r < 0)
                return r;

        int64_t url_port = -1;
        (void)paf_ctx_get_int(l, "url.port", &url_port);
        bool v6 = strchr(host, ':') != NULL;
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *own = NULL;
        r = paf_ctx_new(&own);
        /* No transport serves this scheme, so no rule makes the URL's
         * host an endpoint (tcp.host …): the proxy is the only way. */
        if (r >= 0)
                r = paf_ctx_set_string(own, "url.scheme", "http+http-proxy");
        _cleanup_free_ char *absolute = NULL;
        if (r >= 0 && !https) {
                r = paf_ctx_set_string(own, "tcp.host", proxy_host);
                if (r >= 0)
                        r = paf_ctx_set_int(own, "tcp.port", proxy_port);
                if (r >= 0) {
                        char port[24] = "";
                        if (url_port >= 0 && url_port != 80)
                                snprintf(port, sizeof(port), ":%" PRId64, url_port);
                        if (asprintf(&absolute, v6 ? "http://[%s]%s%s" : "http://%s%s%s", host,
                                     port, target) < 0) {
                                absolute = NULL;
                                r = -ENOMEM;
                        }
                }
        } else if (r >= 0) {
                /* Named as it would be without the proxy. */
                const char *name = ctx_string(l, "tls.server-name");
                r = paf_ctx_set_string(own, "tls.server-name", name ? name : host);
                _cleanup_free_ char *authority = NULL;
                if (r >= 0 && asprintf(&authority, v6 ? "[%s]:%" PRId64 : "%s:%" PRId64, host,
                                       url_port >= 0 ? url_port : 443) < 0) {
                        authority = NULL;
                        r = -ENOMEM;
                }
                if (r >= 0)
                        r = paf_ctx_set_string(own, "proxy.target", authority);
                if (r >= 0)
                        r = paf_ctx_set_string(own, "proxy.host", proxy_host);
                if (r >= 0)
                        r = paf_ctx_set_int(own, "proxy.port", proxy_port);
                /* Registered when first needed: resolutions of programs
                 * that use no proxy do not list it. */
                if (r >= 0 && !paf_registry_find_protocol(reg, proxy_protocol.name)) {
                        r = paf_registry_add_protocol(reg, &proxy_protocol, reg);
                        if (r == -EEXIST)
                                r = 0;
                }
        }
        if (r >= 0)
                r = paf_ctx_new_layered(own, ctx, ret_ctx);
        if (r < 0)
                return r;
        *ret_target = absolute;
        absolute = NULL;
        return 1;
}
