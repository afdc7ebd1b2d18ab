"""Subcommands of the data-synthesis stage (problems, sampling, annotation, consensus, merging)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction, data_sub: argparse._SubParsersAction) -> None:
    """Add this stage's commands: top-level ones to `sub`, `prm data ...` ones to `data_sub`.

    Each command module has `add_command(parser_group)`; one line per module below.
    """
    import data_synthesis.consensus
    import data_synthesis.judge
    import data_synthesis.mc
    import data_synthesis.merge
    import data_synthesis.problems
    import data_synthesis.sample
    import data_synthesis.testbed

    data_synthesis.problems.add_command(data_sub)
    data_synthesis.merge.add_command(data_sub)
    data_synthesis.testbed.add_command(data_sub)
    data_synthesis.sample.add_command(sub)
    data_synthesis.consensus.add_command(sub)
    annotate = sub.add_parser("annotate", help="label each step: Monte Carlo rollouts or an LLM judge")
    annotate_sub = annotate.add_subparsers(dest="annotate_command", metavar="ANNOTATOR", required=True)
    data_synthesis.mc.add_command(annotate_sub)
    data_synthesis.judge.add_command(annotate_sub)
