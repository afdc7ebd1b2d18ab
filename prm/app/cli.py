"""The `prm` command line: one subcommand per stage.

    prm data problems --source gsm_symbolic -n 50 -o problems.jsonl
    prm data validate problems.jsonl
    prm data convert prm800k.jsonl train.jsonl --from prm800k --to trl
    prm data convert RewardMATH_direct.json rewardmath.jsonl --from rewardmath
    prm --help

The stage commands come from one list (`prm.app.stages.stage_commands`), each declared by its stage as a
`prm.stage.StageCommand`; heavy imports (torch, transformers) happen inside the runners so `prm --help` is
fast. `data validate`, `data convert`, `config get` and `run` are the app's own.
User errors (bad input, bad config) print one line and exit 2, without a traceback.
Library chatter goes to `prm.log` in the run or output folder (`prm.console`); `--verbose`, anywhere on the
command line, shows it on the console as well.
"""

from __future__ import annotations

import argparse
import sys

from prm import console
from prm.errors import PrmError
from prm.stage import (
    INPUT_ARGS,
    OUTPUT_ARGS,
    StageCommand,
    add_config_args,
    add_shard_arg,
    refuse_output_over_input,
)


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
        elif not report.good:
            print(f"{path}: no records")
            status = 1
        else:
            print(f"{path}: all {report.good} record(s) valid")
    return status


def _cmd_convert(args: argparse.Namespace) -> int:
    from prm.formats import ConvertReport, convert_file

    report = ConvertReport()
    convert_file(args.src, args.src_format, args.dst, args.dst_format, label_source=args.label_source,
                 soft_labels=args.soft_labels, neutral_as_positive=not args.neutral_as_negative,
                 split=args.split, on_error="skip" if args.skip_bad else "raise", report=report)
    print(f"wrote {report.written} record(s) to {args.dst} "
          f"({report.dropped} without a usable label dropped, {len(report.errors)} bad row(s) skipped)")
    return 0


def _cmd_config_get(args: argparse.Namespace) -> int:
    import json

    from prm.app.stages import config_value

    value = config_value(args.key, args.config, args.overrides)
    print(value if isinstance(value, str) else json.dumps(value))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from prm.app.pipeline import run_pipeline

    stages = None
    if args.stages is not None:
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        if not stages:
            raise PrmError("--stages names no stage; leave it out to run them all")
    run_pipeline(args.config, args.overrides, dry_run=args.dry_run, stages=stages)
    return 0


def _cmd_ablation(args: argparse.Namespace) -> int:
    from prm.app.ablation import run_ablation

    run_ablation(args.config, args.overrides)
    return 0


def _cmd_search_experiment(args: argparse.Namespace) -> int:
    from prm.app.search_experiment import run_search_experiment

    run_search_experiment(args.config, args.overrides)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prm", description="Process reward model pipeline: data, annotation, training, evaluation.",
        epilog="Library messages (model load reports, DeepSpeed and vLLM logs) go to prm.log in the run or "
               "output folder; --verbose (anywhere on the command line) shows them here too."
    )
    parser.add_argument("--verbose", action="store_true",
                        help="show library messages on the console too (they always go to prm.log)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser("data", help="problem sources, format conversion, validation, shard merging")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    validate = data_sub.add_parser("validate", help="check JSONL files and report every bad line")
    validate.add_argument("files", nargs="+")
    validate.add_argument("--type", default="auto", choices=["auto", "problem", "solution", "training",
                                                               "step_error", "bon"],
                          help="record type (auto: guessed per line from its keys)")
    validate.set_defaults(func=_cmd_validate)
    from prm.formats import INPUT_FORMATS, LABEL_SOURCES, OUTPUT_FORMATS

    convert = data_sub.add_parser("convert", help="convert between our records and TRL / ProcessBench / "
                                                  "PRM800K / Math-Shepherd files or hub datasets; read "
                                                  "RewardMATH / RewardBench into Best-of-N items")
    convert.add_argument("src", help="a .jsonl, .json or .parquet file, or a Hugging Face dataset id")
    convert.add_argument("dst", help="output JSONL file (written atomically)")
    convert.add_argument("--from", dest="src_format", required=True, choices=INPUT_FORMATS)
    convert.add_argument("--to", dest="dst_format", default="ours", choices=OUTPUT_FORMATS,
                         help="output format (default ours: Solution records, or BoN items from a benchmark)")
    convert.add_argument("--label-source", default="consensus", choices=LABEL_SOURCES,
                         help="annotation that carries first_error (read from ours, written when importing)")
    convert.add_argument("--soft-labels", action="store_true", help="TRL output: soft_labels from mc.values")
    convert.add_argument("--neutral-as-negative", action="store_true",
                         help="PRM800K: a 0 (neutral) rating counts as a wrong step (default: correct)")
    convert.add_argument("--split", default=None,
                         help="split of a hub dataset (default train; rewardbench: filtered)")
    convert.add_argument("--skip-bad", action="store_true",
                         help="skip bad rows (reasons in DST.rejects.jsonl) instead of stopping")
    convert.set_defaults(func=_cmd_convert)

    config = sub.add_parser("config", help="read a config as the stages resolve it")
    config_sub = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    get = config_sub.add_parser(
        "get", help="print one resolved value, e.g. `prm config get C.yaml train.output_dir key=value ...`; "
                    "every section of the file is checked first (exit 2 naming a bad key)")
    get.add_argument("config", help="YAML config file (see configs/)")
    get.add_argument("key", help="section.key, nested keys dotted (train.lora.r)")
    get.add_argument("overrides", nargs="*", metavar="key=value",
                     help="config overrides: section.key=value, or key=value for KEY's section")
    get.set_defaults(func=_cmd_config_get)

    run = sub.add_parser("run", help="the whole pipeline in one run directory (finished stages are skipped)")
    run.add_argument("config", help="pipeline YAML (e.g. configs/quickstart.yaml)")
    run.add_argument("overrides", nargs="*", metavar="section.key=value", help="e.g. sample.n=8 train.max_steps=50")
    run.add_argument("--dry-run", action="store_true", help="print the stage commands without running them")
    from prm.app.pipeline import JOBS

    run.add_argument("--stages", default=None, help="comma-separated stages, or Slurm jobs "
                                                    f"({', '.join(JOBS)}), to run (default: all)")
    run.set_defaults(func=_cmd_run)

    from prm.app.stages import stage_commands

    groups = {"data": data_sub}
    for command in stage_commands():
        _add_stage_command(sub, groups, command)

    experiment = sub.add_parser("experiment", help="experiments built from the stages (see prm/app/ablation.py)")
    experiment_sub = experiment.add_subparsers(dest="experiment", required=True)
    ablation = experiment_sub.add_parser(
        "ablation", help="MC-only vs judge-only vs consensus training data on the testbed (resumable)")
    ablation.add_argument("--config", required=True, help="ablation YAML (configs/ablation_testbed.yaml)")
    ablation.add_argument("overrides", nargs="*", metavar="section.key=value",
                          help="e.g. ablation.seed=1 train.max_steps=120 mc.simulated.false_negative=0.3")
    ablation.set_defaults(func=_cmd_ablation)
    search = experiment_sub.add_parser(
        "search", help="Best-of-N, majority vote, beam search and DVTS at matched budgets N (resumable)")
    search.add_argument("--config", required=True, help="search YAML (configs/search_simulated.yaml)")
    search.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="e.g. search.budgets=[4,8] prm_search.beam_width=4 prm_search.simulated.p=0.6")
    search.set_defaults(func=_cmd_search_experiment)

    return parser


# Command groups (`prm annotate mc`): help and the name of what follows the group's word.
GROUPS = {
    "annotate": ("label each step: Monte Carlo rollouts or an LLM judge", "ANNOTATOR"),
    "eval": ("evaluate a PRM: Best-of-N, step-error benchmarks, one-to-many, pairwise", "BENCHMARK"),
    "train-data": ("check training files, export them in TRL's format", "SUBCOMMAND"),
}


def _add_stage_command(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction],
                       command: StageCommand) -> None:
    """`prm WORDS...` for one stage command: its own arguments, then --shard and --config / key=value."""
    *group_words, name = command.words
    parent = sub
    for word in group_words:
        if word not in groups:
            help_text, metavar = GROUPS[word]
            group = sub.add_parser(word, help=help_text)
            groups[word] = group.add_subparsers(dest=f"{word.replace('-', '_')}_command", metavar=metavar,
                                                required=True)
        parent = groups[word]
    extra = {"description": command.description, "formatter_class": argparse.RawDescriptionHelpFormatter} \
        if command.description else {}
    parser = parent.add_parser(name, help=command.help, **extra)
    command.add_arguments(parser)
    if command.shards:
        add_shard_arg(parser)
    if command.section is not None:
        add_config_args(parser)
    parser.set_defaults(func=command.run)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    console.setup(verbose)  # before any library imports: their loggers are routed to the log file
    try:
        return _main([a for a in argv if a != "--verbose"])  # --verbose is accepted after the command too
    finally:
        console.teardown()


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting `key=value` overrides at the first flag; take the ones after it too.
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
            "=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        refuse_output_over_input([getattr(args, a, None) for a in INPUT_ARGS],
                                 [getattr(args, a, None) for a in OUTPUT_ARGS])
        output = getattr(args, "output", None) or getattr(args, "dst", None)
        console.log_file_near(output if isinstance(output, str) else None)  # config outputs: prm.stage
        return int(args.func(args) or 0)
    except PrmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a directory where a file belongs, no permission, a full disk: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
