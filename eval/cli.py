"""Subcommands of the evaluation stage (`prm score`, `prm eval ...`)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `prm score` and the `prm eval` group to the top-level subparsers."""
    from eval.commands import add_eval_group

    add_eval_group(sub)
