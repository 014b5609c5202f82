#!/bin/sh
# make demo: two ringorigin backends and ringproxy with tools/demo.conf; sends requests
# through the proxy, shows which backend answered each and what it cost, then stops
# everything it started.
set -eu
B=${1:-build}
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

wait_port() {
    i=0
    while ! curl -s -o /dev/null "http://127.0.0.1:$1/health" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 100 ] && { echo "nothing listens on $1" >&2; exit 1; }
        sleep 0.05
    done
}

"$B/ringorigin" -l 127.0.0.1:18101 -n alpha -q & PIDS="$PIDS $!"
"$B/ringorigin" -l 127.0.0.1:18102 -n beta -q & PIDS="$PIDS $!"
wait_port 18101; wait_port 18102
"$B/ringproxy" -c tools/demo.conf & RP=$!; PIDS="$PIDS $RP"
wait_port 18100

# CPU time (user+system, all threads) ringproxy has used so far, in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$RP/stat"; }

P=http://127.0.0.1:18100
echo
echo "== round robin over two backends (Host: demo.local), one keep-alive connection"
curl -s -H 'Host: demo.local' -w '   -> status %{http_code}, backend %header{x-origin}, %{time_total}s\n' \
    "$P/" "$P/" "$P/" "$P/"
echo
echo "== a path route (/api/ -> beta, with Host rewritten): what the backend received"
curl -s "$P/api/users?echo=1" | sed 's/^/   /'
echo
echo "== no domain and no route: 404 from the proxy itself"
curl -s -o /dev/null -w '   -> status %{http_code}\n' -H 'Host: nowhere.local' "$P/"
echo
echo "== a malformed request (Content-Length and Transfer-Encoding): 400, never forwarded"
printf 'POST / HTTP/1.1\r\nHost: demo.local\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n' |
    curl -s --max-time 2 telnet://127.0.0.1:18100 | head -1 | sed 's/^/   /'
echo
N=2000
echo "== $N requests over one keep-alive connection: what they cost"
args=""; i=0; while [ $i -lt $N ]; do args="$args -o /dev/null $P/"; i=$((i + 1)); done
before=$(cpu_ticks)
# shellcheck disable=SC2086
curl -s -H 'Host: demo.local' -w '%{time_total}\n' $args |
    awk '{s += $1} END {printf "   %d requests, mean %.0f us each end to end (curl)\n", NR, s / NR * 1e6}'
after=$(cpu_ticks)
awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n=$N \
    'BEGIN {printf "   ringproxy CPU time: %.1f us per request (user+system, all threads)\n", t / hz / n * 1e6}'
for port in 18101 18102; do
    printf '   backend on %s: %s\n' "$port" "$(curl -s "http://127.0.0.1:$port/__stats")"
done
echo
echo "demo done: stopping ringproxy and the backends"
