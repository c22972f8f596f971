/* tests/plugins/test-tls-alpn01.c — tls-alpn-01 (RFC 8737) on tls.so's listener: acme-tls/1
 * handshakes get the challenge certificate of their SNI name from tls.acme-tlsalpn and are closed
 * after it, others are served as before; against gnutls-cli and a GnuTLS client of our own. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <paf.h>
#include <paf/acme.h>

#include "../common/paf-test.h"

/* Key authorizations as an ACME client makes them: token "." thumbprint. */
#define KA1                                                                                        \
        "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
#define KA2                                                                                        \
        "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
#define KA3 "DGyRejmCefe7v4NfDGDKfA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"

static char certdir[256];

static const char *cpath(const char *name) {
        static char bufs[4][sizeof(certdir) + 64];
        static unsigned next;
        char *b = bufs[next++ % 4];
        snprintf(b, sizeof(bufs[0]), "%s/%.62s", certdir, name);
        return b;
}

/* The listener's normal certificate: self-signed, for localhost. */
static const char cert_script[] =
        "set -e\n"
        "cd \"$1\"\n"
        "certtool --generate-privkey --key-type=ecdsa --outfile server.key\n"
        "printf 'cn = localhost\\ndns_name = localhost\\nexpiration_days = 30\\n"
        "tls_www_server\\nsigning_key\\n' > server.tmpl\n"
        "certtool --generate-self-signed --load-privkey server.key --template server.tmpl "
        "--outfile server.pem\n";

/* As in the tls suite: libgnutls there before tls.so, for valgrind's sake. */
static void *gnutls_handle;

static int group_setup(void **state) {
        (void)state;
        gnutls_handle = dlopen("libgnutls.so.30", RTLD_NOW);
        if (getenv("PAF_TEST_VERBOSE"))
                paf_log_set_level(PAF_LOG_DEBUG);
        snprintf(certdir, sizeof(certdir), "/tmp/paf-test-alpn01-XXXXXX");
        if (!mkdtemp(certdir))
                return -1;
        FILE *f = fopen(cpath("make-certs.sh"), "we");
        if (!f)
                return -1;
        fputs(cert_script, f);
        fclose(f);
        char cmd[3 * PATH_MAX];
        snprintf(cmd, sizeof(cmd), "sh '%s' '%s' >'%s' 2>&1", cpath("make-certs.sh"), certdir,
                 cpath("certtool.log"));
        if (system(cmd) != 0) {
                fprintf(stderr, "certificate generation failed\n");
                return -1;
        }
        return 0;
}

static int group_teardown(void **state) {
        (void)state;
        if (gnutls_handle)
                dlclose(gnutls_handle);
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", certdir);
        return system(cmd) == 0 ? 0 : -1;
}

/* ---- the server: a TLS listener whose connections go to an HTTP server ---- */

typedef struct env {
        sd_event *event;
        paf_registry *reg;
        int fds_before;
        paf_listener *listener;
        paf_http_server *http;
        unsigned n_accepted; /* what the listener handed to its user */
        unsigned n_requests;
} env;

static void on_request(paf_http_request *req, void *userdata) {
        env *v = userdata;
        v->n_requests++;
        assert_int_equal(paf_http_respond(req, 200, "text/plain", "hello\n", 6), 0);
}

static void on_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        env *v = userdata;
        v->n_accepted++;
        assert_int_equal(paf_http_server_add_flow(v->http, flow), 0);
}

static void load(env *v, const char *name) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s.so", getenv("PAF_TEST_PLUGINDIR"), name);
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_load_plugin(v->reg, path, &err) < 0)
                fail_msg("loading %s: %s", path, err.message);
}

static int setup(void **state) {
        env *v = calloc(1, sizeof(*v));
        assert_non_null(v);
        v->fds_before = count_fds();
        assert_int_equal(sd_event_new(&v->event), 0);
        assert_int_equal(paf_registry_new(&v->reg), 0);
        assert_non_null(getenv("PAF_TEST_PLUGINDIR"));
        load(v, "tcp");
        load(v, "tls");
        assert_int_equal(paf_http_server_new(v->event, on_request, NULL, v, &v->http), 0);
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        paf_listener_free(v->listener);
        paf_http_server_free(v->http);
        run_for(v->event, 30);
        paf_registry_unref(v->reg);
        sd_event_unref(v->event);
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

static void table_unref(void *p) {
        paf_acme_tlsalpn_unref(p);
}

/* A listener context: the normal certificate (or none), and the table (its
 * own reference, or none). */
static paf_ctx *server_ctx(bool cert, paf_acme_tlsalpn *t) {
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        if (cert) {
                assert_int_equal(paf_ctx_set_string(ctx, "tls.cert-file", cpath("server.pem")), 0);
                assert_int_equal(paf_ctx_set_string(ctx, "tls.key-file", cpath("server.key")), 0);
        }
        if (t)
                assert_int_equal(paf_ctx_set_pointer(ctx, "tls.acme-tlsalpn",
                                                     paf_acme_tlsalpn_ref(t), table_unref),
                                 0);
        return ctx;
}

/* Wrap a loopback tcp listener with ctx (taken); the error, if it fails. */
static int try_listen(env *v, paf_ctx *ctx, paf_listener **ret, paf_error *err) {
        paf_listener *inner;
        int r = paf_registry_listen_address(v->reg, "127.0.0.1:0", v->event, NULL, NULL, &inner,
                                            err);
        if (r < 0)
                fail_msg("listen: %s", err->message);
        r = paf_registry_wrap_listener(v->reg, "tls", inner, ctx, ret, err);
        paf_ctx_unref(ctx);
        return r;
}

static void listen_tls(env *v, paf_ctx *ctx) {
        paf_error err = PAF_ERROR_NULL;
        if (try_listen(v, ctx, &v->listener, &err) < 0)
                fail_msg("wrap: %s", err.message);
        assert_int_equal(paf_listener_set_accept_handler(v->listener, on_accept, v), 0);
}

static int listener_port(env *v) {
        const char *colon = strrchr(paf_listener_get_address(v->listener), ':');
        assert_non_null(colon);
        return atoi(colon + 1);
}

/* ---- a GnuTLS client on a thread of its own, blocking, bounded by socket timeouts ---- */

typedef struct client {
        /* what it does */
        int port;
        const char *sni;      /* NULL: no SNI */
        const char *alpn;     /* comma-separated; NULL: no ALPN */
        const char *priority; /* NULL: NORMAL */
        bool http;            /* GET / after the handshake, and read the answer */
        /* what it saw */
        int handshake; /* gnutls_handshake()'s result */
        int alert;     /* the fatal alert received, or -1 */
        char alpn_selected[64];
        uint8_t cert[4096]; /* the server's certificate, DER */
        size_t cert_len;
        int after;         /* without http: gnutls_record_recv() after the handshake */
        unsigned n_hellos; /* ClientHellos sent: 2 after a HelloRetryRequest */
        char answer[1024];
        atomic_bool done;
        pthread_t thread;
} client;

static int on_hello_sent(gnutls_session_t s, unsigned htype, unsigned when, unsigned incoming,
                         const gnutls_datum_t *msg) {
        (void)htype;
        (void)when;
        (void)msg;
        client *c = gnutls_session_get_ptr(s);
        if (!incoming)
                c->n_hellos++;
        return 0;
}

static void *client_main(void *userdata) {
        client *c = userdata;
        c->alert = -1;
        c->handshake = c->after = GNUTLS_E_INTERNAL_ERROR;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in in = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)c->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        struct timeval tv = {.tv_sec = 8};
        gnutls_session_t s = NULL;
        gnutls_certificate_credentials_t cred = NULL;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
            connect(fd, (struct sockaddr *)&in, sizeof(in)) < 0)
                goto out;
        if (gnutls_init(&s, GNUTLS_CLIENT) < 0 ||
            gnutls_certificate_allocate_credentials(&cred) < 0 ||
            gnutls_priority_set_direct(s, c->priority ? c->priority : "NORMAL", NULL) < 0 ||
            gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) < 0)
                goto out;
        if (c->sni)
                gnutls_server_name_set(s, GNUTLS_NAME_DNS, c->sni, strlen(c->sni));
        if (c->alpn) {
                char text[128];
                snprintf(text, sizeof(text), "%s", c->alpn);
                gnutls_datum_t list[4];
                unsigned n = 0;
                char *save = NULL;
                for (char *p = strtok_r(text, ",", &save); p && n < 4;
                     p = strtok_r(NULL, ",", &save))
                        list[n++] = (gnutls_datum_t){(unsigned char *)p, (unsigned)strlen(p)};
                gnutls_alpn_set_protocols(s, list, n, 0);
        }
        gnutls_session_set_ptr(s, c);
        gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_POST,
                                           on_hello_sent);
        gnutls_transport_set_int(s, fd);
        int r;
        do
                r = gnutls_handshake(s);
        while (r < 0 && !gnutls_error_is_fatal(r));
        c->handshake = r;
        if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
                c->alert = (int)gnutls_alert_get(s);
        if (r < 0)
                goto out;
        gnutls_datum_t a = {};
        if (gnutls_alpn_get_selected_protocol(s, &a) >= 0)
                snprintf(c->alpn_selected, sizeof(c->alpn_selected), "%.*s", (int)a.size,
                         (const char *)a.data);
        unsigned n = 0;
        const gnutls_datum_t *peers = gnutls_certificate_get_peers(s, &n);
        if (peers && n > 0 && peers[0].size <= sizeof(c->cert)) {
                memcpy(c->cert, peers[0].data, peers[0].size);
                c->cert_len = peers[0].size;
        }
        if (c->http) {
                const char get[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
                if (gnutls_record_send(s, get, sizeof(get) - 1) != sizeof(get) - 1)
                        goto out;
                size_t len = 0;
                for (int i = 0; i < 100 && len < sizeof(c->answer) - 1; i++) {
                        ssize_t k =
                                gnutls_record_recv(s, c->answer + len, sizeof(c->answer) - 1 - len);
                        if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
                                continue;
                        if (k <= 0)
                                break;
                        len += (size_t)k;
                }
                c->answer[len] = '\0';
        } else {
                /* The server's next word: close_notify (0) after a validation. */
                char buf[256];
                ssize_t k;
                do
                        k = gnutls_record_recv(s, buf, sizeof(buf));
                while (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED);
                c->after = (int)k;
        }
out:
        if (s)
                gnutls_deinit(s);
        if (cred)
                gnutls_certificate_free_credentials(cred);
        if (fd >= 0)
                close(fd);
        atomic_store(&c->done, true);
        return NULL;
}

/* Run the client while the loop serves it (15 s at most). */
static void client_run(env *v, client *c) {
        c->port = listener_port(v);
        atomic_init(&c->done, false);
        assert_int_equal(pthread_create(&c->thread, NULL, client_main, c), 0);
        uint64_t end = now_ms() + 15000;
        while (!atomic_load(&c->done) && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_true(atomic_load(&c->done));
        assert_int_equal(pthread_join(c->thread, NULL), 0);
        /* What the server does after the client went (closing our side). */
        run_for(v->event, 20);
}

/* ---- what a certificate says ---- */

static gnutls_x509_crt_t crt_import(const uint8_t *der, size_t len) {
        assert_true(len > 0);
        gnutls_x509_crt_t crt;
        assert_int_equal(gnutls_x509_crt_init(&crt), 0);
        gnutls_datum_t d = {(unsigned char *)der, (unsigned)len};
        assert_int_equal(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER), 0);
        return crt;
}

/*
 * The tls-alpn-01 certificate of RFC 8737 §3: its only subjectAltName is the
 * identifier (dns, or the address ip), and the critical acmeIdentifier
 * extension is the DER OCTET STRING of SHA-256(key_authorization).
 */
static void assert_challenge_cert(gnutls_x509_crt_t crt, const char *dns, const char *ip,
                                  const char *key_authorization) {
        char san[256];
        size_t size = sizeof(san);
        unsigned critical = 0;
        int type = gnutls_x509_crt_get_subject_alt_name(crt, 0, san, &size, &critical);
        if (dns) {
                assert_int_equal(type, GNUTLS_SAN_DNSNAME);
                assert_int_equal(size, strlen(dns));
                assert_memory_equal(san, dns, size);
        } else {
                uint8_t addr[16];
                int family = strchr(ip, ':') ? AF_INET6 : AF_INET;
                assert_int_equal(inet_pton(family, ip, addr), 1);
                assert_int_equal(type, GNUTLS_SAN_IPADDRESS);
                assert_int_equal(size, family == AF_INET ? 4 : 16);
                assert_memory_equal(san, addr, size);
        }
        size = sizeof(san);
        assert_int_equal(gnutls_x509_crt_get_subject_alt_name(crt, 1, san, &size, NULL),
                         GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);

        uint8_t expect[34] = {0x04, 0x20};
        assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, key_authorization,
                                          strlen(key_authorization), expect + 2),
                         0);
        uint8_t ext[64];
        size = sizeof(ext);
        critical = 0;
        assert_int_equal(gnutls_x509_crt_get_extension_by_oid(crt, PAF_ACME_TLSALPN_OID, 0, ext,
                                                              &size, &critical),
                         0);
        assert_int_equal(critical, 1);
        assert_int_equal(size, sizeof(expect));
        assert_memory_equal(ext, expect, sizeof(expect));
}

/* The listener's own certificate: localhost, no acmeIdentifier. */
static void assert_normal_cert(const client *c) {
        gnutls_x509_crt_t crt = crt_import(c->cert, c->cert_len);
        char san[256];
        size_t size = sizeof(san);
        assert_int_equal(gnutls_x509_crt_get_subject_alt_name(crt, 0, san, &size, NULL),
                         GNUTLS_SAN_DNSNAME);
        assert_string_equal(san, "localhost");
        uint8_t ext[64];
        size = sizeof(ext);
        assert_int_equal(gnutls_x509_crt_get_extension_by_oid(crt, PAF_ACME_TLSALPN_OID, 0, ext,
                                                              &size, NULL),
                         GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);
        gnutls_x509_crt_deinit(crt);
}

/* A validation as RFC 8737 makes it: only acme-tls/1, SNI the name. */
static void validate(env *v, const char *sni, const char *alpn, const char *priority, client *c) {
        *c = (client){
                .sni = sni, .alpn = alpn ? alpn : PAF_ACME_TLSALPN_PROTOCOL, .priority = priority};
        client_run(v, c);
}

/* It got the challenge certificate, acme-tls/1, then the server's close_notify. */
static void assert_answered(const client *c, const char *dns, const char *ip, const char *ka) {
        if (c->handshake < 0)
                fail_msg("validation handshake for %s: %s (alert %d)", c->sni ? c->sni : "-",
                         gnutls_strerror(c->handshake), c->alert);
        assert_string_equal(c->alpn_selected, PAF_ACME_TLSALPN_PROTOCOL);
        gnutls_x509_crt_t crt = crt_import(c->cert, c->cert_len);
        assert_challenge_cert(crt, dns, ip, ka);
        gnutls_x509_crt_deinit(crt);
        if (c->after != 0)
                fail_msg("after the validation: %s, expected the server's close_notify",
                         gnutls_strerror(c->after));
}

static void assert_alert(const client *c, gnutls_alert_description_t alert) {
        if (c->handshake != GNUTLS_E_FATAL_ALERT_RECEIVED)
                fail_msg("handshake: %s, expected the alert %s", gnutls_strerror(c->handshake),
                         gnutls_alert_get_name(alert));
        if (c->alert != (int)alert)
                fail_msg("alert %s, expected %s", gnutls_alert_get_name(c->alert),
                         gnutls_alert_get_name(alert));
}

/* A normal client: the normal certificate, and an HTTP answer. */
static void assert_http(env *v, const char *alpn, const char *expect_alpn) {
        client c = {.sni = "localhost", .alpn = alpn, .http = true};
        client_run(v, &c);
        if (c.handshake < 0)
                fail_msg("normal handshake (ALPN %s): %s", alpn ? alpn : "none",
                         gnutls_strerror(c.handshake));
        assert_string_equal(c.alpn_selected, expect_alpn);
        assert_normal_cert(&c);
        if (strncmp(c.answer, "HTTP/1.1 200", 12) != 0 || !strstr(c.answer, "\r\n\r\nhello\n"))
                fail_msg("HTTP answer: \"%s\"", c.answer);
}

static paf_acme_tlsalpn *table_new(void) {
        paf_acme_tlsalpn *t;
        assert_int_equal(paf_acme_tlsalpn_new(&t), 0);
        return t;
}

/* ---- the tests ---- */

/* gnutls-cli as a validator: the certificate it saves, the protocol it
 * reports, and its exit once the server closes (its stdin stays open). */
static void test_gnutls_cli(void **state) {
        env *v = *state;
        if (system("command -v gnutls-cli >/dev/null 2>&1") != 0)
                skip();
        paf_acme_tlsalpn *t = table_new();
        assert_int_equal(paf_acme_tlsalpn_add(t, "example.test", KA1), 0);
        listen_tls(v, server_ctx(true, t));

        char port[16];
        snprintf(port, sizeof(port), "--port=%d", listener_port(v));
        char save[PATH_MAX + 16];
        snprintf(save, sizeof(save), "--save-cert=%s", cpath("served.pem"));
        int in[2];
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        int out = open(cpath("gnutls-cli.out"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(out >= 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                dup2(in[0], 0);
                dup2(out, 1);
                dup2(out, 2);
                execlp("gnutls-cli", "gnutls-cli", port, "--sni-hostname=example.test",
                       "--alpn=" PAF_ACME_TLSALPN_PROTOCOL, "--insecure", save, "127.0.0.1",
                       (char *)NULL);
                _exit(127);
        }
        close(in[0]);
        close(out);
        int status = -1;
        uint64_t end = now_ms() + 15000;
        while (now_ms() < end) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                assert_true(w >= 0);
                if (w == pid)
                        break;
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        }
        bool exited = now_ms() < end;
        if (!exited) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
        }
        close(in[1]);
        char text[16384] = "";
        FILE *f = fopen(cpath("gnutls-cli.out"), "re");
        assert_non_null(f);
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        text[n] = '\0';
        fclose(f);
        if (!exited)
                fail_msg("gnutls-cli still connected after 15 s: the server did not close:\n%s",
                         text);
        if (!strstr(text, "- Application protocol: " PAF_ACME_TLSALPN_PROTOCOL))
                fail_msg("gnutls-cli did not negotiate acme-tls/1:\n%s", text);
        if (!strstr(text, "Peer has closed the GnuTLS connection"))
                fail_msg("gnutls-cli saw no close_notify:\n%s", text);

        gnutls_datum_t pem = {};
        assert_int_equal(gnutls_load_file(cpath("served.pem"), &pem), 0);
        gnutls_x509_crt_t crt;
        assert_int_equal(gnutls_x509_crt_init(&crt), 0);
        assert_int_equal(gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM), 0);
        gnutls_free(pem.data);
        assert_challenge_cert(crt, "example.test", NULL, KA1);
        gnutls_x509_crt_deinit(crt);
        assert_int_equal(v->n_accepted, 0);
        paf_acme_tlsalpn_unref(t);
}

/* IP identifiers by their reverse names (RFC 8738 §6), over TLS 1.3 and
 * 1.2; names compared without case; acme-tls/1 offered with http/1.1 is
 * a validation too. */
static void test_identifiers(void **state) {
        env *v = *state;
        paf_acme_tlsalpn *t = table_new();
        assert_int_equal(paf_acme_tlsalpn_add(t, "127.0.0.1", KA1), 0);
        assert_int_equal(paf_acme_tlsalpn_add(t, "::1", KA2), 0);
        assert_int_equal(paf_acme_tlsalpn_add(t, "Www.Example.Test", KA3), 0);
        listen_tls(v, server_ctx(true, t));
        paf_acme_tlsalpn_unref(t);

        client c;
        validate(v, "1.0.0.127.in-addr.arpa", NULL, NULL, &c);
        assert_answered(&c, NULL, "127.0.0.1", KA1);
        validate(v, "1.0.0.127.in-addr.arpa", NULL, "NORMAL:-VERS-ALL:+VERS-TLS1.2", &c);
        assert_answered(&c, NULL, "127.0.0.1", KA1);
        validate(v, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
                 NULL, NULL, &c);
        assert_answered(&c, NULL, "::1", KA2);
        validate(v, "WWW.example.TEST", NULL, NULL, &c);
        assert_answered(&c, "www.example.test", NULL, KA3);
        validate(v, "www.example.test", "http/1.1," PAF_ACME_TLSALPN_PROTOCOL, NULL, &c);
        assert_answered(&c, "www.example.test", NULL, KA3);
        /* None of them reached the listener's user. */
        assert_int_equal(v->n_accepted, 0);
        assert_int_equal(paf_listener_get_pending(v->listener), 0);
}

/* Capture what paf logs (stderr) while fn runs at level. fn asserts
 * nothing: cmocka's word on a failure would go to the capture. */
static void with_log(int level, char *buf, size_t size, void (*fn)(env *), env *v) {
        fflush(stderr);
        int saved = dup(2);
        assert_true(saved >= 0);
        int fd = open(cpath("log"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_true(dup2(fd, 2) >= 0);
        int old = paf_log_get_level();
        paf_log_set_level(level);
        fn(v);
        paf_log_set_level(old);
        fflush(stderr);
        assert_true(dup2(saved, 2) >= 0);
        close(saved);
        ssize_t n = pread(fd, buf, size - 1, 0);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
}

static client unknown_client;

static void unknown_name(env *v) {
        validate(v, "unknown.test", NULL, NULL, &unknown_client);
}

/* Unknown names and no SNI: a fatal alert (never the normal certificate),
 * a line at debug naming the name; the listener goes on serving. */
static void test_refused(void **state) {
        env *v = *state;
        paf_acme_tlsalpn *t = table_new();
        assert_int_equal(paf_acme_tlsalpn_add(t, "example.test", KA1), 0);
        listen_tls(v, server_ctx(true, t));

        char log[8192];
        with_log(PAF_LOG_DEBUG, log, sizeof(log), unknown_name, v);
        assert_alert(&unknown_client, GNUTLS_A_UNRECOGNIZED_NAME);
        if (!strstr(log, "acme-tls/1 for \"unknown.test\": no tls-alpn-01 challenge"))
                fail_msg("no debug line naming the name:\n%s", log);
        with_log(PAF_LOG_INFO, log, sizeof(log), unknown_name, v);
        assert_alert(&unknown_client, GNUTLS_A_UNRECOGNIZED_NAME);
        if (strstr(log, "unknown.test"))
                fail_msg("a refusal logged above debug:\n%s", log);

        client c;
        validate(v, NULL, NULL, NULL, &c);
        assert_alert(&c, GNUTLS_A_UNRECOGNIZED_NAME);
        /* The name of the normal certificate is no challenge either. */
        validate(v, "localhost", NULL, NULL, &c);
        assert_alert(&c, GNUTLS_A_UNRECOGNIZED_NAME);
        validate(v, "example.test", NULL, "NORMAL:-VERS-ALL:+VERS-TLS1.2", &c);
        assert_answered(&c, "example.test", NULL, KA1);
        assert_int_equal(v->n_accepted, 0);
        assert_http(v, "http/1.1", "http/1.1");
        assert_int_equal(v->n_accepted, 1);
        assert_int_equal(paf_listener_get_pending(v->listener), 0);
        paf_acme_tlsalpn_unref(t);
}

/* Normal clients on the same listener, even for a name with a challenge:
 * the normal certificate, the same ALPN as without the table, the
 * application's answer. Validations in between never reach it. */
static void test_normal_clients(void **state) {
        env *v = *state;
        paf_acme_tlsalpn *t = table_new();
        assert_int_equal(paf_acme_tlsalpn_add(t, "localhost", KA1), 0);
        listen_tls(v, server_ctx(true, t));

        assert_http(v, "http/1.1", "http/1.1");
        assert_http(v, NULL, "");
        assert_http(v, "h2,http/1.1", "http/1.1");
        client c;
        validate(v, "localhost", NULL, NULL, &c);
        assert_answered(&c, "localhost", NULL, KA1);
        assert_http(v, "http/1.1", "http/1.1");
        assert_int_equal(v->n_accepted, 4);
        assert_int_equal(v->n_requests, 4);
        assert_int_equal(paf_listener_get_pending(v->listener), 0);
        paf_acme_tlsalpn_unref(t);
}

/* `paf cert issue --challenge tls-alpn-01 --listen`: no certificate yet.
 * Validations work, anything else is refused; without the table, no
 * certificate is still an error. */
static void test_no_certificate(void **state) {
        env *v = *state;
        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;
        assert_true(try_listen(v, server_ctx(false, NULL), &l, &err) < 0);
        assert_null(l);
        assert_non_null(strstr(err.message, "tls.cert-file and tls.key-file are required"));

        paf_acme_tlsalpn *t = table_new();
        assert_int_equal(paf_acme_tlsalpn_add(t, "example.test", KA1), 0);
        listen_tls(v, server_ctx(false, t));
        paf_acme_tlsalpn_unref(t);

        client c;
        validate(v, "example.test", NULL, NULL, &c);
        assert_answered(&c, "example.test", NULL, KA1);
        validate(v, "example.test", NULL, "NORMAL:-VERS-ALL:+VERS-TLS1.2", &c);
        assert_answered(&c, "example.test", NULL, KA1);
        const char *alpns[] = {"http/1.1", NULL};
        for (size_t i = 0; i < 2; i++) {
                c = (client){.sni = "example.test", .alpn = alpns[i], .http = true};
                client_run(v, &c);
                assert_alert(&c, GNUTLS_A_HANDSHAKE_FAILURE);
        }
        c = (client){.sni = "example.test",
                     .alpn = "http/1.1",
                     .http = true,
                     .priority = "NORMAL:-VERS-ALL:+VERS-TLS1.2"};
        client_run(v, &c);
        assert_alert(&c, GNUTLS_A_HANDSHAKE_FAILURE);
        validate(v, "example.test", NULL, NULL, &c);
        assert_answered(&c, "example.test", NULL, KA1);
        assert_int_equal(v->n_accepted, 0);
        assert_int_equal(paf_listener_get_pending(v->listener), 0);
}

/* Challenges added, replaced and removed after the listener started. */
static void test_table_changes(void **state) {
        env *v = *state;
        paf_acme_tlsalpn *t = table_new();
        listen_tls(v, server_ctx(true, t));
        client c;
        validate(v, "a.test", NULL, NULL, &c);
        assert_alert(&c, GNUTLS_A_UNRECOGNIZED_NAME);

        assert_int_equal(paf_acme_tlsalpn_add(t, "a.test", KA1), 0);
        validate(v, "a.test", NULL, NULL, &c);
        assert_answered(&c, "a.test", NULL, KA1);
        assert_int_equal(paf_acme_tlsalpn_add(t, "a.test", KA2), 0);
        validate(v, "a.test", NULL, NULL, &c);
        assert_answered(&c, "a.test", NULL, KA2);
        assert_int_equal(paf_acme_tlsalpn_remove(t, "a.test"), 0);
        validate(v, "a.test", NULL, NULL, &c);
        assert_alert(&c, GNUTLS_A_UNRECOGNIZED_NAME);
        assert_int_equal(v->n_accepted, 0);
        paf_acme_tlsalpn_unref(t);
}

/* The key is read again on reload; the listener holds the table it was
 * given (nobody else does here); a key of another type is refused. */
static void test_reload_and_config(void **state) {
        env *v = *state;
        paf_acme_tlsalpn *t = table_new();
        assert_int_equal(paf_acme_tlsalpn_add(t, "example.test", KA1), 0);
        paf_ctx *with = server_ctx(true, t);
        paf_acme_tlsalpn_unref(t); /* the context's and the listener's references remain */
        listen_tls(v, paf_ctx_ref(with));

        paf_error err = PAF_ERROR_NULL;
        paf_ctx *without = server_ctx(true, NULL);
        assert_int_equal(paf_listener_reload(v->listener, without, &err), 0);
        paf_ctx_unref(without);
        /* As a listener without it: acme-tls/1 is no protocol of ours, and
         * the client gets the normal certificate and the application. */
        client c = {.sni = "example.test", .alpn = PAF_ACME_TLSALPN_PROTOCOL, .http = true};
        client_run(v, &c);
        assert_int_equal(c.handshake, 0);
        assert_string_equal(c.alpn_selected, "");
        assert_normal_cert(&c);
        assert_true(strncmp(c.answer, "HTTP/1.1 200", 12) == 0);
        assert_int_equal(v->n_accepted, 1);

        assert_int_equal(paf_listener_reload(v->listener, with, &err), 0);
        paf_ctx_unref(with); /* now only the listener holds the table */
        validate(v, "example.test", NULL, NULL, &c);
        assert_answered(&c, "example.test", NULL, KA1);

        paf_ctx *ctx = server_ctx(true, NULL);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.acme-tlsalpn", "example.test"), 0);
        paf_listener *l = NULL;
        assert_true(try_listen(v, ctx, &l, &err) < 0);
        assert_null(l);
        if (!strstr(err.message, "tls.acme-tlsalpn: a string, expected a pointer"))
                fail_msg("unexpected error: %s", err.message);
        ctx = server_ctx(false, NULL);
        assert_int_equal(paf_ctx_set_pointer(ctx, "tls.acme-tlsalpn", NULL, NULL), 0);
        assert_true(try_listen(v, ctx, &l, &err) < 0);
        assert_non_null(strstr(err.message, "tls.acme-tlsalpn: NULL"));

        /* acme-tls/1 takes one of the 8 ALPN places. */
        t = table_new();
        ctx = server_ctx(true, t);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.alpn", "a,b,c,d,e,f,g,h"), 0);
        assert_true(try_listen(v, ctx, &l, &err) < 0);
        if (!strstr(err.message, "more than 7 protocols besides acme-tls/1"))
                fail_msg("unexpected error: %s", err.message);
        /* Without a default certificate, no other either. */
        ctx = server_ctx(false, t);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.cert-file.2", cpath("server.pem")), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.key-file.2", cpath("server.key")), 0);
        assert_true(try_listen(v, ctx, &l, &err) < 0);
        if (!strstr(err.message, "tls.cert-file.2 without tls.cert-file and tls.key-file"))
                fail_msg("unexpected error: %s", err.message);
        paf_acme_tlsalpn_unref(t);
}

/* A TLS 1.3 validator whose key share the server does not take: the
 * challenge is answered after the HelloRetryRequest, on the second
 * ClientHello. */
static void test_hello_retry(void **state) {
        env *v = *state;
        paf_acme_tlsalpn *t = table_new();
        assert_int_equal(paf_acme_tlsalpn_add(t, "example.test", KA1), 0);
        paf_ctx *ctx = server_ctx(false, t);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.priority",
                                            "NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:"
                                            "+GROUP-SECP384R1"),
                         0);
        listen_tls(v, ctx);
        paf_acme_tlsalpn_unref(t);
        client c;
        /* GnuTLS's client sends key shares for its first two groups only. */
        validate(v, "example.test", NULL,
                 "NORMAL:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1", &c);
        assert_int_equal(c.n_hellos, 2);
        assert_answered(&c, "example.test", NULL, KA1);
        assert_int_equal(v->n_accepted, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_gnutls_cli, setup, teardown),
                cmocka_unit_test_setup_teardown(test_identifiers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_normal_clients, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_certificate, setup, teardown),
                cmocka_unit_test_setup_teardown(test_table_changes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reload_and_config, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hello_retry, setup, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
