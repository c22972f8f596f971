/* tools/get-proxy.h — paf get's proxy settings: -x, --noproxy, -U, --socks5, --proxy-cacert … and
 * curl's environment variables. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <paf/ctx.h>

enum {
        GET_PROXY_OPT_SOCKS5 = 0x380,
        GET_PROXY_OPT_SOCKS5_HOSTNAME,
        GET_PROXY_OPT_CACERT,
        GET_PROXY_OPT_INSECURE,
};

/* For tools/get.c's option table, and its getopt string. */
#define GET_PROXY_OPTIONS                                                                          \
        {"proxy-user", required_argument, NULL, 'U'},                                              \
                {"socks5", required_argument, NULL, GET_PROXY_OPT_SOCKS5},                         \
                {"socks5-hostname", required_argument, NULL, GET_PROXY_OPT_SOCKS5_HOSTNAME},       \
                {"proxy-cacert", required_argument, NULL, GET_PROXY_OPT_CACERT}, {                 \
                "proxy-insecure", no_argument, NULL, GET_PROXY_OPT_INSECURE                        \
        }
#define GET_PROXY_SHORT "U:"

#define GET_PROXY_USAGE                                                                            \
        "  -U, --proxy-user U:P    The proxy's user and password (Basic, or SOCKS)\n"              \
        "      --socks5 H[:P]      Through this SOCKS5 proxy (as -x socks5://H:P)\n"               \
        "      --socks5-hostname H[:P]  The same, the proxy resolving names\n"                     \
        "      --proxy-cacert FILE  Trust the CAs in FILE for an https:// proxy\n"                 \
        "      --proxy-insecure    Do not verify an https:// proxy's certificate\n"

/* 1 when c is one of these options (taken), 0 when not (-x is noted and
 * left to tools/get-http.c: the last of -x and --socks5 wins). */
int get_proxy_option(int c, const char *arg);

/*
 * Put the proxy keys (core/http/proxy-internal.h: http.proxy,
 * http.http-proxy, http.https-proxy, http.noproxy, http.proxy-user,
 * http.proxy-ca-file, http.proxy-insecure) into ctx, from the options
 * (NULL when not given) and, as curl 7.88 reads them, the environment:
 * http_proxy (lowercase only), https_proxy or HTTPS_PROXY, all_proxy or
 * ALL_PROXY for either, no_proxy or NO_PROXY. -x (or --socks5) wins over
 * the environment, -x "" uses no proxy at all; --noproxy over no_proxy.
 */
int get_proxy_setup(paf_ctx *ctx, const char *proxy, const char *noproxy);

/*
 * After get_proxy_setup(): whether the proxy each of the urls would use is
 * one curl takes. 0 when they all are, else curl's exit code with its
 * message in buf: 7 "Unsupported proxy scheme for '…'", 5 "Unsupported
 * proxy syntax in '…'".
 */
int get_proxy_check(const char *const *urls, size_t n, char *buf, size_t size);

/*
 * A failed transfer: curl's exit code when the failure is the proxy's and
 * curl has its own code for it, with the message to print in buf; else 0.
 * 97 for SOCKS (-EBADE); 22 for a CONNECT the proxy answered >= 400 with
 * -f ("The requested URL returned error: 407"; "HTTP response code said
 * error" for 401 and 407 when credentials were sent); 77 for a
 * --proxy-cacert file that cannot be used.
 */
int get_proxy_failure(int code, const char *message, bool fail_on_error, char *buf, size_t size);
