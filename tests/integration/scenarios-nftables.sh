#!/bin/sh
# The shared real-traffic scenarios (scenarios.sh) in nftables mode, then the
# nftables-specific checks (nft-scenario-checks.sh) on the same cluster.
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
SP_EXTRA_CHECKS="$top_srcdir/tests/integration/nft-scenario-checks.sh"
export top_srcdir SP_EXTRA_CHECKS
exec bash "$top_srcdir/tests/integration/scenarios.sh" nftables
