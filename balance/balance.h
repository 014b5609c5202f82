/* balance.h: picking a backend for a request.
 *
 * Six strategies (DESIGN.md "Balancing and health"); see bal_pick for what each guarantees.
 * State that rotates is per worker, so picking takes no lock; what all workers share (health,
 * in-flight counts, the latency average) lives in struct backend as atomics.
 */
#ifndef RP_BALANCE_H
#define RP_BALANCE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../engine/route.h"

/* least_latency: the average decays by e every BAL_LATENCY_TAU_NS without samples. */
#define BAL_LATENCY_TAU_NS 1000000000.0

/* One per target per worker. The arrays are one allocation, owned by the bal_worker. */
struct bal_state {
    uint32_t rr;      /* next position to try: round_robin, least_conn */
    uint32_t total;   /* sum of all weights */
    bool same_weight; /* every backend has the same weight: cheaper random and ip_hash */
    uint64_t *key;    /* ip_hash: hash of each backend's address */
    int32_t *cur;     /* weighted_rr: nginx's current weights */
    uint32_t *thr;    /* random: Walker's alias table, exact in integers: column i keeps i */
    uint32_t *alias;  /* when a draw in [0, total) falls below thr[i], else gives alias[i] */
    uint32_t wgen;    /* the target's wgen these tables were built for */
    uint64_t uid;     /* the target they were built for (its uid: a freed target's address may
                         come back as another's) */
};

/* One per worker: state for every target of the route table. */
struct bal_worker {
    struct bal_state *st;
    uint32_t n;
    uint64_t rng; /* random and least_latency draws */
};

/* Prepares bw for every target of rt, with room for target indexes up to `cap` (a reload's
 * targets; 0: rt's only). A target picked from later gets its tables then (they are rebuilt
 * when the index's target changes). `seed` makes workers' random streams and rotation
 * starts differ; seed 0 starts every rotation at its canonical position. Returns 0 or
 * -ENOMEM (bw then holds nothing). Start-up, any thread. */
int bal_worker_init(struct bal_worker *bw, const struct route_table *rt, uint32_t cap,
                    uint64_t seed);
void bal_worker_fini(struct bal_worker *bw);

/* Picks a healthy backend of t, skipping those whose position bit is set in `exclude`
 * (backends already tried for this request; positions past 63 cannot be excluded). Returns
 * NULL when every backend is excluded or down. Worker thread; takes no lock. `client` may be
 * NULL (ip_hash then rotates). What each strategy guarantees, among the usable backends:
 *
 * round_robin  strict rotation: over k*n picks on one worker each backend gets exactly k.
 * weighted_rr  nginx's smooth weighted round robin: over every sum-of-weights picks each
 *              backend gets exactly its weight, interleaved (5:3:1 gives a b a c a b a b a),
 *              never more than its weight in a row. A down backend's share is spread over
 *              the others in the same proportions.
 * least_conn   fewest in-flight requests (counted over all workers) per unit of weight,
 *              compared exactly (a/wa < b/wb as a*wb < b*wa); ties go by rotation.
 * ip_hash      weighted rendezvous hashing: each backend scores -weight / ln(u), u in (0,1)
 *              from a 64-bit hash of (client address, backend address and port), best score
 *              wins. A client stays on one backend while the set is unchanged; when a backend
 *              goes down only its clients move (each to its second choice, which is also its
 *              retry), and they come back when it returns; config order does not matter;
 *              shares follow weights. IPv4-mapped IPv6 clients hash as IPv4; port ignored.
 * random       independent draws, each backend with probability weight / total weight,
 *              from a per-worker xorshift64* generator (O(1): alias table).
 * least_latency power of two choices: two distinct random backends, the lower of
 *              ewma * (in-flight + 1) / weight wins. ewma is a peak-EWMA of response time
 *              (bal_observe): a slower sample replaces it at once, faster ones blend in with
 *              weight 1 - exp(-dt / tau), and between samples it decays toward 0, so an idle
 *              slow backend gets probed again after about tau * ln(slow / fast score). The
 *              decay is the same for both candidates, so only their stamps' gap enters the
 *              comparison and picking needs no clock. A backend
 *              with no sample scores 0 while idle (new backends are tried first) and is
 *              penalised behind every sampled one while its first request is in flight.
 */
struct backend *bal_pick(struct bal_worker *bw, const struct target *t,
                         const struct sockaddr *client, uint64_t exclude);

/* Feeds least_latency: `rtt_ns` is the time from sending a request to be to its response
 * head, `now_ns` the CLOCK_MONOTONIC time it arrived. Any thread, concurrently for the same
 * backend: atomics, no lock; a sample may be lost to a concurrent one, never torn. */
void bal_observe(struct backend *be, uint64_t now_ns, uint64_t rtt_ns);

#endif /* RP_BALANCE_H */
