#!/bin/sh
# The live-flow conntrack test with the rules of iptables mode: the flush
# is the same code whatever programs the rules, the entries are not.
exec sh "$(dirname "$0")/conntrack.sh" iptables
