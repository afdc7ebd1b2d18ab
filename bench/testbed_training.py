"""Does a few minutes of CPU training teach the embedded model to find wrong steps? Trained against untrained.

    python bench/testbed_training.py                                    # ~9 min on 2 CPU cores
    python bench/testbed_training.py --problems 300 train.max_steps=20  # a quicker, weaker run

Runs the README's commands one after another (each `prm` command in its own subprocess):

    prm data problems --source gsm_symbolic -n 1200 --seed 1 -o WORK/problems.jsonl
    prm data testbed -i WORK/problems.jsonl -o WORK/testbed.jsonl --per-problem 2 --error-rate 0.5 \\
        --heldout-fraction 0.2 --heldout-out WORK/heldout.jsonl
    prm data convert WORK/testbed.jsonl WORK/train.jsonl --from ours --to trl --label-source truth
    prm train --config configs/train_testbed.yaml output_dir=WORK/trained data.train_files=[WORK/train.jsonl]
    prm score --model WORK/trained/final -i WORK/val.jsonl -o WORK/scored/trained/val.jsonl   (and test.jsonl)
    prm eval steps -i WORK/scored/trained/val.jsonl -i WORK/scored/trained/test.jsonl --threshold 0.5 -o ...
    prm eval steps -i WORK/scored/trained/val.jsonl -i WORK/scored/trained/test.jsonl --fit-on val -o ...

and evaluates the untrained baseline the same way: the same backbone with the same seed's fresh head, i.e.
the trained model's starting point (`prm.train.baseline.save_untrained`). The held-out problems share nothing with
the training data; their items are split in two: `val` only chooses a threshold (ProcessBench's protocol:
the F1-maximizing one, fitted per model), `test` is what the table reports, with the fixed threshold 0.5 and
with the fitted one. Columns: ProcessBench accuracies and F1, PRMBench-style step F1 (correct steps
positive), negative F1 (wrong steps positive) and PRMScore, and the threshold-free step AUC. JSON to --out.
Extra `key=value` arguments override the `train:` section of --config.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METRICS = [("acc_error", "acc. erroneous"), ("acc_correct", "acc. correct"), ("f1", "ProcessBench F1"),
           ("step_f1", "step F1"), ("step_negative_f1", "step neg. F1"), ("prmscore", "PRMScore"),
           ("step_auc", "step AUC")]


def run(cmd: list[str], log: Path) -> float:
    """Run one command with its output in `log`; the seconds it took. A failure ends the benchmark."""
    env = dict(os.environ, WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO))
    print("$ " + " ".join(cmd), flush=True)
    start = time.time()
    with open(log, "w") as fh:
        code = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if code != 0:
        sys.exit(f"failed with exit {code}; its output is in {log}:\n{log.read_text()[-3000:]}")
    return time.time() - start


def prm(*args: str) -> list[str]:
    return [sys.executable, "-m", "prm", *args]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(REPO / "runs" / "testbed-bench"), help="working folder")
    parser.add_argument("--config", default=str(REPO / "configs" / "train_testbed.yaml"))
    parser.add_argument("--problems", type=int, default=1200, help="gsm_symbolic problems (train + held out)")
    parser.add_argument("--seed", type=int, default=1,
                        help="problem seed (the config's settings were chosen on seed 0's held-out items)")
    parser.add_argument("--per-problem", type=int, default=2, help="testbed solutions per problem")
    parser.add_argument("--heldout-items", type=int, default=300,
                        help="held-out items used (the first N): half to fit a threshold on, half reported")
    parser.add_argument("--skip-train", action="store_true", help="evaluate the model already in WORK/trained")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "testbed_training.json"))
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the train: section")
    args = parser.parse_args()

    from prm.train.baseline import save_untrained
    from prm.train.config import TrainConfig

    from prm.config import load_section
    from prm.jsonl import load_records, write_atomic
    from prm.records import StepErrorItem

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    w = {name: str(work / name) for name in ("problems.jsonl", "testbed.jsonl", "heldout_all.jsonl",
                                             "val.jsonl", "test.jsonl", "train.jsonl", "trained", "untrained")}
    seconds: dict[str, float] = {}
    seconds["data"] = run(prm("data", "problems", "--source", "gsm_symbolic", "-n", str(args.problems),
                              "--seed", str(args.seed), "-o",
                              w["problems.jsonl"]), work / "problems.log")
    for name in ("testbed.jsonl", "heldout_all.jsonl"):
        Path(w[name]).unlink(missing_ok=True)  # the testbed command resumes: start afresh
    seconds["data"] += run(prm("data", "testbed", "-i", w["problems.jsonl"], "-o", w["testbed.jsonl"],
                               "--per-problem", str(args.per_problem), "--error-rate", "0.5",
                               "--heldout-fraction", "0.2", "--heldout-out", w["heldout_all.jsonl"]),
                           work / "testbed.log")
    seconds["data"] += run(prm("data", "convert", w["testbed.jsonl"], w["train.jsonl"], "--from", "ours",
                               "--to", "trl", "--label-source", "truth"), work / "convert.log")
    heldout = load_records(w["heldout_all.jsonl"], StepErrorItem)[: args.heldout_items]
    half = len(heldout) // 2  # items come problem by problem: keep each problem's solutions on one side
    problem_of = [item.id.rsplit("-tb", 1)[0] for item in heldout]
    while 0 < half < len(heldout) and problem_of[half] == problem_of[half - 1]:
        half += 1
    write_atomic(w["val.jsonl"], heldout[:half])
    write_atomic(w["test.jsonl"], heldout[half:])
    n_train = sum(1 for _ in open(w["train.jsonl"]))

    overrides = [f"output_dir={w['trained']}", f"data.train_files=[{w['train.jsonl']}]", "data.val_files=[]",
                 *args.overrides]
    if not args.skip_train:
        seconds["train"] = run(prm("train", "--config", args.config, *overrides), work / "train.log")
    start = time.time()
    save_untrained(load_section(TrainConfig, "train", args.config, overrides), w["untrained"])
    seconds["untrained"] = time.time() - start

    rows: dict[str, dict[str, Any]] = {}
    for name, model in (("trained", f"{w['trained']}/final"), ("untrained", w["untrained"])):
        scored = work / "scored" / name
        scored.mkdir(parents=True, exist_ok=True)
        seconds[f"score_{name}"] = sum(
            run(prm("score", "--model", model, "-i", w[f"{split}.jsonl"], "-o", str(scored / f"{split}.jsonl"),
                    "--no-resume"), work / f"score.{name}.{split}.log") for split in ("val", "test"))
        inputs = [arg for split in ("val", "test") for arg in ("-i", str(scored / f"{split}.jsonl"))]
        for mode, how in (("fixed 0.5", ["--threshold", "0.5"]), ("fitted on val", ["--fit-on", "val"])):
            report = work / f"eval.{name}.{mode.split()[0]}"
            run(prm("eval", "steps", *inputs, *how, "-o", str(report)), work / f"{report.name}.log")
            prm_metrics = json.loads((report / "metrics.json").read_text())["sources"]["prm"]
            rows[f"{name}, {mode}"] = {"threshold": prm_metrics["threshold"], **prm_metrics["splits"]["test"]}
    losses = [json.loads(line) for line in Path(w["trained"], "losses.jsonl").read_text().splitlines()]

    print(f"\n{n_train} training solutions; {len(heldout)} held-out items: {half} to fit a threshold on (val), "
          f"{len(heldout) - half} reported (test); training "
          f"{losses[-1]['elapsed']:.0f} s for {len(losses)} optimizer steps, {sum(r['tokens'] for r in losses)} "
          f"tokens\n")
    header = f"{'model, threshold':26s} {'value':>6s}" + "".join(f" {label:>15s}" for _, label in METRICS)
    print(header + "\n" + "-" * len(header))
    for name, row in rows.items():
        cells = "".join(f" {'-' if row[k] is None else f'{100 * row[k]:.1f}':>15s}" for k, _ in METRICS)
        print(f"{name:26s} {row['threshold']:6.3f}{cells}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "train_config": json.loads(Path(w["trained"], "train_config.json").read_text()),
        "training_solutions": n_train, "val_items": half, "test_items": len(heldout) - half,
        "seconds": seconds,
        "train_steps": len(losses), "train_tokens": sum(r["tokens"] for r in losses),
        "train_seconds": losses[-1]["elapsed"], "metrics": rows,
    }, indent=1) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
