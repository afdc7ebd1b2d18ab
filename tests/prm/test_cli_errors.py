"""Command-line mistakes that would destroy files or end in a traceback: one `error:` line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from prm.app.cli import main


@pytest.fixture()
def problems(tmp_path):
    path = tmp_path / "p.jsonl"
    assert main(["data", "problems", "--source", "gsm_symbolic", "-n", "3", "-o", str(path)]) == 0
    return path


@pytest.mark.parametrize("argv", [
    ["data", "convert", "{p}", "{p}", "--from", "ours", "--to", "trl"],
    ["sample", "-i", "{p}", "-o", "{p}", "n=1"],
    ["data", "testbed", "-i", "{p}", "-o", "{p}"],
    ["train-data", "export-trl", "{p}", "-o", "{p}"],
])
def test_output_over_an_input_is_refused(problems, capsys, argv):
    before = problems.read_bytes()
    assert main([a.format(p=problems) for a in argv]) == 2
    assert "the output is also an input" in capsys.readouterr().err
    assert problems.read_bytes() == before


def test_config_mistakes_are_one_line(tmp_path, capsys):
    bad = tmp_path / "lora.yaml"
    bad.write_text("train:\n  lora: false\n  1: x\n")
    assert main(["config", "get", str(bad), "train.model"]) == 2
    assert "unknown config key 'train.1'" in capsys.readouterr().err
    bad.write_text("train:\n  lora: false\n")
    assert main(["config", "get", str(bad), "train.model"]) == 2
    assert "'train.lora': expected a mapping" in capsys.readouterr().err
    assert main(["config", "get", str(bad), "train.model", "trian.max_steps=3"]) == 2
    assert "'trian' is neither a section" in capsys.readouterr().err
    assert main(["config", "get", str(tmp_path), "train.model"]) == 2
    assert "a directory, not a config file" in capsys.readouterr().err


def test_output_that_is_a_directory_is_one_line(tmp_path, capsys):
    out = tmp_path / "d.jsonl"
    out.mkdir()
    assert main(["data", "problems", "--source", "gsm_symbolic", "-n", "3", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {out}: is a directory, not a file\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["data", "testbed", "-i", "{p}", "-o", "{t}/tb.jsonl", "--heldout-fraction", "7", "--heldout-out", "{t}/h.jsonl"],
     "--heldout-fraction must be in [0, 1)"),
    (["annotate", "mc", "-i", "{p}", "-o", "{t}/mc.jsonl", "backend=simulated", "top_p=5"], "top_p must be in (0, 1]"),
    (["eval", "steps", "-i", "{p}", "-o", "{t}/rep", "--threshold", "5"], "eval.threshold: must be in [0, 1]"),
    (["score", "--model", "x", "-i", "{p}", "-o", "{t}/s.jsonl", "--max-tokens", "-1"], "must be at least 1"),
    (["run", "{c}", "run.heldout_fraction=7", "--dry-run"], "run.heldout_fraction is a share in [0, 1]"),
    (["run", "{c}", "--stages", ","], "--stages names no stage"),
])
def test_bad_values_are_one_line(problems, tmp_path, capsys, argv, message):
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
    assert main([a.format(p=problems, t=tmp_path, c=config) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]  # nothing written


@pytest.mark.parametrize(("name", "content", "message"), [
    ("fake.parquet", b"hello", "cannot read it as a dataset file (ArrowInvalid"),
    ("latin.jsonl", b'{"question": "\xff"}\n', "latin.jsonl:1: invalid UTF-8 (byte 14"),
])
def test_unreadable_dataset_files(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["data", "problems", "--source", "hf", "--preset", "gsm8k", "--path", str(path),
                 "-o", str(tmp_path / "out.jsonl")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("argv", [
    ["sample", "-i", "{e}", "-o", "{t}/o.jsonl", "n=1"],
    ["data", "testbed", "-i", "{e}", "-o", "{t}/o.jsonl"],
    ["annotate", "mc", "-i", "{e}", "-o", "{t}/o.jsonl", "backend=simulated"],
    ["annotate", "judge", "-i", "{e}", "-o", "{t}/o.jsonl"],
    ["consensus", "-i", "{e}", "-o", "{t}/o.jsonl"],
    ["data", "problems", "--source", "jsonl", "--path", "{e}", "-o", "{t}/o.jsonl"],
    ["train-data", "export-trl", "{e}", "-o", "{t}/o.jsonl"],
])
def test_an_empty_input_is_an_error(tmp_path, capsys, argv):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main([a.format(e=empty, t=tmp_path) for a in argv]) == 2
    assert f"{empty}: no records" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
    assert main(["data", "validate", str(empty)]) == 1 and "no records" in capsys.readouterr().out


def test_a_bad_model_leaves_outputs_as_they_were(problems, tmp_path, capsys):
    """The model loads before any output opens: no empty file appears, and an old one survives --no-resume."""
    missing = str(tmp_path / "no-model")
    assert main(["sample", "-i", str(problems), "-o", str(tmp_path / "s.jsonl"), f"generator.model={missing}"]) == 2
    assert "no such model folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]
    old = tmp_path / "scored.jsonl"
    old.write_text('{"id": "x"}\n')
    testbed = tmp_path / "tb.jsonl"
    assert main(["data", "testbed", "-i", str(problems), "-o", str(testbed)]) == 0
    assert main(["score", "--model", missing, "-i", str(testbed), "-o", str(old), "--no-resume"]) == 2
    assert old.read_text() == '{"id": "x"}\n'


def test_overrides_may_follow_flags(tmp_path, capsys):
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
    assert main(["run", str(config), "--dry-run", f"run.run_dir={tmp_path / 'r'}", "train.max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "r") in out and "max_steps=3" in out
    with pytest.raises(SystemExit):
        main(["run", str(config), "--dry-run", "--no-such-flag"])
