"""The one-GPU check of `prm train` (issue 21): DeepSpeed ZeRO-2 / ZeRO-3 bf16 packed training of a PRM at
Qwen2.5-0.5B shape (random weights from a config built here: no hub), LoRA, the two-layer head, SIGTERM then
--resume against an uninterrupted run, `prm score` on the final folder, sdpa against flash-attn varlen.

    bash bench/gpu_check.sh            # one H100/H200, <= 8 min; table + bench/results/gpu_check.json
    bash bench/gpu_check.sh --cpu      # the same steps on tiny shapes on the CPU (a few minutes)

Every row is a real `prm train` (or `prm score`) subprocess. tokens/s and MFU are the trainer's own log line
at the last step (tokens over the wall time since the first step began; MFU = model FLOPs / (time x peak)),
peak GPU memory is torch.cuda.max_memory_allocated from losses.jsonl (n/a on CPU). On the CPU, ZeRO-2/3
run in one process from copies of the presets given as JSON files (a preset in one CPU process runs without
ZeRO, as it has nothing to shard), so the ZeRO code paths run there too. The attention comparison: the zero2
row runs `attention: auto` (flash-attn varlen on a GPU with flash_attn, per-example sdpa elsewhere), and
one more row forces transformers' sdpa with the row's block mask.
The tokenizer is the embedded SmolLM2's (PRM_GPU_CHECK_TOKENIZER: a folder, carried in the checkout's
.gpu_check/ for a machine without the cache), so the vocabulary is 49k rather than Qwen's 152k.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Qwen2.5-0.5B's shape (config.json of Qwen/Qwen2.5-0.5B) and a tiny one for --cpu.
GPU_SHAPE = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0,
                 tie_word_embeddings=True, rms_norm_eps=1e-6)
CPU_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True)


def build_backbone(folder: Path, shape: dict[str, Any], tokenizer_source: str, cuda: bool) -> str:
    """A random Qwen2 causal LM of `shape` over the tokenizer, saved as a folder `prm train` accepts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    tok = AutoTokenizer.from_pretrained(tokenizer_source)
    config = Qwen2Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, **shape)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def tokenizer_source() -> str:
    if os.environ.get("PRM_GPU_CHECK_TOKENIZER"):
        return os.environ["PRM_GPU_CHECK_TOKENIZER"]
    carried = REPO / ".gpu_check" / "tokenizer"
    if (carried / "tokenizer.json").is_file():
        return str(carried)
    from prm.models import EMBEDDED_MODEL, resolve_model

    return resolve_model(EMBEDDED_MODEL)


def _env() -> dict[str, str]:
    return dict(os.environ, WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
                PYTHONUNBUFFERED="1")


def run_train(name: str, work: Path, overrides: list[str], resume: bool = False,
              expect: int = 0) -> dict[str, Any]:
    out = work / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    cmd = [sys.executable, "-m", "prm", "train", "--config", str(REPO / "configs" / "train_tiny.yaml"),
           f"output_dir={out}", *overrides] + (["--resume"] if resume else [])
    t0 = time.time()
    # cwd: not the checkout's root, where `python -m prm` would import the checkout's prm/ (without the stage
    # packages an install maps into it) ahead of the installed shape on PYTHONPATH (the GPU machine's link tree).
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, cwd=work)
    wall = time.time() - t0
    if res.returncode != expect:
        sys.stderr.write(res.stdout[-3000:] + res.stderr[-5000:])
        raise SystemExit(f"gpu_check: {name}: exit {res.returncode}, expected {expect}")
    rows = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    steps = re.findall(r"step \d+/\d+ .* (\d+) tok/s\s+MFU (\S+)", res.stdout)
    tok_s, mfu = (float(steps[-1][0]), steps[-1][1]) if steps else (None, "n/a")
    peak = max((r.get("peak_mem_mib", 0) for r in rows), default=0) or None
    attention = re.search(r"attention: (.+)", res.stdout)
    return {"name": name, "out": str(out), "losses": [r["loss"] for r in rows], "tok_s": tok_s, "mfu": mfu,
            "peak_mem_mib": peak, "wall_s": round(wall, 1), "attention": attention.group(1) if attention else "",
            "exit": res.returncode}


def ds_file(work: Path, preset: str, cpu: bool) -> str:
    """The preset, or on the CPU a copy of it as a file of one's own (kept as written: ZeRO really runs)."""
    if not cpu:
        return preset
    path = work / f"{preset}.json"
    shutil.copy(REPO / "configs" / "deepspeed" / f"{preset}.json", path)
    return str(path)


def score(work: Path, final: str, data: Path, cuda: bool) -> dict[str, Any]:
    from prm.train.toy_data import toy_examples

    items = []
    for i, ex in enumerate(toy_examples(16, seed=7)):
        wrong = [k for k, v in enumerate(ex.labels) if not v]
        items.append({"id": f"toy-{i}", "generator": "toy", "problem": ex.prompt, "steps": ex.completions,
                      "final_answer_correct": not wrong, "label": wrong[0] if wrong else -1})
    inp = work / "score_in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in items))
    out = work / "scored.jsonl"
    cmd = [sys.executable, "-m", "prm", "score", "--model", final, "-i", str(inp), "-o", str(out),
           "--device", "cuda" if cuda else "cpu", "--no-resume"]
    t0 = time.time()
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, cwd=work)  # cwd: as run_train's
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-2000:] + res.stderr[-4000:])
        raise SystemExit(f"gpu_check: prm score: exit {res.returncode}")
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    ok = len(scored) == len(items) and all(len(r["step_scores"]) == len(r["steps"]) and
                                           all(0.0 <= p <= 1.0 for p in r["step_scores"]) for r in scored)
    return {"items": len(scored), "ok": ok, "seconds": round(time.time() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU (what CI runs)")
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps a run (default 12 GPU, 6 CPU)")
    ap.add_argument("--work", default="", help="working folder (default: a temporary one, removed)")
    ap.add_argument("--out", default="", help="JSON results (default bench/results/gpu_check[_cpu].json)")
    args = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    if not args.cpu and not cuda:
        raise SystemExit("gpu_check: no CUDA GPU here; run with --cpu for the CPU form")
    steps = args.steps or (12 if cuda else 6)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="prm-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    model = build_backbone(work / "backbone", GPU_SHAPE if cuda else CPU_SHAPE, tokenizer_source(), cuda)
    from prm.train.toy_data import toy_examples

    from prm.jsonl import write_atomic

    data = work / "train.jsonl"
    write_atomic(data, toy_examples(4000 if cuda else 96, seed=0))
    pack = 4096 if cuda else 512
    mb = 4 if cuda else 2
    common = [f"model={model}", f"data.train_files=[{data}]", "data.val_files=[]", f"max_steps={steps}",
              "save_every=0", "eval_every=0", "log_every=1", "report_to=none", "data.packing=true",
              f"data.max_length={pack}", f"data.pack_length={pack}", f"data.micro_batch_size={mb}",
              "optim.lr=1e-4", f"precision={'bf16' if cuda else 'fp32'}"]
    z2, z3 = ds_file(work, "zero2", args.cpu), ds_file(work, "zero3", args.cpu)
    rows = [run_train("zero2", work, common + [f"deepspeed={z2}"]),
            run_train("zero3", work, common + [f"deepspeed={z3}"]),
            run_train("zero2_lora", work, common + [f"deepspeed={z2}", "lora.enabled=true"]),
            run_train("zero2_two_layer_head", work, common + [f"deepspeed={z2}", "head=two_layer"])]
    # SIGTERM mid-run (rank 0 signals itself after step steps//2), then --resume; against the zero2 row.
    half = steps // 2
    stopped = run_train("zero2_resumed", work, common + [f"deepspeed={z2}", f"debug_signal_at_step={half}"],
                        expect=75)
    resumed = run_train("zero2_resumed", work, common + [f"deepspeed={z2}"], resume=True)
    reference = rows[0]["losses"]
    diff = max((abs(a - b) for a, b in zip(resumed["losses"], reference, strict=True)), default=float("inf")) \
        if len(resumed["losses"]) == len(reference) else float("inf")
    # GPU kernels (atomics in backward) need not be bitwise deterministic; the CPU run is.
    resume_ok = diff <= (1e-3 if cuda else 1e-6)
    rows.append({**resumed, "name": f"zero2 SIGTERM at {half} + --resume", "exit": f"{stopped['exit']}, 0",
                 "max_loss_diff": diff})
    # Attention: the zero2 row ran `attention: auto` (flash-attn varlen on a GPU that has flash_attn, else
    # per-example sdpa); this row forces transformers' sdpa with the row's block mask, same data and steps.
    import importlib.util

    flash = cuda and importlib.util.find_spec("flash_attn") is not None
    rows.append(run_train("zero2 attention=sdpa (row mask)", work, common + [f"deepspeed={z2}", "attention=sdpa"]))
    rows[-1]["max_loss_diff_vs_zero2"] = max(abs(a - b) for a, b in zip(rows[-1]["losses"], reference, strict=True))
    scored = score(work, str(Path(rows[0]["out"]) / "final"), data, cuda)

    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    print(f"\nprm gpu_check on {device}: Qwen2.5-0.5B shape" if cuda else "\nprm gpu_check --cpu: tiny Qwen2 shape",
          f"({'bf16' if cuda else 'fp32'}, packed rows of {pack} tokens x {mb}, {steps} steps)")
    print(f"{'run':<34} {'tokens/s':>9} {'MFU':>7} {'peak GPU MiB':>12} {'last loss':>10} {'wall s':>7}  attention")
    for r in rows:
        peak = "n/a" if r["peak_mem_mib"] is None else str(r["peak_mem_mib"])
        tok = "n/a" if r["tok_s"] is None else f"{r['tok_s']:.0f}"
        print(f"{r['name']:<34} {tok:>9} {r['mfu']:>7} {peak:>12} {r['losses'][-1]:>10.4f} {r['wall_s']:>7}  "
              f"{r['attention']}")
    flash_note = "flash-attn varlen" if flash else "per-example sdpa (flash-attn n/a here)"
    print(f"resume: losses equal to the uninterrupted zero2 run: {resume_ok} (max |diff| {diff:.2e})")
    print(f"attention: zero2 ran {flash_note}; sdpa with the row mask: max |loss diff| "
          f"{rows[-1]['max_loss_diff_vs_zero2']:.2e}")
    print(f"prm score on {'cuda' if cuda else 'cpu'}: {scored['items']} items scored, probabilities valid: "
          f"{scored['ok']}  ({scored['seconds']} s)")
    total = time.time() - started
    print(f"total {total:.0f} s")
    result = {"device": device, "cpu_mode": not cuda, "steps": steps, "pack_length": pack, "micro_batch": mb,
              "rows": [{k: v for k, v in r.items() if k != "out"} for r in rows], "resume_ok": resume_ok,
              "resume_max_diff": diff, "flash_attn": flash, "score": scored, "total_s": round(total, 1),
              "date": time.strftime("%Y-%m-%d")}
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"gpu_check{'' if cuda else '_cpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if resume_ok and scored["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
