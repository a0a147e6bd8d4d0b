#!/usr/bin/env bash
# compare.sh - mxcache beside postgrey on this machine: the same tool (mxcache-bench), the same
# greylisting load, the same run.
#
# Usage: tools/bench/compare.sh [--duration S] [--keys K] [--new-ratio R] [--delay S]
#                               [--conns "64 8"] [--build DIR]
#
# What it does, all on loopback, every process started here stopped by its PID at the end:
#   1. installs postgrey (Debian package) if it is missing, with /usr/sbin/policy-rc.d answering
#      101 during the installation so that the package does not start the system's instance;
#      builds mxcached, mxcache-policy and mxcache-bench (RelWithDebInfo) in DIR (default build/,
#      or $MXCACHE_BUILD); when that fails, `tools/dev build` installs the build dependencies and
#      builds.
#   2. starts, in a temporary directory: postgrey with its defaults on a free port with its own
#      --dbdir; mxcached (ipc socket, its own store, defaults otherwise); mxcache-policy on a free
#      port, asking that mxcached.
#   3. warms the pool: asks each of the K pool triplets once on both sides (postgrey over the
#      policy protocol, mxcached over ZeroMQ; mxcache-policy shares mxcached's store), waits for
#      the greylisting delay, and asks each once more, so that both sides have let every pool
#      triplet pass; it checks that both answered all K with a pass.
#   4. measures, for each connection count C, three targets, one after the other: postgrey and
#      mxcache-policy (+ mxcached) over the Postfix policy protocol, and mxcached directly over
#      ZeroMQ with protobuf. C connections, one request in flight on each (as Postfix smtpd does),
#      1 s warmup and S seconds measured (default 10). A fraction R (default 0.5) of the requests
#      carry a never-seen triplet, which both sides defer; the rest repeat pool triplets, which
#      both sides accept.
#   5. prints one table: target, connections, requests/s, p50/p99/p99.9 latency, share of
#      accepted answers, throughput relative to postgrey.
#
# Fairness: both greylisters run with their defaults, including the delay of 300 s, durable
# writes (postgrey: Berkeley DB transactions with a synchronous log; mxcached: store.sync =
# true, fsync before the answer) and auto-whitelisting after 5 passes, counted at most once per
# client and hour; both key clients by /24.
# The warm-up therefore waits 300 s between its two passes. --delay S sets the same shorter
# delay on both sides (postgrey --delay, mxcached greylist.delay): it changes no work per
# request, only how long the warm-up waits, so figures taken with it compare as well; the
# README's table says which was used.
#
# Every bench run is bounded in time (--duration, plus `timeout`) and count (--requests).
# Exit status: 0 done; 1 a step failed (its reason on stderr); 2 usage error.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${MXCACHE_BUILD:-$ROOT/build}
DURATION=10
KEYS=10000
RATIO=0.5
DELAY=300
CONNS="64 8"
MAX_REQUESTS=50000000   # per run; far above what one run can reach here

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --duration) DURATION=${2:?}; shift 2 ;;
    --keys) KEYS=${2:?}; shift 2 ;;
    --new-ratio) RATIO=${2:?}; shift 2 ;;
    --delay) DELAY=${2:?}; shift 2 ;;
    --conns) CONNS=${2:?}; shift 2 ;;
    --build) BUILD=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "compare: unknown argument '$1'" >&2; usage ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 && $DURATION -le 120 ]] || { echo "compare: --duration: 1 to 120 seconds" >&2; exit 2; }
[[ $KEYS =~ ^[0-9]+$ && $KEYS -ge 1 && $KEYS -le 1000000 ]] || { echo "compare: --keys: 1 to 1000000" >&2; exit 2; }
[[ $DELAY =~ ^[0-9]+$ && $DELAY -ge 1 && $DELAY -le 3600 ]] || { echo "compare: --delay: 1 to 3600 seconds" >&2; exit 2; }
[[ $RATIO =~ ^(0(\.[0-9]+)?|1(\.0*)?)$ ]] || { echo "compare: --new-ratio: a number from 0 to 1" >&2; exit 2; }
for c in $CONNS; do
    [[ $c =~ ^[0-9]+$ && $c -ge 1 && $c -le 1024 ]] || { echo "compare: --conns: numbers from 1 to 1024" >&2; exit 2; }
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
TMP=""
GUARD=0
PIDS=()     # started here, stopped in reverse order
NAMES=()

BENCH_PROG=compare
# shellcheck source=tools/bench/lib.sh
. "$(dirname "$0")/lib.sh"

cleanup() {
    stop_started
    [ "$GUARD" -eq 0 ] || $SUDO rm -f /usr/sbin/policy-rc.d
    [ -z "$TMP" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---- 1. packages and build ----

command -v postgrey >/dev/null 2>&1 || install_guarded postgrey
command -v ss >/dev/null || { log "ss (iproute2) is missing"; exit 1; }

log "building in $BUILD (RelWithDebInfo)"
if ! { command -v cmake >/dev/null &&
       cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
       cmake --build "$BUILD" -j "$(nproc)" --target mxcached mxcache-policy mxcache-bench >/dev/null; }; then
    # Most likely the build tools or libraries are missing: tools/dev installs them and builds.
    log "build failed; installing the build dependencies with tools/dev build"
    MXCACHE_BUILD=$BUILD "$ROOT/tools/dev" build
fi
BENCH=$BUILD/tools/bench/mxcache-bench
MXCACHED=$BUILD/server/mxcached
POLICY=$BUILD/client/mxcache-policy

# ---- 2. the servers ----

TMP=$(mktemp -d /tmp/mxcache-compare.XXXXXX)
chmod 755 "$TMP"

PG_PORT=$(free_port)
MP_PORT=$(free_port)
PGDIR=$TMP/postgrey
mkdir -p "$PGDIR"
chown postgrey:postgrey "$PGDIR" 2>/dev/null || $SUDO chown postgrey:postgrey "$PGDIR"
PG_ARGS=(--inet="127.0.0.1:$PG_PORT" --dbdir="$PGDIR")
[ "$DELAY" -eq 300 ] || PG_ARGS+=(--delay="$DELAY")
# postgrey stays in the foreground (no --daemonize), so $! is its PID; started as root it runs as
# user postgrey, as the Debian package runs it.
$SUDO postgrey "${PG_ARGS[@]}" >"$TMP/postgrey.log" 2>&1 &
PIDS+=($!); NAMES+=(postgrey)
PG_PID=$!

cat >"$TMP/mxcached.conf" <<EOF
# compare.sh: the defaults but for where it listens (no metrics endpoint), stores and logs$([ "$DELAY" -eq 300 ] || echo ", and the delay")
server = { listen = [ "ipc://$TMP/mxcached.sock" ]; };
store = { path = "$TMP/mxcached-db"; };
log = { level = "notice"; target = "stderr"; };
metrics = { listen = ""; };
greylist = { delay = "${DELAY}s"; };
EOF
(cd "$TMP" && exec "$MXCACHED" --config "$TMP/mxcached.conf" --foreground --allow-root) >"$TMP/mxcached.log" 2>&1 &
PIDS+=($!); NAMES+=(mxcached)
MX_PID=$!

cat >"$TMP/mxcache-policy.conf" <<EOF
server = { listen = [ "inet:127.0.0.1:$MP_PORT" ]; };
service = { endpoints = [ "ipc://$TMP/mxcached.sock" ]; };
log = { level = "notice"; target = "stderr"; };
metrics = { listen = ""; };
EOF
(cd "$TMP" && exec "$POLICY" --config "$TMP/mxcache-policy.conf" --foreground --allow-root) >"$TMP/mxcache-policy.log" 2>&1 &
PIDS+=($!); NAMES+=(mxcache-policy)
MP_PID=$!

wait_tcp postgrey "$PG_PID" "$PG_PORT"
wait_tcp mxcache-policy "$MP_PID" "$MP_PORT"
for _ in $(seq 1 150); do
    [ -S "$TMP/mxcached.sock" ] && break
    kill -0 "$MX_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$MX_PID" 2>/dev/null && [ -S "$TMP/mxcached.sock" ] || { log "mxcached did not start; its log:"; tail -20 "$TMP/mxcached.log" >&2; exit 1; }
log "postgrey pid $PG_PID on 127.0.0.1:$PG_PORT, mxcached pid $MX_PID on ipc://$TMP/mxcached.sock," \
    "mxcache-policy pid $MP_PID on 127.0.0.1:$MP_PORT"

PG_EP=127.0.0.1:$PG_PORT
MP_EP=127.0.0.1:$MP_PORT
MX_EP=ipc://$TMP/mxcached.sock

# bench LIMIT_S ARGS... - one bounded bench run; its JSON line on stdout.
bench() {
    local limit=$1; shift
    timeout --kill-after=5 "$limit" "$BENCH" --json "$@" | grep '^{'
}

# ---- 3. warm the pool ----

# A pass asks each pool triplet once; postgrey answers several hundred a second, so K/200 s
# bound a pass generously.
WARM_S=$((KEYS / 200 + 30))
[ $WARM_S -le 600 ] || WARM_S=600
warm() { # PASS
    local pg mx
    pg=$(bench $((WARM_S + 30)) --protocol policy --server "$PG_EP" --workload triplets --prewarm \
        --keys "$KEYS" --sockets 8 --duration "$WARM_S")
    mx=$(bench $((WARM_S + 30)) --protocol zmq --server "$MX_EP" --workload triplets --prewarm \
        --keys "$KEYS" --sockets 8 --inflight 1 --duration "$WARM_S")
    log "warm-up pass $1: postgrey accepted $(field "$pg" accepted) deferred $(field "$pg" deferred)" \
        "of $KEYS; mxcached accepted $(field "$mx" accepted) deferred $(field "$mx" deferred)"
    if [ "$1" -eq 2 ] && { [ "$(field "$pg" accepted)" != "$KEYS" ] || [ "$(field "$mx" accepted)" != "$KEYS" ]; }; then
        log "the pool did not pass on both sides after the delay: the comparison would be unfair"
        exit 1
    fi
}
log "warm-up: $KEYS pool triplets, once, then again after the ${DELAY} s greylisting delay"
warm 1
sleep $((DELAY + 2))
warm 2

# ---- 4. measure ----

ROWS=()
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for c in $CONNS; do
    base=""
    for target in postgrey mxcache-policy mxcached; do
        case $target in
        postgrey)
            args=(--protocol policy --server "$PG_EP")
            label="postgrey $(postgrey --version | awk '{print $2}') (policy protocol)" ;;
        mxcache-policy)
            args=(--protocol policy --server "$MP_EP")
            label="mxcache-policy + mxcached (policy protocol)" ;;
        mxcached)
            args=(--protocol zmq --server "$MX_EP")
            label="mxcached alone (ZeroMQ, protobuf)" ;;
        esac
        log "measuring $target, $c connections, ${DURATION} s"
        j=$(bench $((DURATION + 60)) "${args[@]}" --workload triplets --new-ratio "$RATIO" --keys "$KEYS" \
            --sockets "$c" --inflight 1 --warmup 1 --duration "$DURATION" --requests "$MAX_REQUESTS")
        rps=$(field "$j" requests_per_s)
        replies=$(field "$j" replies)
        acc=$(field "$j" accepted)
        lost=$(field "$j" lost)
        unexp=$(field "$j" unexpected)
        [ "$target" != postgrey ] || base=$rps
        ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }')
        share=$(awk -v a="$acc" -v n="$replies" 'BEGIN { if (n > 0) printf "%.1f%%", 100 * a / n; else print "-" }')
        row=$(printf '| %s | %s | %s | %s | %s | %s | %s | %s |' "$label" "$c" "$(grouped "$rps")" \
            "$(ms "$(field "$j" p50)")" "$(ms "$(field "$j" p99)")" "$(ms "$(field "$j" p99_9)")" "$share" "$ratio")
        ROWS+=("$row")
        if [ "${lost%.*}" != 0 ] || [ "${unexp%.*}" != 0 ]; then
            log "warning: $target at $c connections: $lost lost, $unexp unexpected replies"
        fi
    done
done

# ---- 5. report ----

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo
echo "mxcache vs postgrey, $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) x ${CPU:-unknown CPU}, $(free -g | awk '/^Mem:/ {print $2}') GB;"
echo "bench, servers and store on the same machine; RelWithDebInfo build; load average before"
echo "measuring $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg)."
echo "Command: tools/bench/compare.sh --duration $DURATION --keys $KEYS --new-ratio $RATIO --delay $DELAY --conns \"$CONNS\""
echo "Load: one request in flight per connection, ${DURATION} s measured after 1 s warmup; $RATIO of the"
echo "requests with a never-seen triplet (deferred), the rest repeating $KEYS pre-warmed triplets (accepted)."
echo
echo "| target | connections | requests/s | p50 ms | p99 ms | p99.9 ms | accepted | vs postgrey |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
