#!/bin/sh
# The daemon in IPVS mode, in the kernel lab (the host kernel has no IPVS):
# boots tests/lab/uml-run.sh and runs daemon-ipvs-guest.sh inside.
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(cd "$here/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
export top_srcdir top_builddir
exec "$top_srcdir/tests/lab/uml-run.sh" -t 180 "$here/daemon-ipvs-guest.sh"
