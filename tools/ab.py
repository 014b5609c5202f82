#!/usr/bin/env python3
"""A/B: two proxy commands under the same load, alternated, to measure what a change costs.

Starts one ringorigin backend (127.0.0.1:18601), then for each round starts command A, drives
it with ringload, stops it, then the same for B (every other round B first). Reports, per command, the median requests/s
and the median CPU time the proxy process spent per request (user + system, from
/proc/PID/stat, over the load only), and the ratios B/A. Alternating rounds spreads the
machine's drift over both. The commands get PORT and BACKEND substituted, e.g.

  tools/ab.py --a "build/ringproxy -c CONF" --b "build/ringfront --noop -c CONF"

where CONF (written by this script) proxies Host bench.local on 127.0.0.1:PORT to BACKEND
with one worker (--cache: with the response cache on). The scenarios of peers.py, e.g.:
  small     (defaults)                       big   --path "/?size=65536" --connections 32
  newconn   --header "Connection: close" --connections 32
  cachehit  --cache --path "/c?header=Cache-Control:max-age%3D3600"
Exit status 0, or 1 when a run had errors.
"""
import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import wait_port  # noqa: E402

PORT, BACKEND = 18600, 18601
CONF = """listen = "127.0.0.1:{port}";
workers = 1;
domains = ( {{ domain = "bench.local"; backends = ( {{ addr = "http://127.0.0.1:{backend}"; }} );
               max_idle_conns = 64; }} );
"""
CACHE_CONF = 'cache = { default_max_age = "5m"; max_total_bytes = "256MiB"; };\n'


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def run(cmd, args, conf):
    argv = [a.replace("CONF", conf).replace("PORT", str(PORT)).replace("BACKEND", str(BACKEND))
            for a in shlex.split(cmd)]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port(PORT):
            raise RuntimeError(f"{cmd} did not listen on {PORT}")
        # warm-up: connections, pools, caches
        headers = [a for h in ["Host: bench.local", *args.header] for a in ("-H", h)]
        url = f"http://127.0.0.1:{PORT}{args.path}"
        subprocess.run([args.ringload, "-t1", "-c", str(args.connections), "-d", "1s", "--json",
                        *headers, url], capture_output=True)
        t0 = cpu_ticks(p.pid)
        r = subprocess.run([args.ringload, "-t1", "-c", str(args.connections), "-d",
                            f"{args.seconds}s", "--json", *headers, url],
                           capture_output=True, text=True)
        ticks = cpu_ticks(p.pid) - t0
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    res = json.loads(r.stdout)
    n = res["requests"]
    return {"rps": res["rps"], "cpu_us": ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(n, 1),
            "errors": sum(res["errors"].values())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--path", default="/")
    ap.add_argument("--header", action="append", default=[], help="a request field (repeatable)")
    ap.add_argument("--cache", action="store_true", help="the proxies run with the cache on")
    args = ap.parse_args()
    args.ringload = os.path.join(args.build, "ringload")
    tmp = tempfile.mkdtemp(prefix="rp-ab-")
    conf = os.path.join(tmp, "ab.conf")
    with open(conf, "w") as f:
        f.write(CONF.format(port=PORT, backend=BACKEND) + (CACHE_CONF if args.cache else ""))
    origin = subprocess.Popen([os.path.join(args.build, "ringorigin"), "-l", f"127.0.0.1:{BACKEND}",
                               "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {"A": [], "B": []}
    bad = False
    try:
        if not wait_port(BACKEND):
            raise RuntimeError("ringorigin did not start")
        for i in range(args.rounds):
            # A B, then B A: whichever goes second in a round was measured to run about 4%
            # slower on the 64 KiB path, so neither may always be second
            order = (("A", args.a), ("B", args.b))
            for key, cmd in order if i % 2 == 0 else order[::-1]:
                r = run(cmd, args, conf)
                bad |= bool(r["errors"])
                results[key].append(r)
                print(f"round {i + 1} {key}: {r['rps']:.0f} req/s, {r['cpu_us']:.2f} us CPU/req",
                      flush=True)
    finally:
        origin.terminate()
        origin.wait()
    med = {k: (statistics.median(x["rps"] for x in v), statistics.median(x["cpu_us"] for x in v))
           for k, v in results.items()}
    for k, cmd in (("A", args.a), ("B", args.b)):
        print(f"{k}: median {med[k][0]:.0f} req/s, {med[k][1]:.2f} us CPU/req  ({cmd})")
    print(f"B/A: req/s {med['B'][0] / med['A'][0]:.3f}, CPU per request {med['B'][1] / med['A'][1]:.3f}")
    # the same, paired: each round's B over that round's A (both saw the same machine), median
    rr = [b["rps"] / a["rps"] for a, b in zip(results["A"], results["B"])]
    rc = [b["cpu_us"] / a["cpu_us"] for a, b in zip(results["A"], results["B"])]
    print(f"B/A paired by round: req/s {statistics.median(rr):.3f} "
          f"(range {min(rr):.3f}-{max(rr):.3f}), CPU per request {statistics.median(rc):.3f} "
          f"(range {min(rc):.3f}-{max(rc):.3f})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
