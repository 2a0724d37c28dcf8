#!/bin/sh
# The shared real-traffic scenarios (scenarios.sh) in ipvs mode. The host
# kernel has no IPVS: they run inside the kernel lab (tests/lab/uml-run.sh).
#
# The checks are mode-aware where IPVS differs by design (docs/ipvs.md).
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
export top_srcdir top_builddir
if [ -z "${SP_LAB_GUEST:-}" ]; then
	exec "$top_srcdir/tests/lab/uml-run.sh" -t 300 "$0"
fi
bash "$top_srcdir/tests/integration/scenarios.sh" ipvs
