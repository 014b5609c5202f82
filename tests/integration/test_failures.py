"""Backends that refuse, reset, stall or vanish, and clients that stall: every request gets
an answer (retried, 502 or 504) within its deadline, and nothing hangs."""
import socket
import time

from harness import Client, domain_conf, free_port, get, origin_stats


def test_connect_refused_retries_next_backend(P):
    a = P.origin("A")
    dead = free_port()  # nothing listens here
    px = P.proxy(domain_conf("test.local", [dead, a.port]))
    for _ in range(6):
        r = get(px.port)
        assert r.status == 200 and r.header("X-Origin") == "A"


def test_all_backends_down_is_502(P):
    px = P.proxy(domain_conf("test.local", [free_port(), free_port()]))
    t0 = time.time()
    r = get(px.port)
    assert r.status == 502, r.status
    assert time.time() - t0 < 2


def test_backend_killed_mid_run(P):
    a = P.origin("A")
    b = P.origin("B")
    px = P.proxy(domain_conf("test.local", [a.port, b.port]))
    c = Client(px.port)
    for _ in range(4):
        assert c.request().status == 200
    P.stop(b)
    seen = [c.request() for _ in range(6)]
    assert all(r.status == 200 and r.header("X-Origin") == "A" for r in seen), seen


def test_read_timeout_is_504(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port], 'read_timeout = "300ms";'))
    t0 = time.time()
    r = get(px.port, "/?delay=3000")
    dt = time.time() - t0
    assert r.status == 504, r.status
    assert 0.25 < dt < 1.5, dt
    assert get(px.port).status == 200


def test_connect_timeout_is_504(P):
    # a listener whose accept queue is full never completes new handshakes
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    px = P.proxy(domain_conf("test.local", [port], 'connect_timeout = "300ms"; max_retries = 0;'))
    t0 = time.time()
    r = get(px.port)
    assert r.status == 504, r.status
    assert time.time() - t0 < 2
    ls.close()


def test_backend_reset_get_retried_post_not(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port], "max_retries = 1;"))
    # GET /?reset=1 resets on every attempt: retried once, then 502
    r = get(px.port, "/?reset=1")
    assert r.status == 502
    assert origin_stats(a.port)[0] == 0  # resets are not counted as answers
    c = Client(px.port)
    r = c.request("POST", "/?reset=1", body="x")
    assert r.status == 502


def test_stale_pooled_connection_is_not_a_failure(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port], "max_retries = 0;"))
    assert get(px.port).status == 200  # leaves a pooled connection to A
    port = a.port
    P.stop(a)
    a2 = P.origin("A2", port=port)  # same address, new process: the pooled socket is dead
    for _ in range(3):
        r = get(px.port)
        assert r.status == 200 and r.header("X-Origin") == "A2", r.status
    assert a2


def test_backend_closing_after_each_response(P):
    a = P.origin("A", "--close")
    px = P.proxy(domain_conf("test.local", [a.port], "max_retries = 0;"))
    c = Client(px.port)
    for _ in range(20):
        assert c.request().status == 200


def test_header_timeout_cuts_slowloris(P):
    a = P.origin("A")
    px = P.proxy('header_timeout = "1s";\n' + domain_conf("test.local", [a.port]))
    c = Client(px.port)
    t0 = time.time()
    c.send("GET / HTTP/1.1\r\n")
    closed = False
    for i in range(30):  # trickle a byte every 100 ms: must not extend the deadline
        try:
            c.send(f"X-{i}: a\r\n")
        except OSError:
            closed = True
            break
        time.sleep(0.1)
        if time.time() - t0 > 2.5:
            break
    r_closed = closed or c.closed_by_peer(2)
    assert r_closed or b"408" in c.buf, "slowloris client still connected"
    assert time.time() - t0 < 3.0
    assert origin_stats(a.port)[0] == 0


def test_idle_keepalive_timeout(P):
    a = P.origin("A")
    px = P.proxy('keepalive_timeout = "500ms";\n' + domain_conf("test.local", [a.port]))
    c = Client(px.port)
    assert c.request().status == 200
    t0 = time.time()
    assert c.closed_by_peer(3)
    assert 0.3 < time.time() - t0 < 2


def test_client_gone_mid_response_does_not_hurt(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port]))
    for _ in range(5):
        c = Client(px.port)
        c.send("GET /?size=5000000 HTTP/1.1\r\nHost: test.local\r\n\r\n")
        c.sock.recv(1000)
        c.close()
    assert get(px.port).status == 200


def test_request_body_stall_is_408(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port], 'read_timeout = "500ms";'))
    c = Client(px.port)
    c.send("POST / HTTP/1.1\r\nHost: test.local\r\nContent-Length: 100\r\n\r\nonly part")
    r = c.read_response()
    assert r.status == 408, r.status  # the client stalled, not the backend
