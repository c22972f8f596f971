/* tools/get-http.c — paf get's -x, --noproxy, -b, -c and --compressed, on top of tools/get.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <paf/client.h>

#include "get-http.h"
#include "get-proxy.h"
#include "paf-tool.h"

int get_http_option(get_http *x, int c, const char *arg, int *ret_exit) {
        switch (c) {
        case 'x':
                x->proxy = arg;
                return 1;
        case GET_OPT_NOPROXY:
                x->noproxy = arg;
                return 1;
        case 'b':
                /* curl's rule: with a '=' it is cookies, else a file to read. */
                if (strchr(arg, '=')) {
                        char *s;
                        if (asprintf(&s, "%s%s%s", x->cookie_string ? x->cookie_string : "",
                                     x->cookie_string ? "; " : "", arg) < 0) {
                                tool_error("%s", strerror(ENOMEM));
                                *ret_exit = 2;
                                return -ENOMEM;
                        }
                        free(x->cookie_string);
                        x->cookie_string = s;
                } else if (x->n_cookie_files < sizeof(x->cookie_files) / sizeof(x->cookie_files[0]))
                        x->cookie_files[x->n_cookie_files++] = arg;
                return 1;
        case 'c':
                x->jar_path = arg;
                return 1;
        case GET_OPT_COMPRESSED:
                x->compressed = true;
                return 1;
        default:
                return 0;
        }
}

/* http.cookie for a hop: what the jar holds for its URL, then -b's string
 * (curl's order). Declines when there is nothing to send. */
static int rule_cookie(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        get_http *x = userdata;
        const char *scheme = in[0].string, *host = in[1].string, *path = in[2].string;
        free(x->header);
        x->header = NULL;
        char *jar = NULL;
        if (x->jar) {
                int r = cookie_jar_header(x->jar, host, path, cookie_secure_context(scheme, host),
                                          time(NULL), &jar);
                if (r < 0)
                        return r;
        }
        if (jar && x->cookie_string) {
                if (asprintf(&x->header, "%s; %s", jar, x->cookie_string) < 0)
                        x->header = NULL;
                free(jar);
                if (!x->header)
                        return -ENOMEM;
        } else if (jar)
                x->header = jar;
        else if (x->cookie_string && !(x->header = strdup(x->cookie_string)))
                return -ENOMEM;
        if (!x->header)
                return 0;
        *ret = PAF_VALUE_STRING(x->header);
        return 1;
}

int get_http_setup(get_http *x, paf_registry *reg, paf_ctx **ctx, paf_http_headers *headers) {
        x->reg = reg;
        int r = 0;
        if (!*ctx)
                r = paf_ctx_new(ctx);
        if (r >= 0)
                r = get_proxy_setup(*ctx, x->proxy, x->noproxy);
        if (r < 0) {
                tool_error("%s", strerror(-r));
                return 2;
        }

        if (x->n_cookie_files > 0 || x->jar_path) {
                r = cookie_jar_new(&x->jar);
                if (r < 0) {
                        tool_error("%s", strerror(-r));
                        return 2;
                }
        }
        for (size_t i = 0; i < x->n_cookie_files; i++) {
                const char *path = x->cookie_files[i];
                FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
                if (!f)
                        continue; /* curl goes on without a cookie file it cannot read */
                r = cookie_jar_load(x->jar, f, time(NULL));
                if (f != stdin)
                        fclose(f);
                if (r < 0) {
                        tool_error("-b %s: %s", path, strerror(-r));
                        return 26;
                }
        }
        if (x->jar || x->cookie_string) {
                static const paf_rule_input inputs[] = {
                        PAF_REQUIRED("url.scheme", PAF_TYPE_STRING),
                        PAF_REQUIRED("url.host", PAF_TYPE_STRING),
                        PAF_REQUIRED("url.path", PAF_TYPE_STRING),
                };
                r = paf_ctx_add_rule(*ctx, "http.cookie", PAF_TYPE_STRING, inputs, 3, rule_cookie,
                                     x, NULL);
                if (r < 0) {
                        tool_error("%s", strerror(-r));
                        return 2;
                }
        }
        if (x->compressed && !paf_http_headers_get(headers, "Accept-Encoding")) {
                r = paf_http_headers_add(headers, "Accept-Encoding", decoder_accept_encoding());
                if (r < 0) {
                        tool_error("%s", strerror(-r));
                        return 2;
                }
        }
        return 0;
}

void get_http_begin(get_http *x, const char *url) {
        free(x->current_url);
        x->current_url = url ? strdup(url) : NULL;
        x->dec = decoder_free(x->dec);
        x->decode_failed = x->decode_unsupported = false;
        x->decode_refused = 0;
        x->decode_exit = GET_HTTP_EXIT_BAD_CONTENT_ENCODING;
}

/* Every Content-Encoding field, in order, as one list: curl stacks them. */
static char *content_encodings(const paf_http_headers *headers) {
        char *list = NULL;
        size_t n = paf_http_headers_count(headers), len = 0;
        FILE *f = open_memstream(&list, &len);
        if (!f)
                return NULL;
        bool first = true;
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(headers, i, &name, &value) >= 0 &&
                    strcasecmp(name, "Content-Encoding") == 0) {
                        fprintf(f, "%s%s", first ? "" : ", ", value);
                        first = false;
                }
        }
        if (fclose(f) != 0) {
                free(list);
                return NULL;
        }
        return list;
}

/* Set-Cookie fields of a response to the current URL, into the jar. */
static void take_cookies(get_http *x, const paf_http_headers *headers) {
        if (!x->jar || !x->current_url || !headers)
                return;
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *u = NULL;
        const char *scheme, *host, *path;
        if (paf_ctx_new(&u) < 0 || paf_registry_parse_url(x->reg, x->current_url, u, NULL) < 0 ||
            paf_ctx_get_string(u, "url.scheme", &scheme) < 0 ||
            paf_ctx_get_string(u, "url.host", &host) < 0 ||
            paf_ctx_get_string(u, "url.path", &path) < 0)
                return;
        bool secure = cookie_secure_context(scheme, host);
        size_t n = paf_http_headers_count(headers);
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(headers, i, &name, &value) >= 0 &&
                    strcasecmp(name, "Set-Cookie") == 0)
                        (void)cookie_jar_add(x->jar, value, host, path, secure, time(NULL));
        }
}

void get_http_response(get_http *x, int status, const paf_http_headers *headers,
                       const char *next_url, bool head_only) {
        take_cookies(x, headers);
        if (next_url) {
                free(x->current_url);
                x->current_url = strdup(next_url);
                return;
        }
        x->dec = decoder_free(x->dec);
        x->decode_unsupported = false;
        x->decode_refused = 0;
        if (!x->compressed || head_only || status == 204 || status == 304 || !headers)
                return;
        char *ce = content_encodings(headers);
        int r = !ce ? -ENOMEM : *ce ? decoder_new(ce, &x->dec) : 0;
        free(ce);
        if (r == -EOPNOTSUPP)
                x->decode_unsupported = true; /* an error once body bytes come, as curl */
        else if (r < 0) {
                /* curl refuses more than 5 codings with the head, body or not. */
                x->decode_refused = r;
                x->decode_failed = true;
        }
}

int get_http_body(get_http *x, const void *data, size_t len, decoder_sink_t write, void *userdata) {
        if ((x->decode_unsupported && len > 0) || x->decode_refused) {
                x->decode_failed = true;
                return -EBADMSG;
        }
        if (!x->dec)
                return write(data, len, userdata);
        int r = decoder_feed(x->dec, data, len, write, userdata);
        if (r == -EBADMSG || r == -EPROTO) {
                x->decode_failed = true;
                /* Bytes after the stream's end: curl's write error. */
                x->decode_exit = r == -EPROTO ? GET_HTTP_EXIT_WRITE_ERROR
                                              : GET_HTTP_EXIT_BAD_CONTENT_ENCODING;
        }
        return r;
}

int get_http_end(get_http *x, bool failed, char *buf, size_t size) {
        if (!x->decode_failed && !failed && x->dec && decoder_finish(x->dec) < 0)
                x->decode_failed = true;
        if (!x->decode_failed)
                return 0;
        if (x->decode_unsupported)
                snprintf(buf, size,
                         "Unrecognized content encoding type. paf understands %s "
                         "content encodings.",
                         decoder_accept_encoding());
        else if (x->decode_refused == -E2BIG)
                snprintf(buf, size, "Reject response due to more than 5 content encodings");
        else if (x->decode_refused)
                snprintf(buf, size, "Content-Encoding: %s", strerror(-x->decode_refused));
        else
                snprintf(buf, size, "Error while processing content unencoding: %s",
                         decoder_error(x->dec));
        return -EBADMSG;
}

int get_http_finish(get_http *x) {
        if (!x->jar || !x->jar_path)
                return 0;
        bool out = strcmp(x->jar_path, "-") == 0;
        FILE *f = out ? stdout : fopen(x->jar_path, "we");
        if (!f) {
                tool_error("-c %s: cannot write the cookie jar: %s", x->jar_path, strerror(errno));
                return 23;
        }
        int r = cookie_jar_save(x->jar, f, time(NULL));
        if (out ? fflush(f) != 0 : fclose(f) != 0)
                r = -errno;
        if (r < 0) {
                tool_error("-c %s: cannot write the cookie jar: %s", x->jar_path, strerror(-r));
                return 23;
        }
        return 0;
}

void get_http_done(get_http *x) {
        x->jar = cookie_jar_free(x->jar);
        x->dec = decoder_free(x->dec);
        free(x->cookie_string);
        free(x->current_url);
        free(x->header);
        *x = (get_http){0};
}
