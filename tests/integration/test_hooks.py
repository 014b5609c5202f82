"""Hooks and local endpoints through real processes: hooks_fe.c (every call of the API) and
tools/ringfront.c (the example front end) in front of ringorigin, seen by the backend (echo)
and by the client."""
import json
import os
import re
import signal
import socket
import subprocess
import time

from harness import BUILD, Client, free_port, get, origin_stats, wait_port
from test_library import HERE, compile_c

EPERM, EINVAL = 1, 22


class Front:
    """A front-end program started on a free port, stopped (and checked) at the end."""

    def __init__(self, P, argv):
        self.port = free_port()
        self.out = open(os.path.join(P.tmp, f"front-{self.port}.out"), "w+")
        self.p = subprocess.Popen([argv[0], *[a.replace("PORT", str(self.port)) for a in argv[1:]]],
                                  stdout=self.out, stderr=subprocess.STDOUT, text=True)
        if not wait_port(self.port):
            self.p.kill()
            raise RuntimeError("front end did not start: " + self.output())

    def output(self):
        self.out.flush()
        with open(self.out.name) as f:
            return f.read()

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=10)
        finally:
            if self.p.poll() is None:
                self.p.kill()
        return self.p.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        rc = self.stop()
        if exc[0] is None:
            assert rc == 0, (rc, self.output())


def hooks_fe(P, *backend_ports):
    exe = os.path.join(P.tmp, "hooks_fe")
    if not os.path.exists(exe):
        compile_c(os.path.join(HERE, "hooks_fe.c"), exe)
    return Front(P, [exe, "PORT", *map(str, backend_ports)])


def echoed(resp):
    """The request head as the echo origin received it: {lowercase name: [values]}."""
    fields = {}
    for line in resp.body.decode().split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.lower(), []).append(v.strip())
    return resp.body.decode().split("\r\n")[0], fields


def test_request_hooks_edit_what_the_backend_sees_in_order(P):
    o = P.origin("A", "--echo")
    with hooks_fe(P, o.port) as f:
        r = get(f.port, "/plain?x=1", host="hooks.local", headers=[("User-Agent", "t/1")])
        assert r.status == 200, r
        line, h = echoed(r)
        assert line == "GET /plain?x=1 HTTP/1.1"
        domain, backend, client, method, path, host, worker = h["x-seen"][0].split("|")
        assert (domain, backend, client, method, path, host) == (
            "hooks.local", f"http://127.0.0.1:{o.port}", "127.0.0.1", "GET", "/plain?x=1",
            "hooks.local")
        assert worker in ("0", "1")
        # the second hook ran after the first and saw its field
        assert h["x-order"] == ["first", "second-saw-first"], h
        assert h["x-ua-seen"] == ["yes"] and h["user-agent"] == ["t/1"]
        assert h["host"] == [f"127.0.0.1:{o.port}"]
        assert "workers 2" in f.output()


def test_request_hook_edits_and_refused_edits(P):
    o = P.origin("A", "--echo")
    with hooks_fe(P, o.port) as f:
        r = get(f.port, "/edits", host="hooks.local",
                headers=[("User-Agent", "t/1"), ("X-Replace", "old1"), ("X-Replace", "old2")])
        _, h = echoed(r)
        rc = dict(kv.split("=") for kv in h["x-rc"][0].split())
        assert rc == {"cl": str(-EPERM), "host": str(-EPERM), "xff": str(-EPERM),
                      "te": str(-EPERM), "crlf": str(-EINVAL), "badname": str(-EINVAL)}, rc
        assert "user-agent" not in h and "x-ua-seen" not in h
        assert h["x-replace"] == ["new"]
        assert h["x-multi"] == ["1", "2"]
        assert "injected" not in h and "x-evil" not in h
        assert h["x-forwarded-for"] == ["127.0.0.1"]
        r = get(f.port, "/sethost", host="hooks.local")
        assert echoed(r)[1]["host"] == ["custom.example:8443"]


def test_request_hook_rejections_never_reach_the_backend(P):
    o = P.origin("A", "--echo")
    with hooks_fe(P, o.port) as f:
        before = origin_stats(o.port)[0]
        r = get(f.port, "/deny", host="hooks.local")
        assert r.status == 502 and b"rejected" in r.body, r
        r = get(f.port, "/limit?x", host="hooks.local")
        assert r.status == 429 and r.header("Retry-After") == "7", r
        assert r.body == b"slow down, 127.0.0.1\n"
        # a rejected request with a body: answered, the body is not read, the connection ends
        c = Client(f.port)
        r = c.request("POST", "/limit", host="hooks.local", body=b"x" * 1000)
        assert r.status == 429 and r.header("Connection") == "close"
        assert c.closed_by_peer()
        # a rejection keeps a body-less keep-alive connection open
        c = Client(f.port)
        assert c.request("GET", "/limit", host="hooks.local").status == 429
        assert c.request("GET", "/ok", host="hooks.local").status == 200
        assert origin_stats(o.port)[0] - before == 1  # /ok only (stats requests are not counted)


def test_response_hooks_status_and_headers(P):
    o = P.origin("A")
    with hooks_fe(P, o.port) as f:
        r = get(f.port, "/gone", host="hooks.local")
        assert r.status == 410 and r.reason == "Gone", r
        assert r.header_all("X-Resp-Order") == ["1", "2"]
        assert r.header("X-Resp-Seen") == f"hooks.local|http://127.0.0.1:{o.port}|GET|/gone|200"
        assert r.header("X-Origin") == "A" and len(r.body) == int(r.header("Content-Length"))
        r = get(f.port, "/nocontent", host="hooks.local")  # 204 would misframe: ignored
        assert r.status == 200 and r.body and len(r.body) == int(r.header("Content-Length"))
        r = get(f.port, "/rmorigin", host="hooks.local")
        assert r.header("X-Origin") is None and r.status == 200
        r = get(f.port, "/respcl?size=10", host="hooks.local")
        assert r.header("X-Rc") == str(-EPERM) and len(r.body) == 10
        # chunked responses keep their framing under edits
        r = get(f.port, "/x?chunked=1&size=5000", host="hooks.local")
        assert r.status == 200 and len(r.body) == 5000 and r.header_all("X-Resp-Order") == ["1", "2"]
        r = Client(f.port).request("HEAD", "/gone", host="hooks.local")
        assert r.status == 410 and r.body == b""
    assert "hook's status 204" in f.output()


def test_error_hook_once_per_failed_attempt(P):
    dead = [free_port() for _ in range(3)]
    with hooks_fe(P, *dead) as f:
        r = get(f.port, "/x", host="hooks.local")
        assert r.status == 502
        time.sleep(0.2)
        lines = [l for l in f.output().splitlines() if l.startswith("error ")]
        assert len(lines) == 3, f.output()
        attempts = [re.search(r"attempt=(\d+)", l).group(1) for l in lines]
        assert attempts == ["1", "2", "3"], lines
        backends = {l.split()[2] for l in lines}
        assert backends == {f"http://127.0.0.1:{p}" for p in dead}, lines
        for l in lines:
            assert l.startswith("error hooks.local ") and "err=111" in l, l
            assert "Connection refused" in l and l.endswith("| GET /x"), l


def test_error_hook_silent_when_a_retry_succeeds_elsewhere(P):
    o = P.origin("A")
    dead = free_port()
    with hooks_fe(P, dead, o.port) as f:
        for _ in range(4):
            assert get(f.port, "/y", host="hooks.local").status == 200
        time.sleep(0.2)
        lines = [l for l in f.output().splitlines() if l.startswith("error ")]
        # round robin sends some first attempts to the dead backend; each failed once
        assert 1 <= len(lines) <= 4, f.output()
        assert all("attempt=1 " in l and f":{dead} " in l for l in lines), lines


def test_local_endpoints_params_404_405(P):
    o = P.origin("A", "--echo")
    with hooks_fe(P, o.port) as f:
        before = origin_stats(o.port)[0]
        r = Client(f.port).request("DELETE", "/admin/cache/example.com", host="any.host")
        assert r.status == 200 and r.header("Content-Type") == "application/json"
        assert json.loads(r.body) == {"method": "DELETE", "domain": "example.com", "purged": 0}
        r = get(f.port, "/admin/cache/a%2Eb%20c", host="hooks.local")
        assert json.loads(r.body)["domain"] == "a.b c"
        r = Client(f.port).request("PUT", "/admin/cache/x", host="hooks.local", body=b"zz")
        assert r.status == 405 and r.header("Allow") == "DELETE, GET, HEAD", r
        r = Client(f.port).request("HEAD", "/admin/cache/x", host="hooks.local")
        assert r.status == 200 and r.body == b"" and int(r.header("Content-Length")) > 0
        assert get(f.port, "/files/a/b%20c", host="x").body == b"rest=[a/b c]\n"
        assert get(f.port, "/files", host="x").body == b"rest=[]\n"
        assert get(f.port, "/files/", host="x").body == b"rest=[]\n"
        # paths no pattern matches are proxied, or 404 when nothing routes them
        assert get(f.port, "/admin/cache", host="hooks.local").status == 200  # to the backend
        assert get(f.port, "/admin/cache/a/b", host="hooks.local").status == 200
        assert get(f.port, "/nothing", host="unknown.host").status == 404
        assert origin_stats(o.port)[0] - before == 2  # the two proxied ones


def test_local_endpoint_reads_bodies_and_pipelines(P):
    o = P.origin("A", "--echo")
    with hooks_fe(P, o.port) as f:
        c = Client(f.port)
        r = c.request("POST", "/echo/x/y?q=1&r=2", host="hooks.local",
                      headers=[("X-Test", "tv"), ("X-List", "1"), ("X-List", "2")], body=b"hello")
        assert r.status == 201 and r.header("X-Params") == "yes"
        first, rest = r.body.split(b"\n", 1)
        assert re.fullmatch(rb"a=x b=y query=q=1&r=2 x-test=tv worker=[01] len=5", first), first
        assert rest == b"hello\nx-list=1\nx-list=2"
        # chunked body, then a proxied request pipelined behind it on the same connection
        c.send(b"POST /echo/1/2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
               b"GET /after HTTP/1.1\r\nHost: hooks.local\r\n\r\n")
        r = c.read_response()
        assert r.status == 201 and r.body.endswith(b"len=5\nabcde"), r.body
        r = c.read_response()
        assert r.status == 200 and r.body.startswith(b"GET /after HTTP/1.1"), r.body
        # over max_local_body_bytes (4096): 413, nothing handled
        r = Client(f.port).request("POST", "/echo/1/2", host="h", body=b"x" * 5000)
        assert r.status == 413
        c = Client(f.port)
        c.send(b"POST /echo/1/2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"1000\r\n" + b"y" * 4096 + b"\r\n" + b"10\r\n" + b"z" * 16 + b"\r\n0\r\n\r\n")
        assert c.read_response().status == 413
        # a body that never comes is cut by the header timeout (408), not held forever
        c = Client(f.port, timeout=15)
        c.send(b"POST /echo/1/2 HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        assert c.read_response().status == 408


def test_example_front_end(P):
    o = P.origin("A", "--echo")
    dead = free_port()
    with Front(P, [f"{BUILD}/ringfront", "-l", "127.0.0.1:PORT", "-w", "2", "-d", "front.local",
                   f"http://127.0.0.1:{o.port}", f"http://127.0.0.1:{dead}"]) as f:
        ids = set()
        for _ in range(6):
            r = get(f.port, "/a", host="front.local")
            assert r.status == 200 and r.header("X-Served-By") == "ringfront"
            ids.add(echoed(r)[1]["x-request-id"][0])
        assert len(ids) == 6, ids
        before = origin_stats(o.port)[0]
        r = get(f.port, "/private/secret", host="front.local")
        assert r.status == 403 and b"denied: /private/secret" in r.body
        assert origin_stats(o.port)[0] == before
        st = json.loads(get(f.port, "/_front/status", host="front.local").body)
        assert st["requests"] == 6 and st["denied"] == 1 and st["errors"] >= 1, st
        assert {b["addr"] for b in st["backends"]} >= {f"http://127.0.0.1:{o.port}"}
        assert Client(f.port).request("POST", "/_front/status", host="x").status == 405
    assert re.search(rf"front.local -> http://127.0.0.1:{dead} attempt 1: connect failed: "
                     r"Connection refused \(GET /a\)", f.output()), f.output()


def test_cache_this_and_dont_cache_from_a_response_hook(P):
    o = P.origin("A")
    with hooks_fe(P, o.port) as f:
        def xc(path):
            return get(f.port, path, host="hooks.local").header("X-Cache")
        before = origin_stats(o.port)[0]
        # no freshness of its own; rp_cache_this(60 s, max_hits 2): MISS, HIT, HIT, then gone
        assert [xc("/cachethis") for _ in range(4)] == ["MISS", "HIT", "HIT", "MISS"]
        assert origin_stats(o.port)[0] - before == 2
        cc = "/dontcache?header=Cache-Control:max-age%3D60"
        assert [xc(cc) for _ in range(2)] == ["MISS", "MISS"]
        # without a hook's word, no freshness: not stored
        assert [xc("/plain") for _ in range(2)] == ["MISS", "MISS"]
        st = json.loads(get(f.port, "/stats", host="x").body)
        assert st["entries"] == 1 and st["hits"] == 2, st
        r = Client(f.port).request("DELETE", "/purge/hooks.local", host="x")
        assert json.loads(r.body) == {"domain": "hooks.local", "purged": 1}
        assert json.loads(get(f.port, "/stats", host="x").body)["entries"] == 0
