#!/bin/sh
# Build and run the whole test suite (unit tests, kernel tests in namespaces
# this suite creates and removes, ipvs tests in the user-mode-linux lab).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/build.sh" || exit 1
cd "$top/build"
make -j"$(nproc)" check
status=$?
# One closing line any CI reader understands, from automake's own summary.
if [ -f test-suite.log ]; then
	pass=$(sed -n 's/^# PASS: *//p' test-suite.log | head -n1)
	fail=$(sed -n 's/^# FAIL: *//p' test-suite.log | head -n1)
	xfail=$(sed -n 's/^# XFAIL: *//p' test-suite.log | head -n1)
	xpass=$(sed -n 's/^# XPASS: *//p' test-suite.log | head -n1)
	error=$(sed -n 's/^# ERROR: *//p' test-suite.log | head -n1)
	skip=$(sed -n 's/^# SKIP: *//p' test-suite.log | head -n1)
	[ $status -ne 0 ] && grep -E '^(FAIL|ERROR)' test-suite.log | head -n 20
	echo "${pass:-0} passed, $(( ${fail:-0} + ${error:-0} + ${xpass:-0} + ${xfail:-0} )) failed, ${skip:-0} skipped"
fi
exit $status
