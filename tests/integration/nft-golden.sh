#!/bin/sh
# The nftables plan printer's output for example clusters is accepted by
# nft itself (`nft -c -f`), in a scratch network namespace of our own; and
# loading it for real gives a table nft lists back.
set -eu
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
SVCPROXY=${SVCPROXY:-$top_builddir/svcproxy}
NS=sp-nftgold-$$
TMP=$(mktemp -d)
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
[ "$(id -u)" = 0 ] || { echo "needs root for a network namespace"; exit 77; }
command -v nft >/dev/null || { echo "nft not installed"; exit 77; }
ip netns add "$NS"
fail=0
check() { # name, plan args...
	name=$1; shift
	if ! "$SVCPROXY" plan --proxy-mode nftables "$@" >"$TMP/$name.nft" 2>"$TMP/$name.err"; then
		# exit 1 (something skipped) still prints a plan
		[ -s "$TMP/$name.nft" ] || { echo "FAIL $name: no plan"; cat "$TMP/$name.err"; fail=1; return; }
	fi
	grep -q "^table ip svcproxy {" "$TMP/$name.nft" || { echo "FAIL $name: no ip table"; fail=1; return; }
	if ! ip netns exec "$NS" timeout 20 nft -c -f "$TMP/$name.nft" 2>"$TMP/$name.nfterr"; then
		echo "FAIL $name: nft -c refused the plan:"; cat "$TMP/$name.nfterr"; fail=1; return
	fi
	# Load it twice: the script replaces the table, so the second load
	# must give the same listing as the first.
	ip netns exec "$NS" timeout 20 nft -f "$TMP/$name.nft"
	ip netns exec "$NS" nft list table ip svcproxy >"$TMP/$name.l1" 2>"$TMP/$name.lerr"
	# nft lists the endpoint maps and pick rules without complaint (a key
	# with `th dport` made it print "conflicting protocols" errors).
	if [ -s "$TMP/$name.lerr" ]; then
		echo "FAIL $name: nft list complained:"; cat "$TMP/$name.lerr"; fail=1; return
	fi
	# Each pick rule is also accepted on its own, as `nft add rule`.
	awk '/^table (ip|ip6) svcproxy \{/ { fam = $2 }
	     /^\tchain pick-/ { chain = $2; next }
	     chain && /^\t\t/ { sub(/^\t\t/, ""); print fam "\t" chain "\t" $0; chain = "" }' \
		"$TMP/$name.nft" >"$TMP/$name.picks"
	[ -s "$TMP/$name.picks" ] || { echo "FAIL $name: no pick chain"; fail=1; return; }
	while IFS='	' read -r fam chain rule; do
		if ! ip netns exec "$NS" nft add rule "$fam" svcproxy "$chain" "$rule" 2>"$TMP/$name.adderr"; then
			echo "FAIL $name: nft refused on its own: $fam $chain $rule"; cat "$TMP/$name.adderr"; fail=1; return
		fi
	done <"$TMP/$name.picks"
	# The second load replaces the table, rules added by hand included.
	ip netns exec "$NS" timeout 20 nft -f "$TMP/$name.nft"
	ip netns exec "$NS" nft list table ip svcproxy >"$TMP/$name.l2"
	if ! cmp -s "$TMP/$name.l1" "$TMP/$name.l2"; then
		echo "FAIL $name: loading the plan twice gives another table"; diff "$TMP/$name.l1" "$TMP/$name.l2"; fail=1; return
	fi
	ip netns exec "$NS" nft flush ruleset
	echo "ok $name"
}
EX=$top_srcdir/examples/cluster
check golden --hostname-override node-1 --cluster-cidr 10.244.0.0/16,fd00:244::/40 "$top_srcdir/tests/data/nft/golden-cluster.json"
check golden-nodeport-addrs --hostname-override node-1 --nodeport-addresses 192.0.2.0/24 --node-ip 192.0.2.11 "$top_srcdir/tests/data/nft/golden-cluster.json"
DUMP=$top_srcdir/tests/data/source/kubectl-dump.json
check example --hostname-override node-1 "$EX"
check example-cidr --hostname-override node-1 --cluster-cidr 10.244.0.0/16 "$EX"
check example-masq-all --hostname-override node-1 --masquerade-all "$EX"
check example-other-node --hostname-override node-2 --cluster-cidr 10.244.0.0/16 "$EX"
if [ -f "$DUMP" ]; then
	node=$(sed -n 's/.*"kubernetes.io\/hostname": *"\([^"]*\)".*/\1/p' "$DUMP" | head -n1)
	check kubectl-dump --hostname-override "${node:-node-1}" --cluster-cidr 10.244.0.0/16 "$DUMP"
fi
exit $fail
