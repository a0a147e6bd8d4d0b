#!/usr/bin/env bash
# End-to-end: cluster-wide recipient verification with two real Postfix MXes (mx1, mx2), each
# asking its own mxcache-policy, both hooks asking one mxcached (greylisting off), and a third
# real Postfix as the backend: final destination for example.test with the mailboxes alice and
# bob, 550 5.1.1 User unknown for anyone else. mxcached's route sends example.test to it.
#   1. an unknown recipient is refused with the backend's own 550 at RCPT on mx1 and on mx2, and
#      no queue holds a message afterwards (no bounce, no backscatter);
#   2. the backend was asked about it exactly once although both MXes were asked;
#   3. mail for a valid recipient sent through mx1 is delivered into its mailbox on the backend;
#   4. with the backend stopped, a new recipient at mx2 gets 450 (never 5xx), and the valid
#      recipient of check 3 still passes on its cached answer.
#
# usage: test_verify.sh MXCACHED MXCACHE_POLICY
set -euo pipefail
MXCACHED=$1
POLICY=$2
. "$(dirname "$0")/lib.sh"
e2e_init

for port in BACKEND MX1 MX2 HOOK1 HOOK2; do e2e_free_port $port; done

# session_idle is short so that the probe session of check 3 is not the one check 4 meets.
cat >"$E2E_DIR/mxcached.conf" <<CF
server: { listen = ["ipc://$E2E_DIR/mxcached.sock"]; workers = 2; };
store: { path = "$E2E_DIR/db"; };
log: { target = "stderr"; level = "info"; };
greylist: { enabled = false; };
metrics: { listen = ""; };
verify: {
  routes = ( { domains = [ "example.test" ]; hosts = [ "127.0.0.1:$BACKEND" ];
               helo = "mxcached.test"; session_idle = "1s"; } );
};
CF
e2e_postfix_backend backend "$BACKEND" example.test alice bob
e2e_bg mxcached "$MXCACHED" --config "$E2E_DIR/mxcached.conf" --foreground --allow-root
for n in 1 2; do
    port_var=HOOK$n
    cat >"$E2E_DIR/policy$n.conf" <<CF
server: { listen = ["inet:127.0.0.1:${!port_var}"]; };
service: { endpoints = ["ipc://$E2E_DIR/mxcached.sock"]; mx_name = "mx$n.test"; };
log: { target = "stderr"; level = "info"; };
metrics: { listen = ""; };
CF
    e2e_bg policy$n "$POLICY" --config "$E2E_DIR/policy$n.conf" --foreground --allow-root
    e2e_wait_port "${!port_var}"
done
e2e_postfix mx1 "$MX1" "inet:127.0.0.1:$HOOK1" "$BACKEND"
e2e_postfix mx2 "$MX2" "inet:127.0.0.1:$HOOK2" "$BACKEND"

FROM=news@sender.test
UNKNOWN=nobody@example.test
VALID=alice@example.test
NEW=bob@example.test
REJECT="550 5.1.1 <$UNKNOWN>: Recipient address rejected: User unknown in virtual mailbox table"
TEMPFAIL="450 4.1.1 <$NEW>: Recipient address rejected: Recipient address verification failed temporarily"

# A check is a function that returns 1 with the reason in $why when what it saw is wrong; each
# prints one line, and a failed one does not stop the next (none needs an earlier one's verdict,
# only what it did). Broken setup still stops the test through e2e_fail.
passed=0 failed=0 why=
check() { # check N WHAT FUNCTION
    why=
    if "$3"; then
        passed=$((passed + 1))
        printf 'ok %s - %s\n' "$1" "$2"
    else
        failed=$((failed + 1))
        printf 'not ok %s - %s: %s\n' "$1" "$2" "$why"
    fi
}
# rcpt_reply_is WHAT WANT - the whole RCPT reply of the last e2e_send is WANT.
rcpt_reply_is() {
    local got
    got=$(e2e_rcpt_reply)
    [ "$got" = "$2" ] && return 0
    why="$1: got \"${got:-no answer}\", want \"$2\""
    return 1
}

# 1. Postfix's own words for an unknown virtual mailbox, with the address in them: what the
# backend answers the probe, and what both MXes must answer word for word, as if the client had
# asked the backend itself. (An MX's Postfix puts "<RCPT>: Recipient address rejected: " before
# the text of any "NNN text" a policy service answers, so the words only come out unchanged if
# the policy's text is the backend's without that same prefix.) Whole transactions, not
# --quit-after RCPT: an MX that accepted the recipient would queue the mail and later bounce
# it, which the queue checks would see.
check_unknown() {
    local n bad=
    e2e_send "$MX1" "$FROM" "$UNKNOWN" >/dev/null
    rcpt_reply_is "mx1" "$REJECT" || bad="$why"
    e2e_send "$MX2" "$FROM" "$UNKNOWN" >/dev/null
    rcpt_reply_is "mx2" "$REJECT" || bad="${bad:+$bad; }$why"
    for n in mx1 mx2 backend; do
        e2e_queue_empty $n ||
            bad="${bad:+$bad; }the queue of $n holds mail: $(postqueue -c "$E2E_DIR/$n/etc" -p | tr '\n' ' ')"
    done
    why=$bad
    [ -z "$bad" ]
}
check 1 "unknown recipient: the backend's 550 word for word at RCPT on mx1 and mx2, no queue holds mail" check_unknown

# 2. The backend's smtpd logs one "NOQUEUE: reject: RCPT from ...: 550 5.1.1 <ADDR>: ...;
# from=<> to=<ADDR> ..." line per RCPT TO it refuses, before it answers. Nothing else talks to
# the backend about this address (the MXes never got as far as relaying it), so the number of
# these lines is the number of times the address was asked there. Both MXes have answered
# already, so every such RCPT has happened; the mark written after them through the same
# postlogd proves the file holds all their lines. The helo tells the probe's line.
check_once() {
    local n
    e2e_log_mark backend
    n=$(grep -c "NOQUEUE: reject: RCPT from [^ ]*: $REJECT; from=<> to=<$UNKNOWN> " "$E2E_DIR/backend/maillog" || true)
    [ "$n" = 1 ] || { why="the backend refused RCPT TO:<$UNKNOWN> $n times, want 1"; return 1; }
    grep -q "NOQUEUE: reject: RCPT from .*to=<$UNKNOWN> proto=ESMTP helo=<mxcached.test>" "$E2E_DIR/backend/maillog" ||
        { why="the RCPT the backend refused was not mxcached's probe (helo mxcached.test)"; return 1; }
}
check 2 "the backend was asked about <$UNKNOWN> exactly once (mxcached's probe) for both MXes" check_once

# 3. The probe finds alice (250 at the backend), the policy says DUNNO, mx1 takes the mail and
# relays it to the backend, whose virtual(8) writes it into alice's Maildir.
check_deliver() {
    local id="e2e-$RANDOM$RANDOM" got
    got=$(e2e_send "$MX1" "$FROM" "$VALID" --add-header "X-E2E-Id: $id")
    [ "$got" = 250 ] || { why="mx1 answered ${got:-nothing} to RCPT, want 250"; return 1; }
    grep -q '^<-  250 .*queued as' "$E2E_DIR/last.swaks" || { why="mx1 did not queue the mail"; return 1; }
    for _ in $(seq 1 300); do
        grep -qs "^X-E2E-Id: $id" "$E2E_DIR"/backend/mail/alice/new/* && break
        sleep 0.1
    done
    grep -qs "^X-E2E-Id: $id" "$E2E_DIR"/backend/mail/alice/new/* ||
        { why="the mail is not in alice's mailbox on the backend after 30 s"; return 1; }
    for _ in $(seq 1 100); do e2e_queue_empty mx1 && break; sleep 0.1; done
    e2e_queue_empty mx1 || { why="mx1 still holds mail after the delivery"; return 1; }
}
check 3 "valid recipient: mail through mx1 delivered to $VALID's mailbox on the backend" check_deliver

# 4. The backend's master and every process it started are gone and its port is closed, so the
# probe for bob (a mailbox the backend has) fails to connect at once: mxcached answers 450 4.1.1
# "Recipient address verification failed temporarily" (a failure to ask is never a 5xx), which
# mx2 gives with Postfix's "<RCPT>: Recipient address rejected: " before it; a 451 4.3.5 would
# mean the policy service was not reached. alice's positive answer of check 3 is cached: she
# passes (if check 3 failed before its probe, she gets the 450 too).
check_down() {
    local got
    e2e_postfix_stop backend || e2e_fail "the backend was not running"
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$BACKEND") 2>/dev/null || break; sleep 0.1; done
    ! (exec 3<>/dev/tcp/127.0.0.1/"$BACKEND") 2>/dev/null || e2e_fail "the stopped backend's port still accepts"
    e2e_send "$MX2" "$FROM" "$NEW" --quit-after RCPT >/dev/null
    rcpt_reply_is "new recipient at mx2" "$TEMPFAIL" || return 1
    got=$(e2e_send "$MX2" "$FROM" "$VALID" --quit-after RCPT)
    [ "$got" = 250 ] || { why="known recipient at mx2: got ${got:-no answer}, want 250 (cached)"; return 1; }
}
check 4 "backend down: new recipient \"$TEMPFAIL\" at mx2, known recipient 250 (cached)" check_down

if [ "$failed" -eq 0 ]; then
    echo "PASS: e2e_verify: all $passed checks passed"
else
    echo "FAIL: e2e_verify: $failed of $((passed + failed)) checks failed"
    exit 1
fi
