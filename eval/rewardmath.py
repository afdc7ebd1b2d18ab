"""One-to-many (RewardMATH) and pairwise (RewardBench) reward-model accuracy from step scores.

    prm eval rewardmath -i rewardmath_scored.jsonl -o reports/rewardmath [--model PATH]
    prm eval pairwise -i pairs_scored.jsonl -o reports/pairwise [--model PATH]

Input: BoN-style items (or Solution records grouped by problem_id) whose candidates carry `correct` flags and
`step_scores`; the solution score is each aggregation of the step scores (min, product, ...).

RewardMATH (Kim et al. 2024): per problem one correct solution against several incorrect ones. Accuracy = share
of problems where the correct solution scores strictly above ALL incorrect ones; MRR = mean of 1/rank of the
correct one, rank = 1 + the number of incorrect solutions scoring at least as high (a tie ranks it below).
A problem with several correct solutions gives one one-to-many comparison per correct solution; problems
without a correct or without an incorrect solution are skipped and counted.

RewardBench pairwise: chosen (correct) against rejected (incorrect); a pair is right only when chosen scores
strictly higher, so ties count as wrong (RewardBench compares with `>`). With several solutions per item every
(correct, incorrect) pair counts once; accuracy is over all pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.aggregate import aggregate
from eval.config import EvalConfig
from eval.data import Pool
from prm.errors import PrmError


def one_to_many(correct_score: float, incorrect_scores: list[float]) -> tuple[bool, float]:
    """(the correct solution beats every incorrect one, its reciprocal rank with ties ranked against it)."""
    rank = 1 + sum(s >= correct_score for s in incorrect_scores)
    return rank == 1, 1.0 / rank


def _solution_scores(pool: Pool, agg: str) -> list[float]:
    return [aggregate(s, agg) for s in pool.step_scores if s is not None]


def evaluate_rewardmath(pools: list[Pool], cfg: EvalConfig) -> dict[str, Any]:
    results: dict[str, Any] = {}
    skipped = [p.problem_id for p in pools if all(p.correct) or not any(p.correct)]
    usable = [p for p in pools if any(p.correct) and not all(p.correct)]
    if not usable:
        raise PrmError("no problem has both a correct and an incorrect solution")
    per_problem: dict[str, list[dict[str, Any]]] = {}
    for agg in cfg.aggregations:
        hits, rrs, ties, rows = [], [], 0, []
        for pool in usable:
            scores = _solution_scores(pool, agg)
            wrong = [s for s, ok in zip(scores, pool.correct, strict=True) if not ok]
            for s, ok in zip(scores, pool.correct, strict=True):
                if not ok:
                    continue
                hit, rr = one_to_many(s, wrong)
                ties += any(w == s for w in wrong)
                hits.append(hit)
                rrs.append(rr)
                rows.append({"problem_id": pool.problem_id, "correct_score": s, "hit": hit, "reciprocal_rank": rr})
        results[agg] = {"accuracy": sum(hits) / len(hits), "mrr": sum(rrs) / len(rrs), "comparisons": len(hits),
                        "comparisons_with_ties": ties}
        per_problem[agg] = rows
    n_incorrect = [sum(not ok for ok in p.correct) for p in usable]
    headline = {}
    for agg, r in results.items():
        headline[f"{agg}.accuracy"] = r["accuracy"]
        headline[f"{agg}.mrr"] = r["mrr"]
    return {
        "kind": "rewardmath",
        "problems": len(usable),
        "skipped_problems": skipped,
        "incorrect_per_problem": {"min": min(n_incorrect), "max": max(n_incorrect)},
        "random_baseline": {
            "accuracy": sum(1 / (k + 1) for k in n_incorrect) / len(n_incorrect),
            "mrr": sum(sum(1 / r for r in range(1, k + 2)) / (k + 1) for k in n_incorrect) / len(n_incorrect),
        },
        "aggregations": results,
        "headline": headline,
        "_per_problem": per_problem,
    }


def evaluate_pairwise(pools: list[Pool], cfg: EvalConfig) -> dict[str, Any]:
    results: dict[str, Any] = {}
    items = [p for p in pools if any(p.correct) and not all(p.correct)]
    if not items:
        raise PrmError("no item has both a chosen (correct) and a rejected (incorrect) solution")
    for agg in cfg.aggregations:
        right = wrong = ties = 0
        for pool in items:
            scores = _solution_scores(pool, agg)
            chosen = [s for s, ok in zip(scores, pool.correct, strict=True) if ok]
            rejected = [s for s, ok in zip(scores, pool.correct, strict=True) if not ok]
            for c in chosen:
                for r in rejected:
                    if c > r:
                        right += 1
                    else:
                        wrong += 1
                        ties += c == r
        total = right + wrong
        results[agg] = {"accuracy": right / total, "pairs": total, "ties": ties,
                        "accuracy_ties_half": (right + 0.5 * ties) / total}
    return {
        "kind": "pairwise",
        "items": len(items),
        "skipped_items": [p.problem_id for p in pools if all(p.correct) or not any(p.correct)],
        "ties": "count as wrong (accuracy); accuracy_ties_half gives half credit for reference",
        "aggregations": results,
        "headline": {f"{agg}.accuracy": r["accuracy"] for agg, r in results.items()},
    }


def write_rewardmath_report(metrics: dict[str, Any], pools: list[Pool], out_dir: str | Path, cfg: EvalConfig,
                            source: str) -> Path:
    import numpy as np

    from eval.report import Report, heatmap_figure, histogram_figure, md_table, pct

    per_problem = metrics.pop("_per_problem")
    metrics["input"] = source
    report = Report(out_dir, "RewardMATH-style one-to-many evaluation")
    base = metrics["random_baseline"]
    report.add(f"Input: `{source}` — {metrics['problems']} problems "
               f"({metrics['incorrect_per_problem']['min']}–{metrics['incorrect_per_problem']['max']} incorrect "
               f"solutions each), {len(metrics['skipped_problems'])} skipped. A hit: the correct solution scores "
               f"strictly above every incorrect one; ties rank the correct one lower. Random baseline: accuracy "
               f"{pct(base['accuracy'])}%, MRR {pct(base['mrr'])}%.")
    rows = [[agg, pct(r["accuracy"]), pct(r["mrr"]), r["comparisons"], r["comparisons_with_ties"]]
            for agg, r in metrics["aggregations"].items()]
    report.add(md_table(["aggregation", "accuracy (%)", "MRR (%)", "comparisons", "with ties"], rows))
    first = cfg.aggregations[0]
    ranks = [round(1 / r["reciprocal_rank"]) for r in per_problem[first]]
    top = max(ranks)
    report.figure(histogram_figure(ranks, np.arange(0.5, top + 1.5, 1.0),
                                   f"Rank of the correct solution ({first})", "rank"),
                  "rank_hist.png", "Rank of the correct solution")
    shown = pools[: cfg.heatmap_rows]
    rows_, labels, marks = [], [], []
    for pool in shown:
        for steps, ok in zip(pool.step_scores, pool.correct, strict=True):
            if ok and steps is not None:
                rows_.append(steps)
                labels.append(f"{pool.problem_id[:24]} (correct)")
                marks.append(int(np.argmin(steps)))
                break
    if rows_:
        report.heading("Step scores of the correct solutions")
        report.add("Outlined: the lowest step.")
        report.figure(heatmap_figure(rows_, labels, marks, "step scores"), "step_heatmap.png",
                      "Step-score heatmap")
    return report.write(metrics)


def write_pairwise_report(metrics: dict[str, Any], out_dir: str | Path, source: str) -> Path:
    from eval.report import Report, md_table, pct

    metrics["input"] = source
    report = Report(out_dir, "Pairwise (RewardBench-style) evaluation")
    report.add(f"Input: `{source}` — {metrics['items']} items. A pair is right when the chosen (correct) "
               "solution scores strictly above the rejected one: ties count as wrong.")
    rows = [[agg, pct(r["accuracy"]), r["pairs"], r["ties"], pct(r["accuracy_ties_half"])]
            for agg, r in metrics["aggregations"].items()]
    report.add(md_table(["aggregation", "accuracy (%)", "pairs", "ties", "ties as half (%)"], rows))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aggs = list(metrics["aggregations"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(aggs, [100 * metrics["aggregations"][a]["accuracy"] for a in aggs], color="#4c72b0")
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel("pairwise accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Chosen above rejected (ties wrong)")
    report.figure(fig, "pairwise_accuracy.png", "Pairwise accuracy by aggregation")
    return report.write(metrics)
