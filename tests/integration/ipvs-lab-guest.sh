#!/bin/bash
# IPVS mode end to end, run inside the kernel lab (tests/lab/uml-run.sh) by
# ipvs-lab.sh: a node namespace programmed by the agent, routed pods,
# a "remote node" with pod addresses, an off-cluster client and the real
# load balancer, all namespaces of the guest kernel. Real traffic only.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/ipvs-lib.sh"
drive=${SP_IPVS_DRIVE:-$top_builddir/tests/helpers/sp-ipvs-drive}
[ -x "$drive" ] || sp_fail "driver $drive not built"
[ -n "${SP_LAB_GUEST:-}" ] || sp_fail "run me through tests/lab/uml-run.sh"

s=$$
N=sp-n-$s C=sp-c-$s P1=sp-p1-$s P2=sp-p2-$s R=sp-r-$s E=sp-e-$s
work=$(mktemp -d)
cleanup() {
	for ns in $N $C $P1 $P2 $R $E; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT

nsx() { ns=$1; shift; ip netns exec "$ns" "$@"; }

veth() { # veth NS_A IF_A ADDR_A NS_B IF_B ADDR_B
	ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
	nsx "$1" ip addr add "$3" dev "$2"
	nsx "$1" ip link set "$2" up
	[ -n "$6" ] && nsx "$4" ip addr add "$6" dev "$5"
	nsx "$4" ip link set "$5" up
}

# ---- topology --------------------------------------------------------
for ns in $N $C $P1 $P2 $R $E; do
	ip netns add "$ns" && nsx "$ns" ip link set lo up || sp_fail "netns $ns"
done
veth $C eth0 192.168.0.2/24 $N eth0 192.168.0.10/24
nsx $C ip route add default via 192.168.0.10
# Pods are routed, not bridged (as Calico does): a bridge would let a local
# endpoint answer a local client directly at layer 2, past IPVS, unless
# br_netfilter sends bridged frames through the node's netfilter.
for p in "$P1 10.244.0.11" "$P2 10.244.0.12"; do
	set -- $p
	ip link add eth0 netns "$1" type veth peer name "v${2##*.}" netns $N
	nsx "$1" ip addr add "$2/32" dev eth0
	nsx "$1" ip link set eth0 up
	nsx "$1" ip route add 10.244.0.1 dev eth0
	nsx "$1" ip route add default via 10.244.0.1
	nsx $N ip addr add 10.244.0.1/32 dev "v${2##*.}"
	nsx $N ip link set "v${2##*.}" up
	nsx $N ip route add "$2/32" dev "v${2##*.}"
done
veth $R eth0 172.16.0.2/24 $N eth1 172.16.0.1/24
nsx $R ip addr add 10.244.1.21/32 dev lo
nsx $R ip addr add 10.244.1.22/32 dev lo
nsx $R ip route add default via 172.16.0.1
nsx $N ip route add 10.244.1.0/24 via 172.16.0.2
veth $E eth0 172.17.0.2/24 $N eth2 172.17.0.1/24
nsx $E ip addr add 198.51.100.1/32 dev lo
nsx $E ip addr add 198.51.100.2/32 dev lo
nsx $E ip route add default via 172.17.0.1
nsx $N ip route add 198.51.100.0/24 via 172.17.0.2

# ---- servers: each answers with its name and the client address it saw -
serve() { # serve NS NAME ADDR PORT [echo]
	if [ "${5:-}" = echo ]; then
		nsx "$1" timeout 300 socat TCP-LISTEN:"$4",bind="$3",fork,reuseaddr \
			SYSTEM:"echo $2; cat" >/dev/null 2>&1 &
	else
		nsx "$1" timeout 300 socat TCP-LISTEN:"$4",bind="$3",fork,reuseaddr \
			SYSTEM:'echo '"$2"' $SOCAT_PEERADDR' >/dev/null 2>&1 &
	fi
}
serve $P1 p1 10.244.0.11 8080
serve $P2 p2 10.244.0.12 8080
serve $R r1 10.244.1.21 8080
serve $R r2 10.244.1.22 8080
serve $R r1 10.244.1.21 9090 echo
serve $R r2 10.244.1.22 9090 echo
serve $E elb-8443 198.51.100.1 8443
serve $E elb-pass 198.51.100.2 80

# fetch NS ADDR PORT: the name of the server that answered (empty on failure)
fetch() {
	nsx "$1" timeout 10 socat -T5 -u TCP:"$2":"$3",connect-timeout=6 - 2>/dev/null </dev/null |
		head -n1 | cut -d' ' -f1
}
fetch_peer() { # the client address the server saw
	nsx "$1" timeout 10 socat -T5 -u TCP:"$2":"$3",connect-timeout=6 - 2>/dev/null </dev/null |
		head -n1 | cut -d' ' -f2
}
wait_listeners() {
	for i in $(seq 50); do
		[ "$(fetch $R 10.244.1.22 8080)" = r2 ] && [ "$(fetch $E 198.51.100.2 80)" = elb-pass ] &&
			[ "$(fetch $P2 10.244.0.12 8080)" = p2 ] && return 0
		sleep 0.1
	done
	sp_fail "servers did not come up"
}
wait_listeners

# ---- the cluster -----------------------------------------------------
SCHED='{"svcproxy.io/ipvs-scheduler":"%s"}'
write_cluster() { # write_cluster FILE [variant]
	variant=${2:-base}
	sp_node node-a 192.168.0.10
	SP_NODEPORT=30080 sp_svc np NodePort 10.96.0.11 80
	sp_slice np 8080 10.244.1.21@node-b 10.244.1.22@node-b
	sp_svc ext ClusterIP 10.96.0.12 80 '"externalIPs":["203.0.113.10"]'
	sp_slice ext 8080 10.244.1.21@node-b
	SP_NODEPORT=30081 sp_svc lbc LoadBalancer 10.96.0.13 80 '"externalTrafficPolicy":"Cluster"' \
		'{}' '{"loadBalancer":{"ingress":[{"ip":"198.51.100.1"}]}}'
	sp_slice lbc 8080 10.244.1.21@node-b 10.244.1.22@node-b
	SP_NODEPORT=30082 sp_svc lbl LoadBalancer 10.96.0.14 80 '"externalTrafficPolicy":"Local"' \
		'{}' '{"loadBalancer":{"ingress":[{"ip":"198.51.100.3"}]}}'
	sp_slice lbl 8080 10.244.0.12@node-a 10.244.1.22@node-b
	SP_NODEPORT=30083 sp_svc lbl0 LoadBalancer 10.96.0.15 80 '"externalTrafficPolicy":"Local"' \
		'{}' '{"loadBalancer":{"ingress":[{"ip":"198.51.100.4"}]}}'
	sp_slice lbl0 8080 10.244.1.21@node-b
	SP_NODEPORT=30084 sp_svc pass LoadBalancer 10.96.0.16 80 '' \
		'{"kubernetes.io/elb.pass-through":"true"}' \
		'{"loadBalancer":{"ingress":[{"ip":"198.51.100.2"}]}}'
	sp_slice pass 8080 10.244.1.21@node-b
	sp_svc aff ClusterIP 10.96.0.17 80 '"sessionAffinity":"ClientIP"'
	sp_slice aff 8080 10.244.1.21@node-b 10.244.1.22@node-b
	sp_svc sh ClusterIP 10.96.0.18 80 '' "$(printf "$SCHED" sh)"
	sp_slice sh 8080 10.244.1.21@node-b 10.244.1.22@node-b
	sp_svc wlc ClusterIP 10.96.0.19 9090 '' "$(printf "$SCHED" wlc)"
	sp_slice wlc 9090 10.244.1.21@node-b 10.244.1.22@node-b
	sp_svc badext ClusterIP 10.96.0.20 80 '"externalIPs":["192.168.0.10"]'
	sp_slice badext 8080 10.244.1.21@node-b
	case $variant in
	base)
		sp_svc web ClusterIP 10.96.0.10 80
		sp_slice web 8080 10.244.0.11@node-a 10.244.1.21@node-b
		sp_svc grace ClusterIP 10.96.0.21 9090
		sp_slice grace 9090 10.244.1.21@node-b
		;;
	changed | badsched | moreep)
		# grace: r1 leaves, r2 arrives; web gone; new Service "more".
		# moreep: r1 back on grace, a remote endpoint (no hairpin rule).
		sp_svc grace ClusterIP 10.96.0.21 9090
		if [ "$variant" = moreep ]; then
			sp_slice grace 9090 10.244.1.22@node-b 10.244.1.21@node-b
		else
			sp_slice grace 9090 10.244.1.22@node-b
		fi
		sp_svc more ClusterIP 10.96.0.22 80 '"externalIPs":["203.0.113.22"]'
		sp_slice more 8080 10.244.1.22@node-b
		if [ "$variant" = badsched ]; then
			# A scheduler the planner knows but this kernel lacks
			# (CONFIG_IP_VS_TWOS is not set in the lab kernel).
			sp_svc badsched ClusterIP 10.96.0.23 80 '' "$(printf "$SCHED" twos)"
			sp_slice badsched 8080 10.244.1.22@node-b
		fi
		;;
	esac
	sp_write "$1"
}
write_cluster "$work/base.json" base
write_cluster "$work/changed.json" changed
write_cluster "$work/badsched.json" badsched
write_cluster "$work/moreep.json" moreep

# Node ports on the node network only (all local addresses, the default, is
# covered by scenarios-ipvs.sh), so that the plan printed without a kernel
# is exactly what the kernel must hold.
OPTS="--node node-a --cluster-cidr 10.244.0.0/16 --nodeport-addresses 192.168.0.0/24 --graceful-ms 60000"
agent() { nsx $N "$drive" $OPTS "$@"; }

planned_ipvs() { # the ipvsadm-save lines of the plan, sorted
	agent plan "$1" 2>/dev/null | sed -n '/^# ipvsadm-save/,/^# ip:/p' | grep '^-' | sort
}
planned_addrs() {
	agent plan "$1" 2>/dev/null | sed -n 's|^ip \(-6 \)\{0,1\}addr add \([^ ]*\) dev kube-ipvs0$|\2|p' | sort
}
kernel_addrs() {
	nsx $N ip -o addr show dev kube-ipvs0 | awk '{print $4}' | sort
}
expect_kernel_equals_plan() { # FILE WHAT
	nsx $N ipvsadm-save -n | sort >"$work/have"
	planned_ipvs "$1" >"$work/want"
	diff -u "$work/want" "$work/have" >&2 || sp_fail "$2: ipvsadm-save differs from the plan"
	kernel_addrs >"$work/have-addrs"
	planned_addrs "$1" >"$work/want-addrs"
	diff -u "$work/want-addrs" "$work/have-addrs" >&2 ||
		sp_fail "$2: kube-ipvs0 addresses differ from the plan"
}

# ---- first sync --------------------------------------------------------
agent sync "$work/base.json" 2>"$work/sync.err"
rc=$?
[ $rc = 1 ] || { cat "$work/sync.err" >&2; sp_fail "first sync: status $rc (want 1: badext refused)"; }
grep -q '192.168.0.10' "$work/sync.err" || sp_fail "node IP as externalIP not reported"
expect_kernel_equals_plan "$work/base.json" "first sync"
sp_ok "sync: ipvsadm-save equals the plan, kube-ipvs0 holds exactly the planned addresses"
helper_rules() { sed -n '/^# iptables-save$/,$p'; }
agent plan "$work/base.json" 2>/dev/null | helper_rules >"$work/want-ipt"
agent state "$work/base.json" 2>/dev/null | helper_rules >"$work/have-ipt"
diff -u "$work/want-ipt" "$work/have-ipt" >&2 || sp_fail "helper rules read back differ from the plan"
ipset_part() { sed -n '/^# ipset restore$/,/^# /p' | grep -v '^#' | sort; }
agent plan "$work/base.json" 2>/dev/null | ipset_part >"$work/want-sets"
agent state "$work/base.json" 2>/dev/null | ipset_part >"$work/have-sets"
diff -u "$work/want-sets" "$work/have-sets" >&2 || sp_fail "ipsets read back differ from the plan"
nsx $N ipset test KUBE-LOOP-BACK 10.244.0.11,tcp:8080,10.244.0.11 2>/dev/null ||
	sp_fail "hairpin member missing"
grep -q -- '-A KUBE-POSTROUTING -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE' \
	"$work/have-ipt" || sp_fail "hairpin rule missing"
[ "$(nsx $N iptables-legacy-save -t nat | grep -c '^-A KUBE-SERVICES')" -le 4 ] ||
	sp_fail "KUBE-SERVICES is not constant"
sp_ok "helper iptables rules (constant, set matches) and ipsets read back equal the plan"
nsx $N ipvsadm-save -n | grep -q '192.168.0.10:80 ' && sp_fail "node IP externalIP reached IPVS"
nsx $N ipset test KUBE-IPVS-CAPTURE 192.168.0.10,tcp:80 2>/dev/null && sp_fail "node IP captured"
sp_ok "a node IP given as externalIP is refused and nothing of it reaches the kernel"
[ "$(nsx $N ip -o link show kube-ipvs0 | grep -c 'NOARP')" = 1 ] || sp_fail "kube-ipvs0 not NOARP"
nsx $N ip -o link show kube-ipvs0 | grep -q '[<,]UP[,>]' && sp_fail "kube-ipvs0 is up"
for k in vs/conntrack vs/expire_nodest_conn vs/expire_quiescent_template ip_forward; do
	[ "$(nsx $N cat /proc/sys/net/ipv4/$k)" = 1 ] || sp_fail "sysctl $k not 1"
done
sp_ok "kube-ipvs0 is a down NOARP dummy; IPVS sysctls set"
agent diff "$work/base.json" >"$work/diff" 2>/dev/null
[ $? = 0 ] && [ ! -s "$work/diff" ] || { cat "$work/diff" >&2; sp_fail "diff after sync not empty"; }
sp_ok "diff after sync is empty"

# ---- traffic -----------------------------------------------------------
seq_of() { # seq_of NS ADDR PORT COUNT: the answering servers, space separated
	out=""
	for i in $(seq "$4"); do out="$out $(fetch "$1" "$2" "$3")"; done
	echo $out
}
got=$(seq_of $N 10.96.0.10 80 4)
case "$got" in "p1 r1 p1 r1" | "r1 p1 r1 p1") ;; *) sp_fail "ClusterIP rr from node: $got" ;; esac
got=$(seq_of $P2 10.96.0.10 80 4)
case "$got" in "p1 r1 p1 r1" | "r1 p1 r1 p1") ;; *) sp_fail "ClusterIP rr from pod: $got" ;; esac
sp_ok "ClusterIP round robin alternates, from the node and from a pod"

got=$(seq_of $C 192.168.0.10 30080 2)
case "$got" in "r1 r2" | "r2 r1") ;; *) sp_fail "NodePort from off-cluster client: $got" ;; esac
sp_ok "NodePort from an off-cluster client"
[ "$(fetch $C 203.0.113.10 80)" = r1 ] || sp_fail "externalIP from client"
[ "$(fetch $P1 203.0.113.10 80)" = r1 ] || sp_fail "externalIP from pod"
[ "$(fetch $N 203.0.113.10 80)" = r1 ] || sp_fail "externalIP from node"
sp_ok "externalIP (captured per port) from client, pod and node"

got=$(seq_of $C 198.51.100.1 80 2)
case "$got" in "r1 r2" | "r2 r1") ;; *) sp_fail "LB IP (Cluster) from client: $got" ;; esac
[ -n "$(fetch $P1 198.51.100.1 80)" ] || sp_fail "LB IP (Cluster) from pod"
[ -n "$(fetch $N 198.51.100.1 80)" ] || sp_fail "LB IP (Cluster) from node"
for ns in $C $P1 $N; do
	[ "$(fetch $ns 198.51.100.1 8443)" = elb-8443 ] ||
		sp_fail "another port of the captured LB IP is not reachable from $ns"
done
nsx $N ip -o addr show dev kube-ipvs0 | grep -q '198.51.100.1/' && sp_fail "LB IP bound whole"
sp_ok "LB IP (Cluster) captured per port; its other port still reaches the real balancer"

for i in 1 2 3; do
	[ "$(fetch $C 198.51.100.3 80)" = p2 ] || sp_fail "LB IP (Local) not served by the local endpoint"
done
[ "$(fetch_peer $C 198.51.100.3 80)" = 192.168.0.2 ] || sp_fail "LB IP (Local): client source not kept"
sp_ok "LB IP (Local): local endpoint only, client source kept"
[ "$(fetch $P1 198.51.100.4 80)" = r1 ] || sp_fail "LB IP (Local, no local endpoint) from a pod"
[ "$(fetch $N 198.51.100.4 80)" = r1 ] || sp_fail "LB IP (Local, no local endpoint) from the node"
sp_ok "LB IP (Local) without local endpoint: in-cluster clients fall back to cluster endpoints"
[ -z "$(fetch $C 198.51.100.4 80)" ] || sp_fail "LB IP (Local, no local endpoint) answered off-cluster"
[ -z "$(fetch $C 192.168.0.10 30083)" ] || sp_fail "node port (Local, no local endpoint) answered off-cluster"
sp_ok "LB IP and node port (Local) without local endpoint: off-cluster clients dropped"

[ "$(fetch $P1 198.51.100.2 80)" = elb-pass ] || sp_fail "pass-through LB IP captured (pod)"
[ "$(fetch $N 198.51.100.2 80)" = elb-pass ] || sp_fail "pass-through LB IP captured (node)"
sp_ok "pass-through LB IP is not captured: traffic goes to the real balancer"

got=$(seq_of $P1 10.96.0.17 80 6)
case "$got" in "r1 r1 r1 r1 r1 r1" | "r2 r2 r2 r2 r2 r2") ;; *) sp_fail "affinity: $got" ;; esac
sp_ok "ClientIP affinity keeps one client on one endpoint"
got=$(seq_of $P1 10.96.0.18 80 6)
case "$got" in "r1 r1 r1 r1 r1 r1" | "r2 r2 r2 r2 r2 r2") ;; *) sp_fail "sh: $got" ;; esac
sp_ok "sh keeps one client on one real server"

# wlc: hold one connection open; new ones go to the other (idle) server.
# until_file waits for a file the test creates: no timing assumptions.
until_file() { while [ ! -e "$1" ]; do sleep 0.1; done; }
(echo hold; until_file "$work/release") |
	nsx $P1 timeout 60 socat -T60 - TCP:10.96.0.19:9090 >"$work/held" 2>/dev/null &
held=$!
for i in $(seq 100); do [ -s "$work/held" ] && break; sleep 0.1; done
busy=$(head -n1 "$work/held")
[ -n "$busy" ] || sp_fail "wlc: held connection got no answer"
wlc_try() {
	for t in 1 2 3; do
		o=$(echo x | nsx $P2 timeout 10 socat -T5 - TCP:10.96.0.19:9090 2>/dev/null | head -n1)
		[ -n "$o" ] && break
	done
	echo "$o"
}
for i in 1 2 3 4; do
	other=$(wlc_try)
	[ -n "$other" ] || sp_fail "wlc: no answer"
	[ -n "$other" ] && [ "$other" != "$busy" ] ||
		{ nsx $N ipvsadm -Ln -t 10.96.0.19:9090 >&2; sp_fail "wlc sent a new connection to the busy server $busy"; }
done
touch "$work/release"
wait $held
sp_ok "wlc prefers the idle real server"

# ---- graceful removal, changes -----------------------------------------
# A long connection to grace's only endpoint r1 ...
(echo one; until_file "$work/go"; echo two; sleep 1) |
	nsx $P1 timeout 60 socat -T60 - TCP:10.96.0.21:9090 >"$work/long" 2>/dev/null &
long=$!
for i in $(seq 100); do grep -q one "$work/long" && break; sleep 0.1; done
grep -q '^r1$' "$work/long" || sp_fail "graceful: long connection did not reach r1"
# ... survives r1 leaving (r2 replaces it; web goes; more arrives).
agent sync "$work/changed.json" 2>/dev/null
nsx $N ipvsadm -Ln -t 10.96.0.21:9090 >"$work/grace"
grep -q '10.244.1.21:9090 *Masq *0 *1' "$work/grace" ||
	{ cat "$work/grace" >&2; sp_fail "graceful: leaving r1 is not drained (weight 0, 1 active)"; }
grep -q '10.244.1.22:9090 *Masq *1 ' "$work/grace" || sp_fail "graceful: r2 not added"
# One retry for a connection that got no answer at all (a loaded lab can
# miss socat's 5 s); an answer from r1 fails at once.
new_conn() { echo x | nsx $P2 timeout 10 socat -T5 - TCP:10.96.0.21:9090 2>/dev/null | head -n1; }
answer=$(new_conn)
[ -n "$answer" ] || answer=$(new_conn)
[ "$answer" = r2 ] ||
	sp_fail "graceful: a new connection reached '${answer:-nothing}', not r2 (r1 is draining)"
touch "$work/go"
wait $long
grep -q '^two$' "$work/long" || sp_fail "graceful: the open connection broke when r1 left"
sp_ok "graceful removal: weight 0, open connection kept alive, new ones go elsewhere"
kernel_addrs | grep -q '^10.96.0.10/' && sp_fail "kube-ipvs0 kept the deleted Service's address"
kernel_addrs | grep -q '^10.96.0.22/' || sp_fail "kube-ipvs0 lacks the new Service's address"
nsx $N ipset test KUBE-IPVS-CAPTURE 203.0.113.22,tcp:80 2>/dev/null ||
	sp_fail "capture member of the new externalIP missing"
[ "$(fetch $C 203.0.113.22 80)" = r2 ] || sp_fail "new externalIP not served"
sp_ok "changes: deleted Service's address removed, new one bound and captured"
# The connection is closed: the next sync deletes the drained server.
sleep 0.5
agent sync "$work/changed.json" 2>/dev/null
expect_kernel_equals_plan "$work/changed.json" "after drain"
sp_ok "drained real server deleted once its connection closed"

# ---- restart and drift repair ------------------------------------------
nsx $N ipvsadm -A -t 10.99.0.1:80 -s rr # foreign: not on kube-ipvs0, no rule
nsx $N ipvsadm -a -t 10.99.0.1:80 -r 10.244.1.21:8080 -m
nsx $N ipvsadm -d -t 10.96.0.11:80 -r 10.244.1.21:8080
nsx $N ipvsadm -E -t 10.96.0.17:80 -s wlc
nsx $N ipvsadm -a -t 10.96.0.18:80 -r 10.244.1.99:8080 -m
nsx $N ipvsadm -A -t 10.96.0.99:80 -s rr # on kube-ipvs0: ours, stale
nsx $N ip addr add 10.96.0.99/32 dev kube-ipvs0
nsx $N ip addr del 10.96.0.12/32 dev kube-ipvs0
nsx $N ipset del KUBE-IPVS-CAPTURE 198.51.100.1,tcp:80
nsx $N ip rule del fwmark 0x2000/0x2000 lookup 2153 pref 2153
nsx $N iptables-legacy -t mangle -F KUBE-IPVS-CAPTURE
agent diff "$work/changed.json" >"$work/drift" 2>/dev/null
[ $? = 1 ] || sp_fail "diff did not see the drift"
grep -q -- '-a -t 10.96.0.11:80 -r 10.244.1.21:8080' "$work/drift" || sp_fail "diff: missing real server"
grep -q -- '-D -t 10.96.0.99:80' "$work/drift" || sp_fail "diff: stale virtual server"
grep -q -- 'ipset add KUBE-IPVS-CAPTURE 198.51.100.1,tcp:80' "$work/drift" ||
	sp_fail "diff: missing capture member"
grep -q -- 'rule add fwmark 0x2000/0x2000' "$work/drift" || sp_fail "diff: missing fwmark rule"
agent sync "$work/changed.json" 2>/dev/null
# The stray real server drains like any leaving one; idle, it goes next sync.
nsx $N ipvsadm-save -n | grep -q -- '-r 10.244.1.99:8080 -m -w 0' || sp_fail "stray real server not drained"
agent sync "$work/changed.json" 2>/dev/null
nsx $N ipvsadm-save -n | grep -v '10.99.0.1:80' | sort >"$work/have"
planned_ipvs "$work/changed.json" >"$work/want"
diff -u "$work/want" "$work/have" >&2 || sp_fail "drift not repaired"
nsx $N ipvsadm-save -n | grep -q -- '-a -t 10.99.0.1:80 -r 10.244.1.21:8080' ||
	sp_fail "a foreign virtual server was touched"
kernel_addrs >"$work/have-addrs"
planned_addrs "$work/changed.json" | diff -u - "$work/have-addrs" >&2 || sp_fail "addresses not repaired"
[ "$(fetch $C 198.51.100.1 80)" != "" ] || sp_fail "capture rule not repaired"
sp_ok "restart + drift repair: IPVS, kube-ipvs0 and capture rules back to the plan; foreign VS kept"

# ---- one bad Service does not stop the others ---------------------------
agent sync "$work/badsched.json" 2>"$work/bad.err"
[ $? = 1 ] || sp_fail "a refused virtual server did not make sync report it"
grep -q 'virtual server TCP 10.96.0.23:80 (default/badsched:p (ClusterIP)).*scheduler' "$work/bad.err" ||
	{ cat "$work/bad.err" >&2; sp_fail "the error does not name the virtual server and the cause"; }
nsx $N ipvsadm-save -n | grep -v '10.99.0.1:80' | sort >"$work/have"
planned_ipvs "$work/badsched.json" | grep -v '10.96.0.23:80' >"$work/want"
diff -u "$work/want" "$work/have" >&2 || sp_fail "the other Services were not programmed"
agent sync "$work/changed.json" 2>/dev/null
sp_ok "a Service with an unknown scheduler is reported by name; the others are programmed"

# ---- a sync changes only what differs (issue 5) ---------------------------
# Through the command line, as an operator (and the benchmark) runs it.
cli() {
	nsx $N "$top_builddir/svcproxy" sync --stats --proxy-mode ipvs --hostname-override node-a \
		--cluster-cidr 10.244.0.0/16 --nodeport-addresses 192.168.0.0/24 "$@" 2>"$work/cli.err" |
		grep '^stats:'
}
expect_stats() { # WHAT MESSAGES CHANGED STATS_LINE
	case "$4" in *" messages_sent=$2 objects_changed=$3 "*) ;; *)
		cat "$work/cli.err" >&2
		sp_fail "$1: want messages_sent=$2 objects_changed=$3, got: $4" ;;
	esac
}
cli "$work/changed.json" >/dev/null
expect_stats "second sync of the same cluster" 0 0 "$(cli "$work/changed.json")"
sp_ok "a second sync of the same cluster sends nothing: addresses, capture rules and route read back equal"
expect_stats "one more endpoint" 1 1 "$(cli "$work/moreep.json")"
nsx $N ipvsadm-save -n | grep -q -- '-a -t 10.96.0.21:9090 -r 10.244.1.21:9090' ||
	sp_fail "one more endpoint: the real server is not in IPVS"
expect_stats "a no-op after the endpoint change" 0 0 "$(cli "$work/moreep.json")"
sp_ok "one more endpoint sends one message (its real server), nothing for addresses or rules"
agent sync "$work/changed.json" 2>/dev/null
agent sync "$work/changed.json" 2>/dev/null
nsx $N ipvsadm-save -n | grep -v '10.99.0.1:80' | sort >"$work/have"
planned_ipvs "$work/changed.json" | diff -u - "$work/have" >&2 || sp_fail "back to changed.json"

# ---- strict ARP ----------------------------------------------------------
nsx $N "$drive" $OPTS --strict-arp sync "$work/changed.json" 2>/dev/null
[ "$(nsx $N cat /proc/sys/net/ipv4/conf/all/arp_ignore)" = 1 ] &&
	[ "$(nsx $N cat /proc/sys/net/ipv4/conf/all/arp_announce)" = 2 ] ||
	sp_fail "strict ARP: arp_ignore/arp_announce not set"
sp_ok "strict ARP sets arp_ignore=1 and arp_announce=2"

# ---- whole-address capture (kube-proxy's way) --------------------------
nsx $N "$drive" $OPTS --whole-address sync "$work/changed.json" 2>/dev/null
kernel_addrs | grep -q '^198.51.100.1/32' || sp_fail "whole-address: LB IP not on kube-ipvs0"
nsx $N ipset test KUBE-IPVS-CAPTURE 198.51.100.1,tcp:80 2>/dev/null &&
	sp_fail "whole-address: capture member left"
nsx $N ip rule | grep -q 'fwmark 0x2000/0x2000' && sp_fail "whole-address: fwmark rule left"
nsx $N iptables-legacy-save -t mangle | grep -q KUBE-IPVS-CAPTURE &&
	sp_fail "whole-address: mangle capture rules left"
[ -n "$(fetch $C 198.51.100.1 80)" ] || sp_fail "whole-address: LB IP not served"
[ "$(fetch $P1 198.51.100.1 8443)" = "" ] || sp_fail "whole-address: other port should be captured"
sp_ok "whole-address capture binds the LB IP (and, as documented, swallows its other ports)"

# ---- IPv6 ----------------------------------------------------------------
nsx $N ip addr add fd00:1::10/64 dev eth1 nodad
nsx $R ip addr add fd00:1::2/64 dev eth0 nodad
nsx $R ip addr add fd00:244::21/128 dev lo
nsx $R ip -6 route add default via fd00:1::10
nsx $N ip -6 route add fd00:244::/64 via fd00:1::2
nsx $N sysctl -qw net.ipv6.conf.all.forwarding=1
nsx $R timeout 300 socat TCP6-LISTEN:8080,bind=[fd00:244::21],fork,reuseaddr \
	SYSTEM:'echo r6 $SOCAT_PEERADDR' >/dev/null 2>&1 &
cat >"$work/v6.json" <<'EOF'
{"apiVersion":"v1","kind":"List","items":[
{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-a"},"status":{"addresses":[
 {"type":"InternalIP","address":"192.168.0.10"},{"type":"InternalIP","address":"fd00:1::10"}]}},
{"apiVersion":"v1","kind":"Service","metadata":{"name":"web6","namespace":"default"},
 "spec":{"type":"LoadBalancer","ipFamilies":["IPv6"],"clusterIP":"fd00:96::10","clusterIPs":["fd00:96::10"],
 "ports":[{"name":"p","protocol":"TCP","port":80,"targetPort":8080,"nodePort":30090}]},
 "status":{"loadBalancer":{"ingress":[{"ip":"2001:db8::1"}]}}},
{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"web6-1","namespace":"default",
 "labels":{"kubernetes.io/service-name":"web6"}},"addressType":"IPv6",
 "ports":[{"name":"p","protocol":"TCP","port":8080}],
 "endpoints":[{"addresses":["fd00:244::21"],"conditions":{"ready":true},"nodeName":"node-b"}]}]}
EOF
V6OPTS="$OPTS --nodeport-addresses fd00:1::/64 --cluster-cidr fd00:244::/56"
nsx $N "$drive" $V6OPTS sync "$work/v6.json" 2>/dev/null || sp_fail "IPv6 sync"
nsx $N ipvsadm-save -n | grep -v '10.99.0.1:80' | sort >"$work/have"
nsx $N "$drive" $V6OPTS plan "$work/v6.json" 2>/dev/null | sed -n '/^# ipvsadm-save/,/^# ip:/p' |
	grep '^-' | sort | diff -u - "$work/have" >&2 || sp_fail "IPv6: ipvsadm-save differs from the plan"
kernel_addrs | grep -qx 'fd00:96::10/128' || sp_fail "IPv6: ClusterIP not on kube-ipvs0"
nsx $N "$drive" $V6OPTS plan "$work/v6.json" 2>/dev/null | helper_rules >"$work/want-ipt"
nsx $N "$drive" $V6OPTS state "$work/v6.json" 2>/dev/null | helper_rules >"$work/have-ipt"
diff -u "$work/want-ipt" "$work/have-ipt" >&2 || sp_fail "IPv6: helper rules read back differ"
grep -q '^# ip6tables-save' "$work/have-ipt" || sp_fail "IPv6: no ip6tables helper rules"
for target in "[fd00:96::10]:80" "[2001:db8::1]:80" "[fd00:1::10]:30090"; do
	got=$(nsx $N timeout 10 socat -T5 -u TCP:$target,connect-timeout=6 - 2>/dev/null </dev/null | cut -d' ' -f1)
	[ "$got" = r6 ] || sp_fail "IPv6: $target from the node answered [$got]"
done
sp_ok "IPv6: virtual servers, /128 on kube-ipvs0, capture rules, ip6tables helper rules; traffic from the node"

# Back to IPv4 only: the IPv6 rules go, then the KUBE6- sets they matched.
# (changed.json's status is 1 by design: a node IP as externalIP is refused.)
agent sync "$work/changed.json" 2>"$work/v4.err"
grep -i 'ipset\|ip6tables' "$work/v4.err" >&2 && sp_fail "IPv4-only sync after IPv6 reported errors"
nsx $N ipset list -n | grep -q '^KUBE6-' && sp_fail "IPv6 sets left after the last IPv6 Service"
nsx $N ip6tables-legacy-save | grep -q 'KUBE-' && sp_fail "ip6tables helper rules left"
# A set of ours with another type (e.g. left by another agent) is reported
# by name, not replaced, and the sync says so; gone, it is recreated.
nsx $N ipset create KUBE6-LOOP-BACK hash:ip family inet6
nsx $N "$drive" $V6OPTS sync "$work/v6.json" 2>"$work/wrongtype.err"
[ $? = 1 ] || sp_fail "a wrong-typed set did not make sync report it"
grep -q 'KUBE6-LOOP-BACK is hash:ip' "$work/wrongtype.err" || sp_fail "wrong-typed set not named"
nsx $N ipset list KUBE6-LOOP-BACK | grep -q 'Type: hash:ip$' || sp_fail "wrong-typed set replaced"
nsx $N ip6tables-legacy -F KUBE-POSTROUTING -t nat
nsx $N ipset destroy KUBE6-LOOP-BACK || sp_fail "could not remove the wrong-typed set"
nsx $N "$drive" $V6OPTS sync "$work/v6.json" 2>/dev/null || sp_fail "sync after the wrong set went"
nsx $N ipset list KUBE6-LOOP-BACK | grep -q 'Type: hash:ip,port,ip' || sp_fail "set not recreated"
sp_ok "ipsets: IPv6 sets follow IPv6 Services; a wrong-typed set of ours is reported, not replaced"

# ---- cleanup -------------------------------------------------------------
agent cleanup "$work/changed.json" 2>"$work/cleanup.err" || { cat "$work/cleanup.err" >&2; sp_fail "cleanup failed"; }
[ "$(nsx $N ipvsadm-save -n | grep -c '^-A')" = 1 ] || sp_fail "cleanup left virtual servers"
nsx $N ipvsadm-save -n | grep -q 10.99.0.1:80 || sp_fail "cleanup removed a foreign virtual server"
nsx $N ip link show kube-ipvs0 >/dev/null 2>&1 && sp_fail "cleanup left kube-ipvs0"
nsx $N ip rule | grep -q 'lookup 2153' && sp_fail "cleanup left capture rules"
nsx $N ip -6 rule | grep -q 'lookup 2153' && sp_fail "cleanup left IPv6 capture rules"
nsx $N ip6tables-legacy-save | grep -q 'KUBE-' && sp_fail "cleanup left ip6tables helper rules"
nsx $N iptables-legacy-save | grep -q 'KUBE-' && sp_fail "cleanup left iptables helper rules"
[ -z "$(nsx $N ip route show table 2153 2>/dev/null)" ] || sp_fail "cleanup left table 2153"
[ -z "$(nsx $N ipset list -n | grep '^KUBE')" ] || sp_fail "cleanup left ipsets"
sp_ok "cleanup removes its virtual servers, kube-ipvs0, capture and helper rules, keeps foreign ones"
echo "ipvs-lab: all passed"
