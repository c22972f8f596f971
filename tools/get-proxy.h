/* tools/get-proxy.h — paf get's proxy settings: -x, --noproxy and curl's environment variables. */
#pragma once

#include <paf/ctx.h>

/*
 * Put the proxy keys (core/http/proxy-internal.h: http.proxy,
 * http.http-proxy, http.https-proxy, http.noproxy) into ctx, from the
 * options (NULL when not given) and, as curl 7.88 reads them, the
 * environment: http_proxy (lowercase only), https_proxy or HTTPS_PROXY,
 * all_proxy or ALL_PROXY for either, no_proxy or NO_PROXY. -x wins over
 * the environment, -x "" uses no proxy at all; --noproxy over no_proxy.
 */
int get_proxy_setup(paf_ctx *ctx, const char *proxy, const char *noproxy);
