/* core/acme/http01.c — the http-01 challenge table and the handler that answers it in front of
 * the application's (RFC 8555 §8.3). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <paf/common.h>
#include <paf/http.h>

#include "http01.h"

typedef struct challenge {
        char *token;
        char *key_authorization;
} challenge;

struct paf_acme_http01 {
        unsigned n_ref;
        /* The ACME client adds and removes tokens from its own thread while
         * the server's workers look them up. */
        pthread_mutex_t lock;
        challenge *items;
        size_t n_items, n_alloc;
};

struct paf_acme_http01_chain {
        paf_acme_http01 *table;
        paf_http_request_handler_t handler;
        paf_http_error_handler_t error_handler;
        void *userdata;
};

static bool is_b64url(char ch) {
        return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
               ch == '-' || ch == '_';
}

static bool span_is_b64url(const char *s, size_t len) {
        for (size_t i = 0; i < len; i++)
                if (!is_b64url(s[i]))
                        return false;
        return true;
}

bool paf_acme_http01_token_is_valid(const char *s) {
        if (!s)
                return false;
        size_t len = strnlen(s, PAF_ACME_TOKEN_MAX + 1);
        return len > 0 && len <= PAF_ACME_TOKEN_MAX && span_is_b64url(s, len);
}

int paf_acme_http01_new(paf_acme_http01 **ret) {
        if (!ret)
                return -EINVAL;
        paf_acme_http01 *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->n_ref = 1;
        pthread_mutex_init(&t->lock, NULL);
        *ret = t;
        return 0;
}

paf_acme_http01 *paf_acme_http01_ref(paf_acme_http01 *t) {
        if (t)
                __atomic_add_fetch(&t->n_ref, 1, __ATOMIC_RELAXED);
        return t;
}

paf_acme_http01 *paf_acme_http01_unref(paf_acme_http01 *t) {
        if (!t || __atomic_sub_fetch(&t->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        for (size_t i = 0; i < t->n_items; i++) {
                free(t->items[i].token);
                free(t->items[i].key_authorization);
        }
        free(t->items);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
}

/* Caller holds the lock. */
static challenge *find(paf_acme_http01 *t, const char *token, size_t len) {
        for (size_t i = 0; i < t->n_items; i++)
                if (strlen(t->items[i].token) == len && memcmp(t->items[i].token, token, len) == 0)
                        return &t->items[i];
        return NULL;
}

int paf_acme_http01_add(paf_acme_http01 *t, const char *token, const char *key_authorization) {
        if (!t || !paf_acme_http01_token_is_valid(token) || !key_authorization)
                return -EINVAL;
        /* token "." thumbprint: catches arguments swapped or a key
         * authorization computed for another challenge. */
        size_t tlen = strlen(token);
        size_t klen = strnlen(key_authorization, PAF_ACME_KEY_AUTHORIZATION_MAX + 1);
        if (klen > PAF_ACME_KEY_AUTHORIZATION_MAX || klen < tlen + 2 ||
            memcmp(key_authorization, token, tlen) != 0 || key_authorization[tlen] != '.' ||
            !span_is_b64url(key_authorization + tlen + 1, klen - tlen - 1))
                return -EINVAL;

        char *ka = strdup(key_authorization);
        if (!ka)
                return -ENOMEM;
        int r = 0;
        pthread_mutex_lock(&t->lock);
        challenge *c = find(t, token, tlen);
        if (c) {
                free(c->key_authorization);
                c->key_authorization = ka;
                goto out;
        }
        if (t->n_items == t->n_alloc) {
                size_t n = t->n_alloc ? t->n_alloc * 2 : 4;
                challenge *items = realloc(t->items, n * sizeof(*items));
                if (!items) {
                        r = -ENOMEM;
                        goto out;
                }
                t->items = items;
                t->n_alloc = n;
        }
        char *tok = strdup(token);
        if (!tok) {
                r = -ENOMEM;
                goto out;
        }
        t->items[t->n_items++] = (challenge){tok, ka};
out:
        pthread_mutex_unlock(&t->lock);
        if (r < 0)
                free(ka);
        return r;
}

int paf_acme_http01_remove(paf_acme_http01 *t, const char *token) {
        if (!t || !token)
                return -EINVAL;
        int r = -ENOENT;
        pthread_mutex_lock(&t->lock);
        challenge *c = find(t, token, strlen(token));
        if (c) {
                free(c->token);
                free(c->key_authorization);
                *c = t->items[--t->n_items];
                r = 0;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

size_t paf_acme_http01_count(paf_acme_http01 *t) {
        if (!t)
                return 0;
        pthread_mutex_lock(&t->lock);
        size_t n = t->n_items;
        pthread_mutex_unlock(&t->lock);
        return n;
}

/* ---- which requests are ours ---- */

static int unhex(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/*
 * The path as an application that decodes and normalises it would see it:
 * percent-decoded (%2F a separator too), empty and "." segments dropped,
 * ".." taking one off. Into out (len + 2 bytes at least). So that
 * "/x/../.well-known//acme-challenge/%2e%2e/f" is recognised as ours and
 * never handed on. A malformed escape or an encoded NUL stays as written:
 * whatever the application makes of it, the segments around it still count.
 */
static void normalize_path(const char *path, size_t len, char *out) {
        size_t o = 0;
        size_t i = 0;
        out[o++] = '/';
        while (i < len) {
                /* One segment, decoded, appended after out[o - 1] == '/'. */
                size_t start = o;
                while (i < len) {
                        char ch = path[i];
                        int h = -1, l = -1;
                        if (ch == '%' && i + 2 < len) {
                                h = unhex(path[i + 1]);
                                l = unhex(path[i + 2]);
                        }
                        if (h >= 0 && l >= 0 && (h | l) != 0) {
                                ch = (char)(h * 16 + l);
                                i += 3;
                        } else
                                i++;
                        if (ch == '/')
                                break;
                        out[o++] = ch;
                }
                size_t seg = o - start;
                if (seg == 0 || (seg == 1 && out[start] == '.')) {
                        o = start;
                } else if (seg == 2 && out[start] == '.' && out[start + 1] == '.') {
                        o = start;
                        /* Back over the previous segment, keeping the root. */
                        if (o > 1) {
                                o--;
                                while (o > 0 && out[o - 1] != '/')
                                        o--;
                        }
                } else
                        out[o++] = '/';
        }
        out[o] = '\0';
}

/* The path of an origin-form or absolute-form target, up to '?' or '#'. */
static bool target_path(const char *target, const char **ret, size_t *ret_len) {
        const char *p = target;
        if (*p != '/') {
                if (strncasecmp(p, "http://", 7) == 0)
                        p += 7;
                else if (strncasecmp(p, "https://", 8) == 0)
                        p += 8;
                else
                        return false; /* "*", authority-form */
                p += strcspn(p, "/?#");
                if (*p != '/')
                        return false;
        }
        *ret = p;
        *ret_len = strcspn(p, "?#");
        return true;
}

static void respond(paf_http_request *req, int status, const char *type, const char *body,
                    size_t len) {
        int r = paf_http_respond(req, status, type, body, len);
        if (r < 0 && r != -ECONNRESET)
                paf_log(PAF_LOG_WARNING, "acme http-01: %s %s: cannot answer %d: %s",
                        paf_http_request_get_method(req), paf_http_request_get_target(req), status,
                        strerror(-r));
}

static void respond_405(paf_http_request *req) {
        static const char body[] = "Method Not Allowed\n";
        _paf_cleanup_(paf_http_headers_freep) paf_http_headers *h = NULL;
        int r = paf_http_headers_new(&h);
        if (r >= 0)
                r = paf_http_headers_add(h, "Allow", "GET, HEAD");
        if (r >= 0)
                r = paf_http_headers_add(h, "Content-Type", "text/plain");
        if (r >= 0)
                r = paf_http_response_start(req, 405, h, sizeof(body) - 1);
        if (r >= 0)
                /* A static body: it outlives the write, no handler needed. */
                r = paf_http_response_write(req, body, sizeof(body) - 1, NULL, NULL);
        if (r >= 0)
                r = paf_http_response_finish(req, NULL);
        if (r < 0 && r != -ECONNRESET) {
                paf_log(PAF_LOG_WARNING, "acme http-01: %s %s: cannot answer 405: %s",
                        paf_http_request_get_method(req), paf_http_request_get_target(req),
                        strerror(-r));
                /* Not started: a plain answer still frees the connection. */
                respond(req, 405, "text/plain", body, sizeof(body) - 1);
        }
}

bool paf_acme_http01_handle(paf_acme_http01 *t, paf_http_request *req) {
        static const char prefix[] = PAF_ACME_HTTP01_PREFIX;
        static const size_t plen = sizeof(prefix) - 1;
        static const char not_found[] = "Not Found\n";
        if (!t || !req)
                return false;
        const char *target = paf_http_request_get_target(req);
        const char *method = paf_http_request_get_method(req);
        const char *path;
        size_t len;
        if (!target || !method || !target_path(target, &path, &len))
                return false;

        /* The literal form validators send: prefix + token. */
        bool literal = len >= plen && memcmp(path, prefix, plen) == 0;
        bool ours = literal || (len == plen - 1 && memcmp(path, prefix, len) == 0);
        if (!ours) {
                char *norm = malloc(len + 2);
                if (!norm) {
                        /* Cannot tell: answering is the safe side. */
                        respond(req, 503, "text/plain", "Service Unavailable\n", 20);
                        return true;
                }
                normalize_path(path, len, norm);
                /* Every segment ends in '/' there: the bare directory too. */
                ours = strncmp(norm, prefix, plen) == 0;
                free(norm);
        }
        if (!ours)
                return false;

        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
                respond_405(req);
                return true;
        }
        const char *token = path + plen;
        size_t tlen = literal ? len - plen : 0;
        char *ka = NULL;
        if (tlen > 0 && tlen <= PAF_ACME_TOKEN_MAX && span_is_b64url(token, tlen)) {
                pthread_mutex_lock(&t->lock);
                challenge *c = find(t, token, tlen);
                /* A copy: the table may change once the lock is dropped. */
                if (c)
                        ka = strdup(c->key_authorization);
                pthread_mutex_unlock(&t->lock);
                if (c && !ka) {
                        respond(req, 503, "text/plain", "Service Unavailable\n", 20);
                        return true;
                }
        }
        if (!ka) {
                respond(req, 404, "text/plain", not_found, sizeof(not_found) - 1);
                return true;
        }
        respond(req, 200, "application/octet-stream", ka, strlen(ka));
        free(ka);
        return true;
}

/* ---- the chain ---- */

int paf_acme_http01_chain_new(paf_acme_http01 *t, paf_http_request_handler_t handler,
                              paf_http_error_handler_t error_handler, void *userdata,
                              paf_acme_http01_chain **ret) {
        if (!t || !handler || !ret)
                return -EINVAL;
        paf_acme_http01_chain *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (paf_acme_http01_chain){paf_acme_http01_ref(t), handler, error_handler, userdata};
        *ret = c;
        return 0;
}

paf_acme_http01_chain *paf_acme_http01_chain_free(paf_acme_http01_chain *c) {
        if (!c)
                return NULL;
        paf_acme_http01_unref(c->table);
        free(c);
        return NULL;
}

void paf_acme_http01_chain_handler(paf_http_request *req, void *userdata) {
        paf_acme_http01_chain *c = userdata;
        if (!paf_acme_http01_handle(c->table, req))
                c->handler(req, c->userdata);
}

void paf_acme_http01_chain_error_handler(const char *peer, int status, const char *reason,
                                         void *userdata) {
        paf_acme_http01_chain *c = userdata;
        if (c->error_handler)
                c->error_handler(peer, status, reason, c->userdata);
}
