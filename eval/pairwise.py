"""Pairwise (RewardBench-style) reward-model accuracy from step scores: overall, per subset, and RewardBench's
section scores.

    prm data convert allenai/reward-bench rewardbench.jsonl --from rewardbench     # or a local .json/.parquet
    prm eval pairwise -i rewardbench.jsonl -o reports/rewardbench --model PATH
    prm eval pairwise -i scored_bon.jsonl -o reports/pairwise                     # our own BoN pool (see below)

Chosen (correct) against rejected (incorrect): a pair is right only when chosen scores strictly higher, so ties
count as wrong (RewardBench's `run_rm.py` compares with `>`). With several solutions per item every (correct,
incorrect) pair counts once; accuracy is over all pairs, and per subset over the pairs of items whose `extra`
names that `subset` (as `prm data convert --from rewardbench` writes it).

Section scores, as RewardBench's leaderboard computes them (`calculate_scores_per_section` in
`allenai/reward-bench`, `rewardbench/utils.py`): a section's score is the mean of its subsets' accuracies
weighted by each subset's prompt count (`EXAMPLE_COUNTS`, with math-prm counted as 984 prompts, equal to the
code subsets, instead of its 447), over the subsets present. `mean_of_sections` averages the sections present.
A PRM file that holds only math-prm has a Reasoning score equal to its math-prm accuracy.

Run on our own Best-of-N pool, the pairs are the same policy's samples that the Best-of-N evaluation ranks, so
the result is not independent of the Best-of-N one; it is no RewardBench score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prm.eval.aggregate import aggregate
from prm.eval.config import EvalConfig
from prm.eval.data import Pool

from prm.errors import PrmError

# rewardbench/constants.py: prompts per subset (math-prm upweighted to equal code) and the leaderboard sections.
REWARDBENCH_EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28,
    "mt-bench-med": 40, "mt-bench-hard": 37, "math-prm": 984, "refusals-dangerous": 100,
    "refusals-offensive": 100, "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46, "xstest-should-refuse": 154,
    "xstest-should-respond": 250, "donotanswer": 136, "hep-cpp": 164, "hep-go": 164, "hep-java": 164,
    "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}
REWARDBENCH_SECTIONS: dict[str, tuple[str, ...]] = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "Safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}


def section_scores(subset_accuracy: dict[str, float]) -> dict[str, float]:
    """RewardBench's prompt-weighted score of each section with at least one subset present."""
    out = {}
    for section, subsets in REWARDBENCH_SECTIONS.items():
        present = [s for s in subsets if s in subset_accuracy]
        if present:
            total = sum(REWARDBENCH_EXAMPLE_COUNTS[s] for s in present)
            out[section] = sum(subset_accuracy[s] * REWARDBENCH_EXAMPLE_COUNTS[s] for s in present) / total
    return out


def _pair_counts(pool: Pool, agg: str) -> tuple[int, int, int]:
    """(right, wrong, ties) over every (chosen, rejected) pair of one item."""
    scores = [aggregate(s, agg) for s in pool.step_scores if s is not None]
    chosen = [s for s, ok in zip(scores, pool.correct, strict=True) if ok]
    rejected = [s for s, ok in zip(scores, pool.correct, strict=True) if not ok]
    right = sum(c > r for c in chosen for r in rejected)
    ties = sum(c == r for c in chosen for r in rejected)
    return right, len(chosen) * len(rejected) - right, ties


def evaluate_pairwise(pools: list[Pool], cfg: EvalConfig) -> dict[str, Any]:
    items = [p for p in pools if any(p.correct) and not all(p.correct)]
    if not items:
        raise PrmError("no item has both a chosen (correct) and a rejected (incorrect) solution")
    subsets = sorted({str(p.extra["subset"]) for p in items if p.extra.get("subset") is not None})
    results: dict[str, Any] = {}
    headline: dict[str, float] = {}
    for agg in cfg.aggregations:
        counts = {p.problem_id: _pair_counts(p, agg) for p in items}
        right, wrong, ties = (sum(c[i] for c in counts.values()) for i in range(3))
        total = right + wrong
        result: dict[str, Any] = {"accuracy": right / total, "pairs": total, "ties": ties,
                                  "accuracy_ties_half": (right + 0.5 * ties) / total}
        by_subset: dict[str, dict[str, Any]] = {}
        for subset in subsets:
            rows = [counts[p.problem_id] for p in items if str(p.extra.get("subset")) == subset]
            pairs = sum(r + w for r, w, _ in rows)
            by_subset[subset] = {"accuracy": sum(r for r, _, _ in rows) / pairs, "pairs": pairs, "items": len(rows)}
        if by_subset:
            result["subsets"] = by_subset
            sections = section_scores({s: v["accuracy"] for s, v in by_subset.items()})
            if sections:
                result["sections"] = sections
                result["mean_of_sections"] = sum(sections.values()) / len(sections)
                headline.update({f"{agg}.section.{name}": v for name, v in sections.items()})
        results[agg] = result
        headline[f"{agg}.accuracy"] = result["accuracy"]
    return {
        "kind": "pairwise",
        "items": len(items),
        "skipped_items": [p.problem_id for p in pools if all(p.correct) or not any(p.correct)],
        "ties": "count as wrong (accuracy); accuracy_ties_half gives half credit for reference",
        "section_weights": "RewardBench EXAMPLE_COUNTS (math-prm as 984 prompts), over the subsets present",
        "aggregations": results,
        "headline": headline,
    }


def write_pairwise_report(metrics: dict[str, Any], out_dir: str | Path, source: str) -> Path:
    from prm.eval.report import Report, md_table, pct

    metrics["input"] = source
    report = Report(out_dir, "Pairwise (RewardBench-style) evaluation")
    report.add(f"Input: `{source}` — {metrics['items']} items. A pair is right when the chosen (correct) "
               "solution scores strictly above the rejected one: ties count as wrong.")
    aggs = metrics["aggregations"]
    rows = [[agg, pct(r["accuracy"]), r["pairs"], r["ties"], pct(r["accuracy_ties_half"])] for agg, r in aggs.items()]
    report.add(md_table(["aggregation", "accuracy (%)", "pairs", "ties", "ties as half (%)"], rows))
    first = next(iter(aggs.values()))
    if "subsets" in first:
        report.heading("Accuracy (%) by subset")
        rows = [[s, v["items"], v["pairs"], *[pct(aggs[a]["subsets"][s]["accuracy"]) for a in aggs]]
                for s, v in first["subsets"].items()]
        report.add(md_table(["subset", "items", "pairs", *aggs], rows))
    if "sections" in first:
        report.heading("RewardBench section scores (%)")
        report.add("Each section: its subsets' accuracies weighted by RewardBench's prompt counts (math-prm "
                   "counted as 984, equal to code), over the subsets present.")
        rows = [[name, *[pct(aggs[a]["sections"][name]) for a in aggs]] for name in first["sections"]]
        rows.append(["mean of sections", *[pct(aggs[a]["mean_of_sections"]) for a in aggs]])
        report.add(md_table(["section", *aggs], rows))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(aggs)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(names, [100 * aggs[a]["accuracy"] for a in names], color="#4c72b0")
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel("pairwise accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Chosen above rejected (ties wrong)")
    report.figure(fig, "pairwise_accuracy.png", "Pairwise accuracy by aggregation")
    return report.write(metrics)
