/* tools/paf-tool.h — what the paf command's files share. */
#pragma once

#include <getopt.h>
#include <stdbool.h>

#include <paf.h>
#include <paf/http.h>

/* "paf serve", "paf get" …: what every message of the running command
 * starts with ("paf" outside a command). */
extern const char *tool_name;

/* "NAME: MESSAGE" on stderr. */
void tool_error(const char *format, ...) PAF_PRINTF(1, 2);
/* A usage error: "NAME: MESSAGE", then "Try "NAME --help".". Returns 2. */
int tool_usage_error(const char *format, ...) PAF_PRINTF(1, 2);
/* After getopt_long() returned '?' or ':' (its optstring starts with ':',
 * opterr is 0): names the option and what is wrong, as tool_usage_error().
 * Returns 2. */
int tool_bad_option(int c, char **argv, const struct option *options);
/* How many plugins reg loaded. */
size_t tool_n_loaded(paf_registry *reg);
/* "plugins loaded: tcp, unix; searched: /a:/b; set PAF_PLUGIN_PATH or
 * [paf] plugin-path", or "no plugin loaded (searched: …)": for a message
 * about an address or URL no plugin serves. Malloc'ed, NULL without memory. */
char *tool_plugin_hint(paf_registry *reg);
/* False, after saying so with the search path, when reg loaded no plugin:
 * the core knows no transport of its own, so nothing could work. */
bool tool_check_plugins(paf_registry *reg);

/* A registry with the configuration (NULL: the embedded default) and its
 * plugins. Returns how many plugins the configuration asked for were
 * refused, or < 0 after printing the configuration error. quiet: the caller
 * lists refusals itself, so the loader's warnings would only repeat them. */
int tool_load_registry(const char *config, bool quiet, paf_registry **ret);
/* Print each plugin the configuration asked for that was refused, and why;
 * what (may be NULL) names the configuration. */
void tool_report_refused(paf_registry *reg, const char *what);

/* `paf serve …`: argv[0] is "serve". Returns the exit status. */
int cmd_serve(int argc, char **argv);
/* `paf bench URL …`: argv[0] is "bench". */
int cmd_bench(int argc, char **argv);
/* `paf get URL …`: argv[0] is "get". */
int cmd_get(int argc, char **argv);
