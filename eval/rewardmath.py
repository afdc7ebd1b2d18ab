"""One-to-many (RewardMATH) and pairwise (RewardBench) reward-model accuracy from step scores.

    prm eval rewardmath -i rewardmath_scored.jsonl -o reports/rewardmath [--model PATH]
    prm eval pairwise -i pairs_scored.jsonl -o reports/pairwise [--model PATH]

Input: BoN-style items (or Solution records grouped by problem_id) whose candidates carry `correct` flags and
`step_scores`; the solution score is each aggregation of the step scores (min, product, ...).

RewardMATH (Kim et al. 2024), scored per problem as its reference code does: a hit when every correct solution
scores strictly above every incorrect one (min correct > max incorrect); MRR = mean over problems of 1/rank
of the best correct solution, rank = 1 + the number of incorrect solutions scoring at least as high (a tie
ranks it below). The benchmark has one correct solution a problem; pools with several (e.g. Best-of-N
samples) are scored the same way, and the random baseline accounts for them. Problems without a correct or
without an incorrect solution are skipped and counted.

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


def one_to_many(correct_scores: list[float], incorrect_scores: list[float]) -> tuple[bool, float]:
    """(every correct solution beats every incorrect one, reciprocal rank of the best correct one with ties
    ranked against it)."""
    rank = 1 + sum(s >= max(correct_scores) for s in incorrect_scores)
    return min(correct_scores) > max(incorrect_scores), 1.0 / rank


def random_one_to_many(n_correct: int, n_incorrect: int) -> tuple[float, float]:
    """Expected (accuracy, MRR) of a random order: the correct solutions take the top places with probability
    1 / C(c+k, c); the best correct one is at place r with probability C(c+k-r, c-1) / C(c+k, c)."""
    from math import comb

    c, k = n_correct, n_incorrect
    orders = comb(c + k, c)
    return 1 / orders, sum(comb(c + k - r, c - 1) / r for r in range(1, k + 2)) / orders


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
            right = [s for s, ok in zip(scores, pool.correct, strict=True) if ok]
            wrong = [s for s, ok in zip(scores, pool.correct, strict=True) if not ok]
            hit, rr = one_to_many(right, wrong)
            ties += bool(set(right) & set(wrong))
            hits.append(hit)
            rrs.append(rr)
            rows.append({"problem_id": pool.problem_id, "best_correct": max(right), "worst_correct": min(right),
                         "best_incorrect": max(wrong), "hit": hit, "reciprocal_rank": rr})
        results[agg] = {"accuracy": sum(hits) / len(hits), "mrr": sum(rrs) / len(rrs),
                        "problems_with_ties": ties}
        per_problem[agg] = rows
    counts = [(sum(p.correct), sum(not ok for ok in p.correct)) for p in usable]
    baseline = [random_one_to_many(c, k) for c, k in counts]
    headline = {}
    for agg, r in results.items():
        headline[f"{agg}.accuracy"] = r["accuracy"]
        headline[f"{agg}.mrr"] = r["mrr"]
    return {
        "kind": "rewardmath",
        "problems": len(usable),
        "skipped_problems": skipped,
        "correct_per_problem": {"min": min(c for c, _ in counts), "max": max(c for c, _ in counts)},
        "incorrect_per_problem": {"min": min(k for _, k in counts), "max": max(k for _, k in counts)},
        "random_baseline": {"accuracy": sum(a for a, _ in baseline) / len(baseline),
                            "mrr": sum(m for _, m in baseline) / len(baseline)},
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
    right, wrong = metrics["correct_per_problem"], metrics["incorrect_per_problem"]
    report.add(f"Input: `{source}` — {metrics['problems']} problems ({right['min']}–{right['max']} correct and "
               f"{wrong['min']}–{wrong['max']} incorrect solutions each), {len(metrics['skipped_problems'])} "
               "skipped. A hit: every correct solution scores strictly above every incorrect one; MRR ranks the "
               f"best correct one, ties against it. Random baseline: accuracy {pct(base['accuracy'])}%, MRR "
               f"{pct(base['mrr'])}%.")
    rows = [[agg, pct(r["accuracy"]), pct(r["mrr"]), r["problems_with_ties"]]
            for agg, r in metrics["aggregations"].items()]
    report.add(md_table(["aggregation", "accuracy (%)", "MRR (%)", "problems with ties"], rows))
    first = cfg.aggregations[0]
    ranks = [round(1 / r["reciprocal_rank"]) for r in per_problem[first]]
    top = max(ranks)
    report.figure(histogram_figure(ranks, np.arange(0.5, top + 1.5, 1.0),
                                   f"Rank of the best correct solution ({first})", "rank"),
                  "rank_hist.png", "Rank of the best correct solution")
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
