/* bench_cache.c: eviction quality and lookup cost of cache/store.c. Replays a Zipf key trace
 * (100k keys, a cache holding 10% of them) with a one-time sequential scan of cold keys in the
 * middle, through the real store (per-shard SIEVE) and through a plain LRU simulated here, and
 * prints both hit ratios; then times lookup hits. Runs in a few seconds.
 * Usage: bench_cache [zipf_s (0.95)] [requests (1000000)]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"

#define NKEYS 100000u
#define CAPACITY (NKEYS / 10)
#define SCAN_KEYS NKEYS /* cold keys, each requested once */

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- plain LRU over integer keys ------------------------------------------------------------ */

struct lru {
    int32_t *prev, *next; /* per key; -1 ends */
    uint8_t *in;
    int32_t head, tail;
    uint32_t n, cap;
};

static void lru_init(struct lru *l, uint32_t nkeys, uint32_t cap)
{
    l->prev = malloc(nkeys * sizeof(int32_t));
    l->next = malloc(nkeys * sizeof(int32_t));
    l->in = calloc(nkeys, 1);
    l->head = l->tail = -1;
    l->n = 0;
    l->cap = cap;
}

static void lru_unlink(struct lru *l, int32_t k)
{
    if (l->prev[k] >= 0)
        l->next[l->prev[k]] = l->next[k];
    else
        l->head = l->next[k];
    if (l->next[k] >= 0)
        l->prev[l->next[k]] = l->prev[k];
    else
        l->tail = l->prev[k];
}

static void lru_push(struct lru *l, int32_t k)
{
    l->prev[k] = -1;
    l->next[k] = l->head;
    if (l->head >= 0)
        l->prev[l->head] = k;
    l->head = k;
    if (l->tail < 0)
        l->tail = k;
}

/* Returns whether k was a hit; inserts it on a miss. */
static int lru_access(struct lru *l, int32_t k)
{
    if (l->in[k]) {
        lru_unlink(l, k);
        lru_push(l, k);
        return 1;
    }
    if (l->n == l->cap) {
        int32_t v = l->tail;
        lru_unlink(l, v);
        l->in[v] = 0;
        l->n--;
    }
    lru_push(l, k);
    l->in[k] = 1;
    l->n++;
    return 0;
}

/* ---- the real store ------------------------------------------------------------------------- */

struct real {
    struct cache *c;
    struct cache_resp_meta rm;
    struct cache_req_meta qm;
    struct cache_verdict v;
    struct cache_field rf[1];
};

static int key_path(char *p, size_t cap, uint32_t k)
{
    return snprintf(p, cap, "/obj/%u", k);
}

static int real_access(struct real *r, uint32_t k)
{
    char p[32];
    int n = key_path(p, sizeof(p), k);
    struct cache_req q = {CACHE_M_GET, "bench.test", 10, p, (uint32_t)n, &r->qm};
    struct cache_decision d;
    const struct cache_entry *e = cache_lookup(r->c, &q, 1000, &d);
    if (e) {
        cache_entry_unref(e);
        return 1;
    }
    struct cache_entry_params ep = {.method_bit = CACHE_M_GET,
                                    .host = "bench.test",
                                    .host_len = 10,
                                    .path = p,
                                    .path_len = (uint32_t)n,
                                    .status = 200,
                                    .resp_fields = r->rf,
                                    .n_resp_fields = 1,
                                    .meta = &r->rm,
                                    .verdict = &r->v,
                                    .request_ms = 1000,
                                    .response_ms = 1000};
    struct cache_builder *b = cache_entry_new(r->c, &ep);
    if (b && cache_entry_append(b, "0123456789abcdef", 16) == 0)
        cache_insert(r->c, b, NULL);
    else
        cache_entry_abort(b);
    return 0;
}

/* ---- trace ---------------------------------------------------------------------------------- */

static double *zipf_cdf(double s)
{
    double *cdf = malloc(NKEYS * sizeof(double)), sum = 0;
    for (uint32_t i = 0; i < NKEYS; i++)
        cdf[i] = (sum += 1.0 / pow((double)(i + 1), s));
    for (uint32_t i = 0; i < NKEYS; i++)
        cdf[i] /= sum;
    return cdf;
}

static uint32_t zipf_draw(const double *cdf)
{
    double u = (double)(next_rand() >> 11) / 9007199254740992.0;
    uint32_t lo = 0, hi = NKEYS - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int main(int argc, char **argv)
{
    double s = argc > 1 ? atof(argv[1]) : 0.95;
    uint32_t nreq = argc > 2 ? (uint32_t)atol(argv[2]) : 1000000u;
    double *cdf = zipf_cdf(s);
    uint32_t *trace = malloc(nreq * sizeof(uint32_t));
    for (uint32_t i = 0; i < nreq; i++)
        trace[i] = zipf_draw(cdf);

    struct cache_config cfg = {.max_entries = CAPACITY, .max_total_bytes = 1ull << 30};
    struct real r = {.c = cache_new(&cfg)};
    r.rf[0] = (struct cache_field){"Cache-Control", "max-age=3600", 13, 12};
    cache_resp_meta_parse(&r.rm, 200, r.rf, 1);
    cache_req_meta_parse(&r.qm, CACHE_M_GET, NULL, 0);
    r.v = (struct cache_verdict){
        .lifetime_ms = 3600000, .explicit_fresh = true, .max_bytes = 1 << 20};
    struct lru l;
    lru_init(&l, NKEYS + SCAN_KEYS, CAPACITY);

    /* phases: warm-up (first 10%, not counted), before the scan, the scan, after it */
    uint64_t hit_s[3] = {0}, hit_l[3] = {0}, cnt[3] = {0};
    uint32_t warm = nreq / 10, mid = nreq / 2;
    double t0 = now_s();
    for (uint32_t i = 0; i < nreq; i++) {
        if (i == mid)
            for (uint32_t k = 0; k < SCAN_KEYS; k++) {
                real_access(&r, NKEYS + k);
                lru_access(&l, (int32_t)(NKEYS + k));
            }
        int ph = i < warm ? -1 : i < mid ? 0 : i < mid + (nreq - mid) / 5 ? 1 : 2;
        int hs = real_access(&r, trace[i]), hl = lru_access(&l, (int32_t)trace[i]);
        if (ph >= 0) {
            hit_s[ph] += (uint64_t)hs;
            hit_l[ph] += (uint64_t)hl;
            cnt[ph]++;
        }
    }
    double t1 = now_s();
    uint64_t ts = hit_s[0] + hit_s[1] + hit_s[2], tl = hit_l[0] + hit_l[1] + hit_l[2];
    uint64_t tc = cnt[0] + cnt[1] + cnt[2];
    printf("Zipf s=%.2f, %u keys, cache %u entries (10%%), %u requests + %u-key cold scan at the "
           "middle\n",
           s, NKEYS, CAPACITY, nreq, SCAN_KEYS);
    printf("%-26s %10s %10s\n", "hit ratio", "SIEVE", "LRU");
    printf("%-26s %9.2f%% %9.2f%%\n", "before the scan", 100.0 * hit_s[0] / cnt[0],
           100.0 * hit_l[0] / cnt[0]);
    printf("%-26s %9.2f%% %9.2f%%\n", "first 10% after the scan", 100.0 * hit_s[1] / cnt[1],
           100.0 * hit_l[1] / cnt[1]);
    printf("%-26s %9.2f%% %9.2f%%\n", "rest after the scan", 100.0 * hit_s[2] / cnt[2],
           100.0 * hit_l[2] / cnt[2]);
    printf("%-26s %9.2f%% %9.2f%%\n", "overall (after warm-up)", 100.0 * ts / tc, 100.0 * tl / tc);
    printf("trace replay through the store: %.2f s (misses insert)\n", t1 - t0);

    /* lookup cost: hits only, single thread, the warmed cache */
    char(*paths)[32] = malloc(4096 * sizeof(*paths));
    uint32_t np = 0;
    for (uint32_t k = 0; k < NKEYS && np < 4096; k++) {
        int n = key_path(paths[np], sizeof(paths[np]), k);
        struct cache_req q = {CACHE_M_GET, "bench.test", 10, paths[np], (uint32_t)n, &r.qm};
        struct cache_decision d;
        const struct cache_entry *e = cache_lookup(r.c, &q, 1000, &d);
        if (e) {
            cache_entry_unref(e);
            np++;
        }
    }
    uint64_t hits = 0, iters = 2000000;
    double t2 = now_s();
    for (uint64_t i = 0; i < iters; i++) {
        const char *p = paths[i % np];
        struct cache_req q = {CACHE_M_GET, "bench.test", 10, p, (uint32_t)strlen(p), &r.qm};
        struct cache_decision d;
        const struct cache_entry *e = cache_lookup(r.c, &q, 1000, &d);
        hits += e != NULL;
        cache_entry_unref(e);
    }
    double t3 = now_s();
    printf("lookup hit: %.0f ns (%llu of %llu hit, %u distinct keys, 1 thread, incl. key build "
           "and XXH3)\n",
           (t3 - t2) * 1e9 / (double)iters, (unsigned long long)hits, (unsigned long long)iters,
           np);

    struct cache_stats st;
    cache_get_stats(r.c, &st);
    printf("store: %llu entries, %llu evictions\n", (unsigned long long)st.entries,
           (unsigned long long)st.evictions);
    cache_free(r.c);
    free(paths);
    free(trace);
    free(cdf);
    free(l.prev);
    free(l.next);
    free(l.in);
    return 0;
}
