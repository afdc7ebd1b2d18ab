"""RewardMATH and RewardBench fixture files in their official layouts (hand-written: a pretty-printed
RewardMATH_direct.json list, RewardBench `filtered` JSON lines): `prm data convert --from ...`, step scores
set by hand as `prm score` would write them, then `prm eval rewardmath|pairwise` against hand-computed
accuracy, MRR and RewardBench section scores; bad benchmark files stop with one line naming file, line, field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prm.eval.pairwise import REWARDBENCH_EXAMPLE_COUNTS, REWARDBENCH_SECTIONS, section_scores

from prm.app.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"
REWARDMATH = FIXTURES / "rewardmath_direct.json"
REWARDBENCH = FIXTURES / "rewardbench_filtered.jsonl"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def with_scores(items: list[dict], scores: dict[str, list[list[float]]], path: Path) -> str:
    """Step scores put where `prm score` puts them (each candidate's extra, flattened into the candidate)."""
    for item in items:
        for cand, s in zip(item["candidates"], scores[item["problem_id"]], strict=True):
            cand["step_scores"] = s
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return str(path)


# RewardMATH: one chosen then three rejected per problem (the official file has nine rejected).
RM_SCORES = {
    # product: .72 vs .45 .6 .63 -> hit, rank 1 | last: .8 vs .5 .6 .7 -> hit, rank 1
    "rewardmath-0": [[0.9, 0.8], [0.9, 0.5], [0.6], [0.9, 0.7]],
    # product: .4 vs .54 .3 .4 (a tie ranks it below) -> rank 3 | last: .5 vs .6 .3 .8 -> rank 3
    "rewardmath-1": [[0.8, 0.5], [0.9, 0.6], [0.3], [0.5, 0.8]],
    # product: .49 vs .54 .4 .3 -> rank 2 | last: .7 vs .6 .4 .5 -> hit, rank 1
    "rewardmath-2": [[0.7, 0.7], [0.9, 0.6], [1.0, 0.4], [0.6, 0.5]],
}


def test_rewardmath_fixture_converts_and_evaluates(tmp_path, capsys):
    out = tmp_path / "rewardmath.jsonl"
    assert main(["data", "convert", str(REWARDMATH), str(out), "--from", "rewardmath"]) == 0
    items = read_jsonl(out)
    assert [i["problem_id"] for i in items] == ["rewardmath-0", "rewardmath-1", "rewardmath-2"]
    first = items[0]
    assert first["answer"] == "14" and (first["benchmark"], first["subject"], first["level"]) == ("rewardmath", "Prealgebra", 1)
    assert [c["correct"] for c in first["candidates"]] == [True, False, False, False]
    assert first["candidates"][0]["steps"] == ["Multiply first: $3\\cdot 4=12$.", "Then $2+12=\\boxed{14}$."]
    assert first["candidates"][0]["final_answer"] == "14"
    assert first["candidates"][1]["solution_reference"] == "modified_with_GPT-4"

    scored = with_scores(items, RM_SCORES, tmp_path / "scored.jsonl")
    report = tmp_path / "report"
    assert main(["eval", "rewardmath", "-i", scored, "-o", str(report), "--aggregations", "product,last"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    product, last = metrics["aggregations"]["product"], metrics["aggregations"]["last"]
    assert product["accuracy"] == pytest.approx(1 / 3) and product["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert last["accuracy"] == pytest.approx(2 / 3) and last["mrr"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert product["problems_with_ties"] == 1
    assert metrics["random_baseline"] == {"accuracy": pytest.approx(1 / 4), "mrr": pytest.approx(25 / 48)}
    assert "product: accuracy 0.3333, MRR 0.6111" in capsys.readouterr().out


# RewardBench: (chosen, rejected) solution scores; every step scores 1 but the last, so product = last = it.
RB_SCORES = {30: (0.8, 0.3), 31: (0.4, 0.6), 505: (0.7, 0.2), 1000: (0.9, 0.1), 1001: (0.6, 0.5), 1002: (0.5, 0.5),
             1003: (0.2, 0.7), 2000: (0.9, 0.4), 2001: (0.8, 0.1)}


def test_rewardbench_fixture_converts_and_evaluates_with_section_scores(tmp_path, capsys):
    out = tmp_path / "rewardbench.jsonl"
    assert main(["data", "convert", str(REWARDBENCH), str(out), "--from", "rewardbench"]) == 0
    items = read_jsonl(out)
    assert len(items) == 9
    item = next(i for i in items if i["problem_id"] == "rewardbench-1001")
    assert (item["benchmark"], item["subset"], item["answer"]) == ("rewardbench", "math-prm", "")
    chosen, rejected = item["candidates"]
    assert (chosen["correct"], rejected["correct"]) == (True, False)
    assert rejected["steps"] == ["Step 1: $2\\cdot 3 = 5$.", "Step 2: So $\\boxed{5}$."]
    assert rejected["final_answer"] == "5" and chosen["model"] == "human"
    assert next(i for i in items if i["problem_id"] == "rewardbench-1000")["candidates"][0]["steps"] == [
        "We add the numbers.", "$1+1=\\boxed{2}$."]

    scores = {}
    for it in items:
        pair = RB_SCORES[int(it["problem_id"].split("-")[1])]
        scores[it["problem_id"]] = [[1.0] * (len(c["steps"]) - 1) + [v] for c, v in zip(it["candidates"], pair, strict=True)]
    scored = with_scores(items, scores, tmp_path / "scored.jsonl")
    report = tmp_path / "report"
    assert main(["eval", "pairwise", "-i", scored, "-o", str(report), "--aggregations", "product,min"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    r = metrics["aggregations"]["product"]
    assert (r["accuracy"], r["pairs"], r["ties"]) == (pytest.approx(6 / 9), 9, 1)
    assert {s: v["accuracy"] for s, v in r["subsets"].items()} == {
        "alpacaeval-easy": 0.5, "hep-python": 1.0, "math-prm": 0.5, "mt-bench-hard": 1.0}
    # Reasoning: math-prm weighted as 984 prompts against hep-python's 164: (0.5 * 984 + 164) / 1148 = 4/7.
    assert r["sections"] == {"Chat": 0.5, "Chat Hard": 1.0, "Reasoning": pytest.approx(4 / 7)}
    assert r["mean_of_sections"] == pytest.approx((0.5 + 1.0 + 4 / 7) / 3)
    assert metrics["headline"]["product.section.Reasoning"] == pytest.approx(4 / 7)
    assert metrics["aggregations"]["min"]["subsets"]["math-prm"]["accuracy"] == 0.5  # min = last step here too
    text = (report / "report.md").read_text()
    assert "Accuracy (%) by subset" in text and "RewardBench section scores" in text
    assert "Reasoning 0.5714" in capsys.readouterr().out


def test_section_weights_are_rewardbench_constants():
    assert sum(REWARDBENCH_EXAMPLE_COUNTS[s] for s in REWARDBENCH_SECTIONS["Reasoning"]) == 984 * 2
    assert section_scores({"math-prm": 0.25}) == {"Reasoning": 0.25}
    assert section_scores({"xstest-should-refuse": 1.0, "xstest-should-respond": 0.0}) == {
        "Safety": pytest.approx(154 / 404)}


def object_start_lines(text: str) -> list[int]:
    return [no for no, line in enumerate(text.splitlines(), 1) if line == "    {"]


@pytest.mark.parametrize("drop, problem_id, missing", [("chosen", 1, "correct (chosen)"),
                                                        ("rejected", 2, "incorrect (rejected)")])
def test_rewardmath_problem_without_a_side_is_one_error_line(tmp_path, capsys, drop, problem_id, missing):
    rows = [r for r in json.loads(REWARDMATH.read_text())
            if not (r["problem_id"] == problem_id and r["solution_type"] == drop)]
    bad = tmp_path / "RewardMATH_direct.json"
    bad.write_text(json.dumps(rows, indent=4))
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(bad), str(out), "--from", "rewardmath"]) == 2
    first_row = next(k for k, r in enumerate(rows) if r["problem_id"] == problem_id)
    line = object_start_lines(bad.read_text())[first_row]
    err = capsys.readouterr().err
    assert err == (f"error: {bad}:{line}: field 'solution_type': problem_id {problem_id} has no {missing} solution\n")
    assert not out.exists()


def test_rewardmath_bad_row_names_its_line(tmp_path, capsys):
    rows = json.loads(REWARDMATH.read_text())
    rows[5]["eval_solution"] = []
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rows, indent=2))
    assert main(["data", "convert", str(bad), str(tmp_path / "o.jsonl"), "--from", "rewardmath"]) == 2
    line = [no for no, text in enumerate(bad.read_text().splitlines(), 1) if text == "  {"][5]
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}:{line}: field 'eval_solution': ") and len(err.splitlines()) == 1


def test_rewardbench_row_missing_chosen_is_one_error_line(tmp_path, capsys):
    rows = read_jsonl(REWARDBENCH)
    del rows[3]["chosen"]
    bad = tmp_path / "rewardbench.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(bad), str(out), "--from", "rewardbench"]) == 2
    assert capsys.readouterr().err == f"error: {bad}:4: field 'chosen': missing required field\n"
    assert not out.exists()
    assert main(["data", "convert", str(REWARDBENCH), str(out), "--from", "rewardbench", "--to", "trl"]) == 2
    assert "use --to ours" in capsys.readouterr().err


def test_rewardmath_broken_json_is_one_error_line(tmp_path, capsys):
    text = REWARDMATH.read_text().splitlines()
    at = [k for k, line in enumerate(text) if '"answer": "14",' in line][1]  # the second row's answer
    text[at] += ' "answer": "15",'  # a duplicate key: named at the line where its row starts
    bad = tmp_path / "dup.json"
    bad.write_text("\n".join(text) + "\n")
    assert main(["data", "convert", str(bad), str(tmp_path / "o.jsonl"), "--from", "rewardmath"]) == 2
    err = capsys.readouterr().err
    row_line = object_start_lines("\n".join(text))[1]
    assert err.startswith(f"error: {bad}:{row_line}: field 'answer': duplicate key") and len(err.splitlines()) == 1
