/* health.h: backend health, active and passive.
 *
 * Active checks run on the workers' rings: each backend whose domain enables checks is owned
 * by one worker (index % workers), which connects (TCP check) or sends `GET path` (HTTP
 * check, 2xx-4xx is healthy) every `interval`, jittered. Passive health: consecutive connect
 * failures or resets in live traffic, reported by any worker, mark a backend down until the
 * active checks (or, with checks off, a back-off of one interval) bring it back. The verdict
 * is backend.healthy, an atomic that bal_pick reads. Every transition is logged with a reason.
 */
#ifndef RP_HEALTH_H
#define RP_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../engine/timer.h"

struct worker;
struct backend;
struct target;
struct route_table;

/* Shared per-backend state (indexed by backend.index), written by any worker. */
struct health_state {
    struct backend *be;       /* the slot's backend (its settings: the target a caller names) */
    atomic_uint consec_fail;  /* live-traffic failures in a row */
    atomic_int passive_down;  /* marked down by live traffic, not by checks */
    atomic_ulong retry_at_ms; /* with checks off: when a passively downed backend returns */
};

/* One worker's active checker of one backend. */
struct hcheck {
    struct worker *w;
    struct health_state *hs;
    const struct target *t; /* hs->be's target in the worker's snapshot: its check settings */
    struct timer next;      /* the next check */
    struct probe *running;  /* the check in progress, or NULL */
    uint32_t fails, oks;    /* consecutive results */
    char req[512];          /* the HTTP check request, built once */
    uint32_t req_len;
};

/* Builds the shared table for `rt`, with room for backend indexes up to `cap` (a reload's
 * new backends). Returns 0 or -ENOMEM. Start-up only. */
int health_table_init(struct health_state **out, const struct route_table *rt, uint32_t cap);

/* Worker side: health_module (engine/internal.h's struct worker_module) creates this
 * worker's checkers and arms them (start), runs passive back-offs that are due (tick, every
 * loop pass), stops everything for a drain, and frees (fini). */

/* Live traffic: a connect failure or reset (failure), or a response head (success). Any
 * worker thread. */
void health_report_failure(struct worker *w, const struct target *t, struct backend *be,
                           const char *why);
void health_report_success(struct worker *w, struct backend *be);

/* When bal_pick finds no usable backend of t: one that only live traffic marked down (no
 * active check failed it) and is not in `exclude`, the one marked down first (its back-off
 * ends soonest); NULL when there is none. Passive
 * marks are a guess from a few requests, and when every backend carries one, refusing all
 * traffic is worse than trying them (nginx clears its fail counts when all peers failed;
 * Envoy's panic threshold routes to all hosts). A backend an active check took out is never
 * returned. Worker thread. */
struct backend *health_fallback(struct worker *w, const struct target *t, uint64_t exclude);

#endif /* RP_HEALTH_H */
