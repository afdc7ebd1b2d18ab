"""Judge prompt templates, each with the parser of its replies: `JUDGE_TEMPLATES[name]` (`judge.template=NAME`).

- `processbench` (the default): steps in `<paragraph_0>`..`<paragraph_{n-1}>` tags, the verdict is the index of
  the earliest wrong paragraph in `\\boxed{}`, `\\boxed{-1}` when all are correct (ProcessBench's protocol).
- `paper`: the LLM-as-a-judge prompt of the Qwen2.5-Math-PRM paper ("The Lessons of Developing Process
  Reward Models in Mathematical Reasoning", arXiv 2501.07301, Appendix C): the problem in `<math_problem>`,
  steps in `<paragraph_1>`..`<paragraph_n>` (1-indexed), an `<analysis_i>` per paragraph up to the first wrong
  one, then `<conclusion>Correct</conclusion>` or `<conclusion>Incorrect</conclusion>`.

Every parser maps (reply, n_steps) to (first error, outcome): the 0-based index of the earliest wrong step, -1
when all are correct, or None with the reason it did not parse. `verdicts(n_steps)` gives the endings a reply
may close with, each mapped to the first error it means, for a decoder that constrains the verdict
(`judge.constrain`): the free reasoning ends at `verdict_stop` (default: the endings' common prefix, `\\boxed{`),
is cut back before the last common prefix it holds (the paper's `</analysis_`), and one ending under which the
whole reply parses is forced (prm.generation.Choices).

ProcessBench parse rules (the prompt states them too), for a solution of n steps:
- exactly one `\\boxed{...}` holding an integer v with -1 <= v < n -> v;
- several boxes that all hold the same value count as that one value;
- no box, a box that is not an integer, an integer outside [-1, n-1], or several boxes with different
  values -> None, with the reason `no_box`, `not_integer`, `out_of_range` or `several_boxes`.

Paper parse rules (text after the first `</conclusion>` is ignored):
- `<conclusion>` ... `</conclusion>` holding Correct or Incorrect (case, `*`, `.` and spaces ignored);
- before it, analyses opened and closed in order `<analysis_1>`..`</analysis_1>`, `<analysis_2>`.. up to k;
- Incorrect -> k - 1 (the last analysed paragraph, 0-based); Correct -> -1;
- otherwise None with the reason `no_conclusion` (none, or never closed), `bad_conclusion` (neither word),
  `garbled_tags` (analyses out of order, unclosed or mismatched), `no_analysis` (Incorrect with no analysis)
  or `out_of_range` (an analysis numbered above n).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from prm.generation import fill_template

PARSED = "parsed"
NO_BOX, NOT_INTEGER, OUT_OF_RANGE, SEVERAL_BOXES = "no_box", "not_integer", "out_of_range", "several_boxes"
NO_CONCLUSION, BAD_CONCLUSION, GARBLED_TAGS, NO_ANALYSIS = "no_conclusion", "bad_conclusion", "garbled_tags", "no_analysis"


@dataclass(frozen=True)
class JudgeTemplate:
    """One judge protocol: the prompt, how its steps are numbered, its parser and its allowed verdicts."""

    prompt: str  # {problem}, {paragraphs}, {last_index} (the last paragraph's number) and {n_steps} are filled in
    first_index: int  # the number of the first paragraph tag (0 or 1)
    parse: Callable[[str, int], tuple[int | None, str]]  # (reply, n_steps) -> (0-based first error | None, outcome)
    outcomes: tuple[str, ...]  # every outcome `parse` can return, PARSED first
    verdicts: Callable[[int], dict[str, int]]  # n_steps -> {reply ending: the 0-based first error it means}
    # judge.constrain: free reasoning ends where the model writes this ("" = the verdicts' common prefix)
    verdict_stop: str = ""

    def paragraphs(self, steps: list[str]) -> str:
        return "\n\n".join(f"<paragraph_{i}>\n{step}\n</paragraph_{i}>" for i, step in enumerate(steps, self.first_index))

    def build(self, problem: str, steps: list[str], prompt: str = "") -> str:
        """The prompt text for one solution (`prompt` replaces the template's own text when given)."""
        return fill_template(prompt or self.prompt, {
            "problem": problem, "paragraphs": self.paragraphs(steps),
            "last_index": len(steps) - 1 + self.first_index, "n_steps": len(steps),
        })


# ----------------------------------------------------------------------------------------------------
# ProcessBench

PROCESSBENCH_PROMPT = """\
Below are a math problem and a proposed solution split into paragraphs. The paragraphs are numbered from 0 \
and each is enclosed in tags: <paragraph_0>...</paragraph_0>, <paragraph_1>...</paragraph_1>, and so on.

Check the paragraphs in order. A paragraph is wrong if it contains a calculation error, a false statement, \
a misreading of the problem, or a step that does not follow from what came before it. Find the earliest \
wrong paragraph.

[Problem]
{problem}

[Solution]
{paragraphs}

Reason briefly, then give your verdict as one integer inside \\boxed{}: the index of the earliest wrong \
paragraph (0 to {last_index}), or \\boxed{-1} if every paragraph is correct. Write \\boxed{} exactly once. \
A reply with no box, with anything but an integer in the box, with an index outside -1 to {last_index}, \
or with several boxes that disagree is discarded."""

_BOXED = re.compile(r"\\boxed\s*\{")
_INTEGER = re.compile(r"^[+-]?\d+$")
_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|mathbf)\s*\{(.*)\}$", re.DOTALL)


def boxed_contents(text: str) -> list[str]:
    """The contents of every `\\boxed{...}` (balanced braces); an unclosed box at the end is ignored."""
    contents = []
    for match in _BOXED.finditer(text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            contents.append(text[match.end() : i - 1])
    return contents


def _normalize(content: str) -> str:
    """'  2 ' -> '2', '$-1$' -> '-1', '\\text{3}' -> '3', '- 1' -> '-1'."""
    value = content.strip().strip("$").strip()
    wrapped = _WRAPPER.match(value)
    if wrapped:
        value = wrapped.group(1).strip()
    return re.sub(r"\s+", "", value)


def parse_boxed_index(text: str, n_steps: int) -> tuple[int | None, str]:
    """ProcessBench: (first_error or None, outcome) by the rules in the module docstring."""
    boxes = [_normalize(c) for c in boxed_contents(text)]
    if not boxes:
        return None, NO_BOX
    if len(set(boxes)) > 1:
        return None, SEVERAL_BOXES
    if not _INTEGER.match(boxes[0]):
        return None, NOT_INTEGER
    value = int(boxes[0])
    if not -1 <= value < n_steps:
        return None, OUT_OF_RANGE
    return value, PARSED


def boxed_verdicts(n_steps: int) -> dict[str, int]:
    return {f"\\boxed{{{v}}}": v for v in range(-1, n_steps)}


# ----------------------------------------------------------------------------------------------------
# The paper's Appendix C

PAPER_PROMPT = """\
I will provide a math problem along with a solution. They will be formatted as follows:

[Math Problem]

<math_problem>
...(math problem)...
</math_problem>

[Solution]

<paragraph_1>
...(paragraph 1 of solution)...
</paragraph_1>

...

<paragraph_n>
...(paragraph n of solution)...
</paragraph_n>

Your task is to review each paragraph of the solution in sequence, analyzing, verifying, and critiquing the \
reasoning in detail. You need to provide the analyses and the conclusion in the following format:

<analysis_1>
...(analysis of paragraph 1)...
</analysis_1>

...

<analysis_n>
...(analysis of paragraph n)...
</analysis_n>

<conclusion>
Correct/Incorrect
</conclusion>

* When you analyze each paragraph, you should use proper verification, recalculation, or reflection to \
indicate whether it is logically and mathematically valid. Please elaborate on the analysis process carefully.

* If an error is detected in any paragraph, you should describe the nature and cause of the error in detail, \
and suggest how to correct the error or the correct approach. Once a paragraph is found to contain any error, \
stop further analysis of subsequent paragraphs (as they may depend on the identified error) and directly \
provide the conclusion of "Incorrect."

For instance, given a solution of five paragraphs, if an error is found in the third paragraph, you should \
reply in the following format:

<analysis_1>
...(analysis of paragraph 1)...
</analysis_1>

<analysis_2>
...(analysis of paragraph 2)...
</analysis_2>

<analysis_3>
...(analysis of paragraph 3; since an error is found here, also provide detailed critique and correction \
guideline)...
</analysis_3>

<conclusion>
Incorrect
</conclusion>

Note that the analyses of paragraphs 4 and 5 should be skipped as the paragraph 3 has been found to contain \
an error.

* Respond with your analyses and conclusion directly.

--------------------------------------------------

The following is the math problem and the solution for your task:

[Math Problem]

<math_problem>
{problem}
</math_problem>

[Solution]

{paragraphs}"""

_ANALYSIS_TAG = re.compile(r"<\s*(/?)\s*analysis_(\d+)\s*>")
_CONCLUSION = re.compile(r"<\s*conclusion\s*>(.*?)<\s*/\s*conclusion\s*>", re.DOTALL)
_CONCLUSION_OPEN = re.compile(r"<\s*conclusion\s*>")
_ANY_TAG = re.compile(r"<\s*/?\s*(?:analysis_\d+|conclusion|paragraph_\d+)\s*>")


def parse_paper_analysis(text: str, n_steps: int) -> tuple[int | None, str]:
    """The paper's template: (first_error or None, outcome) by the rules in the module docstring."""
    conclusion = _CONCLUSION.search(text)
    if conclusion is None:
        return None, NO_CONCLUSION
    before = text[: conclusion.start()]
    if _CONCLUSION_OPEN.search(before) or _ANY_TAG.search(conclusion.group(1)):  # tags nested or left open
        return None, GARBLED_TAGS
    word = re.sub(r"[\s*.]", "", conclusion.group(1)).lower()
    if word not in ("correct", "incorrect"):
        return None, BAD_CONCLUSION
    tags = [(m.group(1) == "/", int(m.group(2))) for m in _ANALYSIS_TAG.finditer(before)]
    expected = [(closing, k) for k in range(1, len(tags) // 2 + 1) for closing in (False, True)]
    if tags != expected:
        return None, GARBLED_TAGS
    analysed = len(tags) // 2
    if analysed > n_steps:
        return None, OUT_OF_RANGE
    if word == "correct":
        return -1, PARSED
    if analysed == 0:
        return None, NO_ANALYSIS
    return analysed - 1, PARSED


def paper_verdicts(n_steps: int) -> dict[str, int]:
    """The last analysis closed, then the conclusion: Incorrect after paragraph k means first error k - 1;
    Correct comes after the last paragraph's analysis."""
    endings = {f"</analysis_{k}>\n\n<conclusion>\nIncorrect\n</conclusion>": k - 1 for k in range(1, n_steps + 1)}
    endings[f"</analysis_{n_steps}>\n\n<conclusion>\nCorrect\n</conclusion>"] = -1
    return endings


JUDGE_TEMPLATES: dict[str, JudgeTemplate] = {
    "processbench": JudgeTemplate(
        prompt=PROCESSBENCH_PROMPT, first_index=0, parse=parse_boxed_index,
        outcomes=(PARSED, NO_BOX, NOT_INTEGER, OUT_OF_RANGE, SEVERAL_BOXES), verdicts=boxed_verdicts),
    "paper": JudgeTemplate(
        prompt=PAPER_PROMPT, first_index=1, parse=parse_paper_analysis,
        outcomes=(PARSED, NO_CONCLUSION, BAD_CONCLUSION, GARBLED_TAGS, NO_ANALYSIS, OUT_OF_RANGE),
        verdicts=paper_verdicts, verdict_stop="<conclusion>"),
}
