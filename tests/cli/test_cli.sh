#!/bin/bash
# Golden-file test of mxcachectl against a real mxcached.
#
# Usage: test_cli.sh MXCACHED MXCACHECTL CLI_DIR
#   Starts mxcached on an ipc:// socket in a temporary directory, runs a scripted mxcachectl
#   session, writes each step's command line, stdout, stderr (prefixed "stderr: ") and exit code
#   into one transcript, replaces what varies between runs (times, durations, byte counts, uptime,
#   version, counters, temporary paths, the test backend's port) and compares the result with
#   CLI_DIR/expected.txt. On a difference it prints the diff and exits 1.
#
#   Greylist entries come from real policy questions: mxcache-policy --stdio, as Postfix's spawn
#   would run it. The second part restarts mxcached on the same store with greylist.delay 0 (new
#   triplets pass at once) and a verify route to mxtest-smtpd, a scripted SMTP backend, for live
#   probes. Both programs are found beside mxcached in the build tree (client/mxcache-policy,
#   tests/mxtest-smtpd), or where $MXCACHE_POLICY and $MXTEST_SMTPD say.
#
#   UPDATE_GOLDEN=1 test_cli.sh ...   writes the normalized transcript to CLI_DIR/expected.txt
#                                     instead (check it by eye before keeping it).
#   KEEP_TMP=1                        leaves the temporary directory for inspection.
#
# The daemons are stopped by their PIDs (mxcached: SIGTERM, then SIGKILL after 10 s) and the
# temporary directory removed when the script exits, whatever the reason.
set -eu

if [ $# -ne 3 ]; then
    echo "usage: $0 MXCACHED MXCACHECTL CLI_DIR" >&2
    exit 2
fi
MXCACHED=$1
CTL=$2
CLI_DIR=$3
GOLDEN=$CLI_DIR/expected.txt
BUILD=$(dirname "$MXCACHED")/..
POLICY=${MXCACHE_POLICY:-$BUILD/client/mxcache-policy}
SMTPD=${MXTEST_SMTPD:-$BUILD/tests/mxtest-smtpd}
for prog in "$POLICY" "$SMTPD"; do
    if [ ! -x "$prog" ]; then
        echo "test_cli: $prog is missing (build it, or set MXCACHE_POLICY / MXTEST_SMTPD)" >&2
        exit 1
    fi
done

export LC_ALL=C TZ=UTC
unset MXCACHE_SERVER

# Robustness: an ipc:// path must fit in sun_path (108 bytes); fall back to /tmp for a long TMPDIR.
base=${TMPDIR:-/tmp}
[ "${#base}" -le 60 ] || base=/tmp
TMP=$(mktemp -d "$base/mxcli.XXXXXX")
PID=
SMTPD_PID=
SMTPD_PORT=

stop_daemon() {
    [ -n "$PID" ] || return 0
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PID" 2>/dev/null; then
        echo "test_cli: mxcached (pid $PID) did not stop on SIGTERM; killing it" >&2
        kill -KILL "$PID" 2>/dev/null || true
    fi
    wait "$PID" 2>/dev/null || true
    PID=
}

cleanup() {
    stop_daemon
    if [ -n "$SMTPD_PID" ]; then
        kill -TERM "$SMTPD_PID" 2>/dev/null || true
        wait "$SMTPD_PID" 2>/dev/null || true
    fi
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        echo "test_cli: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

EP="ipc://$TMP/mxcached.sock"

# start_daemon [CONFIG_LINES] - writes the config (the common settings and CONFIG_LINES), starts
# mxcached on it and waits (at most about 10 s) until it answers.
start_daemon() {
    cat >"$TMP/mxcached.conf" <<EOF
server: { listen = ["$EP"]; workers = 1; };
store: { path = "$TMP/db"; sync = true; };
log: { target = "stderr"; level = "warning"; };
admin: { list_page_size = 2; list_page_max = 2; flush_batch = 2; };
metrics: { listen = ""; };
${1:-}
EOF
    "$MXCACHED" --config "$TMP/mxcached.conf" --foreground --allow-root 2>>"$TMP/mxcached.log" &
    PID=$!
    local ready=0 rc
    for _ in $(seq 1 50); do
        if ! kill -0 "$PID" 2>/dev/null; then
            rc=0
            wait "$PID" || rc=$?
            PID=
            echo "test_cli: mxcached exited with status $rc during startup; its log:" >&2
            cat "$TMP/mxcached.log" >&2
            exit 1
        fi
        if "$CTL" --server "$EP" --timeout 200ms stats >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 0.2
    done
    if [ "$ready" != 1 ]; then
        echo "test_cli: mxcached did not answer within 10 s; its log:" >&2
        cat "$TMP/mxcached.log" >&2
        exit 1
    fi
}

# start_smtpd - starts mxtest-smtpd on a free loopback port with $TMP/smtpd.script; sets
# SMTPD_PORT once it listens (at most about 10 s).
start_smtpd() {
    "$SMTPD" --listen 127.0.0.1:0 --script "$TMP/smtpd.script" --log "$TMP/smtpd.log" \
        --port-file "$TMP/smtpd.port" >/dev/null 2>>"$TMP/smtpd.log" &
    SMTPD_PID=$!
    for _ in $(seq 1 50); do
        [ -s "$TMP/smtpd.port" ] && break
        if ! kill -0 "$SMTPD_PID" 2>/dev/null; then
            SMTPD_PID=
            echo "test_cli: mxtest-smtpd did not start; its log:" >&2
            cat "$TMP/smtpd.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    SMTPD_PORT=$(cat "$TMP/smtpd.port" 2>/dev/null || true)
    if [ -z "$SMTPD_PORT" ]; then
        echo "test_cli: mxtest-smtpd wrote no port within 10 s" >&2
        exit 1
    fi
}

start_daemon

# Every step of the session talks to our daemon through $MXCACHE_SERVER (which also tests it).
export MXCACHE_SERVER=$EP
OUT=$TMP/transcript

# quote ARGS... - the arguments as a shell would need them (single quotes where needed).
quote() {
    local a out=
    for a in "$@"; do
        case $a in
        *[[:cntrl:]]*) printf -v a '%q' "$a" ;;
        '' | *[!A-Za-z0-9@%+=:,./_-]*) a="'$a'" ;;
        esac
        out="$out${out:+ }$a"
    done
    printf '%s' "$out"
}

# step [ARGS...] - runs mxcachectl ARGS with stdin from /dev/null (no terminal) and records it.
step() {
    local rc=0
    printf '$ mxcachectl %s\n' "$(quote "$@")" >>"$OUT"
    "$CTL" "$@" </dev/null >"$TMP/stdout" 2>"$TMP/stderr" || rc=$?
    cat "$TMP/stdout" >>"$OUT"
    sed 's/^/stderr: /' "$TMP/stderr" >>"$OUT"
    printf '[exit %d]\n\n' "$rc" >>"$OUT"
    check_alive "mxcachectl $(quote "$@")"
}

# check_alive WHAT - fails the test when mxcached has exited during WHAT.
check_alive() {
    local rc
    if ! kill -0 "$PID" 2>/dev/null; then
        rc=0
        wait "$PID" || rc=$?
        PID=
        echo "test_cli: mxcached exited with status $rc during: $1" >&2
        echo "test_cli: transcript so far:" >&2
        cat "$OUT" >&2
        echo "test_cli: mxcached log:" >&2
        cat "$TMP/mxcached.log" >&2
        exit 1
    fi
}

# policy CLIENT_IP SENDER RECIPIENT... - asks mxcache-policy about each RECIPIENT of a mail from
# SENDER sent by CLIENT_IP (RCPT state, one --stdio session) and records how often it gave each
# answer.
policy() {
    local ip=$1 sender=$2 r rc=0
    shift 2
    printf '$ mxcache-policy --stdio # %s from %s sends to %s\n' "$ip" "$sender" "$*" >>"$OUT"
    cat >"$TMP/policy.conf" <<EOF
service: { endpoints = ["$EP"]; mx_name = "mx-test"; };
EOF
    for r in "$@"; do
        printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n'
        printf 'client_address=%s\nclient_name=unknown\nhelo_name=mail.example.org\n' "$ip"
        printf 'sender=%s\nrecipient=%s\n\n' "$sender" "$r"
    done | "$POLICY" --config "$TMP/policy.conf" --stdio --allow-root >"$TMP/stdout" 2>"$TMP/stderr" || rc=$?
    grep -v '^$' "$TMP/stdout" | uniq -c | sed -E 's/^ *([0-9]+) /\1 x /' >>"$OUT"
    sed 's/^/stderr: /' "$TMP/stderr" >>"$OUT"
    printf '[exit %d]\n\n' "$rc" >>"$OUT"
    check_alive "mxcache-policy"
}

# list_requests - how many list requests the service has answered (its requests_list counter).
list_requests() {
    "$CTL" --json stats | sed -E -n 's/.*"requests_list":([0-9]+).*/\1/p'
}

# note TEXT - a comment line in the transcript.
note() {
    printf '# %s\n\n' "$1" >>"$OUT"
}

: >"$OUT"
step stats
step --json stats
step whitelist add client 192.0.2.7/24 --comment "documentation net"
step whitelist add sender Example.COM
step --json whitelist add recipient postmaster@Example.NET --ttl 30d --comment "abuse desk"
step whitelist add client 300.1.2.3
step whitelist add client_name mx.example.org --ttl 12h
step whitelist add client 198.51.100.1 --comment "$(printf 'tab\there, escape \033[31mred')"
step whitelist list
step whitelist list client
step --server tcp://127.0.0.1:1 --server "$EP" whitelist list sender
step --json whitelist list
# explain: a dry run of the decision; whitelisted by client network, recipient, sender, name.
step explain 192.0.2.9 sender@example.org rcpt@example.net
step --json explain 203.0.113.5 '<>' '<postmaster@example.net>'
step explain 203.0.113.5 someone@Example.COM user@example.net --helo mail.example.com
step explain 2001:db8::5 alice@example.org bob@example.net --client-name mx.example.org --mx mx1
step get whitelist client:192.0.2.0/24
step get whitelist client:192.0.2.0/24 --json
step get whitelist client:198.51.100.0/24
step get verify nobody@example.com
step list whitelist --limit 2
step list whitelist --after client_name:mx.example.org
step list whitelist --prefix sender:
step --json list whitelist --prefix recipient:
step list verify
step get nokeyspace foo
step frobnicate
step stats extra
step list verify --bogus
step whitelist add any 192.0.2.1
step whitelist add client 192.0.2.1 --ttl soon
step --timeout 0 stats
step flush whitelist
step flush all
step flush greylist --state positive
step flush whitelist --dry-run
step --json flush ALL --dry-run
step --json whitelist del sender Example.com
step whitelist del sender example.com
step delete whitelist recipient:postmaster@example.net
step delete whitelist recipient:postmaster@example.net
step flush whitelist --yes
step list whitelist
step whitelist list
step flush ALL --yes --json
# explain, not whitelisted: whatever the service decides, twice, and it leaves no state behind.
step explain 203.0.113.5 alice@example.org bob@example.net --client-name mail.example.org --helo mail.example.org
step --json explain 203.0.113.5 alice@example.org bob@example.net --client-name mail.example.org --helo mail.example.org
step explain 203.0.113.5 '' bob@example.net --mx mx2
step list greylist
step list awl
# Real greylist entries (pending: greylist.delay is 5m), filtered by recipient domain and state.
policy 192.0.2.1 a@example.org u1@example.net u2@sub.example.net
policy 198.51.100.1 b@example.org x@example.org
step list greylist
step list greylist --domain example.net
step list greylist --domain sub.example.net --state pending
step --json list greylist --domain EXAMPLE.ORG
step list greylist --state passed
step list greylist --domain example.com
step list greylist --state positive
step list awl --state pending
step list verify --domain "$(printf 'example.net\r')"
step list greylist --domain "$(printf 'a%.0s' $(seq 1 256))"
step list greylist --domain ''
step whitelist list --domain example.net
# verify: local checks, and a domain without a route (this service has none yet).
step verify
step verify --accept-all
step verify not-an-address
step verify '<>'
step verify "$(printf 'bob@example.com\r\nDATA')"
step verify "$(printf 'a%.0s' $(seq 1 300))@example.com"
step verify bob@example.com carol@example.com
step verify bob@example.com --accept-all example.com
step verify --accept-all 'bad domain'
step verify --accept-all example.com --prefix x
step verify nobody@example.org
step --json verify '<nobody@Example.ORG>'
step verify --accept-all example.org
step explain not-an-ip alice@example.org bob@example.net
step explain 203.0.113.5 alice@example.org
step explain 203.0.113.5 alice@example.org '<>'
step explain 203.0.113.5 alice@example.org bob@example.net --ttl 1d
step explain 203.0.113.5 alice@example.org "$(printf 'a%.0s' $(seq 1 300))@example.net"
step --server tcp://127.0.0.1:1 --timeout 300ms explain 203.0.113.5 alice@example.org bob@example.net
step explain --help
step compact
step --json compact verify
step --server tcp://127.0.0.1:1 --timeout 300ms stats
step help
step help flush
step get --help
step whitelist --help
step list --help
step verify --help
step help nosuchcommand

# Part two: the same store, greylist.delay 0 (a new triplet passes at once; the pending ones pass
# on their retry), no auto-whitelist, and a verify route for example.com to mxtest-smtpd. One probe
# per session keeps every transcript the same (no RSET of a reused session).
cat >"$TMP/smtpd.script" <<EOF
rcpt alice@example.com 250 2.1.5 Ok
rcpt busy@example.com 450 4.2.1 Mailbox busy, try again later
rcpt gone@example.com drop
EOF
start_smtpd
stop_daemon
start_daemon "greylist: { delay = 0; header = false; awl_passes = 0; };
verify: { tempfail_ttl = \"1h\";
          routes = ( { domains = [ \"example.com\" ]; hosts = [ \"127.0.0.1:$SMTPD_PORT\" ];
                       helo = \"mx.test\"; session_probes = 1; } ); };"
policy 192.0.2.1 a@example.org u1@example.net
policy 203.0.113.9 c@example.org y@example.net
# 21 triplets whose keys sort before the others: more than a page examines (list_page_max 2 times
# the scan factor 10), so a filtered page that skips them all ends early with a cursor.
policy 192.0.2.1 a@example.org $(for i in $(seq -w 1 21); do printf 'bulk%s@bulk.example ' "$i"; done)
step list greylist --domain bulk.example --limit 3
requests_before=$(list_requests)
step list greylist --domain example.net
note "list requests for that: $(( $(list_requests) - requests_before ))"
requests_before=$(list_requests)
step list greylist --state pending
note "list requests for that: $(( $(list_requests) - requests_before ))"
step list greylist --domain example.net --state passed --limit 1
step list greylist --domain example.net --state passed --after 192.0.2.0/24/a@example.org/u1@example.net
step --json flush greylist --domain bulk.example --state passed --dry-run
# Live probes: accepted, rejected, 4xx, a dropped connection.
step verify alice@example.com
step --json verify '<Bob@Example.COM>'
step verify busy@example.com
step verify gone@example.com
step verify nobody@example.org
step list verify
step list verify --state negative
step list verify --domain example.com --state positive
step --json list verify --state tempfail
step list verify --domain example.org
step flush verify Bob@Example.COM
step get verify bob@example.com
step flush verify bob@example.com
step flush verify not-an-address
step flush greylist bob@example.com
step verify --accept-all Example.COM
step --json verify --accept-all example.com

# What varies between runs: times, spans, sizes, uptime, version, counters, the temp dir, the port
# of mxtest-smtpd.
normalize() {
    sed -E \
        -e "s|$TMP|<TMP>|g" \
        -e "s/127\.0\.0\.1:$SMTPD_PORT([^0-9]|\$)/127.0.0.1:<PORT>\1/g" \
        -e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z/<TIME>/g' \
        -e 's/"([a-z_]+)_ms":[1-9][0-9]*/"\1_ms":<MS>/g' \
        -e 's/"duration_ms":[0-9]+/"duration_ms":<MS>/g' \
        -e 's/"(uptime_s|keys_estimate|disk_bytes|disk_bytes_before|disk_bytes_after)":[0-9]+/"\1":<N>/g' \
        -e 's/"version":"[^"]*"/"version":"<VERSION>"/g' \
        -e 's/"counters":\{[^}]*\}/"counters":{<COUNTERS>}/g' \
        -e 's/^(version|uptime|duration) +.*/\1  <VARIES>/' \
        -e 's/^(disk_bytes_before|disk_bytes_after) +[0-9]+$/\1  <N>/' \
        -e 's/^(verify|greylist|awl|whitelist) +[0-9]+ +[0-9]+$/\1  <N>  <N>/' \
        "$1" |
        awk '
            # The counters table: keep its header, drop its rows (their set grows with the service).
            /^COUNTER +VALUE$/ { print "COUNTER  VALUE"; print "<COUNTERS>"; skip = 1; next }
            skip && /^[^ ]+ +[0-9]+$/ { next }
            { skip = 0; print }
        '
}

normalize "$OUT" >"$TMP/actual.txt"

if [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
    cp "$TMP/actual.txt" "$GOLDEN"
    echo "test_cli: wrote $GOLDEN"
    exit 0
fi

if [ ! -f "$GOLDEN" ]; then
    echo "test_cli: $GOLDEN is missing; create it with UPDATE_GOLDEN=1" >&2
    cat "$TMP/actual.txt"
    exit 1
fi

if ! diff -u "$GOLDEN" "$TMP/actual.txt"; then
    echo "test_cli: transcript differs from $GOLDEN (regenerate with UPDATE_GOLDEN=1 if the change is intended)" >&2
    exit 1
fi
echo "test_cli: ok"
