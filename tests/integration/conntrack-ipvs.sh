#!/bin/sh
# Conntrack flushing in ipvs mode, with live flows, in the kernel lab (the
# host kernel has no IPVS; the script re-runs itself in tests/lab/uml-run.sh):
#
#   client 192.168.1.100 --- node 192.168.1.10 --- p1 10.244.1.2 (local endpoint)
#                                              +-- p2 10.244.2.3 ("remote" endpoint)
#                                              +-- q  10.244.3.4 (unrelated Service)
#
# The same claims as conntrack.sh makes for nftables and iptables: on an
# externalTrafficPolicy Cluster -> Local switch a live UDP flow moves to the
# local endpoint with the client's own source address; a UDP flow whose
# endpoint is removed moves to the remaining one; the unrelated Service's and
# plain host flows keep their entries and a held TCP connection stays.
#
# What IPVS adds (docs/ipvs.md, "Conntrack"): IPVS steers a flow by its own
# connection table. A real server that leaves a virtual server ends its IPVS
# connections at their next packet (expire_nodest_conn=1), which drops that
# packet and reschedules the next; a real server that stays (the local
# endpoint on Cluster -> Local) keeps its IPVS connection, and only the
# nf_conntrack flush ends the masquerading of the flow. Each step shows the
# flow before the flush (rules only, a sync with a fresh state dir) and after.
set -eu

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
export top_srcdir top_builddir
if [ -z "${SP_LAB_GUEST:-}" ]; then
	exec "$top_srcdir/tests/lab/uml-run.sh" -t 400 "$0"
fi

SVCPROXY="$top_builddir/svcproxy"
[ -x "$SVCPROXY" ] || { echo "missing $SVCPROXY"; exit 1; }

MODE=ipvs
ID="sp-cti-$$"
C="$ID-client" N="$ID-node" P1="$ID-p1" P2="$ID-p2" Q="$ID-q"
TMP=$(mktemp -d /tmp/sp-cti-test.XXXXXX)
# The lab is slow (every syscall traps): servers and clients live as long as
# the guest may.
LIFE=400

cleanup() {
	for ns in $C $N $P1 $P2 $Q; do
		pids=$(ip netns pids "$ns" 2>/dev/null || true)
		[ -n "$pids" ] && kill $pids 2>/dev/null || true
	done
	for ns in $C $N $P1 $P2 $Q; do
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

fail() {
	echo "FAIL: $*"
	for f in "$TMP"/*.log; do
		[ -f "$f" ] && { echo "--- $f (last lines)"; tail -n 5 "$f"; }
	done
	ip netns exec "$N" conntrack -L 2>/dev/null || true
	ip netns exec "$N" ipvsadm -Lnc 2>/dev/null || true
	exit 1
}

in_ns() { ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---- topology ----
for ns in $C $N $P1 $P2 $Q; do
	ip netns add "$ns"
	in_ns "$ns" ip link set lo up
done
link() { # node-side-name peer-ns node-addr peer-addr
	ip link add "$1" netns "$N" type veth peer name eth0 netns "$2"
	in_ns "$N" ip addr add "$3/24" dev "$1"
	in_ns "$N" ip link set "$1" up
	in_ns "$2" ip addr add "$4/24" dev eth0
	in_ns "$2" ip link set eth0 up
	in_ns "$2" ip route add default via "$3"
}
link vc "$C" 192.168.1.10 192.168.1.100
link vp1 "$P1" 10.244.1.1 10.244.1.2
link vp2 "$P2" 10.244.2.1 10.244.2.3
link vq "$Q" 10.244.3.1 10.244.3.4

# ---- servers: each answers with who it is and the source it saw ----
udp_server() { # ns name port
	in_ns "$1" timeout $LIFE socat UDP-RECVFROM:"$3",reuseaddr,fork \
		SYSTEM:"echo $2 \$SOCAT_PEERADDR:\$SOCAT_PEERPORT" >/dev/null 2>&1 &
}
tcp_server() { # ns name port
	in_ns "$1" timeout $LIFE socat TCP-LISTEN:"$3",reuseaddr,fork \
		SYSTEM:"while read -r l; do echo $2 \$SOCAT_PEERADDR; done" >/dev/null 2>&1 &
}
udp_server "$P1" p1 7777
udp_server "$P2" p2 7777
udp_server "$P1" p1 5353
udp_server "$P2" p2 5353
tcp_server "$P1" p1 8080
tcp_server "$P2" p2 8080
udp_server "$Q" q 5300
udp_server "$N" node 9999
listening() { # ns port
	i=0
	until in_ns "$1" ss -Hln "sport = :$2" 2>/dev/null | grep -q .; do
		i=$((i + 1))
		[ $i -le 200 ] || fail "no server on port $2 in $1"
		sleep 0.05
	done
}
for s in "$P1 7777" "$P2 7777" "$P1 5353" "$P2 5353" "$P1 8080" "$P2 8080" "$Q 5300" "$N 9999"; do
	listening $s
done

# ---- the cluster as Kubernetes objects, one version per step ----
# game:  LoadBalancer UDP 7777, LB IP 203.0.113.7, endpoints p1 (this node)
#        and p2 (node-2)
# dns:   ClusterIP 10.96.0.10 UDP 53 -> one endpoint, port 5353
# web:   ClusterIP 10.96.0.20 TCP 80 -> one endpoint, port 8080
# other: ClusterIP 10.96.0.50 UDP 5300 -> q, never changes
OBJ="$TMP/objects"
mkdir -p "$OBJ"
ep() { printf '{"addresses":["%s"],"nodeName":"%s","conditions":{"ready":true}}' "$1" "$2"; }
service() { # name spec [status]
	printf '{"apiVersion":"v1","kind":"Service","metadata":{"name":"%s","namespace":"default"},"spec":%s%s}\n' \
		"$1" "$2" "${3:-}" >"$OBJ/svc-$1.json"
}
slice() { # service ports endpoints
	printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"%s-1","namespace":"default","labels":{"kubernetes.io/service-name":"%s"}},"addressType":"IPv4","ports":%s,"endpoints":[%s]}\n' \
		"$1" "$1" "$2" "$3" >"$OBJ/slice-$1.json"
}
objects() { # game_policy dns_ep web_ep
	cat >"$OBJ/nodes.json" <<-NODES
	{"apiVersion":"v1","kind":"List","items":[
	 {"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1"},
	  "status":{"addresses":[{"type":"InternalIP","address":"192.168.1.10"}]}},
	 {"apiVersion":"v1","kind":"Node","metadata":{"name":"node-2"},
	  "status":{"addresses":[{"type":"InternalIP","address":"192.168.1.20"}]}}]}
	NODES
	if [ "$1" = local ]; then
		etp='"externalTrafficPolicy":"Local","healthCheckNodePort":32000'
	else
		etp='"externalTrafficPolicy":"Cluster"'
	fi
	service game '{"type":"LoadBalancer","clusterIP":"10.96.0.30","clusterIPs":["10.96.0.30"],'"$etp"',"ports":[{"name":"udp","protocol":"UDP","port":7777,"targetPort":7777,"nodePort":30777}]}' \
		',"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.7"}]}}'
	slice game '[{"name":"udp","protocol":"UDP","port":7777}]' \
		"$(ep 10.244.1.2 node-1),$(ep 10.244.2.3 node-2)"
	service dns '{"type":"ClusterIP","clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"],"ports":[{"name":"dns","protocol":"UDP","port":53,"targetPort":5353}]}'
	slice dns '[{"name":"dns","protocol":"UDP","port":5353}]' "$(ep "$2" x)"
	service web '{"type":"ClusterIP","clusterIP":"10.96.0.20","clusterIPs":["10.96.0.20"],"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":8080}]}'
	slice web '[{"name":"http","protocol":"TCP","port":8080}]' "$(ep "$3" x)"
	service other '{"type":"ClusterIP","clusterIP":"10.96.0.50","clusterIPs":["10.96.0.50"],"ports":[{"name":"p","protocol":"UDP","port":5300,"targetPort":5300}]}'
	slice other '[{"name":"p","protocol":"UDP","port":5300}]' "$(ep 10.244.3.4 x)"
}

STATE_DIR="$TMP/state"
n_sync=0
sync_rules() { # [state dir]
	n_sync=$((n_sync + 1))
	in_ns "$N" timeout 120 "$SVCPROXY" sync --proxy-mode "$MODE" --hostname-override node-1 \
		--cluster-cidr 10.244.0.0/16 --state-dir "${1:-$STATE_DIR}" --stats -v "$OBJ" \
		>"$TMP/sync.out" 2>&1 || { cat "$TMP/sync.out"; fail "svcproxy sync failed"; }
	cat "$TMP/sync.out"
}
# The new rules without the flush (a fresh state dir: no previous plan).
rules_only() {
	sync_rules "$TMP/scratch-$n_sync"
	grep -q "conntrack_filters=0 " "$TMP/sync.out" || fail "a first sync flushed something"
}

# ---- flows: a client that keeps sending from one source port ----
udp_flow() { # ns name dst port sport
	in_ns "$1" timeout $LIFE sh -c "while :; do echo ping; sleep 0.2; done |
		socat -t 1 - UDP:$3:$4,sourceport=$5" >"$TMP/$2.log" 2>&1 &
}
lines() { wc -l <"$TMP/$1.log"; }
wait_replies() { # flow n mark
	i=0
	while [ "$(lines "$1")" -lt $(($3 + $2)) ]; do
		i=$((i + 1))
		[ $i -le 300 ] || fail "no replies on flow $1"
		sleep 0.1
	done
}
after() { tail -n +$(($2 + 1)) "$TMP/$1.log"; }
# Flow $1 after mark $2 switched for good to replies matching $3: a reply
# or two already on its way may show the old path, but once one matches
# every later one must, and at least 3 must. A client socket that got an
# error (ICMP unreachable) ends its flow and fails this.
switched() {
	i=0
	while :; do
		verdict=$(after "$1" "$2" | awk -v re="$3" '
			$0 ~ re { n++; next }
			n { bad = 1 }
			END { print bad ? "bad" : (n >= 3 ? "ok" : "wait") }')
		[ "$verdict" = ok ] && return 0
		[ "$verdict" = bad ] && return 1
		i=$((i + 1))
		[ $i -le 300 ] || return 1
		sleep 0.1
	done
}
alive() { # flow: no socket error so far
	grep -q "socat.*E " "$TMP/$1.log" && fail "flow $1 got a socket error: $(grep 'socat.*E ' "$TMP/$1.log")"
	return 0
}
ct_count() { in_ns "$N" conntrack -L "$@" 2>/dev/null | grep -c . || true; }
# Conntrack ids of a UDP flow's entries by its client port: a flushed and
# recreated entry gets a new id, so equal ids mean untouched.
ct_ids() {
	in_ns "$N" conntrack -L -o id -p udp 2>/dev/null | grep "port=$1 " |
		sed 's/.*id=\([0-9]*\).*/\1/' | sort | tr '\n' ' '
}
count_unrelated() { echo "$(ct_ids 40005)/ $(ct_ids 40004)"; }
# IPVS connections of a virtual server, "client:port->real:port" lines
# (ipvsadm -Lnc: pro expire state source virtual destination).
ipvs_conns() { # vip:vport
	in_ns "$N" ipvsadm -Lnc 2>/dev/null | awk -v v="$1" '$5 == v { print $4 "->" $6 }' | sort
}

# ---- step 1: Cluster policy, dns and web on p2 ----
objects cluster 10.244.2.3 10.244.2.3
sync_rules
for s in conntrack expire_nodest_conn; do
	[ "$(in_ns "$N" sysctl -n net.ipv4.vs.$s)" = 1 ] || fail "net.ipv4.vs.$s not 1"
done
udp_flow "$C" game1 203.0.113.7 7777 40001
udp_flow "$C" game2 203.0.113.7 7777 40002
udp_flow "$C" game3 192.168.1.10 30777 40006
udp_flow "$C" dns 10.96.0.10 53 40003
udp_flow "$C" host 192.168.1.10 9999 40004
udp_flow "$P1" other 10.96.0.50 5300 40005
in_ns "$C" timeout $LIFE sh -c 'while :; do echo ping; sleep 0.2; done |
	socat - TCP:10.96.0.20:80' >"$TMP/web.log" 2>&1 &
for f in game1 game2 game3 dns host other web; do wait_replies $f 3 0; done
grep -q "^p2 " "$TMP/dns.log" || fail "dns not on p2 at first"
unrelated=$(count_unrelated)
echo "$unrelated" | grep -Eq '^[0-9]+ / [0-9]+ $' ||
	fail "unrelated/host entries: '$unrelated', want one each"
for f in game1 game2 game3; do
	grep -q " 192.168.1.100$" "$TMP/$f.log" && fail "$f: Cluster policy must SNAT"
done
# rr over p1 and p2: one LB flow on each. The p1 one is the case IPVS does
# not move by itself.
on_p1=
for f in game1 game2; do
	tail -n1 "$TMP/$f.log" | grep -q "^p1 " && on_p1=$f
done
[ -n "$on_p1" ] || fail "no LB flow on p1 (rr should give one of two to each endpoint)"
echo "step 1: flows up; game1 $(tail -n1 "$TMP/game1.log"), game2 $(tail -n1 "$TMP/game2.log"), game3 $(tail -n1 "$TMP/game3.log")"
echo "ipvs connections of the LB IP: $(ipvs_conns 203.0.113.7:7777 | tr '\n' ' ')"
ipvs_conns 203.0.113.7:7777 | grep -q . || fail "no IPVS connection listed for the LB IP"

# ---- step 2: externalTrafficPolicy Cluster -> Local on the live flows ----
objects local 10.244.2.3 10.244.2.3
rules_only
m=$(lines "$on_p1")
wait_replies "$on_p1" 3 "$m"
after "$on_p1" "$m" | grep -q "^p1 192[.]168[.]1[.]100$" &&
	fail "$on_p1 lost its SNAT without a flush: the test proves nothing"
# Its IPVS connection survives the switch (p1 stays a real server of the
# LB IP's virtual server): only the conntrack flush can end the SNAT.
sport_p1=$([ "$on_p1" = game1 ] && echo 40001 || echo 40002)
ipvs_conns 203.0.113.7:7777 | grep -qx "192.168.1.100:$sport_p1->10.244.1.2:7777" ||
	fail "IPVS connection of $on_p1 to p1 did not survive the rules change"
echo "without a flush: $on_p1 still $(tail -n1 "$TMP/$on_p1.log"), others: game1 $(tail -n1 "$TMP/game1.log"), game2 $(tail -n1 "$TMP/game2.log"), game3 $(tail -n1 "$TMP/game3.log"); ipvs: $(ipvs_conns 203.0.113.7:7777 | tr '\n' ' ')"
tcp_before=$(ct_count -p tcp --orig-dst 10.96.0.20 --dport 80)
m_game1=$(lines game1) m_game2=$(lines game2) m_game3=$(lines game3)
sync_rules
grep -q "traffic-policy" "$TMP/sync.out" || fail "no traffic-policy flush"
for f in game1 game2 game3; do
	switched $f "$(eval echo \$m_$f)" "^p1 192[.]168[.]1[.]100$" ||
		fail "$f: after Cluster->Local not on p1 with the client's address"
	alive $f
done
in_ns "$N" conntrack -L -p udp --orig-dst 203.0.113.7 2>/dev/null | grep "src=192.168.1.100 " |
	grep -v "src=10.244.1.2 dst=192.168.1.100" | grep -q . &&
	fail "a game LB entry is still SNATed or remote"
in_ns "$N" conntrack -L -p udp --orig-dst 192.168.1.10 --dport 30777 2>/dev/null |
	grep -v "src=10.244.1.2 dst=192.168.1.100" | grep -q . &&
	fail "a game node port entry is still SNATed or remote"
ipvs_conns 203.0.113.7:7777 | grep -v -- "->10.244.1.2:7777$" | grep -q . &&
	fail "an IPVS connection of the LB IP still goes to p2"
[ "$(count_unrelated)" = "$unrelated" ] || fail "unrelated/host entries changed: $(count_unrelated)"
[ "$(ct_count -p tcp --orig-dst 10.96.0.20 --dport 80)" = "$tcp_before" ] ||
	fail "unrelated TCP entry flushed"
echo "step 2: Cluster->Local moved the live UDP flows (LB IP, node port) to p1 with the client's source"

# ---- step 3: dns and web endpoint p2 removed, p1 instead ----
objects local 10.244.1.2 10.244.1.2
m_dns=$(lines dns) m_web=$(lines web)
rules_only
wait_replies dns 3 "$m_dns"
# IPVS moves this one by itself (expire_nodest_conn, and IPVS drops the
# conntrack entry of the connection it expires); the flush finds nothing
# left. Shown, not asserted: the claim is the outcome after the sync.
echo "without a flush: dns $(tail -n1 "$TMP/dns.log"); entries: $(ct_count -p udp --orig-dst 10.96.0.10 --reply-src 10.244.2.3) from p2"
m_dns=$(lines dns)
sync_rules
grep -q "endpoint-gone" "$TMP/sync.out" || fail "no endpoint-gone flush"
switched dns "$m_dns" "^p1 " || fail "dns: replies not from p1 after its old endpoint went"
alive dns
[ "$(ct_count -p udp --orig-dst 10.96.0.10 --reply-src 10.244.2.3)" = 0 ] ||
	fail "an entry of dns still answers from the removed endpoint"
# TCP is left alone: the held connection still talks to p2 (IPVS drains
# p2 at weight 0 while the connection is open).
[ "$(ct_count -p tcp --orig-dst 10.96.0.20 --dport 80)" = "$tcp_before" ] ||
	fail "TCP entry flushed on endpoint removal"
wait_replies web 3 "$m_web"
after web "$m_web" | grep -vq "^p2 " && fail "held TCP connection moved"
[ "$(count_unrelated)" = "$unrelated" ] || fail "unrelated/host entries changed: $(count_unrelated)"
for f in game1 game2 game3 host other; do alive $f; done
echo "step 3: UDP flow moved off the removed endpoint; TCP, unrelated and host entries kept"
echo PASS
