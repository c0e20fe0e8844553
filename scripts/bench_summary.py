#!/usr/bin/env python3
"""Summarises scripts/bench.sh's JSON lines: medians with the spread
[min-max] of GiB/s per configuration, ratios of mst to each other method
(medians of the per-repeat ratios, runs paired by repeat inside one job),
phases, memory; writes summary.md and the .dat files the plots read.
    bench_summary.py RESULTS_DIR"""
import collections
import json
import os
import statistics
import sys

METHODS = ["mst", "raw", "per-rank", "gather", "per-rank+consolidate"]
OTHERS = ["raw", "per-rank", "gather", "per-rank+consolidate"]


def load(d, name):
    p = os.path.join(d, name + ".jsonl")
    if not os.path.exists(p):
        return []
    return [json.loads(l) for l in open(p) if l.startswith("{")]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return "%.2f [%.2f-%.2f]" % (med(xs), min(xs), max(xs)) if xs else "-"


def key(r, *extra):
    return (r["ranks"], r["fsync"], r["mix"], r["dtype"], r["layout"], r["tensors"],
            r["bytes"]) + tuple(r[e] for e in extra)


def method_table(rows, out, title, config_cols):
    """One line per configuration: each method's GiB/s, the ratios mst/other."""
    groups = collections.OrderedDict()
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    out.append("### " + title + "\n")
    out.append("| " + " | ".join(config_cols) + " | " +
               " | ".join(m + " GiB/s" for m in METHODS) + " | " +
               " | ".join("mst/" + m for m in OTHERS) + " |")
    out.append("|" + "---|" * (len(config_cols) + len(METHODS) + len(OTHERS)))
    for k, rs in groups.items():
        by = collections.defaultdict(dict)
        for r in rs:
            by[r["method"]][r["run"]] = r
        cells = []
        for c in config_cols:
            cells.append({"ranks": str(k[0]), "fsync": "yes" if k[1] else "no",
                          "workload": "%s, %s, %d tensors, %.0f MiB" %
                          (k[2], k[3], k[5], k[6] / 2**20)}[c])
        for m in METHODS:
            cells.append(spread([r["gib_per_s"] for r in by[m].values()]))
        for m in OTHERS:
            ratios = [by["mst"][i]["gib_per_s"] / by[m][i]["gib_per_s"]
                      for i in by["mst"] if i in by[m] and by[m][i]["gib_per_s"] > 0]
            cells.append(spread(ratios))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return groups


def phase_table(rows, out, title):
    groups = collections.OrderedDict()
    for r in rows:
        groups.setdefault((r["ranks"], r["fsync"], r["method"]), []).append(r)
    out.append("### " + title + "\n")
    out.append("| ranks | fsync | method | total s | plan s | write s | sync s | commit s | "
               "consolidate s | CPU s (max rank) | extra MiB (max rank) | extra MiB (rank 0) |")
    out.append("|" + "---|" * 12)
    for (n, fs, m), rs in groups.items():
        ph = lambda p: "%.3f" % med([r["phases"].get(p, 0) for r in rs])
        out.append("| %d | %s | %s | %.3f | %s | %s | %s | %s | %s | %.3f | %.1f | %.1f |" % (
            n, "yes" if fs else "no", m, med([r["seconds"] for r in rs]), ph("plan"),
            ph("write"), ph("sync"), ph("commit"),
            ph("consolidate") if m == "per-rank+consolidate" else "-",
            med([max(r.get("cpu_s", [0])) for r in rs]),
            med([max(r["extra_mib"]) for r in rs]), med([r["extra_mib"][0] for r in rs])))
    out.append("")


def main():
    d = sys.argv[1]
    out = ["# Benchmark results\n"]
    mt = os.path.join(d, "machine.txt")
    if os.path.exists(mt):
        out += ["```", open(mt).read().rstrip(), "```", ""]

    scaling = load(d, "scaling")
    if scaling:
        for fs in (True, False):
            rs = [r for r in scaling if r["fsync"] is fs]
            if not rs:
                continue
            groups = method_table(rs, out, "Scaling, %s fsync: GiB/s median [min-max], ratios "
                                  "of paired runs" % ("with" if fs else "without"),
                                  ["ranks", "workload"])
            with open(os.path.join(d, "throughput-%s.dat" % ("fsync" if fs else "nofsync")),
                      "w") as f:
                f.write("ranks " + " ".join(m.replace("+", "_") for m in METHODS) + "\n")
                for k, g in groups.items():
                    f.write("%d %s\n" % (k[0], " ".join(
                        "%.4f" % med([r["gib_per_s"] for r in g if r["method"] == m])
                        for m in METHODS)))
        phase_table(scaling, out, "Scaling: phases (medians) and memory beyond the caller's "
                    "tensors")

    work = load(d, "workloads")
    if work:
        for fs in (True, False):
            rs = [r for r in work if r["fsync"] is fs]
            if rs:
                method_table(rs, out, "Workloads, %s fsync" % ("with" if fs else "without"),
                             ["ranks", "workload"])
        tiny = [r for r in work if r["tensors"] >= 100000]
        if tiny:
            phase_table(tiny, out, "100,000 tiny tensors: phases and memory")

    # results from before mst-bench's "redistribute" prototype was removed
    # hold rows of that method too: only mst's are summarised
    lay = [r for r in load(d, "layout") if r["method"] == "mst"]
    if lay:
        out.append("### Column splits against row splits (mst, BF16, every tensor split over "
                   "all ranks)\n")
        out.append("| ranks | fsync | rows GiB/s | cols GiB/s | cols/rows (paired) | "
                   "cols extra MiB (max rank) |")
        out.append("|---|---|---|---|---|---|")
        groups = collections.OrderedDict()
        for r in lay:
            groups.setdefault((r["ranks"], r["fsync"]), {"rows": [], "cols": []})[
                r["layout"]].append(r)
        for (n, fs), g in groups.items():
            pairs = [c["gib_per_s"] / w["gib_per_s"] for w, c in zip(g["rows"], g["cols"])]
            out.append("| %d | %s | %s | %s | %s | %.1f |" % (
                n, "yes" if fs else "no", spread([r["gib_per_s"] for r in g["rows"]]),
                spread([r["gib_per_s"] for r in g["cols"]]), spread(pairs),
                med([max(r["extra_mib"]) for r in g["cols"]])))
        out.append("")

    mem = [r for r in load(d, "memory") if r["method"] == "mst"]
    if mem:
        out.append("### Column splits, the same box per rank, growing global tensors (no fsync, "
                   "fresh processes, first run)\n")
        out.append("| method | ranks | global MiB | box MiB per rank | rss before (max) | "
                   "peak (max) | extra MiB per rank |")
        out.append("|---|---|---|---|---|---|---|")
        for r in sorted(mem, key=lambda r: r["ranks"]):
            out.append("| %s | %d | %.0f | %.0f | %.1f | %.1f | %s |" % (
                r["method"], r["ranks"], r["bytes"] / 2**20, r["bytes"] / 2**20 / r["ranks"],
                max(r["rss_before_mib"]), max(r["peak_mib"]),
                ", ".join("%.1f" % x for x in r["extra_mib"])))
        out.append("")

    plan = load(d, "planning")
    if plan:
        out.append("### Planning at scale (mst, tiny F32 tensors, no fsync)\n")
        out.append("| ranks | tensors | run | total s | exchange+plan+header s | write s | "
                   "rank 0 CPU s (plan) | rank 0 CPU s (whole save) | rank 0 extra MiB | "
                   "rank 0 bytes per tensor | other ranks extra MiB (max) |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in plan:
            out.append("| %d | %d | %d | %.3f | %.3f | %.3f | %s | %.3f | %.1f | %.0f | %.1f |" % (
                r["ranks"], r["tensors"], r["run"], r["seconds"], r["phases"]["plan"],
                r["phases"]["write"],
                "%.3f" % r["cpu_plan_s"][0] if "cpu_plan_s" in r else "-",
                r.get("cpu_s", [0])[0], r["extra_mib"][0],
                r["extra_mib"][0] * 2**20 / r["tensors"], max(r["extra_mib"][1:] or [0])))
        out.append("")

    ld = load(d, "load")
    if ld:
        out.append("### Parallel loader against its baselines (every rank loads its boxes; "
                   "medians [min-max] of GiB/s of bytes requested)\n")
        lm = ["load", "load-raw", "load-raw-file", "load-local", "load-scatter"]
        out.append("| ranks | layout | " + " | ".join(lm) + " | load/raw (paired) | "
                   "load/raw-file (paired) | load/local (paired) | load bytes read/requested "
                   "| load extra MiB (max rank) | cache dropped |")
        out.append("|---|---|" + "---|" * (len(lm) + 6))
        groups = collections.OrderedDict()
        for r in ld:
            g = groups.setdefault((r["ranks"], r["layout"], r["tensors"]), {})
            g.setdefault(r["method"], {})[r["run"]] = r
        for (n, lay, nt), g in groups.items():
            def pair(a, b):
                return [g[a][k]["gib_per_s"] / g[b][k]["gib_per_s"]
                        for k in g.get(a, {}) if k in g.get(b, {})]
            L = list(g.get("load", {}).values())
            out.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                n, lay, " | ".join(spread([x["gib_per_s"] for x in g.get(m, {}).values()])
                                   for m in lm),
                spread(pair("load", "load-raw")), spread(pair("load", "load-raw-file")),
                spread(pair("load", "load-local")),
                "%.4f" % max(x["read_ratio"] for x in L) if L else "-",
                "%.1f" % med([max(x["extra_mib"]) for x in L]) if L else "-",
                "yes" if all(x.get("cache_dropped") for x in ld) else "no"))
        out.append("")
    lh = load(d, "loadheader")
    if lh:
        out.append("### Header of many tiny tensors, read once and shared (open_s: until every "
                   "rank knows the header)\n")
        out.append("| method | ranks | tensors | runs | open s median [min-max] | "
                   "total s median |")
        out.append("|---|---|---|---|---|---|")
        groups = collections.OrderedDict()
        for r in lh:
            groups.setdefault((r["method"], r["ranks"], r["tensors"]), []).append(r)
        for (m, n, nt), g in groups.items():
            out.append("| %s | %d | %d | %d | %s | %.3f |" % (
                m, n, nt, len(g), "%.3f [%.3f-%.3f]" % (
                    med([x["open_s"] for x in g]), min(x["open_s"] for x in g),
                    max(x["open_s"] for x in g)), med([x["seconds"] for x in g])))
        out.append("")

    def split(rows):
        """rank 0's declare / exchange / plan seconds (medians), where measured"""
        xs = [r["rank0_plan"] for r in rows if "rank0_plan" in r]
        if not xs:
            return "-"
        return " / ".join("%.4f" % med([x[k] for x in xs]) for k in ("declare", "exchange", "plan"))

    sm = load(d, "small")
    if sm:
        out.append("### Many small tensors (issue 19): seconds, median [min-max]; ratios of "
                   "medians\n")
        out.append("| io | ranks | tensors | mst s | gather s | raw s | gather/mst (goal >= 1.5) "
                   "| raw/mst (goal >= 0.3) | mst plan s | rank 0: declare / exchange / plan s "
                   "| mst write s |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        groups = collections.OrderedDict()
        for r in sm:
            groups.setdefault((r["io"], r["ranks"], r["tensors"]), {}).setdefault(
                r["method"], []).append(r)
        for (io, n, nt), g in groups.items():
            def secs(m):
                return [x["seconds"] for x in g.get(m, [])]
            def rng(xs):
                return "%.4f [%.4f-%.4f]" % (med(xs), min(xs), max(xs)) if xs else "-"
            mm = med(secs("mst"))
            out.append("| %s | %d | %d | %s | %s | %s | %.2f | %.2f | %.4f | %s | %.4f |" % (
                io, n, nt, rng(secs("mst")), rng(secs("gather")), rng(secs("raw")),
                med(secs("gather")) / mm, med(secs("raw")) / mm,
                med([x["phases"]["plan"] for x in g.get("mst", [])]), split(g.get("mst", [])),
                med([x["phases"]["write"] for x in g.get("mst", [])])))
        out.append("")
    s1 = load(d, "small1m")
    if s1:
        out.append("### The largest count of tiny tensors, saved (goal: 10^6 under 2 s at 4 "
                   "ranks)\n")
        out.append("| ranks | tensors | runs | total s median [min-max] | to the first open s "
                   "| rank 0: declare / exchange / plan s | then writes s | rank 0 extra MiB |")
        out.append("|---|---|---|---|---|---|---|---|")
        xs = [x["seconds"] for x in s1]
        out.append("| %d | %d | %d | %.3f [%.3f-%.3f] | %.3f | %s | %.3f | %.1f |" % (
            s1[0]["ranks"], s1[0]["tensors"], len(s1), med(xs), min(xs), max(xs),
            med([x["phases"]["plan"] for x in s1]), split(s1),
            med([x["phases"]["write"] for x in s1]),
            med([x["extra_mib"][0] for x in s1])))
        out.append("")
    sp = load(d, "smallsplit")
    if sp:
        out.append("### Column against row splits, 8 BF16 [2048, 4096] (goal: cols >= 0.9x "
                   "rows)\n")
        out.append("| ranks | rows s median | cols s median | rows/cols time (= cols speed "
                   "relative to rows) |")
        out.append("|---|---|---|---|")
        groups = collections.OrderedDict()
        for r in sp:
            groups.setdefault(r["ranks"], {}).setdefault(r["layout"], []).append(r["seconds"])
        for n, g in groups.items():
            out.append("| %d | %.4f | %.4f | %.2f |" % (
                n, med(g.get("rows", [])), med(g.get("cols", [])),
                med(g.get("rows", [])) / med(g.get("cols", []))))
        out.append("")

    open(os.path.join(d, "summary.md"), "w").write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
