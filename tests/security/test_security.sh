#!/bin/bash
# Integration test of mxcache's security: CURVE keys (mxcachectl keygen), the service's ZAP
# allowlist of client and admin keys, what a client key may not do, the errors a client shows for
# a wrong or unlisted key, key revocation by SIGHUP, plain ZeroMQ only where it is allowed, and the
# daemons' refusal of root and their drop to an unprivileged user.
#
# Usage: test_security.sh MXCACHED MXCACHE_POLICY MXCACHECTL
#   Real processes on loopback in one temporary directory: mxcached (CURVE, a free port, metrics on
#   another), mxcache-policy (daemon mode on a free port, and --stdio as Postfix's spawn would run
#   it), mxcachectl. Prints one "ok N - ..." line per check and a total. Needs root (the privilege
#   checks switch to the user nobody). KEEP_TMP=1 leaves the directory for inspection.
#
# Every wait is bounded (read -t, curl --max-time, timeout, polls by count); every process started
# here is stopped by its PID in the EXIT trap (TERM, then KILL after 5 s).
set -euo pipefail
. "$(dirname "$0")/../e2e/lib.sh" # e2e_free_port, e2e_stop_pid

if [ $# -ne 3 ]; then
    echo "usage: $0 MXCACHED MXCACHE_POLICY MXCACHECTL" >&2
    exit 2
fi
MXCACHED=$1
POLICY=$2
CTL=$3
[ "$(id -u)" -eq 0 ] || { echo "test_security: must run as root (privilege checks)" >&2; exit 1; }
for t in curl timeout; do
    command -v "$t" >/dev/null 2>&1 || { echo "test_security: $t is not installed" >&2; exit 1; }
done

export LC_ALL=C
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mxsec.XXXXXX")
chmod 755 "$TMP" # the user nobody must reach its store below
MXPID=
POLPID=
OTHERPID=
CHECKS=0

cleanup() {
    local rc=$?
    e2e_stop_pid "$POLPID" || true
    e2e_stop_pid "$OTHERPID" || true
    e2e_stop_pid "$MXPID" || true
    if [ $rc -ne 0 ]; then
        for f in "$TMP"/*.log; do
            [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }
        done >&2
    fi
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT

fail() {
    echo "test_security: FAIL: $*" >&2
    exit 1
}
ok() {
    CHECKS=$((CHECKS + 1))
    echo "ok $CHECKS - $*"
}

e2e_free_port MXPORT
e2e_free_port METRICS
e2e_free_port HOOK
e2e_free_port PLAINPORT
KEYS=$TMP/keys
mkdir -p "$KEYS"

# ---- keygen ----

for n in mxcached mx1 mx2 ops rogue; do
    "$CTL" keygen "$n" --dir "$KEYS" >"$TMP/keygen.out" || fail "keygen $n"
done
[ "$(stat -c %a "$KEYS/mx1.key")" = 600 ] && [ "$(stat -c %a "$KEYS/mx1.pub")" = 644 ] ||
    fail "key file modes: $(stat -c '%n %a' "$KEYS"/mx1.*)"
grep -q '^secret_key = "' "$KEYS/mx1.key" && ! grep -q secret "$KEYS/mx1.pub" ||
    fail "the secret key is missing from NAME.key or present in NAME.pub"
pub=$(sed -n 's/^public_key = "\(.*\)";$/\1/p' "$KEYS/rogue.pub")
grep -qF "public key  $pub" "$TMP/keygen.out" || fail "keygen did not print the public key: $(cat "$TMP/keygen.out")"
before=$(md5sum "$KEYS/mx1.key")
rc=0
"$CTL" keygen mx1 --dir "$KEYS" 2>"$TMP/err" || rc=$?
[ $rc -eq 2 ] && grep -q 'exists (use --force to replace it)' "$TMP/err" &&
    [ "$(md5sum "$KEYS/mx1.key")" = "$before" ] || fail "keygen over an existing pair: rc=$rc $(cat "$TMP/err")"
rc=0
"$CTL" keygen 'bad/name' --dir "$KEYS" 2>"$TMP/err" || rc=$?
[ $rc -eq 2 ] && grep -q "invalid key name" "$TMP/err" || fail "keygen bad/name: rc=$rc $(cat "$TMP/err")"
"$CTL" keygen spare --dir "$KEYS" >/dev/null && "$CTL" keygen spare --dir "$KEYS" --force >/dev/null ||
    fail "keygen --force"
ok "keygen: NAME.key 0600 with the secret, NAME.pub 0644 without, no overwrite without --force, names checked"

# ---- the service with CURVE ----

write_mxcached_conf() { # write_mxcached_conf FILE CLIENT_KEYS
    cat >"$1" <<EOF
server: { listen = ["tcp://127.0.0.1:$MXPORT"]; workers = 2; };
store: { path = "$TMP/db"; sync = false; };
log: { target = "stderr"; level = "debug"; };
greylist: { delay = "1h"; };
metrics: { listen = "127.0.0.1:$METRICS"; };
security: {
  key_file = "$KEYS/mxcached.key";
  client_keys = [ $2 ];
  admin_keys = [ "$KEYS/ops.pub" ];
};
EOF
}
write_mxcached_conf "$TMP/mxcached.conf" "\"$KEYS/mx1.pub\", \"$(sed -n 's/^public_key = "\(.*\)";$/\1/p' "$KEYS/mx2.pub")\""

wait_port() { # wait_port PORT PID NAME
    for _ in $(seq 1 150); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || fail "$3 exited: $(tail -n 5 "$TMP/$3.log")"
        sleep 0.1
    done
    fail "$3 does not listen on $1"
}
start_mxcached() {
    "$MXCACHED" --config "$TMP/mxcached.conf" --foreground --allow-root >>"$TMP/mxcached.log" 2>&1 &
    MXPID=$!
    wait_port "$METRICS" "$MXPID" mxcached
}
scrape() {
    curl -sS --max-time 5 "http://127.0.0.1:$METRICS/metrics" >"$TMP/scrape" || fail "scrape failed"
}
metric() { # metric NAME{LABELS}: the value, or "absent"
    awk -v m="$1" '$1 == m { print $2; f = 1 } END { if (!f) print "absent" }' "$TMP/scrape"
}
expect() { # expect NAME{LABELS} VALUE
    local v
    v=$(metric "$1")
    [ "$v" = "$2" ] || fail "$1 is $v, expected $2"
}

start_mxcached
grep -q "LISTEN endpoint=tcp://127.0.0.1:$MXPORT security=curve" "$TMP/mxcached.log" &&
    ! grep -q INSECURE "$TMP/mxcached.log" || fail "start log: $(cat "$TMP/mxcached.log")"
ok "mxcached starts with CURVE (LISTEN security=curve, no INSECURE line)"

CTLS=("$CTL" --server "tcp://127.0.0.1:$MXPORT" --timeout 2s)
ctl_as() { # ctl_as KEYNAME SERVERKEY ARGS...: output in $TMP/out, $TMP/err; returns its status
    local k=$1 s=$2
    shift 2
    local rc=0
    "${CTLS[@]}" --key "$KEYS/$k.key" --server-key "$s" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
    return $rc
}

ctl_as ops "$KEYS/mxcached.pub" whitelist add client 192.0.2.0/24 --comment test || fail "admin whitelist add: $(cat "$TMP/err")"
ctl_as ops "$(sed -n 's/^public_key = "\(.*\)";$/\1/p' "$KEYS/mxcached.pub")" whitelist list ||
    fail "admin with the server key as Z85 text: $(cat "$TMP/err")"
grep -q '192.0.2.0/24' "$TMP/out" || fail "whitelist list: $(cat "$TMP/out")"
ok "an admin key changes state (whitelist add), the server key given as a file or as Z85 text"

rc=0
ctl_as mx1 "$KEYS/mxcached.pub" whitelist del client 192.0.2.0/24 || rc=$?
[ $rc -eq 1 ] && grep -q "denied: this client's key may not send admin requests" "$TMP/err" ||
    fail "client key whitelist del: rc=$rc $(cat "$TMP/err")"
rc=0
ctl_as mx1 "$KEYS/mxcached.pub" flush greylist --yes || rc=$?
[ $rc -eq 1 ] && grep -q "denied" "$TMP/err" || fail "client key flush: rc=$rc $(cat "$TMP/err")"
ctl_as mx1 "$KEYS/mxcached.pub" whitelist list && grep -q '192.0.2.0/24' "$TMP/out" ||
    fail "client key whitelist list: $(cat "$TMP/err")"
ctl_as mx1 "$KEYS/mxcached.pub" stats || fail "client key stats: $(cat "$TMP/err")"
grep -q "AUTH result=denied reason=admin_request name=mx1" "$TMP/mxcached.log" || fail "no AUTH line for the refused admin request"
ok "a client key may read (whitelist list, stats) but its flush and whitelist del are refused (ERROR_DENIED, exit 1, logged)"

rc=0
ctl_as rogue "$KEYS/mxcached.pub" stats || rc=$?
[ $rc -eq 3 ] && grep -q "the service refused this client" "$TMP/err" ||
    fail "unknown key: rc=$rc $(cat "$TMP/err")"
grep -qF "AUTH result=denied reason=unknown_key address=127.0.0.1 mechanism=CURVE key=$pub" "$TMP/mxcached.log" ||
    fail "no AUTH line naming the unknown key"
ok "an unknown key gets no answer (exit 3); mxcachectl says the service refused it; the service logs the key"

rc=0
ctl_as ops "$KEYS/rogue.pub" stats || rc=$?
[ $rc -eq 3 ] && grep -Eq "handshake failed.*not the configured server key|closed the connection during the handshake: wrong server key" "$TMP/err" ||
    fail "wrong server key: rc=$rc $(cat "$TMP/err")"
ok "a wrong server key is detected by the client: \"$(sed 's/^mxcachectl: //' "$TMP/err" | cut -c1-150)...\""

rc=0
"${CTLS[@]}" stats >"$TMP/out" 2>"$TMP/err" || rc=$?
[ $rc -eq 3 ] && grep -q "the service uses CURVE" "$TMP/err" || fail "plain client: rc=$rc $(cat "$TMP/err")"
rc=0
"${CTLS[@]}" --key "$KEYS/ops.key" stats >"$TMP/out" 2>"$TMP/err" || rc=$?
[ $rc -eq 2 ] && grep -q "CURVE needs both --key" "$TMP/err" || fail "--key alone: rc=$rc $(cat "$TMP/err")"
cp "$KEYS/ops.key" "$TMP/open.key"
chmod 644 "$TMP/open.key"
rc=0
"${CTLS[@]}" --key "$TMP/open.key" --server-key "$KEYS/mxcached.pub" stats >"$TMP/out" 2>"$TMP/err" || rc=$?
[ $rc -eq 2 ] && grep -q "readable by others (mode 0644)" "$TMP/err" || fail "world-readable secret key: rc=$rc $(cat "$TMP/err")"
ok "a plain client is told the service uses CURVE; --key alone and a world-readable secret key are refused"

scrape
expect 'mxcache_auth_denied_total{reason="admin_request"}' 2
v=$(metric 'mxcache_auth_denied_total{reason="unknown_key"}')
[ "$v" != absent ] && [ "$v" -ge 1 ] || fail "auth_denied unknown_key: $v"
ok "metrics: auth_denied_total admin_request 2, unknown_key $v"

# ---- the policy hook with CURVE ----

write_policy_conf() { # write_policy_conf FILE KEYNAME
    cat >"$1" <<EOF
server: { listen = ["inet:127.0.0.1:$HOOK"]; idle_timeout = "60s"; };
service: { endpoints = ["tcp://127.0.0.1:$MXPORT"]; timeout = "1500ms"; ping_interval = "0";
  mx_name = "mx-test"; server_key = "$KEYS/mxcached.pub"; key_file = "$KEYS/$2.key"; };
metrics: { listen = ""; };
log: { target = "stderr"; level = "debug"; };
EOF
}
request() { # request RECIPIENT: one policy request on stdout
    printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=198.51.100.7\n'
    printf 'sender=a@example.org\nrecipient=%s\n\n' "$1"
}
ask_stdio() { # ask_stdio KEYNAME RECIPIENT: the first answer line of a --stdio hook
    write_policy_conf "$TMP/policy-$1.conf" "$1"
    request "$2" | timeout 20 "$POLICY" --config "$TMP/policy-$1.conf" --stdio --allow-root 2>/dev/null | head -n 1
}
a=$(ask_stdio mx1 one@example.net)
case "$a" in "action=450 4.7.1 Greylisted"*) ;; *) fail "mx1 (file key) answer: '$a'" ;; esac
a=$(ask_stdio mx2 two@example.net)
case "$a" in "action=450 4.7.1 Greylisted"*) ;; *) fail "mx2 (Z85 key) answer: '$a'" ;; esac
a=$(ask_stdio rogue three@example.net)
[ "$a" = "action=451 4.3.0 Temporary policy service failure, try again later" ] || fail "rogue hook: '$a'"
ok "hooks with listed keys get the service's answer (greylisted); an unlisted hook gives its 4xx fallback"

rc=0
printf 'service: { server_key = "%s"; };\n' "$KEYS/mxcached.pub" >"$TMP/half.conf"
"$POLICY" --config "$TMP/half.conf" --check-config >"$TMP/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "half.conf:1: service.server_key: service.server_key and service.key_file go together" "$TMP/out" ||
    fail "hook with server_key only: rc=$rc $(cat "$TMP/out")"
ok "hook config: server_key without key_file is an error with FILE:LINE"

# A hook in daemon mode keeps its connection: a key taken off client_keys by SIGHUP stops being
# answered on that very connection, and is answered again once listed again.
write_policy_conf "$TMP/policy-daemon.conf" mx1
"$POLICY" --config "$TMP/policy-daemon.conf" --foreground --allow-root >>"$TMP/policy.log" 2>&1 &
POLPID=$!
wait_port "$HOOK" "$POLPID" policy
exec {C}<>/dev/tcp/127.0.0.1/"$HOOK"
ask() { # ask RECIPIENT: ANSWER set from the hook's reply on connection C
    request "$1" >&$C
    ANSWER=
    local line
    while IFS= read -r -t 20 -u $C line; do
        line=${line%$'\r'}
        [ -z "$line" ] && return 0
        [ -z "$ANSWER" ] && ANSWER=${line#action=}
    done
    fail "no answer from the hook for $1"
}
ask d1@example.net
case "$ANSWER" in "450 4.7.1 Greylisted"*) ;; *) fail "daemon hook before reload: '$ANSWER'" ;; esac
write_mxcached_conf "$TMP/mxcached.conf" "\"$KEYS/mx2.pub\""
kill -HUP "$MXPID"
for _ in $(seq 1 50); do grep -q "RELOAD result=ok" "$TMP/mxcached.log" && break; sleep 0.1; done
grep -q "RELOAD result=ok" "$TMP/mxcached.log" || fail "reload: $(tail -n 5 "$TMP/mxcached.log")"
ask d2@example.net
[ "$ANSWER" = "451 4.3.0 Temporary policy service failure, try again later" ] || fail "revoked key: '$ANSWER'"
scrape
v=$(metric 'mxcache_auth_denied_total{reason="revoked_key"}')
[ "$v" != absent ] && [ "$v" -ge 1 ] || fail "auth_denied revoked_key: $v"
write_mxcached_conf "$TMP/mxcached.conf" "\"$KEYS/mx1.pub\""
kill -HUP "$MXPID"
for _ in $(seq 1 50); do [ "$(grep -c "RELOAD result=ok" "$TMP/mxcached.log")" -ge 2 ] && break; sleep 0.1; done
ask d3@example.net
case "$ANSWER" in "450 4.7.1 Greylisted"*) ;; *) fail "key listed again: '$ANSWER'" ;; esac
exec {C}>&-
ok "SIGHUP revokes a key on its open connection (fallback 451, revoked_key $v) and restores it when listed again"

# A key file that cannot be used stops a reload without harm.
write_mxcached_conf "$TMP/mxcached.conf" "\"$KEYS/nonexistent.pub\""
kill -HUP "$MXPID"
for _ in $(seq 1 50); do grep -q "RELOAD result=refused" "$TMP/mxcached.log" && break; sleep 0.1; done
grep -q 'security.client_keys\[0\]: cannot read key file .*nonexistent.pub' "$TMP/mxcached.log" ||
    fail "reload with a missing key file: $(tail -n 5 "$TMP/mxcached.log")"
a=$(ask_stdio mx1 four@example.net)
case "$a" in "action=450 4.7.1 Greylisted"*) ;; *) fail "after a refused reload: '$a'" ;; esac
ok "a reload naming a missing key file is refused with the file named; the running keys stay"
e2e_stop_pid "$POLPID" || fail "the hook did not stop cleanly"
POLPID=
e2e_stop_pid "$MXPID" || fail "mxcached did not stop cleanly"
MXPID=

# ---- the service's own key file ----

cp "$KEYS/mxcached.key" "$TMP/loose.key"
chmod 604 "$TMP/loose.key"
sed "s|$KEYS/mxcached.key|$TMP/loose.key|" "$TMP/mxcached.conf" >"$TMP/loose.conf"
sed -i "s|$KEYS/nonexistent.pub|$KEYS/mx1.pub|" "$TMP/loose.conf"
rc=0
timeout 20 "$MXCACHED" --config "$TMP/loose.conf" --foreground --allow-root >"$TMP/loose.log" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "security.key_file: key file $TMP/loose.key holds a secret key and is readable by others" "$TMP/loose.log" ||
    fail "world-readable service key: rc=$rc $(cat "$TMP/loose.log")"
ok "mxcached refuses a secret key file that others can read"

# ---- plain ZeroMQ only where nobody else can reach it ----

printf 'server = {\n  listen = [ "tcp://0.0.0.0:%s" ];\n};\n' "$PLAINPORT" >"$TMP/plain.conf"
rc=0
"$MXCACHED" --config "$TMP/plain.conf" --check-config >"$TMP/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "plain.conf:2: server.listen: \"tcp://0.0.0.0:$PLAINPORT\" is reachable from other hosts but security.key_file is empty" "$TMP/out" ||
    fail "plain on 0.0.0.0: rc=$rc $(cat "$TMP/out")"
printf 'security = { allow_insecure = true; };\n' >>"$TMP/plain.conf"
"$MXCACHED" --config "$TMP/plain.conf" --check-config >"$TMP/out" 2>&1 || fail "allow_insecure: $(cat "$TMP/out")"
ok "plain ZeroMQ on 0.0.0.0 is a config error (FILE:LINE) unless security.allow_insecure"

cat >"$TMP/plain.conf" <<EOF
server: { listen = ["tcp://127.0.0.1:$PLAINPORT"]; workers = 1; };
store: { path = "$TMP/plaindb"; sync = false; };
log: { target = "stderr"; };
metrics: { listen = ""; };
EOF

# ---- root ----

rc=0
timeout 20 "$MXCACHED" --config "$TMP/plain.conf" --foreground >"$TMP/root.log" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "refusing to run as root: set server.user (or --user)" "$TMP/root.log" ||
    fail "mxcached as root: rc=$rc $(cat "$TMP/root.log")"
rc=0
timeout 20 "$POLICY" --config "$TMP/policy-mx1.conf" --foreground >"$TMP/root.log" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "refusing to run as root" "$TMP/root.log" || fail "hook as root: rc=$rc $(cat "$TMP/root.log")"
rc=0
timeout 20 "$MXCACHED" --config "$TMP/plain.conf" --foreground --user no-such-user-xyz >"$TMP/root.log" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q 'no such user "no-such-user-xyz"' "$TMP/root.log" || fail "unknown user: rc=$rc $(cat "$TMP/root.log")"
ok "both daemons refuse to run as root without --allow-root or a user; an unknown user is an error"

# uids_are PID UID - whether the real, effective, saved and file-system uids of PID are all UID
# (UIDS: what they are).
uids_are() {
    UIDS=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' /proc/"$1"/status)
    [ "$UIDS" = "$2 $2 $2 $2" ]
}

# Started as root with --user nobody: the endpoint is bound, then the process is nobody's, and the
# store it creates belongs to nobody.
mkdir -m 700 "$TMP/plaindb"
chown nobody "$TMP/plaindb"
"$MXCACHED" --config "$TMP/plain.conf" --foreground --user nobody >>"$TMP/nobody.log" 2>&1 &
OTHERPID=$!
wait_port "$PLAINPORT" "$OTHERPID" nobody
nobody_uid=$(id -u nobody)
for _ in $(seq 1 50); do grep -q START "$TMP/nobody.log" && break; sleep 0.1; done
uids_are "$OTHERPID" "$nobody_uid" || fail "mxcached uids after the drop: $UIDS"
grep -q "PRIVILEGES user=nobody uid=$nobody_uid" "$TMP/nobody.log" || fail "no PRIVILEGES line: $(cat "$TMP/nobody.log")"
grep -q "INSECURE endpoint=tcp://127.0.0.1:$PLAINPORT" "$TMP/nobody.log" || fail "no INSECURE line for the plain endpoint"
"$CTL" --server "tcp://127.0.0.1:$PLAINPORT" --timeout 5s stats >/dev/null || fail "stats from the service running as nobody"
[ -z "$(find "$TMP/plaindb" ! -user nobody)" ] || fail "store files not owned by nobody: $(find "$TMP/plaindb" ! -user nobody)"
ok "mxcached --user nobody: binds as root, then all its uids are nobody's ($nobody_uid), store files nobody's, serves; plain loopback logged INSECURE"

cat >"$TMP/policy-plain.conf" <<EOF
server: { listen = ["inet:127.0.0.1:$HOOK"]; };
service: { endpoints = ["tcp://127.0.0.1:$PLAINPORT"]; ping_interval = "0"; };
metrics: { listen = ""; };
log: { target = "stderr"; };
EOF
"$POLICY" --config "$TMP/policy-plain.conf" --foreground --user nobody >>"$TMP/policy-nobody.log" 2>&1 &
POLPID=$!
wait_port "$HOOK" "$POLPID" policy-nobody
uids_are "$POLPID" "$nobody_uid" || fail "hook uids after the drop: $UIDS"
exec {C}<>/dev/tcp/127.0.0.1/"$HOOK"
ask five@example.net
exec {C}>&-
case "$ANSWER" in "450 4.7.1 Greylisted"*) ;; *) fail "hook as nobody: '$ANSWER'" ;; esac
ok "mxcache-policy --user nobody: listens, then runs as nobody, and answers from the service"

e2e_stop_pid "$POLPID" || fail "the hook running as nobody did not stop cleanly"
POLPID=
e2e_stop_pid "$OTHERPID" || fail "mxcached running as nobody did not stop cleanly"
OTHERPID=
echo "test_security: all $CHECKS checks passed"
