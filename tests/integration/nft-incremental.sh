#!/bin/bash
# nftables mode, the daemon's partial sync (full=false): only the Service
# ports that changed since the previous plan are lowered and sent. After
# each step of a sequence of changes (endpoint address, endpoint count up
# and down with its shared pick chain, local endpoints and
# the shared hairpin map, Services removed and added, an affinity timeout,
# a Service claiming another's external IP and node port, the IPv6 table
# vanishing and coming back) the backend's own diff, which reads the table
# back from the kernel, must find nothing to change.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
PERF=${PERF:-$top_builddir/tests/helpers/sp-nft-perf}

[ "$(id -u)" = 0 ] || { echo "needs root for network namespaces"; exit 77; }
[ -x "$PERF" ] || { echo "missing $PERF"; exit 99; }
command -v python3 >/dev/null || { echo "python3 missing"; exit 99; }

. "$top_srcdir/tests/lib/cluster.sh"
sp_add_ns node1
D=$SP_TMP/steps
mkdir -p "$D"

python3 - "$top_srcdir/tests/data/nft/golden-cluster.json" "$D" <<'PY'
import copy, json, sys
base = json.load(open(sys.argv[1]))
out = sys.argv[2]
steps = []

def find(d, kind, name):
    return next(i for i in d["items"] if i["kind"] == kind and i["metadata"]["name"] == name)

def step(name, d):
    path = "%s/%02d-%s.json" % (out, len(steps), name)
    json.dump(d, open(path, "w"))
    steps.append(path)

def drop(d, kind, name):
    d["items"] = [i for i in d["items"]
                  if not (i["kind"] == kind and i["metadata"]["name"] == name)]

step("base", base)
d = copy.deepcopy(base)
find(d, "EndpointSlice", "web-a")["endpoints"][1]["addresses"] = ["10.244.2.55"]
step("endpoint", d)
# web's endpoint count goes up to four (a count no other port has) and back
# down: its chain's goto changes, the shared pick chain for four endpoints
# is created, then deleted again.
eps = find(d, "EndpointSlice", "web-a")["endpoints"]
for a in ("10.244.2.56", "10.244.2.57"):
    extra = copy.deepcopy(eps[1])
    extra["addresses"] = [a]
    eps.append(extra)
step("endpoint-count-up", d)
del eps[2:]
step("endpoint-count-down", d)
# web's local endpoint moves away; a new one becomes local.
eps = find(d, "EndpointSlice", "web-a")["endpoints"]
eps[0]["nodeName"] = "node-2"
eps[1]["nodeName"] = "node-1"
step("local", d)
# sticky gets web's new local endpoint too, then web loses it: the hairpin
# element must stay for sticky.
e = copy.deepcopy(eps[1])
find(d, "EndpointSlice", "sticky-a")["endpoints"].append(e)
step("shared-local", d)
eps[1]["addresses"] = ["10.244.1.77"]
step("shared-local-2", d)
drop(d, "Service", "empty")
drop(d, "Service", "lb")
drop(d, "EndpointSlice", "lb-a")
step("removed", d)
d["items"].append(copy.deepcopy(find(base, "Service", "lb")))
d["items"].append(copy.deepcopy(find(base, "EndpointSlice", "lb-a")))
s = copy.deepcopy(find(base, "Service", "web"))
s["metadata"]["name"] = "new1"
s["spec"]["clusterIP"] = "10.96.0.99"
s["spec"]["clusterIPs"] = ["10.96.0.99"]
d["items"].append(s)
sl = copy.deepcopy(find(base, "EndpointSlice", "web-a"))
sl["metadata"]["name"] = "new1-a"
sl["metadata"]["labels"]["kubernetes.io/service-name"] = "new1"
d["items"].append(sl)
step("added", d)
sp = find(d, "Service", "sticky")["spec"]
sp["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 60}}
step("affinity-timeout", d)
# "aaa" (sorting before "ext" in namespace shop) claims ext's external IP
# and node port. The planner now refuses such a port itself; should one
# reach the lowering, the backend lowers the whole plan (the first port in
# plan order keeps the key). Either way the kernel must match the plan.
s = copy.deepcopy(find(base, "Service", "ext"))
s["metadata"]["name"] = "aaa"
s["spec"]["clusterIP"] = "10.96.0.98"
s["spec"]["clusterIPs"] = ["10.96.0.98"]
d["items"].append(s)
sl = copy.deepcopy(find(base, "EndpointSlice", "ext-a"))
sl["metadata"]["name"] = "aaa-a"
sl["metadata"]["labels"]["kubernetes.io/service-name"] = "aaa"
sl["endpoints"] = sl["endpoints"][:1]
d["items"].append(sl)
step("conflict", d)
find(d, "EndpointSlice", "ext-a")["endpoints"].pop()
step("conflict-endpoint", d)
drop(d, "Service", "aaa")
drop(d, "EndpointSlice", "aaa-a")
step("conflict-gone", d)
find(d, "EndpointSlice", "ext-a")["endpoints"].pop()
step("after-conflict", d)
for n in ("web6", "lb6"):
    drop(d, "Service", n)
    drop(d, "EndpointSlice", n + "-a")
step("no-ipv6", d)
step("back", base)
open(out + "/list", "w").write("\n".join(steps) + "\n")
PY
[ -s "$D/list" ] || { echo "FAIL: could not generate the steps"; exit 1; }

mapfile -t STEPS <"$D/list"
if ! sp_in node1 "$PERF" --check --cidr 10.244.0.0/16 --cidr fd00:244::/40 "${STEPS[@]}" \
	>"$SP_TMP/out" 2>&1; then
	cat "$SP_TMP/out"
	echo "FAIL: a partial sync left the kernel different from the plan"
	exit 1
fi
cat "$SP_TMP/out"
# The partial path really was the incremental one: a one-endpoint change
# sends a handful of messages, not the table.
msgs=$(awk '/01-endpoint/ { for (i = 1; i < NF; i++) if ($i == "messages") print $(i + 1) }' "$SP_TMP/out")
[ -n "$msgs" ] && [ "$msgs" -gt 0 ] && [ "$msgs" -lt 20 ] || {
	echo "FAIL: one endpoint change sent '$msgs' messages"
	exit 1
}
echo "PASS: every partial sync left the kernel equal to its plan"

# A partial sync trusts what it last programmed; when the kernel refuses it
# (here the table was deleted behind its back) every refused object is named
# with its full text, built only then.
if SP_NFT_PERF_HOOK="nft delete table ip svcproxy" sp_in node1 "$PERF" --check \
	--cidr 10.244.0.0/16 --cidr fd00:244::/40 "${STEPS[0]}" "${STEPS[1]}" >"$SP_TMP/refused" 2>&1; then
	cat "$SP_TMP/refused"
	echo "FAIL: a partial sync into a deleted table was not refused"
	exit 1
fi
# The endpoint is map data: its element is what is refused, old and new.
grep -q 'delete element ip svcproxy endpoints-tcp { [^}]* : 10.244.2.5 . 8080 }: No such file' "$SP_TMP/refused" &&
	grep -q 'add element ip svcproxy endpoints-tcp { [^}]* : 10.244.2.55 . 8080 }: No such file' "$SP_TMP/refused" || {
	cat "$SP_TMP/refused"
	echo "FAIL: the refused objects are not named"
	exit 1
}
echo "PASS: a refused partial sync names each refused object"
