#!/bin/sh
# kill -9 at random points of an ipvs-mode sync (issue 10), in the kernel lab
# (the host kernel has no IPVS): boots tests/lab/uml-run.sh once and runs
# faults-ipvs-guest.sh inside for all trials (it says what is checked).
# FAULT_TRIALS=N overrides the default of 100 trials, FAULT_ROLLBACK_TRIALS=N
# the 6 kills followed by the old plan; FAULT_KEEP_GOING=1 goes on after a
# failed trial.
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(cd "$here/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
export top_srcdir top_builddir
SP_LAB_ENV="FAULT_TRIALS FAULT_ROLLBACK_TRIALS FAULT_KEEP_GOING"
export SP_LAB_ENV
exec "$top_srcdir/tests/lab/uml-run.sh" -t 1200 "$here/faults-ipvs-guest.sh"
