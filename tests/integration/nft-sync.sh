#!/bin/bash
# nftables mode, kernel state rather than traffic: batch sizes, idempotence,
# atomicity under kill -9, repair of hand-made damage, diff and cleanup.
# The table is compared with what `nft -f` makes of `svcproxy plan`, loaded
# into a scratch namespace.
set -u
MODE=nftables
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
SVCPROXY=${SVCPROXY:-$top_builddir/svcproxy}
WHOAMI=${WHOAMI:-$top_builddir/tests/helpers/sp-whoami}

[ "$(id -u)" = 0 ] || { echo "needs root for network namespaces"; exit 77; }
command -v nft >/dev/null || { echo "nft not installed"; exit 77; }
[ -x "$SVCPROXY" ] || { echo "missing $SVCPROXY"; exit 99; }

. "$top_srcdir/tests/lib/cluster.sh"

sp_add_ns node1
sp_add_ns scratch

# COUNT Services default/s<i> (ClusterIP 10.96.x.y:80 -> 8080) with EPS
# endpoints each; the first endpoint of s0 is FIRST (to change one endpoint).
gen() { # COUNT EPS FIRST
	awk -v n="$1" -v e="$2" -v first="$3" 'BEGIN {
		printf "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n"
		printf "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"node-1\"},"
		printf "\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"192.0.2.11\"}]}}"
		for (i = 0; i < n; i++) {
			printf ",\n{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"s%d\",\"namespace\":\"default\"},", i
			printf "\"spec\":{\"type\":\"%s\",\"clusterIP\":\"10.96.%d.%d\",", i < 2000 ? "NodePort" : "ClusterIP", int(i / 250), i % 250 + 1
			printf "\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":80,\"targetPort\":8080"
			if (i < 2000) printf ",\"nodePort\":%d", 30000 + i
			printf "}]}}"
			printf ",\n{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"s%d-a\",\"namespace\":\"default\",", i
			printf "\"labels\":{\"kubernetes.io/service-name\":\"s%d\"}},\"addressType\":\"IPv4\",", i
			printf "\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":8080}],\"endpoints\":["
			for (j = 0; j < e; j++) {
				addr = sprintf("10.%d.%d.%d", 128 + int(i / 250) % 100, i % 250, j + 1)
				if (i == 0 && j == 0) addr = first
				printf "%s{\"addresses\":[\"%s\"],\"nodeName\":\"node-%d\"}", j ? "," : "", addr, j % 3 + 1
			}
			printf "]}"
		}
		printf "\n]}\n"
	}'
}

ARGS="--proxy-mode nftables --hostname-override node-1 --cluster-cidr 10.128.0.0/9"
DIR=$SP_TMP/in
mkdir -p "$DIR"
use() { gen "$@" >"$DIR/cluster.json"; }
run() { # SUBCOMMAND [args]: in node1, stdout only
	local sub=$1
	shift
	sp_in node1 "$SVCPROXY" "$sub" $ARGS "$@" "$DIR" 2>>"$SP_TMP/stderr"
}
sent() { sed -n 's/.*messages_sent=\([0-9]*\).*/\1/p'; }

# nft's listing with chains and maps in name order (nft lists them in
# creation order, which differs between an incremental history and one
# fresh load).
normalize() {
	awk '
	/^\t(chain|map|set) / { inblock = 1; buf = $2 "\001" $0; next }
	inblock { buf = buf "\001" $0; if ($0 == "\t}") { print buf; inblock = 0 }; next }
	{ print "\002" $0 }' | LC_ALL=C sort -s -t "$(printf '\001')" -k1,1 | sed 's/^[^\x01]*\x01//; s/^\x02//' | tr '\001' '\n'
}
table_of() { sp_in "$1" nft list table "${2:-ip}" svcproxy 2>/dev/null | normalize; }
plan_table() { # [FAMILY]: what nft makes of the plan
	sp_in scratch nft flush ruleset
	sp_in node1 "$SVCPROXY" plan $ARGS "$DIR" 2>/dev/null | sp_in scratch nft -f - || return 1
	table_of scratch "${1:-ip}"
}
expect_plan() { # DESC [FAMILY]
	local want have
	want=$(plan_table "${2:-}")
	have=$(table_of node1 "${2:-}")
	if [ -n "$want" ] && [ "$want" = "$have" ]; then
		sp_ok "$1"
	else
		sp_fail "$1"
		diff <(echo "$want") <(echo "$have") | head -20
	fi
}

# ---- a one-endpoint change costs the same whatever the number of Services
batch_for_one_change() { # COUNT
	sp_in node1 nft delete table ip svcproxy 2>/dev/null
	use "$1" 3 10.200.0.1
	run sync >/dev/null
	use "$1" 3 10.200.0.2
	run sync --stats | sent
}
small=$(batch_for_one_change 10)
large=$(batch_for_one_change 300)
if [ -n "$small" ] && [ "$small" -gt 0 ] && [ "$small" = "$large" ]; then
	sp_ok "one endpoint changed: $small messages with 10 Services, $large with 300"
else
	sp_fail "one endpoint changed: ${small:-?} messages with 10 Services, ${large:-?} with 300"
fi
again=$(run sync --stats | sent)
[ "$again" = 0 ] && sp_ok "a second sync with no change sends nothing" ||
	sp_fail "a second sync with no change sent ${again:-?} messages"
expect_plan "after incremental changes the table is exactly the plan"

# ---- diff: exit 0 when in sync, 2 with the change to make
run diff >"$SP_TMP/diff" && rc=0 || rc=$?
[ $rc = 0 ] && [ ! -s "$SP_TMP/diff" ] && sp_ok "diff: nothing to do, exit 0" ||
	sp_fail "diff in sync: exit $rc, $(wc -l <"$SP_TMP/diff") lines"
use 300 3 10.200.0.3
run diff >"$SP_TMP/diff" && rc=0 || rc=$?
# An endpoint is map data: its change touches no rule, so the kernel does
# not validate the table on commit.
if [ $rc = 2 ] && grep -q '^add element ip svcproxy endpoints-tcp { 10.96.0.1 . 80 . 2 : 10.200.0.3 . 8080 }$' "$SP_TMP/diff" &&
	! grep -q 'rule\|chain' "$SP_TMP/diff"; then
	sp_ok "diff: shows the change in nft syntax (elements only), exit 2"
else
	sp_fail "diff with a change: exit $rc: $(head -5 "$SP_TMP/diff")"
fi
run sync >/dev/null

# ---- kill -9 in the middle of a sync: the kernel has the old table or the
# new one, never a mix; the next sync makes it exactly the plan. The kill
# comes at growing delays, between two inputs that differ in every Service
# chain (large transactions), so that it lands before, during and after the
# kernel's commit.
use 1500 4 10.200.0.4
want_a=$(plan_table)
use 1500 5 10.200.0.4
want_b=$(plan_table)
run sync >/dev/null
outcomes=""
bad=0
for delay in 0.2 0.4 0.6 0.8 1.0 1.3; do
	old=$(table_of node1)
	if [ "$old" = "$want_b" ]; then
		use 1500 4 10.200.0.4
		new=$want_a
	else
		use 1500 5 10.200.0.4
		new=$want_b
	fi
	# ip netns exec execs svcproxy itself, so $! is the process to kill
	# (a subshell or `timeout` in between would survive and race on).
	ip netns exec "$(sp_ns node1)" "$SVCPROXY" sync $ARGS "$DIR" >/dev/null 2>&1 &
	pid=$!
	sleep $delay
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	mid=$(table_of node1)
	if [ "$mid" = "$old" ]; then
		outcomes="$outcomes old"
	elif [ "$mid" = "$new" ]; then
		outcomes="$outcomes new"
	else
		outcomes="$outcomes MIXED"
		bad=1
	fi
done
if [ $bad = 0 ]; then
	sp_ok "kill -9 mid-sync leaves the old or the new table, whole:$outcomes"
else
	sp_fail "kill -9 mid-sync left a table that is neither the old nor the new one:$outcomes"
fi
run sync >/dev/null
expect_plan "after kill -9 and a new sync the table is exactly the plan"

# ---- damage by hand is repaired
# (the chain's references go first, as the kernel insists)
sp_in node1 nft delete element ip svcproxy service-nodeports '{ tcp . 30000 }'
sp_in node1 nft flush chain ip svcproxy nodeport-default/s0/tcp/http
sp_in node1 nft delete chain ip svcproxy nodeport-default/s0/tcp/http
sp_in node1 nft add rule ip svcproxy services counter
# and an endpoint element edited by hand
sp_in node1 nft delete element ip svcproxy endpoints-tcp '{ 10.96.0.1 . 80 . 0 }'
sp_in node1 nft add element ip svcproxy endpoints-tcp '{ 10.96.0.1 . 80 . 0 : 192.0.2.99 . 1 }'
if sp_in node1 nft list chain ip svcproxy nodeport-default/s0/tcp/http >/dev/null 2>&1 ||
	! sp_in node1 nft list map ip svcproxy endpoints-tcp | grep -q 192.0.2.99; then
	sp_fail "could not delete a chain or edit an element by hand"
fi
run sync >/dev/null
expect_plan "a chain deleted and a rule added by hand are repaired by the next sync"

# ---- both families and every kind of Service port: what sync programs is
# what nft makes of the printed plan, and it settles at once
ARGS="--proxy-mode nftables --hostname-override node-1 --cluster-cidr 10.244.0.0/16,fd00:244::/40"
cp "$top_srcdir/tests/data/nft/golden-cluster.json" "$DIR/cluster.json"
run sync >/dev/null
expect_plan "every kind of Service port, IPv4 table equals the plan" ip
expect_plan "every kind of Service port, IPv6 table equals the plan" ip6
again=$(run sync --stats | sent)
[ "$again" = 0 ] && sp_ok "dual-stack: a second sync sends nothing" ||
	sp_fail "dual-stack: a second sync sent ${again:-?} messages"
ARGS="--proxy-mode nftables --hostname-override node-1 --cluster-cidr 10.128.0.0/9"

# ---- without CAP_NET_ADMIN: a clear error, exit status 1, the table kept
before=$(table_of node1)
if command -v setpriv >/dev/null; then
	ip netns exec "$(sp_ns node1)" setpriv --bounding-set=-all --inh-caps=-all \
		--ambient-caps=-all "$SVCPROXY" sync $ARGS "$DIR" >/dev/null 2>"$SP_TMP/eperm" && rc=0 || rc=$?
	if [ $rc = 1 ] && grep -q 'nftables: .*Operation not permitted' "$SP_TMP/eperm" &&
		[ "$(table_of node1)" = "$before" ]; then
		sp_ok "without CAP_NET_ADMIN: exit 1, the error says so, the table is kept"
	else
		sp_fail "without CAP_NET_ADMIN: exit $rc: $(cat "$SP_TMP/eperm")"
	fi
fi

# ---- cleanup removes our tables and nothing else
sp_in node1 nft add table inet keepme
sp_in node1 nft add chain inet keepme c
sp_in node1 nft add table ip6 svcproxy-other
use 5 2 10.200.0.5
run sync >/dev/null
sp_in node1 "$SVCPROXY" cleanup --proxy-mode nftables 2>>"$SP_TMP/stderr"
tables=$(sp_in node1 nft list tables | sort | tr '\n' ';')
if [ "$tables" = "table inet keepme;table ip6 svcproxy-other;" ]; then
	sp_ok "cleanup removes our tables and leaves the others"
else
	sp_fail "cleanup left: $tables"
fi
again=$(sp_in node1 "$SVCPROXY" cleanup --proxy-mode nftables 2>&1 && echo ok)
[ "$again" = ok ] && sp_ok "cleanup with nothing to remove succeeds" || sp_fail "second cleanup: $again"

sp_report
