/* balance.c: the five strategies of balance.h. Each walks the target's backends once per
 * pick (targets have few backends), considering only healthy, not-yet-tried ones. */
#include "balance.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

int bal_worker_init(struct bal_worker *bw, const struct route_table *rt, uint64_t seed)
{
    struct target *const *lists[2] = {rt->domains, rt->routes};
    uint32_t counts[2] = {rt->n_domains, rt->n_routes};

    memset(bw, 0, sizeof(*bw));
    bw->rng = seed * 0x9E3779B97F4A7C15ull + 1;
    bw->n = rt->n_targets;
    bw->st = calloc(bw->n ? bw->n : 1, sizeof(*bw->st));
    if (!bw->st)
        return -ENOMEM;
    for (int l = 0; l < 2; l++)
        for (uint32_t i = 0; i < counts[l]; i++) {
            const struct target *t = lists[l][i];
            bw->st[t->index].cur = calloc(t->n_backends, sizeof(int32_t));
            if (!bw->st[t->index].cur)
                return -ENOMEM;
            /* start workers at different positions so they do not move in lockstep */
            bw->st[t->index].rr = (uint32_t)(seed % (t->n_backends ? t->n_backends : 1));
        }
    return 0;
}

void bal_worker_fini(struct bal_worker *bw)
{
    for (uint32_t i = 0; bw->st && i < bw->n; i++)
        free(bw->st[i].cur);
    free(bw->st);
    memset(bw, 0, sizeof(*bw));
}

static int usable(const struct target *t, uint32_t i, uint64_t exclude)
{
    if (i < 64 && (exclude >> i) & 1)
        return 0;
    return atomic_load_explicit(&t->backends[i]->healthy, memory_order_relaxed);
}

static uint64_t next_rand(struct bal_worker *bw)
{
    /* xorshift64*: fast, per worker, good enough to spread load */
    uint64_t x = bw->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    bw->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static struct backend *pick_rr(struct bal_state *st, const struct target *t, uint64_t ex)
{
    for (uint32_t k = 0; k < t->n_backends; k++) {
        uint32_t i = st->rr++ % t->n_backends;
        if (usable(t, i, ex))
            return t->backends[i];
    }
    return NULL;
}

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

static struct backend *pick_least(struct bal_state *st, const struct target *t, uint64_t ex)
{
    struct backend *best = NULL;
    uint64_t best_score = UINT64_MAX;
    uint32_t start = st->rr++;

    for (uint32_t k = 0; k < t->n_backends; k++) {
        uint32_t i = (start + k) % t->n_backends;
        struct backend *be = t->backends[i];
        uint64_t score;
        if (!usable(t, i, ex))
            continue;
        /* in-flight per unit of weight, scaled to stay integral */
        score = (uint64_t)atomic_load_explicit(&be->inflight, memory_order_relaxed) * 100 /
                (uint64_t)be->weight;
        if (score < best_score) {
            best_score = score;
            best = be;
        }
    }
    return best;
}

static uint64_t addr_hash(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return XXH3_64bits(&((const struct sockaddr_in *)sa)->sin_addr, 4);
    if (sa->sa_family == AF_INET6)
        return XXH3_64bits(&((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    return 0;
}

/* Rendezvous (highest random weight) hashing: each client ranks the backends by
 * hash(client, backend); removing one backend moves only the clients that ranked it first. */
static struct backend *pick_hash(const struct target *t, const struct sockaddr *client,
                                 uint64_t ex)
{
    uint64_t h = addr_hash(client), best_score = 0;
    struct backend *best = NULL;

    for (uint32_t i = 0; i < t->n_backends; i++) {
        uint64_t mix[2] = {h, i}, score;
        if (!usable(t, i, ex))
            continue;
        score = XXH3_64bits(mix, sizeof(mix)); /* weights: issue 5 */
        if (!best || score > best_score) {
            best_score = score;
            best = t->backends[i];
        }
    }
    return best;
}

static struct backend *pick_random(struct bal_worker *bw, const struct target *t, uint64_t ex)
{
    uint32_t total = 0;
    uint64_t r;

    for (uint32_t i = 0; i < t->n_backends; i++)
        if (usable(t, i, ex))
            total += (uint32_t)t->backends[i]->weight;
    if (!total)
        return NULL;
    r = next_rand(bw) % total;
    for (uint32_t i = 0; i < t->n_backends; i++) {
        if (!usable(t, i, ex))
            continue;
        if (r < (uint64_t)t->backends[i]->weight)
            return t->backends[i];
        r -= (uint64_t)t->backends[i]->weight;
    }
    return NULL;
}

struct backend *bal_pick(struct bal_worker *bw, const struct target *t,
                         const struct sockaddr *client, uint64_t exclude)
{
    struct bal_state *st = &bw->st[t->index];

    switch (t->lb) {
    case RP_LB_WEIGHTED_RR:
        return pick_wrr(st, t, exclude);
    case RP_LB_LEAST_CONN:
        return pick_least(st, t, exclude);
    case RP_LB_IP_HASH:
        return client ? pick_hash(t, client, exclude) : pick_rr(st, t, exclude);
    case RP_LB_RANDOM:
        return pick_random(bw, t, exclude);
    case RP_LB_ROUND_ROBIN:
    default:
        return pick_rr(st, t, exclude);
    }
}
