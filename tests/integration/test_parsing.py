"""Malformed and oversized requests: each gets its 4xx, and none reaches the backend
(request smuggling defences of RFC 9112, DESIGN.md "HTTP/1.1 rules")."""
from harness import Client, domain_conf, origin_stats

H = "Host: test.local\r\n"
BAD = [
    # (request bytes, expected status)
    ("GET / HTTP/1.1\r\n" + H + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\n" + H + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400),
    ("POST / HTTP/1.1\r\n" + H + "Content-Length: 5x\r\n\r\nhello", 400),
    ("POST / HTTP/1.1\r\n" + H + "Content-Length: -5\r\n\r\nhello", 400),
    ("POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("POST / HTTP/1.0\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\n" + H + "X-Folded: a\r\n b\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\n" + H + "X-Space : a\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\n" + H + "X-Ctl: a\x01b\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\n" + H + H + "\r\n", 400),
    ("GET / HTTP/1.1\r\n" + H + "X-CR: a\rb\r\n\r\n", 400),
    ("GET /a b HTTP/1.1\r\n" + H + "\r\n", 400),
    ("GET / HTTP/2.0\r\n" + H + "\r\n", 505),
    ("GET / HTTP/1.1\r\n" + H + "Expect: something\r\n\r\n", 417),
    ("GET /" + "a" * 9000 + " HTTP/1.1\r\n" + H + "\r\n", 414),
    ("GET / HTTP/1.1\r\n" + H + "X-Big: " + "b" * 17000 + "\r\n\r\n", 431),
    ("GET / HTTP/1.1\r\n" + H + "".join(f"X-{i}: v\r\n" for i in range(101)) + "\r\n", 431),
    ("POST / HTTP/1.1\r\n" + H + "Content-Length: 99999999999\r\n\r\n", 413),
    ("POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
]


def test_malformed_requests_rejected_before_the_backend(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port]))
    for raw, status in BAD:
        c = Client(px.port)
        c.send(raw.encode("latin-1"))
        r = c.read_response()
        assert r.status == status, (raw[:80], r.status, status)
        assert r.header("Connection") == "close", raw[:80]
        assert c.closed_by_peer(), raw[:80]
        c.close()
    reqs, _ = origin_stats(a.port)
    assert reqs == 0, f"{reqs} malformed requests reached the backend"


def test_smuggled_request_after_bad_framing_is_not_forwarded(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port]))
    c = Client(px.port)
    c.send("POST / HTTP/1.1\r\nHost: test.local\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
           "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: test.local\r\n\r\n")
    assert c.read_response().status == 400
    assert c.closed_by_peer()
    assert origin_stats(a.port)[0] == 0


def test_limits_are_configurable(P):
    a = P.origin("A")
    px = P.proxy("max_header_bytes = 2048; max_target_len = 100; max_body_size = 10;\n"
                 + domain_conf("test.local", [a.port]))
    c = Client(px.port)
    assert c.request(path="/" + "a" * 200).status == 414
    c = Client(px.port)
    assert c.request(headers=[("X-Big", "b" * 3000)]).status == 431
    c = Client(px.port)
    assert c.request("POST", body="x" * 11).status == 413
    c = Client(px.port)
    assert c.request("POST", body="x" * 10).status == 200
