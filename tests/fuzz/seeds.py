#!/usr/bin/env python3
"""Seed candidates for the libFuzzer targets, taken from the unit tests' literal inputs.

Writes OUT/<target>/<sha1 of the content>, one file per distinct input:
  fuzz_h1_request, fuzz_h1_response, fuzz_h1_chunked  the strings in test_h1.c's test_req_*,
                                                      test_res_* and test_chunked_* functions
  fuzz_config        every string (adjacent literals and string macros joined) in test_config.c
  fuzz_cache_policy  each L("Name: value", ...) group of test_cache.c as header lines, and the
                     single values its Cache-Control, date, Accept-Encoding, Content-Type and
                     ETag tests parse, under that header's name
  fuzz_tls_server    ClientHellos that `openssl s_client` sends (TLS 1.2 and 1.3, with and
                     without SNI and ALPN), caught on a local socket; the target's own hellos
                     (an input starting 0xff); test_tls.c's garbage records
  fuzz_h2_session    HTTP/2 conversations after the client preface (the target's 8 control
                     bytes first): GET, POST with DATA, trailers, RST_STREAM, PING,
                     WINDOW_UPDATE, CONTINUATION, PRIORITY, GOAWAY, the 400 and 431 cases;
                     header blocks HPACK-encoded by python3-hpack when it can be imported
                     (Debian's /usr/bin/python3), else as literals without indexing
Candidates are not the corpus: `fuzz_X -merge=1 tests/fuzz/corpus/fuzz_X OUT/fuzz_X` keeps
the ones that add coverage (see tests/fuzz/corpus/README.md).

  tests/fuzz/seeds.py OUT
"""
import hashlib
import os
import re
import socket
import subprocess
import sys

UNIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit")
ESC = {"n": 10, "r": 13, "t": 9, "v": 11, "a": 7, "b": 8, "f": 12, "e": 27, "\\": 92, '"': 34,
       "'": 39, "?": 63}


def decode(body):
    """The bytes of a C string literal's body (between the quotes)."""
    out, i = bytearray(), 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        e = body[i + 1]
        if e == "x":
            m = re.match(r"[0-9a-fA-F]+", body[i + 2:])
            out.append(int(m.group(0), 16) & 0xFF)
            i += 2 + len(m.group(0))
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(int(m.group(0), 8) & 0xFF)
            i += 1 + len(m.group(0))
        else:
            out.append(ESC[e])
            i += 2
    return bytes(out)


def tokens(src):
    """(kind, value, offset) for strings ("s"), identifiers ("id") and punctuation ("p")."""
    i, n = 0, len(src)
    while i < n:
        if src.startswith("//", i):
            i = src.index("\n", i)
        elif src.startswith("/*", i):
            i = src.index("*/", i) + 2
        elif src[i] == "#":  # a directive: to the end of its line
            j = src.index("\n", i)
            yield "dir", src[i:j], i
            i = j
        elif src[i] in "\"'":
            q, j = src[i], i + 1
            while src[j] != q:
                j += 2 if src[j] == "\\" else 1
            if q == '"':
                yield "s", decode(src[i + 1:j]), i
            i = j + 1
        elif src[i].isalpha() or src[i] == "_":
            m = re.match(r"\w+", src[i:])
            yield "id", m.group(0), i
            i += len(m.group(0))
        elif src[i].isspace():
            i += 1
        else:
            yield "p", src[i], i
            i += 1


def literals(path):
    """(function, bytes, inside an L(...) group number or None) for each string in a file."""
    src = open(path, encoding="utf-8").read()
    heads = re.finditer(r"\n\w[^\n;]*?\b(\w+)\([^;{]*\)\s*\{", src)  # function definitions
    funcs = [(m.start(), m.group(1)) for m in heads]
    macros, out, group, depth, groups, cur = {}, [], None, 0, 0, None
    for kind, val, off in tokens(src):
        m = re.match(r'#define (\w+) (".*")$', val) if kind == "dir" else None
        if m:
            macros[m.group(1)] = decode(m.group(2)[1:-1])
            continue
        if kind == "id" and val in macros:
            kind, val = "s", macros[val]
        if kind == "s":
            if cur is None:
                fn = [f for o, f in funcs if o < off]
                cur = [fn[-1] if fn else "", b"", group]
            cur[1] += val
            continue
        if cur is not None:
            out.append(tuple(cur))
            cur = None
        if kind == "id" and val == "L":
            group, depth, groups = groups, -1, groups + 1
        elif kind == "p" and group is not None and val in "()":
            depth = (0 if depth < 0 else depth) + (1 if val == "(" else -1)
            if depth == 0:
                group = None
    return out


def h1(out):
    """Request heads, response heads and chunked bodies, by the test function they are in."""
    kinds = {"test_req_": "fuzz_h1_request", "test_res_": "fuzz_h1_response",
             "test_chunked_": "fuzz_h1_chunked"}
    for fn, s, _ in literals(os.path.join(UNIT, "test_h1.c")):
        for prefix, target in kinds.items():
            if fn.startswith(prefix) and (b"\n" in s or b"\r" in s or b"HTTP/" in s or
                                          target == "fuzz_h1_chunked"):
                out.setdefault(target, set()).add(s)


def config(out):
    for _, s, _ in literals(os.path.join(UNIT, "test_config.c")):
        out.setdefault("fuzz_config", set()).add(s)


def cache(out):
    """Input: status byte, method byte, then "Name: value" lines (see fuzz_cache_policy.c)."""
    names = {"test_cc_": b"Cache-Control", "test_http_date": b"Date",
             "test_accept_encoding": b"Accept-Encoding", "test_compressible": b"Content-Type",
             "test_etag_weaken": b"ETag"}
    groups, seeds = {}, out.setdefault("fuzz_cache_policy", set())
    for fn, s, g in literals(os.path.join(UNIT, "test_cache.c")):
        if g is not None:
            groups.setdefault(g, []).append(s)
            continue
        for prefix, name in names.items():
            if fn.startswith(prefix):
                seeds.add(b"\0\0" + name + b": " + s)
    for lines in groups.values():
        seeds.add(b"\0\0" + b"\n".join(lines))
        seeds.add(b"\x07\x01" + b"\n".join(lines))  # 304 to a HEAD


def record_end(buf):
    """Length of the complete TLS records at the start of buf, or 0."""
    i = 0
    while i + 5 <= len(buf) and i + 5 + int.from_bytes(buf[i + 3:i + 5], "big") <= len(buf):
        i += 5 + int.from_bytes(buf[i + 3:i + 5], "big")
    return i


def client_hello(args):
    """What `openssl s_client args` sends first, read off a local listening socket."""
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.settimeout(10)
        cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % ls.getsockname()[1]] + args
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            conn, _ = ls.accept()
            buf = b""
            with conn:
                conn.settimeout(10)
                while not record_end(buf):
                    buf += conn.recv(65536)
        finally:
            p.kill()
            p.wait()
    return buf[:record_end(buf)]


def tls(out):
    """Input: byte 0 is the piece size (0: all at once); 0xff XORs the rest over a built-in
    hello (byte 1's low bit picks TLS 1.3 or 1.2, the rest of it the piece size)."""
    seeds = out.setdefault("fuzz_tls_server", set())
    for args in (["-tls1_3", "-servername", "a.fuzz.local", "-alpn", "http/1.1"],
                 ["-tls1_2", "-servername", "a.fuzz.local"],
                 ["-tls1_2", "-noservername", "-alpn", "h2,http/1.1"],
                 ["-tls1_3", "-noservername", "-groups", "P-256"],
                 ["-servername", "b.fuzz.local", "-sess_out", os.devnull]):
        hello = client_hello(args)
        seeds.add(b"\0" + hello)
        seeds.add(b"\x07" + hello)
    for hello in (0, 1):
        for piece in (0, 9):
            seeds.add(b"\xff" + bytes([piece << 1 | hello]))
    seeds.add(b"\0GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    seeds.add(b"\0\x16\x03\x01\x00\x08\x01\x00\x00\x04\x09\x09\x09\x09")


def hpack_block(fields):
    """An HPACK header block: python3-hpack's encoding (indexed, Huffman) when it is there,
    else each field a literal without indexing (RFC 7541 section 6.2.2), no Huffman."""
    try:
        import hpack
        return hpack.Encoder().encode(fields)
    except ImportError:
        pass

    def integer(v, prefix, first=0):
        m = (1 << prefix) - 1
        if v < m:
            return bytes([first | v])
        out, v = bytearray([first | m]), v - m
        while v >= 128:
            out.append(v % 128 + 128)
            v //= 128
        return bytes(out + bytes([v]))

    out = b""
    for name, value in fields:
        name, value = name.encode(), value.encode()
        out += b"\0" + integer(len(name), 7) + name + integer(len(value), 7) + value
    return out


def frame(kind, flags, stream, payload=b""):
    """An HTTP/2 frame (RFC 9113 section 4.1)."""
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0, 1, 2, 3, 4, 5, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 1, 4, 1


def request(method="GET", path="/", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", "a.test"),
            (":path", path)] + list(extra)


def h2(out):
    """Input: 8 control bytes (piece size, flags, six request plans: see fuzz_h2_session.c),
    then frames; the target sends the preface and an empty SETTINGS before them."""
    seeds = out.setdefault("fuzz_h2_session", set())
    get = frame(HEADERS, END_STREAM | END_HEADERS, 1, hpack_block(request()))
    post = frame(HEADERS, END_HEADERS, 1,
                 hpack_block(request("POST", "/up", [("content-length", "5")])))
    chunked = frame(HEADERS, END_HEADERS, 1, hpack_block(request("POST", "/up?q=1", [
        ("cookie", "a=1"), ("cookie", "b=2"), ("user-agent", "seed")])))
    trailers = frame(HEADERS, END_STREAM | END_HEADERS, 1, hpack_block([("x-t", "1")]))
    block = hpack_block(request("GET", "/cont", [("x-long", "v" * 40)]))
    plans = lambda *p: bytes(p + (0,) * (6 - len(p)))
    now, after_body, later, head_now = 0, 1, 2, 3
    kinds = [k << 2 for k in range(8)]
    conversations = [
        (0, 0, plans(now), get),
        (0, 0, plans(after_body | kinds[1]), post + frame(DATA, END_STREAM, 1, b"hello")),
        (0, 0x20, plans(after_body | kinds[3]), chunked + frame(DATA, 0, 1, b"abc") +
         frame(DATA, 0, 1, b"defg") + trailers),
        (0, 0x20, plans(later, now), post + frame(RST_STREAM, 0, 1, (8).to_bytes(4, "big")) +
         frame(HEADERS, END_STREAM | END_HEADERS, 3, hpack_block(request()))),
        (0, 0, plans(now), frame(PING, 0, 0, b"12345678") + frame(SETTINGS, ACK, 0) + get),
        (0, 0x20, plans(head_now | kinds[4]), frame(WINDOW_UPDATE, 0, 0, (1 << 20).to_bytes(4, "big")) +
         get + frame(WINDOW_UPDATE, 0, 1, (1 << 20).to_bytes(4, "big"))),
        (0, 0, plans(now | kinds[5]), frame(HEADERS, END_STREAM, 1, block[:20]) +
         frame(CONTINUATION, END_HEADERS, 1, block[20:])),
        (7, 0x24, plans(later, now | kinds[2], head_now | kinds[6], later | 0x40, now | kinds[7],
                        later | kinds[7] | 0x20),
         b"".join(frame(HEADERS, END_STREAM | END_HEADERS, i, hpack_block(request("GET", "/%d" % i)))
                  for i in (1, 3, 5, 7, 9, 11))),
        (0, 0, plans(now), frame(HEADERS, END_STREAM | END_HEADERS, 1,
                                 hpack_block(request(extra=[("host", "b.test")])))),
        (0, 0, plans(now), frame(HEADERS, END_STREAM | END_HEADERS, 1,
                                 hpack_block(request(extra=[("x-big", "v" * 17000)])))),
        (0, 0, plans(head_now), frame(HEADERS, END_STREAM | END_HEADERS, 1,
                                      hpack_block(request("HEAD")))),
        (0, 0x28, plans(now | 0x80), get),
        (0, 0x13, plans(later), get + frame(GOAWAY, 0, 0, bytes(8))),
        (0, 0, plans(now), frame(PRIORITY, 0, 1, bytes([0, 0, 0, 3, 16])) + get),
        (0, 0x0e, plans(after_body | 0x80), chunked + frame(DATA, 0, 1, b"z" * 200)),
        (0, 0x40, plans(now | kinds[4]), get),  # TLS: frames gathered into records
        (0, 0, plans(later), get + frame(PING, 0, 0, bytes(8)) * 1001),  # past the glitch budget
        (0, 0x20, plans(later), chunked + frame(DATA, 0, 1) * 1001),
        (0, 0, plans(now), frame(HEADERS, END_STREAM | END_HEADERS, 1, hpack_block(
            [(":method", "CONNECT"), (":authority", "a.test:443")]))),
    ]
    for piece, flags, p, frames in conversations:
        seeds.add(bytes([piece, flags]) + p + frames)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = {}
    for make in (h1, config, cache, tls, h2):
        make(out)
    for target, seeds in sorted(out.items()):
        d = os.path.join(sys.argv[1], target)
        os.makedirs(d, exist_ok=True)
        for s in seeds:
            with open(os.path.join(d, hashlib.sha1(s).hexdigest()), "wb") as f:
                f.write(s)
        print("%-18s %4d candidates, %6d bytes" % (target, len(seeds), sum(map(len, seeds))))


if __name__ == "__main__":
    main()
