"""What strict JSON reading costs: `prm.jsonl.loads_strict` beside plain `json.loads`, on testbed solutions.

    python bench/json_read.py --out bench/results/json_read.json
    python bench/json_read.py --records 20000 --repeats 5

The same JSONL file of MC-labeled testbed solutions (gsm_symbolic problems, half with an injected error) is
parsed line by line, side by side in one run, by: `json.loads` (what the readers used before strict
reading: accepts duplicate keys, NaN, lone surrogates), `loads_strict` (duplicate-key hook, NaN hook, the
walk only for lines that may hold a problem), `orjson.loads` when installed (a reference: it refuses NaN
and lone surrogates but keeps the last of duplicate keys silently, so it is not our parser), and the whole
`load_records` (strict parse plus record validation, what a stage pays). Best of `--repeats` rounds in
which the readers take turns (garbage collector off while timing); the table gives microseconds per
record and the ratio to `json.loads`.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prm.data_synthesis.problems import gsm_symbolic_problems  # noqa: E402
from prm.data_synthesis.testbed import make_solutions  # noqa: E402

from prm.jsonl import load_records, loads_strict, write_atomic  # noqa: E402
from prm.records import MCAnnotation, Solution  # noqa: E402


def build_file(path: Path, records: int) -> int:
    """`records` labeled solutions (repeating the testbed's with fresh ids); returns the file size."""
    problems = gsm_symbolic_problems(max(1, records // 2), seed=0)
    base = [s for i, p in enumerate(problems) for s in make_solutions(p, error_rate=0.5, seed=i, per_problem=2)]
    rows = []
    for i in range(records):
        solution = base[i % len(base)]
        steps = len(solution.steps)
        solution.mc = MCAnnotation(values=[round(1 - k / (steps + 1), 4) for k in range(steps)],
                                   first_error=-1, rollouts=8 * steps, tokens=300 * steps)
        data = solution.to_dict()
        data["id"] = f"{data['id']}-{i}"
        rows.append(data)
    write_atomic(path, rows)
    return path.stat().st_size


def best_of(repeats: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best wall time of each run; the runs take turns in every round, so load on the machine hits all alike,
    and the garbage collector is off while one is timed."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            gc.collect()
            gc.disable()
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
            gc.enable()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "solutions.jsonl"
        size = build_file(path, args.records)
        lines = path.read_bytes().splitlines()
        parsers = {"json.loads": json.loads, "loads_strict": loads_strict}
        try:
            import orjson

            parsers["orjson.loads (reference)"] = orjson.loads
        except ImportError:
            pass
        runs: dict[str, Callable[[], object]] = {
            name: (lambda p=parse: [p(line) for line in lines]) for name, parse in parsers.items()}
        runs["load_records (parse + validate)"] = lambda: load_records(path, Solution)
        seconds = best_of(args.repeats, runs)

    base = seconds["json.loads"]
    print(f"{args.records} records, {size / args.records:.0f} bytes each, best of {args.repeats}")
    print(f"{'reader':34s} {'us/record':>10s} {'x json.loads':>13s}")
    for name, secs in seconds.items():
        print(f"{name:34s} {1e6 * secs / args.records:10.1f} {secs / base:13.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "records": args.records, "bytes_per_record": round(size / args.records), "repeats": args.repeats,
            "us_per_record": {name: round(1e6 * secs / args.records, 2) for name, secs in seconds.items()},
            "ratio_to_json_loads": {name: round(secs / base, 3) for name, secs in seconds.items()},
            "python": platform.python_version(), "machine": platform.machine(),
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
