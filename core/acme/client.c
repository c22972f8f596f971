/* core/acme/client.c — the ACME client (RFC 8555): account, orders, challenges, finalize,
 * download, revocation, key rollover, and the renewal time (ARI, RFC 9773). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <gnutls/x509.h>

#include "config.h"
#include "core/acme/acme-internal.h"
#include "core/acme/jose.h"
#include "core/acme/store.h"
#include "core/paf-internal.h"
#include <paf/client.h>

#define ACME_ERROR_PREFIX "urn:ietf:params:acme:error:"
#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
/* badNonce is retried at least this many times, each with the error's nonce. */
#define BAD_NONCE_TRIES 16
/* 429 and 503 with a Retry-After are waited out this many times per request. */
#define BUSY_TRIES 5
/* Polling without Retry-After: exponential backoff between these. */
#define POLL_FIRST_USEC (100 * USEC_PER_MSEC)
#define POLL_MAX_USEC (10 * USEC_PER_SEC)

struct paf_acme_client {
        paf_registry *reg;
        char *directory_url;
        char *ca_file;
        char *state_dir;
        char **contact; /* "mailto:…" */
        bool agree_tos;
        char *eab_kid;
        char *eab_hmac_key;
        paf_acme_key_type account_key_type;
        paf_acme_key_type cert_key_type;
        bool keep_key;
        char *preferred_chain;
        paf_acme_challenge_type challenge;
        paf_acme_http01 *http01;
        paf_acme_tlsalpn *tlsalpn;
        uint64_t request_timeout_usec;
        uint64_t timeout_usec;
        paf_acme_store *store;
        char *account_prefix; /* "_accounts/<directory host>" */
        atomic_bool cancelled;  /* paf_acme_client_cancel(), from any thread */
};

/* How often a waiting operation looks at the cancel flag. */
#define CANCEL_CHECK_USEC (100 * USEC_PER_MSEC)

void paf_acme_client_cancel(paf_acme_client *c) {
        if (c)
                atomic_store(&c->cancelled, true);
}

/* ---- small helpers ---- */

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;
        clock_gettime(clock, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

void paf_acme_strv_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
}

static int strdup_or_null(const char *s, char **ret) {
        *ret = NULL;
        if (!s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static const char *const challenge_names[_PAF_ACME_CHALLENGE_TYPE_MAX] = {
        [PAF_ACME_CHALLENGE_HTTP01] = "http-01",
        [PAF_ACME_CHALLENGE_TLSALPN01] = "tls-alpn-01",
};

const char *paf_acme_challenge_type_to_string(paf_acme_challenge_type type) {
        return (unsigned)type < _PAF_ACME_CHALLENGE_TYPE_MAX ? challenge_names[type] : NULL;
}

int paf_acme_challenge_type_from_string(const char *s, paf_acme_challenge_type *ret,
                                        paf_error *error) {
        for (unsigned i = 0; s && i < _PAF_ACME_CHALLENGE_TYPE_MAX; i++)
                if (strcmp(s, challenge_names[i]) == 0) {
                        *ret = (paf_acme_challenge_type)i;
                        return 0;
                }
        return paf_error_set(error, -EINVAL,
                             "\"%s\": not a challenge type (http-01 or tls-alpn-01)", s ? s : "");
}

uint64_t paf_acme_random_below(uint64_t n) {
        uint64_t x = 0;
        if (n == 0)
                return 0;
        if (getrandom(&x, sizeof(x), 0) != sizeof(x))
                x = now_usec(CLOCK_MONOTONIC) * UINT64_C(6364136223846793005);
        return x % n;
}

/* Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. */
int paf_acme_parse_retry_after(const char *v, uint64_t now_realtime_usec, uint64_t *ret_usec) {
        if (!v)
                return -ENOENT;
        while (*v == ' ' || *v == '\t')
                v++;
        if (*v >= '0' && *v <= '9') {
                char *end;
                errno = 0;
                unsigned long long s = strtoull(v, &end, 10);
                while (*end == ' ' || *end == '\t')
                        end++;
                if (errno || *end)
                        return -EINVAL;
                if (s > 7 * 24 * 3600ULL)
                        s = 7 * 24 * 3600ULL;
                *ret_usec = s * USEC_PER_SEC;
                return 0;
        }
        struct tm tm = {0};
        const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (!end || *end)
                return -EINVAL;
        time_t t = timegm(&tm);
        if (t == (time_t)-1)
                return -EINVAL;
        uint64_t at = (uint64_t)t * USEC_PER_SEC;
        *ret_usec = at > now_realtime_usec ? at - now_realtime_usec : 0;
        return 0;
}

/* ---- the client ---- */

paf_acme_client *paf_acme_client_free(paf_acme_client *c) {
        if (!c)
                return NULL;
        free(c->directory_url);
        free(c->ca_file);
        free(c->state_dir);
        paf_acme_strv_free(c->contact);
        free(c->eab_kid);
        free(c->eab_hmac_key);
        free(c->preferred_chain);
        paf_acme_http01_unref(c->http01);
        paf_acme_tlsalpn_unref(c->tlsalpn);
        paf_acme_store_unref(c->store);
        free(c->account_prefix);
        free(c);
        return NULL;
}

/* The store name of the directory's host ("acme-v02.api.letsencrypt.org",
 * "127.0.0.1_14000"): accounts are per CA. */
static int directory_store_name(const char *url, char **ret, paf_error *error) {
        const char *p = strstr(url, "://");
        if (!p || strncasecmp(url, "https", (size_t)(p - url)) != 0 ||
            (size_t)(p - url) != 5) {
                if (!p || strncasecmp(url, "http://", 7) != 0)
                        return paf_error_set(error, -EINVAL,
                                             "ACME directory \"%s\": not an https:// URL", url);
        }
        p += 3;
        size_t n = strcspn(p, "/?#");
        char host[300];
        if (n == 0 || n >= sizeof(host))
                return paf_error_set(error, -EINVAL, "ACME directory \"%s\": no host", url);
        memcpy(host, p, n);
        host[n] = 0;
        char *port = NULL;
        char *h = host;
        if (host[0] == '[') {
                char *close = strchr(host, ']');
                if (!close)
                        return paf_error_set(error, -EINVAL,
                                             "ACME directory \"%s\": bad IPv6 host", url);
                *close = 0;
                h = host + 1;
                if (close[1] == ':')
                        port = close + 2;
        } else {
                char *colon = strchr(host, ':');
                if (colon) {
                        *colon = 0;
                        port = colon + 1;
                }
        }
        _cleanup_free_ char *name = NULL;
        int r = paf_acme_store_name(h, &name, error);
        if (r < 0)
                return paf_error_prefix(error, "ACME directory \"%s\"", url);
        if (port && *port) {
                if (strspn(port, "0123456789") != strlen(port))
                        return paf_error_set(error, -EINVAL,
                                             "ACME directory \"%s\": bad port", url);
                if (asprintf(ret, "%s_%s", name, port) < 0)
                        return -ENOMEM;
                return 0;
        }
        *ret = name;
        name = NULL;
        return 0;
}

int paf_acme_client_new(paf_registry *reg, const paf_acme_options *o, paf_acme_client **ret,
                        paf_error *error) {
        if (!reg || !o || !ret)
                return paf_error_set(error, -EINVAL, "ACME client: missing argument");
        if (!o->state_dir || !*o->state_dir)
                return paf_error_set(error, -EINVAL, "ACME client: no state directory");
        if ((unsigned)o->challenge >= _PAF_ACME_CHALLENGE_TYPE_MAX ||
            (unsigned)o->account_key_type >= _PAF_ACME_KEY_TYPE_MAX ||
            (unsigned)o->cert_key_type >= _PAF_ACME_KEY_TYPE_MAX)
                return paf_error_set(error, -EINVAL, "ACME client: bad key or challenge type");
        if (!o->eab_kid != !o->eab_hmac_key)
                return paf_error_set(error, -EINVAL,
                                     "ACME client: external account binding needs both the key "
                                     "identifier and the HMAC key");
        paf_acme_client *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->reg = reg;
        int r = 0;
        r = r ?: strdup_or_null(o->directory_url ? o->directory_url : PAF_ACME_LETSENCRYPT_URL,
                                &c->directory_url);
        r = r ?: strdup_or_null(o->ca_file, &c->ca_file);
        r = r ?: strdup_or_null(o->state_dir, &c->state_dir);
        r = r ?: strdup_or_null(o->eab_kid, &c->eab_kid);
        r = r ?: strdup_or_null(o->eab_hmac_key, &c->eab_hmac_key);
        r = r ?: strdup_or_null(o->preferred_chain, &c->preferred_chain);
        if (r < 0) {
                paf_acme_client_free(c);
                return -ENOMEM;
        }
        size_t n = 0;
        while (o->contact && o->contact[n])
                n++;
        c->contact = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; c->contact && i < n; i++) {
                const char *a = o->contact[i];
                bool has_scheme = strchr(a, ':') != NULL;
                if (!has_scheme && !strchr(a, '@')) {
                        r = paf_error_set(error, -EINVAL,
                                          "ACME contact \"%s\": not an e-mail address or URL", a);
                        paf_acme_client_free(c);
                        return r;
                }
                if (asprintf(&c->contact[i], "%s%s", has_scheme ? "" : "mailto:", a) < 0) {
                        c->contact[i] = NULL;
                        paf_acme_client_free(c);
                        return -ENOMEM;
                }
        }
        if (!c->contact) {
                paf_acme_client_free(c);
                return -ENOMEM;
        }
        c->agree_tos = o->agree_tos;
        c->account_key_type = o->account_key_type;
        c->cert_key_type = o->cert_key_type;
        c->keep_key = o->keep_key;
        c->challenge = o->challenge;
        c->http01 = o->http01 ? paf_acme_http01_ref(o->http01) : NULL;
        c->tlsalpn = o->tlsalpn ? paf_acme_tlsalpn_ref(o->tlsalpn) : NULL;
        c->request_timeout_usec = o->request_timeout_usec ?: 30 * USEC_PER_SEC;
        c->timeout_usec = o->timeout_usec ?: 600 * USEC_PER_SEC;

        _cleanup_free_ char *host = NULL;
        r = directory_store_name(c->directory_url, &host, error);
        if (r >= 0 && asprintf(&c->account_prefix, "_accounts/%s", host) < 0) {
                c->account_prefix = NULL;
                r = -ENOMEM;
        }
        if (r >= 0)
                r = paf_acme_store_dir_new(c->state_dir, &c->store, error);
        if (r < 0) {
                paf_acme_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* ---- one operation: its loop, connections, nonce and account ---- */

typedef struct acme_op {
        paf_acme_client *c;
        sd_event *event;
        paf_client *http;
        uint64_t deadline; /* CLOCK_MONOTONIC */
        json_t *dir;
        char *nonce;
        paf_acme_key *account_key;
        char *kid;
        /* A Retry-After on a challenge or finalize answer: the next poll
         * waits until then (CLOCK_MONOTONIC; 0: no wait). */
        uint64_t poll_not_before;
        /* What this operation published, removed when it ends. */
        char **published;
        size_t n_published;
} acme_op;

typedef struct acme_resp {
        int status;
        paf_response *raw;
        json_t *json; /* the body, when it is JSON */
        const char *url;
} acme_resp;

static void resp_clear(acme_resp *r) {
        paf_response_free(r->raw);
        json_decref(r->json);
        *r = (acme_resp){0};
}

static const char *resp_header(const acme_resp *r, const char *name) {
        return r->raw && r->raw->headers ? paf_http_headers_get(r->raw->headers, name) : NULL;
}

static void unpublish(acme_op *op, size_t i) {
        if (op->c->challenge == PAF_ACME_CHALLENGE_HTTP01)
                (void)paf_acme_http01_remove(op->c->http01, op->published[i]);
        else
                (void)paf_acme_tlsalpn_remove(op->c->tlsalpn, op->published[i]);
        free(op->published[i]);
        op->published[i] = op->published[--op->n_published];
}

static void op_done(acme_op *op) {
        while (op->n_published > 0)
                unpublish(op, 0);
        free(op->published);
        op->http = paf_client_free(op->http);
        /* What the client and its transports left for the loop (deferred
         * frees of a failed handshake, say) runs before the loop goes: a
         * pending floating source holds the loop, and the loop holds it, so
         * dropping the loop with one pending would leak both. */
        for (unsigned i = 0; op->event && i < 64 && sd_event_run(op->event, 0) > 0; i++)
                ;
        op->event = sd_event_unref(op->event);
        json_decref(op->dir);
        free(op->nonce);
        paf_acme_key_free(op->account_key);
        free(op->kid);
        *op = (acme_op){0};
}

static int op_init(acme_op *op, paf_acme_client *c, paf_error *error) {
        *op = (acme_op){.c = c};
        op->deadline = now_usec(CLOCK_MONOTONIC) + c->timeout_usec;
        int r = sd_event_new(&op->event);
        if (r < 0)
                return paf_error_set(error, r, "ACME: cannot create an event loop: %s",
                                     strerror(-r));
        r = paf_client_new(c->reg, op->event, &op->http);
        if (r >= 0) {
                paf_client_options copts = {
                        .timeout_usec = c->request_timeout_usec,
                        .ca_file = c->ca_file,
                };
                r = paf_client_set_options(op->http, &copts);
        }
        if (r < 0) {
                op_done(op);
                return paf_error_set(error, r, "ACME: cannot set up the HTTP client: %s",
                                     strerror(-r));
        }
        return 0;
}

static uint64_t op_remaining(acme_op *op) {
        if (atomic_load(&op->c->cancelled))
                return 0;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        return op->deadline > now ? op->deadline - now : 0;
}

typedef struct wait_state {
        bool done;
        paf_response *response;
        paf_error error;
} wait_state;

static void on_response(paf_response *response, const paf_error *error, void *userdata) {
        wait_state *w = userdata;
        w->done = true;
        w->response = response;
        if (error)
                w->error = *error;
}

static int on_sleep_done(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        *(bool *)userdata = true;
        return 0;
}

/* Wait usec on the operation's loop; -ETIME if that would pass its deadline. */
static int op_sleep(acme_op *op, uint64_t usec, const char *why, paf_error *error) {
        if (usec > op_remaining(op))
                return paf_error_set(error, -ETIME,
                                     "%s: the server asks to wait %" PRIu64
                                     " s, beyond the operation's time limit",
                                     why, usec / USEC_PER_SEC);
        bool done = false;
        sd_event_source *s = NULL;
        int r = sd_event_add_time_relative(op->event, &s, CLOCK_MONOTONIC, usec, 1000,
                                           on_sleep_done, &done);
        if (r < 0)
                return paf_error_set(error, r, "ACME: cannot set a timer: %s", strerror(-r));
        while (!done && r >= 0 && !atomic_load(&op->c->cancelled))
                r = sd_event_run(op->event, CANCEL_CHECK_USEC);
        sd_event_source_unref(s);
        if (!done && r >= 0)
                return paf_error_set(error, -ECANCELED, "%s: cancelled", why);
        return r < 0 ? paf_error_set(error, r, "ACME: event loop: %s", strerror(-r)) : 0;
}

/* One HTTP exchange; the Replay-Nonce of any answer is kept for the next JWS. */
static int op_http(acme_op *op, const char *method, const char *url, const char *body,
                   const char *content_type, const char *accept, acme_resp *ret,
                   paf_error *error) {
        _paf_cleanup_(paf_http_headers_freep) paf_http_headers *h = NULL;
        int r = paf_http_headers_new(&h);
        if (r >= 0)
                r = paf_http_headers_add(h, "User-Agent", "paf/" PAF_VERSION " acme");
        if (r >= 0)
                r = paf_http_headers_add(h, "Accept", accept ? accept : "application/json");
        if (r >= 0 && content_type)
                r = paf_http_headers_add(h, "Content-Type", content_type);
        if (r < 0)
                return paf_error_set(error, r, "%s: %s", url, strerror(-r));
        if (atomic_load(&op->c->cancelled) || !op->http)
                return paf_error_set(error, -ECANCELED, "%s: cancelled", url);
        if (op_remaining(op) == 0)
                return paf_error_set(error, -ETIME, "%s: the operation's time limit passed", url);
        wait_state w = {0};
        paf_client_request req = {
                .method = method,
                .url = url,
                .headers = h,
                .body = body,
                .body_size = body ? strlen(body) : 0,
                .userdata = &w,
        };
        r = paf_client_send(op->http, &req, on_response);
        if (r < 0)
                return paf_error_set(error, r, "%s: %s", url, strerror(-r));
        while (!w.done && r >= 0 && !atomic_load(&op->c->cancelled))
                r = sd_event_run(op->event, CANCEL_CHECK_USEC);
        if (!w.done && r >= 0) {
                /* The request goes with the client (its handler is not called). */
                op->http = paf_client_free(op->http);
                return paf_error_set(error, -ECANCELED, "%s: cancelled", url);
        }
        if (r < 0) {
                paf_response_free(w.response);
                return paf_error_set(error, r, "%s: event loop: %s", url, strerror(-r));
        }
        if (!w.response) {
                if (error)
                        *error = w.error;
                return w.error.code < 0 ? w.error.code : -EIO;
        }
        *ret = (acme_resp){.status = w.response->status, .raw = w.response, .url = url};
        const char *nonce = resp_header(ret, "Replay-Nonce");
        if (nonce && *nonce) {
                free(op->nonce);
                op->nonce = strdup(nonce);
        }
        const char *ct = resp_header(ret, "Content-Type");
        if (ct && w.response->body && w.response->body_size > 0 &&
            (strncasecmp(ct, "application/json", 16) == 0 ||
             strncasecmp(ct, "application/problem+json", 24) == 0))
                ret->json = json_loadb(w.response->body, w.response->body_size, 0, NULL);
        return 0;
}

static const char *problem_type(const acme_resp *r) {
        const char *t = r->json ? json_string_value(json_object_get(r->json, "type")) : NULL;
        return t ? t : "";
}

static bool problem_is(const acme_resp *r, const char *short_type) {
        const char *t = problem_type(r);
        return strncmp(t, ACME_ERROR_PREFIX, strlen(ACME_ERROR_PREFIX)) == 0 &&
               strcmp(t + strlen(ACME_ERROR_PREFIX), short_type) == 0;
}

static int problem_code(const char *type) {
        static const struct {
                const char *type;
                int code;
        } codes[] = {
                {"unauthorized", -EACCES},       {"connection", -ECONNREFUSED},
                {"dns", -EHOSTUNREACH},          {"rateLimited", -EBUSY},
                {"externalAccountRequired", -EACCES}, {"userActionRequired", -EACCES},
                {"accountDoesNotExist", -ENOENT}, {"rejectedIdentifier", -EINVAL},
                {"malformed", -EINVAL},          {"badCSR", -EINVAL},
                {"alreadyRevoked", -EALREADY},   {"serverInternal", -EIO},
        };
        if (strncmp(type, ACME_ERROR_PREFIX, strlen(ACME_ERROR_PREFIX)) == 0)
                type += strlen(ACME_ERROR_PREFIX);
        for (size_t i = 0; i < ELEMENTSOF(codes); i++)
                if (strcmp(type, codes[i].type) == 0)
                        return codes[i].code;
        return -EPROTO;
}

/* A problem document (RFC 7807, RFC 8555 §6.7) as one line: type, detail,
 * and every subproblem with its identifier. */
static void format_problem(const json_t *p, char *buf, size_t size) {
        const char *type = json_string_value(json_object_get(p, "type"));
        const char *detail = json_string_value(json_object_get(p, "detail"));
        size_t n = 0;
        if (type && strncmp(type, ACME_ERROR_PREFIX, strlen(ACME_ERROR_PREFIX)) == 0)
                type += strlen(ACME_ERROR_PREFIX);
        n += (size_t)snprintf(buf + n, size - n, "%s", type ? type : "problem");
        if (n < size && detail)
                n += (size_t)snprintf(buf + n, size - n, ": %s", detail);
        json_t *subs = json_object_get(p, "subproblems");
        size_t i;
        json_t *sp;
        json_array_foreach(subs, i, sp) {
                if (n >= size)
                        break;
                json_t *id = json_object_get(sp, "identifier");
                const char *v = json_string_value(json_object_get(id, "value"));
                const char *st = json_string_value(json_object_get(sp, "type"));
                const char *sd = json_string_value(json_object_get(sp, "detail"));
                if (st && strncmp(st, ACME_ERROR_PREFIX, strlen(ACME_ERROR_PREFIX)) == 0)
                        st += strlen(ACME_ERROR_PREFIX);
                n += (size_t)snprintf(buf + n, size - n, "; %s: %s%s%s", v ? v : "?",
                                      st ? st : "problem", sd ? ": " : "", sd ? sd : "");
        }
}

/* An error answer: its problem document when there is one. */
static int resp_error(const acme_resp *r, const char *what, paf_error *error) {
        if (r->json && json_object_get(r->json, "type")) {
                char buf[400];
                format_problem(r->json, buf, sizeof(buf));
                return paf_error_set(error, problem_code(problem_type(r)),
                                     "%s: ACME server answered %d: %s", what, r->status, buf);
        }
        return paf_error_set(error, r->status >= 500 ? -EIO : -EPROTO,
                             "%s: ACME server answered %d%s", what, r->status,
                             r->status == 200 ? " with no JSON" : "");
}

static bool status_is_busy(int status) {
        return status == 429 || status == 503;
}

/* A GET (the directory, renewalInfo), waiting out 429/503 with Retry-After. */
static int op_get(acme_op *op, const char *url, acme_resp *ret, paf_error *error) {
        for (unsigned tries = 0;; tries++) {
                int r = op_http(op, "GET", url, NULL, NULL, NULL, ret, error);
                if (r < 0)
                        return r;
                uint64_t wait;
                if (!status_is_busy(ret->status) || tries >= BUSY_TRIES ||
                    paf_acme_parse_retry_after(resp_header(ret, "Retry-After"),
                                               now_usec(CLOCK_REALTIME), &wait) < 0)
                        return 0;
                paf_log(PAF_LOG_INFO, "acme: %s answered %d, retrying in %" PRIu64 " ms", url,
                        ret->status, wait / USEC_PER_MSEC);
                resp_clear(ret);
                r = op_sleep(op, wait, url, error);
                if (r < 0)
                        return r;
        }
}

static const char *dir_url(acme_op *op, const char *name) {
        return json_string_value(json_object_get(op->dir, name));
}

static int op_directory(acme_op *op, paf_error *error) {
        if (op->dir)
                return 0;
        acme_resp resp = {0};
        const char *url = op->c->directory_url;
        int r = op_get(op, url, &resp, error);
        if (r < 0)
                return r;
        if (resp.status != 200 || !json_is_object(resp.json)) {
                r = resp_error(&resp, url, error);
                if (resp.status == 200)
                        r = paf_error_set(error, -EPROTO,
                                          "%s: not an ACME directory (no JSON object)", url);
                resp_clear(&resp);
                return r;
        }
        const char *need[] = {"newNonce", "newAccount", "newOrder"};
        for (size_t i = 0; i < ELEMENTSOF(need); i++)
                if (!json_string_value(json_object_get(resp.json, need[i]))) {
                        resp_clear(&resp);
                        return paf_error_set(error, -EPROTO,
                                             "%s: not an ACME directory (no \"%s\")", url,
                                             need[i]);
                }
        op->dir = json_incref(resp.json);
        resp_clear(&resp);
        return 0;
}

static int op_new_nonce(acme_op *op, paf_error *error) {
        const char *url = dir_url(op, "newNonce");
        for (unsigned tries = 0;; tries++) {
                acme_resp resp = {0};
                int r = op_http(op, "HEAD", url, NULL, NULL, NULL, &resp, error);
                if (r < 0)
                        return r;
                uint64_t wait;
                if (status_is_busy(resp.status) && tries < BUSY_TRIES &&
                    paf_acme_parse_retry_after(resp_header(&resp, "Retry-After"),
                                               now_usec(CLOCK_REALTIME), &wait) >= 0) {
                        resp_clear(&resp);
                        r = op_sleep(op, wait, url, error);
                        if (r < 0)
                                return r;
                        continue;
                }
                int status = resp.status;
                resp_clear(&resp);
                if (op->nonce)
                        return 0;
                return paf_error_set(error, -EPROTO, "%s: answered %d without a Replay-Nonce",
                                     url, status);
        }
}

/*
 * A signed POST (RFC 8555 §6.2): payload NULL is POST-as-GET. kid is used
 * once the account exists, the account key's jwk before. badNonce is retried
 * with the error's own nonce; 429/503 with Retry-After are waited out.
 */
static int op_post(acme_op *op, const char *url, const json_t *payload, bool use_jwk,
                   const char *accept, acme_resp *ret, paf_error *error) {
        unsigned bad_nonces = 0, busy = 0;
        for (;;) {
                int r;
                if (!op->nonce) {
                        r = op_new_nonce(op, error);
                        if (r < 0)
                                return r;
                }
                json_t *jws = NULL;
                char *nonce = op->nonce;
                op->nonce = NULL;
                r = paf_acme_jws_sign(op->account_key, use_jwk ? NULL : op->kid, nonce, url,
                                      payload, &jws, error);
                free(nonce);
                if (r < 0)
                        return r;
                char *body = json_dumps(jws, JSON_COMPACT);
                json_decref(jws);
                if (!body)
                        return -ENOMEM;
                r = op_http(op, "POST", url, body, "application/jose+json", accept, ret, error);
                free(body);
                if (r < 0)
                        return r;
                if (ret->status == 400 && problem_is(ret, "badNonce") &&
                    bad_nonces < BAD_NONCE_TRIES) {
                        bad_nonces++;
                        paf_log(PAF_LOG_DEBUG, "acme: %s: badNonce, retry %u", url, bad_nonces);
                        resp_clear(ret);
                        continue;
                }
                uint64_t wait;
                if (status_is_busy(ret->status) && busy < BUSY_TRIES &&
                    paf_acme_parse_retry_after(resp_header(ret, "Retry-After"),
                                               now_usec(CLOCK_REALTIME), &wait) >= 0) {
                        busy++;
                        paf_log(PAF_LOG_INFO,
                                "acme: %s answered %d, retrying in %" PRIu64 " ms as asked", url,
                                ret->status, wait / USEC_PER_MSEC);
                        char what[300];
                        snprintf(what, sizeof(what), "%s (%d)", url, ret->status);
                        resp_clear(ret);
                        r = op_sleep(op, wait, what, error);
                        if (r < 0)
                                return r;
                        continue;
                }
                return 0;
        }
}

/* ---- the account ---- */

static int store_key_path(acme_op *op, const char *leaf, char *buf, size_t size) {
        int n = snprintf(buf, size, "%s/%s", op->c->account_prefix, leaf);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int account_save(acme_op *op, paf_error *error) {
        char key[512];
        store_key_path(op, "account.json", key, sizeof(key));
        json_t *contacts = json_array();
        for (char **p = op->c->contact; contacts && *p; p++)
                json_array_append_new(contacts, json_string(*p));
        json_t *j = json_pack("{s:s, s:s, s:o}", "url", op->kid, "directory",
                              op->c->directory_url, "contact", contacts);
        if (!j)
                return -ENOMEM;
        char *s = json_dumps(j, JSON_INDENT(2));
        json_decref(j);
        if (!s)
                return -ENOMEM;
        int r = paf_acme_store_put(op->c->store, key, s, strlen(s), 0644, error);
        free(s);
        return r;
}

static int account_register(acme_op *op, paf_error *error) {
        const char *url = dir_url(op, "newAccount");
        json_t *meta = json_object_get(op->dir, "meta");
        const char *tos = json_string_value(json_object_get(meta, "termsOfService"));
        if (tos && !op->c->agree_tos)
                return paf_error_set(error, -EACCES,
                                     "%s: creating an account means agreeing to the terms of "
                                     "service at %s (--agree-tos)",
                                     op->c->directory_url, tos);
        if (json_is_true(json_object_get(meta, "externalAccountRequired")) && !op->c->eab_kid)
                return paf_error_set(error, -EACCES,
                                     "%s: the CA requires external account binding "
                                     "(--eab-kid and --eab-hmac-key)",
                                     op->c->directory_url);
        json_t *payload = json_object();
        json_t *contacts = json_array();
        if (!payload || !contacts) {
                json_decref(payload);
                json_decref(contacts);
                return -ENOMEM;
        }
        for (char **p = op->c->contact; *p; p++)
                json_array_append_new(contacts, json_string(*p));
        json_object_set_new(payload, "contact", contacts);
        if (op->c->agree_tos)
                json_object_set_new(payload, "termsOfServiceAgreed", json_true());
        if (op->c->eab_kid) {
                json_t *eab = NULL;
                int r = paf_acme_eab_sign(op->account_key, op->c->eab_kid, op->c->eab_hmac_key,
                                          url, &eab, error);
                if (r < 0) {
                        json_decref(payload);
                        return paf_error_prefix(error, "external account binding");
                }
                json_object_set_new(payload, "externalAccountBinding", eab);
        }
        acme_resp resp = {0};
        int r = op_post(op, url, payload, true, NULL, &resp, error);
        json_decref(payload);
        if (r < 0)
                return r;
        const char *loc = resp_header(&resp, "Location");
        if ((resp.status != 200 && resp.status != 201) || !loc) {
                r = resp_error(&resp, "new account", error);
                resp_clear(&resp);
                return r;
        }
        const char *st = json_string_value(json_object_get(resp.json, "status"));
        if (st && strcmp(st, "valid") != 0) {
                resp_clear(&resp);
                return paf_error_set(error, -EACCES, "%s: the account is %s", loc, st);
        }
        free(op->kid);
        op->kid = strdup(loc);
        paf_log(PAF_LOG_INFO, "acme: account %s %s", op->kid,
                resp.status == 201 ? "created" : "found");
        resp_clear(&resp);
        if (!op->kid)
                return -ENOMEM;
        return account_save(op, error);
}

/* Load (or make) the account key and find (or create) the account. */
static int op_account(acme_op *op, bool create, paf_error *error) {
        int r = op_directory(op, error);
        if (r < 0)
                return r;
        _paf_cleanup_(paf_acme_store_unlockp) paf_acme_store_lock *lock = NULL;
        r = paf_acme_store_lock_take(op->c->store, op->c->account_prefix, op_remaining(op),
                                     &lock, error);
        if (r < 0)
                return r;
        char key[512];
        store_key_path(op, "account.key", key, sizeof(key));
        void *data = NULL;
        size_t size = 0;
        r = paf_acme_store_get(op->c->store, key, PAF_ACME_STORE_SECRET, &data, &size, error);
        if (r == -ENOENT) {
                if (!create)
                        return paf_error_set(error, -ENOENT,
                                             "%s: no account for %s in %s", key,
                                             op->c->directory_url, op->c->state_dir);
                r = paf_acme_key_generate(op->c->account_key_type, &op->account_key, error);
                if (r < 0)
                        return r;
                char *pem = NULL;
                size_t pem_size = 0;
                r = paf_acme_key_save_pem(op->account_key, &pem, &pem_size, error);
                if (r >= 0)
                        r = paf_acme_store_put(op->c->store, key, pem, pem_size, 0600, error);
                free(pem);
                if (r < 0)
                        return r;
        } else if (r < 0) {
                return r;
        } else {
                r = paf_acme_key_load_pem(data, size, &op->account_key, error);
                free(data);
                if (r < 0)
                        return paf_error_prefix(error, "%s/%s", op->c->state_dir, key);
        }
        store_key_path(op, "account.json", key, sizeof(key));
        data = NULL;
        r = paf_acme_store_get(op->c->store, key, 0, &data, &size, NULL);
        if (r >= 0) {
                json_t *j = json_loadb(data, size, 0, NULL);
                free(data);
                const char *url = json_string_value(json_object_get(j, "url"));
                if (url)
                        op->kid = strdup(url);
                json_decref(j);
        }
        if (op->kid)
                return 0;
        return account_register(op, error);
}

/* An authenticated POST; an account the CA no longer knows (a test CA
 * restarted, say) is registered again with the same key, once. */
static int op_post_kid(acme_op *op, const char *url, const json_t *payload, const char *accept,
                       acme_resp *ret, paf_error *error) {
        int r = op_post(op, url, payload, false, accept, ret, error);
        if (r < 0 || !(ret->status == 400 || ret->status == 403) ||
            !problem_is(ret, "accountDoesNotExist"))
                return r;
        resp_clear(ret);
        paf_log(PAF_LOG_INFO, "acme: the CA does not know account %s any more; registering again",
                op->kid);
        free(op->kid);
        op->kid = NULL;
        r = account_register(op, error);
        if (r < 0)
                return r;
        return op_post(op, url, payload, false, accept, ret, error);
}

/* ---- certificates ---- */

typedef struct acme_ident {
        char type[4];   /* "dns" or "ip" */
        char value[256]; /* lower case; an address in canonical form */
} acme_ident;

static int ident_parse(const char *s, acme_ident *ret, paf_error *error) {
        unsigned char buf[16];
        *ret = (acme_ident){0};
        if (inet_pton(AF_INET, s, buf) == 1) {
                strcpy(ret->type, "ip");
                inet_ntop(AF_INET, buf, ret->value, sizeof(ret->value));
                return 0;
        }
        const char *v6 = s;
        char tmp[64];
        if (s[0] == '[' && strlen(s) < sizeof(tmp) && s[strlen(s) - 1] == ']') {
                memcpy(tmp, s + 1, strlen(s) - 2);
                tmp[strlen(s) - 2] = 0;
                v6 = tmp;
        }
        if (inet_pton(AF_INET6, v6, buf) == 1) {
                strcpy(ret->type, "ip");
                inet_ntop(AF_INET6, buf, ret->value, sizeof(ret->value));
                return 0;
        }
        size_t n = strlen(s);
        if (n > 0 && s[n - 1] == '.')
                n--; /* a fully qualified name's root dot */
        if (n == 0 || n >= sizeof(ret->value))
                return paf_error_set(error, -EINVAL, "\"%s\": not a DNS name or IP address", s);
        for (size_t i = 0; i < n; i++)
                ret->value[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] - 'A' + 'a' : s[i]);
        strcpy(ret->type, "dns");
        char *name = NULL;
        int r = paf_acme_store_name(ret->value, &name, error);
        free(name);
        return r;
}

int paf_acme_cert_name(const char *identifier, char **ret, paf_error *error) {
        acme_ident id;
        int r = ident_parse(identifier, &id, error);
        if (r < 0)
                return r;
        return paf_acme_store_name(id.value, ret, error);
}

paf_acme_cert *paf_acme_cert_free(paf_acme_cert *cert) {
        if (!cert)
                return NULL;
        free(cert->name);
        paf_acme_strv_free(cert->identifiers);
        free(cert->issuer);
        free(cert->serial);
        free(cert->fullchain_path);
        free(cert->key_path);
        free(cert->directory_url);
        free(cert);
        return NULL;
}

/* The certificates of a PEM chain, leaf first. */
typedef struct acme_chain {
        gnutls_x509_crt_t *crts;
        unsigned n;
} acme_chain;

static void chain_clear(acme_chain *ch) {
        for (unsigned i = 0; i < ch->n; i++)
                gnutls_x509_crt_deinit(ch->crts[i]);
        gnutls_free(ch->crts);
        *ch = (acme_chain){0};
}

static int chain_parse(const void *pem, size_t size, acme_chain *ret, const char *what,
                       paf_error *error) {
        gnutls_datum_t d = {.data = (unsigned char *)pem, .size = (unsigned)size};
        *ret = (acme_chain){0};
        int r = gnutls_x509_crt_list_import2(&ret->crts, &ret->n, &d, GNUTLS_X509_FMT_PEM, 0);
        if (r < 0 || ret->n == 0) {
                chain_clear(ret);
                return paf_error_set(error, -EBADMSG, "%s: not a PEM certificate chain: %s", what,
                                     r < 0 ? gnutls_strerror(r) : "no certificate");
        }
        return 0;
}

/* The issuer common name of a certificate, for --preferred-chain. */
static void crt_issuer_cn(gnutls_x509_crt_t crt, char *buf, size_t size) {
        size_t n = size;
        buf[0] = 0;
        if (gnutls_x509_crt_get_issuer_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf,
                                                 &n) < 0)
                buf[0] = 0;
}

/* RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial). */
static int crt_ari_id(gnutls_x509_crt_t crt, char **ret) {
        unsigned char aki[128], serial[64];
        size_t aki_size = sizeof(aki), serial_size = sizeof(serial);
        unsigned critical;
        if (gnutls_x509_crt_get_authority_key_id(crt, aki, &aki_size, &critical) < 0 ||
            gnutls_x509_crt_get_serial(crt, serial, &serial_size) < 0)
                return -ENODATA;
        _cleanup_free_ char *a = paf_b64url_encode(aki, aki_size);
        _cleanup_free_ char *s = paf_b64url_encode(serial, serial_size);
        if (!a || !s || asprintf(ret, "%s.%s", a, s) < 0)
                return -ENOMEM;
        return 0;
}

static char *crt_serial_hex(gnutls_x509_crt_t crt) {
        unsigned char serial[64];
        size_t n = sizeof(serial);
        if (gnutls_x509_crt_get_serial(crt, serial, &n) < 0)
                return strdup("");
        char *hex = malloc(n * 2 + 1);
        if (!hex)
                return NULL;
        size_t j = 0;
        for (size_t i = 0; i < n; i++) {
                if (j == 0 && serial[i] == 0 && i + 1 < n)
                        continue; /* the DER sign byte */
                snprintf(hex + j, 3, "%02x", serial[i]);
                j += 2;
        }
        hex[j] = 0;
        return hex;
}

/* When to renew without ARI: a third of the lifetime before the end (half
 * for lifetimes of 10 days or less, as Let's Encrypt's short certificates),
 * minus a random part of up to a tenth of that, so that a fleet's renewals
 * spread. Realtime µs. */
uint64_t paf_acme_renewal_time(uint64_t not_before, uint64_t not_after) {
        if (not_after <= not_before)
                return not_before;
        uint64_t lifetime = not_after - not_before;
        uint64_t left = lifetime <= 10 * 24 * 3600 * USEC_PER_SEC ? lifetime / 2 : lifetime / 3;
        uint64_t jitter = paf_acme_random_below(left / 10 + 1);
        return not_after - left - jitter;
}

/* ---- the stored state of a certificate ---- */

static int cert_key(const char *name, const char *leaf, char *buf, size_t size) {
        int n = snprintf(buf, size, "%s/%s", name, leaf);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int cert_load_from(paf_acme_store *store, const char *state_dir, const char *name,
                          paf_acme_cert **ret, json_t **ret_meta, paf_error *error) {
        char key[600];
        void *data = NULL;
        size_t size = 0;
        cert_key(name, "meta.json", key, sizeof(key));
        int r = paf_acme_store_get(store, key, 0, &data, &size, error);
        if (r < 0)
                return r;
        json_error_t jerr;
        json_t *meta = json_loadb(data, size, 0, &jerr);
        free(data);
        if (!json_is_object(meta)) {
                json_decref(meta);
                return paf_error_set(error, -EBADMSG, "%s/%s: not JSON: %s", state_dir, key,
                                     jerr.text);
        }
        cert_key(name, "fullchain.pem", key, sizeof(key));
        r = paf_acme_store_get(store, key, 0, &data, &size, error);
        if (r < 0) {
                json_decref(meta);
                return r;
        }
        char what[700];
        snprintf(what, sizeof(what), "%s/%s", state_dir, key);
        acme_chain ch;
        r = chain_parse(data, size, &ch, what, error);
        free(data);
        if (r < 0) {
                json_decref(meta);
                return r;
        }
        paf_acme_cert *c = calloc(1, sizeof(*c));
        if (!c) {
                chain_clear(&ch);
                json_decref(meta);
                return -ENOMEM;
        }
        c->name = strdup(name);
        gnutls_datum_t dn = {0};
        if (gnutls_x509_crt_get_issuer_dn3(ch.crts[0], &dn, 0) >= 0) {
                c->issuer = strndup((const char *)dn.data, dn.size);
                gnutls_free(dn.data);
        } else {
                c->issuer = strdup("");
        }
        c->serial = crt_serial_hex(ch.crts[0]);
        c->not_before = (uint64_t)gnutls_x509_crt_get_activation_time(ch.crts[0]) * USEC_PER_SEC;
        c->not_after = (uint64_t)gnutls_x509_crt_get_expiration_time(ch.crts[0]) * USEC_PER_SEC;
        chain_clear(&ch);
        json_t *ids = json_object_get(meta, "identifiers");
        c->identifiers = calloc(json_array_size(ids) + 1, sizeof(char *));
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v) {
                if (c->identifiers)
                        c->identifiers[i] = strdup(json_string_value(v) ?: "");
        }
        json_int_t renew = json_integer_value(json_object_get(meta, "renew_at"));
        c->renew_at = renew > 0 ? (uint64_t)renew * USEC_PER_SEC
                                : paf_acme_renewal_time(c->not_before, c->not_after);
        json_int_t check = json_integer_value(json_object_get(meta, "ari_check_at"));
        c->next_check_at = c->renew_at;
        if (check > 0 && (uint64_t)check * USEC_PER_SEC < c->next_check_at)
                c->next_check_at = (uint64_t)check * USEC_PER_SEC;
        c->revoked = json_is_true(json_object_get(meta, "revoked"));
        const char *d = json_string_value(json_object_get(meta, "directory"));
        c->directory_url = strdup(d ? d : "");
        if (asprintf(&c->fullchain_path, "%s/%s/fullchain.pem", state_dir, name) < 0)
                c->fullchain_path = NULL;
        if (asprintf(&c->key_path, "%s/%s/key.pem", state_dir, name) < 0)
                c->key_path = NULL;
        if (!c->name || !c->issuer || !c->serial || !c->identifiers || !c->directory_url ||
            !c->fullchain_path || !c->key_path) {
                paf_acme_cert_free(c);
                json_decref(meta);
                return -ENOMEM;
        }
        *ret = c;
        if (ret_meta)
                *ret_meta = meta;
        else
                json_decref(meta);
        return 0;
}

int paf_acme_cert_load(const char *state_dir, const char *name, paf_acme_cert **ret,
                       paf_error *error) {
        _paf_cleanup_(paf_acme_store_unrefp) paf_acme_store *store = NULL;
        int r = paf_acme_store_dir_new(state_dir, &store, error);
        if (r < 0)
                return r;
        _cleanup_free_ char *sname = NULL;
        r = paf_acme_cert_name(name, &sname, error);
        if (r < 0)
                return r;
        r = cert_load_from(store, state_dir, sname, ret, NULL, error);
        if (r == -ENOENT)
                return paf_error_set(error, r, "%s: no certificate stored in %s", name, state_dir);
        return r;
}

int paf_acme_cert_list(const char *state_dir, char ***ret, paf_error *error) {
        _paf_cleanup_(paf_acme_store_unrefp) paf_acme_store *store = NULL;
        int r = paf_acme_store_dir_new(state_dir, &store, error);
        if (r < 0)
                return r;
        char **all = NULL;
        r = paf_acme_store_list(store, "", &all, error);
        if (r < 0)
                return r;
        size_t n = 0, k = 0;
        while (all[n])
                n++;
        char **out = calloc(n + 1, sizeof(char *));
        if (!out) {
                paf_acme_strv_free(all);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                char key[600];
                void *data = NULL;
                size_t size;
                if (strcmp(all[i], "_accounts") == 0 || cert_key(all[i], "meta.json", key, sizeof(key)) < 0 ||
                    paf_acme_store_get(store, key, 0, &data, &size, NULL) < 0) {
                        free(all[i]);
                        continue;
                }
                free(data);
                out[k++] = all[i];
        }
        free(all);
        *ret = out;
        return 0;
}

/* ---- challenges ---- */

static int publish(acme_op *op, const acme_ident *id, const char *token, const char *keyauth,
                   paf_error *error) {
        char **p = realloc(op->published, (op->n_published + 1) * sizeof(char *));
        if (!p)
                return -ENOMEM;
        op->published = p;
        int r;
        const char *what;
        if (op->c->challenge == PAF_ACME_CHALLENGE_HTTP01) {
                r = paf_acme_http01_add(op->c->http01, token, keyauth);
                what = token;
        } else {
                r = paf_acme_tlsalpn_add(op->c->tlsalpn, id->value, keyauth);
                what = id->value;
        }
        if (r < 0)
                return paf_error_set(error, r, "%s: cannot publish the %s challenge: %s",
                                     id->value, challenge_names[op->c->challenge], strerror(-r));
        if (!(op->published[op->n_published] = strdup(what)))
                return -ENOMEM;
        op->n_published++;
        return 0;
}

static void unpublish_named(acme_op *op, const char *what) {
        for (size_t i = 0; i < op->n_published; i++)
                if (strcmp(op->published[i], what) == 0) {
                        unpublish(op, i);
                        return;
                }
}

/* POST-as-GET url until its status is not one of waiting (NULL-terminated),
 * waiting as the server asks (Retry-After) or with exponential backoff. */
/* An answer that starts work on the CA's side (a challenge, a finalize) may
 * say when to look (RFC 8555 §7.5.1, §7.4): the next poll waits for it. */
static void note_retry_after(acme_op *op, const acme_resp *resp) {
        uint64_t ra;
        if (paf_acme_parse_retry_after(resp_header(resp, "Retry-After"), now_usec(CLOCK_REALTIME),
                                       &ra) < 0)
                return;
        uint64_t at = now_usec(CLOCK_MONOTONIC) + ra;
        if (at > op->poll_not_before)
                op->poll_not_before = at;
}

static int op_poll(acme_op *op, const char *url, const char *what, const char *const *waiting,
                   acme_resp *ret, paf_error *error) {
        uint64_t delay = POLL_FIRST_USEC;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        if (op->poll_not_before > now) {
                int r = op_sleep(op, op->poll_not_before - now, what, error);
                if (r < 0)
                        return r;
        }
        op->poll_not_before = 0;
        for (;;) {
                int r = op_post_kid(op, url, NULL, NULL, ret, error);
                if (r < 0)
                        return r;
                if (ret->status != 200) {
                        r = resp_error(ret, what, error);
                        resp_clear(ret);
                        return r;
                }
                const char *st = json_string_value(json_object_get(ret->json, "status"));
                if (!st) {
                        resp_clear(ret);
                        return paf_error_set(error, -EPROTO, "%s: %s has no status", what, url);
                }
                bool wait = false;
                for (const char *const *w = waiting; *w; w++)
                        wait = wait || strcmp(st, *w) == 0;
                if (!wait)
                        return 0;
                uint64_t pause;
                if (paf_acme_parse_retry_after(resp_header(ret, "Retry-After"),
                                               now_usec(CLOCK_REALTIME), &pause) < 0) {
                        pause = delay;
                        delay = delay * 2 > POLL_MAX_USEC ? POLL_MAX_USEC : delay * 2;
                }
                paf_log(PAF_LOG_DEBUG, "acme: %s is %s; next look in %" PRIu64 " ms", what, st,
                        pause / USEC_PER_MSEC);
                resp_clear(ret);
                if (pause > op_remaining(op))
                        return paf_error_set(error, -ETIME, "%s: still %s at the time limit",
                                             what, st);
                r = op_sleep(op, pause, what, error);
                if (r < 0)
                        return r;
        }
}

/* The error of a failed authorization: its challenge's problem. */
static int authz_error(const json_t *authz, const char *ident, paf_error *error) {
        json_t *chs = json_object_get(authz, "challenges");
        size_t i;
        json_t *ch;
        json_array_foreach(chs, i, ch) {
                json_t *p = json_object_get(ch, "error");
                if (json_is_object(p)) {
                        char buf[400];
                        format_problem(p, buf, sizeof(buf));
                        const char *type = json_string_value(json_object_get(ch, "type"));
                        return paf_error_set(
                                error,
                                problem_code(json_string_value(json_object_get(p, "type")) ?: ""),
                                "%s: the %s challenge failed: %s", ident, type ? type : "?", buf);
                }
        }
        const char *st = json_string_value(json_object_get(authz, "status"));
        return paf_error_set(error, -EACCES, "%s: the authorization is %s", ident,
                             st ? st : "not valid");
}

/* Start the chosen challenge of one authorization (or find it already valid). */
static int authz_start(acme_op *op, const char *url, bool *ret_pending, char **ret_ident,
                       paf_error *error) {
        acme_resp resp = {0};
        int r = op_post_kid(op, url, NULL, NULL, &resp, error);
        if (r < 0)
                return r;
        if (resp.status != 200 || !json_is_object(resp.json)) {
                r = resp_error(&resp, url, error);
                resp_clear(&resp);
                return r;
        }
        json_t *idj = json_object_get(resp.json, "identifier");
        acme_ident id = {0};
        const char *value = json_string_value(json_object_get(idj, "value"));
        const char *type = json_string_value(json_object_get(idj, "type"));
        snprintf(id.value, sizeof(id.value), "%s", value ? value : "?");
        snprintf(id.type, sizeof(id.type), "%s", type ? type : "?");
        *ret_ident = strdup(id.value);
        const char *st = json_string_value(json_object_get(resp.json, "status"));
        if (st && strcmp(st, "valid") == 0) {
                paf_log(PAF_LOG_INFO, "acme: %s: authorization already valid, reused", id.value);
                resp_clear(&resp);
                *ret_pending = false;
                return 0;
        }
        if (!st || strcmp(st, "pending") != 0) {
                r = authz_error(resp.json, id.value, error);
                resp_clear(&resp);
                return r;
        }
        const char *want = challenge_names[op->c->challenge];
        json_t *chs = json_object_get(resp.json, "challenges");
        json_t *found = NULL, *ch;
        size_t i;
        char offered[200] = "";
        json_array_foreach(chs, i, ch) {
                const char *t = json_string_value(json_object_get(ch, "type"));
                if (t && strcmp(t, want) == 0)
                        found = ch;
                if (t && strlen(offered) + strlen(t) + 3 < sizeof(offered)) {
                        if (offered[0])
                                strcat(offered, ", ");
                        strcat(offered, t);
                }
        }
        if (!found) {
                r = paf_error_set(error, -EPROTONOSUPPORT,
                                  "%s: the CA offers no %s challenge (offered: %s)", id.value,
                                  want, offered[0] ? offered : "none");
                resp_clear(&resp);
                return r;
        }
        const char *token = json_string_value(json_object_get(found, "token"));
        const char *churl = json_string_value(json_object_get(found, "url"));
        const char *chst = json_string_value(json_object_get(found, "status"));
        if (!token || !churl || !paf_acme_token_is_valid(token)) {
                resp_clear(&resp);
                return paf_error_set(error, -EPROTO, "%s: the %s challenge has no valid token",
                                     id.value, want);
        }
        _cleanup_free_ char *keyauth = NULL;
        r = paf_acme_key_authorization(op->account_key, token, &keyauth, error);
        if (r >= 0)
                r = publish(op, &id, token, keyauth, error);
        _cleanup_free_ char *churl_copy = strdup(churl);
        bool respond = !chst || strcmp(chst, "pending") == 0;
        resp_clear(&resp);
        if (r < 0)
                return r;
        if (!churl_copy)
                return -ENOMEM;
        if (respond) {
                json_t *empty = json_object();
                r = op_post_kid(op, churl_copy, empty, NULL, &resp, error);
                json_decref(empty);
                if (r < 0)
                        return r;
                if (resp.status != 200) {
                        char what[300];
                        snprintf(what, sizeof(what), "%s: %s challenge", id.value, want);
                        r = resp_error(&resp, what, error);
                        resp_clear(&resp);
                        return r;
                }
                note_retry_after(op, &resp);
                resp_clear(&resp);
        }
        paf_log(PAF_LOG_INFO, "acme: %s: %s challenge published", id.value, want);
        *ret_pending = true;
        return 0;
}

/* ---- issuance ---- */

static int ident_cmp(const void *a, const void *b) {
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether meta's identifiers are exactly ids (in any order). */
static bool same_identifiers(json_t *meta, acme_ident *ids, size_t n) {
        json_t *list = json_object_get(meta, "identifiers");
        if (json_array_size(list) != n)
                return false;
        const char *a[64], *b[64];
        if (n > ELEMENTSOF(a))
                return false;
        for (size_t i = 0; i < n; i++) {
                a[i] = json_string_value(json_array_get(list, i));
                b[i] = ids[i].value;
                if (!a[i])
                        return false;
        }
        qsort(a, n, sizeof(char *), ident_cmp);
        qsort(b, n, sizeof(char *), ident_cmp);
        for (size_t i = 0; i < n; i++)
                if (strcmp(a[i], b[i]) != 0)
                        return false;
        return true;
}

/* The chain to keep: the default one, or an alternate whose topmost
 * certificate's issuer CN is the preferred one. */
static int choose_chain(acme_op *op, acme_resp *resp, char **ret_pem, paf_error *error) {
        const char *pref = op->c->preferred_chain;
        *ret_pem = strndup(resp->raw->body ? resp->raw->body : "", resp->raw->body_size);
        if (!*ret_pem)
                return -ENOMEM;
        if (!pref)
                return 0;
        acme_chain ch;
        char cn[256];
        if (chain_parse(*ret_pem, strlen(*ret_pem), &ch, resp->url, NULL) >= 0) {
                crt_issuer_cn(ch.crts[ch.n - 1], cn, sizeof(cn));
                chain_clear(&ch);
                if (strcmp(cn, pref) == 0)
                        return 0;
        }
        /* Link: <url>;rel="alternate", possibly several headers. */
        char **alts = NULL;
        size_t n_alts = 0;
        size_t iter = 0;
        for (const char *v; (v = paf_http_headers_next(resp->raw->headers, "Link", &iter));) {
                const char *p = v;
                while ((p = strchr(p, '<'))) {
                        const char *e = strchr(p, '>');
                        if (!e)
                                break;
                        const char *next = strchr(e, '<');
                        size_t plen = next ? (size_t)(next - e) : strlen(e);
                        char params[200];
                        snprintf(params, sizeof(params), "%.*s", (int)plen, e);
                        if (strstr(params, "rel=\"alternate\"") || strstr(params, "rel=alternate")) {
                                char **t = realloc(alts, (n_alts + 1) * sizeof(char *));
                                if (t) {
                                        alts = t;
                                        alts[n_alts] = strndup(p + 1, (size_t)(e - p - 1));
                                        if (alts[n_alts])
                                                n_alts++;
                                }
                        }
                        p = e;
                }
        }
        int r = 0;
        for (size_t i = 0; i < n_alts; i++) {
                acme_resp alt = {0};
                if (r >= 0 &&
                    op_post_kid(op, alts[i], NULL, "application/pem-certificate-chain", &alt,
                                error) >= 0 &&
                    alt.status == 200 && alt.raw->body &&
                    chain_parse(alt.raw->body, alt.raw->body_size, &ch, alts[i], NULL) >= 0) {
                        crt_issuer_cn(ch.crts[ch.n - 1], cn, sizeof(cn));
                        chain_clear(&ch);
                        if (strcmp(cn, pref) == 0) {
                                char *pem = strndup(alt.raw->body, alt.raw->body_size);
                                if (pem) {
                                        free(*ret_pem);
                                        *ret_pem = pem;
                                        paf_log(PAF_LOG_INFO, "acme: chain %s chosen (issuer %s)",
                                                alts[i], cn);
                                        r = -1; /* found: stop looking */
                                }
                        }
                }
                resp_clear(&alt);
                free(alts[i]);
        }
        free(alts);
        if (r == 0)
                paf_log(PAF_LOG_INFO, "acme: no chain tops at \"%s\"; the default chain is kept",
                        pref);
        return 0;
}

/* Check what the CA sent: a chain whose leaf carries our key and names. */
static int check_leaf(const char *pem, const paf_acme_key *key, acme_ident *ids, size_t n,
                      const char *what, paf_error *error) {
        acme_chain ch;
        int r = chain_parse(pem, strlen(pem), &ch, what, error);
        if (r < 0)
                return r;
        gnutls_pubkey_t pub = NULL;
        gnutls_datum_t a = {0}, b = {0};
        r = gnutls_pubkey_init(&pub);
        if (r >= 0)
                r = gnutls_pubkey_import_x509(pub, ch.crts[0], 0);
        if (r >= 0)
                r = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &a);
        if (r >= 0)
                r = gnutls_pubkey_export2(paf_acme_key_get_pubkey(key), GNUTLS_X509_FMT_DER, &b);
        bool same = r >= 0 && a.size == b.size && memcmp(a.data, b.data, a.size) == 0;
        gnutls_free(a.data);
        gnutls_free(b.data);
        if (pub)
                gnutls_pubkey_deinit(pub);
        if (!same) {
                chain_clear(&ch);
                return paf_error_set(error, -EBADMSG,
                                     "%s: the certificate is not for the key of the request",
                                     what);
        }
        for (size_t i = 0; i < n; i++) {
                bool ok;
                if (strcmp(ids[i].type, "ip") == 0) {
                        unsigned char addr[16];
                        int fam = strchr(ids[i].value, ':') ? AF_INET6 : AF_INET;
                        inet_pton(fam, ids[i].value, addr);
                        ok = gnutls_x509_crt_check_ip(ch.crts[0], addr,
                                                      fam == AF_INET ? 4 : 16, 0) != 0;
                } else if (ids[i].value[0] == '*') {
                        char probe[300];
                        snprintf(probe, sizeof(probe), "paf-probe%s", ids[i].value + 1);
                        ok = gnutls_x509_crt_check_hostname(ch.crts[0], probe) != 0;
                } else {
                        ok = gnutls_x509_crt_check_hostname(ch.crts[0], ids[i].value) != 0;
                }
                if (!ok) {
                        chain_clear(&ch);
                        return paf_error_set(error, -EBADMSG,
                                             "%s: the certificate does not name %s", what,
                                             ids[i].value);
                }
        }
        chain_clear(&ch);
        return 0;
}

/* How often ARI is asked again without a Retry-After (RFC 9773 §4.3 suggests
 * a few times a day), and the bounds put on one. */
#define ARI_CHECK_USEC (6 * 3600 * USEC_PER_SEC)
#define ARI_CHECK_MIN_USEC (60 * USEC_PER_SEC)
#define ARI_CHECK_MAX_USEC (24 * 3600 * USEC_PER_SEC)

/* ARI (RFC 9773): the CA's renewal window, when it offers renewalInfo. A
 * random time in the window, as §4.2 asks; 0 when there is none.
 * *ret_check gets when to ask again (its Retry-After). */
static uint64_t ari_renewal_time(acme_op *op, const char *cert_id, uint64_t *ret_check) {
        const char *base = dir_url(op, "renewalInfo");
        *ret_check = 0;
        if (!base || !cert_id)
                return 0;
        *ret_check = now_usec(CLOCK_REALTIME) + ARI_CHECK_USEC;
        char url[1024];
        snprintf(url, sizeof(url), "%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/",
                 cert_id);
        acme_resp resp = {0};
        paf_error err = {0};
        uint64_t at = 0;
        if (op_get(op, url, &resp, &err) < 0) {
                paf_log(PAF_LOG_WARNING, "acme: renewal info: %s", err.message);
                return 0;
        }
        uint64_t ra;
        if (paf_acme_parse_retry_after(resp_header(&resp, "Retry-After"),
                                       now_usec(CLOCK_REALTIME), &ra) >= 0) {
                ra = ra < ARI_CHECK_MIN_USEC   ? ARI_CHECK_MIN_USEC
                     : ra > ARI_CHECK_MAX_USEC ? ARI_CHECK_MAX_USEC
                                               : ra;
                *ret_check = now_usec(CLOCK_REALTIME) + ra;
        }
        json_t *w = json_object_get(resp.json, "suggestedWindow");
        const char *s = json_string_value(json_object_get(w, "start"));
        const char *e = json_string_value(json_object_get(w, "end"));
        struct tm ts = {0}, te = {0};
        const char *se, *ee;
        if (resp.status == 200 && s && e && (se = strptime(s, "%Y-%m-%dT%H:%M:%S", &ts)) &&
            (ee = strptime(e, "%Y-%m-%dT%H:%M:%S", &te))) {
                uint64_t start = (uint64_t)timegm(&ts) * USEC_PER_SEC;
                uint64_t end = (uint64_t)timegm(&te) * USEC_PER_SEC;
                if (end >= start) {
                        at = start + paf_acme_random_below(end - start + 1);
                        paf_log(PAF_LOG_INFO, "acme: renewal window from the CA: %s to %s", s, e);
                }
        } else {
                paf_log(PAF_LOG_WARNING, "acme: %s: no usable renewal window (HTTP %d)", url,
                        resp.status);
        }
        resp_clear(&resp);
        return at;
}

static int store_cert(acme_op *op, const char *name, acme_ident *ids, size_t n,
                      const char *key_pem, size_t key_size, const char *chain_pem,
                      const char *order_url, const char *cert_url, paf_error *error) {
        char key[600];
        acme_chain ch;
        int r = chain_parse(chain_pem, strlen(chain_pem), &ch, cert_url, error);
        if (r < 0)
                return r;
        uint64_t nb = (uint64_t)gnutls_x509_crt_get_activation_time(ch.crts[0]) * USEC_PER_SEC;
        uint64_t na = (uint64_t)gnutls_x509_crt_get_expiration_time(ch.crts[0]) * USEC_PER_SEC;
        _cleanup_free_ char *ari = NULL;
        (void)crt_ari_id(ch.crts[0], &ari);
        chain_clear(&ch);
        uint64_t ari_check = 0;
        uint64_t renew = ari_renewal_time(op, ari, &ari_check);
        if (renew == 0)
                renew = paf_acme_renewal_time(nb, na);
        json_t *meta = json_object();
        json_t *list = json_array();
        if (!meta || !list) {
                json_decref(meta);
                json_decref(list);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                json_array_append_new(list, json_string(ids[i].value));
        json_object_set_new(meta, "identifiers", list);
        json_object_set_new(meta, "directory", json_string(op->c->directory_url));
        json_object_set_new(meta, "account", json_string(op->kid));
        json_object_set_new(meta, "order", json_string(order_url));
        json_object_set_new(meta, "certificate", json_string(cert_url));
        json_object_set_new(meta, "key_type",
                            json_string(paf_acme_key_type_to_string(op->c->cert_key_type)));
        json_object_set_new(meta, "challenge", json_string(challenge_names[op->c->challenge]));
        json_object_set_new(meta, "renew_at", json_integer((json_int_t)(renew / USEC_PER_SEC)));
        if (ari)
                json_object_set_new(meta, "ari_id", json_string(ari));
        if (ari_check)
                json_object_set_new(meta, "ari_check_at",
                                    json_integer((json_int_t)(ari_check / USEC_PER_SEC)));
        char *m = json_dumps(meta, JSON_INDENT(2));
        json_decref(meta);
        if (!m)
                return -ENOMEM;
        /* The key first: a reader that sees the new chain finds its key. */
        cert_key(name, "key.pem", key, sizeof(key));
        r = paf_acme_store_put(op->c->store, key, key_pem, key_size, 0600, error);
        if (r >= 0) {
                cert_key(name, "fullchain.pem", key, sizeof(key));
                r = paf_acme_store_put(op->c->store, key, chain_pem, strlen(chain_pem), 0644,
                                       error);
        }
        if (r >= 0) {
                cert_key(name, "meta.json", key, sizeof(key));
                r = paf_acme_store_put(op->c->store, key, m, strlen(m), 0644, error);
        }
        free(m);
        return r;
}

/* ARI asked again for a stored certificate whose check time came (the CA may
 * move its window earlier, after an incident): its meta.json gets the new
 * renewal and check times. */
static int ari_refresh(acme_op *op, const char *name, json_t *meta, paf_error *error) {
        const char *id = json_string_value(json_object_get(meta, "ari_id"));
        int r = op_directory(op, error);
        if (r < 0)
                return r;
        uint64_t check = 0;
        uint64_t at = ari_renewal_time(op, id, &check);
        if (at == 0 && check == 0)
                return 0;
        if (at)
                json_object_set_new(meta, "renew_at", json_integer((json_int_t)(at / USEC_PER_SEC)));
        json_object_set_new(meta, "ari_check_at",
                            json_integer((json_int_t)(check / USEC_PER_SEC)));
        char key[600];
        cert_key(name, "meta.json", key, sizeof(key));
        char *m = json_dumps(meta, JSON_INDENT(2));
        if (!m)
                return -ENOMEM;
        r = paf_acme_store_put(op->c->store, key, m, strlen(m), 0644, error);
        free(m);
        return r;
}

static int op_issue(acme_op *op, acme_ident *ids, size_t n, const char *name, json_t *old_meta,
                    paf_error *error) {
        int r = op_account(op, true, error);
        if (r < 0)
                return r;
        json_t *payload = json_object();
        json_t *list = json_array();
        if (!payload || !list) {
                json_decref(payload);
                json_decref(list);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                json_array_append_new(list, json_pack("{s:s, s:s}", "type", ids[i].type, "value",
                                                      ids[i].value));
        json_object_set_new(payload, "identifiers", list);
        const char *ari = json_string_value(json_object_get(old_meta, "ari_id"));
        if (ari && dir_url(op, "renewalInfo"))
                json_object_set_new(payload, "replaces", json_string(ari));
        acme_resp resp = {0};
        r = op_post_kid(op, dir_url(op, "newOrder"), payload, NULL, &resp, error);
        json_decref(payload);
        if (r < 0)
                return r;
        const char *loc = resp_header(&resp, "Location");
        if (resp.status != 201 || !json_is_object(resp.json) || !loc) {
                r = resp_error(&resp, "new order", error);
                resp_clear(&resp);
                return r;
        }
        _cleanup_free_ char *order_url = strdup(loc);
        json_t *order = json_incref(resp.json);
        resp_clear(&resp);
        if (!order_url) {
                json_decref(order);
                return -ENOMEM;
        }
        paf_log(PAF_LOG_INFO, "acme: order %s", order_url);

        /* Every challenge is started before any is waited for. */
        json_t *authzs = json_object_get(order, "authorizations");
        size_t n_authz = json_array_size(authzs);
        bool *pending = calloc(n_authz + 1, sizeof(bool));
        char **idents = calloc(n_authz + 1, sizeof(char *));
        if (!pending || !idents)
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n_authz; i++) {
                const char *u = json_string_value(json_array_get(authzs, i));
                if (!u)
                        r = paf_error_set(error, -EPROTO, "%s: bad authorization list", order_url);
                else
                        r = authz_start(op, u, &pending[i], &idents[i], error);
        }
        for (size_t i = 0; r >= 0 && i < n_authz; i++) {
                if (!pending[i])
                        continue;
                const char *u = json_string_value(json_array_get(authzs, i));
                char what[300];
                snprintf(what, sizeof(what), "%s: authorization", idents[i] ? idents[i] : u);
                r = op_poll(op, u, what, (const char *const[]){"pending", NULL}, &resp, error);
                if (r < 0)
                        break;
                /* Final: what was published for it goes (RFC 8555 §8 leaves it to us). */
                if (op->c->challenge == PAF_ACME_CHALLENGE_HTTP01) {
                        json_t *chs = json_object_get(resp.json, "challenges");
                        size_t k;
                        json_t *ch;
                        json_array_foreach(chs, k, ch) {
                                const char *t = json_string_value(json_object_get(ch, "token"));
                                if (t)
                                        unpublish_named(op, t);
                        }
                } else if (idents[i]) {
                        unpublish_named(op, idents[i]);
                }
                const char *st = json_string_value(json_object_get(resp.json, "status"));
                if (strcmp(st, "valid") != 0)
                        r = authz_error(resp.json, idents[i] ? idents[i] : u, error);
                else
                        paf_log(PAF_LOG_INFO, "acme: %s: authorization valid", idents[i]);
                resp_clear(&resp);
        }
        for (size_t i = 0; idents && i < n_authz; i++)
                free(idents[i]);
        free(idents);
        free(pending);
        if (r < 0) {
                json_decref(order);
                return r;
        }

        /* Ready: finalize with a CSR of a new key (or the stored one). */
        json_decref(order);
        r = op_poll(op, order_url, "order", (const char *const[]){"pending", NULL}, &resp,
                    error);
        if (r < 0)
                return r;
        order = json_incref(resp.json);
        resp_clear(&resp);
        const char *st = json_string_value(json_object_get(order, "status"));
        if (strcmp(st, "ready") != 0 && strcmp(st, "valid") != 0) {
                json_t *p = json_object_get(order, "error");
                char buf[400] = "";
                if (p)
                        format_problem(p, buf, sizeof(buf));
                json_decref(order);
                return paf_error_set(error, -EPROTO, "%s: the order is %s%s%s", order_url, st,
                                     buf[0] ? ": " : "", buf);
        }
        _paf_cleanup_(paf_acme_key_freep) paf_acme_key *cert_key_obj = NULL;
        char key_name[600];
        cert_key(name, "key.pem", key_name, sizeof(key_name));
        if (op->c->keep_key) {
                void *data = NULL;
                size_t size;
                if (paf_acme_store_get(op->c->store, key_name, PAF_ACME_STORE_SECRET, &data,
                                       &size, NULL) >= 0) {
                        (void)paf_acme_key_load_pem(data, size, &cert_key_obj, NULL);
                        free(data);
                }
        }
        if (!cert_key_obj) {
                r = paf_acme_key_generate(op->c->cert_key_type, &cert_key_obj, error);
                if (r < 0) {
                        json_decref(order);
                        return r;
                }
        }
        const char **names = calloc(n + 1, sizeof(char *));
        _cleanup_free_ char *csr = NULL;
        if (!names)
                r = -ENOMEM;
        for (size_t i = 0; names && i < n; i++)
                names[i] = ids[i].value;
        if (r >= 0)
                r = paf_acme_csr(cert_key_obj, names, n, NULL, NULL, &csr, error);
        free(names);
        if (r >= 0 && strcmp(st, "ready") == 0) {
                json_t *fin = json_pack("{s:s}", "csr", csr);
                const char *fin_url = json_string_value(json_object_get(order, "finalize"));
                if (!fin_url)
                        r = paf_error_set(error, -EPROTO, "%s: no finalize URL", order_url);
                else
                        r = op_post_kid(op, fin_url, fin, NULL, &resp, error);
                json_decref(fin);
                if (r >= 0 && resp.status != 200)
                        r = resp_error(&resp, "finalize", error);
                if (r >= 0)
                        note_retry_after(op, &resp);
                resp_clear(&resp);
        }
        json_decref(order);
        if (r < 0)
                return r;
        r = op_poll(op, order_url, "order",
                    (const char *const[]){"pending", "ready", "processing", NULL}, &resp, error);
        if (r < 0)
                return r;
        st = json_string_value(json_object_get(resp.json, "status"));
        const char *cu = json_string_value(json_object_get(resp.json, "certificate"));
        if (strcmp(st, "valid") != 0 || !cu) {
                json_t *p = json_object_get(resp.json, "error");
                char buf[400] = "";
                if (p)
                        format_problem(p, buf, sizeof(buf));
                r = paf_error_set(error, -EPROTO, "%s: the order is %s%s%s", order_url, st,
                                  buf[0] ? ": " : "", buf);
                resp_clear(&resp);
                return r;
        }
        _cleanup_free_ char *cert_url = strdup(cu);
        resp_clear(&resp);
        if (!cert_url)
                return -ENOMEM;
        r = op_post_kid(op, cert_url, NULL, "application/pem-certificate-chain", &resp, error);
        if (r < 0)
                return r;
        if (resp.status != 200 || !resp.raw->body) {
                r = resp_error(&resp, cert_url, error);
                resp_clear(&resp);
                return r;
        }
        _cleanup_free_ char *chain = NULL;
        r = choose_chain(op, &resp, &chain, error);
        resp_clear(&resp);
        if (r >= 0)
                r = check_leaf(chain, cert_key_obj, ids, n, cert_url, error);
        if (r < 0)
                return r;
        _cleanup_free_ char *key_pem = NULL;
        size_t key_size = 0;
        r = paf_acme_key_save_pem(cert_key_obj, &key_pem, &key_size, error);
        if (r < 0)
                return r;
        return store_cert(op, name, ids, n, key_pem, key_size, chain, order_url, cert_url,
                          error);
}

int paf_acme_issue(paf_acme_client *c, const char *const *identifiers, size_t n,
                   unsigned flags, paf_acme_cert **ret, paf_error *error) {
        if (!c || !identifiers || n == 0 || !ret)
                return paf_error_set(error, -EINVAL, "ACME: no identifier to order");
        if (n > 100)
                return paf_error_set(error, -EINVAL, "ACME: %zu identifiers; 100 at most", n);
        if (c->challenge == PAF_ACME_CHALLENGE_HTTP01 ? !c->http01 : !c->tlsalpn)
                return paf_error_set(error, -EINVAL, "ACME: no table to publish %s challenges in",
                                     challenge_names[c->challenge]);
        acme_ident *ids = calloc(n, sizeof(*ids));
        if (!ids)
                return -ENOMEM;
        int r = 0;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = ident_parse(identifiers[i], &ids[i], error);
                /* Neither http-01 nor tls-alpn-01 may prove a wildcard (RFC 8555 §7.1.3). */
                if (r >= 0 && ids[i].value[0] == '*')
                        r = paf_error_set(error, -EINVAL,
                                          "%s: a wildcard needs the dns-01 challenge, which paf "
                                          "does not answer",
                                          ids[i].value);
                for (size_t j = 0; r >= 0 && j < i; j++)
                        if (strcmp(ids[i].value, ids[j].value) == 0)
                                r = paf_error_set(error, -EINVAL, "%s: given twice",
                                                  ids[i].value);
        }
        _cleanup_free_ char *name = NULL;
        if (r >= 0)
                r = paf_acme_store_name(ids[0].value, &name, error);
        if (r < 0) {
                free(ids);
                return r;
        }

        acme_op op;
        r = op_init(&op, c, error);
        if (r < 0) {
                free(ids);
                return r;
        }
        /* One process orders a name at a time; the others then find its result. */
        paf_acme_store_lock *lock = NULL;
        r = paf_acme_store_lock_take(c->store, name, op_remaining(&op), &lock, error);
        json_t *meta = NULL;
        paf_acme_cert *stored = NULL;
        bool have = r >= 0 && cert_load_from(c->store, c->state_dir, name, &stored, &meta,
                                             NULL) >= 0;
        json_int_t check = have ? json_integer_value(json_object_get(meta, "ari_check_at")) : 0;
        if (have && !(flags & PAF_ACME_ISSUE_FORCE) && check > 0 &&
            (uint64_t)check * USEC_PER_SEC <= now_usec(CLOCK_REALTIME) &&
            strcmp(stored->directory_url, c->directory_url) == 0) {
                paf_error aerr = PAF_ERROR_NULL;
                /* Not reachable now: the stored times stand. */
                if (ari_refresh(&op, name, meta, &aerr) < 0)
                        paf_log(PAF_LOG_WARNING, "acme: %s: renewal info: %s", name,
                                aerr.message);
                json_decref(meta);
                meta = NULL;
                stored = paf_acme_cert_free(stored);
                have = cert_load_from(c->store, c->state_dir, name, &stored, &meta, NULL) >= 0;
        }
        if (have && !(flags & PAF_ACME_ISSUE_FORCE) && !stored->revoked &&
            strcmp(stored->directory_url, c->directory_url) == 0 &&
            same_identifiers(meta, ids, n) && now_usec(CLOCK_REALTIME) < stored->renew_at &&
            now_usec(CLOCK_REALTIME) < stored->not_after) {
                stored->reused = true;
                *ret = stored;
                stored = NULL;
                paf_log(PAF_LOG_INFO, "acme: %s: the stored certificate is good until renewal",
                        name);
        } else if (r >= 0) {
                r = op_issue(&op, ids, n, name, meta, error);
                if (r >= 0)
                        r = cert_load_from(c->store, c->state_dir, name, ret, NULL, error);
        }
        paf_acme_cert_free(stored);
        json_decref(meta);
        paf_acme_store_unlock(lock);
        op_done(&op);
        free(ids);
        return r;
}

/* ---- revocation, key rollover, deactivation ---- */

int paf_acme_revoke(paf_acme_client *c, const char *ident, int reason, paf_error *error) {
        if (reason < 0 || reason == 7 || reason > 10)
                return paf_error_set(error, -EINVAL,
                                     "revocation reason %d: not an RFC 5280 CRLReason code "
                                     "(0-6, 8-10)",
                                     reason);
        _cleanup_free_ char *name = NULL;
        int r = paf_acme_cert_name(ident, &name, error);
        if (r < 0)
                return r;
        char key[600];
        cert_key(name, "fullchain.pem", key, sizeof(key));
        void *data = NULL;
        size_t size;
        r = paf_acme_store_get(c->store, key, 0, &data, &size, error);
        if (r == -ENOENT)
                return paf_error_set(error, r, "%s: no certificate stored in %s", ident,
                                     c->state_dir);
        if (r < 0)
                return r;
        acme_chain ch;
        char what[700];
        snprintf(what, sizeof(what), "%s/%s", c->state_dir, key);
        r = chain_parse(data, size, &ch, what, error);
        free(data);
        if (r < 0)
                return r;
        gnutls_datum_t der = {0};
        r = gnutls_x509_crt_export2(ch.crts[0], GNUTLS_X509_FMT_DER, &der);
        chain_clear(&ch);
        if (r < 0)
                return paf_error_set(error, -EBADMSG, "%s: %s", what, gnutls_strerror(r));
        _cleanup_free_ char *b64 = paf_b64url_encode(der.data, der.size);
        gnutls_free(der.data);
        if (!b64)
                return -ENOMEM;
        acme_op op;
        r = op_init(&op, c, error);
        if (r < 0)
                return r;
        r = op_account(&op, false, error);
        acme_resp resp = {0};
        if (r >= 0) {
                json_t *payload = json_pack("{s:s, s:i}", "certificate", b64, "reason", reason);
                const char *url = dir_url(&op, "revokeCert");
                if (!url)
                        r = paf_error_set(error, -EPROTONOSUPPORT, "%s: the CA has no revokeCert",
                                          c->directory_url);
                else
                        r = op_post_kid(&op, url, payload, NULL, &resp, error);
                json_decref(payload);
        }
        if (r >= 0 && resp.status != 200) {
                char w[700];
                snprintf(w, sizeof(w), "revoking %s", name);
                r = resp_error(&resp, w, error);
        }
        resp_clear(&resp);
        op_done(&op);
        if (r < 0)
                return r;
        /* Remembered, so that nothing serves it as good. */
        cert_key(name, "meta.json", key, sizeof(key));
        if (paf_acme_store_get(c->store, key, 0, &data, &size, NULL) >= 0) {
                json_t *meta = json_loadb(data, size, 0, NULL);
                free(data);
                if (json_is_object(meta)) {
                        json_object_set_new(meta, "revoked", json_true());
                        json_object_set_new(meta, "revoked_reason", json_integer(reason));
                        char *m = json_dumps(meta, JSON_INDENT(2));
                        if (m)
                                (void)paf_acme_store_put(c->store, key, m, strlen(m), 0644,
                                                         NULL);
                        free(m);
                }
                json_decref(meta);
        }
        return 0;
}

int paf_acme_account_key_change(paf_acme_client *c, paf_error *error) {
        acme_op op;
        int r = op_init(&op, c, error);
        if (r < 0)
                return r;
        r = op_account(&op, false, error);
        const char *url = r >= 0 ? dir_url(&op, "keyChange") : NULL;
        if (r >= 0 && !url)
                r = paf_error_set(error, -EPROTONOSUPPORT, "%s: the CA has no keyChange",
                                  c->directory_url);
        _paf_cleanup_(paf_acme_key_freep) paf_acme_key *new_key = NULL;
        json_t *inner = NULL, *old_jwk = NULL;
        if (r >= 0)
                r = paf_acme_key_generate(c->account_key_type, &new_key, error);
        if (r >= 0)
                r = paf_acme_key_jwk(op.account_key, &old_jwk, error);
        if (r >= 0) {
                /* RFC 8555 §7.3.5: signed by the new key, with its jwk, no nonce. */
                json_t *p = json_pack("{s:s, s:O}", "account", op.kid, "oldKey", old_jwk);
                r = paf_acme_jws_sign(new_key, NULL, NULL, url, p, &inner, error);
                json_decref(p);
        }
        acme_resp resp = {0};
        if (r >= 0)
                r = op_post_kid(&op, url, inner, NULL, &resp, error);
        if (r >= 0 && resp.status != 200)
                r = resp_error(&resp, "key change", error);
        resp_clear(&resp);
        json_decref(inner);
        json_decref(old_jwk);
        if (r >= 0) {
                char *pem = NULL;
                size_t size;
                char key[512];
                store_key_path(&op, "account.key", key, sizeof(key));
                r = paf_acme_key_save_pem(new_key, &pem, &size, error);
                if (r >= 0)
                        r = paf_acme_store_put(c->store, key, pem, size, 0600, error);
                free(pem);
                if (r < 0)
                        paf_error_prefix(error, "the CA has the new account key, but it could "
                                                "not be stored");
        }
        op_done(&op);
        return r;
}

int paf_acme_account_deactivate(paf_acme_client *c, paf_error *error) {
        acme_op op;
        int r = op_init(&op, c, error);
        if (r < 0)
                return r;
        r = op_account(&op, false, error);
        acme_resp resp = {0};
        if (r >= 0) {
                json_t *p = json_pack("{s:s}", "status", "deactivated");
                _cleanup_free_ char *kid = strdup(op.kid);
                r = kid ? op_post(&op, kid, p, false, NULL, &resp, error) : -ENOMEM;
                json_decref(p);
        }
        if (r >= 0 && resp.status != 200)
                r = resp_error(&resp, "account deactivation", error);
        resp_clear(&resp);
        if (r >= 0) {
                char key[512];
                store_key_path(&op, "account.json", key, sizeof(key));
                (void)paf_acme_store_delete(c->store, key, NULL);
                store_key_path(&op, "account.key", key, sizeof(key));
                (void)paf_acme_store_delete(c->store, key, NULL);
        }
        op_done(&op);
        return r;
}
