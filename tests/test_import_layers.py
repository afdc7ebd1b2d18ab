"""The layers import one way: `lint-imports` keeps pyproject's contract (the app on top, the stages in the middle,
independent of each other, the shared library below), and every module of prm/ is named in one of its layers,
so a new module cannot slip past the contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _layers() -> list[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return [layer for contract in contracts if contract["type"] == "layers" for layer in contract["layers"]]


def test_import_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                               "sys.exit(lint_imports(no_cache=True, no_logo=True))"],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_every_prm_module_is_in_a_layer():
    named = {name.strip() for layer in _layers() for name in layer.replace("|", ":").split(":")}
    modules = {f"prm.{path.stem}" for path in (ROOT / "prm").glob("*.py") if path.stem != "__init__"}
    modules |= {f"prm.{path.name}" for path in (ROOT / "prm").iterdir() if (path / "__init__.py").exists()}
    assert modules <= named, f"name these modules in a layer of [tool.importlinter]: {sorted(modules - named)}"
