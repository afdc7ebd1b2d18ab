"""Step-error benchmarks: ProcessBench (first-error identification) and PRMBench-style step classification.

    prm eval steps -i gsm8k.jsonl -i math.jsonl -o reports/steps [--threshold 0.5 | --fit-on gsm8k]

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval.config import EvalConfig
from eval.data import StepItem
from prm.errors import PrmError


def predict_first_error(scores: Sequence[float], threshold: float) -> int:
    """Index of the first step scoring below `threshold`, -1 when none does."""
    for k, s in enumerate(scores):
        if s < threshold:
            return k
    return -1


def _harmonic(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def processbench_metrics(labels: Sequence[int], predictions: Sequence[int | None]) -> dict[str, Any]:
    """Accuracy on erroneous items, on correct items, and F1 (their harmonic mean; None when a side is empty)."""
    err = [(lab, pred) for lab, pred in zip(labels, predictions, strict=True) if lab != -1]
    cor = [(lab, pred) for lab, pred in zip(labels, predictions, strict=True) if lab == -1]
    acc_error = sum(p == lab for lab, p in err) / len(err) if err else None
    acc_correct = sum(p == -1 for _, p in cor) / len(cor) if cor else None
    return {
        "n_error": len(err),
        "n_correct": len(cor),
        "acc_error": acc_error,
        "acc_correct": acc_correct,
        "f1": _harmonic(acc_error, acc_correct),
    }


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
        acc_e = hit[:, is_err].mean(axis=1)
        acc_c = hit[:, ~is_err].mean(axis=1)
        denom = acc_e + acc_c
        f1 = np.where(denom > 0, 2 * acc_e * acc_c / np.where(denom > 0, denom, 1), 0.0)
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
        if label == -1 or k < label:
            gold_ok = True
        elif k == label or after_error == "error":
            gold_ok = False
        else:
            continue
        pred = bool(predicted_ok[k])
        key = ("tp" if pred else "fn") if gold_ok else ("fp" if pred else "tn")
        counts[key] += 1
    return counts


def step_f1(counts: dict[str, int]) -> dict[str, float | None]:
    tp, fn, fp, tn = counts["tp"], counts["fn"], counts["fp"], counts["tn"]
    pos = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None
    neg = 2 * tn / (2 * tn + fn + fp) if (2 * tn + fn + fp) else None
    score = None if pos is None or neg is None else (pos + neg) / 2
    return {"step_f1": pos, "step_negative_f1": neg, "prmscore": score}


def step_auc(correct: Sequence[float], erroneous: Sequence[float]) -> float | None:
    """Threshold-free: the chance that a correct step outscores an erroneous one (ties count half)."""
    if not correct or not erroneous:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([np.asarray(correct, float), np.asarray(erroneous, float)]))
    n_pos, n_neg = len(correct), len(erroneous)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _gold_step_scores(items: Sequence[StepItem], after_error: str) -> tuple[list[float], list[float]]:
    """PRM scores of the labelled steps, split into gold-correct and gold-erroneous (step_counts' rules)."""
    correct: list[float] = []
    erroneous: list[float] = []
    for it in items:
        for k, score in enumerate(it.step_scores or []):
            if it.label == -1 or k < it.label:
                correct.append(score)
            elif k == it.label or after_error == "error":
                erroneous.append(score)
    return correct, erroneous


def _first_error_to_steps(pred: int, n_steps: int) -> list[bool]:
    return [pred == -1 or k < pred for k in range(n_steps)]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def evaluate_source(items: Sequence[StepItem], source: str, threshold: float | None,
                    after_error: str) -> dict[str, Any]:
    """Metrics of one predictor ('prm', 'judge' or 'predicted') per split and averaged."""
    by_split: dict[str, list[StepItem]] = {}
    for it in items:
        by_split.setdefault(it.split, []).append(it)
    splits: dict[str, Any] = {}
    for name, group in by_split.items():
        preds: list[int | None] = []
        counts = {"tp": 0, "fn": 0, "fp": 0, "tn": 0}
        unusable = 0
        for it in group:
            if source == "prm":
                assert it.step_scores is not None and threshold is not None
                pred: int | None = predict_first_error(it.step_scores, threshold)
                ok = [s >= threshold for s in it.step_scores]
            else:
                pred = it.predicted.get(source)
                ok = None if pred is None else _first_error_to_steps(pred, len(it.steps))
            preds.append(pred)
            if ok is None:
                unusable += 1
                continue
            for key, v in step_counts(it.label, len(it.steps), ok, after_error).items():
                counts[key] += v
        row = processbench_metrics([it.label for it in group], preds)
        row.update(step_f1(counts))
        row["step_auc"] = step_auc(*_gold_step_scores(group, after_error)) if source == "prm" else None
        row["step_counts"] = counts
        row["no_prediction"] = unusable
        splits[name] = row
    keys = ("acc_error", "acc_correct", "f1", "step_f1", "step_negative_f1", "prmscore", "step_auc")
    average = {key: _mean([r[key] for r in splits.values()]) for key in keys}
    average["splits_without_f1"] = [name for name, r in splits.items() if r["f1"] is None]
    return {"splits": splits, "average": average}


def evaluate_steps(items: list[StepItem], cfg: EvalConfig, threshold: float | None = None,
                   fit_on: str | None = None) -> dict[str, Any]:
    """Every predictor present on the items; `threshold`/`fit_on` override the config's."""
    if not items:
        raise PrmError("no step-error items in the input")
    fit_on = fit_on if fit_on is not None else cfg.fit_on
    threshold = cfg.threshold if threshold is None else threshold
    out: dict[str, Any] = {"kind": "steps", "items": len(items), "after_error": cfg.after_error, "sources": {}}
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
        result = evaluate_source(items, "prm", threshold, cfg.after_error)
        result["threshold"] = threshold
        result["fitted"] = fit_info
        out["sources"]["prm"] = result
    for source in ("judge", "predicted"):
        have = [it for it in items if source in it.predicted]
        if have:
            result = evaluate_source(have, source, None, cfg.after_error)
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
        for key in ("f1", "acc_error", "acc_correct", "prmscore", "step_auc"):
            headline[f"{source}.{key}"] = res["average"][key]
        for split, row in res["splits"].items():
            headline[f"{source}.f1.{split}"] = row["f1"]
    out["headline"] = headline
    return out


def write_steps_report(metrics: dict[str, Any], items: list[StepItem], out_dir: str | Path, cfg: EvalConfig,
                       sources: Sequence[str]) -> Path:
    from eval.report import Report, heatmap_figure, histogram_figure, md_table, pct

    metrics["inputs"] = list(sources)
    report = Report(out_dir, "Step-error evaluation (ProcessBench, PRMBench-style)")
    report.add(f"Inputs: {', '.join(f'`{s}`' for s in sources)} — {metrics['items']} items, splits: "
               f"{', '.join(metrics['splits'])}.\n\n"
               "ProcessBench: accuracy on erroneous items (first error found exactly), on correct items "
               "(no error flagged), F1 = harmonic mean (— when a side is empty). PRMBench: step F1 "
               "(correct steps positive), negative F1 (erroneous steps positive), PRMScore = their mean; "
               f"steps after the gold first error: {'excluded' if cfg.after_error == 'exclude' else 'erroneous'}.")
    headers = ["split", "erroneous", "correct", "acc. erroneous", "acc. correct", "F1", "step F1",
               "step neg. F1", "PRMScore", "step AUC", "no prediction"]
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
        rows = [[name, r["n_error"], r["n_correct"], pct(r["acc_error"]), pct(r["acc_correct"]), pct(r["f1"]),
                 pct(r["step_f1"]), pct(r["step_negative_f1"]), pct(r["prmscore"]), pct(r["step_auc"]),
                 r["no_prediction"]]
                for name, r in res["splits"].items()]
        avg = res["average"]
        rows.append(["**average**", "", "", pct(avg["acc_error"]), pct(avg["acc_correct"]), pct(avg["f1"]),
                     pct(avg["step_f1"]), pct(avg["step_negative_f1"]), pct(avg["prmscore"]),
                     pct(avg["step_auc"]), ""])
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
                             [f"{it.split}:{it.id[:20]}" for it in shown],
                             [it.label for it in shown], "PRM step scores")
        report.figure(fig, "step_heatmap.png", "Step-score heatmap")
    return report.write(metrics)
