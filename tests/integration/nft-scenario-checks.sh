# nftables-specific checks, sourced by scenarios.sh (SP_EXTRA_CHECKS) on its
# running virtual cluster after the shared scenarios: IPv6 traffic through
# the ip6 table (the cluster gets IPv6 addresses next to its IPv4 ones), and
# the kernel table equal to what nft makes of the printed plan.

v6_up() {
	local n
	for n in node1 node2; do
		sp_in $n sysctl -qw net.ipv6.conf.all.forwarding=1
	done
	ip -n "$(sp_ns node1)" addr add fd00:192::11/64 dev eth0 nodad
	ip -n "$(sp_ns node2)" addr add fd00:192::12/64 dev eth0 nodad
	ip -n "$(sp_ns node1)" addr add fd00:244:1::1/64 dev cbr0 nodad
	ip -n "$(sp_ns node2)" addr add fd00:244:2::1/64 dev cbr0 nodad
	ip -n "$(sp_ns node1)" route add fd00:244:2::/64 via fd00:192::12
	ip -n "$(sp_ns node2)" route add fd00:244:1::/64 via fd00:192::11
	# The Service range must be routable for the node's own connections.
	ip -n "$(sp_ns node1)" route add fd00:96::/64 via fd00:192::12
	for n in pa:1::10 pb:1::11 pc:1::20; do
		ip -n "$(sp_ns ${n%%:*})" addr add "fd00:244:${n#*:}/64" dev eth0 nodad
		ip -n "$(sp_ns ${n%%:*})" route add default via fd00:244:1::1
	done
	ip -n "$(sp_ns pr)" addr add fd00:244:2::10/64 dev eth0 nodad
	ip -n "$(sp_ns pr)" route add default via fd00:244:2::1
}

v6_services() {
	cat >"$SP_OBJ/svc-web6.json" <<EOF
{"apiVersion":"v1","kind":"Service","metadata":{"name":"web6","namespace":"default"},
 "spec":{"type":"ClusterIP","clusterIP":"fd00:96::10","clusterIPs":["fd00:96::10"],
  "ipFamilies":["IPv6"],"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":8080},
  {"name":"dns","protocol":"UDP","port":53,"targetPort":8080}]}}
EOF
	cat >"$SP_OBJ/slice-web6.json" <<EOF
{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
 "metadata":{"name":"web6-x1","namespace":"default","labels":{"kubernetes.io/service-name":"web6"}},
 "addressType":"IPv6","ports":[{"name":"http","protocol":"TCP","port":8080},{"name":"dns","protocol":"UDP","port":8080}],
 "endpoints":[$(sp_ep fd00:244:1::10 node-1),$(sp_ep fd00:244:1::11 node-1),$(sp_ep fd00:244:2::10 node-2)]}
EOF
}

nft_plan_equals_kernel() { # DESC FAMILY
	local want have scratch=$SP_ID-nftplan
	if ! ip netns list | grep -q "^$scratch\b"; then
		ip netns add "$scratch" && SP_NAMESPACES="$SP_NAMESPACES $scratch"
	fi
	timeout 60 ip netns exec "$scratch" nft flush ruleset
	if ! sp_svcproxy plan 2>/dev/null | timeout 60 ip netns exec "$scratch" nft -f -; then
		sp_fail "$1: nft refused the plan"
		return
	fi
	want=$(timeout 60 ip netns exec "$scratch" nft list table "$2" svcproxy | nft_static | nft_sorted)
	have=$(sp_in node1 nft list table "$2" svcproxy | nft_static | nft_sorted)
	if [ -n "$want" ] && [ "$want" = "$have" ]; then
		sp_ok "$1"
	else
		sp_fail "$1: $(diff <(echo "$want") <(echo "$have") | head -10)"
	fi
}

# Without the elements of dynamic (affinity) maps: those are the clients seen.
nft_static() {
	awk '
	/^\t(map|set) / { inmap = 1; dyn = 0 }
	inmap && /flags .*dynamic/ { dyn = 1 }
	inmap && dyn && /elements = / { skip = 1 }
	skip { if ($0 ~ /}$/) skip = 0; next }
	/^\t}$/ { inmap = 0 }
	{ print }'
}

# Chains and maps in name order (nft lists them in creation order).
nft_sorted() {
	awk '
	/^\t(chain|map|set) / { inblock = 1; buf = $2 "\001" $0; next }
	inblock { buf = buf "\001" $0; if ($0 == "\t}") { print buf; inblock = 0 }; next }
	{ print "\002" $0 }' | LC_ALL=C sort -s -t "$(printf '\001')" -k1,1
}

nft_plan_equals_kernel "after the scenarios the ip table is exactly the plan" ip

v6_up
v6_services
SP_SYNC_ARGS="$SP_SYNC_ARGS,fd00:244::/40"
if sp_sync; then
	sp_expect "IPv6 ClusterIP from a pod spreads over every endpoint (tcp)" \
		"$(sp_connect pc tcp fd00:96::10 80 --count 30)" "pa pb pr"
	sp_expect "IPv6 ClusterIP from a pod spreads over every endpoint (udp)" \
		"$(sp_connect pc udp fd00:96::10 53 --count 30)" "pa pb pr"
	sp_expect "IPv6 ClusterIP from the node" \
		"$(sp_connect node1 tcp fd00:96::10 80 --count 20)" "pa pb pr"
	nft_plan_equals_kernel "dual-stack: the ip6 table is exactly the plan" ip6
else
	sp_fail "sync with an IPv6 Service"
fi
