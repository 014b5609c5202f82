#!/usr/bin/env python3
"""Memory per idle HTTP/2 connection: ringproxy beside nginx and HAProxy, h2c (HTTP/2 in the
clear, prior knowledge) and h2 over TLS, one worker each.

  tools/h2idle.py [--ringproxy build/ringproxy] [--conns 2000] [--rounds 3] [--tls]

Each candidate is started alone; N clients connect, send the client preface and SETTINGS,
read the server's SETTINGS and acknowledge them, then stay idle. The figure is the growth of
the proxy's resident memory (all its processes, from /proc) divided by N, the median of the
rounds. Loopback only; nothing is written outside a temporary folder. Prints one line per
candidate and `RESULT h2idle <name> bytes_per_conn=<n>` lines.
"""
import argparse
import os
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def tree(pid):
    """pid and its children (nginx's workers)."""
    out = [pid]
    r = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    out += [int(x) for x in r.stdout.split()]
    return out


def open_idle(port, n, tls):
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="localhost")
            if s.selected_alpn_protocol() != "h2":
                raise RuntimeError("no ALPN h2")
        s.sendall(PREFACE + SETTINGS)
        socks.append(s)
    for s in socks:  # the server's SETTINGS, then ours acknowledged
        s.settimeout(5)
        s.recv(4096)
        s.sendall(SETTINGS_ACK)
    return socks


def configs(d, port, backend, tls, cert, key):
    rp = (f'listen{"_tls" if tls else ""} = "127.0.0.1:{port}";\nworkers = 1;\n'
          + ("" if tls else "h2c = true;\n")
          + (f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n' if tls else "")
          + f'routes = ( {{ path_prefix = "/"; backend = "http://127.0.0.1:{backend}"; }} );\n')
    ng = (f"worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/nginx.err;\n"
          f"events {{ worker_connections 8000; }}\nhttp {{ access_log off;\n"
          f"client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n"
          f"uwsgi_temp_path {d}; scgi_temp_path {d};\n"
          f"server {{ listen 127.0.0.1:{port} {'ssl ' if tls else ''}http2;\n"
          + (f"ssl_certificate {cert}; ssl_certificate_key {key};\n" if tls else "")
          + f"location / {{ proxy_pass http://127.0.0.1:{backend}; }} }} }}\n")
    ha = (f"global\n nbthread 1\n maxconn 8000\ndefaults\n mode http\n timeout connect 5s\n"
          f" timeout client 300s\n timeout server 30s\n timeout http-keep-alive 300s\n"
          f"frontend f\n bind 127.0.0.1:{port} "
          + (f"ssl crt {d}/ha.pem alpn h2\n" if tls else "proto h2\n")
          + f" default_backend b\nbackend b\n server s1 127.0.0.1:{backend}\n")
    return rp, ng, ha


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ringproxy", default="build/ringproxy")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tls", action="store_true")
    a = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    a.conns = min(a.conns, hard // 2 - 64)
    d = tempfile.mkdtemp(prefix="h2idle-")
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days",
                    "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    with open(os.path.join(d, "ha.pem"), "w") as f:
        f.write(open(cert).read() + open(key).read())
    backend = free_port()  # nothing needs to answer: the connections stay idle
    results = {}
    for r in range(a.rounds):
        for name in ("ringproxy", "nginx", "haproxy"):
            port = free_port()
            rp, ng, ha = configs(d, port, backend, a.tls, cert, key)
            path = os.path.join(d, f"{name}.conf")
            with open(path, "w") as f:
                f.write({"ringproxy": rp, "nginx": ng, "haproxy": ha}[name])
            argv = {"ringproxy": [a.ringproxy, "-c", path],
                    "nginx": ["nginx", "-c", path, "-p", d],
                    "haproxy": ["haproxy", "-f", path, "-db"]}[name]
            if not shutil.which(argv[0]):
                continue
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                if not wait_port(port):
                    print(f"{name}: did not start", file=sys.stderr)
                    continue
                time.sleep(0.3)
                pids = tree(p.pid)
                base = rss_kib(pids)
                socks = open_idle(port, a.conns, a.tls)
                time.sleep(0.5)
                grown = rss_kib(tree(p.pid)) - base
                results.setdefault(name, []).append(grown * 1024 / a.conns)
                for s in socks:
                    s.close()
            finally:
                p.terminate()
                p.wait(timeout=10)
    kind = "h2 over TLS" if a.tls else "h2c"
    for name, v in results.items():
        med = statistics.median(v)
        print(f"{name:10s} {kind}: {med:8.0f} bytes per idle connection "
              f"(rounds: {', '.join(f'{x:.0f}' for x in v)})")
        print(f"RESULT h2idle{'_tls' if a.tls else ''} {name} bytes_per_conn={med:.0f}")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
