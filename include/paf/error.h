/* paf/error.h — an errno plus a message naming the thing and the reason. */
#pragma once

#include <paf/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Caller-provided storage for a failure's explanation, for calls whose errno
 * alone would be useless ("paf.conf:12: [tcp] key \"nodelay\": not a boolean").
 * Functions taking a paf_error * accept NULL. code is a negative errno.
 */
typedef struct paf_error {
        int code;
        char message[512];
} paf_error;

#define PAF_ERROR_NULL ((paf_error){0, {0}})

/* Sets error (if not NULL) and returns code, which must be negative. */
PAF_EXPORT int paf_error_set(paf_error *error, int code, const char *format, ...) PAF_PRINTF(3, 4);
PAF_EXPORT int paf_error_setv(paf_error *error, int code, const char *format, va_list ap)
        PAF_PRINTF(3, 0);
/* Prefix an existing message: "prefix: old message". */
PAF_EXPORT int paf_error_prefix(paf_error *error, const char *format, ...) PAF_PRINTF(2, 3);

#ifdef __cplusplus
}
#endif
