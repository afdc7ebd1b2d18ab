"""`prm score`: add PRM step scores to Solution, StepErrorItem (ProcessBench) or BoN JSONL files.

    prm score --model PATH -i solutions.jsonl -o scored.jsonl [--format auto] [--batch-size 8] [--device auto]
    prm score --model Qwen/Qwen2.5-Math-PRM-7B -i processbench_gsm8k.jsonl -o scored.jsonl --batch-size 16
    prm score --config configs/eval.yaml -i bon.jsonl -o scored_bon.jsonl batch_size=32
    prm score --backend vllm --model PATH -i solutions.jsonl -o scored.jsonl   # vLLM's pooling runner

The record type is read from the file's first record; every record is validated before anything is written.
Each output record is the input record with `step_scores` (one probability per step) added: on the record
for Solution and StepErrorItem, on each candidate for BoN items. Output is appended record by record, so a
rerun after a kill skips the records already written (`--no-resume` starts the file afresh).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from typing import Any

from prm.config import option
from prm.errors import ConfigError, InputError, PrmError
from prm.stage import StageCommand


@dataclass
class ScoreConfig:
    """The `score:` section of a config file (flags override it)."""

    model: str | None = option(None, help="PRM checkpoint: folder, hub id or embedded model name")
    format: str = option("auto", help="auto (detected) or a format of prm.scoring.SCORERS: ours, qwen_prm, ...")
    batch_size: int = option(8, help="solutions per forward pass (sorted by length, so padding stays small)")
    max_tokens: int | None = option(None, help="also cap the padded tokens of a batch (long solutions)")
    device: str = option("auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    dtype: str = option("auto", help="auto (bf16 on CUDA, fp32 on CPU), bf16, fp16 or fp32")
    backend: str = option("transformers", help="transformers (every format) or vllm (vLLM's pooling runner: "
                                               "formats ours and qwen_prm; batch_size/max_tokens do not apply)")
    chunk: int = option(512, help="solutions scored between two writes to the output file")

    def __post_init__(self) -> None:  # value checks run wherever the section is built (see prm.stage)
        from prm.scoring import BACKENDS, SCORERS

        if self.backend not in BACKENDS:
            raise ConfigError(f"score.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.format != "auto" and self.format not in SCORERS:
            raise ConfigError(f"score.format must be auto or one of {', '.join(SCORERS)}, got {self.format!r}")
        for name in ("batch_size", "chunk", "max_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"score.{name} must be at least 1, got {value}")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="PRM checkpoint (folder, hub id)")
    p.add_argument("--format", default=None, help="checkpoint format (default auto: detected)")
    p.add_argument("-i", "--input", required=True, help="Solution, StepErrorItem or BoN JSONL")
    p.add_argument("-o", "--output", required=True, help="output JSONL (resumed when it exists)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--backend", default=None, help="transformers (default) or vllm")
    p.add_argument("--no-resume", action="store_true", help="overwrite the output instead of resuming it")


def _config(args: argparse.Namespace) -> ScoreConfig:
    from prm.config import load_section

    cfg = load_section(ScoreConfig, "score", args.config, args.overrides)
    flags = {"model": args.model, "format": args.format, "batch_size": args.batch_size,
             "max_tokens": args.max_tokens, "device": args.device, "dtype": args.dtype, "backend": args.backend}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    if not cfg.model:
        raise PrmError("prm score needs --model (or score.model in the config)")
    return cfg


def detect_record_type(path: str) -> type:
    """Solution, StepErrorItem or BonItem, from the keys of the file's first record."""
    from prm.jsonl import iter_lines, parse_line
    from prm.records import BonItem, Solution, StepErrorItem, guess_record_type

    for lineno, raw in iter_lines(path):  # a missing file: InputError "no such file"
        data = parse_line(path, lineno, raw)
        if data is None:
            continue
        cls = guess_record_type(data)
        if cls not in (Solution, StepErrorItem, BonItem):
            raise InputError(path, lineno, None, f"a {cls.__name__} record has no steps to score; "
                                                 "expected Solution, StepErrorItem (ProcessBench) or BoN records")
        return cls
    raise InputError(path, None, None, "empty file: no records to score")


def _solutions(record: Any) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(problem, steps, dict that receives step_scores) for each solution a record holds."""
    if hasattr(record, "candidates"):
        return [(record.problem, c.steps, c.extra) for c in record.candidates]
    return [(record.problem, record.steps, record.extra)]


def _cmd_score(args: argparse.Namespace) -> int:
    from prm.jsonl import load_records, previous_ids
    from prm.records import record_id
    from prm.scoring import load_scorer

    cfg = _config(args)  # an output that is the input is refused by prm.app.cli.main
    records = load_records(args.input, detect_record_type(args.input))
    done = set() if args.no_resume else previous_ids(args.output)
    todo = [r for r in records if record_id(r) not in done]
    n_solutions = sum(len(_solutions(r)) for r in todo)
    if not todo:
        print(f"{args.output}: all {len(records)} record(s) already scored")
        return 0
    # The model loads before the output opens: a bad model keeps an old output (even with --no-resume).
    scorer = load_scorer(cfg.model, cfg.format, cfg.device, cfg.dtype, backend=cfg.backend)
    try:
        return _score_into(args, cfg, scorer, records, todo, n_solutions)
    finally:
        scorer.close()  # the vLLM backend's engine processes stop here, not at interpreter exit


def _score_into(args: argparse.Namespace, cfg: ScoreConfig, scorer: Any, records: list[Any], todo: list[Any],
                n_solutions: int) -> int:
    from tqdm import tqdm

    from prm.jsonl import JsonlWriter

    writer = JsonlWriter(args.output, resume=not args.no_resume)
    print(f"scoring {n_solutions} solution(s) in {len(todo)} record(s) with {scorer.describe()}"
          + (f"; {len(records) - len(todo)} already in {args.output}" if len(todo) < len(records) else ""))
    tokens = steps = 0
    start = time.perf_counter()
    with writer, tqdm(total=n_solutions, unit="sol", file=sys.stderr, disable=None) as bar:
        i = 0
        while i < len(todo):
            chunk, size = [], 0
            while i < len(todo) and (not chunk or size + len(_solutions(todo[i])) <= cfg.chunk):
                chunk.append(todo[i])
                size += len(_solutions(todo[i]))
                i += 1
            slots = [s for r in chunk for s in _solutions(r)]
            scores = scorer.score([s[0] for s in slots], [s[1] for s in slots], cfg.batch_size,
                                  max_tokens=cfg.max_tokens, progress=bar)
            for (_, _, target), values in zip(slots, scores, strict=True):
                target["step_scores"] = values
            for record in chunk:
                writer.write(record)
            tokens += scorer.stats.tokens
            steps += scorer.stats.steps
    seconds = max(time.perf_counter() - start, 1e-9)
    print(f"scored {n_solutions} solution(s), {steps} step(s), {tokens} token(s) in {seconds:.1f} s: "
          f"{n_solutions / seconds:.2f} solutions/s, {tokens / seconds:.0f} tokens/s -> {args.output}")
    return 0


COMMAND = StageCommand(("score",), "add PRM step scores to Solution, ProcessBench or BoN JSONL files",
                       _add_arguments, _cmd_score, section="score", config=ScoreConfig, description=__doc__)
