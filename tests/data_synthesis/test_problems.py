"""Problem sources: gsm_symbolic (reasoning-gym), a JSONL file, HF-style files with presets; the CLI."""

from __future__ import annotations

import json
import re

import pytest
from prm.data_synthesis.problems import (
    ProblemsConfig,
    clean_number,
    gsm_symbolic_problems,
    last_boxed,
    load_problems,
    reference_steps_from_rationale,
)

from prm.app.cli import main
from prm.errors import ConfigError, InputError, PrmError
from prm.jsonl import load_records
from prm.records import Problem

NUMBER = re.compile(r"-?\d+(\.\d+)?")


@pytest.fixture(scope="module")
def gsm50() -> list[Problem]:
    return gsm_symbolic_problems(50, seed=7)


def test_gsm_symbolic_valid_and_numeric(gsm50):
    assert len(gsm50) == 50
    assert len({p.id for p in gsm50}) == 50
    for i, p in enumerate(gsm50):
        assert p.id == f"gsm_symbolic-7-{i}"
        assert p.source == "gsm_symbolic"
        assert NUMBER.fullmatch(p.answer), p.answer
        assert p.problem.strip()
        steps = p.meta["reference_steps"]
        assert steps and all(isinstance(s, str) and s.strip() for s in steps)
        assert not any(s.startswith("####") for s in steps)
        assert steps[-1] == f"The answer is {p.answer}."
        # the record survives a JSON round trip through validation
        assert Problem.from_dict(json.loads(json.dumps(p.to_dict()))).to_dict() == p.to_dict()


def test_gsm_symbolic_deterministic_per_seed(gsm50):
    again = gsm_symbolic_problems(50, seed=7)
    assert [p.to_dict() for p in again] == [p.to_dict() for p in gsm50]
    other = gsm_symbolic_problems(50, seed=8)
    assert [p.problem for p in other] != [p.problem for p in gsm50]
    # the first k problems of a seed do not depend on n: ids stay meaningful when n grows
    assert [p.to_dict() for p in gsm_symbolic_problems(5, seed=7)] == [p.to_dict() for p in gsm50[:5]]


def test_gsm_symbolic_answer_step_configurable():
    bare = gsm_symbolic_problems(3, seed=1, answer_step="")
    boxed = gsm_symbolic_problems(3, seed=1, answer_step="So the answer is $\\boxed{{answer}}$.")
    for a, b in zip(bare, boxed, strict=True):
        assert b.meta["reference_steps"] == [*a.meta["reference_steps"], f"So the answer is $\\boxed{{{a.answer}}}$."]
        assert not any(s.startswith("####") for s in a.meta["reference_steps"])
    with pytest.raises(ConfigError):
        gsm_symbolic_problems(0, seed=1)


def test_rationale_and_numbers():
    steps, final = reference_steps_from_rationale(
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nIn total 48+24 = <<48+24=72>>72.\n#### 1,072.0",
        None, "The answer is {answer}.")
    assert final == "1072"
    assert steps == ["Natalia sold 48/2 = 24 clips in May.", "In total 48+24 = 72.", "The answer is 1072."]
    assert clean_number(" 36.0 ") == "36"
    assert clean_number("$1,234") == "1234"
    assert clean_number("2047.5") == "2047.5"


def test_last_boxed():
    assert last_boxed(r"so $\boxed{\frac{1}{2}}$ and then \boxed{3}") == "3"
    assert last_boxed(r"The answer is $\boxed{\left\{1,2\right\}}$.") == r"\left\{1,2\right\}"
    assert last_boxed(r"\boxed{x^{2}+1}") == "x^{2}+1"
    assert last_boxed(r"hence \boxed 5$") == "5"
    assert last_boxed("no box here") is None
    assert last_boxed(r"\boxed{unbalanced") is None


def _problem_rows() -> list[dict]:
    return [
        {"id": "a", "problem": "What is 2+2?", "answer": "4", "source": "mine", "meta": {"level": 1}},
        {"id": "b", "problem": "What is 3*3?", "answer": "9", "source": "mine"},
        {"id": "c", "problem": "What is 10-7?", "answer": "3", "source": "mine"},
    ]


def test_jsonl_source(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _problem_rows()))
    problems = load_problems(ProblemsConfig(source="jsonl", path=str(path)))
    assert [p.id for p in problems] == ["a", "b", "c"]
    assert problems[0].meta == {"level": 1}
    assert [p.id for p in load_problems(ProblemsConfig(source="jsonl", path=str(path), n=2))] == ["a", "b"]
    shuffled = load_problems(ProblemsConfig(source="jsonl", path=str(path), n=2, shuffle=True, seed=3))
    assert len(shuffled) == 2
    assert shuffled == load_problems(ProblemsConfig(source="jsonl", path=str(path), n=2, shuffle=True, seed=3))


def test_jsonl_source_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_problem_rows()[0]) + "\n" + json.dumps({"id": "x", "problem": "p"}) + "\n")
    with pytest.raises(InputError) as err:
        load_problems(ProblemsConfig(source="jsonl", path=str(path)))
    assert err.value.line == 2 and err.value.field == "answer"


def test_jsonl_source_duplicate_ids(tmp_path):
    path = tmp_path / "dup.jsonl"
    rows = _problem_rows()
    rows[2]["id"] = "a"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(PrmError, match=r"dup.jsonl:3: field 'id': duplicate id 'a' \(first on line 1\)"):
        load_problems(ProblemsConfig(source="jsonl", path=str(path)))


GSM8K_ROWS = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
               "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
                 "How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
               "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
    {"question": "A big sum?", "answer": "It is 1000 + 234 = 1234.\n#### 1,234"},
]


def _check_gsm8k(problems: list[Problem], name: str) -> None:
    assert [p.answer for p in problems] == ["72", "10", "1234"]
    assert [p.id for p in problems] == [f"{name}-test-{i}" for i in range(3)]
    assert problems[0].source == "gsm8k"
    assert problems[0].meta["reference_steps"] == [
        "Natalia sold 48/2 = 24 clips in May.",
        "Natalia sold 48+24 = 72 clips altogether in April and May.",
        "The answer is 72.",
    ]
    assert problems[1].problem.startswith("Weng earns $12")


def test_hf_source_local_parquet_gsm8k(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "gsm8k_test.parquet"
    pq.write_table(pa.Table.from_pylist(GSM8K_ROWS), path)
    problems = load_problems(ProblemsConfig(source="hf", preset="gsm8k", path=str(path)))
    _check_gsm8k(problems, "gsm8k_test")


def test_hf_source_local_jsonl_gsm8k(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in GSM8K_ROWS))
    problems = load_problems(ProblemsConfig(source="hf", preset="gsm8k", path=str(path)))
    _check_gsm8k(problems, "g")
    assert len(load_problems(ProblemsConfig(source="hf", preset="gsm8k", path=str(path), n=2))) == 2


def test_hf_source_math_preset_and_columns(tmp_path):
    rows = [
        {"problem": "Compute $\\frac{1}{2}+\\frac{1}{4}$.", "solution": "We add: $\\frac{2}{4}+\\frac{1}{4}"
         " = \\boxed{\\frac{3}{4}}$.", "unique_id": "m1"},
        {"problem": "What is $2^{10}$?", "solution": "$2^{10} = 1024$.\n\nSo the answer is $\\boxed{1024}$.",
         "unique_id": "m2"},
    ]
    path = tmp_path / "math.json"
    path.write_text(json.dumps(rows))  # a JSON list, not lines
    problems = load_problems(ProblemsConfig(source="hf", preset="math", path=str(path), columns={"id": "unique_id"}))
    assert [p.id for p in problems] == ["m1", "m2"]
    assert [p.answer for p in problems] == ["\\frac{3}{4}", "1024"]
    assert problems[1].meta["reference_steps"] == ["$2^{10} = 1024$.", "So the answer is $\\boxed{1024}$."]
    assert problems[0].source == "math"

    generic = tmp_path / "generic.csv"
    generic.write_text("q,a\nWhat is 1+1?,2\nWhat is 5+5?,10\n")
    problems = load_problems(ProblemsConfig(source="hf", path=str(generic), columns={"problem": "q", "answer": "a"}))
    assert [(p.problem, p.answer) for p in problems] == [("What is 1+1?", "2"), ("What is 5+5?", "10")]


def test_hf_source_errors(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "no final line"}) + "\n")
    with pytest.raises(InputError, match="no '#### N' final answer"):
        load_problems(ProblemsConfig(source="hf", preset="gsm8k", path=str(path)))
    assert load_problems(ProblemsConfig(source="hf", preset="gsm8k", path=str(path), on_error="skip")) == []
    with pytest.raises(ConfigError, match="no column 'nope' \\(for answer\\)"):
        load_problems(ProblemsConfig(source="hf", preset="gsm8k", path=str(tmp_path / "g.jsonl"),
                                     columns={"problem": "question", "answer": "nope"}))
    with pytest.raises(ConfigError, match="unknown preset"):
        load_problems(ProblemsConfig(source="hf", preset="gsm9k", path=str(path)))
    with pytest.raises(ConfigError, match="unknown key 'text'"):
        load_problems(ProblemsConfig(source="hf", path=str(path), columns={"text": "question"}))
    with pytest.raises(PrmError, match="no such file"):
        load_problems(ProblemsConfig(source="hf", preset="gsm8k", path=str(tmp_path / "missing.parquet")))


def test_hf_hub_id_offline_is_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(PrmError, match="could not load hub dataset 'openai/gsm8k'"):
        load_problems(ProblemsConfig(source="hf", preset="gsm8k", path="openai/gsm8k", subset="main"))


def test_cli_problems_then_validate(tmp_path, capsys):
    out = tmp_path / "problems.jsonl"
    assert main(["data", "problems", "--source", "gsm_symbolic", "-n", "50", "-o", str(out), "--seed", "11"]) == 0
    assert "wrote 50 problem(s)" in capsys.readouterr().out
    assert main(["data", "validate", "--type", "problem", str(out)]) == 0
    assert "all 50 record(s) valid" in capsys.readouterr().out
    records = load_records(out, Problem)
    assert records[0].id == "gsm_symbolic-11-0"
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file


def test_cli_config_file_and_overrides(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("problems:\n  source: gsm_symbolic\n  n: 4\n  seed: 2\n")
    out = tmp_path / "p.jsonl"
    assert main(["data", "problems", "--config", str(config), "-o", str(out), "n=3"]) == 0
    assert [r.id for r in load_records(out, Problem)] == [f"gsm_symbolic-2-{i}" for i in range(3)]
    # flags win over the file
    assert main(["data", "problems", "--config", str(config), "-o", str(out), "--seed", "5"]) == 0
    assert [r.id for r in load_records(out, Problem)][0] == "gsm_symbolic-5-0"


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["data", "problems", "--source", "gsm_symbolic", "-n", "3"]) == 2
    assert "no output file" in capsys.readouterr().err
    assert main(["data", "problems", "--source", "gsm_symbolic", "-o", str(tmp_path / "x.jsonl"), "bogus=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err
    assert main(["data", "problems", "--source", "jsonl", "--path", str(tmp_path / "nope.jsonl"),
                 "-o", str(tmp_path / "x.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_local_jsonl_errors_name_the_file_line(tmp_path):
    path = tmp_path / "gap.jsonl"
    path.write_text('{"question": "q1", "answer": "#### 1"}\n\n\n{"question": "q2"}\n')
    with pytest.raises(InputError, match=r"gap.jsonl:4: data row 2: no column 'answer'"):
        load_problems(ProblemsConfig(source="hf", preset="gsm8k", path=str(path)))


def test_chain_sum_steps_and_testbed_ready(tmp_path):
    from prm.data_synthesis.problems import chain_steps, chain_sum_problems

    from prm.arithmetic import arithmetic_steps, inject_error

    assert chain_steps("4 + 1 + 7 - 3") == ([4, 5, 12, 9], ["4 + 1 = 5", "5 + 7 = 12", "12 - 3 = 9"])
    assert chain_steps("1 - 5 + 9") is None  # a negative running total: the testbed reads unsigned numbers
    problems = chain_sum_problems(30, seed=0, terms=[3, 4], digits=1)
    assert len(problems) == 30 and len({p.id for p in problems}) == 30
    assert chain_sum_problems(5, seed=0, terms=[3, 4], digits=1) == problems[:5]  # the first k whatever n
    for p in problems:
        steps = p.meta["reference_steps"]
        assert p.problem == f"Compute {p.meta['expression']}." and p.source == "chain_sum"
        assert 2 <= len(steps) - 1 <= 3 and steps[-1] == f"The answer is {p.answer}."
        assert steps[-2].endswith(f"= {p.answer}") and eval(p.meta["expression"]) == int(p.answer)
        assert arithmetic_steps(steps) == list(range(len(steps) - 1))  # every operation is checkable
    import random

    wrong = inject_error(problems[0].meta["reference_steps"], 0, random.Random(0))
    assert wrong is not None and wrong[-1] != problems[0].meta["reference_steps"][-1]
    out = tmp_path / "p.jsonl"
    assert main(["data", "problems", "--source", "chain_sum", "-n", "3", "-o", str(out), "chain_terms=[2,2]"]) == 0
    assert all(len(p.meta["reference_steps"]) == 2 for p in load_records(out, Problem))
    with pytest.raises(ConfigError, match="chain_terms"):
        chain_sum_problems(3, seed=0, terms=[4, 3], digits=1)
