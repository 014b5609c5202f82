"""RFC 6455 for the integration tests, standard library only: the handshake's
Sec-WebSocket-Accept, frames written and read, and the small socket readers they need."""
import base64
import hashlib
import os
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
