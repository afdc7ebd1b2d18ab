"""RewardMATH one-to-many accuracy / MRR and RewardBench pairwise accuracy on hand fixtures with ties."""

from __future__ import annotations

import json

import pytest
from prm.eval.config import EvalConfig
from prm.eval.data import load_pools
from prm.eval.pairwise import evaluate_pairwise
from prm.eval.rewardmath import evaluate_rewardmath, one_to_many

from prm.errors import PrmError


def problem(pid, correct_scores, incorrect_scores):
    cands = [{"steps": ["a", "b"], "final_answer": "1", "correct": True, "step_scores": [0.99, s]}
             for s in correct_scores]
    cands += [{"steps": ["a", "b"], "final_answer": "2", "correct": False, "step_scores": [0.99, s]}
              for s in incorrect_scores]
    return {"problem_id": pid, "problem": "q", "answer": "1", "candidates": cands}


# solution score under `min` = the second step score
ROWS = [
    problem("P1", [0.9], [0.5, 0.6, 0.7]),  # rank 1: hit
    problem("P2", [0.6], [0.8, 0.6, 0.2]),  # one above, one tied -> rank 3
    problem("P3", [0.4], [0.5, 0.3, 0.1]),  # rank 2
    problem("P4", [0.7], []),               # no incorrect solution: skipped
]


@pytest.fixture()
def pools(tmp_path):
    path = tmp_path / "rm.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return load_pools(path)


def test_one_to_many_by_hand(pools):
    m = evaluate_rewardmath(pools, EvalConfig(aggregations=["min"]))
    r = m["aggregations"]["min"]
    assert r["accuracy"] == pytest.approx(1 / 3)
    assert r["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert r["problems_with_ties"] == 1
    assert m["skipped_problems"] == ["P4"]
    assert m["random_baseline"]["accuracy"] == pytest.approx(1 / 4)
    assert m["random_baseline"]["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert one_to_many([0.5], [0.5]) == (False, 0.5)  # a tie is not a hit and ranks the correct one second


def test_several_correct_solutions_are_scored_per_problem(tmp_path):
    """As RewardMATH's reference: a hit needs min(correct) > max(incorrect); MRR ranks the best correct one."""
    path = tmp_path / "multi.jsonl"
    path.write_text(json.dumps(problem("A", [0.9, 0.1], [0.5])) + "\n" + json.dumps(problem("B", [0.3], [0.6])) + "\n")
    m = evaluate_rewardmath(load_pools(path), EvalConfig(aggregations=["min"]))
    r = m["aggregations"]["min"]
    assert r["accuracy"] == 0.0 and r["mrr"] == pytest.approx((1 + 1 / 2) / 2)
    # Random order, A (2 correct, 1 incorrect): both correct on top in 1 of 3 orders; the best correct one is
    # first in 2 of 3. B (1 vs 1): 1/2 and (1 + 1/2) / 2.
    assert m["random_baseline"]["accuracy"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert m["random_baseline"]["mrr"] == pytest.approx((2 / 3 + 1 / 3 * 1 / 2 + 3 / 4) / 2)
    assert m["correct_per_problem"] == {"min": 1, "max": 2}


def test_pairwise_ties_count_as_wrong(pools):
    r = evaluate_pairwise(pools, EvalConfig(aggregations=["min"]))["aggregations"]["min"]
    # P1 3/3, P2 1/3 (0.6 > 0.2 only; 0.6 = 0.6 is a tie), P3 2/3 -> 6 of 9 pairs
    assert (r["pairs"], r["ties"]) == (9, 1)
    assert r["accuracy"] == pytest.approx(6 / 9)
    assert r["accuracy_ties_half"] == pytest.approx(6.5 / 9)


def test_pairwise_single_pair_tie(tmp_path):
    path = tmp_path / "pair.jsonl"
    path.write_text(json.dumps(problem("X", [0.5], [0.5])) + "\n" + json.dumps(problem("Y", [0.6], [0.1])) + "\n")
    r = evaluate_pairwise(load_pools(path), EvalConfig(aggregations=["last"]))["aggregations"]["last"]
    assert r["accuracy"] == 0.5 and r["ties"] == 1


def test_nothing_to_compare(tmp_path):
    path = tmp_path / "none.jsonl"
    path.write_text(json.dumps(problem("X", [0.5], [])) + "\n")
    with pytest.raises(PrmError):
        evaluate_rewardmath(load_pools(path), EvalConfig())
    with pytest.raises(PrmError):
        evaluate_pairwise(load_pools(path), EvalConfig())
