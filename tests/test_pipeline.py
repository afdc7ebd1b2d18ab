"""`prm run` end to end on the tiny config: killed part-way, rerun, finishes without redoing finished stages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prm.app.pipeline import STAGES

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "prm", "run", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kwargs)


def test_run_killed_then_resumed(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    overrides = [f"run.run_dir={run_dir}", f"sample.generator.model={tiny_model_dir}",
                 f"mc.generator.model={tiny_model_dir}", f"mc.chat_template_model={tiny_model_dir}",
                 f"judge.generator.model={tiny_model_dir}", f"train.model={tiny_model_dir}"]
    config = str(REPO / "configs" / "tiny.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    first = _run([config, *overrides], tmp_path, env=env)
    deadline = time.time() + 300
    while not (run_dir / ".done" / "annotate_mc").exists():
        assert first.poll() is None, first.stdout.read()
        assert time.time() < deadline, "annotate_mc did not finish in 300 s"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the whole process group: prm run and the stage it started
    first.wait()
    finished = sorted(p.name for p in (run_dir / ".done").iterdir())
    samples_before = (run_dir / "samples.jsonl").read_bytes()

    second = _run([config, *overrides], tmp_path, env=env)
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out
    for stage in finished:
        assert f"[prm run] {stage}: done already, skipped" in out, out
    assert (run_dir / "samples.jsonl").read_bytes() == samples_before
    assert sorted(p.name for p in (run_dir / ".done").iterdir()) == sorted(STAGES)

    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert set(report["steps"]) == {"trained", "untrained"} and set(report["bon"]) == {"trained", "untrained"}
    assert set(report["skipped"]) >= set(finished)
    markdown = (run_dir / "report" / "report.md").read_text()
    assert "![Best-of-N](bon_trained_vs_untrained.png)" in markdown
    assert (run_dir / "report" / "bon_trained_vs_untrained.png").stat().st_size > 0

    third = _run([config, *overrides], tmp_path, env=env)
    out, _ = third.communicate(timeout=120)
    assert third.returncode == 0 and "finished in" not in out, out  # nothing left to do


def test_run_rejects_bare_overrides(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "prm", "run", str(REPO / "configs" / "tiny.yaml"), "n=3"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "name their section" in proc.stderr and "Traceback" not in proc.stderr
