/* test_balance.c: the six balancing strategies of balance/balance.c, each against what
 * balance.h promises: exact rotation and smooth WRR sequences, exact least_conn ratios,
 * consistent ip_hash, uniform random (chi-square), and least_latency shedding and recovering
 * a slow backend in a simulated closed loop on a fake clock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../balance/balance.h"
#include "route.h"

#define MS 1000000ull
#define CHI2_DF2_1PCT 9.210 /* chi-square critical value, 2 degrees of freedom, 1% */

struct fx {
    struct route_table rt;
    struct bal_worker bw;
    struct target *t;
};

/* One domain whose backends are http://127.0.0.1:<ports[i]> (9001.. when ports is NULL). */
static void fx_init_ports(struct fx *f, rp_lb_strategy lb, const int *weights, const int *ports,
                          uint32_t n, uint64_t seed)
{
    rp_backend_config bc[64];
    char addr[64][32];
    rp_domain_config d = {
        .domain = "lb.test", .backends = bc, .n_backends = n, .load_balancer = lb};

    assert_true(n <= 64);
    memset(f, 0, sizeof(*f));
    for (uint32_t i = 0; i < n; i++) {
        snprintf(addr[i], sizeof(addr[i]), "http://127.0.0.1:%d", ports ? ports[i] : 9001 + (int)i);
        bc[i] = (rp_backend_config){.addr = addr[i], .weight = weights ? weights[i] : 1};
    }
    assert_int_equal(route_add_domain(&f->rt, &d), 0);
    assert_int_equal(bal_worker_init(&f->bw, &f->rt, 0, seed), 0);
    f->t = f->rt.domains[0];
}

static void fx_init(struct fx *f, rp_lb_strategy lb, const int *weights, uint32_t n)
{
    fx_init_ports(f, lb, weights, NULL, n, 0);
}

static void fx_fini(struct fx *f)
{
    bal_worker_fini(&f->bw);
    route_table_fini(&f->rt);
}

static int pos_of(const struct fx *f, const struct backend *be)
{
    for (uint32_t i = 0; be && i < f->t->n_backends; i++)
        if (f->t->backends[i] == be)
            return (int)i;
    return -1;
}

static int pick(struct fx *f, const struct sockaddr *client, uint64_t exclude)
{
    return pos_of(f, bal_pick(&f->bw, f->t, client, exclude));
}

static void set_healthy(struct fx *f, uint32_t i, int up)
{
    atomic_store(&f->t->backends[i]->healthy, up);
}

static void set_inflight(struct fx *f, uint32_t i, unsigned n)
{
    atomic_store(&f->t->backends[i]->inflight, n);
}

static struct sockaddr_in v4(const char *ip)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(40000)};

    assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    return sa;
}

static double chi2(const unsigned *count, const double *expect, uint32_t n)
{
    double x = 0.0;

    for (uint32_t i = 0; i < n; i++)
        x += (count[i] - expect[i]) * (count[i] - expect[i]) / expect[i];
    return x;
}

/* ---- round_robin ---- */

static void test_rr_exact(void **state)
{
    struct fx f;
    unsigned count[3] = {0};

    (void)state;
    fx_init(&f, RP_LB_ROUND_ROBIN, NULL, 3);
    for (int i = 0; i < 300; i++) {
        int p = pick(&f, NULL, 0);
        assert_int_equal(p, i % 3);
        count[p]++;
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(count[i], 100);
    fx_fini(&f);
}

static void test_rr_skips_down_and_excluded(void **state)
{
    struct fx f;
    unsigned count[3] = {0};

    (void)state;
    fx_init(&f, RP_LB_ROUND_ROBIN, NULL, 3);
    set_healthy(&f, 1, 0);
    for (int i = 0; i < 300; i++)
        count[pick(&f, NULL, 0)]++;
    assert_int_equal(count[0], 150);
    assert_int_equal(count[1], 0);
    assert_int_equal(count[2], 150);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick(&f, NULL, 1u << 0), 2);
    assert_null(bal_pick(&f.bw, f.t, NULL, (1u << 0) | (1u << 2)));
    set_healthy(&f, 1, 1);
    assert_null(bal_pick(&f.bw, f.t, NULL, 7));
    for (uint32_t i = 0; i < 3; i++)
        set_healthy(&f, i, 0);
    assert_null(bal_pick(&f.bw, f.t, NULL, 0));
    fx_fini(&f);
}

static void test_rr_workers_start_apart(void **state)
{
    struct fx f;

    (void)state;
    fx_init_ports(&f, RP_LB_ROUND_ROBIN, NULL, NULL, 3, 2);
    assert_int_equal(pick(&f, NULL, 0), 2);
    assert_int_equal(pick(&f, NULL, 0), 0);
    fx_fini(&f);
}

/* ---- weighted_rr ---- */

static const int w531[3] = {5, 3, 1};

static void test_wrr_smooth_sequence(void **state)
{
    /* nginx's algorithm by hand: current weights (5,3,1) -> a, (1,6,2) -> b, (6,0,3) -> a,
     * (2,3,4) -> c, (7,6,-4) -> a, (3,9,-3) -> b, (8,3,-2) -> a, (4,6,-1) -> b, (9,0,0) -> a */
    static const char seq[] = "abacababa";
    struct fx f;
    unsigned count[3] = {0};
    int run = 0, last = -1;

    (void)state;
    fx_init(&f, RP_LB_WEIGHTED_RR, w531, 3);
    for (int i = 0; i < 900; i++) {
        int p = pick(&f, NULL, 0);
        assert_int_equal(p, seq[i % 9] - 'a');
        count[p]++;
        run = p == last ? run + 1 : 1;
        last = p;
        assert_true(run <= w531[p]);
    }
    assert_int_equal(count[0], 500);
    assert_int_equal(count[1], 300);
    assert_int_equal(count[2], 100);
    fx_fini(&f);
}

static void test_wrr_never_longer_than_weight(void **state)
{
    static const int w[4] = {7, 1, 1, 3};
    struct fx f;
    unsigned count[4] = {0}, window[4] = {0};
    int run = 0, last = -1;

    (void)state;
    fx_init(&f, RP_LB_WEIGHTED_RR, w, 4);
    for (int i = 0; i < 1200; i++) {
        int p = pick(&f, NULL, 0);
        count[p]++;
        window[p]++;
        run = p == last ? run + 1 : 1;
        last = p;
        assert_true(run <= w[p]);
        if (i % 12 == 11) { /* every cycle of sum-of-weights picks is exact */
            for (int k = 0; k < 4; k++)
                assert_int_equal(window[k], w[k]);
            memset(window, 0, sizeof(window));
        }
    }
    for (int k = 0; k < 4; k++)
        assert_int_equal(count[k], 100 * w[k]);
    fx_fini(&f);
}

static void test_wrr_seed_rotates_the_cycle(void **state)
{
    static const char seq[] = "abacababa";
    struct fx f;

    (void)state;
    fx_init_ports(&f, RP_LB_WEIGHTED_RR, w531, NULL, 3, 13);
    for (int i = 0; i < 18; i++)
        assert_int_equal(pick(&f, NULL, 0), seq[(i + 13) % 9] - 'a');
    fx_fini(&f);
}

static void test_wrr_skips_down_and_excluded(void **state)
{
    struct fx f;
    unsigned count[3] = {0};

    (void)state;
    fx_init(&f, RP_LB_WEIGHTED_RR, w531, 3);
    set_healthy(&f, 1, 0);
    for (int i = 0; i < 600; i++)
        count[pick(&f, NULL, 0)]++;
    assert_int_equal(count[0], 500);
    assert_int_equal(count[1], 0);
    assert_int_equal(count[2], 100);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick(&f, NULL, 1u << 0), 2);
    assert_null(bal_pick(&f.bw, f.t, NULL, 5));
    set_healthy(&f, 0, 0);
    set_healthy(&f, 2, 0);
    assert_null(bal_pick(&f.bw, f.t, NULL, 0));
    fx_fini(&f);
}

/* ---- least_conn ---- */

static void test_least_conn_lowest_ratio(void **state)
{
    static const int w[3] = {1, 2, 1};
    static const int w2[2] = {3, 100};
    struct fx f;

    (void)state;
    fx_init(&f, RP_LB_LEAST_CONN, w, 3);
    set_inflight(&f, 0, 1);
    set_inflight(&f, 1, 1);
    set_inflight(&f, 2, 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(pick(&f, NULL, 0), 1); /* 1/2 beats 1/1 */
    set_inflight(&f, 0, 4);
    set_inflight(&f, 1, 5);
    set_inflight(&f, 2, 2);
    for (int i = 0; i < 5; i++)
        assert_int_equal(pick(&f, NULL, 0), 2); /* 2/1 beats 5/2 and 4/1 */
    fx_fini(&f);

    /* 33/100 < 1/3: a ratio scaled to an integer would call this a tie */
    fx_init(&f, RP_LB_LEAST_CONN, w2, 2);
    set_inflight(&f, 0, 1);
    set_inflight(&f, 1, 33);
    for (int i = 0; i < 5; i++)
        assert_int_equal(pick(&f, NULL, 0), 1);
    fx_fini(&f);
}

static void test_least_conn_rotates_ties(void **state)
{
    static const int w[3] = {1, 2, 1};
    struct fx f;

    (void)state;
    fx_init(&f, RP_LB_LEAST_CONN, NULL, 3);
    for (int i = 0; i < 30; i++)
        assert_int_equal(pick(&f, NULL, 0), i % 3);
    set_inflight(&f, 1, 1);
    for (int i = 0; i < 30; i++)
        assert_int_equal(pick(&f, NULL, 0), i % 2 ? 2 : 0);
    fx_fini(&f);

    fx_init(&f, RP_LB_LEAST_CONN, w, 3); /* 2/2 ties 1/1 */
    set_inflight(&f, 0, 1);
    set_inflight(&f, 1, 2);
    set_inflight(&f, 2, 3);
    for (int i = 0; i < 30; i++)
        assert_int_equal(pick(&f, NULL, 0), i % 2);
    fx_fini(&f);
}

static void test_least_conn_skips_down_and_excluded(void **state)
{
    struct fx f;

    (void)state;
    fx_init(&f, RP_LB_LEAST_CONN, NULL, 3);
    set_inflight(&f, 0, 5);
    set_inflight(&f, 1, 0);
    set_inflight(&f, 2, 3);
    set_healthy(&f, 1, 0);
    assert_int_equal(pick(&f, NULL, 0), 2);
    assert_int_equal(pick(&f, NULL, 1u << 2), 0);
    assert_null(bal_pick(&f.bw, f.t, NULL, 5));
    fx_fini(&f);
}

/* ---- ip_hash ---- */

static void clients_map(struct fx *f, int *map, uint64_t exclude)
{
    char ip[32];

    for (int c = 0; c < 20; c++) {
        struct sockaddr_in sa;
        snprintf(ip, sizeof(ip), "127.0.0.%d", c + 2);
        sa = v4(ip);
        map[c] = pick(f, (struct sockaddr *)&sa, exclude);
        for (int k = 0; k < 100; k++) {
            sa.sin_port = htons((uint16_t)(1024 + k)); /* the port does not matter */
            assert_int_equal(pick(f, (struct sockaddr *)&sa, exclude), map[c]);
        }
    }
}

static void test_ip_hash_consistent(void **state)
{
    struct fx f;
    int before[20], after[20], retry[20], again[20], used[4] = {0}, down = 0, moved = 0;

    (void)state;
    fx_init(&f, RP_LB_IP_HASH, NULL, 4);
    clients_map(&f, before, 0);
    for (int c = 0; c < 20; c++)
        used[before[c]]++;
    for (int b = 1; b < 4; b++)
        down = used[b] > used[down] ? b : down;
    assert_true(used[down] < 20); /* spread over more than one backend */
    set_healthy(&f, (uint32_t)down, 0);
    clients_map(&f, after, 0);
    set_healthy(&f, (uint32_t)down, 1);
    clients_map(&f, retry, 1ull << down);
    clients_map(&f, again, 0);
    for (int c = 0; c < 20; c++) {
        if (before[c] == down) {
            assert_int_not_equal(after[c], down);
            moved++;
        } else {
            assert_int_equal(after[c], before[c]); /* only the dead backend's clients move */
        }
        assert_int_equal(retry[c], after[c]);  /* a retry goes where a failover would */
        assert_int_equal(again[c], before[c]); /* and they come back */
    }
    assert_int_equal(moved, used[down]);
    fx_fini(&f);
}

static void test_ip_hash_ignores_config_order(void **state)
{
    static const int fwd[4] = {9001, 9002, 9003, 9004}, rev[4] = {9004, 9003, 9002, 9001};
    struct fx a, b;
    char ip[32];

    (void)state;
    fx_init_ports(&a, RP_LB_IP_HASH, NULL, fwd, 4, 1);
    fx_init_ports(&b, RP_LB_IP_HASH, NULL, rev, 4, 2);
    for (int c = 0; c < 200; c++) {
        struct sockaddr_in sa;
        snprintf(ip, sizeof(ip), "10.1.%d.%d", c / 250, c % 250 + 1);
        sa = v4(ip);
        assert_string_equal(bal_pick(&a.bw, a.t, (struct sockaddr *)&sa, 0)->addr,
                            bal_pick(&b.bw, b.t, (struct sockaddr *)&sa, 0)->addr);
    }
    fx_fini(&a);
    fx_fini(&b);
}

static void test_ip_hash_v4_mapped_is_v4(void **state)
{
    struct fx f;
    char ip[32], ip6[48];

    (void)state;
    fx_init(&f, RP_LB_IP_HASH, NULL, 5);
    for (int c = 0; c < 50; c++) {
        struct sockaddr_in sa;
        struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6};
        snprintf(ip, sizeof(ip), "192.168.7.%d", c + 1);
        snprintf(ip6, sizeof(ip6), "::ffff:%s", ip);
        sa = v4(ip);
        assert_int_equal(inet_pton(AF_INET6, ip6, &sa6.sin6_addr), 1);
        assert_int_equal(pick(&f, (struct sockaddr *)&sa, 0), pick(&f, (struct sockaddr *)&sa6, 0));
    }
    fx_fini(&f);
}

static void test_ip_hash_weighted_shares(void **state)
{
    struct fx f;
    unsigned count[3] = {0};
    double expect[3];

    (void)state;
    fx_init(&f, RP_LB_IP_HASH, w531, 3);
    for (uint32_t c = 0; c < 9000; c++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000000 + c)};
        count[pick(&f, (struct sockaddr *)&sa, 0)]++;
    }
    for (int i = 0; i < 3; i++)
        expect[i] = 9000.0 * w531[i] / 9;
    assert_true(chi2(count, expect, 3) < CHI2_DF2_1PCT);
    fx_fini(&f);
}

static void test_ip_hash_without_client_rotates(void **state)
{
    struct fx f;

    (void)state;
    fx_init(&f, RP_LB_IP_HASH, NULL, 3);
    for (int i = 0; i < 9; i++)
        assert_int_equal(pick(&f, NULL, 0), i % 3);
    fx_fini(&f);
}

/* ---- random ---- */

static double random_chi2(struct fx *f, const int *w, uint32_t n, unsigned picks, uint64_t exclude)
{
    unsigned count[8] = {0};
    double expect[8], total = 0.0;
    uint32_t m = 0;

    for (unsigned i = 0; i < picks; i++) {
        int p = pick(f, NULL, exclude);
        assert_true(p >= 0 && !((exclude >> p) & 1));
        count[p]++;
    }
    for (uint32_t i = 0; i < n; i++)
        total += (exclude >> i) & 1 ? 0 : (w ? w[i] : 1);
    for (uint32_t i = 0; i < n; i++)
        if (!((exclude >> i) & 1)) {
            expect[m] = picks * (w ? w[i] : 1) / total;
            count[m++] = count[i];
        }
    return chi2(count, expect, m);
}

static void test_random_uniform(void **state)
{
    struct fx f;
    int rejected = 0;

    (void)state;
    fx_init_ports(&f, RP_LB_RANDOM, NULL, NULL, 3, 1);
    assert_true(random_chi2(&f, NULL, 3, 3000, 0) < CHI2_DF2_1PCT);
    fx_fini(&f);
    /* across 100 worker seeds a 1% test should reject about once */
    for (uint64_t seed = 100; seed < 200; seed++) {
        fx_init_ports(&f, RP_LB_RANDOM, NULL, NULL, 3, seed);
        rejected += random_chi2(&f, NULL, 3, 3000, 0) >= CHI2_DF2_1PCT;
        fx_fini(&f);
    }
    assert_true(rejected <= 5);
}

static void test_random_weighted(void **state)
{
    struct fx f;

    (void)state;
    fx_init_ports(&f, RP_LB_RANDOM, w531, NULL, 3, 7);
    assert_true(random_chi2(&f, w531, 3, 9000, 0) < CHI2_DF2_1PCT);
    fx_fini(&f);
}

static void test_random_skips_down_and_excluded(void **state)
{
    static const int w[4] = {5, 3, 1, 2};
    struct fx f;

    (void)state;
    fx_init_ports(&f, RP_LB_RANDOM, w, NULL, 4, 3);
    /* the first draw often lands on the excluded backend: the redraw keeps the proportions */
    assert_true(random_chi2(&f, w, 4, 9000, 1u << 0) < CHI2_DF2_1PCT);
    set_healthy(&f, 1, 0);
    assert_true(random_chi2(&f, w, 4, 9000, 1u << 1) < CHI2_DF2_1PCT);
    assert_null(bal_pick(&f.bw, f.t, NULL, 0xd));
    fx_fini(&f);
}

/* ---- least_latency ---- */

static double ewma_ms(const struct fx *f, uint32_t i)
{
    uint64_t bits = atomic_load(&f->t->backends[i]->lat_ewma);
    double d;

    memcpy(&d, &bits, sizeof(d));
    return d / MS;
}

/* The admin API's runtime controls: a drained backend is never picked (by any strategy), and
 * a weight changed while running (target.wgen bumped) takes effect at the next pick. */
static void test_drained_never_picked(void **state)
{
    static const rp_lb_strategy all[] = {RP_LB_ROUND_ROBIN, RP_LB_WEIGHTED_RR, RP_LB_LEAST_CONN,
                                         RP_LB_IP_HASH,     RP_LB_RANDOM,      RP_LB_LEAST_LATENCY};
    struct sockaddr_in c = v4("10.1.2.3");
    struct fx f;

    (void)state;
    for (size_t s = 0; s < sizeof(all) / sizeof(all[0]); s++) {
        fx_init(&f, all[s], NULL, 3);
        atomic_store(&f.t->backends[1]->drained, true);
        for (int i = 0; i < 300; i++)
            assert_int_not_equal(pick(&f, (const struct sockaddr *)&c, 0), 1);
        atomic_store(&f.t->backends[0]->drained, true);
        atomic_store(&f.t->backends[2]->drained, true);
        assert_int_equal(pick(&f, (const struct sockaddr *)&c, 0), -1);
        fx_fini(&f);
    }
}

static void test_weight_change_rebuilds_tables(void **state)
{
    static const rp_lb_strategy all[] = {RP_LB_WEIGHTED_RR, RP_LB_RANDOM};
    struct fx f;

    (void)state;
    for (size_t s = 0; s < sizeof(all) / sizeof(all[0]); s++) {
        int n0 = 0;
        fx_init(&f, all[s], NULL, 2);
        atomic_store(&f.t->backends[0]->weight, 9);
        atomic_fetch_add(&f.t->wgen, 1);
        for (int i = 0; i < 10000; i++)
            n0 += pick(&f, NULL, 0) == 0;
        /* weighted_rr: exactly 9 in 10; random: within 1% of it */
        assert_true(n0 >= 8900 && n0 <= 9100);
        if (all[s] == RP_LB_WEIGHTED_RR)
            assert_int_equal(n0, 9000);
        fx_fini(&f);
    }
}

static void test_observe_peak_and_decay(void **state)
{
    const double E1 = 0.36787944117144233, E05 = 0.6065306597126334; /* e^-1, e^-0.5 */
    struct fx f;

    (void)state;
    fx_init(&f, RP_LB_LEAST_LATENCY, NULL, 1);
    bal_observe(f.t->backends[0], 1000 * MS, 1 * MS);
    assert_true(ewma_ms(&f, 0) == 1.0);
    bal_observe(f.t->backends[0], 1000 * MS, 100 * MS); /* peak: replaces at once */
    assert_true(ewma_ms(&f, 0) == 100.0);
    bal_observe(f.t->backends[0], 2000 * MS, 1 * MS); /* one tau later: e^-1 of the old */
    assert_float_equal(ewma_ms(&f, 0), 100 * E1 + 1 * (1 - E1), 1e-9);
    bal_observe(f.t->backends[0], 2500 * MS, 0); /* half a tau later: e^-0.5 */
    assert_float_equal(ewma_ms(&f, 0), (100 * E1 + 1 * (1 - E1)) * E05, 1e-9);
    fx_fini(&f);
}

/* A closed loop on a fake clock: one request every `step` ns, each answered after its
 * backend's latency, the answer fed to bal_observe. */
struct sim {
    struct fx *f;
    uint64_t now, step, lat[3];
    struct {
        uint64_t due, sent;
        uint32_t be;
    } q[8192];
    uint32_t nq;
};

static void sim_complete(struct sim *s)
{
    for (uint32_t i = 0; i < s->nq;) {
        struct backend *be = s->f->t->backends[s->q[i].be];
        if (s->q[i].due > s->now) {
            i++;
            continue;
        }
        atomic_fetch_sub(&be->inflight, 1);
        bal_observe(be, s->now, s->q[i].due - s->q[i].sent);
        s->q[i] = s->q[--s->nq];
    }
}

static void sim_run(struct sim *s, uint64_t until, unsigned *count)
{
    for (; s->now < until; s->now += s->step) {
        int p;
        sim_complete(s);
        p = pick(s->f, NULL, 0);
        assert_true(p >= 0 && s->nq < 8192);
        atomic_fetch_add(&s->f->t->backends[p]->inflight, 1);
        s->q[s->nq].due = s->now + s->lat[p];
        s->q[s->nq].sent = s->now;
        s->q[s->nq++].be = (uint32_t)p;
        if (count)
            count[p]++;
    }
}

static void test_least_latency_avoids_observed_slow(void **state)
{
    static struct sim s;
    struct fx f;
    unsigned count[3] = {0};

    (void)state;
    fx_init(&f, RP_LB_LEAST_LATENCY, NULL, 3);
    bal_observe(f.t->backends[0], 1000 * MS, 200 * MS);
    bal_observe(f.t->backends[1], 1000 * MS, 1 * MS);
    bal_observe(f.t->backends[2], 1000 * MS, 1 * MS);
    s = (struct sim){.f = &f, .now = 1000 * MS, .step = MS, .lat = {200 * MS, MS, MS}};
    sim_run(&s, 2000 * MS, count); /* the next 1000 picks */
    assert_true(count[0] < 100);
    fx_fini(&f);
}

static void test_least_latency_sheds_and_recovers(void **state)
{
    static struct sim s;
    struct fx f;
    unsigned first[3] = {0}, slow[3] = {0}, late[3] = {0};

    (void)state;
    fx_init_ports(&f, RP_LB_LEAST_LATENCY, NULL, NULL, 3, 5);
    /* 10,000 requests per second; backend 0 answers in 200 ms, the others in 1 ms */
    s = (struct sim){.f = &f, .now = 1, .step = MS / 10, .lat = {200 * MS, MS, MS}};
    sim_run(&s, 1000 * MS, first);
    assert_true(first[0] * 10 < first[0] + first[1] + first[2]); /* under 10% in 1 s */
    sim_run(&s, 3000 * MS, slow);
    assert_true(slow[0] * 100 < slow[0] + slow[1] + slow[2]);
    s.lat[0] = MS; /* fixed: probes find it fast and it earns its share back */
    sim_run(&s, 8000 * MS, NULL);
    sim_run(&s, 10000 * MS, late);
    assert_true(late[0] * 4 > late[0] + late[1] + late[2]); /* over 25% of 3 */
    fx_fini(&f);
}

static void test_least_latency_tries_new_backends(void **state)
{
    struct fx f;
    unsigned count[3] = {0};

    (void)state;
    fx_init_ports(&f, RP_LB_LEAST_LATENCY, NULL, NULL, 3, 9);
    bal_observe(f.t->backends[0], 1000 * MS, MS);
    bal_observe(f.t->backends[1], 1000 * MS, MS);
    for (int i = 0; i < 300; i++)
        count[pick(&f, NULL, 0)]++;
    assert_true(count[2] > 150); /* it wins every pair it is in: about 2/3 */
    set_inflight(&f, 2, 1);      /* no answer yet from its first request: hold back */
    memset(count, 0, sizeof(count));
    for (int i = 0; i < 300; i++)
        count[pick(&f, NULL, 0)]++;
    assert_int_equal(count[2], 0);
    fx_fini(&f);
}

static void test_least_latency_weights_and_skips(void **state)
{
    static const int w[2] = {1, 4};
    struct fx f;

    (void)state;
    fx_init_ports(&f, RP_LB_LEAST_LATENCY, w, NULL, 2, 4);
    bal_observe(f.t->backends[0], 1000 * MS, 2 * MS);
    bal_observe(f.t->backends[1], 1000 * MS, 5 * MS); /* 5/4 beats 2/1 */
    for (int i = 0; i < 20; i++)
        assert_int_equal(pick(&f, NULL, 0), 1);
    assert_int_equal(pick(&f, NULL, 1u << 1), 0);
    set_healthy(&f, 0, 0);
    assert_null(bal_pick(&f.bw, f.t, NULL, 1u << 1));
    fx_fini(&f);
}

static void test_least_latency_many_backends(void **state)
{
    struct fx f;
    unsigned count[64] = {0};

    (void)state;
    fx_init_ports(&f, RP_LB_LEAST_LATENCY, NULL, NULL, 64, 11);
    for (uint32_t i = 0; i < 64; i++)
        bal_observe(f.t->backends[i], 1000 * MS, i == 8 ? 500 * MS : MS);
    for (uint32_t i = 0; i < 64; i += 2)
        set_healthy(&f, i + 1, 0); /* the first draw mostly misses: the redraw is exact */
    for (int i = 0; i < 6400; i++) {
        int p = pick(&f, NULL, 1u << 0);
        assert_true(p > 0 && p % 2 == 0);
        count[p]++;
    }
    for (uint32_t i = 2; i < 64; i += 2)
        assert_true(i == 8 ? count[i] == 0 : count[i] > 100); /* 8 is slow: it loses every pair */
    fx_fini(&f);
}

struct observer {
    struct backend *be;
    uint64_t base;
};

static void *observe_loop(void *arg)
{
    struct observer *o = arg;

    for (uint64_t i = 0; i < 200000; i++)
        bal_observe(o->be, o->base + i * 1000, i % 3 ? 2 * MS : 3 * MS);
    return NULL;
}

static void test_observe_concurrently(void **state)
{
    struct fx f;
    pthread_t th[4];
    struct observer o[4];
    double e;

    (void)state;
    fx_init(&f, RP_LB_LEAST_LATENCY, NULL, 1);
    for (int i = 0; i < 4; i++) {
        o[i] = (struct observer){.be = f.t->backends[0], .base = 1000 * MS + (uint64_t)i * 7};
        assert_int_equal(pthread_create(&th[i], NULL, observe_loop, &o[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    e = ewma_ms(&f, 0); /* every value ever stored lies between the samples */
    assert_true(e >= 2.0 && e <= 3.0);
    assert_true(atomic_load(&f.t->backends[0]->lat_stamp) != 0);
    fx_fini(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rr_exact),
        cmocka_unit_test(test_rr_skips_down_and_excluded),
        cmocka_unit_test(test_rr_workers_start_apart),
        cmocka_unit_test(test_wrr_smooth_sequence),
        cmocka_unit_test(test_wrr_never_longer_than_weight),
        cmocka_unit_test(test_wrr_seed_rotates_the_cycle),
        cmocka_unit_test(test_wrr_skips_down_and_excluded),
        cmocka_unit_test(test_least_conn_lowest_ratio),
        cmocka_unit_test(test_least_conn_rotates_ties),
        cmocka_unit_test(test_least_conn_skips_down_and_excluded),
        cmocka_unit_test(test_ip_hash_consistent),
        cmocka_unit_test(test_ip_hash_ignores_config_order),
        cmocka_unit_test(test_ip_hash_v4_mapped_is_v4),
        cmocka_unit_test(test_ip_hash_weighted_shares),
        cmocka_unit_test(test_ip_hash_without_client_rotates),
        cmocka_unit_test(test_random_uniform),
        cmocka_unit_test(test_random_weighted),
        cmocka_unit_test(test_random_skips_down_and_excluded),
        cmocka_unit_test(test_drained_never_picked),
        cmocka_unit_test(test_weight_change_rebuilds_tables),
        cmocka_unit_test(test_observe_peak_and_decay),
        cmocka_unit_test(test_least_latency_avoids_observed_slow),
        cmocka_unit_test(test_least_latency_sheds_and_recovers),
        cmocka_unit_test(test_least_latency_tries_new_backends),
        cmocka_unit_test(test_least_latency_weights_and_skips),
        cmocka_unit_test(test_least_latency_many_backends),
        cmocka_unit_test(test_observe_concurrently),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
