#!/usr/bin/env python3
"""The load run behind load.sh; runs inside the namespace load.sh made.

A directory source: services.json (every Service) and slices-NNN.json
(--per-file EndpointSlices each, default 100, two ready endpoints per Service). `svcproxy run` watches
it. Then, RATE times a second for SECONDS, one Service's slice gets a new
second endpoint address: its file is rewritten (temporary file + rename, as
a careful writer does). Afterwards:
  - every change programmed: `svcproxy diff` against the final directory
    exits 0 (the kernel holds exactly the final state), within a few
    seconds, and the kernel's map elements hold each changed address;
  - kubeproxy_network_programming_duration_seconds from /metrics: the
    share of changes programmed within 0.25 s, 0.5 s and 1 s (p99 < 1 s
    means at least 99 % within 1 s);
  - the daemon's RSS sampled every second: flat means the last third of
    the run does not exceed the first third's peak by more than 10 %.
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--svcproxy", required=True)
ap.add_argument("--services", type=int, default=10000)
ap.add_argument("--rate", type=int, default=100)
ap.add_argument("--seconds", type=int, default=60)
ap.add_argument("--min-sync-period", default="1s")
ap.add_argument("--mode", default="nftables")
ap.add_argument("--per-file", type=int, default=100, help="EndpointSlices per file")
a = ap.parse_args()

PER_FILE = a.per_file
tmp = tempfile.mkdtemp(prefix="sp-load.")
src = os.path.join(tmp, "src")
os.makedirs(src)
METRICS = "http://127.0.0.1:10249/metrics"


def ip(base, n):
    """base (a /9 or wider, e.g. 10.128.0.0) plus n."""
    return "%d.%d.%d.%d" % (base[0], base[1] + (n >> 16), (n >> 8) & 255, n & 255)


def cluster_ip(i):
    return ip((10, 96, 0, 0), i + 1)


def ep_ip(i, gen):
    # endpoint 0 fixed; endpoint 1 moves through 10.128.0.0/9 by generation
    return ip((10, 128, 0, 0), (i * 64 + gen) % (1 << 23) + 1)


services = [{"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "svc-%05d" % i, "namespace": "load"},
             "spec": {"type": "ClusterIP", "clusterIP": cluster_ip(i),
                      "ports": [{"name": "http", "protocol": "TCP", "port": 80,
                                 "targetPort": 8080}]}}
            for i in range(a.services)]
nodes = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
          "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]}}]
gen = [1] * a.services


def slice_obj(i):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "svc-%05d-1" % i, "namespace": "load",
                         "labels": {"kubernetes.io/service-name": "svc-%05d" % i}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip((10, 200, 0, 0), i + 1)],
                           "conditions": {"ready": True}, "nodeName": "node-1"},
                          {"addresses": [ep_ip(i, gen[i])],
                           "conditions": {"ready": True}, "nodeName": "node-2"}],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}


def write(path, items_text):
    t = path + ".tmp"
    with open(t, "w") as f:
        f.write('{"apiVersion":"v1","kind":"List","items":[' + ",".join(items_text) + "]}")
    os.rename(t, path)


# Each slice's JSON text, so that a change serialises one slice, not 100:
# the writer must keep up with RATE on a busy machine.
slice_text = [json.dumps(slice_obj(i), separators=(",", ":")) for i in range(a.services)]


def write_slices(f):
    lo = f * PER_FILE
    write(os.path.join(src, "slices-%05d.json" % f),
          slice_text[lo:min(lo + PER_FILE, a.services)])


write(os.path.join(src, "services.json"),
      [json.dumps(o, separators=(",", ":")) for o in services + nodes])
for f in range((a.services + PER_FILE - 1) // PER_FILE):
    write_slices(f)


def metrics():
    with urllib.request.urlopen(METRICS, timeout=10) as r:
        return r.read().decode()


def metric(text, name):
    m = re.search(r"^%s(?:\{\})? ([0-9.e+-]+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def buckets(text, name):
    out = {}
    for le, v in re.findall(r'^%s_bucket\{le="([^"]+)"\} ([0-9.e+]+)$' % re.escape(name), text,
                            re.M):
        out[le] = float(v)
    return out


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def diff_exit():
    return subprocess.run([a.svcproxy, "diff", "--proxy-mode", a.mode,
                           "--hostname-override", "node-1", src],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


log = open(os.path.join(tmp, "daemon.log"), "w")
t0 = time.time()
d = subprocess.Popen([a.svcproxy, "run", "--proxy-mode", a.mode, "--hostname-override", "node-1",
                      "--state-dir", tmp, "--min-sync-period", a.min_sync_period,
                      "--metrics-bind-address", "127.0.0.1:10249",
                      "--healthz-bind-address", "127.0.0.1:10256", src],
                     stdout=log, stderr=subprocess.STDOUT)
status = 0
try:
    while True:
        try:
            if metric(metrics(), "kubeproxy_sync_proxy_rules_last_timestamp_seconds"):
                break
        except OSError:
            pass
        if d.poll() is not None or time.time() - t0 > 600:
            print("FAIL: the daemon did not program the first state")
            sys.exit(1)
        time.sleep(0.2)
    first = time.time() - t0
    base = metrics()
    print("%d Services, first sync programmed after %.1f s, RSS %d MiB" %
          (a.services, first, rss_kb(d.pid) // 1024))

    rnd = random.Random(1)
    changed = set()
    rss = []
    n_changes = 0
    start = time.time()
    next_sample = start
    while n_changes < a.seconds * a.rate:
        i = rnd.randrange(a.services)
        gen[i] += 1
        slice_text[i] = json.dumps(slice_obj(i), separators=(",", ":"))
        changed.add(i)
        write_slices(i // PER_FILE)
        n_changes += 1
        now = time.time()
        if now >= next_sample:
            rss.append(rss_kb(d.pid))
            next_sample += 1
        time.sleep(max(0, start + n_changes / a.rate - now))
    elapsed = time.time() - start
    print("%d endpoint changes in %.1f s (%.1f per second) to %d Services" %
          (n_changes, elapsed, n_changes / elapsed, len(changed)))

    conv_start = time.time()
    while diff_exit() != 0:
        if time.time() - conv_start > 120:
            print("FAIL: the kernel did not converge to the final state within 120 s")
            status = 1
            break
        time.sleep(0.5)
    print("kernel equal to the final state (svcproxy diff exits 0) %.1f s after the last "
          "change" % (time.time() - conv_start))
    ruleset = subprocess.run(["nft", "list", "table", "ip", "svcproxy"], capture_output=True,
                             text=True).stdout
    missing = [i for i in changed if ep_ip(i, gen[i]) not in ruleset]
    if missing:
        print("FAIL: %d changed Services lack their last endpoint in the kernel, e.g. svc-%05d"
              % (len(missing), missing[0]))
        status = 1
    else:
        print("every changed Service has its last endpoint address in the kernel")

    end = metrics()
    name = "kubeproxy_network_programming_duration_seconds"
    b0, b1 = buckets(base, name), buckets(end, name)
    total = b1.get("+Inf", 0) - b0.get("+Inf", 0)
    share = {le: (b1.get(le, 0) - b0.get(le, 0)) / total if total else 0
             for le in ("0.25", "0.5", "1", "2")}
    print("%s: %d observations; within 0.25 s %.1f %%, 0.5 s %.1f %%, 1 s %.2f %%, 2 s %.2f %%" %
          (name, total, 100 * share["0.25"], 100 * share["0.5"], 100 * share["1"],
           100 * share["2"]))
    p99_under_1s = share["1"] >= 0.99
    print("network programming p99 under 1 s: %s" % ("yes" if p99_under_1s else "NO"))
    if not p99_under_1s:
        status = 1
    for m in ("kubeproxy_sync_proxy_rules_endpoint_changes_total",
              "kubeproxy_sync_proxy_rules_duration_seconds_count",
              "kubeproxy_sync_partial_proxy_rules_duration_seconds_count",
              "kubeproxy_sync_full_proxy_rules_duration_seconds_count",
              "svcproxy_sync_errors_total"):
        v0, v1 = metric(base, m), metric(end, m)
        if v1 is not None:
            print("%s: +%d" % (m, v1 - (v0 or 0)))
    for m in ("kubeproxy_sync_proxy_rules_duration_seconds",
              "kubeproxy_sync_partial_proxy_rules_duration_seconds"):
        s = (metric(end, m + "_sum") or 0) - (metric(base, m + "_sum") or 0)
        c = (metric(end, m + "_count") or 0) - (metric(base, m + "_count") or 0)
        if c:
            print("%s: mean %.3f s over %d syncs" % (m, s / c, c))
    third = max(1, len(rss) // 3)
    early, late = max(rss[:third]), max(rss[-third:])
    print("RSS (MiB) every 10 s: %s" % " ".join(str(r // 1024) for r in rss[::10]))
    flat = late <= early * 1.10
    print("RSS first third peak %d MiB, last third peak %d MiB: %s" %
          (early // 1024, late // 1024, "flat" if flat else "GROWING"))
    if not flat:
        status = 1
finally:
    d.terminate()
    try:
        d.wait(timeout=30)
    except subprocess.TimeoutExpired:
        d.kill()
    subprocess.run([a.svcproxy, "cleanup", "--proxy-mode", a.mode, "--state-dir", tmp],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", tmp])
sys.exit(status)
