#!/usr/bin/env python3
"""Writes the hostile-input table for hostile-input.sh.

  hostile-input.py OUTDIR

OUTDIR/good.json is a small valid cluster (node-1 and three Services with
their EndpointSlices). Each case is OUTDIR/cases/NN-name/ with:
  input     the hostile file, synced together with good.json
  expect    a text the error message must contain (one line, fixed string)
  status    the exit status sync must give
  xfail     (only for a known defect) why it fails today
The hostile objects use their own names (or deliberately clash with a good
one), so the good set alone defines the kernel state before and after.
"""
import json
import os
import sys

out = sys.argv[1]
os.makedirs(os.path.join(out, "cases"), exist_ok=True)


def svc(name, spec, ns="default", api="v1", kind="Service", meta=None):
    m = {"name": name, "namespace": ns}
    if meta:
        m.update(meta)
    return {"apiVersion": api, "kind": kind, "metadata": m, "spec": spec}


def cip(ip, ports=None, **extra):
    s = {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
         "ports": ports if ports is not None else [{"name": "http", "protocol": "TCP",
                                                    "port": 80, "targetPort": 8080}]}
    s.update(extra)
    return s


def slc(name, service, eps, ports=None, atype="IPv4", api="discovery.k8s.io/v1"):
    return {"apiVersion": api, "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": atype,
            "endpoints": [{"addresses": [a], "conditions": {"ready": True},
                           "nodeName": "node-1"} for a in eps],
            "ports": ports if ports is not None else [{"name": "http", "protocol": "TCP",
                                                       "port": 8080}]}


def lst(items):
    return {"apiVersion": "v1", "kind": "List", "items": items}


good = lst([
    {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
     "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]}},
    svc("web", cip("10.96.0.10")),
    slc("web-1", "web", ["10.244.1.10", "10.244.1.11"]),
    svc("np", dict(cip("10.96.0.20"), type="NodePort",
                   ports=[{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                           "nodePort": 30080}])),
    slc("np-1", "np", ["10.244.1.12"]),
    svc("lb", dict(cip("10.96.0.30"), type="LoadBalancer",
                   ports=[{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                           "nodePort": 30081}]),
        meta=None),
    slc("lb-1", "lb", ["10.244.1.13"]),
])
good["items"][5]["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}
with open(os.path.join(out, "good.json"), "w") as f:
    json.dump(good, f, indent=1)

cases = []


def case(name, content, expect, status=1, xfail=None):
    if content is not None and not isinstance(content, (bytes, str)):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode()
    cases.append((name, content, expect, status, xfail))


def bad_svc(name, expect, xfail=None, **spec_over):
    s = cip("10.96.9.%d" % (len(cases) + 1))
    s.update(spec_over)
    case(name, svc("hostile", s), expect, xfail=xfail)


def bad_port(name, expect, **port_over):
    p = {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}
    p.update(port_over)
    bad_svc(name, expect, ports=[p])


P = "Service default/hostile: "
# -- not JSON / wrong shape: the file is rejected whole, nothing is programmed
case("not-json", b'{"kind": "Service", "metadata": ', "not JSON")
case("empty-file", b"", "empty")
case("top-level-array", b"[1, 2, 3]", "the top level is not a JSON object")
case("top-level-string", b'"Service"', "the top level is not a JSON object")
case("binary-garbage", bytes(range(256)) * 4, "not JSON")
# -- wrong types
bad_port("port-is-string", P + "spec.ports[0].port", port="eighty")
bad_port("port-is-float", P + "spec.ports[0].port", port=80.5)
bad_port("port-is-bool", P + "spec.ports[0].port", port=True)
bad_svc("ports-is-object", P + "spec.ports", ports={"port": 80})
bad_svc("clusterip-is-number", P + "spec.clusterIP", clusterIP=167772160)
case("spec-is-array", svc("hostile", [1, 2]), P + "spec")
case("labels-not-map", svc("hostile", cip("10.96.9.98"), meta={"labels": ["a"]}),
     "metadata.labels")
# -- ports out of range
bad_port("port-70000", P + "spec.ports[0].port: 70000 is not a port", port=70000)
bad_port("port-zero", P + "spec.ports[0].port: 0 is not a port", port=0)
bad_port("port-negative", P + "spec.ports[0].port: -1 is not a port", port=-1)
bad_port("port-huge-number", P + "spec.ports[0].port", port=1e300)
bad_port("targetport-70000", P + "spec.ports[0].targetPort", targetPort=70000)
bad_svc("nodeport-99999", P + "spec.ports[0].nodePort",
        type="NodePort", ports=[{"name": "h", "protocol": "TCP", "port": 80, "nodePort": 99999}])
bad_port("protocol-icmp", P + "spec.ports[0].protocol", protocol="ICMP")
bad_svc("healthcheck-port-70000", P + "spec.healthCheckNodePort", type="LoadBalancer",
        externalTrafficPolicy="Local", healthCheckNodePort=70000,
        ports=[{"name": "h", "protocol": "TCP", "port": 80, "nodePort": 30099}])
# -- bad and mixed-family addresses
bad_svc("clusterip-300", P + "spec.clusterIP", clusterIP="10.96.9.300",
        clusterIPs=["10.96.9.300"])
bad_svc("clusterip-word", P + "spec.clusterIP", clusterIP="not-an-ip", clusterIPs=["not-an-ip"])
bad_svc("clusterips-same-family", P + "spec.clusterIPs", clusterIP="10.96.9.40",
        clusterIPs=["10.96.9.40", "10.96.9.41"], ipFamilies=["IPv4", "IPv4"])
bad_svc("family-mismatch", P + "spec.clusterIP", clusterIP="fd00::40", clusterIPs=["fd00::40"],
        ipFamilies=["IPv4"])
bad_svc("externalip-bad", P + "spec.externalIPs[0]", externalIPs=["999.1.1.1"])
bad_svc("externalip-loopback", P + "spec.externalIPs[0]", externalIPs=["127.0.0.1"])
bad_svc("source-range-prefix-33", P + "spec.loadBalancerSourceRanges[0]", type="LoadBalancer",
        loadBalancerSourceRanges=["10.1.2.0/33"],
        ports=[{"name": "h", "protocol": "TCP", "port": 80, "nodePort": 30098}])
case("ingress-ip-bad", dict(svc("hostile", dict(cip("10.96.9.50"), type="LoadBalancer",
                                                 ports=[{"name": "h", "protocol": "TCP",
                                                         "port": 80, "nodePort": 30097}])),
                            status={"loadBalancer": {"ingress": [{"ip": "203.0.113.999"}]}}),
     P + "status.loadBalancer.ingress[0].ip")
case("slice-address-bad", slc("hostile-1", "web", ["10.244.1.999"]),
     "EndpointSlice default/hostile-1: endpoints[0].addresses[0]")
case("slice-mixed-family", slc("hostile-1", "web", ["fd00::1"]),
     "EndpointSlice default/hostile-1: endpoints[0].addresses[0]")
# -- duplicates and clashes
bad_svc("duplicate-ports", P + "spec.ports[1]",
        ports=[{"name": "a", "protocol": "TCP", "port": 80},
               {"name": "b", "protocol": "TCP", "port": 80}])
bad_svc("duplicate-port-names", P + "spec.ports[1].name",
        ports=[{"name": "a", "protocol": "TCP", "port": 80},
               {"name": "a", "protocol": "TCP", "port": 81}])
# The first Service (in read order) keeps the node port or address; the
# later one's clashing port is refused, naming both Services.
bad_svc("clashing-nodeport", P + "spec.ports[0].nodePort: 30080/TCP is already used by "
        "Service default/np", type="NodePort",
        ports=[{"name": "h", "protocol": "TCP", "port": 80, "nodePort": 30080}])
bad_svc("clashing-clusterip", P + "spec.clusterIPs[0]: 10.96.0.10 port 80/TCP is already used "
        "by Service default/web", clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"])
bad_svc("clashing-lb-ip", P + "spec.externalIPs[0]: 203.0.113.10 port 80/TCP is already used "
        "by Service default/lb", externalIPs=["203.0.113.10"])
# -- size: huge arrays, deep nesting, huge strings, a 100 MB file
case("huge-ports-array",
     svc("hostile", cip("10.96.9.60", ports=[{"port": 1 + i % 65535, "name": "p%d" % i,
                                              "protocol": "TCP"} for i in range(100001)])),
     "100000")
case("deep-nesting", b'{"kind":"Service","metadata":' + b'{"a":' * 100000 + b'1' +
     b'}' * 100001, "nesting")
case("deep-array-nesting", b"[" * 1000000 + b"]" * 1000000, "nesting")
case("huge-name", svc("h" * 10000000, cip("10.96.9.61")), "metadata.name")
case("file-100mb", None, "64", status=1)
# -- invalid UTF-8, control characters
case("invalid-utf8-name", b'{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad\xff\xfe",'
     b'"namespace":"default"},"spec":{"clusterIP":"10.96.9.70","ports":[{"port":80}]}}',
     "UTF-8")
case("nul-in-name", b'{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad\\u0000x",'
     b'"namespace":"default"},"spec":{"clusterIP":"10.96.9.71","ports":[{"port":80}]}}',
     "line 1 column 60: a string holds \\u0000 (NUL)")
case("invalid-dns-name", svc("Bad_Name!", cip("10.96.9.72")), "metadata.name")
# -- unknown kinds and API versions, missing fields
# Kinds svcproxy does not use are skipped silently by contract (source.h):
# `kubectl get all -o json` holds Pods, Deployments, ...
case("unknown-kind", {"apiVersion": "v1", "kind": "Frobnicator", "metadata": {"name": "x"}},
     "", status=0)
case("unknown-api-version", svc("hostile", cip("10.96.9.80"), api="v2"), "v2")
case("slice-api-v1beta1", slc("hostile-1", "web", ["10.244.1.50"], api="discovery.k8s.io/v1beta1"),
     "v1beta1")
case("missing-kind", {"apiVersion": "v1", "metadata": {"name": "x"}, "spec": {}}, "kind")
case("missing-name", {"apiVersion": "v1", "kind": "Service", "metadata": {},
                      "spec": cip("10.96.9.81")}, "metadata.name")
case("missing-metadata", {"apiVersion": "v1", "kind": "Service", "spec": cip("10.96.9.82")},
     "metadata")
case("missing-ports", svc("hostile", {"type": "ClusterIP", "clusterIP": "10.96.9.83"}),
     P + "spec.ports")
case("slice-missing-service-label",
     dict(slc("hostile-1", "web", ["10.244.1.51"]), metadata={"name": "hostile-1",
                                                              "namespace": "default"}),
     "kubernetes.io/service-name")
# As kube-proxy: a slice may arrive before its Service; not an error.
case("slice-for-unknown-service", slc("hostile-1", "nosuch", ["10.244.1.52"]), "", status=0)
case("type-unknown", svc("hostile", dict(cip("10.96.9.84"), type="Weird")), P + "spec.type")
case("etp-unknown", svc("hostile", dict(cip("10.96.9.85"), externalTrafficPolicy="Sideways")),
     P + "spec.externalTrafficPolicy")
case("affinity-timeout-0", svc("hostile", dict(cip("10.96.9.86"), sessionAffinity="ClientIP",
                                              sessionAffinityConfig={"clientIP": {
                                                  "timeoutSeconds": 0}})),
     P + "spec.sessionAffinityConfig.clientIP.timeoutSeconds")

for i, (name, content, expect, status, xfail) in enumerate(cases):
    d = os.path.join(out, "cases", "%02d-%s" % (i + 1, name))
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "input.json")
    if content is None:
        # 100 MB of real JSON: a List whose padding is whitespace.
        with open(path, "wb") as f:
            f.write(b'{"apiVersion":"v1","kind":"List","items":[')
            chunk = b" " * (1 << 20)
            for _ in range(100):
                f.write(chunk)
            f.write(b"]}")
    else:
        with open(path, "wb") as f:
            f.write(content)
    with open(os.path.join(d, "expect"), "w") as f:
        f.write(expect + "\n")
    with open(os.path.join(d, "status"), "w") as f:
        f.write("%d\n" % status)
    if xfail:
        with open(os.path.join(d, "xfail"), "w") as f:
            f.write(xfail + "\n")
print(len(cases))
