/* core/acme/tlsalpn.c — the tls-alpn-01 challenge certificate (RFC 8737), through GnuTLS. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <paf/common.h>

#include "tlsalpn.h"

/* Validators connect within minutes; a week covers any clock skew. */
#define CERT_LIFETIME_SEC (7 * 24 * 3600)
#define CERT_BACKDATE_SEC 3600

typedef struct parsed_id {
        bool is_ip;
        unsigned char ip[16];
        size_t ip_len;
        char name[254]; /* lower case */
} parsed_id;

static bool is_b64url(char ch) {
        return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
               ch == '-' || ch == '_';
}

/* token "." thumbprint, both base64url (RFC 8555 §8.1). */
static bool key_authorization_is_valid(const char *ka) {
        const char *dot = strchr(ka, '.');
        if (!dot || dot == ka || dot[1] == '\0')
                return false;
        for (const char *p = ka; *p; p++)
                if (p != dot && !is_b64url(*p))
                        return false;
        return true;
}

/* A host name of LDH labels (RFC 1123); no wildcard: RFC 8737 §3 excludes them. */
static int parse_identifier(const char *s, parsed_id *ret) {
        *ret = (parsed_id){0};
        if (inet_pton(AF_INET, s, ret->ip) == 1) {
                ret->is_ip = true;
                ret->ip_len = 4;
                return 0;
        }
        if (inet_pton(AF_INET6, s, ret->ip) == 1) {
                ret->is_ip = true;
                ret->ip_len = 16;
                return 0;
        }
        size_t len = strnlen(s, sizeof(ret->name));
        if (len == 0 || len >= sizeof(ret->name))
                return -EINVAL;
        size_t label = 0;
        for (size_t i = 0; i <= len; i++) {
                char ch = s[i];
                if (ch == '.' || ch == '\0') {
                        if (label == 0 || label > 63 || s[i - 1] == '-')
                                return -EINVAL;
                        label = 0;
                } else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                           (ch >= 'A' && ch <= 'Z') || ch == '-') {
                        if (label == 0 && ch == '-')
                                return -EINVAL;
                        label++;
                } else
                        return -EINVAL;
                ret->name[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
        }
        return 0;
}

int paf_acme_tlsalpn_server_name(const char *s, char **ret) {
        if (!s || !ret)
                return -EINVAL;
        parsed_id id;
        int r = parse_identifier(s, &id);
        if (r < 0)
                return r;
        char *out;
        if (!id.is_ip)
                out = strdup(id.name);
        else if (id.ip_len == 4) {
                if (asprintf(&out, "%u.%u.%u.%u.in-addr.arpa", id.ip[3], id.ip[2], id.ip[1],
                             id.ip[0]) < 0)
                        out = NULL;
        } else {
                static const char hex[] = "0123456789abcdef";
                /* 32 nibbles, each followed by a dot, then "ip6.arpa". */
                out = malloc(64 + sizeof("ip6.arpa"));
                if (out) {
                        char *p = out;
                        for (int i = 15; i >= 0; i--) {
                                *p++ = hex[id.ip[i] & 0xf];
                                *p++ = '.';
                                *p++ = hex[id.ip[i] >> 4];
                                *p++ = '.';
                        }
                        strcpy(p, "ip6.arpa");
                }
        }
        if (!out)
                return -ENOMEM;
        *ret = out;
        return 0;
}

static int gnutls_to_errno(int g) {
        return g == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EIO;
}

static int dup_datum(const gnutls_datum_t *d, char **ret) {
        char *s = malloc(d->size + 1);
        if (!s)
                return -ENOMEM;
        memcpy(s, d->data, d->size);
        s[d->size] = '\0';
        *ret = s;
        return 0;
}

int paf_acme_tlsalpn_cert(const char *s, const char *key_authorization, char **ret_cert_pem,
                          char **ret_key_pem) {
        if (!s || !key_authorization || !ret_cert_pem || !ret_key_pem)
                return -EINVAL;
        parsed_id id;
        int r = parse_identifier(s, &id);
        if (r < 0)
                return r;
        if (!key_authorization_is_valid(key_authorization))
                return -EINVAL;

        /* The extension's value: OCTET STRING (tag 4, length 32) of the digest. */
        unsigned char ext[2 + 32] = {0x04, 0x20};
        gnutls_x509_privkey_t key = NULL;
        gnutls_x509_crt_t crt = NULL;
        gnutls_datum_t cert_pem = {NULL, 0}, key_pem = {NULL, 0};
        char *cert_out = NULL, *key_out = NULL;
        const char *step;
        int g;

        step = "SHA-256";
        g = gnutls_hash_fast(GNUTLS_DIG_SHA256, key_authorization, strlen(key_authorization),
                             ext + 2);
        if (g < 0)
                goto fail;
        step = "P-256 key";
        g = gnutls_x509_privkey_init(&key);
        if (g >= 0)
                g = gnutls_x509_privkey_generate(
                        key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
        if (g < 0)
                goto fail;

        step = "certificate";
        g = gnutls_x509_crt_init(&crt);
        if (g < 0)
                goto fail;
        g = gnutls_x509_crt_set_version(crt, 3);
        if (g < 0)
                goto fail;
        unsigned char serial[16];
        step = "serial";
        g = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
        if (g < 0)
                goto fail;
        /* Positive and of full length (RFC 5280 §4.1.2.2). */
        serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
        g = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
        if (g < 0)
                goto fail;
        time_t now = time(NULL);
        step = "validity";
        g = gnutls_x509_crt_set_activation_time(crt, now - CERT_BACKDATE_SEC);
        if (g >= 0)
                g = gnutls_x509_crt_set_expiration_time(crt, now + CERT_LIFETIME_SEC);
        if (g < 0)
                goto fail;

        /* A subject for people reading it; validators look only at the SAN.
         * ub-common-name is 64: a longer name goes without. */
        char ipbuf[INET6_ADDRSTRLEN];
        const char *cn = id.name;
        if (id.is_ip)
                cn = inet_ntop(id.ip_len == 4 ? AF_INET : AF_INET6, id.ip, ipbuf, sizeof(ipbuf));
        else if (strlen(id.name) > 64)
                cn = "acme-tls/1";
        step = "subject";
        g = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, strlen(cn));
        if (g < 0)
                goto fail;
        step = "subjectAltName";
        if (id.is_ip)
                g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, id.ip,
                                                         (unsigned)id.ip_len, GNUTLS_FSAN_SET);
        else
                g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, id.name,
                                                         (unsigned)strlen(id.name),
                                                         GNUTLS_FSAN_SET);
        if (g < 0)
                goto fail;
        step = "acmeIdentifier";
        g = gnutls_x509_crt_set_extension_by_oid(crt, PAF_ACME_TLSALPN_OID, ext, sizeof(ext), 1);
        if (g < 0)
                goto fail;
        g = gnutls_x509_crt_set_key(crt, key);
        if (g < 0)
                goto fail;
        step = "signature";
        g = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
        if (g < 0)
                goto fail;

        step = "PEM";
        g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cert_pem);
        if (g >= 0)
                g = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL,
                                                      GNUTLS_PKCS_PLAIN, &key_pem);
        if (g < 0)
                goto fail;
        r = dup_datum(&cert_pem, &cert_out);
        if (r >= 0)
                r = dup_datum(&key_pem, &key_out);
        goto out;

fail:
        paf_log(PAF_LOG_ERR, "acme tls-alpn-01 certificate for %s: %s: %s", s, step,
                gnutls_strerror(g));
        r = gnutls_to_errno(g);
out:
        gnutls_free(cert_pem.data);
        if (key_pem.data) {
                gnutls_memset(key_pem.data, 0, key_pem.size);
                gnutls_free(key_pem.data);
        }
        gnutls_x509_crt_deinit(crt);
        gnutls_x509_privkey_deinit(key);
        if (r < 0) {
                free(cert_out);
                free(key_out);
                return r;
        }
        *ret_cert_pem = cert_out;
        *ret_key_pem = key_out;
        return 0;
}

/* ---- the challenge table ---- */

typedef struct entry {
        char *server_name;
        char *cert_pem, *key_pem;
} entry;

struct paf_acme_tlsalpn {
        unsigned n_ref;
        /* The ACME client adds while the listener's threads look up. */
        pthread_mutex_t lock;
        entry *items;
        size_t n_items, n_alloc;
};

static void entry_clear(entry *e) {
        free(e->server_name);
        free(e->cert_pem);
        if (e->key_pem) {
                explicit_bzero(e->key_pem, strlen(e->key_pem));
                free(e->key_pem);
        }
}

int paf_acme_tlsalpn_new(paf_acme_tlsalpn **ret) {
        if (!ret)
                return -EINVAL;
        paf_acme_tlsalpn *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->n_ref = 1;
        pthread_mutex_init(&t->lock, NULL);
        *ret = t;
        return 0;
}

paf_acme_tlsalpn *paf_acme_tlsalpn_ref(paf_acme_tlsalpn *t) {
        if (t)
                __atomic_add_fetch(&t->n_ref, 1, __ATOMIC_RELAXED);
        return t;
}

paf_acme_tlsalpn *paf_acme_tlsalpn_unref(paf_acme_tlsalpn *t) {
        if (!t || __atomic_sub_fetch(&t->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        for (size_t i = 0; i < t->n_items; i++)
                entry_clear(&t->items[i]);
        free(t->items);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
}

/* Caller holds the lock. */
static entry *table_find(paf_acme_tlsalpn *t, const char *server_name) {
        for (size_t i = 0; i < t->n_items; i++)
                if (strcasecmp(t->items[i].server_name, server_name) == 0)
                        return &t->items[i];
        return NULL;
}

int paf_acme_tlsalpn_add(paf_acme_tlsalpn *t, const char *identifier,
                         const char *key_authorization) {
        if (!t || !identifier || !key_authorization)
                return -EINVAL;
        entry e = {0};
        int r = paf_acme_tlsalpn_server_name(identifier, &e.server_name);
        if (r >= 0)
                r = paf_acme_tlsalpn_cert(identifier, key_authorization, &e.cert_pem, &e.key_pem);
        if (r < 0) {
                entry_clear(&e);
                return r;
        }
        pthread_mutex_lock(&t->lock);
        entry *old = table_find(t, e.server_name);
        if (old) {
                entry_clear(old);
                *old = e;
        } else if (t->n_items == t->n_alloc) {
                size_t n = t->n_alloc ? t->n_alloc * 2 : 4;
                entry *items = realloc(t->items, n * sizeof(*items));
                if (items) {
                        t->items = items;
                        t->n_alloc = n;
                        t->items[t->n_items++] = e;
                } else
                        r = -ENOMEM;
        } else
                t->items[t->n_items++] = e;
        pthread_mutex_unlock(&t->lock);
        if (r < 0)
                entry_clear(&e);
        return r;
}

int paf_acme_tlsalpn_remove(paf_acme_tlsalpn *t, const char *identifier) {
        if (!t || !identifier)
                return -EINVAL;
        char *name = NULL;
        int r = paf_acme_tlsalpn_server_name(identifier, &name);
        if (r < 0)
                return r;
        r = -ENOENT;
        pthread_mutex_lock(&t->lock);
        entry *e = table_find(t, name);
        if (e) {
                entry_clear(e);
                *e = t->items[--t->n_items];
                r = 0;
        }
        pthread_mutex_unlock(&t->lock);
        free(name);
        return r;
}

int paf_acme_tlsalpn_lookup(paf_acme_tlsalpn *t, const char *server_name, char **ret_cert_pem,
                            char **ret_key_pem) {
        if (!t || !server_name || !ret_cert_pem || !ret_key_pem)
                return -EINVAL;
        int r = -ENOENT;
        char *cert = NULL, *key = NULL;
        pthread_mutex_lock(&t->lock);
        entry *e = table_find(t, server_name);
        if (e) {
                cert = strdup(e->cert_pem);
                key = strdup(e->key_pem);
                r = cert && key ? 0 : -ENOMEM;
        }
        pthread_mutex_unlock(&t->lock);
        if (r < 0) {
                free(cert);
                free(key);
                return r;
        }
        *ret_cert_pem = cert;
        *ret_key_pem = key;
        return 0;
}
