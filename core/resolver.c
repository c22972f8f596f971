/* core/resolver.c — getaddrinfo() on a worker thread, answered on the caller's sd_event. */
#include <stdatomic.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "paf-internal.h"

/*
 * What the lookup thread and the loop share, each holding a reference:
 * whichever lets go last frees it, so a cancelled lookup is simply
 * abandoned (getaddrinfo cannot be interrupted). The thread reports
 * through an eventfd the loop watches. A numeric lookup fills it at once
 * and has no thread and no eventfd.
 */
typedef struct resolve_job {
        atomic_uint n_ref;
        atomic_bool finished;
        char *host, *service;
        struct addrinfo hints;
        int efd;
        struct addrinfo *result;
        int gai_error;
        int sys_errno;
} resolve_job;

struct paf_resolve {
        sd_event *event;
        /* The eventfd's io source, or a defer source when answered at once. */
        sd_event_source *source;
        resolve_job *job;
        paf_resolve_handler_t handler;
        void *userdata;
        bool in_handler;
        connect_clock *clock; /* the connect attempt that asked, for its times */
};

static void resolve_job_unref(resolve_job *job) {
        if (!job || atomic_fetch_sub(&job->n_ref, 1) != 1)
                return;
        if (job->result)
                freeaddrinfo(job->result);
        if (job->efd >= 0)
                close(job->efd);
        free(job->host);
        free(job->service);
        free(job);
}

static void resolve_free(paf_resolve *q) {
        connect_clock_unref(q->clock);
        sd_event_source_disable_unref(q->source);
        resolve_job_unref(q->job);
        sd_event_unref(q->event);
        free(q);
}

/* Runs on the worker thread: libpaf's code only. */
static void resolve_thread(void *userdata) {
        resolve_job *job = userdata;
        job->gai_error = getaddrinfo(job->host, job->service, &job->hints, &job->result);
        if (job->gai_error == EAI_SYSTEM)
                job->sys_errno = errno;
        atomic_store(&job->finished, true);
        uint64_t one = 1;
        /* Cannot fail short of a bug: the counter is far from overflowing. */
        (void)!write(job->efd, &one, sizeof(one));
        resolve_job_unref(job);
}

/*
 * A name without an address is -EHOSTUNREACH (there is no errno for "no
 * such name"; this one says "cannot get there", which is what the user
 * needs), except for out of memory and system errors, which keep their
 * own errno.
 */
static int gai_to_errno(int gai, int sys_errno) {
        switch (gai) {
        case EAI_MEMORY:
                return -ENOMEM;
        case EAI_SYSTEM:
                return sys_errno > 0 ? -sys_errno : -EIO;
        default:
                return -EHOSTUNREACH;
        }
}

/* Errors in the arguments rather than in the name: the caller's to fix. */
static bool gai_is_usage_error(int gai) {
        return gai == EAI_BADFLAGS || gai == EAI_FAMILY || gai == EAI_SOCKTYPE ||
               gai == EAI_SERVICE;
}

static void resolve_finish(paf_resolve *q) {
        resolve_job *job = q->job;
        q->source = sd_event_source_disable_unref(q->source);
        connect_clock_note_lookup(q->clock);

        q->in_handler = true;
        if (job->gai_error != 0) {
                int error = gai_to_errno(job->gai_error, job->sys_errno);
                const char *reason = job->gai_error == EAI_SYSTEM ? strerror(-error)
                                                                  : gai_strerror(job->gai_error);
                q->handler(q, NULL, error, reason, q->userdata);
        } else if (!job->result)
                q->handler(q, NULL, -EHOSTUNREACH, "no address", q->userdata);
        else
                q->handler(q, job->result, 0, NULL, q->userdata);
        resolve_free(q);
}

static int resolve_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        (void)s;
        (void)revents;
        paf_resolve *q = userdata;
        uint64_t value;
        (void)!read(fd, &value, sizeof(value));
        if (!atomic_load(&q->job->finished))
                return 0; /* spurious */
        resolve_finish(q);
        return 0;
}

static int resolve_on_defer(sd_event_source *s, void *userdata) {
        (void)s;
        resolve_finish(userdata);
        return 0;
}

static bool is_number(const char *s) {
        return *s && strspn(s, "0123456789") == strlen(s);
}

/*
 * Answer from the text alone when it is numeric: getaddrinfo() with
 * AI_NUMERICHOST | AI_NUMERICSERV reads no file and asks no server.
 * 1: answered (the job holds the result or the error), 0: needs a lookup,
 * < 0: the arguments are bad.
 */
static int resolve_numeric(resolve_job *job) {
        if (job->service && !is_number(job->service))
                return 0; /* a name of /etc/services: NSS, so the thread */
        struct addrinfo hints = job->hints;
        hints.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
        int g = getaddrinfo(job->host, job->service, &hints, &job->result);
        if (g == 0)
                return 1;
        if (gai_is_usage_error(g))
                return -EINVAL;
        if (g == EAI_NONAME && !(job->hints.ai_flags & AI_NUMERICHOST))
                return 0; /* a name: look it up */
        job->gai_error = g;
        if (g == EAI_SYSTEM)
                job->sys_errno = errno;
        return 1;
}

PAF_EXPORT int paf_resolve_start(sd_event *event, const char *host, const char *service,
                                 const struct addrinfo *hints, paf_resolve_handler_t handler,
                                 void *userdata, paf_resolve **ret) {
        if (!event || !handler || (!host && !service))
                return -EINVAL;

        resolve_job *job = calloc(1, sizeof(*job));
        if (!job)
                return -ENOMEM;
        job->efd = -1;
        atomic_init(&job->n_ref, 1);
        atomic_init(&job->finished, false);
        job->hints = (struct addrinfo){
                .ai_flags = hints ? hints->ai_flags : 0,
                .ai_family = hints ? hints->ai_family : AF_UNSPEC,
                .ai_socktype = hints ? hints->ai_socktype : SOCK_STREAM,
                .ai_protocol = hints ? hints->ai_protocol : 0,
        };
        if ((host && !(job->host = strdup(host))) ||
            (service && !(job->service = strdup(service)))) {
                resolve_job_unref(job);
                return -ENOMEM;
        }

        paf_resolve *q = calloc(1, sizeof(*q));
        if (!q) {
                resolve_job_unref(job);
                return -ENOMEM;
        }
        q->event = sd_event_ref(event);
        q->job = job;
        q->handler = handler;
        q->userdata = userdata;
        q->clock = connect_clock_current();

        int r = resolve_numeric(job);
        if (r > 0) {
                /* Answered, but the handler runs from the loop all the same. */
                r = sd_event_add_defer(event, &q->source, resolve_on_defer, q);
        } else if (r == 0) {
                job->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                r = job->efd < 0 ? -errno : 0;
                if (r >= 0)
                        r = sd_event_add_io(event, &q->source, job->efd, EPOLLIN, resolve_on_io, q);
                if (r >= 0) {
                        atomic_fetch_add(&job->n_ref, 1);
                        r = paf_plugin_start_thread(resolve_thread, job);
                        if (r < 0)
                                atomic_fetch_sub(&job->n_ref, 1);
                }
        }
        if (r < 0) {
                resolve_free(q);
                return r;
        }
        (void)sd_event_source_set_description(q->source, "paf-resolve");
        if (ret)
                *ret = q;
        return 0;
}

PAF_EXPORT void paf_resolve_cancel(paf_resolve *q) {
        /* From inside its own handler the lookup is already over, and it
         * frees itself when the handler returns. */
        if (!q || q->in_handler)
                return;
        resolve_free(q);
}
