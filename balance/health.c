/* health.c: active health checks as io_uring probes (socket, connect, send, receive, close
 * SQEs on the owning worker's ring, like any other connection), the passive verdicts of
 * live traffic, and the logged UP/DOWN transitions of health.h. */
#include "health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../engine/internal.h"
#include "../engine/log.h"

/* One check in progress: a socket of its own, freed after the loop pass that ends it. */
struct probe {
    struct sock sk;
    struct hcheck *hc; /* NULL once the check has reported (or was abandoned) */
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
        if (!atomic_load(&hs->be->healthy) && hc->oks >= (uint32_t)hs->t->hc.success_threshold) {
            snprintf(how, sizeof(how), "after %u good checks", hc->oks);
            mark_up(hs, how);
        }
        return;
    }
    hc->oks = 0;
    hc->fails++;
    if (hc->fails >= (uint32_t)hs->t->hc.fail_threshold) {
        atomic_store(&hs->passive_down, 0); /* the checks' verdict now, not a guess */
        mark_down(hs, "backend %s DOWN after %u failed checks: %s", hc->fails, why);
    }
}

void health_report_failure(struct worker *w, struct backend *be, const char *why)
{
    struct health_state *hs = &w->s->health[be->index];
    unsigned n;

    if (hs->t->n_backends < 2)
        return; /* as nginx: a lone backend is never taken out, there is nowhere else to go */
    n = atomic_fetch_add(&hs->consec_fail, 1) + 1;
    if (n < (unsigned)hs->t->hc.fail_threshold || !atomic_load(&be->healthy))
        return;
    atomic_store(&hs->retry_at_ms, w->now_ms + hs->t->hc.interval_ms);
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
            !atomic_load_explicit(&hs->passive_down, memory_order_relaxed))
            continue;
        if (at < best_at) {
            best = be;
            best_at = at;
        }
    }
    return best;
}

/* ---- probes ------------------------------------------------------------------------------ */

static void probe_done(struct probe *pr, bool ok, const char *why)
{
    struct hcheck *hc = pr->hc;

    if (!hc)
        return;
    pr->hc = NULL;
    hc->running = NULL;
    hc_result(hc, ok, why);
    sock_kill(hc->w, &pr->sk);
    hc_schedule(hc, hc->hs->t->hc.interval_ms);
}

static void p_on_socket(struct sock *s, int res)
{
    struct probe *pr = (struct probe *)s;
    struct backend *be = pr->hc->hs->be;

    if (res < 0) {
        probe_done(pr, false, strerror(-res));
        return;
    }
    s->fd = res;
    sock_connect(pr->hc->w, s, &be->sa, be->salen);
}

static void p_on_connect(struct sock *s, int res)
{
    struct probe *pr = (struct probe *)s;
    struct hcheck *hc = pr->hc;

    if (res < 0) {
        probe_done(pr, false, strerror(-res));
        return;
    }
    if (!hc->req_len) { /* TCP check: the handshake is the answer */
        probe_done(pr, true, "");
        return;
    }
    sock_recv_start(hc->w, s);
    if (sock_write(hc->w, s, hc->req, hc->req_len))
        probe_done(pr, false, "out of memory");
}

/* "HTTP/1.1 200 ..." -> 200, or -1 while the line is incomplete, 0 if it is not HTTP. */
static int status_of(const struct buf *in)
{
    const char *p = buf_data(in);
    uint32_t n = buf_used(in);

    if (n < 12)
        return memchr(p, '\n', n) ? 0 : -1;
    if (memcmp(p, "HTTP/1.", 7) || p[8] != ' ' || p[9] < '1' || p[9] > '5' || p[10] < '0' ||
        p[10] > '9' || p[11] < '0' || p[11] > '9')
        return 0;
    return (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
}

static void p_on_data(struct sock *s, char *data, uint32_t n)
{
    struct probe *pr = (struct probe *)s;
    char why[48];
    int st;

    if (!pr->hc)
        return;
    if (buf_append(&s->in, data, n > 64 ? 64 : n)) {
        probe_done(pr, false, "out of memory");
        return;
    }
    st = status_of(&s->in);
    if (st < 0)
        return;
    snprintf(why, sizeof(why), st ? "status %d" : "not an HTTP response", st);
    probe_done(pr, st >= 200 && st < 500, why);
}

static void p_on_eof(struct sock *s, int err)
{
    struct probe *pr = (struct probe *)s;

    probe_done(pr, false, err ? strerror(-err) : "closed before a status line");
}

static void p_on_sent(struct sock *s)
{
    (void)s;
}

static void p_release(struct sock *s)
{
    free(s);
}

static const struct sock_ops probe_ops = {
    .on_data = p_on_data,
    .on_eof = p_on_eof,
    .on_sent = p_on_sent,
    .on_socket = p_on_socket,
    .on_connect = p_on_connect,
    .release = p_release,
};

static void probe_timeout(struct timer *t, uint64_t now)
{
    struct probe *pr = (struct probe *)((char *)t - offsetof(struct sock, tm));
    char why[48];

    (void)now;
    if (!pr->hc)
        return;
    snprintf(why, sizeof(why), "timed out after %u ms", pr->hc->hs->t->hc.timeout_ms);
    probe_done(pr, false, why);
}

static void hc_run(struct timer *t, uint64_t now)
{
    struct hcheck *hc = (struct hcheck *)((char *)t - offsetof(struct hcheck, next));
    struct probe *pr = calloc(1, sizeof(*pr));

    if (!pr) {
        hc_schedule(hc, hc->hs->t->hc.interval_ms);
        return;
    }
    sock_init(&pr->sk, -1, &probe_ops);
    pr->hc = hc;
    hc->running = pr;
    pr->sk.tm.fn = probe_timeout;
    timer_arm(hc->w->tw, &pr->sk.tm, now + hc->hs->t->hc.timeout_ms);
    sock_open(hc->w, &pr->sk, hc->hs->be->sa.ss_family);
}

static void hc_schedule(struct hcheck *hc, uint64_t delay_ms)
{
    if (!hc->w->draining)
        timer_arm(hc->w->tw, &hc->next, hc->w->now_ms + delay_ms);
}

/* ---- set-up ------------------------------------------------------------------------------ */

int health_table_init(struct health_state **out, const struct route_table *rt)
{
    struct health_state *hs = calloc(rt->n_backends ? rt->n_backends : 1, sizeof(*hs));
    if (!hs)
        return -ENOMEM;
    for (uint32_t i = 0; i < route_count(rt); i++) {
        struct target *t = route_target(rt, i);
        for (uint32_t j = 0; j < t->n_backends; j++) {
            hs[t->backends[j]->index].be = t->backends[j];
            hs[t->backends[j]->index].t = t;
        }
    }
    *out = hs;
    return 0;
}

static void hc_build_request(struct hcheck *hc)
{
    const struct target *t = hc->hs->t;
    int n;

    if (!t->hc.path || !t->hc.path[0])
        return;            /* TCP check */
    if (hc->hs->be->tls) { /* checks do not speak TLS yet: the TCP handshake must do */
        log_warn("backend %s: HTTP health checks of https:// backends are TCP connects for now",
                 hc->hs->be->addr);
        return;
    }
    n = snprintf(hc->req, sizeof(hc->req),
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ringproxy-health\r\n"
                 "Connection: close\r\n\r\n",
                 t->hc.path, t->host_header ? t->host_header : hc->hs->be->authority);
    hc->req_len = n > 0 && (size_t)n < sizeof(hc->req) ? (uint32_t)n : 0;
}

int health_worker_start(struct worker *w)
{
    struct rp_server *s = w->s;
    uint32_t n = 0;

    for (uint32_t i = 0; i < s->rt.n_backends; i++)
        if (s->health[i].t->hc.enabled && (int)(i % (uint32_t)s->nworkers) == w->id)
            n++;
    w->hchecks = calloc(n ? n : 1, sizeof(*w->hchecks));
    if (!w->hchecks)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->rt.n_backends; i++) {
        struct health_state *hs = &s->health[i];
        struct hcheck *hc;
        if (!hs->t->hc.enabled || (int)(i % (uint32_t)s->nworkers) != w->id)
            continue;
        hc = &w->hchecks[w->n_hchecks++];
        hc->w = w;
        hc->hs = hs;
        hc->next.fn = hc_run;
        hc_build_request(hc);
        /* jittered start, so a fleet of proxies does not probe in lockstep */
        hc_schedule(hc, (w->bal.rng >> 7 ^ i * 2654435761u) % hs->t->hc.interval_ms);
    }
    return 0;
}

void health_worker_tick(struct worker *w)
{
    struct rp_server *s = w->s;

    /* passive back-off for backends without active checks, run by their owner */
    for (uint32_t i = (uint32_t)w->id; i < s->rt.n_backends; i += (uint32_t)s->nworkers) {
        struct health_state *hs = &s->health[i];
        if (hs->t->hc.enabled || !atomic_load_explicit(&hs->passive_down, memory_order_relaxed))
            continue;
        if (w->now_ms >= atomic_load(&hs->retry_at_ms))
            mark_up(hs, "after its back-off (no health checks configured)");
    }
}

void health_worker_stop(struct worker *w)
{
    for (uint32_t i = 0; i < w->n_hchecks; i++) {
        struct hcheck *hc = &w->hchecks[i];
        timer_disarm(w->tw, &hc->next);
        if (hc->running) {
            struct probe *pr = hc->running;
            pr->hc = NULL;
            hc->running = NULL;
            sock_kill(w, &pr->sk);
        }
    }
}

void health_worker_fini(struct worker *w)
{
    free(w->hchecks);
    w->hchecks = NULL;
    w->n_hchecks = 0;
}
