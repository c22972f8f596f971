/* core/client.c — the simple client: a URL in, a response out, over one pooled HTTP client. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>

#include <uriparser/Uri.h>

#include "core/http/client-internal.h"
#include <paf/client.h>

#define USEC_PER_SEC UINT64_C(1000000)

typedef struct client_call client_call;

/* The schemes redirects may go to, by name: plugins bring schemes the core
 * never heard of. */
typedef struct scheme_set {
        bool all;     /* every scheme but those in names; else only those */
        char **names; /* lowercase */
        size_t n_names;
} scheme_set;

/* What a URL's credentials belong to (RFC 6454): scheme, host and port. */
typedef struct origin {
        char *scheme; /* lowercase */
        char *host;
        int64_t port; /* the scheme's default when the URL gives none; -1: none */
} origin;

struct paf_client {
        paf_registry *reg;
        sd_event *event;
        paf_http_client *http;
        paf_client_options options; /* its strings point at the copies below */
        char *ca_file;
        char *unix_socket;
        char *redirect_schemes;
        scheme_set redirect; /* redirect_schemes, parsed */
        client_call *calls;  /* every call whose handler has not run */
};

/*
 * A call walks hops (the request, then one per redirect). What is owed to
 * the user — the next hop after a redirect's body, the final answer — runs
 * from `defer`, so the handler never runs inside paf_client_send() and the
 * HTTP call is always freed first.
 */
typedef enum call_step {
        STEP_ACTIVE,   /* an HTTP call is under way */
        STEP_NEXT_HOP, /* follow a redirect from the defer */
        STEP_DONE,     /* deliver the response or the error from the defer */
} call_step;

struct client_call {
        paf_client *client;
        client_call *prev, *next;

        char *method;
        char *url; /* the current one: redirects replace it */
        char *next_url;
        origin first; /* the requested URL's: credentials go there only */
        paf_ctx *user_ctx;
        paf_http_headers *headers;
        void *body;
        size_t body_size;
        unsigned n_redirects;

        paf_client_head_handler_t on_head;
        paf_client_body_handler_t on_body;
        paf_client_redirect_handler_t on_redirect;
        paf_client_call_handler_t on_call;
        paf_client_handler_t handler;
        void *userdata;

        paf_http_call *http;
        sd_event_source *defer;
        sd_event_source *timer;
        call_step step;
        paf_response *response; /* the final one, being read */
        size_t body_alloc;
        paf_error error; /* code < 0: failed */
};

/* ---- small helpers ---- */

static void format_seconds(uint64_t usec, char *buf, size_t size) {
        if (usec % USEC_PER_SEC == 0)
                snprintf(buf, size, "%" PRIu64 " s", usec / USEC_PER_SEC);
        else
                snprintf(buf, size, "%.3g s", (double)usec / (double)USEC_PER_SEC);
}

static int headers_copy(const paf_http_headers *from, paf_http_headers **ret) {
        _paf_cleanup_(paf_http_headers_freep) paf_http_headers *h = NULL;
        int r = paf_http_headers_new(&h);
        if (r < 0)
                return r;
        size_t n = from ? paf_http_headers_count(from) : 0;
        for (size_t i = 0; i < n; i++) {
                const char *name, *value;
                if (paf_http_headers_get_nth(from, i, &name, &value) < 0)
                        continue;
                r = paf_http_headers_add(h, name, value);
                if (r < 0)
                        return r;
        }
        if (from) {
                http_headers_set_version(h, paf_http_headers_get_version(from));
                const char *reason = paf_http_headers_get_reason(from);
                r = http_headers_set_reason(h, reason, reason ? strlen(reason) : 0);
                if (r < 0)
                        return r;
        }
        *ret = h;
        h = NULL;
        return 0;
}

/* "https+unix" -> "https". */
static char *scheme_base(const char *scheme) {
        return strndup(scheme, strcspn(scheme, "+"));
}

/* ---- schemes allowed on redirects ---- */

static void scheme_set_clear(scheme_set *set, bool all) {
        for (size_t i = 0; i < set->n_names; i++)
                free(set->names[i]);
        free(set->names);
        *set = (scheme_set){.all = all};
}

static bool scheme_set_has(const scheme_set *set, const char *name) {
        for (size_t i = 0; i < set->n_names; i++)
                if (strcmp(set->names[i], name) == 0)
                        return true;
        return false;
}

static bool scheme_set_allows(const scheme_set *set, const char *scheme) {
        return set->all != scheme_set_has(set, scheme);
}

/* Allow or deny one scheme: names lists the allowed ones, or, under all, the denied ones. */
static int scheme_set_change(scheme_set *set, const char *name, bool allow) {
        bool listed = set->all ? !allow : allow;
        if (listed == scheme_set_has(set, name))
                return 0;
        if (!listed) {
                for (size_t i = 0; i < set->n_names; i++)
                        if (strcmp(set->names[i], name) == 0) {
                                free(set->names[i]);
                                set->names[i] = set->names[--set->n_names];
                                break;
                        }
                return 0;
        }
        char **v = realloc(set->names, (set->n_names + 1) * sizeof(*v));
        if (!v)
                return -ENOMEM;
        set->names = v;
        set->names[set->n_names] = strdup(name);
        if (!set->names[set->n_names])
                return -ENOMEM;
        set->n_names++;
        return 0;
}

/* RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), already lowercase. */
static bool scheme_is_valid(const char *s) {
        if (!(*s >= 'a' && *s <= 'z'))
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || strchr("+-.", *s)))
                        return false;
        return true;
}

/*
 * curl's --proto-redir, from http and https: items read left to right, each
 * a scheme or "all" after modifiers, "+" allowing it (the default), "-"
 * denying it, "=" allowing it alone. A modifier cannot start a scheme, so
 * "-http+unix" is "-" then "http+unix".
 */
static int scheme_set_parse(const char *spec, scheme_set *ret) {
        scheme_set set = {};
        int r = scheme_set_change(&set, "http", true);
        if (r >= 0)
                r = scheme_set_change(&set, "https", true);
        _cleanup_free_ char *copy = spec ? strdup(spec) : NULL;
        if (spec && !copy)
                r = -ENOMEM;
        char *save = NULL;
        for (char *item = copy ? strtok_r(copy, ",", &save) : NULL; r >= 0 && item;
             item = strtok_r(NULL, ",", &save)) {
                char action = '+';
                item += strspn(item, " \t");
                for (; *item == '+' || *item == '-' || *item == '='; item++)
                        action = *item;
                for (size_t n = strlen(item); n > 0 && (item[n - 1] == ' ' || item[n - 1] == '\t');
                     n--)
                        item[n - 1] = '\0';
                for (char *c = item; *c; c++)
                        *c = (char)tolower((unsigned char)*c);
                bool all = strcmp(item, "all") == 0;
                if (!all && !scheme_is_valid(item)) {
                        r = -EINVAL;
                        break;
                }
                if (action == '=')
                        scheme_set_clear(&set, false);
                if (all)
                        scheme_set_clear(&set, action != '-');
                else
                        r = scheme_set_change(&set, item, action != '-');
        }
        if (r < 0) {
                scheme_set_clear(&set, false);
                return r;
        }
        *ret = set;
        return 0;
}

/* ---- origins ---- */

static void origin_done(origin *o) {
        free(o->scheme);
        free(o->host);
        *o = (origin){.port = -1};
}

/* The port a URL of scheme names by saying none: its registration's, or
 * -1 (a "+unix" authority is a path). */
static int64_t scheme_default_port(paf_registry *reg, const char *scheme) {
        paf_scheme_match m;
        paf_registry_match_scheme(reg, scheme, &m);
        int port = m.transport ? paf_scheme_get_default_port(m.transport) : 0;
        return port > 0 ? port : -1;
}

/* From the url.* keys paf_ctx_set_url() set, the port defaulting to the scheme's. */
static int origin_from_ctx(paf_registry *reg, paf_ctx *ctx, origin *ret) {
        const char *scheme, *host;
        int64_t port = -1;
        if (paf_ctx_get_string(ctx, "url.scheme", &scheme) < 0 ||
            paf_ctx_get_string(ctx, "url.host", &host) < 0)
                return -EINVAL;
        (void)paf_ctx_get_int(ctx, "url.port", &port);
        if (port < 0)
                port = scheme_default_port(reg, scheme);
        origin o = {.scheme = strdup(scheme), .host = strdup(host), .port = port};
        if (!o.scheme || !o.host) {
                origin_done(&o);
                return -ENOMEM;
        }
        *ret = o;
        return 0;
}

static int origin_from_url(paf_registry *reg, const char *url, origin *ret) {
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
        int r = paf_ctx_new(&ctx);
        if (r < 0)
                return r;
        r = paf_ctx_set_url(ctx, url, NULL);
        if (r < 0)
                return r;
        return origin_from_ctx(reg, ctx, ret);
}

/* Hosts compare as written: "Example.com" and "example.com" differ, which
 * only ever drops credentials, never sends them further. */
static bool origin_equal(const origin *a, const origin *b) {
        return a->scheme && b->scheme && strcmp(a->scheme, b->scheme) == 0 &&
               strcmp(a->host, b->host) == 0 && a->port == b->port;
}

/* The scheme of an absolute URL, lowercase. */
static char *url_scheme(const char *url) {
        char *s = strndup(url, strcspn(url, ":"));
        for (char *c = s; c && *c; c++)
                *c = (char)tolower((unsigned char)*c);
        return s;
}

/* Location, resolved against the URL it answered. */
static int resolve_reference(const char *base, const char *ref, char **ret) {
        UriUriA b, rel, abs;
        int r = -EINVAL;
        bool have_b = false, have_rel = false, have_abs = false;
        if (uriParseSingleUriA(&b, base, NULL) != URI_SUCCESS)
                goto out;
        have_b = true;
        if (uriParseSingleUriA(&rel, ref, NULL) != URI_SUCCESS)
                goto out;
        have_rel = true;
        if (uriAddBaseUriA(&abs, &rel, &b) != URI_SUCCESS)
                goto out;
        have_abs = true;
        if (abs.hostData.ip6) {
                /* uriToString writes an IPv6 literal from its parsed bytes,
                 * fully expanded ("[0000:…:0001]"): the next hop's Host and
                 * messages would not be what the server wrote. Its text as
                 * written, between the brackets, is hostText; uriparser
                 * writes an IPvFuture host as "[" its range "]", and keeps
                 * that range in hostText too, so this is what its own parser
                 * would have made of the literal as an IPvFuture. */
                free(abs.hostData.ip6);
                abs.hostData.ip6 = NULL;
                abs.hostData.ipFuture = abs.hostText;
        }
        int n = 0;
        if (uriToStringCharsRequiredA(&abs, &n) != URI_SUCCESS)
                goto out;
        char *s = malloc((size_t)n + 1);
        if (!s) {
                r = -ENOMEM;
                goto out;
        }
        if (uriToStringA(s, &abs, n + 1, NULL) != URI_SUCCESS) {
                free(s);
                goto out;
        }
        *ret = s;
        r = 0;
out:
        if (have_abs)
                uriFreeUriMembersA(&abs);
        if (have_rel)
                uriFreeUriMembersA(&rel);
        if (have_b)
                uriFreeUriMembersA(&b);
        return r;
}

/* ---- the call's life ---- */

static void call_free(client_call *cc) {
        if (!cc)
                return;
        if (cc->client) {
                if (cc->prev)
                        cc->prev->next = cc->next;
                else
                        cc->client->calls = cc->next;
                if (cc->next)
                        cc->next->prev = cc->prev;
        }
        paf_http_call_free(cc->http);
        sd_event_source_disable_unref(cc->defer);
        sd_event_source_disable_unref(cc->timer);
        paf_response_free(cc->response);
        paf_http_headers_free(cc->headers);
        paf_ctx_unref(cc->user_ctx);
        origin_done(&cc->first);
        free(cc->body);
        free(cc->next_url);
        free(cc->url);
        free(cc->method);
        free(cc);
}

static void call_schedule(client_call *cc, call_step step) {
        cc->step = step;
        int r = sd_event_source_set_enabled(cc->defer, SD_EVENT_ONESHOT);
        /* A defer source only fails to enable when the loop is gone. */
        assert(r >= 0);
        (void)r;
}

/* End the call with an error, delivered from the defer. */
static void call_fail(client_call *cc, int code, const char *format, ...) PAF_PRINTF(3, 4);
static void call_fail(client_call *cc, int code, const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        paf_error_setv(&cc->error, code, format, ap);
        va_end(ap);
        cc->http = paf_http_call_free(cc->http);
        cc->timer = sd_event_source_disable_unref(cc->timer);
        call_schedule(cc, STEP_DONE);
}

static void call_finish(client_call *cc) {
        cc->http = paf_http_call_free(cc->http);
        cc->timer = sd_event_source_disable_unref(cc->timer);
        call_schedule(cc, STEP_DONE);
}

static void on_response(paf_http_call *call, int status, const paf_http_headers *headers,
                        const paf_error *error, void *userdata);

/* The headers of a hop: the caller's, but for another origin than the
 * requested URL's without its credentials and its Host (as curl does).
 * *ret is NULL when the caller's go as they are. */
static int hop_headers(client_call *cc, paf_ctx *own, paf_http_headers **ret) {
        static const char *const origin_bound[] = {"Authorization", "Cookie", "Proxy-Authorization",
                                                   "Host"};
        *ret = NULL;
        if (cc->client->options.location_trusted)
                return 0;
        origin here = {.port = -1};
        int r = origin_from_ctx(cc->client->reg, own, &here);
        if (r < 0)
                return r;
        bool same = origin_equal(&here, &cc->first);
        origin_done(&here);
        if (same)
                return 0;
        bool any = false;
        for (size_t i = 0; i < ELEMENTSOF(origin_bound); i++)
                any = any || paf_http_headers_get(cc->headers, origin_bound[i]);
        if (!any)
                return 0;
        _paf_cleanup_(paf_http_headers_freep) paf_http_headers *h = NULL;
        r = headers_copy(cc->headers, &h);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(origin_bound); i++)
                (void)paf_http_headers_remove(h, origin_bound[i]);
        *ret = h;
        h = NULL;
        return 0;
}

/* The hop's context, top first: the URL's keys (in own) and the options,
 * then the caller's context. The registry adds its plugins' rules under both. */
static int hop_ctx(client_call *cc, paf_ctx *own, const paf_http_headers *headers, paf_ctx **ret) {
        paf_client *c = cc->client;
        _cleanup_free_ char *base = NULL, *scheme = NULL, *host = NULL, *authority = NULL;
        int r;
        const char *s;
        int64_t port = -1;
        if (paf_ctx_get_string(own, "url.scheme", &s) < 0 || !(scheme = strdup(s)) ||
            paf_ctx_get_string(own, "url.host", &s) < 0 || !(host = strdup(s)) ||
            !(base = scheme_base(scheme)))
                return paf_error_set(&cc->error, -ENOMEM, "%s: out of memory", cc->url);
        (void)paf_ctx_get_int(own, "url.port", &port);
        /* What the scheme's plugins say it is: TLS when the tls layer
         * serves its base, a host name when its transport takes one. */
        paf_scheme_match m;
        paf_registry_match_scheme(c->reg, scheme, &m);
        bool https = m.layer && strcmp(paf_scheme_get_protocol(m.layer), "tls") == 0;
        bool hostname = m.transport && (paf_scheme_get_flags(m.transport) & PAF_SCHEME_HOSTNAME);

        /* Host: the URL's authority; a socket path or a vsock address is no host. */
        if (!hostname)
                authority = strdup("localhost");
        else {
                bool v6 = strchr(host, ':') != NULL;
                if (port >= 0 && port != scheme_default_port(c->reg, scheme))
                        r = asprintf(&authority, v6 ? "[%s]:%" PRId64 : "%s:%" PRId64, host, port);
                else
                        r = asprintf(&authority, v6 ? "[%s]" : "%s", host);
                if (r < 0)
                        authority = NULL;
        }
        if (!authority)
                return paf_error_set(&cc->error, -ENOMEM, "%s: out of memory", cc->url);

        r = 0;
        if (!paf_http_headers_get(headers, "Host") &&
            !(cc->user_ctx && paf_ctx_has(cc->user_ctx, "http.host") > 0))
                r = paf_ctx_set_string(own, "http.host", authority);
        /* As curl: HTTP/2 when the server takes it by ALPN (https), HTTP/1.1
         * otherwise, unless the caller's context says which. */
        if (r >= 0 && !(cc->user_ctx && paf_ctx_has(cc->user_ctx, "http.version") > 0))
                r = paf_ctx_set_string(own, "http.version", "2");

        if (r >= 0 && c->unix_socket) {
                /* Like curl --unix-socket: whatever the URL names, connect
                 * there. A "+unix" scheme makes the unix rule fire and tcp's
                 * decline, so tcp is not a candidate. */
                _cleanup_free_ char *unix_scheme = NULL;
                if (asprintf(&unix_scheme, "%s+unix", base) < 0)
                        return paf_error_set(&cc->error, -ENOMEM, "%s: out of memory", cc->url);
                r = paf_ctx_set_string(own, "url.scheme", unix_scheme);
                if (r >= 0)
                        r = paf_ctx_set_string(own, "url.host", c->unix_socket);
                if (r >= 0)
                        r = paf_ctx_remove(own, "url.port");
                if (r >= 0)
                        r = paf_ctx_set_string(own, "unix.path", c->unix_socket);
        }

        if (r >= 0 && https) {
                /* The tls rule names the server after a host name
                 * (url.hostname); over another transport it is the URL's
                 * host (--unix-socket) or, when the URL holds no host name,
                 * "localhost". */
                if ((!hostname || c->unix_socket) &&
                    !(cc->user_ctx && paf_ctx_has(cc->user_ctx, "tls.server-name") > 0))
                        r = paf_ctx_set_string(own, "tls.server-name",
                                               !hostname ? "localhost" : host);
                if (r >= 0 && c->ca_file)
                        r = paf_ctx_set_string(own, "tls.ca-file", c->ca_file);
                if (r >= 0 && c->options.insecure)
                        r = paf_ctx_set_bool(own, "tls.insecure", true);
        }
        if (r < 0)
                return paf_error_set(&cc->error, r, "%s: %s", cc->url, strerror(-r));

        r = paf_ctx_new_layered(own, cc->user_ctx, ret);
        if (r < 0)
                return paf_error_set(&cc->error, r, "%s: %s", cc->url, strerror(-r));
        return 0;
}

/* Send the request for cc->url. On failure cc->error says why. */
static int hop_start(client_call *cc) {
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *own = NULL, *ctx = NULL;
        _paf_cleanup_(paf_http_headers_freep) paf_http_headers *stripped = NULL;
        int r = paf_ctx_new(&own);
        if (r < 0)
                return paf_error_set(&cc->error, r, "%s: out of memory", cc->url);
        r = paf_registry_parse_url(cc->client->reg, cc->url, own, &cc->error);
        if (r < 0)
                return r;
        r = hop_headers(cc, own, &stripped);
        if (r < 0)
                return paf_error_set(&cc->error, r, "%s: %s", cc->url, strerror(-r));
        const paf_http_headers *headers = stripped ? stripped : cc->headers;
        r = hop_ctx(cc, own, headers, &ctx);
        if (r < 0)
                return r;

        const char *target;
        r = paf_ctx_get_string(ctx, "url.path", &target);
        if (r < 0)
                return paf_error_set(&cc->error, r, "%s: no path", cc->url);
        r = paf_http_client_request(cc->client->http, ctx, cc->method, target, headers,
                                    (int64_t)cc->body_size, on_response, cc, &cc->http);
        if (r < 0)
                return paf_error_set(&cc->error, r, "%s: %s %s: %s", cc->url, cc->method, target,
                                     strerror(-r));
        if (cc->body_size > 0) {
                /* The body stays ours (cc->body) until the call is freed. */
                r = paf_http_call_write(cc->http, cc->body, cc->body_size, NULL, NULL);
                if (r >= 0)
                        r = paf_http_call_finish(cc->http);
                if (r < 0) {
                        cc->http = paf_http_call_free(cc->http);
                        return paf_error_set(&cc->error, r, "%s: cannot send the body: %s", cc->url,
                                             strerror(-r));
                }
        }
        cc->step = STEP_ACTIVE;
        return 0;
}

PAF_EXPORT int paf_client_url_ctx(paf_client *c, const char *url, paf_ctx **ret_ctx,
                                  char **ret_target, paf_error *error) {
        if (!c || !url || !ret_ctx || !ret_target)
                return paf_error_set(error, -EINVAL, "paf_client_url_ctx: missing argument");
        _paf_cleanup_(paf_ctx_unrefp) paf_ctx *own = NULL, *ctx = NULL;
        _paf_cleanup_(paf_http_headers_freep) paf_http_headers *none = NULL;
        /* The ctx of the first hop of a call, as hop_start() makes it. */
        client_call cc = {.client = c, .url = (char *)url};
        int r = paf_ctx_new(&own);
        if (r >= 0)
                r = paf_http_headers_new(&none);
        if (r < 0)
                return paf_error_set(error, r, "%s: out of memory", url);
        r = paf_registry_parse_url(c->reg, url, own, &cc.error);
        if (r >= 0)
                r = hop_ctx(&cc, own, none, &ctx);
        if (r < 0) {
                if (error)
                        *error = cc.error;
                return r;
        }
        const char *target;
        char *t = NULL;
        if (paf_ctx_get_string(ctx, "url.path", &target) < 0 || !(t = strdup(target)))
                return paf_error_set(error, -ENOMEM, "%s: no path", url);
        *ret_ctx = ctx;
        ctx = NULL;
        *ret_target = t;
        return 0;
}

static void on_redirect_body(paf_http_call *call _unused_, const void *data _unused_, size_t len,
                             int error, void *userdata) {
        client_call *cc = userdata;
        if (error < 0) {
                call_fail(cc, error, "%s: reading the redirect: %s", cc->url, strerror(-error));
                return;
        }
        if (len > 0)
                return;
        /* Read to its end, the connection goes back to the pool for the next hop. */
        cc->http = paf_http_call_free(cc->http);
        free(cc->url);
        cc->url = cc->next_url;
        cc->next_url = NULL;
        call_schedule(cc, STEP_NEXT_HOP);
}

static void on_final_body(paf_http_call *call _unused_, const void *data, size_t len, int error,
                          void *userdata) {
        client_call *cc = userdata;
        paf_response *resp = cc->response;
        if (error < 0) {
                call_fail(cc, error, "%s: reading the body: %s", cc->url, strerror(-error));
                return;
        }
        if (len == 0) {
                call_finish(cc);
                return;
        }
        if (cc->on_body) {
                int r = cc->on_body(data, len, cc->userdata);
                if (r < 0)
                        call_fail(cc, r, "%s: body handler: %s", cc->url, strerror(-r));
                return;
        }
        if (resp->body_size + len + 1 > cc->body_alloc) {
                size_t want = cc->body_alloc ? cc->body_alloc : 4096;
                while (want < resp->body_size + len + 1)
                        want *= 2;
                void *b = realloc(resp->body, want);
                if (!b) {
                        call_fail(cc, -ENOMEM, "%s: body: out of memory", cc->url);
                        return;
                }
                resp->body = b;
                cc->body_alloc = want;
        }
        memcpy((uint8_t *)resp->body + resp->body_size, data, len);
        resp->body_size += len;
        /* NUL-terminated for callers printing text; body_size excludes it. */
        ((uint8_t *)resp->body)[resp->body_size] = 0;
}

static bool is_redirect(int status) {
        return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Follow a redirect: returns 1 when following, 0 to return the response, < 0 failed. */
static int maybe_redirect(client_call *cc, int status, const paf_http_headers *headers) {
        const char *location = paf_http_headers_get(headers, "Location");
        if (!is_redirect(status) || !location || cc->client->options.max_redirects == 0)
                return 0;
        if (cc->n_redirects >= cc->client->options.max_redirects) {
                call_fail(cc, -ELOOP, "%s: too many redirects (limit %u)", cc->url,
                          cc->client->options.max_redirects);
                return -ELOOP;
        }
        free(cc->next_url);
        cc->next_url = NULL;
        int r = resolve_reference(cc->url, location, &cc->next_url);
        if (r < 0) {
                call_fail(cc, r, "%s: %d redirect to a bad Location \"%s\"", cc->url, status,
                          location);
                return r;
        }
        /* A server must not send the call where the caller would not: to a
         * local socket (http+unix://%2Frun%2Fdocker.sock/…), a VM, or any
         * scheme a plugin serves. Back to the requested URL's origin
         * reaches nothing new, whatever its scheme. */
        _cleanup_free_ char *scheme = url_scheme(cc->next_url);
        if (!scheme) {
                call_fail(cc, -ENOMEM, "%s: out of memory", cc->url);
                return -ENOMEM;
        }
        if (!scheme_set_allows(&cc->client->redirect, scheme)) {
                origin to = {.port = -1};
                bool home = origin_from_url(cc->client->reg, cc->next_url, &to) >= 0 &&
                            origin_equal(&to, &cc->first);
                origin_done(&to);
                if (!home) {
                        call_fail(cc, -EPROTONOSUPPORT,
                                  "%s: %d redirect to %s refused: scheme \"%s\" is not allowed "
                                  "for redirects",
                                  cc->url, status, cc->next_url, scheme);
                        return -EPROTONOSUPPORT;
                }
        }
        cc->n_redirects++;
        if (cc->on_redirect)
                cc->on_redirect(status, headers, cc->url, cc->next_url, cc->userdata);
        /* 301/302/303: as browsers and curl do, the next request is a GET
         * without the body; 307/308 keep the method and the body. */
        if (status <= 303 && strcmp(cc->method, "HEAD") != 0 && strcmp(cc->method, "GET") != 0) {
                char *get = strdup("GET");
                if (!get) {
                        call_fail(cc, -ENOMEM, "%s: out of memory", cc->url);
                        return -ENOMEM;
                }
                free(cc->method);
                cc->method = get;
                free(cc->body);
                cc->body = NULL;
                cc->body_size = 0;
                (void)paf_http_headers_remove(cc->headers, "Content-Type");
        }
        r = paf_http_call_read_body(cc->http, on_redirect_body, cc);
        if (r < 0) {
                call_fail(cc, r, "%s: reading the redirect: %s", cc->url, strerror(-r));
                return r;
        }
        return 1;
}

static void on_response(paf_http_call *call, int status, const paf_http_headers *headers,
                        const paf_error *error, void *userdata) {
        client_call *cc = userdata;
        if (error) {
                call_fail(cc, error->code < 0 ? error->code : -EIO, "%s: %s", cc->url,
                          error->message);
                return;
        }
        if (cc->on_call)
                cc->on_call(call, cc->userdata);
        if (maybe_redirect(cc, status, headers) != 0)
                return;

        paf_response *resp = calloc(1, sizeof(*resp));
        if (!resp) {
                call_fail(cc, -ENOMEM, "%s: out of memory", cc->url);
                return;
        }
        cc->response = resp;
        resp->status = status;
        const char *endpoint = paf_http_call_get_endpoint(call);
        /* What the connect did, not a resolution made beside it: that one
         * would list the transport used as one never tried. */
        const char *report = paf_http_call_get_report(call);
        if (headers_copy(headers, &resp->headers) < 0 || !(resp->url = strdup(cc->url)) ||
            !(resp->endpoint = strdup(endpoint ? endpoint : "")) ||
            (report && !(resp->report = strdup(report)))) {
                call_fail(cc, -ENOMEM, "%s: out of memory", cc->url);
                return;
        }
        if (cc->on_head)
                cc->on_head(status, resp->headers, cc->userdata);
        int r = paf_http_call_read_body(call, on_final_body, cc);
        if (r < 0)
                call_fail(cc, r, "%s: reading the body: %s", cc->url, strerror(-r));
}

static int on_timer(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata) {
        client_call *cc = userdata;
        char t[32];
        format_seconds(cc->client->options.timeout_usec, t, sizeof(t));
        paf_response_free(cc->response);
        cc->response = NULL;
        call_fail(cc, -ETIMEDOUT, "%s: timed out after %s", cc->url, t);
        return 0;
}

static int on_defer(sd_event_source *s _unused_, void *userdata) {
        client_call *cc = userdata;
        if (cc->step == STEP_NEXT_HOP) {
                if (hop_start(cc) < 0) {
                        cc->timer = sd_event_source_disable_unref(cc->timer);
                        call_schedule(cc, STEP_DONE);
                }
                return 0;
        }
        if (cc->step != STEP_DONE)
                return 0;

        /* The user may free the client from the handler: this call is out
         * of its list first. */
        if (cc->prev)
                cc->prev->next = cc->next;
        else
                cc->client->calls = cc->next;
        if (cc->next)
                cc->next->prev = cc->prev;
        cc->client = NULL;

        if (cc->error.code < 0)
                cc->handler(NULL, &cc->error, cc->userdata);
        else {
                paf_response *resp = cc->response;
                cc->response = NULL;
                cc->handler(resp, NULL, cc->userdata);
        }
        call_free(cc);
        return 0;
}

/* ---- the public API ---- */

PAF_EXPORT int paf_client_new(paf_registry *reg, sd_event *event, paf_client **ret) {
        if (!reg || !event || !ret)
                return -EINVAL;
        paf_client *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        int r = paf_http_client_new(reg, event, &c->http);
        if (r < 0) {
                free(c);
                return r;
        }
        r = scheme_set_parse(NULL, &c->redirect);
        if (r < 0) {
                paf_http_client_free(c->http);
                free(c);
                return r;
        }
        c->reg = paf_registry_ref(reg);
        c->event = sd_event_ref(event);
        *ret = c;
        return 0;
}

PAF_EXPORT paf_client *paf_client_free(paf_client *c) {
        if (!c)
                return NULL;
        /* Calls in flight end quietly: their handlers are not called. */
        while (c->calls) {
                client_call *cc = c->calls;
                c->calls = cc->next;
                cc->client = NULL;
                call_free(cc);
        }
        paf_http_client_free(c->http);
        paf_registry_unref(c->reg);
        sd_event_unref(c->event);
        free(c->ca_file);
        free(c->unix_socket);
        free(c->redirect_schemes);
        scheme_set_clear(&c->redirect, false);
        free(c);
        return NULL;
}

PAF_EXPORT int paf_client_set_options(paf_client *c, const paf_client_options *options) {
        if (!c || !options)
                return -EINVAL;
        _cleanup_free_ char *ca = NULL, *sock = NULL, *schemes = NULL;
        if ((options->ca_file && !(ca = strdup(options->ca_file))) ||
            (options->unix_socket && !(sock = strdup(options->unix_socket))) ||
            (options->redirect_schemes && !(schemes = strdup(options->redirect_schemes))))
                return -ENOMEM;
        scheme_set redirect;
        int r = scheme_set_parse(options->redirect_schemes, &redirect);
        if (r < 0)
                return r;

        /* The HTTP client's defaults, with our connect timeout. */
        paf_http_client_timeouts t = {
                .connect_usec = 30 * USEC_PER_SEC,
                .response_usec = 60 * USEC_PER_SEC,
                .idle_usec = 30 * USEC_PER_SEC,
        };
        if (options->connect_timeout_usec > 0)
                t.connect_usec = options->connect_timeout_usec;
        r = paf_http_client_set_timeouts(c->http, &t);
        if (r < 0) {
                scheme_set_clear(&redirect, false);
                return r;
        }

        free(c->ca_file);
        free(c->unix_socket);
        free(c->redirect_schemes);
        scheme_set_clear(&c->redirect, false);
        c->ca_file = ca;
        c->unix_socket = sock;
        c->redirect_schemes = schemes;
        c->redirect = redirect;
        ca = sock = schemes = NULL;
        c->options = *options;
        c->options.ca_file = c->ca_file;
        c->options.unix_socket = c->unix_socket;
        c->options.redirect_schemes = c->redirect_schemes;
        return 0;
}

PAF_EXPORT uint64_t paf_client_get_n_connections(paf_client *c) {
        return c ? paf_http_client_get_n_connections(c->http) : 0;
}

PAF_EXPORT paf_response *paf_response_free(paf_response *r) {
        if (!r)
                return NULL;
        paf_http_headers_free(r->headers);
        free(r->body);
        free(r->url);
        free(r->endpoint);
        free(r->report);
        free(r);
        return NULL;
}

/*
 * Argument errors (-EINVAL) and running out of memory fail this call; every
 * other failure — a bad URL included — reaches the handler with a message
 * naming the URL, from the loop.
 */
PAF_EXPORT int paf_client_send(paf_client *c, const paf_client_request *request,
                               paf_client_handler_t handler) {
        return paf_client_send_hooked(c, request, NULL, handler);
}

PAF_EXPORT int paf_client_send_hooked(paf_client *c, const paf_client_request *request,
                                      const paf_client_hooks *hooks, paf_client_handler_t handler) {
        if (!c || !request || !request->url || !request->method || !*request->method || !handler ||
            (request->body_size > 0 && !request->body))
                return -EINVAL;
        /* A caller's older, shorter struct: the members it has, NULL the others. */
        paf_client_hooks h = {0};
        if (hooks) {
                if (hooks->struct_size < offsetof(paf_client_hooks, on_redirect))
                        return -EINVAL;
                memcpy(&h, hooks, hooks->struct_size < sizeof(h) ? hooks->struct_size : sizeof(h));
        }

        client_call *cc = calloc(1, sizeof(*cc));
        if (!cc)
                return -ENOMEM;
        cc->method = strdup(request->method);
        cc->url = strdup(request->url);
        cc->user_ctx = paf_ctx_ref(request->ctx);
        cc->on_head = request->on_head;
        cc->on_redirect = h.on_redirect;
        cc->on_call = h.on_call;
        cc->on_body = request->on_body;
        cc->handler = handler;
        cc->userdata = request->userdata;
        int r = -ENOMEM;
        if (!cc->method || !cc->url)
                goto fail;
        r = headers_copy(request->headers, &cc->headers);
        if (r < 0)
                goto fail;
        /* A bad URL is the first hop's to report, from the loop. */
        cc->first.port = -1;
        r = origin_from_url(c->reg, cc->url, &cc->first);
        if (r == -ENOMEM)
                goto fail;
        if (request->body_size > 0) {
                r = -ENOMEM;
                cc->body = malloc(request->body_size);
                if (!cc->body)
                        goto fail;
                memcpy(cc->body, request->body, request->body_size);
                cc->body_size = request->body_size;
        }
        r = sd_event_add_defer(c->event, &cc->defer, on_defer, cc);
        if (r < 0)
                goto fail;
        (void)sd_event_source_set_enabled(cc->defer, SD_EVENT_OFF);
        (void)sd_event_source_set_description(cc->defer, "paf-client-call");
        if (c->options.timeout_usec > 0) {
                r = sd_event_add_time_relative(c->event, &cc->timer, CLOCK_MONOTONIC,
                                               c->options.timeout_usec, 0, on_timer, cc);
                if (r < 0)
                        goto fail;
                (void)sd_event_source_set_description(cc->timer, "paf-client-timeout");
        }

        cc->client = c;
        cc->next = c->calls;
        if (c->calls)
                c->calls->prev = cc;
        c->calls = cc;

        if (hop_start(cc) < 0) {
                cc->timer = sd_event_source_disable_unref(cc->timer);
                call_schedule(cc, STEP_DONE);
        }
        return 0;

fail:
        call_free(cc);
        return r;
}

static int send_simple(paf_client *c, const char *method, const char *url,
                       const paf_http_headers *headers, const void *body, size_t size,
                       paf_client_handler_t handler, void *userdata) {
        paf_client_request req = {
                .method = method,
                .url = url,
                .headers = headers,
                .body = body,
                .body_size = body ? size : 0,
                .userdata = userdata,
        };
        return paf_client_send(c, &req, handler);
}

PAF_EXPORT int paf_client_get(paf_client *c, const char *url, const paf_http_headers *headers,
                              paf_client_handler_t handler, void *userdata) {
        return send_simple(c, "GET", url, headers, NULL, 0, handler, userdata);
}

PAF_EXPORT int paf_client_head(paf_client *c, const char *url, const paf_http_headers *headers,
                               paf_client_handler_t handler, void *userdata) {
        return send_simple(c, "HEAD", url, headers, NULL, 0, handler, userdata);
}

PAF_EXPORT int paf_client_delete(paf_client *c, const char *url, const paf_http_headers *headers,
                                 paf_client_handler_t handler, void *userdata) {
        return send_simple(c, "DELETE", url, headers, NULL, 0, handler, userdata);
}

PAF_EXPORT int paf_client_post(paf_client *c, const char *url, const paf_http_headers *headers,
                               const void *body, size_t size, paf_client_handler_t handler,
                               void *userdata) {
        return send_simple(c, "POST", url, headers, body, size, handler, userdata);
}

PAF_EXPORT int paf_client_put(paf_client *c, const char *url, const paf_http_headers *headers,
                              const void *body, size_t size, paf_client_handler_t handler,
                              void *userdata) {
        return send_simple(c, "PUT", url, headers, body, size, handler, userdata);
}

PAF_EXPORT int paf_client_patch(paf_client *c, const char *url, const paf_http_headers *headers,
                                const void *body, size_t size, paf_client_handler_t handler,
                                void *userdata) {
        return send_simple(c, "PATCH", url, headers, body, size, handler, userdata);
}
