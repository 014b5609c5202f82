/* balance.h: picking a backend for a request.
 *
 * Strategies (DESIGN.md "Balancing and health"): round_robin, weighted_rr (smooth, as nginx),
 * least_conn (in-flight counts shared by all workers), ip_hash (rendezvous hashing of the
 * client address, so only a failed backend's clients move) and random. State that rotates
 * is per worker, so picking takes no lock.
 */
#ifndef RP_BALANCE_H
#define RP_BALANCE_H

#include <stdint.h>
#include <sys/socket.h>

#include "../engine/route.h"

struct bal_state {
    uint32_t rr;  /* rotation position */
    int32_t *cur; /* smooth WRR current weights, one per backend */
};

/* One per worker: state for every target of the route table. */
struct bal_worker {
    struct bal_state *st;
    uint32_t n;
    uint64_t rng;
};

/* Returns 0 or -ENOMEM. `seed` makes workers' random streams differ. */
int bal_worker_init(struct bal_worker *bw, const struct route_table *rt, uint64_t seed);
void bal_worker_fini(struct bal_worker *bw);

/* Picks a healthy backend of t, skipping those whose position bit is set in `exclude`
 * (backends already tried for this request). When every candidate is excluded or down,
 * returns NULL. `client` may be NULL (ip_hash then falls back to rotation). Worker thread. */
struct backend *bal_pick(struct bal_worker *bw, const struct target *t,
                         const struct sockaddr *client, uint64_t exclude);

#endif /* RP_BALANCE_H */
