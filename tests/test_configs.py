"""Every YAML file in configs/ loads into its sections' typed configs and starts with its command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prm.config import load_section, read_yaml
from prm.sections import section_classes

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
YAML_FILES = sorted(CONFIGS.rglob("*.yaml"))


def test_there_are_configs():
    assert YAML_FILES, "configs/ holds no YAML file"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and path.name in first, f"{path} must begin with a comment giving its command"
    classes = section_classes()
    data = read_yaml(path)
    for section in data:
        assert section in classes, f"{path}: unknown section '{section}' (known: {sorted(classes)})"
        load_section(classes[section], section, path, [])


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.json")), ids=lambda p: p.name)
def test_json_configs_parse(path):
    assert isinstance(json.loads(path.read_text()), dict)
