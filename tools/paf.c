/* tools/paf.c — the `paf` command: plugins, config check (serve, get … follow). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "paf-tool.h"

static const char *program = "paf";

static void usage(FILE *f) {
        fprintf(f,
                "Usage: %s COMMAND [OPTIONS]\n"
                "\n"
                "HTTP over pluggable transports.\n"
                "\n"
                "Commands:\n"
                "  get URL [OPTIONS]         Fetch a URL, curl-style (see paf get --help)\n"
                "  serve [OPTIONS]           Serve HTTP (see paf serve --help)\n"
                "  plugins [--config FILE]   List loaded plugins and refused ones with the reason\n"
                "  config check FILE         Check a paf.conf; print FILE:LINE: … on the first error\n"
                "  help                      Show this help\n"
                "  version                   Show the version\n"
                "\n"
                "Plugins are searched in PAF_PLUGIN_PATH (colon separated), then the config's\n"
                "plugin-path, then %s.\n",
                program, PAF_PLUGINSDIR);
}

int tool_load_registry(const char *config, bool quiet, paf_registry **ret) {
        paf_registry *reg = NULL;
        paf_error error = PAF_ERROR_NULL;
        int r = paf_registry_new(&reg);
        if (r < 0) {
                fprintf(stderr, "%s: cannot create registry: %s\n", program, strerror(-r));
                return r;
        }
        r = paf_registry_load_config(reg, config, &error);
        if (r >= 0) {
                int level = paf_log_get_level();
                if (quiet)
                        paf_log_set_level(PAF_LOG_ERR);
                r = paf_registry_load_plugins(reg, &error);
                paf_log_set_level(level);
        }
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", program, error.message);
                paf_registry_unref(reg);
                return r;
        }
        *ret = reg;
        return r;
}

void tool_report_refused(paf_registry *reg, const char *what) {
        size_t n;
        const paf_plugin_info *info = paf_registry_get_plugins(reg, &n);
        for (size_t i = 0; i < n; i++)
                if (!info[i].loaded && info[i].requested)
                        fprintf(stderr, "%s: %s%splugin \"%s\" refused: %s\n", program,
                                what ? what : "", what ? ": " : "", info[i].name,
                                info[i].reason ? info[i].reason : "unknown reason");
}

static int cmd_plugins(int argc, char **argv) {
        static const struct option options[] = {
                {"config", required_argument, NULL, 'c'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *config = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case 'h':
                        printf("Usage: %s plugins [--config FILE]\n", program);
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "%s plugins: unexpected argument \"%s\"\n", program, argv[optind]);
                return 2;
        }

        paf_registry *reg = NULL;
        int refused = tool_load_registry(config, true, &reg);
        if (refused < 0)
                return 2;

        size_t n;
        const paf_plugin_info *info = paf_registry_get_plugins(reg, &n);
        size_t n_loaded = 0;
        for (size_t i = 0; i < n; i++)
                n_loaded += info[i].loaded;

        printf("%-12s %-10s %-16s %s\n", "NAME", "VERSION", "PROTOCOLS", "FILE");
        for (size_t i = 0; i < n; i++)
                if (info[i].loaded)
                        printf("%-12s %-10s %-16s %s\n", info[i].name,
                               info[i].version ? info[i].version : "-",
                               info[i].protocols && *info[i].protocols ? info[i].protocols : "-",
                               info[i].file ? info[i].file : "-");
        if (n_loaded < n) {
                printf("\nrefused:\n");
                for (size_t i = 0; i < n; i++)
                        if (!info[i].loaded)
                                printf("%-12s %s: %s%s\n", info[i].name,
                                       info[i].file ? info[i].file : "(not found)",
                                       info[i].reason ? info[i].reason : "unknown reason",
                                       info[i].requested ? " (requested)" : "");
        }
        paf_registry_unref(reg);
        return refused > 0 ? 1 : 0;
}

static int cmd_config(int argc, char **argv) {
        if (argc < 2 || strcmp(argv[1], "check") != 0) {
                fprintf(stderr, "Usage: %s config check FILE\n", program);
                return 2;
        }
        if (argc != 3) {
                fprintf(stderr, "Usage: %s config check FILE\n", program);
                return 2;
        }
        paf_registry *reg = NULL;
        int refused = tool_load_registry(argv[2], true, &reg);
        if (refused < 0)
                return 1;
        if (refused > 0) {
                tool_report_refused(reg, argv[2]);
                paf_registry_unref(reg);
                return 1;
        }
        printf("%s: ok\n", argv[2]);
        paf_registry_unref(reg);
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        const char *cmd = argv[1];
        if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
                usage(stdout);
                return 0;
        }
        if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
                printf("paf %s (plugin ABI %d.%d)\n", PAF_VERSION, PAF_ABI_MAJOR, PAF_ABI_MINOR);
                return 0;
        }
        if (strcmp(cmd, "get") == 0)
                return cmd_get(argc - 1, argv + 1);
        if (strcmp(cmd, "serve") == 0)
                return cmd_serve(argc - 1, argv + 1);
        if (strcmp(cmd, "plugins") == 0)
                return cmd_plugins(argc - 1, argv + 1);
        if (strcmp(cmd, "config") == 0)
                return cmd_config(argc - 1, argv + 1);
        fprintf(stderr, "%s: unknown command \"%s\" (try \"%s help\")\n", program, cmd, program);
        return 2;
}
