"""Proxying as a client and a backend see it: routing, forwarded heads, bodies in every
framing, keep-alive, pipelining, and connection reuse towards backends."""
import socket

from harness import (Client, ScriptedBackend, curl, domain_conf, free_port, get, origin_stats,
                     wait_port)


def two_origins(P, *args):
    return P.origin("A", *args), P.origin("B", *args)


def test_round_robin_over_domain(P):
    a, b = two_origins(P)
    px = P.proxy(domain_conf("test.local", [a.port, b.port]))
    seen = [get(px.port).header("X-Origin") for _ in range(10)]
    assert sorted(set(seen)) == ["A", "B"], seen
    assert seen.count("A") == 5, seen
    r = get(px.port)
    assert r.status == 200 and r.body in (b"hello from A\n", b"hello from B\n"), r.body


def test_host_matching_exact_wildcard_case_port(P):
    a, b = two_origins(P)
    conf = ('domains = ( { domain = "api.example.com"; backends = ( { addr = "http://127.0.0.1:%d"; } ); },'
            ' { domain = "*.example.com"; backends = ( { addr = "http://127.0.0.1:%d"; } ); } );\n'
            % (a.port, b.port))
    px = P.proxy(conf)
    assert get(px.port, host="api.example.com").header("X-Origin") == "A"
    assert get(px.port, host="API.Example.COM:8080").header("X-Origin") == "A"
    assert get(px.port, host="www.example.com").header("X-Origin") == "B"
    assert get(px.port, host="a.b.example.com").header("X-Origin") == "B"
    assert get(px.port, host="example.com").status == 404
    assert get(px.port, host="other.org").status == 404


def test_path_routes_longest_prefix(P):
    a, b = two_origins(P)
    c = P.origin("C")
    conf = ('routes = ( { path_prefix = "/"; backend = "http://127.0.0.1:%d"; },'
            ' { path_prefix = "/api/"; backend = "http://127.0.0.1:%d"; },'
            ' { path_prefix = "/api/v2/"; backend = "http://127.0.0.1:%d"; host_header = "v2.internal"; } );\n'
            % (a.port, b.port, c.port))
    px = P.proxy(conf)
    assert get(px.port, "/index.html", host="x").header("X-Origin") == "A"
    assert get(px.port, "/api/users", host="x").header("X-Origin") == "B"
    r = get(px.port, "/api/v2/users?echo=1", host="x")
    assert r.header("X-Origin") == "C"
    assert b"\r\nHost: v2.internal\r\n" in r.body, r.body


def test_no_route_is_404(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port]))
    r = get(px.port, host="unknown.local")
    assert r.status == 404
    assert origin_stats(a.port)[0] == 0
    c = Client(px.port)  # a local answer keeps the connection, in sync
    assert c.request(host="unknown.local").status == 404
    assert c.request().status == 200
    c.send("GET / HTTP/1.1\r\nHost: nope\r\n\r\nGET / HTTP/1.1\r\nHost: test.local\r\n\r\n")
    assert [c.read_response().status for _ in range(2)] == [404, 200]


def test_forwarded_head_as_backend_sees_it(P):
    a = P.origin("A", "--echo")
    px = P.proxy(domain_conf("test.local", [a.port]))
    r = get(px.port, "/p?q=1", headers=[
        ("Connection", "keep-alive, X-Secret-Hop"), ("X-Secret-Hop", "1"), ("Keep-Alive", "300"),
        ("TE", "trailers"), ("Upgrade", "websocket"), ("Proxy-Connection", "x"),
        ("X-Forwarded-For", "10.9.9.9"), ("X-Forwarded-Proto", "https"), ("User-Agent", "t/1")])
    head = r.body.decode()
    lines = head.split("\r\n")
    assert lines[0] == "GET /p?q=1 HTTP/1.1", lines[0]
    assert f"Host: 127.0.0.1:{a.port}" in lines
    assert "X-Forwarded-For: 10.9.9.9, 127.0.0.1" in lines, head
    assert "X-Forwarded-Proto: http" in lines and "X-Forwarded-Host: test.local" in lines
    assert "User-Agent: t/1" in lines
    for hop in ("X-Secret-Hop", "Keep-Alive", "TE:", "Upgrade", "Proxy-Connection", "Connection"):
        assert not any(l.startswith(hop) for l in lines), (hop, head)


def test_preserve_host_and_host_header(P):
    a = P.origin("A", "--echo")
    b = P.origin("B", "--echo")
    conf = ('domains = ( { domain = "keep.local"; preserve_host = true; backends = ( { addr = "http://127.0.0.1:%d"; } ); },'
            ' { domain = "set.local"; host_header = "backend.internal"; backends = ( { addr = "http://127.0.0.1:%d"; } ); } );\n'
            % (a.port, b.port))
    px = P.proxy(conf)
    assert b"\r\nHost: keep.local:99\r\n" in get(px.port, host="keep.local:99").body
    assert b"\r\nHost: backend.internal\r\n" in get(px.port, host="set.local").body


def test_keepalive_and_pool_reuse(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port]))
    _, conns0 = origin_stats(a.port)
    c = Client(px.port)
    for _ in range(50):
        assert c.request().status == 200
    c.close()
    for _ in range(50):  # new client connections reuse the pooled backend connection
        assert get(px.port).status == 200
    reqs, conns = origin_stats(a.port)
    used = conns - conns0 - 1  # the second stats request is a connection too
    assert reqs == 100, reqs
    assert used == 1, f"100 requests used {used} backend connections"


def test_pipelined_requests_answered_in_order(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port]))
    c = Client(px.port)
    reqs = "".join(f"GET /?size={n}&delay={d} HTTP/1.1\r\nHost: test.local\r\n\r\n"
                   for n, d in ((10, 50), (20, 0), (30, 10)))
    c.send(reqs)
    sizes = [len(c.read_response().body) for _ in range(3)]
    assert sizes == [10, 20, 30], sizes


def test_request_bodies_content_length_and_chunked(P):
    a = P.origin("A", "--echo")
    px = P.proxy(domain_conf("test.local", [a.port]))
    c = Client(px.port)
    r = c.request("POST", "/cl", body="hello body")
    assert r.body.endswith(b"\r\n\r\nhello body"), r.body
    assert b"Content-Length: 10\r\n" in r.body
    c.send("POST /ch HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    r = c.read_response()
    assert b"Transfer-Encoding: chunked\r\n" in r.body
    assert r.body.endswith(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), r.body
    big = bytes(range(256)) * 4096  # 1 MiB, streamed both ways
    r = c.request("PUT", "/big", body=big)
    assert r.body.endswith(big) and r.status == 200


def test_response_framings(P):
    a = P.origin("A")
    ch = P.origin("CH", "--chunked", "-s", "100000")
    px = P.proxy(domain_conf("test.local", [a.port]) .replace(");\n", ",") +
                 ' { domain = "ch.local"; backends = ( { addr = "http://127.0.0.1:%d"; } ); } );\n' % ch.port)
    c = Client(px.port)
    r = c.request(path="/?size=200000")
    assert len(r.body) == 200000 and r.header("Content-Length") == "200000"
    r = c.request(host="ch.local")
    assert r.header("Transfer-Encoding") == "chunked" and len(r.body) == 100000
    r = c.request("HEAD", "/?size=5000")
    assert r.header("Content-Length") == "5000" and r.body == b""
    r = c.request(path="/?status=204")
    assert r.status == 204 and r.body == b""
    r = c.request(path="/?status=304")
    assert r.status == 304
    assert c.request().status == 200  # the connection is still in sync
    # an HTTP/1.0 client gets the chunked body decoded, then a close
    c10 = Client(px.port)
    r = c10.request(host="ch.local", version="HTTP/1.0")
    assert r.header("Transfer-Encoding") is None and len(r.body) == 100000
    assert r.header("Connection") == "close"


def test_expect_100_continue(P):
    a = P.origin("A", "--echo")
    px = P.proxy(domain_conf("test.local", [a.port]))
    c = Client(px.port)
    c.send("POST /up HTTP/1.1\r\nHost: test.local\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    interim = c.read_response(allow_interim=True)
    assert interim.status == 100
    c.send("data")
    r = c.read_response()
    assert r.status == 200 and r.body.endswith(b"data")
    assert b"Expect" not in r.body
    res = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: test.local",
               "-H", "Expect: 100-continue", "--data-binary", "x" * 2000,
               f"http://127.0.0.1:{px.port}/")
    assert res.stdout == b"200", res


def test_http10_client(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port]))
    c = Client(px.port)
    r = c.request(version="HTTP/1.0")
    assert r.status == 200 and r.body == b"hello from A\n"
    assert c.closed_by_peer()
    c = Client(px.port)
    r = c.request(version="HTTP/1.0", headers=[("Connection", "keep-alive")])
    assert r.header("Connection") == "keep-alive"
    assert c.request(version="HTTP/1.0").status == 200


def test_curl_end_to_end(P):
    a, b = two_origins(P)
    px = P.proxy(domain_conf("test.local", [a.port, b.port]))
    res = curl("-s", "-D", "-", "--resolve", f"test.local:{px.port}:127.0.0.1",
               f"http://test.local:{px.port}/", f"http://test.local:{px.port}/")
    out = res.stdout.decode()
    assert out.count("HTTP/1.1 200") == 2, out
    assert "X-Origin: A" in out and "X-Origin: B" in out, out


def test_client_connection_close(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port]))
    c = Client(px.port)
    r = c.request(headers=[("Connection", "close")])
    assert r.status == 200 and r.header("Connection") == "close"
    assert c.closed_by_peer()


def test_ipv6_listener(P):
    a = P.origin("A")
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port6 = s.getsockname()[1]
    p4 = free_port()
    px = P.proxy(domain_conf("test.local", [a.port]),
                 listen=f'["127.0.0.1:{p4}", "[::1]:{port6}"]', port=p4)
    assert wait_port(port6, host="::1")
    assert Client(port6, host="::1").request().status == 200
    assert get(px.port).status == 200


def test_response_read_until_close(P):
    be = ScriptedBackend(b"HTTP/1.1 200 OK\r\nX-Origin: raw\r\n\r\nall of this until the close")
    px = P.proxy(domain_conf("test.local", [be.port]))
    c = Client(px.port)
    r = c.request()
    assert r.status == 200 and r.body == b"all of this until the close", r.body
    assert r.header("Connection") == "close"  # no framing of its own: the client sees a close
    be.close()


def test_interim_1xx_forwarded(P):
    be = ScriptedBackend(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", keep=True)
    px = P.proxy(domain_conf("test.local", [be.port]))
    c = Client(px.port)
    c.send("GET / HTTP/1.1\r\nHost: test.local\r\n\r\n")
    early = c.read_response(allow_interim=True)
    assert early.status == 103 and early.header("Link") == "</a.css>; rel=preload"
    final = c.read_response()
    assert final.status == 200 and final.body == b"ok"
    assert c.request().status == 200  # the backend connection was reused
    assert len(be.requests) == 2
    be.close()


def test_garbage_from_backend_is_502(P):
    for reply in (b"HELLO\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                  b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"):
        be = ScriptedBackend(reply)
        px = P.proxy(domain_conf("test.local", [be.port], "max_retries = 0;"))
        assert get(px.port).status == 502, reply
        P.stop(px)
        be.close()


def test_broken_body_from_backend_cuts_the_response(P):
    # the head went out already: the only honest signal left is closing before the end
    # (a bad chunk that comes with the head is a 502 instead: test_misbehave)
    for reply in (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",):
        be = ScriptedBackend(reply)
        px = P.proxy(domain_conf("test.local", [be.port], "max_retries = 0;"))
        c = Client(px.port)
        c.send("GET / HTTP/1.1\r\nHost: test.local\r\n\r\n")
        try:
            r = c.read_response()
            raise AssertionError(f"a whole response came through: {r} {r.body!r}")
        except ConnectionError:
            pass  # closed mid-body, as it must be
        P.stop(px)
        be.close()
