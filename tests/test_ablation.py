"""`prm experiment ablation`: the size-matched control, label accuracy against the truth, bad knobs, and the
whole orchestration (every arm built, trained, scored, reported; a rerun skips finished stages) on a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prm.app.ablation import _save_timings, label_stats, matched_subset
from prm.app.cli import main
from prm.records import TrainingExample

ROOT = Path(__file__).resolve().parents[1]


def _ex(i: int, labels: list[bool]) -> TrainingExample:
    return TrainingExample(prompt="p", completions=[f"s{j}" for j in range(len(labels))], labels=labels, id=f"x{i}")


def test_matched_subset_has_the_size_and_error_share_of_the_other_arm():
    pool = [_ex(i, [True, False] if i % 3 == 0 else [True, True]) for i in range(90)]
    like = [_ex(i, [False]) for i in range(7)] + [_ex(i, [True]) for i in range(13)]
    sub = matched_subset(pool, like, seed=0)
    assert len(sub) == 20 and sum(not all(e.labels) for e in sub) == 7
    assert [e.id for e in sub] == [e.id for e in matched_subset(pool, like, seed=0)]
    assert [e.id for e in sub] != [e.id for e in matched_subset(pool, like, seed=1)]
    with pytest.raises(Exception, match="mc_matched"):
        matched_subset(pool[:5], like, seed=0)


def test_stage_times_of_resumed_runs_add_up(tmp_path):
    path = tmp_path / "report" / "timings.json"
    _save_timings(path, {"train_a": 10.0, "score_a": 2.0})  # the run that stopped during train_b
    total = _save_timings(path, {"train_b": 5.0, "score_a": 1.0})  # the resumed run
    assert total == {"train_a": 10.0, "score_a": 3.0, "train_b": 5.0}
    assert json.loads(path.read_text()) == total


def test_label_stats_against_the_truth():
    truth = {"x0": -1, "x1": 1, "x2": 2}
    examples = [_ex(0, [True, True, True]), _ex(1, [True, False]), _ex(2, [False])]  # right, right, too early
    s = label_stats(examples, truth).summary()
    assert s["examples"] == 3 and s["first_error_accuracy"] == pytest.approx(2 / 3)
    assert s["labelled_steps"] == 6 and s["wrong_step_share"] == pytest.approx(2 / 6)
    assert s["step_label_accuracy"] == pytest.approx(5 / 6)  # x2's step 0 is right, labelled wrong


@pytest.mark.parametrize("override, message", [
    ("ablation.arms=[mc_only,nope]", "unknown arm 'nope'"),
    ("judge.simulated.accuracy_correct=1.5", "judge.simulated.accuracy_correct must be in [0, 1]"),
    ("ablation.error_rate=-0.2", "ablation.error_rate must be in [0, 1]"),
    ("mc.simulated.false_negative=2", "mc.simulated.false_negative must be in [0, 1]"),
    ("ablation.seeds=[]", "ablation.seeds: give each seed once"),
    ("ablation.seeds=[0,1,0]", "ablation.seeds: give each seed once"),
    ("ablation.sweep={keys: [judge.simulated.nope], values: [0.5]}", "'judge.simulated.nope' is not a simulated"),
    ("ablation.sweep={keys: [judge.simulated.accuracy_correct], values: [0.5, 1.5]}",
     "judge.simulated.accuracy_correct must be in [0, 1], got 1.5"),
    ("ablation.sweep={keys: [judge.simulated.accuracy_correct], values: []}", "both non-empty"),
])
def test_bad_knobs_stop_before_any_work(tmp_path, capsys, override, message):
    run_dir = tmp_path / "run"
    code = main(["experiment", "ablation", "--config", str(ROOT / "configs/ablation_tiny.yaml"),
                 f"ablation.run_dir={run_dir}", override])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not run_dir.exists()


@pytest.mark.slow
def test_tiny_ablation_runs_every_arm_and_resumes(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "prm", "experiment", "ablation", "--config", str(ROOT / "configs/ablation_tiny.yaml"),
           f"ablation.run_dir={run_dir}", f"train.model={tiny_model_dir}", "ablation.seeds=null"]  # one seed: the report of one run
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((run_dir / "report" / "report.json").read_text())
    arms = report["arms"]
    assert list(arms) == ["untrained", "mc_only", "judge_only", "consensus", "mc_matched", "consensus_soft",
                          "consensus_soft_mse"]
    cons, matched, mc = arms["consensus"]["labels"], arms["mc_matched"]["labels"], arms["mc_only"]["labels"]
    assert matched["examples"] == cons["examples"] < mc["examples"]
    assert matched["with_error_share"] == pytest.approx(cons["with_error_share"])
    assert arms["consensus_soft"]["soft_labels"] == cons["examples"]  # exhaustive MC: every kept step has a value
    for row in arms.values():
        assert row["heldout"]["step_auc"] is not None and len(row["heldout_ci"]["step_auc"]) == 2
    assert set(report["consensus_minus"]) == {"mc_only", "mc_matched", "judge_only", "consensus_soft",
                                              "consensus_soft_mse", "untrained"}
    assert report["annotators"]["judge"]["accuracy_on_correct"] is not None
    assert (run_dir / "report" / "ablation.png").stat().st_size > 1000
    assert "consensus" in (run_dir / "report" / "report.md").read_text()
    for arm in list(arms)[1:]:  # each trained arm keeps the model it was scored with, not its resume checkpoints
        assert (run_dir / "arms" / arm / "train" / "final" / "config.json").is_file()
        assert not (run_dir / "arms" / arm / "train" / "checkpoints").exists()
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "train_consensus: done already, skipped" in again.stdout


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "prm", "experiment", "ablation", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_tiny_two_seed_ablation_pools_keeps_per_seed_reports_and_resumes(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    # Three arms are enough to pool a paired difference; the seven-arm report is the one-seed test's.
    args = ["--config", str(ROOT / "configs/ablation_tiny.yaml"), f"ablation.run_dir={run_dir}",
            f"train.model={tiny_model_dir}", "ablation.arms=[untrained,mc_only,consensus]"]
    _run(args, tmp_path)
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["seeds"] == [0, 1] and set(report["stage_seconds"]) == {"seed0", "seed1"}
    auc = report["pooled"]["consensus_minus"]["mc_only"]["step_auc"]
    per_seed = [json.loads((run_dir / f"seed{s}" / "report" / "report.json").read_text()) for s in (0, 1)]
    diffs = [r["consensus_minus"]["mc_only"]["step_auc"]["diff"] for r in per_seed]
    assert auc["per_seed"] == diffs and auc["mean"] == pytest.approx(sum(diffs) / 2) and auc["seeds"] == 2
    assert per_seed[0]["settings"]["train"]["seed"] == 0 and per_seed[1]["settings"]["train"]["seed"] == 1
    assert per_seed[1]["settings"]["judge"]["seed"] == 1 and per_seed[1]["settings"]["ablation"]["problem_seed"] == 1
    again = _run(args, tmp_path)  # a finished run: every stage of both seeds is skipped
    assert "train_consensus: done already, skipped" in again.stdout and "step 1/" not in again.stdout


@pytest.mark.slow
def test_tiny_sweep_shares_mc_and_mc_only_per_seed(tmp_path, tiny_model_dir):
    # One seed: what is shared is shared within a seed; pooling over seeds is the two-seed test's (same code).
    run_dir = tmp_path / "run"
    _run(["--config", str(ROOT / "configs/ablation_sweep_tiny.yaml"), f"ablation.run_dir={run_dir}",
          f"train.model={tiny_model_dir}", "ablation.seeds=[3]"], tmp_path)
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["seeds"] == [3] and [row["value"] for row in report["pooled"]] == [0.6, 0.9]
    seed = run_dir / "seed3"
    done = sorted(p.name for p in (seed / ".done").iterdir())
    assert [d for d in done if d.startswith(("annotate_mc", "train_mc_only", "score_untrained"))] == \
        ["annotate_mc", "score_untrained", "train_mc_only"]  # once per seed, not per value
    assert {"train_consensus@0.6", "train_consensus@0.9", "annotate_judge@0.6", "annotate_judge@0.9"} <= set(done)
    timings = json.loads((seed / "sweep_timings.json").read_text())
    assert "train_mc_only" in timings and "train_mc_only@0.6" not in timings
    for row in report["pooled"]:
        assert set(row["consensus_minus"]) >= {"mc_only", "judge_only", "mc_matched"}
    assert (run_dir / "report" / "sweep.png").stat().st_size > 0
