"""Retries that are safe and none that are not (issue 11 points 1 and 2): a request that may
have reached a backend is sent again only when it is idempotent (or carries an
Idempotency-Key); try_timeout moves a slow attempt to another backend, and with hedge the
first response head of two attempts wins."""
import time

from harness import Client, ScriptBackend, domain_conf, get


def ok(name="A", body=b"ok"):
    return (b"HTTP/1.1 200 OK\r\nX-Origin: " + name.encode() + b"\r\nContent-Length: " +
            str(len(body)).encode() + b"\r\n\r\n" + body)


def count(be, method, path):
    with be.lock:
        return sum(1 for r in be.log if r.method == method and r.path == path)


def crash_on(path):
    """Answers everything except `path`, which it reads in full and answers with a reset
    (as a backend that crashed would) when it arrives on a connection that already served
    a request."""
    return lambda req: ["reset"] if req.path == path and req.n > 1 else [ok()]


def warm(px, n=3):
    c = Client(px.port)
    for _ in range(n):
        assert c.request().status == 200
    c.close()


def test_post_reset_after_read_on_pooled_connection_is_sent_once(P):
    # the reproduction: the pool is warm, the POST is read whole, then a reset
    be = ScriptBackend(crash_on("/pay"))
    px = P.proxy(domain_conf("test.local", [be.port], "max_idle_conns = 8;"))
    warm(px)
    c = Client(px.port)
    r = c.request("POST", "/pay", body="amount=100")
    assert r.status == 502, r.status
    time.sleep(0.3)  # a replay, if any, would have arrived by now
    assert count(be, "POST", "/pay") == 1, be.log
    assert get(px.port).status == 200  # and the proxy goes on


def test_get_reset_on_pooled_connection_is_retried_fresh(P):
    be = ScriptBackend(crash_on("/page"))
    px = P.proxy(domain_conf("test.local", [be.port], "max_idle_conns = 8; max_retries = 0;"))
    warm(px)
    r = get(px.port, "/page")
    # the stale-connection retry goes on a fresh connection, where it is request 1: answered
    assert r.status == 200, r.status
    assert count(be, "GET", "/page") == 2, be.log


def test_post_with_idempotency_key_is_retried(P):
    be = ScriptBackend(crash_on("/pay"))
    px = P.proxy(domain_conf("test.local", [be.port], "max_idle_conns = 8;"))
    warm(px)
    c = Client(px.port)
    r = c.request("POST", "/pay", body="amount=100",
                  headers=[("Idempotency-Key", '"8e03978e-40d5-43e8-bc93-6894a57f9324"')])
    assert r.status == 200, r.status
    assert count(be, "POST", "/pay") == 2, be.log


def test_post_after_backend_closed_idle_connection_goes_fresh(P):
    # the backend closes each connection 200 ms after its answer: the pool sees the close
    # before the POST is written, so the POST goes on a fresh connection, once, and succeeds
    be = ScriptBackend(lambda req: [ok(), 0.2, "close"])
    px = P.proxy(domain_conf("test.local", [be.port], "max_idle_conns = 8; max_retries = 0;"))
    assert get(px.port).status == 200
    time.sleep(0.5)
    c = Client(px.port)
    r = c.request("POST", "/pay", body="x")
    assert r.status == 200, r.status
    assert count(be, "POST", "/pay") == 1, be.log


def silent(req):
    return [5.0, "close"]  # reads the request, never answers within the test's time


def test_try_timeout_moves_a_get_to_another_backend(P):
    hung = ScriptBackend(silent)
    good = ScriptBackend(lambda req: [ok("good")])
    px = P.proxy(domain_conf("test.local", [hung.port, good.port],
                             'try_timeout = "150ms"; read_timeout = "3s"; max_retries = 1;'))
    for _ in range(4):  # round robin: every other request starts on the hung backend
        t0 = time.time()
        r = get(px.port)
        dt = time.time() - t0
        assert r.status == 200 and r.header("X-Origin") == "good", r
        assert dt < 1.0, dt
    assert count(hung, "GET", "/") >= 1  # it was tried, and abandoned after 150 ms


def test_try_timeout_does_not_resend_a_post(P):
    hung = ScriptBackend(silent)
    good = ScriptBackend(lambda req: [ok("good")])
    px = P.proxy(domain_conf("test.local", [hung.port, good.port],
                             'try_timeout = "100ms"; read_timeout = "800ms"; max_retries = 1;'))
    codes = []
    for _ in range(2):
        c = Client(px.port)
        codes.append(c.request("POST", "/pay", body="x").status)
        c.close()
    # one of the two started on the hung backend: it waited for read_timeout, was not
    # sent to the other backend, and got 504
    assert sorted(codes) == [200, 504], codes
    assert count(good, "POST", "/pay") == 1 and count(hung, "POST", "/pay") == 1


def test_try_timeouts_take_a_hung_backend_out(P):
    hung = ScriptBackend(silent)
    good = ScriptBackend(lambda req: [ok("good")])
    px = P.proxy(domain_conf("test.local", [hung.port, good.port],
                             'try_timeout = "100ms"; read_timeout = "3s"; '
                             'health_check = { fail_threshold = 2; interval = "30s"; };'))
    for _ in range(6):
        assert get(px.port).status == 200
    assert "DOWN" in P.log_of(px)
    before = count(hung, "GET", "/")
    t0 = time.time()
    for _ in range(10):
        assert get(px.port).status == 200
    assert count(hung, "GET", "/") == before  # out of the rotation
    assert time.time() - t0 < 1.0


def slow(delay, name):
    return lambda req: [float(delay), ok(name)]


def test_hedge_first_head_wins(P):
    a = ScriptBackend(slow(0.8, "slow"))
    b = ScriptBackend(slow(0.0, "fast"))
    px = P.proxy(domain_conf("test.local", [a.port, b.port],
                             'try_timeout = "100ms"; hedge = true; read_timeout = "3s";'))
    for _ in range(4):
        t0 = time.time()
        r = get(px.port)
        dt = time.time() - t0
        assert r.status == 200 and r.header("X-Origin") == "fast", r
        assert dt < 0.6, dt
    assert count(a, "GET", "/") >= 1  # the slow one was asked first, then hedged


def test_hedge_keeps_the_first_attempt(P):
    # both are slow, the first less so: without hedging its answer would be abandoned at
    # the try timeout; with it, the first attempt's head still wins
    a = ScriptBackend(slow(0.3, "first"))
    b = ScriptBackend(slow(1.5, "second"))
    px = P.proxy(domain_conf("test.local", [a.port, b.port],
                             'try_timeout = "100ms"; hedge = true; read_timeout = "3s";'))
    got = set()
    for _ in range(2):
        t0 = time.time()
        r = get(px.port)
        assert r.status == 200, r
        got.add(r.header("X-Origin"))
        assert time.time() - t0 < 1.2
    assert got == {"first"}, got  # whichever started, "first" answered first
