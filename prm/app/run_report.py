"""The closing report of `prm run`, in the order a newcomer reads it: what the annotators said (judge parse
rate, the MC/judge agreement matrix, each annotator's accuracy against the truth on the annotated testbed
solutions, the share consensus kept), where the training examples came from, then the trained PRM beside the
untrained baseline on the held-out step-error items and in Best-of-N (next to pass@N and maj@N), with intervals.

Reads the run directory's consensus files and the per-evaluation `metrics.json` files under RUN_DIR/report/,
and writes RUN_DIR/report/report.md (+ report.json and a BoN plot comparing both models), linking each
detailed sub-report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from prm.jsonl import iter_lines, parse_line, read_json

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


def _pct_ci(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "–"
    return _pct(value) + ("" if low is None or high is None else f" [{_pct(low)}, {_pct(high)}]")


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float | None, float | None, float | None]:
    """A share with its 95% Wilson score interval (sound for the few dozen items a quick run has)."""
    if n == 0:
        return None, None, None
    p = hits / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, center - half), min(1.0, center + half)


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [row for lineno, raw in iter_lines(path) if (row := parse_line(str(path), lineno, raw)) is not None]


def _annotation_section(run_dir: Path, consensus: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Who labeled what, how often the judge's verdict parsed, the MC/judge agreement matrix, each annotator's
    first-error accuracy against the truth on the annotated testbed solutions, and the share kept."""
    records = _records(run_dir / "consensus.jsonl")
    judged = _load(run_dir / "judged.jsonl.report.json") or {}
    testbed = [r for r in records if isinstance(r.get("true_first_error"), int)]
    summary: dict[str, Any] = {"solutions": len(records), "testbed_solutions": len(testbed),
                               "share_kept": consensus.get("share_kept")}
    lines = ["## Annotation: what MC and the judge said, and where they agree", "",
             f"{len(records)} solutions annotated: {len(records) - len(testbed)} policy samples and {len(testbed)} "
             "testbed solutions whose first error is known."]
    if judged:
        forced = judged.get("constrained_votes")
        summary["judge_parsed"] = [judged["parsed"], judged["solutions"]]
        lines.append(f"The judge's verdict parsed for {judged['parsed']} of {judged['solutions']} solutions"
                     + (f" ({forced['forced']} of {forced['asked']} votes constrained to a valid verdict)."
                        if forced else " (free text, judge.constrain off)."))
    matrix = consensus.get("agreement_matrix", {}).get("counts", {})
    if matrix:
        columns = list(next(iter(matrix.values())))
        lines += ["", "Agreement matrix (first error; rows: MC, columns: judge; `none`: no label):", "",
                  "| MC \\ judge | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        lines += [f"| {row} | " + " | ".join(str(counts[c]) for c in columns) + " |" for row, counts in matrix.items()]
    if testbed:
        lines += ["", "First-error accuracy against the truth on the annotated testbed solutions (95% Wilson "
                  "intervals):", "", "| annotator | right / labeled | accuracy |", "|---|---|---|"]
        truth = {}
        for name, label in (("MC", lambda r: (r.get("mc") or {}).get("first_error")),
                            ("judge", lambda r: (r.get("judge") or {}).get("first_error")),
                            ("consensus (kept)", lambda r: (r.get("consensus") or {}).get("first_error")
                             if (r.get("consensus") or {}).get("kept") else None)):
            labeled = [r for r in testbed if label(r) is not None]
            hits = sum(label(r) == r["true_first_error"] for r in labeled)
            value, low, high = wilson(hits, len(labeled))
            truth[name] = {"right": hits, "labeled": len(labeled), "accuracy": value, "ci": [low, high]}
            lines.append(f"| {name} | {hits} / {len(labeled)} | {_pct_ci(value, low, high)} |")
        summary["accuracy_vs_truth"] = truth
    by_source = consensus.get("by_source", {})
    lines += ["", f"Consensus kept {consensus.get('kept', 0)} of {consensus.get('solutions', 0)} solutions "
              f"({_pct(consensus.get('share_kept'))}%)"
              + ("; by source: " + ", ".join(f"{k} {g['kept']}/{g['total']}" for k, g in by_source.items())
                 if by_source else "") + ". Details: `consensus_report.md` in the run directory.", ""]
    return lines, summary


def _training_section(run_dir: Path, train_files: list[str]) -> tuple[list[str], dict[str, int]]:
    """How many training examples came from each source."""
    testbed_ids = {r["id"] for r in _records(run_dir / "annotate.jsonl") if r.get("generator") == "testbed"}
    counts: dict[str, int] = {}
    for path in map(Path, train_files):
        examples = _records(path)
        if path.name == "train.consensus.jsonl":
            from_testbed = sum(e.get("id") in testbed_ids for e in examples)
            counts["consensus: policy samples"] = len(examples) - from_testbed
            counts["consensus: annotated testbed solutions"] = from_testbed
        elif path.name == "train.testbed.jsonl":
            counts["testbed truth labels (run.train_on_testbed)"] = len(examples)
        else:
            counts[path.name] = len(examples)
    lines = ["## Training data", "", "| source | examples |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in counts.items()]
    lines += [f"| total | {sum(counts.values())} |", ""]
    return lines, counts


def write_run_report(run_dir: Path, seconds: float, timings: dict[str, float], skipped: list[str],
                     train_files: list[str] | None = None) -> Path:
    report_dir = run_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    steps = {m: _load(report_dir / f"steps.{m}" / "metrics.json") for m in MODELS}
    bon = {m: _load(report_dir / f"bon.{m}" / "metrics.json") for m in MODELS}
    consensus = _load(run_dir / "consensus_report.json")
    lines = ["# PRM pipeline run", "", f"Run directory: `{run_dir}`. Wall time of this invocation: "
             f"{seconds / 60:.1f} min" + (f" (stages skipped as already done: {', '.join(skipped)})" if skipped
                                          else "") + ".", ""]
    summary: dict[str, Any] = {"seconds": seconds, "timings": timings, "skipped": skipped}
    if consensus is not None:
        section, summary["annotation"] = _annotation_section(run_dir, consensus)
        lines += section
    if train_files:
        section, summary["training_data"] = _training_section(run_dir, train_files)
        lines += section

    lines += ["## Step-error benchmark (held-out testbed items, ProcessBench metrics)", "",
              "In brackets: 95% bootstrap intervals over items.", "",
              "| model | acc. on erroneous | acc. on correct | F1 | step F1 | step neg. F1 | PRMScore | step AUC |",
              "|---|---|---|---|---|---|---|---|"]
    for m in MODELS:
        if steps[m] is None:
            continue
        avg = steps[m]["sources"]["prm"]["average"]
        ci = avg.get("ci") or {}
        cells = [_pct_ci(avg.get(k), *(ci.get(k) or (None, None)))
                 for k in ("acc_error", "acc_correct", "f1", "step_f1", "step_negative_f1", "prmscore", "step_auc")]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Details: " + ", ".join(f"[{m}](steps.{m}/report.md)" for m in MODELS), ""]

    present = {m: v for m, v in bon.items() if v is not None}
    if present:
        first = next(iter(present.values()))
        top = first["ns"][-1]

        def cell(metrics: dict[str, Any], key: str) -> str:
            curve = metrics["curves"][key]
            return _pct_ci(curve["mean"][-1], curve["low"][-1], curve["high"][-1])

        lines += [f"## Best-of-N (held-out problems, policy samples, N up to {top})", "",
                  "In brackets: 95% bootstrap intervals over problems.", "",
                  f"| method | accuracy@{top} |", "|---|---|",
                  f"| pass@{top} (oracle: any candidate right) | {cell(first, 'pass')} |",
                  f"| maj@{top} (majority vote) | {cell(first, 'maj')} |"]
        for m, metrics in present.items():
            for agg in metrics["aggregations"]:
                lines.append(f"| PRM@{top} {m}, {agg} | {cell(metrics, f'prm_{agg}')} |")
        plot = _bon_plot(present, report_dir)
        if plot:
            lines += ["", f"![Best-of-N]({plot})"]
        lines += ["", "Details: " + ", ".join(f"[{m}](bon.{m}/report.md)" for m in present), ""]

    if timings:
        lines += ["## Stage times (this invocation)", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {name} | {sec:.0f} |" for name, sec in timings.items()]
    (report_dir / "report.md").write_text("\n".join(lines) + "\n")
    summary.update(steps={m: v["sources"]["prm"]["average"] for m, v in steps.items() if v},
                   bon={m: v["headline"] for m, v in present.items()})
    (report_dir / "report.json").write_text(json.dumps(summary, indent=2))
    return report_dir / "report.md"
