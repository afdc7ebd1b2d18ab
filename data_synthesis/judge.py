"""`prm annotate judge`: an LLM judge names the earliest wrong step of each solution.

    prm annotate judge --config configs/FILE.yaml -i solutions.jsonl -o judged.jsonl [--shard I/N] [key=value ...]
    prm annotate judge -i solutions.jsonl -o judged.jsonl generator.model=Qwen/Qwen2.5-7B-Instruct votes=5 temperature=0.7
    prm annotate judge -i solutions.jsonl -o judged.jsonl template=paper     # the Qwen PRM paper's Appendix C prompt
    prm annotate judge -i testbed.jsonl -o judged.jsonl backend=simulated simulated.accuracy_erroneous=0.7
    prm annotate judge -i solutions.jsonl -o judged.jsonl generator.backend=openai \\
        generator.base_url=http://judge-host:8000/v1 generator.model=Qwen/Qwen2.5-72B-Instruct

`template` picks the protocol (`data_synthesis/judge_templates.py`, with each one's parse rules):
`processbench` (the default) shows the steps in `<paragraph_0>`.. tags and asks for the index of the earliest
wrong paragraph in `\\boxed{}` (`\\boxed{-1}` if all are correct); `paper` is the Qwen2.5-Math-PRM paper's
prompt (1-indexed `<paragraph_i>`, an `<analysis_i>` per paragraph up to the first wrong one, a
Correct/Incorrect `<conclusion>`). `prompt=...` replaces the template's text and keeps its parser.

With `votes` = m > 1 samples per solution: `first_error` = the most common parsed vote; a tie goes to the
earliest step index, and a tie between a step index and -1 goes to the step (a flagged error outweighs an
equal number of "all correct" votes); None when no vote parsed. `parsed` = at least one vote parsed.

Each output record is the input Solution with `judge: {first_error, votes, parsed, raw, reasons, template}`
added (`raw` = the m raw outputs, `reasons` = each vote's parse outcome); every other field is kept. The report
(printed and written to `<output>.report.json`, over the whole output file, so a resumed run reports on
everything) counts votes by parse outcome and, where the truth is known (`true_first_error`, as the
synthetic testbed writes it), gives the judge's first-error accuracy and ProcessBench's F1.
Sharding is by solution id; rerunning the same command resumes (judged ids are skipped).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prm.data_synthesis.judge_templates import JUDGE_TEMPLATES, JudgeTemplate
from prm.data_synthesis.simulated_judge import SimulatedJudge, SimulatedJudgeConfig

from prm.config import option
from prm.errors import ConfigError
from prm.generation import (
    Choices,
    Generator,
    GeneratorConfig,
    Prompt,
    SamplingConfig,
    check_sampling,
    make_generator,
)
from prm.records import JudgeAnnotation, Solution
from prm.stage import config_command


@dataclass
class JudgeConfig:
    """Section `judge:` of a config file."""

    generator: GeneratorConfig = option(default_factory=GeneratorConfig, help="the judge model and its backend")
    backend: Literal["generator", "simulated"] = option(
        "generator", help="generator: the model in `generator.*`; simulated: the testbed's judge of known accuracy")
    simulated: SimulatedJudgeConfig = option(default_factory=SimulatedJudgeConfig,
                                             help="the simulated judge (data_synthesis/simulated_judge.py)")
    votes: int = option(1, help="judge samples per solution (majority vote); > 1 needs temperature > 0")
    max_new_tokens: int = option(1024, help="longest judge reply, in tokens")
    temperature: float = option(0.0, help="sampling temperature (0 = greedy)")
    top_p: float = option(1.0, help="nucleus sampling threshold")
    seed: int = option(0, help="sampling seed")
    system_prompt: str = option("", help="system message (chat style); empty = none")
    template: str = option("processbench", help=f"judge protocol: {' | '.join(JUDGE_TEMPLATES)} (prompt and parser)")
    prompt: str = option(
        "", help="prompt text replacing the template's own; {problem}, {paragraphs}, {last_index} (the last "
                 "paragraph's number) and {n_steps} are filled in")
    prompt_style: Literal["chat", "text"] = option("chat", help="chat (chat template) or text (plain prompt)")
    constrain: bool = option(
        False, help="force the reply to end in a valid verdict of the template (-1 or a step index): free "
                    "reasoning, then the verdict picked among the allowed ones (transformers: by likelihood; vllm: "
                    "structured-output choice; openai: the server's structured-output fields)")
    reasoning: bool = option(
        True, help="with constrain: free reasoning (up to max_new_tokens) before the forced verdict; false: the "
                   "reply is the verdict alone")
    batch_solutions: int = option(16, help="solutions per generation call; output is written after each")
    input: str | None = option(None, help="Solution records (JSONL)")
    output: str | None = option(None, help="the same records with `judge` added (JSONL)")

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(n=self.votes, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                              top_p=self.top_p, seed=self.seed)

    def __post_init__(self) -> None:  # value checks run wherever the section is built (see prm.stage)
        if self.votes < 1:
            raise ConfigError(f"judge.votes must be at least 1, got {self.votes}")
        if self.votes > 1 and self.temperature == 0:
            raise ConfigError("judge.votes > 1 with temperature=0 gives identical votes: set temperature > 0")
        if self.batch_solutions < 1:
            raise ConfigError(f"judge.batch_solutions must be at least 1, got {self.batch_solutions}")
        if self.template not in JUDGE_TEMPLATES:
            raise ConfigError(f"judge.template must be one of {', '.join(JUDGE_TEMPLATES)}, got {self.template!r}")
        for key in ("{problem}", "{paragraphs}"):
            if self.prompt and key not in self.prompt:
                raise ConfigError(f"judge.prompt must contain {key}")

    def check(self) -> None:
        """Before judging: the files, which `-i` / `-o` may give after the section is loaded."""
        if not self.input:
            raise ConfigError("judge: no input file (give -i solutions.jsonl or input=...)")
        if not self.output:
            raise ConfigError("judge: no output file (give -o judged.jsonl or output=...)")


# ----------------------------------------------------------------------------------------------------
# Prompt and parsing


def judge_template(cfg: JudgeConfig) -> JudgeTemplate:
    return JUDGE_TEMPLATES[cfg.template]


def build_judge_prompt(cfg: JudgeConfig, solution: Solution) -> Prompt:
    text = judge_template(cfg).build(solution.problem, solution.steps, cfg.prompt)
    if cfg.prompt_style == "text":
        return f"{cfg.system_prompt}\n\n{text}\n" if cfg.system_prompt else f"{text}\n"
    messages = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    return [*messages, {"role": "user", "content": text}]


def verdict_choices(cfg: JudgeConfig, solutions: list[Solution]) -> Choices:
    """The allowed verdict endings of each solution under the template (`judge.constrain`); an ending is
    offered only where the whole reply then parses."""
    template = judge_template(cfg)
    n_steps = [len(s.steps) for s in solutions]
    return Choices(
        options=[list(template.verdicts(n)) for n in n_steps], stop=template.verdict_stop, reason=cfg.reasoning,
        accept=lambda i, reply: template.parse(reply, n_steps[i])[0] is not None)


def majority_vote(votes: list[int | None]) -> int | None:
    """The most common parsed vote; ties -> the earliest step index, a step index before -1."""
    counts = Counter(v for v in votes if v is not None)
    if not counts:
        return None
    best = max(counts.values())
    return min((v for v, c in counts.items() if c == best), key=lambda v: (v == -1, v))


def judge_annotation(raw: list[str], n_steps: int, template: str = "processbench") -> JudgeAnnotation:
    parsed = [JUDGE_TEMPLATES[template].parse(text, n_steps) for text in raw]
    votes = [v for v, _ in parsed]
    return JudgeAnnotation(first_error=majority_vote(votes), votes=votes, parsed=any(v is not None for v in votes),
                           raw=list(raw), extra={"reasons": [r for _, r in parsed], "template": template})


# ----------------------------------------------------------------------------------------------------
# Report


def judge_report(solutions: list[Solution], template: str = "processbench") -> dict[str, Any]:
    """Vote outcomes (by `template`'s parse outcomes), solutions parsed, and agreement with
    `true_first_error` where it is known."""
    outcomes: Counter[str] = Counter()
    report: dict[str, Any] = {"solutions": 0, "parsed": 0, "unparsed": 0}
    known = correct = known_parsed = 0
    by_truth = {"error": [0, 0], "correct": [0, 0]}  # [right, total] on erroneous / fully correct solutions
    constrained = [0, 0]  # [votes forced to a valid verdict, votes asked to be] (judge.constrain)
    for s in solutions:
        if s.judge is None:
            continue
        report["solutions"] += 1
        report["parsed" if s.judge.parsed else "unparsed"] += 1
        reasons = (s.judge.extra or {}).get("reasons")
        if not isinstance(reasons, list):  # a judge field written elsewhere: re-derive the outcomes
            raw = s.judge.raw if isinstance(s.judge.raw, list) else [s.judge.raw]
            reasons = [JUDGE_TEMPLATES[template].parse(t, len(s.steps))[1] for t in raw]
        outcomes.update(reasons)
        forced = (s.judge.extra or {}).get("constrained")
        if isinstance(forced, list):
            constrained[0] += sum(bool(f) for f in forced)
            constrained[1] += len(forced)
        truth = s.extra.get("true_first_error")
        if isinstance(truth, int) and not isinstance(truth, bool):
            known += 1
            hit = s.judge.first_error == truth
            correct += int(hit)
            known_parsed += int(s.judge.parsed)
            bucket = by_truth["correct" if truth == -1 else "error"]
            bucket[0] += int(hit)
            bucket[1] += 1
    report["votes"] = {k: outcomes.get(k, 0) for k in JUDGE_TEMPLATES[template].outcomes}
    if constrained[1]:
        report["constrained_votes"] = {"forced": constrained[0], "asked": constrained[1]}
    if known:
        acc_err = by_truth["error"][0] / by_truth["error"][1] if by_truth["error"][1] else None
        acc_ok = by_truth["correct"][0] / by_truth["correct"][1] if by_truth["correct"][1] else None
        f1 = None  # ProcessBench's F1: harmonic mean of the accuracies on erroneous and on correct solutions
        if acc_err is not None and acc_ok is not None:
            f1 = 2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err + acc_ok > 0 else 0.0
        report["truth"] = {
            "known": known, "accuracy": correct / known, "matches": correct,
            "accuracy_over_parsed": correct / known_parsed if known_parsed else None,
            "accuracy_on_erroneous": acc_err, "accuracy_on_correct": acc_ok, "processbench_f1": f1,
        }
    return report


def format_report(report: dict[str, Any]) -> str:
    v: dict[str, int] = report["votes"]
    lines = [
        f"judge: {report['solutions']} solutions, {report['parsed']} parsed, {report['unparsed']} unparsed; "
        "votes: " + ", ".join(f"{count} {outcome.replace('_', ' ')}" for outcome, count in v.items())
    ]
    forced = report.get("constrained_votes")
    if forced:
        lines.append(f"judge.constrain: {forced['forced']} of {forced['asked']} votes forced to a valid verdict"
                     + ("" if forced["forced"] == forced["asked"] else
                        " (the others are free text: the backend could not constrain them)"))
    truth = report.get("truth")
    if truth:
        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.1%}"

        lines.append(
            f"judge vs true_first_error ({truth['known']} known): accuracy {pct(truth['accuracy'])} "
            f"({truth['matches']}/{truth['known']}, unparsed count as wrong), over parsed "
            f"{pct(truth['accuracy_over_parsed'])}; erroneous {pct(truth['accuracy_on_erroneous'])}, "
            f"correct {pct(truth['accuracy_on_correct'])}, F1 {pct(truth['processbench_f1'])}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Run


def run_judge(cfg: JudgeConfig, shard: tuple[int, int] | None = None,
              generator: Generator | None = None) -> dict[str, Any]:
    """Judge every solution not yet in the output; returns the report over the whole output file."""
    from tqdm import tqdm

    from prm.jsonl import JsonlWriter, check_unique_ids, load_records, write_text_atomic
    from prm.shards import in_shard, shard_path

    cfg.check()
    check_sampling(cfg.sampling())
    solutions = load_records(cfg.input, Solution, require_records=True)  # validated whole before anything is written
    check_unique_ids(solutions, str(cfg.input))
    if cfg.backend == "simulated" and generator is None:  # built from the whole file: shards draw alike
        generator = SimulatedJudge(cfg.simulated, solutions, lambda s: build_judge_prompt(cfg, s), str(cfg.input),
                                   cfg.template)
    output = Path(cfg.output)  # type: ignore[arg-type]
    if shard is not None:
        solutions = [s for s in solutions if in_shard(s.id, *shard)]
        output = shard_path(output, *shard)

    start = time.time()
    written = tokens = 0
    # A model that fails to load leaves no file: a writer that fails before its first record removes its file.
    with JsonlWriter(output, resume=True) as writer:
        pending = [s for s in solutions if s.id not in writer.done]
        if pending and generator is None:
            generator = make_generator(cfg.generator)
        if pending and cfg.constrain and not hasattr(generator, "generate_choice"):
            raise ConfigError(f"judge.constrain: the {getattr(generator, 'name', 'given')} backend cannot force a "
                              "verdict (transformers, vllm and openai can); set judge.constrain=false")
        sampling = cfg.sampling()
        bar = tqdm(total=len(pending), unit="solution", desc="judge", dynamic_ncols=True, mininterval=1.0)
        for lo in range(0, len(pending), cfg.batch_solutions):
            batch = pending[lo : lo + cfg.batch_solutions]
            prompts = [build_judge_prompt(cfg, s) for s in batch]
            if cfg.constrain:
                outputs = generator.generate_choice(prompts, sampling, verdict_choices(cfg, batch))  # type: ignore[union-attr]
            else:
                outputs = generator.generate(prompts, sampling)  # type: ignore[union-attr]
            for solution, completions in zip(batch, outputs, strict=True):
                tokens += sum(c.tokens for c in completions)
                annotation = judge_annotation([c.text for c in completions], len(solution.steps), cfg.template)
                if cfg.constrain:  # which votes the backend could force (an OpenAI server may not)
                    annotation.extra["constrained"] = [c.constrained for c in completions]
                judged = dataclasses.replace(solution, judge=annotation)
                judged.check()
                writer.write(judged)
                written += 1
            bar.update(len(batch))
        bar.close()
    report = judge_report(load_records(output, Solution), cfg.template)
    report.update(written=written, already_done=len(solutions) - len(pending), tokens=tokens,
                  seconds=round(time.time() - start, 2), output=str(output))
    report_path = output.with_name(output.name + ".report.json")
    write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
    print(f"judge: {written} solutions judged now ({report['already_done']} already done), {tokens} tokens "
          f"in {report['seconds']:.1f} s -> {output}")
    print(format_report(report))
    return report


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", default=None, help="solutions JSONL (overrides judge.input)")
    parser.add_argument("-o", "--output", default=None, help="judged solutions JSONL (overrides judge.output)")


COMMAND = config_command(("annotate", "judge"), "an LLM judge names the earliest wrong step of each solution",
                         _add_arguments, run_judge, section="judge", config=JudgeConfig, shards=True,
                         description=__doc__)
