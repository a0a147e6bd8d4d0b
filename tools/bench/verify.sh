#!/usr/bin/env bash
# verify.sh - recipient verification in mxcached under load: answers from the cache, and SMTP
# probes of a backend, measured with mxcache-bench on this machine.
#
# Usage: tools/bench/verify.sh [--duration S] [--keys K] [--sockets "8 64"] [--inflight "1 16"]
#                              [--build DIR]
#
# What it does, all on loopback, every process started here stopped by its PID at the end:
#   1. builds mxcached, mxcache-bench, mxtest-smtpd and mxcachectl (RelWithDebInfo) in DIR
#      (default build/, or $MXCACHE_BUILD); when that fails, `tools/dev build` installs the build
#      dependencies and builds.
#   2. starts, in a temporary directory: mxtest-smtpd on a free port of 127.0.0.1, accepting every
#      recipient (script "rcpt * 250 2.1.5 Ok"; its log goes to /dev/null so that the backend
#      spends no CPU on it); mxcached (ipc socket, its own store, durable writes as by default)
#      with greylisting off and one route, example.com -> that backend, with max_sessions 16,
#      session_probes 1000 and probes_per_second 0 (no limit), verify.client_probes_per_minute 0
#      (the bench is one client), and verify.acceptall_interval 0 (a backend that accepts
#      everything must not be marked accept-all half-way).
#   3. measures, for each shape S x W (sockets x requests in flight on each; default 8 and 64
#      sockets, 1 and 16 in flight), 1 s warmup and S seconds measured (default 5):
#        verify-hit    a pool of K addresses (default 10000), made cached by the bench's prewarm
#                      (the first run probes them, later runs find them cached), then Checks of
#                      pool addresses: answers from the cache (verify_positive);
#        verify-probe  a never-seen address in every Check: one probe of the backend each, the
#                      Check waiting for its result (verify_positive), or 450 verify_pending
#                      after verify.wait (3 s).
#      Before each run the service's peak RSS is reset (/proc/PID/clear_refs), so that the
#      table's figure is that run's peak; the service's own count of probes started is read
#      before and after with mxcachectl stats.
#   4. prints one table: workload, shape, requests/s (verify-probe: probes answered per second),
#      p50/p99/p99.9 latency, answers by rule, probes the service started during the run, and
#      the service's peak RSS.
#
# Every bench run is bounded in time (--duration, --prewarm-time, plus `timeout`) and count
# (--requests). Exit status: 0 done; 1 a step failed (its reason on stderr); 2 usage error.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${MXCACHE_BUILD:-$ROOT/build}
DURATION=5
KEYS=10000
SOCKETS="8 64"
INFLIGHT="1 16"
PREWARM_S=60            # verify-hit: bound of the prewarm (mxcache-bench --prewarm-time)
MAX_REQUESTS=50000000   # per run; far above what one run can reach here
DOMAIN=example.com

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --duration) DURATION=${2:?}; shift 2 ;;
    --keys) KEYS=${2:?}; shift 2 ;;
    --sockets) SOCKETS=${2:?}; shift 2 ;;
    --inflight) INFLIGHT=${2:?}; shift 2 ;;
    --build) BUILD=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "verify: unknown argument '$1'" >&2; usage ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 && $DURATION -le 120 ]] || { echo "verify: --duration: 1 to 120 seconds" >&2; exit 2; }
[[ $KEYS =~ ^[0-9]+$ && $KEYS -ge 1 && $KEYS -le 1000000 ]] || { echo "verify: --keys: 1 to 1000000" >&2; exit 2; }
for s in $SOCKETS; do
    [[ $s =~ ^[0-9]+$ && $s -ge 1 && $s -le 1024 ]] || { echo "verify: --sockets: numbers from 1 to 1024" >&2; exit 2; }
done
for w in $INFLIGHT; do
    [[ $w =~ ^[0-9]+$ && $w -ge 1 && $w -le 256 ]] || { echo "verify: --inflight: numbers from 1 to 256" >&2; exit 2; }
done

TMP=""
PIDS=()     # started here, stopped in reverse order
NAMES=()

BENCH_PROG=verify
# shellcheck source=tools/bench/lib.sh
. "$(dirname "$0")/lib.sh"

cleanup() {
    stop_started
    [ -z "$TMP" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---- 1. build ----

log "building in $BUILD (RelWithDebInfo)"
TARGETS=(mxcached mxcache-bench mxtest-smtpd)
if ! { command -v cmake >/dev/null &&
       cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
       cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]}" >/dev/null; }; then
    # Most likely the build tools or libraries are missing: tools/dev installs them and builds.
    log "build failed; installing the build dependencies with tools/dev build"
    MXCACHE_BUILD=$BUILD "$ROOT/tools/dev" build
fi
# mxcachectl only adds the service's probe count: the table has "-" without it.
cmake --build "$BUILD" -j "$(nproc)" --target mxcachectl >/dev/null 2>&1 || log "mxcachectl did not build: no probe counts"
BENCH=$BUILD/tools/bench/mxcache-bench
MXCACHED=$BUILD/server/mxcached
SMTPD=$BUILD/tests/mxtest-smtpd
CTL=$BUILD/tools/mxcachectl
for b in "$BENCH" "$MXCACHED" "$SMTPD"; do
    [ -x "$b" ] || { log "$b is missing after the build"; exit 1; }
done

# ---- 2. backend and service ----

TMP=$(mktemp -d /tmp/mxcache-verify.XXXXXX)

start_backend "$SMTPD"

cat >"$TMP/mxcached.conf" <<EOF
# verify.sh: the defaults but for where it listens (no metrics endpoint), stores and logs, greylisting off, and one
# route without limits to the local test backend.
server = { listen = [ "ipc://$TMP/mxcached.sock" ]; };
store = { path = "$TMP/mxcached-db"; };
log = { level = "notice"; target = "stderr"; };
metrics = { listen = ""; };
greylist = { enabled = false; };
verify = {
  client_probes_per_minute = 0;
  acceptall_interval = "0";
  routes = ( { domains = [ "$DOMAIN" ]; hosts = [ "127.0.0.1:$SMTP_PORT" ];
               max_sessions = 16; session_probes = 1000; probes_per_second = 0; } );
};
EOF
(cd "$TMP" && exec "$MXCACHED" --config "$TMP/mxcached.conf" --foreground --allow-root) >"$TMP/mxcached.log" 2>&1 &
PIDS+=($!); NAMES+=(mxcached)
MX_PID=$!
wait_sock mxcached "$MX_PID" "$TMP/mxcached.sock"
MX_EP=ipc://$TMP/mxcached.sock
log "mxtest-smtpd pid $SMTPD_PID on 127.0.0.1:$SMTP_PORT, mxcached pid $MX_PID on $MX_EP"

# probes_started - the service's verify_probes_started counter, or "" without mxcachectl.
probes_started() {
    [ -x "$CTL" ] || return 0
    field "$(timeout 10 "$CTL" --server "$MX_EP" --json stats 2>/dev/null || true)" verify_probes_started
}

# ---- 3. measure ----

ROWS=()
WARN=0
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for workload in verify-hit verify-probe; do
    for s in $SOCKETS; do
        for w in $INFLIGHT; do
            args=(--server "$MX_EP" --workload "$workload" --sockets "$s" --inflight "$w" --warmup 1
                  --duration "$DURATION" --requests "$MAX_REQUESTS" --server-pid "$MX_PID" --json)
            limit=$((DURATION + 40))
            if [ "$workload" = verify-hit ]; then
                args+=(--keys "$KEYS" --prewarm-time "$PREWARM_S")
                limit=$((limit + PREWARM_S))
            fi
            # The peak RSS of this run only (Linux: 5 resets VmHWM to the current RSS).
            echo 5 >"/proc/$MX_PID/clear_refs" 2>/dev/null || log "cannot reset the peak RSS: the figure is the peak so far"
            before=$(probes_started)
            log "measuring $workload, ${s}x${w}, ${DURATION} s"
            j=$(timeout --kill-after=5 "$limit" "$BENCH" "${args[@]}" | grep '^{') || { log "$workload ${s}x${w}: the bench failed"; exit 1; }
            after=$(probes_started)
            probes=-
            [ -z "$before" ] || [ -z "$after" ] || probes=$(grouped $((${after%.*} - ${before%.*})))
            answers=""
            for r in verify_positive verify_negative verify_pending verify_tempfail verify_refused verify_acceptall other; do
                n=$(field "$j" "$r")
                [ "${n:-0}" = 0 ] || answers+="${answers:+, }${r#verify_} $(grouped "$n")"
            done
            for e in errors lost; do
                n=$(field "$j" "$e")
                [ "${n:-0}" = 0 ] || answers+="${answers:+, }$e $(grouped "$n")"
            done
            unexp=$(field "$j" unexpected)
            if [ "${unexp:-0}" != 0 ] || [ "$(field "$j" lost)" != 0 ] || [ "$(field "$j" errors)" != 0 ]; then
                log "warning: $workload ${s}x${w}: $unexp unexpected replies, $(field "$j" lost) lost, $(field "$j" errors) errors"
                WARN=1
            fi
            if [ "$workload" = verify-hit ]; then
                log "prewarm: $(field "$j" prewarm_cached) of $KEYS cached after $(field "$j" prewarm_passes) pass(es), $(field "$j" prewarm_s) s"
            fi
            rss=$(awk -v k="$(field "$j" server_vmhwm_kb)" 'BEGIN { if (k > 0) printf "%.0f", k / 1024; else print "-" }')
            ROWS+=("$(printf '| %s | %sx%s | %s | %s | %s | %s | %s | %s | %s |' "$workload" "$s" "$w" \
                "$(grouped "$(field "$j" requests_per_s)")" "$(ms "$(field "$j" p50)")" "$(ms "$(field "$j" p99)")" \
                "$(ms "$(field "$j" p99_9)")" "${answers:--}" "$probes" "$rss")")
        done
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
TOTALS=""
if [ -x "$CTL" ]; then
    st=$(timeout 10 "$CTL" --server "$MX_EP" --json stats 2>/dev/null || true)
    for c in verify_probes_started probe_results_accepted probe_results_rejected probe_results_tempfail \
             probe_results_failed probe_sessions_opened verify_refused_busy verify_refused_route_limit \
             verify_refused_client_limit replies_dropped store_wal_syncs; do
        TOTALS+="${TOTALS:+, }$c $(field "$st" "$c")"
    done
fi
if grep -q -E 'mxcached\[(warning|err|crit|alert|emerg)\]' "$TMP/mxcached.log"; then
    log "mxcached logged warnings or errors (first 5):"
    grep -E 'mxcached\[(warning|err|crit|alert|emerg)\]' "$TMP/mxcached.log" | head -5 >&2
fi

# ---- 4. report ----

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo
echo "mxcached recipient verification, $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) x ${CPU:-unknown CPU}, $(free -g | awk '/^Mem:/ {print $2}') GB;"
echo "bench, mxcached, store and backend (mxtest-smtpd) on the same machine; RelWithDebInfo build; load"
echo "average before measuring $LOAD_BEFORE, after $LOAD_AFTER."
echo "Command: tools/bench/verify.sh --duration $DURATION --keys $KEYS --sockets \"$SOCKETS\" --inflight \"$INFLIGHT\""
echo "Load: S sockets x W Checks in flight, ${DURATION} s measured after 1 s warmup; verify-hit: recipients from"
echo "a pool of $KEYS cached addresses; verify-probe: a never-seen recipient each, one SMTP probe each"
echo "(route: 16 sessions, 1000 probes per session, no rate limit; durable writes). requests/s and"
echo "latency count only the measured answers (verify-hit: verify_positive; verify-probe: a probe's"
echo "verdict); probes started: the service's count over the whole run (prewarm and warmup included)."
echo
echo "| workload | S x W | requests/s | p50 ms | p99 ms | p99.9 ms | answers by rule | probes started | peak RSS MB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
if [ -n "$TOTALS" ]; then
    echo
    echo "Service totals over all runs: $TOTALS."
fi
[ "$WARN" -eq 0 ] || log "some runs had unexpected, lost or error replies (see above)"
