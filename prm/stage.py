"""The stage contract and the command-line plumbing every stage shares.

Each stage module declares its commands as `StageCommand`s: the command's words (`prm annotate mc`), its
config section and dataclass, its own arguments and its runner. The app on top (`prm/app/stages.py`) collects them
into one list that the CLI, `prm run`, `prm config get` and (through them) the Slurm scripts read.
Also here: `--config` and `key=value` overrides, `--shard`, loading a stage's config section, refusing to
write over an input, and `config_command`, the body most stage commands share (load the section, read
`--shard`, run). A leaf of the library: stages import it, it imports no stage and nothing of the app.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prm import console
from prm.config import load_section
from prm.errors import PrmError
from prm.shards import parse_shard


@dataclass(frozen=True)
class StageCommand:
    """One `prm` command of a stage, declared beside its code.

    The CLI makes `prm WORDS...`, calls `add_arguments(parser)`, then adds `--shard I/N` when `shards` is set
    and `--config FILE` plus `key=value` overrides when `section` is set; `run(args)` returns the exit code.
    `config` is the dataclass of the YAML section `section` (its `__post_init__` checks the values, so a bad
    value fails wherever the section is loaded: the stage, `prm config get`, `prm run`'s up-front check).
    """

    words: tuple[str, ...]
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    section: str | None = None
    config: type | None = None
    shards: bool = False
    description: str | None = None

    def __post_init__(self) -> None:
        if (self.section is None) != (self.config is None):
            raise TypeError(f"prm {' '.join(self.words)}: give both section and config, or neither")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """`--config FILE.yaml` and trailing `key=value` overrides, shared by every stage command."""
    parser.add_argument("--config", help="YAML config file (see configs/); its stage section is used")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. n=4 lora.r=8")


def add_shard_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="process only shard I of N (0-based; a stable split by record id)")


def load_stage_config(cls: type, section: str, args: argparse.Namespace):
    """A stage's config: its YAML section and overrides, then `-i` / `-o` from the command line on top (for a
    section that has `input` / `output` keys)."""
    cfg = load_section(cls, section, args.config, args.overrides)
    keys = {f.name for f in dataclasses.fields(cls)}
    paths = {name: value for name in ("input", "output") if name in keys and (value := getattr(args, name, None))}
    cfg = dataclasses.replace(cfg, **paths) if paths else cfg
    refuse_output_over_input([getattr(cfg, "input", None)], [getattr(cfg, "output", None)])
    return cfg


# Command-line arguments that name files a command reads, and files it writes.
INPUT_ARGS = ("input", "src", "files", "mc", "judge")
OUTPUT_ARGS = ("output", "dst", "train", "report")


def _paths(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def refuse_output_over_input(inputs: list[object], outputs: list[object]) -> None:
    """Writing over (or appending to) a file the command reads would destroy it: refuse before any work."""
    for out in (o for value in outputs for o in _paths(value)):
        for src in (i for value in inputs for i in _paths(value)):
            if os.path.isfile(out) and os.path.isfile(src) and os.path.samefile(src, out):
                raise PrmError(f"{out}: the output is also an input of this command; write to another file")


def config_command(words: tuple[str, ...], help: str, add_arguments: Callable[[argparse.ArgumentParser], None],  # noqa: A002
                   run: Callable[..., object], *, section: str, config: type, shards: bool = False,
                   flags: Sequence[str] = (), description: str | None = None) -> StageCommand:
    """A `StageCommand` whose runner is the body the stage commands share: load `section` into `config`
    (`--config`, `key=value` overrides, `-i` / `-o` on top; `load_stage_config`), read `--shard I/N` when
    `shards`, then call `run(cfg, shard=(i, n) or None, **{flag: args.flag for flag in flags})` (`shard`
    only when `shards`). An int that `run` returns is the exit code; anything else (a report) means 0."""
    def runner(args: argparse.Namespace) -> int:
        cfg = load_stage_config(config, section, args)
        if getattr(cfg, "output_dir", None):  # library chatter goes to prm.log beside the output
            console.log_file_near(cfg.output_dir, folder=True)
        else:
            console.log_file_near(getattr(cfg, "output", None) or getattr(args, "output", None))
        extra = {name: getattr(args, name) for name in flags}
        if shards:
            extra["shard"] = parse_shard(args.shard) if args.shard else None
        result = run(cfg, **extra)
        return result if isinstance(result, int) and not isinstance(result, bool) else 0

    return StageCommand(words, help, add_arguments, runner, section=section, config=config, shards=shards,
                        description=description)
