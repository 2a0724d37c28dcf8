#!/bin/sh
# Install what svcproxy needs to build, test and run, from Debian's archive.
# Kept in one place so that the README, CI and newcomers install the same set.
set -eu
export DEBIAN_FRONTEND=noninteractive
PACKAGES="
  build-essential autoconf automake libtool pkg-config
  libnl-3-dev libnl-genl-3-dev libnl-route-3-dev libip4tc-dev libip6tc-dev libmnl-dev
  libnftnl-dev libcjson-dev libyaml-dev check libnetfilter-conntrack-dev
  libcurl4-openssl-dev libmicrohttpd-dev libsystemd-dev libipset-dev
  nftables iptables iproute2 ipset ipvsadm conntrack socat kmod procps
  user-mode-linux openssl python3 curl systemd util-linux mandoc valgrind strace clang
"
missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# The daemon's deploy test dry-runs the manifests with kubectl; Debian's
# kubernetes-client provides it unless some other kubectl is already there.
command -v kubectl >/dev/null 2>&1 || missing="$missing kubernetes-client"
if [ -n "$missing" ]; then
	echo "install-deps: installing:$missing"
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
