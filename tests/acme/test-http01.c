/* tests/acme/test-http01.c — http-01 challenges answered by a real paf HTTP server on
 * 127.0.0.1, the table's handler in front of an application's: byte-exact answers, what reaches
 * the application and what never does, and the application serving on meanwhile. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>
#include <paf/http.h>

#include "../common/paf-test.h"
#include "../../core/acme/http01.h"

#define TOKEN "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
#define KA TOKEN ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
#define PREFIX "/.well-known/acme-challenge/"
#define MAX_HELD 16

typedef struct env {
        sd_event *event;
        paf_acme_http01 *table;
        paf_acme_http01_chain *chain;
        paf_http_server *server;
        int port;
        /* The application. */
        unsigned n_app;
        char last_app_target[512];
        paf_http_request *held[MAX_HELD]; /* /slow…, answered when the test says */
        size_t n_held;
        unsigned n_app_errors;
} env;

static void app_handler(paf_http_request *req, void *userdata) {
        env *v = userdata;
        v->n_app++;
        const char *target = paf_http_request_get_target(req);
        snprintf(v->last_app_target, sizeof(v->last_app_target), "%s", target);
        if (strncmp(target, "/slow", 5) == 0 && v->n_held < MAX_HELD) {
                v->held[v->n_held++] = req;
                return;
        }
        char body[600];
        int n = snprintf(body, sizeof(body), "app %s", target);
        assert_int_equal(paf_http_respond(req, 200, "text/plain", body, (size_t)n), 0);
}

static void app_error_handler(const char *peer, int status, const char *reason, void *userdata) {
        (void)peer;
        (void)status;
        (void)reason;
        ((env *)userdata)->n_app_errors++;
}

static int setup(void **state) {
        env *v = calloc(1, sizeof(*v));
        assert_non_null(v);
        assert_int_equal(sd_event_new(&v->event), 0);
        assert_int_equal(paf_acme_http01_new(&v->table), 0);
        assert_int_equal(
                paf_acme_http01_chain_new(v->table, app_handler, app_error_handler, v, &v->chain),
                0);
        assert_int_equal(paf_http_server_new(v->event, paf_acme_http01_chain_handler,
                                             paf_acme_http01_chain_error_handler, v->chain,
                                             &v->server),
                         0);
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(lfd >= 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        socklen_t slen = sizeof(sin);
        assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &slen), 0);
        v->port = ntohs(sin.sin_port);
        assert_int_equal(listen(lfd, 64), 0);
        paf_listener *lis;
        assert_int_equal(paf_socket_listener_new(v->event, lfd, "tcp", &lis), 0);
        assert_int_equal(paf_http_server_add_listener(v->server, lis), 0);
        assert_int_equal(paf_acme_http01_add(v->table, TOKEN, KA), 0);
        *state = v;
        return 0;
}

static int teardown(void **state) {
        env *v = *state;
        paf_http_server_free(v->server);
        /* The chain outlives the server that calls it; the table, the chain. */
        paf_acme_http01_chain_free(v->chain);
        paf_acme_http01_unref(v->table);
        sd_event_unref(v->event);
        free(v);
        return 0;
}

/* ---- a raw HTTP client on the same loop ---- */

typedef struct conn {
        int fd;
        char buf[64 * 1024];
        size_t len;
        bool eof;
} conn;

static conn *conn_open(env *v) {
        conn *c = calloc(1, sizeof(*c));
        assert_non_null(c);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(c->fd >= 0);
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)v->port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        /* Loopback: the kernel completes it from the backlog. */
        assert_int_equal(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        assert_int_equal(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
        return c;
}

static void conn_send(conn *c, const char *s) {
        size_t len = strlen(s);
        assert_int_equal(send(c->fd, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void conn_pump(conn *c) {
        while (!c->eof && c->len < sizeof(c->buf) - 1) {
                ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
                if (n > 0)
                        c->len += (size_t)n;
                else if (n == 0)
                        c->eof = true;
                else {
                        assert_true(errno == EAGAIN || errno == EINTR);
                        break;
                }
        }
        c->buf[c->len] = '\0';
}

static void conn_close(conn *c) {
        close(c->fd);
        free(c);
}

/* Runs the loop until the server closed c (Connection: close), 3 s at most. */
static void conn_wait_eof(env *v, conn *c) {
        uint64_t end = now_ms() + 3000;
        while (!c->eof && now_ms() < end) {
                assert_true(sd_event_run(v->event, 5 * 1000) >= 0);
                conn_pump(c);
        }
        assert_true(c->eof);
}

/* Runs the loop until c holds n responses' heads, 3 s at most. */
static void conn_wait_heads(env *v, conn *c, unsigned n) {
        uint64_t end = now_ms() + 3000;
        for (;;) {
                unsigned k = 0;
                for (const char *p = c->buf; (p = strstr(p, "\r\n\r\n")); p += 4)
                        k++;
                if (k >= n || now_ms() >= end)
                        break;
                assert_true(sd_event_run(v->event, 5 * 1000) >= 0);
                conn_pump(c);
        }
}

typedef struct response {
        int status;
        char head[4096];
        char *body; /* into the conn's buffer */
        size_t body_len;
} response;

/* One request on a new connection, the whole answer. */
static conn *exchange(env *v, const char *method, const char *target, response *r) {
        conn *c = conn_open(v);
        char req[1024];
        snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: paf.test\r\nConnection: close\r\n\r\n",
                 method, target);
        conn_send(c, req);
        conn_wait_eof(v, c);
        char *end = strstr(c->buf, "\r\n\r\n");
        assert_non_null(end);
        size_t hlen = (size_t)(end - c->buf) + 2;
        assert_true(hlen < sizeof(r->head));
        memcpy(r->head, c->buf, hlen);
        r->head[hlen] = '\0';
        assert_int_equal(sscanf(c->buf, "HTTP/1.1 %d ", &r->status), 1);
        r->body = end + 4;
        r->body_len = c->len - (size_t)(r->body - c->buf);
        return c;
}

/* The value of a header field in a response head, or NULL. */
static const char *header(const response *r, const char *name, char *buf, size_t size) {
        char pat[128];
        snprintf(pat, sizeof(pat), "\r\n%s: ", name);
        const char *p = strcasestr(r->head, pat);
        if (!p)
                return NULL;
        p += strlen(pat);
        size_t n = strcspn(p, "\r\n");
        assert_true(n < size);
        memcpy(buf, p, n);
        buf[n] = '\0';
        return buf;
}

static void assert_status(env *v, const char *method, const char *target, int status) {
        response r;
        conn *c = exchange(v, method, target, &r);
        if (r.status != status)
                fail_msg("%s %s: %d, expected %d", method, target, r.status, status);
        conn_close(c);
}

/* ---- the tests ---- */

static void test_challenge_answered(void **state) {
        env *v = *state;
        response r;
        conn *c = exchange(v, "GET", PREFIX TOKEN, &r);
        char buf[128];
        assert_int_equal(r.status, 200);
        assert_string_equal(header(&r, "Content-Type", buf, sizeof(buf)),
                            "application/octet-stream");
        char want[16];
        snprintf(want, sizeof(want), "%zu", strlen(KA));
        assert_string_equal(header(&r, "Content-Length", buf, sizeof(buf)), want);
        /* Byte-exact: no newline, nothing else. */
        assert_int_equal(r.body_len, strlen(KA));
        assert_memory_equal(r.body, KA, strlen(KA));
        assert_int_equal(v->n_app, 0);
        conn_close(c);

        /* Absolute form and a query: still the challenge. */
        c = exchange(v, "GET", "http://paf.test" PREFIX TOKEN "?x=1", &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, strlen(KA));
        assert_memory_equal(r.body, KA, strlen(KA));
        conn_close(c);
        assert_int_equal(v->n_app, 0);
}

static void test_head(void **state) {
        env *v = *state;
        response r;
        conn *c = exchange(v, "HEAD", PREFIX TOKEN, &r);
        char buf[128];
        assert_int_equal(r.status, 200);
        assert_string_equal(header(&r, "Content-Type", buf, sizeof(buf)),
                            "application/octet-stream");
        char want[16];
        snprintf(want, sizeof(want), "%zu", strlen(KA));
        assert_string_equal(header(&r, "Content-Length", buf, sizeof(buf)), want);
        assert_int_equal(r.body_len, 0);
        conn_close(c);
        assert_status(v, "HEAD", PREFIX "unknown", 404);
        assert_int_equal(v->n_app, 0);
}

static void test_other_paths_reach_app(void **state) {
        env *v = *state;
        static const char *const targets[] = {
                "/",
                "/index.html",
                "/.well-known/other",
                "/.well-known/acme-challengeX/" TOKEN,
                "/" TOKEN,
                "/x/.well-known/acme-challenge/" TOKEN,
        };
        for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
                response r;
                conn *c = exchange(v, "GET", targets[i], &r);
                assert_int_equal(r.status, 200);
                char want[600];
                snprintf(want, sizeof(want), "app %s", targets[i]);
                assert_int_equal(r.body_len, strlen(want));
                assert_memory_equal(r.body, want, strlen(want));
                assert_int_equal(v->n_app, i + 1);
                conn_close(c);
        }
        /* POST elsewhere is the application's too. */
        assert_status(v, "POST", "/form", 200);
        assert_int_equal(v->n_app_errors, 0);
}

static void test_remove(void **state) {
        env *v = *state;
        assert_status(v, "GET", PREFIX TOKEN, 200);
        assert_int_equal(paf_acme_http01_remove(v->table, TOKEN), 0);
        assert_int_equal(paf_acme_http01_count(v->table), 0);
        assert_status(v, "GET", PREFIX TOKEN, 404);
        assert_int_equal(paf_acme_http01_remove(v->table, TOKEN), -ENOENT);
        /* Re-added with a new value: the new one is served. */
        assert_int_equal(paf_acme_http01_add(v->table, TOKEN, TOKEN ".other"), 0);
        assert_int_equal(paf_acme_http01_add(v->table, TOKEN, TOKEN ".newer"), 0);
        assert_int_equal(paf_acme_http01_count(v->table), 1);
        response r;
        conn *c = exchange(v, "GET", PREFIX TOKEN, &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, strlen(TOKEN ".newer"));
        assert_memory_equal(r.body, TOKEN ".newer", r.body_len);
        conn_close(c);
        assert_int_equal(v->n_app, 0);
}

static void test_methods(void **state) {
        env *v = *state;
        static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS"};
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
                response r;
                conn *c = exchange(v, methods[i], PREFIX TOKEN, &r);
                char buf[128];
                assert_int_equal(r.status, 405);
                assert_string_equal(header(&r, "Allow", buf, sizeof(buf)), "GET, HEAD");
                conn_close(c);
        }
        /* With a body the client sends: answered, and the body goes. */
        conn *c = conn_open(v);
        conn_send(c,
                  "POST " PREFIX TOKEN " HTTP/1.1\r\nHost: paf.test\r\nContent-Length: 5\r\n\r\n"
                  "hello"
                  "GET " PREFIX TOKEN " HTTP/1.1\r\nHost: paf.test\r\nConnection: close\r\n\r\n");
        conn_wait_eof(v, c);
        assert_true(strncmp(c->buf, "HTTP/1.1 405 ", 13) == 0);
        assert_non_null(strstr(c->buf, "HTTP/1.1 200 "));
        assert_true(c->len > strlen(KA) && strcmp(c->buf + c->len - strlen(KA), KA) == 0);
        conn_close(c);
        assert_int_equal(v->n_app, 0);
}

static void test_bad_tokens(void **state) {
        env *v = *state;
        /* Under the challenge path, anything that is not a known token: 404, never the app. */
        static const char *const targets[] = {
                PREFIX,
                "/.well-known/acme-challenge",
                PREFIX "tok$en",
                PREFIX "tok.en",
                PREFIX "tok%41en",
                PREFIX TOKEN "/",
                PREFIX TOKEN "/x",
                PREFIX "a=",
                PREFIX "%",
        };
        for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
                assert_status(v, "GET", targets[i], 404);
        assert_int_equal(v->n_app, 0);

        /* And the table takes only base64url tokens and matching key authorizations. */
        static const char *const bad[] = {"", "a.b", "a/b", "..", "a=", "a b", "a%2e", "ü"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char ka[64];
                snprintf(ka, sizeof(ka), "%s.thumb", bad[i]);
                assert_int_equal(paf_acme_http01_add(v->table, bad[i], ka), -EINVAL);
        }
        char longtok[PAF_ACME_TOKEN_MAX + 2];
        memset(longtok, 'a', sizeof(longtok) - 1);
        longtok[sizeof(longtok) - 1] = '\0';
        assert_int_equal(paf_acme_http01_add(v->table, longtok, "x"), -EINVAL);
        longtok[PAF_ACME_TOKEN_MAX] = '\0';
        assert_true(paf_acme_http01_token_is_valid(longtok));
        assert_int_equal(paf_acme_http01_add(v->table, "tok", "other.thumb"), -EINVAL);
        assert_int_equal(paf_acme_http01_add(v->table, "tok", "tok."), -EINVAL);
        assert_int_equal(paf_acme_http01_add(v->table, "tok", "tok.thu.mb"), -EINVAL);
        assert_int_equal(paf_acme_http01_add(v->table, "tok", "tok.thumb\n"), -EINVAL);
        assert_int_equal(paf_acme_http01_count(v->table), 1);
}

static void test_traversal(void **state) {
        env *v = *state;
        /* Ways to name something under the challenge directory, or out of it
         * through it: none reaches the application (which could map them to
         * files), none is answered with anything but 404. */
        static const char *const targets[] = {
                PREFIX "../../../etc/passwd",
                PREFIX "..%2f..%2f..%2fetc%2fpasswd",
                PREFIX "%2e%2e/%2e%2e/etc/passwd",
                PREFIX "..",
                "/%2Ewell-known/acme-challenge/" TOKEN,
                "/.well-known/acme-challenge%2F" TOKEN,
                "/.well-known/%61cme-challenge/" TOKEN,
                "//.well-known//acme-challenge/" TOKEN,
                "/./.well-known/./acme-challenge/" TOKEN,
                "/x/../.well-known/acme-challenge/" TOKEN,
                "/%zz/../.well-known/acme-challenge/" TOKEN,
                "/%00/../.well-known/acme-challenge/x",
                "http://paf.test/x/..%2F.well-known/acme-challenge/" TOKEN,
        };
        for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
                response r;
                conn *c = exchange(v, "GET", targets[i], &r);
                if (r.status != 404)
                        fail_msg("GET %s: %d", targets[i], r.status);
                assert_null(memmem(r.body, r.body_len, "root:", 5));
                conn_close(c);
                if (v->n_app != 0)
                        fail_msg("GET %s reached the application", targets[i]);
        }
}

static unsigned churn_failures;

static void *churn(void *userdata) {
        env *v = userdata;
        /* Another thread (an ACME client) changing the table meanwhile; no
         * cmocka assertion here: they jump, and only on the main thread. */
        for (int i = 0; i < 2000; i++) {
                char tok[32], ka[64];
                snprintf(tok, sizeof(tok), "churn%d", i % 7);
                snprintf(ka, sizeof(ka), "%s.thumb%d", tok, i);
                if (paf_acme_http01_add(v->table, tok, ka) != 0)
                        churn_failures++;
                if (i % 2)
                        (void)paf_acme_http01_remove(v->table, tok);
        }
        return NULL;
}

static void test_app_keeps_serving(void **state) {
        env *v = *state;
        /* Application requests in flight (held by the app) while challenges
         * are validated, pebble style: several fetches at once. */
        enum { N_SLOW = 6, N_CHALLENGES = 12 };
        conn *slow[N_SLOW];
        for (int i = 0; i < N_SLOW; i++) {
                slow[i] = conn_open(v);
                char req[128];
                snprintf(req, sizeof(req),
                         "GET /slow%d HTTP/1.1\r\nHost: paf.test\r\nConnection: close\r\n\r\n", i);
                conn_send(slow[i], req);
        }
        uint64_t end = now_ms() + 3000;
        while (v->n_held < N_SLOW && now_ms() < end)
                assert_true(sd_event_run(v->event, 5 * 1000) >= 0);
        assert_int_equal(v->n_held, N_SLOW);

        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, churn, v), 0);
        conn *ch[N_CHALLENGES];
        for (int i = 0; i < N_CHALLENGES; i++) {
                ch[i] = conn_open(v);
                conn_send(ch[i], "GET " PREFIX TOKEN
                                 " HTTP/1.1\r\nHost: paf.test\r\nConnection: close\r\n\r\n");
        }
        for (int i = 0; i < N_CHALLENGES; i++) {
                conn_wait_eof(v, ch[i]);
                assert_true(strncmp(ch[i]->buf, "HTTP/1.1 200 ", 13) == 0);
                assert_true(strcmp(ch[i]->buf + ch[i]->len - strlen(KA), KA) == 0);
                conn_close(ch[i]);
        }
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_int_equal(churn_failures, 0);

        /* Keep-alive: challenge, application, challenge on one connection, in order. */
        conn *ka = conn_open(v);
        conn_send(ka, "GET " PREFIX TOKEN " HTTP/1.1\r\nHost: paf.test\r\n\r\n"
                      "GET /page HTTP/1.1\r\nHost: paf.test\r\n\r\n"
                      "GET " PREFIX TOKEN " HTTP/1.1\r\nHost: paf.test\r\n\r\n");
        conn_wait_heads(v, ka, 3);
        /* And the last body, which may come in a later read. */
        for (uint64_t stop = now_ms() + 3000; now_ms() < stop;) {
                const char *last = strstr(ka->buf, "app /page");
                if (last && strstr(last, KA))
                        break;
                assert_true(sd_event_run(v->event, 5 * 1000) >= 0);
                conn_pump(ka);
        }
        const char *a = strstr(ka->buf, KA);
        const char *b = strstr(ka->buf, "app /page");
        assert_non_null(a);
        assert_non_null(b);
        assert_true(a < b);
        assert_non_null(strstr(b, KA));
        assert_false(ka->eof);
        conn_close(ka);

        /* The held requests were never in the way, and still complete. */
        assert_int_equal(v->n_held, N_SLOW);
        for (int i = 0; i < N_SLOW; i++) {
                char body[32];
                int n = snprintf(body, sizeof(body), "slow %d done", i);
                assert_int_equal(paf_http_respond(v->held[i], 200, "text/plain", body, (size_t)n),
                                 0);
        }
        for (int i = 0; i < N_SLOW; i++) {
                conn_wait_eof(v, slow[i]);
                char body[32];
                snprintf(body, sizeof(body), "slow %d done", i);
                assert_true(strncmp(slow[i]->buf, "HTTP/1.1 200 ", 13) == 0);
                assert_non_null(strstr(slow[i]->buf, body));
                conn_close(slow[i]);
        }
        assert_int_equal(v->n_app, N_SLOW + 1);
}

/* curl, a real client, gets the key authorization byte for byte. */
static void test_curl(void **state) {
        env *v = *state;
        char dir[] = "/tmp/paf-test-http01-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char out[64], meta[64], url[256];
        snprintf(out, sizeof(out), "%s/body", dir);
        snprintf(meta, sizeof(meta), "%s/meta", dir);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d" PREFIX TOKEN, v->port);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int fd = open(meta, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (fd < 0 || dup2(fd, 1) < 0)
                        _exit(126);
                execlp("curl", "curl", "-sS", "--max-time", "5", "-o", out, "-w",
                       "%{http_code} %{content_type}", url, (char *)NULL);
                _exit(127);
        }
        /* The server runs on this thread: serve while curl runs, 6 s at most. */
        int st = -1;
        uint64_t end = now_ms() + 6000;
        while (now_ms() < end) {
                pid_t w = waitpid(pid, &st, WNOHANG);
                assert_true(w >= 0);
                if (w == pid)
                        break;
                assert_true(sd_event_run(v->event, 5 * 1000) >= 0);
        }
        if (now_ms() >= end) {
                kill(pid, SIGKILL);
                waitpid(pid, &st, 0);
                fail_msg("curl did not finish");
        }
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) == 127)
                skip();
        assert_int_equal(WEXITSTATUS(st), 0);
        char buf[512] = "";
        FILE *f = fopen(meta, "re");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof(buf), f));
        fclose(f);
        assert_string_equal(buf, "200 application/octet-stream");
        f = fopen(out, "re");
        assert_non_null(f);
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        assert_int_equal(n, strlen(KA));
        assert_memory_equal(buf, KA, n);
        unlink(out);
        unlink(meta);
        rmdir(dir);
        assert_int_equal(v->n_app, 0);
}

/* The table outlives whoever drops it first; NULLs are harmless. */
static void test_lifetime(void **state) {
        (void)state;
        paf_acme_http01 *t;
        assert_int_equal(paf_acme_http01_new(&t), 0);
        assert_int_equal(paf_acme_http01_add(t, "a", "a.b"), 0);
        paf_acme_http01_chain *c;
        assert_int_equal(paf_acme_http01_chain_new(t, NULL, NULL, NULL, &c), -EINVAL);
        assert_int_equal(paf_acme_http01_chain_new(t, app_handler, NULL, NULL, &c), 0);
        paf_acme_http01_unref(t);
        paf_acme_http01_chain_error_handler("peer", 400, "bad", c); /* no error handler: nothing */
        assert_null(paf_acme_http01_chain_free(c));
        assert_null(paf_acme_http01_unref(NULL));
        assert_null(paf_acme_http01_chain_free(NULL));
        assert_false(paf_acme_http01_handle(NULL, NULL));
        assert_int_equal(paf_acme_http01_new(NULL), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_challenge_answered, setup, teardown),
                cmocka_unit_test_setup_teardown(test_head, setup, teardown),
                cmocka_unit_test_setup_teardown(test_other_paths_reach_app, setup, teardown),
                cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
                cmocka_unit_test_setup_teardown(test_methods, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_tokens, setup, teardown),
                cmocka_unit_test_setup_teardown(test_traversal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_app_keeps_serving, setup, teardown),
                cmocka_unit_test_setup_teardown(test_curl, setup, teardown),
                cmocka_unit_test(test_lifetime),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
