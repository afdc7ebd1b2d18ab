"""The stage contract and the command-line plumbing every stage shares.

Each stage module declares its commands as `StageCommand`s: the command's words (`prm annotate mc`), its
config section and dataclass, its own arguments and its runner. The app on top (`prm/app/stages.py`) collects them
into one list that the CLI, `prm run`, `prm config get` and (through them) the Slurm scripts read.
Also here: `--config` and `key=value` overrides, `--shard`, loading a stage's config section, and refusing to
write over an input. A leaf of the library: stages import it, it imports no stage and nothing of the app.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

from prm.config import load_section
from prm.errors import PrmError


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
    """A stage's config: its YAML section and overrides, then `-i` / `-o` from the command line on top."""
    cfg = load_section(cls, section, args.config, args.overrides)
    paths = {name: value for name in ("input", "output") if (value := getattr(args, name, None))}
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
