# A virtual two-node cluster in network namespaces, for the integration
# scenarios of every proxy mode. Source it, then call sp_cluster_up.
#
#   c1 172.30.1.10 ---+                       +--- pr 10.244.2.10 (pod)
#   c2 172.30.2.10 ---+                       |
#     (off-cluster)   |                       |  cbr0 10.244.2.1
#                  node1 ===== 192.0.2.0/24 ===== node2  (lo: 10.100.0.98,
#   cbr0 10.244.1.1   |  .11                .12           10.100.0.99 = the
#   pa 10.244.1.10 ---+                                   "real balancer")
#   pb 10.244.1.11 ---+
#   pc 10.244.1.20 ---+ (a client pod, never an endpoint)
#
# node1 is "node-1", the node svcproxy runs on; node2 is "node-2". Nothing is
# created in, or changed in, the namespace the test runs in: every link is
# made inside the namespaces, which are removed on EXIT (also on failure).
#
# Needs: SVCPROXY (the binary), WHOAMI (tests/helpers/sp-whoami), MODE.

SP_ID=sp-$$-$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')
SP_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sp-cluster.XXXXXX")
SP_OBJ=$SP_TMP/objects
SP_NAMESPACES=""
SP_FAILED=0
SP_PIDS=""
mkdir -p "$SP_OBJ"

NODE1_IP=192.0.2.11
NODE2_IP=192.0.2.12
C1_IP=172.30.1.10
C2_IP=172.30.2.10
NODE1_C1_IP=172.30.1.1
PA_IP=10.244.1.10
PB_IP=10.244.1.11
PC_IP=10.244.1.20
PR_IP=10.244.2.10
BALANCER_IPS="10.100.0.98 10.100.0.99"
CLUSTER_CIDR=10.244.0.0/16

sp_cleanup() {
	for pid in $SP_PIDS; do
		kill "$pid" 2>/dev/null || true
	done
	for ns in $SP_NAMESPACES; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$SP_TMP"
}
trap sp_cleanup EXIT
trap 'exit 130' INT TERM

sp_ns() { echo "$SP_ID-$1"; }

# Run a command in one of the cluster's namespaces, bounded in time.
sp_in() {
	local ns=$1
	shift
	timeout 120 ip netns exec "$(sp_ns "$ns")" "$@"
}

sp_add_ns() {
	local ns
	ns=$(sp_ns "$1")
	ip netns add "$ns"
	SP_NAMESPACES="$SP_NAMESPACES $ns"
	ip -n "$ns" link set lo up
}

# sp_link NS1 IF1 NS2 IF2: a veth pair made inside NS1, its peer moved to NS2.
sp_link() {
	ip -n "$(sp_ns "$1")" link add "$2" type veth peer name "$4" netns "$(sp_ns "$3")"
	ip -n "$(sp_ns "$1")" link set "$2" up
	ip -n "$(sp_ns "$3")" link set "$4" up
}

sp_node_ns() { # NODE BRIDGE_ADDR
	sp_add_ns "$1"
	ip -n "$(sp_ns "$1")" link add cbr0 type bridge
	ip -n "$(sp_ns "$1")" addr add "$2" dev cbr0
	ip -n "$(sp_ns "$1")" link set cbr0 up
	sp_in "$1" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
		net.ipv4.conf.default.rp_filter=0
}

sp_pod() { # POD NODE ADDR GATEWAY
	sp_add_ns "$1"
	sp_link "$1" eth0 "$2" "v-$1"
	ip -n "$(sp_ns "$2")" link set "v-$1" master cbr0
	# As the CNI bridge plugin's hairpinMode: a pod's frames may come back
	# out of its own port (a pod reaching itself through a Service).
	ip -n "$(sp_ns "$2")" link set "v-$1" type bridge_slave hairpin on
	ip -n "$(sp_ns "$1")" addr add "$3/24" dev eth0
	ip -n "$(sp_ns "$1")" route add default via "$4"
}

sp_client() { # CLIENT ADDR NODE_SIDE_ADDR
	sp_add_ns "$1"
	sp_link "$1" eth0 node1 "v-$1"
	ip -n "$(sp_ns "$1")" addr add "$2/24" dev eth0
	ip -n "$(sp_ns node1)" addr add "$3/24" dev "v-$1"
	ip -n "$(sp_ns "$1")" route add default via "$3"
}

sp_cluster_up() {
	sp_node_ns node1 10.244.1.1/24
	sp_node_ns node2 10.244.2.1/24
	sp_link node1 eth0 node2 eth0
	ip -n "$(sp_ns node1)" addr add "$NODE1_IP/24" dev eth0
	ip -n "$(sp_ns node2)" addr add "$NODE2_IP/24" dev eth0
	ip -n "$(sp_ns node1)" route add 10.244.2.0/24 via "$NODE2_IP"
	# The node network's way out: what is not a pod or a client of ours
	# leaves through node2, where the "real balancer" addresses live.
	ip -n "$(sp_ns node1)" route add default via "$NODE2_IP"
	ip -n "$(sp_ns node2)" route add 10.244.1.0/24 via "$NODE1_IP"
	ip -n "$(sp_ns node2)" route add 172.30.0.0/16 via "$NODE1_IP"
	for a in $BALANCER_IPS; do
		ip -n "$(sp_ns node2)" addr add "$a/32" dev lo
	done
	sp_pod pa node1 "$PA_IP" 10.244.1.1
	sp_pod pb node1 "$PB_IP" 10.244.1.1
	sp_pod pc node1 "$PC_IP" 10.244.1.1
	sp_pod pr node2 "$PR_IP" 10.244.2.1
	sp_client c1 "$C1_IP" "$NODE1_C1_IP"
	sp_client c2 "$C2_IP" 172.30.2.1
	sp_write_nodes
}

# Start a whoami server in NS answering as NAME on the PORTs; waits until it
# listens. It stops by itself after a while and is killed on EXIT anyway.
sp_serve() { # NS NAME PORT...
	local ns=$1 name=$2 out
	shift 2
	out=$SP_TMP/serve-$ns-$name
	ip netns exec "$(sp_ns "$ns")" "$WHOAMI" serve "$name" "$@" --for 600 >"$out" 2>&1 &
	SP_PIDS="$SP_PIDS $!"
	for _ in $(seq 50); do
		grep -q ready "$out" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "whoami $name in $ns did not start: $(cat "$out")" >&2
	return 1
}

# One line per attempt: "NAME PEER" or "ERR ...".
sp_connect() { # NS tcp|udp ADDR PORT [whoami options]
	local ns=$1
	shift
	sp_in "$ns" "$WHOAMI" connect "$@" || true
}

# ---- Kubernetes objects ----

sp_write_nodes() {
	cat >"$SP_OBJ/nodes.json" <<EOF
{"apiVersion":"v1","kind":"List","items":[
 {"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1"},
  "spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24"]},
  "status":{"addresses":[{"type":"InternalIP","address":"$NODE1_IP"}]}},
 {"apiVersion":"v1","kind":"Node","metadata":{"name":"node-2"},
  "spec":{"podCIDR":"10.244.2.0/24","podCIDRs":["10.244.2.0/24"]},
  "status":{"addresses":[{"type":"InternalIP","address":"$NODE2_IP"}]}}]}
EOF
}

# sp_service NAME SPEC_JSON [STATUS_JSON [METADATA_EXTRA_JSON]]
sp_service() {
	local status="" meta=""
	[ -n "${3:-}" ] && status=',"status":'"$3"
	[ -n "${4:-}" ] && meta=",$4"
	cat >"$SP_OBJ/svc-$1.json" <<EOF
{"apiVersion":"v1","kind":"Service",
 "metadata":{"name":"$1","namespace":"default"$meta},
 "spec":$2$status}
EOF
}

# An endpoint: ADDR NODE [ready=true]
sp_ep() {
	printf '{"addresses":["%s"],"nodeName":"%s","conditions":{"ready":%s}}' \
		"$1" "$2" "${3:-true}"
}

# sp_slice SERVICE PORTS_JSON ENDPOINT_JSON...
sp_slice() {
	local svc=$1 ports=$2 eps="" e
	shift 2
	for e in "$@"; do
		eps="${eps:+$eps,}$e"
	done
	cat >"$SP_OBJ/slice-$svc.json" <<EOF
{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
 "metadata":{"name":"$svc-x1","namespace":"default",
  "labels":{"kubernetes.io/service-name":"$svc"}},
 "addressType":"IPv4","ports":$ports,"endpoints":[$eps]}
EOF
}

sp_rm_objects() { # NAME...
	for n in "$@"; do
		rm -f "$SP_OBJ/svc-$n.json" "$SP_OBJ/slice-$n.json"
	done
}

# ---- running svcproxy on node1 ----

SP_SYNC_ARGS="--hostname-override node-1 --cluster-cidr $CLUSTER_CIDR"

sp_svcproxy() { # SUBCOMMAND [extra args]
	local sub=$1
	shift
	sp_in node1 "$SVCPROXY" "$sub" --proxy-mode "$MODE" $SP_SYNC_ARGS "$@" "$SP_OBJ"
}

sp_sync() {
	sp_svcproxy sync "$@" 2>"$SP_TMP/sync.err"
	local rc=$?
	if [ $rc != 0 ]; then
		echo "svcproxy sync failed ($rc):" >&2
		cat "$SP_TMP/sync.err" >&2
	fi
	return $rc
}

# ---- assertions ----

sp_ok() { echo "ok - $1"; }
sp_fail() {
	echo "not ok - $1"
	SP_FAILED=$((SP_FAILED + 1))
}

# The distinct answering names in OUTPUT (lines "NAME PEER"), sorted.
sp_names() { printf '%s\n' "$1" | grep -v '^ERR' | awk '{print $1}' | sort -u | tr '\n' ' ' | sed 's/ $//'; }
sp_peers() { printf '%s\n' "$1" | grep -v '^ERR' | awk '{print $2}' | sort -u | tr '\n' ' ' | sed 's/ $//'; }
sp_errors() { printf '%s\n' "$1" | grep -c '^ERR' || true; }

# sp_expect DESC OUTPUT NAMES [PEERS]: every attempt answered, by exactly
# NAMES (space separated, sorted), and seen from exactly PEERS if given.
sp_expect() {
	local desc=$1 out=$2 names=$3 peers=${4:-} got
	if [ "$(sp_errors "$out")" != 0 ]; then
		sp_fail "$desc: some attempts failed: $(printf '%s' "$out" | grep '^ERR' | sort | uniq -c | tr '\n' ';')"
		return
	fi
	got=$(sp_names "$out")
	if [ "$got" != "$names" ]; then
		sp_fail "$desc: answered by [$got], wanted [$names]"
		return
	fi
	if [ -n "$peers" ] && [ "$(sp_peers "$out")" != "$peers" ]; then
		sp_fail "$desc: servers saw [$(sp_peers "$out")], wanted [$peers]"
		return
	fi
	sp_ok "$desc"
}

sp_report() {
	if [ "$SP_FAILED" -gt 0 ]; then
		echo "$SP_FAILED scenario check(s) failed"
		return 1
	fi
	echo "all scenario checks passed"
}
