#!/usr/bin/env python3
"""What a slow client costs (issue 12 point 4): 20 clients each trickle a 12 KiB request head
one byte per write (TCP_NODELAY, 1 ms apart, so that each byte is a segment of its own
rather than coalescing while the proxy is busy) into the proxy, which must parse it as it
comes. For
ringproxy and nginx (if installed), both one worker in front of one ringorigin: the proxy's
CPU time per connection, and the CPU of the last quarter of the bytes against the first
(1.0: parsing is linear in the head's length; a parser that starts over on every segment
grows with it).

  tools/tricklebench.py [--build DIR] [--clients 20] [--head 12288] [--rounds 3] [--gap-ms 1]

Uses ports 18640-18649 on 127.0.0.1 and a temporary folder; stops what it started.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchutil import process_cpu as cpu_seconds, wait_port

BACKEND, RINGPROXY, NGINX = 18641, 18642, 18643


def head_of(size):
    head = b"GET / HTTP/1.1\r\nHost: bench.local\r\n"
    i = 0
    while len(head) < size - 40:
        head += b"X-Pad-%04d: %s\r\n" % (i, b"v" * 400)  # 30 fields: under the 100-field limit
        i += 1
    return head + b"\r\n"


def run(port, pid, clients, head, gap):
    """Trickles `head` over `clients` connections; returns CPU seconds per quarter."""
    total = clients * len(head)
    sent = [0]
    lock = threading.Lock()
    marks = [total * q // 4 for q in (1, 2, 3)]
    cpu = [cpu_seconds(pid)]
    errors = []

    def one():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(head)):
                s.send(head[i:i + 1])
                time.sleep(gap)  # so each byte arrives as a segment of its own
                with lock:
                    sent[0] += 1
                    if marks and sent[0] >= marks[0]:
                        marks.pop(0)
                        cpu.append(cpu_seconds(pid))
            data = s.recv(4096)
            if not data.startswith(b"HTTP/1.1 200"):
                errors.append(data[:80])
            s.close()
        except OSError as e:
            errors.append(repr(e))
    ts = [threading.Thread(target=one) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    cpu.append(cpu_seconds(pid))
    if errors:
        sys.exit(f"tricklebench: {len(errors)} clients failed: {errors[:3]}")
    return [b - a for a, b in zip(cpu, cpu[1:])]


def nginx_conf(tmp):
    d = os.path.join(tmp, "nginx")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};
  fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  large_client_header_buffers 4 16k; client_header_timeout 60s;
  upstream b {{ server 127.0.0.1:{BACKEND}; keepalive 32; }}
  server {{ listen 127.0.0.1:{NGINX}; location / {{ proxy_pass http://b;
    proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
}}
""")
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--head", type=int, default=12288)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gap-ms", type=float, default=1.0, help="pause between writes")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rp-trickle-")
    log = open(os.path.join(tmp, "log"), "a")
    conf = os.path.join(tmp, "ringproxy.conf")
    with open(conf, "w") as f:
        f.write(f'listen = "127.0.0.1:{RINGPROXY}";\nworkers = 1;\nheader_timeout = "60s";\n'
                f'domains = ( {{ domain = "bench.local"; backends = ( {{ addr = '
                f'"http://127.0.0.1:{BACKEND}"; }} ); }} );\n')
    procs = []
    try:
        procs.append(subprocess.Popen([f"{args.build}/ringorigin", "-l", f"127.0.0.1:{BACKEND}",
                                       "-q"], stdout=log, stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen([f"{args.build}/ringproxy", "-c", conf], stdout=log,
                                      stderr=subprocess.STDOUT))
        cands = {"ringproxy": (RINGPROXY, procs[-1].pid)}
        if shutil.which("nginx"):
            procs.append(subprocess.Popen(["nginx", "-c", nginx_conf(tmp)], stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
            wait_port(NGINX, 5)
            worker = subprocess.run(["pgrep", "-P", str(procs[-1].pid)], capture_output=True,
                                    text=True).stdout.split()
            cands["nginx"] = (NGINX, int(worker[0]))
        for p in (BACKEND, RINGPROXY):
            if not wait_port(p, 5):
                sys.exit(f"tricklebench: nothing listens on {p}; see {tmp}/log")
        head = head_of(args.head)
        results = {name: [] for name in cands}
        for _ in range(args.rounds):  # interleaved rounds, medians reported
            for name, (port, pid) in cands.items():
                results[name].append(run(port, pid, args.clients, head, args.gap_ms / 1000))
        print(f"{args.clients} clients, a {len(head)}-byte head one byte per write "
              f"{args.gap_ms:g} ms apart, {args.rounds} rounds (median)")
        print(f"{'proxy':<11}{'CPU ms/conn':>12}{'last/first quarter':>20}")
        for name, rs in results.items():
            per_conn = statistics.median(sum(q) for q in rs) * 1000 / args.clients
            growth = statistics.median(q[3] / q[0] if q[0] else float("nan") for q in rs)
            print(f"{name:<11}{per_conn:>12.1f}{growth:>20.2f}")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM) if p.args[0] == "nginx" else p.terminate()
            except ProcessLookupError:
                pass
        for p in procs:
            p.wait(timeout=10)


if __name__ == "__main__":
    main()
