/* tools/bench-hist.c — the log-linear latency histogram of `paf bench`. */
#include <assert.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench-hist.h"

/* HdrHistogram's layout with a unit of 1 µs. Bucket 0 counts 0..2047 one by one; bucket b >= 1
 * counts [1024 << b, 2048 << b) in 1024 sub-buckets of width 1 << b, so a range is at most 1/1024
 * of its values wide: 3 significant digits. 22 buckets reach 2^32 - 1 > 1 h. The lower half of
 * every bucket but the first would repeat the bucket below, so it is left out of the array. */
#define SUB_BITS 11
#define SUB_COUNT (1u << SUB_BITS) /* 2048 */
#define HALF_BITS (SUB_BITS - 1)
#define HALF_COUNT (1u << HALF_BITS) /* 1024 */
#define BUCKETS 22
#define COUNTS ((BUCKETS + 1) * HALF_COUNT) /* 23552 */

/* Sums are exact integers, so that mean and stdev do not drift over billions of values. */
#ifdef __SIZEOF_INT128__
typedef unsigned __int128 wide;
#else
/* 32-bit targets have no 128-bit integer: sums become (nearly exact) long doubles. */
typedef long double wide;
#endif

struct bench_hist {
        uint64_t total;
        uint64_t min; /* UINT64_MAX when empty */
        uint64_t max;
        uint64_t clamped;
        wide sum;
        wide sum_squares;
        uint64_t counts[COUNTS];
};

static inline unsigned bucket_of(uint64_t v) {
        /* The | keeps clz's argument non-zero and puts everything below 2048 in bucket 0. */
        return (unsigned)(63 - __builtin_clzll(v | (SUB_COUNT - 1))) - HALF_BITS;
}

static inline size_t index_of(uint64_t v) {
        unsigned b = bucket_of(v);
        return ((size_t)b << HALF_BITS) + (size_t)(v >> b);
}

static inline unsigned bucket_of_index(size_t i) {
        return i < SUB_COUNT ? 0 : (unsigned)(i >> HALF_BITS) - 1;
}

static inline uint64_t lowest_of_index(size_t i) {
        unsigned b = bucket_of_index(i);
        return (uint64_t)(i - ((size_t)b << HALF_BITS)) << b;
}

static inline uint64_t highest_of_index(size_t i) {
        return lowest_of_index(i) + (UINT64_C(1) << bucket_of_index(i)) - 1;
}

uint64_t bench_hist_lowest_equivalent(uint64_t usec) {
        unsigned b = bucket_of(usec);
        return (usec >> b) << b;
}

uint64_t bench_hist_highest_equivalent(uint64_t usec) {
        unsigned b = bucket_of(usec);
        uint64_t lowest = (usec >> b) << b, width = UINT64_C(1) << b;
        return lowest > UINT64_MAX - (width - 1) ? UINT64_MAX : lowest + width - 1;
}

size_t bench_hist_memsize(void) {
        return sizeof(bench_hist);
}

int bench_hist_new(bench_hist **ret) {
        if (!ret)
                return -EINVAL;
        bench_hist *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->min = UINT64_MAX;
        *ret = h;
        return 0;
}

bench_hist *bench_hist_free(bench_hist *h) {
        free(h);
        return NULL;
}

void bench_hist_reset(bench_hist *h) {
        if (!h)
                return;
        /* Only the used part of the counts: a reset per interval stays cheap. */
        if (h->total > 0) {
                size_t lo = index_of(h->min), hi = index_of(h->max);
                memset(&h->counts[lo], 0, (hi - lo + 1) * sizeof(h->counts[0]));
        }
        h->total = 0;
        h->min = UINT64_MAX;
        h->max = 0;
        h->clamped = 0;
        h->sum = 0;
        h->sum_squares = 0;
}

void bench_hist_record_n(bench_hist *h, uint64_t usec, uint64_t n) {
        if (!h || n == 0)
                return;
        if (usec == 0)
                usec = 1;
        else if (usec > BENCH_HIST_MAX_USEC) {
                usec = BENCH_HIST_MAX_USEC;
                h->clamped += n;
        }
        h->counts[index_of(usec)] += n;
        h->total += n;
        if (usec < h->min)
                h->min = usec;
        if (usec > h->max)
                h->max = usec;
        /* usec < 2^32, so its square fits in 64 bits. */
        h->sum += (wide)usec * n;
        h->sum_squares += (wide)(usec * usec) * n;
}

void bench_hist_record(bench_hist *h, uint64_t usec) {
        bench_hist_record_n(h, usec, 1);
}

void bench_hist_merge(bench_hist *into, const bench_hist *from) {
        if (!into || !from || from->total == 0)
                return;
        size_t lo = index_of(from->min), hi = index_of(from->max);
        for (size_t i = lo; i <= hi; i++)
                into->counts[i] += from->counts[i];
        into->total += from->total;
        into->clamped += from->clamped;
        if (from->min < into->min)
                into->min = from->min;
        if (from->max > into->max)
                into->max = from->max;
        into->sum += from->sum;
        into->sum_squares += from->sum_squares;
}

uint64_t bench_hist_count(const bench_hist *h) {
        return h ? h->total : 0;
}

uint64_t bench_hist_clamped(const bench_hist *h) {
        return h ? h->clamped : 0;
}

uint64_t bench_hist_min(const bench_hist *h) {
        return h && h->total > 0 ? h->min : 0;
}

uint64_t bench_hist_max(const bench_hist *h) {
        return h && h->total > 0 ? h->max : 0;
}

double bench_hist_mean(const bench_hist *h) {
        if (!h || h->total == 0)
                return 0;
        return (double)((long double)h->sum / (long double)h->total);
}

double bench_hist_stdev(const bench_hist *h) {
        if (!h || h->total == 0)
                return 0;
        wide n = h->total, s = h->sum, s2 = h->sum_squares;
#ifdef __SIZEOF_INT128__
        /* n·var = s2 - s²/n, without the cancellation of doing it in floating point: with
         * s = q·n + r, s²/n = q²·n + 2·q·r + r²/n, and every term of
         * t = s2 - q²·n - 2·q·r is at most s²/n <= s2 (Cauchy–Schwarz), so nothing overflows
         * and t is exact; only r²/n < n is left to subtract in floating point. */
        wide q = s / n, r = s % n;
        wide t = s2 - q * q * n - 2 * q * r;
        long double var = ((long double)t - (long double)r * (long double)r / (long double)n) /
                          (long double)n;
#else
        long double mean = s / n;
        long double var = s2 / n - mean * mean;
#endif
        return var > 0 ? (double)sqrtl(var) : 0;
}

uint64_t bench_hist_percentile(const bench_hist *h, double pct) {
        if (!h || h->total == 0)
                return 0;
        if (!(pct > 0))
                return h->min;
        if (pct >= 100)
                return h->max;
        /* The rank: ceil(pct% of total). pct carries the error of its binary representation
         * (99.9 is a hair above 99.9), which would push an exact rank like 999 of 1000 to 1000;
         * shaving a few ulps off first keeps it there. */
        long double x = (long double)pct / 100.0L * (long double)h->total;
        x -= x * (4 * DBL_EPSILON);
        uint64_t rank = x <= 1 ? 1 : (uint64_t)ceill(x);
        if (rank > h->total)
                rank = h->total;

        uint64_t seen = 0;
        size_t lo = index_of(h->min), hi = index_of(h->max);
        for (size_t i = lo; i <= hi; i++) {
                seen += h->counts[i];
                if (seen >= rank) {
                        uint64_t v = highest_of_index(i);
                        return v > h->max ? h->max : v < h->min ? h->min : v;
                }
        }
        return h->max; /* not reached: the counts add up to total */
}

bool bench_hist_next(const bench_hist *h, size_t *iter, uint64_t *ret_lowest, uint64_t *ret_highest,
                     uint64_t *ret_count) {
        if (!h || !iter || h->total == 0)
                return false;
        size_t i = *iter, hi = index_of(h->max);
        if (i < index_of(h->min))
                i = index_of(h->min);
        for (; i <= hi; i++)
                if (h->counts[i] > 0) {
                        if (ret_lowest)
                                *ret_lowest = lowest_of_index(i);
                        if (ret_highest)
                                *ret_highest = highest_of_index(i);
                        if (ret_count)
                                *ret_count = h->counts[i];
                        *iter = i + 1;
                        return true;
                }
        *iter = hi + 1;
        return false;
}

const char *bench_format_usec(uint64_t usec, char *buf, size_t size) {
        if (!buf || size == 0)
                return buf;
        if (usec < 1000) {
                snprintf(buf, size, "%" PRIu64 "us", usec);
                return buf;
        }
        if (usec >= 999500000) {
                /* 1000 s and up: whole seconds (and no overflow below). */
                uint64_t s = usec / 1000000 + (usec % 1000000 >= 500000);
                snprintf(buf, size, "%" PRIu64 "s", s);
                return buf;
        }
        /* Rounded in integers, and the unit and digits chosen on the rounded value, so that
         * 999.6ms reads "1.00s" and 9.996ms "10.0ms", never "1000ms" or "10.00ms". */
        uint64_t unit = usec < 999500 ? 1000 : 1000000;
        const char *name = unit == 1000 ? "ms" : "s";
        uint64_t hundredths = (usec * 100 + unit / 2) / unit;
        if (hundredths < 1000) {
                snprintf(buf, size, "%" PRIu64 ".%02" PRIu64 "%s", hundredths / 100,
                         hundredths % 100, name);
                return buf;
        }
        uint64_t tenths = (usec * 10 + unit / 2) / unit;
        if (tenths < 1000)
                snprintf(buf, size, "%" PRIu64 ".%" PRIu64 "%s", tenths / 10, tenths % 10, name);
        else
                snprintf(buf, size, "%" PRIu64 "%s", (usec + unit / 2) / unit, name);
        return buf;
}

/* ---- the terminal histogram ---- */

/* Round numbers per decade, in tenths of the decade's first value. */
static const unsigned coarse_steps[] = {10, 20, 50};
static const unsigned fine_steps[] = {10, 12, 15, 20, 25, 30, 40, 50, 60, 80};
/* IEC 60063's E24, the resistor values: for spreads narrower than half a decade. */
static const unsigned finest_steps[] = {10, 11, 12, 13, 15, 16, 18, 20, 22, 24, 27, 30,
                                        33, 36, 39, 43, 47, 51, 56, 62, 68, 75, 82, 91};
static const struct {
        const unsigned *steps;
        size_t n;
} series[] = {
        {coarse_steps, sizeof(coarse_steps) / sizeof(coarse_steps[0])},
        {fine_steps, sizeof(fine_steps) / sizeof(fine_steps[0])},
        {finest_steps, sizeof(finest_steps) / sizeof(finest_steps[0])},
};
/* The fewest lines that make a useful picture, before trying finer steps. */
#define LINES_MIN 5
/* 1 µs .. 10^10 µs, 24 per decade at most. */
#define EDGES_MAX (11 * 24)

/* The edges of the display buckets: the round numbers from 1 µs to past 1 h. A bar counts the
 * histogram's ranges from the one holding its lower edge to the one before the range holding its
 * upper edge, so that no range is split or counted twice; in effect each edge moves down to the
 * start of its range, by at most 0.1%. Returns how many, strictly increasing. */
static size_t display_edges(const unsigned *steps, size_t n_steps, uint64_t *edges) {
        size_t n = 0;
        uint64_t decade = 1;
        for (int d = 0; d <= 10; d++, decade *= 10)
                for (size_t s = 0; s < n_steps; s++) {
                        /* In the first decade, 1.2 µs and such round to whole µs. */
                        uint64_t e = (steps[s] * decade + 5) / 10;
                        if (n == 0 || e > edges[n - 1])
                                edges[n++] = e;
                }
        return n;
}

/* Lines [*first, *last) of edges that span min..max (line i: edges i and i + 1). */
static void display_range(const uint64_t *edges, size_t n, uint64_t min, uint64_t max,
                          size_t *first, size_t *last) {
        size_t a = 0;
        while (a + 1 < n && edges[a + 1] <= min)
                a++;
        size_t b = a + 1;
        while (b < n && edges[b] <= max)
                b++;
        /* The edges reach 10^10 > 1 h: the last line always has its upper edge. */
        assert(b < n);
        *first = a;
        *last = b;
}

/* The counts of the ranges from the one holding lo to the one before the one holding hi. */
static uint64_t count_between(const bench_hist *h, uint64_t lo, uint64_t hi) {
        size_t a = index_of(lo), b = hi > BENCH_HIST_MAX_USEC ? COUNTS : index_of(hi);
        uint64_t c = 0;
        for (size_t i = a; i < b && i < COUNTS; i++)
                c += h->counts[i];
        return c;
}

static void print_bar(FILE *f, uint64_t count, uint64_t max_count, unsigned room, bool utf8) {
        /* Left eighths, U+2588 (full) down to U+258F (one eighth). */
        static const char *const blocks[8] = {"",       "\u258f", "\u258e", "\u258d",
                                              "\u258c", "\u258b", "\u258a", "\u2589"};
        unsigned per_cell = utf8 ? 8 : 1;
        long double exact = (long double)count * room * per_cell / max_count;
        uint64_t units = (uint64_t)(exact + 0.5L);
        /* A bucket with a single value still shows, even next to millions. */
        if (count > 0 && units == 0)
                units = 1;
        for (uint64_t i = 0; i < units / per_cell; i++)
                fputs(utf8 ? "\u2588" : "#", f);
        if (utf8)
                fputs(blocks[units % 8], f);
        if (units > 0)
                fputc(' ', f);
}

void bench_hist_print(const bench_hist *h, FILE *f, unsigned width, bool utf8) {
        if (!h || !f || h->total == 0)
                return;
        if (width == 0)
                width = 80;

        /* The coarsest steps that give LINES_MIN lines, or the finest. */
        uint64_t edges[EDGES_MAX];
        size_t first = 0, last = 0;
        for (size_t k = 0; k < sizeof(series) / sizeof(series[0]); k++) {
                size_t n = display_edges(series[k].steps, series[k].n, edges);
                display_range(edges, n, h->min, h->max, &first, &last);
                if (last - first >= LINES_MIN)
                        break;
        }

        uint64_t counts[EDGES_MAX], max_count = 0;
        for (size_t i = first; i < last; i++) {
                counts[i] = count_between(h, edges[i], edges[i + 1]);
                if (counts[i] > max_count)
                        max_count = counts[i];
        }

        /* "  %6s - %6s | " then the bar, then " COUNT (PCT%)" at most "(100.0%)" long. */
        char digits[32];
        unsigned prefix = 2 + 6 + 3 + 6 + 3;
        unsigned suffix = (unsigned)snprintf(digits, sizeof(digits), "%" PRIu64, max_count) +
                          (unsigned)strlen(" (100.0%)");
        unsigned room = width > prefix + suffix + 1 ? width - prefix - suffix - 1 : 0;
        if (room < 8)
                room = 8; /* a terminal that narrow wraps; the bars still compare */

        for (size_t i = first; i < last; i++) {
                char lo[16], hi[16];
                fprintf(f, "  %6s - %6s | ", bench_format_usec(edges[i], lo, sizeof(lo)),
                        bench_format_usec(edges[i + 1], hi, sizeof(hi)));
                print_bar(f, counts[i], max_count, room, utf8);
                double share = 100.0 * (double)counts[i] / (double)h->total;
                if (counts[i] > 0 && share < 0.05)
                        fprintf(f, "%" PRIu64 " (<0.1%%)\n", counts[i]);
                else
                        fprintf(f, "%" PRIu64 " (%.1f%%)\n", counts[i], share);
        }
}
