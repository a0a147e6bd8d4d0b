#!/bin/bash
# Smoke test of the benchmark references (tools/bench/mxbench-echo, mxbench-null-policy) and of
# mxcache-bench's modes for them, so that tools/bench/compare.sh keeps working: each reference
# starts, answers a short bounded run of mxcache-bench with no error and no unexpected reply, and
# stops on SIGTERM with exit 0. Figures are printed, never asserted (the machine is shared).
#
# Usage: test_bench_refs.sh BENCH ECHO NULL_POLICY
# Every run is bounded (--duration, timeout); every process is stopped by its PID.
set -euo pipefail
. "$(dirname "$0")/../e2e/lib.sh" # e2e_free_port, e2e_stop_pid

[ $# -eq 3 ] || { echo "usage: $0 BENCH ECHO NULL_POLICY" >&2; exit 2; }
BENCH=$1 ECHO=$2 NULLP=$3
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mxbenchref.XXXXXX")
EPID= NPID= CHECKS=0
cleanup() {
    local rc=$?
    e2e_stop_pid "$EPID" || true
    e2e_stop_pid "$NPID" || true
    [ $rc -eq 0 ] || tail -n 20 "$TMP"/*.log >&2 2>/dev/null || true
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
fail() { echo "test_bench_refs: FAIL: $*" >&2; exit 1; }
ok() { CHECKS=$((CHECKS + 1)); echo "ok $CHECKS - $*"; }

# run NAME ARGS... - one bounded mxcache-bench run; its output in $TMP/NAME.out
run() {
    local name=$1; shift
    timeout 60 "$BENCH" --duration 1 --warmup 200ms "$@" >"$TMP/$name.out" 2>&1 ||
        fail "$name: mxcache-bench exited $?: $(tail -n 3 "$TMP/$name.out")"
    grep -Eq '^errors +0$' "$TMP/$name.out" && grep -Eq '^unexpected +0$' "$TMP/$name.out" ||
        fail "$name: errors or unexpected replies: $(cat "$TMP/$name.out")"
    RPS=$(awk '$1 == "requests/s" { print $2 }' "$TMP/$name.out")
    awk -v r="$RPS" 'BEGIN { exit !(r > 0) }' || fail "$name: no request answered"
}

"$ECHO" --listen "ipc://$TMP/echo.sock" >"$TMP/echo.log" 2>&1 &
EPID=$!
e2e_free_port PORT
"$NULLP" --listen "127.0.0.1:$PORT" >"$TMP/null.log" 2>&1 &
NPID=$!
for _ in $(seq 1 100); do
    grep -q '^listening' "$TMP/echo.log" && grep -q '^listening' "$TMP/null.log" && break
    kill -0 "$EPID" && kill -0 "$NPID" || fail "a reference exited at start"
    sleep 0.1
done

run echo-8x16 --echo --workload check-hit --server "ipc://$TMP/echo.sock" --sockets 8 --inflight 16
ok "mxbench-echo answers mxcache-bench --echo, 8 x 16 ($RPS requests/s)"
run echo-64x1 --echo --workload check-hit --server "ipc://$TMP/echo.sock" --sockets 64 --inflight 1
ok "mxbench-echo, 64 x 1 ($RPS requests/s)"
run null-64 --protocol policy --server "127.0.0.1:$PORT" --sockets 64
grep -Eq 'accepted [0-9]+ \(100\.0%\)' "$TMP/null-64.out" || fail "null policy: not every answer DUNNO: $(cat "$TMP/null-64.out")"
ok "mxbench-null-policy answers DUNNO to every request, 64 connections ($RPS requests/s)"

rc=0
"$BENCH" --echo --protocol policy --server "127.0.0.1:$PORT" >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "--echo with --protocol policy: exit $rc, expected 2"
ok "mxcache-bench refuses --echo with --protocol policy"

e2e_stop_pid "$EPID" || fail "mxbench-echo did not exit 0 on SIGTERM"
EPID=
e2e_stop_pid "$NPID" || fail "mxbench-null-policy did not exit 0 on SIGTERM"
NPID=
ok "both references stop on SIGTERM with exit 0"
echo "test_bench_refs: all $CHECKS checks passed"
