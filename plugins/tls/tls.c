/* plugins/tls/tls.c — tls.so: TLS (GnuTLS) as a layer over any flow, for clients and listeners. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <paf.h>
#include <paf/acme.h>

#include "config.h"

/* Before the transports: a context with a server name means TLS, and the
 * transports under it are then reached through the layer only. */
#define TLS_PRIORITY 10
#define DEFAULT_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define DEFAULT_ALPN "http/1.1"
#define DEFAULT_HANDSHAKE_TIMEOUT 10
/* Handshakes in progress per listener; beyond, new connections wait in the
 * kernel's backlog. As high as [http] max-connections' default: a handshake
 * waits for its peer, so a lower cap would queue normal clients behind
 * stalled ones; the connection limit (which counts handshakes) binds first. */
#define DEFAULT_MAX_HANDSHAKES 1024
#define MAX_MAX_HANDSHAKES 65536
#define MAX_ALPN 8
/* "tls.cert-file" plus ".2" … ".16": the certificates GnuTLS picks from by SNI. */
#define MAX_KEY_PAIRS 16
/* Plaintext per gnutls_record_send(): one full record. */
#define RECORD_SIZE 16384
/* Encrypted bytes handed to the inner flow and not taken yet. A consumer's
 * write is encrypted only this far ahead of the transport: that is how the
 * transport's backpressure reaches the consumer. */
#define OUT_HIGH_WATER (128 * 1024)
/* PEM files are small; anything larger is not what the user meant. */
#define MAX_FILE_SIZE (4 * 1024 * 1024)

/* Through the core's log rather than host->log: the plugin may be loaded by
 * several registries, and a plugin handle belongs to only one of them. */
#define tls_log(level, format, ...) paf_log(level, "tls: " format, __VA_ARGS__)

/* ---- per-registry configuration ([tls] in paf.conf) ---- */

typedef struct tls_certs tls_certs;

typedef struct tls_config {
        char *priority;
        int64_t handshake_timeout; /* seconds */
        int64_t max_handshakes;    /* per listener */
        /* Client credentials with the system's trust store and no client
         * certificate: parsing the store for every connection would cost
         * more than the handshake. Shared by the loops of several threads. */
        pthread_mutex_t lock;
        tls_certs *system_certs;
} tls_config;

/* ---- credentials, shared by sessions (and threads, for the system ones) ---- */

struct tls_certs {
        atomic_uint n_ref;
        gnutls_certificate_credentials_t cred;
};

static tls_certs *certs_ref(tls_certs *c) {
        if (c)
                atomic_fetch_add(&c->n_ref, 1);
        return c;
}

static tls_certs *certs_unref(tls_certs *c) {
        if (c && atomic_fetch_sub(&c->n_ref, 1) == 1) {
                gnutls_certificate_free_credentials(c->cred);
                free(c);
        }
        return NULL;
}

static int certs_new(tls_certs **ret) {
        tls_certs *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (gnutls_certificate_allocate_credentials(&c->cred) < 0) {
                free(c);
                return -ENOMEM;
        }
        atomic_init(&c->n_ref, 1);
        *ret = c;
        return 0;
}

/* A whole (small) file, for GnuTLS to parse; errors name the file. */
static int read_file(const char *path, gnutls_datum_t *ret, paf_error *error) {
        FILE *f = fopen(path, "re");
        if (!f)
                return paf_error_set(error, -errno, "%s: %s", path, strerror(errno));
        struct stat st;
        if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE_SIZE) {
                int r = errno ? -errno : -EINVAL;
                fclose(f);
                if (r == -EINVAL)
                        return paf_error_set(error, r, "%s: not a regular file of at most %d bytes",
                                             path, MAX_FILE_SIZE);
                return paf_error_set(error, r, "%s: %s", path, strerror(-r));
        }
        size_t size = (size_t)st.st_size;
        uint8_t *data = malloc(size + 1);
        if (!data) {
                fclose(f);
                return paf_error_set(error, -ENOMEM, "%s: out of memory", path);
        }
        size_t n = fread(data, 1, size, f);
        bool failed = ferror(f);
        fclose(f);
        if (failed) {
                free(data);
                return paf_error_set(error, -EIO, "%s: read error", path);
        }
        data[n] = '\0';
        *ret = (gnutls_datum_t){.data = data, .size = (unsigned)n};
        return 0;
}

/* A PEM chain and its key. Each file is parsed on its own first, so that an
 * error names the file that has it. */
static int add_key_pair(gnutls_certificate_credentials_t cred, const char *cert_file,
                        const char *key_file, paf_error *error) {
        gnutls_datum_t cert = {}, key = {};
        gnutls_x509_crt_t *crts = NULL;
        unsigned n_crts = 0;
        gnutls_x509_privkey_t pkey = NULL;

        int r = read_file(cert_file, &cert, error);
        if (r < 0)
                goto out;
        r = read_file(key_file, &key, error);
        if (r < 0)
                goto out;

        r = gnutls_x509_crt_list_import2(&crts, &n_crts, &cert, GNUTLS_X509_FMT_PEM, 0);
        if (r < 0 || n_crts == 0) {
                r = paf_error_set(error, -EINVAL, "%s: %s", cert_file,
                                  r < 0 ? gnutls_strerror(r) : "no certificate found");
                goto out;
        }
        r = gnutls_x509_privkey_init(&pkey);
        if (r >= 0)
                r = gnutls_x509_privkey_import2(pkey, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (r < 0) {
                r = paf_error_set(error, -EINVAL, "%s: %s", key_file, gnutls_strerror(r));
                goto out;
        }
        r = gnutls_certificate_set_x509_key_mem2(cred, &cert, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (r < 0) {
                r = paf_error_set(error, -EINVAL, "%s with %s: %s", cert_file, key_file,
                                  gnutls_strerror(r));
                goto out;
        }
        r = 0;
out:
        for (unsigned i = 0; i < n_crts; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
        if (pkey)
                gnutls_x509_privkey_deinit(pkey);
        free(cert.data);
        if (key.data) {
                /* A private key: do not leave it around in freed memory. */
                explicit_bzero(key.data, key.size);
                free(key.data);
        }
        return r;
}

static int add_trust_file(gnutls_certificate_credentials_t cred, const char *path,
                          paf_error *error) {
        gnutls_datum_t ca = {};
        int r = read_file(path, &ca, error);
        if (r < 0)
                return r;
        r = gnutls_certificate_set_x509_trust_mem(cred, &ca, GNUTLS_X509_FMT_PEM);
        free(ca.data);
        if (r < 0)
                return paf_error_set(error, -EINVAL, "%s: %s", path, gnutls_strerror(r));
        if (r == 0)
                return paf_error_set(error, -EINVAL, "%s: no CA certificate found", path);
        return 0;
}

static int system_certs_get(tls_config *cfg, tls_certs **ret, paf_error *error) {
        int r = 0;
        pthread_mutex_lock(&cfg->lock);
        if (!cfg->system_certs) {
                tls_certs *c;
                r = certs_new(&c);
                if (r >= 0) {
                        int n = gnutls_certificate_set_x509_system_trust(c->cred);
                        if (n < 0)
                                /* Then nothing verifies, which the failed
                                 * handshakes will say; worth a word here. */
                                tls_log(PAF_LOG_WARNING, "cannot load the system trust store: %s",
                                        gnutls_strerror(n));
                        cfg->system_certs = c;
                }
        }
        if (r >= 0)
                *ret = certs_ref(cfg->system_certs);
        pthread_mutex_unlock(&cfg->lock);
        if (r < 0)
                return paf_error_set(error, r, "cannot set up TLS credentials: %s", strerror(-r));
        return 0;
}

/* ---- session parameters: what a listener or a connect asks for ---- */

typedef struct tls_params {
        unsigned n_ref; /* used from one loop */
        tls_certs *certs;
        gnutls_priority_t priority;
        char *alpn_text; /* alpn[] points into it */
        gnutls_datum_t alpn[MAX_ALPN];
        unsigned n_alpn;
        uint64_t timeout_usec;

        /* server */
        gnutls_certificate_request_t client_cert; /* IGNORE unless a client CA is set */
        bool has_cert;          /* tls.cert-file: without it, only acme-tls/1 is answered */
        paf_acme_tlsalpn *acme; /* tls.acme-tlsalpn, our own reference */

        /* client */
        char *server_name; /* unbracketed: what certificates are checked against */
        bool sni;          /* a DNS name, not an IP literal: sent as SNI */
        bool insecure;
} tls_params;

static tls_params *params_unref(tls_params *p) {
        if (!p || --p->n_ref > 0)
                return NULL;
        certs_unref(p->certs);
        paf_acme_tlsalpn_unref(p->acme);
        if (p->priority)
                gnutls_priority_deinit(p->priority);
        free(p->alpn_text);
        free(p->server_name);
        free(p);
        return NULL;
}

/* Reading optional keys: 1 and the value, 0 when absent, < 0 (explained) when
 * the key holds something else or cannot be derived. */
static int ctx_read(paf_ctx *ctx, const char *key, paf_type type, paf_value *ret,
                    paf_error *error) {
        paf_value v;
        int r = paf_ctx_get(ctx, key, &v);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                const char *why = paf_ctx_get_error(ctx);
                return paf_error_set(error, r, "%s: %s", key, why && *why ? why : strerror(-r));
        }
        if (v.type != type)
                return paf_error_set(error, -EPROTOTYPE, "%s: a %s, expected a %s", key,
                                     paf_type_to_string(v.type), paf_type_to_string(type));
        *ret = v;
        return 1;
}

static int ctx_string(paf_ctx *ctx, const char *key, const char **ret, paf_error *error) {
        paf_value v;
        int r = ctx_read(ctx, key, PAF_TYPE_STRING, &v, error);
        if (r > 0)
                *ret = v.string;
        return r;
}

static int priority_new(const char *text, gnutls_priority_t *ret, paf_error *error) {
        const char *where = NULL;
        int r = gnutls_priority_init2(ret, text, &where, 0);
        if (r == GNUTLS_E_INVALID_REQUEST && where)
                return paf_error_set(error, -EINVAL, "TLS priority \"%s\": invalid at \"%s\"", text,
                                     where);
        if (r < 0)
                return paf_error_set(error, -EINVAL, "TLS priority \"%s\": %s", text,
                                     gnutls_strerror(r));
        return 0;
}

/* What every side reads the same way: priority, ALPN, handshake timeout. */
static int params_common(tls_config *cfg, paf_ctx *ctx, tls_params *p, paf_error *error) {
        const char *priority = cfg->priority, *alpn = DEFAULT_ALPN;
        int r = ctx_string(ctx, "tls.priority", &priority, error);
        if (r < 0)
                return r;
        r = priority_new(priority, &p->priority, error);
        if (r < 0)
                return r;

        r = ctx_string(ctx, "tls.alpn", &alpn, error);
        if (r < 0)
                return r;
        p->alpn_text = strdup(alpn);
        if (!p->alpn_text)
                return paf_error_set(error, -ENOMEM, "out of memory");
        char *save = NULL;
        for (char *name = strtok_r(p->alpn_text, ", ", &save); name;
             name = strtok_r(NULL, ", ", &save)) {
                if (p->n_alpn == MAX_ALPN)
                        return paf_error_set(error, -E2BIG,
                                             "tls.alpn \"%s\": more than %d protocols", alpn,
                                             MAX_ALPN);
                if (strlen(name) > 255)
                        return paf_error_set(error, -EINVAL,
                                             "tls.alpn \"%s\": a name longer than 255 bytes", alpn);
                p->alpn[p->n_alpn++] =
                        (gnutls_datum_t){.data = (unsigned char *)name, .size = strlen(name)};
        }

        paf_value v;
        int64_t timeout = cfg->handshake_timeout;
        r = ctx_read(ctx, "tls.handshake-timeout", PAF_TYPE_INT, &v, error);
        if (r < 0)
                return r;
        if (r > 0)
                timeout = v.integer;
        if (timeout < 1 || timeout > 3600)
                return paf_error_set(error, -ERANGE,
                                     "tls.handshake-timeout %lld: out of range (1-3600 seconds)",
                                     (long long)timeout);
        p->timeout_usec = (uint64_t)timeout * 1000000;
        return 0;
}

static int params_alloc(tls_params **ret, paf_error *error) {
        tls_params *p = calloc(1, sizeof(*p));
        if (!p)
                return paf_error_set(error, -ENOMEM, "out of memory");
        p->n_ref = 1;
        p->client_cert = GNUTLS_CERT_IGNORE;
        *ret = p;
        return 0;
}

/* "tls.cert-file" + "tls.key-file", or their ".N" variants; 0 when neither is set. */
static int key_pair_read(paf_ctx *ctx, const char *suffix, tls_certs *certs, paf_error *error) {
        char cert_key[64], key_key[64];
        snprintf(cert_key, sizeof(cert_key), "tls.cert-file%s", suffix);
        snprintf(key_key, sizeof(key_key), "tls.key-file%s", suffix);
        const char *cert = NULL, *key = NULL;
        int r = ctx_string(ctx, cert_key, &cert, error);
        if (r < 0)
                return r;
        r = ctx_string(ctx, key_key, &key, error);
        if (r < 0)
                return r;
        if (!cert && !key)
                return 0;
        if (!cert || !key)
                return paf_error_set(error, -EINVAL, "%s without %s", cert ? cert_key : key_key,
                                     cert ? key_key : cert_key);
        r = add_key_pair(certs->cred, cert, key, error);
        return r < 0 ? r : 1;
}

static const gnutls_datum_t acme_alpn = {
        .data = (unsigned char *)PAF_ACME_TLSALPN_PROTOCOL,
        .size = sizeof(PAF_ACME_TLSALPN_PROTOCOL) - 1,
};

static bool alpn_is_acme(const gnutls_datum_t *d) {
        return d->size == acme_alpn.size && memcmp(d->data, acme_alpn.data, acme_alpn.size) == 0;
}

/*
 * tls.acme-tlsalpn: the tls-alpn-01 challenges (RFC 8737) to answer, a
 * pointer that a program running an ACME client sets (paf.conf has no way
 * to). acme-tls/1 goes first in the server's ALPN preference: a ClientHello
 * that offers it is a validation, whatever else it offers, and never gets
 * the normal certificate; validators offer nothing else (RFC 8737 §3), and
 * no browser offers it at all.
 */
static int acme_read(paf_ctx *ctx, tls_params *p, paf_error *error) {
        paf_value v;
        int r = ctx_read(ctx, "tls.acme-tlsalpn", PAF_TYPE_POINTER, &v, error);
        if (r <= 0)
                return r;
        if (!v.pointer)
                return paf_error_set(error, -EINVAL,
                                     "tls.acme-tlsalpn: NULL, expected a paf_acme_tlsalpn table");
        gnutls_datum_t list[MAX_ALPN];
        unsigned n = 0;
        list[n++] = acme_alpn;
        for (unsigned i = 0; i < p->n_alpn; i++) {
                if (alpn_is_acme(&p->alpn[i]))
                        continue;
                if (n == MAX_ALPN)
                        return paf_error_set(error, -E2BIG,
                                             "tls.alpn \"%s\": more than %d protocols besides "
                                             "%s (tls.acme-tlsalpn)",
                                             p->alpn_text, MAX_ALPN - 1, PAF_ACME_TLSALPN_PROTOCOL);
                list[n++] = p->alpn[i];
        }
        memcpy(p->alpn, list, n * sizeof(list[0]));
        p->n_alpn = n;
        p->acme = paf_acme_tlsalpn_ref(v.pointer);
        return 1;
}

static int server_params_new(tls_config *cfg, paf_ctx *ctx, tls_params **ret, paf_error *error) {
        tls_params *p = NULL;
        int r = params_alloc(&p, error);
        if (r < 0)
                return r;
        r = params_common(cfg, ctx, p, error);
        if (r >= 0)
                r = acme_read(ctx, p, error);
        if (r >= 0 && (r = certs_new(&p->certs)) < 0)
                paf_error_set(error, r, "cannot set up TLS credentials: %s", strerror(-r));
        if (r >= 0) {
                r = key_pair_read(ctx, "", p->certs, error);
                p->has_cert = r > 0;
                /* With challenges to answer, a listener may have no
                 * certificate yet: it is there to get one. */
                if (r == 0 && !p->acme)
                        r = paf_error_set(error, -EINVAL,
                                          "tls.cert-file and tls.key-file are required to serve "
                                          "TLS");
        }
        for (int i = 2; r >= 0 && i <= MAX_KEY_PAIRS; i++) {
                char suffix[8];
                snprintf(suffix, sizeof(suffix), ".%d", i);
                r = key_pair_read(ctx, suffix, p->certs, error);
                if (r > 0 && !p->has_cert)
                        r = paf_error_set(error, -EINVAL,
                                          "tls.cert-file%s without tls.cert-file and tls.key-file",
                                          suffix);
        }

        const char *client_ca = NULL;
        paf_value require = PAF_VALUE_BOOL(false);
        if (r >= 0)
                r = ctx_string(ctx, "tls.client-ca-file", &client_ca, error);
        if (r >= 0)
                r = ctx_read(ctx, "tls.require-client-cert", PAF_TYPE_BOOL, &require, error);
        if (r >= 0 && require.boolean && !client_ca)
                r = paf_error_set(error, -EINVAL,
                                  "tls.require-client-cert needs tls.client-ca-file to verify "
                                  "them with");
        if (r >= 0 && client_ca) {
                r = add_trust_file(p->certs->cred, client_ca, error);
                p->client_cert = require.boolean ? GNUTLS_CERT_REQUIRE : GNUTLS_CERT_REQUEST;
        }
        if (r < 0) {
                params_unref(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int client_params_new(tls_config *cfg, paf_ctx *ctx, tls_params **ret, paf_error *error) {
        tls_params *p = NULL;
        int r = params_alloc(&p, error);
        if (r < 0)
                return r;
        r = params_common(cfg, ctx, p, error);

        const char *name = NULL;
        if (r >= 0 && (r = ctx_string(ctx, "tls.server-name", &name, error)) == 0)
                r = paf_error_set(error, -EINVAL, "no tls.server-name");
        if (r >= 0) {
                /* A URL's IPv6 host keeps its brackets. */
                size_t n = strlen(name);
                if (n >= 2 && name[0] == '[' && name[n - 1] == ']')
                        p->server_name = strndup(name + 1, n - 2);
                else
                        p->server_name = strdup(name);
                if (!p->server_name)
                        r = paf_error_set(error, -ENOMEM, "out of memory");
                else if (!*p->server_name)
                        r = paf_error_set(error, -EINVAL, "empty tls.server-name");
        }
        if (r >= 0) {
                /* RFC 6066: SNI carries host names only, never literal addresses. */
                uint8_t addr[16];
                p->sni = inet_pton(AF_INET, p->server_name, addr) != 1 &&
                         inet_pton(AF_INET6, p->server_name, addr) != 1;
        }

        paf_value insecure = PAF_VALUE_BOOL(false);
        if (r >= 0)
                r = ctx_read(ctx, "tls.insecure", PAF_TYPE_BOOL, &insecure, error);
        p->insecure = insecure.boolean;

        const char *ca = NULL, *cert = NULL;
        if (r >= 0)
                r = ctx_string(ctx, "tls.ca-file", &ca, error);
        if (r >= 0)
                r = ctx_string(ctx, "tls.cert-file", &cert, error);
        if (r >= 0 && !ca && !cert)
                r = system_certs_get(cfg, &p->certs, error);
        else if (r >= 0) {
                if ((r = certs_new(&p->certs)) < 0)
                        paf_error_set(error, r, "cannot set up TLS credentials: %s", strerror(-r));
                else if (ca)
                        r = add_trust_file(p->certs->cred, ca, error);
                else if (gnutls_certificate_set_x509_system_trust(p->certs->cred) < 0)
                        tls_log(PAF_LOG_WARNING, "%s", "cannot load the system trust store");
                if (r >= 0)
                        r = key_pair_read(ctx, "", p->certs, error);
        }
        if (r < 0) {
                params_unref(p);
                return r;
        }
        *ret = p;
        return 0;
}

/* ---- the connection: a GnuTLS session over an inner flow ---- */

typedef struct tls_conn tls_conn;

/* A listener wrapping another: connections wait in handshakes until their
 * handshake completed, then go to the user. */
typedef struct tls_listener {
        paf_listener *listener;
        paf_listener *inner;
        tls_config *cfg;
        tls_params *params; /* for new handshakes; reload replaces it */
        tls_conn *handshakes;
        unsigned n_handshakes, max_handshakes;
        bool started;       /* our user wants connections */
        bool inner_running; /* the inner listener accepts */
} tls_listener;

/* Encrypted bytes on their way to the inner flow. Completions come in
 * order, so the connection keeps them as a queue; one that completes after
 * the connection went finds conn == NULL. */
typedef struct segment segment;
struct segment {
        segment *next;
        tls_conn *conn;
        size_t len, size;
        uint8_t data[];
};

typedef enum conn_state {
        CONN_CONNECTING, /* client: waiting for the inner flow */
        CONN_HANDSHAKE,
        CONN_OPEN,
        CONN_ANSWERED, /* server: a tls-alpn-01 validation, closing once close_notify went */
        CONN_DEAD,
} conn_state;

/*
 * Who owns a connection: the connect request (client, until done), the
 * listener (server, until the handshake completed), then the TLS flow. The
 * owner's reference goes with conn_kill(); code that calls out (to the
 * consumer, the listener's user or the core) holds one more, so that a close
 * from in there leaves the memory (and the GnuTLS session) to it.
 */
struct tls_conn {
        unsigned n_ref;
        bool server;
        conn_state state;
        bool closed;
        sd_event *event;
        tls_params *params;
        gnutls_session_t session;
        paf_flow *inner;
        paf_flow *flow; /* ours, once the handshake completed */
        char *peer;     /* the inner flow's peer, for messages */

        tls_listener *listener;   /* server, during the handshake */
        tls_conn *prev, *next;    /* in the listener's handshakes */
        paf_connect_request *req; /* client, until done */
        paf_connect *inner_connect;

        sd_event_source *timer; /* handshake timeout */
        sd_event_source *defer; /* deliver what is buffered, from the loop */

        /* From the inner flow, not yet taken by GnuTLS. */
        uint8_t *in;
        size_t in_start, in_end, in_size;
        bool inner_reading, inner_eof;
        int inner_error;

        /* To the inner flow. */
        segment *acc; /* filled by the push callback, not handed over yet */
        segment *sent_head, *sent_tail;
        uint64_t queued, completed; /* bytes handed to the inner flow, and taken */
        int write_error;

        /* The consumer's write in progress (the core keeps iov alive). */
        bool w_active, w_encrypted;
        const struct iovec *w_iov;
        size_t w_n, w_index, w_offset;
        uint64_t w_mark; /* done once this many bytes were taken */

        uint8_t *rbuf; /* plaintext of one record */
        bool read_ended;
        bool verified;          /* the peer's certificate was verified */
        unsigned verify_status; /* server: why a client certificate was refused */

        /* Server, tls-alpn-01: the certificate of a validation handshake,
         * and the name it is for. */
        tls_certs *acme_certs;
        char *acme_name;
        /* Server: why we turned the ClientHello away, and the alert saying so. */
        char *refusal;
        gnutls_alert_description_t refusal_alert;
};

static void conn_process(tls_conn *c);
static void on_inner_read(paf_flow *inner, const void *data, size_t len, int error, void *userdata);

static tls_conn *conn_ref(tls_conn *c) {
        c->n_ref++;
        return c;
}

static void conn_unref(tls_conn *c) {
        if (!c || --c->n_ref > 0)
                return;
        assert(c->closed);
        if (c->session)
                gnutls_deinit(c->session);
        /* After the session, which points to them. */
        certs_unref(c->acme_certs);
        free(c->acme_name);
        free(c->refusal);
        free(c->acc);
        free(c->in);
        free(c->rbuf);
        free(c->peer);
        params_unref(c->params);
        sd_event_unref(c->event);
        free(c);
}

static const char *conn_peer(tls_conn *c) {
        return c->peer ? c->peer : "?";
}

/* The owner lets go: release the transport now, the memory once nobody is
 * using it. */
static void conn_kill(tls_conn *c) {
        if (c->closed)
                return;
        c->closed = true;
        c->state = CONN_DEAD;
        c->timer = sd_event_source_disable_unref(c->timer);
        c->defer = sd_event_source_disable_unref(c->defer);
        if (c->inner_connect) {
                paf_connect_cancel(c->inner_connect);
                c->inner_connect = NULL;
        }
        for (segment *s = c->sent_head; s; s = s->next)
                s->conn = NULL;
        c->sent_head = c->sent_tail = NULL;
        if (c->inner) {
                paf_flow_close(c->inner, NULL, NULL);
                c->inner = NULL;
        }
        c->flow = NULL;
        conn_unref(c);
}

/* GnuTLS writes here; never refuses (short of memory): a refusal would make
 * GnuTLS keep the record and want the very same call again. How much is
 * buffered is bounded by how far ahead writes are encrypted. */
static ssize_t tls_push(gnutls_transport_ptr_t ptr, const void *data, size_t len) {
        tls_conn *c = ptr;
        segment *s = c->acc;
        if (!s || s->size - s->len < len) {
                size_t used = s ? s->len : 0;
                size_t size = s ? s->size : 0;
                if (size < 16384)
                        size = 16384;
                while (size - used < len)
                        size *= 2;
                segment *n = realloc(s, sizeof(*n) + size);
                if (!n) {
                        gnutls_transport_set_errno(c->session, ENOMEM);
                        return -1;
                }
                if (!s)
                        *n = (segment){};
                n->size = size;
                c->acc = s = n;
        }
        memcpy(s->data + s->len, data, len);
        s->len += len;
        return (ssize_t)len;
}

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *data, size_t len) {
        tls_conn *c = ptr;
        size_t avail = c->in_end - c->in_start;
        if (avail == 0) {
                if (c->inner_error < 0) {
                        gnutls_transport_set_errno(c->session, -c->inner_error);
                        return -1;
                }
                if (c->inner_eof)
                        return 0;
                gnutls_transport_set_errno(c->session, EAGAIN);
                return -1;
        }
        size_t n = avail < len ? avail : len;
        memcpy(data, c->in + c->in_start, n);
        c->in_start += n;
        if (c->in_start == c->in_end)
                c->in_start = c->in_end = 0;
        return (ssize_t)n;
}

/* GnuTLS asks this before some reads (TLS 1.3); the default would select()
 * on the transport pointer as if it were an fd. Never waits. */
static int tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms) {
        (void)ms;
        tls_conn *c = ptr;
        if (c->in_end > c->in_start || c->inner_eof || c->inner_error < 0)
                return 1;
        gnutls_transport_set_errno(c->session, EAGAIN);
        return -1;
}

static void on_segment_written(paf_flow *inner, int error, void *userdata);
static void conn_answered_progress(tls_conn *c);

/* Hand what GnuTLS wrote to the inner flow. */
static void conn_flush(tls_conn *c) {
        segment *s = c->acc;
        if (!s || s->len == 0 || c->closed || !c->inner)
                return;
        c->acc = NULL;
        s->conn = c;
        s->next = NULL;
        struct iovec iov = {s->data, s->len};
        int r = paf_flow_write(c->inner, &iov, 1, on_segment_written, s);
        if (r < 0) {
                free(s);
                if (c->write_error == 0)
                        c->write_error = r;
                return;
        }
        if (c->sent_tail)
                c->sent_tail->next = s;
        else
                c->sent_head = s;
        c->sent_tail = s;
        c->queued += s->len;
}

static void conn_write_finish(tls_conn *c, int error) {
        c->w_active = c->w_encrypted = false;
        c->w_iov = NULL;
        c->w_n = c->w_index = c->w_offset = 0;
        /* Last: the core may hand us the next write from in there. */
        paf_flow_write_done(c->flow, error);
}

/* Encrypt the consumer's write as far as the transport keeps up. */
static void conn_write_progress(tls_conn *c) {
        if (c->closed || !c->w_active)
                return;
        while (!c->w_encrypted && c->write_error == 0 &&
               c->queued - c->completed + (c->acc ? c->acc->len : 0) < OUT_HIGH_WATER) {
                while (c->w_index < c->w_n && c->w_iov[c->w_index].iov_len == c->w_offset) {
                        c->w_index++;
                        c->w_offset = 0;
                }
                if (c->w_index == c->w_n) {
                        c->w_encrypted = true;
                        break;
                }
                const struct iovec *v = &c->w_iov[c->w_index];
                size_t n = v->iov_len - c->w_offset;
                if (n > RECORD_SIZE)
                        n = RECORD_SIZE;
                ssize_t k = gnutls_record_send(c->session, (uint8_t *)v->iov_base + c->w_offset, n);
                if (k == GNUTLS_E_INTERRUPTED)
                        continue;
                if (k < 0) {
                        tls_log(PAF_LOG_DEBUG, "%s: cannot send: %s", conn_peer(c),
                                gnutls_strerror((int)k));
                        c->write_error = k == GNUTLS_E_PUSH_ERROR ? -ENOMEM : -EPROTO;
                        break;
                }
                c->w_offset += (size_t)k;
        }
        conn_flush(c);
        if (c->write_error < 0) {
                conn_write_finish(c, c->write_error);
                return;
        }
        if (c->w_encrypted && c->w_mark == 0)
                c->w_mark = c->queued;
        if (c->w_encrypted && c->completed >= c->w_mark)
                conn_write_finish(c, 0);
}

static void on_segment_written(paf_flow *inner, int error, void *userdata) {
        (void)inner;
        segment *s = userdata;
        tls_conn *c = s->conn;
        size_t len = s->len;
        if (c) {
                assert(c->sent_head == s);
                c->sent_head = s->next;
                if (!c->sent_head)
                        c->sent_tail = NULL;
        }
        free(s);
        if (!c)
                return;
        c->completed += len;
        paf_flow_write_progress(c->flow, len); /* a slow reader is not a stalled one */
        if (error < 0 && c->write_error == 0)
                c->write_error = error;
        conn_ref(c);
        conn_write_progress(c);
        conn_answered_progress(c);
        conn_unref(c);
}

/* Whether the inner flow should deliver: during the handshake, and then
 * only while the consumer reads (backpressure). */
static void conn_update_reading(tls_conn *c) {
        if (c->closed || !c->inner)
                return;
        bool want =
                !c->inner_eof && c->inner_error == 0 &&
                (c->state == CONN_HANDSHAKE || (c->state == CONN_OPEN && c->flow &&
                                                !c->read_ended && paf_flow_is_reading(c->flow)));
        if (want == c->inner_reading)
                return;
        c->inner_reading = want;
        int r;
        if (want)
                r = paf_flow_read_start(c->inner, on_inner_read, c);
        else
                r = paf_flow_read_stop(c->inner);
        if (r < 0 && want) {
                /* Reported like a transport error, from the loop. */
                c->inner_reading = false;
                c->inner_error = r;
                (void)sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
        }
}

static void on_inner_read(paf_flow *inner, const void *data, size_t len, int error,
                          void *userdata) {
        (void)inner;
        tls_conn *c = userdata;
        if (error < 0)
                c->inner_error = error;
        else if (len == 0)
                c->inner_eof = true;
        else {
                if (c->in_size - c->in_end < len && c->in_start > 0) {
                        memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
                        c->in_end -= c->in_start;
                        c->in_start = 0;
                }
                if (c->in_size - c->in_end < len) {
                        size_t size = c->in_end + len;
                        uint8_t *in = realloc(c->in, size);
                        if (!in) {
                                c->inner_error = -ENOMEM;
                                conn_process(c);
                                return;
                        }
                        c->in = in;
                        c->in_size = size;
                }
                memcpy(c->in + c->in_end, data, len);
                c->in_end += len;
        }
        conn_process(c);
}

/* Why a handshake failed, in GnuTLS's words where it has them. */
static int handshake_reason(tls_conn *c, int r, char *buf, size_t size) {
        gnutls_datum_t out = {};
        unsigned status = 0;
        int error = -EPROTO;

        if (c->refusal) {
                snprintf(buf, size, "%s", c->refusal);
                return error;
        }
        if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR)
                status = gnutls_session_get_verify_cert_status(c->session);
        else if (r == GNUTLS_E_CERTIFICATE_ERROR && c->verify_status != 0)
                status = c->verify_status;

        if (status != 0 &&
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) >= 0) {
                size_t n = out.size;
                while (n > 0 && (out.data[n - 1] == ' ' || out.data[n - 1] == '\0'))
                        n--;
                snprintf(buf, size, "%.*s", (int)n, (const char *)out.data);
                gnutls_free(out.data);
                return -EKEYREJECTED;
        }
        switch (r) {
        case GNUTLS_E_FATAL_ALERT_RECEIVED:
                snprintf(buf, size, "the peer sent the alert \"%s\"",
                         gnutls_alert_get_name(gnutls_alert_get(c->session)));
                break;
        case GNUTLS_E_PREMATURE_TERMINATION:
                snprintf(buf, size, "the peer closed the connection during the handshake");
                error = -ECONNRESET;
                break;
        case GNUTLS_E_PULL_ERROR:
                error = c->inner_error < 0 ? c->inner_error : -EIO;
                snprintf(buf, size, "%s", strerror(-error));
                break;
        case GNUTLS_E_PUSH_ERROR:
                error = c->write_error < 0 ? c->write_error : -ENOMEM;
                snprintf(buf, size, "%s", strerror(-error));
                break;
        case GNUTLS_E_NO_CERTIFICATE_FOUND:
                snprintf(buf, size, "%s (no client certificate)", gnutls_strerror(r));
                error = -EKEYREJECTED;
                break;
        default:
                snprintf(buf, size, "%s", gnutls_strerror(r));
                break;
        }
        return error;
}

static void listener_unlink(tls_conn *c);

static void conn_client_fail(tls_conn *c, int error, const char *reason) {
        paf_connect_request *req = c->req;
        c->req = NULL;
        paf_connect_request_set_data(req, NULL);
        conn_kill(c);
        paf_connect_request_fail(req, error, "%s", reason);
}

/* The handshake is over and failed: a client's connect fails with the
 * reason, a server's connection goes with a line in the log. */
static void conn_handshake_failed(tls_conn *c, int error, const char *reason) {
        if (c->server) {
                /* What we turned away (a probe for a challenge that is not
                 * there) is no fault of the listener's: for debugging. */
                tls_log(c->refusal ? PAF_LOG_DEBUG : PAF_LOG_INFO, "%s: handshake %s: %s",
                        conn_peer(c), c->refusal ? "refused" : "failed", reason);
                listener_unlink(c);
                conn_kill(c);
                return;
        }
        char text[1024];
        snprintf(text, sizeof(text), "handshake with %s (%s) failed: %s", conn_peer(c),
                 c->inner ? paf_flow_get_protocol(c->inner) : "?", reason);
        conn_client_fail(c, error, text);
}

static const paf_flow_ops tls_flow_ops;

/* An answered validation goes once what it wrote went. */
static void conn_answered_progress(tls_conn *c) {
        if (c->state != CONN_ANSWERED)
                return;
        if (c->write_error == 0 && (c->completed < c->queued || (c->acc && c->acc->len > 0)))
                return;
        listener_unlink(c);
        conn_kill(c);
}

/*
 * A tls-alpn-01 validation handshake: the certificate was the answer, and
 * no application data follows (RFC 8737 §3). The connection never reaches
 * our user: close_notify, then it goes once that is out. Until then it is
 * one of the listener's handshakes, under the handshake timer.
 */
static void conn_acme_answered(tls_conn *c) {
        tls_log(PAF_LOG_INFO, "%s: answered the tls-alpn-01 challenge for \"%s\"", conn_peer(c),
                c->acme_name);
        c->state = CONN_ANSWERED;
        int r = gnutls_bye(c->session, GNUTLS_SHUT_WR);
        if (r < 0)
                tls_log(PAF_LOG_DEBUG, "%s: close_notify: %s", conn_peer(c), gnutls_strerror(r));
        conn_flush(c);
        conn_update_reading(c);
        conn_answered_progress(c);
}

static void conn_handshake_done(tls_conn *c) {
        if (c->acme_certs) {
                conn_acme_answered(c);
                return;
        }
        c->timer = sd_event_source_disable_unref(c->timer);
        if (!c->server && !c->params->insecure)
                /* gnutls_session_set_verify_cert() made the handshake fail otherwise. */
                c->verified = true;

        int r = paf_flow_new(c->event, &tls_flow_ops, c, "tls", paf_flow_get_peer(c->inner),
                             paf_flow_get_local(c->inner), &c->flow);
        if (r < 0) {
                conn_handshake_failed(c, r, strerror(-r));
                return;
        }
        c->state = CONN_OPEN;
        if (paf_log_get_level() >= PAF_LOG_DEBUG) {
                gnutls_datum_t alpn = {};
                (void)gnutls_alpn_get_selected_protocol(c->session, &alpn);
                tls_log(PAF_LOG_DEBUG, "%s: %s handshake done: %s, ALPN \"%.*s\"%s", conn_peer(c),
                        c->server ? "server" : "client",
                        gnutls_protocol_get_name(gnutls_protocol_get_version(c->session)),
                        (int)alpn.size, alpn.data ? (const char *)alpn.data : "",
                        c->verified ? ", peer verified" : "");
        }
        /* Until the consumer reads, what comes stays in the transport. */
        conn_update_reading(c);

        if (c->server) {
                tls_listener *tl = c->listener;
                listener_unlink(c);
                /* The flow owns us from now on (the listener's reference). */
                paf_listener_deliver(tl->listener, c->flow);
                return;
        }
        paf_connect_request *req = c->req;
        c->req = NULL;
        paf_connect_request_set_data(req, NULL);
        paf_connect_request_done(req, c->flow);
}

/* Tell the peer why, if it is still there to hear it. GnuTLS's own choice
 * for a missing client certificate ("decode error") would mislead it. */
static void handshake_alert(tls_conn *c, int r) {
        if (r == GNUTLS_E_FATAL_ALERT_RECEIVED || r == GNUTLS_E_PREMATURE_TERMINATION ||
            r == GNUTLS_E_PULL_ERROR || r == GNUTLS_E_PUSH_ERROR)
                return;
        if (c->refusal)
                (void)gnutls_alert_send(c->session, GNUTLS_AL_FATAL, c->refusal_alert);
        else if (c->server && r == GNUTLS_E_NO_CERTIFICATE_FOUND)
                (void)gnutls_alert_send(c->session, GNUTLS_AL_FATAL, GNUTLS_A_HANDSHAKE_FAILURE);
        else if (c->server && r == GNUTLS_E_CERTIFICATE_ERROR && c->verify_status != 0)
                (void)gnutls_alert_send(
                        c->session, GNUTLS_AL_FATAL,
                        c->verify_status & GNUTLS_CERT_SIGNER_NOT_FOUND ? GNUTLS_A_UNKNOWN_CA
                        : c->verify_status & GNUTLS_CERT_EXPIRED ? GNUTLS_A_CERTIFICATE_EXPIRED
                                                                 : GNUTLS_A_BAD_CERTIFICATE);
        else
                (void)gnutls_alert_send_appropriate(c->session, r);
}

static void conn_handshake(tls_conn *c) {
        int r;
        do
                r = gnutls_handshake(c->session);
        while (r < 0 && r != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(r));
        if (r == GNUTLS_E_AGAIN) {
                conn_flush(c);
                return;
        }
        if (r < 0) {
                char reason[512];
                int error = handshake_reason(c, r, reason, sizeof(reason));
                handshake_alert(c, r);
                conn_flush(c);
                conn_handshake_failed(c, error, reason);
                return;
        }
        conn_flush(c);
        conn_handshake_done(c);
}

/*
 * TLS 1.2 renegotiation is refused the way RFC 5246 (7.2.2) provides for:
 * a no_renegotiation warning, and the connection goes on. Nothing here needs
 * new parameters in mid-connection, and a renegotiation would let a peer
 * make us redo a handshake's work whenever it likes. A client just ignores
 * the HelloRequest after the alert. A server's GnuTLS keeps the client's
 * new hello for the handshake it now expects, in front of any record to
 * come: the next read drops it, saying "unexpected packet", without reading
 * anything new, and that is what we wait for here.
 */
static int conn_refuse_renegotiation(tls_conn *c) {
        tls_log(PAF_LOG_DEBUG, "%s: refused a renegotiation", conn_peer(c));
        int r = gnutls_alert_send(c->session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
        if (r < 0 || !c->server)
                return r;
        size_t held = gnutls_record_check_pending(c->session);
        if (held == 0)
                return 0;
        ssize_t n = gnutls_record_recv(c->session, c->rbuf, RECORD_SIZE);
        if (n == GNUTLS_E_UNEXPECTED_PACKET && gnutls_record_check_pending(c->session) < held)
                return 0;
        return n < 0 ? (int)n : GNUTLS_E_INTERNAL_ERROR;
}

/* Hand the consumer every record GnuTLS can decrypt now, while it reads. */
static void conn_deliver(tls_conn *c) {
        while (!c->closed && c->flow && !c->read_ended && paf_flow_is_reading(c->flow)) {
                size_t avail = c->in_end - c->in_start;
                ssize_t n = gnutls_record_recv(c->session, c->rbuf, RECORD_SIZE);
                if (n > 0) {
                        paf_flow_deliver(c->flow, c->rbuf, (size_t)n, 0);
                        continue;
                }
                if (n == GNUTLS_E_REHANDSHAKE && (n = conn_refuse_renegotiation(c)) == 0)
                        continue;
                /*
                 * "Again" does not mean "wait for the transport": GnuTLS
                 * says it after each post-handshake message of TLS 1.3
                 * (session tickets, KeyUpdate) and each empty record,
                 * whatever follows them. Like a warning alert, that used up
                 * a record, and what comes behind it in c->in may be a whole
                 * request that no new input will ever make us look at.
                 * GnuTLS pulls whole records and no further, so go on while
                 * calls take something; one that took nothing (a record
                 * still incomplete, or nothing left) waits for more.
                 */
                if (n < 0 && !gnutls_error_is_fatal((int)n)) {
                        if (c->in_end - c->in_start < avail)
                                continue;
                        break;
                }
                int error;
                if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION)
                        /* close_notify, or the transport's end without
                         * it: the application protocol's framing tells a
                         * truncated message from a complete one. */
                        error = 0;
                else if (n == GNUTLS_E_PULL_ERROR)
                        error = c->inner_error < 0 ? c->inner_error : -ECONNRESET;
                else {
                        if (n == GNUTLS_E_FATAL_ALERT_RECEIVED)
                                tls_log(PAF_LOG_DEBUG, "%s: the peer sent the alert \"%s\"",
                                        conn_peer(c),
                                        gnutls_alert_get_name(gnutls_alert_get(c->session)));
                        else
                                tls_log(PAF_LOG_DEBUG, "%s: %s", conn_peer(c),
                                        gnutls_strerror((int)n));
                        error = -EPROTO;
                }
                c->read_ended = true;
                conn_flush(c); /* an alert GnuTLS may have answered with */
                paf_flow_deliver(c->flow, NULL, 0, error);
                break;
        }
        /* Reading can make GnuTLS write: key updates, alerts. */
        conn_flush(c);
}

static void conn_process(tls_conn *c) {
        conn_ref(c);
        if (c->state == CONN_HANDSHAKE)
                conn_handshake(c);
        if (c->state == CONN_OPEN)
                conn_deliver(c);
        conn_update_reading(c);
        conn_unref(c);
}

static int on_conn_defer(sd_event_source *s, void *userdata) {
        (void)s;
        conn_process(userdata);
        return 0;
}

static int on_handshake_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        tls_conn *c = userdata;
        if (c->state == CONN_ANSWERED) {
                /* The peer does not take our close_notify: go without. */
                conn_ref(c);
                listener_unlink(c);
                conn_kill(c);
                conn_unref(c);
                return 0;
        }
        if (c->state != CONN_HANDSHAKE)
                return 0;
        char reason[128];
        snprintf(reason, sizeof(reason), "handshake timed out after %llu s",
                 (unsigned long long)(c->params->timeout_usec / 1000000));
        conn_ref(c);
        conn_handshake_failed(c, -ETIMEDOUT, reason);
        conn_unref(c);
        return 0;
}

static int server_verify(gnutls_session_t session);
static int on_client_hello(gnutls_session_t session);

static int conn_new(sd_event *event, bool server, tls_params *params, tls_conn **ret) {
        tls_conn *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->server = server;
        c->state = CONN_CONNECTING;
        c->event = sd_event_ref(event);
        c->params = params;
        params->n_ref++;
        *ret = c;
        return 0;
}

/* The inner flow is there (owned from now on): set the session up and start
 * the handshake's clock. */
static int conn_start(tls_conn *c, paf_flow *inner) {
        tls_params *p = c->params;
        c->inner = inner;
        c->peer = strdup(paf_flow_get_peer(inner));
        c->rbuf = malloc(RECORD_SIZE);
        if (!c->peer || !c->rbuf)
                return -ENOMEM;

        int r = gnutls_init(&c->session,
                            (c->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK);
        if (r < 0)
                return -ENOMEM;
        gnutls_session_set_ptr(c->session, c);
        gnutls_transport_set_ptr(c->session, c);
        gnutls_transport_set_push_function(c->session, tls_push);
        gnutls_transport_set_pull_function(c->session, tls_pull);
        gnutls_transport_set_pull_timeout_function(c->session, tls_pull_timeout);
        /* Our own timer bounds the handshake; GnuTLS's would only be looked
         * at when data comes, which is not when a silent peer needs it. */
        gnutls_handshake_set_timeout(c->session, GNUTLS_INDEFINITE_TIMEOUT);
        r = gnutls_priority_set(c->session, p->priority);
        if (r >= 0)
                r = gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, p->certs->cred);
        if (r >= 0 && p->n_alpn > 0)
                r = gnutls_alpn_set_protocols(c->session, p->alpn, p->n_alpn,
                                              c->server ? GNUTLS_ALPN_SERVER_PRECEDENCE : 0);
        if (r >= 0 && c->server && p->client_cert != GNUTLS_CERT_IGNORE) {
                gnutls_certificate_server_set_request(c->session, p->client_cert);
                gnutls_session_set_verify_function(c->session, server_verify);
        }
        if (r >= 0 && c->server && p->acme)
                gnutls_handshake_set_post_client_hello_function(c->session, on_client_hello);
        if (r >= 0 && !c->server && p->sni)
                r = gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, p->server_name,
                                           strlen(p->server_name));
        if (r >= 0 && !c->server && !p->insecure)
                /* Checks the chain, the name (DNS or IP SANs) and that the
                 * certificate is for a TLS server. */
                gnutls_session_set_verify_cert(c->session, p->server_name, 0);
        if (r < 0) {
                tls_log(PAF_LOG_WARNING, "%s: cannot set up the session: %s", conn_peer(c),
                        gnutls_strerror(r));
                return -ENOMEM;
        }

        r = sd_event_add_time_relative(c->event, &c->timer, CLOCK_MONOTONIC, p->timeout_usec, 0,
                                       on_handshake_timeout, c);
        if (r >= 0)
                r = sd_event_add_defer(c->event, &c->defer, on_conn_defer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(c->timer, "paf-tls-handshake");
        (void)sd_event_source_set_description(c->defer, "paf-tls");
        c->state = CONN_HANDSHAKE;
        return 0;
}

/* Server side, with a client CA: a certificate, if sent, must verify, for a
 * TLS client. Without one, GNUTLS_CERT_REQUIRE already failed the handshake. */
static int server_verify(gnutls_session_t session) {
        tls_conn *c = gnutls_session_get_ptr(session);
        if (c->acme_certs)
                return 0; /* a validation: nothing of the client's is used */
        unsigned n = 0;
        if (!gnutls_certificate_get_peers(session, &n) || n == 0)
                return c->params->client_cert == GNUTLS_CERT_REQUIRE ? -1 : 0;
        gnutls_typed_vdata_st purpose = {
                .type = GNUTLS_DT_KEY_PURPOSE_OID,
                .data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT,
        };
        unsigned status = 0;
        int r = gnutls_certificate_verify_peers(session, &purpose, 1, &status);
        if (r < 0 || status != 0) {
                c->verify_status = r < 0 ? GNUTLS_CERT_INVALID : status;
                return -1;
        }
        c->verified = true;
        return 0;
}

/* We turn the ClientHello away: a fatal alert, and the reason for the log. */
static int conn_refuse(tls_conn *c, gnutls_alert_description_t alert, int error, const char *format,
                       ...) PAF_PRINTF(4, 5);
static int conn_refuse(tls_conn *c, gnutls_alert_description_t alert, int error, const char *format,
                       ...) {
        va_list ap;
        va_start(ap, format);
        char *text = NULL;
        int n = vasprintf(&text, format, ap);
        va_end(ap);
        if (n < 0)
                return GNUTLS_E_MEMORY_ERROR;
        free(c->refusal);
        c->refusal = text;
        c->refusal_alert = alert;
        return error;
}

/* A host name as SNI carries it (RFC 6066 §3), safe to look up and to log. */
static bool sni_is_host_name(const char *name, size_t len) {
        if (len == 0 || strnlen(name, len) != len)
                return false;
        for (size_t i = 0; i < len; i++)
                if (name[i] <= ' ' || name[i] > '~')
                        return false;
        return true;
}

/* The challenge certificate of name, as credentials of this handshake's own. */
static int acme_certs_get(tls_conn *c, const char *name) {
        char *cert = NULL, *key = NULL;
        int r = paf_acme_tlsalpn_lookup(c->params->acme, name, &cert, &key);
        if (r == -ENOENT)
                return conn_refuse(c, GNUTLS_A_UNRECOGNIZED_NAME, GNUTLS_E_UNRECOGNIZED_NAME,
                                   "acme-tls/1 for \"%s\": no tls-alpn-01 challenge for that name",
                                   name);
        if (r < 0)
                return conn_refuse(c, GNUTLS_A_INTERNAL_ERROR, GNUTLS_E_INTERNAL_ERROR,
                                   "acme-tls/1 for \"%s\": %s", name, strerror(-r));
        tls_certs *certs = NULL;
        int g = GNUTLS_E_MEMORY_ERROR;
        if (certs_new(&certs) >= 0) {
                gnutls_datum_t cd = {(unsigned char *)cert, (unsigned)strlen(cert)};
                gnutls_datum_t kd = {(unsigned char *)key, (unsigned)strlen(key)};
                g = gnutls_certificate_set_x509_key_mem2(certs->cred, &cd, &kd, GNUTLS_X509_FMT_PEM,
                                                         NULL, 0);
        }
        free(cert);
        explicit_bzero(key, strlen(key));
        free(key);
        char *copy = g >= 0 ? strdup(name) : NULL;
        if (g >= 0 && !copy)
                g = GNUTLS_E_MEMORY_ERROR;
        if (g >= 0)
                g = gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, certs->cred);
        if (g < 0) {
                free(copy);
                certs_unref(certs);
                return conn_refuse(c, GNUTLS_A_INTERNAL_ERROR, GNUTLS_E_INTERNAL_ERROR,
                                   "acme-tls/1 for \"%s\": the challenge certificate: %s", name,
                                   gnutls_strerror(g));
        }
        c->acme_certs = certs;
        c->acme_name = copy;
        /* A validator has no client certificate; asking would only risk failing it. */
        gnutls_certificate_server_set_request(c->session, GNUTLS_CERT_IGNORE);
        tls_log(PAF_LOG_DEBUG, "%s: acme-tls/1 for \"%s\": the tls-alpn-01 challenge certificate",
                conn_peer(c), name);
        return 0;
}

/*
 * Server, with tls.acme-tlsalpn: the ClientHello's ALPN and SNI are read,
 * no certificate is chosen yet. A ClientHello offering acme-tls/1 (then
 * the protocol selected, as the first of ours) is a validation: it gets its
 * name's challenge certificate, or a fatal alert; never the normal
 * certificate. Others go on as on any listener, when there is a normal
 * certificate to give them.
 */
static int on_client_hello(gnutls_session_t session) {
        tls_conn *c = gnutls_session_get_ptr(session);
        if (c->acme_certs)
                return 0; /* the second ClientHello, after a HelloRetryRequest */
        gnutls_datum_t alpn = {};
        if (gnutls_alpn_get_selected_protocol(session, &alpn) < 0 || !alpn_is_acme(&alpn)) {
                if (c->params->has_cert)
                        return 0;
                return conn_refuse(c, GNUTLS_A_HANDSHAKE_FAILURE, GNUTLS_E_INSUFFICIENT_CREDENTIALS,
                                   "no certificate: this listener answers only acme-tls/1 "
                                   "(tls-alpn-01 validation)");
        }
        char name[256];
        size_t len = sizeof(name);
        unsigned type = 0;
        int g = gnutls_server_name_get(session, name, &len, &type, 0);
        if (g == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE || (g >= 0 && type != GNUTLS_NAME_DNS))
                return conn_refuse(
                        c, GNUTLS_A_UNRECOGNIZED_NAME, GNUTLS_E_UNRECOGNIZED_NAME,
                        "acme-tls/1 without a server name (SNI): no challenge to answer");
        if (g < 0 || !sni_is_host_name(name, len))
                return conn_refuse(c, GNUTLS_A_UNRECOGNIZED_NAME, GNUTLS_E_UNRECOGNIZED_NAME,
                                   "acme-tls/1 for a server name that is no host name");
        return acme_certs_get(c, name);
}

/* ---- the TLS flow ---- */

static int tls_flow_read_start(paf_flow *flow) {
        tls_conn *c = paf_flow_get_impl(flow);
        /* Records GnuTLS or our buffer already hold will not come with any
         * new input: deliver them from the loop, then read on. */
        return sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
}

static int tls_flow_read_stop(paf_flow *flow) {
        tls_conn *c = paf_flow_get_impl(flow);
        conn_update_reading(c);
        return 0;
}

static int tls_flow_write(paf_flow *flow, const struct iovec *iov, size_t n_iov) {
        tls_conn *c = paf_flow_get_impl(flow);
        if (c->write_error < 0)
                return c->write_error;
        c->w_active = true;
        c->w_encrypted = false;
        c->w_iov = iov;
        c->w_n = n_iov;
        c->w_index = c->w_offset = 0;
        c->w_mark = 0;
        conn_ref(c);
        conn_write_progress(c);
        conn_unref(c);
        return 0;
}

static int tls_flow_shutdown(paf_flow *flow) {
        tls_conn *c = paf_flow_get_impl(flow);
        if (c->write_error < 0)
                return c->write_error;
        /* close_notify, then the transport's own end of stream after it. */
        int r = gnutls_bye(c->session, GNUTLS_SHUT_WR);
        if (r < 0)
                tls_log(PAF_LOG_DEBUG, "%s: close_notify: %s", conn_peer(c), gnutls_strerror(r));
        conn_flush(c);
        if (c->write_error < 0)
                return c->write_error;
        return paf_flow_shutdown(c->inner, NULL, NULL);
}

static void tls_flow_close(paf_flow *flow) {
        conn_kill(paf_flow_get_impl(flow));
}

static int copy_text(const char *s, size_t len, void *ret, size_t size) {
        if (len + 1 > size)
                return -ENOBUFS;
        memcpy(ret, s, len);
        ((char *)ret)[len] = '\0';
        return (int)len;
}

/* The verified peer certificate's subject or issuer DN (as text), or its
 * expiry (int64_t). */
static int query_peer_cert(tls_conn *c, int what, void *ret, size_t size) {
        /* An unverified certificate says whatever its maker wanted. */
        if (!c->verified)
                return -ENODATA;
        unsigned n = 0;
        const gnutls_datum_t *certs = gnutls_certificate_get_peers(c->session, &n);
        if (!certs || n == 0)
                return -ENODATA;
        gnutls_x509_crt_t crt;
        if (gnutls_x509_crt_init(&crt) < 0)
                return -ENOMEM;
        int r = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);
        if (r >= 0 && what == PAF_FLOW_QUERY_TLS_PEER_EXPIRY) {
                time_t t = gnutls_x509_crt_get_expiration_time(crt);
                gnutls_x509_crt_deinit(crt);
                if (t == (time_t)-1)
                        return -EBADMSG;
                if (size < sizeof(int64_t))
                        return -ENOBUFS;
                int64_t v = (int64_t)t;
                memcpy(ret, &v, sizeof(v));
                return (int)sizeof(v);
        }
        gnutls_datum_t dn = {};
        if (r >= 0)
                r = gnutls_x509_crt_get_issuer_dn3(crt, &dn, 0);
        gnutls_x509_crt_deinit(crt);
        if (r < 0)
                return -EBADMSG;
        r = copy_text((const char *)dn.data, dn.size, ret, size);
        gnutls_free(dn.data);
        return r;
}

static int query_peer_dn(tls_conn *c, void *ret, size_t size) {
        /* An unverified certificate says whatever its maker wanted. */
        if (!c->verified)
                return -ENODATA;
        unsigned n = 0;
        const gnutls_datum_t *certs = gnutls_certificate_get_peers(c->session, &n);
        if (!certs || n == 0)
                return -ENODATA;
        gnutls_x509_crt_t crt;
        if (gnutls_x509_crt_init(&crt) < 0)
                return -ENOMEM;
        gnutls_datum_t dn = {};
        int r = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);
        if (r >= 0)
                r = gnutls_x509_crt_get_dn3(crt, &dn, 0);
        gnutls_x509_crt_deinit(crt);
        if (r < 0)
                return -EBADMSG;
        r = copy_text((const char *)dn.data, dn.size, ret, size);
        gnutls_free(dn.data);
        return r;
}

static int tls_flow_query(paf_flow *flow, int what, void *ret, size_t size) {
        tls_conn *c = paf_flow_get_impl(flow);
        switch (what) {
        case PAF_FLOW_QUERY_TLS_ALPN: {
                gnutls_datum_t alpn = {};
                if (gnutls_alpn_get_selected_protocol(c->session, &alpn) < 0)
                        return copy_text("", 0, ret, size);
                return copy_text((const char *)alpn.data, alpn.size, ret, size);
        }
        case PAF_FLOW_QUERY_TLS_SERVER_NAME: {
                if (!c->server) {
                        const char *name = c->params->sni ? c->params->server_name : "";
                        return copy_text(name, strlen(name), ret, size);
                }
                char name[256];
                size_t len = sizeof(name);
                unsigned type = 0;
                if (gnutls_server_name_get(c->session, name, &len, &type, 0) < 0 ||
                    type != GNUTLS_NAME_DNS)
                        return copy_text("", 0, ret, size);
                return copy_text(name, strnlen(name, len), ret, size);
        }
        case PAF_FLOW_QUERY_TLS_PEER_DN:
                return query_peer_dn(c, ret, size);
        case PAF_FLOW_QUERY_TLS_PEER_ISSUER:
        case PAF_FLOW_QUERY_TLS_PEER_EXPIRY:
                return query_peer_cert(c, what, ret, size);
        case PAF_FLOW_QUERY_TLS_CIPHER: {
                /* The IANA name, as OpenSSL's curl shows it (TLS_AES_256_GCM_SHA384). */
                const char *s = gnutls_ciphersuite_get(c->session);
                if (!s)
                        s = gnutls_cipher_get_name(gnutls_cipher_get(c->session));
                if (!s)
                        return -ENODATA;
                return copy_text(s, strlen(s), ret, size);
        }
        case PAF_FLOW_QUERY_TLS_VERSION: {
                const char *v = gnutls_protocol_get_name(gnutls_protocol_get_version(c->session));
                if (!v)
                        return -ENODATA;
                return copy_text(v, strlen(v), ret, size);
        }
        default:
                /* The fd, peer credentials … belong to the transport. */
                return c->inner ? paf_flow_query(c->inner, what, ret, size) : -EOPNOTSUPP;
        }
}

/* No send_file: the records go through our own transport functions (onto
 * any flow), so GnuTLS never hands the session to kernel TLS, and
 * gnutls_record_send_file() would only copy as the core does. File bodies
 * are the core's pread(2) and our write. */
static const paf_flow_ops tls_flow_ops = {
        .struct_size = sizeof(paf_flow_ops),
        .read_start = tls_flow_read_start,
        .read_stop = tls_flow_read_stop,
        .write = tls_flow_write,
        .shutdown = tls_flow_shutdown,
        .close = tls_flow_close,
        .query = tls_flow_query,
};

/* ---- server: the listener ---- */

/* Accept while our user wants connections and the handshakes in progress
 * are under the cap; otherwise leave new ones in the kernel's backlog. */
static void listener_update(tls_listener *tl) {
        bool want = tl->started && tl->n_handshakes < tl->max_handshakes;
        if (want == tl->inner_running)
                return;
        int r = want ? paf_listener_start(tl->inner) : paf_listener_stop(tl->inner);
        if (r < 0) {
                tls_log(PAF_LOG_WARNING, "%s: cannot %s accepting: %s",
                        paf_listener_get_address(tl->listener), want ? "resume" : "pause",
                        strerror(-r));
                return;
        }
        tl->inner_running = want;
}

static void listener_unlink(tls_conn *c) {
        tls_listener *tl = c->listener;
        if (!tl)
                return;
        if (c->prev)
                c->prev->next = c->next;
        else
                tl->handshakes = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        c->listener = NULL;
        tl->n_handshakes--;
        listener_update(tl);
        /* Last: our user's handler may stop or start us from in there. */
        paf_listener_add_pending(tl->listener, -1);
}

static void on_inner_accept(paf_listener *inner, paf_flow *flow, void *userdata) {
        (void)inner;
        tls_listener *tl = userdata;
        tls_conn *c;
        int r = conn_new(paf_flow_get_event(flow), true, tl->params, &c);
        if (r < 0) {
                paf_flow_close(flow, NULL, NULL);
                return;
        }
        r = conn_start(c, flow);
        if (r < 0) {
                tls_log(PAF_LOG_WARNING, "%s: cannot set up a TLS connection: %s", conn_peer(c),
                        strerror(-r));
                conn_kill(c);
                return;
        }
        c->listener = tl;
        c->next = tl->handshakes;
        if (c->next)
                c->next->prev = c;
        tl->handshakes = c;
        tl->n_handshakes++;
        listener_update(tl);
        /* The client speaks first: wait for its hello. */
        conn_update_reading(c);
        /* Last: our user counts it like a connection, and may stop us. */
        paf_listener_add_pending(tl->listener, 1);
}

static int tls_listener_start(paf_listener *l) {
        tls_listener *tl = paf_listener_get_impl(l);
        tl->started = true;
        listener_update(tl);
        return 0;
}

static int tls_listener_stop(paf_listener *l) {
        tls_listener *tl = paf_listener_get_impl(l);
        tl->started = false;
        listener_update(tl);
        return 0;
}

/* May run inside paf_listener_deliver() of a connection whose handshake just
 * completed: that one was unlinked before. */
static void tls_listener_close(paf_listener *l) {
        tls_listener *tl = paf_listener_get_impl(l);
        while (tl->handshakes) {
                tls_conn *c = tl->handshakes;
                listener_unlink(c);
                conn_kill(c);
        }
        paf_listener_free(tl->inner);
        params_unref(tl->params);
        free(tl);
}

static int tls_listener_get_fd(paf_listener *l) {
        tls_listener *tl = paf_listener_get_impl(l);
        return paf_listener_get_fd(tl->inner);
}

/* New credentials (and tls.acme-tlsalpn, or none) for new handshakes;
 * sessions keep the ones they started with (each holds a reference). On
 * error the old ones stay. */
static int tls_listener_reload(paf_listener *l, paf_ctx *ctx, paf_error *error) {
        tls_listener *tl = paf_listener_get_impl(l);
        if (!ctx)
                return paf_error_set(error, -EINVAL, "%s: no configuration to reload",
                                     paf_listener_get_address(l));
        tls_params *p = NULL;
        int r = server_params_new(tl->cfg, ctx, &p, error);
        if (r < 0)
                return r;
        params_unref(tl->params);
        tl->params = p;
        tls_log(PAF_LOG_INFO, "%s: reloaded the TLS configuration", paf_listener_get_address(l));
        return 0;
}

static const paf_listener_ops tls_listener_ops = {
        .struct_size = sizeof(paf_listener_ops),
        .start = tls_listener_start,
        .stop = tls_listener_stop,
        .close = tls_listener_close,
        .get_fd = tls_listener_get_fd,
        .reload = tls_listener_reload,
};

static int tls_wrap_listener(paf_listener *inner, paf_ctx *ctx, paf_listener **ret,
                             paf_error *error, void *userdata) {
        tls_config *cfg = userdata;
        tls_params *p = NULL;
        int r = server_params_new(cfg, ctx, &p, error);
        if (r < 0) {
                paf_listener_free(inner);
                return r;
        }
        tls_listener *tl = calloc(1, sizeof(*tl));
        if (!tl) {
                params_unref(p);
                paf_listener_free(inner);
                return paf_error_set(error, -ENOMEM, "out of memory");
        }
        tl->inner = inner;
        tl->cfg = cfg;
        tl->params = p;
        tl->max_handshakes = (unsigned)cfg->max_handshakes;
        r = paf_listener_new(paf_listener_get_event(inner), &tls_listener_ops, tl, "tls",
                             paf_listener_get_address(inner), &tl->listener);
        /* Ours now: accepting waits until our own user is there. */
        if (r >= 0)
                r = paf_listener_set_accept_handler(inner, on_inner_accept, tl);
        if (r >= 0)
                r = paf_listener_stop(inner);
        if (r < 0) {
                if (tl->listener)
                        /* Its close releases inner and tl. */
                        paf_listener_free(tl->listener);
                else {
                        paf_listener_free(inner);
                        params_unref(p);
                        free(tl);
                }
                return paf_error_set(error, r, "%s: cannot serve TLS: %s",
                                     paf_listener_get_address(inner), strerror(-r));
        }
        *ret = tl->listener;
        return 0;
}

/* ---- client: connect ---- */

static void on_inner_connected(paf_flow *flow, const paf_attempt *attempts, size_t n_attempts,
                               void *userdata) {
        tls_conn *c = userdata;
        c->inner_connect = NULL; /* freed after this call */
        if (!flow) {
                /* What the transports tried said (why none could be, if
                 * none was), on one line: it is our reason. */
                int error = 0;
                size_t n_tried = 0;
                for (size_t i = 0; i < n_attempts; i++)
                        if (attempts[i].tried) {
                                n_tried++;
                                if (error == 0 && attempts[i].error < 0)
                                        error = attempts[i].error;
                        }
                paf_attempt *list = calloc(n_attempts + 1, sizeof(*list));
                size_t k = 0;
                for (size_t i = 0; list && i < n_attempts; i++)
                        if (n_tried == 0 || attempts[i].tried)
                                list[k++] = attempts[i];
                char *report = list ? paf_attempts_format(list, k) : NULL;
                free(list);
                if (report) {
                        size_t len = strlen(report);
                        while (len > 0 && report[len - 1] == '\n')
                                report[--len] = '\0';
                        for (char *p = report; *p; p++)
                                if (*p == '\n')
                                        *p = ';';
                }
                char reason[1024];
                snprintf(reason, sizeof(reason), "no connection to run over: %s",
                         report && *report ? report : "no transport for this context");
                free(report);
                conn_client_fail(c, error < 0 ? error : -ENOENT, reason);
                return;
        }
        int r = conn_start(c, flow);
        if (r < 0) {
                conn_client_fail(c, r, strerror(-r));
                return;
        }
        /* Sends the ClientHello. */
        conn_process(c);
}

static int tls_connect(paf_connect_request *req, void *userdata) {
        tls_config *cfg = userdata;
        paf_error e = PAF_ERROR_NULL;
        tls_params *p = NULL;
        int r = client_params_new(cfg, paf_connect_request_get_ctx(req), &p, &e);
        if (r < 0) {
                paf_connect_request_fail(req, r, "%s", e.message);
                return 0;
        }
        tls_conn *c;
        r = conn_new(paf_connect_request_get_event(req), false, p, &c);
        params_unref(p);
        if (r < 0)
                return r;
        c->req = req;
        paf_connect_request_set_data(req, c);
        r = paf_connect_request_connect_inner(req, on_inner_connected, c, &c->inner_connect);
        if (r < 0) {
                char reason[128];
                snprintf(reason, sizeof(reason), "cannot connect what TLS runs over: %s",
                         strerror(-r));
                conn_client_fail(c, r, reason);
        }
        return 0;
}

static void tls_cancel(paf_connect_request *req, void *userdata) {
        (void)userdata;
        tls_conn *c = paf_connect_request_get_data(req);
        paf_connect_request_set_data(req, NULL);
        if (!c)
                return;
        c->req = NULL;
        conn_kill(c);
}

static int tls_describe(paf_ctx *ctx, char *buf, size_t size, void *userdata) {
        (void)userdata;
        const char *name;
        int r = paf_ctx_get_string(ctx, "tls.server-name", &name);
        if (r < 0)
                return r;
        snprintf(buf, size, "%s", name);
        return 0;
}

/* ---- plugin ---- */

/* "https" and "https+X": TLS over whatever serves the rest of the scheme. */
static const paf_scheme_desc tls_scheme = {
        .struct_size = sizeof(paf_scheme_desc),
        .name = "https",
        .protocol = "tls",
        .flags = PAF_SCHEME_LAYER,
};

/* https://HOST: the server name is the URL's host name. Over a transport
 * whose host is no name ("https+unix", a path) there is no url.hostname:
 * tls.server-name comes from the user. */
static int rule_server_name(const paf_value *in, size_t n, paf_value *ret, void *userdata) {
        (void)n;
        (void)userdata;
        *ret = PAF_VALUE_STRING(in[0].string);
        return 1;
}

static const char *const tls_keys[] = {"tls.server-name", NULL};

static const paf_protocol_ops tls_protocol = {
        .struct_size = sizeof(paf_protocol_ops),
        .name = "tls",
        .priority = TLS_PRIORITY,
        .endpoint_keys = tls_keys,
        .describe = tls_describe,
        .connect = tls_connect,
        .cancel = tls_cancel,
        .flags = PAF_PROTOCOL_LAYER,
        .wrap_listener = tls_wrap_listener,
};

static void config_free(tls_config *cfg) {
        if (!cfg)
                return;
        certs_unref(cfg->system_certs);
        pthread_mutex_destroy(&cfg->lock);
        free(cfg->priority);
        free(cfg);
}

static int tls_init(paf_plugin *plugin, paf_registry *reg, const paf_host *host) {
        tls_config *cfg = calloc(1, sizeof(*cfg));
        if (!cfg)
                return -ENOMEM;
        pthread_mutex_init(&cfg->lock, NULL);

        paf_value v;
        int r = host->get_option(plugin, "priority", &v);
        cfg->priority = strdup(r >= 0 && v.type == PAF_TYPE_STRING ? v.string : DEFAULT_PRIORITY);
        r = host->get_option(plugin, "handshake-timeout", &v);
        cfg->handshake_timeout =
                r >= 0 && v.type == PAF_TYPE_INT ? v.integer : DEFAULT_HANDSHAKE_TIMEOUT;
        r = host->get_option(plugin, "max-handshakes", &v);
        cfg->max_handshakes = r >= 0 && v.type == PAF_TYPE_INT ? v.integer : DEFAULT_MAX_HANDSHAKES;
        if (!cfg->priority) {
                config_free(cfg);
                return -ENOMEM;
        }
        /* Nothing to refuse here: the option table checked every [tls]
         * value (priority_check, the ranges) before init() ran. */
        r = 0;

        static const paf_rule_input inputs[] = {
                PAF_REQUIRED("url.hostname", PAF_TYPE_STRING),
        };
        if (r >= 0)
                r = paf_registry_add_scheme(reg, &tls_scheme);
        if (r >= 0)
                r = paf_registry_add_url_rule(reg, "tls", "tls.server-name", PAF_TYPE_STRING,
                                              inputs, 1, rule_server_name, NULL, NULL);
        if (r >= 0)
                r = paf_registry_add_protocol(reg, &tls_protocol, cfg);
        if (r < 0) {
                config_free(cfg);
                return r;
        }
        paf_plugin_set_userdata(plugin, cfg);
        return 0;
}

static void tls_fini(paf_plugin *plugin) {
        config_free(paf_plugin_get_userdata(plugin));
}

/* [tls] priority: what GnuTLS makes of it, when the file is read (`paf config
 * check` too) rather than at the first handshake. */
static int priority_check(const paf_value *value, char *reason, size_t size) {
        gnutls_priority_t prio;
        const char *where = NULL;
        int r = gnutls_priority_init2(&prio, value->string, &where, 0);
        if (r >= 0) {
                gnutls_priority_deinit(prio);
                return 0;
        }
        if (r == GNUTLS_E_INVALID_REQUEST && where)
                snprintf(reason, size, "\"%s\" is not a GnuTLS priority string (invalid at \"%s\")",
                         value->string, where);
        else
                snprintf(reason, size, "\"%s\" is not a GnuTLS priority string (%s)", value->string,
                         gnutls_strerror(r));
        return -EINVAL;
}

static const paf_option_spec tls_options[] = {
        {"priority", PAF_TYPE_STRING, DEFAULT_PRIORITY,
         "GnuTLS priority string (ciphers, versions); ctx tls.priority overrides it",
         .check = priority_check},
        {"handshake-timeout", PAF_TYPE_INT, "10",
         "Seconds a TLS handshake may take; ctx tls.handshake-timeout overrides it",
         .flags = PAF_OPTION_RANGE, .min = 1, .max = 3600},
        {"max-handshakes", PAF_TYPE_INT, "1024",
         "TLS handshakes in progress per listener; beyond, new connections wait in the backlog",
         .flags = PAF_OPTION_RANGE, .min = 1, .max = MAX_MAX_HANDSHAKES},
        {},
};

PAF_PLUGIN_DEFINE(.name = "tls", .version = PAF_VERSION,
                  .description = "TLS 1.2/1.3 (GnuTLS) over any transport, client and server",
                  .option_specs = tls_options, .init = tls_init, .fini = tls_fini);
