"""Which config dataclass reads which top-level section of a configs/*.yaml file.

Imported lazily (stage modules import torch), used by `prm run`, `prm config get` and by the test that loads
every config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prm.config import load_section, read_yaml, to_dict
from prm.errors import ConfigError


def section_classes() -> dict[str, type]:
    """Section name -> config dataclass. Each stage adds its own line here."""
    from data_synthesis.consensus import ConsensusConfig
    from data_synthesis.judge import JudgeConfig
    from data_synthesis.mc import MCConfig
    from data_synthesis.problems import ProblemsConfig
    from data_synthesis.sample import SampleConfig
    from eval.config import EvalConfig
    from eval.scoring_cli import ScoreConfig
    from prm.pipeline import RunConfig
    from train.config import TrainConfig

    classes: dict[str, type] = {}
    classes["run"] = RunConfig
    classes["problems"] = ProblemsConfig
    classes["sample"] = SampleConfig
    classes["judge"] = JudgeConfig
    classes["mc"] = MCConfig
    classes["consensus"] = ConsensusConfig
    classes["eval"] = EvalConfig
    classes["score"] = ScoreConfig
    classes["train"] = TrainConfig
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
