/* tests/acme/test-store.c — the ACME state store's directory backend: values, modes, atomic puts,
 * locks, names. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/acme/store.h"

static char tmpdir[64];
static char state[128];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

static int setup(void **s) {
        (void)s;
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/paf-test-store-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        snprintf(state, sizeof(state), "%s/state", tmpdir);
        paf_acme_store_dir_write_hook = NULL;
        return 0;
}

static int teardown(void **s) {
        (void)s;
        paf_acme_store_dir_write_hook = NULL;
        chmod(tmpdir, 0700);
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}

static paf_acme_store *open_store(void) {
        paf_acme_store *st = NULL;
        paf_error err = PAF_ERROR_NULL;
        int r = paf_acme_store_dir_new(state, &st, &err);
        if (r < 0)
                fail_msg("%s", err.message);
        return st;
}

static void put(paf_acme_store *st, const char *key, const char *value, unsigned mode) {
        paf_error err = PAF_ERROR_NULL;
        int r = paf_acme_store_put(st, key, value, strlen(value), mode, &err);
        if (r < 0)
                fail_msg("put %s: %s", key, err.message);
}

/* The value of key, which must exist (and be a secret if secret). */
static char *get(paf_acme_store *st, const char *key, unsigned flags) {
        void *data;
        size_t size;
        paf_error err = PAF_ERROR_NULL;
        int r = paf_acme_store_get(st, key, flags, &data, &size, &err);
        if (r < 0)
                fail_msg("get %s: %s", key, err.message);
        assert_int_equal(strlen(data), size);
        return data;
}

static mode_t mode_of(const char *rel) {
        char p[512];
        struct stat s;
        snprintf(p, sizeof(p), "%s/%s", state, rel);
        assert_int_equal(lstat(p, &s), 0);
        return s.st_mode & 07777;
}

/* How many hidden (temporary) files dir holds. */
static int hidden_files(const char *rel) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", state, rel);
        DIR *d = opendir(p);
        assert_non_null(d);
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static int open_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        assert_non_null(d);
        int n = 0;
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static void assert_list(paf_acme_store *st, const char *prefix, const char *const *want) {
        char **l = NULL;
        paf_error err = PAF_ERROR_NULL;
        int r = paf_acme_store_list(st, prefix, &l, &err);
        if (r < 0)
                fail_msg("list %s: %s", prefix, err.message);
        size_t i = 0;
        for (; want[i]; i++) {
                assert_non_null(l[i]);
                assert_string_equal(l[i], want[i]);
        }
        assert_null(l[i]);
        paf_acme_store_strv_free(l);
}

static void test_round_trip(void **s) {
        (void)s;
        paf_acme_store *st = open_store();
        put(st, "certs/example.com/fullchain.pem", "CHAIN 1", 0644);
        char *v = get(st, "certs/example.com/fullchain.pem", 0);
        assert_string_equal(v, "CHAIN 1");
        free(v);
        put(st, "certs/example.com/fullchain.pem", "CHAIN 2, longer", 0644);
        put(st, "certs/example.com/key.pem", "KEY", 0600);
        put(st, "certs/*.example.org/key.pem", "WILDCARD KEY", 0600);
        put(st, "accounts/localhost_14000/account.key", "ACCOUNT", 0600);
        put(st, "empty", "", 0644);

        /* A lock leaves no key behind. */
        paf_acme_store_lock *l = NULL;
        assert_int_equal(paf_acme_store_lock_take(st, "certs/example.com", 0, &l, NULL), 0);
        l = paf_acme_store_unlock(l);
        assert_null(l);

        assert_list(st, "", (const char *const[]){"accounts", "certs", "empty", NULL});
        assert_list(st, "certs", (const char *const[]){"*.example.org", "example.com", NULL});
        assert_list(st, "certs/example.com",
                    (const char *const[]){"fullchain.pem", "key.pem", NULL});
        assert_list(st, "certs/none.example", (const char *const[]){NULL});
        paf_error lerr = PAF_ERROR_NULL;
        char **nl = NULL;
        assert_int_equal(paf_acme_store_list(st, "certs/example.com/key.pem", &nl, &lerr),
                         -ENOTDIR);
        assert_null(nl);
        assert_non_null(strstr(lerr.message, "certs/example.com/key.pem: not a directory"));
        paf_acme_store_unref(st);

        /* Another store on the same directory (a restart) reads it all. */
        st = open_store();
        v = get(st, "certs/example.com/fullchain.pem", 0);
        assert_string_equal(v, "CHAIN 2, longer");
        free(v);
        v = get(st, "certs/*.example.org/key.pem", PAF_ACME_STORE_SECRET);
        assert_string_equal(v, "WILDCARD KEY");
        free(v);
        v = get(st, "empty", 0);
        assert_string_equal(v, "");
        free(v);

        paf_error err = PAF_ERROR_NULL;
        void *data = NULL;
        size_t size;
        assert_int_equal(paf_acme_store_delete(st, "certs/example.com/key.pem", &err), 0);
        assert_int_equal(paf_acme_store_get(st, "certs/example.com/key.pem", 0, &data, &size, &err),
                         -ENOENT);
        assert_null(data);
        assert_non_null(strstr(err.message, state));
        assert_non_null(strstr(err.message, "certs/example.com/key.pem"));
        assert_int_equal(paf_acme_store_delete(st, "certs/example.com/key.pem", NULL), -ENOENT);
        assert_int_equal(paf_acme_store_get(st, "nothere/at/all", 0, &data, &size, NULL), -ENOENT);
        /* An empty prefix goes; a full one stays. */
        assert_int_equal(paf_acme_store_delete(st, "certs/example.com", NULL), -ENOTEMPTY);
        assert_int_equal(paf_acme_store_delete(st, "certs/example.com/fullchain.pem", NULL), 0);
        assert_int_equal(paf_acme_store_delete(st, "certs/example.com", NULL), 0);
        assert_list(st, "certs", (const char *const[]){"*.example.org", NULL});
        paf_acme_store_unref(st);
}

static void test_modes(void **s) {
        (void)s;
        /* The modes are exact whatever the umask: a permissive one must not
         * widen a key, a strict one must not narrow a certificate. */
        mode_t old = umask(0);
        paf_acme_store *st = open_store();
        assert_int_equal(mode_of(""), 0700);
        put(st, "certs/example.com/key.pem", "KEY", 0600);
        umask(077);
        put(st, "certs/example.com/fullchain.pem", "CHAIN", 0644);
        umask(0);
        put(st, "accounts/acme.example/account.key", "ACCOUNT", 0600);
        paf_acme_store_lock *l = NULL;
        assert_int_equal(paf_acme_store_lock_take(st, "accounts/acme.example", 0, &l, NULL), 0);
        umask(old);

        assert_int_equal(mode_of("certs/example.com/key.pem"), 0600);
        assert_int_equal(mode_of("accounts/acme.example/account.key"), 0600);
        assert_int_equal(mode_of("certs/example.com/fullchain.pem"), 0644);
        assert_int_equal(mode_of("certs"), 0700);
        assert_int_equal(mode_of("certs/example.com"), 0700);
        assert_int_equal(mode_of("accounts/acme.example"), 0700);
        assert_int_equal(mode_of(".locks"), 0700);
        assert_int_equal(mode_of(".locks/accounts"), 0700);
        assert_int_equal(mode_of(".locks/accounts/acme.example"), 0600);

        /* A mode that lets others write is refused up front. */
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_acme_store_put(st, "x", "v", 1, 0666, &err), -EINVAL);
        assert_non_null(strstr(err.message, "0666"));
        assert_int_equal(paf_acme_store_put(st, "x", "v", 1, 04600, NULL), -EINVAL);
        paf_acme_store_unlock(l);
        paf_acme_store_unref(st);
}

static void test_secret_refused(void **s) {
        (void)s;
        paf_acme_store *st = open_store();
        put(st, "certs/example.com/key.pem", "KEY", 0600);
        char p[512];
        snprintf(p, sizeof(p), "%s/certs/example.com/key.pem", state);

        /* A key someone else may read is no longer a secret: refused, as ssh does. */
        assert_int_equal(chmod(p, 0640), 0);
        paf_error err = PAF_ERROR_NULL;
        void *data = NULL;
        size_t size;
        assert_int_equal(paf_acme_store_get(st, "certs/example.com/key.pem", PAF_ACME_STORE_SECRET,
                                            &data, &size, &err),
                         -EPERM);
        assert_null(data);
        assert_non_null(strstr(err.message, p));
        assert_non_null(strstr(err.message, "0640"));
        /* Read as a non-secret (a certificate), the mode is fine. */
        free(get(st, "certs/example.com/key.pem", 0));
        assert_int_equal(chmod(p, 0604), 0);
        assert_int_equal(paf_acme_store_get(st, "certs/example.com/key.pem", PAF_ACME_STORE_SECRET,
                                            &data, &size, NULL),
                         -EPERM);
        /* One others may write is refused even as a certificate. */
        assert_int_equal(chmod(p, 0620), 0);
        assert_int_equal(paf_acme_store_get(st, "certs/example.com/key.pem", 0, &data, &size, &err),
                         -EPERM);
        assert_non_null(strstr(err.message, "writable by group or others"));

        /* A FIFO in the place of a key is refused, not waited on. */
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkfifo(p, 0600), 0);
        assert_int_equal(paf_acme_store_get(st, "certs/example.com/key.pem", PAF_ACME_STORE_SECRET,
                                            &data, &size, &err),
                         -EINVAL);
        assert_non_null(strstr(err.message, "not a regular file"));

        /* A symlink in the place of a key is not followed. */
        assert_int_equal(unlink(p), 0);
        char target[512];
        snprintf(target, sizeof(target), "%s/outside", tmpdir);
        FILE *f = fopen(target, "w");
        assert_non_null(f);
        fputs("NOT OURS", f);
        fclose(f);
        chmod(target, 0600);
        assert_int_equal(symlink(target, p), 0);
        assert_true(paf_acme_store_get(st, "certs/example.com/key.pem", PAF_ACME_STORE_SECRET,
                                       &data, &size, &err) < 0);
        assert_null(data);
        assert_non_null(strstr(err.message, "symbolic link"));
        paf_acme_store_unref(st);
}

static int fail_after_64k(size_t written, size_t total) {
        (void)total;
        return written >= 64 * 1024 ? -ENOSPC : 0;
}

static char *big_value(size_t size, char c) {
        char *b = malloc(size + 1);
        assert_non_null(b);
        memset(b, c, size);
        b[size] = 0;
        return b;
}

static void test_failed_put_keeps_old(void **s) {
        (void)s;
        paf_acme_store *st = open_store();
        put(st, "certs/example.com/fullchain.pem", "OLD CHAIN", 0644);

        int fds = open_fds();
        /* The disk fills up after 64 KiB of a 1 MiB value. */
        char *big = big_value(1024 * 1024, 'N');
        paf_acme_store_dir_write_hook = fail_after_64k;
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_acme_store_put(st, "certs/example.com/fullchain.pem", big, strlen(big),
                                            0644, &err),
                         -ENOSPC);
        paf_acme_store_dir_write_hook = NULL;
        free(big);
        assert_non_null(strstr(err.message, state));
        assert_non_null(strstr(err.message, "certs/example.com/fullchain.pem"));
        assert_non_null(strstr(err.message, "old value kept"));

        char *v = get(st, "certs/example.com/fullchain.pem", 0);
        assert_string_equal(v, "OLD CHAIN");
        free(v);
        /* And no temporary file is left behind. */
        assert_int_equal(hidden_files("certs/example.com"), 0);
        /* Nor a descriptor. */
        assert_int_equal(open_fds(), fds);

        /* A key whose last segment is as long as a segment may be: its
         * temporary file's name still fits. */
        char longkey[300];
        snprintf(longkey, sizeof(longkey), "certs/example.com/%0255d", 0);
        put(st, longkey, "LONG", 0644);
        v = get(st, longkey, 0);
        assert_string_equal(v, "LONG");
        free(v);
        assert_int_equal(hidden_files("certs/example.com"), 0);
        paf_acme_store_unref(st);
}

static int hook_fd = -1;

/* In the child: halfway through, tell the parent and wait to be killed. */
static int stop_halfway(size_t written, size_t total) {
        if (written >= total / 2) {
                char c = 'h';
                if (write(hook_fd, &c, 1) != 1)
                        _exit(3);
                for (int i = 0; i < 300; i++) /* at most 30 s, then give up */
                        poll(NULL, 0, 100);
                _exit(4);
        }
        return 0;
}

static void test_killed_writer(void **s) {
        (void)s;
        paf_acme_store *st = open_store();
        put(st, "certs/example.com/fullchain.pem", "OLD CHAIN", 0644);

        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(p[0]);
                hook_fd = p[1];
                paf_acme_store_dir_write_hook = stop_halfway;
                char *big = big_value(4 * 1024 * 1024, 'N');
                paf_acme_store_put(st, "certs/example.com/fullchain.pem", big, strlen(big), 0644,
                                   NULL);
                _exit(5);
        }
        close(p[1]);
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 30000), 1);
        char c;
        assert_int_equal(read(p[0], &c, 1), 1);
        close(p[0]);

        /* Mid-write: 2 MiB are in a temporary file, the key still reads old. */
        assert_int_equal(hidden_files("certs/example.com"), 1);
        char *v = get(st, "certs/example.com/fullchain.pem", 0);
        assert_string_equal(v, "OLD CHAIN");
        free(v);

        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        v = get(st, "certs/example.com/fullchain.pem", 0);
        assert_string_equal(v, "OLD CHAIN");
        free(v);

        /* The dead writer's temporary file stays hidden; a later put removes
         * it once it is old enough that no live writer can own it. */
        put(st, "certs/example.com/fullchain.pem", "NEW CHAIN", 0644);
        assert_int_equal(hidden_files("certs/example.com"), 1);
        char dir[512];
        snprintf(dir, sizeof(dir), "%s/certs/example.com", state);
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *de;
        struct timespec old[2] = {{.tv_sec = time(NULL) - 7200}, {.tv_sec = time(NULL) - 7200}};
        while ((de = readdir(d)))
                if (de->d_name[0] == '.' && strstr(de->d_name, ".tmp"))
                        assert_int_equal(utimensat(dirfd(d), de->d_name, old, 0), 0);
        closedir(d);
        assert_list(st, "certs/example.com", (const char *const[]){"fullchain.pem", NULL});
        put(st, "certs/example.com/fullchain.pem", "NEWER CHAIN", 0644);
        assert_int_equal(hidden_files("certs/example.com"), 0);
        v = get(st, "certs/example.com/fullchain.pem", 0);
        assert_string_equal(v, "NEWER CHAIN");
        free(v);
        paf_acme_store_unref(st);
}

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* In a child: what lock_take gives for name, waiting up to timeout_ms, as
 * an exit status (0: got it, 1: -EWOULDBLOCK, 2: other); 3 if the answer
 * came before min_ms. With go_fd >= 0, the child first waits for a byte
 * on it: a child forked while this process holds a lock would share it
 * (flock belongs to the open file, which fork shares). */
static int child_lock(paf_acme_store *st, const char *name, unsigned timeout_ms, unsigned min_ms,
                      int go_fd) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (go_fd >= 0) {
                        /* Bounded, should the parent fail before "go". */
                        struct pollfd pfd = {.fd = go_fd, .events = POLLIN};
                        char c;
                        if (poll(&pfd, 1, 10000) != 1 || read(go_fd, &c, 1) != 1)
                                _exit(2);
                }
                paf_acme_store_lock *l = NULL;
                uint64_t t0 = now_ms();
                paf_error err = PAF_ERROR_NULL;
                int r = paf_acme_store_lock_take(st, name, (uint64_t)timeout_ms * 1000, &l, &err);
                if ((r == 0 || r == -EWOULDBLOCK) && now_ms() - t0 < min_ms)
                        _exit(3);
                if (r == 0) {
                        paf_acme_store_unlock(l);
                        _exit(0);
                }
                if (r == -EWOULDBLOCK && strstr(err.message, state) && strstr(err.message, name))
                        _exit(1);
                _exit(2);
        }
        return pid;
}

static int wait_child(pid_t pid) {
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        return WEXITSTATUS(status);
}

static void test_lock(void **s) {
        (void)s;
        paf_acme_store *st = open_store();
        paf_acme_store_lock *l = NULL;
        paf_error err = PAF_ERROR_NULL;
        /* Forked before the lock is taken, started once it is. */
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t waiter = child_lock(st, "certs/example.com", 10000, 0, p[0]);
        close(p[0]);
        assert_int_equal(paf_acme_store_lock_take(st, "certs/example.com", 0, &l, &err), 0);

        /* Another process: refused at once, and after its timeout. */
        assert_int_equal(wait_child(child_lock(st, "certs/example.com", 0, 0, -1)), 1);
        assert_int_equal(wait_child(child_lock(st, "certs/example.com", 100, 90, -1)), 1);
        /* Other names are free. */
        assert_int_equal(wait_child(child_lock(st, "certs/other.example", 0, 0, -1)), 0);
        assert_int_equal(wait_child(child_lock(st, "accounts/acme.example", 0, 0, -1)), 0);
        /* flock belongs to the open file: a second lock in this process conflicts too. */
        paf_acme_store_lock *l2 = NULL;
        assert_int_equal(paf_acme_store_lock_take(st, "certs/example.com", 0, &l2, &err),
                         -EWOULDBLOCK);
        assert_null(l2);

        /* The waiter gets the lock once it is released (and not before). */
        assert_int_equal(write(p[1], "g", 1), 1);
        close(p[1]);
        poll(NULL, 0, 100);
        int status;
        assert_int_equal(waitpid(waiter, &status, WNOHANG), 0);
        /* The store may go first: the lock keeps it. */
        paf_acme_store_unref(st);
        paf_acme_store_unlock(l);
        assert_int_equal(wait_child(waiter), 0);

        st = open_store();
        assert_int_equal(wait_child(child_lock(st, "certs/example.com", 0, 0, -1)), 0);

        /* A lock dies with its holder: no stale lock after a crash. */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                paf_acme_store_lock *cl = NULL;
                _exit(paf_acme_store_lock_take(st, "certs/example.com", 0, &cl, NULL) == 0 ? 0 : 1);
        }
        assert_int_equal(wait_child(pid), 0);
        assert_int_equal(paf_acme_store_lock_take(st, "certs/example.com", 0, &l, NULL), 0);
        paf_acme_store_unlock(l);
        paf_acme_store_unref(st);
}

static void test_bad_names(void **s) {
        (void)s;
        const char *bad[] = {
                "",
                "/abs",
                "trailing/",
                "a//b",
                "..",
                "../x",
                "certs/../../x",
                "certs/.hidden",
                ".locks/x",
                "Certs/x",
                "a b",
                "a\\b",
                "certs/x..y",
                "certs/ex:ample",
                "a/b/c/d/e/f/g/h/i",
                "certs/\xc3\xa9t\xc3\xa9",
        };
        paf_acme_store *st = open_store();
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                paf_error err = PAF_ERROR_NULL;
                assert_int_equal(paf_acme_store_key_check(bad[i], &err), -EINVAL);
                assert_true(strlen(err.message) > 0);
                assert_int_equal(paf_acme_store_put(st, bad[i], "v", 1, 0600, NULL), -EINVAL);
                paf_acme_store_lock *l = NULL;
                assert_int_equal(paf_acme_store_lock_take(st, bad[i], 0, &l, NULL), -EINVAL);
                assert_null(l);
        }
        char longseg[300];
        memset(longseg, 'a', 256);
        longseg[256] = 0;
        assert_int_equal(paf_acme_store_key_check(longseg, NULL), -EINVAL);
        longseg[255] = 0;
        assert_int_equal(paf_acme_store_key_check(longseg, NULL), 0);
        assert_int_equal(paf_acme_store_key_check("certs/*.example.com/key.pem", NULL), 0);
        assert_int_equal(paf_acme_store_key_check("certs/2001_db8__1/key.pem", NULL), 0);
        char **l = NULL;
        assert_int_equal(paf_acme_store_list(st, "../", &l, NULL), -EINVAL);
        assert_null(l);
        /* Nothing was written anywhere by the refused calls. */
        assert_list(st, "", (const char *const[]){NULL});
        char p[512];
        snprintf(p, sizeof(p), "%s/x", tmpdir);
        assert_int_equal(access(p, F_OK), -1);
        paf_acme_store_unref(st);

        /* Identifiers into names. */
        struct {
                const char *id, *name;
        } ok[] = {
                {"Example.COM", "example.com"},
                {"*.example.com", "*.example.com"},
                {"foo_bar.example", "foo_bar.example"},
                {"xn--bcher-kva.example", "xn--bcher-kva.example"},
                {"192.0.2.1", "192.0.2.1"},
                {"2001:DB8:0:0::1", "2001_db8__1"},
                {"::1", "__1"},
                {"::ffff:192.0.2.1", "__ffff_192.0.2.1"},
        };
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                char *n = NULL;
                paf_error err = PAF_ERROR_NULL;
                if (paf_acme_store_name(ok[i].id, &n, &err) < 0)
                        fail_msg("%s: %s", ok[i].id, err.message);
                assert_string_equal(n, ok[i].name);
                assert_int_equal(paf_acme_store_key_check(n, NULL), 0);
                free(n);
        }
        const char *refused[] = {
                "",
                ".",
                "..",
                "a/b",
                ".example.com",
                "example.com.",
                "a..b",
                "a.*.com",
                "*",
                "*example.com",
                "fe80::1%eth0",
                "a:b",
                "2001_db8__1",
                "ex ample.com",
                "\xc3\xa9t\xc3\xa9.example",
                "[::1]",
        };
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                char *n = NULL;
                paf_error err = PAF_ERROR_NULL;
                if (paf_acme_store_name(refused[i], &n, &err) != -EINVAL)
                        fail_msg("\"%s\" accepted as \"%s\"", refused[i], n);
                assert_null(n);
                assert_true(strlen(err.message) > 0);
        }
}

static void test_insecure_dir(void **s) {
        (void)s;
        paf_acme_store *st = NULL;
        paf_error err = PAF_ERROR_NULL;

        assert_int_equal(mkdir(state, 0700), 0);
        assert_int_equal(chmod(state, 0777), 0);
        assert_int_equal(paf_acme_store_dir_new(state, &st, &err), -EPERM);
        assert_null(st);
        assert_non_null(strstr(err.message, state));
        assert_non_null(strstr(err.message, "writable by group or others (mode 0777)"));
        assert_int_equal(chmod(state, 0720), 0);
        assert_int_equal(paf_acme_store_dir_new(state, &st, &err), -EPERM);
        assert_non_null(strstr(err.message, "0720"));

        if (geteuid() == 0) {
                assert_int_equal(chmod(state, 0700), 0);
                assert_int_equal(chown(state, 65534, 65534), 0);
                assert_int_equal(paf_acme_store_dir_new(state, &st, &err), -EPERM);
                assert_non_null(strstr(err.message, state));
                assert_non_null(strstr(err.message, "owned by uid 65534"));
                assert_int_equal(chown(state, 0, 0), 0);
        }

        /* A state directory may be group-readable (0750), not writable. */
        assert_int_equal(chmod(state, 0750), 0);
        st = open_store();
        put(st, "certs/example.com/key.pem", "KEY", 0600);
        /* A directory inside that someone opened up is refused, named. */
        char p[512];
        snprintf(p, sizeof(p), "%s/certs", state);
        assert_int_equal(chmod(p, 0770), 0);
        assert_int_equal(paf_acme_store_put(st, "certs/example.com/key.pem", "K2", 2, 0600, &err),
                         -EPERM);
        assert_non_null(strstr(err.message, p));
        void *data = NULL;
        size_t size;
        assert_int_equal(paf_acme_store_get(st, "certs/example.com/key.pem", PAF_ACME_STORE_SECRET,
                                            &data, &size, &err),
                         -EPERM);
        assert_null(data);
        paf_acme_store_unref(st);

        /* Not a directory at all. */
        char f[512];
        snprintf(f, sizeof(f), "%s/file", tmpdir);
        int fd = open(f, O_WRONLY | O_CREAT, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(paf_acme_store_dir_new(f, &st, &err), -ENOTDIR);
        assert_non_null(strstr(err.message, f));
        assert_non_null(strstr(err.message, "not a directory"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_put_keeps_old, setup, teardown),
                cmocka_unit_test_setup_teardown(test_killed_writer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
                cmocka_unit_test_setup_teardown(test_insecure_dir, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
