/* tools/paf-tool.h — what the paf command's files share. */
#pragma once

#include <paf.h>
#include <paf/http.h>

/* `paf serve …`: argv[0] is "serve". Returns the exit status. */
int cmd_serve(int argc, char **argv);
/* `paf get URL …`: argv[0] is "get". */
int cmd_get(int argc, char **argv);
