"""Health: active checks (TCP and HTTP) take backends out of rotation and bring them back in
measured time, live-traffic failures mark a backend down, and with nothing healthy the
answer is an immediate 503 naming the domain."""
import re
import time

from harness import Client, ScriptBackend, domain_conf, free_port, get, origin_stats


def hc_conf(ports, check, extra=""):
    return domain_conf("test.local", ports, f"health_check = {{ {check} }}; {extra}")


def wait_for(cond, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return time.time() - t0
        time.sleep(0.02)
    return None


def origins_seen(port, n=12):
    return {get(port).header("X-Origin") for _ in range(n)}


def test_tcp_check_takes_a_stopped_backend_out_and_back(P):
    a, b = P.origin("A"), P.origin("B")
    check = 'path = ""; interval = "200ms"; timeout = "100ms"; fail_threshold = 2; success_threshold = 2;'
    px = P.proxy(hc_conf([a.port, b.port], check, "max_retries = 0;"))
    assert origins_seen(px.port) == {"A", "B"}
    port = b.port
    P.stop(b)
    t0 = time.time()
    # out of rotation within fail_threshold * interval + timeout (the 0.1 s is for the log
    # polling here and the timer wheel's 16 ms slots)
    took = wait_for(lambda: "DOWN after 2 failed checks" in P.log_of(px), 2.0)
    assert took is not None and took <= 2 * 0.2 + 0.1 + 0.1, (took, P.log_of(px))
    assert "connection refused" in P.log_of(px).lower()
    assert origins_seen(px.port) == {"A"}  # and no request failed meanwhile
    P.origin("B2", port=port)
    up_s = wait_for(lambda: "UP after 2 good checks" in P.log_of(px), 2.0)
    assert up_s is not None, P.log_of(px)
    assert origins_seen(px.port) == {"A", "B2"}
    print(f"    down {took:.2f}s after the stop, back up {up_s:.2f}s after the restart")


def test_http_check_status_rules(P):
    a = P.origin("A")
    bad = P.origin("BAD", "--status", "503")
    notfound = P.origin("NF", "--status", "404")
    check = 'path = "/check"; interval = "150ms"; timeout = "100ms"; fail_threshold = 2;'
    px = P.proxy(hc_conf([a.port, bad.port, notfound.port], check))
    assert wait_for(lambda: "DOWN" in P.log_of(px), 2.0) is not None
    time.sleep(0.3)
    log = P.log_of(px)
    assert re.search(rf"backend http://127.0.0.1:{bad.port} DOWN after 2 failed checks: status 503", log), log
    assert f"127.0.0.1:{notfound.port} DOWN" not in log  # 404 means the server is alive
    assert f"127.0.0.1:{a.port} DOWN" not in log


def test_http_check_timeout_is_a_failure(P):
    a = P.origin("A")
    slow = P.origin("SLOW", "--delay", "1000")
    check = 'path = "/"; interval = "150ms"; timeout = "100ms"; fail_threshold = 1;'
    px = P.proxy(hc_conf([a.port, slow.port], check))
    assert wait_for(lambda: f"127.0.0.1:{slow.port} DOWN after 1 failed checks: timed out" in P.log_of(px), 2.0) is not None, P.log_of(px)


def test_passive_failures_mark_down(P):
    a = P.origin("A")
    dead = free_port()
    px = P.proxy(domain_conf("test.local", [dead, a.port], "max_retries = 1;"))
    for _ in range(6):
        assert get(px.port).header("X-Origin") == "A"
    log = P.log_of(px)
    assert f"backend http://127.0.0.1:{dead} DOWN after 3 failed requests" in log, log


def test_no_healthy_backend_is_an_immediate_503(P):
    a, b = P.origin("A"), P.origin("B")
    check = 'path = ""; interval = "100ms"; timeout = "50ms"; fail_threshold = 1;'
    px = P.proxy(hc_conf([a.port, b.port], check))
    P.stop(a)
    P.stop(b)
    assert wait_for(lambda: P.log_of(px).count("DOWN") == 2, 2.0) is not None, P.log_of(px)
    t0 = time.time()
    r = get(px.port)
    assert r.status == 503 and b"test.local" in r.body, (r.status, r.body)
    assert time.time() - t0 < 0.2


def test_http_checks_reach_the_backend_and_stop_on_drain(P):
    a = P.origin("A")
    check = 'path = "/health"; interval = "100ms"; timeout = "100ms";'
    px = P.proxy(hc_conf([a.port], check))
    time.sleep(0.5)
    reqs, _ = origin_stats(a.port)
    assert reqs >= 3  # /health checks reached the backend
    assert P.stop(px) == 0


def log_time(log, needle):
    """Wall-clock time of the first log line containing needle (the log's UTC stamps)."""
    import datetime
    for line in log.splitlines():
        if needle in line:
            stamp = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
            return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()
    return None


def test_failover_loses_no_request(P):
    """2,000 GETs/s for 10 s over 3 backends; one is killed at 3 s and restarted at 6 s."""
    import json
    import subprocess
    import threading
    from harness import BUILD
    o = [P.origin(n) for n in "ABC"]
    check = 'path = "/health"; interval = "500ms"; timeout = "250ms"; fail_threshold = 2; success_threshold = 2;'
    px = P.proxy(hc_conf([x.port for x in o], check), workers=2)
    load = subprocess.Popen([f"{BUILD}/ringload", "-R", "2000", "-d", "10s", "-c", "32", "--json",
                             "-H", "Host: test.local", f"http://127.0.0.1:{px.port}/"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    times = {}

    def chaos():
        time.sleep(3)
        times["kill"] = time.time()
        P.stop(o[1], timeout=5)
        time.sleep(3)
        times["restart"] = time.time()
        P.origin("B2", port=o[1].port)

    t = threading.Thread(target=chaos)
    t.start()
    out, err = load.communicate(timeout=60)
    t.join()
    res = json.loads(out)
    failed = sum(res["errors"].values()) + res["status"]["4xx"] + res["status"]["5xx"] + res["status"]["other"]
    log = P.log_of(px)
    down = log_time(log, f"127.0.0.1:{o[1].port} DOWN")
    up = log_time(log, f"127.0.0.1:{o[1].port} UP")
    print(f"    sent {res['requests']}, failed {failed}, "
          f"marked down {down - times['kill']:.2f}s after the kill, "
          f"back up {up - times['restart']:.2f}s after the restart" if down and up else log)
    assert res["requests"] >= 19000, res
    assert failed == 0, (res, err)
    assert down is not None and up is not None, log


def test_http_check_of_an_https_backend_speaks_tls(P):
    import ssl
    from test_tls import make_cert
    cert, key = make_cert(P.tmp, "trusted", "localhost", ["localhost"])
    ucert, ukey = make_cert(P.tmp, "untrusted", "localhost", ["localhost"])
    good, bad = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    good.load_cert_chain(cert, key)
    bad.load_cert_chain(ucert, ukey)
    status = [200]
    be = ScriptBackend(lambda req: [f"HTTP/1.1 {status[0]} X\r\nContent-Length: 0\r\n"
                                    "Connection: close\r\n\r\n".encode(), "close"], tls=good)

    def hosts():
        return [r.header("host") for r in be.log]
    px = P.proxy(f'domains = ( {{ domain = "test.local"; backends = ( {{ addr = '
                 f'"https://localhost:{be.port}"; }} ); tls_ca_file = "{cert}"; health_check = {{ '
                 'path = "/health"; interval = "100ms"; timeout = "500ms"; fail_threshold = 2; '
                 'success_threshold = 1; host = "check.example"; }; } );\n')
    assert wait_for(lambda: len(hosts()) >= 2, 3.0) is not None, P.log_of(px)
    assert set(hosts()) == {"check.example"}, hosts()  # HTTP over TLS, with its own Host
    assert "DOWN" not in P.log_of(px)
    status[0] = 500
    assert wait_for(lambda: "DOWN after 2 failed checks: status 500" in P.log_of(px), 3.0), \
        P.log_of(px)
    assert get(px.port).status == 503
    status[0] = 200
    assert wait_for(lambda: "UP after 1 good checks" in P.log_of(px), 3.0), P.log_of(px)
    assert get(px.port).status == 200
    be.tls = bad  # a certificate the domain's CA did not sign
    assert wait_for(lambda: P.log_of(px).count("DOWN") == 2, 3.0), P.log_of(px)
    assert re.search(r"DOWN after 2 failed checks: TLS", P.log_of(px)), P.log_of(px)
    be.tls = good
    assert wait_for(lambda: P.log_of(px).count("UP after") == 2, 3.0), P.log_of(px)
