#!/usr/bin/env python3
"""What a hung or slow backend costs (issue 11): three ringorigin backends behind ringproxy
under a fixed request rate, while
  A is SIGSTOPped for 3 s (it accepts, never answers),
  B answers in 800 ms for 5 s (restarted with --delay 800, then without),
  C is killed and restarted every 4 s;
once with try_timeout off, then at 100 ms, then at 100 ms with hedge. Prints failed requests
and the latency distribution of each run (ringload -R, open loop, so a stall is counted
from each request's intended send time).

  tools/hungbench.py [--build DIR] [--rate 2000] [--conns 32] [--seconds 40]
                     [--modes off,100ms,hedge]

Uses ports 18600-18609 on 127.0.0.1 and a temporary folder; stops what it started.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from benchutil import wait_port

A, B, C, PROXY = 18601, 18602, 18603, 18609


class Origin:
    def __init__(self, build, port, name, log):
        self.build, self.port, self.name, self.log = build, port, name, log
        self.p = None

    def start(self, *extra):
        self.p = subprocess.Popen([f"{self.build}/ringorigin", "-l", f"127.0.0.1:{self.port}",
                                   "-n", self.name, "-q", *extra],
                                  stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, 3)

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGCONT)
            self.p.kill()
            self.p.wait()


def chaos(origins, seconds, stop):
    """The schedule, in seconds from the start of the load."""
    a, b, c = origins
    t0 = time.time()
    events = [(5, "stop A"), (8, "cont A"), (12, "slow B"), (17, "fast B")]
    events += [(t, "kill C") for t in range(2, seconds, 4)]
    events += [(t + 1, "start C") for t in range(2, seconds, 4)]
    for at, what in sorted(events):
        while time.time() - t0 < at:
            if stop.wait(0.02):
                return
        if what == "stop A":
            a.p.send_signal(signal.SIGSTOP)
        elif what == "cont A":
            a.p.send_signal(signal.SIGCONT)
        elif what == "slow B":
            b.stop()
            b.start("--delay", "800")
        elif what == "fast B":
            b.stop()
            b.start()
        elif what == "kill C":
            c.stop()
        elif what == "start C":
            c.start()


def run(args, mode, tmp, log):
    extra = ""
    if mode != "off":
        extra = f'try_timeout = "{mode if mode != "hedge" else "100ms"}";'
        if mode == "hedge":
            extra += " hedge = true;"
    conf = os.path.join(tmp, f"hung-{mode}.conf")
    with open(conf, "w") as f:
        f.write(f'listen = "127.0.0.1:{PROXY}";\nworkers = {args.workers};\n'
                'domains = ( { domain = "bench.local"; backends = ( '
                + ", ".join(f'{{ addr = "http://127.0.0.1:{p}"; }}' for p in (A, B, C))
                + f' ); max_retries = 2; {extra} }} );\n')
    origins = [Origin(args.build, p, n, log) for p, n in ((A, "A"), (B, "B"), (C, "C"))]
    for o in origins:
        o.start()
    px = subprocess.Popen([f"{args.build}/ringproxy", "-c", conf], stdout=log,
                          stderr=subprocess.STDOUT)
    try:
        if not wait_port(PROXY, 5):
            sys.exit("ringproxy did not start")
        stop = threading.Event()
        t = threading.Thread(target=chaos, args=(origins, args.seconds, stop), daemon=True)
        t.start()
        out = subprocess.run([f"{args.build}/ringload", "-R", str(args.rate), "-c",
                              str(args.conns), "-d", f"{args.seconds}s", "--timeout", "10s",
                              "-H", "Host: bench.local", "--json",
                              f"http://127.0.0.1:{PROXY}/"],
                             capture_output=True, text=True, timeout=args.seconds + 60)
        stop.set()
        t.join()
        return json.loads(out.stdout)
    finally:
        px.send_signal(signal.SIGTERM)
        px.wait(timeout=15)
        for o in origins:
            o.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--modes", default="off,100ms,hedge")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rp-hung-")
    log = open(os.path.join(tmp, "log"), "a")
    print(f"{args.rate} GET/s, {args.conns} connections, {args.seconds} s; "
          "A stopped 5-8 s, B at 800 ms 12-17 s, C killed every 4 s (log: "
          f"{tmp}/log)")
    print(f"{'try_timeout':<14}{'requests':>9}{'non-2xx':>9}{'5xx':>6}{'errors':>8}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}")
    for mode in args.modes.split(","):
        r = run(args, mode, tmp, log)
        lat = r["latency_us"]
        bad = sum(v for k, v in r["status"].items() if k != "2xx")
        errs = sum(r["errors"].values())
        print(f"{mode:<14}{r['requests']:>9}{bad:>9}{r['status']['5xx']:>6}{errs:>8}{lat['p50'] / 1000:>9.1f}"
              f"{lat['p99'] / 1000:>9.1f}{lat['p999'] / 1000:>10.1f}{lat['max'] / 1000:>9.1f}",
              flush=True)


if __name__ == "__main__":
    main()
