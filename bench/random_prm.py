"""PRMs with random weights at a released model's shape, for speed measurements on a machine without the weights
(the GPU machine has no hub and carries at most 64 MiB): our format (a token classifier with the step marker),
built from a config, saved once under a cache folder and reused.

    python bench/batch_padding.py --device cuda --model random:qwen2.5-math-7b --items 256
    python bench/serve_load.py --device cuda --model random:qwen2.5-math-7b --threads 1

Throughput depends on the shape, not on the weights' values; the scores are noise. The tokenizer is the embedded
SmolLM2's (`tokenizer_source()`: carried in .gpu_check/tokenizer on the GPU machine), so the vocabulary is 49k,
not Qwen's 152k: only the embedding table's size differs, which a forward pass indexes, not multiplies.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from gpu_check import tokenizer_source

# config.json of the released models (the body's shape; vocabulary from the tokenizer).
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-math-7b": dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                            num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=4096,
                            rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False),
    "qwen2.5-math-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                              num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=4096,
                              rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True),
    # For the CPU form of the checks (and their test): seconds to build. head_dim 32 (vLLM's CPU attention).
    "tiny": dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                 tie_word_embeddings=True),
}


def cache_root() -> Path:
    """$PRM_RANDOM_PRMS, else random-prm/ in prm's cache ($PRM_CACHE or ~/.cache/prm)."""
    if os.environ.get("PRM_RANDOM_PRMS"):
        return Path(os.environ["PRM_RANDOM_PRMS"])
    return Path(os.environ.get("PRM_CACHE") or Path.home() / ".cache" / "prm") / "random-prm"


def random_prm(shape: str, device: str = "cpu", root: Path | None = None) -> str:
    """The folder of a random-weight PRM of `shape` (one of SHAPES), built on `device` on first use (bf16 on
    CUDA, fp32 on the CPU) and reused after."""
    if shape not in SHAPES:
        raise SystemExit(f"unknown shape '{shape}'; choose one of {', '.join(SHAPES)}")
    cuda = device.startswith("cuda")
    folder = (root or cache_root()) / f"{shape}-{'bf16' if cuda else 'fp32'}"
    if (folder / "config.json").is_file():
        return str(folder)
    import torch
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    from prm.jsonl import write_text_atomic
    from prm.prm_model import add_step_marker
    from prm.steps import STEP_MARKER

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source())
    marker_id = add_step_marker(tokenizer, STEP_MARKER)
    body = dict(SHAPES[shape])
    config = AutoConfig.for_model(body.pop("model_type"), vocab_size=len(tokenizer), num_labels=2,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, **body)
    config.step_marker, config.step_marker_id, config.use_cache = STEP_MARKER, marker_id, False
    torch.manual_seed(0)
    with torch.device(device):  # a 7B model is initialised where it runs: 15 GB in bf16, twice that on the CPU
        model = AutoModelForTokenClassification.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a build that was stopped
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    del model
    os.replace(tmp, folder)  # a half-written folder is never taken for a model
    write_text_atomic(folder / "RANDOM_WEIGHTS", "random weights at the shape of " + shape + ": speed only\n")
    return str(folder)
