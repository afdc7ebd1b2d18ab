"""Subcommands of the training stage.

    prm train --config configs/train_tiny.yaml [--resume] [key=value ...]
    torchrun --nproc_per_node 2 -m prm train --config configs/train_tiny.yaml
    prm train-data check data/train.jsonl --model smollm2-135m-instruct --max-length 1024
    prm train-data export-trl data/train.jsonl -o data/train.trl.jsonl
    prm train-data toy -o runs/tiny-data/train.jsonl -n 64
"""

from __future__ import annotations

import argparse

from prm.train.config import TrainConfig

from prm.stage import StageCommand, config_command


def _train(cfg: TrainConfig, resume: bool) -> int:
    from prm.train.trainer import train  # torch and DeepSpeed load here, not for `prm --help`

    return train(cfg, resume=resume)


def _cmd_check(args: argparse.Namespace) -> int:
    from prm.train.data import load_tokenized

    from prm.errors import ConfigError
    from prm.models import load_tokenizer
    from prm.prm_model import add_step_marker

    if args.max_length < 1:
        raise ConfigError(f"--max-length must be at least 1 (tokens per example), got {args.max_length}")

    tok = load_tokenizer(args.model)
    add_step_marker(tok)
    data = load_tokenized(args.files, tok, args.max_length, args.format)
    steps = sum(len(e.labels) for e in data)
    tokens = sum(len(e) for e in data)
    wrong = sum(1 for e in data for v in e.labels if v == 0)
    print(f"{len(data)} examples, {steps} labelled steps ({wrong} wrong), {tokens} tokens "
          f"(max {max(len(e) for e in data)}) within max_length={args.max_length}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from prm.train.data import export_trl, read_examples

    from prm.errors import InputError

    examples = []
    for path in args.files:
        found = read_examples(path, args.format)
        if not found:
            raise InputError(path, None, None, "no records")
        examples += found
    n = export_trl(examples, args.output)
    print(f"wrote {n} examples in TRL stepwise format to {args.output}")
    return 0


def _cmd_toy(args: argparse.Namespace) -> int:
    from prm.train.toy_data import toy_examples

    from prm.errors import ConfigError
    from prm.jsonl import write_atomic

    if args.n < 1:
        raise ConfigError(f"-n must be at least 1 (examples to write), got {args.n}")
    if not 0.0 <= args.error_rate <= 1.0:
        raise ConfigError(f"--error-rate must be a probability in [0, 1], got {args.error_rate}")
    rows = toy_examples(args.n, args.seed, args.error_rate)
    write_atomic(args.output, rows)
    print(f"wrote {len(rows)} toy examples to {args.output}")
    return 0


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in output_dir (a fresh start if there is none)")


_DATA_FORMATS = ["auto", "training", "trl", "math_shepherd", "prm800k", "processbench"]


def _add_check_arguments(check: argparse.ArgumentParser) -> None:
    check.add_argument("files", nargs="+")
    check.add_argument("--model", default="smollm2-135m-instruct", help="whose tokenizer")
    check.add_argument("--max-length", type=int, default=2048)
    check.add_argument("--format", default="auto", choices=_DATA_FORMATS)


def _add_export_arguments(export: argparse.ArgumentParser) -> None:
    export.add_argument("files", nargs="+")
    export.add_argument("-o", "--output", required=True)
    export.add_argument("--format", default="auto", choices=_DATA_FORMATS)


def _add_toy_arguments(toy: argparse.ArgumentParser) -> None:
    toy.add_argument("-o", "--output", required=True)
    toy.add_argument("-n", type=int, default=64)
    toy.add_argument("--seed", type=int, default=0)
    toy.add_argument("--error-rate", type=float, default=0.5)


# The training stage's commands; the app (prm/app/stages.py) reads this list.
COMMANDS: list[StageCommand] = [
    config_command(("train",), "train a PRM with DeepSpeed (1 process, torchrun, or srun + torchrun)",
                   _add_train_arguments, _train, section="train", config=TrainConfig, flags=("resume",)),
    StageCommand(("train-data", "check"), "validate and tokenize training files (what `prm train` does first)",
                 _add_check_arguments, _cmd_check),
    StageCommand(("train-data", "export-trl"), "write training files as TRL stepwise JSONL",
                 _add_export_arguments, _cmd_export),
    StageCommand(("train-data", "toy"), "write toy labelled examples (running sums with one injected error)",
                 _add_toy_arguments, _cmd_toy),
]
