"""The layers import one way: `lint-imports` keeps pyproject's contracts (`python -m prm`, then the app, then the
stages, independent of each other, then the shared library; no import cycle at any level), every module of prm/
is named in one of its layers, so a new module cannot slip past the contract, and bench/ imports no app module.

import-linter finds a package by walking its folder, and the stage folders sit beside prm/ in the checkout
(pyproject's package-dir maps them under `prm`), so the test lays out the installed shape as a tree of links:
real folders, one link a file."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _layers() -> list[str]:
    contracts = _pyproject()["tool"]["importlinter"]["contracts"]
    return [layer for contract in contracts if contract["type"] == "layers" for layer in contract["layers"]]


def _link_tree(source: Path, target: Path) -> None:
    """Mirror `source`'s .py files under `target` as links, in real folders (import-linter does not follow linked
    folders)."""
    for path in source.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        link = target / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)


def _installed_layout(tmp_path: Path) -> Path:
    """The import names as they install: pyproject's package-dir (`prm.train` -> `train/`), plus testkit."""
    setuptools = _pyproject()["tool"]["setuptools"]
    tree = tmp_path / "tree"
    _link_tree(ROOT / "prm", tree / "prm")
    for name, folder in setuptools["package-dir"].items():
        _link_tree(ROOT / folder, tree.joinpath(*name.split(".")))
    _link_tree(ROOT / "testkit", tree / "testkit")
    return tree


def test_import_contracts_are_kept(tmp_path):
    tree = _installed_layout(tmp_path)
    (tree / "pyproject.toml").symlink_to(ROOT / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # The tree goes first on sys.path, so its prm (with the stages inside) wins over the editable install's.
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path[:0] = [sys.argv[1]]; "
                               "from importlinter.cli import lint_imports; "
                               "sys.exit(lint_imports(no_cache=True, no_logo=True))", str(tree)],
        cwd=tree, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout
    assert "no import cycles" in proc.stdout


def test_every_prm_module_is_in_a_layer():
    named = {name.strip() for layer in _layers() for name in layer.replace("|", ":").split(":")}
    modules = {f"prm.{path.stem}" for path in (ROOT / "prm").glob("*.py") if path.stem != "__init__"}
    modules |= {f"prm.{path.name}" for path in (ROOT / "prm").iterdir() if (path / "__init__.py").exists()}
    modules |= set(_pyproject()["tool"]["setuptools"]["package-dir"])
    assert modules <= named, f"name these modules in a layer of [tool.importlinter]: {sorted(modules - named)}"


def test_packages_list_every_folder_of_prm():
    """The explicit package list of pyproject installs every package folder (a missing one is absent from a wheel)."""
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {"prm"} | {f"prm.{p.parent.name}" for p in (ROOT / "prm").glob("*/__init__.py")}
    found |= set(_pyproject()["tool"]["setuptools"]["package-dir"])
    assert found == listed


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_bench_imports_no_app_module():
    offenders = {f"{path.name}: {name}" for path in (ROOT / "bench").glob("*.py")
                 for name in _imported_modules(path) if name == "prm.app" or name.startswith("prm.app.")}
    assert not offenders, sorted(offenders)
