"""`prm search` and `prm experiment search`: the simulated mode against its closed form, token counts, resume,
shards, bad input, and the real generation and scoring path on tiny random models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from prm.eval.search import SearchConfig, SimulatedConfig, run_search
from prm.eval.search_policies import words
from prm.eval.search_theory import beam, bon, expected_accuracy

from prm.app.cli import main
from prm.jsonl import load_records, write_atomic
from prm.records import Problem

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chains(tmp_path_factory) -> str:
    from prm.data_synthesis.problems import chain_sum_problems

    path = tmp_path_factory.mktemp("chains") / "problems.jsonl"
    write_atomic(path, chain_sum_problems(300, seed=0, terms=[3, 4], digits=1))
    return str(path)


def _records(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _sim(chains: str, out: Path, **kw) -> SearchConfig:
    sim = SimulatedConfig(**kw.pop("simulated", {}))
    return SearchConfig(mode="simulated", simulated=sim, input=chains, output=str(out), batch_problems=300, **kw)


def test_closed_forms_reduce_to_the_obvious_cases():
    assert bon(0.3, 4, 1.0) == pytest.approx(1 - 0.7 ** 4)
    assert bon(0.3, 4, 0.5) == pytest.approx(0.3)  # a coin-flip PRM picks at random
    assert beam([0.5], 4, 2, 1.0) == pytest.approx(1 - 0.5 ** 4)  # one step: Best-of-N
    # keep 1 of 2, expand 2: right after step 1 with 1 - 0.5^2, then one right child of the kept right beam
    assert beam([0.5, 0.5], 2, 2, 1.0) == pytest.approx(0.75 * 0.75)


@pytest.mark.parametrize("method", ["bon", "beam"])
@pytest.mark.parametrize("prm,acc", [("oracle", 1.0), ("noisy", 0.75)])
def test_simulated_accuracy_matches_the_closed_form(chains, tmp_path, method, prm, acc):
    cfg = _sim(chains, tmp_path / "s.jsonl", method=method, n=4, beam_width=2,
               simulated={"p": 0.6, "prm": prm, "accuracy": acc})
    run_search(cfg)
    recs = _records(tmp_path / "s.jsonl")
    measured = sum(r["error_free"] for r in recs) / len(recs)
    expected = expected_accuracy(load_records(chains, Problem), method, 0.6, 4, 2, acc)
    se = math.sqrt(expected * (1 - expected) / len(recs))
    assert abs(measured - expected) < 4 * se, (measured, expected, se)
    # graded accuracy: at least the error-free share (a carried error rarely lands on the right answer)
    assert sum(r["correct"] for r in recs) >= sum(r["error_free"] for r in recs) - 3


def test_token_counts_equal_the_tokens_in_the_records(chains, tmp_path):
    run_search(_sim(chains, tmp_path / "bon.jsonl", method="bon", n=4))
    for r in _records(tmp_path / "bon.jsonl"):
        assert r["generated_tokens"] == sum(c["tokens"] for c in r["candidates"])
        assert r["generated_tokens"] == sum(words(s) for c in r["candidates"] for s in c["steps"])
        assert r["scored_tokens"] == sum(words(r["problem"]) + sum(words(s) for s in c["steps"])
                                         for c in r["candidates"])
    run_search(_sim(chains, tmp_path / "beam.jsonl", method="beam", n=4, beam_width=2))
    for r in _records(tmp_path / "beam.jsonl"):
        assert all(c["tokens"] == sum(c["step_tokens"]) and len(c["step_scores"]) == len(c["steps"])
                   for c in r["candidates"])
        # N nodes a step, every one scored once: the last step's N candidates are the finished ones
        assert r["nodes"] == 4 * len(r["candidates"][0]["steps"]) and len(r["candidates"]) == 4
        assert r["generated_tokens"] >= max(c["tokens"] for c in r["candidates"])


def test_resume_after_a_kill_and_shards(chains, tmp_path):
    from prm.shards import shard_path

    small = tmp_path / "p.jsonl"
    write_atomic(small, load_records(chains, Problem)[:40])
    chains = str(small)
    full = tmp_path / "full.jsonl"
    run_search(_sim(chains, full, method="dvts", n=4, beam_width=2))
    lines = full.read_text().splitlines(keepends=True)
    killed = tmp_path / "killed.jsonl"
    killed.write_text("".join(lines[:5]) + lines[5][:40])  # a torn last line, as a kill leaves it
    stats = run_search(_sim(chains, killed, method="dvts", n=4, beam_width=2))
    assert stats["already_done"] == 5 and stats["written"] == len(lines) - 5
    assert killed.read_text() == full.read_text()  # deterministic: the same records as one uninterrupted run
    ids = set()
    for i in range(2):
        run_search(_sim(chains, tmp_path / "sh.jsonl", method="dvts", n=4, beam_width=2), shard=(i, 2))
        ids |= {r["id"] for r in _records(shard_path(tmp_path / "sh.jsonl", i, 2))}
    assert ids == {r["id"] for r in _records(full)}


@pytest.mark.parametrize("override,message", [
    ("n=6", "divisible"), ("beam_width=8", "must not exceed"), ("method=greedy", "method must be"),
    ("aggregation=mean", "aggregation must be"), ("answer=best", "answer must be"),
])
def test_bad_settings_are_one_line_before_work(chains, tmp_path, capsys, override, message):
    out = tmp_path / "o.jsonl"
    assert main(["search", "-i", chains, "-o", str(out), "mode=simulated", "n=4", "beam_width=4", override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_simulated_mode_needs_reference_steps(tmp_path, capsys):
    problems = tmp_path / "p.jsonl"
    write_atomic(problems, [Problem(id="a", problem="1+1?", answer="2", source="x")])
    assert main(["search", "-i", str(problems), "-o", str(tmp_path / "o.jsonl"), "mode=simulated"]) == 2
    assert "meta.reference_steps" in capsys.readouterr().err and not (tmp_path / "o.jsonl").exists()


@pytest.fixture(scope="module")
def tiny_prm(tmp_path_factory) -> str:
    from testkit.tiny_checkpoints import make_tiny_checkpoint

    return make_tiny_checkpoint("ours", tmp_path_factory.mktemp("prm") / "ours")


@pytest.mark.parametrize("method", ["beam", pytest.param("dvts", marks=pytest.mark.slow),
                                    pytest.param("bon", marks=pytest.mark.slow)])
def test_tiny_models_through_the_real_generation_path(chains, tmp_path, tiny_model_dir, tiny_prm, method):
    """A tiny random policy and PRM: one generate call per iteration for all beams of all problems."""
    from prm.eval.scoring_cli import ScoreConfig
    from prm.eval.search import build

    from prm.generation import GeneratorConfig

    problems = tmp_path / "p.jsonl"
    write_atomic(problems, load_records(chains, Problem)[:3])
    cfg = SearchConfig(method=method, n=4, beam_width=2, generator=GeneratorConfig(model=tiny_model_dir),
                       prm=ScoreConfig(model=tiny_prm), delimiter="\n", max_steps=3, step_tokens=6,
                       max_tokens=18, input=str(problems), output=str(tmp_path / "o.jsonl"), answer="vote")
    built = build(cfg, [])
    stats = run_search(cfg, built=built)
    recs = _records(tmp_path / "o.jsonl")
    assert len(recs) == 3 and stats["written"] == 3
    assert built[0].calls == stats["generate_calls"] == (1 if method == "bon" else 3)  # 3 steps at most
    for r in recs:
        assert r["candidates"] and r["scored_tokens"] > 0
        assert r["generated_tokens"] >= max(c["tokens"] for c in r["candidates"])
        for c in r["candidates"]:
            assert len(c["step_scores"]) == len(c["steps"]) and all(0 <= s <= 1 for s in c["step_scores"])
        if method != "bon":
            assert len(r["candidates"]) == 4 and r["nodes"] == 12  # N nodes at each of the 3 steps


def test_a_scorer_that_cannot_score_prefixes_is_refused(tiny_prm):
    """An outcome-style reading (every step read at the last token) changes a step's score with later steps."""
    from prm.eval.search_scorers import PrmStepScorer

    from prm.errors import PrmError
    from prm.scoring import Encoded, load_scorer

    scorer = load_scorer(tiny_prm, device="cpu")
    PrmStepScorer(scorer).check_prefixes()  # ours reads each step at its marker: prefixes score alike

    encode = scorer.encode

    def at_the_end(problem, steps):
        enc = encode(problem, steps)
        return Encoded(enc.input_ids, [len(enc.input_ids) - 1] * len(steps))

    scorer.encode = at_the_end
    with pytest.raises(PrmError, match="cannot score prefixes"):
        PrmStepScorer(scorer).check_prefixes()


def test_experiment_report(tmp_path, capsys):
    run_dir = tmp_path / "exp"
    argv = ["experiment", "search", "--config", str(ROOT / "configs/search_simulated.yaml"),
            f"search.run_dir={run_dir}", "search.budgets=[4]", "search.bootstrap=50", "problems.n=20"]
    assert main(argv) == 0
    report = json.loads((run_dir / "report/report.json").read_text())
    rows = report["rows"]
    assert {(r["method"], r["n"]) for r in rows} == {(m, n) for m in ("bon", "weighted", "majority", "beam", "dvts")
                                                       for n in (4,)}
    for row in rows:
        run = "bon" if row["method"] in ("weighted", "majority") else row["method"]
        recs = _records(run_dir / f"runs/{run}_n{row['n']}.jsonl")
        assert row["generated_tokens"] == sum(r["generated_tokens"] for r in recs)
        assert row["scored_tokens"] == sum(r["scored_tokens"] for r in recs)
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"] and row["seconds"] >= 0
    assert (run_dir / "report/search.png").stat().st_size > 0 and "| beam | 4 |" in (run_dir / "report/report.md").read_text()
    timing = (run_dir / "runs/seconds.json").read_text()
    assert main(argv) == 0 and (run_dir / "runs/seconds.json").read_text() == timing  # nothing rerun
    bad = main(["experiment", "search", "--config", str(ROOT / "configs/search_simulated.yaml"),
                f"search.run_dir={tmp_path / 'bad'}", "search.budgets=[2]"])
    assert bad == 2 and "must not exceed" in capsys.readouterr().err and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("fmt", ["rlhflow", pytest.param("qwen_prm", marks=pytest.mark.slow),
                                 pytest.param("skywork", marks=pytest.mark.slow),
                                 pytest.param("math_shepherd", marks=pytest.mark.slow)])
def test_every_scorer_format_guides_search_without_adapter_code(chains, tmp_path, fmt):
    """A tiny checkpoint of each released format scores the search's prefixes through prm.scoring as is."""
    from prm.eval.search_algo import SearchSpec, run_batch
    from prm.eval.search_policies import SimulatedPolicy
    from prm.eval.search_scorers import PrmStepScorer

    from prm.scoring import load_scorer
    from testkit.tiny_checkpoints import make_tiny_checkpoint

    scorer = PrmStepScorer(load_scorer(make_tiny_checkpoint(fmt, tmp_path / fmt), device="cpu"))
    scorer.check_prefixes()
    problems = load_records(chains, Problem)[:2]
    recs = run_batch(problems, SimulatedPolicy(0.5, 0), scorer, SearchSpec("beam", 4, 2))
    for r in recs:
        assert r["scored_tokens"] > 0 and len(r["candidates"]) == 4
        assert all(len(c["step_scores"]) == len(c["steps"]) for c in r["candidates"])


class _CompletionsServer:
    """A real OpenAI-compatible /v1/completions server on 127.0.0.1, answering with a tiny transformers model."""

    def __init__(self, generator):
        import http.server
        import threading

        from prm.generation import SamplingConfig

        outer = self
        self.bodies: list[dict] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                sampling = SamplingConfig(n=body["n"], max_new_tokens=body["max_tokens"], temperature=body["temperature"],
                                          top_p=body["top_p"], seed=body["seed"], stop=body.get("stop"))
                outs = generator.generate([body["prompt"]], sampling)[0]
                payload = json.dumps({"choices": [{"index": i, "text": c.text, "finish_reason": c.finish_reason}
                                                  for i, c in enumerate(outs)],
                                      "usage": {"completion_tokens": sum(c.tokens for c in outs)}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_compatible_policy_with_stop_strings(chains, tmp_path, tiny_model_dir, tiny_prm):
    """The search's policy over HTTP: raw-text continuations on /v1/completions, the delimiter as `stop`."""
    from prm.eval.scoring_cli import ScoreConfig
    from prm.eval.search import build

    from prm.generation import GeneratorConfig, TransformersGenerator

    server = _CompletionsServer(TransformersGenerator(tiny_model_dir, device="cpu"))
    try:
        problems = tmp_path / "p.jsonl"
        write_atomic(problems, load_records(chains, Problem)[:2])
        cfg = SearchConfig(method="beam", n=4, beam_width=2, prm=ScoreConfig(model=tiny_prm),
                           generator=GeneratorConfig(backend="openai", base_url=server.url, model="tiny"),
                           chat_template_model=tiny_model_dir, delimiter="\n", max_steps=2, step_tokens=5,
                           max_tokens=10, input=str(problems), output=str(tmp_path / "o.jsonl"))
        stats = run_search(cfg, built=build(cfg, []))
    finally:
        server.close()
    assert stats["written"] == 2 and all(b["stop"] == ["\n"] for b in server.bodies)
    assert all(b["prompt"].startswith("<|im_start|>") for b in server.bodies)  # the chat rendered, then continued
    assert len(server.bodies) == 2 + 2 * 2  # one request per prompt: 2 roots (n=4), then 2 kept beams each (n=2)
    recs = _records(tmp_path / "o.jsonl")
    assert all(len(r["candidates"]) == 4 and r["generated_tokens"] > 0 for r in recs)
