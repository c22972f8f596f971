/* core/http/head.c — the plainest request heads parsed in one pass, in front of llhttp. */
#include "core/http/head.h"

#include <llhttp.h>
#include <stdbool.h>
#include <string.h>

/* RFC 9110 §5.6.2 tchar. */
static const unsigned char is_tchar[256] = {
        ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
        ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
        ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
        ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
        ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
        ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
        ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
        ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
        ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
        ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* What an origin-form target (RFC 9112 §3.2.1) is made of: RFC 3986's
 * unreserved, sub-delims, ":", "@", "/", "?" and "%". No fragment, no
 * byte llhttp might read differently. */
static const unsigned char is_target_char[256] = {
        ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1,
        ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1, [':'] = 1,
        ['@'] = 1, ['/'] = 1, ['?'] = 1, ['%'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
        ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1,
        ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
        ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
        ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
        ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
        ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
        ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
        ['y'] = 1, ['z'] = 1,
};

/* Fields that take a request off the fast pass: they frame a body, or
 * switch protocols, and llhttp has the rules for them. */
static bool name_declined(const char *p, size_t len) {
        switch (len) {
        case 7:
                return http_name_is(p, len, "upgrade", 7);
        case 14:
                return http_name_is(p, len, "content-length", 14);
        case 17:
                return http_name_is(p, len, "transfer-encoding", 17);
        }
        return false;
}

size_t http_head_parse(const char *p, size_t n, size_t max_bytes, size_t max_fields, http_head *h) {
        if (n > max_bytes)
                n = max_bytes;
        if (n > UINT32_MAX)
                n = UINT32_MAX;
        size_t i;
        if (n >= 4 && memcmp(p, "GET ", 4) == 0) {
                h->method = HTTP_GET;
                i = 4;
        } else if (n >= 5 && memcmp(p, "HEAD ", 5) == 0) {
                h->method = HTTP_HEAD;
                i = 5;
        } else
                return 0;

        /* Origin form only. */
        if (i >= n || p[i] != '/')
                return 0;
        h->target = (uint32_t)i;
        while (i < n && is_target_char[(unsigned char)p[i]])
                i++;
        h->target_len = (uint32_t)(i - h->target);
        if (n - i < 10 || memcmp(p + i, " HTTP/1.", 8) != 0 ||
            (p[i + 8] != '0' && p[i + 8] != '1') || p[i + 9] != '\r')
                return 0;
        h->minor = (unsigned)(p[i + 8] - '0');
        i += 10;
        if (i >= n || p[i] != '\n')
                return 0;
        i++;

        h->n_fields = 0;
        for (;;) {
                if (i + 2 > n)
                        return 0; /* cut: llhttp waits for the rest */
                if (p[i] == '\r')
                        return p[i + 1] == '\n' ? i + 2 : 0;
                if (h->n_fields == HTTP_HEAD_FIELDS_MAX || h->n_fields == max_fields)
                        return 0;
                size_t name = i;
                while (i < n && is_tchar[(unsigned char)p[i]])
                        i++;
                if (i == name || i >= n || p[i] != ':' || name_declined(p + name, i - name))
                        return 0;
                size_t name_len = i - name;
                i++;
                while (i < n && (p[i] == ' ' || p[i] == '\t'))
                        i++;
                const char *cr = memchr(p + i, '\r', n - i);
                if (!cr || (size_t)(cr - p) + 1 >= n || cr[1] != '\n')
                        return 0;
                size_t value = i, end = (size_t)(cr - p);
                if (http_find_ctl(p + value, end - value) < end - value)
                        return 0;
                i = end + 2;
                while (end > value && (p[end - 1] == ' ' || p[end - 1] == '\t'))
                        end--;
                h->fields[h->n_fields++] = (http_head_field){
                        .name = (uint32_t)name,
                        .name_len = (uint32_t)name_len,
                        .value = (uint32_t)value,
                        .value_len = (uint32_t)(end - value),
                };
        }
}
