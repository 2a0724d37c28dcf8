#!/bin/bash
# Least privilege, shown in a network namespace of its own:
#   - nftables mode: `svcproxy sync` as the user nobody with only
#     CAP_NET_ADMIN (ambient; bounding set reduced to it) programs the plan;
#     with no capability at all it fails with a clear "not permitted" and
#     programs nothing;
#   - iptables mode: finds the minimum. libiptc talks to x_tables over a raw
#     IP socket, so CAP_NET_RAW is needed besides CAP_NET_ADMIN, and the
#     xtables lock file must be writable by the agent (XTABLES_LOCKFILE, or
#     /run/xtables.lock made writable for it): each missing piece gives its
#     own clear error, all three together sync;
#   - the daemon (`svcproxy run`) as nobody with only CAP_NET_ADMIN programs
#     a file source, and listens only on the two configured addresses;
#   - the agent never runs another program: no exec/system/popen/fork call
#     in src/ nor among the binary's imports, and none at run time (strace,
#     when installed).
set -u
srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${top_builddir:-.}
SVCPROXY=${SVCPROXY:-$(cd "$builddir" && pwd)/svcproxy}
NS=sp-priv-$$-n
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sp-priv.XXXXXX")
DAEMON_PID=""
cleanup() {
	[ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
fail=0
nok() {
	echo "FAIL: $*"
	fail=1
}
ok() { echo "ok   $*"; }

ip netns add "$NS" || exit 1
ip -n "$NS" link set lo up
# Everything the unprivileged agent reads or writes lives here.
chmod 755 "$TMP"
mkdir -m 777 "$TMP/state"
cat >"$TMP/cluster.json" <<'JSON'
{"apiVersion": "v1", "kind": "List", "items": [
 {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
  "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]}},
 {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
  "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
           "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                      "nodePort": 30080}]}},
 {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
  "metadata": {"name": "web-1", "namespace": "default",
               "labels": {"kubernetes.io/service-name": "web"}},
  "addressType": "IPv4",
  "endpoints": [{"addresses": ["10.244.1.10"], "conditions": {"ready": true},
                 "nodeName": "node-1"}],
  "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}]}
JSON
chmod 644 "$TMP/cluster.json"

# as_nobody CAPS CMD...: CAPS is "" (none) or "+net_admin,+net_raw".
as_nobody() {
	local caps=$1
	shift
	if [ -n "$caps" ]; then
		timeout --preserve-status 60 ip netns exec "$NS" setpriv --reuid=nobody --regid=nogroup --init-groups \
			--inh-caps=-all,"$caps" --ambient-caps=-all,"$caps" \
			--bounding-set=-all,"$caps" "$@"
	else
		timeout --preserve-status 60 ip netns exec "$NS" setpriv --reuid=nobody --regid=nogroup --init-groups \
			--inh-caps=-all --bounding-set=-all "$@"
	fi
}

sync_as() { # CAPS MODE [ENV...]
	local caps=$1 mode=$2
	shift 2
	as_nobody "$caps" env "$@" "$SVCPROXY" sync --proxy-mode "$mode" \
		--hostname-override node-1 --state-dir "$TMP/state" "$TMP/cluster.json" \
		>"$TMP/out" 2>&1
}

nft_has_web() { ip netns exec "$NS" nft list table ip svcproxy 2>/dev/null | grep -q 10.96.0.10; }
ipt_has_web() { ip netns exec "$NS" iptables-legacy-save -t nat | grep -q 10.96.0.10; }
errors() { grep -v "nf_tables variant" "$TMP/out" | head -2 | tr '\n' ' '; }

# ---- nftables mode ----
if sync_as "" nftables; then
	nok "nftables: sync with no capability succeeded"
elif ! grep -q "Operation not permitted" "$TMP/out"; then
	nok "nftables: no capability: unclear error: $(errors)"
elif nft_has_web; then
	nok "nftables: no capability, yet something was programmed"
else
	ok "nftables, no capability: refused: $(errors)"
fi
if ! sync_as +net_admin nftables; then
	nok "nftables: nobody + CAP_NET_ADMIN cannot sync: $(errors)"
elif ! nft_has_web; then
	nok "nftables: nobody + CAP_NET_ADMIN: sync exited 0 but the table lacks the Service"
else
	ok "nftables: nobody with only CAP_NET_ADMIN syncs"
fi
as_nobody +net_admin "$SVCPROXY" diff --proxy-mode nftables --hostname-override node-1 \
	"$TMP/cluster.json" >/dev/null 2>&1 || nok "nftables: nobody + CAP_NET_ADMIN: diff is not 0"
as_nobody +net_admin "$SVCPROXY" cleanup --proxy-mode nftables --state-dir "$TMP/state" \
	>/dev/null 2>&1 || nok "nftables: cleanup as nobody + CAP_NET_ADMIN failed"

# ---- iptables mode: the minimum, one missing piece at a time ----
lock=$TMP/xtables.lock
touch "$lock" && chown nobody:nogroup "$lock" && chmod 600 "$lock"
rootlock=$TMP/root-owned.lock
touch "$rootlock" && chmod 600 "$rootlock"
check_ipt_refused() { # WHAT EXPECTED-TEXT CAPS ENV...
	local what=$1 text=$2 caps=$3
	shift 3
	if sync_as "$caps" iptables "$@"; then
		nok "iptables $what: sync succeeded"
	elif ! grep -q "$text" "$TMP/out"; then
		nok "iptables $what: unclear error (want '$text'): $(errors)"
	elif ipt_has_web; then
		nok "iptables $what: yet something was programmed"
	else
		ok "iptables $what: refused: $(errors)"
	fi
}
check_ipt_refused "with only CAP_NET_ADMIN" "Permission denied" +net_admin XTABLES_LOCKFILE="$lock"
check_ipt_refused "with only CAP_NET_RAW" "Permission denied" +net_raw XTABLES_LOCKFILE="$lock"
check_ipt_refused "with an unwritable lock file" "xtables lock.*Permission denied" \
	+net_admin,+net_raw XTABLES_LOCKFILE="$rootlock"
if ! sync_as +net_admin,+net_raw iptables XTABLES_LOCKFILE="$lock"; then
	nok "iptables: nobody + CAP_NET_ADMIN + CAP_NET_RAW + lock file: $(errors)"
elif ! ipt_has_web; then
	nok "iptables: sync exited 0 but the nat table lacks the Service"
else
	ok "iptables: nobody with CAP_NET_ADMIN + CAP_NET_RAW and a writable lock file syncs"
fi
as_nobody +net_admin,+net_raw env XTABLES_LOCKFILE="$lock" "$SVCPROXY" cleanup \
	--proxy-mode iptables --state-dir "$TMP/state" >/dev/null 2>&1 ||
	nok "iptables: cleanup as nobody failed"

# ---- the daemon as nobody, and where it listens ----
if "$SVCPROXY" run --help >/dev/null 2>&1; then
	as_nobody +net_admin "$SVCPROXY" run --proxy-mode nftables --hostname-override node-1 \
		--state-dir "$TMP/state" --healthz-bind-address 127.0.0.2:10256 \
		--metrics-bind-address 127.0.0.1:10249 --min-sync-period 100ms \
		"$TMP/cluster.json" >"$TMP/daemon.log" 2>&1 &
	DAEMON_PID=$!
	for _ in $(seq 100); do
		nft_has_web && break
		sleep 0.1
	done
	if ! nft_has_web; then
		nok "daemon as nobody + CAP_NET_ADMIN did not program: $(tail -3 "$TMP/daemon.log")"
	else
		ok "daemon as nobody with only CAP_NET_ADMIN programs a file source"
	fi
	for _ in $(seq 50); do
		code=$(ip netns exec "$NS" timeout 5 curl -s -o /dev/null -w '%{http_code}' \
			http://127.0.0.2:10256/healthz)
		[ "$code" = 200 ] && break
		sleep 0.1
	done
	[ "$code" = 200 ] || nok "daemon: /healthz on the configured address answers $code"
	listening=$(ip netns exec "$NS" ss -Hltnu | awk '{print $5}' | sort | tr '\n' ' ')
	if [ "$listening" != "127.0.0.1:10249 127.0.0.2:10256 " ]; then
		nok "daemon listens on '$listening', configured: 127.0.0.1:10249 127.0.0.2:10256"
	else
		ok "daemon listens only where configured: $listening"
	fi
	# The agent itself (timeout's child), not timeout, gets the signal.
	kill -TERM "$(pgrep -P "$DAEMON_PID")"
	wait "$DAEMON_PID"
	rc=$?
	DAEMON_PID=""
	[ "$rc" = 0 ] || nok "daemon: SIGTERM exit status $rc"
else
	nok "svcproxy run is not available"
fi

# ---- it never runs another program ----
calls='(system|popen|execl|execlp|execle|execv|execvp|execvpe|fexecve|posix_spawnp?|fork|vfork)'
if grep -rnE "\\b$calls[[:space:]]*\\(" "$srcdir/src" >"$TMP/grep"; then
	nok "src/ calls a program runner: $(head -3 "$TMP/grep")"
else
	ok "no system/popen/exec*/fork/posix_spawn call in src/"
fi
imports=$(nm -D --undefined-only "$SVCPROXY" | awk '{print $2}' | sed 's/@.*//' |
	grep -xE "$calls|clone3?" | tr '\n' ' ')
[ -z "$imports" ] && ok "the svcproxy binary imports none of them" ||
	nok "the svcproxy binary imports $imports"
if command -v strace >/dev/null; then
	ip netns exec "$NS" strace -f -qq -e trace=execve,execveat,fork,vfork -o "$TMP/strace" \
		"$SVCPROXY" sync --proxy-mode nftables --hostname-override node-1 \
		--state-dir "$TMP/state" "$TMP/cluster.json" >/dev/null 2>&1
	n=$(grep -cE 'execve|fork' "$TMP/strace")
	[ "$n" = 1 ] && ok "at run time: one execve (svcproxy itself), no other program" ||
		nok "at run time, sync made $n exec/fork calls: $(head -3 "$TMP/strace")"
else
	echo "note: strace is not installed; the run-time check is left out"
fi
exit $fail
