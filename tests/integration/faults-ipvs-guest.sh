#!/bin/bash
# kill -9 in the middle of an ipvs-mode sync, inside the kernel lab (run by
# faults-ipvs.sh through tests/lab/uml-run.sh; the host kernel has no IPVS).
# The same method as faults.sh, in a node namespace of the guest:
#   1. FAULT_TRIALS (default 100) trials flip between two plans; each kills
#      `svcproxy sync --proxy-mode ipvs` with SIGKILL: two out of three at a
#      random socket call (sp-fault.so, before the call reaches the kernel or
#      right after it returned), one out of three after a random delay.
#      After the kill: nothing in the kernel that neither plan (nor a clean
#      sync between them) has, and every Service kept by both plans still
#      has a live real server. Then the normal binary syncs again, and
#      `svcproxy diff` exits 0 and the kernel state (ipvsadm -Sn, kube-ipvs0
#      addresses, policy rules, table 2153, iptables-legacy-save without
#      counters) equals the state clean syncs of that plan leave.
#      IPVS has no transaction: a killed sync may leave a state equal to
#      neither plan. That is counted, not failed: it is what the next sync
#      repairs.
#   2. A change undone after a kill (FAULT_ROLLBACK_TRIALS, default 10): the
#      old plan synced after a kill in the middle of adding virtual servers
#      must be exactly the old plan: every virtual server the killed sync
#      added carries a mark of ours (docs/ipvs.md, Sync), so none leaks.
#   3. A kernel refusal: the kernel refuses a helper-rule commit of the first
#      sync after a cleanup (the only one that writes them; sp-fault.so
#      alters its hook mask): exit 1, a clear error naming the table, that
#      table as it was, and the next sync repairs.
#
# Graceful termination (docs/ipvs.md, Sync): a sync sets a leaving TCP real
# server to weight 0 and only a later sync deletes it once idle, so after a
# change the state converges in two syncs even without a kill. A reference
# is therefore the state after the syncs that converge (diff exits 0). When
# the repair sync left drained servers (weight 0, not in the plan) and
# nothing else differs, diff must list only their deletions; one more sync
# then completes it. How often that happened is printed.
set -u
[ -n "${SP_LAB_GUEST:-}" ] || { echo "run me through faults-ipvs.sh" >&2; exit 1; }
SVCPROXY=${SVCPROXY:-$top_builddir/svcproxy}
FAULT_SO=${FAULT_SO:-$top_builddir/tests/helpers/sp-fault.so}
TRIALS=${FAULT_TRIALS:-100}
export SVCPROXY FAULT_SO TRIALS

if [ "${1:-}" != --inside ]; then
	[ -x "$SVCPROXY" ] || { echo "FAIL: $SVCPROXY not built"; exit 1; }
	[ -f "$FAULT_SO" ] || { echo "FAIL: $FAULT_SO not built"; exit 1; }
	N=sp-fi-$$-n C=sp-fi-$$-c
	trap 'ip netns del "$N" 2>/dev/null; ip netns del "$C" 2>/dev/null' EXIT
	ip netns add "$N" && ip netns add "$C" || exit 1
	ip -n "$N" link set lo up
	# The node address node ports live on (--nodeport-addresses).
	ip link add eth0 netns "$N" type veth peer name eth0 netns "$C" || exit 1
	ip -n "$N" addr add 192.168.0.10/24 dev eth0
	ip -n "$N" link set eth0 up
	ip -n "$C" link set eth0 up
	timeout 1100 ip netns exec "$N" bash "$0" --inside
	exit $?
fi

# ---- inside the node namespace from here on ----
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
fail() {
	echo "FAIL $*"
	fail=1
}

python3 - "$TMP" <<'PYEOF' || exit 1
import json, sys
# Plans a and b: six Services each, of every kind that programs something
# different (ClusterIP; NodePort; LoadBalancer with an ingress IP: capture
# rules; ClusterIP with an externalIP; ClientIP affinity; TCP and UDP ports;
# 1 to 4 endpoints). b drops s0 and s1, adds s6 (with endpoints) and s7
# (without), replaces an endpoint of s2 and the only one of s4 (by two), and
# turns s5 from externalTrafficPolicy Local without a local endpoint (filter
# rules) to Cluster. Small, because every process is slow in the lab.
def cluster(variant):
    items = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
              "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.10"}]}}]
    for i in range(8):
        if (variant == "a" and i >= 6) or (variant == "b" and i < 2):
            continue
        ports = [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]
        if i in (0, 6):
            ports.append({"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353})
        spec = {"type": "ClusterIP", "clusterIP": "10.96.1.%d" % (i + 1), "ports": ports}
        status = {}
        if i % 4 == 0:
            spec["type"] = "NodePort"
        elif i % 4 == 1:
            spec["type"] = "LoadBalancer"
            status = {"loadBalancer": {"ingress": [{"ip": "198.51.100.%d" % (i + 1)}]}}
            if i == 5 and variant == "a":
                spec["externalTrafficPolicy"] = "Local"
                spec["healthCheckNodePort"] = 32005
        elif i % 4 == 2:
            spec["externalIPs"] = ["203.0.113.%d" % (i + 1)]
        if spec["type"] != "ClusterIP":
            for k, p in enumerate(ports):
                p["nodePort"] = 30000 + 10 * i + k
        if i % 3 == 0:
            spec["sessionAffinity"] = "ClientIP"
        items.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "s%d" % i, "namespace": "default"},
                      "spec": spec, "status": status})
        if i == 7:
            continue
        addrs = ["10.244.%d.%d" % (i, e + 10) for e in range(1 + i % 4)]
        if variant == "b" and i in (2, 4):
            addrs[0] = "10.244.%d.50" % i
            if i == 4:
                addrs.append("10.244.%d.51" % i)
        items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": "s%d-1" % i, "namespace": "default",
                                   "labels": {"kubernetes.io/service-name": "s%d" % i}},
                      "addressType": "IPv4",
                      "endpoints": [{"addresses": [a], "conditions": {"ready": True},
                                     "nodeName": "node-2" if i == 5 else "node-1"}
                                    for a in addrs],
                      "ports": [{"name": p["name"], "protocol": p["protocol"],
                                 "port": p["targetPort"]} for p in ports]})
    return {"apiVersion": "v1", "kind": "List", "items": items}
for v in ("a", "b"):
    with open("%s/%s.json" % (sys.argv[1], v), "w") as f:
        json.dump(cluster(v), f)
PYEOF

svc() { # COMMAND PLAN [ARGS]
	local cmd=$1 plan=$2
	shift 2
	"$SVCPROXY" "$cmd" --proxy-mode ipvs --hostname-override node-1 \
		--nodeport-addresses 192.168.0.0/24 --cluster-cidr 10.244.0.0/16 \
		--state-dir "$TMP/ct" "$@" "$TMP/$plan.json"
}

# (No <(...) in this script: the guest has no /dev/fd.)
# The kernel state as text independent of the history that made it: IPVS
# lists real servers in the order they were added and ip lists addresses and
# same-preference rules in creation order, so those lines are sorted (each
# is self-describing); iptables-legacy-save is canonical already, its
# comments and chain counters are dropped. Every program started costs in
# the lab (iptables-legacy-save alone about half a second: it loads an
# extension per match), so the two parts can be read apart, and what the
# shell can do itself it does.
ipvs_state() { # FILE
	ipvsadm -Sn >"$1.raw"
	ip -force -o -batch - >>"$1.raw" 2>/dev/null <<-'EOF'
		addr show dev kube-ipvs0
		rule show
		route show table 2153
	EOF
	# The link's index goes: a cleanup deletes kube-ipvs0, and the next
	# sync makes it again with another index.
	sed 's/^[0-9][0-9]*: kube-ipvs0 /kube-ipvs0 /' "$1.raw" | sort >"$1"
}
helper_state() { # FILE: appended to it
	local line
	iptables-legacy-save >"$1.raw"
	while IFS= read -r line; do
		case $line in
		'#'*) continue ;;
		':'*' ['*']') line="${line% \[*} [0:0]" ;;
		esac
		printf '%s\n' "$line"
	done <"$1.raw" >>"$1"
}
state() { # FILE
	ipvs_state "$1"
	helper_state "$1"
}
same() { # FILE FILE: the same text
	local x y
	IFS= read -r -d '' x <"$1"
	IFS= read -r -d '' y <"$2"
	[ "$x" = "$y" ]
}

section() { # FILE *TABLE: that table's lines, up to its COMMIT
	awk -v t="$2" '$0 == t { on = 1 } on { print } on && /^COMMIT/ { on = 0 }' "$1"
}
ipvs_part() { sed '/^\*/,$d' "$1"; } # FILE: the IPVS and ip lines

# Sync PLAN until it converges (at most twice: graceful drain, see above).
converge() { # PLAN WHAT
	svc sync "$1" >"$TMP/out" 2>&1 || { fail "$2: sync $1: $(head -3 "$TMP/out")"; exit 1; }
	svc diff "$1" >/dev/null 2>&1 && return 0
	svc sync "$1" >"$TMP/out" 2>&1 || { fail "$2: sync $1 again: $(head -3 "$TMP/out")"; exit 1; }
	svc diff "$1" >/dev/null 2>&1 || { fail "$2: diff $1 not 0 after two syncs"; exit 1; }
}

# ---- references -------------------------------------------------------
# ref-P: P converged; ref-PQ: the state one clean sync of Q leaves after P
# (Q's objects plus P's leaving TCP real servers at weight 0); *.ipvs: their
# IPVS and ip lines; drained-PQ: the deletions diff lists for those servers.
svc cleanup a >/dev/null 2>&1
converge a "reference a"
state "$TMP/ref-a"
count_calls() { # PLAN: one clean incremental sync of PLAN, its socket calls and time
	rm -f "$TMP/count"
	local start
	start=$(date +%s%N)
	LD_PRELOAD=$FAULT_SO SP_FAULT_COUNT=$TMP/count svc sync "$1" >"$TMP/out" 2>&1 ||
		{ fail "clean sync $1: $(head -3 "$TMP/out")"; exit 1; }
	echo "$(cat "$TMP/count") $((($(date +%s%N) - start) / 1000))"
}
read -r calls_ab us_ab <<<"$(count_calls b)"
state "$TMP/ref-ab"
converge b "reference b"
state "$TMP/ref-b"
read -r calls_ba us_ba <<<"$(count_calls a)"
state "$TMP/ref-ba"
converge a "reference a, again"
state "$TMP/now"
cmp -s "$TMP/ref-a" "$TMP/now" ||
	{ fail "converged a is not repeatable"; diff "$TMP/ref-a" "$TMP/now" | head; exit 1; }
cmp -s "$TMP/ref-a" "$TMP/ref-b" && { fail "plans a and b look alike"; exit 1; }
for r in a b ab ba; do
	ipvs_part "$TMP/ref-$r" >"$TMP/ref-$r.ipvs"
done
for r in ab ba; do
	sed -n 's/^-a \(-[tu] [^ ]* -r [^ ]*\) -m -w 0$/-d \1/p' "$TMP/ref-$r" >"$TMP/drained-$r"
	[ -s "$TMP/drained-$r" ] || { fail "$r drains no real server: the plans miss a case"; exit 1; }
done
grep -q 'KUBE-IPVS-FIREWALL -' "$TMP/ref-a" || { fail "plan a has no filter rule"; exit 1; }
calls=$((calls_ab > calls_ba ? calls_ab : calls_ba))
sync_us=$((us_ab > us_ba ? us_ab : us_ba))
echo "ipvs: $(grep -c '^-A -[tu]' "$TMP/ref-a") virtual servers, $(grep -c '^-a -[tu]' "$TMP/ref-a")" \
	"real servers in plan a; an incremental sync makes $calls_ab (a->b) and $calls_ba (b->a)" \
	"socket calls, ~$((us_ab / 1000)) and ~$((us_ba / 1000)) ms wall time in the lab"

# After a kill from CUR towards WANT, in one process: prints old (NOW is
# ref-CUR), new (ref-CURWANT) or neither; writes to $TMP/stray the lines of
# NOW that no reference has, and to $TMP/dark each virtual server with a
# live real server (weight > 0) in both plans that has none in NOW.
# SUFFIX: "" when NOW has the helper chains too, .ipvs when not.
after_kill() { # CUR WANT SUFFIX
	awk -v stray="$TMP/stray" -v dark="$TMP/dark" '
	FNR == 1 { f++ }
	{ text[f] = text[f] $0 "\n" }
	f < 5 { known[$0] = 1 }
	f < 5 && $1 == "-a" && $NF != 0 { live[f, $2 " " $3] = 1 }
	# A claim (a marker rule written ahead of a captured virtual server,
	# removed once its set member is in) may outlive a kill: no lookup
	# reaches that preference, and the next sync removes it.
	f == 5 && !($0 in known) && $1 != "42153:" { print > stray }
	f == 5 && $1 == "-a" && $NF != 0 { now[$2 " " $3] = 1 }
	END {
		printf "" > stray
		printf "" > dark
		for (k in live) {
			split(k, p, SUBSEP)
			if (p[1] == 1 && live[3, p[2]] && !now[p[2]])
				print p[2] > dark
		}
		print text[5] == text[1] ? "old" : text[5] == text[2] ? "new" : "neither"
	}' "$TMP/ref-$1$3" "$TMP/ref-$1$2$3" "$TMP/ref-$2$3" "$TMP/ref-$2$1$3" "$TMP/now"
}

# Where a trial's time goes, summed per phase (printed, never asserted).
declare -A spent=()
lap_at=
lap() { # PHASE: the time since the last lap goes to PHASE
	local now=${EPOCHREALTIME/./}
	[ -n "$lap_at" ] && spent[$1]=$((${spent[$1]:-0} + now - lap_at))
	lap_at=$now
}
trial_start=$(date +%s)
killed=0 finished=0 old=0 new=0 neither=0 drain_passes=0 helper_reads=0 cur=a
for t in $(seq 1 "$TRIALS"); do
	if [ "$cur" = a ]; then want=b; else want=a; fi
	if [ $((t % 3)) = 0 ]; then
		us=$((RANDOM * 32768 % (sync_us * 5 / 4 + 1) + RANDOM % 1000))
		fault="after $us us"
		fault_env=("SP_FAULT_KILL_AFTER_US=$us")
	else
		k=$((RANDOM % calls + 1))
		when=before
		[ $((RANDOM % 2)) = 0 ] || when=after
		fault="$when socket call $k/$calls"
		fault_env=("SP_FAULT_KILL_AT=$k" "SP_FAULT_KILL_WHEN=$when")
	fi
	what="trial $t ($cur -> $want, $fault)"
	lap idle
	# A subshell, so that bash's "Killed" notice goes nowhere; no env(1):
	# each program started costs in the lab.
	(
		export LD_PRELOAD="$FAULT_SO" "${fault_env[@]}"
		"$SVCPROXY" sync --proxy-mode ipvs --hostname-override node-1 \
			--nodeport-addresses 192.168.0.0/24 --cluster-cidr 10.244.0.0/16 \
			--state-dir "$TMP/ct" "$TMP/$want.json" >"$TMP/out" 2>&1
	) 2>/dev/null
	rc=$?
	lap "killed sync"
	if [ $rc = 137 ]; then
		killed=$((killed + 1))
	elif [ $rc = 0 ]; then
		finished=$((finished + 1))
	else
		fail "$what: exit $rc: $(head -3 "$TMP/out")"
	fi
	# The helper chains are written last (docs/ipvs.md, Sync): they are
	# read when IPVS and the rules are the new plan already, and on every
	# fifth trial whatever the kill left (then also checked).
	ipvs_state "$TMP/now"
	sfx=.ipvs
	if [ $((t % 5)) = 0 ] || same "$TMP/now" "$TMP/ref-$cur$want.ipvs"; then
		helper_state "$TMP/now"
		sfx=
		helper_reads=$((helper_reads + 1))
	fi
	lap "state after the kill"
	after_kill "$cur" "$want" "$sfx" >"$TMP/verdict"
	read -r verdict <"$TMP/verdict"
	case $verdict in
	old) old=$((old + 1)) ;;
	new) new=$((new + 1)) ;;
	*) neither=$((neither + 1)) ;;
	esac
	if [ -s "$TMP/stray" ]; then
		fail "$what: after the kill the kernel holds what no reference has:"
		head -5 "$TMP/stray"
	fi
	if [ -s "$TMP/dark" ]; then
		fail "$what: after the kill a Service kept by both plans has no live real" \
			"server: $(tr '\n' ' ' <"$TMP/dark")"
	fi

	lap "checks after the kill"
	# The repair: the normal binary.
	svc sync "$want" >"$TMP/out" 2>&1 ||
		fail "$what: the sync after the kill failed: $(head -3 "$TMP/out")"
	lap "repair sync"
	svc diff "$want" >"$TMP/diff" 2>"$TMP/out"
	rc=$?
	lap "diff"
	if [ $rc = 2 ]; then
		# Only the graceful drain may be left: diff lists nothing but
		# deletions of real servers leaving this change (now at weight 0).
		if grep -vxFf "$TMP/drained-$cur$want" "$TMP/diff" >"$TMP/stray"; then
			fail "$what: after the repair sync more than drained servers differ:"
			head -5 "$TMP/stray"
		fi
		drain_passes=$((drain_passes + 1))
		svc sync "$want" >"$TMP/out" 2>&1 ||
			fail "$what: the drain-completing sync failed: $(head -3 "$TMP/out")"
		svc diff "$want" >"$TMP/diff" 2>"$TMP/out"
		rc=$?
		lap "drain sync + diff"
	fi
	[ $rc = 0 ] || fail "$what: diff exits $rc after the repair: $(head -3 "$TMP/diff" "$TMP/out")"
	state "$TMP/now"
	if ! same "$TMP/now" "$TMP/ref-$want"; then
		fail "$what: the state after the repair is not the plan"
		diff "$TMP/ref-$want" "$TMP/now" | head -8
	fi
	lap "state after the repair"
	cur=$want
	[ $fail = 0 ] || [ -n "${FAULT_KEEP_GOING:-}" ] || break
done
trial_s=$(($(date +%s) - trial_start))
echo "ipvs: $TRIALS trials: $killed killed mid-sync, $finished finished first;" \
	"then the kernel held the old plan $old times, the new one $new times," \
	"neither $neither times (no IPVS transaction); never anything no plan has," \
	"never a kept Service without a live real server (helper chains read $helper_reads" \
	"times); repaired: $([ $fail = 0 ] && echo "$TRIALS (diff 0, state = plan)" || echo NO)," \
	"$drain_passes of them with a second sync completing the graceful drain; ${trial_s} s"
echo -n "ipvs: time per trial (ms):"
for k in "killed sync" "state after the kill" "checks after the kill" "repair sync" "diff" \
	"drain sync + diff" "state after the repair" idle; do
	echo -n " $k $((${spent[$k]:-0} / 1000 / (${t:-0} > 0 ? ${t:-0} : 1)));"
done
echo

# ---- a change undone after a kill ----------------------------------------
# Ownership is a mark in the kernel (an address on kube-ipvs0, a marker
# rule, a capture set member). A sync killed after adding a virtual server
# must leave it marked, or a sync of the old plan would never remove it:
# kills drawn where the sync adds the new virtual servers, then the old
# plan synced (twice: the first drains what the killed one added), and the
# state must be exactly the old plan's.
ROLLBACKS=${FAULT_ROLLBACK_TRIALS:-10}
converge "$cur" "undone changes"
from=$cur
if [ "$from" = a ]; then to=b n=$calls_ab; else to=a n=$calls_ba; fi
for t in $(seq 1 "$ROLLBACKS"); do
	k=$((n * 2 / 5 + RANDOM % (n * 2 / 5) + 1))
	what="undone change $t ($from -> killed $to at socket call $k -> $from)"
	(
		export LD_PRELOAD="$FAULT_SO" SP_FAULT_KILL_AT=$k
		"$SVCPROXY" sync --proxy-mode ipvs --hostname-override node-1 \
			--nodeport-addresses 192.168.0.0/24 --cluster-cidr 10.244.0.0/16 \
			--state-dir "$TMP/ct" "$TMP/$to.json" >"$TMP/out" 2>&1
	) 2>/dev/null
	for _ in 1 2; do
		svc sync "$from" >"$TMP/out" 2>&1 || fail "$what: sync exits $?: $(head -3 "$TMP/out")"
	done
	svc diff "$from" >"$TMP/diff" 2>"$TMP/out" || fail "$what: diff exits $?"
	state "$TMP/now"
	same "$TMP/now" "$TMP/ref-$from" && continue
	fail "$what: not the plan (a virtual server the killed sync added is not ours any more?):"
	diff "$TMP/ref-$from" "$TMP/now" | head -8
	# Leaked virtual servers removed by hand, so that the next trial
	# starts from the plan.
	grep -vxFf "$TMP/ref-$from" "$TMP/now" |
		sed -n 's/^-A \(-[tu]\) \([^ ]*\) .*/\1 \2/p' | while read -r proto vs; do
		ipvsadm -D "$proto" "$vs"
	done
done
echo "ipvs: $ROLLBACKS kills while adding virtual servers, then the old plan synced:" \
	"each time exactly the old plan"

# ---- a kernel refusal: a helper-rule commit -------------------------------
# IPVS and the policy rules are written first (docs/ipvs.md, Sync), the
# helper chains last, one libiptc commit per table. The helper rules are
# constant (the per-Service part is set members), so a change between
# plans commits none: the refusals are of the first sync after a cleanup,
# which creates them.
if [ "$cur" = a ]; then want=b; else want=a; fi
for r in 1 2; do
	svc cleanup "$want" >/dev/null 2>&1
	state "$TMP/empty"
	env LD_PRELOAD="$FAULT_SO" SP_FAULT_IPT_REFUSE=$r "$SVCPROXY" sync --proxy-mode ipvs \
		--hostname-override node-1 --nodeport-addresses 192.168.0.0/24 \
		--cluster-cidr 10.244.0.0/16 --state-dir "$TMP/ct" "$TMP/$want.json" >"$TMP/out" 2>&1
	rc=$?
	msg=$(grep -m1 error "$TMP/out")
	state "$TMP/now"
	what="commit $r refused (nothing -> $want)"
	[ $rc = 1 ] || fail "$what: exit $rc, expected 1"
	table=$(sed -n 's/.*iptables \([a-z]*\): commit refused.*/\1/p' <<<"$msg")
	[ -n "$table" ] || fail "$what: no clear error naming the table: $msg"
	section "$TMP/now" "*$table" >"$TMP/have"
	section "$TMP/empty" "*$table" >"$TMP/want"
	cmp -s "$TMP/have" "$TMP/want" || fail "$what: the refused table $table is not as it was"
	ipvs_part "$TMP/now" >"$TMP/have"
	ipvs_part "$TMP/ref-$want" >"$TMP/want"
	cmp -s "$TMP/have" "$TMP/want" || fail "$what: IPVS and the policy rules are not the new plan"
	converge "$want" "$what: the repair"
	state "$TMP/now"
	cmp -s "$TMP/ref-$want" "$TMP/now" || fail "$what: the repair does not reach the plan"
	[ $fail = 0 ] || continue
	echo "ok   ipvs helper-rule commit $r refused: exit $rc, $msg; table $table as" \
		"it was, IPVS and the policy rules new; the next sync repairs"
done
svc cleanup a >/dev/null 2>&1
exit $fail
