#!/bin/sh
# The DaemonSet's path end to end: the daemon on a node namespace watches the
# test API server (kubeconfig, TLS) and programs nftables; a pod's real
# connections follow the watched EndpointSlice through an endpoint change, a
# dropped watch and a Service left without endpoints (refused at once).
set -eu
MODE=${MODE:-nftables}
. "$(dirname "$0")/../lib/daemon.sh"
WHOAMI="$top_builddir/tests/helpers/sp-whoami"
. "$top_srcdir/tests/lib/cluster.sh"

tmp=$SP_TMP
ns=$(sp_ns node1)
daemon_pid=
server_pid=
stop_all() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
}
trap 'stop_all; sp_cleanup' EXIT

sp_cluster_up
sp_serve pa pa 8080
sp_serve pb pb 8080
make_pki "$tmp"
token="sp-api-nft-$$"

slice() { # endpoint JSON...
	eps=""
	for e in "$@"; do eps="${eps:+$eps,}$e"; done
	printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"web-x1","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"}],"endpoints":[%s]}' "$eps"
}
{
	printf '{"kind":"List","apiVersion":"v1","items":['
	printf '{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},"spec":{"type":"ClusterIP","clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"],"ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}]}},'
	slice "$(sp_ep "$PA_IP" node-1)"
	printf ',%s' "$(python3 -c 'import json,sys; print(",".join(json.dumps(o) for o in json.load(open(sys.argv[1]))["items"]))' "$SP_OBJ/nodes.json")"
	printf ']}\n'
} >"$tmp/objects.json"

ip netns exec "$ns" timeout 300 python3 "$top_srcdir/tests/helpers/fake-apiserver.py" \
	--cert "$tmp/server.crt" --key "$tmp/server.key" --client-ca "$tmp/ca.crt" \
	--token "$token" --port 6443 --control-port 6444 "$tmp/objects.json" \
	>"$tmp/server.log" 2>&1 &
server_pid=$!
wait_for 10 in_ns curl -sf http://127.0.0.1:6444/stats || fail "test API server did not start"
ctl() { in_ns curl -sf -X POST --data-binary "${2:-null}" "http://127.0.0.1:6444$1" >/dev/null; }
write_kubeconfig "$tmp/kubeconfig" "$token"

ip netns exec "$ns" timeout --preserve-status 300 "$top_builddir/tests/helpers/sp-daemon-run" \
	--proxy-mode "$MODE" --kubeconfig "$tmp/kubeconfig" --hostname-override node-1 \
	--min-sync-period 300ms --state-dir "$tmp" --v 2 \
	--healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 \
	>"$tmp/daemon.log" 2>&1 &
daemon_pid=$!

names() { sp_names "$(sp_connect pc tcp 10.96.0.10 80 --count 10)"; }
is_pa() { [ "$(names)" = "pa" ]; }
wait_for 15 is_pa || fail "listed Service not programmed"

ctl /apply "$(slice "$(sp_ep "$PA_IP" node-1)" "$(sp_ep "$PB_IP" node-1)")"
both() { [ "$(names)" = "pa pb" ]; }
wait_for 10 both || fail "watched endpoint not programmed"

# The watch drops: traffic keeps its rules, the daemon reconnects and
# follows the next change.
ctl /drop
out=$(sp_connect pc tcp 10.96.0.10 80 --count 10)
sp_expect "rules kept while the watch is down" "$out" "pa pb"
ctl /apply "$(slice "$(sp_ep "$PB_IP" node-1)")"
is_pb() { [ "$(names)" = "pb" ]; }
wait_for 15 is_pb || fail "change after a dropped watch not programmed"

# No endpoint left: refused at once, not a timeout.
ctl /apply "$(slice)"
refused() { sp_connect pc tcp 10.96.0.10 80 --count 1 | grep -q '^ERR refused'; }
wait_for 10 refused || fail "Service without endpoints not refused"

kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=
[ "$status" = 0 ] || fail "daemon exited $status on SIGTERM"
grep -q "$token" "$tmp/daemon.log" && fail "token logged"
[ "$SP_FAILED" = 0 ] || fail "scenario checks failed"
echo "PASS: daemon-api-nft"
