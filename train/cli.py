"""Subcommands of the training stage."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `prm train` (and related) to the top-level subparsers."""
