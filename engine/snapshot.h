/* snapshot.h: the configuration in force, as one immutable object a reload swaps.
 *
 * A snapshot holds what a reload may change: the routing table (domains, routes, their
 * backends), the server settings (timeouts, limits), the TLS server context with its
 * certificates, and the set of listening sockets. The server holds the current one
 * (s->snap); each worker adopts a new one at its next loop pass and, until then, keeps
 * serving on its own (w->snap). Requests hold the snapshot they started on: an exchange or a
 * background refresh counts itself as a user of it (snap_use / snap_unuse, worker-local,
 * no atomics), and a worker keeps an older snapshot (one atomic reference) while it has
 * users there. The last reference frees it (snapshot_put), on whichever thread drops it.
 *
 * What survives a reload is shared between snapshots rather than copied:
 *  - a backend whose (domain, address) is unchanged is the same struct backend, so its
 *    health, counters, latency average, per-worker pools and index stay; be->refs counts the
 *    snapshots that hold it, be->t names the newest target holding it;
 *  - a domain or route with an unchanged label keeps its index (its metrics rows);
 *  - a listener whose address and options are unchanged is the same struct lsock: its
 *    sockets are never closed.
 * Indexes come from fixed-size slot tables chosen at start (twice the starting count plus
 * headroom), so per-worker arrays never move; a reload that needs more slots is refused.
 */
#ifndef RP_SNAPSHOT_H
#define RP_SNAPSHOT_H

#include <stdatomic.h>
#include <stdint.h>

#include "h1.h"
#include "ringproxy.h"
#include "route.h"

struct rp_server;
struct worker;
struct listen_spec;
struct tls_ctx;

/* Listening sockets of one address, shared by the snapshots that keep it. */
struct lsock {
    struct listen_spec *spec; /* owned */
    atomic_uint refs;         /* snapshots holding it */
    uint32_t nfds; /* one per traffic worker (or as many as were inherited); the admin's one */
    int *fds;      /* worker k's are k, k + nworkers, ...; -1 once taken (it closes them) */
};

struct snapshot {
    atomic_uint refs; /* the server's while current, and each worker's that adopted it */
    uint64_t gen;     /* 1: the configuration the server started with */
    struct route_table rt;
    rp_server_config cfg; /* timeouts and limits; cfg.listen and friends are not kept */
    struct h1_limits lim;
    struct tls_ctx *tls; /* the TLS server context, NULL without TLS listeners */
    struct lsock **ls;
    uint32_t n_ls;
    char *admin_token;              /* NULL: none required; never logged */
    const struct alog *alog_global; /* the server-wide access log, NULL: none (accesslog.h) */
    bool request_id;                /* the server-wide request_id */
    bool x_cache; /* cache settings read per request (the rest: cache_reconfigure) */
    uint32_t cache_lock_ms;
};

/* A slot table: index -> how many holders (snapshots, or the backend object) use it. */
struct slots {
    uint32_t cap;
    uint32_t *refs;
};

/* How many indexes of sl are free. */
uint32_t slots_free_count(const struct slots *sl);

/* The worker's side: the snapshot new work uses (w->snap), how many users it has, and the
 * older ones it still holds for theirs. */
struct snap_hold {
    struct snapshot *snap;
    uint32_t users;
};

/* Marks the caller (an exchange, a refresh) as a user of the worker's current snapshot and
 * returns it; snap_unuse ends that use. Worker thread. */
struct snapshot *snap_use(struct worker *w);
void snap_unuse(struct worker *w, struct snapshot *snap);

/* The server's current snapshot, with a reference for the caller (NULL when the server is
 * not running). Any thread. */
struct snapshot *snapshot_acquire(struct rp_server *s);
void snapshot_put(struct rp_server *s, struct snapshot *snap);

/* Start-up: the first snapshot, from the table and listeners the config calls built
 * (s->rt moves into it), with its slots. Returns 0 or -errno. */
int snapshot_init(struct rp_server *s);
/* End of the run: drops the server's reference (every worker has dropped its own). */
void snapshot_fini(struct rp_server *s);

/* The worker's loop: a newer snapshot was published; move to it (listeners by difference,
 * then each module's adopt). Worker thread. */
void worker_adopt(struct worker *w);
/* Worker thread, at its end: drops every snapshot it holds. */
void worker_snap_fini(struct worker *w);

/* The slot tables' sizes for a starting count n. */
uint32_t snapshot_slot_cap(uint32_t n, uint32_t headroom);

#endif /* RP_SNAPSHOT_H */
