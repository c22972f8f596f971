/* tools/paf.c — the `paf` command: dispatch, usage, the messages every subcommand shares, plugins,
 * config check. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "acme-tool.h"
#include "paf-tool.h"

static const char *program = "paf";
const char *tool_name = "paf";

static void usage(FILE *f) {
        fprintf(f,
                "Usage: %s COMMAND [OPTIONS]\n"
                "\n"
                "HTTP over pluggable transports.\n"
                "\n"
                "Commands:\n"
                "  get URL [OPTIONS]         Fetch a URL, curl-style\n"
                "  serve [OPTIONS] [PORT]    Serve the files of a directory over HTTP\n"
                "  bench URL [OPTIONS]       Many connections against a server: latency\n"
                "                            percentiles, a histogram, every failure\n"
                "  cert COMMAND [OPTIONS]    Certificates from an ACME CA (Let's Encrypt):\n"
                "                            issue, renew, revoke, show, key-change, deactivate\n"
                "  plugins [--config FILE] [-v]\n"
                "                            List plugins, their URL schemes and options, and\n"
                "                            refused ones with the reason\n"
                "  config check FILE         Check a paf.conf; print FILE:LINE: … on the first error\n"
                "  version                   Show the version\n"
                "  help                      Show this help\n"
                "\n"
                "Every command takes --help: \"paf serve --help\".\n"
                "\n"
                "Plugins are searched in PAF_PLUGIN_PATH (colon separated), then the config's\n"
                "[paf] plugin-path, then %s.\n",
                program, PAF_PLUGINSDIR);
}

static void tool_verror(const char *format, va_list ap) {
        /* One write: lines from several processes do not mix. */
        char buf[2048];
        int n = snprintf(buf, sizeof(buf), "%s: ", tool_name);
        if (n < 0 || (size_t)n >= sizeof(buf))
                n = 0;
        if (vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, format, ap) < 0)
                buf[n] = '\0';
        size_t len = strnlen(buf, sizeof(buf) - 1);
        buf[len++] = '\n';
        fwrite(buf, 1, len, stderr);
}

void tool_error(const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        tool_verror(format, ap);
        va_end(ap);
}

int tool_usage_error(const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        tool_verror(format, ap);
        va_end(ap);
        fprintf(stderr, "Try \"%s --help\".\n", tool_name);
        return 2;
}

int tool_bad_option(int c, char **argv, const struct option *options) {
        /* getopt has moved past the word at fault, unless that is a group
         * of short options ("-sz") it is still inside: then only optopt
         * names the option. A missing value is always the last word. */
        const char *word = optind > 0 ? argv[optind - 1] : "";
        bool is_long =
                strncmp(word, "--", 2) == 0 && (c == ':' || optopt == 0 || strchr(word, '='));
        if (!is_long) {
                if (c == ':')
                        return tool_usage_error("option \"-%c\" needs a value", optopt);
                return tool_usage_error("unknown option \"-%c\"", optopt);
        }
        int len = (int)strcspn(word, "=");
        if (c == ':')
                return tool_usage_error("option \"%.*s\" needs a value", len, word);
        if (optopt != 0)
                return tool_usage_error("option \"%.*s\" takes no value", len, word);

        /* Unknown, or the start of several: say which. */
        char matches[256] = "";
        size_t n_matches = 0, k = 0;
        for (const struct option *o = options; o && o->name; o++)
                if (strncmp(o->name, word + 2, (size_t)len - 2) == 0) {
                        int w = snprintf(matches + k, sizeof(matches) - k, "%s--%s",
                                         n_matches ? ", " : "", o->name);
                        if (w > 0 && (size_t)w < sizeof(matches) - k)
                                k += (size_t)w;
                        n_matches++;
                }
        if (n_matches > 1)
                return tool_usage_error("option \"%.*s\" is ambiguous (%s)", len, word, matches);
        return tool_usage_error("unknown option \"%.*s\"", len, word);
}

size_t tool_n_loaded(paf_registry *reg) {
        size_t n, n_loaded = 0;
        const paf_plugin_info *info = paf_registry_get_plugins(reg, &n);
        for (size_t i = 0; info && i < n; i++)
                n_loaded += info[i].loaded;
        return n_loaded;
}

char *tool_plugin_hint(paf_registry *reg) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        if (!f)
                return NULL;
        size_t n;
        const paf_plugin_info *info = paf_registry_get_plugins(reg, &n);
        bool any = false;
        for (size_t i = 0; info && i < n; i++)
                if (info[i].loaded) {
                        fprintf(f, "%s%s", any ? ", " : "plugins loaded: ", info[i].name);
                        any = true;
                }
        fputs(any ? "; searched: " : "no plugin loaded (searched: ", f);
        const char *const *path = paf_registry_get_plugin_path(reg);
        for (size_t i = 0; path && path[i]; i++)
                fprintf(f, "%s%s", i ? ":" : "", path[i]);
        fprintf(f, "; set PAF_PLUGIN_PATH or [paf] plugin-path%s", any ? "" : ")");
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

bool tool_check_plugins(paf_registry *reg) {
        if (tool_n_loaded(reg) > 0)
                return true;
        char *hint = tool_plugin_hint(reg);
        tool_error("%s", hint ? hint : "no plugin loaded");
        free(hint);
        return false;
}

int tool_load_registry(const char *config, bool quiet, paf_registry **ret) {
        paf_registry *reg = NULL;
        paf_error error = PAF_ERROR_NULL;
        int r = paf_registry_new(&reg);
        if (r < 0) {
                tool_error("cannot create registry: %s", strerror(-r));
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
                tool_error("%s", error.message);
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
                        tool_error("%s%splugin \"%s\" refused: %s", what ? what : "",
                                   what ? ": " : "", info[i].name,
                                   info[i].reason ? info[i].reason : "unknown reason");
}

/* A loaded plugin's URL schemes and paf.conf options, under its name. */
static void print_plugin_details(paf_registry *reg, const paf_plugin_info *info, bool verbose) {
        printf("\n%s: %s\n", info->name, info->description ? info->description : "");
        size_t n_schemes = 0;
        for (size_t i = 0; i < paf_registry_get_n_schemes(reg); i++) {
                const paf_scheme *s = paf_registry_get_scheme(reg, i);
                const char *owner = paf_scheme_get_plugin(s);
                if (!owner || strcmp(owner, info->name) != 0)
                        continue;
                uint32_t flags = paf_scheme_get_flags(s);
                printf("  scheme  %-20s %s%s", paf_scheme_get_name(s),
                       flags & PAF_SCHEME_LAYER ? "layer " : "", paf_scheme_get_protocol(s));
                if (paf_scheme_get_default_port(s) > 0)
                        printf(", port %d", paf_scheme_get_default_port(s));
                if (flags & PAF_SCHEME_HOSTNAME)
                        printf(", host names");
                printf("\n");
                n_schemes++;
        }
        if (n_schemes == 0)
                printf("  scheme  (none)\n");

        const paf_option_spec *o = paf_registry_get_plugin_option(reg, info->name, 0);
        if (!o)
                printf("  option  (none)\n");
        for (size_t i = 0; o; o = paf_registry_get_plugin_option(reg, info->name, ++i)) {
                printf("  option  %-20s %-8s ", o->name, paf_type_to_string(o->type));
                if (o->default_value)
                        printf("default %s", o->default_value);
                else
                        printf("no default");
                if (o->flags & PAF_OPTION_RANGE)
                        printf(", %lld-%lld", (long long)o->min, (long long)o->max);
                for (size_t j = 0; o->choices && o->choices[j]; j++)
                        printf("%s%s", j ? "|" : ", one of ", o->choices[j]);
                printf("\n");
                if (verbose && o->help && *o->help)
                        printf("          %s\n", o->help);
        }
}

static int cmd_plugins(int argc, char **argv) {
        static const struct option options[] = {
                {"config", required_argument, NULL, 'c'},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *config = NULL;
        bool verbose = false;
        int c;
        while ((c = getopt_long(argc, argv, ":c:vh", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case 'v':
                        verbose = true;
                        break;
                case 'h':
                        printf("Usage: %s plugins [--config FILE] [-v]\n"
                               "\n"
                               "List the plugins found on the search path, or those [paf] load\n"
                               "names, with their protocols, and the refused ones with the "
                               "reason.\n"
                               "Then, for each plugin, the URL schemes it serves and the options\n"
                               "of its paf.conf section (name, type, default).\n"
                               "\n"
                               "  --config FILE   paf.conf: plugin-path, load\n"
                               "  -v, --verbose   Explain each option too\n"
                               "  --help          Show this help\n",
                               program);
                        return 0;
                default:
                        return tool_bad_option(c, argv, options);
                }
        }
        if (optind < argc)
                return tool_usage_error("unexpected argument \"%s\"", argv[optind]);

        paf_registry *reg = NULL;
        int refused = tool_load_registry(config, true, &reg);
        if (refused < 0)
                return 2;

        size_t n;
        const paf_plugin_info *info = paf_registry_get_plugins(reg, &n);
        size_t n_loaded = 0;
        for (size_t i = 0; i < n; i++)
                n_loaded += info[i].loaded;
        if (n_loaded == 0)
                (void)tool_check_plugins(reg); /* says where it looked */

        printf("%-12s %-10s %-16s %s\n", "NAME", "VERSION", "PROTOCOLS", "FILE");
        for (size_t i = 0; i < n; i++)
                if (info[i].loaded)
                        printf("%-12s %-10s %-16s %s\n", info[i].name,
                               info[i].version ? info[i].version : "-",
                               info[i].protocols && *info[i].protocols ? info[i].protocols : "-",
                               info[i].file ? info[i].file : "-");
        for (size_t i = 0; i < n; i++)
                if (info[i].loaded)
                        print_plugin_details(reg, &info[i], verbose);
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

static bool is_help(const char *arg) {
        return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

static int cmd_config(int argc, char **argv) {
        if ((argc >= 2 && is_help(argv[1])) || (argc == 3 && is_help(argv[2]))) {
                printf("Usage: %s config check FILE\n"
                       "\n"
                       "Check a paf.conf as paf serve and paf get would read it, plugins\n"
                       "included, and its [listen.NAME] as paf serve would listen (addresses,\n"
                       "certificate files), without listening. Print FILE: ok, or\n"
                       "FILE:LINE: … on the first error (exit 1).\n",
                       program);
                return 0;
        }
        if (argc >= 2 && argv[1][0] == '-')
                return tool_usage_error("unknown option \"%s\"", argv[1]);
        if (argc < 2)
                return tool_usage_error("what to do? (check FILE)");
        if (strcmp(argv[1], "check") != 0)
                return tool_usage_error("unknown subcommand \"%s\" (only check FILE)", argv[1]);
        if (argc < 3)
                return tool_usage_error("check: no FILE");
        if (argc > 3)
                return tool_usage_error("check: one FILE only; unexpected \"%s\"", argv[3]);
        paf_registry *reg = NULL;
        int refused = tool_load_registry(argv[2], true, &reg);
        if (refused < 0)
                return 1;
        if (refused > 0) {
                tool_report_refused(reg, argv[2]);
                paf_registry_unref(reg);
                return 1;
        }
        /* What paf serve would refuse once its plugins are loaded, by the
         * same call serve makes. */
        paf_error error = PAF_ERROR_NULL;
        int r = paf_registry_check_config(reg, &error);
        if (r < 0) {
                tool_error("%s", error.message[0] ? error.message : strerror(-r));
                paf_registry_unref(reg);
                return 1;
        }
        printf("%s: ok\n", argv[2]);
        paf_registry_unref(reg);
        return 0;
}

static int cmd_version(int argc, char **argv) {
        if (argc >= 2 && is_help(argv[1])) {
                printf("Usage: %s version\n"
                       "\n"
                       "Show paf's version and the plugin ABI it loads.\n",
                       program);
                return 0;
        }
        if (argc >= 2 && argv[1][0] == '-')
                return tool_usage_error("unknown option \"%s\"", argv[1]);
        if (argc >= 2)
                return tool_usage_error("unexpected argument \"%s\"", argv[1]);
        printf("paf %s (plugin ABI %d.%d)\n", PAF_VERSION, PAF_ABI_MAJOR, PAF_ABI_MINOR);
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        const char *cmd = argv[1];
        if (strcmp(cmd, "help") == 0 || is_help(cmd)) {
                usage(stdout);
                return 0;
        }
        /* Every command says what went wrong itself, in its own name. */
        opterr = 0;
        static const char *const commands[] = {"get", "serve", "cert", "bench", "plugins", "config", "version"};
        static char name[32];
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(cmd, commands[i]) == 0) {
                        snprintf(name, sizeof(name), "%s %s", program, cmd);
                        tool_name = name;
                }
        if (strcmp(cmd, "version") == 0)
                return cmd_version(argc - 1, argv + 1);
        if (strcmp(cmd, "--version") == 0)
                return cmd_version(1, argv + 1);
        if (strcmp(cmd, "get") == 0)
                return cmd_get(argc - 1, argv + 1);
        if (strcmp(cmd, "serve") == 0)
                return cmd_serve(argc - 1, argv + 1);
        if (strcmp(cmd, "cert") == 0)
                return cmd_cert(argc - 1, argv + 1);
        if (strcmp(cmd, "bench") == 0)
                return cmd_bench(argc - 1, argv + 1);
        if (strcmp(cmd, "plugins") == 0)
                return cmd_plugins(argc - 1, argv + 1);
        if (strcmp(cmd, "config") == 0)
                return cmd_config(argc - 1, argv + 1);
        if (cmd[0] == '-')
                return tool_usage_error("unknown option \"%s\"", cmd);
        return tool_usage_error("unknown command \"%s\"", cmd);
}
