/* core/http/proxy-internal.h — the HTTP client through an HTTP proxy (core/http/proxy.c). */
#pragma once

#include <stdbool.h>

#include "core/paf-internal.h"

/*
 * The context keys that ask for a proxy, read with the call's context:
 *
 *   http.proxy        the proxy for every URL (curl -x), "" for none;
 *   http.http-proxy   for http:// URLs when http.proxy is not set (http_proxy);
 *   http.https-proxy  for https:// URLs when http.proxy is not set (https_proxy);
 *   http.noproxy      hosts reached directly, as curl's --noproxy and no_proxy:
 *                     comma-separated, "*" for all, NAME for NAME and its
 *                     subdomains (a leading dot is the same), or an IP address.
 *
 * A proxy is "[http://]HOST[:PORT]" (port 1080 when none, as curl).
 */

/*
 * For a call to ctx's URL: 0 when it goes directly (nothing set); 1 when it
 * goes through a proxy, with *ret_ctx the context to resolve and connect
 * with instead (over ctx) and *ret_target the request target to send (the
 * absolute form for http://, NULL when target stays); < 0 when the proxy
 * setting is wrong (-EINVAL, -EPROTONOSUPPORT for another proxy scheme).
 *
 * An http:// URL is asked of the proxy in absolute form over a plain
 * connection to it (RFC 9112 3.2.2); an https:// URL goes through a CONNECT
 * tunnel (RFC 9110 9.3.6), the "http-proxy" protocol, with TLS on top.
 */
int hc_proxy_apply(paf_registry *reg, paf_ctx *ctx, const char *target, paf_ctx **ret_ctx,
                   char **ret_target);

/* Whether host is one the http.noproxy list says to reach directly. */
bool hc_proxy_noproxy_match(const char *list, const char *host);

/* A proxy setting: "[http://][USER:PASSWORD@]HOST[:PORT][/]". The host is
 * without brackets; *ret_port is 1080 when none is given. */
int hc_proxy_parse(const char *proxy, char **ret_host, int *ret_port);
