#!/bin/bash
# svcproxy-matrix in nftables mode on the shipped elb-local scenario, tunnel and
# vpc networks: the cells svcproxy promises (see matrix-lib.sh), measured
# with real connections, and nothing left behind.
set -u
. "$(dirname "$0")/matrix-lib.sh"
matrix_mode_test nftables
