"""One-to-many (RewardMATH) reward-model accuracy and MRR from step scores.

    prm data convert RewardMATH_direct.json rewardmath.jsonl --from rewardmath     # the official benchmark file
    prm eval rewardmath -i rewardmath.jsonl -o reports/rewardmath --model PATH
    prm eval rewardmath -i scored_bon.jsonl -o reports/rewardmath                  # our own BoN pool (see below)

Input: BoN-style items (or Solution records grouped by problem_id) whose candidates carry `correct` flags and
`step_scores`; the solution score is each aggregation of the step scores (min, product, ...).

RewardMATH (Kim et al. 2024), scored per problem as its reference code does (`RewardMATHEvaluation` in
`kimsh0507/RewardMATH_official`, `src/evaluation/eval.py`): a hit when every correct solution scores strictly
above every incorrect one (min correct > max incorrect); MRR = mean over problems of 1/rank of the best correct
solution, rank = 1 + the number of incorrect solutions scoring at least as high (its sort puts a tied incorrect
solution first). Its `prod` aggregation is our `product`, `geometric_mean` our `geomean`.

The benchmark has one correct solution against nine incorrect ones a problem, written by several models. Run
on our own Best-of-N pool instead, the same metrics measure something else: the solutions are the same
policy's samples that the Best-of-N evaluation ranks, so the result is not independent of the Best-of-N one;
pools with several correct solutions are scored the same way and the random baseline accounts for them.
Problems without a correct or without an incorrect solution are skipped and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prm.eval.aggregate import aggregate
from prm.eval.config import EvalConfig
from prm.eval.data import Pool

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


def write_rewardmath_report(metrics: dict[str, Any], pools: list[Pool], out_dir: str | Path, cfg: EvalConfig,
                            source: str) -> Path:
    import numpy as np
    from prm.eval.report import Report, heatmap_figure, histogram_figure, md_table, pct

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
