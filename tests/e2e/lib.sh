# Shared helpers of the end-to-end tests: real Postfix instances, real mxcached and
# mxcache-policy processes, and smtp-sink as the final destination, all on loopback in one
# temporary directory. Sourced by the test scripts; every process started here is recorded by
# PID and stopped by e2e_cleanup (installed as an EXIT trap by e2e_init).
#
# Needs root (Postfix instances), postfix and swaks installed (tools/dev test installs them).

E2E_PIDS=()
E2E_POSTFIX=()

e2e_log() { printf 'e2e: %s\n' "$*" >&2; }
e2e_fail() {
    e2e_log "FAIL: $*"
    exit 1
}

e2e_init() {
    [ "$(id -u)" -eq 0 ] || e2e_fail "must run as root (Postfix instances)"
    command -v postfix >/dev/null || e2e_fail "postfix is not installed"
    command -v swaks >/dev/null || e2e_fail "swaks is not installed"
    E2E_DIR=$(mktemp -d /tmp/mxcache-e2e.XXXXXX)
    chmod 755 "$E2E_DIR"
    trap e2e_cleanup EXIT
}

e2e_cleanup() {
    local rc=$?
    for d in "${E2E_POSTFIX[@]}"; do
        postfix -c "$d" stop >/dev/null 2>&1 || true
    done
    for pid in "${E2E_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${E2E_PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ $rc -ne 0 ] && [ -n "${E2E_DIR:-}" ]; then
        e2e_log "logs of the failed run:"
        for f in "$E2E_DIR"/*.log "$E2E_DIR"/*/maillog; do
            [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }
        done >&2
    fi
    [ -n "${KEEP_TMP:-}" ] || rm -rf "${E2E_DIR:-/nonexistent}"
    exit $rc
}

# e2e_free_port VAR - sets VAR to a TCP port on 127.0.0.1 that nothing listens on right now and
# that this run has not handed out before (called without $(...), so the list is kept).
E2E_PORTS=" "
e2e_free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        case "$E2E_PORTS" in *" $p "*) continue ;; esac
        if ! (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null; then
            E2E_PORTS="$E2E_PORTS$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    e2e_fail "no free port found"
}

# e2e_wait_port PORT - until something accepts on 127.0.0.1:PORT (at most 15 s).
e2e_wait_port() {
    for _ in $(seq 1 150); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    e2e_fail "nothing listens on 127.0.0.1:$1"
}

# e2e_bg NAME CMD... - starts CMD in the background, output to $E2E_DIR/NAME.log.
e2e_bg() {
    local name=$1; shift
    "$@" >>"$E2E_DIR/$name.log" 2>&1 &
    E2E_PIDS+=($!)
}

# e2e_sink PORT - smtp-sink on 127.0.0.1:PORT writing every message into $E2E_DIR/sink/.
e2e_sink() {
    mkdir -p "$E2E_DIR/sink"
    chown postfix "$E2E_DIR/sink" # smtp-sink writes as the user it runs as
    e2e_bg sink smtp-sink -u postfix -d "$E2E_DIR/sink/%Y%m%d%H%M%S." 127.0.0.1:"$1" 100
    e2e_wait_port "$1"
}

# e2e_postfix NAME SMTPD_PORT POLICY_ENDPOINT RELAY_PORT - a Postfix instance with its own
# config, queue and data directories, smtpd on 127.0.0.1:SMTPD_PORT, recipients of example.test
# relayed to [127.0.0.1]:RELAY_PORT, asking the policy service after reject_unauth_destination.
e2e_postfix() {
    local name=$1 port=$2 policy=$3 relay=$4
    local base=$E2E_DIR/$name
    mkdir -p "$base/etc" "$base/queue" "$base/data"
    chown postfix:postfix "$base/data"
    cat >"$base/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $base/queue
data_directory = $base/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $name.test
mydomain = test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
relay_domains = example.test
relayhost = [127.0.0.1]:$relay
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
maillog_file = $base/maillog
maillog_file_prefixes = $E2E_DIR
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, check_policy_service { $policy, timeout=10s, default_action=DEFER_IF_PERMIT }
queue_run_delay = 1s
minimal_backoff_time = 1s
CF
    cat >"$base/etc/master.cf" <<CF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
local     unix - n n - - local
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CF
    postfix -c "$base/etc" set-permissions >/dev/null 2>&1 || true
    postfix -c "$base/etc" start >>"$E2E_DIR/$name.log" 2>&1 || e2e_fail "postfix $name did not start"
    E2E_POSTFIX+=("$base/etc")
    e2e_wait_port "$port"
}

# e2e_send PORT FROM TO - one SMTP transaction from 127.0.0.5; prints the server's final
# reply code to the RCPT (or the whole transaction's last code) and keeps swaks' transcript.
e2e_send() {
    local port=$1 from=$2 to=$3 out
    out=$(swaks --server 127.0.0.1:"$port" --local-interface 127.0.0.5 --helo client.sender.test \
        --from "$from" --to "$to" --header "Subject: mxcache e2e" --body "test" \
        --timeout 30 2>&1)
    printf '%s\n' "$out" >>"$E2E_DIR/swaks.log"
    # The code of the server's answer to RCPT TO, e.g. "<** 450 4.7.1 ..." or "<-  250 2.1.5 Ok".
    printf '%s\n' "$out" | awk '/-> RCPT TO/ { r = 1; next } r && /^<[-*~]+ +[0-9]/ { print $2; exit }'
}

# e2e_wait_sink N - until the sink holds N messages (at most 30 s).
e2e_wait_sink() {
    for _ in $(seq 1 300); do
        [ "$(find "$E2E_DIR/sink" -type f | wc -l)" -ge "$1" ] && return 0
        sleep 0.1
    done
    e2e_fail "the sink did not receive $1 message(s)"
}
