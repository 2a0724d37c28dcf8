#!/bin/bash
# svcproxy-matrix in ipvs mode, inside the kernel lab (IPVS is not in the
# host kernel), on the shipped elb-local scenario in the tunnel network: the
# cells svcproxy promises (see matrix-lib.sh) and nothing left behind.
set -u
. "$(dirname "$0")/matrix-lib.sh"
export SP_LAB_RUN=${SP_LAB_RUN:-$top_srcdir/tests/lab/uml-run.sh}
matrix_mode_test ipvs tunnel
