"""ringload, the load generator, as its users see it: against ringorigin it reports the latency
the origin imposes, sends exactly the requests it says it did, counts errors and statuses,
reconnects with --close, holds a -R rate, rejects bad options with status 2, and speaks
https:// (through ringproxy's TLS listener) with verification, -k and --close."""
import json
import subprocess

from harness import BUILD, free_port, origin_stats


def ringload(*args, timeout=60):
    return subprocess.run([f"{BUILD}/ringload", *args], capture_output=True, text=True,
                          timeout=timeout)


def ringload_json(*args):
    r = ringload("--json", *args)
    assert r.stdout.strip(), f"no output (rc {r.returncode}): {r.stderr}"
    return r, json.loads(r.stdout)


def url(p, path="/"):
    return f"http://127.0.0.1:{p.port}{path}"


def test_ringload_delay_p50(P):
    o = P.origin("D", "--delay", "10")
    r, j = ringload_json("-c", "4", "-t", "2", "-d", "2s", url(o))
    assert r.returncode == 0, r.stderr
    p50 = j["latency_us"]["p50"]
    assert 9000 <= p50 <= 11000, j
    assert j["latency_us"]["p99"] >= p50 and j["latency_us"]["max"] >= j["latency_us"]["p99"]
    # 4 connections, 10 ms each, 2 s: about 800 requests
    assert 600 <= j["requests"] <= 820, j
    assert j["status"]["2xx"] == j["requests"]
    assert abs(j["duration_s"] - 2.0) < 0.3, j
    assert sum(j["errors"].values()) == 0, j


def test_ringload_count_matches_origin(P):
    o = P.origin("N")
    r, j = ringload_json("-n", "500", "-c", "8", "-t", "2", url(o))
    assert r.returncode == 0, r.stderr
    assert j["requests"] == 500, j
    served, conns = origin_stats(o.port)
    assert served == 500, (served, j)
    assert conns - 2 == 8, conns  # the harness's readiness probe and the stats query
    # with pipelining too: the count stays exact
    r, j = ringload_json("-n", "333", "-c", "3", "-t", "1", "--pipeline", "4", url(o))
    assert r.returncode == 0 and j["requests"] == 333, (r.stderr, j)
    assert origin_stats(o.port)[0] == 833


def test_ringload_connect_errors(P):
    port = free_port()
    r = ringload("-c", "2", "-t", "1", "-d", "500ms", f"http://127.0.0.1:{port}/")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Socket errors: connect" in r.stdout, r.stdout
    last = r.stdout.strip().splitlines()[-1]
    assert "error" in last, last
    r, j = ringload_json("-c", "2", "-t", "1", "-n", "20", f"http://127.0.0.1:{port}/")
    assert r.returncode == 1
    assert j["errors"]["connect"] >= 1 and j["requests"] == 0, j


def test_ringload_close_mode(P):
    o = P.origin("C")
    r, j = ringload_json("--close", "-c", "4", "-t", "1", "-n", "200", url(o))
    assert r.returncode == 0, r.stderr
    assert j["requests"] == 200 and j["status"]["2xx"] == 200, j
    served, conns = origin_stats(o.port)
    assert served == 200
    assert conns >= 200, conns  # a new connection per request (+1 for the stats query)
    # the server closing each connection (Connection: close) is not an error either
    o2 = P.origin("X", "--close")
    r, j = ringload_json("-c", "4", "-t", "2", "-d", "1s", url(o2))
    assert r.returncode == 0, r.stderr
    assert j["requests"] > 50 and sum(j["errors"].values()) == 0, j


def test_ringload_chunked_and_big(P):
    o = P.origin("K", "--chunked")
    r, j = ringload_json("-c", "4", "-t", "1", "-n", "300", url(o, "/?size=70000"))
    assert r.returncode == 0, r.stderr
    assert j["status"]["2xx"] == 300 and sum(j["errors"].values()) == 0, j
    assert j["bytes"] > 300 * 70000, j
    r, j = ringload_json("-c", "2", "-t", "1", "-n", "50", url(o, "/?status=404"))
    assert j["status"]["4xx"] == 50 and r.returncode == 0, j
    r = ringload("-c", "2", "-t", "1", "-n", "50", url(o, "/?status=503"))
    assert "Non-2xx or 3xx responses: 50" in r.stdout, r.stdout


def test_ringload_rate(P):
    o = P.origin("R", "--delay", "5")
    r, j = ringload_json("-R", "200", "-c", "8", "-t", "2", "-d", "2s", url(o))
    assert r.returncode == 0, r.stderr
    assert 340 <= j["requests"] <= 420, j
    assert 170 <= j["rps"] <= 210, j
    assert 4500 <= j["latency_us"]["p50"] <= 8000, j


def test_ringload_rate_counts_stalls(P):
    # one connection at 100/s against a 50 ms origin: each request waits for the one before,
    # so latency from the intended send time grows far past 50 ms (coordinated omission)
    o = P.origin("S", "--delay", "50")
    r, j = ringload_json("-R", "100", "-c", "1", "-t", "1", "-d", "1s", url(o))
    assert r.returncode == 0, r.stderr
    assert j["latency_us"]["max"] > 300000, j
    assert j["latency_us"]["p50"] > 100000, j


def test_ringload_text_output(P):
    o = P.origin("T")
    r = ringload("-c", "2", "-t", "1", "-d", "300ms", "--latency", "-H", "X-Test: 1",
                 url(o))
    assert r.returncode == 0, r.stderr
    for needle in ("Latency Distribution", "99.99%", "requests in", "Requests/sec:",
                   "Transfer/sec:"):
        assert needle in r.stdout, r.stdout
    assert r.stderr == "", r.stderr  # no progress lines when stderr is not a terminal


def test_ringload_bad_options(P):
    for args in (["-c", "0", "http://127.0.0.1:1/"], ["--nope", "http://127.0.0.1:1/"],
                 ["-d", "ten", "http://127.0.0.1:1/"], ["-H", "novalue", "http://127.0.0.1:1/"],
                 [], ["ftp://x/"], ["-c", "1", "-t", "4", "http://127.0.0.1:1/"]):
        r = ringload(*args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert r.stdout == ""
    r = ringload("-h")
    assert r.returncode == 0
    for opt in ("-c", "-t", "-d", "-n", "-H", "-m", "--body", "--timeout", "--latency", "-R",
                "--close", "--pipeline", "--json", "-k", "-h"):
        assert opt in r.stdout, opt


def tls_front(P, origin_args=()):
    """ringproxy with a TLS listener (self-signed test.local certificate) before ringorigin."""
    from test_tls import make_cert
    o = P.origin("S", *origin_args)
    cert, key = make_cert(P.tmp, "rl", "test.local", ["test.local"])
    conf = (f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n'
            f'domains = ( {{ domain = "test.local"; backends = ( '
            f'{{ addr = "http://127.0.0.1:{o.port}"; }} ); }} );\n')
    px = P.proxy(conf, listen_key="listen_tls")
    return o, px


def test_ringload_https(P):
    o, px = tls_front(P)
    u = f"https://127.0.0.1:{px.port}/"
    r, j = ringload_json("-k", "-c", "4", "-n", "200", u, "-H", "Host: test.local")
    assert r.returncode == 0, r.stderr
    assert j["requests"] == 200 and j["status"]["2xx"] == 200, j
    assert sum(j["errors"].values()) == 0, j
    assert origin_stats(o.port)[0] == 200
    # pipelined over TLS: the count stays exact
    r, j = ringload_json("-k", "-c", "2", "-t", "1", "-n", "101", "--pipeline", "4", u,
                         "-H", "Host: test.local")
    assert r.returncode == 0 and j["requests"] == 101 and j["status"]["2xx"] == 101, (r.stderr, j)
    # big chunked responses cross many TLS records
    r, j = ringload_json("-k", "-c", "2", "-t", "1", "-n", "20", u + "?size=200000",
                         "-H", "Host: test.local")
    assert r.returncode == 0 and j["status"]["2xx"] == 20, (r.stderr, j)
    assert j["bytes"] > 20 * 200000, j
    # text output is the plain one
    r = ringload("-k", "-c", "2", "-t", "1", "-d", "300ms", u, "-H", "Host: test.local")
    assert r.returncode == 0 and "Requests/sec:" in r.stdout and r.stderr == "", r


def test_ringload_https_verification(P):
    _, px = tls_front(P)
    u = f"https://127.0.0.1:{px.port}/"
    # the self-signed certificate does not verify against the system store
    r, j = ringload_json("-c", "2", "-t", "1", "-n", "10", "--timeout", "1s", u,
                         "-H", "Host: test.local")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert j["errors"]["connect"] >= 1 and j["requests"] == 0, j
    assert j["errors"]["read"] == 0 and j["errors"]["write"] == 0, j
    r = ringload("-c", "1", "-t", "1", "-d", "300ms", u)
    assert r.returncode == 1 and "Socket errors: connect" in r.stdout, r.stdout
    # a plain-HTTP server behind an https:// URL never answers the ClientHello: the
    # handshake times out (a timeout error, like an unanswered connect)
    o = P.origin("P")
    r, j = ringload_json("-k", "-c", "1", "-t", "1", "-n", "2", "--timeout", "300ms",
                         f"https://127.0.0.1:{o.port}/")
    assert r.returncode == 1 and j["requests"] == 0, j
    assert j["errors"]["connect"] + j["errors"]["timeout"] >= 1, j


def test_ringload_https_close(P):
    o, px = tls_front(P)
    u = f"https://127.0.0.1:{px.port}/"
    r, j = ringload_json("-k", "--close", "-c", "4", "-t", "2", "-n", "100", u,
                         "-H", "Host: test.local")
    assert r.returncode == 0, r.stderr
    assert j["requests"] == 100 and j["status"]["2xx"] == 100, j
    assert sum(j["errors"].values()) == 0, j
    assert origin_stats(o.port)[0] == 100
    # -R over TLS: the handshake happens before the first scheduled request
    r, j = ringload_json("-k", "-R", "100", "-c", "4", "-t", "1", "-d", "1s", u,
                         "-H", "Host: test.local")
    assert r.returncode == 0 and 80 <= j["requests"] <= 110, (r.stderr, j)


def test_ringload_post_body(P, ):
    import os
    o = P.origin("E", "--echo")
    path = os.path.join(P.tmp, "body.bin")
    with open(path, "wb") as f:
        f.write(b"x" * 1000)
    r, j = ringload_json("-m", "POST", "--body", path, "-c", "2", "-t", "1", "-n", "20", url(o))
    assert r.returncode == 0 and j["status"]["2xx"] == 20, (r.stderr, j)
    assert j["bytes"] > 20 * 1000, j
