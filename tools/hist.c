/* hist.c: ringload's log-linear latency histogram (see hist.h). Values below 256 us get a bucket
 * each; above, every power of two is split into 128 equal buckets, so a bucket is never wider
 * than 1/128 of its lower bound and its midpoint is within 0.4% of any value in it.
 */
#include "hist.h"

#include <math.h>
#include <string.h>

static unsigned bucket_of(uint64_t v)
{
    unsigned shift;

    if (v > HIST_MAX_US)
        v = HIST_MAX_US;
    if (v < HIST_SUB)
        return (unsigned)v;
    /* v >> shift falls in [128, 256) */
    shift = (unsigned)(63 - __builtin_clzll(v)) - (HIST_SUB_BITS - 1);
    return HIST_SUB + (shift - 1) * HIST_HALF + (unsigned)((v >> shift) - HIST_HALF);
}

/* The midpoint of bucket i (its only value below 256). */
static uint64_t bucket_value(unsigned i)
{
    unsigned shift;
    uint64_t lo;

    if (i < HIST_SUB)
        return i;
    shift = (i - HIST_SUB) / HIST_HALF + 1;
    lo = ((uint64_t)((i - HIST_SUB) % HIST_HALF) + HIST_HALF) << shift;
    return lo + ((1ULL << shift) - 1) / 2;
}

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
}

void hist_record(struct hist *h, uint64_t us)
{
    double d = (double)us;

    h->counts[bucket_of(us)]++;
    if (!h->count || us < h->min)
        h->min = us;
    if (us > h->max)
        h->max = us;
    h->count++;
    h->sum += d;
    h->sumsq += d * d;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    if (!src->count)
        return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    if (!dst->count || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    dst->sumsq += src->sumsq;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
    uint64_t rank, seen = 0, v;
    double r;

    if (!h->count)
        return 0;
    if (p < 0)
        p = 0;
    r = ceil(p / 100.0 * (double)h->count);
    rank = r < 1 ? 1 : (uint64_t)r;
    if (rank >= h->count)
        return h->max;
    if (rank == 1)
        return h->min;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            v = bucket_value(i);
            /* the extremes are known exactly */
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}

double hist_stdev(const struct hist *h)
{
    double m, var;

    if (h->count < 2)
        return 0.0;
    m = hist_mean(h);
    var = h->sumsq / (double)h->count - m * m;
    return var > 0 ? sqrt(var) : 0.0;
}

uint64_t hist_max(const struct hist *h)
{
    return h->max;
}

uint64_t hist_count(const struct hist *h)
{
    return h->count;
}
