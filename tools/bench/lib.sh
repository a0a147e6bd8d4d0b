# shellcheck shell=bash
# lib.sh - shell helpers shared by the benchmark scripts (compare.sh, verify.sh): stopping what a
# script started, and reading and printing the bench's JSON figures. Source it after setting
# BENCH_PROG (the name that prefixes messages); stop_started stops what the arrays PIDS and NAMES
# hold.

log() { echo "$BENCH_PROG: $*" >&2; }

# stop_pid NAME PID - SIGTERM, up to 10 s, then SIGKILL; only this PID.
stop_pid() {
    local name=$1 pid=$2
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "$name (pid $pid) did not stop on SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# stop_started - stops every process of PIDS (names in NAMES), the last started first.
stop_started() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${NAMES[$i]}" "${PIDS[$i]}"
    done
}

# field JSON NAME - a number from the bench's JSON line.
field() { sed -E -n "s/.*\"$2\":([0-9.]+).*/\\1/p" <<<"$1"; }
# ms MICROSECONDS - as milliseconds with two decimals.
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
# grouped N - N rounded, with thousands separators.
grouped() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); print s }'; }
