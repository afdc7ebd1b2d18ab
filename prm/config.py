"""Typed configs: dataclasses with help text, filled from a YAML file plus `key=value` overrides.

A YAML file in `configs/` holds one section per stage (`problems:`, `sample:`, `mc:`, `train:`, ...);
a stage command reads its own section. Overrides are `key=value` (relative to that section) or
`section.key=value`; nested dataclasses take dotted keys (`lora.r=16`). Values are parsed as YAML
(`n=8`, `lr=1e-5`, `targets=[q_proj,v_proj]`). An unknown key or a wrong type raises `ConfigError`
listing the valid keys with their help.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from prm.errors import ConfigError
from prm.jsonl import MAX_DEPTH, first_problem

C = TypeVar("C")


def option(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:  # noqa: A002
    """A config field with help text (TRL style): `n: int = option(4, help="samples per problem")`."""
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per key: `name (type, default): help`, nested dataclasses flattened with dots."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.extend(describe(tp, f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "required"  # type: ignore[misc]
        )
        lines.append(f"  {prefix}{f.name} ({_type_name(tp)}, default {default!r}): {f.metadata.get('help', '')}")
    return lines


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join("None" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"config key '{key}': expected one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if tp is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer with hundreds of digits
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"config key '{key}': unsupported type {tp!r}")


def build(cls: type[C], values: dict[str, Any], prefix: str = "") -> C:
    """Make `cls` from a (possibly nested) mapping, rejecting unknown keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or cls.__name__}': expected a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names, key=str)  # YAML keys may be numbers
    if unknown:
        valid = "\n".join(describe(cls, prefix))
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'. Valid keys:\n{valid}")
    kwargs = {}
    for name, value in values.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            # `lora:` with nothing under it means the defaults; `lora: false` is a mistake, not the defaults
            kwargs[name] = build(tp, {} if value is None else value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"config {prefix.rstrip('.') or cls.__name__}: {exc}") from None


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """['n=4', 'lora.r=8'] -> {'n': 4, 'lora': {'r': 8}} (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            # A bare NaN or infinity is left to the option's type check, which names the key.
            value = load_yaml_text(raw, allow_non_finite=True) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        except ConfigError as exc:
            raise ConfigError(f"override '{item}': {exc}") from None
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' conflicts with another override of '{part}'")
        node[parts[-1]] = value
    return nested


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class _StrictYamlLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str, allow_non_finite: bool = False) -> Any:
    """YAML as strict as our JSON: no duplicate keys, no .nan/.inf (unless the whole text is that one
    number and `allow_non_finite`), no lone surrogate escape, at most MAX_DEPTH levels (a ConfigError naming
    the key); yaml.YAMLError for bad syntax."""
    try:
        data = yaml.load(text, Loader=_StrictYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels") from None
    if allow_non_finite and isinstance(data, float):
        return data
    problem = first_problem(data)
    if problem is not None:
        raise ConfigError(f"key '{problem.field}': {problem.message}" if problem.field else problem.message)
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: " + ("a directory, not a config file" if path.is_dir() else "no such config file"))
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def load_section(cls: type[C], section: str, path: str | Path | None, overrides: list[str] | None = None) -> C:
    """The config of one stage: section `section` of the YAML file, then the overrides.

    An override `key=v` applies to this section; `section.key=v` too; overrides naming another
    section are ignored here, so one override list can serve a whole `prm run`.
    """
    values: dict[str, Any] = {}
    sections = set(_KNOWN_SECTIONS)
    if path is not None:
        data = read_yaml(path)
        sections |= set(data)
        values = data.get(section) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section '{section}' must be a mapping")
    parsed = parse_overrides(overrides or [])
    own_keys = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, value in parsed.items():
        if key == section and isinstance(value, dict):
            values = deep_merge(values, value)
        elif key not in own_keys and key not in sections and isinstance(value, dict):
            raise ConfigError(f"override '{key}.…': '{key}' is neither a section ({', '.join(sorted(sections))}) "
                              f"nor a key of '{section}'")
        elif key in own_keys or key not in sections:
            values = deep_merge(values, {key: value})
    try:
        return build(cls, values, f"{section}.")
    except ConfigError as exc:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}{exc}") from None


# Top-level section names used by configs/*.yaml; an override naming one of them is routed to it.
_KNOWN_SECTIONS = {"run", "ablation", "problems", "sample", "mc", "judge", "consensus", "train", "eval", "score",
                   "search", "prm_search", "serve"}


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
