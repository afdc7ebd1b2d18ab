"""The OpenAI-compatible HTTP backend (vLLM's server, SGLang, TGI, llama-cpp-python, the OpenAI API) and the
requests that force a verdict through a server's constraint field (`choice_field`).

    from prm.generation import OpenAIGenerator, SamplingConfig
    OpenAIGenerator("http://127.0.0.1:8000/v1", "served-name").generate(["1+1="], SamplingConfig())
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import tenacity

from prm.errors import ConfigError, PrmError
from prm.generation.base import (
    Choices,
    Completion,
    Prompt,
    SamplingConfig,
    check_prompt,
    check_sampling,
    derive_seed,
    truncate_at_stop,
)

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
        self._field_refused = False  # the server answered a constrained request with an HTTP error
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

    def _post(self, path: str, body: dict[str, Any], retries: int | None = None) -> dict[str, Any]:
        retries = self.retries if retries is None else retries
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(retries + 1), wait=self._wait,
            retry=tenacity.retry_if_exception_type(_RetryableError), reraise=True,
        )
        try:
            return retrying(self._post_once, path, body)
        except _RetryableError as exc:
            raise PrmError(f"{self.base_url}/{path}: giving up after {retries + 1} attempts: {exc}") from None

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
        the request field `choice_field` names (see `choice_request`). Whichever the field, a server that refuses
        it (any HTTP error status, after one retry; later votes then skip the field) or ignores it (answers
        outside the endings) leaves that vote as free text: the continuation without the field, marked
        `constrained=False`, parsed and counted as usual, and said once on stderr. The stage never fails for
        it; a server that does not answer at all fails as it would for free text."""
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
            if not self._field_refused:
                # A JSON-schema reply wraps the ending in {"verdict": "..."}, escapes its backslashes, and the
                # grammar allows whitespace: more room than a bare choice.
                room = longest + (64 if self.choice_field == "response_format" else 16)
                path, body = choice_request(prompts[pi], free[pi][k].text, endings, self.model,
                                            dataclasses.replace(sampling, n=1, max_new_tokens=room, stop=None),
                                            seeds[job], self.choice_field, self.extra_body)
                try:
                    # One retry at most: a server that fails on the field (llama-cpp-python answers a JSON
                    # schema it cannot compile with HTTP 500) would otherwise cost a full backoff per vote.
                    response = self._post(path, body, retries=min(self.retries, 1))
                    ending = _choice_text(response, self.choice_field)
                    if ending in endings:
                        return Choices.reply(free[pi][k], ending, _share_tokens(
                            (response.get("usage") or {}).get("completion_tokens"), [ending])[0])
                    self._say_fallback(f"answered {ending[:80]!r}, not one of the allowed endings (the server "
                                       "ignores the field?)")
                except PrmError as exc:
                    # Any HTTP status is a refusal of the request as constrained; no response at all (timeouts,
                    # connection errors) is not, and fails the stage as a free request would.
                    if not re.search(r"HTTP [45]\d\d\b", str(exc)):
                        raise
                    with self._lock:
                        self._field_refused = True  # later votes skip the field: it will not work this run
                    self._say_fallback(f"refused the request field: {exc}")
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


