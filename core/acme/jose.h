/* core/acme/jose.h — ACME crypto and JSON (internal): base64url, keys, JWK, JWS, CSR. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <jansson.h>

#include <paf/acme.h>
#include <paf/error.h>

/*
 * Every function returning int returns >= 0 on success and a negative errno
 * on failure, with the reason in error (which may be NULL); on failure the
 * ret pointers are left untouched. Returned strings are malloc()ed and
 * NUL-terminated; returned json_t references belong to the caller.
 */

/* base64url without padding (RFC 7515 §2). NULL only when out of memory. */
char *paf_b64url_encode(const void *data, size_t size);
/* Strict: no padding, no whitespace, only the URL-safe alphabet, and the
 * unused bits of the last character zero (one encoding per byte string).
 * *ret gets size + 1 bytes, the last one 0, so text decodes to a C string. */
int paf_b64url_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_size, paf_error *error);

/* paf_acme_key_type and its names: paf/acme.h. */

/* A private key with its public half: an account key or a certificate key. */
typedef struct paf_acme_key paf_acme_key;

int paf_acme_key_generate(paf_acme_key_type type, paf_acme_key **ret, paf_error *error);
/* PEM: PKCS#8 ("PRIVATE KEY") or the legacy "EC/RSA PRIVATE KEY" forms. P-256,
 * P-384 and RSA of 2048 bits or more are accepted (an existing account key of
 * another RSA size is still usable with RS256). */
int paf_acme_key_load_pem(const void *pem, size_t size, paf_acme_key **ret, paf_error *error);
/* Unencrypted PKCS#8 PEM. The caller stores it mode 0600. */
int paf_acme_key_save_pem(const paf_acme_key *key, char **ret_pem, size_t *ret_size,
                          paf_error *error);
paf_acme_key *paf_acme_key_free(paf_acme_key *key);
static inline void paf_acme_key_freep(paf_acme_key **k) {
        paf_acme_key_free(*k);
}

/* "ES256", "ES384" or "RS256". */
const char *paf_acme_key_alg(const paf_acme_key *key);
/* PAF_ACME_KEY_RSA2048 stands for any RSA size other than 3072. */
paf_acme_key_type paf_acme_key_get_type(const paf_acme_key *key);
/* Borrowed: valid as long as key. */
gnutls_privkey_t paf_acme_key_get_privkey(const paf_acme_key *key);
gnutls_pubkey_t paf_acme_key_get_pubkey(const paf_acme_key *key);

/* The public JWK (RFC 7517/7518): {crv,kty,x,y} with coordinates of the
 * curve's full size, or {e,kty,n} without leading zero bytes. Only EC P-256,
 * P-384 and RSA keys. */
int paf_acme_jwk_from_pubkey(gnutls_pubkey_t pub, json_t **ret, paf_error *error);
int paf_acme_key_jwk(const paf_acme_key *key, json_t **ret, paf_error *error);
/* RFC 7638 thumbprint, base64url: SHA-256 over the required members only,
 * in lexicographic order, without whitespace. */
int paf_acme_jwk_thumbprint(const json_t *jwk, char **ret, paf_error *error);
int paf_acme_key_thumbprint(const paf_acme_key *key, char **ret, paf_error *error);

/*
 * A JWS in flattened JSON serialization (RFC 8555 §6.2): {protected, payload,
 * signature}. The protected header carries alg, nonce (omitted when NULL: the
 * inner JWS of a keyChange has none), url, and kid when kid is not NULL,
 * the key's jwk otherwise (newAccount, revokeCert signed by the certificate
 * key). payload NULL is POST-as-GET: the empty payload.
 */
int paf_acme_jws_sign(const paf_acme_key *key, const char *kid, const char *nonce, const char *url,
                      const json_t *payload, json_t **ret, paf_error *error);
/* The externalAccountBinding member of a newAccount payload (RFC 8555
 * §7.3.4): an HS256 JWS with {alg, kid: eab_kid, url: the newAccount URL}
 * over the account key's JWK, the MAC key being eab_hmac_key base64url-decoded. */
int paf_acme_eab_sign(const paf_acme_key *account_key, const char *eab_kid,
                      const char *eab_hmac_key, const char *url, json_t **ret, paf_error *error);

/* A challenge token is base64url and nothing else (RFC 8555 §8.1): checked
 * before it goes into a path or a key authorization. */
bool paf_acme_token_is_valid(const char *token);
/* token '.' thumbprint (RFC 8555 §8.1). It is also, byte for byte, the body
 * of the http-01 response (§8.3). */
int paf_acme_key_authorization(const paf_acme_key *account_key, const char *token, char **ret,
                               paf_error *error);
#define paf_acme_http01_body paf_acme_key_authorization
/* The acmeIdentifier extension's value for tls-alpn-01 (RFC 8737 §3):
 * SHA-256 of the key authorization. */
#define PAF_ACME_TLS_ALPN01_DIGEST_SIZE 32
int paf_acme_tls_alpn01_digest(const char *key_authorization,
                               uint8_t ret[PAF_ACME_TLS_ALPN01_DIGEST_SIZE], paf_error *error);

/* A CSR for finalize: every identifier (DNS names, wildcards included, and
 * IPv4/IPv6 addresses per RFC 8738) as a subjectAltName, signed by the
 * certificate key. ret_der (may be NULL) gets the DER (malloc()ed), ret_b64url (may be
 * NULL) the base64url text the finalize payload's "csr" takes. */
int paf_acme_csr(const paf_acme_key *cert_key, const char *const *identifiers, size_t n_identifiers,
                 uint8_t **ret_der, size_t *ret_der_size, char **ret_b64url, paf_error *error);
