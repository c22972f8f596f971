/* tests/acme/test-tlsalpn.c — the tls-alpn-01 certificate (RFC 8737, RFC 8738 §6) parsed back:
 * its SAN, the critical acmeIdentifier extension and its bytes, the key, the SNI names. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "../../core/acme/tlsalpn.h"

/* RFC 8555 §8.1's shape; its SHA-256 from coreutils' sha256sum, not from GnuTLS. */
static const char KA[] = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA."
                         "9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";
static const char KA_SHA256[] = "94233b719c905dc5472b69e75b78e3021353dc5be6d7c50dfa45996649caa183";

typedef struct parsed {
        gnutls_x509_crt_t crt;
        gnutls_x509_privkey_t key;
} parsed;

static void parse(const char *identifier, parsed *p) {
        char *cert_pem = NULL, *key_pem = NULL;
        assert_int_equal(paf_acme_tlsalpn_cert(identifier, KA, &cert_pem, &key_pem), 0);
        assert_non_null(strstr(cert_pem, "-----BEGIN CERTIFICATE-----"));
        assert_non_null(strstr(key_pem, "-----BEGIN PRIVATE KEY-----"));
        assert_int_equal(gnutls_x509_crt_init(&p->crt), 0);
        gnutls_datum_t d = {(unsigned char *)cert_pem, (unsigned)strlen(cert_pem)};
        assert_int_equal(gnutls_x509_crt_import(p->crt, &d, GNUTLS_X509_FMT_PEM), 0);
        assert_int_equal(gnutls_x509_privkey_init(&p->key), 0);
        d = (gnutls_datum_t){(unsigned char *)key_pem, (unsigned)strlen(key_pem)};
        assert_int_equal(gnutls_x509_privkey_import(p->key, &d, GNUTLS_X509_FMT_PEM), 0);
        free(cert_pem);
        free(key_pem);
}

static void parsed_done(parsed *p) {
        gnutls_x509_crt_deinit(p->crt);
        gnutls_x509_privkey_deinit(p->key);
}

/* Exactly one SAN, of that type and those bytes. */
static void assert_only_san(gnutls_x509_crt_t crt, int type, const void *data, size_t len) {
        char buf[256];
        size_t size = sizeof(buf);
        unsigned critical = 0;
        int t = gnutls_x509_crt_get_subject_alt_name(crt, 0, buf, &size, &critical);
        assert_int_equal(t, type);
        assert_int_equal(size, len);
        assert_memory_equal(buf, data, len);
        size = sizeof(buf);
        assert_int_equal(gnutls_x509_crt_get_subject_alt_name(crt, 1, buf, &size, NULL),
                         GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);
}

static void assert_acme_identifier(gnutls_x509_crt_t crt) {
        unsigned char want[34] = {0x04, 0x20};
        for (int i = 0; i < 32; i++) {
                unsigned v;
                assert_int_equal(sscanf(KA_SHA256 + 2 * i, "%2x", &v), 1);
                want[2 + i] = (unsigned char)v;
        }
        gnutls_datum_t ext = {NULL, 0};
        unsigned critical = 0;
        assert_int_equal(gnutls_x509_crt_get_extension_by_oid2(crt, "1.3.6.1.5.5.7.1.31", 0, &ext,
                                                               &critical),
                         0);
        assert_int_equal(critical, 1);
        assert_int_equal(ext.size, sizeof(want));
        assert_memory_equal(ext.data, want, sizeof(want));
        gnutls_free(ext.data);

        /* Only the SAN and acmeIdentifier: nothing a validator could trip on. */
        unsigned n = 0;
        char oid[128];
        for (unsigned i = 0; i < 16; i++) {
                size_t size = sizeof(oid);
                if (gnutls_x509_crt_get_extension_oid(crt, i, oid, &size) < 0)
                        break;
                assert_true(strcmp(oid, "2.5.29.17") == 0 ||
                            strcmp(oid, "1.3.6.1.5.5.7.1.31") == 0);
                n++;
        }
        assert_int_equal(n, 2);
}

/* A P-256 key matching the certificate, which it signed itself, valid now. */
static void assert_key_and_signature(parsed *p) {
        unsigned bits = 0;
        assert_int_equal(gnutls_x509_crt_get_pk_algorithm(p->crt, &bits), GNUTLS_PK_ECDSA);
        gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
        gnutls_datum_t x = {NULL, 0}, y = {NULL, 0};
        assert_int_equal(gnutls_x509_crt_get_pk_ecc_raw(p->crt, &curve, &x, &y), 0);
        gnutls_free(x.data);
        gnutls_free(y.data);
        assert_int_equal(curve, GNUTLS_ECC_CURVE_SECP256R1);
        unsigned char id1[64], id2[64];
        size_t s1 = sizeof(id1), s2 = sizeof(id2);
        assert_int_equal(gnutls_x509_crt_get_key_id(p->crt, GNUTLS_KEYID_USE_SHA256, id1, &s1), 0);
        assert_int_equal(gnutls_x509_privkey_get_key_id(p->key, GNUTLS_KEYID_USE_SHA256, id2, &s2),
                         0);
        assert_int_equal(s1, s2);
        assert_memory_equal(id1, id2, s1);
        unsigned status = 99;
        assert_int_equal(gnutls_x509_crt_verify(p->crt, &p->crt, 1, 0, &status), 0);
        assert_int_equal(status, 0);
        time_t now = time(NULL);
        assert_true(gnutls_x509_crt_get_activation_time(p->crt) <= now);
        assert_true(gnutls_x509_crt_get_expiration_time(p->crt) > now + 3600);
        assert_int_equal(gnutls_x509_crt_get_version(p->crt), 3);
}

static void test_dns(void **state) {
        (void)state;
        parsed p;
        /* Upper case in, the identifier's lower case in the SAN. */
        parse("WWW.Paf.test", &p);
        assert_only_san(p.crt, GNUTLS_SAN_DNSNAME, "www.paf.test", 12);
        assert_acme_identifier(p.crt);
        assert_key_and_signature(&p);
        parsed_done(&p);
}

static void test_ipv4(void **state) {
        (void)state;
        parsed p;
        parse("127.0.0.1", &p);
        assert_only_san(p.crt, GNUTLS_SAN_IPADDRESS, "\x7f\x00\x00\x01", 4);
        assert_acme_identifier(p.crt);
        assert_key_and_signature(&p);
        parsed_done(&p);
}

static void test_ipv6(void **state) {
        (void)state;
        parsed p;
        parse("2001:db8::1", &p);
        static const unsigned char ip[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
        assert_only_san(p.crt, GNUTLS_SAN_IPADDRESS, ip, 16);
        assert_acme_identifier(p.crt);
        assert_key_and_signature(&p);
        parsed_done(&p);
}

/* Every call makes a new key and serial. */
static void test_fresh(void **state) {
        (void)state;
        parsed a, b;
        parse("paf.test", &a);
        parse("paf.test", &b);
        unsigned char s1[32], s2[32];
        size_t n1 = sizeof(s1), n2 = sizeof(s2);
        assert_int_equal(gnutls_x509_crt_get_serial(a.crt, s1, &n1), 0);
        assert_int_equal(gnutls_x509_crt_get_serial(b.crt, s2, &n2), 0);
        assert_false(n1 == n2 && memcmp(s1, s2, n1) == 0);
        assert_true(s1[0] < 0x80); /* positive */
        unsigned char k1[64], k2[64];
        n1 = sizeof(k1);
        n2 = sizeof(k2);
        assert_int_equal(gnutls_x509_crt_get_key_id(a.crt, GNUTLS_KEYID_USE_SHA256, k1, &n1), 0);
        assert_int_equal(gnutls_x509_crt_get_key_id(b.crt, GNUTLS_KEYID_USE_SHA256, k2, &n2), 0);
        assert_false(n1 == n2 && memcmp(k1, k2, n1) == 0);
        parsed_done(&a);
        parsed_done(&b);
}

/* A listener can load what it gets as is. */
static void test_loads_as_credentials(void **state) {
        (void)state;
        char *cert = NULL, *key = NULL;
        assert_int_equal(paf_acme_tlsalpn_cert("paf.test", KA, &cert, &key), 0);
        gnutls_certificate_credentials_t cred;
        assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
        gnutls_datum_t c = {(unsigned char *)cert, (unsigned)strlen(cert)};
        gnutls_datum_t k = {(unsigned char *)key, (unsigned)strlen(key)};
        assert_true(gnutls_certificate_set_x509_key_mem2(cred, &c, &k, GNUTLS_X509_FMT_PEM, NULL,
                                                         0) >= 0);
        gnutls_certificate_free_credentials(cred);
        free(cert);
        free(key);
}

/* Another parser's reading (OpenSSL's): the SAN, and the extension critical with its bytes. */
static void test_openssl_reads_it(void **state) {
        (void)state;
        char *cert = NULL, *key = NULL;
        assert_int_equal(paf_acme_tlsalpn_cert("www.paf.test", KA, &cert, &key), 0);
        char path[] = "/tmp/paf-test-tlsalpn-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, cert, strlen(cert)), (ssize_t)strlen(cert));
        close(fd);
        free(cert);
        free(key);
        char cmd[256];
        snprintf(cmd, sizeof(cmd),
                 "openssl x509 -noout -text -certopt no_sigdump,no_pubkey,ext_parse -in %s 2>&1",
                 path);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        static char text[16384];
        size_t n = fread(text, 1, sizeof(text) - 1, p);
        text[n] = '\0';
        int st = pclose(p);
        unlink(path);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
                skip();
        assert_int_equal(st, 0);
        assert_non_null(strstr(text, "DNS:www.paf.test"));
        /* ext_parse: OpenSSL's ASN.1 parse of the value, one 32-byte OCTET
         * STRING at depth 0, then its bytes as two BIO_dump lines of 16
         * ("0000 - 94 23 … 02   ascii"). */
        const char *ext = strstr(text, "1.3.6.1.5.5.7.1.31: critical");
        if (!ext)
                fail_msg("no critical acmeIdentifier in:\n%s", text);
        const char *asn1 = strstr(ext, "d=0  hl=2 l=  32 prim: OCTET STRING");
        if (!asn1)
                fail_msg("acmeIdentifier is not one 32-byte OCTET STRING:\n%s", ext);
        char hex[65] = "";
        size_t k = 0;
        const char *line = asn1;
        for (int l = 0; l < 2; l++) {
                line = strstr(line, l == 0 ? "0000 - " : "0010 - ");
                assert_non_null(line);
                line += 7;
                for (int i = 0; i < 48 && line[i]; i++)
                        if (line[i] != ' ' && line[i] != '-' && k < 64)
                                hex[k++] = line[i];
        }
        hex[k] = '\0';
        assert_string_equal(hex, KA_SHA256);
        assert_null(strstr(asn1 + 1, "d=0 "));
}

/* ---- a handshake as the validator makes it (RFC 8737 §3), against the
 * mechanism proposed for plugins/tls: a server offering acme-tls/1 last,
 * switching to the challenge's credentials after the ClientHello ---- */

typedef struct alpn_server {
        int fd;
        gnutls_certificate_credentials_t normal;
        paf_acme_tlsalpn *challenges;
        gnutls_certificate_credentials_t challenge; /* made for this handshake */
        int handshake;                              /* GnuTLS's result */
        char alpn[32];                              /* what was negotiated */
} alpn_server;

static int post_client_hello(gnutls_session_t session) {
        alpn_server *v = gnutls_session_get_ptr(session);
        gnutls_datum_t p = {NULL, 0};
        if (gnutls_alpn_get_selected_protocol(session, &p) < 0 || p.size != 10 ||
            memcmp(p.data, PAF_ACME_TLSALPN_PROTOCOL, 10) != 0)
                return 0; /* an ordinary client: the listener's own certificate */
        char name[256];
        size_t len = sizeof(name);
        unsigned type;
        char *cert = NULL, *key = NULL;
        if (gnutls_server_name_get(session, name, &len, &type, 0) < 0 || type != GNUTLS_NAME_DNS ||
            paf_acme_tlsalpn_lookup(v->challenges, name, &cert, &key) < 0)
                return GNUTLS_E_UNRECOGNIZED_NAME; /* no challenge for that name */
        gnutls_datum_t c = {(unsigned char *)cert, (unsigned)strlen(cert)};
        gnutls_datum_t k = {(unsigned char *)key, (unsigned)strlen(key)};
        int r = gnutls_certificate_allocate_credentials(&v->challenge);
        if (r >= 0)
                r = gnutls_certificate_set_x509_key_mem2(v->challenge, &c, &k, GNUTLS_X509_FMT_PEM,
                                                         NULL, 0);
        free(cert);
        free(key);
        if (r < 0)
                return r;
        return gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, v->challenge);
}

static void *alpn_server_run(void *userdata) {
        alpn_server *v = userdata;
        gnutls_session_t s;
        v->handshake = gnutls_init(&s, GNUTLS_SERVER);
        if (v->handshake < 0)
                return NULL;
        static const gnutls_datum_t protos[] = {{(unsigned char *)"http/1.1", 8},
                                                {(unsigned char *)PAF_ACME_TLSALPN_PROTOCOL, 10}};
        gnutls_session_set_ptr(s, v);
        gnutls_set_default_priority(s);
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, v->normal);
        gnutls_alpn_set_protocols(s, protos, 2, GNUTLS_ALPN_SERVER_PRECEDENCE);
        gnutls_handshake_set_post_client_hello_function(s, post_client_hello);
        gnutls_transport_set_int(s, v->fd);
        gnutls_handshake_set_timeout(s, 5000);
        do
                v->handshake = gnutls_handshake(s);
        while (v->handshake < 0 && !gnutls_error_is_fatal(v->handshake));
        gnutls_datum_t p = {NULL, 0};
        if (v->handshake >= 0 && gnutls_alpn_get_selected_protocol(s, &p) >= 0)
                snprintf(v->alpn, sizeof(v->alpn), "%.*s", (int)p.size, (const char *)p.data);
        if (v->handshake >= 0)
                gnutls_bye(s, GNUTLS_SHUT_WR);
        gnutls_deinit(s);
        if (v->challenge)
                gnutls_certificate_free_credentials(v->challenge);
        v->challenge = NULL;
        /* The client sees the end now, not at its handshake timeout. */
        shutdown(v->fd, SHUT_RDWR);
        return NULL;
}

static gnutls_certificate_credentials_t cred_for(const char *identifier) {
        char *cert = NULL, *key = NULL;
        assert_int_equal(paf_acme_tlsalpn_cert(identifier, KA, &cert, &key), 0);
        gnutls_certificate_credentials_t cred;
        assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
        gnutls_datum_t c = {(unsigned char *)cert, (unsigned)strlen(cert)};
        gnutls_datum_t k = {(unsigned char *)key, (unsigned)strlen(key)};
        assert_true(gnutls_certificate_set_x509_key_mem2(cred, &c, &k, GNUTLS_X509_FMT_PEM, NULL,
                                                         0) >= 0);
        free(cert);
        free(key);
        return cred;
}

/* One client handshake: its ALPN offer and SNI; the certificate it was shown. */
static int alpn_handshake(alpn_server *v, const char *priority, const char *alpn, const char *sni,
                          gnutls_x509_crt_t *ret_crt) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        v->fd = sv[0];
        v->alpn[0] = '\0';
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, alpn_server_run, v), 0);
        gnutls_certificate_credentials_t none;
        assert_int_equal(gnutls_certificate_allocate_credentials(&none), 0);
        gnutls_session_t s;
        assert_int_equal(gnutls_init(&s, GNUTLS_CLIENT), 0);
        assert_int_equal(gnutls_priority_set_direct(s, priority, NULL), 0);
        assert_int_equal(gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, none), 0);
        gnutls_datum_t proto = {(unsigned char *)alpn, (unsigned)strlen(alpn)};
        assert_int_equal(gnutls_alpn_set_protocols(s, &proto, 1, 0), 0);
        assert_int_equal(gnutls_server_name_set(s, GNUTLS_NAME_DNS, sni, strlen(sni)), 0);
        gnutls_transport_set_int(s, sv[1]);
        gnutls_handshake_set_timeout(s, 5000);
        int r;
        do
                r = gnutls_handshake(s);
        while (r < 0 && !gnutls_error_is_fatal(r));
        if (r >= 0) {
                unsigned n = 0;
                const gnutls_datum_t *chain = gnutls_certificate_get_peers(s, &n);
                assert_int_equal(n, 1);
                assert_int_equal(gnutls_x509_crt_init(ret_crt), 0);
                assert_int_equal(gnutls_x509_crt_import(*ret_crt, &chain[0], GNUTLS_X509_FMT_DER),
                                 0);
                /* RFC 8737 §3: nothing more once the handshake is done. */
                gnutls_bye(s, GNUTLS_SHUT_WR);
        }
        gnutls_deinit(s);
        close(sv[1]);
        assert_int_equal(pthread_join(th, NULL), 0);
        close(sv[0]);
        gnutls_certificate_free_credentials(none);
        return r;
}

static void test_handshake(void **state) {
        (void)state;
        alpn_server v = {.normal = cred_for("www.normal.test")};
        assert_int_equal(paf_acme_tlsalpn_new(&v.challenges), 0);
        assert_int_equal(paf_acme_tlsalpn_add(v.challenges, "www.paf.test", KA), 0);
        assert_int_equal(paf_acme_tlsalpn_add(v.challenges, "192.0.2.7", KA), 0);
        static const char *const priorities[] = {"NORMAL", "NORMAL:-VERS-TLS1.3"};
        for (size_t i = 0; i < 2; i++) {
                gnutls_x509_crt_t crt = NULL;
                /* The validator: acme-tls/1 only, SNI the name; shown the challenge. */
                assert_int_equal(alpn_handshake(&v, priorities[i], PAF_ACME_TLSALPN_PROTOCOL,
                                                "WWW.paf.test", &crt),
                                 0);
                assert_int_equal(v.handshake, 0);
                assert_string_equal(v.alpn, PAF_ACME_TLSALPN_PROTOCOL);
                assert_only_san(crt, GNUTLS_SAN_DNSNAME, "www.paf.test", 12);
                assert_acme_identifier(crt);
                gnutls_x509_crt_deinit(crt);

                /* An IP identifier: the reverse name in SNI (RFC 8738 §6), the IP in the SAN. */
                assert_int_equal(alpn_handshake(&v, priorities[i], PAF_ACME_TLSALPN_PROTOCOL,
                                                "7.2.0.192.in-addr.arpa", &crt),
                                 0);
                assert_only_san(crt, GNUTLS_SAN_IPADDRESS, "\xc0\x00\x02\x07", 4);
                assert_acme_identifier(crt);
                gnutls_x509_crt_deinit(crt);

                /* An ordinary client on the same listener: its usual certificate. */
                assert_int_equal(
                        alpn_handshake(&v, priorities[i], "http/1.1", "www.paf.test", &crt), 0);
                assert_string_equal(v.alpn, "http/1.1");
                assert_only_san(crt, GNUTLS_SAN_DNSNAME, "www.normal.test", 15);
                gnutls_x509_crt_deinit(crt);

                /* acme-tls/1 for a name with no challenge: refused, not the normal certificate. */
                assert_true(alpn_handshake(&v, priorities[i], PAF_ACME_TLSALPN_PROTOCOL,
                                           "other.paf.test", &crt) < 0);
                assert_true(v.handshake < 0);
        }
        /* Removed once the authorization is final: refused from then on. */
        assert_int_equal(paf_acme_tlsalpn_remove(v.challenges, "www.paf.test"), 0);
        assert_int_equal(paf_acme_tlsalpn_remove(v.challenges, "www.paf.test"), -ENOENT);
        gnutls_x509_crt_t crt = NULL;
        assert_true(alpn_handshake(&v, "NORMAL", PAF_ACME_TLSALPN_PROTOCOL, "www.paf.test", &crt) <
                    0);
        gnutls_certificate_free_credentials(v.normal);
        paf_acme_tlsalpn_unref(v.challenges);
}

static void test_table(void **state) {
        (void)state;
        paf_acme_tlsalpn *t;
        assert_int_equal(paf_acme_tlsalpn_new(&t), 0);
        char *c = NULL, *k = NULL;
        assert_int_equal(paf_acme_tlsalpn_lookup(t, "paf.test", &c, &k), -ENOENT);
        assert_int_equal(paf_acme_tlsalpn_add(t, "*.paf.test", KA), -EINVAL);
        assert_int_equal(paf_acme_tlsalpn_add(t, "paf.test", "bad"), -EINVAL);
        assert_int_equal(paf_acme_tlsalpn_add(t, "paf.test", KA), 0);
        char *c1 = NULL, *k1 = NULL;
        assert_int_equal(paf_acme_tlsalpn_lookup(t, "PAF.test", &c1, &k1), 0);
        /* Added again (a new challenge for the name): a new certificate. */
        assert_int_equal(paf_acme_tlsalpn_add(t, "paf.test", KA), 0);
        assert_int_equal(paf_acme_tlsalpn_lookup(t, "paf.test", &c, &k), 0);
        assert_string_not_equal(c, c1);
        free(c);
        free(k);
        free(c1);
        free(k1);
        /* SNI never carries an address: an IP is looked up by its reverse name. */
        assert_int_equal(paf_acme_tlsalpn_add(t, "2001:db8::1", KA), 0);
        assert_int_equal(paf_acme_tlsalpn_lookup(t, "2001:db8::1", &c, &k), -ENOENT);
        assert_int_equal(
                paf_acme_tlsalpn_lookup(
                        t,
                        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
                        &c, &k),
                0);
        free(c);
        free(k);
        assert_int_equal(paf_acme_tlsalpn_remove(t, "2001:DB8:0::1"), 0);
        assert_null(paf_acme_tlsalpn_unref(paf_acme_tlsalpn_ref(t)));
        assert_null(paf_acme_tlsalpn_unref(t));
        assert_null(paf_acme_tlsalpn_unref(NULL));
}

static void test_invalid(void **state) {
        (void)state;
        char *c = (char *)"untouched", *k = (char *)"untouched";
        static const char *const bad_names[] = {
                "",
                "*.paf.test", /* RFC 8737 §3: no wildcards */
                "a..paf.test",
                ".paf.test",
                "-a.paf.test",
                "a-.paf.test",
                "a_b.paf.test",
                "paf.test/x",
                "fe80::1%lo",
        };
        for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
                assert_int_equal(paf_acme_tlsalpn_cert(bad_names[i], KA, &c, &k), -EINVAL);
        /* A 63-character label is a label, 64 is not (RFC 1035 §2.3.4). */
        char label[80];
        memset(label, 'a', 63);
        strcpy(label + 63, ".test");
        char *c2 = NULL, *k2 = NULL;
        assert_int_equal(paf_acme_tlsalpn_cert(label, KA, &c2, &k2), 0);
        free(c2);
        free(k2);
        memset(label, 'a', 64);
        strcpy(label + 64, ".test");
        assert_int_equal(paf_acme_tlsalpn_cert(label, KA, &c, &k), -EINVAL);
        static const char *const bad_ka[] = {"",       "nodot",        ".thumb",
                                             "token.", "to ken.thumb", "token.thu/mb"};
        for (size_t i = 0; i < sizeof(bad_ka) / sizeof(bad_ka[0]); i++)
                assert_int_equal(paf_acme_tlsalpn_cert("paf.test", bad_ka[i], &c, &k), -EINVAL);
        assert_int_equal(paf_acme_tlsalpn_cert(NULL, KA, &c, &k), -EINVAL);
        assert_int_equal(paf_acme_tlsalpn_cert("paf.test", KA, NULL, &k), -EINVAL);
        /* A failed call leaves the outputs alone. */
        assert_string_equal(c, "untouched");
        assert_string_equal(k, "untouched");
}

static void test_server_name(void **state) {
        (void)state;
        char *s = NULL;
        assert_int_equal(paf_acme_tlsalpn_server_name("Paf.Test", &s), 0);
        assert_string_equal(s, "paf.test");
        free(s);
        assert_int_equal(paf_acme_tlsalpn_server_name("192.0.2.10", &s), 0);
        assert_string_equal(s, "10.2.0.192.in-addr.arpa");
        free(s);
        assert_int_equal(paf_acme_tlsalpn_server_name("2001:db8::1", &s), 0);
        assert_string_equal(s, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."
                               "ip6.arpa");
        free(s);
        assert_int_equal(paf_acme_tlsalpn_server_name("*.paf.test", &s), -EINVAL);
}

int main(void) {
        /* A peer that gave up on a handshake is an error code, not a signal. */
        signal(SIGPIPE, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dns),
                cmocka_unit_test(test_ipv4),
                cmocka_unit_test(test_ipv6),
                cmocka_unit_test(test_fresh),
                cmocka_unit_test(test_loads_as_credentials),
                cmocka_unit_test(test_openssl_reads_it),
                cmocka_unit_test(test_handshake),
                cmocka_unit_test(test_table),
                cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_server_name),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
