"""The one-GPU check of `prm serve`'s batching (issue 24's last point): does scoring concurrent solutions
together raise throughput for a 7B PRM on a GPU? Two benches on a random-weight PRM at Qwen2.5-Math-7B's shape
(bench/random_prm.py: built on the GPU, no weights carried), bf16:

    bash bench/gpu_check.sh --serve                 # one H100/H200, <= 8 min; summary + JSON under --out
    bash bench/gpu_check.sh --serve --cpu           # the same steps on a tiny shape on the CPU (the test)

1. bench/batch_padding.py: the scorer alone (no HTTP), one at a time against sorted batches, server-like arrival
   rounds with and without the padding cap, and equal-length batches;
2. bench/serve_load.py: `prm serve` under 1, 8, 32 and 64 concurrent one-solution clients, against offline.

Prints one summary (the batching ratios) after each bench's own table; exit 0 when both ran without errors.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="tiny shape on the CPU (what the test runs)")
    p.add_argument("--shape", default=None, help="bench/random_prm.py shape (qwen2.5-math-7b on a GPU, tiny on --cpu)")
    p.add_argument("--out", default="bench/results/serve_check", help="folder for the two JSON files")
    args = p.parse_args()
    device = "cpu" if args.cpu else "cuda"
    model = f"random:{args.shape or ('tiny' if args.cpu else 'qwen2.5-math-7b')}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items, requests, seconds = ("16", "64", "10") if args.cpu else ("256", "1024", "15")
    runs = {
        "batch_padding": [sys.executable, str(BENCH / "batch_padding.py"), "--device", device, "--model", model,
                          "--items", items, "--out", str(out / "batch_padding.json")],
        "serve_load": [sys.executable, str(BENCH / "serve_load.py"), "--device", device, "--model", model,
                       "--threads", "1", "--items", items, "--requests", requests, "--level-seconds", seconds,
                       "--out", str(out / "serve_load.json")],
    }
    codes = {}
    for name, cmd in runs.items():
        print(f"[serve check] {name}: {' '.join(cmd)}", flush=True)
        codes[name] = subprocess.run(cmd).returncode
    if any(codes.values()):
        print(f"[serve check] failed: {codes}", flush=True)
        return 1
    padding = json.loads((out / "batch_padding.json").read_text())
    load = json.loads((out / "serve_load.json").read_text())
    print(f"\n[serve check] {model} on {device}: {padding['scorer']}")
    for row in padding["rows"]:
        print(f"  scorer alone, {row['method']:34s} {row['solutions_per_s']:9.2f} sol/s  "
              f"{row['vs_one_at_a_time']:.2f}x one at a time")
    print(f"  prm serve, offline Scorer.score {load['offline_solutions_per_s']} sol/s")
    for level in load["levels"]:
        print(f"  prm serve, concurrency {level['concurrency']:3d}: {level['solutions_per_s']:9.2f} sol/s  "
              f"{level['vs_concurrency_1']}x c=1  p50 {level['p50_ms']} ms  p99 {level['p99_ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
