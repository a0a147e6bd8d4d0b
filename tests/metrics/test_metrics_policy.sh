#!/bin/bash
# Integration test of mxcache-policy's monitoring endpoint (/metrics, /healthz, /readyz) against a
# real mxcached: the figures must move exactly as the traffic predicts.
#
# Usage: test_metrics_policy.sh MXCACHED MXCACHE_POLICY
#   Starts mxcached (temporary store, a free TCP port, its own metrics endpoint off) and the hook
#   (a free policy port, metrics on another free port, service.timeout 1s, ping_interval 1s),
#   speaks the Postfix policy protocol over bash's /dev/tcp and scrapes with curl. Checks:
#   promtool check metrics passes without lint warnings; N service answers give
#   requests_total{answer="service"} N, connections_total and the latency histogram's count N;
#   a local DUNNO, a malformed and an oversized request are counted apart; a hung mxcached
#   (SIGSTOP) gives a fallback counted under reason="timeout"; after mxcached stops
#   (by PID) an idle hook turns /readyz 503 through its ping within ping_interval + timeout,
#   service_up 0, and the next request gets the 4xx fallback counted under
#   fallback_answers_total{reason="unreachable"}; after mxcached restarts on the same endpoint
#   /readyz is 200 again and answers come from the service. Also: a metrics address that cannot
#   be bound stops the hook with exit 1 and a clear error; --stdio ignores metrics.listen; after
#   SIGTERM the hook exits cleanly and its endpoint is gone. Prints one line per check and a total.
#   KEEP_TMP=1 leaves the temporary directory for inspection.
#
# Every wait is bounded (read -t, curl --max-time, polls by a count); every process started here
# is stopped by its PID in the EXIT trap (TERM, then KILL after 5 s).
set -euo pipefail
. "$(dirname "$0")/../e2e/lib.sh" # e2e_free_port, e2e_stop_pid

if [ $# -ne 2 ]; then
    echo "usage: $0 MXCACHED MXCACHE_POLICY" >&2
    exit 2
fi
MXCACHED=$1
POLICY=$2
for t in curl promtool timeout; do
    command -v "$t" >/dev/null 2>&1 || { echo "test_metrics_policy: $t is not installed" >&2; exit 1; }
done

export LC_ALL=C
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mxmetpol.XXXXXX")
MXPID=
POLPID=
CHECKS=0
N=5                # requests answered by the service in the first round
TIMEOUT_MS=1000    # service.timeout
PING_MS=1000       # service.ping_interval
SLACK_MS=4000      # for slow sanitized builds

cleanup() {
    local rc=$?
    e2e_stop_pid "$POLPID" || true
    e2e_stop_pid "$MXPID" || true
    if [ $rc -ne 0 ]; then
        for f in "$TMP"/*.log; do
            [ -f "$f" ] && { echo "== $f"; tail -n 40 "$f"; }
        done >&2
    fi
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap '' PIPE # a write to a connection the hook has closed must fail, not kill the test

fail() {
    echo "test_metrics_policy: FAIL: $*" >&2
    exit 1
}
ok() {
    CHECKS=$((CHECKS + 1))
    echo "ok $CHECKS - $*"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Free ports as the end-to-end tests pick them (outside the ephemeral range, never twice).
free_port() { e2e_free_port "$1"; }
free_port MXPORT
free_port HOOK
free_port METRICS

# ---- configs ----

# mxcached: a fixed default answer (so the service's decision is recognisable), greylisting and
# its own metrics endpoint off when this build knows them.
MXPRINT=$("$MXCACHED" --print-config 2>/dev/null || true)
{
    echo "server: { listen = [\"tcp://127.0.0.1:$MXPORT\"]; workers = 2; };"
    echo "store: { path = \"$TMP/db\"; sync = false; };"
    echo "log: { target = \"stderr\"; level = \"info\"; };"
    echo "policy: { default_action = \"defer\"; default_code = 450; default_status = \"4.7.1\"; default_text = \"test\"; };"
    if grep -q '^greylist = {' <<<"$MXPRINT"; then echo "greylist: { enabled = false; };"; fi
    if grep -q '^metrics = {' <<<"$MXPRINT"; then echo "metrics: { listen = \"\"; };"; fi
} >"$TMP/mxcached.conf"
ANSWER_SERVICE="action=450 4.7.1 test"

write_policy_conf() { # write_policy_conf FILE METRICS_LISTEN
    cat >"$1" <<EOF
server: { listen = ["inet:127.0.0.1:$HOOK"]; idle_timeout = "60s"; };
service: { endpoints = ["tcp://127.0.0.1:$MXPORT"]; timeout = "${TIMEOUT_MS}ms";
  ping_interval = "${PING_MS}ms"; fallback = "defer"; mx_name = "mx-test"; };
metrics: { listen = "$2"; };
log: { target = "stderr"; level = "debug"; };
EOF
}
write_policy_conf "$TMP/policy.conf" "127.0.0.1:$METRICS"

# ---- helpers ----

start_mxcached() {
    "$MXCACHED" --config "$TMP/mxcached.conf" --foreground --allow-root >>"$TMP/mxcached.log" 2>&1 &
    MXPID=$!
    for _ in $(seq 1 150); do
        (exec 3<>/dev/tcp/127.0.0.1/"$MXPORT") 2>/dev/null && return 0
        kill -0 "$MXPID" 2>/dev/null || fail "mxcached exited"
        sleep 0.1
    done
    fail "mxcached does not listen on $MXPORT"
}

http_code() { # http_code PATH - the status code (000: no answer); body in $TMP/body
    curl -s --max-time 5 -o "$TMP/body" -w '%{http_code}' "http://127.0.0.1:$METRICS$1" || true
}

# wait_ready CODE MAX_MS - until /readyz answers CODE; prints how long it took
wait_ready() {
    local want=$1 max=$2 t0 code
    t0=$(now_ms)
    while :; do
        code=$(http_code /readyz)
        [ "$code" = "$want" ] && { echo $(($(now_ms) - t0)); return 0; }
        [ $(($(now_ms) - t0)) -le "$max" ] || fail "/readyz is $code ($(cat "$TMP/body" 2>/dev/null)), not $want, after ${max} ms"
        sleep 0.1
    done
}

scrape() { # scrape - /metrics into $TMP/scrape
    local code
    code=$(curl -s --max-time 5 -o "$TMP/scrape" -w '%{http_code}' "http://127.0.0.1:$METRICS/metrics" || true)
    [ "$code" = 200 ] || fail "/metrics answered $code"
}

metric() { # metric NAME{LABELS} - its value in the last scrape ("" when absent)
    awk -v n="$1" '$1 == n { print $2 }' "$TMP/scrape"
}

expect() { # expect NAME{LABELS} VALUE
    local v
    v=$(metric "$1")
    [ "$v" = "$2" ] || fail "$1 is '${v}', expected $2"
}

# request STATE RCPT - a request as Postfix's smtpd sends it
request() {
    printf 'request=smtpd_access_policy\nprotocol_state=%s\nprotocol_name=ESMTP\nclient_address=192.0.2.10\nclient_name=unknown\nreverse_client_name=unknown\nhelo_name=client.example\nsender=sender@example.org\nrecipient=%s\nrecipient_count=0\nqueue_id=\ninstance=1a2b.3c4d.1\nsize=0\n\n' "$1" "$2"
}

# answer FD - the next answer (its lines joined), or fails; returns 1 on EOF
answer() {
    local fd=$1 line ans="" rc
    while :; do
        rc=0
        IFS= read -r -t 10 -u "$fd" line || rc=$?
        [ $rc -eq 0 ] || { [ $rc -eq 1 ] && [ -z "$ans" ] && return 1; fail "no answer (read $rc)"; }
        [ -z "$line" ] && { ANSWER=$ans; return 0; }
        ans="$ans$line"
    done
}

ask() { # ask FD STATE RCPT - sends a request, sets ANSWER
    request "$2" "$3" >&"$1"
    answer "$1" || fail "connection closed instead of an answer"
}

# ---- the run ----

start_mxcached
"$POLICY" --config "$TMP/policy.conf" --foreground --allow-root >>"$TMP/policy.log" 2>&1 &
POLPID=$!
for _ in $(seq 1 150); do
    [ "$(http_code /healthz)" = 200 ] && break
    kill -0 "$POLPID" 2>/dev/null || fail "mxcache-policy exited"
    sleep 0.1
done
[ "$(http_code /healthz)" = 200 ] && [ "$(cat "$TMP/body")" = ok ] || fail "/healthz is not 200 ok"
ok "/healthz 200 ok"
took=$(wait_ready 200 $((TIMEOUT_MS + SLACK_MS)))
ok "/readyz 200 after the first ping (${took} ms)"
[ "$(http_code /nosuch)" = 404 ] || fail "/nosuch is not 404"
ok "/nosuch 404"

scrape
promtool check metrics <"$TMP/scrape" >"$TMP/promtool.out" 2>&1 || fail "promtool: $(cat "$TMP/promtool.out")"
[ ! -s "$TMP/promtool.out" ] || fail "promtool lint: $(cat "$TMP/promtool.out")"
ok "promtool check metrics: no errors, no lint warnings"
expect 'mxcache_policy_connections_total' 0
expect 'mxcache_policy_service_up' 1
grep -q '^mxcache_policy_build_info{version="[^"]*"} 1$' "$TMP/scrape" || fail "no build_info"
grep -q '^process_resident_memory_bytes ' "$TMP/scrape" || fail "no process_* families"
ok "before any request: no connection counted, service_up 1, build_info, process_*"

# N questions answered by the service, on one connection kept open as Postfix does.
exec {C1}<>/dev/tcp/127.0.0.1/"$HOOK"
for i in $(seq 1 $N); do
    ask $C1 RCPT "user$i@example.net"
    [ "$ANSWER" = "$ANSWER_SERVICE" ] || fail "answer $i: '$ANSWER'"
done
scrape
expect 'mxcache_policy_connections_total' 1
expect 'mxcache_policy_connections_open' 1
expect 'mxcache_policy_requests_total{answer="service"}' $N
expect 'mxcache_policy_requests_total{answer="local"}' 0
expect 'mxcache_policy_requests_total{answer="fallback"}' 0
expect 'mxcache_policy_request_duration_seconds_count' $N
expect 'mxcache_policy_request_duration_seconds_bucket{le="+Inf"}' $N
for r in timeout unreachable error overload send_failed; do
    expect "mxcache_policy_fallback_answers_total{reason=\"$r\"}" 0
done
awk '$1 == "mxcache_policy_request_duration_seconds_sum" { exit !($2 > 0 && $2 < 10) }' "$TMP/scrape" ||
    fail "latency sum $(metric mxcache_policy_request_duration_seconds_sum)"
ok "$N service answers: requests_total{answer=service} $N, connections 1 (1 open), latency count $N"

# A state the service is not asked about is answered locally.
ask $C1 DATA "user@example.net"
[ "$ANSWER" = "action=DUNNO" ] || fail "DATA: '$ANSWER'"
scrape
expect 'mxcache_policy_requests_total{answer="local"}' 1
expect 'mxcache_policy_request_duration_seconds_count' $((N + 1))
ok "a DATA request: requests_total{answer=local} 1"

# A malformed and an oversized request: each closes its own connection and is counted apart.
# The hook may close after the first bad line while the rest is still being written, so a
# write error (EPIPE) here is expected, not a failure.
exec {B}<>/dev/tcp/127.0.0.1/"$HOOK"
printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >&$B 2>/dev/null || true
! answer $B || fail "malformed: got an answer '$ANSWER'"
exec {B}>&-
exec {B}<>/dev/tcp/127.0.0.1/"$HOOK"
{ printf 'sender='; head -c 3000 /dev/zero | tr '\0' x; printf '\n\n'; } >&$B 2>/dev/null || true
! answer $B || fail "oversized: got an answer '$ANSWER'"
exec {B}>&-
scrape
expect 'mxcache_policy_requests_malformed_total' 1
expect 'mxcache_policy_requests_oversized_total' 1
expect 'mxcache_policy_connections_total' 3
expect 'mxcache_policy_connections_open' 1
ok "malformed 1, oversized 1, connections_total 3, open 1"

# The service hangs (SIGSTOP) with its connection up: a question runs into service.timeout, which
# is told apart from an unreachable service. ZeroMQ's heartbeat drops the connection only after
# 3 s, well after the 1 s timeout.
kill -STOP "$MXPID"
ask $C1 RCPT "hung@example.net"
scrape
code=$(http_code /readyz)
kill -CONT "$MXPID"
case "$ANSWER" in
action=451\ 4.3.0\ *) ;;
*) fail "fallback answer while hung: '$ANSWER'" ;;
esac
[ "$code" = 503 ] && grep -q 'no answer within service.timeout' "$TMP/body" ||
    fail "/readyz while hung: $code $(cat "$TMP/body")"
expect 'mxcache_policy_service_up' 0
expect 'mxcache_policy_fallback_answers_total{reason="timeout"}' 1
expect 'mxcache_policy_fallback_answers_total{reason="unreachable"}' 0
expect 'mxcache_policy_requests_total{answer="fallback"}' 1
took=$(wait_ready 200 15000)
ok "a hung service: fallback reason=timeout 1, service_up 0, /readyz 503; 200 again ${took} ms after SIGCONT"

# The service goes away: an idle hook notices through its ping.
e2e_stop_pid "$MXPID" || fail "mxcached did not exit cleanly"
MXPID=
took=$(wait_ready 503 $((PING_MS + TIMEOUT_MS + SLACK_MS)))
grep -q 'service unreachable' "$TMP/body" || fail "/readyz reason: $(cat "$TMP/body")"
scrape
expect 'mxcache_policy_service_up' 0
expect 'mxcache_policy_requests_total{answer="fallback"}' 1
ok "mxcached stopped: /readyz 503 \"$(cat "$TMP/body")\" after ${took} ms (bound $((PING_MS + TIMEOUT_MS)) ms + slack), service_up 0"

t0=$(now_ms)
ask $C1 RCPT "late@example.net"
took=$(($(now_ms) - t0))
case "$ANSWER" in
action=451\ 4.3.0\ *) ;;
*) fail "fallback answer: '$ANSWER'" ;;
esac
[ $took -le $((TIMEOUT_MS + SLACK_MS)) ] || fail "fallback after $took ms"
scrape
expect 'mxcache_policy_requests_total{answer="fallback"}' 2
expect 'mxcache_policy_fallback_answers_total{reason="unreachable"}' 1
expect 'mxcache_policy_fallback_answers_total{reason="timeout"}' 1
expect 'mxcache_policy_request_duration_seconds_count' $((N + 3))
expect 'mxcache_policy_service_up' 0
ok "a request while down: '$ANSWER' (4xx) after $took ms, fallback_answers_total{reason=unreachable} 1"

# The service comes back on the same endpoint.
start_mxcached
took=$(wait_ready 200 15000)
ask $C1 RCPT "back@example.net"
[ "$ANSWER" = "$ANSWER_SERVICE" ] || fail "after the restart: '$ANSWER'"
scrape
expect 'mxcache_policy_service_up' 1
expect 'mxcache_policy_requests_total{answer="service"}' $((N + 1))
ok "mxcached restarted: /readyz 200 after ${took} ms, the service answers again"

# Every answer was timed, and the scrape still passes promtool.
total=0
for a in service local fallback; do
    total=$((total + $(metric "mxcache_policy_requests_total{answer=\"$a\"}")))
done
expect 'mxcache_policy_request_duration_seconds_count' $total
promtool check metrics <"$TMP/scrape" >"$TMP/promtool.out" 2>&1 || fail "promtool: $(cat "$TMP/promtool.out")"
[ ! -s "$TMP/promtool.out" ] || fail "promtool lint: $(cat "$TMP/promtool.out")"
pings=$(metric mxcache_policy_service_pings_total)
[ "$pings" -ge 2 ] || fail "pings_total $pings"
ok "latency count = sum of requests_total ($total); pings sent: $pings; promtool still clean"

# A second hook on the same metrics port cannot bind it: exit 1 with a clear error.
free_port HOOK2
sed "s/127.0.0.1:$HOOK/127.0.0.1:$HOOK2/" "$TMP/policy.conf" >"$TMP/policy2.conf"
rc=0
timeout 20 "$POLICY" --config "$TMP/policy2.conf" --foreground --allow-root >"$TMP/policy2.log" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "a second hook on metrics port $METRICS exited $rc"
grep -q "cannot serve metrics on 127.0.0.1:$METRICS" "$TMP/policy2.log" || fail "no clear error: $(cat "$TMP/policy2.log")"
ok "metrics address in use: exit 1, \"$(grep -m1 -o 'cannot serve metrics[^"]*' "$TMP/policy2.log")\""

# --stdio ignores metrics.listen (the port is taken, yet it answers).
out=$(request RCPT stdio@example.net | timeout 20 "$POLICY" --config "$TMP/policy.conf" --stdio --allow-root 2>/dev/null) ||
    fail "--stdio failed"
[ "$(head -n1 <<<"$out")" = "$ANSWER_SERVICE" ] || fail "--stdio answered '$out'"
ok "--stdio ignores metrics.listen and answers"

# SIGTERM: the hook stops being ready before it goes.
exec {C1}>&-
kill -TERM "$POLPID"
rc=0
wait "$POLPID" || rc=$?
POLPID=
[ $rc -eq 0 ] || fail "mxcache-policy exit status $rc"
grep -q 'EXIT result=clean' "$TMP/policy.log" || fail "no clean EXIT line"
[ "$(http_code /healthz)" = 000 ] || fail "the metrics endpoint outlived the process"
ok "SIGTERM: clean exit, endpoint closed"

echo "test_metrics_policy: $CHECKS checks passed"
