/* tools/get-proxy.c — paf get's proxy settings, from its options and the environment. */
#include <stdlib.h>

#include "get-proxy.h"

/* The first of names that is set and not empty, as curl takes them. */
static const char *env_first(const char *const *names) {
        for (const char *const *n = names; *n; n++) {
                const char *v = getenv(*n);
                if (v && *v)
                        return v;
        }
        return NULL;
}

int get_proxy_setup(paf_ctx *ctx, const char *proxy, const char *noproxy) {
        int r = 0;
        if (proxy)
                r = paf_ctx_set_string(ctx, "http.proxy", proxy);
        else {
                /* curl ignores HTTP_PROXY: a CGI program gets the request's
                 * "Proxy:" header under that name (httpoxy). */
                static const char *const http[] = {"http_proxy", "all_proxy", "ALL_PROXY", NULL};
                static const char *const https[] = {"https_proxy", "HTTPS_PROXY", "all_proxy",
                                                    "ALL_PROXY", NULL};
                const char *v = env_first(http);
                if (v)
                        r = paf_ctx_set_string(ctx, "http.http-proxy", v);
                v = env_first(https);
                if (r >= 0 && v)
                        r = paf_ctx_set_string(ctx, "http.https-proxy", v);
        }
        if (r < 0)
                return r;
        if (!noproxy) {
                static const char *const names[] = {"no_proxy", "NO_PROXY", NULL};
                noproxy = env_first(names);
        }
        if (noproxy)
                r = paf_ctx_set_string(ctx, "http.noproxy", noproxy);
        return r;
}
