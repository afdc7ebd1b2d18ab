"""The one list of stage commands, read by the CLI (`prm --help` and every stage command), `prm run`,
`prm config get` and, through those, the Slurm scripts. Part of the app on top of the stages.

Each stage package lists the `StageCommand`s its modules declare (`data_synthesis/cli.py`, `train/cli.py`,
`eval/cli.py`); the sections of configs/*.yaml are those commands' sections plus `run:` (`prm run`'s own) and
`ablation:` (`prm experiment ablation`'s own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prm.config import load_section, read_yaml, to_dict
from prm.errors import ConfigError
from prm.stage import StageCommand


def stage_commands() -> list[StageCommand]:
    """Every stage command, in `prm --help` order."""
    from prm.data_synthesis import cli as synthesis_cli
    from prm.eval import cli as eval_cli
    from prm.train import cli as train_cli

    return [*synthesis_cli.COMMANDS, *train_cli.COMMANDS, *eval_cli.COMMANDS]


def section_classes() -> dict[str, type]:
    """Section name -> config dataclass: `run`, `ablation` and every stage command's section."""
    from prm.app.sections import AblationConfig, RunConfig, SearchExperimentConfig

    classes: dict[str, type] = {"run": RunConfig, "ablation": AblationConfig, "search": SearchExperimentConfig}
    for command in stage_commands():
        if command.section is None:
            continue
        known = classes.setdefault(command.section, command.config)
        if known is not command.config:
            raise TypeError(f"section '{command.section}' is read by {known.__name__} and {command.config.__name__}")
    return classes


def validate_sections(path: str | Path | None, overrides: list[str]) -> dict[str, Any]:
    """Every section of `path` that a stage reads, loaded with the `section.key=value` overrides, so a typo
    anywhere fails now instead of hours later in its own stage. Bare `key=value` overrides are left out:
    they belong to whichever single section a command reads."""
    data = read_yaml(path) if path is not None else {}
    classes = section_classes()
    unknown = sorted(set(data) - set(classes))
    if unknown:
        raise ConfigError(f"{path}: unknown section '{unknown[0]}' (sections: {', '.join(sorted(classes))})")
    dotted = [o for o in overrides if "." in o.split("=", 1)[0]]
    return {name: load_section(cls, name, path, dotted) for name, cls in classes.items() if name in data}


def config_value(key: str, path: str | Path | None, overrides: list[str]) -> Any:
    """The resolved value of `section.key` (nested keys dotted), after checking every section of the file."""
    section, _, rest = key.partition(".")
    classes = section_classes()
    if section not in classes:
        raise ConfigError(f"'{key}': unknown section '{section}' (sections: {', '.join(sorted(classes))})")
    validate_sections(path, overrides)
    value: Any = to_dict(load_section(classes[section], section, path, overrides))
    for part in filter(None, rest.split(".")):
        if not isinstance(value, dict) or part not in value:
            raise ConfigError(f"'{key}': {section} has no key '{rest}'")
        value = value[part]
    return value
