/* core/acme/http01.h — ACME http-01 (RFC 8555 §8.3) answered by paf's own HTTP server:
 * a challenge table and a request handler that goes in front of the application's. */
#pragma once

#include <stdbool.h>

#include <paf/http.h>

/*
 * Internal for now; shaped to move as is into include/paf/acme.h (with
 * PAF_EXPORT): opaque objects, int returns with negative errno, outputs last.
 */

/* Tokens longer than this are refused (Let's Encrypt's are 43 characters). */
#define PAF_ACME_TOKEN_MAX 256
/* Likewise for a key authorization (token "." base64url SHA-256 thumbprint). */
#define PAF_ACME_KEY_AUTHORIZATION_MAX (PAF_ACME_TOKEN_MAX + 1 + 128)
#define PAF_ACME_HTTP01_PREFIX "/.well-known/acme-challenge/"

/*
 * The challenges being validated: token -> key authorization. Safe to use
 * from several threads (an ACME client adding tokens while the server's
 * workers answer them). Reference counted; every chain holds a reference.
 */
typedef struct paf_acme_http01 paf_acme_http01;

int paf_acme_http01_new(paf_acme_http01 **ret);
paf_acme_http01 *paf_acme_http01_ref(paf_acme_http01 *t);
paf_acme_http01 *paf_acme_http01_unref(paf_acme_http01 *t);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_acme_http01 *, paf_acme_http01_unref)

/* Whether s is a token this table takes: 1..PAF_ACME_TOKEN_MAX characters
 * of the base64url alphabet (RFC 4648 §5, no padding). */
bool paf_acme_http01_token_is_valid(const char *s);

/*
 * Serve key_authorization for token; a token already present gets the new
 * value. -EINVAL if token is not valid, or if key_authorization is not
 * token "." thumbprint (RFC 8555 §8.1) with a base64url thumbprint.
 */
int paf_acme_http01_add(paf_acme_http01 *t, const char *token, const char *key_authorization);
/* Stop serving token; -ENOENT if it was not there. */
int paf_acme_http01_remove(paf_acme_http01 *t, const char *token);
size_t paf_acme_http01_count(paf_acme_http01 *t);

/*
 * Answer req if it is for the challenge path, /.well-known/acme-challenge/…
 * (origin or absolute form): GET and HEAD of a token in the table get 200,
 * application/octet-stream, the key authorization; any other name under that
 * path gets 404 (a name that is not a token, "..", "%2e" included: nothing
 * under it ever reaches the application or its files); other methods get 405
 * with Allow. Returns true if it answered (req is then finished or gone),
 * false if req is not for the challenge path and stays the caller's.
 */
bool paf_acme_http01_handle(paf_acme_http01 *t, paf_http_request *req);

/*
 * A table in front of an application's handlers, for paf_http_server_new():
 *
 *   paf_acme_http01_chain_new(table, app_handler, app_error_handler, app, &chain);
 *   paf_http_server_new(event, paf_acme_http01_chain_handler,
 *                       paf_acme_http01_chain_error_handler, chain, &server);
 *
 * Challenge requests are answered by the table, everything else goes to
 * handler(req, userdata) and error_handler(…, userdata) (which may be NULL).
 * The chain holds a reference on the table; free it after the server.
 */
typedef struct paf_acme_http01_chain paf_acme_http01_chain;

int paf_acme_http01_chain_new(paf_acme_http01 *t, paf_http_request_handler_t handler,
                              paf_http_error_handler_t error_handler, void *userdata,
                              paf_acme_http01_chain **ret);
paf_acme_http01_chain *paf_acme_http01_chain_free(paf_acme_http01_chain *c);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_acme_http01_chain *, paf_acme_http01_chain_free)
void paf_acme_http01_chain_handler(paf_http_request *req, void *userdata);
void paf_acme_http01_chain_error_handler(const char *peer, int status, const char *reason,
                                         void *userdata);
