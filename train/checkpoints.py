"""Checkpoints, the resumed losses file, and the final Hugging Face folder of `prm train`.

    prm train --config configs/train_tiny.yaml            # checkpoints/step_N (+ latest), final/
    prm train --config configs/train_tiny.yaml --resume   # continue from checkpoints/latest

`checkpoints/step_N` are DeepSpeed checkpoints (the newest save_total_limit kept); `final/` is a plain
AutoModelForTokenClassification + tokenizer with the step marker, LoRA merged.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prm.errors import ConfigError, InputError


def read_losses(path: Path) -> list[tuple[int, str]]:
    """(step, line) for each record of a losses.jsonl being resumed. A last line without its newline is torn
    (a kill mid-write) and dropped; any other bad line is an InputError naming the file and line."""
    from prm.jsonl import parse_line

    if not path.exists():
        return []
    *whole, _torn = path.read_bytes().split(b"\n")  # `_torn` is b"" when the file ends with a newline
    out = []
    for lineno, raw in enumerate(whole, start=1):
        record = parse_line(str(path), lineno, raw)
        if record is None:
            continue
        step = record.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise InputError(str(path), lineno, "step", f"expected an integer, got {step!r}")
        out.append((step, raw.decode("utf-8").rstrip("\r")))
    return out


def save_checkpoint(engine: Any, ckpt_dir: Path, step: int, keep: int, rank: int,
                    log: Callable[[str], None]) -> None:
    """Every rank writes its part of checkpoints/step_<step>; rank 0 then deletes all but the newest `keep`."""
    import torch.distributed as dist

    tag = f"step_{step}"
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": step})
    dist.barrier()
    if rank == 0:
        tags = sorted((p for p in ckpt_dir.glob("step_*") if p.is_dir()), key=lambda p: int(p.name.split("_")[1]))
        for old in tags[: -keep]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    log(f"checkpoint {ckpt_dir / tag}")


def save_final(engine: Any, out: Path, rank: int, precision: str, tokenizer: Any, peft_config: Any) -> None:
    """Save a Hugging Face folder (model + tokenizer with the marker), LoRA merged. Without ZeRO-3 every rank
    holds the whole model, and rank 0 saves it as it is; ZeRO-3 gathers the 16-bit weights into a file and
    rank 0 rebuilds a plain model from it (a file and a second model: the peak memory of a run that
    does not need them)."""
    import torch
    import torch.distributed as dist

    if not engine.zero_optimization_partition_weights():
        if rank == 0:
            model = engine.module  # training is over: merged and cast in place
            if peft_config is not None:
                model = model.merge_and_unload()
            write_final(out, model.to(torch.bfloat16) if precision == "bf16" else model, tokenizer)
        dist.barrier()
        return
    tmp = out / "final.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    if not engine.save_16bit_model(str(tmp), "consolidated.bin"):
        raise ConfigError("DeepSpeed did not save the full model: set "
                          "stage3_gather_16bit_weights_on_model_save=true in the DeepSpeed config")
    dist.barrier()
    if rank == 0:
        from prm.prm_model import prm_from_config

        state = torch.load(tmp / "consolidated.bin", map_location="cpu", weights_only=True)
        module = engine.module
        config = (module.get_base_model() if peft_config is not None else module).config
        fresh = prm_from_config(config)
        if peft_config is not None:
            from peft import get_peft_model

            fresh = get_peft_model(fresh, peft_config)
        missing, unexpected = fresh.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if "rotary" not in k]:
            raise RuntimeError(f"final save: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if peft_config is not None:
            fresh = fresh.merge_and_unload()
        if precision == "bf16":
            fresh = fresh.to(torch.bfloat16)
        write_final(out, fresh, tokenizer)
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()


def write_final(out: Path, model: Any, tokenizer: Any) -> None:
    final = out / "final"
    shutil.rmtree(final, ignore_errors=True)
    model.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
