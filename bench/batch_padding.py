"""What batching and padding do to a PRM forward pass's throughput: the same solutions one at a time, in sorted
batches, in server-like arrival rounds with and without the padding cap (`plan_batches(max_padding=...)`), and
as equal-length batches (the most batching can give, with no padding at all).

    python bench/batch_padding.py --out bench/results/batch_padding.json           # SmolLM2-135M as our PRM
    python bench/batch_padding.py --model tiny --items 256                          # tiny random qwen_prm
    python bench/batch_padding.py --device cuda --items 256                         # where batching should pay
    python bench/batch_padding.py --device cuda --model random:qwen2.5-math-7b --items 256   # a 7B PRM's shape
    python bench/batch_padding.py --dtype bf16                                      # the CPU's bf16 units

The solutions are bench/serve_load.py's (one problem + 2-8 arithmetic steps each); every method scores all of
them through `Scorer.score_encoded` (already tokenized: tokenizing is not what is compared), one torch thread by
default, wall clock (a score call ends by copying the scores to the CPU, so CUDA work is finished), after a
warm-up. "rounds of R" cuts the solutions in arrival order into groups of R and
scores each group on its own, as `prm serve` does with R concurrent one-solution requests. Reported per method:
solutions/s, forward passes, pad share (padded tokens over real tokens), and the ratio to one at a time. One
table; JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_load import build_model, make_items  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded", help="embedded, tiny, random:SHAPE (bench/random_prm.py) or a "
                                                       "checkpoint folder")
    p.add_argument("--items", type=int, default=48, help="solutions each method scores")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass at most (as prm serve)")
    p.add_argument("--max-padding", type=float, default=0.1, help="the cap the capped methods use")
    p.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on CUDA), fp32, bf16 or fp16")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    import torch

    from prm.scoring import load_scorer

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="batch-padding-") as tmp:
        scorer = load_scorer(build_model(args.model, Path(tmp), args.device), device=args.device, dtype=args.dtype)
    items = make_items(args.items)
    encoded = scorer.encode_all([q for q, _ in items], [s for _, s in items])
    lengths = sorted(len(e.input_ids) for e in encoded)
    median = next(e for e in encoded if len(e.input_ids) == lengths[len(lengths) // 2])
    same = [median] * len(encoded)  # one solution repeated: equal lengths, no padding in any batch
    bs, cap = args.batch_size, args.max_padding

    def rounds(size: int) -> list:
        return [encoded[i:i + size] for i in range(0, len(encoded), size)]

    methods = {
        "one at a time": ([[e] for e in encoded], None, 1),
        f"sorted batches of {bs}": ([encoded], None, bs),
        f"sorted batches of {bs}, capped": ([encoded], cap, bs),
        "rounds of 8": (rounds(8), None, bs),
        "rounds of 8, capped": (rounds(8), cap, bs),
        "rounds of 32": (rounds(32), None, bs),
        "rounds of 32, capped": (rounds(32), cap, bs),
        "equal lengths, one at a time": ([[e] for e in same], None, 1),
        "equal lengths, batches of 8": ([same], None, 8),
        f"equal lengths, batches of {bs}": ([same], None, bs),
    }
    scorer.score_encoded(encoded[:4], 4)  # warm-up
    rows = []
    for name, (groups, max_padding, size) in methods.items():
        passes = tokens = padded = 0
        t0 = time.perf_counter()
        for group in groups:
            scorer.score_encoded(group, size, max_padding=max_padding)
            passes += scorer.stats.batches
            tokens += scorer.stats.tokens
            padded += scorer.stats.padded_tokens
        seconds = time.perf_counter() - t0
        rows.append({"method": name, "solutions": len(encoded), "seconds": round(seconds, 2),
                     "solutions_per_s": round(len(encoded) / seconds, 3), "forward_passes": passes,
                     "pad_share": round(padded / tokens - 1, 3)})
        print(f"{name:34s} {rows[-1]['solutions_per_s']:9.3f} sol/s", file=sys.stderr, flush=True)
    base = rows[0]["solutions_per_s"]
    equal_base = next(r for r in rows if r["method"] == "equal lengths, one at a time")["solutions_per_s"]
    for r in rows:
        r["vs_one_at_a_time"] = round(r["solutions_per_s"] / (equal_base if r["method"].startswith("equal")
                                                              else base), 2)
    print(f"model {args.model}; {len(encoded)} solutions of {lengths[0]}-{lengths[-1]} tokens (median "
          f"{len(median.input_ids)}); {scorer.describe()}; {args.threads} torch thread(s); cap = max_padding {cap}")
    print(f"{'method':34s} {'sol/s':>8} {'passes':>7} {'pad share':>9} {'x one at a time':>15}")
    for r in rows:
        print(f"{r['method']:34s} {r['solutions_per_s']:8.3f} {r['forward_passes']:7d} {r['pad_share']:9.3f} "
              f"{r['vs_one_at_a_time']:15.2f}")
    result = {"model": args.model, "device": args.device, "dtype": args.dtype, "scorer": scorer.describe(),
              "threads": args.threads, "batch_size": bs, "max_padding": cap,
              "lengths": {"min": lengths[0], "median": len(median.input_ids), "max": lengths[-1]}, "rows": rows,
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg()}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
