/* metrics.h: the counters each worker keeps for GET /metrics on the admin listener, and the
 * Prometheus text exposition of them (metrics.c).
 *
 * A worker writes only its own counters, with a relaxed atomic store of the old value plus
 * one: a plain add on x86-64, no locked instruction on the hot path. A scrape (on whichever
 * worker took the admin connection) reads every worker's with relaxed atomic loads and sums
 * them, so it sees each counter whole, never torn. The arrays live from a worker's start to
 * the end of the server's run (metrics_free), so a scrape never reads freed memory.
 */
#ifndef RP_METRICS_H
#define RP_METRICS_H

#include <stdint.h>

struct worker;
struct target;
struct backend;
struct rp_server;

/* Why an upstream attempt failed (ringproxy_upstream_failures_total's `reason`). */
enum fail_kind {
    FAIL_REFUSED,   /* the connect was refused */
    FAIL_TIMEOUT,   /* connect, write, read or try_timeout */
    FAIL_RESET,     /* the connection was reset or closed before the response's end */
    FAIL_TLS,       /* the TLS handshake or a record failed */
    FAIL_MALFORMED, /* the response could not be parsed */
    FAIL_5XX,       /* a 5xx response (relayed: an answer, but a failure of the backend) */
    FAIL_OTHER,
    FAIL_KINDS,
};

/* How a request was answered from the cache (X-Cache's values). */
enum cache_kind { CK_HIT, CK_STALE, CK_REVALIDATED, CK_MISS, CK_KINDS };

#define LAT_BUCKETS 12 /* upstream response-time buckets, plus +Inf */

struct wmetrics {
    uint64_t *req;     /* [(t_slots.cap + 1) * 5]: by target index (the last: none), 1xx..5xx */
    uint64_t *retries; /* [t_slots.cap + 1] */
    uint64_t *fail;    /* [be_slots.cap * FAIL_KINDS] */
    uint64_t *lat;     /* [be_slots.cap * (LAT_BUCKETS + 1)]: counts per bucket, not cumulative */
    uint64_t *lat_sum; /* [be_slots.cap]: nanoseconds */
    uint64_t cache[CK_KINDS];
    uint64_t inflight; /* exchanges in flight (open minus idle connections, roughly) */
    /* access log lines written, dropped (buffers full, or a write failed), failed writes */
    uint64_t alog_lines, alog_dropped, alog_errors;
};

/* Adds n to a counter of the calling worker's own. */
static inline void ctr_add(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* A counter of any worker's, whole. */
static inline uint64_t ctr_get(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* A freed slot's counters (snapshot.c, when the last snapshot holding its target or
 * backend goes): zero on every worker, for the slot's next holder. */
void metrics_clear_target(struct rp_server *s, uint32_t index);
void metrics_clear_backend(struct rp_server *s, uint32_t index);

/* A request of target t (NULL: none, e.g. a 400 before routing) answered with `status`. */
void metrics_request(struct worker *w, const struct target *t, int status);
/* An attempt at be failed: err the negative errno the upstream client reported. */
void metrics_failure(struct worker *w, const struct backend *be, int err, const char *what);
/* An attempt at be got its response head `ns` nanoseconds after it started. */
void metrics_response_time(struct worker *w, const struct backend *be, uint64_t ns);
/* A request of t goes to another backend, or again on a fresh connection. */
void metrics_retry(struct worker *w, const struct target *t);
void metrics_cache(struct worker *w, enum cache_kind k);
void metrics_inflight(struct worker *w, int delta);

/* Registers GET /metrics among the admin endpoints. 0 or -ENOMEM. */
int metrics_admin_setup(struct rp_server *s);
/* Frees every worker's counters, once the workers have stopped. */
void metrics_free(struct rp_server *s);

#endif /* RP_METRICS_H */
