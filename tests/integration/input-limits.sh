#!/bin/bash
# The source limits, from the command line or the configuration file's
# svcproxy section (flags win):
#  - `plan`: a file over a small --max-input-bytes, --max-json-depth or
#    --max-json-items (or the same limit from --config) is rejected whole
#    with the limit named, while the same file passes under the defaults;
#    a bad limit in the file is a usage error naming file, field and value.
#  - `svcproxy run` (nftables, in its own namespace): a watched file grown
#    over the configured limit, or holding \u0000, is refused and the table
#    stays byte for byte; SIGHUP with a raised limit in the file takes it;
#    a flag overrides the file's limit.
#  - `svcproxy run` on the test API server: an object holding \u0000 (a
#    name that cJSON would cut to an existing one) is refused in a watch
#    event and in a relist, the table stays, and the next good event is
#    programmed; a watch event or list answer over --max-input-bytes is
#    refused, the table stays until the object fits.
set -u
srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${top_builddir:-.}
SVCPROXY=${SVCPROXY:-$builddir/svcproxy}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sp-limits.XXXXXX")
ns="sp-limits-$$"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$ns" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

python3 "$srcdir/tests/integration/hostile-input.py" "$TMP/t" >/dev/null || exit 1
good=$TMP/t/good.json
size=$(stat -c %s "$good")
fail=0

plan() { # EXPECTED-STATUS EXPECTED-TEXT FLAGS...
	local want=$1 text=$2 rc
	shift 2
	timeout 30 "$SVCPROXY" plan --proxy-mode nftables --hostname-override node-1 "$@" \
		>"$TMP/out" 2>"$TMP/err"
	rc=$?
	if [ "$rc" != "$want" ] || { [ -n "$text" ] && ! grep -qF -- "$text" "$TMP/err"; }; then
		echo "FAIL: plan $*: status $rc (want $want), messages:"
		sed 's/^/    /' "$TMP/err"
		[ -n "$text" ] && echo "    (expected a message containing '$text')"
		fail=1
	else
		echo "ok   plan $*: status $rc${text:+, '$text'}"
	fi
}

plan 0 "" "$good"
plan 1 "$size bytes, over the max_file_bytes limit of $((size - 1))" \
	--max-input-bytes $((size - 1)) "$good"
plan 0 "" --max-input-bytes "$size" "$good"
plan 1 "nested deeper than 3 levels (the max_depth limit)" --max-json-depth 3 "$good"
plan 1 "more than 2 entries in one array or object (the max_items limit)" \
	--max-json-items 2 "$good"
plan 2 "--max-input-bytes: 0 is not a whole number from 1 up" --max-input-bytes 0 "$good"
plan 2 "--max-json-depth: ten is not a whole number from 1 up" --max-json-depth ten "$good"
# Nothing of a rejected file is planned: the good objects are absent.
plan 1 "max_file_bytes" --max-input-bytes 100 "$good"
if grep -q "10.96.0.10" "$TMP/out"; then
	echo "FAIL: a rejected file was planned"
	fail=1
fi

# The same limits from the configuration file; a flag overrides the file.
config() { # FILE SVCPROXY-SECTION-LINES...
	local f=$1
	shift
	{
		echo "apiVersion: kubeproxy.config.k8s.io/v1alpha1"
		echo "kind: KubeProxyConfiguration"
		echo "svcproxy:"
		for l in "$@"; do echo "  $l"; done
	} >"$f"
}
config "$TMP/small.yaml" "maxInputBytes: $((size - 1))"
plan 1 "$size bytes, over the max_file_bytes limit of $((size - 1))" \
	--config "$TMP/small.yaml" "$good"
plan 0 "" --config "$TMP/small.yaml" --max-input-bytes "$size" "$good"
plan 0 "" --max-input-bytes "$size" --config "$TMP/small.yaml" "$good"
config "$TMP/deep.yaml" "maxJSONDepth: 3" "maxJSONItems: 1000"
plan 1 "nested deeper than 3 levels (the max_depth limit)" --config "$TMP/deep.yaml" "$good"
config "$TMP/items.yaml" "maxJSONItems: 2"
plan 1 "more than 2 entries in one array or object (the max_items limit)" \
	--config "$TMP/items.yaml" "$good"
plan 0 "" --config "$TMP/items.yaml" --max-json-items 100 "$good"
config "$TMP/bad.yaml" "maxJSONDepth: -1"
plan 2 "$TMP/bad.yaml: KubeProxyConfiguration: svcproxy.maxJSONDepth: -1 is not a whole number" \
	--config "$TMP/bad.yaml" "$good"
config "$TMP/typo.yaml" "maxInputByte: 10"
plan 2 "svcproxy.\"maxInputByte\": unknown field" --config "$TMP/typo.yaml" "$good"
[ "$fail" = 0 ] || exit 1

# ---- svcproxy run ----
. "$srcdir/tests/lib/daemon.sh"
tmp=$TMP # for fail(): it prints $tmp/*.log
ip netns add "$ns" || fail "cannot create namespace $ns"
in_ns ip link set lo up

svc() { # NAME IP [PADDING]: a Service, its name as given (JSON-escaped)
	printf '{"apiVersion":"v1","kind":"Service","metadata":{"name":"%s","namespace":"default","annotations":{"pad":"%s"}},"spec":{"type":"ClusterIP","clusterIP":"%s","clusterIPs":["%s"],"ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}]}}' \
		"$1" "${3:-}" "$2" "$2"
}
slice() { # SERVICE ENDPOINT-IP
	printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"%s-1","namespace":"default","labels":{"kubernetes.io/service-name":"%s"}},"addressType":"IPv4","endpoints":[{"addresses":["%s"],"conditions":{"ready":true},"nodeName":"node-1"}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}' \
		"$1" "$1" "$2"
}
list() { # OBJECT...
	local sep=
	printf '{"kind":"List","apiVersion":"v1","items":['
	for o in "$@"; do
		printf '%s%s' "$sep" "$o"
		sep=,
	done
	printf ']}\n'
}
table() { in_ns nft list table ip svcproxy 2>/dev/null; }
has() { table | grep -qF -- "$1"; }
errors_at_least() { [ "$(metric svcproxy_source_errors_total)" -ge "$1" ] 2>/dev/null; }
# A refused input must leave the table as it was: wait until the refusal is
# counted, then past a min-sync-period (100ms) or two, when a sync that
# took it would have run.
unchanged_after_refusal() { # ERRORS-BEFORE LOG-TEXT WHAT
	wait_for 10 errors_at_least $(($1 + 1)) || fail "$3: no source error counted"
	wait_for 5 grep -qF -- "$2" "$TMP/daemon.log" || fail "$3: no log line '$2'"
	sleep 0.5
	[ "$(table)" = "$before" ] || fail "$3 changed the table"
	echo "ok   run: $3 refused, table unchanged"
}
start_daemon() { # ARGS...
	ip netns exec "$ns" timeout --preserve-status 120 "$SVCPROXY" run --proxy-mode nftables \
		--hostname-override node-1 --min-sync-period 100ms --sync-period 30s \
		--state-dir "$TMP" --healthz-bind-address 127.0.0.1:10256 \
		--metrics-bind-address 127.0.0.1:10249 -v "$@" >"$TMP/daemon.log" 2>&1 &
	daemon_pid=$!
	pids+=("$daemon_pid")
}
stop_daemon() {
	kill -TERM "$daemon_pid"
	wait "$daemon_pid" || fail "daemon exited $? on SIGTERM"
}

# File source, limit from the configuration file.
mkdir "$TMP/objs"
list "$(svc web 10.96.0.10)" "$(slice web 10.244.1.5)" >"$TMP/objs/web.json"
config "$TMP/run.yaml" "maxInputBytes: 4096"
start_daemon --config "$TMP/run.yaml" "$TMP/objs"
wait_for 15 has 10.96.0.10 || fail "run: the good file was not programmed"
wait_for 5 grep -q "source limits: 4096 bytes" "$TMP/daemon.log" ||
	fail "run: the configured limit is not in use"
before=$(table)
e0=$(metric svcproxy_source_errors_total)

# Grown past maxInputBytes: refused; the good state stays.
pad=$(head -c 5000 /dev/zero | tr '\0' x)
list "$(svc web 10.96.0.10)" "$(slice web 10.244.1.5)" "$(svc big 10.96.0.99 "$pad")" \
	>"$TMP/big.json"
mv "$TMP/big.json" "$TMP/objs/web.json"
unchanged_after_refusal "$e0" "web.json: over the max_file_bytes limit of 4096 bytes" \
	"a file over maxInputBytes"

# A name holding \u0000 (cJSON would read "web"): refused whole.
e1=$(metric svcproxy_source_errors_total)
list "$(svc 'web\u0000x' 10.96.0.66)" >"$TMP/objs/nul.json"
unchanged_after_refusal "$e1" "nul.json: line 1 column 102: a string holds \\u0000 (NUL)" \
	"a file holding \\u0000"
rm "$TMP/objs/nul.json"

# SIGHUP with the limit raised in the file: the big file is now taken.
config "$TMP/run.yaml" "maxInputBytes: 1048576" "maxJSONItems: 3"
kill -HUP "$daemon_pid"
wait_for 10 has 10.96.0.99 || fail "run: SIGHUP did not apply the raised maxInputBytes"
has 10.96.0.10 || fail "run: web lost after SIGHUP"
echo "ok   run: SIGHUP applied the file's new maxInputBytes"

# maxJSONItems from the same reload: a List of 4 is refused, the 3 stay.
before=$(table)
e0=$(metric svcproxy_source_errors_total)
list "$(svc web 10.96.0.10)" "$(slice web 10.244.1.5)" "$(svc big 10.96.0.99)" \
	"$(svc four 10.96.0.44)" >"$TMP/four.json"
mv "$TMP/four.json" "$TMP/objs/web.json"
unchanged_after_refusal "$e0" "more than 3 items (the max_items limit); keeping its last good" \
	"a List over maxJSONItems"
stop_daemon

# A flag overrides the file: 4096 from the flag beats 100 from the file.
in_ns nft delete table ip svcproxy || fail "cannot reset the table"
list "$(svc web 10.96.0.10)" "$(slice web 10.244.1.5)" >"$TMP/objs/web.json"
config "$TMP/run.yaml" "maxInputBytes: 100"
start_daemon --config "$TMP/run.yaml" --max-input-bytes 4096 "$TMP/objs"
wait_for 15 has 10.96.0.10 || fail "run: --max-input-bytes did not override the file"
grep -q "over the max_file_bytes limit" "$TMP/daemon.log" && fail "run: the file's limit was used"
echo "ok   run: --max-input-bytes overrides svcproxy.maxInputBytes"
stop_daemon

# API source: an object holding \u0000 in a watch event.
command -v openssl >/dev/null || fail "openssl missing"
in_ns nft delete table ip svcproxy || fail "cannot reset the table"
make_pki "$TMP"
token="sp-limits-$$"
list "$(svc web 10.96.0.10)" "$(slice web 10.244.1.5)" >"$TMP/objects.json"
ip netns exec "$ns" timeout 120 python3 "$srcdir/tests/helpers/fake-apiserver.py" \
	--cert "$TMP/server.crt" --key "$TMP/server.key" --client-ca "$TMP/ca.crt" \
	--token "$token" --port 6443 --control-port 6444 "$TMP/objects.json" \
	>"$TMP/server.log" 2>&1 &
pids+=($!)
wait_for 10 in_ns curl -sf http://127.0.0.1:6444/stats || fail "test API server did not start"
ctl() { in_ns curl -sf -X POST --data-binary "$2" "http://127.0.0.1:6444$1" >/dev/null; }
write_kubeconfig "$TMP/kubeconfig" "$token"
start_daemon --kubeconfig "$TMP/kubeconfig" --max-input-bytes 4096
wait_for 15 has 10.96.0.10 || fail "run: the listed Service was not programmed"
before=$(table)
e0=$(metric svcproxy_source_errors_total)
ctl /apply "$(svc 'web\u0000x' 10.96.0.66)" || fail "cannot apply to the test API server"
unchanged_after_refusal "$e0" "watch event for Service default/web: a string holds \\u0000" \
	"a watched Service holding \\u0000"
# The watch goes on: the next good object is programmed.
ctl /apply "$(svc api 10.96.0.30)" || fail "cannot apply to the test API server"
wait_for 10 has 10.96.0.30 || fail "run: the watch stopped after the refused event"
has 10.96.0.66 && fail "run: the refused object was programmed later"
echo "ok   run: the watch goes on after the refused event"
# A relist (410 Gone) whose answer holds the object: that item alone is
# refused (web keeps its state), the rest of the list is taken and the
# watch resumes. A list whose own fields hold one is refused whole.
before=$(table)
e0=$(metric svcproxy_source_errors_total)
ctl /gone null || fail "cannot expire the watch"
unchanged_after_refusal "$e0" "list item for Service default/web: a string holds \\u0000" \
	"a listed Service holding \\u0000"
grep -q "list answer refused" "$TMP/daemon.log" && fail "run: the whole list was refused"
ctl /apply "$(svc api2 10.96.0.31)" || fail "cannot apply to the test API server"
wait_for 15 has 10.96.0.31 || fail "run: the watch did not resume after the list"
has 10.96.0.10 || fail "run: web lost across the refused list item"
has 10.96.0.66 && fail "run: the refused list item was programmed"
echo "ok   run: the list is taken without the refused item, the watch resumes"

# --max-input-bytes bounds the API source too: a watch event over it drops
# the stream, a list answer over it is refused; the table stays until the
# object shrinks.
before=$(table)
e0=$(metric svcproxy_source_errors_total)
ctl /apply "$(svc big 10.96.0.99 "$pad")" || fail "cannot apply to the test API server"
unchanged_after_refusal "$e0" "a watch event over the max_file_bytes limit of 4096 bytes" \
	"a watch event over --max-input-bytes"
e0=$(metric svcproxy_source_errors_total)
ctl /gone null || fail "cannot expire the watch"
unchanged_after_refusal "$e0" "list answer refused: over the max_file_bytes limit of 4096" \
	"a list answer over --max-input-bytes"
ctl /apply "$(svc big 10.96.0.99)" || fail "cannot apply to the test API server"
wait_for 20 has 10.96.0.99 || fail "run: no recovery once the object fits the limit"
echo "ok   run: the API source takes the object once it fits the limit"
stop_daemon
exit 0
