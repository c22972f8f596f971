/* core/common.c — logging, paf_error and small shared helpers. */
#include <stdio.h>
#include <strings.h>

#include "paf-internal.h"

static int log_level = PAF_LOG_NOTICE;

static const char *const level_names[] = {
        [PAF_LOG_ERR] = "err",   [PAF_LOG_WARNING] = "warning", [PAF_LOG_NOTICE] = "notice",
        [PAF_LOG_INFO] = "info", [PAF_LOG_DEBUG] = "debug",
};

PAF_EXPORT void paf_log_set_level(int level) {
        if (level < PAF_LOG_ERR)
                level = PAF_LOG_ERR;
        if (level > PAF_LOG_DEBUG)
                level = PAF_LOG_DEBUG;
        log_level = level;
}

PAF_EXPORT int paf_log_get_level(void) {
        return log_level;
}

PAF_EXPORT int paf_log_level_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (int i = PAF_LOG_ERR; i <= PAF_LOG_DEBUG; i++)
                if (strcasecmp(s, level_names[i]) == 0)
                        return i;
        if (strcasecmp(s, "error") == 0)
                return PAF_LOG_ERR;
        if (s[0] >= '3' && s[0] <= '7' && s[1] == '\0')
                return s[0] - '0';
        return -EINVAL;
}

PAF_EXPORT void paf_logv(int level, const char *format, va_list ap) {
        if (level > log_level)
                return;
        /* One write per message so that lines from several processes do not mix. */
        char buf[2048];
        int n = vsnprintf(buf, sizeof(buf) - 1, format, ap);
        if (n < 0)
                return;
        if ((size_t)n > sizeof(buf) - 2)
                n = sizeof(buf) - 2;
        buf[n++] = '\n';
        fwrite(buf, 1, (size_t)n, stderr);
}

PAF_EXPORT void paf_log(int level, const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        paf_logv(level, format, ap);
        va_end(ap);
}

PAF_EXPORT const char *paf_type_to_string(paf_type t) {
        switch (t) {
        case PAF_TYPE_NONE:
                return "none";
        case PAF_TYPE_STRING:
                return "string";
        case PAF_TYPE_INT:
                return "integer";
        case PAF_TYPE_BOOL:
                return "boolean";
        case PAF_TYPE_BYTES:
                return "bytes";
        case PAF_TYPE_POINTER:
                return "pointer";
        }
        return "invalid";
}

PAF_EXPORT int paf_error_setv(paf_error *error, int code, const char *format, va_list ap) {
        if (code >= 0)
                code = -EIO;
        if (error) {
                error->code = code;
                vsnprintf(error->message, sizeof(error->message), format, ap);
        }
        return code;
}

PAF_EXPORT int paf_error_set(paf_error *error, int code, const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        code = paf_error_setv(error, code, format, ap);
        va_end(ap);
        return code;
}

PAF_EXPORT int paf_error_prefix(paf_error *error, const char *format, ...) {
        if (!error)
                return -EINVAL;
        char prefix[sizeof(error->message)], old[sizeof(error->message)];
        va_list ap;
        va_start(ap, format);
        vsnprintf(prefix, sizeof(prefix), format, ap);
        va_end(ap);
        memcpy(old, error->message, sizeof(old));
        size_t n = strlen(prefix);
        if (n > sizeof(error->message) - 3)
                n = sizeof(error->message) - 3;
        memcpy(error->message, prefix, n);
        memcpy(error->message + n, ": ", 2);
        n += 2;
        size_t m = strnlen(old, sizeof(error->message) - n - 1);
        memcpy(error->message + n, old, m);
        error->message[n + m] = '\0';
        return error->code;
}
