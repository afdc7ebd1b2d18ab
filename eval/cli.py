"""The evaluation stage's commands (`prm score`, `prm serve`, `prm eval ...`); the app (prm/app/stages.py) reads
this list."""

from __future__ import annotations

from prm.eval import commands, scoring_cli, search, serve

from prm.stage import StageCommand

COMMANDS: list[StageCommand] = [scoring_cli.COMMAND, search.COMMAND, serve.COMMAND, *commands.COMMANDS]
