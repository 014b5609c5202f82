/* hist.h: a log-linear latency histogram for ringload (HdrHistogram's layout, two significant
 * digits). Values are microseconds; every value from 1 us to 1 h lands in a bucket at most 0.8%
 * wide relative to its value, so percentiles carry at most 1% error. Fixed memory, no
 * allocation: one instance per thread, merged into one at the end.
 */
#ifndef RP_HIST_H
#define RP_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 8 /* 256 sub-buckets per power of two */
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_HALF (HIST_SUB / 2)
#define HIST_MAX_US 3600000000ULL                /* 1 h: larger values count as 1 h */
#define HIST_BUCKETS (HIST_SUB + 24 * HIST_HALF) /* 1 h < 2^32 us */

struct hist {
    uint64_t count;
    uint64_t min, max; /* exact, as recorded (before clamping to 1 h) */
    double sum, sumsq;
    uint64_t counts[HIST_BUCKETS];
};

/* Empties a caller-owned histogram. */
void hist_init(struct hist *h);

/* Records one value in microseconds; values over 1 h are counted in the 1 h bucket (max stays
 * exact). Never allocates; not thread-safe (one histogram per thread). */
void hist_record(struct hist *h, uint64_t us);

/* Adds every value of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/* The value at percentile p (0..100): the smallest recorded value v such that at least p% of
 * the values are <= v, within 1%. Returns 0 for an empty histogram. */
uint64_t hist_percentile(const struct hist *h, double p);

/* Exact mean and standard deviation (population) of the recorded values; 0 when empty. */
double hist_mean(const struct hist *h);
double hist_stdev(const struct hist *h);

/* Largest value recorded (exact), and the number of values. */
uint64_t hist_max(const struct hist *h);
uint64_t hist_count(const struct hist *h);

#endif /* RP_HIST_H */
