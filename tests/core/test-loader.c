/* tests/core/test-loader.c — the plugin loader: checks and refusals, search path, options. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/fs.h>

#include "config.h"
#include <paf.h>

#define STR_(x) #x
#define STR(x) STR_(x)
/* PAF_ABI_MINOR + 1, spelt out: the preprocessor cannot add in a string. */
#if PAF_ABI_MINOR == 4
#define MINOR_AHEAD "5"
#else
#error "spell out PAF_ABI_MINOR + 1 as MINOR_AHEAD"
#endif
#define MINOR_HOST STR(PAF_ABI_MINOR)

#define assert_contains(haystack, needle)                                                          \
        do {                                                                                       \
                const char *h_ = (haystack), *n_ = (needle);                                       \
                if (!h_ || !strstr(h_, n_))                                                        \
                        fail_msg("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);        \
        } while (0)

static const char *fixture_dir(void) {
        const char *d = getenv("PAF_TEST_FIXTUREDIR");
        if (!d)
                fail_msg("PAF_TEST_FIXTUREDIR is not set");
        return d;
}

/* A fresh directory only we can write to, as the loader demands. */
static char *make_dir(void) {
        const char *tmp = getenv("TMPDIR");
        char *dir;
        assert_true(asprintf(&dir, "%s/paf-loader-XXXXXX", tmp && *tmp ? tmp : "/tmp") > 0);
        assert_non_null(mkdtemp(dir));
        assert_int_equal(chmod(dir, 0755), 0);
        return dir;
}

static char *path_in(const char *dir, const char *file) {
        char *p;
        assert_true(asprintf(&p, "%s/%s", dir, file) > 0);
        return p;
}

static void write_file(const char *path, const char *data, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        size_t n = strlen(data);
        assert_int_equal(write(fd, data, n), (ssize_t)n);
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static void copy_file(const char *src, const char *dst, mode_t mode) {
        int in = open(src, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                fail_msg("cannot open %s: %s", src, strerror(errno));
        int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(out >= 0);
        char buf[65536];
        ssize_t n;
        while ((n = read(in, buf, sizeof(buf))) > 0)
                assert_int_equal(write(out, buf, (size_t)n), n);
        assert_int_equal(n, 0);
        /* Explicitly: the umask must not decide whether the loader trusts it. */
        assert_int_equal(fchmod(out, mode), 0);
        close(in);
        close(out);
}

/* Copy the fixture NAME.so into dir. */
static void add_fixture(const char *dir, const char *name) {
        char *file, *src, *dst;
        assert_true(asprintf(&file, "%s.so", name) > 0);
        src = path_in(fixture_dir(), file);
        dst = path_in(dir, file);
        copy_file(src, dst, 0755);
        free(file);
        free(src);
        free(dst);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)st;
        (void)ftw;
        return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rm_rf(char *dir) {
        chmod(dir, 0755);
        assert_int_equal(nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
        free(dir);
}

static const paf_plugin_info *find_info(paf_registry *reg, const char *name) {
        size_t n = 0;
        const paf_plugin_info *infos = paf_registry_get_plugins(reg, &n);
        const paf_plugin_info *found = NULL;
        for (size_t i = 0; i < n; i++)
                if (strcmp(infos[i].name, name) == 0)
                        found = &infos[i];
        return found;
}

static size_t count_infos(paf_registry *reg, const char *name) {
        size_t n = 0, k = 0;
        const paf_plugin_info *infos = paf_registry_get_plugins(reg, &n);
        for (size_t i = 0; i < n; i++)
                k += strcmp(infos[i].name, name) == 0;
        return k;
}

static char *read_all(const char *path) {
        FILE *f = fopen(path, "re");
        if (!f)
                return strdup("");
        char *buf = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);
        assert_non_null(m);
        int c;
        while ((c = fgetc(f)) != EOF)
                fputc(c, m);
        fclose(f);
        fclose(m);
        return buf;
}

/* Everything paf_log() writes goes to stderr: catch it in a file. */
typedef struct capture {
        int saved;
        char path[64];
} capture;

static void capture_start(capture *c) {
        fflush(stderr);
        strcpy(c->path, "/tmp/paf-loader-log-XXXXXX");
        int fd = mkstemp(c->path);
        assert_true(fd >= 0);
        c->saved = dup(STDERR_FILENO);
        assert_true(c->saved >= 0);
        assert_true(dup2(fd, STDERR_FILENO) >= 0);
        close(fd);
}

static char *capture_end(capture *c) {
        fflush(stderr);
        assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
        close(c->saved);
        char *text = read_all(c->path);
        unlink(c->path);
        /* Show it anyway: it is the loader's own account of what happened. */
        fputs(text, stderr);
        return text;
}

/* libpaf's dlopen() calls land here first (the executable comes first in
 * symbol lookup): a test can arm it to exchange two directories right
 * before the loader maps a plugin, after every check on it passed. */
static struct {
        const char *a, *b;
        int done; /* 0: not armed or not yet, 1: exchanged, < 0: -errno */
} exchange;

PAF_EXPORT void *dlopen(const char *file, int mode) {
        static void *(*next)(const char *, int);
        if (!next)
                next = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
        if (exchange.a && exchange.done == 0 && file && !(mode & RTLD_NOLOAD))
                exchange.done =
                        renameat2(AT_FDCWD, exchange.a, AT_FDCWD, exchange.b, RENAME_EXCHANGE) == 0
                                ? 1
                                : -errno;
        return next(file, mode);
}

/* Each test starts from the same environment, whatever the developer's is. */
static int setup(void **state) {
        (void)state;
        setenv("PAF_PLUGIN_PATH", "", 1);
        unsetenv("PAF_TEST_GOOD_LOG");
        return 0;
}

/* ---- every fixture together ---- */

static const struct {
        const char *name;
        const char *reason;
} refusals[] = {
        {"abi-major", "ABI major 2, this host supports 1"},
        /* The fixture is built one minor ahead of this host, whatever it is. */
        {"abi-minor", "ABI minor " MINOR_AHEAD " is newer than this host's 1." MINOR_HOST},
        {"no-descriptor", "no plugin descriptor (symbol paf_plugin_entry not found)"},
        {"bad-name", "invalid plugin name \"Bad Name\""},
        {"wrong-name", "plugin name \"other\" does not match the file name \"wrong-name.so\""},
        {"init-fail", "init failed: Operation not permitted"},
        {"undefined-symbol", "dlopen failed: "},
        {"small-descriptor", "descriptor struct_size 8 is too small"},
        {"bad-options", "bad option table: option \"verbose\": default \"maybe\" is not a boolean"},
        {"bad-range", "bad option table: option \"level\": default value out of range (1-10)"},
        {"x", "not an ELF file"},
};

static void test_fixtures_together(void **state) {
        (void)state;
        char *dir = make_dir();
        add_fixture(dir, "good");
        for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
                if (strcmp(refusals[i].name, "x") != 0)
                        add_fixture(dir, refusals[i].name);
        char *text = path_in(dir, "x.so");
        write_file(text, "this is not a shared object\n", 0755);
        free(text);
        char *log = path_in(dir, "good.log");
        setenv("PAF_TEST_GOOD_LOG", log, 1);

        paf_registry *reg = NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
        paf_error error = PAF_ERROR_NULL;
        capture c;
        capture_start(&c);
        /* Nothing was requested by name: refusals are listed, not counted. */
        int r = paf_registry_load_plugins(reg, &error);
        char *logged = capture_end(&c);
        assert_int_equal(r, 0);

        const paf_plugin_info *good = find_info(reg, "good");
        assert_non_null(good);
        assert_true(good->loaded);
        assert_false(good->requested);
        assert_null(good->reason);
        assert_string_equal(good->version, "1.2.3");
        assert_string_equal(good->description, "Loader test fixture");
        assert_string_equal(good->protocols, "good");
        const paf_protocol *p = paf_registry_find_protocol(reg, "good");
        assert_non_null(p);
        assert_string_equal(paf_protocol_get_plugin(p), "good");
        assert_contains(logged, "good: says hi");

        for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
                const paf_plugin_info *info = find_info(reg, refusals[i].name);
                if (!info)
                        fail_msg("%s is not listed", refusals[i].name);
                assert_false(info->loaded);
                assert_null(info->version);
                assert_contains(info->reason, refusals[i].reason);
                char *file;
                assert_true(asprintf(&file, "%s/%s.so", dir, refusals[i].name) > 0);
                assert_string_equal(info->file, file);
                /* The log line names the file and the reason. */
                char *line;
                assert_true(asprintf(&line, "%s: %s", file, refusals[i].reason) > 0);
                assert_contains(logged, line);
                free(line);
                free(file);
        }
        /* Each reason is its own. */
        for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
                for (size_t j = 0; j < sizeof(refusals) / sizeof(refusals[0]); j++)
                        if (i != j)
                                assert_null(strstr(find_info(reg, refusals[i].name)->reason,
                                                   refusals[j].reason));
        assert_contains(find_info(reg, "undefined-symbol")->reason,
                        "paf_fixture_symbol_defined_nowhere");

        /* What the failed init registered is gone. */
        assert_null(paf_registry_find_protocol(reg, "init-fail"));
        for (size_t i = 0; i < paf_registry_get_n_protocols(reg); i++) {
                const char *owner = paf_protocol_get_plugin(paf_registry_get_protocol(reg, i));
                assert_true(!owner || strcmp(owner, "init-fail") != 0);
        }
        /* So is the rule it added: reading its key must not call into the
         * unloaded code. */
        paf_ctx *user = NULL, *view = NULL;
        assert_int_equal(paf_ctx_new(&user), 0);
        assert_int_equal(paf_ctx_set_string(user, "init-fail.seed", "x"), 0);
        assert_int_equal(paf_ctx_new_layered(user, paf_registry_get_ctx(reg), &view), 0);
        const char *derived;
        assert_int_equal(paf_ctx_get_string(view, "init-fail.endpoint", &derived), -ENOENT);
        paf_ctx_unref(view);
        paf_ctx_unref(user);

        /* Loading again is a no-op: the first of a name is remembered. */
        assert_int_equal(paf_registry_load_plugins(reg, &error), 0);
        assert_int_equal(count_infos(reg, "good"), 1);
        assert_int_equal(count_infos(reg, "abi-major"), 1);

        /* The good one is still fine and sees its defaults. */
        paf_value v;
        assert_int_equal(paf_registry_get_option(reg, "good", "greeting", &v), 0);
        assert_int_equal(v.type, PAF_TYPE_STRING);
        assert_string_equal(v.string, "hi");

        reg = paf_registry_unref(reg);
        char *report = read_all(log);
        assert_string_equal(report, "init good greeting=hi count=unset loud=false\n"
                                    "fini good state=hi\n");
        free(report);
        free(logged);
        free(log);
        rm_rf(dir);
}

/* ---- refusals one by one, by path ---- */

static void test_load_by_path(void **state) {
        (void)state;
        char *dir = make_dir();
        add_fixture(dir, "good");
        add_fixture(dir, "abi-major");
        char *good = path_in(dir, "good.so"), *abi = path_in(dir, "abi-major.so");

        paf_registry *reg = NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_load_plugin(reg, good, &error), 0);
        /* The same file again: nothing to do, nothing listed twice. */
        assert_int_equal(paf_registry_load_plugin(reg, good, &error), 0);
        assert_int_equal(count_infos(reg, "good"), 1);
        assert_true(find_info(reg, "good")->requested);

        assert_int_equal(paf_registry_load_plugin(reg, abi, &error), -EPROTONOSUPPORT);
        assert_int_equal(error.code, -EPROTONOSUPPORT);
        assert_contains(error.message, abi);
        assert_contains(error.message, "ABI major 2, this host supports 1");
        assert_true(find_info(reg, "abi-major")->requested);

        char *missing = path_in(dir, "missing.so");
        assert_int_equal(paf_registry_load_plugin(reg, missing, &error), -ENOENT);
        assert_contains(error.message, missing);
        assert_contains(error.message, "file not found");
        free(missing);

        char *sub = path_in(dir, "sub.so");
        assert_int_equal(mkdir(sub, 0755), 0);
        assert_true(paf_registry_load_plugin(reg, sub, &error) < 0);
        assert_contains(error.message, sub);
        assert_contains(error.message, "not a regular file");
        free(sub);

        char *odd = path_in(dir, "Odd.so");
        copy_file(good, odd, 0755);
        assert_int_equal(paf_registry_load_plugin(reg, odd, &error), -EINVAL);
        assert_contains(error.message, "file name \"Odd.so\" is not NAME.so");
        free(odd);

        assert_int_equal(paf_registry_load_plugin(reg, "Bad Name", &error), -EINVAL);
        assert_contains(error.message, "invalid plugin name");
        assert_int_equal(paf_registry_load_plugin(reg, "", &error), -EINVAL);
        assert_int_equal(paf_registry_load_plugin(reg, NULL, &error), -EINVAL);
        assert_int_equal(paf_registry_load_plugin(NULL, "good", &error), -EINVAL);
        assert_int_equal(paf_registry_load_plugins(NULL, &error), -EINVAL);
        assert_int_equal(paf_registry_add_plugin_path(reg, ""), -EINVAL);
        assert_int_equal(paf_registry_add_plugin_path(reg, NULL), -EINVAL);
        assert_null(paf_registry_get_plugin_path(NULL));
        assert_null(paf_registry_get_plugins(reg, NULL));

        paf_registry_unref(reg);
        free(good);
        free(abi);
        rm_rf(dir);
}

static void test_same_name_twice(void **state) {
        (void)state;
        char *a = make_dir(), *b = make_dir();
        add_fixture(a, "good");
        add_fixture(b, "good");
        char *pa = path_in(a, "good.so"), *pb = path_in(b, "good.so");

        paf_registry *reg = NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_load_plugin(reg, pa, &error), 0);
        assert_int_equal(paf_registry_load_plugin(reg, pb, &error), -EEXIST);
        assert_contains(error.message, pb);
        char *expect;
        assert_true(asprintf(&expect, "a plugin named \"good\" is already loaded from %s", pa) > 0);
        assert_contains(error.message, expect);
        free(expect);
        assert_int_equal(paf_registry_get_n_protocols(reg), 1);

        paf_registry_unref(reg);
        free(pa);
        free(pb);
        rm_rf(a);
        rm_rf(b);
}

static void test_insecure(void **state) {
        (void)state;
        paf_registry *reg = NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        paf_error error = PAF_ERROR_NULL;

        /* A file others may write to. */
        char *a = make_dir();
        char *src = path_in(fixture_dir(), "good.so"), *pa = path_in(a, "good.so");
        copy_file(src, pa, 0757);
        assert_int_equal(paf_registry_load_plugin(reg, pa, &error), -EPERM);
        assert_contains(error.message, pa);
        assert_contains(error.message, "file is writable by group or others (mode 0757)");

        /* Group-writable is no better. */
        assert_int_equal(chmod(pa, 0775), 0);
        assert_int_equal(paf_registry_load_plugin(reg, pa, &error), -EPERM);
        assert_contains(error.message, "file is writable by group or others (mode 0775)");

        /* A directory others may write to: they could swap the file. */
        char *b = make_dir();
        char *pb = path_in(b, "good.so");
        copy_file(src, pb, 0755);
        assert_int_equal(chmod(b, 0777), 0);
        assert_int_equal(paf_registry_load_plugin(reg, pb, &error), -EPERM);
        assert_contains(error.message, pb);
        char *expect;
        assert_true(asprintf(&expect, "directory %s is writable by group or others (mode 0777)",
                             b) > 0);
        assert_contains(error.message, expect);
        free(expect);

        /* A symlink is not followed to the file, wherever it points. */
        char *c = make_dir();
        char *link = path_in(c, "good.so");
        assert_int_equal(symlink(pb, link), 0);
        assert_int_equal(paf_registry_load_plugin(reg, link, &error), -ELOOP);
        assert_contains(error.message, "file is a symbolic link");

        /* A file owned by someone else (only root can arrange that). */
        if (geteuid() == 0) {
                assert_int_equal(chmod(b, 0755), 0);
                assert_int_equal(chown(pb, 4242, 4242), 0);
                assert_int_equal(paf_registry_load_plugin(reg, pb, &error), -EPERM);
                assert_contains(error.message, "file is owned by uid 4242, neither root nor uid 0");
        }

        /* None of it loaded; the process goes on and a good copy loads. */
        assert_int_equal(paf_registry_get_n_protocols(reg), 0);
        char *d = make_dir();
        char *pd = path_in(d, "good.so");
        copy_file(src, pd, 0755);
        assert_int_equal(paf_registry_load_plugin(reg, pd, &error), 0);
        assert_non_null(paf_registry_find_protocol(reg, "good"));

        paf_registry_unref(reg);
        free(src);
        free(pa);
        free(pb);
        free(link);
        free(pd);
        rm_rf(a);
        rm_rf(b);
        rm_rf(c);
        rm_rf(d);
}

/* Plugins are finished in reverse load order, then unloaded. */
static void test_fini_order(void **state) {
        (void)state;
        char *dir = make_dir();
        add_fixture(dir, "good");
        add_fixture(dir, "second");
        char *log = path_in(dir, "good.log");
        setenv("PAF_TEST_GOOD_LOG", log, 1);

        for (int round = 0; round < 2; round++) {
                paf_registry *reg = NULL;
                assert_int_equal(paf_registry_new(&reg), 0);
                assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
                paf_error error = PAF_ERROR_NULL;
                const char *first = round == 0 ? "good" : "second";
                const char *then = round == 0 ? "second" : "good";
                assert_int_equal(paf_registry_load_plugin(reg, first, &error), 0);
                assert_int_equal(paf_registry_load_plugin(reg, then, &error), 0);

                /* A reference held elsewhere (a flow, a listener) keeps them loaded. */
                paf_registry_ref(reg);
                assert_null(paf_registry_unref(reg));
                assert_non_null(paf_registry_find_protocol(reg, "good"));
                paf_registry_unref(reg);
        }
        char *report = read_all(log);
        assert_string_equal(report, "init good greeting=hi count=unset loud=false\n"
                                    "init second\n"
                                    "fini second\n"
                                    "fini good state=hi\n"
                                    "init second\n"
                                    "init good greeting=hi count=unset loud=false\n"
                                    "fini good state=hi\n"
                                    "fini second\n");
        free(report);
        free(log);
        rm_rf(dir);
}

/* ---- the search path ---- */

static void test_search_order(void **state) {
        (void)state;
        char *prog = make_dir(), *env = make_dir(), *conf = make_dir();
        add_fixture(prog, "good");
        add_fixture(env, "good");
        add_fixture(conf, "good");
        char *conf_text;
        assert_true(asprintf(&conf_text, "[paf]\nplugin-path = %s\n", conf) > 0);
        char *env_value;
        /* Empty entries mean nothing. */
        assert_true(asprintf(&env_value, "::%s:", env) > 0);
        paf_error error = PAF_ERROR_NULL;

        for (int round = 0; round < 3; round++) {
                setenv("PAF_PLUGIN_PATH", round < 2 ? env_value : "", 1);
                paf_registry *reg = NULL;
                assert_int_equal(paf_registry_new(&reg), 0);
                if (round < 1)
                        assert_int_equal(paf_registry_add_plugin_path(reg, prog), 0);
                /* The config comes after the program's path and still takes its place. */
                assert_int_equal(
                        paf_registry_load_config_string(reg, "order.conf", conf_text, &error), 0);

                const char *const *path = paf_registry_get_plugin_path(reg);
                assert_non_null(path);
                size_t i = 0;
                if (round < 1)
                        assert_string_equal(path[i++], prog);
                if (round < 2)
                        assert_string_equal(path[i++], env);
                assert_string_equal(path[i++], conf);
                assert_string_equal(path[i++], PAF_PLUGINSDIR);
                assert_null(path[i]);
                /* Asking again hands out the same array. */
                assert_ptr_equal(paf_registry_get_plugin_path(reg), path);

                assert_int_equal(paf_registry_load_plugin(reg, "good", &error), 0);
                const char *winner = round == 0 ? prog : round == 1 ? env : conf;
                char *expect = path_in(winner, "good.so");
                assert_string_equal(find_info(reg, "good")->file, expect);
                free(expect);
                paf_registry_unref(reg);
        }

        /* Scanning: the first directory's copy wins, the other is not even tried. */
        setenv("PAF_PLUGIN_PATH", env, 1);
        paf_registry *reg = NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_registry_add_plugin_path(reg, prog), 0);
        assert_int_equal(paf_registry_load_plugins(reg, &error), 0);
        assert_int_equal(count_infos(reg, "good"), 1);
        char *expect = path_in(prog, "good.so");
        assert_string_equal(find_info(reg, "good")->file, expect);
        free(expect);
        paf_registry_unref(reg);

        setenv("PAF_PLUGIN_PATH", "", 1);
        free(conf_text);
        free(env_value);
        rm_rf(prog);
        rm_rf(env);
        rm_rf(conf);
}

static void test_load_list(void **state) {
        (void)state;
        char *dir = make_dir();
        add_fixture(dir, "good");
        add_fixture(dir, "abi-major");
        add_fixture(dir, "init-fail");

        paf_registry *reg = NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_load_config_string(reg, "list.conf",
                                                         "[paf]\n"
                                                         "load = good, nosuch\n"
                                                         "load = abi-major\n",
                                                         &error),
                         0);
        /* nosuch is missing, abi-major refused; init-fail was not asked for. */
        assert_int_equal(paf_registry_load_plugins(reg, &error), 2);

        assert_true(find_info(reg, "good")->loaded);
        assert_true(find_info(reg, "good")->requested);
        const paf_plugin_info *nosuch = find_info(reg, "nosuch");
        assert_non_null(nosuch);
        assert_false(nosuch->loaded);
        assert_true(nosuch->requested);
        assert_null(nosuch->file);
        char *expect;
        assert_true(asprintf(&expect, "not found in search path: %s:%s", dir, PAF_PLUGINSDIR) > 0);
        assert_string_equal(nosuch->reason, expect);
        free(expect);
        assert_true(find_info(reg, "abi-major")->requested);
        assert_null(find_info(reg, "init-fail"));

        /* Asking again: still two short, nothing listed twice. */
        assert_int_equal(paf_registry_load_plugins(reg, &error), 2);
        assert_int_equal(count_infos(reg, "nosuch"), 1);

        /* One by name, missing. */
        assert_int_equal(paf_registry_load_plugin(reg, "absent", &error), -ENOENT);
        assert_contains(error.message, "plugin \"absent\": not found in search path: ");

        paf_registry_unref(reg);

        /* "load =" with nothing: load nothing at all. */
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
        assert_int_equal(
                paf_registry_load_config_string(reg, "none.conf", "[paf]\nload =\n", &error), 0);
        assert_int_equal(paf_registry_load_plugins(reg, &error), 0);
        size_t n = 42;
        assert_null(paf_registry_get_plugins(reg, &n));
        assert_int_equal(n, 0);
        paf_registry_unref(reg);
        rm_rf(dir);
}

/* ---- options ---- */

static paf_registry *load_good(const char *dir, const char *conf, paf_error *error, int *ret) {
        paf_registry *reg = NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
        assert_int_equal(paf_registry_load_config_string(reg, "test.conf", conf, error), 0);
        *ret = paf_registry_load_plugins(reg, error);
        return reg;
}

static void test_options(void **state) {
        (void)state;
        char *dir = make_dir();
        add_fixture(dir, "good");
        char *log = path_in(dir, "good.log");
        setenv("PAF_TEST_GOOD_LOG", log, 1);
        paf_error error = PAF_ERROR_NULL;
        int r;

        paf_registry *reg = load_good(dir,
                                      "[paf]\n"
                                      "load = good\n"
                                      "[good]\n"
                                      "greeting = hello there\n"
                                      "loud = off\n"
                                      "count = -42\n",
                                      &error, &r);
        assert_int_equal(r, 0);
        paf_value v;
        assert_int_equal(paf_registry_get_option(reg, "good", "greeting", &v), 0);
        assert_int_equal(v.type, PAF_TYPE_STRING);
        assert_string_equal(v.string, "hello there");
        assert_int_equal(paf_registry_get_option(reg, "good", "loud", &v), 0);
        assert_int_equal(v.type, PAF_TYPE_BOOL);
        assert_false(v.boolean);
        assert_int_equal(paf_registry_get_option(reg, "good", "count", &v), 0);
        assert_int_equal(v.type, PAF_TYPE_INT);
        assert_int_equal(v.integer, -42);
        assert_int_equal(paf_registry_get_option(reg, "good", "nosuch", &v), -ENOENT);
        assert_int_equal(paf_registry_get_option(reg, "nosuch", "greeting", &v), -ENOENT);
        assert_int_equal(paf_registry_get_option(reg, "paf", "load", &v), 0);
        assert_string_equal(v.string, "good");
        assert_int_equal(paf_registry_get_option(reg, "paf", "log-level", &v), -ENODATA);
        assert_int_equal(paf_registry_get_option(reg, "good", NULL, &v), -EINVAL);
        assert_int_equal(paf_registry_get_option(reg, "good", "count", NULL), -EINVAL);
        paf_registry_unref(reg);

        /* Defaults, an empty string, and a declared option with no default. */
        reg = load_good(dir, "[good]\ngreeting =\n", &error, &r);
        assert_int_equal(r, 0);
        assert_int_equal(paf_registry_get_option(reg, "good", "greeting", &v), 0);
        assert_string_equal(v.string, "");
        assert_int_equal(paf_registry_get_option(reg, "good", "loud", &v), 0);
        assert_false(v.boolean);
        v.type = PAF_TYPE_NONE;
        assert_int_equal(paf_registry_get_option(reg, "good", "count", &v), -ENODATA);
        assert_int_equal(v.type, PAF_TYPE_NONE); /* untouched on failure */
        paf_registry_unref(reg);

        char *report = read_all(log);
        assert_string_equal(report, "init good greeting=hello there count=-42 loud=false\n"
                                    "fini good state=hello there\n"
                                    "init good greeting= count=unset loud=false\n"
                                    "fini good state=\n");
        free(report);
        free(log);
        rm_rf(dir);
}

static void test_config_errors(void **state) {
        (void)state;
        char *dir = make_dir();
        add_fixture(dir, "good");
        add_fixture(dir, "abi-major");
        paf_error error = PAF_ERROR_NULL;
        int r;

        /* A section nobody loaded, close to one that is. */
        paf_registry *reg = load_good(dir, "[paf]\nload = good\n\n[god]\nx = 1\n", &error, &r);
        assert_int_equal(r, -EINVAL);
        assert_string_equal(error.message,
                            "test.conf:4: [god]: unknown section (did you mean \"good\"?)");
        assert_true(find_info(reg, "good")->loaded);
        paf_registry_unref(reg);

        /* Far from anything: no suggestion. */
        reg = load_good(dir, "[paf]\nload = good\n[elsewhere]\n", &error, &r);
        assert_int_equal(r, -EINVAL);
        assert_string_equal(error.message, "test.conf:3: [elsewhere]: unknown section");
        paf_registry_unref(reg);

        /* An option the plugin does not take: it is refused, before its init(). */
        reg = load_good(dir, "[good]\ngreeting = yo\nlouder = yes\n", &error, &r);
        assert_int_equal(r, -EINVAL);
        assert_string_equal(
                error.message,
                "test.conf:3: [good] key \"louder\": unknown option (did you mean \"loud\"?)");
        assert_false(find_info(reg, "good")->loaded);
        assert_string_equal(find_info(reg, "good")->reason, error.message);
        assert_null(paf_registry_find_protocol(reg, "good"));
        paf_registry_unref(reg);

        reg = load_good(dir, "[good]\n\ncount = abc\n", &error, &r);
        assert_int_equal(r, -EINVAL);
        assert_string_equal(error.message,
                            "test.conf:3: [good] key \"count\": \"abc\" is not an integer");
        paf_registry_unref(reg);

        reg = load_good(dir, "[good]\nloud = maybe\n", &error, &r);
        assert_int_equal(r, -EINVAL);
        assert_string_equal(error.message,
                            "test.conf:2: [good] key \"loud\": \"maybe\" is not a boolean "
                            "(yes/no, true/false, on/off, 1/0)");
        paf_registry_unref(reg);

        /* A later line does not replace a bad value: a key set twice is
         * refused as the file is read. */
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_registry_load_config_string(
                                 reg, "test.conf", "[good]\ncount = abc\ncount = 7\n", &error),
                         -EINVAL);
        assert_string_equal(error.message,
                            "test.conf:3: [good] key \"count\": set twice (first on line 2)");
        paf_registry_unref(reg);

        /* Several problems: the earliest line is reported. */
        reg = load_good(dir, "[zzz]\n[good]\ncount = x\n", &error, &r);
        assert_int_equal(r, -EINVAL);
        assert_string_equal(error.message, "test.conf:1: [zzz]: unknown section");
        paf_registry_unref(reg);

        /* The section of a refused plugin: its refusal says it all. */
        reg = load_good(dir, "[abi-major]\nanything = 1\n", &error, &r);
        assert_int_equal(r, 0);
        assert_false(find_info(reg, "abi-major")->loaded);
        paf_registry_unref(reg);

        /* Single load: the same check, the same message. */
        paf_registry *single = NULL;
        assert_int_equal(paf_registry_new(&single), 0);
        assert_int_equal(paf_registry_load_config_string(single, "one.conf",
                                                         "[good]\ncount = 1.5\n", &error),
                         0);
        char *path = path_in(dir, "good.so");
        assert_int_equal(paf_registry_load_plugin(single, path, &error), -EINVAL);
        assert_string_equal(error.message,
                            "one.conf:2: [good] key \"count\": \"1.5\" is not an integer");
        free(path);
        paf_registry_unref(single);
        rm_rf(dir);
}

/* ---- option tables across ABI minors ---- */

static void test_option_tables(void **state) {
        (void)state;
        char *dir = make_dir();
        add_fixture(dir, "old-abi");
        add_fixture(dir, "wide");
        add_fixture(dir, "ranged");
        paf_error error = PAF_ERROR_NULL;
        int r;

        /* A 1.1 plugin: its shorter descriptor is read no further than its
         * struct_size, its paf_option table as it was. */
        paf_registry *reg = load_good(dir,
                                      "[old-abi]\ncount = -99999\nloud = yes\n"
                                      "[wide]\nsecond = yes\nthird = -9\n",
                                      &error, &r);
        if (r != 0)
                fail_msg("refused: %s", error.message);
        assert_true(find_info(reg, "old-abi")->loaded);
        assert_string_equal(find_info(reg, "old-abi")->version, "1.1");
        paf_value v;
        assert_int_equal(paf_registry_get_option(reg, "old-abi", "count", &v), 0);
        assert_int_equal(v.integer, -99999);
        assert_int_equal(paf_registry_get_option(reg, "old-abi", "loud", &v), 0);
        assert_true(v.boolean);
        /* Entries wider than this host's paf_option_spec are read by the
         * stride the plugin gave. */
        assert_true(find_info(reg, "wide")->loaded);
        assert_int_equal(paf_registry_get_option(reg, "wide", "first", &v), 0);
        assert_int_equal(v.integer, 3);
        assert_int_equal(paf_registry_get_option(reg, "wide", "second", &v), 0);
        assert_true(v.boolean);
        assert_int_equal(paf_registry_get_option(reg, "wide", "third", &v), 0);
        assert_int_equal(v.integer, -9);
        assert_true(find_info(reg, "ranged")->loaded);
        paf_registry_unref(reg);

        /* And their ranges hold. */
        reg = load_good(dir, "[wide]\nthird = 0\n", &error, &r);
        assert_int_equal(r, -ERANGE);
        assert_string_equal(error.message,
                            "test.conf:2: [wide] key \"third\": value out of range (-9--1)");
        assert_false(find_info(reg, "wide")->loaded);
        assert_string_equal(find_info(reg, "wide")->reason, error.message);
        paf_registry_unref(reg);
        reg = load_good(dir, "[ranged]\nlevel = 11\n", &error, &r);
        assert_int_equal(r, -ERANGE);
        assert_string_equal(error.message,
                            "test.conf:2: [ranged] key \"level\": value out of range (1-10)");
        paf_registry_unref(reg);
        rm_rf(dir);
}

/* ---- trust by descriptor ---- */

static char *real_path(const char *path) {
        char *r = realpath(path, NULL);
        assert_non_null(r);
        return r;
}

static char *make_subdir(const char *dir, const char *name, mode_t mode) {
        char *p = path_in(dir, name);
        assert_int_equal(mkdir(p, 0700), 0);
        assert_int_equal(chmod(p, mode), 0);
        return p;
}

/* Every directory from / is checked, not only the file's own. */
static void test_ancestors(void **state) {
        (void)state;
        char *base = make_dir();
        char *mid = make_subdir(base, "mid", 0775);
        char *leaf = make_subdir(mid, "leaf", 0755);
        add_fixture(leaf, "good");
        char *file = path_in(leaf, "good.so");
        char *real_mid = real_path(mid);
        paf_error error = PAF_ERROR_NULL;

        paf_registry *reg = NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_registry_load_plugin(reg, file, &error), -EPERM);
        assert_contains(error.message, file);
        char *expect;
        assert_true(asprintf(&expect, "directory %s is writable by group or others (mode 0775)",
                             real_mid) > 0);
        assert_contains(error.message, expect);
        free(expect);

        /* Also when the path goes there through "..", and in a search path. */
        char *round = NULL;
        assert_true(asprintf(&round, "%s/leaf/../leaf/good.so", mid) > 0);
        assert_int_equal(paf_registry_load_plugin(reg, round, &error), -EPERM);
        assert_contains(error.message, "is writable by group or others (mode 0775)");
        free(round);
        paf_registry_unref(reg);
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_registry_add_plugin_path(reg, leaf), 0);
        assert_int_equal(paf_registry_load_plugin(reg, "good", &error), -EPERM);
        assert_contains(error.message, real_mid);
        assert_null(paf_registry_find_protocol(reg, "good"));

        /* Sticky, like /tmp: others may add entries but not move ours. */
        assert_int_equal(chmod(mid, 01777), 0);
        assert_int_equal(paf_registry_load_plugin(reg, file, &error), 0);
        assert_non_null(paf_registry_find_protocol(reg, "good"));
        paf_registry_unref(reg);

        /* Sticky does not make someone else's directory ours. */
        if (geteuid() == 0) {
                assert_int_equal(chown(mid, 4242, 4242), 0);
                assert_int_equal(paf_registry_new(&reg), 0);
                assert_int_equal(paf_registry_load_plugin(reg, file, &error), -EPERM);
                assert_true(asprintf(&expect,
                                     "directory %s is owned by uid 4242, neither root nor uid 0",
                                     real_mid) > 0);
                assert_contains(error.message, expect);
                free(expect);
                paf_registry_unref(reg);
        }
        free(file);
        free(real_mid);
        free(leaf);
        free(mid);
        rm_rf(base);
}

static void test_symlinks(void **state) {
        (void)state;
        char *base = make_dir();
        char *real = make_subdir(base, "real", 0755);
        add_fixture(real, "good");
        char *target = path_in(real, "good.so");
        paf_error error = PAF_ERROR_NULL;
        paf_registry *reg = NULL;
        int r;
        assert_int_equal(paf_registry_new(&reg), 0);

        /* A symlinked file is refused, even to a good one: the plugin would
         * be named after the link, and the link decide what is loaded. */
        char *links = make_subdir(base, "links", 0755);
        char *link = path_in(links, "good.so");
        assert_int_equal(symlink(target, link), 0);
        assert_int_equal(paf_registry_load_plugin(reg, link, &error), -ELOOP);
        assert_contains(error.message, link);
        char *expect;
        assert_true(asprintf(&expect, "file is a symbolic link (to %s)", target) > 0);
        assert_contains(error.message, expect);
        free(expect);
        assert_null(paf_registry_find_protocol(reg, "good"));

        /* A symlinked directory is walked to its target, checked the same
         * way: an insecure target is named. */
        char *open_dir = make_subdir(base, "open", 0777);
        add_fixture(open_dir, "good");
        char *to_open = path_in(base, "to-open");
        assert_int_equal(symlink("open", to_open), 0);
        char *via_open = path_in(to_open, "good.so");
        assert_int_equal(paf_registry_load_plugin(reg, via_open, &error), -EPERM);
        char *real_open = real_path(open_dir);
        assert_true(asprintf(&expect, "directory %s is writable by group or others (mode 0777)",
                             real_open) > 0);
        assert_contains(error.message, expect);
        free(expect);

        /* A good target loads, under the name it was given by. */
        paf_registry_unref(reg);
        assert_int_equal(paf_registry_new(&reg), 0);
        char *to_real = path_in(base, "to-real");
        char *abs_real = real_path(real);
        assert_int_equal(symlink(abs_real, to_real), 0);
        char *via_real = path_in(to_real, "good.so");
        assert_int_equal(paf_registry_load_plugin(reg, via_real, &error), 0);
        assert_string_equal(find_info(reg, "good")->file, via_real);
        assert_non_null(paf_registry_find_protocol(reg, "good"));
        /* The same file by its own path: already loaded. */
        assert_int_equal(paf_registry_load_plugin(reg, target, &error), 0);
        assert_int_equal(count_infos(reg, "good"), 1);
        paf_registry_unref(reg);

        /* A relative path is walked from / too, through the current directory. */
        int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(cwd >= 0);
        assert_int_equal(chdir(links), 0);
        assert_int_equal(paf_registry_new(&reg), 0);
        r = paf_registry_load_plugin(reg, "../to-real/good.so", &error);
        assert_int_equal(fchdir(cwd), 0);
        close(cwd);
        if (r != 0)
                fail_msg("relative path refused: %s", error.message);
        assert_string_equal(find_info(reg, "good")->file, "../to-real/good.so");
        paf_registry_unref(reg);

        /* A loop ends. */
        char *loop = path_in(base, "loop");
        assert_int_equal(symlink("loop", loop), 0);
        char *in_loop = path_in(loop, "good.so");
        assert_int_equal(paf_registry_new(&reg), 0);
        assert_int_equal(paf_registry_load_plugin(reg, in_loop, &error), -ELOOP);
        assert_contains(error.message, "too many levels of symbolic links");
        paf_registry_unref(reg);

        free(in_loop);
        free(loop);
        free(via_real);
        free(abs_real);
        free(to_real);
        free(real_open);
        free(via_open);
        free(to_open);
        free(open_dir);
        free(link);
        free(links);
        free(target);
        free(real);
        rm_rf(base);
}

/* The directory holding the plugin is exchanged for another after every
 * check passed, right before the loader maps it (renameat2(RENAME_EXCHANGE),
 * as an owner of an ancestor could): what gets loaded is still the file
 * that was checked. */
static void test_exchange(void **state) {
        (void)state;
        char *base = make_dir();
        char *plugins = make_subdir(base, "plugins", 0755);
        char *other = make_subdir(base, "other", 0755);
        add_fixture(plugins, "good");
        /* Another plugin in the good one's place: "second" as good.so. */
        char *src = path_in(fixture_dir(), "second.so"), *swapped = path_in(other, "good.so");
        copy_file(src, swapped, 0755);
        char *file = path_in(plugins, "good.so");
        struct stat checked, other_file, now;
        assert_int_equal(stat(file, &checked), 0);
        assert_int_equal(stat(swapped, &other_file), 0);

        paf_registry *reg = NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        paf_error error = PAF_ERROR_NULL;
        exchange.a = plugins;
        exchange.b = other;
        exchange.done = 0;
        int r = paf_registry_load_plugin(reg, file, &error);
        int done = exchange.done;
        exchange.a = exchange.b = NULL;
        if (done == -EINVAL || done == -ENOSYS) {
                paf_registry_unref(reg);
                free(file);
                free(swapped);
                free(src);
                free(other);
                free(plugins);
                rm_rf(base);
                skip(); /* no RENAME_EXCHANGE on this file system */
        }
        assert_int_equal(done, 1);
        /* The exchange did happen: the path now leads to the other file. */
        assert_int_equal(stat(file, &now), 0);
        assert_true(now.st_ino == other_file.st_ino && now.st_ino != checked.st_ino);
        if (r != 0)
                fail_msg("the exchanged file was loaded: %s", error.message);
        assert_non_null(paf_registry_find_protocol(reg, "good"));
        assert_true(find_info(reg, "good")->loaded);
        assert_string_equal(find_info(reg, "good")->version, "1.2.3");
        paf_registry_unref(reg);

        free(file);
        free(swapped);
        free(src);
        free(other);
        free(plugins);
        rm_rf(base);
}

/* Plugins are mapped from /proc/self/fd/N. The dynamic loader hands back
 * the object it knows by a name without opening the file: after one
 * registry unloads a plugin another still uses, its descriptor number must
 * not come to name a different plugin. */
static void test_shared_mapping(void **state) {
        (void)state;
        char *dir = make_dir();
        add_fixture(dir, "good");
        add_fixture(dir, "second");
        char *good = path_in(dir, "good.so"), *second = path_in(dir, "second.so");
        paf_error error = PAF_ERROR_NULL;

        for (int round = 0; round < 3; round++) {
                paf_registry *a = NULL, *b = NULL, *c = NULL;
                assert_int_equal(paf_registry_new(&a), 0);
                assert_int_equal(paf_registry_new(&b), 0);
                assert_int_equal(paf_registry_new(&c), 0);
                assert_int_equal(paf_registry_load_plugin(a, good, &error), 0);
                assert_int_equal(paf_registry_load_plugin(b, good, &error), 0);
                paf_registry_unref(a);
                int r = paf_registry_load_plugin(c, second, &error);
                if (r != 0)
                        fail_msg("round %d: second refused: %s", round, error.message);
                assert_true(find_info(c, "second")->loaded);
                assert_null(find_info(c, "good"));
                assert_non_null(paf_registry_find_protocol(b, "good"));
                paf_registry_unref(b);
                paf_registry_unref(c);
        }
        free(good);
        free(second);
        rm_rf(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_fixtures_together, setup),
                cmocka_unit_test_setup(test_load_by_path, setup),
                cmocka_unit_test_setup(test_same_name_twice, setup),
                cmocka_unit_test_setup(test_insecure, setup),
                cmocka_unit_test_setup(test_fini_order, setup),
                cmocka_unit_test_setup(test_search_order, setup),
                cmocka_unit_test_setup(test_load_list, setup),
                cmocka_unit_test_setup(test_options, setup),
                cmocka_unit_test_setup(test_config_errors, setup),
                cmocka_unit_test_setup(test_option_tables, setup),
                cmocka_unit_test_setup(test_ancestors, setup),
                cmocka_unit_test_setup(test_symlinks, setup),
                cmocka_unit_test_setup(test_exchange, setup),
                cmocka_unit_test_setup(test_shared_mapping, setup),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
