"""Backends that misbehave on the response side (issue 11 point 6): conflicting framing,
bytes past the end of a response, bodies where none may be, control bytes and oversized
heads, an unsolicited 101, an early 413, a bad chunk size and resets after a whole request.
For each the client gets the right answer (502 for what cannot be relayed safely, the
response itself for what can), and the NEXT request is clean: it is answered correctly, over
a backend connection that carried none of the bad bytes, while the broken backend answers
follow-up requests on the same connection correctly, so a poisoned pool would show.

The backend is standard-library Python on a thread; it numbers its connections (1, 2, ...)
and the requests on each, and says which answered in X-Conn / X-Req and in the body."""
import select
import socket
import time

from harness import Client, ScriptBackend, domain_conf

POOLED = "max_idle_conns = 8;"


def answer_body(path, conn, n):
    return f"answer to {path} conn={conn} req={n}".encode()


def ok(req, status="200 OK", extra=b""):
    """The correct answer to req, naming the connection that gave it (no body on HEAD)."""
    body = answer_body(req.path, req.conn, req.n)
    head = (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nX-Conn: {req.conn}\r\n"
            f"X-Req: {req.n}\r\n").encode() + extra + b"\r\n"
    return head if req.method == "HEAD" else head + body


def bad_then_good(bad):
    """Script: `bad` (bytes, or a function of the request returning bytes) for paths under
    /bad, the correct answer for everything else, on any connection."""
    def script(req):
        if req.path.startswith("/bad"):
            return [bad(req) if callable(bad) else bad]
        return [ok(req)]
    return script


def start(P, script, extra=POOLED, read_body=True):
    be = ScriptBackend(script, read_body)
    px = P.proxy(domain_conf("test.local", [be.port], extra))
    return be, px


def assert_next_clean(px, be, bad_conns, c=None):
    """The next request (on c if the proxy kept it open, else on a new client connection)
    gets the backend's correct answer over a backend connection that is not in bad_conns,
    and nothing else arrives with it."""
    own = c is None
    c = c or Client(px.port)
    try:
        r = c.request("GET", "/next")
        assert r.status == 200, (r.status, r.raw_head, r.body)
        assert r.header("X-Conn") and r.header("X-Req"), (r.raw_head, r.body)
        conn, n = int(r.header("X-Conn")), int(r.header("X-Req"))
        assert r.body == answer_body("/next", conn, n), r.body
        assert conn not in bad_conns, f"/next answered on backend connection {conn}, " \
            f"which carried the bad response ({bad_conns}): a poisoned pool"
        seen = be.requests_for("/next")
        assert [(q.conn, q.n) for q in seen] == [(conn, n)], seen
        assert c.buf == b"" and extra_bytes(c) == b"", (c.buf, extra_bytes(c))
    finally:
        if own:
            c.close()
    assert not be.errors, be.errors
    with be.lock:
        be.log[:] = [q for q in be.log if q.path != "/next"]


def extra_bytes(c, wait=0.1):
    """Bytes the proxy sends on c within `wait` seconds, unasked (b"" if none, or on EOF)."""
    r, _, _ = select.select([c.sock], [], [], wait)
    if not r:
        return b""
    try:
        return c.sock.recv(65536, socket.MSG_PEEK)
    except OSError:
        return b""


def assert_502(c):
    """The client gets a 502 the proxy made (no byte of the backend's), then the close."""
    r = c.read_response(allow_interim=True)
    assert r.status == 502, (r.status, r.raw_head, r.body)
    assert r.header("X-Conn") is None, r.raw_head  # the proxy's answer, not the backend's
    assert r.body == b"502 Bad Gateway\n", r.body
    assert r.header("Connection") == "close", r.raw_head
    assert c.closed_by_peer(), c.buf
    return r


def bad_request_502(px, be, path="/bad", method="GET"):
    """Sends one request the backend answers badly; asserts the 502; returns the backend
    connections that carried the bad answer."""
    c = Client(px.port)
    try:
        c.send(f"{method} {path} HTTP/1.1\r\nHost: test.local\r\n\r\n")
        assert_502(c)
    finally:
        c.close()
    conns = be.conns_of(path)
    assert conns, "the request never reached the backend"
    return conns


# ---- control: the detection works ----------------------------------------------------------

def test_misbehave_control_well_behaved_backend_is_pooled(P):
    # a well-behaved backend's connection IS reused (X-Conn 1, X-Req 2): the assertions
    # below that a bad connection was not reused are not vacuous
    be, px = start(P, lambda req: [ok(req)])
    c = Client(px.port)
    r1 = c.request("GET", "/one")
    r2 = c.request("HEAD", "/two")
    r3 = c.request("GET", "/three")
    assert (r1.status, r1.header("X-Conn"), r1.header("X-Req")) == (200, "1", "1")
    assert r1.body == answer_body("/one", 1, 1)
    assert (r2.status, r2.header("X-Conn"), r2.header("X-Req"), r2.body) == (200, "1", "2", b"")
    assert (r3.status, r3.header("X-Conn"), r3.header("X-Req")) == (200, "1", "3")
    assert r3.body == answer_body("/three", 1, 3)
    assert be.conns == 1
    c.close()


# ---- Content-Length ----------------------------------------------------------------------

def test_misbehave_two_content_lengths_that_differ_are_502(P):
    for fields in [b"Content-Length: 5\r\nContent-Length: 6\r\n", b"Content-Length: 5, 6\r\n",
                   b"Content-Length: 6\r\nContent-Length: 5\r\n"]:
        be, px = start(P, bad_then_good(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\nhello!"))
        bad = bad_request_502(px, be)
        assert_next_clean(px, be, bad)


def test_misbehave_two_equal_content_lengths_collapse_to_one(P):
    # RFC 9110 8.6: identical values may be collapsed into one; ringproxy accepts them (see
    # cl_merge in engine/h1.c) and must then forward ONE valid Content-Length: a sender MUST
    # NOT forward a value that does not match 1*DIGIT ("5, 5"), and clients such as Node's
    # llhttp reject a second Content-Length field outright ("Duplicate Content-Length")
    wrong = []
    for fields in [b"Content-Length: 5\r\nContent-Length: 5\r\n", b"Content-Length: 5, 5\r\n"]:
        be, px = start(P, bad_then_good(lambda req, f=fields: b"HTTP/1.1 200 OK\r\n" + f
                                        + f"X-Conn: {req.conn}\r\n\r\nhello".encode()))
        c = Client(px.port)
        c.send("GET /bad HTTP/1.1\r\nHost: test.local\r\n\r\n")
        head = c._read_until(b"\r\n\r\n")  # raw: the harness's parser cannot read "5, 5"
        assert head.startswith(b"HTTP/1.1 200 "), (fields, head)
        cls = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"content-length:")]
        assert c._read_n(5) == b"hello", (fields, c.buf)
        if cls != [b"5"]:
            wrong.append((fields, head))
        # the framing was sound: the connection may be reused, and the next answer is right
        assert_next_clean(px, be, set(), c)
        c.close()
    assert not wrong, "Content-Length forwarded as received, not as one valid field: " + \
        "; ".join(f"{f!r} -> {h!r}" for f, h in wrong)


def test_misbehave_content_length_with_chunked_relays_the_chunked_body(P):
    # RFC 9112 6.3: Transfer-Encoding overrides Content-Length; an intermediary that forwards
    # such a message MUST remove the Content-Length first, and the backend connection is not
    # reused after a message framed two ways. Content-Length 3 would cut the body at "5\r\nh".
    be, px = start(P, bad_then_good(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n"
                                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
    c = Client(px.port)
    r = c.request("GET", "/bad")
    assert r.status == 200, r.raw_head
    assert r.body == b"hello world", r.body
    assert r.header("Content-Length") is None, r.raw_head
    assert r.header_all("Transfer-Encoding") == ["chunked"], r.raw_head
    assert_next_clean(px, be, be.conns_of("/bad"), c)
    c.close()


# ---- bytes past the response -------------------------------------------------------------

SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Conn: 1\r\nX-Req: 2\r\n\r\nSMUGGLED"


def test_misbehave_bytes_after_the_body_in_the_same_packet(P):
    # a Content-Length 5 body followed, in the same send, by a whole smuggled response
    be, px = start(P, bad_then_good(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                                    + SMUGGLED))
    c = Client(px.port)
    r = c.request("GET", "/bad")
    assert (r.status, r.body) == (200, b"hello"), (r.raw_head, r.body)
    assert c.buf == b"", c.buf
    assert_next_clean(px, be, be.conns_of("/bad"), c)
    c.close()


def test_misbehave_bytes_after_the_body_on_an_idle_pooled_connection(P):
    # the junk comes 150 ms after a clean response, once the connection is idle in the pool:
    # it answers nothing asked, so the connection must be dropped, not handed to /next
    def script(req):
        if req.path == "/bad":
            return [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0.15, SMUGGLED]
        return [ok(req)]
    be, px = start(P, script)
    c = Client(px.port)
    r = c.request("GET", "/bad")
    assert (r.status, r.body) == (200, b"hello"), (r.raw_head, r.body)
    time.sleep(0.5)
    assert c.buf == b"", c.buf
    assert_next_clean(px, be, be.conns_of("/bad"), c)
    c.close()


def test_misbehave_body_on_head_204_304_does_not_leak(P):
    cases = [("200 OK", "HEAD", (), 200), ("204 No Content", "GET", (), 204),
             ("304 Not Modified", "GET", (("If-None-Match", '"x"'),), 304)]
    for status, method, headers, want in cases:
        be, px = start(P, bad_then_good(f"HTTP/1.1 {status}\r\nContent-Length: 5\r\n\r\n"
                                        .encode() + b"hello" + SMUGGLED))
        c = Client(px.port)
        r = c.request(method, "/bad", headers=headers)
        assert r.status == want, (status, r.raw_head)
        assert r.body == b"", (status, r.body)
        if want == 200:  # HEAD: the head of the GET, Content-Length included
            assert r.header("Content-Length") == "5", r.raw_head
        # "hello" and the smuggled response must reach neither this client nor /next
        assert_next_clean(px, be, be.conns_of("/bad"), c)
        c.close()


# ---- malformed heads ---------------------------------------------------------------------

def test_misbehave_nul_and_bare_cr_in_fields_are_502(P):
    heads = [b"X-Bad: a\x00b\r\n", b"X-Bad: a\rb\r\n", b"X-Bad: a\r\r\n",
             b"X-B\x00ad: v\r\n", b"X-B\rad: v\r\n", b"\x00X-Bad: v\r\n"]
    for field in heads:
        be, px = start(P, bad_then_good(b"HTTP/1.1 200 OK\r\n" + field
                                        + b"Content-Length: 5\r\n\r\nhello"))
        try:
            bad = bad_request_502(px, be)
        except AssertionError as e:
            raise AssertionError(f"field {field!r}: {e}") from e
        assert_next_clean(px, be, bad)


def test_misbehave_oversized_response_head_is_502(P):
    # 100 KiB of header fields, against the default 16 KiB max_header_bytes: one huge field,
    # and 1000 fields of 100 bytes (also past max_header_count)
    for fields in [b"X-Big: " + b"a" * 100 * 1024 + b"\r\n",
                   b"".join(b"X-F%04d: " % i + b"v" * 91 + b"\r\n" for i in range(1000))]:
        be, px = start(P, bad_then_good(b"HTTP/1.1 200 OK\r\n" + fields
                                        + b"Content-Length: 5\r\n\r\nhello"))
        bad = bad_request_502(px, be)
        assert_next_clean(px, be, bad)


def test_misbehave_unsolicited_101_is_502(P):
    # a 101 to a GET that asked for no Upgrade: never relayed (the client would take the
    # connection for a tunnel), and the backend connection is not reused
    be, px = start(P, bad_then_good(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    b"Connection: Upgrade\r\n\r\n" + SMUGGLED))
    bad = bad_request_502(px, be)
    assert_next_clean(px, be, bad)


# ---- an early 413 ------------------------------------------------------------------------

def early_413(P, then):
    """A POST with a 512 KiB body that the backend answers with 413 right after the head;
    `then`: "close" (it closes at once, unread body and all) or "drain" (it keeps reading)."""
    def script(req):
        if req.path == "/upload":
            close = b"Connection: close\r\n" if then == "close" else b""
            return [ok(req, "413 Content Too Large", close), then]
        return [ok(req)]
    be, px = start(P, script, read_body=False)
    c = Client(px.port)
    total = 512 * 1024
    c.send(f"POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: {total}\r\n\r\n")
    c.send(b"x" * 65536)
    r = c.read_response()
    assert r.status == 413, (r.status, r.raw_head, r.body)
    assert r.header("X-Conn") == "1", r.raw_head  # the backend's 413, relayed
    assert r.body == answer_body("/upload", 1, 1), r.body
    # the rest of the body is never read as a request: the client connection ends
    assert r.header("Connection") == "close", r.raw_head
    try:
        c.sock.sendall(b"x" * (total - 65536))
    except OSError:
        pass
    assert c.closed_by_peer(5), c.buf
    c.close()
    assert len(be.requests_for("/upload")) == 1, be.log
    assert_next_clean(px, be, be.conns_of("/upload"))


def test_misbehave_early_413_backend_closes(P):
    early_413(P, "close")


def test_misbehave_early_413_backend_keeps_reading(P):
    early_413(P, "drain")


# ---- bad chunked framing -----------------------------------------------------------------

def test_misbehave_bad_chunk_size_with_the_head_is_502(P):
    # no byte has reached the client yet when the bad size is found (same packet as the
    # head), so the client can still get a proper 502 rather than an empty reply
    be, px = start(P, bad_then_good(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    b"zz\r\nhello\r\n0\r\n\r\n"))
    c = Client(px.port)
    try:
        c.send("GET /bad HTTP/1.1\r\nHost: test.local\r\n\r\n")
        try:
            assert_502(c)
        except ConnectionError:
            raise AssertionError(f"empty reply instead of a 502 (got {c.buf!r})") from None
    finally:
        c.close()
    assert_next_clean(px, be, be.conns_of("/bad"))


def test_misbehave_bad_chunk_size_after_the_head_truncates_visibly(P):
    # the head and a first chunk went out before the bad size came: the client must see a
    # truncated body (no terminating chunk, then the close), never a complete-looking one
    def script(req):
        if req.path == "/bad":
            return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 0.2,
                    b"zz\r\nworld\r\n0\r\n\r\n"]
        return [ok(req)]
    be, px = start(P, script)
    c = Client(px.port)
    c.send("GET /bad HTTP/1.1\r\nHost: test.local\r\n\r\n")
    raw = c._read_to_close()
    assert raw.startswith(b"HTTP/1.1 200 "), raw
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower(), head
    assert body == b"5\r\nhello\r\n", body  # no "0\r\n\r\n": the truncation shows
    c.close()
    assert_next_clean(px, be, be.conns_of("/bad"))


# ---- resets after a whole request on a reused pooled connection ----------------------------

def reset_on_reuse(P, method, path, headers=(), body=None):
    """Backend connection 1 answers /warm, then reads the whole next request and resets;
    every other connection answers correctly. Returns the client's answer to the second
    request, sent on the same client connection (so over pooled backend connection 1)."""
    def script(req):
        if req.conn == 1 and req.n == 2:
            return ["reset"]
        return [ok(req)]
    be, px = start(P, script)
    c = Client(px.port)
    r = c.request("GET", "/warm")
    assert (r.status, r.header("X-Conn")) == (200, "1"), r.raw_head
    r = c.request(method, path, headers=headers, body=body)
    seen = be.requests_for(path)
    assert seen and (seen[0].conn, seen[0].n) == (1, 2), \
        f"the request did not go over the pooled connection: {seen}"
    if body is not None:
        assert all(q.body == body.encode() for q in seen), seen
    return be, px, c, r, seen


def test_misbehave_reset_after_a_whole_post_on_a_pooled_connection_is_502(P):
    be, px, c, r, seen = reset_on_reuse(P, "POST", "/post", body="pay once")
    assert len(seen) == 1, f"the POST reached the backend {len(seen)} times: {seen}"
    assert r.status == 502, (r.status, r.raw_head, r.body)
    assert r.header("X-Conn") is None, r.raw_head
    c.close()
    assert_next_clean(px, be, {1})


def test_misbehave_reset_after_a_whole_get_on_a_pooled_connection_is_retried(P):
    be, px, c, r, seen = reset_on_reuse(P, "GET", "/get")
    assert r.status == 200, (r.status, r.raw_head, r.body)
    assert len(seen) == 2 and seen[1].conn != 1, seen
    assert r.body == answer_body("/get", seen[1].conn, seen[1].n), r.body
    assert_next_clean(px, be, {1}, c)
    c.close()


def test_misbehave_reset_after_a_post_with_idempotency_key_is_retried(P):
    be, px, c, r, seen = reset_on_reuse(P, "POST", "/post", body="pay once",
                                        headers=[("Idempotency-Key", "k-123")])
    assert r.status == 200, (r.status, r.raw_head, r.body)
    assert len(seen) == 2 and seen[1].conn != 1, seen
    assert all(q.header("idempotency-key") == "k-123" for q in seen), seen
    assert r.body == answer_body("/post", seen[1].conn, seen[1].n), r.body
    assert_next_clean(px, be, {1}, c)
    c.close()
