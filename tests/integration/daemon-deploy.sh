#!/bin/sh
# The operating files: the systemd unit passes `systemd-analyze verify`
# without a complaint, and the deploy/ manifests go through kubectl's
# client-side dry run (against the test API server's discovery) and hold
# together (selector matches the template, RBAC covers what the daemon
# watches, the ServiceAccount exists).
set -eu
. "$(dirname "$0")/../lib/daemon.sh"

ns="sp-ddep-$$"
tmp=$(mktemp -d /tmp/sp-ddep.XXXXXX)
server_pid=
cleanup() {
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# ---- systemd ----
# verify checks that ExecStart exists: point it at the built daemon.
bin="$top_builddir/tests/helpers/sp-daemon-run"
[ -x "$top_builddir/svcproxy" ] && bin="$top_builddir/svcproxy"
sed "s|/usr/sbin/svcproxy|$bin|" "$top_srcdir/systemd/svcproxy.service" >"$tmp/svcproxy.service"
# Documentation= names man pages that are not installed here.
out=$(timeout 60 systemd-analyze verify --man=no "$tmp/svcproxy.service" 2>&1) ||
	fail "systemd-analyze verify: $out"
# verify exits 0 on many complaints: any line about the unit is a failure.
if printf '%s\n' "$out" | grep -q 'svcproxy.service'; then
	fail "systemd-analyze verify complained: $out"
fi
grep -q '^Type=notify$' "$tmp/svcproxy.service" || fail "unit is not Type=notify"
grep -q '^WatchdogSec=' "$tmp/svcproxy.service" || fail "unit has no watchdog"
grep -q '^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW$' "$tmp/svcproxy.service" ||
	fail "unexpected capability set"
# The example environment file is valid shell assignments.
( set -e; . "$top_srcdir/systemd/svcproxy.env"; [ -n "$SVCPROXY_ARGS" ] ) ||
	fail "svcproxy.env does not set SVCPROXY_ARGS"

# ---- deploy/ ----
command -v kubectl >/dev/null || fail "kubectl missing"
ip netns add "$ns"
in_ns ip link set lo up
make_pki "$tmp"
ip netns exec "$ns" timeout 120 python3 "$top_srcdir/tests/helpers/fake-apiserver.py" \
	--cert "$tmp/server.crt" --key "$tmp/server.key" --token deploy-token \
	--port 6443 --control-port 6444 >"$tmp/server.log" 2>&1 &
server_pid=$!
wait_for 10 in_ns curl -sf http://127.0.0.1:6444/stats || fail "test API server did not start"
write_kubeconfig "$tmp/kubeconfig" deploy-token

in_ns timeout 60 kubectl --kubeconfig "$tmp/kubeconfig" apply --dry-run=client \
	--validate=false -f "$top_srcdir/deploy/rbac.yaml" -f "$top_srcdir/deploy/daemonset.yaml" \
	-o name >"$tmp/dry-run.out" 2>"$tmp/dry-run.log" || fail "kubectl dry run: $(cat "$tmp/dry-run.log")"
for want in serviceaccount/svcproxy clusterrole.rbac.authorization.k8s.io/svcproxy \
	clusterrolebinding.rbac.authorization.k8s.io/svcproxy configmap/svcproxy \
	daemonset.apps/svcproxy; do
	grep -qx "$want" "$tmp/dry-run.out" || fail "kubectl dry run did not produce $want: $(cat "$tmp/dry-run.out")"
done

# What kubectl does not check: the pieces fit together.
in_ns timeout 60 kubectl --kubeconfig "$tmp/kubeconfig" apply --dry-run=client \
	--validate=false -f "$top_srcdir/deploy/rbac.yaml" -f "$top_srcdir/deploy/daemonset.yaml" \
	-o json >"$tmp/objects.json" 2>>"$tmp/dry-run.log" || fail "kubectl -o json"
python3 - "$tmp/objects.json" <<'PY' || fail "deploy/ manifests do not fit together"
import json, sys
text = open(sys.argv[1]).read()
dec, objs, i = json.JSONDecoder(), [], 0
while i < len(text):
    if text[i].isspace():
        i += 1
        continue
    o, i = dec.raw_decode(text, i)
    objs.extend(o.get("items", [o]) if o.get("kind") == "List" else [o])
by = {o["kind"]: o for o in objs}
ds = by["DaemonSet"]["spec"]
labels = ds["template"]["metadata"]["labels"]
assert all(labels.get(k) == v for k, v in ds["selector"]["matchLabels"].items()), "selector"
pod = ds["template"]["spec"]
assert pod["hostNetwork"] is True, "hostNetwork"
assert pod["serviceAccountName"] == by["ServiceAccount"]["metadata"]["name"], "service account"
c = pod["containers"][0]
caps = c["securityContext"]["capabilities"]
assert "NET_ADMIN" in caps["add"] and caps["drop"] == ["ALL"], "capabilities"
assert c["livenessProbe"]["httpGet"]["path"] == "/livez", "liveness"
assert c["readinessProbe"]["httpGet"]["path"] == "/healthz", "readiness"
mounts = {m["name"] for m in c["volumeMounts"]}
assert mounts <= {v["name"] for v in pod["volumes"]}, "volumes"
rules = by["ClusterRole"]["rules"]
def allowed(group, res):
    return any(group in r["apiGroups"] and res in r["resources"] and
               {"list", "watch"} <= set(r["verbs"]) for r in rules)
assert allowed("", "services") and allowed("", "nodes"), "rbac core"
assert allowed("discovery.k8s.io", "endpointslices"), "rbac endpointslices"
sub = by["ClusterRoleBinding"]["subjects"][0]
assert sub["name"] == "svcproxy" and sub["namespace"] == "kube-system", "binding"
assert by["ClusterRoleBinding"]["roleRef"]["name"] == by["ClusterRole"]["metadata"]["name"]
cm = by["ConfigMap"]["data"]
assert "kubeconfig.conf" in cm and "tokenFile:" in cm["kubeconfig.conf"], "kubeconfig"
args = c["command"]
assert "--kubeconfig=/etc/svcproxy/kubeconfig.conf" in args, "kubeconfig flag"
PY
# The Containerfile installs only Debian packages that exist in Debian 12.
pkgs=$(sed -n '/^FROM .*slim/,$p' "$top_srcdir/deploy/Containerfile" |
	tr ' \\' '\n\n' | grep -E '^lib|^ca-certificates$' || true)
[ -n "$pkgs" ] || fail "no runtime packages in the Containerfile"
for p in $pkgs; do
	apt-cache show "$p" >/dev/null 2>&1 || fail "Containerfile: no Debian package $p"
done
echo "PASS: daemon-deploy"
