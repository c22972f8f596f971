/* tests/fuzz/fuzz-common.h — what the libFuzzer harnesses share: an in-memory flow, a bounded
 * run of the event loop, and a loud failure for broken invariants. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <paf.h>

/* A broken invariant is a finding: abort, so that libFuzzer keeps the input. */
#define FUZZ_CHECK(cond)                                                                           \
        do {                                                                                       \
                if (!(cond))                                                                       \
                        fuzz_fail(__FILE__, __LINE__, #cond);                                      \
        } while (0)
_Noreturn void fuzz_fail(const char *file, int line, const char *what);

/* Read every byte of a buffer the code under test hands out: one that is shorter than it says,
 * or already freed, is caught by ASan here. Not instrumented for coverage: the harness's own
 * loops are no feedback worth the cost. */
void fuzz_touch(const void *p, size_t n);

/* Quiet logging (errors only) and an environment that reads nothing of the developer's. */
void fuzz_setup(void);

/* A fresh loop for one input; freed with fuzz_event_free(), which checks that nothing is left
 * on it: a source still attached would keep the loop alive, and LeakSanitizer reports it. */
sd_event *fuzz_event_new(void);
void fuzz_event_free(sd_event *e);

/* Run the loop until nothing is ready (timers in the future do not count). A loop that keeps
 * finding work past max_iterations spins: that is a finding too. */
void fuzz_run(sd_event *e, unsigned max_iterations);

/*
 * The in-memory flow: it delivers a byte string (the input) in pieces, at most `piece` bytes
 * at a time (0: all at once; pieces grow so that an input takes at most MEMFLOW_MAX_PIECES
 * deliveries, which bounds the cost of an input), then the end chosen by `end`. Writes are taken
 * whole, at once or from the loop, and counted; optionally they fail past a byte budget.
 */
typedef enum memflow_end {
        MEMFLOW_EOF,      /* end of stream after the input */
        MEMFLOW_OPEN,     /* nothing after the input: the peer is silent */
        MEMFLOW_RESET,    /* -ECONNRESET after the input */
        MEMFLOW_LATE_EOF, /* end of stream once memflow_end_now() is called */
} memflow_end;

#define MEMFLOW_MAX_PIECES 256

typedef struct memflow_options {
        size_t piece;
        memflow_end end;
        bool async_writes;   /* complete writes from the loop, not from inside write */
        size_t write_budget; /* 0: unlimited; past it writes fail with -EPIPE */
        /* Called with every write (before it completes); may feed more input. */
        void (*on_write)(paf_flow *flow, const struct iovec *iov, size_t n_iov, void *userdata);
        void *userdata;
        /* Set to NULL when the consumer closed the flow (may be NULL). */
        paf_flow **handle;
} memflow_options;

typedef struct memflow memflow;

/* in is not copied: it must outlive the flow's deliveries (the input does). */
int memflow_new(sd_event *e, const void *in, size_t len, const memflow_options *o, paf_flow **ret);
/* Append more input (not copied either), e.g. a response to what was written. */
void memflow_feed(paf_flow *flow, const void *in, size_t len);
/* For MEMFLOW_LATE_EOF: the end of stream comes now. */
void memflow_end_now(paf_flow *flow);
/* Bytes written so far, and whether the write side was shut down. */
size_t memflow_get_written(paf_flow *flow);
/* In-memory flows alive in this process: 0 once an input's teardown is done. */
unsigned memflow_get_n_alive(void);

/* Split an input at the first NUL into a string (NUL-terminated copy, malloc'ed) and the rest. */
char *fuzz_take_string(const uint8_t **data, size_t *size, size_t max);
