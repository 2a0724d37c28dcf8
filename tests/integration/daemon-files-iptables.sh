#!/bin/sh
# daemon-files.sh in iptables mode (libiptc, kube-proxy's chain layout).
MODE=iptables
export MODE
exec sh "$(dirname "$0")/daemon-files.sh"
