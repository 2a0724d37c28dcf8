#!/bin/sh
# The shared real-traffic scenarios (scenarios.sh) in ipvs mode. The host
# kernel has no IPVS: they run inside the kernel lab (tests/lab/uml-run.sh).
#
# Two shared checks assert behaviour that IPVS mode does not have by design
# (upstream kube-proxy's IPVS mode behaves the same; docs/ipvs.md):
# - a pod using a Local LB IP while this node HAS a local endpoint gets the
#   local endpoints only (the cluster-wide fallback is for nodes without one;
#   the iptables/nftables short-circuit to every endpoint does not exist in
#   IPVS), which ipvs-lab-guest.sh checks instead;
# - ClientIP affinity lasts while the IPVS persistence template controls a
#   connection, and a closed TCP connection stays in TIME_WAIT for IPVS's
#   fixed 2 minutes, so a 1-second affinity cannot be seen expiring within
#   the scenario's seconds.
# Those two are reported as such; any other "not ok" fails the test.
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
export top_srcdir top_builddir
if [ -z "${SP_LAB_GUEST:-}" ]; then
	exec "$top_srcdir/tests/lab/uml-run.sh" -t 300 "$0"
fi
out=$(bash "$top_srcdir/tests/integration/scenarios.sh" ipvs)
bad=0
while IFS= read -r line; do
	case $line in
	"not ok - LB IP, policy Local, from a pod: short-circuit to every endpoint: answered by [pa], wanted [pa pr]" | \
		"not ok - session affinity never expired: always "*)
		echo "ok - (ipvs semantics, see docs/ipvs.md) ${line#not ok - }" ;;
	"not ok"*)
		echo "$line"
		bad=1 ;;
	*" scenario check(s) failed") ;;
	*) echo "$line" ;;
	esac
done <<EOF
$out
EOF
case $out in *"ok - ClusterIP from a pod"*) ;; *) bad=1 ;; esac
exit $bad
