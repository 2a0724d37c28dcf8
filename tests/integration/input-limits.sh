#!/bin/bash
# The source limits can be set from the command line: a file over a small
# --max-input-bytes, --max-json-depth or --max-json-items is rejected whole
# with the limit named, while the same file passes under the defaults.
# `plan` touches no kernel state, so no namespace is needed.
set -u
srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${top_builddir:-.}
SVCPROXY=${SVCPROXY:-$builddir/svcproxy}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sp-limits.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

python3 "$srcdir/tests/integration/hostile-input.py" "$TMP/t" >/dev/null || exit 1
good=$TMP/t/good.json
size=$(stat -c %s "$good")
fail=0

plan() { # EXPECTED-STATUS EXPECTED-TEXT FLAGS...
	local want=$1 text=$2 rc
	shift 2
	timeout 30 "$SVCPROXY" plan --proxy-mode nftables --hostname-override node-1 "$@" \
		>"$TMP/out" 2>"$TMP/err"
	rc=$?
	if [ "$rc" != "$want" ] || { [ -n "$text" ] && ! grep -qF -- "$text" "$TMP/err"; }; then
		echo "FAIL: plan $*: status $rc (want $want), messages:"
		sed 's/^/    /' "$TMP/err"
		[ -n "$text" ] && echo "    (expected a message containing '$text')"
		fail=1
	else
		echo "ok   plan $*: status $rc${text:+, '$text'}"
	fi
}

plan 0 "" "$good"
plan 1 "$size bytes, over the max_file_bytes limit of $((size - 1))" \
	--max-input-bytes $((size - 1)) "$good"
plan 0 "" --max-input-bytes "$size" "$good"
plan 1 "nested deeper than 3 levels (the max_depth limit)" --max-json-depth 3 "$good"
plan 1 "more than 2 entries in one array or object (the max_items limit)" \
	--max-json-items 2 "$good"
plan 2 "--max-input-bytes: 0 is not a whole number from 1 up" --max-input-bytes 0 "$good"
plan 2 "--max-json-depth: ten is not a whole number from 1 up" --max-json-depth ten "$good"
# Nothing of a rejected file is planned: the good objects are absent.
plan 1 "max_file_bytes" --max-input-bytes 100 "$good"
if grep -q "10.96.0.10" "$TMP/out"; then
	echo "FAIL: a rejected file was planned"
	fail=1
fi
exit $fail
