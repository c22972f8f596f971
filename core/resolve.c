/* core/resolve.c — resolution of a context into candidate protocols, and connect over them. */
#include <stdio.h>
#include <time.h>

#include "paf-internal.h"

struct paf_resolution {
        paf_registry *reg; /* owns the protocols listed here */
        paf_ctx *ctx;      /* the user's context over the registry's rules */
        /* Candidates in the order they are tried, then the others. The
         * endpoint and reason strings are owned (malloc'ed). */
        paf_attempt *attempts;
        const paf_protocol **protocols; /* the protocol of each attempt */
        size_t n_attempts;
        size_t n_candidates;
};

/* ---- resolution ---- */

static int protocol_compare(const void *a, const void *b) {
        const paf_protocol *x = *(const paf_protocol *const *)a,
                           *y = *(const paf_protocol *const *)b;

        if (x->ops->priority != y->ops->priority)
                return x->ops->priority < y->ops->priority ? -1 : 1;
        /* Ties go to the most recently registered: a program or plugin
         * overriding a protocol registers after it. */
        if (x->seq != y->seq)
                return x->seq > y->seq ? -1 : 1;
        return 0;
}

/* 1 when ctx has every endpoint key of p; otherwise 0 or the ctx's error,
 * with *ret_reason saying which key is missing and why. */
static int protocol_check(const paf_protocol *p, paf_ctx *ctx, char **ret_reason) {
        for (const char *const *k = p->ops->endpoint_keys; *k; k++) {
                int r = paf_ctx_has(ctx, *k);
                if (r == 1)
                        continue;
                const char *why = paf_ctx_get_error(ctx);
                char *reason;
                if (why && *why)
                        reason = strdup(why);
                else if (asprintf(&reason, "no value for key \"%s\"", *k) < 0)
                        reason = NULL;
                if (!reason)
                        return -ENOMEM;
                *ret_reason = reason;
                return r == 0 ? -ENOENT : r;
        }
        return 1;
}

bool paf_protocol_is_layer(const paf_protocol *p) {
        return p->ops->struct_size >= offsetof(paf_protocol_ops, flags) + sizeof(p->ops->flags) &&
               (p->ops->flags & PAF_PROTOCOL_LAYER);
}

/* Which protocols a resolution may use: all of them at the top (with
 * layers taking over from what they run over), or, under a layer, only
 * protocols that are not layers. */
typedef enum resolve_mode {
        RESOLVE_TOP,
        RESOLVE_INNER,
} resolve_mode;

static int resolution_new(paf_registry *reg, paf_ctx *ctx, resolve_mode mode,
                          paf_resolution **ret) {
        _cleanup_free_ const paf_protocol **order = NULL;
        _cleanup_free_ int *status = NULL;
        _cleanup_free_ char **reasons = NULL;
        size_t n = 0;
        int r;

        paf_resolution *res = calloc(1, sizeof(*res));
        if (!res)
                return -ENOMEM;
        res->reg = paf_registry_ref(reg);
        /* reg->ctx, not paf_registry_get_ctx(): that one notes a plugin init
         * asking for the rule context, which resolving is not. */
        r = paf_ctx_new_layered(ctx, reg->ctx, &res->ctx);
        if (r < 0)
                goto fail;

        n = paf_registry_get_n_protocols(reg);
        /* +1: calloc(0) may return NULL, and an empty resolution is fine. */
        order = calloc(n + 1, sizeof(*order));
        status = calloc(n + 1, sizeof(*status));
        reasons = calloc(n + 1, sizeof(*reasons));
        res->attempts = calloc(n + 1, sizeof(*res->attempts));
        res->protocols = calloc(n + 1, sizeof(*res->protocols));
        if (!order || !status || !reasons || !res->attempts || !res->protocols) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < n; i++)
                order[i] = paf_registry_get_protocol(reg, i);
        /* The same order for the protocols that are not candidates, so that
         * reports read the same way every time. */
        qsort(order, n, sizeof(*order), protocol_compare);

        const char *layer = NULL;
        for (size_t i = 0; i < n; i++) {
                if (mode == RESOLVE_INNER && paf_protocol_is_layer(order[i])) {
                        status[i] = -ENOENT;
                        reasons[i] = strdup("a layer: not used under another layer");
                } else {
                        status[i] = protocol_check(order[i], res->ctx, &reasons[i]);
                        if (status[i] == 1 && !layer && paf_protocol_is_layer(order[i]))
                                layer = order[i]->ops->name;
                }
                if (status[i] == -ENOMEM || (status[i] != 1 && !reasons[i])) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        /* What a layer runs over is reached through it, never on its own:
         * a failed TLS connection must not turn into a plain one. */
        for (size_t i = 0; layer && i < n; i++)
                if (status[i] == 1 && !paf_protocol_is_layer(order[i])) {
                        status[i] = -ENOENT;
                        if (asprintf(&reasons[i], "reached through %s, not on its own", layer) <
                            0) {
                                reasons[i] = NULL;
                                r = -ENOMEM;
                                goto fail;
                        }
                }

        for (size_t i = 0; i < n; i++) {
                if (status[i] != 1)
                        continue;
                const paf_protocol *p = order[i];
                paf_attempt *a = &res->attempts[res->n_attempts];
                char buf[512] = "";

                *a = (paf_attempt){.protocol = p->ops->name, .candidate = true};
                /* An endpoint that cannot be described is still tried: its
                 * connect will say what is wrong better than we could. */
                if (p->ops->describe(res->ctx, buf, sizeof(buf), p->userdata) >= 0) {
                        buf[sizeof(buf) - 1] = '\0';
                        a->endpoint = strdup(buf);
                        if (!a->endpoint) {
                                r = -ENOMEM;
                                goto fail;
                        }
                }
                res->protocols[res->n_attempts++] = p;
        }
        res->n_candidates = res->n_attempts;

        for (size_t i = 0; i < n; i++) {
                if (status[i] == 1)
                        continue;
                res->attempts[res->n_attempts] = (paf_attempt){
                        .protocol = order[i]->ops->name,
                        .error = status[i],
                        .reason = reasons[i],
                };
                reasons[i] = NULL;
                res->protocols[res->n_attempts++] = order[i];
        }

        *ret = res;
        return 0;

fail:
        for (size_t i = 0; reasons && i < n; i++)
                free(reasons[i]);
        paf_resolution_free(res);
        return r;
}

int paf_registry_resolve_inner(paf_registry *reg, paf_ctx *ctx, paf_resolution **ret) {
        if (!reg || !ret)
                return -EINVAL;
        return resolution_new(reg, ctx, RESOLVE_INNER, ret);
}

PAF_EXPORT int paf_registry_resolve(paf_registry *reg, paf_ctx *ctx, paf_resolution **ret) {
        if (!reg || !ret)
                return -EINVAL;
        return resolution_new(reg, ctx, RESOLVE_TOP, ret);
}

PAF_EXPORT const paf_attempt *paf_resolution_get_attempts(paf_resolution *r, size_t *ret_n) {
        if (!r) {
                if (ret_n)
                        *ret_n = 0;
                return NULL;
        }
        if (ret_n)
                *ret_n = r->n_attempts;
        return r->attempts;
}

PAF_EXPORT size_t paf_resolution_get_n_candidates(paf_resolution *r) {
        return r ? r->n_candidates : 0;
}

PAF_EXPORT const paf_protocol *paf_resolution_get_protocol(paf_resolution *r, size_t i) {
        if (!r || i >= r->n_attempts)
                return NULL;
        return r->protocols[i];
}

PAF_EXPORT paf_resolution *paf_resolution_free(paf_resolution *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_attempts; i++) {
                free((char *)r->attempts[i].endpoint);
                free((char *)r->attempts[i].reason);
        }
        free(r->attempts);
        free(r->protocols);
        paf_ctx_unref(r->ctx);
        paf_registry_unref(r->reg);
        free(r);
        return NULL;
}

PAF_EXPORT char *paf_attempts_format(const paf_attempt *attempts, size_t n_attempts) {
        if (!attempts && n_attempts > 0)
                return NULL;

        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        if (!f)
                return NULL;
        for (size_t i = 0; i < n_attempts; i++) {
                const paf_attempt *a = &attempts[i];
                const char *name = a->protocol ? a->protocol : "?";

                fputs(name, f);
                if (a->endpoint)
                        fprintf(f, " %s", a->endpoint);
                if (!a->candidate)
                        fprintf(f, ": not a candidate: %s\n",
                                a->reason && *a->reason ? a->reason : "unknown reason");
                else if (!a->tried)
                        /* A resolution's listing: what a connect would try, in order. */
                        fputs(": candidate\n", f);
                else if (a->error == 0)
                        fputs(": used\n", f);
                else
                        fprintf(f, ": failed: %s\n",
                                a->reason && *a->reason ? a->reason : strerror(-a->error));
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

/* ---- connect ---- */

/*
 * A paf_connect walks the candidates of a resolution one at a time. Every
 * step runs from a defer source on the loop: the first attempt starts there,
 * and a request that ends (done or fail, from wherever the protocol calls
 * it) only records the outcome and re-arms the source. So the user's handler
 * never runs inside paf_registry_connect() nor inside a protocol's callback,
 * and trying the next candidate never recurses.
 */
struct paf_connect {
        paf_registry *reg; /* alive while protocols may still call back */
        sd_event *event;
        paf_resolution *res;
        paf_connect_handler_t handler;
        void *userdata;

        sd_event_source *defer;
        size_t next;              /* next candidate to try */
        paf_connect_request *req; /* the attempt in flight */
        paf_flow *flow;           /* the winner, until handed to the handler */
        paf_attempt *report;      /* room for what the handler is shown */
        bool in_handler;
        paf_connect_times times; /* the winner's */
        /* The attempt this connect was started for, to run over: it gets
         * times when a flow is found. NULL for a connect of its own. */
        connect_clock *parent;
};

/*
 * One protocol's attempt. It may outlive its paf_connect: cancelled without
 * a cancel op it is "abandoned" (connect == NULL) and lives until the
 * protocol ends it, so it keeps the registry (the plugin's code), the
 * context and the loop alive on its own.
 */
struct paf_connect_request {
        paf_connect *connect; /* NULL when abandoned */
        size_t index;         /* of its attempt in the resolution */
        const paf_protocol *protocol;
        paf_registry *reg;
        paf_ctx *ctx;
        sd_event *event;
        char *endpoint;
        void *data;
        connect_clock *clock;

        bool ended;
        /* The core is inside ops->connect() or ops->cancel() with this
         * request: an end is recorded, and the core frees it after the call. */
        bool in_call;
        sd_event_source *free_source; /* deferred free of an abandoned request */
};

/* ---- timing ---- */

/*
 * What an attempt's times are made of. The lookups and the connects it
 * starts (what a layer runs over, a proxy's tunnel) may outlive it, so
 * each holds a reference. One loop's thread only, as its attempt.
 */
struct connect_clock {
        unsigned n_ref;
        uint64_t started;   /* the attempt started */
        uint64_t looked_up; /* a name lookup it started answered; 0: none */
        bool has_lower;
        paf_connect_times lower; /* what a connect it started found */
};

/* The attempt whose protocol's connect() runs now on this thread: what a
 * lookup or a connect started in there is for. */
static _Thread_local paf_connect_request *current_request;

uint64_t paf_monotonic_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * UINT64_C(1000000) + (uint64_t)ts.tv_nsec / 1000;
}

static connect_clock *clock_ref(connect_clock *k) {
        if (k)
                k->n_ref++;
        return k;
}

void connect_clock_unref(connect_clock *k) {
        if (k && --k->n_ref == 0)
                free(k);
}

connect_clock *connect_clock_current(void) {
        return current_request ? clock_ref(current_request->clock) : NULL;
}

void connect_clock_note_lookup(connect_clock *k) {
        if (k)
                k->looked_up = paf_monotonic_usec();
}

/* The attempt found a flow: its times, from what it ran over if it ran
 * over a connect of its own, else its own connect is the transport's. */
static void request_times(const paf_connect_request *req, paf_connect_times *ret) {
        const connect_clock *k = req->clock;
        uint64_t now = paf_monotonic_usec();
        if (k->has_lower)
                *ret = k->lower;
        else
                *ret = (paf_connect_times){
                        .namelookup = k->looked_up ? k->looked_up : k->started,
                        .connect = now,
                };
        if (paf_protocol_is_layer(req->protocol))
                ret->appconnect = now;
}

void paf_connect_get_times(paf_connect *c, paf_connect_times *ret) {
        *ret = c->times;
}

static void request_free(paf_connect_request *req) {
        if (!req)
                return;
        connect_clock_unref(req->clock);
        sd_event_source_disable_unref(req->free_source);
        free(req->endpoint);
        paf_ctx_unref(req->ctx);
        sd_event_unref(req->event);
        paf_registry_unref(req->reg);
        free(req);
}

static int on_request_free(sd_event_source *s _unused_, void *userdata) {
        request_free(userdata);
        return 0;
}

static void connect_kick(paf_connect *c) {
        int r = sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
        if (r < 0)
                paf_log(PAF_LOG_ERR, "paf: cannot schedule the next connect step: %s",
                        strerror(-r));
}

/* Notes the outcome of attempt i in c. reason is owned and taken. */
static void connect_record(paf_connect *c, size_t i, paf_flow *flow, int error, char *reason) {
        paf_attempt *a = &c->res->attempts[i];

        assert(!c->flow);
        a->tried = true;
        if (flow) {
                c->flow = flow;
                free(reason);
                return;
        }
        a->error = error;
        a->reason = reason;
}

/* Ends a request: done() or fail() from the protocol. reason is owned and taken. */
static void request_end(paf_connect_request *req, paf_flow *flow, int error, char *reason) {
        assert(req);

        if (req->ended) {
                paf_log(PAF_LOG_ERR, "paf: protocol %s ended a connect request twice",
                        req->protocol->ops->name);
                if (flow)
                        paf_flow_close(flow, NULL, NULL);
                free(reason);
                return;
        }
        req->ended = true;

        paf_connect *c = req->connect;
        if (!c) {
                /* Abandoned: nobody wants the outcome. */
                if (flow)
                        paf_flow_close(flow, NULL, NULL);
                free(reason);
                if (req->in_call)
                        return;
                /* Not now: we are inside the plugin's code, and dropping what
                 * may be the registry's last reference would unload it. */
                if (sd_event_add_defer(req->event, &req->free_source, on_request_free, req) < 0)
                        request_free(req);
                return;
        }

        assert(c->req == req);
        if (flow)
                request_times(req, &c->times);
        connect_record(c, req->index, flow, error, reason);
        c->req = NULL;
        req->connect = NULL;
        if (!req->in_call) {
                connect_kick(c);
                request_free(req);
        }
}

PAF_EXPORT paf_ctx *paf_connect_request_get_ctx(paf_connect_request *req) {
        return req ? req->ctx : NULL;
}

PAF_EXPORT sd_event *paf_connect_request_get_event(paf_connect_request *req) {
        return req ? req->event : NULL;
}

PAF_EXPORT const char *paf_connect_request_get_endpoint(paf_connect_request *req) {
        if (!req)
                return NULL;
        return req->endpoint ? req->endpoint : "?";
}

PAF_EXPORT void paf_connect_request_set_data(paf_connect_request *req, void *data) {
        if (req)
                req->data = data;
}

PAF_EXPORT void *paf_connect_request_get_data(paf_connect_request *req) {
        return req ? req->data : NULL;
}

PAF_EXPORT void paf_connect_request_done(paf_connect_request *req, paf_flow *flow) {
        if (!req)
                return;
        if (!flow) {
                paf_connect_request_fail(req, -EINVAL, "protocol returned no flow");
                return;
        }
        request_end(req, flow, 0, NULL);
}

PAF_EXPORT void paf_connect_request_fail(paf_connect_request *req, int error, const char *format,
                                         ...) {
        if (!req)
                return;
        if (error >= 0)
                error = -EIO;

        char *reason = NULL;
        if (format) {
                va_list ap;
                va_start(ap, format);
                if (vasprintf(&reason, format, ap) < 0)
                        reason = NULL;
                va_end(ap);
        }
        request_end(req, NULL, error, reason);
}

static void connect_free(paf_connect *c) {
        assert(c);
        assert(!c->req);
        sd_event_source_disable_unref(c->defer);
        connect_clock_unref(c->parent);
        free(c->report);
        paf_resolution_free(c->res);
        sd_event_unref(c->event);
        paf_registry_unref(c->reg);
        free(c);
}

/* Calls the handler once and frees c. */
static void connect_finish(paf_connect *c) {
        size_t n = 0;

        /* What was tried, in order: the failures, then the winner if any
         * (candidates after it were never reached and are left out); then
         * the protocols that were not candidates. */
        for (size_t i = 0; i < c->res->n_candidates; i++)
                if (c->res->attempts[i].tried)
                        c->report[n++] = c->res->attempts[i];
        for (size_t i = c->res->n_candidates; i < c->res->n_attempts; i++)
                c->report[n++] = c->res->attempts[i];

        paf_flow *flow = c->flow;
        c->flow = NULL;
        if (flow)
                paf_flow_hold_registry(flow, c->reg);
        if (flow && c->parent) {
                c->parent->lower = c->times;
                c->parent->has_lower = true;
        }
        c->in_handler = true;
        c->handler(flow, c->report, n, c->userdata);
        connect_free(c);
}

/* Starts candidate i. Returns 0 while it runs, 1 when it already ended. */
static int connect_start(paf_connect *c, size_t i) {
        const paf_protocol *p = c->res->protocols[i];
        const char *endpoint = c->res->attempts[i].endpoint;

        paf_connect_request *req = calloc(1, sizeof(*req));
        if (!req)
                goto oom;
        req->clock = calloc(1, sizeof(*req->clock));
        if (!req->clock || (endpoint && !(req->endpoint = strdup(endpoint)))) {
                free(req->clock);
                free(req);
                goto oom;
        }
        req->clock->n_ref = 1;
        req->clock->started = paf_monotonic_usec();
        req->connect = c;
        req->index = i;
        req->protocol = p;
        req->reg = paf_registry_ref(c->reg);
        req->ctx = paf_ctx_ref(c->res->ctx);
        req->event = sd_event_ref(c->event);
        c->req = req;

        req->in_call = true;
        paf_connect_request *outer = current_request;
        current_request = req;
        int r = p->ops->connect(req, p->userdata);
        current_request = outer;
        req->in_call = false;

        if (!req->ended) {
                if (r >= 0)
                        return 0;
                /* Failed at once; the request was not used. */
                connect_record(c, i, NULL, r, NULL);
                c->req = NULL;
        }
        /* Ended or failed inside connect(): the freeing was left to us. */
        request_free(req);
        return 1;

oom:
        connect_record(c, i, NULL, -ENOMEM, NULL);
        return 1;
}

static int on_connect_step(sd_event_source *s _unused_, void *userdata) {
        paf_connect *c = userdata;

        while (!c->req) {
                if (c->flow || c->next >= c->res->n_candidates) {
                        connect_finish(c);
                        return 0;
                }
                if (connect_start(c, c->next++) == 0)
                        return 0;
        }
        return 0;
}

static int connect_new(paf_registry *reg, paf_ctx *ctx, resolve_mode mode, sd_event *event,
                       connect_clock *parent, paf_connect_handler_t handler, void *userdata,
                       paf_connect **ret) {
        if (!reg || !event || !handler)
                return -EINVAL;

        paf_connect *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->reg = paf_registry_ref(reg);
        c->event = sd_event_ref(event);
        c->handler = handler;
        c->userdata = userdata;
        c->parent = clock_ref(parent);

        int r = resolution_new(reg, ctx, mode, &c->res);
        if (r < 0)
                goto fail;
        c->report = calloc(c->res->n_attempts + 1, sizeof(*c->report));
        if (!c->report) {
                r = -ENOMEM;
                goto fail;
        }
        /* A new defer source is enabled once: it runs the first step. */
        r = sd_event_add_defer(event, &c->defer, on_connect_step, c);
        if (r < 0)
                goto fail;
        (void)sd_event_source_set_description(c->defer, "paf-connect");

        if (ret)
                *ret = c;
        return 0;

fail:
        connect_free(c);
        return r;
}

PAF_EXPORT int paf_registry_connect(paf_registry *reg, paf_ctx *ctx, sd_event *event,
                                    paf_connect_handler_t handler, void *userdata,
                                    paf_connect **ret) {
        /* From inside a protocol's connect (a proxy's tunnel): what that
         * attempt runs over. */
        return connect_new(reg, ctx, RESOLVE_TOP, event,
                           current_request ? current_request->clock : NULL, handler, userdata, ret);
}

PAF_EXPORT int paf_connect_request_connect_inner(paf_connect_request *req,
                                                 paf_connect_handler_t handler, void *userdata,
                                                 paf_connect **ret) {
        if (!req)
                return -EINVAL;
        return connect_new(req->reg, req->ctx, RESOLVE_INNER, req->event, req->clock, handler,
                           userdata, ret);
}

/*
 * The handle is valid until the handler has run (it is freed right after it
 * returns) or until this call. From inside the handler it does nothing. Only
 * user code calls it, and user code never runs inside a protocol's connect()
 * or cancel(), so the request is never in a call into the protocol here.
 */
PAF_EXPORT void paf_connect_cancel(paf_connect *c) {
        if (!c || c->in_handler)
                return;

        paf_connect_request *req = c->req;
        if (req) {
                c->req = NULL;
                req->connect = NULL;
                const paf_protocol *p = req->protocol;
                if (p->ops->cancel) {
                        /* The protocol may end the request from inside cancel
                         * (an abandoned end: a flow is closed); it must not
                         * touch it after cancel returns. */
                        req->in_call = true;
                        p->ops->cancel(req, p->userdata);
                        request_free(req);
                }
                /* Otherwise the request is abandoned: the protocol's late
                 * done() or fail() frees it (and closes the flow). */
        }
        if (c->flow) {
                paf_flow_close(c->flow, NULL, NULL);
                c->flow = NULL;
        }
        connect_free(c);
}
