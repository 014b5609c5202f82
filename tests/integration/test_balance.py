"""Balancing as clients see it, through real processes: exact rotations on one worker,
weights, least in flight, least latency, sticky client hashing and uniform random choice."""
import collections
import threading
import time

from harness import Client, domain_conf, get


def weighted_conf(ports_weights, lb, extra=""):
    backends = ", ".join(f'{{ addr = "http://127.0.0.1:{p}"; weight = {w}; }}'
                         for p, w in ports_weights)
    return (f'domains = ( {{ domain = "test.local"; backends = ( {backends} ); '
            f'load_balancer = "{lb}"; {extra} }} );\n')


def sequence(port, n, source=None):
    c = Client(port, source=source)
    out = [c.request().header("X-Origin") for _ in range(n)]
    c.close()
    return out


def test_round_robin_exact_on_one_worker(P):
    o = [P.origin(n) for n in "ABC"]
    px = P.proxy(domain_conf("test.local", [x.port for x in o]))
    counts = collections.Counter(sequence(px.port, 300))
    assert counts == {"A": 100, "B": 100, "C": 100}, counts


def test_weighted_5_3_1(P):
    o = [P.origin(n) for n in "ABC"]
    conf = weighted_conf(zip([x.port for x in o], (5, 3, 1)), "weighted_rr")
    px = P.proxy(conf)
    seq = sequence(px.port, 900)
    assert collections.Counter(seq) == {"A": 500, "B": 300, "C": 100}
    run, longest = 1, collections.Counter()
    for prev, cur in zip(seq, seq[1:]):
        run = run + 1 if cur == prev else 1
        longest[cur] = max(longest[cur], run)
    assert longest["A"] <= 5 and longest["B"] <= 3 and longest["C"] <= 1, longest
    P.stop(px)
    px2 = P.proxy(conf, workers=2)
    counts = collections.Counter()
    for _ in range(18):  # many connections, spread over both workers by the kernel
        counts.update(sequence(px2.port, 50))
    for name, share in (("A", 5 / 9), ("B", 3 / 9), ("C", 1 / 9)):
        assert abs(counts[name] / 900 - share) <= 0.02, counts


def concurrent_counts(port, n_threads, per_thread, path="/"):
    counts = collections.Counter()
    lock = threading.Lock()

    def run():
        c = Client(port)
        for _ in range(per_thread):
            name = c.request(path=path).header("X-Origin")
            with lock:
                counts[name] += 1
        c.close()

    ts = [threading.Thread(target=run) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return counts


def test_least_conn_avoids_the_slow_backend(P):
    slow = P.origin("SLOW", "--delay", "200")
    fast = [P.origin(n) for n in "AB"]
    px = P.proxy(domain_conf("test.local", [slow.port] + [x.port for x in fast], lb="least_conn"))
    counts = concurrent_counts(px.port, 8, 25)
    assert counts["SLOW"] < 0.1 * sum(counts.values()), counts


def test_least_latency_sheds_the_slow_backend(P):
    slow = P.origin("SLOW", "--delay", "100")
    fast = [P.origin(n) for n in "AB"]
    px = P.proxy(domain_conf("test.local", [slow.port] + [x.port for x in fast],
                             lb="least_latency"))
    t0 = time.time()
    counts = concurrent_counts(px.port, 4, 60)
    assert time.time() - t0 < 5
    assert counts["SLOW"] < 0.1 * sum(counts.values()), counts


def test_ip_hash_sticky_and_minimal_movement(P):
    o = [P.origin(n) for n in "ABC"]
    px = P.proxy(domain_conf("test.local", [x.port for x in o], lb="ip_hash"))
    clients = [f"127.0.0.{i}" for i in range(2, 22)]
    before = {}
    for ip in clients:
        seen = set(sequence(px.port, 100, source=ip))
        assert len(seen) == 1, (ip, seen)
        before[ip] = seen.pop()
    assert len(set(before.values())) == 3, before  # 20 clients spread over all three
    victim = before[clients[0]]
    P.stop(next(x for x in o if x.name == victim))
    for ip in clients:
        after = set(sequence(px.port, 5, source=ip))
        assert len(after) == 1, (ip, after)
        if before[ip] != victim:
            assert after == {before[ip]}, (ip, before[ip], after)  # only the victim's moved
        else:
            assert after != {victim}


def test_random_is_uniform(P):
    o = [P.origin(n) for n in "ABC"]
    px = P.proxy(domain_conf("test.local", [x.port for x in o], lb="random"))
    counts = collections.Counter(sequence(px.port, 3000))
    chi2 = sum((counts[n] - 1000) ** 2 / 1000 for n in "ABC")
    assert chi2 < 9.21, (counts, chi2)  # chi-square, 2 degrees of freedom, 1% level
