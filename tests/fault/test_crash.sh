#!/usr/bin/env bash
# Crash safety: mxcached is killed with SIGKILL in the middle of a write-heavy load, restarted on
# the same store, and every write that a client saw acknowledged must be there; ROUNDS times
# (default 24, at least 20) in one run.
#
# The load (mxfault-client load) keeps 4 x 64 requests in flight over ipc: Checks with never-seen
# greylist triplets (greylisting on, delay 1 h, so each is answered greylist_new, a write that
# must be on disk before its reply leaves: store.sync, the default, is checked to be true) and,
# one in 8, whitelist adds (synced writes of the worker threads). It records every request whose
# reply it received. Each round:
#   1. the load runs; once its first write is acknowledged, a random 100-800 ms more;
#   2. SIGKILL to mxcached, then SIGTERM to the load, which takes the replies still on their way
#      (300 ms) and writes its acknowledged writes to a file;
#   3. mxcached starts again on the same store: it must open it and answer (within 30 s), and
#      log no FATAL or STORE error;
#   4. every acknowledged write of the round is checked (mxfault-client verify): the triplet
#      answers greylist_early (seen, still in its delay; asked with explain, which writes
#      nothing), the whitelist entry is found by Get.
# At the end every acknowledged write of every round is checked once more (later crashes must
# not lose earlier writes), and mxcached must stop cleanly on SIGTERM.
# One line per round: the kill moment, the writes acknowledged and checked; then a summary.
#
# usage: test_crash.sh (binaries from the environment, see tests/fault/lib.sh)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
fault_init fault_crash

ROUNDS=${CRASH_ROUNDS:-24}
[ "$ROUNDS" -ge 1 ] || fault_fail "CRASH_ROUNDS must be at least 1"
EP="ipc://$FAULT_DIR/mxcached.sock"
cat >"$FAULT_DIR/mxcached.conf" <<CF
server: { listen = ["$EP"]; workers = 2; };
store: { path = "$FAULT_DIR/db"; };
log: { target = "stderr"; level = "info"; decisions = "off"; };
greylist: { enabled = true; delay = "1h"; };
metrics: { listen = ""; };
CF
# The durability under test is the default one: store.sync must be true without being set.
printed=$("$MXCACHED" --config "$FAULT_DIR/mxcached.conf" --print-config)
grep -Eq '^[[:space:]]*sync = true;' <<<"$printed" || fault_fail "store.sync is not true by default"

t_start=$SECONDS
total_checks=0 total_wl=0 total_unanswered=0
fault_mxcached mxcached "$FAULT_DIR/mxcached.conf"
fault_wait_ready mxcached "$EP"
for round in $(seq 1 "$ROUNDS"); do
    tag=$(printf 'r%02d' "$round")
    acks="$FAULT_DIR/acks.$tag"
    started="$FAULT_DIR/started.$tag"
    fault_start load "$MXFAULT_CLIENT" load --server "$EP" --out "$acks" --tag "$tag" \
        --handles 4 --inflight 64 --whitelist-every 8 --started "$started" --max-seconds 60
    for _ in $(seq 1 200); do
        [ -e "$started" ] && break
        fault_running load || break
        sleep 0.05
    done
    [ -e "$started" ] || fault_fail "round $round: no write was acknowledged within 10 s"
    delay_ms=$((100 + RANDOM % 701))
    sleep "$(printf '0.%03d' "$delay_ms")"
    fault_kill mxcached
    load_pid=$(fault_pid load)
    kill -TERM "$load_pid"
    load_rc=0
    fault_stop load 10 || load_rc=$?
    summary=$(tail -n 1 "$FAULT_DIR/load.log")
    [ "$load_rc" -eq 0 ] || fault_fail "round $round: the load client failed ($load_rc): $summary"
    checks=$(sed -n 's/.*acked_checks=\([0-9]*\).*/\1/p' <<<"$summary")
    wl=$(sed -n 's/.*acked_whitelist=\([0-9]*\).*/\1/p' <<<"$summary")
    unanswered=$(sed -n 's/.*unanswered=\([0-9]*\).*/\1/p' <<<"$summary")
    [ -n "$checks" ] && [ -n "$wl" ] && [ -n "$unanswered" ] || fault_fail "round $round: no summary from the load: $summary"
    [ "$((checks + wl))" -eq "$(wc -l <"$acks")" ] || fault_fail "round $round: the ack file does not match the summary"
    # The kill must have met writes in flight, or the round proves nothing.
    [ "$unanswered" -gt 0 ] || fault_fail "round $round: no request was in flight at the kill ($summary)"

    # The restart: the store opens (RocksDB replays its WAL) and the service answers.
    mark=$(wc -l <"$FAULT_DIR/mxcached.log")
    t0=$SECONDS
    fault_mxcached mxcached "$FAULT_DIR/mxcached.conf"
    fault_wait_ready mxcached "$EP"
    if tail -n +"$((mark + 1))" "$FAULT_DIR/mxcached.log" | grep -E 'FATAL|STORE|\[err'; then
        fault_fail "round $round: mxcached logged errors when it reopened the store"
    fi
    verify=$("$MXFAULT_CLIENT" verify --server "$EP" "$acks") ||
        fault_fail "round $round: acknowledged writes are missing after the restart: $verify"
    checked=$(sed -n 's/^checked=\([0-9]*\) missing=0$/\1/p' <<<"$verify")
    [ "$checked" = "$((checks + wl))" ] || fault_fail "round $round: verify: $verify"
    printf 'round %2d: SIGKILL %3d ms into the load; %5d acknowledged writes (%d triplets, %d whitelist) present after the restart (%d s); %d requests were in flight\n' \
        "$round" "$delay_ms" "$checked" "$checks" "$wl" "$((SECONDS - t0))" "$unanswered"
    total_checks=$((total_checks + checks))
    total_wl=$((total_wl + wl))
    total_unanswered=$((total_unanswered + unanswered))
done

# Later crashes lost nothing of earlier rounds either.
verify=$("$MXFAULT_CLIENT" verify --server "$EP" "$FAULT_DIR"/acks.r*) ||
    fault_fail "acknowledged writes of earlier rounds are missing at the end: $verify"
all=$(sed -n 's/^checked=\([0-9]*\) missing=0$/\1/p' <<<"$verify")
[ "$all" = "$((total_checks + total_wl))" ] || fault_fail "final verify: $verify"
rc=0
fault_stop mxcached 20 || rc=$?
[ "$rc" -eq 0 ] || fault_fail "mxcached exited with $rc on SIGTERM"
printf 'crash: %d rounds, %d acknowledged writes (%d triplets, %d whitelist entries) all present after SIGKILL and restart, checked again at the end; %d unacknowledged requests were in flight at the kills; %d s\n' \
    "$ROUNDS" "$all" "$total_checks" "$total_wl" "$total_unanswered" "$((SECONDS - t_start))"
