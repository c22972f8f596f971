/* tools/static.h — static files under a root directory, for `paf serve`. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <paf/http.h>

typedef struct static_root static_root;

/* Called once per request when its response is finished or abandoned (the
 * connection went away): the status sent and the body bytes written. */
typedef void (*static_done_handler_t)(int status, uint64_t bytes, void *userdata);

/* Opens the directory. Returns -errno (-ENOTDIR for a file). */
int static_root_new(const char *path, static_root **ret);
static_root *static_root_free(static_root *root);
/* Whether names starting with '.' are served (default: no, they answer 404
 * and listings leave them out; /.well-known/ is always served). */
void static_root_set_dotfiles(static_root *root, bool allow);

/* Answers req with the file, index.html or listing its target names under
 * root (GET and HEAD; 405 otherwise). done may be NULL. */
void static_serve(static_root *root, paf_http_request *req, static_done_handler_t done,
                  void *userdata);

/* Exposed for unit-level checks and the access log: the target's path as a
 * path relative to the root ("." for the root), percent-decoded with dot
 * segments resolved; *ret_slash tells whether it named a directory
 * ("/a/"). Returns 0, or the status to answer (400, 403, 404). */
int static_map_target(const char *target, char **ret_rel, bool *ret_slash);
/* Whether a path from static_map_target() has a segment starting with '.'
 * (but for a leading ".well-known"): what answers 404 without dotfiles. */
bool static_path_is_hidden(const char *rel);
