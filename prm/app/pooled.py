"""Pooling an experiment's per-seed paired differences (`prm experiment ablation` with `ablation.seeds`).

Each seed's difference (consensus minus another arm on that seed's held-out items) already carries that seed's
item sampling noise, so the spread of the per-seed differences covers item AND seed variation. The interval is
a Student-t interval over them with S-1 degrees of freedom: honest with few seeds (it widens sharply at S=2 or
3), where a two-level bootstrap (resample seeds, then items) under-covers because 3 seeds give only 10 distinct
seed resamples. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """mean ± t_{(1+confidence)/2, S-1} · sd / sqrt(S) of the per-seed values; None for fewer than 2 values."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def pool(values: Sequence[float | None], confidence: float = 0.95) -> dict[str, Any]:
    """The pooled view of one difference over seeds: its mean, t-interval, and how many seeds share the mean's sign.

    Seeds whose difference is undefined (None, e.g. an AUC on a split with one class) are left out and counted."""
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return {"mean": None, "ci": None, "seeds": 0, "same_sign": 0, "per_seed": list(values), "separated": False}
    mean = sum(kept) / len(kept)
    ci = t_interval(kept, confidence)
    sign = (mean > 0) - (mean < 0)
    same = sum(((v > 0) - (v < 0)) == sign for v in kept)
    return {"mean": mean, "ci": list(ci) if ci else None, "seeds": len(kept), "same_sign": same,
            "per_seed": list(values), "separated": ci is not None and (ci[0] > 0 or ci[1] < 0)}


def mean_or_none(values: Sequence[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None
