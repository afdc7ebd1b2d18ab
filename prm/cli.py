"""The `prm` command line: one subcommand per stage.

    prm data problems --source gsm_symbolic -n 50 -o problems.jsonl
    prm data validate problems.jsonl
    prm --help

Each stage package adds its own subcommands through an `add_commands(subparsers)` function called
below; heavy imports (torch, transformers) happen inside the command functions so `prm --help` is fast.
User errors (bad input, bad config) print one line and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from prm.errors import PrmError


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """`--config FILE.yaml` and trailing `key=value` overrides, shared by every stage command."""
    parser.add_argument("--config", help="YAML config file (see configs/); its stage section is used")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. n=4 lora.r=8")


def add_shard_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="process only shard I of N (0-based; a stable split by record id)")


def _cmd_validate(args: argparse.Namespace) -> int:
    from prm.jsonl import validate_file
    from prm.records import RECORD_TYPES

    record_type = RECORD_TYPES[args.type] if args.type != "auto" else None
    status = 0
    for path in args.files:
        report = validate_file(path, record_type)
        for err in report.errors:
            print(err.describe())
        if report.errors:
            print(f"{path}: {len(report.errors)} invalid line(s), {report.good} valid record(s)")
            status = 1
        else:
            print(f"{path}: all {report.good} record(s) valid")
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prm", description="Process reward model pipeline: data, annotation, training, evaluation."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser("data", help="problem sources, format conversion, validation, shard merging")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    validate = data_sub.add_parser("validate", help="check JSONL files and report every bad line")
    validate.add_argument("files", nargs="+")
    validate.add_argument("--type", default="auto", choices=["auto", "problem", "solution", "training",
                                                               "step_error", "bon"],
                          help="record type (auto: guessed per line from its keys)")
    validate.set_defaults(func=_cmd_validate)

    import data_synthesis.cli
    import eval.cli
    import train.cli

    data_synthesis.cli.add_commands(sub, data_sub)
    train.cli.add_commands(sub)
    eval.cli.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PrmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
