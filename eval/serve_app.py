"""The HTTP side of `prm serve` (eval/serve.py): FastAPI routes, JSON errors naming the field, the API key and
body-size guard. Imported only when the server starts, so `prm --help` does not load FastAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prm.eval.aggregate import aggregate
from prm.eval.serve_batching import Batcher
from prm.eval.serve_schema import (
    PoolingData,
    PoolingReply,
    PoolingRequest,
    RewardReply,
    RewardRequest,
    ScoredItem,
    ScoreReply,
    ScoreRequest,
    Usage,
)

from prm.errors import PrmError
from prm.scoring import Encoded
from prm.steps import split_steps


class RequestError(Exception):
    """A bad request: HTTP status, the field it concerns and a message."""

    def __init__(self, status: int, param: str | None, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.message, self.kind = status, param, message, kind


def error_body(status: int, message: str, param: str | None = None,
               kind: str = "invalid_request_error") -> dict[str, Any]:
    # The shape of OpenAI's and vLLM's errors, so their clients show the message.
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


class Guard:
    """ASGI middleware run before routing: the API key and the body size limit (413 before reading the body
    when Content-Length says so, else as soon as the streamed body passes the limit)."""

    def __init__(self, app: Any, max_body_bytes: int, api_key: str | None):
        self.app, self.limit, self.key = app, max_body_bytes, api_key

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.key and scope.get("path") != "/health":
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.key}".encode()):
                return await _send_json(send, 401, error_body(401, "missing or wrong API key (Authorization: "
                                                                   "Bearer ...)", "Authorization",
                                                              "authentication_error"))
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_json(send, 413, _too_large(self.limit))
        # Read the body here (the app reads it whole anyway), so a chunked body over the limit is a 413 too.
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            seen += len(message.get("body", b""))
            if seen > self.limit:
                return await _send_json(send, 413, _too_large(self.limit))
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> dict[str, Any]:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _too_large(limit: int) -> dict[str, Any]:
    return error_body(413, f"request body over {limit} bytes (prm serve max_body_bytes)", "body")


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'items', 0, 'steps') -> 'items[0].steps'."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif not isinstance(part, str) or part.startswith(("function-", "list[", "str", "int")):
            continue  # the union branch names pydantic adds for `input: str | list[...]`
        else:
            out += f".{part}" if out else part
    return out or "body"


async def _until_disconnected(request: Any) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(scorer: Any, cfg: Any, api_key: str | None = None) -> Any:
    """The FastAPI app serving `scorer` (a prm.scoring.Scorer) under the limits of `cfg` (a ServeConfig)."""
    name = cfg.served_model_name or str(cfg.model)
    names = {name, str(cfg.model)}
    how = "product" if cfg.aggregate == "prod" else cfg.aggregate
    max_item_tokens = cfg.max_item_tokens or scorer.max_positions or 32768
    tag = scorer.step_tag_id()
    vocab = len(scorer.tokenizer)
    state: dict[str, Any] = {"in_flight": 0}

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):  # noqa: ANN202
        batcher = Batcher(scorer, cfg.batch_size, cfg.max_tokens, cfg.gather, cfg.max_padding)
        batcher.start()
        state["batcher"] = batcher
        yield
        await batcher.stop()

    app = FastAPI(title="prm serve", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(error_body(exc.status, exc.message, exc.param, exc.kind), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            where = bad_json.get("ctx", {}).get("error", "")
            return JSONResponse(error_body(400, f"malformed JSON body: {where}".rstrip(": "), "body"), 400)
        lines = [f"{_field(e['loc'])}: {e['msg']}" for e in errors[:10]]
        return JSONResponse(error_body(422, "; ".join(lines), _field(errors[0]["loc"])), 422)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        print(f"prm serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return JSONResponse(error_body(500, f"{type(exc).__name__}: {exc}", None, "internal_error"), 500)

    def count(field: str, n: int) -> None:
        if n > cfg.max_items:
            raise RequestError(413, field, f"{field} has {n} entries, more than the server's limit of "
                                           f"{cfg.max_items} (prm serve max_items)")

    def check_tokens(field: str, encoded: list[Encoded], fields: list[str] | None = None) -> None:
        for i, e in enumerate(encoded):
            if len(e.input_ids) > max_item_tokens:
                where = fields[i] if fields else f"{field}[{i}]"
                raise RequestError(422, where, f"{where} has {len(e.input_ids)} tokens, more than the limit of "
                                               f"{max_item_tokens} (prm serve max_item_tokens)")

    def encode(problems: list[str], steps: list[list[str]], field: str) -> list[Encoded]:
        try:
            return scorer.encode_all(problems, steps)
        except PrmError as exc:
            raise RequestError(422, field, str(exc)) from None

    async def run(request: Request, encoded: list[Encoded]) -> list[list[float]]:
        """Scores through the batcher; a client that hangs up leaves the queue without disturbing others."""
        scoring = asyncio.ensure_future(state["batcher"].score(encoded))
        watch = asyncio.ensure_future(_until_disconnected(request))
        state["in_flight"] += 1
        try:
            await asyncio.wait({scoring, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            state["in_flight"] -= 1
        watch.cancel()
        if not scoring.done():
            scoring.cancel()
            raise RequestError(499, None, "client closed the request")
        return scoring.result()

    def steps_of(text: str, where: str) -> list[str]:
        steps = split_steps(text, cfg.split)  # type: ignore[arg-type]
        if not steps:
            raise RequestError(422, where, f"{where}: no steps after splitting ({cfg.split})")
        return steps

    @app.get("/health")
    async def health() -> dict[str, Any]:
        batcher = state["batcher"]
        return {"status": "ok", "model": name, "format": scorer.format, "scorer": scorer.describe(),
                "in_flight_requests": state["in_flight"], "queued_solutions": batcher.queued(), "aggregate": how, "split": cfg.split,
                "batching": {"rounds": batcher.stats.rounds, "solutions": batcher.stats.solutions,
                             "forward_passes": batcher.stats.forward_passes,
                             "tokens": batcher.stats.tokens, "padded_tokens": batcher.stats.padded_tokens,
                             "largest_round": batcher.stats.largest_round}}

    @app.post("/v1/score", response_model=ScoreReply, response_model_exclude_none=True)
    async def score(body: ScoreRequest, request: Request) -> ScoreReply:
        count("items", len(body.items))
        problems = [it.problem for it in body.items]
        steps = [it.steps if it.steps is not None else steps_of(it.response or "", f"items[{i}].response")
                 for i, it in enumerate(body.items)]
        encoded = await state["batcher"].tokenize(encode, problems, steps, "items")
        check_tokens("items", encoded)
        scores = await run(request, encoded)
        return ScoreReply(model=name, items=[
            ScoredItem(step_scores=s, steps=st if it.steps is None else None)
            for s, st, it in zip(scores, steps, body.items, strict=True)])

    @app.post("/get_reward", response_model=RewardReply)
    async def get_reward(body: RewardRequest, request: Request) -> RewardReply:
        count("query", len(body.query))
        todo: list[int] = []
        problems, steps = [], []
        for i, (query, prompt) in enumerate(zip(body.query, body.prompts, strict=True)):
            if not query.startswith(prompt):
                raise RequestError(422, f"query[{i}]", f"query[{i}] does not start with prompts[{i}] (the query "
                                                        "is the prompt followed by the response)")
            found = split_steps(query[len(prompt):], cfg.split)  # type: ignore[arg-type]
            if found:  # an empty response has no step to score: reward 0
                todo.append(i)
                problems.append(prompt)
                steps.append(found)
        encoded = await state["batcher"].tokenize(encode, problems, steps, "query")
        check_tokens("query", encoded, [f"query[{i}]" for i in todo])
        scored = dict(zip(todo, await run(request, encoded), strict=True))
        per = [scored.get(i, []) for i in range(len(body.query))]
        rewards = [aggregate(s, how) if s else 0.0 for s in per]
        logs: dict[str, list[Any]] = {"num_steps": [len(s) for s in per],
                                      "min_step_score": [min(s) if s else 0.0 for s in per],
                                      "last_step_score": [s[-1] if s else 0.0 for s in per]}
        if cfg.log_step_scores:
            logs["step_scores"] = per
        return RewardReply(rewards=rewards, scores=rewards, extra_logs=logs)

    def pooling_ids(prompt: str | list[int], i: int, add_special: bool) -> list[int]:
        if isinstance(prompt, str):
            return list(scorer.tokenizer(prompt, add_special_tokens=add_special)["input_ids"])
        bad = next((t for t in prompt if not 0 <= t < vocab), None)
        if bad is not None:
            raise RequestError(422, f"input[{i}]", f"input[{i}]: token id {bad} outside the vocabulary (0..{vocab - 1})")
        return list(prompt)

    @app.post("/pooling", response_model=PoolingReply)
    async def pooling(body: PoolingRequest, request: Request) -> PoolingReply:
        if body.model is not None and body.model not in names:
            raise RequestError(404, "model", f"The model `{body.model}` does not exist (serving `{name}`).",
                               "NotFoundError")
        if tag is None:
            raise RequestError(400, "input", f"format {scorer.format} marks no step with one token, so text cannot "
                                             "be scored as given; use /v1/score with problem and steps")
        prompts = body.prompts()
        count("input", len(prompts))
        ids = [await state["batcher"].tokenize(pooling_ids, p, i, body.add_special_tokens)
               for i, p in enumerate(prompts)]
        encoded = [Encoded(x, [k for k, t in enumerate(x) if t == tag]) for x in ids]
        check_tokens("input", encoded)
        marked = [i for i, e in enumerate(encoded) if e.positions]
        scored = dict(zip(marked, await run(request, [encoded[i] for i in marked]), strict=True))
        data = [PoolingData(index=i, data=[[1.0 - p, p] for p in scored.get(i, [])]) for i in range(len(prompts))]
        tokens = sum(len(x) for x in ids)
        return PoolingReply(model=body.model or name, data=data, usage=Usage(prompt_tokens=tokens,
                                                                            total_tokens=tokens))

    return Guard(app, cfg.max_body_bytes, api_key)
