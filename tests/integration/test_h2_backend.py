"""HTTP/2 to backends (h2c:// and h2://): gRPC end to end with python3-grpcio's client and
server (Debian's, run by Debian's Python) through ringproxy, and plain HTTP through an HTTP/2
hop (a second ringproxy with h2c and TLS listeners in front of ringorigin): bodies both ways,
chunked and trailers, one multiplexed connection per backend, health checks, and a backend
that reloads (GOAWAY) under traffic."""
import os
import signal
import subprocess
import textwrap
import time

from harness import Load, Skip, curl, free_port, wait_port
from test_h2 import metric
from test_tls import make_cert

DEB_PY = "/usr/bin/python3"  # python3-grpcio is built for Debian's Python

GRPC_SERVER = textwrap.dedent("""
    import sys, time
    from concurrent import futures
    import grpc

    def unary(req, ctx):
        if req == b"fail":
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input: fail")
        if req.startswith(b"sleep"):
            time.sleep(float(req[5:]))
        left = ctx.time_remaining()
        return b"echo:" + req + (b" deadline" if left is not None and left < 60 else b"")

    def server_stream(req, ctx):
        for i in range(int(req)):
            yield b"item%d" % i

    def client_stream(it, ctx):
        return b"+".join(it)

    def bidi(it, ctx):
        for m in it:
            yield b"re:" + m

    handlers = grpc.method_handlers_generic_handler("test.Svc", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    })
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    s.add_generic_rpc_handlers((handlers,))
    s.add_insecure_port("127.0.0.1:" + sys.argv[1])
    s.start()
    print("ready", flush=True)
    s.wait_for_termination()
""")

GRPC_CLIENT = textwrap.dedent("""
    import json, sys, grpc
    ch = grpc.insecure_channel(sys.argv[1])
    out = {}
    u = ch.unary_unary("/test.Svc/Unary")
    out["unary"] = u(b"hello", timeout=5).decode()
    out["big"] = len(u(b"x" * 3000000, timeout=10))
    try:
        u(b"fail", timeout=5)
    except grpc.RpcError as e:
        out["error"] = [str(e.code()), e.details()]
    try:
        u(b"sleep2", timeout=0.5)
    except grpc.RpcError as e:
        out["deadline"] = str(e.code())
    ss = ch.unary_stream("/test.Svc/ServerStream")
    out["server_stream"] = [m.decode() for m in ss(b"5", timeout=5)]
    cs = ch.stream_unary("/test.Svc/ClientStream")
    out["client_stream"] = cs(iter([b"a", b"b", b"c"]), timeout=5).decode()
    bd = ch.stream_stream("/test.Svc/Bidi")
    out["bidi"] = [m.decode() for m in bd(iter([b"x", b"y", b"z"]), timeout=5)]
    print(json.dumps(out))
""")


def need_grpc():
    r = subprocess.run([DEB_PY, "-c", "import grpc"], capture_output=True)
    if r.returncode:
        raise Skip("python3-grpcio is not installed (apt-get install python3-grpcio)")


def grpc_server(P):
    port = free_port()
    path = os.path.join(P.tmp, "grpc_server.py")
    with open(path, "w") as f:
        f.write(GRPC_SERVER)
    log = open(os.path.join(P.tmp, f"grpc-{port}.log"), "w")
    p = subprocess.Popen([DEB_PY, path, str(port)], stdout=log, stderr=subprocess.STDOUT)
    P.procs.append(p)
    assert wait_port(port, timeout=15), "the gRPC server did not start"
    p.port = port
    return p


def grpc_client(P, target):
    path = os.path.join(P.tmp, "grpc_client.py")
    with open(path, "w") as f:
        f.write(GRPC_CLIENT)
    r = subprocess.run([DEB_PY, path, target], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    import json
    return json.loads(r.stdout)


def test_grpc_through_ringproxy_unary_streaming_errors_deadlines(P):
    need_grpc()
    g = grpc_server(P)
    px = P.proxy(f'h2c = true;\nroutes = ( {{ path_prefix = "/"; backend = "h2c://127.0.0.1:{g.port}"; }} );\n')
    want = grpc_client(P, f"127.0.0.1:{g.port}")  # the reference: the server itself
    got = grpc_client(P, f"127.0.0.1:{px.port}")
    assert got == want, (got, want)
    assert got["unary"] == "echo:hello deadline"  # the client's deadline reached the server
    assert got["big"] == len("echo:") + 3000000 + len(" deadline")
    assert got["error"] == ["StatusCode.INVALID_ARGUMENT", "bad input: fail"]  # trailers intact
    assert got["deadline"] == "StatusCode.DEADLINE_EXCEEDED"
    assert got["server_stream"] == [f"item{i}" for i in range(5)]
    assert got["client_stream"] == "a+b+c"
    assert got["bidi"] == ["re:x", "re:y", "re:z"]


def hop(P, origin_args=()):
    """A second ringproxy as the HTTP/2 backend: h2c and TLS (ALPN h2) listeners in front of
    a ringorigin."""
    o = P.origin("O", *origin_args)
    cert, key = make_cert(P.tmp, "hop", "hop.local", ["hop.local"])
    tport = free_port()
    b = P.proxy(f'h2c = true;\nlisten_tls = "127.0.0.1:{tport}";\n'
                f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n'
                f'routes = ( {{ path_prefix = "/"; backend = "http://127.0.0.1:{o.port}"; }} );\n')
    assert wait_port(tport)
    b.tport, b.cert, b.origin = tport, cert, o
    return b


def front(P, b, extra="", domain_extra=""):
    aport = free_port()
    conf = (f'h2c = true;\nadmin = {{ listen = "127.0.0.1:{aport}"; }};\n'
            f'domains = ( {{ domain = "c.local"; backends = ( {{ addr = "h2c://127.0.0.1:{b.port}"; }} ); {domain_extra} }},\n'
            f'  {{ domain = "t.local"; backends = ( {{ addr = "h2://127.0.0.1:{b.tport}"; }} );\n'
            f'    host_header = "hop.local"; tls_ca_file = "{b.cert}"; }} );\n' + extra)
    a = P.proxy(conf)
    assert wait_port(aport)
    a.aport = aport
    return a


def test_http_clients_through_an_h2_backend_bodies_both_ways(P):
    b = hop(P)
    a = front(P, b, extra="")
    body = os.urandom(5 << 20)
    path = os.path.join(P.tmp, "body")
    with open(path, "wb") as f:
        f.write(body)
    for host in ("c.local", "t.local"):  # h2c://, and h2:// verified against its CA
        for proto in ("--http1.1", "--http2-prior-knowledge"):
            r = curl("-s", proto, "-H", f"Host: {host}", "-w", "\n%{http_code}",
                     f"http://127.0.0.1:{a.port}/x")
            assert r.stdout == b"hello from O\n\n200", (host, proto, r)
            r = curl("-s", proto, "-H", f"Host: {host}", "-o", "-", "--data-binary", f"@{path}",
                     f"http://127.0.0.1:{a.port}/up?echo=1", timeout=30)
            head, _, got = r.stdout.partition(b"\r\n\r\n")
            assert got == body and b"Content-Length: 5242880" in head, (host, proto, head)
            # without a content-length (chunked from HTTP/1.1): DATA until END_STREAM, then
            # chunked again from the hop to the origin
            r = curl("-s", proto, "-H", f"Host: {host}", "-H", "Transfer-Encoding: chunked",
                     "-o", "-", "--data-binary", f"@{path}", f"http://127.0.0.1:{a.port}/ch?echo=1",
                     timeout=30)
            head, _, got = r.stdout.partition(b"\r\n\r\n")
            assert b"Transfer-Encoding: chunked" in head, head
            for n in (0, 1, 16384, 16385, 3 << 20):
                for extra in ("", "&chunked=1"):
                    r = curl("-s", proto, "-H", f"Host: {host}", "-D", "-", "-o", "/dev/null",
                             "-w", "%{size_download}", f"http://127.0.0.1:{a.port}/d?size={n}{extra}")
                    assert r.stdout.endswith(str(n).encode()), (host, proto, n, extra, r.stdout)
                    if extra and n and proto == "--http1.1":
                        assert b"Transfer-Encoding: chunked" in r.stdout, r.stdout  # no length
    # one multiplexed connection to each backend carried all of it
    # (the client side's: 13 curl runs with --http2-prior-knowledge per host)
    assert metric(a, "ringproxy_http2_connections_total") == 26
    conns = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{b.port} )"],
                           capture_output=True, text=True).stdout.strip().splitlines()
    assert len(conns) == 1, conns


def test_multiplexed_connection_and_a_second_past_the_stream_limit(P):
    o = P.origin("O", "--delay", "300")
    b = P.proxy(f'h2c = true;\nh2_max_concurrent_streams = 8;\n'
                f'routes = ( {{ path_prefix = "/"; backend = "http://127.0.0.1:{o.port}"; }} );\n')
    a = P.proxy(f'routes = ( {{ path_prefix = "/"; backend = "h2c://127.0.0.1:{b.port}"; }} );\n')
    procs = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                               f"http://127.0.0.1:{a.port}/m{i}"], stdout=subprocess.PIPE)
             for i in range(12)]
    time.sleep(0.15)
    conns = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{b.port} )"],
                           capture_output=True, text=True).stdout.strip().splitlines()
    codes = [p.communicate(timeout=10)[0] for p in procs]
    assert codes == [b"200"] * 12, codes
    assert len(conns) == 2, conns  # 8 streams on the first, the other 4 on a second


def test_health_checks_on_h2_backends(P):
    b = hop(P)
    dead = free_port()
    a = front(P, b, domain_extra='health_check = { path = "/health"; interval = "200ms"; '
                                 'fail_threshold = 1; success_threshold = 1; };')
    a2 = P.proxy(f'domains = ( {{ domain = "c.local"; backends = ( {{ addr = "h2c://127.0.0.1:{dead}"; }},'
                 f' {{ addr = "h2c://127.0.0.1:{b.port}"; }} );'
                 ' health_check = { interval = "200ms"; fail_threshold = 1; }; } );\n')  # TCP
    time.sleep(1.0)
    up = metric(a, "ringproxy_backend_up", domain="c.local", backend=f"h2c://127.0.0.1:{b.port}")
    assert up == 1, up
    for _ in range(6):  # the dead one is out: every request goes to the live one
        r = curl("-s", "-w", "\n%{http_code}", "-H", "Host: c.local", f"http://127.0.0.1:{a2.port}/")
        assert r.stdout.endswith(b"\n200"), r
    # the hop's origin saw the HTTP checks through it
    P.stop(b.origin)
    time.sleep(1.0)
    up = metric(a, "ringproxy_backend_up", domain="c.local", backend=f"h2c://127.0.0.1:{b.port}")
    assert up == 0, up  # its /health answers 502 now


def test_backend_reload_goaway_loses_no_request(P):
    b = hop(P)
    a = P.proxy(f'routes = ( {{ path_prefix = "/"; backend = "h2c://127.0.0.1:{b.port}"; }} );\n')
    with Load(a.port, f"127.0.0.1:{a.port}", keep=True) as load:
        assert load.at_least(200)
        for _ in range(5):  # each reload: GOAWAY to the front's connection, a new one after
            b.send_signal(signal.SIGHUP)
            time.sleep(0.3)
        assert load.at_least(load.count + 200)  # (the thread stops at a failed connection)
    assert load.failures == [], load.failures[:10]
    assert load.count >= 400
