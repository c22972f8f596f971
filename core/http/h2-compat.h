/* core/http/h2-compat.h — the libnghttp2 calls whose signatures changed.
 *
 * Debian 12 ships nghttp2 1.52, which only has the ssize_t API. 1.60 added
 * the nghttp2_ssize ("*2") variants and deprecated the old ones, so a build
 * with -Werror against a newer library would break on them. Every call of
 * that family goes through this header; nothing else in paf names them.
 */
#pragma once

#include <nghttp2/nghttp2.h>

#if NGHTTP2_VERSION_NUM >= 0x013c00
typedef nghttp2_ssize h2_ssize;
typedef nghttp2_data_provider2 h2_data_provider;
typedef nghttp2_send_callback2 h2_send_callback;
typedef nghttp2_data_source_read_callback2 h2_read_callback;
#define h2_callbacks_set_send nghttp2_session_callbacks_set_send_callback2
#define h2_session_mem_recv nghttp2_session_mem_recv2
#define h2_session_mem_send nghttp2_session_mem_send2
#define h2_submit_response nghttp2_submit_response2
#define h2_submit_request nghttp2_submit_request2
#define h2_submit_data nghttp2_submit_data2
#define h2_pack_settings_payload nghttp2_pack_settings_payload2
#else
typedef ssize_t h2_ssize;
typedef nghttp2_data_provider h2_data_provider;
typedef nghttp2_send_callback h2_send_callback;
typedef nghttp2_data_source_read_callback h2_read_callback;
#define h2_callbacks_set_send nghttp2_session_callbacks_set_send_callback
#define h2_session_mem_recv nghttp2_session_mem_recv
#define h2_session_mem_send nghttp2_session_mem_send
#define h2_submit_response nghttp2_submit_response
#define h2_submit_request nghttp2_submit_request
#define h2_submit_data nghttp2_submit_data
#define h2_pack_settings_payload nghttp2_pack_settings_payload
#endif

/* A name-value pair for nghttp2_submit_*, from strings we keep alive until
 * the call returns (nghttp2 copies them: no NO_COPY flags). */
static inline nghttp2_nv h2_nv(const char *name, size_t name_len, const char *value,
                               size_t value_len) {
        return (nghttp2_nv){
                .name = (uint8_t *)name,
                .value = (uint8_t *)value,
                .namelen = name_len,
                .valuelen = value_len,
                .flags = NGHTTP2_NV_FLAG_NONE,
        };
}
