"""Best-of-N metrics against values computed by hand on two 4-candidate pools (every subset enumerated)."""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction as F

import numpy as np
import pytest
from prm.eval.bon import evaluate_bon, n_values, pass_at_k
from prm.eval.config import EvalConfig
from prm.eval.data import load_pools

from prm.errors import InputError, PrmError


def cand(scores, answer, correct):
    return {"steps": [f"step {k}" for k in range(len(scores))], "final_answer": answer, "correct": correct,
            "step_scores": scores}


# Problem A: "5" and "\boxed{5}" are the same answer; the last candidate has one step.
# Problem B: one-step candidates (every aggregation agrees); d3 gives no final answer.
ITEMS = [
    {"problem_id": "A", "problem": "p A", "answer": "5", "candidates": [
        cand([0.9, 0.8], "5", True),          # min .8  prod .72  last .8  mean .85  geo .849
        cand([0.6, 0.9], "\\boxed{5}", True),  # min .6  prod .54  last .9  mean .75  geo .735
        cand([0.95, 0.3], "7", False),        # min .3  prod .285 last .3  mean .625 geo .534
        cand([0.7], "7", False),              # .7 everywhere
    ]},
    {"problem_id": "B", "problem": "p B", "answer": "12", "candidates": [
        cand([0.5], "12", True),
        cand([0.4], "12", True),
        cand([0.8], "10", False),
        cand([0.2], None, False),
    ]},
]

# Per-problem values by hand. N=2 enumerates the 6 pairs {01,02,03,12,13,23}; ties count 1/2.
HAND = {
    # metric: {N: (problem A, problem B)}
    "pass": {1: (F(1, 2), F(1, 2)), 2: (F(5, 6), F(5, 6)), 4: (1, 1)},
    # A pairs: 01 both "5" ->1, 02/03/12/13 one each -> 1/2, 23 both "7" -> 0.  B: 01 1, 02 1/2, 03 1 (d3 has
    # no vote), 12 1/2, 13 1, 23 0.  N=4: A 2-2 tie; B "12" wins 2-1.
    "maj": {1: (F(1, 2), F(1, 2)), 2: (F(3, 6), F(4, 6)), 4: (F(1, 2), 1)},
    # A, min: pair winners c0,c0,c0,c1,c3(.7>.6),c2|c3 -> 4/6. B: 01 d0, 02 d2, 03 d0, 12 d2, 13 d1, 23 d2 -> 3/6.
    "prm_min": {1: (F(1, 2), F(1, 2)), 2: (F(4, 6), F(3, 6)), 4: (1, 0)},
    "prm_product": {1: (F(1, 2), F(1, 2)), 2: (F(4, 6), F(3, 6)), 4: (1, 0)},
    # last/mean/geomean: in pair 13 candidate c1 beats c3 (.9 / .75 / .735 against .7) -> 5/6.
    "prm_last": {1: (F(1, 2), F(1, 2)), 2: (F(5, 6), F(3, 6)), 4: (1, 0)},
    "prm_mean": {1: (F(1, 2), F(1, 2)), 2: (F(5, 6), F(3, 6)), 4: (1, 0)},
    "prm_geomean": {1: (F(1, 2), F(1, 2)), 2: (F(5, 6), F(3, 6)), 4: (1, 0)},
    # weighted, min: A pairs 01 1, 02 (.8 v .3) 1, 03 (.8 v .7) 1, 12 (.6 v .3) 1, 13 (.6 v .7) 0, 23 0.
    # B: 01 1, 02 (.5 v .8) 0, 03 1, 12 0, 13 1, 23 0.  N=4: A 1.4 v 1.0 -> 1; B .9 v .8 -> 1.
    "weighted_min": {1: (F(1, 2), F(1, 2)), 2: (F(4, 6), F(3, 6)), 4: (1, 1)},
    "weighted_last": {1: (F(1, 2), F(1, 2)), 2: (F(5, 6), F(3, 6)), 4: (1, 1)},
}


@pytest.fixture()
def bon_file(tmp_path):
    path = tmp_path / "bon.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ITEMS))
    return path


def test_bon_metrics_equal_hand_values(bon_file):
    metrics = evaluate_bon(load_pools(bon_file), EvalConfig(bootstrap=200))
    assert metrics["ns"] == [1, 2, 4]
    assert metrics["subset_averaging"].startswith("exact")
    for metric, by_n in HAND.items():
        for j, n in enumerate(metrics["ns"]):
            a, b = by_n[n]
            assert metrics["per_problem"][metric][0][j] == pytest.approx(float(a)), (metric, n, "A")
            assert metrics["per_problem"][metric][1][j] == pytest.approx(float(b)), (metric, n, "B")
            assert metrics["curves"][metric]["mean"][j] == pytest.approx(float((a + b) / 2)), (metric, n)
    assert metrics["headline"]["weighted_min@4"] == 1.0
    assert metrics["headline"]["prm_min@4"] == 0.5
    # intervals bracket the mean
    c = metrics["curves"]["maj"]
    assert all(lo <= m <= hi for lo, m, hi in zip(c["low"], c["mean"], c["high"], strict=True))


def test_lowest_step_position_of_chosen_solutions(bon_file):
    low = evaluate_bon(load_pools(bon_file), EvalConfig(bootstrap=0))["lowest_step"]
    # min picks c0 (lowest = final step) in A and the one-step d2 in B; last picks c1 (lowest = step 0).
    assert low["chosen_from_full_pool"]["min"] == {"final": 1, "earlier": 0, "single_step": 1, "final_share": 1.0}
    assert low["chosen_from_full_pool"]["last"] == {"final": 0, "earlier": 1, "single_step": 1, "final_share": 0.0}
    assert low["all_candidates"]["correct"]["earlier"] == 1


def test_pass_at_k_matches_subset_enumeration():
    for n, c in [(5, 0), (5, 2), (6, 5), (7, 3)]:
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = sum(any(i < c for i in s) for s in subsets) / len(subsets)
            assert math.isclose(pass_at_k(n, c, k), brute)
    assert n_values(6) == [1, 2, 4, 6]
    assert n_values(8) == [1, 2, 4, 8]


def test_random_subsets_when_too_many(bon_file):
    cfg = EvalConfig(exact_subset_limit=1, subsets=50, seed=3, bootstrap=0)
    m1 = evaluate_bon(load_pools(bon_file), cfg)
    m2 = evaluate_bon(load_pools(bon_file), cfg)
    assert m1["subset_averaging"].startswith("random")
    assert m1["curves"] == m2["curves"]  # seeded
    assert m1["curves"]["pass"]["mean"][1] == pytest.approx(5 / 6)  # pass@N stays exact
    assert 0.0 <= m1["curves"]["maj"]["mean"][1] <= 1.0


def test_solution_records_grouped_into_pools(tmp_path):
    rows = []
    for item in ITEMS:
        for i, c in enumerate(item["candidates"]):
            rows.append({"id": f"{item['problem_id']}-{i}", "problem_id": item["problem_id"],
                         "problem": item["problem"], "answer": item["answer"], "generator": "g", **c})
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pools = load_pools(path)
    assert [p.problem_id for p in pools] == ["A", "B"] and [len(p) for p in pools] == [4, 4]
    metrics = evaluate_bon(pools, EvalConfig(bootstrap=0))
    assert metrics["curves"]["maj"]["mean"] == pytest.approx([0.5, 7 / 12, 0.75])


def test_bad_inputs(tmp_path, bon_file):
    bad = json.loads(json.dumps(ITEMS))
    bad[1]["candidates"][2]["step_scores"] = [0.5, 0.5]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(InputError, match=r"bad.jsonl:2: field 'candidates\[2\].step_scores'"):
        load_pools(path)
    bad[1]["candidates"][2]["step_scores"] = [1.5]
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        load_pools(path)
    with pytest.raises(PrmError, match="smallest pool"):
        evaluate_bon(load_pools(bon_file), EvalConfig(max_n=8))
    assert np.isfinite(evaluate_bon(load_pools(bon_file), EvalConfig(max_n=3, bootstrap=0))["ns"]).all()


def test_unicode_blank_lines_are_skipped_and_errors_keep_their_line(tmp_path):
    """A line of only a non-breaking space is blank to every reader, so line numbers stay aligned."""
    from prm.jsonl import is_blank

    assert is_blank(b"") and is_blank(b" \t") and is_blank("\u00a0".encode()) and not is_blank(b"\xff")
    bad = json.loads(json.dumps(ITEMS))
    bad[1]["candidates"][2]["step_scores"] = [1.5]
    path = tmp_path / "nbsp.jsonl"
    path.write_bytes(b"\xc2\xa0\n" + json.dumps(ITEMS[0]).encode() + b"\n \xc2\xa0\n" + json.dumps(bad[1]).encode())
    with pytest.raises(InputError, match=r"nbsp.jsonl:4: field 'candidates\[2\].step_scores\[0\]'"):
        load_pools(path)
    path.write_bytes(b"\xc2\xa0\n" + json.dumps(ITEMS[0]).encode() + b"\n \xc2\xa0\n" + json.dumps(ITEMS[1]).encode())
    pools = load_pools(path)
    assert [p.problem_id for p in pools] == ["A", "B"] and pools[1].where[0] == (4, "candidates[0].")
