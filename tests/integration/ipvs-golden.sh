#!/bin/bash
# `svcproxy plan --proxy-mode ipvs` output is deterministic, equals the
# reviewed golden file, and every part of it is accepted by its real tool:
# ipvsadm -R (read back equal with ipvsadm-save -n), ip, and
# iptables-legacy-restore (read back equal with iptables-legacy-save). The
# tools run inside the kernel lab: the host kernel has no IPVS.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(cd "$here/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
export top_srcdir top_builddir
drive=$top_builddir/tests/helpers/sp-ipvs-drive
fixture=$top_srcdir/tests/golden/ipvs-cluster.json
golden=$top_srcdir/tests/golden/ipvs-plan.txt
fail() { echo "FAIL: $*" >&2; exit 1; }

section() { # section FILE HEADER: the lines after "# HEADER" up to the next "# "
	awk -v h="# $2" '$0 == h {on = 1; next} /^# / {on = 0} on' "$1"
}

if [ -z "${SP_LAB_GUEST:-}" ]; then
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	plan() { "$drive" --node node-a --cluster-cidr 10.244.0.0/16 --cluster-cidr fd00:244::/56 \
		plan "$fixture" 2>/dev/null; }
	plan >"$work/plan1"
	plan >"$work/plan2"
	cmp -s "$work/plan1" "$work/plan2" || fail "plan output is not deterministic"
	if [ -n "${SP_UPDATE_GOLDEN:-}" ]; then
		cp "$work/plan1" "$golden"
	fi
	diff -u "$golden" "$work/plan1" >&2 || fail "plan differs from $golden"
	"$drive" --node node-a --cluster-cidr 10.244.0.0/16 json "$fixture" 2>/dev/null |
		grep -q '"virtualServers": \[' || fail "no JSON plan"
	echo "ok: plan is deterministic and equals the golden file"
	cp "$work/plan1" "$top_builddir/ipvs-golden.plan"
	"$top_srcdir/tests/lab/uml-run.sh" -t 120 "$0" "$top_builddir/ipvs-golden.plan"
	rc=$?
	rm -f "$top_builddir/ipvs-golden.plan"
	exit $rc
fi

# ---- inside the lab ----
plan=$1
work=$(mktemp -d)
ns=sp-golden-$$
trap 'ip netns del $ns 2>/dev/null; rm -rf "$work"' EXIT
ip netns add $ns || fail "netns"
nsx() { ip netns exec $ns "$@"; }
nsx ip link set lo up
nsx ip link add eth0 type dummy
nsx ip addr add 192.168.0.10/24 dev eth0
nsx ip addr add fd00:1::10/64 dev eth0 nodad
nsx ip link set eth0 up

section "$plan" "ipvsadm-save -n" >"$work/ipvs"
nsx ipvsadm -R <"$work/ipvs" || fail "ipvsadm -R refused the plan"
nsx ipvsadm-save -n | sort >"$work/ipvs-back"
sort "$work/ipvs" | diff -u - "$work/ipvs-back" >&2 || fail "ipvsadm-save -n differs from the plan"
echo "ok: ipvsadm -R accepts the plan; ipvsadm-save -n reads it back unchanged"

nsx ip link add kube-ipvs0 type dummy
{ section "$plan" "ip: kube-ipvs0 addresses"; section "$plan" "ip: capture rules"; } >"$work/ip"
while read -r cmd; do
	nsx $cmd || fail "refused: $cmd"
done <"$work/ip"
echo "ok: ip accepts the kube-ipvs0 addresses and the capture rules"

section "$plan" "ipset restore" >"$work/ipset"
nsx ipset restore <"$work/ipset" || fail "ipset restore refused the plan"
# ipset save adds hashsize, bucketsize and initval to each create line.
nsx ipset save | sed -E 's/ hashsize [0-9]+//; s/ bucketsize [0-9]+//; s/ initval 0x[0-9a-f]+//' |
	sort >"$work/ipset-back"
sort "$work/ipset" | diff -u - "$work/ipset-back" >&2 || fail "ipset save differs from the plan"
echo "ok: ipset restore accepts the sets; ipset save reads them back unchanged"

section "$plan" "iptables-save" >"$work/ipt"
nsx iptables-legacy-restore --test <"$work/ipt" || fail "iptables-legacy-restore --test refused the plan"
nsx iptables-legacy-restore <"$work/ipt" || fail "iptables-legacy-restore refused the plan"
{ nsx iptables-legacy-save -t nat; nsx iptables-legacy-save -t filter
	nsx iptables-legacy-save -t mangle; } |
	grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]/[0:0]/' >"$work/ipt-back"
diff -u "$work/ipt" "$work/ipt-back" >&2 || fail "iptables-legacy-save differs from the plan"
echo "ok: iptables-legacy-restore accepts the helper rules; iptables-legacy-save reads them back unchanged"

section "$plan" "ip6tables-save" >"$work/ip6t"
[ -s "$work/ip6t" ] || fail "no IPv6 helper rules in the plan"
nsx ip6tables-legacy-restore <"$work/ip6t" || fail "ip6tables-legacy-restore refused the plan"
{ nsx ip6tables-legacy-save -t nat; nsx ip6tables-legacy-save -t filter
	nsx ip6tables-legacy-save -t mangle; } |
	grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]/[0:0]/' >"$work/ip6t-back"
diff -u "$work/ip6t" "$work/ip6t-back" >&2 || fail "ip6tables-legacy-save differs from the plan"
echo "ok: ip6tables-legacy-restore accepts the IPv6 helper rules and reads them back unchanged"

# ---- the agent programs the same plan (fresh namespace) ----
ip netns del $ns
ip netns add $ns
nsx ip link set lo up
nsx ip link add eth0 type dummy
nsx ip addr add 192.168.0.10/24 dev eth0
nsx ip addr add fd00:1::10/64 dev eth0 nodad
nsx ip link set eth0 up
drive=$top_builddir/tests/helpers/sp-ipvs-drive
opts="--node node-a --cluster-cidr 10.244.0.0/16 --cluster-cidr fd00:244::/56"
nsx "$drive" $opts sync "$top_srcdir/tests/golden/ipvs-cluster.json" 2>"$work/sync.err" ||
	{ cat "$work/sync.err" >&2; fail "sync of the golden cluster"; }
nsx "$drive" $opts state "$top_srcdir/tests/golden/ipvs-cluster.json" >"$work/state" 2>/dev/null
for part in "ipvsadm-save -n" "ip: kube-ipvs0 addresses" "ipset restore" "iptables-save" \
	"ip6tables-save"; do
	section "$plan" "$part" | sort >"$work/want"
	section "$work/state" "$part" | sort >"$work/have"
	diff -u "$work/want" "$work/have" >&2 || fail "programmed state differs from the plan: $part"
done
section "$plan" "ip: capture rules" | grep ' rule ' >"$work/want"
section "$work/state" "ip: capture rules" | grep ' rule ' >"$work/have"
diff -u "$work/want" "$work/have" >&2 || fail "programmed capture rules differ from the plan"
echo "ok: sync programs exactly the golden plan (IPv4, IPv6, SCTP), read back by the agent"
# The capture policy rules are constant: one fwmark rule per family.
[ "$(nsx ip rule | grep -c '^2153:')" = 1 ] || fail "IPv4: not exactly one capture rule"
nsx ip rule | grep -q 'fwmark 0x2000/0x2000 lookup 2153' || fail "IPv4: no fwmark capture rule"
nsx ip -6 rule | grep -q '^2153:.*fwmark 0x2000/0x2000 lookup 2153' || fail "IPv6: no fwmark rule"
[ "$(nsx ip -6 rule | grep -c '^2153:')" = 1 ] || fail "IPv6: not exactly one capture rule"
echo "ok: one fwmark policy rule per family captures every captured port"
