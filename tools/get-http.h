/* tools/get-http.h — paf get's -x, --noproxy, -b, -c and --compressed, on top of tools/get.c. */
#pragma once

#include <stdbool.h>

#include <paf/ctx.h>
#include <paf/http.h>
#include <paf/registry.h>

#include "cookies.h"
#include "decode.h"

#define GET_HTTP_EXIT_BAD_CONTENT_ENCODING 61 /* curl's CURLE_BAD_CONTENT_ENCODING */
#define GET_HTTP_EXIT_WRITE_ERROR 23          /* curl's CURLE_WRITE_ERROR */

enum {
        GET_OPT_NOPROXY = 0x300,
        GET_OPT_COMPRESSED,
};

/* For tools/get.c's option table, and its getopt string. */
#define GET_HTTP_OPTIONS                                                                           \
        {"proxy", required_argument, NULL, 'x'}, {"noproxy", required_argument, NULL, GET_OPT_NOPROXY}, \
                {"cookie", required_argument, NULL, 'b'},                                          \
                {"cookie-jar", required_argument, NULL, 'c'},                                      \
                {"compressed", no_argument, NULL, GET_OPT_COMPRESSED}
#define GET_HTTP_SHORT "x:b:c:"

#define GET_HTTP_USAGE                                                                             \
        "  -x, --proxy [SCHEME://][USER:PASSWORD@]HOST[:PORT]  Through this proxy:\n"           \
        "                          http:// (default) or https:// (TLS to the proxy):\n"          \
        "                          absolute form, CONNECT for https:// URLs; socks4://,\n"       \
        "                          socks4a://, socks5://, socks5h:// (names resolved\n"          \
        "                          by the proxy); \"\" for none. Without it, http_proxy,\n"      \
        "                          https_proxy, all_proxy as curl reads them\n"                  \
        "      --noproxy LIST      Hosts reached directly: \"*\", NAME (and below),\n"          \
        "                          ADDR or ADDR/BITS, comma separated; else no_proxy\n"          \
        "  -b, --cookie DATA|FILE  Send \"name=value; …\", or the cookies of FILE (curl's\n"      \
        "                          Netscape format) that match each request\n"                     \
        "  -c, --cookie-jar FILE   Write every cookie to FILE at the end (\"-\": stdout)\n"        \
        "      --compressed        Ask for deflate, gzip, br or zstd and decode the body\n"        \
        "                          (exit 61 when it is corrupt)\n"

typedef struct get_http {
        /* Options. */
        const char *proxy, *noproxy;
        const char *cookie_files[32];
        size_t n_cookie_files;
        char *cookie_string; /* -b DATA, every one joined with "; " */
        const char *jar_path;
        bool compressed;

        /* The transfer. */
        paf_registry *reg;
        cookie_jar *jar; /* the cookie engine: on with -b FILE or -c */
        char *current_url; /* the hop the next response answers */
        char *header;      /* the Cookie field the rule returned last */
        decoder *dec;
        bool decode_failed;
        bool decode_unsupported;
        int decode_refused; /* decoder_new's error for the response's codings, else 0 */
        int decode_exit;    /* with decode_failed: curl's exit code for it */
} get_http;

/* 1 when c is one of these options (taken), 0 when not, < 0 on error
 * (printed; the exit code is *ret_exit). */
int get_http_option(get_http *x, int c, const char *arg, int *ret_exit);

/* After the options: the proxy keys and the cookie rule into *ctx (made
 * if NULL), Accept-Encoding into headers. Exit code on failure, else 0. */
int get_http_setup(get_http *x, paf_registry *reg, paf_ctx **ctx, paf_http_headers *headers);

/* A call to url starts (and each retry). */
void get_http_begin(get_http *x, const char *url);
/* A response: a redirect followed (next_url given) or the final head. */
void get_http_response(get_http *x, int status, const paf_http_headers *headers,
                       const char *next_url, bool head_only);
/* Body bytes of the final response, decoded into write() when --compressed. */
int get_http_body(get_http *x, const void *data, size_t len, decoder_sink_t write, void *userdata);
/* The call ended; < 0 when the body could not be decoded (the message is
 * in buf, the exit code in x->decode_exit). */
int get_http_end(get_http *x, bool failed, char *buf, size_t size);
/* Everything ended: -c's jar written. Exit code on failure, else 0. */
int get_http_finish(get_http *x);
void get_http_done(get_http *x);
