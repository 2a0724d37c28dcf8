#!/bin/bash
# svcproxy-matrix-tool without namespaces: every shipped scenario reads; a
# broken one is refused with its reason; cells become JSON with exactly the
# issue's keys, a table and an HTML page; --diff names the changed cells and
# says so in its exit status.
set -u
. "$(dirname "$0")/matrix-lib.sh"
[ -x "$SP_MATRIX_TOOL" ] || { echo "missing $SP_MATRIX_TOOL (build it first)"; exit 99; }
t=$(mktemp -d "${TMPDIR:-/tmp}/matrix-report.XXXXXX")
trap 'rm -rf "$t"' EXIT
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

for s in "$EXAMPLES"/*.json; do
	"$SP_MATRIX_TOOL" layout "$t/objects.json" "$s" >"$t/layout" || fail "$s does not read"
	grep -q "^node	node-2	192.0.2.12	10.244.2.0/24	10.244.2.0	10.244.2.250$" "$t/layout" ||
		fail "$s: node-2 record"
	grep -q "^endpoint	shop/frontend	frontend-1	node-2	10.244.2.10	tcp	8080	1$" \
		"$t/layout" || fail "$s: the endpoint pod"
	grep -q "MatrixLayout" "$t/objects.json" && fail "$s: layout handed to svcproxy"
	grep -q "\"EndpointSlice\"" "$t/objects.json" || fail "$s: objects missing"
done
"$SP_MATRIX_TOOL" layout "$t/o.json" "$EXAMPLES/elb-local-cluster-ip.json" >"$t/layout"
[ "$(grep -c '^measure' "$t/layout")" = 1 ] || fail "spec.targets does not narrow the cells"
"$SP_MATRIX_TOOL" layout "$t/o.json" "$EXAMPLES/elb-local.json" >"$t/layout"
grep -q "^balancer	shop/frontend	192.0.2.100	203.0.113.10	node-port$" "$t/layout" ||
	fail "balancer record"
grep -q "^target	shop/frontend	node-port	192.0.2.11	30080	node-1$" "$t/layout" ||
	fail "node-port target"

# A folder of files is one scenario: the objects (as the tool hands them to
# svcproxy) in one file, the layout in another.
mkdir "$t/folder"
"$SP_MATRIX_TOOL" layout "$t/folder/10-cluster.json" "$EXAMPLES/elb-local.json" >"$t/one"
cat >"$t/folder/20-layout.json" <<'JSON'
{"apiVersion": "svcproxy.io/v1alpha1", "kind": "MatrixLayout", "metadata": {"name": "elb-local"},
 "spec": {"clusterCIDR": "10.244.0.0/16", "vpcGateway": "192.0.2.1",
  "offCluster": {"address": "198.51.100.10"}, "externalIPNode": "node-1",
  "balancers": [{"service": "shop/frontend", "privateIP": "192.0.2.100",
   "publicIP": "203.0.113.10", "forward": "node-port"}]}}
JSON
"$SP_MATRIX_TOOL" layout "$t/o.json" "$t/folder" >"$t/two" 2>"$t/err" ||
	fail "a folder scenario does not read: $(cat "$t/err")"
cmp -s "$t/one" "$t/two" || fail "a folder reads differently from one file: $(diff "$t/one" "$t/two")"

# A layout error names the file, the field and the value.
sed 's/"privateIP": "192.0.2.100"/"privateIP": "192.0.2.300"/' "$EXAMPLES/elb-local.json" >"$t/bad.json"
if "$SP_MATRIX_TOOL" layout "$t/o.json" "$t/bad.json" >/dev/null 2>"$t/err"; then
	fail "a bad privateIP is accepted"
fi
grep -q "bad.json: shop/frontend: privateIP: 192.0.2.300 is not an IPv4 address" "$t/err" ||
	fail "error message: $(cat "$t/err")"

# Cells from the harness (TSV, "-" for null) to JSON, table and HTML.
printf '%s\n' \
	'elb-local	nftables	tunnel	shop/frontend	lb-private	-	other-node	node-1	192.0.2.11	true	frontend-1	192.0.2.11' \
	'elb-local	nftables	tunnel	shop/frontend	node-port	node-1	off-cluster	-	198.51.100.10	false	-	-' \
	>"$t/a.tsv"
"$SP_MATRIX_TOOL" report --text --json "$t/a.json" --html "$t/a.html" "$t/a.tsv" >"$t/a.txt" ||
	fail "report"
keys=$(sed -n '2p' "$t/a.json" | grep -o '"[a-z_]*":' | tr -d '":' | tr '\n' ' ')
[ "$keys" = "scenario mode network service target target_node client client_node client_address reachable endpoint source_seen " ] ||
	fail "JSON keys: $keys"
grep -qF '"target_node": null, "client": "other-node", "client_node": "node-1", "client_address": "192.0.2.11", "reachable": true, "endpoint": "frontend-1", "source_seen": "192.0.2.11"}' "$t/a.json" ||
	fail "first cell: $(sed -n 2p "$t/a.json")"
grep -qF '"client_node": null, "client_address": "198.51.100.10", "reachable": false, "endpoint": null, "source_seen": null}' "$t/a.json" ||
	fail "second cell: $(sed -n 3p "$t/a.json")"
grep -q 'lb-private *| frontend-1 < 192.0.2.11' "$t/a.txt" || fail "table: $(cat "$t/a.txt")"
grep -q '<td class="own"' "$t/a.html" && grep -q '<td class="no"' "$t/a.html" || fail "HTML colours"

# --diff: same run = 0; a flipped cell = 1, named; garbage = 2.
"$MATRIX" --diff "$t/a.json" "$t/a.json" >"$t/d" || fail "a run differs from itself: $(cat "$t/d")"
sed 's/"reachable": false, "endpoint": null, "source_seen": null/"reachable": true, "endpoint": "frontend-1", "source_seen": "198.51.100.10"/' \
	"$t/a.json" >"$t/b.json"
"$MATRIX" --diff "$t/a.json" "$t/b.json" >"$t/d"
[ $? = 1 ] || fail "--diff exit status for a change"
grep -q '^~ elb-local nftables tunnel shop/frontend node-port node-1 off-cluster -: not reachable -> reachable (frontend-1 saw 198.51.100.10)$' "$t/d" ||
	fail "diff text: $(cat "$t/d")"
grep -q '^1 cell changed$' "$t/d" || fail "diff count"
echo '{"cells": 3}' >"$t/c.json"
"$MATRIX" --diff "$t/a.json" "$t/c.json" >/dev/null 2>&1
[ $? = 2 ] || fail "--diff of a non-matrix file"

# The manual page passes the linter (where mandoc is installed).
if command -v mandoc >/dev/null; then
	mandoc -Tlint -W warning "$top_srcdir/man/svcproxy-matrix.1" || fail "mandoc -Tlint"
fi

[ "$FAILS" = 0 ] && echo "ok   matrix report, layout, diff and manual"
[ "$FAILS" = 0 ]
