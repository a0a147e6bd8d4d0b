#!/usr/bin/env bash
# Fault: mxcached restarted while the policy hooks are busy. Two mxcache-policy hooks (service
# on tcp, service.timeout 2 s, fallback defer) under continuous load from 24 concurrent
# policy-protocol clients (mxfault-policy: one question in flight per connection, as smtpd;
# three in four with a never-seen greylist triplet, a durable write; one in four from a
# whitelisted client, a read). In each round mxcached is stopped 2.5 s into the load, stays down
# 2 s, and starts again on the same store: round 1 with SIGTERM (it drains and refuses what is
# queued), round 2 with SIGKILL (the hooks' questions in flight get no answer at all); the load
# goes on until 6 s after mxcached answers again. Checked per round:
#   - every question was answered within the hook's service.timeout + 3 s (a read that waited
#     longer counts as a hang), no connection was closed by a hook;
#   - every answer is the service's own (450 4.7.1 with the greylist text, or DUNNO) or the
#     configured fallback (451 4.3.0); never a 5xx, never anything else;
#   - the outage was seen (some fallbacks), and in the last 3 s of the load (which starts 3 s
#     after mxcached answers again) every answer came from the service: the hooks reconnected
#     by themselves;
#   - mxcached came back on the same store, and the hooks are still running.
# The answers per 500 ms are printed, so a failure shows the outage's shape.
#
# usage: test_restart.sh (binaries from the environment, see tests/fault/lib.sh)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
fault_init fault_restart

TIMEOUT_S=2        # service.timeout of the hooks
MARGIN_MS=3000     # a hook must answer within its timeout and this
RECONNECT_S=3      # after mxcached answers again, the hooks have this long to reconnect ...
TAIL_MS=3000       # ... and then every answer must come from the service, for this long
MAX_MS=60000       # the load's own bound
TEXT="Greylisted by the fault test"

e2e_free_port SVC
e2e_free_port HOOK1
e2e_free_port HOOK2
EP="tcp://127.0.0.1:$SVC"
cat >"$FAULT_DIR/mxcached.conf" <<CF
server: { listen = ["$EP"]; workers = 2; };
store: { path = "$FAULT_DIR/db"; };
log: { target = "stderr"; level = "info"; decisions = "off"; };
greylist: { enabled = true; delay = "1h"; reply_text = "$TEXT, retry in {remaining} s"; };
metrics: { listen = ""; };
CF
for n in 1 2; do
    port_var=HOOK$n
    cat >"$FAULT_DIR/policy$n.conf" <<CF
server: { listen = ["inet:127.0.0.1:${!port_var}"]; };
service: { endpoints = ["$EP"]; timeout = "${TIMEOUT_S}s"; mx_name = "mx$n.fault.test"; };
log: { target = "stderr"; level = "info"; };
metrics: { listen = ""; };
CF
done
fault_mxcached mxcached "$FAULT_DIR/mxcached.conf"
fault_wait_ready mxcached "$EP"
fault_ctl "$EP" whitelist add client 198.51.100.0/24 --comment "fault test" >/dev/null
fault_policy policy1 "$FAULT_DIR/policy1.conf"
fault_policy policy2 "$FAULT_DIR/policy2.conf"
e2e_wait_port "$HOOK1"
e2e_wait_port "$HOOK2"
# Both hooks answer from the service before the load starts.
for p in "$HOOK1" "$HOOK2"; do
    a=$(fault_ask "$p" 198.51.100.7 s@warm.test r@warm.test)
    [ "$a" = "action=DUNNO" ] || fault_fail "hook on $p before the load: $a"
done

# field NAME LINE - the number after NAME= in LINE.
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<" $2"; }

round=0
restart_round() { # restart_round SIGNAL
    local sig=$1 out summary rc=0
    round=$((round + 1))
    fault_start load$round "$MXFAULT_POLICY" --server "127.0.0.1:$HOOK1" --server "127.0.0.1:$HOOK2" \
        --conns 24 --duration-ms "$MAX_MS" --deadline-ms $((TIMEOUT_S * 1000 + MARGIN_MS)) \
        --service-text "$TEXT" --whitelisted 198.51.100.9 --whitelisted-every 4 --tail-ms "$TAIL_MS" \
        --tag "rs$round"
    sleep 2.5
    if [ "$sig" = KILL ]; then
        fault_kill mxcached
    else
        fault_stop mxcached 20 || rc=$?
        [ "$rc" -eq 0 ] || fault_fail "round $round: mxcached exited with $rc on SIGTERM"
    fi
    sleep 2
    fault_mxcached mxcached "$FAULT_DIR/mxcached.conf"
    fault_wait_ready mxcached "$EP"
    sleep $((RECONNECT_S + TAIL_MS / 1000))
    fault_running load$round || fault_fail "round $round: the load client ended early"
    # SIGTERM ends the load: it takes the answers still due (at most one deadline) and reports.
    fault_stop load$round $((TIMEOUT_S + MARGIN_MS / 1000 + 5)) || rc=$?
    [ "$rc" -eq 0 ] || fault_fail "round $round: the load client failed ($rc)"
    out=$(cat "$FAULT_DIR/load$round.log")
    printf 'round %d (SIG%s 2.5 s into the load, down 2 s, load until 6 s after the restart): answers per 500 ms\n' "$round" "$sig"
    grep '^t=' <<<"$out" | sed 's/^/   /'
    summary=$(grep '^total=' <<<"$out")
    printf '   %s\n' "$summary"
    LAST=$summary
}

bounded() {
    [ "$(field hangs "$LAST")" = 0 ] && [ "$(field disconnects "$LAST")" = 0 ] ||
        { why="hangs=$(field hangs "$LAST") disconnects=$(field disconnects "$LAST")"; return 1; }
    [ "$(field max_ms "$LAST")" -le $((TIMEOUT_S * 1000 + MARGIN_MS)) ] || { why="max_ms=$(field max_ms "$LAST")"; return 1; }
}
no_5xx() {
    [ "$(field bad5xx "$LAST")" = 0 ] && [ "$(field other "$LAST")" = 0 ] ||
        { why="bad5xx=$(field bad5xx "$LAST") other=$(field other "$LAST") (the answers are on stderr above)"; return 1; }
    [ "$(field total "$LAST")" -gt 0 ] || { why="no answers at all"; return 1; }
}
recovered() {
    [ "$(field fallback "$LAST")" -gt 0 ] || { why="no fallback answer: the outage was not seen"; return 1; }
    [ "$(field tail_service "$LAST")" -gt 0 ] && [ "$(field tail_bad "$LAST")" = 0 ] ||
        { why="last $TAIL_MS ms: service=$(field tail_service "$LAST") other answers=$(field tail_bad "$LAST")"; return 1; }
    fault_running policy1 && fault_running policy2 || { why="a hook died"; return 1; }
}

restart_round TERM
fault_check 1 "SIGTERM: every question answered within timeout + margin, no hang, no closed connection" bounded
fault_check 2 "SIGTERM: only the service's answers or the 451 4.3.0 fallback, never 5xx" no_5xx
fault_check 3 "SIGTERM: fallbacks during the outage, the service's answers again after the restart" recovered
restart_round KILL
fault_check 4 "SIGKILL: every question answered within timeout + margin, no hang, no closed connection" bounded
fault_check 5 "SIGKILL: only the service's answers or the 451 4.3.0 fallback, never 5xx" no_5xx
fault_check 6 "SIGKILL: fallbacks during the outage, the service's answers again after the restart" recovered

rc=0
for n in policy1 policy2; do
    fault_stop $n || rc=$?
    [ $rc -eq 0 ] || fault_fail "$n exited with $rc on SIGTERM"
done
fault_stop mxcached 20 || rc=$?
[ $rc -eq 0 ] || fault_fail "mxcached exited with $rc on SIGTERM"
fault_done
