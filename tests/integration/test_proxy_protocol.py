"""The PROXY protocol both ways, with HAProxy as the real peer.

Receiving: a TCP-mode HAProxy frontend with `send-proxy` (v1) and `send-proxy-v2` in front of
a proxy_protocol listener, clients on distinct loopback addresses, and the echo origin showing
that X-Forwarded-For (and ip_hash) see the client, not HAProxy; a TLS listener whose header
comes before the ClientHello. Connections without a header, with a malformed one, from a peer
outside proxy_protocol_from, or too slow are closed without a byte and counted in the
worker's stop line.

Sending: send_proxy_protocol to HAProxy's `accept-proxy` (plain and TLS), to a ringproxy
reading it (the connections are never pooled), and byte for byte to a capturing backend,
health checks included."""
import os
import re
import shutil
import socket
import struct
import subprocess
import time

from harness import (Client, ScriptBackend, Skip, curl, free_port, origin_stats,
                     wait_port)
from test_hooks import echoed
from test_tls import make_cert

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def need_haproxy():
    if not shutil.which("haproxy"):
        raise Skip("haproxy is not installed (apt-get install haproxy): no real PROXY peer")


def start_haproxy(P, mode, sections, ports):
    """HAProxy in `mode` (tcp or http) with the frontend and backend `sections`; returns
    once it listens on every one of `ports`."""
    need_haproxy()
    path = os.path.join(P.tmp, f"haproxy-{ports[0]}.cfg")
    with open(path, "w") as f:
        f.write(f"defaults\n  mode {mode}\n  timeout connect 5s\n  timeout client 30s\n"
                f"  timeout server 30s\n{sections}")
    log = open(os.path.join(P.tmp, f"haproxy-{ports[0]}.log"), "a")
    P.procs.append(subprocess.Popen(["haproxy", "-db", "-f", path], stdout=log,
                                    stderr=subprocess.STDOUT))
    for port in ports:
        if not wait_port(port):
            raise RuntimeError("haproxy did not start: " + open(log.name).read())


def haproxy(P, target_port, versions=("send-proxy", "send-proxy-v2")):
    """HAProxy as the sender: in TCP mode, one frontend per `versions` entry, each sending
    to target_port with that server option. Returns the frontends' ports, in order."""
    ports = [free_port() for _ in versions]
    sections = "".join(f"frontend f{i}\n  bind 127.0.0.1:{port}\n  default_backend b{i}\n"
                       f"backend b{i}\n  server s 127.0.0.1:{target_port} {opt}\n"
                       for i, (port, opt) in enumerate(zip(ports, versions)))
    start_haproxy(P, "tcp", sections, ports)
    return ports


def pp_proxy(P, origin_ports, from_=None, extra="", lb="round_robin", key="listen",
             tls_conf=""):
    """ringproxy with a plain listener (which the harness waits on) and a proxy_protocol one
    (px.pp) under `key`, to a domain test.local."""
    pp = free_port()
    opts = "proxy_protocol = true;"
    if from_ is not None:
        opts += " proxy_protocol_from = [ " + ", ".join(f'"{b}"' for b in from_) + " ];"
    backends = ", ".join(f'{{ addr = "http://127.0.0.1:{p}"; }}' for p in origin_ports)
    conf = (f'{key} = ( {{ addr = "127.0.0.1:{pp}"; {opts} }} );\n' if key != "listen" else "")
    conf += tls_conf + extra
    conf += (f'domains = ( {{ domain = "test.local"; backends = ( {backends} ); '
             f'load_balancer = "{lb}"; }} );\n')
    port = free_port()
    listen = (f'( "127.0.0.1:{port}", {{ addr = "127.0.0.1:{pp}"; {opts} }} )' if key == "listen"
              else None)
    px = P.proxy(conf, port=port, listen=listen)
    px.pp = pp
    return px


def from_addr(source, port, data, timeout=5.0):
    """A connection to `port` bound to `source`, sending `data` (bytes, or a list of
    segments sent one by one with a pause), then reading to EOF: the bytes answered."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for seg in data if isinstance(data, list) else [data]:
            s.sendall(seg)
            if isinstance(data, list):
                time.sleep(0.01)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def request(path="/"):
    return f"GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n".encode()


def xff(raw):
    """X-Forwarded-For as the echo origin received it, from a raw response."""
    m = re.search(rb"\r\n\r\n.*?\r\nX-Forwarded-For: ([^\r]*)\r\n", raw, re.S)
    assert m, raw[:600]
    return m.group(1).decode()


def v1(src, sport=40000, dport=80):
    fam, dst = ("TCP6", "::1") if ":" in src else ("TCP4", "10.0.0.1")
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src4, sport=40000):
    block = socket.inet_aton(src4) + socket.inet_aton("10.0.0.1") + struct.pack(">HH", sport, 80)
    return V2_SIG + b"\x21\x11" + struct.pack(">H", len(block)) + block


def echoed_body(raw):
    """echoed() for a body alone (curl's output)."""
    class R:
        body = raw
    return echoed(R)


def stop_log_text(P, px):
    P.stop(px)
    return P.log_of(px)


class Counts(tuple):
    """The worker's PROXY protocol counters, printed with its log when compared unequal."""

    def __eq__(self, other):
        if tuple(self) != tuple(other):
            print(self.log)
        return tuple(self) == tuple(other)

    __hash__ = tuple.__hash__


def stop_log(P, px):
    """(refused peers, malformed headers, timeouts) from the worker's stop line."""
    P.stop(px)
    log = P.log_of(px)
    m = re.search(r"PROXY protocol: (\d+) connections refused from peers not in "
                  r"proxy_protocol_from, (\d+) malformed headers, (\d+) without a header in time",
                  log)
    assert m, log
    c = Counts(int(x) for x in m.groups())
    c.log = log
    return c


def test_haproxy_send_proxy_v1_and_v2(P):
    o = P.origin("A", "--echo")
    px = pp_proxy(P, [o.port], from_=["127.0.0.1/32", "::1/128"])
    hv1, hv2 = haproxy(P, px.pp)
    for port, src in ((hv1, "127.0.0.2"), (hv2, "127.0.0.3")):
        r = curl("-s", "--interface", src, "-H", "Host: test.local", f"http://127.0.0.1:{port}/x")
        assert r.returncode == 0, r
        line, h = echoed_body(r.stdout)
        assert line == "GET /x HTTP/1.1"
        assert h["x-forwarded-for"] == [src], h  # the client, not HAProxy at 127.0.0.1
        # keep-alive: every request of the connection carries the client's address
        c = Client(port, source="127.0.0.5")
        for i in range(3):
            r = c.request("GET", f"/k{i}", headers=[("X-Forwarded-For", "198.51.100.1")])
            assert r.status == 200
            _, h = echoed(r)
            assert h["x-forwarded-for"] == ["198.51.100.1, 127.0.0.5"], h
        c.close()
    assert stop_log(P, px) == (0, 0, 0)


def test_ip_hash_sees_the_client_address(P):
    """Behind HAProxy every connection comes from 127.0.0.1; with the PROXY header ip_hash
    spreads clients by their own address, and each one always lands on the same backend."""
    a, b = P.origin("A"), P.origin("B")
    px = pp_proxy(P, [a.port, b.port], lb="ip_hash")
    (hv2,) = haproxy(P, px.pp, versions=("send-proxy-v2",))
    seen = {}
    for i in range(2, 18):
        src = f"127.0.0.{i}"
        for _ in range(2):
            r = curl("-s", "--interface", src, "-H", "Host: test.local", f"http://127.0.0.1:{hv2}/")
            assert r.returncode == 0, r
            seen.setdefault(src, set()).add(r.stdout)
    assert all(len(v) == 1 for v in seen.values()), seen  # one backend per client
    assert len(set().union(*seen.values())) == 2, seen  # and the clients spread over both


def test_tls_listener_header_before_client_hello(P):
    need_haproxy()
    o = P.origin("A", "--echo")
    cert, key = make_cert(P.tmp, "default", "test.local", ["test.local"])
    px = pp_proxy(P, [o.port], key="listen_tls",
                  tls_conf=f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n')
    assert wait_port(px.pp)
    hv1, hv2 = haproxy(P, px.pp)  # TCP mode: TLS passes through HAProxy untouched
    for port, src in ((hv1, "127.0.0.6"), (hv2, "127.0.0.7")):
        r = curl("-s", "--cacert", cert, "--interface", src, "--resolve",
                 f"test.local:{port}:127.0.0.1", f"https://test.local:{port}/tls")
        assert r.returncode == 0, r
        _, h = echoed_body(r.stdout)
        assert h["x-forwarded-for"] == [src], h
        assert h["x-forwarded-proto"] == ["https"], h
    # a ClientHello without the header is closed at its first byte, not a TLS failure
    r = curl("-sk", "--resolve", f"test.local:{px.pp}:127.0.0.1", f"https://test.local:{px.pp}/")
    assert r.returncode != 0
    assert stop_log(P, px) == (0, 1, 0)
    assert "0 failed TLS handshakes" in P.log_of(px)


def test_header_forms_and_splits(P):
    """What the parser accepts reaches the client address, sent whole with the request, or
    one byte at a time; LOCAL and UNKNOWN keep the real peer."""
    o = P.origin("A", "--echo")
    px = pp_proxy(P, [o.port])
    assert xff(from_addr("127.0.0.1", px.pp, v1("203.0.113.9") + request())) == "203.0.113.9"
    assert xff(from_addr("127.0.0.1", px.pp, v1("2001:db8::9") + request())) == "2001:db8::9"
    assert xff(from_addr("127.0.0.1", px.pp, v2("198.51.100.4") + request())) == "198.51.100.4"
    hdr = v1("203.0.113.10")
    segs = [hdr[i:i + 1] for i in range(len(hdr))] + [request()]
    assert xff(from_addr("127.0.0.1", px.pp, segs)) == "203.0.113.10"
    hdr = v2("198.51.100.5")
    segs = [hdr[:5], hdr[5:13], hdr[13:17], hdr[17:], request()]
    assert xff(from_addr("127.0.0.1", px.pp, segs)) == "198.51.100.5"
    # the header and the start of the request in one segment, the rest after
    data = v1("203.0.113.11") + request()
    assert xff(from_addr("127.0.0.1", px.pp, [data[:60], data[60:]])) == "203.0.113.11"
    # LOCAL (a health check) and UNKNOWN: the real peer stands
    local = V2_SIG + b"\x20\x00\x00\x00"
    assert xff(from_addr("127.0.0.8", px.pp, local + request())) == "127.0.0.8"
    assert xff(from_addr("127.0.0.9", px.pp, b"PROXY UNKNOWN\r\n" + request())) == "127.0.0.9"
    assert stop_log(P, px) == (0, 0, 0)


def test_no_header_and_malformed_headers_are_closed(P):
    o = P.origin("A", "--echo")
    px = pp_proxy(P, [o.port])
    bad = [
        request(),                                     # plain HTTP on a PROXY listener
        b"PROXY TCP4 203.0.113.9 10.0.0.1 1 2\n" + request(),   # bare LF
        b"PROXY TCP4 203.0.113.09 10.0.0.1 1 2\r\n" + request(),  # a leading zero
        b"PROXY TCP6 203.0.113.9 10.0.0.1 1 2\r\n" + request(),   # family mismatch
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n" + request(),
        b"PROXY UNKNOWN" + b"x" * 120 + b"\r\n" + request(),      # no CRLF in 107 bytes
        V2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12 + request(),  # version 3
        V2_SIG + b"\x22\x11\x00\x0c" + b"\x00" * 12 + request(),  # command 2
        V2_SIG + b"\x21\x11\x00\x0b" + b"\x00" * 11 + request(),  # block too short
        V2_SIG + b"\x21\x11\x08\x00" + b"\x00" * 12,              # longer than 2 KiB
    ]
    for data in bad:
        assert from_addr("127.0.0.1", px.pp, data) == b"", data
    # the listener still serves good headers afterwards
    assert xff(from_addr("127.0.0.1", px.pp, v1("203.0.113.1") + request())) == "203.0.113.1"
    assert stop_log(P, px) == (0, len(bad), 0)


def test_source_outside_proxy_protocol_from_is_closed(P):
    o = P.origin("A", "--echo")
    px = pp_proxy(P, [o.port], from_=["127.0.0.5/32", "10.0.0.0/8"])
    good = v1("203.0.113.20") + request()
    assert xff(from_addr("127.0.0.5", px.pp, good)) == "203.0.113.20"
    for src in ("127.0.0.1", "127.0.0.6", "127.0.0.4"):
        assert from_addr(src, px.pp, good) == b"", src
    assert stop_log(P, px) == (3, 0, 0)


def test_missing_header_within_header_timeout_is_closed(P):
    o = P.origin("A", "--echo")
    px = pp_proxy(P, [o.port], extra='header_timeout = "400ms";\n')
    for data in (b"", b"PROXY TCP4 203.0.113.9 ", V2_SIG[:7]):
        s = socket.create_connection(("127.0.0.1", px.pp), timeout=5)
        t0 = time.time()
        if data:
            s.sendall(data)
        assert s.recv(100) == b""  # closed, with no answer (not a 408)
        took = time.time() - t0
        s.close()
        assert 0.3 < took < 2.5, took
    # a connection that gives up before sending anything is not counted
    socket.create_connection(("127.0.0.1", px.pp), timeout=5).close()
    time.sleep(0.1)
    assert stop_log(P, px) == (0, 0, 3)


# ---- sending: send_proxy_protocol towards backends ----

class Capture(ScriptBackend):
    """A backend that records each connection's bytes up to the end of its request head
    (a PROXY header first, if any: ScriptBackend's HTTP reading would choke on it) and
    answers 200 "ok" with Connection: close."""

    def __init__(self):
        self.heads = []  # what each connection sent (ScriptBackend counts in self.conns)
        super().__init__(None)

    def _one(self, c, no):
        c.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.heads.append(data)
            if b"\r\n\r\n" in data:
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except OSError:
            pass
        finally:
            c.close()


def haproxy_receiver(P, origin_port, cert_pem):
    """HAProxy as the receiver: in HTTP mode, reading a PROXY header on each connection
    (accept-proxy, plain and under TLS with cert_pem), and telling the origin what it
    learnt: X-PP-Src and X-PP-Dst. Returns (plain port, TLS port)."""
    port, tport = free_port(), free_port()
    start_haproxy(P, "http",
                  f"frontend f\n  bind 127.0.0.1:{port} accept-proxy\n"
                  f"  bind 127.0.0.1:{tport} accept-proxy ssl crt {cert_pem}\n"
                  "  http-request set-header X-PP-Src %[src]\n"
                  "  http-request set-header X-PP-Dst %[dst]:%[dst_port]\n"
                  f"  default_backend b\nbackend b\n  server s 127.0.0.1:{origin_port}\n",
                  [port, tport])
    return port, tport


def sending_proxy(P, domains):
    """ringproxy with one domain per (name, backend URL, extra) entry, listening on
    127.0.0.1 and on [::1] (px.port6)."""
    conf = "domains = (\n" + ",\n".join(
        f'  {{ domain = "{name}"; backends = ( {{ addr = "{url}"; }} ); {extra} }}'
        for name, url, extra in domains) + "\n);\n"
    port, port6 = free_port(), free_port()
    px = P.proxy(conf, port=port, listen=f'[ "127.0.0.1:{port}", "[::1]:{port6}" ]')
    px.port6 = port6
    return px


def test_send_proxy_v1_v2_to_haproxy_accept_proxy(P):
    o = P.origin("A", "--echo")
    cert, key = make_cert(P.tmp, "recv", "recv.local", ["recv.local"])
    pem = os.path.join(P.tmp, "recv-combined.pem")
    with open(pem, "w") as f:
        f.write(open(cert).read() + open(key).read())
    hp, hps = haproxy_receiver(P, o.port, pem)
    px = sending_proxy(P, [
        ("v1.local", f"http://127.0.0.1:{hp}", 'send_proxy_protocol = "v1";'),
        ("v2.local", f"http://127.0.0.1:{hp}", 'send_proxy_protocol = "v2";'),
        # the header goes in the clear before the ClientHello of an https:// backend
        ("tls.local", f"https://127.0.0.1:{hps}",
         'send_proxy_protocol = "v2"; tls_verify = false;'),
        ("tls1.local", f"https://127.0.0.1:{hps}",
         'send_proxy_protocol = "v1"; tls_verify = false;'),
    ])
    for host, src in (("v1.local", "127.0.0.5"), ("v2.local", "127.0.0.6"),
                      ("tls.local", "127.0.0.7"), ("tls1.local", "127.0.0.8")):
        c = Client(px.port, source=src)
        for i in range(2):  # keep-alive on the client side: each request says who it is
            r = c.request("GET", f"/{host}/{i}", host=host)
            assert r.status == 200, (host, r, r.body[:300])
            _, h = echoed(r)
            assert h["x-pp-src"] == [src], (host, h)
            dst = hps if host.startswith("tls") else hp
            assert h["x-pp-dst"] == [f"127.0.0.1:{dst}"], (host, h)  # where the connection goes
        c.close()


def test_send_proxy_chain_is_never_pooled(P):
    """ringproxy sending v2 to a ringproxy reading it: the client's address crosses both;
    each request has a connection of its own (it names one client), while a domain without
    the header pools as usual."""
    o = P.origin("A", "--echo")
    inner = pp_proxy(P, [o.port], from_=["127.0.0.1/32"])
    outer = sending_proxy(P, [
        ("test.local", f"http://127.0.0.1:{inner.pp}",
         'send_proxy_protocol = "v2"; preserve_host = true;'),
        ("plain.local", f"http://127.0.0.1:{o.port}", ""),
    ])
    c = Client(outer.port, source="127.0.0.9")
    for i in range(3):
        r = c.request("GET", f"/c{i}")
        assert r.status == 200, r
        _, h = echoed(r)
        # the outer proxy's X-Forwarded-For, then the inner one's, both the client
        assert h["x-forwarded-for"] == ["127.0.0.9, 127.0.0.9"], h
        r = c.request("GET", f"/p{i}", host="plain.local")
        assert r.status == 200, r
    c.close()
    P.stop(outer)
    # one connection per request, and the harness's wait for the plain port
    assert re.search(r"worker 0: 4 connections, 3 requests", stop_log_text(P, inner))
    assert stop_log(P, inner) == (0, 0, 0)
    # the origin saw the inner proxy's one pooled connection, the plain domain's, the
    # harness's wait for its port and this /__stats request's own
    assert origin_stats(o.port)[1] == 4


def test_send_proxy_exact_bytes_and_health_checks(P):
    cap1, cap2 = Capture(), Capture()
    check = ('health_check = { path = "/health"; interval = "100ms"; timeout = "1s"; '
             'fail_threshold = 1; success_threshold = 1; };')
    px = sending_proxy(P, [
        ("v1.local", f"http://127.0.0.1:{cap1.port}", 'send_proxy_protocol = "v1"; ' + check),
        ("v2.local", f"http://127.0.0.1:{cap2.port}", 'send_proxy_protocol = "v2"; ' + check),
    ])
    time.sleep(0.5)
    for host, src in (("v1.local", "127.0.0.10"), ("v2.local", "::1")):
        c = Client(px.port6, host="::1", source=src) if src == "::1" else Client(
            px.port, source=src)
        r = c.request("GET", "/x", host=host)
        assert r.status == 200 and r.body == b"ok", r
        c.close()
    cap1.close()
    cap2.close()
    reqs = [d for d in cap1.heads if b"GET /x " in d]
    assert len(reqs) == 1, cap1.heads
    m = re.match(rb"PROXY TCP4 127\.0\.0\.10 127\.0\.0\.1 (\d+) (\d+)\r\nGET /x HTTP/1\.1\r\n",
                 reqs[0])
    assert m and int(m.group(2)) == cap1.port, reqs[0][:120]
    checks = [d for d in cap1.heads if b"GET /health " in d]
    assert checks and all(d.startswith(b"PROXY UNKNOWN\r\nGET /health ") for d in checks), checks
    reqs = [d for d in cap2.heads if b"GET /x " in d]
    assert len(reqs) == 1, cap2.heads
    d = reqs[0]
    # v2, PROXY, TCP over IPv6 (the client is ::1, the backend v4: written v4-mapped)
    assert d[:16] == V2_SIG + b"\x21\x21\x00\x24", d[:40]
    assert d[16:32] == socket.inet_pton(socket.AF_INET6, "::1"), d[16:32]
    assert d[32:48] == socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1"), d[32:48]
    assert struct.unpack(">H", d[50:52])[0] == cap2.port
    assert d[52:].startswith(b"GET /x HTTP/1.1\r\n"), d[52:80]
    checks = [d for d in cap2.heads if b"GET /health " in d]
    assert checks and all(d.startswith(V2_SIG + b"\x20\x00\x00\x00GET /health ") for d in checks)
    assert "DOWN" not in P.log_of(px)
