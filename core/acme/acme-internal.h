/* core/acme/acme-internal.h — the ACME client's pieces that its tests reach. */
#pragma once

#include <stdint.h>

#include <paf/acme.h>

/* Retry-After (RFC 9110 §10.2.3), delay-seconds or an HTTP-date, as the
 * wait from now (realtime µs) into *ret_usec; -ENOENT without one, -EINVAL
 * for a malformed one. */
int paf_acme_parse_retry_after(const char *value, uint64_t now_realtime_usec,
                               uint64_t *ret_usec);
/* The renewal time of a certificate without ARI (realtime µs). */
uint64_t paf_acme_renewal_time(uint64_t not_before, uint64_t not_after);
/* Uniform in [0, n). */
uint64_t paf_acme_random_below(uint64_t n);
