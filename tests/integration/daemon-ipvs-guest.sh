#!/bin/sh
# Inside the kernel lab (daemon-ipvs-lab.sh): the daemon programs IPVS in a
# node namespace from a watched directory; the node's connections to the
# ClusterIP reach the pod endpoints; an added endpoint becomes a real server
# without restart; a half-written file leaves the virtual servers as they
# were; SIGTERM exits 0 and leaves them in the kernel.
set -eu
[ -n "${SP_LAB_GUEST:-}" ] || { echo "run me through tests/lab/uml-run.sh" >&2; exit 1; }
. "$top_srcdir/tests/lib/daemon.sh"

s=$$
ns=sp-dn-$s
P1=sp-dp1-$s
P2=sp-dp2-$s
tmp=$(mktemp -d)
daemon_pid=
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
	for n in $ns $P1 $P2; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true
		ip netns del "$n" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

for n in $ns $P1 $P2; do
	ip netns add "$n"
	ip -n "$n" link set lo up
done
# Routed pods, as the IPVS lab test does.
for p in "$P1 10.244.0.11 v11" "$P2 10.244.0.12 v12"; do
	set -- $p
	ip link add eth0 netns "$1" type veth peer name "$3" netns "$ns"
	ip -n "$1" addr add "$2/32" dev eth0
	ip -n "$1" link set eth0 up
	ip -n "$1" route add 10.244.0.1 dev eth0
	ip -n "$1" route add default via 10.244.0.1
	ip -n "$ns" addr add 10.244.0.1/32 dev "$3"
	ip -n "$ns" link set "$3" up
	ip -n "$ns" route add "$2/32" dev "$3"
	ip netns exec "$1" timeout 170 socat TCP-LISTEN:8080,bind="$2",fork,reuseaddr \
		SYSTEM:"echo $1" >/dev/null 2>&1 &
done

src=$tmp/src
mkdir "$src"
service='{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},"spec":{"type":"ClusterIP","clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"],"ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}]}}'
slice() { # ADDR...
	eps=""
	for a in "$@"; do
		eps="${eps:+$eps,}{\"addresses\":[\"$a\"],\"conditions\":{\"ready\":true},\"nodeName\":\"node-a\"}"
	done
	printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"web-1","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"}],"endpoints":[%s]}' "$eps"
}
put() { # FILE TEXT: atomically
	printf '%s\n' "$2" >"$src/.$1.tmp"
	mv "$src/.$1.tmp" "$src/$1"
}
put svc.json "$service"
put slice.json "$(slice 10.244.0.11)"
put node.json '{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-a"},"status":{"addresses":[{"type":"InternalIP","address":"192.168.0.10"}]}}'

ip netns exec "$ns" timeout --preserve-status 170 "$top_builddir/tests/helpers/sp-daemon-run" \
	--proxy-mode ipvs --hostname-override node-a --min-sync-period 300ms --state-dir "$tmp" \
	--healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 --v 2 \
	"$src" >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!

vs() { in_ns ipvsadm-save -n; }
has_reals() { # ADDR...: exactly these real servers behind 10.96.0.10:80
	want=$(for a in "$@"; do echo "$a:8080"; done | sort | tr '\n' ' ')
	got=$(vs | awk '$1 == "-a" && $3 == "10.96.0.10:80" { print $5 }' | sort | tr '\n' ' ')
	[ "$got" = "$want" ]
}
fetch() { in_ns timeout 4 socat -T3 -u TCP:10.96.0.10:80,connect-timeout=2 - </dev/null 2>/dev/null | head -n1; }
answers() { # NAME...: what 8 connections from the node saw, sorted, unique
	for _ in 1 2 3 4 5 6 7 8; do fetch; done | sort -u | tr '\n' ' '
}

wait_for 20 has_reals 10.244.0.11 || fail "virtual server not programmed: $(vs)"
[ "$(answers)" = "$P1 " ] || fail "node -> ClusterIP did not reach $P1: $(answers)"

put slice.json "$(slice 10.244.0.11 10.244.0.12)"
wait_for 10 has_reals 10.244.0.11 10.244.0.12 || fail "added endpoint not programmed: $(vs)"
both() { [ "$(answers)" = "$(printf '%s\n' "$P1" "$P2" | sort | tr '\n' ' ')" ]; }
wait_for 10 both || fail "both endpoints do not answer: $(answers)"

before=$(vs)
printf '{"apiVersion":"discovery.k8s.io/v1","kind":"Endpoint' >"$src/slice.json"
errors() { [ "$(metric svcproxy_source_errors_total)" -ge 1 ]; }
wait_for 10 errors || fail "broken file not reported"
sleep 1 # longer than min-sync-period: a sync would have run
[ "$(vs)" = "$before" ] || fail "broken file changed IPVS: $(vs)"

kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=
[ "$status" = 0 ] || fail "daemon exited $status on SIGTERM"
has_reals 10.244.0.11 10.244.0.12 || fail "virtual servers gone after SIGTERM: $(vs)"
both || fail "traffic stopped after SIGTERM"
echo "PASS: daemon-ipvs-lab"
