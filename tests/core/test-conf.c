/* tests/core/test-conf.c — paf.conf: valid files, and every error with its file and line. */
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

#include "config.h"
#include <paf.h>

static int saved_level;

static int setup(void **state) {
        (void)state;
        setenv("PAF_PLUGIN_PATH", "", 1);
        unsetenv("PAF_TEST_GOOD_LOG");
        saved_level = paf_log_get_level();
        return 0;
}

/* log-level changes a process-wide setting: put it back. */
static int teardown(void **state) {
        (void)state;
        paf_log_set_level(saved_level);
        return 0;
}

static char *make_dir(void) {
        const char *tmp = getenv("TMPDIR");
        char *dir;
        assert_true(asprintf(&dir, "%s/paf-conf-XXXXXX", tmp && *tmp ? tmp : "/tmp") > 0);
        assert_non_null(mkdtemp(dir));
        assert_int_equal(chmod(dir, 0755), 0);
        return dir;
}

static char *path_in(const char *dir, const char *file) {
        char *p;
        assert_true(asprintf(&p, "%s/%s", dir, file) > 0);
        return p;
}

static void write_file(const char *path, const char *data, size_t n, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, n), (ssize_t)n);
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)st;
        (void)ftw;
        return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rm_rf(char *dir) {
        assert_int_equal(nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
        free(dir);
}

/* A directory holding a copy of the fixture NAME.so, whose options the
 * plugin-section checks need. */
static char *fixture_copy(const char *name) {
        const char *fixtures = getenv("PAF_TEST_FIXTUREDIR");
        if (!fixtures)
                fail_msg("PAF_TEST_FIXTUREDIR is not set");
        char *file;
        assert_true(asprintf(&file, "%s.so", name) > 0);
        char *dir = make_dir(), *src = path_in(fixtures, file), *dst = path_in(dir, file);
        free(file);
        FILE *in = fopen(src, "re");
        if (!in)
                fail_msg("cannot open %s: %s", src, strerror(errno));
        char *data = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&data, &size);
        int c;
        while ((c = fgetc(in)) != EOF)
                fputc(c, m);
        fclose(in);
        fclose(m);
        write_file(dst, data, size, 0755);
        free(data);
        free(src);
        free(dst);
        return dir;
}

static char *good_dir(void) {
        return fixture_copy("good");
}

static paf_registry *new_registry(void) {
        paf_registry *reg = NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        return reg;
}

/* Read text as NAME; expect it to fail with message. */
static void expect_error(const char *text, int code, const char *message) {
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        int r = paf_registry_load_config_string(reg, "test.conf", text, &error);
        if (r != code)
                fail_msg("expected %d, got %d (%s) for:\n%s", code, r, error.message, text);
        assert_int_equal(error.code, code);
        assert_string_equal(error.message, message);
        paf_registry_unref(reg);
}

/* Read text, then load the plugins of dir; expect load_plugins() to fail with code and message. */
static void expect_plugin_error_code(const char *dir, const char *text, int code,
                                     const char *message) {
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
        int r = paf_registry_load_config_string(reg, "test.conf", text, &error);
        if (r < 0)
                fail_msg("config refused: %s", error.message);
        r = paf_registry_load_plugins(reg, &error);
        if (r != code)
                fail_msg("expected %d, got %d (%s) for:\n%s", code, r, error.message, text);
        assert_string_equal(error.message, message);
        paf_registry_unref(reg);
}

static void expect_plugin_error(const char *dir, const char *text, const char *message) {
        expect_plugin_error_code(dir, text, -EINVAL, message);
}

static void assert_option_string(paf_registry *reg, const char *section, const char *key,
                                 const char *want) {
        paf_value v;
        int r = paf_registry_get_option(reg, section, key, &v);
        if (r < 0)
                fail_msg("[%s] %s: %s", section, key, strerror(-r));
        assert_int_equal(v.type, PAF_TYPE_STRING);
        assert_string_equal(v.string, want);
}

/* ---- valid files ---- */

static void test_valid(void **state) {
        (void)state;
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        int r = paf_registry_load_config_string(reg, "valid.conf",
                                                "# A comment\n"
                                                "; another comment\n"
                                                "\n"
                                                "[paf]\n"
                                                "plugin-path = /a::/b\n"
                                                "plugin-path = /c\n"
                                                "load = tcp, unix\n"
                                                "load = tls,,vsock unix\n"
                                                "  extra  more\n"
                                                "   ; an indented comment\n"
                                                "log-level = debug ; an inline comment\n"
                                                "\n"
                                                "[tcp]\n"
                                                "nodelay = yes\n"
                                                "backlog: 10\n"
                                                "[paf]\n"
                                                "plugin-path = /d\n",
                                                &error);
        if (r < 0)
                fail_msg("%s", error.message);
        assert_int_equal(paf_log_get_level(), PAF_LOG_DEBUG);

        const char *const *path = paf_registry_get_plugin_path(reg);
        const char *want[] = {"/a", "/b", "/c", "/d", PAF_PLUGINSDIR, NULL};
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                if (!want[i])
                        assert_null(path[i]);
                else
                        assert_string_equal(path[i], want[i]);
        }
        /* Lists add up, names appear once. */
        assert_option_string(reg, "paf", "load", "tcp unix tls vsock extra more");
        assert_option_string(reg, "paf", "plugin-path", "/a:/b:/c:/d");
        assert_option_string(reg, "paf", "log-level", "debug");
        paf_value v;
        assert_int_equal(paf_registry_get_option(reg, "paf", "nosuch", &v), -ENOENT);
        /* No plugin declared these yet. */
        assert_int_equal(paf_registry_get_option(reg, "tcp", "nodelay", &v), -ENOENT);
        paf_registry_unref(reg);
}

static void test_continuation(void **state) {
        (void)state;
        char *dir = good_dir();
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
        assert_int_equal(paf_registry_load_config_string(reg, "cont.conf",
                                                         "[good]\n"
                                                         "greeting = hello\n"
                                                         "    big\n"
                                                         "\n"
                                                         "\tworld\n"
                                                         "loud = true\n",
                                                         &error),
                         0);
        assert_int_equal(paf_registry_load_plugins(reg, &error), 0);
        /* Folded like a header line: one space per line break. */
        assert_option_string(reg, "good", "greeting", "hello big world");
        paf_value v;
        assert_int_equal(paf_registry_get_option(reg, "good", "loud", &v), 0);
        assert_true(v.boolean);
        paf_registry_unref(reg);

        /* A continued integer is no integer. */
        /* The line reported is the last that made up the value. */
        expect_plugin_error(dir, "[good]\ncount = 1\n  2\n",
                            "test.conf:3: [good] key \"count\": \"1 2\" is not an integer");
        /* A continued log level is checked whole, at the line that broke it. */
        expect_error("[paf]\nlog-level = info\n  debug\n", -EINVAL,
                     "test.conf:3: [paf] key \"log-level\": \"info debug\" is not a log level "
                     "(err, warning, notice, info, debug)");
        rm_rf(dir);
}

static void test_file_quirks(void **state) {
        (void)state;
        char *dir = make_dir();
        char *file = path_in(dir, "paf.conf");
        /* A byte order mark, CRLF line ends, a last line with no end. */
        static const char text[] = "\xEF\xBB\xBF[paf]\r\n"
                                   "plugin-path = plugins:/abs\r\n"
                                   "log-level = warning";
        write_file(file, text, sizeof(text) - 1, 0644);
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        int r = paf_registry_load_config(reg, file, &error);
        if (r < 0)
                fail_msg("%s", error.message);
        assert_int_equal(paf_log_get_level(), PAF_LOG_WARNING);
        /* Relative to the file's directory, not to the working directory. */
        char *rel = path_in(dir, "plugins");
        const char *const *path = paf_registry_get_plugin_path(reg);
        assert_string_equal(path[0], rel);
        assert_string_equal(path[1], "/abs");
        free(rel);
        paf_registry_unref(reg);

        /* Errors in a file carry its path. */
        static const char bad[] = "[paf]\n\n\nlog-level = loud\n";
        write_file(file, bad, sizeof(bad) - 1, 0644);
        reg = new_registry();
        assert_int_equal(paf_registry_load_config(reg, file, &error), -EINVAL);
        char *expect;
        assert_true(
                asprintf(
                        &expect,
                        "%s:4: [paf] key \"log-level\": \"loud\" is not a log level (err, warning, "
                        "notice, info, debug)",
                        file) > 0);
        assert_string_equal(error.message, expect);
        free(expect);

        /* A directory is not a file. */
        assert_true(paf_registry_load_config(reg, dir, &error) < 0);
        assert_true(asprintf(&expect, "%s: Is a directory", dir) > 0);
        assert_string_equal(error.message, expect);
        free(expect);
        paf_registry_unref(reg);
        free(file);
        rm_rf(dir);
}

static void test_default(void **state) {
        (void)state;
        char *dir = good_dir();
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_load_config(reg, NULL, &error), 0);
        paf_value v;
        /* No load list: every plugin found is loaded. */
        assert_int_equal(paf_registry_get_option(reg, "paf", "load", &v), -ENODATA);
        assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
        assert_int_equal(paf_registry_load_plugins(reg, &error), 0);
        assert_non_null(paf_registry_find_protocol(reg, "good"));
        assert_option_string(reg, "good", "greeting", "hi");
        paf_registry_unref(reg);
        rm_rf(dir);
}

static void test_failed_read_keeps_old(void **state) {
        (void)state;
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(
                paf_registry_load_config_string(reg, "a.conf", "[paf]\nload = one\n", &error), 0);
        assert_int_equal(
                paf_registry_load_config_string(reg, "b.conf", "[paf]\nload = two\nbad\n", &error),
                -EINVAL);
        assert_string_equal(error.message, "b.conf:3: syntax error");
        assert_option_string(reg, "paf", "load", "one");
        /* A good one replaces it whole. */
        assert_int_equal(paf_registry_load_config_string(reg, "c.conf", "[paf]\n", &error), 0);
        paf_value v;
        assert_int_equal(paf_registry_get_option(reg, "paf", "load", &v), -ENODATA);
        paf_registry_unref(reg);
}

/* ---- errors ---- */

static void test_syntax_errors(void **state) {
        (void)state;
        expect_error("[paf]\nlog-level = info\nthis is not ini\n", -EINVAL,
                     "test.conf:3: syntax error");
        expect_error("# fine\n[paf\n", -EINVAL, "test.conf:2: syntax error");
        expect_error("key = value\n", -EINVAL, "test.conf:1: key \"key\": outside of any section");
        /* The earliest problem wins, whichever kind it is. */
        expect_error("[paf]\nnot ini\nlog-level = loud\n", -EINVAL, "test.conf:2: syntax error");
        expect_error(
                "[paf]\nlog-level = loud\nnot ini\n", -EINVAL,
                "test.conf:2: [paf] key \"log-level\": \"loud\" is not a log level (err, warning, "
                "notice, info, debug)");
        /* A NULL name reads as paf.conf. */
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_load_config_string(reg, NULL, "oops\n", &error), -EINVAL);
        assert_string_equal(error.message, "paf.conf:1: syntax error");
        assert_int_equal(paf_registry_load_config_string(reg, NULL, NULL, &error), -EINVAL);
        assert_int_equal(paf_registry_load_config_string(NULL, NULL, "", &error), -EINVAL);
        assert_int_equal(paf_registry_load_config(NULL, NULL, &error), -EINVAL);
        paf_registry_unref(reg);
}

static void test_paf_section_errors(void **state) {
        (void)state;
        expect_error("[paf]\n\nlog-levl = info\n", -EINVAL,
                     "test.conf:3: [paf] key \"log-levl\": unknown option (did you mean "
                     "\"log-level\"?)");
        expect_error("[paf]\nfrobnicate = 1\n", -EINVAL,
                     "test.conf:2: [paf] key \"frobnicate\": unknown option");
        expect_error(
                "[paf]\nlog-level = loud\n", -EINVAL,
                "test.conf:2: [paf] key \"log-level\": \"loud\" is not a log level (err, warning, "
                "notice, info, debug)");
        expect_error("[paf]\nload = tcp\nload = tcp Bad\n", -EINVAL,
                     "test.conf:3: [paf] key \"load\": \"Bad\" is not a valid plugin name "
                     "([a-z0-9_-]+)");
        expect_error("[paf]\nload = tcp\n  ../evil\n", -EINVAL,
                     "test.conf:3: [paf] key \"load\": \"../evil\" is not a valid plugin name "
                     "([a-z0-9_-]+)");
}

static void test_line_too_long(void **state) {
        (void)state;
        size_t n = 5000;
        char *text = malloc(n + 64);
        assert_non_null(text);
        strcpy(text, "[paf]\n# fine\nplugin-path = ");
        size_t k = strlen(text);
        memset(text + k, 'x', n);
        strcpy(text + k + n, "\nlog-level = info\n");
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_load_config_string(reg, "long.conf", text, &error), -EINVAL);
        /* The limit is inih's line buffer. */
        const char *prefix = "long.conf:3: line too long (more than ";
        if (strncmp(error.message, prefix, strlen(prefix)) != 0)
                fail_msg("unexpected: %s", error.message);
        /* An earlier error still comes first. */
        memcpy(text, "[paf\n", 5);
        assert_int_equal(paf_registry_load_config_string(reg, "long.conf", text, &error), -EINVAL);
        assert_string_equal(error.message, "long.conf:1: syntax error");
        paf_registry_unref(reg);
        free(text);
}

static void test_missing_file(void **state) {
        (void)state;
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_load_config(reg, "/nonexistent/paf.conf", &error), -ENOENT);
        assert_int_equal(error.code, -ENOENT);
        assert_string_equal(error.message, "/nonexistent/paf.conf: No such file or directory");
        paf_registry_unref(reg);
}

static void test_plugin_section_errors(void **state) {
        (void)state;
        char *dir = good_dir();
        expect_plugin_error(dir, "[paf]\n\n[zzq]\nx = 1\n", "test.conf:3: [zzq]: unknown section");
        expect_plugin_error(dir, "[pa]\n",
                            "test.conf:1: [pa]: unknown section (did you mean \"paf\"?)");
        expect_plugin_error(dir, "# x\n[godo]\n",
                            "test.conf:2: [godo]: unknown section (did you mean \"good\"?)");
        /* A section header seen twice: the first line is the one reported. */
        expect_plugin_error(dir, "[zzq]\n[paf]\n[zzq]\nx = 1\n",
                            "test.conf:1: [zzq]: unknown section");
        expect_plugin_error(
                dir, "[good]\ngreeting = hi\ngreting = hi\n",
                "test.conf:3: [good] key \"greting\": unknown option (did you mean \"greeting\"?)");
        expect_plugin_error(dir, "[good]\nzzz = 1\n",
                            "test.conf:2: [good] key \"zzz\": unknown option");
        expect_plugin_error(dir, "[good]\ncount = 12x\n",
                            "test.conf:2: [good] key \"count\": \"12x\" is not an integer");
        expect_plugin_error(dir, "[good]\ncount =\n",
                            "test.conf:2: [good] key \"count\": \"\" is not an integer");
        /* Declared without a range: what int64_t holds. */
        expect_plugin_error_code(dir, "[good]\ncount = 99999999999999999999\n", -ERANGE,
                                 "test.conf:2: [good] key \"count\": value out of range "
                                 "(-9223372036854775808-9223372036854775807)");
        expect_plugin_error_code(dir, "[good]\ncount = -9223372036854775809\n", -ERANGE,
                                 "test.conf:2: [good] key \"count\": value out of range "
                                 "(-9223372036854775808-9223372036854775807)");
        expect_plugin_error(dir, "[good]\n\n\nloud = maybe\n",
                            "test.conf:4: [good] key \"loud\": \"maybe\" is not a boolean (yes/no, "
                            "true/false, on/off, 1/0)");
        rm_rf(dir);
}

static void test_values(void **state) {
        (void)state;
        char *dir = good_dir();
        static const struct {
                const char *text;
                bool value;
        } bools[] = {
                {"yes", true},  {"no", false}, {"true", true}, {"false", false}, {"on", true},
                {"off", false}, {"1", true},   {"0", false},   {"YES", true},    {"Off", false},
        };
        for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
                paf_registry *reg = new_registry();
                paf_error error = PAF_ERROR_NULL;
                char *text;
                assert_true(asprintf(&text, "[good]\nloud = %s\n", bools[i].text) > 0);
                assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
                assert_int_equal(paf_registry_load_config_string(reg, "b.conf", text, &error), 0);
                assert_int_equal(paf_registry_load_plugins(reg, &error), 0);
                paf_value v;
                assert_int_equal(paf_registry_get_option(reg, "good", "loud", &v), 0);
                assert_int_equal(v.type, PAF_TYPE_BOOL);
                assert_int_equal(v.boolean, bools[i].value);
                free(text);
                paf_registry_unref(reg);
        }
        static const struct {
                const char *text;
                int64_t value;
        } ints[] = {
                {"0", 0},
                {"-1", -1},
                {"+17", 17},
                {"9223372036854775807", INT64_MAX},
                {"-9223372036854775808", INT64_MIN},
        };
        for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
                paf_registry *reg = new_registry();
                paf_error error = PAF_ERROR_NULL;
                char *text;
                assert_true(asprintf(&text, "[good]\ncount = %s\n", ints[i].text) > 0);
                assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
                assert_int_equal(paf_registry_load_config_string(reg, "i.conf", text, &error), 0);
                assert_int_equal(paf_registry_load_plugins(reg, &error), 0);
                paf_value v;
                assert_int_equal(paf_registry_get_option(reg, "good", "count", &v), 0);
                assert_int_equal(v.type, PAF_TYPE_INT);
                assert_true(v.integer == ints[i].value);
                free(text);
                paf_registry_unref(reg);
        }
        rm_rf(dir);
}

/* ---- numbers: every one range-checked when the file is read ---- */

static void test_http_ranges(void **state) {
        (void)state;
        /* Seconds times 10^6 would wrap to 448 ms in 64 bits. */
        expect_error("[http]\nheader-timeout = 18446744073710\n", -ERANGE,
                     "test.conf:2: [http] key \"header-timeout\": value out of range (0-86400)");
        expect_error("[http]\n\nwrite-timeout = -1\n", -ERANGE,
                     "test.conf:3: [http] key \"write-timeout\": value out of range (0-86400)");
        expect_error("[http]\nmax-body = -5\n", -ERANGE,
                     "test.conf:2: [http] key \"max-body\": value out of range "
                     "(0-9223372036854775807)");
        /* Beyond int64_t: the same message, not strtoll()'s clamp. */
        expect_error("[http]\nmax-body = 99999999999999999999\n", -ERANGE,
                     "test.conf:2: [http] key \"max-body\": value out of range "
                     "(0-9223372036854775807)");
        expect_error("[http]\nidle-timeout = 86401\n", -ERANGE,
                     "test.conf:2: [http] key \"idle-timeout\": value out of range (0-86400)");
        expect_error("[http]\nbody-timeout = -9223372036854775808\n", -ERANGE,
                     "test.conf:2: [http] key \"body-timeout\": value out of range (0-86400)");
        /* The engine refuses a zero header limit: 0 is not "off" there. */
        expect_error("[http]\nmax-headers = 0\n", -ERANGE,
                     "test.conf:2: [http] key \"max-headers\": value out of range (1-65536)");
        expect_error("[http]\nmax-header-bytes = 0\n", -ERANGE,
                     "test.conf:2: [http] key \"max-header-bytes\": value out of range "
                     "(1-16777216)");
        /* Would have been clamped to UINT32_MAX. */
        expect_error("[http]\nmax-connections = 4294967296\n", -ERANGE,
                     "test.conf:2: [http] key \"max-connections\": value out of range "
                     "(0-16777216)");
        /* Not a number at all is another error. */
        expect_error("[http]\nmax-headers = many\n", -EINVAL,
                     "test.conf:2: [http] key \"max-headers\": \"many\" is not an integer");

        /* The bounds themselves are good, and reach the engine unwrapped. */
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        int r = paf_registry_load_config_string(reg, "test.conf",
                                                "[http]\n"
                                                "header-timeout = 86400\n"
                                                "idle-timeout = 0\n"
                                                "write-timeout = 1\n"
                                                "max-body = 9223372036854775807\n"
                                                "max-connections = 0\n"
                                                "max-headers = 65536\n"
                                                "max-header-bytes = 16777216\n",
                                                &error);
        if (r < 0)
                fail_msg("bounds refused: %s", error.message);
        paf_http_limits l;
        assert_int_equal(paf_http_limits_load(&l, reg), 0);
        assert_true(l.header_timeout_usec == UINT64_C(86400000000));
        assert_true(l.idle_timeout_usec == 0);
        assert_true(l.write_timeout_usec == 1000000);
        assert_true(l.max_body == INT64_MAX);
        assert_int_equal(l.max_connections, 0);
        assert_int_equal(l.max_headers, 65536);
        assert_int_equal(l.max_header_bytes, 16777216);
        paf_registry_unref(reg);
}

static void test_plugin_ranges(void **state) {
        (void)state;
        char *dir = fixture_copy("ranged");
        expect_plugin_error_code(dir, "[ranged]\nlevel = 11\n", -ERANGE,
                                 "test.conf:2: [ranged] key \"level\": value out of range (1-10)");
        expect_plugin_error_code(dir, "[ranged]\nname = y\n\nlevel = 0\n", -ERANGE,
                                 "test.conf:4: [ranged] key \"level\": value out of range (1-10)");
        expect_plugin_error_code(dir, "[ranged]\nbelow = 0\n", -ERANGE,
                                 "test.conf:2: [ranged] key \"below\": value out of range "
                                 "(-100--1)");
        expect_plugin_error_code(dir, "[ranged]\nlevel = 99999999999999999999\n", -ERANGE,
                                 "test.conf:2: [ranged] key \"level\": value out of range (1-10)");
        expect_plugin_error(dir, "[ranged]\nlevel = ten\n",
                            "test.conf:2: [ranged] key \"level\": \"ten\" is not an integer");

        /* In range: loaded, and the values read back. */
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
        assert_int_equal(paf_registry_load_config_string(
                                 reg, "test.conf", "[ranged]\nlevel = 10\nbelow = -100\n", &error),
                         0);
        int r = paf_registry_load_plugins(reg, &error);
        if (r != 0)
                fail_msg("refused: %s", error.message);
        paf_value v;
        assert_int_equal(paf_registry_get_option(reg, "ranged", "level", &v), 0);
        assert_int_equal(v.integer, 10);
        assert_int_equal(paf_registry_get_option(reg, "ranged", "below", &v), 0);
        assert_int_equal(v.integer, -100);

        /* A file read after the plugin was loaded meets its checks too. */
        assert_int_equal(
                paf_registry_load_config_string(reg, "late.conf", "[ranged]\nlevel = 12\n", &error),
                0);
        assert_int_equal(paf_registry_get_option(reg, "ranged", "level", &v), -ERANGE);
        paf_registry_unref(reg);
        rm_rf(dir);
}

/* ---- a key set twice ---- */

static void test_twice(void **state) {
        (void)state;
        /* The second would silently win over the first. */
        expect_error("[paf]\nlog-level = info\nlog-level = debug\n", -EINVAL,
                     "test.conf:3: [paf] key \"log-level\": set twice (first on line 2)");
        expect_error("[http]\nmax-body = 1\n[paf]\n[http]\n\nmax-body = 1\n", -EINVAL,
                     "test.conf:6: [http] key \"max-body\": set twice (first on line 2)");
        /* The line of the key, not of its last continuation. */
        expect_error("[good]\ngreeting = a\n  b\ngreeting = c\n", -EINVAL,
                     "test.conf:4: [good] key \"greeting\": set twice (first on line 2)");
        /* Before any plugin says what it takes: it is the file that is wrong. */
        expect_error("[nosuch]\nx = 1\nx = 1\n", -EINVAL,
                     "test.conf:3: [nosuch] key \"x\": set twice (first on line 2)");
        expect_error("[listen.web]\naddress = 80\naddress = 81\n", -EINVAL,
                     "test.conf:3: [listen.web] key \"address\": set twice (first on line 2)");

        /* A continuation is not a second setting, and lists add up. */
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        int r = paf_registry_load_config_string(reg, "test.conf",
                                                "[paf]\nload = a\nload = b\n  c\n"
                                                "plugin-path = /x\nplugin-path = /y\n"
                                                "[good]\ngreeting = a\n  b\n",
                                                &error);
        if (r < 0)
                fail_msg("%s", error.message);
        assert_option_string(reg, "paf", "load", "a b c");
        assert_option_string(reg, "paf", "plugin-path", "/x:/y");
        paf_registry_unref(reg);
}

/* ---- [listen] and [listen.NAME] ---- */

static void test_listen_sections(void **state) {
        (void)state;
        expect_error("[paf]\n[listen]\naddress = 80\n", -EINVAL,
                     "test.conf:2: [listen]: a listener section needs a name: [listen.NAME]");
        expect_error("[listen.]\n", -EINVAL,
                     "test.conf:1: [listen.]: \"\" is not a valid listener name ([a-z0-9_-]+, at "
                     "most 64 characters)");
        expect_error("[listen.web]\nadress = 80\n", -EINVAL,
                     "test.conf:2: [listen.web] key \"adress\": unknown option (did you mean "
                     "\"address\"?)");

        /* Files are relative to the configuration's directory, as plugin-path is. */
        char *dir = make_dir();
        char *file = path_in(dir, "paf.conf");
        static const char text[] = "[listen.web]\naddress = 80\ntls = yes\ncertificate = a.pem\n"
                                   "key = /abs/a.key\nclient-ca = sub/ca.pem\n";
        write_file(file, text, sizeof(text) - 1, 0644);
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        int r = paf_registry_load_config(reg, file, &error);
        if (r < 0)
                fail_msg("%s", error.message);
        char *cert = path_in(dir, "a.pem"), *ca = path_in(dir, "sub/ca.pem");
        assert_option_string(reg, "listen.web", "certificate", cert);
        assert_option_string(reg, "listen.web", "key", "/abs/a.key");
        assert_option_string(reg, "listen.web", "client-ca", ca);
        assert_option_string(reg, "listen.web", "address", "80");

        /* The tls layer's configuration, as paf serve hands it on. */
        paf_ctx *ctx = NULL;
        assert_int_equal(paf_registry_get_listen_tls_ctx(reg, "listen.web", &ctx), 1);
        const char *v;
        assert_int_equal(paf_ctx_get_string(ctx, "tls.cert-file", &v), 0);
        assert_string_equal(v, cert);
        assert_int_equal(paf_ctx_get_string(ctx, "tls.key-file", &v), 0);
        assert_string_equal(v, "/abs/a.key");
        assert_int_equal(paf_ctx_get_string(ctx, "tls.client-ca-file", &v), 0);
        assert_string_equal(v, ca);
        bool b = false;
        assert_int_equal(paf_ctx_get_bool(ctx, "tls.require-client-cert", &b), 0);
        assert_true(b);
        paf_ctx_unref(ctx);
        assert_int_equal(paf_registry_get_listen_tls_ctx(reg, "listen.nosuch", &ctx), -ENOENT);
        free(cert);
        free(ca);
        paf_registry_unref(reg);

        /* Without a file (a string), taken as they are. */
        reg = new_registry();
        assert_int_equal(paf_registry_load_config_string(reg, "test.conf",
                                                         "[listen.web]\naddress = 80\n"
                                                         "[listen.tls]\naddress = 81\ntls = yes\n"
                                                         "certificate = a.pem\nkey = a.key\n",
                                                         &error),
                         0);
        assert_option_string(reg, "listen.tls", "certificate", "a.pem");
        ctx = (paf_ctx *)&error; /* left alone only on failure */
        assert_int_equal(paf_registry_get_listen_tls_ctx(reg, "listen.web", &ctx), 0);
        assert_null(ctx);

        /* The address is parsed as listening would parse it: here no
         * protocol is registered to take it. */
        assert_int_equal(paf_registry_check_config(reg, &error), -EAFNOSUPPORT);
        assert_string_equal(error.message, "test.conf:2: [listen.web] key \"address\": \"80\": no "
                                           "protocol understands this address");
        assert_int_equal(paf_registry_check_config(NULL, &error), -EINVAL);
        paf_registry_unref(reg);

        reg = new_registry();
        assert_int_equal(paf_registry_check_config(reg, &error), 0); /* no configuration */
        paf_registry_unref(reg);
        free(file);
        rm_rf(dir);
}

/* ---- choices and validators of a plugin's option table ---- */

static void test_plugin_choices(void **state) {
        (void)state;
        char *dir = fixture_copy("checked");
        expect_plugin_error(dir, "[checked]\nmode = fsat\n",
                            "test.conf:2: [checked] key \"mode\": \"fsat\" is not one of: fast, "
                            "slow, careful (did you mean \"fast\"?)");
        expect_plugin_error(dir, "[checked]\n\nmode = quick\n",
                            "test.conf:3: [checked] key \"mode\": \"quick\" is not one of: fast, "
                            "slow, careful");
        /* Compared exactly, as written in the table. */
        expect_plugin_error(dir, "[checked]\nmode = Slow\n",
                            "test.conf:2: [checked] key \"mode\": \"Slow\" is not one of: fast, "
                            "slow, careful (did you mean \"slow\"?)");
        /* Did you mean, for a plugin's option names too. */
        expect_plugin_error(dir, "[checked]\nmdoe = fast\n",
                            "test.conf:2: [checked] key \"mdoe\": unknown option (did you mean "
                            "\"mode\"?)");

        /* The validator's reason; without one, the errno's. */
        expect_plugin_error(dir, "[checked]\nword = Hello\n",
                            "test.conf:2: [checked] key \"word\": \"Hello\" is not a lowercase "
                            "word");
        expect_plugin_error(dir, "[checked]\nword =\n",
                            "test.conf:2: [checked] key \"word\": \"\": Invalid argument");
        /* The validator runs after the range, whose refusal comes first. */
        expect_plugin_error_code(dir, "[checked]\npairs = 12\n", -ERANGE,
                                 "test.conf:2: [checked] key \"pairs\": value out of range "
                                 "(0-10)");
        expect_plugin_error(dir, "[checked]\npairs = 3\n",
                            "test.conf:2: [checked] key \"pairs\": 3 is odd");
        /* A key set twice, in a plugin's section. */
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_load_config_string(
                                 reg, "test.conf", "[checked]\nmode = slow\nmode = slow\n", &error),
                         -EINVAL);
        assert_string_equal(error.message,
                            "test.conf:3: [checked] key \"mode\": set twice (first on line 2)");
        paf_registry_unref(reg);

        /* Good values load, and read back. */
        reg = new_registry();
        assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
        assert_int_equal(paf_registry_load_config_string(reg, "test.conf",
                                                         "[checked]\nmode = careful\n"
                                                         "word = abc\npairs = 10\n",
                                                         &error),
                         0);
        int r = paf_registry_load_plugins(reg, &error);
        if (r != 0)
                fail_msg("refused: %s", error.message);
        assert_option_string(reg, "checked", "mode", "careful");
        assert_option_string(reg, "checked", "word", "abc");
        paf_value v;
        assert_int_equal(paf_registry_get_option(reg, "checked", "pairs", &v), 0);
        assert_int_equal(v.integer, 10);
        /* A file read after the plugin was loaded meets its checks too. */
        assert_int_equal(paf_registry_load_config_string(
                                 reg, "late.conf", "[checked]\nmode = lazy\nword = A\n", &error),
                         0);
        assert_int_equal(paf_registry_get_option(reg, "checked", "mode", &v), -EINVAL);
        assert_int_equal(paf_registry_get_option(reg, "checked", "word", &v), -EINVAL);
        /* And paf_registry_check_config() says why, as loading would have. */
        assert_int_equal(paf_registry_check_config(reg, &error), -EINVAL);
        assert_string_equal(error.message,
                            "late.conf:2: [checked] key \"mode\": \"lazy\" is not one of: fast, "
                            "slow, careful");
        paf_registry_unref(reg);
        rm_rf(dir);

        /* A default outside its own choices: the table is refused. */
        dir = fixture_copy("bad-choices");
        reg = new_registry();
        assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
        assert_int_equal(paf_registry_load_plugin(reg, "bad-choices", &error), -EINVAL);
        if (!strstr(error.message, "bad option table: option \"mode\": default \"medium\" is not "
                                   "one of: fast, slow"))
                fail_msg("unexpected: %s", error.message);
        paf_registry_unref(reg);
        rm_rf(dir);
}

/* A table built before choices and check were appended keeps its meaning. */
static void test_plugin_narrow_table(void **state) {
        (void)state;
        char *dir = fixture_copy("narrow");
        expect_plugin_error_code(dir, "[narrow]\nlevel = 11\n", -ERANGE,
                                 "test.conf:2: [narrow] key \"level\": value out of range (1-10)");
        paf_registry *reg = new_registry();
        paf_error error = PAF_ERROR_NULL;
        assert_int_equal(paf_registry_add_plugin_path(reg, dir), 0);
        assert_int_equal(paf_registry_load_config_string(reg, "test.conf",
                                                         "[narrow]\nlevel = 10\nname = any thing\n"
                                                         "last = yes\n",
                                                         &error),
                         0);
        int r = paf_registry_load_plugins(reg, &error);
        if (r != 0)
                fail_msg("refused: %s", error.message);
        paf_value v;
        assert_int_equal(paf_registry_get_option(reg, "narrow", "level", &v), 0);
        assert_int_equal(v.integer, 10);
        assert_option_string(reg, "narrow", "name", "any thing");
        assert_int_equal(paf_registry_get_option(reg, "narrow", "last", &v), 0);
        assert_true(v.boolean);
        paf_registry_unref(reg);
        rm_rf(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_valid, setup, teardown),
                cmocka_unit_test_setup_teardown(test_continuation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_file_quirks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_default, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_read_keeps_old, setup, teardown),
                cmocka_unit_test_setup_teardown(test_syntax_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_paf_section_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_line_too_long, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_plugin_section_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_values, setup, teardown),
                cmocka_unit_test_setup_teardown(test_http_ranges, setup, teardown),
                cmocka_unit_test_setup_teardown(test_plugin_ranges, setup, teardown),
                cmocka_unit_test_setup_teardown(test_twice, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listen_sections, setup, teardown),
                cmocka_unit_test_setup_teardown(test_plugin_choices, setup, teardown),
                cmocka_unit_test_setup_teardown(test_plugin_narrow_table, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
