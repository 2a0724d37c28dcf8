#!/usr/bin/env python3
"""What an nftables layout costs the kernel, measured with `nft -f`.

docs/performance.md uses this to show where the nftables targets stand:
the same S Services x E endpoints written four ways, each loaded into a
fresh network namespace, then one endpoint changed. The change is timed
with the kernel's part alone in mind: each layout's change is compared with
a change nft can make without touching a rule that needs validation (an
`add rule ... counter`), since `nft -f` fetches its cache either way.

  cascade   svcproxy's layout: a chain per Service port choosing its
            endpoint with `numgen random mod n` rules, dnat in each rule
  setmap    a named interval map per Service, `numgen random mod 65536`
            into it (the rule never changes, only the map's elements)
  onemap    one map of all endpoints keyed by (ClusterIP, slot); every
            Service chain looks it up (10,000 rules bound to one map)
  pickmap   one map keyed by (ClusterIP, port, slot); Service chains goto a
            shared chain per endpoint count that does the lookup

Run as root: python3 bench/nft-layouts.py [-s 10000] [-e 10] [--layouts ...]
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

M = 65536


def vip(i):
    return "10.%d.%d.%d" % (96 + i // 65536, (i // 256) % 256, i % 256)


def ep(i, j, E):
    n = i * E + j
    return "10.%d.%d.%d" % (128 + n // 65536, (n // 256) % 256, n % 256)


def header(S):
    out = ["table ip t {",
           "\tmap service-ips {",
           "\t\ttype ipv4_addr . inet_proto . inet_service : verdict",
           "\t\telements = {"]
    out.append(",\n".join("\t\t\t%s . tcp . 80 : goto svc-%d" % (vip(i), i) for i in range(S)))
    out += ["\t\t}", "\t}",
            "\tchain pre {",
            "\t\ttype nat hook prerouting priority -100; policy accept;",
            "\t\tip daddr . meta l4proto . th dport vmap @service-ips",
            "\t}"]
    return out


MASQ = "\t\tip saddr != 10.128.0.0/9 meta mark set meta mark | 0x4000"


def cascade(S, E):
    out = header(S)
    for i in range(S):
        out += ["\tchain svc-%d {" % i, MASQ]
        for j in range(E):
            pick = "numgen random mod %d == 0 " % (E - j) if E - j > 1 else ""
            out.append("\t\tmeta l4proto tcp %sdnat ip to %s:8080" % (pick, ep(i, j, E)))
        out.append("\t}")
    out.append("}")
    change = ("replace rule ip t svc-{mid} handle {handle} "
              "meta l4proto tcp numgen random mod %d == 0 dnat ip to 10.255.0.1:8080" % E)
    return out, change


def setmap(S, E):
    out = header(S)
    for i in range(S):
        els = ", ".join("%d-%d : %s . 8080" % (j * M // E, (j + 1) * M // E - 1, ep(i, j, E))
                        for j in range(E))
        out += ["\tmap ep-%d {" % i,
                "\t\ttypeof numgen random mod %d : ip daddr . tcp dport" % M,
                "\t\tflags interval",
                "\t\telements = { %s }" % els, "\t}",
                "\tchain svc-%d {" % i, MASQ,
                "\t\tmeta l4proto tcp dnat ip to numgen random mod %d map @ep-%d" % (M, i),
                "\t}"]
    out.append("}")
    change = ("delete element ip t ep-{mid} { 0-%d }\n"
              "add element ip t ep-{mid} { 0-%d : 10.255.0.1 . 8080 }" % (M // E - 1, M // E - 1))
    return out, change


def onemap(S, E):
    out = header(S)
    out += ["\tmap eps {",
            "\t\ttypeof ip daddr . numgen random mod %d : ip daddr . tcp dport" % E,
            "\t\telements = {"]
    out.append(",\n".join("\t\t\t%s . %d : %s . 8080" % (vip(i), j, ep(i, j, E))
                          for i in range(S) for j in range(E)))
    out += ["\t\t}", "\t}"]
    for i in range(S):
        out += ["\tchain svc-%d {" % i, MASQ,
                "\t\tmeta l4proto tcp dnat ip to ip daddr . numgen random mod %d map @eps" % E,
                "\t}"]
    out.append("}")
    change = ("delete element ip t eps { {vip} . 0 }\n"
              "add element ip t eps { {vip} . 0 : 10.255.0.1 . 8080 }")
    return out, change


def pickmap(S, E):
    out = header(S)
    out += ["\tmap eps {",
            "\t\ttypeof ip daddr . th dport . numgen random mod %d : ip daddr . th dport" % E,
            "\t\telements = {"]
    out.append(",\n".join("\t\t\t%s . 80 . %d : %s . 8080" % (vip(i), j, ep(i, j, E))
                          for i in range(S) for j in range(E)))
    out += ["\t\t}", "\t}",
            "\tchain pick-%d {" % E,
            "\t\tmeta l4proto tcp dnat ip to ip daddr . th dport . numgen random mod %d map @eps" % E,
            "\t}"]
    for i in range(S):
        out += ["\tchain svc-%d {" % i, MASQ, "\t\tgoto pick-%d" % E, "\t}"]
    out.append("}")
    change = ("delete element ip t eps { {vip} . 80 . 0 }\n"
              "add element ip t eps { {vip} . 80 . 0 : 10.255.0.1 . 8080 }")
    return out, change


LAYOUTS = {"cascade": cascade, "setmap": setmap, "onemap": onemap, "pickmap": pickmap}


def nft(ns, path):
    """Run nft -f in ns; return (wall, user, sys) of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", path], check=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def rule_handle(ns, chain):
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-a", "list", "chain", "ip", "t",
                          chain], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "numgen" in line and "dnat" in line:
            return line.rsplit("# handle ", 1)[1].strip()
    raise RuntimeError("no endpoint rule in " + chain)


def measure(name, S, E, tmp):
    text, change = LAYOUTS[name](S, E)
    script = os.path.join(tmp, name + ".nft")
    with open(script, "w") as f:
        f.write("\n".join(text) + "\n")
    ns = "sp-layouts-%d-%s" % (os.getpid(), name)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        load = nft(ns, script)
        mid = S // 2
        handle = rule_handle(ns, "svc-%d" % mid) if name == "cascade" else ""
        chg = os.path.join(tmp, name + ".chg")
        with open(chg, "w") as f:
            f.write(change.replace("{mid}", str(mid)).replace("{vip}", vip(mid))
                    .replace("{handle}", handle) + "\n")
        base = os.path.join(tmp, name + ".base")
        with open(base, "w") as f:
            f.write("add rule ip t svc-%d counter\n" % mid)
        changed = min((nft(ns, chg) for _ in range(3)), key=lambda m: m[2])
        baseline = min((nft(ns, base) for _ in range(3)), key=lambda m: m[2])
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return load, changed, baseline


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-s", "--services", type=int, default=10000)
    ap.add_argument("-e", "--endpoints", type=int, default=10)
    ap.add_argument("--layouts", default="cascade,setmap,pickmap",
                    help="comma list of %s (onemap takes minutes at 10,000)"
                    % ",".join(LAYOUTS))
    a = ap.parse_args()
    print("%d Services x %d endpoints, nft -f into a fresh namespace" % (a.services, a.endpoints))
    print("%-8s %9s %8s %8s | %-30s" % ("layout", "load", "user", "sys",
                                        "one endpoint changed: sys (counter rule: sys)"))
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.layouts.split(","):
            load, changed, baseline = measure(name, a.services, a.endpoints, tmp)
            print("%-8s %7.2f s %6.2f s %6.2f s | %6.3f s (%.3f s)" % (
                name, load[0], load[1], load[2], changed[2], baseline[2]))
            sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
