#!/bin/bash
# Integration test of mxtest-smtpd, the scriptable SMTP server of the probe tests.
#
# Usage: test_smtpd.sh MXTEST_SMTPD
#   Starts the server on 127.0.0.1 port 0 with temporary scripts and logs, talks to it with swaks
#   (a real SMTP client; the test fails if it is missing) and with bash's /dev/tcp, and checks
#   the greeting, EHLO, scripted recipients with <ADDR>, the state rules, the HELO fallback,
#   drop, stall, slow, multiline, overlong, endless, the line limit, the connection limit,
#   SIGHUP reload, the log (lines counted exactly), refused --listen addresses, script errors
#   with FILE:LINE and exit 2, and SIGTERM/SIGINT exit 0. Prints one line per check and
#   "test_smtpd: N checks passed".
#   KEEP_TMP=1 leaves the temporary directory for inspection.
#
# Every wait is bounded (reads by read -t, swaks by timeout(1), polls by a count). Every server
# started is stopped by its PID in the EXIT trap (TERM, then KILL after 5 s).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 MXTEST_SMTPD" >&2
    exit 2
fi
BIN=$1
if [ ! -x "$BIN" ]; then
    echo "test_smtpd: $BIN is not an executable" >&2
    exit 1
fi
if ! command -v swaks >/dev/null 2>&1; then
    echo "test_smtpd: swaks is not installed (apt-get install swaks); this test needs a real SMTP client and does not skip" >&2
    exit 1
fi
if ! command -v timeout >/dev/null 2>&1; then
    echo "test_smtpd: timeout(1) (coreutils) is not installed" >&2
    exit 1
fi

export LC_ALL=C
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mxsmtpd.XXXXXX")
PIDS=()
CHECKS=0
S=        # the fd of the current /dev/tcp connection
CONN=0    # the server's conn=N of the current connection (connections are numbered in order)
NCONN=0   # connections made to the current server
QUITS=0   # sessions of the current server ended by QUIT
PEERS=0   # connections of the current server closed by the client first

cleanup() {
    local rc=$? pid f
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "test_smtpd: server pid $pid did not stop on SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [ $rc -ne 0 ]; then
        for f in "$TMP"/*.log "$TMP"/*.err; do
            [ -s "$f" ] && { echo "== $f (last 30 lines)"; tail -n 30 "$f"; }
        done >&2
    fi
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        echo "test_smtpd: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
trap '' PIPE # Robustness: a write to a closed socket fails instead of killing the test.

pass() {
    CHECKS=$((CHECKS + 1))
    echo "ok $CHECKS - $*"
}
fail() {
    echo "test_smtpd: FAIL: $*" >&2
    exit 1
}
now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    NOW=$((10#$t / 1000))
}

# start_server NAME SCRIPT [LISTEN] - starts the server with SCRIPT, log $TMP/NAME.log; sets
# SRV_PID, SRV_PORT, SRV_LOG once the port file is there (at most 10 s).
start_server() {
    local name=$1 script=$2 listen=${3:-127.0.0.1:0} pf=$TMP/$1.port
    SRV_LOG=$TMP/$name.log
    "$BIN" --listen "$listen" --script "$script" --log "$SRV_LOG" --port-file "$pf" \
        >"$TMP/$name.out" 2>"$TMP/$name.err" &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    NCONN=0 QUITS=0 PEERS=0
    for _ in $(seq 1 100); do
        [ -s "$pf" ] && break
        kill -0 "$SRV_PID" 2>/dev/null || fail "$name: server exited during startup: $(cat "$TMP/$name.err")"
        sleep 0.1
    done
    [ -s "$pf" ] || fail "$name: no port file within 10 s"
    SRV_PORT=$(cat "$pf")
}

# stop_server PID SIGNAL - sends SIGNAL and waits (at most 10 s) for the exit; STOP_RC is its
# status.
stop_server() {
    local pid=$1 i keep=()
    kill -"$2" "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "server pid $pid still runs 10 s after SIG$2"
    STOP_RC=0
    wait "$pid" || STOP_RC=$?
    for i in "${PIDS[@]}"; do
        [ "$i" = "$pid" ] || keep+=("$i")
    done
    PIDS=("${keep[@]}")
}

# smtp_open [PORT [HOST]] - connects (fd in S, the server's connection number in CONN).
smtp_open() {
    { exec {S}<>"/dev/tcp/${2:-127.0.0.1}/${1:-$SRV_PORT}"; } 2>/dev/null || fail "cannot connect to port ${1:-$SRV_PORT}"
    NCONN=$((NCONN + 1))
    CONN=$NCONN
}
smtp_close() {
    exec {S}>&-
}
smtp_send() {
    printf '%s\r\n' "$1" >&"$S"
}
# smtp_line [TIMEOUT] - one line into LINE without its CR; the status of read (1 at EOF, >128
# on timeout).
smtp_line() {
    LINE=
    IFS= read -r -t "${1:-5}" LINE <&"$S" 2>/dev/null || return $?
    LINE=${LINE%$'\r'}
}
# smtp_reply [TIMEOUT] - one whole reply into REPLY_TEXT, its lines joined with '|'.
smtp_reply() {
    REPLY_TEXT=
    while :; do
        smtp_line "${1:-5}" || return 1
        REPLY_TEXT+=${REPLY_TEXT:+|}$LINE
        [ "${LINE:3:1}" = "-" ] || return 0
    done
}
# expect CMD WANT - sends CMD (none when empty) and wants the reply WANT exactly.
expect() {
    [ -z "$1" ] || smtp_send "$1"
    smtp_reply || fail "no reply to '$1' within 5 s (got '$REPLY_TEXT')"
    [ "$REPLY_TEXT" = "$2" ] || fail "'$1': got '$REPLY_TEXT', want '$2'"
}
# expect_eof [TIMEOUT] - the server closes without sending anything more.
expect_eof() {
    local rc=0
    smtp_line "${1:-5}" || rc=$?
    [ $rc -eq 1 ] && [ -z "$LINE" ] || fail "wanted EOF, got status $rc and '$LINE'"
}
# expect_silence SECONDS - nothing comes for SECONDS, and the connection stays open.
expect_silence() {
    local rc=0
    smtp_line "$1" || rc=$?
    [ $rc -gt 128 ] || fail "wanted silence for $1 s, got status $rc and '$LINE'"
}
# session [CMD WANT]... - connects, expects the greeting, runs each exchange, QUITs.
session() {
    smtp_open
    expect "" "220 mxtest.test ESMTP"
    while [ $# -ge 2 ]; do
        expect "$1" "$2"
        shift 2
    done
    expect "QUIT" "221 2.0.0 Bye"
    expect_eof
    smtp_close
    QUITS=$((QUITS + 1))
}
# count LOG LINE - lines of LOG equal to LINE once their "conn=N " is removed.
count() {
    sed -E 's/^conn=[0-9]+ //' "$1" | grep -cxF -- "$2" || true
}
# has LOG LINE - whether LOG has the exact LINE.
has() {
    grep -qxF -- "$2" "$1"
}
# wait_line LOG LINE - until LOG has the exact LINE (at most 5 s).
wait_line() {
    for _ in $(seq 1 50); do
        has "$1" "$2" && return 0
        sleep 0.1
    done
    fail "$1 has no line '$2' after 5 s"
}
# run_swaks OUT TO [ARGS...] - one swaks dialogue up to RCPT, transcript in OUT; SWAKS_RC.
run_swaks() {
    local out=$1 to=$2
    shift 2
    SWAKS_RC=0
    timeout 30 swaks --server 127.0.0.1 --port "$SRV_PORT" --from sender@example.org --to "$to" \
        --helo client.test --quit-after RCPT --timeout 5 "$@" >"$out" 2>&1 || SWAKS_RC=$?
    NCONN=$((NCONN + 1)) QUITS=$((QUITS + 1))
    [ $SWAKS_RC -ne 124 ] || fail "swaks did not finish within 30 s: $(cat "$out")"
}

# ---- the command line ------------------------------------------------------------------------

for addr in 0.0.0.0:0 192.0.2.1:2525 '[2001:db8::1]:0' '[::ffff:127.0.0.1]:0' localhost:0 \
    127.0.0.1 127.0.0.1:99999; do
    rc=0
    timeout 10 "$BIN" --listen "$addr" >"$TMP/refuse.out" 2>"$TMP/refuse.err" || rc=$?
    [ $rc -eq 2 ] || fail "--listen $addr: exit $rc, want 2 ($(cat "$TMP/refuse.err"))"
    grep -qF -- "--listen" "$TMP/refuse.err" || fail "--listen $addr: no message: $(cat "$TMP/refuse.err")"
    [ ! -s "$TMP/refuse.out" ] || fail "--listen $addr: printed a port"
    pass "--listen $addr refused (exit 2): $(head -n 1 "$TMP/refuse.err")"
done

# Malformed scripts: CONTENT (printf format) | LINE | a piece of the message.
while IFS='|' read -r content line want; do
    printf "$content" >"$TMP/bad.script"
    rc=0
    timeout 10 "$BIN" --listen 127.0.0.1:0 --script "$TMP/bad.script" >"$TMP/bad.out" 2>"$TMP/bad.err" || rc=$?
    [ $rc -eq 2 ] || fail "script '$content': exit $rc, want 2 ($(cat "$TMP/bad.err"))"
    grep -qF "$TMP/bad.script:$line: " "$TMP/bad.err" || fail "script '$content': no FILE:$line: in '$(cat "$TMP/bad.err")'"
    grep -qF -- "$want" "$TMP/bad.err" || fail "script '$content': no '$want' in '$(cat "$TMP/bad.err")'"
    pass "bad script refused with FILE:LINE, exit 2: $(sed "s|$TMP/||" "$TMP/bad.err")"
done <<'EOF'
bogus 250 Ok\n|1|unknown directive 'bogus'
# comment\n\n  rcpt a@example.com 25 short code\n|3|bad reply '25 short code'
greeting 220 one\nGREETING 220 two\n|2|duplicate greeting (first at line 1)
rcpt a@example.com 250 Ok\nrcpt <A@Example.com> 550 No\n|2|duplicate rcpt A@Example.com (first at line 1)
rcpt a@example.com slow soon 250 Ok\n|1|slow MS: not a number: 'soon'
rcpt a@example.com slow 100\n|1|slow MS: missing REPLY
rcpt a@example.com multiline 0 250 Ok\n|1|multiline N: '0' is out of range
rcpt a@example.com overlong 3\n|1|overlong N: '3' is out of range
rcpt a@example.com\n|1|rcpt a@example.com: missing BEHAVIOUR
mail stall now\n|1|stall takes no argument
helo\n|1|missing BEHAVIOUR
rcpt a@example.com frobnicate\n|1|unknown behaviour 'frobnicate'
\n\nhelo 250 bad\001byte\n|3|control byte 0x01 in reply
quit 2210 Bye\n|1|bad reply
EOF

rc=0
timeout 10 "$BIN" --listen 127.0.0.1:0 --script "$TMP/no-such.script" >/dev/null 2>"$TMP/bad.err" || rc=$?
[ $rc -eq 2 ] && grep -qF "$TMP/no-such.script: No such file" "$TMP/bad.err" ||
    fail "missing script: exit $rc, '$(cat "$TMP/bad.err")'"
pass "missing script file refused (exit 2)"

# ---- the main server ---------------------------------------------------------------------------

cat >"$TMP/main.script" <<'EOF'
# The main script of test_smtpd.sh.
rcpt ok@example.com 250 2.1.5 Ok
rcpt <Mixed@Example.COM> 250 2.1.5 <ADDR> mixed case ok
rcpt temp@example.com 450 4.2.0 <<ADDR>>: try later
rcpt slow@example.com slow 1000 250 2.1.5 Slow ok
rcpt multi@example.com multiline 5 250 2.1.5 Multi # not a comment
rcpt long@example.com overlong 5000
rcpt drop@example.com drop
rcpt stall@example.com stall
rcpt endless@example.com endless
rcpt change@example.com 550 5.1.1 <ADDR>: gone
EOF
start_server main "$TMP/main.script"
grep -qxF "port=$SRV_PORT" "$TMP/main.out" || fail "stdout '$(cat "$TMP/main.out")' does not match the port file $SRV_PORT"
has "$SRV_LOG" "listen 127.0.0.1:$SRV_PORT" || fail "no listen line in the log"
pass "port 0: port=$SRV_PORT on stdout, in the port file and the log"

smtp_open
expect "" "220 mxtest.test ESMTP"
grep -qE "^conn=$CONN open peer=127\.0\.0\.1:[0-9]+$" "$SRV_LOG" || fail "no open line for conn=$CONN"
pass "greeting '220 mxtest.test ESMTP', log 'conn=$CONN open peer=127.0.0.1:PORT'"
expect "MAIL FROM:<>" "503 5.5.1 Error: send HELO/EHLO first"
expect "EHLO" "501 5.5.4 Syntax: EHLO hostname"
expect "EHLO client.test" "250-mxtest.test|250-PIPELINING|250-ENHANCEDSTATUSCODES|250 8BITMIME"
pass "MAIL before EHLO is 503; EHLO is the four-line default answer"
expect "RCPT TO:<ok@example.com>" "503 5.5.1 Error: need MAIL command"
expect "mail from:<sender@example.org>" "250 2.1.0 Ok"
expect "MAIL FROM:<sender@example.org>" "503 5.5.1 Error: nested MAIL command"
expect "rcpt to:<ok@example.com>" "250 2.1.5 Ok"
expect "RCPT TO:<MIXED@example.com> NOTIFY=NEVER" "250 2.1.5 MIXED@example.com mixed case ok"
expect "RCPT TO:<nobody@example.com>" "550 5.1.1 nobody@example.com: Recipient address rejected: User unknown in local recipient table"
expect "RCPT TO:<Temp@Example.com>" "450 4.2.0 <Temp@Example.com>: try later"
expect "RCPT TO:bare@example.com" "550 5.1.1 bare@example.com: Recipient address rejected: User unknown in local recipient table"
expect "RCPT FOR:<ok@example.com>" "501 5.5.4 Syntax: RCPT TO:<address>"
pass "RCPT: 503 before MAIL, scripted 250/550/450, case-insensitive match, <ADDR> as received"
expect "NOOP" "250 2.0.0 Ok"
expect "DATA" "502 5.5.1 Command not implemented"
expect "VRFY ok@example.com" "502 5.5.1 Command not implemented"
smtp_send ""
expect "" "502 5.5.1 Command not implemented"
smtp_send "NOOP"$'\x01'
expect "" "502 5.5.1 Command not implemented"
expect "RSET" "250 2.0.0 Ok"
expect "RCPT TO:<ok@example.com>" "503 5.5.1 Error: need MAIL command"
pass "NOOP 250; DATA, VRFY, empty, control byte 502; RSET ends the transaction"
# Pipelining: six commands in one write, answered in order.
printf 'MAIL FROM:<>\r\nRCPT TO:<ok@example.com>\r\nRCPT TO:<multi@example.com>\r\nRCPT TO:<no@example.com>\r\nRSET\r\nNOOP\r\n' >&"$S"
expect "" "250 2.1.0 Ok"
expect "" "250 2.1.5 Ok"
expect "" "250-2.1.5 Multi # not a comment|250-2.1.5 Multi # not a comment|250-2.1.5 Multi # not a comment|250-2.1.5 Multi # not a comment|250 2.1.5 Multi # not a comment"
expect "" "550 5.1.1 no@example.com: Recipient address rejected: User unknown in local recipient table"
expect "" "250 2.0.0 Ok"
expect "" "250 2.0.0 Ok"
pass "pipelined commands answered in order; multiline 5 gives 4 'CODE-text' lines and 'CODE text'"
expect "MAIL FROM:<>" "250 2.1.0 Ok"
smtp_send "RCPT TO:<long@example.com>"
smtp_line || fail "no overlong reply"
[ ${#LINE} -eq 5000 ] && [ "$LINE" = "250 $(printf 'x%.0s' $(seq 1 4996))" ] || fail "overlong: got ${#LINE} bytes '${LINE:0:20}...'"
expect "NOOP" "250 2.0.0 Ok"
pass "overlong 5000: one line of 5000 bytes '250 xxx...', then the session goes on"
expect "NOOP $(printf 'a%.0s' $(seq 1 995))" "250 2.0.0 Ok"
smtp_send "NOOP $(printf 'a%.0s' $(seq 1 996))"
expect "" "500 5.5.2 Line too long"
expect_eof
smtp_close
wait_line "$SRV_LOG" "conn=$CONN close reason=overlong"
pass "a 1000-byte command is served, a 1001-byte one gets '500 5.5.2 Line too long' and EOF (reason=overlong)"

smtp_open
expect "" "220 mxtest.test ESMTP"
printf '%s' "$(printf 'Z%.0s' $(seq 1 3000))" >&"$S"
expect "" "500 5.5.2 Line too long"
expect_eof
smtp_close
wait_line "$SRV_LOG" "conn=$CONN close reason=overlong"
pass "3000 bytes without a line end: 500 and EOF at once (reason=overlong)"

# swaks, a real client.
run_swaks "$TMP/swaks1.txt" ok@example.com
[ $SWAKS_RC -eq 0 ] && grep -qxF '<-  250 2.1.5 Ok' "$TMP/swaks1.txt" && grep -qxF '<-  221 2.0.0 Bye' "$TMP/swaks1.txt" ||
    fail "swaks ok@example.com: exit $SWAKS_RC: $(cat "$TMP/swaks1.txt")"
grep -qxF '<-  250-PIPELINING' "$TMP/swaks1.txt" || fail "swaks: no EHLO PIPELINING line"
pass "swaks: EHLO, MAIL, RCPT ok@example.com 250, QUIT 221 (exit 0)"
run_swaks "$TMP/swaks2.txt" Nobody@Example.net
[ $SWAKS_RC -ne 0 ] && grep -qxF '<** 550 5.1.1 Nobody@Example.net: Recipient address rejected: User unknown in local recipient table' "$TMP/swaks2.txt" ||
    fail "swaks Nobody@Example.net: exit $SWAKS_RC: $(cat "$TMP/swaks2.txt")"
pass "swaks: RCPT Nobody@Example.net 550 with <ADDR> replaced (swaks exit $SWAKS_RC)"

# drop: EOF without an answer.
smtp_open
expect "" "220 mxtest.test ESMTP"
expect "EHLO client.test" "250-mxtest.test|250-PIPELINING|250-ENHANCEDSTATUSCODES|250 8BITMIME"
expect "MAIL FROM:<>" "250 2.1.0 Ok"
smtp_send "RCPT TO:<drop@example.com>"
expect_eof
smtp_close
has "$SRV_LOG" "conn=$CONN close reason=drop" || fail "no 'conn=$CONN close reason=drop'"
pass "drop: EOF without an answer, 'conn=$CONN close reason=drop'"

# slow: the answer comes after 1000 ms, and another connection is served meanwhile.
smtp_open
A=$S A_CONN=$CONN
expect "" "220 mxtest.test ESMTP"
expect "HELO client.test" "250 mxtest.test"
expect "MAIL FROM:<>" "250 2.1.0 Ok"
now_ms
t0=$NOW
smtp_send "RCPT TO:<slow@example.com>"
smtp_open
expect "" "220 mxtest.test ESMTP"
expect "NOOP" "250 2.0.0 Ok"
now_ms
t1=$NOW
smtp_close
PEERS=$((PEERS + 1))
S=$A CONN=$A_CONN
expect "" "250 2.1.5 Slow ok"
now_ms
t2=$NOW
[ $((t1 - t0)) -lt 1000 ] && [ $((t2 - t0)) -ge 1000 ] ||
    fail "slow: other connection served after $((t1 - t0)) ms, slow answer after $((t2 - t0)) ms"
expect "QUIT" "221 2.0.0 Bye"
expect_eof
smtp_close
QUITS=$((QUITS + 1))
pass "slow 1000: answer after $((t2 - t0)) ms; another connection served after $((t1 - t0)) ms"

# stall: no answer, the connection stays open; others are served; the client's close is seen.
smtp_open
A=$S A_CONN=$CONN
expect "" "220 mxtest.test ESMTP"
expect "EHLO client.test" "250-mxtest.test|250-PIPELINING|250-ENHANCEDSTATUSCODES|250 8BITMIME"
expect "MAIL FROM:<>" "250 2.1.0 Ok"
smtp_send "RCPT TO:<stall@example.com>"
smtp_send "NOOP"
expect_silence 1
session "NOOP" "250 2.0.0 Ok"
S=$A CONN=$A_CONN
expect_silence 0.2
smtp_close
PEERS=$((PEERS + 1))
wait_line "$SRV_LOG" "conn=$A_CONN close reason=peer"
[ "$(grep -c "^conn=$A_CONN cmd=NOOP$" "$SRV_LOG")" -eq 0 ] || fail "stall: the command after the stalled one was read"
pass "stall: no answer for 1 s, another session served, the client's close logged (reason=peer)"

# endless: read a bounded amount, close; the server notices and serves the next connection.
smtp_open
A_CONN=$CONN
expect "" "220 mxtest.test ESMTP"
expect "EHLO client.test" "250-mxtest.test|250-PIPELINING|250-ENHANCEDSTATUSCODES|250 8BITMIME"
expect "MAIL FROM:<>" "250 2.1.0 Ok"
smtp_send "RCPT TO:<endless@example.com>"
for i in $(seq 1 200); do
    smtp_line || fail "endless: line $i did not come"
    [ "$LINE" = "250-x" ] || fail "endless: line $i is '$LINE'"
done
smtp_close
PEERS=$((PEERS + 1))
wait_line "$SRV_LOG" "conn=$A_CONN close reason=peer"
session "NOOP" "250 2.0.0 Ok"
pass "endless: 200 '250-x' lines read, close seen (reason=peer), next session served"

# Many connections at once: 100 open, all greeted, all answered, all closed.
FDS=()
for i in $(seq 1 100); do
    smtp_open
    FDS+=("$S")
done
for S in "${FDS[@]}"; do
    expect "" "220 mxtest.test ESMTP"
    smtp_send "NOOP"
done
for S in "${FDS[@]}"; do
    expect "" "250 2.0.0 Ok"
    smtp_close
    PEERS=$((PEERS + 1))
done
first=$((CONN - 99))
for i in $(seq "$first" "$CONN"); do
    wait_line "$SRV_LOG" "conn=$i close reason=peer"
done
pass "100 connections at once: all greeted, all answered, 100 'close reason=peer'"

# SIGHUP: change@example.com goes from 550 to 250; a broken script is refused, the old one kept.
session "EHLO client.test" "250-mxtest.test|250-PIPELINING|250-ENHANCEDSTATUSCODES|250 8BITMIME" \
    "MAIL FROM:<>" "250 2.1.0 Ok" "RCPT TO:<change@example.com>" "550 5.1.1 change@example.com: gone"
sed 's/^rcpt change@example.com .*/rcpt change@example.com 250 2.1.5 back again/' "$TMP/main.script" >"$TMP/main.script.new"
mv "$TMP/main.script.new" "$TMP/main.script"
kill -HUP "$SRV_PID"
wait_line "$SRV_LOG" "reload ok"
session "EHLO client.test" "250-mxtest.test|250-PIPELINING|250-ENHANCEDSTATUSCODES|250 8BITMIME" \
    "MAIL FROM:<>" "250 2.1.0 Ok" "RCPT TO:<change@example.com>" "250 2.1.5 back again"
pass "SIGHUP: 'reload ok', change@example.com now 250 instead of 550"
cp "$TMP/main.script" "$TMP/main.script.good"
printf 'rcpt change@example.com 550 5.1.1 gone again\nrcpt broken@example.com slow\n' >"$TMP/main.script"
kill -HUP "$SRV_PID"
wait_line "$SRV_LOG" "reload error=$TMP/main.script:2: slow MS: missing number"
session "EHLO client.test" "250-mxtest.test|250-PIPELINING|250-ENHANCEDSTATUSCODES|250 8BITMIME" \
    "MAIL FROM:<>" "250 2.1.0 Ok" "RCPT TO:<change@example.com>" "250 2.1.5 back again"
pass "SIGHUP with a broken script: 'reload error=FILE:2: ...', the old script stays"
cp "$TMP/main.script.good" "$TMP/main.script"

# The log, counted exactly.
[ "$(grep -cE '^conn=[0-9]+ open peer=127\.0\.0\.1:[0-9]+$' "$SRV_LOG")" -eq "$NCONN" ] ||
    fail "log: $(grep -c ' open ' "$SRV_LOG") open lines, $NCONN connections made"
for i in $(seq 1 "$NCONN"); do
    [ "$(grep -cE "^conn=$i open " "$SRV_LOG")" -eq 1 ] && [ "$(grep -cE "^conn=$i close reason=[a-z]+$" "$SRV_LOG")" -eq 1 ] ||
        fail "log: conn=$i is not opened once and closed once"
done
# RCPT TO:<ok@example.com>: before MAIL, after RSET, pipelined, swaks.
[ "$(count "$SRV_LOG" "cmd=RCPT TO:<ok@example.com>")" -eq 4 ] || fail "log: cmd=RCPT TO:<ok@example.com> $(count "$SRV_LOG" "cmd=RCPT TO:<ok@example.com>") times, want 4"
[ "$(count "$SRV_LOG" "cmd=rcpt to:<ok@example.com>")" -eq 1 ] || fail "log: lowercase rcpt not logged once as received"
[ "$(count "$SRV_LOG" "cmd=RCPT TO:<change@example.com>")" -eq 3 ] || fail "log: change@example.com not 3 times"
[ "$(count "$SRV_LOG" 'cmd=NOOP\x01')" -eq 1 ] || fail "log: the control byte is not logged as \\x01"
[ "$(count "$SRV_LOG" "cmd=")" -eq 1 ] || fail "log: the empty command is not logged once"
[ "$(count "$SRV_LOG" "close reason=quit")" -eq "$QUITS" ] || fail "log: $(count "$SRV_LOG" "close reason=quit") quit closes, want $QUITS"
[ "$(count "$SRV_LOG" "close reason=drop")" -eq 1 ] || fail "log: drop closes not 1"
[ "$(count "$SRV_LOG" "close reason=overlong")" -eq 2 ] || fail "log: overlong closes not 2"
[ "$(count "$SRV_LOG" "close reason=peer")" -eq "$PEERS" ] || fail "log: $(count "$SRV_LOG" "close reason=peer") peer closes, want $PEERS"
[ "$(count "$SRV_LOG" "reload ok")" -eq 1 ] || fail "log: reload ok not once"
[ "$(count "$SRV_LOG" "cmd=RCPT TO:<endless@example.com>")" -eq 1 ] || fail "log: endless RCPT not once"
pass "log: $NCONN connections each opened and closed once; cmd, close reasons and reload counted exactly"

# SIGTERM with a connection open: exit 0, the connection closed with reason=shutdown.
smtp_open
expect "" "220 mxtest.test ESMTP"
stop_server "$SRV_PID" TERM
[ "$STOP_RC" -eq 0 ] || fail "SIGTERM: exit $STOP_RC"
expect_eof
smtp_close
has "$SRV_LOG" "conn=$CONN close reason=shutdown" && [ "$(tail -n 1 "$SRV_LOG")" = stop ] ||
    fail "SIGTERM: no 'conn=$CONN close reason=shutdown' then 'stop'"
pass "SIGTERM: exit 0, the open connection closed (reason=shutdown), 'stop' logged last"

# ---- HELO fallback ------------------------------------------------------------------------------

printf 'ehlo 502 5.5.1 Command not implemented\nrcpt ok@example.com 250 2.1.5 Ok\n' >"$TMP/helo.script"
start_server helo "$TMP/helo.script"
run_swaks "$TMP/swaks3.txt" ok@example.com
[ $SWAKS_RC -eq 0 ] && grep -qxF '<** 502 5.5.1 Command not implemented' "$TMP/swaks3.txt" &&
    grep -qxF ' -> HELO client.test' "$TMP/swaks3.txt" && grep -qxF '<-  250 2.1.5 Ok' "$TMP/swaks3.txt" ||
    fail "swaks HELO fallback: exit $SWAKS_RC: $(cat "$TMP/swaks3.txt")"
pass "ehlo 502: swaks falls back to HELO and gets RCPT 250"
session "EHLO client.test" "502 5.5.1 Command not implemented" "MAIL FROM:<>" "503 5.5.1 Error: send HELO/EHLO first" \
    "HELO client.test" "250 mxtest.test" "MAIL FROM:<>" "250 2.1.0 Ok" "RCPT TO:<ok@example.com>" "250 2.1.5 Ok"
pass "ehlo 502: EHLO refused leaves no session, HELO opens it"
stop_server "$SRV_PID" TERM
[ "$STOP_RC" -eq 0 ] || fail "helo server: SIGTERM exit $STOP_RC"

# ---- the greeting: drop, stall, slow; SIGINT --------------------------------------------------

printf 'greeting drop\n' >"$TMP/greet.script"
start_server greet "$TMP/greet.script"
smtp_open
smtp_send "EHLO client.test"
expect_eof
smtp_close
has "$SRV_LOG" "conn=$CONN close reason=drop" || fail "greeting drop: no close reason=drop"
pass "greeting drop: EOF without a byte (reason=drop)"
printf 'greeting stall\n' >"$TMP/greet.script"
kill -HUP "$SRV_PID"
wait_line "$SRV_LOG" "reload ok"
smtp_open
A=$S A_CONN=$CONN
smtp_send "EHLO client.test"
expect_silence 1
smtp_open
expect_silence 0.3
smtp_close
S=$A CONN=$A_CONN
smtp_close
wait_line "$SRV_LOG" "conn=$A_CONN close reason=peer"
wait_line "$SRV_LOG" "conn=$((A_CONN + 1)) close reason=peer"
[ "$(count "$SRV_LOG" "cmd=EHLO client.test")" -eq 0 ] || fail "greeting stall/drop: a command was read"
pass "greeting stall: silence, nothing read (no cmd logged), closes seen (reason=peer)"
printf 'greeting slow 500 220 late.test ESMTP\n' >"$TMP/greet.script"
kill -HUP "$SRV_PID"
for _ in $(seq 1 50); do
    [ "$(count "$SRV_LOG" "reload ok")" -eq 2 ] && break
    sleep 0.1
done
[ "$(count "$SRV_LOG" "reload ok")" -eq 2 ] || fail "second reload not logged"
now_ms
t0=$NOW
smtp_open
expect "" "220 late.test ESMTP"
now_ms
[ $((NOW - t0)) -ge 500 ] || fail "greeting slow 500 came after $((NOW - t0)) ms"
expect "NOOP" "250 2.0.0 Ok"
smtp_close
pass "greeting slow 500: greeting after $((NOW - t0)) ms, then commands served"
stop_server "$SRV_PID" INT
[ "$STOP_RC" -eq 0 ] || fail "SIGINT: exit $STOP_RC"
pass "SIGINT: exit 0"

# ---- IPv6 loopback ------------------------------------------------------------------------------

# Robustness: a host without ::1 cannot run this check; it says so instead of failing.
"$BIN" --listen '[::1]:0' --script /dev/null --log "$TMP/v6.log" --port-file "$TMP/v6.port" \
    >/dev/null 2>"$TMP/v6.err" &
SRV_PID=$!
PIDS+=("$SRV_PID")
SRV_LOG=$TMP/v6.log NCONN=0
for _ in $(seq 1 100); do
    [ -s "$TMP/v6.port" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -s "$TMP/v6.port" ]; then
    SRV_PORT=$(cat "$TMP/v6.port")
    smtp_open "$SRV_PORT" ::1
    expect "" "220 mxtest.test ESMTP"
    expect "QUIT" "221 2.0.0 Bye"
    smtp_close
    grep -qE "^conn=1 open peer=\[::1\]:[0-9]+$" "$SRV_LOG" && has "$SRV_LOG" "listen [::1]:$SRV_PORT" ||
        fail "v6: log lines"
    stop_server "$SRV_PID" TERM
    [ "$STOP_RC" -eq 0 ] || fail "v6 server: SIGTERM exit $STOP_RC"
    pass "--listen [::1]:0: served over IPv6, peer logged as [::1]:PORT"
elif grep -qF "bind/listen" "$TMP/v6.err"; then
    stop_server "$SRV_PID" TERM
    echo "skip - no IPv6 loopback here: $(cat "$TMP/v6.err")"
else
    fail "--listen [::1]:0: $(cat "$TMP/v6.err")"
fi

# ---- the connection limit -----------------------------------------------------------------------

ulimit -n 4096 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 1200 ]; then
    echo "skip - the connection limit: this shell may open $(ulimit -n) files, 1200 needed"
else
    start_server limit /dev/null
    FDS=()
    for i in $(seq 1 1024); do
        smtp_open
        FDS+=("$S")
        expect "" "220 mxtest.test ESMTP"
    done
    smtp_open
    expect "" "421 4.3.2 Too many connections, try again later"
    expect_eof
    smtp_close
    NCONN=$((NCONN - 1))
    grep -qE "^refuse peer=127\.0\.0\.1:[0-9]+ reason=limit$" "$SRV_LOG" || fail "limit: no refuse line"
    S=${FDS[0]}
    smtp_close
    wait_line "$SRV_LOG" "conn=1 close reason=peer"
    smtp_open
    expect "" "220 mxtest.test ESMTP"
    FDS[0]=$S
    [ "$CONN" -eq 1025 ] || fail "limit: numbering"
    for S in "${FDS[@]}"; do
        smtp_close
    done
    for _ in $(seq 1 100); do
        [ "$(count "$SRV_LOG" "close reason=peer")" -eq 1025 ] && break
        sleep 0.1
    done
    [ "$(count "$SRV_LOG" "close reason=peer")" -eq 1025 ] || fail "limit: $(count "$SRV_LOG" "close reason=peer") peer closes, want 1025"
    stop_server "$SRV_PID" TERM
    [ "$STOP_RC" -eq 0 ] || fail "limit server: SIGTERM exit $STOP_RC"
    pass "1024 connections served at once; the 1025th gets 421 (refuse reason=limit); a freed slot is reused"
fi

echo "test_smtpd: $CHECKS checks passed"
