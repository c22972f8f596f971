/* tests/common/paf-test.h — helpers the cmocka suites share: running the
 * event loop with a bound, counting fds, closing a flow, and the 64 MiB
 * transfer that shows a transport's backpressure, and the private network
 * namespace and thread checks of the resolver suites. Include after <cmocka.h>. */
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <paf.h>

#define PAF_TEST_UNUSED __attribute__((unused))

static PAF_TEST_UNUSED uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run the loop until *done, for at most timeout_ms; returns *done. */
static PAF_TEST_UNUSED bool run_until(sd_event *e, const bool *done, unsigned timeout_ms) {
        uint64_t end = now_ms() + timeout_ms;
        while (!*done && now_ms() < end)
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
        return *done;
}

static PAF_TEST_UNUSED void run_for(sd_event *e, unsigned ms) {
        uint64_t end = now_ms() + ms;
        while (now_ms() < end)
                assert_true(sd_event_run(e, 5 * 1000) >= 0);
}

static PAF_TEST_UNUSED int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        assert_non_null(d);
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

/* In run-test.sh --netns: private network and mount namespaces, where
 * /etc/hosts is tests/hosts bind-mounted (so the very same inode). */
static PAF_TEST_UNUSED bool in_test_namespace(void) {
        const char *src = getenv("PAF_TEST_SRCDIR");
        if (!src)
                return false;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/tests/hosts", src);
        struct stat a, b;
        if (stat(path, &a) < 0 || stat("/etc/hosts", &b) < 0)
                return false;
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Threads of this process: resolver threads outlive the lookups they
 * were started for. */
static PAF_TEST_UNUSED int count_threads(void) {
        DIR *d = opendir("/proc/self/task");
        assert_non_null(d);
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

/* Wait (at most ms) until no more than n threads are left; true if so. */
static PAF_TEST_UNUSED bool wait_threads(int n, unsigned ms) {
        uint64_t end = now_ms() + ms;
        while (count_threads() > n && now_ms() < end)
                usleep(1000);
        return count_threads() <= n;
}

/*
 * Make name lookups hang: in the test's own mount namespace, /etc/hosts
 * becomes a FIFO, whose open() blocks the resolver until someone opens the
 * other end. Only where run-test.sh --netns gave us private namespaces.
 */
typedef struct hosts_gate {
        char dir[64];
        char fifo[96];
        bool active;
} hosts_gate;

static PAF_TEST_UNUSED bool hosts_gate_close(hosts_gate *g) {
        if (!in_test_namespace() || geteuid() != 0)
                return false;
        snprintf(g->dir, sizeof(g->dir), "/tmp/paf-test-hosts-XXXXXX");
        assert_non_null(mkdtemp(g->dir));
        snprintf(g->fifo, sizeof(g->fifo), "%s/hosts", g->dir);
        assert_int_equal(mkfifo(g->fifo, 0644), 0);
        if (mount(g->fifo, "/etc/hosts", "none", MS_BIND, NULL) < 0) {
                unlink(g->fifo);
                rmdir(g->dir);
                return false;
        }
        g->active = true;
        return true;
}

/* Let every blocked reader through with an empty file; true if one was. */
static PAF_TEST_UNUSED bool hosts_gate_flush(hosts_gate *g) {
        bool any = false;
        for (unsigned i = 0; i < 1000; i++) {
                /* Without a reader waiting, a non-blocking open fails (ENXIO). */
                int fd = open(g->fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
                if (fd < 0)
                        return any;
                close(fd);
                any = true;
                usleep(1000);
        }
        return any;
}

static PAF_TEST_UNUSED void hosts_gate_open(hosts_gate *g) {
        if (!g->active)
                return;
        /* Lazy: a lookup still inside open() keeps the FIFO busy. */
        assert_int_equal(umount2("/etc/hosts", MNT_DETACH), 0);
        hosts_gate_flush(g);
        unlink(g->fifo);
        rmdir(g->dir);
        g->active = false;
}

static PAF_TEST_UNUSED void paf_test_on_closed(paf_flow *flow, void *userdata) {
        (void)flow;
        (*(unsigned *)userdata)++;
}

/* Close and wait for the close handler, which never runs inside the call. */
static PAF_TEST_UNUSED void close_and_wait(sd_event *e, paf_flow *flow) {
        unsigned closed = 0;
        paf_flow_close(flow, paf_test_on_closed, &closed);
        assert_int_equal(closed, 0);
        uint64_t end = now_ms() + 2000;
        while (!closed && now_ms() < end)
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
        assert_int_equal(closed, 1);
}

/* ---- reading and writing a flow in a test ---- */

/* Collects what a flow delivers, until its end or an error. */
typedef struct reader {
        uint8_t *data; /* the caller frees it */
        size_t len;
        bool eof, ended;
        int error;
} reader;

static PAF_TEST_UNUSED void on_read(paf_flow *flow, const void *data, size_t len, int error,
                                    void *userdata) {
        (void)flow;
        reader *r = userdata;
        if (error < 0 || len == 0) {
                r->error = error;
                r->eof = error == 0;
                r->ended = true;
                return;
        }
        r->data = realloc(r->data, r->len + len);
        assert_non_null(r->data);
        memcpy(r->data + r->len, data, len);
        r->len += len;
}

static PAF_TEST_UNUSED void on_written(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        *(int *)userdata = error == 0 ? 1 : error;
}

/* Write text and wait (5 s at most) for the write to complete. */
static PAF_TEST_UNUSED void write_and_wait(sd_event *e, paf_flow *flow, const char *text) {
        int done = 0;
        struct iovec iov = {(void *)text, strlen(text)};
        assert_int_equal(paf_flow_write(flow, &iov, 1, on_written, &done), 0);
        uint64_t end = now_ms() + 5000;
        while (!done && now_ms() < end)
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
        assert_int_equal(done, 1);
}

/* Run the loop (5 s at most) until r holds n bytes. */
static PAF_TEST_UNUSED void read_exactly(sd_event *e, reader *r, size_t n) {
        uint64_t end = now_ms() + 5000;
        while (r->len < n && !r->ended && now_ms() < end)
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
        assert_int_equal(r->len, n);
}

/* ---- a large transfer with backpressure ---- */

#define TRANSFER_SIZE ((size_t)64 * 1024 * 1024)
#define CHUNK_SIZE ((size_t)256 * 1024)
#define PAUSE_AT ((size_t)1024 * 1024)
#define BUFFERING_LIMIT ((size_t)16 * 1024 * 1024)

static PAF_TEST_UNUSED uint8_t transfer_pattern(size_t i) {
        return (uint8_t)(i ^ (i >> 8) ^ (i >> 17) ^ 0x5a);
}

typedef struct transfer {
        paf_flow *writer;
        uint8_t *chunk;
        size_t written;   /* handed to paf_flow_write */
        size_t completed; /* completion callbacks run */
        size_t received;
        int write_error, read_error;
        bool corrupt, paused_once, paused, eof;
} transfer;

static PAF_TEST_UNUSED void transfer_write_next(transfer *t);

static PAF_TEST_UNUSED void transfer_on_written(paf_flow *flow, int error, void *userdata) {
        (void)flow;
        transfer *t = userdata;
        if (error < 0) {
                t->write_error = error;
                return;
        }
        t->completed = t->written;
        transfer_write_next(t);
}

/* One chunk in flight at a time: the writer buffers at most one chunk. */
static PAF_TEST_UNUSED void transfer_write_next(transfer *t) {
        if (t->written == TRANSFER_SIZE) {
                assert_int_equal(paf_flow_shutdown(t->writer, NULL, NULL), 0);
                return;
        }
        size_t n =
                TRANSFER_SIZE - t->written < CHUNK_SIZE ? TRANSFER_SIZE - t->written : CHUNK_SIZE;
        for (size_t i = 0; i < n; i++)
                t->chunk[i] = transfer_pattern(t->written + i);
        struct iovec iov = {t->chunk, n};
        t->written += n;
        assert_int_equal(paf_flow_write(t->writer, &iov, 1, transfer_on_written, t), 0);
}

static PAF_TEST_UNUSED void transfer_on_read(paf_flow *flow, const void *data, size_t len,
                                             int error, void *userdata) {
        transfer *t = userdata;
        if (error < 0) {
                t->read_error = error;
                return;
        }
        if (len == 0) {
                t->eof = true;
                return;
        }
        const uint8_t *p = data;
        for (size_t i = 0; i < len; i++)
                if (p[i] != transfer_pattern(t->received + i)) {
                        t->corrupt = true;
                        break;
                }
        t->received += len;
        if (!t->paused_once && t->received >= PAUSE_AT) {
                t->paused_once = t->paused = true;
                assert_int_equal(paf_flow_read_stop(flow), 0);
        }
}

/*
 * Send TRANSFER_SIZE bytes from writer to reader. The reader stops reading
 * after PAUSE_AT bytes: the writer's completions must then stop advancing
 * well below BUFFERING_LIMIT (backpressure), and once reading resumes every
 * byte arrives, intact and in order, followed by EOF.
 */
static PAF_TEST_UNUSED void big_transfer(sd_event *event, paf_flow *writer, paf_flow *receiver) {
        transfer t = {.writer = writer};
        t.chunk = malloc(CHUNK_SIZE);
        assert_non_null(t.chunk);
        assert_int_equal(paf_flow_read_start(receiver, transfer_on_read, &t), 0);
        transfer_write_next(&t);

        assert_true(run_until(event, &t.paused, 20000));

        /* The writer fills the transport's buffers, then must wait: after a
         * whole second of nobody reading, it has had only a bounded part of
         * the 64 MiB taken (without backpressure, all of it would complete at
         * once). Wall-clock "no progress for N ms" checks would be fooled by
         * a loaded machine; this bound is not. */
        run_for(event, 1000);
        assert_true(t.paused);
        assert_true(t.completed < BUFFERING_LIMIT);
        assert_true(t.written - t.completed <= CHUNK_SIZE);
        assert_true(paf_flow_get_write_queue_size(writer) <= CHUNK_SIZE);
        assert_true(t.received < BUFFERING_LIMIT);
        assert_false(t.eof);
        assert_int_equal(t.write_error, 0);

        /* Resume: everything arrives, intact and in order. */
        t.paused = false;
        assert_int_equal(paf_flow_read_start(receiver, transfer_on_read, &t), 0);
        uint64_t end = now_ms() + 120000;
        while (!t.eof && t.read_error == 0 && now_ms() < end)
                assert_true(sd_event_run(event, 10 * 1000) >= 0);
        assert_true(t.eof);
        assert_int_equal(t.read_error, 0);
        assert_int_equal(t.write_error, 0);
        assert_int_equal(t.received, TRANSFER_SIZE);
        assert_int_equal(t.completed, TRANSFER_SIZE);
        assert_false(t.corrupt);
        free(t.chunk);
}
