/* core/http/proxy.c — the HTTP client through a proxy: HTTP and HTTPS proxies (absolute-form
 * requests, CONNECT tunnels), SOCKS4, 4a, 5 and 5h tunnels, and the hosts that go direct. */
#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/http/proxy-internal.h"

/* A proxy's answer to CONNECT is a status line and a few fields; one that
 * goes on beyond this is not a proxy we want to talk to. */
#define MAX_ANSWER (16 * 1024)
#define PROXY_DEFAULT_PORT 1080      /* curl's */
#define HTTPS_PROXY_DEFAULT_PORT 443 /* curl's, for https:// proxies */
/* Before tcp (50), after tls (10): what TLS runs over when it is a
 * candidate, and the only candidate then, as the URL's scheme is replaced. */
#define PROXY_PRIORITY 45
#define SOCKS_MAX_FIELD 255 /* a SOCKS5 name, user or password: one length byte */

/* ---- settings ---- */

void hc_proxy_done(hc_proxy *p) {
        free(p->host);
        free(p->user);
        free(p->password);
        *p = (hc_proxy){0};
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        c = (char)tolower((unsigned char)c);
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* n bytes of s, %XX decoded; a decoded NUL is refused (it would end the
 * name where the proxy does not). */
static int percent_decode(const char *s, size_t n, char **ret) {
        char *d = malloc(n + 1), *o = d;
        if (!d)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int hi, lo;
                if (s[i] == '%' && i + 2 < n && (hi = hex_value(s[i + 1])) >= 0 &&
                    (lo = hex_value(s[i + 2])) >= 0) {
                        if (hi == 0 && lo == 0) {
                                free(d);
                                return -EINVAL;
                        }
                        *o++ = (char)(hi * 16 + lo);
                        i += 2;
                } else
                        *o++ = s[i];
        }
        *o = '\0';
        *ret = d;
        return 0;
}

static const struct {
        const char *scheme;
        hc_proxy_kind kind;
} proxy_schemes[] = {
        {"http", HC_PROXY_HTTP},       {"https", HC_PROXY_HTTPS},   {"socks4", HC_PROXY_SOCKS4},
        {"socks4a", HC_PROXY_SOCKS4A}, {"socks5", HC_PROXY_SOCKS5}, {"socks5h", HC_PROXY_SOCKS5H},
};

int hc_proxy_parse(const char *proxy, hc_proxy *ret) {
        hc_proxy p = {.kind = HC_PROXY_HTTP};
        const char *s = proxy;
        const char *sep = strstr(s, "://");
        if (sep) {
                size_t n = (size_t)(sep - s);
                bool known = false;
                for (size_t i = 0; i < ELEMENTSOF(proxy_schemes); i++)
                        if (strlen(proxy_schemes[i].scheme) == n &&
                            strncasecmp(s, proxy_schemes[i].scheme, n) == 0) {
                                p.kind = proxy_schemes[i].kind;
                                known = true;
                        }
                if (!known)
                        return -EPROTONOSUPPORT;
                s = sep + 3;
        }
        size_t len = strcspn(s, "/?#");
        /* The last '@' of the authority: a password may hold a raw one. */
        const char *at = NULL;
        for (const char *c = s; c < s + len; c++)
                if (*c == '@')
                        at = c;
        int r = 0;
        if (at) {
                const char *colon = memchr(s, ':', (size_t)(at - s));
                r = percent_decode(s, colon ? (size_t)(colon - s) : (size_t)(at - s), &p.user);
                if (r >= 0 && colon)
                        r = percent_decode(colon + 1, (size_t)(at - colon - 1), &p.password);
                if (r < 0) {
                        hc_proxy_done(&p);
                        return r;
                }
                len -= (size_t)(at + 1 - s);
                s = at + 1;
        }
        const char *host = s, *port = NULL;
        size_t host_len;
        if (*s == '[') {
                const char *close = memchr(s, ']', len);
                r = close ? 0 : -EINVAL;
                host = s + 1;
                host_len = close ? (size_t)(close - host) : 0;
                if (close && close + 1 < s + len) {
                        if (close[1] != ':')
                                r = -EINVAL;
                        port = close + 2;
                }
        } else {
                const char *colon = memchr(s, ':', len);
                host_len = colon ? (size_t)(colon - s) : len;
                if (colon)
                        port = colon + 1;
        }
        if (r >= 0 && host_len == 0)
                r = -EINVAL;
        p.port = p.kind == HC_PROXY_HTTPS ? HTTPS_PROXY_DEFAULT_PORT : PROXY_DEFAULT_PORT;
        if (r >= 0 && port) {
                size_t n = (size_t)(s + len - port);
                if (n == 0 || n > 5)
                        r = -EINVAL;
                int v = 0;
                for (size_t i = 0; r >= 0 && i < n; i++) {
                        if (!isdigit((unsigned char)port[i]))
                                r = -EINVAL;
                        v = v * 10 + (port[i] - '0');
                }
                if (r >= 0 && (v < 1 || v > 65535))
                        r = -EINVAL;
                p.port = v;
        }
        if (r >= 0 && !(p.host = strndup(host, host_len)))
                r = -ENOMEM;
        if (r < 0) {
                hc_proxy_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

/* ---- no_proxy ---- */

/* Whether addr (family's size) is in network/bits; bits 0 is the whole
 * address, as curl has it. */
static bool cidr_match(const uint8_t *addr, const char *network, long bits, int family) {
        uint8_t net[16];
        long max = family == AF_INET ? 32 : 128;
        if (bits < 0 || bits > max || inet_pton(family, network, net) != 1)
                return false;
        if (bits == 0)
                bits = max;
        size_t whole = (size_t)bits / 8;
        if (memcmp(addr, net, whole) != 0)
                return false;
        unsigned rest = (unsigned)bits % 8;
        if (rest == 0)
                return true;
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        return (addr[whole] & mask) == (net[whole] & mask);
}

/* The bits after ADDR/ as curl's atoi() reads them: leading digits, else 0. */
static long cidr_bits(const char *s) {
        bool negative = *s == '-';
        if (*s == '-' || *s == '+')
                s++;
        long v = 0;
        for (; isdigit((unsigned char)*s) && v <= 1000; s++)
                v = v * 10 + (*s - '0');
        return negative ? -v : v;
}

bool hc_proxy_noproxy_match(const char *list, const char *host) {
        if (!list || !*list || !host || !*host)
                return false;
        if (strcmp(list, "*") == 0)
                return true;

        char name[256];
        size_t hlen = strlen(host);
        if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
                host++;
                hlen -= 2;
        }
        if (hlen >= sizeof(name))
                return false;
        memcpy(name, host, hlen);
        name[hlen] = '\0';
        uint8_t addr[16];
        int family = inet_pton(AF_INET, name, addr) == 1    ? AF_INET
                     : inet_pton(AF_INET6, name, addr) == 1 ? AF_INET6
                                                            : 0;
        if (!family && hlen > 0 && name[hlen - 1] == '.')
                hlen--;

        for (const char *p = list; *p;) {
                p += strspn(p, ", \t");
                size_t n = strcspn(p, ", \t");
                const char *e = p;
                p += n;
                if (n == 0)
                        continue;
                if (family) {
                        char entry[128];
                        if (n >= sizeof(entry))
                                continue;
                        memcpy(entry, e, n);
                        entry[n] = '\0';
                        char *slash = strchr(entry, '/');
                        long bits = 0;
                        if (slash) {
                                bits = cidr_bits(slash + 1);
                                *slash = '\0';
                        }
                        if (cidr_match(addr, entry, bits, family))
                                return true;
                        continue;
                }
                /* ".example.com" is "example.com": the domain and below. */
                if (e[n - 1] == '.')
                        n--;
                if (n > 0 && e[0] == '.') {
                        e++;
                        n--;
                }
                if (n == hlen && strncasecmp(name, e, n) == 0)
                        return true;
                if (n < hlen && name[hlen - n - 1] == '.' &&
                    strncasecmp(name + hlen - n, e, n) == 0)
                        return true;
        }
        return false;
}

/* ---- tunnels: the "http-proxy" and "socks" protocols ---- */

typedef enum tunnel_kind {
        TUNNEL_FORWARD, /* an HTTPS proxy taking absolute-form requests: TLS to it, nothing more */
        TUNNEL_CONNECT,
        TUNNEL_SOCKS4,
        TUNNEL_SOCKS5,
} tunnel_kind;

typedef enum socks5_step {
        SOCKS5_METHOD, /* the greeting went: which method */
        SOCKS5_AUTH,   /* the credentials went (RFC 1929): accepted? */
        SOCKS5_REPLY,  /* the request went: its reply */
} socks5_step;

typedef struct tunnel {
        unsigned n_ref; /* the request's, and one per write in flight */
        tunnel_kind kind;
        paf_registry *reg;
        paf_connect_request *req; /* NULL once ended or cancelled */
        paf_ctx *proxy_ctx;       /* how the proxy itself is reached */
        paf_resolve *lookup;      /* the target's name, resolved here (SOCKS4, SOCKS5) */
        paf_connect *connect;     /* to the proxy */
        paf_flow *flow;
        char *proxy; /* "127.0.0.1:3128", for messages */
        char *connect_request;
        /* SOCKS: where to, and as whom. */
        char *target_host;
        int target_port;
        bool socks4a, remote_dns;
        char *user, *password;
        int family; /* of addr, once known; 0: the name goes to the proxy */
        uint8_t addr[16];
        socks5_step step;
        uint8_t *in;
        size_t in_len;
} tunnel;

static tunnel *tunnel_unref(tunnel *t) {
        if (!t || --t->n_ref > 0)
                return NULL;
        paf_resolve_cancel(t->lookup);
        paf_connect_cancel(t->connect);
        if (t->flow)
                paf_flow_close(t->flow, NULL, NULL);
        paf_ctx_unref(t->proxy_ctx);
        free(t->proxy);
        free(t->connect_request);
        free(t->target_host);
        free(t->user);
        if (t->password)
                explicit_bzero(t->password, strlen(t->password));
        free(t->password);
        free(t->in);
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

/* The flow is the tunnel now: the caller's. */
static void tunnel_done(tunnel *t) {
        paf_flow *flow = t->flow;
        (void)paf_flow_read_stop(flow);
        paf_connect_request *req = t->req;
        t->req = NULL;
        t->flow = NULL;
        paf_connect_request_set_data(req, NULL);
        paf_connect_request_done(req, flow);
        tunnel_unref(t);
}

typedef struct message {
        tunnel *t;
        size_t len;
        uint8_t data[];
} message;

static void on_written(paf_flow *flow _unused_, int error _unused_, void *userdata) {
        message *m = userdata;
        /* A failed write shows as the read's error or end. */
        tunnel *t = m->t;
        explicit_bzero(m->data, m->len); /* it may hold the credentials */
        free(m);
        tunnel_unref(t);
}

static int tunnel_send(tunnel *t, const void *data, size_t len) {
        message *m = malloc(sizeof(*m) + len);
        if (!m)
                return -ENOMEM;
        m->t = t;
        m->len = len;
        memcpy(m->data, data, len);
        struct iovec iov = {.iov_base = m->data, .iov_len = len};
        t->n_ref++;
        int r = paf_flow_write(t->flow, &iov, 1, on_written, m);
        if (r < 0) {
                t->n_ref--;
                free(m);
        }
        return r;
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

/* 1 when the tunnel is open, 0 for more bytes, < 0 failed (said). */
static int connect_answer(tunnel *t) {
        const char *a = (const char *)t->in;
        if (memchr(a, '\0', t->in_len)) {
                tunnel_fail(t, -EBADMSG, "proxy %s: a NUL byte in its answer to CONNECT", t->proxy);
                return -EBADMSG;
        }
        const char *end = strstr(a, "\r\n\r\n");
        if (!end)
                return 0;
        int status = answer_status(a);
        if (status < 0) {
                tunnel_fail(t, -EBADMSG, "proxy %s: not an HTTP answer to CONNECT", t->proxy);
                return status;
        }
        if (status < 200 || status > 299) {
                /* curl's words, and its exit code (56) through -EREMOTEIO. */
                tunnel_fail(t, -EREMOTEIO, "proxy %s: CONNECT tunnel failed, response %d", t->proxy,
                            status);
                return -EREMOTEIO;
        }
        /* TLS speaks first: a proxy that sends more is not a tunnel. */
        if ((size_t)(end + 4 - a) != t->in_len) {
                tunnel_fail(t, -EBADMSG, "proxy %s: bytes after its answer to CONNECT", t->proxy);
                return -EBADMSG;
        }
        return 1;
}

static const char *socks4_reason(int code) {
        switch (code) {
        case 91:
                return "request rejected or failed";
        case 92:
                return "request rejected: the SOCKS server cannot reach identd on the client";
        case 93:
                return "request rejected: identd reports another user id";
        default:
                return "unknown reply code";
        }
}

static const char *socks5_reason(int code) {
        /* RFC 1928 6. */
        static const char *const reasons[] = {
                "succeeded",
                "general SOCKS server failure",
                "connection not allowed by ruleset",
                "network unreachable",
                "host unreachable",
                "connection refused",
                "TTL expired",
                "command not supported",
                "address type not supported",
        };
        return code >= 0 && (size_t)code < ELEMENTSOF(reasons) ? reasons[code]
                                                               : "unknown reply code";
}

/* "127.0.0.1:8080", "[::1]:443", for messages. */
static void format_target(const tunnel *t, char *buf, size_t size) {
        bool v6 = strchr(t->target_host, ':') != NULL;
        snprintf(buf, size, v6 ? "[%s]:%d" : "%s:%d", t->target_host, t->target_port);
}

static int socks4_answer(tunnel *t) {
        if (t->in_len < 8)
                return 0;
        char target[300];
        format_target(t, target, sizeof(target));
        if (t->in[0] != 0) {
                tunnel_fail(t, -EBADE, "proxy %s: not a SOCKS4 reply (version %u, should be 0)",
                            t->proxy, t->in[0]);
                return -EBADE;
        }
        if (t->in[1] != 90) {
                tunnel_fail(t, -EBADE, "proxy %s: SOCKS4 connection to %s refused (%u: %s)",
                            t->proxy, target, t->in[1], socks4_reason(t->in[1]));
                return -EBADE;
        }
        if (t->in_len > 8) {
                tunnel_fail(t, -EBADE, "proxy %s: bytes after its SOCKS4 reply", t->proxy);
                return -EBADE;
        }
        return 1;
}

static int socks5_send_request(tunnel *t) {
        uint8_t b[4 + 1 + SOCKS_MAX_FIELD + 2];
        size_t n = 0;
        b[n++] = 5;
        b[n++] = 1; /* CONNECT */
        b[n++] = 0;
        if (t->family == AF_INET) {
                b[n++] = 1;
                memcpy(b + n, t->addr, 4);
                n += 4;
        } else if (t->family == AF_INET6) {
                b[n++] = 4;
                memcpy(b + n, t->addr, 16);
                n += 16;
        } else {
                size_t len = strlen(t->target_host); /* checked at connect */
                b[n++] = 3;
                b[n++] = (uint8_t)len;
                memcpy(b + n, t->target_host, len);
                n += len;
        }
        b[n++] = (uint8_t)(t->target_port >> 8);
        b[n++] = (uint8_t)(t->target_port & 0xff);
        t->step = SOCKS5_REPLY;
        return tunnel_send(t, b, n);
}

static int socks5_answer(tunnel *t) {
        char target[300];
        int r;
        switch (t->step) {
        case SOCKS5_METHOD:
                if (t->in_len < 2)
                        return 0;
                if (t->in[0] != 5 || t->in_len > 2) {
                        tunnel_fail(t, -EBADE, "proxy %s: not a SOCKS5 answer to the greeting",
                                    t->proxy);
                        return -EBADE;
                }
                if (t->in[1] == 0xff || (t->in[1] == 2 && !t->user) ||
                    (t->in[1] != 0 && t->in[1] != 2)) {
                        /* curl's words */
                        tunnel_fail(t, -EBADE,
                                    "proxy %s: No authentication method was acceptable (SOCKS5 "
                                    "method %u)",
                                    t->proxy, t->in[1]);
                        return -EBADE;
                }
                t->in_len = 0;
                if (t->in[1] == 0)
                        r = socks5_send_request(t);
                else {
                        /* RFC 1929: version 1, the user, the password. */
                        size_t ul = strlen(t->user), pl = t->password ? strlen(t->password) : 0;
                        uint8_t b[3 + 2 * SOCKS_MAX_FIELD];
                        b[0] = 1;
                        b[1] = (uint8_t)ul;
                        memcpy(b + 2, t->user, ul);
                        b[2 + ul] = (uint8_t)pl;
                        if (pl)
                                memcpy(b + 3 + ul, t->password, pl);
                        t->step = SOCKS5_AUTH;
                        r = tunnel_send(t, b, 3 + ul + pl);
                        explicit_bzero(b, sizeof(b));
                }
                break;
        case SOCKS5_AUTH:
                if (t->in_len < 2)
                        return 0;
                if (t->in[1] != 0 || t->in_len > 2) {
                        tunnel_fail(t, -EBADE,
                                    "proxy %s: User was rejected by the SOCKS5 server (%u %u)",
                                    t->proxy, t->in[0], t->in[1]);
                        return -EBADE;
                }
                t->in_len = 0;
                r = socks5_send_request(t);
                break;
        case SOCKS5_REPLY: {
                if (t->in_len < 5)
                        return 0;
                format_target(t, target, sizeof(target));
                if (t->in[0] != 5) {
                        tunnel_fail(t, -EBADE, "proxy %s: not a SOCKS5 reply", t->proxy);
                        return -EBADE;
                }
                if (t->in[1] != 0) {
                        tunnel_fail(t, -EBADE, "proxy %s: SOCKS5 connection to %s failed (%u: %s)",
                                    t->proxy, target, t->in[1], socks5_reason(t->in[1]));
                        return -EBADE;
                }
                size_t want = t->in[3] == 1   ? 10
                              : t->in[3] == 4 ? 22
                              : t->in[3] == 3 ? 7 + (size_t)t->in[4]
                                              : 0;
                if (want == 0) {
                        tunnel_fail(t, -EBADE, "proxy %s: a SOCKS5 reply of address type %u",
                                    t->proxy, t->in[3]);
                        return -EBADE;
                }
                if (t->in_len < want)
                        return 0;
                if (t->in_len > want) {
                        tunnel_fail(t, -EBADE, "proxy %s: bytes after its SOCKS5 reply", t->proxy);
                        return -EBADE;
                }
                return 1;
        }
        default:
                return -EINVAL;
        }
        if (r < 0) {
                tunnel_fail(t, r, "proxy %s: cannot send: %s", t->proxy, strerror(-r));
                return r;
        }
        return 0;
}

static void on_data(paf_flow *flow _unused_, const void *data, size_t len, int error,
                    void *userdata) {
        tunnel *t = userdata;
        const char *what = t->kind == TUNNEL_CONNECT  ? "CONNECT"
                           : t->kind == TUNNEL_SOCKS4 ? "the SOCKS4 request"
                                                      : "the SOCKS5 handshake";
        /* SOCKS failures are curl's 97 (-EBADE), whatever broke them. */
        bool socks = t->kind != TUNNEL_CONNECT;
        if (error < 0) {
                tunnel_fail(t, socks ? -EBADE : error, "proxy %s: %s during %s", t->proxy,
                            strerror(-error), what);
                return;
        }
        if (len == 0) {
                tunnel_fail(t, socks ? -EBADE : -ECONNRESET,
                            "proxy %s closed the connection during %s", t->proxy, what);
                return;
        }
        if (t->in_len + len > MAX_ANSWER) {
                tunnel_fail(t, socks ? -EBADE : -EBADMSG,
                            "proxy %s: an answer to %s longer than %d bytes", t->proxy, what,
                            MAX_ANSWER);
                return;
        }
        uint8_t *a = realloc(t->in, t->in_len + len + 1);
        if (!a) {
                tunnel_fail(t, -ENOMEM, "out of memory");
                return;
        }
        memcpy(a + t->in_len, data, len);
        t->in = a;
        t->in_len += len;
        a[t->in_len] = '\0';

        /* A failure frees t unless a write still holds it: hold it here. */
        t->n_ref++;
        int r = t->kind == TUNNEL_CONNECT  ? connect_answer(t)
                : t->kind == TUNNEL_SOCKS4 ? socks4_answer(t)
                                           : socks5_answer(t);
        if (r > 0 && t->req)
                tunnel_done(t);
        tunnel_unref(t);
}

static int socks4_send_request(tunnel *t) {
        /* VN 4, CD 1 (CONNECT), the port, the address (0.0.0.1 and the
         * name after the user id for SOCKS4a), the user id, NUL. */
        size_t ul = t->user ? strlen(t->user) : 0;
        size_t hl = t->family ? 0 : strlen(t->target_host) + 1;
        _cleanup_free_ uint8_t *b = malloc(8 + ul + 1 + hl);
        if (!b)
                return -ENOMEM;
        b[0] = 4;
        b[1] = 1;
        b[2] = (uint8_t)(t->target_port >> 8);
        b[3] = (uint8_t)(t->target_port & 0xff);
        if (t->family)
                memcpy(b + 4, t->addr, 4);
        else
                memcpy(b + 4, (const uint8_t[]){0, 0, 0, 1}, 4);
        if (ul)
                memcpy(b + 8, t->user, ul);
        b[8 + ul] = 0;
        if (hl)
                memcpy(b + 9 + ul, t->target_host, hl);
        return tunnel_send(t, b, 8 + ul + 1 + hl);
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
        int r;
        switch (t->kind) {
        case TUNNEL_FORWARD:
                tunnel_done(t);
                return;
        case TUNNEL_CONNECT:
                r = tunnel_send(t, t->connect_request, strlen(t->connect_request));
                break;
        case TUNNEL_SOCKS4:
                r = socks4_send_request(t);
                break;
        case TUNNEL_SOCKS5: {
                /* Offered: none, and user/password when there are credentials. */
                static const uint8_t plain[] = {5, 1, 0}, with_user[] = {5, 2, 0, 2};
                r = t->user ? tunnel_send(t, with_user, sizeof(with_user))
                            : tunnel_send(t, plain, sizeof(plain));
                t->step = SOCKS5_METHOD;
                break;
        }
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                tunnel_fail(t, r, "proxy %s: cannot send: %s", t->proxy, strerror(-r));
                return;
        }
        r = paf_flow_read_start(flow, on_data, t);
        if (r < 0)
                tunnel_fail(t, r, "proxy %s: cannot read: %s", t->proxy, strerror(-r));
}

static int tunnel_connect_proxy(tunnel *t, sd_event *event) {
        return paf_registry_connect(t->reg, t->proxy_ctx, event, on_proxy_connected, t,
                                    &t->connect);
}

static void on_lookup(paf_resolve *q _unused_, const struct addrinfo *list, int error,
                      const char *reason, void *userdata) {
        tunnel *t = userdata;
        t->lookup = NULL;
        if (error < 0) {
                /* curl's words; a SOCKS failure for curl (97). */
                tunnel_fail(t, -EBADE, "Could not resolve host: %s (%s)", t->target_host,
                            reason ? reason : strerror(-error));
                return;
        }
        const struct addrinfo *ai = list;
        if (ai->ai_family == AF_INET) {
                t->family = AF_INET;
                memcpy(t->addr, &((const struct sockaddr_in *)ai->ai_addr)->sin_addr, 4);
        } else {
                t->family = AF_INET6;
                memcpy(t->addr, &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
        }
        int r = tunnel_connect_proxy(t, paf_connect_request_get_event(t->req));
        if (r < 0)
                tunnel_fail(t, r, "proxy %s: %s", t->proxy, strerror(-r));
}

static const char *ctx_string(paf_ctx *ctx, const char *key) {
        const char *s = NULL;
        if (paf_ctx_get_string(ctx, key, &s) < 0)
                return NULL;
        return s;
}

static bool ctx_bool(paf_ctx *ctx, const char *key) {
        bool b;
        return paf_ctx_get_bool(ctx, key, &b) >= 0 && b;
}

/* How the proxy itself is reached: tcp, with TLS over it for an https://
 * proxy, checked as curl's --proxy-cacert and --proxy-insecure say (never
 * as the origin's -k and --cacert); the family and --resolve of the call. */
static int proxy_ctx_new(paf_ctx *call, const char *host, int64_t port, bool tls,
                         const char *ca_file, bool insecure, paf_ctx **ret) {
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
        int r = paf_ctx_new(&ctx);
        if (r >= 0)
                r = paf_ctx_set_string(ctx, "tcp.host", host);
        if (r >= 0)
                r = paf_ctx_set_int(ctx, "tcp.port", port);
        int64_t family;
        if (r >= 0 && paf_ctx_get_int(call, "tcp.family", &family) >= 0)
                r = paf_ctx_set_int(ctx, "tcp.family", family);
        const char *resolve = ctx_string(call, "tcp.resolve");
        if (r >= 0 && resolve)
                r = paf_ctx_set_string(ctx, "tcp.resolve", resolve);
        if (r >= 0 && tls) {
                r = paf_ctx_set_string(ctx, "tls.server-name", host);
                /* A proxy speaks HTTP/1.1: CONNECT, absolute forms. */
                if (r >= 0)
                        r = paf_ctx_set_string(ctx, "tls.alpn", "http/1.1");
                if (r >= 0 && ca_file)
                        r = paf_ctx_set_string(ctx, "tls.ca-file", ca_file);
                if (r >= 0 && insecure)
                        r = paf_ctx_set_bool(ctx, "tls.insecure", true);
        }
        if (r < 0)
                return r;
        *ret = ctx;
        ctx = NULL;
        return 0;
}

static tunnel *tunnel_new(paf_registry *reg, const char *host, int64_t port) {
        tunnel *t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        t->n_ref = 1;
        t->reg = reg;
        bool v6 = strchr(host, ':') != NULL;
        if (asprintf(&t->proxy, v6 ? "[%s]:%" PRId64 : "%s:%" PRId64, host, port) < 0) {
                t->proxy = NULL;
                tunnel_unref(t);
                return NULL;
        }
        return t;
}

static void tunnel_start(tunnel *t, paf_connect_request *req) {
        t->req = req;
        paf_connect_request_set_data(req, t);
}

/* -- http-proxy -- */

static int http_endpoint_read(paf_ctx *ctx, const char **host, int64_t *port, const char **target) {
        int r = paf_ctx_get_string(ctx, "http-proxy.host", host);
        if (r >= 0)
                r = paf_ctx_get_int(ctx, "http-proxy.port", port);
        if (r >= 0)
                r = paf_ctx_get_string(ctx, "http-proxy.target", target);
        if (r >= 0 && (*port < 1 || *port > 65535))
                r = -ERANGE;
        return r;
}

static int http_proxy_connect(paf_connect_request *req, void *userdata) {
        paf_registry *reg = userdata;
        paf_ctx *ctx = paf_connect_request_get_ctx(req);
        const char *host, *target;
        int64_t port;
        int r = http_endpoint_read(ctx, &host, &port, &target);
        if (r < 0)
                return r;

        tunnel *t = tunnel_new(reg, host, port);
        if (!t)
                return -ENOMEM;
        t->kind = ctx_bool(ctx, "http-proxy.tunnel") ? TUNNEL_CONNECT : TUNNEL_FORWARD;
        if (t->kind == TUNNEL_CONNECT) {
                const char *auth = ctx_string(ctx, "http-proxy.authorization");
                if (auth && strpbrk(auth, "\r\n"))
                        auth = NULL;
                if (asprintf(&t->connect_request,
                             "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s%s%sUser-Agent: paf/" PAF_VERSION
                             "\r\nProxy-Connection: Keep-Alive\r\n\r\n",
                             target, target, auth ? "Proxy-Authorization: " : "", auth ? auth : "",
                             auth ? "\r\n" : "") < 0) {
                        t->connect_request = NULL;
                        tunnel_unref(t);
                        return -ENOMEM;
                }
        }
        r = proxy_ctx_new(ctx, host, port, ctx_bool(ctx, "http-proxy.tls"),
                          ctx_string(ctx, "http-proxy.ca-file"),
                          ctx_bool(ctx, "http-proxy.insecure"), &t->proxy_ctx);
        if (r >= 0)
                r = tunnel_connect_proxy(t, paf_connect_request_get_event(req));
        if (r < 0) {
                tunnel_unref(t);
                return r;
        }
        tunnel_start(t, req);
        return 0;
}

static void tunnel_cancel(paf_connect_request *req, void *userdata _unused_) {
        tunnel *t = paf_connect_request_get_data(req);
        paf_connect_request_set_data(req, NULL);
        if (!t)
                return;
        t->req = NULL;
        tunnel_unref(t);
}

static int http_proxy_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata _unused_) {
        const char *host, *target;
        int64_t port;
        int r = http_endpoint_read(ctx, &host, &port, &target);
        if (r < 0)
                return r;
        bool v6 = strchr(host, ':') != NULL;
        const char *tls = ctx_bool(ctx, "http-proxy.tls") ? "https://" : "";
        if (ctx_bool(ctx, "http-proxy.tunnel"))
                snprintf(buf, size,
                         v6 ? "%s[%s]:%" PRId64 " CONNECT %s" : "%s%s:%" PRId64 " CONNECT %s", tls,
                         host, port, target);
        else
                snprintf(buf, size, v6 ? "%s[%s]:%" PRId64 : "%s%s:%" PRId64, tls, host, port);
        return 0;
}

static const char *const http_proxy_keys[] = {"http-proxy.host", "http-proxy.port",
                                              "http-proxy.target", NULL};

static const paf_protocol_ops http_proxy_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "http-proxy",
        .priority = PROXY_PRIORITY,
        .endpoint_keys = http_proxy_keys,
        .describe = http_proxy_describe,
        .connect = http_proxy_connect,
        .cancel = tunnel_cancel,
};

/* -- socks -- */

static int socks_endpoint_read(paf_ctx *ctx, const char **host, int64_t *port, const char **target,
                               int64_t *target_port, const char **version) {
        int r = paf_ctx_get_string(ctx, "socks.host", host);
        if (r >= 0)
                r = paf_ctx_get_int(ctx, "socks.port", port);
        if (r >= 0)
                r = paf_ctx_get_string(ctx, "socks.target-host", target);
        if (r >= 0)
                r = paf_ctx_get_int(ctx, "socks.target-port", target_port);
        if (r >= 0)
                r = paf_ctx_get_string(ctx, "socks.version", version);
        if (r >= 0 && (*port < 1 || *port > 65535 || *target_port < 1 || *target_port > 65535))
                r = -ERANGE;
        if (r >= 0 && strcmp(*version, "4") != 0 && strcmp(*version, "4a") != 0 &&
            strcmp(*version, "5") != 0 && strcmp(*version, "5h") != 0)
                r = -EINVAL;
        return r;
}

static int socks_connect(paf_connect_request *req, void *userdata) {
        paf_registry *reg = userdata;
        paf_ctx *ctx = paf_connect_request_get_ctx(req);
        const char *host, *target, *version;
        int64_t port, target_port;
        int r = socks_endpoint_read(ctx, &host, &port, &target, &target_port, &version);
        if (r < 0)
                return r;
        const char *user = ctx_string(ctx, "socks.user"),
                   *password = ctx_string(ctx, "socks.password");
        bool v5 = version[0] == '5';
        if (v5 && (strlen(target) > SOCKS_MAX_FIELD || (user && strlen(user) > SOCKS_MAX_FIELD) ||
                   (password && strlen(password) > SOCKS_MAX_FIELD)))
                return -ENAMETOOLONG;

        tunnel *t = tunnel_new(reg, host, port);
        if (!t)
                return -ENOMEM;
        t->kind = v5 ? TUNNEL_SOCKS5 : TUNNEL_SOCKS4;
        t->socks4a = strcmp(version, "4a") == 0;
        t->remote_dns = t->socks4a || strcmp(version, "5h") == 0;
        t->target_port = (int)target_port;
        if (!(t->target_host = strdup(target)) || (user && !(t->user = strdup(user))) ||
            (password && !(t->password = strdup(password)))) {
                tunnel_unref(t);
                return -ENOMEM;
        }
        /* An address is sent as one, whoever would resolve a name. */
        if (inet_pton(AF_INET, target, t->addr) == 1)
                t->family = AF_INET;
        else if (inet_pton(AF_INET6, target, t->addr) == 1)
                t->family = AF_INET6;
        if (t->family == AF_INET6 && t->kind == TUNNEL_SOCKS4) {
                /* SOCKS4 carries IPv4 only: unreachable, curl's 7. */
                tunnel_unref(t);
                return -ENETUNREACH;
        }
        r = proxy_ctx_new(ctx, host, port, false, NULL, false, &t->proxy_ctx);
        sd_event *event = paf_connect_request_get_event(req);
        if (r >= 0 && !t->family && !t->remote_dns) {
                /* socks4:// and socks5:// resolve the name here, as curl. */
                struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                                         .ai_family =
                                                 t->kind == TUNNEL_SOCKS4 ? AF_INET : AF_UNSPEC};
                r = paf_resolve_start(event, target, NULL, &hints, on_lookup, t, &t->lookup);
        } else if (r >= 0)
                r = tunnel_connect_proxy(t, event);
        if (r < 0) {
                tunnel_unref(t);
                return r;
        }
        tunnel_start(t, req);
        return 0;
}

static int socks_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata _unused_) {
        const char *host, *target, *version;
        int64_t port, target_port;
        int r = socks_endpoint_read(ctx, &host, &port, &target, &target_port, &version);
        if (r < 0)
                return r;
        bool v6 = strchr(host, ':') != NULL, tv6 = strchr(target, ':') != NULL;
        snprintf(buf, size, "%s%s%s:%" PRId64 " SOCKS%s %s%s%s:%" PRId64, v6 ? "[" : "", host,
                 v6 ? "]" : "", port, version, tv6 ? "[" : "", target, tv6 ? "]" : "", target_port);
        return 0;
}

static const char *const socks_keys[] = {"socks.host",        "socks.port",    "socks.target-host",
                                         "socks.target-port", "socks.version", NULL};

static const paf_protocol_ops socks_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "socks",
        .priority = PROXY_PRIORITY,
        .endpoint_keys = socks_keys,
        .describe = socks_describe,
        .connect = socks_connect,
        .cancel = tunnel_cancel,
};

/* ---- the call's context ---- */

/* Registered when first needed, so that resolutions of programs using no
 * proxy do not list it. The registry's lock makes this safe while other
 * threads resolve on it (core/registry.c); two threads registering at once
 * get one protocol and one -EEXIST. */
static int register_protocol(paf_registry *reg, const paf_protocol_ops *ops) {
        if (paf_registry_find_protocol(reg, ops->name))
                return 0;
        int r = paf_registry_add_protocol(reg, ops, reg);
        return r == -EEXIST ? 0 : r;
}

static const char base64_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* "Basic " and base64 of "user:password" (RFC 7617). */
static int basic_credentials(const char *user, const char *password, char **ret) {
        _cleanup_free_ char *plain = NULL;
        int n = asprintf(&plain, "%s:%s", user, password ? password : "");
        if (n < 0)
                return -ENOMEM;
        size_t len = (size_t)n;
        char *out = malloc(6 + (len + 2) / 3 * 4 + 1);
        if (!out) {
                explicit_bzero(plain, len);
                return -ENOMEM;
        }
        char *o = stpcpy(out, "Basic ");
        const uint8_t *s = (const uint8_t *)plain;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)s[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t)s[i + 1] << 8;
                if (i + 2 < len)
                        v |= s[i + 2];
                *o++ = base64_alphabet[(v >> 18) & 63];
                *o++ = base64_alphabet[(v >> 12) & 63];
                *o++ = i + 1 < len ? base64_alphabet[(v >> 6) & 63] : '=';
                *o++ = i + 2 < len ? base64_alphabet[v & 63] : '=';
        }
        *o = '\0';
        explicit_bzero(plain, len);
        *ret = out;
        return 0;
}

/* headers, and what curl 7.88 adds to a request in absolute form:
 * Proxy-Authorization (with credentials) and Proxy-Connection: Keep-Alive,
 * each unless the caller gave its own (curl lets -H replace them). */
static int headers_for_proxy(const paf_http_headers *headers, const char *authorization,
                             paf_http_headers **ret) {
        paf_http_headers *h;
        int r = paf_http_headers_new(&h);
        if (r < 0)
                return r;
        size_t n = paf_http_headers_count(headers);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const char *name, *v;
                if (paf_http_headers_get_nth(headers, i, &name, &v) >= 0)
                        r = paf_http_headers_add(h, name, v);
        }
        if (r >= 0 && authorization && !paf_http_headers_get(headers, "Proxy-Authorization"))
                r = paf_http_headers_add(h, "Proxy-Authorization", authorization);
        if (r >= 0 && !paf_http_headers_get(headers, "Proxy-Connection"))
                r = paf_http_headers_add(h, "Proxy-Connection", "Keep-Alive");
        if (r < 0) {
                paf_http_headers_free(h);
                return r;
        }
        *ret = h;
        return 0;
}

int hc_proxy_apply(paf_registry *reg, paf_ctx *ctx, const char *target,
                   const paf_http_headers *headers, paf_ctx **ret_ctx, char **ret_target,
                   paf_http_headers **ret_headers) {
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *l = NULL;
        int r = paf_ctx_new_layered(ctx, reg->ctx, &l);
        if (r < 0)
                return r;

        /* Only what curl sends through a proxy: http and https, by host name or address. */
        const char *scheme = ctx_string(l, "url.scheme");
        if (!scheme || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
                return 0;
        bool https = scheme[4] == 's';
        const char *setting = ctx_string(l, "http.proxy");
        if (!setting)
                setting = ctx_string(l, https ? "http.https-proxy" : "http.http-proxy");
        if (!setting || !*setting)
                return 0;
        const char *host = ctx_string(l, "url.host");
        if (!host || !*host)
                return 0;
        if (hc_proxy_noproxy_match(ctx_string(l, "http.noproxy"), host))
                return 0;

        _paf_cleanup_(hc_proxy_done) hc_proxy proxy = {0};
        r = hc_proxy_parse(setting, &proxy);
        if (r < 0)
                return r;
        /* The proxy URL's credentials win over http.proxy-user (curl's order). */
        if (!proxy.user) {
                const char *up = ctx_string(l, "http.proxy-user");
                if (up && *up) {
                        /* USER[:PASSWORD], split in a copy of its own. */
                        if (!(proxy.user = strdup(up)))
                                return -ENOMEM;
                        char *colon = strchr(proxy.user, ':');
                        if (colon) {
                                *colon = '\0';
                                if (!(proxy.password = strdup(colon + 1)))
                                        return -ENOMEM;
                        }
                }
        }

        int64_t url_port = -1;
        (void)paf_ctx_get_int(l, "url.port", &url_port);
        int64_t port = url_port >= 0 ? url_port : https ? 443 : 80;
        bool v6 = strchr(host, ':') != NULL;
        bool socks = proxy.kind >= HC_PROXY_SOCKS4;
        /* Absolute form: an http:// URL through an HTTP or HTTPS proxy. */
        bool absolute_form = !https && !socks;
        _cleanup_free_ char *authorization = NULL;
        if (!socks && proxy.user) {
                r = basic_credentials(proxy.user, proxy.password, &authorization);
                if (r < 0)
                        return r;
        }

        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *own = NULL;
        r = paf_ctx_new(&own);
        /* No transport serves this scheme, so no rule makes the URL's
         * host an endpoint (tcp.host …): the proxy is the only way. */
        if (r >= 0)
                r = paf_ctx_set_string(own, "url.scheme", "http+http-proxy");
        if (r >= 0 && https) {
                /* Named as it would be without the proxy. */
                const char *name = ctx_string(l, "tls.server-name");
                r = paf_ctx_set_string(own, "tls.server-name", name ? name : host);
        }
        if (r < 0)
                return r;

        if (proxy.kind == HC_PROXY_HTTP && !https) {
                r = paf_ctx_set_string(own, "tcp.host", proxy.host);
                if (r >= 0)
                        r = paf_ctx_set_int(own, "tcp.port", proxy.port);
        } else if (!socks) {
                _cleanup_free_ char *authority = NULL;
                if (asprintf(&authority, v6 ? "[%s]:%" PRId64 : "%s:%" PRId64, host, port) < 0) {
                        authority = NULL;
                        r = -ENOMEM;
                }
                /* Every setting under "http-proxy.": the client's pool key
                 * covers them, so another proxy or user is another connection. */
                if (r >= 0)
                        r = paf_ctx_set_string(own, "http-proxy.target", authority);
                if (r >= 0)
                        r = paf_ctx_set_string(own, "http-proxy.host", proxy.host);
                if (r >= 0)
                        r = paf_ctx_set_int(own, "http-proxy.port", proxy.port);
                if (r >= 0)
                        r = paf_ctx_set_bool(own, "http-proxy.tunnel", https);
                if (r >= 0)
                        r = paf_ctx_set_bool(own, "http-proxy.tls", proxy.kind == HC_PROXY_HTTPS);
                if (r >= 0 && https && authorization)
                        r = paf_ctx_set_string(own, "http-proxy.authorization", authorization);
                const char *ca = ctx_string(l, "http.proxy-ca-file");
                if (r >= 0 && proxy.kind == HC_PROXY_HTTPS && ca)
                        r = paf_ctx_set_string(own, "http-proxy.ca-file", ca);
                if (r >= 0 && proxy.kind == HC_PROXY_HTTPS && ctx_bool(l, "http.proxy-insecure"))
                        r = paf_ctx_set_bool(own, "http-proxy.insecure", true);
                if (r >= 0)
                        r = register_protocol(reg, &http_proxy_protocol);
        } else {
                static const char *const versions[] = {
                        [HC_PROXY_SOCKS4] = "4",
                        [HC_PROXY_SOCKS4A] = "4a",
                        [HC_PROXY_SOCKS5] = "5",
                        [HC_PROXY_SOCKS5H] = "5h",
                };
                r = paf_ctx_set_string(own, "socks.host", proxy.host);
                if (r >= 0)
                        r = paf_ctx_set_int(own, "socks.port", proxy.port);
                if (r >= 0)
                        r = paf_ctx_set_string(own, "socks.target-host", host);
                if (r >= 0)
                        r = paf_ctx_set_int(own, "socks.target-port", port);
                if (r >= 0)
                        r = paf_ctx_set_string(own, "socks.version", versions[proxy.kind]);
                if (r >= 0 && proxy.user)
                        r = paf_ctx_set_string(own, "socks.user", proxy.user);
                if (r >= 0 && proxy.password)
                        r = paf_ctx_set_string(own, "socks.password", proxy.password);
                if (r >= 0)
                        r = register_protocol(reg, &socks_protocol);
        }
        _cleanup_free_ char *absolute = NULL;
        if (r >= 0 && absolute_form) {
                char p[24] = "";
                if (url_port >= 0 && url_port != 80)
                        snprintf(p, sizeof(p), ":%" PRId64, url_port);
                if (asprintf(&absolute, v6 ? "http://[%s]%s%s" : "http://%s%s%s", host, p, target) <
                    0) {
                        absolute = NULL;
                        r = -ENOMEM;
                }
        }
        paf_http_headers *with = NULL;
        if (r >= 0 && absolute_form)
                r = headers_for_proxy(headers, authorization, &with);
        if (r >= 0)
                r = paf_ctx_new_layered(own, ctx, ret_ctx);
        if (r < 0) {
                paf_http_headers_free(with);
                return r;
        }
        *ret_target = absolute;
        absolute = NULL;
        *ret_headers = with;
        return 1;
}
