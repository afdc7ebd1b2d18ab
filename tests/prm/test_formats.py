"""Format converters: round trips keep first_error exactly; PRM800K, Math-Shepherd, tables, hub, CLI.

    pytest tests/prm/test_formats.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prm import formats, tables
from prm.app.cli import main
from prm.errors import InputError, PrmError
from prm.records import ConsensusAnnotation, MCAnnotation, RecordError, Solution

STEPS = ["Let x = 2.", "Then 2x = 4.", "So 2x + 1 = 5.", "The answer is 5."]


def _solution(first_error: int, sid: str = "s1", **extra) -> Solution:
    return Solution(id=sid, problem_id="p1", problem="Compute 2x+1 for x=2.", answer="5", steps=list(STEPS),
                    final_answer="5", correct=first_error == -1, generator="tiny",
                    consensus=ConsensusAnnotation(kept=True, first_error=first_error, reason="agree"), **extra)


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("first_error", [0, 1, 3, -1])
def test_solution_trl_processbench_round_trip_keeps_first_error(first_error: int) -> None:
    sol = _solution(first_error)
    ex = formats.solution_to_trl(sol)
    assert ex is not None
    expected_n = len(STEPS) if first_error == -1 else first_error + 1
    assert ex.completions == STEPS[:expected_n]
    assert ex.labels == ([True] * len(STEPS) if first_error == -1 else [True] * first_error + [False])
    assert ex.first_error == first_error

    back = formats.trl_to_solution(ex.to_dict())
    assert back.consensus is not None and back.consensus.first_error == first_error
    assert back.steps == STEPS[:expected_n]

    item = formats.solution_to_step_error(sol)
    assert item is not None and item.label == first_error and item.steps == STEPS
    assert item.final_answer_correct is (first_error == -1)
    again = formats.processbench_to_solution(item.to_dict())
    assert again.consensus is not None and again.consensus.first_error == first_error
    assert again.steps == STEPS and again.correct is sol.correct

    # ProcessBench -> TRL directly and via a Solution agree
    direct = formats.step_error_to_trl(item)
    via = formats.solution_to_trl(again)
    assert via is not None and direct.labels == via.labels and direct.completions == via.completions

    # TRL -> ProcessBench keeps the label
    pb = formats.solution_to_step_error(back)
    assert pb is not None and pb.label == first_error


@pytest.mark.parametrize("first_error", [0, 2, 3, -1])
def test_file_round_trip_ours_trl_processbench(tmp_path: Path, first_error: int) -> None:
    ours = _write_jsonl(tmp_path / "ours.jsonl", [_solution(first_error).to_dict()])
    n = formats.convert_file(str(ours), "ours", str(tmp_path / "trl.jsonl"), "trl")
    assert n == 1
    formats.convert_file(str(tmp_path / "trl.jsonl"), "trl", str(tmp_path / "pb.jsonl"), "processbench")
    formats.convert_file(str(tmp_path / "pb.jsonl"), "processbench", str(tmp_path / "ours2.jsonl"), "ours")
    (pb_row,) = _read_jsonl(tmp_path / "pb.jsonl")
    (ours_row,) = _read_jsonl(tmp_path / "ours2.jsonl")
    assert pb_row["label"] == first_error
    assert ours_row["consensus"]["first_error"] == first_error
    assert Solution.from_dict(ours_row).steps == STEPS[: len(STEPS) if first_error == -1 else first_error + 1]


def test_label_source_truth_reads_the_testbed_field() -> None:
    imported = formats.trl_to_solution({"prompt": "q", "completions": ["a", "b", "c"],
                                        "labels": [True, False, True]}, label_source="truth")
    assert imported.extra["true_first_error"] == 1 and imported.consensus is None
    ex = formats.solution_to_trl(imported, label_source="truth")
    assert ex is not None and ex.labels == [True, False]
    imported.extra["true_first_error"] = 7
    with pytest.raises(RecordError) as err:
        formats.solution_to_trl(imported, label_source="truth")
    assert err.value.field == "true_first_error"


@pytest.mark.parametrize("source", ["judge", "mc"])
def test_label_source_other_annotations(source: str) -> None:
    sol = _solution(-1)
    sol.consensus = None
    imported = formats.trl_to_solution({"prompt": "q", "completions": ["a", "b", "c"],
                                        "labels": [True, False, True]}, label_source=source)
    annotation = getattr(imported, source)
    assert annotation is not None and annotation.first_error == 1
    assert imported.consensus is None
    ex = formats.solution_to_trl(imported, label_source=source)
    assert ex is not None and ex.labels == [True, False]
    with pytest.raises(RecordError) as err:
        formats.solution_to_trl(sol, label_source="consensus")
    assert err.value.field == "consensus"


def test_soft_labels_from_mc_values() -> None:
    sol = _solution(2, mc=MCAnnotation(values=[0.9, None, 0.0, None], first_error=2, rollouts=8, tokens=100))
    ex = formats.solution_to_trl(sol, soft_labels=True)
    assert ex is not None
    assert ex.labels == [True, True, False]
    assert ex.soft_labels == [0.9, 1.0, 0.0]  # the unrolled prefix takes its hard label
    assert formats.solution_to_trl(sol).soft_labels is None
    back = formats.trl_to_solution(ex.to_dict())
    assert back.mc is not None and back.mc.values == [0.9, 1.0, 0.0]
    again = formats.solution_to_trl(back, soft_labels=True)
    assert again is not None and again.soft_labels == ex.soft_labels


def test_unkept_consensus_is_dropped_not_an_error(tmp_path: Path) -> None:
    dropped = _solution(1, sid="s2")
    dropped.consensus = ConsensusAnnotation(kept=False, first_error=None, reason="disagree")
    src = _write_jsonl(tmp_path / "ours.jsonl", [_solution(1).to_dict(), dropped.to_dict()])
    report = formats.ConvertReport()
    n = formats.convert_file(str(src), "ours", str(tmp_path / "t.jsonl"), "trl", report=report)
    assert (n, report.written, report.dropped) == (1, 1, 1)


# ------------------------------------------------------------------------------------- PRM800K


def _prm800k_line(finish_reason: str = "found_error") -> dict:
    def comp(text: str, rating: int | None) -> dict:
        return {"text": text, "rating": rating, "flagged": None}

    return {
        "labeler": "lab-1", "timestamp": "2023-01-22T04:34:27", "generation": 9,
        "is_quality_control_question": False, "is_initial_screening_question": False,
        "question": {"problem": "What is 3 * 4 + 1?", "ground_truth_answer": "13",
                     "ground_truth_solution": "3*4+1 = 13", "pre_generated_answer": "14"},
        "label": {
            "steps": [
                {"completions": [comp("I multiply first: 3 * 4 = 12.", 1)], "human_completion": None,
                 "chosen_completion": 0},
                {"completions": [comp("Alternative I did not pick.", -1), comp("Then I add one.", 0)],
                 "human_completion": None, "chosen_completion": 1},
                {"completions": [comp("12 + 1 = 14.", -1), comp("12 + 1 = 13.", 1)],
                 "human_completion": None, "chosen_completion": None},
                {"completions": [comp("# Answer\n\n14", None)], "human_completion": None,
                 "chosen_completion": None},
            ],
            "total_time": 1000, "finish_reason": finish_reason,
        },
    }


def test_prm800k_phase2_line_ratings_1_0_minus1() -> None:
    sol = formats.prm800k_to_solution(_prm800k_line())
    assert sol is not None
    assert sol.steps == ["I multiply first: 3 * 4 = 12.", "Then I add one.", "12 + 1 = 14."]
    assert sol.consensus is not None and sol.consensus.first_error == 2
    assert sol.problem == "What is 3 * 4 + 1?" and sol.answer == "13"
    assert sol.correct is False
    assert sol.extra["prm800k"]["ratings"] == [1, 0, -1]
    assert sol.extra["prm800k"]["finish_reason"] == "found_error"
    ex = formats.solution_to_trl(sol)
    assert ex is not None and ex.labels == [True, True, False]


def test_prm800k_neutral_as_negative_and_bad_problem() -> None:
    sol = formats.prm800k_to_solution(_prm800k_line(), neutral_as_positive=False)
    assert sol is not None and sol.consensus is not None
    assert sol.consensus.first_error == 1 and len(sol.steps) == 2
    assert formats.prm800k_to_solution(_prm800k_line("bad_problem")) is None


def test_prm800k_solution_with_human_completion() -> None:
    line = _prm800k_line("solution")
    steps = line["label"]["steps"]
    steps[2]["human_completion"] = {"text": "12 + 1 = 13.", "rating": None}
    steps[3]["completions"][0] = {"text": "# Answer\n\n13", "rating": 1, "flagged": None}
    steps[3]["chosen_completion"] = 0
    sol = formats.prm800k_to_solution(line)
    assert sol is not None and sol.consensus is not None
    assert sol.consensus.first_error == -1 and sol.correct is True
    assert sol.steps[2] == "12 + 1 = 13." and sol.final_answer == "13"


def test_prm800k_bad_rating_names_line_and_field(tmp_path: Path) -> None:
    bad = _prm800k_line()
    bad["label"]["steps"][1]["completions"][0]["rating"] = 5
    src = _write_jsonl(tmp_path / "prm800k.jsonl", [_prm800k_line(), bad])
    with pytest.raises(InputError) as err:
        formats.convert_file(str(src), "prm800k", str(tmp_path / "out.jsonl"), "trl")
    assert err.value.line == 2
    assert err.value.field == "label.steps[1].completions[0].rating"
    assert not (tmp_path / "out.jsonl").exists()


# ------------------------------------------------------------------------------------- Math-Shepherd

MS_INPUT = ("Janet has 3 apples and buys 2 more. How many apples does she have? "
            "Step 1: She starts with 3 apples. ки\nStep 2: She buys 2 - 0 = 2 more. ки\n"
            "Step 3: 3 + 2 = 6. The answer is: 6 ки")
MS_LABEL = ("Janet has 3 apples and buys 2 more. How many apples does she have? "
            "Step 1: She starts with 3 apples. +\nStep 2: She buys 2 - 0 = 2 more. +\n"
            "Step 3: 3 + 2 = 6. The answer is: 6 -")


def test_math_shepherd_parse_and_format_back() -> None:
    problem, steps, labels = formats.parse_math_shepherd(MS_INPUT, MS_LABEL)
    assert problem == "Janet has 3 apples and buys 2 more. How many apples does she have?"
    assert steps == ["Step 1: She starts with 3 apples.", "Step 2: She buys 2 - 0 = 2 more.",
                     "Step 3: 3 + 2 = 6. The answer is: 6"]
    assert labels == [True, True, False]
    assert formats.format_math_shepherd(problem, steps, labels) == {"input": MS_INPUT, "label": MS_LABEL}


def test_math_shepherd_row_to_solution_and_back() -> None:
    sol = formats.math_shepherd_to_solution({"input": MS_INPUT, "label": MS_LABEL, "task": "GSM8K"})
    assert sol.consensus is not None and sol.consensus.first_error == 2
    assert sol.final_answer == "6" and sol.correct is False and sol.extra["task"] == "GSM8K"
    assert formats.solution_to_math_shepherd(sol) == {"input": MS_INPUT, "label": MS_LABEL, "task": "GSM8K"}


def test_math_shepherd_tag_variants_and_later_labels() -> None:
    # Tag glued to the text (no space), a "+" after the first "-", question without "Step 1:".
    text = "What is 1+1? 1+1 = 2.ки Double check: 2.ки So 2.ки"
    label = "What is 1+1? 1+1 = 2.- Double check: 2.+ So 2.+"
    problem, steps, labels = formats.parse_math_shepherd(text, label)
    assert problem == "What is 1+1?"
    assert steps == ["1+1 = 2.", "Double check: 2.", "So 2."]
    assert labels == [False, True, True]
    sol = formats.math_shepherd_to_solution({"input": text, "label": label})
    assert sol.consensus is not None and sol.consensus.first_error == 0
    out = formats.solution_to_math_shepherd(sol)
    assert out is not None and out["input"] == "What is 1+1? Step 1: 1+1 = 2. ки"
    assert out["label"].endswith("Step 1: 1+1 = 2. -")


def test_math_shepherd_mismatched_label_is_an_error() -> None:
    with pytest.raises(RecordError) as err:
        formats.parse_math_shepherd(MS_INPUT, MS_LABEL.replace("starts", "begins"))
    assert err.value.field == "label"
    with pytest.raises(RecordError):
        formats.parse_math_shepherd(MS_INPUT, MS_LABEL[:-1] + "?")


def test_math_shepherd_file_to_trl(tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "ms.jsonl", [{"input": MS_INPUT, "label": MS_LABEL, "task": "GSM8K"}])
    assert formats.convert_file(str(src), "math_shepherd", str(tmp_path / "trl.jsonl"), "trl") == 1
    (row,) = _read_jsonl(tmp_path / "trl.jsonl")
    assert row["labels"] == [True, True, False] and len(row["completions"]) == 3


# ------------------------------------------------------------------------------------- tables and hub


def _pb_rows() -> list[dict]:
    return [{"id": f"gsm8k-{i}", "generator": "tiny", "problem": f"Problem {i}", "steps": ["a", "b", "c"],
             "final_answer_correct": label == -1, "label": label} for i, label in enumerate([-1, 0, 2])]


def test_load_parquet_and_json_list(tmp_path: Path) -> None:
    rows = _pb_rows()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pb.parquet")
    (tmp_path / "pb.json").write_text(json.dumps(rows), encoding="utf-8")
    for name in ("pb.parquet", "pb.json"):
        loaded = list(tables.load_rows(str(tmp_path / name)))
        assert [i for i, _ in loaded] == [0, 1, 2]
        assert [r["label"] for _, r in loaded] == [-1, 0, 2]
        n = formats.convert_file(str(tmp_path / name), "processbench", str(tmp_path / "trl.jsonl"), "trl")
        assert n == 3
        assert [r["labels"] for r in _read_jsonl(tmp_path / "trl.jsonl")] == [[True] * 3, [False], [True, True, False]]


def test_json_lines_in_a_json_file_and_bad_row_in_list(tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "lines.json", _pb_rows())
    assert [i for i, _ in tables.load_rows(str(src))] == [1, 2, 3]
    bad = _pb_rows()
    bad[1]["label"] = 7
    (tmp_path / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(InputError) as err:
        formats.convert_file(str(tmp_path / "bad.json"), "processbench", str(tmp_path / "o.jsonl"), "ours")
    assert (err.value.line, err.value.field) == (1, "label")


def test_bad_row_names_line_and_field_and_skip(tmp_path: Path) -> None:
    rows = [{"prompt": "q", "completions": ["a", "b"], "labels": [True, False]},
            {"prompt": "q", "completions": ["a", "b"], "labels": [True]},
            "{not json",
            {"prompt": "q2", "completions": ["x"], "labels": [True]}]
    src = _write_jsonl(tmp_path / "trl.jsonl", rows)
    dst = tmp_path / "out.jsonl"
    with pytest.raises(InputError) as err:
        formats.convert_file(str(src), "trl", str(dst), "processbench")
    assert (err.value.line, err.value.field) == (2, "labels")
    assert "trl.jsonl:2" in str(err.value)
    assert not dst.exists()

    report = formats.ConvertReport()
    n = formats.convert_file(str(src), "trl", str(dst), "processbench", on_error="skip", report=report)
    assert n == 2 and [e.line for e in report.errors] == [2, 3]
    assert [r["label"] for r in _read_jsonl(dst)] == [1, -1]
    rejects = _read_jsonl(tmp_path / "out.jsonl.rejects.jsonl")
    assert [r["line"] for r in rejects] == [2, 3] and rejects[0]["field"] == "labels"


@pytest.mark.parametrize("datasets_knows", [True, False])
def test_hub_offline_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, datasets_knows: bool) -> None:
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # False: the variable was set after `datasets` read it; we must refuse rather than let it go online.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", datasets_knows)
    with pytest.raises(PrmError) as err:
        list(tables.load_rows("someone/some-prm-dataset", split="test"))
    message = str(err.value)
    assert "someone/some-prm-dataset" in message and "not reachable" in message and "offline" in message


def test_unreachable_hub_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """No offline switch but no route to the hub: one quick probe, not the hub client's minute of retries."""
    import datasets

    import prm.hub

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(prm.hub, "_can_connect", lambda host, timeout: False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("went to the hub"))
    with pytest.raises(PrmError, match=r"someone/some-prm-dataset.*the hub \(huggingface.co\) cannot be reached"):
        list(tables.load_rows("someone/some-prm-dataset", split="test"))


def test_missing_local_file_is_not_a_hub_lookup(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        list(tables.load_rows(str(tmp_path / "missing.jsonl")))


# ------------------------------------------------------------------------------------- CLI


def test_cli_convert_ok_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write_jsonl(tmp_path / "prm800k.jsonl", [_prm800k_line(), _prm800k_line("bad_problem")])
    dst = tmp_path / "trl.jsonl"
    assert main(["data", "convert", str(src), str(dst), "--from", "prm800k", "--to", "trl"]) == 0
    assert "wrote 1 record(s)" in capsys.readouterr().out
    assert _read_jsonl(dst)[0]["labels"] == [True, True, False]

    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question": {"problem": "x"}}])
    out = tmp_path / "never.jsonl"
    assert main(["data", "convert", str(bad), str(out), "--from", "prm800k", "--to", "ours"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.jsonl:1" in err and "'label'" in err and "Traceback" not in err
    assert not out.exists()

    # Skipping the only row leaves nothing to write: an error, with the reason in the rejects file.
    assert main(["data", "convert", str(bad), str(out), "--from", "prm800k", "--to", "ours", "--skip-bad"]) == 2
    captured = capsys.readouterr()
    assert "skipped 1 bad row(s)" in captured.out and "no record converted (0 without a usable label, 1 bad)" in captured.err
    assert not out.exists() and (tmp_path / "never.jsonl.rejects.jsonl").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["data", "convert", str(empty), str(out), "--from", "trl", "--to", "ours"]) == 2
    assert "empty.jsonl: no records" in capsys.readouterr().err and not out.exists()
