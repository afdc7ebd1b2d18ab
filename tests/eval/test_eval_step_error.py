"""ProcessBench and PRMBench-style metrics against hand-computed values, corner cases, the fitted threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prm.eval.config import EvalConfig
from prm.eval.data import load_step_items
from prm.eval.step_error import (
    evaluate_steps,
    fit_threshold,
    predict_first_error,
    processbench_metrics,
    step_auc,
    step_counts,
    step_f1,
)

from prm.errors import InputError, PrmError


def item(id_, label, scores, **extra):
    row = {"id": id_, "generator": "g", "problem": f"problem {id_}", "steps": [f"s{k}" for k in range(len(scores))],
           "final_answer_correct": label == -1, "label": label, "step_scores": scores}
    row.update(extra)
    return row


# threshold 0.5 -> predictions g1:1 (right) g2:-1 (right) g3:0 (right) g4:1 (wrong: 0.45 < 0.5)
GSM8K = [item("g1", 1, [0.9, 0.2, 0.8]), item("g2", -1, [0.9, 0.7, 0.6]),
         item("g3", 0, [0.4, 0.9]), item("g4", -1, [0.8, 0.45])]
# threshold 0.5 -> m1:2 (right) m2:0 (wrong) m3:-1 (right)
MATH = [item("m1", 2, [0.6, 0.55, 0.3]), item("m2", 1, [0.3, 0.1]), item("m3", -1, [0.9])]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture()
def items(tmp_path):
    return load_step_items(write(tmp_path / "gsm8k.jsonl", GSM8K)) + load_step_items(
        write(tmp_path / "math.jsonl", MATH))


def test_processbench_fixed_threshold(items):
    res = evaluate_steps(items, EvalConfig(threshold=0.5))["sources"]["prm"]
    g, m = res["splits"]["gsm8k"], res["splits"]["math"]
    assert (g["n_error"], g["n_correct"], g["acc_error"], g["acc_correct"]) == (2, 2, 1.0, 0.5)
    assert g["f1"] == pytest.approx(2 / 3)  # 2 * 1 * 0.5 / 1.5
    assert (m["acc_error"], m["acc_correct"]) == (0.5, 1.0)
    assert m["f1"] == pytest.approx(2 / 3)
    assert res["average"]["f1"] == pytest.approx(2 / 3)
    assert res["average"]["acc_error"] == pytest.approx(0.75)


def test_prmbench_step_f1_by_hand(items):
    # gsm8k at 0.5, steps after the first error excluded:
    # g1 s0 TP, s1 TN (s2 excluded); g2 3 TP; g3 s0 TN (s1 excluded); g4 s0 TP, s1 FN -> TP5 TN2 FN1 FP0
    res = evaluate_steps(items, EvalConfig(threshold=0.5))["sources"]["prm"]["splits"]["gsm8k"]
    assert res["step_counts"] == {"tp": 5, "fn": 1, "fp": 0, "tn": 2}
    assert res["step_f1"] == pytest.approx(10 / 11)
    assert res["step_negative_f1"] == pytest.approx(4 / 5)
    assert res["prmscore"] == pytest.approx((10 / 11 + 4 / 5) / 2)
    # counted as erroneous instead: g1 s2 (0.8) and g3 s1 (0.9) become false positives
    res = evaluate_steps(items, EvalConfig(threshold=0.5, after_error="error"))["sources"]["prm"]["splits"]["gsm8k"]
    assert res["step_counts"] == {"tp": 5, "fn": 1, "fp": 2, "tn": 2}
    assert res["step_f1"] == pytest.approx(10 / 13)
    assert res["step_negative_f1"] == pytest.approx(4 / 7)


def test_step_auc_by_hand(items):
    # gsm8k, after-error steps excluded: correct steps g1 .9, g2 .9 .7 .6, g4 .8 .45; erroneous g1 .2, g3 .4:
    # every correct step outscores both erroneous ones (AUC 1). math: correct m1 .6 .55, m2 .3, m3 .9 against
    # erroneous m1 .3, m2 .1: 7 pairs won and one tie (.3, .3) of 8.
    # With after-error steps counted as erroneous, g1's .8 and g3's .9 join the erroneous side.
    res = evaluate_steps(items, EvalConfig(threshold=0.5))["sources"]["prm"]
    assert res["splits"]["gsm8k"]["step_auc"] == 1.0
    assert res["splits"]["math"]["step_auc"] == pytest.approx(7.5 / 8)
    assert res["average"]["step_auc"] == pytest.approx((1 + 7.5 / 8) / 2)
    assert step_auc([0.9, 0.5], [0.5, 0.1]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert step_auc([0.2], [0.8]) == 0.0 and step_auc([], [0.3]) is None
    res = evaluate_steps(items, EvalConfig(threshold=0.5, after_error="error"))["sources"]["prm"]
    correct, erroneous = [0.9, 0.9, 0.7, 0.6, 0.8, 0.45], [0.2, 0.8, 0.4, 0.9]
    won = sum(1.0 if c > e else 0.5 if c == e else 0.0 for c in correct for e in erroneous)
    assert res["splits"]["gsm8k"]["step_auc"] == pytest.approx(won / 24)


def test_fitted_threshold_is_reused_on_all_splits(items):
    # gsm8k: errors right for t in (0.4, 0.9] and (0.2, ...]; correct items for t <= 0.45 -> F1 = 1 only on
    # (0.4, 0.45]; the candidate there is the midpoint 0.425.
    t, f1 = fit_threshold([it for it in items if it.split == "gsm8k"], "gsm8k")
    assert (t, f1) == (pytest.approx(0.425), 1.0)
    res = evaluate_steps(items, EvalConfig(fit_on="gsm8k"))["sources"]["prm"]
    assert res["threshold"] == pytest.approx(0.425)
    assert res["splits"]["gsm8k"]["f1"] == 1.0
    assert res["splits"]["math"]["f1"] == pytest.approx(2 / 3)  # m2 still predicted at step 0
    assert res["average"]["f1"] == pytest.approx(5 / 6)
    # the fitted F1 equals a brute-force scan over a fine grid
    gsm = [it for it in items if it.split == "gsm8k"]
    grid = [k / 1000 for k in range(1001)]
    best = max(processbench_metrics([it.label for it in gsm],
                                    [predict_first_error(it.step_scores, g) for it in gsm])["f1"] for g in grid)
    assert best == f1
    with pytest.raises(PrmError, match="no such split"):
        evaluate_steps(items, EvalConfig(fit_on="olympiad"))


def test_corner_cases_one_side_empty_and_all_right_or_wrong():
    assert processbench_metrics([1, -1], [1, -1])["f1"] == 1.0  # every prediction right
    assert processbench_metrics([1, -1], [0, 2])["f1"] == 0.0  # every prediction wrong: both accuracies 0
    only_correct = processbench_metrics([-1, -1], [-1, 0])
    assert only_correct == {"n_error": 0, "n_correct": 2, "acc_error": None, "acc_correct": 0.5, "f1": None}
    only_error = processbench_metrics([0, 2], [0, None])
    assert (only_error["acc_error"], only_error["acc_correct"], only_error["f1"]) == (0.5, None, None)
    # no correct step gold and none predicted -> step F1 undefined
    assert step_f1(step_counts(0, 1, [False], "exclude")) == {"step_f1": None, "step_negative_f1": 1.0,
                                                              "prmscore": None}


def test_split_without_f1_is_left_out_of_the_average(tmp_path):
    rows = [item("a", 1, [0.9, 0.1], split="s1"), item("b", -1, [0.9], split="s1"),
            item("c", -1, [0.9, 0.8], split="s2"), item("d", -1, [0.3], split="s2")]
    res = evaluate_steps(load_step_items(write(tmp_path / "x.jsonl", rows)), EvalConfig())["sources"]["prm"]
    assert res["splits"]["s1"]["f1"] == 1.0
    assert res["splits"]["s2"]["f1"] is None and res["splits"]["s2"]["acc_correct"] == 0.5
    assert res["average"]["f1"] == 1.0 and res["average"]["splits_without_f1"] == ["s2"]
    with pytest.raises(PrmError, match="needs both erroneous and correct"):
        evaluate_steps(load_step_items(write(tmp_path / "x.jsonl", rows)), EvalConfig(fit_on="s2"))


def test_judge_annotations_on_solution_records(tmp_path):
    def sol(i, label, judge, n=2):
        return {"id": f"s{i}", "problem_id": f"p{i}", "problem": "q", "answer": "1", "steps": ["a", "b", "c"][:n],
                "final_answer": "1", "correct": label == -1, "generator": "g", "label": label,
                "judge": {"first_error": judge, "votes": [judge], "parsed": judge is not None, "raw": "..."}}

    rows = [sol(1, 1, 1), sol(2, -1, -1), sol(3, 0, None), sol(4, 2, 1, n=3)]
    res = evaluate_steps(load_step_items(write(tmp_path / "judged.jsonl", rows)), EvalConfig())
    assert list(res["sources"]) == ["judge"]
    judge = res["sources"]["judge"]["splits"]["judged"]
    # errors: s1 right, s3 unparsed (wrong), s4 predicted 1 vs 2 (wrong) -> 1/3; correct: s2 right -> 1
    assert judge["acc_error"] == pytest.approx(1 / 3) and judge["acc_correct"] == 1.0
    assert judge["f1"] == pytest.approx(0.5)
    # step level (s3 left out): s1 TP TN; s2 TP TP; s4 gold [ok ok err] pred [ok err err] -> TP FN TN
    assert judge["step_counts"] == {"tp": 4, "fn": 1, "fp": 0, "tn": 2}
    assert judge["no_prediction"] == 1
    # gold from another field
    for r in rows:
        r["consensus"] = {"kept": True, "first_error": r.pop("label"), "reason": "ok"}
    items = load_step_items(write(tmp_path / "judged.jsonl", rows), gold_field="consensus.first_error")
    assert [it.label for it in items] == [1, -1, 0, 2]
    with pytest.raises(InputError, match="gold first error missing"):
        load_step_items(write(tmp_path / "judged.jsonl", rows))


def test_predicted_first_error_field(tmp_path):
    rows = [item("a", 1, [0.9, 0.1], predicted_first_error=1), item("b", -1, [0.9], predicted_first_error=0)]
    res = evaluate_steps(load_step_items(write(tmp_path / "p.jsonl", rows)), EvalConfig())["sources"]
    assert res["predicted"]["splits"]["p"]["f1"] == 0.0
    assert res["prm"]["splits"]["p"]["f1"] == 1.0
    rows[0]["predicted_first_error"] = 5
    with pytest.raises(InputError, match="p.jsonl:1: field 'predicted_first_error'"):
        load_step_items(write(tmp_path / "p.jsonl", rows))
    rows[0]["predicted_first_error"] = 1
    for bad in (7, True, "2"):
        rows[1]["judge"] = {"first_error": bad}
        with pytest.raises(InputError, match="p.jsonl:2: field 'judge.first_error'"):
            load_step_items(write(tmp_path / "p.jsonl", rows))


# ------------------------------------------------------------------------------ extracted ProcessBench, intervals

def test_extracted_processbench_accuracy_on_erroneous_items_with_a_right_answer(tmp_path):
    # threshold 0.5: a and b are erroneous with a right final answer (a found, b missed); c is erroneous with a
    # wrong answer (found); d is correct. Judge: a missed, b found.
    rows = [item("a", 1, [0.9, 0.2], final_answer_correct=True, judge={"first_error": -1}),
            item("b", 0, [0.8, 0.9], final_answer_correct=True, judge={"first_error": 0}),
            item("c", 0, [0.1], judge={"first_error": 0}), item("d", -1, [0.9], judge={"first_error": -1})]
    res = evaluate_steps(load_step_items(write(tmp_path / "x.jsonl", rows)), EvalConfig(bootstrap=0))
    prm, judge = res["sources"]["prm"]["splits"]["x"], res["sources"]["judge"]["splits"]["x"]
    assert prm["n_error_answer_correct"] == 2 and prm["acc_error_answer_correct"] == 0.5
    assert prm["acc_error"] == pytest.approx(2 / 3)
    assert judge["acc_error_answer_correct"] == 0.5 and judge["acc_error"] == pytest.approx(2 / 3)
    assert res["headline"]["prm.acc_error_answer_correct"] == 0.5
    # Solution records: the final answer's correctness is their `correct`
    sols = [{"id": "s", "problem_id": "p", "problem": "q", "answer": "1", "steps": ["a", "b"], "final_answer": "1",
             "correct": True, "generator": "g", "true_first_error": 0, "step_scores": [0.2, 0.9]}]
    items = load_step_items(write(tmp_path / "sol.jsonl", sols))
    assert items[0].final_answer_correct is True
    row = evaluate_steps(items, EvalConfig(bootstrap=0))["sources"]["prm"]["splits"]["sol"]
    assert (row["n_error_answer_correct"], row["acc_error_answer_correct"]) == (1, 1.0)


def random_items(tmp_path, n, seed=0, name="r"):
    """n items with an error in 60% of them; scores drop at the error with noise, so no metric is 0 or 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        steps = int(rng.integers(2, 6))
        label = int(rng.integers(0, steps)) if rng.random() < 0.6 else -1
        scores = [float(np.clip(rng.normal(0.4 if label != -1 and k >= label else 0.65, 0.25), 0, 1))
                  for k in range(steps)]
        rows.append(item(f"{name}{i}", label, scores, final_answer_correct=bool(rng.random() < 0.3),
                         predicted_first_error=label if rng.random() < 0.5 else (0 if label == -1 else -1)))
    return load_step_items(write(tmp_path / f"{name}.jsonl", rows))


def test_bootstrap_intervals_contain_the_point_shrink_with_items_and_are_seeded(tmp_path):
    keys = ("acc_error", "acc_correct", "f1", "acc_error_answer_correct", "step_f1", "step_negative_f1",
            "prmscore", "step_auc")
    cfg = EvalConfig(bootstrap=400, seed=3)
    small = evaluate_steps(random_items(tmp_path, 60, name="small"), cfg)
    large = evaluate_steps(random_items(tmp_path, 960, name="large"), cfg)
    for res in (small, large):
        for source in ("prm", "predicted"):
            for row in (*res["sources"][source]["splits"].values(), res["sources"][source]["average"]):
                for key in keys:
                    if source == "predicted" and key == "step_auc":
                        assert row[key] is None and row["ci"][key] is None
                        continue
                    low, high = row["ci"][key]
                    assert low <= row[key] <= high, (source, key)
    for source in ("prm", "predicted"):
        s, big = small["sources"][source]["average"]["ci"], large["sources"][source]["average"]["ci"]
        for key in keys:
            if s[key] is not None:
                assert big[key][1] - big[key][0] < 0.6 * (s[key][1] - s[key][0]), (source, key)
    again = evaluate_steps(random_items(tmp_path, 60, name="small"), cfg)
    assert again["sources"] == small["sources"]
    other = evaluate_steps(random_items(tmp_path, 60, name="small"), EvalConfig(bootstrap=400, seed=4))
    assert other["sources"]["prm"]["average"]["ci"] != small["sources"]["prm"]["average"]["ci"]
    assert small["bootstrap"] == {"resamples": 400, "confidence": 0.95, "seed": 3, "method": "percentile",
                                  "over": "items, resampled within each split"}
    assert "ci" not in evaluate_steps(random_items(tmp_path, 60, name="small"),
                                      EvalConfig(bootstrap=0))["sources"]["prm"]["average"]


def test_bootstrap_by_hand(tmp_path):
    # Two erroneous items, one found: a resample draws the found one 0, 1 or 2 times (1/4, 1/2, 1/4), so
    # acc_error is 0, 0.5 or 1: the 95% interval is [0, 1], the 40% one (quantiles 0.3, 0.7) is [0.5, 0.5].
    rows = [item("a", 0, [0.1]), item("b", 0, [0.9])]
    items = load_step_items(write(tmp_path / "h.jsonl", rows))
    row = evaluate_steps(items, EvalConfig(bootstrap=4000))["sources"]["prm"]["splits"]["h"]
    assert row["acc_error"] == 0.5 and row["ci"]["acc_error"] == [0.0, 1.0]
    row = evaluate_steps(items, EvalConfig(bootstrap=4000, confidence=0.4))["sources"]["prm"]["splits"]["h"]
    assert row["ci"]["acc_error"] == [0.5, 0.5]
    # 400 correct items, half flagged: acc_correct's interval is the binomial one, 0.5 +- 1.96 * sqrt(.25 / 400)
    rows = [item(f"x{i}", -1, [0.9 if i % 2 else 0.1]) for i in range(400)]
    row = evaluate_steps(load_step_items(write(tmp_path / "b.jsonl", rows)),
                         EvalConfig(bootstrap=4000))["sources"]["prm"]["splits"]["b"]
    half = 1.96 * (0.25 / 400) ** 0.5
    assert row["ci"]["acc_correct"] == pytest.approx([0.5 - half, 0.5 + half], abs=0.006)


def test_resample_weights_equal_duplicated_items(tmp_path):
    """A resample's metrics (items weighted by how often they are drawn) equal the point metrics of the
    resample written out item by item, AUC and pooled step counts included."""
    from prm.eval.step_error import _item_table

    items = random_items(tmp_path, 30, seed=5)
    counts = np.random.default_rng(0).multinomial(30, np.full(30, 1 / 30), size=3)
    for after_error in ("exclude", "error"):
        table, _ = _item_table(items, "prm", 0.5, after_error)
        weighted = table.metrics(counts.astype(float))
        for b in range(3):
            dup = [it for it, c in zip(items, counts[b], strict=True) for _ in range(c)]
            direct, _ = _item_table(dup, "prm", 0.5, after_error)
            point = direct.metrics(np.ones((1, len(dup))))
            for key, v in weighted.items():
                assert v[b] == pytest.approx(point[key][0], nan_ok=True), key
