#!/bin/sh
# Conntrack flushing on a real kernel, in namespaces this test creates:
#
#   client 192.168.1.100 --- node 192.168.1.10 --- p1 10.244.1.2 (local endpoint)
#                                              +-- p2 10.244.2.3 ("remote" endpoint)
#                                              +-- q  10.244.3.4 (unrelated Service)
#
# Long-lived flows go through the rules that `svcproxy sync --proxy-mode
# MODE` programs in the node namespace (MODE: the first argument, default
# nftables; conntrack-iptables.sh runs iptables). Each step changes the Kubernetes objects,
# first programs the new rules without a flush (a sync with a fresh state
# dir) to show the flows stay stale, then runs the real one-shot sync with
# its state dir, and checks that the stale entries are gone and the next
# packet goes where the new rules say, while the unrelated Service's entry,
# plain host traffic and (where the rule says so) TCP stay.
set -eu

: "${top_builddir:=$(cd "$(dirname "$0")/../.." && pwd)}"
SVCPROXY="$top_builddir/svcproxy"
FLUSH="$top_builddir/tests/helpers/sp-ctflush"
[ -x "$SVCPROXY" ] || { echo "missing $SVCPROXY"; exit 1; }
[ -x "$FLUSH" ] || { echo "missing $FLUSH (make check builds it)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }

MODE=${1:-nftables}
ID="sp-ct-$$"
C="$ID-client" N="$ID-node" P1="$ID-p1" P2="$ID-p2" Q="$ID-q"
TMP=$(mktemp -d /tmp/sp-ct-test.XXXXXX)

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
in_ns "$N" sysctl -qw net.ipv4.ip_forward=1

# ---- servers: each answers with who it is and the source it saw ----
udp_server() { # ns name port
	in_ns "$1" timeout 120 socat UDP-RECVFROM:"$3",reuseaddr,fork \
		SYSTEM:"echo $2 \$SOCAT_PEERADDR:\$SOCAT_PEERPORT" >/dev/null 2>&1 &
}
tcp_server() { # ns name port
	in_ns "$1" timeout 120 socat TCP-LISTEN:"$3",reuseaddr,fork \
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
		[ $i -le 100 ] || fail "no server on port $2 in $1"
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
service() { # name spec
	printf '{"apiVersion":"v1","kind":"Service","metadata":{"name":"%s","namespace":"default"},"spec":%s%s}\n' \
		"$1" "$2" "${3:-}" >"$OBJ/svc-$1.json"
}
slice() { # service ports endpoints
	printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"%s-1","namespace":"default","labels":{"kubernetes.io/service-name":"%s"}},"addressType":"IPv4","ports":%s,"endpoints":[%s]}\n' \
		"$1" "$1" "$2" "$3" >"$OBJ/slice-$1.json"
}
objects() { # game_policy dns_ep web_ep
	cat >"$OBJ/nodes.json" <<-EOF
	{"apiVersion":"v1","kind":"List","items":[
	 {"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1"},
	  "status":{"addresses":[{"type":"InternalIP","address":"192.168.1.10"}]}},
	 {"apiVersion":"v1","kind":"Node","metadata":{"name":"node-2"},
	  "status":{"addresses":[{"type":"InternalIP","address":"192.168.1.20"}]}}]}
	EOF
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
STATE="$STATE_DIR/$MODE.state"
n_sync=0
# svcproxy sync on the node with the state of STATE_DIR (or another dir).
sync_rules() { # [state dir]
	n_sync=$((n_sync + 1))
	in_ns "$N" timeout 60 "$SVCPROXY" sync --proxy-mode "$MODE" --hostname-override node-1 \
		--cluster-cidr 10.244.0.0/16 --state-dir "${1:-$STATE_DIR}" --stats -v "$OBJ" \
		>"$TMP/sync.out" 2>&1 || { cat "$TMP/sync.out"; fail "svcproxy sync failed"; }
	cat "$TMP/sync.out"
}
# The new rules without the flush: a sync whose state dir is fresh (no
# previous plan, so nothing is flushed). Shows what the flush is for.
rules_only() {
	SCRATCH="$TMP/scratch-$n_sync"
	sync_rules "$SCRATCH"
	grep -q "conntrack_filters=0 " "$TMP/sync.out" || fail "a first sync flushed something"
}

# ---- flows: a client that keeps sending from one source port ----
udp_flow() { # ns name dst port sport
	in_ns "$1" timeout 120 sh -c "while :; do echo ping; sleep 0.2; done |
		socat -t 1 - UDP:$3:$4,sourceport=$5" >"$TMP/$2.log" 2>&1 &
}
lines() { wc -l <"$TMP/$1.log"; }
# Wait (bounded) until flow $1 has $2 more replies than mark $3.
wait_replies() {
	i=0
	while [ "$(lines "$1")" -lt $(($3 + $2)) ]; do
		i=$((i + 1))
		[ $i -le 100 ] || fail "no replies on flow $1"
		sleep 0.1
	done
}
# Replies after mark $2.
after() { tail -n +$(($2 + 1)) "$TMP/$1.log"; }
# Flow $1 after mark $2 switched for good to replies matching $3: a reply
# or two already on its way may still show the old path, but once a reply
# matches, every later one must, and at least 3 must. No timing involved.
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
		[ $i -le 100 ] || return 1
		sleep 0.1
	done
}
ct_count() { in_ns "$N" conntrack -L "$@" 2>/dev/null | grep -c . || true; }
# Conntrack ids of the entries of a flow, by its client port (whichever
# direction conntrack saw first). An entry flushed and recreated by the next
# packet gets a new id, so equal ids mean untouched.
ct_ids() {
	in_ns "$N" conntrack -L -o id -p udp 2>/dev/null | grep "port=$1 " |
		sed 's/.*id=\([0-9]*\).*/\1/' | sort | tr '\n' ' '
}
# The unrelated Service's flow and the plain host flow.
count_unrelated() { echo "$(ct_ids 40005)/ $(ct_ids 40004)"; }

# ---- step 1: Cluster policy, dns and web on p2; no state yet ----
objects cluster 10.244.2.3 10.244.2.3
sync_rules
grep -q "conntrack_filters=0 " "$TMP/sync.out" || fail "first sync (no state) flushed something"
[ -f "$STATE" ] || fail "sync left no state in $STATE_DIR"
udp_flow "$C" game1 203.0.113.7 7777 40001
udp_flow "$C" game2 203.0.113.7 7777 40002
udp_flow "$C" game3 192.168.1.10 30777 40006
udp_flow "$C" dns 10.96.0.10 53 40003
udp_flow "$C" host 192.168.1.10 9999 40004
udp_flow "$P1" other 10.96.0.50 5300 40005
udp_flow "$P1" incluster 203.0.113.7 7777 40007
in_ns "$C" timeout 120 sh -c 'while :; do echo ping; sleep 0.2; done |
	socat - TCP:10.96.0.20:80' >"$TMP/web.log" 2>&1 &

for f in game1 game2 game3 dns host other incluster web; do wait_replies $f 3 0; done
grep -q "^p2 " "$TMP/dns.log" || fail "dns not on p2 at first"
unrelated=$(count_unrelated)
echo "$unrelated" | grep -Eq '^[0-9]+ / [0-9]+ $' ||
	fail "unrelated/host entries: '$unrelated', want one each"
for f in game1 game2 game3; do
	grep -q " 192.168.1.100$" "$TMP/$f.log" && fail "$f: Cluster policy must SNAT"
done
echo "step 1: flows up; game flows on: $(tail -n1 "$TMP/game1.log") / $(tail -n1 "$TMP/game2.log") / $(tail -n1 "$TMP/game3.log")"

# ---- step 2: externalTrafficPolicy Cluster -> Local on the live flows ----
objects local 10.244.2.3 10.244.2.3
rules_only
m1=$(lines game1)
wait_replies game1 3 "$m1"
after game1 "$m1" | grep -q "^p1 192[.]168[.]1[.]100$" &&
	fail "game1 followed the new rules without a flush: the test proves nothing"
tcp_before=$(ct_count -p tcp --orig-dst 10.96.0.20 --dport 80)
incluster=$(ct_ids 40007)
[ -n "$incluster" ] || fail "no entry for the in-cluster flow to the LB IP"
m_game1=$(lines game1) m_game2=$(lines game2) m_game3=$(lines game3)
sync_rules
grep -q "traffic-policy" "$TMP/sync.out" || fail "no traffic-policy flush"
switched game1 "$m_game1" "^p1 192[.]168[.]1[.]100$" ||
	fail "game1: after Cluster->Local not on p1 with the client's address"
switched game2 "$m_game2" "^p1 192[.]168[.]1[.]100$" ||
	fail "game2: after Cluster->Local not on p1 with the client's address"
switched game3 "$m_game3" "^p1 192[.]168[.]1[.]100$" ||
	fail "game3 (node port): after Cluster->Local not on p1 with the client's address"
# The kernel agrees: game entries answer from p1, toward the client itself.
in_ns "$N" conntrack -L -p udp --orig-dst 203.0.113.7 2>/dev/null | grep "src=192.168.1.100 " |
	grep -v "src=10.244.1.2 dst=192.168.1.100" | grep -q . &&
	fail "a game LB entry is still SNATed or remote"
in_ns "$N" conntrack -L -p udp --orig-dst 192.168.1.10 --dport 30777 2>/dev/null |
	grep -v "src=10.244.1.2 dst=192.168.1.100" | grep -q . &&
	fail "a game node port entry is still SNATed or remote"
[ "$(count_unrelated)" = "$unrelated" ] || fail "unrelated/host entries changed: $(count_unrelated)"
[ "$(ct_count -p tcp --orig-dst 10.96.0.20 --dport 80)" = "$tcp_before" ] ||
	fail "unrelated TCP entry flushed"
# A pod's flow to the LB IP is short-circuited to every endpoint under Local
# too: not stale, not flushed, still answered.
[ "$(ct_ids 40007)" = "$incluster" ] || fail "in-cluster flow to the LB IP flushed"
m=$(lines incluster)
wait_replies incluster 3 "$m"
echo "step 2: Cluster->Local moved the live UDP flows (LB IP, node port) to p1 with the client's source; in-cluster flow kept"

# ---- step 3: dns and web endpoint p2 removed, p1 instead ----
objects local 10.244.1.2 10.244.1.2
rules_only
m_dns=$(lines dns) m_web=$(lines web)
wait_replies dns 3 "$m_dns"
after dns "$m_dns" | grep -q "^p1 " && fail "dns moved without a flush: the test proves nothing"
m_dns=$(lines dns)
sync_rules
grep -q "endpoint-gone" "$TMP/sync.out" || fail "no endpoint-gone flush"
switched dns "$m_dns" "^p1 " || fail "dns: replies not from p1 after its old endpoint went"
# TCP is left alone, as kube-proxy does: the held connection still talks to p2.
[ "$(ct_count -p tcp --orig-dst 10.96.0.20 --dport 80)" = "$tcp_before" ] ||
	fail "TCP entry flushed on endpoint removal"
wait_replies web 3 "$m_web"
after web "$m_web" | grep -vq "^p2 " && fail "held TCP connection moved"
[ "$(count_unrelated)" = "$unrelated" ] || fail "unrelated/host entries changed: $(count_unrelated)"
echo "step 3: UDP flow moved off the removed endpoint; TCP, unrelated and host entries kept"

# ---- step 4: a flush that fails is kept in the state and retried ----
# The rules go in through a sync with a scratch state; the flush against the
# real state then runs without CAP_NET_ADMIN and must fail.
objects local 10.244.2.3 10.244.1.2
rules_only
if in_ns "$N" setpriv --bounding-set -net_admin --inh-caps -net_admin "$FLUSH" \
	--state "$STATE" "$SCRATCH/$MODE.state" >"$TMP/flush.out" 2>&1; then
	cat "$TMP/flush.out"
	fail "flush without CAP_NET_ADMIN reported success"
fi
cat "$TMP/flush.out"
grep -q '"pending"' "$STATE" && grep -q '"endpoint-gone"' "$STATE" ||
	fail "failed flush not kept pending in the state file"
m_dns=$(lines dns)
wait_replies dns 3 "$m_dns"
after dns "$m_dns" | grep -q "^p2 " && fail "dns moved although the flush failed"
# Next sync, nothing changed in the objects: the pending flush runs.
m_dns=$(lines dns)
sync_rules
grep -q "flushed 1 entry: udp 10.96.0.10:53 reply-src 10.244.1.2:5353" "$TMP/sync.out" ||
	fail "pending flush not retried"
switched dns "$m_dns" "^p2 " || fail "dns not back on p2 after the retried flush"
tr -d ' \t\n' <"$STATE" | grep -q '"pending":\[\]' || fail "pending not cleared after retry"
[ "$(count_unrelated)" = "$unrelated" ] || fail "unrelated/host entries changed: $(count_unrelated)"
echo "step 4: failed flush kept pending, retried at the next sync"

# ---- step 5: a corrupt state file: warning, nothing flushed, overwritten ----
echo '{"version":1,' >"$STATE"
sync_rules
grep -q "nothing flushed" "$TMP/sync.out" || fail "corrupt state not reported"
grep -q "conntrack_filters=0 " "$TMP/sync.out" || fail "corrupt state flushed something"
sync_rules
grep -q "conntrack state" "$TMP/sync.out" && fail "state not rewritten"
echo "step 5: corrupt state reported and replaced"
echo PASS
