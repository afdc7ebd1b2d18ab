"""One import name: run from a folder holding its own train.py, eval.py, data_synthesis.py and testkit.py (each
raising on import), with the package installed and no checkout on PYTHONPATH, every entry point still works:
`python -m prm`, `prm config get` (also under torchrun), `torchrun -m prm train`, and `prm run` on the tiny
chain, whose console carries no library chatter (that goes to RUN_DIR/prm.log). A built wheel holds one
top-level package, `prm`. The Slurm case is tests/slurm/test_slurm_shadowing.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")

# Lines the libraries print on their own; none may reach the console of a quiet run.
CHATTER = ("LOAD REPORT", "mean_resizing", "multivariate normal distribution", "Setting accelerator",
           "[INFO", "DeepSpeedEngine configuration", "Loading weights", "Writing model shards",
           "torch.distributed", "ProcessGroupGloo", "[transformers]")


def _prm(*args: str, cwd: Path, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prm", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _no_shadow(proc: subprocess.CompletedProcess) -> str:
    out = proc.stdout + proc.stderr
    assert "SHADOWED" not in out and "Traceback" not in out, out[-3000:]
    return out


def test_cli_and_config_get_ignore_the_folder_modules(shadow_dir, user_env):
    help_ = _prm("--help", cwd=shadow_dir, env=user_env)
    assert help_.returncode == 0 and "annotate" in _no_shadow(help_)
    for command in (["train", "--help"], ["eval", "bon", "--help"], ["annotate", "mc", "--help"]):
        proc = _prm(*command, cwd=shadow_dir, env=user_env)
        assert proc.returncode == 0, _no_shadow(proc)
    get = _prm("config", "get", TINY, "train.max_steps", "train.max_steps=9", cwd=shadow_dir, env=user_env)
    assert get.returncode == 0 and _no_shadow(get).strip() == "9"
    bad = _prm("config", "get", TINY, "train.max_stepz", cwd=shadow_dir, env=user_env)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "max_stepz" in _no_shadow(bad)
    # The case: the same command under torchrun (whose launcher puts the folder on sys.path too).
    torchrun = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "prm",
                               "config", "get", TINY, "train.deepspeed"], cwd=shadow_dir, env=user_env,
                              capture_output=True, text=True, timeout=120)
    assert torchrun.returncode == 0 and "zero2" in _no_shadow(torchrun)


def test_console_script_ignores_the_folder_modules(shadow_dir, user_env):
    script = Path(sys.executable).parent / "prm"
    if not script.exists():
        pytest.skip(f"no prm console script beside {sys.executable}")
    proc = subprocess.run([str(script), "data", "validate", "--help"], cwd=shadow_dir, env=user_env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, _no_shadow(proc)


@pytest.mark.slow
def test_torchrun_train_from_the_folder(shadow_dir, user_env, tiny_model_dir):
    from prm.train.toy_data import toy_examples

    from prm.jsonl import write_atomic

    data = shadow_dir / "toy.jsonl"
    write_atomic(data, toy_examples(16, 0))
    out = shadow_dir / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "prm", "train",
         "--config", str(REPO / "configs" / "train_tiny.yaml"), f"model={tiny_model_dir}", f"output_dir={out}",
         f"data.train_files=[{data}]", "data.val_files=[]", "max_steps=2", "save_every=0", "eval_every=0",
         "log_every=1", "precision=fp32", "report_to=none"],
        cwd=shadow_dir, env=user_env, capture_output=True, text=True, timeout=300)
    console = _no_shadow(proc)
    assert proc.returncode == 0, console[-3000:]
    assert "step 2/2" in console and (out / "final" / "model.safetensors").exists()
    assert not [line for line in console.splitlines() if any(c in line for c in CHATTER)], console
    assert "Setting accelerator" in (out / "prm.log").read_text()


@pytest.mark.slow
def test_prm_run_from_the_folder_has_a_quiet_console(shadow_dir, user_env, tiny_model_dir):
    """`prm run` starts every stage as `python -m prm ...` in the user's folder; the library chatter of all of
    them lands in RUN_DIR/prm.log, and the console holds the stages' own lines."""
    run_dir = shadow_dir / "run"
    script = Path(sys.executable).parent / "prm"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "prm"]
    m = tiny_model_dir
    proc = subprocess.run(
        [*command, "run", TINY, f"run.run_dir={run_dir}", f"sample.generator.model={m}", f"mc.generator.model={m}",
         f"mc.chat_template_model={m}", f"judge.generator.model={m}", f"train.model={m}"],
        cwd=shadow_dir, env=user_env, capture_output=True, text=True, timeout=900)
    console = _no_shadow(proc)
    assert proc.returncode == 0, console[-3000:]
    assert (run_dir / "report" / "report.md").exists()
    # Each stage's own progress and summary are there ...
    for line in ("[prm run] train: finished in", "step 6/6", "judge: ", "labeled solution(s)", "report: "):
        assert line in console, console
    # ... and none of the libraries' lines: they are in the run's log file.
    noisy = [line for line in console.splitlines() if any(c in line for c in CHATTER)]
    assert not noisy, noisy
    log = (run_dir / "prm.log").read_text()
    assert "LOAD REPORT" in log and "Setting accelerator" in log and "multivariate normal" in log


def test_wheel_holds_one_top_level_package(tmp_path):
    """The wheel installs `prm` only (the stage folders inside it, testkit left out): a built copy of the
    checkout's sources, so the checkout itself gets no build/ or egg-info folders."""
    src = tmp_path / "src"
    for name in ("prm", "data_synthesis", "train", "eval", "testkit"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    wheels = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-q", "-w", str(wheels), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = wheels.glob("prm_pipeline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"prm"}, sorted(top)
    for package in ("prm/data_synthesis", "prm/train", "prm/eval", "prm/app", "prm/scoring"):
        assert f"{package}/__init__.py" in names, package
    assert "prm/data_synthesis/judge.py" in names and "prm/train/trainer.py" in names
    assert "prm/eval/bon.py" in names and "prm/app/cli.py" in names
