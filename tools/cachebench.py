#!/usr/bin/env python3
"""Cache-hit latency while the compression threads are busy.

Starts an origin (in this process) and ringproxy with the cache on (pre_compress, one worker,
one compression thread), warms one small cached URL, then alternates two kinds of round:
  idle  ringload on the cached URL;
  busy  the same, right after N new 1 MiB text entries were stored, so the compression
        thread gzips them (at --level) while the hits are measured.
Reports the median requests/s, p50 and p99 of each kind and the ratio busy/idle, plus how
long the compression of one batch took (from the cache's stats). Uses 127.0.0.1:18700-18702.

  tools/cachebench.py [--build DIR] [--rounds R] [--seconds S] [--entries N] [--level L]
"""
import argparse
import http.server
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import wait_port  # noqa: E402

PROXY, ORIGIN, ADMIN = 18700, 18701, 18702
BIG = b"".join(b"%08d the quick brown fox jumps over the lazy dog, again and again\n" % i
               for i in range(15000))[:1 << 20]


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        body = BIG if self.path.startswith("/big/") else b"cached hit\n"
        self.send_response(200)
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def get(path, port=PROXY, host="bench.local"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def gzipped(path):
    # HEAD: the answer says which copy would be sent without sending 1 MiB through the worker
    req = urllib.request.Request(f"http://127.0.0.1:{PROXY}{path}", method="HEAD",
                                 headers={"Host": "bench.local", "Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()
        return r.headers.get("Content-Encoding") == "gzip"


def load(args):
    r = subprocess.run([os.path.join(args.build, "ringload"), "-t1", "-c32", "-d", f"{args.seconds}s",
                        "--json", "-H", "Host: bench.local", f"http://127.0.0.1:{PROXY}/hit"],
                       capture_output=True, text=True)
    j = json.loads(r.stdout)
    return j["rps"], j["latency_us"]["p50"], j["latency_us"]["p99"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--entries", type=int, default=48)
    ap.add_argument("--level", type=int, default=6)
    args = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", ORIGIN), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    tmp = tempfile.mkdtemp(prefix="rp-cachebench-")
    conf = os.path.join(tmp, "c.conf")
    with open(conf, "w") as f:
        f.write(f'listen = "127.0.0.1:{PROXY}";\nworkers = 1;\n'
                f'domains = ( {{ domain = "bench.local"; backends = ( {{ addr = "http://127.0.0.1:{ORIGIN}"; }} ); }} );\n'
                f'cache = {{ pre_compress = true; compress_level = {args.level}; compress_threads = 1; '
                f'max_total_bytes = "1GiB"; max_entry_size = "2MiB"; max_entries = 100000; }};\n'
                f'admin = {{ listen = "127.0.0.1:{ADMIN}"; }};\n')
    p = subprocess.Popen([os.path.join(args.build, "ringproxy"), "-c", conf],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    res = {"idle": [], "busy": []}
    batch_s = []
    n = 0
    try:
        if not wait_port(PROXY):
            raise RuntimeError("ringproxy did not start")
        get("/hit")
        for i in range(args.rounds):
            # each round starts from an empty cache, so no batch is cut short by the budget
            req = urllib.request.Request(f"http://127.0.0.1:{ADMIN}/cache", method="DELETE")
            urllib.request.urlopen(req, timeout=10).read()
            get("/hit")
            res["idle"].append(load(args))
            t0 = time.time()
            for _ in range(args.entries):  # stored at once, gzipped in the background
                get(f"/big/{n}")
                n += 1
            fill_s = time.time() - t0
            # the queue is worked in order: the batch is done when its last entry has a gzip
            # copy; a poller notes when, while the hits are measured
            done = {}

            def poll(last=f"/big/{n - 1}", t1=time.time()):
                while not gzipped(last) and time.time() - t1 < 120:
                    time.sleep(0.05)
                done["s"] = time.time() - t1

            th = threading.Thread(target=poll)
            th.start()
            t1 = time.time()
            res["busy"].append(load(args))
            load_s = time.time() - t1
            th.join()
            batch_s.append(done["s"])
            if done["s"] < load_s:
                print(f"  note: compression ended {load_s - done['s']:.2f}s before the load did "
                      "(raise --entries or --level)", flush=True)
            print(f"round {i + 1}: idle {res['idle'][-1]}, busy {res['busy'][-1]} "
                  f"(batch stored in {fill_s:.2f}s, compressed in {batch_s[-1]:.2f}s after that)", flush=True)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
        srv.shutdown()
    med = {k: [statistics.median(x[j] for x in v) for j in range(3)] for k, v in res.items()}
    for k in ("idle", "busy"):
        print(f"{k}: median {med[k][0]:.0f} req/s, p50 {med[k][1]:.0f} us, p99 {med[k][2]:.0f} us")
    print(f"busy/idle: req/s {med['busy'][0] / med['idle'][0]:.3f}, p99 {med['busy'][2] / med['idle'][2]:.3f}; "
          f"{args.entries} x 1 MiB at level {args.level}: compression ran {statistics.median(batch_s):.2f}s "
          f"after the store (median), against {args.seconds}s of measured hits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
