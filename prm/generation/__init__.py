"""Generation backends behind one interface: sample `n` continuations of many prompts at once.

    from prm.generation import GeneratorConfig, SamplingConfig, make_generator
    gen = make_generator(GeneratorConfig(backend="transformers", model="smollm2-135m-instruct"))
    gen.generate([[{"role": "user", "content": "1+1?"}]], SamplingConfig(n=4, max_new_tokens=64))

Modules: `base` (prompts, sampling settings, completions, forced endings, shared helpers),
`transformers_backend`, `vllm_backend`, `openai_backend`, `factory` (`GeneratorConfig`, `make_generator`).
Every public name is importable from `prm.generation`.
"""

from prm.generation.base import (
    Choices,
    Completion,
    Generator,
    Prompt,
    SamplingConfig,
    check_prompt,
    check_sampling,
    derive_seed,
    encode_prompt,
    fill_template,
    render_chat,
    truncate_at_stop,
)
from prm.generation.factory import GeneratorConfig, make_generator
from prm.generation.openai_backend import (
    CHOICE_FIELDS,
    MAX_RETRY_AFTER_S,
    RETRYABLE_STATUS,
    OpenAIGenerator,
    chat_request,
    choice_request,
    continuation_prompt,
    parse_retry_after,
)
from prm.generation.transformers_backend import TransformersGenerator
from prm.generation.vllm_backend import VLLM_DTYPES, VLLM_MISSING, VLLMGenerator, engine_kwargs, vllm_dtype

__all__ = [
    "CHOICE_FIELDS", "MAX_RETRY_AFTER_S", "RETRYABLE_STATUS", "VLLM_DTYPES", "VLLM_MISSING", "Choices", "Completion", "Generator",
    "GeneratorConfig", "OpenAIGenerator", "Prompt", "SamplingConfig", "TransformersGenerator", "VLLMGenerator",
    "chat_request", "check_prompt", "check_sampling", "choice_request", "continuation_prompt", "derive_seed",
    "encode_prompt", "engine_kwargs", "fill_template", "make_generator", "parse_retry_after", "render_chat", "truncate_at_stop", "vllm_dtype",
]
