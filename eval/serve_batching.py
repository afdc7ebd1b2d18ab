"""Dynamic batching for `prm serve`: solutions of concurrent requests scored together, one pass per solution.

Requests put their encoded solutions on a queue and await a future. One worker task takes whole requests in
arrival order until it holds `gather` solutions (at least one request), and runs them through the library's
batching engine (`Scorer.score_encoded`: sorted by length, cut at `batch_size` sequences, `max_tokens` padded
tokens and a `max_padding` share of pad positions a forward pass) on a single model thread, so the event loop
keeps answering while the model runs.
Nothing waits for a batch to fill: what arrives while the model is busy is batched in the next round, so one
client alone is never delayed and many clients share forward passes.

A request whose client went away before its round started is dropped from the round (`Job.cancelled`); one
already in a forward pass finishes and its result is thrown away. Tokenizing runs on its own single thread
(fast tokenizers must not be used from two threads at once) so it overlaps the model's work.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from dataclasses import dataclass, field
from typing import Any

from prm.scoring import Encoded, Scorer, ScoreStats


@dataclass
class Job:
    encoded: list[Encoded]
    future: asyncio.Future[list[list[float]]]
    cancelled: bool = False


@dataclass
class BatchStats:
    rounds: int = 0
    solutions: int = 0
    forward_passes: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    largest_round: int = 0
    recent: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=100))


class Batcher:
    """Queue + one worker: `await batcher.score(encoded)` returns the step scores of those solutions."""

    def __init__(self, scorer: Scorer, batch_size: int, max_tokens: int | None, gather: int,
                 max_padding: float | None = None):
        self.scorer = scorer
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.max_padding = max_padding
        self.gather = max(gather, batch_size)
        self.stats = BatchStats()
        self._queue: collections.deque[Job] = collections.deque()
        self._wake = asyncio.Event()
        self._model_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prm-model")
        self._token_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prm-tokenize")
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="prm-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._model_thread.shutdown(wait=True)
        self._token_thread.shutdown(wait=True)

    async def tokenize(self, fn: Any, *args: Any) -> Any:
        """Run a tokenizing function on the tokenizer thread."""
        return await asyncio.get_running_loop().run_in_executor(self._token_thread, fn, *args)

    async def score(self, encoded: list[Encoded]) -> list[list[float]]:
        if not encoded:
            return []
        job = Job(encoded, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._wake.set()
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:  # the client went away: leave the round it is not in yet
            job.cancelled = True
            raise

    def queued(self) -> int:
        return sum(len(j.encoded) for j in self._queue)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                jobs, n = [], 0
                while self._queue and (not jobs or n + len(self._queue[0].encoded) <= self.gather):
                    job = self._queue.popleft()
                    if not job.cancelled:
                        jobs.append(job)
                        n += len(job.encoded)
                if not jobs:
                    continue
                flat = [e for j in jobs for e in j.encoded]
                try:
                    scores, done = await loop.run_in_executor(self._model_thread, self._forward, flat)
                except Exception as exc:  # a failed round fails its requests, not the server
                    for j in jobs:
                        if not j.future.done():
                            j.future.set_exception(exc)
                    continue
                self.stats.rounds += 1
                self.stats.solutions += len(flat)
                self.stats.forward_passes += done.batches
                self.stats.tokens += done.tokens
                self.stats.padded_tokens += done.padded_tokens
                self.stats.largest_round = max(self.stats.largest_round, len(flat))
                self.stats.recent.append(len(flat))
                start = 0
                for j in jobs:
                    if not j.future.done():
                        j.future.set_result(scores[start:start + len(j.encoded)])
                    start += len(j.encoded)

    def _forward(self, flat: list[Encoded]) -> tuple[list[list[float]], ScoreStats]:
        scores = self.scorer.score_encoded(flat, self.batch_size, self.max_tokens, max_padding=self.max_padding)
        return scores, self.scorer.stats
