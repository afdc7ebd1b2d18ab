"""`prm experiment ablation`: does consensus filtering train a better PRM than MC labels alone? A controlled
data ablation on the synthetic testbed, where every label's truth is known.

    prm experiment ablation --config configs/ablation_testbed.yaml          # the full run (see the README)
    prm experiment ablation --config configs/ablation_quick.yaml            # a quick look
    prm experiment ablation --config configs/ablation_testbed.yaml ablation.seed=1 mc.simulated.false_negative=0.3

Stages (each a `prm` command run as a subprocess with the same config file, as `prm run` does; a finished
stage is skipped on a rerun, so a killed run continues; training resumes from its last checkpoint):
problems (gsm_symbolic) -> testbed (solutions with known first errors, incl. flawed steps with a right answer,
held-out items by problem) -> `prm annotate mc` (the simulated MC annotator, section `mc:`) -> `prm annotate
judge` (the simulated judge, section `judge:`) -> one training file per arm -> `prm train` per arm (section
`train:`, the same steps and seed for every arm) -> `prm score` + `prm eval steps` on the same held-out items
-> `RUN_DIR/report/`: report.json, report.md and ablation.png.

Arms (`ablation.arms`):
- `mc_only`: every MC label (`prm consensus rule=mc_only`); `judge_only`: every parsed judge label;
- `consensus`: MC and judge agree on the first error (`rule=exact`, the Qwen2.5-Math-PRM filter);
- `mc_matched`: a seeded random subset of the MC-only examples with the consensus arm's size and share of
  examples with an error: the control that separates "cleaner labels" from "less data";
- `consensus_soft`: the consensus examples with soft labels (MC values, soft cross-entropy, `loss=soft`);
- `consensus_soft_mse`: the same with `loss=soft_mse` (MSE of P(correct) against the MC value);
- `untrained`: the backbone with a fresh head (the same seed): the floor.
The report gives per arm the examples, the class balance, the labels' accuracy against the truth (first error
per example, and per labelled step) and the held-out step metrics with bootstrap intervals, plus paired
bootstrap intervals of the differences (the same item resamples for both arms) for consensus vs each other arm.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prm.app.pipeline import Runner, _prm, save_untrained
from prm.app.sections import ARMS, NAMES, SHOWN, AblationConfig
from prm.config import load_section
from prm.errors import ConfigError, PrmError
from prm.jsonl import load_records, write_atomic, write_text_atomic
from prm.records import Solution, TrainingExample

# What the README's three questions compare: consensus against each of these, paired on the same items.
COMPARISONS = ("mc_only", "mc_matched", "judge_only", "consensus_soft", "consensus_soft_mse", "untrained")


@dataclass
class LabelStats:
    """What one arm's training examples say, against the testbed's truth."""

    examples: int = 0
    with_error: int = 0  # examples whose labels flag a wrong step
    steps: int = 0  # labelled steps
    wrong_steps: int = 0  # ... labelled wrong
    first_error_right: int = 0  # examples whose first flagged step (or none) is the true first error
    steps_right: int = 0  # labelled steps whose label is the truth
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def share(a: int, b: int) -> float | None:
            return a / b if b else None

        return {"examples": self.examples, "with_error_share": share(self.with_error, self.examples),
                "labelled_steps": self.steps, "wrong_step_share": share(self.wrong_steps, self.steps),
                "first_error_accuracy": share(self.first_error_right, self.examples),
                "step_label_accuracy": share(self.steps_right, self.steps)}


def label_stats(examples: list[TrainingExample], truth: dict[str, int]) -> LabelStats:
    stats = LabelStats()
    for ex in examples:
        tfe = truth[str(ex.id)]
        first = next((j for j, ok in enumerate(ex.labels) if not ok), -1)
        stats.examples += 1
        stats.with_error += first >= 0
        stats.steps += len(ex.labels)
        stats.wrong_steps += sum(not ok for ok in ex.labels)
        stats.first_error_right += first == tfe
        stats.steps_right += sum(ok == (tfe == -1 or j < tfe) for j, ok in enumerate(ex.labels))
    return stats


def matched_subset(pool: list[TrainingExample], like: list[TrainingExample], seed: int) -> list[TrainingExample]:
    """A seeded random subset of `pool` with as many examples as `like` and the same number flagging an error."""
    def flags(ex: TrainingExample) -> bool:
        return not all(ex.labels)

    want_err = sum(map(flags, like))
    want_ok = len(like) - want_err
    err = [ex for ex in pool if flags(ex)]
    ok = [ex for ex in pool if not flags(ex)]
    if want_err > len(err) or want_ok > len(ok):
        raise PrmError(f"mc_matched: the MC arm has {len(err)} examples with an error and {len(ok)} without; the "
                       f"consensus arm needs {want_err} and {want_ok}")
    rng = random.Random(f"mc_matched:{seed}")
    chosen = {id(ex) for ex in rng.sample(err, want_err) + rng.sample(ok, want_ok)}
    return [ex for ex in pool if id(ex) in chosen]  # pool order: the trainer shuffles with its own seed


SEED_KEYS = ("ablation.seed", "ablation.problem_seed", "mc.simulated.seed", "judge.simulated.seed", "train.seed")
SWEEP_ARMS = ["untrained", "mc_only", "judge_only", "consensus", "mc_matched"]


def seed_overrides(seed: int) -> list[str]:
    """What seed s of `ablation.seeds` sets: the one-seed run `ablation.seed=s ablation.problem_seed=s
    mc.simulated.seed=s judge.simulated.seed=s train.seed=s` is that seed's run."""
    return [f"{key}={seed}" for key in SEED_KEYS]


def run_ablation(config: str, overrides: list[str]) -> Path:
    """Run (or continue) the experiment; returns the report folder."""
    from prm.app.stages import validate_sections

    sections = validate_sections(config, overrides)  # every section's keys are checked before any work
    ab = load_section(AblationConfig, "ablation", config, overrides)
    for name in ("mc", "judge", "train"):
        if name not in sections:
            raise ConfigError(f"{config}: the ablation needs a `{name}:` section")
    mc, judge = sections["mc"], sections["judge"]
    if mc.backend != "simulated" or judge.backend != "simulated":
        raise ConfigError(f"{config}: the ablation runs on the testbed's simulated annotators: set mc.backend and "
                          "judge.backend to simulated")
    if ab.sweep is not None:
        _check_sweep(ab.sweep, config, overrides)
    if ab.seeds is None and ab.sweep is None:
        out = _run_one(config, overrides, ab)
        print(f"[prm experiment] report: {out / 'report.md'}")
        return out
    from prm.app.ablation_pooled import write_pooled, write_sweep

    rd = Path(ab.run_dir)
    seeds = ab.seeds if ab.seeds is not None else [ab.seed]
    for s in seeds:
        ov = [o for o in overrides if not o.startswith("ablation.seeds=")] + seed_overrides(s)
        ab_s = dataclasses.replace(ab, seed=s, problem_seed=s, seeds=None, sweep=None, run_dir=str(rd / f"seed{s}"))
        print(f"[prm experiment] seed {s}: {ab_s.run_dir}", flush=True)
        if ab.sweep is None:
            _run_one(config, ov, ab_s)
        else:
            _run_sweep_seed(config, ov, ab_s, ab.sweep)
    out = write_sweep(rd, ab, seeds) if ab.sweep is not None else write_pooled(rd, ab, seeds)
    print(f"[prm experiment] pooled report: {out / 'report.md'}")
    return out


def _check_sweep(sweep: dict, config: str, overrides: list[str]) -> None:
    """Every sweep key names a simulated-judge knob and every value passes that knob's own range check."""
    from prm.data_synthesis.judge import JudgeConfig
    from prm.data_synthesis.simulated_judge import SimulatedJudgeConfig

    knobs = [f.name for f in dataclasses.fields(SimulatedJudgeConfig) if f.name != "seed"]
    for key in sweep["keys"]:
        if not str(key).startswith("judge.simulated.") or key.split(".", 2)[2] not in knobs:
            raise ConfigError(f"ablation.sweep.keys: '{key}' is not a simulated-judge knob; knobs: "
                              + ", ".join(f"judge.simulated.{k}" for k in knobs))
    for value in sweep["values"]:
        load_section(JudgeConfig, "judge", config, overrides + [f"{k}={value}" for k in sweep["keys"]])


def _shared_stages(r: Runner, ab: AblationConfig, cfg: list[str], ov: list[str]) -> None:
    p = r.path
    r.stage("problems", _prm("data", "problems", "--source", "gsm_symbolic", "-n", str(ab.problems),
                             "--seed", str(ab.problem_seed), "-o", p("problems.jsonl")))
    r.stage("testbed", _prm("data", "testbed", "-i", p("problems.jsonl"), "-o", p("testbed.jsonl"),
                            "--per-problem", str(ab.per_problem), "--error-rate", str(ab.error_rate),
                            "--flawed-correct-rate", str(ab.flawed_correct_rate), "--seed", str(ab.seed),
                            "--heldout-fraction", str(ab.heldout_fraction), "--heldout-out", p("heldout.jsonl")))
    r.stage("annotate_mc", _prm("annotate", "mc", *cfg, "-i", p("testbed.jsonl"), "-o", p("mc.jsonl"), *ov))


def _judge_stages(r: Runner, ab: AblationConfig, cfg: list[str], ov: list[str], base: Path, arms: list[str],
                  tag: str = "") -> None:
    """Judge annotation, the consensus rules the arms need and the size-matched subset, under `base`."""
    r.stage(f"annotate_judge{tag}", _prm("annotate", "judge", *cfg, "-i", r.path("mc.jsonl"),
                                         "-o", str(base / "judged.jsonl"), *ov))
    rules = sorted({ARMS[a][0] for a in arms if ARMS[a][0]} | ({"exact", "mc_only"} if "mc_matched" in arms
                                                               else set()))
    for rule in rules:
        d = base / "data"
        r.stage(f"consensus_{rule}{tag}", _prm("consensus", *cfg, "-i", str(base / "judged.jsonl"),
                                               "-o", str(d / f"{rule}.jsonl"), "--train", str(d / f"{rule}.train.jsonl"),
                                               "--report", str(d / f"{rule}.report"), *ov, f"consensus.rule={rule}"))
    if "mc_matched" in arms:
        d = base / "data"
        r.python_stage(f"mc_matched{tag}", f"mc_matched:{ab.seed}:{d}", lambda: write_atomic(
            d / "mc_matched.train.jsonl",
            matched_subset(load_records(d / "mc_only.train.jsonl", TrainingExample),
                           load_records(d / "exact.train.jsonl", TrainingExample), ab.seed)))


def _arm_stages(r: Runner, ab: AblationConfig, config: str, ov: list[str], arm: str, base: Path,
                tag: str = "") -> None:
    """Train (or build, for untrained), score and evaluate one arm under `base/arms/<arm>`."""
    cfg = ["--config", config]
    rule, loss = ARMS[arm]
    a = base / "arms" / arm
    model = str(a / "train" / "final")
    if arm == "untrained":
        model = str(a / "model")
        r.python_stage(f"untrained{tag}", model, lambda m=model: save_untrained(config, ov, m))
    else:
        data = base / "data" / ("mc_matched.train.jsonl" if arm == "mc_matched" else f"{rule}.train.jsonl")
        r.stage(f"train_{arm}{tag}", _prm("train", *cfg, *ov, f"train.output_dir={a / 'train'}",
                                          f"train.data.train_files=[{data}]", "train.data.val_files=[]",
                                          "train.eval_every=0", f"train.loss={loss}", "--resume"))
        if not ab.keep_checkpoints:  # the stage finished, so nothing resumes from them; final/ is what is scored
            shutil.rmtree(a / "train" / "checkpoints", ignore_errors=True)
    r.stage(f"score_{arm}{tag}", _prm("score", *cfg, "--model", model, "-i", r.path("heldout.jsonl"),
                                      "-o", str(a / "scored.jsonl"), *ov))
    r.stage(f"eval_{arm}{tag}", _prm("eval", "steps", *cfg, "-i", str(a / "scored.jsonl"), "-o", str(a / "eval"),
                                     "--threshold", str(ab.threshold), "--bootstrap", str(ab.bootstrap),
                                     "--confidence", str(ab.confidence), "--seed", str(ab.seed), *ov))


def _seed_runner(config: str, overrides: list[str], ab: AblationConfig) -> tuple[Path, Runner, list[str], list[str]]:
    """One seed's run folder, its stage runner, the --config arguments and the overrides passed on to the stages
    (the ablation.* keys are the experiment's own, not the stages')."""
    rd = Path(ab.run_dir)
    return rd, Runner(rd), ["--config", config], [o for o in overrides if not o.startswith("ablation.")]


def _run_one(config: str, overrides: list[str], ab: AblationConfig) -> Path:
    """One seed's ablation under ab.run_dir (resumable); returns its report folder."""
    rd, r, cfg, ov = _seed_runner(config, overrides, ab)
    start = time.time()
    try:
        _shared_stages(r, ab, cfg, ov)
        # The judge reads the MC output, so its correlation knob can see where MC erred.
        _judge_stages(r, ab, cfg, ov, rd, ab.arms)
        for arm in ab.arms:
            _arm_stages(r, ab, config, ov, arm, rd)
    except BaseException:  # a stage failed or the run was stopped: its stage times still count in the total
        _save_timings(rd / "report" / "timings.json", r.timings)
        raise
    return write_report(rd, ab, config, overrides, time.time() - start, r.timings)


def _run_sweep_seed(config: str, overrides: list[str], ab: AblationConfig, sweep: dict) -> None:
    """One seed of the judge-accuracy sweep: problems, testbed and MC annotation once (MC does not read the
    judge), untrained and mc_only trained and scored once; judge annotation and the judge-dependent arms
    (judge_only, consensus, mc_matched) once per value under RUN_DIR/seed<s>/judge<v>/, whose arms/untrained,
    arms/mc_only, testbed.jsonl and heldout.jsonl link to the shared ones so each value gets a full report."""
    rd, r, cfg, ov = _seed_runner(config, overrides, ab)
    try:
        _sweep_seed_stages(config, ab, sweep, rd, r, cfg, ov)
    finally:  # also when a stage fails or the run is stopped: the stage times of every run add up
        _save_timings(rd / "sweep_timings.json", r.timings)


def _sweep_seed_stages(config: str, ab: AblationConfig, sweep: dict, rd: Path, r: Runner, cfg: list[str],
                       ov: list[str]) -> None:
    start = time.time()
    _shared_stages(r, ab, cfg, ov)
    values = sweep["values"]
    first = rd / f"judge{values[0]}"
    for value in values:
        vd = rd / f"judge{value}"
        vov = ov + [f"{k}={value}" for k in sweep["keys"]]
        _judge_stages(r, ab, cfg, vov, vd, ["consensus", "judge_only", "mc_matched"], tag=f"@{value}")
    # mc_only's data: rule mc_only reads only the MC labels, so the first value's file serves the one training.
    shared_data = rd / "data" / "mc_only.train.jsonl"
    if not shared_data.is_symlink():
        shared_data.parent.mkdir(parents=True, exist_ok=True)
        shared_data.symlink_to(Path("..") / first.name / "data" / "mc_only.train.jsonl")
    for arm in ("untrained", "mc_only"):
        _arm_stages(r, ab, config, ov, arm, rd)
    for value in values:
        vd = rd / f"judge{value}"
        vov = ov + [f"{k}={value}" for k in sweep["keys"]]
        for arm in ("judge_only", "consensus", "mc_matched"):
            _arm_stages(r, ab, config, vov, arm, vd, tag=f"@{value}")
        (vd / "arms").mkdir(parents=True, exist_ok=True)
        for name, target in (("testbed.jsonl", "../testbed.jsonl"), ("heldout.jsonl", "../heldout.jsonl"),
                             ("arms/untrained", "../../arms/untrained"), ("arms/mc_only", "../../arms/mc_only")):
            if not (vd / name).is_symlink():
                (vd / name).symlink_to(target)
        ab_v = dataclasses.replace(ab, run_dir=str(vd), arms=SWEEP_ARMS)
        write_report(vd, ab_v, config, vov, time.time() - start, {k: v for k, v in r.timings.items()})


def _save_timings(path: Path, timings: dict[str, float]) -> dict[str, float]:
    """Add this run's stage seconds to those of earlier (resumed) runs in `path`; returns the sums."""
    previous = json.loads(path.read_text()) if path.exists() else {}
    total = {k: round(previous.get(k, 0.0) + v, 1) for k, v in timings.items()}
    total.update({k: v for k, v in previous.items() if k not in total})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(total, indent=2) + "\n")
    return total


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------


def _paired(rd: Path, ab: AblationConfig) -> dict[str, dict[str, Any]]:
    """consensus minus each other arm, per metric: the point difference and a paired bootstrap interval."""
    import numpy as np

    from prm.eval.bootstrap import group_rng, percentile_interval, resample_counts
    from prm.eval.data import load_step_items
    from prm.eval.step_error import resampled_metrics

    if "consensus" not in ab.arms:
        return {}
    items = {arm: load_step_items(rd / "arms" / arm / "scored.jsonl") for arm in ab.arms}
    n = len(items["consensus"])
    counts = np.vstack([np.ones((1, n)), resample_counts(n, ab.bootstrap, group_rng(ab.seed, "ablation"))])
    base = resampled_metrics(items["consensus"], ab.threshold, counts)
    out = {}
    for other in (a for a in COMPARISONS if a in ab.arms):
        assert [it.id for it in items[other]] == [it.id for it in items["consensus"]], other
        theirs = resampled_metrics(items[other], ab.threshold, counts)
        row = {}
        for key in SHOWN:
            diff = base[key] - theirs[key]
            low, high = percentile_interval(diff[1:, None], ab.confidence) if ab.bootstrap else (None, None)
            point = None if np.isnan(diff[0]) else float(diff[0])
            ci = None if low is None or np.isnan(low[0]) else [float(low[0]), float(high[0])]
            row[key] = {"diff": point, "ci": ci, "separated": ci is not None and (ci[0] > 0 or ci[1] < 0)}
        out[other] = row
    return out


def write_report(rd: Path, ab: AblationConfig, config: str, overrides: list[str], seconds: float,
                 timings: dict[str, float]) -> Path:
    """report.json, report.md and ablation.png under RUN_DIR/report from the arms' outputs."""
    testbed = load_records(rd / "testbed.jsonl", Solution)
    truth = {s.id: int(s.extra["true_first_error"]) for s in testbed}
    judged = load_records(rd / "judged.jsonl", Solution)
    annotators = {"mc": _annotator_accuracy(judged, "mc"), "judge": _annotator_accuracy(judged, "judge")}
    arms: dict[str, Any] = {}
    for arm in ab.arms:
        rule, loss = ARMS[arm]
        row: dict[str, Any] = {"loss": loss or None}
        if arm != "untrained":
            data = rd / "data" / ("mc_matched.train.jsonl" if arm == "mc_matched" else f"{rule}.train.jsonl")
            examples = load_records(data, TrainingExample)
            row["labels"] = label_stats(examples, truth).summary()
            row["soft_labels"] = sum(ex.soft_labels is not None for ex in examples)
        metrics = json.loads((rd / "arms" / arm / "eval" / "metrics.json").read_text())
        average = metrics["sources"]["prm"]["average"]
        row["heldout"] = {key: average.get(key) for key in SHOWN}
        row["heldout_ci"] = {key: (average.get("ci") or {}).get(key) for key in SHOWN}
        arms[arm] = row
    report = {
        "config": config, "overrides": overrides, "settings": _settings(config, overrides, ab),
        "seconds_this_run": round(seconds, 1), "stage_seconds": {k: round(v, 1) for k, v in timings.items()},
        "testbed": {"training_solutions": len(testbed),
                    "with_error": sum(t >= 0 for t in truth.values()),
                    "flawed_right_answer": sum(truth[s.id] >= 0 and s.correct for s in testbed)},
        "heldout_items": _heldout_counts(rd / "arms" / ab.arms[0] / "eval" / "metrics.json"),
        "annotators": annotators, "arms": arms, "consensus_minus": _paired(rd, ab),
    }
    out = rd / "report"
    out.mkdir(parents=True, exist_ok=True)
    # wall time across resumed runs, added up
    report["stage_seconds_all_runs"] = _save_timings(rd / "report" / "timings.json", report["stage_seconds"])
    write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / "report.md", report_markdown(report))
    _chart(report, out / "ablation.png")
    return out


def _settings(config: str, overrides: list[str], ab: AblationConfig) -> dict[str, Any]:
    import dataclasses

    from prm.data_synthesis.judge import JudgeConfig
    from prm.data_synthesis.mc import MCConfig
    from prm.train.config import TrainConfig

    mc = load_section(MCConfig, "mc", config, overrides)
    judge = load_section(JudgeConfig, "judge", config, overrides)
    train = load_section(TrainConfig, "train", config, overrides)
    return {"ablation": dataclasses.asdict(ab),
            "mc": {"mode": mc.mode, "k": mc.k, **dataclasses.asdict(mc.simulated)},
            "judge": dataclasses.asdict(judge.simulated),
            "train": {"model": train.model, "max_steps": train.max_steps, "trainable_layers": train.trainable_layers,
                      "seed": train.seed, "lr": train.optim.lr, "class_weights": train.class_weights}}


def _annotator_accuracy(records: list[Solution], which: str) -> dict[str, Any]:
    err = [s for s in records if s.extra["true_first_error"] >= 0]
    ok = [s for s in records if s.extra["true_first_error"] == -1]
    flawed = [s for s in err if s.correct]

    def acc(group: list[Solution]) -> float | None:
        if not group:
            return None
        return sum(getattr(s, which).first_error == s.extra["true_first_error"] for s in group) / len(group)

    return {"accuracy_on_erroneous": acc(err), "accuracy_on_correct": acc(ok),
            "accuracy_on_flawed_right_answer": acc(flawed), "solutions": len(records)}


def _heldout_counts(metrics_path: Path) -> dict[str, int]:
    splits = json.loads(metrics_path.read_text())["sources"]["prm"]["splits"]
    return {k: sum(s[k] for s in splits.values()) for k in ("n_error", "n_correct", "n_error_answer_correct")}


def _pct(value: float | None, ci: list[float] | None = None, signed: bool = False) -> str:
    if value is None:
        return "–"
    text = f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def report_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    a, mc, judge, train = s["ablation"], s["mc"], s["judge"], s["train"]
    ho = report["heldout_items"]
    lines = [
        "# Data ablation on the synthetic testbed",
        "",
        f"Testbed: {a['problems']} gsm_symbolic problems x {a['per_problem']} (seed {a['seed']}), error rate "
        f"{a['error_rate']}, flawed-but-right-answer rate {a['flawed_correct_rate']}; "
        f"{report['testbed']['training_solutions']} training solutions "
        f"({report['testbed']['with_error']} with an error, {report['testbed']['flawed_right_answer']} of them with "
        f"a right final answer); held out: {ho['n_error'] + ho['n_correct']} items ({ho['n_error']} erroneous, "
        f"{ho['n_error_answer_correct']} of them with a right final answer).",
        f"MC: simulated, {mc['mode']}, k={mc['k']}, per-rollout noise {mc['noise']}, false negatives "
        f"{mc['false_negative']}, false positives {mc['false_positive']}. Judge: simulated, accuracy "
        f"{judge['accuracy_erroneous']} (erroneous) / {judge['accuracy_correct']} (correct), correlation with MC "
        f"errors {judge['correlation']}.",
        f"Training: {train['model']}, {train['max_steps']} steps, top {train['trainable_layers']} blocks + head, seed "
        f"{train['seed']}, lr {train['lr']}, class weights {train['class_weights']}. Threshold {a['threshold']} "
        f"(fixed). Intervals: {100 * a['confidence']:g}% percentile bootstrap over held-out items "
        f"({a['bootstrap']} resamples).",
        "",
        "Measured annotator accuracy against the truth (first error): "
        + "; ".join(f"{name} {_pct(v['accuracy_on_erroneous'])} on erroneous, {_pct(v['accuracy_on_correct'])} on "
                    f"correct, {_pct(v['accuracy_on_flawed_right_answer'])} on flawed-right-answer solutions"
                    for name, v in report["annotators"].items()) + ".",
        "",
        "## Training data per arm",
        "",
        "| arm | loss | examples | with an error | wrong steps | first error = truth | step label = truth |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for arm, row in report["arms"].items():
        lab = row.get("labels")
        if lab is None:
            lines.append(f"| {arm} | – | 0 | – | – | – | – |")
            continue
        lines.append(f"| {arm} | {row['loss']} | {lab['examples']} | {_pct(lab['with_error_share'])} | "
                     f"{_pct(lab['wrong_step_share'])} | {_pct(lab['first_error_accuracy'])} | "
                     f"{_pct(lab['step_label_accuracy'])} |")
    lines += ["", "## Held-out metrics (%, with intervals)", "",
              "| arm | " + " | ".join(NAMES[k] for k in SHOWN) + " |", "|---|" + "---:|" * len(SHOWN)]
    for arm, row in report["arms"].items():
        lines.append(f"| {arm} | " + " | ".join(_pct(row["heldout"][k], row["heldout_ci"][k]) for k in SHOWN) + " |")
    if report["consensus_minus"]:
        lines += ["", "## Consensus minus each arm (points, paired bootstrap interval; * = interval excludes 0)", "",
                  "| vs | " + " | ".join(NAMES[k] for k in SHOWN) + " |", "|---|" + "---:|" * len(SHOWN)]
        for other, row in report["consensus_minus"].items():
            cells = [_pct(row[k]["diff"], row[k]["ci"], signed=True) + (" *" if row[k]["separated"] else "")
                     for k in SHOWN]
            lines.append(f"| {other} | " + " | ".join(cells) + " |")
    lines += ["", f"Wall time of this run: {report['seconds_this_run']:.0f} s.", "", "![arms](ablation.png)", ""]
    return "\n".join(lines)


def _chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = ("step_auc", "f1", "acc_error_answer_correct")
    arms = list(report["arms"])
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8))
    for ax, key in zip(axes, keys, strict=True):
        values = [report["arms"][a]["heldout"][key] for a in arms]
        cis = [report["arms"][a]["heldout_ci"][key] for a in arms]
        y = np.array([100 * v if v is not None else np.nan for v in values])
        err = np.array([[100 * (v - c[0]), 100 * (c[1] - v)] if c and v is not None else [0, 0]
                        for v, c in zip(values, cis, strict=True)]).T
        colors = ["#4c72b0" if a.startswith("consensus") else "#999999" if a == "untrained" else "#dd8452" for a in arms]
        ax.bar(range(len(arms)), y, yerr=err, capsize=3, color=colors)
        ax.set_xticks(range(len(arms)), arms, rotation=40, ha="right", fontsize=8)
        ax.set_title(NAMES[key], fontsize=10)
        ax.set_ylabel("%")
    fig.suptitle("Held-out step metrics per training arm (95% bootstrap intervals)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
