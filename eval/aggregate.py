"""From step scores to a solution score, and from a pool of solutions to one answer.

Solution scores (step scores are probabilities in [0, 1]):
    product  the chance that every step is right, if the steps were independent: how the Qwen2.5-Math-PRM
             paper (sections 2.2 and 4.2) and Lightman et al. ("Let's Verify Step by Step") score a solution;
             the default headline and `prm eval compare` target
    min      the weakest step (Math-Shepherd's choice)
    last     the score of the final step (how an outcome reward model would read it)
    mean     arithmetic mean of the steps
    geomean  geometric mean (the product, normalized for length); 0 when any step scores 0

Voting over a pool (answers compared after normalization, see `answer_classes`):
    majority vote           the answer given most often
    PRM-weighted vote       the answer whose solutions have the largest summed solution score

Ties (two answers with equal votes, two solutions with equal scores) are broken uniformly at random, and the
metrics report the expectation over that choice: the share of tied winners that are correct. This keeps every
metric deterministic and independent of candidate order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from prm.eval.config import AGGREGATION_NAMES

from prm import grading

__all__ = [
    "AGGREGATION_NAMES",
    "aggregate",
    "aggregate_all",
    "normalize_answer",
    "answer_classes",
    "majority_vote",
    "weighted_vote",
    "vote_value",
]


def aggregate(step_scores: Sequence[float], how: str) -> float:
    """Solution score of one solution under aggregation `how` (one of AGGREGATION_NAMES)."""
    if len(step_scores) == 0:
        raise ValueError("cannot aggregate an empty list of step scores")
    s = [float(x) for x in step_scores]
    if how == "min":
        return min(s)
    if how == "product":
        return math.prod(s)
    if how == "last":
        return s[-1]
    if how == "mean":
        return sum(s) / len(s)
    if how == "geomean":
        if any(x <= 0.0 for x in s):
            return 0.0
        return math.exp(sum(math.log(x) for x in s) / len(s))
    raise ValueError(f"unknown aggregation {how!r}; choose from {list(AGGREGATION_NAMES)}")


def aggregate_all(step_scores: Sequence[float], aggregations: Sequence[str] = AGGREGATION_NAMES) -> list[float]:
    return [aggregate(step_scores, how) for how in aggregations]


# ---------------------------------------------------------------------------------------------------------
# Answer normalization and equivalence

def normalize_answer(answer: str | None) -> str | None:
    """A comparison key for a final answer (`prm.grading.normalize_answer`); None for a missing answer."""
    if answer is None:
        return None
    key = grading.normalize_answer(answer)
    return key if key != "" else None


def answer_classes(answers: Sequence[str | None]) -> list[int]:
    """Group answers into equivalence classes: class id per answer (0, 1, ... in first-seen order), -1 for a
    missing or empty answer. Equal normalized keys share a class; where `prm.grading` offers an equivalence
    test it also merges answers whose keys differ (compared with each class's first member)."""
    keys = [normalize_answer(a) for a in answers]
    reps: list[tuple[str, str]] = []  # (key, raw answer) of each class's first member
    out: list[int] = []
    for raw, key in zip(answers, keys, strict=True):
        if key is None or raw is None:
            out.append(-1)
            continue
        found = -1
        for cid, (rkey, _) in enumerate(reps):
            if key == rkey:
                found = cid
                break
        if found < 0:  # keys differ but math-verify may still see the same value (0.5 vs \frac{1}{2})
            for cid, (_, rraw) in enumerate(reps):
                if grading.grade(raw, rraw):
                    found = cid
                    break
        if found < 0:
            reps.append((key, raw))
            found = len(reps) - 1
        out.append(found)
    return out


# ---------------------------------------------------------------------------------------------------------
# Votes over subsets (vectorized: one row per subset)


def vote_value(totals: np.ndarray, class_correct: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Expected correctness of a vote: `totals` (S, K) is each class's vote total in each of S subsets,
    `present` (S, K) whether the class has a member in the subset, `class_correct` (K,) the share of each
    class's members that are correct. The winners are the present classes with the largest total (a total of
    0 still wins among answers that all total 0); ties are broken uniformly at random (expectation reported);
    a subset with no answer at all scores 0."""
    if totals.shape[1] == 0:
        return np.zeros(totals.shape[0])
    best = np.where(present, totals, -np.inf).max(axis=1, keepdims=True)
    winners = present & (totals == best)
    n_win = winners.sum(axis=1)
    value = (winners * class_correct[None, :]).sum(axis=1)
    return np.where(n_win > 0, value / np.maximum(n_win, 1), 0.0)


def _class_correct(classes: np.ndarray, correct: np.ndarray, k: int) -> np.ndarray:
    sums = np.zeros(k)
    counts = np.zeros(k)
    valid = classes >= 0
    np.add.at(sums, classes[valid], correct[valid].astype(float))
    np.add.at(counts, classes[valid], 1.0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def _one_hot(classes: np.ndarray, k: int) -> np.ndarray:
    """(..., k) one-hot of class ids; -1 (no answer) gives an all-zero row."""
    eye = np.vstack([np.eye(k), np.zeros((1, k))])
    return eye[np.where(classes >= 0, classes, k)]


def majority_vote(classes: Sequence[int], correct: Sequence[bool], subsets: np.ndarray | None = None) -> np.ndarray:
    """maj@N over subsets (S, N) of candidate indices (default: the whole pool as one subset)."""
    cls = np.asarray(classes, dtype=int)
    cor = np.asarray(correct, dtype=bool)
    idx = np.arange(len(cls))[None, :] if subsets is None else np.asarray(subsets)
    k = int(cls.max()) + 1 if len(cls) else 0
    if k == 0:
        return np.zeros(idx.shape[0])
    totals = _one_hot(cls[idx], k).sum(axis=1)  # (S, K)
    return vote_value(totals, _class_correct(cls, cor, k), totals > 0)


def weighted_vote(
    classes: Sequence[int], correct: Sequence[bool], scores: np.ndarray, subsets: np.ndarray | None = None
) -> np.ndarray:
    """PRM-weighted vote over subsets: `scores` is (n,) or (n, A) solution scores; returns (S,) or (S, A)."""
    cls = np.asarray(classes, dtype=int)
    cor = np.asarray(correct, dtype=bool)
    sc = np.asarray(scores, dtype=float)
    squeeze = sc.ndim == 1
    if squeeze:
        sc = sc[:, None]
    idx = np.arange(len(cls))[None, :] if subsets is None else np.asarray(subsets)
    k = int(cls.max()) + 1 if len(cls) else 0
    if k == 0:
        out = np.zeros((idx.shape[0], sc.shape[1]))
        return out[:, 0] if squeeze else out
    onehot = _one_hot(cls[idx], k)  # (S, N, K)
    totals = np.einsum("snk,sna->ska", onehot, sc[idx])  # (S, K, A)
    cc = _class_correct(cls, cor, k)
    present = onehot.sum(axis=1) > 0  # (S, K)
    out = np.stack([vote_value(totals[:, :, a], cc, present) for a in range(sc.shape[1])], axis=1)
    return out[:, 0] if squeeze else out


def best_of_n(correct: Sequence[bool], scores: np.ndarray, subsets: np.ndarray | None = None) -> np.ndarray:
    """PRM@N: correctness of the highest-scoring solution in each subset (ties: expectation over the tied
    ones). `scores` (n,) or (n, A); returns (S,) or (S, A)."""
    cor = np.asarray(correct, dtype=float)
    sc = np.asarray(scores, dtype=float)
    squeeze = sc.ndim == 1
    if squeeze:
        sc = sc[:, None]
    idx = np.arange(len(cor))[None, :] if subsets is None else np.asarray(subsets)
    sub = sc[idx]  # (S, N, A)
    top = sub == sub.max(axis=1, keepdims=True)
    value = (top * cor[idx][:, :, None]).sum(axis=1) / top.sum(axis=1)
    return value[:, 0] if squeeze else value
