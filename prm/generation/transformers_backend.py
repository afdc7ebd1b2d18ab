"""The transformers backend: batched, per-row seeded sampling with a Hugging Face causal LM (CPU or GPU).

    from prm.generation import TransformersGenerator, SamplingConfig
    TransformersGenerator("smollm2-135m-instruct", device="cpu").generate(["1+1="], SamplingConfig(n=2))
"""

from __future__ import annotations

import inspect
from typing import Any

from prm.errors import ConfigError, PrmError
from prm.generation.base import (
    Choices,
    Completion,
    Prompt,
    SamplingConfig,
    _pick_option,
    check_prompt,
    check_sampling,
    derive_seed,
    encode_prompt,
    render_chat,
    truncate_at_stop,
)

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


