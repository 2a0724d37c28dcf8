#!/bin/sh
# Runs inside the kernel lab (tests/lab/uml-run.sh): the benchmark driver for
# the modes the host kernel lacks (ipvs). bench.py --in-guest writes JSON only.
exec python3 "$(dirname "$0")/bench.py" "$@"
