"""Constrained replies (`generate_choice`): free text, then exactly one allowed ending such as `\\boxed{2}`. transformers runs on a tiny random model (which writes garbage, so only the constraint makes the
reply valid); vLLM runs its real request code against a stand-in engine (vLLM has no CPU wheel) that checks
the structured-output field and answers only with an allowed choice."""

from __future__ import annotations

import json
import math

import pytest

from prm.errors import PrmError
from prm.generation import (
    CHOICE_FIELDS,
    Choices,
    Completion,
    OpenAIGenerator,
    SamplingConfig,
    TransformersGenerator,
)

CHAT = [{"role": "user", "content": "Which paragraph is wrong?"}]
VALUES = [["-1", "0", "1", "2"], ["-1", "0"]]
OPTIONS = [[f"\\boxed{{{v}}}" for v in values] for values in VALUES]
LEAD = "\\boxed{"


@pytest.fixture(scope="module")
def tiny_gen(tiny_model_dir):
    return TransformersGenerator(tiny_model_dir, device="cpu", batch_size=3)


def _verdict(text: str) -> str:
    assert text.endswith("}") and LEAD in text
    return text[text.rindex(LEAD) + len(LEAD) : -1]


def test_transformers_choice_always_ends_in_an_allowed_option(tiny_gen):
    choices = Choices(OPTIONS)
    out = tiny_gen.generate_choice([CHAT, "raw text prompt"], SamplingConfig(n=3, max_new_tokens=12, seed=1),
                                   choices)
    assert [len(row) for row in out] == [3, 3]
    assert choices.lead(0) == LEAD
    for values, row in zip(VALUES, out, strict=True):
        for c in row:
            assert c.constrained and c.finish_reason == "stop"
            assert _verdict(c.text) in values
            assert c.text.count(LEAD) == 1  # the free part was cut at the lead
            assert c.tokens > 1
    # The free text is the model's own (garbage from a random model), as plain generation with the stop gives.
    free = tiny_gen.generate([CHAT], SamplingConfig(n=3, max_new_tokens=12, seed=1, stop=[LEAD]))
    assert [c.text[: c.text.rindex(LEAD)] for c in out[0]] == [c.text for c in free[0]]


def test_transformers_greedy_choice_is_the_most_likely_option(tiny_gen):
    import torch

    choices = Choices([[f"\\boxed{{{v}}}" for v in range(-1, 4)]], reason=False)
    (row,) = tiny_gen.generate_choice([CHAT], SamplingConfig(n=1, max_new_tokens=4, temperature=0.0), choices)
    assert all(c.text.startswith(LEAD) and c.tokens > 1 for c in row)
    # Score every option by hand in one unpadded forward pass each: the pick is the argmax.
    _, head = tiny_gen._render(CHAT)
    context = head
    scores = []
    for option in choices.options[0]:
        cont = tiny_gen.tokenizer(option, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = tiny_gen.model(input_ids=torch.tensor([context + cont])).logits.float()
        logprobs = torch.log_softmax(logits[0], dim=-1)
        scores.append(sum(float(logprobs[len(context) - 1 + i, t]) for i, t in enumerate(cont)))
    best = choices.options[0][max(range(len(scores)), key=scores.__getitem__)]
    assert {c.text for c in row} == {best}
    # The batched scoring (left-padded contexts, each run once, its endings continuing its KV cache) gives the
    # same log-probabilities, also for a shorter context padded in the same batch and fewer endings.
    endings = [tiny_gen.tokenizer(o, add_special_tokens=False)["input_ids"] for o in choices.options[0]]
    short = context[5:]
    with torch.inference_mode():
        logits = tiny_gen.model(input_ids=torch.tensor([short + endings[1]])).logits.float()
    logprobs = torch.log_softmax(logits[0], dim=-1)
    short_score = sum(float(logprobs[len(short) - 1 + i, t]) for i, t in enumerate(endings[1]))
    for max_ending_rows in (None, 1, 3):  # the endings in one group, one row a group, groups across contexts
        batched = tiny_gen._ending_logprobs([(context, endings), (short, endings[1:2])], max_ending_rows)
        assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(batched[0], scores, strict=True))
        assert math.isclose(batched[1][0], short_score, abs_tol=1e-4)


def test_transformers_sampled_choice_is_seeded_per_sample(tiny_gen):
    choices = Choices([[f"\\boxed{{{v}}}" for v in range(-1, 6)]], reason=False)
    sampling = SamplingConfig(n=6, max_new_tokens=4, temperature=2.0, seed=3)
    first = tiny_gen.generate_choice([CHAT], sampling, choices)
    assert [c.text for c in tiny_gen.generate_choice([CHAT], sampling, choices)[0]] == [c.text for c in first[0]]
    assert len({c.text for c in first[0]}) > 1  # a high temperature spreads the picks


def test_choice_lists_are_checked(tiny_gen):
    with pytest.raises(PrmError, match="2 option lists for 1 prompts"):
        tiny_gen.generate_choice([CHAT], SamplingConfig(), Choices(OPTIONS))
    with pytest.raises(PrmError, match="non-empty strings"):
        tiny_gen.generate_choice([CHAT], SamplingConfig(), Choices([[]]))


def test_free_part_is_cut_back_to_the_last_lead_and_endings_filtered(tiny_gen):
    """An ending that repeats a tag the model already wrote: the free part is cut before the last lead, and
    `accept` keeps only the endings that make a valid whole reply."""
    endings = [["</a_1> no", "</a_2> no", "</a_2> yes"]]

    class Scripted:
        def generate(self, prompts, sampling):
            assert sampling.stop == ["<end>"]
            return [[Completion("<a_1> x </a_1> <a_2> y </a_2> ", 9, "stop")]]

    choices = Choices(endings, stop="<end>", accept=lambda i, reply: reply.count("</a_2>") == 1)
    assert choices.lead(0) == "</a_"
    (row,) = choices.free_parts(Scripted(), ["p"], SamplingConfig(n=1))
    assert row[0].text == "<a_1> x </a_1> <a_2> y "
    assert choices.candidates(0, row[0].text) == ["</a_2> no", "</a_2> yes"]
    assert Choices(endings, accept=lambda i, reply: False).candidates(0, "") == endings[0]  # none valid: all


# ------------------------------------------------------------------------------------ OpenAI-compatible


class ChoiceServer:
    """A real HTTP server on 127.0.0.1 standing in for an OpenAI-compatible one with structured outputs. Free
    requests (stop at the lead) get free text; a constrained request must carry the allowed endings in the
    field the test expects, and gets its last ending (`refuse`: that HTTP status instead, as a server without
    the field answers, 400, or llama-cpp-python on a schema it cannot compile, 500; "ignore": free text, as a
    server that ignores the field answers); a request without the field gets free text with a box."""

    FREE = "Paragraph 0 is fine. "

    def __init__(self, field: str, refuse: int | str | None = None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                constrained = any(k in body for k in CHOICE_FIELDS)
                if constrained and isinstance(refuse, int):
                    return self._send(refuse, {"error": {"message": f"cannot use field {field}"}})
                if constrained and refuse != "ignore":
                    text = server.choose(body, field)
                elif body.get("stop") == ["\\boxed{"]:
                    text = server.FREE
                else:
                    text = "so \\boxed{1}"
                key = "message" if self.path.endswith("chat/completions") else "text"
                choice = {"index": 0, "finish_reason": "stop",
                          key: {"role": "assistant", "content": text} if key == "message" else text}
                self._send(200, {"choices": [choice] * body["n"], "usage": {"completion_tokens": 3}})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def choose(self, body: dict, field: str) -> str:
        assert set(body) & set(CHOICE_FIELDS) == {field} and body["n"] == 1 and "stop" not in body
        if field == "response_format":
            schema = body["response_format"]["json_schema"]["schema"]
            endings = schema["properties"]["verdict"]["enum"]
            assert body["response_format"]["type"] == "json_schema" and schema["required"] == ["verdict"]
            if "messages" in body:
                assert body["messages"][-2] == {"role": "assistant", "content": self.FREE}
                assert body["messages"][-1]["role"] == "user"
            return json.dumps({"verdict": endings[-1]})
        endings = body["structured_outputs"]["choice"] if field == "structured_outputs" else body["guided_choice"]
        if "messages" in body:  # the assistant's free text is continued, not answered
            assert body["messages"][-1] == {"role": "assistant", "content": self.FREE}
            assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        else:
            assert body["prompt"].endswith(self.FREE)
        return endings[-1]

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("field", ["structured_outputs", "guided_choice", "response_format"])
def test_openai_choice_request_fields_against_local_server(field):
    with ChoiceServer(field) as url, OpenAIGenerator(url, "judge", choice_field=field, retries=0) as gen:
        out = gen.generate_choice([CHAT, "raw prompt: "], SamplingConfig(n=2, max_new_tokens=20, seed=2),
                                  Choices(OPTIONS))
    for options, row in zip(OPTIONS, out, strict=True):
        assert [c.text for c in row] == [ChoiceServer.FREE + options[-1]] * 2
        assert all(c.constrained for c in row)


@pytest.mark.parametrize("field", CHOICE_FIELDS)
@pytest.mark.parametrize("refuse", [400, 500, "ignore"])
def test_openai_server_without_the_field_falls_back_to_free_text(capsys, field, refuse):
    """Every choice_field degrades alike, whether the server refuses it (4xx, 5xx) or ignores it."""
    with ChoiceServer(field, refuse=refuse) as url, OpenAIGenerator(url, "judge", retries=0, max_concurrency=1,
                                                                    choice_field=field) as gen:
        out = gen.generate_choice([CHAT, "raw prompt: "], SamplingConfig(n=2, seed=2), Choices(OPTIONS))
    assert [[c.text for c in row] for row in out] == [[ChoiceServer.FREE + "so \\boxed{1}"] * 2] * 2
    assert not any(c.constrained for row in out for c in row)
    err = capsys.readouterr().err
    assert err.count(f"cannot constrain with {field}") == 1 and "free text" in err


def test_openai_refused_field_is_not_asked_again():
    server = ChoiceServer("structured_outputs", refuse=500)
    with server as url, OpenAIGenerator(url, "judge", retries=3, max_concurrency=1) as gen:
        gen.generate_choice([CHAT, "raw prompt: "], SamplingConfig(n=2, seed=2), Choices(OPTIONS))
    constrained = [b for b in server.bodies if "structured_outputs" in b]
    assert len(constrained) == 2  # the first vote's request and its one retry; the other three votes skip it


def test_openai_choice_field_is_checked():
    from prm.errors import ConfigError

    with pytest.raises(ConfigError, match="choice_field must be one of"):
        OpenAIGenerator("http://127.0.0.1:1/v1", "m", choice_field="regex")
