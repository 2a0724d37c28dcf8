#!/bin/sh
# The daemon against a test API server (HTTPS, client certificate + bearer
# token from a kubeconfig, then the in-cluster service account; paged
# lists): list then watch; a dropped stream, garbage on the
# stream and a 410 Gone each leave the last good state programmed and are
# recovered from; kube-proxy's selectors are sent; health and health-check
# ports follow the endpoints; metrics move; the token is never logged.
set -eu
. "$(dirname "$0")/../lib/daemon.sh"

ns="sp-dapi-$$"
tmp=$(mktemp -d /tmp/sp-dapi.XXXXXX)
daemon_pid=
daemon2_pid=
server_pid=
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
	[ -n "$daemon2_pid" ] && kill "$daemon2_pid" 2>/dev/null || true
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

command -v openssl >/dev/null || { echo "openssl missing"; exit 1; }
ip netns add "$ns"
in_ns ip link set lo up

make_pki "$tmp"
cd "$tmp"
token="sp-secret-token-$$-do-not-log"

svc() { # name ip [hcport]
	if [ -n "${3:-}" ]; then
		extra=",\"type\":\"LoadBalancer\",\"externalTrafficPolicy\":\"Local\",\"healthCheckNodePort\":$3"
		nodeport=',"nodePort":30080'
	else
		extra=',"type":"ClusterIP"'
		nodeport=
	fi
	printf '{"apiVersion":"v1","kind":"Service","metadata":{"name":"%s","namespace":"default"%s},"spec":{"clusterIP":"%s","clusterIPs":["%s"]%s,"ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080%s}]}}' \
		"$1" "${labels:-}" "$2" "$2" "$extra" "$nodeport"
}
slice() { # service ip node
	printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"%s-1","namespace":"default","labels":{"kubernetes.io/service-name":"%s"}},"addressType":"IPv4","endpoints":[{"addresses":["%s"],"conditions":{"ready":true},"nodeName":"%s"}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}' \
		"$1" "$1" "$2" "$3"
}
{
	printf '{"kind":"List","apiVersion":"v1","items":['
	svc web 10.96.0.10
	printf ','
	slice web 10.244.1.5 node-a
	printf ','
	svc lb 10.96.0.20 31999
	printf ','
	slice lb 10.244.1.6 node-a
	printf ','
	printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-a"},"status":{"addresses":[{"type":"InternalIP","address":"192.168.7.1"}]}}'
	printf ','
	printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-b"},"status":{"addresses":[{"type":"InternalIP","address":"192.168.7.2"}]}}'
	printf ']}\n'
} >objects.json

ip netns exec "$ns" timeout 300 python3 "$top_srcdir/tests/helpers/fake-apiserver.py" \
	--cert server.crt --key server.key --client-ca ca.crt --token "$token" \
	--port 6443 --control-port 6444 --page-size 1 objects.json >server.log 2>&1 &
server_pid=$!
wait_for 10 in_ns curl -sf http://127.0.0.1:6444/stats || fail "test API server did not start"

ctl() { # path [body]
	in_ns curl -sf -X POST --data-binary "${2:-null}" "http://127.0.0.1:6444$1" >/dev/null
}
stat_of() { # python expression over the stats dict
	in_ns curl -sf http://127.0.0.1:6444/stats |
		python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"
}

write_kubeconfig "$tmp/kubeconfig" "$token"

plan="$tmp/plan.txt"
ip netns exec "$ns" timeout --preserve-status 300 "$top_builddir/tests/helpers/sp-daemon-run" --backend "record:$plan" --state-dir "$tmp" --kubeconfig "$tmp/kubeconfig" \
	--hostname-override node-a --min-sync-period 200ms --sync-period 30s --v 2 \
	--healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 \
	>daemon.log 2>&1 &
daemon_pid=$!

has() { grep -q "$1" "$plan" 2>/dev/null; }
wait_for 15 has "default/web:http 10.96.0.10:80 hc=0 eps=10.244.1.5:8080" ||
	fail "initial list not programmed"
has "default/lb:http 10.96.0.20:80 hc=31999" || fail "LB service missing"

# Idle means idle while three watches stay open (libcurl's timers and
# sockets in the loop must not keep it awake).
cpu0=$(metric process_cpu_seconds_total)
sleep 2
cpu1=$(metric process_cpu_seconds_total)
python3 -c "import sys; sys.exit(0 if $cpu1 - $cpu0 < 0.2 else 1)" ||
	fail "idle daemon used $cpu0 -> $cpu1 s of CPU in 2 s"

# kube-proxy's selectors went to the server.
stat_of 's["selectors"]' | grep -q '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless' ||
	fail "label selector not sent"
stat_of 's["selectors"]' | grep -q 'metadata.name=node-a' || fail "node field selector not sent"
[ "$(stat_of 's["auth_failures"]')" = 0 ] || fail "authentication failed"

# Health: green, and the LB's health check port counts its local endpoint.
[ "$(http_code http://127.0.0.1:10256/healthz)" = 200 ] || fail "/healthz not 200"
grep -q '"nodeEligible": true' "$tmp/body" || fail "/healthz body: $(cat "$tmp/body")"
[ "$(http_code http://127.0.0.1:10256/livez)" = 200 ] || fail "/livez not 200"
wait_for 5 sh -c "[ \"\$(ip netns exec $ns curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:31999/)\" = 200 ]" ||
	fail "health check port not 200 with a local endpoint"
[ "$(http_code http://127.0.0.1:31999/)" = 200 ]
grep -q '"localEndpoints": 1' "$tmp/body" || fail "hc body: $(cat "$tmp/body")"
in_ns curl -s -D "$tmp/headers" -o /dev/null http://127.0.0.1:31999/
grep -qi '^X-Load-Balancing-Endpoint-Weight: 1' "$tmp/headers" || fail "no endpoint weight header"

# A watched change is programmed (min-sync-period + one sync).
ctl /apply "$(svc api 10.96.0.30)"
ctl /apply "$(slice api 10.244.2.7 node-b)"
wait_for 10 has "default/api:http 10.96.0.30:80 hc=0 eps=10.244.2.7:8080" ||
	fail "watched Service not programmed"

# The slice says when its change began (the endpoints controller's
# annotation): the programming latency counts from there.
before=$(metric kubeproxy_network_programming_duration_seconds_sum)
trigger=$(date -u -d '-40 seconds' +%Y-%m-%dT%H:%M:%SZ)
ctl /apply "$(slice api 10.244.2.7 node-b | sed "s|\"metadata\":{|\"metadata\":{\"annotations\":{\"endpoints.kubernetes.io/last-change-trigger-time\":\"$trigger\"},|")"
latency_counted() {
	python3 -c "import sys; sys.exit(0 if float('$(metric kubeproxy_network_programming_duration_seconds_sum)') - float('$before') >= 40 else 1)"
}
wait_for 10 latency_counted || fail "trigger-time annotation not used for the programming latency"

# The LB's endpoint moves away: the health check port answers 503.
ctl /apply "$(slice lb 10.244.2.8 node-b)"
wait_for 10 has "default/lb:http 10.96.0.20:80 hc=31999 eps=10.244.2.8:8080" ||
	fail "endpoint move not programmed"
[ "$(http_code http://127.0.0.1:31999/)" = 503 ] || fail "health check port not 503 without local endpoints"
grep -q '"localEndpoints": 0' "$tmp/body" || fail "hc body: $(cat "$tmp/body")"
ctl /apply "$(slice lb 10.244.1.6 node-a)"
wait_for 10 sh -c "[ \"\$(ip netns exec $ns curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:31999/)\" = 200 ]" ||
	fail "health check port did not come back"

# Health-check servers share one thread: 30 more Local LBs add none (one
# thread each would be a thousand at 10,000 Services), and every port answers.
daemon_threads() { ls "/proc/$(pgrep -n -f "sp-daemon-run --backend record:$plan")/task" | wc -l; }
threads_before=$(daemon_threads)
{
	printf '{"kind":"List","apiVersion":"v1","items":['
	for i in $(seq 0 29); do
		[ "$i" = 0 ] || printf ','
		printf '{"apiVersion":"v1","kind":"Service","metadata":{"name":"hc%d","namespace":"default"},"spec":{"type":"LoadBalancer","externalTrafficPolicy":"Local","healthCheckNodePort":%d,"clusterIP":"10.96.1.%d","clusterIPs":["10.96.1.%d"],"ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080,"nodePort":%d}]}},' \
			"$i" $((32100 + i)) $((i + 1)) $((i + 1)) $((30100 + i))
		slice "hc$i" "10.244.4.$((i + 1))" node-a
	done
	printf ']}'
} >hc.json
in_ns curl -sf -X POST --data-binary @hc.json http://127.0.0.1:6444/apply >/dev/null
wait_for 10 has "default/hc29:http 10.96.1.30:80 hc=32129" || fail "30 health-check Services not programmed"
for i in $(seq 0 29); do
	port=$((32100 + i))
	wait_for 5 sh -c "[ \"\$(ip netns exec $ns curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/)\" = 200 ]" ||
		fail "health check port $port not 200"
done
threads_after=$(daemon_threads)
echo "daemon threads: $threads_before before, $threads_after after 30 more health-check servers"
[ "$threads_after" -le $((threads_before + 2)) ] ||
	fail "30 health-check servers took $((threads_after - threads_before)) more threads"
for i in $(seq 0 29); do
	ctl /delete "{\"kind\":\"Service\",\"namespace\":\"default\",\"name\":\"hc$i\"}"
done
hc_closed() { ! in_ns curl -s -o /dev/null http://127.0.0.1:32129/; }
wait_for 10 hc_closed || fail "health check port 32129 still open after its Service was deleted"

# A burst of 50 endpoint changes is coalesced into a few syncs and ends in
# the last state.
syncs_before=$(metric kubeproxy_sync_partial_proxy_rules_duration_seconds_count)
changes_before=$(metric kubeproxy_sync_proxy_rules_endpoint_changes_total)
{
	printf '{"kind":"List","apiVersion":"v1","items":['
	for i in $(seq 1 50); do
		[ "$i" = 1 ] || printf ','
		slice web "10.244.3.$i" node-a
	done
	printf ']}'
} >burst.json
in_ns curl -sf -X POST --data-binary @burst.json http://127.0.0.1:6444/apply >/dev/null
wait_for 10 has "default/web:http 10.96.0.10:80 hc=0 eps=10.244.3.50:8080" ||
	fail "burst: last state not programmed"
changes=$(($(metric kubeproxy_sync_proxy_rules_endpoint_changes_total) - changes_before))
syncs=$(($(metric kubeproxy_sync_partial_proxy_rules_duration_seconds_count) - syncs_before))
echo "burst: $changes endpoint changes, $syncs partial syncs"
[ "$changes" -ge 50 ] || fail "burst: $changes endpoint changes counted, 50 made"
[ "$syncs" -le 10 ] || fail "burst: $syncs syncs for one burst, changes not coalesced"
ctl /apply "$(slice web 10.244.1.5 node-a)"
wait_for 10 has "default/web:http 10.96.0.10:80 hc=0 eps=10.244.1.5:8080" || fail "after burst"

# A Service of another proxy is not ours (the server filters by selector).
ctl /apply "$(labels=',"labels":{"service.kubernetes.io/service-proxy-name":"other"}' svc other 10.96.0.40)"

# Dropped stream: the state stays, the watch comes back, changes flow again.
watches=$(stat_of 's["watches"]["Service"]')
ctl /drop
wait_for 10 sh -c "[ \$(ip netns exec $ns curl -sf http://127.0.0.1:6444/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"watches\"][\"Service\"])') -gt $watches ]" ||
	fail "watch not re-established after a drop"
has "default/web:http 10.96.0.10:80" || fail "state lost after a dropped stream"
ctl /apply "$(slice web 10.244.1.9 node-a)"
wait_for 10 has "default/web:http 10.96.0.10:80 hc=0 eps=10.244.1.9:8080" ||
	fail "change after reconnect not programmed"
[ "$(metric svcproxy_source_reconnects_total)" -ge 1 ] || fail "reconnects not counted"

# Garbage on the stream: reported, the state stays, the watch recovers.
watches=$(stat_of 's["watches"]["Service"]')
ctl /garbage
wait_for 10 sh -c "[ \"\$(ip netns exec $ns curl -s http://127.0.0.1:10249/metrics | awk '\$1==\"svcproxy_source_errors_total\"{print \$2}')\" -ge 1 ]" ||
	fail "garbage not reported"
has "default/web:http 10.96.0.10:80 hc=0 eps=10.244.1.9:8080" || fail "state lost after garbage"
ctl /apply "$(slice api 10.244.2.10 node-b)"
wait_for 15 has "default/api:http 10.96.0.30:80 hc=0 eps=10.244.2.10:8080" ||
	fail "change after garbage not programmed"

# A bookmark moves the daemon's resourceVersion: the next watch starts there.
# Only a watch that is open gets it: wait for the Service watch the garbage
# broke (its backoff is longer than the slices' one, which carried the last
# change).
wait_for 10 sh -c "[ \$(ip netns exec $ns curl -sf http://127.0.0.1:6444/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"watches\"][\"Service\"])') -gt $watches ]" ||
	fail "Service watch not re-established after garbage"
ctl /bookmark
bookmark_rv=$(stat_of 's["rv"]')
watches=$(stat_of 's["watches"]["Service"]')
ctl /drop
wait_for 10 sh -c "[ \$(ip netns exec $ns curl -sf http://127.0.0.1:6444/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"watches\"][\"Service\"])') -gt $watches ]" ||
	fail "watch not re-established after the bookmark"
[ "$(stat_of 's["last_watch_rv"]["Service"]')" = "$bookmark_rv" ] ||
	fail "rewatch did not start at the bookmark's resourceVersion $bookmark_rv"

# 410 Gone: the daemon lists again and keeps in step.
lists=$(stat_of 's["lists"]["Service"]')
ctl /gone
wait_for 10 sh -c "[ \$(ip netns exec $ns curl -sf http://127.0.0.1:6444/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"lists\"][\"Service\"])') -gt $lists ]" ||
	fail "no relist after 410 Gone"
in_ns curl -sf -X POST --data-binary '{"kind":"Service","namespace":"default","name":"api"}' \
	http://127.0.0.1:6444/delete >/dev/null
wait_for 10 sh -c "! grep -q default/api: '$plan'" || fail "delete after relist not programmed"
has "default/web:http" || fail "state lost after relist"
[ "$(metric svcproxy_source_relists_total)" -ge 1 ] || fail "relists not counted"

grep -q "default/other" "$plan" && fail "service of another proxy programmed"

# SIGHUP: the configuration is rebuilt and every resource listed again.
lists=$(stat_of 's["lists"]["EndpointSlice"]')
kill -HUP "$daemon_pid"
relisted() { [ "$(stat_of 's["lists"]["EndpointSlice"]')" -gt "$lists" ]; }
wait_for 10 relisted || fail "SIGHUP did not relist"
has "default/web:http 10.96.0.10:80" || fail "state lost over SIGHUP"

# Metrics: valid Prometheus text, counters moved.
in_ns curl -sf http://127.0.0.1:10249/metrics >metrics.txt
prom_valid metrics.txt || fail "/metrics is not Prometheus text"
[ "$(metric kubeproxy_sync_proxy_rules_service_changes_total)" -ge 3 ] || fail "service changes not counted"
[ "$(metric kubeproxy_sync_proxy_rules_endpoint_changes_total)" -ge 4 ] || fail "endpoint changes not counted"
[ "$(metric kubeproxy_sync_partial_proxy_rules_duration_seconds_count)" -ge 3 ] || fail "partial syncs not counted"
[ "$(metric kubeproxy_network_programming_duration_seconds_count)" -ge 1 ] || fail "programming latency not observed"

# This node is being deleted: /healthz says so (nodeEligible false, 503),
# /livez still 200, as kube-proxy.
ctl /apply '{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-a","deletionTimestamp":"2026-01-01T00:00:00Z"},"status":{"addresses":[{"type":"InternalIP","address":"192.168.7.1"}]}}'
ineligible() { [ "$(http_code http://127.0.0.1:10256/healthz)" = 503 ]; }
wait_for 10 ineligible || fail "/healthz not 503 for a node being deleted"
grep -q '"nodeEligible": false' "$tmp/body" || fail "/healthz body: $(cat "$tmp/body")"
[ "$(http_code http://127.0.0.1:10256/livez)" = 200 ] || fail "/livez not 200 for a node being deleted"

[ "$(stat_of 's["client_cert_requests"]')" -gt 0 ] || fail "the client certificate was not presented"

# In-cluster: service-account token and CA files, KUBERNETES_SERVICE_HOST.
mkdir -p "$tmp/sa"
cp "$tmp/ca.crt" "$tmp/sa/ca.crt"
printf '%s\n' "$token" >"$tmp/sa/token"
KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=6443 SVCPROXY_SERVICEACCOUNT_DIR="$tmp/sa" \
	ip netns exec "$ns" timeout --preserve-status 60 "$top_builddir/tests/helpers/sp-daemon-run" \
	--backend "record:$tmp/plan2.txt" --state-dir "$tmp" --hostname-override node-a \
	--min-sync-period 200ms --healthz-bind-address 127.0.0.1:10266 \
	--metrics-bind-address 127.0.0.1:10259 >daemon2.log 2>&1 &
daemon2_pid=$!
in_cluster_ok() { grep -q "default/web:http 10.96.0.10:80" "$tmp/plan2.txt" 2>/dev/null; }
wait_for 15 in_cluster_ok || fail "in-cluster daemon did not program the Services"
[ "$(stat_of 's["auth_failures"]')" = 0 ] || fail "in-cluster token refused"
kill -TERM "$daemon2_pid"
wait "$daemon2_pid" || fail "in-cluster daemon did not exit cleanly"
daemon2_pid=
grep -q "$token" daemon2.log && fail "the bearer token was logged (in-cluster)"

# The secret never reaches the log.
grep -q "$token" daemon.log && fail "the bearer token was logged"

kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=
[ "$status" = 0 ] || fail "daemon exited $status on SIGTERM"
echo "PASS: daemon-api"
