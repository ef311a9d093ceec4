"""What `raftkv chaos --workload lock` writes into --out: chaos.json (faults, verdict, every
client event), lock-chaos.md (the verdict and the unavailability after each fault) and the
lock-chaos.png timeline (each client's fenced writes by token, faults shaded)."""

from __future__ import annotations

import json
import os
import statistics
import sys


def write_lock_reports(report: dict, out: str, fenced: bool) -> None:
    t0, verdict = report["t0"], report["verdict"]
    faults = [{**f, "t": round(f["t"] - t0, 2), "healed": round(f["healed"] - t0, 2)} for f in report["faults"]]
    events = [{**e, "t": round(e["t"] - t0, 3), **({"sent": round(e["sent"] - t0, 3)} if "sent" in e else {})}
              for e in report["events"]]
    with open(os.path.join(out, "chaos.json"), "w", encoding="utf-8") as f:
        json.dump({"workload": "lock", "fenced": fenced, "verdict": verdict, "faults": faults,
                   "skipped_faults": report["skipped"], "events": events}, f, indent=1)
    lines = [f"# raftkv chaos: lock workload{'' if fenced else ' (resource UNFENCED)'}", "",
             f"**Verdict: {'PASS' if verdict['ok'] else 'FAIL'}** — {verdict['tenures']} tenures (highest token "
             f"{verdict['highest_token']}), {verdict['accepted_writes']} fenced writes accepted, "
             f"{verdict['stale_token_refusals']} stale-token writes refused.", "",
             "| t (s) | fault | target | lock unavailable (s) |", "| ---: | --- | --- | ---: |"]
    for f, u in zip(faults, verdict["unavailability"], strict=True):
        lines.append(f"| {f['t']} | {f['kind']} | {f.get('target') or f.get('skipped', '')} | {u['unavailable_s']} |")
    lines += ["", "| fault | times | unavailable median (s) | worst (s) |", "| --- | ---: | ---: | ---: |"]
    for kind, s in per_kind(verdict["unavailability"]).items():
        lines.append(f"| {kind} | {s['times']} | {s['median']} | {s['worst']} |")
    lines += ["", "Paused holders' first write after waking (old token): "
              + (", ".join(f"{w['client']} token {w['token']}: {w['late_write']}" for w in verdict["late_writes"])
                 or "no holder was paused") + "."]
    lines += [f"\nSkipped {kind}: {why}." for kind, why in report["skipped"].items()]
    lines += [f"- violation: {v}" for v in verdict["violations"]]
    lines += ["", "![timeline](lock-chaos.png)", ""]
    with open(os.path.join(out, "lock-chaos.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    plot(events, faults, verdict, os.path.join(out, "lock-chaos.png"))


def per_kind(unavailability: list[dict]) -> dict[str, dict]:
    out = {}
    for kind in sorted({u["kind"] for u in unavailability}):
        down = [u["unavailable_s"] for u in unavailability if u["kind"] == kind and u["unavailable_s"] is not None]
        out[kind] = {"times": len(down), "median": round(statistics.median(down), 2) if down else None,
                     "worst": max(down, default=None)}
    return out


def plot(events: list[dict], faults: list[dict], verdict: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chaos: matplotlib is not installed; no PNG (pip install -e '.[load]')", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(12, 5))
    for i, client in enumerate(sorted({e["client"] for e in events})):
        ok = [e for e in events if e["client"] == client and e["ev"] == "write" and e["ok"]]
        ax.scatter([e["t"] for e in ok], [e["token"] for e in ok], s=6, color=f"C{i}", label=f"{client} accepted")
        refused = [e for e in events if e["client"] == client and e["ev"] == "write" and not e["ok"]
                   and e.get("why") == "stale token"]
        if refused:
            ax.scatter([e["t"] for e in refused], [e["token"] for e in refused], marker="x", s=60, color=f"C{i}",
                       label=f"{client} old token refused")
    for f in faults:
        ax.axvspan(f["t"], max(f["healed"], f["t"] + 0.2), color="red", alpha=0.12)
        ax.text(f["t"], ax.get_ylim()[1], f["kind"], fontsize=7, rotation=90, va="top")
    ax.set_xlabel("seconds")
    ax.set_ylabel("fencing token (LockIndex)")
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    ax.set_title(f"raftkv chaos (lock): {'PASS' if verdict['ok'] else 'FAIL'}, faults shaded")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
