#!/bin/sh
# CI: a second build with AddressSanitizer + UndefinedBehaviorSanitizer
# (./configure --enable-sanitizers) and `make check` in it. Any sanitizer
# report aborts the program that made it (-fno-sanitize-recover, and
# abort_on_error), so a report fails its test; leaks are reported too.
#
# Tests that run svcproxy inside the UML kernel lab are left out: ASan cannot
# start there ("Shadow memory range interleaves with an existing memory
# mapping": UML's address space has no room for ASan's fixed shadow range).
# They are recognised by what they use (tests/lab/uml-run.sh, the ipvs lab
# library, or the benchmark's --lab-* options), so a new lab test is left
# out without editing this list.
#   scripts/ci-sanitizers.sh [BUILD_DIR]   (default build-sanitizers)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-sanitizers}
mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$src/configure" -q --enable-sanitizers
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS
make -s -j"$(nproc)" >/dev/null
tests=""
left_out=""
for t in $(make -s -f Makefile -f - sp-print-tests <<'MK'
sp-print-tests: ; @echo $(TESTS)
MK
); do
	if [ -f "$src/$t" ] && grep -qE 'uml-run\.sh|ipvs-lib\.sh|--lab-' "$src/$t"; then
		left_out="$left_out $t"
	else
		tests="$tests $t"
	fi
done
echo "ci-sanitizers: left out (they run in the UML lab):${left_out:- none}"
make -s -j"$(nproc)" check TESTS="$tests"
