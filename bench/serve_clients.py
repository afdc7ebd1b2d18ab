"""Why bench/serve_load.py's clients run on aiohttp: the same tiny `prm serve` loaded by httpx clients and by
aiohttp clients, interleaved, with the client process's CPU time per request.

    python bench/serve_clients.py --out bench/results/serve_clients.json

The clients share the machine's cores with the server, so a client that spends milliseconds of CPU a request
caps what the bench can measure. Each concurrency level runs each client `--repeats` times, alternating; rates
are requests over wall seconds after the connections are open; client CPU is `time.process_time` of this
process over the requests. One table; JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import build_model, make_items, run_level, start  # noqa: E402


def httpx_level(url: str, items: list, concurrency: int, max_requests: int, seconds: float) -> dict:
    """run_level's protocol with httpx.AsyncClient (one pooled client, `concurrency` connections)."""
    return asyncio.run(_httpx_level(url, items, concurrency, max_requests, seconds))


async def _httpx_level(url: str, items: list, concurrency: int, max_requests: int, seconds: float) -> dict:
    import httpx

    done = errors = sent = 0
    bodies = [{"items": [{"problem": p, "steps": s}]} for p, s in items]

    async def client(http: httpx.AsyncClient, stop_at: float) -> None:
        nonlocal done, errors, sent
        while sent < max_requests and time.perf_counter() <= stop_at:
            body = bodies[sent % len(bodies)]
            sent += 1
            if (await http.post(f"{url}/v1/score", json=body)).status_code == 200:
                done += 1
            else:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        await asyncio.gather(*(http.post(f"{url}/v1/score", json=bodies[i % len(bodies)])
                               for i in range(concurrency)))  # connect
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http, t0 + seconds) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"requests": done, "errors": errors, "solutions_per_s": round(done / wall, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    p.add_argument("--requests", type=int, default=1500, help="requests per run at most")
    p.add_argument("--seconds", type=float, default=8.0, help="seconds per run at most")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    server_args = argparse.Namespace(threads=1, device="cpu", batch_size=16, gather=64, max_padding="0.1")
    clients = {"httpx": httpx_level, "aiohttp": run_level}
    items = make_items(256)
    rows = []
    with tempfile.TemporaryDirectory(prefix="serve-clients-") as tmp:
        proc, url = start(build_model("tiny", Path(tmp)), server_args)
        try:
            for level in clients.values():
                level(url, items, 4, 64, 30)  # warm-up
            for c in args.concurrency:
                for _ in range(args.repeats):
                    for name, level in clients.items():
                        cpu = time.process_time()
                        r = level(url, items, c, args.requests, args.seconds)
                        cpu = time.process_time() - cpu
                        rows.append({"client": name, "concurrency": c, "requests": r["requests"],
                                     "errors": r["errors"], "solutions_per_s": r["solutions_per_s"],
                                     "client_cpu_ms_per_request": round(1000 * cpu / max(1, r["requests"]), 2)})
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(60)
    print(f"{'client':8s} {'conc':>5} {'sol/s':>8} {'client CPU ms/req':>18}")
    for r in rows:
        print(f"{r['client']:8s} {r['concurrency']:5d} {r['solutions_per_s']:8.1f} {r['client_cpu_ms_per_request']:18.2f}")
    result = {"server": "tiny qwen_prm, one torch thread, max_padding 0.1", "rows": rows, "server_exit_code": rc,
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg()}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if rc == 0 and all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
