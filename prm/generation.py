"""Generation backends behind one interface: sample `n` continuations of many prompts at once.

A prompt is either raw text (used as is: MC rollouts continue a partly written assistant turn) or a
chat, a list of `{"role", "content"}` messages (the backend applies the chat template with the
generation prompt). Backends: transformers (anywhere), vLLM (GPUs), OpenAI-compatible HTTP (a judge
served elsewhere), and the simulated completer of the synthetic testbed.

    from prm.generation import GeneratorConfig, SamplingConfig, make_generator
    gen = make_generator(GeneratorConfig(backend="transformers", model="smollm2-135m-instruct"))
    gen.generate([[{"role": "user", "content": "1+1?"}]], SamplingConfig(n=4, max_new_tokens=64))

Seeding: every (prompt, sample index k) pair draws from its own random stream, seeded from
`sampling.seed`, the rendered prompt text and k. The transformers backend therefore gives the same
k-th sample of a prompt whatever else is in the batch; vLLM gets one seed per prompt (its n samples
come from that request's stream); OpenAI-compatible servers receive the seed and honour it if they can.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import hashlib
import inspect
import json
import os
import random
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
import tenacity

from prm.config import option
from prm.errors import ConfigError, PrmError

Prompt = str | list[dict[str, str]]


@dataclass
class SamplingConfig:
    n: int = 1
    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    stop: list[str] | None = None


@dataclass
class Completion:
    text: str
    tokens: int  # generated tokens, the unit of annotation cost
    finish_reason: str  # "stop" | "length"
    constrained: bool = False  # the reply ends in one of the allowed choices by construction (generate_choice)


@dataclass
class Choices:
    """A reply that must end in one allowed ending: free text, then exactly one of `options[i]` for prompt i
    (whole endings such as `\\boxed{2}`). `generate_choice` of a backend honours it.

    The free part ends where the model writes `stop` (default: the endings' common prefix, the "lead", e.g.
    `\\boxed{`) or at max_new_tokens, and is cut back to before the last lead it holds (so an ending that
    repeats what the model wrote, e.g. a closing tag, is not written twice). `accept(i, reply)` drops the
    endings that would not make a valid whole reply after this free text (kept all when none passes).
    """

    options: list[list[str]]
    stop: str = ""
    reason: bool = True  # free text first (at most sampling.max_new_tokens); False: the reply is the ending alone
    accept: Callable[[int, str], bool] | None = None

    def check(self, n_prompts: int) -> None:
        if len(self.options) != n_prompts:
            raise PrmError(f"{len(self.options)} option lists for {n_prompts} prompts")
        for i, options in enumerate(self.options):
            if not options or not all(isinstance(o, str) and o for o in options):
                raise PrmError(f"prompt {i}: the allowed endings must be non-empty strings, got {options!r}")

    def lead(self, i: int) -> str:
        return os.path.commonprefix(self.options[i]) if len(self.options[i]) > 1 else ""

    def free_parts(self, generator: Any, prompts: list[Prompt], sampling: SamplingConfig) -> list[list[Completion]]:
        """The free text of each sample, generated with `generator.generate` and cut back before the lead."""
        if not self.reason:
            return [[Completion("", 0, "stop") for _ in range(sampling.n)] for _ in prompts]
        stops = sorted({self.stop or self.lead(i) for i in range(len(prompts))} - {""})
        free = generator.generate(prompts, dataclasses.replace(sampling, stop=[*stops, *(sampling.stop or [])] or None))
        for i, row in enumerate(free):
            lead = self.lead(i)
            for c in row:
                if lead and lead in c.text:
                    c.text = c.text[: c.text.rindex(lead)]
        return free

    def candidates(self, i: int, free: str) -> list[str]:
        """The endings allowed after this free text."""
        ok = [o for o in self.options[i] if self.accept is None or self.accept(i, free + o)]
        return ok or self.options[i]

    @staticmethod
    def reply(free: Completion, ending: str, ending_tokens: int) -> Completion:
        return Completion(free.text + ending, free.tokens + ending_tokens, "stop", constrained=True)


class Generator(Protocol):
    """Everything a stage needs from a model that writes text. Backends that can force a reply's ending also
    have `generate_choice(prompts, sampling, choices: Choices)` (transformers, vLLM, OpenAI-compatible)."""

    name: str

    def generate(self, prompts: list[Prompt], sampling: SamplingConfig) -> list[list[Completion]]:
        """For each prompt, `sampling.n` completions; deterministic for a fixed `sampling.seed`."""
        ...


# ----------------------------------------------------------------------------------------------------
# Helpers shared by the backends


def check_sampling(sampling: SamplingConfig) -> None:
    """Reject sampling settings no backend can honour (ConfigError names the key)."""
    if sampling.n < 1:
        raise ConfigError(f"sampling n must be at least 1, got {sampling.n}")
    if sampling.max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be at least 1, got {sampling.max_new_tokens}")
    if sampling.temperature < 0:
        raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {sampling.temperature}")
    if not 0.0 < sampling.top_p <= 1.0:
        raise ConfigError(f"top_p must be in (0, 1], got {sampling.top_p}")
    for s in sampling.stop or []:
        if not isinstance(s, str) or s == "":
            raise ConfigError(f"stop strings must be non-empty strings, got {s!r}")


def check_prompt(prompt: Any, index: int) -> None:
    if isinstance(prompt, str):
        return
    if isinstance(prompt, list) and prompt and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
    ):
        return
    raise PrmError(f"prompt {index}: expected text or a non-empty list of {{'role', 'content'}} messages")


def derive_seed(seed: int, prompt_text: str, k: int = 0) -> int:
    """A 63-bit seed for sample k of one prompt: stable across runs, machines and batch layouts."""
    digest = hashlib.blake2b(f"{seed}\x00{k}\x00{prompt_text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


def _pick_option(scores: list[float], temperature: float, seed: int) -> int:
    """Index of the chosen option: the best score when greedy, else drawn with weights exp(score / T)."""
    import math

    if temperature <= 0:
        return max(range(len(scores)), key=lambda i: (scores[i], -i))
    top = max(scores)
    weights = [math.exp((s - top) / temperature) for s in scores]
    return random.Random(seed).choices(range(len(scores)), weights=weights)[0]


def truncate_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """Cut `text` at the earliest occurrence of any stop string (the stop string itself is dropped)."""
    if not stop:
        return text, False
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_template(template: str, values: dict[str, Any]) -> str:
    """Replace `{name}` for each name in `values`, in one pass: other braces (`\\boxed{}`) stay as they
    are, and text inserted for one field is never searched for another."""
    return _FIELD.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """A chat as the text the model reads: the tokenizer's chat template with the generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise PrmError(
            "this model's tokenizer has no chat template: give raw-text prompts (e.g. prompt_style=text) "
            "or use an instruct model"
        )
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer: Any, text: str, chat: bool) -> list[int]:
    """Token ids of a prompt. A rendered chat already holds its special tokens, and so does raw text
    that starts with the BOS token; neither gets a second BOS."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not chat and not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


# ----------------------------------------------------------------------------------------------------
# transformers


def _row_sampler_class():
    import torch
    from transformers import LogitsProcessor

    class RowSampler(LogitsProcessor):
        """Samples each row from its own seeded stream and returns logits that force that token.

        Generation then runs greedily over these forced logits, so the k-th sample of a prompt depends
        only on its own seed, not on which other rows share the batch (HF sampling would draw all rows
        from one global stream).
        """

        def __init__(self, seeds: list[int], temperature: float, top_p: float):
            self.generators = [torch.Generator().manual_seed(s) for s in seeds]
            self.temperature = temperature
            self.top_p = top_p

        def __call__(self, input_ids, scores):
            u = torch.tensor([torch.rand(1, generator=g).item() for g in self.generators], dtype=torch.float64)
            u = u.to(scores.device).unsqueeze(1)
            logits = scores.to(torch.float64)
            if self.temperature <= 0:
                token = logits.argmax(dim=-1, keepdim=True)
            else:
                probs = torch.softmax(logits / self.temperature, dim=-1)
                if self.top_p < 1.0:
                    sorted_probs, order = probs.sort(dim=-1, descending=True)
                    before = sorted_probs.cumsum(dim=-1) - sorted_probs
                    sorted_probs = sorted_probs * (before < self.top_p)  # the top token is always kept
                    cdf = sorted_probs.cumsum(dim=-1)
                    pick = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=cdf.shape[-1] - 1)
                    token = order.gather(-1, pick)
                else:
                    cdf = probs.cumsum(dim=-1)
                    token = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=cdf.shape[-1] - 1)
            forced = torch.full_like(scores, float("-inf"))
            forced.scatter_(1, token, 0.0)
            return forced

    return RowSampler


def _stop_criteria_class():
    import torch
    from transformers import StoppingCriteria

    class StopOnStrings(StoppingCriteria):
        """Marks a row done once its generated text (after `prompt_len`) contains a stop string."""

        def __init__(self, tokenizer: Any, stop: list[str], prompt_len: int):
            self.tokenizer = tokenizer
            self.stop = stop
            self.prompt_len = prompt_len
            # A stop string of c characters spans at most c tokens (+2 for merges at its edges).
            self.window = max(len(s) for s in stop) + 2

        def __call__(self, input_ids, scores, **kwargs):
            generated = input_ids.shape[1] - self.prompt_len
            tail = input_ids[:, -min(self.window, generated):] if generated > 0 else input_ids[:, :0]
            texts = self.tokenizer.batch_decode(tail, skip_special_tokens=True)
            done = [any(s in t for s in self.stop) for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StopOnStrings


class TransformersGenerator:
    """Batched sampling with a Hugging Face causal LM, on CPU or GPU.

    Prompts are expanded to one row per (prompt, sample), sorted by length so that each batch of
    `batch_size` rows wastes little on padding, left-padded, and generated with per-row seeded sampling
    (see `RowSampler`). `stop` strings end a row early and are cut from the text; `tokens` counts the
    generated tokens up to and including EOS or the token that completed a stop string.
    """

    def __init__(
        self,
        model_name_or_path: str,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        model: Any = None,
        tokenizer: Any = None,
    ):
        from prm.models import load_causal_lm, load_tokenizer, resolve_device

        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.name = model_name_or_path
        self.batch_size = batch_size
        self.device = resolve_device(device)
        if tokenizer is None:
            tokenizer = load_tokenizer(model_name_or_path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        if model is None:
            try:
                model = load_causal_lm(model_name_or_path, dtype=dtype, device=self.device)
            except OSError as exc:
                raise PrmError(f"cannot load model '{model_name_or_path}': {exc}") from None
        else:
            model = model.to(self.device).eval()
        self.model = model
        eos = set()
        for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
            if isinstance(source, int):
                eos.add(source)
            elif source:
                eos.update(int(t) for t in source)
        self.eos_ids = sorted(eos)

    def _render(self, prompt: Prompt) -> tuple[str, list[int]]:
        if isinstance(prompt, str):
            return prompt, encode_prompt(self.tokenizer, prompt, chat=False)
        text = render_chat(self.tokenizer, prompt)
        return text, encode_prompt(self.tokenizer, text, chat=True)

    def generate(self, prompts: list[Prompt], sampling: SamplingConfig) -> list[list[Completion]]:
        check_sampling(sampling)
        for i, p in enumerate(prompts):
            check_prompt(p, i)
        rendered = [self._render(p) for p in prompts]
        rows = [(pi, k) for pi in range(len(prompts)) for k in range(sampling.n)]
        # Longest first: the first batch shows at once whether memory suffices.
        rows.sort(key=lambda r: (-len(rendered[r[0]][1]), r))
        results: list[list[Completion | None]] = [[None] * sampling.n for _ in prompts]
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            outs = self._generate_batch(
                [rendered[pi][1] for pi, _ in batch],
                [derive_seed(sampling.seed, rendered[pi][0], k) for pi, k in batch],
                sampling,
            )
            for (pi, k), completion in zip(batch, outs, strict=True):
                results[pi][k] = completion
        return [[c for c in row if c is not None] for row in results]

    def _generate_batch(self, ids: list[list[int]], seeds: list[int], sampling: SamplingConfig) -> list[Completion]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        pad_id = self.tokenizer.pad_token_id
        input_ids, attention = self._left_pad(ids)
        width = input_ids.shape[1]
        config = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens, do_sample=False, num_beams=1,
            pad_token_id=pad_id, eos_token_id=self.eos_ids or None,
        )
        processors = LogitsProcessorList([_row_sampler_class()(seeds, sampling.temperature, sampling.top_p)])
        criteria = StoppingCriteriaList()
        if sampling.stop:
            criteria.append(_stop_criteria_class()(self.tokenizer, list(sampling.stop), width))
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                generation_config=config, logits_processor=processors, stopping_criteria=criteria,
            )
        new = out[:, width:].tolist()
        return [self._finish(row, sampling) for row in new]

    def generate_choice(self, prompts: list[Prompt], sampling: SamplingConfig,
                        choices: Choices) -> list[list[Completion]]:
        """Free text (see `Choices`), then the allowed ending the model finds most likely after it.

        Each ending is scored exactly: the sum of its tokens' log-probabilities after the prompt and the free
        text. Greedy (temperature 0) takes the most likely ending; otherwise ending e is drawn with probability
        proportional to p(e)^(1/temperature), from the sample's own seeded stream. Whatever the model would
        have written, the reply ends in an allowed ending."""
        check_sampling(sampling)
        for i, p in enumerate(prompts):
            check_prompt(p, i)
        choices.check(len(prompts))
        rendered = [self._render(p) for p in prompts]
        free = choices.free_parts(self, prompts, sampling)
        rows = []  # (prompt, sample, context ids, candidate endings, their ids)
        for pi, samples in enumerate(free):
            for k, part in enumerate(samples):
                context = rendered[pi][1] + list(self.tokenizer(part.text, add_special_tokens=False)["input_ids"])
                endings = choices.candidates(pi, part.text)
                ids = [list(self.tokenizer(e, add_special_tokens=False)["input_ids"]) for e in endings]
                rows.append((pi, k, context, endings, ids))
        scores = self._ending_logprobs([(context, ids) for _, _, context, _, ids in rows])
        results: list[list[Completion]] = [[] for _ in prompts]
        for (pi, k, _, endings, ids), row_scores in zip(rows, scores, strict=True):
            pick = _pick_option(row_scores, sampling.temperature,
                                derive_seed(sampling.seed, rendered[pi][0] + "\x00choice", k))
            results[pi].append(Choices.reply(free[pi][k], endings[pick], len(ids[pick])))
        return results

    def _left_pad(self, ids: list[list[int]]) -> tuple[Any, Any]:
        """(input ids, attention mask) of the token lists, left-padded to the longest one."""
        import torch

        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            if x:
                input_ids[row, width - len(x):] = torch.tensor(x, dtype=torch.long)
                attention[row, width - len(x):] = 1
        return input_ids, attention

    def _ending_logprobs(self, rows: list[tuple[list[int], list[list[int]]]],
                         max_ending_rows: int | None = None) -> list[list[float]]:
        """log p(ending | context) of every ending of each (context ids, endings' ids) row, batched.

        A context runs once and its endings continue its KV cache, so a verdict among E endings costs one pass
        over the (long) judge prompt, not E. Contexts are left-padded with positions counted from each row's
        first real token, so a row scores as it would alone; only the last context position's logits are
        computed (the vocabulary projection dominates for short endings). The endings run in groups of at
        most `max_ending_rows` (default 4 x batch_size) rows, each with its own copy of the contexts' cache,
        so a long solution's many candidate steps never hold batch_size x E copies of a long prompt's cache."""
        import copy

        import torch

        group = max_ending_rows or 4 * self.batch_size
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        out: list[list[float]] = [[] for _ in rows]
        pad_id = self.tokenizer.pad_token_id
        # transformers >= 5.2x names the KV cache `cache` (argument and output), before: past_key_values
        cache_name = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            input_ids, attention = self._left_pad([rows[i][0] for i in batch])
            positions = (attention.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                first = self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                                   position_ids=positions.to(self.device), use_cache=True, logits_to_keep=1)
            # Token 0 of every ending is predicted by the context's last position.
            first_logprobs = torch.log_softmax(first.logits[:, -1].float(), dim=-1).cpu()
            cache = getattr(first, cache_name)
            # (context row, ending) pairs whose endings have tokens after the first
            pairs = [(row, j) for row, i in enumerate(batch) for j, e in enumerate(rows[i][1]) if len(e) > 1]
            rest: dict[tuple[int, int], torch.Tensor] = {}
            for at in range(0, len(pairs), group):
                chunk = pairs[at : at + group]
                tail = max(len(rows[batch[row]][1][j]) for row, j in chunk) - 1
                # The endings' tokens but their last are the inputs, right-padded after their context.
                ids = torch.full((len(chunk), tail), pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), tail), dtype=torch.long)
                for n, (row, j) in enumerate(chunk):
                    ending = rows[batch[row]][1][j]
                    ids[n, : len(ending) - 1] = torch.tensor(ending[:-1])
                    mask[n, : len(ending) - 1] = 1
                context_rows = torch.tensor([row for row, _ in chunk])
                with torch.inference_mode():
                    # the last group may consume the batch's cache itself: nothing reads it afterwards
                    chunk_cache = cache if at + group >= len(pairs) else copy.deepcopy(cache)
                    chunk_cache.batch_select_indices(context_rows.to(self.device))
                    logits = self.model(
                        input_ids=ids.to(self.device),
                        attention_mask=torch.cat([attention[context_rows], mask], -1).to(self.device),
                        position_ids=(attention.sum(-1)[context_rows][:, None] + torch.arange(tail)).to(self.device),
                        use_cache=True, **{cache_name: chunk_cache}).logits.float()
                logprobs = torch.log_softmax(logits, dim=-1).cpu()
                for n, pair in enumerate(chunk):
                    rest[pair] = logprobs[n]
            for row, i in enumerate(batch):
                for j, ending in enumerate(rows[i][1]):
                    score = float(first_logprobs[row, ending[0]])
                    for t in range(1, len(ending)):
                        score += float(rest[row, j][t - 1, ending[t]])
                    out[i].append(score)
        return out

    def _finish(self, tokens: list[int], sampling: SamplingConfig) -> Completion:
        """Text, token count and finish reason of one generated row (padding after the end removed)."""
        eos_at = next((i for i, t in enumerate(tokens) if t in self.eos_ids), None)
        body = tokens if eos_at is None else tokens[:eos_at]
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        cut, stopped = truncate_at_stop(text, sampling.stop)
        if stopped:
            # The fewest tokens whose text already holds a stop string (binary search on prefixes).
            lo, hi = 1, len(body)
            while lo < hi:
                mid = (lo + hi) // 2
                if truncate_at_stop(self.tokenizer.decode(body[:mid], skip_special_tokens=True), sampling.stop)[1]:
                    hi = mid
                else:
                    lo = mid + 1
            return Completion(cut, lo, "stop")
        if eos_at is not None:
            return Completion(text, eos_at + 1, "stop")
        return Completion(text, len(tokens), "length")


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


# ----------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP


RETRYABLE_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is cut to this, so a job never sleeps for hours


class _RetryableError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or bad."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class _WaitRetryAfter(tenacity.wait.wait_base):
    """The server's Retry-After when it sent one, else exponential backoff with jitter."""

    def __init__(self, backoff_s: float):
        self.backoff = tenacity.wait_exponential_jitter(multiplier=backoff_s, max=MAX_RETRY_AFTER_S, jitter=backoff_s / 4)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _RetryableError) and exc.retry_after is not None:
            return exc.retry_after
        return self.backoff(retry_state)


def chat_request(
    prompt: Prompt, model: str, sampling: SamplingConfig, n: int, seed: int, extra_body: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The endpoint (relative to base_url) and JSON body of one request for `n` choices of `prompt`.

    `extra_body` is merged last, for server-specific fields (vLLM's `guided_choice`, a `response_format`)."""
    chat = not isinstance(prompt, str)
    body: dict[str, Any] = {
        "model": model, "n": n, "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": seed,
        "messages" if chat else "prompt": prompt,
    }
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    body.update(extra_body or {})
    return ("chat/completions" if chat else "completions"), body


class OpenAIGenerator:
    """An OpenAI-compatible server (vLLM `serve`, SGLang, TGI, llama-cpp-python, the OpenAI API) over HTTP.

    `base_url` ends where the OpenAI client's does, e.g. `http://host:8000/v1`; chat prompts go to
    `{base_url}/chat/completions`, text prompts to `{base_url}/completions`, one request per prompt
    asking for `n` choices (more requests follow if a server returns fewer, as llama-cpp-python's does).
    One `httpx` client keeps up to `max_concurrency` connections alive and reuses them; at most that many
    requests are in flight. 408, 429, 5xx, timeouts and connection errors are retried `retries` times
    (tenacity): after the server's Retry-After when it sends one (seconds or an HTTP date, at most 60 s),
    else with exponential backoff from `backoff_s` plus jitter; any other HTTP error stops with its
    message. `timeout_s` bounds each attempt's connect, read and write. The key is read from the
    environment variable `api_key_env` (no Authorization header when it is unset, as local servers
    expect). `extra_body` is merged into every request (see `chat_request`). Token counts come from
    `usage.completion_tokens`, shared among a response's choices in proportion to their text length.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        retries: int = 5,
        timeout_s: float = 120.0,
        backoff_s: float = 1.0,
        extra_body: dict[str, Any] | None = None,
        choice_field: str = "structured_outputs",
    ):
        if choice_field not in CHOICE_FIELDS:
            raise ConfigError(f"choice_field must be one of {', '.join(CHOICE_FIELDS)}, got {choice_field!r}")
        self.choice_field = choice_field
        self._fallback_said = False
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL such as http://localhost:8000/v1, got {base_url!r}")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if retries < 0:
            raise ConfigError(f"retries must be >= 0, got {retries}")
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.model = model
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.timeout_s = timeout_s
        self.extra_body = dict(extra_body or {})
        self._wait = _WaitRetryAfter(backoff_s)
        self._lock = threading.Lock()
        self.requests_sent = 0  # every HTTP attempt, retries included
        api_key = os.environ.get(api_key_env) if api_key_env else None
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            event_hooks={"request": [self._count_request]},
        )

    def _count_request(self, request: httpx.Request) -> None:
        with self._lock:
            self.requests_sent += 1

    def close(self) -> None:
        """Close the kept-alive connections (also done when the generator is garbage-collected)."""
        self._client.close()

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1), wait=self._wait,
            retry=tenacity.retry_if_exception_type(_RetryableError), reraise=True,
        )
        try:
            return retrying(self._post_once, path, body)
        except _RetryableError as exc:
            raise PrmError(f"{self.base_url}/{path}: giving up after {self.retries + 1} attempts: {exc}") from None

    def _post_once(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/{path}"
        try:
            response = self._client.post(path, json=body)
        except httpx.TimeoutException:
            raise _RetryableError(f"no response within {self.timeout_s:g} s") from None
        except httpx.TransportError as exc:
            raise _RetryableError(f"connection error: {exc or type(exc).__name__}") from None
        if response.status_code in RETRYABLE_STATUS:
            raise _RetryableError(f"HTTP {response.status_code}: {response.text[:300]}",
                                  parse_retry_after(response.headers.get("Retry-After")))
        if response.status_code >= 400:
            raise PrmError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
        try:
            result = response.json()
        except ValueError:
            raise _RetryableError(f"invalid JSON in the response: {response.content[:200]!r}") from None
        if not isinstance(result, dict) or not isinstance(result.get("choices"), list):
            raise PrmError(f"{url}: the response has no 'choices' list: {str(result)[:200]}")
        return result

    def _one_prompt(self, prompt: Prompt, sampling: SamplingConfig) -> list[Completion]:
        chat = not isinstance(prompt, str)
        seed_text = json.dumps(prompt) if chat else prompt
        completions: list[Completion] = []
        request_no = 0
        while len(completions) < sampling.n:
            seed = derive_seed(sampling.seed, seed_text, request_no) % (2 ** 31)
            path, body = chat_request(prompt, self.model, sampling, sampling.n - len(completions), seed, self.extra_body)
            response = self._post(path, body)
            choices = sorted(response["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
            if not choices:
                raise PrmError(f"{self.base_url}/{path}: the server returned no choices")
            texts, reasons = [], []
            for choice in choices:
                if chat:
                    text = ((choice.get("message") or {}).get("content")) or ""
                else:
                    text = choice.get("text") or ""
                text, stopped = truncate_at_stop(text, sampling.stop)
                texts.append(text)
                reason = choice.get("finish_reason")
                reasons.append("length" if reason == "length" and not stopped else "stop")
            usage = response.get("usage") or {}
            total = usage.get("completion_tokens")
            counts = _share_tokens(total, texts)
            completions.extend(Completion(t, c, r) for t, c, r in zip(texts, counts, reasons, strict=True))
            request_no += 1
        return completions[: sampling.n]

    def generate(self, prompts: list[Prompt], sampling: SamplingConfig) -> list[list[Completion]]:
        check_sampling(sampling)
        for i, p in enumerate(prompts):
            check_prompt(p, i)
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool:
            return list(pool.map(lambda p: self._one_prompt(p, sampling), prompts))


    def generate_choice(self, prompts: list[Prompt], sampling: SamplingConfig,
                        choices: Choices) -> list[list[Completion]]:
        """Free text (see `Choices`), then one request per sample that continues it with the allowed endings in
        the request field `choice_field` names (see `choice_request`). A server that refuses the field (HTTP
        400/404/422) or answers outside the endings leaves that vote as free text: the continuation without
        the field, marked `constrained=False`, and said once on stderr."""
        check_sampling(sampling)
        for i, p in enumerate(prompts):
            check_prompt(p, i)
        choices.check(len(prompts))
        free = choices.free_parts(self, prompts, sampling)
        jobs = [(pi, k) for pi in range(len(prompts)) for k in range(len(free[pi]))]
        seeds = {(pi, k): derive_seed(sampling.seed, json.dumps(prompts[pi]) + "\x00choice", k) % (2 ** 31)
                 for pi, k in jobs}

        def one(job: tuple[int, int]) -> Completion:
            pi, k = job
            endings = choices.candidates(pi, free[pi][k].text)
            longest = max(len(e) for e in endings)  # characters bound tokens from above
            path, body = choice_request(prompts[pi], free[pi][k].text, endings, self.model,
                                        dataclasses.replace(sampling, n=1, max_new_tokens=longest + 16, stop=None),
                                        seeds[job], self.choice_field, self.extra_body)
            try:
                response = self._post(path, body)
                ending = _choice_text(response, self.choice_field)
                if ending in endings:
                    return Choices.reply(free[pi][k], ending, _share_tokens(
                        (response.get("usage") or {}).get("completion_tokens"), [ending])[0])
                why = f"answered {ending!r}, not one of the allowed endings"
            except PrmError as exc:
                if not re.search(r"HTTP (400|404|422)\b", str(exc)):
                    raise
                why = f"refused the request field: {exc}"
            self._say_fallback(why)
            (text,) = self._one_prompt(continuation_prompt(prompts[pi], free[pi][k].text),
                                       dataclasses.replace(sampling, n=1, max_new_tokens=longest + 16))
            return Completion(free[pi][k].text + text.text, free[pi][k].tokens + text.tokens, text.finish_reason)

        if not jobs:
            return [[] for _ in prompts]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(jobs))) as pool:
            done = dict(zip(jobs, pool.map(one, jobs), strict=True))
        return [[done[(pi, k)] for k in range(len(free[pi]))] for pi in range(len(prompts))]

    def _say_fallback(self, why: str) -> None:
        with self._lock:
            if self._fallback_said:
                return
            self._fallback_said = True
        import sys

        print(f"warning: {self.base_url} cannot constrain with {self.choice_field} ({why[:300]}); such votes are "
              "free text, parsed and counted as usual (see generator.choice_field)", file=sys.stderr)


# How `judge.constrain` sends the allowed endings to an OpenAI-compatible server (generator.choice_field).
CHOICE_FIELDS = ("structured_outputs", "guided_choice", "response_format")


def continuation_prompt(prompt: Prompt, free: str) -> Prompt:
    """The prompt that continues a reply after its free text: raw text appended; a chat gets the free text as
    an assistant turn to continue (with `continue_final_message`, see `choice_request`)."""
    if isinstance(prompt, str):
        return prompt + free
    return [*prompt, {"role": "assistant", "content": free}]


def choice_request(prompt: Prompt, free: str, endings: list[str], model: str, sampling: SamplingConfig, seed: int,
                   field: str, extra_body: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The request that continues after `free` with exactly one of `endings`, by `field`:
    - `structured_outputs`: `{"structured_outputs": {"choice": endings}}` (vLLM >= 0.11 serve);
    - `guided_choice`: `{"guided_choice": endings}` (vLLM before 0.12, and servers that copied it);
    - `response_format`: a JSON schema `{"verdict": one of endings}` (the OpenAI API, vLLM, SGLang, llama.cpp);
      a chat gets the free text as the assistant's turn and a user turn asking for the verdict.
    Chats continue the assistant's turn where the server can (vLLM's `continue_final_message`)."""
    chat = not isinstance(prompt, str)
    if field == "response_format":
        request_prompt: Prompt = prompt + free if not chat else [  # type: ignore[operator]
            *prompt, {"role": "assistant", "content": free},
            {"role": "user", "content": "Give your final verdict: exactly one of the allowed answers."}]
        schema = {"type": "object", "properties": {"verdict": {"type": "string", "enum": endings}},
                  "required": ["verdict"], "additionalProperties": False}
        fields: dict[str, Any] = {"response_format": {"type": "json_schema", "json_schema": {
            "name": "verdict", "strict": True, "schema": schema}}}
    else:
        request_prompt = continuation_prompt(prompt, free)
        fields = {"structured_outputs": {"choice": endings}} if field == "structured_outputs" else {
            "guided_choice": endings}
        if chat:
            fields.update(continue_final_message=True, add_generation_prompt=False)
    return chat_request(request_prompt, model, sampling, 1, seed, {**(extra_body or {}), **fields})


def _choice_text(response: dict[str, Any], field: str) -> str:
    """The ending a constrained response chose (the text, or the `verdict` of a JSON-schema reply)."""
    choice = response["choices"][0] if response["choices"] else {}
    text = ((choice.get("message") or {}).get("content") if "message" in choice else choice.get("text")) or ""
    if field != "response_format":
        return text
    try:
        verdict = json.loads(text).get("verdict")
    except (ValueError, AttributeError):
        return text
    return verdict if isinstance(verdict, str) else text


def _share_tokens(total: Any, texts: list[str]) -> list[int]:
    """Split a response's completion-token count over its choices in proportion to text length.

    Exact for n=1; without a usage block, ~4 characters a token is assumed."""
    if not isinstance(total, int) or total < 0:
        return [max(1, round(len(t) / 4)) if t else 0 for t in texts]
    if len(texts) == 1:
        return [total]
    weights = [len(t) + 1 for t in texts]
    raw = [total * w / sum(weights) for w in weights]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])[: total - sum(counts)]:
        counts[i] += 1
    return counts


# ----------------------------------------------------------------------------------------------------
# Config and factory


@dataclass
class GeneratorConfig:
    backend: Literal["transformers", "vllm", "openai"] = option(
        "transformers", help="transformers (CPU/GPU, anywhere), vllm (GPUs), openai (any OpenAI-compatible server)")
    model: str = option("smollm2-135m-instruct", help="model name, hub id or local folder (openai: the served name)")
    device: str = option("auto", help="transformers: auto (cuda if present), cpu, cuda, cuda:1")
    dtype: str = option("auto", help="auto (bf16 on GPU, fp32 on CPU), bf16, fp16, fp32")
    batch_size: int = option(16, help="transformers: rows (prompt x sample) generated together")
    tensor_parallel_size: int = option(1, help="vllm: GPUs one model is split over")
    gpu_memory_utilization: float = option(0.9, help="vllm: share of GPU memory for weights and KV cache")
    enable_prefix_caching: bool = option(True, help="vllm: reuse the KV cache of shared prompt prefixes")
    max_model_len: int | None = option(None, help="vllm: context length (None: the model's)")
    base_url: str | None = option(None, help="openai: server URL up to /v1, e.g. http://localhost:8000/v1")
    api_key_env: str = option("OPENAI_API_KEY", help="openai: environment variable holding the API key")
    max_concurrency: int = option(8, help="openai: requests in flight at once")
    retries: int = option(5, help="openai: retries on 408/429/5xx, timeouts, connection errors (Retry-After, else backoff)")
    timeout_s: float = option(120.0, help="openai: seconds to wait for one response")
    choice_field: Literal["structured_outputs", "guided_choice", "response_format"] = option(
        "structured_outputs", help="openai + judge.constrain: the request field carrying the allowed verdicts: "
        "structured_outputs (vLLM >= 0.11), guided_choice (older vLLM), response_format (JSON schema: the OpenAI "
        "API, SGLang, llama.cpp); a server that refuses it gets free text, said on stderr and counted")


def make_generator(cfg: GeneratorConfig) -> Generator:
    """Build the backend named by `cfg.backend` (loads the model for transformers and vllm)."""
    if cfg.backend == "transformers":
        return TransformersGenerator(cfg.model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)
    if cfg.backend == "vllm":
        return VLLMGenerator(
            cfg.model, tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization, enable_prefix_caching=cfg.enable_prefix_caching,
            max_model_len=cfg.max_model_len, dtype=cfg.dtype,
        )
    if cfg.backend == "openai":
        if not cfg.base_url:
            raise ConfigError("generator.base_url is required for the openai backend (e.g. http://localhost:8000/v1)")
        return OpenAIGenerator(
            cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, max_concurrency=cfg.max_concurrency,
            retries=cfg.retries, timeout_s=cfg.timeout_s, choice_field=cfg.choice_field,
        )
    raise ConfigError(f"unknown generator backend {cfg.backend!r}: expected transformers, vllm or openai")
