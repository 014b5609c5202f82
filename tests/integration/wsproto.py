"""RFC 6455 for the integration tests, standard library only: the handshake's
Sec-WebSocket-Accept, frames written and read, and the small socket readers they need."""
import base64
import hashlib
import os
import socket
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_of(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def read_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(1)
        if not chunk:
            raise ConnectionError("closed before a head")
        data += chunk
    return data


def frame(opcode, payload, mask=True, fin=True, rsv=0):
    """A client frame (masked unless told otherwise)."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    k = (key * (n // 4 + 1))[:n]
    return head + key + (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def read_frame(s, masked=False):
    """A frame: (fin, opcode, payload). Servers must not mask (masked=False asserts that);
    a server reading a client's frame passes masked=True and gets it unmasked."""
    b0, b1 = read_exact(s, 2)
    assert bool(b1 & 0x80) == masked, "a masked server frame" if not masked else "unmasked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(s, 8))[0]
    key = read_exact(s, 4) if masked else None
    data = read_exact(s, n)
    if key:
        k = (key * (n // 4 + 1))[:n]
        data = (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")
    return bool(b0 & 0x80), b0 & 0x0F, data


def upgrade_request(key=None, host="test.local", extra="", path="/chat"):
    """A client's upgrade request head; no Sec-WebSocket-Key line when key is None."""
    key_line = f"Sec-WebSocket-Key: {key.decode()}\r\n" if key else ""
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{key_line}{extra}\r\n").encode()


def ws_connect(port, host="test.local", sock=None, path="/chat"):
    """Opens a WebSocket (over `sock` if given, e.g. a TLS socket) and checks the 101:
    Upgrade, Connection and the Accept for our key. Returns (socket, the 101's head)."""
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16))
    s.sendall(upgrade_request(key, host, path=path))
    head = read_head(s)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head
    lines = [ln.lower() for ln in head.split(b"\r\n")]
    assert b"upgrade: websocket" in lines and b"connection: upgrade" in lines, head
    assert b"sec-websocket-accept: " + accept_of(key).lower() in lines, head
    return s, head


def echo(s, op, payload):
    """Sends one masked message and reads one whole frame back: (opcode, payload)."""
    s.sendall(frame(op, payload))
    fin, rop, data = read_frame(s)
    assert fin
    return rop, data
