#!/bin/sh
# The shared real-traffic scenarios (scenarios.sh) in nftables mode.
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
export top_srcdir
exec bash "$top_srcdir/tests/integration/scenarios.sh" nftables
