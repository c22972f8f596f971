/* core/http/headers-internal.h — a header list's HTTP/1.1 text, made once for lists answers share. */
#pragma once

#include <stddef.h>

#include <paf/http.h>

/* Names whose presence in a list changes how the server writes a head. */
enum {
        HTTP_WIRE_DATE = 1u << 0,
        HTTP_WIRE_SERVER = 1u << 1,
        HTTP_WIRE_CONNECTION = 1u << 2,
        HTTP_WIRE_CONTENT_TYPE = 1u << 3,
        HTTP_WIRE_CONTENT_LENGTH = 1u << 4,
        HTTP_WIRE_TRANSFER_ENCODING = 1u << 5,
};

/* Makes h's fields as HTTP/1.1 text ("Name: value\r\n" each), kept in h
 * until h changes: for a list many responses are written with (a static
 * file's), so that each copies one block. Call it before the list is
 * shared between threads: reading the text is then read-only. */
int http_headers_freeze(paf_http_headers *h);

/* The text of a frozen, unchanged h, its length and which HTTP_WIRE_* names
 * it has; NULL for any other list. */
const char *http_headers_wire(const paf_http_headers *h, size_t *len, unsigned *names);
