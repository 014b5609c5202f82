"""HTTP/2 to clients: curl (--http2 over TLS, --http2-prior-knowledge on h2c), nghttp and
h2load as the reference clients, python3-h2 (and raw frames) for the protocol's edge cases and
the known attacks: each refused with the right code, counted, and the proxy's CPU and memory
staying bounded while it keeps serving others."""
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

from harness import Skip, curl, domain_conf, free_port, origin_stats, wait_port
from test_tls import make_cert

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
except ImportError:  # a Python of its own (pyenv) beside Debian's: its pure-Python packages
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import h2.config
        import h2.connection
        import h2.events
        import h2.settings
    except ImportError:
        h2 = None
if h2 is not None:
    import hpack
    from hyperframe import frame as hf

HOST = "h2.local"
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
STREAM_CLOSED, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 5, 7, 8, 11


def need_h2():
    if h2 is None:
        raise Skip("python3-h2 is not installed (apt-get install python3-h2)")


def h2_proxy(P, origin_args=(), extra="", domain_extra="", tls=True, workers=1):
    """ringproxy with a TLS listener and an h2c plain one, in front of a ringorigin."""
    o = P.origin("A", *origin_args)
    cert, key = make_cert(P.tmp, "h2", HOST, [HOST])
    tport, aport = free_port(), free_port()
    conf = (f'listen_tls = "127.0.0.1:{tport}";\n'
            f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n'
            f'h2c = true;\nadmin = {{ listen = "127.0.0.1:{aport}"; }};\n'
            + domain_conf(HOST, [o.port], domain_extra) + extra)
    px = P.proxy(conf, workers=workers)
    assert wait_port(tport) and wait_port(aport)
    px.tport, px.aport, px.cert, px.origin = tport, aport, cert, o
    return px


def proc_cpu_s(pid):
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def metric(px, name, **labels):
    r = curl("-s", f"http://127.0.0.1:{px.aport}/metrics")
    lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(lab) + r"\}" if lab else "") + r" (\S+)"
    m = re.search(r"^" + pat + r"$", r.stdout.decode(), re.M)
    return float(m.group(1)) if m else None


class H2:
    """A python3-h2 client on one connection (h2c, or TLS with ALPN h2)."""

    def __init__(self, port, tls=False, settings=None, timeout=5.0, ack_data=True):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            s = ctx.wrap_socket(s, server_hostname=HOST)
            assert s.selected_alpn_protocol() == "h2"
        self.s = s
        self.c = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self.c.local_settings = h2.settings.Settings(client=True, initial_values=settings or {})
        self.c.initiate_connection()
        self.ack_data = ack_data
        self.streams = {}  # id: {"headers", "body", "trailers", "reset", "done"}
        self.goaway = None
        self.remote_settings = None
        self.flush()

    def flush(self):
        data = self.c.data_to_send()
        if data:
            self.s.sendall(data)

    def request(self, path, method="GET", headers=(), body=None, end=True, host=HOST):
        sid = self.c.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":authority", host),
                (":path", path), *headers]
        self.streams[sid] = {"headers": None, "body": b"", "trailers": None, "reset": None,
                             "done": False, "interim": []}
        self.c.send_headers(sid, hdrs, end_stream=body is None and end)
        if body is not None:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid, body, end=True, frame=16384):
        """Sends body under the proxy's windows, reading (and acknowledging) as it goes."""
        off = 0
        while off < len(body) or (end and off == len(body) == 0):
            room = min(self.c.local_flow_control_window(sid), self.c.max_outbound_frame_size,
                       frame)
            if room <= 0:
                self.flush()
                self.pump(0.5)
                if self.streams[sid]["reset"] is not None:
                    return
                continue
            chunk = body[off:off + room]
            off += len(chunk)
            self.c.send_data(sid, chunk, end_stream=end and off >= len(body))
            self.flush()
            if not chunk:
                break

    def pump(self, timeout=5.0):
        """Reads what arrives within timeout (or until the connection closes); False on EOF."""
        self.s.settimeout(timeout)
        try:
            data = self.s.recv(65536)
        except (socket.timeout, ssl.SSLError, TimeoutError):
            return True
        except ConnectionResetError:
            return False
        if not data:
            return False
        for ev in self.c.receive_data(data):
            st = self.streams.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived):
                st["headers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                st["interim"].append(dict(ev.headers))
            elif isinstance(ev, h2.events.DataReceived):
                st["body"] += ev.data
                if self.ack_data and ev.flow_controlled_length:
                    self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                st["trailers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                st["done"] = True
            elif isinstance(ev, h2.events.StreamReset):
                if st is not None:
                    st["reset"] = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = (ev.error_code, ev.last_stream_id)
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                self.remote_settings = {k: v.new_value for k, v in ev.changed_settings.items()}
        self.flush()
        return True

    def wait(self, sid, timeout=10.0):
        end = time.monotonic() + timeout
        st = self.streams[sid]
        while not st["done"] and st["reset"] is None and time.monotonic() < end:
            if not self.pump(max(0.05, end - time.monotonic())):
                break
        return st

    def get(self, path, **kw):
        return self.wait(self.request(path, **kw))

    def close(self):
        self.s.close()


class Raw:
    """Frames written by hand after the preface and SETTINGS, for what a well-behaved client
    library refuses to send; reads frames back."""

    def __init__(self, port, settings=b""):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, settings))
        self.buf = b""
        self.enc = hpack.Encoder()

    def send(self, data):
        try:
            self.s.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def headers(self, sid, hdrs, flags=0x5):  # END_STREAM | END_HEADERS
        return frame(1, flags, sid, self.enc.encode(hdrs))

    def frames(self, timeout=5.0, until=None):
        """Frames (type, flags, stream, payload) until EOF, timeout, or until(frame)."""
        out, end = [], time.monotonic() + timeout
        while time.monotonic() < end:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff,
                     self.buf[9:9 + n])
                self.buf = self.buf[9 + n:]
                out.append(f)
                if until and until(f):
                    return out
            self.s.settimeout(max(0.01, end - time.monotonic()))
            try:
                data = self.s.recv(1 << 20)
            except (socket.timeout, TimeoutError):
                break
            except ConnectionResetError:
                break
            if not data:
                break
            self.buf += data
        return out

    def goaway(self, timeout=10.0):
        """The GOAWAY's (last stream id, error code), or None."""
        for t, _, _, p in self.frames(timeout, until=lambda f: f[0] == 7):
            if t == 7:
                return int.from_bytes(p[:4], "big") & 0x7fffffff, int.from_bytes(p[4:8], "big")
        return None

    def close(self):
        self.s.close()


def pseudo(path="/", method="GET"):
    return [(":method", method), (":scheme", "http"), (":authority", HOST), (":path", path)]


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def settings_payload(**kv):
    ids = {"initial_window_size": 4, "max_frame_size": 5, "max_concurrent_streams": 3}
    return b"".join(ids[k].to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in kv.items())


# ---- clients --------------------------------------------------------------------------------

def test_curl_h2_over_tls_and_h2c_prior_knowledge(P):
    px = h2_proxy(P, origin_args=())
    r = curl("-sk", "--http2", "-w", "\n%{http_version} %{http_code}", "--resolve",
             f"{HOST}:{px.tport}:127.0.0.1", f"https://{HOST}:{px.tport}/a")
    assert r.returncode == 0 and r.stdout.endswith(b"\n2 200"), r
    assert r.stdout.startswith(b"hello from A"), r
    r = curl("-s", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
             "-H", f"Host: {HOST}", f"http://127.0.0.1:{px.port}/b")
    assert r.returncode == 0 and r.stdout.endswith(b"\n2 200"), r
    # HTTP/1.1 beside it on both listeners
    r = curl("-sk", "--http1.1", "-w", "\n%{http_version}", "--resolve",
             f"{HOST}:{px.tport}:127.0.0.1", f"https://{HOST}:{px.tport}/c")
    assert r.stdout.endswith(b"\n1.1"), r
    r = curl("-s", "-w", "\n%{http_version}", "-H", f"Host: {HOST}", f"http://127.0.0.1:{px.port}/d")
    assert r.stdout.endswith(b"\n1.1"), r
    assert metric(px, "ringproxy_http2_connections_total") == 2
    assert metric(px, "ringproxy_http2_streams_total") == 2
    # ALPN: h2 preferred, http/1.1 for a client that offers only it
    for offer, want in (("h2,http/1.1", "h2"), ("http/1.1,h2", "h2"), ("http/1.1", "http/1.1")):
        o = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{px.tport}", "-alpn",
                            offer, "-servername", HOST], input=b"", capture_output=True,
                           timeout=10)
        assert f"ALPN protocol: {want}".encode() in o.stdout, (offer, o.stdout[-600:])


def test_http2_false_and_h2c_off_by_default(P):
    o = P.origin("A")
    cert, key = make_cert(P.tmp, "h2", HOST, [HOST])
    tport = free_port()
    px = P.proxy(f'listen_tls = "127.0.0.1:{tport}";\n'
                 f'tls = {{ cert = "{cert}"; key = "{key}"; }};\nhttp2 = false;\n'
                 + domain_conf(HOST, [o.port]))
    assert wait_port(tport)
    r = curl("-sk", "--http2", "-w", "\n%{http_version}", "--resolve",
             f"{HOST}:{tport}:127.0.0.1", f"https://{HOST}:{tport}/")
    assert r.returncode == 0 and r.stdout.endswith(b"\n1.1"), r
    # no h2c on a plain listener unless asked: the preface is not HTTP/1.1 either
    r = curl("-s", "--http2-prior-knowledge", "-H", f"Host: {HOST}", f"http://127.0.0.1:{px.port}/")
    assert r.returncode != 0, r
    r = curl("-s", "-w", "\n%{http_code}", "-H", f"Host: {HOST}", f"http://127.0.0.1:{px.port}/")
    assert r.stdout.endswith(b"\n200"), r


def test_nghttp_frames_show_the_settings(P):
    px = h2_proxy(P, extra="h2_max_concurrent_streams = 64;\n", origin_args=())
    r = subprocess.run(["nghttp", "-nv", "-H", f":authority: {HOST}",
                        f"http://127.0.0.1:{px.port}/x"], capture_output=True, timeout=15)
    out = r.stdout.decode()
    assert r.returncode == 0, out
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):64" in out, out
    assert "SETTINGS_MAX_HEADER_LIST_SIZE(0x06):16384" in out, out
    assert re.search(r"recv HEADERS frame <length=\d+, flags=0x04, stream_id=13>", out), out
    assert ":status: 200" in out and "x-origin: A" in out, out
    assert "recv DATA frame <length=13, flags=0x01, stream_id=13>" in out, out


def test_h2load_100000_requests_without_errors(P):
    px = h2_proxy(P, origin_args=("-s", "21"))
    for url in (f"http://127.0.0.1:{px.port}/", f"https://127.0.0.1:{px.tport}/"):
        n = 100000 if url.startswith("http:") else 20000
        r = subprocess.run(["h2load", "-n", str(n), "-c", "10", "-m", "100", "-H",
                            f":authority: {HOST}", url], capture_output=True, timeout=120)
        out = r.stdout.decode()
        assert f"requests: {n} total, {n} started, {n} done, {n} succeeded, 0 failed, 0 errored, " \
               "0 timeout" in out, out
        assert f"status codes: {n} 2xx" in out, out


def test_streams_in_turn_and_at_once_and_the_stream_limit(P):
    need_h2()
    px = h2_proxy(P, origin_args=(), extra="h2_max_concurrent_streams = 128;\n")
    c = H2(px.port)
    for i in range(1000):  # one connection, 1000 streams in turn
        st = c.get(f"/t{i}")
        assert st["headers"][":status"] == "200" and st["body"] == b"hello from A\n", (i, st)
    sids = [c.request(f"/m{i}?delay=300") for i in range(128)]  # 128 at once
    for sid in sids:
        st = c.wait(sid)
        assert st["headers"][":status"] == "200", st
    c.close()
    # 129 at once: before the client saw the limit the 129th is refused (REFUSED_STREAM);
    # once it acknowledged it, going past it is a protocol error (nghttp2's connection error)
    raw = Raw(px.port)
    raw.send(b"".join(raw.headers(1 + 2 * i, pseudo(f"/r{i}?delay=500"))
                      for i in range(129)))
    got = raw.frames(10, until=lambda f, seen=set(): (
        f[0] in (0, 3) and (seen.add(f[2]) or len(seen) == 129)))
    refused = [f[2] for f in got if f[0] == 3 and int.from_bytes(f[3], "big") == REFUSED_STREAM]
    ended = {f[2] for f in got if f[0] == 0 and f[1] & 1}
    assert refused == [257] and len(ended) == 128, (refused, len(ended))
    raw = Raw(px.port)
    raw.frames(1, until=lambda f: f[0] == 4 and not f[1] & 1)  # the proxy's SETTINGS
    raw.send(frame(4, 1, 0))  # acknowledged: its limit is in force
    raw.send(b"".join(raw.headers(1 + 2 * i, pseudo(f"/r{i}?delay=500"))
                      for i in range(129)))
    g = raw.goaway()
    assert g == (255, PROTOCOL_ERROR), g


def test_bodies_of_every_size_both_ways(P):
    need_h2()
    px = h2_proxy(P)
    big = 16 << 20
    for tls in (False, True):
        c = H2(px.tport if tls else px.port, tls=tls, settings={4: big - 1})
        c.c.increment_flow_control_window(big)
        c.flush()
        for n in (0, 1, 16384, 16385) + (() if tls else (10 << 20,)):  # (10 MiB: Python is slow)
            body = os.urandom(n)
            # with a content-length, and without one (then chunked to the backend)
            for cl in (True, False):
                hdrs = [("content-length", str(n))] if cl else []
                st = c.wait(c.request("/up?echo=1", method="POST", headers=hdrs, body=body),
                            timeout=30)
                assert st["headers"][":status"] == "200", (n, cl, st["headers"], st["reset"])
                head, _, got = st["body"].partition(b"\r\n\r\n")
                if cl:
                    assert f"Content-Length: {n}".encode() in head, head
                    assert got == body, (n, len(got))
                elif n:
                    assert b"Transfer-Encoding: chunked" in head, head
                    assert dechunk(got) == body, n
            st = c.wait(c.request(f"/down?size={n}"), timeout=30)
            assert st["headers"][":status"] == "200" and len(st["body"]) == n, (n, st["headers"])
            assert st["headers"].get("content-length") == str(n), st["headers"]
            st = c.wait(c.request(f"/down?size={n}&chunked=1"), timeout=30)
            assert len(st["body"]) == n and "transfer-encoding" not in st["headers"], n
        c.close()


def dechunk(b):
    out = b""
    while True:
        line, _, b = b.partition(b"\r\n")
        n = int(line.split(b";")[0], 16)
        if n == 0:
            return out
        out, b = out + b[:n], b[n + 2:]


def test_one_byte_windows(P):
    """A client whose window is 1 byte gets its answer one byte per DATA frame; a request
    body sent one byte per frame arrives whole."""
    need_h2()
    px = h2_proxy(P)
    c = H2(px.port, settings={4: 1})
    st = c.wait(c.request("/w?size=16385"), timeout=60)
    assert st["headers"][":status"] == "200" and len(st["body"]) == 16385, len(st["body"])
    body = os.urandom(16385)
    sid = c.request("/w1?echo=1", method="POST", headers=[("content-length", "16385")],
                    body=body, end=True)
    st = c.wait(sid, timeout=60)
    assert st["body"].partition(b"\r\n\r\n")[2] == body
    c.close()
    c = H2(px.port)
    sid = c.request("/w2?echo=1", method="POST", headers=[("content-length", "3000")], end=False)
    c.send_body(sid, os.urandom(3000), frame=1)
    st = c.wait(sid, timeout=60)
    assert st["headers"][":status"] == "200" and b"Content-Length: 3000" in st["body"]


def test_flow_control_holds_a_slow_backend(P):
    """A backend that never reads: the proxy takes a stream window (and what the backend's
    socket holds), not the whole 64 MiB body the client has to send."""
    need_h2()
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)
    port = hole.getsockname()[1]
    conns = []
    threading.Thread(target=lambda: conns.append(hole.accept()), daemon=True).start()
    px = P.proxy('h2c = true;\n' + domain_conf(HOST, [port], 'read_timeout = "30s";'))
    rss0 = proc_rss_kib(px.pid)
    c = H2(px.port)
    sid = c.request("/slow", method="POST", headers=[("content-length", str(64 << 20))], end=False)
    sent, chunk = 0, b"x" * 16384
    t_end = time.monotonic() + 5
    while time.monotonic() < t_end:
        room = c.c.local_flow_control_window(sid)
        if room <= 0:
            c.pump(0.2)
            continue
        n = min(room, len(chunk))
        c.c.send_data(sid, chunk[:n])
        c.flush()
        sent += n
    # socket buffers on loopback hold a few MiB; the proxy itself holds one window
    assert sent < 32 << 20, sent
    grown = proc_rss_kib(px.pid) - rss0
    assert grown < 16 << 10, grown
    c.close()
    hole.close()


def test_content_length_disagreeing_with_data_is_a_stream_error(P):
    need_h2()
    px = h2_proxy(P)
    c = H2(px.port)
    sid = c.request("/cl?echo=1", method="POST", headers=[("content-length", "10")],
                    body=b"12345", end=True)
    st = c.wait(sid)
    assert st["reset"] == PROTOCOL_ERROR, st
    sid = c.request("/cl2?echo=1", method="POST", headers=[("content-length", "3")],
                    body=b"123456", end=True)
    st = c.wait(sid)
    assert st["reset"] == PROTOCOL_ERROR, st
    st = c.get("/after")  # the connection goes on
    assert st["headers"][":status"] == "200", st
    c.close()


def test_connection_specific_fields_never_pass(P):
    need_h2()
    px = h2_proxy(P)
    before = origin_stats(px.origin.port)[0]
    c = H2(px.port)
    for bad in (("connection", "keep-alive"), ("transfer-encoding", "chunked"),
                ("upgrade", "websocket"), ("te", "gzip"), ("keep-alive", "5")):
        st = c.get("/bad", headers=[bad])
        assert st["reset"] == PROTOCOL_ERROR, (bad, st)
    after = origin_stats(px.origin.port)[0]  # (its /__stats are not counted)
    assert after == before, (before, after)  # none reached the backend
    st = c.get("/ok?echo=1", headers=[("te", "trailers"), ("cookie", "a=1"), ("cookie", "b=2")])
    head = st["body"].split(b"\r\n\r\n")[0].decode()
    assert "cookie: a=1; b=2" in head, head  # joined (RFC 9113 section 8.2.3)
    assert "\nte:" not in head.lower() and "\nconnection:" not in head.lower(), head
    # the backend's connection-specific fields are not passed to the client either
    st = c.get("/resp?header=Connection:x-foo&header=X-Foo:1&header=Keep-Alive:timeout%3D5")
    assert st["headers"][":status"] == "200", st
    for f in ("connection", "keep-alive", "x-foo", "transfer-encoding"):
        assert f not in st["headers"], st["headers"]
    # Host and :authority must agree
    st = c.get("/host", headers=[("host", "other.local")])
    assert st["headers"][":status"] == "400", st
    c.close()


def test_cache_hit_local_endpoint_and_hooks_over_h2(P):
    px = h2_proxy(P, origin_args=(), extra='cache = { };\n')
    url = f"http://127.0.0.1:{px.port}/c?header=Cache-Control:max-age%3D60"
    h = ["-H", f"Host: {HOST}"]
    r1 = curl("-s", "--http2-prior-knowledge", "-D", "-", *h, url)
    r2 = curl("-s", "--http2-prior-knowledge", "-D", "-", *h, url)
    assert b"x-cache: miss" in r1.stdout.lower() and b"HTTP/2 200" in r1.stdout, r1.stdout
    assert b"x-cache: hit" in r2.stdout.lower() and r2.stdout.endswith(b"hello from A\n"), r2
    # hooks and local endpoints: the front end of test_hooks (h2c on)
    from test_hooks import hooks_fe
    o = P.origin("E", "--echo")
    with hooks_fe(P, o.port) as f:
        r = curl("-s", "--http2-prior-knowledge", "-H", "Host: hooks.local", "-H",
                 "User-Agent: t/1", f"http://127.0.0.1:{f.port}/plain?x=1")
        text = r.stdout.decode()
        assert text.startswith("GET /plain?x=1 HTTP/1.1"), text
        assert "X-Order: first" in text and "X-Seen: hooks.local|" in text, text
        r = curl("-s", "--http2-prior-knowledge", "-w", "\n%{http_code}", "-H",
                 "Host: hooks.local", "-d", "hello", f"http://127.0.0.1:{f.port}/echo/1/2")
        assert r.stdout.endswith(b"\n201") and b"len=5\nhello" in r.stdout, r.stdout
        r = curl("-s", "--http2-prior-knowledge", "-w", "\n%{http_code}", "-H",
                 "Host: hooks.local", f"http://127.0.0.1:{f.port}/echo/1/2")
        assert r.stdout.endswith(b"\n405"), r.stdout


def test_drain_sends_goaway_and_finishes_streams_in_flight(P):
    need_h2()
    px = h2_proxy(P)
    raw = Raw(px.port)  # (python3-h2 stops reading at a GOAWAY)
    raw.send(b"".join(raw.headers(sid, pseudo(f"/slow{sid}?delay=800"))
                      for sid in (1, 3, 5)))
    time.sleep(0.2)
    px.send_signal(signal.SIGTERM)
    got = raw.frames(10)  # until the proxy closes
    goaway = [f for f in got if f[0] == 7]
    assert goaway and int.from_bytes(goaway[0][3][:4], "big") == 5, got
    assert int.from_bytes(goaway[0][3][4:8], "big") == NO_ERROR
    ended = [f[2] for f in got if f[0] == 0 and f[1] & 1 and f[3] == b"hello from A\n"]
    assert sorted(ended) == [1, 3, 5], got
    assert px.wait(timeout=10) == 0


def test_access_log_says_http_2(P):
    log = os.path.join(P.tmp, "a.log")
    px = h2_proxy(P, origin_args=(),
                  extra=f'access_log = {{ path = "{log}"; '
                        'format = "$server_protocol \\"$request\\" $status"; };\n')
    curl("-s", "--http2-prior-knowledge", "-H", f"Host: {HOST}", f"http://127.0.0.1:{px.port}/l")
    curl("-s", "-H", f"Host: {HOST}", f"http://127.0.0.1:{px.port}/l1")
    P.stop(px)
    text = open(log).read()
    assert 'HTTP/2.0 "GET /l HTTP/2.0" 200\n' in text, text
    assert 'HTTP/1.1 "GET /l1 HTTP/1.1" 200\n' in text, text


# ---- attacks --------------------------------------------------------------------------------

def bounded(px, fn, cpu_s=5.0, rss_mib=64):
    """Runs fn() against px and checks the proxy's CPU and memory stayed bounded, and that it
    still answers a new client afterwards."""
    cpu0, rss0 = proc_cpu_s(px.pid), proc_rss_kib(px.pid)
    out = fn()
    cpu, rss = proc_cpu_s(px.pid) - cpu0, proc_rss_kib(px.pid) - rss0
    assert cpu < cpu_s, f"proxy CPU {cpu:.2f} s"
    assert rss < rss_mib << 10, f"proxy RSS grew {rss} KiB"
    r = curl("-s", "--http2-prior-knowledge", "-w", "\n%{http_code}", "-H", f"Host: {HOST}",
             f"http://127.0.0.1:{px.port}/after")
    assert r.stdout.endswith(b"\n200"), r
    return out


def test_rapid_reset_gets_enhance_your_calm(P):
    need_h2()
    px = h2_proxy(P, origin_args=("--delay", "50"))

    def attack():
        raw = Raw(px.port)
        sent = 0
        for i in range(5000):
            sid = 1 + 2 * i
            if not raw.send(raw.headers(sid, pseudo(f"/r{i}"))
                            + frame(3, 0, sid, (CANCEL).to_bytes(4, "big"))):
                break
            sent += 1
        return raw.goaway(), sent
    g, sent = bounded(px, attack)
    assert g is not None and g[1] == ENHANCE_YOUR_CALM, (g, sent)
    assert metric(px, "ringproxy_http2_refused_total", reason="calm") >= 1
    assert metric(px, "ringproxy_http2_refused_total", reason="reset") >= 1000


def test_continuation_flood_is_refused(P):
    need_h2()
    px = h2_proxy(P)

    def attack():
        raw = Raw(px.port)
        enc = hpack.Encoder()
        raw.send(frame(1, 0x1, 1, enc.encode(pseudo())))
        for i in range(20000):  # CONTINUATION without END_HEADERS, forever
            if not raw.send(frame(9, 0, 1, enc.encode([(f"x-c{i}", "v" * 50)]))):
                break
        return raw.goaway()
    g = bounded(px, attack)
    assert g is not None and g[1] in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR), g
    assert metric(px, "ringproxy_http2_refused_total", reason="calm") >= 1


def test_settings_ping_and_empty_data_floods(P):
    need_h2()
    px = h2_proxy(P)
    floods = {
        "settings": lambda i: frame(4, 0, 0, settings_payload(initial_window_size=65535)),
        "ping": lambda i: frame(6, 0, 0, i.to_bytes(8, "big")),
        "data": lambda i: frame(0, 0, 1, b""),
    }
    for name, make in floods.items():
        def attack():
            raw = Raw(px.port)
            if name == "data":  # a POST whose body is empty frames, forever
                raw.send(raw.headers(1, pseudo(method="POST"), flags=0x4))
            batch = b"".join(make(i) for i in range(500))
            for _ in range(100):  # 50000 frames, as fast as they go, nothing read
                if not raw.send(batch):
                    break
            return raw.goaway()
        g = bounded(px, attack)
        assert g is not None and g[1] == ENHANCE_YOUR_CALM, (name, g)
    assert metric(px, "ringproxy_http2_refused_total", reason="calm") >= 3


def test_hpack_bomb_is_431(P):
    need_h2()
    px = h2_proxy(P)

    def attack():
        raw = Raw(px.port)
        enc = hpack.Encoder()
        head = enc.encode(pseudo("/bomb"))
        first = enc.encode([("x-bomb", "a" * 4000)])  # enters the dynamic table (index 62)
        codes = []
        for i in range(50):
            sid = 1 + 2 * i
            block = head if i else head + first
            block += b"\xbe" * 16000  # 16000 references: 64 MB of fields from 16 KB
            raw.send(frame(1, 0x1, sid, block[:16384]))
            rest = block[16384:]
            while rest:
                part, rest = rest[:16384], rest[16384:]
                raw.send(frame(9, 0x4 if not rest else 0x0, sid, part) if rest else
                         frame(9, 0x4, sid, part))
            # first one in (HEADERS without END_STREAM: body follows, but none): end it
            raw.send(frame(0, 0x1, sid, b""))
        for t, fl, sid, p in raw.frames(10, until=lambda f: f[0] == 7):
            if t == 1 and p:
                codes.append(sid)
        return codes, raw
    codes, raw = bounded(px, attack)
    assert metric(px, "ringproxy_http2_refused_total", reason="headers") >= 1
    r = curl("-s", "--http2-prior-knowledge", "-w", "\n%{http_code}", "-H", f"Host: {HOST}",
             "-H", "x-big: " + "b" * 20000, f"http://127.0.0.1:{px.port}/big-headers")
    assert r.stdout.endswith(b"\n431"), r.stdout[-200:]


def test_a_window_that_never_opens_times_out(P):
    need_h2()
    px = h2_proxy(P, origin_args=("-s", "100000"), domain_extra='write_timeout = "1s";')
    c = H2(px.port, settings={4: 0})
    sid = c.request("/stuck")
    st = c.wait(sid, timeout=5)
    assert st["headers"] and st["headers"][":status"] == "200", st
    assert st["reset"] == INTERNAL_ERROR and st["body"] == b"", st
    assert metric(px, "ringproxy_http2_refused_total", reason="write_timeout") == 1
    c.close()


def test_stream_ids_reused_or_going_backwards(P):
    need_h2()
    px = h2_proxy(P)
    get = pseudo()
    raw = Raw(px.port)
    raw.send(raw.headers(5, get))
    raw.frames(2, until=lambda f: f[0] == 0 and f[1] & 1)
    raw.send(raw.headers(3, get))  # lower than one already used
    g = raw.goaway()
    assert g is not None and g[1] == PROTOCOL_ERROR, g
    raw = Raw(px.port)
    raw.send(raw.headers(1, get))
    raw.frames(2, until=lambda f: f[0] == 0 and f[1] & 1)
    raw.send(raw.headers(1, get))  # reused after it closed
    g = raw.goaway()
    assert g is not None and g[1] in (PROTOCOL_ERROR, STREAM_CLOSED), g
    raw = Raw(px.port)
    raw.send(raw.headers(2, get))  # an even (server's) id
    g = raw.goaway()
    assert g is not None and g[1] == PROTOCOL_ERROR, g


def test_reload_sends_goaway_and_finishes_streams_in_flight(P):
    need_h2()
    px = h2_proxy(P)
    raw = Raw(px.port)
    raw.send(raw.headers(1, pseudo("/slow?delay=800")))
    time.sleep(0.2)
    px.send_signal(signal.SIGHUP)
    got = raw.frames(10)  # until the proxy closes the connection
    goaway = [f for f in got if f[0] == 7]
    assert goaway and goaway[0][3][:8] == (1).to_bytes(4, "big") + bytes(4), got
    assert [f[2] for f in got if f[0] == 0 and f[1] & 1] == [1], got
    assert px.poll() is None  # the proxy goes on, with new connections
    r = curl("-s", "--http2-prior-knowledge", "-w", "\n%{http_code}", "-H", f"Host: {HOST}",
             f"http://127.0.0.1:{px.port}/after")
    assert r.stdout.endswith(b"\n200"), r


def test_trailers_from_an_http1_backend_reach_h2_clients(P):
    need_h2()
    from harness import ScriptedBackend
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n"
             b"5\r\nhello\r\n0\r\nx-sum: 42\r\nX-Other: a b\r\n\r\n")
    sb = ScriptedBackend(reply, keep=True)
    px = P.proxy('h2c = true;\n' + domain_conf(HOST, [sb.port]))
    c = H2(px.port)
    st = c.get("/t")
    assert st["headers"][":status"] == "200" and st["body"] == b"hello", st
    assert st["trailers"] == {"x-sum": "42", "x-other": "a b"}, st
    assert "trailer" not in st["headers"]  # (hop-by-hop in HTTP/1.1)
    c.close()
    # HTTP/1.1 clients get them in the last chunk, as the backend sent them
    r = curl("-s", "--raw", "-H", f"Host: {HOST}", f"http://127.0.0.1:{px.port}/t")
    assert r.stdout.endswith(b"0\r\nx-sum: 42\r\nX-Other: a b\r\n\r\n"), r.stdout
    sb.close()
