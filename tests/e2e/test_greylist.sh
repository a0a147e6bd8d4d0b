#!/usr/bin/env bash
# End-to-end: cluster-wide greylisting with two real Postfix MXes (mx1, mx2), each asking its own
# mxcache-policy, both hooks asking one mxcached. A client greylisted at mx1 is still greylisted
# at mx2 before the delay, passes at mx2 after it (the mail reaches the sink, carrying the
# X-Greylist header), and then passes at mx1 at once: one greylist for the whole cluster. The
# service's and mx1's hook's /metrics then count exactly that.
#
# usage: test_greylist.sh MXCACHED MXCACHE_POLICY
set -euo pipefail
MXCACHED=$1
POLICY=$2
. "$(dirname "$0")/lib.sh"
e2e_init

DELAY=4
for port in SINK MX1 MX2 HOOK1 HOOK2 MET MET1; do e2e_free_port $port; done

cat >"$E2E_DIR/mxcached.conf" <<CF
server: { listen = ["ipc://$E2E_DIR/mxcached.sock"]; workers = 2; };
store: { path = "$E2E_DIR/db"; };
log: { target = "stderr"; level = "info"; };
greylist: { delay = "${DELAY}s"; };
metrics: { listen = "127.0.0.1:$MET"; };
CF
e2e_bg mxcached "$MXCACHED" --config "$E2E_DIR/mxcached.conf" --foreground --allow-root
for n in 1 2; do
    port_var=HOOK$n
    cat >"$E2E_DIR/policy$n.conf" <<CF
server: { listen = ["inet:127.0.0.1:${!port_var}"]; };
service: { endpoints = ["ipc://$E2E_DIR/mxcached.sock"]; mx_name = "mx$n.test"; };
log: { target = "stderr"; level = "info"; };
metrics: { listen = "$([ $n = 1 ] && echo "127.0.0.1:$MET1")"; };
CF
    e2e_bg policy$n "$POLICY" --config "$E2E_DIR/policy$n.conf" --foreground --allow-root
    e2e_wait_port "${!port_var}"
done
e2e_sink "$SINK"
e2e_postfix mx1 "$MX1" "inet:127.0.0.1:$HOOK1" "$SINK"
e2e_postfix mx2 "$MX2" "inet:127.0.0.1:$HOOK2" "$SINK"

FROM=news@sender.test
TO=user@example.test
expect() { # expect WHAT WANT GOT
    [ "$2" = "$3" ] || e2e_fail "$1: got ${3:-no answer}, want $2"
    e2e_log "ok: $1 -> $3"
}

start=$(date +%s)
expect "first attempt at mx1" 450 "$(e2e_send "$MX1" "$FROM" "$TO")"
expect "retry at mx2 before the delay" 450 "$(e2e_send "$MX2" "$FROM" "$TO")"
sleep $((DELAY + 1 - ($(date +%s) - start)))
expect "retry at mx2 after the delay" 250 "$(e2e_send "$MX2" "$FROM" "$TO")"
e2e_wait_sink 1
grep -q '^X-Greylist: delayed' "$E2E_DIR"/sink/* || e2e_fail "the passed mail has no X-Greylist header"
expect "same triplet at mx1, no new delay" 250 "$(e2e_send "$MX1" "$FROM" "$TO")"
e2e_wait_sink 2
e2e_log "greylisting across mx1 and mx2: ok"

# What an operator's Prometheus would see of this: one triplet new, deferred, passed (after about
# the delay), then known; mx1's hook answered its two RCPTs from the service.
metric() { # metric PORT SAMPLE - the sample's value in the scrape, or "none"
    curl -sf "http://127.0.0.1:$1/metrics" | awk -v s="$2" '$1 == s { print $2; f = 1 } END { if (!f) print "none" }'
}
expect "service: new triplets" 1 "$(metric "$MET" 'mxcache_greylist_triplets_total{result="new"}')"
expect "service: early retries" 1 "$(metric "$MET" 'mxcache_greylist_triplets_total{result="deferred"}')"
expect "service: passed" 1 "$(metric "$MET" 'mxcache_greylist_triplets_total{result="passed"}')"
expect "service: known" 1 "$(metric "$MET" 'mxcache_greylist_triplets_total{result="known"}')"
expect "service: greylist delays observed" 1 "$(metric "$MET" 'mxcache_greylist_delay_seconds_count')"
delay_ok=$(metric "$MET" 'mxcache_greylist_delay_seconds_sum' | awk -v d=$DELAY '{ print ($1 >= d) ? "yes" : "no" }')
expect "service: the imposed delay is at least greylist.delay" yes "$delay_ok"
expect "service: defer decisions by greylist_new" 1 "$(metric "$MET" 'mxcache_decisions_total{action="defer",rule="greylist_new"}')"
expect "mx1 hook: answers from the service" 2 "$(metric "$MET1" 'mxcache_policy_requests_total{answer="service"}')"
expect "mx1 hook: fallbacks" 0 "$(metric "$MET1" 'mxcache_policy_requests_total{answer="fallback"}')"
e2e_log "metrics of the cluster: ok"
