"""GET /metrics on the admin listener: the Prometheus text format, checked by promtool where
it is installed, and values that move as requests are made (statuses by domain, upstream
attempts, failures by reason, the response-time histogram, health, the cache)."""
import re
import shutil
import subprocess

from harness import Client, Skip, domain_conf, free_port, get, wait_port

HOST = "m.local"


def scrape(port, token=None):
    hdrs = [("Authorization", f"Bearer {token}")] if token else []
    return Client(port).request("GET", "/metrics", host="admin", headers=hdrs)


def parse(text):
    """{(name, frozenset of label pairs): value}; fails on a line that is not a sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
        assert m, line
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def test_metrics_move_with_traffic_and_pass_promtool(P):
    good = P.origin("G")
    dead = free_port()  # nothing listens: refused
    aport = free_port()
    conf = domain_conf(HOST, [good.port, dead], "max_retries = 1;")
    conf += f'admin = {{ listen = "127.0.0.1:{aport}"; token = "t0k"; }};\n'
    conf += 'cache = { default_max_age = "1m"; };\n'
    px = P.proxy(conf, workers=2)
    assert wait_port(aport)  # its own thread: P.proxy waited for the traffic port only
    assert scrape(aport).status == 401  # the admin token applies
    assert get(px.port, "/", host="other.local").status == 404  # not routed
    for _ in range(6):
        assert get(px.port, "/a", host=HOST).status == 200
    assert get(px.port, "/e?status=503", host=HOST).status == 503
    cached = "/c?header=Cache-Control:max-age%3D60"
    assert get(px.port, cached, host=HOST).status == 200
    r = get(px.port, cached, host=HOST)
    assert r.status == 200 and r.header("X-Cache") == "HIT"

    r = scrape(aport, "t0k")
    assert r.status == 200
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
    text = r.body.decode()
    s = parse(text)
    d, b_good = HOST, f"http://127.0.0.1:{good.port}"
    b_dead = f"http://127.0.0.1:{dead}"
    assert value(s, "ringproxy_requests_total", domain=d, code="2xx") == 8
    assert value(s, "ringproxy_requests_total", domain=d, code="5xx") == 1
    # not routed: the 404, and the admin listener's 401 (its answers count too)
    assert value(s, "ringproxy_requests_total", domain="", code="4xx") == 2
    # every request reached the live backend once (the hit did not); the dead one refused
    # what round robin sent it, and each of those went on to the live one as a retry
    refused = value(s, "ringproxy_upstream_failures_total", domain=d, backend=b_dead,
                    reason="refused")
    assert refused >= 1
    assert value(s, "ringproxy_upstream_retries_total", domain=d) == refused
    assert value(s, "ringproxy_upstream_failures_total", domain=d, backend=b_good,
                 reason="5xx") == 1
    heads = value(s, "ringproxy_upstream_response_seconds_count", domain=d, backend=b_good)
    assert heads == 8  # 6 + the 503 + the cache miss
    assert value(s, "ringproxy_upstream_response_seconds_bucket", domain=d, backend=b_good,
                 le="+Inf") == heads
    assert value(s, "ringproxy_upstream_response_seconds_sum", domain=d, backend=b_good) > 0
    assert value(s, "ringproxy_backend_up", domain=d, backend=b_good) == 1
    assert value(s, "ringproxy_cache_requests_total", result="hit") == 1
    assert value(s, "ringproxy_cache_entries") == 1
    assert value(s, "ringproxy_workers") == 2
    assert value(s, "ringproxy_client_connections_accepted_total") >= 10
    assert ("ringproxy_build_info", frozenset({("version", "0.1.0")})) in s

    # counters only grow, and a scrape sums both workers
    for _ in range(4):
        get(px.port, "/a", host=HOST)
    s2 = parse(scrape(aport, "t0k").body.decode())
    assert value(s2, "ringproxy_requests_total", domain=d, code="2xx") == 12

    promtool = shutil.which("promtool")
    if not promtool:
        raise Skip("promtool not installed (Debian package prometheus): format not checked")
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def test_tls_handshakes_and_failures_counted(P):
    from test_tls import make_cert
    from harness import curl
    import socket
    import time
    o = P.origin("T")
    cert, key = make_cert(P.tmp, "m", "m.local", [HOST])
    aport, tport = free_port(), free_port()
    conf = domain_conf(HOST, [o.port])
    conf += f'listen_tls = "127.0.0.1:{tport}";\ntls = {{ cert = "{cert}"; key = "{key}"; }};\n'
    conf += f'admin = {{ listen = "127.0.0.1:{aport}"; }};\n'
    P.proxy(conf)
    assert wait_port(aport) and wait_port(tport)
    for _ in range(2):
        r = curl("-k", "--resolve", f"{HOST}:{tport}:127.0.0.1", f"https://{HOST}:{tport}/")
        assert r.returncode == 0, r.stderr
    with socket.create_connection(("127.0.0.1", tport)) as s:  # not a ClientHello
        s.sendall(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64)
        s.settimeout(3)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
    time.sleep(0.1)
    s = parse(scrape(aport).body.decode())
    assert value(s, "ringproxy_tls_handshakes_total") == 2
    assert value(s, "ringproxy_tls_failures_total") >= 1
