/* tools/bench.c — `paf bench URL`: many connections against a server over any transport the
 * context resolves, every request timed, percentiles and a histogram, every failure explained. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>

#include "config.h"

#include "bench-hist.h"
#include "core/http/head.h"
#include "paf-tool.h"

#define MAX_DEPTH 256
#define MAX_THREADS 256
#define MAX_GROUPS 32
#define MAX_HEADERS 64
#define USEC_PER_SEC UINT64_C(1000000)
/* A connection that cannot be made waits this long before the next try, so
 * that a refused port does not spin. */
#define RECONNECT_DELAY_USEC (10 * 1000)

typedef enum fail_kind {
        FAIL_REFUSED,
        FAIL_RESET,
        FAIL_TIMEOUT,
        FAIL_TLS,
        FAIL_STATUS,
        FAIL_SHORT_BODY,
        FAIL_PARSE,
        FAIL_CONNECT,
        _FAIL_MAX,
} fail_kind;

static const char *const fail_names[_FAIL_MAX] = {
        [FAIL_REFUSED] = "connection refused",
        [FAIL_RESET] = "reset",
        [FAIL_TIMEOUT] = "timeout",
        [FAIL_TLS] = "TLS failure",
        [FAIL_STATUS] = "unexpected status",
        [FAIL_SHORT_BODY] = "short body",
        [FAIL_PARSE] = "parse error",
        [FAIL_CONNECT] = "connect failed",
};

typedef struct fail_group {
        fail_kind kind;
        char detail[200];
        uint64_t count;
        uint64_t first_usec; /* since the start */
} fail_group;

typedef struct bench bench;
typedef struct worker worker;

typedef struct inflight {
        uint64_t intended; /* when it was meant to go (-R), or when it went */
        uint64_t sent;     /* when it went: the timeout counts from here */
        uint64_t connect_usec; /* the connection's setup, for the first request on it; else 0 */
} inflight;

typedef struct conn {
        worker *w;
        paf_flow *flow;
        paf_connect *connecting;
        sd_event_source *timer; /* the request timeout, or the rate wait, or a reconnect */
        llhttp_t parser;
        uint64_t connect_start;
        uint64_t connect_usec; /* to give the next request sent */
        inflight ring[MAX_DEPTH];
        unsigned head, n_inflight;
        uint64_t head_first_byte; /* 0: none yet */
        uint64_t read_usec;       /* when the bytes being parsed arrived */
        uint64_t head_bytes;
        bool head_done;
        /* Answers with a plain head (fast_head()) are read without llhttp:
         * the bytes of the body still owed; llhttp_mid while llhttp is
         * inside an answer, where it has to go on. */
        bool fast_body, fast_close, llhttp_mid;
        uint64_t fast_left;
        int status; /* of the answer being read */
        bool close_after; /* the server said Connection: close */
        bool parse_failed;
        bool active; /* still has work: false once its share is done */
        bool waiting_slot; /* a -R slot in the future: the timer sends it */
        bool reserved;     /* --new-connection: the request this connection is made for */
        bool fill_queued;  /* on the worker's list of connections to refill */
        struct conn *fill_next;
        uint64_t slot_at;
        struct iovec iov[MAX_DEPTH];
} conn;

struct worker {
        bench *b;
        unsigned id;
        pthread_t thread;
        sd_event *event;
        paf_client *client;
        paf_ctx *ctx;
        conn *conns;
        unsigned n_conns, n_active;
        bench_hist *lat, *connect, *ttfb;
        _Atomic uint64_t done, failed; /* read by the progress line */
        uint64_t bytes;
        uint64_t status[600];
        fail_group groups[MAX_GROUPS];
        unsigned n_groups;
        uint64_t slot; /* -R: the next slot of this thread */
        double interval_usec;
        bool stopping;
        bool finished; /* every connection is idle: the loop stops */
        sd_event_source *deadline;
        conn *fill_head; /* answered in this wakeup: refilled after it */
        char *log;
        size_t log_len, log_cap;
        uint64_t connections;
        int exit_error;
};

struct bench {
        const char *url;
        unsigned conns, threads, depth;
        uint64_t total; /* -n; 0 with -z */
        uint64_t duration_usec;
        double rate;
        bool new_connection;
        bool head;
        uint64_t timeout_usec;
        bool expect[600];
        const char *expect_text;
        char *request;
        size_t request_len;
        paf_registry *reg;
        paf_client_options copts;
        uint64_t start; /* CLOCK_MONOTONIC µs */
        uint64_t end;
        _Atomic uint64_t claimed;
        atomic_bool interrupted; /* SIGINT/SIGTERM: nothing new is sent */
        worker *workers;
        int done_fd;
        FILE *log;
        pthread_mutex_t log_lock;
        char *endpoint; /* "tcp 127.0.0.1:8080" */
};

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- results ---- */

static void log_flush(worker *w, bool force) {
        bench *b = w->b;
        if (!b->log || w->log_len == 0 || (!force && w->log_len < 64 * 1024))
                return;
        pthread_mutex_lock(&b->log_lock);
        fwrite(w->log, 1, w->log_len, b->log);
        pthread_mutex_unlock(&b->log_lock);
        w->log_len = 0;
}

static void log_line(worker *w, const inflight *r, uint64_t ttfb, uint64_t total, int status,
                     uint64_t bytes, const char *error) {
        if (!w->b->log)
                return;
        if (w->log_cap - w->log_len < 512) {
                size_t cap = w->log_cap ? w->log_cap * 2 : 128 * 1024;
                char *p = realloc(w->log, cap);
                if (!p)
                        return;
                w->log = p;
                w->log_cap = cap;
        }
        int n = snprintf(w->log + w->log_len, w->log_cap - w->log_len,
                         "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %d %" PRIu64 " %s\n",
                         r->intended - w->b->start, r->connect_usec, ttfb, total, status, bytes,
                         error ? error : "-");
        if (n > 0)
                w->log_len += (size_t)n;
        log_flush(w, false);
}

/* One more failure of kind and detail, in its group. */
static void group_count(worker *w, fail_kind kind, const char *detail, uint64_t now) {
        atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
        fail_group *g = NULL;
        for (unsigned i = 0; i < w->n_groups && !g; i++)
                if (w->groups[i].kind == kind && strcmp(w->groups[i].detail, detail ? detail : "") == 0)
                        g = &w->groups[i];
        if (!g && w->n_groups < MAX_GROUPS) {
                g = &w->groups[w->n_groups++];
                *g = (fail_group){.kind = kind, .first_usec = now - w->b->start};
                snprintf(g->detail, sizeof(g->detail), "%s", detail ? detail : "");
        }
        if (!g)
                g = &w->groups[MAX_GROUPS - 1]; /* counted with the last kind seen */
        g->count++;
}

static void fail(worker *w, const inflight *r, fail_kind kind, const char *detail) {
        uint64_t now = now_usec();
        group_count(w, kind, detail, now);
        if (r) {
                char what[240];
                snprintf(what, sizeof(what), "%s%s%s", fail_names[kind], detail && *detail ? ":" : "",
                         detail ? detail : "");
                for (char *p = what; *p; p++)
                        if (*p == ' ')
                                *p = '_';
                log_line(w, r, 0, now > r->intended ? now - r->intended : 0, 0, 0, what);
        }
}

/* ---- connections ---- */

static void conn_connect(conn *c);
static void conn_fill(conn *c);

static bool claim(worker *w) {
        bench *b = w->b;
        if (w->stopping || atomic_load_explicit(&b->interrupted, memory_order_relaxed))
                return false;
        if (b->total == 0)
                return true;
        return atomic_fetch_add_explicit(&b->claimed, 1, memory_order_relaxed) < b->total;
}

static void worker_conn_idle(worker *w, conn *c) {
        if (!c->active)
                return;
        c->active = false;
        if (--w->n_active == 0)
                w->finished = true;
}

static void on_closed(paf_flow *flow, void *userdata) {
        (void)flow;
        (void)userdata;
}

static void conn_drop(conn *c) {
        if (c->connecting) {
                paf_connect_cancel(c->connecting);
                c->connecting = NULL;
        }
        if (c->flow) {
                paf_flow_close(c->flow, on_closed, NULL);
                c->flow = NULL;
        }
        c->n_inflight = 0;
        c->head = 0;
        c->head_first_byte = 0;
        c->head_bytes = 0;
        c->close_after = false;
        c->parse_failed = false;
        c->waiting_slot = false;
        if (c->timer)
                sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
}

/* Every request still owed on a dead connection fails: the first one with
 * what killed it, the others as reset. */
static void conn_fail_all(conn *c, fail_kind kind, const char *detail) {
        worker *w = c->w;
        for (unsigned i = 0; i < c->n_inflight; i++)
                fail(w, &c->ring[(c->head + i) % MAX_DEPTH], i == 0 ? kind : FAIL_RESET,
                     i == 0 ? detail : "");
        c->n_inflight = 0;
}

/* A connection could not be made: the requests owed for it fail in its
 * place, those a closed one left or the next one. */
static void conn_fail_owed(conn *c, fail_kind kind, const char *detail) {
        if (c->n_inflight > 0) {
                conn_fail_all(c, kind, detail);
        } else if (c->reserved || claim(c->w)) {
                c->reserved = false;
                inflight r = {.intended = c->connect_start};
                fail(c->w, &r, kind, detail);
        }
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void conn_arm(conn *c, uint64_t at) {
        if (!c->timer) {
                if (sd_event_add_time(c->w->event, &c->timer, CLOCK_MONOTONIC, at, 1, on_timer, c) < 0)
                        return;
        } else {
                sd_event_source_set_time(c->timer, at);
        }
        sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
}

/* After a failure: a new connection, unless the run is over. */
static void conn_restart(conn *c, bool delay) {
        conn_drop(c);
        if (c->w->stopping || atomic_load(&c->w->b->interrupted) ||
            (c->w->b->total && atomic_load(&c->w->b->claimed) >= c->w->b->total)) {
                worker_conn_idle(c->w, c);
                return;
        }
        /* A request is taken before a new connection is made for it, so
         * that none is made for nothing (--new-connection: one each). */
        if (!c->reserved) {
                if (!claim(c->w)) {
                        worker_conn_idle(c->w, c);
                        return;
                }
                c->reserved = true;
        }
        if (delay)
                conn_arm(c, now_usec() + RECONNECT_DELAY_USEC);
        else
                conn_connect(c);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        conn *c = userdata;
        (void)s;
        (void)usec;
        if (c->waiting_slot) {
                c->waiting_slot = false;
                conn_fill(c);
                return 0;
        }
        if (c->n_inflight > 0 && c->flow) {
                /* Armed for an older request: the oldest one now may still
                 * have time. */
                uint64_t deadline = c->ring[c->head].sent + c->w->b->timeout_usec;
                uint64_t now = now_usec();
                if (deadline > now) {
                        conn_arm(c, deadline);
                        return 0;
                }
                char d[64];
                snprintf(d, sizeof(d), "no answer in %" PRIu64 " ms", c->w->b->timeout_usec / 1000);
                conn_fail_all(c, FAIL_TIMEOUT, d);
                conn_restart(c, false);
                return 0;
        }
        if (c->connecting) {
                /* The connect itself timed out: the requests owed for it fail. */
                char d[64];
                snprintf(d, sizeof(d), "connect: no answer in %" PRIu64 " ms",
                         c->w->b->timeout_usec / 1000);
                conn_fail_owed(c, FAIL_TIMEOUT, d);
                conn_restart(c, false);
                return 0;
        }
        if (!c->flow)
                conn_connect(c); /* the reconnect delay ran out */
        return 0;
}

static void conn_request_done(conn *c) {
        worker *w = c->w;
        bench *b = w->b;
        inflight *r = &c->ring[c->head];
        /* When its last bytes arrived: one clock read per delivery. */
        uint64_t now = c->read_usec;
        uint64_t total = now > r->intended ? now - r->intended : 0;
        uint64_t ttfb = c->head_first_byte > r->intended ? c->head_first_byte - r->intended : 0;
        int status = c->status;
        if (status >= 0 && status < 600)
                w->status[status]++;
        w->bytes += c->head_bytes;
        if (status < 0 || status >= 600 || !b->expect[status]) {
                char d[32];
                snprintf(d, sizeof(d), "%d", status);
                /* Counted as a failure, timed as an answer. */
                group_count(w, FAIL_STATUS, d, now);
                log_line(w, r, ttfb, total, status, c->head_bytes, "unexpected_status");
        } else {
                atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
                log_line(w, r, ttfb, total, status, c->head_bytes, NULL);
        }
        bench_hist_record(w->lat, total);
        bench_hist_record(w->ttfb, ttfb);
        c->head = (c->head + 1) % MAX_DEPTH;
        c->n_inflight--;
        c->head_first_byte = 0;
        c->head_bytes = 0;
}

/* ---- the response parser's callbacks ---- */

static int on_message_begin(llhttp_t *p) {
        conn *c = p->data;
        c->llhttp_mid = true;
        if (c->head_first_byte == 0)
                c->head_first_byte = c->read_usec;
        return 0;
}

static int on_headers_complete(llhttp_t *p) {
        conn *c = p->data;
        /* A HEAD answer has no body, whatever its Content-Length says. */
        return c->w->b->head ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
        conn *c = p->data;
        (void)at;
        c->head_bytes += len;
        return 0;
}

static int on_message_complete(llhttp_t *p) {
        conn *c = p->data;
        c->llhttp_mid = false;
        c->status = p->status_code;
        if (c->n_inflight == 0) {
                c->parse_failed = true; /* an answer nobody asked for */
                return HPE_USER;
        }
        /* 1xx interim answers are not the answer. */
        if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101)
                return 0;
        if (!llhttp_should_keep_alive(p))
                c->close_after = true;
        conn_request_done(c);
        return 0;
}

static llhttp_settings_t parser_settings;

/* ---- plain answer heads, without llhttp ---- */

/* RFC 9110 §5.6.2 tchar, by byte. */
static unsigned char tchar[256];

static void tchar_init(void) {
        for (int ch = 0; ch < 256; ch++)
                tchar[ch] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                            (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Whether the comma-separated list v[0, n) has the token "close". */
static bool list_has_close(const char *v, size_t n) {
        size_t i = 0;
        while (i < n) {
                while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
                        i++;
                size_t start = i;
                while (i < n && v[i] != ',')
                        i++;
                size_t end = i;
                while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
                        end--;
                if (http_name_is(v + start, end - start, "close", 5))
                        return true;
        }
        return false;
}

/* The end of the line at p[i] (its CR, followed by LF), with no control
 * character before it, or 0. */
static size_t line_end(const char *p, size_t n, size_t i) {
        const char *cr = memchr(p + i, '\r', n - i);
        if (!cr || (size_t)(cr - p) + 1 >= n || cr[1] != '\n')
                return 0;
        size_t end = (size_t)(cr - p);
        return http_find_ctl(p + i, end - i) == end - i ? end : 0;
}

/*
 * The length of a plain HTTP/1.1 answer's head at p (a final status with a
 * body, a single decimal Content-Length, nothing the framing rules of RFC
 * 9112 §6 make more of), with its status, length and whether it closes;
 * 0 for anything else, which llhttp then reads from the same byte. Most
 * answers under load are such, and the head is most of a small answer's
 * parsing: in one pass it costs a fraction of the state machine's.
 */
static size_t fast_head(const char *p, size_t n, int *status, uint64_t *length, bool *close) {
        if (n < 17 || memcmp(p, "HTTP/1.1 ", 9) != 0)
                return 0;
        if (p[9] < '2' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
            p[12] != ' ')
                return 0;
        int st = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
        if (st == 204 || st == 304)
                return 0;
        size_t i = line_end(p, n, 13);
        if (i == 0)
                return 0;
        i += 2;
        bool have_length = false, closes = false;
        uint64_t len = 0;
        for (;;) {
                if (i + 2 > n)
                        return 0;
                if (p[i] == '\r') {
                        if (p[i + 1] != '\n' || !have_length)
                                return 0;
                        *status = st;
                        *length = len;
                        *close = closes;
                        return i + 2;
                }
                size_t name = i;
                while (i < n && tchar[(unsigned char)p[i]])
                        i++;
                if (i == name || i >= n || p[i] != ':')
                        return 0;
                size_t name_len = i - name;
                i++;
                while (i < n && (p[i] == ' ' || p[i] == '\t'))
                        i++;
                size_t value = i, end = i < n ? line_end(p, n, i) : 0;
                if (end == 0)
                        return 0;
                i = end + 2;
                while (end > value && (p[end - 1] == ' ' || p[end - 1] == '\t'))
                        end--;
                if (http_name_is(p + name, name_len, "content-length", 14)) {
                        if (have_length || end == value || end - value > 15)
                                return 0;
                        for (size_t k = value; k < end; k++) {
                                if (p[k] < '0' || p[k] > '9')
                                        return 0;
                                len = len * 10 + (uint64_t)(p[k] - '0');
                        }
                        have_length = true;
                } else if (http_name_is(p + name, name_len, "transfer-encoding", 17) ||
                           http_name_is(p + name, name_len, "upgrade", 7))
                        return 0;
                else if (http_name_is(p + name, name_len, "connection", 10))
                        closes = closes || list_has_close(p + value, end - value);
        }
}

/* What on_message_complete() does for an answer read without llhttp. */
static bool fast_complete(conn *c) {
        c->fast_body = false;
        /* Its Connection: close counts once it is all read, as llhttp's. */
        if (c->fast_close)
                c->close_after = true;
        c->fast_close = false;
        if (c->n_inflight == 0) {
                c->parse_failed = true; /* an answer nobody asked for */
                return false;
        }
        conn_request_done(c);
        return true;
}

/* Reads answers from data while they are plain; what it leaves (from an
 * answer that is not) goes to llhttp. */
static size_t fast_read(conn *c, const char *data, size_t len) {
        size_t at = 0;
        while (at < len && !c->llhttp_mid && !c->parse_failed) {
                if (c->fast_body) {
                        uint64_t k = len - at < c->fast_left ? len - at : c->fast_left;
                        c->head_bytes += k;
                        c->fast_left -= k;
                        at += (size_t)k;
                        if (c->fast_left == 0 && (!fast_complete(c) || c->close_after))
                                return len; /* nothing is read after a closing answer */
                        continue;
                }
                int status;
                uint64_t length;
                bool close;
                size_t n = fast_head(data + at, len - at, &status, &length, &close);
                if (n == 0)
                        break;
                if (c->head_first_byte == 0)
                        c->head_first_byte = c->read_usec;
                at += n;
                c->status = status;
                c->fast_close = close;
                /* A HEAD answer has no body, whatever its Content-Length says. */
                c->fast_left = c->w->b->head ? 0 : length;
                c->fast_body = true;
                if (c->fast_left == 0 && (!fast_complete(c) || c->close_after))
                        return len;
        }
        return at;
}

static void on_read(paf_flow *flow, const void *data, size_t len, int error, void *userdata) {
        conn *c = userdata;
        (void)flow;
        worker *w = c->w;
        if (error < 0 || len == 0) {
                if (c->n_inflight == 0) {
                        /* An idle connection the server closed: a new one. */
                        conn_restart(c, false);
                        return;
                }
                fail_kind kind = FAIL_RESET;
                char d[160] = "";
                if (error < 0) {
                        snprintf(d, sizeof(d), "%s", strerror(-error));
                        if (error != -ECONNRESET && error != -EPIPE)
                                kind = FAIL_RESET;
                } else if (llhttp_finish(&c->parser) != HPE_OK || c->head_first_byte) {
                        kind = FAIL_SHORT_BODY;
                        snprintf(d, sizeof(d), "the connection closed after %" PRIu64 " body bytes",
                                 c->head_bytes);
                } else {
                        snprintf(d, sizeof(d), "closed by the server before an answer");
                }
                conn_fail_all(c, kind, d);
                conn_restart(c, false);
                return;
        }
        c->read_usec = now_usec();
        size_t fast = fast_read(c, data, len);
        llhttp_errno_t e = HPE_OK;
        if (fast < len && !c->parse_failed)
                e = llhttp_execute(&c->parser, (const char *)data + fast, len - fast);
        if (e != HPE_OK || c->parse_failed) {
                char d[160];
                snprintf(d, sizeof(d), "%s", c->parse_failed ? "an answer to no request"
                                                             : llhttp_get_error_reason(&c->parser));
                conn_fail_all(c, FAIL_PARSE, d);
                conn_restart(c, false);
                return;
        }
        if (c->close_after || (w->b->new_connection && c->n_inflight == 0)) {
                /* Requests pipelined behind an answer with Connection: close
                 * were not served (RFC 9112 §9.6): they go again, on a new
                 * connection, still timed from when they were first meant. */
                unsigned keep = c->n_inflight, head = c->head;
                if (keep == 0) {
                        /* A new connection only if there is more to send. */
                        conn_restart(c, false);
                        return;
                }
                conn_drop(c);
                c->n_inflight = keep;
                c->head = head;
                conn_connect(c);
                return;
        }
        if (!c->fill_queued) {
                c->fill_queued = true;
                c->fill_next = w->fill_head;
                w->fill_head = c;
        }
}

/* The connections answered in one wakeup send their next requests
 * together, once the wakeup's reads are done. */
static void worker_fill(worker *w) {
        while (w->fill_head) {
                conn *c = w->fill_head;
                w->fill_head = c->fill_next;
                c->fill_queued = false;
                conn_fill(c);
        }
}

static void on_written(paf_flow *flow, int error, void *userdata) {
        conn *c = userdata;
        (void)flow;
        if (error < 0 && error != -ECANCELED && c->flow) {
                conn_fail_all(c, FAIL_RESET, strerror(-error));
                conn_restart(c, false);
        }
}

/* Send what the pipeline has room for (and the rate allows). */
static void conn_fill(conn *c) {
        worker *w = c->w;
        bench *b = w->b;
        if (!c->flow || c->waiting_slot)
                return;
        unsigned n = 0;
        uint64_t now = now_usec();
        unsigned depth = b->new_connection ? 1 : b->depth;
        /* A pipeline is refilled once it was answered, in one write, rather
         * than one request per answer: one send for DEPTH requests, which
         * the server then reads together (as wrk's pipelining does). */
        if (depth > 1 && c->n_inflight > 0)
                return;
        while (c->n_inflight + n < depth) {
                uint64_t intended = now;
                if (b->rate > 0) {
                        uint64_t at = b->start + (uint64_t)((double)w->slot * w->interval_usec);
                        if (at > now) {
                                /* Not yet: the timer sends it on time. */
                                if (n == 0) {
                                        c->waiting_slot = true;
                                        conn_arm(c, at);
                                }
                                break;
                        }
                        intended = at;
                }
                if (c->reserved)
                        c->reserved = false;
                else if (!claim(w))
                        break;
                if (b->rate > 0)
                        w->slot++;
                inflight *r = &c->ring[(c->head + c->n_inflight + n) % MAX_DEPTH];
                r->intended = intended;
                r->sent = now;
                r->connect_usec = c->connect_usec;
                c->connect_usec = 0;
                c->iov[n] = (struct iovec){.iov_base = b->request, .iov_len = b->request_len};
                n++;
        }
        if (n > 0) {
                c->n_inflight += n;
                int r = paf_flow_write(c->flow, c->iov, n, on_written, c);
                if (r < 0) {
                        conn_fail_all(c, FAIL_RESET, strerror(-r));
                        conn_restart(c, false);
                        return;
                }
                /* One timer per connection, moved only when it fires (moving
                 * an sd-event timer on every request costs more than the
                 * request): it then looks at the oldest request. */
                int on = SD_EVENT_OFF;
                if (b->timeout_usec && !c->waiting_slot &&
                    (!c->timer || sd_event_source_get_enabled(c->timer, &on) < 0 ||
                     on == SD_EVENT_OFF))
                        conn_arm(c, now + b->timeout_usec);
                return;
        }
        if (c->n_inflight == 0 && !c->waiting_slot) {
                /* Nothing more to send: this connection's part is over. */
                conn_drop(c);
                worker_conn_idle(w, c);
        }
}

/* The connect failure's kind and reason, from the attempt that failed last. */
static void connect_failure(const paf_attempt *a, size_t n, fail_kind *ret_kind, char *buf,
                            size_t size) {
        const paf_attempt *t = NULL;
        for (size_t i = 0; i < n; i++)
                if (a[i].tried && a[i].error < 0)
                        t = &a[i];
        *ret_kind = FAIL_CONNECT;
        if (!t) {
                snprintf(buf, size, "no transport for this URL");
                return;
        }
        const char *reason = t->reason ? t->reason : strerror(-t->error);
        if (t->error == -ECONNREFUSED || strstr(reason, "Connection refused")) {
                *ret_kind = FAIL_REFUSED;
                snprintf(buf, size, "%s", t->endpoint ? t->endpoint : t->protocol);
        } else if (t->error == -ETIMEDOUT) {
                *ret_kind = FAIL_TIMEOUT;
                snprintf(buf, size, "connect: %s", reason);
        } else if (t->error == -ECONNRESET) {
                *ret_kind = FAIL_RESET;
                snprintf(buf, size, "connect: %s", reason);
        } else if (strcmp(t->protocol, "tls") == 0) {
                /* GnuTLS's reason, without the endpoint: one group per reason. */
                *ret_kind = FAIL_TLS;
                const char *f = strstr(reason, "failed: ");
                snprintf(buf, size, "%s", f ? f + strlen("failed: ") : reason);
        } else {
                snprintf(buf, size, "%s: %s", t->protocol, reason);
        }
}

static void on_connected(paf_flow *flow, const paf_attempt *attempts, size_t n_attempts,
                         void *userdata) {
        conn *c = userdata;
        worker *w = c->w;
        c->connecting = NULL;
        if (c->timer)
                sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        if (!flow) {
                fail_kind kind;
                char d[200];
                connect_failure(attempts, n_attempts, &kind, d, sizeof(d));
                /* The requests this connection was for fail in its place:
                 * those a closed one left, or the next one. */
                conn_fail_owed(c, kind, d);
                conn_restart(c, true);
                return;
        }
        if (!w->b->endpoint && w->id == 0) {
                for (size_t i = 0; i < n_attempts; i++)
                        if (attempts[i].tried && attempts[i].error == 0 && attempts[i].endpoint) {
                                char *e = NULL;
                                if (asprintf(&e, "%s %s", attempts[i].protocol,
                                             attempts[i].endpoint) >= 0)
                                        w->b->endpoint = e;
                        }
        }
        w->connections++;
        uint64_t now = now_usec();
        c->connect_usec = now - c->connect_start;
        bench_hist_record(w->connect, c->connect_usec);
        c->flow = flow;
        llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
        c->parser.data = c;
        c->fast_body = c->fast_close = c->llhttp_mid = false;
        c->fast_left = 0;
        int r = paf_flow_read_start(flow, on_read, c);
        if (r < 0) {
                conn_fail_owed(c, FAIL_CONNECT, strerror(-r));
                conn_restart(c, true);
                return;
        }
        if (c->n_inflight > 0) {
                /* What the last connection left unanswered goes first. */
                for (unsigned i = 0; i < c->n_inflight; i++)
                        c->iov[i] = (struct iovec){.iov_base = w->b->request,
                                                   .iov_len = w->b->request_len};
                c->ring[c->head].connect_usec = c->connect_usec;
                c->connect_usec = 0;
                for (unsigned i = 0; i < c->n_inflight; i++)
                        c->ring[(c->head + i) % MAX_DEPTH].sent = now;
                r = paf_flow_write(flow, c->iov, c->n_inflight, on_written, c);
                if (r < 0) {
                        conn_fail_all(c, FAIL_RESET, strerror(-r));
                        conn_restart(c, false);
                        return;
                }
                if (w->b->timeout_usec)
                        conn_arm(c, now_usec() + w->b->timeout_usec);
        }
        conn_fill(c);
}

static void conn_connect(conn *c) {
        worker *w = c->w;
        if (w->stopping) {
                worker_conn_idle(w, c);
                return;
        }
        c->connect_start = now_usec();
        int r = paf_registry_connect(w->b->reg, w->ctx, w->event, on_connected, c, &c->connecting);
        if (r < 0) {
                conn_fail_owed(c, FAIL_CONNECT, strerror(-r));
                conn_restart(c, true);
                return;
        }
        if (w->b->timeout_usec)
                conn_arm(c, c->connect_start + w->b->timeout_usec);
}

/* ---- workers ---- */

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        worker *w = userdata;
        (void)s;
        (void)usec;
        /* -z: what is in flight at the end is neither done nor failed. */
        w->stopping = true;
        for (unsigned i = 0; i < w->n_conns; i++) {
                conn_drop(&w->conns[i]);
                worker_conn_idle(w, &w->conns[i]);
        }
        return 0;
}

static void *worker_run(void *arg) {
        worker *w = arg;
        /* Each takes its request first: a thread that starts late, when
         * the others took every request of -n, makes no connection. */
        for (unsigned i = 0; i < w->n_conns; i++)
                conn_restart(&w->conns[i], false);
        /* Run by hand rather than with a loop call: once that returns, the
         * loop runs nothing more, and the closes it still holds would leak.
         * paf_event_run(): one epoll_wait() for the sockets and the loop. */
        if (w->n_active == 0)
                w->finished = true;
        while (!w->finished && w->exit_error >= 0) {
                w->exit_error = paf_event_run(w->event, UINT64_MAX);
                worker_fill(w);
        }
        for (unsigned i = 0; i < w->n_conns; i++) {
                conn_drop(&w->conns[i]);
                w->conns[i].timer = sd_event_source_disable_unref(w->conns[i].timer);
        }
        w->deadline = sd_event_source_disable_unref(w->deadline);
        /* The closes and cancels left deferred work on the loop. */
        for (unsigned i = 0; i < 64 && paf_event_run(w->event, 0) > 0; i++)
                ;
        log_flush(w, true);
        uint64_t one = 1;
        (void)!write(w->b->done_fd, &one, sizeof(one));
        return NULL;
}

static int worker_init(bench *b, worker *w, unsigned id, unsigned n_conns, paf_error *error) {
        *w = (worker){.b = b, .id = id, .n_conns = n_conns, .n_active = n_conns};
        int r = sd_event_new(&w->event);
        if (r >= 0)
                r = paf_client_new(b->reg, w->event, &w->client);
        if (r >= 0)
                r = paf_client_set_options(w->client, &b->copts);
        if (r < 0)
                return paf_error_set(error, r, "%s", strerror(-r));
        /* Each thread its own context: reads of one context stay on one thread. */
        char *target = NULL;
        r = paf_client_url_ctx(w->client, b->url, &w->ctx, &target, error);
        free(target);
        if (r < 0)
                return r;
        w->conns = calloc(n_conns ? n_conns : 1, sizeof(conn));
        if (!w->conns || bench_hist_new(&w->lat) < 0 || bench_hist_new(&w->connect) < 0 ||
            bench_hist_new(&w->ttfb) < 0)
                return paf_error_set(error, -ENOMEM, "out of memory");
        for (unsigned i = 0; i < n_conns; i++) {
                w->conns[i].w = w;
                w->conns[i].active = true;
        }
        if (b->rate > 0)
                w->interval_usec = (double)USEC_PER_SEC * b->threads / b->rate;
        if (b->duration_usec) {
                r = sd_event_add_time(w->event, &w->deadline, CLOCK_MONOTONIC,
                                      b->start + b->duration_usec, 1, on_deadline, w);
                if (r < 0)
                        return paf_error_set(error, r, "%s", strerror(-r));
        }
        return 0;
}

static void worker_done(worker *w) {
        free(w->conns);
        bench_hist_free(w->lat);
        bench_hist_free(w->connect);
        bench_hist_free(w->ttfb);
        paf_ctx_unref(w->ctx);
        paf_client_free(w->client);
        sd_event_unref(w->event);
        free(w->log);
}

/* ---- the report ---- */

typedef struct totals {
        uint64_t done, failed, bytes, connections;
        uint64_t status[600];
        fail_group groups[MAX_GROUPS * 4];
        unsigned n_groups;
        bench_hist *lat, *connect, *ttfb;
        double wall;
} totals;

static void merge(bench *b, totals *t) {
        for (unsigned i = 0; i < b->threads; i++) {
                worker *w = &b->workers[i];
                t->done += atomic_load(&w->done);
                t->failed += atomic_load(&w->failed);
                t->bytes += w->bytes;
                t->connections += w->connections;
                for (unsigned s = 0; s < 600; s++)
                        t->status[s] += w->status[s];
                bench_hist_merge(t->lat, w->lat);
                bench_hist_merge(t->connect, w->connect);
                bench_hist_merge(t->ttfb, w->ttfb);
                for (unsigned k = 0; k < w->n_groups; k++) {
                        fail_group *g = &w->groups[k], *into = NULL;
                        for (unsigned j = 0; j < t->n_groups && !into; j++)
                                if (t->groups[j].kind == g->kind &&
                                    strcmp(t->groups[j].detail, g->detail) == 0)
                                        into = &t->groups[j];
                        if (!into && t->n_groups < MAX_GROUPS * 4) {
                                into = &t->groups[t->n_groups++];
                                *into = *g;
                                continue;
                        }
                        if (into) {
                                into->count += g->count;
                                if (g->first_usec < into->first_usec)
                                        into->first_usec = g->first_usec;
                        }
                }
        }
}

static const double percentiles[] = {50, 75, 90, 99, 99.9, 99.99};

static void print_human_bytes(double v, char *buf, size_t size) {
        const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        unsigned i = 0;
        while (v >= 1024 && i < 4) {
                v /= 1024;
                i++;
        }
        snprintf(buf, size, i ? "%.2f %s" : "%.0f %s", v, u[i]);
}

static void report_text(bench *b, totals *t, FILE *f) {
        char x[32], y[32], z[32], u[32];
        uint64_t n = t->done + t->failed;
        fprintf(f, "\n%s\n", b->url);
        if (b->endpoint)
                fprintf(f, "  over %s\n", b->endpoint);
        fprintf(f, "\nSummary:\n");
        fprintf(f, "  requests:   %" PRIu64 " (%" PRIu64 " ok, %" PRIu64 " failed) in %.3f s\n", n,
                t->done, t->failed, t->wall);
        print_human_bytes((double)t->bytes, x, sizeof(x));
        print_human_bytes(t->wall > 0 ? (double)t->bytes / t->wall : 0, y, sizeof(y));
        fprintf(f, "  rate:       %.1f requests/s, %s/s (%s of bodies)\n",
                t->wall > 0 ? (double)n / t->wall : 0, y, x);
        fprintf(f, "  connections: %" PRIu64 " made (%u at once", t->connections, b->conns);
        if (b->depth > 1)
                fprintf(f, ", pipelined %u deep", b->depth);
        if (b->rate > 0)
                fprintf(f, ", %.0f requests/s asked", b->rate);
        fprintf(f, ")\n");
        if (bench_hist_count(t->lat) > 0) {
                fprintf(f, "\nLatency%s:\n",
                        b->rate > 0 ? " (from each request's intended send time)" : "");
                fprintf(f, "  min %s  mean %s  stdev %s  max %s\n",
                        bench_format_usec(bench_hist_min(t->lat), x, sizeof(x)),
                        bench_format_usec((uint64_t)llround(bench_hist_mean(t->lat)), y, sizeof(y)),
                        bench_format_usec((uint64_t)llround(bench_hist_stdev(t->lat)), z, sizeof(z)),
                        bench_format_usec(bench_hist_max(t->lat), u, sizeof(u)));
                fprintf(f, " ");
                for (size_t i = 0; i < sizeof(percentiles) / sizeof(percentiles[0]); i++)
                        fprintf(f, " p%g %s", percentiles[i],
                                bench_format_usec(bench_hist_percentile(t->lat, percentiles[i]), x,
                                                  sizeof(x)));
                fprintf(f, "\n  connect: p50 %s  p99 %s    first byte: p50 %s  p99 %s\n",
                        bench_format_usec(bench_hist_percentile(t->connect, 50), x, sizeof(x)),
                        bench_format_usec(bench_hist_percentile(t->connect, 99), y, sizeof(y)),
                        bench_format_usec(bench_hist_percentile(t->ttfb, 50), z, sizeof(z)),
                        bench_format_usec(bench_hist_percentile(t->ttfb, 99), u, sizeof(u)));
                fprintf(f, "\nHistogram:\n");
                bench_hist_print(t->lat, f, 80, isatty(fileno(f)));
        }
        fprintf(f, "\nStatus codes:\n");
        bool any = false;
        for (unsigned s = 0; s < 600; s++)
                if (t->status[s]) {
                        fprintf(f, "  %u: %" PRIu64 "\n", s, t->status[s]);
                        any = true;
                }
        if (!any)
                fprintf(f, "  (no answer)\n");
        if (t->n_groups > 0) {
                fprintf(f, "\nFailures:\n");
                for (unsigned i = 0; i < t->n_groups; i++) {
                        fail_group *g = &t->groups[i];
                        fprintf(f, "  %s%s%s: %" PRIu64 " (first at %.3f s, %s)\n",
                                fail_names[g->kind], g->detail[0] ? ": " : "", g->detail, g->count,
                                (double)g->first_usec / USEC_PER_SEC, b->url);
                }
        }
}

static void json_string(FILE *f, const char *s) {
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p < 0x20)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
        fputc('"', f);
}

static void json_hist(FILE *f, const char *name, bench_hist *h) {
        fprintf(f, "  \"%s\": {\"count\": %" PRIu64 ", \"min\": %" PRIu64 ", \"mean\": %.1f, "
                   "\"stdev\": %.1f, \"max\": %" PRIu64,
                name, bench_hist_count(h), bench_hist_min(h), bench_hist_mean(h),
                bench_hist_stdev(h), bench_hist_max(h));
        for (size_t i = 0; i < sizeof(percentiles) / sizeof(percentiles[0]); i++)
                fprintf(f, ", \"p%g\": %" PRIu64, percentiles[i],
                        bench_hist_percentile(h, percentiles[i]));
        fprintf(f, ", \"unit\": \"us\"}");
}

static int report_json(bench *b, totals *t, const char *path) {
        FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "we");
        if (!f)
                return -errno;
        uint64_t n = t->done + t->failed;
        fprintf(f, "{\n  \"url\": ");
        json_string(f, b->url);
        fprintf(f, ",\n  \"endpoint\": ");
        json_string(f, b->endpoint ? b->endpoint : "");
        fprintf(f, ",\n  \"connections\": %u,\n  \"threads\": %u,\n  \"pipeline\": %u,\n"
                   "  \"rate\": %.3f,\n",
                b->conns, b->threads, b->depth, b->rate);
        fprintf(f, "  \"requests\": %" PRIu64 ",\n  \"ok\": %" PRIu64 ",\n  \"failed\": %" PRIu64
                   ",\n  \"wall_seconds\": %.6f,\n  \"requests_per_second\": %.3f,\n"
                   "  \"body_bytes\": %" PRIu64 ",\n  \"bytes_per_second\": %.3f,\n"
                   "  \"connections_made\": %" PRIu64 ",\n",
                n, t->done, t->failed, t->wall, t->wall > 0 ? (double)n / t->wall : 0, t->bytes,
                t->wall > 0 ? (double)t->bytes / t->wall : 0, t->connections);
        json_hist(f, "latency", t->lat);
        fprintf(f, ",\n");
        json_hist(f, "connect", t->connect);
        fprintf(f, ",\n");
        json_hist(f, "first_byte", t->ttfb);
        fprintf(f, ",\n  \"histogram\": [");
        size_t it = 0;
        uint64_t lo, hi, cnt;
        bool first = true;
        while (bench_hist_next(t->lat, &it, &lo, &hi, &cnt)) {
                fprintf(f, "%s[%" PRIu64 ", %" PRIu64 ", %" PRIu64 "]", first ? "" : ", ", lo, hi,
                        cnt);
                first = false;
        }
        fprintf(f, "],\n  \"status\": {");
        first = true;
        for (unsigned s = 0; s < 600; s++)
                if (t->status[s]) {
                        fprintf(f, "%s\"%u\": %" PRIu64, first ? "" : ", ", s, t->status[s]);
                        first = false;
                }
        fprintf(f, "},\n  \"failures\": [");
        for (unsigned i = 0; i < t->n_groups; i++) {
                fail_group *g = &t->groups[i];
                fprintf(f, "%s\n    {\"reason\": ", i ? "," : "");
                json_string(f, fail_names[g->kind]);
                fprintf(f, ", \"detail\": ");
                json_string(f, g->detail);
                fprintf(f, ", \"count\": %" PRIu64 ", \"first_seconds\": %.6f, \"first_url\": ",
                        g->count, (double)g->first_usec / USEC_PER_SEC);
                json_string(f, b->url);
                fprintf(f, "}");
        }
        fprintf(f, "%s]\n}\n", t->n_groups ? "\n  " : "");
        int r = 0;
        if (f != stdout && fclose(f) != 0)
                r = -errno;
        return r;
}

/* ---- progress, on a terminal ---- */

typedef struct progress {
        bench *b;
        bool on;
        unsigned finished;
} progress;

static int on_progress(sd_event_source *s, uint64_t usec, void *userdata) {
        progress *p = userdata;
        bench *b = p->b;
        uint64_t done = 0, failed = 0;
        for (unsigned i = 0; i < b->threads; i++) {
                done += atomic_load_explicit(&b->workers[i].done, memory_order_relaxed);
                failed += atomic_load_explicit(&b->workers[i].failed, memory_order_relaxed);
        }
        double el = (double)(now_usec() - b->start) / USEC_PER_SEC;
        fprintf(stderr, "\r  %" PRIu64 " done, %.0f/s, %" PRIu64 " errors, %.1f s   ", done + failed,
                el > 0 ? (double)(done + failed) / el : 0, failed, el);
        sd_event_source_set_time(s, usec + USEC_PER_SEC / 4);
        return 0;
}

static int on_worker_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        progress *p = userdata;
        (void)revents;
        uint64_t v;
        if (read(fd, &v, sizeof(v)) == sizeof(v))
                p->finished += (unsigned)v;
        if (p->finished >= p->b->threads)
                sd_event_exit(sd_event_source_get_event(s), 0);
        return 0;
}

static int on_interrupt(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        progress *p = userdata;
        (void)s;
        (void)si;
        /* Stop early: what is in flight completes, and is reported. */
        atomic_store(&p->b->interrupted, true);
        return 0;
}

/* ---- the command ---- */

static void usage(FILE *f) {
        fprintf(f,
                "Usage: paf bench URL [OPTIONS]\n"
                "\n"
                "Many connections against URL (any scheme paf get takes), every request timed:\n"
                "a summary, latency percentiles, a histogram, status codes and every failure\n"
                "by reason. Exit status 1 when a request failed.\n"
                "\n"
                "  -c, --connections N    Connections at once (default 50)\n"
                "  -n, --requests N       Requests in all (default 1000)\n"
                "  -z, --duration SECS    Run for SECS instead of -n\n"
                "  -t, --threads N        Threads, one event loop each (default: the CPUs, at\n"
                "                         most -c)\n"
                "  -R, --rate RATE        Requests per second in all, at constant rate; latency\n"
                "                         from each request's intended send time\n"
                "  -p, --pipeline DEPTH   HTTP/1.1 pipelining depth (default 1)\n"
                "  --new-connection       A new connection for every request\n"
                "  -X, --method METHOD    Default GET\n"
                "  -H, --header 'N: V'    Add a header (repeatable)\n"
                "  --body @FILE|STRING    Request body\n"
                "  --cacert FILE          Trust these CAs (https)\n"
                "  -k, --insecure         Do not verify the server's certificate\n"
                "  --unix-socket PATH     Connect to PATH, whatever the URL's host\n"
                "  --config FILE          paf.conf: plugins, [tls]\n"
                "  --expect-status LIST   Codes that succeed, e.g. 200,204 (default: 2xx, 3xx)\n"
                "  --allow-failures       Exit 0 even when requests failed\n"
                "  --json FILE            Every figure as JSON (- for stdout)\n"
                "  --log FILE             One line per request: start, connect, first byte,\n"
                "                         total (µs), status, bytes, error\n"
                "  --timeout SECS         Per request and per connect (default 30)\n"
                "  --help                 Show this help\n");
}

static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (!*s || *end || errno || v < min || v > max || *s == '-')
                return tool_usage_error("%s \"%s\": a number from %" PRIu64 " to %" PRIu64, opt, s,
                                        min, max);
        *ret = v;
        return 0;
}

static int parse_secs(const char *opt, const char *s, uint64_t *ret) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (!*s || *end || errno || !(v > 0) || v > 86400)
                return tool_usage_error("%s \"%s\": seconds, more than 0 and at most 86400", opt, s);
        *ret = (uint64_t)(v * USEC_PER_SEC);
        return 0;
}

static int parse_expect(bench *b, const char *s) {
        memset(b->expect, 0, sizeof(b->expect));
        for (const char *p = s; *p;) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p || v < 100 || v > 599 || (*end && *end != ','))
                        return tool_usage_error("--expect-status \"%s\": status codes (100-599) "
                                                "separated by commas",
                                                s);
                b->expect[v] = true;
                p = *end ? end + 1 : end;
        }
        return 0;
}

int cmd_bench(int argc, char **argv) {
        enum { OPT_NEW_CONNECTION = 256, OPT_BODY, OPT_CACERT, OPT_UNIX, OPT_EXPECT, OPT_ALLOW,
               OPT_JSON, OPT_LOG, OPT_TIMEOUT };
        static const struct option options[] = {
                {"connections", required_argument, NULL, 'c'},
                {"requests", required_argument, NULL, 'n'},
                {"duration", required_argument, NULL, 'z'},
                {"threads", required_argument, NULL, 't'},
                {"rate", required_argument, NULL, 'R'},
                {"pipeline", required_argument, NULL, 'p'},
                {"new-connection", no_argument, NULL, OPT_NEW_CONNECTION},
                {"method", required_argument, NULL, 'X'},
                {"header", required_argument, NULL, 'H'},
                {"body", required_argument, NULL, OPT_BODY},
                {"cacert", required_argument, NULL, OPT_CACERT},
                {"insecure", no_argument, NULL, 'k'},
                {"unix-socket", required_argument, NULL, OPT_UNIX},
                {"config", required_argument, NULL, 'C'},
                {"expect-status", required_argument, NULL, OPT_EXPECT},
                {"allow-failures", no_argument, NULL, OPT_ALLOW},
                {"json", required_argument, NULL, OPT_JSON},
                {"log", required_argument, NULL, OPT_LOG},
                {"timeout", required_argument, NULL, OPT_TIMEOUT},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        bench b = {.conns = 50, .depth = 1, .total = 1000, .timeout_usec = 30 * USEC_PER_SEC,
                   .done_fd = -1};
        for (unsigned s = 200; s < 400; s++)
                b.expect[s] = true;
        const char *method = "GET", *headers[MAX_HEADERS], *body_arg = NULL, *config = NULL;
        const char *json_path = NULL, *log_path = NULL;
        size_t n_headers = 0;
        bool allow_failures = false, total_given = false;
        uint64_t v = 0, threads = 0;
        int c, ret;
        while ((c = getopt_long(argc, argv, ":c:n:z:t:R:p:X:H:kh", options, NULL)) >= 0) {
                ret = 0;
                switch (c) {
                case 'c':
                        ret = parse_u64("-c", optarg, 1, 100000, &v);
                        b.conns = (unsigned)v;
                        break;
                case 'n':
                        ret = parse_u64("-n", optarg, 1, UINT64_MAX / 4, &b.total);
                        total_given = true;
                        break;
                case 'z':
                        ret = parse_secs("-z", optarg, &b.duration_usec);
                        break;
                case 't':
                        ret = parse_u64("-t", optarg, 1, MAX_THREADS, &threads);
                        break;
                case 'R': {
                        char *end;
                        b.rate = strtod(optarg, &end);
                        if (!*optarg || *end || !(b.rate > 0) || b.rate > 1e8)
                                ret = tool_usage_error("-R \"%s\": requests per second, more "
                                                       "than 0",
                                                       optarg);
                        break;
                }
                case 'p':
                        ret = parse_u64("-p", optarg, 1, MAX_DEPTH, &v);
                        b.depth = (unsigned)v;
                        break;
                case OPT_NEW_CONNECTION:
                        b.new_connection = true;
                        break;
                case 'X':
                        method = optarg;
                        break;
                case 'H':
                        if (n_headers == MAX_HEADERS)
                                ret = tool_usage_error("more than %d -H", MAX_HEADERS);
                        else if (!strchr(optarg, ':') || strpbrk(optarg, "\r\n"))
                                ret = tool_usage_error("-H \"%s\": not \"Name: value\"", optarg);
                        else
                                headers[n_headers++] = optarg;
                        break;
                case OPT_BODY:
                        body_arg = optarg;
                        break;
                case OPT_CACERT:
                        b.copts.ca_file = optarg;
                        break;
                case 'k':
                        b.copts.insecure = true;
                        break;
                case OPT_UNIX:
                        b.copts.unix_socket = optarg;
                        break;
                case 'C':
                        config = optarg;
                        break;
                case OPT_EXPECT:
                        ret = parse_expect(&b, optarg);
                        b.expect_text = optarg;
                        break;
                case OPT_ALLOW:
                        allow_failures = true;
                        break;
                case OPT_JSON:
                        json_path = optarg;
                        break;
                case OPT_LOG:
                        log_path = optarg;
                        break;
                case OPT_TIMEOUT:
                        ret = parse_secs("--timeout", optarg, &b.timeout_usec);
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        return tool_bad_option(c, argv, options);
                }
                if (ret)
                        return ret;
        }
        if (optind >= argc)
                return tool_usage_error("no URL");
        if (optind + 1 < argc)
                return tool_usage_error("one URL only; unexpected \"%s\"", argv[optind + 1]);
        b.url = argv[optind];
        if (b.duration_usec && total_given)
                return tool_usage_error("-n and -z: one or the other");
        if (b.duration_usec)
                b.total = 0;
        if (b.new_connection && b.depth > 1)
                return tool_usage_error("--new-connection and -p: one request per connection");
        if (b.total && b.conns > b.total)
                b.conns = (unsigned)b.total;
        if (threads == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                threads = n > 0 ? (uint64_t)n : 1;
        }
        if (threads > b.conns)
                threads = b.conns;
        b.threads = (unsigned)threads;
        b.head = strcasecmp(method, "HEAD") == 0;

        /* The body. */
        char *body = NULL;
        size_t body_len = 0;
        if (body_arg && body_arg[0] == '@') {
                FILE *bf = fopen(body_arg + 1, "re");
                if (!bf) {
                        tool_error("--body \"%s\": %s", body_arg + 1, strerror(errno));
                        return 2;
                }
                char buf[65536];
                size_t k;
                while ((k = fread(buf, 1, sizeof(buf), bf)) > 0) {
                        char *nb = realloc(body, body_len + k);
                        if (!nb) {
                                fclose(bf);
                                free(body);
                                tool_error("%s", strerror(ENOMEM));
                                return 1;
                        }
                        body = nb;
                        memcpy(body + body_len, buf, k);
                        body_len += k;
                }
                fclose(bf);
        } else if (body_arg) {
                body = strdup(body_arg);
                body_len = body ? strlen(body) : 0;
        }

        int status = 1;
        paf_error error = PAF_ERROR_NULL;
        progress prog = {.b = &b};
        sd_event *main_event = NULL;
        totals t = {0};
        pthread_mutex_init(&b.log_lock, NULL);
        if (tool_load_registry(config, false, &b.reg) < 0 || !tool_check_plugins(b.reg))
                goto out;

        /* The request, built once; every connection sends these bytes. */
        {
                paf_client *probe = NULL;
                paf_ctx *ctx = NULL;
                char *target = NULL;
                sd_event *e = NULL;
                int r = sd_event_new(&e);
                if (r >= 0)
                        r = paf_client_new(b.reg, e, &probe);
                if (r >= 0)
                        r = paf_client_set_options(probe, &b.copts);
                if (r >= 0)
                        r = paf_client_url_ctx(probe, b.url, &ctx, &target, &error);
                const char *host = NULL;
                if (r >= 0 && paf_ctx_get_string(ctx, "http.host", &host) < 0)
                        host = "localhost";
                /* The request wrk sends: the request line and Host, and
                 * what -H adds. Every header costs the server (a
                 * User-Agent, nginx's browser detection), and a load tool
                 * measures the server's answer to the request asked for. */
                bool has_host = false;
                for (size_t i = 0; i < n_headers; i++)
                        has_host = has_host || strncasecmp(headers[i], "Host:", 5) == 0;
                FILE *m = NULL;
                if (r >= 0) {
                        m = open_memstream(&b.request, &b.request_len);
                        if (!m)
                                r = -errno;
                }
                if (r >= 0) {
                        fprintf(m, "%s %s HTTP/1.1\r\n", method, target);
                        if (!has_host)
                                fprintf(m, "Host: %s\r\n", host);
                        for (size_t i = 0; i < n_headers; i++)
                                fprintf(m, "%s\r\n", headers[i]);
                        if (body || strcasecmp(method, "POST") == 0 || strcasecmp(method, "PUT") == 0)
                                fprintf(m, "Content-Length: %zu\r\n", body_len);
                        if (b.new_connection)
                                fprintf(m, "Connection: close\r\n");
                        fprintf(m, "\r\n");
                        if (body_len)
                                fwrite(body, 1, body_len, m);
                        if (fclose(m) != 0)
                                r = -ENOMEM;
                }
                free(target);
                paf_ctx_unref(ctx);
                paf_client_free(probe);
                sd_event_unref(e);
                if (r < 0) {
                        tool_error("%s", error.message[0] ? error.message : strerror(-r));
                        status = r == -EINVAL || r == -EPROTONOSUPPORT ? 2 : 1;
                        goto out;
                }
        }
        if (log_path) {
                b.log = fopen(log_path, "we");
                if (!b.log) {
                        tool_error("--log \"%s\": %s", log_path, strerror(errno));
                        goto out;
                }
                fprintf(b.log, "# start_us connect_us first_byte_us total_us status bytes error\n");
        }

        tchar_init();
        parser_settings = (llhttp_settings_t){0};
        llhttp_settings_init(&parser_settings);
        parser_settings.on_message_begin = on_message_begin;
        parser_settings.on_headers_complete = on_headers_complete;
        parser_settings.on_body = on_body;
        parser_settings.on_message_complete = on_message_complete;

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        b.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        b.workers = calloc(b.threads, sizeof(worker));
        if (b.done_fd < 0 || !b.workers || bench_hist_new(&t.lat) < 0 ||
            bench_hist_new(&t.connect) < 0 || bench_hist_new(&t.ttfb) < 0) {
                tool_error("%s", strerror(ENOMEM));
                goto out;
        }
        b.start = now_usec();
        unsigned started = 0;
        for (unsigned i = 0; i < b.threads; i++) {
                unsigned share = b.conns / b.threads + (i < b.conns % b.threads ? 1 : 0);
                if (worker_init(&b, &b.workers[i], i, share, &error) < 0) {
                        tool_error("%s", error.message);
                        goto stop;
                }
        }
        for (unsigned i = 0; i < b.threads; i++) {
                if (pthread_create(&b.workers[i].thread, NULL, worker_run, &b.workers[i]) != 0) {
                        tool_error("cannot start a thread: %s", strerror(errno));
                        on_interrupt(NULL, NULL, &prog);
                        break;
                }
                started++;
        }
        int r = sd_event_new(&main_event);
        if (r >= 0)
                r = sd_event_add_io(main_event, NULL, b.done_fd, EPOLLIN, on_worker_done, &prog);
        if (r >= 0)
                r = sd_event_add_signal(main_event, NULL, SIGINT, on_interrupt, &prog);
        if (r >= 0)
                r = sd_event_add_signal(main_event, NULL, SIGTERM, on_interrupt, &prog);
        prog.on = isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
        if (r >= 0 && prog.on)
                r = sd_event_add_time(main_event, NULL, CLOCK_MONOTONIC, now_usec() + USEC_PER_SEC / 4,
                                      0, on_progress, &prog);
        if (r >= 0 && started == b.threads)
                r = sd_event_loop(main_event);
stop:
        for (unsigned i = 0; i < started; i++)
                pthread_join(b.workers[i].thread, NULL);
        b.end = now_usec();
        if (prog.on)
                fprintf(stderr, "\r\033[K");
        if (started < b.threads)
                goto out;
        t.wall = (double)(b.end - b.start) / USEC_PER_SEC;
        merge(&b, &t);
        report_text(&b, &t, stdout);
        if (json_path && (r = report_json(&b, &t, json_path)) < 0)
                tool_error("--json \"%s\": %s", json_path, strerror(-r));
        status = t.failed > 0 && !allow_failures ? 1 : 0;
        if (t.done + t.failed == 0 && !allow_failures)
                status = 1;
out:
        for (unsigned i = 0; b.workers && i < b.threads; i++)
                worker_done(&b.workers[i]);
        free(b.workers);
        bench_hist_free(t.lat);
        bench_hist_free(t.connect);
        bench_hist_free(t.ttfb);
        if (b.log && fclose(b.log) != 0)
                tool_error("--log \"%s\": %s", log_path, strerror(errno));
        if (b.done_fd >= 0)
                close(b.done_fd);
        sd_event_unref(main_event);
        paf_registry_unref(b.reg);
        free(b.request);
        free(b.endpoint);
        free(body);
        pthread_mutex_destroy(&b.log_lock);
        return status;
}
