/* tools/bench-hist.h — latencies in a log-linear histogram, HdrHistogram-style: 3 significant
 * digits from 1 µs to 1 h, constant memory, mergeable across threads. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The largest value kept: 1 h in µs. Larger values are recorded as this. */
#define BENCH_HIST_MAX_USEC UINT64_C(3600000000)

/* Not thread-safe: one histogram per thread, merged at the end. */
typedef struct bench_hist bench_hist;

/* One allocation of a fixed size (bench_hist_memsize()); -EINVAL, -ENOMEM. */
int bench_hist_new(bench_hist **ret);
bench_hist *bench_hist_free(bench_hist *h);
void bench_hist_reset(bench_hist *h);
/* No allocation, no floating point. Values below 1 count as 1; values above 1 h count as 1 h,
 * and in bench_hist_clamped(). */
void bench_hist_record(bench_hist *h, uint64_t usec);
/* n values of usec at once (n == 0 records nothing). */
void bench_hist_record_n(bench_hist *h, uint64_t usec, uint64_t n);
/* Adds from's values to into's (into == from doubles every count). */
void bench_hist_merge(bench_hist *into, const bench_hist *from);

uint64_t bench_hist_count(const bench_hist *h);
/* How many of the values were above 1 h (recorded as 1 h). */
uint64_t bench_hist_clamped(const bench_hist *h);
/* Exact min and max of the values as recorded (after the clamping above); 0 when empty. */
uint64_t bench_hist_min(const bench_hist *h);
uint64_t bench_hist_max(const bench_hist *h);
/* Exact, from integer sums of the values and of their squares; 0 when empty. */
double bench_hist_mean(const bench_hist *h);
/* Population standard deviation. */
double bench_hist_stdev(const bench_hist *h);
/* The smallest value v such that at least pct% of the values are <= v, reported as the highest
 * value equivalent to v in the histogram, clamped to [min, max] (HdrHistogram's
 * getValueAtPercentile): at most 1/1024 above the exact percentile. pct is 0 < pct <= 100
 * (below: the min; above: the max); 0 when empty. */
uint64_t bench_hist_percentile(const bench_hist *h, double pct);

/* The range of values counted together with v: [lowest, highest]. Exact (width 1) below 2048,
 * then at most 1/1024 of the value wide. */
uint64_t bench_hist_lowest_equivalent(uint64_t usec);
uint64_t bench_hist_highest_equivalent(uint64_t usec);
/* Walks the non-empty ranges in increasing order: start with *iter = 0; each call that returns
 * true sets the range [*ret_lowest, *ret_highest] and its count (any ret may be NULL). */
bool bench_hist_next(const bench_hist *h, size_t *iter, uint64_t *ret_lowest, uint64_t *ret_highest,
                     uint64_t *ret_count);
/* The bytes a histogram takes, whatever it holds. */
size_t bench_hist_memsize(void);

/* One bar per bucket for a terminal, on log-scaled buckets at 1-2-5 steps, from the bucket
 * holding the min to the one holding the max; when that makes fewer than 5 lines, at 1, 1.2, 1.5,
 * 2, 2.5, 3, 4, 5, 6, 8 per decade, and then at the 24 per decade of E24 (1, 1.1, 1.2, 1.3, 1.5 …).
 * Each line
 *   "  1.00ms - 2.00ms | ████████▌ 12345 (34.5%)"
 * Bucket edges are edges of the histogram's own ranges (within 0.1% of the round number printed),
 * so every count is exact. width: the whole line's width in columns (0: 80); bars in eighths of a
 * block with utf8, in '#' without; the largest bucket's bar takes all the room, any non-empty
 * bucket shows at least a sliver. Prints nothing for an empty histogram. */
void bench_hist_print(const bench_hist *h, FILE *f, unsigned width, bool utf8);

/* Human formatting of µs to 3 significant digits: "812us", "1.23ms", "12.3ms", "4.56s",
 * "3600s", into buf (truncated to size). Returns buf. */
const char *bench_format_usec(uint64_t usec, char *buf, size_t size);
