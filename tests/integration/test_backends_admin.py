"""Runtime backend control on the admin API: GET /backends, POST /backends/drain, /enable and
/weight, under traffic: a drained backend gets no new request (and none fails), an enabled
one comes back, a weight change takes effect on every worker, bad input is refused."""
import json
import urllib.parse

from harness import Client, Load, domain_conf, free_port, get, wait_port

HOST = "b.local"
TOKEN = "adm1n"


def admin(port, method, path, **params):
    q = ("?" + urllib.parse.urlencode(params)) if params else ""
    return Client(port).request(method, path + q, host="admin",
                                headers=[("Authorization", f"Bearer {TOKEN}")])


def origins(port, n):
    seen = []
    for _ in range(n):
        r = get(port, "/", host=HOST)
        assert r.status == 200, r
        seen.append(r.header("X-Origin"))
    return seen


def start(P, lb, workers=1):
    a, b = P.origin("A"), P.origin("B")
    aport = free_port()
    conf = domain_conf(HOST, [a.port, b.port], lb=lb)
    conf += f'admin = {{ listen = "127.0.0.1:{aport}"; token = "{TOKEN}"; }};\n'
    px = P.proxy(conf, workers=workers)
    assert wait_port(aport)  # its own thread: P.proxy waited for the traffic port only
    return a, b, px, aport


def test_backends_listed_drained_and_enabled_under_traffic(P):
    a, b, px, aport = start(P, "round_robin", workers=2)
    addr_a = f"http://127.0.0.1:{a.port}"
    r = admin(aport, "GET", "/backends")
    assert r.status == 200 and r.header("Content-Type") == "application/json"
    lst = json.loads(r.body)
    assert [(x["domain"], x["addr"], x["weight"], x["state"]) for x in lst] == [
        (HOST, addr_a, 1, "up"), (HOST, f"http://127.0.0.1:{b.port}", 1, "up")]
    assert set(lst[0]) == {"domain", "addr", "weight", "state", "in_flight", "requests",
                           "failures", "latency_ms"}
    assert Client(aport).request("GET", "/backends", host="admin").status == 401  # token

    with Load(px.port, HOST) as load:
        r = admin(aport, "POST", "/backends/drain", domain=HOST, addr=addr_a)
        assert r.status == 200 and json.loads(r.body)["state"] == "drained"
        assert set(origins(px.port, 20)) == {"B"}  # both workers: no new request for A
        assert json.loads(admin(aport, "GET", "/backends").body)[0]["state"] == "drained"
        r = admin(aport, "POST", "/backends/enable", domain=HOST, addr=addr_a)
        assert r.status == 200 and json.loads(r.body)["state"] == "up"
        assert set(origins(px.port, 20)) == {"A", "B"}
        assert load.at_least(21)  # the drain and enable happened under traffic
    assert not load.failures, load.failures

    # every backend drained: nothing is sent (no last-resort fallback to a drained one)
    for o in (a, b):
        admin(aport, "POST", "/backends/drain", domain=HOST, addr=f"http://127.0.0.1:{o.port}")
    assert get(px.port, "/", host=HOST).status == 503


def test_backend_weight_changes_the_share(P):
    a, b, px, aport = start(P, "weighted_rr")
    addr_a = f"http://127.0.0.1:{a.port}"
    assert origins(px.port, 20).count("A") == 10
    r = admin(aport, "POST", "/backends/weight", domain=HOST, addr=addr_a, weight=3)
    assert r.status == 200 and json.loads(r.body)["weight"] == 3
    assert origins(px.port, 40).count("A") == 30  # smooth weighted round robin: exactly 3:1
    admin(aport, "POST", "/backends/weight", domain=HOST, addr=addr_a, weight=1)
    assert origins(px.port, 40).count("A") == 20


def test_backend_control_refuses_bad_input(P):
    a, b, px, aport = start(P, "round_robin")
    addr_a = f"http://127.0.0.1:{a.port}"
    assert admin(aport, "POST", "/backends/drain").status == 400
    assert admin(aport, "POST", "/backends/drain", domain=HOST).status == 400
    assert admin(aport, "POST", "/backends/drain", domain="nope.local", addr=addr_a).status == 404
    assert admin(aport, "POST", "/backends/drain", domain=HOST, addr="http://x:1").status == 404
    for w in ("0", "101", "-1", "3x", ""):
        r = admin(aport, "POST", "/backends/weight", domain=HOST, addr=addr_a, weight=w)
        assert r.status == 400, (w, r)
    assert admin(aport, "GET", "/backends/drain").status == 405
    assert json.loads(admin(aport, "GET", "/backends").body)[0]["weight"] == 1
    assert set(origins(px.port, 10)) == {"A", "B"}  # nothing changed
