#!/usr/bin/env bash
# refs.sh - mxcached and mxcache-policy beside their references, in one run on one machine, under
# the same shape of load: S sockets or connections, each with W requests in flight.
#
# Usage: tools/bench/refs.sh [--duration S] [--quick] [--markdown FILE] [--keys K] [--delay S]
#                            [--new-ratio R] [--build DIR]
#
# What it does, all on loopback, every process started here stopped by its PID at the end:
#   1. installs redis-server and redis-tools, and postgrey, (Debian packages) if missing, with
#      /usr/sbin/policy-rc.d answering 101 during the installation so that the packages do not
#      start the system's instances; builds what is missing in DIR (default build/, or
#      $MXCACHE_BUILD) with `cmake --build` (it does not configure).
#   2. starts, in a temporary directory: mxcached "grey" (greylisting on, delay S, default 5 s),
#      mxcached "spam" (the same with its own store, for the spam wave only) and mxcached
#      "verify" (greylisting off, one route example.com -> mxtest-smtpd accepting every
#      recipient, as verify.sh), all three on ipc sockets, stores in the directory, log level
#      notice, decisions off, no metrics; mxtest-smtpd; mxbench-echo (ZeroMQ ROUTER echo, ipc);
#      redis-server on a free loopback port (--save "" --appendonly no), GET keys preloaded;
#      mxcache-policy in front of mxcached "grey"; mxbench-null-policy; postgrey (--delay S).
#   3. measures, for each shape S x W (default 8x1 8x16 64x1 64x16; --quick: 8x16 64x1), one
#      after the other, 1 s warmup (mxcache-bench) and S seconds (default 5) measured:
#        mxcached check-hit   Checks answered from the whitelist (mxcache-bench, ipc);
#        ZeroMQ echo          the same Checks sent back unread by mxbench-echo (--echo);
#        redis GET            redis-benchmark -t get -c S -P W -r K (every GET a hit), -n sized
#                             from a calibration run to last about S seconds, under `timeout`;
#        mxcached spam wave   --workload triplets --new-ratio 1.0 on mxcached "spam": a never-seen
#                             triplet each, a durable group-committed write (greylist defer);
#        mxcached verify-hit  --workload verify-hit on mxcached "verify" (pool prewarmed);
#      and, at each shape with W = 1, over the Postfix policy protocol with a pool of K triplets
#      made to pass on both greylisters first (asked, then again after the delay, as compare.sh)
#      and a fraction R (default 0.5) of never-seen triplets: mxcache-policy + mxcached, the null
#      policy server, postgrey.
#      Before each run the server's peak RSS is reset (/proc/PID/clear_refs), and read after it
#      (VmHWM: mxcache-bench --server-pid, or /proc/PID/status for redis); for mxcache-policy the
#      figure is the hook's peak plus that of mxcached "grey" behind it.
#   4. prints the machine, one aligned table, and ratio rows: each mxcache figure divided by the
#      same figure of its reference in the same shape (check-hit / echo, check-hit / redis GET;
#      spam wave / check-hit, verify-hit / check-hit; mxcache-policy / null policy, mxcache-policy
#      / postgrey); --markdown FILE also writes it as a Markdown table.
#
# Figures on a shared machine are noisy: printed, never asserted.
# Every run is bounded in time (--duration, `timeout`) and count (--requests, redis -n).
# Exit status: 0 done; 1 a step failed (its reason on stderr); 2 usage error.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${MXCACHE_BUILD:-$ROOT/build}
DURATION=5
QUICK=0
MARKDOWN=""
KEYS=5000
DELAY=5
RATIO=0.5
MAX_REQUESTS=50000000   # per run; far above what one run can reach here
DOMAIN=example.com

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --duration) DURATION=${2:?}; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --markdown) MARKDOWN=${2:?}; shift 2 ;;
    --keys) KEYS=${2:?}; shift 2 ;;
    --delay) DELAY=${2:?}; shift 2 ;;
    --new-ratio) RATIO=${2:?}; shift 2 ;;
    --build) BUILD=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "refs: unknown argument '$1'" >&2; usage ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 && $DURATION -le 120 ]] || { echo "refs: --duration: 1 to 120 seconds" >&2; exit 2; }
[[ $KEYS =~ ^[0-9]+$ && $KEYS -ge 1 && $KEYS -le 1000000 ]] || { echo "refs: --keys: 1 to 1000000" >&2; exit 2; }
[[ $DELAY =~ ^[0-9]+$ && $DELAY -ge 1 && $DELAY -le 3600 ]] || { echo "refs: --delay: 1 to 3600 seconds" >&2; exit 2; }
[[ $RATIO =~ ^(0(\.[0-9]+)?|1(\.0*)?)$ ]] || { echo "refs: --new-ratio: a number from 0 to 1" >&2; exit 2; }
if [ -n "$MARKDOWN" ]; then
    : >"$MARKDOWN" 2>/dev/null || { echo "refs: --markdown: cannot write $MARKDOWN" >&2; exit 2; }
fi
if [ "$QUICK" -eq 1 ]; then SHAPES="8x16 64x1"; else SHAPES="8x1 8x16 64x1 64x16"; fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
ALLOW_ROOT=()
[ "$(id -u)" -ne 0 ] || ALLOW_ROOT=(--allow-root)
TMP=""
GUARD=0
PIDS=()     # started here, stopped in reverse order
NAMES=()

BENCH_PROG=refs
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

PKGS=()
command -v redis-server >/dev/null 2>&1 || PKGS+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || PKGS+=(redis-tools)
command -v postgrey >/dev/null 2>&1 || PKGS+=(postgrey)
[ ${#PKGS[@]} -eq 0 ] || install_guarded "${PKGS[@]}"
command -v ss >/dev/null || { log "ss (iproute2) is missing"; exit 1; }

BENCH=$BUILD/tools/bench/mxcache-bench
ECHO=$BUILD/tools/bench/mxbench-echo
NULLPOL=$BUILD/tools/bench/mxbench-null-policy
MXCACHED=$BUILD/server/mxcached
POLICY=$BUILD/client/mxcache-policy
SMTPD=$BUILD/tests/mxtest-smtpd
BINS=("$BENCH" "$ECHO" "$NULLPOL" "$MXCACHED" "$POLICY" "$SMTPD")
for b in "${BINS[@]}"; do
    if [ ! -x "$b" ]; then
        log "building in $BUILD ($b is missing)"
        cmake --build "$BUILD" -j "$(nproc)" --target mxcache-bench mxbench-echo mxbench-null-policy \
            mxcached mxcache-policy mxtest-smtpd >/dev/null || { log "the build failed"; exit 1; }
        break
    fi
done
for b in "${BINS[@]}"; do
    [ -x "$b" ] || { log "$b is missing"; exit 1; }
done

# ---- 2. the servers ----

TMP=$(mktemp -d /tmp/mxcache-refs.XXXXXX)
chmod 755 "$TMP"

# start NAME CMD... - CMD in the background in $TMP, output to $TMP/NAME.log; its PID in LAST.
start() {
    local name=$1; shift
    (cd "$TMP" && exec "$@") >"$TMP/$name.log" 2>&1 &
    LAST=$!
    PIDS+=("$LAST"); NAMES+=("$name")
}

# Backend of the verification routes (as verify.sh).
start_backend "$SMTPD"

cat >"$TMP/grey.conf" <<EOF
# refs.sh: mxcached with greylisting (short delay), no metrics, no decision log.
server = { listen = [ "ipc://$TMP/grey.sock" ]; };
store = { path = "$TMP/grey-db"; };
log = { level = "notice"; target = "stderr"; decisions = "off"; };
metrics = { listen = ""; };
greylist = { delay = "${DELAY}s"; };
EOF
cat >"$TMP/verify.conf" <<EOF
# refs.sh: mxcached with greylisting off and one route without limits to the local test backend.
server = { listen = [ "ipc://$TMP/verify.sock" ]; };
store = { path = "$TMP/verify-db"; };
log = { level = "notice"; target = "stderr"; decisions = "off"; };
metrics = { listen = ""; };
greylist = { enabled = false; };
verify = {
  client_probes_per_minute = 0;
  acceptall_interval = "0";
  routes = ( { domains = [ "$DOMAIN" ]; hosts = [ "127.0.0.1:$SMTP_PORT" ];
               max_sessions = 16; session_probes = 1000; probes_per_second = 0; } );
};
EOF
start mxcached-grey "$MXCACHED" --config "$TMP/grey.conf" --foreground "${ALLOW_ROOT[@]}"
GREY_PID=$LAST
# The spam wave writes to a store of its own, so that the other rows' memory does not carry its data.
sed -e 's|grey\.sock|spam.sock|' -e 's|grey-db|spam-db|' "$TMP/grey.conf" >"$TMP/spam.conf"
start mxcached-spam "$MXCACHED" --config "$TMP/spam.conf" --foreground "${ALLOW_ROOT[@]}"
SPAM_PID=$LAST
start mxcached-verify "$MXCACHED" --config "$TMP/verify.conf" --foreground "${ALLOW_ROOT[@]}"
VERIFY_PID=$LAST
start mxbench-echo "$ECHO" --listen "ipc://$TMP/echo.sock"
ECHO_PID=$LAST
wait_sock mxcached-grey "$GREY_PID" "$TMP/grey.sock"
wait_sock mxcached-spam "$SPAM_PID" "$TMP/spam.sock"
wait_sock mxcached-verify "$VERIFY_PID" "$TMP/verify.sock"
wait_sock mxbench-echo "$ECHO_PID" "$TMP/echo.sock"

RD_PORT=$(free_port)
MP_PORT=$(free_port)
NP_PORT=$(free_port)
PG_PORT=$(free_port)

start redis-server redis-server --bind 127.0.0.1 --port "$RD_PORT" --save "" --appendonly no \
    --daemonize no --dir "$TMP" --logfile ""
RD_PID=$LAST

cat >"$TMP/mxcache-policy.conf" <<EOF
server = { listen = [ "inet:127.0.0.1:$MP_PORT" ]; };
service = { endpoints = [ "ipc://$TMP/grey.sock" ]; };
log = { level = "notice"; target = "stderr"; };
metrics = { listen = ""; };
EOF
start mxcache-policy "$POLICY" --config "$TMP/mxcache-policy.conf" --foreground "${ALLOW_ROOT[@]}"
MP_PID=$LAST
start null-policy "$NULLPOL" --listen "127.0.0.1:$NP_PORT"
NP_PID=$LAST

PGDIR=$TMP/postgrey
mkdir -p "$PGDIR"
chown postgrey:postgrey "$PGDIR" 2>/dev/null || $SUDO chown postgrey:postgrey "$PGDIR"
# postgrey stays in the foreground (no --daemonize), so $! is its PID; started as root it runs as
# user postgrey, as the Debian package runs it.
$SUDO postgrey --inet="127.0.0.1:$PG_PORT" --dbdir="$PGDIR" --delay="$DELAY" >"$TMP/postgrey.log" 2>&1 &
PIDS+=($!); NAMES+=(postgrey)
PG_PID=$!

wait_tcp redis-server "$RD_PID" "$RD_PORT"
wait_tcp mxcache-policy "$MP_PID" "$MP_PORT"
wait_tcp null-policy "$NP_PID" "$NP_PORT"
wait_tcp postgrey "$PG_PID" "$PG_PORT"
log "mxcached grey pid $GREY_PID, spam pid $SPAM_PID, verify pid $VERIFY_PID, echo pid $ECHO_PID (ipc in $TMP);" \
    "redis pid $RD_PID :$RD_PORT, mxcache-policy pid $MP_PID :$MP_PORT, null policy pid $NP_PID :$NP_PORT," \
    "postgrey pid $PG_PID :$PG_PORT, mxtest-smtpd pid $SMTPD_PID :$SMTP_PORT"

# The GET keys of redis-benchmark -r K (key:%012d), each with a 3-byte value as -t set writes.
seq -f 'SET key:%012.0f xxx' 0 $((KEYS - 1)) | timeout 60 redis-cli -p "$RD_PORT" >/dev/null
log "redis: $(timeout 10 redis-cli -p "$RD_PORT" dbsize) keys preloaded ($(redis-server --version | awk '{print $3}'))"

GREY_EP=ipc://$TMP/grey.sock
VERIFY_EP=ipc://$TMP/verify.sock
SPAM_EP=ipc://$TMP/spam.sock
ECHO_EP=ipc://$TMP/echo.sock

# ---- measuring helpers ----

# fmt_mb KB - as MB rounded, or "-".
fmt_mb() { awk -v k="$1" 'BEGIN { if (k != "" && k > 0) printf "%.0f", k / 1024; else print "-" }'; }
PEER_PID=""  # bench_row: a second server whose peak RSS counts with the first (the hook's mxcached)

# reset_peak PID - the peak RSS from now on (Linux: 5 in clear_refs resets VmHWM).
reset_peak() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || log "cannot reset the peak RSS of pid $1"; }
# vmhwm_kb PID - VmHWM of PID in kB, or "".
vmhwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# Raw figures of each measured row, by key "SHAPE/TARGET": requests/s, p50, p99, p99.9 (µs), peak
# RSS (kB), a note.
declare -A RPS P50 P99 P999 HWM NOTE
ORDER=()    # row keys and ratio rows ("=SHAPE/A/B") in print order
LABELS=()   # label of each entry of ORDER
WARN=0

# add_row KEY LABEL RPS P50 P99 P999 HWM NOTE
add_row() {
    RPS[$1]=$3; P50[$1]=$4; P99[$1]=$5; P999[$1]=$6; HWM[$1]=$7; NOTE[$1]=$8
    ORDER+=("$1"); LABELS+=("$2")
}
# add_ratio SHAPE A B LABEL - a row of A's figures divided by B's (both keys under SHAPE).
add_ratio() { ORDER+=("=$1/$2/$3"); LABELS+=("$4"); }

# bench_row KEY LABEL PID ARGS... - one bounded mxcache-bench run against the server of PID.
bench_row() {
    local key=$1 label=$2 pid=$3; shift 3
    local limit=$((DURATION + 100)) j note="" n r hwm peer=""
    reset_peak "$pid"
    [ -z "$PEER_PID" ] || reset_peak "$PEER_PID"
    log "measuring $label, ${key%%/*}, ${DURATION} s"
    if ! j=$(timeout --kill-after=5 "$limit" "$BENCH" --json --warmup 1 --duration "$DURATION" \
            --requests "$MAX_REQUESTS" --server-pid "$pid" "$@" | grep '^{'); then
        log "$label ${key%%/*}: the bench failed"
        WARN=1
        add_row "$key" "$label" "" "" "" "" "" "failed"
        return 0
    fi
    n=$(field "$j" replies)
    for r in accepted deferred; do
        [ -z "$(field "$j" "$r")" ] || note+="${note:+, }$r $(awk -v a="$(field "$j" "$r")" -v n="$n" \
            'BEGIN { if (n > 0) printf "%.0f%%", 100 * a / n; else print "-" }')"
    done
    r=$(field "$j" verify_positive)
    [ -z "$r" ] || note+="${note:+, }verify_positive $(awk -v a="$r" -v n="$n" 'BEGIN { if (n > 0) printf "%.0f%%", 100 * a / n; else print "-" }')"
    for r in unexpected lost errors; do
        [ "$(field "$j" "$r")" = 0 ] || { note+="${note:+, }$r $(field "$j" "$r")"; WARN=1; }
    done
    hwm=$(field "$j" server_vmhwm_kb)
    if [ -n "$PEER_PID" ]; then
        # The peak of the pair is at most the sum of their peaks: the column gives that sum.
        peer=$(vmhwm_kb "$PEER_PID")
        note+="${note:+, }RSS: hook $(fmt_mb "$hwm") + mxcached $(fmt_mb "$peer") MB"
        [ -z "$hwm" ] || [ -z "$peer" ] || hwm=$((hwm + peer))
    fi
    add_row "$key" "$label" "$(field "$j" requests_per_s)" "$(field "$j" p50)" "$(field "$j" p99)" \
        "$(field "$j" p99_9)" "$hwm" "${note:--}"
}

# redis_bench S W N LIMIT - one redis-benchmark GET run of N requests; its output on stdout.
redis_bench() {
    timeout --kill-after=5 "$4" redis-benchmark -h 127.0.0.1 -p "$RD_PORT" -t get -r "$KEYS" \
        -c "$1" -P "$2" -n "$3" 2>/dev/null | tr '\r' '\n'
}
# redis_rps OUTPUT - its throughput summary, requests/s.
redis_rps() { sed -n -E 's/.*throughput summary: ([0-9.]+) requests per second.*/\1/p' <<<"$1" | tail -1; }

# redis_row KEY S W - redis-benchmark -t get with S clients and W pipelined, about DURATION s.
redis_row() {
    local key=$1 s=$2 w=$3 out rps n p50 p99 p999
    local cal=$((s * w * 100))
    [ "$cal" -ge 20000 ] || cal=20000
    log "measuring redis GET, ${s}x${w}: calibrating with $cal requests"
    out=$(redis_bench "$s" "$w" "$cal" 30 || true)
    rps=$(redis_rps "$out")
    if [ -z "$rps" ]; then
        log "redis-benchmark calibration ${s}x${w} failed"; WARN=1
        add_row "$key" "redis GET (redis-benchmark)" "" "" "" "" "" "failed"
        return 0
    fi
    n=$(awk -v r="$rps" -v d="$DURATION" -v m="$MAX_REQUESTS" \
        'BEGIN { n = int(r * d); if (n < 10000) n = 10000; if (n > m) n = m; print n }')
    reset_peak "$RD_PID"
    log "measuring redis GET, ${s}x${w}, -n $n (calibration: $(grouped "$rps") req/s)"
    out=$(redis_bench "$s" "$w" "$n" $((DURATION * 4 + 30)) || true)
    rps=$(redis_rps "$out")
    if [ -z "$rps" ]; then
        log "redis-benchmark ${s}x${w} -n $n failed or outlasted its bound"; WARN=1
        add_row "$key" "redis GET (redis-benchmark)" "" "" "" "" "$(vmhwm_kb "$RD_PID")" "failed"
        return 0
    fi
    # "avg min p50 p95 p99 max" (ms) on the line after the header of the latency summary.
    read -r p50 p99 < <(awk '/avg +min +p50 +p95 +p99 +max/ { getline; print $3 * 1000, $5 * 1000 }' <<<"$out" | tail -1) || true
    # p99.9: the first step of the percentile distribution at or above 99.9% (99.902% usually).
    p999=$(awk '/^ *[0-9.]+% <= [0-9.]+ milliseconds/ { p = $1; sub(/%/, "", p); if (p + 0 >= 99.9) { print $3 * 1000; exit } }' <<<"$out")
    add_row "$key" "redis GET (redis-benchmark)" "$rps" "$p50" "$p99" "$p999" "$(vmhwm_kb "$RD_PID")" \
        "-n $(grouped "$n"), -P batches"
}

# warm PASS - asks each pool triplet once on both greylisters (mxcached over ZeroMQ; mxcache-policy
# shares its store) and, on the second pass, checks that both let all pass.
WARM_S=$((KEYS / 200 + 30))
[ $WARM_S -le 600 ] || WARM_S=600
warm() {
    local pg mx
    pg=$(timeout --kill-after=5 $((WARM_S + 30)) "$BENCH" --json --protocol policy --server "127.0.0.1:$PG_PORT" \
        --workload triplets --prewarm --keys "$KEYS" --sockets 8 --duration "$WARM_S" | grep '^{') || true
    mx=$(timeout --kill-after=5 $((WARM_S + 30)) "$BENCH" --json --server "$GREY_EP" \
        --workload triplets --prewarm --keys "$KEYS" --sockets 8 --inflight 1 --duration "$WARM_S" | grep '^{') || true
    log "warm-up pass $1: postgrey accepted $(field "$pg" accepted) deferred $(field "$pg" deferred)" \
        "of $KEYS; mxcached accepted $(field "$mx" accepted) deferred $(field "$mx" deferred)"
    if [ "$1" -eq 2 ] && { [ "$(field "$pg" accepted)" != "$KEYS" ] || [ "$(field "$mx" accepted)" != "$KEYS" ]; }; then
        log "warning: the pool did not pass on both sides after the delay"
        WARN=1
    fi
}

# ---- 3. measure ----

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "policy warm-up pass 1: $KEYS pool triplets"
warm 1
WARM1_AT=$SECONDS

for shape in $SHAPES; do
    s=${shape%x*}
    w=${shape#*x}
    sw="${s}x${w}"
    bench_row "$sw/hit" "mxcached check-hit" "$GREY_PID" --server "$GREY_EP" --workload check-hit --sockets "$s" --inflight "$w"
    bench_row "$sw/echo" "ZeroMQ echo (mxbench-echo)" "$ECHO_PID" --server "$ECHO_EP" --echo --workload check-hit --sockets "$s" --inflight "$w"
    redis_row "$sw/redis" "$s" "$w"
    bench_row "$sw/spam" "mxcached spam wave (triplets, new 1.0)" "$SPAM_PID" --server "$SPAM_EP" --workload triplets \
        --new-ratio 1.0 --keys "$KEYS" --sockets "$s" --inflight "$w"
    bench_row "$sw/verify" "mxcached verify-hit" "$VERIFY_PID" --server "$VERIFY_EP" --workload verify-hit \
        --domain "$DOMAIN" --keys "$KEYS" --prewarm-time 60 --sockets "$s" --inflight "$w"
    add_ratio "$sw" hit echo "ratio check-hit / ZeroMQ echo"
    add_ratio "$sw" hit redis "ratio check-hit / redis GET"
    add_ratio "$sw" spam hit "ratio spam wave / check-hit"
    add_ratio "$sw" verify hit "ratio verify-hit / check-hit"
done

POL_CONNS=""
for shape in $SHAPES; do
    [ "${shape#*x}" != 1 ] || POL_CONNS+=" ${shape%x*}"
done
if [ -n "$POL_CONNS" ]; then
    wait_s=$((DELAY + 2 - (SECONDS - WARM1_AT)))
    [ "$wait_s" -le 0 ] || { log "waiting ${wait_s} s for the greylisting delay"; sleep "$wait_s"; }
    log "policy warm-up pass 2"
    warm 2
    PGV=$(postgrey --version 2>/dev/null | awk '{print $2}')
    for c in $POL_CONNS; do
        sw="${c}x1"
        pargs=(--protocol policy --workload triplets --new-ratio "$RATIO" --keys "$KEYS" --sockets "$c" --inflight 1)
        PEER_PID=$GREY_PID
        bench_row "$sw/mp" "mxcache-policy + mxcached (policy)" "$MP_PID" --server "127.0.0.1:$MP_PORT" "${pargs[@]}"
        PEER_PID=""
        bench_row "$sw/np" "null policy (mxbench-null-policy)" "$NP_PID" --server "127.0.0.1:$NP_PORT" "${pargs[@]}"
        bench_row "$sw/pg" "postgrey ${PGV:-} (policy)" "$PG_PID" --server "127.0.0.1:$PG_PORT" "${pargs[@]}"
        add_ratio "$sw" mp np "ratio mxcache-policy / null policy"
        add_ratio "$sw" mp pg "ratio mxcache-policy / postgrey"
    done
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
for n in mxcached-grey mxcached-spam mxcached-verify mxcache-policy; do
    # Expected here: INSECURE (no key file on the ipc socket) and PRIVILEGES (--allow-root).
    bad=$(grep -E '\[(warning|err|crit|alert|emerg)\]' "$TMP/$n.log" | grep -v -E '\]: (INSECURE|PRIVILEGES) ' | head -3 || true)
    [ -z "$bad" ] || { log "$n logged warnings or errors (first 3):"; echo "$bad" >&2; }
done

# ---- 4. report ----

# fmt_ratio A B - A / B with two decimals and "x", or "-".
fmt_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && a > 0 && b > 0) printf "%.2fx", a / b; else print "-" }'; }
fmt_ms() { if [ -n "$1" ]; then ms "$1"; else echo -; fi; }

TABLE=()    # rows, fields separated by tabs
TABLE+=("$(printf 'S x W\ttarget\trequests/s\tp50 ms\tp99 ms\tp99.9 ms\tpeak RSS MB\tnotes')")
for i in "${!ORDER[@]}"; do
    k=${ORDER[$i]}
    label=${LABELS[$i]}
    if [[ $k == =* ]]; then
        IFS=/ read -r sw a b <<<"${k#=}"
        a=$sw/$a; b=$sw/$b
        TABLE+=("$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$sw" "$label" "$(fmt_ratio "${RPS[$a]}" "${RPS[$b]}")" \
            "$(fmt_ratio "${P50[$a]}" "${P50[$b]}")" "$(fmt_ratio "${P99[$a]}" "${P99[$b]}")" \
            "$(fmt_ratio "${P999[$a]}" "${P999[$b]}")" "$(fmt_ratio "${HWM[$a]}" "${HWM[$b]}")" "")")
    else
        rps=${RPS[$k]}
        [ -z "$rps" ] || rps=$(grouped "$rps")
        TABLE+=("$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "${k%%/*}" "$label" "${rps:--}" "$(fmt_ms "${P50[$k]}")" \
            "$(fmt_ms "${P99[$k]}")" "$(fmt_ms "${P999[$k]}")" "$(fmt_mb "${HWM[$k]}")" "${NOTE[$k]}")")
    fi
done

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
MACHINE="machine: $(nproc) CPUs (nproc), ${CPU:-unknown CPU}, kernel $(uname -r), $(free -g | awk '/^Mem:/ {print $2}') GB"
CMD="tools/bench/refs.sh --duration $DURATION$([ "$QUICK" -eq 0 ] || echo " --quick") --keys $KEYS --delay $DELAY --new-ratio $RATIO"
header() {
    echo "mxcache beside its references, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "$MACHINE"
    echo "load average before measuring $LOAD_BEFORE, after $LOAD_AFTER; bench, servers and stores on this machine"
    echo "command: $CMD"
    echo "load: S sockets/connections x W requests in flight, ${DURATION} s measured (mxcache-bench: after 1 s warmup);"
    echo "ratio rows: the first figure divided by the second in the same shape (latency or memory above 1x: more);"
    echo "redis-benchmark -P W sends W GETs as one batch and the next batch when all W replied (mxcache-bench keeps W"
    echo "in flight), and records for every GET of a batch the time from the batch's send to the first reply bytes"
    echo "(so with W > 1 its latencies flatter redis); its p99.9 is the 99.902% step of its distribution"
}

echo
header
printf '%s\n' "${TABLE[@]}" | column -t -s $'\t'
if [ -n "$MARKDOWN" ]; then
    {
        header | sed 's/$/  /'
        echo
        first=1
        for row in "${TABLE[@]}"; do
            echo "| ${row//$'\t'/ | } |"
            if [ $first -eq 1 ]; then echo "| --- | --- | --- | --- | --- | --- | --- | --- |"; first=0; fi
        done
    } >"$MARKDOWN"
    log "Markdown table written to $MARKDOWN"
fi
[ "$WARN" -eq 0 ] || log "some runs failed or had unexpected, lost or error replies (see above)"
