"""`prm sample`: problems -> graded Solution records, end to end with a tiny random model (ids, validity,
resume, shards) and with a scripted policy (our own test double of a model's answers) for grading and
blank generations."""

from __future__ import annotations

import json

import pytest
from prm.data_synthesis.sample import SampleConfig, build_prompt, run_sample

from prm.app.cli import main
from prm.errors import ConfigError
from prm.generation import Completion
from prm.jsonl import load_records
from prm.records import Problem, Solution


def write_problems(path, problems) -> str:
    path.write_text("".join(json.dumps(p) + "\n" for p in problems), encoding="utf-8")
    return str(path)


PROBLEMS = [
    {"id": "p0", "problem": "What is 2 + 2?", "answer": "4", "source": "test"},
    {"id": "p1", "problem": "Tom has 3 apples and buys 5 more. How many apples does he have?", "answer": "8",
     "source": "test"},
]


@pytest.fixture()
def problems_file(tmp_path):
    return write_problems(tmp_path / "problems.jsonl", PROBLEMS)


def test_sample_end_to_end_with_tiny_model_and_resume(tmp_path, tiny_model_dir, problems_file, capsys):
    out = tmp_path / "solutions.jsonl"
    args = ["sample", "-i", problems_file, "-o", str(out), f"generator.model={tiny_model_dir}",
            "generator.device=cpu", "n=2", "max_new_tokens=12", "batch_problems=1"]
    assert main(args) == 0
    solutions = load_records(out, Solution)  # every line is a valid Solution
    assert [s.id for s in solutions] == ["p0-s0", "p0-s1", "p1-s0", "p1-s1"]
    for s in solutions:
        assert s.problem_id == s.id.split("-s")[0] and s.generator == tiny_model_dir
        assert s.steps and all(step.strip() == step and step for step in s.steps)
        assert s.answer == {"p0": "4", "p1": "8"}[s.problem_id]
        assert isinstance(s.correct, bool)
        assert 1 <= s.extra["tokens"] <= 12 and s.extra["finish_reason"] in {"stop", "length"}
    assert "sample: 4 solutions written for 2 problems" in capsys.readouterr().out

    # Resume after losing the last line: only that solution is written again, identical (same seed).
    full = out.read_text(encoding="utf-8")
    lines = full.splitlines(keepends=True)
    out.write_text("".join(lines[:-1]), encoding="utf-8")
    cfg = SampleConfig(input=problems_file, output=str(out), n=2, max_new_tokens=12)
    cfg.generator.model, cfg.generator.device = tiny_model_dir, "cpu"
    stats = run_sample(cfg)
    assert stats["written"] == 1 and stats["already_done"] == 1
    assert out.read_text(encoding="utf-8") == full
    # Nothing left: no model is loaded, nothing is written.
    stats = run_sample(cfg, generator=None)
    assert stats["written"] == 0 and stats["already_done"] == 2 and out.read_text(encoding="utf-8") == full


def test_sample_shards_split_by_problem(tmp_path, tiny_model_dir):
    problems = write_problems(tmp_path / "problems.jsonl",
                              [{"id": f"q{i}", "problem": f"{i} + 1 = ?", "answer": str(i + 1), "source": "t"}
                               for i in range(6)])
    cfg = SampleConfig(input=problems, output=str(tmp_path / "out.jsonl"), n=1, max_new_tokens=4)
    cfg.generator.model, cfg.generator.device = tiny_model_dir, "cpu"
    ids = []
    for i in range(2):
        stats = run_sample(cfg, shard=(i, 2))
        assert stats["output"].endswith(f"out.shard-{i:05d}-of-00002.jsonl")
        shard_ids = [s.id for s in load_records(stats["output"], Solution)]
        ids += shard_ids
    assert sorted(ids) == [f"q{i}-s0" for i in range(6)]
    assert not (tmp_path / "out.jsonl").exists()


class ScriptedPolicy:
    """A Generator that answers each problem with scripted solutions (our test double of a policy)."""

    name = "scripted-policy"

    def __init__(self, script: dict[str, list[str]]):
        self.script = script
        self.prompts: list = []

    def generate(self, prompts, sampling):
        out = []
        for prompt in prompts:
            self.prompts.append(prompt)
            text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
            (key,) = [k for k in self.script if k in text]
            out.append([Completion(t, max(1, len(t.split())), "stop") for t in self.script[key][: sampling.n]])
        return out


SCRIPT = {
    "What is 2 + 2?": [
        "First, 2 + 2 = 4.\n\nSo the answer is \\boxed{4}.",
        "2 + 2 = 5\nThe answer is \\boxed{5}",
        "   \n  ",  # blank: not a valid solution
    ],
    "Tom has 3 apples": [
        "Step 1: Tom starts with 3 apples.\nStep 2: He buys 5 more, 3 + 5 = 8.\nStep 3: \\boxed{8}",
        "He has 3 + 5 = 8 apples.\n\n\\boxed{8.0}",
        "No idea.",
    ],
}


def test_sample_grades_and_skips_blank_generations(tmp_path, problems_file, capsys):
    out = tmp_path / "solutions.jsonl"
    policy = ScriptedPolicy(SCRIPT)
    cfg = SampleConfig(input=problems_file, output=str(out), n=3)
    stats = run_sample(cfg, generator=policy)
    solutions = {s.id: s for s in load_records(out, Solution)}
    assert sorted(solutions) == ["p0-s0", "p0-s1", "p1-s0", "p1-s1", "p1-s2"]
    assert solutions["p0-s0"].steps == ["First, 2 + 2 = 4.", "So the answer is \\boxed{4}."]
    assert (solutions["p0-s0"].final_answer, solutions["p0-s0"].correct) == ("4", True)
    assert solutions["p0-s1"].steps == ["2 + 2 = 5", "The answer is \\boxed{5}"]
    assert (solutions["p0-s1"].final_answer, solutions["p0-s1"].correct) == ("5", False)
    assert len(solutions["p1-s0"].steps) == 3 and solutions["p1-s0"].correct is True
    assert solutions["p1-s1"].correct is True  # 8.0 == 8
    assert solutions["p1-s2"].correct is False and solutions["p1-s2"].generator == "scripted-policy"
    assert stats["written"] == 5 and stats["skipped_blank"] == 1 and stats["correct"] == 3
    skipped = [json.loads(line) for line in (tmp_path / "solutions.jsonl.skipped.jsonl").read_text().splitlines()]
    assert [(s["id"], s["reason"]) for s in skipped] == [("p0-s2", "blank generation")]
    printed = capsys.readouterr().out
    assert "5 solutions written for 2 problems" in printed and "1 blank skipped" in printed
    assert "60.0% correct" in printed

    # The prompt: system message, then the user template with the problem and the \boxed{} instruction.
    system, user = policy.prompts[0]
    assert system["role"] == "system" and user["role"] == "user"
    assert user["content"].endswith("Problem: What is 2 + 2?") and "\\boxed{}" in user["content"]

    # A rerun does not sample again: the blank one is remembered as skipped.
    again = ScriptedPolicy(SCRIPT)
    stats = run_sample(cfg, generator=again)
    assert again.prompts == [] and stats["already_done"] == 2 and stats["written"] == 0


def test_text_prompt_style():
    cfg = SampleConfig(prompt_style="text", system_prompt="Be brief.", user_template="Q: {problem}\nA:")
    problem = Problem.from_dict(PROBLEMS[0])
    assert build_prompt(cfg, problem) == "Be brief.\n\nQ: What is 2 + 2?\nA:\n"


def test_sample_bad_input_and_config_exit_2(tmp_path, problems_file, capsys):
    out = tmp_path / "solutions.jsonl"
    bad = write_problems(tmp_path / "bad.jsonl", [PROBLEMS[0], {"id": "x", "problem": "?", "source": "t"}])
    assert main(["sample", "-i", bad, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "answer" in err and len(err.strip().splitlines()) == 1
    dup = write_problems(tmp_path / "dup.jsonl", [PROBLEMS[0], PROBLEMS[0]])
    assert main(["sample", "-i", dup, "-o", str(out)]) == 2
    assert "dup.jsonl:2: field 'id': duplicate id 'p0' (first on line 1)" in capsys.readouterr().err
    assert main(["sample", "-i", problems_file, "-o", str(out), "n=0"]) == 2
    assert main(["sample", "-i", problems_file, "-o", str(out), "temperature=-1"]) == 2
    assert main(["sample", "-i", problems_file, "-o", str(out), "nope=1"]) == 2
    assert main(["sample", "-o", str(out)]) == 2
    assert main(["sample", "-i", problems_file, "-o", str(out), "answer_methods=[nope]"]) == 2
    assert "unknown answer extraction method" in capsys.readouterr().err
    assert main(["sample", "-i", problems_file, "-o", str(out), "--shard", "3/2"]) == 2
    assert not out.exists()
    with pytest.raises(ConfigError, match="problem"):
        run_sample(SampleConfig(input=problems_file, output=str(out), user_template="no field"))


def test_few_shot_examples_are_earlier_turns():
    examples = [{"problem": "Compute 7 + 8 - 6.", "solution": "7 + 8 = 15\n15 - 6 = 9\nThe answer is 9."}]
    cfg = SampleConfig(system_prompt="Be brief.", user_template="{problem} One operation a line.", few_shot=examples)
    problem = Problem(id="p", problem="Compute 1 + 2 + 3.", answer="6", source="x")
    assert build_prompt(cfg, problem) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Compute 7 + 8 - 6. One operation a line."},
        {"role": "assistant", "content": examples[0]["solution"]},
        {"role": "user", "content": "Compute 1 + 2 + 3. One operation a line."}]
    text = build_prompt(SampleConfig(system_prompt="", user_template="{problem}", few_shot=examples,
                                     prompt_style="text"), problem)
    assert text == f"Compute 7 + 8 - 6.\n\n{examples[0]['solution']}\n\nCompute 1 + 2 + 3.\n"
    with pytest.raises(ConfigError, match=r"sample.few_shot\[0\]"):
        SampleConfig(few_shot=[{"problem": "x"}])
