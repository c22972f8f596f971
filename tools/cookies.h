/* tools/cookies.h — paf get's cookie jar: curl's Netscape file format, RFC 6265 Set-Cookie. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

typedef struct cookie_jar cookie_jar;

int cookie_jar_new(cookie_jar **ret);
cookie_jar *cookie_jar_free(cookie_jar *j);

/*
 * Read a cookie file as curl -b FILE does: Netscape lines (DOMAIN, TAILMATCH,
 * PATH, SECURE, EXPIRES, NAME, VALUE, tab separated; "#HttpOnly_" before the
 * domain; other '#' lines are comments) and "Set-Cookie:" header lines.
 * Expired cookies are dropped. A file that cannot be opened is -errno
 * (curl goes on without it; the caller decides).
 */
int cookie_jar_load(cookie_jar *j, FILE *f, time_t now);

/*
 * A Set-Cookie field received from host for path (the request's, its query
 * included or not). secure: the request went over a secure context (https,
 * or localhost as curl counts it). 1 when taken, 0 when refused (bad
 * domain, Secure from an insecure origin, malformed), < 0 on error.
 */
int cookie_jar_add(cookie_jar *j, const char *set_cookie, const char *host, const char *path,
                   bool secure, time_t now);

/* What curl counts as a secure context for cookies: https, or localhost. */
bool cookie_secure_context(const char *scheme, const char *host);

/*
 * The Cookie field for a request to host and path (query ignored), in
 * curl's order (longest path first, then longest domain, then longest
 * name, then newest), or NULL in *ret when no cookie applies.
 */
int cookie_jar_header(cookie_jar *j, const char *host, const char *path, bool secure, time_t now,
                      char **ret);

/* Write the jar as curl -c does: its three comment lines, then the cookies
 * that have not expired, newest first. */
int cookie_jar_save(cookie_jar *j, FILE *f, time_t now);

size_t cookie_jar_count(cookie_jar *j);
