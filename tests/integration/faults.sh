#!/bin/bash
# Faults during a sync, in nftables and in iptables mode, in a network
# namespace of its own:
#   1. kill -9 at random points of a sync (FAULT_TRIALS per mode, default
#      100): two out of three at a random socket call of the sync (before it
#      reaches the kernel or right after it returned, via the LD_PRELOAD
#      helper sp-fault.so), one out of three after a random delay (a POSIX
#      timer, microsecond granularity). After each kill the kernel holds one
#      of the two plans whole (nftables: the table, one transaction;
#      iptables: each table, as x_tables commits a table at a time, like
#      iptables-restore), and the next sync converges
#      exactly to the plan: `svcproxy diff` exits 0 and the kernel state
#      equals the state a clean sync of that plan programs.
#   2. kernel refusals: the kernel refuses the nf_tables batch (a command in
#      it made unknown), or a libiptc commit (an altered hook mask), or the
#      xtables lock stays held by another program: a clear error, exit 1,
#      and the previous state whole.
#   3. under the daemon (`svcproxy run`), a watched source that is half
#      written, garbage or removed: the last good state stays programmed;
#      a file of invalid Services is reported; the directory coming back
#      with a new plan is programmed.
set -u
srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${top_builddir:-.}
SVCPROXY=${SVCPROXY:-$(cd "$builddir" && pwd)/svcproxy}
FAULT_SO=${FAULT_SO:-$(cd "$builddir" && pwd)/tests/helpers/sp-fault.so}
TRIALS=${FAULT_TRIALS:-100}
export SVCPROXY FAULT_SO TRIALS srcdir

if [ "${1:-}" != --inside ]; then
	NS=sp-faults-$$-n
	ip netns add "$NS" || exit 1
	trap 'ip netns del "$NS" 2>/dev/null' EXIT
	trap 'exit 130' INT TERM
	ip -n "$NS" link set lo up
	timeout 900 ip netns exec "$NS" bash "$0" --inside
	exit $?
fi

# ---- inside the namespace from here on ----
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sp-faults.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
# The preloaded helper is not instrumented: let an ASan build run with it.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
# The xtables lock of this test only: the host's lock file is left alone.
export XTABLES_LOCKFILE=$TMP/xtables.lock
fail=0

python3 - "$TMP" <<'PYEOF' || exit 1
import json, sys
# Plans a and b: 20 Services (NodePorts, affinity, 1 to 4 endpoints); b
# drops three, adds three without endpoints and changes half the endpoints.
def cluster(variant):
    items = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
              "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]}}]
    for i in range(23):
        if (variant == "a" and i >= 20) or (variant == "b" and i < 3):
            continue
        port = {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}
        spec = {"type": "ClusterIP", "clusterIP": "10.96.1.%d" % (i + 1), "ports": [port]}
        if i % 4 == 0:
            spec["type"] = "NodePort"
            port["nodePort"] = 30000 + i
        if i % 5 == 0:
            spec["sessionAffinity"] = "ClientIP"
        items.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "s%d" % i, "namespace": "default"}, "spec": spec})
        if i >= 20:
            continue
        eps = 1 + (i % 3) + (1 if variant == "b" and i % 2 else 0)
        items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": "s%d-1" % i, "namespace": "default",
                                   "labels": {"kubernetes.io/service-name": "s%d" % i}},
                      "addressType": "IPv4",
                      "endpoints": [{"addresses": ["10.244.%d.%d" % (i, e + 10)],
                                     "conditions": {"ready": True}, "nodeName": "node-1"}
                                    for e in range(eps)],
                      "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]})
    return {"apiVersion": "v1", "kind": "List", "items": items}
for v in ("a", "b"):
    with open("%s/%s.json" % (sys.argv[1], v), "w") as f:
        json.dump(cluster(v), f)
PYEOF

# The kernel state as text that does not depend on the history that made
# it: nft lists chains, sets and map elements in creation order, so the
# table's blocks are sorted, and the elements of each set or map; the rules
# of a chain keep their order. iptables-legacy-save is already canonical
# (chains sorted by name).
nft_canon() {
	nft list ruleset | python3 -c '
import re, sys
out, block, blocks, elems = [], None, [], None
for line in sys.stdin.read().split("\n"):
    if elems is not None:
        elems.append(line)
        if line.count("}") > line.count("{"):
            text = " ".join(l.strip() for l in elems)
            text = text[text.index("{") + 1:text.rindex("}")]
            block.append("\t\telements = " + ", ".join(sorted(e.strip() for e in text.split(","))))
            elems = None
        continue
    if block is None:
        if re.match(r"^\t(chain|set|map|flowtable) ", line):
            block = [line]
        elif line.startswith("}"):
            out.extend(sorted("\n".join(b) for b in blocks))
            blocks = []
            out.append(line)
        elif line.strip():
            out.append(line)
        continue
    if re.match(r"^\t\telements = \{", line) and line.count("{") > line.count("}"):
        elems = [line]
        continue
    if re.match(r"^\t\telements = \{", line):
        text = line[line.index("{") + 1:line.rindex("}")]
        line = "\t\telements = " + ", ".join(sorted(e.strip() for e in text.split(",")))
    block.append(line)
    if line == "\t}":
        blocks.append(block)
        block = None
print("\n".join(out))'
}

state() { # MODE
	if [ "$1" = nftables ]; then
		nft_canon
	else
		iptables-legacy-save | grep -v '^#'
		ip6tables-legacy-save | grep -v '^#'
	fi
}

svc() { # MODE COMMAND PLAN [ARGS]
	local mode=$1 cmd=$2 plan=$3
	shift 3
	"$SVCPROXY" "$cmd" --proxy-mode "$mode" --hostname-override node-1 \
		--state-dir "$TMP/ct" "$@" "$TMP/$plan.json"
}

# x_tables has no transaction across tables (iptables-restore commits each
# table on its own, and so does libiptc): after a kill each table must be
# whole, from either plan. NOW REF1 REF2
tables_whole() {
	local t
	[ "$mode" = iptables ] || return 1
	for t in $(grep '^\*' "$1"); do
		section "$1" "$t" | cmp -s - <(section "$2" "$t") ||
			section "$1" "$t" | cmp -s - <(section "$3" "$t") || return 1
	done
}

section() { # FILE *TABLE: that table's lines, up to its COMMIT
	awk -v t="$2" '$0 == t { on = 1 } on { print } on && /^COMMIT/ { on = 0 }' "$1"
}

quiet() { grep -v "iptables command is the nf_tables variant" "$@"; }

trial_fail() {
	echo "FAIL $*"
	fail=1
}

for mode in nftables iptables; do
	svc "$mode" cleanup a >/dev/null 2>&1
	# Reference states, and how many socket calls an incremental sync makes.
	rm -f "$TMP/count"
	svc "$mode" sync a >/dev/null 2>&1 || { echo "FAIL $mode: clean sync a"; exit 1; }
	state "$mode" >"$TMP/ref-a"
	start=$(date +%s%N)
	LD_PRELOAD=$FAULT_SO SP_FAULT_COUNT=$TMP/count svc "$mode" sync b >/dev/null 2>&1 ||
		{ echo "FAIL $mode: clean sync b"; exit 1; }
	sync_us=$((($(date +%s%N) - start) / 1000))
	state "$mode" >"$TMP/ref-b"
	LD_PRELOAD=$FAULT_SO SP_FAULT_COUNT=$TMP/count svc "$mode" sync a >/dev/null 2>&1
	calls=$(sort -n "$TMP/count" | tail -1)
	cmp -s "$TMP/ref-a" "$TMP/ref-b" && { echo "FAIL $mode: plans a and b look alike"; exit 1; }
	cmp -s "$TMP/ref-a" <(state "$mode") || { echo "FAIL $mode: sync a is not repeatable"; exit 1; }
	echo "$mode: $calls socket calls in an incremental sync, ~${sync_us} us wall time"

	killed=0 finished=0 old=0 new=0 mixed=0 cur=a
	for t in $(seq 1 "$TRIALS"); do
		if [ "$cur" = a ]; then want=b; else want=a; fi
		if [ $((t % 3)) = 0 ]; then
			fault="after $((RANDOM * 32768 % (sync_us * 5 / 4 + 1) + RANDOM % 1000)) us"
			fault_env=(SP_FAULT_KILL_AFTER_US=$(echo "$fault" | cut -d' ' -f2))
		else
			k=$((RANDOM % calls + 1))
			when=$([ $((RANDOM % 2)) = 0 ] && echo before || echo after)
			fault="$when socket call $k/$calls"
			fault_env=(SP_FAULT_KILL_AT=$k SP_FAULT_KILL_WHEN=$when)
		fi
		# (a subshell, so that bash's "Killed" notice goes nowhere)
		(
			env LD_PRELOAD="$FAULT_SO" "${fault_env[@]}" \
				"$SVCPROXY" sync --proxy-mode "$mode" --hostname-override node-1 \
				--state-dir "$TMP/ct" "$TMP/$want.json" >"$TMP/out" 2>&1
			exit $?
		) 2>/dev/null
		rc=$?
		state "$mode" >"$TMP/now"
		if [ $rc = 137 ]; then
			killed=$((killed + 1))
		elif [ $rc = 0 ]; then
			finished=$((finished + 1))
		else
			trial_fail "$mode trial $t ($fault): exit $rc: $(quiet "$TMP/out" | head -3)"
		fi
		if cmp -s "$TMP/now" "$TMP/ref-$cur"; then
			old=$((old + 1))
		elif cmp -s "$TMP/now" "$TMP/ref-$want"; then
			new=$((new + 1))
		elif tables_whole "$TMP/now" "$TMP/ref-$cur" "$TMP/ref-$want"; then
			mixed=$((mixed + 1))
		else
			trial_fail "$mode trial $t ($fault): after the kill a table holds neither plan whole:"
			diff "$TMP/ref-$want" "$TMP/now" | head -8
		fi
		if ! svc "$mode" sync "$want" >"$TMP/out" 2>&1; then
			trial_fail "$mode trial $t ($fault): the sync after the kill failed: $(quiet "$TMP/out" | head -3)"
		fi
		svc "$mode" diff "$want" >"$TMP/out" 2>&1
		rc=$?
		[ $rc = 0 ] || trial_fail "$mode trial $t ($fault): diff exits $rc after the repair sync"
		if ! state "$mode" | cmp -s - "$TMP/ref-$want"; then
			trial_fail "$mode trial $t ($fault): the state after the repair sync is not the plan"
			state "$mode" | diff "$TMP/ref-$want" - | head -8
		fi
		cur=$want
	done
	echo "$mode: $TRIALS trials: $killed killed mid-sync, $finished finished first;" \
		"then the kernel held the old plan whole $old times, the new one $new times," \
		"each table whole but from different plans $mixed times; all repaired:" \
		"$([ $fail = 0 ] && echo yes || echo NO)"

	# ---- kernel refusals: a clear error and the previous state whole ----
	if [ "$cur" = a ]; then want=b; else want=a; fi
	if [ "$mode" = nftables ]; then
		refusals="SP_FAULT_NFT_REFUSE=1"
	else
		refusals="SP_FAULT_IPT_REFUSE=1 SP_FAULT_IPT_REFUSE=2"
	fi
	for r in $refusals; do
		svc "$mode" sync "$cur" >/dev/null 2>&1
		env LD_PRELOAD="$FAULT_SO" "$r" "$SVCPROXY" sync --proxy-mode "$mode" \
			--hostname-override node-1 --state-dir "$TMP/ct" "$TMP/$want.json" \
			>"$TMP/out" 2>&1
		rc=$?
		msg=$(quiet "$TMP/out" | grep error | head -1)
		state "$mode" >"$TMP/now"
		[ $rc = 1 ] || trial_fail "$mode $r: exit $rc, expected 1"
		grep -qiE "invalid argument|not supported|refused" <<<"$msg" ||
			trial_fail "$mode $r: no clear error: $msg"
		if [ "$mode" = nftables ]; then
			# One batch: the whole change is refused.
			cmp -s "$TMP/now" "$TMP/ref-$cur" ||
				trial_fail "$mode $r: the previous state is not whole after the refusal"
		else
			# One commit per table: the refused table (named in the
			# message) keeps its previous state whole, the others
			# are whole too.
			refused=$(sed -n 's/.*iptables \([a-z]*\): commit refused.*/\1/p' <<<"$msg")
			[ -n "$refused" ] || trial_fail "$mode $r: the message does not name the table"
			section "$TMP/now" "*$refused" | cmp -s - <(section "$TMP/ref-$cur" "*$refused") ||
				trial_fail "$mode $r: the refused table $refused is not left as it was"
			tables_whole "$TMP/now" "$TMP/ref-$cur" "$TMP/ref-$want" ||
				trial_fail "$mode $r: a table is not whole after the refusal"
		fi
		echo "ok   $mode kernel refusal ($r): $msg"
		svc "$mode" sync "$want" >/dev/null 2>&1
		svc "$mode" diff "$want" >/dev/null 2>&1 ||
			trial_fail "$mode $r: the next sync does not repair"
		svc "$mode" sync "$cur" >/dev/null 2>&1
	done
	if [ "$mode" = iptables ]; then
		# Another program holds the xtables lock past the agent's timeout.
		flock "$XTABLES_LOCKFILE" sleep 30 &
		holder=$!
		sleep 0.2
		svc "$mode" sync "$want" >"$TMP/out" 2>&1
		rc=$?
		kill "$holder" 2>/dev/null
		wait "$holder" 2>/dev/null
		msg=$(quiet "$TMP/out" | grep error | head -1)
		[ $rc = 1 ] || trial_fail "$mode stuck xtables lock: exit $rc, expected 1"
		grep -q "still held by another program" <<<"$msg" ||
			trial_fail "$mode stuck xtables lock: no clear error: $msg"
		state "$mode" | cmp -s - "$TMP/ref-$cur" ||
			trial_fail "$mode stuck xtables lock: the previous state is not whole"
		[ $rc = 1 ] && echo "ok   $mode stuck xtables lock: $msg"
		svc "$mode" diff "$cur" >/dev/null 2>&1 ||
			trial_fail "$mode stuck xtables lock: diff does not exit 0"
	fi
	svc "$mode" cleanup a >/dev/null 2>&1
done

# ---- a source that lies, stalls or vanishes under the daemon ----
# The daemon watches a directory holding plan a. Each fault below must leave
# plan a programmed (diff against a saved copy exits 0) and the daemon
# running; then a good change is still programmed.
if "$SVCPROXY" run --help >/dev/null 2>&1; then
	mkdir -p "$TMP/src" "$TMP/saved"
	cp "$TMP/a.json" "$TMP/src/cluster.json"
	cp "$TMP/a.json" "$TMP/saved/cluster.json"
	timeout --preserve-status 300 "$SVCPROXY" run --proxy-mode nftables \
		--hostname-override node-1 --state-dir "$TMP/ct" --min-sync-period 100ms \
		--healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 \
		"$TMP/src" >"$TMP/daemon.log" 2>&1 &
	daemon=$!
	settle() { # DIR: wait up to 10 s for DIR to be in force
		for _ in $(seq 100); do
			"$SVCPROXY" diff --proxy-mode nftables --hostname-override node-1 \
				"$1" >/dev/null 2>&1 && return 0
			sleep 0.1
		done
		return 1
	}
	settle "$TMP/saved" || trial_fail "daemon: plan a never programmed"
	source_fault() { # WHAT: after the fault was made, plan a must stay
		sleep 1.5
		if ! kill -0 "$daemon" 2>/dev/null; then
			trial_fail "daemon: died after: $1"
		elif ! "$SVCPROXY" diff --proxy-mode nftables --hostname-override node-1 \
			"$TMP/saved" >/dev/null 2>&1; then
			trial_fail "daemon: the last good state is not in force after: $1"
		else
			echo "ok   daemon keeps the last good state: $1"
		fi
	}
	head -c 3000 "$TMP/a.json" >"$TMP/src/cluster.json"
	source_fault "the file half written (stalled writer)"
	echo '{"apiVersion": "v1", "kind": "List", "items": [' >"$TMP/src/cluster.json"
	printf '\xff\xfe garbage \x00' >>"$TMP/src/cluster.json"
	source_fault "the file replaced by garbage"
	# A file whose Services are all invalid is read as such: each Service
	# is skipped with its error, as `svcproxy sync` does (issue 2), so
	# their rules go. What must hold: the daemon says so and keeps going.
	sed 's/"port": 80/"port": 70000/g' "$TMP/a.json" >"$TMP/src/cluster.json"
	sleep 1.5
	if ! kill -0 "$daemon" 2>/dev/null; then
		trial_fail "daemon: died on a file of invalid Services"
	elif ! grep -q '70000 is not a port' "$TMP/daemon.log"; then
		trial_fail "daemon: a file of invalid Services is not reported"
	else
		echo "ok   daemon reports a file of invalid Services: $(grep -m1 -o \
			'[^ ]*: Service default/s[0-9]*: spec.ports\[0\].port: 70000 is not a port' \
			"$TMP/daemon.log")"
	fi
	cp "$TMP/a.json" "$TMP/src/cluster.json"
	settle "$TMP/saved" || trial_fail "daemon: plan a not programmed again"
	# Vanished at once (moved away, as an unmounted volume): deleting the
	# files one by one would be a legitimate removal of their objects.
	mv "$TMP/src" "$TMP/src.gone"
	# The objects of a vanished directory stay in force, whatever the
	# daemon reads meanwhile. Watched for 3 s.
	kept=yes
	for _ in $(seq 15); do
		sleep 0.2
		"$SVCPROXY" diff --proxy-mode nftables --hostname-override node-1 \
			"$TMP/saved" >/dev/null 2>&1 || kept=no
	done
	if ! kill -0 "$daemon" 2>/dev/null; then
		trial_fail "daemon: died when the source directory vanished"
	elif [ $kept = yes ]; then
		echo "ok   daemon keeps the last good state: the source directory vanished"
	else
		trial_fail "daemon: the source directory vanished: its objects were dropped"
	fi
	grep -q 'gone; keeping its last good content' "$TMP/daemon.log" ||
		trial_fail "daemon: the vanished directory is not reported"
	# It comes back with a new plan: the daemon watches it again (from
	# the parent directory) and programs it.
	mkdir -p "$TMP/src"
	cp "$TMP/b.json" "$TMP/src/cluster.json"
	if settle "$TMP/src"; then
		echo "ok   daemon: the directory came back with a new plan: programmed"
	else
		trial_fail "daemon: the source directory came back with plan b: not programmed"
		[ -n "${FAULT_VERBOSE:-}" ] && tail -5 "$TMP/daemon.log"
	fi
	# And it is watched again: a change in it is programmed.
	cp "$TMP/a.json" "$TMP/src/cluster.json.tmp"
	mv "$TMP/src/cluster.json.tmp" "$TMP/src/cluster.json"
	settle "$TMP/saved" ||
		trial_fail "daemon: a change in the directory that came back is not programmed"
	kill -TERM "$daemon"
	wait "$daemon" || trial_fail "daemon: SIGTERM exit status $?"
	svc nftables cleanup a >/dev/null 2>&1
else
	trial_fail "svcproxy run is not available"
fi
exit $fail
