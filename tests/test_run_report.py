"""The closing report of `prm run` on a run directory made by the real consensus stage: annotation agreement,
each annotator's accuracy against the truth on testbed solutions, training-data sources."""

from __future__ import annotations

import json
from pathlib import Path

from prm.app.cli import main
from prm.app.pipeline import annotation_set
from prm.app.run_report import wilson, write_run_report


def _solution(sid: str, n_steps: int, mc: int, judge: int | None, truth: int | None = None) -> dict:
    record = {"id": sid, "problem_id": sid.rsplit("-", 1)[0], "problem": "Compute 1 + 2 + 3.", "answer": "6",
              "steps": ["1 + 2 = 3", "3 + 3 = 6", "The answer is 6."][:n_steps], "final_answer": "6",
              "correct": True, "generator": "testbed" if truth is not None else "policy",
              "mc": {"values": [1.0] * n_steps, "first_error": mc, "rollouts": 2, "tokens": 10},
              "judge": {"first_error": judge, "votes": [judge], "parsed": judge is not None, "raw": ["x"]}}
    if truth is not None:
        record["true_first_error"] = truth
    return record


def _write(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_report_sections_from_a_run_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    policy = [_solution("p0-s0", 3, -1, -1), _solution("p0-s1", 3, 1, 0), _solution("p1-s0", 2, 0, 0)]
    testbed = [_solution("t0-tb0", 3, -1, -1, truth=-1), _solution("t0-tb1", 3, 1, 1, truth=1),
               _solution("t1-tb0", 3, 0, -1, truth=1), _solution("t1-tb1", 3, -1, -1, truth=-1)]
    _write(run / "samples.jsonl", [{k: v for k, v in r.items() if k not in ("mc", "judge")} for r in policy])
    _write(run / "testbed.jsonl", [{k: v for k, v in r.items() if k not in ("mc", "judge")} for r in testbed])
    annotation_set(str(run / "samples.jsonl"), str(run / "testbed.jsonl"), 3, str(run / "annotate.jsonl"),
                   str(run / "testbed.rest.jsonl"))
    assert [json.loads(x)["id"] for x in (run / "testbed.rest.jsonl").read_text().splitlines()] == ["t1-tb1"]
    annotated = policy + testbed[:3]
    assert [json.loads(x)["id"] for x in (run / "annotate.jsonl").read_text().splitlines()] == [
        r["id"] for r in annotated]
    _write(run / "mc.jsonl", annotated)
    assert main(["consensus", "-i", str(run / "mc.jsonl"), "-o", str(run / "consensus.jsonl"), "--train",
                 str(run / "train.consensus.jsonl"), "--report", str(run / "consensus_report")]) == 0
    (run / "judged.jsonl.report.json").write_text(json.dumps(
        {"solutions": 6, "parsed": 6, "constrained_votes": {"forced": 6, "asked": 6}}))
    _write(run / "train.testbed.jsonl", [{"id": "x"}, {"id": "y"}])

    write_run_report(run, 60.0, {"sample": 1.0}, [], [str(run / "train.consensus.jsonl"),
                                                       str(run / "train.testbed.jsonl")])
    md = (run / "report" / "report.md").read_text()
    summary = json.loads((run / "report" / "report.json").read_text())
    # Kept: p0-s0 (-1/-1), p1-s0 (0/0), t0-tb0, t0-tb1; not p0-s1 (1 vs 0) nor t1-tb0 (0 vs -1).
    assert summary["training_data"] == {"consensus: policy samples": 2, "consensus: annotated testbed solutions": 2,
                                        "testbed truth labels (run.train_on_testbed)": 2}
    truth = summary["annotation"]["accuracy_vs_truth"]
    assert (truth["MC"]["right"], truth["MC"]["labeled"]) == (2, 3)
    assert (truth["judge"]["right"], truth["judge"]["labeled"]) == (2, 3)
    assert (truth["consensus (kept)"]["right"], truth["consensus (kept)"]["labeled"]) == (2, 2)
    assert "6 solutions annotated: 3 policy samples and 3 testbed solutions" in md
    assert "parsed for 6 of 6 solutions (6 of 6 votes constrained" in md
    assert "Agreement matrix" in md and "| MC \\ judge |" in md
    assert "Consensus kept 4 of 6 solutions (66.7%)" in md
    assert "| consensus: policy samples | 2 |" in md and "| total | 6 |" in md


def test_wilson_interval():
    value, low, high = wilson(2, 3)
    assert value == 2 / 3 and 0.2 < low < value < high < 0.95
    assert wilson(0, 0) == (None, None, None)
    assert wilson(5, 5)[2] == 1.0
