"""TLS termination with real clients: curl picks the certificate by SNI, openssl s_client
negotiates TLS 1.3 and 1.2 with ALPN http/1.1 and resumes a session, and hostile handshakes
(garbage, one-byte segments, stalls) are closed cleanly without hurting other clients."""
import os
import re
import socket
import ssl
import subprocess
import time

from harness import Client, curl, free_port


def make_cert(d, name, cn, sans):
    key, cert = os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}.pem")
    san = ",".join(f"DNS:{s}" for s in sans)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days",
                    "2", "-subj", f"/CN={cn}", "-addext", f"subjectAltName={san}"],
                   check=True, capture_output=True)
    return cert, key


def tls_proxy(P, extra_domains=""):
    a = P.origin("A", "--echo")
    b = P.origin("B")
    cert, key = make_cert(P.tmp, "default", "test.local", ["test.local"])
    scert, skey = make_cert(P.tmp, "sni", "sni.local", ["sni.local"])
    tport = free_port()
    conf = (f'listen_tls = "127.0.0.1:{tport}";\n'
            f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n'
            'domains = ( '
            f'{{ domain = "test.local"; backends = ( {{ addr = "http://127.0.0.1:{a.port}"; }} ); }},'
            f'{{ domain = "sni.local"; backends = ( {{ addr = "http://127.0.0.1:{b.port}"; }} );'
            f'   tls = {{ cert = "{scert}"; key = "{skey}"; }}; }} {extra_domains});\n')
    px = P.proxy(conf)
    px.tport = tport
    px.cert, px.scert = cert, scert
    return px


def https(px, host, cafile, path="/", *extra):
    return curl("-s", "-o", "-", "-w", "\n%{http_code}", "--cacert", cafile, "--resolve",
                f"{host}:{px.tport}:127.0.0.1", *extra, f"https://{host}:{px.tport}{path}")


def test_curl_sni_picks_the_certificate(P):
    px = tls_proxy(P)
    r = https(px, "test.local", px.cert)
    assert r.returncode == 0 and r.stdout.endswith(b"\n200"), r
    assert b"X-Forwarded-Proto: https" in r.stdout  # the echo backend shows what it got
    r = https(px, "sni.local", px.scert)
    assert r.returncode == 0 and r.stdout.startswith(b"hello from B"), r
    r = https(px, "sni.local", px.cert)  # the SNI certificate is not the default one
    assert r.returncode != 0, r
    r = curl("-s", f"http://127.0.0.1:{px.port}/", "-H", "Host: sni.local")  # plain beside TLS
    assert r.stdout == b"hello from B\n", r


def s_client(px, *args, data=b""):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{px.tport}",
                           "-servername", "test.local", "-alpn", "http/1.1", *args],
                          input=data, capture_output=True, timeout=10)


def test_openssl_versions_alpn_and_resumption(P):
    px = tls_proxy(P)
    req = b"GET / HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n"
    r = s_client(px, "-tls1_3", "-ign_eof", data=req)
    out = r.stdout.decode(errors="replace")
    assert "TLSv1.3" in out and "ALPN protocol: http/1.1" in out, out
    assert "HTTP/1.1 200" in out
    r = s_client(px, "-tls1_2", "-ign_eof", data=req)
    out = r.stdout.decode(errors="replace")
    assert "TLSv1.2" in out and "ALPN protocol: http/1.1" in out, out
    sess = os.path.join(P.tmp, "sess.pem")
    s_client(px, "-tls1_3", "-ign_eof", "-sess_out", sess, data=req)
    r = s_client(px, "-tls1_3", "-ign_eof", "-sess_in", sess, data=req)
    out = r.stdout.decode(errors="replace")
    assert "Reused, TLSv1.3" in out, out
    assert "HTTP/1.1 200" in out


def handshake_over(sock, ctx, host, chunk):
    """A TLS client whose bytes go out `chunk` bytes per send (1: one-byte segments)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname=host)
    sock.settimeout(5)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            data = out.read()
            for i in range(0, len(data), chunk):
                sock.sendall(data[i:i + chunk])
                if chunk == 1:
                    time.sleep(0.001)
            got = sock.recv(65536)
            if not got:
                raise ConnectionError("closed during the handshake")
            inc.write(got)
    sock.sendall(out.read())
    return tls, inc, out


def test_one_byte_segments_and_a_request(P):
    px = tls_proxy(P)
    ctx = ssl.create_default_context(cafile=px.cert)
    ctx.set_alpn_protocols(["http/1.1"])
    s = socket.create_connection(("127.0.0.1", px.tport))
    tls, inc, out = handshake_over(s, ctx, "test.local", 1)
    assert tls.selected_alpn_protocol() == "http/1.1"
    tls.write(b"GET /x HTTP/1.1\r\nHost: test.local\r\n\r\n")
    s.sendall(out.read())
    body = b""
    while b"GET /x" not in body:
        inc.write(s.recv(65536))
        while True:  # one receive may hold several records (tickets, then the response)
            try:
                body += tls.read(65536)
            except ssl.SSLWantReadError:
                break
    assert body.startswith(b"HTTP/1.1 200"), body


def closed_without_answer(s, timeout=3):
    """The server closes (perhaps after a TLS alert record) and never answers in HTTP."""
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        return False
    return b"HTTP/" not in data and (not data or data[0] == 0x15)


def test_hostile_handshakes_are_closed(P):
    px = tls_proxy(P)
    s = socket.create_connection(("127.0.0.1", px.tport))  # plain HTTP on the TLS port
    s.sendall(b"GET / HTTP/1.1\r\nHost: test.local\r\n\r\n")
    assert closed_without_answer(s)
    s = socket.create_connection(("127.0.0.1", px.tport))  # random bytes
    s.sendall(os.urandom(300))
    assert closed_without_answer(s)
    s = socket.create_connection(("127.0.0.1", px.tport))  # an alert instead of a hello
    s.sendall(bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]))
    assert closed_without_answer(s)
    r = https(px, "test.local", px.cert)  # and the port still serves
    assert r.stdout.endswith(b"\n200"), r
    P.stop(px)
    counts = re.search(r"(\d+) failed TLS handshakes", P.log_of(px))
    assert counts and int(counts.group(1)) >= 3, P.log_of(px)  # the three above were counted


def test_stalled_handshake_cut_by_header_timeout(P):
    a = P.origin("A")
    cert, key = make_cert(P.tmp, "c", "test.local", ["test.local"])
    tport = free_port()
    px = P.proxy(f'header_timeout = "1s";\nlisten_tls = "127.0.0.1:{tport}";\n'
                 f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n'
                 f'domains = ( {{ domain = "test.local"; backends = ( {{ addr = '
                 f'"http://127.0.0.1:{a.port}"; }} ); }} );\n')
    s = socket.create_connection(("127.0.0.1", tport))
    s.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]))  # the start of a ClientHello
    t0 = time.time()
    s.settimeout(5)
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    assert data == b"" and 0.8 < time.time() - t0 < 3, time.time() - t0
    assert px.poll() is None
    P.stop(px)
    assert "1 failed TLS handshakes" in P.log_of(px), P.log_of(px)  # and it was counted


def test_https_backends_verified(P):
    """An https:// backend (ringproxy terminating TLS in front of an echo origin) is proxied
    with verification on; a certificate that does not verify is a 502 unless tls_verify is
    off; pooled TLS connections are reused."""
    o = P.origin("O", "--echo")
    cert, key = make_cert(P.tmp, "backend", "localhost", ["localhost"])
    other, _ = make_cert(P.tmp, "other", "localhost", ["localhost"])
    bport = free_port()
    # "localhost" may resolve to ::1 or 127.0.0.1: the inner proxy listens on both
    P.proxy(f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n'
            f'routes = ( {{ path_prefix = "/"; backend = "http://127.0.0.1:{o.port}"; }} );\n',
            listen=f'["127.0.0.1:{bport}", "[::1]:{bport}"]', port=bport,
            listen_key="listen_tls")

    def dom(name, extra):
        return (f'{{ domain = "{name}"; backends = ( {{ addr = "https://localhost:{bport}"; }} ); '
                f'max_retries = 0; {extra} }}')
    px = P.proxy("domains = ( " + ", ".join([
        dom("good.local", f'tls_ca_file = "{cert}";'),
        dom("wrongca.local", f'tls_ca_file = "{other}";'),
        dom("noverify.local", f'tls_ca_file = "{other}"; tls_verify = false;'),
        dom("system.local", ""),
    ]) + " );\n")
    c = Client(px.port)
    for _ in range(5):
        r = c.request(host="good.local")
        assert r.status == 200, (r.status, r.body)
        assert b"X-Forwarded-Proto: https" in r.body  # the inner hop saw TLS
    assert Client(px.port).request(host="wrongca.local").status == 502
    assert Client(px.port).request(host="system.local").status == 502
    assert Client(px.port).request(host="noverify.local").status == 200
    assert "TLS" in P.log_of(px)
    # the inner proxy counts the TLS connections it accepted: the five good.local requests
    # shared one pooled connection (plus one each for the other three domains and the
    # harness's start-up probe)
    inner = P.procs[1]
    P.stop(px)
    P.stop(inner)
    m = re.search(r"worker 0: (\d+) connections", P.log_of(inner))
    assert m and int(m.group(1)) <= 6, P.log_of(inner)


def test_host_header_is_the_tls_name(P):
    """SNI and the verified name come from host_header when it is set."""
    o = P.origin("O")
    cert, key = make_cert(P.tmp, "named", "backend.internal", ["backend.internal"])
    bport = free_port()
    P.proxy(f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n'
            f'routes = ( {{ path_prefix = "/"; backend = "http://127.0.0.1:{o.port}"; }} );\n',
            port=bport, listen_key="listen_tls")
    px = P.proxy(f'domains = ( {{ domain = "a.local"; backends = ( {{ addr = "https://127.0.0.1:{bport}"; }} ); '
                 f'host_header = "backend.internal:{bport}"; tls_ca_file = "{cert}"; max_retries = 0; }},'
                 f'{{ domain = "b.local"; backends = ( {{ addr = "https://127.0.0.1:{bport}"; }} ); '
                 f'tls_ca_file = "{cert}"; max_retries = 0; }} );\n')
    assert Client(px.port).request(host="a.local").status == 200
    # without host_header the address is an IP literal: no SNI is sent and only the chain is
    # verified (a trusted chain passes whatever name it was issued for), as the README says
    assert Client(px.port).request(host="b.local").status == 200
