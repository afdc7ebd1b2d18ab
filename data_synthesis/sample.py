"""`prm sample`: sample step-by-step solutions to problems from a policy model, split them into steps and
grade their final answers against the gold answers.

    prm sample --config configs/FILE.yaml [-i problems.jsonl] [-o solutions.jsonl] [--shard I/N] [key=value ...]
    prm sample -i problems.jsonl -o solutions.jsonl n=4 generator.model=smollm2-135m-instruct max_new_tokens=256
    prm sample -i problems.jsonl -o solutions.jsonl generator.backend=vllm generator.model=Qwen/Qwen2.5-Math-7B-Instruct

Reads Problem records (section `sample:` of the config), writes Solution records: `id = <problem_id>-s<k>`
for k in 0..n-1, `steps` split with `split` (prm.steps), `final_answer` extracted with `answer_methods`,
`correct` graded against the problem's gold answer, `generator` = the model name, plus `tokens` and
`finish_reason` of the generation. A generation that is blank (no step to keep) is not a valid Solution: it
goes to `<output>.skipped.jsonl` with its reason and is counted in the summary, so a resumed run does not
sample it again. `--shard I/N` keeps the problems of shard I (by problem id) and writes
`<output stem>.shard-0000I-of-0000N.jsonl`. Rerunning the same command resumes: problems whose n solutions
are all written (or skipped) are not sampled again; a problem with some missing is sampled again with the
same seeds and only the missing ids are written.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prm.config import option
from prm.errors import ConfigError
from prm.generation import (
    Generator,
    GeneratorConfig,
    Prompt,
    SamplingConfig,
    check_sampling,
    fill_template,
    make_generator,
)
from prm.records import Problem, Solution
from prm.stage import config_command
from prm.steps import SplitStyle, split_steps

DEFAULT_SYSTEM_PROMPT = "You are a careful mathematician. You solve problems step by step and check each step."
DEFAULT_USER_TEMPLATE = (
    "Solve the following math problem step by step. Put each step in its own paragraph, separated by a "
    "blank line (or one step per line). Finish with the final answer in \\boxed{}, for example \\boxed{42}.\n\n"
    "Problem: {problem}"
)


@dataclass
class SampleConfig:
    """Section `sample:` of a config file."""

    generator: GeneratorConfig = option(default_factory=GeneratorConfig, help="the policy model and its backend")
    n: int = option(4, help="solutions sampled per problem")
    max_new_tokens: int = option(512, help="longest solution, in tokens")
    temperature: float = option(0.7, help="sampling temperature (0 = greedy)")
    top_p: float = option(1.0, help="nucleus sampling threshold")
    seed: int = option(0, help="sampling seed: the same seed gives the same solutions")
    stop: list[str] = option([], help="stop strings (cut from the text)")
    system_prompt: str = option(DEFAULT_SYSTEM_PROMPT, help="system message (chat style); empty = none")
    user_template: str = option(DEFAULT_USER_TEMPLATE, help="user message; {problem} is replaced by the problem")
    few_shot: list[dict[str, str]] = option(
        [], help="worked examples shown before the problem, each {problem: ..., solution: ...}: a user turn (the "
                 "template filled with the example's problem) and the assistant's solution")
    prompt_style: Literal["chat", "text"] = option(
        "chat", help="chat: messages through the chat template; text: system + user as plain text (base models)")
    split: SplitStyle = option("auto", help="how a solution is split into steps: auto, blank_line, newline, step_prefix")
    answer_methods: list[str] | None = option(None, help="answer extraction methods (prm.grading); None = default")
    grade_workers: int = option(1, help="processes grading answers")
    batch_problems: int = option(16, help="problems per generation call; output is written after each")
    input: str | None = option(None, help="Problem records (JSONL)")
    output: str | None = option(None, help="Solution records (JSONL)")

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(n=self.n, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                              top_p=self.top_p, seed=self.seed, stop=list(self.stop) or None)

    def __post_init__(self) -> None:  # value checks run wherever the section is built (see prm.stage)
        if self.n < 1:
            raise ConfigError(f"sample.n must be at least 1, got {self.n}")
        if self.batch_problems < 1:
            raise ConfigError(f"sample.batch_problems must be at least 1, got {self.batch_problems}")
        if "{problem}" not in self.user_template:
            raise ConfigError("sample.user_template must contain {problem}")
        for i, example in enumerate(self.few_shot):
            if set(example) != {"problem", "solution"} or not all(isinstance(v, str) for v in example.values()):
                raise ConfigError(f"sample.few_shot[{i}]: expected {{problem: TEXT, solution: TEXT}}, got {example!r}")

    def check(self) -> None:
        """Before sampling: the files, which `-i` / `-o` may give after the section is loaded."""
        if not self.input:
            raise ConfigError("sample: no input file (give -i problems.jsonl or input=...)")
        if not self.output:
            raise ConfigError("sample: no output file (give -o solutions.jsonl or output=...)")


def build_prompt(cfg: SampleConfig, problem: Problem) -> Prompt:
    """The policy's prompt: system message, the `few_shot` examples as earlier turns, then the problem."""
    messages = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    for example in cfg.few_shot:
        messages += [{"role": "user", "content": fill_template(cfg.user_template, {"problem": example["problem"]})},
                     {"role": "assistant", "content": example["solution"]}]
    messages.append({"role": "user", "content": fill_template(cfg.user_template, {"problem": problem.problem})})
    if cfg.prompt_style == "text":
        return "".join(f"{m['content']}\n\n" for m in messages[:-1]) + f"{messages[-1]['content']}\n"
    return messages


def solution_id(problem_id: str, k: int) -> str:
    return f"{problem_id}-s{k}"


def _grade(pairs: list[tuple[str | None, str]], workers: int) -> list[bool]:
    from prm.grading import grade_many

    todo = [(i, pred, gold) for i, (pred, gold) in enumerate(pairs) if pred is not None]
    graded = grade_many([(pred, gold) for _, pred, gold in todo], workers) if todo else []
    result = [False] * len(pairs)
    for (i, _, _), ok in zip(todo, graded, strict=True):
        result[i] = bool(ok)
    return result


def _extract(text: str, methods: list[str] | None) -> str | None:
    from prm.grading import extract_answer

    return extract_answer(text, methods=methods) if methods is not None else extract_answer(text)


def run_sample(cfg: SampleConfig, shard: tuple[int, int] | None = None,
               generator: Generator | None = None) -> dict[str, Any]:
    """Sample, split, grade and write; returns the summary (also printed). `generator` overrides
    `cfg.generator` (an already loaded model, or the synthetic testbed's simulated completer)."""
    from tqdm import tqdm

    from prm.jsonl import JsonlWriter, check_unique_ids, load_records
    from prm.shards import in_shard, shard_path

    cfg.check()
    check_sampling(cfg.sampling())  # before a model is loaded
    _extract("", cfg.answer_methods)  # unknown extraction methods fail now, not after the first batch
    problems = load_records(cfg.input, Problem, require_records=True)  # the whole file is validated before anything is written
    check_unique_ids(problems, str(cfg.input), ": solution ids would collide")
    output = Path(cfg.output)  # type: ignore[arg-type]
    if shard is not None:
        problems = [p for p in problems if in_shard(p.id, *shard)]
        output = shard_path(output, *shard)
    skipped_path = output.with_name(output.name + ".skipped.jsonl")

    start = time.time()
    stats = {"problems": len(problems), "written": 0, "skipped_blank": 0, "correct": 0, "tokens": 0,
             "already_done": 0, "length_cut": 0}
    # A model that fails to load leaves no file: a writer that fails before its first record removes its file.
    with JsonlWriter(output, resume=True) as writer, JsonlWriter(skipped_path, resume=True) as skipped:
        done = writer.done | skipped.done
        pending = [p for p in problems if any(solution_id(p.id, k) not in done for k in range(cfg.n))]
        stats["already_done"] = len(problems) - len(pending)
        if pending and generator is None:
            generator = make_generator(cfg.generator)
        name = generator.name if generator is not None else cfg.generator.model
        sampling = cfg.sampling()
        bar = tqdm(total=len(pending), unit="problem", desc="sample", dynamic_ncols=True, mininterval=1.0)
        for lo in range(0, len(pending), cfg.batch_problems):
            batch = pending[lo : lo + cfg.batch_problems]
            outputs = generator.generate([build_prompt(cfg, p) for p in batch], sampling)  # type: ignore[union-attr]
            rows = []
            for problem, completions in zip(batch, outputs, strict=True):
                for k, completion in enumerate(completions[: cfg.n]):
                    sid = solution_id(problem.id, k)
                    if sid not in done:
                        rows.append((problem, sid, completion))
            answers = [_extract(c.text, cfg.answer_methods) for _, _, c in rows]
            verdicts = _grade([(a, p.answer) for a, (p, _, _) in zip(answers, rows, strict=True)],
                              cfg.grade_workers)
            for (problem, sid, completion), answer, ok in zip(rows, answers, verdicts, strict=True):
                stats["tokens"] += completion.tokens
                steps = split_steps(completion.text, cfg.split)
                if not steps:
                    skipped.write({"id": sid, "problem_id": problem.id, "reason": "blank generation",
                                   "raw": completion.text, "tokens": completion.tokens})
                    stats["skipped_blank"] += 1
                    continue
                solution = Solution(
                    id=sid, problem_id=problem.id, problem=problem.problem, answer=problem.answer, steps=steps,
                    final_answer=answer, correct=ok, generator=name,
                    extra={"tokens": completion.tokens, "finish_reason": completion.finish_reason},
                )
                solution.check()
                writer.write(solution)
                stats["written"] += 1
                stats["correct"] += int(ok)
                stats["length_cut"] += int(completion.finish_reason == "length")
            bar.update(len(batch))
            if stats["written"]:
                bar.set_postfix(correct=f"{stats['correct'] / stats['written']:.1%}", tokens=stats["tokens"])
        bar.close()
    stats["seconds"] = round(time.time() - start, 2)
    stats["output"] = str(output)
    share = f"{stats['correct'] / stats['written']:.1%}" if stats["written"] else "n/a"
    rate = stats["tokens"] / stats["seconds"] if stats["seconds"] > 0 else 0.0
    print(
        f"sample: {stats['written']} solutions written for {len(pending)} problems "
        f"({stats['already_done']} already done, {stats['skipped_blank']} blank skipped, "
        f"{stats['length_cut']} cut at max_new_tokens); {share} correct; {stats['tokens']} tokens "
        f"in {stats['seconds']:.1f} s ({rate:.0f} tok/s) -> {output}"
    )
    return stats


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", default=None, help="problems JSONL (overrides sample.input)")
    parser.add_argument("-o", "--output", default=None, help="solutions JSONL (overrides sample.output)")


COMMAND = config_command(("sample",), "sample step-by-step solutions from a policy model and grade them",
                         _add_arguments, run_sample, section="sample", config=SampleConfig, shards=True,
                         description=__doc__)
