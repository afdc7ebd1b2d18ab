"""The data-synthesis stage's commands (problems, sampling, annotation, consensus, merging), in `prm --help`
order. Each is declared as a `StageCommand` beside its code; the app (prm/app/stages.py) reads this list."""

from __future__ import annotations

from prm.data_synthesis import consensus, judge, mc, merge, problems, sample, testbed_cli

from prm.stage import StageCommand

COMMANDS: list[StageCommand] = [problems.COMMAND, merge.COMMAND, testbed_cli.COMMAND, sample.COMMAND,
                                consensus.COMMAND, mc.COMMAND, judge.COMMAND]
