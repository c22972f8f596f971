/* tests/plugins/test-tls.c — tls.so over tcp.so and unix.so: handshakes, verification, SNI, mTLS,
 * hostile peers, reload; against a GnuTLS peer of its own, records behind session tickets and
 * KeyUpdates however they are cut, and refused renegotiations. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>

#include <paf.h>

#include "../common/paf-test.h"

/* ---- certificates, made once for the suite ---- */

static char certdir[256];

/* A file in certdir; a few results may be alive at once. */
static const char *cpath(const char *name) {
        static char bufs[8][sizeof(certdir) + 64];
        static unsigned next;
        char *b = bufs[next++ % 8];
        assert_true(strlen(name) < 63);
        snprintf(b, sizeof(bufs[0]), "%s/%.62s", certdir, name);
        return b;
}

static const char cert_script[] =
        "set -e\n"
        "cd \"$1\"\n"
        "key() { certtool --generate-privkey --key-type=ecdsa --outfile \"$1.key\"; }\n"
        "ca() { key $1; printf 'cn = \"%s\"\\nca\\ncert_signing_key\\nexpiration_days = 3650\\n' "
        "\"$2\" > $1.tmpl;\n"
        "       certtool --generate-self-signed --load-privkey $1.key --template $1.tmpl "
        "--outfile $1.pem; }\n"
        "sign() { key $1; printf \"$3\" > $1.tmpl;\n"
        "       certtool --generate-certificate --load-privkey $1.key --load-ca-certificate "
        "$2.pem --load-ca-privkey $2.key --template $1.tmpl --outfile $1.pem; }\n"
        "srv='tls_www_server\\nsigning_key\\nencryption_key\\n'\n"
        "ca ca 'paf test CA'\n"
        "ca ca2 'paf unrelated CA'\n"
        "sign server ca \"cn = localhost\\ndns_name = localhost\\nip_address = 127.0.0.1\\n"
        "expiration_days = 365\\n$srv\"\n"
        "sign other ca \"cn = other.test\\ndns_name = other.test\\nexpiration_days = 365\\n$srv\"\n"
        "sign new ca \"organization = reloaded\\ncn = localhost\\ndns_name = localhost\\n"
        "expiration_days = 365\\n$srv\"\n"
        "sign expired ca \"cn = localhost\\ndns_name = localhost\\n"
        "activation_date = \\\"2020-01-01 00:00:00\\\"\\n"
        "expiration_date = \\\"2021-01-01 00:00:00\\\"\\n$srv\"\n"
        "sign client ca \"cn = paf test client\\nexpiration_days = 365\\ntls_www_client\\n"
        "signing_key\\n\"\n"
        "sign stranger ca2 \"cn = stranger\\nexpiration_days = 365\\ntls_www_client\\n"
        "signing_key\\n\"\n"
        "echo 'not a certificate' > garbage.pem\n";

/*
 * Loading tls.so makes ld.so search its runpath for libgnutls, and ld.so's
 * SSE2 strncmp reads a few bytes past that string: valgrind 3.19 with glibc
 * 2.36 reports it as an invalid read (a false positive, not ours). With
 * libgnutls already there, nothing is searched.
 */
static void *gnutls_handle;

static int group_setup(void **state) {
        (void)state;
        gnutls_handle = dlopen("libgnutls.so.30", RTLD_NOW);
        if (getenv("PAF_TEST_VERBOSE"))
                paf_log_set_level(PAF_LOG_DEBUG);
        snprintf(certdir, sizeof(certdir), "/tmp/paf-test-tls-XXXXXX");
        if (!mkdtemp(certdir))
                return -1;
        char cmd[3 * PATH_MAX];
        /* The script goes through a file: quoting it inline is a maze. */
        FILE *f = fopen(cpath("make-certs.sh"), "we");
        if (!f)
                return -1;
        fputs(cert_script, f);
        fclose(f);
        snprintf(cmd, sizeof(cmd), "sh '%s' '%s' >'%s' 2>&1", cpath("make-certs.sh"), certdir,
                 cpath("certtool.log"));
        if (system(cmd) != 0) {
                fprintf(stderr, "certificate generation failed:\n");
                snprintf(cmd, sizeof(cmd), "cat '%s' >&2", cpath("certtool.log"));
                (void)!system(cmd);
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

/* ---- environment ---- */

typedef struct env {
        sd_event *event;
        paf_registry *reg;
        int fds_before;
        paf_listener *listener, *plain;
        paf_flow *accepted[32];
        size_t n_accepted;
        unsigned plain_accepted;
        bool plain_close; /* the plain listener closes what it accepts */
        paf_flow *plain_flows[8];
} env;

static void on_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        env *v = userdata;
        assert_true(v->n_accepted < 32);
        v->accepted[v->n_accepted++] = flow;
}

static void on_plain_accept(paf_listener *l, paf_flow *flow, void *userdata) {
        (void)l;
        env *v = userdata;
        if (v->plain_close || v->plain_accepted >= 8)
                paf_flow_close(flow, NULL, NULL);
        else
                v->plain_flows[v->plain_accepted] = flow;
        v->plain_accepted++;
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
        load(v, "unix");
        load(v, "tls");
        assert_non_null(paf_registry_find_protocol(v->reg, "tls"));
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        for (size_t i = 0; i < v->n_accepted; i++)
                if (v->accepted[i])
                        close_and_wait(v->event, v->accepted[i]);
        for (size_t i = 0; i < 8 && i < v->plain_accepted; i++)
                if (v->plain_flows[i])
                        close_and_wait(v->event, v->plain_flows[i]);
        paf_listener_free(v->listener);
        paf_listener_free(v->plain);
        run_for(v->event, 30);
        paf_registry_unref(v->reg);
        sd_event_unref(v->event);
        assert_int_equal(count_fds(), v->fds_before);
        free(v);
        return 0;
}

static paf_ctx *ctx_new(void) {
        paf_ctx *ctx;
        assert_int_equal(paf_ctx_new(&ctx), 0);
        return ctx;
}

/* Server configuration: a certificate and its key. */
static paf_ctx *server_ctx(const char *name) {
        paf_ctx *ctx = ctx_new();
        char file[64];
        snprintf(file, sizeof(file), "%s.pem", name);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.cert-file", cpath(file)), 0);
        snprintf(file, sizeof(file), "%s.key", name);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.key-file", cpath(file)), 0);
        return ctx;
}

static paf_listener *listen_plain(env *v, const char *address) {
        paf_error err = PAF_ERROR_NULL;
        paf_listener *l;
        int r = paf_registry_listen_address(v->reg, address, v->event, NULL, NULL, &l, &err);
        if (r < 0)
                fail_msg("listen on %s: %s", address, err.message);
        return l;
}

/* A TLS listener over address, configured by ctx (taken). */
static void listen_tls(env *v, const char *address, paf_ctx *ctx) {
        paf_listener *inner = listen_plain(v, address);
        paf_error err = PAF_ERROR_NULL;
        int r = paf_registry_wrap_listener(v->reg, "tls", inner, ctx, &v->listener, &err);
        paf_ctx_unref(ctx);
        if (r < 0)
                fail_msg("wrap %s: %s", address, err.message);
        assert_string_equal(paf_listener_get_protocol(v->listener), "tls");
        assert_true(paf_listener_get_fd(v->listener) >= 0);
        assert_int_equal(paf_listener_set_accept_handler(v->listener, on_accept, v), 0);
}

static int listener_port(paf_listener *l) {
        const char *colon = strrchr(paf_listener_get_address(l), ':');
        assert_non_null(colon);
        return atoi(colon + 1);
}

/* A client context for the tcp listener: name verified against ca. */
static paf_ctx *client_ctx(env *v, const char *name, const char *ca) {
        paf_ctx *ctx = ctx_new();
        assert_int_equal(paf_ctx_set_string(ctx, "tcp.host", "127.0.0.1"), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "tcp.port", listener_port(v->listener)), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.server-name", name), 0);
        if (ca)
                assert_int_equal(paf_ctx_set_string(ctx, "tls.ca-file", cpath(ca)), 0);
        return ctx;
}

typedef struct connect_result {
        bool done;
        paf_flow *flow;
        char *report;
        int error;    /* of the tls attempt */
        char *reason; /* of the tls attempt */
} connect_result;

static void on_connect(paf_flow *flow, const paf_attempt *attempts, size_t n, void *userdata) {
        connect_result *c = userdata;
        assert_false(c->done);
        c->done = true;
        c->flow = flow;
        c->report = paf_attempts_format(attempts, n);
        for (size_t i = 0; i < n; i++)
                if (strcmp(attempts[i].protocol, "tls") == 0) {
                        c->error = attempts[i].error;
                        c->reason = attempts[i].reason ? strdup(attempts[i].reason) : NULL;
                }
}

static void connect_result_done(connect_result *c) {
        free(c->report);
        free(c->reason);
        *c = (connect_result){};
}

/* Connect with ctx (taken) and wait for the outcome. */
static void connect_ctx(env *v, paf_ctx *ctx, connect_result *c) {
        *c = (connect_result){};
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, c, NULL), 0);
        paf_ctx_unref(ctx);
        assert_false(c->done);
        assert_true(run_until(v->event, &c->done, 15000));
}

static void connect_ok(env *v, paf_ctx *ctx, connect_result *c) {
        connect_ctx(v, ctx, c);
        if (!c->flow)
                fail_msg("connect failed:\n%s", c->report);
        assert_string_equal(paf_flow_get_protocol(c->flow), "tls");
}

static void connect_fails(env *v, paf_ctx *ctx, connect_result *c, const char *reason) {
        connect_ctx(v, ctx, c);
        if (getenv("PAF_TEST_VERBOSE"))
                printf("# %s", c->report);
        if (c->flow)
                fail_msg("connect succeeded, expected \"%s\"", reason);
        assert_true(c->error < 0);
        if (!c->reason || !strstr(c->reason, reason))
                fail_msg("expected \"%s\" in the reason, got:\n%s", reason, c->report);
}

static void wait_accepted(env *v, size_t n) {
        uint64_t end = now_ms() + 5000;
        while (v->n_accepted < n && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_int_equal(v->n_accepted, n);
}

/* A text query; returns what paf_flow_query() returned. */
static int query(paf_flow *flow, int what, char *buf, size_t size) {
        buf[0] = '\0';
        return paf_flow_query(flow, what, buf, size);
}

static void assert_query(paf_flow *flow, int what, const char *expected) {
        char buf[512];
        int r = query(flow, what, buf, sizeof(buf));
        if (r < 0)
                fail_msg("query %d: %s", what, strerror(-r));
        assert_int_equal(r, strlen(buf));
        assert_string_equal(buf, expected);
}

static void assert_peer_dn_has(paf_flow *flow, const char *part) {
        char dn[512];
        int r = query(flow, PAF_FLOW_QUERY_TLS_PEER_DN, dn, sizeof(dn));
        if (r < 0)
                fail_msg("peer DN: %s", strerror(-r));
        if (!strstr(dn, part))
                fail_msg("peer DN \"%s\" lacks \"%s\"", dn, part);
}

/* Both directions, then both ends shut down: each sees EOF (close_notify). */
static void exchange(env *v, paf_flow *client, paf_flow *server, bool finish) {
        reader rs = {0}, rc = {0};
        assert_int_equal(paf_flow_read_start(server, on_read, &rs), 0);
        assert_int_equal(paf_flow_read_start(client, on_read, &rc), 0);
        write_and_wait(v->event, client, "hello");
        read_exactly(v->event, &rs, 5);
        assert_memory_equal(rs.data, "hello", 5);
        write_and_wait(v->event, server, "world!");
        read_exactly(v->event, &rc, 6);
        assert_memory_equal(rc.data, "world!", 6);
        if (finish) {
                assert_int_equal(paf_flow_shutdown(client, NULL, NULL), 0);
                assert_true(run_until(v->event, &rs.ended, 5000));
                assert_true(rs.eof);
                assert_int_equal(paf_flow_shutdown(server, NULL, NULL), 0);
                assert_true(run_until(v->event, &rc.ended, 5000));
                assert_true(rc.eof);
        }
        assert_int_equal(paf_flow_read_stop(server), 0);
        assert_int_equal(paf_flow_read_stop(client), 0);
        free(rs.data);
        free(rc.data);
}

/* Forget accepted flow i (closed by the caller). */
static void close_accepted(env *v, size_t i) {
        close_and_wait(v->event, v->accepted[i]);
        v->accepted[i] = NULL;
}

/* ---- tests ---- */

static void test_tcp_round_trip(void **state) {
        env *v = *state;
        listen_tls(v, "127.0.0.1:0", server_ctx("server"));
        connect_result c;
        connect_ok(v, client_ctx(v, "localhost", "ca.pem"), &c);
        wait_accepted(v, 1);
        paf_flow *server = v->accepted[0];

        assert_string_equal(paf_flow_get_protocol(server), "tls");
        assert_string_equal(paf_flow_get_peer(c.flow), paf_flow_get_local(server));
        assert_string_equal(paf_flow_get_local(c.flow), paf_flow_get_peer(server));
        assert_query(c.flow, PAF_FLOW_QUERY_TLS_ALPN, "http/1.1");
        assert_query(server, PAF_FLOW_QUERY_TLS_ALPN, "http/1.1");
        assert_query(c.flow, PAF_FLOW_QUERY_TLS_VERSION, "TLS1.3");
        assert_query(server, PAF_FLOW_QUERY_TLS_VERSION, "TLS1.3");
        assert_query(c.flow, PAF_FLOW_QUERY_TLS_SERVER_NAME, "localhost");
        assert_query(server, PAF_FLOW_QUERY_TLS_SERVER_NAME, "localhost");
        assert_peer_dn_has(c.flow, "CN=localhost");
        char buf[256];
        /* No client certificate: nothing verified to tell. */
        assert_int_equal(query(server, PAF_FLOW_QUERY_TLS_PEER_DN, buf, sizeof(buf)), -ENODATA);
        assert_int_equal(query(server, PAF_FLOW_QUERY_TLS_ALPN, buf, 4), -ENOBUFS);
        /* What TLS does not know, the transport answers. */
        int fd = -1;
        assert_int_equal(paf_flow_query(server, PAF_FLOW_QUERY_FD, &fd, sizeof(fd)), 0);
        assert_true(fd >= 0);
        assert_int_equal(paf_flow_query(c.flow, PAF_FLOW_QUERY_FD, &fd, sizeof(fd)), 0);
        assert_true(fd >= 0);

        exchange(v, c.flow, server, true);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
}

static void test_tls12_and_alpn(void **state) {
        env *v = *state;
        paf_ctx *sctx = server_ctx("server");
        assert_int_equal(paf_ctx_set_string(sctx, "tls.alpn", "h2, http/1.1"), 0);
        listen_tls(v, "127.0.0.1:0", sctx);

        paf_ctx *ctx = client_ctx(v, "localhost", "ca.pem");
        assert_int_equal(paf_ctx_set_string(ctx, "tls.priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2"),
                         0);
        connect_result c;
        connect_ok(v, ctx, &c);
        wait_accepted(v, 1);
        assert_query(c.flow, PAF_FLOW_QUERY_TLS_VERSION, "TLS1.2");
        assert_query(v->accepted[0], PAF_FLOW_QUERY_TLS_VERSION, "TLS1.2");
        assert_query(c.flow, PAF_FLOW_QUERY_TLS_ALPN, "http/1.1");
        exchange(v, c.flow, v->accepted[0], true);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);

        /* The client's preference among what the server offers. */
        ctx = client_ctx(v, "localhost", "ca.pem");
        assert_int_equal(paf_ctx_set_string(ctx, "tls.alpn", "h2"), 0);
        connect_ok(v, ctx, &c);
        wait_accepted(v, 2);
        assert_query(c.flow, PAF_FLOW_QUERY_TLS_ALPN, "h2");
        assert_query(v->accepted[1], PAF_FLOW_QUERY_TLS_ALPN, "h2");
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);

        /* No ALPN at all: "". */
        ctx = client_ctx(v, "localhost", "ca.pem");
        assert_int_equal(paf_ctx_set_string(ctx, "tls.alpn", ""), 0);
        connect_ok(v, ctx, &c);
        wait_accepted(v, 3);
        assert_query(c.flow, PAF_FLOW_QUERY_TLS_ALPN, "");
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
}

static void test_unix_round_trip(void **state) {
        env *v = *state;
        const char *path = cpath("tls.sock");
        unlink(path);
        listen_tls(v, path, server_ctx("server"));
        assert_string_equal(paf_listener_get_address(v->listener), path);

        paf_ctx *ctx = ctx_new();
        assert_int_equal(paf_ctx_set_string(ctx, "unix.path", path), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.server-name", "localhost"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.ca-file", cpath("ca.pem")), 0);
        connect_result c;
        connect_ok(v, ctx, &c);
        wait_accepted(v, 1);
        assert_query(c.flow, PAF_FLOW_QUERY_TLS_VERSION, "TLS1.3");
        assert_peer_dn_has(c.flow, "CN=localhost");
        /* Forwarded to the unix socket underneath. */
        struct ucred cred;
        assert_int_equal(paf_flow_get_peer_credentials(v->accepted[0], &cred), 0);
        assert_int_equal(cred.pid, getpid());
        exchange(v, c.flow, v->accepted[0], true);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
        paf_listener_free(v->listener);
        v->listener = NULL;
        unlink(path);
}

static void test_big_transfer(void **state) {
        env *v = *state;
        listen_tls(v, "127.0.0.1:0", server_ctx("server"));
        connect_result c;
        connect_ok(v, client_ctx(v, "localhost", "ca.pem"), &c);
        wait_accepted(v, 1);
        big_transfer(v->event, c.flow, v->accepted[0]);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);

        /* Under valgrind one direction shows it; both would take minutes. */
        if (getenv("PAF_TEST_VALGRIND"))
                return;
        connect_ok(v, client_ctx(v, "localhost", "ca.pem"), &c);
        wait_accepted(v, 2);
        big_transfer(v->event, v->accepted[1], c.flow);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
}

static void test_verification_failures(void **state) {
        env *v = *state;
        listen_tls(v, "127.0.0.1:0", server_ctx("server"));
        connect_result c;

        connect_fails(v, client_ctx(v, "localhost", "ca2.pem"), &c,
                      "The certificate is NOT trusted. The certificate issuer is unknown.");
        assert_int_equal(c.error, -EKEYREJECTED);
        /* The report says which candidate failed and what it ran over. */
        assert_non_null(strstr(c.report, "tls localhost: failed: handshake with 127.0.0.1:"));
        assert_non_null(strstr(c.report, "(tcp) failed"));
        connect_result_done(&c);

        connect_fails(v, client_ctx(v, "wrong.test", "ca.pem"), &c,
                      "The name in the certificate does not match the expected.");
        connect_result_done(&c);
        connect_fails(v, client_ctx(v, "127.0.0.2", "ca.pem"), &c,
                      "The name in the certificate does not match the expected.");
        connect_result_done(&c);
        /* The server heard the client's alert and delivered nothing. */
        run_for(v->event, 50);
        assert_int_equal(v->n_accepted, 0);

        /* An IP literal is checked against the IP SANs and never sent as SNI. */
        connect_ok(v, client_ctx(v, "127.0.0.1", "ca.pem"), &c);
        wait_accepted(v, 1);
        assert_query(c.flow, PAF_FLOW_QUERY_TLS_SERVER_NAME, "");
        assert_query(v->accepted[0], PAF_FLOW_QUERY_TLS_SERVER_NAME, "");
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);

        /* tls.insecure connects anyway, but vouches for nobody. */
        paf_ctx *ctx = client_ctx(v, "wrong.test", "ca2.pem");
        assert_int_equal(paf_ctx_set_bool(ctx, "tls.insecure", true), 0);
        connect_ok(v, ctx, &c);
        char dn[256];
        assert_int_equal(query(c.flow, PAF_FLOW_QUERY_TLS_PEER_DN, dn, sizeof(dn)), -ENODATA);
        exchange(v, c.flow, (wait_accepted(v, 2), v->accepted[1]), false);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);

        /* A tls.insecure that is not a boolean is a mistake, not "yes". */
        ctx = client_ctx(v, "localhost", "ca.pem");
        assert_int_equal(paf_ctx_set_string(ctx, "tls.insecure", "yes"), 0);
        connect_fails(v, ctx, &c, "tls.insecure");
        connect_result_done(&c);

        /* A CA file that is not there is named. */
        connect_fails(v, client_ctx(v, "localhost", "missing.pem"), &c, "missing.pem");
        connect_result_done(&c);
}

static void test_expired(void **state) {
        env *v = *state;
        listen_tls(v, "127.0.0.1:0", server_ctx("expired"));
        connect_result c;
        connect_fails(v, client_ctx(v, "localhost", "ca.pem"), &c, "expired");
        assert_non_null(strstr(c.reason, "The certificate is NOT trusted."));
        connect_result_done(&c);

        paf_ctx *ctx = client_ctx(v, "localhost", "ca.pem");
        assert_int_equal(paf_ctx_set_bool(ctx, "tls.insecure", true), 0);
        connect_ok(v, ctx, &c);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
}

static void test_sni(void **state) {
        env *v = *state;
        paf_ctx *sctx = server_ctx("server");
        assert_int_equal(paf_ctx_set_string(sctx, "tls.cert-file.2", cpath("other.pem")), 0);
        assert_int_equal(paf_ctx_set_string(sctx, "tls.key-file.2", cpath("other.key")), 0);
        listen_tls(v, "127.0.0.1:0", sctx);

        connect_result c;
        connect_ok(v, client_ctx(v, "other.test", "ca.pem"), &c);
        assert_peer_dn_has(c.flow, "CN=other.test");
        wait_accepted(v, 1);
        assert_query(v->accepted[0], PAF_FLOW_QUERY_TLS_SERVER_NAME, "other.test");
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);

        connect_ok(v, client_ctx(v, "localhost", "ca.pem"), &c);
        assert_peer_dn_has(c.flow, "CN=localhost");
        wait_accepted(v, 2);
        assert_query(v->accepted[1], PAF_FLOW_QUERY_TLS_SERVER_NAME, "localhost");
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
}

/* The client's handshake may complete before the server refuses it (TLS
 * 1.3 sends the client's certificate last): then its first read fails. */
static void assert_refused(env *v, paf_ctx *ctx) {
        connect_result c;
        connect_ctx(v, ctx, &c);
        if (c.flow) {
                reader r = {0};
                assert_int_equal(paf_flow_read_start(c.flow, on_read, &r), 0);
                assert_true(run_until(v->event, &r.ended, 5000));
                assert_true(r.error < 0);
                assert_int_equal(r.len, 0);
                close_and_wait(v->event, c.flow);
        }
        connect_result_done(&c);
        run_for(v->event, 50);
        assert_int_equal(v->n_accepted, 0);
}

static void test_mutual_tls(void **state) {
        env *v = *state;
        paf_ctx *sctx = server_ctx("server");
        assert_int_equal(paf_ctx_set_string(sctx, "tls.client-ca-file", cpath("ca.pem")), 0);
        assert_int_equal(paf_ctx_set_bool(sctx, "tls.require-client-cert", true), 0);
        listen_tls(v, "127.0.0.1:0", sctx);

        /* No certificate; then one from a CA the server does not trust. */
        assert_refused(v, client_ctx(v, "localhost", "ca.pem"));
        paf_ctx *ctx = client_ctx(v, "localhost", "ca.pem");
        assert_int_equal(paf_ctx_set_string(ctx, "tls.cert-file", cpath("stranger.pem")), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.key-file", cpath("stranger.key")), 0);
        assert_refused(v, ctx);

        /* Under TLS 1.2 the client's own handshake fails, with the alert. */
        ctx = client_ctx(v, "localhost", "ca.pem");
        assert_int_equal(paf_ctx_set_string(ctx, "tls.priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2"),
                         0);
        connect_result c;
        connect_fails(v, ctx, &c, "the peer sent the alert \"Handshake failed\"");
        connect_result_done(&c);

        ctx = client_ctx(v, "localhost", "ca.pem");
        assert_int_equal(paf_ctx_set_string(ctx, "tls.cert-file", cpath("client.pem")), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.key-file", cpath("client.key")), 0);
        connect_ok(v, ctx, &c);
        wait_accepted(v, 1);
        assert_peer_dn_has(v->accepted[0], "CN=paf test client");
        assert_peer_dn_has(c.flow, "CN=localhost");
        exchange(v, c.flow, v->accepted[0], true);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
}

/* A blocking loopback socket to the listener, outside paf. */
static int raw_connect(int port) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in in = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(connect(fd, (struct sockaddr *)&in, sizeof(in)), 0);
        return fd;
}

/* Whether the server closed fd (what it sent before, an alert, is skipped). */
static bool raw_closed(int fd) {
        for (;;) {
                char buf[512];
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n > 0)
                        continue;
                return n == 0 || errno != EAGAIN;
        }
}

static void test_hostile_peers(void **state) {
        env *v = *state;
        paf_ctx *sctx = server_ctx("server");
        assert_int_equal(paf_ctx_set_int(sctx, "tls.handshake-timeout", 1), 0);
        listen_tls(v, "127.0.0.1:0", sctx);
        int port = listener_port(v->listener);
        int baseline = count_fds();

        int garbage = raw_connect(port);
        const char junk[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        assert_int_equal(send(garbage, junk, sizeof(junk) - 1, 0), sizeof(junk) - 1);
        /* A ClientHello announcing 512 bytes and sending 12. */
        int truncated = raw_connect(port);
        const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01,
                                 0x00, 0x01, 0xfc, 0x03, 0x03, 0x42};
        assert_int_equal(send(truncated, hello, sizeof(hello), 0), sizeof(hello));
        int silent = raw_connect(port);
        /* A record header claiming an impossible length. */
        int huge = raw_connect(port);
        const uint8_t bad[] = {0x16, 0x03, 0x03, 0xff, 0xff, 0x00};
        assert_int_equal(send(huge, bad, sizeof(bad), 0), sizeof(bad));

        /* Meanwhile, a real client gets through at once. */
        uint64_t start = now_ms();
        connect_result c;
        connect_ok(v, client_ctx(v, "localhost", "ca.pem"), &c);
        wait_accepted(v, 1);
        exchange(v, c.flow, v->accepted[0], false);
        assert_true(now_ms() - start < 1000);

        /* Garbage goes at once; the others with the timeout. */
        uint64_t end = now_ms() + 5000;
        while (!(raw_closed(garbage) && raw_closed(huge)) && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_true(raw_closed(garbage));
        assert_true(raw_closed(huge));
        while (!(raw_closed(truncated) && raw_closed(silent)) && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_true(raw_closed(truncated));
        assert_true(raw_closed(silent));
        assert_true(now_ms() - start >= 900);
        assert_int_equal(v->n_accepted, 1);

        close(garbage);
        close(truncated);
        close(silent);
        close(huge);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
        close_accepted(v, 0);
        run_for(v->event, 20);
        /* Every server-side socket went with its connection. */
        assert_int_equal(count_fds(), baseline);
}

static void test_reload(void **state) {
        env *v = *state;
        listen_tls(v, "127.0.0.1:0", server_ctx("server"));
        connect_result c1, c2;
        connect_ok(v, client_ctx(v, "localhost", "ca.pem"), &c1);
        wait_accepted(v, 1);
        char dn[256];
        assert_true(query(c1.flow, PAF_FLOW_QUERY_TLS_PEER_DN, dn, sizeof(dn)) > 0);
        assert_null(strstr(dn, "reloaded"));

        paf_ctx *ctx = server_ctx("new");
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_listener_reload(v->listener, ctx, &err), 0);
        paf_ctx_unref(ctx);

        connect_ok(v, client_ctx(v, "localhost", "ca.pem"), &c2);
        wait_accepted(v, 2);
        assert_peer_dn_has(c2.flow, "O=reloaded");
        /* The established connection goes on with what it had. */
        exchange(v, c1.flow, v->accepted[0], true);
        exchange(v, c2.flow, v->accepted[1], false);

        /* A broken configuration is refused, naming the file; the last good
         * one stays. */
        ctx = server_ctx("new");
        assert_int_equal(paf_ctx_set_string(ctx, "tls.cert-file", cpath("garbage.pem")), 0);
        assert_true(paf_listener_reload(v->listener, ctx, &err) < 0);
        paf_ctx_unref(ctx);
        if (!strstr(err.message, cpath("garbage.pem")))
                fail_msg("error does not name the file: %s", err.message);
        ctx = server_ctx("new");
        assert_int_equal(paf_ctx_set_string(ctx, "tls.key-file", cpath("nothere.key")), 0);
        assert_true(paf_listener_reload(v->listener, ctx, &err) < 0);
        paf_ctx_unref(ctx);
        assert_non_null(strstr(err.message, "nothere.key: No such file or directory"));

        connect_result c3;
        connect_ok(v, client_ctx(v, "localhost", "ca.pem"), &c3);
        assert_peer_dn_has(c3.flow, "O=reloaded");
        wait_accepted(v, 3);

        close_and_wait(v->event, c1.flow);
        close_and_wait(v->event, c2.flow);
        close_and_wait(v->event, c3.flow);
        connect_result_done(&c1);
        connect_result_done(&c2);
        connect_result_done(&c3);
}

static void test_bad_server_config(void **state) {
        env *v = *state;
        struct {
                const char *key, *value, *expect;
        } cases[] = {
                {"tls.cert-file", "garbage.pem", "garbage.pem: "},
                {"tls.cert-file", "nothere.pem", "nothere.pem: No such file or directory"},
                {"tls.key-file", "garbage.pem", "garbage.pem: "},
                {"tls.key-file", "other.key", "with"}, /* not the certificate's key */
                {"tls.client-ca-file", "garbage.pem", "garbage.pem: "},
                {"tls.require-client-cert", NULL, "needs tls.client-ca-file"},
                {"tls.priority", "NORMAL:+NONSENSE", "invalid at"},
                {"tls.cert-file.3", "other.pem", "tls.cert-file.3 without tls.key-file.3"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                paf_ctx *ctx = server_ctx("server");
                if (!cases[i].value)
                        assert_int_equal(paf_ctx_set_bool(ctx, cases[i].key, true), 0);
                else if (strcmp(cases[i].key, "tls.priority") == 0)
                        assert_int_equal(paf_ctx_set_string(ctx, cases[i].key, cases[i].value), 0);
                else
                        assert_int_equal(
                                paf_ctx_set_string(ctx, cases[i].key, cpath(cases[i].value)), 0);
                paf_listener *inner = listen_plain(v, "127.0.0.1:0");
                paf_listener *l = NULL;
                paf_error err = PAF_ERROR_NULL;
                int r = paf_registry_wrap_listener(v->reg, "tls", inner, ctx, &l, &err);
                paf_ctx_unref(ctx);
                assert_true(r < 0);
                assert_null(l);
                if (!strstr(err.message, cases[i].expect))
                        fail_msg("case %zu: expected \"%s\" in \"%s\"", i, cases[i].expect,
                                 err.message);
        }
        /* Without any certificate. */
        paf_listener *l = NULL;
        paf_error err = PAF_ERROR_NULL;
        paf_ctx *ctx = ctx_new();
        assert_true(paf_registry_wrap_listener(v->reg, "tls", listen_plain(v, "127.0.0.1:0"), ctx,
                                               &l, &err) < 0);
        paf_ctx_unref(ctx);
        assert_non_null(strstr(err.message, "tls.cert-file and tls.key-file are required"));
}

static void test_no_plaintext_fallback(void **state) {
        env *v = *state;
        /* A plain TCP server that hangs up on whatever comes. */
        v->plain = listen_plain(v, "127.0.0.1:0");
        v->plain_close = true;
        assert_int_equal(paf_listener_set_accept_handler(v->plain, on_plain_accept, v), 0);
        paf_ctx *ctx = ctx_new();
        assert_int_equal(paf_ctx_set_string(ctx, "tcp.host", "127.0.0.1"), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "tcp.port", listener_port(v->plain)), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.server-name", "localhost"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.ca-file", cpath("ca.pem")), 0);
        connect_result c;
        connect_fails(v, ctx, &c, "the peer closed the connection during the handshake");
        if (!strstr(c.report, "tcp: not a candidate: reached through tls, not on its own"))
                fail_msg("tcp was not kept under tls:\n%s", c.report);
        /* Once, through TLS: never again in plain text. */
        assert_int_equal(v->plain_accepted, 1);
        connect_result_done(&c);
}

static void test_client_timeout_and_cancel(void **state) {
        env *v = *state;
        /* A TCP server that accepts and never says a word. */
        v->plain = listen_plain(v, "127.0.0.1:0");
        assert_int_equal(paf_listener_set_accept_handler(v->plain, on_plain_accept, v), 0);
        paf_ctx *ctx = ctx_new();
        assert_int_equal(paf_ctx_set_string(ctx, "tcp.host", "127.0.0.1"), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "tcp.port", listener_port(v->plain)), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.server-name", "localhost"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.ca-file", cpath("ca.pem")), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "tls.handshake-timeout", 1), 0);

        connect_result c = {0};
        uint64_t start = now_ms();
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, &c, NULL), 0);
        assert_true(run_until(v->event, &c.done, 5000));
        assert_null(c.flow);
        assert_int_equal(c.error, -ETIMEDOUT);
        assert_non_null(strstr(c.reason, "handshake timed out after 1 s"));
        assert_true(now_ms() - start >= 900);
        connect_result_done(&c);

        /* Cancelled mid-handshake: no callback, nothing left behind. */
        paf_connect *handle = NULL;
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, &c, &handle), 0);
        uint64_t end = now_ms() + 5000;
        while (v->plain_accepted < 2 && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_int_equal(v->plain_accepted, 2);
        run_for(v->event, 20);
        paf_connect_cancel(handle);
        /* And cancelled before anything happened. */
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, &c, &handle), 0);
        paf_connect_cancel(handle);
        run_for(v->event, 1500);
        assert_false(c.done);
        paf_ctx_unref(ctx);
}

static void test_url_rules(void **state) {
        env *v = *state;
        listen_tls(v, "127.0.0.1:0", server_ctx("server"));

        /* https://localhost:PORT: TLS named after the host, over tcp. */
        paf_ctx *ctx = ctx_new();
        assert_int_equal(paf_ctx_set_string(ctx, "url.scheme", "https"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "url.host", "127.0.0.1"), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "url.port", listener_port(v->listener)), 0);
        paf_resolution *res;
        assert_int_equal(paf_registry_resolve(v->reg, ctx, &res), 0);
        assert_int_equal(paf_resolution_get_n_candidates(res), 1);
        const paf_attempt *a = paf_resolution_get_attempts(res, NULL);
        assert_string_equal(a[0].protocol, "tls");
        assert_string_equal(a[0].endpoint, "127.0.0.1");
        paf_resolution_free(res);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.ca-file", cpath("ca.pem")), 0);
        connect_result c;
        connect_ok(v, ctx, &c);
        wait_accepted(v, 1);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);

        /* http:// is not TLS; https+unix:// needs the name from the user. */
        const char *schemes[] = {"http", "https+unix"};
        for (size_t i = 0; i < 2; i++) {
                ctx = ctx_new();
                assert_int_equal(paf_ctx_set_string(ctx, "url.scheme", schemes[i]), 0);
                assert_int_equal(paf_ctx_set_string(ctx, "url.host", "/run/x.sock"), 0);
                assert_int_equal(paf_registry_resolve(v->reg, ctx, &res), 0);
                for (size_t j = 0; j < paf_resolution_get_n_candidates(res); j++)
                        assert_string_not_equal(paf_resolution_get_attempts(res, NULL)[j].protocol,
                                                "tls");
                paf_resolution_free(res);
                paf_ctx_unref(ctx);
        }
}

/* ---- a GnuTLS peer of the test's own: records cut and coalesced at will ---- */

/*
 * The other end of a paf TLS connection over a non-blocking loopback
 * socket, run from the paf loop. What its GnuTLS writes waits in out until
 * peer_flush(): so the test decides which records travel in one write.
 */
typedef struct peer {
        int fd;
        gnutls_session_t session;
        gnutls_certificate_credentials_t cred;
        gnutls_datum_t ticket_key;
        uint8_t *out;
        size_t out_len, out_size;
} peer;

static ssize_t peer_push(gnutls_transport_ptr_t ptr, const void *data, size_t len) {
        peer *p = ptr;
        if (p->out_size - p->out_len < len) {
                p->out_size = 2 * (p->out_len + len);
                p->out = realloc(p->out, p->out_size);
                assert_non_null(p->out);
        }
        memcpy(p->out + p->out_len, data, len);
        p->out_len += len;
        return (ssize_t)len;
}

static ssize_t peer_pull(gnutls_transport_ptr_t ptr, void *data, size_t len) {
        peer *p = ptr;
        ssize_t n = recv(p->fd, data, len, MSG_DONTWAIT);
        if (n < 0)
                gnutls_transport_set_errno(p->session, errno);
        return n;
}

static int peer_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms) {
        (void)ms;
        peer *p = ptr;
        struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) > 0)
                return 1;
        gnutls_transport_set_errno(p->session, EAGAIN);
        return -1;
}

/* Let paf take whatever is there, event by event. */
static void run_pending(env *v) {
        for (int i = 0; i < 100 && sd_event_run(v->event, 0) > 0; i++)
                ;
}

/* Send what GnuTLS wrote: in one write, or in writes of piece bytes each,
 * with paf reading after every one of them. */
static void peer_flush(env *v, peer *p, size_t piece) {
        size_t done = 0;
        uint64_t end = now_ms() + 5000;
        while (done < p->out_len) {
                size_t n = p->out_len - done;
                if (piece > 0 && n > piece)
                        n = piece;
                ssize_t k = send(p->fd, p->out + done, n, MSG_NOSIGNAL);
                if (k < 0) {
                        assert_int_equal(errno, EAGAIN);
                        assert_true(now_ms() < end);
                        assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
                        continue;
                }
                done += (size_t)k;
                if (piece > 0)
                        run_pending(v);
        }
        p->out_len = 0;
}

static void peer_init(peer *p, int fd, bool server, const char *priority) {
        *p = (peer){.fd = fd};
        assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
        assert_int_equal(gnutls_certificate_allocate_credentials(&p->cred), 0);
        assert_int_equal(gnutls_init(&p->session,
                                     (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK),
                         0);
        assert_int_equal(gnutls_priority_set_direct(p->session, priority, NULL), 0);
        if (server) {
                assert_true(gnutls_certificate_set_x509_key_file(p->cred, cpath("server.pem"),
                                                                 cpath("server.key"),
                                                                 GNUTLS_X509_FMT_PEM) >= 0);
                /* Session tickets, as OpenSSL's servers send them. */
                assert_int_equal(gnutls_session_ticket_key_generate(&p->ticket_key), 0);
                assert_int_equal(gnutls_session_ticket_enable_server(p->session, &p->ticket_key),
                                 0);
        } else {
                assert_true(gnutls_certificate_set_x509_trust_file(p->cred, cpath("ca.pem"),
                                                                   GNUTLS_X509_FMT_PEM) > 0);
                assert_int_equal(gnutls_server_name_set(p->session, GNUTLS_NAME_DNS, "localhost",
                                                        strlen("localhost")),
                                 0);
                gnutls_session_set_verify_cert(p->session, "localhost", 0);
        }
        assert_int_equal(gnutls_credentials_set(p->session, GNUTLS_CRD_CERTIFICATE, p->cred), 0);
        gnutls_transport_set_ptr(p->session, p);
        gnutls_transport_set_push_function(p->session, peer_push);
        gnutls_transport_set_pull_function(p->session, peer_pull);
        gnutls_transport_set_pull_timeout_function(p->session, peer_pull_timeout);
}

static void peer_free(peer *p) {
        gnutls_deinit(p->session);
        gnutls_certificate_free_credentials(p->cred);
        gnutls_free(p->ticket_key.data);
        free(p->out);
        close(p->fd);
}

/*
 * Run gnutls_handshake() until it is over, paf answering meanwhile; what
 * it wrote last stays in out unless flush_last. Returns its result: 0, or
 * why it ended (a renegotiation refused says so with a warning).
 */
static int peer_handshake(env *v, peer *p, bool flush_last) {
        uint64_t end = now_ms() + 5000;
        for (;;) {
                int r = gnutls_handshake(p->session);
                if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) {
                        if (flush_last)
                                peer_flush(v, p, 0);
                        return r;
                }
                peer_flush(v, p, 0);
                if (now_ms() >= end)
                        return r;
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        }
}

static void peer_send(peer *p, const char *text) {
        assert_int_equal(gnutls_record_send(p->session, text, strlen(text)), strlen(text));
}

/* The peer reads text, sent by paf. */
static void peer_expect(env *v, peer *p, const char *text) {
        char buf[256];
        size_t len = strlen(text), got = 0;
        assert_true(len <= sizeof(buf));
        uint64_t end = now_ms() + 5000;
        while (got < len && now_ms() < end) {
                ssize_t n = gnutls_record_recv(p->session, buf + got, len - got);
                if (n > 0) {
                        got += (size_t)n;
                        continue;
                }
                if (n == 0 || gnutls_error_is_fatal((int)n))
                        fail_msg("peer: reading \"%s\": %s", text,
                                 n == 0 ? "end of stream" : gnutls_strerror((int)n));
                /* Answers to a key update go at once. */
                peer_flush(v, p, 0);
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        }
        assert_int_equal(got, len);
        assert_memory_equal(buf, text, len);
}

/* A peer client of the TLS listener. */
static void peer_connect(env *v, peer *p, const char *priority) {
        peer_init(p, raw_connect(listener_port(v->listener)), false, priority);
}

/* A loopback TCP listener outside paf, for a peer server; *port is set. */
static int raw_listen(int *port) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(fd >= 0);
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
        assert_int_equal(listen(fd, 8), 0);
        socklen_t len = sizeof(in);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
        *port = ntohs(in.sin_port);
        return fd;
}

/* A paf client's connection to a peer server on lfd; the server's first
 * bytes, if any, in one write with its last handshake flight. */
static void peer_accept(env *v, int lfd, int port, const char *priority, const char *first, peer *p,
                        connect_result *c) {
        paf_ctx *ctx = ctx_new();
        assert_int_equal(paf_ctx_set_string(ctx, "tcp.host", "127.0.0.1"), 0);
        assert_int_equal(paf_ctx_set_int(ctx, "tcp.port", port), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.server-name", "localhost"), 0);
        assert_int_equal(paf_ctx_set_string(ctx, "tls.ca-file", cpath("ca.pem")), 0);
        *c = (connect_result){};
        assert_int_equal(paf_registry_connect(v->reg, ctx, v->event, on_connect, c, NULL), 0);
        paf_ctx_unref(ctx);
        int fd = -1;
        uint64_t end = now_ms() + 5000;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0 && now_ms() < end)
                assert_true(sd_event_run(v->event, 10 * 1000) >= 0);
        assert_true(fd >= 0);
        peer_init(p, fd, true, priority);
        assert_int_equal(peer_handshake(v, p, false), 0);
        if (first)
                peer_send(p, first);
        peer_flush(v, p, 0);
        assert_true(run_until(v->event, &c->done, 5000));
        if (!c->flow)
                fail_msg("connect failed:\n%s", c->report);
}

/* A reader that stops reading after its first delivery. */
static void on_read_once(paf_flow *flow, const void *data, size_t len, int error, void *userdata) {
        on_read(flow, data, len, error, userdata);
        assert_int_equal(paf_flow_read_stop(flow), 0);
}

#define TLS13 "NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define TLS12 "NORMAL:-VERS-ALL:+VERS-TLS1.2"
#define REQUEST "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

/*
 * Server side: a request behind two KeyUpdates is read at once, the client
 * still there, however the records come: with the client's Finished, in
 * one write after the handshake, read before or after it arrived, and cut
 * into pieces (1 byte, 7 bytes). paf's own KeyUpdate, asked for, lets the
 * client read the answer.
 */
static void test_key_update(void **state) {
        env *v = *state;
        listen_tls(v, "127.0.0.1:0", server_ctx("server"));
        struct {
                bool with_finished, read_first;
                size_t piece;
        } cases[] = {
                {true, false, 0}, {false, true, 0}, {false, false, 0},
                {false, true, 1}, {false, true, 7},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                peer p;
                peer_connect(v, &p, TLS13);
                assert_int_equal(peer_handshake(v, &p, !cases[i].with_finished), 0);
                if (!cases[i].with_finished)
                        wait_accepted(v, i + 1);
                reader r = {0};
                if (cases[i].read_first)
                        assert_int_equal(paf_flow_read_start(v->accepted[i], on_read, &r), 0);
                assert_int_equal(gnutls_session_key_update(p.session, GNUTLS_KU_PEER), 0);
                assert_int_equal(gnutls_session_key_update(p.session, 0), 0);
                peer_send(&p, REQUEST);
                peer_flush(v, &p, cases[i].piece);
                if (cases[i].with_finished)
                        wait_accepted(v, i + 1);
                if (!cases[i].read_first)
                        assert_int_equal(paf_flow_read_start(v->accepted[i], on_read, &r), 0);
                read_exactly(v->event, &r, strlen(REQUEST));
                assert_memory_equal(r.data, REQUEST, strlen(REQUEST));
                assert_false(r.ended);
                write_and_wait(v->event, v->accepted[i], "answer");
                peer_expect(v, &p, "answer");
                assert_int_equal(paf_flow_read_stop(v->accepted[i]), 0);
                free(r.data);
                peer_free(&p);
        }
}

#define STATUS "HTTP/1.1 200 OK\r\n"

/*
 * Client side: two session tickets and the server's first bytes in one
 * write (OpenSSL's servers send two tickets), read as they come or after
 * they were all there, and in pieces. And under TLS 1.2, bytes that came
 * with the server's Finished.
 */
static void test_session_tickets(void **state) {
        env *v = *state;
        int port;
        int lfd = raw_listen(&port);
        struct {
                bool read_first;
                size_t piece;
        } cases[] = {{true, 0}, {false, 0}, {true, 1}, {true, 5}};
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                peer p;
                connect_result c;
                peer_accept(v, lfd, port, TLS13, NULL, &p, &c);
                reader r = {0};
                if (cases[i].read_first)
                        assert_int_equal(paf_flow_read_start(c.flow, on_read, &r), 0);
                assert_int_equal(gnutls_session_ticket_send(p.session, 2, 0), 0);
                peer_send(&p, STATUS);
                peer_flush(v, &p, cases[i].piece);
                if (!cases[i].read_first) {
                        run_pending(v);
                        assert_int_equal(paf_flow_read_start(c.flow, on_read, &r), 0);
                }
                read_exactly(v->event, &r, strlen(STATUS));
                assert_memory_equal(r.data, STATUS, r.len);
                assert_false(r.ended);
                write_and_wait(v->event, c.flow, "thanks");
                peer_expect(v, &p, "thanks");
                free(r.data);
                close_and_wait(v->event, c.flow);
                connect_result_done(&c);
                peer_free(&p);
        }

        peer p;
        connect_result c;
        peer_accept(v, lfd, port, TLS12, STATUS, &p, &c);
        reader r = {0};
        assert_int_equal(paf_flow_read_start(c.flow, on_read, &r), 0);
        read_exactly(v->event, &r, strlen(STATUS));
        assert_memory_equal(r.data, STATUS, r.len);
        free(r.data);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
        peer_free(&p);
        close(lfd);
}

/*
 * A consumer that stops reading gets nothing more, even with whole records
 * buffered behind a KeyUpdate; reading again gets them all, with nothing
 * new from the peer.
 */
static void test_read_stop_with_buffered_records(void **state) {
        env *v = *state;
        listen_tls(v, "127.0.0.1:0", server_ctx("server"));
        peer p;
        peer_connect(v, &p, TLS13);
        assert_int_equal(peer_handshake(v, &p, true), 0);
        wait_accepted(v, 1);
        paf_flow *server = v->accepted[0];
        reader r = {0};
        assert_int_equal(paf_flow_read_start(server, on_read_once, &r), 0);
        peer_send(&p, "one");
        assert_int_equal(gnutls_session_key_update(p.session, 0), 0);
        peer_send(&p, "two");
        peer_send(&p, "three");
        peer_flush(v, &p, 0);
        read_exactly(v->event, &r, 3);
        run_for(v->event, 100);
        assert_int_equal(r.len, 3);
        assert_false(paf_flow_is_reading(server));

        /* One record at a time, each read stopping again. */
        assert_int_equal(paf_flow_read_start(server, on_read_once, &r), 0);
        read_exactly(v->event, &r, 6);
        run_for(v->event, 50);
        assert_int_equal(r.len, 6);
        assert_int_equal(paf_flow_read_start(server, on_read, &r), 0);
        read_exactly(v->event, &r, 11);
        assert_memory_equal(r.data, "onetwothree", 11);
        assert_false(r.ended);

        /* And the end of the stream behind a KeyUpdate, buffered while the
         * consumer does not read. */
        assert_int_equal(paf_flow_read_start(server, on_read_once, &r), 0);
        peer_send(&p, "four");
        assert_int_equal(gnutls_session_key_update(p.session, 0), 0);
        assert_int_equal(gnutls_bye(p.session, GNUTLS_SHUT_WR), 0);
        peer_flush(v, &p, 0);
        assert_int_equal(shutdown(p.fd, SHUT_WR), 0);
        read_exactly(v->event, &r, 15);
        run_for(v->event, 50);
        assert_false(r.ended);
        assert_int_equal(paf_flow_read_start(server, on_read, &r), 0);
        assert_true(run_until(v->event, &r.ended, 5000));
        assert_true(r.eof);
        assert_int_equal(r.len, 15);
        free(r.data);
        peer_free(&p);
}

/* The renegotiation was refused, with the warning RFC 5246 has for it. */
static void assert_no_renegotiation(peer *p, int r) {
        if (r != GNUTLS_E_WARNING_ALERT_RECEIVED)
                fail_msg("renegotiation: %s, expected the no_renegotiation warning",
                         gnutls_strerror(r));
        assert_int_equal(gnutls_alert_get(p->session), GNUTLS_A_NO_RENEGOTIATION);
}

/*
 * TLS 1.2: a client's renegotiation (a new ClientHello) and a server's
 * HelloRequest are refused with a no_renegotiation warning, and the
 * connection goes on both ways, as often as the peer tries.
 */
static void test_renegotiation_refused(void **state) {
        env *v = *state;
        listen_tls(v, "127.0.0.1:0", server_ctx("server"));
        peer p;
        peer_connect(v, &p, TLS12);
        assert_int_equal(peer_handshake(v, &p, true), 0);
        wait_accepted(v, 1);
        paf_flow *server = v->accepted[0];
        assert_query(server, PAF_FLOW_QUERY_TLS_VERSION, "TLS1.2");
        reader r = {0};
        assert_int_equal(paf_flow_read_start(server, on_read, &r), 0);
        for (int round = 0; round < 2; round++) {
                assert_true(gnutls_safe_renegotiation_status(p.session));
                assert_no_renegotiation(&p, peer_handshake(v, &p, true));
                peer_send(&p, "after");
                peer_flush(v, &p, 0);
                read_exactly(v->event, &r, 5 * (round + 1));
                assert_false(r.ended);
                write_and_wait(v->event, server, "still here");
                peer_expect(v, &p, "still here");
        }
        assert_memory_equal(r.data, "afterafter", 10);
        free(r.data);
        peer_free(&p);

        /* The other way: the server asks, paf's client declines. */
        int port;
        int lfd = raw_listen(&port);
        connect_result c;
        peer_accept(v, lfd, port, TLS12, NULL, &p, &c);
        assert_query(c.flow, PAF_FLOW_QUERY_TLS_VERSION, "TLS1.2");
        r = (reader){0};
        assert_int_equal(paf_flow_read_start(c.flow, on_read, &r), 0);
        for (int round = 0; round < 2; round++) {
                assert_int_equal(gnutls_rehandshake(p.session), 0);
                assert_no_renegotiation(&p, peer_handshake(v, &p, true));
                peer_send(&p, "hello");
                peer_flush(v, &p, 0);
                read_exactly(v->event, &r, 5 * (round + 1));
                assert_false(r.ended);
                write_and_wait(v->event, c.flow, "still here");
                peer_expect(v, &p, "still here");
        }
        free(r.data);
        close_and_wait(v->event, c.flow);
        connect_result_done(&c);
        peer_free(&p);
        close(lfd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_tcp_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tls12_and_alpn, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unix_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_big_transfer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verification_failures, setup, teardown),
                cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sni, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mutual_tls, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_peers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_server_config, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_plaintext_fallback, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_timeout_and_cancel, setup, teardown),
                cmocka_unit_test_setup_teardown(test_url_rules, setup, teardown),
                cmocka_unit_test_setup_teardown(test_key_update, setup, teardown),
                cmocka_unit_test_setup_teardown(test_session_tickets, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_stop_with_buffered_records, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_renegotiation_refused, setup, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
