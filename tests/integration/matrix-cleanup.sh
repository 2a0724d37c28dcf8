#!/bin/bash
# svcproxy-matrix stopped by SIGTERM in the middle of a run removes every
# namespace it made and ends every process it started in them.
set -u
. "$(dirname "$0")/matrix-lib.sh"
matrix_need_root
SP_MATRIX_HOLD=60 "$MATRIX" --quiet --modes nftables --networks tunnel \
	"$EXAMPLES/elb-local.json" >/dev/null 2>&1 &
pid=$!
for i in $(seq 100); do
	ip netns list | grep -q "^spm$pid-1-lb" && break
	sleep 0.2
done
ip netns list | grep -q "^spm$pid-1-lb" || { echo "FAIL the virtual cluster never came up"; kill $pid; exit 1; }
# Give it the time to start the pods' servers, then note what runs there.
for i in $(seq 50); do
	servers=$(ip netns pids "spm$pid-1-p1" 2>/dev/null)
	[ -n "$servers" ] && break
	sleep 0.2
done
[ -n "$servers" ] || echo "FAIL no server runs in the pod namespace"
[ -n "$servers" ] || FAILS=$((FAILS + 1))
kill -TERM "$pid"
timeout 20 tail --pid="$pid" -f /dev/null || echo "FAIL still running 20 s after SIGTERM"
wait "$pid"
rc=$?
[ "$rc" = 143 ] && echo "ok   exit status 143 after SIGTERM" ||
	{ echo "FAIL exit status $rc after SIGTERM"; FAILS=$((FAILS + 1)); }
expect_no_namespaces "$pid"
for p in $servers; do
	if kill -0 "$p" 2>/dev/null; then
		echo "FAIL process $p of the pod namespace still runs"
		FAILS=$((FAILS + 1))
	fi
done
[ "$FAILS" = 0 ]
