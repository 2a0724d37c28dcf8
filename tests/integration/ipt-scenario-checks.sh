# iptables-specific checks, sourced by scenarios.sh (SP_EXTRA_CHECKS) on its
# running virtual cluster after the shared scenarios, in bash: the plan
# equals the kernel, a resync sends nothing, one endpoint change rewrites
# only its chains, hand-made drift is repaired (with traffic to prove it),
# cleanup leaves nothing of ours.

ipt_save() { # TABLE -> iptables-legacy-save of node1, counters zeroed
	sp_in node1 iptables-legacy-save -t "$1" | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]/[0:0]/'
}

ipt_stats() { # -> "messages_sent=N objects_changed=N" of one sync
	sp_svcproxy sync --stats 2>"$SP_TMP/sync.err" |
		sed -n 's/^stats: .*\(messages_sent=[0-9]*\) \(objects_changed=[0-9]*\).*/\1 \2/p'
}

ipt_plan_equals_kernel() { # DESC
	local t
	sp_svcproxy plan > "$SP_TMP/ipt.plan" 2>/dev/null
	for t in filter nat; do
		sed -n "/^\*$t\$/,/^COMMIT\$/p" "$SP_TMP/ipt.plan" > "$SP_TMP/ipt.want"
		ipt_save $t > "$SP_TMP/ipt.have"
		if ! diff -u "$SP_TMP/ipt.want" "$SP_TMP/ipt.have" > "$SP_TMP/ipt.delta"; then
			sp_fail "$1: $t differs from svcproxy plan: $(head -n 20 "$SP_TMP/ipt.delta")"
			return
		fi
	done
	sp_ok "$1"
}

ipt_chain_of() { # COMMENT-PREFIX -> the chain KUBE-SERVICES jumps to for it
	grep -o "\"$1 cluster IP\" -m [a-z]* --dport [0-9]* -j KUBE-SV[CL]-[A-Z0-9]*" \
		"$SP_TMP/ipt.plan" | head -n 1 | sed 's/.*-j //'
}

ipt_plan_equals_kernel "iptables: iptables-legacy-save equals svcproxy plan"

got=$(ipt_stats)
if [ "$got" = "messages_sent=0 objects_changed=0" ]; then
	sp_ok "iptables: a resync with nothing changed commits nothing"
else
	sp_fail "iptables: resync with nothing changed: $got $(cat "$SP_TMP/sync.err")"
fi

# One endpoint change: np loses pr. One commit (nat), its KUBE-SVC chain
# rewritten and pr's KUBE-SEP deleted; the save diff names nothing else.
np_svc=$(ipt_chain_of default/np:http)
ipt_save nat > "$SP_TMP/ipt.before"
sp_slice np "$TCP" "$(sp_ep $PA_IP node-1)"
got=$(ipt_stats)
ipt_save nat > "$SP_TMP/ipt.after"
touched=$(diff "$SP_TMP/ipt.before" "$SP_TMP/ipt.after" | grep '^[<>]' |
	sed 's/^[<>] //; s/^-A //; s/^://; s/ .*//' | sort -u | tr '\n' ' ')
case "$got|$touched" in
"messages_sent=1 objects_changed=2|"*)
	if [ "$(echo $touched | wc -w)" = 2 ] && echo " $touched" | grep -q " $np_svc " &&
		echo " $touched" | grep -q " KUBE-SEP-"; then
		sp_ok "iptables: one endpoint change: one commit, chains $touched"
	else
		sp_fail "iptables: one endpoint change touched [$touched], np is $np_svc"
	fi
	;;
*) sp_fail "iptables: one endpoint change: $got, touched [$touched]" ;;
esac
sp_expect "iptables: after the change, NodePort answered by the remaining endpoint" \
	"$(sp_connect c1 tcp $NODE1_C1_IP 30080 --count 10)" "pa"

# Drift: someone empties web's service chain and deletes its hook jump.
web_svc=$(ipt_chain_of default/web:http)
sp_in node1 iptables-legacy -t nat -F "$web_svc"
sp_in node1 iptables-legacy -t nat -D PREROUTING -m comment \
	--comment "kubernetes service portals" -j KUBE-SERVICES
out=$(sp_connect pc tcp 10.96.0.10 80 --count 3 --wait 1)
if [ "$(sp_names "$out")" = "" ]; then
	sp_ok "iptables: drift made by hand breaks the service (control)"
else
	sp_fail "iptables: the hand-made drift did not break the service: [$(sp_names "$out")]"
fi
sp_sync
sp_expect "iptables: the next sync repairs the drift" \
	"$(sp_connect pc tcp 10.96.0.10 80 --count 30)" "pa pb pr"
ipt_plan_equals_kernel "iptables: after the repair the kernel is the plan again"

# Cleanup: nothing of ours left in either table.
sp_svcproxy cleanup > /dev/null 2>"$SP_TMP/cleanup.err"
left=$( (ipt_save filter; ipt_save nat) | grep -c 'KUBE-' || true)
if [ "$left" = 0 ]; then
	sp_ok "iptables: cleanup leaves no KUBE- chain or rule"
else
	sp_fail "iptables: cleanup left $left KUBE- lines $(cat "$SP_TMP/cleanup.err")"
fi
