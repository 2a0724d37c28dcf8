#!/bin/sh
# Exactness of the kernel side of the conntrack flush, on entries created
# over ctnetlink in a namespace of its own (no traffic needed): each filter
# deletes exactly the entries it names, whether the flush takes the
# per-filter kernel-filtered dump or the one-dump-per-family path (many
# filters), for UDP, TCP, SCTP, IPv4 and IPv6, reply source ports, the
# SNATed flag and a non-zero zone.
set -eu

: "${top_builddir:=$(cd "$(dirname "$0")/../.." && pwd)}"
FLUSH="$top_builddir/tests/helpers/sp-ctflush"
[ -x "$FLUSH" ] || { echo "missing $FLUSH (make check builds it)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }

NS="sp-ctf-$$"
TMP=$(mktemp -d /tmp/sp-ctf-test.XXXXXX)
cleanup() {
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
ip netns add "$NS"

fail() {
	echo "FAIL: $*"
	ip netns exec "$NS" conntrack -L -o extended 2>/dev/null | sort || true
	exit 1
}

# entry PROTO ORIG_SRC ORIG_DST DPORT REPLY_SRC SPORT [extra conntrack -I args]
n_entries=0
entry() {
	proto=$1 osrc=$2 odst=$3 dport=$4 rsrc=$5 rsport=$6
	shift 6
	n_entries=$((n_entries + 1))
	cport=$((20000 + n_entries))
	set -- -p "$proto" -s "$osrc" -d "$odst" --sport "$cport" --dport "$dport" \
		-r "$rsrc" -q "$osrc" --reply-port-src "$rsport" --reply-port-dst "$cport" -t 300 "$@"
	case $proto in
	tcp) set -- "$@" --state ESTABLISHED ;;
	sctp) set -- "$@" --state ESTABLISHED --orig-vtag 1 --reply-vtag 2 ;;
	esac
	ip netns exec "$NS" timeout 10 conntrack -I "$@" 2>/dev/null || fail "cannot create entry $*"
}
# Entries whose (orig dst, dport, reply src, reply sport) match: key ADDR DPORT RSRC RSPORT
present() {
	ip netns exec "$NS" conntrack -L -o extended 2>/dev/null |
		awk -v d="dst=$1" -v dp="dport=$2" -v rs="src=$3" -v rp="sport=$4" '
		{ n = 0; o = 0
		  for (i = 1; i <= NF; i++) {
			if ($i ~ /^src=/) n++
			if (n == 1 && ($i == d || $i == dp)) o++
			if (n == 2 && ($i == rs || $i == rp)) o++
		  }
		  if (o == 4) c++ }
		END { print c + 0 }'
}
total() { ip netns exec "$NS" conntrack -L 2>/dev/null | grep -c . || true; }

svcport() { # id family proto cip port etp ext cluster_eps local_eps
	printf '{"id":"%s","family":%s,"protocol":"%s","cluster_ip":"%s","port":%s,' "$1" "$2" "$3" "$4" "$5"
	printf '"node_port":0,"external":[%s],"external_policy_local":%s,' "$7" "$6"
	printf '"internal_policy_local":false,"affinity":false,"affinity_timeout":0,'
	printf '"cluster_eps":[%s],"local_eps":[%s]}\n' "$8" "$9"
}
summary() { # file, then svcport lines on stdin
	{
		printf '{"version":1,"mode":"nftables","masquerade_all":false,"nodeport_addrs":[],"svcports":['
		paste -sd, -
		printf ']}\n'
	} >"$1"
}

# ---- run 1: a few filters, each its own kernel-filtered dump ----
entry udp 192.168.1.100 10.96.0.10 53 10.244.2.3 5353 # stale: endpoint gone
entry udp 192.168.1.101 10.96.0.10 53 10.244.1.2 5353 # endpoint kept
entry udp 192.168.1.102 10.96.0.10 53 10.244.2.3 5354 # other reply port
entry udp 192.168.1.103 10.96.0.11 53 10.244.2.3 5353 # other Service address
entry tcp 192.168.1.104 10.96.0.10 53 10.244.2.3 5353 # TCP: left alone
entry sctp 192.168.1.105 10.96.0.40 3868 10.244.2.8 3868 # SCTP: stale
entry udp 192.168.1.106 203.0.113.7 7777 10.244.1.6 7777 --src-nat 10.244.1.1 # SNATed: stale
entry udp 192.168.1.107 203.0.113.7 7777 10.244.1.6 7777 # not SNATed: kept
entry udp fd00::1 fd00:96::10 53 fd00:244::3 53 -w 7 # IPv6, zone 7: stale
entry udp fd00::2 fd00:96::10 53 fd00:244::2 53 # IPv6 endpoint kept
[ "$(total)" = 10 ] || fail "setup: $(total) entries"

{
	svcport default/dns:dns 4 UDP 10.96.0.10 53 false "" '["10.244.1.2",5353],["10.244.2.3",5353]' ""
	svcport default/dnstcp:dns 4 TCP 10.96.0.10 53 false "" '["10.244.2.3",5353]' ""
	svcport default/sig:diameter 4 SCTP 10.96.0.40 3868 false "" '["10.244.2.8",3868]' ""
	svcport default/game:udp 4 UDP "" 7777 false '"203.0.113.7"' '["10.244.1.6",7777]' '["10.244.1.6",7777]'
	svcport default/v6:dns 6 UDP fd00:96::10 53 false "" '["fd00:244::2",53],["fd00:244::3",53]' ""
} | summary "$TMP/old.json"
{
	svcport default/dns:dns 4 UDP 10.96.0.10 53 false "" '["10.244.1.2",5353]' ""
	svcport default/dnstcp:dns 4 TCP 10.96.0.10 53 false "" '["10.244.1.2",5353]' ""
	svcport default/sig:diameter 4 SCTP 10.96.0.40 3868 false "" '["10.244.2.9",3868]' ""
	svcport default/game:udp 4 UDP "" 7777 true '"203.0.113.7"' '["10.244.1.6",7777]' '["10.244.1.6",7777]'
	svcport default/v6:dns 6 UDP fd00:96::10 53 false "" '["fd00:244::2",53]' ""
} | summary "$TMP/new.json"

ip netns exec "$NS" "$FLUSH" "$TMP/old.json" "$TMP/new.json" >"$TMP/out" 2>&1 ||
	{ cat "$TMP/out"; fail "flush failed"; }
cat "$TMP/out"
grep -q "^filters 4 failed 0 deleted 4 dumps 4$" "$TMP/out" || fail "run 1 statistics"
[ "$(present 10.96.0.10 53 10.244.2.3 5353)" = 1 ] || fail "TCP or stale UDP entry wrong"
ip netns exec "$NS" conntrack -L -p udp --orig-dst 10.96.0.10 --reply-src 10.244.2.3 2>/dev/null |
	grep -q "sport=5353" && fail "stale UDP entry left"
[ "$(present 10.96.0.10 53 10.244.1.2 5353)" = 1 ] || fail "kept endpoint's entry flushed"
[ "$(present 10.96.0.10 53 10.244.2.3 5354)" = 1 ] || fail "other reply port flushed"
[ "$(present 10.96.0.11 53 10.244.2.3 5353)" = 1 ] || fail "other Service flushed"
[ "$(present 10.96.0.40 3868 10.244.2.8 3868)" = 0 ] || fail "stale SCTP entry left"
[ "$(present 203.0.113.7 7777 10.244.1.6 7777)" = 1 ] || fail "SNAT filter wrong"
ip netns exec "$NS" conntrack -L --src-nat 2>/dev/null | grep -q . && fail "SNATed entry left"
[ "$(present fd00:96::10 53 fd00:244::3 53)" = 0 ] || fail "stale IPv6 zone-7 entry left"
[ "$(present fd00:96::10 53 fd00:244::2 53)" = 1 ] || fail "kept IPv6 entry flushed"
[ "$(total)" = 6 ] || fail "run 1: $(total) entries left, want 6"
echo "run 1: 4 exact filters deleted 4 of 10 entries"

# ---- run 2: many filters, one dump for the family ----
ip netns exec "$NS" conntrack -F 2>/dev/null
n_entries=0
i=1
while [ $i -le 20 ]; do
	entry udp 192.168.2.$i 10.96.1.$i 53 10.244.5.$i 53 # endpoint gone: stale
	entry udp 192.168.2.$i 10.96.2.$i 53 10.244.5.$i 53 # other Service, same endpoint
	i=$((i + 1))
done
entry udp 192.168.2.99 10.96.1.1 53 10.244.6.1 53 # Service kept, endpoint kept
i=1
while [ $i -le 20 ]; do
	echo "$(svcport default/s$i:dns 4 UDP 10.96.1.$i 53 false "" "[\"10.244.5.$i\",53],[\"10.244.6.$i\",53]" "")"
	echo "$(svcport default/t$i:dns 4 UDP 10.96.2.$i 53 false "" "[\"10.244.5.$i\",53]" "")"
	i=$((i + 1))
done | summary "$TMP/old.json"
i=1
while [ $i -le 20 ]; do
	echo "$(svcport default/s$i:dns 4 UDP 10.96.1.$i 53 false "" "[\"10.244.6.$i\",53]" "")"
	echo "$(svcport default/t$i:dns 4 UDP 10.96.2.$i 53 false "" "[\"10.244.5.$i\",53]" "")"
	i=$((i + 1))
done | summary "$TMP/new.json"
[ "$(total)" = 41 ] || fail "setup 2: $(total) entries"
ip netns exec "$NS" "$FLUSH" "$TMP/old.json" "$TMP/new.json" >"$TMP/out" 2>&1 ||
	{ cat "$TMP/out"; fail "flush failed"; }
tail -n 1 "$TMP/out"
grep -q "^filters 20 failed 0 deleted 20 dumps 1$" "$TMP/out" || fail "run 2 statistics"
[ "$(total)" = 21 ] || fail "run 2: $(total) entries left, want 21"
[ "$(present 10.96.1.1 53 10.244.6.1 53)" = 1 ] || fail "kept endpoint flushed"
[ "$(present 10.96.2.7 53 10.244.5.7 53)" = 1 ] || fail "other Service flushed"
echo "run 2: 20 filters in one dump deleted exactly 20 of 41 entries"

# ---- run 3: nothing stale, nothing to do (idempotence) ----
ip netns exec "$NS" "$FLUSH" "$TMP/new.json" "$TMP/new.json" >"$TMP/out" 2>&1 || fail "no-op flush"
grep -q "^filters 0 failed 0 deleted 0 dumps 0$" "$TMP/out" || fail "no-op flush did something"
[ "$(total)" = 21 ] || fail "no-op flush changed the table"
echo PASS
