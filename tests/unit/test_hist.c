/* test_hist.c: unit tests of ringload's latency histogram (tools/hist.c): percentiles of known
 * values within 1%, merging, the extremes (1 us and 1 h), and uniform and exponential samples
 * checked against the exact percentiles of the sorted samples.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <math.h>

#include "hist.h"

static struct hist *new_hist(void)
{
    struct hist *h = malloc(sizeof(*h));

    assert_non_null(h);
    hist_init(h);
    return h;
}

static void assert_within(uint64_t got, uint64_t want, double rel)
{
    double err = fabs((double)got - (double)want);

    if (err > rel * (double)want) {
        print_error("got %llu, want %llu (+-%.2f%%)\n", (unsigned long long)got,
                    (unsigned long long)want, rel * 100);
        fail();
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The exact percentile with hist_percentile's definition: the rank-th smallest value. */
static uint64_t exact_pct(const uint64_t *sorted, size_t n, double p)
{
    double r = ceil(p / 100.0 * (double)n);
    size_t rank = r < 1 ? 1 : (size_t)r;

    return sorted[(rank > n ? n : rank) - 1];
}

static void check_samples(uint64_t *v, size_t n)
{
    static const double ps[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
    struct hist *h = new_hist();
    double sum = 0, sumsq = 0, mean;

    for (size_t i = 0; i < n; i++) {
        hist_record(h, v[i]);
        sum += (double)v[i];
    }
    qsort(v, n, sizeof(*v), cmp_u64);
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
        assert_within(hist_percentile(h, ps[i]), exact_pct(v, n, ps[i]), 0.01);
    mean = sum / (double)n;
    for (size_t i = 0; i < n; i++)
        sumsq += ((double)v[i] - mean) * ((double)v[i] - mean);
    assert_true(fabs(hist_mean(h) - mean) <= mean * 1e-9);
    assert_true(fabs(hist_stdev(h) - sqrt(sumsq / (double)n)) <= sqrt(sumsq / (double)n) * 1e-6);
    assert_int_equal(hist_max(h), v[n - 1]);
    assert_int_equal(hist_count(h), n);
    free(h);
}

static void test_empty(void **state)
{
    struct hist *h = new_hist();

    (void)state;
    assert_int_equal(hist_count(h), 0);
    assert_int_equal(hist_percentile(h, 50), 0);
    assert_int_equal(hist_max(h), 0);
    assert_true(hist_mean(h) == 0.0 && hist_stdev(h) == 0.0);
    free(h);
}

static void test_known_values(void **state)
{
    struct hist *h = new_hist();

    (void)state;
    /* 1..100 ms in 1 ms steps: p50 = 50 ms, p90 = 90 ms, p99 = 99 ms */
    for (uint64_t i = 1; i <= 100; i++)
        hist_record(h, i * 1000);
    assert_within(hist_percentile(h, 50), 50000, 0.01);
    assert_within(hist_percentile(h, 75), 75000, 0.01);
    assert_within(hist_percentile(h, 90), 90000, 0.01);
    assert_within(hist_percentile(h, 99), 99000, 0.01);
    assert_int_equal(hist_percentile(h, 100), 100000);
    assert_int_equal(hist_percentile(h, 0), 1000);
    assert_true(fabs(hist_mean(h) - 50500) < 1e-6);
    assert_true(fabs(hist_stdev(h) - 28866.07) < 0.1);
    assert_int_equal(hist_max(h), 100000);
    free(h);
}

static void test_small_values_exact(void **state)
{
    struct hist *h = new_hist();

    (void)state;
    for (uint64_t i = 0; i < 200; i++)
        hist_record(h, i);
    assert_int_equal(hist_percentile(h, 50), 99);
    assert_int_equal(hist_percentile(h, 100), 199);
    assert_int_equal(hist_percentile(h, 0.5), 0);
    free(h);
}

static void test_every_value_within_1pct(void **state)
{
    (void)state;
    /* each value alone: its percentiles are itself, within 1% */
    for (uint64_t v = 1; v < 3600000000ULL; v = v * 1.013 + 1) {
        struct hist *h = new_hist();

        hist_record(h, v);
        hist_record(h, v); /* min == max would make the clamp hide bucket errors */
        hist_record(h, 1);
        hist_record(h, 3600000000ULL);
        assert_within(hist_percentile(h, 50), v, 0.01);
        assert_within(hist_percentile(h, 75), v, 0.01);
        free(h);
    }
}

static void test_extremes(void **state)
{
    struct hist *h = new_hist();

    (void)state;
    hist_record(h, 1);
    hist_record(h, 3600000000ULL); /* 1 h */
    assert_int_equal(hist_percentile(h, 50), 1);
    assert_int_equal(hist_percentile(h, 100), 3600000000ULL);
    assert_int_equal(hist_max(h), 3600000000ULL);
    /* beyond 1 h: clamped into the top bucket, max stays exact */
    hist_record(h, 10 * 3600000000ULL);
    assert_int_equal(hist_max(h), 10 * 3600000000ULL);
    assert_within(hist_percentile(h, 60), 3600000000ULL, 0.01);
    assert_int_equal(hist_count(h), 3);
    free(h);
}

static void test_merge(void **state)
{
    struct hist *a = new_hist(), *b = new_hist(), *all = new_hist();

    (void)state;
    for (uint64_t i = 1; i <= 5000; i++) {
        hist_record(i % 3 ? a : b, i * 7);
        hist_record(all, i * 7);
    }
    hist_merge(a, b);
    assert_int_equal(hist_count(a), 5000);
    assert_int_equal(hist_max(a), 35000);
    for (double p = 0; p <= 100; p += 2.5)
        assert_int_equal(hist_percentile(a, p), hist_percentile(all, p));
    assert_true(fabs(hist_mean(a) - hist_mean(all)) < 1e-6);
    assert_true(fabs(hist_stdev(a) - hist_stdev(all)) < 1e-6);
    /* merging an empty histogram changes nothing, and into an empty one copies */
    hist_init(b);
    hist_merge(a, b);
    assert_int_equal(hist_count(a), 5000);
    hist_merge(b, a);
    assert_int_equal(hist_percentile(b, 50), hist_percentile(all, 50));
    assert_int_equal(hist_percentile(b, 0), 7);
    free(a);
    free(b);
    free(all);
}

static uint64_t rnd(uint64_t *s)
{
    /* xorshift64*: reproducible without libc's rand() */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static void test_uniform(void **state)
{
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof(*v)), s = 42;

    (void)state;
    assert_non_null(v);
    for (size_t i = 0; i < N; i++)
        v[i] = 1 + rnd(&s) % 1000000; /* 1 us .. 1 s */
    check_samples(v, N);
    free(v);
}

static void test_exponential(void **state)
{
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof(*v)), s = 7;

    (void)state;
    assert_non_null(v);
    for (size_t i = 0; i < N; i++) {
        double u = ((double)(rnd(&s) >> 11) + 0.5) / 9007199254740992.0;

        v[i] = 1 + (uint64_t)(-log(u) * 2000.0); /* mean 2 ms, long tail */
    }
    check_samples(v, N);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_every_value_within_1pct),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_exponential),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
