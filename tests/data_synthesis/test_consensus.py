"""Consensus filter on hand-made records: rules, training examples, agreement matrix, join by id, CLI."""

from __future__ import annotations

import json

import pytest
from prm.data_synthesis.consensus import bucket, consensus_report, decide, report_markdown, training_example

from prm.app.cli import main
from prm.records import Solution, TrainingExample


def sol(sid: str, n: int, mc: int | None, judge: int | None, correct: bool = False, truth: int | None = None,
        values: list | None = None, parsed: bool = True, source: str = "gsm") -> Solution:
    data = {"id": sid, "problem_id": sid.split("-")[0], "problem": f"problem {sid}", "answer": "7",
            "steps": [f"{sid} step {i}" for i in range(n)], "final_answer": "7" if correct else "8",
            "correct": correct, "generator": "policy", "source": source}
    if mc is not None:
        data["mc"] = {"values": values if values is not None else
                      [1.0 if mc == -1 or i < mc else 0.0 for i in range(n)],
                      "first_error": mc, "rollouts": 8, "tokens": 100, "mode": "exhaustive"}
    if judge is not None or not parsed:
        data["judge"] = {"first_error": judge if parsed else None, "votes": [judge], "parsed": parsed,
                         "raw": "..."}
    if truth is not None:
        data["true_first_error"] = truth
    return Solution.from_dict(data)


# mc, judge -> under the default rule
RECORDS = [
    sol("a-0", 4, -1, -1, correct=True, truth=-1),  # agree, no error
    sol("b-0", 4, 1, 1, truth=1),  # agree on step 1
    sol("c-0", 5, 2, 3, truth=2),  # disagree
    sol("d-0", 3, 0, 0, truth=0),  # agree on step 0
    sol("e-0", 6, 4, 4, truth=5),  # agree (3+ bucket), but the truth is 5
    sol("f-0", 4, -1, -1, correct=False),  # agree on no error, yet the answer is wrong
    sol("g-0", 4, 1, None, parsed=False),  # judge unparsed
    sol("h-0", 4, 2, None, source="math"),  # no judge at all
]


def test_rules():
    exact = [decide(r, "exact") for r in RECORDS]
    assert [c.kept for c in exact] == [True, True, False, True, True, True, False, False]
    assert [c.first_error for c in exact] == [-1, 1, None, 0, 4, -1, None, None]
    assert exact[2].reason == "disagree (mc 2, judge 3)" and exact[6].reason == "judge unparsed"
    assert exact[7].reason == "no judge annotation"
    strict = [decide(r, "both_correct_or_same_error").kept for r in RECORDS]
    assert strict == [True, True, False, True, True, False, False, False]
    judge_only = [decide(r, "judge_only") for r in RECORDS]
    assert [c.kept for c in judge_only] == [True, True, True, True, True, True, False, False]
    assert judge_only[2].first_error == 3
    mc_only = [decide(r, "mc_only") for r in RECORDS]
    assert all(c.kept for c in mc_only) and mc_only[2].first_error == 2


def test_training_example_labels_and_soft_labels():
    ex = training_example(RECORDS[1], 1)
    assert ex.completions == RECORDS[1].steps[:2] and ex.labels == [True, False]
    assert ex.soft_labels == [1.0, 0.0] and ex.id == "b-0" and ex.prompt == "problem b-0"
    ok = training_example(RECORDS[0], -1)
    assert ok.labels == [True] * 4 and ok.first_error == -1
    partial = sol("p-0", 5, 3, 3, values=[None, 1.0, None, 0.0, None])  # binary search leaves gaps
    assert training_example(partial, 3).soft_labels is None
    assert training_example(RECORDS[1], 1, soft=False).soft_labels is None
    TrainingExample.from_dict(ex.to_dict())  # valid record


def test_agreement_matrix_and_report_counts():
    annotated = []
    for r in RECORDS:
        d = r.to_dict()
        d["consensus"] = decide(r, "exact").to_dict()
        annotated.append(Solution.from_dict(d))
    rep = consensus_report(annotated)
    m = rep["agreement_matrix"]["counts"]
    assert m["-1"]["-1"] == 2 and m["1"]["1"] == 1 and m["2"]["3+"] == 1 and m["0"]["0"] == 1
    assert m["3+"]["3+"] == 1 and m["1"]["none"] == 1 and m["2"]["none"] == 1
    assert sum(sum(row.values()) for row in m.values()) == len(RECORDS)
    assert rep["kept"] == 5 and rep["share_kept"] == pytest.approx(5 / 8) and rep["kept_with_error"] == 3
    assert rep["by_source"]["gsm"] == {"total": 7, "kept": 5, "share_kept": pytest.approx(5 / 7)}
    assert rep["by_source"]["math"]["kept"] == 0
    assert rep["by_steps"]["4"]["total"] == 5 and rep["by_steps"]["6"]["kept"] == 1
    assert rep["agreement_rate"] == pytest.approx(5 / 6)  # of the 6 with a parsed judge
    acc = rep["accuracy_vs_truth"]
    assert acc["with_truth"] == 5 and acc["mc"] == pytest.approx(4 / 5) and acc["judge"] == pytest.approx(3 / 5)
    assert acc["kept"] == pytest.approx(3 / 4)
    md = report_markdown(rep)
    assert "| 2 | 0 | 0 | 0 | 0 | 1 | 1 |" in md and "Kept 5 of 8" in md


def test_relative_buckets():
    assert bucket(-1, 4, "relative") == "-1" and bucket(None, 4, "relative") == "none"
    assert bucket(0, 4, "relative") == "<25%" and bucket(1, 4, "relative") == "25-50%"
    assert bucket(3, 4, "relative") == ">=75%" and bucket(7, 8, "relative") == ">=75%"
    assert bucket(5, 9) == "3+" and bucket(2, 9) == "2"


def _write(path, records) -> None:
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))


def test_cli_one_file_and_joined_files_agree(tmp_path, capsys):
    both = tmp_path / "both.jsonl"
    _write(both, RECORDS)
    out1 = tmp_path / "c1.jsonl"
    assert main(["consensus", "-i", str(both), "-o", str(out1)]) == 0
    # the same annotations split over an MC file and a judge file
    mc_only = [Solution.from_dict({k: v for k, v in r.to_dict().items() if k != "judge"}) for r in RECORDS]
    judge_only = [Solution.from_dict({k: v for k, v in r.to_dict().items() if k != "mc"}) for r in RECORDS
                  if r.judge is not None]
    mc_file, judge_file = tmp_path / "mc.jsonl", tmp_path / "judge.jsonl"
    _write(mc_file, mc_only)
    _write(judge_file, list(reversed(judge_only)))
    out2 = tmp_path / "c2.jsonl"
    assert main(["consensus", "--mc", str(mc_file), "--judge", str(judge_file), "-o", str(out2)]) == 0
    assert out1.read_text() == out2.read_text()
    # swapped files would keep nothing: refused, naming the file without the annotation
    assert main(["consensus", "--mc", str(judge_file), "--judge", str(mc_file), "-o", str(tmp_path / "c4.jsonl")]) == 2
    assert "no record carries an mc annotation (is this the --judge file?)" in capsys.readouterr().err
    rows = [json.loads(line) for line in out1.read_text().splitlines()]
    assert len(rows) == 8 and [r["consensus"]["kept"] for r in rows] == [True, True, False, True, True, True,
                                                                          False, False]
    train = [json.loads(line) for line in (tmp_path / "c1.train.jsonl").read_text().splitlines()]
    assert [t["id"] for t in train] == ["a-0", "b-0", "d-0", "e-0", "f-0"]
    assert train[2]["labels"] == [False] and train[3]["labels"] == [True] * 4 + [False]
    report = json.loads((tmp_path / "c1.report.json").read_text())
    assert report["kept"] == 5 and report["rule"] == "exact"
    assert (tmp_path / "c1.report.md").read_text().startswith("# Consensus report")
    assert main(["consensus", "-i", str(both), "-o", str(tmp_path / "c3.jsonl"), "rule=judge_only"]) == 0
    assert json.loads((tmp_path / "c3.report.json").read_text())["kept"] == 6


def test_cli_errors(tmp_path, capsys):
    both = tmp_path / "both.jsonl"
    _write(both, RECORDS)
    out = tmp_path / "c.jsonl"
    assert main(["consensus", "-o", str(out)]) == 2
    assert main(["consensus", "-i", str(both), "--mc", str(both), "-o", str(out)]) == 2
    assert main(["consensus", "--mc", str(both), "-o", str(out)]) == 2
    assert main(["consensus", "-i", str(both), "-o", str(out), "rule=majority"]) == 2
    bare = tmp_path / "bare.jsonl"
    _write(bare, [sol("z-0", 3, None, None)])
    assert main(["consensus", "-i", str(bare), "-o", str(out)]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**RECORDS[0].to_dict(), "mc": {"values": [1.0], "first_error": 0,
                                                               "rollouts": 1, "tokens": 1}}) + "\n")
    assert main(["consensus", "-i", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("error:") for line in err) and len(err) == 6
    assert not out.exists()
