#!/bin/sh
# Runs libFuzzer targets one after another, SECONDS each: the body of `make fuzz` and
# `make fuzz-run` (CI runs it for ~20 s a target, a campaign for as long as it likes).
#
#   tools/fuzz-campaign.sh DIR SECONDS TARGET...
#
# DIR holds the built targets (the Makefile's $(BUILD)/fuzz). Each target reads
# tests/fuzz/corpus/TARGET (the seeds in the tree, never written) and DIR/corpus/TARGET,
# where the units it finds go, so a later run goes on from them. Crash, leak, timeout and
# out-of-memory inputs go to DIR/artifacts/TARGET/, its log to DIR/TARGET.log. Prints one
# line a target: executions, exec/s, cov (edges), ft (features), corpus, crashes. A target
# that fails has its input hexdumped and its log's end printed; the others still run, and
# the exit status is then 1 (a leak found at exit names no input: its artifact is empty).
# FUZZ_FLAGS adds libFuzzer options (e.g. -dict=..., -seed=1).
set -u
cd "$(dirname "$0")/.." || exit 1
[ $# -ge 3 ] || { echo "usage: $0 DIR SECONDS TARGET..." >&2; exit 2; }
dir=$1 secs=$2
shift 2
failed=""
printf '%-18s %12s %8s %6s %7s %12s %7s %6s\n' target execs exec/s cov ft corpus crashes secs
for t in "$@"; do
    log="$dir/$t.log" art="$dir/artifacts/$t" corpus="$dir/corpus/$t" seeds="tests/fuzz/corpus/$t"
    mkdir -p "$art" "$corpus" || exit 1
    [ -d "$seeds" ] || seeds=""
    touch "$log.start"
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$dir/$t" -max_total_time="$secs" -timeout=10 -print_final_stats=1 -artifact_prefix="$art/" \
        ${FUZZ_FLAGS:-} "$corpus" $seeds >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    # the last status line ("#N DONE cov: C ft: F corp: U/S ...") and the final stats
    status=$(grep -a '^#[0-9]' "$log" | tail -1)
    execs=$(awk '/^stat::number_of_executed_units/ { print $2; exit }' "$log")
    rate=$(awk '/^stat::average_exec_per_sec/ { print $2; exit }' "$log")
    [ -n "$execs" ] || execs=$(echo "$status" | sed -n 's/^#\([0-9]*\).*/\1/p')
    cov=$(echo "$status" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$status" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$status" | sed -n 's/.* corp: \([^ ]*\).*/\1/p')
    new=$(find "$art" -type f -newer "$log.start" | sort)
    rm -f "$log.start"
    printf '%-18s %12s %8s %6s %7s %12s %7s %6s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
        "${ft:-?}" "${corp:-?}" "$(echo "$new" | grep -c .)" "$took"
    [ "$rc" = 0 ] && [ -z "$new" ] && continue
    failed="$failed $t"
    echo "== $t FAILED (exit $rc); log: $log" >&2
    for f in $new; do
        echo "-- $f ($(wc -c <"$f") bytes; first 1 KiB):" >&2
        head -c 1024 "$f" | od -A x -t x1z -v >&2
    done
    # the sanitizer's report without its shadow-memory map, or else the log's end
    echo "-- $log:" >&2
    awk '/^==[0-9]+==|runtime error:|^ALARM|^MS: / { on = 1 }
        /^Shadow bytes around/ { skip = 1 } /^==[0-9]+==ABORTING/ { skip = 0 }
        on && !skip' "$log" | head -60 | grep . >&2 ||
        grep -av '^\(#[0-9]\|"\|###### \)' "$log" | tail -40 >&2
done
[ -z "$failed" ] || { echo "fuzzing failed:$failed" >&2; exit 1; }
