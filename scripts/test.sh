#!/bin/sh
# Build and run the whole test suite (unit tests, kernel tests in namespaces
# this suite creates and removes, ipvs tests in the user-mode-linux lab).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/build.sh" || exit 1
cd "$top/build"
make -j"$(nproc)" check
status=$?
"$top/scripts/test-summary.sh" test-suite.log
exit $status
