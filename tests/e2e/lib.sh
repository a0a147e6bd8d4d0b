# Shared helpers of the end-to-end tests: real Postfix instances (MXes, and a backend with a fixed
# list of mailboxes), real mxcached and mxcache-policy processes, and smtp-sink as a final
# destination, all on loopback in one temporary directory. Sourced by the test scripts; every
# process started here is recorded by PID (a Postfix instance by its master's PID, which leads
# the process group of its services) and stopped by e2e_cleanup (an EXIT trap set by e2e_init).
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

# e2e_stop_pid PID [SECONDS] - SIGTERM, then SIGKILL after SECONDS (default 5); returns the
# process's exit status (a child of this shell; 137 when it had to be killed). Empty PID: 0.
e2e_stop_pid() {
    local pid=$1 secs=${2:-5} rc=0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((secs * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        e2e_log "pid $pid did not stop within $secs s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    return $rc
}

e2e_cleanup() {
    local rc=$?
    local n
    for n in "${E2E_POSTFIX[@]}"; do
        e2e_postfix_stop "$n" >/dev/null 2>&1 || true
    done
    for pid in "${E2E_PIDS[@]}"; do
        e2e_stop_pid "$pid" || true
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
# that this run has not handed out before (called without $(...), so the list is kept). The port
# lies outside the kernel's ephemeral range when it can: a port some client connection of the
# machine uses as its local port cannot be bound by a server (Postfix: "Address already in use").
E2E_PORTS=" "
e2e_free_port() {
    local p lo=32768 hi=60999 base=20000 span=40000
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    if [ "$lo" -gt 12000 ]; then
        base=10000 span=$((lo - 10000))
    elif [ "$hi" -lt 63000 ]; then
        base=$((hi + 1)) span=$((65535 - hi))
    fi
    for _ in $(seq 1 100); do
        p=$((base + (RANDOM * 32768 + RANDOM) % span))
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

# e2e_postfix NAME SMTPD_PORT POLICY_ENDPOINT RELAY_PORT - an MX: a Postfix instance with smtpd
# on 127.0.0.1:SMTPD_PORT, recipients of example.test relayed to [127.0.0.1]:RELAY_PORT, asking
# the policy service after reject_unauth_destination.
e2e_postfix() {
    local name=$1 port=$2 policy=$3 relay=$4
    _e2e_postfix_files "$name" "$port"
    cat >>"$E2E_DIR/$name/etc/main.cf" <<CF
mynetworks = 127.0.0.1/32
relay_domains = example.test
relayhost = [127.0.0.1]:$relay
local_transport = error:local delivery is disabled
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, check_policy_service { $policy, timeout=10s, default_action=DEFER_IF_PERMIT }
CF
    _e2e_postfix_start "$name" "$port"
}

# e2e_postfix_backend NAME SMTPD_PORT DOMAIN USER... - a backend: a Postfix instance with smtpd on
# 127.0.0.1:SMTPD_PORT, final destination for DOMAIN with exactly the mailboxes USER@DOMAIN
# (Maildirs under $E2E_DIR/NAME/mail/USER/, delivered by virtual(8) as nobody). Any other
# recipient of DOMAIN is refused at RCPT with Postfix's "550 5.1.1 <ADDR>: Recipient address
# rejected: User unknown in virtual mailbox table"; nothing is relayed anywhere.
e2e_postfix_backend() {
    local name=$1 port=$2 domain=$3; shift 3
    local base=$E2E_DIR/$name u
    _e2e_postfix_files "$name" "$port"
    mkdir -p "$base/mail"
    chown nobody:nogroup "$base/mail"
    for u in "$@"; do printf '%s@%s %s/\n' "$u" "$domain" "$u"; done >"$base/etc/vmailbox"
    cat >>"$base/etc/main.cf" <<CF
mynetworks = 127.0.0.1/32
relayhost =
default_transport = error:this backend relays nothing
local_transport = error:local delivery is disabled
virtual_mailbox_domains = $domain
virtual_mailbox_maps = texthash:$base/etc/vmailbox
virtual_mailbox_base = $base/mail
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(getent group nogroup | cut -d: -f3)
smtpd_recipient_restrictions = reject_unauth_destination
CF
    _e2e_postfix_start "$name" "$port"
}

# e2e_postfix_stop NAME - stops a running instance: "postfix stop", then waits (at most 10 s)
# for the process group of its master (the master and every service it started) to end, and
# kills what is left of that group by its PID. Returns 1 if NAME was not running.
e2e_postfix_stop() {
    local base=$E2E_DIR/$1 pid
    pid=$(awk '{ print $1; exit }' "$base/queue/pid/master.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 -- "-$pid" 2>/dev/null || return 1
    postfix -c "$base/etc" stop >>"$E2E_DIR/$1.log" 2>&1 || true
    for _ in $(seq 1 100); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    e2e_log "postfix $1 (master $pid) did not stop; killing its process group"
    kill -KILL -- "-$pid" 2>/dev/null || true
}

# _e2e_postfix_files NAME SMTPD_PORT - the part of an instance's main.cf and master.cf that
# every instance shares: own directories, loopback only, no DNS, a log file, no chroot.
_e2e_postfix_files() {
    local name=$1 port=$2
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
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
alias_maps =
alias_database =
maillog_file = $base/maillog
maillog_file_prefixes = $E2E_DIR
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
virtual   unix - n n - - virtual
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CF
}

# _e2e_postfix_start NAME SMTPD_PORT - starts the instance and waits for its smtpd.
_e2e_postfix_start() {
    local name=$1 port=$2
    local base=$E2E_DIR/$name
    postfix -c "$base/etc" set-permissions >/dev/null 2>&1 || true
    postfix -c "$base/etc" start >>"$E2E_DIR/$name.log" 2>&1 || e2e_fail "postfix $name did not start"
    E2E_POSTFIX+=("$name")
    e2e_wait_port "$port"
}

# e2e_queue_empty NAME - true when the queue of the running instance NAME holds no message at all
# (incoming, active, deferred or held, bounces included), as its postqueue -p shows it.
e2e_queue_empty() {
    local out
    out=$(postqueue -c "$E2E_DIR/$1/etc" -p 2>&1) || e2e_fail "postqueue $1: $out"
    [ "$out" = "Mail queue is empty" ]
}

# e2e_log_mark NAME - writes a unique line into the maillog of the running instance NAME through
# its postlogd and waits (at most 10 s) until it is in the file. Lines its processes logged
# before are then in the file too: postlogd takes them in order from one datagram socket.
e2e_log_mark() {
    local base=$E2E_DIR/$1 mark="e2e-mark-$RANDOM$RANDOM"
    postlog -c "$base/etc" -t e2e "$mark" >/dev/null 2>&1 || e2e_fail "postlog $1 failed"
    for _ in $(seq 1 100); do
        grep -q -- "$mark" "$base/maillog" 2>/dev/null && return 0
        sleep 0.1
    done
    e2e_fail "the mark did not reach the maillog of $1"
}

# e2e_send PORT FROM TO [SWAKS_OPTION...] - one SMTP transaction from 127.0.0.5 (options such as
# --quit-after RCPT are passed to swaks); prints the code of the server's reply to the RCPT.
# swaks' transcript is appended to $E2E_DIR/swaks.log and kept alone in $E2E_DIR/last.swaks.
e2e_send() {
    local port=$1 from=$2 to=$3 out; shift 3
    out=$(swaks --server 127.0.0.1:"$port" --local-interface 127.0.0.5 --helo client.sender.test \
        --from "$from" --to "$to" --header "Subject: mxcache e2e" --body "test" \
        --timeout 30 "$@" 2>&1) || true # swaks fails (24) when the RCPT is refused: that is data here
    printf '%s\n' "$out" >>"$E2E_DIR/swaks.log"
    printf '%s\n' "$out" >"$E2E_DIR/last.swaks"
    # The code of the server's answer to RCPT TO, e.g. "<** 450 4.7.1 ..." or "<-  250 2.1.5 Ok".
    printf '%s\n' "$out" | awk '/-> RCPT TO/ { r = 1; next } r && /^<[-*~]+ +[0-9]/ { print $2; exit }'
}

# e2e_rcpt_reply - the whole reply to RCPT TO of the last e2e_send, as the server sent it
# ("550 5.1.1 <a@b>: ..."; the lines of a multi-line reply one per line).
e2e_rcpt_reply() {
    awk '/-> RCPT TO/ { r = 1; next }
         r && /^<[-*~]+ +[0-9][0-9][0-9][- ]/ { sub(/^<[-*~]+ +/, ""); print; if (substr($0, 4, 1) != "-") exit; next }
         r { exit }' "$E2E_DIR/last.swaks"
}

# e2e_wait_sink N - until the sink holds N messages (at most 30 s).
e2e_wait_sink() {
    for _ in $(seq 1 300); do
        [ "$(find "$E2E_DIR/sink" -type f | wc -l)" -ge "$1" ] && return 0
        sleep 0.1
    done
    e2e_fail "the sink did not receive $1 message(s)"
}
