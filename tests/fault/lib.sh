# Shared helpers of the fault and crash tests (tests/fault/test_*.sh): real mxcached,
# mxcache-policy and test backends on loopback, all in one temporary directory. Sourced by the
# test scripts, after tests/e2e/lib.sh (e2e_free_port, e2e_wait_port, e2e_stop_pid).
#
# Every process is started by fault_start under a NAME and stopped by its PID (fault_stop,
# fault_kill, or fault_cleanup, the EXIT trap that fault_init sets); the daemons are started by
# fault_mxcached and fault_policy only, which add --allow-root when the binary knows it and we
# are root. Binaries come from the environment (tests/CMakeLists.txt sets them): MXCACHED,
# MXCACHE_POLICY, MXCACHECTL, MXFAULT_CLIENT, MXFAULT_POLICY, MXFAULT_RSTD, MXTEST_SMTPD.

. "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

declare -A FAULT_PID=()   # NAME -> PID of a running process started here
FAULT_MOUNTS=()           # mount points to unmount (lazily, innermost first) at cleanup
FAULT_FAILED=0

fault_log() { printf '%s: %s\n' "${FAULT_NAME:-fault}" "$*" >&2; }
fault_fail() {
    fault_log "FAIL: $*"
    exit 1
}

# fault_init NAME - the temporary directory ($FAULT_DIR, also $E2E_DIR for lib.sh) and the
# cleanup trap; checks that the binaries named in the environment exist.
fault_init() {
    FAULT_NAME=$1
    local v
    for v in MXCACHED MXCACHE_POLICY MXCACHECTL MXFAULT_CLIENT MXFAULT_POLICY MXFAULT_RSTD MXTEST_SMTPD; do
        [ -n "${!v:-}" ] && [ -x "${!v}" ] || fault_fail "$v is not set to an executable (run through ctest)"
    done
    FAULT_DIR=$(mktemp -d /tmp/mxcache-fault.XXXXXX)
    E2E_DIR=$FAULT_DIR
    chmod 755 "$FAULT_DIR"
    trap fault_cleanup EXIT
    # --allow-root: the daemons refuse to run as root without it (CI runs as root).
    MXCACHED_ROOT=() POLICY_ROOT=()
    if [ "$(id -u)" -eq 0 ]; then
        case $("$MXCACHED" --help 2>&1) in *--allow-root*) MXCACHED_ROOT=(--allow-root) ;; esac
        case $("$MXCACHE_POLICY" --help 2>&1) in *--allow-root*) POLICY_ROOT=(--allow-root) ;; esac
    fi
    true
}

fault_cleanup() {
    local rc=$? name i
    for name in "${!FAULT_PID[@]}"; do
        e2e_stop_pid "${FAULT_PID[$name]}" 5 >/dev/null 2>&1 || true
    done
    FAULT_PID=()
    for ((i = ${#FAULT_MOUNTS[@]} - 1; i >= 0; i--)); do
        umount -l "${FAULT_MOUNTS[$i]}" 2>/dev/null || true
    done
    if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -n "${FAULT_DIR:-}" ]; then
        fault_log "logs of the failed run:"
        for f in "$FAULT_DIR"/*.log; do
            [ -f "$f" ] && { echo "== $f"; tail -n 25 "$f"; }
        done >&2
    fi
    [ -n "${KEEP_TMP:-}" ] || rm -rf "${FAULT_DIR:-/nonexistent}"
    exit $rc
}

# fault_start NAME CMD... - CMD in the background, output appended to $FAULT_DIR/NAME.log;
# its PID in FAULT_PID[NAME] (a NAME still running is an error of the test).
fault_start() {
    local name=$1; shift
    [ -z "${FAULT_PID[$name]:-}" ] || fault_fail "$name is already running"
    "$@" >>"$FAULT_DIR/$name.log" 2>&1 &
    FAULT_PID[$name]=$!
}

# fault_pid NAME - the PID of NAME (empty when not running).
fault_pid() { printf '%s' "${FAULT_PID[$1]:-}"; }

# fault_running NAME - true while NAME's process lives.
fault_running() { [ -n "${FAULT_PID[$1]:-}" ] && kill -0 "${FAULT_PID[$1]}" 2>/dev/null; }

# fault_stop NAME [SECONDS] - SIGTERM (SIGKILL after SECONDS, default 10), reaps it; returns its
# exit status (137: it had to be killed).
fault_stop() {
    local pid=${FAULT_PID[$1]:-} rc=0
    unset "FAULT_PID[$1]"
    [ -n "$pid" ] || return 0
    e2e_stop_pid "$pid" "${2:-10}" || rc=$?
    return $rc
}

# fault_kill NAME - SIGKILL now, and reaps it.
fault_kill() {
    local pid=${FAULT_PID[$1]:-}
    unset "FAULT_PID[$1]"
    [ -n "$pid" ] || return 0
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# fault_mxcached NAME CONFIG - starts mxcached in the foreground with CONFIG (and --allow-root
# as root); the one place the tests start it.
fault_mxcached() {
    fault_start "$1" "$MXCACHED" "${MXCACHED_ROOT[@]}" --config "$2" --foreground
}

# fault_policy NAME CONFIG - starts mxcache-policy likewise.
fault_policy() {
    fault_start "$1" "$MXCACHE_POLICY" "${POLICY_ROOT[@]}" --config "$2" --foreground
}

# fault_start_pair EP HOOK TIMEOUT - mxcached with $FAULT_DIR/mxcached.conf (listening on EP)
# and a hook on 127.0.0.1:HOOK asking it with service.timeout TIMEOUT; waits until both serve.
fault_start_pair() {
    cat >"$FAULT_DIR/policy.conf" <<CF
server: { listen = ["inet:127.0.0.1:$2"]; };
service: { endpoints = ["$1"]; timeout = "$3"; mx_name = "mx.fault.test"; };
log: { target = "stderr"; level = "info"; };
metrics: { listen = ""; };
CF
    fault_mxcached mxcached "$FAULT_DIR/mxcached.conf"
    fault_wait_ready mxcached "$1"
    fault_policy policy "$FAULT_DIR/policy.conf"
    e2e_wait_port "$2"
}

# fault_stop_pair - stops the hook and mxcached of fault_start_pair by PID; each must exit 0.
fault_stop_pair() {
    local rc=0
    fault_stop policy || rc=$?
    [ $rc -eq 0 ] || fault_fail "mxcache-policy exited with $rc on SIGTERM"
    fault_stop mxcached 20 || rc=$?
    [ $rc -eq 0 ] || fault_fail "mxcached exited with $rc on SIGTERM"
}

# fault_ctl ENDPOINT ARGS... - mxcachectl against ENDPOINT with a bounded wait.
fault_ctl() {
    local ep=$1; shift
    "$MXCACHECTL" --server "$ep" --timeout 5s "$@"
}

# fault_wait_ready NAME ENDPOINT [SECONDS] - until mxcached NAME answers at ENDPOINT (default at
# most 30 s); fails the test when it exits or does not answer in time.
fault_wait_ready() {
    local name=$1 ep=$2 secs=${3:-30}
    for _ in $(seq 1 $((secs * 10))); do
        "$MXCACHECTL" --server "$ep" --timeout 300ms stats >/dev/null 2>&1 && return 0
        fault_running "$name" || fault_fail "$name exited during its start: $(tail -n 3 "$FAULT_DIR/$name.log")"
        sleep 0.1
    done
    fault_fail "$name does not answer at $ep after $secs s"
}

# fault_ask PORT CLIENT SENDER RECIPIENT [SECONDS] - one RCPT question in the Postfix policy
# protocol to the hook on 127.0.0.1:PORT, as smtpd asks it; prints the answer's action line
# ("action=...") or "TIMEOUT" when no complete answer came within SECONDS (default 10), or
# "CLOSED" when the hook closed the connection. Every read is bounded.
fault_ask() {
    local port=$1 client=$2 sender=$3 rcpt=$4 secs=${5:-10} fd line part="" answer="" end st
    exec {fd}<>/dev/tcp/127.0.0.1/"$port" 2>/dev/null || { echo CLOSED; return 0; }
    printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=%s\nclient_name=unknown\nreverse_client_name=unknown\nhelo_name=client.fault.test\nsender=%s\nrecipient=%s\nqueue_id=\ninstance=%x.1\nsize=0\n\n' \
        "$client" "$sender" "$rcpt" "$RANDOM" >&$fd
    end=$((SECONDS + secs))
    while [ $SECONDS -le $end ]; do
        if IFS= read -r -t 1 -u $fd line; then
            line=$part$line part=""
        else
            # A timeout (status > 128) keeps the partial line; anything else is the end.
            st=$?
            if [ $st -gt 128 ]; then
                part=$part$line
                continue
            fi
            exec {fd}>&-
            echo "${answer:-CLOSED}"
            return 0
        fi
        if [ -z "$line" ]; then
            exec {fd}>&-
            echo "${answer:-EMPTY}"
            return 0
        fi
        [ -n "$answer" ] || answer=$line
    done
    exec {fd}>&-
    echo TIMEOUT
}

# fault_rss_kb PID - the resident set of PID in kB (VmRSS).
fault_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# A check is a function that returns 1 with the reason in $why when what it saw is wrong; each
# prints one line, and a failed one does not stop the next. fault_done ends the test.
fault_passed=0
why=
fault_check() { # fault_check N WHAT FUNCTION
    why=
    if "$3"; then
        fault_passed=$((fault_passed + 1))
        printf 'ok %s - %s\n' "$1" "$2"
    else
        FAULT_FAILED=$((FAULT_FAILED + 1))
        printf 'not ok %s - %s: %s\n' "$1" "$2" "$why"
    fi
}
fault_done() {
    printf '%s: %d checks passed, %d failed\n' "$FAULT_NAME" "$fault_passed" "$FAULT_FAILED"
    [ "$FAULT_FAILED" -eq 0 ]
}
