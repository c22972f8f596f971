/* tests/core/test-plugin-log.c — paf_plugin_log(): printf-style, prefixed with the plugin's name,
 * filtered by level. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <paf.h>

/* What loading the logger fixture with the log at level wrote to stderr. */
static char *load_logger(int level) {
        const char *path = getenv("PAF_TEST_LOGGER");
        if (!path)
                fail_msg("PAF_TEST_LOGGER is not set");
        FILE *tmp = tmpfile();
        assert_non_null(tmp);
        fflush(stderr);
        int saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);

        int old_level = paf_log_get_level();
        paf_log_set_level(level);
        paf_registry *reg = NULL;
        paf_error err = PAF_ERROR_NULL;
        int r = paf_registry_new(&reg);
        if (r >= 0)
                r = paf_registry_load_plugin(reg, path, &err);
        paf_registry_unref(reg);
        paf_log_set_level(old_level);

        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        if (r < 0)
                fail_msg("loading %s: %s", path, err.message);

        long n = ftell(tmp);
        assert_true(n >= 0);
        char *text = calloc(1, (size_t)n + 1);
        assert_non_null(text);
        rewind(tmp);
        assert_int_equal(fread(text, 1, (size_t)n, tmp), (size_t)n);
        fclose(tmp);
        return text;
}

static void test_prefix_and_format(void **state) {
        (void)state;
        char *text = load_logger(PAF_LOG_NOTICE);
        assert_non_null(strstr(text, "logger: notice 42 x\n"));
        assert_non_null(strstr(text, "plugin: without a handle\n"));
        assert_non_null(strstr(text, "logger: via host->log too\n"));
        /* Below the level: not written, not even formatted. */
        assert_null(strstr(text, "debug 7"));
        /* The long message is cut to a line, whole lines only. */
        char *big = strstr(text, "logger: aaaa");
        assert_non_null(big);
        size_t len = strcspn(big, "\n");
        assert_true(len > 512 && len < 2048);
        assert_int_equal(big[len], '\n');
        free(text);
}

static void test_level(void **state) {
        (void)state;
        char *text = load_logger(PAF_LOG_DEBUG);
        assert_non_null(strstr(text, "logger: debug 7\n"));
        free(text);

        /* At err, only the error remains. */
        text = load_logger(PAF_LOG_ERR);
        assert_null(strstr(text, "notice 42"));
        assert_null(strstr(text, "without a handle"));
        assert_non_null(strstr(text, "logger: via host->log too\n"));
        free(text);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_prefix_and_format),
                cmocka_unit_test(test_level),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
