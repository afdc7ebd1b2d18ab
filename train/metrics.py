"""Validation metrics of `prm train` (eval.jsonl): step accuracy and ProcessBench-style first-error metrics."""

from __future__ import annotations


def first_error(flags: list[bool]) -> int:
    """Index of the first False, -1 if none."""
    return next((i for i, ok in enumerate(flags) if not ok), -1)


def step_metrics(probs: list[list[float]], labels: list[list[int]], threshold: float) -> dict[str, float]:
    """Step accuracy, and ProcessBench-style first-error metrics at `threshold`.

    Predicted first error = first step with P(correct) < threshold (-1 if none). acc_error = exact match on
    items with an error, acc_correct = share of all-correct items predicted -1, f1 = their harmonic mean."""
    n_steps = sum(len(p) for p in probs)
    hits = sum(int((pi >= threshold) == bool(li)) for p, lab in zip(probs, labels, strict=True)
               for pi, li in zip(p, lab, strict=True))
    err_hit = err_n = ok_hit = ok_n = 0
    for p, lab in zip(probs, labels, strict=True):
        gold = first_error([bool(v) for v in lab])
        pred = first_error([v >= threshold for v in p])
        if gold == -1:
            ok_n += 1
            ok_hit += int(pred == -1)
        else:
            err_n += 1
            err_hit += int(pred == gold)
    acc_err = err_hit / err_n if err_n else 0.0
    acc_ok = ok_hit / ok_n if ok_n else 0.0
    f1 = 2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err + acc_ok > 0 else 0.0
    return {"step_accuracy": hits / max(n_steps, 1), "acc_error": acc_err, "acc_correct": acc_ok, "f1": f1,
            "items": float(len(probs)), "steps": float(n_steps)}
