"""Subcommands of the data-synthesis stage (problems, sampling, annotation, consensus, merging)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction, data_sub: argparse._SubParsersAction) -> None:
    """Add this stage's commands: top-level ones to `sub`, `prm data ...` ones to `data_sub`.

    Each command module has `add_command(parser_group)`; one line per module below.
    """
    import data_synthesis.merge
    import data_synthesis.problems

    data_synthesis.problems.add_command(data_sub)
    data_synthesis.merge.add_command(data_sub)
    annotate = sub.add_parser("annotate", help="label each step: Monte Carlo rollouts or an LLM judge")
    annotate_sub = annotate.add_subparsers(dest="annotate_command", metavar="ANNOTATOR", required=True)
    del annotate_sub  # until an annotator registers (remove this line when adding one)
