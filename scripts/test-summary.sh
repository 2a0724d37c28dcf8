#!/bin/sh
# One closing line any CI reader understands, "N passed, N failed, N
# skipped", summed over the automake test-suite.log files given.
pass=0 fail=0 skip=0
for log in "$@"; do
	[ -f "$log" ] || { fail=$((fail + 1)); continue; }
	field() { sed -n "s/^# $1: *//p" "$log" | head -n1; }
	p=$(field PASS) f=$(field FAIL) e=$(field ERROR) xp=$(field XPASS) s=$(field SKIP)
	pass=$((pass + ${p:-0}))
	fail=$((fail + ${f:-0} + ${e:-0} + ${xp:-0}))
	skip=$((skip + ${s:-0}))
	grep -E '^(FAIL|ERROR|XPASS):' "$log" | head -n 20
done
echo "$pass passed, $fail failed, $skip skipped"
