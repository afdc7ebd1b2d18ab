"""Solution-score aggregations, answer normalization and the vote helpers of prm.eval.aggregate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prm.eval.aggregate import (
    aggregate,
    answer_classes,
    best_of_n,
    majority_vote,
    normalize_answer,
    weighted_vote,
)


def test_aggregations_by_hand():
    s = [0.9, 0.5, 0.8]
    assert aggregate(s, "min") == 0.5
    assert aggregate(s, "product") == pytest.approx(0.36)
    assert aggregate(s, "last") == 0.8
    assert aggregate(s, "mean") == pytest.approx(2.2 / 3)
    assert aggregate(s, "geomean") == pytest.approx(0.36 ** (1 / 3))
    assert aggregate([0.7, 0.0], "geomean") == 0.0
    with pytest.raises(ValueError):
        aggregate([], "min")
    with pytest.raises(ValueError):
        aggregate([0.5], "max")


@pytest.mark.parametrize(("a", "b"), [("5", "\\boxed{5}"), ("1,000", "1000"), ("$\\dfrac{1}{2}$", "\\frac{1}{2}"),
                                      ("2.50", "2.5"), ("x = 3", "3"), ("\\text{yes}", "yes")])
def test_equal_answers_share_a_class(a, b):
    assert answer_classes([a, b, "17"]) == [0, 0, 1]
    assert normalize_answer(a) is not None


def test_answer_classes_and_missing_answers():
    assert answer_classes(["5", "7", "\\boxed{5}", None, "", "7."]) == [0, 1, 0, -1, -1, 1]


def test_votes_with_ties_report_the_expectation():
    classes = [0, 0, 1, 1, -1]
    correct = [True, True, False, False, False]
    # 2 votes each: a coin flip between a right and a wrong answer.
    assert majority_vote(classes, correct)[0] == 0.5
    # weighted: class 0 sums 0.9, class 1 sums 1.0 -> wrong; the no-answer candidate never votes.
    scores = np.array([0.4, 0.5, 0.3, 0.7, 0.99])
    assert weighted_vote(classes, correct, scores)[0] == 0.0
    # best-of-n picks the 0.99 candidate (wrong); a tie between a right and a wrong one gives 0.5.
    assert best_of_n(correct, scores)[0] == 0.0
    assert best_of_n([True, False], np.array([0.6, 0.6]))[0] == 0.5
    # Solution scores of 0 (a zero step under geomean, product underflow) still vote among the answers present:
    # a lone candidate wins its own subset, and a right and a wrong answer both at 0 tie.
    assert weighted_vote([0, 0], [True, True], np.array([0.0, 0.0]))[0] == 1.0
    assert weighted_vote([0, 1, -1], [True, False, False], np.array([0.0, 0.0, 0.9]))[0] == 0.5
    assert weighted_vote([0, 1], [True, False], np.array([0.0, 0.4]), np.array([[0], [1]])).tolist() == [1.0, 0.0]
    # subsets: rows of indices
    subs = np.array([[0, 2], [0, 1]])
    assert majority_vote(classes, correct, subs).tolist() == [0.5, 1.0]
    assert math.isclose(best_of_n(correct, scores, subs).mean(), 1.0)
