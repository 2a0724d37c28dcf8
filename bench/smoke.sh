#!/bin/sh
# `make check`: the benchmark at a small size (100 Services x 10 endpoints,
# data path with 10 Services), every mode (ipvs in the kernel lab), with its
# assertions: every load and connection succeeds, a no-op sync sends nothing
# to the kernel (one-shot sync and daemon), an endpoint change sends something.
# No timing is asserted. Results go to a temporary file, not bench/results.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(cd "$here/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
export top_srcdir top_builddir
if [ "$(id -u)" != 0 ]; then
	echo "bench smoke: needs root for network namespaces"
	exit 77
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/sp-bench-smoke.XXXXXX")
trap 'rm -rf "$out"' EXIT
python3 "$top_srcdir/bench/bench.py" --build "$top_builddir" --smoke \
	--sizes 100 --datapath-sizes 10 --kube-proxy-sizes 100 --connects 300 --noop-wait 1 --repeat 1 \
	--lab-sizes 20 --lab-timeout 150 --lab-mem 384M --json "$out/smoke.json"
