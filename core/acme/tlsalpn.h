/* core/acme/tlsalpn.h — ACME tls-alpn-01 (RFC 8737, RFC 8738 §6 for IP addresses): the
 * self-signed certificate a TLS listener shows on the acme-tls/1 protocol. */
#pragma once

#include <paf/common.h>

/* Internal for now; shaped for include/paf/acme.h. */

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
int paf_acme_tlsalpn_cert(const char *identifier, const char *key_authorization,
                          char **ret_cert_pem, char **ret_key_pem);

/*
 * The server name the validator sends in the handshake for identifier: the
 * name itself in lower case, or for an IP address its reverse name
 * ("4.3.2.1.in-addr.arpa", the nibbles of an IPv6 address under ip6.arpa;
 * RFC 8738 §6), for a listener matching ClientHellos to challenges. To free().
 */
int paf_acme_tlsalpn_server_name(const char *identifier, char **ret);

/*
 * The tls-alpn-01 challenges being validated, for a TLS listener to look up
 * on an acme-tls/1 handshake: server name -> certificate and key. Each
 * certificate is made when its challenge is added, so that a handshake
 * costs no key generation. Safe to use from several threads; reference
 * counted.
 */
typedef struct paf_acme_tlsalpn paf_acme_tlsalpn;

int paf_acme_tlsalpn_new(paf_acme_tlsalpn **ret);
paf_acme_tlsalpn *paf_acme_tlsalpn_ref(paf_acme_tlsalpn *t);
paf_acme_tlsalpn *paf_acme_tlsalpn_unref(paf_acme_tlsalpn *t);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_acme_tlsalpn *, paf_acme_tlsalpn_unref)
/* Answer identifier's challenge (a new certificate replaces an older one). */
int paf_acme_tlsalpn_add(paf_acme_tlsalpn *t, const char *identifier,
                         const char *key_authorization);
/* -ENOENT if there was none. */
int paf_acme_tlsalpn_remove(paf_acme_tlsalpn *t, const char *identifier);
/*
 * The certificate and key (PEM, copies to free()) for the server name of
 * an acme-tls/1 ClientHello, compared case-insensitively: a DNS name, or
 * for an IP identifier its reverse name (SNI carries no addresses).
 * -ENOENT when no challenge is for that name.
 */
int paf_acme_tlsalpn_lookup(paf_acme_tlsalpn *t, const char *server_name, char **ret_cert_pem,
                            char **ret_key_pem);
