#!/usr/bin/env python3
"""What refusing a POST replay costs (issue 11): POSTs through ringproxy and through nginx to
one nginx backend that closes idle keep-alive connections after 1 s (keepalive_timeout 1s),
so a pooled connection can be closing just as a request is written to it. Two loads:
  steady  ringload -m POST --body FILE -R RATE -c 32 for S seconds;
  bursts  every ~1 s (the backend's idle timeout, jittered 0.9-1.1 s) 32 POSTs at once, so
          the pool is idle for about as long as the backend keeps connections: the worst
          case for the race.
For each proxy: requests, non-2xx answers (a 502 is a POST refused rather than replayed), and
the proxy's CPU time per request. Needs nginx (Debian nginx-light).

  tools/postbench.py [--build DIR] [--rate 2000] [--seconds 20] [--bursts 40]

Uses ports 18620-18629 on 127.0.0.1 and a temporary folder; stops what it started.
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from benchutil import process_cpu as cpu_seconds, wait_port

BACKEND, RINGPROXY, NGINX = 18621, 18622, 18623
BODY = b"amount=100&currency=EUR&to=DE89370400440532013000&memo=" + b"x" * 200


def nginx_conf(tmp, name, body):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};
  fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
{body}
}}
""")
    return os.path.join(d, "nginx.conf")


def post(port, results):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /pay HTTP/1.1\r\nHost: bench.local\r\nContent-Length: " +
                  str(len(BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + BODY)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        results.append(int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0)
    except OSError:
        results.append(0)


def bursts(port, n, size):
    results = []
    for _ in range(n):
        ts = [threading.Thread(target=post, args=(port, results)) for _ in range(size)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        time.sleep(random.uniform(0.9, 1.1))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--bursts", type=int, default=40)
    args = ap.parse_args()
    if not shutil.which("nginx"):
        sys.exit("postbench: needs nginx (apt-get install nginx-light)")
    tmp = tempfile.mkdtemp(prefix="rp-post-")
    log = open(os.path.join(tmp, "log"), "a")
    body_file = os.path.join(tmp, "body")
    with open(body_file, "wb") as f:
        f.write(BODY)
    procs = []
    try:
        be = nginx_conf(tmp, "backend", f"""  keepalive_timeout 1s;
  server {{ listen 127.0.0.1:{BACKEND}; location / {{ return 200 "ok\\n"; }} }}""")
        px = nginx_conf(tmp, "proxy", f"""  upstream b {{ server 127.0.0.1:{BACKEND}; keepalive 32; }}
  server {{ listen 127.0.0.1:{NGINX}; location / {{ proxy_pass http://b;
    proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
        conf = os.path.join(tmp, "ringproxy.conf")
        with open(conf, "w") as f:
            f.write(f'listen = "127.0.0.1:{RINGPROXY}";\nworkers = 1;\n'
                    f'domains = ( {{ domain = "bench.local"; backends = ( {{ addr = '
                    f'"http://127.0.0.1:{BACKEND}"; }} ); }} );\n')
        for argv in (["nginx", "-c", be], ["nginx", "-c", px],
                     [f"{args.build}/ringproxy", "-c", conf]):
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        for p in (BACKEND, NGINX, RINGPROXY):
            if not wait_port(p, 5):
                sys.exit(f"postbench: nothing listens on {p}; see {tmp}/log")
        # nginx's master forks the worker that does the work
        nginx_pid = int(subprocess.run(["pgrep", "-P", str(procs[1].pid)], capture_output=True,
                                       text=True).stdout.split()[0])
        pids = {"ringproxy": procs[2].pid, "nginx": nginx_pid}
        ports = {"ringproxy": RINGPROXY, "nginx": NGINX}
        print(f"POST through each proxy to an nginx backend with keepalive_timeout 1s "
              f"(log: {tmp}/log)")
        print(f"{'load':<34}{'proxy':<11}{'requests':>9}{'non-2xx':>9}{'share':>9}"
              f"{'CPU us/req':>12}")
        for name in ("ringproxy", "nginx"):
            c0 = cpu_seconds(pids[name])
            out = subprocess.run([f"{args.build}/ringload", "-m", "POST", "--body", body_file,
                                  "-R", str(args.rate), "-c", "32", "-d", f"{args.seconds}s",
                                  "-H", "Host: bench.local", "--json",
                                  f"http://127.0.0.1:{ports[name]}/pay"],
                                 capture_output=True, text=True, timeout=args.seconds + 60)
            cpu = cpu_seconds(pids[name]) - c0
            r = json.loads(out.stdout)
            bad = sum(v for k, v in r["status"].items() if k != "2xx") + sum(
                r["errors"].values())
            print(f"{f'steady {args.rate}/s, 32 conns':<34}{name:<11}{r['requests']:>9}"
                  f"{bad:>9}{bad / max(1, r['requests']):>9.2%}"
                  f"{cpu * 1e6 / max(1, r['requests']):>12.1f}", flush=True)
        for name in ("ringproxy", "nginx"):
            res = bursts(ports[name], args.bursts, 32)
            bad = sum(1 for s in res if not 200 <= s < 300)
            print(f"{f'{args.bursts} bursts of 32, ~1 s apart':<34}{name:<11}{len(res):>9}"
                  f"{bad:>9}{bad / max(1, len(res)):>9.2%}{'':>12}", flush=True)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
