"""Records validate field by field; JSONL reading reports file:line:field; writing never tears a line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prm.errors import InputError
from prm.jsonl import JsonlWriter, load_records, validate_file, write_atomic
from prm.records import (
    BonItem,
    Problem,
    RecordError,
    Solution,
    StepErrorItem,
    TrainingExample,
    guess_record_type,
)

GOOD_SOLUTION = {
    "id": "p1-s0", "problem_id": "p1", "problem": "1+1?", "answer": "2", "steps": ["1+1=2", "So 2."],
    "final_answer": "2", "correct": True, "generator": "test",
}


def bad_file(tmp_path: Path) -> Path:
    """One good line, then a missing field, a wrong type, an empty step list, bad JSON, bad UTF-8."""
    labeled = {**GOOD_SOLUTION, "consensus": {"kept": True, "first_error": -1, "reason": "agree"}}
    lines = [
        json.dumps(labeled).encode(),
        json.dumps({k: v for k, v in GOOD_SOLUTION.items() if k != "answer"}).encode(),
        json.dumps({**GOOD_SOLUTION, "correct": "yes"}).encode(),
        json.dumps({**GOOD_SOLUTION, "steps": []}).encode(),
        b'{"id": "p1-s4", "steps": [',
        b'{"id": "p1-s5", "problem": "caf\xe9"}',
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_round_trip_keeps_unknown_fields_and_annotations():
    data = {**GOOD_SOLUTION, "mc": {"values": [1.0, None], "first_error": -1, "rollouts": 8, "tokens": 100},
            "judge": {"first_error": 1, "votes": [1, None], "parsed": True, "raw": ["a", "b"]},
            "step_scores": [0.9, 0.1]}
    sol = Solution.from_dict(data)
    assert sol.mc is not None and sol.mc.values == [1.0, None]
    assert sol.extra == {"step_scores": [0.9, 0.1]}
    assert sol.to_dict() == data


@pytest.mark.parametrize(
    ("record", "cls", "field", "message"),
    [
        ({**GOOD_SOLUTION, "steps": ["a", 3]}, Solution, "steps[1]", "expected string"),
        ({**GOOD_SOLUTION, "mc": {"values": [1.0], "first_error": -1, "rollouts": 1, "tokens": 1}}, Solution,
         "mc.values", "1 values for 2 steps"),
        ({**GOOD_SOLUTION, "judge": {"first_error": 5, "votes": [], "parsed": True, "raw": ""}}, Solution,
         "judge.first_error", "step index"),
        ({"prompt": "q", "completions": ["a", "b"], "labels": [True]}, TrainingExample, "labels", "1 labels"),
        ({"prompt": "q", "completions": ["a"], "labels": [1]}, TrainingExample, "labels[0]", "expected boolean"),
        ({"id": "x", "generator": "g", "problem": "p", "steps": ["a"], "final_answer_correct": False,
          "label": -2}, StepErrorItem, "label", "must be -1"),
        ({"problem_id": "p", "problem": "q", "answer": "1", "candidates": [{"steps": [], "final_answer": None,
          "correct": False}]}, BonItem, "candidates[0].steps", "empty step list"),
        ({"id": 3, "problem": "q", "answer": "1", "source": "s"}, Problem, "id", "expected string"),
    ],
)
def test_validation_names_the_field(record, cls, field, message):
    with pytest.raises(RecordError) as info:
        cls.from_dict(record)
    assert info.value.field == field
    assert message in info.value.message


def test_training_example_first_error():
    ex = TrainingExample.from_dict({"prompt": "q", "completions": ["a", "b", "c"], "labels": [True, True, False]})
    assert ex.first_error == 2
    assert TrainingExample.from_dict({"prompt": "q", "completions": ["a"], "labels": [True]}).first_error == -1


def test_guess_record_type():
    assert guess_record_type(GOOD_SOLUTION) is Solution
    assert guess_record_type({"id": "a", "problem": "q", "answer": "1", "source": "s"}) is Problem
    assert guess_record_type({"prompt": "q", "completions": [], "labels": []}) is TrainingExample


def test_validate_reports_every_bad_line(tmp_path):
    path = bad_file(tmp_path)
    report = validate_file(path, Solution)
    assert report.good == 1
    where = [(e.line, e.field) for e in report.errors]
    assert where == [(2, "answer"), (3, "correct"), (4, "steps"), (5, None), (6, None)]
    messages = [e.describe() for e in report.errors]
    assert messages[0] == f"{path}:2: field 'answer': missing required field"
    assert "invalid JSON" in messages[3] and "invalid UTF-8" in messages[4]


def test_load_stops_at_first_bad_line_or_skips_with_side_file(tmp_path):
    path = bad_file(tmp_path)
    with pytest.raises(InputError) as info:
        load_records(path, Solution)
    assert (info.value.line, info.value.field) == (2, "answer")
    good = load_records(path, Solution, on_error="skip")
    assert [s.id for s in good] == ["p1-s0"]
    rejects = [json.loads(line) for line in open(f"{path}.rejects.jsonl")]
    assert [r["line"] for r in rejects] == [2, 3, 4, 5, 6]
    assert rejects[1]["field"] == "correct"


def test_cli_validate_reports_each_line_and_exits_nonzero(tmp_path):
    path = bad_file(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "prm", "data", "validate", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    for line in (2, 3, 4, 5, 6):
        assert f"{path}:{line}:" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    good = tmp_path / "good.jsonl"
    write_atomic(good, [Solution.from_dict(GOOD_SOLUTION)])
    proc = subprocess.run([sys.executable, "-m", "prm", "data", "validate", str(good)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "all 1 record(s) valid" in proc.stdout


def test_writer_resumes_after_a_torn_line(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path, resume=False) as writer:
        writer.write({"id": "a", "v": 1})
        writer.write({"id": "b", "v": 2})
    with open(path, "ab") as fh:  # what a kill in the middle of a write leaves behind
        fh.write(b'{"id": "c", "v"')
    writer = JsonlWriter(path, resume=True)
    assert writer.done == {"a", "b"}
    writer.write({"id": "c", "v": 3})
    writer.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert JsonlWriter(path, resume=False).done == set()
    assert path.read_text() == ""


def test_write_atomic_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    write_atomic(path, [{"id": "a"}])

    def records():
        yield {"id": "b"}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_atomic(path, records())
    assert path.read_text() == '{"id":"a"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


@pytest.mark.parametrize("stage", [
    ["data", "convert", "{bad}", "{out}", "--from", "ours", "--to", "trl"],
    ["annotate", "mc", "-i", "{bad}", "-o", "{out}", "backend=simulated"],
    ["annotate", "judge", "-i", "{bad}", "-o", "{out}", "generator.model=/nonexistent"],
])
def test_stage_on_bad_input_stops_at_first_bad_line_and_writes_nothing(tmp_path, stage):
    bad, out = bad_file(tmp_path), tmp_path / "out.jsonl"
    args = [a.format(bad=bad, out=out) for a in stage]
    proc = subprocess.run([sys.executable, "-m", "prm", *args], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}:2: field 'answer': missing required field" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not out.exists()


@pytest.mark.parametrize(("content", "bad_line"), [
    (b"my notes\n", 1),
    (b"my notes", 1),  # no newline, but not the prefix of a JSON line either: not a torn write
    (b'{"id": "a"}\nnot json\n{"id": "c"}\n', 2),
    (b'{"id": "a"}\n[1, 2]\n', 2),
    (b'{"id": "a"}\n{"id": "b", "v"\n{"id": "c"}\n', 2),  # a torn line in the middle is not ours either
])
def test_writer_resume_refuses_a_file_it_did_not_write(tmp_path, content, bad_line):
    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        JsonlWriter(path, resume=True)
    assert (info.value.path, info.value.line) == (str(path), bad_line)
    assert "not a resumable output" in info.value.message and "delete" in info.value.message
    assert path.read_bytes() == content


def test_writer_resume_keeps_a_whole_last_record_without_newline(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": "a"}\n\n{"id": "b"}')
    with JsonlWriter(path, resume=True) as writer:
        assert writer.done == {"a", "b"}
        writer.write({"id": "c"})
    assert path.read_bytes() == b'{"id": "a"}\n\n{"id": "b"}\n{"id":"c"}\n'


def test_cli_stage_does_not_overwrite_a_user_file_given_as_output(tmp_path):
    problem = {"id": "p1", "problem": "Tom has 3 apples and buys 4 more. How many?", "answer": "7",
               "source": "t", "meta": {"reference_steps": ["Tom has 3 apples.", "3 + 4 = 7.", "The answer is 7."]}}
    problems, notes = tmp_path / "problems.jsonl", tmp_path / "notes.txt"
    write_atomic(problems, [problem])
    notes.write_text("my notes\n")
    proc = subprocess.run([sys.executable, "-m", "prm", "data", "testbed", "-i", str(problems), "-o", str(notes)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{notes}:1: invalid JSON" in proc.stderr and "not a resumable output" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert notes.read_text() == "my notes\n"


def test_a_directory_is_named_not_a_traceback(tmp_path):
    with pytest.raises(InputError, match="is a directory, not a JSONL file") as info:
        load_records(tmp_path, Solution)
    assert info.value.path == str(tmp_path)
    with pytest.raises(InputError, match="is a directory"):
        JsonlWriter(tmp_path, resume=True)
    for args in (["data", "validate", str(tmp_path)], ["eval", "bon", "-i", str(tmp_path), "-o", str(tmp_path / "o")]):
        proc = subprocess.run([sys.executable, "-m", "prm", *args], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert f"error: {tmp_path}: is a directory, not a JSONL file" in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout


MC = {"values": [1.0, 0.5], "first_error": -1, "rollouts": 4, "tokens": 10}


@pytest.mark.parametrize(("annotation", "field", "message"), [
    ({"mc": {**MC, "values": ["x", 1.0]}}, "mc.values[0]", "expected number or null, got string"),
    ({"consensus": {"kept": True, "reason": "agree"}}, "consensus.first_error", "missing required field"),
    ({"judge": {"first_error": "1", "votes": [], "parsed": True, "raw": ""}}, "judge.first_error",
     "expected integer or null, got string"),
    ({"judge": {"first_error": 1, "votes": [], "parsed": True, "raw": ["a", 2]}}, "judge.raw[1]",
     "expected string, got integer"),
    ({"mc": "x"}, "mc", "expected object or null, got string"),  # the wrong shape itself is still named
])
def test_optional_annotation_names_the_inner_field(annotation, field, message):
    with pytest.raises(RecordError) as info:
        Solution.from_dict({**GOOD_SOLUTION, **annotation})
    assert (info.value.field, info.value.message) == (field, message)


@pytest.mark.parametrize(("values", "bad"), [([2.5, -1], "values[0]"), ([1.0, -0.1], "values[1]"),
                                             ([None, float("nan")], "values[1]")])
def test_mc_values_are_success_rates_in_unit_interval(tmp_path, values, bad):
    with pytest.raises(RecordError, match=r"must be in \[0, 1\]") as info:
        Solution.from_dict({**GOOD_SOLUTION, "mc": {**MC, "values": values}})
    assert info.value.field == f"mc.{bad}"
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({**GOOD_SOLUTION, "mc": {**MC, "values": values}}) + "\n")
    with pytest.raises(InputError) as err:
        load_records(path, Solution)
    assert (err.value.line, err.value.field) == (1, f"mc.{bad}")
    assert Solution.from_dict({**GOOD_SOLUTION, "mc": {**MC, "values": [0, None]}}).mc.values == [0.0, None]


def test_load_records_can_require_at_least_one_record(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n \n")
    assert load_records(empty, Solution) == []  # the default is unchanged
    with pytest.raises(InputError) as info:
        load_records(empty, Solution, require_records=True)
    assert info.value.describe() == f"{empty}: no records"
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text("{}\n")
    with pytest.raises(InputError, match=r"no records \(1 bad line\(s\) skipped\)"):
        load_records(only_bad, Solution, on_error="skip", require_records=True)
    good = tmp_path / "good.jsonl"
    write_atomic(good, [Solution.from_dict(GOOD_SOLUTION)])
    assert len(load_records(good, Solution, require_records=True)) == 1
