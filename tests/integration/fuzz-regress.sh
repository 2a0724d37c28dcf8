#!/bin/sh
# Every fuzz target over its seed corpus and over every input that once
# crashed it (fuzz/regress/TARGET/): a crash, a sanitizer report (in the
# --enable-sanitizers build) or a hang fails the test.
set -eu
src=${top_srcdir:-$(dirname "$0")/../..}
build=${top_builddir:-.}
fail=0
for t in source config plan watch; do
	bin=$build/fuzz/replay_$t
	[ -x "$bin" ] || { echo "missing $bin"; exit 1; }
	inputs="$src/fuzz/corpus/$t"
	[ -d "$src/fuzz/regress/$t" ] && inputs="$inputs $src/fuzz/regress/$t"
	# shellcheck disable=SC2086
	if ! timeout 300 "$bin" $inputs; then
		echo "FAIL: replay_$t"
		fail=1
	fi
done
exit $fail
