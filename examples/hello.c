/* examples/hello.c — the smallest HTTP server on paf: "hello, world" to every request. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <paf.h>

static void on_request(paf_http_request *req, void *userdata) {
        (void)userdata;
        static const char body[] = "hello, world\n";
        paf_http_respond(req, 200, "text/plain", body, sizeof(body) - 1);
}

static void on_stopped(void *userdata) {
        sd_event_exit(userdata, 0);
}

/* SIGTERM or SIGINT: finish what is in flight, then leave the loop. */
static int on_signal(sd_event_source *source, const struct signalfd_siginfo *si, void *userdata) {
        (void)si;
        paf_http_server_stop(userdata, on_stopped, sd_event_source_get_event(source));
        return 0;
}

int main(int argc, char **argv) {
        const char *address = argc > 1 ? argv[1] : "127.0.0.1:8080";
        paf_error error = PAF_ERROR_NULL;
        paf_registry *reg = NULL;
        sd_event *event = NULL;
        paf_http_server *server = NULL;
        paf_listener *listener = NULL;

        /* Transports are plugins: tcp.so, unix.so … found on PAF_PLUGIN_PATH. */
        if (paf_registry_new(&reg) < 0 || paf_registry_load_config(reg, NULL, &error) < 0 ||
            paf_registry_load_plugins(reg, &error) < 0) {
                fprintf(stderr, "hello: %s\n", error.message);
                return 1;
        }

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        sd_event_default(&event);
        paf_http_server_new(event, on_request, NULL, NULL, &server);
        sd_event_add_signal(event, NULL, SIGTERM, on_signal, server);
        sd_event_add_signal(event, NULL, SIGINT, on_signal, server);

        if (paf_registry_listen_address(reg, address, event, NULL, NULL, &listener, &error) < 0) {
                fprintf(stderr, "hello: %s: %s\n", address, error.message);
                return 1;
        }
        /* Like paf serve: "http://127.0.0.1:8080", "unix:/run/hello.sock". */
        const char *proto = paf_listener_get_protocol(listener);
        bool tcp = strcmp(proto, "tcp") == 0;
        fprintf(stderr, "hello: listening on %s%s%s\n", tcp ? "http://" : proto, tcp ? "" : ":",
                paf_listener_get_address(listener));
        paf_http_server_add_listener(server, listener);

        /* sd_event_loop() would do; this one waits for the loop and the
         * connections in one epoll_wait (paf/event.h). */
        int r = paf_event_loop(event);
        paf_http_server_free(server);
        sd_event_unref(event);
        paf_registry_unref(reg);
        return r < 0 ? 1 : 0;
}
