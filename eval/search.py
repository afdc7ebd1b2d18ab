"""`prm search`: PRM-guided search (beam search, DVTS) and Best-of-N over problems, one JSONL record each.

    prm search --config configs/search_tiny.yaml -i problems.jsonl -o searched.jsonl method=beam n=8 beam_width=2
    prm search --config configs/search_simulated.yaml -i problems.jsonl -o sim.jsonl method=dvts --shard 0/4

Input: Problem records (`prm data problems`). Each output record holds the chosen solution (`chosen`), every
finished candidate with its steps, step scores and tokens (`candidates`), `correct`, and the cost:
`generated_tokens` (every step the policy wrote, pruned beams included) and `scored_tokens` (every token the
PRM read). Problems run together `batch_problems` at a time (one generate call per iteration for all their
active beams, one scoring pass per iteration); each batch is written when it is done, and a rerun after a kill
skips the problems already written. The algorithms are in eval/search_algo.py, the policies and scorers in
eval/search_policies.py and eval/search_scorers.py. `mode: simulated` replaces both by the simulated step
policy and an oracle or noisy PRM (no model: seconds on a CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prm.eval.scoring_cli import ScoreConfig
from prm.eval.search_algo import SearchSpec, check_spec, run_batch

from prm.config import option
from prm.errors import ConfigError, PrmError
from prm.generation import GeneratorConfig
from prm.stage import StageCommand

SECTION = "prm_search"


@dataclass
class SimulatedConfig:
    p: float = option(0.8, help="probability that a simulated step is right")
    prm: Literal["oracle", "noisy"] = option("oracle", help="oracle (exact step labels) or noisy")
    accuracy: float = option(0.8, help="noisy PRM: probability that a step's score is its true label")


@dataclass
class SearchConfig:
    """Section `prm_search:` of a config file (`prm experiment search` reads it too)."""

    method: str = option("beam", help="beam (step-level beam search), dvts or bon (Best-of-N)")
    n: int = option(4, help="N: beams, or samples for bon (the generation budget)")
    beam_width: int = option(2, help="M: children per kept beam; beam keeps N/M beams, dvts runs N/M subtrees")
    aggregation: str = option("last", help="step scores -> a solution score: last, min or prod")
    answer: str = option("argmax", help="argmax (best-scored candidate) or vote (PRM-weighted vote)")
    mode: Literal["model", "simulated"] = option("model", help="model: generator + PRM; simulated: no models")
    simulated: SimulatedConfig = option(default_factory=SimulatedConfig, help="mode=simulated: policy and PRM")
    generator: GeneratorConfig = option(default_factory=GeneratorConfig, help="the policy model and its backend")
    prm: ScoreConfig = option(default_factory=ScoreConfig, help="the PRM: any checkpoint and format prm score reads")
    delimiter: str = option("\n\n", help="step delimiter: a stop string ending each generated step")
    max_steps: int = option(12, help="a candidate ends after this many steps")
    step_tokens: int = option(128, help="longest step, in tokens")
    max_tokens: int = option(512, help="longest solution, in generated tokens")
    temperature: float = option(0.7, help="sampling temperature")
    top_p: float = option(1.0, help="nucleus sampling threshold")
    seed: int = option(0, help="sampling and tie-breaking seed")
    system_prompt: str = option("", help="system message (chat style); empty = none")
    user_template: str = option("{problem}\nSolve it step by step, one step a paragraph, then write: The answer is N.",
                                help="user message; {problem} is replaced by the problem")
    few_shot: list[dict[str, str]] = option([], help="worked examples, each {problem, solution}: earlier chat turns")
    prompt_style: Literal["chat", "text"] = option("chat", help="chat (chat template) or text (base models)")
    chat_template_model: str | None = option(None, help="tokenizer that renders the chat (openai backend)")
    batch_problems: int = option(16, help="problems searched together; output is written after each batch")
    input: str | None = option(None, help="Problem records (JSONL)")
    output: str | None = option(None, help="search records (JSONL)")

    def spec(self) -> SearchSpec:
        return SearchSpec(self.method, self.n, self.beam_width, self.aggregation, self.answer, self.max_steps,
                          self.max_tokens, self.seed)

    def __post_init__(self) -> None:  # value checks run wherever the section is built (see prm.stage)
        check_spec(self.method, self.n, self.beam_width, self.aggregation, self.answer, f"{SECTION}.")
        for name in ("max_steps", "step_tokens", "max_tokens", "batch_problems"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{SECTION}.{name} must be at least 1, got {getattr(self, name)}")
        if not self.delimiter:
            raise ConfigError(f"{SECTION}.delimiter must not be empty")
        if not 0.0 <= self.simulated.p <= 1.0 or not 0.0 <= self.simulated.accuracy <= 1.0:
            raise ConfigError(f"{SECTION}.simulated.p and accuracy must be in [0, 1]")
        if "{problem}" not in self.user_template:
            raise ConfigError(f"{SECTION}.user_template must contain {{problem}}")


def build(cfg: SearchConfig, problems: list[Any], path: str = "") -> tuple[Any, Any]:
    """(policy, scorer) for `cfg`: the models are loaded here, and the scorer is checked on prefixes."""
    from prm.eval.search_policies import GeneratorPolicy, SimulatedPolicy, chat_messages, reference_steps
    from prm.eval.search_scorers import PrmStepScorer, SimulatedPrm

    if cfg.mode == "simulated":
        for line, p in enumerate(problems, 1):
            reference_steps(p, path, line)
        return (SimulatedPolicy(cfg.simulated.p, cfg.seed),
                SimulatedPrm(cfg.simulated.prm, cfg.simulated.accuracy, cfg.seed))
    if not cfg.prm.model:
        raise PrmError(f"{SECTION}.prm.model is required (a PRM checkpoint), or set mode=simulated")
    from prm.generation import make_generator
    from prm.models import load_tokenizer
    from prm.scoring import load_scorer

    scorer = PrmStepScorer(load_scorer(cfg.prm.model, cfg.prm.format, cfg.prm.device, cfg.prm.dtype),
                           cfg.prm.batch_size, cfg.prm.max_tokens)
    scorer.check_prefixes()  # before the policy loads: a PRM that cannot guide search fails in seconds
    generator = make_generator(cfg.generator)
    tokenizer = load_tokenizer(cfg.chat_template_model) if cfg.chat_template_model else None
    messages = chat_messages(cfg.system_prompt, cfg.user_template, cfg.few_shot, cfg.prompt_style, cfg.delimiter)
    return GeneratorPolicy(generator, messages, delimiter=cfg.delimiter, step_tokens=cfg.step_tokens,
                           max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                           seed=cfg.seed, tokenizer=tokenizer), scorer


def run_search(cfg: SearchConfig, shard: tuple[int, int] | None = None, built: tuple[Any, Any] | None = None
               ) -> dict[str, Any]:
    """Search every problem of `cfg.input` (or of its shard) not yet in the output; returns the summary."""
    from tqdm import tqdm

    from prm.jsonl import JsonlWriter, check_unique_ids, load_records, previous_ids
    from prm.records import Problem
    from prm.shards import in_shard, shard_path

    if not cfg.input or not cfg.output:
        raise PrmError("prm search needs -i problems.jsonl and -o output.jsonl")
    spec = cfg.spec()
    problems = load_records(cfg.input, Problem, require_records=True)
    check_unique_ids(problems, cfg.input)
    output = Path(cfg.output)
    if shard is not None:
        problems = [p for p in problems if in_shard(p.id, *shard)]
        output = shard_path(output, *shard)
    done = previous_ids(output) if output.exists() else set()
    todo = [p for p in problems if p.id not in done]
    stats: dict[str, Any] = {"problems": len(problems), "already_done": len(problems) - len(todo), "written": 0,
                             "correct": 0, "generated_tokens": 0, "scored_tokens": 0, "generate_calls": 0}
    start = time.perf_counter()
    if todo:
        policy, scorer = built or build(cfg, todo, cfg.input)
        with JsonlWriter(output, resume=True) as writer, \
                tqdm(total=len(todo), unit="problem", desc=f"search {spec.method}", file=sys.stderr,
                     disable=None) as bar:
            for lo in range(0, len(todo), cfg.batch_problems):
                batch = todo[lo:lo + cfg.batch_problems]
                for record in run_batch(batch, policy, scorer, spec, stats):
                    writer.write(record)
                    stats["written"] += 1
                    stats["correct"] += int(record["correct"])
                    stats["generated_tokens"] += record["generated_tokens"]
                    stats["scored_tokens"] += record["scored_tokens"]
                bar.update(len(batch))
    stats["seconds"] = round(time.perf_counter() - start, 3)
    stats["output"] = str(output)
    acc = f"{stats['correct'] / stats['written']:.1%}" if stats["written"] else "n/a"
    print(f"search {spec.method} n={spec.n} M={spec.beam_width}: {stats['written']} problem(s) written "
          f"({stats['already_done']} already done), {acc} correct, {stats['generated_tokens']} generated and "
          f"{stats['scored_tokens']} PRM tokens, {stats['generate_calls']} generate call(s) in "
          f"{stats['seconds']:.1f} s -> {output}")
    return stats


def _cmd_search(args: argparse.Namespace) -> int:
    from prm.shards import parse_shard
    from prm.stage import load_stage_config

    cfg = load_stage_config(SearchConfig, SECTION, args)
    run_search(cfg, parse_shard(args.shard) if args.shard else None)
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", default=None, help="problems JSONL (overrides prm_search.input)")
    parser.add_argument("-o", "--output", default=None, help="search records JSONL (resumed when it exists)")


COMMAND = StageCommand(("search",), "PRM-guided search: beam search, DVTS or Best-of-N, batched over problems",
                       _add_arguments, _cmd_search, section=SECTION, config=SearchConfig, shards=True,
                       description=__doc__)
