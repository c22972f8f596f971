/* core/http/head.h — the plainest request heads parsed in one pass, in front of llhttp. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * Most requests are a GET or a HEAD with a few fields and no body. For those
 * the server takes the whole head in one pass over its bytes instead of
 * llhttp's callbacks. The pass accepts only a strict subset of what llhttp
 * accepts in strict mode, and declines everything else (a body, Upgrade, an
 * unusual target or version, a head cut by the read): llhttp then parses
 * the same bytes from the start and decides. So no request is read two ways
 * (tests/http/test-head.c checks the subset against llhttp itself).
 */

#define HTTP_HEAD_FIELDS_MAX 32

typedef struct http_head_field {
        uint32_t name, name_len;   /* offsets into the parsed bytes */
        uint32_t value, value_len; /* without the whitespace around it */
} http_head_field;

typedef struct http_head {
        int method;     /* llhttp's HTTP_GET or HTTP_HEAD */
        unsigned minor; /* HTTP/1.minor: 0 or 1 */
        uint32_t target, target_len;
        size_t n_fields;
        http_head_field fields[HTTP_HEAD_FIELDS_MAX];
} http_head;

/* The length of the head at p, through its empty line, parsed into h, when
 * it is at most max_bytes long, has at most max_fields fields and is one the
 * fast pass takes; 0 when llhttp is to decide. */
size_t http_head_parse(const char *p, size_t n, size_t max_bytes, size_t max_fields, http_head *h);

/* Whether the token p[0, len) is lower (lowercase letters, digits and
 * '-'), whatever its case: for names already checked to be tokens, in which
 * no other byte folds to one of those. */
static inline bool http_name_is(const char *p, size_t len, const char *lower, size_t n) {
        if (len != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((p[i] | 0x20) != lower[i])
                        return false;
        return true;
}

static inline bool http_word_has_ctl(uint64_t x) {
        const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
        uint64_t del = x ^ (0x7f * ones);
        return (((x - 0x20 * ones) & ~x) | ((del - ones) & ~del)) & highs;
}

/* The first control character (other than HTAB) of s[from, to), or to. */
static inline size_t http_bytes_find_ctl(const char *s, size_t from, size_t to) {
        for (size_t i = from; i < to; i++) {
                unsigned char ch = (unsigned char)s[i];
                if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                        return i;
        }
        return to;
}

/* The first control character (other than HTAB) of s, or n. Eight bytes a
 * step, the last step overlapping the one before (or padded): every value
 * of every request goes through here. A word with a byte below 0x20 or a
 * DEL is looked at byte by byte (a tab is one such byte, and allowed). */
static inline size_t http_find_ctl(const char *s, size_t n) {
        size_t i = 0;
        uint64_t x;
        for (; i + 8 <= n; i += 8) {
                memcpy(&x, s + i, 8);
                if (http_word_has_ctl(x)) {
                        size_t at = http_bytes_find_ctl(s, i, i + 8);
                        if (at < i + 8)
                                return at;
                }
        }
        if (i == n)
                return n;
        if (n >= 8)
                memcpy(&x, s + n - 8, 8);
        else {
                x = 0x2020202020202020ULL; /* spaces: no control character */
                for (size_t k = 0; k < n; k++)
                        ((unsigned char *)&x)[k] = (unsigned char)s[k];
        }
        return http_word_has_ctl(x) ? http_bytes_find_ctl(s, i, n) : n;
}
