"""Every YAML file in configs/ loads into its sections' typed configs and starts with its command;
`prm config get` resolves values and stops on a typo in any section."""

from __future__ import annotations

import json
import subprocess
import sys
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


def _prm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prm", *args], capture_output=True, text=True, cwd=cwd)


def test_config_get_resolves_overrides():
    quick = str(CONFIGS / "quickstart.yaml")
    assert _prm("config", "get", quick, "train.max_steps", "max_steps=7", "sample.n=2", cwd=CONFIGS).stdout == "7\n"
    lora = json.loads(_prm("config", "get", quick, "train.lora", "train.lora.r=4", cwd=CONFIGS).stdout)
    assert lora["r"] == 4 and lora["modules_to_save"] == ["score"]
    assert _prm("config", "get", str(CONFIGS / "train_tiny.yaml"), "train.output_dir", "output_dir=/x/y",
                cwd=CONFIGS).stdout == "/x/y\n"


@pytest.mark.parametrize("case", ["override", "section", "key", "yaml_section"])
def test_config_get_and_run_fail_on_a_typo_anywhere(tmp_path, case):
    """A bad key in any section stops `prm config get` (and `prm run`) at once: exit 2, one line naming it."""
    config = CONFIGS / "tiny.yaml"
    args = {"override": [str(config), "run.run_dir", "judge.max_tokenz=3"],
            "section": [str(config), "trian.max_steps"],
            "key": [str(config), "train.lora.rank"]}.get(case)
    if case == "yaml_section":
        bad = tmp_path / "bad.yaml"
        bad.write_text(config.read_text() + "\ntrian:\n  max_steps: 3\n")
        args = [str(bad), "run.run_dir"]
    proc = _prm("config", "get", *args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert {"override": "judge.max_tokenz", "section": "unknown section 'trian'", "key": "no key 'lora.rank'",
            "yaml_section": "unknown section 'trian'"}[case] in proc.stderr
    if case in ("override", "yaml_section"):
        run = _prm("run", args[0], f"run.run_dir={tmp_path / 'run'}", *args[2:], cwd=tmp_path)
        assert run.returncode == 2 and "Traceback" not in run.stderr and not (tmp_path / "run").exists()
