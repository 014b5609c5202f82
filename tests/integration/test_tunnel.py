"""Upgrade tunnels (issue 12 point 1): WebSocket through ringproxy to a WebSocket echo
backend, written here with the standard library (RFC 6455 framing, the handshake's
Sec-WebSocket-Accept), on plain and TLS listeners and to an https:// backend; half-closes,
backpressure, the idle timeout, refused upgrades, upgrade = false, and h2c left alone."""
import os
import socket
import ssl
import struct
import threading
import time

from harness import Client, ScriptBackend, domain_conf, free_port
from test_tls import make_cert
from wsproto import accept_of, echo, frame, read_frame, read_head, ws_connect

class WsEcho:
    """A WebSocket echo backend: answers the handshake, echoes text and binary messages,
    answers pings, and completes the close handshake. `heads` keeps each request head."""

    def __init__(self, tls=None):
        self.heads = []
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(128)
        self.port = self.ls.getsockname()[1]
        self.tls = tls
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        try:
            if self.tls:
                s = self.tls.wrap_socket(s, server_side=True)
            s.settimeout(10)
            head = read_head(s)
            self.heads.append(head)
            key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
                   if ln.lower().startswith(b"sec-websocket-key:")][0]
            s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_of(key) +
                      b"\r\nX-Echo: yes\r\n\r\n")
            while True:
                _, op, data = read_frame(s, masked=True)
                if op == 8:
                    s.sendall(frame(8, data, mask=False))
                    return
                s.sendall(frame(10 if op == 9 else op, data, mask=False))
        except (OSError, ConnectionError, IndexError):
            pass
        finally:
            s.close()


def ws_close(s):
    s.sendall(frame(8, struct.pack("!H", 1000)))
    _, op, data = read_frame(s)
    assert op == 8 and data == struct.pack("!H", 1000), (op, data)
    s.settimeout(5)
    assert s.recv(1) == b""  # the backend closed after the handshake: passed on
    s.close()


def test_websocket_echo_text_binary_ping_close(P):
    be = WsEcho()
    px = P.proxy(domain_conf("test.local", [be.port]))
    s, head = ws_connect(px.port)
    assert b"x-echo: yes" in head.lower()  # the backend's other fields are relayed
    big = os.urandom(1 << 20)
    assert echo(s, 1, b"x") == (1, b"x")
    assert echo(s, 2, big[:65536]) == (2, big[:65536])
    assert echo(s, 2, big) == (2, big)
    assert echo(s, 9, b"ping!") == (10, b"ping!")  # pong
    ws_close(s)
    sent = be.heads[0].lower()
    assert b"\r\nupgrade: websocket\r\n" in sent and b"\r\nconnection: upgrade\r\n" in sent, sent
    assert b"sec-websocket-key: " in sent and b"x-forwarded-for: 127.0.0.1" in sent
    P.stop(px)
    assert "1 tunnels" in P.log_of(px), P.log_of(px)[-400:]


def test_100_concurrent_tunnels(P):
    be = WsEcho()
    px = P.proxy(domain_conf("test.local", [be.port]))
    errors = []

    def one(i):
        try:
            s, _ = ws_connect(px.port)
            for k in range(5):
                msg = f"{i}:{k}".encode() * (k + 1)
                assert echo(s, 1, msg) == (1, msg)
            ws_close(s)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(e))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors[:5]
    P.stop(px)
    assert "100 tunnels" in P.log_of(px)


SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: upgrade\r\n\r\n"


def raw_backend(talk):
    """A backend for one connection: reads the request head, answers SWITCHED, then runs
    talk(sock) on a thread. Returns its port."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)

    def serve():
        s, _ = ls.accept()
        read_head(s)
        s.sendall(SWITCHED)
        talk(s)
        s.close()
        ls.close()
    threading.Thread(target=serve, daemon=True).start()
    return ls.getsockname()[1]


def echo_until_eof(s):
    """Echoes until the client's half-close, then says bye: a half-close must pass through
    in both directions."""
    s.sendall(b"hello from the backend\n")
    while True:
        data = s.recv(65536)
        if not data:
            break
        s.sendall(data)
    s.sendall(b"bye")


def test_half_close_passes_both_ways(P):
    px = P.proxy(domain_conf("test.local", [raw_backend(echo_until_eof)]))
    s = socket.create_connection(("127.0.0.1", px.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: test.local\r\nConnection: upgrade\r\nUpgrade: raw\r\n\r\n"
              b"early bytes ")  # sent with the request: they belong to the tunnel
    head = read_head(s)
    assert head.startswith(b"HTTP/1.1 101"), head
    s.sendall(b"then more")
    s.shutdown(socket.SHUT_WR)  # the backend sees EOF after our bytes, and answers
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data == b"hello from the backend\nearly bytes then morebye", data


def test_slow_reader_pauses_the_backend(P):
    # the backend pushes 64 MiB at a client that reads nothing for 2 s: ringproxy holds at
    # most its window plus socket buffers, and then everything arrives, in order
    total = 64 << 20
    sent = [0]

    def push(s):
        chunk = bytes(range(256)) * 256
        while sent[0] < total:
            s.sendall(chunk)
            sent[0] += len(chunk)
    px = P.proxy(domain_conf("test.local", [raw_backend(push)]))
    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET / HTTP/1.1\r\nHost: test.local\r\nConnection: upgrade\r\nUpgrade: raw\r\n\r\n")
    time.sleep(2)
    held = sent[0]
    rss = int([ln for ln in open(f"/proc/{px.pid}/status") if ln.startswith("VmRSS")][0].split()[1])
    assert held < 16 << 20, held  # paused: not 64 MiB
    assert rss < 64 * 1024, rss  # KiB
    got = 0
    head = read_head(s)
    assert head.startswith(b"HTTP/1.1 101")
    expect = bytes(range(256)) * 256
    buf = b""
    while got < total:
        chunk = s.recv(1 << 20)
        assert chunk, got
        buf += chunk
        while len(buf) >= len(expect):
            assert buf[:len(expect)] == expect, got
            buf = buf[len(expect):]
            got += len(expect)
    assert got == total


def test_idle_tunnel_times_out(P):
    be = WsEcho()
    px = P.proxy(f'tunnel_idle_timeout = "400ms";\n' + domain_conf("test.local", [be.port]))
    s, _ = ws_connect(px.port)
    assert echo(s, 1, b"x") == (1, b"x")
    t0 = time.time()
    s.settimeout(5)
    assert s.recv(1) == b""  # closed by the proxy
    assert 0.3 < time.time() - t0 < 2.0


def test_refused_upgrade_leaves_the_connection_usable(P):
    be = ScriptBackend(lambda req: [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno"])
    px = P.proxy(domain_conf("test.local", [be.port]))
    c = Client(px.port)
    r = c.request("GET", "/chat", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")])
    assert r.status == 200 and r.body == b"no", r
    r = c.request("GET", "/next")
    assert r.status == 200 and r.body == b"no"
    assert be.log[0].header("upgrade") == "websocket"
    assert be.log[1].header("upgrade") is None


def test_upgrade_false_and_h2c_strip_the_field(P):
    be = ScriptBackend(lambda req: [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    other = ScriptBackend(lambda req: [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    px = P.proxy(f'domains = ( {{ domain = "test.local"; backends = ( {{ addr = '
                 f'"http://127.0.0.1:{be.port}"; }} ); upgrade = false; }},'
                 f'{{ domain = "h2c.local"; backends = ( {{ addr = '
                 f'"http://127.0.0.1:{other.port}"; }} ); }} );\n')
    c = Client(px.port)
    r = c.request("GET", "/", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")])
    assert r.status == 200
    r = c.request("GET", "/", host="h2c.local",
                  headers=[("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                           ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")])
    assert r.status == 200
    for log in (be.log, other.log):
        assert log[0].header("upgrade") is None and log[0].header("connection") != "upgrade"
    # an unsolicited 101 is still a 502: only an upgrade request may switch
    bad = ScriptBackend(lambda req: [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"])
    px2 = P.proxy(domain_conf("test.local", [bad.port], "max_retries = 0;"))
    assert Client(px2.port).request("GET", "/").status == 502


def test_wss_on_a_tls_listener_to_an_https_backend(P):
    cert, key = make_cert(P.tmp, "ws", "test.local", ["test.local", "localhost"])
    bctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    bctx.load_cert_chain(cert, key)
    be = WsEcho(tls=bctx)
    tport = free_port()
    px = P.proxy(f'listen_tls = "127.0.0.1:{tport}";\ntls = {{ cert = "{cert}"; key = "{key}"; }};\n'
                 f'domains = ( {{ domain = "test.local"; backends = ( {{ addr = '
                 f'"https://localhost:{be.port}"; }} ); tls_ca_file = "{cert}"; }} );\n')
    cctx = ssl.create_default_context(cafile=cert)
    raw = socket.create_connection(("127.0.0.1", tport), timeout=10)
    s = cctx.wrap_socket(raw, server_hostname="test.local")
    s, _ = ws_connect(tport, sock=s)
    assert echo(s, 1, b"over TLS twice") == (1, b"over TLS twice")
    big = os.urandom(300000)
    assert echo(s, 2, big) == (2, big)
    s.sendall(frame(8, struct.pack("!H", 1000)))
    assert read_frame(s)[1] == 8
    assert px.poll() is None


def test_request_hooks_run_on_upgrades(P):
    from test_hooks import hooks_fe
    be = WsEcho()
    with hooks_fe(P, be.port) as f:
        s, _ = ws_connect(f.port, host="hooks.local")
        assert echo(s, 1, b"hooked") == (1, b"hooked")
        ws_close(s)
        assert b"\r\nx-order: first\r\n" in be.heads[0].lower(), be.heads[0]
        # a hook refuses the upgrade: answered here, the backend never sees it
        s = socket.create_connection(("127.0.0.1", f.port), timeout=5)
        s.sendall(b"GET /deny HTTP/1.1\r\nHost: hooks.local\r\nConnection: upgrade\r\n"
                  b"Upgrade: websocket\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n")
        assert read_head(s).startswith(b"HTTP/1.1 502"), "refused by the request hook"
        s.close()
        assert len(be.heads) == 1
