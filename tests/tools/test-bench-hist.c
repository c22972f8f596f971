/* tests/tools/test-bench-hist.c — the latency histogram of `paf bench` against exact statistics
 * of known distributions: percentiles, min/max/mean/stdev, merge, reset, the terminal histogram
 * and the µs formatting. */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tools/bench-hist.h"

/* splitmix64: fixed seeds, so every run checks the same values. */
static uint64_t rng_state;

static uint64_t rng(void) {
        uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

/* Uniform in (0, 1]. */
static double rng_unit(void) {
        return (double)((rng() >> 11) + 1) / 9007199254740992.0;
}

static bool under_valgrind(void) {
        const char *v = getenv("PAF_TEST_VALGRIND");
        return v && *v && strcmp(v, "0") != 0;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static uint64_t clamp_value(uint64_t v) {
        return v == 0 ? 1 : v > BENCH_HIST_MAX_USEC ? BENCH_HIST_MAX_USEC : v;
}

/* Percentiles in hundredths of a percent, so that the exact rank is integer arithmetic. */
static const unsigned pcts[] = {1, 100, 1000, 2500, 5000, 7500, 9000, 9900, 9990, 9999, 10000};
#define N_PCTS (sizeof(pcts) / sizeof(pcts[0]))

static void assert_close(long double got, long double want, long double rel, const char *what) {
        long double err = fabsl(got - want);
        if (want == 0 ? err != 0 : err > rel * fabsl(want))
                fail_msg("%s: %.17Lg, exact %.17Lg", what, got, want);
}

/* Records values into a new histogram and checks everything against the sorted values.
 * Returns the histogram; *worst: the largest relative percentile error seen. */
static bench_hist *check_values(const char *name, const uint64_t *values, size_t n, double *worst) {
        bench_hist *h = NULL;
        assert_int_equal(bench_hist_new(&h), 0);
        uint64_t *sorted = malloc(n * sizeof(*sorted));
        assert_non_null(sorted);
        uint64_t above = 0;
        for (size_t i = 0; i < n; i++) {
                bench_hist_record(h, values[i]);
                above += values[i] > BENCH_HIST_MAX_USEC;
                sorted[i] = clamp_value(values[i]);
        }
        qsort(sorted, n, sizeof(*sorted), cmp_u64);

        assert_int_equal(bench_hist_count(h), n);
        assert_int_equal(bench_hist_clamped(h), above);
        assert_int_equal(bench_hist_min(h), sorted[0]);
        assert_int_equal(bench_hist_max(h), sorted[n - 1]);

        long double sum = 0;
        for (size_t i = 0; i < n; i++)
                sum += sorted[i];
        long double mean = sum / n, dev = 0;
        for (size_t i = 0; i < n; i++)
                dev += (sorted[i] - mean) * (sorted[i] - mean);
        long double stdev = sqrtl(dev / n);
        char what[128];
        snprintf(what, sizeof(what), "%s: mean", name);
        assert_close(bench_hist_mean(h), mean, 1e-9L, what);
        snprintf(what, sizeof(what), "%s: stdev", name);
        assert_close(bench_hist_stdev(h), stdev, 1e-9L, what);

        *worst = 0;
        for (size_t k = 0; k < N_PCTS; k++) {
                uint64_t rank = (pcts[k] * (uint64_t)n + 9999) / 10000;
                uint64_t exact = sorted[rank - 1];
                uint64_t got = bench_hist_percentile(h, pcts[k] / 100.0);
                /* Exactly what the documentation promises… */
                uint64_t want = bench_hist_highest_equivalent(exact);
                if (want > sorted[n - 1])
                        want = sorted[n - 1];
                if (got != want)
                        fail_msg("%s: p%g = %" PRIu64 ", want %" PRIu64 " (exact %" PRIu64 ")",
                                 name, pcts[k] / 100.0, got, want, exact);
                /* …and so within 0.1% of the exact percentile, never below it. */
                double rel = (double)(got - exact) / (double)exact;
                assert_true(got >= exact);
                if (rel > 0.001)
                        fail_msg("%s: p%g = %" PRIu64 ", exact %" PRIu64 ": %.4f%% off", name,
                                 pcts[k] / 100.0, got, exact, rel * 100);
                if (rel > *worst)
                        *worst = rel;
        }
        free(sorted);
        return h;
}

static void run_distribution(const char *name, const uint64_t *values, size_t n) {
        double worst;
        bench_hist *h = check_values(name, values, n, &worst);
        print_message("%s: %zu values, p50 %" PRIu64 " p99 %" PRIu64 " p99.99 %" PRIu64
                      ", worst percentile error %.4f%%\n",
                      name, n, bench_hist_percentile(h, 50), bench_hist_percentile(h, 99),
                      bench_hist_percentile(h, 99.99), worst * 100);
        bench_hist_free(h);
}

static void test_uniform(void **s) {
        (void)s;
        size_t n = 1000000;
        uint64_t *v = malloc(n * sizeof(*v));
        assert_non_null(v);
        for (size_t i = 0; i < n; i++)
                v[i] = i + 1;
        run_distribution("uniform 1..1e6", v, n);
        free(v);
}

static void test_exponential(void **s) {
        (void)s;
        size_t n = 200000;
        uint64_t *v = malloc(n * sizeof(*v));
        assert_non_null(v);
        rng_state = 42;
        for (size_t i = 0; i < n; i++)
                v[i] = (uint64_t)llround(-2000.0 * log(rng_unit()));
        run_distribution("exponential mean 2ms", v, n);
        free(v);
}

/* Every bucket of the histogram, 1 µs to 1 h. */
static void test_log_uniform(void **s) {
        (void)s;
        size_t n = 200000;
        uint64_t *v = malloc(n * sizeof(*v));
        assert_non_null(v);
        rng_state = 7;
        for (size_t i = 0; i < n; i++)
                v[i] = (uint64_t)llround(exp(rng_unit() * log((double)BENCH_HIST_MAX_USEC)));
        run_distribution("log-uniform 1us..1h", v, n);
        free(v);
}

static void test_constant(void **s) {
        (void)s;
        uint64_t v[1000];
        for (size_t i = 0; i < 1000; i++)
                v[i] = 123457; /* inside a range 64 wide: every percentile is the value itself */
        bench_hist *h;
        double worst;
        h = check_values("constant", v, 1000, &worst);
        for (size_t k = 0; k < N_PCTS; k++)
                assert_int_equal(bench_hist_percentile(h, pcts[k] / 100.0), 123457);
        assert_true(bench_hist_stdev(h) == 0);
        assert_true(bench_hist_mean(h) == 123457);
        bench_hist_free(h);
}

/* Both sides of every bucket and of a few sub-buckets in each, with different multiplicities
 * so that the percentiles land on different edges. */
static void test_edges(void **s) {
        (void)s;
        uint64_t base[512];
        size_t nb = 0;
        base[nb++] = 1;
        base[nb++] = 2;
        base[nb++] = 1023;
        base[nb++] = 1024;
        base[nb++] = 2047;
        for (unsigned b = 1; b <= 21; b++) {
                uint64_t lo = UINT64_C(1024) << b, w = UINT64_C(1) << b;
                base[nb++] = lo;
                base[nb++] = lo + w - 1; /* the last value of the first sub-bucket */
                base[nb++] = lo + w;
                base[nb++] = 2 * lo - 1; /* the last value of the bucket */
                base[nb++] = 2 * lo;
        }
        base[nb++] = BENCH_HIST_MAX_USEC - 1;
        base[nb++] = BENCH_HIST_MAX_USEC;
        uint64_t *v = malloc(nb * 8 * sizeof(*v));
        assert_non_null(v);
        size_t n = 0;
        for (size_t i = 0; i < nb; i++) {
                if (base[i] > BENCH_HIST_MAX_USEC)
                        continue;
                for (size_t k = 0; k <= i % 7; k++)
                        v[n++] = base[i];
        }
        run_distribution("bucket edges", v, n);

        /* The ranges themselves: exact below 2048, at most 1/1024 of the value wide above. */
        for (uint64_t x = 1; x < 2048; x++) {
                assert_int_equal(bench_hist_lowest_equivalent(x), x);
                assert_int_equal(bench_hist_highest_equivalent(x), x);
        }
        for (size_t i = 0; i < n; i++) {
                uint64_t lo = bench_hist_lowest_equivalent(v[i]);
                uint64_t hi = bench_hist_highest_equivalent(v[i]);
                assert_true(lo <= v[i] && v[i] <= hi);
                assert_true(lo < 2048 ? hi == lo : (double)(hi - lo + 1) <= (double)lo / 1024);
                assert_int_equal(bench_hist_lowest_equivalent(hi + 1), hi + 1);
        }
        free(v);
}

static void test_out_of_range(void **s) {
        (void)s;
        const uint64_t hour = BENCH_HIST_MAX_USEC;
        uint64_t v[] = {0, 0, 0, 5, 1, hour + 1, UINT64_MAX, hour, 10 * hour};
        double worst;
        bench_hist *h = check_values("out of range", v, sizeof(v) / sizeof(v[0]), &worst);
        assert_int_equal(bench_hist_min(h), 1);
        assert_int_equal(bench_hist_max(h), BENCH_HIST_MAX_USEC);
        assert_int_equal(bench_hist_clamped(h), 3);
        assert_int_equal(bench_hist_percentile(h, 100), BENCH_HIST_MAX_USEC);
        assert_int_equal(bench_hist_percentile(h, 10), 1);
        /* Out of 0 < pct <= 100: the ends. */
        assert_int_equal(bench_hist_percentile(h, 0), 1);
        assert_int_equal(bench_hist_percentile(h, -5), 1);
        assert_int_equal(bench_hist_percentile(h, NAN), 1);
        assert_int_equal(bench_hist_percentile(h, 250), BENCH_HIST_MAX_USEC);
        bench_hist_free(h);
}

/* Every range, count, and figure of a and b are the same. */
static void assert_same(const bench_hist *a, const bench_hist *b) {
        assert_int_equal(bench_hist_count(a), bench_hist_count(b));
        assert_int_equal(bench_hist_clamped(a), bench_hist_clamped(b));
        assert_int_equal(bench_hist_min(a), bench_hist_min(b));
        assert_int_equal(bench_hist_max(a), bench_hist_max(b));
        assert_true(bench_hist_mean(a) == bench_hist_mean(b));
        assert_true(bench_hist_stdev(a) == bench_hist_stdev(b));
        size_t ia = 0, ib = 0;
        uint64_t la, ha, ca, lb, hb, cb;
        size_t ranges = 0;
        for (;;) {
                bool more = bench_hist_next(a, &ia, &la, &ha, &ca);
                assert_int_equal(more, bench_hist_next(b, &ib, &lb, &hb, &cb));
                if (!more)
                        break;
                assert_int_equal(la, lb);
                assert_int_equal(ha, hb);
                assert_int_equal(ca, cb);
                ranges++;
        }
        for (size_t k = 0; k < N_PCTS; k++)
                assert_int_equal(bench_hist_percentile(a, pcts[k] / 100.0),
                                 bench_hist_percentile(b, pcts[k] / 100.0));
}

static void test_merge(void **s) {
        (void)s;
        bench_hist *all, *h1, *h2, *empty;
        assert_int_equal(bench_hist_new(&all), 0);
        assert_int_equal(bench_hist_new(&h1), 0);
        assert_int_equal(bench_hist_new(&h2), 0);
        assert_int_equal(bench_hist_new(&empty), 0);
        rng_state = 99;
        for (size_t i = 0; i < 100000; i++) {
                /* The halves cover different ranges: h2 holds the tail and the clamped. */
                uint64_t v = i < 50000 ? (uint64_t)llround(-500.0 * log(rng_unit()))
                                       : rng() % (2 * BENCH_HIST_MAX_USEC);
                bench_hist_record(all, v);
                bench_hist_record(i < 50000 ? h1 : h2, v);
        }
        bench_hist_merge(h1, h2);
        assert_same(h1, all);
        assert_true(bench_hist_clamped(all) > 0);

        /* An empty one changes nothing; merged into an empty one, a copy. */
        bench_hist_merge(h1, empty);
        assert_same(h1, all);
        bench_hist_merge(empty, all);
        assert_same(empty, all);

        /* Into itself: every count doubles. */
        bench_hist *twice;
        assert_int_equal(bench_hist_new(&twice), 0);
        bench_hist_merge(twice, all);
        bench_hist_merge(twice, all);
        bench_hist_merge(all, all);
        assert_same(all, twice);

        bench_hist_free(all);
        bench_hist_free(h1);
        bench_hist_free(h2);
        bench_hist_free(empty);
        bench_hist_free(twice);
}

static void test_reset_and_empty(void **s) {
        (void)s;
        bench_hist *h, *fresh;
        assert_int_equal(bench_hist_new(&h), 0);
        assert_int_equal(bench_hist_new(&fresh), 0);
        for (uint64_t v = 1; v < 5000000; v = v * 3 + 1)
                bench_hist_record(h, v);
        bench_hist_record(h, UINT64_MAX);
        bench_hist_reset(h);

        /* Empty: zeros everywhere, nothing to walk or print. */
        assert_int_equal(bench_hist_count(h), 0);
        assert_int_equal(bench_hist_clamped(h), 0);
        assert_int_equal(bench_hist_min(h), 0);
        assert_int_equal(bench_hist_max(h), 0);
        assert_true(bench_hist_mean(h) == 0);
        assert_true(bench_hist_stdev(h) == 0);
        assert_int_equal(bench_hist_percentile(h, 50), 0);
        size_t it = 0;
        assert_false(bench_hist_next(h, &it, NULL, NULL, NULL));
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        assert_non_null(f);
        bench_hist_print(h, f, 80, true);
        fclose(f);
        assert_int_equal(len, 0);
        free(out);
        assert_same(h, fresh);

        /* And as good as new: no count of before is left anywhere. */
        bench_hist_record(h, 77);
        bench_hist_record(fresh, 77);
        assert_same(h, fresh);
        assert_int_equal(bench_hist_percentile(h, 1), 77);
        bench_hist_record(h, 1);
        bench_hist_record(fresh, 1);
        bench_hist_record(h, BENCH_HIST_MAX_USEC);
        bench_hist_record(fresh, BENCH_HIST_MAX_USEC);
        assert_same(h, fresh);

        /* NULLs are harmless. */
        assert_int_equal(bench_hist_new(NULL), -EINVAL);
        assert_null(bench_hist_free(NULL));
        bench_hist_record(NULL, 1);
        bench_hist_reset(NULL);
        assert_int_equal(bench_hist_count(NULL), 0);
        bench_hist_free(h);
        bench_hist_free(fresh);
}

static void test_record_n(void **s) {
        (void)s;
        bench_hist *a, *b;
        assert_int_equal(bench_hist_new(&a), 0);
        assert_int_equal(bench_hist_new(&b), 0);
        bench_hist_record_n(a, 500, 0); /* nothing, not even a min */
        assert_int_equal(bench_hist_count(a), 0);
        assert_int_equal(bench_hist_min(a), 0);
        uint64_t vals[] = {0, 3, 2048, 99999, 3000000, BENCH_HIST_MAX_USEC + 5};
        for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
                uint64_t times = 1 + i * 37;
                bench_hist_record_n(a, vals[i], times);
                for (uint64_t k = 0; k < times; k++)
                        bench_hist_record(b, vals[i]);
        }
        assert_same(a, b);
        assert_int_equal(bench_hist_clamped(a), 1 + 5 * 37);

        /* A huge n: counts, mean and stdev stay exact (sums are 128-bit integers). */
        bench_hist_reset(a);
        bench_hist_record_n(a, BENCH_HIST_MAX_USEC, UINT64_C(1) << 40);
        bench_hist_record_n(a, BENCH_HIST_MAX_USEC - 1, UINT64_C(1) << 40);
        assert_int_equal(bench_hist_count(a), UINT64_C(1) << 41);
        assert_close(bench_hist_mean(a), BENCH_HIST_MAX_USEC - 0.5L, 1e-15L, "huge n: mean");
        assert_close(bench_hist_stdev(a), 0.5L, 1e-9L, "huge n: stdev");
        bench_hist_free(a);
        bench_hist_free(b);
}

static void test_constant_memory(void **s) {
        (void)s;
        size_t size = bench_hist_memsize();
        /* 23552 counts of 8 bytes and a header. */
        assert_true(size >= 23552 * 8 && size < 23552 * 8 + 256);
        bench_hist *h;
        assert_int_equal(bench_hist_new(&h), 0);
        struct mallinfo2 before = mallinfo2();
        rng_state = 3;
        for (size_t i = 0; i < 300000; i++)
                bench_hist_record(h, rng() >> (rng() % 64));
        bench_hist_record_n(h, 12345, 1000);
        struct mallinfo2 after = mallinfo2();
        /* Recording allocated nothing, whatever the values. */
        assert_int_equal(after.uordblks, before.uordblks);
        assert_int_equal(after.hblkhd, before.hblkhd);
        assert_int_equal(bench_hist_memsize(), size);
        bench_hist_free(h);
}

/* ---- the terminal histogram, parsed back ---- */

static uint64_t parse_usec(const char *p, char **end) {
        double x = strtod(p, end);
        if (strncmp(*end, "us", 2) == 0) {
                *end += 2;
                return (uint64_t)llround(x);
        }
        if (strncmp(*end, "ms", 2) == 0) {
                *end += 2;
                return (uint64_t)llround(x * 1e3);
        }
        assert_true(**end == 's');
        *end += 1;
        return (uint64_t)llround(x * 1e6);
}

typedef struct line {
        uint64_t lo, hi; /* the edges as printed, parsed */
        char lo_text[16], hi_text[16];
        uint64_t units; /* bar length, in eighths (utf8) or characters */
        uint64_t count;
        double share;
        size_t columns;
} line;

static size_t parse_print(const bench_hist *h, unsigned width, bool utf8, line *lines, size_t max) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        assert_non_null(f);
        bench_hist_print(h, f, width, utf8);
        fclose(f);
        size_t n = 0;
        for (char *p = out, *nl; *p; p = nl + 1) {
                nl = strchr(p, '\n');
                assert_non_null(nl);
                *nl = '\0';
                assert_true(n < max);
                line *l = &lines[n++];
                memset(l, 0, sizeof(*l));
                for (const char *c = p; *c; c++)
                        l->columns += ((unsigned char)*c & 0xc0) != 0x80;
                assert_memory_equal(p, "  ", 2);
                char *e;
                const char *start = p + 2;
                while (*start == ' ')
                        start++;
                l->lo = parse_usec(start, &e);
                snprintf(l->lo_text, sizeof(l->lo_text), "%.*s", (int)(e - start), start);
                assert_memory_equal(e, " - ", 3);
                start = e + 3;
                while (*start == ' ')
                        start++;
                l->hi = parse_usec(start, &e);
                snprintf(l->hi_text, sizeof(l->hi_text), "%.*s", (int)(e - start), start);
                assert_memory_equal(e, " | ", 3);
                unsigned char *b = (unsigned char *)e + 3;
                for (;;) {
                        if (!utf8 && *b == '#') {
                                l->units++;
                                b++;
                        } else if (utf8 && b[0] == 0xe2 && b[1] == 0x96 && b[2] >= 0x88 &&
                                   b[2] <= 0x8f) {
                                l->units += 8 - (b[2] - 0x88);
                                b += 3;
                        } else
                                break;
                }
                if (l->units > 0) {
                        assert_int_equal(*b, ' ');
                        b++;
                }
                l->count = strtoull((char *)b, &e, 10);
                assert_memory_equal(e, " (", 2);
                if (strcmp(e, " (<0.1%)") == 0)
                        l->share = -1;
                else {
                        l->share = strtod(e + 2, &e);
                        assert_string_equal(e, "%)");
                }
        }
        free(out);
        return n;
}

static void check_print(const char *name, const uint64_t *values, size_t n, unsigned width,
                        bool utf8, size_t *ret_lines) {
        bench_hist *h;
        assert_int_equal(bench_hist_new(&h), 0);
        for (size_t i = 0; i < n; i++)
                bench_hist_record(h, values[i]);
        line lines[128];
        size_t nl = parse_print(h, width, utf8, lines, 128);
        assert_true(nl >= 1);
        uint64_t min = bench_hist_min(h), max = bench_hist_max(h);

        /* Contiguous lines, the first holding the min and the last the max: the edges are the
         * starts of the histogram's ranges at the round numbers printed. */
        for (size_t i = 0; i + 1 < nl; i++)
                assert_string_equal(lines[i].hi_text, lines[i + 1].lo_text);
        for (size_t i = 0; i < nl; i++) {
                lines[i].lo = bench_hist_lowest_equivalent(lines[i].lo);
                lines[i].hi = bench_hist_lowest_equivalent(lines[i].hi);
                assert_true(lines[i].lo < lines[i].hi);
        }
        assert_true(lines[0].lo <= min && min < lines[0].hi);
        assert_true(lines[nl - 1].lo <= max && max < lines[nl - 1].hi);

        /* Each count is exactly the values between its edges; the shares and the bars follow
         * the counts, the largest bar taking the room the width leaves. */
        uint64_t total = 0, max_count = 0, max_units = 0;
        for (size_t i = 0; i < nl; i++) {
                uint64_t want = 0;
                for (size_t k = 0; k < n; k++) {
                        uint64_t v = clamp_value(values[k]);
                        want += lines[i].lo <= v && v < lines[i].hi;
                }
                if (lines[i].count != want)
                        fail_msg("%s: line %zu (%s - %s): %" PRIu64 ", want %" PRIu64, name, i,
                                 lines[i].lo_text, lines[i].hi_text, lines[i].count, want);
                total += want;
                double share = 100.0 * (double)want / (double)n;
                if (lines[i].share < 0)
                        assert_true(want > 0 && share < 0.05);
                else
                        /* …and a non-empty bucket never reads 0.0%. */
                        assert_true(fabs(lines[i].share - share) <= 0.05 + 1e-9 &&
                                    (lines[i].share > 0) == (want > 0));
                if (want > max_count) {
                        max_count = want;
                        max_units = lines[i].units;
                }
                assert_true(lines[i].columns <= width);
        }
        assert_int_equal(total, n);
        assert_true(max_units >= (utf8 ? 8 : 1) * 10);
        for (size_t i = 0; i < nl; i++) {
                double want = (double)lines[i].count * max_units / max_count;
                if (lines[i].count == 0)
                        assert_int_equal(lines[i].units, 0);
                else if (want < 1)
                        assert_int_equal(lines[i].units, 1);
                else if (fabs((double)lines[i].units - want) > 0.5 + 1e-9)
                        fail_msg("%s: line %zu: bar of %" PRIu64 ", want %.2f", name, i,
                                 lines[i].units, want);
        }
        /* The widest line fills the width exactly. */
        size_t widest = 0;
        for (size_t i = 0; i < nl; i++)
                if (lines[i].columns > widest)
                        widest = lines[i].columns;
        assert_true(widest >= width - 1 && widest <= width);
        *ret_lines = nl;
        bench_hist_free(h);
}

static void test_print(void **s) {
        (void)s;
        size_t n = 100000, nl;
        uint64_t *v = malloc(n * sizeof(*v));
        assert_non_null(v);

        rng_state = 5;
        for (size_t i = 0; i < n; i++)
                v[i] = 20 + (uint64_t)llround(-300.0 * log(rng_unit()));
        v[17] = 1000000; /* a 1 s outlier among ~300 µs: its bar still shows */
        for (size_t i = 100; i < 120; i++)
                v[i] = 50000; /* 0.02%: "<0.1%", not "0.0%" */
        check_print("exponential, utf8", v, n, 80, true, &nl);
        assert_true(nl >= 10); /* 20us .. 1s at 1-2-5 steps */
        check_print("exponential, ascii, 60 columns", v, n, 60, false, &nl);
        check_print("exponential, utf8, 120 columns", v, n, 120, true, &nl);

        /* Round values on the edges of the round numbers, and the clamped. */
        for (size_t i = 0; i < n; i++) {
                static const uint64_t round[] = {0,         1,       2,        5,
                                                 10,        100,     1000,     99999,
                                                 100000,    1000000, 10000000, BENCH_HIST_MAX_USEC,
                                                 UINT64_MAX};
                v[i] = round[rng() % (sizeof(round) / sizeof(round[0]))];
        }
        check_print("round values", v, n, 80, true, &nl);

        /* A narrow spread gets finer steps than 1-2-5. */
        for (size_t i = 0; i < n; i++)
                v[i] = 2000 + rng() % 8000;
        check_print("2ms..10ms", v, n, 80, true, &nl);
        assert_true(nl >= 5);
        for (size_t i = 0; i < n; i++)
                v[i] = 2000 + rng() % 800;
        check_print("2ms..2.8ms", v, n, 80, true, &nl);
        assert_int_equal(nl, 4); /* 2.0, 2.2, 2.4, 2.7, 3.0 */

        /* A single value: one line. */
        check_print("one value", (const uint64_t[]){1234}, 1, 80, true, &nl);
        assert_int_equal(nl, 1);
        free(v);
}

static void test_format(void **s) {
        (void)s;
        static const struct {
                uint64_t usec;
                const char *text;
        } cases[] = {
                {0, "0us"},
                {1, "1us"},
                {812, "812us"},
                {999, "999us"},
                {1000, "1.00ms"},
                {1230, "1.23ms"},
                {1234, "1.23ms"},
                {1235, "1.24ms"},
                {9994, "9.99ms"},
                {9995, "10.0ms"},
                {12345, "12.3ms"},
                {99949, "99.9ms"},
                {99950, "100ms"},
                {123456, "123ms"},
                {999499, "999ms"},
                {999500, "1.00s"},
                {4560000, "4.56s"},
                {59999999, "60.0s"},
                {999499999, "999s"},
                {999500000, "1000s"},
                {BENCH_HIST_MAX_USEC, "3600s"},
                {UINT64_MAX, "18446744073710s"},
        };
        char buf[32];
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                assert_ptr_equal(bench_format_usec(cases[i].usec, buf, sizeof(buf)), buf);
                if (strcmp(buf, cases[i].text) != 0)
                        fail_msg("%" PRIu64 ": \"%s\", want \"%s\"", cases[i].usec, buf,
                                 cases[i].text);
        }
        /* Truncated, always terminated. */
        char small[4];
        assert_string_equal(bench_format_usec(1230, small, sizeof(small)), "1.2");
        assert_null(bench_format_usec(1, NULL, 0));
}

/* Not asserted: the cost of a record, for the report and for noticing a regression by eye. */
static void test_speed(void **s) {
        (void)s;
        size_t n = under_valgrind() ? 1000000 : 10000000;
        enum { TABLE = 1 << 16 };
        uint64_t *table = malloc(TABLE * sizeof(*table));
        assert_non_null(table);
        rng_state = 11;
        for (size_t i = 0; i < TABLE; i++)
                table[i] = (uint64_t)llround(-2000.0 * log(rng_unit()));
        bench_hist *h;
        assert_int_equal(bench_hist_new(&h), 0);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (size_t i = 0; i < n; i++)
                bench_hist_record(h, table[i & (TABLE - 1)]);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (double)n;
        clock_gettime(CLOCK_MONOTONIC, &a);
        uint64_t sink = 0;
        for (int k = 0; k < 1000; k++)
                sink += bench_hist_percentile(h, 99.9);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double pct_us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1000 / 1e3;
        print_message("speed: %.2f ns per record over %zu records; %.2f us per percentile "
                      "(p99.9 = %" PRIu64 ")\n",
                      ns, n, pct_us, sink / 1000);
        assert_int_equal(bench_hist_count(h), n);
        bench_hist_free(h);
        free(table);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_uniform),     cmocka_unit_test(test_exponential),
                cmocka_unit_test(test_log_uniform), cmocka_unit_test(test_constant),
                cmocka_unit_test(test_edges),       cmocka_unit_test(test_out_of_range),
                cmocka_unit_test(test_merge),       cmocka_unit_test(test_reset_and_empty),
                cmocka_unit_test(test_record_n),    cmocka_unit_test(test_constant_memory),
                cmocka_unit_test(test_print),       cmocka_unit_test(test_format),
                cmocka_unit_test(test_speed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
