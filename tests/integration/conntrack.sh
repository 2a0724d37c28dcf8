#!/bin/sh
# Conntrack flushing on a real kernel, in namespaces this test creates:
#
#   client 192.168.1.100 --- node 192.168.1.10 --- p1 10.244.1.2 (local endpoint)
#                                              +-- p2 10.244.2.3 ("remote" endpoint)
#                                              +-- q  10.244.3.4 (unrelated Service)
#
# Long-lived flows go through service rules in the node namespace; each step
# changes the rules, runs the flush through the state file as a one-shot
# `svcproxy sync` does, and checks that the stale entries are gone and the
# next packet goes where the new rules say, while the unrelated Service's
# entry, plain host traffic and (where the rule says so) TCP stay.
#
# Rules: plain nft DNAT written here, standing in for a backend; the flush
# is the real code (tests/helpers/sp-ctflush runs sp_ct_sync_summary()).
set -eu

: "${top_builddir:=$(cd "$(dirname "$0")/../.." && pwd)}"
FLUSH="$top_builddir/tests/helpers/sp-ctflush"
[ -x "$FLUSH" ] || { echo "missing $FLUSH (make check builds it)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }

ID="sp-ct-$$"
C="$ID-client" N="$ID-node" P1="$ID-p1" P2="$ID-p2" Q="$ID-q"
TMP=$(mktemp -d /tmp/sp-ct-test.XXXXXX)
STATE="$TMP/state/nftables.state"

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

# ---- service rules (nft), one version per step ----
# game: UDP LB IP 203.0.113.7:7777, endpoints p1 (local) and p2 (remote)
# dns:  UDP ClusterIP 10.96.0.10:53 -> one endpoint (port 5353)
# web:  TCP ClusterIP 10.96.0.20:80 -> one endpoint (port 8080)
# other: UDP ClusterIP 10.96.0.50:5300 -> q, never changes
rules() { # game_policy dns_ep web_ep
	if [ "$1" = cluster ]; then
		game='meta mark set mark or 0x4000; numgen random mod 2 vmap { 0 : jump game_p1, 1 : jump game_p2 }'
	else
		game='jump game_p1'
	fi
	in_ns "$N" nft -f - <<-EOF
	table ip sptest
	delete table ip sptest
	table ip sptest {
		chain game_p1 { meta l4proto udp dnat to 10.244.1.2:7777; }
		chain game_p2 { meta l4proto udp dnat to 10.244.2.3:7777; }
		chain game_ext { $game; }
		chain pre {
			type nat hook prerouting priority dstnat; policy accept;
			ip daddr 203.0.113.7 udp dport 7777 jump game_ext
			ip daddr 10.96.0.10 udp dport 53 dnat to $2:5353
			ip daddr 10.96.0.20 tcp dport 80 dnat to $3:8080
			ip daddr 10.96.0.50 udp dport 5300 dnat to 10.244.3.4:5300
		}
		chain post {
			type nat hook postrouting priority srcnat; policy accept;
			meta mark & 0x4000 != 0 masquerade
		}
	}
	EOF
}

# The same Services as the flush sees them (the conntrack summary of the
# plan: what the state file holds).
svcport() { # id proto cip port etp_local ext cluster_eps local_eps
	printf '{"id":"%s","family":4,"protocol":"%s","cluster_ip":"%s","port":%s,' "$1" "$2" "$3" "$4"
	printf '"node_port":0,"external":[%s],"external_policy_local":%s,' "$6" "$5"
	printf '"internal_policy_local":false,"affinity":false,"affinity_timeout":0,'
	printf '"cluster_eps":[%s],"local_eps":[%s]}' "$7" "$8"
}
summary() { # game_policy dns_ep web_ep -> file
	etp=false
	[ "$1" = local ] && etp=true
	{
		printf '{"version":1,"mode":"nftables","masquerade_all":false,"nodeport_addrs":[],"svcports":['
		svcport default/game:udp UDP "" 7777 $etp '"203.0.113.7"' \
			'["10.244.1.2",7777],["10.244.2.3",7777]' '["10.244.1.2",7777]'
		printf ','
		svcport default/dns:dns UDP 10.96.0.10 53 false "" "[\"$2\",5353]" ""
		printf ','
		svcport default/web:http TCP 10.96.0.20 80 false "" "[\"$3\",8080]" ""
		printf ','
		svcport other/x:p UDP 10.96.0.50 5300 false "" '["10.244.3.4",5300]' ""
		printf ']}\n'
	} >"$4"
}

step() { # game_policy dns_ep web_ep: program the rules, then flush
	rules "$1" "$2" "$3"
	summary "$1" "$2" "$3" "$TMP/plan.json"
	in_ns "$N" "$FLUSH" --state "$STATE" "$TMP/plan.json" >"$TMP/flush.out" 2>&1 ||
		{ cat "$TMP/flush.out"; fail "flush failed"; }
	cat "$TMP/flush.out"
}

# ---- flows: a client that keeps sending from one source port ----
udp_flow() { # ns name dst port sport
	in_ns "$1" timeout 120 sh -c "while :; do echo ping; sleep 0.2; done |
		socat -t 1 - UDP:$3:$4,sourceport=$5" >"$TMP/$2.log" 2>&1 &
}
udp_flow "$C" game1 203.0.113.7 7777 40001
udp_flow "$C" game2 203.0.113.7 7777 40002
udp_flow "$C" dns 10.96.0.10 53 40003
udp_flow "$C" host 192.168.1.10 9999 40004
udp_flow "$P1" other 10.96.0.50 5300 40005
in_ns "$C" timeout 120 sh -c 'while :; do echo ping; sleep 0.2; done |
	socat - TCP:10.96.0.20:80' >"$TMP/web.log" 2>&1 &

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
# Entries of the unrelated Service's flow and of the plain host flow, by
# their client ports (whichever direction conntrack saw first).
count_unrelated() {
	all=$(in_ns "$N" conntrack -L -p udp 2>/dev/null)
	echo "$(echo "$all" | grep -c "port=40005 " || true)" \
		"$(echo "$all" | grep -c "port=40004 " || true)"
}

# ---- step 1: Cluster policy, dns and web on p2; no state yet ----
step cluster 10.244.2.3 10.244.2.3
grep -q "^filters 0 " "$TMP/flush.out" || fail "first sync (no state) flushed something"
for f in game1 game2 dns host other web; do wait_replies $f 3 0; done
grep -q "^p2 " "$TMP/dns.log" || fail "dns not on p2 at first"
unrelated=$(count_unrelated)
[ "$unrelated" = "1 1" ] || fail "unrelated/host entries: '$unrelated', want '1 1'"
for f in game1 game2; do
	grep -q " 192.168.1.100:" "$TMP/$f.log" && fail "$f: Cluster policy must SNAT"
done
echo "step 1: flows up; game flows on: $(tail -n1 "$TMP/game1.log") / $(tail -n1 "$TMP/game2.log")"

# ---- step 2: externalTrafficPolicy Cluster -> Local on the live flows ----
rules local 10.244.2.3 10.244.2.3
m1=$(lines game1)
wait_replies game1 3 "$m1"
after game1 "$m1" | grep -q "^p1 192[.]168[.]1[.]100$" &&
	fail "game1 followed the new rules without a flush: the test proves nothing"
tcp_before=$(ct_count -p tcp --orig-dst 10.96.0.20 --dport 80)
summary local 10.244.2.3 10.244.2.3 "$TMP/plan.json"
m_game1=$(lines game1) m_game2=$(lines game2)
in_ns "$N" "$FLUSH" --state "$STATE" "$TMP/plan.json" >"$TMP/flush.out" 2>&1 || fail "flush failed"
cat "$TMP/flush.out"
grep -q "traffic-policy" "$TMP/flush.out" || fail "no traffic-policy flush"
switched game1 "$m_game1" "^p1 192[.]168[.]1[.]100$" ||
	fail "game1: after Cluster->Local not on p1 with the client's address"
switched game2 "$m_game2" "^p1 192[.]168[.]1[.]100$" ||
	fail "game2: after Cluster->Local not on p1 with the client's address"
# The kernel agrees: game entries answer from p1, toward the client itself.
in_ns "$N" conntrack -L -p udp --orig-dst 203.0.113.7 2>/dev/null |
	grep -v "src=10.244.1.2 dst=192.168.1.100" | grep -q . &&
	fail "a game entry is still SNATed or remote"
[ "$(count_unrelated)" = "$unrelated" ] || fail "unrelated/host entries changed: $(count_unrelated)"
[ "$(ct_count -p tcp --orig-dst 10.96.0.20 --dport 80)" = "$tcp_before" ] ||
	fail "unrelated TCP entry flushed"
echo "step 2: Cluster->Local moved both live UDP flows to p1 with the client's source"

# ---- step 3: dns and web endpoint p2 removed, p1 instead ----
m_dns=$(lines dns) m_web=$(lines web)
step local 10.244.1.2 10.244.1.2
grep -q "endpoint-gone" "$TMP/flush.out" || fail "no endpoint-gone flush"
switched dns "$m_dns" "^p1 " || fail "dns: replies not from p1 after its old endpoint went"
# TCP is left alone, as kube-proxy does: the held connection still talks to p2.
[ "$(ct_count -p tcp --orig-dst 10.96.0.20 --dport 80)" = "$tcp_before" ] ||
	fail "TCP entry flushed on endpoint removal"
wait_replies web 3 "$m_web"
after web "$m_web" | grep -vq "^p2 " && fail "held TCP connection moved"
[ "$(count_unrelated)" = "$unrelated" ] || fail "unrelated/host entries changed: $(count_unrelated)"
echo "step 3: UDP flow moved off the removed endpoint; TCP, unrelated and host entries kept"

# ---- step 4: a flush that fails is kept in the state and retried ----
rules local 10.244.2.3 10.244.1.2
summary local 10.244.2.3 10.244.1.2 "$TMP/plan.json"
if in_ns "$N" setpriv --bounding-set -net_admin --inh-caps -net_admin "$FLUSH" --state "$STATE" \
	"$TMP/plan.json" >"$TMP/flush.out" 2>&1; then
	fail "flush without CAP_NET_ADMIN reported success"
fi
cat "$TMP/flush.out"
grep -q '"pending"' "$STATE" && grep -q '"endpoint-gone"' "$STATE" ||
	fail "failed flush not kept pending in the state file"
m_dns=$(lines dns)
wait_replies dns 3 "$m_dns"
after dns "$m_dns" | grep -q "^p2 " && fail "dns moved although the flush failed"
# Next sync, nothing changed in the plan: the pending flush runs.
in_ns "$N" "$FLUSH" --state "$STATE" "$TMP/plan.json" >"$TMP/flush.out" 2>&1 || fail "retry failed"
cat "$TMP/flush.out"
grep -q "flushed 1 entry: udp 10.96.0.10:53 reply-src 10.244.1.2:5353" "$TMP/flush.out" ||
	fail "pending flush not retried"
m_dns=$(lines dns)
switched dns "$m_dns" "^p2 " || fail "dns not back on p2 after the retried flush"
tr -d ' \t\n' <"$STATE" | grep -q '"pending":\[\]' || fail "pending not cleared after retry"
[ "$(count_unrelated)" = "$unrelated" ] || fail "unrelated/host entries changed: $(count_unrelated)"
echo "step 4: failed flush kept pending, retried at the next sync"

# ---- step 5: a corrupt state file: warning, nothing flushed, overwritten ----
echo '{"version":1,' >"$STATE"
in_ns "$N" "$FLUSH" --state "$STATE" "$TMP/plan.json" >"$TMP/flush.out" 2>&1 || true
grep -q "nothing flushed" "$TMP/flush.out" || fail "corrupt state not reported"
grep -q "^filters 0 " "$TMP/flush.out" || fail "corrupt state flushed something"
in_ns "$N" "$FLUSH" --state "$STATE" "$TMP/plan.json" >"$TMP/flush.out" 2>&1 || fail "state not rewritten"
echo "step 5: corrupt state reported and replaced"
echo PASS
