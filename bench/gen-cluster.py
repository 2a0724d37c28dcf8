#!/usr/bin/env python3
"""Deterministic synthetic clusters for the benchmark, as `kubectl get -o json`.

S Services x E endpoints seen from node-1, the node svcproxy runs on:
  - Service i (svc-00000 ... in namespace bench) has one TCP port 80 -> 8080;
  - type by i % 10: 0-5 ClusterIP, 6-7 NodePort, 8-9 LoadBalancer;
  - NodePort and LoadBalancer Services alternate every ten Services between
    externalTrafficPolicy Cluster and Local;
  - endpoint j of Service i is pod address 10.128.0.0 + i*E + j + 1 (cluster
    CIDR 10.128.0.0/9) on node-(j % 4 + 1), all ready;
  - ClusterIP 10.96.0.0 + i + 1, LB ingress IP 100.64.0.0 + i + 1, node
    ports 30000 + k for the k-th NodePort/LoadBalancer Service.

Variants, each one change on top of the previous one:
  base    the cluster above;
  ep      one endpoint of Service S/2 gets a new address;
  epsvc   ep plus one more Service (index S, E endpoints).

kube-proxy layout: `--kube-proxy-nft` prints, instead of JSON, the nft script
kube-proxy's nftables mode would load for the same cluster (a chain per
endpoint and an anonymous numgen verdict map per Service), so its `nft -f`
cost can be measured next to svcproxy's.
"""
import argparse
import hashlib
import base64
import ipaddress
import json
import sys

NODE_IP = "10.0.0.1"
NODES = 4
CLUSTER_CIDR = "10.128.0.0/9"
SVC_BASE = int(ipaddress.ip_address("10.96.0.0"))
LB_BASE = int(ipaddress.ip_address("100.64.0.0"))
POD_BASE = int(ipaddress.ip_address("10.128.0.0"))


def ip(n):
    return str(ipaddress.ip_address(n))


def svc_type(i):
    r = i % 10
    return "ClusterIP" if r < 6 else ("NodePort" if r < 8 else "LoadBalancer")


def local_policy(i):
    return (i // 10) % 2 == 1


def node_port_of(i):
    """Node port of Service i: one per NodePort/LB Service, in order."""
    full, rest = divmod(i, 10)
    k = full * 4 + max(0, rest - 6)
    return 30000 + k


class Svc:
    def __init__(self, i, E):
        self.i = i
        self.name = "svc-%05d" % i
        self.type = svc_type(i)
        self.cluster_ip = ip(SVC_BASE + i + 1)
        self.lb_ip = ip(LB_BASE + i + 1) if self.type == "LoadBalancer" else None
        self.node_port = node_port_of(i) if self.type != "ClusterIP" else 0
        self.local = self.type != "ClusterIP" and local_policy(i)
        self.endpoints = [(ip(POD_BASE + i * E + j + 1), "node-%d" % (j % NODES + 1))
                          for j in range(E)]


def cluster(S, E, variant):
    svcs = [Svc(i, E) for i in range(S)]
    if variant in ("ep", "epsvc"):
        s = svcs[S // 2]
        s.endpoints[0] = (ip(POD_BASE + (S + 1) * E + 1), s.endpoints[0][1])
    if variant == "epsvc":
        svcs.append(Svc(S, E))
    return svcs


def node_obj(n):
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-%d" % n, "labels": {"kubernetes.io/hostname": "node-%d" % n}},
        "spec": {"podCIDR": "10.%d.0.0/16" % (128 + n)},
        "status": {"addresses": [
            {"type": "InternalIP", "address": NODE_IP if n == 1 else "10.0.2.%d" % n}]},
    }


def svc_obj(s):
    port = {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}
    if s.node_port:
        port["nodePort"] = s.node_port
    spec = {"type": s.type, "clusterIP": s.cluster_ip, "clusterIPs": [s.cluster_ip],
            "ipFamilies": ["IPv4"], "ports": [port]}
    if s.type != "ClusterIP":
        spec["externalTrafficPolicy"] = "Local" if s.local else "Cluster"
    if s.type == "LoadBalancer" and s.local:
        spec["healthCheckNodePort"] = 40000 + s.i
    status = {"loadBalancer": {"ingress": [{"ip": s.lb_ip}]} if s.lb_ip else {}}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": s.name, "namespace": "bench"}, "spec": spec, "status": status}


def slice_obj(s):
    eps = [{"addresses": [a], "conditions": {"ready": True, "serving": True,
                                             "terminating": False},
            "nodeName": n} for a, n in s.endpoints]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": s.name + "-x", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": s.name}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}


def write_json(svcs, out):
    items = [node_obj(n) for n in range(1, NODES + 1)]
    for s in svcs:
        items.append(svc_obj(s))
        items.append(slice_obj(s))
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, out, separators=(",", ":"))
    out.write("\n")


def kp_hash(name):
    """kube-proxy's chain name hash: base32 of sha256, first 8 characters."""
    return base64.b32encode(hashlib.sha256(name.encode()).digest())[:8].decode()


def write_kube_proxy_nft(svcs, out):
    """kube-proxy's nftables proxier layout (pkg/proxy/nftables) for these
    Services: what matters for the kernel's cost is kept exactly (one chain
    per service port and per endpoint, one anonymous numgen vmap per service
    port, the shared service-ips / service-nodeports maps); firewall and
    no-endpoint maps stay empty as no Service here needs them."""
    w = out.write
    elements = []
    w("add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\n")
    w("flush table ip kube-proxy\n")
    w("table ip kube-proxy {\n")
    w("  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; "
      "comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }\n")
    w("  map service-nodeports { type inet_proto . inet_service : verdict ; "
      "comment \"NodePort traffic\" ; }\n")
    w("  set cluster-ips { type ipv4_addr ; comment \"Active ClusterIPs\" ; }\n")
    w("  chain mark-for-masquerade { mark set mark or 0x4000 ; }\n")
    w("  chain masquerading { type nat hook postrouting priority srcnat ; policy accept ;\n"
      "    mark and 0x4000 == 0 return\n    mark set mark xor 0x4000\n"
      "    masquerade fully-random\n  }\n")
    w("  chain services {\n    ip daddr . meta l4proto . th dport vmap @service-ips\n"
      "    ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport "
      "vmap @service-nodeports\n  }\n")
    w("  chain nat-prerouting { type nat hook prerouting priority dstnat ; policy accept ;"
      " jump services ; }\n")
    w("  chain nat-output { type nat hook output priority -100 ; policy accept ;"
      " jump services ; }\n")
    w("  chain cluster-ips-check { type filter hook forward priority -110 ; policy accept ;"
      " ip daddr @cluster-ips reject ; }\n")
    for s in svcs:
        spn = "bench/%s/tcp/http" % s.name
        svc_chain = "service-%s-%s" % (kp_hash(spn), spn)
        ext_chain = "external-%s-%s" % (kp_hash(spn), spn)
        eps = s.endpoints
        ep_chains = []
        for a, _ in eps:
            epn = "%s__%s/8080" % (spn, a)
            c = "endpoint-%s-%s" % (kp_hash(epn), epn)
            ep_chains.append(c)
            w("  chain %s {\n    ip saddr %s jump mark-for-masquerade\n"
              "    meta l4proto tcp dnat to %s:8080\n  }\n" % (c, a, a))
        vm = ", ".join("%d : goto %s" % (k, c) for k, c in enumerate(ep_chains))
        w("  chain %s {\n    ip daddr %s tcp dport 80 ip saddr != %s jump mark-for-masquerade\n"
          "    numgen random mod %d vmap { %s }\n  }\n"
          % (svc_chain, s.cluster_ip, CLUSTER_CIDR, len(eps), vm))
        elements.append("cluster-ips { %s }" % s.cluster_ip)
        elements.append("service-ips { %s . tcp . 80 : goto %s }" % (s.cluster_ip, svc_chain))
        if s.type == "ClusterIP":
            continue
        if s.local:
            local = [c for c, (_, n) in zip(ep_chains, eps) if n == "node-1"]
            vm = ", ".join("%d : goto %s" % (k, c) for k, c in enumerate(local))
            w("  chain %s {\n    ip saddr %s goto %s\n    fib saddr type local jump "
              "mark-for-masquerade\n    fib saddr type local goto %s\n"
              "    numgen random mod %d vmap { %s }\n  }\n"
              % (ext_chain, CLUSTER_CIDR, svc_chain, svc_chain, len(local), vm))
        else:
            w("  chain %s {\n    jump mark-for-masquerade\n    goto %s\n  }\n"
              % (ext_chain, svc_chain))
        elements.append("service-nodeports { tcp . %d : goto %s }" % (s.node_port, ext_chain))
        if s.lb_ip:
            elements.append("service-ips { %s . tcp . 80 : goto %s }" % (s.lb_ip, ext_chain))
    w("}\n")
    for e in elements:
        w("add element ip kube-proxy %s\n" % e)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-s", "--services", type=int, required=True)
    ap.add_argument("-e", "--endpoints", type=int, default=10)
    ap.add_argument("--variant", choices=["base", "ep", "epsvc"], default="base")
    ap.add_argument("--kube-proxy-nft", action="store_true",
                    help="print kube-proxy's nftables script instead of JSON")
    ap.add_argument("--last-service", action="store_true",
                    help="print the last Service's ClusterIP and endpoint addresses")
    ap.add_argument("-o", "--output", default="-")
    a = ap.parse_args()
    svcs = cluster(a.services, a.endpoints, a.variant)
    out = sys.stdout if a.output == "-" else open(a.output, "w")
    if a.last_service:
        s = svcs[-1]
        out.write("%s %s\n" % (s.cluster_ip, " ".join(e for e, _ in s.endpoints)))
    elif a.kube_proxy_nft:
        write_kube_proxy_nft(svcs, out)
    else:
        write_json(svcs, out)
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
