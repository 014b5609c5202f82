"""The WebSocket tools (issue 12, "Measured: WebSocket throughput"): ringorigin --ws as an RFC 6455
echo server, checked with a standard-library client (the handshake's Sec-WebSocket-Accept, echoes
at the edge lengths, fragments, ping and pong, the close handshake, and the frames it refuses),
and ringload --ws against it, directly and through ringproxy (plain and TLS): messages counted
exactly, no errors, and refused upgrades counted as errors."""
import base64
import json
import os
import re
import socket
import struct
import subprocess
import threading

from harness import BUILD, get, domain_conf
from wsproto import echo, frame, read_exact, read_frame, read_head, upgrade_request, ws_connect

def expect_close(s, code):
    """The server fails or closes the connection: a close frame with `code`, then EOF."""
    fin, op, data = read_frame(s)
    assert fin and op == 8 and data == struct.pack("!H", code), (op, data)
    s.settimeout(5)
    assert s.recv(1) == b""
    s.close()


def origin_messages(port):
    r = get(port, "/__stats", host=f"127.0.0.1:{port}")
    return json.loads(r.body)["messages"]


def ringload(*args, timeout=60):
    r = subprocess.run([f"{BUILD}/ringload", *args], capture_output=True, text=True,
                       timeout=timeout)
    return r


def ringload_json(*args):
    r = ringload("--json", *args)
    assert r.stdout.strip(), f"no output (rc {r.returncode}): {r.stderr}"
    return r, json.loads(r.stdout)


def test_ringorigin_ws_echo(P):
    o = P.origin("W", "--ws")
    s, head = ws_connect(o.port)
    assert b"\r\nX-Origin: W\r\n" in head, head
    assert echo(s, 1, b"x") == (1, b"x")
    for n in (0, 1, 125, 126, 127, 65535, 65536, 1 << 20):
        data = os.urandom(n)
        assert echo(s, 2, data) == (2, data), n
    # a frame header and payload a byte at a time
    data = os.urandom(300)
    for b in frame(2, data):
        s.send(bytes([b]))
    assert read_frame(s) == (True, 2, data)
    assert echo(s, 9, b"ping!") == (10, b"ping!")  # pong, same payload
    s.sendall(frame(10, b"unsolicited"))  # a pong nobody asked for: ignored
    # fragments are echoed as they come, a ping between them answered at once
    s.sendall(frame(1, b"frag", fin=False) + frame(9, b"p") + frame(0, b"ment", fin=False) +
              frame(0, b"ed", fin=True))
    assert [read_frame(s) for _ in range(4)] == [(False, 1, b"frag"), (True, 10, b"p"),
                                                 (False, 0, b"ment"), (True, 0, b"ed")]
    # several messages in one segment
    s.sendall(b"".join(frame(2, bytes([i]) * i) for i in range(1, 30)))
    for i in range(1, 30):
        assert read_frame(s) == (True, 2, bytes([i]) * i)
    # plain HTTP on another connection still works, and counts the messages so far
    assert get(o.port, "/").status == 200
    assert origin_messages(o.port) == 1 + 8 + 1 + 1 + 29  # data messages, fragments as one
    s.sendall(frame(8, struct.pack("!H", 1000) + b"bye"))
    expect_close(s, 1000)  # the status code echoed, then closed


def test_ringorigin_ws_refuses(P):
    o = P.origin("W", "--ws")
    too_big = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", (16 << 20) + 1) + b"\0" * 4
    cases = [
        (frame(2, b"unmasked", mask=False), 1002),
        (frame(2, b"rsv", rsv=0x40), 1002),
        (frame(3, b"reserved opcode"), 1002),
        (frame(9, b"p" * 126), 1002),  # control frames carry at most 125 bytes
        (frame(9, b"p", fin=False), 1002),  # and are never fragmented
        (frame(0, b"continuation of nothing"), 1002),
        # a new message inside a fragmented one: the first fragment was echoed already
        (frame(1, b"a", fin=False) + frame(1, b"b"), 1002, (False, 1, b"a")),
        (frame(8, b"\x03"), 1002),  # a close payload of one byte
        (bytes([0x82, 0xFF]) + b"\x80" + b"\0" * 7 + b"\0" * 4, 1002),  # 64-bit, top bit set
        (too_big, 1009),
    ]
    for data, code, *echoed in cases:
        s, _ = ws_connect(o.port)
        assert echo(s, 1, b"before") == (1, b"before")
        s.sendall(data)
        for e in echoed:
            assert read_frame(s) == e
        expect_close(s, code)
    # exactly 16 MiB is allowed; it streams back while it is sent (the origin stops reading
    # when its output backs up, so the sending is on a thread)
    s, _ = ws_connect(o.port)
    big = os.urandom(16 << 20)
    t = threading.Thread(target=s.sendall, args=(frame(2, big),))
    t.start()
    assert read_frame(s) == (True, 2, big)
    t.join()
    s.close()
    # an upgrade without a key is a bad request; without Connection: upgrade, an ordinary one
    c = socket.create_connection(("127.0.0.1", o.port), timeout=5)
    c.sendall(upgrade_request(None))
    assert read_head(c).startswith(b"HTTP/1.1 400 "), "no Sec-WebSocket-Key"
    c.close()
    c = socket.create_connection(("127.0.0.1", o.port), timeout=5)
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n")
    assert read_head(c).startswith(b"HTTP/1.1 200 OK\r\n")
    c.close()
    assert o.poll() is None
    # without --ws an upgrade request is answered as any other request
    plain = P.origin("P")
    c = socket.create_connection(("127.0.0.1", plain.port), timeout=5)
    c.sendall(upgrade_request(base64.b64encode(os.urandom(16))))
    head = read_head(c)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 13\r\n" in head, head
    assert read_exact(c, 13) == b"hello from P\n"
    c.close()


def test_ringload_ws_direct(P):
    o = P.origin("W", "--ws")
    u = f"http://127.0.0.1:{o.port}/chat"
    r, j = ringload_json("--ws", "64", "-c", "8", "-t", "2", "-n", "3000", u)
    assert r.returncode == 0, r.stderr
    assert j["mode"] == "websocket" and j["message_bytes"] == 64, j
    assert j["messages"] == 3000 and j["upgrades"] == 8, j
    assert sum(j["errors"].values()) == 0 and "requests" not in j and "status" not in j, j
    assert j["latency_us"]["p50"] > 0 and j["mps"] > 0, j
    assert origin_messages(o.port) == 3000  # exactly as many as it says
    # big messages, 64-bit lengths, several receives each
    r, j = ringload_json("--ws", "300000", "-c", "2", "-t", "1", "-n", "40", u)
    assert r.returncode == 0 and j["messages"] == 40, (r.stderr, j)
    assert j["bytes"] > 40 * 300000, j
    assert origin_messages(o.port) == 3040
    # empty messages; and an open loop (-R) counts messages too
    r, j = ringload_json("--ws", "0", "-c", "2", "-t", "1", "-n", "100", u)
    assert r.returncode == 0 and j["messages"] == 100, (r.stderr, j)
    r, j = ringload_json("--ws", "32", "-R", "200", "-c", "4", "-t", "1", "-d", "1s", u)
    assert r.returncode == 0 and 170 <= j["messages"] <= 210, (r.stderr, j)
    # the text report speaks of messages
    r = ringload("--ws", "64", "-c", "2", "-t", "1", "-d", "300ms", "--latency", u)
    assert r.returncode == 0, r.stderr
    assert "Messages/sec:" in r.stdout and re.search(r"\d+ messages of 64 bytes", r.stdout), \
        r.stdout


def test_ringload_ws_refused_upgrades_are_errors(P):
    plain = P.origin("P")  # no --ws: it answers the upgrade with 200
    r, j = ringload_json("--ws", "64", "-c", "2", "-t", "1", "-n", "10",
                         f"http://127.0.0.1:{plain.port}/")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert j["messages"] == 0 and j["upgrades"] == 0 and j["errors"]["upgrade"] >= 1, j
    r = ringload("--ws", "64", "-c", "1", "-t", "1", "-d", "300ms",
                 f"http://127.0.0.1:{plain.port}/")
    assert r.returncode == 1 and "upgrade " in r.stdout, r.stdout


def test_ringload_ws_through_ringproxy(P):
    o = P.origin("W", "--ws")
    px = P.proxy(domain_conf("test.local", [o.port]))
    u = f"http://127.0.0.1:{px.port}/chat"
    r, j = ringload_json("--ws", "64", "-c", "16", "-t", "2", "-d", "2s", "-H",
                         "Host: test.local", u)
    assert r.returncode == 0, r.stderr
    assert j["messages"] > 0 and sum(j["errors"].values()) == 0, j
    assert j["upgrades"] == 16, j
    before = origin_messages(o.port)
    r, j = ringload_json("--ws", "4096", "-c", "4", "-t", "1", "-n", "1000", "-H",
                         "Host: test.local", u)
    assert r.returncode == 0 and j["messages"] == 1000, (r.stderr, j)
    assert sum(j["errors"].values()) == 0, j
    assert origin_messages(o.port) - before == 1000
    # an unknown host is answered by the proxy itself: an upgrade error, counted
    r, j = ringload_json("--ws", "64", "-c", "1", "-t", "1", "-n", "3", "-H", "Host: nobody", u)
    assert r.returncode == 1 and j["errors"]["upgrade"] >= 1 and j["messages"] == 0, j
    P.stop(px)
    assert px.returncode == 0


def test_ringload_wss_through_ringproxy(P):
    from test_tls import make_cert
    o = P.origin("W", "--ws")
    cert, key = make_cert(P.tmp, "ws", "test.local", ["test.local"])
    px = P.proxy(f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n' +
                 domain_conf("test.local", [o.port]), listen_key="listen_tls")
    u = f"https://127.0.0.1:{px.port}/chat"
    r, j = ringload_json("-k", "--ws", "1000", "-c", "4", "-t", "2", "-n", "800", "-H",
                         "Host: test.local", u)
    assert r.returncode == 0, r.stderr
    assert j["messages"] == 800 and j["upgrades"] == 4, j
    assert sum(j["errors"].values()) == 0, j
    assert origin_messages(o.port) == 800
