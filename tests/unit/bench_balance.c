/* bench_balance.c: ns per bal_pick for each strategy with 3 and 64 backends, one worker,
 * every backend healthy. Each line is the median of 5 timed runs, each run sized to take
 * about 100 ms (at most 10M picks). ip_hash cycles over 1024 client addresses. Single thread:
 * the shared in-flight and latency atomics stay in this core's cache, as they would not on a
 * busy multi-core proxy.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../balance/balance.h"
#include "route.h"

#define RUNS 5
#define MAX_PICKS 10000000u
#define RUN_NS 100000000.0
#define CLIENTS 1024

struct bench {
    const char *name;
    rp_lb_strategy lb;
    bool weighted;
};

static struct sockaddr_in clients[CLIENTS];
static void *volatile sink;

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int table_init(struct route_table *rt, const struct bench *b, uint32_t n)
{
    rp_backend_config bc[64];
    char addr[64][32];
    rp_domain_config d = {
        .domain = "bench.test", .backends = bc, .n_backends = n, .load_balancer = b->lb};

    memset(rt, 0, sizeof(*rt));
    for (uint32_t i = 0; i < n; i++) {
        snprintf(addr[i], sizeof(addr[i]), "http://10.0.%u.%u:8080", i / 200, i % 200 + 1);
        bc[i] = (rp_backend_config){.addr = addr[i], .weight = b->weighted ? (int)i % 5 + 1 : 1};
    }
    return route_add_domain(rt, &d);
}

/* Seconds of fake time apart, 1-5 ms each: every backend has a sample, none is decayed out. */
static void observe_all(const struct target *t)
{
    for (uint32_t i = 0; i < t->n_backends; i++)
        bal_observe(t->backends[i], 1000000000ull, 1000000ull * (i % 5 + 1));
}

static double run(struct bal_worker *bw, const struct target *t, uint32_t picks)
{
    uintptr_t acc = 0;
    double start = now_ns();

    for (uint32_t i = 0; i < picks; i++)
        acc += (uintptr_t)bal_pick(bw, t, (const struct sockaddr *)&clients[i % CLIENTS], 0);
    sink = (void *)acc;
    return (now_ns() - start) / picks;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static int bench_one(const struct bench *b, uint32_t n)
{
    struct route_table rt;
    struct bal_worker bw;
    double ns[RUNS];
    uint32_t picks;
    int rc = table_init(&rt, b, n);

    if (rc || (rc = bal_worker_init(&bw, &rt, 0, 1)))
        return rc;
    observe_all(rt.domains[0]);
    picks = (uint32_t)(RUN_NS / run(&bw, rt.domains[0], 100000));
    picks = picks > MAX_PICKS ? MAX_PICKS : picks < 100000 ? 100000 : picks;
    for (int r = 0; r < RUNS; r++)
        ns[r] = run(&bw, rt.domains[0], picks);
    qsort(ns, RUNS, sizeof(ns[0]), cmp_double);
    printf("%-24s %3u backends  %8.1f ns/pick  (%u picks x %d runs)\n", b->name, n, ns[RUNS / 2],
           picks, RUNS);
    bal_worker_fini(&bw);
    route_table_fini(&rt);
    return 0;
}

int main(void)
{
    static const struct bench benches[] = {
        {"round_robin", RP_LB_ROUND_ROBIN, false},
        {"weighted_rr (1-5)", RP_LB_WEIGHTED_RR, true},
        {"least_conn", RP_LB_LEAST_CONN, false},
        {"ip_hash", RP_LB_IP_HASH, false},
        {"ip_hash (weights 1-5)", RP_LB_IP_HASH, true},
        {"random", RP_LB_RANDOM, false},
        {"random (weights 1-5)", RP_LB_RANDOM, true},
        {"least_latency", RP_LB_LEAST_LATENCY, false},
    };
    static const uint32_t sizes[] = {3, 64};

    for (uint32_t i = 0; i < CLIENTS; i++) {
        clients[i].sin_family = AF_INET;
        clients[i].sin_addr.s_addr = htonl(0xc0a80000 + i * 7 + 1);
    }
    for (size_t b = 0; b < sizeof(benches) / sizeof(benches[0]); b++)
        for (size_t s = 0; s < 2; s++)
            if (bench_one(&benches[b], sizes[s])) {
                fprintf(stderr, "bench_balance: %s with %u backends: setup failed\n",
                        benches[b].name, sizes[s]);
                return 1;
            }
    return 0;
}
