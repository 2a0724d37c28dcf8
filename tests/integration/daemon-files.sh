#!/bin/sh
# The daemon on a node namespace (nftables mode, or MODE=iptables), fed by a
# watched directory
# of JSON files, with real connections from a pod:
#  - READY=1 (sd_notify) only after the first sync, then STATUS= and
#    WATCHDOG=1 pings;
#  - an endpoint added to a file is programmed (min-sync-period + one sync);
#  - a half-written file is reported and the last good state stays
#    programmed (same kernel table, traffic unchanged), then recovers;
#  - SIGHUP re-reads the configuration file (a new cluster CIDR shows up in
#    the table);
#  - /metrics is Prometheus text and its counters moved;
#  - SIGTERM exits 0 and the rules stay in the kernel (traffic still flows);
#  - all of it with CAP_NET_ADMIN as the only capability (plus CAP_NET_RAW in
#    iptables mode, for libiptc's raw socket).
set -eu
MODE=${MODE:-nftables}
. "$(dirname "$0")/../lib/daemon.sh"
WHOAMI="$top_builddir/tests/helpers/sp-whoami"
. "$top_srcdir/tests/lib/cluster.sh"

tmp=$SP_TMP
# The kernel state the mode owns, without counters.
kstate() {
	case $MODE in
	nftables) in_ns nft list table ip svcproxy ;;
	iptables) in_ns iptables-legacy-save | grep -v '^[#:]' ;;
	*) fail "no state dump for mode $MODE" ;;
	esac
}
case $MODE in
iptables) caps=+net_admin,+net_raw capeff=0000000000003000 ;;
*) caps=+net_admin capeff=0000000000001000 ;;
esac
ns=$(sp_ns node1)
daemon_pid=
notify_pid=
stop_daemon() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
	[ -n "$notify_pid" ] && kill "$notify_pid" 2>/dev/null || true
}
trap 'stop_daemon; sp_cleanup' EXIT

sp_cluster_up
sp_serve pa pa 8080
sp_serve pb pb 8080

sp_service web '{"type":"ClusterIP","clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"],
 "ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}]}'
sp_slice web '[{"name":"http","port":8080,"protocol":"TCP"}]' "$(sp_ep "$PA_IP" node-1)"

cat >"$tmp/config.yaml" <<EOT
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: $MODE
clusterCIDR: 10.244.0.0/16
EOT

# sd_notify: a datagram socket standing in for systemd.
cat >"$tmp/notify.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        msg = s.recv(4096).decode()
        for line in msg.split("\n"):
            out.write(line + "\n")
PY
timeout 300 python3 "$tmp/notify.py" "$tmp/notify.sock" "$tmp/notify.log" &
notify_pid=$!
wait_for 5 test -S "$tmp/notify.sock" || fail "notify socket"

# Only CAP_NET_ADMIN: the bounding set limits what root gets at exec.
NOTIFY_SOCKET="$tmp/notify.sock" WATCHDOG_USEC=400000 \
	ip netns exec "$ns" setpriv --bounding-set=-all,$caps \
	timeout --preserve-status 300 "$top_builddir/tests/helpers/sp-daemon-run" \
	--proxy-mode "$MODE" --config "$tmp/config.yaml" --hostname-override node-1 \
	--min-sync-period 300ms --sync-period 30s --state-dir "$tmp" --v 2 \
	--healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 \
	"$SP_OBJ" >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!

ready() { grep -q '^READY=1$' "$tmp/notify.log"; }
wait_for 15 ready || fail "no READY=1"
grep -q '^STATUS=.*service ports programmed' "$tmp/notify.log" || fail "no STATUS="
wait_for 5 sh -c "grep -q '^WATCHDOG=1$' '$tmp/notify.log'" || fail "no WATCHDOG=1"
grep -q CapEff "/proc/$(pgrep -f "sp-daemon-run --proxy-mode $MODE --config $tmp" | head -1)/status" &&
	[ "$(awk '/CapEff/ {print $2}' "/proc/$(pgrep -f "sp-daemon-run --proxy-mode $MODE --config $tmp" | head -1)/status")" = "$capeff" ] ||
	fail "daemon runs with more capabilities than $caps"

# Idle means idle: a loop that keeps waking (it once re-armed its own
# inotify watch forever) burns a core; allow a tenth of the wait.
cpu0=$(metric process_cpu_seconds_total)
sleep 2
cpu1=$(metric process_cpu_seconds_total)
python3 -c "import sys; sys.exit(0 if $cpu1 - $cpu0 < 0.2 else 1)" ||
	fail "idle daemon used $cpu0 -> $cpu1 s of CPU in 2 s"

out=$(sp_connect pc tcp 10.96.0.10 80 --count 6)
sp_expect "ClusterIP programmed by the daemon" "$out" "pa"
[ "$SP_FAILED" = 0 ] || fail "first sync: $out"

# An endpoint added to the watched file: programmed without a restart.
sp_slice web '[{"name":"http","port":8080,"protocol":"TCP"}]' \
	"$(sp_ep "$PA_IP" node-1)" "$(sp_ep "$PB_IP" node-1)"
both() { [ "$(sp_names "$(sp_connect pc tcp 10.96.0.10 80 --count 12)")" = "pa pb" ]; }
wait_for 10 both || fail "added endpoint not programmed"

# A half-written file: reported, nothing changes in the kernel.
table_before=$(kstate)
printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"na' \
	>"$SP_OBJ/slice-web.json"
errors() { [ "$(metric svcproxy_source_errors_total)" -ge 1 ]; }
wait_for 10 errors || fail "broken file not reported"
grep -q "slice-web.json: not valid JSON" "$tmp/daemon.log" || fail "no log line for the broken file"
sleep 1 # a min-sync-period and more: a sync would have happened by now
[ "$(kstate)" = "$table_before" ] || fail "broken file changed the kernel"
out=$(sp_connect pc tcp 10.96.0.10 80 --count 12)
sp_expect "last good state still programmed" "$out" "pa pb"
[ "$SP_FAILED" = 0 ] || fail "broken file: $out"
# The writer finishes: only pb now.
sp_slice web '[{"name":"http","port":8080,"protocol":"TCP"}]' "$(sp_ep "$PB_IP" node-1)"
only_pb() { [ "$(sp_names "$(sp_connect pc tcp 10.96.0.10 80 --count 8)")" = "pb" ]; }
wait_for 10 only_pb || fail "fixed file not programmed"

# SIGHUP re-reads the configuration file.
sed -i 's|^clusterCIDR: .*|clusterCIDR: 10.250.0.0/16|' "$tmp/config.yaml"
kill -HUP "$daemon_pid"
reloaded() { kstate | grep -q 10.250.0.0/16; }
wait_for 10 reloaded || fail "SIGHUP did not apply the new cluster CIDR"

# Health and metrics.
[ "$(http_code http://127.0.0.1:10256/healthz)" = 200 ] || fail "/healthz"
in_ns curl -sf http://127.0.0.1:10249/metrics >"$tmp/metrics.txt" || fail "/metrics"
prom_valid "$tmp/metrics.txt" || fail "/metrics is not Prometheus text"
[ "$(metric kubeproxy_sync_proxy_rules_endpoint_changes_total)" -ge 2 ] || fail "endpoint changes"
[ "$(metric kubeproxy_sync_full_proxy_rules_duration_seconds_count)" -ge 2 ] || fail "full syncs"
[ "$(metric kubeproxy_sync_partial_proxy_rules_duration_seconds_count)" -ge 1 ] || fail "partial syncs"
[ "$(metric svcproxy_programmed_objects{mode=\"$MODE\"})" -gt 0 ] 2>/dev/null ||
	grep -q "^svcproxy_programmed_objects{mode=\"$MODE\"} [1-9]" "$tmp/metrics.txt" ||
	fail "programmed objects"
[ "$(in_ns curl -sf http://127.0.0.1:10249/proxyMode)" = "$MODE" ] || fail "/proxyMode"
in_ns curl -sf http://127.0.0.1:10249/rules >"$tmp/rules.nft" || fail "/rules"
grep -q "10.96.0.10" "$tmp/rules.nft" || fail "/rules does not show the plan"
# /rules prints the plan in force on request: the same bytes `svcproxy plan`
# prints for the same objects and configuration.
ip netns exec "$ns" "$top_builddir/svcproxy" plan --proxy-mode "$MODE" --config "$tmp/config.yaml" \
	--hostname-override node-1 "$SP_OBJ" >"$tmp/plan.out" 2>"$tmp/plan.err" ||
	fail "svcproxy plan: $(cat "$tmp/plan.err")"
cmp -s "$tmp/rules.nft" "$tmp/plan.out" ||
	fail "/rules differs from svcproxy plan: $(diff "$tmp/plan.out" "$tmp/rules.nft" | head -5)"

# SIGTERM: exit 0, rules stay, traffic keeps flowing.
kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=
[ "$status" = 0 ] || fail "daemon exited $status on SIGTERM"
grep -q '^STOPPING=1$' "$tmp/notify.log" || fail "no STOPPING=1"
kstate | grep -q 10.96.0.10 || fail "rules gone after SIGTERM"
out=$(sp_connect pc tcp 10.96.0.10 80 --count 4)
sp_expect "rules still in the kernel after the daemon stopped" "$out" "pb"
[ "$SP_FAILED" = 0 ] || fail "after SIGTERM: $out"
echo "PASS: daemon-files"
