/* tools/paf-tool.h — what the paf command's files share. */
#pragma once

#include <stdbool.h>

#include <paf.h>
#include <paf/http.h>

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
/* `paf get URL …`: argv[0] is "get". */
int cmd_get(int argc, char **argv);
