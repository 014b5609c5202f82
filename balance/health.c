/* health.c: active health checks as requests of the upstream client (engine/upstream.c) on
 * the owning worker's ring, plain or TLS like traffic to the backend; the passive verdicts
 * of live traffic; and the logged UP/DOWN transitions of health.h. */
#include "health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../engine/log.h"
#include "../engine/upstream.h"
#include "../engine/worker-t.h"

/* One check in progress: a connection of the upstream client's (plain or TLS, as traffic to
 * the backend), never pooled, and the check's own timeout. */
struct probe {
    struct hcheck *hc; /* NULL once the check has reported (or was abandoned) */
    struct upconn *up;
    struct timer tm;
};

static void hc_schedule(struct hcheck *hc, uint64_t delay_ms);

/* ---- verdicts ---------------------------------------------------------------------------- */

static void mark_down(struct health_state *hs, const char *fmt, unsigned n, const char *why)
{
    int up = 1;

    if (atomic_compare_exchange_strong(&hs->be->healthy, &up, 0))
        log_warn(fmt, hs->be->addr, n, why);
}

static void mark_up(struct health_state *hs, const char *how)
{
    int down = 0;

    atomic_store(&hs->passive_down, 0);
    atomic_store(&hs->consec_fail, 0);
    if (atomic_compare_exchange_strong(&hs->be->healthy, &down, 1))
        log_info("backend %s UP %s", hs->be->addr, how);
}

static void hc_result(struct hcheck *hc, bool ok, const char *why)
{
    struct health_state *hs = hc->hs;
    char how[64];

    if (ok) {
        hc->fails = 0;
        hc->oks++;
        if (!atomic_load(&hs->be->healthy) && hc->oks >= (uint32_t)hc->t->hc.success_threshold) {
            snprintf(how, sizeof(how), "after %u good checks", hc->oks);
            mark_up(hs, how);
        }
        return;
    }
    hc->oks = 0;
    hc->fails++;
    if (hc->fails >= (uint32_t)hc->t->hc.fail_threshold) {
        atomic_store(&hs->passive_down, 0); /* the checks' verdict now, not a guess */
        mark_down(hs, "backend %s DOWN after %u failed checks: %s", hc->fails, why);
    }
}

void health_report_failure(struct worker *w, const struct target *t, struct backend *be,
                           const char *why)
{
    struct health_state *hs = &w->s->health[be->index];
    unsigned n;

    if (t->n_backends < 2)
        return; /* as nginx: a lone backend is never taken out, there is nowhere else to go */
    n = atomic_fetch_add(&hs->consec_fail, 1) + 1;
    if (n < (unsigned)t->hc.fail_threshold || !atomic_load(&be->healthy))
        return;
    atomic_store(&hs->retry_at_ms, w->now_ms + t->hc.interval_ms);
    atomic_store(&hs->passive_down, 1);
    mark_down(hs, "backend %s DOWN after %u failed requests: %s", n, why);
}

void health_report_success(struct worker *w, struct backend *be)
{
    struct health_state *hs = &w->s->health[be->index];

    /* read first: a shared cache line is written only when there is something to reset */
    if (atomic_load_explicit(&hs->consec_fail, memory_order_relaxed))
        atomic_store_explicit(&hs->consec_fail, 0, memory_order_relaxed);
}

struct backend *health_fallback(struct worker *w, const struct target *t, uint64_t exclude)
{
    struct backend *best = NULL;
    uint64_t best_at = UINT64_MAX;

    /* the one out the longest (its back-off ends first) is the likeliest to be back */
    for (uint32_t i = 0; i < t->n_backends; i++) {
        struct backend *be = t->backends[i];
        struct health_state *hs = &w->s->health[be->index];
        uint64_t at = atomic_load_explicit(&hs->retry_at_ms, memory_order_relaxed);
        if ((i < 64 && (exclude >> i) & 1) ||
            !atomic_load_explicit(&hs->passive_down, memory_order_relaxed) ||
            atomic_load_explicit(&be->drained, memory_order_relaxed))
            continue;
        if (at < best_at) {
            best = be;
            best_at = at;
        }
    }
    return best;
}

/* ---- probes ------------------------------------------------------------------------------ */

static void probe_free(struct worker *w, struct probe *pr)
{
    timer_disarm(w->tw, &pr->tm);
    if (pr->up)
        up_close(pr->up); /* its callbacks stop here: the probe can go at once */
    free(pr);
}

static void probe_done(struct probe *pr, bool ok, const char *why)
{
    struct hcheck *hc = pr->hc;

    if (!hc)
        return;
    pr->hc = NULL;
    hc->running = NULL;
    hc_result(hc, ok, why);
    probe_free(hc->w, pr);
    hc_schedule(hc, hc->t->hc.interval_ms);
}

static void p_ready(struct upconn *up)
{
    struct probe *pr = up->user;

    if (!pr->hc->req_len) /* TCP check: the handshake is the answer */
        probe_done(pr, true, "");
}

/* The final head decides (interim ones are skipped): 2xx-4xx is up. Nothing more of the
 * response is read: the probe's connection is never reused. */
static void p_head(struct upconn *up, const struct h1_response *r)
{
    char why[48];

    if (r->status < 200)
        return;
    snprintf(why, sizeof(why), "status %u", r->status);
    probe_done(up->user, r->status < 500, why);
}

static void p_end(struct upconn *up, bool reusable)
{
    (void)reusable;
    probe_done(up->user, false, "no final response"); /* never: p_head decided */
}

static void p_failed(struct upconn *up, int err, const char *what)
{
    char why[160];

    snprintf(why, sizeof(why), "%s: %s", what, strerror(-err));
    probe_done(up->user, false, why);
}

/* try_timeout is never armed: a check has its own timeout (probe_timeout). */
static const struct up_ops probe_ops = {
    .ready = p_ready,
    .head = p_head,
    .end = p_end,
    .failed = p_failed,
};

static void probe_timeout(struct timer *t, uint64_t now)
{
    struct probe *pr = container_of(t, struct probe, tm);
    char why[48];

    (void)now;
    snprintf(why, sizeof(why), "timed out after %u ms", pr->hc->t->hc.timeout_ms);
    probe_done(pr, false, why);
}

static void hc_run(struct timer *t, uint64_t now)
{
    struct hcheck *hc = container_of(t, struct hcheck, next);
    struct health_state *hs = hc->hs;
    struct probe *pr = calloc(1, sizeof(*pr));

    if (!pr || !(pr->up = up_get(hc->w, (struct target *)hc->t, hs->be, &probe_ops, pr, true))) {
        free(pr);
        hc_schedule(hc, hc->t->hc.interval_ms);
        return;
    }
    pr->up->try_deadline_ms = 0;
    pr->hc = hc;
    hc->running = pr;
    pr->tm.fn = probe_timeout;
    timer_arm(hc->w->tw, &pr->tm, now + hc->t->hc.timeout_ms);
    if (up_proxy_header(pr->up, NULL) || (hc->req_len && up_queue(pr->up, hc->req, hc->req_len))) {
        probe_done(pr, false, "out of memory");
        return;
    }
    up_start(pr->up); /* a failure may report at once */
}

static void hc_schedule(struct hcheck *hc, uint64_t delay_ms)
{
    if (!hc->w->draining)
        timer_arm(hc->w->tw, &hc->next, hc->w->now_ms + delay_ms);
}

/* ---- set-up ------------------------------------------------------------------------------ */

int health_table_init(struct health_state **out, const struct route_table *rt, uint32_t cap)
{
    struct health_state *hs;

    if (cap < rt->n_backends)
        cap = rt->n_backends;
    if (!(hs = calloc(cap ? cap : 1, sizeof(*hs))))
        return -ENOMEM;
    for (uint32_t i = 0; i < rt->n_backends; i++)
        hs[rt->backends[i]->index].be = rt->backends[i];
    *out = hs;
    return 0;
}

/* The check's request, built once: over TLS too for https:// backends, with the same
 * verification, SNI and CAs as traffic. */
static void hc_build_request(struct hcheck *hc)
{
    const struct target *t = hc->t;
    const char *host = t->hc.host       ? t->hc.host
                       : t->host_header ? t->host_header
                                        : hc->hs->be->authority;
    int n;

    if (!t->hc.path || !t->hc.path[0])
        return; /* TCP check */
    n = snprintf(hc->req, sizeof(hc->req),
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ringproxy-health\r\n"
                 "Connection: close\r\n\r\n",
                 t->hc.path, host);
    hc->req_len = n > 0 && (size_t)n < sizeof(hc->req) ? (uint32_t)n : 0;
}

/* The backends this worker checks: with active checks on, a backend index's share of the
 * traffic workers (i % nworkers), from the worker's own snapshot. */
static bool hc_mine(const struct worker *w, const struct backend *be)
{
    return (int)(be->index % (uint32_t)w->s->nworkers) == w->id;
}

/* `carry`: the checkers this worker had before a reload (their consecutive results go on
 * for the backends it keeps checking), or NULL. */
static int hc_build(struct worker *w, const struct hcheck *carry, uint32_t n_carry)
{
    const struct route_table *rt = &w->snap->rt;
    uint32_t n = 0;

    if (w->id >= w->s->nworkers)
        return 0; /* the admin listener's worker checks nothing */
    for (uint32_t i = 0; i < route_count(rt); i++)
        for (uint32_t j = 0; j < route_target(rt, i)->n_backends; j++)
            n += route_target(rt, i)->hc.enabled && hc_mine(w, route_target(rt, i)->backends[j]);
    w->hchecks = calloc(n ? n : 1, sizeof(*w->hchecks));
    if (!w->hchecks)
        return -ENOMEM;
    for (uint32_t i = 0; i < route_count(rt); i++) {
        const struct target *t = route_target(rt, i);
        for (uint32_t j = 0; t->hc.enabled && j < t->n_backends; j++) {
            struct backend *be = t->backends[j];
            struct hcheck *hc;
            if (!hc_mine(w, be))
                continue;
            hc = &w->hchecks[w->n_hchecks++];
            hc->w = w;
            hc->hs = &w->s->health[be->index];
            hc->t = t;
            hc->next.fn = hc_run;
            for (uint32_t k = 0; k < n_carry; k++)
                if (carry[k].hs == hc->hs) {
                    hc->oks = carry[k].oks;
                    hc->fails = carry[k].fails;
                }
            hc_build_request(hc);
            /* jittered start, so a fleet of proxies does not probe in lockstep */
            hc_schedule(hc, (w->bal.rng >> 7 ^ be->index * 2654435761u) % t->hc.interval_ms);
        }
    }
    return 0;
}

static int health_worker_start(struct worker *w)
{
    return hc_build(w, NULL, 0);
}

static void health_worker_tick(struct worker *w)
{
    const struct route_table *rt = &w->snap->rt;

    if (w->id >= w->s->nworkers)
        return;
    /* passive back-off for backends without active checks, run by their owner */
    for (uint32_t i = 0; i < route_count(rt); i++) {
        const struct target *t = route_target(rt, i);
        for (uint32_t j = 0; !t->hc.enabled && j < t->n_backends; j++) {
            struct health_state *hs = &w->s->health[t->backends[j]->index];
            if (!hc_mine(w, t->backends[j]) ||
                !atomic_load_explicit(&hs->passive_down, memory_order_relaxed))
                continue;
            if (w->now_ms >= atomic_load(&hs->retry_at_ms))
                mark_up(hs, "after its back-off (no health checks configured)");
        }
    }
}

static void health_worker_stop(struct worker *w)
{
    for (uint32_t i = 0; i < w->n_hchecks; i++) {
        struct hcheck *hc = &w->hchecks[i];
        timer_disarm(w->tw, &hc->next);
        if (hc->running) {
            struct probe *pr = hc->running;
            pr->hc = NULL;
            hc->running = NULL;
            probe_free(w, pr);
        }
    }
}

static void health_worker_fini(struct worker *w)
{
    free(w->hchecks);
    w->hchecks = NULL;
    w->n_hchecks = 0;
}

/* A reload: the checks in progress stop (a probe's connection may name the old target) and
 * start again from the new snapshot's settings, each backend's streak carried over. */
static void health_worker_adopt(struct worker *w, struct snapshot *old)
{
    struct hcheck *prev = w->hchecks;
    uint32_t n = w->n_hchecks;

    (void)old;
    health_worker_stop(w);
    w->hchecks = NULL;
    w->n_hchecks = 0;
    if (hc_build(w, prev, n))
        log_error("worker %d: out of memory: health checks stopped", w->id);
    free(prev);
}

const struct worker_module health_module = {
    .adopt = health_worker_adopt,
    .start = health_worker_start,
    .tick = health_worker_tick,
    .drain = health_worker_stop,
    .fini = health_worker_fini,
    .name = "health checks",
};
