#!/usr/bin/env bash
# Fault: verification backends that misbehave, through the whole path: the Check straight to
# mxcached (mxfault-client check) and the same question through mxcache-policy in the Postfix
# policy protocol (as smtpd asks it). tests/check_probe.c already covers each misbehaviour at the
# probe engine; here the service and the hook are under test. One route per misbehaviour, each to
# a real server on loopback:
#   tarpit.test    accepts TCP and never speaks (mxtest-smtpd: greeting stall)
#   drop.test      closes the connection after MAIL FROM (mxtest-smtpd: mail drop)
#   reset.test     resets it (TCP RST) after MAIL FROM (mxfault-rstd)
#   slow.test      answers RCPT after 1 s (under the route's 2 s command_timeout): the backend's
#                  own 250 or 550; any other recipient after 3.5 s (over the timeout)
#   endless.test   answers RCPT with "250-x" lines forever (mxtest-smtpd: endless)
#   overlong.test  answers RCPT with one 16 MB line (mxtest-smtpd: overlong)
#   ok.test        a healthy backend, and nodomain.test has no route (the default answer)
# Checks:
#   1-6. each misbehaviour gives 4xx (450 4.1.1, rule verify_tempfail or verify_pending) straight
#        from mxcached and through the hook, never 5xx, within bounded time (every wait has a
#        deadline; a missing answer fails), and no address is cached as negative; the slow
#        backend's answers under its timeout are passed on as the backend gave them (its 550
#        word for word: a 5xx the backend said);
#   7.   while the tarpit holds a probe (and its Check waits for verify.wait), other questions
#        (no-route, healthy-route, stats) are answered: the tarpit's answer comes after theirs;
#   8.   40 probes against the endless and the 16 MB replies: each connection is closed by the
#        probe (the server logs reason=peer for every one), and mxcached's resident memory grows
#        by less than RSS_LIMIT_MB;
#   9.   the only negative answer in the cache is the one the slow backend gave (550).
#
# usage: test_backends.sh (binaries from the environment, see tests/fault/lib.sh)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
fault_init fault_backends

RSS_LIMIT_MB=${RSS_LIMIT_MB:-64}
HOOK_TIMEOUT_S=8   # service.timeout of the hook: above verify.wait (4 s)
ASK_S=15           # a bounded wait for each answer: the hook's timeout and a margin

# smtpd NAME SCRIPT - an mxtest-smtpd with SCRIPT on a free port; sets PORT_<NAME>.
smtpd() {
    local name=$1 script=$2 port
    printf '%s\n' "$script" >"$FAULT_DIR/$name.script"
    fault_start "$name" "$MXTEST_SMTPD" --listen 127.0.0.1:0 --script "$FAULT_DIR/$name.script" \
        --log "$FAULT_DIR/$name.smtpd" --port-file "$FAULT_DIR/$name.port"
    for _ in $(seq 1 150); do [ -s "$FAULT_DIR/$name.port" ] && break; sleep 0.1; done
    port=$(cat "$FAULT_DIR/$name.port" 2>/dev/null) || fault_fail "$name: no port"
    printf -v "PORT_$name" '%s' "$port"
}
smtpd tarpit "greeting stall"
smtpd drop "mail drop"
smtpd slow "rcpt under-ok@slow.test slow 1000 250 2.1.5 Ok
rcpt under-no@slow.test slow 1000 550 5.1.1 <ADDR>: Recipient address rejected: slowly unknown
rcpt * slow 3500 250 2.1.5 Ok"
smtpd endless "rcpt * endless"
smtpd overlong "rcpt * overlong 16777216"
smtpd ok "rcpt * 250 2.1.5 Ok"
fault_start rstd "$MXFAULT_RSTD" --listen 127.0.0.1:0 --reset-at MAIL --log "$FAULT_DIR/rstd.events"
for _ in $(seq 1 150); do grep -q '^port=' "$FAULT_DIR/rstd.log" 2>/dev/null && break; sleep 0.1; done
PORT_rst=$(sed -n 's/^port=//p' "$FAULT_DIR/rstd.log")
[ -n "$PORT_rst" ] || fault_fail "mxfault-rstd: no port"

e2e_free_port SVC
e2e_free_port HOOK
EP="tcp://127.0.0.1:$SVC"
ROUTES=""
route() { # route DOMAIN PORT [EXTRA] - appends a route to $ROUTES
    ROUTES+="${ROUTES:+,
}    { domains = [ \"$1\" ]; hosts = [ \"127.0.0.1:$2\" ]; helo = \"mxcached.fault.test\";
      connect_timeout = \"2s\"; command_timeout = \"2s\"; ${3:-} }"
}
route tarpit.test "$PORT_tarpit" 'greeting_timeout = "6s";'
route drop.test "$PORT_drop"
route reset.test "$PORT_rst"
route slow.test "$PORT_slow"
route endless.test "$PORT_endless" 'max_sessions = 16;'
route overlong.test "$PORT_overlong" 'max_sessions = 16;'
route ok.test "$PORT_ok"
cat >"$FAULT_DIR/mxcached.conf" <<CF
server: { listen = ["$EP"]; workers = 2; };
store: { path = "$FAULT_DIR/db"; };
log: { target = "stderr"; level = "info"; };
greylist: { enabled = false; };
metrics: { listen = ""; };
verify: {
  wait = "4s";
  client_probes_per_minute = 0;  # many probes from one test client
  circuit_failures = 1000;       # each failure must reach a probe, not an open circuit
  acceptall_interval = 0;        # no accept-all probes of our own
  routes = (
$ROUTES
  );
};
CF
fault_start_pair "$EP" "$HOOK" "${HOOK_TIMEOUT_S}s"

# direct CLIENT RCPT - the Check straight to mxcached: "rule=... action=... code=..." line.
direct() {
    "$MXFAULT_CLIENT" check --server "$EP" --timeout-ms $((ASK_S * 1000)) "$1" "s@sender.test" "$2" || true
}
# hook RCPT - the same through mxcache-policy: the action line.
hook() { fault_ask "$HOOK" 192.0.2.10 s@sender.test "$1" "$ASK_S"; }

# tempfail_both DOMAIN - a new recipient of DOMAIN straight and through the hook: both 450
# 4.1.1 (verification failed temporarily or still running), not cached as negative.
n=0
tempfail_both() {
    local dom=$1 a b d h st
    n=$((n + 1))
    a="direct$n@$dom" b="hook$n@$dom"
    d=$(direct 192.0.2.10 "$a")
    h=$(hook "$b")
    case $d in
    "rule=verify_tempfail action=defer code=450 status=4.1.1 "* | "rule=verify_pending action=defer code=450 status=4.1.1 "*) ;;
    *) why="straight: $d"; return 1 ;;
    esac
    case $h in
    "action=450 4.1.1 "*) ;;
    *) why="through the hook: $h"; return 1 ;;
    esac
    for addr in "$a" "$b"; do
        if st=$(fault_ctl "$EP" --json get verify "$addr" 2>/dev/null); then
            case $st in *negative*) why="$addr is cached as negative: $st"; return 1 ;; esac
        fi
    done
    printf '   %s: straight "%s"; hook "%s"\n' "$dom" "${d%% text=*}" "$h"
}

check_tarpit() { tempfail_both tarpit.test; }
check_drop() { tempfail_both drop.test; }
check_reset() {
    tempfail_both reset.test || return 1
    grep -q '^reset verb=MAIL' "$FAULT_DIR/rstd.events" || { why="the backend never reset a connection"; return 1; }
}
check_slow() {
    local d h
    tempfail_both slow.test || return 1 # over the timeout
    d=$(direct 192.0.2.11 under-ok@slow.test)
    case $d in "rule=verify_positive action=dunno "*) ;; *) why="1 s under the timeout, 250: straight: $d"; return 1 ;; esac
    h=$(hook under-no@slow.test)
    [ "$h" = "action=550 5.1.1 under-no@slow.test: Recipient address rejected: slowly unknown" ] ||
        { why="1 s under the timeout, 550: the backend's words through the hook, got: $h"; return 1; }
}
check_endless() { tempfail_both endless.test; }
check_overlong() { tempfail_both overlong.test; }
fault_check 1 "tarpit (connects, never greets): 450 straight and through the hook, not negative" check_tarpit
fault_check 2 "close after MAIL: 450 straight and through the hook, not negative" check_drop
fault_check 3 "RST after MAIL: 450 straight and through the hook, not negative" check_reset
fault_check 4 "slow: over command_timeout 450; under it the backend's own 250 and 550 word for word" check_slow
fault_check 5 "endless multi-line reply: 450 straight and through the hook, not negative" check_endless
fault_check 6 "16 MB reply line: 450 straight and through the hook, not negative" check_overlong

# 7. The tarpit holds a probe for its greeting timeout (6 s) and its Check for verify.wait
# (4 s); meanwhile other questions are answered.
check_meanwhile() {
    local bg d h i t0
    (hook meanwhile@tarpit.test >"$FAULT_DIR/tarpit.answer") &
    bg=$!
    sleep 0.3 # the tarpit's question is in
    t0=$(date +%s%N)
    for i in 1 2; do
        h=$(fault_ask "$HOOK" 192.0.2.12 s@sender.test "x$i@nodomain.test" "$ASK_S")
        [ "$h" = "action=DUNNO" ] || { why="no-route question through the hook: $h"; wait $bg; return 1; }
        d=$(direct 192.0.2.12 "fine$i@ok.test")
        case $d in "rule=verify_positive action=dunno "*) ;; *) why="healthy route: $d"; wait $bg; return 1 ;; esac
        fault_ctl "$EP" stats >/dev/null || { why="stats not answered"; wait $bg; return 1; }
    done
    kill -0 $bg 2>/dev/null || { why="the tarpit's answer came before the others' (not held by the tarpit?)"; wait $bg; return 1; }
    printf '   6 other requests answered in %d ms while the tarpit held its Check\n' $((($(date +%s%N) - t0) / 1000000))
    wait $bg
    h=$(cat "$FAULT_DIR/tarpit.answer")
    case $h in "action=450 4.1.1 "*) ;; *) why="the tarpit's own answer: $h"; return 1 ;; esac
}
fault_check 7 "while the tarpit holds a probe, no-route, healthy-route and stats requests are answered" check_meanwhile

# 8. Endless and over-long replies cost bounded memory and the probe hangs up on them.
check_memory() {
    local pid rss0 rss1 i opened peer pids=()
    pid=$(fault_pid mxcached)
    direct 192.0.2.13 warm@endless.test >/dev/null
    direct 192.0.2.13 warm@overlong.test >/dev/null
    rss0=$(fault_rss_kb "$pid")
    for i in $(seq 1 20); do
        direct 192.0.2.13 "e$i@endless.test" >"$FAULT_DIR/mem.e$i" &
        pids+=($!)
        direct 192.0.2.13 "o$i@overlong.test" >"$FAULT_DIR/mem.o$i" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    rss1=$(fault_rss_kb "$pid")
    if grep -L '^rule=verify_\(tempfail\|pending\) action=defer code=450 ' "$FAULT_DIR"/mem.* | grep -q .; then
        why="a probe of an endless or over-long reply was not answered 450: $(cat $(grep -L 'code=450' "$FAULT_DIR"/mem.* | head -1))"
        return 1
    fi
    # Every connection the servers opened was closed by the probe (reason=peer), not left open.
    for s in endless overlong; do
        for _ in $(seq 1 100); do
            opened=$(grep -c ' open peer=' "$FAULT_DIR/$s.smtpd" || true)
            peer=$(grep -c ' close reason=peer' "$FAULT_DIR/$s.smtpd" || true)
            [ "$opened" = "$peer" ] && break
            sleep 0.1
        done
        [ "$opened" = "$peer" ] || { why="$s: $opened connections, $peer closed by the probe"; return 1; }
    done
    printf '   resident memory %d kB -> %d kB after 40 probes against endless and 16 MB replies\n' "$rss0" "$rss1"
    [ $((rss1 - rss0)) -lt $((RSS_LIMIT_MB * 1024)) ] ||
        { why="resident memory grew by $(((rss1 - rss0) / 1024)) MB (limit $RSS_LIMIT_MB MB)"; return 1; }
}
fault_check 8 "endless and 16 MB replies: every session closed by the probe, memory bounded" check_memory

# 9. Only the backend's own 550 is cached as negative.
check_negatives() {
    local out
    out=$(fault_ctl "$EP" --json list verify --state negative) || { why="list failed: $out"; return 1; }
    [ "$(grep -c '"key"' <<<"$out")" = 1 ] && grep -q '"under-no@slow.test"' <<<"$out" ||
        { why="negative answers cached: $out"; return 1; }
    printf '   cached negative: %s\n' "$(sed -n 's/.*"key":"\([^"]*\)".*"smtp_code":\([0-9]*\).*/\1 (\2)/p' <<<"$out")"
}
fault_check 9 "the only negative answer cached is the backend's own 550" check_negatives

fault_running mxcached || fault_fail "mxcached died"
fault_stop_pair
fault_done
