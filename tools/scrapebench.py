#!/usr/bin/env python3
"""What a /metrics scrape costs the traffic beside it (issue 13): ringproxy with 100 domains
of 3 backends each, one worker, a fixed request rate on one domain (ringload -R, open loop,
so a stall shows in the tail from each request's intended send time), run in rounds that
alternate between no scraper and a scraper fetching /metrics every 100 ms. Prints each
round's p50/p99/p99.9, the medians, the ratio of the p99s, the scrape's size and time, and
the proxy's CPU per scrape.

  tools/scrapebench.py [--build DIR] [--rate 5000] [--conns 32] [--seconds 10] [--rounds 6]

Uses ports 18660-18665 on 127.0.0.1 and a temporary folder; stops what it started.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import socket
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import process_cpu, wait_port  # noqa: E402

PROXY, ADMIN, BACKENDS, CONTROL = 18660, 18665, (18661, 18662, 18663), 18664
SCRAPE = {"port": ADMIN, "path": "/metrics"}  # --control: a ringorigin's body of that size


def config(domains):
    be = ", ".join(f'{{ addr = "http://127.0.0.1:{p}"; }}' for p in BACKENDS)
    ds = ",\n  ".join(f'{{ domain = "d{i}.local"; backends = ( {be} ); max_idle_conns = 64; }}'
                      for i in range(domains))
    return (f'listen = "127.0.0.1:{PROXY}";\nworkers = 1;\n'
            f'admin = {{ listen = "127.0.0.1:{ADMIN}"; }};\ndomains = (\n  {ds}\n);\n')


def scrape_once(buf=bytearray(1 << 16)):
    """One GET /metrics, its bytes read and dropped: the scraper itself costs little CPU
    (a Python HTTP client parsing 800 KB would compete with the load on 2 cores, and a real
    Prometheus scrapes from another machine). Returns the bytes received."""
    n = 0
    with socket.create_connection(("127.0.0.1", SCRAPE["port"]), timeout=5) as s:
        s.sendall(f"GET {SCRAPE['path']} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n"
                  "\r\n".encode())
        while (k := s.recv_into(buf)):
            n += k
    return n


def scraper(stop, out):
    while not stop.is_set():
        t0 = time.perf_counter()
        n = scrape_once()
        out.append((time.perf_counter() - t0, n))
        stop.wait(0.1)


def run(args, scrape):
    stop, scrapes = threading.Event(), []
    t = threading.Thread(target=scraper, args=(stop, scrapes)) if scrape else None
    if t:
        t.start()
    try:
        r = subprocess.run([f"{args.build}/ringload", "-t1", "-c", str(args.conns), "-d",
                            f"{args.seconds}s", "-R", str(args.rate), "--json", "-H",
                            "Host: d0.local", f"http://127.0.0.1:{PROXY}/"],
                           capture_output=True, text=True)
    finally:
        stop.set()
        if t:
            t.join()
    res = json.loads(r.stdout)
    errs = sum(res["errors"].values()) + res["status"]["5xx"]
    return res["latency_us"], errs, scrapes


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--domains", type=int, default=100)
    ap.add_argument("--control", action="store_true",
                    help="scrape a ringorigin body as big as the exposition instead of the "
                         "proxy: what a transfer that size costs this machine by itself")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rp-scrape-")
    conf = os.path.join(tmp, "scrape.conf")
    with open(conf, "w") as f:
        f.write(config(args.domains))
    log = open(os.path.join(tmp, "procs.log"), "w")
    procs = [subprocess.Popen([f"{args.build}/ringorigin", "-l", f"127.0.0.1:{p}", "-q"],
                              stdout=log, stderr=subprocess.STDOUT) for p in BACKENDS]
    procs.append(subprocess.Popen([f"{args.build}/ringproxy", "-c", conf], stdout=log,
                                  stderr=subprocess.STDOUT))
    res = {False: [], True: []}
    bad = 0
    try:
        for p in (*BACKENDS, PROXY, ADMIN):
            if not wait_port(p):
                sys.exit(f"scrapebench: nothing listens on {p}; see {tmp}/procs.log")
        # the proxy's CPU per scrape, measured alone: 100 scrapes with no traffic
        cpu0 = process_cpu(procs[-1].pid)
        for _ in range(100):
            scrape_once()
        per_scrape = (process_cpu(procs[-1].pid) - cpu0) / 100
        print(f"proxy CPU per scrape, alone: {per_scrape * 1e3:.3f} ms", flush=True)
        if args.control:
            size = scrape_once()
            procs.append(subprocess.Popen([f"{args.build}/ringorigin", "-l",
                                           f"127.0.0.1:{CONTROL}", "-q", "-s", str(size)],
                                          stdout=log, stderr=subprocess.STDOUT))
            if not wait_port(CONTROL):
                sys.exit(f"scrapebench: the control origin did not start; see {tmp}/procs.log")
            SCRAPE.update(port=CONTROL, path="/")
            print(f"control: scraping a {size}-byte ringorigin body instead of /metrics",
                  flush=True)
        run(args, False)  # warm-up
        for i in range(args.rounds):
            for scrape in ((False, True) if i % 2 == 0 else (True, False)):
                lat, errs, scrapes = run(args, scrape)
                bad += errs
                res[scrape].append((lat, scrapes))
                extra = ""
                if scrape:
                    extra = (f", {len(scrapes)} scrapes of {scrapes[-1][1]} bytes, median "
                             f"{statistics.median(s[0] for s in scrapes) * 1e3:.2f} ms")
                print(f"round {i + 1} {'scrape' if scrape else 'quiet '}: p50 {lat['p50']} us, "
                      f"p99 {lat['p99']} us, p99.9 {lat['p999']} us, {errs} failed{extra}",
                      flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=10)
    med = {k: {q: statistics.median(x[0][q] for x in v) for q in ("p50", "p99", "p999")}
           for k, v in res.items()}
    for k in (False, True):
        print(f"{'scrape' if k else 'quiet '}: median p50 {med[k]['p50']:.0f} us, p99 "
              f"{med[k]['p99']:.0f} us, p99.9 {med[k]['p999']:.0f} us")
    print(f"p99 with scrapes / without: {med[True]['p99'] / med[False]['p99']:.3f}; "
          f"{bad} failed requests")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
