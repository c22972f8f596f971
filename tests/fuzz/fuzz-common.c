/* tests/fuzz/fuzz-common.c — the in-memory flow and loop helpers of the fuzz harnesses. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"

_Noreturn void fuzz_fail(const char *file, int line, const char *what) {
        fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
        abort();
}

__attribute__((no_sanitize("coverage"))) void fuzz_touch(const void *p, size_t n) {
        const volatile uint8_t *b = p;
        uint8_t x = 0;
        for (size_t i = 0; i < n; i++)
                x ^= b[i];
        (void)x;
}

void fuzz_setup(void) {
        paf_log_set_level(PAF_LOG_ERR);
        /* Registries read the plugin path from the environment. */
        setenv("PAF_PLUGIN_PATH", "", 1);
}

sd_event *fuzz_event_new(void) {
        sd_event *e = NULL;
        FUZZ_CHECK(sd_event_new(&e) >= 0);
        return e;
}

void fuzz_event_free(sd_event *e) {
        /* Whatever is still ready must run first: a source that then stays
         * (enabled or not) holds a reference on e and is reported as leaked. */
        fuzz_run(e, 1000);
        sd_event_unref(e);
}

void fuzz_run(sd_event *e, unsigned max_iterations) {
        for (unsigned i = 0; i < max_iterations; i++) {
                int r = sd_event_run(e, 0);
                FUZZ_CHECK(r >= 0);
                if (r == 0)
                        return;
        }
        fuzz_fail(__FILE__, __LINE__, "the event loop still finds work: it spins");
}

/* ---- the in-memory flow ---- */

struct memflow {
        paf_flow *flow;
        memflow_options o;
        sd_event_source *defer;

        uint8_t *in; /* owned copy of everything fed */
        size_t in_len, in_pos;
        bool end_due, end_delivered;

        bool writing; /* a write waits for the loop to complete it */
        size_t written;
        bool shut;
};

static unsigned n_alive;

unsigned memflow_get_n_alive(void) {
        return n_alive;
}

static bool mf_has_work(memflow *m) {
        if (m->writing)
                return true;
        if (!paf_flow_is_reading(m->flow))
                return false;
        return m->in_pos < m->in_len || (m->end_due && !m->end_delivered);
}

static void mf_kick(memflow *m) {
        if (mf_has_work(m))
                FUZZ_CHECK(sd_event_source_set_enabled(m->defer, SD_EVENT_ONESHOT) >= 0);
}

static int mf_on_defer(sd_event_source *s, void *userdata) {
        (void)s;
        memflow *m = userdata;
        if (m->writing) {
                m->writing = false;
                paf_flow_write_done(m->flow, 0);
                /* The completion may have closed the flow: m is then gone
                 * only from the loop, after this call (flow.h). */
        }
        if (!paf_flow_is_reading(m->flow)) {
                mf_kick(m);
                return 0;
        }
        if (m->in_pos < m->in_len) {
                size_t n = m->in_len - m->in_pos;
                size_t piece = m->o.piece;
                if (piece > 0 && piece < m->in_len / MEMFLOW_MAX_PIECES + 1)
                        piece = m->in_len / MEMFLOW_MAX_PIECES + 1;
                if (piece > 0 && n > piece)
                        n = piece;
                /* An exact-size copy freed right after: a consumer reading
                 * past it, or keeping it past the call, is caught by ASan. */
                uint8_t *p = malloc(n);
                FUZZ_CHECK(p);
                memcpy(p, m->in + m->in_pos, n);
                m->in_pos += n;
                paf_flow_deliver(m->flow, p, n, 0);
                free(p);
        } else if (m->end_due && !m->end_delivered) {
                m->end_delivered = true;
                paf_flow_deliver(m->flow, NULL, 0, m->o.end == MEMFLOW_RESET ? -ECONNRESET : 0);
        }
        mf_kick(m);
        return 0;
}

static int mf_read_start(paf_flow *flow) {
        mf_kick(paf_flow_get_impl(flow));
        return 0;
}

static int mf_read_stop(paf_flow *flow) {
        memflow *m = paf_flow_get_impl(flow);
        if (!m->writing)
                return sd_event_source_set_enabled(m->defer, SD_EVENT_OFF);
        return 0;
}

static int mf_write(paf_flow *flow, const struct iovec *iov, size_t n_iov) {
        memflow *m = paf_flow_get_impl(flow);
        FUZZ_CHECK(!m->writing);
        FUZZ_CHECK(!m->shut);
        size_t n = 0;
        for (size_t i = 0; i < n_iov; i++) {
                fuzz_touch(iov[i].iov_base, iov[i].iov_len);
                n += iov[i].iov_len;
        }
        if (m->o.write_budget > 0 && m->written + n > m->o.write_budget)
                return -EPIPE;
        m->written += n;
        if (m->o.on_write)
                m->o.on_write(flow, iov, n_iov, m->o.userdata);
        if (m->o.async_writes) {
                m->writing = true;
                FUZZ_CHECK(sd_event_source_set_enabled(m->defer, SD_EVENT_ONESHOT) >= 0);
        } else
                paf_flow_write_done(flow, 0);
        return 0;
}

static int mf_shutdown(paf_flow *flow) {
        memflow *m = paf_flow_get_impl(flow);
        FUZZ_CHECK(!m->writing);
        m->shut = true;
        return 0;
}

static void mf_close(paf_flow *flow) {
        memflow *m = paf_flow_get_impl(flow);
        if (m->o.handle)
                *m->o.handle = NULL;
        sd_event_source_disable_unref(m->defer);
        free(m->in);
        free(m);
        FUZZ_CHECK(n_alive > 0);
        n_alive--;
}

static const paf_flow_ops memflow_ops = {
        .struct_size = sizeof(paf_flow_ops),
        .read_start = mf_read_start,
        .read_stop = mf_read_stop,
        .write = mf_write,
        .shutdown = mf_shutdown,
        .close = mf_close,
};

int memflow_new(sd_event *e, const void *in, size_t len, const memflow_options *o, paf_flow **ret) {
        memflow *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->o = *o;
        if (len > 0) {
                m->in = malloc(len);
                if (!m->in) {
                        free(m);
                        return -ENOMEM;
                }
                memcpy(m->in, in, len);
                m->in_len = len;
        }
        m->end_due = o->end == MEMFLOW_EOF || o->end == MEMFLOW_RESET;
        int r = sd_event_add_defer(e, &m->defer, mf_on_defer, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->defer, SD_EVENT_OFF);
        if (r >= 0)
                r = paf_flow_new(e, &memflow_ops, m, "memory", "peer:1", "local:2", &m->flow);
        if (r < 0) {
                sd_event_source_disable_unref(m->defer);
                free(m->in);
                free(m);
                return r;
        }
        n_alive++;
        if (o->handle)
                *o->handle = m->flow;
        *ret = m->flow;
        return 0;
}

void memflow_feed(paf_flow *flow, const void *in, size_t len) {
        memflow *m = paf_flow_get_impl(flow);
        if (len == 0)
                return;
        uint8_t *b = realloc(m->in, m->in_len + len);
        FUZZ_CHECK(b);
        memcpy(b + m->in_len, in, len);
        m->in = b;
        m->in_len += len;
        mf_kick(m);
}

void memflow_end_now(paf_flow *flow) {
        memflow *m = paf_flow_get_impl(flow);
        m->end_due = true;
        mf_kick(m);
}

size_t memflow_get_written(paf_flow *flow) {
        memflow *m = paf_flow_get_impl(flow);
        return m->written;
}

char *fuzz_take_string(const uint8_t **data, size_t *size, size_t max) {
        const uint8_t *nul = memchr(*data, 0, *size);
        size_t n = nul ? (size_t)(nul - *data) : *size;
        size_t used = nul ? n + 1 : n;
        if (n > max)
                n = max;
        char *s = malloc(n + 1);
        FUZZ_CHECK(s);
        memcpy(s, *data, n);
        s[n] = '\0';
        *data += used;
        *size -= used;
        return s;
}
