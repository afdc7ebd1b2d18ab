"""The `prm eval` commands end to end: report folders with metrics.json, report.md and the PNGs it links."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prm.app.cli import main


def cand(scores, answer, correct):
    return {"steps": [f"step {k}" for k in range(len(scores))], "final_answer": answer, "correct": correct,
            "step_scores": scores}


BON = [
    {"problem_id": "A", "problem": "p", "answer": "5", "candidates": [
        cand([0.9, 0.8], "5", True), cand([0.6, 0.9], "5", True), cand([0.95, 0.3], "7", False),
        cand([0.7], "7", False)]},
    {"problem_id": "B", "problem": "p", "answer": "1", "candidates": [
        cand([0.5, 0.4], "1", True), cand([0.2, 0.9], "2", False), cand([0.8], "3", False),
        cand([0.6, 0.6, 0.1], "1", True)]},
]


def step_row(id_, label, scores):
    return {"id": id_, "generator": "g", "problem": "q", "steps": [f"s{k}" for k in range(len(scores))],
            "final_answer_correct": label == -1, "label": label, "step_scores": scores}


def write(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def check_report(folder: Path) -> list[str]:
    text = (folder / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    for link in links:
        assert not Path(link).is_absolute() and (folder / link).is_file(), link
        assert (folder / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.loads((folder / "metrics.json").read_text())
    return links


def test_every_command_writes_a_linked_report(tmp_path, capsys):
    bon = write(tmp_path / "bon.jsonl", BON)
    gsm = write(tmp_path / "gsm8k.jsonl", [step_row("g1", 1, [0.9, 0.2]), step_row("g2", -1, [0.8, 0.7]),
                                           step_row("g3", 0, [0.3])])
    math_ = write(tmp_path / "math.jsonl", [step_row("m1", 0, [0.4, 0.9]), step_row("m2", -1, [0.6])])
    out = tmp_path / "reports"
    assert main(["eval", "bon", "-i", bon, "-o", str(out / "bon"), "--seed", "1", "bootstrap=50"]) == 0
    assert set(check_report(out / "bon")) >= {"bon_curves.png", "step_heatmap.png", "lowest_step_hist.png"}
    assert main(["eval", "steps", "-i", gsm, "-i", math_, "-o", str(out / "steps"), "--fit-on", "gsm8k"]) == 0
    assert set(check_report(out / "steps")) >= {"first_error_hist.png", "step_heatmap.png", "threshold_fit.png"}
    steps = json.loads((out / "steps" / "metrics.json").read_text())
    low, high = steps["sources"]["prm"]["average"]["ci"]["f1"]
    assert low <= steps["sources"]["prm"]["average"]["f1"] <= high and steps["bootstrap"]["resamples"] == 1000
    assert main(["eval", "steps", "-i", gsm, "-o", str(out / "steps90"), "--threshold", "0.5", "--bootstrap", "50",
                 "--confidence", "0.9", "--seed", "2"]) == 0
    steps = json.loads((out / "steps90" / "metrics.json").read_text())
    assert steps["bootstrap"] == {"resamples": 50, "confidence": 0.9, "seed": 2, "method": "percentile",
                                  "over": "items, resampled within each split"}
    assert "90% percentile bootstrap" in (out / "steps90" / "report.md").read_text()
    assert main(["eval", "rewardmath", "-i", bon, "-o", str(out / "rm"), "--aggregations", "min,last"]) == 0
    assert "rank_hist.png" in check_report(out / "rm")
    assert main(["eval", "pairwise", "-i", bon, "-o", str(out / "pw")]) == 0
    check_report(out / "pw")
    runs = []
    for name, t in (("c1", "0.3"), ("c2", "0.5"), ("c3", "0.7")):
        assert main(["eval", "steps", "-i", gsm, "-o", str(out / name / "steps"), "--threshold", t]) == 0
        assert main(["eval", "bon", "-i", bon, "-o", str(out / name / "bon"), "bootstrap=0"]) == 0
        runs.append(f"{name}={out / name}")
    assert main(["eval", "compare", "-o", str(out / "cmp"), "--runs", *runs]) == 0
    assert "correlations.png" in check_report(out / "cmp")
    metrics = json.loads((out / "cmp" / "metrics.json").read_text())
    assert metrics["runs"] == ["c1", "c2", "c3"] and "steps.prm.f1" in metrics["correlations"]
    capsys.readouterr()


@pytest.mark.parametrize(("argv", "message"), [
    (["eval", "bon", "-i", "{missing}", "-o", "{out}"], "no such file"),
    (["eval", "bon", "-i", "{unscored}", "-o", "{out}"], "candidates[0].step_scores"),
    (["eval", "bon", "-i", "{bon}", "-o", "{out}", "aggregations=[max]"], "eval.aggregations"),
    (["eval", "steps", "-i", "{bon}", "-o", "{out}", "--threshold", "0.5", "--fit-on", "x"], "not both"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    unscored = json.loads(json.dumps(BON))
    del unscored[0]["candidates"][0]["step_scores"]
    paths = {"missing": str(tmp_path / "nope.jsonl"), "out": str(tmp_path / "out"),
             "unscored": write(tmp_path / "unscored.jsonl", unscored), "bon": write(tmp_path / "bon.jsonl", BON)}
    assert main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error:") and message in err
    assert not (tmp_path / "out" / "report.md").exists()


class LengthScorer:
    """Stands in for a PRM checkpoint: a step's score falls with its position (0.9, 0.8, ...)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, problems, steps_list, batch_size):
        self.calls.append(batch_size)
        return [[0.9 - 0.1 * k for k in range(len(steps))] for steps in steps_list]


def test_model_scores_first(tmp_path, monkeypatch, capsys):
    import prm.eval.data

    scorer = LengthScorer()
    monkeypatch.setattr(prm.eval.data, "_load_scorer", lambda model, fmt: scorer)
    unscored = json.loads(json.dumps(BON))
    for item in unscored:
        for c in item["candidates"]:
            del c["step_scores"]
    path = write(tmp_path / "unscored.jsonl", unscored)
    assert main(["eval", "bon", "-i", path, "-o", str(tmp_path / "r"), "--model", "fake", "batch_size=3"]) == 0
    assert scorer.calls == [3]
    scored = [json.loads(line) for line in (tmp_path / "r" / "scored_bon.jsonl").read_text().splitlines()]
    assert scored[1]["candidates"][3]["step_scores"] == pytest.approx([0.9, 0.8, 0.7])
    # min picks the one-step candidates (0.9): A's is wrong ("7"), B's is wrong ("3")
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["headline"]["prm_min@4"] == 0.0
    # testbed records: gold from true_first_error, prediction from the scorer
    rows = [{"id": f"t{i}", "problem_id": "p", "problem": "q", "answer": "1", "steps": ["a", "b", "c"],
             "final_answer": "1", "correct": tfe == -1, "generator": "testbed", "true_first_error": tfe}
            for i, tfe in enumerate([-1, 2, 1])]
    testbed = write(tmp_path / "testbed.jsonl", rows)
    assert main(["eval", "steps", "-i", testbed, "-o", str(tmp_path / "s"), "--model", "fake",
                 "--threshold", "0.75"]) == 0
    res = json.loads((tmp_path / "s" / "metrics.json").read_text())["sources"]["prm"]["splits"]["testbed"]
    # scores 0.9 0.8 0.7 -> first below 0.75 is step 2: t0 wrong, t1 right, t2 wrong
    assert (res["acc_error"], res["acc_correct"], res["f1"]) == (0.5, 0.0, 0.0)
    capsys.readouterr()
