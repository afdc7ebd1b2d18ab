"""The pooled interval of `prm experiment ablation` over seeds (prm/app/pooled.py), on an example worked by hand."""

from __future__ import annotations

import pytest

from prm.app.pooled import pool, t_interval


def test_t_interval_of_three_per_seed_differences_by_hand():
    # diffs 0.02, 0.05, 0.08: mean 0.05, sd sqrt((0.03^2 + 0 + 0.03^2) / 2) = 0.03, se 0.03 / sqrt(3) = 0.017320508,
    # t_{0.975, 2} = 4.302653 -> half width 0.074524131
    low, high = t_interval([0.02, 0.05, 0.08], 0.95)
    assert low == pytest.approx(0.05 - 0.074524131, abs=1e-6)
    assert high == pytest.approx(0.05 + 0.074524131, abs=1e-6)
    assert t_interval([0.3], 0.95) is None  # one seed: no between-seed spread, no interval


def test_pool_counts_seeds_with_the_sign_of_the_mean():
    p = pool([0.02, 0.05, 0.08])
    assert p["mean"] == pytest.approx(0.05) and p["same_sign"] == 3 and p["seeds"] == 3
    assert not p["separated"]  # the interval crosses 0
    p = pool([0.10, 0.12, -0.01, None])
    assert p["mean"] == pytest.approx(0.07) and p["same_sign"] == 2 and p["seeds"] == 3  # None left out
    p = pool([0.10, 0.11, 0.12])  # sd 0.01: [0.0852, 0.1348] excludes 0
    assert p["separated"] and p["ci"][0] == pytest.approx(0.11 - 4.302653 * 0.01 / 3 ** 0.5, abs=1e-6)
