#!/bin/sh
# CI: build the libFuzzer targets (clang, ASan + UBSan) and run each for a
# bounded time (FUZZ_SECONDS, default 30). Fails when a target crashes; the
# crashing input is left in BUILD/fuzz-build/crash-TARGET-*.
#   scripts/ci-fuzz.sh [BUILD_DIR]     (default build-fuzz, created if needed)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-fuzz}
mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$src/configure" -q
make -s -j"$(nproc)" >/dev/null
make -s fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
