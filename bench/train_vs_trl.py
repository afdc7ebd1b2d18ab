"""`prm train` against TRL 1.0.0's PRMTrainer (`trl.experimental.prm`): the same model, data, lengths, batch and
precision, measured side by side in interleaved runs.

    python3 -m venv --system-site-packages .venv-trl && .venv-trl/bin/pip install -c constraints.txt trl==1.0.0
    flock /tmp/prm-measure.lock python3 bench/train_vs_trl.py --trl-python .venv-trl/bin/python
    python3 bench/train_vs_trl.py --trl-python .venv-trl/bin/python --settings tiny --runs 1 --steps 20   # smoke

TRL 1.0 pins nothing that clashes with this project, but it is installed only for this benchmark, in its own
venv (system packages visible, so both sides run the same torch and transformers).

Data: gsm_symbolic testbed solutions with known first errors (`prm data problems`, `prm data testbed`),
exported by `prm data convert --to trl` -- one file read by both trainers. Two settings:
- tiny: a 2-layer hidden-64 random Qwen2 over the SmolLM2 tokenizer, 64 records, max_length 256, 4 rows per
  optimizer step, fp32, every weight trained;
- smollm2: SmolLM2-135M-Instruct (the embedded model), 1200 records, max_length 1024, 2 rows per optimizer
  step (--smollm2-rows), the top 4 blocks, final norm and head trained in both (the CPU setting of
  configs/train_testbed.yaml), fp32 or bf16 (--smollm2-precision; bf16 is worth measuring only on a CPU with
  AVX-512-BF16 or AMX, which the 2-core machine of the README's numbers lacks, so they are fp32).
`prm train` packs each row (up to max_length tokens of whole examples, no attention across them); TRL pads
each batch to its longest example (DataCollatorForTokenClassification) -- its own way of batching. Both run
without gradient checkpointing (PRMConfig turns it on by default; `prm train` leaves it off), and both train
with AdamW at the same learning rate, linear decay, clipping at 1.0 (TRL's optimizer: its default,
adamw_torch_fused).

Each run is its own subprocess with OMP_NUM_THREADS=--threads; runs alternate prm, trl, prm, trl, ...
(interleaved, so drift in machine load hits both). Per run: non-pad tokens/s and labelled steps/s over the
optimizer steps after the warm-up ones, peak RSS (the subprocess's max RSS from wait4, interpreter, torch,
libraries and the final model save included) and the time from process start to the end of the first
optimizer step. The table gives medians over the runs and the prm/trl ratios; JSON goes to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("tiny", "smollm2")


# ------------------------------------------------------------------------------- TRL side (its own venv)

def trl_worker(args: argparse.Namespace) -> int:
    """One PRMTrainer run (executed by the TRL venv's python); per-step records to args.records."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import psutil
    import torch
    import trl
    from datasets import load_dataset
    from transformers import AutoModelForTokenClassification, AutoTokenizer, TrainerCallback
    from trl.experimental.prm import PRMConfig, PRMTrainer

    sys.path.insert(0, str(REPO))
    from prm.train.model_setup import freeze_lower_layers

    started = psutil.Process().create_time()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForTokenClassification.from_pretrained(args.model, num_labels=2, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    if args.trainable_layers >= 0:
        freeze_lower_layers(model, args.trainable_layers)
    counts = {"tokens": 0, "steps": 0}

    def count(module: Any, fwd_args: Any, kwargs: dict[str, Any]) -> None:
        if module.training:
            counts["tokens"] += int(kwargs["attention_mask"].sum())
            counts["steps"] += int((kwargs["labels"] != -100).sum())

    model.register_forward_pre_hook(count, with_kwargs=True)
    records: list[dict[str, Any]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, targs: Any, state: Any, control: Any, **kw: Any) -> None:
            records.append({"step": state.global_step, "time": time.time() - started, **counts})

    config = PRMConfig(
        output_dir=args.output, max_length=args.max_length, max_completion_length=None, step_separator="\n",
        per_device_train_batch_size=args.micro_batch_size, gradient_accumulation_steps=args.grad_accum,
        max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, bf16=args.precision == "bf16", use_cpu=True, seed=0,
        gradient_checkpointing=False,  # PRMConfig's default is True; `prm train`'s is off
        logging_steps=max(args.steps // 4, 1), save_strategy="no", report_to="none", dataloader_num_workers=0,
        disable_tqdm=True)
    data = load_dataset("json", data_files=args.data, split="train")
    trainer = PRMTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                         callbacks=[Clock()])
    trainer.train()
    trainer.save_model(args.output)  # as a user would; `prm train` writes its final/ folder too
    Path(args.records).write_text(json.dumps({"trl": trl.__version__, "optim": str(config.optim),
                                              "records": records}))
    return 0


# ------------------------------------------------------------------------------------------- one run

def _spawn(cmd: list[str], env: dict[str, str]) -> tuple[int, float, str]:
    """(exit code, max RSS in MiB, output) of one subprocess."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024, output


def _rates(times: list[float], tokens: list[int], steps: list[int], warmup: int) -> dict[str, float]:
    """Rates over the optimizer steps after `warmup` from cumulative (time, tokens, labelled steps)."""
    seconds = times[-1] - times[warmup - 1]
    return {"tokens_per_s": (tokens[-1] - tokens[warmup - 1]) / seconds,
            "labelled_steps_per_s": (steps[-1] - steps[warmup - 1]) / seconds,
            "seconds_per_step": seconds / (len(times) - warmup),
            "tokens_per_step": (tokens[-1] - tokens[warmup - 1]) / (len(times) - warmup)}


def run_prm(s: dict[str, Any], out: Path, env: dict[str, str]) -> dict[str, Any]:
    overrides = [f"model={s['model']}", f"output_dir={out}", f"data.train_files=[{s['data']}]", "data.val_files=[]",
                 f"max_steps={s['steps']}", "save_every=0", "eval_every=0", f"log_every={max(s['steps'] // 4, 1)}",
                 f"precision={s['precision']}", f"trainable_layers={s['trainable_layers']}", "report_to=none",
                 "data.packing=true", f"data.max_length={s['max_length']}", f"data.pack_length={s['max_length']}",
                 f"data.micro_batch_size={s['micro_batch_size']}", f"gradient_accumulation_steps={s['grad_accum']}",
                 f"optim.lr={s['lr']}", "optim.head_lr=0", "optim.schedule=linear", "optim.warmup_steps=0",
                 "optim.weight_decay=0", "optim.grad_clip=1.0", "class_weights=[1.0,1.0]", "loss=hard"]
    cmd = [sys.executable, "-m", "prm", "train", "--config", str(REPO / "configs" / "train_tiny.yaml"), *overrides]
    code, rss, output = _spawn(cmd, env)
    if code != 0:
        raise RuntimeError(f"prm train failed ({code}):\n{output[-3000:]}")
    rows = [json.loads(x) for x in (out / "losses.jsonl").read_text().splitlines()]
    first = float(re.search(r"first optimizer step ([\d.]+) s after the process started", output).group(1))
    # `elapsed` counts from the start of the loop; shift it to seconds since process start like TRL's records.
    offset = first - rows[0]["elapsed"]
    times = [r["elapsed"] + offset for r in rows]
    tokens = [sum(r["tokens"] for r in rows[:i + 1]) for i in range(len(rows))]
    steps = [sum(r["steps"] for r in rows[:i + 1]) for i in range(len(rows))]
    return {"first_step_s": first, "peak_rss_mib": rss, "final_loss": rows[-1]["loss"],
            **_rates(times, tokens, steps, s["warmup"])}


def run_trl(s: dict[str, Any], out: Path, env: dict[str, str], trl_python: str) -> dict[str, Any]:
    records = out / "trl_records.json"
    cmd = [trl_python, str(Path(__file__).resolve()), "--trl-worker", "--model", s["model"], "--data", s["data"],
           "--output", str(out), "--records", str(records), "--steps", str(s["steps"]),
           "--max-length", str(s["max_length"]), "--micro-batch-size", str(s["micro_batch_size"]),
           "--grad-accum", str(s["grad_accum"]), "--precision", s["precision"], "--lr", str(s["lr"]),
           "--trainable-layers", str(s["trainable_layers"])]
    code, rss, output = _spawn(cmd, env)
    if code != 0:
        raise RuntimeError(f"TRL PRMTrainer failed ({code}):\n{output[-3000:]}")
    data = json.loads(records.read_text())
    rows = data["records"]
    return {"first_step_s": rows[0]["time"], "peak_rss_mib": rss, "trl": data["trl"], "optim": data["optim"],
            **_rates([r["time"] for r in rows], [r["tokens"] for r in rows], [r["steps"] for r in rows],
                     s["warmup"])}


# ------------------------------------------------------------------------------------------- data, models

def _prm(*args: str, env: dict[str, str]) -> None:
    res = subprocess.run([sys.executable, "-m", "prm", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"prm {' '.join(args)} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")


def make_data(root: Path, n_problems: int, env: dict[str, str]) -> str:
    """Testbed solutions (2 per problem) exported to TRL's stepwise format by `prm data convert --to trl`."""
    problems, testbed, trl = (root / f"{n}.jsonl" for n in ("problems", "testbed", "train.trl"))
    _prm("data", "problems", "--source", "gsm_symbolic", "-n", str(n_problems), "--seed", "1", "-o", str(problems),
         env=env)
    _prm("data", "testbed", "-i", str(problems), "-o", str(testbed), "--per-problem", "2", "--error-rate", "0.5",
         "--seed", "0", env=env)
    _prm("data", "convert", str(testbed), str(trl), "--from", "ours", "--to", "trl", "--label-source", "truth",
         env=env)
    return str(trl)


def make_tiny_qwen2(path: Path) -> str:
    """A 2-layer hidden-64 random Qwen2 causal LM over the embedded model's tokenizer (both trainers add the
    token-classification head themselves)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from prm.models import EMBEDDED_MODEL, load_tokenizer

    tok = load_tokenizer(EMBEDDED_MODEL)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=False, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


# --------------------------------------------------------------------------------------------- start-up

def startup(model: str, data: str, root: Path, env: dict[str, str], nproc: int) -> dict[str, Any]:
    """Two `prm train` runs of 2 steps on the tiny model, HOME holding a foreign op cache: the folder
    ~/.cache/torch_extensions/<py>_cpu/deepspeed_shm_comm as another DeepSpeed version leaves it, which a
    run using the shared default folder would rebuild. Seconds to the first optimizer step of each run, and
    whether that folder was left untouched."""
    home = root / f"home-{nproc}"
    foreign = home / ".cache" / "torch_extensions" / f"py{sys.version_info.major}{sys.version_info.minor}_cpu" / \
        "deepspeed_shm_comm"
    foreign.mkdir(parents=True)
    (foreign / "build.ninja").write_text("# built by another DeepSpeed version\n")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in foreign.iterdir())
    env = dict(env, HOME=str(home), PRM_CACHE=str(home / ".cache" / "prm"))
    env.pop("TORCH_EXTENSIONS_DIR", None)
    firsts = []
    for i in range(2):
        out = root / f"startup-{nproc}-{i}"
        launch = [sys.executable, "-m", "prm"] if nproc == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "prm"]
        cmd = [*launch, "train", "--config", str(REPO / "configs" / "train_tiny.yaml"), f"model={model}",
               f"output_dir={out}", f"data.train_files=[{data}]", "data.val_files=[]", "max_steps=2",
               "save_every=0", "eval_every=0", "precision=fp32", "report_to=none"]
        code, _, output = _spawn(cmd, env)
        if code != 0:
            raise RuntimeError(f"prm train failed ({code}):\n{output[-3000:]}")
        firsts.append(float(re.search(r"first optimizer step ([\d.]+) s", output).group(1)))
    untouched = sorted((p.name, p.stat().st_mtime_ns) for p in foreign.iterdir()) == before
    return {"processes": nproc, "first_step_s": firsts, "foreign_cache_untouched": untouched}


# ------------------------------------------------------------------------------------------------ main

def summarize(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("tokens_per_s", "labelled_steps_per_s", "peak_rss_mib", "first_step_s", "seconds_per_step",
            "tokens_per_step")
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "train_vs_trl.json"))
    parser.add_argument("--trl-python", default=sys.executable, help="python of the venv that has trl==1.0.0")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of tiny,smollm2")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs per trainer and setting")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per tiny run")
    parser.add_argument("--smollm2-steps", type=int, default=10, help="optimizer steps per SmolLM2 run (2 warm-up)")
    parser.add_argument("--smollm2-rows", type=int, default=2, help="rows per SmolLM2 optimizer step")
    parser.add_argument("--smollm2-precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-startup", action="store_true", help="skip the start-up runs")
    # --trl-worker: internal, one TRL run inside the TRL venv
    parser.add_argument("--trl-worker", action="store_true", help=argparse.SUPPRESS)
    for flag in ("--model", "--data", "--output", "--records", "--precision"):
        parser.add_argument(flag, help=argparse.SUPPRESS)
    for flag, kind in (("--max-length", int), ("--micro-batch-size", int), ("--grad-accum", int),
                       ("--lr", float), ("--trainable-layers", int)):
        parser.add_argument(flag, type=kind, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_worker:
        return trl_worker(args)

    check = subprocess.run([args.trl_python, "-c", "import trl; print(trl.__version__)"], capture_output=True,
                           text=True)
    if check.returncode != 0 or check.stdout.strip() != "1.0.0":
        print(f"error: {args.trl_python} has no trl 1.0.0 (make its venv as the docstring says)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from prm.models import EMBEDDED_MODEL, resolve_model

    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRL_EXPERIMENTAL_SILENCE="1")
    chosen = [s for s in args.settings.split(",") if s]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="prm-bench-trl-") as tmp:
        root = Path(tmp)
        full = make_data(root, 600, env)  # 1200 records
        tiny_data = root / "tiny.trl.jsonl"
        tiny_data.write_text("".join(Path(full).read_text().splitlines(keepends=True)[:64]))
        settings = {
            "tiny": {"model": make_tiny_qwen2(root / "tiny-qwen2"), "data": str(tiny_data), "max_length": 256,
                     "micro_batch_size": 4, "grad_accum": 1, "precision": "fp32", "trainable_layers": -1,
                     "steps": args.steps, "warmup": max(args.steps // 10, 1), "lr": 1e-4},
            "smollm2": {"model": resolve_model(EMBEDDED_MODEL), "data": full, "max_length": 1024,
                        "micro_batch_size": args.smollm2_rows, "grad_accum": 1, "precision": args.smollm2_precision,
                        "trainable_layers": 4, "steps": args.smollm2_steps, "warmup": 2, "lr": 1e-4},
        }
        for name in chosen:
            s = settings[name]
            per: dict[str, list[dict[str, Any]]] = {"prm": [], "trl": []}
            for i in range(args.runs):
                for trainer in ("prm", "trl") if i % 2 == 0 else ("trl", "prm"):
                    out = root / f"{name}-{trainer}-{i}"
                    row = run_prm(s, out, env) if trainer == "prm" else run_trl(s, out, env, args.trl_python)
                    per[trainer].append(row)
                    print(f"{name} {trainer} run {i + 1}: {row['tokens_per_s']:.0f} tok/s, "
                          f"{row['labelled_steps_per_s']:.1f} labelled steps/s, {row['peak_rss_mib']:.0f} MiB, "
                          f"first step {row['first_step_s']:.1f} s", flush=True)
            med = {t: summarize(rows) for t, rows in per.items()}
            ratio = {k: med["prm"][k] / med["trl"][k] for k in med["prm"]}
            results[name] = {"setting": {k: v for k, v in s.items() if k not in ("model", "data")},
                             "model": "SmolLM2-135M-Instruct" if name == "smollm2" else "tiny Qwen2 (2x64)",
                             "runs": per, "median": med, "ratio_prm_over_trl": ratio}

        if not args.skip_startup:
            results["startup"] = [startup(settings["tiny"]["model"], str(tiny_data), root, env, n) for n in (1, 2)]

    header = (f"{'setting':8s} {'trainer':8s} {'tok/s':>8s} {'labelled/s':>10s} {'tok/step':>8s} {'s/step':>7s} "
              f"{'peak RSS MiB':>12s} {'1st step s':>10s}")
    print("\n" + header + "\n" + "-" * len(header))
    for name, r in results.items():
        if name == "startup":
            continue
        for trainer in ("prm", "trl"):
            m = r["median"][trainer]
            print(f"{name:8s} {trainer:8s} {m['tokens_per_s']:8.0f} {m['labelled_steps_per_s']:10.1f} "
                  f"{m['tokens_per_step']:8.0f} {m['seconds_per_step']:7.3f} {m['peak_rss_mib']:12.0f} "
                  f"{m['first_step_s']:10.1f}")
        q = r["ratio_prm_over_trl"]
        print(f"{name:8s} {'prm/trl':8s} {q['tokens_per_s']:7.2f}x {q['labelled_steps_per_s']:9.2f}x "
              f"{q['tokens_per_step']:7.2f}x {q['seconds_per_step']:6.2f}x {q['peak_rss_mib']:11.2f}x "
              f"{q['first_step_s']:9.2f}x")
    for r in results.get("startup", []):
        print(f"start-up, {r['processes']} process(es), tiny model, foreign op cache in ~/.cache/torch_extensions"
              f"{' left untouched' if r['foreign_cache_untouched'] else ' TOUCHED'}: first optimizer step after "
              f"{r['first_step_s'][0]:.1f} s (first run), {r['first_step_s'][1]:.1f} s (second run)")
    from results_file import write_bench_json

    write_bench_json(args.out, args.threads, {k: v for k, v in vars(args).items()
                                              if k in ("runs", "steps", "smollm2_steps", "smollm2_precision",
                                                       "smollm2_rows", "threads", "settings")}, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
