#!/bin/sh
# iptables mode against the kernel (legacy x_tables through libiptc), in a
# network namespace this test creates:
#  - after a sync, iptables-legacy-save of filter and nat equals the plan
#    (modulo counters), so does the state read back through libiptc, and a
#    second sync commits nothing;
#  - one endpoint change rewrites only the chains it touches: one commit,
#    three chains (its KUBE-SVC, the old KUBE-SEP gone, the new one added),
#    shown with the stats and the before/after save diff;
#  - a chain deleted by hand, a hook jump deleted by hand and rules edited
#    by hand (also with a match the agent never writes) are all back after
#    the next sync (diff says so first);
#  - other people's chains and rules (also a KUBE-* chain that is not ours)
#    are never touched, neither by sync nor by cleanup;
#  - with the xtables lock held by someone else, the agent waits, then gives
#    up with a clear message and changes nothing;
#  - cleanup leaves none of the agent's chains or jumps;
#  - kill -9 in the middle of a sync, then a sync: the kernel is the plan;
#  - dual stack: ip6tables-legacy-save equals the IPv6 part of the plan.
set -eu

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
DRIVE="$top_builddir/tests/helpers/sp-ipt-drive"
[ -x "$DRIVE" ] || { echo "missing $DRIVE (make check builds it)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }

NS="sp-ipts-$$"
TMP=$(mktemp -d /tmp/sp-ipts.XXXXXX)
SRC="$top_srcdir/tests/integration/ipt-example.json"
OPTS="--node node-1 --cluster-cidr 10.244.0.0/16"
cleanup() {
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*"; exit 1; }
# The namespace is ours alone: so is the xtables lock (the agent and the
# iptables commands below honour XTABLES_LOCKFILE), so that other programs
# on the host holding /run/xtables.lock cannot make this test flaky.
XTABLES_LOCKFILE="$TMP/xtables.lock"
export XTABLES_LOCKFILE

in_ns() { timeout 60 ip netns exec "$NS" "$@"; }
ipt() { in_ns iptables-legacy "$@"; }
drive() { in_ns "$DRIVE" $OPTS "$@"; }
save() { # table -> normalised iptables-legacy-save text
	in_ns iptables-legacy-save -t "$1" | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]/[0:0]/'
}
plan_table() { # plan file, table
	sed -n "/^\*$2\$/,/^COMMIT\$/p" "$1"
}
sync_stats() { # sources... -> "messages changed" of the sync
	drive --stats sync "$@" 2> "$TMP/sync.err" > /dev/null ||
		fail "sync failed: $(cat "$TMP/sync.err")"
	sed -n 's/^stats: messages_sent \([0-9]*\) objects_changed \([0-9]*\).*/\1 \2/p' \
		"$TMP/sync.err"
}
expect_stats() { # expected "messages changed", what, sources...
	want=$1 what=$2
	shift 2
	got=$(sync_stats "$@")
	echo "$what: messages_sent/objects_changed = $got"
	[ "$got" = "$want" ] || fail "$what: expected $want, got $got"
}
expect_plan_equals_kernel() { # plan file, what (other people's rules left out)
	for t in filter nat; do
		plan_table "$1" $t > "$TMP/want.$t"
		save $t | grep -v -e OTHER -e CANARY -e 10.9.0.0 > "$TMP/have.$t"
		diff -u "$TMP/want.$t" "$TMP/have.$t" > "$TMP/delta" ||
			fail "$2: $t table differs from the plan: $(cat "$TMP/delta")"
	done
	echo "ok: $2: iptables-legacy-save equals the plan"
}

ip netns add "$NS"
drive plan "$SRC" > "$TMP/plan1" 2>/dev/null

# 1. First sync in a fresh namespace: two commits (filter, nat), then the
# kernel is the plan.
drive --stats sync "$SRC" 2> "$TMP/sync.err" || fail "first sync: $(cat "$TMP/sync.err")"
grep -q '^stats: messages_sent 2 ' "$TMP/sync.err" || fail "first sync: $(cat "$TMP/sync.err")"
expect_plan_equals_kernel "$TMP/plan1" "first sync"
expect_stats "0 0" "second sync, nothing changed" "$SRC"
drive state > "$TMP/state" 2>/dev/null || fail "state failed"
cmp -s "$TMP/plan1" "$TMP/state" || fail "state read back differs from the plan: $(diff "$TMP/plan1" "$TMP/state")"
echo "ok: the state read back prints as the plan"
drive diff "$SRC" > "$TMP/diff" 2>/dev/null || fail "diff after sync: $(cat "$TMP/diff")"

# 2. Other people's rules: a chain of theirs in each table, a KUBE-* chain
# that is not ours, rules in the hook chains.
ipt -t filter -N OTHER-FW
ipt -t filter -A OTHER-FW -s 192.0.2.99/32 -j ACCEPT
ipt -t filter -A INPUT -j OTHER-FW
ipt -t nat -N KUBE-KUBELET-CANARY
ipt -t nat -A POSTROUTING -s 10.9.0.0/16 -j MASQUERADE
save filter | grep -v KUBE- > "$TMP/foreign.filter"
save nat | grep -e OTHER -e CANARY -e 10.9.0.0 > "$TMP/foreign.nat"
expect_stats "0 0" "sync with foreign rules present" "$SRC"

# 3. One endpoint of default/web moves: only its chains change.
sed 's/"10.244.2.10"/"10.244.2.11"/' "$SRC" > "$TMP/moved.json"
drive plan "$TMP/moved.json" > "$TMP/plan2" 2>/dev/null
save nat > "$TMP/before.nat"
expect_stats "1 3" "one endpoint changed" "$TMP/moved.json"
save nat > "$TMP/after.nat"
diff "$TMP/before.nat" "$TMP/after.nat" > "$TMP/ep.diff" || true
echo "--- nat table, before/after the endpoint change:"
cat "$TMP/ep.diff"
svc=$(grep -o 'default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-[A-Z0-9]*' \
	"$TMP/plan2" | sed 's/.*-j //')
old=$(grep -o 'KUBE-SEP-[A-Z0-9]*' "$TMP/plan1" | sort -u > "$TMP/s1"; \
	grep -o 'KUBE-SEP-[A-Z0-9]*' "$TMP/plan2" | sort -u > "$TMP/s2"; comm -23 "$TMP/s1" "$TMP/s2")
new=$(comm -13 "$TMP/s1" "$TMP/s2")
[ -n "$svc" ] && [ -n "$old" ] && [ -n "$new" ] || fail "cannot name the changed chains"
grep '^[<>]' "$TMP/ep.diff" | sed 's/^[<>] //; s/^-A //; s/^://; s/ .*//' | sort -u > "$TMP/touched"
printf '%s\n' "$svc" "$old" "$new" | sort -u > "$TMP/expected"
cmp -s "$TMP/touched" "$TMP/expected" ||
	fail "the change touched other chains: $(tr '\n' ' ' < "$TMP/touched")"
echo "ok: only $svc, $old (gone) and $new (new) changed"
cmp -s "$TMP/foreign.nat" "$(save nat | grep -e OTHER -e CANARY -e 10.9.0.0 > "$TMP/f2"; echo "$TMP/f2")" ||
	fail "foreign nat rules changed"

# 4. Drift repair: a chain deleted by hand, a hook jump deleted, a rule
# edited. diff reports it (exit 1), sync repairs it.
sticky=$(grep -o 'default/sticky cluster IP" -m tcp --dport 9000 -j KUBE-SVC-[A-Z0-9]*' \
	"$TMP/plan2" | sed 's/.*-j //')
sep=$(grep "^-A $sticky " "$TMP/plan2" | grep -o 'KUBE-SEP-[A-Z0-9]*$' | head -n 1)
ipt -t nat -F "$sticky"
ipt -t nat -F "$sep"
ipt -t nat -X "$sep"
ipt -t nat -D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
ipt -t nat -R KUBE-MARK-MASQ 1 -j MARK --or-mark 0x8000
ipt -t filter -D FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
# A match the agent never writes (a source port) inside one of its rules.
web_sep=$(grep -- '-j DNAT --to-destination 10.244.1.10:8080$' "$TMP/plan2" | awk '{print $2}')
ipt -t nat -R "$web_sep" 2 -p tcp -m comment --comment "default/web:http" -m tcp --sport 1234 \
	-j DNAT --to-destination 10.244.1.10:8080
rc=0
drive diff "$TMP/moved.json" > "$TMP/diff" 2>/dev/null || rc=$?
[ "$rc" = 1 ] || fail "diff after drift exited $rc: $(cat "$TMP/diff")"
grep -q "^:$sep " "$TMP/diff" || fail "diff does not name the deleted chain"
grep -q '^-I PREROUTING 1 ' "$TMP/diff" || fail "diff does not restore the hook jump"
grep -q "^:$web_sep " "$TMP/diff" || fail "diff does not rewrite the chain with a foreign match"
expect_stats "2 6" "drift repair" "$TMP/moved.json"
expect_plan_equals_kernel "$TMP/plan2" "after drift repair"
[ "$(save filter | grep -v KUBE-)" = "$(cat "$TMP/foreign.filter")" ] ||
	fail "foreign filter rules changed"

# The diff is iptables-restore --noflush input: applied by hand, it leaves
# nothing for the next diff (here with a stale chain of an owned prefix, a
# missing hook jump and an emptied chain).
ipt -t nat -N KUBE-SVC-STALESTALESTALE
ipt -t nat -A KUBE-SVC-STALESTALESTALE -j KUBE-MARK-MASQ
ipt -t nat -D OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
ipt -t nat -F "$svc"
rc=0
drive diff "$TMP/moved.json" > "$TMP/diff" 2>/dev/null || rc=$?
[ "$rc" = 1 ] || fail "diff after the second drift exited $rc"
grep -q '^-X KUBE-SVC-STALESTALESTALE$' "$TMP/diff" || fail "diff keeps the stale chain"
in_ns iptables-legacy-restore --noflush < "$TMP/diff" ||
	fail "iptables-legacy-restore refused the diff: $(cat "$TMP/diff")"
drive diff "$TMP/moved.json" > "$TMP/diff" 2>/dev/null || fail "diff applied by hand left: $(cat "$TMP/diff")"
expect_plan_equals_kernel "$TMP/plan2" "diff applied with iptables-legacy-restore"

# 5. The xtables lock held by someone else: wait, give up, change nothing.
: > "$XTABLES_LOCKFILE"
flock "$XTABLES_LOCKFILE" sleep 5 &
holder=$!
sleep 0.3
rc=0
drive --lock-timeout-ms 300 cleanup 2> "$TMP/lock.err" || rc=$?
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
[ "$rc" = 2 ] || fail "cleanup with the lock held exited $rc"
grep -q "xtables lock $XTABLES_LOCKFILE: still held" "$TMP/lock.err" ||
	fail "no clear lock message: $(cat "$TMP/lock.err")"
expect_plan_equals_kernel "$TMP/plan2" "lock held: nothing changed"

# 6. Cleanup: none of ours left, all of theirs still there; twice is fine.
drive cleanup 2> "$TMP/err" || fail "cleanup: $(cat "$TMP/err")"
drive cleanup 2> "$TMP/err" || fail "second cleanup: $(cat "$TMP/err")"
for t in filter nat; do
	save $t > "$TMP/left.$t"
	if grep -E 'KUBE-(SERVICES|NODEPORTS|EXTERNAL|FORWARD|PROXY-FIREWALL|POSTROUTING|MARK-MASQ|SVC-|SVL-|EXT-|FW-|SEP-)' \
		"$TMP/left.$t"; then
		fail "cleanup left the agent's rules in $t"
	fi
done
[ "$(grep -v KUBE- "$TMP/left.filter")" = "$(cat "$TMP/foreign.filter")" ] ||
	fail "cleanup touched foreign filter rules"
[ "$(grep -e OTHER -e CANARY -e 10.9.0.0 "$TMP/left.nat")" = "$(cat "$TMP/foreign.nat")" ] ||
	fail "cleanup touched foreign nat rules"
echo "ok: cleanup removed everything of ours and nothing else"

# 7. kill -9 in the middle of a sync (4,000 services), right after its
# filter commit, then a new sync: the kernel is exactly the plan, and the
# xtables lock died with the process.
python3 - "$TMP/many.json" <<'PY'
import json, sys
items = []
for i in range(4000):
    ip = "10.97.%d.%d" % (i // 256, i % 256)
    items.append({"apiVersion": "v1", "kind": "Service",
                  "metadata": {"namespace": "many", "name": "s%d" % i},
                  "spec": {"clusterIP": ip, "clusterIPs": [ip],
                           "ports": [{"protocol": "TCP", "port": 80}]}})
    items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"namespace": "many", "name": "s%d-a" % i,
                               "labels": {"kubernetes.io/service-name": "s%d" % i}},
                  "addressType": "IPv4",
                  "endpoints": [{"addresses": ["10.%d.%d.%d" % (245 + i // 32768, (i // 128) % 256, 2 * (i % 128) + k)],
                                 "conditions": {"ready": True}} for k in range(2)],
                  "ports": [{"protocol": "TCP", "port": 80}]})
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(sys.argv[1], "w"))
PY
drive plan "$SRC" "$TMP/many.json" > "$TMP/many.plan" 2>/dev/null
ip netns exec "$NS" "$DRIVE" $OPTS sync "$SRC" "$TMP/many.json" > /dev/null 2>&1 &
victim=$!
# Kill it as soon as the filter commit shows: nat (12,000 chains) is then
# still being built, so the kernel is left half-programmed.
for _ in $(seq 500); do
	in_ns iptables-legacy-save -t filter 2>/dev/null | grep -q '^:KUBE-SERVICES' && break
	sleep 0.01
done
kill -9 "$victim" 2>/dev/null || true
rc=0
wait "$victim" 2>/dev/null || rc=$?
[ "$rc" = 137 ] || fail "the sync finished before the kill (exit $rc): nothing was interrupted"
if save nat | grep -q '^:KUBE-SERVICES'; then
	echo "note: killed after both commits"
else
	echo "ok: killed between the filter and the nat commit"
fi
expect_stats_any() { sync_stats "$@" > /dev/null; }
expect_stats_any "$SRC" "$TMP/many.json"
expect_plan_equals_kernel "$TMP/many.plan" "sync after kill -9 mid-sync"
expect_stats "0 0" "and a further sync has nothing to do" "$SRC" "$TMP/many.json"
drive cleanup 2> "$TMP/err" || fail "cleanup after the big plan: $(cat "$TMP/err")"

# 8. Dual stack: the ip6tables tables too, each equal to its part of the
# plan; cleanup empties both families.
DS="$top_srcdir/tests/integration/ipt-dualstack.json"
OPTS="$OPTS --cluster-cidr fd01::/48"
drive plan "$DS" > "$TMP/ds.plan" 2>/dev/null
sed '/^# ip6tables$/,$d' "$TMP/ds.plan" > "$TMP/ds4.plan"
sed '1,/^# ip6tables$/d' "$TMP/ds.plan" > "$TMP/ds6.plan"
expect_stats "4 59" "dual-stack sync" "$DS"
expect_plan_equals_kernel "$TMP/ds4.plan" "dual stack, IPv4"
for t in filter nat; do
	plan_table "$TMP/ds6.plan" $t > "$TMP/want6.$t"
	in_ns ip6tables-legacy-save -t $t | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]/[0:0]/' \
		> "$TMP/have6.$t"
	diff -u "$TMP/want6.$t" "$TMP/have6.$t" > "$TMP/delta" ||
		fail "dual stack: ip6tables $t differs from the plan: $(cat "$TMP/delta")"
done
echo "ok: dual stack, IPv6: ip6tables-legacy-save equals the plan"
expect_stats "0 0" "dual-stack second sync" "$DS"
# diff's IPv6 part is ip6tables-restore --noflush input that repairs drift.
sep6=$(grep -o 'KUBE-SEP-[A-Z0-9]* -p tcp .*\[fd01::1:10\]:8080$' "$TMP/ds6.plan" | awk '{print $1}')
in_ns ip6tables-legacy -t nat -F "$sep6"
rc=0
drive diff "$DS" > "$TMP/ds.diff" 2>/dev/null || rc=$?
[ "$rc" = 1 ] || fail "dual-stack diff exited $rc"
sed -n '/^# ip6tables$/,$p' "$TMP/ds.diff" > "$TMP/ds6.diff"
grep -q "^:$sep6 " "$TMP/ds6.diff" || fail "dual-stack diff misses $sep6: $(cat "$TMP/ds.diff")"
in_ns ip6tables-legacy-restore --noflush < "$TMP/ds6.diff" ||
	fail "ip6tables-legacy-restore refused the diff: $(cat "$TMP/ds6.diff")"
drive diff "$DS" > "$TMP/ds.diff" 2>/dev/null || fail "diff applied by hand did not repair: $(cat "$TMP/ds.diff")"
echo "ok: dual stack: diff is restore input that repairs the drift"
drive cleanup 2> "$TMP/err" || fail "dual-stack cleanup: $(cat "$TMP/err")"
if in_ns ip6tables-legacy-save | grep -q 'KUBE-'; then
	fail "cleanup left ip6tables rules"
fi
echo "ok: cleanup emptied both families"
echo "PASS"
