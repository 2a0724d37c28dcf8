#!/bin/bash
# Hostile input against a programmed node: a table of hostile files
# (hostile-input.py), each synced together with the unchanged good set, in
# nftables and in iptables mode, inside a network namespace of its own.
# For every case:
#   - sync exits with the status the table gives (1: something skipped or a
#     file rejected; 0 only for input kube-proxy ignores silently),
#   - its messages contain the case's own error text (file, object, field),
#   - the kernel state (the namespace's whole nft ruleset, or
#     iptables-legacy-save + ip6tables-legacy-save) is byte-for-byte what the
#     good set alone programmed before.
# A case marked xfail in the table is a known defect: it is reported, and
# the test fails if it starts to pass (so the table is updated with the fix).
set -u
srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${top_builddir:-.}
SVCPROXY=${SVCPROXY:-$builddir/svcproxy}
NS=sp-hostile-$$-n
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sp-hostile.XXXXXX")
cleanup() {
	ip netns del "$NS" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS" || exit 1
ip -n "$NS" link set lo up
n=$(python3 "$srcdir/tests/integration/hostile-input.py" "$TMP/t") || exit 1
echo "hostile-input: $n cases"
[ "$n" -ge 40 ] || { echo "FAIL: fewer than 40 cases"; exit 1; }

in_ns() { timeout 120 ip netns exec "$NS" "$@"; }

kernel_state() {
	case $1 in
	nftables) in_ns nft list ruleset ;;
	iptables)
		# The generation comments carry a time stamp: everything else
		# (tables, chains, counters, rules) is compared.
		in_ns iptables-legacy-save | grep -v '^#'
		in_ns ip6tables-legacy-save | grep -v '^#'
		;;
	esac
}

sync_with() { # MODE FILE...
	local mode=$1
	shift
	in_ns "$SVCPROXY" sync --proxy-mode "$mode" --hostname-override node-1 \
		--state-dir "$TMP/ct" "$@"
}

fail=0 passed=0 xfailed=0
for mode in nftables iptables; do
	if ! sync_with "$mode" "$TMP/t/good.json" >"$TMP/out" 2>&1; then
		echo "FAIL: $mode: the good set does not sync"
		cat "$TMP/out"
		exit 1
	fi
	before=$(kernel_state "$mode")
	for want in 10.96.0.10 10.96.0.20 30080 203.0.113.10 10.244.1.13; do
		if ! grep -qF "$want" <<<"$before"; then
			echo "FAIL: $mode: $want of the good set is not in the kernel:"
			echo "$before"
			exit 1
		fi
	done
	for dir in "$TMP"/t/cases/*/; do
		name=$(basename "$dir")
		expect=$(cat "$dir/expect")
		want=$(cat "$dir/status")
		# The host's iptables warning is the same for every case.
		sync_with "$mode" "$TMP/t/good.json" "$dir/input.json" >"$TMP/out" 2>&1
		rc=$?
		out=$(grep -v "iptables command is the nf_tables variant" "$TMP/out")
		after=$(kernel_state "$mode")
		why=""
		[ "$rc" = "$want" ] || why="exit status $rc, expected $want"
		if [ -n "$expect" ] && ! grep -qF -- "$expect" <<<"$out"; then
			why="${why:+$why; }no message containing '$expect'"
		fi
		if [ "$after" != "$before" ]; then
			why="${why:+$why; }kernel state changed: $(diff <(echo "$before") \
				<(echo "$after") | head -6 | tr '\n' ' ')"
		fi
		if [ -f "$dir/xfail" ]; then
			if [ -n "$why" ]; then
				echo "XFAIL $mode $name: $(cat "$dir/xfail")"
				xfailed=$((xfailed + 1))
			else
				echo "XPASS $mode $name: fixed? update the table"
				fail=1
			fi
		elif [ -n "$why" ]; then
			echo "FAIL $mode $name: $why"
			echo "$out" | head -5 | cut -c1-300 | sed 's/^/    /'
			fail=1
		else
			passed=$((passed + 1))
			echo "ok   $mode $name: $(grep -F -- "$expect" <<<"$out" | head -1 | cut -c1-160)"
		fi
		# Whatever a case did, the next one starts from the good set.
		[ "$after" = "$before" ] || sync_with "$mode" "$TMP/t/good.json" >/dev/null 2>&1
	done
	in_ns "$SVCPROXY" cleanup --proxy-mode "$mode" --state-dir "$TMP/ct" >/dev/null 2>&1
done
echo "hostile-input: $passed passed, $xfailed known defects (xfail), status $fail"
exit $fail
