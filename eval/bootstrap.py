"""Percentile bootstrap over items, shared by `prm eval bon` (problems) and `prm eval steps` (solutions).

A resample is a row of multinomial counts: how often each of the n items is drawn. A metric built from
per-item sums (an accuracy, pooled step counts, a weighted AUC) is then evaluated on every resample at once
with matrix products, and the interval is the (alpha/2, 1 - alpha/2) quantile of the resampled values.
Resamples on which a metric is undefined (NaN, e.g. no erroneous item drawn) are left out of its quantiles.
"""

from __future__ import annotations

import zlib

import numpy as np


def resample_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) float counts: row b says how often each item is drawn in resample b (rows sum to n)."""
    if n == 0 or resamples <= 0:
        return np.zeros((max(resamples, 0), n))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)


def group_rng(seed: int, group: str) -> np.random.Generator:
    """A generator per (seed, group name): a group's resamples do not depend on which other groups exist."""
    return np.random.default_rng([seed, zlib.crc32(group.encode("utf-8"))])


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) over axis 0 of `samples`, NaN resamples left out (NaN where none is defined)."""
    samples = np.asarray(samples, dtype=float)
    alpha = (1.0 - confidence) / 2.0
    defined = ~np.isnan(samples)
    if defined.all():
        return np.quantile(samples, alpha, axis=0), np.quantile(samples, 1.0 - alpha, axis=0)
    low = np.full(samples.shape[1:], np.nan)
    high = np.full(samples.shape[1:], np.nan)
    some = defined.any(axis=0)
    if some.any():
        low[some] = np.nanquantile(samples[:, some], alpha, axis=0)
        high[some] = np.nanquantile(samples[:, some], 1.0 - alpha, axis=0)
    return low, high


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (an undefined rate)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out
