/* paf/acme.h — ACME (RFC 8555): the challenge tables a paf server answers from
 * (http-01 in front of the application's handler, tls-alpn-01 on its TLS
 * listener), and the client that obtains, stores and renews certificates. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include <paf/common.h>
#include <paf/error.h>
#include <paf/http.h>
#include <paf/protocol.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- http-01 (RFC 8555 §8.3), answered by paf's own HTTP server ---- */

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

PAF_EXPORT int paf_acme_http01_new(paf_acme_http01 **ret);
PAF_EXPORT paf_acme_http01 *paf_acme_http01_ref(paf_acme_http01 *t);
PAF_EXPORT paf_acme_http01 *paf_acme_http01_unref(paf_acme_http01 *t);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_acme_http01 *, paf_acme_http01_unref)

/* Whether s is a token this table takes: 1..PAF_ACME_TOKEN_MAX characters
 * of the base64url alphabet (RFC 4648 §5, no padding). */
PAF_EXPORT bool paf_acme_http01_token_is_valid(const char *s);

/*
 * Serve key_authorization for token; a token already present gets the new
 * value. -EINVAL if token is not valid, or if key_authorization is not
 * token "." thumbprint (RFC 8555 §8.1) with a base64url thumbprint.
 */
PAF_EXPORT int paf_acme_http01_add(paf_acme_http01 *t, const char *token,
                                   const char *key_authorization);
/* Stop serving token; -ENOENT if it was not there. */
PAF_EXPORT int paf_acme_http01_remove(paf_acme_http01 *t, const char *token);
PAF_EXPORT size_t paf_acme_http01_count(paf_acme_http01 *t);

/*
 * Answer req if it is for the challenge path, /.well-known/acme-challenge/…
 * (origin or absolute form): GET and HEAD of a token in the table get 200,
 * application/octet-stream, the key authorization; any other name under that
 * path gets 404 (a name that is not a token, "..", "%2e" included: nothing
 * under it ever reaches the application or its files); other methods get 405
 * with Allow. Returns true if it answered (req is then finished or gone),
 * false if req is not for the challenge path and stays the caller's.
 */
PAF_EXPORT bool paf_acme_http01_handle(paf_acme_http01 *t, paf_http_request *req);

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

PAF_EXPORT int paf_acme_http01_chain_new(paf_acme_http01 *t, paf_http_request_handler_t handler,
                                         paf_http_error_handler_t error_handler, void *userdata,
                                         paf_acme_http01_chain **ret);
PAF_EXPORT paf_acme_http01_chain *paf_acme_http01_chain_free(paf_acme_http01_chain *c);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_acme_http01_chain *, paf_acme_http01_chain_free)
PAF_EXPORT void paf_acme_http01_chain_handler(paf_http_request *req, void *userdata);
PAF_EXPORT void paf_acme_http01_chain_error_handler(const char *peer, int status,
                                                    const char *reason, void *userdata);

/* ---- tls-alpn-01 (RFC 8737, RFC 8738 §6), answered on paf's TLS listener ---- */

/* The ALPN protocol of the validation handshake (RFC 8737 §6.2). */
#define PAF_ACME_TLSALPN_PROTOCOL "acme-tls/1"
/* id-pe-acmeIdentifier (RFC 8737 §6.1). */
#define PAF_ACME_TLSALPN_OID "1.3.6.1.5.5.7.1.31"

/*
 * A fresh P-256 key and a self-signed certificate for identifier (a DNS
 * name, or an IPv4/IPv6 address) whose only subjectAltName is that
 * identifier (a dNSName in lower case, or an iPAddress) and which carries
 * the critical acmeIdentifier extension: the DER OCTET STRING of
 * SHA-256(key_authorization). Both as PEM (the key as PKCS#8), for the
 * caller to free(). -EINVAL for a wildcard or malformed name or a
 * malformed key authorization (token "." thumbprint, base64url).
 */
PAF_EXPORT int paf_acme_tlsalpn_cert(const char *identifier, const char *key_authorization,
                                     char **ret_cert_pem, char **ret_key_pem);

/*
 * The server name the validator sends in the handshake for identifier: the
 * name itself in lower case, or for an IP address its reverse name
 * ("4.3.2.1.in-addr.arpa", the nibbles of an IPv6 address under ip6.arpa;
 * RFC 8738 §6), for a listener matching ClientHellos to challenges. To free().
 */
PAF_EXPORT int paf_acme_tlsalpn_server_name(const char *identifier, char **ret);

/*
 * The tls-alpn-01 challenges being validated, for a TLS listener to look up
 * on an acme-tls/1 handshake: server name -> certificate and key. Each
 * certificate is made when its challenge is added, so that a handshake
 * costs no key generation. Safe to use from several threads; reference
 * counted.
 */
typedef struct paf_acme_tlsalpn paf_acme_tlsalpn;

PAF_EXPORT int paf_acme_tlsalpn_new(paf_acme_tlsalpn **ret);
PAF_EXPORT paf_acme_tlsalpn *paf_acme_tlsalpn_ref(paf_acme_tlsalpn *t);
PAF_EXPORT paf_acme_tlsalpn *paf_acme_tlsalpn_unref(paf_acme_tlsalpn *t);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_acme_tlsalpn *, paf_acme_tlsalpn_unref)
/* Answer identifier's challenge (a new certificate replaces an older one). */
PAF_EXPORT int paf_acme_tlsalpn_add(paf_acme_tlsalpn *t, const char *identifier,
                                    const char *key_authorization);
/* -ENOENT if there was none. */
PAF_EXPORT int paf_acme_tlsalpn_remove(paf_acme_tlsalpn *t, const char *identifier);
/*
 * The certificate and key (PEM, copies to free()) for the server name of
 * an acme-tls/1 ClientHello, compared case-insensitively: a DNS name, or
 * for an IP identifier its reverse name (SNI carries no addresses).
 * -ENOENT when no challenge is for that name.
 */
PAF_EXPORT int paf_acme_tlsalpn_lookup(paf_acme_tlsalpn *t, const char *server_name,
                                       char **ret_cert_pem, char **ret_key_pem);

/* ---- keys ---- */

typedef enum paf_acme_key_type {
        PAF_ACME_KEY_P256,    /* ES256: the default for account and certificate keys */
        PAF_ACME_KEY_P384,    /* ES384 */
        PAF_ACME_KEY_RSA2048, /* RS256 */
        PAF_ACME_KEY_RSA3072, /* RS256 */
        _PAF_ACME_KEY_TYPE_MAX,
} paf_acme_key_type;

/* "p256", "p384", "rsa2048", "rsa3072" (the --key-type names), and back. */
PAF_EXPORT const char *paf_acme_key_type_to_string(paf_acme_key_type type);
PAF_EXPORT int paf_acme_key_type_from_string(const char *s, paf_acme_key_type *ret,
                                             paf_error *error);

/* ---- the ACME client (RFC 8555) ---- */

/* Let's Encrypt's directories. */
#define PAF_ACME_LETSENCRYPT_URL "https://acme-v02.api.letsencrypt.org/directory"
#define PAF_ACME_LETSENCRYPT_STAGING_URL "https://acme-staging-v02.api.letsencrypt.org/directory"

typedef enum paf_acme_challenge_type {
        PAF_ACME_CHALLENGE_HTTP01,    /* "http-01": the http01 table, served on port 80 */
        PAF_ACME_CHALLENGE_TLSALPN01, /* "tls-alpn-01": the tlsalpn table, on port 443 */
        _PAF_ACME_CHALLENGE_TYPE_MAX,
} paf_acme_challenge_type;

PAF_EXPORT const char *paf_acme_challenge_type_to_string(paf_acme_challenge_type type);
PAF_EXPORT int paf_acme_challenge_type_from_string(const char *s, paf_acme_challenge_type *ret,
                                                   paf_error *error);

/*
 * What a client works with. Strings and tables are copied or referenced by
 * paf_acme_client_new(); zero means the default.
 */
typedef struct paf_acme_options {
        const char *directory_url; /* NULL: PAF_ACME_LETSENCRYPT_URL */
        const char *ca_file;       /* trust these CAs for the ACME server; NULL: the system's */
        const char *state_dir;     /* the store (accounts, keys, certificates); required */
        /* The account's contacts: "mailto:…" URLs or bare e-mail addresses; NULL-terminated. */
        const char *const *contact;
        bool agree_tos; /* agree to the directory's termsOfService (required if it has one) */
        /* External account binding, when the CA requires it (RFC 8555 §7.3.4):
         * the key identifier and the base64url HMAC key the CA gave. */
        const char *eab_kid;
        const char *eab_hmac_key;
        paf_acme_key_type account_key_type; /* for a new account; an existing key is kept */
        paf_acme_key_type cert_key_type;
        bool keep_key; /* renewals reuse the certificate key instead of making a new one */
        /* Among the chains offered (Link: rel="alternate"), the one whose
         * topmost certificate's issuer has this common name; NULL or no match:
         * the default chain. */
        const char *preferred_chain;
        paf_acme_challenge_type challenge;
        /* Where the client publishes what the validator fetches: the table the
         * HTTP server answers from (http-01), the one the TLS listener's
         * tls.acme-tlsalpn key names (tls-alpn-01). The chosen one is required. */
        paf_acme_http01 *http01;
        paf_acme_tlsalpn *tlsalpn;
        uint64_t request_timeout_usec; /* each HTTP request; 0: 30 s */
        uint64_t timeout_usec;         /* each operation (an issuance…); 0: 10 min */
} paf_acme_options;

typedef struct paf_acme_client paf_acme_client;

/* reg must outlive the client. The operations below may run on any thread,
 * one at a time per client: each makes its own event loop and connections. */
PAF_EXPORT int paf_acme_client_new(paf_registry *reg, const paf_acme_options *options,
                                   paf_acme_client **ret, paf_error *error);
PAF_EXPORT paf_acme_client *paf_acme_client_free(paf_acme_client *c);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_acme_client *, paf_acme_client_free)

/* A stored certificate. Times are CLOCK_REALTIME microseconds. */
typedef struct paf_acme_cert {
        char *name;           /* its store name: from the first identifier */
        char **identifiers;   /* NULL-terminated: DNS names and IP addresses */
        char *issuer;         /* the leaf's issuer DN */
        char *serial;         /* hex */
        uint64_t not_before;
        uint64_t not_after;
        uint64_t renew_at;    /* when a renewal is due (ARI's window, or a third of the lifetime left) */
        uint64_t next_check_at; /* when to look again: renew_at, or earlier to ask ARI again */
        char *fullchain_path; /* PEM: the leaf then its chain */
        char *key_path;       /* PEM: its private key (mode 0600) */
        char *directory_url;  /* the CA that issued it */
        bool revoked;
        bool reused; /* paf_acme_issue(): the stored certificate was still good, no order made */
} paf_acme_cert;

PAF_EXPORT paf_acme_cert *paf_acme_cert_free(paf_acme_cert *cert);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_acme_cert *, paf_acme_cert_free)

enum {
        /* Order a new certificate even when the stored one is not due. */
        PAF_ACME_ISSUE_FORCE = 1u << 0,
};

/*
 * Obtain a certificate for identifiers (DNS names, IPv4/IPv6 addresses per
 * RFC 8738): the account is loaded from the store or created, an order made,
 * the challenges published in the options' table and removed once their
 * authorization is final (one already valid is reused), the order finalized
 * with a CSR and the chain stored. Blocks until done; on success *ret is the
 * stored certificate. A stored certificate for the same identifiers that
 * is not due for renewal is returned as is (reused), without any request
 * but ARI's when its check time came (the CA may move the window). A lock in the
 * store keeps two processes from ordering the same certificate at once.
 * Errors name the URL or identifier and, for an ACME error, the problem's type,
 * detail and subproblems.
 */
PAF_EXPORT int paf_acme_issue(paf_acme_client *c, const char *const *identifiers,
                              size_t n_identifiers, unsigned flags, paf_acme_cert **ret,
                              paf_error *error);

/* Revoke the stored certificate called name (RFC 8555 §7.6; reason: an
 * RFC 5280 CRLReason code, 0 unspecified … 5 cessationOfOperation …). */
PAF_EXPORT int paf_acme_revoke(paf_acme_client *c, const char *name, int reason,
                               paf_error *error);

/* Account key rollover (keyChange, RFC 8555 §7.3.5): a new key of the
 * options' account_key_type replaces the stored one. */
PAF_EXPORT int paf_acme_account_key_change(paf_acme_client *c, paf_error *error);
/* Deactivate the account (RFC 8555 §7.3.6); its stored state is removed. */
PAF_EXPORT int paf_acme_account_deactivate(paf_acme_client *c, paf_error *error);

/* Make the operation running on another thread (and any later one) end
 * soon with -ECANCELED. Safe from any thread; for shutting down. */
PAF_EXPORT void paf_acme_client_cancel(paf_acme_client *c);

/*
 * A certificate kept valid for a server, on its event loop: the stored one
 * is loaded (or a new one obtained) at start, and each renewal runs when
 * due, on a thread of its own, so that the loop never waits for the CA.
 * Every new certificate is handed to handler, on the loop, once stored
 * (the first one too): a server reloads its TLS listener from
 * cert->fullchain_path and cert->key_path there. A failed issuance or
 * renewal is logged and retried with backoff (10 s doubling to 1 h); the
 * current certificate stays. The manager uses client alone, and must be
 * freed before it.
 */
typedef struct paf_acme_manager paf_acme_manager;
typedef void (*paf_acme_manager_handler_t)(paf_acme_manager *m, const paf_acme_cert *cert,
                                           void *userdata);

PAF_EXPORT int paf_acme_manager_new(sd_event *event, paf_acme_client *client,
                                    const char *const *identifiers, size_t n_identifiers,
                                    paf_acme_manager_handler_t handler, void *userdata,
                                    paf_acme_manager **ret);
PAF_EXPORT int paf_acme_manager_start(paf_acme_manager *m);
/* Renew now, whatever the schedule says (a renewal already running goes on). */
PAF_EXPORT int paf_acme_manager_renew(paf_acme_manager *m);
/* The current certificate (NULL before the first), and one line on the
 * state: "valid until …, renewal at …", "obtaining…", "renewal failed: …,
 * retry at …" (for sd_notify STATUS=). */
PAF_EXPORT const paf_acme_cert *paf_acme_manager_get_cert(paf_acme_manager *m);
PAF_EXPORT const char *paf_acme_manager_get_status(paf_acme_manager *m);
/* How many issuances or renewals failed in a row (0 after a success). */
PAF_EXPORT unsigned paf_acme_manager_get_n_failures(paf_acme_manager *m);
/* Cancels a running renewal and waits for its thread. */
PAF_EXPORT paf_acme_manager *paf_acme_manager_free(paf_acme_manager *m);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_acme_manager *, paf_acme_manager_free)

/* The stored certificates of state_dir, without any request: names (sorted,
 * NULL-terminated, free with paf_acme_strv_free()), and one of them. */
PAF_EXPORT int paf_acme_cert_list(const char *state_dir, char ***ret, paf_error *error);
PAF_EXPORT int paf_acme_cert_load(const char *state_dir, const char *name, paf_acme_cert **ret,
                                  paf_error *error);
PAF_EXPORT void paf_acme_strv_free(char **l);
/* The store name of an identifier ("www.example.com", "127.0.0.1",
 * "2001_db8__1" for 2001:db8::1): the directory its files are in. */
PAF_EXPORT int paf_acme_cert_name(const char *identifier, char **ret, paf_error *error);

#ifdef __cplusplus
}
#endif
