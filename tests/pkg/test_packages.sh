#!/usr/bin/env bash
# test_packages.sh BUILD_DIR - the Debian packages, built and used as an operator would.
#
# Builds the three packages with cpack in BUILD_DIR (a plain build; output into a temporary
# directory), checks their contents and control data (dpkg-deb), installs them with dpkg -i,
# checks the installed configs (--check-config) and units (systemd-analyze verify), starts the
# installed mxcached and mxcache-policy as the mxcache user with the installed configs (systemd
# does not run here), asks them (mxcachectl stats, one policy request, /readyz, /metrics: every
# metric name the alert rules and the dashboard use must be served), checks the shipped
# Prometheus files (promtool check rules/config, test rules) and the Grafana dashboard (jq,
# its queries through promtool), then stops the daemons by PID and purges the packages.
#
# Needs root (dpkg -i, the mxcache user), dpkg-dev (dpkg-shlibdeps), promtool, curl, jq.
# Refuses to run when the packages, /etc/mxcache or /var/lib/mxcache are already on the machine
# (their purge would take an operator's data with it). Every step prints what it checks; the last
# line says PASS or FAIL. KEEP_TMP=1 keeps the temporary directory.
set -uo pipefail
. "$(dirname "$0")/../e2e/lib.sh" # e2e_free_port, e2e_stop_pid

BUILD=${1:?usage: test_packages.sh BUILD_DIR}
PKGS=(mxcached mxcache-policy mxcache-tools)
FAILS=0
PIDS=()
INSTALLED=0
USER_CREATED=0
TMP=""

say() { printf 'pkg: %s\n' "$*"; }
fail() { # fail MESSAGE - one failed check; the test goes on where it can
    printf 'pkg:   FAIL: %s\n' "$*"
    FAILS=$((FAILS + 1))
}
ok() { printf 'pkg:   ok: %s\n' "$*"; }
fatal() { # fatal MESSAGE - a step the rest depends on failed
    printf 'pkg:   FAIL: %s\n' "$*"
    FAILS=$((FAILS + 1))
    exit 1
}

cleanup() {
    local rc=$?
    local p
    for p in "${PIDS[@]}"; do e2e_stop_pid "${p%%:*}" 20 || true; done
    if [ $INSTALLED -eq 1 ]; then
        say "cleanup: purging the packages"
        dpkg --purge "${PKGS[@]}" >"$TMP/purge.log" 2>&1 || cat "$TMP/purge.log"
    fi
    if [ $USER_CREATED -eq 1 ] && getent passwd mxcache >/dev/null; then
        userdel mxcache 2>/dev/null || true
        getent group mxcache >/dev/null && groupdel mxcache 2>/dev/null
    fi
    if [ $rc -ne 0 ] || [ $FAILS -ne 0 ]; then
        for f in "$TMP"/*.log; do
            [ -s "$f" ] && { echo "== $f"; tail -n 25 "$f"; }
        done
        say "FAIL ($FAILS check(s) failed)"
        rc=1
    else
        say "PASS"
    fi
    [ -n "${KEEP_TMP:-}" ] || [ -z "$TMP" ] || rm -rf "$TMP"
    exit $rc
}

# ---- preconditions
say "checking preconditions (root, tools, a machine without mxcache)"
[ "$(id -u)" -eq 0 ] || { say "FAIL: must run as root (dpkg -i, the mxcache user); CI runs the tests as root"; exit 1; }
for t in cpack dpkg-deb dpkg-shlibdeps systemd-analyze promtool curl jq setpriv; do
    command -v "$t" >/dev/null || { say "FAIL: $t is not installed (tools/dev test installs it)"; exit 1; }
done
for p in "${PKGS[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed'; then
        say "FAIL: package $p is installed on this machine; this test installs and purges its own"
        exit 1
    fi
done
for d in /etc/mxcache /var/lib/mxcache; do
    [ -e "$d" ] && { say "FAIL: $d exists; the purge at the end would remove it"; exit 1; }
done
getent passwd mxcache >/dev/null || USER_CREATED=1
TMP=$(mktemp -d /tmp/mxcache-pkg.XXXXXX)
chmod 755 "$TMP"
trap cleanup EXIT
ok "root, tools present, no mxcache installation"

# ---- build the packages
say "building the packages: cpack in $BUILD (output $TMP/out)"
grep -q '^MXCACHE_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" &&
    fatal "$BUILD is a sanitizer build; packages come from the plain build"
(cd "$BUILD" && cpack -B "$TMP/out") >"$TMP/cpack.log" 2>&1 || fatal "cpack failed (cpack.log)"
declare -A DEB
for p in "${PKGS[@]}"; do
    DEB[$p]=$(ls "$TMP/out/${p}_"*.deb 2>/dev/null | head -n 1)
    [ -n "${DEB[$p]}" ] || fatal "no $p .deb in $TMP/out"
done
ok "three packages: $(cd "$TMP/out" && echo *.deb)"

# ---- contents (dpkg-deb -c)
say "checking the files of each package (dpkg-deb -c)"
expect_files() { # expect_files PACKAGE PATH...
    local p=$1; shift
    local list f
    list=$(dpkg-deb -c "${DEB[$p]}" | awk '{ print $6 }' | sed 's|^\./|/|')
    for f in "$@"; do
        if grep -qxE "$f" <<<"$list"; then ok "$p has $f"; else fail "$p lacks $f"; fi
    done
}
expect_files mxcached /usr/sbin/mxcached /etc/mxcache/mxcached.conf /lib/systemd/system/mxcached.service \
    /usr/share/doc/mxcached/examples/mxcached.conf /usr/share/doc/mxcached/copyright
expect_files mxcache-policy /usr/sbin/mxcache-policy /etc/mxcache/mxcache-policy.conf \
    /lib/systemd/system/mxcache-policy.service /usr/share/doc/mxcache-policy/examples/mxcache-policy.conf \
    /usr/share/doc/mxcache-policy/examples/postfix/main.cf /usr/share/doc/mxcache-policy/examples/postfix/master.cf \
    /usr/share/doc/mxcache-policy/copyright
expect_files mxcache-tools /usr/bin/mxcachectl '/usr/lib/(.*/)?libmxcache\.so\.0' '/usr/lib/(.*/)?libmxcache\.so\.0\.[0-9.]+' \
    /usr/include/mxcache/mxcache.h '/usr/lib/(.*/)?pkgconfig/libmxcache\.pc' \
    /usr/share/doc/mxcache-tools/examples/prometheus/prometheus.yml \
    /usr/share/doc/mxcache-tools/examples/prometheus/mxcache-rules.yml \
    /usr/share/doc/mxcache-tools/examples/prometheus/mxcache-rules.test.yml \
    /usr/share/doc/mxcache-tools/examples/grafana/mxcache.json /usr/share/doc/mxcache-tools/copyright
for p in "${PKGS[@]}"; do
    if dpkg-deb -c "${DEB[$p]}" | awk '{ print $6 }' | grep -q '^\./usr/local/'; then
        fail "$p installs under /usr/local"
    fi
done

# The binaries: stripped, no sanitizer runtime, no build-tree RUNPATH.
mkdir -p "$TMP/x"
for p in "${PKGS[@]}"; do dpkg-deb -x "${DEB[$p]}" "$TMP/x"; done
for b in usr/sbin/mxcached usr/sbin/mxcache-policy usr/bin/mxcachectl; do
    if readelf -d "$TMP/x/$b" | grep -qE 'NEEDED.*lib(asan|ubsan)'; then fail "$b links a sanitizer runtime"; fi
    if readelf -d "$TMP/x/$b" | grep -qE 'R(UN)?PATH'; then fail "$b keeps an RPATH/RUNPATH"; fi
    if readelf -S "$TMP/x/$b" | grep -q '\.debug_info'; then fail "$b is not stripped"; fi
done
ok "binaries stripped, without sanitizer runtime or RUNPATH"
grep -q '^prefix=/usr$' "$TMP"/x/usr/lib/*pkgconfig/libmxcache.pc "$TMP"/x/usr/lib/*/pkgconfig/libmxcache.pc 2>/dev/null &&
    ok "libmxcache.pc: prefix=/usr" || fail "libmxcache.pc does not say prefix=/usr"

# ---- control data (dpkg-deb -I / -f)
say "checking the control data (dpkg-deb -I): names, conffiles, maintainer scripts, Depends"
for p in "${PKGS[@]}"; do
    [ "$(dpkg-deb -f "${DEB[$p]}" Package)" = "$p" ] || fail "${DEB[$p]}: Package is not $p"
done
for pc in mxcached:/etc/mxcache/mxcached.conf mxcache-policy:/etc/mxcache/mxcache-policy.conf; do
    p=${pc%%:*} c=${pc#*:}
    if dpkg-deb -I "${DEB[$p]}" conffiles 2>/dev/null | grep -qx "$c"; then ok "$p: conffile $c"; else fail "$p: $c is not a conffile"; fi
    for s in postinst prerm postrm; do
        dpkg-deb -I "${DEB[$p]}" "$s" >/dev/null 2>&1 || fail "$p has no $s"
    done
done
dpkg-deb -I "${DEB[mxcache-tools]}" shlibs 2>/dev/null | grep -q '^libmxcache 0 mxcache-tools' &&
    ok "mxcache-tools: shlibs names libmxcache 0" || fail "mxcache-tools: no shlibs entry for libmxcache"
# depends_on PACKAGE DEP... - DEP (a package name) is in PACKAGE's Depends.
depends_on() {
    local p=$1 d deps; shift
    deps=$(dpkg-deb -f "${DEB[$p]}" Depends)
    for d in "$@"; do
        if grep -qE "(^|, )$d( |,|$)" <<<"$deps"; then ok "$p depends on $d"; else fail "$p: Depends lacks $d ($deps)"; fi
    done
}
depends_on mxcached adduser librocksdb7.8 libzmq5 libmicrohttpd12 libconfig9 libsodium23 libpcre2-8-0 libpsl5 libprotobuf-c1
depends_on mxcache-policy adduser mxcache-tools libmicrohttpd12 libconfig9
depends_on mxcache-tools libzmq5 libjansson4 libprotobuf-c1
# Every name in Depends must be a real package: one installed here, or one of ours.
for p in "${PKGS[@]}"; do
    for d in $(dpkg-deb -f "${DEB[$p]}" Depends | tr ',|' '\n\n' | sed 's/(.*)//; s/^ *//; s/ *$//'); do
        case " ${PKGS[*]} " in *" $d "*) continue ;; esac
        dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'install ok installed' ||
            fail "$p depends on $d, which is not an installed package here"
    done
done
ok "every dependency is a real package"

# ---- install
say "installing the three packages (dpkg -i)"
INSTALLED=1
dpkg -i "${DEB[@]}" >"$TMP/dpkg.log" 2>&1 || fatal "dpkg -i failed (dpkg.log)"
ok "installed"
getent passwd mxcache >/dev/null && ok "user mxcache exists" || fail "postinst did not create the user mxcache"
getent group mxcache >/dev/null && ok "group mxcache exists" || fail "postinst did not create the group mxcache"
st=$(stat -c '%U:%G %a' /var/lib/mxcache 2>/dev/null)
[ "$st" = "mxcache:mxcache 750" ] && ok "/var/lib/mxcache is mxcache:mxcache 0750" || fail "/var/lib/mxcache is '$st', not mxcache:mxcache 750"
for c in mxcached mxcache-policy; do
    dpkg-query -W -f='${Conffiles}\n' "$c" | grep -q "/etc/mxcache/$c.conf" &&
        ok "dpkg lists /etc/mxcache/$c.conf as a conffile of $c" || fail "dpkg does not list /etc/mxcache/$c.conf as a conffile"
done

say "checking the installed configs (--check-config)"
/usr/sbin/mxcached --check-config --config /etc/mxcache/mxcached.conf >"$TMP/check-mxcached.log" 2>&1 &&
    ok "mxcached --check-config /etc/mxcache/mxcached.conf" || fail "mxcached --check-config (check-mxcached.log)"
/usr/sbin/mxcache-policy --check-config --config /etc/mxcache/mxcache-policy.conf >"$TMP/check-policy.log" 2>&1 &&
    ok "mxcache-policy --check-config /etc/mxcache/mxcache-policy.conf" || fail "mxcache-policy --check-config (check-policy.log)"

say "checking CURVE keys with the installed mxcachectl (keygen into /etc/mxcache/keys)"
[ "$(stat -c '%a %U %G' /etc/mxcache/keys 2>/dev/null)" = "750 root mxcache" ] &&
    ok "/etc/mxcache/keys is 0750 root:mxcache" || fail "/etc/mxcache/keys: $(stat -c '%a %U %G' /etc/mxcache/keys 2>&1)"
for k in pkgtest-svc pkgtest-mx; do
    /usr/bin/mxcachectl keygen "$k" --dir /etc/mxcache/keys >/dev/null 2>"$TMP/keygen.log" &&
        chgrp mxcache "/etc/mxcache/keys/$k.key" && chmod 640 "/etc/mxcache/keys/$k.key" ||
        fail "mxcachectl keygen $k (keygen.log)"
done
mkdir -p "$TMP/curve" && chmod 755 "$TMP/curve"
sed -e '/^security = {/,/^};/ s|^  key_file = "";|  key_file = "/etc/mxcache/keys/pkgtest-svc.key";|' \
    -e 's|^  client_keys = \[ \];|  client_keys = [ "/etc/mxcache/keys/pkgtest-mx.pub" ];|' \
    /etc/mxcache/mxcached.conf >"$TMP/curve/mxcached.conf"
sed -e 's|^  server_key = "";|  server_key = "/etc/mxcache/keys/pkgtest-svc.pub";|' \
    -e 's|^  key_file = "";|  key_file = "/etc/mxcache/keys/pkgtest-mx.key";|' \
    /etc/mxcache/mxcache-policy.conf >"$TMP/curve/mxcache-policy.conf"
chmod 644 "$TMP"/curve/*.conf
for d in mxcached mxcache-policy; do
    if setpriv --reuid=mxcache --regid=mxcache --init-groups -- "/usr/sbin/$d" --check-config \
        --config "$TMP/curve/$d.conf" >"$TMP/check-curve-$d.log" 2>&1 &&
        grep -q "/etc/mxcache/keys/pkgtest-" "$TMP/curve/$d.conf"; then
        ok "$d --check-config as mxcache with CURVE keys in /etc/mxcache/keys (0640 root:mxcache)"
    else
        fail "$d --check-config with CURVE keys (check-curve-$d.log)"
    fi
done
rm -f /etc/mxcache/keys/pkgtest-*

say "checking the installed units (systemd-analyze verify)"
for u in mxcached mxcache-policy; do
    if systemd-analyze verify "/lib/systemd/system/$u.service" >"$TMP/verify-$u.log" 2>&1 && ! [ -s "$TMP/verify-$u.log" ]; then
        ok "systemd-analyze verify $u.service: clean"
    else
        fail "systemd-analyze verify $u.service (verify-$u.log)"
    fi
    score=$(systemd-analyze security --offline=yes "/lib/systemd/system/$u.service" 2>/dev/null |
        sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    say "  systemd-analyze security $u.service: exposure ${score:-?} (lower is better)"
done

# ---- run the installed daemons as mxcache
# Both run with their installed example configs as they are, unless one of the default ports is
# taken (a developer's running instance): then with copies in which only the ports differ.
say "starting the installed mxcached and mxcache-policy as user mxcache"
P_POLICY=10040 P_SVC=10041 P_MSVC=10042 P_MPOL=10043
busy=""
for port in 10040 10041 10042 10043; do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && busy="$busy $port"
done
CONF_D=/etc/mxcache/mxcached.conf CONF_P=/etc/mxcache/mxcache-policy.conf
if [ -n "$busy" ]; then
    e2e_free_port P_POLICY; e2e_free_port P_SVC; e2e_free_port P_MSVC; e2e_free_port P_MPOL
    say "  in use:$busy; the configs get other ports ($P_POLICY $P_SVC $P_MSVC $P_MPOL)"
    mkdir -p "$TMP/etc" && chmod 755 "$TMP/etc"
    for f in mxcached mxcache-policy; do
        sed -e "s/127\.0\.0\.1:10040/127.0.0.1:$P_POLICY/g" -e "s/127\.0\.0\.1:10041/127.0.0.1:$P_SVC/g" \
            -e "s/127\.0\.0\.1:10042/127.0.0.1:$P_MSVC/g" -e "s/127\.0\.0\.1:10043/127.0.0.1:$P_MPOL/g" \
            "/etc/mxcache/$f.conf" >"$TMP/etc/$f.conf"
    done
    chmod 644 "$TMP"/etc/*.conf
    CONF_D=$TMP/etc/mxcached.conf CONF_P=$TMP/etc/mxcache-policy.conf
fi
say "  mxcached: $CONF_D"
say "  mxcache-policy: $CONF_P"
/usr/sbin/mxcached --check-config --config "$CONF_D" >"$TMP/check-mxcached-run.log" 2>&1 ||
    fatal "$CONF_D does not pass --check-config (check-mxcached-run.log)"
# start_as_mxcache LOG CMD... - CMD in the background as mxcache:mxcache with its groups, in
# /var/lib/mxcache (as the unit does); its PID (exec: the daemon's own) goes to PIDS.
start_as_mxcache() {
    local log=$1; shift
    (cd /var/lib/mxcache && exec setpriv --reuid=mxcache --regid=mxcache --init-groups -- "$@") >"$log" 2>&1 &
    PIDS+=("$!:$(basename "$1")")
}
start_as_mxcache "$TMP/mxcached.log" /usr/sbin/mxcached --foreground --config "$CONF_D"
start_as_mxcache "$TMP/mxcache-policy.log" /usr/sbin/mxcache-policy --foreground --config "$CONF_P"

CTL=(/usr/bin/mxcachectl --server "tcp://127.0.0.1:$P_SVC" --timeout 500ms)
up=0
for _ in $(seq 1 150); do
    "${CTL[@]}" stats >"$TMP/stats.out" 2>&1 && { up=1; break; }
    kill -0 "${PIDS[0]%%:*}" 2>/dev/null || break
    sleep 0.1
done
[ $up -eq 1 ] || fatal "mxcached did not answer mxcachectl stats (mxcached.log)"
grep -q '^KEYSPACE' "$TMP/stats.out" && ok "mxcachectl --server tcp://127.0.0.1:$P_SVC stats answers" ||
    fail "mxcachectl stats printed no KEYSPACE table"
ps -o user= -p "${PIDS[0]%%:*}" | grep -qx mxcache && ok "mxcached runs as mxcache" || fail "mxcached does not run as mxcache"
[ -d /var/lib/mxcache/db ] && [ "$(stat -c %U /var/lib/mxcache/db)" = mxcache ] &&
    ok "the store /var/lib/mxcache/db belongs to mxcache" || fail "no store in /var/lib/mxcache/db owned by mxcache"

up=0
for _ in $(seq 1 150); do
    (exec 3<>/dev/tcp/127.0.0.1/"$P_POLICY") 2>/dev/null && { up=1; break; }
    kill -0 "${PIDS[1]%%:*}" 2>/dev/null || break
    sleep 0.1
done
[ $up -eq 1 ] || fatal "mxcache-policy does not listen on 127.0.0.1:$P_POLICY (mxcache-policy.log)"
ps -o user= -p "${PIDS[1]%%:*}" | grep -qx mxcache && ok "mxcache-policy runs as mxcache" || fail "mxcache-policy does not run as mxcache"
# One RCPT question through the hook to the service, as Postfix asks it: a new triplet is
# greylisted by the example config's defaults.
answer=$(
    exec 3<>/dev/tcp/127.0.0.1/"$P_POLICY" || exit 1
    printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.7\nclient_name=unknown\nhelo_name=pkg.test\nsender=someone@sender.test\nrecipient=user@example.test\nqueue_id=\ninstance=1.2.3\n\n' >&3
    timeout 10 head -n 1 <&3
)
case "$answer" in
action=*) ok "the hook answers a policy request through the service: $answer" ;;
*) fail "no policy answer from the hook (got '$answer')" ;;
esac

# ---- health and metrics
say "checking /readyz and /metrics of both daemons"
for ep in mxcached:$P_MSVC mxcache-policy:$P_MPOL; do
    n=${ep%%:*} port=${ep#*:}
    code=000
    for _ in $(seq 1 50); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz") && [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] && ok "$n /readyz answers 200 on 127.0.0.1:$port" || fail "$n /readyz on 127.0.0.1:$port answered $code"
    if curl -fsS "http://127.0.0.1:$port/metrics" >"$TMP/metrics-$n.txt" 2>"$TMP/curl-$n.log"; then
        ok "$n /metrics: $(grep -c '^[a-z]' "$TMP/metrics-$n.txt") samples"
        if promtool check metrics <"$TMP/metrics-$n.txt" >"$TMP/promtool-metrics-$n.log" 2>&1; then
            ok "promtool check metrics: $n's scrape is clean"
        else
            fail "promtool check metrics on $n's scrape (promtool-metrics-$n.log)"
        fi
    else
        fail "$n /metrics on 127.0.0.1:$port (curl-$n.log)"
        : >"$TMP/metrics-$n.txt"
    fi
done
# Served names: sample names, and for each "# TYPE NAME histogram" NAME_bucket/_sum/_count (a
# family with no series yet, e.g. one labelled by route with no routes, still shows its TYPE).
{
    cat "$TMP"/metrics-*.txt | grep -v '^#' | sed -E 's/[{ ].*//'
    cat "$TMP"/metrics-*.txt | awk '$1 == "#" && $2 == "TYPE" {
        print $3
        if ($4 == "histogram") { print $3 "_bucket"; print $3 "_sum"; print $3 "_count" } }'
} | sort -u >"$TMP/served.txt"
DOCS=/usr/share/doc/mxcache-tools/examples
grep -ohE '\b(mxcache|process)_[a-z0-9_]+' "$DOCS/prometheus/mxcache-rules.yml" "$DOCS/grafana/mxcache.json" |
    sort -u >"$TMP/used.txt"
missing=$(comm -23 "$TMP/used.txt" "$TMP/served.txt")
if [ -z "$missing" ]; then
    ok "all $(wc -l <"$TMP/used.txt") metric names of the rules and the dashboard are served"
else
    fail "metric names used by the rules or the dashboard but served by neither daemon: $(tr '\n' ' ' <<<"$missing")"
fi

# ---- the shipped Prometheus and Grafana files
say "checking the shipped Prometheus files (promtool)"
(cd "$DOCS/prometheus" && promtool check rules mxcache-rules.yml) >"$TMP/promtool-rules.log" 2>&1 &&
    ok "promtool check rules mxcache-rules.yml" || fail "promtool check rules (promtool-rules.log)"
(cd "$DOCS/prometheus" && promtool check config prometheus.yml) >"$TMP/promtool-config.log" 2>&1 &&
    ok "promtool check config prometheus.yml (with its rule file)" || fail "promtool check config (promtool-config.log)"
(cd "$DOCS/prometheus" && promtool test rules mxcache-rules.test.yml) >"$TMP/promtool-test.log" 2>&1 &&
    ok "promtool test rules mxcache-rules.test.yml: every alert fires and stays silent as tested" ||
    fail "promtool test rules (promtool-test.log)"
alerts=$(grep -c '^ *- alert:' "$DOCS/prometheus/mxcache-rules.yml")
tested=$(grep -oE 'alertname: Mxcache[A-Za-z]+' "$DOCS/prometheus/mxcache-rules.test.yml" | sort -u | wc -l)
[ "$alerts" -eq "$tested" ] && ok "all $alerts alerts have unit tests" || fail "$alerts alerts, $tested of them tested"

say "checking the Grafana dashboard (jq, its queries through promtool)"
D=$DOCS/grafana/mxcache.json
if jq -e . "$D" >/dev/null 2>"$TMP/jq.log"; then ok "valid JSON"; else fail "mxcache.json is not valid JSON (jq.log)"; fi
jq -e '.schemaVersion >= 36 and (.title | length > 0) and (.uid | length > 0)' "$D" >/dev/null &&
    ok "Grafana 9+ schema (schemaVersion $(jq .schemaVersion "$D")), title and uid" || fail "schemaVersion < 36, or no title/uid"
jq -e '[.templating.list[] | select(.name == "DS_PROMETHEUS" and .type == "datasource" and .query == "prometheus")] | length == 1' "$D" >/dev/null &&
    ok "datasource template variable DS_PROMETHEUS" || fail "no datasource variable DS_PROMETHEUS"
jq -e '[.panels[] | select(.type != "row") | .datasource.uid, (.targets[] | .datasource.uid)] | all(. == "${DS_PROMETHEUS}")' "$D" >/dev/null &&
    ok "every panel and query uses \${DS_PROMETHEUS}" || fail "a panel or query does not use \${DS_PROMETHEUS}"
jq -e '[.panels[].id] | length == (unique | length)' "$D" >/dev/null && ok "panel ids are unique" || fail "duplicate panel ids"
jq -e '[.panels[] | select(.type != "row") | (.targets | length > 0) and (.gridPos.w > 0) and (.gridPos.h > 0)] | all' "$D" >/dev/null &&
    ok "every panel has queries and a place" || fail "a panel without queries or gridPos"
# Each query, with the dashboard's variables replaced, as a recording rule for promtool.
jq -r '.panels[] | .targets[]? | .expr' "$D" |
    sed -e 's/\$__rate_interval/5m/g' -e 's/\$instance/.*/g' -e 's/\$mx/.*/g' |
    awk 'BEGIN { print "groups:\n  - name: dashboard\n    rules:" }
         { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); printf "      - record: dashboard:query%d\n        expr: \"%s\"\n", NR, $0 }' \
        >"$TMP/dashboard-queries.yml"
nq=$(jq '[.panels[] | .targets[]?] | length' "$D")
promtool check rules "$TMP/dashboard-queries.yml" >"$TMP/promtool-dashboard.log" 2>&1 &&
    ok "all $nq dashboard queries parse (promtool check rules)" || fail "a dashboard query does not parse (promtool-dashboard.log)"

# ---- stop and purge
say "stopping the daemons (SIGTERM by PID)"
for p in "${PIDS[@]}"; do
    pid=${p%%:*} name=${p#*:}
    if ! kill -0 "$pid" 2>/dev/null; then
        fail "$name (pid $pid) had already exited"
        continue
    fi
    e2e_stop_pid "$pid" 20 && ok "$name stopped (exit 0)" || fail "$name did not exit cleanly on SIGTERM"
done
PIDS=()
grep -q 'EXIT result=clean' "$TMP/mxcached.log" && ok "mxcached closed its store cleanly" || fail "no 'EXIT result=clean' in mxcached.log"

say "purging the packages (dpkg --purge)"
dpkg --purge "${PKGS[@]}" >"$TMP/purge.log" 2>&1 || fail "dpkg --purge failed (purge.log)"
INSTALLED=0
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed' && fail "$p is still installed"
done
for f in /usr/sbin/mxcached /usr/sbin/mxcache-policy /usr/bin/mxcachectl /etc/mxcache /var/lib/mxcache \
    /lib/systemd/system/mxcached.service /lib/systemd/system/mxcache-policy.service; do
    [ -e "$f" ] && fail "$f is left after the purge"
done
ok "purged: no binaries, configs, units or state left"
if [ $USER_CREATED -eq 1 ]; then
    userdel mxcache 2>"$TMP/userdel.log" || fail "userdel mxcache (userdel.log)"
    if getent group mxcache >/dev/null; then groupdel mxcache 2>>"$TMP/userdel.log" || fail "groupdel mxcache"; fi
    USER_CREATED=0
    ok "removed the user mxcache this test created (the packages keep it, as Debian does)"
fi
exit 0
