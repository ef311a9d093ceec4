"""What `raftkv chaos` writes: the summary line, chaos.md, chaos.json and the chaos.png timeline."""

from __future__ import annotations

import json
import os
import statistics
import sys


def summary_line(report: dict) -> str:
    v = report["verdict"]
    windows_s = [f["unavailable_s"] for f in report["faults"]]
    return (f"chaos: {'PASS' if v['ok'] else 'FAIL'}  {report['operations']} operations, "
            f"linearizable={v['linearizable']}, lost acknowledged writes={len(v['lost_acknowledged_writes'])}, "
            f"worst unavailability {max(windows_s, default=0):.2f}s over {len(windows_s)} faults"
            + (f"; {v['error']}" if v.get("error") else ""))


def write_reports(report: dict, out: str) -> None:
    with open(os.path.join(out, "chaos.json"), "w") as f:
        json.dump(report, f, indent=1)
    lines = [f"# raftkv chaos: {report['schedule']} schedule, {report['nodes']} nodes, {report['clients']} clients",
             "", f"**Verdict: {'PASS' if report['verdict']['ok'] else 'FAIL'}** — "
             f"{report['operations']} operations; linearizable: {report['verdict']['linearizable']}; "
             f"acknowledged unique writes: {report['verdict']['acknowledged_unique_writes']}, lost: "
             f"{len(report['verdict']['lost_acknowledged_writes'])}."
             + (f" **{report['verdict']['error']}.**" if report["verdict"].get("error") else ""), "",
             "| t (s) | fault | nodes | unavailable (s) | new leader after (s) | failed ops |",
             "| ---: | --- | --- | ---: | ---: | ---: |"]
    for f in report["faults"]:
        lines.append(f"| {f['started']} | {f['kind']} | {', '.join(f['nodes'])} | {f['unavailable_s']} | "
                     f"{f['new_leader_after_s']} | {f['failed_ops']} |")
    lines += ["", "Per kind of fault (seconds):", "",
              "| fault | times | unavailable median | worst | new leader after, median | worst |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind, s in per_kind(report["faults"]).items():
        lines.append(f"| {kind} | {s['times']} | {s['unavailable_median']} | {s['unavailable_worst']} | "
                     f"{s['new_leader_median']} | {s['new_leader_worst']} |")
    for kind, why in report.get("skipped_faults", {}).items():
        lines.append(f"\nSkipped {kind}: {why}.")
    s = report["stale_reads"]
    lines += ["", f"Stale reads: {s.get('reads', 0)}, up to date {s.get('up_to_date', 0)}, at most "
              f"{s.get('max_versions_behind', 0)} versions and {s.get('max_ms_behind', 0)} ms behind.", "",
              "Per key:", *[f"- {k}" for k in report["verdict"]["keys"]], "", "![timeline](chaos.png)", ""]
    with open(os.path.join(out, "chaos.md"), "w") as f:
        f.write("\n".join(lines))
    plot_timeline(report, os.path.join(out, "chaos.png"))


def per_kind(faults: list[dict]) -> dict[str, dict]:
    """Median and worst unavailability and time to a new leader, per kind of fault."""
    out = {}
    for kind in sorted({f["kind"] for f in faults}):
        down = [f["unavailable_s"] for f in faults if f["kind"] == kind]
        elected = [f["new_leader_after_s"] for f in faults if f["kind"] == kind and f["new_leader_after_s"]]
        out[kind] = {"times": len(down), "unavailable_median": round(statistics.median(down), 2),
                     "unavailable_worst": max(down),
                     "new_leader_median": round(statistics.median(elected), 2) if elected else None,
                     "new_leader_worst": max(elected, default=None)}
    return out


def plot_timeline(report: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chaos: matplotlib is not installed; no PNG (pip install -e '.[load]')", file=sys.stderr)
        return
    kinds = sorted({k for _, k, _, _ in report["timeline"]})
    end = max((t for t, *_ in report["timeline"]), default=1.0)
    bins = [i * 0.5 for i in range(int(end / 0.5) + 2)]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(12, 8), sharex=True,
                                        gridspec_kw={"height_ratios": [3, 2, 1]})
    for kind in kinds:
        ok = [t for t, k, o, _ in report["timeline"] if k == kind and o == "ok"]
        bad = [t for t, k, o, _ in report["timeline"] if k == kind and o != "ok"]
        ax1.hist(ok, bins=bins, histtype="step", label=kind, weights=[2.0] * len(ok))
        if bad:
            ax2.hist(bad, bins=bins, histtype="step", label=kind, weights=[2.0] * len(bad))
    for f in report["faults"]:
        for ax in (ax1, ax2, ax3):
            ax.axvspan(f["started"], max(f["healed"], f["started"] + 0.2), color="red", alpha=0.12)
        if len(report["faults"]) <= 20:  # beyond that the labels only cover each other; see chaos.md
            ax1.text(f["started"], ax1.get_ylim()[1] * 0.95, f["kind"], fontsize=7, rotation=90, va="top")
    names = sorted({leader for _, leader in report["leaders"] if leader})
    ax3.scatter([t for t, leader in report["leaders"] if leader],
                [names.index(leader) for _, leader in report["leaders"] if leader], s=4)
    ax3.set_yticks(range(len(names)), names)
    ax1.set_ylabel("ok ops/s")
    ax2.set_ylabel("failed or unknown /s")
    ax3.set_ylabel("leader")
    ax3.set_xlabel("seconds")
    ax1.legend(fontsize=7, ncol=3)
    ax1.set_title(f"raftkv chaos ({report['schedule']}): "
                  f"{'PASS' if report['verdict']['ok'] else 'FAIL'}, faults shaded")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
