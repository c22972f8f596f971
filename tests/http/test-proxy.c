/* tests/http/test-proxy.c — core/http/proxy.c: proxy strings as curl reads them, the no_proxy
 * rules (names, addresses, CIDR), and the SOCKS4 and SOCKS4a requests byte for byte against a
 * scripted peer on loopback (dante, the real SOCKS4 server of tests/http/test-get-proxy.sh, takes
 * no SOCKS4a). */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/http/proxy-internal.h"

/* ---- proxy strings ---- */

static void test_parse(void **state _unused_) {
        static const struct {
                const char *in;
                int r;
                hc_proxy_kind kind;
                const char *host;
                int port;
                const char *user, *password;
        } cases[] = {
                {"127.0.0.1:3128", 0, HC_PROXY_HTTP, "127.0.0.1", 3128, NULL, NULL},
                {"proxy", 0, HC_PROXY_HTTP, "proxy", 1080, NULL, NULL},
                {"http://proxy:8080/", 0, HC_PROXY_HTTP, "proxy", 8080, NULL, NULL},
                {"HTTPS://proxy", 0, HC_PROXY_HTTPS, "proxy", 443, NULL, NULL},
                {"socks4://h", 0, HC_PROXY_SOCKS4, "h", 1080, NULL, NULL},
                {"socks4a://h:1", 0, HC_PROXY_SOCKS4A, "h", 1, NULL, NULL},
                {"socks5://[::1]:1081", 0, HC_PROXY_SOCKS5, "::1", 1081, NULL, NULL},
                {"socks5h://u:p@h", 0, HC_PROXY_SOCKS5H, "h", 1080, "u", "p"},
                /* Percent-decoded; the last '@' ends the credentials. */
                {"http://%61lice:p%40ss%3a@h:1", 0, HC_PROXY_HTTP, "h", 1, "alice", "p@ss:"},
                {"http://a:b@c@h", 0, HC_PROXY_HTTP, "h", 1080, "a", "b@c"},
                {"http://user@h", 0, HC_PROXY_HTTP, "h", 1080, "user", NULL},
                {"http://u:%zz@h", 0, HC_PROXY_HTTP, "h", 1080, "u", "%zz"},
                {"http://u:%00@h", -EINVAL, 0, NULL, 0, NULL, NULL},
                {"ftp://h", -EPROTONOSUPPORT, 0, NULL, 0, NULL, NULL},
                {"socks://h", -EPROTONOSUPPORT, 0, NULL, 0, NULL, NULL},
                {"http://[::1", -EINVAL, 0, NULL, 0, NULL, NULL},
                {"http://[::1]x", -EINVAL, 0, NULL, 0, NULL, NULL},
                {"http://h:0", -EINVAL, 0, NULL, 0, NULL, NULL},
                {"http://h:65536", -EINVAL, 0, NULL, 0, NULL, NULL},
                {"http://h:8a", -EINVAL, 0, NULL, 0, NULL, NULL},
                {"http://h:", -EINVAL, 0, NULL, 0, NULL, NULL},
                {"http://:80", -EINVAL, 0, NULL, 0, NULL, NULL},
                {"http://u:p@", -EINVAL, 0, NULL, 0, NULL, NULL},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                hc_proxy p = {0};
                int r = hc_proxy_parse(cases[i].in, &p);
                if (r != cases[i].r)
                        fail_msg("%s: %d, not %d", cases[i].in, r, cases[i].r);
                if (r < 0)
                        continue;
                assert_int_equal(p.kind, cases[i].kind);
                assert_string_equal(p.host, cases[i].host);
                assert_int_equal(p.port, cases[i].port);
                if (cases[i].user)
                        assert_string_equal(p.user, cases[i].user);
                else
                        assert_null(p.user);
                if (cases[i].password)
                        assert_string_equal(p.password, cases[i].password);
                else
                        assert_null(p.password);
                hc_proxy_done(&p);
        }
}

/* ---- no_proxy ---- */

static void test_noproxy(void **state _unused_) {
        static const struct {
                const char *list, *host;
                bool match;
        } cases[] = {
                /* "*" alone; in a list it is a name like any other (curl 7.88). */
                {"*", "example.com", true},
                {"*, x", "example.com", false},
                {" *", "example.com", false},
                {"", "example.com", false},
                /* Names: the domain and below, dots at either end ignored. */
                {"example.com", "example.com", true},
                {"example.com", "www.EXAMPLE.com", true},
                {".example.com", "example.com", true},
                {"example.com.", "example.com.", true},
                {"example.com", "notexample.com", false},
                {"*.example.com", "www.example.com", false},
                {"a.com b.com,,c.com", "x.b.com", true},
                {"example.com:80", "example.com", false},
                /* IPv4: the address, or CIDR; no name matching. */
                {"127.0.0.1", "127.0.0.1", true},
                {".0.0.1", "127.0.0.1", false},
                {"127.0.0.0/8", "127.1.2.3", true},
                {"127.0.0.0/8", "128.0.0.1", false},
                {"10.0.0.0/8, 127.0.0.1/32", "127.0.0.1", true},
                {"127.0.0.2/31", "127.0.0.1", false},
                {"127.0.0.2/31", "127.0.0.3", true},
                {"127.0.0.0/0", "127.0.0.1", false}, /* /0 is the address alone, as curl */
                {"127.0.0.1/0", "127.0.0.1", true},
                {"127.0.0.0/33", "127.0.0.1", false},
                {"127.0.0.1/abc", "127.0.0.1", true},
                {"127.0.0.0/8x", "127.0.0.1", true},
                {"127.0.0.0/-8", "127.0.0.1", false},
                {"126.0.0.0/7", "127.255.255.255", true},
                {"127.0.0.0/8", "localhost", false},
                /* IPv6, as addresses (with or without brackets in the URL). */
                {"::1", "::1", true},
                {"::1", "[::1]", true},
                {"0:0::1", "::1", true},
                {"::1/128", "::1", true},
                {"::/64", "::1", true},
                {"::2/127", "::1", false},
                {"::2/126", "::1", true},
                {"fe80::/10", "fe80::1234", true},
                {"fe80::/10", "fec0::1", false},
                {"2001:db8::/33", "2001:db8:7fff::1", true},
                {"2001:db8::/33", "2001:db8:8000::1", false},
                {"::1/129", "::1", false},
                {"[::1]", "::1", false},
                {"127.0.0.1", "::1", false},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (hc_proxy_noproxy_match(cases[i].list, cases[i].host) != cases[i].match)
                        fail_msg("no_proxy \"%s\", host %s: %s", cases[i].list, cases[i].host,
                                 cases[i].match ? "no match" : "a match");
}

/* ---- SOCKS4 and SOCKS4a on the wire ---- */

typedef struct peer {
        int fd;                /* listening */
        const uint8_t *expect; /* the SOCKS4 request */
        size_t expect_len;
        uint8_t reply_code; /* 90 granted */
        char request[1024]; /* the HTTP request it got through the tunnel */
        int result;         /* 0, or why it failed */
} peer;

/* Reads exactly n bytes within the socket's timeout. */
static int read_full(int fd, void *buf, size_t n) {
        for (size_t got = 0; got < n;) {
                ssize_t k = read(fd, (char *)buf + got, n - got);
                if (k <= 0)
                        return -1;
                got += (size_t)k;
        }
        return 0;
}

static void *peer_run(void *arg) {
        peer *p = arg;
        p->result = -1;
        int c = accept(p->fd, NULL, NULL);
        if (c < 0)
                return NULL;
        struct timeval tv = {.tv_sec = 5};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        uint8_t got[512];
        if (p->expect_len > sizeof(got) || read_full(c, got, p->expect_len) < 0 ||
            memcmp(got, p->expect, p->expect_len) != 0) {
                p->result = -2;
                close(c);
                return NULL;
        }
        uint8_t reply[8] = {0, p->reply_code, 0, 0, 0, 0, 0, 0};
        if (write(c, reply, sizeof(reply)) != sizeof(reply) || p->reply_code != 90) {
                p->result = p->reply_code == 90 ? -3 : 0;
                close(c);
                return NULL;
        }
        size_t n = 0;
        while (n < sizeof(p->request) - 1 && !strstr(p->request, "\r\n\r\n")) {
                ssize_t k = read(c, p->request + n, sizeof(p->request) - 1 - n);
                if (k <= 0)
                        break;
                n += (size_t)k;
                p->request[n] = '\0';
        }
        static const char answer[] =
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        if (write(c, answer, sizeof(answer) - 1) == (ssize_t)sizeof(answer) - 1)
                p->result = 0;
        close(c);
        return NULL;
}

typedef struct outcome {
        bool done;
        int status;
        int error;
        char message[512];
        char body[16];
} outcome;

static void on_done(paf_response *response, const paf_error *error, void *userdata) {
        outcome *o = userdata;
        o->done = true;
        if (error) {
                o->error = error->code;
                snprintf(o->message, sizeof(o->message), "%s", error->message);
        } else {
                o->status = response->status;
                snprintf(o->body, sizeof(o->body), "%.*s", (int)response->body_size,
                         (const char *)response->body);
        }
        paf_response_free(response);
}

/* GET url through proxy_scheme://127.0.0.1:PORT with -U user, the peer
 * expecting expect and answering reply_code. */
static void through_socks4(const char *proxy_scheme, const char *url, const char *user,
                           const uint8_t *expect, size_t expect_len, uint8_t reply_code, peer *p,
                           outcome *o) {
        *p = (peer){.expect = expect, .expect_len = expect_len, .reply_code = reply_code};
        *o = (outcome){0};
        p->fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(p->fd >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sa);
        assert_int_equal(bind(p->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(p->fd, 1), 0);
        assert_int_equal(getsockname(p->fd, (struct sockaddr *)&sa, &sl), 0);
        pthread_t thread;
        assert_int_equal(pthread_create(&thread, NULL, peer_run, p), 0);

        sd_event *event;
        paf_registry *reg;
        paf_client *client;
        paf_ctx *ctx;
        assert_int_equal(sd_event_new(&event), 0);
        assert_int_equal(paf_registry_new(&reg), 0);
        const char *dir = getenv("PAF_TEST_PLUGINDIR");
        assert_non_null(dir);
        char path[PATH_MAX], proxy[64];
        snprintf(path, sizeof(path), "%s/tcp.so", dir);
        paf_error err = PAF_ERROR_NULL;
        if (paf_registry_load_plugin(reg, path, &err) < 0)
                fail_msg("loading %s: %s", path, err.message);
        assert_int_equal(paf_client_new(reg, event, &client), 0);
        assert_int_equal(paf_ctx_new(&ctx), 0);
        snprintf(proxy, sizeof(proxy), "%s://127.0.0.1:%d", proxy_scheme, ntohs(sa.sin_port));
        assert_int_equal(paf_ctx_set_string(ctx, "http.proxy", proxy), 0);
        if (user)
                assert_int_equal(paf_ctx_set_string(ctx, "http.proxy-user", user), 0);
        paf_client_request req = {.method = "GET", .url = url, .ctx = ctx, .userdata = o};
        assert_int_equal(paf_client_send(client, &req, on_done), 0);
        /* Bounded: 10 s at most. */
        for (int i = 0; i < 1000 && !o->done; i++)
                assert_true(sd_event_run(event, 10 * 1000) >= 0);
        assert_true(o->done);
        paf_ctx_unref(ctx);
        paf_client_free(client);
        paf_registry_unref(reg);
        sd_event_unref(event);
        shutdown(p->fd, SHUT_RDWR); /* a peer never connected to stops waiting */
        assert_int_equal(pthread_join(thread, NULL), 0);
        close(p->fd);
}

static void test_socks4a_request(void **state _unused_) {
        /* VN 4, CONNECT, port 8080, 0.0.0.1, user id "bob", the name. */
        static const uint8_t expect[] = {4,   1,   0x1f, 0x90, 0,   0,   0,   1,   'b',
                                         'o', 'b', 0,    'n',  'a', 'm', 'e', '.', 'e',
                                         'x', 'a', 'm',  'p',  'l', 'e', 0};
        peer p;
        outcome o;
        through_socks4("socks4a", "http://name.example:8080/p", "bob:ignored", expect,
                       sizeof(expect), 90, &p, &o);
        if (o.error)
                fail_msg("socks4a: %s", o.message);
        assert_int_equal(p.result, 0);
        assert_int_equal(o.status, 200);
        assert_string_equal(o.body, "ok");
        /* The request as without a proxy: origin form, the URL's Host. */
        assert_true(strncmp(p.request, "GET /p HTTP/1.1\r\nHost: name.example:8080\r\n", 42) == 0);
        assert_null(strcasestr(p.request, "Proxy-"));
}

static void test_socks4_request(void **state _unused_) {
        /* An address is sent as one, and no user id without -U. */
        static const uint8_t expect[] = {4, 1, 0x00, 0x50, 127, 0, 0, 9, 0};
        peer p;
        outcome o;
        through_socks4("socks4", "http://127.0.0.9/", NULL, expect, sizeof(expect), 90, &p, &o);
        if (o.error)
                fail_msg("socks4: %s", o.message);
        assert_int_equal(p.result, 0);
        assert_int_equal(o.status, 200);
}

static void test_socks4_refused(void **state _unused_) {
        static const uint8_t expect[] = {4, 1, 0x00, 0x50, 127, 0, 0, 9, 0};
        peer p;
        outcome o;
        through_socks4("socks4", "http://127.0.0.9/", NULL, expect, sizeof(expect), 91, &p, &o);
        assert_int_equal(p.result, 0);
        /* curl's 97 for paf get. */
        assert_int_equal(o.error, -EBADE);
        assert_non_null(strstr(o.message, "SOCKS4 connection to 127.0.0.9:80 refused (91"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),           cmocka_unit_test(test_noproxy),
                cmocka_unit_test(test_socks4a_request), cmocka_unit_test(test_socks4_request),
                cmocka_unit_test(test_socks4_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
