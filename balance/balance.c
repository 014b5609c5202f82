/* balance.c: the six strategies of balance.h. Per-target tables (weights summed, backend
 * address hashes) are built once per worker at start-up; a pick draws or rotates in O(1) when
 * the chosen backend is usable and walks the backends only when it must (least_conn, ip_hash,
 * or when a draw lands on a down or excluded backend). No libm: exp and ln are local.
 */
#include "balance.h"

#include <errno.h>
#include <float.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define LN2 0.69314718055994530942
#define UNSAMPLED_PENALTY 1e15 /* ns: a backend with no sample and a request in flight */

/* ---- arithmetic ---- */

static double from_bits(uint64_t b)
{
    double d;

    memcpy(&d, &b, sizeof(d));
    return d;
}

static uint64_t to_bits(double d)
{
    uint64_t b;

    memcpy(&b, &d, sizeof(b));
    return b;
}

/* e^-x for x >= 0, relative error below 1e-13: x = k ln2 + r, |r| <= ln2/2, then e^-r by its
 * Taylor series to r^12 (coefficients (-1)^i / i!) */
static double exp_neg(double x)
{
    static const double c[13] = {1.0,
                                 -1.0,
                                 1.0 / 2,
                                 -1.0 / 6,
                                 1.0 / 24,
                                 -1.0 / 120,
                                 1.0 / 720,
                                 -1.0 / 5040,
                                 1.0 / 40320,
                                 -1.0 / 362880,
                                 1.0 / 3628800,
                                 -1.0 / 39916800,
                                 1.0 / 479001600};
    double k, r, p = c[12];
    int ki;

    if (x <= 0.0)
        return 1.0;
    if (x >= 700.0)
        return 0.0;
    k = (double)(int)(x / LN2 + 0.5);
    r = x - k * LN2;
    for (int i = 11; i >= 0; i--)
        p = p * r + c[i];
    ki = (int)k;
    return p * from_bits((uint64_t)(1023 - ki) << 52);
}

/* -ln(u) for u in (0,1) normal: u = m 2^e with m in [sqrt(1/2), sqrt(2)), then the atanh
 * series of ln m in s = (m-1)/(m+1), |s| < 0.172, to s^17 (error below 1e-14) */
static double neg_ln(double u)
{
    static const double inv_odd[9] = {1.0,      1.0 / 3,  1.0 / 5,  1.0 / 7, 1.0 / 9,
                                      1.0 / 11, 1.0 / 13, 1.0 / 15, 1.0 / 17};
    uint64_t b = to_bits(u);
    int e = (int)((b >> 52) & 0x7ff) - 1023;
    double m = from_bits((b & 0xfffffffffffffull) | 0x3ff0000000000000ull), s, s2, p = 0.0;

    if (m > 1.41421356237309504880) {
        m *= 0.5;
        e++;
    }
    s = (m - 1.0) / (m + 1.0);
    s2 = s * s;
    for (int i = 8; i >= 0; i--)
        p = inv_odd[i] + s2 * p;
    return -(e * LN2 + 2.0 * s * p);
}

static uint64_t next_rand(struct bal_worker *bw)
{
    /* xorshift64*: fast, per worker; callers use the high bits, which are the good ones */
    uint64_t x = bw->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    bw->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* uniform in [0, n), n <= 2^32 (Lemire's multiply-shift; bias below n / 2^32) */
static uint32_t below(struct bal_worker *bw, uint32_t n)
{
    return (uint32_t)(((next_rand(bw) >> 32) * n) >> 32);
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* ---- addresses: IPv4-mapped IPv6 reads as IPv4, so dual-stack listeners agree ---- */

static const uint8_t *addr_bytes(const struct sockaddr *sa, size_t *len, uint16_t *port)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        *len = 4;
        *port = in->sin_port;
        return (const uint8_t *)&in->sin_addr;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *a = (const uint8_t *)&in6->sin6_addr;
        bool v4 = !memcmp(a, mapped, sizeof(mapped));
        *len = v4 ? 4 : 16;
        *port = in6->sin6_port;
        return v4 ? a + 12 : a;
    }
    *len = 0;
    *port = 0;
    return NULL;
}

static uint64_t client_hash(const struct sockaddr *sa)
{
    size_t len;
    uint16_t port;
    const uint8_t *a = addr_bytes(sa, &len, &port);

    return a ? XXH3_64bits_withSeed(a, len, len) : 0;
}

/* The backend's identity is its address and port, not its position in the config. */
static uint64_t backend_key(const struct backend *be)
{
    uint8_t buf[18] = {0};
    size_t len;
    uint16_t port;
    const uint8_t *a = addr_bytes((const struct sockaddr *)&be->sa, &len, &port);

    memcpy(buf, &port, sizeof(port));
    if (a)
        memcpy(buf + 2, a, len);
    return XXH3_64bits(buf, 2 + len);
}

/* ---- per-worker tables ---- */

static void wrr_step_all(struct bal_state *st, const struct target *t);

/* Vose's alias method in integers: every column holds `total` units, column i keeps thr[i]
 * of them for backend i and lends the rest to alias[i], so a uniform column and a uniform
 * unit give backend i exactly weight[i] * n of the n * total units. thr[] starts as each
 * backend's units still unplaced; a backend's value is final once it joins the small list. */
static int alias_init(struct bal_state *st, const struct target *t)
{
    uint32_t n = t->n_backends, ns = 0, nl = 0;
    uint32_t *work = malloc(n * sizeof(*work)); /* small list from the front, large from back */

    if (!work)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        st->thr[i] = (uint32_t)t->backends[i]->weight * n;
        st->alias[i] = i;
        if (st->thr[i] < st->total)
            work[ns++] = i;
        else
            work[n - ++nl] = i;
    }
    while (ns && nl) {
        uint32_t s = work[--ns], l = work[n - nl];
        st->alias[s] = l;
        st->thr[l] -= st->total - st->thr[s];
        if (st->thr[l] < st->total) {
            nl--;
            work[ns++] = l;
        }
    }
    while (nl) /* full columns; in integers nothing is left on the small list */
        st->thr[work[n - nl--]] = st->total;
    free(work);
    return 0;
}

static int state_init(struct bal_state *st, const struct target *t, uint64_t seed)
{
    uint32_t n = t->n_backends, w0 = n ? (uint32_t)t->backends[0]->weight : 0;
    char *mem = calloc(n ? n : 1, sizeof(*st->key) + sizeof(*st->cur) + 2 * sizeof(*st->thr));

    if (!mem)
        return -ENOMEM;
    st->wgen = atomic_load_explicit(&t->wgen, memory_order_acquire);
    st->uid = t->uid;
    st->key = (uint64_t *)mem;
    st->cur = (int32_t *)(st->key + n);
    st->thr = (uint32_t *)(st->cur + n);
    st->alias = st->thr + n;
    st->same_weight = true;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t w = (uint32_t)t->backends[i]->weight;
        st->key[i] = backend_key(t->backends[i]);
        st->total += w;
        st->same_weight &= w == w0;
    }
    if (!n)
        return 0;
    if (alias_init(st, t))
        return -ENOMEM; /* mem is freed by bal_worker_fini, through st->key */
    /* start workers at different points of the cycles so they do not move in lockstep */
    st->rr = (uint32_t)(seed % n);
    for (uint64_t k = seed % st->total; k > 0; k--)
        wrr_step_all(st, t);
    return 0;
}

int bal_worker_init(struct bal_worker *bw, const struct route_table *rt, uint32_t cap,
                    uint64_t seed)
{
    memset(bw, 0, sizeof(*bw));
    bw->rng = splitmix64(seed) | 1; /* xorshift must not start at 0 */
    bw->n = cap > rt->n_targets ? cap : rt->n_targets;
    bw->st = calloc(bw->n ? bw->n : 1, sizeof(*bw->st));
    if (!bw->st)
        return -ENOMEM;
    for (uint32_t i = 0; i < route_count(rt); i++) {
        struct target *t = route_target(rt, i);
        if (state_init(&bw->st[t->index], t, seed)) {
            bal_worker_fini(bw);
            return -ENOMEM;
        }
    }
    return 0;
}

void bal_worker_fini(struct bal_worker *bw)
{
    for (uint32_t i = 0; bw->st && i < bw->n; i++)
        free(bw->st[i].key);
    free(bw->st);
    memset(bw, 0, sizeof(*bw));
}

/* ---- strategies ---- */

static bool usable(const struct target *t, uint32_t i, uint64_t exclude)
{
    if (i < 64 && (exclude >> i) & 1)
        return false;
    return atomic_load_explicit(&t->backends[i]->healthy, memory_order_relaxed) &&
           !atomic_load_explicit(&t->backends[i]->drained, memory_order_relaxed);
}

/* A weight changed at run time (the admin API): this worker's tables for t are built again.
 * Out of memory, the old ones stay (and the next pick tries again). */
static void state_rebuild(struct bal_state *st, const struct target *t, uint64_t seed)
{
    struct bal_state fresh = {0};

    if (state_init(&fresh, t, seed)) {
        free(fresh.key);
        return;
    }
    free(st->key);
    *st = fresh;
}

static struct backend *pick_rr(struct bal_state *st, const struct target *t, uint64_t ex)
{
    uint32_t n = t->n_backends, i = st->rr;

    for (uint32_t k = 0; k < n; k++, i = i + 1 == n ? 0 : i + 1)
        if (usable(t, i, ex)) {
            st->rr = i + 1 == n ? 0 : i + 1;
            return t->backends[i];
        }
    return NULL;
}

/* nginx's ngx_http_upstream_get_peer: raise every candidate by its weight, take the highest
 * (the first on ties), lower it by the candidates' total. */
static struct backend *pick_wrr(struct bal_state *st, const struct target *t, uint64_t ex)
{
    int32_t total = 0;
    int best = -1;

    for (uint32_t i = 0; i < t->n_backends; i++) {
        if (!usable(t, i, ex))
            continue;
        st->cur[i] += t->backends[i]->weight;
        total += t->backends[i]->weight;
        if (best < 0 || st->cur[i] > st->cur[best])
            best = (int)i;
    }
    if (best < 0)
        return NULL;
    st->cur[best] -= total;
    return t->backends[best];
}

/* the same step with every backend a candidate: start-up only */
static void wrr_step_all(struct bal_state *st, const struct target *t)
{
    uint32_t best = 0;

    for (uint32_t i = 0; i < t->n_backends; i++) {
        st->cur[i] += t->backends[i]->weight;
        if (st->cur[i] > st->cur[best])
            best = i;
    }
    st->cur[best] -= (int32_t)st->total;
}

static struct backend *pick_least(struct bal_state *st, const struct target *t, uint64_t ex)
{
    uint32_t n = t->n_backends, i = st->rr, best = n;
    uint64_t best_inf = 0, best_w = 1;

    for (uint32_t k = 0; k < n; k++, i = i + 1 == n ? 0 : i + 1) {
        uint64_t inf, w = (uint64_t)t->backends[i]->weight;
        if (!usable(t, i, ex))
            continue;
        inf = atomic_load_explicit(&t->backends[i]->inflight, memory_order_relaxed);
        /* inf / w < best_inf / best_w, exactly; the first minimum after the last pick wins */
        if (best == n || inf * best_w < best_inf * w) {
            best = i;
            best_inf = inf;
            best_w = w;
        }
    }
    if (best == n)
        return NULL;
    st->rr = best + 1 == n ? 0 : best + 1;
    return t->backends[best];
}

/* Rendezvous hashing with equal weights: the highest hash(client, backend) wins. */
static struct backend *pick_hash_equal(const struct bal_state *st, const struct target *t,
                                       uint64_t h, uint64_t ex)
{
    uint64_t best_h = 0;
    int best = -1;

    for (uint32_t i = 0; i < t->n_backends; i++) {
        uint64_t hi;
        if (!usable(t, i, ex))
            continue;
        hi = splitmix64(h ^ st->key[i]) >> 11; /* the bits that make u below */
        if (best < 0 || hi > best_h) {
            best = (int)i;
            best_h = hi;
        }
    }
    return best < 0 ? NULL : t->backends[best];
}

/* Weighted: the lowest -ln(u) / weight (the highest -weight / ln(u)) wins. -ln(u) >= 1 - u,
 * so a backend whose 1 - u already loses (with a margin for rounding) needs no logarithm;
 * max() makes the bound hold for the computed value too, so pruning never changes the
 * winner and the order of the backends does not matter. */
static struct backend *pick_hash_weighted(const struct bal_state *st, const struct target *t,
                                          uint64_t h, uint64_t ex)
{
    double best_d = DBL_MAX;
    int best = -1;

    for (uint32_t i = 0; i < t->n_backends; i++) {
        double w = t->backends[i]->weight, u, lower, d;
        if (!usable(t, i, ex))
            continue;
        u = ((double)(int64_t)(splitmix64(h ^ st->key[i]) >> 11) + 0.5) * 0x1p-53;
        lower = 1.0 - u;
        if (lower > best_d * w * (1.0 + 1e-9))
            continue;
        d = neg_ln(u);
        d = (d > lower ? d : lower) / w;
        if (d < best_d) {
            best = (int)i;
            best_d = d;
        }
    }
    return best < 0 ? NULL : t->backends[best];
}

static struct backend *pick_hash(const struct bal_state *st, const struct target *t,
                                 const struct sockaddr *client, uint64_t ex)
{
    uint64_t h = client_hash(client);

    return st->same_weight ? pick_hash_equal(st, t, h, ex) : pick_hash_weighted(st, t, h, ex);
}

static struct backend *pick_random_scan(struct bal_worker *bw, const struct target *t, uint64_t ex)
{
    uint32_t total = 0, r;

    for (uint32_t i = 0; i < t->n_backends; i++)
        if (usable(t, i, ex))
            total += (uint32_t)t->backends[i]->weight;
    if (!total)
        return NULL;
    r = below(bw, total);
    for (uint32_t i = 0; i < t->n_backends; i++) {
        if (!usable(t, i, ex))
            continue;
        if (r < (uint32_t)t->backends[i]->weight)
            return t->backends[i];
        r -= (uint32_t)t->backends[i]->weight;
    }
    return NULL;
}

/* One draw over all backends; when it lands on an unusable one, a draw over the usable ones.
 * Both are weight-proportional over the usable set, so their mixture is too. */
static struct backend *pick_random(struct bal_worker *bw, struct bal_state *st,
                                   const struct target *t, uint64_t ex)
{
    uint32_t i = below(bw, t->n_backends);

    if (!st->same_weight && below(bw, st->total) >= st->thr[i])
        i = st->alias[i];
    if (usable(t, i, ex))
        return t->backends[i];
    return pick_random_scan(bw, t, ex);
}

/* The position of the k-th usable backend; n when there are not that many. */
static uint32_t nth_usable(const struct target *t, uint64_t ex, uint32_t k)
{
    uint32_t i = 0;

    for (; i < t->n_backends; i++)
        if (usable(t, i, ex) && k-- == 0)
            break;
    return i;
}

static uint32_t count_usable(const struct target *t, uint64_t ex)
{
    uint32_t m = 0;

    for (uint32_t i = 0; i < t->n_backends; i++)
        m += usable(t, i, ex);
    return m;
}

/* Two distinct positions drawn uniformly among the usable backends (equal when only one is).
 * Returns false when none is usable. */
static bool draw_two(struct bal_worker *bw, const struct target *t, uint64_t ex, uint32_t *a,
                     uint32_t *b)
{
    uint32_t n = t->n_backends, m;

    *a = below(bw, n);
    *b = below(bw, n - 1);
    *b += *b >= *a;
    if (usable(t, *a, ex) && usable(t, *b, ex))
        return true;
    m = count_usable(t, ex);
    if (!m)
        return false;
    *a = below(bw, m);
    *b = m > 1 ? below(bw, m - 1) : *a;
    *b += m > 1 && *b >= *a;
    *a = nth_usable(t, ex, *a);
    *b = nth_usable(t, ex, *b);
    return true;
}

/* Finagle's PeakEwma cost without its decay: the average times the requests the backend
 * would have, per unit of weight. *stamp is 0 for a backend with no sample, which scores 0
 * while idle and behind every sampled backend while its first request is out. */
static double latency_cost(const struct backend *be, uint64_t *stamp)
{
    uint32_t inflight = atomic_load_explicit(&be->inflight, memory_order_relaxed);

    *stamp = atomic_load_explicit(&be->lat_stamp, memory_order_relaxed);
    if (!*stamp)
        return inflight ? UNSAMPLED_PENALTY + inflight : 0.0;
    return from_bits(atomic_load_explicit(&be->lat_ewma, memory_order_relaxed)) * (inflight + 1.0) /
           be->weight;
}

/* Whether b scores lower than a now. Both decay by exp(-(now - stamp) / tau): only the older
 * one's extra decay, over the gap between the stamps, changes the order. */
static bool latency_less(const struct backend *b, const struct backend *a)
{
    uint64_t sa, sb;
    double ca = latency_cost(a, &sa), cb = latency_cost(b, &sb);

    if (sa && sb && sa < sb)
        ca *= exp_neg((double)(sb - sa) / BAL_LATENCY_TAU_NS);
    else if (sa && sb && sb < sa)
        cb *= exp_neg((double)(sa - sb) / BAL_LATENCY_TAU_NS);
    return cb < ca;
}

static struct backend *pick_latency(struct bal_worker *bw, const struct target *t, uint64_t ex)
{
    uint32_t a, b;

    if (t->n_backends == 1)
        return usable(t, 0, ex) ? t->backends[0] : NULL;
    if (!draw_two(bw, t, ex, &a, &b))
        return NULL;
    return latency_less(t->backends[b], t->backends[a]) ? t->backends[b] : t->backends[a];
}

struct backend *bal_pick(struct bal_worker *bw, const struct target *t,
                         const struct sockaddr *client, uint64_t exclude)
{
    struct bal_state *st = &bw->st[t->index];

    if (!t->n_backends)
        return NULL;
    /* a weight changed, or a reload gave the index to another target (requests that began
     * on the older snapshot and ones on the newer may alternate for a while: each rebuilds) */
    if (st->uid != t->uid || st->wgen != atomic_load_explicit(&t->wgen, memory_order_relaxed))
        state_rebuild(st, t, bw->rng);
    if (st->uid != t->uid) { /* out of memory: no tables for t, only its order */
        for (uint32_t i = 0; i < t->n_backends; i++)
            if (usable(t, i, exclude))
                return t->backends[i];
        return NULL;
    }
    switch (t->lb) {
    case RP_LB_WEIGHTED_RR:
        return pick_wrr(st, t, exclude);
    case RP_LB_LEAST_CONN:
        return pick_least(st, t, exclude);
    case RP_LB_IP_HASH:
        return client ? pick_hash(st, t, client, exclude) : pick_rr(st, t, exclude);
    case RP_LB_RANDOM:
        return pick_random(bw, st, t, exclude);
    case RP_LB_LEAST_LATENCY:
        return pick_latency(bw, t, exclude);
    case RP_LB_ROUND_ROBIN:
    default:
        return pick_rr(st, t, exclude);
    }
}

void bal_observe(struct backend *be, uint64_t now_ns, uint64_t rtt_ns)
{
    /* the exchange hands each concurrent observer its own slice of elapsed time */
    uint64_t prev = atomic_exchange_explicit(&be->lat_stamp, now_ns + 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&be->lat_ewma, memory_order_relaxed), next;
    double rtt = (double)rtt_ns, w = 1.0;

    if (prev && now_ns + 1 > prev)
        w = exp_neg((double)(now_ns + 1 - prev) / BAL_LATENCY_TAU_NS);
    do {
        double cur = from_bits(old);
        next = to_bits(!prev || rtt > cur ? rtt : cur * w + rtt * (1.0 - w));
    } while (!atomic_compare_exchange_weak_explicit(&be->lat_ewma, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}
