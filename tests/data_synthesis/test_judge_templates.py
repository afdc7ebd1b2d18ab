"""Judge templates: the Qwen PRM paper's Appendix C prompt and its parser on hand-written replies, each
template's allowed verdicts, and a judge run with `template=paper` against scripted replies (our own test
double of a model: the point is the parser and the report)."""

from __future__ import annotations

import json

import pytest
from prm.data_synthesis.judge import JudgeConfig, build_judge_prompt, run_judge
from prm.data_synthesis.judge_templates import (
    BAD_CONCLUSION,
    GARBLED_TAGS,
    JUDGE_TEMPLATES,
    NO_ANALYSIS,
    NO_CONCLUSION,
    OUT_OF_RANGE,
    PARSED,
    parse_paper_analysis,
)

from prm.errors import ConfigError
from prm.jsonl import load_records
from prm.records import Solution
from tests.data_synthesis.test_judge import ScriptedJudge, solution, write_solutions


def analyses(k: int, conclusion: str | None) -> str:
    body = "\n\n".join(f"<analysis_{i}>\nParagraph {i} checks out: 2 + 2 = 4.\n</analysis_{i}>" for i in range(1, k + 1))
    return body + ("" if conclusion is None else f"\n\n<conclusion>\n{conclusion}\n</conclusion>")


@pytest.mark.parametrize(
    "reply, expected",
    [
        (analyses(4, "Correct"), (-1, PARSED)),  # every paragraph analysed and correct
        (analyses(1, "Incorrect"), (0, PARSED)),  # error at paragraph 1 -> index 0
        (analyses(4, "Incorrect"), (3, PARSED)),  # error at paragraph n -> index n-1
        (analyses(2, "Incorrect"), (1, PARSED)),
        (analyses(2, "**Incorrect.**") + "\nAnything after the conclusion is ignored <analysis_9>", (1, PARSED)),
        ("<analysis_1>ok</analysis_1><conclusion>correct</conclusion>", (-1, PARSED)),  # Correct governs
        (analyses(3, None), (None, NO_CONCLUSION)),  # stopped before a conclusion
        (analyses(2, None) + "\n<conclusion>\nIncorrect", (None, NO_CONCLUSION)),  # conclusion never closed
        (analyses(2, "Partly right"), (None, BAD_CONCLUSION)),
        (analyses(2, "Correct/Incorrect"), (None, BAD_CONCLUSION)),
        ("<analysis_1>a</analysis_1><analysis_3>b</analysis_3><conclusion>Incorrect</conclusion>", (None, GARBLED_TAGS)),
        ("<analysis_1>a</analysis_2><conclusion>Incorrect</conclusion>", (None, GARBLED_TAGS)),
        ("<analysis_1>a<analysis_2>b</analysis_2><conclusion>Incorrect</conclusion>", (None, GARBLED_TAGS)),
        ("<analysis_2>b</analysis_2><conclusion>Incorrect</conclusion>", (None, GARBLED_TAGS)),
        ("<conclusion>Incorrect <analysis_1>a</analysis_1><conclusion>Incorrect</conclusion>", (None, GARBLED_TAGS)),
        ("<conclusion>\nIncorrect\n</conclusion>", (None, NO_ANALYSIS)),
        (analyses(5, "Incorrect"), (None, OUT_OF_RANGE)),  # 4 paragraphs, analysis_5
    ],
)
def test_paper_parser_on_hand_written_replies(reply, expected):
    assert parse_paper_analysis(reply, 4) == expected


@pytest.mark.parametrize("name", sorted(JUDGE_TEMPLATES))
def test_every_allowed_verdict_parses_to_its_value(name):
    template = JUDGE_TEMPLATES[name]
    assert template.outcomes[0] == PARSED
    for n_steps in (1, 3):
        endings = template.verdicts(n_steps)
        assert sorted(set(endings.values())) == list(range(-1, n_steps))
        for ending, first_error in endings.items():
            # The body a reply writes before its ending: the analyses before the last one (paper), free text otherwise.
            last = first_error + 1 if first_error >= 0 else n_steps
            body = analyses(last - 1, None) + f"\n\n<analysis_{last}>\nchecked\n" if name == "paper" else "reasoning "
            assert template.parse(body + ending, n_steps) == (first_error, PARSED), ending


def test_paper_prompt_is_one_indexed():
    cfg = JudgeConfig(template="paper")
    s = Solution.from_dict(solution(0, ["First step.", "Second {n_steps} step."]))
    (message,) = build_judge_prompt(cfg, s)
    text = message["content"]
    assert "<math_problem>\nProblem number 0?\n</math_problem>" in text
    assert "<paragraph_1>\nFirst step.\n</paragraph_1>\n\n<paragraph_2>\nSecond {n_steps} step.\n</paragraph_2>" in text
    assert "<paragraph_0>" not in text and "<analysis_1>" in text and "Correct/Incorrect" in text
    assert text.endswith("</paragraph_2>")


PAPER_SCRIPT = {
    "Problem number 0?": [analyses(2, "Incorrect")],  # error at paragraph 2 -> 1 (truth 1)
    "Problem number 1?": [analyses(3, "Correct")],  # -1 (truth -1)
    "Problem number 2?": [analyses(1, None)],  # no conclusion
    "Problem number 3?": ["<analysis_1>x</analysis_2>\n<conclusion>Incorrect</conclusion>"],  # garbled
}


def test_judge_run_with_paper_template(tmp_path, capsys):
    records = [solution(0, ["a", "b", "c"], truth=1), solution(1, ["a", "b", "c"], truth=-1),
               solution(2, ["a", "b"], truth=0), solution(3, ["a", "b", "c", "d"], truth=-1)]
    solutions_file = write_solutions(tmp_path / "solutions.jsonl", records)
    out = tmp_path / "judged.jsonl"
    gen = ScriptedJudge(PAPER_SCRIPT)
    report = run_judge(JudgeConfig(input=solutions_file, output=str(out), template="paper"), generator=gen)
    judged = {s.id: s.judge for s in load_records(out, Solution)}
    assert [judged[f"p{i}-s0"].first_error for i in range(4)] == [1, -1, None, None]
    assert judged["p0-s0"].extra == {"reasons": [PARSED], "template": "paper"}
    assert report["votes"] == {PARSED: 2, NO_CONCLUSION: 1, BAD_CONCLUSION: 0, GARBLED_TAGS: 1, NO_ANALYSIS: 0,
                               OUT_OF_RANGE: 0}
    assert report["truth"]["matches"] == 2 and report["unparsed"] == 2
    assert "1 no conclusion, 0 bad conclusion, 1 garbled tags" in capsys.readouterr().out
    assert json.loads((tmp_path / "judged.jsonl.report.json").read_text())["votes"][GARBLED_TAGS] == 1
    assert "<paragraph_1>\na\n</paragraph_1>" in gen.prompts[0][-1]["content"]


def test_unknown_template_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="judge.template must be one of processbench, paper"):
        run_judge(JudgeConfig(input="x.jsonl", output=str(tmp_path / "o.jsonl"), template="lightman"))
