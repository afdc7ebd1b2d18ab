"""MC annotator: exactness against the testbed's known first errors, search costs, batching, cache, CLI."""

from __future__ import annotations

import json

import pytest
from prm.data_synthesis.mc import (
    BinarySearch,
    ExhaustiveSearch,
    MCConfig,
    PromptBuilder,
    RolloutRunner,
    build_generator,
    label_solutions,
    policy_config,
)
from prm.data_synthesis.problems import gsm_symbolic_problems
from prm.data_synthesis.testbed import make_solutions

from prm.app.cli import main
from prm.config import build
from prm.generation import Completion, SamplingConfig
from prm.records import Solution


@pytest.fixture(scope="module")
def testbed() -> list[Solution]:
    return [s for p in gsm_symbolic_problems(60, seed=1) for s in make_solutions(p, 0.5, seed=0)]


def _cfg(**kw) -> MCConfig:
    values = {"backend": "simulated", "k": 4}
    values.update(kw)
    return build(MCConfig, values)


def _label(sols, **kw) -> tuple[list[Solution], RolloutRunner]:
    cfg = _cfg(**kw)
    gen, prompts = build_generator(cfg, sols)
    runner = RolloutRunner(gen, cfg, prompts)
    return label_solutions(sols, runner, cfg), runner


@pytest.mark.parametrize("mode, early_stop", [("exhaustive", True), ("exhaustive", False), ("binary", True)])
def test_noise_free_rollouts_find_every_known_first_error(testbed, mode, early_stop):
    labeled, _ = _label(testbed, mode=mode, early_stop=early_stop)
    assert [s.id for s in labeled] == [s.id for s in testbed]
    for s in labeled:
        tfe = s.extra["true_first_error"]
        assert s.mc.first_error == tfe, s.id
        assert s.mc.extra["mode"] == mode and len(s.mc.values) == len(s.steps)
        for j, v in enumerate(s.mc.values):  # every value that was measured is exact
            if v is not None:
                assert v == (1.0 if tfe == -1 or j < tfe else 0.0)
    assert any(s.extra["true_first_error"] >= 0 for s in testbed) and any(
        s.extra["true_first_error"] == -1 for s in testbed)


def test_exhaustive_without_early_stop_measures_every_prefix(testbed):
    labeled, _ = _label(testbed[:20], mode="exhaustive", early_stop=False, k=2)
    for s in labeled:
        assert None not in s.mc.values
        # every prefix but the last (its value comes from the final answer) was rolled out k times
        assert s.mc.rollouts == 2 * (len(s.steps) - 1)
    no_shortcut, _ = _label(testbed[:5], mode="exhaustive", early_stop=False, last_step_from_answer=False, k=2)
    assert all(s.mc.rollouts == 2 * len(s.steps) for s in no_shortcut)


def test_early_stop_saves_rollouts_without_changing_labels(testbed):
    full, _ = _label(testbed, mode="exhaustive", early_stop=False)
    early, _ = _label(testbed, mode="exhaustive", early_stop=True)
    assert [s.mc.first_error for s in full] == [s.mc.first_error for s in early]
    assert sum(s.mc.rollouts for s in early) < sum(s.mc.rollouts for s in full)
    for s in early:  # nothing rolled out after the first wrong prefix
        fe = s.mc.first_error
        if fe >= 0:
            assert all(v is None for v in s.mc.values[fe + 1 : len(s.steps) - 1])


def test_binary_search_costs_at_most_half_the_tokens_of_exhaustive(testbed):
    long = [s for s in testbed if len(s.steps) >= 4]
    assert len(long) >= 20 and any(s.extra["true_first_error"] >= 0 for s in long)
    exhaustive, _ = _label(long, mode="exhaustive")
    binary, _ = _label(long, mode="binary")
    ex_tokens = sum(s.mc.tokens for s in exhaustive)
    bin_tokens = sum(s.mc.tokens for s in binary)
    assert bin_tokens <= 0.5 * ex_tokens, (bin_tokens, ex_tokens)
    # and O(log n) prefixes per solution: at most ceil(log2(n)) rolled out
    for s in binary:
        n = len(s.steps)
        assert s.mc.rollouts / 4 <= (n - 1).bit_length()


def test_binary_search_steps_on_a_known_sequence():
    sol = Solution(id="s", problem_id="p", problem="q", answer="1", steps=[f"step {i}" for i in range(9)],
                   final_answer="2", correct=False, generator="g")
    cfg = _cfg(mode="binary")
    search = BinarySearch(sol, cfg)
    asked = []
    while not search.done:
        (j,) = search.pending()
        asked.append(j)
        search.feed(j, [(j < 5, 10)] * 4)  # prefixes 0..4 good, 5.. bad
    assert search.first_error == 5 and asked == [4, 6, 5]
    correct = Solution.from_dict({**sol.to_dict(), "correct": True})
    assert BinarySearch(correct, cfg).done and BinarySearch(correct, cfg).first_error == -1
    ex = ExhaustiveSearch(sol, _cfg(mode="exhaustive"))
    assert ex.pending() == [0]


def test_hard_threshold_decides_wrong_steps():
    sol = Solution(id="s", problem_id="p", problem="q", answer="1", steps=["a", "b", "c"], final_answer="2",
                   correct=False, generator="g")
    for threshold, expected in ((0.0, 2), (0.25, 1)):
        search = ExhaustiveSearch(sol, _cfg(mode="exhaustive", hard_threshold=threshold))
        search.feed(0, [(True, 1)] * 4)
        if not search.done:
            search.feed(1, [(True, 1)] + [(False, 1)] * 3)  # value 0.25: wrong only under threshold 0.25
        assert search.first_error == expected


class _Recorder:
    """A generator that answers like the simulated one but records every call."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.calls: list[tuple[int, int]] = []

    def generate(self, prompts, sampling: SamplingConfig) -> list[list[Completion]]:
        assert len(set(prompts)) == len(prompts)  # one request per distinct prefix
        self.calls.append((len(prompts), sampling.n))
        return self.inner.generate(prompts, sampling)


def test_k_rollouts_per_prefix_in_one_request_and_batched_calls(testbed):
    cfg = _cfg(mode="exhaustive", k=5, batch_prompts=16, window=64)
    gen, prompts = build_generator(cfg, testbed)
    rec = _Recorder(gen)
    runner = RolloutRunner(rec, cfg, prompts)
    label_solutions(testbed, runner, cfg)
    assert rec.calls and all(n == 5 for _, n in rec.calls)
    assert max(p for p, _ in rec.calls) == 16  # many prefixes (of many solutions) per call
    assert sum(p for p, _ in rec.calls) == runner.stats.requests - runner.stats.cache_hits


def test_cache_in_memory_and_on_disk(testbed, tmp_path):
    cfg = _cfg(mode="exhaustive", cache_path=str(tmp_path / "cache.jsonl"))
    gen, prompts = build_generator(cfg, testbed[:20])
    runner = RolloutRunner(gen, cfg, prompts, cfg.cache_path)
    first = label_solutions(testbed[:20], runner, cfg)
    generated = runner.stats.generated_rollouts
    assert generated > 0
    again = label_solutions(testbed[:20], runner, cfg)  # same process: all from memory
    assert runner.stats.generated_rollouts == generated
    runner.close()
    fresh = RolloutRunner(gen, cfg, prompts, cfg.cache_path)  # new process: from the file
    third = label_solutions(testbed[:20], fresh, cfg)
    assert fresh.stats.generated_rollouts == 0 and fresh.stats.cache_hits > 0
    assert [s.to_dict() for s in first] == [s.to_dict() for s in again] == [s.to_dict() for s in third]
    # other sampling parameters are other keys
    other = _cfg(mode="exhaustive", temperature=0.3)
    assert RolloutRunner(gen, other, prompts).key("x") != fresh.key("x")


def test_noisy_rollouts_report_and_soft_values(testbed):
    labeled, _ = _label(testbed, mode="exhaustive", early_stop=False, k=8,
                        **{"simulated": {"noise": 0.2, "seed": 3}})
    values = [v for s in labeled for v in s.mc.values[:-1]]
    assert any(0.0 < v < 1.0 for v in values)  # soft estimates between the hard ones
    from prm.data_synthesis.mc import mc_report

    rep = mc_report(labeled)
    assert rep["solutions"] == len(testbed) and rep["with_truth"] == len(testbed)
    assert 0.0 <= rep["first_error_accuracy"] <= 1.0
    assert rep["rollouts"] == sum(s.mc.rollouts for s in labeled)


def test_rollout_prompt_is_the_sample_prompt_plus_the_prefix(testbed, tokenizer):
    policy = policy_config(None)
    from prm.generation import render_chat

    builder = PromptBuilder(policy, "\n\n", lambda msgs: render_chat(tokenizer, msgs))
    sol = testbed[0]
    prompt = builder.rollout_prompt(sol, 1)
    assert prompt.endswith(sol.steps[0] + "\n\n" + sol.steps[1] + "\n\n")
    assert sol.problem in prompt and policy.system_prompt in prompt
    assert prompt.startswith(tokenizer.apply_chat_template(
        [{"role": "system", "content": policy.system_prompt}, {"role": "user", "content": "x"}],
        tokenize=False, add_generation_prompt=True)[:20])


def _write(path, records) -> None:
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))


def test_cli_simulated_end_to_end_and_report(testbed, tmp_path, capsys):
    src = tmp_path / "tb.jsonl"
    _write(src, testbed[:30])
    out = tmp_path / "mc.jsonl"
    assert main(["annotate", "mc", "-i", str(src), "-o", str(out), "backend=simulated", "mode=binary", "k=3"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and all(r["mc"]["first_error"] == r["true_first_error"] for r in rows)
    assert all(r["mc"]["mode"] == "binary" and r["mc"]["k"] == 3 for r in rows)
    report = json.loads((tmp_path / "mc.jsonl.report.json").read_text())
    assert report["first_error_accuracy"] == 1.0 and report["solutions"] == 30
    assert report["this_run"]["labeled"] == 30 and report["this_run"]["s_per_labeled_solution"] is not None
    assert "first-error accuracy vs truth 1.000" in capsys.readouterr().out


def test_cli_errors_are_one_line(testbed, tmp_path, capsys):
    src = tmp_path / "tb.jsonl"
    _write(src, testbed[:3])
    out = tmp_path / "mc.jsonl"
    for bad in (["k=0"], ["mode=sideways"], ["nonsense=1"], ["hard_threshold=1.5"]):
        assert main(["annotate", "mc", "-i", str(src), "-o", str(out), "backend=simulated", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "Traceback" not in err
    plain = Solution.from_dict({k: v for k, v in testbed[0].to_dict().items() if k != "true_first_error"})
    _write(src, [plain])
    assert main(["annotate", "mc", "-i", str(src), "-o", str(out), "backend=simulated"]) == 2
    assert "true_first_error" in capsys.readouterr().err
    assert not out.exists()


def test_real_generator_path_with_a_tiny_model(testbed, tiny_model_dir, tmp_path):
    """The transformers backend through the same annotator (a random model: labels are arbitrary)."""
    src = tmp_path / "tb.jsonl"
    _write(src, testbed[:2])
    out = tmp_path / "mc.jsonl"
    assert main(["annotate", "mc", "-i", str(src), "-o", str(out), "mode=exhaustive", "k=2",
                 f"generator.model={tiny_model_dir}", "generator.device=cpu", "max_new_tokens=4"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
    for r in rows:
        assert r["mc"]["rollouts"] % 2 == 0 and r["mc"]["rollouts"] >= 2
        assert 0 < r["mc"]["tokens"] <= r["mc"]["rollouts"] * 4


def test_cli_resume_refuses_other_settings_and_bad_model_leaves_no_file(testbed, tmp_path, capsys):
    src = tmp_path / "tb.jsonl"
    _write(src, testbed[:4])
    out = tmp_path / "mc.jsonl"
    assert main(["annotate", "mc", "-i", str(src), "-o", str(out), "backend=simulated", "mode=binary"]) == 0
    before = out.read_text()
    assert main(["annotate", "mc", "-i", str(src), "-o", str(out), "backend=simulated", "mode=exhaustive"]) == 2
    assert "mode=binary" in capsys.readouterr().err and out.read_text() == before
    missing = tmp_path / "m2.jsonl"
    assert main(["annotate", "mc", "-i", str(src), "-o", str(missing), f"generator.model={tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load" in err[0] and not missing.exists()
