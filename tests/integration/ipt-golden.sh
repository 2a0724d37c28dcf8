#!/bin/sh
# iptables mode, printed plan: the real tool accepts it. For the bundled
# example cluster and this test's own cluster (every kind of service), the
# `iptables-save` text of the plan must pass `iptables-legacy-restore --test`
# in a scratch namespace (nothing is programmed: --test only parses and
# checks every match and target with the kernel), be the same bytes on a
# second run, and the JSON form must parse. A dual-stack plan's IPv6 part
# must pass `ip6tables-legacy-restore --test`.
set -eu

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
DRIVE="$top_builddir/tests/helpers/sp-ipt-drive"
[ -x "$DRIVE" ] || { echo "missing $DRIVE (make check builds it)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }

NS="sp-iptg-$$"
TMP=$(mktemp -d /tmp/sp-iptg.XXXXXX)
cleanup() {
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*"; exit 1; }

ip netns add "$NS"

check_plan() { # name, drive options and sources...
	name=$1
	shift
	"$DRIVE" "$@" > "$TMP/$name.plan" 2> "$TMP/$name.err" || true
	grep -q '^-A KUBE-SVC-' "$TMP/$name.plan" || fail "$name: no service chain in the plan"
	grep -q '^COMMIT$' "$TMP/$name.plan" || fail "$name: no COMMIT"
	timeout 20 ip netns exec "$NS" iptables-legacy-restore --test < "$TMP/$name.plan" \
		2> "$TMP/$name.restore" ||
		fail "$name: iptables-legacy-restore --test refused the plan: $(cat "$TMP/$name.restore")"
	"$DRIVE" "$@" > "$TMP/$name.again" 2>/dev/null || true
	cmp -s "$TMP/$name.plan" "$TMP/$name.again" || fail "$name: plan not deterministic"
	echo "ok: $name plan ($(wc -l < "$TMP/$name.plan") lines) accepted"
}

check_plan example --node node-1 --cluster-cidr 10.244.0.0/16 plan \
	"$top_srcdir/examples/cluster/cluster.json"
check_plan own --node node-1 --cluster-cidr 10.244.0.0/16 plan \
	"$top_srcdir/tests/integration/ipt-example.json"
check_plan masq-all --node node-1 --masquerade-all plan \
	"$top_srcdir/tests/integration/ipt-example.json"

# The plan of this test's cluster is reviewed text: any change to the layout
# shows here as a diff. Regenerate with
#   sp-ipt-drive --node node-1 --cluster-cidr 10.244.0.0/16 plan \
#     tests/integration/ipt-example.json > tests/golden/ipt-example.plan
diff -u "$top_srcdir/tests/golden/ipt-example.plan" "$TMP/own.plan" > "$TMP/golden.diff" ||
	fail "the plan differs from tests/golden/ipt-example.plan: $(cat "$TMP/golden.diff")"
echo "ok: plan equals tests/golden/ipt-example.plan"

# Dual stack: the IPv4 part for iptables-restore, the part after
# "# ip6tables" for ip6tables-restore.
"$DRIVE" --node node-1 --cluster-cidr 10.244.0.0/16 --cluster-cidr fd01::/48 plan \
	"$top_srcdir/tests/integration/ipt-dualstack.json" > "$TMP/ds.plan" 2>/dev/null || true
sed '/^# ip6tables$/,$d' "$TMP/ds.plan" > "$TMP/ds4.plan"
sed -n '/^# ip6tables$/,$p' "$TMP/ds.plan" > "$TMP/ds6.plan"
grep -q '^-A KUBE-SEP-.*--to-destination \[fd01::1:10\]:8080$' "$TMP/ds6.plan" ||
	fail "dual stack: no IPv6 endpoint in the ip6tables part"
ip netns exec "$NS" iptables-legacy-restore --test < "$TMP/ds4.plan" 2> "$TMP/ds.err" ||
	fail "dual stack: iptables-legacy-restore --test: $(cat "$TMP/ds.err")"
ip netns exec "$NS" ip6tables-legacy-restore --test < "$TMP/ds6.plan" 2> "$TMP/ds.err" ||
	fail "dual stack: ip6tables-legacy-restore --test: $(cat "$TMP/ds.err")"
echo "ok: dual-stack plan accepted by iptables- and ip6tables-legacy-restore"

# The checker itself must be able to fail: a plan with a jump to a chain
# that does not exist is refused.
sed 's/-j KUBE-MARK-MASQ$/-j KUBE-NO-SUCH-CHAIN/' "$TMP/own.plan" > "$TMP/broken.plan"
if ip netns exec "$NS" iptables-legacy-restore --test < "$TMP/broken.plan" 2>/dev/null; then
	fail "iptables-legacy-restore --test accepted a broken plan: the check proves nothing"
fi

"$DRIVE" --node node-1 --cluster-cidr 10.244.0.0/16 json \
	"$top_srcdir/tests/integration/ipt-example.json" > "$TMP/plan.json" 2>/dev/null || true
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["ipv4"]; assert [t["name"] for t in d["tables"]] == ["filter","nat"]' \
	"$TMP/plan.json" || fail "JSON plan does not parse"

# Nothing was programmed by --test.
if ip netns exec "$NS" iptables-legacy-save | grep -q KUBE-; then
	fail "--test left rules behind"
fi
echo "PASS"
