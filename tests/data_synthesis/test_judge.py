"""`prm annotate judge`: the parse rules and majority vote against a scripted judge (our own test double of a
model's replies: the point here is parsing), then end to end with a tiny random model."""

from __future__ import annotations

import json

import pytest
from prm.data_synthesis.judge import JudgeConfig, build_judge_prompt, majority_vote, run_judge
from prm.data_synthesis.judge_templates import (
    NO_BOX,
    NOT_INTEGER,
    OUT_OF_RANGE,
    PARSED,
    SEVERAL_BOXES,
    boxed_contents,
    parse_boxed_index,
)

from prm.app.cli import main
from prm.errors import ConfigError
from prm.generation import Completion, SamplingConfig
from prm.jsonl import load_records
from prm.records import Solution


@pytest.mark.parametrize(
    "reply, n_steps, expected",
    [
        ("The second paragraph is wrong. \\boxed{1}", 3, (1, PARSED)),
        ("All fine: \\boxed{-1}", 3, (-1, PARSED)),
        ("\\boxed{ 2 }", 3, (2, PARSED)),
        ("$\\boxed{\\text{0}}$", 3, (0, PARSED)),
        ("\\boxed{- 1}", 3, (-1, PARSED)),
        ("Paragraph 1 is wrong: \\boxed{1}. Final: \\boxed{1}", 3, (1, PARSED)),  # boxes that agree
        ("I think paragraph 1 is wrong.", 3, (None, NO_BOX)),
        ("\\boxed{2", 3, (None, NO_BOX)),  # never closed
        ("", 3, (None, NO_BOX)),
        ("\\boxed{paragraph 1}", 3, (None, NOT_INTEGER)),
        ("\\boxed{1.5}", 3, (None, NOT_INTEGER)),
        ("\\boxed{}", 3, (None, NOT_INTEGER)),
        ("\\boxed{3}", 3, (None, OUT_OF_RANGE)),  # n_steps 3: valid indices are -1..2
        ("\\boxed{-2}", 3, (None, OUT_OF_RANGE)),
        ("\\boxed{1} or maybe \\boxed{2}", 3, (None, SEVERAL_BOXES)),
        ("\\boxed{1} ... \\boxed{x}", 3, (None, SEVERAL_BOXES)),
    ],
)
def test_parse_rules(reply, n_steps, expected):
    assert parse_boxed_index(reply, n_steps) == expected


def test_boxed_contents_balanced_braces():
    assert boxed_contents("a \\boxed{\\frac{1}{2}} b \\boxed {3}") == ["\\frac{1}{2}", "3"]


@pytest.mark.parametrize(
    "votes, expected",
    [
        ([1, 1, 2], 1),
        ([2, 1], 1),  # tie: the earliest step
        ([3, -1], 3),  # tie between a step and "all correct": the flagged step
        ([-1, -1, 3], -1),  # a real majority for "all correct"
        ([None, 2, None], 2),
        ([None, None], None),
        ([], None),
        ([0, 2, 2, 0, -1], 0),
    ],
)
def test_majority_vote(votes, expected):
    assert majority_vote(votes) == expected


# ------------------------------------------------------------------------------------------ scripted judge


class ScriptedJudge:
    """A Generator that answers each solution's prompt with replies scripted per problem text."""

    name = "scripted-judge"

    def __init__(self, script: dict[str, list[str]]):
        self.script = script
        self.prompts: list = []
        self.samplings: list[SamplingConfig] = []

    def generate(self, prompts, sampling):
        self.samplings.append(sampling)
        out = []
        for prompt in prompts:
            self.prompts.append(prompt)
            text = prompt[-1]["content"]
            (key,) = [k for k in self.script if f"[Problem]\n{k}\n" in text or f"<math_problem>\n{k}\n" in text]
            out.append([Completion(r, len(r.split()), "stop") for r in self.script[key][: sampling.n]])
        return out


def solution(i: int, steps: list[str], truth: int | None = None, **extra) -> dict:
    record = {"id": f"p{i}-s0", "problem_id": f"p{i}", "problem": f"Problem number {i}?", "answer": "4",
              "steps": steps, "final_answer": "4", "correct": True, "generator": "policy", **extra}
    if truth is not None:
        record["true_first_error"] = truth
    return record


SCRIPT = {
    "Problem number 0?": ["\\boxed{1}", "\\boxed{1}", "\\boxed{0}"],  # majority 1 (truth 1)
    "Problem number 1?": ["\\boxed{-1}", "no idea", "\\boxed{2}"],  # tie -1 vs 2 -> 2 (truth -1)
    "Problem number 2?": ["\\boxed{7}", "\\boxed{1} \\boxed{0}", "\\boxed{x}"],  # nothing parses
    "Problem number 3?": ["\\boxed{-1}", "\\boxed{-1}", "\\boxed{0}"],  # -1 (truth -1)
}


def write_solutions(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


@pytest.fixture()
def solutions_file(tmp_path):
    mc = {"values": [1.0, 0.5, 0.0], "first_error": 1, "rollouts": 8, "tokens": 100}
    records = [
        solution(0, ["a", "b", "c"], truth=1, mc=mc, note="kept"),
        solution(1, ["a", "b", "c"], truth=-1),
        solution(2, ["a", "b"], truth=0),
        solution(3, ["a", "b", "c", "d"], truth=-1),
    ]
    return write_solutions(tmp_path / "solutions.jsonl", records)


def test_judge_with_scripted_generator(tmp_path, solutions_file):
    out = tmp_path / "judged.jsonl"
    gen = ScriptedJudge(SCRIPT)
    cfg = JudgeConfig(input=solutions_file, output=str(out), votes=3, temperature=0.7, batch_solutions=3)
    report = run_judge(cfg, generator=gen)
    assert all(s.n == 3 and s.temperature == 0.7 for s in gen.samplings)
    judged = {s.id: s for s in load_records(out, Solution)}
    assert len(judged) == 4

    j0 = judged["p0-s0"].judge
    assert (j0.first_error, j0.votes, j0.parsed) == (1, [1, 1, 0], True)
    assert j0.raw == SCRIPT["Problem number 0?"]
    assert j0.extra["reasons"] == [PARSED] * 3
    # The other annotations and unknown fields survive.
    assert judged["p0-s0"].mc is not None and judged["p0-s0"].mc.first_error == 1
    assert judged["p0-s0"].extra["note"] == "kept" and judged["p0-s0"].extra["true_first_error"] == 1

    j1 = judged["p1-s0"].judge
    assert (j1.first_error, j1.votes, j1.parsed) == (2, [-1, None, 2], True)
    assert j1.extra["reasons"] == [PARSED, NO_BOX, PARSED]
    j2 = judged["p2-s0"].judge
    assert (j2.first_error, j2.votes, j2.parsed) == (None, [None, None, None], False)
    assert j2.extra["reasons"] == [OUT_OF_RANGE, SEVERAL_BOXES, NOT_INTEGER]
    assert judged["p3-s0"].judge.first_error == -1

    assert report["solutions"] == 4 and report["parsed"] == 3 and report["unparsed"] == 1
    assert report["votes"] == {PARSED: 8, NO_BOX: 1, NOT_INTEGER: 1, OUT_OF_RANGE: 1, SEVERAL_BOXES: 1}
    truth = report["truth"]
    assert truth["known"] == 4 and truth["matches"] == 2 and truth["accuracy"] == 0.5
    assert truth["accuracy_over_parsed"] == pytest.approx(2 / 3)
    assert truth["accuracy_on_erroneous"] == 0.5 and truth["accuracy_on_correct"] == 0.5
    assert truth["processbench_f1"] == pytest.approx(0.5)
    saved = json.loads((tmp_path / "judged.jsonl.report.json").read_text())
    assert saved["truth"]["matches"] == 2

    # Resume: nothing left to judge, the report still covers the whole file.
    again = run_judge(cfg, generator=ScriptedJudge(SCRIPT))
    assert again["written"] == 0 and again["already_done"] == 4 and again["truth"]["matches"] == 2

    # The prompt: indexed paragraphs, the problem, the rule for the verdict.
    text = gen.prompts[0][-1]["content"]
    assert "<paragraph_0>\na\n</paragraph_0>" in text and "<paragraph_2>\nc\n</paragraph_2>" in text
    assert "(0 to 2)" in text and "\\boxed{-1}" in text and "Problem number 0?" in text


def test_judge_resume_after_lost_line_and_shards(tmp_path, solutions_file):
    out = tmp_path / "judged.jsonl"
    cfg = JudgeConfig(input=solutions_file, output=str(out), votes=3, temperature=0.7)
    run_judge(cfg, generator=ScriptedJudge(SCRIPT))
    full = out.read_text().splitlines(keepends=True)
    out.write_text("".join(full[:-1]) + full[-1][:20])  # lost the last line mid-write
    gen = ScriptedJudge(SCRIPT)
    report = run_judge(cfg, generator=gen)
    assert report["written"] == 1 and len(gen.prompts) == 1
    assert out.read_text().splitlines(keepends=True) == full

    ids = []
    for i in range(2):
        run_judge(cfg, shard=(i, 2), generator=ScriptedJudge(SCRIPT))
        ids += [s.id for s in load_records(tmp_path / f"judged.shard-{i:05d}-of-00002.jsonl", Solution)]
    assert sorted(ids) == ["p0-s0", "p1-s0", "p2-s0", "p3-s0"]


def test_judge_config_checks(tmp_path, solutions_file):
    with pytest.raises(ConfigError, match="temperature"):
        run_judge(JudgeConfig(input=solutions_file, output=str(tmp_path / "o.jsonl"), votes=3))
    with pytest.raises(ConfigError, match="paragraphs"):
        run_judge(JudgeConfig(input=solutions_file, output=str(tmp_path / "o.jsonl"), prompt="{problem}"))
    assert not (tmp_path / "o.jsonl").exists()


def test_judge_template_keeps_braces_in_text():
    cfg = JudgeConfig(prompt="P: {problem}\n{paragraphs}\nlast={last_index} n={n_steps} \\boxed{}")
    s = Solution.from_dict(solution(0, ["x = {paragraphs}", "y"]))
    s.problem = "Find {n_steps} in \\boxed{}"
    (message,) = build_judge_prompt(cfg, s)
    assert message["content"] == (
        "P: Find {n_steps} in \\boxed{}\n<paragraph_0>\nx = {paragraphs}\n</paragraph_0>\n\n"
        "<paragraph_1>\ny\n</paragraph_1>\nlast=1 n=2 \\boxed{}"
    )


# ------------------------------------------------------------------------------------------- tiny model


def test_judge_end_to_end_with_tiny_model(tmp_path, tiny_model_dir, solutions_file, capsys):
    out = tmp_path / "judged.jsonl"
    code = main(["annotate", "judge", "-i", solutions_file, "-o", str(out), f"generator.model={tiny_model_dir}",
                 "generator.device=cpu", "votes=2", "temperature=1.0", "max_new_tokens=8"])
    assert code == 0
    judged = load_records(out, Solution)
    assert [s.id for s in judged] == ["p0-s0", "p1-s0", "p2-s0", "p3-s0"]
    # A random model writes no verdict: every reply is kept raw and recorded as unparsed, and counted.
    for s in judged:
        assert s.judge is not None and len(s.judge.raw) == 2 and all(isinstance(r, str) for r in s.judge.raw)
        assert s.judge.parsed is False and s.judge.first_error is None and s.judge.votes == [None, None]
        assert s.judge.extra["reasons"] == [NO_BOX, NO_BOX]
    report = json.loads((tmp_path / "judged.jsonl.report.json").read_text())
    assert report["unparsed"] == 4 and report["parsed"] == 0 and report["votes"][NO_BOX] == 8
    assert report["truth"]["known"] == 4 and report["truth"]["accuracy"] == 0.0
    printed = capsys.readouterr().out
    assert "4 unparsed" in printed and "8 no box" in printed


def test_judge_cli_bad_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(solution(0, ["a"])) + "\n" + json.dumps(solution(1, [])) + "\n")
    out = tmp_path / "judged.jsonl"
    assert main(["annotate", "judge", "-i", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.jsonl:2" in err and "steps" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert main(["annotate", "judge", "-i", str(bad), "-o", str(out), "votes=zero"]) == 2
