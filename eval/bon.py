"""Best-of-N evaluation of a PRM over pools of sampled solutions.

    prm eval bon -i scored_bon.jsonl -o reports/bon [--max-n 64] [--subsets 200] [--seed 0] [--model PATH]

Input: BoN items whose candidates carry `step_scores` (from `prm score`), or `prm sample` output (Solution
records, grouped by problem_id into pools); `--model PATH` scores them first with `prm.scoring`.

For N = 1, 2, 4, ... up to the pool size (the smallest pool, or --max-n), per problem:
  pass@N   unbiased estimator 1 - C(n-c, N) / C(n, N) (n candidates, c correct; Chen et al. 2021)
  maj@N    majority vote over normalized final answers
  prm_A@N  the solution with the highest aggregated score (A = product, min, last, mean, geomean)
  weighted_A@N  PRM-weighted majority vote: summed solution scores per distinct answer
maj, prm and weighted values are averaged over size-N subsets of the pool: all C(n, N) of them when that is at
most `exact_subset_limit` (an exact average), else `subsets` random ones (seeded). Ties are broken uniformly at
random and the expectation is reported (see prm.eval.aggregate). The mean over problems gets a percentile
bootstrap interval (resampling problems).

It also reports where the lowest step score falls, the final step or an earlier one, among the solutions each
aggregation chooses from the full pool. The Qwen2.5-Math-PRM paper finds that PRMs optimised
for Best-of-N put a large share of their minimum scores on the final, answer step, behaving like outcome
models; its own MC-trained PRMs have the lowest shares. What it finds specific to MC-trained PRMs is that they
do best with the `last` aggregation (the final step's score, a value estimate).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prm.eval.aggregate import aggregate_all, answer_classes, best_of_n, majority_vote, weighted_vote
from prm.eval.bootstrap import percentile_interval, resample_counts
from prm.eval.config import EvalConfig
from prm.eval.data import Pool

from prm.errors import PrmError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def n_values(max_n: int) -> list[int]:
    """1, 2, 4, ... up to max_n, with max_n itself appended when it is not a power of two."""
    ns = [1 << i for i in range(max_n.bit_length()) if (1 << i) <= max_n]
    if ns[-1] != max_n:
        ns.append(max_n)
    return ns


def subsets_for(n: int, k: int, random_count: int, exact_limit: int, rng: np.random.Generator) -> np.ndarray:
    """(S, k) candidate indices: every k-subset of range(n) when C(n, k) <= exact_limit, else random_count
    subsets drawn uniformly (without replacement within a subset)."""
    if math.comb(n, k) <= exact_limit:
        return np.array(list(itertools.combinations(range(n), k)), dtype=int).reshape(-1, k)
    return np.argsort(rng.random((random_count, n)), axis=1)[:, :k]


def bootstrap_interval(values: np.ndarray, resamples: int, confidence: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap over rows (problems): values (P, J) -> (low (J,), high (J,))."""
    p = values.shape[0]
    if resamples <= 0 or p == 0:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan
    means = resample_counts(p, resamples, rng) @ values.reshape(p, -1) / p  # (B, J)
    low, high = percentile_interval(means, confidence)
    return low.reshape(values.shape[1:]), high.reshape(values.shape[1:])


def metric_names(aggregations: Sequence[str]) -> list[str]:
    return ["pass", "maj", *[f"prm_{a}" for a in aggregations], *[f"weighted_{a}" for a in aggregations]]


def lowest_position(scores: Sequence[float]) -> str:
    """'final' when the (first) lowest step score is on the last step, 'earlier' otherwise; 'single_step'
    for a one-step solution."""
    if len(scores) == 1:
        return "single_step"
    return "final" if int(np.argmin(scores)) == len(scores) - 1 else "earlier"


def _position_summary(positions: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {k: positions.count(k) for k in ("final", "earlier", "single_step")}
    multi = out["final"] + out["earlier"]
    out["final_share"] = out["final"] / multi if multi else None
    return out


def evaluate_bon(pools: list[Pool], cfg: EvalConfig) -> dict[str, Any]:
    """All Best-of-N metrics of scored pools (every candidate has step_scores). Returns the metrics dict
    written to metrics.json, plus `per_problem` arrays (problems x N) under "per_problem"."""
    if not pools:
        raise PrmError("no BoN pools in the input")
    aggs = list(cfg.aggregations)
    sizes = [len(p) for p in pools]
    max_n = min(sizes) if cfg.max_n is None else cfg.max_n
    if max_n > min(sizes):
        raise PrmError(f"--max-n {max_n} exceeds the smallest pool ({min(sizes)} candidates); "
                       f"lower it or drop the small pools")
    ns = n_values(max_n)
    names = metric_names(aggs)
    values = {m: np.zeros((len(pools), len(ns))) for m in names}
    rng = np.random.default_rng(cfg.seed)
    chosen_positions: dict[str, list[str]] = {a: [] for a in aggs}
    chosen_relative: dict[str, list[float]] = {a: [] for a in aggs}
    all_positions: dict[str, list[str]] = {"correct": [], "incorrect": []}
    chosen_examples: list[dict[str, Any]] = []
    exact = True
    for p, pool in enumerate(pools):
        n = len(pool)
        correct = np.asarray(pool.correct, dtype=bool)
        scores = np.array([aggregate_all(s, aggs) for s in pool.step_scores])  # (n, A)
        classes = answer_classes(pool.final_answers)
        c = int(correct.sum())
        for j, k in enumerate(ns):
            subs = subsets_for(n, k, cfg.subsets, cfg.exact_subset_limit, rng)
            exact = exact and math.comb(n, k) <= cfg.exact_subset_limit
            values["pass"][p, j] = pass_at_k(n, c, k)
            values["maj"][p, j] = majority_vote(classes, correct, subs).mean()
            prm = best_of_n(correct, scores, subs).mean(axis=0)
            wv = weighted_vote(classes, correct, scores, subs).mean(axis=0)
            for a, agg in enumerate(aggs):
                values[f"prm_{agg}"][p, j] = prm[a]
                values[f"weighted_{agg}"][p, j] = wv[a]
        for a, agg in enumerate(aggs):
            best = int(np.argmax(scores[:, a]))
            steps = pool.step_scores[best]
            assert steps is not None
            chosen_positions[agg].append(lowest_position(steps))
            if len(steps) > 1:
                chosen_relative[agg].append(int(np.argmin(steps)) / (len(steps) - 1))
            if a == 0:
                chosen_examples.append({"problem_id": pool.problem_id, "step_scores": list(steps),
                                        "correct": bool(correct[best]), "aggregation": agg})
        for s, ok in zip(pool.step_scores, correct, strict=True):
            assert s is not None
            all_positions["correct" if ok else "incorrect"].append(lowest_position(s))

    curves: dict[str, dict[str, list[float | None]]] = {}
    boot_rng = np.random.default_rng(cfg.seed + 1)
    for m in names:
        mean = values[m].mean(axis=0)
        low, high = bootstrap_interval(values[m], cfg.bootstrap, cfg.confidence, boot_rng)
        curves[m] = {
            "mean": [float(v) for v in mean],
            "low": [None if math.isnan(v) else float(v) for v in low],
            "high": [None if math.isnan(v) else float(v) for v in high],
        }
    top = ns[-1]
    headline = {f"{m}@{top}": curves[m]["mean"][-1] for m in names}
    return {
        "kind": "bon",
        "problems": len(pools),
        "candidates": int(sum(sizes)),
        "pool_size": {"min": min(sizes), "max": max(sizes), "mean": float(np.mean(sizes))},
        "ns": ns,
        "aggregations": aggs,
        "subset_averaging": "exact (every subset enumerated)" if exact else
        f"random ({cfg.subsets} subsets per N where C(n, N) > {cfg.exact_subset_limit}; seed {cfg.seed})",
        "bootstrap": {"resamples": cfg.bootstrap, "confidence": cfg.confidence, "over": "problems"},
        "ties": "broken uniformly at random; expectation reported",
        "curves": curves,
        "headline": headline,
        "lowest_step": {
            "chosen_from_full_pool": {a: _position_summary(chosen_positions[a]) for a in aggs},
            "all_candidates": {k: _position_summary(v) for k, v in all_positions.items()},
        },
        "per_problem": {m: values[m].tolist() for m in names},
        "problem_ids": [p.problem_id for p in pools],
        "_chosen_relative": chosen_relative,
        "_chosen_examples": chosen_examples,
    }


def write_bon_report(metrics: dict[str, Any], out_dir: str | Path, cfg: EvalConfig, source: str) -> Path:
    """metrics.json, report.md and plots for a Best-of-N evaluation."""
    from prm.eval.report import Report, bon_curves_figure, heatmap_figure, histogram_figure, md_table, pct

    relative = metrics.pop("_chosen_relative")
    examples = metrics.pop("_chosen_examples")
    metrics["input"] = source
    ns = metrics["ns"]
    aggs = metrics["aggregations"]
    report = Report(out_dir, "Best-of-N evaluation")
    report.add(f"Input: `{source}` — {metrics['problems']} problems, {metrics['candidates']} candidates "
               f"(pool size {metrics['pool_size']['min']}–{metrics['pool_size']['max']}).\n\n"
               f"Subset averaging: {metrics['subset_averaging']}. Ties: {metrics['ties']}. "
               f"Intervals: {int(100 * cfg.confidence)}% percentile bootstrap over problems "
               f"({cfg.bootstrap} resamples).")
    report.heading("Accuracy (%) by N")
    rows = []
    for m, c in metrics["curves"].items():
        cells = []
        for mean, low, high in zip(c["mean"], c["low"], c["high"], strict=True):
            cells.append(f"{pct(mean)} [{pct(low)}, {pct(high)}]" if low is not None else pct(mean))
        rows.append([f"{m}@N", *cells])
    report.add(md_table(["metric", *[f"N={n}" for n in ns]], rows))
    report.heading("Curves")
    curves = metrics["curves"]
    main = {k: curves[k] for k in ["pass", "maj", *[f"prm_{a}" for a in aggs]]}
    report.figure(bon_curves_figure(ns, main, "Best-of-N: PRM selection"), "bon_curves.png", "BoN curves")
    weighted = {k: curves[k] for k in ["maj", *[f"weighted_{a}" for a in aggs]]}
    report.figure(bon_curves_figure(ns, weighted, "PRM-weighted majority vote"), "bon_weighted.png",
                  "PRM-weighted vote curves")

    report.heading("Where the lowest step score falls")
    report.add("Among the solution each aggregation picks from the full pool (first lowest step on ties); "
               "one-step solutions counted apart.")
    low = metrics["lowest_step"]
    rows = [[a, v["final"], v["earlier"], v["single_step"], pct(v["final_share"])]
            for a, v in low["chosen_from_full_pool"].items()]
    rows += [[f"all {k} candidates", v["final"], v["earlier"], v["single_step"], pct(v["final_share"])]
             for k, v in low["all_candidates"].items()]
    report.add(md_table(["chosen by", "final step", "earlier step", "single step", "final share (%)"], rows))
    groups = {a: relative[a] for a in aggs if relative[a]}
    if groups:
        report.figure(histogram_figure([], np.linspace(0, 1, 11), "Position of the lowest step score (chosen)",
                                       "relative position (0 = first step, 1 = final step)", groups),
                      "lowest_step_hist.png", "Where the lowest step score lands")
    shown = examples[: cfg.heatmap_rows]
    if shown:
        report.heading("Step scores of chosen solutions")
        report.add(f"Chosen by `{aggs[0]}` aggregation; outlined: the lowest step.")
        fig = heatmap_figure(
            [e["step_scores"] for e in shown],
            [f"{e['problem_id'][:24]} {'(right)' if e['correct'] else '(wrong)'}" for e in shown],
            [int(np.argmin(e["step_scores"])) for e in shown],
            "step scores (chosen solutions)",
        )
        report.figure(fig, "step_heatmap.png", "Step-score heatmap")
    return report.write(metrics)


def pools_to_bon_rows(pools: list[Pool]) -> list[dict[str, Any]]:
    """Scored pools as BoN items (written beside the report when --model scored them)."""
    rows = []
    for pool in pools:
        cands = [{"steps": s, "final_answer": fa, "correct": ok, "step_scores": sc}
                 for s, fa, ok, sc in zip(pool.steps, pool.final_answers, pool.correct, pool.step_scores, strict=True)]
        rows.append({"problem_id": pool.problem_id, "problem": pool.problem, "answer": pool.answer,
                     "candidates": cands})
    return rows
