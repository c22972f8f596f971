/* core/url.c — paf_ctx_set_url(), paf_registry_parse_url(): a URL into url.* keys, which the
 * plugins' rules turn into their endpoints. */
#include <ctype.h>
#include <stdio.h>

#include <uriparser/Uri.h>

#include "core/paf-internal.h"
#include <paf/client.h>

static char *range_dup(const UriTextRangeA *r) {
        if (!r->first)
                return strdup("");
        return strndup(r->first, (size_t)(r->afterLast - r->first));
}

static size_t range_len(const UriTextRangeA *r) {
        return r->first ? (size_t)(r->afterLast - r->first) : 0;
}

/* Path segments and query, still percent-encoded: they go on the request
 * line as they are. */
static char *build_target(const UriUriA *uri) {
        size_t size = 2;
        for (const UriPathSegmentA *s = uri->pathHead; s; s = s->next)
                size += 1 + range_len(&s->text);
        size += 1 + range_len(&uri->query);

        char *t = malloc(size), *p = t;
        if (!t)
                return NULL;
        for (const UriPathSegmentA *s = uri->pathHead; s; s = s->next) {
                *p++ = '/';
                memcpy(p, s->text.first, range_len(&s->text));
                p += range_len(&s->text);
        }
        if (p == t)
                *p++ = '/';
        if (uri->query.first) {
                *p++ = '?';
                memcpy(p, uri->query.first, range_len(&uri->query));
                p += range_len(&uri->query);
        }
        *p = '\0';
        return t;
}

static int parse_port(const UriTextRangeA *r, int64_t *ret) {
        size_t n = range_len(r);
        if (n == 0 || n > 5)
                return -ERANGE;
        int64_t v = 0;
        for (size_t i = 0; i < n; i++) {
                if (!isdigit((unsigned char)r->first[i]))
                        return -EINVAL;
                v = v * 10 + (r->first[i] - '0');
        }
        if (v < 1 || v > 65535)
                return -ERANGE;
        *ret = v;
        return 0;
}

/* The scheme is one of reg's plugins': else why not, naming the schemes they serve. */
static int check_scheme(paf_registry *reg, const char *url, const char *scheme, paf_error *error) {
        paf_scheme_match m;
        paf_registry_match_scheme(reg, scheme, &m);
        if (m.usable)
                return 0;
        _cleanup_free_ char *known = paf_registry_format_schemes(reg);
        _cleanup_free_ char *base = strndup(scheme, strcspn(scheme, "+"));
        if (!known || !base)
                return paf_error_set(error, -ENOMEM, "URL \"%s\": out of memory", url);
        /* A transport without its layer: "https" with no TLS plugin is
         * refused, never sent in clear. */
        if (m.transport)
                return paf_error_set(error, -EPROTONOSUPPORT,
                                     "URL \"%s\": unknown scheme \"%s\": no plugin registered the "
                                     "layer \"%s\" (registered: %s)",
                                     url, scheme, base, *known ? known : "none");
        if (!*known)
                return paf_error_set(error, -EPROTONOSUPPORT,
                                     "URL \"%s\": unknown scheme \"%s\" (no plugin registered a "
                                     "URL scheme)",
                                     url, scheme);
        return paf_error_set(error, -EPROTONOSUPPORT,
                             "URL \"%s\": unknown scheme \"%s\" (registered: %s)", url, scheme,
                             known);
}

/* reg NULL: any scheme. */
static int set_url(paf_registry *reg, paf_ctx *ctx, const char *url, paf_error *error) {
        if (!ctx || !url)
                return paf_error_set(error, -EINVAL, "URL: missing argument");

        UriUriA uri;
        const char *error_pos = NULL;
        if (uriParseSingleUriA(&uri, url, &error_pos) != URI_SUCCESS)
                return paf_error_set(error, -EINVAL, "URL \"%s\": syntax error at offset %zu", url,
                                     error_pos ? (size_t)(error_pos - url) : 0);

        int r;
        _cleanup_free_ char *scheme = NULL, *host = NULL, *target = NULL, *port_text = NULL;
        if (!uri.scheme.first) {
                r = paf_error_set(error, -EINVAL, "URL \"%s\": no scheme (http://…)", url);
                goto out;
        }
        scheme = range_dup(&uri.scheme);
        if (!scheme) {
                r = paf_error_set(error, -ENOMEM, "URL \"%s\": out of memory", url);
                goto out;
        }
        for (char *c = scheme; *c; c++)
                *c = (char)tolower((unsigned char)*c);
        if (reg) {
                r = check_scheme(reg, url, scheme, error);
                if (r < 0)
                        goto out;
        }

        /* hostText excludes an IPv6 literal's brackets: tcp wants the bare address. */
        host = range_dup(&uri.hostText);
        if (!host) {
                r = paf_error_set(error, -ENOMEM, "URL \"%s\": out of memory", url);
                goto out;
        }
        /* Decoded, the host goes into the Host header and into messages:
         * a control character (%0d%0a, %00 …) would split or cut them. */
        const char *host_end = uriUnescapeInPlaceA(host);
        for (const char *c = host; c < host_end; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                        r = paf_error_set(error, -EINVAL,
                                          "URL \"%s\": control character in the host", url);
                        goto out;
                }
        if (!*host) {
                r = paf_error_set(error, -EINVAL, "URL \"%s\": no host", url);
                goto out;
        }

        int64_t port = -1;
        if (range_len(&uri.portText) > 0) {
                if (parse_port(&uri.portText, &port) < 0) {
                        port_text = range_dup(&uri.portText);
                        r = paf_error_set(error, -EINVAL,
                                          "URL \"%s\": bad port \"%s\" (1 to 65535)", url,
                                          port_text ? port_text : "");
                        goto out;
                }
        }

        target = build_target(&uri);
        if (!target) {
                r = paf_error_set(error, -ENOMEM, "URL \"%s\": out of memory", url);
                goto out;
        }

        r = paf_ctx_set_string(ctx, "url.scheme", scheme);
        if (r >= 0)
                r = paf_ctx_set_string(ctx, "url.host", host);
        if (r >= 0)
                r = port >= 0 ? paf_ctx_set_int(ctx, "url.port", port)
                              : paf_ctx_remove(ctx, "url.port");
        if (r >= 0)
                r = paf_ctx_set_string(ctx, "url.path", target);
        if (r < 0) {
                r = paf_error_set(error, r, "URL \"%s\": %s", url, strerror(-r));
                goto out;
        }
        r = 0;
out:
        uriFreeUriMembersA(&uri);
        return r;
}

PAF_EXPORT int paf_ctx_set_url(paf_ctx *ctx, const char *url, paf_error *error) {
        return set_url(NULL, ctx, url, error);
}

PAF_EXPORT int paf_registry_parse_url(paf_registry *reg, const char *url, paf_ctx *ctx,
                                      paf_error *error) {
        if (!reg)
                return paf_error_set(error, -EINVAL, "URL: missing argument");
        return set_url(reg, ctx, url, error);
}
