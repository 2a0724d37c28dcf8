# Shared by the daemon's integration tests (sourced). Every test runs in its
# own network namespace, so fixed ports cannot clash with the host or with
# another test.

# Everything here talks to 127.0.0.1 inside a namespace: a proxy from the
# environment (curl and the daemon's libcurl both honour it) would only get
# in the way.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

: "${top_builddir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"

fail() {
	echo "FAIL: $*" >&2
	for f in "$tmp"/*.log; do
		[ -f "$f" ] || continue
		echo "---- $f" >&2
		tail -n 40 "$f" >&2
	done
	exit 1
}

# wait_for SECONDS CMD...: poll CMD until it succeeds.
wait_for() {
	t=$1
	shift
	end=$(($(date +%s) + t))
	while ! "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.1
	done
}

in_ns() {
	ip netns exec "$ns" "$@"
}

http_code() { # URL
	in_ns timeout 5 curl -s -o "$tmp/body" -w '%{http_code}' "$1" || true
}

# metric NAME: its value from /metrics (first sample).
metric() {
	in_ns timeout 5 curl -s "http://127.0.0.1:10249/metrics" |
		awk -v n="$1" '$1 == n { print $2; exit }'
}

# The daemon binary: `svcproxy run` once the command line has it, else the
# test driver with the same flags.
daemon_cmd() {
	if "$top_builddir/svcproxy" run --help >/dev/null 2>&1; then
		echo "$top_builddir/svcproxy run"
	else
		echo "$top_builddir/tests/helpers/sp-daemon-run"
	fi
}

# Prometheus text format: every line a comment or "name{labels} value".
prom_valid() {
	awk '
	/^# (HELP|TYPE) / { next }
	/^$/ { next }
	/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? [-+0-9.eEInfa]+$/ { n++; next }
	{ print "bad metrics line: " $0; bad = 1 }
	END { exit bad || n == 0 }' "$1"
}

# make_pki DIR: a CA, a server certificate for 127.0.0.1 and a client
# certificate, all valid for a day.
make_pki() {
	(
		cd "$1"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 \
			-subj /CN=sp-test-ca
		openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
			-subj /CN=127.0.0.1
		printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
		openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
			-extfile san.ext -out server.crt
		openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr \
			-subj /CN=system:kube-proxy
		openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
			-days 1 -out client.crt
	) >/dev/null 2>&1
}

# write_kubeconfig FILE TOKEN: for the test API server on 127.0.0.1:6443,
# with the CA inline, the client certificate by path, and a bearer token.
write_kubeconfig() {
	cat >"$1" <<EOT
apiVersion: v1
kind: Config
current-context: test
contexts:
- name: test
  context: {cluster: fake, user: proxy, namespace: kube-system}
clusters:
- name: fake
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: $(base64 -w0 "$(dirname "$1")/ca.crt")
users:
- name: proxy
  user:
    client-certificate: client.crt
    client-key: client.key
    token: $2
EOT
}
