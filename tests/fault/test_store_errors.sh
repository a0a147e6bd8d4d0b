#!/usr/bin/env bash
# Fault: store errors. mxcached keeps its RocksDB on a small tmpfs (16 MB, memtables of 64 kB so
# that files are created often) that is filled up (disk full) and later turned read-only, with
# mxcache-policy in front of it. Runs in a private mount namespace (unshare -m, so no mount leaks
# out of the test) and therefore as root only; exits 77 (skipped) otherwise.
#
# What RocksDB 7.8 (Debian 12) does, and what mxcached does about it (server/store.c):
#   - a write that cannot reach the WAL (ENOSPC; EROFS once a new WAL or SST file must be
#     created) fails, and RocksDB keeps a background error: every later write fails with it;
#   - about a second after space is freed RocksDB resumes by itself, but keeps the WAL file whose
#     write failed, and the first write after that aborts the process (an assertion Debian's
#     build keeps); so does a FlushWAL(sync) after a failed append (the sync thread's, racing
#     with the failing commit), and so does the info LOG after one failed write to it. mxcached
#     therefore stops writing to the store after the first failed write or sync (store_failed):
#     writes are refused at once, reads go on, and a restart recovers. This test asserts that.
# Checks:
#   1. disk full: writes fail; a Check that needs a write (a new triplet) gets 4xx: the hook's
#      451 4.3.0 fallback, and an ERROR_STORE reply straight from mxcached, never 5xx; the error
#      is logged; mxcached keeps running and serves what needs no write (a whitelisted client:
#      DUNNO; Get; explain), and every write acknowledged before is there, including those
#      acknowledged just before the disk was full;
#   2. space freed: mxcached still runs (no abort when RocksDB resumes); writes stay refused
#      (4xx), the refusal is logged;
#   3. restart (SIGTERM: clean exit): new triplets are greylisted again (450 4.7.1, the
#      service's own answer), every acknowledged write is there;
#   4. read-only store (a read-only bind mount over the tmpfs, made while mxcached runs: its
#      open files stay writable, every new file is refused): as 1;
#   5. writable again: writes stay refused until the restart; 6. after the restart: as 3;
#   7. a start on a read-only store fails at once and cleanly (exit status 1, a FATAL line
#      naming the store), the hook answers its 451 fallback meanwhile, and the next start on
#      the writable store has every acknowledged write.
#
# usage: test_store_errors.sh (binaries from the environment, see tests/fault/lib.sh)
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    echo "fault_store: skipped: needs root (a tmpfs in a private mount namespace)"
    exit 77
fi
if [ -z "${FAULT_UNSHARED:-}" ]; then
    # A container without CAP_SYS_ADMIN cannot make a mount namespace: skipped, visibly.
    unshare --mount --propagation private -- true 2>/dev/null ||
        { echo "fault_store: skipped: unshare --mount is not permitted here"; exit 77; }
    FAULT_UNSHARED=1 exec unshare --mount --propagation private -- "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
fault_init fault_store

FS=$FAULT_DIR/fs
mkdir -p "$FS"
if ! mount -t tmpfs -o size=16m,mode=0755 mxcache-fault "$FS"; then
    echo "fault_store: skipped: cannot mount a tmpfs here"
    exit 77
fi
FAULT_MOUNTS+=("$FS")

e2e_free_port SVC
e2e_free_port HOOK
EP="tcp://127.0.0.1:$SVC"
TEXT="Greylisted by the fault test"
cat >"$FAULT_DIR/mxcached.conf" <<CF
server: { listen = ["$EP"]; workers = 2; };
store: { path = "$FS/db"; write_buffer_size = "64K"; block_cache_size = "1M"; max_background_jobs = 1; };
log: { target = "stderr"; level = "info"; decisions = "off"; };
greylist: { enabled = true; delay = "1h"; reply_text = "$TEXT, retry in {remaining} s"; };
metrics: { listen = ""; };
CF
fault_start_pair "$EP" "$HOOK" 3s
fault_ctl "$EP" whitelist add client 198.51.100.0/24 --comment "fault test" >/dev/null

ACKS=()
# load NAME SECONDS [--errors-ok] - durable writes for SECONDS; their acknowledged ones go to
# $FAULT_DIR/acks.NAME (checked after every later step); prints the load's summary, and keeps
# it in $summary. (Not to be called in a $(...): ACKS must grow in this shell.)
load() {
    local name=$1 secs=$2 rc=0; shift 2
    "$MXFAULT_CLIENT" load --server "$EP" --out "$FAULT_DIR/acks.$name" --tag "$name" --handles 2 \
        --inflight 32 --max-seconds "$secs" "$@" >"$FAULT_DIR/load.$name" 2>>"$FAULT_DIR/load.log" || rc=$?
    [ $rc -eq 0 ] || fault_fail "load $name failed ($rc): $(cat "$FAULT_DIR/load.$name")"
    ACKS+=("$FAULT_DIR/acks.$name")
    summary=$(cat "$FAULT_DIR/load.$name")
    printf '%s: %s\n' "$name" "$summary"
}
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<" $2"; }
n=0
new_triplet_hook() { n=$((n + 1)); fault_ask "$HOOK" 203.0.113.$((n % 250 + 1)) "new$n@sender.test" "rcpt$n@dest.test"; }
new_triplet_direct() {
    n=$((n + 1))
    "$MXFAULT_CLIENT" check --server "$EP" --timeout-ms 10000 203.0.113.$((n % 250 + 1)) "new$n@sender.test" "rcpt$n@dest.test" || true
}
acked_present() { # every acknowledged write so far, by reads only (explain Checks and Gets)
    local out
    out=$("$MXFAULT_CLIENT" verify --server "$EP" "${ACKS[@]}") || { why="acknowledged writes missing: $out"; return 1; }
    printf '   %s (acknowledged writes, all present)\n' "$out"
}
# refused - a write-needing Check gets 4xx both ways, and what needs no write is still served.
refused() {
    local h d w
    h=$(new_triplet_hook)
    [[ $h == "action=451 4.3.0 "* ]] || { why="new triplet through the hook: $h"; return 1; }
    d=$(new_triplet_direct)
    [[ $d == "error=5 "* ]] || { why="new triplet straight: $d (want an ERROR_STORE reply)"; return 1; }
    w=$(fault_ask "$HOOK" 198.51.100.7 s@sender.test r@dest.test)
    [ "$w" = "action=DUNNO" ] || { why="whitelisted client through the hook: $w"; return 1; }
    fault_ctl "$EP" get whitelist client:198.51.100.0/24 >/dev/null || { why="Get of the whitelist entry failed"; return 1; }
    fault_running mxcached || { why="mxcached died"; return 1; }
    printf '   new triplet: hook "%s"; straight "%s"; whitelisted: hook "%s"\n' "$h" "$d" "$w"
}
# restart_ok - SIGTERM (clean exit), start, new triplets greylisted, acknowledged writes present.
restart_ok() {
    local rc=0 h
    fault_stop mxcached 20 || rc=$?
    [ $rc -eq 0 ] || { why="mxcached exited with $rc on SIGTERM"; return 1; }
    fault_mxcached mxcached "$FAULT_DIR/mxcached.conf"
    fault_wait_ready mxcached "$EP"
    for _ in $(seq 1 50); do # the hook reconnects by itself
        h=$(new_triplet_hook)
        [[ $h == "action=451 "* ]] || break
        sleep 0.2
    done
    [[ $h == "action=450 4.7.1 $TEXT"* ]] || { why="new triplet after the restart: $h"; return 1; }
    acked_present
}

load before 1

# 1. Disk full.
dd if=/dev/zero of="$FS/fill" bs=64k 2>/dev/null || true
load full 2 --errors-ok
check_full() {
    [ "$(field errors "$summary")" -gt 0 ] || { why="no write failed on the full disk: $summary"; return 1; }
    grep -q 'STORE op=commit.*No space left on device' "$FAULT_DIR/mxcached.log" ||
        { why="no STORE error with ENOSPC in the log"; return 1; }
    refused && acked_present
}
fault_check 1 "disk full: write-needing Checks get 4xx (hook 451, ERROR_STORE), reads served, nothing lost" check_full

# 2. Space freed: RocksDB resumes by itself within about a second; mxcached must survive that.
rm -f "$FS/fill"
sleep 3
check_freed() {
    fault_running mxcached || { why="mxcached died after the space was freed: $(tail -n 3 "$FAULT_DIR/mxcached.log")"; return 1; }
    refused || return 1
    grep -q 'writes stopped after an earlier write error' "$FAULT_DIR/mxcached.log" ||
        { why="the refusal is not logged"; return 1; }
}
fault_check 2 "space freed: mxcached survives RocksDB's resume; writes stay refused (4xx) until a restart" check_freed
fault_check 3 "restart after disk full: new triplets greylisted again, every acknowledged write present" restart_ok

# 4. Read-only: a read-only bind mount over the tmpfs while mxcached runs. Its open files stay
# writable; every file it creates from now on (a new WAL or SST file, the MANIFEST) is refused.
load rw 1
mount --bind "$FS" "$FS" && FAULT_MOUNTS+=("$FS")
mount -o remount,bind,ro "$FS" || fault_fail "cannot make $FS read-only"
touch "$FS/probe" 2>/dev/null && fault_fail "$FS is still writable"
load ro 3 --errors-ok
check_ro() {
    [ "$(field errors "$summary")" -gt 0 ] || { why="no write failed on the read-only store: $summary"; return 1; }
    grep -q 'STORE op=commit.*Read-only file system' "$FAULT_DIR/mxcached.log" ||
        { why="no STORE error with EROFS in the log"; return 1; }
    refused && acked_present
}
fault_check 4 "read-only store: write-needing Checks get 4xx, reads served, nothing lost" check_ro
mount -o remount,bind,rw "$FS" || fault_fail "cannot make $FS writable again"
sleep 2
check_rw_again() { refused; }
fault_check 5 "writable again: writes stay refused (4xx) until a restart" check_rw_again
fault_check 6 "restart after read-only: new triplets greylisted again, every acknowledged write present" restart_ok

# 7. A start on a read-only store fails at once and cleanly; the hook gives its fallback.
check_start_ro() {
    local rc=0 h mark
    fault_stop mxcached 20 || rc=$?
    [ $rc -eq 0 ] || { why="mxcached exited with $rc on SIGTERM"; return 1; }
    mount -o remount,bind,ro "$FS" || { why="cannot make $FS read-only"; return 1; }
    mark=$(wc -l <"$FAULT_DIR/mxcached.log")
    rc=0
    timeout 30 "$MXCACHED" "${MXCACHED_ROOT[@]}" --config "$FAULT_DIR/mxcached.conf" --foreground \
        >>"$FAULT_DIR/mxcached.log" 2>&1 || rc=$?
    [ $rc -eq 1 ] || { why="mxcached on a read-only store exited with $rc, want 1"; return 1; }
    tail -n +"$((mark + 1))" "$FAULT_DIR/mxcached.log" | grep -q "FATAL.*cannot open store $FS/db" ||
        { why="no FATAL line naming the store"; return 1; }
    h=$(new_triplet_hook)
    [[ $h == "action=451 4.3.0 "* ]] || { why="the hook without its service: $h"; return 1; }
    mount -o remount,bind,rw "$FS" || { why="cannot make $FS writable again"; return 1; }
    fault_mxcached mxcached "$FAULT_DIR/mxcached.conf"
    fault_wait_ready mxcached "$EP"
    acked_present
}
fault_check 7 "a start on a read-only store exits 1 with a FATAL line; the hook answers 451 meanwhile" check_start_ro

fault_stop_pair
fault_done
