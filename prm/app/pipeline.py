"""`prm run CONFIG`: the whole chain in one run directory, skipping stages that already finished.

    prm run configs/quickstart.yaml                  # embedded model on CPU, ends with RUN_DIR/report/report.md
    prm run configs/quickstart.yaml run.run_dir=runs/other sample.n=8

Stages (each one is the stage's own `prm` command, run as a subprocess with the same config file):
problems -> split (policy / BoN / testbed problems) -> sample -> testbed (solutions with known first errors,
plus held-out step-error items) -> annotation set (the policy samples + the first `run.annotate_testbed`
testbed solutions) -> annotate mc -> annotate judge -> consensus -> train -> untrained baseline -> sample BoN
pools -> score (trained and untrained) -> eval steps / eval bon -> report.

Training data: the consensus examples (what MC and the judge agreed on), as in the paper. The testbed's
truth labels are an opt-in addition (`run.train_on_testbed`); the testbed solutions that were annotated are
never added twice. The report says how many examples came from each source, and how well each annotator
matched the truth on the annotated testbed solutions.

A stage that exits 0 leaves `RUN_DIR/.done/<stage>` holding its command; a rerun skips it when the command
is unchanged. A stage killed part-way is simply run again: every stage resumes its own output.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from prm import console
from prm.app.sections import RunConfig
from prm.config import load_section, read_yaml
from prm.errors import PrmError
from prm.jsonl import load_records, write_atomic, write_text_atomic
from prm.records import Problem, Solution


def _prm(*args: str) -> list[str]:
    return [sys.executable, "-m", "prm", *args]


class Runner:
    """Runs stage commands in order, recording which finished."""

    def __init__(self, run_dir: Path, dry_run: bool = False, only: set[str] | None = None):
        self.run_dir = run_dir
        self.only = only
        self.done_dir = run_dir / ".done"
        if not dry_run:  # a dry run only prints
            self.done_dir.mkdir(parents=True, exist_ok=True)
        self.dry_run = dry_run
        self.timings: dict[str, float] = {}
        self.skipped: list[str] = []

    def path(self, name: str) -> str:
        return str(self.run_dir / name)

    def is_done(self, stage: str, command: list[str]) -> bool:
        marker = self.done_dir / stage
        return marker.exists() and marker.read_text() == shlex.join(command)

    def mark_done(self, stage: str, command: list[str]) -> None:
        write_text_atomic(self.done_dir / stage, shlex.join(command))

    def _skip(self, name: str, command: list[str]) -> bool:
        """True for a stage outside `--stages`, or one already done with this very command (said so)."""
        if self.only is not None and name not in self.only:
            return True
        if self.is_done(name, command):
            print(f"[prm run] {name}: done already, skipped", flush=True)
            self.skipped.append(name)
            return True
        return False

    def stage(self, name: str, command: list[str]) -> None:
        if self._skip(name, command):
            return
        print(f"[prm run] {name}: {shlex.join(command)}", flush=True)
        if self.dry_run:
            return
        start = time.time()
        proc = subprocess.run(command, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        self.timings[name] = time.time() - start
        if proc.returncode != 0:
            raise PrmError(f"stage '{name}' failed (exit {proc.returncode}); fix it and rerun `prm run`: "
                           "finished stages are skipped and this one resumes")
        self.mark_done(name, command)
        print(f"[prm run] {name}: finished in {self.timings[name]:.0f} s", flush=True)

    def python_stage(self, name: str, key: str, fn) -> None:
        """A small in-process step (splitting files); `key` stands in for the command in the done marker."""
        if self._skip(name, [key]):
            return
        if self.dry_run:
            print(f"[prm run] {name}: (in-process step)", flush=True)
            return
        start = time.time()
        fn()
        self.timings[name] = time.time() - start
        self.mark_done(name, [key])


def split_problems(src: str, run: RunConfig, out: dict[str, str]) -> None:
    """First `policy_problems` -> policy, next `bon_problems` -> BoN, the rest -> testbed."""
    problems = load_records(src, Problem)
    need = run.policy_problems + run.bon_problems + 4
    if len(problems) < need:
        raise PrmError(f"{src}: {len(problems)} problems, the run needs at least {need} "
                       "(raise problems.n)")
    a, b = run.policy_problems, run.policy_problems + run.bon_problems
    write_atomic(out["policy"], problems[:a])
    write_atomic(out["bon"], problems[a:b])
    write_atomic(out["testbed"], problems[b:])


def annotation_set(samples: str, testbed: str, n_testbed: int, out: str, rest: str) -> None:
    """The solutions the annotators label: every policy sample, then the first `n_testbed` testbed solutions
    (their `true_first_error` measures each annotator); the other testbed solutions go to `rest`."""
    policy = load_records(samples, Solution)
    bed = load_records(testbed, Solution)
    write_atomic(out, policy + bed[:n_testbed])
    write_atomic(rest, bed[n_testbed:])


def count_lines(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def save_untrained(config: str, overrides: list[str], out: str) -> None:
    """The untrained baseline of the config's `train:` section (prm/train/baseline.py)."""
    from prm.train.baseline import save_untrained as save_baseline
    from prm.train.config import TrainConfig

    save_baseline(load_section(TrainConfig, "train", config, overrides), out)


STAGES = ("problems", "split", "sample", "testbed", "annotation_set", "annotate_mc", "annotate_judge", "consensus",
          "testbed_to_trl", "heldout_to_trl", "train", "untrained", "sample_bon", "score_steps_trained", "score_bon_trained",
          "eval_steps_trained", "eval_bon_trained", "score_steps_untrained", "score_bon_untrained",
          "eval_steps_untrained", "eval_bon_untrained")

# The Slurm jobs of slurm/submit_pipeline.sh that run stages of this chain (`prm run C --stages JOB`); MC
# annotation runs as an array of `prm annotate mc` shards and training as `prm train` on several nodes.
JOBS = {
    "prep": ("problems", "split", "sample", "testbed", "annotation_set", "testbed_to_trl", "heldout_to_trl"),
    "judge": ("annotate_judge",),
    "consensus": ("consensus",),
    "eval": STAGES[STAGES.index("untrained"):],
}


def expand_stages(names: list[str]) -> list[str]:
    """Stage names, with each Slurm job name (JOBS) replaced by its stages."""
    out = [stage for name in names for stage in JOBS.get(name, (name,))]
    unknown = sorted(set(out) - set(STAGES))
    if unknown:
        raise PrmError(f"unknown stage '{unknown[0]}'; stages: {', '.join(STAGES)}; jobs: {', '.join(JOBS)}")
    return out


def run_pipeline(config: str, overrides: list[str], dry_run: bool = False, stages: list[str] | None = None) -> Path:
    """Run the chain; `stages` restricts it to those stages or jobs (the Slurm scripts run the rest as jobs)."""
    stages = expand_stages(stages) if stages is not None else None
    bare = [o for o in overrides if "." not in o.split("=", 1)[0]]
    if bare:
        raise PrmError(f"`prm run` overrides name their section (sample.n=8, train.max_steps=50): got {bare[0]}")
    from prm.app.stages import validate_sections

    validate_sections(config, overrides)  # a typo in any section fails now, not when its stage comes
    run = load_section(RunConfig, "run", config, overrides)
    sections = read_yaml(config)
    missing = [s for s in ("problems", "sample", "mc", "judge", "consensus", "train", "eval") if s not in sections]
    if missing:
        raise PrmError(f"{config}: `prm run` needs the sections {', '.join(missing)}")
    rd = Path(run.run_dir)
    r = Runner(rd, dry_run, set(stages) if stages else None)
    if not dry_run:  # every stage appends its library messages to the run's log (PRM_LOG_FILE)
        log = console.use_log_file(rd / console.LOG_NAME)
        print(f"[prm run] library messages: {log}" + ("" if os.environ.get(console.VERBOSE_ENV) == "1"
                                                         else " (--verbose shows them here too)"), flush=True)
    p = r.path
    cfg = ["--config", config]
    ov = [o for o in overrides if not o.startswith("run.")]
    start = time.time()

    r.stage("problems", _prm("data", "problems", *cfg, "-o", p("problems.jsonl"), *ov))
    split = {"policy": p("problems.policy.jsonl"), "bon": p("problems.bon.jsonl"), "testbed": p("problems.testbed.jsonl")}
    r.python_stage("split", json.dumps([run.policy_problems, run.bon_problems]),
                   lambda: split_problems(p("problems.jsonl"), run, split))

    r.stage("sample", _prm("sample", *cfg, "-i", split["policy"], "-o", p("samples.jsonl"), *ov))
    # The testbed: solutions with known first errors (some annotated below, the rest optional training data)
    # and the held-out step-error benchmark.
    r.stage("testbed", _prm("data", "testbed", "-i", split["testbed"], "-o", p("testbed.jsonl"),
                            "--per-problem", str(run.testbed_per_problem), "--error-rate",
                            str(run.testbed_error_rate), "--seed", str(run.seed), "--heldout-fraction",
                            str(run.heldout_fraction), "--heldout-out", p("heldout_steps.jsonl")))
    r.python_stage("annotation_set", json.dumps(["annotate", run.annotate_testbed]),
                   lambda: annotation_set(p("samples.jsonl"), p("testbed.jsonl"), run.annotate_testbed,
                                          p("annotate.jsonl"), p("testbed.rest.jsonl")))

    # The annotation chain: MC rollouts and the judge label the same solutions; consensus keeps agreements.
    r.stage("annotate_mc", _prm("annotate", "mc", *cfg, "-i", p("annotate.jsonl"), "-o", p("mc.jsonl"), *ov))
    r.stage("annotate_judge", _prm("annotate", "judge", *cfg, "-i", p("annotate.jsonl"), "-o", p("judged.jsonl"),
                                   *ov))
    r.stage("consensus", _prm("consensus", *cfg, "--mc", p("mc.jsonl"), "--judge", p("judged.jsonl"),
                              "-o", p("consensus.jsonl"), "--train", p("train.consensus.jsonl"),
                              "--report", p("consensus_report"), *ov))

    train_files = [p("train.consensus.jsonl")]
    if run.train_on_testbed:
        r.stage("testbed_to_trl", _prm("data", "convert", p("testbed.rest.jsonl"), p("train.testbed.jsonl"),
                                       "--from", "ours", "--to", "trl", "--label-source", "truth"))
        train_files.append(p("train.testbed.jsonl"))
    r.stage("heldout_to_trl", _prm("data", "convert", p("heldout_steps.jsonl"), p("val.heldout.jsonl"),
                                   "--from", "processbench", "--to", "trl"))
    data = (f"train.data.train_files=[{','.join(train_files)}]", f"train.data.val_files=[{p('val.heldout.jsonl')}]")
    if (not dry_run and (r.only is None or "train" in r.only) and not run.train_on_testbed
            and Path(train_files[0]).exists() and count_lines(train_files[0]) == 0):
        raise PrmError(f"{train_files[0]}: consensus kept no solution, so there is nothing to train on (see "
                       f"{p('consensus_report.md')}); add the testbed's truth labels with run.train_on_testbed=true")
    train_cmd = _prm("train", *cfg, f"train.output_dir={p('train')}", *data, *ov, "--resume")
    if run.train_processes > 1:
        train_cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                     f"--nproc_per_node={run.train_processes}", "-m", "prm", *train_cmd[3:]]
    r.stage("train", train_cmd)
    trained = p("train/final")
    untrained = p("untrained")
    r.python_stage("untrained", untrained, lambda: save_untrained(config, overrides, untrained))

    r.stage("sample_bon", _prm("sample", *cfg, "-i", split["bon"], "-o", p("bon_samples.jsonl"),
                               *ov, f"sample.n={run.bon_samples}"))
    for name, model in (("trained", trained), ("untrained", untrained)):
        r.stage(f"score_steps_{name}", _prm("score", *cfg, "--model", model, "-i", p("heldout_steps.jsonl"),
                                            "-o", p(f"scored/steps.{name}.jsonl"), *ov))
        r.stage(f"score_bon_{name}", _prm("score", *cfg, "--model", model, "-i", p("bon_samples.jsonl"),
                                          "-o", p(f"scored/bon.{name}.jsonl"), *ov))
        r.stage(f"eval_steps_{name}", _prm("eval", "steps", *cfg, "-i", p(f"scored/steps.{name}.jsonl"),
                                           "-o", p(f"report/steps.{name}"), *ov))
        r.stage(f"eval_bon_{name}", _prm("eval", "bon", *cfg, "-i", p(f"scored/bon.{name}.jsonl"),
                                         "-o", p(f"report/bon.{name}"), *ov))
    if not dry_run:
        from prm.app.run_report import write_run_report

        write_run_report(rd, time.time() - start, r.timings, r.skipped, train_files)
        print(f"[prm run] report: {rd / 'report' / 'report.md'}")
    return rd
