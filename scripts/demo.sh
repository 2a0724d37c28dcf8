#!/bin/sh
# The main job on the bundled example, in a throwaway network namespace:
# print the plan, program it, show what the kernel now holds, remove the
# namespace. Nothing outside that namespace is touched.
#   scripts/demo.sh [nftables|iptables]     (ipvs needs the kernel lab)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-nftables}
"$top/scripts/build.sh"
svcproxy="$top/build/svcproxy"
ns="sp-demo-$$"
# What sync remembers for conntrack flushing stays with the namespace too.
state=$(mktemp -d /tmp/sp-demo-state.XXXXXX)
set -- --proxy-mode "$mode" --hostname-override node-1 --cluster-cidr 10.244.0.0/16 \
	--state-dir "$state" "$top/examples/cluster"

cleanup() {
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$state"
}
trap cleanup EXIT HUP INT PIPE TERM
ip netns add "$ns"
ip -n "$ns" link set lo up

echo "== svcproxy plan ($mode): the desired state, nothing touched"
"$svcproxy" plan "$@"
echo
echo "== svcproxy sync ($mode) in namespace $ns, then the programmed state"
ip netns exec "$ns" "$svcproxy" sync --stats --show-state "$@"
echo
echo "== svcproxy diff: nothing left to change (exit 0)"
ip netns exec "$ns" "$svcproxy" diff "$@" && echo "in sync"
