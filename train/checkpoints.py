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


def save_checkpoint(engine: Any, comm: Any, ckpt_dir: Path, step: int, keep: int, rank: int,
                    log: Callable[[str], None]) -> None:
    """Every rank writes its part of checkpoints/step_<step>; rank 0 then deletes all but the newest `keep`."""
    tag = f"step_{step}"
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": step})
    comm.barrier()
    if rank == 0:
        tags = sorted((p for p in ckpt_dir.glob("step_*") if p.is_dir()), key=lambda p: int(p.name.split("_")[1]))
        for old in tags[: -keep]:
            shutil.rmtree(old, ignore_errors=True)
    comm.barrier()
    log(f"checkpoint {ckpt_dir / tag}")


def save_final(engine: Any, comm: Any, out: Path, rank: int, precision: str, tokenizer: Any,
               peft_config: Any) -> None:
    """Save a Hugging Face folder (model + tokenizer with the marker), LoRA merged. Without ZeRO-3 every rank
    holds the whole model, and rank 0 saves it as it is. ZeRO-3 gathers the 16-bit weights
    (`engine.save_16bit_model`, stage3_gather_16bit_weights_on_model_save) into one file; rank 0 then puts
    them into a model skeleton built on the meta device (`load_state_dict(assign=True)`: the loaded tensors
    become the weights), so no fp32 model is ever built on the CPU: the peak is one 16-bit copy."""
    import torch

    if not engine.zero_optimization_partition_weights():
        if rank == 0:
            model = engine.module  # training is over: merged and cast in place
            if peft_config is not None:
                model = model.merge_and_unload()
            write_final(out, model.to(torch.bfloat16) if precision == "bf16" else model, tokenizer)
        comm.barrier()
        return
    tmp = out / "final.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    comm.barrier()
    if not engine.save_16bit_model(str(tmp), "consolidated.bin"):
        raise ConfigError("DeepSpeed did not save the full model: set "
                          "stage3_gather_16bit_weights_on_model_save=true in the DeepSpeed config")
    comm.barrier()
    if rank == 0:
        state = torch.load(tmp / "consolidated.bin", map_location="cpu", weights_only=True, mmap=True)
        module = engine.module
        config = (module.get_base_model() if peft_config is not None else module).config
        model = model_from_state(config, state, peft_config)
        if precision == "bf16":
            model = model.to(torch.bfloat16)
        write_final(out, model, tokenizer)
        shutil.rmtree(tmp, ignore_errors=True)
    comm.barrier()


def model_from_state(config: Any, state: dict[str, Any], peft_config: Any = None) -> Any:
    """A PRM of `config`'s shape whose weights are the tensors of `state` (no copy, no fp32 model), for
    saving: the skeleton is built on the meta device, the state assigned, LoRA merged."""
    import torch

    from prm.prm_model import prm_from_config

    with torch.device("meta"):
        model = prm_from_config(config)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if unexpected or [k for k in missing if "rotary" not in k]:
        raise RuntimeError(f"final save: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if peft_config is not None:
        model = model.merge_and_unload()
    left = [name for name, t in model.state_dict().items() if t.is_meta]
    if left:
        raise RuntimeError(f"final save: not restored from the gathered weights: {left[:5]}")
    # Non-persistent buffers (rotary inv_freq) stay on the meta device: they are not saved, and this model
    # is only written, never run.
    return model


def write_final(out: Path, model: Any, tokenizer: Any) -> None:
    final = out / "final"
    shutil.rmtree(final, ignore_errors=True)
    model.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
