/* core/http/head.h — the plainest request heads parsed in one pass, in front of llhttp. */
#pragma once

#include <stddef.h>
#include <stdint.h>

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

/* The first control character (other than HTAB) of s, or n. */
size_t http_find_ctl(const char *s, size_t n);
