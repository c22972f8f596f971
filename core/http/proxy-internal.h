/* core/http/proxy-internal.h — the HTTP client through a proxy (core/http/proxy.c). */
#pragma once

#include <stdbool.h>

#include "core/paf-internal.h"

/*
 * The context keys that ask for a proxy, read with the call's context:
 *
 *   http.proxy            the proxy for every URL (curl -x), "" for none;
 *   http.http-proxy       for http:// URLs when http.proxy is not set (http_proxy);
 *   http.https-proxy      for https:// URLs when http.proxy is not set (https_proxy);
 *   http.noproxy          hosts reached directly, as curl's --noproxy and no_proxy
 *                         (hc_proxy_noproxy_match);
 *   http.proxy-user       "USER:PASSWORD" for the proxy (curl -U), when the
 *                         proxy's own URL has none;
 *   http.proxy-ca-file    the CAs an https:// proxy's certificate is checked
 *                         against (curl --proxy-cacert), else the system's;
 *   http.proxy-insecure   true: an https:// proxy's certificate is not checked
 *                         (curl --proxy-insecure).
 *
 * A proxy is "[SCHEME://][USER[:PASSWORD]@]HOST[:PORT][/]", SCHEME one of
 * http (the default), https, socks4, socks4a, socks5, socks5h; USER and
 * PASSWORD percent-decoded; PORT 443 for https, else 1080, as curl.
 */

typedef enum hc_proxy_kind {
        HC_PROXY_HTTP,
        HC_PROXY_HTTPS,
        HC_PROXY_SOCKS4,
        HC_PROXY_SOCKS4A,
        HC_PROXY_SOCKS5,
        HC_PROXY_SOCKS5H,
} hc_proxy_kind;

typedef struct hc_proxy {
        hc_proxy_kind kind;
        char *host; /* without brackets */
        int port;
        char *user, *password; /* decoded; NULL when the URL has none */
} hc_proxy;

/*
 * For a call to ctx's URL: 0 when it goes directly (nothing set, or the
 * host is in http.noproxy); 1 when it goes through a proxy, with *ret_ctx
 * the context to resolve and connect with instead (over ctx),
 * *ret_target the request target to send (the absolute form, for an
 * http:// URL through an HTTP or HTTPS proxy; NULL when target stays) and
 * *ret_headers the request's fields for the proxy (absolute form:
 * Proxy-Authorization, Proxy-Connection: Keep-Alive, as curl; NULL when
 * headers stay); < 0 when the proxy setting is wrong (-EINVAL, or
 * -EPROTONOSUPPORT for a scheme no proxy has).
 *
 * An http:// URL is asked of an HTTP proxy in absolute form over a plain
 * connection to it (RFC 9112 3.2.2); an https:// URL goes through a
 * CONNECT tunnel (RFC 9110 9.3.6), the "http-proxy" protocol, with TLS on
 * top. An HTTPS proxy is the same over TLS to the proxy. Through SOCKS
 * (the "socks" protocol: RFC 1928 and 1929, SOCKS4 and 4a) both go in a
 * tunnel, the request as without a proxy. The proxy's credentials go to
 * the proxy alone: in Proxy-Authorization of an absolute-form request or of
 * CONNECT, in the SOCKS5 handshake, as the SOCKS4 user id.
 *
 * Failures, as curl tells them apart: an HTTP proxy refusing the tunnel is
 * -EREMOTEIO ("CONNECT tunnel failed, response 407"); a SOCKS proxy that
 * refuses, rejects the credentials or breaks the handshake is -EBADE
 * (curl's 97), as is a target name a SOCKS4 or SOCKS5 client could not
 * resolve itself.
 */
int hc_proxy_apply(paf_registry *reg, paf_ctx *ctx, const char *target,
                   const paf_http_headers *headers, paf_ctx **ret_ctx, char **ret_target,
                   paf_http_headers **ret_headers);

/*
 * Whether host is one the http.noproxy list says to reach directly, as
 * curl 7.88 reads no_proxy: "*" alone is every host; otherwise entries
 * separated by commas or blanks. For a host name, NAME is NAME and its
 * subdomains (a leading dot and a trailing dot are ignored); for an IP
 * address (IPv6 with or without brackets), ADDR or ADDR/BITS (CIDR,
 * 127.0.0.0/8, ::1/128; no bits, or 0, is the address alone). An IPv6
 * address is compared as an address (curl 7.88 compares the text, a bug
 * later curl fixed).
 */
bool hc_proxy_noproxy_match(const char *list, const char *host);

/* A proxy setting (the form above) into *ret; hc_proxy_done() frees it. */
int hc_proxy_parse(const char *proxy, hc_proxy *ret);
void hc_proxy_done(hc_proxy *p);
