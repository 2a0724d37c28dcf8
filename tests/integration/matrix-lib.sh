# Shared by the matrix-*.sh tests (sourced): where the built pieces are, and
# assertions on single cells of a svcproxy-matrix JSON result.
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
MATRIX=${MATRIX:-$top_builddir/svcproxy-matrix}
export SVCPROXY=${SVCPROXY:-$top_builddir/svcproxy}
export SP_MATRIX_TOOL=${SP_MATRIX_TOOL:-$top_builddir/src/matrix/svcproxy-matrix-tool}
if [ -z "${SP_WHOAMI:-}" ] && [ -x "$top_builddir/tests/helpers/sp-whoami" ]; then
	export SP_WHOAMI=$top_builddir/tests/helpers/sp-whoami
fi
EXAMPLES=$top_srcdir/examples/matrix
FAILS=0

matrix_need_root() {
	[ "$(id -u)" = 0 ] || { echo "needs root for network namespaces"; exit 77; }
	for f in "$MATRIX" "$SVCPROXY" "$SP_MATRIX_TOOL"; do
		[ -x "$f" ] || { echo "missing $f (build it first)"; exit 99; }
	done
}

# The JSON line of one cell. The writer puts one cell per line with the
# keys in a fixed order, so a cell is found by its identifying prefix.
cell_line() { # JSON SCENARIO MODE NETWORK SERVICE TARGET TARGET_NODE CLIENT CLIENT_NODE
	local tn=null cn=null
	[ "$7" = - ] || tn="\"$7\""
	[ "$9" = - ] || cn="\"$9\""
	grep -F "\"scenario\": \"$2\", \"mode\": \"$3\", \"network\": \"$4\", \"service\": \"$5\", \"target\": \"$6\", \"target_node\": $tn, \"client\": \"$8\", \"client_node\": $cn," "$1"
}

field_of() { # LINE KEY -> value as written (quoted string, true/false, null)
	sed -n "s/.*\"$2\": \(\"[^\"]*\"\|true\|false\|null\).*/\1/p" <<<"$1"
}

# expect JSON MODE NETWORK TARGET TARGET_NODE CLIENT CLIENT_NODE REACHABLE
#        [ENDPOINT [SOURCE_SEEN]]   (for scenario $SCENARIO, service $SERVICE;
# SOURCE_SEEN "client" means the client's own address)
expect() {
	local json=$1 mode=$2 net=$3 target=$4 tnode=$5 client=$6 cnode=$7 reach=$8
	local ep=${9:-} src=${10:-} line what at_t= at_c=
	[ "$tnode" = - ] || at_t=@$tnode
	[ "$cnode" = - ] || at_c=@$cnode
	what="$SCENARIO $mode/$net $target$at_t from $client$at_c"
	line=$(cell_line "$json" "$SCENARIO" "$mode" "$net" "$SERVICE" "$target" "$tnode" \
		"$client" "$cnode")
	if [ -z "$line" ]; then
		echo "FAIL $what: no such cell"
		FAILS=$((FAILS + 1))
		return
	fi
	if [ "$(field_of "$line" reachable)" != "$reach" ]; then
		echo "FAIL $what: reachable $(field_of "$line" reachable), expected $reach"
		FAILS=$((FAILS + 1))
		return
	fi
	if [ -n "$ep" ] && [ "$(field_of "$line" endpoint)" != "\"$ep\"" ]; then
		echo "FAIL $what: endpoint $(field_of "$line" endpoint), expected $ep"
		FAILS=$((FAILS + 1))
		return
	fi
	if [ "$src" = client ]; then
		src=$(field_of "$line" client_address)
		src=${src//\"/}
	fi
	if [ -n "$src" ] && [ "$(field_of "$line" source_seen)" != "\"$src\"" ]; then
		echo "FAIL $what: source_seen $(field_of "$line" source_seen), expected $src"
		FAILS=$((FAILS + 1))
		return
	fi
	echo "ok   $what: reachable $reach${ep:+ by $ep}${src:+ seeing $src}"
}

# What svcproxy promises for the shipped elb-local scenario (one endpoint,
# frontend-1 on node-2; externalTrafficPolicy Local; dedicated balancer),
# in every mode and network: in-cluster clients reach the private LB
# address (whether the pod then sees the client's own address is the mode's
# business: ipvs masquerades where it falls back to other nodes' endpoints),
# off-cluster clients reach node ports only where an endpoint runs, with
# their own source address, and pods reach the ClusterIP without NAT.
expect_elb_local() { # JSON MODE NETWORK
	local j=$1 m=$2 n=$3 c
	SCENARIO=elb-local SERVICE=shop/frontend
	for c in node-1 node-2; do
		expect "$j" "$m" "$n" lb-private - "$( [ $c = node-2 ] && echo same-node || echo other-node)" "$c" true frontend-1
		expect "$j" "$m" "$n" lb-private - "$( [ $c = node-2 ] && echo same-node-pod || echo other-node-pod)" "$c" true frontend-1
		expect "$j" "$m" "$n" cluster-ip - "$( [ $c = node-2 ] && echo same-node-pod || echo other-node-pod)" "$c" true frontend-1 client
	done
	expect "$j" "$m" "$n" lb-private - off-cluster - true frontend-1 198.51.100.10
	expect "$j" "$m" "$n" lb-public - off-cluster - true frontend-1 198.51.100.10
	expect "$j" "$m" "$n" node-port node-2 off-cluster - true frontend-1 198.51.100.10
	expect "$j" "$m" "$n" node-port node-1 off-cluster - false
	expect "$j" "$m" "$n" external-ip - off-cluster - false
	expect "$j" "$m" "$n" cluster-ip - off-cluster - false
	expect "$j" "$m" "$n" node-port node-1 same-node node-1 true frontend-1
}

# No namespace of that run may be left behind.
expect_no_namespaces() { # PID
	local left
	left=$(ip netns list | grep -c "^spm$1-")
	if [ "$left" != 0 ]; then
		echo "FAIL $left namespaces spm$1-* left behind"
		FAILS=$((FAILS + 1))
	else
		echo "ok   no namespace spm$1-* left"
	fi
}

matrix_mode_test() { # MODE [NETWORKS]
	local rc pid
	matrix_need_root
	out=$(mktemp -d "${TMPDIR:-/tmp}/matrix-test.XXXXXX")
	trap 'rm -rf "$out"' EXIT
	"$MATRIX" --quiet --modes "$1" --networks "${2:-tunnel,vpc}" --json "$out/m.json" \
		--html "$out/m.html" "$EXAMPLES/elb-local.json" >"$out/table.txt" &
	pid=$!
	wait "$pid"
	rc=$?
	cat "$out/table.txt"
	[ "$rc" = 0 ] || { echo "FAIL svcproxy-matrix exited $rc"; exit 1; }
	for net in ${2:-tunnel vpc}; do
		expect_elb_local "$out/m.json" "$1" "$net"
	done
	grep -q 'class="no"' "$out/m.html" && grep -q 'class="own"' "$out/m.html" ||
		{ echo "FAIL the HTML page lacks coloured cells"; FAILS=$((FAILS + 1)); }
	expect_no_namespaces "$pid"
	[ "$FAILS" = 0 ]
}
