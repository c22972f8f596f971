/* core/systemd.c — socket activation: the sockets of a .socket unit become listeners. */
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "paf-internal.h"

typedef struct activated_socket {
        int fd; /* as passed: SD_LISTEN_FDS_START + i */
        char *name;
        paf_listener *listener; /* NULL once stolen */
} activated_socket;

struct paf_activated {
        activated_socket *sockets;
        size_t n_sockets;
};

PAF_EXPORT paf_activated *paf_activated_free(paf_activated *a) {
        if (!a)
                return NULL;
        for (size_t i = 0; i < a->n_sockets; i++) {
                paf_listener_free(a->sockets[i].listener);
                free(a->sockets[i].name);
        }
        free(a->sockets);
        free(a);
        return NULL;
}

static void strv_free(char **v) {
        for (char **p = v; p && *p; p++)
                free(*p);
        free(v);
}

/* "activated fd 3 (FileDescriptorName=web): REASON", where listen_fd's
 * message already starts with "fd 3: ". */
static int activated_error(paf_error *error, int r, int fd, const char *name, const char *msg) {
        char prefix[32];
        int n = snprintf(prefix, sizeof(prefix), "fd %d: ", fd);
        if (n > 0 && strncmp(msg, prefix, (size_t)n) == 0)
                msg += n;
        return paf_error_set(error, r, "socket-activated fd %d (FileDescriptorName=%s): %s", fd,
                             name ? name : "unknown", *msg ? msg : strerror(-r));
}

PAF_EXPORT int paf_registry_listen_activated(paf_registry *reg, sd_event *event,
                                             paf_accept_handler_t handler, void *userdata,
                                             paf_activated **ret, paf_error *error) {
        if (!reg || !event || !ret)
                return paf_error_set(error, -EINVAL,
                                     "paf_registry_listen_activated: invalid argument");

        char **names = NULL;
        /* Unset LISTEN_*: they describe this process only, and a child
         * reading them would adopt sockets that are not its own. */
        int n = sd_listen_fds_with_names(1, &names);
        if (n < 0)
                return paf_error_set(error, n, "socket activation: %s", strerror(-n));

        paf_activated *a = calloc(1, sizeof(*a));
        if (a && n > 0 && !(a->sockets = calloc((size_t)n, sizeof(*a->sockets)))) {
                free(a);
                a = NULL;
        }
        int r = 0;
        if (!a)
                r = paf_error_set(error, -ENOMEM, "socket activation: %s", strerror(ENOMEM));

        for (int i = 0; r >= 0 && i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names && names[i] ? names[i] : "unknown";
                activated_socket *s = &a->sockets[a->n_sockets];
                if (!(s->name = strdup(name))) {
                        r = paf_error_set(error, -ENOMEM, "socket activation: %s",
                                          strerror(ENOMEM));
                        break;
                }
                paf_error e = PAF_ERROR_NULL;
                /* Takes fd, also on failure. */
                r = paf_registry_listen_fd(reg, fd, event, handler, userdata, &s->listener, &e);
                if (r < 0) {
                        free(s->name);
                        s->name = NULL;
                        activated_error(error, r, fd, name, e.message);
                        /* The sockets after this one are ours too: nothing
                         * will ever serve them. */
                        for (int j = i + 1; j < n; j++)
                                (void)close(SD_LISTEN_FDS_START + j);
                        break;
                }
                s->fd = fd;
                a->n_sockets++;
        }
        if (r < 0 && !a)
                for (int j = 0; j < n; j++)
                        (void)close(SD_LISTEN_FDS_START + j);
        strv_free(names);
        if (r < 0) {
                paf_activated_free(a);
                return r;
        }
        *ret = a;
        return (int)a->n_sockets;
}

PAF_EXPORT size_t paf_activated_get_n_listeners(paf_activated *a) {
        return a ? a->n_sockets : 0;
}

PAF_EXPORT const char *paf_activated_get_name(paf_activated *a, size_t i) {
        return a && i < a->n_sockets ? a->sockets[i].name : NULL;
}

PAF_EXPORT int paf_activated_get_fd(paf_activated *a, size_t i) {
        return a && i < a->n_sockets ? a->sockets[i].fd : -EINVAL;
}

PAF_EXPORT paf_listener *paf_activated_get_listener(paf_activated *a, size_t i) {
        return a && i < a->n_sockets ? a->sockets[i].listener : NULL;
}

PAF_EXPORT paf_listener *paf_activated_steal_listener(paf_activated *a, size_t i) {
        if (!a || i >= a->n_sockets)
                return NULL;
        paf_listener *l = a->sockets[i].listener;
        a->sockets[i].listener = NULL;
        return l;
}
