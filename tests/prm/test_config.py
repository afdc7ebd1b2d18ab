"""Typed configs: YAML sections, key=value overrides, and clear errors for unknown keys and wrong types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from prm.config import load_section, option, parse_overrides
from prm.errors import ConfigError


@dataclass
class Lora:
    r: int = option(8, help="LoRA rank")
    targets: list[str] = option(["q_proj", "v_proj"], help="modules to adapt")


@dataclass
class Demo:
    n: int = option(4, help="samples per problem")
    lr: float = option(1e-5, help="learning rate")
    mode: Literal["binary", "exhaustive"] = option("binary", help="search mode")
    output: str | None = option(None, help="output file")
    lora: Lora = field(default_factory=Lora)


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_section_then_overrides(tmp_path):
    path = write(tmp_path, "demo:\n  n: 8\n  lora:\n    r: 16\nother:\n  x: 1\n")
    cfg = load_section(Demo, "demo", path, ["lr=3e-4", "demo.mode=exhaustive", "lora.targets=[a,b]", "other.x=2"])
    assert (cfg.n, cfg.lr, cfg.mode, cfg.lora.r, cfg.lora.targets) == (8, 3e-4, "exhaustive", 16, ["a", "b"])
    assert load_section(Demo, "demo", None, []).lora.targets == ["q_proj", "v_proj"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["nn=3"], "unknown config key 'demo.nn'"),
        (["n=three"], "'demo.n': expected an integer"),
        (["mode=linear"], "expected one of ['binary', 'exhaustive']"),
        (["lora.rank=3"], "unknown config key 'demo.lora.rank'"),
        (["n"], "not of the form key=value"),
    ],
)
def test_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_section(Demo, "demo", None, overrides)
    assert message in str(info.value)


def test_unknown_key_lists_valid_keys_with_help(tmp_path):
    path = write(tmp_path, "demo:\n  samples: 3\n")
    with pytest.raises(ConfigError) as info:
        load_section(Demo, "demo", path, [])
    text = str(info.value)
    assert str(path) in text and "n (int, default 4): samples per problem" in text and "lora.r" in text


def test_parse_overrides_yaml_values():
    assert parse_overrides(["a=1", "b=x", "c.d=true", "e=[1, 2]", "f="]) == {
        "a": 1, "b": "x", "c": {"d": True}, "e": [1, 2], "f": ""}
