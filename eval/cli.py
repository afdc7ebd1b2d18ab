"""Subcommands of the evaluation stage (`prm score`, `prm eval ...`)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `prm score` and the `prm eval` group to the top-level subparsers."""
    from eval.commands import add_eval_group
    from eval.scoring_cli import add_score_command

    add_score_command(sub)
    add_eval_group(sub)
