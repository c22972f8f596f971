/* tests/fuzz/fuzz-tls-server.c — libFuzzer: tls.so's server side over an in-memory flow, fed
 * garbage and (mutated) ClientHellos, with the HTTP server or a plain reader on top.
 *
 * Input: 1 byte of options, 1 byte of delivery piece size, then what the client sends. The
 * seed corpus holds ClientHellos captured from gnutls-cli, openssl s_client and curl
 * (tests/fuzz/capture-clienthello.sh).
 *
 * Checked beyond the sanitizers: the loop settles, the inner flow is closed once the listener
 * and its user are gone, nothing is left on the loop.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <paf.h>
#include <paf/http.h>

#include "fuzz-common.h"

#define OPT_HTTP 0x01   /* the HTTP server takes the TLS flows (else a reader) */
#define OPT_END 0x06    /* how the input ends (memflow_end) */
#define OPT_ASYNC 0x08  /* writes complete from the loop */
#define OPT_ALPN 0x10   /* offer h2 too */
#define OPT_BUDGET 0x20 /* writes fail past a budget */
#define OPT_TWO 0x40    /* the same bytes over a second connection too */

static paf_registry *registry;
static char certdir[64];
static char cert_file[128], key_file[128];

typedef struct reader {
        paf_flow *flow;
        bool writing;
} reader;

typedef struct state {
        sd_event *event;
        bool started;
        paf_listener *inner;
        reader readers[2];
        size_t n_readers;
} state;

static state S;

/* ---- a self-signed certificate for "localhost", made once ---- */

static void write_datum(const char *path, const gnutls_datum_t *d) {
        FILE *f = fopen(path, "we");
        FUZZ_CHECK(f);
        FUZZ_CHECK(fwrite(d->data, 1, d->size, f) == d->size);
        FUZZ_CHECK(fclose(f) == 0);
}

static void remove_certs(void) {
        unlink(cert_file);
        unlink(key_file);
        rmdir(certdir);
}

static void make_certs(void) {
        snprintf(certdir, sizeof(certdir), "/tmp/paf-fuzz-tls-XXXXXX");
        FUZZ_CHECK(mkdtemp(certdir));
        snprintf(cert_file, sizeof(cert_file), "%s/cert.pem", certdir);
        snprintf(key_file, sizeof(key_file), "%s/key.pem", certdir);
        atexit(remove_certs);

        gnutls_x509_privkey_t key;
        gnutls_x509_crt_t crt;
        FUZZ_CHECK(gnutls_x509_privkey_init(&key) >= 0);
        FUZZ_CHECK(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                                GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1),
                                                0) >= 0);
        FUZZ_CHECK(gnutls_x509_crt_init(&crt) >= 0);
        time_t now = time(NULL);
        unsigned char serial[] = {0x01, 0x02};
        FUZZ_CHECK(gnutls_x509_crt_set_version(crt, 3) >= 0);
        FUZZ_CHECK(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)) >= 0);
        FUZZ_CHECK(gnutls_x509_crt_set_activation_time(crt, now - 3600) >= 0);
        FUZZ_CHECK(gnutls_x509_crt_set_expiration_time(crt, now + 3650 * 86400) >= 0);
        FUZZ_CHECK(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "localhost",
                                                 9) >= 0);
        FUZZ_CHECK(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", 9,
                                                        GNUTLS_FSAN_SET) >= 0);
        FUZZ_CHECK(gnutls_x509_crt_set_key(crt, key) >= 0);
        FUZZ_CHECK(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0) >= 0);

        gnutls_datum_t d;
        FUZZ_CHECK(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d) >= 0);
        write_datum(cert_file, &d);
        gnutls_free(d.data);
        FUZZ_CHECK(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &d) >= 0);
        write_datum(key_file, &d);
        gnutls_free(d.data);
        gnutls_x509_crt_deinit(crt);
        gnutls_x509_privkey_deinit(key);
}

/* ---- the inner listener: hands out the in-memory flows ---- */

static int inner_start(paf_listener *l) {
        (void)l;
        S.started = true;
        return 0;
}

static int inner_stop(paf_listener *l) {
        (void)l;
        S.started = false;
        return 0;
}

static void inner_close(paf_listener *l) {
        (void)l;
        S.started = false;
        S.inner = NULL;
}

static const paf_listener_ops inner_ops = {
        .struct_size = sizeof(paf_listener_ops),
        .start = inner_start,
        .stop = inner_stop,
        .close = inner_close,
};

/* ---- without HTTP: a reader that answers each piece ---- */

static void on_reader_written(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        (void)error;
        reader *r = userdata;
        r->writing = false;
}

static void reader_close(reader *r) {
        if (r->flow) {
                paf_flow_close(r->flow, NULL, NULL);
                r->flow = NULL;
        }
}

static void on_reader_read(paf_flow *flow, const void *data, size_t len, int error,
                           void *userdata) {
        reader *r = userdata;
        if (error < 0 || len == 0) {
                if (error == 0 && !r->writing)
                        (void)paf_flow_shutdown(flow, NULL, NULL);
                reader_close(r);
                return;
        }
        FUZZ_CHECK(data);
        fuzz_touch(data, len);
        if (!r->writing) {
                static const char answer[] = "thanks\n";
                struct iovec iov = {(void *)answer, sizeof(answer) - 1};
                if (paf_flow_write(flow, &iov, 1, on_reader_written, r) >= 0)
                        r->writing = true;
        }
}

static void on_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        (void)userdata;
        char buf[256];
        /* A completed handshake answers what TLS knows. */
        FUZZ_CHECK(paf_flow_query(flow, PAF_FLOW_QUERY_TLS_VERSION, buf, sizeof(buf)) >= 0);
        (void)paf_flow_query(flow, PAF_FLOW_QUERY_TLS_ALPN, buf, sizeof(buf));
        (void)paf_flow_query(flow, PAF_FLOW_QUERY_TLS_SERVER_NAME, buf, sizeof(buf));
        (void)paf_flow_query(flow, PAF_FLOW_QUERY_TLS_PEER_DN, buf, sizeof(buf));
        if (S.n_readers >= 2) {
                paf_flow_close(flow, NULL, NULL);
                return;
        }
        reader *r = &S.readers[S.n_readers++];
        *r = (reader){.flow = flow};
        if (paf_flow_read_start(flow, on_reader_read, r) < 0)
                reader_close(r);
}

static void on_request(paf_http_request *req, void *userdata) {
        (void)userdata;
        FUZZ_CHECK(paf_http_respond(req, 200, "text/plain", "hello\n", 6) >= 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void)argc;
        (void)argv;
        fuzz_setup();
        make_certs();
        /* The loader dlopen()s /proc/self/fd/N, a name gone once it is closed; opened by its
         * path first (the loader then gets this same object), reports and coverage can name
         * tls.c's lines. */
        FUZZ_CHECK(dlopen(PAF_FUZZ_PLUGINDIR "/tls.so", RTLD_NOW | RTLD_LOCAL));
        FUZZ_CHECK(paf_registry_new(&registry) >= 0);
        paf_error e = PAF_ERROR_NULL;
        if (paf_registry_load_plugin(registry, PAF_FUZZ_PLUGINDIR "/tls.so", &e) < 0) {
                fprintf(stderr, "fuzz-tls-server: %s\n", e.message);
                abort();
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t head[2] = {0};
        memcpy(head, data, size < 2 ? size : 2);
        const uint8_t *in = size > 2 ? data + 2 : NULL;
        size_t in_len = size > 2 ? size - 2 : 0;
        uint8_t opts = head[0];

        S = (state){.event = fuzz_event_new()};
        FUZZ_CHECK(paf_listener_new(S.event, &inner_ops, NULL, "memory", "memory:1", &S.inner) >=
                   0);
        paf_ctx *ctx = NULL;
        FUZZ_CHECK(paf_ctx_new(&ctx) >= 0);
        FUZZ_CHECK(paf_ctx_set_string(ctx, "tls.cert-file", cert_file) >= 0);
        FUZZ_CHECK(paf_ctx_set_string(ctx, "tls.key-file", key_file) >= 0);
        if (opts & OPT_ALPN)
                FUZZ_CHECK(paf_ctx_set_string(ctx, "tls.alpn", "h2,http/1.1") >= 0);
        paf_listener *tl = NULL;
        paf_error e = PAF_ERROR_NULL;
        if (paf_registry_wrap_listener(registry, "tls", S.inner, ctx, &tl, &e) < 0) {
                fprintf(stderr, "fuzz-tls-server: %s\n", e.message);
                abort();
        }
        paf_ctx_unref(ctx);

        paf_http_server *server = NULL;
        if (opts & OPT_HTTP) {
                FUZZ_CHECK(paf_http_server_new(S.event, on_request, NULL, NULL, &server) >= 0);
                FUZZ_CHECK(paf_http_server_add_listener(server, tl) >= 0);
        } else
                FUZZ_CHECK(paf_listener_set_accept_handler(tl, on_accept, NULL) >= 0);
        FUZZ_CHECK(S.started);

        memflow_options o = {
                .piece = head[1],
                .end = (opts & OPT_END) >> 1,
                .async_writes = opts & OPT_ASYNC,
                .write_budget = (opts & OPT_BUDGET) ? 1 + 16u * head[1] : 0,
        };
        unsigned n = (opts & OPT_TWO) ? 2 : 1;
        for (unsigned i = 0; i < n && S.started; i++) {
                paf_flow *flow;
                FUZZ_CHECK(memflow_new(S.event, in, in_len, &o, &flow) >= 0);
                paf_listener_deliver(S.inner, flow);
        }
        unsigned bound = 20000 + 64 * (unsigned)in_len;
        fuzz_run(S.event, bound);

        if (server)
                server = paf_http_server_free(server);
        else
                paf_listener_free(tl);
        fuzz_run(S.event, bound);
        FUZZ_CHECK(!S.inner);
        for (size_t i = 0; i < S.n_readers; i++)
                reader_close(&S.readers[i]);
        fuzz_run(S.event, bound);
        FUZZ_CHECK(memflow_get_n_alive() == 0);
        fuzz_event_free(S.event);
        return 0;
}
