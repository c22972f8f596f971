/* core/acme/manager.c — a certificate kept valid on a server's loop: issuance and renewals on
 * a thread of their own, the result handed back through an eventfd. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/acme/acme-internal.h"
#include "core/paf-internal.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define RETRY_FIRST_USEC (10 * USEC_PER_SEC)
#define RETRY_MAX_USEC (3600 * USEC_PER_SEC)

struct paf_acme_manager {
        sd_event *event;
        paf_acme_client *client;
        char **identifiers;
        size_t n_identifiers;
        paf_acme_manager_handler_t handler;
        void *userdata;

        sd_event_source *timer; /* the next renewal or retry (CLOCK_REALTIME) */
        sd_event_source *done_source;
        int done_fd; /* the thread's eventfd: its job is over */

        /* The job: written by the thread until it signals done_fd. */
        bool running;
        pthread_t thread;
        unsigned job_flags;
        paf_acme_cert *job_cert;
        paf_error job_error;
        int job_r;

        paf_acme_cert *cert;
        unsigned n_failures;
        uint64_t retry_usec;
        char status[1200];
};

static void fmt_time(uint64_t usec, char *buf, size_t size) {
        time_t t = (time_t)(usec / USEC_PER_SEC);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void *job_run(void *arg) {
        paf_acme_manager *m = arg;
        m->job_r = paf_acme_issue(m->client, (const char *const *)m->identifiers,
                                  m->n_identifiers, m->job_flags, &m->job_cert, &m->job_error);
        uint64_t one = 1;
        /* Nothing else can be done if this fails: the fd lives until free. */
        (void)!write(m->done_fd, &one, sizeof(one));
        return NULL;
}

static int job_start(paf_acme_manager *m, unsigned flags) {
        if (m->running)
                return 0;
        m->job_flags = flags;
        m->job_cert = NULL;
        m->job_error = (paf_error)PAF_ERROR_NULL;
        m->job_r = 0;
        /* Signals are the loop's: the thread takes none. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int r = -pthread_create(&m->thread, NULL, job_run, m);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                return r;
        m->running = true;
        if (!m->cert)
                snprintf(m->status, sizeof(m->status), "obtaining a certificate for %s",
                         m->identifiers[0]);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        paf_acme_manager *m = userdata;
        (void)s;
        (void)usec;
        int r = job_start(m, 0);
        if (r < 0)
                paf_log(PAF_LOG_ERR, "acme: %s: cannot start the renewal: %s", m->identifiers[0],
                        strerror(-r));
        return 0;
}

static int schedule(paf_acme_manager *m, uint64_t at_realtime) {
        if (!m->timer)
                return sd_event_add_time(m->event, &m->timer, CLOCK_REALTIME, at_realtime,
                                         USEC_PER_SEC / 10, on_timer, m);
        int r = sd_event_source_set_time(m->timer, at_realtime);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->timer, SD_EVENT_ONESHOT);
        return r;
}

static uint64_t realtime_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        paf_acme_manager *m = userdata;
        (void)s;
        (void)revents;
        uint64_t v;
        if (read(fd, &v, sizeof(v)) < 0 || !m->running)
                return 0;
        pthread_join(m->thread, NULL);
        m->running = false;
        char a[64], b[64];
        if (m->job_r < 0) {
                m->n_failures++;
                m->retry_usec = m->retry_usec ? m->retry_usec * 2 : RETRY_FIRST_USEC;
                if (m->retry_usec > RETRY_MAX_USEC)
                        m->retry_usec = RETRY_MAX_USEC;
                uint64_t at = realtime_now() + m->retry_usec;
                fmt_time(at, a, sizeof(a));
                paf_log(PAF_LOG_ERR, "acme: %s: %s failed (%u in a row), retrying at %s: %s",
                        m->identifiers[0], m->cert ? "renewal" : "issuance", m->n_failures, a,
                        m->job_error.message[0] ? m->job_error.message : strerror(-m->job_r));
                if (m->cert) {
                        fmt_time(m->cert->not_after, b, sizeof(b));
                        snprintf(m->status, sizeof(m->status),
                                 "certificate valid until %s; renewal failed, retry at %s: %s", b,
                                 a, m->job_error.message);
                } else {
                        snprintf(m->status, sizeof(m->status),
                                 "no certificate; issuance failed, retry at %s: %s", a,
                                 m->job_error.message);
                }
                (void)schedule(m, at);
                return 0;
        }
        paf_acme_cert *cert = m->job_cert;
        m->job_cert = NULL;
        m->n_failures = 0;
        m->retry_usec = 0;
        bool changed = !m->cert || strcmp(m->cert->serial, cert->serial) != 0;
        paf_acme_cert_free(m->cert);
        m->cert = cert;
        fmt_time(cert->not_after, a, sizeof(a));
        fmt_time(cert->renew_at, b, sizeof(b));
        snprintf(m->status, sizeof(m->status), "certificate for %s valid until %s; renewal at %s",
                 m->identifiers[0], a, b);
        paf_log(PAF_LOG_INFO, "acme: %s: %s certificate %s, valid until %s, renewal at %s",
                m->identifiers[0], cert->reused ? "stored" : "new", cert->serial, a, b);
        /* A renewal that found the stored one still good (another process
         * renewed it, say) retries at its new time. */
        uint64_t at = cert->next_check_at ? cert->next_check_at : cert->renew_at;
        if (at <= realtime_now())
                at = realtime_now() + RETRY_FIRST_USEC;
        (void)schedule(m, at);
        if (changed && m->handler)
                m->handler(m, cert, m->userdata);
        return 0;
}

int paf_acme_manager_new(sd_event *event, paf_acme_client *client,
                         const char *const *identifiers, size_t n,
                         paf_acme_manager_handler_t handler, void *userdata,
                         paf_acme_manager **ret) {
        if (!event || !client || !identifiers || n == 0 || !ret)
                return -EINVAL;
        paf_acme_manager *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->done_fd = -1;
        m->event = sd_event_ref(event);
        m->client = client;
        m->handler = handler;
        m->userdata = userdata;
        m->identifiers = calloc(n + 1, sizeof(char *));
        int r = m->identifiers ? 0 : -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (!(m->identifiers[i] = strdup(identifiers[i])))
                        r = -ENOMEM;
        m->n_identifiers = n;
        if (r >= 0) {
                m->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (m->done_fd < 0)
                        r = -errno;
        }
        if (r >= 0)
                r = sd_event_add_io(event, &m->done_source, m->done_fd, EPOLLIN, on_done, m);
        if (r < 0) {
                paf_acme_manager_free(m);
                return r;
        }
        snprintf(m->status, sizeof(m->status), "not started");
        *ret = m;
        return 0;
}

int paf_acme_manager_start(paf_acme_manager *m) {
        return m ? job_start(m, 0) : -EINVAL;
}

int paf_acme_manager_renew(paf_acme_manager *m) {
        return m ? job_start(m, PAF_ACME_ISSUE_FORCE) : -EINVAL;
}

const paf_acme_cert *paf_acme_manager_get_cert(paf_acme_manager *m) {
        return m ? m->cert : NULL;
}

const char *paf_acme_manager_get_status(paf_acme_manager *m) {
        return m ? m->status : NULL;
}

unsigned paf_acme_manager_get_n_failures(paf_acme_manager *m) {
        return m ? m->n_failures : 0;
}

paf_acme_manager *paf_acme_manager_free(paf_acme_manager *m) {
        if (!m)
                return NULL;
        if (m->running) {
                paf_acme_client_cancel(m->client);
                pthread_join(m->thread, NULL);
                paf_acme_cert_free(m->job_cert);
        }
        sd_event_source_disable_unref(m->timer);
        sd_event_source_disable_unref(m->done_source);
        if (m->done_fd >= 0)
                close(m->done_fd);
        sd_event_unref(m->event);
        paf_acme_strv_free(m->identifiers);
        paf_acme_cert_free(m->cert);
        free(m);
        return NULL;
}
