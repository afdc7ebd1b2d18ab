"""Step-error benchmarks: ProcessBench (first-error identification) and PRMBench-style step classification.

    prm eval steps -i gsm8k.jsonl -i math.jsonl -o reports/steps [--threshold 0.5 | --fit-on gsm8k] \
        [--bootstrap 1000 --confidence 0.95 --seed 0]

Input: ProcessBench items (`label` = earliest wrong step, -1 if none) or Solution records whose gold first
error sits at `eval.gold_field`. Predictors found on the records, each evaluated on its own:
  prm        `step_scores`: predicted first error = first step scoring below the threshold, -1 if none
  judge      `judge.first_error` (None, i.e. no parsable verdict, counts as a wrong prediction)
  predicted  `predicted_first_error` (any other first-error predictor)
The split is each record's `split` field, else the input file's name (`gsm8k.jsonl` -> gsm8k).

ProcessBench metrics per split: accuracy on erroneous items (predicted first error == label), accuracy on
correct items (predicted -1), F1 = their harmonic mean; averaged over splits. When a split has no erroneous
items or no correct items, that side's accuracy and the F1 are undefined (null in metrics.json, a dash in the
report) and the split is left out of the F1 average; two zero accuracies give F1 = 0. The PRM threshold is
either fixed or fitted on one named split (the F1-maximizing threshold; the smallest one on ties) and reused on
all splits, as ProcessBench does with gsm8k.

PRMBench step-level metrics: every labelled step is a binary case, correct (positive) or erroneous (negative).
Gold: steps before the first error are correct, the first-error step is erroneous, and steps after it carry no
label, so they are excluded (`after_error=exclude`, the default) or counted as erroneous (`after_error=error`).
Predicted: a PRM step is correct when its score >= threshold; for first-error predictors, steps before the
predicted first error are correct and the rest erroneous; items without a usable prediction are left out (as
PRMBench drops invalid outputs) and counted. F1 (correct steps positive), negative F1 (erroneous steps
positive), PRMScore = their mean; counts pooled over the items of a split. Step AUC (PRM only, threshold-free):
the chance that a gold-correct step scores above a gold-erroneous one, pooled over a split.

Extracted ProcessBench (the Qwen2.5-Math-PRM paper's Table 5): the accuracy on erroneous items whose final
answer is correct (`final_answer_correct`, a Solution's `correct`), the errors an answer check cannot see.

Intervals: every metric above, per split and averaged, gets a percentile bootstrap interval (`ci` in
metrics.json, brackets in the report): `eval.bootstrap` resamples (seeded by `eval.seed` and the split name) of
the split's items with replacement, each resample's metrics computed exactly as the point values, the
threshold held fixed. A resample on which a metric is undefined (no erroneous item drawn) is left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prm.eval.bootstrap import group_rng, percentile_interval, ratio, resample_counts
from prm.eval.config import EvalConfig
from prm.eval.data import StepItem

from prm.errors import PrmError


def predict_first_error(scores: Sequence[float], threshold: float) -> int:
    """Index of the first step scoring below `threshold`, -1 when none does."""
    for k, s in enumerate(scores):
        if s < threshold:
            return k
    return -1


def processbench_metrics(labels: Sequence[int], predictions: Sequence[int | None]) -> dict[str, Any]:
    """Accuracy on erroneous items, on correct items, and F1 (their harmonic mean; None when a side is empty)."""
    is_err = np.array([lab != -1 for lab in labels], dtype=bool)
    hit = np.array([p == lab for lab, p in zip(labels, predictions, strict=True)], dtype=bool)
    values = _processbench_arrays(is_err, hit, np.ones((1, len(is_err))))
    return {"n_error": int(is_err.sum()), "n_correct": int((~is_err).sum()),
            **{key: _scalar(v[0]) for key, v in values.items()}}


def _intervals(items: Sequence[StepItem]) -> tuple[np.ndarray, np.ndarray]:
    """Per item (lo, hi): the item's first error is predicted right exactly when lo < threshold <= hi."""
    lo = np.empty(len(items))
    hi = np.empty(len(items))
    for i, it in enumerate(items):
        s = np.asarray(it.step_scores, dtype=float)
        prefix_min = np.minimum.accumulate(s)
        if it.label == -1:
            lo[i], hi[i] = -np.inf, prefix_min[-1]
        else:
            lo[i] = s[it.label]
            hi[i] = np.inf if it.label == 0 else prefix_min[it.label - 1]
    return lo, hi


def threshold_curve(items: Sequence[StepItem]) -> tuple[np.ndarray, np.ndarray]:
    """Candidate thresholds (one per distinct partition of the scores) and the F1 at each (NaN: undefined)."""
    scores = np.unique(np.concatenate([np.asarray(it.step_scores, dtype=float) for it in items]))
    cands = np.concatenate([scores[:1], (scores[:-1] + scores[1:]) / 2, [np.nextafter(scores[-1], np.inf)]])
    lo, hi = _intervals(items)
    hit = (lo[None, :] < cands[:, None]) & (cands[:, None] <= hi[None, :])  # (T, items)
    is_err = np.array([it.label != -1 for it in items])
    f1 = np.full(len(cands), np.nan)
    if is_err.any() and (~is_err).any():
        f1 = _harmonic(hit[:, is_err].mean(axis=1), hit[:, ~is_err].mean(axis=1))
    return cands, f1


def fit_threshold(items: Sequence[StepItem], split: str) -> tuple[float, float]:
    """The threshold maximizing ProcessBench F1 on `items` (smallest on ties) and that F1."""
    if not items:
        raise PrmError(f"cannot fit the threshold: no items in split '{split}'")
    if any(it.step_scores is None for it in items):
        raise PrmError(f"cannot fit the threshold: split '{split}' has items without step_scores")
    cands, f1 = threshold_curve(items)
    if np.isnan(f1).all():
        raise PrmError(f"cannot fit the threshold on split '{split}': F1 needs both erroneous and correct items")
    best = int(np.nanargmax(f1))
    return float(cands[best]), float(f1[best])


def step_counts(label: int, n_steps: int, predicted_ok: Sequence[bool], after_error: str) -> dict[str, int]:
    """PRMBench confusion counts of one solution; positive = a correct step."""
    counts = {"tp": 0, "fn": 0, "fp": 0, "tn": 0}
    for k in range(n_steps):
        gold_ok = _gold_step(label, k, after_error)
        if gold_ok is None:
            continue
        pred = bool(predicted_ok[k])
        key = ("tp" if pred else "fn") if gold_ok else ("fp" if pred else "tn")
        counts[key] += 1
    return counts


def _gold_step(label: int, k: int, after_error: str) -> bool | None:
    """Gold class of step k: True (correct), False (erroneous), None (after the first error, excluded)."""
    if label == -1 or k < label:
        return True
    if k == label or after_error == "error":
        return False
    return None


def step_f1(counts: dict[str, int]) -> dict[str, float | None]:
    values = _step_f1_arrays(*(np.array([[counts[k]]], dtype=float) for k in COUNT_KEYS))
    return {key: _scalar(v[0, 0]) for key, v in values.items()}


def step_auc(correct: Sequence[float], erroneous: Sequence[float]) -> float | None:
    """Threshold-free: the chance that a correct step outscores an erroneous one (ties count half)."""
    scores = np.concatenate([np.asarray(correct, float), np.asarray(erroneous, float)])
    is_ok = np.arange(len(scores)) < len(correct)
    return _scalar(_weighted_auc(scores, is_ok, np.ones((1, len(scores))))[0])


# ------------------------------------------------------------------------------------ metrics on resamples
# Every metric is a function of per-item sums, computed for a matrix of item weights W (B, n): W = ones
# gives the point estimate, multinomial counts the bootstrap resamples (eval/bootstrap.py).

COUNT_KEYS = ("tp", "fn", "fp", "tn")
METRIC_KEYS = ("acc_error", "acc_correct", "f1", "acc_error_answer_correct", "step_f1", "step_negative_f1",
               "prmscore", "step_auc")


def _scalar(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2ab / (a + b); 0 when both are 0; NaN when either is undefined."""
    total = a + b
    out = np.where(total > 0, 2 * a * b / np.where(total > 0, total, 1.0), 0.0)
    return np.where(np.isnan(a) | np.isnan(b), np.nan, out)


def _processbench_arrays(is_err: np.ndarray, hit: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    acc_error = ratio(w @ (hit & is_err), w @ is_err)
    acc_correct = ratio(w @ (hit & ~is_err), w @ ~is_err)
    return {"acc_error": acc_error, "acc_correct": acc_correct, "f1": _harmonic(acc_error, acc_correct)}


def _step_f1_arrays(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    pos = ratio(2 * tp, 2 * tp + fp + fn)
    neg = ratio(2 * tn, 2 * tn + fn + fp)
    return {"step_f1": pos, "step_negative_f1": neg, "prmscore": (pos + neg) / 2}


def _weighted_auc(scores: np.ndarray, is_ok: np.ndarray, w: np.ndarray, chunk: int = 2_000_000) -> np.ndarray:
    """Mann-Whitney AUC of correct over erroneous steps with step weights w (B, S): per resample, the
    weighted share of (correct, erroneous) pairs where the correct step scores higher, ties counting half."""
    if not is_ok.any() or is_ok.all():
        return np.full(w.shape[0], np.nan)
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # one group per distinct score
    ok = is_ok[order]
    out = np.empty(w.shape[0])
    rows = max(1, chunk // max(len(s), 1))
    for b in range(0, w.shape[0], rows):  # chunks bound the (B, S) temporaries
        ws = w[b:b + rows][:, order]
        c = np.add.reduceat(ws * ok, starts, axis=1)
        e = np.add.reduceat(ws * ~ok, starts, axis=1)
        below = np.cumsum(e, axis=1) - e
        out[b:b + rows] = ratio((c * (below + 0.5 * e)).sum(axis=1), c.sum(axis=1) * e.sum(axis=1))
    return out


@dataclass
class ItemTable:
    """Per-item facts of one predictor on one split, from which every metric is a weighted sum."""

    is_err: np.ndarray  # (n,) gold has an error
    hit: np.ndarray  # (n,) predicted first error == gold
    answer_ok: np.ndarray  # (n,) final answer correct
    counts: np.ndarray  # (n, 4) PRMBench step counts tp, fn, fp, tn (zeros without a prediction)
    step_item: np.ndarray  # (S,) item index of each gold-labelled step (PRM only; empty otherwise)
    step_scores: np.ndarray  # (S,) its score
    step_ok: np.ndarray  # (S,) its gold class

    def metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric for item weights w (B, n), each a (B,) array, NaN where undefined."""
        out = _processbench_arrays(self.is_err, self.hit, w)
        flawed = self.is_err & self.answer_ok  # Qwen PRM paper, Table 5: errors a final-answer check misses
        out["acc_error_answer_correct"] = ratio(w @ (self.hit & flawed), w @ flawed)
        out.update(_step_f1_arrays(*(w @ self.counts).T))
        out["step_auc"] = (_weighted_auc(self.step_scores, self.step_ok, w[:, self.step_item])
                           if len(self.step_item) else np.full(w.shape[0], np.nan))
        return out


def _first_error_to_steps(pred: int, n_steps: int) -> list[bool]:
    return [pred == -1 or k < pred for k in range(n_steps)]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _item_table(group: Sequence[StepItem], source: str, threshold: float | None,
                after_error: str) -> tuple[ItemTable, int]:
    """The split's ItemTable for one predictor and the number of items without a usable prediction."""
    hit, counts, unusable = [], [], 0
    step_item, step_scores, step_ok = [], [], []
    for i, it in enumerate(group):
        if source == "prm":
            assert it.step_scores is not None and threshold is not None
            pred: int | None = predict_first_error(it.step_scores, threshold)
            ok = [s >= threshold for s in it.step_scores]
            for k, score in enumerate(it.step_scores):
                gold = _gold_step(it.label, k, after_error)
                if gold is not None:
                    step_item.append(i)
                    step_scores.append(score)
                    step_ok.append(gold)
        else:
            pred = it.predicted.get(source)
            ok = None if pred is None else _first_error_to_steps(pred, len(it.steps))
        hit.append(pred == it.label)
        if ok is None:
            unusable += 1
            counts.append([0, 0, 0, 0])
        else:
            c = step_counts(it.label, len(it.steps), ok, after_error)
            counts.append([c[k] for k in COUNT_KEYS])
    table = ItemTable(
        is_err=np.array([it.label != -1 for it in group], dtype=bool), hit=np.array(hit, dtype=bool),
        answer_ok=np.array([it.final_answer_correct for it in group], dtype=bool),
        counts=np.array(counts, dtype=float).reshape(-1, 4), step_item=np.array(step_item, dtype=int),
        step_scores=np.array(step_scores, dtype=float), step_ok=np.array(step_ok, dtype=bool))
    return table, unusable


def evaluate_source(items: Sequence[StepItem], source: str, threshold: float | None,
                    after_error: str, cfg: EvalConfig | None = None) -> dict[str, Any]:
    """Metrics of one predictor ('prm', 'judge' or 'predicted') per split and averaged over splits, each with
    a percentile bootstrap interval (`ci`: [low, high]) when cfg.bootstrap > 0: items are resampled within
    each split (seeded per split name), the same resamples give the split's and the average's intervals."""
    cfg = cfg or EvalConfig(bootstrap=0)
    by_split: dict[str, list[StepItem]] = {}
    for it in items:
        by_split.setdefault(it.split, []).append(it)
    splits: dict[str, Any] = {}
    resampled: dict[str, dict[str, np.ndarray]] = {}
    for name, group in by_split.items():
        table, unusable = _item_table(group, source, threshold, after_error)
        point = table.metrics(np.ones((1, len(group))))
        row: dict[str, Any] = {"n_error": int(table.is_err.sum()), "n_correct": int((~table.is_err).sum()),
                               "n_error_answer_correct": int((table.is_err & table.answer_ok).sum())}
        row.update({key: _scalar(point[key][0]) for key in METRIC_KEYS})
        row["step_counts"] = dict(zip(COUNT_KEYS, (int(v) for v in table.counts.sum(axis=0)), strict=True))
        row["no_prediction"] = unusable
        if cfg.bootstrap > 0:
            resampled[name] = table.metrics(resample_counts(len(group), cfg.bootstrap, group_rng(cfg.seed, name)))
            row["ci"] = _intervals_of(row, resampled[name], cfg.confidence)
        splits[name] = row
    average: dict[str, Any] = {key: _mean([r[key] for r in splits.values()]) for key in METRIC_KEYS}
    average["splits_without_f1"] = [name for name, r in splits.items() if r["f1"] is None]
    if cfg.bootstrap > 0:
        # The average over the splits where the point value is defined, per resample.
        mean_of = {key: np.mean([resampled[n][key] for n, r in splits.items() if r[key] is not None]
                                or [np.full(cfg.bootstrap, np.nan)], axis=0) for key in METRIC_KEYS}
        average["ci"] = _intervals_of(average, mean_of, cfg.confidence)
    return {"splits": splits, "average": average}


def _intervals_of(point: dict[str, Any], samples: dict[str, np.ndarray],
                  confidence: float) -> dict[str, list[float] | None]:
    """[low, high] per metric; None where the point value is undefined."""
    out: dict[str, list[float] | None] = {}
    for key in METRIC_KEYS:
        low, high = percentile_interval(samples[key], confidence)
        out[key] = None if point[key] is None or math.isnan(low) else [float(low), float(high)]
    return out


def evaluate_steps(items: list[StepItem], cfg: EvalConfig, threshold: float | None = None,
                   fit_on: str | None = None) -> dict[str, Any]:
    """Every predictor present on the items; `threshold`/`fit_on` override the config's."""
    if not items:
        raise PrmError("no step-error items in the input")
    fit_on = fit_on if fit_on is not None else cfg.fit_on
    threshold = cfg.threshold if threshold is None else threshold
    out: dict[str, Any] = {"kind": "steps", "items": len(items), "after_error": cfg.after_error, "sources": {},
                           "bootstrap": {"resamples": cfg.bootstrap, "confidence": cfg.confidence, "seed": cfg.seed,
                                         "method": "percentile", "over": "items, resampled within each split"}}
    scored = [it for it in items if it.step_scores is not None]
    split_names = sorted({it.split for it in items})
    if scored:
        if len(scored) != len(items):
            missing = next(it for it in items if it.step_scores is None)
            raise PrmError(f"item {missing.id} (line {missing.line}) has no step_scores while others do; "
                           f"score every item or none")
        fit_info = None
        if fit_on is not None:
            fit_items = [it for it in items if it.split == fit_on]
            if not fit_items:
                raise PrmError(f"--fit-on {fit_on}: no such split (splits: {', '.join(split_names)})")
            threshold, best_f1 = fit_threshold(fit_items, fit_on)
            cands, curve = threshold_curve(fit_items)
            fit_info = {"split": fit_on, "f1": best_f1,
                        "curve": {"thresholds": cands.tolist(), "f1": curve.tolist()}}
        result = evaluate_source(items, "prm", threshold, cfg.after_error, cfg)
        result["threshold"] = threshold
        result["fitted"] = fit_info
        out["sources"]["prm"] = result
    for source in ("judge", "predicted"):
        have = [it for it in items if source in it.predicted]
        if have:
            result = evaluate_source(have, source, None, cfg.after_error, cfg)
            result["items_with_prediction"] = len(have)
            out["sources"][source] = result
    if fit_on is not None and not scored:
        raise PrmError(f"--fit-on {fit_on}: fitting a threshold needs step_scores (score the items or pass --model)")
    if not out["sources"]:
        raise PrmError("nothing to evaluate: items carry neither step_scores, judge.first_error nor "
                       "predicted_first_error (score them with `prm score` or pass --model)")
    out["splits"] = split_names
    headline: dict[str, float | None] = {}
    for source, res in out["sources"].items():
        for key in ("f1", "acc_error", "acc_correct", "acc_error_answer_correct", "prmscore", "step_auc"):
            headline[f"{source}.{key}"] = res["average"][key]
        for split, row in res["splits"].items():
            headline[f"{source}.f1.{split}"] = row["f1"]
    out["headline"] = headline
    return out


def write_steps_report(metrics: dict[str, Any], items: list[StepItem], out_dir: str | Path, cfg: EvalConfig,
                       sources: Sequence[str]) -> Path:
    from prm.eval.report import (
        Report,
        distinct_labels,
        heatmap_figure,
        histogram_figure,
        md_table,
        pct,
        pct_ci,
    )

    metrics["inputs"] = list(sources)
    report = Report(out_dir, "Step-error evaluation (ProcessBench, PRMBench-style)")
    report.add(f"Inputs: {', '.join(f'`{s}`' for s in sources)} — {metrics['items']} items, splits: "
               f"{', '.join(metrics['splits'])}.\n\n"
               "ProcessBench: accuracy on erroneous items (first error found exactly), on correct items "
               "(no error flagged), F1 = harmonic mean (— when a side is empty). PRMBench: step F1 "
               "(correct steps positive), negative F1 (erroneous steps positive), PRMScore = their mean; "
               f"steps after the gold first error: {'excluded' if cfg.after_error == 'exclude' else 'erroneous'}. "
               "\"Erroneous, answer right\": erroneous items whose final answer is correct (the Qwen PRM paper's "
               "extracted ProcessBench, Table 5), and the accuracy on them."
               + (f" In brackets: {100 * cfg.confidence:g}% percentile bootstrap intervals ({cfg.bootstrap} "
                  f"resamples of the items within each split, seed {cfg.seed}; the threshold held fixed)."
                  if cfg.bootstrap > 0 else ""))
    headers = ["split", "erroneous", "correct", "acc. erroneous", "acc. correct", "F1",
               "erroneous, answer right", "acc. on them", "step F1", "step neg. F1", "PRMScore", "step AUC",
               "no prediction"]

    def cells(r: dict[str, Any]) -> list[str]:
        ci = r.get("ci") or {}
        return [pct_ci(r["acc_error"], ci.get("acc_error")), pct_ci(r["acc_correct"], ci.get("acc_correct")),
                pct_ci(r["f1"], ci.get("f1")), str(r.get("n_error_answer_correct", "")),
                pct_ci(r["acc_error_answer_correct"], ci.get("acc_error_answer_correct"))] + \
               [pct_ci(r[k], ci.get(k)) for k in ("step_f1", "step_negative_f1", "prmscore", "step_auc")]

    for source, res in metrics["sources"].items():
        title = {"prm": "PRM", "judge": "LLM judge", "predicted": "predicted_first_error"}[source]
        report.heading(title)
        if source == "prm":
            fitted = res["fitted"]
            if fitted:
                report.add(f"Threshold {res['threshold']:.4f}, fitted on split `{fitted['split']}` "
                           f"(F1 {pct(fitted['f1'])}) and reused on all splits.")
            else:
                report.add(f"Fixed threshold {res['threshold']:.4f}.")
        rows = [[name, r["n_error"], r["n_correct"], *cells(r), r["no_prediction"]]
                for name, r in res["splits"].items()]
        avg = dict(res["average"], n_error_answer_correct="")
        rows.append(["**average**", "", "", *cells(avg), ""])
        report.add(md_table(headers, rows))
        if source == "prm" and res["fitted"]:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            curve = res["fitted"]["curve"]
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.plot(curve["thresholds"], [100 * v if v is not None and not math.isnan(v) else math.nan
                                          for v in curve["f1"]])
            ax.axvline(res["threshold"], color="red", linestyle="--", linewidth=1)
            ax.set_xlabel("threshold")
            ax.set_ylabel("F1 (%)")
            ax.set_title(f"F1 against threshold on {res['fitted']['split']}")
            ax.grid(alpha=0.3)
            report.figure(fig, "threshold_fit.png", "F1 against threshold")

    report.heading("First-error positions")
    groups: dict[str, list[float]] = {"gold": [it.label for it in items if it.label != -1]}
    prm = metrics["sources"].get("prm")
    if prm is not None:
        t = prm["threshold"]
        groups["prm"] = [p for it in items if (p := predict_first_error(it.step_scores or [], t)) != -1]
    for source in ("judge", "predicted"):
        if source in metrics["sources"]:
            groups[source] = [p for it in items if (p := it.predicted.get(source)) is not None and p != -1]
    groups = {k: v for k, v in groups.items() if v}
    if groups:
        top = int(max(max(v) for v in groups.values()))
        report.figure(histogram_figure([], np.arange(-0.5, top + 1.5, 1.0), "First-error position (items with "
                                       "an error)", "step index", groups), "first_error_hist.png",
                      "First-error positions")
    else:
        report.add("No erroneous items and no predicted errors.")
    if prm is not None:
        shown = items[: cfg.heatmap_rows]
        report.heading("Step scores of a few items")
        report.add("Outlined: the gold first error.")
        fig = heatmap_figure([it.step_scores or [] for it in shown],
                             [f"{it.split}:{label}" for it, label in zip(shown, distinct_labels([it.id for it in shown]),
                                                                          strict=True)],
                             [it.label for it in shown], "PRM step scores")
        report.figure(fig, "step_heatmap.png", "Step-score heatmap")
    return report.write(metrics)


def resampled_metrics(items: Sequence[StepItem], threshold: float, counts: np.ndarray,
                      after_error: str = "exclude") -> dict[str, np.ndarray]:
    """Every metric of a scored PRM on `items` (one split) for each row of item weights `counts` (B, n), e.g.
    the same bootstrap resamples for two models scored on the same items: a paired comparison."""
    table, _ = _item_table(items, "prm", threshold, after_error)
    return table.metrics(counts)
