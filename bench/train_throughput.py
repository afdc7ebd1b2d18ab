"""Training throughput: tokens/s and peak memory, packed vs padded, tiny model and the embedded model.

    python bench/train_throughput.py --out bench/results/train_throughput.json
    python bench/train_throughput.py --skip-embedded --steps 8      # tiny model only (a minute)

The embedded model also runs packed in bf16 (every weight trained, then only the top 4 blocks and the
head: `trainable_layers=4`), so the table gives fp32 against bf16 and all weights against the top blocks.

Each configuration is a real `prm train` run (single process, DeepSpeed ZeRO-2, CPU) in its own
subprocess, on toy data (`train/toy_data.py`, 2-12 steps per example, ~60-250 tokens). Both modes get the
same token budget per micro-batch: `micro_batch_size` rows of at most `max_length` tokens; padded rows hold
one example each (padded to the longest in the micro-batch), packed rows are filled with several examples
(block-diagonal attention). Measured from the run's losses.jsonl: real (non-pad) tokens per second over
the optimizer steps after the first (warm-up), labelled steps per second; peak memory = the subprocess's
max RSS (os.wait4), which includes the interpreter, torch, DeepSpeed and the model. On CUDA one would read
torch.cuda.max_memory_allocated instead. One table is printed; JSON goes to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_one(model: str, data: str, out: Path, packed: bool, steps: int, mb: int, max_length: int,
            threads: int, precision: str = "fp32", trainable_layers: int = -1) -> dict[str, Any]:
    overrides = [f"model={model}", f"output_dir={out}", f"data.train_files=[{data}]", "data.val_files=[]",
                 f"max_steps={steps}", "save_every=0", "eval_every=0", "log_every=1", f"precision={precision}",
                 f"trainable_layers={trainable_layers}",
                 "report_to=none", f"data.packing={'true' if packed else 'false'}",
                 f"data.micro_batch_size={mb}", f"data.max_length={max_length}", f"data.pack_length={max_length}",
                 "optim.lr=1e-4"]
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "prm", "train", "--config", str(REPO / "configs" / "train_tiny.yaml"), *overrides]
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
    rows = [json.loads(x) for x in (out / "losses.jsonl").read_text().splitlines()]
    timed = rows[1:]
    seconds = rows[-1]["elapsed"] - rows[0]["elapsed"]
    tokens = sum(r["tokens"] for r in timed)
    labelled = sum(r["steps"] for r in timed)
    slots = len(timed) * mb * max_length
    return {
        "packed": packed, "precision": precision, "trainable_layers": trainable_layers, "steps": steps,
        "micro_batch_size": mb, "max_length": max_length,
        "tokens_per_s": tokens / seconds, "labelled_steps_per_s": labelled / seconds,
        "tokens_per_optimizer_step": tokens / len(timed), "slot_use": tokens / slots,
        "seconds_per_step": seconds / len(timed), "peak_rss_mib": usage.ru_maxrss / 1024,
        "wall_s": time.time() - start, "final_loss": rows[-1]["loss"],
    }


def _blocks(trainable_layers: int) -> str:
    return "all" if trainable_layers < 0 else f"top {trainable_layers}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "train_throughput.json"))
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per tiny-model run")
    parser.add_argument("--embedded-steps", type=int, default=4, help="optimizer steps per embedded-model run")
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-embedded", action="store_true")
    args = parser.parse_args()

    from prm.train.toy_data import toy_examples

    from prm.jsonl import write_atomic
    from prm.models import EMBEDDED_MODEL, resolve_model, save_tiny_causal_lm

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="prm-bench-train-") as tmp:
        root = Path(tmp)
        data = root / "toy.jsonl"
        write_atomic(data, toy_examples(args.examples, seed=0, max_steps=12))
        models = [("tiny (2x64)", save_tiny_causal_lm(root / "tiny"), args.steps)]
        if not args.skip_embedded:
            models.append((EMBEDDED_MODEL, resolve_model(EMBEDDED_MODEL), args.embedded_steps))
        for name, path, steps in models:
            variants = [(False, "fp32", -1), (True, "fp32", -1)]
            if name == EMBEDDED_MODEL:
                variants += [(True, "bf16", -1), (True, "bf16", 4)]
            for packed, precision, trainable in variants:
                out = root / f"{len(results)}"
                row = run_one(path, str(data), out, packed, steps, args.micro_batch_size, args.max_length,
                              args.threads, precision, trainable)
                row["model"] = name
                results.append(row)
                print(f"{name:24s} {'packed' if packed else 'padded'} {precision} {_blocks(trainable)}: "
                      f"{row['tokens_per_s']:.0f} tok/s", flush=True)

    header = (f"{'model':24s} {'mode':7s} {'dtype':5s} {'trained':8s} {'tok/s':>9s} {'steps/s':>8s} "
              f"{'tok/step':>9s} {'slot use':>9s} {'s/step':>7s} {'peak RSS MiB':>13s}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        print(f"{r['model']:24s} {'packed' if r['packed'] else 'padded':7s} {r['precision']:5s} "
              f"{_blocks(r['trainable_layers']):8s} {r['tokens_per_s']:9.0f} "
              f"{r['labelled_steps_per_s']:8.1f} {r['tokens_per_optimizer_step']:9.0f} {r['slot_use']:9.2f} "
              f"{r['seconds_per_step']:7.2f} {r['peak_rss_mib']:13.0f}")
    for name in dict.fromkeys(r["model"] for r in results):
        rate = {(r["packed"], r["precision"], r["trainable_layers"]): r["tokens_per_s"]
                for r in results if r["model"] == name}
        print(f"{name}: packing x{rate[True, 'fp32', -1] / rate[False, 'fp32', -1]:.2f} tokens/s")
        if (True, "bf16", 4) in rate:
            print(f"{name}: bf16 x{rate[True, 'bf16', -1] / rate[True, 'fp32', -1]:.2f} tokens/s over fp32; "
                  f"top 4 blocks x{rate[True, 'bf16', 4] / rate[True, 'bf16', -1]:.2f} over every weight")
    from results_file import write_bench_json

    write_bench_json(args.out, args.threads, {k: v for k, v in vars(args).items() if k != "out"}, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
