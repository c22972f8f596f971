/* tools/get-proxy.c — paf get's proxy settings, from its options and the environment. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "get-proxy.h"

/* The options (one paf get a process), and what setup made of them. */
static struct {
        const char *user;    /* -U */
        char *socks;         /* --socks5, --socks5-hostname, as a proxy URL */
        const char *ca_file; /* --proxy-cacert */
        bool insecure;
        /* In effect after setup: -x (or --socks5), else the environment's. */
        const char *all, *http, *https;
} opts;

int get_proxy_option(int c, const char *arg) {
        switch (c) {
        case 'x':
                /* -x after --socks5 wins: they are one setting for curl. */
                free(opts.socks);
                opts.socks = NULL;
                return 0;
        case 'U':
                opts.user = arg;
                return 1;
        case GET_PROXY_OPT_SOCKS5:
        case GET_PROXY_OPT_SOCKS5_HOSTNAME: {
                char *s;
                if (asprintf(&s, "%s://%s", c == GET_PROXY_OPT_SOCKS5 ? "socks5" : "socks5h", arg) <
                    0)
                        return -ENOMEM;
                free(opts.socks);
                opts.socks = s;
                return 1;
        }
        case GET_PROXY_OPT_CACERT:
                opts.ca_file = arg;
                return 1;
        case GET_PROXY_OPT_INSECURE:
                opts.insecure = true;
                return 1;
        default:
                return 0;
        }
}

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
        if (opts.socks)
                proxy = opts.socks;
        if (proxy) {
                r = paf_ctx_set_string(ctx, "http.proxy", proxy);
                opts.all = proxy;
        } else {
                /* curl ignores HTTP_PROXY: a CGI program gets the request's
                 * "Proxy:" header under that name (httpoxy). */
                static const char *const http[] = {"http_proxy", "all_proxy", "ALL_PROXY", NULL};
                static const char *const https[] = {"https_proxy", "HTTPS_PROXY", "all_proxy",
                                                    "ALL_PROXY", NULL};
                const char *v = env_first(http);
                if (v)
                        r = paf_ctx_set_string(ctx, "http.http-proxy", v);
                opts.http = v;
                v = env_first(https);
                if (r >= 0 && v)
                        r = paf_ctx_set_string(ctx, "http.https-proxy", v);
                opts.https = v;
        }
        if (r >= 0 && opts.user)
                r = paf_ctx_set_string(ctx, "http.proxy-user", opts.user);
        if (r >= 0 && opts.ca_file)
                r = paf_ctx_set_string(ctx, "http.proxy-ca-file", opts.ca_file);
        if (r >= 0 && opts.insecure)
                r = paf_ctx_set_bool(ctx, "http.proxy-insecure", true);
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

/* 0, or curl's exit code for a proxy string it would not take (the
 * syntax of core/http/proxy.c's hc_proxy_parse(), checked here to say what
 * curl says). */
static int proxy_syntax(const char *proxy) {
        static const char *const schemes[] = {"http",    "https",  "socks4",
                                              "socks4a", "socks5", "socks5h"};
        const char *s = proxy, *sep = strstr(s, "://");
        if (sep) {
                size_t n = (size_t)(sep - s);
                bool known = false;
                for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
                        known = known ||
                                (strlen(schemes[i]) == n && strncasecmp(s, schemes[i], n) == 0);
                if (!known)
                        return 7; /* CURLE_COULDNT_CONNECT, as curl 7.88 */
                s = sep + 3;
        }
        size_t len = strcspn(s, "/?#");
        for (size_t i = len; i > 0; i--)
                if (s[i - 1] == '@') {
                        len -= i;
                        s += i;
                        break;
                }
        const char *port = NULL;
        if (*s == '[') {
                const char *close = memchr(s, ']', len);
                if (!close || close == s + 1)
                        return 5;
                if (close + 1 < s + len) {
                        if (close[1] != ':')
                                return 5;
                        port = close + 2;
                }
        } else {
                const char *colon = memchr(s, ':', len);
                if ((colon ? (size_t)(colon - s) : len) == 0)
                        return 5;
                if (colon)
                        port = colon + 1;
        }
        if (port) {
                size_t n = (size_t)(s + len - port);
                long v = 0;
                if (n == 0 || n > 5)
                        return 5;
                for (size_t i = 0; i < n; i++) {
                        if (!isdigit((unsigned char)port[i]))
                                return 5;
                        v = v * 10 + (port[i] - '0');
                }
                if (v < 1 || v > 65535)
                        return 5; /* CURLE_COULDNT_RESOLVE_PROXY */
        }
        return 0;
}

int get_proxy_check(const char *const *urls, size_t n, char *buf, size_t size) {
        for (size_t i = 0; i < n; i++) {
                bool https = strncasecmp(urls[i], "https://", 8) == 0;
                const char *proxy = opts.all ? opts.all : https ? opts.https : opts.http;
                if (!proxy || !*proxy)
                        continue;
                int code = proxy_syntax(proxy);
                if (code == 0)
                        continue;
                snprintf(buf, size, "Unsupported proxy %s '%s'",
                         code == 7 ? "scheme for" : "syntax in", proxy);
                return code;
        }
        return 0;
}

/* Whether the proxy in effect carries credentials: -U, or USER@ in it. */
static bool have_credentials(void) {
        if (opts.user)
                return true;
        const char *const list[] = {opts.all, opts.http, opts.https};
        for (size_t i = 0; i < 3; i++) {
                const char *p = list[i];
                if (!p)
                        continue;
                const char *sep = strstr(p, "://");
                p = sep ? sep + 3 : p;
                const char *at = strchr(p, '@');
                if (at && at < p + strcspn(p, "/?#"))
                        return true;
        }
        return false;
}

int get_proxy_failure(int code, const char *message, bool fail_on_error, char *buf, size_t size) {
        static const char connect_failed[] = "CONNECT tunnel failed, response ";
        const char *s;
        if (code == -EBADE) {
                snprintf(buf, size, "%s", message);
                return 97; /* CURLE_PROXY */
        }
        if (code == -EREMOTEIO && fail_on_error && (s = strstr(message, connect_failed))) {
                int status = atoi(s + sizeof(connect_failed) - 1);
                if (status < 400)
                        return 0;
                /* curl's words: it took a 401 or 407 to credentials it sent
                 * as an authentication problem. */
                if ((status == 401 || status == 407) && have_credentials())
                        snprintf(buf, size, "HTTP response code said error");
                else
                        snprintf(buf, size, "The requested URL returned error: %d", status);
                return 22; /* CURLE_HTTP_RETURNED_ERROR */
        }
        if (opts.ca_file && code < 0 && strstr(message, opts.ca_file) &&
            strstr(message, "proxy ")) {
                snprintf(buf, size, "error setting certificate file: %s", opts.ca_file);
                return 77; /* CURLE_SSL_CACERT_BADFILE */
        }
        return 0;
}
