"""The pooled reports of `prm experiment ablation` over seeds (`ablation.seeds`) and of the judge-accuracy sweep
(`ablation.sweep`), read from the per-seed reports (RUN_DIR/seed<s>/report/report.json, and for the sweep
RUN_DIR/seed<s>/judge<v>/report/report.json). Interval: the t-interval over per-seed paired differences
(prm/app/pooled.py says why).

    prm experiment ablation --config configs/ablation_testbed.yaml ablation.seeds=[0,1,2]
    prm experiment ablation --config configs/ablation_sweep.yaml
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prm.app.pooled import mean_or_none, pool
from prm.app.sections import NAMES, SHOWN, AblationConfig
from prm.jsonl import write_text_atomic

SWEEP_DIFFS = ("mc_only", "judge_only", "mc_matched")


def _pooled_arms(reports: list[dict[str, Any]], confidence: float) -> tuple[dict, dict]:
    arms = {arm: {key: mean_or_none([r["arms"][arm]["heldout"][key] for r in reports]) for key in SHOWN}
            for arm in reports[0]["arms"]}
    minus = {other: {key: pool([r["consensus_minus"][other][key]["diff"] for r in reports], confidence)
                     for key in SHOWN} for other in reports[0]["consensus_minus"]}
    return arms, minus


def _cell(p: dict[str, Any]) -> str:
    if p["mean"] is None:
        return "–"
    ci = f" [{100 * p['ci'][0]:+.1f}, {100 * p['ci'][1]:+.1f}]" if p["ci"] else ""
    return f"{100 * p['mean']:+.1f}{ci}{' *' if p['separated'] else ''} ({p['same_sign']} of {p['seeds']})"


def _interval_text(confidence: float, n: int) -> str:
    return (f"Intervals: {100 * confidence:g}% Student-t over the {n} per-seed paired differences (t with {n - 1} df); "
            "each per-seed difference carries its own item sampling, so their spread covers item and seed "
            "variation. `k of n`: seeds whose difference has the sign of the mean. * = interval excludes 0.")


def write_pooled(rd: Path, ab: AblationConfig, seeds: list[int]) -> Path:
    """RUN_DIR/report/: report.json (`seeds`, `pooled`, stage seconds per seed), report.md and pooled.png."""
    reports = [json.loads((rd / f"seed{s}" / "report" / "report.json").read_text()) for s in seeds]
    arms, minus = _pooled_arms(reports, ab.confidence)
    seconds = {f"seed{s}": r["stage_seconds_all_runs"] for s, r in zip(seeds, reports, strict=True)}
    report = {"seeds": seeds, "pooled": {"arms": arms, "consensus_minus": minus, "method": "t over seeds",
                                         "confidence": ab.confidence},
              "per_seed_reports": [str(rd / f"seed{s}" / "report" / "report.json") for s in seeds],
              "stage_seconds": seconds, "total_seconds": round(sum(sum(v.values()) for v in seconds.values()), 1)}
    lines = [f"# Data ablation pooled over seeds {', '.join(map(str, seeds))}", "",
             "Per-seed reports: " + ", ".join(f"[seed {s}](../seed{s}/report/report.md)" for s in seeds) + ".", "",
             "## Held-out metrics, mean over seeds (%)", "",
             "| arm | " + " | ".join(NAMES[k] for k in SHOWN) + " |", "|---|" + "---:|" * len(SHOWN)]
    for arm, row in arms.items():
        lines.append(f"| {arm} | " + " | ".join("–" if row[k] is None else f"{100 * row[k]:.1f}" for k in SHOWN)
                     + " |")
    lines += ["", "## Consensus minus each arm (pooled mean, interval, seeds agreeing in sign)", "",
              _interval_text(ab.confidence, len(seeds)), "",
              "| vs | " + " | ".join(NAMES[k] for k in SHOWN) + " |", "|---|" + "---:|" * len(SHOWN)]
    for other, row in minus.items():
        lines.append(f"| {other} | " + " | ".join(_cell(row[k]) for k in SHOWN) + " |")
    lines += ["", "## Wall time per stage (s)", "", "| stage | " + " | ".join(seconds) + " |",
              "|---|" + "---:|" * len(seconds)]
    for stage in seconds[f"seed{seeds[0]}"]:
        lines.append(f"| {stage} | " + " | ".join(f"{v.get(stage, 0):.0f}" for v in seconds.values()) + " |")
    lines += ["", f"Total: {report['total_seconds']:.0f} s.", "", "![pooled](pooled.png)", ""]
    out = rd / "report"
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / "report.md", "\n".join(lines))
    _points_chart(minus, out / "pooled.png", seeds)
    return out


def _points_chart(minus: dict[str, Any], path: Path, seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("step_auc", "f1")
    others = list(minus)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8))
    for ax, key in zip(axes, keys, strict=True):
        for i, other in enumerate(others):
            p = minus[other][key]
            pts = [100 * v for v in p["per_seed"] if v is not None]
            ax.scatter([i] * len(pts), pts, color="#999999", s=14, zorder=3)
            if p["mean"] is not None:
                lo, hi = (100 * p["ci"][0], 100 * p["ci"][1]) if p["ci"] else (100 * p["mean"],) * 2
                ax.errorbar([i + 0.15], [100 * p["mean"]], yerr=[[100 * p["mean"] - lo], [hi - 100 * p["mean"]]],
                            fmt="o", color="#4c72b0", capsize=4)
        ax.axhline(0, color="black", lw=0.7)
        ax.set_xticks(range(len(others)), others, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"consensus minus arm: {NAMES[key]}", fontsize=10)
        ax.set_ylabel("points (%)")
    fig.suptitle(f"Per-seed differences (grey) and pooled mean with t-interval (blue), seeds {seeds}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_sweep(rd: Path, ab: AblationConfig, seeds: list[int]) -> Path:
    """RUN_DIR/report/: the sweep table (report.json, report.md) and sweep.png (differences vs the knob value)."""
    sweep = ab.sweep or {}
    values = sweep["values"]
    rows = []
    for value in values:
        reports = [json.loads((rd / f"seed{s}" / f"judge{value}" / "report" / "report.json").read_text())
                   for s in seeds]
        arms, minus = _pooled_arms(reports, ab.confidence)
        judge_acc = mean_or_none([r["annotators"]["judge"]["accuracy_on_erroneous"] for r in reports])
        rows.append({"value": value, "arms": arms, "consensus_minus": minus,
                     "measured_judge_accuracy_on_erroneous": judge_acc})
    seconds = {f"seed{s}": json.loads((rd / f"seed{s}" / "sweep_timings.json").read_text()) for s in seeds}
    report = {"seeds": seeds, "sweep": sweep, "pooled": rows, "method": "t over seeds",
              "stage_seconds": seconds, "total_seconds": round(sum(sum(v.values()) for v in seconds.values()), 1)}
    keys = ("step_auc", "f1")
    lines = [f"# Judge-accuracy sweep ({', '.join(sweep['keys'])}), seeds {', '.join(map(str, seeds))}", "",
             _interval_text(ab.confidence, len(seeds)), "",
             "| value | " + " | ".join(f"consensus − {o}: {NAMES[k]}" for o in SWEEP_DIFFS for k in keys) + " |",
             "|---|" + "---:|" * (len(SWEEP_DIFFS) * len(keys))]
    for row in rows:
        lines.append(f"| {row['value']} | " + " | ".join(_cell(row["consensus_minus"][o][k]) for o in SWEEP_DIFFS
                                                        for k in keys) + " |")
    lines += ["", f"Total wall time: {report['total_seconds']:.0f} s (per stage: report.json).", "",
              "![sweep](sweep.png)", ""]
    out = rd / "report"
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / "report.md", "\n".join(lines))
    _sweep_chart(rows, out / "sweep.png", sweep["keys"], keys)
    return out


def _sweep_chart(rows: list[dict[str, Any]], path: Path, knobs: list[str], keys: tuple[str, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8))
    xs = [float(r["value"]) for r in rows]
    for ax, key in zip(axes, keys, strict=True):
        for j, other in enumerate(SWEEP_DIFFS):
            ps = [r["consensus_minus"][other][key] for r in rows]
            m = [100 * p["mean"] if p["mean"] is not None else float("nan") for p in ps]
            lo = [m_ - 100 * p["ci"][0] if p["ci"] else 0 for m_, p in zip(m, ps, strict=True)]
            hi = [100 * p["ci"][1] - m_ if p["ci"] else 0 for m_, p in zip(m, ps, strict=True)]
            ax.errorbar([x + 0.006 * (j - 1) for x in xs], m, yerr=[lo, hi], fmt="o-", capsize=3,
                        label=f"consensus − {other}")
        ax.axhline(0, color="black", lw=0.7)
        ax.set_xlabel(", ".join(k.rsplit(".", 1)[-1] for k in knobs))
        ax.set_ylabel(f"{NAMES[key]} difference (points)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
