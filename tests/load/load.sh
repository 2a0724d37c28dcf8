#!/bin/sh
# Load test of the daemon (not part of `make check`: it takes minutes):
# 10,000 Services through a live file source, 100 endpoint changes per
# second for 60 s, against `svcproxy run` in nftables mode, in a network
# namespace of its own. Prints the figures and exits 1 if a change was not
# programmed, if network programming p99 was 1 s or more, or if the daemon's
# memory kept growing.
#   tests/load/load.sh [BUILD_DIR] [load.py options, e.g. --services 1000
#                      --rate 100 --seconds 60 --min-sync-period 1s]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
[ $# -gt 0 ] && shift
ns=sp-load-$$-n
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
ip -n "$ns" link set lo up
timeout 1800 ip netns exec "$ns" python3 "$here/load.py" --svcproxy "$build/svcproxy" "$@"
