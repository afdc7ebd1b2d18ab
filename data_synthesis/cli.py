"""Subcommands of the data-synthesis stage (problems, sampling, annotation, consensus, merging)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction, data_sub: argparse._SubParsersAction) -> None:
    """Add this stage's commands: top-level ones to `sub`, `prm data ...` ones to `data_sub`."""
