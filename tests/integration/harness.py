"""Integration test harness: starts real ringproxy and ringorigin processes on loopback,
speaks HTTP/1.1 to them over raw sockets (and curl where a real client matters), and
cleans everything up. Used by run.py; no third-party modules.
"""
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

BUILD = os.environ.get("RP_BUILD", "build")
_port_lock = threading.Lock()
_next_port = [20000 + (os.getpid() % 50) * 200]


class Skip(Exception):
    """Raised by a test that cannot run here; run.py reports it as skipped, with the reason,
    never as passed."""


def free_port():
    """A loopback port nobody listens on (tests run one at a time)."""
    with _port_lock:
        while True:
            _next_port[0] += 1
            p = _next_port[0]
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                    return p
                except OSError:
                    continue


def wait_port(port, timeout=5.0, host="127.0.0.1"):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def port_closed(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return False
    except OSError:
        return True


class Response:
    def __init__(self, status, reason, headers, body, raw_head, version="HTTP/1.1"):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.raw_head = raw_head
        self.version = version

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f"<Response {self.status} {len(self.body)} bytes>"


class Client:
    """A raw HTTP/1.1 client on one connection: sends bytes as given, parses responses."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, source=None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        self.buf += chunk

    def _read_until(self, marker):
        while marker not in self.buf:
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_n(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read_chunked(self):
        body = b""
        while True:
            line = self._read_until(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while self._read_until(b"\r\n") != b"\r\n":
                    pass
                return body
            body += self._read_n(size)
            assert self._read_n(2) == b"\r\n", "chunk data not followed by CRLF"

    def _read_to_close(self):
        while True:
            try:
                self._fill()
            except ConnectionError:
                break
        out, self.buf = self.buf, b""
        return out

    def read_response(self, head_request=False, allow_interim=False):
        raw = self._read_until(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        m = re.match(r"(HTTP/1\.[01]) (\d{3}) ?(.*)", lines[0])
        assert m, f"bad status line {lines[0]!r}"
        status = int(m.group(2))
        headers = []
        for line in lines[1:]:
            if line:
                k, v = line.split(":", 1)
                headers.append((k, v.strip()))
        r = Response(status, m.group(3), headers, b"", raw, m.group(1))
        if 100 <= status < 200:
            if allow_interim:
                return r
            return self.read_response(head_request)
        te = r.header("Transfer-Encoding")
        cl = r.header("Content-Length")
        if head_request or status in (204, 304):
            pass
        elif te and "chunked" in te.lower():
            r.body = self._read_chunked()
        elif cl is not None:
            r.body = self._read_n(int(cl))
        else:
            r.body = self._read_to_close()
        return r

    def request(self, method="GET", path="/", host="test.local", headers=(), body=None,
                version="HTTP/1.1"):
        head = f"{method} {path} {version}\r\n"
        if host is not None:
            head += f"Host: {host}\r\n"
        for k, v in headers:
            head += f"{k}: {v}\r\n"
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                         for k, _ in headers):
            head += f"Content-Length: {len(body)}\r\n"
        data = head.encode() + b"\r\n" + (body.encode() if isinstance(body, str) else body or b"")
        self.send(data)
        return self.read_response(head_request=(method == "HEAD"))

    def closed_by_peer(self, timeout=3.0):
        """True if the peer closes (EOF or reset) within timeout, with no more bytes."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
            self.buf += data
            return data == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def get(port, path="/", host="test.local", **kw):
    c = Client(port)
    try:
        return c.request("GET", path, host, **kw)
    finally:
        c.close()


class Procs:
    """Processes started by a test; all are stopped at the end of it."""

    def __init__(self):
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="rp-it-")

    def origin(self, name, *args, port=None):
        port = port or free_port()
        log = open(os.path.join(self.tmp, f"origin-{name}-{port}.log"), "a")
        p = subprocess.Popen([f"{BUILD}/ringorigin", "-l", f"127.0.0.1:{port}", "-n", name, "-q",
                              *args], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        if not wait_port(port):
            raise RuntimeError(f"ringorigin {name} did not start on {port}")
        p.port = port
        p.name = name
        return p

    def write_config(self, text):
        fd, path = tempfile.mkstemp(suffix=".conf", dir=self.tmp)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def proxy(self, config, port=None, workers=1, extra=(), wait=True, listen=None,
              listen_key="listen"):
        """Starts ringproxy with `config` after a listen line for 127.0.0.1:port (or the
        given `listen` value; listen_key="listen_tls" makes it a TLS listener) and a
        workers line."""
        port = port or free_port()
        listen = listen or f'"127.0.0.1:{port}"'
        text = f'{listen_key} = {listen};\nworkers = {workers};\n' + config
        path = self.write_config(text)
        logpath = os.path.join(self.tmp, f"proxy-{port}.log")
        log = open(logpath, "a")
        p = subprocess.Popen([f"{BUILD}/ringproxy", "-c", path, *extra], stdout=log,
                             stderr=subprocess.STDOUT)
        p.port = port
        p.logpath = logpath
        self.procs.append(p)
        if wait and not wait_port(port):
            raise RuntimeError(f"ringproxy did not start: {open(logpath).read()}")
        return p

    def log_of(self, p):
        with open(p.logpath) as f:
            return f.read()

    def stop(self, p, sig=signal.SIGTERM, timeout=10):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def stop_all(self):
        for p in self.procs:
            self.stop(p, timeout=5)
        bad = []
        for p in self.procs:
            # ringproxy must exit 0 after a drain; sanitizer reports make it non-zero
            if getattr(p, "logpath", None) and p.returncode not in (0, None):
                if not getattr(p, "expect_fail", False):
                    bad.append((p.port, p.returncode, self.log_of(p)[-2000:]))
        return bad


class Req:
    def __init__(self, conn, n, method, path, headers, body):
        self.conn = conn  # backend connection number, from 1
        self.n = n        # request number on that connection, from 1
        self.method = method
        self.path = path
        self.headers = headers  # list of (name lowercased, value)
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<Req {self.method} {self.path} conn={self.conn} n={self.n} body={len(self.body)}>"


class ScriptBackend:
    """A backend for what ringorigin will not do (misbehave, hang, reset after reading): a
    socket server on a thread (127.0.0.1, port 0). Each request it reads (the head, and
    the body by its framing when read_body) goes to script(req), which returns a list of
    actions: bytes are sent, a float sleeps that long, "close" closes, "reset" closes with an
    RST, "drain" reads until EOF and closes. The connection then reads its next request.
    With `tls` (an ssl.SSLContext, which may be swapped while it runs) it is an https://
    backend; a handshake the proxy refuses ends that connection."""

    def __init__(self, script, read_body=True, tls=None):
        self.script = script
        self.tls = tls
        self.read_body = read_body
        self.log = []
        self.errors = []
        self.conns = 0
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                no = self.conns
            threading.Thread(target=self._one, args=(c, no), daemon=True).start()

    @staticmethod
    def _recv_until(c, buf, cond):
        while not cond(buf):
            chunk = c.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _read_body(self, c, headers, buf):
        h = dict(headers)
        if "chunked" in h.get("transfer-encoding", "").lower():
            body = b""
            while True:
                buf = self._recv_until(c, buf, lambda b: b"\r\n" in b)
                line, buf = buf.split(b"\r\n", 1)
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    buf = self._recv_until(c, buf, lambda b: b"\r\n" in b)
                    while not buf.startswith(b"\r\n"):  # trailers
                        buf = buf.split(b"\r\n", 1)[1]
                        buf = self._recv_until(c, buf, lambda b: b"\r\n" in b)
                    return body, buf[2:]
                buf = self._recv_until(c, buf, lambda b: len(b) >= size + 2)
                body, buf = body + buf[:size], buf[size + 2:]
        n = int(h.get("content-length", "0"))
        buf = self._recv_until(c, buf, lambda b: len(b) >= n)
        return buf[:n], buf[n:]

    def _one(self, c, no):
        c.settimeout(5)
        if self.tls:
            try:
                c = self.tls.wrap_socket(c, server_side=True)
            except OSError:  # ssl.SSLError included
                c.close()
                return
        buf = b""
        n = 0
        try:
            while True:
                try:
                    buf = self._recv_until(c, buf, lambda b: b"\r\n\r\n" in b)
                except EOFError:
                    return
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    k, v = line.split(":", 1)
                    headers.append((k.strip().lower(), v.strip()))
                body = b""
                if self.read_body:
                    body, buf = self._read_body(c, headers, buf)
                n += 1
                req = Req(no, n, method, path, headers, body)
                with self.lock:
                    self.log.append(req)
                for a in self.script(req):
                    if isinstance(a, bytes):
                        c.sendall(a)
                    elif isinstance(a, float):
                        time.sleep(a)
                    elif a == "close":
                        return
                    elif a == "reset":
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        return
                    elif a == "drain":
                        while c.recv(65536):
                            pass
                        return
                    else:
                        raise ValueError(a)
        except (OSError, EOFError):
            pass  # the proxy gave up on this connection: expected for most scripts
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            c.close()

    def requests_for(self, path):
        with self.lock:
            return [r for r in self.log if r.path == path]

    def conns_of(self, path):
        return {r.conn for r in self.requests_for(path)}

    def close(self):
        self.ls.close()


class ScriptedBackend(ScriptBackend):
    """Answers each connection's first request with fixed bytes, then closes (or, with
    keep=True, answers every request on it the same way): framings ringorigin does not make.
    `requests` lists the requests seen."""

    def __init__(self, reply, keep=False):
        reply = reply if isinstance(reply, bytes) else reply.encode()
        super().__init__(lambda req: [reply] if keep else [reply, "close"], read_body=False)

    @property
    def requests(self):
        with self.lock:
            return list(self.log)


class Load:
    """Requests to `port` for `host` in a thread, one after another (keep-alive when
    `keep`), until stop(): `count` made, `failures` the statuses that were not 200."""

    def __init__(self, port, host, keep=False):
        self.port, self.host, self.keep = port, host, keep
        self.count, self.failures = 0, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run)

    def _run(self):
        c = Client(self.port) if self.keep else None
        while not self._stop.is_set():
            r = c.request("GET", "/", host=self.host) if c else get(self.port, "/",
                                                                     host=self.host)
            self.count += 1
            if r.status != 200:
                self.failures.append(r.status)

    def __enter__(self):
        self._t.start()
        return self

    def at_least(self, n, timeout=10.0):
        """Waits until n requests were made (a busy machine runs the thread slowly)."""
        end = time.time() + timeout
        while self.count < n and time.time() < end:
            time.sleep(0.01)
        return self.count >= n

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def origin_stats(port):
    r = get(port, "/__stats", host=f"127.0.0.1:{port}")
    m = re.search(rb'"requests":(\d+),"connections":(\d+)', r.body)
    return int(m.group(1)), int(m.group(2))


def domain_conf(name, ports, extra="", lb="round_robin"):
    backends = ", ".join(f'{{ addr = "http://127.0.0.1:{p}"; }}' for p in ports)
    return (f'domains = ( {{ domain = "{name}"; backends = ( {backends} ); '
            f'load_balancer = "{lb}"; {extra} }} );\n')


def curl(*args, timeout=10):
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args],
                          capture_output=True, timeout=timeout + 5)
