#!/bin/sh
# Build the libFuzzer targets with clang (ASan + UBSan + libFuzzer) in their
# own configured tree, then run each for a bounded time. Called by `make fuzz`
# (mk/fuzz.am) and scripts/ci-fuzz.sh.
#
#   fuzz.sh SRCDIR BUILDDIR SECONDS "MODULE LIBS" "EXTERNAL LIBS" [TARGET...]
#
# Exit 0 when every target ran its time without a crash; 1 otherwise, with the
# crashing input left in BUILDDIR/fuzz-build/crash-TARGET-* (turn it into a
# regression file under fuzz/regress/TARGET/).
set -eu
src=$1 build=$2 seconds=$3 libs=$4 extlibs=$5
shift 5
targets=${*:-source config plan watch}
CLANG=${CLANG:-clang}
dir=$build/fuzz-build
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
cflags="-g -O1 -fno-omit-frame-pointer $san"

mkdir -p "$dir"
if [ ! -f "$dir/Makefile" ]; then
	(cd "$dir" && "$src/configure" -q CC="$CLANG" --disable-werror \
		CFLAGS="$cflags -fsanitize=fuzzer-no-link" LDFLAGS="$san")
fi
# shellcheck disable=SC2086 # word splitting of the library lists is meant
make -s -C "$dir" $libs >"$dir/build.log" 2>&1 || { cat "$dir/build.log"; exit 1; }

archives=""
for l in $libs; do archives="$archives $dir/$l"; done
pkgcflags=$(pkg-config --cflags libcjson libcurl libmnl libnftnl libnl-genl-3.0)
status=0
for t in $targets; do
	bin=$dir/fuzz_$t
	# shellcheck disable=SC2086
	"$CLANG" $cflags -fsanitize=fuzzer -std=gnu11 -D_GNU_SOURCE -DPACKAGE_VERSION='"fuzz"' \
		-I"$src/include" -I"$src/src/daemon" $pkgcflags \
		"$src/fuzz/fuzz_$t.c" "$src/src/reconcile/backend.c" $archives $extlibs \
		-o "$bin"
	work=$dir/corpus-$t
	mkdir -p "$work"
	echo "fuzz_$t: ${seconds}s"
	if ! (cd "$dir" && "$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 \
		-dict="$src/fuzz/json.dict" -artifact_prefix="$dir/crash-$t-" \
		-print_final_stats=1 "$work" "$src/fuzz/corpus/$t" >"$dir/fuzz_$t.log" 2>&1); then
		echo "fuzz_$t: FAILED, see $dir/fuzz_$t.log and $dir/crash-$t-*"
		grep -E 'ERROR|SUMMARY|Test unit written' "$dir/fuzz_$t.log" | head -5
		status=1
		continue
	fi
	grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$dir/fuzz_$t.log" |
		tr '\n' ' '
	grep -E 'cov: [0-9]+' "$dir/fuzz_$t.log" | tail -1 | sed -E 's/.*(cov: [0-9]+ ft: [0-9]+ corp: [^ ]+).*/\1/'
done
exit $status
