"""Subcommands of the training stage.

    prm train --config configs/train_tiny.yaml [--resume] [key=value ...]
    torchrun --nproc_per_node 2 -m prm train --config configs/train_tiny.yaml
    prm train-data check data/train.jsonl --model smollm2-135m-instruct --max-length 1024
    prm train-data export-trl data/train.jsonl -o data/train.trl.jsonl
    prm train-data toy -o runs/tiny-data/train.jsonl -n 64
"""

from __future__ import annotations

import argparse


def _cmd_train(args: argparse.Namespace) -> int:
    from prm.config import load_section
    from train.config import TrainConfig
    from train.trainer import train

    cfg = load_section(TrainConfig, "train", args.config, args.overrides)
    return train(cfg, resume=args.resume)


def _cmd_check(args: argparse.Namespace) -> int:
    from prm.errors import ConfigError
    from prm.models import load_tokenizer
    from prm.prm_model import add_step_marker
    from train.data import load_tokenized

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
    from prm.errors import InputError
    from train.data import export_trl, read_examples

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
    from prm.errors import ConfigError
    from prm.jsonl import write_atomic
    from train.toy_data import toy_examples

    if args.n < 1:
        raise ConfigError(f"-n must be at least 1 (examples to write), got {args.n}")
    if not 0.0 <= args.error_rate <= 1.0:
        raise ConfigError(f"--error-rate must be a probability in [0, 1], got {args.error_rate}")
    rows = toy_examples(args.n, args.seed, args.error_rate)
    write_atomic(args.output, rows)
    print(f"wrote {len(rows)} toy examples to {args.output}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `prm train` and `prm train-data` to the top-level subparsers."""
    from prm.stage import add_config_args

    train = sub.add_parser("train", help="train a PRM with DeepSpeed (1 process, torchrun, or srun + torchrun)")
    add_config_args(train)
    train.add_argument("--resume", action="store_true",
                       help="continue from the latest checkpoint in output_dir (a fresh start if there is none)")
    train.set_defaults(func=_cmd_train)

    data = sub.add_parser("train-data", help="check training files, export them in TRL's format")
    data_sub = data.add_subparsers(dest="train_data_command", metavar="SUBCOMMAND", required=True)
    formats = ["auto", "training", "trl", "math_shepherd", "prm800k", "processbench"]
    check = data_sub.add_parser("check", help="validate and tokenize training files (what `prm train` does first)")
    check.add_argument("files", nargs="+")
    check.add_argument("--model", default="smollm2-135m-instruct", help="whose tokenizer")
    check.add_argument("--max-length", type=int, default=2048)
    check.add_argument("--format", default="auto", choices=formats)
    check.set_defaults(func=_cmd_check)
    export = data_sub.add_parser("export-trl", help="write training files as TRL stepwise JSONL")
    export.add_argument("files", nargs="+")
    export.add_argument("-o", "--output", required=True)
    export.add_argument("--format", default="auto", choices=formats)
    export.set_defaults(func=_cmd_export)
    toy = data_sub.add_parser("toy", help="write toy labelled examples (running sums with one injected error)")
    toy.add_argument("-o", "--output", required=True)
    toy.add_argument("-n", type=int, default=64)
    toy.add_argument("--seed", type=int, default=0)
    toy.add_argument("--error-rate", type=float, default=0.5)
    toy.set_defaults(func=_cmd_toy)
