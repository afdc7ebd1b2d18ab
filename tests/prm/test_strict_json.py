"""Strict JSON input: duplicate keys, lone surrogate escapes, NaN/Infinity, too-deep nesting and duplicate ids
are one error line naming the file, the line and the field, through `prm data validate` and through a stage
(exit 2, nothing written, an existing output untouched); a UTF-8 byte-order mark is accepted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prm.app.cli import main
from prm.errors import ConfigError, InputError
from prm.jsonl import MAX_DEPTH, JsonError, loads_strict, read_json

GOOD = {
    "id": "p1-s0", "problem_id": "p1", "problem": "1+1?", "answer": "2", "steps": ["1+1=2", "So 2."],
    "final_answer": "2", "correct": True, "generator": "test",
}
GOOD_LINE = json.dumps(GOOD).encode()
DEEP = b"[" * 5000 + b"]" * 5000


def solution_line(**replace: bytes) -> bytes:
    """A good Solution line with some values replaced by raw JSON text (which json.dumps could not write)."""
    data = {**GOOD, "id": "p1-s1"}
    parts = [f'"{k}": {replace[k].decode()}' if k in replace else f'"{k}": {json.dumps(v)}' for k, v in data.items()]
    parts += [f'"{k}": {raw.decode()}' for k, raw in replace.items() if k not in data]
    return ("{" + ", ".join(parts) + "}").encode()


# (name, bad line, field named, words in the message)
BAD_LINES = [
    ("duplicate key", solution_line(answer=b'"2", "answer": "3"'), "answer", "duplicate key 'answer'"),
    ("lone surrogate", solution_line(problem=b'"caf\\ud800"'), "problem", "lone surrogate escape \\ud800"),
    ("NaN", solution_line(meta=b'{"difficulty": NaN}'), "meta.difficulty", "NaN is not a JSON number"),
    ("Infinity", solution_line(meta=b'{"scores": [0.5, -Infinity]}'), "meta.scores[1]", "-Infinity is not a JSON number"),
    ("overflow", solution_line(meta=b'{"x": 1e999}'), "meta.x", "inf is not a finite number"),
    ("deep nesting", solution_line(meta=DEEP), None, f"nested deeper than {MAX_DEPTH} levels"),
    ("duplicate id", solution_line(id=b'"p1-s0"'), "id", "duplicate id 'p1-s0' (first on line 1)"),
]
IDS = [name for name, *_ in BAD_LINES]


@pytest.mark.parametrize(("text", "field", "message"), [
    (b'{"a": 1, "b": {"c": 2, "c": 3}}', "b.c", "duplicate key 'c'"),
    (b'{"a": [{"k": "\\udc00x"}]}', "a[0].k", "lone surrogate escape \\udc00"),
    (b'{"\\ud800": 1}', None, "a key holds a lone surrogate"),
    (b'{"a": {"b": Infinity}}', "a.b", "Infinity is not a JSON number"),
    (b'{"a": [NaN]}', "a[0]", "NaN is not a JSON number"),
    (b'{"a": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", "a", "nested deeper"),
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, "nested deeper"),  # beyond the parser's stack
    (b'{"a": 1,}', None, "invalid JSON"),
    (b'{"a": "caf\xe9"}', None, "invalid UTF-8"),
], ids=["duplicate key", "lone surrogate", "surrogate key", "Infinity", "NaN", "too deep", "deeper than the stack",
        "syntax", "bad UTF-8"])
def test_loads_strict_names_the_field(text, field, message):
    with pytest.raises(JsonError) as info:
        loads_strict(text)
    assert info.value.field == field and message in info.value.message


def test_loads_strict_accepts_what_is_valid():
    assert loads_strict(b'{"a": "\\ud83d\\ude00", "b": [1e308, -0.0, 12345678901234567890123]}') == {
        "a": "\U0001F600", "b": [1e308, -0.0, 12345678901234567890123]}
    nested = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert loads_strict(b'{"a": ' + nested + b"}")["a"] is not None
    assert loads_strict('{"a": "é"}') == {"a": "é"}


@pytest.mark.parametrize(("name", "line", "field", "message"), BAD_LINES, ids=IDS)
def test_validate_reports_each_class(tmp_path, capsys, name, line, field, message):
    path = tmp_path / "in.jsonl"
    path.write_bytes(GOOD_LINE + b"\n" + line + b"\n")
    assert main(["data", "validate", "--type", "solution", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    where = f"{path}:2: " + (f"field '{field}': " if field else "")
    assert out[0].startswith(where) and message in out[0], out
    assert out[1] == f"{path}: 1 invalid line(s), 1 valid record(s)"


def test_validate_reports_every_class_in_one_file_without_a_traceback(tmp_path):
    """A subprocess, so a RecursionError or a UnicodeEncodeError would show as a traceback."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([GOOD_LINE] + [line for _, line, _, _ in BAD_LINES]) + b"\n")
    proc = subprocess.run([sys.executable, "-m", "prm", "data", "validate", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[1] for line in lines[:-1]] == [str(n) for n in range(2, len(BAD_LINES) + 2)]
    for (_, _, _, message), line in zip(BAD_LINES, lines, strict=False):
        assert message in line


@pytest.mark.parametrize(("name", "line", "field", "message"), BAD_LINES, ids=IDS)
def test_a_stage_refuses_each_class_and_writes_nothing(tmp_path, capsys, name, line, field, message):
    path = tmp_path / "in.jsonl"
    path.write_bytes(GOOD_LINE + b"\n" + line + b"\n")
    out = tmp_path / "mc.jsonl"
    assert main(["annotate", "mc", "-i", str(path), "-o", str(out), "backend=simulated"]) == 2
    err = capsys.readouterr().err
    where = f"error: {path}:2: " + (f"field '{field}': " if field else "")
    assert err.startswith(where) and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # nothing written
    # An output from an earlier run is left exactly as it was.
    out.write_bytes(GOOD_LINE + b"\n")
    assert main(["annotate", "mc", "-i", str(path), "-o", str(out), "backend=simulated"]) == 2
    assert out.read_bytes() == GOOD_LINE + b"\n"


def test_a_byte_order_mark_is_accepted(tmp_path, capsys):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_LINE + b"\n")
    assert main(["data", "validate", "--type", "solution", str(path)]) == 0
    assert "all 1 record(s) valid" in capsys.readouterr().out
    testbed = tmp_path / "problems.jsonl"
    testbed.write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "q", "problem": "1+1?", "answer": "2",
                                                      "source": "t"}).encode() + b"\n")
    out = tmp_path / "out.jsonl"
    assert main(["data", "problems", "--source", "jsonl", "--path", str(testbed), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["id"] == "q"
    # ... but only at the start of a file: elsewhere it is a stray character.
    path.write_bytes(GOOD_LINE + b"\n\xef\xbb\xbf" + GOOD_LINE + b"\n")
    assert main(["data", "validate", str(path)]) == 1
    assert f"{path}:2: invalid JSON" in capsys.readouterr().out


def test_a_json_array_file_is_strict_too(tmp_path):
    path = tmp_path / "rows.json"
    path.write_bytes(b'\xef\xbb\xbf[\n {"question": "q", "answer": "1"},\n {"question": "q", "question": "r"}\n]\n')
    with pytest.raises(InputError) as info:
        read_json(path)
    assert info.value.describe() == f"{path}: field '[1].question': duplicate key 'question' in one object " \
                                    "(which value is meant?)"
    path.write_bytes(b'[\n {"question": "q",\n  "answer": 1,}\n]\n')
    with pytest.raises(InputError, match=r"rows.json:3: invalid JSON"):
        read_json(path)


@pytest.mark.parametrize(("content", "message"), [
    (b'{"zero_optimization": {"stage": 2, "stage": 3}}', "field 'zero_optimization.stage': duplicate key"),
    (b'{"gradient_clipping": Infinity}', "field 'gradient_clipping': Infinity is not a JSON number"),
    (b'{"x": ' + DEEP + b"}", f"ds.json: nested deeper than {MAX_DEPTH} levels"),
], ids=["duplicate key", "Infinity", "deep nesting"])
def test_a_bad_deepspeed_config_is_one_config_error(tmp_path, content, message):
    from prm.train.config import TrainConfig
    from prm.train.ds_config import deepspeed_config

    ds = tmp_path / "ds.json"
    ds.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        deepspeed_config(TrainConfig(deepspeed=str(ds)), world_size=1)
    assert str(info.value).startswith(f"train.deepspeed: {ds}") and message in str(info.value)
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize(("content", "message"), [
    (b'{"kind": "bon", "headline": {"acc": NaN}}', "field 'headline.acc': NaN is not a JSON number"),
    (b'{"kind": "bon", "kind": "steps", "headline": {}}', "field 'kind': duplicate key"),
    (b'{"kind": "bon", "headline": ' + DEEP + b"}", "nested deeper"),
], ids=["NaN", "duplicate key", "deep nesting"])
def test_eval_compare_refuses_bad_metrics_in_one_line(tmp_path, capsys, content, message):
    run = tmp_path / "a"
    run.mkdir()
    (run / "metrics.json").write_bytes(content)
    assert main(["eval", "compare", "--runs", f"a={run}", f"b={run}", "-o", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "cmp").exists()


def test_training_data_reader_is_strict(tmp_path, capsys):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"prompt": "q", "completions": ["a"], "labels": [true], "labels": [false]}\n')
    assert main(["train-data", "export-trl", str(path), "-o", str(tmp_path / "trl.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{path}:1: field 'labels': duplicate key 'labels'" in err
    assert not (tmp_path / "trl.jsonl").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("mc:\n  k: 4\n  k: 8\n", "c.yaml:3: invalid YAML: duplicate key 'k'"),
    ("mc:\n  meta: {x: .nan}\n", "c.yaml: key 'mc.meta.x': nan is not a finite number"),
    ('judge:\n  prompt: "\\ud800"\n', "c.yaml: key 'judge.prompt': lone surrogate escape \\ud800"),
    ("mc:\n  k: " + "[" * 5000 + "]" * 5000 + "\n", f"c.yaml: nested deeper than {MAX_DEPTH} levels"),
], ids=["duplicate key", "NaN", "lone surrogate", "deep nesting"])
def test_config_yaml_is_strict_in_one_line(tmp_path, capsys, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    assert main(["config", "get", str(config), "mc.k"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("value", [".nan", ".inf", "nan", "-inf"])
def test_a_non_finite_float_option_is_refused(capsys, value):
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
    assert main(["config", "get", str(config), "sample.temperature", f"sample.temperature={value}"]) == 2
    err = capsys.readouterr().err
    assert "expected a finite number" in err or "not a finite number" in err, err


def test_a_checkpoint_config_is_read_strictly(tmp_path):
    from prm.checkpoint_files import read_config

    (tmp_path / "config.json").write_bytes(b'{"model_type": "llama", "model_type": "qwen2"}')
    with pytest.raises(InputError, match="config.json: field 'model_type': duplicate key"):
        read_config(str(tmp_path))


def test_writing_nan_is_refused_and_nothing_is_torn(tmp_path):
    from prm.errors import PrmError
    from prm.jsonl import JsonlWriter, write_atomic

    out = tmp_path / "scored.jsonl"
    with JsonlWriter(out, resume=False) as writer:
        writer.write({"id": "a", "step_scores": [0.5]})
        with pytest.raises(PrmError, match=r"record 'b': field 'step_scores\[1\]' NaN or infinity is not JSON"):
            writer.write({"id": "b", "step_scores": [0.5, float("nan")]})
    assert out.read_text() == '{"id":"a","step_scores":[0.5]}\n'
    with pytest.raises(PrmError, match="not written"):
        write_atomic(tmp_path / "all.jsonl", [{"id": "a", "x": float("inf")}])
    assert not (tmp_path / "all.jsonl").exists()
