/* tests/fuzz/fuzz-conf.c — libFuzzer: paf.conf, read from a string or from a file, then applied:
 * the [http] limits, [listen.NAME] sections, and the built plugins checking their sections.
 *
 * Input: 1 byte of options, then the file.
 *
 * Checked beyond the sanitizers: an error has a message that names the file; a configuration
 * that loads gives options that read back without error where the core declared them.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <paf.h>
#include <paf/http.h>

#include "fuzz-common.h"

#define OPT_FILE 0x01    /* through a file (NUL bytes and all), not a string */
#define OPT_PLUGINS 0x02 /* load the built plugins by path: they check their sections */
#define OPT_LOAD 0x04    /* paf_registry_load_plugins(), when the search path is safe */

static const char *const plugin_names[] = {"tcp", "unix", "tls", "vsock"};

/* Keeps the plugins mapped, so that a registry per input does not dlopen from scratch. */
static paf_registry *keeper;
static char plugindir[PATH_MAX];
static int memfd = -1;

/* Whether loading plugins along the configured search path can only reach ours: every entry
 * is our plugin directory or does not exist. A fuzzed plugin-path must never make the
 * harness dlopen whatever a system directory holds. */
static bool search_path_is_safe(paf_registry *reg) {
        const char *const *path = paf_registry_get_plugin_path(reg);
        if (!path)
                return false;
        for (; *path; path++) {
                char real[PATH_MAX];
                if (realpath(*path, real)) {
                        if (strcmp(real, plugindir) != 0)
                                return false;
                } else if (errno != ENOENT && errno != ENOTDIR)
                        return false;
        }
        return true;
}

static void check_error(const paf_error *e, const char *name) {
        FUZZ_CHECK(e->code < 0);
        FUZZ_CHECK(memchr(e->message, 0, sizeof(e->message)));
        FUZZ_CHECK(strncmp(e->message, name, strlen(name)) == 0);
}

static void read_back(paf_registry *reg) {
        paf_http_limits limits;
        (void)paf_http_limits_load(&limits, reg);

        size_t n = 0;
        const char *const *listen = paf_registry_get_listen_sections(reg, &n);
        FUZZ_CHECK(listen);
        for (size_t i = 0; i < n; i++) {
                FUZZ_CHECK(listen[i] && strncmp(listen[i], "listen.", 7) == 0);
                static const char *const keys[] = {"address", "tls", "certificate", "key",
                                                   "client-ca"};
                for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
                        paf_value v;
                        int r = paf_registry_get_option(reg, listen[i], keys[k], &v);
                        FUZZ_CHECK(r >= 0 || r == -ENODATA || r == -ENOENT);
                }
        }
        FUZZ_CHECK(!listen[n]);

        paf_value v;
        (void)paf_registry_get_option(reg, "paf", "log-level", &v);
        (void)paf_registry_get_option(reg, "http", "max-body", &v);
        (void)paf_registry_get_option(reg, "tls", "priority", &v);
        (void)paf_registry_get_option(reg, "tcp", "nodelay", &v);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void)argc;
        (void)argv;
        fuzz_setup();
        FUZZ_CHECK(realpath(PAF_FUZZ_PLUGINDIR, plugindir));
        FUZZ_CHECK(paf_registry_new(&keeper) >= 0);
        for (size_t i = 0; i < sizeof(plugin_names) / sizeof(plugin_names[0]); i++) {
                char p[PATH_MAX];
                snprintf(p, sizeof(p), "%s/%s.so", plugindir, plugin_names[i]);
                /* By path first: see fuzz-tls-server.c. */
                FUZZ_CHECK(dlopen(p, RTLD_NOW | RTLD_LOCAL));
                paf_error e = PAF_ERROR_NULL;
                if (paf_registry_load_plugin(keeper, p, &e) < 0) {
                        fprintf(stderr, "fuzz-conf: %s\n", e.message);
                        abort();
                }
        }
        memfd = memfd_create("paf-fuzz.conf", MFD_CLOEXEC);
        FUZZ_CHECK(memfd >= 0);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t opts = size > 0 ? data[0] : 0;
        const uint8_t *text = size > 0 ? data + 1 : data;
        size_t len = size > 0 ? size - 1 : 0;

        paf_registry *reg = NULL;
        FUZZ_CHECK(paf_registry_new(&reg) >= 0);
        paf_error e = PAF_ERROR_NULL;
        char name[64];
        int r;
        if (opts & OPT_FILE) {
                FUZZ_CHECK(ftruncate(memfd, 0) == 0);
                FUZZ_CHECK(pwrite(memfd, text, len, 0) == (ssize_t)len);
                snprintf(name, sizeof(name), "/proc/self/fd/%d", memfd);
                r = paf_registry_load_config(reg, name, &e);
        } else {
                snprintf(name, sizeof(name), "fuzz.conf");
                char *s = malloc(len + 1);
                FUZZ_CHECK(s);
                memcpy(s, text, len);
                s[len] = '\0';
                r = paf_registry_load_config_string(reg, name, s, &e);
                free(s);
        }
        /* log-level = debug would flood the campaign. */
        paf_log_set_level(PAF_LOG_ERR);

        if (r < 0)
                check_error(&e, name);
        else {
                read_back(reg);
                if (opts & OPT_PLUGINS)
                        for (size_t i = 0; i < sizeof(plugin_names) / sizeof(plugin_names[0]);
                             i++) {
                                char p[PATH_MAX];
                                snprintf(p, sizeof(p), "%s/%s.so", plugindir, plugin_names[i]);
                                paf_error pe = PAF_ERROR_NULL;
                                if (paf_registry_load_plugin(reg, p, &pe) < 0) {
                                        FUZZ_CHECK(pe.code < 0 && pe.message[0]);
                                        FUZZ_CHECK(memchr(pe.message, 0, sizeof(pe.message)));
                                }
                        }
                if ((opts & OPT_LOAD) && search_path_is_safe(reg)) {
                        paf_error le = PAF_ERROR_NULL;
                        r = paf_registry_load_plugins(reg, &le);
                        if (r < 0)
                                check_error(&le, name);
                        size_t n = 0;
                        const paf_plugin_info *info = paf_registry_get_plugins(reg, &n);
                        for (size_t i = 0; i < n; i++)
                                FUZZ_CHECK(info[i].name && (info[i].loaded || info[i].reason));
                }
                read_back(reg);
                paf_log_set_level(PAF_LOG_ERR);
        }
        paf_registry_unref(reg);
        return 0;
}
