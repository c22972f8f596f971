/* paf/common.h — definitions shared by every paf header: export macro, value
 * types, logging and the cleanup helpers. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PAF_EXPORT __attribute__((visibility("default")))
#define PAF_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Generic destructor for userdata handed to paf. */
typedef void (*paf_destroy_t)(void *userdata);

/* The type of a context value or of a plugin option. */
typedef enum paf_type {
        PAF_TYPE_NONE = 0,
        PAF_TYPE_STRING,
        PAF_TYPE_INT, /* int64_t */
        PAF_TYPE_BOOL,
        PAF_TYPE_BYTES,
        PAF_TYPE_POINTER, /* void * with a destructor */
} paf_type;

PAF_EXPORT const char *paf_type_to_string(paf_type t);

/* Log levels, syslog numbering. */
typedef enum paf_log_level {
        PAF_LOG_ERR = 3,
        PAF_LOG_WARNING = 4,
        PAF_LOG_NOTICE = 5,
        PAF_LOG_INFO = 6,
        PAF_LOG_DEBUG = 7,
} paf_log_level;

/* Messages at or below the level are written to stderr (default: notice). */
PAF_EXPORT void paf_log_set_level(int level);
PAF_EXPORT int paf_log_get_level(void);
/* "err", "warning", "notice", "info", "debug" (or 3..7); -EINVAL otherwise. */
PAF_EXPORT int paf_log_level_from_string(const char *s);
PAF_EXPORT void paf_log(int level, const char *format, ...) PAF_PRINTF(2, 3);
PAF_EXPORT void paf_logv(int level, const char *format, va_list ap) PAF_PRINTF(2, 0);

/* Cleanup attribute helpers, systemd style. */
#define _paf_cleanup_(f) __attribute__((cleanup(f)))
#define PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                \
        static inline void func##p(type *p) {                                                      \
                if (*p)                                                                            \
                        func(*p);                                                                  \
        }

#ifdef __cplusplus
}
#endif
