# Shared by the IPVS lab tests (sourced): Kubernetes JSON writers and checks.
# No side effects when sourced.

# Items of the List being written, comma separated.
SP_ITEMS=""

sp_item() {
	if [ -n "$SP_ITEMS" ]; then SP_ITEMS="$SP_ITEMS,$1"; else SP_ITEMS=$1; fi
}

# sp_node NAME IP
sp_node() {
	sp_item "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"$1\"},
\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"$2\"}]}}"
}

# sp_svc NAME TYPE CLUSTER_IP PORT [SPEC_EXTRA] [ANNOTATIONS_JSON] [STATUS_JSON] [PROTO]
# SPEC_EXTRA: JSON members appended to spec; SP_NODEPORT=N sets the port's
# nodePort for this one call.
sp_svc() {
	name=$1 type=$2 cip=$3 port=$4 extra=${5:-} ann=${6:-"{}"} status=${7:-"{}"}
	proto=${8:-TCP}
	sp_item "{\"apiVersion\":\"v1\",\"kind\":\"Service\",
\"metadata\":{\"name\":\"$name\",\"namespace\":\"default\",\"annotations\":$ann},
\"spec\":{\"type\":\"$type\",\"clusterIP\":\"$cip\",\"clusterIPs\":[\"$cip\"],
\"ports\":[{\"name\":\"p\",\"protocol\":\"$proto\",\"port\":$port,\"targetPort\":$port${SP_NODEPORT:+,\"nodePort\":$SP_NODEPORT}}]${extra:+,$extra}},
\"status\":$status}"
	SP_NODEPORT=""
}

# sp_slice SERVICE PORT ADDR@NODE... (NODE "-" for none; ADDR!term = terminating)
sp_slice() {
	svc=$1 port=$2 proto=${SP_PROTO:-TCP}
	shift 2
	eps=""
	for e in "$@"; do
		addr=${e%@*} node=${e#*@}
		cond='"ready":true,"serving":true,"terminating":false'
		case $addr in *'!term')
			addr=${addr%!term}
			cond='"ready":false,"serving":true,"terminating":true' ;;
		esac
		ep="{\"addresses\":[\"$addr\"],\"conditions\":{$cond},\"nodeName\":\"$node\"}"
		if [ -n "$eps" ]; then eps="$eps,$ep"; else eps=$ep; fi
	done
	sp_item "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",
\"metadata\":{\"name\":\"$svc-1\",\"namespace\":\"default\",
\"labels\":{\"kubernetes.io/service-name\":\"$svc\"}},\"addressType\":\"IPv4\",
\"endpoints\":[$eps],\"ports\":[{\"name\":\"p\",\"protocol\":\"$proto\",\"port\":$port}]}"
	SP_PROTO=""
}

# sp_write FILE: the List of everything added since the last write.
sp_write() {
	printf '{"apiVersion":"v1","kind":"List","items":[%s]}\n' "$SP_ITEMS" >"$1"
	SP_ITEMS=""
}

sp_fail() {
	echo "FAIL: $*" >&2
	exit 1
}

sp_ok() {
	echo "ok: $*"
}
