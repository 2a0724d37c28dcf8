#!/usr/bin/env python3
"""Benchmark results (bench.py's JSON) as text tables and an SVG plot.

  report.py RESULTS.json [--svg OUT.svg]   prints the tables, writes the plot
"""
import json
import math
import sys

COLORS = {"nftables": "#1b6ac9", "iptables": "#d1495b", "ipvs": "#2a9d43",
          "kube-proxy nft": "#777777"}


def fnum(x, unit="s"):
    if x is None:
        return "-"
    if unit == "s":
        if x < 0.01:
            return "%.2f ms" % (x * 1e3)
        return "%.3f s" % x
    return "%.1f" % x


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return "-"
    return "%.2f" % (a / b)


def wall(m):
    return m.get("wall") if m and m.get("status") == 0 else None


def kp_estimate(res, S):
    """kube-proxy's layout at S: measured, or extrapolated from the two
    largest measured sizes with t = a*S^2 + b*S (the kernel's commit cost
    is quadratic in the number of sets and chains, see docs/performance.md)."""
    pts = sorted((m["services"], m["wall"]) for m in res.get("kube_proxy_nft", [])
                 if m.get("status") == 0)
    for s, t in pts:
        if s == S:
            return t, "measured"
    capped = [m for m in res.get("kube_proxy_nft", []) if m.get("status") == 124 and
              m["services"] == S]
    if capped:
        return capped[0]["wall"], "capped"
    if len(pts) < 2:
        return None, None
    (s1, t1), (s2, t2) = pts[-2], pts[-1]
    # Solve t = a s^2 + b s through both points.
    a = (t2 / s2 - t1 / s1) / (s2 - s1)
    b = t1 / s1 - a * s1
    return a * S * S + b * S, "extrapolated"


def table(res):
    out = []
    m = res.get("machine", {})
    out.append("svcproxy benchmark, %s, %s cores, %s MiB, kernel %s (run %s, %s s, commit %s, "
               "load average %s at start, %s at end)"
               % (m.get("cpu"), m.get("cores"), m.get("mem_mib"), m.get("kernel"),
                  res.get("started"), res.get("duration_s"), m.get("commit"),
                  m.get("loadavg_at_start"), res.get("loadavg_at_end")))
    if res.get("lab_machine"):
        out.append("ipvs rows: kernel lab (user-mode-linux %s)" % res["lab_machine"]["kernel"])
    out.append("")
    out.append("Full sync from empty (one-shot `svcproxy sync`, fresh namespace)")
    hdr = "%-9s %6s %9s %9s %9s %7s %7s | %-23s %9s %9s %9s %7s | %7s"
    out.append(hdr % ("mode", "S", "wall", "user", "sys", "RSS MiB", "msgs", "tool", "wall",
                      "user", "sys", "RSS MiB", "sp/tool"))
    for r in res.get("control", []):
        f, t = r["full"], r["tool"]
        tf = t["full"]
        out.append(hdr % (r["mode"], r["services"], fnum(wall(f)), fnum(f.get("user")),
                          fnum(f.get("sys")), fnum(f.get("maxrss_kb", 0) / 1024, ""),
                          f.get("messages_sent", "-"), t["tool"], fnum(wall(tf)),
                          fnum(tf.get("user")), fnum(tf.get("sys")),
                          fnum(tf.get("maxrss_kb", 0) / 1024, ""), ratio(wall(f), wall(tf))))
    out.append("")
    out.append("Incremental: one-shot sync (re-reads the kernel, full=1), the daemon's partial "
               "sync (its log), and the tool loading only the change")
    hdr = "%-9s %6s %-8s | %10s %6s | %10s %6s | %10s | %9s %9s"
    out.append(hdr % ("mode", "S", "change", "one-shot", "msgs", "daemon", "msgs", "tool",
                      "shot/tool", "dmn/tool"))
    for r in res.get("control", []):
        d, t = r.get("daemon") or {}, r["tool"]
        for key, label in (("ep", "endpoint"), ("svc", "service"), ("noop", "none")):
            shot = r.get(key) or {}
            dm = d.get(key)
            tw = wall(t.get(key)) if key in t else None
            out.append(hdr % (r["mode"], r["services"], label, fnum(wall(shot)),
                              shot.get("messages_sent", "-"),
                              fnum(dm["seconds"]) if dm else ("no sync" if key == "noop" and
                                                              "ep" in d else "-"),
                              dm["messages"] if dm else "-", fnum(tw), ratio(wall(shot), tw),
                              ratio(dm["seconds"] if dm else None, tw)))
        if d.get("vmhwm_kb"):
            out.append("%-9s %6s daemon peak RSS %.1f MiB, first (full) sync %s"
                       % (r["mode"], r["services"], d["vmhwm_kb"] / 1024,
                          fnum(d["first"]["seconds"]) if d.get("first") else "-"))
        split = [(label, d[key]) for key, label in (("ep", "endpoint"), ("svc", "service"))
                 if d.get(key) and "backend_seconds" in d[key]]
        if split:
            out.append("%-9s %6s daemon partial sync split: %s" % (
                r["mode"], r["services"], "; ".join(
                    "%s: model+plan %s, backend (diff+kernel) %s"
                    % (label, fnum(x["plan_seconds"]), fnum(x["backend_seconds"]))
                    for label, x in split)))
    kp = res.get("kube_proxy_nft", [])
    if kp:
        out.append("")
        out.append("kube-proxy's own nftables layout (chain per endpoint, anonymous numgen vmap "
                   "per service), `nft -f`")
        nft_full = {r["services"]: wall(r["full"]) for r in res.get("control", [])
                    if r["mode"] == "nftables"}
        sizes = sorted(set([k["services"] for k in kp] + list(nft_full)))
        out.append("%6s %14s %-13s %12s %10s" % ("S", "kube-proxy", "", "svcproxy", "kp/sp"))
        for S in sizes:
            t, how = kp_estimate(res, S)
            sp = nft_full.get(S)
            out.append("%6s %14s %-13s %12s %10s" % (S, (">" if how == "capped" else "") +
                                                     fnum(t), how or "", fnum(sp),
                                                     ratio(t, sp)))
    dp = res.get("datapath", [])
    if dp:
        out.append("")
        out.append("Data path: TCP connect() from a client namespace through the node "
                   "namespace (holding the rules) to the last Service's ClusterIP, and directly "
                   "to one of its endpoints (still through the node's rules, matching none); "
                   "median and p90 (first tenth of each round left out), median of 5 alternating rounds")
        hdr = "%-9s %6s %11s %11s %9s | %11s %11s %9s"
        out.append(hdr % ("mode", "S", "service", "p90", "vs S=min", "direct", "p90",
                          "vs S=min"))
        base = {}
        for r in sorted(dp, key=lambda r: (r["mode"], r["services"])):
            svc, direct = r.get("service", {}), r.get("direct", {})
            ms, md = svc.get("median_us"), direct.get("median_us")
            base.setdefault(r["mode"], (ms, md))
            out.append(hdr % (r["mode"], r["services"], us(ms), us(svc.get("p90_us")),
                              ratio(ms, base[r["mode"]][0]), us(md), us(direct.get("p90_us")),
                              ratio(md, base[r["mode"]][1])))
    if res.get("warnings"):
        out.append("")
        out.append("Targets missed (reported, not enforced):")
        out += ["  " + f for f in res["warnings"]]
    if res.get("failures"):
        out.append("")
        out.append("FAILED CHECKS:")
        out += ["  " + f for f in res["failures"]]
    return "\n".join(out)


def us(x):
    return "-" if x is None else "%.1f us" % x


# ---- SVG ------------------------------------------------------------------------------
class Panel:
    def __init__(self, x, y, w, h, title, xs, ys, xlabel, ylabel, logx=True):
        self.x, self.y, self.w, self.h = x, y, w, h
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.logx = logx
        xv = [v for v in xs if v and v > 0] or [1, 10]
        self.x0, self.x1 = min(xv) / 1.6, max(xv) * 1.6
        self.y0, self.y1 = self.bounds(ys, True)
        self.parts = []

    @staticmethod
    def bounds(vals, log):
        vals = [v for v in vals if v and v > 0]
        if not vals:
            return (1, 10) if log else (0, 1)
        lo, hi = min(vals), max(vals)
        if log:
            return 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi) + 1e-9)
        return lo, hi

    def px(self, v):
        if self.logx:
            f = (math.log10(v) - math.log10(self.x0)) / (math.log10(self.x1) -
                                                         math.log10(self.x0))
        else:
            f = (v - self.x0) / ((self.x1 - self.x0) or 1)
        return self.x + 50 + f * (self.w - 70)

    def py(self, v):
        f = (math.log10(v) - math.log10(self.y0)) / (math.log10(self.y1) - math.log10(self.y0))
        return self.y + self.h - 40 - f * (self.h - 70)

    def frame(self):
        p = self.parts
        p.append('<text x="%d" y="%d" font-weight="bold">%s</text>'
                 % (self.x + 50, self.y + 18, esc(self.title)))
        x0, x1 = self.x + 50, self.x + self.w - 20
        y0, y1 = self.y + self.h - 40, self.y + 30
        p.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>'
                 % (x0, y1, x1 - x0, y0 - y1))
        e = math.floor(math.log10(self.y0))
        while 10 ** e <= self.y1 * 1.0001:
            yy = self.py(10 ** e)
            p.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>'
                     % (x0, yy, x1, yy))
            p.append('<text x="%d" y="%.1f" text-anchor="end" font-size="10">%s</text>'
                     % (x0 - 4, yy + 3, short(10 ** e)))
            e += 1
        p.append('<text x="%d" y="%d" font-size="11" text-anchor="middle">%s</text>'
                 % ((x0 + x1) / 2, self.y + self.h - 8, esc(self.xlabel)))
        p.append('<text x="%d" y="%d" font-size="11" transform="rotate(-90 %d %d)" '
                 'text-anchor="middle">%s</text>'
                 % (self.x + 12, (y0 + y1) / 2, self.x + 12, (y0 + y1) / 2, esc(self.ylabel)))

    def xticks(self, xs):
        for v in sorted(set(xs)):
            self.parts.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%s'
                              '</text>' % (self.px(v), self.y + self.h - 26, short(v)))

    def line(self, pts, color, dash="", label=None, legend_row=0):
        pts = [(x, y) for x, y in pts if y and y > 0]
        if not pts:
            return
        d = " ".join("%.1f,%.1f" % (self.px(x), self.py(y)) for x, y in pts)
        self.parts.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2" '
                          'stroke-dasharray="%s"/>' % (d, color, dash))
        for x, y in pts:
            self.parts.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>'
                              % (self.px(x), self.py(y), color))
        if label:
            ly = self.y + 42 + 14 * legend_row
            lx = self.x + 60
            self.parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" '
                              'stroke-width="2" stroke-dasharray="%s"/>'
                              % (lx, ly - 4, lx + 22, ly - 4, color, dash))
            self.parts.append('<text x="%d" y="%d" font-size="10">%s</text>'
                              % (lx + 26, ly, esc(label)))


def short(v):
    if v >= 1000:
        return "%gk" % (v / 1000)
    if v >= 1:
        return "%g" % v
    return "%g" % v


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg(res):
    ctl = res.get("control", [])
    modes = [m for m in ("nftables", "iptables", "ipvs") if any(r["mode"] == m for r in ctl)]
    W, H = 1260, 380
    parts = []
    # 1. full sync vs S
    xs = [r["services"] for r in ctl] + [k["services"] for k in res.get("kube_proxy_nft", [])]
    ys = [wall(r["full"]) for r in ctl] + [wall(r["tool"]["full"]) for r in ctl]
    kp = [(S, kp_estimate(res, S)[0]) for S in sorted(set(xs))
          if kp_estimate(res, S)[0]] if res.get("kube_proxy_nft") else []
    ys += [t for _, t in kp]
    p1 = Panel(0, 0, 420, H, "Full sync from empty", xs, ys, "Services (x10 endpoints)",
               "seconds (wall)")
    p1.frame()
    p1.xticks(xs)
    row = 0
    for m in modes:
        rows = sorted((r for r in ctl if r["mode"] == m), key=lambda r: r["services"])
        p1.line([(r["services"], wall(r["full"])) for r in rows], COLORS[m], "",
                "svcproxy " + m + (" (kernel lab, UML)" if m == "ipvs" else ""), row)
        p1.line([(r["services"], wall(r["tool"]["full"])) for r in rows], COLORS[m], "5,4",
                rows[0]["tool"]["tool"] if rows else None, row + 1)
        row += 2
    if kp:
        p1.line(kp, COLORS["kube-proxy nft"], "2,3", "nft -f, kube-proxy layout (past %s: extrapolated)"
                % short(max(k["services"] for k in res["kube_proxy_nft"]
                            if k.get("status") == 0)), row)
    parts += p1.parts
    # 2. incremental (daemon partial, endpoint change) vs S
    pts = {m: [] for m in modes}
    tool = {m: [] for m in modes}
    for r in ctl:
        d = (r.get("daemon") or {}).get("ep")
        if d:
            pts[r["mode"]].append((r["services"], d["seconds"]))
        tool[r["mode"]].append((r["services"], wall(r["tool"].get("ep"))))
    ys = [y for v in pts.values() for _, y in v] + [y for v in tool.values() for _, y in v]
    p2 = Panel(420, 0, 420, H, "One endpoint changed", xs, ys, "Services (x10 endpoints)",
               "seconds")
    p2.frame()
    p2.xticks([r["services"] for r in ctl])
    row = 0
    for m in modes:
        p2.line(sorted(pts[m]), COLORS[m], "", "svcproxy run (partial) " + m, row)
        p2.line(sorted(tool[m]), COLORS[m], "5,4", "tool, change only " + m, row + 1)
        row += 2
    parts += p2.parts
    # 3. data path
    dp = res.get("datapath", [])
    ys = [r.get("service", {}).get("median_us") for r in dp]
    p3 = Panel(840, 0, 420, H, "TCP connect() to the last Service", [r["services"] for r in dp],
               ys, "Services", "median microseconds")
    p3.frame()
    p3.xticks([r["services"] for r in dp])
    row = 0
    for m in ("nftables", "iptables", "ipvs"):
        rows = sorted((r for r in dp if r["mode"] == m), key=lambda r: r["services"])
        if rows:
            p3.line([(r["services"], r.get("service", {}).get("median_us")) for r in rows],
                    COLORS[m], "", m, row)
            row += 1
    parts += p3.parts
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
            'font-family="sans-serif" font-size="12">\n<rect width="100%%" height="100%%" '
            'fill="white"/>\n%s\n</svg>\n' % (W, H, "\n".join(parts)))


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        res = json.load(f)
    print(table(res))
    if len(sys.argv) > 3 and sys.argv[2] == "--svg":
        with open(sys.argv[3], "w") as f:
            f.write(svg(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
