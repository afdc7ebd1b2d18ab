"""The closing report of `prm run`: the trained PRM beside the untrained baseline and majority voting.

Reads the per-evaluation `metrics.json` files under RUN_DIR/report/ and writes RUN_DIR/report/report.md
(+ report.json and a BoN plot comparing both models), linking each detailed sub-report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prm.jsonl import read_json

MODELS = ("trained", "untrained")


def _load(path: Path) -> dict[str, Any] | None:
    return read_json(path) if path.exists() else None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _bon_plot(bon: dict[str, dict[str, Any]], out: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    any_metrics = next(iter(bon.values()), None)
    if any_metrics is None:
        return None
    ns = any_metrics["ns"]
    aggregation = any_metrics["aggregations"][0]  # the headline aggregation (the product by default)
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = [("pass", "pass@N (oracle)", any_metrics), ("maj", "majority vote", any_metrics)]
    curves += [(f"prm_{aggregation}", f"PRM@N {name} ({aggregation})", m) for name, m in bon.items()]
    for key, label, metrics in curves:
        curve = metrics["curves"][key]
        ax.plot(ns, curve["mean"], marker="o", label=label)
        low = [v if v is not None else m for v, m in zip(curve["low"], curve["mean"], strict=True)]
        high = [v if v is not None else m for v, m in zip(curve["high"], curve["mean"], strict=True)]
        ax.fill_between(ns, low, high, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("N (candidates per problem)")
    ax.set_ylabel("accuracy")
    ax.set_title("Best-of-N on held-out problems")
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "bon_trained_vs_untrained.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def write_run_report(run_dir: Path, seconds: float, timings: dict[str, float], skipped: list[str]) -> Path:
    report_dir = run_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    steps = {m: _load(report_dir / f"steps.{m}" / "metrics.json") for m in MODELS}
    bon = {m: _load(report_dir / f"bon.{m}" / "metrics.json") for m in MODELS}
    consensus = _load(run_dir / "consensus_report.json")
    lines = ["# PRM pipeline run", "", f"Run directory: `{run_dir}`. Wall time of this invocation: "
             f"{seconds / 60:.1f} min" + (f" (stages skipped as already done: {', '.join(skipped)})" if skipped
                                          else "") + ".", ""]

    lines += ["## Step-error benchmark (held-out testbed items, ProcessBench metrics)", "",
              "| model | acc. on erroneous | acc. on correct | F1 | step F1 | step neg. F1 | PRMScore | step AUC |",
              "|---|---|---|---|---|---|---|---|"]
    for m in MODELS:
        if steps[m] is None:
            continue
        avg = steps[m]["sources"]["prm"]["average"]
        lines.append(f"| {m} | {_pct(avg['acc_error'])} | {_pct(avg['acc_correct'])} | {_pct(avg['f1'])} | "
                     f"{_pct(avg['step_f1'])} | {_pct(avg['step_negative_f1'])} | {_pct(avg['prmscore'])} | "
                     f"{_pct(avg.get('step_auc'))} |")
    lines += ["", "Details: " + ", ".join(f"[{m}](steps.{m}/report.md)" for m in MODELS), ""]

    present = {m: v for m, v in bon.items() if v is not None}
    if present:
        first = next(iter(present.values()))
        top = first["ns"][-1]
        lines += [f"## Best-of-N (held-out problems, policy samples, N up to {top})", "",
                  f"| method | accuracy@{top} |", "|---|---|",
                  f"| pass@{top} (oracle) | {_pct(first['headline'][f'pass@{top}'])} |",
                  f"| majority vote | {_pct(first['headline'][f'maj@{top}'])} |"]
        for m, metrics in present.items():
            for agg in metrics["aggregations"]:
                lines.append(f"| PRM@N {m}, {agg} | {_pct(metrics['headline'][f'prm_{agg}@{top}'])} |")
        plot = _bon_plot(present, report_dir)
        if plot:
            lines += ["", f"![Best-of-N]({plot})"]
        lines += ["", "Details: " + ", ".join(f"[{m}](bon.{m}/report.md)" for m in present), ""]

    if consensus is not None:
        lines += ["## Annotation", "", "Consensus report: `consensus_report.md` in the run directory "
                  f"(share kept: {_pct(consensus.get('share_kept'))}).", ""]
    if timings:
        lines += ["## Stage times (this invocation)", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {name} | {sec:.0f} |" for name, sec in timings.items()]
    (report_dir / "report.md").write_text("\n".join(lines) + "\n")
    summary = {"seconds": seconds, "timings": timings, "skipped": skipped,
               "steps": {m: v["sources"]["prm"]["average"] for m, v in steps.items() if v},
               "bon": {m: v["headline"] for m, v in present.items()}}
    (report_dir / "report.json").write_text(json.dumps(summary, indent=2))
    return report_dir / "report.md"
