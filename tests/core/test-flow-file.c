/* tests/core/test-flow-file.c — file bodies on flows (paf_flow_send_file): sendfile on sockets, the
 * core's copy for flows without it (old plugins), order, progress, errors. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>

#include "../common/paf-test.h"

typedef struct fixture {
        sd_event *event;
        int fds_before;
        char path[64];
        int file; /* FILE_SIZE bytes of file_byte() */
} fixture;

#define FILE_SIZE ((size_t)6 * 1024 * 1024 + 4321)

static uint8_t file_byte(size_t i) {
        return (uint8_t)(i * 131 + i / 7919);
}

static int setup(void **state) {
        fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        f->fds_before = count_fds();
        assert_int_equal(sd_event_new(&f->event), 0);
        snprintf(f->path, sizeof(f->path), "/tmp/paf-flow-file-XXXXXX");
        f->file = mkstemp(f->path);
        assert_true(f->file >= 0);
        uint8_t *b = malloc(FILE_SIZE);
        assert_non_null(b);
        for (size_t i = 0; i < FILE_SIZE; i++)
                b[i] = file_byte(i);
        assert_int_equal(write(f->file, b, FILE_SIZE), (ssize_t)FILE_SIZE);
        free(b);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;
        run_for(f->event, 20);
        sd_event_unref(f->event);
        close(f->file);
        unlink(f->path);
        assert_int_equal(count_fds(), f->fds_before);
        free(f);
        return 0;
}

/* Completions, in the order they ran. */
typedef struct seq {
        int errors[16];
        int ids[16];
        unsigned n;
} seq;

typedef struct tag {
        seq *s;
        int id;
} tag;

static void on_done(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        tag *t = userdata;
        assert_true(t->s->n < 16);
        t->s->errors[t->s->n] = error;
        t->s->ids[t->s->n++] = t->id;
}

/* The kernel's count of write system calls: sendfile(2) is one, sendmsg(2)
 * is not, so it tells a file that went by sendfile from a copied one. */
static uint64_t syscw(void) {
        FILE *io = fopen("/proc/self/io", "re");
        assert_non_null(io);
        char line[128];
        uint64_t v = UINT64_MAX;
        while (fgets(line, sizeof(line), io))
                if (sscanf(line, "syscw: %" SCNu64, &v) == 1)
                        break;
        fclose(io);
        assert_true(v != UINT64_MAX);
        return v;
}

/* Reads everything from fd (a socket's other end) until want bytes or 10 s,
 * running the loop in between. */
static uint8_t *drain(sd_event *e, int fd, size_t want, const seq *s, unsigned n_done) {
        uint8_t *got = malloc(want + 1);
        assert_non_null(got);
        size_t len = 0;
        assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
        uint64_t end = now_ms() + 10000;
        while ((len < want || s->n < n_done) && now_ms() < end) {
                ssize_t k = read(fd, got + len, want + 1 - len);
                if (k > 0)
                        len += (size_t)k;
                assert_true(sd_event_run(e, k > 0 ? 0 : 1000) >= 0);
        }
        assert_int_equal(len, want);
        return got;
}

/* A connected TCP pair on loopback: sv[0] the accepted end. */
static void tcp_pair(int sv[2]) {
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(l >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(l, 1), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
        sv[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(sv[1] >= 0);
        assert_int_equal(connect(sv[1], (struct sockaddr *)&a, sizeof(a)), 0);
        sv[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        assert_true(sv[0] >= 0);
        close(l);
}

static void check_range(const uint8_t *got, uint64_t offset, size_t len) {
        for (size_t i = 0; i < len; i++)
                if (got[i] != file_byte(offset + i))
                        fail_msg("byte %zu of the range from %" PRIu64 " differs", i, offset);
}

/* A write, a file range, a write, a file range: the bytes in that order,
 * exact, and the files sent with sendfile (not copied). */
static void send_mixed(fixture *f, int domain) {
        int sv[2];
        if (domain == AF_UNIX)
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        else
                tcp_pair(sv);
        paf_flow *flow;
        assert_int_equal(paf_socket_flow_new(f->event, sv[0], "test", &flow), 0);

        seq s = {0};
        tag t[4] = {{&s, 0}, {&s, 1}, {&s, 2}, {&s, 3}};
        struct iovec head = {(void *)"HEAD", 4}, tail = {(void *)"TAIL", 4};
        uint64_t off1 = 1000, off2 = FILE_SIZE - 777;
        size_t len1 = FILE_SIZE - 5000, len2 = 777;
        uint64_t w0 = syscw();
        assert_int_equal(paf_flow_write(flow, &head, 1, on_done, &t[0]), 0);
        assert_int_equal(paf_flow_send_file(flow, f->file, off1, len1, on_done, &t[1]), 0);
        assert_int_equal(paf_flow_write(flow, &tail, 1, on_done, &t[2]), 0);
        assert_int_equal(paf_flow_send_file(flow, f->file, off2, len2, on_done, &t[3]), 0);
        assert_int_equal(paf_flow_get_write_queue_size(flow), 8 + len1 + len2);

        size_t want = 8 + len1 + len2;
        uint8_t *got = drain(f->event, sv[1], want, &s, 4);
        uint64_t w1 = syscw();
        assert_memory_equal(got, "HEAD", 4);
        check_range(got + 4, off1, len1);
        assert_memory_equal(got + 4 + len1, "TAIL", 4);
        check_range(got + 8 + len1, off2, len2);
        assert_int_equal(s.n, 4);
        for (unsigned i = 0; i < 4; i++) {
                assert_int_equal(s.ids[i], (int)i);
                assert_int_equal(s.errors[i], 0);
        }
        /* Both ranges by sendfile: at least one call each. */
        assert_true(w1 - w0 >= 2);
        uint64_t bytes;
        assert_int_equal(paf_flow_get_write_progress(flow, &bytes, NULL), 0);
        assert_int_equal(bytes, want);
        assert_int_equal(paf_flow_get_write_queue_size(flow), 0);
        /* The file offset is not the flow's business. */
        assert_int_equal(lseek(f->file, 0, SEEK_CUR), (off_t)FILE_SIZE);

        close_and_wait(f->event, flow);
        close(sv[1]);
        free(got);
}

static void test_unix_send_file(void **state) {
        send_mixed(*state, AF_UNIX);
}

static void test_tcp_send_file(void **state) {
        send_mixed(*state, AF_INET);
}

/* A flow of a plugin built before send_file: its ops end before the member.
 * What lies behind struct_size is not the plugin's, so never called. */
typedef struct fake {
        paf_flow *flow;
        bool sync;        /* complete each write from inside it */
        unsigned writes;  /* calls */
        unsigned pending; /* writes not completed yet */
        size_t max_write; /* the largest write, in bytes */
        uint8_t *out;     /* what was written */
        size_t out_len;
        int declined;       /* send_file calls */
        bool decline_later; /* send_file hands back from the loop */
        sd_event_source *later;
} fake;

static int fake_write(paf_flow *flow, const struct iovec *iov, size_t n_iov) {
        fake *fk = paf_flow_get_impl(flow);
        fk->writes++;
        size_t n = 0;
        for (size_t i = 0; i < n_iov; i++) {
                memcpy(fk->out + fk->out_len, iov[i].iov_base, iov[i].iov_len);
                fk->out_len += iov[i].iov_len;
                n += iov[i].iov_len;
        }
        if (n > fk->max_write)
                fk->max_write = n;
        if (fk->sync)
                paf_flow_write_done(flow, 0);
        else
                fk->pending++;
        return 0;
}

static int must_not_run(paf_flow *flow, int fd, uint64_t offset, size_t len) {
        (void)flow;
        (void)fd;
        (void)offset;
        (void)len;
        fail_msg("send_file beyond struct_size was called");
        return 0;
}

static void fake_close(paf_flow *flow) {
        (void)flow;
}

/* Laid out as a 1.2 plugin's table (struct_size), with something where
 * 1.3's send_file is. */
static const paf_flow_ops old_plugin_ops = {
        .struct_size = offsetof(paf_flow_ops, send_file),
        .write = fake_write,
        .close = fake_close,
        .send_file = must_not_run,
};

static void finish_pending(fixture *f, fake *fk) {
        /* Completes what the fake holds, one at a time, as a transport would. */
        for (unsigned i = 0; i < 1000 && fk->pending > 0; i++) {
                fk->pending--;
                paf_flow_write_done(fk->flow, 0);
                run_for(f->event, 1);
        }
}

static void old_plugin(fixture *f, bool sync) {
        fake fk = {.sync = sync, .out = malloc(FILE_SIZE + 16)};
        assert_non_null(fk.out);
        assert_int_equal(paf_flow_new(f->event, &old_plugin_ops, &fk, "old", NULL, NULL, &fk.flow),
                         0);
        seq s = {0};
        tag t[3] = {{&s, 0}, {&s, 1}, {&s, 2}};
        struct iovec head = {(void *)"HEAD", 4}, tail = {(void *)"TAIL", 4};
        uint64_t off = 3;
        size_t len = FILE_SIZE - 3;
        uint64_t w0 = syscw();
        assert_int_equal(paf_flow_write(fk.flow, &head, 1, on_done, &t[0]), 0);
        assert_int_equal(paf_flow_send_file(fk.flow, f->file, off, len, on_done, &t[1]), 0);
        assert_int_equal(paf_flow_write(fk.flow, &tail, 1, on_done, &t[2]), 0);
        if (sync)
                /* Completing at once, the copy still gives the loop its
                 * turn: not the whole file from inside the call. */
                assert_true(fk.out_len < 4 + len);
        uint64_t end = now_ms() + 10000;
        while (s.n < 3 && now_ms() < end) {
                finish_pending(f, &fk);
                run_for(f->event, 1);
        }
        assert_int_equal(s.n, 3);
        for (unsigned i = 0; i < 3; i++) {
                assert_int_equal(s.ids[i], (int)i);
                assert_int_equal(s.errors[i], 0);
        }
        assert_int_equal(fk.out_len, 8 + len);
        assert_memory_equal(fk.out, "HEAD", 4);
        check_range(fk.out + 4, off, len);
        assert_memory_equal(fk.out + 4 + len, "TAIL", 4);
        /* In pieces, by pread and write: no sendfile, bounded memory. */
        assert_true(fk.writes > 2 + len / (256 * 1024));
        assert_true(fk.max_write <= 256 * 1024);
        /* (Valgrind makes write calls of its own in the process.) */
        if (!getenv("PAF_TEST_VALGRIND"))
                assert_int_equal(syscw() - w0, 0);
        uint64_t bytes;
        assert_int_equal(paf_flow_get_write_progress(fk.flow, &bytes, NULL), 0);
        assert_int_equal(bytes, 8 + len);
        close_and_wait(f->event, fk.flow);
        free(fk.out);
}

static void test_old_plugin_copy(void **state) {
        old_plugin(*state, false);
}

static void test_old_plugin_copy_sync(void **state) {
        old_plugin(*state, true);
}

/* A 1.3 implementation that declines (a TLS layer without kTLS): at once,
 * or from the loop through paf_flow_write_done(). Either way the core
 * copies it. */
static int later_decline(sd_event_source *source, void *userdata) {
        (void)source;
        fake *fk = userdata;
        paf_flow_write_done(fk->flow, -EOPNOTSUPP);
        return 0;
}

static int fake_send_file(paf_flow *flow, int fd, uint64_t offset, size_t len) {
        (void)fd;
        (void)offset;
        (void)len;
        fake *fk = paf_flow_get_impl(flow);
        fk->declined++;
        if (!fk->decline_later)
                return -EOPNOTSUPP;
        assert_int_equal(
                sd_event_add_defer(paf_flow_get_event(flow), &fk->later, later_decline, fk), 0);
        (void)sd_event_source_set_enabled(fk->later, SD_EVENT_ONESHOT);
        return 0;
}

static const paf_flow_ops declining_ops = {
        .struct_size = sizeof(paf_flow_ops),
        .write = fake_write,
        .close = fake_close,
        .send_file = fake_send_file,
};

static void declined(fixture *f, bool later) {
        fake fk = {.sync = true, .decline_later = later, .out = malloc(FILE_SIZE)};
        assert_non_null(fk.out);
        assert_int_equal(paf_flow_new(f->event, &declining_ops, &fk, "x", NULL, NULL, &fk.flow), 0);
        seq s = {0};
        tag t = {&s, 0};
        assert_int_equal(paf_flow_send_file(fk.flow, f->file, 10, 300000, on_done, &t), 0);
        uint64_t end = now_ms() + 5000;
        while (s.n < 1 && now_ms() < end)
                run_for(f->event, 1);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.errors[0], 0);
        assert_int_equal(fk.declined, 1);
        assert_int_equal(fk.out_len, 300000);
        check_range(fk.out, 10, 300000);
        sd_event_source_unref(fk.later);
        close_and_wait(f->event, fk.flow);
        free(fk.out);
}

static void test_declined_at_once(void **state) {
        declined(*state, false);
}

static void test_declined_later(void **state) {
        declined(*state, true);
}

/* A file shorter than the length asked for: -ENODATA, and the stream is
 * broken for what follows (the peer was promised those bytes). */
static void test_file_shorter(void **state) {
        fixture *f = *state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        paf_flow *flow;
        assert_int_equal(paf_socket_flow_new(f->event, sv[0], "test", &flow), 0);
        seq s = {0};
        tag t[2] = {{&s, 0}, {&s, 1}};
        struct iovec tail = {(void *)"TAIL", 4};
        assert_int_equal(paf_flow_send_file(flow, f->file, FILE_SIZE - 100, 200, on_done, &t[0]),
                         0);
        assert_int_equal(paf_flow_write(flow, &tail, 1, on_done, &t[1]), 0);
        uint8_t *got = drain(f->event, sv[1], 100, &s, 2);
        check_range(got, FILE_SIZE - 100, 100);
        assert_int_equal(s.errors[0], -ENODATA);
        assert_int_equal(s.errors[1], -ENODATA);
        close_and_wait(f->event, flow);
        free(got);

        /* The copy says the same. */
        fake fk = {.sync = true, .out = malloc(1000)};
        assert_int_equal(paf_flow_new(f->event, &old_plugin_ops, &fk, "old", NULL, NULL, &fk.flow),
                         0);
        seq s2 = {0};
        tag t2 = {&s2, 0};
        assert_int_equal(paf_flow_send_file(fk.flow, f->file, FILE_SIZE - 10, 20, on_done, &t2), 0);
        run_for(f->event, 10);
        assert_int_equal(s2.n, 1);
        assert_int_equal(s2.errors[0], -ENODATA);
        assert_int_equal(fk.out_len, 10);
        close_and_wait(f->event, fk.flow);
        free(fk.out);
        close(sv[1]);
}

/* Closing with a file in flight cancels it; a peer gone is -EPIPE and no
 * SIGPIPE, whatever the process' disposition (sendfile has no
 * MSG_NOSIGNAL). */
static void test_cancel_and_peer_gone(void **state) {
        fixture *f = *state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        paf_flow *flow;
        assert_int_equal(paf_socket_flow_new(f->event, sv[0], "test", &flow), 0);
        seq s = {0};
        tag t = {&s, 0};
        assert_int_equal(paf_flow_send_file(flow, f->file, 0, FILE_SIZE, on_done, &t), 0);
        run_for(f->event, 10);
        assert_int_equal(s.n, 0); /* nobody reads: it waits */
        close_and_wait(f->event, flow);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.errors[0], -ECANCELED);
        close(sv[1]);

        void (*old)(int) = signal(SIGPIPE, SIG_DFL);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(paf_socket_flow_new(f->event, sv[0], "test", &flow), 0);
        close(sv[1]);
        seq s2 = {0};
        tag t2 = {&s2, 0};
        assert_int_equal(paf_flow_send_file(flow, f->file, 0, 1000, on_done, &t2), 0);
        run_for(f->event, 10);
        assert_int_equal(s2.n, 1);
        assert_int_equal(s2.errors[0], -EPIPE);
        sigset_t pending;
        assert_int_equal(sigpending(&pending), 0);
        assert_false(sigismember(&pending, SIGPIPE));
        close_and_wait(f->event, flow);
        signal(SIGPIPE, old);
}

/* The write timeout's rule holds for files: a send_file to a slow reader
 * reports each partial send, and while it waits for room, the peer
 * draining the kernel's buffer moves the time. */
static void test_progress(void **state) {
        fixture *f = *state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        int sndbuf = 64 * 1024;
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
        paf_flow *flow;
        assert_int_equal(paf_socket_flow_new(f->event, sv[0], "test", &flow), 0);
        seq s = {0};
        tag t = {&s, 0};
        size_t len = 1024 * 1024;
        assert_int_equal(paf_flow_send_file(flow, f->file, 0, len, on_done, &t), 0);
        run_for(f->event, 10);
        uint64_t bytes0, usec0, bytes, usec;
        assert_int_equal(paf_flow_get_write_progress(flow, &bytes0, &usec0), 0);
        assert_true(bytes0 > 0 && bytes0 < len);

        /* Nothing read: nothing new. */
        run_for(f->event, 10);
        assert_int_equal(paf_flow_get_write_progress(flow, &bytes, &usec), 0);
        assert_int_equal(bytes, bytes0);
        assert_int_equal(usec, usec0);

        /* A little read: no room yet for the writer, but the time moves.
         * The kernel frees what sendfile queued a message (64 KiB of
         * pages) at a time: a little is more than one. */
        uint8_t sink[48 * 1024];
        for (unsigned i = 0; i < 2; i++)
                assert_int_equal(read(sv[1], sink, sizeof(sink)), (ssize_t)sizeof(sink));
        run_for(f->event, 10);
        assert_int_equal(paf_flow_get_write_progress(flow, &bytes, &usec), 0);
        assert_true(usec > usec0);
        assert_int_equal(s.n, 0);

        /* Read on: partial sends count before the completion. */
        uint64_t last = bytes;
        bool moved = false;
        for (unsigned i = 0; i < 40 && !moved; i++) {
                assert_true(read(sv[1], sink, sizeof(sink)) > 0);
                run_for(f->event, 5);
                assert_int_equal(paf_flow_get_write_progress(flow, &bytes, NULL), 0);
                moved = bytes > last && s.n == 0;
        }
        assert_true(moved);
        close_and_wait(f->event, flow);
        assert_int_equal(s.errors[0], -ECANCELED);
        close(sv[1]);
}

static void test_bad_arguments(void **state) {
        fixture *f = *state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        paf_flow *flow;
        assert_int_equal(paf_socket_flow_new(f->event, sv[0], "test", &flow), 0);
        assert_int_equal(paf_flow_send_file(NULL, f->file, 0, 1, NULL, NULL), -EINVAL);
        assert_int_equal(paf_flow_send_file(flow, -1, 0, 1, NULL, NULL), -EINVAL);
        assert_int_equal(paf_flow_send_file(flow, f->file, UINT64_MAX, 1, NULL, NULL), -EINVAL);
        assert_int_equal(paf_flow_send_file(flow, f->file, INT64_MAX, 2, NULL, NULL), -EINVAL);
        /* Nothing to send completes, from the loop. */
        seq s = {0};
        tag t = {&s, 0};
        assert_int_equal(paf_flow_send_file(flow, f->file, 0, 0, on_done, &t), 0);
        assert_int_equal(s.n, 0);
        run_for(f->event, 10);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.errors[0], 0);
        assert_int_equal(paf_flow_shutdown(flow, NULL, NULL), 0);
        assert_int_equal(paf_flow_send_file(flow, f->file, 0, 1, NULL, NULL), -EPIPE);
        close_and_wait(f->event, flow);
        close(sv[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_unix_send_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tcp_send_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_old_plugin_copy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_old_plugin_copy_sync, setup, teardown),
                cmocka_unit_test_setup_teardown(test_declined_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_declined_later, setup, teardown),
                cmocka_unit_test_setup_teardown(test_file_shorter, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel_and_peer_gone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
