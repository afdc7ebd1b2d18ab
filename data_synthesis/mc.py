"""Monte Carlo step labels: roll out continuations from a solution's step prefixes and grade them.

    prm annotate mc --config configs/FILE.yaml -i solutions.jsonl -o mc.jsonl [--shard I/N] [key=value ...]
    prm annotate mc -i testbed.jsonl -o mc.jsonl backend=simulated mode=exhaustive k=8 simulated.noise=0.1
    prm annotate mc -i testbed.jsonl -o mc.jsonl backend=simulated simulated.false_negative=0.1 simulated.false_positive=0.2

A rollout prompt is the policy's chat prompt for the problem (the same system prompt and template as
`prm sample`, rendered with the model's chat template), then the steps 0..j of the solution joined with
`step_separator`, then the separator, left for the model to continue to a final answer; each rollout's
answer is extracted and graded against the gold answer (`prm.grading`). All `k` rollouts of one prefix
are ONE request (`n = k`), and up to `batch_prompts` prefixes, from many solutions, go into one
`generate` call.

Per solution: `mc: {values, first_error, rollouts, tokens, mode, k}`, where `values[j]` is the share of the
k rollouts from the prefix ending at step j that reach the gold answer (None where that prefix was not
rolled out), step j is wrong when `values[j] <= hard_threshold` (0.0: every rollout failed, the rule of
Qwen2.5-Math-PRM; Math-Shepherd's hard estimate is `values[j] > 0`, its soft estimate is `values[j]`), and
`first_error` is the first wrong step (-1: none). `rollouts` and `tokens` count the rollouts behind the
labels (whether generated now or read from the cache), so a resumed run writes the same records.

Modes:
- `exhaustive`: every prefix in order (Math-Shepherd). With `early_stop` (default on) a solution stops at
  its first wrong prefix: later steps carry no label (docs/DESIGN.md), so their rollouts would be wasted; with
  it off every prefix is rolled out and `values` is complete (soft labels for every step).
- `binary`: OmegaPRM's binary search for the first prefix from which no rollout reaches the gold answer.
  It assumes monotonicity (once a prefix is wrong every longer one is), so it needs O(log n) prefixes.
With `last_step_from_answer` (default on) the full solution is never rolled out: its value is 1.0 when
the solution's own final answer is correct, else 0.0 (continuing a finished solution only restates it).
In binary mode a correct final answer therefore ends the search at once (first_error = -1, no rollouts).

A cache keyed by (model, sampling parameters, prompt text) holds each prefix's graded rollouts in memory;
`cache_path` also keeps it in a JSONL file, so a rerun or another mode reuses them. With `--shard I/N`
only the solutions of shard I (by id) are labeled, into `OUT.shard-0000I-of-0000N.jsonl` (and its own
cache file); `prm data merge` joins the shards. The output is resumable: a killed run, rerun, labels only
what is missing. A report (solutions, rollouts, tokens, time per labeled solution, first-error accuracy
against `true_first_error` where present) is printed and written next to the output as `.report.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from prm.data_synthesis.simulated_completer import SimulatedCompleter, SimulatedConfig
from prm.data_synthesis.testbed import true_first_error

from prm.config import option
from prm.errors import ConfigError, InputError, PrmError
from prm.generation import Generator, GeneratorConfig, SamplingConfig, check_sampling
from prm.jsonl import loads_strict
from prm.records import MCAnnotation, Solution
from prm.stage import config_command


@dataclass
class MCConfig:
    """Section `mc:` of a config file."""

    mode: Literal["exhaustive", "binary"] = option(
        "binary", help="exhaustive: roll out every prefix (Math-Shepherd); binary: OmegaPRM binary search")
    k: int = option(8, help="rollouts per prefix, sampled in one request (n=k)")
    hard_threshold: float = option(
        0.0, help="a step is wrong when its value (share of rollouts reaching the gold answer) is <= this")
    early_stop: bool = option(
        True, help="exhaustive: stop a solution at its first wrong prefix (later steps carry no label)")
    last_step_from_answer: bool = option(
        True, help="value of the full solution = its own final answer's correctness (no rollouts)")
    max_new_tokens: int = option(512, help="tokens per rollout")
    temperature: float = option(0.7, help="sampling temperature of the rollouts")
    top_p: float = option(1.0, help="nucleus sampling of the rollouts")
    seed: int = option(0, help="sampling seed (each prompt and sample index has its own stream)")
    batch_prompts: int = option(64, help="prefixes (each with k samples) per generate call")
    window: int = option(64, help="solutions labeled together (their prefixes share generate calls)")
    cache_path: str | None = option(None, help="JSONL rollout cache kept across runs (per shard); none: memory only")
    grade_workers: int = option(1, help="processes grading rollout answers")
    step_separator: str = option("\n\n", help="text between steps, as the policy writes them (as in `sample:`)")
    chat_template_model: str | None = option(
        None, help="tokenizer whose chat template renders the prompt (default: the generator's model)")
    backend: Literal["generator", "simulated"] = option(
        "generator", help="generator: the model in `generator.*`; simulated: the testbed's oracle completer")
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    simulated: SimulatedConfig = field(default_factory=SimulatedConfig)

    def __post_init__(self) -> None:  # value checks run wherever the section is built (see prm.stage)
        if self.k < 1:
            raise ConfigError(f"mc.k must be at least 1, got {self.k}")
        if not 0.0 <= self.hard_threshold < 1.0:
            raise ConfigError(f"mc.hard_threshold must be in [0, 1), got {self.hard_threshold}")
        for name in ("max_new_tokens", "batch_prompts", "window", "grade_workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"mc.{name} must be at least 1, got {getattr(self, name)}")
        self.simulated.check("mc.simulated")
        check_sampling(self.sampling())  # temperature, top_p: checked even when the simulated backend ignores them

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(n=self.k, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                              top_p=self.top_p, seed=self.seed)


# ---------------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------------


class PromptBuilder:
    """Rollout prompts: the policy's prompt for the problem + the steps of the prefix + separator.

    The policy prompt is the one `prm sample` builds (`prm.data_synthesis.sample.build_prompt`, from the
    `sample:` section: system_prompt, user_template, prompt_style). A chat is rendered to text with
    `render` (the model's chat template); without one (the simulated backend) a plain
    "<role> content" layout is used, which is all the simulated completer needs.
    """

    def __init__(self, policy: Any, step_separator: str,
                 render: Callable[[list[dict[str, str]]], str] | None = None):
        self.policy = policy
        self.sep = step_separator
        self.render = render or _plain_render
        self._heads: dict[tuple[str, str], str] = {}

    def head(self, solution: Solution) -> str:
        key = (solution.problem_id, solution.problem)
        if key not in self._heads:
            from prm.data_synthesis.sample import build_prompt

            from prm.records import Problem

            prompt = build_prompt(self.policy, Problem(id=solution.problem_id, problem=solution.problem,
                                                       answer=solution.answer, source=""))
            self._heads[key] = prompt if isinstance(prompt, str) else self.render(prompt)
        return self._heads[key]

    def rollout_prompt(self, solution: Solution, j: int) -> str:
        """The prompt that continues `solution` after its steps 0..j."""
        return self.head(solution) + self.sep.join(solution.steps[: j + 1]) + self.sep


def policy_config(config_path: str | None, overrides: Sequence[str] | None = None) -> Any:
    """The `sample:` section of the config (the policy's prompt), with `sample.*` overrides only."""
    from prm.data_synthesis.sample import SampleConfig

    from prm.config import load_section

    return load_section(SampleConfig, "sample", config_path,
                        [o for o in overrides or [] if o.strip().startswith("sample.")])


def _plain_render(messages: list[dict[str, str]]) -> str:
    return "".join(f"<{m['role']}>\n{m['content']}\n" for m in messages) + "<assistant>\n"


# ---------------------------------------------------------------------------------------------------------
# Rollouts: cache, batching, grading
# ---------------------------------------------------------------------------------------------------------

Outcome = tuple[bool, int]  # (reached the gold answer, generated tokens)


@dataclass
class RolloutStats:
    requests: int = 0  # prefix requests answered (cached or generated)
    cache_hits: int = 0
    generated_rollouts: int = 0
    generated_tokens: int = 0
    generate_calls: int = 0


class RolloutRunner:
    """Answers (solution, j) requests with k graded rollouts each, through the cache and in batches."""

    def __init__(self, generator: Generator, cfg: MCConfig, prompts: PromptBuilder, cache_path: str | None = None):
        self.generator = generator
        self.cfg = cfg
        self.prompts = prompts
        self.sampling = cfg.sampling()
        self.stats = RolloutStats()
        self.cache: dict[str, list[Outcome]] = {}
        self._cache_writer = None
        sampling = asdict(self.sampling)
        self._key_prefix = json.dumps([getattr(generator, "name", type(generator).__name__), sampling],
                                      sort_keys=True)
        if cache_path:
            from prm.jsonl import JsonlWriter

            self._cache_writer = JsonlWriter(cache_path, resume=True, sync_every=64)
            self._load_cache(Path(cache_path))

    def _load_cache(self, path: Path) -> None:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = loads_strict(line)
                    outcomes = [(bool(c), int(t)) for c, t in zip(row["correct"], row["tokens"], strict=True)]
                    self.cache[str(row["id"])] = outcomes
                except (ValueError, KeyError, TypeError):  # JsonError is a ValueError
                    continue  # a foreign or damaged line: that prefix is simply rolled out again

    def key(self, prompt: str, gold: str = "") -> str:
        """Cache key: model, sampling parameters, prompt text (and the gold answer the outcomes were graded
        against)."""
        return hashlib.sha256(f"{self._key_prefix}\x00{gold}\x00{prompt}".encode()).hexdigest()

    def close(self) -> None:
        if self._cache_writer is not None:
            self._cache_writer.close()

    def run(self, requests: Sequence[tuple[Solution, int]]) -> list[list[Outcome]]:
        from prm.grading import extract_answer, grade_many

        self.stats.requests += len(requests)
        keyed = []
        todo: dict[str, tuple[str, str]] = {}  # key -> (prompt, gold), in first-seen order
        for sol, j in requests:
            prompt = self.prompts.rollout_prompt(sol, j)
            key = self.key(prompt, sol.answer)
            keyed.append(key)
            if key in self.cache:
                self.stats.cache_hits += 1
            elif key not in todo:
                todo[key] = (prompt, sol.answer)
        items = list(todo.items())
        for start in range(0, len(items), self.cfg.batch_prompts):
            batch = items[start : start + self.cfg.batch_prompts]
            outs = self.generator.generate([prompt for _, (prompt, _) in batch], self.sampling)
            self.stats.generate_calls += 1
            if len(outs) != len(batch):
                raise PrmError(f"generator returned {len(outs)} results for {len(batch)} prompts")
            pairs = []
            for (_, (_, gold)), completions in zip(batch, outs, strict=True):
                for c in completions:
                    pairs.append((extract_answer(c.text), gold))
            verdicts = grade_many(pairs, workers=self.cfg.grade_workers)
            pos = 0
            for (key, _), completions in zip(batch, outs, strict=True):
                outcomes = []
                for c in completions:
                    pred = pairs[pos][0]
                    outcomes.append((pred is not None and bool(verdicts[pos]), int(c.tokens)))
                    pos += 1
                self.cache[key] = outcomes
                self.stats.generated_rollouts += len(outcomes)
                self.stats.generated_tokens += sum(t for _, t in outcomes)
                if self._cache_writer is not None:
                    self._cache_writer.write({"id": key, "correct": [c for c, _ in outcomes],
                                              "tokens": [t for _, t in outcomes]})
        return [self.cache[key] for key in keyed]


# ---------------------------------------------------------------------------------------------------------
# The searches
# ---------------------------------------------------------------------------------------------------------


class PrefixSearch:
    """Which prefixes of one solution to roll out next, and the labels once done."""

    def __init__(self, solution: Solution, cfg: MCConfig):
        self.solution = solution
        self.cfg = cfg
        self.n = len(solution.steps)
        self.values: list[float | None] = [None] * self.n
        self.rollouts = 0
        self.tokens = 0
        self.done = False
        self.first_error = -1
        self.last_known = cfg.last_step_from_answer  # the full solution's value is known
        if cfg.last_step_from_answer:
            self.values[self.n - 1] = 1.0 if solution.correct else 0.0

    def bad(self, j: int) -> bool:
        v = self.values[j]
        return v is not None and v <= self.cfg.hard_threshold

    def pending(self) -> list[int]:
        raise NotImplementedError

    def feed(self, j: int, outcomes: list[Outcome]) -> None:
        self.values[j] = sum(1 for ok, _ in outcomes if ok) / len(outcomes)
        self.rollouts += len(outcomes)
        self.tokens += sum(t for _, t in outcomes)
        self._after(j)

    def _after(self, j: int) -> None:
        raise NotImplementedError

    def annotation(self) -> MCAnnotation:
        return MCAnnotation(values=list(self.values), first_error=self.first_error, rollouts=self.rollouts,
                            tokens=self.tokens, extra={"mode": self.cfg.mode, "k": self.cfg.k})


class ExhaustiveSearch(PrefixSearch):
    """Every prefix 0..n-1 in order; with early_stop, none after the first wrong one."""

    def __init__(self, solution: Solution, cfg: MCConfig):
        super().__init__(solution, cfg)
        self.to_roll = list(range(self.n - 1 if self.last_known else self.n))
        self._settle()

    def _settle(self) -> None:
        if self.cfg.early_stop:
            first_bad = next((j for j in range(self.n) if self.bad(j)), None)
            if first_bad is not None and all(self.values[j] is not None for j in range(first_bad)):
                self.to_roll = []
        if not self.to_roll:
            self.done = True
            self.first_error = next((j for j in range(self.n) if self.bad(j)), -1)

    def pending(self) -> list[int]:
        if self.done:
            return []
        return self.to_roll[:1] if self.cfg.early_stop else list(self.to_roll)

    def _after(self, j: int) -> None:
        self.to_roll.remove(j)
        self._settle()


class BinarySearch(PrefixSearch):
    """OmegaPRM: the full solution's outcome first; when it fails, halve [lo, hi] with hi known bad."""

    def __init__(self, solution: Solution, cfg: MCConfig):
        super().__init__(solution, cfg)
        self.lo, self.hi = 0, self.n - 1
        if self.last_known:
            self._check_last()

    def _check_last(self) -> None:
        if not self.bad(self.n - 1):
            self.done, self.first_error = True, -1  # monotone: every prefix of a good solution is good
        elif self.lo >= self.hi:
            self.done, self.first_error = True, self.hi

    def pending(self) -> list[int]:
        if self.done:
            return []
        if not self.last_known:
            return [self.n - 1]
        return [(self.lo + self.hi) // 2]

    def _after(self, j: int) -> None:
        if not self.last_known:
            self.last_known = True
            self._check_last()
            return
        if self.bad(j):
            self.hi = j
        else:
            self.lo = j + 1
        if self.lo >= self.hi:
            self.done, self.first_error = True, self.hi


def make_search(solution: Solution, cfg: MCConfig) -> PrefixSearch:
    return ExhaustiveSearch(solution, cfg) if cfg.mode == "exhaustive" else BinarySearch(solution, cfg)


def label_solutions(solutions: Sequence[Solution], runner: RolloutRunner, cfg: MCConfig,
                    on_done: Callable[[PrefixSearch], None] | None = None) -> list[Solution]:
    """Label a group of solutions together: each round gathers the next prefixes of every unfinished
    search into shared generate calls. Returns copies of the solutions with `mc` set."""
    searches = [make_search(sol, cfg) for sol in solutions]
    for s in searches:
        if s.done and on_done:
            on_done(s)
    while True:
        requests = [(i, j) for i, s in enumerate(searches) if not s.done for j in s.pending()]
        if not requests:
            break
        results = runner.run([(searches[i].solution, j) for i, j in requests])
        for (i, j), outcomes in zip(requests, results, strict=True):
            searches[i].feed(j, outcomes)
            if searches[i].done and on_done:
                on_done(searches[i])
    out = []
    for s in searches:
        data = s.solution.to_dict()
        data["mc"] = s.annotation().to_dict()
        out.append(Solution.from_dict(data))
    return out


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------


def mc_report(records: Sequence[Solution]) -> dict[str, Any]:
    """Totals over labeled solutions, and first-error accuracy against `true_first_error` where known."""
    labeled = [r for r in records if r.mc is not None]
    report: dict[str, Any] = {
        "solutions": len(labeled),
        "rollouts": sum(r.mc.rollouts for r in labeled),  # type: ignore[union-attr]
        "tokens": sum(r.mc.tokens for r in labeled),  # type: ignore[union-attr]
        "values_known": sum(sum(1 for v in r.mc.values if v is not None) for r in labeled),  # type: ignore[union-attr]
    }
    if labeled:
        report["rollouts_per_solution"] = report["rollouts"] / len(labeled)
        report["tokens_per_solution"] = report["tokens"] / len(labeled)
    dist: dict[str, int] = {}
    for r in labeled:
        key = str(r.mc.first_error)  # type: ignore[union-attr]
        dist[key] = dist.get(key, 0) + 1
    report["first_error_counts"] = dict(sorted(dist.items(), key=lambda kv: int(kv[0])))
    known = [(r.mc.first_error, true_first_error(r)) for r in labeled]  # type: ignore[union-attr]
    known = [(p, t) for p, t in known if t is not None]
    if known:
        report["with_truth"] = len(known)
        report["first_error_accuracy"] = sum(p == t for p, t in known) / len(known)
        erroneous = [(p, t) for p, t in known if t >= 0]
        if erroneous:
            report["first_error_accuracy_on_erroneous"] = sum(p == t for p, t in erroneous) / len(erroneous)
        report["error_detection"] = {  # does MC flag an error at all where one is / is not known
            "tp": sum(p >= 0 and t >= 0 for p, t in known), "fp": sum(p >= 0 > t for p, t in known),
            "fn": sum(t >= 0 > p for p, t in known), "tn": sum(p < 0 and t < 0 for p, t in known),
        }
    return report


# ---------------------------------------------------------------------------------------------------------
# CLI: prm annotate mc
# ---------------------------------------------------------------------------------------------------------


def build_generator(cfg: MCConfig, solutions: Sequence[Solution], policy: Any = None
                    ) -> tuple[Generator, PromptBuilder]:
    """The backend and the prompt builder that renders with its chat template. `policy`: the `sample:`
    config giving the policy prompt (default: its defaults)."""
    if policy is None:
        policy = policy_config(None)
    if cfg.backend == "simulated":
        prompts = PromptBuilder(policy, cfg.step_separator)
        gen = SimulatedCompleter.for_solutions(solutions, prompts.rollout_prompt, noise=cfg.simulated.noise,
                                               seed=cfg.simulated.seed, delay=cfg.simulated.delay,
                                               false_negative=cfg.simulated.false_negative,
                                               false_positive=cfg.simulated.false_positive)
        return gen, prompts
    from prm.generation import make_generator, render_chat

    try:
        gen = make_generator(cfg.generator)
    except (OSError, ValueError) as exc:  # a missing model or tokenizer
        raise PrmError(f"cannot load generator model '{cfg.generator.model}': {str(exc).splitlines()[0]}") from None
    tokenizer = getattr(gen, "tokenizer", None)
    if cfg.chat_template_model or tokenizer is None:
        from prm.models import load_tokenizer

        name = cfg.chat_template_model or cfg.generator.model
        try:
            tokenizer = load_tokenizer(name)
        except OSError as exc:
            raise ConfigError(f"cannot load the tokenizer '{name}' for the chat template "
                              f"(set mc.chat_template_model): {exc}") from None
    return gen, PromptBuilder(policy, cfg.step_separator, lambda msgs: render_chat(tokenizer, msgs))


def run_mc(cfg: MCConfig, shard: tuple[int, int] | None = None, *, input: str, output: str,  # noqa: A002
           config: str | None = None, overrides: Sequence[str] = ()) -> int:
    """prm annotate mc --config F -i solutions.jsonl -o mc.jsonl [--shard I/N] [key=value ...]: label the
    solutions of `input` (of shard (i, n)) into `output`; `config` and `overrides` give the policy's prompt."""
    from tqdm import tqdm

    from prm.jsonl import JsonlWriter, check_unique_ids, load_records, previous_ids, write_text_atomic
    from prm.shards import in_shard, shard_path

    policy = policy_config(config, overrides)
    input_path = input
    solutions = load_records(input_path, Solution, require_records=True)
    check_unique_ids(solutions, input_path)
    output, cache_path = Path(output), cfg.cache_path
    if shard is not None:
        i, n = shard
        solutions = [s for s in solutions if in_shard(s.id, i, n)]
        output = shard_path(output, i, n)
        if cache_path:
            cache_path = str(shard_path(cache_path, i, n))
    if cfg.backend == "simulated":
        missing = [s.id for s in solutions if true_first_error(s) is None]
        if missing:
            raise InputError(input_path, None, "true_first_error",
                             f"backend=simulated needs testbed solutions; {missing[0]} has no true_first_error")

    done = previous_ids(output)  # resume: a torn last line cut off, the ids already labeled skipped
    if output.exists():
        _check_same_settings(output, cfg)
    todo = [s for s in solutions if s.id not in done]
    print(f"mc ({cfg.mode}, k={cfg.k}): {len(solutions)} solution(s), {len(solutions) - len(todo)} already in "
          f"{output}, {len(todo)} to label")
    start = time.time()
    runner = None
    if todo:  # the model loads before the output is opened: a bad model name leaves no file behind
        generator, prompts = build_generator(cfg, todo, policy)
        runner = RolloutRunner(generator, cfg, prompts, cache_path)
    writer = JsonlWriter(output, resume=True)  # an empty shard still gets its (empty) file, for the merge
    try:
        if runner is not None:
            bar = tqdm(total=len(todo), desc=f"mc {cfg.mode}", unit="sol", dynamic_ncols=True)

            def tick(_: PrefixSearch) -> None:
                bar.update(1)
                bar.set_postfix(rollouts=runner.stats.generated_rollouts, tokens=runner.stats.generated_tokens,
                                cached=runner.stats.cache_hits, refresh=False)

            try:
                for w in range(0, len(todo), cfg.window):
                    for record in label_solutions(todo[w : w + cfg.window], runner, cfg, on_done=tick):
                        writer.write(record)
            finally:
                bar.close()
    finally:
        writer.close()
        if runner is not None:
            runner.close()
    elapsed = time.time() - start

    records = load_records(output, Solution)
    report = mc_report(records)
    report.update({
        "mode": cfg.mode, "k": cfg.k, "backend": cfg.backend,
        "model": cfg.generator.model if cfg.backend == "generator" else (
            f"simulated(noise={cfg.simulated.noise}, false_negative={cfg.simulated.false_negative}, "
            f"false_positive={cfg.simulated.false_positive})"),
        "output": str(output), "this_run": {
            "labeled": len(todo), "wall_s": round(elapsed, 3),
            "s_per_labeled_solution": round(elapsed / len(todo), 4) if todo else None,
            **(asdict(runner.stats) if runner is not None else {}),
        },
    })
    report_path = output.with_name(output.name + ".report.json")
    write_text_atomic(report_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    acc = report.get("first_error_accuracy")
    print(f"{report['solutions']} labeled solution(s) in {output}: {report['rollouts']} rollouts, "
          f"{report['tokens']} tokens ({report.get('tokens_per_solution', 0):.1f}/solution); this run "
          f"{len(todo)} in {elapsed:.1f} s" + (f" ({elapsed / len(todo):.3f} s/solution)" if todo else "")
          + (f"; first-error accuracy vs truth {acc:.3f} on {report['with_truth']}" if acc is not None else "")
          + f"; report {report_path}")
    return 0


def _check_same_settings(output: Path, cfg: MCConfig) -> None:
    """A resumed output must not mix labels made with another mode or k."""
    with open(output, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                mc = loads_strict(line).get("mc") or {}
            except (ValueError, AttributeError):  # JsonError is a ValueError
                continue
            if (mc.get("mode"), mc.get("k")) != (cfg.mode, cfg.k):
                raise InputError(str(output), lineno, "mc", f"labeled with mode={mc.get('mode')} k={mc.get('k')}, "
                                 f"this run uses mode={cfg.mode} k={cfg.k}: resume with the same settings or "
                                 "write to another output")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", required=True, help="solutions JSONL")
    p.add_argument("-o", "--output", required=True, help="labeled solutions JSONL (resumable)")


COMMAND = config_command(("annotate", "mc"), "Monte Carlo rollout labels (exhaustive or binary search)",
                         _add_arguments, run_mc, section="mc", config=MCConfig, shards=True,
                         flags=("input", "output", "config", "overrides"), description=__doc__)
