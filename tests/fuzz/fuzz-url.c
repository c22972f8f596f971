/* tests/fuzz/fuzz-url.c — libFuzzer: URL parsing (paf_ctx_set_url) and the simple client's
 * redirects: each hop answers with the next fuzzed Location, over in-memory connections.
 *
 * Input: 1 byte of options, then NUL-separated strings: the URL, then the Location of each
 * redirect (the hop after the last one answers 200).
 *
 * Checked beyond the sanitizers:
 *   - a URL that parses has a known scheme, a host, a path starting with "/", a port in range;
 *   - the request line's target and the Host header are what the hop's URL says, and nothing
 *     in the URL adds a header line (no CR/LF reaches the request);
 *   - with the default policy, a redirect reaches no scheme but http and https, except back to
 *     the requested URL's origin;
 *   - Authorization and Cookie go to the requested URL's origin only (unless trusted);
 *   - the handler runs exactly once.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <paf.h>
#include <paf/client.h>

#include "fuzz-common.h"

#define OPT_STATUS 0x07  /* the redirects' status, see statuses[] */
#define OPT_POST 0x08    /* POST with a body, not GET */
#define OPT_TRUSTED 0x10 /* location_trusted */
#define OPT_SCHEMES 0x20 /* redirect_schemes: the last string, not the default */
#define OPT_NOFOLLOW 0x40

#define MAX_HOPS 8
#define MAX_STRINGS (MAX_HOPS + 2)
#define SECRET "Bearer fuzz-secret"

static const int statuses[] = {301, 302, 303, 307, 308, 300, 304, 302};

typedef struct origin {
        char scheme[64];
        char host[2100]; /* the strings are at most 2000 bytes */
        int64_t port;
        bool valid;
} origin;

typedef struct hop {
        paf_flow *flow;
        origin o;
        char target[8192]; /* a merged path: base and reference, 2000 bytes each at most */
        bool answered;
} hop;

typedef struct state {
        sd_event *event;
        uint8_t opts;
        char *strings[MAX_STRINGS];
        size_t n_strings;
        size_t n_locations;
        origin first;
        hop hops[MAX_HOPS + 4];
        size_t n_hops;
        unsigned n_handled;
} state;

static state S;
static paf_registry *registry;

static bool is_default_scheme(const char *s) {
        return strcmp(s, "http") == 0 || strcmp(s, "https") == 0;
}

static void origin_read(paf_ctx *ctx, origin *o) {
        const char *scheme, *host;
        int64_t port = -1;
        *o = (origin){.port = -1};
        if (paf_ctx_get_string(ctx, "url.scheme", &scheme) < 0 ||
            paf_ctx_get_string(ctx, "url.host", &host) < 0)
                return;
        (void)paf_ctx_get_int(ctx, "url.port", &port);
        if (port < 0 && strcmp(scheme, "http") == 0)
                port = 80;
        if (port < 0 && strcmp(scheme, "https") == 0)
                port = 443;
        snprintf(o->scheme, sizeof(o->scheme), "%s", scheme);
        snprintf(o->host, sizeof(o->host), "%s", host);
        o->port = port;
        o->valid = strlen(scheme) < sizeof(o->scheme) && strlen(host) < sizeof(o->host);
}

static bool origin_equal(const origin *a, const origin *b) {
        return a->valid && b->valid && strcmp(a->scheme, b->scheme) == 0 &&
               strcmp(a->host, b->host) == 0 && a->port == b->port;
}

/* What paf_ctx_set_url() promises of a URL it took. */
static void check_url(const char *url) {
        paf_ctx *ctx = NULL;
        FUZZ_CHECK(paf_ctx_new(&ctx) >= 0);
        paf_error e = PAF_ERROR_NULL;
        int r = paf_ctx_set_url(ctx, url, &e);
        if (r < 0) {
                FUZZ_CHECK(e.code == r);
                FUZZ_CHECK(memchr(e.message, 0, sizeof(e.message)) && e.message[0]);
        } else {
                const char *scheme, *host, *path;
                int64_t port;
                FUZZ_CHECK(paf_ctx_get_string(ctx, "url.scheme", &scheme) >= 0);
                FUZZ_CHECK(paf_ctx_get_string(ctx, "url.host", &host) >= 0 && *host);
                FUZZ_CHECK(paf_ctx_get_string(ctx, "url.path", &path) >= 0 && path[0] == '/');
                for (const char *c = scheme; *c; c++)
                        FUZZ_CHECK(!isupper((unsigned char)*c));
                if (paf_ctx_get_int(ctx, "url.port", &port) >= 0)
                        FUZZ_CHECK(port >= 1 && port <= 65535);
        }
        paf_ctx_unref(ctx);
}

static void trim(const char **s, size_t *len) {
        while (*len > 0 && (**s == ' ' || **s == '\t')) {
                (*s)++;
                (*len)--;
        }
        while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
                (*len)--;
}

/* The request head hop h's connection received: one request, for that hop's URL. */
static void check_head(hop *h, const char *head, size_t len) {
        const char *end = memmem(head, len, "\r\n\r\n", 4);
        FUZZ_CHECK(end);
        unsigned hosts = 0;
        bool secret = false, cookie = false;
        const char *line = head;
        bool first = true;
        while (line < end + 2) {
                const char *eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
                FUZZ_CHECK(eol);
                size_t n = (size_t)(eol - line);
                FUZZ_CHECK(!memchr(line, '\n', n) && !memchr(line, '\r', n));
                FUZZ_CHECK(!memchr(line, '\0', n));
                if (first) {
                        /* METHOD SP target SP HTTP/1.1 */
                        const char *sp = memchr(line, ' ', n);
                        FUZZ_CHECK(sp);
                        const char *t = sp + 1;
                        const char *sp2 = memchr(t, ' ', (size_t)(eol - t));
                        FUZZ_CHECK(sp2 && (size_t)(eol - sp2) == 9 &&
                                   memcmp(sp2, " HTTP/1.1", 9) == 0);
                        FUZZ_CHECK((size_t)(sp2 - t) == strlen(h->target) &&
                                   memcmp(t, h->target, (size_t)(sp2 - t)) == 0);
                        first = false;
                } else {
                        const char *colon = memchr(line, ':', n);
                        FUZZ_CHECK(colon && colon > line);
                        for (const char *c = line; c < colon; c++)
                                FUZZ_CHECK(*c > ' ' && *c < 0x7f);
                        size_t name_len = (size_t)(colon - line);
                        const char *value = colon + 1;
                        size_t value_len = (size_t)(eol - value);
                        if (name_len == 4 && strncasecmp(line, "host", 4) == 0) {
                                hosts++;
                                if (is_default_scheme(h->o.scheme) && h->o.valid) {
                                        /* The authority as the URL has it: an IPv6 literal in
                                         * brackets, the port unless it is the default. */
                                        char want[2200];
                                        bool v6 = strchr(h->o.host, ':');
                                        bool dflt = h->o.port ==
                                                    (strcmp(h->o.scheme, "https") == 0 ? 443 : 80);
                                        if (dflt)
                                                snprintf(want, sizeof(want), v6 ? "[%s]" : "%s",
                                                         h->o.host);
                                        else
                                                snprintf(want, sizeof(want),
                                                         v6 ? "[%s]:%" PRId64 : "%s:%" PRId64,
                                                         h->o.host, h->o.port);
                                        /* As a receiver sees both: without the spaces
                                         * around (a host may hold %20). */
                                        const char *w = want;
                                        size_t w_len = strlen(want);
                                        trim(&w, &w_len);
                                        trim(&value, &value_len);
                                        FUZZ_CHECK(value_len == w_len &&
                                                   memcmp(value, w, value_len) == 0);
                                }
                        }
                        if (name_len == 13 && strncasecmp(line, "authorization", 13) == 0)
                                secret = true;
                        if (name_len == 6 && strncasecmp(line, "cookie", 6) == 0)
                                cookie = true;
                }
                line = eol + 2;
        }
        FUZZ_CHECK(hosts == 1);
        if (!(S.opts & OPT_TRUSTED) && (secret || cookie))
                FUZZ_CHECK(origin_equal(&h->o, &S.first));
}

/* ---- the "memory" protocol: each hop's server ---- */

static const char *const mem_keys[] = {"url.host", NULL};

static int mem_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata) {
        (void)userdata;
        const char *host = "?";
        (void)paf_ctx_get_string(ctx, "url.host", &host);
        snprintf(buf, size, "memory %s", host);
        return 0;
}

static void on_hop_write(paf_flow *flow, const struct iovec *iov, size_t n_iov, void *userdata) {
        hop *h = userdata;
        if (h->answered)
                return; /* the body after the head */
        h->answered = true;
        /* The head, whatever the pieces it came in. */
        static char head[16384];
        size_t len = 0;
        for (size_t i = 0; i < n_iov && len < sizeof(head); i++) {
                size_t m =
                        iov[i].iov_len < sizeof(head) - len ? iov[i].iov_len : sizeof(head) - len;
                memcpy(head + len, iov[i].iov_base, m);
                len += m;
        }
        check_head(h, head, len);

        size_t k = (size_t)(h - S.hops);
        char resp[4096];
        int n;
        if (k < S.n_locations) {
                /* The Location is the fuzzer's, minus what would end the header line. */
                char loc[2048];
                snprintf(loc, sizeof(loc), "%s", S.strings[1 + k]);
                for (char *c = loc; *c; c++)
                        if (*c == '\r' || *c == '\n')
                                *c = '_';
                n = snprintf(resp, sizeof(resp),
                             "HTTP/1.1 %d Moved\r\nLocation: %s\r\nContent-Length: 3\r\n"
                             "Connection: close\r\n\r\nbye",
                             statuses[S.opts & OPT_STATUS], loc);
        } else
                n = snprintf(resp, sizeof(resp),
                             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        FUZZ_CHECK(n > 0);
        memflow_feed(flow, resp, (size_t)n < sizeof(resp) ? (size_t)n : sizeof(resp) - 1);
        memflow_end_now(flow);
}

static int mem_connect(paf_connect_request *req, void *userdata) {
        (void)userdata;
        FUZZ_CHECK(S.n_hops < sizeof(S.hops) / sizeof(S.hops[0]));
        hop *h = &S.hops[S.n_hops++];
        paf_ctx *ctx = paf_connect_request_get_ctx(req);
        origin_read(ctx, &h->o);
        const char *target = "";
        (void)paf_ctx_get_string(ctx, "url.path", &target);
        snprintf(h->target, sizeof(h->target), "%s", target);

        /* With the default policy, only http and https, or the requested URL's origin. */
        if (S.n_hops > 1 && !(S.opts & OPT_SCHEMES) && h->o.valid &&
            !is_default_scheme(h->o.scheme))
                FUZZ_CHECK(origin_equal(&h->o, &S.first));

        memflow_options o = {
                .end = MEMFLOW_LATE_EOF,
                .on_write = on_hop_write,
                .userdata = h,
                .handle = &h->flow,
        };
        paf_flow *flow;
        int r = memflow_new(paf_connect_request_get_event(req), NULL, 0, &o, &flow);
        if (r < 0)
                return r;
        paf_connect_request_done(req, flow);
        return 0;
}

static const paf_protocol_ops mem_ops = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "memory",
        .priority = 0,
        .endpoint_keys = mem_keys,
        .describe = mem_describe,
        .connect = mem_connect,
};

static void on_done(paf_response *response, const paf_error *error, void *userdata) {
        (void)userdata;
        S.n_handled++;
        FUZZ_CHECK(S.n_handled == 1);
        if (error) {
                FUZZ_CHECK(!response);
                FUZZ_CHECK(error->code < 0 && error->message[0]);
                FUZZ_CHECK(memchr(error->message, 0, sizeof(error->message)));
                return;
        }
        FUZZ_CHECK(response && response->url);
        FUZZ_CHECK(response->status >= 200);
        check_url(response->url);
        paf_response_free(response);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void)argc;
        (void)argv;
        fuzz_setup();
        FUZZ_CHECK(paf_registry_new(&registry) >= 0);
        FUZZ_CHECK(paf_registry_add_protocol(registry, &mem_ops, NULL) >= 0);
        /* The schemes the shipped plugins register, all served from memory,
         * so that the client follows redirects between them. */
        static const paf_scheme_desc schemes[] = {
                {sizeof(paf_scheme_desc), "http", "memory", PAF_SCHEME_HOSTNAME, 80},
                {sizeof(paf_scheme_desc), "https", "memory", PAF_SCHEME_HOSTNAME, 443},
                {sizeof(paf_scheme_desc), "+unix", "memory", 0, 0},
                {sizeof(paf_scheme_desc), "+vsock", "memory", 0, 80},
        };
        for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
                FUZZ_CHECK(paf_registry_add_scheme(registry, &schemes[i]) >= 0);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        S = (state){.opts = size > 0 ? data[0] : 0};
        if (size > 0) {
                data++;
                size--;
        }
        while (size > 0 && S.n_strings < MAX_STRINGS)
                S.strings[S.n_strings++] = fuzz_take_string(&data, &size, 2000);
        if (S.n_strings == 0)
                S.strings[S.n_strings++] = fuzz_take_string(&data, &size, 0);

        for (size_t i = 0; i < S.n_strings; i++)
                check_url(S.strings[i]);

        const char *schemes = NULL;
        size_t n = S.n_strings;
        if ((S.opts & OPT_SCHEMES) && n > 1)
                schemes = S.strings[--n];
        S.n_locations = n - 1;

        paf_ctx *first = NULL;
        FUZZ_CHECK(paf_ctx_new(&first) >= 0);
        if (paf_ctx_set_url(first, S.strings[0], NULL) >= 0)
                origin_read(first, &S.first);
        paf_ctx_unref(first);

        S.event = fuzz_event_new();
        paf_client *c = NULL;
        FUZZ_CHECK(paf_client_new(registry, S.event, &c) >= 0);
        paf_client_options co = {
                .max_redirects = (S.opts & OPT_NOFOLLOW) ? 0 : MAX_HOPS - 1,
                .location_trusted = S.opts & OPT_TRUSTED,
                .redirect_schemes = schemes,
        };
        int r = paf_client_set_options(c, &co);
        FUZZ_CHECK(r >= 0 || (r == -EINVAL && schemes));
        if (r >= 0) {
                paf_http_headers *h = NULL;
                FUZZ_CHECK(paf_http_headers_new(&h) >= 0);
                FUZZ_CHECK(paf_http_headers_add(h, "Authorization", SECRET) >= 0);
                FUZZ_CHECK(paf_http_headers_add(h, "Cookie", "fuzz=1") >= 0);
                paf_client_request req = {
                        .method = (S.opts & OPT_POST) ? "POST" : "GET",
                        .url = S.strings[0],
                        .headers = h,
                        .body = (S.opts & OPT_POST) ? "body" : NULL,
                        .body_size = (S.opts & OPT_POST) ? 4 : 0,
                };
                r = paf_client_send(c, &req, on_done);
                paf_http_headers_free(h);
                fuzz_run(S.event, 100000);
                /* Every hop's connection ended: the call has ended too. */
                FUZZ_CHECK(S.n_handled == (r >= 0 ? 1u : 0u));
        }
        paf_client_free(c);
        fuzz_run(S.event, 100000);
        FUZZ_CHECK(memflow_get_n_alive() == 0);
        fuzz_event_free(S.event);
        for (size_t i = 0; i < S.n_strings; i++)
                free(S.strings[i]);
        return 0;
}
