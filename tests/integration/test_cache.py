"""The response cache through real processes: a scripted Python origin that counts what
reaches it, ringproxy with a `cache` block, and clients checking statuses, bytes, X-Cache and
Age. A hit must never reach the origin."""
import gzip
import http.client
import http.server
import json
import ssl
import sys
import threading
import time
import concurrent.futures

from harness import Client, free_port, get, wait_port

HOST = "c.local"


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # a proxy that hung up is no news


class Origin:
    """An HTTP/1.1 origin: routes[path] = fn(handler) -> (status, [(name, value)], body).
    Counts requests per path and keeps the last request's headers."""

    def __init__(self, routes):
        self.routes = routes
        self.count = {}
        self.last = {}
        self.lock = threading.Lock()
        origin = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_one(self):
                path = self.path.split("?")[0]
                with origin.lock:
                    origin.count[path] = origin.count.get(path, 0) + 1
                    origin.last[path] = {k.lower(): v for k, v in self.headers.items()}
                n = int(self.headers.get("Content-Length", 0))
                if n:
                    self.rfile.read(n)
                fn = origin.routes.get(path)
                status, headers, body = fn(self) if fn else (404, [], b"no such path\n")
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                if status not in (204, 304):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD" and status not in (204, 304):
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = handle_one

        self.port = free_port()
        self.srv = Server(("127.0.0.1", self.port), H)
        self.srv.daemon_threads = True
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()
        assert wait_port(self.port)

    def hits(self, path):
        with self.lock:
            return self.count.get(path, 0)

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def fixed(status=200, headers=(), body=b"cached body\n"):
    return lambda h: (status, list(headers), body)


def cached_proxy(P, origin, cache="", domain_extra="", extra="", workers=2):
    conf = (f'domains = ( {{ domain = "{HOST}"; backends = ( {{ addr = "http://127.0.0.1:{origin.port}"; }} ); '
            f'{domain_extra} }} );\ncache = {{ {cache} }};\n{extra}')
    return P.proxy(conf, workers=workers)


def fetch(px, path, headers=(), method="GET"):
    return Client(px.port).request(method, path, host=HOST, headers=list(headers))


def with_origin(routes):
    """Decorator: starts an Origin for the test and stops it afterwards."""
    def wrap(fn):
        def run(P):
            o = Origin(routes)
            try:
                fn(P, o)
            finally:
                o.stop()
        run.__name__ = fn.__name__
        return run
    return wrap


@with_origin({"/fresh": fixed(headers=[("Cache-Control", "max-age=60"), ("Content-Type", "text/plain")])})
def test_hit_never_reaches_the_origin(P, o):
    px = cached_proxy(P, o)
    r = fetch(px, "/fresh")
    assert r.status == 200 and r.header("X-Cache") == "MISS" and r.body == b"cached body\n"
    for _ in range(5):
        r = fetch(px, "/fresh")
        assert r.status == 200 and r.header("X-Cache") == "HIT", r
        assert r.body == b"cached body\n" and r.header("Content-Length") == "12"
        assert int(r.header("Age")) >= 0 and r.header("Cache-Control") == "max-age=60"
    assert o.hits("/fresh") == 1
    # the query is part of the key
    assert fetch(px, "/fresh?x=1").header("X-Cache") == "MISS"
    assert o.hits("/fresh") == 2
    # Age grows with time in the cache
    time.sleep(1.1)
    assert int(fetch(px, "/fresh").header("Age")) >= 1


@with_origin({"/plain": fixed(), "/static/a.css": fixed(headers=[("Content-Type", "text/css")]),
              "/static/img": fixed(status=500)})
def test_responses_without_freshness_need_a_rule(P, o):
    px = cached_proxy(P, o, 'rules = ( { path_prefix = "/static/"; max_age = "1m"; } );')
    for _ in range(2):
        assert fetch(px, "/plain").header("X-Cache") == "MISS"
    assert o.hits("/plain") == 2
    assert fetch(px, "/static/a.css").header("X-Cache") == "MISS"
    assert fetch(px, "/static/a.css").header("X-Cache") == "HIT"
    assert o.hits("/static/a.css") == 1
    # a 500 is not heuristically cacheable: a rule alone does not store it
    fetch(px, "/static/img")
    fetch(px, "/static/img")
    assert o.hits("/static/img") == 2


@with_origin({
    "/nostore": fixed(headers=[("Cache-Control", "no-store, max-age=60")]),
    "/private": fixed(headers=[("Cache-Control", "private, max-age=60")]),
    "/cookie": fixed(headers=[("Cache-Control", "max-age=60"), ("Set-Cookie", "s=1")]),
    "/auth": fixed(headers=[("Cache-Control", "max-age=60")]),
    "/authpublic": fixed(headers=[("Cache-Control", "public, max-age=60")]),
})
def test_what_must_not_be_stored(P, o):
    px = cached_proxy(P, o)
    for path in ("/nostore", "/private", "/cookie"):
        fetch(px, path)
        assert fetch(px, path).header("X-Cache") == "MISS", path
        assert o.hits(path) == 2, path
    auth = [("Authorization", "Bearer x")]
    fetch(px, "/auth", auth)
    assert fetch(px, "/auth", auth).header("X-Cache") == "MISS"
    assert o.hits("/auth") == 2
    fetch(px, "/authpublic", auth)
    assert fetch(px, "/authpublic", auth).header("X-Cache") == "HIT"  # public allows it
    # the client's own no-store, and no-cache (revalidate: there is no validator, so refetch)
    fetch(px, "/authpublic", [("Cache-Control", "no-cache")])
    assert o.hits("/authpublic") == 2


def lang(h):
    return 200, [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")], \
        ("lang=" + h.headers.get("Accept-Language", "none") + "\n").encode()


@with_origin({"/vary": lang})
def test_vary_keeps_one_variant_per_value(P, o):
    px = cached_proxy(P, o)
    for _ in range(3):
        for l in ("en", "fr"):
            r = fetch(px, "/vary", [("Accept-Language", l)])
            assert r.body == f"lang={l}\n".encode(), r.body
        r = fetch(px, "/vary")
        assert r.body == b"lang=none\n"
    assert o.hits("/vary") == 3  # en, fr, absent: each once


@with_origin({"/etag": fixed(headers=[("Cache-Control", "max-age=60"), ("ETag", '"v1"'),
                                      ("Last-Modified", "Sun, 01 Nov 2026 10:00:00 GMT")])})
def test_client_conditionals_answered_from_a_fresh_entry(P, o):
    px = cached_proxy(P, o)
    fetch(px, "/etag")
    r = fetch(px, "/etag", [("If-None-Match", '"v1"')])
    assert r.status == 304 and r.body == b"" and r.header("ETag") == '"v1"', r
    assert r.header("X-Cache") == "HIT"
    assert fetch(px, "/etag", [("If-None-Match", '"v0", W/"v1"')]).status == 304
    assert fetch(px, "/etag", [("If-None-Match", '"v2"')]).status == 200
    assert fetch(px, "/etag", [("If-Modified-Since", "Sun, 01 Nov 2026 10:00:00 GMT")]).status == 304
    assert fetch(px, "/etag", [("If-Modified-Since", "Sat, 31 Oct 2026 10:00:00 GMT")]).status == 200
    assert o.hits("/etag") == 1


def revalidating(h):
    if h.headers.get("If-None-Match") == '"v1"':
        return 304, [("Cache-Control", "max-age=1"), ("ETag", '"v1"'), ("X-Refreshed", "yes")], b""
    return 200, [("Cache-Control", "max-age=1"), ("ETag", '"v1"')], b"version one\n"


@with_origin({"/reval": revalidating})
def test_stale_entry_revalidated_by_a_304(P, o):
    px = cached_proxy(P, o)
    assert fetch(px, "/reval").header("X-Cache") == "MISS"
    assert fetch(px, "/reval").header("X-Cache") == "HIT"
    time.sleep(1.3)
    r = fetch(px, "/reval", [("If-None-Match", '"other"')])
    assert r.status == 200 and r.body == b"version one\n", r
    assert r.header("X-Cache") == "REVALIDATED" and r.header("X-Refreshed") == "yes"
    # our own validator went upstream, not the client's
    assert o.last["/reval"]["if-none-match"] == '"v1"'
    assert o.hits("/reval") == 2
    assert fetch(px, "/reval").header("X-Cache") == "HIT"
    assert o.hits("/reval") == 2


@with_origin({"/page": fixed(headers=[("Cache-Control", "max-age=60")], body=b"x" * 1000)})
def test_head_from_a_stored_get_and_unsafe_methods_invalidate(P, o):
    px = cached_proxy(P, o)
    fetch(px, "/page")
    r = fetch(px, "/page", method="HEAD")
    assert r.status == 200 and r.header("X-Cache") == "HIT" and r.header("Content-Length") == "1000"
    assert r.body == b""
    assert o.hits("/page") == 1
    assert fetch(px, "/page", method="POST").status == 200
    assert fetch(px, "/page").header("X-Cache") == "MISS"
    assert o.hits("/page") == 3


@with_origin({"/only": fixed(headers=[("Cache-Control", "max-age=60")])})
def test_only_if_cached(P, o):
    px = cached_proxy(P, o)
    assert fetch(px, "/only", [("Cache-Control", "only-if-cached")]).status == 504
    assert o.hits("/only") == 0
    fetch(px, "/only")
    assert fetch(px, "/only", [("Cache-Control", "only-if-cached")]).status == 200


def test_stale_if_error_serves_stale_when_the_origin_fails(P):
    state = {"fail": False}

    def flaky(h):
        if state["fail"]:
            return 503, [], b"down\n"
        return 200, [("Cache-Control", "max-age=1, stale-if-error=60")], b"still here\n"

    o = Origin({"/sie": flaky, "/x": fixed(headers=[("Cache-Control", "max-age=1")])})
    try:
        px = cached_proxy(P, o)
        fetch(px, "/sie")
        fetch(px, "/x")
        state["fail"] = True
        time.sleep(1.3)
        r = fetch(px, "/sie")  # a 5xx from the origin
        assert r.status == 200 and r.body == b"still here\n", r
        assert r.header("X-Cache") == "STALE", r.raw_head
    finally:
        o.stop()
    # an origin that cannot be reached at all
    a = P.origin("A")
    px = cached_proxy(P, type("O", (), {"port": a.port}))
    path = "/y?header=Cache-Control:max-age%3D1,stale-if-error%3D60"
    assert fetch(px, path).header("X-Cache") == "MISS"
    assert fetch(px, "/z?header=Cache-Control:max-age%3D1").header("X-Cache") == "MISS"
    P.stop(a)
    time.sleep(1.3)
    r = fetch(px, path)
    assert r.status == 200 and r.header("X-Cache") == "STALE" and r.body == b"hello from A\n", r
    # without stale-if-error, a stale entry is not served on failure
    assert fetch(px, "/z?header=Cache-Control:max-age%3D1").status == 502


TEXT = b"".join(b"line %d of a compressible text body\n" % i for i in range(200))


@with_origin({"/text": fixed(headers=[("Cache-Control", "max-age=60"), ("Content-Type", "text/plain"),
                                      ("ETag", '"t1"')], body=TEXT),
              "/bin": fixed(headers=[("Cache-Control", "max-age=60"),
                                     ("Content-Type", "application/octet-stream")], body=TEXT),
              "/gz": fixed(headers=[("Cache-Control", "max-age=60"), ("Content-Type", "text/plain"),
                                    ("Content-Encoding", "gzip")], body=gzip.compress(TEXT))})
def test_gzip_copies(P, o):
    px = cached_proxy(P, o, "pre_compress = true; compress_min_len = 256;")
    fetch(px, "/text")
    ae = [("Accept-Encoding", "gzip, deflate")]
    deadline = time.time() + 5
    while True:  # the copy is made by a compression thread, shortly after the store
        r = fetch(px, "/text", ae)
        if r.header("Content-Encoding") == "gzip" or time.time() > deadline:
            break
        time.sleep(0.05)
    assert r.header("Content-Encoding") == "gzip", r
    assert gzip.decompress(r.body) == TEXT and len(r.body) < len(TEXT) / 3
    assert int(r.header("Content-Length")) == len(r.body)
    assert r.header("ETag") == 'W/"t1"' and "Accept-Encoding" in r.header("Vary")
    r = fetch(px, "/text")  # a client that does not ask for gzip gets identity
    assert r.header("Content-Encoding") is None and r.body == TEXT and r.header("ETag") == '"t1"'
    assert fetch(px, "/text", [("Accept-Encoding", "gzip;q=0")]).body == TEXT
    # not a compressible type: never gzipped
    fetch(px, "/bin")
    time.sleep(0.3)
    assert fetch(px, "/bin", ae).header("Content-Encoding") is None
    # the origin's gzip: as is to gzip clients, decompressed for the others
    fetch(px, "/gz", ae)
    deadline = time.time() + 5
    while True:
        r = fetch(px, "/gz")
        if r.header("X-Cache") == "HIT" or time.time() > deadline:
            break
        time.sleep(0.05)
    assert r.header("X-Cache") == "HIT" and r.header("Content-Encoding") is None and r.body == TEXT
    r = fetch(px, "/gz", ae)
    assert r.header("Content-Encoding") == "gzip" and gzip.decompress(r.body) == TEXT
    assert o.hits("/text") == 1 and o.hits("/gz") <= 2


@with_origin({"/a": fixed(headers=[("Cache-Control", "max-age=60")]),
              "/b": fixed(headers=[("Cache-Control", "max-age=60")])})
def test_domain_opt_out_and_x_cache_off(P, o):
    px = cached_proxy(P, o, domain_extra="cache = false;")
    fetch(px, "/a")
    r = fetch(px, "/a")
    assert r.header("X-Cache") is None and o.hits("/a") == 2
    px2 = cached_proxy(P, o, "x_cache = false;")
    fetch(px2, "/b")
    r = fetch(px2, "/b")
    assert r.header("X-Cache") is None and r.header("Age") is not None and o.hits("/b") == 1


def admin_req(port, method, path, token=None):
    hdrs = [("Authorization", f"Bearer {token}")] if token else []
    return Client(port).request(method, path, host="admin", headers=hdrs)


@with_origin({f"/p{i}": fixed(headers=[("Cache-Control", "max-age=60")]) for i in range(5)})
def test_admin_api_purge_and_stats(P, o):
    aport = free_port()
    px = cached_proxy(P, o, "max_entries = 3;",
                      extra=f'admin = {{ listen = "127.0.0.1:{aport}"; token = "s3cret"; }};\n')
    assert wait_port(aport)
    for i in range(5):
        fetch(px, f"/p{i}")
    st = json.loads(admin_req(aport, "GET", "/cache/stats", "s3cret").body)
    assert st["entries"] <= 3 and st["misses"] >= 5 and st["evictions"] >= 2, st
    # token: missing or wrong -> 401; the proxy listener does not serve the admin API
    assert admin_req(aport, "GET", "/cache/stats").status == 401
    assert admin_req(aport, "GET", "/cache/stats", "wrong").status == 401
    assert admin_req(aport, "DELETE", "/cache", "s3cret-and-more").status == 401
    assert fetch(px, "/cache/stats").status == 404
    assert admin_req(aport, "GET", "/nothing", "s3cret").status == 404
    fetch(px, "/p4")
    assert fetch(px, "/p4").header("X-Cache") == "HIT"
    r = admin_req(aport, "DELETE", f"/cache?method=GET&host={HOST}&path=%2Fp4", "s3cret")
    assert r.status == 200 and json.loads(r.body) == {"purged": True}, r.body
    assert fetch(px, "/p4").header("X-Cache") == "MISS"
    r = admin_req(aport, "DELETE", f"/cache?host={HOST}&path=/nope", "s3cret")
    assert json.loads(r.body) == {"purged": False}
    fetch(px, "/p3")
    n = json.loads(admin_req(aport, "GET", "/cache/stats", "s3cret").body)["entries"]
    assert n >= 1
    r = admin_req(aport, "DELETE", f"/cache/{HOST}", "s3cret")
    assert json.loads(r.body) == {"domain": HOST, "purged": n}, r.body
    fetch(px, "/p0")
    assert json.loads(admin_req(aport, "DELETE", f"/cache/{HOST.upper()}", "s3cret").body)["purged"] == 1
    assert admin_req(aport, "DELETE", "/cache/other.host", "s3cret").body == \
        b'{"domain":"other.host","purged":0}\n'
    # the answer is valid JSON whatever bytes the domain holds: UTF-8 kept, the rest U+FFFD
    r = admin_req(aport, "DELETE", "/cache/caf%C3%A9%FF%ED%A0%80.%22x%5C", "s3cret")
    assert r.body == b'{"domain":"caf\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd' \
        b'.\\"x\\\\","purged":0}\n', r.body
    assert json.loads(r.body.decode("utf-8"))["domain"] == "caf\u00e9\ufffd\ufffd\ufffd\ufffd.\"x\\"
    fetch(px, "/p1")
    assert json.loads(admin_req(aport, "DELETE", "/cache", "s3cret").body) == {"purged": 1}
    st = json.loads(admin_req(aport, "GET", "/cache/stats", "s3cret").body)
    assert st["entries"] == 0 and st["bytes"] == 0
    assert "s3cret" not in P.log_of(px)


def test_budget_holds_and_workers_share_one_cache(P):
    body = b"z" * 3000
    o = Origin({f"/k{i}": fixed(headers=[("Cache-Control", "max-age=60")], body=body) for i in range(40)})
    aport = free_port()
    try:
        px = cached_proxy(P, o, 'max_total_bytes = "64KiB"; max_entry_size = "8KiB";',
                          extra=f'admin = {{ listen = "127.0.0.1:{aport}"; }};\n', workers=2)
        assert wait_port(aport)

        def worker(n):
            bad = 0
            for j in range(60):
                path = f"/k{(n * 7 + j) % 40}"
                r = fetch(px, path)
                bad += r.status != 200 or r.body != body
                if j % 20 == 19:
                    admin_req(aport, "DELETE", f"/cache?host={HOST}&path={path}")
                    st = json.loads(admin_req(aport, "GET", "/cache/stats").body)
                    bad += st["bytes"] > 64 * 1024
            return bad

        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            assert sum(ex.map(worker, range(6))) == 0
        st = json.loads(admin_req(aport, "GET", "/cache/stats").body)
        assert 0 < st["bytes"] <= 64 * 1024 and st["hits"] > 0, st
    finally:
        o.stop()


def slow(delay, headers, body=b"slow body\n"):
    def fn(h):
        time.sleep(delay)
        return 200, list(headers), body
    return fn


def concurrently(px, path, n):
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        return list(ex.map(lambda _: fetch(px, path), range(n)))


@with_origin({"/slow": slow(0.6, [("Cache-Control", "max-age=60")]),
              "/nostore": slow(0.4, [("Cache-Control", "no-store")]),
              "/veryslow": slow(1.5, [("Cache-Control", "max-age=60")])})
def test_concurrent_misses_send_one_request(P, o):
    px = cached_proxy(P, o, 'lock_timeout = "5s";', workers=2)
    rs = concurrently(px, "/slow", 8)
    assert all(r.status == 200 and r.body == b"slow body\n" for r in rs), rs
    assert o.hits("/slow") == 1
    assert sorted(r.header("X-Cache") for r in rs) == ["HIT"] * 7 + ["MISS"]
    # the first response cannot be stored: the others, woken, each go to the origin
    t0 = time.time()
    rs = concurrently(px, "/nostore", 4)
    assert all(r.status == 200 for r in rs) and o.hits("/nostore") == 4
    assert time.time() - t0 < 3


@with_origin({"/veryslow": slow(1.5, [("Cache-Control", "max-age=60")])})
def test_waiting_for_a_fill_is_bounded(P, o):
    px = cached_proxy(P, o, 'lock_timeout = "300ms";', workers=2)
    t0 = time.time()
    rs = concurrently(px, "/veryslow", 4)
    took = time.time() - t0
    assert all(r.status == 200 and r.body == b"slow body\n" for r in rs), rs
    # each waiter gave up after 300 ms and asked the origin itself
    assert o.hits("/veryslow") == 4 and took < 3, (o.hits("/veryslow"), took)


def versioned(delay):
    n = {"v": 0}

    def fn(h):
        time.sleep(delay)
        n["v"] += 1
        return 200, [("Cache-Control", "max-age=2, stale-while-revalidate=30")], \
            f"version {n['v']}\n".encode()
    return fn


@with_origin({"/swr": versioned(0.5)})
def test_stale_while_revalidate_refreshes_in_the_background(P, o):
    px = cached_proxy(P, o, workers=2)
    assert fetch(px, "/swr").body == b"version 1\n"
    time.sleep(2.2)
    # stale within the window: answered at once (the origin takes 0.5 s), refreshed once behind
    t0 = time.time()
    rs = concurrently(px, "/swr", 5)
    took = time.time() - t0
    assert all(r.status == 200 and r.body == b"version 1\n" and r.header("X-Cache") == "STALE"
               for r in rs), [(r.status, r.body, r.header("X-Cache")) for r in rs]
    assert took < 0.4, took
    deadline = time.time() + 3
    while o.hits("/swr") < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.8)  # the origin counts a request when it starts: let it answer
    assert o.hits("/swr") == 2  # one background request for the five stale answers
    r = fetch(px, "/swr")
    assert r.body == b"version 2\n" and r.header("X-Cache") == "HIT", (r.body, r.header("X-Cache"))


@with_origin({"/cfg": fixed(headers=[("Cache-Control", "max-age=1")], body=b"from config\n")})
def test_stale_while_revalidate_from_the_config(P, o):
    px = cached_proxy(P, o, 'stale_while_revalidate = "30s";')
    fetch(px, "/cfg")
    time.sleep(1.2)
    r = fetch(px, "/cfg")  # the response named no window: the config's applies
    assert r.header("X-Cache") == "STALE" and r.body == b"from config\n", r
    deadline = time.time() + 3
    while o.hits("/cfg") < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert o.hits("/cfg") == 2


LAST_MODIFIED = "Sun, 01 Nov 2026 10:00:00 GMT"


def revalidated_by_304(h):
    if h.headers.get("If-None-Match") == '"r1"':
        return 304, [("Cache-Control", "max-age=60"), ("ETag", '"r1"'), ("X-Version", "2")], b""
    return 200, [("Cache-Control", "max-age=1, stale-while-revalidate=30"), ("ETag", '"r1"'),
                 ("Last-Modified", LAST_MODIFIED), ("X-Version", "1")], b"refreshed body\n"


def tls_get(port, path, headers=()):
    """GET over TLS (the certificate is not checked: what matters is what the backend sees)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        c.request("GET", path, headers={"Host": HOST, **dict(headers)})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


@with_origin({"/rv": revalidated_by_304})
def test_background_refresh_is_the_clients_request_made_conditional(P, o):
    from test_tls import make_cert
    cert, key = make_cert(P.tmp, "c", HOST, [HOST])
    conf = (f'domains = ( {{ domain = "{HOST}"; backends = ( {{ addr = "http://127.0.0.1:{o.port}"; }} ); }} );\n'
            f'cache = {{ }};\ntls = {{ cert = "{cert}"; key = "{key}"; }};\n')
    px = P.proxy(conf, workers=1, listen_key="listen_tls")  # TLS only: X-Forwarded-Proto https
    st, h, body = tls_get(px.port, "/rv")
    assert st == 200 and h["x-cache"] == "MISS" and h["x-version"] == "1", (st, h)
    first_date = h["date"]
    time.sleep(1.3)
    st, h, body = tls_get(px.port, "/rv", [("X-Forwarded-For", "10.1.2.3"),
                                            ("If-None-Match", '"client-own"')])
    assert st == 200 and h["x-cache"] == "STALE" and body == b"refreshed body\n", (st, h)
    deadline = time.time() + 3
    while o.hits("/rv") < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert o.hits("/rv") == 2
    sent = o.last["/rv"]
    # the client's request as it would have gone upstream, with the cache's conditionals
    assert sent["x-forwarded-proto"] == "https", sent
    assert sent["x-forwarded-for"] == "10.1.2.3, 127.0.0.1", sent
    assert sent["x-forwarded-host"] == HOST and sent["host"] == f"127.0.0.1:{o.port}", sent
    assert sent["if-none-match"] == '"r1"' and sent["if-modified-since"] == LAST_MODIFIED, sent
    # the 304 refreshed the entry: fresh again, with the 304's fields and the stored body
    st, h, body = tls_get(px.port, "/rv")
    assert st == 200 and h["x-cache"] == "HIT" and h["x-version"] == "2", (st, h)
    assert body == b"refreshed body\n" and h["date"] != first_date and int(h["age"]) <= 1, (h, body)
    assert o.hits("/rv") == 2


def test_background_refresh_to_a_backend_that_is_down_ends_its_fill(P):
    a = P.origin("A")
    px = cached_proxy(P, type("O", (), {"port": a.port}), 'lock_timeout = "4s";', workers=1)
    path = "/down?header=Cache-Control:max-age%3D1,stale-while-revalidate%3D30"
    assert fetch(px, path).header("X-Cache") == "MISS"
    P.stop(a)
    time.sleep(1.3)
    r = fetch(px, path)  # the refresh behind it cannot connect
    assert r.status == 200 and r.header("X-Cache") == "STALE" and r.body == b"hello from A\n", r
    deadline = time.time() + 3
    while "background cache refresh" not in P.log_of(px) and time.time() < deadline:
        time.sleep(0.05)
    assert "background cache refresh: connect failed" in P.log_of(px), P.log_of(px)[-2000:]
    b = P.origin("B", port=a.port)
    # the failed refresh let go of the URL: the next stale answer starts another one, which
    # stores B's answer
    assert fetch(px, path).body == b"hello from A\n"
    deadline = time.time() + 3
    while fetch(px, path).body != b"hello from B\n" and time.time() < deadline:
        time.sleep(0.1)
    r = fetch(px, path)
    assert r.body == b"hello from B\n" and r.header("X-Cache") == "HIT", (r, r.body)
    # a request that must revalidate finds no fill left behind to wait for (lock_timeout 4s)
    t0 = time.time()
    r = fetch(px, path, [("Cache-Control", "no-cache")])
    assert r.status == 200 and r.body == b"hello from B\n" and time.time() - t0 < 2, r
    P.stop(b)


def test_background_refresh_gives_up_on_a_hang_and_stores_a_chunked_answer(P):
    a = P.origin("A")
    port = a.port
    px = cached_proxy(P, type("O", (), {"port": port}), domain_extra='read_timeout = "1s";',
                      workers=1)
    path = "/c?chunked=1&header=Cache-Control:max-age%3D1,stale-while-revalidate%3D30"
    assert fetch(px, path).body == b"hello from A\n"
    P.stop(a)
    b = P.origin("B", "--delay", "3000", port=port)
    time.sleep(1.3)
    assert fetch(px, path).header("X-Cache") == "STALE"  # its refresh waits for B in vain
    deadline = time.time() + 4
    while "background cache refresh" not in P.log_of(px) and time.time() < deadline:
        time.sleep(0.05)
    log = P.log_of(px)
    assert "background cache refresh" in log and "read_timeout" in log, log[-2000:]
    P.stop(b)
    P.origin("C", port=port)
    r = fetch(px, path)  # still A's entry: the timed-out refresh stored nothing
    assert r.body == b"hello from A\n" and r.header("X-Cache") == "STALE", r
    deadline = time.time() + 3
    while fetch(px, path).body != b"hello from C\n" and time.time() < deadline:
        time.sleep(0.1)
    r = fetch(px, path)  # C's chunked answer, decoded into the entry
    assert r.body == b"hello from C\n" and r.header("X-Cache") == "HIT", (r, r.body)
    assert r.header("Content-Length") == "13" and r.header("Transfer-Encoding") is None, r.headers


@with_origin({"/hang": versioned(0)})
def test_a_drain_ends_a_background_refresh_in_flight(P, o):
    calls = {"n": 0}
    fast = o.routes["/hang"]

    def first_fast_then_slow(h):
        calls["n"] += 1
        if calls["n"] > 1:
            time.sleep(4)  # the refresh: still waiting when the proxy is told to stop
        return fast(h)
    o.routes["/hang"] = first_fast_then_slow
    px = cached_proxy(P, o, workers=1)
    assert fetch(px, "/hang").body == b"version 1\n"
    time.sleep(2.2)
    assert fetch(px, "/hang").header("X-Cache") == "STALE"
    deadline = time.time() + 3
    while o.hits("/hang") < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert o.hits("/hang") == 2
    t0 = time.time()
    assert P.stop(px) == 0  # exit 0: nothing leaked (the sanitizer build checks)
    assert time.time() - t0 < 2.5, time.time() - t0  # nobody waits for a refresh


def http_date(offset_s):
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + offset_s))


def flaky_after_first(headers):
    n = {"v": 0}

    def fn(h):
        n["v"] += 1
        return (200, list(headers), b"first\n") if n["v"] == 1 else (503, [], b"down\n")
    return fn


@with_origin({"/exp": lambda h: (200, [("Date", http_date(0)), ("Expires", http_date(60))], b"e\n"),
              "/expired": lambda h: (200, [("Date", http_date(0)), ("Expires", http_date(-60))], b"x\n"),
              "/ms": fixed(headers=[("Cache-Control", "max-age=1")]),
              "/mf": fixed(headers=[("Cache-Control", "max-age=60")]),
              "/mr": flaky_after_first([("Cache-Control", "max-age=1, must-revalidate, stale-if-error=60")])})
def test_expires_and_request_directives(P, o):
    px = cached_proxy(P, o)
    fetch(px, "/exp")
    assert fetch(px, "/exp").header("X-Cache") == "HIT" and o.hits("/exp") == 1
    fetch(px, "/expired")
    assert fetch(px, "/expired").header("X-Cache") == "MISS" and o.hits("/expired") == 2
    fetch(px, "/ms")
    fetch(px, "/mf")
    fetch(px, "/mr")
    time.sleep(1.2)
    # max-stale: the client accepts a stale answer
    r = fetch(px, "/ms", [("Cache-Control", "max-stale=30")])
    assert r.header("X-Cache") == "STALE" and o.hits("/ms") == 1, r
    # min-fresh: not fresh enough for this client: ask the origin
    assert fetch(px, "/mf", [("Cache-Control", "min-fresh=120")]).header("X-Cache") == "MISS"
    assert o.hits("/mf") == 2
    # must-revalidate: never served stale, not with max-stale, not on an origin error
    r = fetch(px, "/mr", [("Cache-Control", "max-stale=30")])
    assert r.status == 503 and o.hits("/mr") == 2, r
