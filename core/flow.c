/* core/flow.c — the generic flow: consumer callbacks, write queue and dispatch. */
#include <time.h>
#include <unistd.h>

#include "paf-internal.h"

/*
 * How a flow lives.
 *
 * The consumer holds one reference, dropped when paf_flow_close() has
 * finished (implementation closed, every pending completion delivered, close
 * handler called). The core takes a temporary reference around each call into
 * consumer code, so a consumer may close the flow from inside any callback
 * without the flow vanishing under the caller.
 *
 * Every consumer callback except the read handler runs from one defer source:
 * that is what guarantees that completions never run from inside
 * paf_flow_write() even when the implementation finishes synchronously.
 */

typedef enum req_kind {
        REQ_WRITE,
        REQ_SHUTDOWN,
        REQ_FILE, /* paf_flow_send_file() */
} req_kind;

typedef struct flow_req flow_req;
struct flow_req {
        flow_req *next;
        req_kind kind;
        size_t size; /* bytes, for the queue size */
        paf_flow_write_handler_t handler;
        void *userdata;
        int error;
        /* REQ_FILE: size bytes of fd from offset. Copied (the flow has no
         * send_file, or declined this one), it goes as pieces read into the
         * flow's file buffer: done bytes so far, piece the one in flight,
         * in iov[0]. */
        int fd;
        bool copy;
        uint64_t offset;
        size_t done, piece;
        size_t n_iov;
        /* The first of writes joined into one (see flow_pump()): all their
         * buffers, which the implementation holds until the completion. */
        struct iovec *joined;
        size_t cap;         /* room in iov: SPARE_IOV for one that may be kept for reuse */
        struct iovec iov[]; /* the caller's array, copied */
};

/* A flow keeps one finished write request with room for this many buffers,
 * so that a steady writer (a server's responses, paf bench's requests)
 * allocates nothing per write. */
#define SPARE_IOV 16

/* A file body the core copies goes in pieces this large: one pread(2) and
 * one write each; at most FILE_PIECES_PER_RUN of them in a row when the
 * implementation completes at once, then the loop has its turn. */
#define FILE_PIECE (128 * 1024)
#define FILE_PIECES_PER_RUN 8

/* Writes waiting together go to the implementation as one, up to this many
 * buffers (a socket's sendmsg takes 64) and bytes. */
#define JOIN_IOV_MAX 64
#define JOIN_BYTES_MAX (256 * 1024)

typedef struct req_list {
        flow_req *head, *tail;
} req_list;

/*
 * What the flows of one event loop share: the deferred source that
 * dispatches their completions and closes (one per loop rather than one
 * per flow: an idle connection then holds none), the flows waiting for it,
 * and finished write requests kept for reuse. Loops are used from one
 * thread each.
 */
typedef struct flow_loop flow_loop;
struct flow_loop {
        sd_event *event; /* borrowed: the flows hold it */
        sd_event_source *defer;
        unsigned n_ref;            /* one per flow */
        paf_flow *head, *tail;     /* waiting for the defer, in order */
        uint64_t generation;       /* of the dispatch running, see loop_on_defer() */
        flow_req *spares;          /* SPARE_IOV requests, for the next writes */
        unsigned n_spares;
        flow_loop *next;
};

/* Kept per loop: enough for a burst of writes, nothing per connection. */
#define LOOP_SPARES 64

static _Thread_local flow_loop *flow_loops _tls_ie_;

struct paf_flow {
        unsigned n_ref;
        sd_event *event;
        flow_loop *loop;
        /* In loop's list: completions or a close wait for its defer. */
        paf_flow *pending_prev, *pending_next;
        uint64_t pending_generation;
        bool pending;

        const paf_flow_ops *ops;
        void *impl;
        char *protocol, *peer, *local;
        paf_registry *registry;
        void *userdata;

        paf_flow_read_handler_t read_handler;
        void *read_userdata;
        bool reading;
        bool read_ended; /* EOF or an error was delivered: nothing more comes */

        req_list queue;      /* not handed to the implementation yet */
        flow_req *in_flight; /* the one the implementation works on */
        req_list joined;     /* handed over with in_flight, as one write */
        req_list done;       /* finished, completion callback not run yet */
        size_t queue_size;
        int write_error; /* sticky: once a write failed the stream is broken */
        /* A copied file's buffer (FILE_PIECE at most), while one is sent. */
        uint8_t *file_buf;
        size_t file_buf_size;
        bool copy_next; /* the piece in flight went: read and write the next */
        /* Write progress: bytes the transport took, of in_flight so far and
         * in total, and when it last took any; in_flight_limit is how far
         * into in_flight the implementation was handed (a copied file's
         * piece ends short of the whole). */
        size_t in_flight_taken, in_flight_limit;
        uint64_t bytes_written;
        uint64_t progress_usec;
        bool shutdown_queued;
        bool pumping;

        /* > 0 while the implementation is inside paf_flow_deliver(): closing
         * the implementation then would free it under its own feet. */
        unsigned impl_depth;
        /* While paf_flow_deliver() runs completions itself: what they would
         * schedule on the loop waits for its end, where most of it has been
         * done already (toggling the loop's defer costs more than a small
         * answer's parsing). */
        bool inline_completions;
        bool schedule_held;

        bool closing;
        bool impl_closed;
        bool close_notified;
        paf_flow_close_handler_t close_handler;
        void *close_userdata;
};

/* Whether ops (of struct_size bytes) has a non-NULL member. */
#define OPS_HAS(ops, member)                                                                       \
        ((ops)->struct_size >= offsetof(paf_flow_ops, member) + sizeof((ops)->member) &&           \
         (ops)->member)

static void list_append(req_list *l, flow_req *q) {
        q->next = NULL;
        if (l->tail)
                l->tail->next = q;
        else
                l->head = q;
        l->tail = q;
}

static flow_req *list_pop(req_list *l) {
        flow_req *q = l->head;
        if (q) {
                l->head = q->next;
                if (!l->head)
                        l->tail = NULL;
                q->next = NULL;
        }
        return q;
}

/* Completion batches run right after a delivery (see paf_flow_deliver()). */
#define INLINE_COMPLETION_ROUNDS 32

static paf_flow *flow_ref(paf_flow *f) {
        f->n_ref++;
        return f;
}

static void flow_unschedule(paf_flow *f);
static void loop_unref(flow_loop *l);

static void flow_free(paf_flow *f) {
        assert(f->impl_closed);
        assert(!f->queue.head && !f->done.head && !f->in_flight && !f->joined.head);
        flow_unschedule(f);
        loop_unref(f->loop);
        sd_event_unref(f->event);
        free(f->file_buf);
        free(f->protocol);
        free(f->peer);
        free(f->local);
        /* Last: the registry may unload the plugin that implemented us. */
        paf_registry_unref(f->registry);
        free(f);
}

static void flow_unref(paf_flow *f) {
        assert(f->n_ref > 0);
        if (--f->n_ref == 0)
                flow_free(f);
}

static void flow_schedule(paf_flow *f) {
        if (f->pending)
                return;
        if (f->inline_completions) {
                f->schedule_held = true;
                return;
        }
        flow_loop *l = f->loop;
        f->pending = true;
        f->pending_generation = l->generation;
        f->pending_next = NULL;
        f->pending_prev = l->tail;
        if (l->tail)
                l->tail->pending_next = f;
        else {
                l->head = f;
                paf_loop_deferred++;
                int r = sd_event_source_set_enabled(l->defer, SD_EVENT_ONESHOT);
                if (r < 0)
                        /* Only fails when the event loop is gone; nothing can run then. */
                        paf_log(PAF_LOG_ERR, "flow %s: cannot schedule completions: %s",
                                f->peer, strerror(-r));
        }
        l->tail = f;
}

/* Nothing waits for the defer any more (or the flow goes). */
static void flow_unschedule(paf_flow *f) {
        if (!f->pending)
                return;
        flow_loop *l = f->loop;
        if (f->pending_prev)
                f->pending_prev->pending_next = f->pending_next;
        else
                l->head = f->pending_next;
        if (f->pending_next)
                f->pending_next->pending_prev = f->pending_prev;
        else
                l->tail = f->pending_prev;
        f->pending = false;
        f->pending_prev = f->pending_next = NULL;
        if (!l->head)
                (void)sd_event_source_set_enabled(l->defer, SD_EVENT_OFF);
}

static void flow_complete(paf_flow *f, flow_req *q, int error) {
        q->error = error;
        list_append(&f->done, q);
        flow_schedule(f);
}

static uint64_t flow_now(paf_flow *f) {
        /* The loop's time: what consumers compare it with (their timers). */
        return paf_loop_now(f->event);
}

/* n more bytes of the write in flight were taken; never more than its size,
 * whatever unit a layered implementation counts in. */
static void flow_progress(paf_flow *f, size_t n) {
        flow_req *q = f->in_flight;
        if (q) {
                size_t left = f->in_flight_limit - f->in_flight_taken;
                if (n > left)
                        n = left;
                f->in_flight_taken += n;
                f->bytes_written += n;
        }
        f->progress_usec = flow_now(f);
}

static void flow_close_impl(paf_flow *f) {
        if (f->impl_closed)
                return;
        f->impl_closed = true;
        if (OPS_HAS(f->ops, close))
                f->ops->close(f);
}

/* The file buffer goes with the file: a connection between responses
 * holds none. */
static void flow_file_finished(paf_flow *f) {
        free(f->file_buf);
        f->file_buf = NULL;
        f->file_buf_size = 0;
}

/* The request in flight failed, and the implementation holds nothing of it
 * (it refused it, or a copied file's piece could not be read or written). */
static void flow_fail_in_flight(paf_flow *f, int error) {
        flow_req *q = f->in_flight;
        f->in_flight = NULL;
        f->copy_next = false;
        f->write_error = error;
        if (q->kind == REQ_FILE && q->copy)
                flow_file_finished(f);
        flow_complete(f, q, error);
}

/* Read the next piece of the copied file in flight and write it. */
static void flow_copy_piece(paf_flow *f) {
        flow_req *q = f->in_flight;
        assert(q && q->kind == REQ_FILE && q->copy && q->done < q->size);
        size_t want = q->size - q->done;
        if (want > FILE_PIECE)
                want = FILE_PIECE;
        if (f->file_buf_size < want) {
                /* Sized for the file, not always FILE_PIECE: small bodies
                 * are the common case. */
                size_t size = q->size < FILE_PIECE ? q->size : FILE_PIECE;
                uint8_t *b = realloc(f->file_buf, size);
                if (!b) {
                        flow_fail_in_flight(f, -ENOMEM);
                        return;
                }
                f->file_buf = b;
                f->file_buf_size = size;
        }
        ssize_t k;
        do
                k = pread(q->fd, f->file_buf, want, (off_t)(q->offset + q->done));
        while (k < 0 && errno == EINTR);
        if (k <= 0) {
                /* The file shrank (or failed) under us: what was promised
                 * cannot be sent, and the stream is broken. */
                flow_fail_in_flight(f, k < 0 ? -errno : -ENODATA);
                return;
        }
        q->piece = (size_t)k;
        q->iov[0] = (struct iovec){f->file_buf, q->piece};
        f->in_flight_limit = q->done + q->piece;
        size_t done = q->done;
        int r = f->ops->write(f, q->iov, 1);
        /* Unless the implementation already called paf_flow_write_done()
         * for this piece, whose result then stands. */
        if (r < 0 && f->in_flight == q && q->done == done && !f->copy_next)
                flow_fail_in_flight(f, r);
}

/* Hand a file to the implementation, or start copying it. */
static void flow_start_file(paf_flow *f, flow_req *q) {
        if (OPS_HAS(f->ops, send_file)) {
                int r = f->ops->send_file(f, q->fd, q->offset, q->size);
                if (f->in_flight != q || f->copy_next)
                        return; /* done, failed or handed back already */
                if (r >= 0)
                        return;
                if (r != -EOPNOTSUPP || f->in_flight_taken > 0) {
                        flow_fail_in_flight(f, r);
                        return;
                }
        }
        q->copy = true;
        q->done = 0;
        flow_copy_piece(f);
}

/* q, the write in flight, and the ones joined to it, complete together. */
static void flow_complete_in_flight(paf_flow *f, flow_req *q, int error) {
        flow_complete(f, q, error);
        flow_req *j;
        while ((j = list_pop(&f->joined)))
                flow_complete(f, j, error);
}

/* Joins the writes queued right behind q (taken for the write in flight)
 * to it: one implementation write for all, so that the answers to
 * pipelined requests, made during one delivery, leave in one sendmsg.
 * Returns the buffers to write, in *iov. Nothing waits to be joined: only
 * what is queued already is taken. */
static size_t flow_join(paf_flow *f, flow_req *q, const struct iovec **iov) {
        size_t n_iov = q->n_iov, size = q->size, n = 0;
        for (flow_req *j = f->queue.head; j && j->kind == REQ_WRITE && j->size > 0 &&
                                          n_iov + j->n_iov <= JOIN_IOV_MAX &&
                                          size + j->size <= JOIN_BYTES_MAX;
             j = j->next) {
                n_iov += j->n_iov;
                size += j->size;
                n++;
        }
        if (n == 0)
                return q->n_iov;
        struct iovec *all = malloc(n_iov * sizeof(*all));
        if (!all)
                return q->n_iov; /* one at a time, then */
        memcpy(all, q->iov, q->n_iov * sizeof(*all));
        size_t at = q->n_iov;
        for (size_t i = 0; i < n; i++) {
                flow_req *j = list_pop(&f->queue);
                memcpy(all + at, j->iov, j->n_iov * sizeof(*all));
                at += j->n_iov;
                list_append(&f->joined, j);
        }
        q->joined = all;
        f->in_flight_limit = size;
        *iov = all;
        return n_iov;
}

/* Hand queued requests to the implementation, one at a time. Iterative, so
 * that an implementation completing synchronously does not recurse. */
static void flow_pump(paf_flow *f) {
        if (f->pumping)
                return;
        f->pumping = true;
        unsigned pieces = 0;
        while (!f->closing) {
                if (f->in_flight) {
                        if (!f->copy_next)
                                break;
                        if (++pieces > FILE_PIECES_PER_RUN) {
                                /* Completing at once, a big file would hold
                                 * the loop for all of it. */
                                flow_schedule(f);
                                break;
                        }
                        f->copy_next = false;
                        flow_copy_piece(f);
                        continue;
                }
                flow_req *q = list_pop(&f->queue);
                if (!q)
                        break;
                if (f->write_error < 0) {
                        flow_complete(f, q, f->write_error);
                        continue;
                }
                if (q->kind == REQ_SHUTDOWN) {
                        int r = OPS_HAS(f->ops, shutdown) ? f->ops->shutdown(f) : -EOPNOTSUPP;
                        flow_complete(f, q, r < 0 ? r : 0);
                        continue;
                }
                if (q->size == 0) {
                        flow_complete(f, q, 0);
                        continue;
                }
                f->in_flight = q;
                f->in_flight_taken = 0;
                f->in_flight_limit = q->size;
                if (q->kind == REQ_FILE) {
                        flow_start_file(f, q);
                        continue;
                }
                const struct iovec *iov = q->iov;
                size_t n_iov = flow_join(f, q, &iov);
                int r = f->ops->write(f, iov, n_iov);
                /* If the implementation already called paf_flow_write_done(),
                 * that result stands. */
                if (r < 0 && f->in_flight == q) {
                        f->in_flight = NULL;
                        f->write_error = r;
                        flow_complete_in_flight(f, q, r);
                }
        }
        f->pumping = false;
}

/* Nothing left to do but tell the consumer and go. */
static bool flow_close_finished(paf_flow *f) {
        return f->closing && f->impl_closed && !f->done.head && !f->in_flight && !f->queue.head;
}

/* Run the completions that are done now; the caller holds a reference.
 * Completions added by these callbacks wait for the next iteration, so
 * that a writer whose writes complete at once cannot starve the loop. */
static void flow_run_completions(paf_flow *f) {
        req_list batch = f->done;
        f->done = (req_list){};
        flow_req *q;
        while ((q = list_pop(&batch))) {
                assert(f->queue_size >= q->size);
                f->queue_size -= q->size;
                if (q->handler)
                        q->handler(f, q->error, q->userdata);
                /* Completed, the implementation holds these no more. */
                free(q->joined);
                q->joined = NULL;
                flow_loop *l = f->loop;
                if (q->cap == SPARE_IOV && l->n_spares < LOOP_SPARES) {
                        q->next = l->spares;
                        l->spares = q;
                        l->n_spares++;
                } else
                        free(q);
        }
}

static void flow_on_defer(paf_flow *f) {
        flow_ref(f);

        if (f->closing)
                flow_close_impl(f);
        else if (f->copy_next)
                flow_pump(f);
        flow_run_completions(f);

        if (flow_close_finished(f) && !f->close_notified) {
                f->close_notified = true;
                if (f->close_handler)
                        f->close_handler(f, f->close_userdata);
                flow_unref(f); /* the consumer's reference */
        }
        flow_unref(f);
}

/* Runs the flows that waited when this dispatch began; those scheduled
 * meanwhile (a completion that writes again, say) wait for the next one,
 * so that a writer whose writes complete at once cannot starve the loop. */
static int loop_on_defer(sd_event_source *s, void *userdata) {
        (void)s;
        flow_loop *l = userdata;
        l->n_ref++; /* the last flow may go from in here */
        uint64_t generation = l->generation++;
        paf_flow *f;
        while ((f = l->head) && f->pending_generation <= generation) {
                flow_unschedule(f);
                flow_on_defer(f);
        }
        if (l->head)
                (void)sd_event_source_set_enabled(l->defer, SD_EVENT_ONESHOT);
        loop_unref(l);
        return 0;
}

static void loop_unref(flow_loop *l) {
        assert(l->n_ref > 0);
        if (--l->n_ref > 0)
                return;
        assert(!l->head);
        for (flow_loop **i = &flow_loops; *i; i = &(*i)->next)
                if (*i == l) {
                        *i = l->next;
                        break;
                }
        sd_event_source_disable_unref(l->defer);
        while (l->spares) {
                flow_req *q = l->spares;
                l->spares = q->next;
                free(q);
        }
        free(l);
}

static int loop_get(sd_event *event, flow_loop **ret) {
        for (flow_loop *l = flow_loops; l; l = l->next)
                if (l->event == event) {
                        l->n_ref++;
                        *ret = l;
                        return 0;
                }
        flow_loop *l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->event = event;
        int r = sd_event_add_defer(event, &l->defer, loop_on_defer, l);
        if (r < 0) {
                free(l);
                return r;
        }
        (void)sd_event_source_set_enabled(l->defer, SD_EVENT_OFF);
        (void)sd_event_source_set_description(l->defer, "paf-flow");
        l->n_ref = 1;
        l->next = flow_loops;
        flow_loops = l;
        *ret = l;
        return 0;
}

/* A write request with room for n_iov buffers: a kept one if it fits. */
static flow_req *req_new(paf_flow *f, size_t n_iov) {
        flow_loop *l = f->loop;
        if (n_iov <= SPARE_IOV && l->spares) {
                flow_req *q = l->spares;
                l->spares = q->next;
                l->n_spares--;
                return q;
        }
        size_t cap = n_iov <= SPARE_IOV ? SPARE_IOV : n_iov;
        flow_req *q = malloc(sizeof(*q) + cap * sizeof(struct iovec));
        if (q)
                q->cap = cap;
        return q;
}

PAF_EXPORT int paf_flow_new(sd_event *event, const paf_flow_ops *ops, void *impl,
                            const char *protocol, const char *peer, const char *local,
                            paf_flow **ret) {
        if (!event || !ops || !ret || !OPS_HAS(ops, write))
                return -EINVAL;

        paf_flow *f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->n_ref = 1;
        f->ops = ops;
        f->impl = impl;
        f->protocol = strdup(protocol ?: "?");
        f->peer = strdup(peer ?: "?");
        f->local = strdup(local ?: "?");
        int r = -ENOMEM;
        if (f->protocol && f->peer && f->local)
                r = loop_get(event, &f->loop);
        if (r < 0) {
                free(f->protocol);
                free(f->peer);
                free(f->local);
                free(f);
                return r;
        }
        f->event = sd_event_ref(event);
        *ret = f;
        return 0;
}

void paf_flow_hold_registry(paf_flow *flow, paf_registry *reg) {
        if (!flow || flow->registry == reg)
                return;
        paf_registry_ref(reg);
        paf_registry_unref(flow->registry);
        flow->registry = reg;
}

PAF_EXPORT void *paf_flow_get_impl(paf_flow *flow) {
        return flow ? flow->impl : NULL;
}

PAF_EXPORT int paf_flow_read_start(paf_flow *flow, paf_flow_read_handler_t handler,
                                   void *userdata) {
        if (!flow || !handler)
                return -EINVAL;
        if (flow->closing)
                return -ESHUTDOWN;
        flow->read_handler = handler;
        flow->read_userdata = userdata;
        if (flow->reading)
                return 0;
        flow->reading = true;
        if (OPS_HAS(flow->ops, read_start)) {
                int r = flow->ops->read_start(flow);
                if (r < 0) {
                        flow->reading = false;
                        return r;
                }
        }
        return 0;
}

PAF_EXPORT int paf_flow_read_stop(paf_flow *flow) {
        if (!flow)
                return -EINVAL;
        if (!flow->reading || flow->closing)
                return 0;
        flow->reading = false;
        if (OPS_HAS(flow->ops, read_stop))
                return flow->ops->read_stop(flow);
        return 0;
}

PAF_EXPORT bool paf_flow_is_reading(paf_flow *flow) {
        return flow && flow->reading && !flow->closing;
}

PAF_EXPORT void paf_flow_deliver(paf_flow *flow, const void *data, size_t len, int error) {
        if (!flow)
                return;
        if (!flow->reading || flow->closing || flow->read_ended) {
                /* A well-behaved implementation does not get here; dropping
                 * is all that can be done without breaking the contract. */
                if (!flow->closing)
                        paf_log(PAF_LOG_DEBUG, "flow %s: dropped a delivery while not reading",
                                flow->peer);
                return;
        }
        if (error > 0)
                error = -error;
        if (error < 0)
                len = 0;
        else if (len > 0 && !data)
                return;
        if (error < 0 || len == 0)
                flow->read_ended = true;

        flow_ref(flow);
        flow->impl_depth++;
        flow->read_handler(flow, len > 0 ? data : NULL, len, error, flow->read_userdata);
        /* A consumer answering what it just read (a request, say) usually
         * finds its write completed at once. The read handler has returned,
         * so telling it now is still "from the loop" and saves an event
         * loop iteration per exchange. The delivery still counts as running
         * (impl_depth), so a completion that closes the flow leaves the
         * implementation's close to the loop, as flow.h promises; a closing
         * flow keeps the deferred path. */
        if (flow->impl_depth == 1 && !flow->closing) {
                /* What the handler wrote goes now, together. Then a few
                 * rounds of completions: answering pipelined requests, each
                 * completion may lead to the next response, which goes at
                 * the round's end. Bounded, so that one busy connection
                 * cannot starve the others. */
                bool ran = false;
                flow->inline_completions = true;
                for (unsigned i = 0; i < INLINE_COMPLETION_ROUNDS && !flow->closing; i++) {
                        flow_pump(flow);
                        if (!flow->done.head || flow->closing)
                                break;
                        flow_run_completions(flow);
                        ran = true;
                }
                if (!flow->closing)
                        flow_pump(flow); /* the last round's writes */
                flow->inline_completions = false;
                bool left = flow->done.head || flow->closing || flow->copy_next;
                if (flow->schedule_held && left)
                        flow_schedule(flow);
                flow->schedule_held = false;
                if (ran && !left)
                        flow_unschedule(flow);
        }
        flow->impl_depth--;
        flow_unref(flow);
}

PAF_EXPORT void paf_flow_write_done(paf_flow *flow, int error) {
        if (!flow || !flow->in_flight)
                return; /* cancelled by paf_flow_close(), or a confused implementation */
        flow_req *q = flow->in_flight;
        if (flow->copy_next)
                return; /* the piece already went: a confused implementation */
        if (error > 0)
                error = -error;
        if (error == -EOPNOTSUPP && q->kind == REQ_FILE && !q->copy && flow->in_flight_taken == 0) {
                /* Declined before a byte went (a file sendfile cannot read):
                 * the core copies it. */
                q->copy = true;
                q->done = 0;
                flow->copy_next = true;
                flow_pump(flow);
                return;
        }
        if (error < 0)
                flow->write_error = error;
        else
                /* What the implementation did not report went too (all of
                 * it, for one that reports nothing). */
                flow_progress(flow, flow->in_flight_limit);
        if (error == 0 && q->kind == REQ_FILE && q->copy) {
                q->done += q->piece;
                if (q->done < q->size) {
                        /* From the pump: this may be inside the write. */
                        flow->copy_next = true;
                        flow_pump(flow);
                        return;
                }
        }
        flow->in_flight = NULL;
        if (q->kind == REQ_FILE && q->copy)
                flow_file_finished(flow);
        flow_complete_in_flight(flow, q, error);
        flow_pump(flow);
}

PAF_EXPORT void paf_flow_write_progress(paf_flow *flow, size_t n) {
        if (!flow || flow->closing)
                return;
        flow_progress(flow, n);
}

static int flow_enqueue(paf_flow *flow, flow_req *q) {
        list_append(&flow->queue, q);
        flow->queue_size += q->size;
        /* Written during a delivery (answers to what it brought), a write
         * waits for the delivery's end, where it leaves with the others
         * (paf_flow_deliver()). Anything else goes now, and takes the
         * waiting writes with it, in order. */
        if (flow->impl_depth > 0 && q->kind == REQ_WRITE)
                return 0;
        flow_pump(flow);
        return 0;
}

PAF_EXPORT int paf_flow_write(paf_flow *flow, const struct iovec *iov, size_t n_iov,
                              paf_flow_write_handler_t handler, void *userdata) {
        if (!flow || (n_iov > 0 && !iov))
                return -EINVAL;
        if (flow->closing)
                return -ESHUTDOWN;
        if (flow->shutdown_queued)
                return -EPIPE;

        size_t size = 0;
        for (size_t i = 0; i < n_iov; i++) {
                if (iov[i].iov_len > 0 && !iov[i].iov_base)
                        return -EINVAL;
                if (size + iov[i].iov_len < size)
                        return -EINVAL;
                size += iov[i].iov_len;
        }
        if (n_iov > (SIZE_MAX - sizeof(flow_req)) / sizeof(struct iovec))
                return -EINVAL;

        flow_req *q = req_new(flow, n_iov);
        if (!q)
                return -ENOMEM;
        size_t cap = q->cap;
        *q = (flow_req){
                .kind = REQ_WRITE,
                .size = size,
                .handler = handler,
                .userdata = userdata,
                .n_iov = n_iov,
                .cap = cap,
        };
        if (n_iov > 0)
                memcpy(q->iov, iov, n_iov * sizeof(struct iovec));
        return flow_enqueue(flow, q);
}

PAF_EXPORT int paf_flow_send_file(paf_flow *flow, int fd, uint64_t offset, size_t len,
                                  paf_flow_write_handler_t handler, void *userdata) {
        if (!flow || fd < 0)
                return -EINVAL;
        /* Every byte must have an off_t. */
        if (offset > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - offset)
                return -EINVAL;
        if (flow->closing)
                return -ESHUTDOWN;
        if (flow->shutdown_queued)
                return -EPIPE;

        /* SPARE_IOV room: a copied file writes from iov[0], and the request
         * may then serve as the spare for the writes that follow. */
        flow_req *q = req_new(flow, SPARE_IOV);
        if (!q)
                return -ENOMEM;
        *q = (flow_req){
                .kind = REQ_FILE,
                .size = len,
                .handler = handler,
                .userdata = userdata,
                .fd = fd,
                .offset = offset,
                .cap = SPARE_IOV,
        };
        return flow_enqueue(flow, q);
}

PAF_EXPORT int paf_flow_shutdown(paf_flow *flow, paf_flow_write_handler_t handler, void *userdata) {
        if (!flow)
                return -EINVAL;
        if (flow->closing)
                return -ESHUTDOWN;
        if (flow->shutdown_queued)
                return -EALREADY;

        flow_req *q = malloc(sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (flow_req){
                .kind = REQ_SHUTDOWN,
                .handler = handler,
                .userdata = userdata,
        };
        flow->shutdown_queued = true;
        return flow_enqueue(flow, q);
}

PAF_EXPORT void paf_flow_close(paf_flow *flow, paf_flow_close_handler_t handler, void *userdata) {
        if (!flow || flow->closing)
                return;
        /* The implementation stops delivering now, not when its close runs
         * (later, from the loop, when we are inside its delivery): until
         * then it would keep scheduling reads nobody takes, and a deferred
         * event that re-arms itself without progress starves every other
         * source of the loop, its own deferred close included. */
        if (flow->reading && OPS_HAS(flow->ops, read_stop))
                (void)flow->ops->read_stop(flow);
        /* Writes held for the end of a delivery go to the implementation
         * first, as they would have without the wait: an answer written
         * just before the close (an error page, say) is not lost. */
        flow_pump(flow);
        flow->closing = true;
        flow->close_handler = handler;
        flow->close_userdata = userdata;
        flow->reading = false;

        /* Cancel in queue order so that completions still run in order. */
        if (flow->in_flight) {
                flow_req *q = flow->in_flight;
                flow->in_flight = NULL;
                flow->copy_next = false;
                flow_complete_in_flight(flow, q, -ECANCELED);
        }
        flow_req *q;
        while ((q = list_pop(&flow->queue)))
                flow_complete(flow, q, -ECANCELED);

        /* Closed from inside the read handler, the implementation is still
         * on the stack below us: it is closed from the loop instead. */
        if (flow->impl_depth == 0)
                flow_close_impl(flow);

        if (flow_close_finished(flow) && !handler) {
                /* Nobody to call back: release now rather than on the next
                 * iteration, so a consumer that closes and stops the loop
                 * does not leak. */
                flow->close_notified = true;
                flow_unref(flow);
                return;
        }
        flow_schedule(flow);
}

PAF_EXPORT size_t paf_flow_get_write_queue_size(paf_flow *flow) {
        return flow ? flow->queue_size : 0;
}

PAF_EXPORT int paf_flow_get_write_progress(paf_flow *flow, uint64_t *ret_bytes,
                                           uint64_t *ret_usec) {
        if (!flow)
                return -EINVAL;
        if (ret_bytes)
                *ret_bytes = flow->bytes_written;
        if (ret_usec) {
                uint64_t usec = flow->progress_usec;
                if (!flow->impl_closed)
                        (void)paf_flow_query(flow, PAF_FLOW_QUERY_WRITE_PROGRESS, &usec,
                                             sizeof(usec));
                *ret_usec = usec;
        }
        return 0;
}

PAF_EXPORT sd_event *paf_flow_get_event(paf_flow *flow) {
        return flow ? flow->event : NULL;
}

PAF_EXPORT const char *paf_flow_get_peer(paf_flow *flow) {
        return flow ? flow->peer : "?";
}

PAF_EXPORT const char *paf_flow_get_local(paf_flow *flow) {
        return flow ? flow->local : "?";
}

PAF_EXPORT const char *paf_flow_get_protocol(paf_flow *flow) {
        return flow ? flow->protocol : "?";
}

PAF_EXPORT int paf_flow_query(paf_flow *flow, int what, void *ret, size_t size) {
        if (!flow || !ret || size == 0)
                return -EINVAL;
        if (flow->impl_closed)
                return -ESHUTDOWN;
        if (what == PAF_FLOW_QUERY_WRITE_PROGRESS) {
                if (size < sizeof(uint64_t))
                        return -EINVAL;
                /* A layer forwards it to the flow below (the time there is
                 * finer than its own writes'); the bottom one may first
                 * report what it finds (a socket: its send queue drained);
                 * then the later of the two is the answer. */
                uint64_t below = 0;
                int r = OPS_HAS(flow->ops, query)
                                ? flow->ops->query(flow, what, &below, sizeof(below))
                                : -EOPNOTSUPP;
                if (r < 0 && r != -EOPNOTSUPP)
                        return r;
                uint64_t usec = flow->progress_usec;
                if (r >= 0 && below > usec)
                        usec = below;
                memcpy(ret, &usec, sizeof(usec));
                return 0;
        }
        if (!OPS_HAS(flow->ops, query))
                return -EOPNOTSUPP;
        return flow->ops->query(flow, what, ret, size);
}

PAF_EXPORT int paf_flow_get_peer_credentials(paf_flow *flow, struct ucred *ret) {
        if (!flow || !ret)
                return -EINVAL;
        struct ucred cred;
        int r = paf_flow_query(flow, PAF_FLOW_QUERY_PEER_CRED, &cred, sizeof(cred));
        if (r < 0)
                return r;
        *ret = cred;
        return 0;
}

PAF_EXPORT void paf_flow_set_userdata(paf_flow *flow, void *userdata) {
        if (flow)
                flow->userdata = userdata;
}

PAF_EXPORT void *paf_flow_get_userdata(paf_flow *flow) {
        return flow ? flow->userdata : NULL;
}
