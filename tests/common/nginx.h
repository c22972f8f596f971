/* tests/common/nginx.h — running nginx (or any peer) from a cmocka test:
 * free loopback ports, starting it on its own configuration, waiting until
 * it accepts, and stopping it by its pid. Include after <cmocka.h>. */
#pragma once

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define NGINX "/usr/sbin/nginx"

#ifndef PAF_TEST_UNUSED
#define PAF_TEST_UNUSED __attribute__((unused))
#endif

/* A loopback port free right now (a peer may still lose it: retry). */
static PAF_TEST_UNUSED int free_port(void) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
        socklen_t len = sizeof(in);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
        close(fd);
        return ntohs(in.sin_port);
}

static PAF_TEST_UNUSED bool port_accepts(int port) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in in = {.sin_family = AF_INET,
                                 .sin_port = htons(port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool ok = connect(fd, (struct sockaddr *)&in, sizeof(in)) == 0;
        close(fd);
        return ok;
}

/* SIGTERM, up to 3 s to go, then SIGKILL; *pid is 0 afterwards. */
static PAF_TEST_UNUSED void process_stop(pid_t *pid) {
        if (*pid <= 0)
                return;
        kill(*pid, SIGTERM);
        for (int i = 0; i < 300; i++) {
                if (waitpid(*pid, NULL, WNOHANG) == *pid) {
                        *pid = 0;
                        return;
                }
                usleep(10 * 1000);
        }
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = 0;
}

/*
 * Start nginx with prefix dir and configuration conf, and wait (5 s at
 * most) until every port in ports accepts. Returns its pid, or 0 if it
 * exited or did not come up (then it is stopped).
 */
static PAF_TEST_UNUSED pid_t nginx_launch(const char *dir, const char *conf, const int *ports,
                                          size_t n_ports) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);
                dup2(null, 0);
                dup2(null, 1);
                execl(NGINX, "nginx", "-p", dir, "-c", conf, "-e", "/dev/null", (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 500; i++) {
                bool all = true;
                for (size_t k = 0; k < n_ports && all; k++)
                        all = port_accepts(ports[k]);
                if (all)
                        return pid;
                if (waitpid(pid, NULL, WNOHANG) == pid)
                        return 0;
                usleep(10 * 1000);
        }
        process_stop(&pid);
        return 0;
}

/* rm -rf a test's directory; dir is emptied. */
static PAF_TEST_UNUSED void remove_tree(char *dir) {
        if (!dir[0])
                return;
        char cmd[4200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
        dir[0] = '\0';
}

/* One nginx in a fresh directory, listening on a free port and a unix socket. */
typedef struct nginx {
        pid_t pid;
        int port;
        char dir[256];
        char sock[PATH_MAX];
} nginx;

typedef void (*nginx_write_tree_t)(nginx *n);

static PAF_TEST_UNUSED void nginx_stop(nginx *n) {
        process_stop(&n->pid);
}

static PAF_TEST_UNUSED void nginx_rm_tree(nginx *n) {
        remove_tree(n->dir);
}

/* Start nginx on a free port with the configuration write_tree puts in
 * n->dir (nginx.conf and its files); false if it would not come up. */
static PAF_TEST_UNUSED bool nginx_start(nginx *n, nginx_write_tree_t write_tree) {
        *n = (nginx){0};
        snprintf(n->dir, sizeof(n->dir), "/tmp/paf-nginx-XXXXXX");
        assert_non_null(mkdtemp(n->dir));
        /* The port may be taken between our probe and nginx's bind: retry. */
        for (int attempt = 0; attempt < 5 && n->pid <= 0; attempt++) {
                if (attempt > 0) {
                        char cmd[PATH_MAX + 64];
                        snprintf(cmd, sizeof(cmd), "rm -rf '%s'/* ", n->dir);
                        assert_int_equal(system(cmd), 0);
                }
                n->port = free_port();
                write_tree(n);
                char conf[PATH_MAX + 16];
                snprintf(conf, sizeof(conf), "%s/nginx.conf", n->dir);
                n->pid = nginx_launch(n->dir, conf, &n->port, 1);
        }
        return n->pid > 0;
}
