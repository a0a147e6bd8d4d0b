# shellcheck shell=bash
# lib.sh - shell helpers shared by the benchmark scripts (compare.sh, verify.sh, refs.sh):
# installing packages without starting them, ports and waits, the test backend, stopping what a
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

# ---- what the scripts start (TMP: their temporary directory; NAME.log there: each one's log) ----

# install_guarded PKG... - apt-get installs the packages, with /usr/sbin/policy-rc.d answering 101
# meanwhile so that none of them starts the system's own instance. GUARD says whether the guard is
# ours (the caller's cleanup removes it if the installation is interrupted); SUDO is sudo or "".
install_guarded() {
    log "installing $* (their system instances are kept from starting)"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        GUARD=1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    [ "$GUARD" -eq 0 ] || { $SUDO rm -f /usr/sbin/policy-rc.d; GUARD=0; }
}

# free_port - a TCP port on 127.0.0.1 that nothing listens on (and that no earlier call gave).
USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 30000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! ss -Hltn "sport = :$p" | grep -q .; then
            USED_PORTS+="$p "
            echo "$p"
            return 0
        fi
    done
    log "no free port found"
    return 1
}

# wait_tcp NAME PID PORT - until PORT accepts connections (15 s at most) and PID is alive.
wait_tcp() {
    local name=$1 pid=$2 port=$3
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || { log "$name exited; its log:"; tail -20 "$TMP/$name.log" >&2; return 1; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$name does not listen on 127.0.0.1:$port after 15 s"
    return 1
}

# wait_sock NAME PID PATH - until the ipc socket PATH exists (15 s at most) and PID is alive.
wait_sock() {
    local name=$1 pid=$2 path=$3
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        [ -S "$path" ] && return 0
        sleep 0.1
    done
    log "$name did not start; its log:"
    tail -20 "$TMP/$name.log" >&2
    return 1
}

# start_backend SMTPD - the test SMTP backend (mxtest-smtpd at SMTPD) on a free loopback port,
# every recipient existing; its PID in SMTPD_PID (and PIDS), its port in SMTP_PORT.
start_backend() {
    printf '# %s: every recipient exists\nrcpt * 250 2.1.5 Ok\n' "$BENCH_PROG" >"$TMP/smtpd.script"
    "$1" --listen 127.0.0.1:0 --script "$TMP/smtpd.script" --log /dev/null --port-file "$TMP/smtpd.port" \
        >"$TMP/mxtest-smtpd.log" 2>&1 &
    SMTPD_PID=$!
    PIDS+=("$SMTPD_PID"); NAMES+=(mxtest-smtpd)
    for _ in $(seq 1 100); do
        [ -s "$TMP/smtpd.port" ] && break
        kill -0 "$SMTPD_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "$TMP/smtpd.port" ] || { log "mxtest-smtpd did not start; its output:"; tail -20 "$TMP/mxtest-smtpd.log" >&2; return 1; }
    SMTP_PORT=$(cat "$TMP/smtpd.port")
}
