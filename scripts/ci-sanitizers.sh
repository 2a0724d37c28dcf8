#!/bin/sh
# CI: a second build with AddressSanitizer + UndefinedBehaviorSanitizer
# (./configure --enable-sanitizers) and the whole `make check` in it. Any
# sanitizer report aborts the program that made it (-fno-sanitize-recover),
# so a report fails its test.
#   scripts/ci-sanitizers.sh [BUILD_DIR]   (default build-sanitizers)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-sanitizers}
mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$src/configure" -q --enable-sanitizers
# Leaks are errors too; abort (not exit) so that a report cannot be mistaken
# for a test's own failure status.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS
make -s -j"$(nproc)" >/dev/null
make -s -j"$(nproc)" check
